"""The report every reproduction writes: Markdown with the claim, its source, the setup, the
measured tables, the figures and the exact command, plus the machine it ran on."""
from __future__ import annotations

import os
import platform
import sys
import time
from dataclasses import dataclass, field

import numpy as np


def machine() -> str:
    """One line describing this machine, for reports and benchmark results."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    from .. import __version__

    return (f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, "
            f"NumPy {np.__version__}, deepgrad {__version__}")


@dataclass
class Table:
    """A measured table: column names and rows of values (numbers are formatted on write)."""

    columns: list
    rows: list = field(default_factory=list)
    caption: str = ""

    def add(self, *values) -> None:
        if len(values) != len(self.columns):
            raise ValueError(
                f"Table.add: expected {len(self.columns)} values ({self.columns}), got "
                f"{len(values)}")
        self.rows.append(list(values))

    def markdown(self) -> str:
        def fmt(v) -> str:
            if isinstance(v, float):
                return f"{v:.4g}" if abs(v) < 1e5 else f"{v:,.0f}"
            if isinstance(v, int) and not isinstance(v, bool):
                return f"{v:,}"
            return str(v)

        lines = []
        if self.caption:
            lines += [self.caption, ""]
        lines.append("| " + " | ".join(self.columns) + " |")
        lines.append("|" + "|".join("---" for _ in self.columns) + "|")
        for row in self.rows:
            lines.append("| " + " | ".join(fmt(v) for v in row) + " |")
        return "\n".join(lines)


@dataclass
class Report:
    """What a reproduction found, written as ``report.md`` next to its figures."""

    name: str
    title: str
    claim: str
    source: str
    setup: str = ""
    tables: list = field(default_factory=list)
    figures: list = field(default_factory=list)  # (file name, caption)
    findings: list = field(default_factory=list)  # sentences stating measured outcomes
    results: dict = field(default_factory=dict)  # numbers the tests assert on
    quick: bool = False
    seconds: float = 0.0

    def command(self) -> str:
        return f"deepgrad reproduce {self.name}" + (" --quick" if self.quick else "")

    def markdown(self) -> str:
        parts = [f"# {self.title}", "",
                 f"**Claim.** {self.claim}", "",
                 f"**Source.** {self.source}", ""]
        if self.quick:
            parts += ["*This is the reduced `--quick` run; the full run is the command without "
                      "`--quick`.*", ""]
        if self.setup:
            parts += ["## Setup", "", self.setup.strip(), ""]
        parts += ["## Results", ""]
        for finding in self.findings:
            parts.append(f"- {finding}")
        if self.findings:
            parts.append("")
        for table in self.tables:
            parts += [table.markdown(), ""]
        for file, caption in self.figures:
            parts += [f"![{caption}]({file})", "", f"*{caption}*", ""]
        parts += ["## How to run it", "", "```sh", self.command(), "```", "",
                  f"Ran in {self.seconds:.0f} s on {machine()}, "
                  f"{time.strftime('%Y-%m-%d', time.gmtime())}.", ""]
        return "\n".join(parts)

    def write(self, out_dir: str) -> str:
        os.makedirs(out_dir, exist_ok=True)
        path = os.path.join(out_dir, "report.md")
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            f.write(self.markdown())
        os.replace(tmp, path)
        return path


def figure_path(out_dir: str, name: str) -> str:
    os.makedirs(out_dir, exist_ok=True)
    return os.path.join(out_dir, name)


def pyplot():
    """matplotlib's pyplot on the Agg backend (no display needed), imported on first use."""
    try:
        import matplotlib
    except ImportError:
        raise RuntimeError(
            "reproductions draw figures with matplotlib; install it with "
            "pip install 'deepgrad[train]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
