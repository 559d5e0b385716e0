"""One file per model: safetensors arrays + a JSON card in the safetensors metadata (docs/design.md, section 7).

Loading never runs code (safetensors holds only raw arrays and strings) and checks, in order: the file exists,
is a safetensors file, carries an mbunet card of a known format version, holds exactly the arrays the
architecture needs with the right dtypes and shapes, and that the arrays hash to the card's sha256.

Quantized arrays (integer maths of DESIGN section 4, thresholds already folded from BatchNorm):
  in.0.weight    int32  [C, 3, 3, 3]   input conv on raw RGB pixels 0..255 (normalisation folded in),
                                       |w| <= 32767 so |z| < 2**28: accumulate in int32, not float32
  in.0.threshold int32  [C]
  <conv>.pos/.neg uint32 [Cout, k, k, Cin_words]  (k = 3 for conv3x3, 2 for convT2x2)
  <conv>.threshold int32 [Cout]                   out bit = dot >= threshold
  out.weight     int32  [classes, Cin]           logit = sum_c weight*a_c + bias, a_c = ±1
  out.bias       int32  [classes]
Full-precision models hold the PyTorch state dict of pipeline.nn.UNet in float16 (checked by the torch engine).
Channels whose BatchNorm gamma was negative have had their weights negated and are listed in the card's
"flipped_channels"; channels with gamma == 0 get a threshold of -2**30 (always +1) or 2**30 (always -1).
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .arch import Architecture, plan
from .errors import ModelFileError, short_reason
from .resources import weights_dir

# Value ranges of the integer layers, part of the file contract (docs/design.md): with them every engine's int32
# sums are exact (27 taps * 255 * 32767 < 2**28 for the input conv; the output conv's logits stay below 2**24).
# A file outside them would overflow some engine's accumulator and the engines would disagree, so loading refuses it.
INPUT_WEIGHT_MAX = 32767
OUTPUT_WEIGHT_MAX = 32767
OUTPUT_BIAS_MAX = 1 << 23
VALUE_LIMITS = {"in.0.weight": INPUT_WEIGHT_MAX, "out.weight": OUTPUT_WEIGHT_MAX, "out.bias": OUTPUT_BIAS_MAX}

FORMAT = "mbunet"
FORMAT_VERSION = 1
HEADER_KEY = "mbunet"
WEIGHTS_DIR = Path(os.environ.get("MBUNET_WEIGHTS", weights_dir()))
SUFFIX = ".safetensors"
#: the shipped model `mbunet run` and `mbunet bench` use when no --model is given
DEFAULT_MODEL = "mbunet-w32"


@dataclass
class ModelFile:
    """A loaded, verified model: its architecture, its card (the JSON header) and its arrays."""

    path: Path | None
    arch: Architecture
    card: dict
    arrays: dict[str, np.ndarray]

    def __post_init__(self) -> None:
        # The one check of a quantized model's arrays (names, dtypes, shapes), wherever the model comes from: every
        # engine and pipeline.prepared trust a ModelFile's arrays from here on.
        if self.arch.quantized:
            _check_arrays(self.arrays, expected_arrays(self.arch), self.path or self.name)

    @property
    def name(self) -> str:
        return self.card.get("name") or (self.path.stem if self.path else "unnamed")

    @property
    def kind(self) -> str:
        return self.arch.model_kind

    @property
    def labels(self) -> list[dict]:
        """[{"name", "color": [r, g, b]}] for mask values 0, 1, ..."""
        return self.card["labels"]


def expected_arrays(arch: Architecture) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Name -> (dtype, shape) of every array a quantized model file must hold."""
    if not arch.quantized:
        raise ValueError("expected_arrays is defined for quantized models only")
    out: dict[str, tuple[str, tuple[int, ...]]] = {}
    for s in plan(arch):
        if s.op == "input":
            out[f"{s.name}.weight"] = ("int32", (s.cout, 3, 3, 3))
            out[f"{s.name}.threshold"] = ("int32", (s.cout,))
        elif s.op in ("conv3x3", "convT2x2"):
            k = 3 if s.op == "conv3x3" else 2
            for plane in ("pos", "neg"):
                out[f"{s.name}.{plane}"] = ("uint32", (s.cout, k, k, s.cin_words))
            out[f"{s.name}.threshold"] = ("int32", (s.cout,))
        elif s.op == "output":
            out[f"{s.name}.weight"] = ("int32", (s.cout, s.cin))
            out[f"{s.name}.bias"] = ("int32", (s.cout,))
    return out


def arrays_sha256(arrays: dict[str, np.ndarray]) -> str:
    """Hash of names, dtypes, shapes and bytes, independent of the file's byte order of tensors."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def save_model(path: str | Path, arch: Architecture, arrays: dict[str, np.ndarray], card: dict) -> Path:
    """Write a model file; `card` gains format, architecture, normalisation and the arrays' sha256."""
    from safetensors.numpy import save_file

    arrays = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
    if arch.quantized:
        _check_arrays(arrays, expected_arrays(arch))
    header = dict(card)
    header.update({
        "format": FORMAT, "format_version": FORMAT_VERSION, "kind": arch.model_kind,
        "architecture": arch.to_json(),
        "normalization": {"color": "RGB", "scale": 1 / 255, "mean": list(arch.mean), "std": list(arch.std)},
        "arrays_sha256": arrays_sha256(arrays),
    })
    header.setdefault("labels", default_labels(arch.classes))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    save_file(arrays, str(tmp), metadata={HEADER_KEY: json.dumps(header)})
    os.chmod(tmp, 0o644)  # safetensors writes 0600; a shipped model must be readable by every user
    os.replace(tmp, path)  # a crash mid-write never leaves a half model under the real name
    return path


def default_labels(classes: int) -> list[dict]:
    if classes == 1:
        return [{"name": "background", "color": [0, 0, 0]}, {"name": "foreground", "color": [255, 32, 96]}]
    palette = [[0, 0, 0], [255, 32, 96], [32, 200, 255], [255, 200, 0], [60, 220, 60], [180, 80, 255]]
    return [{"name": f"class{i}", "color": palette[i % len(palette)]} for i in range(classes)]


def resolve_model(ref: str | Path) -> Path:
    """A path, or the name of a shipped model in weights/ (with or without the suffix)."""
    p = Path(ref)
    if p.is_file():
        return p
    shipped = WEIGHTS_DIR / (p.name if p.name.endswith(SUFFIX) else p.name + SUFFIX)
    if p.parent == Path(".") and shipped.is_file():
        return shipped
    names = ", ".join(shipped_names()) or "none"
    raise ModelFileError(f"model not found: {ref} (not a file, and not a shipped model: {names})")


def shipped_names() -> list[str]:
    return sorted(p.name[: -len(SUFFIX)] for p in WEIGHTS_DIR.glob(f"*{SUFFIX}"))


def unshipped_name(name: str, taken=lambda candidate: False) -> str:
    """`name`, or the first of name-2, name-3, ... that no shipped model has (nor `taken`): a model trained here
    is never taken for a shipped one (`mbunet eval`, `models --card`) unless the user names it so."""
    shipped = set(shipped_names())
    candidate, n = name, 2
    while candidate in shipped or taken(candidate):
        candidate, n = f"{name}-{n}", n + 1
    return candidate


def check_target(path: str | Path, force: bool = False, own_name: str | None = None) -> None:
    """Refuse to write a model file over a shipped model or over any existing file unless `force`; a training
    run may replace the file it exported itself (card name `own_name`)."""
    path = Path(path)
    if force or not path.exists():
        return
    if path.resolve().parent == WEIGHTS_DIR.resolve() and path.name.endswith(SUFFIX):
        raise ModelFileError(f"{path} is the shipped model {path.name[: -len(SUFFIX)]}: write the new model "
                             f"elsewhere, or pass --force to replace it")
    if own_name is not None and _card_name(path) == own_name:
        return
    raise ModelFileError(f"{path} exists: choose another path, or pass --force to replace it")


def _card_name(path: Path) -> str | None:
    try:
        return read_card(path).get("name")
    except ModelFileError:
        return None


def model_summary(path: Path) -> dict:
    """One row of `mbunet models`: name, kind, input size (WxH), classes, validation Dice, default flag."""
    card = read_card(path)
    arch = card.get("architecture", {})
    h, w = arch.get("input_size", [0, 0])
    name = path.name[: -len(SUFFIX)]
    return {"name": name, "kind": card.get("kind"), "input_size": f"{w}x{h}", "classes": arch.get("classes"),
            "val_dice": (card.get("scores") or {}).get("val_dice"), "default": name == DEFAULT_MODEL}


def read_card(path: str | Path) -> dict:
    """Only the JSON header of a model file (cheap: arrays are not read)."""
    from safetensors import safe_open

    path = Path(path)
    if _is_checkpoint(path):
        raise ModelFileError(f"{path}: a training checkpoint, not a model file: convert it with "
                             f"`mbunet export {path} MODEL{SUFFIX}`")
    try:
        with safe_open(str(path), framework="numpy") as f:
            meta = f.metadata() or {}
    except Exception as e:  # safetensors raises its own error types for bad headers and truncation
        raise ModelFileError(f"{path}: not a readable model file ({short_reason(e)})") from e
    if HEADER_KEY not in meta:
        raise ModelFileError(f"{path}: a safetensors file without an mbunet card (not an mbunet model)")
    try:
        card = json.loads(meta[HEADER_KEY])
    except json.JSONDecodeError as e:
        raise ModelFileError(f"{path}: the mbunet card is not valid JSON ({e.msg})") from e
    if card.get("format") != FORMAT:
        raise ModelFileError(f"{path}: card format is {card.get('format')!r}, expected {FORMAT!r}")
    if card.get("format_version") != FORMAT_VERSION:
        raise ModelFileError(f"{path}: format version {card.get('format_version')} is not supported "
                             f"(this mbunet reads version {FORMAT_VERSION})")
    return card


def _is_checkpoint(path: Path) -> bool:
    """A PyTorch file (mbunet train's last.pt): a zip archive, or an older torch.save pickle."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError:
        return False
    return head == b"PK\x03\x04" or (path.suffix in (".pt", ".pth", ".ckpt") and head[:1] == b"\x80")


def load_model(ref: str | Path) -> ModelFile:
    """Load and verify a model file (path or shipped name); raises ModelFileError naming the problem."""
    from safetensors.numpy import load_file

    path = resolve_model(ref)
    if path.stat().st_size == 0:
        raise ModelFileError(f"{path}: empty file, not a model")
    card = read_card(path)
    try:
        arrays = load_file(str(path))
    except Exception as e:
        raise ModelFileError(f"{path}: arrays cannot be read, file truncated or corrupt ({short_reason(e)})") from e
    try:
        norm = card.get("normalization", {})
        arch = Architecture.from_json(card["architecture"], norm.get("mean", (0.485, 0.456, 0.406)),
                                      norm.get("std", (0.229, 0.224, 0.225)))
    except (KeyError, TypeError, ValueError) as e:
        raise ModelFileError(f"{path}: invalid architecture in card ({e})") from e
    model = ModelFile(path, arch, card, arrays)  # checks the arrays against the architecture
    if arrays_sha256(arrays) != card.get("arrays_sha256"):
        raise ModelFileError(f"{path}: arrays do not match the card's sha256 (file modified after export)")
    return model


def _check_arrays(arrays: dict, expected: dict, where: object = "model") -> None:
    missing = sorted(set(expected) - set(arrays))
    extra = sorted(set(arrays) - set(expected))
    if missing or extra:
        raise ModelFileError(f"{where}: arrays do not match the architecture "
                             f"(missing: {missing[:3] or 'none'}, unexpected: {extra[:3] or 'none'})")
    for name, (dtype, shape) in expected.items():
        a = arrays[name]
        if str(a.dtype) != dtype or tuple(a.shape) != shape:
            raise ModelFileError(f"{where}: array {name} is {a.dtype}{list(a.shape)}, "
                                 f"the architecture expects {dtype}{list(shape)}")
    for name, limit in VALUE_LIMITS.items():
        largest = int(np.abs(arrays[name].astype(np.int64)).max(initial=0))
        if largest > limit:
            raise ModelFileError(f"{where}: array {name} holds {largest}, above the file format's limit {limit} "
                                 "(docs/design.md: integer layers)")
