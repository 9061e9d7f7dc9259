"""mds-loader: read and write Mosaic Data Shard (MDS) datasets through Arrow, and stream them into
PyTorch training with the deterministic, resumable sample order of mosaicml-streaming."""

__version__ = "0.1.0"
