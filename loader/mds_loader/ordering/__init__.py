"""Sample ordering of mosaicml-streaming 0.13.0, reproduced exactly as pure numpy functions.

Partitioning over nodes/ranks/workers (:mod:`.partition`), the five shuffle algorithms
(:mod:`.shuffle`), stream weighting and per-epoch resampling (:mod:`.sampling`), the four batching
methods (:mod:`.batching`), and the world, defaults, resumption arithmetic and DataLoader batch
order (:mod:`.world`). The algorithms follow docs/ordering.md.
"""

from .batching import BATCHING_METHODS, generate_work
from .partition import PARTITION_ALGOS, get_partitions, get_partitions_orig, get_partitions_relaxed
from .sampling import (SAMPLING_METHODS, StreamLayout, StreamSpec, WeightedStream, apply_weights,
                       get_sampling, parse_epoch_size, resample_streams, stream_layout)
from .shuffle import SHUFFLE_ALGOS, divide_spans, get_shuffle
from .world import (ResumePoint, World, build_state_dict, dataloader_batch_order, epoch_length,
                    loader_num_samples, rank_batches, replicate, resolve_num_canonical_nodes,
                    resolve_resume, resolve_shuffle_block_size, worker_sample_ids)

__all__ = [
    "BATCHING_METHODS",
    "PARTITION_ALGOS",
    "SAMPLING_METHODS",
    "SHUFFLE_ALGOS",
    "ResumePoint",
    "StreamLayout",
    "StreamSpec",
    "WeightedStream",
    "World",
    "apply_weights",
    "build_state_dict",
    "dataloader_batch_order",
    "divide_spans",
    "epoch_length",
    "generate_work",
    "get_partitions",
    "get_partitions_orig",
    "get_partitions_relaxed",
    "get_sampling",
    "get_shuffle",
    "loader_num_samples",
    "parse_epoch_size",
    "rank_batches",
    "replicate",
    "resample_streams",
    "resolve_num_canonical_nodes",
    "resolve_resume",
    "resolve_shuffle_block_size",
    "stream_layout",
    "worker_sample_ids",
]
