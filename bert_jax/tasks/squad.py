"""SQuAD v1.1 / v2.0 data side, as google-research/bert ``run_squad.py`` does it.

Reading (``read_squad_examples``), featurization into overlapping windows
(``convert_examples_to_features``), turning start/end logits back into answer texts
(``write_predictions`` with ``get_final_text``) and the official ``evaluate-v1.1.py`` /
``evaluate-v2.0.py`` metrics. A small learnable synthetic dataset in the official JSON layout
is included for embedded runs.

Example::

    from bert_jax.tasks import squad
    from bert_jax.tokenizers import WordPiece

    tok = WordPiece("vocab.txt", lower_case=True)
    dev = squad.read_json("data/squad", "2.0", "dev")      # data/squad/dev-v2.0.json
    feats = squad.featurize(dev, tok, max_seq_length=384, doc_stride=128)
    start_logits, end_logits = model(feats.arrays)          # each float [n, 384]
    result = squad.postprocess(dev, feats, start_logits, end_logits, tok)
    print(squad.score(dev, result.predictions, result.null_odds))
    squad.write_predictions("run/eval", result)
"""

from __future__ import annotations

import collections
import dataclasses
import json
import logging
import math
import os
import pathlib
import random
import re
import string
import tempfile
from typing import Any

import numpy as np

VERSIONS = ("1.1", "2.0")
SPLITS = ("train", "dev")


@dataclasses.dataclass
class SquadExample:
    """One question about one context, with the context split into whitespace words."""

    id: str
    question: str
    context: str
    words: list[str]
    answers: list[str]
    is_impossible: bool
    start_word: int
    end_word: int


@dataclasses.dataclass
class SquadSplit:
    """All examples of one split, plus the malformed entries that were left out."""

    version: str
    split: str
    examples: list[SquadExample]
    skipped: list[tuple[str, str]]

    def __len__(self) -> int:
        return len(self.examples)


def _check(version: str, split: str) -> None:
    if version not in VERSIONS:
        raise ValueError(f"SQuAD version {version!r} is unknown; use one of {VERSIONS}.")
    if split not in SPLITS:
        raise ValueError(f"SQuAD split {split!r} is unknown; use one of {SPLITS}.")


def split_path(data_dir: str | os.PathLike, version: str, split: str) -> pathlib.Path:
    """``<data_dir>/{train,dev}-v{1.1,2.0}.json``, the official file names."""
    _check(version, split)
    return pathlib.Path(data_dir) / f"{split}-v{version}.json"


def _is_whitespace(c: str) -> bool:
    # The original's rule (U+202F narrow no-break space included), not str.isspace.
    return c in " \t\r\n" or ord(c) == 0x202F


def _split_words(text: str) -> tuple[list[str], list[int]]:
    """Whitespace words and, per character, the index of its word (as read_squad_examples)."""
    words: list[str] = []
    char_to_word: list[int] = []
    prev_is_whitespace = True
    for c in text:
        if _is_whitespace(c):
            prev_is_whitespace = True
        else:
            if prev_is_whitespace:
                words.append(c)
            else:
                words[-1] += c
            prev_is_whitespace = False
        char_to_word.append(len(words) - 1)
    return words, char_to_word


def _parse(data: dict[str, Any], version: str, split: str) -> SquadSplit:
    """Turns the official JSON structure into a :class:`SquadSplit`, skipping bad entries."""
    training = split == "train"
    examples: list[SquadExample] = []
    skipped: list[tuple[str, str]] = []
    for article in data.get("data", []):
        title = article.get("title", "")
        for k, paragraph in enumerate(article.get("paragraphs", [])):
            where = f"{title}/paragraph {k}"
            if "context" not in paragraph or "qas" not in paragraph:
                skipped.append((where, "paragraph has no 'context' or no 'qas'"))
                continue
            context = paragraph["context"]
            words, char_to_word = _split_words(context)
            for qa in paragraph["qas"]:
                if "id" not in qa or "question" not in qa:
                    skipped.append((qa.get("id", where), "question has no 'id' or no 'question'"))
                    continue
                example = _parse_qa(qa, context, words, char_to_word, version, training)
                if isinstance(example, str):
                    skipped.append((qa["id"], example))
                else:
                    examples.append(example)
    if skipped:
        logging.warning(
            "SQuAD v%s %s: skipped %d malformed entries (first: %s: %s).",
            version,
            split,
            len(skipped),
            *skipped[0],
        )
    return SquadSplit(version, split, examples, skipped)


def _parse_qa(
    qa: dict[str, Any],
    context: str,
    words: list[str],
    char_to_word: list[int],
    version: str,
    training: bool,
) -> SquadExample | str:
    """One example, or the reason it is malformed."""
    answers = qa.get("answers", [])
    try:
        texts = [a["text"] for a in answers]
        starts = [int(a["answer_start"]) for a in answers]
    except (KeyError, TypeError, ValueError):
        return "an answer lacks 'text' or an integer 'answer_start'"
    is_impossible = bool(qa.get("is_impossible", False)) if version == "2.0" else False
    if is_impossible:
        # v2 unanswerable: no target, and the gold for scoring is the empty answer.
        return SquadExample(qa["id"], qa["question"], context, words, [], True, -1, -1)
    for text, start in zip(texts, starts, strict=True):
        if start < 0 or start + len(text) > len(context) or not text:
            return f"answer_start {start} (+{len(text)} chars) is outside the context"
    start_word = end_word = -1
    if training:
        if not texts:
            return "training question has no answer"
        text, start = texts[0], starts[0]
        start_word = char_to_word[start]
        end_word = char_to_word[start + len(text) - 1]
        # The original's "Could not find answer" check, on whitespace-normalised text.
        actual = " ".join(words[start_word : end_word + 1])
        if actual.find(" ".join(text.split())) == -1:
            return f"could not find answer {text!r} at answer_start (found {actual!r})"
    elif not texts:
        return "question has no answer and is not marked is_impossible"
    return SquadExample(
        qa["id"], qa["question"], context, words, texts, False, start_word, end_word
    )


def read_json(data_dir: str | os.PathLike, version: str, split: str) -> SquadSplit:
    """Reads the official ``{split}-v{version}.json`` from ``data_dir``.

    Example::

        train = read_json("data/squad", "1.1", "train")
    """
    path = split_path(data_dir, version, split)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} does not exist. Expected the official SQuAD files laid out as "
            "<data_dir>/{train,dev}-v{1.1,2.0}.json (e.g. train-v1.1.json, dev-v2.0.json)."
        )
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    return _parse(data, version, split)


def load_tfds(version: str, split: str, data_dir: str | None = None) -> SquadSplit:
    """Reads TFDS ``squad/v1.1`` or ``squad/v2.0`` (already prepared; no download).

    Example::

        dev = load_tfds("2.0", "dev", data_dir="~/tensorflow_datasets")
    """
    _check(version, split)
    import tensorflow_datasets as tfds  # Lazy: heavy, and only TFDS users need it.

    ds = tfds.load(
        f"squad/v{version}",
        split="train" if split == "train" else "validation",
        data_dir=data_dir,
        download=False,
    )
    # Rebuild the official JSON layout so TFDS and JSON go through the same checks.
    paragraphs = []
    for record in tfds.as_numpy(ds):
        answers = record["answers"]
        texts, starts = list(answers["text"]), list(answers["answer_start"])
        qa = {
            "id": record["id"].decode("utf-8"),
            "question": record["question"].decode("utf-8"),
            # Unequal lists cannot be paired; None makes _parse record the entry as malformed.
            "answers": [
                {"text": t.decode("utf-8"), "answer_start": int(s)}
                for t, s in zip(texts, starts, strict=True)
            ]
            if len(texts) == len(starts)
            else None,
        }
        if version == "2.0":
            qa["is_impossible"] = bool(record["is_impossible"])
        paragraphs.append({"context": record["context"].decode("utf-8"), "qas": [qa]})
    return _parse({"data": [{"title": "tfds", "paragraphs": paragraphs}]}, version, split)


# ------------------------------------------------------------------------------------------------
# Featurization: convert_examples_to_features.


@dataclasses.dataclass
class SquadFeatures:
    """Model inputs, one row per window; the maps tie each window back to its example."""

    arrays: dict[str, np.ndarray]
    example_index: np.ndarray
    token_to_word: np.ndarray
    max_context: np.ndarray
    truncated_questions: int

    def __len__(self) -> int:
        return len(self.example_index)


def _improve_answer_span(
    doc_tokens: list[str], start: int, end: int, tokenizer: Any, answer_text: str
) -> tuple[int, int]:
    # WordPiece can put the annotated answer inside a longer word's sub-tokens ("(1895)." ->
    # "( 1895 ) ."); the tightest sub-token span matching the tokenized answer is the target.
    tok_answer_text = " ".join(tokenizer.tokenize(answer_text))
    for new_start in range(start, end + 1):
        for new_end in range(end, new_start - 1, -1):
            if " ".join(doc_tokens[new_start : new_end + 1]) == tok_answer_text:
                return new_start, new_end
    return start, end


def doc_spans(n_tokens: int, max_tokens_for_doc: int, doc_stride: int) -> list[tuple[int, int]]:
    """(start, length) of each window, as the original's sliding-window loop."""
    spans = []
    start = 0
    while start < n_tokens:
        length = min(n_tokens - start, max_tokens_for_doc)
        spans.append((start, length))
        if start + length == n_tokens:
            break
        start += min(length, doc_stride)
    return spans


def max_context(spans: list[tuple[int, int]], n_tokens: int) -> np.ndarray:
    """Index of each doc token's best window: max of min(left, right) + 0.01 * length.

    The original _check_is_max_context, vectorised over tokens; argmax takes the first of
    equal scores like its strict ``>``.
    """
    pos = np.arange(n_tokens)
    scores = np.full((len(spans), n_tokens), -np.inf)
    for i, (start, length) in enumerate(spans):
        end = start + length - 1
        inside = (pos >= start) & (pos <= end)
        score = np.minimum(pos - start, end - pos) + 0.01 * length
        scores[i] = np.where(inside, score, -np.inf)
    return np.argmax(scores, axis=0)


def featurize(
    split: SquadSplit,
    tokenizer: Any,
    max_seq_length: int = 384,
    doc_stride: int = 128,
    max_query_length: int = 64,
    training: bool = False,
) -> SquadFeatures:
    """Windows ``[CLS] question [SEP] context-window [SEP]`` for every example.

    ``training`` maps each example's first answer to sub-token targets (0 = [CLS] when the
    window does not hold the whole answer or the question is unanswerable).

    Example::

        feats = featurize(train, tok, max_seq_length=384, doc_stride=128, training=True)
    """
    cls_id, sep_id, pad_id = tokenizer.cls_id, tokenizer.sep_id, tokenizer.pad_id
    word_cache: dict[str, list[str]] = {}  # Contexts repeat across questions; so do words.
    rows: dict[str, list] = collections.defaultdict(list)
    truncated = 0
    for example_index, example in enumerate(split.examples):
        query = tokenizer.tokenize(example.question)
        if len(query) > max_query_length:
            truncated += 1
            query = query[:max_query_length]
        query_ids = [tokenizer.token_to_id(t) for t in query]

        tok_to_orig: list[int] = []
        orig_to_tok: list[int] = []
        doc_tokens: list[str] = []
        for i, word in enumerate(example.words):
            orig_to_tok.append(len(doc_tokens))
            if word not in word_cache:
                word_cache[word] = tokenizer.tokenize(word)
            for sub in word_cache[word]:
                tok_to_orig.append(i)
                doc_tokens.append(sub)
        doc_ids = np.array([tokenizer.token_to_id(t) for t in doc_tokens], dtype=np.int32)
        tok_to_orig_arr = np.array(tok_to_orig, dtype=np.int32)

        tok_start = tok_end = -1
        if training and not example.is_impossible:
            tok_start = orig_to_tok[example.start_word]
            if example.end_word < len(example.words) - 1:
                tok_end = orig_to_tok[example.end_word + 1] - 1
            else:
                tok_end = len(doc_tokens) - 1
            tok_start, tok_end = _improve_answer_span(
                doc_tokens, tok_start, tok_end, tokenizer, example.answers[0]
            )

        max_tokens_for_doc = max_seq_length - len(query) - 3
        if max_tokens_for_doc <= 0:
            raise ValueError(
                f"max_seq_length={max_seq_length} leaves no room for the context after a "
                f"{len(query)}-token question; raise max_seq_length or lower max_query_length."
            )
        spans = doc_spans(len(doc_tokens), max_tokens_for_doc, doc_stride)
        best_span = max_context(spans, len(doc_tokens))
        offset = len(query) + 2  # [CLS] query [SEP]
        for span_index, (start, length) in enumerate(spans):
            ids = np.full(max_seq_length, pad_id, dtype=np.int32)
            ids[0] = cls_id
            ids[1 : offset - 1] = query_ids
            ids[offset - 1] = sep_id
            ids[offset : offset + length] = doc_ids[start : start + length]
            ids[offset + length] = sep_id
            n = offset + length + 1
            type_ids = np.zeros(max_seq_length, dtype=np.int32)
            type_ids[offset:n] = 1
            mask = np.zeros(max_seq_length, dtype=np.int32)
            mask[:n] = 1
            to_word = np.full(max_seq_length, -1, dtype=np.int32)
            to_word[offset : offset + length] = tok_to_orig_arr[start : start + length]
            is_max = np.zeros(max_seq_length, dtype=bool)
            is_max[offset : offset + length] = best_span[start : start + length] == span_index
            s_pos = e_pos = 0
            inside = start <= tok_start and tok_end <= start + length - 1
            if training and not example.is_impossible and inside:
                s_pos, e_pos = tok_start - start + offset, tok_end - start + offset
            rows["input_ids"].append(ids)
            rows["token_type_ids"].append(type_ids)
            rows["attention_mask"].append(mask)
            rows["start_positions"].append(s_pos)
            rows["end_positions"].append(e_pos)
            rows["example_index"].append(example_index)
            rows["token_to_word"].append(to_word)
            rows["max_context"].append(is_max)

    def stack(name: str, dtype: Any, shape: tuple[int, ...]) -> np.ndarray:
        return np.array(rows[name], dtype=dtype) if rows[name] else np.zeros(shape, dtype)

    L = max_seq_length
    arrays = {
        name: stack(name, np.int32, (0, L))
        for name in ("input_ids", "token_type_ids", "attention_mask")
    }
    arrays["start_positions"] = stack("start_positions", np.int32, (0,))
    arrays["end_positions"] = stack("end_positions", np.int32, (0,))
    return SquadFeatures(
        arrays=arrays,
        example_index=stack("example_index", np.int32, (0,)),
        token_to_word=stack("token_to_word", np.int32, (0, L)),
        max_context=stack("max_context", bool, (0, L)),
        truncated_questions=truncated,
    )


# ------------------------------------------------------------------------------------------------
# Predictions: write_predictions and get_final_text.


@dataclasses.dataclass
class SquadPredictions:
    """Answer texts, n-best lists and (v2) null odds, keyed by question id."""

    predictions: dict[str, str]
    nbest: dict[str, list[dict]]
    null_odds: dict[str, float] | None


def _strip_spaces(text: str) -> tuple[str, dict[int, int]]:
    chars: list[str] = []
    ns_to_s: dict[int, int] = {}
    for i, c in enumerate(text):
        if c == " ":
            continue
        ns_to_s[len(chars)] = i
        chars.append(c)
    return "".join(chars), ns_to_s


def final_text(pred_text: str, orig_text: str, tokenizer: Any) -> str:
    """Projects de-tokenized ``pred_text`` back onto the original words ``orig_text``.

    The original get_final_text: the prediction is normalised text (lower-cased, accents and
    punctuation split off), so it is located in the basic-tokenized original and mapped back
    through space-free character alignments; on any mismatch the whole ``orig_text`` is used.

    >>> final_text("steve smith", "Steve Smith's", tok)  # doctest: +SKIP
    'Steve Smith'
    """
    tok_text = " ".join(tokenizer.basic_tokenize(orig_text))
    start = tok_text.find(pred_text)
    if start == -1:
        return orig_text
    end = start + len(pred_text) - 1
    orig_ns, orig_ns_to_s = _strip_spaces(orig_text)
    tok_ns, tok_ns_to_s = _strip_spaces(tok_text)
    if len(orig_ns) != len(tok_ns):
        return orig_text
    tok_s_to_ns = {s: ns for ns, s in tok_ns_to_s.items()}
    orig_start = orig_ns_to_s.get(tok_s_to_ns[start]) if start in tok_s_to_ns else None
    if orig_start is None:
        return orig_text
    orig_end = orig_ns_to_s.get(tok_s_to_ns[end]) if end in tok_s_to_ns else None
    if orig_end is None:
        return orig_text
    return orig_text[orig_start : orig_end + 1]


def _softmax(scores: list[float]) -> list[float]:
    if not scores:
        return []
    top = max(scores)
    exps = [math.exp(s - top) for s in scores]
    total = sum(exps)
    return [e / total for e in exps]


def _best_indexes(logits: np.ndarray, n: int) -> np.ndarray:
    # Stable, so ties keep the lower index first, as the original's sorted(..., reverse=True).
    return np.argsort(-logits, kind="stable")[:n]


def postprocess(
    split: SquadSplit,
    features: SquadFeatures,
    start_logits: np.ndarray,
    end_logits: np.ndarray,
    tokenizer: Any,
    n_best_size: int = 20,
    max_answer_length: int = 30,
    null_score_diff_threshold: float = 0.0,
) -> SquadPredictions:
    """Answer texts from per-window logits (float ``[n_windows, max_seq_length]``).

    The original write_predictions; v2.0 behaviour (a null answer competes, ``null_odds``)
    iff ``split.version == "2.0"``.

    Example::

        result = postprocess(dev, feats, start_logits, end_logits, tok)
        result.predictions["56be4db0acb8001400a502ec"]  # 'Denver Broncos'
    """
    v2 = split.version == "2.0"
    start_logits = np.asarray(start_logits, dtype=np.float64)
    end_logits = np.asarray(end_logits, dtype=np.float64)
    if start_logits.shape != features.token_to_word.shape or end_logits.shape != start_logits.shape:
        raise ValueError(
            f"logits have shapes {start_logits.shape} and {end_logits.shape}; expected "
            f"{features.token_to_word.shape} (windows, max_seq_length) like the features."
        )
    windows: dict[int, list[int]] = collections.defaultdict(list)
    for row, ex in enumerate(features.example_index.tolist()):
        windows[ex].append(row)
    input_ids = features.arrays["input_ids"]

    predictions: dict[str, str] = {}
    nbest_all: dict[str, list[dict]] = {}
    null_odds: dict[str, float] | None = {} if v2 else None
    for ex_index, example in enumerate(split.examples):
        rows = windows.get(ex_index, [])
        prelim: list[tuple[float, float, int, int, int]] = []  # start, end logit, row, s, e
        score_null = 1e6
        null_row, null_start, null_end = (rows[0] if rows else -1), 0.0, 0.0
        for row in rows:
            s_logits, e_logits = start_logits[row], end_logits[row]
            to_word, is_max = features.token_to_word[row], features.max_context[row]
            if v2:
                null_score = s_logits[0] + e_logits[0]
                if null_score < score_null:
                    score_null, null_row = null_score, row
                    null_start, null_end = float(s_logits[0]), float(e_logits[0])
            ends = _best_indexes(e_logits, n_best_size)
            for s in _best_indexes(s_logits, n_best_size):
                # Only context tokens map to words; padding and the question map to -1.
                if to_word[s] < 0 or not is_max[s]:
                    continue
                for e in ends:
                    if to_word[e] < 0 or e < s or e - s + 1 > max_answer_length:
                        continue
                    prelim.append((float(s_logits[s]), float(e_logits[e]), row, int(s), int(e)))
        if v2:
            prelim.append((null_start, null_end, null_row, 0, 0))
        prelim.sort(key=lambda p: p[0] + p[1], reverse=True)

        seen: set[str] = set()
        nbest: list[tuple[str, float, float]] = []
        for s_logit, e_logit, row, s, e in prelim:
            if len(nbest) >= n_best_size:
                break
            if s > 0:  # Not the null ([CLS]) answer.
                tokens = [tokenizer.id_to_token(int(i)) for i in input_ids[row, s : e + 1]]
                tok_text = " ".join(tokenizer.detokenize(tokens).split())
                words = example.words[
                    features.token_to_word[row, s] : features.token_to_word[row, e] + 1
                ]
                text = final_text(tok_text, " ".join(words), tokenizer)
                if text in seen:
                    continue
            else:
                text = ""
            seen.add(text)
            nbest.append((text, s_logit, e_logit))
        if v2 and "" not in seen:
            nbest.append(("", null_start, null_end))
        # The original would fail on a v2 n-best holding only the null answer; a nonce
        # non-null entry (as the original's v1 "empty" fallback) keeps null_odds defined.
        if v2 and len(nbest) == 1:
            nbest.insert(0, ("empty", 0.0, 0.0))
        if not nbest:
            nbest.append(("empty", 0.0, 0.0))

        probs = _softmax([s + e for _, s, e in nbest])
        nbest_json = [
            {"text": t, "probability": float(p), "start_logit": float(s), "end_logit": float(e)}
            for (t, s, e), p in zip(nbest, probs, strict=True)
        ]
        nbest_all[example.id] = nbest_json
        if not v2:
            predictions[example.id] = nbest_json[0]["text"]
        else:
            best = next(entry for entry in nbest if entry[0])
            diff = float(score_null - best[1] - best[2])
            null_odds[example.id] = diff
            predictions[example.id] = "" if diff > null_score_diff_threshold else best[0]
    return SquadPredictions(predictions, nbest_all, null_odds)


def _write_json(path: pathlib.Path, obj: Any) -> None:
    # Temp file + rename, so a reader never sees half a file.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=4)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def write_predictions(directory: str | os.PathLike, result: SquadPredictions) -> list[pathlib.Path]:
    """Writes predictions.json, nbest_predictions.json and (v2) null_odds.json.

    Example::

        paths = write_predictions("run/eval", result)
    """
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    outputs = [("predictions.json", result.predictions), ("nbest_predictions.json", result.nbest)]
    if result.null_odds is not None:
        outputs.append(("null_odds.json", result.null_odds))
    paths = []
    for name, obj in outputs:
        _write_json(directory / name, obj)
        paths.append(directory / name)
    return paths


# ------------------------------------------------------------------------------------------------
# Official metrics: evaluate-v1.1.py and evaluate-v2.0.py.

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCTUATION = set(string.punctuation)


def normalize_answer(s: str) -> str:
    """Lower-case, drop punctuation and articles, collapse whitespace (the official rule)."""
    s = "".join(c for c in s.lower() if c not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", s).split())


def _f1(prediction: str, gold: str, v2: bool) -> float:
    pred_tokens = normalize_answer(prediction).split()
    gold_tokens = normalize_answer(gold).split()
    # v2 scores an empty-vs-empty pair as a match; v1.1 has no such rule (overlap 0 -> 0).
    if v2 and (not pred_tokens or not gold_tokens):
        return float(pred_tokens == gold_tokens)
    common = collections.Counter(pred_tokens) & collections.Counter(gold_tokens)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred_tokens), same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def _best_thresh(
    predictions: dict[str, str],
    scores: dict[str, float],
    null_odds: dict[str, float],
    has_answer: dict[str, bool],
) -> tuple[float, float]:
    """evaluate-v2.0.py's find_best_thresh: the null-odds cut that maximises the score."""
    cur = best = sum(1 for v in has_answer.values() if not v)
    best_thresh = 0.0
    for qid in sorted(null_odds, key=lambda k: null_odds[k]):
        if qid not in scores:
            continue
        # A wrongly answered no-answer question loses a point once the cut admits it.
        cur += scores[qid] if has_answer[qid] else (-1 if predictions.get(qid) else 0)
        if cur > best:
            best, best_thresh = cur, null_odds[qid]
    return 100.0 * best / len(scores), best_thresh


def score(
    split: SquadSplit, predictions: dict[str, str], null_odds: dict[str, float] | None = None
) -> dict[str, float]:
    """Official EM / F1 (0-100) as the max over gold answers; missing predictions score 0.

    v2.0 adds HasAns_/NoAns_ scores (each only when such questions exist, as the official
    script), and with ``null_odds`` the official ``--na-prob-file`` behaviour: null odds above
    1.0 count as "no answer", plus best_exact/best_f1 and their thresholds.

    Example::

        score(dev, result.predictions, result.null_odds)  # {'exact': 81.2, 'f1': 88.5, ...}
    """
    v2 = split.version == "2.0"
    exact: dict[str, float] = {}
    f1: dict[str, float] = {}
    has_answer: dict[str, bool] = {}
    for ex in split.examples:
        golds = [a for a in ex.answers if normalize_answer(a)] if v2 else list(ex.answers)
        if v2 and not golds:
            golds = [""]
        has_answer[ex.id] = bool(ex.answers)
        if ex.id not in predictions:
            exact[ex.id] = f1[ex.id] = 0.0
            continue
        pred = predictions[ex.id]
        exact[ex.id] = max(float(normalize_answer(pred) == normalize_answer(g)) for g in golds)
        f1[ex.id] = max(_f1(pred, g, v2) for g in golds)

    def summary(ex_scores: dict[str, float], f1_scores: dict[str, float], ids, prefix: str):
        total = len(ids)
        if total == 0:
            return {}
        return {
            f"{prefix}exact": 100.0 * sum(ex_scores[k] for k in ids) / total,
            f"{prefix}f1": 100.0 * sum(f1_scores[k] for k in ids) / total,
            f"{prefix}total": total,
        }

    if not v2:
        return summary(exact, f1, list(exact), "") or {"exact": 0.0, "f1": 0.0, "total": 0}
    exact_t, f1_t = dict(exact), dict(f1)
    if null_odds is not None:
        for qid in exact:
            if null_odds.get(qid, 0.0) > 1.0:
                exact_t[qid] = f1_t[qid] = float(not has_answer[qid])
    result = summary(exact_t, f1_t, list(exact), "") or {"exact": 0.0, "f1": 0.0, "total": 0}
    result.update(summary(exact_t, f1_t, [k for k, v in has_answer.items() if v], "HasAns_"))
    result.update(summary(exact_t, f1_t, [k for k, v in has_answer.items() if not v], "NoAns_"))
    if null_odds is not None and exact:
        odds = {k: null_odds.get(k, 0.0) for k in null_odds if k in exact}
        result["best_exact"], result["best_exact_thresh"] = _best_thresh(
            predictions, exact, odds, has_answer
        )
        result["best_f1"], result["best_f1_thresh"] = _best_thresh(
            predictions, f1, odds, has_answer
        )
    return result


# ------------------------------------------------------------------------------------------------
# A learnable synthetic SQuAD, worded from the synthetic pretraining corpus.

# The v2.0 share of unanswerable questions. SQuAD 2.0 has a third; with a third, the embedded
# tiny model stayed on the all-[CLS] plateau for all of its 500-1000 steps (learning rates 3e-4 to
# 1e-3, measured 2026-12-03); with a fifth it leaves the plateau, at a step that varies with the
# seed and the processor (configs/squad.py).
SYNTHETIC_UNANSWERABLE = 0.2


def write_synthetic_squad(
    directory: str | os.PathLike,
    version: str,
    seed: int = 0,
    num_train: int = 1024,
    num_dev: int = 256,
    context_sentences: tuple[int, int] = (12, 18),
) -> pathlib.Path:
    """Writes ``train-v{version}.json`` and ``dev-v{version}.json`` into ``directory``.

    Contexts are ``context_sentences`` (12-18 by default) sentences "the ADJ SUBJECT VERBs the
    ADJ OBJECT ." (12-18: about 150-250 SentencePiece tokens, so several windows at
    max_seq_length=128, doc_stride=48); every noun occurs once per context. A question "the
    SUBJECT that VERBs the OBJECT ." asks for the clause that states it, "SUBJECT VERBs the ADJ
    OBJECT" (the adjective is what the question does not tell). Each end of the answer is a word
    the question names: locating a word of the question is what a 2-layer model learns, at a
    step that varies with the seed (about 430 to 1,300 at lr 3e-4; configs/squad.py), while
    spans a fixed distance from such a word need a second hop that it learns far more slowly.
    In v2.0 a fifth (``SYNTHETIC_UNANSWERABLE``) name a subject and an object absent from the
    context (unanswerable; the clause of their verb is the plausible answer). Dev answers also
    list the clause with the subject's article and adjective. Only words of
    :mod:`bert_jax.data.synthetic` are used, so its pretraining vocabulary covers them.
    Deterministic in ``seed``.

    Example::

        data_dir = write_synthetic_squad("/tmp/squad", "2.0")
        dev = read_json(data_dir, "2.0", "dev")
    """
    _check(version, "train")
    from bert_jax.data.synthetic import _SHARED, _TOPICS, _pluralize

    nouns = sorted({n for ns, _ in _TOPICS.values() for n in ns.split()})
    fewest, most = context_sentences
    if not 1 <= fewest <= most <= (len(nouns) - 6) // 2:  # two nouns a sentence, six kept out
        raise ValueError(
            f"context_sentences={tuple(context_sentences)}: use 1 <= fewest <= most <= "
            f"{(len(nouns) - 6) // 2} (each sentence uses two of the {len(nouns)} nouns)."
        )
    verbs = sorted({v for _, vs in _TOPICS.values() for v in vs.split()})
    adjectives = _SHARED["adjective"]
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    rng = random.Random(f"squad-{version}-{seed}")
    for split, count in (("train", num_train), ("dev", num_dev)):
        paragraphs: list[dict] = []
        n_questions = 0
        while n_questions < count:
            n_sentences = rng.randint(*context_sentences)
            shuffled = rng.sample(nouns, 6 + 2 * n_sentences)
            # A few nouns are kept out of the context entirely, for unanswerable questions.
            absent, subjects, objects = (
                shuffled[:6],
                shuffled[6 : 6 + n_sentences],
                shuffled[6 + n_sentences :],
            )
            sentences = []  # (subject, verb, object, clause, its start, start with the article)
            context = ""
            for subject, obj in zip(subjects, objects, strict=True):
                verb = _pluralize(rng.choice(verbs))
                article = f"the {rng.choice(adjectives)} "
                clause = f"{subject} {verb} the {rng.choice(adjectives)} {obj}"
                start = len(context) + len(article)
                sentences.append((subject, verb, obj, clause, start, len(context)))
                context += f"{article}{clause} . "
            context = context.rstrip()
            qas = []
            for _ in range(min(rng.randint(4, 6), count - n_questions)):
                qid = f"synthetic-{split}-{n_questions:06d}"
                n_questions += 1
                subject, verb, obj, clause, start, sentence_start = rng.choice(sentences)
                if version == "2.0" and rng.random() < SYNTHETIC_UNANSWERABLE:
                    missing_subject, missing_object = rng.sample(absent, 2)
                    qas.append(
                        {
                            "id": qid,
                            "question": f"the {missing_subject} that {verb} the {missing_object} .",
                            "answers": [],
                            "is_impossible": True,
                            "plausible_answers": [{"text": clause, "answer_start": start}],
                        }
                    )
                    continue
                answers = [{"text": clause, "answer_start": start}]
                if split == "dev":
                    with_article = context[sentence_start : start + len(clause)]
                    answers.append({"text": with_article, "answer_start": sentence_start})
                qa = {
                    "id": qid,
                    "question": f"the {subject} that {verb} the {obj} .",
                    "answers": answers,
                }
                if version == "2.0":
                    qa["is_impossible"] = False
                qas.append(qa)
            paragraphs.append({"context": context, "qas": qas})
        data = {
            "version": f"v{version}",
            "data": [{"title": f"synthetic-{split}", "paragraphs": paragraphs}],
        }
        _write_json(split_path(directory, version, split), data)
    return directory
