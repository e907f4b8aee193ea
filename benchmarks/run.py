"""Benchmark deepgrad against PyTorch in the same process (the entry point of `make bench`).

Each workload (benchmarks/workloads/) builds the same computation in both libraries from the
same NumPy inputs. Before timing, one step in each library is run and the gradients are
compared, so a fast but wrong result cannot pass unnoticed. The two libraries are then timed in
alternating repetitions; the table gives the median time per step with the min-max range over
repetitions, and the ratio of medians (deepgrad / PyTorch; below 1 means deepgrad is faster).
Results are written as JSON under benchmarks/results/ together with the machine and versions.

Usage:
    python benchmarks/run.py [--threads N] [--quick] [--workloads op_overhead,tanh_chain]
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import sys
import traceback
from pathlib import Path

THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
HERE = Path(__file__).resolve().parent


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--threads", type=int, default=2, help="threads for BLAS and torch (default 2)")
    add("--quick", action="store_true", help="short run: fewer, shorter repetitions")
    add("--workloads", default="", help="comma-separated subset (default: all)")
    add("--repeats", type=int, default=None, help="repetitions per library")
    add("--out", type=Path, default=None, help="JSON path (default: results/<time>.json)")
    add("--no-save", action="store_true", help="print the table only, write no JSON")
    add("--markdown", action="store_true", help="also print the table as Markdown")
    add("--list", action="store_true", help="list workloads and exit")
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error(f"--threads: expected a positive integer, got {args.threads}")
    return args


def set_threads(n: int) -> None:
    # BLAS libraries read these once, when NumPy (or torch) is first imported.
    for var in THREAD_VARS:
        os.environ[var] = str(n)


def to_numpy(t):
    import numpy as np

    if hasattr(t, "detach"):
        t = t.detach()
    return np.asarray(t.numpy())


def compare_grads(leaves_a, leaves_b, rtol: float = 1e-4, atol: float = 1e-5) -> str:
    """'ok', or a short description of the first disagreement between two lists of leaves."""
    import numpy as np

    for i, (a, b) in enumerate(zip(leaves_a, leaves_b)):
        if a.grad is None or b.grad is None:
            return f"leaf {i}: grad is None in {'deepgrad' if a.grad is None else 'torch'}"
        ga = to_numpy(a.grad)
        gb = to_numpy(b.grad)
        if ga.shape != gb.shape:
            return f"leaf {i}: grad shapes differ, {ga.shape} vs {gb.shape}"
        # relative to the gradient's scale: float32 sums over tens of thousands of terms (a
        # conv weight's gradient) differ by rounding far above any per-element atol
        scale = float(np.max(np.abs(gb))) if gb.size else 0.0
        diff = float(np.max(np.abs(ga - gb))) if ga.size else 0.0
        if diff > rtol * scale + atol:
            return f"leaf {i}: max abs grad difference {diff:.3g} (scale {scale:.3g})"
    return "ok"


def run_workload(workload, libs: dict, quick: bool, repeats: int | None) -> dict:
    import numpy as np

    import harness

    reps = repeats or getattr(workload, "REPEATS", 3 if quick else 7)
    target = getattr(workload, "TARGET_SECONDS", 0.02 if quick else 0.2)
    result = {
        "workload": workload.NAME,
        "description": workload.DESCRIPTION,
        "repeats": reps,
        "target_seconds_per_repeat": target,
        "check": "skipped",
        "errors": {},
    }
    inputs = workload.make_inputs(np.random.default_rng(0), quick)
    steps, leaves = {}, {}
    for name, lib in libs.items():
        try:
            step, lib_leaves = workload.build(lib, inputs)
            step()  # one step before timing: it must run, and its grads are checked below
        except Exception as exc:
            result["errors"][name] = f"{type(exc).__name__}: {exc}"
            traceback.print_exc()
            continue
        steps[name] = step
        leaves[name] = lib_leaves
    if "deepgrad" in leaves and "torch" in leaves:
        result["check"] = compare_grads(leaves["deepgrad"], leaves["torch"])
    timings = harness.measure_alternating(steps, reps, target) if steps else {}
    for name in libs:
        result[name] = timings.get(name)
    dg, pt = result.get("deepgrad"), result.get("torch")
    result["ratio"] = dg["median_us"] / pt["median_us"] if dg and pt else None
    return result


def fmt_time(t: dict | None, error: str | None) -> str:
    if error:
        return "error"
    if t is None:
        return "-"
    return f"{t['median_us']:.1f} ({t['min_us']:.1f}-{t['max_us']:.1f})"


def table_rows(results: list[dict]) -> list[list[str]]:
    header = ["workload", "deepgrad us (min-max)", "PyTorch us (min-max)", "ratio", "check"]
    rows = [header]
    for r in results:
        rows.append(
            [
                r["workload"],
                fmt_time(r.get("deepgrad"), r["errors"].get("deepgrad")),
                fmt_time(r.get("torch"), r["errors"].get("torch")),
                f"{r['ratio']:.2f}" if r["ratio"] is not None else "-",
                r["check"],
            ]
        )
    return rows


def print_table(rows: list[list[str]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for k, row in enumerate(rows):
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
        if k == 0:
            print("  ".join("-" * w for w in widths))


def print_markdown(rows: list[list[str]]) -> None:
    print("| " + " | ".join(rows[0]) + " |")
    print("|" + "|".join("---" for _ in rows[0]) + "|")
    for row in rows[1:]:
        print("| " + " | ".join(row) + " |")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    set_threads(args.threads)

    # Benchmark the working tree, whether or not deepgrad is installed.
    sys.path.insert(1, str(HERE.parent))
    import numpy as np

    import harness
    import workloads

    if args.list:
        for w in workloads.load():
            print(f"{w.NAME:16s} {w.DESCRIPTION}")
        return 0
    selected = [s for s in args.workloads.split(",") if s] or None
    try:
        chosen = workloads.load(selected)
    except ValueError as exc:
        print(f"run.py: {exc}", file=sys.stderr)
        return 2

    try:
        import deepgrad
    except ImportError as exc:
        print(f"run.py: cannot import deepgrad from {HERE.parent}: {exc}", file=sys.stderr)
        return 2

    libs = {"deepgrad": deepgrad}
    try:
        import torch
    except ImportError:
        torch = None
        print("PyTorch is not installed: the PyTorch column is skipped.")
    else:
        torch.set_num_threads(args.threads)
        libs["torch"] = torch

    machine = harness.machine_info()
    threads = {
        "requested": args.threads,
        "env": {var: os.environ.get(var) for var in THREAD_VARS},
        "torch": torch.get_num_threads() if torch is not None else None,
        "numpy_blas": harness.numpy_blas(),
    }
    blas = threads["numpy_blas"] or {}
    cpus = f"{machine['usable_cpus']} usable of {machine['logical_cpus']}"
    print(f"cpu: {machine['cpu_model']}  ({cpus})")
    print(
        f"versions: deepgrad {getattr(deepgrad, '__version__', '?')}, numpy {np.__version__}, "
        f"torch {torch.__version__ if torch is not None else '-'}"
    )
    print(
        f"threads: {' '.join(f'{k}={v}' for k, v in threads['env'].items())}; "
        f"torch.get_num_threads()={threads['torch'] if torch is not None else '-'}; "
        f"numpy BLAS {blas.get('name', '?')} threads={blas.get('threads', 'unknown')}"
    )
    print(f"mode: {'quick' if args.quick else 'full'}; timing alternates libraries per repetition")
    print()

    results = []
    for w in chosen:
        print(f"running {w.NAME} ...", flush=True)
        results.append(run_workload(w, libs, args.quick, args.repeats))
    print()
    rows = table_rows(results)
    print_table(rows)
    if args.markdown:
        print()
        print_markdown(rows)

    now = _dt.datetime.now(_dt.timezone.utc)
    record = {
        "schema": 1,
        "created_utc": now.isoformat(timespec="seconds"),
        "quick": args.quick,
        "timing": {"method": "alternating repetitions, median of per-call means", "gc": "enabled"},
        "machine": machine,
        "threads": threads,
        "versions": {
            "deepgrad": getattr(deepgrad, "__version__", None),
            "numpy": np.__version__,
            "torch": torch.__version__ if torch is not None else None,
        },
        "git": harness.git_state(),
        "results": results,
    }
    if not args.no_save:
        out = args.out
        if out is None:
            suffix = "-quick" if args.quick else ""
            out = HERE / "results" / f"{now.strftime('%Y%m%d-%H%M%S')}{suffix}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        print(f"\nwrote {out}")

    failed = [r["workload"] for r in results if r["errors"] or r["check"] not in ("ok", "skipped")]
    if failed:
        problems = ", ".join(failed)
        print(f"\nproblems in: {problems} (errors or gradient mismatch above)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
