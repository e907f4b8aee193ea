"""Training metrics: accuracy, running averages, and the JSON-lines metrics file."""
from __future__ import annotations

import json
import math
import os
from typing import Any, Iterable

import numpy as np

from ..tensor import Tensor

__all__ = ["correct", "accuracy", "RunningAverage", "JSONLinesWriter", "read_jsonl"]


def _array(x) -> np.ndarray:
    return x.data if isinstance(x, Tensor) else np.asarray(x)


def correct(output, target) -> int:
    """How many rows of ``output`` (``(N, C)`` scores) have their largest score at ``target``
    (``(N,)`` class indices)."""
    out = _array(output)
    tgt = _array(target)
    if out.ndim != 2 or tgt.shape != out.shape[:1]:
        raise ValueError(
            f"correct: expected output (N, C) and target (N,); got output.shape={out.shape}, "
            f"target.shape={tgt.shape}")
    return int(np.count_nonzero(out.argmax(axis=1) == tgt))


def accuracy(output, target) -> float:
    """The fraction of rows of ``output`` whose top class is ``target`` (0.0 for no rows).

    Example:
        >>> accuracy(deepgrad.tensor([[0.1, 0.9], [0.8, 0.2]]), deepgrad.tensor([1, 1]))
        0.5
    """
    n = _array(target).shape[0] if _array(target).ndim else 0
    return correct(output, target) / n if n else 0.0


class RunningAverage:
    """A weighted mean updated one batch at a time: ``update(value, n)`` counts ``value`` as
    the mean of ``n`` samples.

    Example:
        >>> avg = RunningAverage()
        >>> avg.update(2.0, n=3); avg.update(4.0, n=1)
        >>> avg.value
        2.5
    """

    __slots__ = ("total", "count")

    def __init__(self) -> None:
        self.total = 0.0
        self.count = 0

    def update(self, value: float, n: int = 1) -> None:
        self.total += float(value) * n
        self.count += n

    @property
    def value(self) -> float:
        return self.total / self.count if self.count else math.nan

    def reset(self) -> None:
        self.total = 0.0
        self.count = 0

    def __repr__(self) -> str:
        return f"RunningAverage(value={self.value:.6g}, count={self.count})"


def _jsonable(record: dict[str, Any]) -> dict[str, Any]:
    # JSON has no NaN or infinity; a diverged loss is written as null
    out = {}
    for k, v in record.items():
        if isinstance(v, (float, np.floating)):
            v = float(v)
            out[k] = v if math.isfinite(v) else None
        elif isinstance(v, np.integer):
            out[k] = int(v)
        else:
            out[k] = v
    return out


class JSONLinesWriter:
    """Appends one JSON object per line to ``path`` (``metrics.jsonl``), flushed at once so a
    killed run keeps every finished line.

    Args:
        path: the file.
        records: if given, the file is first rewritten (atomically) to hold exactly these
            records; a resumed run uses this to drop lines of epochs it will redo.
    """

    def __init__(self, path: str | os.PathLike, records: Iterable[dict] | None = None) -> None:
        self.path = os.fspath(path)
        if records is not None:
            tmp = f"{self.path}.tmp-{os.getpid()}"
            with open(tmp, "w", encoding="utf-8") as f:
                for r in records:
                    f.write(json.dumps(_jsonable(r)) + "\n")
            os.replace(tmp, self.path)

    def write(self, record: dict[str, Any]) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(_jsonable(record)) + "\n")
            f.flush()


def read_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The records of a JSON-lines file (blank lines skipped)."""
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
