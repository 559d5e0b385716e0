"""What a batch produces for each video; the same on the driver and on every worker."""
from __future__ import annotations

from dataclasses import asdict, dataclass

from ..errors import ConfigError
from ..overlay import STYLES
from ..preprocess import FITS

OUTPUTS = ("masks", "overlay", "jsonl")
#: file or folder name of each output inside OUT/<name>/
OUTPUT_NAMES = {"masks": "masks", "overlay": "overlay.mkv", "jsonl": "frames.jsonl"}


@dataclass(frozen=True)
class BatchOptions:
    outputs: tuple[str, ...] = OUTPUTS
    mask_format: str = "png"      # png or npy, as masks://DIR?format=
    overlay: str = "overlay"      # the --overlay style of the overlay video
    fit: str = "letterbox"
    batch: int = 8                # frames per engine call: an archive wants throughput, not latency
    chunk_frames: int = 3000      # a longer video is split into chunks of this many frames (0 = never)

    def __post_init__(self) -> None:
        bad = [o for o in self.outputs if o not in OUTPUTS]
        if bad or not self.outputs:
            raise ConfigError(f"--outputs takes a comma-separated subset of {','.join(OUTPUTS)}, got "
                              f"{','.join(self.outputs) or 'nothing'}")
        if self.mask_format not in ("png", "npy"):
            raise ConfigError(f"--mask-format must be png or npy, got {self.mask_format!r}")
        if self.overlay not in STYLES:
            raise ConfigError(f"unknown overlay style {self.overlay!r}; valid: {', '.join(STYLES)}")
        if self.fit not in FITS:
            raise ConfigError(f"--fit must be one of {', '.join(FITS)}, got {self.fit!r}")
        if self.batch < 1 or self.chunk_frames < 0:
            raise ConfigError(f"--batch must be >= 1 and --chunk-frames >= 0, got {self.batch} and "
                              f"{self.chunk_frames}")

    def settings(self, model_sha256: str) -> dict:
        """What decides the outputs' content (the resume key): not batch or chunking, which change only speed."""
        s = asdict(self)
        del s["batch"], s["chunk_frames"]
        s["outputs"] = sorted(s["outputs"])
        if "masks" not in self.outputs:
            del s["mask_format"]
        if "overlay" not in self.outputs:
            del s["overlay"]
        return {**s, "model": model_sha256}
