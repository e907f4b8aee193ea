"""Startup: wall time of ``import deepgrad`` in a fresh Python process, and its memory after.

Each sample is a new interpreter that times the import with ``time.perf_counter`` and then reads
its resident memory (VmRSS in /proc/self/status). The two libraries alternate, flipping the
order every round, like the timed workloads. The interpreter's own start is not counted in the
time but is part of the memory: a bare interpreter's memory is recorded alongside for scale.
Both processes get the runner's thread variables and import the working tree's deepgrad.
Bytecode caching is allowed (``PYTHONDONTWRITEBYTECODE`` is dropped) and one untimed import of
each library comes first, so both are timed as an installed package is: from ``.pyc`` files,
not recompiled from source on every start.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

NAME = "startup"
DESCRIPTION = "import deepgrad vs import torch in fresh processes: import wall time and VmRSS after"
PRODUCES = "rows"
REPEATS = 7
QUICK_REPEATS = 3
TARGETS = {"startup_import": 0.15, "startup_memory": 0.3}

REPO_ROOT = Path(__file__).resolve().parents[2]
PROBE = """
import json, time
t0 = time.perf_counter()
{statement}
seconds = time.perf_counter() - t0
rss = None
with open('/proc/self/status') as f:
    for line in f:
        if line.startswith('VmRSS:'):
            rss = int(line.split()[1]) * 1024
print(json.dumps({{'seconds': seconds, 'rss_bytes': rss}}))
"""


def probe(module: str | None) -> dict:
    """Import ``module`` (None: nothing) in a fresh interpreter; its import seconds and VmRSS."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(REPO_ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    statement = f"import {module}" if module else "pass"
    out = subprocess.run([sys.executable, "-c", PROBE.format(statement=statement)],
                         cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        raise RuntimeError(f"startup: 'import {module}' failed in a fresh process:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _summary(samples: list[float], unit: str) -> dict:
    return {f"median_{unit}": statistics.median(samples), f"min_{unit}": min(samples),
            f"max_{unit}": max(samples), f"samples_{unit}": samples}


def measure(ctx) -> list[dict]:
    libs = [name for name in ("deepgrad", "torch") if name in ctx.libs]
    reps = ctx.repeats or (QUICK_REPEATS if ctx.quick else REPEATS)
    seconds: dict[str, list[float]] = {name: [] for name in libs}
    rss: dict[str, list[float]] = {name: [] for name in libs}
    errors: dict[str, str] = {}
    for name in libs:  # warm-up: writes deepgrad's bytecode cache, loads both from disk once
        try:
            probe(name)
        except Exception as exc:
            errors[name] = f"{type(exc).__name__}: {exc}"
    for rep in range(reps):
        for name in libs if rep % 2 == 0 else libs[::-1]:
            if name in errors:
                continue
            try:
                r = probe(name)
            except Exception as exc:
                errors[name] = f"{type(exc).__name__}: {exc}"
                continue
            seconds[name].append(r["seconds"] * 1e6)
            if r["rss_bytes"] is not None:
                rss[name].append(r["rss_bytes"] / 2**20)
    try:
        bare = probe(None)["rss_bytes"]
    except Exception:
        bare = None
    common = {"repeats": reps, "check": "-", "errors": errors,
              "baseline_python_rss_mb": bare / 2**20 if bare else None}
    rows = []
    for key, quantity, unit, data, desc in (
        ("startup_import", "time", "s", seconds,
         "wall time of `import <library>` in a fresh process"),
        ("startup_memory", "memory", "MB", rss,
         "VmRSS of a fresh process after `import <library>` (MB = 2**20 bytes)"),
    ):
        row = {"workload": key, "description": desc, "quantity": quantity, "unit": unit,
               "target": TARGETS[key], **common}
        base = "us" if quantity == "time" else "mb"
        for name in ("deepgrad", "torch"):
            row[name] = _summary(data[name], base) if data.get(name) else None
        dg, pt = row["deepgrad"], row["torch"]
        row["ratio"] = dg[f"median_{base}"] / pt[f"median_{base}"] if dg and pt else None
        rows.append(row)
    return rows
