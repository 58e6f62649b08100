"""CoNLL-2003 NER data side: the file reader, IOB schemes, document-context featurization, the
``conlleval`` scorer, prediction files and an embedded synthetic set.

Files hold one token per line, ``word POS chunk NER`` (any number of columns; the tag is the last
one unless ``tag_column`` says otherwise), a blank line between sentences and a
``-DOCSTART- -X- -X- O`` line between documents. Tags are IOB1 (the original release: ``I-``
starts an entity, ``B-`` only between two adjacent entities of one type) or IOB2 (every entity
starts with ``B-``); they are read into IOB2 whatever the file uses, and predictions are written
back in the file's own scheme. Scores are ``conlleval``'s: entity-level micro precision, recall
and F1 over exact (type, start, end) matches, per type too, and token accuracy.

Featurization follows the paper: each word is labelled on its first sub-token (the others get
-1), and sentences are featurized with their document around them ("maximal document context"):
windows of ``max_seq_length`` slide over the document's sub-tokens every ``doc_stride`` tokens,
and each word is labelled and predicted exactly once, in the window where it has the most
context (run_squad.py's max-context rule, shared with :mod:`bert_jax.tasks.squad`).

Example::

    from bert_jax.tasks import conll

    train = conll.read_split("data/conll2003", "train")     # eng.train or train.txt
    labels = conll.label_names(conll.entity_types(train))   # ["O", "B-LOC", "I-LOC", ...]
    feats = conll.featurize(train, tok, labels, max_seq_length=256, doc_stride=128)
    logits = model(feats.arrays)                              # [windows, 256, len(labels)]
    predicted = conll.predictions(train, feats, logits, labels)
    print(conll.score(conll.gold(train), predicted))         # {'f1': 92.4, 'PER/f1': ...}
    conll.write_predictions("run/dev", train, predicted)     # run/dev/predictions.txt
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import logging
import os
import pathlib
import random
import re
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

# The sliding windows and the max-context rule are run_squad.py's, implemented once in squad.py.
from bert_jax.tasks.squad import doc_spans, max_context

SPLITS = ("train", "dev", "test")
SCHEMES = ("auto", "iob1", "iob2")
CONTEXTS = ("document", "sentence")
# File names per split, looked for in this order: the original release, then the common
# train.txt / valid.txt / test.txt copies (e.g. the one TFDS's conll2003 downloads).
FILE_NAMES = {
    "train": ("eng.train", "train.txt"),
    "dev": ("eng.testa", "valid.txt"),
    "test": ("eng.testb", "test.txt"),
}
DOCSTART = "-DOCSTART-"
PREDICTIONS_FILE = "predictions.txt"
_TAG = re.compile(r"^(?:O|[BI]-\S+)$")
_LAYOUT_HELP = (
    "expected CoNLL-2003 files in <data_dir>: eng.train, eng.testa (dev) and eng.testb (test), or "
    "train.txt, valid.txt and test.txt; one token per line 'word POS chunk NER' (the tag in the "
    "last column), blank lines between sentences, '-DOCSTART- -X- -X- O' between documents"
)


@dataclasses.dataclass
class Sentence:
    """One sentence: its words and their tags, in IOB2 whatever the file used."""

    words: list[str]
    tags: list[str]


@dataclasses.dataclass
class ConllSplit:
    """A split's documents (lists of sentences), as read.

    Attributes:
      split: train, dev or test.
      documents: the sentences of each document, in file order.
      scheme: the source's tag scheme (iob1 or iob2), in which predictions are written.
      skipped: (line number, reason) of each malformed line left out.
      source: where it was read from (a path, or the TFDS name).
      marked: whether the source marks its documents (a file with ``-DOCSTART-`` lines). A file
        without them (tweets, most user data) reads as one document, which document context
        would window as if its sentences belonged together.
    """

    split: str
    documents: list[list[Sentence]]
    scheme: str
    skipped: list[tuple[int, str]]
    source: str
    marked: bool

    def __len__(self) -> int:
        return sum(len(d) for d in self.documents)

    @property
    def sentences(self) -> list[Sentence]:
        return [s for d in self.documents for s in d]


# ------------------------------------------------------------------------------------------------
# IOB schemes and conlleval's chunks.


def _split_tag(tag: str) -> tuple[str, str]:
    """("B", "PER") for "B-PER", ("O", "") for "O", as conlleval splits a tag."""
    prefix, _, entity_type = tag.partition("-")
    return prefix, entity_type


def chunks(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """(type, first, last) of each entity in one sentence's IOB1 or IOB2 tags, as conlleval
    reads them: an entity starts at ``B-``, or at ``I-`` after ``O`` or after another type, and
    runs over the ``I-`` tags of its type that follow.

    >>> chunks(["I-PER", "I-PER", "B-PER", "O", "I-LOC", "B-ORG", "I-LOC"])
    [('PER', 0, 1), ('PER', 2, 2), ('LOC', 4, 4), ('ORG', 5, 5), ('LOC', 6, 6)]
    """
    found = []
    current, start = None, 0  # the open entity's type and first token
    for i, tag in enumerate([*tags, "O"]):  # a final O closes the last entity
        prefix, entity_type = _split_tag(tag)
        starts = prefix == "B" or (prefix == "I" and entity_type != current)
        if current is not None and (prefix == "O" or starts):
            found.append((current, start, i - 1))
            current = None
        if starts:
            current, start = entity_type, i
    return found


def to_iob2(tags: Sequence[str]) -> list[str]:
    """The same entities with every one starting at ``B-`` (IOB1's entity-opening ``I-``)."""
    out = list(tags)
    for _, first, _ in chunks(tags):
        out[first] = "B-" + _split_tag(tags[first])[1]
    return out


def to_iob1(tags: Sequence[str]) -> list[str]:
    """The same entities with ``B-`` only where an entity follows one of its own type."""
    out = ["O" if tag == "O" else "I-" + _split_tag(tag)[1] for tag in tags]
    found = chunks(tags)
    for (prev_type, _, prev_last), (entity_type, first, _) in itertools.pairwise(found):
        if prev_last == first - 1 and prev_type == entity_type:
            out[first] = "B-" + entity_type
    return out


def to_scheme(tags: Sequence[str], scheme: str) -> list[str]:
    """IOB2 ``tags`` in ``scheme`` (iob1 or iob2)."""
    return to_iob1(tags) if scheme == "iob1" else list(tags)


def detect_scheme(sentences: Iterable[Sequence[str]]) -> str:
    """ "iob1" where some entity starts with ``I-`` (impossible in IOB2), else "iob2"."""
    for tags in sentences:
        for _, first, _ in chunks(tags):
            if tags[first].startswith("I-"):
                return "iob1"
    return "iob2"


# ------------------------------------------------------------------------------------------------
# Reading.


def _build_split(
    split: str,
    raw_documents: list[list[tuple[list[str], list[str]]]],
    scheme: str,
    skipped: list[tuple[int, str]],
    source: str,
    marked: bool,
) -> ConllSplit:
    """Detects (or checks) the scheme and converts every sentence's tags to IOB2."""
    if scheme not in SCHEMES:
        raise ValueError(f"Unknown tag scheme {scheme!r}; use one of {SCHEMES}.")
    if scheme == "auto":
        scheme = detect_scheme(tags for doc in raw_documents for _, tags in doc)
    documents = [[Sentence(words, to_iob2(tags)) for words, tags in doc] for doc in raw_documents]
    if skipped:
        shown = ", ".join(f"line {n}: {why}" for n, why in skipped[:5])
        logging.warning(
            "%s: skipped %d malformed lines (%s%s)",
            source,
            len(skipped),
            shown,
            ", ..." if len(skipped) > 5 else "",
        )
    return ConllSplit(split, documents, scheme, skipped, source, marked)


def split_path(data_dir: str | os.PathLike, split: str) -> pathlib.Path:
    """The file of ``split`` in ``data_dir`` (see :data:`FILE_NAMES`)."""
    if split not in SPLITS:
        raise ValueError(f"Unknown CoNLL split {split!r}; use one of {SPLITS}.")
    candidates = [pathlib.Path(data_dir) / name for name in FILE_NAMES[split]]
    for path in candidates:
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"No {split} file in {data_dir}: neither {' nor '.join(map(str, candidates))} exists; "
        f"{_LAYOUT_HELP}."
    )


def read_conll(
    path: str | os.PathLike, split: str = "train", scheme: str = "auto", tag_column: int = -1
) -> ConllSplit:
    """Reads one CoNLL file. Malformed lines (a single column, another column count than the
    file's first token line, a tag that is not ``O``, ``B-TYPE`` or ``I-TYPE``) are left out and
    listed in ``skipped`` with their line numbers; a file without one valid line fails.

    A file without ``-DOCSTART-`` lines is one document (its sentences in file order), with
    ``marked=False``: :class:`bert_jax.tasks.tagging.Tagging` then refuses document context.

    Example::

        dev = read_conll("data/conll2003/eng.testa", "dev")
        dev.scheme, len(dev), dev.skipped   # ('iob1', 3250, [])
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; {_LAYOUT_HELP}.")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:  # the original release predates UTF-8 in places
        logging.warning("%s is not UTF-8; reading it as Latin-1.", path)
        text = data.decode("latin-1")

    documents: list[list[tuple[list[str], list[str]]]] = [[]]
    words: list[str] = []
    tags: list[str] = []
    skipped: list[tuple[int, str]] = []
    n_columns = None
    marked = False

    def end_sentence():
        nonlocal words, tags
        if words:
            documents[-1].append((words, tags))
        words, tags = [], []

    for number, line in enumerate(text.splitlines(), 1):
        columns = line.split()
        if not columns:
            end_sentence()
            continue
        if columns[0] == DOCSTART:
            marked = True
            end_sentence()
            if documents[-1]:
                documents.append([])
            continue
        if n_columns is None and len(columns) >= 2:
            n_columns = len(columns)
            if not (-n_columns < tag_column < 0 or 0 < tag_column < n_columns):
                raise ValueError(
                    f"tag_column={tag_column} is not a tag column of {path}'s {n_columns} "
                    f"columns (line {number}); use 1 .. {n_columns - 1} or -1 .. "
                    f"-{n_columns - 1} (the word is column 0)."
                )
        if len(columns) < 2:
            skipped.append((number, f"{line.strip()!r} has no tag column"))
        elif len(columns) != n_columns:
            skipped.append((number, f"{len(columns)} columns, the file's lines have {n_columns}"))
        elif not _TAG.match(columns[tag_column]):
            skipped.append((number, f"tag {columns[tag_column]!r} is not O, B-TYPE or I-TYPE"))
        else:
            words.append(columns[0])
            tags.append(columns[tag_column])
    end_sentence()
    documents = [d for d in documents if d]
    if not documents and skipped:
        raise ValueError(
            f"{path} has no valid token line (first problem: line {skipped[0][0]}: "
            f"{skipped[0][1]}); {_LAYOUT_HELP}."
        )
    return _build_split(split, documents, scheme, skipped, str(path), marked)


def read_split(
    data_dir: str | os.PathLike, split: str, scheme: str = "auto", tag_column: int = -1
) -> ConllSplit:
    """Reads ``split`` from ``data_dir`` laid out as :data:`FILE_NAMES`.

    Example::

        train = read_split("data/conll2003", "train")   # data/conll2003/eng.train
    """
    return read_conll(split_path(data_dir, split), split, scheme, tag_column)


def load_tfds(split: str, data_dir: str | None = None, scheme: str = "auto") -> ConllSplit:
    """Reads TFDS ``conll2003`` (already prepared; nothing is downloaded).

    Through ``tfds.data_source`` (random access, no TensorFlow) when the data was prepared as
    array_record, else through ``tfds.load`` (the default tfrecord preparation). TFDS keeps the
    sentences but not the ``-DOCSTART-`` boundaries, and stores examples shuffled, so each
    sentence is its own document here: document context needs the files.

    Example::

        dev = load_tfds("dev", data_dir="~/tensorflow_datasets")
    """
    if split not in SPLITS:
        raise ValueError(f"Unknown CoNLL split {split!r}; use one of {SPLITS}.")
    import tensorflow_datasets as tfds  # Lazy: heavy, and only TFDS users need it.

    names = tfds.builder("conll2003", data_dir=data_dir).info.features["ner"].feature.names
    try:
        records = tfds.data_source("conll2003", split=split, data_dir=data_dir, download=False)
    except (NotImplementedError, ValueError) as e:
        if "Random access" not in str(e):  # not a matter of the file format: a real problem
            raise
        dataset = tfds.load(
            "conll2003", split=split, data_dir=data_dir, download=False, shuffle_files=False
        )
        records = tfds.as_numpy(dataset)
    documents = []
    for record in records:
        # tfds.load gives bytes, a data source str.
        words = [w.decode("utf-8") if isinstance(w, bytes) else str(w) for w in record["tokens"]]
        if words:
            documents.append([(words, [names[i] for i in record["ner"]])])
    logging.info("TFDS conll2003 has no document boundaries: no document context for %s.", split)
    return _build_split(split, documents, scheme, [], f"tfds:conll2003/{split}", marked=False)


# ------------------------------------------------------------------------------------------------
# Labels.


def entity_types(split: ConllSplit) -> list[str]:
    """The entity types of ``split``'s tags, sorted."""
    return sorted({_split_tag(t)[1] for s in split.sentences for t in s.tags if t != "O"})


def label_names(types: Iterable[str]) -> list[str]:
    """The model's labels: O, then B- and I- of each type (IOB2)."""
    return ["O", *(f"{p}-{t}" for t in sorted(set(types)) for p in "BI")]


def check_types(split: ConllSplit, types: Sequence[str], given: bool) -> None:
    """Fails, naming them, when ``split`` has entity types outside ``types``."""
    counts = collections.Counter(
        _split_tag(t)[1] for s in split.sentences for t in s.tags if t != "O"
    )
    unknown = {t: n for t, n in counts.items() if t not in types}
    if unknown:
        where = "--config.entity_types" if given else "the training data"
        raise ValueError(
            f"{split.source} has entity types {unknown} (tag counts) that {where} lacks "
            f"({list(types)}): the model could never predict them. Fix the data, or list every "
            "type in --config.entity_types=TYPE,TYPE,... (e.g. LOC,MISC,ORG,PER)."
        )


def gold(split: ConllSplit) -> list[list[str]]:
    """Each sentence's gold tags (IOB2)."""
    return [s.tags for s in split.sentences]


# ------------------------------------------------------------------------------------------------
# Featurization with document context.


@dataclasses.dataclass
class TaggingFeatures:
    """Model inputs, one row per window, and where each word of the split is predicted.

    Attributes:
      arrays: input_ids, token_type_ids, attention_mask ``[windows, max_seq_length]`` and, with
        labels, ``labels`` (the word's label id on its first sub-token in its max-context
        window, -1 elsewhere).
      word_rows, word_positions: for the split's words in order (document, sentence, word), the
        window and the position in it where the word is predicted: each word exactly once.
    """

    arrays: dict[str, np.ndarray]
    word_rows: np.ndarray
    word_positions: np.ndarray

    def __len__(self) -> int:
        return len(self.arrays["input_ids"])


def featurize(
    split: ConllSplit,
    tokenizer: Any,
    labels: Sequence[str] | None,
    max_seq_length: int = 256,
    doc_stride: int = 128,
    context: str = "document",
) -> TaggingFeatures:
    """Windows ``[CLS] sub-tokens [SEP]`` over each document (``context="sentence"``: over each
    sentence alone, as without document context), ``doc_stride`` tokens apart.

    A word the tokenizer turns into nothing (e.g. a control character) becomes [UNK], so that
    every word has a first sub-token. ``labels`` (the model's label names) adds ``labels``.

    Example::

        feats = featurize(dev, tok, label_names(["LOC", "PER"]), max_seq_length=128,
                          doc_stride=64)
    """
    if context not in CONTEXTS:
        raise ValueError(f"Unknown context {context!r}; use one of {CONTEXTS}.")
    if max_seq_length < 3:
        raise ValueError(f"max_seq_length={max_seq_length} leaves no room between [CLS] and [SEP].")
    if doc_stride < 1:
        raise ValueError(f"doc_stride={doc_stride}: windows must move on; use 1 or more tokens.")
    label_ids = None if labels is None else {name: i for i, name in enumerate(labels)}
    pieces: dict[str, list[int]] = {}  # words repeat: tokenize each once
    units = split.documents if context == "document" else [[s] for s in split.sentences]
    rows: dict[str, list[np.ndarray]] = collections.defaultdict(list)
    word_rows, word_positions = [], []
    n_rows = 0
    for unit in units:
        ids: list[int] = []
        first: list[int] = []  # each word's first sub-token
        word_labels: list[int] = []
        for sentence in unit:
            for word, tag in zip(sentence.words, sentence.tags, strict=True):
                if word not in pieces:
                    pieces[word] = tokenizer.encode(word) or [tokenizer.unk_id]
                first.append(len(ids))
                ids.extend(pieces[word])
                if label_ids is not None:
                    if tag not in label_ids:
                        raise ValueError(
                            f"{split.source}: tag {tag!r} is not among the labels {labels}."
                        )
                    word_labels.append(label_ids[tag])
        if not ids:
            continue
        spans = doc_spans(len(ids), max_seq_length - 2, doc_stride)
        best = max_context(spans, len(ids))
        starts = np.array([start for start, _ in spans])
        first_arr = np.array(first)
        word_window = best[first_arr]
        positions = 1 + first_arr - starts[word_window]  # after [CLS]
        word_rows.append(n_rows + word_window)
        word_positions.append(positions)
        token_ids, label_arr = np.array(ids, np.int32), np.array(word_labels, np.int32)
        for w, (start, length) in enumerate(spans):
            row = np.full(max_seq_length, tokenizer.pad_id, np.int32)
            row[0], row[1 : 1 + length], row[1 + length] = (
                tokenizer.cls_id,
                token_ids[start : start + length],
                tokenizer.sep_id,
            )
            mask = np.zeros(max_seq_length, np.int32)
            mask[: length + 2] = 1
            rows["input_ids"].append(row)
            rows["attention_mask"].append(mask)
            if label_ids is not None:
                target = np.full(max_seq_length, -1, np.int32)
                here = word_window == w
                target[positions[here]] = label_arr[here]
                rows["labels"].append(target)
        n_rows += len(spans)

    def stack(name: str) -> np.ndarray:
        return np.stack(rows[name]) if rows[name] else np.zeros((0, max_seq_length), np.int32)

    arrays = {"input_ids": stack("input_ids"), "attention_mask": stack("attention_mask")}
    arrays["token_type_ids"] = np.zeros_like(arrays["input_ids"])
    if label_ids is not None:
        arrays["labels"] = stack("labels")

    def concat(parts: list[np.ndarray]) -> np.ndarray:
        return np.concatenate(parts).astype(np.int32) if parts else np.zeros(0, np.int32)

    return TaggingFeatures(arrays, concat(word_rows), concat(word_positions))


def predictions(
    split: ConllSplit, features: TaggingFeatures, logits: np.ndarray, labels: Sequence[str]
) -> list[list[str]]:
    """Each sentence's predicted tags (IOB2) from per-window logits ``[windows, length,
    labels]``: the argmax at each word's one prediction position."""
    if logits.shape[:1] != (len(features),) or logits.shape[-1] != len(labels):
        raise ValueError(
            f"logits of shape {logits.shape}; expected ({len(features)}, max_seq_length, "
            f"{len(labels)}) for these features and labels."
        )
    chosen = logits[features.word_rows, features.word_positions].argmax(-1)
    names = np.asarray(labels)[chosen].tolist()
    out, i = [], 0
    for sentence in split.sentences:
        out.append(names[i : i + len(sentence.words)])
        i += len(sentence.words)
    return out


# ------------------------------------------------------------------------------------------------
# conlleval's scores and the prediction file it reads.


def _prf(correct: int, guessed: int, gold_count: int) -> tuple[float, float, float]:
    precision = 100.0 * correct / guessed if guessed else 0.0
    recall = 100.0 * correct / gold_count if gold_count else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def score(gold_tags: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]]) -> dict:
    """conlleval's numbers (percentages) for sentences of gold and predicted tags (IOB1 or
    IOB2): ``precision``, ``recall``, ``f1`` over exact (type, start, end) entity matches,
    ``accuracy`` over tokens, and ``TYPE/precision``, ``TYPE/recall``, ``TYPE/f1`` for every
    type in the gold or the predictions.

    >>> score([["B-PER", "I-PER", "O"]], [["B-PER", "O", "O"]])["f1"]
    0.0
    """
    if len(gold_tags) != len(predicted):
        raise ValueError(f"{len(gold_tags)} gold sentences but {len(predicted)} predicted.")
    correct, guessed, found = collections.Counter(), collections.Counter(), collections.Counter()
    tokens = right = 0
    for g, p in zip(gold_tags, predicted, strict=True):
        if len(g) != len(p):
            raise ValueError(f"A sentence of {len(g)} gold tags has {len(p)} predicted.")
        tokens += len(g)
        right += sum(a == b for a, b in zip(g, p, strict=True))
        gold_chunks, pred_chunks = set(chunks(g)), set(chunks(p))
        found.update(c[0] for c in gold_chunks)
        guessed.update(c[0] for c in pred_chunks)
        correct.update(c[0] for c in gold_chunks & pred_chunks)
    total = _prf(sum(correct.values()), sum(guessed.values()), sum(found.values()))
    result = dict(zip(("precision", "recall", "f1"), total, strict=True))
    result["accuracy"] = 100.0 * right / tokens if tokens else 0.0
    for entity_type in sorted(set(found) | set(guessed)):
        p, r, f = _prf(correct[entity_type], guessed[entity_type], found[entity_type])
        result |= {
            f"{entity_type}/precision": p,
            f"{entity_type}/recall": r,
            f"{entity_type}/f1": f,
        }
    return result


def write_predictions(
    directory: str | os.PathLike, split: ConllSplit, predicted: Sequence[Sequence[str]]
) -> pathlib.Path:
    """Writes ``directory/predictions.txt``: ``word gold predicted`` per line in the split's own
    scheme, a blank line after each sentence; ``conlleval < predictions.txt`` scores it.

    Example::

        write_predictions("run/predictions/dev", dev, predictions(dev, feats, logits, labels))
    """
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    lines = []
    for sentence, tags in zip(split.sentences, predicted, strict=True):
        gold_tags = to_scheme(sentence.tags, split.scheme)
        for word, g, p in zip(
            sentence.words, gold_tags, to_scheme(tags, split.scheme), strict=True
        ):
            lines.append(f"{word} {g} {p}\n")
        lines.append("\n")
    path = directory / PREDICTIONS_FILE
    tmp = path.with_name(f".{path.name}.tmp")  # a reader never sees half a file
    tmp.write_text("".join(lines), encoding="utf-8")
    os.replace(tmp, path)
    return path


# ------------------------------------------------------------------------------------------------
# A learnable synthetic NER set, worded from the synthetic pretraining corpus.

# The share of a document's nouns and verbs drawn from its main topic (the rest from its
# distractor topic). Nouns half and half: a noun does not tell the type of its entity. Verbs
# mostly of the main topic: one sentence's verbs tell it about 80% of the time, the ten or so
# verbs of a document almost always.
SYNTHETIC_NOUN_SHARE = 0.5
SYNTHETIC_VERB_SHARE = 0.8


def _synthetic_document(rng: random.Random, topics: list[str]) -> list[list[tuple[str, ...]]]:
    """Sentences of (word, POS, chunk, NER in IOB1) rows; see :func:`write_synthetic_conll`."""
    from bert_jax.data.synthetic import _SHARED, _TOPICS, _pluralize

    main, distractor = rng.sample(topics, 2)

    def topic(main_share: float) -> str:
        return main if rng.random() < main_share else distractor

    def noun_phrase(plural: bool) -> list[tuple[str, ...]]:
        t = topic(SYNTHETIC_NOUN_SHARE)
        determiner = rng.choice(_SHARED["determiner_plural" if plural else "determiner_singular"])
        noun = rng.choice(_TOPICS[t][0].split())
        words = [(rng.choice(_SHARED["adjective"]), "JJ")] if rng.random() < 0.5 else []
        words.append((_pluralize(noun) if plural else noun, "NNS" if plural else "NN"))
        tag = f"I-{main.upper()}"
        return [(determiner, "DT", "I-NP", "O")] + [(w, pos, "I-NP", tag) for w, pos in words]

    def verb(plural: bool) -> tuple[str, ...]:
        v = rng.choice(_TOPICS[topic(SYNTHETIC_VERB_SHARE)][1].split())
        return (v, "VBP", "I-VP", "O") if plural else (_pluralize(v), "VBZ", "I-VP", "O")

    sentences = []
    for _ in range(rng.randint(5, 9)):
        plural = rng.random() < 0.5
        rows = noun_phrase(plural)
        form = rng.random()
        if form < 0.25:  # the tall dog runs quickly .
            rows += [verb(plural), (rng.choice(_SHARED["adverb"]), "RB", "I-ADVP", "O")]
        elif form < 0.55:  # the dog chases some cats .
            rows += [verb(plural), *noun_phrase(rng.random() < 0.5)]
        elif form < 0.8:  # the dog runs near the river .
            preposition = (rng.choice(_SHARED["preposition"]), "IN", "I-PP", "O")
            rows += [verb(plural), preposition, *noun_phrase(rng.random() < 0.5)]
        else:  # the dog that chases the cats runs .
            rows += [("that", "WDT", "B-SBAR", "O"), verb(plural)]
            rows += [*noun_phrase(rng.random() < 0.5), verb(plural)]
        sentences.append([*rows, (".", ".", "O", "O")])
    return sentences


def write_synthetic_conll(
    directory: str | os.PathLike,
    seed: int = 0,
    num_train_documents: int = 800,
    num_eval_documents: int = 100,
) -> pathlib.Path:
    """Writes ``eng.train``, ``eng.testa`` and ``eng.testb`` (IOB1, four columns, -DOCSTART-
    between documents, as the original release) into ``directory``.

    Each document (5-9 sentences of the synthetic corpus's grammar) has a main topic and a
    distractor topic. Every noun phrase (adjective and noun, not the determiner) is an entity
    typed by the document's main topic (ANIMALS, COOKING, ...), which its words tell only in
    part: half of its nouns are the distractor's, and a fifth of its verbs
    (``SYNTHETIC_NOUN_SHARE``, ``SYNTHETIC_VERB_SHARE``). One sentence's verb or two often
    mislead; the ten or so of a document rarely do: document context matters. Only words of
    :mod:`bert_jax.data.synthetic` are used, so its pretraining vocabulary covers them.
    Deterministic in ``seed``.

    Example::

        data_dir = write_synthetic_conll("/tmp/conll")
        train = read_split(data_dir, "train")
    """
    from bert_jax.data.synthetic import _TOPICS

    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    rng = random.Random(f"conll-{seed}")
    topics = sorted(_TOPICS)
    counts = {"train": num_train_documents, "dev": num_eval_documents, "test": num_eval_documents}
    for split, count in counts.items():
        lines = []
        for _ in range(count):
            lines.append(f"{DOCSTART} -X- -X- O\n\n")
            for sentence in _synthetic_document(rng, topics):
                lines += [" ".join(row) + "\n" for row in sentence] + ["\n"]
        (directory / FILE_NAMES[split][0]).write_text("".join(lines), encoding="utf-8")
    return directory
