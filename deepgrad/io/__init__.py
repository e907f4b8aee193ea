"""Checkpoints: ``save``/``load`` of state dicts and training state (safetensors + JSON)."""
from __future__ import annotations

from .checkpoint import FORMAT_VERSION, CheckpointError, CheckpointNotFoundError, load, save

__all__ = ["save", "load", "CheckpointError", "CheckpointNotFoundError", "FORMAT_VERSION"]
