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


def load_sweep(spec: str) -> Sweep:
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
    if not isinstance(sweep, Sweep):
        raise TypeError(f"get_sweep in {path} returned {type(sweep).__name__}, not a Sweep.")
    return sweep


def validate(sweep: Sweep, extra: Sequence[str] = ()) -> None:
    """Applies every run's overrides to the locked config, as ``bert_jax.main`` will.

    Fails before anything is launched when a field is misspelled or a value has the wrong type.
    """
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


def launch(
    sweep: Sweep,
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
    """Runs the sweep's unfinished runs; returns ``{run name: why it failed}``.

    With ``dry_run`` (or the ``print`` launcher) it only echoes the commands. A failed run does
    not stop the others.
    """
    if parallel < 1:
        raise ValueError(f"--parallel must be at least 1, got {parallel}.")
    if launcher == "tpu_vm" and parallel != 1:
        raise ValueError(
            "--launcher=tpu_vm runs one run at a time on its TPU VM: use --parallel=1."
        )
    runs = sweep.runs()
    todo = [r for r in runs if not is_finished(sweep_dir, r)]
    echo(f"{len(runs)} runs, {len(runs) - len(todo)} finished already, {len(todo)} to run.")
    kwargs = dict(launcher=launcher, trainer=trainer, extra=extra, remote_dir=remote_dir)
    commands = {r.name: run_command(sweep, r, sweep_dir, **kwargs) for r in todo}
    if dry_run or launcher == "print":
        for command in commands.values():
            echo(shlex.join(command))
        return {}

    def one(name: str) -> tuple[str, str | None, float]:
        start = time.monotonic()
        return name, _execute(commands[name], Path(sweep_dir) / name), time.monotonic() - start

    failed = {}
    with concurrent.futures.ThreadPoolExecutor(parallel) as pool:
        futures = [pool.submit(one, name) for name in commands]
        for done, future in enumerate(concurrent.futures.as_completed(futures), 1):
            name, error, seconds = future.result()
            status = f"FAILED ({error})" if error else "done"
            echo(f"[{done}/{len(commands)}] {name}: {status} in {seconds:.0f}s")
            if error:
                failed[name] = error
    return failed


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
    best = tabulate(sweep, sweep_dir)
    print(f"Tables and plots in {sweep_dir}.")
    if best:
        print(f"Best setting: {best.name}: {_mean_std(best, sweep.metric)} (n={best.n})")
    if failed:
        print(
            f"{len(failed)} run(s) failed:\n" + "\n".join(f"  {n}: {e}" for n, e in failed.items())
        )
        sys.exit(1)


if __name__ == "__main__":
    app.run(main)
