"""Performance benchmarks: the pretraining step against its peers (and its profile), the input
pipeline, packing, fine-tuning throughput, and real checkpoints and text side by side.

Each benchmark but the fine-tuning one (see there) restarts itself under ``STEADY_MALLOC``,
prints a table, appends a row to ``benchmarks/RESULTS.md`` and prints one JSON object on its
last line (for scripts and tests). Helpers shared by them live here.

Usage::

    python -m benchmarks.train_step --model=base --seq=128 --batch=8 --dtype=float32
    python -m benchmarks.input_pipeline --seq=128 --batch=256
"""

from __future__ import annotations

import datetime
import json
import os
import shlex
import sys
from collections.abc import Sequence

RESULTS_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "RESULTS.md")


def hardware(accelerator: str | None = None) -> str:
    """A one-line description of the machine: the accelerator's name, else the CPU model."""
    if accelerator:
        return accelerator
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            model = next(
                (line.split(":", 1)[1].strip() for line in f if line.startswith("model name")),
                model,
            )
    except OSError:  # not Linux
        pass
    return f"{model}, {os.cpu_count()} cores"


def load_average() -> float:
    """The 1-minute load average: other work on the machine makes CPU numbers noisy."""
    return os.getloadavg()[0]


# glibc hands large freed blocks back to the kernel, so XLA:CPU's per-step temporaries (about a
# gigabyte at BERT-base) are page-faulted in afresh every step: about 0.5 s of kernel time per
# base step, charged to the implementations unevenly depending on what else runs in the process.
# These tunables keep freed memory for reuse (no mmap for large blocks, no trimming, one arena):
# after the first step no implementation faults. glibc reads them only when a process starts.
STEADY_MALLOC = (
    "glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=68719476736:glibc.malloc.arena_max=1"
)


def run_with_steady_malloc() -> None:
    """Restarts this benchmark's process under ``STEADY_MALLOC`` (on Linux, unless
    ``GLIBC_TUNABLES`` is already set: ``GLIBC_TUNABLES= python -m benchmarks...`` opts out).

    Usage, first thing in a benchmark's ``if __name__ == "__main__":`` block::

        run_with_steady_malloc()
        main()
    """
    if sys.platform == "linux" and "GLIBC_TUNABLES" not in os.environ:
        os.environ["GLIBC_TUNABLES"] = STEADY_MALLOC
        os.execv(sys.executable, sys.orig_argv)


# Environment variables that change the speed of what runs, recorded with every result.
SPEED_ENV = ("XLA_FLAGS", "GLIBC_TUNABLES", "OMP_NUM_THREADS", "XLA_PYTHON_CLIENT_MEM_FRACTION")


def command_line() -> str:
    """How this benchmark was started (with any ``SPEED_ENV`` variable set), for the results
    table."""
    module = os.path.splitext(os.path.basename(sys.argv[0]))[0]
    env = [f"{k}={shlex.quote(os.environ[k])}" for k in SPEED_ENV if k in os.environ]
    return " ".join([*env, f"python -m benchmarks.{module}", *map(shlex.quote, sys.argv[1:])])


def format_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A fixed-width text table (the human-readable part of a benchmark's output)."""
    cells = [[str(c) for c in header], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def append_result(
    section: str, header: Sequence[str], row: Sequence[object], path: str = RESULTS_PATH
) -> None:
    """Adds ``row`` (prefixed with the date) to the markdown table under ``## section``.

    The section and its table are created at the end of the file when missing, so each benchmark
    keeps its own table however many rows the others add.
    """
    header = ["date", *header]
    line = "| " + " | ".join(str(c) for c in [datetime.date.today().isoformat(), *row]) + " |"
    lines = []
    if os.path.exists(path):
        with open(path) as f:
            lines = f.read().splitlines()
    title = f"## {section}"
    table_head = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    if title not in lines:
        lines += ["", title, ""]
    i = lines.index(title) + 1
    # The section's table is its first run of "|" lines before the next section.
    while i < len(lines) and not lines[i].startswith(("|", "## ")):
        i += 1
    if i == len(lines) or lines[i].startswith("## "):
        lines[i:i] = table_head
        i += len(table_head)
    while i < len(lines) and lines[i].startswith("|"):
        i += 1
    lines.insert(i, line)
    with open(path, "w") as f:
        f.write("\n".join(lines).lstrip("\n") + "\n")


def publish(result: dict, report, results_file: bool) -> dict:
    """Prints the human report (appending to RESULTS.md unless told not to), then the result as
    one JSON object on the last line, for scripts and tests."""
    report(result, results_file=results_file)
    print(json.dumps(result))
    return result
