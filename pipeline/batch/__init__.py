"""`mbunet batch`: segment a video archive on Ray workers (an embedded local Ray, or a cluster).

inputs (which videos, their output names) -> driver (Ray, workers) -> scheduler (probe, segment chunks, finish)
-> worker (one model + engine per process) -> chunk (the `mbunet run` pipeline on frames [start, stop)) and join
(parts -> outputs); layout says where everything goes and why a kill never leaves a half output counted as done;
manifest writes the row per video. docs/batch.md is the user's guide.
"""
from .driver import BatchResult, ClusterOptions, run_batch
from .options import BatchOptions

__all__ = ["BatchOptions", "BatchResult", "ClusterOptions", "run_batch"]
