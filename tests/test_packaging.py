"""The package layout: one `mbunet` namespace over the repository's folders, with its data found by importlib."""
from __future__ import annotations

import configparser

from conftest import REPO


def _options() -> configparser.SectionProxy:
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    return cfg["options"]


def _lines(value: str) -> list[str]:
    return [v.strip() for v in value.strip().splitlines() if v.strip()]


def test_every_python_folder_is_a_listed_package_under_mbunet():
    """setup.cfg lists packages one by one (package_dir maps folders to names, which find: cannot follow), so a
    new subpackage must be added there; a folder left out would be missing from the wheel."""
    roots = dict(line.split(" = ") for line in _lines(_options()["package_dir"]))
    listed = set(_lines(_options()["packages"]))
    found = set()
    for name, folder in roots.items():
        for init in (REPO / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(REPO / folder)
            found.add(".".join([name, *rel.parts]))
    assert listed == found, f"setup.cfg packages: missing {sorted(found - listed)}, extra {sorted(listed - found)}"
    assert {"mbunet", "mbunet.app", "mbunet.engines"} <= listed and all(n.split(".")[0] == "mbunet" for n in listed)


def test_data_is_found_through_the_package_not_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    from mbunet.config import CONFIG_DIR, SAMPLE_CLIP
    from mbunet.modelfile import shipped_names
    from mbunet.resources import configs_dir, sample_clip, weights_dir

    assert sample_clip() == SAMPLE_CLIP and SAMPLE_CLIP.is_file() and SAMPLE_CLIP.stat().st_size > 100_000
    assert configs_dir() == CONFIG_DIR and (CONFIG_DIR / "run" / "drone.yaml").is_file() and (CONFIG_DIR / "train" / "fp.yaml").is_file()
    assert {"mbunet-w32", "binary-w32", "unet-fp-w32"} <= set(shipped_names())
    assert (weights_dir() / "mbunet-w32.md").is_file()
