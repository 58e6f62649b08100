"""benchmarks.reproduce: the README's figure tables are rendered from benchmarks/figures.json (so
they cannot drift), every stated run's command is a valid one, and the check passes and fails as
it says."""

import importlib
import json
import pathlib
import shlex
import sys

import pytest

from benchmarks import reproduce
from benchmarks.reproduce import Figure, Stated

ROOT = pathlib.Path(__file__).parent.parent
sys.path.insert(0, str(ROOT))


def test_readme_tables_are_the_stated_figures():
    text = reproduce.README_PATH.read_text()
    stated = Stated.load()
    assert reproduce.render_readme(text, stated) == text, (
        "README figure blocks differ from benchmarks/figures.json: re-render them with "
        "reproduce.render_readme (or record new figures with python -m benchmarks.reproduce "
        "--record)."
    )
    shown = reproduce.readme_runs(text)
    assert sorted(shown) == sorted(stated.runs), "every stated run appears once in the README"
    for run in stated.runs.values():
        assert run.date and run.host and run.seconds > 0 and run.figures, run.name


def test_every_command_is_a_valid_run():
    """Each command's config file, its argument and every --config.* override exist (a renamed
    field would otherwise surface only in an hour-long rerun)."""
    for run in Stated.load().runs.values():
        words = shlex.split(run.command.format(runs="/tmp/runs"))
        assert words[:3] == ["python", "-m", "bert_jax.main"], run.name
        flags = dict(w.removeprefix("--").split("=", 1) for w in words[3:])
        assert flags["workdir"] == f"/tmp/runs/{run.name}"
        path, _, arg = flags.pop("config").partition(":")
        module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
        config = module.get_config(arg)
        for key in (k for k in flags if k.startswith("config.")):
            *parents, field = key.removeprefix("config.").split(".")
            node = config
            for parent in parents:
                node = node[parent]
            assert field in node, (run.name, key)
        expected = ["pretrain"] if "config.init_checkpoint" in flags else []
        assert run.needs(list(Stated.load().runs)) == expected, run.name


def test_runs_are_ordered_after_what_they_need():
    stated = Stated.load()
    assert stated.order(["squad_v2.0"]) == ["pretrain", "squad_v2.0"]
    assert stated.order(["ltr"]) == ["ltr"]
    assert stated.order([])[0] == "pretrain" and len(stated.order([])) == len(stated.runs)
    with pytest.raises(SystemExit, match=r"Unknown run\(s\) \['squad'\]"):
        stated.order(["squad"])


def test_verdicts():
    f = Figure("F1", "best/f1", stated=66.3, digits=1, tolerance=5.0)
    assert f.verdict(66.34, same_host=True, deterministic=True) == "equal"
    assert f.verdict(66.36, same_host=True, deterministic=True) == "MISS"  # rounds to 66.4
    assert f.verdict(62.0, same_host=False, deterministic=True) == "within"
    assert f.verdict(60.0, same_host=True, deterministic=False) == "MISS"


def test_the_command_reports_passes_and_misses(tmp_path, monkeypatch, capsys):
    """A stand-in for the runs' commands writes their results; the table shows stated, measured
    and verdict, and the exit status says whether every figure passed."""
    figures = tmp_path / "figures.json"
    figure = {"label": "MLM acc", "key": "eval/mlm_accuracy", "stated": 0.7, "digits": 3,
              "tolerance": 0.02}  # fmt: skip
    run = {"name": "pre", "command": "python -m bert_jax.main --workdir={runs}/pre",
           "figures": [figure], "deterministic": True, "date": "2026-12-08", "host": "elsewhere",
           "seconds": 1}  # fmt: skip
    figures.write_text(json.dumps({"runs": [run]}))
    measured = {"value": 0.71}

    def execute(run, runs, log):
        (runs / run.name).mkdir(parents=True, exist_ok=True)
        (runs / run.name / "results.json").write_text(
            json.dumps({"eval/mlm_accuracy": measured["value"]})
        )
        return 12.0, False

    monkeypatch.setattr(reproduce, "execute", execute)
    args = [f"--figures={figures}"]
    assert reproduce.main([*args, f"--runs={tmp_path / 'a'}"]) == 0  # another host: within 0.02
    out = capsys.readouterr().out
    assert "0.700" in out and "0.7100" in out and "within 0.02" in out and "1 of 1" in out
    measured["value"] = 0.75
    assert reproduce.main([*args, f"--runs={tmp_path / 'b'}"]) == 1
    assert "MISS" in capsys.readouterr().out
