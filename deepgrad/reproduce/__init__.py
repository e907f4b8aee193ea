"""Reproductions of the claims of LeCun, Bengio & Hinton, "Deep learning" (Nature 2015) and
of LeNet-5 (LeCun et al. 1998), one module each, run by ``deepgrad reproduce NAME``.

Each module defines ``NAME``, ``TITLE``, ``CLAIM``, ``SOURCE``, ``PAPER_FIGURE`` (what in the
paper it corresponds to) and ``run(out_dir, quick) -> Report``; the report's ``results`` hold
the measured numbers the tests check the claim's direction on.
"""
from __future__ import annotations

import importlib
import os
import time

from .report import Report

MODULES = {
    "xor": "xor",
    "hidden-space": "hidden_space",
    "lenet5": "lenet5",
    "feature-maps": "feature_maps",
    "activations": "activations",
    "batchnorm": "batchnorm",
    "invariance": "invariance",
    "long-term": "long_term",
    "char-lm": "char_lm",
}


def available() -> list:
    """Names whose module exists (the list grows as reproductions are written)."""
    here = os.path.dirname(__file__)
    return [n for n, m in MODULES.items() if os.path.exists(os.path.join(here, m + ".py"))]


def load(name: str):
    if name not in MODULES or name not in available():
        raise ValueError(f"unknown reproduction {name!r}; choose one of: {', '.join(available())}")
    return importlib.import_module(f".{MODULES[name]}", __name__)


def default_out(name: str, quick: bool) -> str:
    # full runs land in the committed docs; quick runs never overwrite them
    return os.path.join("runs", "reproductions", name) if quick else \
        os.path.join("docs", "reproductions", name)


def options(name: str) -> tuple:
    """The extra keyword arguments the reproduction ``name`` takes (e.g. feature-maps'
    ``checkpoint``)."""
    return tuple(getattr(load(name), "OPTIONS", ()))


def run(name: str, quick: bool = False, out_dir: str | None = None, **kwargs) -> Report:
    """Run one reproduction and write its report and figures to ``out_dir``.

    ``kwargs`` are the reproduction's own options (``options(name)``); ``None`` values are
    dropped, so a command line can pass every option it knows."""
    module = load(name)
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    unknown = sorted(set(kwargs) - set(options(name)))
    if unknown:
        takes = ", ".join(options(name)) or "none"
        raise ValueError(f"reproduce {name}: unknown option(s) {', '.join(unknown)}; "
                         f"it takes: {takes}")
    out_dir = out_dir or default_out(name, quick)
    start = time.perf_counter()
    report = module.run(out_dir, quick, **kwargs)
    report.quick = quick
    report.seconds = time.perf_counter() - start
    report.write(out_dir)
    return report


def write_index(path: str = os.path.join("docs", "reproductions", "README.md")) -> str:
    """The index table of all reproductions: claim, source, paper's figure, ours, command."""
    rows = ["# Reproductions", "",
            "Each claim below is reproduced by one command that writes the report and figures "
            "linked here. Numbers in the reports are measured by those commands.", "",
            "| reproduction | claim | source | paper's figure | our figure | command |",
            "|---|---|---|---|---|---|"]
    for name in available():
        m = load(name)
        report_dir = os.path.join(os.path.dirname(path), name)
        figure = getattr(m, "MAIN_FIGURE", "")
        ours = f"[{figure}]({name}/{figure})" if figure and os.path.exists(
            os.path.join(report_dir, figure)) else "(not run yet)"
        rows.append(f"| [{name}]({name}/report.md) | {m.CLAIM} | {m.SOURCE} | "
                    f"{m.PAPER_FIGURE} | {ours} | `deepgrad reproduce {name}` |")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write("\n".join(rows) + "\n")
    return path
