"""Training: ``Trainer``/``fit``/``evaluate`` with callbacks and resumable checkpoints,
``TrainConfig`` (a run's settings), per-model input pipelines, and metrics helpers.

``deepgrad train`` is ``run(TrainConfig(...))``.

Example:
    >>> from deepgrad.train import TrainConfig, run
    >>> trainer = run(TrainConfig("lenet5", dataset="mnist-sample", epochs=2, out="runs/demo"))
    >>> trainer.history[-1]["test_accuracy"]
"""
from __future__ import annotations

from .config import DATASETS, OPTIMIZERS, TrainConfig
from .loop import (BEST, CURVES, LAST, METRICS, Callback, Checkpoint, Curves, MetricsLog,
                   ProgressBar, Trainer, TrainingDiverged, TrainingInterrupted, evaluate, fit,
                   format_record, load_checkpoint, run, saved_config)
from .metrics import JSONLinesWriter, RunningAverage, accuracy, correct, read_jsonl

__all__ = ["TrainConfig", "DATASETS", "OPTIMIZERS", "Trainer", "Callback", "ProgressBar",
           "Checkpoint", "MetricsLog", "Curves", "TrainingDiverged", "TrainingInterrupted",
           "fit", "evaluate", "run", "load_checkpoint", "saved_config", "format_record",
           "accuracy", "correct", "RunningAverage", "JSONLinesWriter", "read_jsonl", "BEST",
           "LAST", "METRICS", "CURVES"]
