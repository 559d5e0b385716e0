"""One exception root for the product: the CLI prints any MbunetError as one line and exits 2."""
from __future__ import annotations


class MbunetError(Exception):
    """Base of every error a user can cause (bad input, missing device, bad file)."""


class ModelFileError(MbunetError):
    """A model file is missing, truncated, tampered with or not a model file."""


class EngineUnavailable(MbunetError):
    """An engine cannot run on this machine or with this model; the message says why."""


class SourceError(MbunetError):
    """A video source cannot be opened or read."""


class SourceUnavailable(SourceError):
    """A live source cannot be reached now (a camera not plugged in, a server not up): it may be later, so a run
    that reconnects waits for it, where a wrong setting (SourceError) ends the run at once."""


class SinkError(MbunetError):
    """An output cannot be opened or written."""


class ConfigError(MbunetError):
    """A YAML preset or a command-line value is invalid."""


class KernelBuildError(MbunetError):
    """The CUDA C++ library cannot be built or loaded."""


class DataError(MbunetError):
    """A training or evaluation data set is missing, empty or inconsistent (images vs masks)."""


def short_reason(e: BaseException, limit: int = 160) -> str:
    """First line of a library's exception message, cut to `limit` characters, for one-line user errors."""
    line = (str(e).strip().splitlines() or [type(e).__name__])[0]
    return line if len(line) <= limit else line[: limit - 3] + "..."
