"""Benchmark deepgrad against PyTorch in the same process (the entry point of `make bench`).

Each workload (benchmarks/workloads/) builds the same computation in both libraries from the
same NumPy inputs. Before timing, one step in each library is run and the gradients are
compared, so a fast but wrong result cannot pass unnoticed. The two libraries are then timed in
alternating repetitions; the table gives the median time per step with the min-max range over
repetitions, the ratio of medians (deepgrad / PyTorch; below 1 means deepgrad is faster) and
the issue's target for it. Results are written as JSON under benchmarks/results/ together with
the machine and versions; `--readme` puts the table into the top-level README.

Usage:
    python benchmarks/run.py [--threads N] [--quick] [--workloads xor_tiny,lenet5] [--readme]
    python benchmarks/run.py --from benchmarks/results/<time>.json [--readme]
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import re
import sys
import time
import traceback
from pathlib import Path
from types import SimpleNamespace

THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "DEEPGRAD_NUM_THREADS")
HERE = Path(__file__).resolve().parent
README = HERE.parent / "README.md"
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"
SCHEMA = 2
GEOMEAN_TARGET = 0.8
# microseconds per display unit of a time row
TIME_UNITS = {"us": 1.0, "ms": 1e3, "s": 1e6}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--threads", type=int, default=2, help="threads for BLAS and torch (default 2)")
    add("--quick", action="store_true", help="short run (under a minute): fewer, shorter "
        "repetitions, subsets for the epoch")
    add("--workloads", default="", help="comma-separated subset (default: all)")
    add("--repeats", type=int, default=None, help="repetitions per library")
    add("--out", type=Path, default=None, help="JSON path (default: results/<time>.json)")
    add("--no-save", action="store_true", help="print the table only, write no JSON")
    add("--markdown", action="store_true", help="also print the table as Markdown")
    add("--list", action="store_true", help="list workloads and exit")
    add("--readme", action="store_true",
        help=f"replace the table in README.md between {BEGIN} and {END} with this run's")
    add("--readme-path", type=Path, default=README, help=argparse.SUPPRESS)
    add("--from", dest="from_json", type=Path, default=None,
        help="render a saved JSON record instead of running (with --readme: update README)")
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error(f"--threads: expected a positive integer, got {args.threads}")
    if args.repeats is not None and args.repeats < 1:
        parser.error(f"--repeats: expected a positive integer, got {args.repeats}")
    return args


def set_threads(n: int) -> None:
    # BLAS libraries read these once, when NumPy (or torch) is first imported.
    for var in THREAD_VARS:
        os.environ[var] = str(n)


# ---- checking ----------------------------------------------------------------------------------

def to_numpy(t):
    import numpy as np

    if hasattr(t, "detach"):
        t = t.detach()
    return np.asarray(t.numpy())


def _compare_arrays(i: int, ga, gb, what: str, rtol: float, atol: float) -> str | None:
    import numpy as np

    if ga.shape != gb.shape:
        return f"leaf {i}: {what} shapes differ, {ga.shape} vs {gb.shape}"
    # relative to the array's scale: float32 sums over tens of thousands of terms (a conv
    # weight's gradient) differ by rounding far above any per-element atol
    scale = float(np.max(np.abs(gb))) if gb.size else 0.0
    diff = float(np.max(np.abs(ga.astype(np.float64) - gb))) if ga.size else 0.0
    if not diff <= rtol * scale + atol:  # also catches NaN
        return f"leaf {i}: max abs {what} difference {diff:.3g} (scale {scale:.3g})"
    return None


def snapshot(leaves, kind: str = "grad") -> list:
    """Copies of what the check compares, taken right after the checked step: the gradients of
    ``leaves`` (None where a leaf has none) or, for ``kind == "values"``, the outputs. Later
    calls (the runner may call a slow step twice) change both."""
    if kind == "values":
        return [to_numpy(v).copy() for v in leaves]
    return [None if leaf.grad is None else to_numpy(leaf.grad).copy() for leaf in leaves]


def compare_grads(grads_a, grads_b, rtol: float = 1e-4, atol: float = 1e-5) -> str:
    """'ok', or a short description of the first disagreement between two snapshots of
    gradients (lists of arrays, None for a leaf without one)."""
    if len(grads_a) != len(grads_b):
        return f"leaf counts differ: {len(grads_a)} vs {len(grads_b)}"
    for i, (a, b) in enumerate(zip(grads_a, grads_b)):
        if a is None or b is None:
            return f"leaf {i}: grad is None in {'deepgrad' if a is None else 'torch'}"
        problem = _compare_arrays(i, a, b, "grad", rtol, atol)
        if problem:
            return problem
    return "ok"


def compare_values(values_a, values_b, rtol: float = 1e-4, atol: float = 1e-5) -> str:
    """Like compare_grads for snapshots of outputs: 'ok' or the first disagreement."""
    if len(values_a) != len(values_b) or not values_a:
        return f"output counts differ: {len(values_a)} vs {len(values_b)}"
    for i, (a, b) in enumerate(zip(values_a, values_b)):
        problem = _compare_arrays(i, a, b, "value", rtol, atol)
        if problem:
            return problem
    return "ok"


# ---- running -----------------------------------------------------------------------------------

def workload_meta(w) -> dict:
    """The row fields a workload declares: unit, target, training flag."""
    return {
        "workload": w.NAME,
        "description": w.DESCRIPTION,
        "quantity": "time",
        "unit": getattr(w, "UNIT", None),
        "target": getattr(w, "TARGET", None),
        "training": bool(getattr(w, "TRAINING", False)),
    }


def run_workload(workload, libs: dict, quick: bool, repeats: int | None) -> dict:
    import numpy as np

    import harness

    if quick:
        reps = repeats or getattr(workload, "QUICK_REPEATS", 3)
        target = getattr(workload, "QUICK_TARGET_SECONDS", 0.02)
    else:
        reps = repeats or getattr(workload, "REPEATS", 7)
        target = getattr(workload, "TARGET_SECONDS", 0.2)
    result = workload_meta(workload)
    result.update({
        "repeats": reps,
        "target_seconds_per_repeat": target,
        "check": "skipped",
        "errors": {},
    })
    inputs = workload.make_inputs(np.random.default_rng(0), quick)
    if "_data" in inputs:
        result["data"] = inputs["_data"]
    if hasattr(workload, "flops"):
        result["flops_per_step"] = float(workload.flops(inputs))
    check_kind = getattr(workload, "CHECK", "grad")
    build_check = getattr(workload, "build_check", None)

    steps, checked, known = {}, {}, {}
    for name, lib in libs.items():
        try:
            step, leaves = workload.build(lib, inputs)
            if build_check is not None:
                check_step, leaves = build_check(lib, inputs)
                check_step()
                taken = snapshot(leaves, check_kind)
            else:
                # one step before timing: it must run, and its result is checked below. The
                # snapshot is taken before any second call, so that both libraries are
                # compared after exactly one step (a second step trains on the next batch).
                first = _seconds(step)
                taken = snapshot(leaves, check_kind)
                if first >= target and _seconds(step) >= target:
                    # a step this slow is timed one call per repetition: calibrating would
                    # only repeat the warm-up these calls already were. The first call alone
                    # does not decide it: it pays one-time costs (libraries loaded, caches
                    # built), and a fast step once took 0.2 s there and was then timed one
                    # call per repetition, each paying the threads' wake-up after quiesce.
                    known[name] = 1
        except Exception as exc:
            result["errors"][name] = f"{type(exc).__name__}: {exc}"
            traceback.print_exc()
            continue
        steps[name] = step
        checked[name] = taken
    if "deepgrad" in checked and "torch" in checked:
        compare = compare_values if check_kind == "values" else compare_grads
        result["check"] = compare(checked["deepgrad"], checked["torch"])
    try:
        timings = harness.measure_alternating(steps, reps, target, known) if steps else {}
    except Exception as exc:
        result["errors"]["timing"] = f"{type(exc).__name__}: {exc}"
        traceback.print_exc()
        timings = {}
    for name in libs:
        result[name] = timings.get(name)
    dg, pt = result.get("deepgrad"), result.get("torch")
    result["ratio"] = dg["median_us"] / pt["median_us"] if dg and pt else None
    if result["unit"] is None:
        result["unit"] = auto_unit(dg or pt)
    return result


def _seconds(step) -> float:
    """Wall seconds of one call of ``step``."""
    t0 = time.perf_counter()
    step()
    return time.perf_counter() - t0


def auto_unit(t: dict | None) -> str:
    if t is None:
        return "us"
    us = t["median_us"]
    return "us" if us < 1e3 else "ms" if us < 1e6 else "s"


def add_roofline(results: list[dict], roofline: dict | None) -> None:
    """Achieved GFLOP/s of each workload with a FLOP count, and its fraction of the GEMM peak."""
    peak = roofline.get("peak_gflops") if roofline else None
    for r in results:
        flops = r.get("flops_per_step")
        if not flops:
            continue
        for name in ("deepgrad", "torch"):
            t = r.get(name)
            if not t or "median_us" not in t:
                continue
            gflops = flops / (t["median_us"] * 1e-6) / 1e9
            r.setdefault("gflops", {})[name] = gflops
            if peak:
                r.setdefault("fraction_of_peak", {})[name] = gflops / peak


def training_summary(results: list[dict]) -> dict:
    """Geometric mean of the ratios of the training-step workloads (the issue's overall target)."""
    training = [r for r in results if r.get("training")]
    ratios = [r["ratio"] for r in training if r.get("ratio")]
    geomean = math.exp(sum(math.log(x) for x in ratios) / len(ratios)) if ratios else None
    return {
        "training_geomean": geomean,
        "training_workloads": [r["workload"] for r in training if r.get("ratio")],
        "training_missing": [r["workload"] for r in training if not r.get("ratio")],
        "target": GEOMEAN_TARGET,
        "met": geomean <= GEOMEAN_TARGET if geomean is not None else None,
    }


# ---- table -------------------------------------------------------------------------------------

def fmt_num(v: float) -> str:
    a = abs(v)
    if a < 0.01:
        return f"{v:.2g}"
    if a >= 100:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def fmt_cell(r: dict, lib: str) -> str:
    if r.get("errors", {}).get(lib):
        return "error"
    t = r.get(lib)
    if not t:
        return "-"
    if r.get("quantity", "time") == "memory":
        med, lo, hi = t["median_mb"], t["min_mb"], t["max_mb"]
    else:
        scale = TIME_UNITS.get(r.get("unit") or "us", 1.0)
        med, lo, hi = (t[k] / scale for k in ("median_us", "min_us", "max_us"))
    return f"{fmt_num(med)} ({fmt_num(lo)}-{fmt_num(hi)})"


def met(r: dict) -> str:
    if r.get("target") is None or r.get("ratio") is None:
        return "-"
    return "yes" if r["ratio"] <= r["target"] else "no"


def table_rows(results: list[dict]) -> list[list[str]]:
    header = ["workload", "unit", "deepgrad median (min-max)", "PyTorch median (min-max)",
              "ratio", "target", "met", "check"]
    rows = [header]
    for r in results:
        rows.append([
            r["workload"],
            r.get("unit") or "us",
            fmt_cell(r, "deepgrad"),
            fmt_cell(r, "torch"),
            f"{r['ratio']:.2f}" if r.get("ratio") is not None else "-",
            f"<= {r['target']:g}" if r.get("target") is not None else "",
            met(r),
            r.get("check", "-"),
        ])
    return rows


def roofline_rows(results: list[dict]) -> list[list[str]]:
    header = ["workload", "GFLOP/step", "deepgrad GFLOP/s", "% of peak", "PyTorch GFLOP/s",
              "% of peak"]
    rows = [header]
    for r in results:
        if not r.get("flops_per_step") or not r.get("gflops"):
            continue
        g = r["gflops"]
        f = r.get("fraction_of_peak", {})
        row = [r["workload"], f"{r['flops_per_step'] / 1e9:.3g}"]
        for name in ("deepgrad", "torch"):
            row.append(fmt_num(g[name]) if name in g else "-")
            row.append(f"{100 * f[name]:.1f}" if name in f else "-")
        rows.append(row)
    return rows


def summary_line(summary: dict) -> str:
    g = summary.get("training_geomean")
    if g is None:
        return ("Geometric mean of the training ratios: - "
                "(no training workload ran in both libraries)")
    names = summary["training_workloads"]
    missing = summary.get("training_missing") or []
    extra = f"; missing: {', '.join(missing)}" if missing else ""
    verdict = "met" if summary["met"] else "not met"
    count = f"{len(names)} workload{'s' if len(names) != 1 else ''}"
    return (f"Geometric mean of the training ratios ({count}: {', '.join(names)}"
            f"{extra}): {g:.2f}, target <= {summary['target']:g}: {verdict}")


def roofline_line(roofline: dict | None, threads: int | None) -> str | None:
    if not roofline:
        return None
    plural = "s" if threads != 1 else ""
    return (f"Roofline: NumPy float32 GEMM peak {roofline['peak_gflops']:.1f} GFLOP/s "
            f"(best square size n={roofline['best_size']}, {threads} thread{plural}); achieved "
            f"GFLOP/s count a multiply-add as 2 FLOPs and training as 3x the forward's GEMM work.")


def notes(results: list[dict]) -> list[str]:
    # workloads sharing a data source share one line
    by_data: dict[str, list[str]] = {}
    for r in results:
        if r.get("data"):
            by_data.setdefault(r["data"], []).append(r["workload"])
    out = [f"{', '.join(names)}: {data}" for data, names in by_data.items()]
    for r in results:
        if r.get("baseline_python_rss_mb") and r["workload"] == "startup_memory":
            out.append(f"startup_memory: a bare interpreter's VmRSS is "
                       f"{r['baseline_python_rss_mb']:.1f} MB")
        for lib, err in (r.get("errors") or {}).items():
            out.append(f"{r['workload']}: {lib} error: {err}")
    return out


def machine_line(record: dict) -> str:
    m = record.get("machine", {})
    th = record.get("threads", {})
    v = record.get("versions", {})
    blas = th.get("numpy_blas") or {}
    git = record.get("git") or {}
    commit = (git.get("commit") or "?")[:10] + (" (dirty)" if git.get("dirty") else "")
    mode = "quick" if record.get("quick") else "full"
    n = th.get("requested")
    reps = sorted({r["repeats"] for r in record.get("results", []) if r.get("repeats")})
    reps_text = "/".join(str(k) for k in reps) or "?"
    line = (f"Machine: {m.get('cpu_model') or '?'}, {m.get('usable_cpus')} usable of "
            f"{m.get('logical_cpus')} logical CPUs, {n} thread{'s' if n != 1 else ''} for NumPy's "
            f"{blas.get('name') or 'BLAS'} {blas.get('version') or ''} and PyTorch; deepgrad "
            f"{v.get('deepgrad')}, NumPy {v.get('numpy')}, PyTorch {v.get('torch') or '-'}, "
            f"Python {m.get('python')}; deepgrad's native kernels "
            f"{_native_state(record)}, its GEMMs {_gemm_state(record)}; {mode} run of "
            f"{record.get('created_utc')}, "
            f"git {commit}. Median (min-max) over {reps_text} alternating repetitions per "
            f"library; ratio = deepgrad / PyTorch (below 1: deepgrad is faster).")
    return line.replace("  ", " ")


def _native_state(record: dict) -> str:
    native = record.get("native")
    if native is None:
        return "not recorded"
    return "on" if native.get("on") else "off"


def _gemm_state(record: dict) -> str:
    native = record.get("native") or {}
    if "mkl_gemm" not in native:
        return "through NumPy"
    if not native["mkl_gemm"]:
        return "through NumPy (MKL not in use)"
    version = re.search(r"Version (\S+)", native.get("mkl_status") or "")
    return f"through MKL {version.group(1)}" if version else "through MKL"


def markdown(rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "|".join("---" for _ in rows[0]) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows[1:]]
    return "\n".join(lines)


def report(record: dict, as_markdown: bool) -> str:
    """The whole printed report of a record: table, geometric mean, roofline, notes."""
    results = record["results"]
    parts = []
    if as_markdown:
        parts.append(machine_line(record))
        parts.append(markdown(table_rows(results)))
    else:
        parts.append(_plain(table_rows(results)))
    parts.append(summary_line(record.get("summary") or training_summary(results)))
    roof = roofline_line(record.get("roofline"), (record.get("threads") or {}).get("requested"))
    rrows = roofline_rows(results)
    if roof:
        parts.append(roof)
    if len(rrows) > 1:
        parts.append(markdown(rrows) if as_markdown else _plain(rrows))
    extra = notes(results)
    if extra:
        head = "Notes:" if not as_markdown else "Notes:\n"
        parts.append(head + "\n" + "\n".join(f"- {n}" for n in extra))
    return "\n\n".join(parts)


def _plain(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for k, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def update_readme(path: Path, record: dict) -> None:
    """Replace the text between the bench markers of ``path`` with the record's report."""
    text = path.read_text(encoding="utf-8")
    begin, end = text.find(BEGIN), text.find(END)
    if begin < 0 or end < 0 or end < begin or text.count(BEGIN) != 1 or text.count(END) != 1:
        raise ValueError(
            f"--readme: expected exactly one '{BEGIN}' followed by one '{END}' in {path}; "
            f"found {text.count(BEGIN)} and {text.count(END)}. Add the markers around the "
            f"benchmark table.")
    body = report(record, as_markdown=True)
    new = text[: begin + len(BEGIN)] + "\n" + body + "\n" + text[end:]
    path.write_text(new, encoding="utf-8")


# ---- main --------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.from_json is not None:
        return render_saved(args)
    set_threads(args.threads)

    # Benchmark the working tree, whether or not deepgrad is installed.
    sys.path.insert(1, str(HERE.parent))
    sys.path.insert(1, str(HERE))
    import numpy as np

    import harness
    import workloads

    if args.list:
        for w in workloads.load():
            print(f"{w.NAME:18s} {w.DESCRIPTION}")
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

    ctx = SimpleNamespace(quick=args.quick, repeats=args.repeats, threads=args.threads,
                          libs=list(libs))
    results: list[dict] = []
    roofline = None
    started = _dt.datetime.now(_dt.timezone.utc)
    for w in chosen:
        print(f"running {w.NAME} ...", flush=True)
        produces = getattr(w, "PRODUCES", None)
        t0 = time.perf_counter()
        rows: list[dict] = []
        try:
            if produces == "rows":
                rows = w.measure(ctx)
            elif produces == "roofline":
                roofline = w.measure(ctx)
                roofline["elapsed_seconds"] = round(time.perf_counter() - t0, 2)
            else:
                rows = [run_workload(w, libs, args.quick, args.repeats)]
        except Exception as exc:
            traceback.print_exc()
            row = workload_meta(w)
            row.update({"check": "-", "ratio": None,
                        "errors": {"run": f"{type(exc).__name__}: {exc}"}})
            rows = [row]
        # wall time of the whole workload (inputs, check, calibration, repetitions), shared by
        # the rows one module produces: what to look at when the quick run gets too long
        for row in rows:
            row["elapsed_seconds"] = round(time.perf_counter() - t0, 2)
        results.extend(rows)
    elapsed = (_dt.datetime.now(_dt.timezone.utc) - started).total_seconds()
    add_roofline(results, roofline)
    from deepgrad import _native  # built by the first workload that used a kernel, if any
    from deepgrad._native import mkl

    native = {"on": _native.lib() is not None, "status": _native.status(),
              "mkl_gemm": mkl.available(), "mkl_status": mkl.status()}

    record = {
        "schema": SCHEMA,
        "created_utc": started.isoformat(timespec="seconds"),
        "quick": args.quick,
        "elapsed_seconds": round(elapsed, 1),
        "timing": {"method": "alternating repetitions, median of per-call means", "gc": "enabled"},
        "machine": machine,
        "threads": threads,
        "versions": {
            "deepgrad": getattr(deepgrad, "__version__", None),
            "numpy": np.__version__,
            "torch": torch.__version__ if torch is not None else None,
        },
        "git": harness.git_state(),
        "native": native,
        "roofline": roofline,
        "summary": training_summary(results),
        "results": results,
    }
    print()
    print(report(record, as_markdown=False))
    print(f"\n{native['status']}\n{native['mkl_status']}")
    print(f"{len(results)} rows in {elapsed:.1f} s")
    if args.markdown:
        print()
        print(report(record, as_markdown=True))
    if not args.no_save:
        out = args.out
        if out is None:
            suffix = "-quick" if args.quick else ""
            out = HERE / "results" / f"{started.strftime('%Y%m%d-%H%M%S')}{suffix}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        print(f"\nwrote {out}")
    if args.readme:
        update_readme(args.readme_path, record)
        print(f"updated the benchmark table in {args.readme_path}")

    failed = [r["workload"] for r in results
              if r.get("errors") or r.get("check") not in ("ok", "skipped", "-")]
    if failed:
        problems = ", ".join(failed)
        print(f"\nproblems in: {problems} (errors or gradient mismatch above)", file=sys.stderr)
        return 1
    return 0


def render_saved(args: argparse.Namespace) -> int:
    try:
        record = json.loads(args.from_json.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        print(f"run.py: cannot read the record {args.from_json}: {exc}", file=sys.stderr)
        return 2
    if record.get("schema", 1) < SCHEMA:
        # schema 1 rows have no unit, target or roofline: pick the unit from the time
        for r in record.get("results", []):
            r.setdefault("unit", auto_unit(r.get("deepgrad") or r.get("torch")))
    if not args.markdown:  # the Markdown report starts with it
        print(machine_line(record))
        print()
    print(report(record, as_markdown=args.markdown))
    if args.readme:
        update_readme(args.readme_path, record)
        print(f"\nupdated the benchmark table in {args.readme_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
