"""Model files: round trip, and every kind of bad file rejected with a one-line error naming the problem."""
from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from mbunet.arch import Architecture
from mbunet.errors import ModelFileError
from mbunet.random_model import random_quantized_model
from mbunet.modelfile import arrays_sha256, load_model, read_card, save_model


@pytest.fixture
def model_path(tmp_path):
    arch = Architecture(width=4, classes=2, input_size=(16, 32)).with_masked(["up-CT2"])
    m = random_quantized_model(arch, seed=5)
    card = {"name": "tiny", "labels": [{"name": "bg", "color": [0, 0, 0]}, {"name": "cat", "color": [9, 8, 7]}],
            "training": {"data": "none"}}
    return save_model(tmp_path / "tiny.safetensors", arch, m.arrays, card), m


def test_round_trip_keeps_arrays_and_card(model_path):
    path, original = model_path
    loaded = load_model(path)
    assert loaded.arch == original.arch and loaded.kind == "mbunet" and loaded.name == "tiny"
    assert loaded.labels[1]["name"] == "cat"
    assert loaded.card["normalization"]["mean"] == list(original.arch.mean)
    for k, v in original.arrays.items():
        np.testing.assert_array_equal(loaded.arrays[k], v)


def _one_line(e: pytest.ExceptionInfo) -> str:
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_truncated_file(model_path, tmp_path):
    path, _ = model_path
    data = path.read_bytes()
    bad = tmp_path / "cut.safetensors"
    bad.write_bytes(data[: len(data) - 100])
    with pytest.raises(ModelFileError) as e:
        load_model(bad)
    assert "truncated" in _one_line(e) or "not a readable" in _one_line(e)


def test_tampered_array_fails_sha(model_path, tmp_path):
    path, _ = model_path
    arrays = load_file(str(path))
    arrays["out.bias"] = arrays["out.bias"] + 1
    bad = tmp_path / "tampered.safetensors"
    save_file(arrays, str(bad), metadata={"mbunet": json.dumps(read_card(path))})
    with pytest.raises(ModelFileError, match="sha256") as e:
        load_model(bad)
    _one_line(e)


def test_mismatched_architecture_names_the_array(model_path, tmp_path):
    path, _ = model_path
    card = read_card(path)
    card["architecture"]["width"] = 8
    bad = tmp_path / "wide.safetensors"
    save_file(load_file(str(path)), str(bad), metadata={"mbunet": json.dumps(card)})
    with pytest.raises(ModelFileError, match=r"array in\.0\.weight") as e:
        load_model(bad)
    _one_line(e)


@pytest.mark.parametrize("name,value", [("in.0.weight", 32768), ("out.weight", -32768), ("out.bias", (1 << 23) + 1)])
def test_integer_layer_outside_the_format_range(model_path, tmp_path, name, value):
    """Values past the limits would overflow an engine's int32 sums; the file is refused, whatever its hash says."""
    path, _ = model_path
    arrays = load_file(str(path))
    arrays[name] = arrays[name].copy()
    arrays[name].flat[0] = value
    card = read_card(path)
    card["arrays_sha256"] = arrays_sha256(arrays)
    bad = tmp_path / "range.safetensors"
    save_file(arrays, str(bad), metadata={"mbunet": json.dumps(card)})
    with pytest.raises(ModelFileError, match=rf"{name} holds {abs(value)}, above the file format's limit") as e:
        load_model(bad)
    _one_line(e)


@pytest.mark.parametrize("content,match", [
    (b"", "empty file"),
    (b"this is a text file, not a model\n", "not a readable model file"),
])
def test_non_model_files(tmp_path, content, match):
    bad = tmp_path / "x.safetensors"
    bad.write_bytes(content)
    with pytest.raises(ModelFileError, match=match):
        load_model(bad)


def test_safetensors_without_card(tmp_path):
    bad = tmp_path / "plain.safetensors"
    save_file({"a": np.zeros(3, np.float32)}, str(bad))
    with pytest.raises(ModelFileError, match="without an mbunet card"):
        load_model(bad)


def test_future_format_version(model_path, tmp_path):
    path, _ = model_path
    card = read_card(path)
    card["format_version"] = 99
    bad = tmp_path / "future.safetensors"
    save_file(load_file(str(path)), str(bad), metadata={"mbunet": json.dumps(card)})
    with pytest.raises(ModelFileError, match="version 99"):
        load_model(bad)


def test_unknown_name_lists_shipped_models():
    with pytest.raises(ModelFileError, match="not a shipped model"):
        load_model("no-such-model")
