"""Timing and machine description for the benchmark runner.

Nothing here imports NumPy or PyTorch at module level: run.py must set the thread variables
before either is imported.
"""

from __future__ import annotations

import itertools
import os
import platform
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any, Callable

REPO_ROOT = Path(__file__).resolve().parent.parent


def time_calls(step: Callable[[], object], number: int) -> float:
    """Seconds per call of `step`, averaged over `number` back-to-back calls."""
    start = time.perf_counter()
    for _ in itertools.repeat(None, number):
        step()
    return (time.perf_counter() - start) / number


def calibrate(step: Callable[[], object], target_seconds: float) -> int:
    """Smallest count in 1, 2, 5, 10, 20, 50, ... whose calls take at least `target_seconds`.

    Same idea as timeit.Timer.autorange; the calls made here also serve as warm-up. One call
    that lasts the target is timed again before it is taken: a single call can be slow once (a
    collection, a stall), and one call per repetition would then time a fast step.
    """
    for power in itertools.count():
        for base in (1, 2, 5):
            number = base * 10**power
            if time_calls(step, number) * number >= target_seconds and (
                    number > 1 or time_calls(step, 1) >= target_seconds):
                return number
    raise AssertionError("unreachable")


def summarize(seconds_per_call: list[float], number: int) -> dict[str, Any]:
    samples_us = [s * 1e6 for s in seconds_per_call]
    return {
        "median_us": statistics.median(samples_us),
        "min_us": min(samples_us),
        "max_us": max(samples_us),
        "number": number,
        "samples_us": samples_us,
    }


def quiesce(max_seconds: float = 2.0, window: float = 0.02, busy: float = 0.1) -> float:
    """Wait until no thread of this process is burning CPU; return the seconds waited.

    After a parallel call, a BLAS or OpenMP worker keeps spinning for a while (NumPy's OpenBLAS
    about 0.1 s: 2**28 cycles), taking a core. Timed right after the other library, a
    repetition would share the machine with that spinner: measured, PyTorch's mlp_mnist step
    ran at 4.1 ms right after deepgrad's repetitions and 2.9 ms alone. So each repetition
    starts once the process's CPU time stops growing: under ``busy`` of a core during a
    ``window`` of sleep.
    """
    start = time.perf_counter()
    while time.perf_counter() - start < max_seconds:
        cpu = time.process_time()
        time.sleep(window)
        if time.process_time() - cpu < busy * window:
            break
    return time.perf_counter() - start


def measure_alternating(
    steps: dict[str, Callable[[], object]], repeats: int, target_seconds: float,
    numbers: dict[str, int] | None = None,
) -> dict[str, dict[str, Any]]:
    """Time each library's step in alternating repetitions, in one process.

    Alternating (and flipping the order every repetition) spreads slow drifts of the machine,
    such as frequency changes or a noisy neighbour, over both libraries instead of one. Each
    repetition waits for the worker threads of the one before to go idle (:func:`quiesce`), so
    it runs as it would alone. The garbage collector stays on: its cost is part of what a
    training loop pays.
    ``numbers`` gives calls per repetition already known (a step that alone lasts the target
    needs no calibration); the others are calibrated.
    """
    known = numbers or {}
    numbers = {name: known.get(name) or calibrate(step, target_seconds)
               for name, step in steps.items()}
    samples: dict[str, list[float]] = {name: [] for name in steps}
    names = list(steps)
    for rep in range(repeats):
        order = names if rep % 2 == 0 else names[::-1]
        for name in order:
            quiesce()
            samples[name].append(time_calls(steps[name], numbers[name]))
    return {name: summarize(samples[name], numbers[name]) for name in names}


def cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def git_state() -> dict[str, Any]:
    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(
                ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, check=True
            )
        except (OSError, subprocess.CalledProcessError):
            return None
        return out.stdout.strip()

    # the results directory left out: a run right after another would count that run's
    # record, not yet committed, as a change to the code measured
    status = git("status", "--porcelain", "--", ".", ":(exclude)benchmarks/results")
    dirty = bool(status) if status is not None else None
    return {"commit": git("rev-parse", "HEAD"), "dirty": dirty}


def machine_info() -> dict[str, Any]:
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {
        "cpu_model": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": usable,
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def numpy_blas() -> dict[str, Any] | None:
    """Which BLAS NumPy was built with, and its thread count if threadpoolctl is installed."""
    import numpy as np

    info: dict[str, Any] = {}
    try:
        config = np.show_config(mode="dicts")  # NumPy >= 1.26
        blas = config["Build Dependencies"]["blas"]
        info["name"] = blas.get("name")
        info["version"] = blas.get("version")
    except Exception:  # older NumPy prints instead of returning; the name is a nicety
        pass
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return info or None
    pools = [p for p in threadpool_info() if p.get("user_api") == "blas"]
    if pools:
        info["threads"] = pools[0].get("num_threads")
    return info or None
