r"""Hyperparameter sweeps: expand a grid, run it, then tabulate and plot the results.

A sweep file is a small program, like a config: ``get_sweep(arg) -> Sweep`` names the config, the
axes of the grid and the ``results.json`` metric that ranks the settings. Each run is

  python -m bert_jax.main --config=CONFIG --workdir=SWEEP_DIR/NAME --config.FIELD=VALUE ...

where NAME spells the run's overrides (``learning_rate=3e-05,batch_size=32,seed=1``). A run whose
workdir holds ``results.json`` is finished and skipped, so running the same command again resumes
an interrupted sweep. The paper's GLUE grid on MRPC, three random restarts, two runs at a time:

  python -m bert_jax.sweep --sweep=configs/sweeps/glue_paper.py:task=mrpc,model=base,seeds=3 \
    --sweep_dir=/tmp/mrpc_grid --parallel=2 --extra=--config.init_checkpoint=/ckpt/bert_base

Launchers (``--dry_run`` prints the chosen launcher's commands instead of running them):

* ``local``: subprocesses on this machine, ``--parallel`` at a time, each logging to
  ``SWEEP_DIR/NAME/log.txt``; a failed run is reported at the end and does not stop the others.
* ``print``: print the commands.
* ``tpu_vm``: one run after another through ``launch/tpu_vm.sh mount,train,collect`` on the TPU VM
  that $TPU_NAME and $ZONE name, with workdirs under ``--remote_dir=gs://...``, each collected
  back into SWEEP_DIR/NAME.

Afterwards, or alone with ``--tabulate_only``, it writes into SWEEP_DIR: results.md and
results.csv (a row per run and a row per setting, the overrides without the seed, with mean ±
sample std over seeds and the best setting marked), plot_<field>.png (the metric against each
swept numeric field) and loss_curves.png.

Pipelines. ``get_sweep`` may instead return a :class:`Pipeline`: rows to pretrain (each once),
and fine-tuning stages, each a Sweep with its own grid and restarts, run from every pretrained
model (``--config.init_checkpoint=SWEEP_DIR/<row>/pretrain``) once that pretraining has finished.
The table is the paper's: a row per setting, a column per task (the grid setting best on dev,
mean ± std over its restarts) plus pretraining metrics (results.md, results.csv, results.png),
each stage's grid tabulated in its own directory. ``--extra=STAGE:ARG`` passes ARG to one stage
only (``pretrain:--config.data.data_dir=...``); the paper's ablation tables are pipelines:

  python -m bert_jax.sweep --sweep=configs/ablations/masking.py:model=tiny \
    --sweep_dir=/tmp/table8 --parallel=2
"""

from __future__ import annotations

import collections
import concurrent.futures
import csv
import dataclasses
import importlib.util
import itertools
import json
import math
import re
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from absl import app, flags

from bert_jax.config_lib import load_config

REPO_ROOT = Path(__file__).resolve().parent.parent
TPU_VM_SCRIPT = REPO_ROOT / "launch" / "tpu_vm.sh"
RESULTS_FILE = "results.json"
METRICS_FILE = "metrics.jsonl"
LOG_FILE = "log.txt"
DEFAULT_TRAINER = (sys.executable, "-m", "bert_jax.main")
# Plot legends with more entries than this hide the curves they label.
_MAX_LEGEND = 12

Value = bool | int | float | str | tuple
_FIELD = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")


if __name__ == "__main__":
    # Sweep files import bert_jax.sweep: under `python -m` let that be this module, so that there
    # is one Sweep class and one set of flags.
    sys.modules.setdefault("bert_jax.sweep", sys.modules[__name__])


# --------------------------------------------------------------------------------- the grid


@dataclasses.dataclass(frozen=True)
class Axis:
    """One dimension of the grid: its fields vary together, taking their i-th values at once.

    A single field is a product axis; several fields are zipped (all lists of one length)::

        Axis({"learning_rate": [5e-5, 3e-5, 2e-5]})
        Axis({"data.mask_token_ratio": [0.8, 1.0], "data.random_token_ratio": [0.1, 0.0]})
    """

    values: Mapping[str, Sequence[Value]]

    def __post_init__(self):
        if not self.values:
            raise ValueError("An Axis needs at least one field, e.g. Axis({'seed': [0, 1]}).")
        for field in self.values:
            if not _FIELD.match(field):
                raise ValueError(
                    f"Axis field {field!r} is not a config path like 'learning_rate' or "
                    "'model.num_layers'."
                )
        lengths = {field: len(values) for field, values in self.values.items()}
        if len(set(lengths.values())) != 1:
            raise ValueError(f"Zipped fields need one value each per point; lengths: {lengths}.")
        if not next(iter(lengths.values())):
            raise ValueError(f"Axis {list(self.values)} has no values.")
        object.__setattr__(self, "values", {f: tuple(v) for f, v in self.values.items()})

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(self.values)

    def points(self) -> list[dict[str, Value]]:
        """The axis's points in order, each a dict ``field -> value``."""
        columns = zip(*self.values.values(), strict=True)
        return [dict(zip(self.values, point, strict=True)) for point in columns]


@dataclasses.dataclass(frozen=True)
class Run:
    """One point of the grid: its name (also its workdir's name) and its swept overrides."""

    name: str
    overrides: Mapping[str, Value]


@dataclasses.dataclass(frozen=True)
class Sweep:
    """A grid over a config: the cross product of ``axes``, ranked by ``metric``.

    Attributes:
      config: ``CONFIG_PATH:ARG`` as passed to ``bert_jax.main --config``; a relative path is
        relative to the repository root.
      axes: :class:`Axis` objects or plain dicts (one key: a product axis; several: zipped).
      metric: the ``results.json`` key that ranks the settings.
      mode: ``"max"`` or ``"min"``: whether a larger metric is better.
      seed_field: the field of random restarts; a setting is a run's overrides without it.
      base_overrides: fields set in every run, not part of the run names.

    Example::

        Sweep("configs/glue.py:task=mrpc,model=base",
              [{"learning_rate": [5e-5, 3e-5]}, {"seed": [0, 1, 2]}],
              metric="best/dev/f1", mode="max")
    """

    config: str
    axes: Sequence[Axis | Mapping[str, Sequence[Value]]]
    metric: str
    mode: str = "max"
    seed_field: str = "seed"
    base_overrides: Mapping[str, Value] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        axes = tuple(a if isinstance(a, Axis) else Axis(a) for a in self.axes)
        object.__setattr__(self, "axes", axes)
        if self.mode not in ("max", "min"):
            raise ValueError(f"Sweep mode must be 'max' or 'min', got {self.mode!r}.")
        if not self.config.partition(":")[0].endswith(".py"):
            raise ValueError(f"Sweep config {self.config!r} is not of the form 'path.py[:arg]'.")
        seen = collections.Counter(f for a in axes for f in a.fields)
        if repeated := sorted(f for f, n in seen.items() if n > 1):
            raise ValueError(f"Fields {repeated} appear on several axes; zip them into one.")
        if both := sorted(set(seen) & set(self.base_overrides)):
            raise ValueError(f"Fields {both} are both swept and in base_overrides.")

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(f for a in self.axes for f in a.fields)

    @property
    def setting_fields(self) -> tuple[str, ...]:
        """The swept fields that define a setting: all but the seed."""
        return tuple(f for f in self.fields if f != self.seed_field)

    def runs(self) -> list[Run]:
        """The cross product of the axes, the last axis varying fastest."""
        runs = []
        for combo in itertools.product(*(a.points() for a in self.axes)):
            overrides = {k: v for point in combo for k, v in point.items()}
            runs.append(Run(run_name(overrides), overrides))
        names = collections.Counter(r.name for r in runs)
        if clashes := [n for n, count in names.items() if count > 1]:
            raise ValueError(f"Distinct runs share the names {clashes}; make the values distinct.")
        return runs


def format_value(value: Value) -> str:
    """A value as ``--config.FIELD=`` parses it: ``3e-05``, ``True``, ``(2,2,2)``."""
    if isinstance(value, tuple):
        return (
            "(" + ",".join(format_value(v) for v in value) + ("," if len(value) == 1 else "") + ")"
        )
    return repr(value) if isinstance(value, float) else str(value)


def run_name(overrides: Mapping[str, Value]) -> str:
    """A readable, filesystem-safe name: ``learning_rate=3e-05,batch_size=32,seed=1``."""
    parts = []
    for field, value in overrides.items():
        text = (
            "x".join(map(format_value, value)) if isinstance(value, tuple) else format_value(value)
        )
        parts.append(f"{field}={re.sub(r'[^A-Za-z0-9_.+-]', '_', text)}")
    return ",".join(parts) or "default"


def config_args(overrides: Mapping[str, Value]) -> list[str]:
    """The ``--config.FIELD=VALUE`` flags that apply ``overrides``."""
    return [f"--config.{field}={format_value(value)}" for field, value in overrides.items()]


# ----------------------------------------------------------------------------- loading files


def resolve_path(path: str) -> Path:
    """``path`` as given if it exists here, else relative to the repository root."""
    p = Path(path)
    return p if p.is_absolute() or p.exists() else REPO_ROOT / p


def resolve_config(config: str) -> str:
    """``CONFIG_PATH:ARG`` with the path resolved by :func:`resolve_path`."""
    path, sep, arg = config.partition(":")
    return f"{resolve_path(path)}{sep}{arg}"


def load_sweep(spec: str) -> Sweep | Pipeline:
    """Loads ``path/to/sweep.py[:arg]`` and calls its ``get_sweep(arg)``."""
    path, _, arg = spec.partition(":")
    path = resolve_path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Sweep file {path} not found (from --sweep={spec}).")
    module_spec = importlib.util.spec_from_file_location(f"_sweep_{path.stem}", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    if not hasattr(module, "get_sweep"):
        raise AttributeError(f"Sweep file {path} defines no get_sweep(arg) -> Sweep.")
    sweep = module.get_sweep(arg or None)
    if not isinstance(sweep, Sweep | Pipeline):
        raise TypeError(
            f"get_sweep in {path} returned {type(sweep).__name__}, not a Sweep or a Pipeline."
        )
    return sweep


def validate(sweep: Sweep | Pipeline, extra: Sequence[str] = ()) -> None:
    """Applies every run's overrides to the locked config, as ``bert_jax.main`` will.

    Fails before anything is launched when a field is misspelled or a value has the wrong type.
    """
    if isinstance(sweep, Pipeline):
        _validate_pipeline(sweep, extra)
        return
    config = resolve_config(sweep.config)
    extra_config = [e for e in extra if e.startswith("--config.")]
    for run in sweep.runs():
        argv = [f"--config={config}", *config_args(sweep.base_overrides)]
        argv += [*config_args(run.overrides), *extra_config]
        try:
            load_config(argv)  # loads the config file and applies the overrides
        except Exception as e:
            raise ValueError(f"Run {run.name}: {sweep.config} rejects its overrides: {e}") from e


# ------------------------------------------------------------------------------ launching


def run_command(
    sweep: Sweep,
    run: Run,
    sweep_dir: str | Path,
    *,
    launcher: str = "local",
    trainer: Sequence[str] = DEFAULT_TRAINER,
    extra: Sequence[str] = (),
    remote_dir: str | None = None,
) -> list[str]:
    """The command line that trains ``run`` with ``launcher`` (``local``, ``print``, ``tpu_vm``)."""
    overrides = config_args({**sweep.base_overrides, **run.overrides})
    workdir = Path(sweep_dir) / run.name
    if launcher in ("local", "print"):
        config = f"--config={resolve_config(sweep.config)}"
        return [*trainer, config, f"--workdir={workdir}", *overrides, *extra]
    if launcher == "tpu_vm":
        if not (remote_dir or "").startswith("gs://"):
            raise ValueError(
                "--launcher=tpu_vm needs --remote_dir=gs://BUCKET/PATH: every worker of a pod "
                "slice writes its checkpoints there."
            )
        # The config path stays relative: it is resolved in the repository copy on the workers.
        return [
            "bash",
            str(TPU_VM_SCRIPT),
            "mount,train,collect",
            f"--config={sweep.config}",
            f"--workdir={remote_dir.rstrip('/')}/{run.name}",
            f"--collect_to={workdir}",
            "--",
            *overrides,
            *extra,
        ]
    raise ValueError(f"Unknown launcher {launcher!r}; choose local, print or tpu_vm.")


def is_finished(sweep_dir: str | Path, run: Run) -> bool:
    """Whether ``run`` wrote its results.json: finished runs are never launched again."""
    return (Path(sweep_dir) / run.name / RESULTS_FILE).exists()


@dataclasses.dataclass(frozen=True)
class Job:
    """A command to run: ``name`` (its workdir relative to the sweep directory), the workdir, and
    the job that must succeed before it starts (a pipeline's fine-tuning waits for pretraining)."""

    name: str
    command: Sequence[str]
    workdir: Path
    after: str | None = None


def _execute(command: Sequence[str], workdir: Path) -> str | None:
    """Runs ``command`` with its output in ``workdir/log.txt``; returns why it failed, or None."""
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / LOG_FILE
    # Appends: the log of an earlier, interrupted attempt explains why it is being re-run.
    with open(log_path, "a") as log:
        log.write(f"=== {time.strftime('%Y-%m-%d %H:%M:%S')}\n{shlex.join(command)}\n\n")
        log.flush()
        try:
            code = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT).returncode
        except OSError as e:
            return f"could not start: {e}"
    if code:
        return f"exit code {code}, see {log_path}"
    if not (workdir / RESULTS_FILE).exists():
        return f"exited 0 but wrote no {RESULTS_FILE}, see {log_path}"
    return None


def run_jobs(
    jobs: Sequence[Job],
    *,
    launcher: str = "local",
    parallel: int = 1,
    dry_run: bool = False,
    echo: Callable[[str], None] = print,
) -> dict[str, str]:
    """Runs ``jobs``, ``parallel`` at a time, each once the job it waits for has succeeded;
    returns ``{job name: why it failed}``.

    A failed job does not stop the others; the jobs waiting for it are skipped and reported. With
    ``dry_run`` (or the ``print`` launcher) it only echoes the commands, in order.
    """
    if parallel < 1:
        raise ValueError(f"--parallel must be at least 1, got {parallel}.")
    if launcher == "tpu_vm" and parallel != 1:
        raise ValueError(
            "--launcher=tpu_vm runs one run at a time on its TPU VM: use --parallel=1."
        )
    if dry_run or launcher == "print":
        for job in jobs:
            echo(shlex.join(job.command))
        return {}

    def one(job: Job) -> tuple[str | None, float]:
        start = time.monotonic()
        return _execute(job.command, job.workdir), time.monotonic() - start

    names = {job.name for job in jobs}
    waiting: dict[str, list[Job]] = {}
    failed, done = {}, 0
    with concurrent.futures.ThreadPoolExecutor(parallel) as pool:
        running = {}
        for job in jobs:
            if job.after in names:
                waiting.setdefault(job.after, []).append(job)
            else:
                running[pool.submit(one, job)] = job
        while running:
            finished, _ = concurrent.futures.wait(
                running, return_when=concurrent.futures.FIRST_COMPLETED
            )
            for future in finished:
                job = running.pop(future)
                error, seconds = future.result()
                done += 1
                status = f"FAILED ({error})" if error else "done"
                echo(f"[{done}/{len(jobs)}] {job.name}: {status} in {seconds:.0f}s")
                followers = waiting.pop(job.name, [])
                if error:
                    failed[job.name] = error
                    # Transitively: whatever waits for a skipped job is skipped too.
                    while followers:
                        follower = followers.pop()
                        failed[follower.name] = f"skipped: {job.name} failed"
                        followers += waiting.pop(follower.name, [])
                        done += 1
                        echo(f"[{done}/{len(jobs)}] {follower.name}: skipped ({job.name} failed)")
                for follower in followers:
                    running[pool.submit(one, follower)] = follower
    return failed


def _sweep_jobs(
    sweep: Sweep, sweep_dir: Path, extra: Sequence[str], remote_dir: str | None, **kwargs: Any
) -> tuple[list[Job], int]:
    """The jobs of the unfinished runs, and the number of runs."""
    runs, jobs = sweep.runs(), []
    for r in runs:
        if not is_finished(sweep_dir, r):
            command = run_command(sweep, r, sweep_dir, extra=extra, remote_dir=remote_dir, **kwargs)
            jobs.append(Job(r.name, command, sweep_dir / r.name))
    return jobs, len(runs)


def launch(
    sweep: Sweep | Pipeline,
    sweep_dir: str | Path,
    *,
    launcher: str = "local",
    parallel: int = 1,
    trainer: Sequence[str] = DEFAULT_TRAINER,
    extra: Sequence[str] = (),
    remote_dir: str | None = None,
    dry_run: bool = False,
    echo: Callable[[str], None] = print,
) -> dict[str, str]:
    """Runs the unfinished runs of a sweep or a pipeline; returns ``{run: why it failed}``, runs
    named by their workdirs relative to ``sweep_dir``.

    With ``dry_run`` (or the ``print`` launcher) it only echoes the commands. A failed run does
    not stop the others. A pipeline's fine-tuning run starts once its pretraining has finished;
    when that fails, the row's fine-tuning runs are skipped and reported, and the other rows go on.
    """
    make_jobs = _pipeline_jobs if isinstance(sweep, Pipeline) else _sweep_jobs
    jobs, total = make_jobs(
        sweep, Path(sweep_dir), extra, remote_dir, launcher=launcher, trainer=trainer
    )
    echo(f"{total} runs, {total - len(jobs)} finished already, {len(jobs)} to run.")
    return run_jobs(jobs, launcher=launcher, parallel=parallel, dry_run=dry_run, echo=echo)


# ----------------------------------------------------------------------------- tabulating


@dataclasses.dataclass
class Setting:
    """One setting (a run's overrides without the seed): its metrics' mean and std over seeds."""

    overrides: dict[str, Value]
    mean: dict[str, float]
    std: dict[str, float]  # sample std (n - 1); NaN for a single run
    n: int  # finished runs

    @property
    def name(self) -> str:
        return run_name(self.overrides)


def read_results(sweep_dir: str | Path, run: Run) -> dict[str, float] | None:
    """The numeric final metrics of a finished run, None if it has not finished."""
    path = Path(sweep_dir) / run.name / RESULTS_FILE
    if not path.exists():
        return None
    results = json.loads(path.read_text())
    return {k: v for k, v in results.items() if _is_number(v)}


def summarize(
    sweep: Sweep, results: Mapping[str, Mapping[str, float] | None]
) -> tuple[list[str], list[Setting], Setting | None]:
    """The metric keys (the ranking metric first), the settings, and the best setting.

    ``results`` maps each run's name to its numeric results, or None while it is unfinished.
    """
    finished = {name: r for name, r in results.items() if r is not None}
    for name, r in finished.items():
        if sweep.metric not in r:
            raise ValueError(
                f"{name}/{RESULTS_FILE} has no metric {sweep.metric!r} (it has {sorted(r)}); "
                "fix the sweep's metric."
            )
    # Held-out metrics (eval/..., best/dev/...) before training-time ones (loss, tokens_per_sec).
    others = sorted(
        {k for r in finished.values() for k in r} - {sweep.metric}, key=lambda k: ("/" not in k, k)
    )
    keys = [sweep.metric, *others] if finished else []

    groups: dict[tuple, list[Run]] = {}
    for run in sweep.runs():
        setting = tuple((f, run.overrides[f]) for f in sweep.setting_fields)
        groups.setdefault(setting, []).append(run)
    settings = []
    for setting, runs in groups.items():
        mean, std = {}, {}
        for key in keys:
            values = [finished[r.name][key] for r in runs if key in finished.get(r.name, {})]
            if values:
                mean[key] = statistics.fmean(values)
                std[key] = statistics.stdev(values) if len(values) > 1 else math.nan
        n = sum(r.name in finished for r in runs)
        settings.append(Setting(dict(setting), mean, std, n))

    ranked = [s for s in settings if s.n]
    sign = 1 if sweep.mode == "max" else -1
    best = max(ranked, key=lambda s: sign * s.mean[sweep.metric], default=None)
    return keys, settings, best


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        return str(int(value)) if value.is_integer() and abs(value) >= 1 else f"{value:.4g}"
    return format_value(value)


def _mean_std(s: Setting, key: str) -> str:
    if key not in s.mean:
        return ""
    return _fmt(s.mean[key]) + ("" if math.isnan(s.std[key]) else f" ± {_fmt(s.std[key])}")


def _markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def write_tables(
    sweep: Sweep,
    sweep_dir: str | Path,
    results: Mapping[str, Mapping[str, float] | None],
    keys: Sequence[str],
    settings: Sequence[Setting],
    best: Setting | None,
) -> None:
    """SWEEP_DIR/results.md and results.csv: a row per setting and a row per run."""
    sweep_dir = Path(sweep_dir)
    fields = sweep.setting_fields
    best_name = best.name if best else None
    md = [
        f"# Sweep over `{sweep.config}`",
        "",
        f"Ranked by `{sweep.metric}` ({sweep.mode}); settings show mean ± sample std over "
        f"`{sweep.seed_field}` and n, the number of finished runs.",
        "",
    ]
    if best:
        md += [f"**Best setting:** `{best.name}`: {_mean_std(best, sweep.metric)} (n={best.n})", ""]
    md += ["## Settings", ""]
    md += _markdown_table(
        ["best", *fields, "n", *keys],
        [
            ["**best**" if s.name == best_name else "", *map(_fmt, s.overrides.values()), str(s.n)]
            + [_mean_std(s, k) for k in keys]
            for s in settings
        ],
    )
    md += ["", "## Runs", ""]
    run_rows = []
    for run in sweep.runs():
        r = results.get(run.name)
        status = "finished" if r is not None else "not finished"
        values = [_fmt(float(r[k])) if r and k in r else "" for k in keys]
        run_rows.append(
            [run.name, *(_fmt(run.overrides[f]) for f in sweep.fields), status, *values]
        )
    md += _markdown_table(["name", *sweep.fields, "status", *keys], run_rows)
    (sweep_dir / "results.md").write_text("\n".join(md) + "\n")

    header = ["kind", "name", "best", *sweep.fields, "status", "n"]
    header += [c for k in keys for c in (k, f"{k}/std")]
    with open(sweep_dir / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, header, restval="")
        writer.writeheader()
        for s in settings:
            row = {"kind": "setting", "name": s.name, "best": s.name == best_name, "n": s.n}
            row.update({k: format_value(v) for k, v in s.overrides.items()})
            for k in keys:
                if k in s.mean:
                    row[k] = s.mean[k]
                    row[f"{k}/std"] = "" if math.isnan(s.std[k]) else s.std[k]
            writer.writerow(row)
        for run in sweep.runs():
            r = results.get(run.name)
            row = {"kind": "run", "name": run.name, "status": "finished" if r else "not finished"}
            row.update({k: format_value(v) for k, v in run.overrides.items()})
            row.update({k: r[k] for k in keys if r and k in r})
            writer.writerow(row)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on clusters
    import matplotlib.pyplot as plt

    return plt


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def plot_metric(sweep: Sweep, sweep_dir: str | Path, settings: Sequence[Setting]) -> list[Path]:
    """SWEEP_DIR/plot_<field>.png: the metric (mean ± std over seeds) against each numeric field.

    One line per combination of the other axes; fields zipped with the plotted one move with it.
    """
    plt = _pyplot()
    axis_of = {f: a for a in sweep.axes for f in a.fields}
    ranked = [s for s in settings if s.n]
    written = []
    for field in sweep.setting_fields:
        xs = {s.overrides[field] for s in ranked}
        if len(xs) < 2 or not all(map(_is_number, xs)):
            continue
        lines: dict[str, list[Setting]] = {}
        for s in ranked:
            others = {f: v for f, v in s.overrides.items() if f not in axis_of[field].fields}
            lines.setdefault(run_name(others) if others else "", []).append(s)
        fig, ax = plt.subplots(figsize=(6, 4))
        for label, line in lines.items():
            line.sort(key=lambda s: s.overrides[field])
            x = [s.overrides[field] for s in line]
            y = [s.mean[sweep.metric] for s in line]
            err = [0.0 if math.isnan(s.std[sweep.metric]) else s.std[sweep.metric] for s in line]
            # Zipped axes can repeat an x value: connect points only where x is a function.
            fmt = "o-" if len(set(x)) == len(x) else "o"
            ax.errorbar(x, y, yerr=err, fmt=fmt, capsize=3, label=label or None)
        if min(xs) > 0 and max(xs) / min(xs) >= 10:
            ax.set_xscale("log")
        else:  # learning rates: 3e-5 rather than 0.000030 crowding the axis
            ax.ticklabel_format(axis="x", style="sci", scilimits=(-3, 4))
        ax.set(xlabel=field, ylabel=sweep.metric, title=f"{sweep.metric} vs {field}")
        if 1 < len(lines) <= _MAX_LEGEND:
            ax.legend(fontsize="x-small")
        fig.tight_layout()
        path = Path(sweep_dir) / f"plot_{field}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written


def read_curve(path: Path, key: str = "loss") -> tuple[list[float], list[float]]:
    """(steps, values) of ``key`` in a metrics.jsonl; a torn last line (a live run) is skipped."""
    steps, values = [], []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if key in record and "step" in record:
            steps.append(record["step"])
            values.append(record[key])
    return steps, values


def plot_loss_curves(sweep: Sweep, sweep_dir: str | Path) -> Path | None:
    """SWEEP_DIR/loss_curves.png: training loss against step for every run that logged one.

    The runs of one setting (its seeds) share a colour and a legend entry.
    """
    curves = {}
    for run in sweep.runs():
        path = Path(sweep_dir) / run.name / METRICS_FILE
        if path.exists() and (curve := read_curve(path))[0]:
            setting = {f: run.overrides[f] for f in sweep.setting_fields}
            curves.setdefault(run_name(setting), []).append(curve)
    if not curves:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, (setting, runs) in enumerate(curves.items()):
        for j, (steps, losses) in enumerate(runs):
            label = setting if j == 0 else None
            ax.plot(steps, losses, color=f"C{i % 10}", alpha=0.7, linewidth=1, label=label)
    ax.set(xlabel="step", ylabel="loss", title="training loss")
    if len(curves) <= _MAX_LEGEND:
        ax.legend(fontsize="x-small")
    fig.tight_layout()
    path = Path(sweep_dir) / "loss_curves.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def tabulate(sweep: Sweep, sweep_dir: str | Path) -> Setting | None:
    """Writes results.md, results.csv and the plots into ``sweep_dir``; returns the best setting."""
    sweep_dir = Path(sweep_dir)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    results = {run.name: read_results(sweep_dir, run) for run in sweep.runs()}
    keys, settings, best = summarize(sweep, results)
    write_tables(sweep, sweep_dir, results, keys, settings, best)
    plot_metric(sweep, sweep_dir, settings)
    plot_loss_curves(sweep, sweep_dir)
    return best


# ------------------------------------------------------------------------------ pipelines

PRETRAIN_DIR = "pretrain"
# A --extra=STAGE:ARG goes to one stage of a pipeline only ("pretrain" for pretraining).
_STAGE_EXTRA = re.compile(r"^([A-Za-z_][\w.+-]*):(-.*)$")

Metric = str | Callable[[Mapping[str, float]], float]


@dataclasses.dataclass(frozen=True)
class Row:
    """A row of a pipeline's table: a pretraining setting and what its fine-tuning runs add.

    Rows with the same ``pretrain`` overrides share one pretraining run: the paper's "+ BiLSTM"
    row fine-tunes the "LTR & No NSP" model with a BiLSTM on top.

    Attributes:
      label: the row's name in the table, e.g. "No NSP" or "3/768/12".
      pretrain: overrides of the pretraining config.
      finetune: overrides of every fine-tuning run of the row (they are part of the run names).
      paper: the paper's number for each column, shown in a table of their own.
      stages: the names of the stages the row is fine-tuned on; None: all of them.
    """

    label: str
    pretrain: Mapping[str, Value] = dataclasses.field(default_factory=dict)
    finetune: Mapping[str, Value] = dataclasses.field(default_factory=dict)
    paper: Mapping[str, float] = dataclasses.field(default_factory=dict)
    stages: Sequence[str] | None = None

    @property
    def pretrain_name(self) -> str:
        """The directory of the row's pretraining (and of its fine-tuning stages)."""
        return run_name(self.pretrain)

    @property
    def finetune_name(self) -> str:
        return run_name(self.finetune) if self.finetune else ""


@dataclasses.dataclass(frozen=True)
class Stage:
    """A fine-tuning stage: every pretrained model of a pipeline fine-tuned over ``sweep``.

    The sweep gives the config, the grid with its seed axis (the restarts) and the dev metric
    (a results.json key); the pipeline adds ``init_checkpoint`` and the row's fine-tuning fields.
    As the paper's protocol has it, the column shows the grid setting best on dev (mean over
    restarts), as mean ± std over its restarts.

    Attributes:
      column: the table's column, e.g. "MNLI-m".
      sweep: the fine-tuning grid.
      name: the stage's directory under each pretraining run; default ``column`` made safe.
      scale: the metric is shown times this (100 shows a fraction in percent, as the paper).
    """

    column: str
    sweep: Sweep
    name: str = ""
    scale: float = 1.0

    @classmethod
    def grid(
        cls,
        column: str,
        config: str,
        metric: str,
        learning_rates: Sequence[float],
        seeds: int,
        *,
        name: str = "",
        scale: float = 1.0,
        **overrides: Value,
    ) -> Stage:
        """The paper's fine-tuning protocol: ``learning_rates`` x ``seeds`` restarts of ``config``
        (with ``overrides``), ranked by the dev ``metric`` (larger is better)."""
        if seeds < 1:
            raise ValueError(f"seeds={seeds}: need at least one run per setting.")
        axes = [{"learning_rate": list(learning_rates)}, {"seed": list(range(seeds))}]
        sweep = Sweep(config, axes, metric, base_overrides=overrides)
        return cls(column, sweep, name=name, scale=scale)

    def __post_init__(self):
        if not self.name:
            name = re.sub(r"[^A-Za-z0-9_.+-]+", "_", self.column).strip("_")
            object.__setattr__(self, "name", name)
        if not re.match(r"^[A-Za-z0-9_.+-]+$", self.name) or self.name == PRETRAIN_DIR:
            raise ValueError(f"Stage name {self.name!r} is not a usable directory name.")


@dataclasses.dataclass(frozen=True)
class Pipeline:
    """Pretrain every row once, then fine-tune each pretrained model on every stage.

    Workdirs: ``SWEEP_DIR/<row's pretraining overrides>/pretrain`` and, for each stage,
    ``SWEEP_DIR/<row's pretraining overrides>/<stage>/<row's fine-tuning overrides + grid point>``,
    started with ``--config.init_checkpoint=<the pretraining workdir>`` once that has finished.

    Attributes:
      config: the pretraining config, ``CONFIG_PATH:ARG``.
      rows: the table's rows (:class:`Row`).
      stages: the fine-tuning stages (:class:`Stage`), a column each.
      columns: pretraining metrics shown: column -> results.json key, or a function of the
        pretraining run's results (e.g. the perplexity from ``eval/mlm_loss``).
      base_overrides: fields set in every pretraining run, not part of the directory names.
      init_field: the fine-tuning field that receives the pretraining workdir.

    Example::

        Pipeline("configs/pretrain.py:model=tiny",
                 [Row("BERT", {"nsp": True}), Row("No NSP", {"nsp": False})],
                 [Stage("MRPC acc", Sweep("configs/glue.py:task=mrpc,model=tiny",
                                          [{"learning_rate": [1e-4]}, {"seed": [0, 1]}],
                                          metric="best/dev/accuracy"), scale=100)])
    """

    config: str
    rows: Sequence[Row]
    stages: Sequence[Stage]
    columns: Mapping[str, Metric] = dataclasses.field(
        default_factory=lambda: {"MLM acc": "eval/mlm_accuracy"}
    )
    base_overrides: Mapping[str, Value] = dataclasses.field(default_factory=dict)
    init_field: str = "init_checkpoint"

    def __post_init__(self):
        object.__setattr__(self, "rows", tuple(self.rows))
        object.__setattr__(self, "stages", tuple(self.stages))
        if not self.rows:
            raise ValueError("A Pipeline needs at least one Row.")
        if not self.config.partition(":")[0].endswith(".py"):
            raise ValueError(f"Pipeline config {self.config!r} is not of the form 'path.py[:arg]'.")
        for what, names in (
            ("row labels", [r.label for r in self.rows]),
            ("rows (pretrain, finetune)", [(r.pretrain_name, r.finetune_name) for r in self.rows]),
            ("stage names", [s.name for s in self.stages]),
            ("columns", [*self.columns, *(s.column for s in self.stages)]),
        ):
            if repeated := sorted(str(n) for n, k in collections.Counter(names).items() if k > 1):
                raise ValueError(f"Pipeline {what} must be distinct; repeated: {repeated}.")
        names = {s.name for s in self.stages}
        for row in self.rows:
            if unknown := sorted(set(row.stages or ()) - names):
                raise ValueError(f"Row {row.label!r} names unknown stages {unknown}.")
        for stage in self.stages:
            if self.init_field in {*stage.sweep.fields, *stage.sweep.base_overrides}:
                raise ValueError(
                    f"Stage {stage.name} sets {self.init_field}: the pipeline sets it to the "
                    "pretraining workdir."
                )

    def pretrain_sweep(self, row: Row) -> Sweep:
        """The row's pretraining as a one-run sweep (its run is named by the overrides)."""
        axes = [{field: [value]} for field, value in row.pretrain.items()]
        return Sweep(self.config, axes, metric="", base_overrides=self.base_overrides)

    def stage_sweep(self, row: Row, stage: Stage, init_checkpoint: str = "") -> Sweep:
        """The row's fine-tuning grid of ``stage``, started from ``init_checkpoint``."""
        s = stage.sweep
        return dataclasses.replace(
            s,
            axes=[*({field: [value]} for field, value in row.finetune.items()), *s.axes],
            base_overrides={**s.base_overrides, self.init_field: init_checkpoint},
        )

    def row_stages(self, row: Row) -> list[Stage]:
        """The stages ``row`` is fine-tuned on."""
        return [s for s in self.stages if row.stages is None or s.name in row.stages]

    def pretrainings(self) -> dict[str, Row]:
        """The distinct pretraining runs, by directory name, each with its first row."""
        firsts: dict[str, Row] = {}
        for row in self.rows:
            firsts.setdefault(row.pretrain_name, row)
        return firsts


def stage_extra(extra: Sequence[str], stage: str) -> list[str]:
    """The ``--extra`` arguments for one stage: the unprefixed ones and those of ``STAGE:``."""
    out = []
    for arg in extra:
        if m := _STAGE_EXTRA.match(arg):
            if m[1] == stage:
                out.append(m[2])
        else:
            out.append(arg)
    return out


def _check_stage_extra(pipeline: Pipeline, extra: Sequence[str]) -> None:
    names = {PRETRAIN_DIR, *(s.name for s in pipeline.stages)}
    for arg in extra:
        if (m := _STAGE_EXTRA.match(arg)) and m[1] not in names:
            raise ValueError(f"--extra={arg}: no stage {m[1]!r}; the stages are {sorted(names)}.")


def _validate_pipeline(pipeline: Pipeline, extra: Sequence[str]) -> None:
    """:func:`validate` for every pretraining run and every fine-tuning grid of the pipeline."""
    _check_stage_extra(pipeline, extra)
    for row in pipeline.pretrainings().values():
        validate(pipeline.pretrain_sweep(row), stage_extra(extra, PRETRAIN_DIR))
    for row in pipeline.rows:
        for stage in pipeline.row_stages(row):
            init = str(Path(row.pretrain_name) / PRETRAIN_DIR)
            validate(pipeline.stage_sweep(row, stage, init), stage_extra(extra, stage.name))


def _pipeline_jobs(
    pipeline: Pipeline,
    sweep_dir: Path,
    extra: Sequence[str],
    remote_dir: str | None,
    *,
    launcher: str,
    trainer: Sequence[str],
) -> tuple[list[Job], int]:
    """The jobs of the unfinished runs, each fine-tuning run after its pretraining, and the
    number of runs."""
    _check_stage_extra(pipeline, extra)
    remote = (remote_dir or "").rstrip("/")
    jobs, total = [], 0

    def add(sweep: Sweep, run: Run, parent: str, stage: str, after: str | None = None) -> None:
        nonlocal total
        total += 1
        if not is_finished(sweep_dir / parent, run):
            command = run_command(
                sweep,
                run,
                sweep_dir / parent,
                launcher=launcher,
                trainer=trainer,
                extra=stage_extra(extra, stage),
                remote_dir=remote and f"{remote}/{parent}",
            )
            jobs.append(Job(f"{parent}/{run.name}", command, sweep_dir / parent / run.name, after))

    for pre_name, first in pipeline.pretrainings().items():
        pretraining = Run(PRETRAIN_DIR, first.pretrain)
        add(pipeline.pretrain_sweep(first), pretraining, pre_name, PRETRAIN_DIR)
        pretrain_job = f"{pre_name}/{PRETRAIN_DIR}"
        # On a TPU VM the pretraining workdir is the remote one (tpu_vm.sh passes its mount).
        local = str(sweep_dir / pretrain_job)
        init = f"{remote}/{pretrain_job}" if launcher == "tpu_vm" else local
        for row in (r for r in pipeline.rows if r.pretrain_name == pre_name):
            for stage in pipeline.row_stages(row):
                sweep = pipeline.stage_sweep(row, stage, init)
                for run in sweep.runs():
                    add(sweep, run, f"{pre_name}/{stage.name}", stage.name, after=pretrain_job)
    return jobs, total


@dataclasses.dataclass
class Cell:
    """A fine-tuning entry of a pipeline's table: the grid setting best on dev, its mean ± std
    over restarts (scaled as the stage says)."""

    mean: float  # NaN until a run has finished
    std: float  # sample std over the best setting's restarts; NaN for one
    n: int  # finished restarts of the best setting
    best: str  # the best setting's name
    finished: int  # finished runs of the whole grid
    runs: int
    note: str = ""  # why there is no number yet

    def text(self) -> str:
        if not self.finished:
            return self.note
        text = _fmt_mean_std(self.mean, self.std)
        return text if self.finished == self.runs else f"{text} ({self.finished}/{self.runs} runs)"


@dataclasses.dataclass
class TableRow:
    """A row of a pipeline's table."""

    row: Row
    status: str  # of the pretraining: finished, failed, not finished
    values: dict[str, float]  # pretraining column -> value
    cells: dict[str, Cell]  # stage column -> entry


def _fmt_mean_std(mean: float, std: float = math.nan) -> str:
    """As the paper prints: 84.4 ± 0.3, 3.99; fractions with three decimals (0.691)."""
    if math.isnan(mean):
        return ""
    digits = 1 if abs(mean) >= 10 else 2 if abs(mean) >= 1 else 3
    text = f"{mean:.{digits}f}"
    return text if math.isnan(std) else f"{text} ± {std:.{digits}f}"


def _column_value(metric: Metric, results: Mapping[str, float]) -> float:
    """The column's value; NaN where the run has no such metric (an LTR run has no MLM)."""
    try:
        return float(metric(results) if callable(metric) else results[metric])
    except KeyError:
        return math.nan


def _stage_cell(pipeline: Pipeline, row: Row, stage: Stage, stage_dir: Path, note: str) -> Cell:
    """The row's entry for ``stage``; the stage's grid is tabulated and plotted in its directory.

    ``note``: what the entry says while no run has finished.
    """
    if stage not in pipeline.row_stages(row):
        return Cell(math.nan, math.nan, 0, "", 0, 0, "-")
    sweep = pipeline.stage_sweep(row, stage)
    runs = {r.name: read_results(stage_dir, r) for r in sweep.runs()}
    finished = sum(r is not None for r in runs.values())
    if not finished:
        return Cell(math.nan, math.nan, 0, "", 0, len(runs), note)
    keys, settings, best = summarize(sweep, runs)
    write_tables(sweep, stage_dir, runs, keys, settings, best)
    plot_metric(sweep, stage_dir, settings)
    plot_loss_curves(sweep, stage_dir)
    mean, std = (stage.scale * v[sweep.metric] for v in (best.mean, best.std))
    return Cell(mean, std, best.n, best.name, finished, len(runs))


def summarize_pipeline(
    pipeline: Pipeline, sweep_dir: str | Path, failed: Mapping[str, str] | None = None
) -> list[TableRow]:
    """The table's rows from the runs' results.json; each stage's grid is also tabulated and
    plotted in its own directory (SWEEP_DIR/<pretraining>/<stage>/results.md, ...).

    ``failed``: the failures of this launch (:func:`launch`), to say why a row has no
    fine-tuning numbers.
    """
    failed = failed or {}
    table = []
    for row in pipeline.rows:
        pre_dir = Path(sweep_dir) / row.pretrain_name
        pretrain_failed = f"{row.pretrain_name}/{PRETRAIN_DIR}" in failed
        results = read_results(pre_dir, Run(PRETRAIN_DIR, row.pretrain))
        status = "finished" if results else "failed" if pretrain_failed else "not finished"
        values = {}
        if results is not None:
            values = {c: _column_value(m, results) for c, m in pipeline.columns.items()}
        note = "skipped: pretraining failed" if pretrain_failed else "not run"
        cells = {
            s.column: _stage_cell(pipeline, row, s, pre_dir / s.name, note) for s in pipeline.stages
        }
        table.append(TableRow(row, status, values, cells))
    return table


def pipeline_markdown(pipeline: Pipeline, table: Sequence[TableRow]) -> list[str]:
    """The table as the paper's: a row per setting, a column per metric."""
    header = ["", *pipeline.columns, *(s.column for s in pipeline.stages)]
    rows = []
    for t in table:
        values = [
            _fmt_mean_std(t.values[c]) or "-" if t.values else t.status for c in pipeline.columns
        ]
        rows.append([t.row.label, *values, *(t.cells[s.column].text() for s in pipeline.stages)])
    return _markdown_table(header, rows)


def write_pipeline_tables(
    pipeline: Pipeline, sweep_dir: str | Path, table: Sequence[TableRow]
) -> None:
    """SWEEP_DIR/results.md and results.csv: the table, the paper's, and where each number is."""
    sweep_dir = Path(sweep_dir)
    stages = ", ".join(f"{s.column} (`{s.sweep.config}`)" for s in pipeline.stages)
    md = [
        f"# Pretraining `{pipeline.config}`, then fine-tuning: {stages}",
        "",
        "Each fine-tuning column: the grid setting best on dev (mean over its restarts), as mean "
        "± sample std over those restarts. Pretraining columns: the pretraining run's "
        f"`{RESULTS_FILE}`.",
        "",
        *pipeline_markdown(pipeline, table),
    ]
    finished = [t.values for t in table if t.values]
    if missing := [
        c for c in pipeline.columns if finished and all(math.isnan(v[c]) for v in finished)
    ]:
        md += ["", f"No finished pretraining run reports {missing}: check the pipeline's columns."]
    columns = [*pipeline.columns, *(s.column for s in pipeline.stages)]
    if any(t.row.paper for t in table):
        md += ["", "## The paper's numbers", ""]
        md += _markdown_table(
            ["", *columns],
            [[t.row.label, *(_fmt(t.row.paper.get(c, math.nan)) for c in columns)] for t in table],
        )
    md += ["", "## Runs", ""]
    md += _markdown_table(
        ["", "pretraining", *(s.column for s in pipeline.stages)],
        [
            [
                t.row.label,
                f"`{t.row.pretrain_name}/{PRETRAIN_DIR}`: {t.status}",
                *(
                    f"`{t.row.pretrain_name}/{s.name}/`: best `{c.best}` (n={c.n}), "
                    f"{c.finished}/{c.runs} runs finished"
                    if (c := t.cells[s.column]).finished
                    else c.note
                    for s in pipeline.stages
                ),
            ]
            for t in table
        ],
    )
    (sweep_dir / "results.md").write_text("\n".join(md) + "\n")

    header = ["row", "pretrain", "finetune", "pretraining", *pipeline.columns]
    for s in pipeline.stages:
        header += [s.column, f"{s.column}/std", f"{s.column}/n", f"{s.column}/best"]
        header += [f"{s.column}/finished", f"{s.column}/runs"]
    with open(sweep_dir / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, header, restval="")
        writer.writeheader()
        for t in table:
            out = {"row": t.row.label, "pretrain": t.row.pretrain_name, "pretraining": t.status}
            out["finetune"] = t.row.finetune_name
            out.update(t.values)
            for s in pipeline.stages:
                c = t.cells[s.column]
                out[f"{s.column}/finished"], out[f"{s.column}/runs"] = c.finished, c.runs
                if c.finished:
                    out[s.column] = c.mean
                    out[f"{s.column}/std"] = "" if math.isnan(c.std) else c.std
                    out[f"{s.column}/n"], out[f"{s.column}/best"] = c.n, c.best
                else:
                    out[s.column] = c.note
            writer.writerow(out)


def plot_pipeline(
    pipeline: Pipeline, sweep_dir: str | Path, table: Sequence[TableRow]
) -> Path | None:
    """SWEEP_DIR/results.png: a panel per column, a bar per row (fine-tuning: ± std)."""
    panels = [(c, [(t.values.get(c, math.nan), math.nan) for t in table]) for c in pipeline.columns]
    for s in pipeline.stages:
        panels.append((s.column, [(t.cells[s.column].mean, t.cells[s.column].std) for t in table]))
    panels = [(c, v) for c, v in panels if not all(math.isnan(m) for m, _ in v)]
    if not panels:
        return None
    plt = _pyplot()
    labels = [t.row.label for t in table]
    fig, axes = plt.subplots(
        1, len(panels), figsize=(2.6 * len(panels) + 1.5, 0.4 * len(labels) + 1.5), squeeze=False
    )
    for i, (ax, (column, values)) in enumerate(zip(axes[0], panels, strict=True)):
        drawn = [(y, m, 0.0 if math.isnan(e) else e) for y, (m, e) in enumerate(values)]
        ys, means, errors = zip(*[d for d in drawn if not math.isnan(d[1])], strict=True)
        ax.barh(ys, means, xerr=errors, capsize=3, color=f"C{i % 10}")
        ax.set_ylim(len(labels) - 0.5, -0.5)  # the table's order, top to bottom
        ax.set_yticks(range(len(labels)), labels if i == 0 else [""] * len(labels))
        ax.set_title(column, fontsize="small")
    fig.tight_layout()
    path = Path(sweep_dir) / "results.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def tabulate_pipeline(
    pipeline: Pipeline, sweep_dir: str | Path, failed: Mapping[str, str] | None = None
) -> list[TableRow]:
    """Writes results.md, results.csv and results.png into ``sweep_dir`` (and each stage's
    grid tables into its directory); returns the table's rows."""
    Path(sweep_dir).mkdir(parents=True, exist_ok=True)
    table = summarize_pipeline(pipeline, sweep_dir, failed)
    write_pipeline_tables(pipeline, sweep_dir, table)
    plot_pipeline(pipeline, sweep_dir, table)
    return table


# ---------------------------------------------------------------------------- entry point

_SWEEP = flags.DEFINE_string("sweep", None, "Sweep file, PATH.py[:ARG], defining get_sweep(arg).")
_SWEEP_DIR = flags.DEFINE_string("sweep_dir", None, "Local directory: one workdir per run.")
_LAUNCHER = flags.DEFINE_enum("launcher", "local", ["local", "print", "tpu_vm"], "How to run.")
_PARALLEL = flags.DEFINE_integer("parallel", 1, "Local runs at a time.")
_DRY_RUN = flags.DEFINE_bool("dry_run", False, "Print the commands instead of running them.")
_TABULATE_ONLY = flags.DEFINE_bool("tabulate_only", False, "Only tabulate and plot.")
_EXTRA = flags.DEFINE_multi_string("extra", [], "Argument appended to every run's command.")
_TRAINER = flags.DEFINE_string(
    "trainer", shlex.join(DEFAULT_TRAINER), "The command a run's arguments are appended to."
)
_REMOTE_DIR = flags.DEFINE_string("remote_dir", None, "gs:// parent of the workdirs (tpu_vm).")
_VALIDATE = flags.DEFINE_bool(
    "validate", True, "Check every run's overrides against the config before launching."
)


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if not _SWEEP.value or not _SWEEP_DIR.value:
        raise app.UsageError("--sweep and --sweep_dir are required.")
    sweep = load_sweep(_SWEEP.value)
    sweep_dir = Path(_SWEEP_DIR.value)
    pipeline = isinstance(sweep, Pipeline)
    failed = {}
    if not _TABULATE_ONLY.value:
        if _VALIDATE.value:
            validate(sweep, _EXTRA.value)
        failed = launch(
            sweep,
            sweep_dir,
            launcher=_LAUNCHER.value,
            parallel=_PARALLEL.value,
            trainer=shlex.split(_TRAINER.value),
            extra=_EXTRA.value,
            remote_dir=_REMOTE_DIR.value,
            dry_run=_DRY_RUN.value,
        )
        if _DRY_RUN.value or _LAUNCHER.value == "print":
            return
    if pipeline:
        table = tabulate_pipeline(sweep, sweep_dir, failed)
        print("\n".join(pipeline_markdown(sweep, table)))
        print(f"Tables and plots in {sweep_dir}.")
    elif best := tabulate(sweep, sweep_dir):
        print(f"Tables and plots in {sweep_dir}.")
        print(f"Best setting: {best.name}: {_mean_std(best, sweep.metric)} (n={best.n})")
    else:
        print(f"Tables and plots in {sweep_dir}.")
    if failed:
        print(
            f"{len(failed)} run(s) failed:\n" + "\n".join(f"  {n}: {e}" for n, e in failed.items())
        )
        sys.exit(1)


if __name__ == "__main__":
    app.run(main)
