"""An embedded synthetic GLUE folder: small learnable tasks in the real file layouts, for tests
and the ``model=tiny`` runs.

Usage::

    write_synthetic_glue("/tmp/glue", seed=0)   # then read_split("/tmp/glue", "sst2", "train")
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from bert_jax.tasks.glue import TASKS, Task, get_task

# ------------------------------------------------------------------------- synthetic GLUE
# A tiny English-like grammar: a clause is "the ADJ NOUN VERB the ADJ NOUN". Every task's label is
# a simple function of the words, so a small BERT can learn it in a few hundred steps.
_ADJECTIVES = ("small", "old", "quiet", "bright", "big", "fast", "happy", "cold")
_SYNONYMS = {  # Paraphrases swap these words; their second halves never start a clause.
    "small": "little", "old": "aged", "quiet": "silent", "bright": "shiny", "big": "large",
    "fast": "quick", "happy": "glad", "cold": "chilly", "sees": "watches", "likes": "enjoys",
    "helps": "assists", "finds": "discovers", "builds": "makes", "visits": "meets",
}  # fmt: skip
_NOUNS = ("cat", "dog", "bird", "farmer", "teacher", "river", "city", "garden", "child", "doctor")
_VERBS = {"sees": "see", "likes": "like", "helps": "help", "finds": "find", "builds": "build",
          "visits": "visit"}  # fmt: skip
_POSITIVE = ("good", "great", "wonderful", "lovely", "excellent")
_NEGATIVE = ("bad", "awful", "terrible", "boring", "poor")
_CONTENT_SLOTS = (1, 2, 3, 5, 6)  # Positions of the adjectives, nouns and verb in a clause.


def _clause(rng: np.random.Generator, subject: str | None = None) -> list[str]:
    adjectives, nouns = rng.choice(_ADJECTIVES, 2), rng.choice(_NOUNS, 2, replace=False)
    verb = rng.choice(list(_VERBS))
    return ["the", adjectives[0], subject or nouns[0], verb, "the", adjectives[1], nouns[1]]


def _other(rng: np.random.Generator, words: Sequence[str], current: str) -> str:
    return str(rng.choice([w for w in words if w != current]))


def _negated(clause: list[str]) -> list[str]:
    return [*clause[:3], "does", "not", _VERBS[clause[3]], *clause[4:]]


def _paraphrase_pair(rng: np.random.Generator, label: int) -> tuple[list[str], list[str]]:
    """Paraphrase (label 1): synonyms swapped in; otherwise the object noun also changes."""
    a = _clause(rng)
    b = [_SYNONYMS.get(w, w) for w in a]
    if not label:
        b[6] = _other(rng, _NOUNS, a[6])
    return a, b


def _entailment_pair(rng: np.random.Generator, label: str) -> tuple[list[str], list[str]]:
    """Premise "A and B"; entailment: A or B; contradiction: A or B negated; neutral: a new clause.

    "not_entailment" is contradiction or neutral at random.
    """
    first, second = _clause(rng), _clause(rng)
    premise = [*first, "and", *second]
    picked = first if rng.random() < 0.5 else second
    if label == "not_entailment":
        label = "contradiction" if rng.random() < 0.5 else "neutral"
    if label == "entailment":
        return premise, picked
    if label == "contradiction":
        return premise, _negated(picked)
    # The new clause's subject appears nowhere in the premise, so it cannot follow from it.
    return premise, _clause(rng, subject=rng.choice(sorted(set(_NOUNS) - set(premise))))


def _synthetic_example(name: str, rng: np.random.Generator) -> tuple[str, str, str]:
    """(text_a, text_b, label string as in the GLUE file) of one synthetic example of ``name``."""
    t = TASKS[name]
    label = t.label_names[rng.integers(t.num_labels)] if t.label_names else ""
    b: list[str] = []
    if name == "cola":  # Acceptable iff the clause keeps its word order.
        a = _clause(rng)
        if label == "0":
            while (shuffled := list(rng.permutation(a))) == a:
                pass
            a = shuffled
    elif name == "sst2":  # The sentiment word decides.
        a = [
            *_clause(rng),
            "and",
            "it",
            "was",
            rng.choice(_POSITIVE if label == "1" else _NEGATIVE),
        ]
    elif name in ("mrpc", "qqp"):
        a, b = _paraphrase_pair(rng, int(label))
        if name == "qqp":
            a, b = ["why", *a, "?"], ["why", *b, "?"]
    elif name == "stsb":  # Score = 5 minus the number of content words replaced.
        a = _clause(rng)
        b = list(a)
        replaced = int(rng.integers(6))
        for slot in rng.choice(_CONTENT_SLOTS, replaced, replace=False):
            pool = list(_VERBS) if slot == 3 else _NOUNS if slot in (2, 6) else _ADJECTIVES
            b[slot] = _other(rng, pool, a[slot])
        label = f"{5 - replaced:.3f}"
    elif name == "qnli":  # The sentence answers the question iff it has the asked subject+verb.
        clause = _clause(rng)
        question = ["what", "does", *clause[:3], _VERBS[clause[3]], "?"]
        if label == "not_entailment":
            clause[2] = _other(rng, _NOUNS, clause[2])
        a, b = question, clause
    else:  # mnli, ax, rte, wnli: premise and hypothesis.
        entailment_label = {"1": "entailment", "0": "not_entailment"}.get(label, label)
        a, b = _entailment_pair(rng, entailment_label)
    return " ".join(a), " ".join(b), label


_STSB_COLUMNS = ("index", "genre", "filename", "year", "old_index", "source1", "source2")
_MNLI_COLUMNS = ("index", "promptID", "pairID", "genre", "sentence1_binary_parse",
                 "sentence2_binary_parse", "sentence1_parse", "sentence2_parse")  # fmt: skip
_MNLI_DEV_LABELS = ("label1", "label2", "label3", "label4", "label5")


def _real_header(t: Task, split: str) -> tuple[str, ...] | None:
    """The column layout of the real GLUE file (None: CoLA train/dev have no header)."""
    labelled = split not in t.test_splits
    if t.headerless_columns and labelled:
        return None
    label = (t.label_column,) * labelled
    texts = t.text_columns
    if t.name == "mrpc":
        ids = ("#1 ID", "#2 ID")
        return (*label, *ids, *texts) if labelled else ("index", *ids, *texts)
    if t.name == "stsb":
        return (*_STSB_COLUMNS, *texts, *label)
    if t.name == "qqp":
        return ("id", "qid1", "qid2", *texts, *label) if labelled else ("id", *texts)
    if t.name == "mnli":
        annotators = _MNLI_DEV_LABELS if split.startswith("dev") else _MNLI_DEV_LABELS[:1]
        return (*_MNLI_COLUMNS, *texts, *(annotators + label) * labelled)
    if t.name == "sst2":
        return (*texts, *label) if labelled else ("index", *texts)
    return (t.index_column, *texts, *label)


def write_synthetic_glue(
    directory: str | os.PathLike,
    seed: int = 0,
    num_train: int = 512,
    num_dev: int = 128,
    num_test: int = 128,
    tasks: Sequence[str] | None = None,
) -> Path:
    """Writes a GLUE folder of small learnable synthetic tasks in the real layouts and folder names.

    Writes every task of the registry (CoLA, SST-2, MRPC, STS-B, QQP, MNLI, QNLI, RTE, WNLI and
    diagnostic), or only ``tasks``. Every split has ``num_train``, ``num_dev`` or ``num_test`` rows
    (MNLI's two dev and two test files each have ``num_dev``/``num_test``). The labels follow
    simple word rules on a ~60-word vocabulary: CoLA acceptable iff the words are in order; SST-2
    by a sentiment word; MRPC/QQP paraphrase iff only synonyms differ; STS-B score = 5 minus the
    number of replaced content words; MNLI/RTE/WNLI/AX hypothesis is part of the premise
    (entailment), its negation (contradiction) or a new clause (neutral); QNLI entailment iff the
    sentence has the question's subject. Deterministic given ``seed``; each task has its own stream.

    Example::

        write_synthetic_glue("/tmp/glue", num_train=64, tasks=["sst2", "stsb"])
        read_split("/tmp/glue", "stsb", "train").labels  # floats in {0, 1, ..., 5}
    """
    directory = Path(directory)
    sizes = {"train": num_train, "dev": num_dev, "test": num_test}
    for task_number, t in enumerate(TASKS.values()):
        if tasks is not None and t.name not in {get_task(name).name for name in tasks}:
            continue
        rng = np.random.default_rng([seed, task_number])
        (directory / t.dir_name).mkdir(parents=True, exist_ok=True)
        for split, file_name in t.splits.items():
            header = _real_header(t, split)
            lines = [] if header is None else ["\t".join(header)]
            for i in range(sizes[split.split("_")[0]]):
                a, b, label = _synthetic_example(t.name, rng)
                lines.append("\t".join(_synthetic_row(t, header, i, a, b, label)))
            (directory / t.dir_name / file_name).write_text("\n".join(lines) + "\n", "utf-8")
    return directory


def _synthetic_row(
    t: Task, header: tuple[str, ...] | None, i: int, a: str, b: str, label: str
) -> list[str]:
    if header is None:  # CoLA train/dev: source, label, original-label marker ("*" = bad), text.
        return ["syn01", label, "" if label == "1" else "*", a]
    values = dict(zip(t.text_columns, (a, b), strict=False))
    values.update({t.index_column: str(i), t.label_column: label})
    values.update(dict.fromkeys(_MNLI_DEV_LABELS, label))
    # Columns no reader uses (ids, genres, parses) get a placeholder.
    return [values.get(column, f"{column.replace(' ', '_')}{i}") for column in header]
