"""Reruns every embedded command the README states a figure for, and checks each figure.

The stated figures live in one place, ``benchmarks/figures.json``: each run's command (as the
README gives it, with ``{runs}`` for the folder the runs go to), the figures it reports (a key of
the run's ``results.json``, or of another file of its workdir) with their stated values, and the
date and host they were measured on. The README's figure tables are rendered from that file
(``<!-- figures: NAME ... -->`` blocks; ``tests/test_reproduce.py`` fails when they drift), so
prose and check cannot disagree.

A figure passes when, on the host it was recorded on, the measured value rounds to the stated
digits (runs marked ``deterministic``: the same host gave the same digits twice), and elsewhere
when it lies within the figure's stated ``tolerance`` (XLA:CPU's results differ between
processors, e.g. with and without AVX-512, and a tiny model's fine-tuning amplifies that).

Usage::

    python -m benchmarks.reproduce                      # every run, into a fresh temporary folder
    python -m benchmarks.reproduce --only=squad_v2.0    # one run (and the pretraining it needs)
    python -m benchmarks.reproduce --runs=/tmp/repro    # keep the runs; finished ones are reused
    python -m benchmarks.reproduce --record             # store what was measured as the new
                                                        # stated figures and re-render the README

Exit status 0 when every figure passes, 1 on any miss.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import pathlib
import re
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence

from benchmarks import format_table, hardware

ROOT = pathlib.Path(__file__).resolve().parent.parent
FIGURES_PATH = ROOT / "benchmarks" / "figures.json"
README_PATH = ROOT / "README.md"
# A README block rendered from figures.json: <!-- figures: run1 run2 --> ... <!-- /figures -->
_BLOCK = re.compile(r"(<!-- figures: ([^>]*?) -->\n)(.*?)(<!-- /figures -->)", re.DOTALL)


@dataclasses.dataclass
class Figure:
    label: str  # as the README shows it, e.g. "dev F1"
    key: str  # its key in the run's results file
    stated: float
    digits: int  # decimals it is stated to
    tolerance: float  # how far another host's value may lie from it
    file: str = "results.json"  # the workdir's file that holds it
    scale: float = 1.0  # stated = file value x scale (e.g. 100 for a percentage)

    def measure(self, workdir: pathlib.Path) -> float:
        path = workdir / self.file
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing: the run did not finish.")
        values = json.loads(path.read_text())
        if self.key not in values:
            raise KeyError(f"{path} has no {self.key!r} (it has {sorted(values)}).")
        return float(values[self.key]) * self.scale

    def verdict(self, measured: float, same_host: bool, deterministic: bool) -> str:
        if same_host and deterministic:
            return "equal" if round(measured, self.digits) == self.stated else "MISS"
        return "within" if abs(measured - self.stated) <= self.tolerance else "MISS"


@dataclasses.dataclass
class Run:
    name: str  # its workdir's name under the runs folder
    command: str  # python -m ... with {runs} for the runs folder
    figures: list[Figure]
    deterministic: bool  # the same host gave the same digits twice
    date: str  # when the stated figures were measured
    host: str  # on which processor (:func:`this_host`)
    seconds: float  # wall time then (compilation included)

    def argv(self, runs: pathlib.Path) -> list[str]:
        words = shlex.split(self.command.format(runs=runs))
        if words[:2] != ["python", "-m"]:
            raise ValueError(f"Run {self.name}: the command must start 'python -m': {self.command}")
        return [sys.executable, *words[1:]]

    def needs(self, names: Sequence[str]) -> list[str]:
        """The other runs whose workdirs this command reads (an init_checkpoint)."""
        return [n for n in names if n != self.name and "{runs}/" + n in self.command]


@dataclasses.dataclass
class Stated:
    runs: dict[str, Run]

    @classmethod
    def load(cls, path: pathlib.Path = FIGURES_PATH) -> Stated:
        runs = {}
        for r in json.loads(path.read_text())["runs"]:
            figures = [Figure(**f) for f in r.pop("figures")]
            runs[r["name"]] = Run(**r, figures=figures)
        return cls(runs)

    def save(self, path: pathlib.Path = FIGURES_PATH) -> None:
        data = {"runs": [dataclasses.asdict(r) for r in self.runs.values()]}
        path.write_text(json.dumps(data, indent=1) + "\n")

    def order(self, only: Sequence[str]) -> list[str]:
        """The runs to do, each after the runs it needs."""
        unknown = sorted(set(only) - set(self.runs))
        if unknown:
            raise SystemExit(f"Unknown run(s) {unknown}; the runs are {sorted(self.runs)}.")
        names, done = list(self.runs), []

        def visit(name: str) -> None:
            for need in self.runs[name].needs(names):
                visit(need)
            if name not in done:
                done.append(name)

        for name in only or names:
            visit(name)
        return done


# ----------------------------------------------------------------------------------------------
# The README's figure blocks.
# ----------------------------------------------------------------------------------------------
def _format(value: float, digits: int) -> str:
    return f"{value:.{digits}f}"


def render_block(stated: Stated, names: Sequence[str]) -> str:
    """The markdown table of these runs' stated figures (what a README block holds)."""
    lines = ["| run | figures | measured | wall |", "|---|---|---|---|"]
    hosts = []
    for name in names:
        run = stated.runs[name]
        figures = ", ".join(f"{f.label} {_format(f.stated, f.digits)}" for f in run.figures)
        lines.append(f"| `{name}` | {figures} | {run.date} | {run.seconds:.0f} s |")
        hosts += [run.host] * (run.host not in hosts)
    lines.append("")
    lines.append(
        f"By `python -m benchmarks.reproduce --only={','.join(names)}` on {' / '.join(hosts)} "
        "(stated in `benchmarks/figures.json`; wall time includes compilation)."
    )
    return "\n".join(lines) + "\n"


def render_readme(text: str, stated: Stated) -> str:
    """``text`` with every figures block re-rendered from ``stated``."""

    def block(m: re.Match) -> str:
        names = m.group(2).split()
        unknown = [n for n in names if n not in stated.runs]
        if unknown:
            raise ValueError(f"README block names unknown runs {unknown}; see {FIGURES_PATH}.")
        return m.group(1) + render_block(stated, names) + m.group(4)

    return _BLOCK.sub(block, text)


def readme_runs(text: str) -> list[str]:
    """The runs the README's figure blocks show, in order."""
    return [n for m in _BLOCK.finditer(text) for n in m.group(2).split()]


# ----------------------------------------------------------------------------------------------
# Running and checking.
# ----------------------------------------------------------------------------------------------
def this_host() -> str:
    """The processor, as figures.json records it: XLA:CPU computes otherwise with AVX-512."""
    with open("/proc/cpuinfo") as f:
        avx512 = "avx512f" in f.read()
    return f"{hardware()}, {'with' if avx512 else 'no'} AVX-512"


def execute(run: Run, runs: pathlib.Path, log: pathlib.Path) -> tuple[float, bool]:
    """Runs one command (unless its workdir holds a finished run): (seconds, reused)."""
    if (runs / run.name / "results.json").exists():
        return 0.0, True
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}  # one CPU device
    t0 = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.run(run.argv(runs), cwd=ROOT, env=env, stdout=out, stderr=out)
    seconds = time.perf_counter() - t0
    if proc.returncode:
        print(f"{run.name} failed (exit {proc.returncode}); its log: {log}", file=sys.stderr)
    return seconds, False


HEADER = ("run", "figure", "stated", "measured", "verdict", "time")


def check(run: Run, workdir: pathlib.Path, host: str, when: str) -> tuple[list[list[str]], dict]:
    """A table row per figure of a finished run, and what it measured ({} if it did not finish)."""
    rows, measured = [], {}
    for figure in run.figures:
        stated = _format(figure.stated, figure.digits)
        try:
            value = figure.measure(workdir)
        except (FileNotFoundError, KeyError) as e:
            print(f"{run.name}: {e}", file=sys.stderr)
            rows.append([run.name, figure.label, stated, "-", "MISS", when])
            continue
        verdict = figure.verdict(value, host == run.host, run.deterministic)
        verdict = f"within {figure.tolerance:g}" if verdict == "within" else verdict
        rows.append([run.name, figure.label, stated, _format(value, figure.digits + 1), verdict,
                     when])  # fmt: skip
        measured[figure.label] = value
    return rows, measured if len(measured) == len(run.figures) else {}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="", help="comma-separated run names (default: all)")
    parser.add_argument("--runs", default="", help="folder for the runs (default: a new one)")
    parser.add_argument("--figures", default=str(FIGURES_PATH), help="the stated figures")
    parser.add_argument(
        "--record", action="store_true", help="store the measured figures as the stated ones"
    )
    args = parser.parse_args(argv)
    figures_path = pathlib.Path(args.figures)
    stated = Stated.load(figures_path)
    order = stated.order([n for n in args.only.split(",") if n])
    runs = pathlib.Path(args.runs or tempfile.mkdtemp(prefix="bert_jax_reproduce_"))
    runs.mkdir(parents=True, exist_ok=True)
    host = this_host()
    print(f"Runs in {runs}; this host: {host}.", flush=True)

    table: list[list[str]] = []
    for name in order:
        run = stated.runs[name]
        print(f"\n{name}: {run.command.format(runs=runs)}  (log: {runs / name}.log)", flush=True)
        seconds, reused = execute(run, runs, runs / f"{name}.log")
        rows, measured = check(run, runs / name, host, "reused" if reused else f"{seconds:.0f} s")
        print(format_table(HEADER, rows), flush=True)
        table += rows
        if args.record and measured and not reused:
            for figure in run.figures:
                figure.stated = round(measured[figure.label], figure.digits)
            run.date, run.host = datetime.date.today().isoformat(), host
            run.seconds = round(seconds)

    misses = sum(row[4] == "MISS" for row in table)
    print(f"\n{format_table(HEADER, table)}\n\n{len(table) - misses} of {len(table)} figures pass.")
    if args.record:
        stated.save(figures_path)
        print(f"Recorded into {figures_path}.")
        if figures_path == FIGURES_PATH:
            README_PATH.write_text(render_readme(README_PATH.read_text(), stated))
            print(f"Re-rendered the figure tables of {README_PATH}.")
        return 0
    return 1 if misses else 0


if __name__ == "__main__":
    sys.exit(main())
