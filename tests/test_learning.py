"""Every family's embedded run learns: a short pretraining of the embedded default, then each
family's embedded fine-tuning (its recipe, cut to a few hundred steps) must leave the trivial
baseline of its task. The README's full figures are checked by ``python -m benchmarks.reproduce``;
these guard the cheap part of them in CI, so a change that stops a family from learning (as the
SQuAD v2.0 embedded run stayed on answering "" for every question) fails here.

One module, so one pretraining serves every family (``--dist loadfile`` keeps it on one worker).
SWAG (multiple choice) is not here: its endings are told apart by topic, which a short
pretraining does not teach (48 steps from a 300- or 600-step pretraining stayed at chance, 0.27,
2026-12-08); ``python -m benchmarks.reproduce --only=swag`` checks it.
"""

import json
import pathlib

import numpy as np
import pytest

from bert_jax.tasks.glue import read_split
from tests.tiny_runs import run_main


def _results(workdir: pathlib.Path) -> dict:
    return json.loads((workdir / "results.json").read_text())


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory) -> str:
    """The embedded pretraining run cut to 300 of its 1,200 steps, on 1,000 of its 4,000
    documents (held-out MLM accuracy about 0.4, 0.7 in full)."""
    workdir = tmp_path_factory.mktemp("learning") / "pretrain"
    run_main("configs/pretrain.py:model=tiny", workdir, "--config.total_steps=300",
             "--config.data.synthetic_documents=1000")  # fmt: skip
    results = _results(workdir)
    assert results["eval/mlm_accuracy"] > 0.25, results
    return str(workdir)


def _majority(labels) -> float:
    _, counts = np.unique(np.asarray(labels), return_counts=True)
    return counts.max() / counts.sum()


@pytest.mark.slow
def test_glue_synthetic_leaves_the_majority_class(pretrained, tmp_path):
    """MNLI (three-way, two dev sets) from the embedded recipe (lr 1e-4), on 512 rows."""
    run_main("configs/glue.py:task=mnli,model=tiny", tmp_path,
             f"--config.init_checkpoint={pretrained}", "--config.synthetic_train_examples=512",
             "--config.num_epochs=6", "--config.predict_test=False")  # fmt: skip
    dev = read_split(tmp_path / "glue_data", "mnli", "dev_matched")
    accuracy = _results(tmp_path)["best/dev_matched/accuracy"]
    assert accuracy > _majority(dev.labels) + 0.1, accuracy


@pytest.mark.slow
def test_ner_fine_tuning_beats_predicting_o(pretrained, tmp_path):
    """Predicting O everywhere scores F1 0; the recipe (document windows, lr 3e-4), 300 docs."""
    run_main("configs/ner.py:mode=finetune,model=tiny", tmp_path,
             f"--config.init_checkpoint={pretrained}", "--config.synthetic_train_documents=300",
             "--config.num_epochs=4", "--config.predict_test=False")  # fmt: skip
    assert _results(tmp_path)["best/f1"] > 10.0


@pytest.mark.slow
def test_squad_v2_answers_what_it_can(pretrained, tmp_path):
    """Always answering "" scores HasAns F1 0 (the plateau the embedded v2.0 run fell into):
    the recipe must give answers other than "" and find some. Contexts of 2-4 sentences in
    windows of 64 (1-2 windows each), so a few hundred steps suffice."""
    run_main("configs/squad.py:version=2.0,model=tiny", tmp_path,
             f"--config.init_checkpoint={pretrained}", "--config.synthetic_sentences=(2,4)",
             "--config.synthetic_train_examples=512", "--config.max_seq_length=64",
             "--config.doc_stride=24", "--config.num_epochs=6")  # fmt: skip
    predictions = json.loads((tmp_path / "predictions" / "dev" / "predictions.json").read_text())
    assert sum(answer != "" for answer in predictions.values()) > len(predictions) / 4
    assert _results(tmp_path)["best/HasAns_f1"] > 20.0
