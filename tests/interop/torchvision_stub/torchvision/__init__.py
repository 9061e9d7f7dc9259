"""Minimal stand-in for torchvision, only what `import streaming` touches (tests only)."""
__version__ = "0.0.0+stub"
from . import datasets, transforms  # noqa: E402,F401
