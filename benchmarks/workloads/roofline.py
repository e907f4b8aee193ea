"""Roofline: this machine's float32 GEMM speed through NumPy, the yardstick for the workloads.

Square float32 matrix products of a few sizes are timed at the runner's thread count; the best
GFLOP/s (2 n^3 FLOPs per product) is the peak. Each workload that declares ``flops(inputs)``
then gets its achieved GFLOP/s (FLOPs per step / median time per step) and the fraction of
this peak, in both libraries.
"""

from __future__ import annotations

import time

import numpy as np

NAME = "roofline"
DESCRIPTION = "float32 GEMM GFLOP/s through NumPy (square sizes, best); workloads as a fraction"
PRODUCES = "roofline"
SIZES = (256, 512, 1024, 2048)
QUICK_SIZES = (512, 1024)


def gemm_gflops(n: int, seconds: float, repeats: int = 5) -> float:
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n)).astype(np.float32)
    b = rng.standard_normal((n, n)).astype(np.float32)
    out = np.empty((n, n), dtype=np.float32)
    np.matmul(a, b, out=out)  # warm-up: thread pool start, page faults of out
    number = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(number):
            np.matmul(a, b, out=out)
        dt = time.perf_counter() - t0
        if dt >= seconds / repeats or number >= 1 << 20:
            break
        number *= 2
    best = dt / number
    for _ in range(repeats - 1):
        t0 = time.perf_counter()
        for _ in range(number):
            np.matmul(a, b, out=out)
        best = min(best, (time.perf_counter() - t0) / number)
    return 2.0 * n**3 / best / 1e9


def measure(ctx) -> dict:
    sizes = QUICK_SIZES if ctx.quick else SIZES
    seconds = 0.1 if ctx.quick else 0.5
    per_size = {str(n): gemm_gflops(n, seconds) for n in sizes}
    best_n = max(per_size, key=per_size.get)
    return {"peak_gflops": per_size[best_n], "best_size": int(best_n), "gflops_by_size": per_size,
            "dtype": "float32", "method": "best of 5 timings of np.matmul(a, b, out=out) per size"}
