"""SWAG (Situations With Adversarial Generations) data side: the official CSV reader, the
per-choice featurization of the BERT paper, the prediction file and an embedded synthetic set.

Each example is a context (``sent1``), the start of the next sentence (``sent2``) and four
candidate endings; the model scores ``[CLS] sent1 [SEP] sent2 + " " + ending_i [SEP]`` for each
ending (the paper, section 4.4) and the softmax over the four picks one. The multiple-choice
family (:mod:`bert_jax.tasks.multiple_choice`) runs it on the fine-tuning loop.

Files, as released at github.com/rowanz/swagaf (``data/``): ``train.csv``, ``val.csv`` and
``test.csv`` (no labels), comma-separated with a header; columns are found by name:
``,video-id,fold-ind,startphrase,sent1,sent2,gold-source,ending0,ending1,ending2,ending3,label``
(the unnamed first column is the row index, kept as the example id). TensorFlow Datasets 4.9.10
has no SWAG builder (its ``hellaswag`` is a different dataset with other columns), so the CSVs
are the only real source; nothing here pretends otherwise.

Example::

    from bert_jax.tasks import swag

    dev = swag.read_csv("data/swag", "dev")           # data/swag/val.csv
    arrays = swag.featurize(dev, tokenizer, max_seq_length=128)
    arrays["input_ids"].shape                         # (len(dev), 4, 128)
    swag.write_predictions("run/dev.csv", dev.ids, probabilities)
"""

from __future__ import annotations

import csv
import dataclasses
import logging
import os
import random
from pathlib import Path

import numpy as np

from bert_jax.tokenizers import Tokenizer

NUM_CHOICES = 4
ENDINGS = tuple(f"ending{i}" for i in range(NUM_CHOICES))
FILES = {"train": "train.csv", "dev": "val.csv", "test": "test.csv"}
HEADER = ("", "video-id", "fold-ind", "startphrase", "sent1", "sent2", "gold-source", *ENDINGS,
          "label")  # fmt: skip
PREDICTION_HEADER = ("id", "prediction", *(f"prob{i}" for i in range(NUM_CHOICES)))
_LAYOUT_HELP = (
    "expected the official SWAG files <data_dir>/train.csv, val.csv and test.csv "
    "(github.com/rowanz/swagaf, data/), comma-separated with the header "
    f"{','.join(HEADER)} (test.csv without label)"
)


@dataclasses.dataclass(frozen=True)
class SwagExample:
    """One context and its four candidate endings.

    Attributes:
      id: the file's unnamed index column, else the data row's position in the file.
      sent1: the context sentence.
      sent2: the start of the next sentence, shared by the four endings.
      endings: the four candidate continuations of ``sent2``.
      label: the index of the right ending; None in test files.
    """

    id: str
    sent1: str
    sent2: str
    endings: tuple[str, ...]
    label: int | None


@dataclasses.dataclass
class SwagSplit:
    """The examples of one split in file order, and the malformed rows left out.

    ``skipped`` holds (line number in the file, reason) of every row left out.
    """

    split: str
    examples: list[SwagExample]
    skipped: list[tuple[int, str]] = dataclasses.field(default_factory=list)

    def __len__(self) -> int:
        return len(self.examples)

    @property
    def ids(self) -> list[str]:
        return [e.id for e in self.examples]

    @property
    def labels(self) -> np.ndarray | None:
        """int32 right-ending indices, or None when the split has no labels (test)."""
        if not self.examples or self.examples[0].label is None:
            return None
        return np.asarray([e.label for e in self.examples], np.int32)


def split_path(data_dir: str | os.PathLike, split: str) -> Path:
    """``<data_dir>/{train,val,test}.csv``: the official file of ``split`` (train, dev, test)."""
    if split not in FILES:
        raise ValueError(f"SWAG has no split {split!r}; valid splits: {', '.join(FILES)}.")
    return Path(data_dir) / FILES[split]


def read_csv(data_dir: str | os.PathLike, split: str) -> SwagSplit:
    """Reads ``split`` (train, dev or test) of SWAG from the official CSVs in ``data_dir``.

    Columns are found by header name. Rows with the wrong number of columns, a label that is not
    0-3 (train and dev), or an empty context or ending are left out, listed in
    ``SwagSplit.skipped`` by line number and summarised in one warning.

    Example::

        train = read_csv("data/swag", "train")
        len(train), train.labels[:4]
    """
    path = split_path(data_dir, split)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {_LAYOUT_HELP}.")
    labelled = split != "test"
    examples: list[SwagExample] = []
    skipped: list[tuple[int, str]] = []
    # "utf-8-sig" drops a byte-order mark; newline="" lets quoted fields hold line breaks.
    with path.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f)
        columns = next(reader, [])
        required = ["sent1", "sent2", *ENDINGS] + ["label"] * labelled
        missing = [c for c in required if c not in columns]
        if missing:
            raise ValueError(
                f"{path}: columns {missing} not in the header {columns}; is this the SWAG {split} "
                f"file? ({_LAYOUT_HELP})"
            )
        at = {name: columns.index(name) for name in required}
        has_index = columns[0] in ("", "Unnamed: 0")  # the official (pandas-written) files
        for position, row in enumerate(reader):
            line = reader.line_num
            if len(row) != len(columns):
                skipped.append((line, f"{len(row)} columns, expected {len(columns)}"))
                continue
            label = None
            if labelled:
                value = row[at["label"]].strip()
                if value not in ("0", "1", "2", "3"):
                    skipped.append((line, f"label {value!r} is not one of 0, 1, 2, 3"))
                    continue
                label = int(value)
            endings = tuple(row[at[name]] for name in ENDINGS)
            empty = [name for name, text in zip(ENDINGS, endings, strict=True) if not text.strip()]
            if not row[at["sent1"]].strip():
                empty.insert(0, "sent1")
            if empty:
                skipped.append((line, f"empty {', '.join(empty)}"))
                continue
            example_id = row[0] if has_index else str(position)
            examples.append(
                SwagExample(example_id, row[at["sent1"]], row[at["sent2"]], endings, label)
            )
    if skipped:
        line, why = skipped[0]
        logging.warning(
            "%s: skipped %d malformed rows (first: line %d, %s); see SwagSplit.skipped.",
            path, len(skipped), line, why,
        )  # fmt: skip
    return SwagSplit(split, examples, skipped)


def featurize(
    examples: SwagSplit, tokenizer: Tokenizer, max_seq_length: int
) -> dict[str, np.ndarray]:
    """Four rows per example, ``[CLS] sent1 [SEP] sent2 + " " + ending_i [SEP]``.

    Returns ``input_ids``, ``token_type_ids`` and ``attention_mask``, each int32
    ``[examples, 4, max_seq_length]`` (the token axis last, padding after the real tokens), and
    ``labels`` ``[examples]`` when the split has them. A pair longer than ``max_seq_length`` is
    truncated longest-first, one token at a time, as the original ``_truncate_seq_pair`` and
    Hugging Face's ``run_swag`` (``truncation=True``) do.
    """
    shape = (len(examples), NUM_CHOICES, max_seq_length)
    names = ("input_ids", "token_type_ids", "attention_mask")
    arrays = {name: np.zeros(shape, np.int32) for name in names}
    for i, example in enumerate(examples.examples):
        context = tokenizer.encode(example.sent1)
        for j, ending in enumerate(example.endings):
            continuation = tokenizer.encode(f"{example.sent2} {ending}".strip())
            ids, types = tokenizer.encode_pair(context, continuation, max_seq_length)
            arrays["input_ids"][i, j, : len(ids)] = ids
            arrays["token_type_ids"][i, j, : len(ids)] = types
            arrays["attention_mask"][i, j, : len(ids)] = 1
    if examples.labels is not None:
        arrays["labels"] = examples.labels
    return arrays


def write_predictions(path: str | os.PathLike, ids: list[str], probabilities: np.ndarray) -> Path:
    """Writes ``id,prediction,prob0,prob1,prob2,prob3``: one row per example, in the given order.

    ``prediction`` is the index of the most probable ending; ``probabilities`` is
    ``[examples, 4]`` (the softmax of the four scores).

    Example::

        write_predictions("run/test.csv", split.ids, jax.nn.softmax(logits))
    """
    probabilities = np.asarray(probabilities, np.float64)
    if probabilities.shape != (len(ids), NUM_CHOICES):
        raise ValueError(
            f"Got probabilities of shape {probabilities.shape} for {len(ids)} ids; pass "
            f"[examples, {NUM_CHOICES}] (the softmax over each example's endings)."
        )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(PREDICTION_HEADER)
        for example_id, p in zip(ids, probabilities, strict=True):
            writer.writerow([example_id, int(p.argmax()), *(f"{x:.6f}" for x in p)])
    return path


# ------------------------------------------------------------------------------------------------
# An embedded synthetic SWAG, worded from the synthetic pretraining corpus.


def _synthetic_example(
    rng: random.Random, topics: list[tuple[list[str], list[str]]]
) -> tuple[str, str, tuple[str, ...], int]:
    """(sent1, sent2, endings, label) of one synthetic example (see write_synthetic_swag)."""
    from bert_jax.data.synthetic import _SHARED, _pluralize, _sentence

    topic = rng.randrange(len(topics))
    nouns, verbs = topics[topic]
    other_nouns, other_verbs = topics[rng.choice([t for t in range(len(topics)) if t != topic])]
    plural = rng.random() < 0.5
    # "the" fits both numbers, so sent2 never uses it: its determiner fixes the number.
    determiners = [d for d in _SHARED["determiner_plural" if plural else "determiner_singular"]
                   if d != "the"]  # fmt: skip
    sent2 = rng.choice(determiners)
    if rng.random() < 0.5:
        sent2 += f" {rng.choice(_SHARED['adjective'])}"

    def ending(subjects: list[str], verbs: list[str], objects: list[str]) -> str:
        """SUBJECT VERB ADVERB . / SUBJECT VERB DET OBJECTS . (agreeing with sent2)"""
        noun, verb = rng.choice(subjects), rng.choice(verbs)
        subject, verb = (_pluralize(noun), verb) if plural else (noun, _pluralize(verb))
        obj = f"{rng.choice(_SHARED['determiner_plural'])} {_pluralize(rng.choice(objects))}"
        return f"{subject} {verb} {rng.choice([rng.choice(_SHARED['adverb']), obj])} ."

    right = ending(nouns, verbs, nouns)
    wrong = [
        ending(other_nouns, other_verbs, other_nouns),  # coherent, but about another topic
        ending(nouns, other_verbs, other_nouns),  # the subject fits, the rest does not
        ending(other_nouns, verbs, nouns),  # the subject does not fit
    ]
    label = rng.randrange(NUM_CHOICES)
    rng.shuffle(wrong)
    endings = tuple(wrong[:label] + [right] + wrong[label:])
    return _sentence(rng, nouns, verbs), sent2, endings, label


def write_synthetic_swag(
    directory: str | os.PathLike,
    seed: int = 0,
    num_train: int = 2048,
    num_dev: int = 512,
    num_test: int = 256,
) -> Path:
    """Writes ``train.csv``, ``val.csv`` and ``test.csv`` (no labels) in the official layout.

    The context is a sentence of the synthetic pretraining corpus (:mod:`bert_jax.data.synthetic`,
    whose words alone are used) on one topic; ``sent2`` is a determiner (and maybe an adjective)
    that fixes the grammatical number of what follows, e.g. "these tall"; every ending agrees
    with it. The right ending stays on the context's topic ("dogs chase some cats ."); the wrong
    ones are a coherent ending about another topic (so the context is needed: without it, it is
    as good as the right one), one whose subject fits the topic but whose verb and object do not,
    and one whose subject does not fit. Topic words are what a 2-layer model picks up within an
    epoch. Number agreement, tried as the cue of some wrong endings while writing this, stayed
    at chance after 3 epochs, and so did matching exact words between far-apart positions (see
    ``write_synthetic_squad``). Deterministic in ``seed``.

    Example::

        data_dir = write_synthetic_swag("/tmp/swag", num_train=256)
        read_csv(data_dir, "train").examples[0].endings
    """
    from bert_jax.data.synthetic import _TOPICS

    topics = [(nouns.split(), verbs.split()) for nouns, verbs in _TOPICS.values()]
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    rng = random.Random(f"swag-{seed}")
    for split, count in (("train", num_train), ("dev", num_dev), ("test", num_test)):
        header = HEADER if split != "test" else HEADER[:-1]
        with split_path(directory, split).open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(header)
            for i in range(count):
                sent1, sent2, endings, label = _synthetic_example(rng, topics)
                row = [i, f"synthetic-{split}-{i:05d}", i, f"{sent1} {sent2}", sent1, sent2,
                       "gold", *endings, label]  # fmt: skip
                writer.writerow(row[: len(header)])
    return directory
