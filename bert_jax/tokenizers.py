"""Tokenizers for BERT: WordPiece (a BERT ``vocab.txt``) and SentencePiece (a ``.model`` file).

Both share one interface (:class:`Tokenizer`): text -> tokens -> ids, the five special ids, the
``[CLS] a [SEP] b [SEP]`` pair layout with BERT's truncation rule, a per-id word-start mask for
whole-word masking, and save/load through a directory holding the vocabulary and a small
``tokenizer.json``.

:class:`WordPiece` reproduces google-research/bert ``tokenization.FullTokenizer`` exactly.
Hugging Face's ``BertTokenizer`` departs from it in a few corners, where this module follows the
original: it drops every ``C*`` category character (the original only ``Cc``/``Cf``, so private-use
and unassigned code points survive and become ``[UNK]``), NFC-normalises the text (the original
leaves decomposed accents and CJK compatibility ideographs alone when cased), keeps text such as
"[MASK]" as one special token (the original splits it like any text) and maps words longer than
100 characters to ``[UNK]`` (the original: longer than 200). The fast (Rust) tokenizer also
lower-cases character by character, so a word-final capital sigma becomes "σ" there, "ς" here
and in Python's ``str.lower`` (the original and the slow tokenizer).

Hugging Face's tokenizer files are read and written here too: :func:`from_hf_tokenizer_json` builds
a WordPiece from a fast tokenizer's ``tokenizer.json`` (its normaliser options and word-length limit
included, so ids match that tokenizer but for the corners above), and :func:`hf_tokenizer_files`
gives the files ``transformers.AutoTokenizer`` loads (``vocab.txt``, ``tokenizer.json``,
``tokenizer_config.json``, ``special_tokens_map.json``).

Example::

    tok = WordPiece("vocab.txt", lower_case=True)
    ids, type_ids = tok.encode_pair(tok.encode("Hello, world!"), tok.encode("Bye."), 128)
    tok.save("run/tokenizer")
    tok = load_tokenizer("run/tokenizer")
    tok = from_hf_tokenizer_json("all-MiniLM-L6-v2/tokenizer.json")
"""

from __future__ import annotations

import abc
import functools
import json
import logging
import os
import shutil
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

PAD, UNK, CLS, SEP, MASK = "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"
SPECIAL_TOKENS = (PAD, UNK, CLS, SEP, MASK)
CONFIG_NAME = "tokenizer.json"
VOCAB_NAME = "vocab.txt"

_log = logging.getLogger(__name__)


class Tokenizer(abc.ABC):
    """Vocabulary lookups, special ids, pair encoding and saving shared by all tokenizers.

    Subclasses load their vocabulary as a list of tokens (index = id) and implement
    :meth:`tokenize` and :meth:`decode`.
    """

    type_name: ClassVar[str]

    def __init__(self, file: str | None, tokens: list[str], lower_case: bool):
        self.file = file  # None: the vocabulary came from elsewhere (e.g. a tokenizer.json)
        self.lower_case = lower_case
        self._tokens = tokens
        # Later duplicates win, as in the original load_vocab.
        self._ids = {tok: i for i, tok in enumerate(tokens)}
        missing = [tok for tok in SPECIAL_TOKENS if tok not in self._ids]
        if missing:
            raise ValueError(
                f"{file or 'The vocabulary'} lacks the special token(s) {missing}; BERT needs "
                f"all of {list(SPECIAL_TOKENS)}. Add them to the vocabulary (e.g. as the first "
                "entries)."
            )

    @abc.abstractmethod
    def tokenize(self, text: str) -> list[str]:
        """Splits ``text`` into vocabulary tokens (no special tokens added)."""

    @abc.abstractmethod
    def decode(self, ids: Iterable[int]) -> str:
        """Turns ids back into text."""

    @abc.abstractmethod
    def basic_tokenize(self, text: str) -> list[str]:
        """Words before sub-word splitting (SQuAD's get_final_text aligns answers on these)."""

    @abc.abstractmethod
    def detokenize(self, tokens: list[str]) -> str:
        """Joins sub-word tokens back into space-separated words."""

    @staticmethod
    @abc.abstractmethod
    def _starts_word(token: str) -> bool:
        """Whether ``token`` begins a word (rather than continuing the previous token's word)."""

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``, without special tokens."""
        return [self.token_to_id(tok) for tok in self.tokenize(text)]

    def token_to_id(self, token: str) -> int:
        """The id of ``token``; ``unk_id`` for a token not in the vocabulary."""
        return self._ids.get(token, self.unk_id)

    def id_to_token(self, i: int) -> str:
        if not 0 <= i < len(self._tokens):
            raise IndexError(f"token id {i} is outside the vocabulary [0, {len(self._tokens)})")
        return self._tokens[i]

    @property
    def vocab_size(self) -> int:
        return len(self._tokens)

    @property
    def pad_id(self) -> int:
        return self._ids[PAD]

    @property
    def unk_id(self) -> int:
        return self._ids[UNK]

    @property
    def cls_id(self) -> int:
        return self._ids[CLS]

    @property
    def sep_id(self) -> int:
        return self._ids[SEP]

    @property
    def mask_id(self) -> int:
        return self._ids[MASK]

    @functools.cached_property
    def word_start_mask(self) -> np.ndarray:
        """Bool ``[vocab_size]``: True where a token begins a word (special tokens included).

        Whole-word masking groups a word-start token with the continuation tokens after it.
        """
        mask = np.array([self._starts_word(tok) for tok in self._tokens], dtype=bool)
        mask[[self._ids[tok] for tok in SPECIAL_TOKENS]] = True
        return mask

    def encode_pair(
        self, a_ids: list[int], b_ids: list[int] | None, max_length: int
    ) -> tuple[list[int], list[int]]:
        """``[CLS] a [SEP] b [SEP]`` (or ``[CLS] a [SEP]``) and its token-type ids.

        Truncates like the original ``_truncate_seq_pair``: drop the last token of the longer
        side (of ``b`` on a tie) until everything fits in ``max_length``.

        >>> tok.encode_pair([7, 8, 9], [10, 11], max_length=6)  # doctest: +SKIP
        ([2, 7, 8, 3, 10, 3], [0, 0, 0, 0, 1, 1])
        """
        n_special = 2 if b_ids is None else 3
        if max_length < n_special:
            raise ValueError(
                f"max_length={max_length} cannot hold the {n_special} special tokens of "
                f"{'a single sequence' if b_ids is None else 'a pair'}; use max_length >= "
                f"{n_special}."
            )
        a, b = list(a_ids), list(b_ids or [])
        while len(a) + len(b) > max_length - n_special:
            (a if len(a) > len(b) else b).pop()
        ids = [self.cls_id, *a, self.sep_id]
        type_ids = [0] * len(ids)
        if b_ids is not None:
            ids += [*b, self.sep_id]
            type_ids += [1] * (len(b) + 1)
        return ids, type_ids

    def save(self, directory: str) -> None:
        """Writes the vocabulary into ``directory``, and ``tokenizer.json`` (type, options)."""
        os.makedirs(directory, exist_ok=True)
        name = self._save_vocabulary(directory)
        config = {"type": self.type_name, "file": name, "lower_case": self.lower_case}
        config |= self._extra_options()
        with open(os.path.join(directory, CONFIG_NAME), "w", encoding="utf-8") as f:
            json.dump(config, f, indent=2)

    def _save_vocabulary(self, directory: str) -> str:
        """Copies the vocabulary file into ``directory``; returns its name there."""
        name = os.path.basename(self.file)
        target = os.path.join(directory, name)
        if not (os.path.exists(target) and os.path.samefile(self.file, target)):
            shutil.copyfile(self.file, target)
        return name

    def _extra_options(self) -> dict[str, Any]:
        """Options beyond ``lower_case`` that ``tokenizer.json`` must record to rebuild this."""
        return {}


# ------------------------------------------------------------------------------------------------
# WordPiece: google-research/bert tokenization.py, rule for rule.


def _is_control(char: str) -> bool:
    # \t \n \r are Cc but count as whitespace; other C* categories (private use, unassigned)
    # are kept, unlike Hugging Face.
    return char not in "\t\n\r" and unicodedata.category(char) in ("Cc", "Cf")


def _is_whitespace(char: str) -> bool:
    return char in " \t\n\r" or unicodedata.category(char) == "Zs"


def _is_punctuation(char: str) -> bool:
    # All non-alphanumeric ASCII counts, e.g. "$" "^" "`" which are symbols in Unicode.
    cp = ord(char)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(char).startswith("P")


def _is_chinese_char(cp: int) -> bool:
    # The CJK Unified Ideographs blocks (not Hangul, Hiragana or Katakana, which use spaces).
    return (
        0x4E00 <= cp <= 0x9FFF
        or 0x3400 <= cp <= 0x4DBF
        or 0x20000 <= cp <= 0x2A6DF
        or 0x2A700 <= cp <= 0x2B73F
        or 0x2B740 <= cp <= 0x2B81F
        or 0x2B820 <= cp <= 0x2CEAF
        or 0xF900 <= cp <= 0xFAFF
        or 0x2F800 <= cp <= 0x2FA1F
    )


@functools.lru_cache(maxsize=65536)
def _clean_char(char: str, clean_text: bool = True, chinese_chars: bool = True) -> str:
    """What ``char`` becomes before whitespace splitting: dropped, a space, or spaced out."""
    cp = ord(char)
    if clean_text:
        if cp == 0 or cp == 0xFFFD or _is_control(char):
            return ""
        if _is_whitespace(char):
            return " "
    if chinese_chars and _is_chinese_char(cp):
        return f" {char} "
    return char


def _strip_accents(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFD", text) if unicodedata.category(c) != "Mn")


def _split_on_punctuation(word: str) -> list[str]:
    pieces: list[str] = []
    start_new = True
    for char in word:
        if _is_punctuation(char):
            pieces.append(char)
            start_new = True
        else:
            if start_new:
                pieces.append("")
            start_new = False
            pieces[-1] += char
    return pieces


# The original's word-length limit; Hugging Face's is 100 (its tokenizer.json says which).
ORIGINAL_MAX_CHARS_PER_WORD = 200


class WordPiece(Tokenizer):
    """BERT's WordPiece tokenizer on a ``vocab.txt`` (one token per line, line number = id).

    ``vocab`` is the path of a ``vocab.txt``, or the tokens themselves (index = id).
    ``lower_case=True`` lower-cases and strips accents (uncased models); ``False`` keeps both.
    The other options are the original's fixed choices unless changed, and exist because Hugging
    Face's ``BertNormalizer`` and ``WordPiece`` model expose them:

    - ``strip_accents``: None follows ``lower_case`` (the original's rule);
    - ``tokenize_chinese_chars``: put spaces around CJK ideographs, so each is a word;
    - ``clean_text``: drop NUL, U+FFFD and control characters, turn whitespace into spaces;
    - ``max_chars_per_word``: a longer word becomes ``[UNK]``.

    Example::

        tok = WordPiece("vocab.txt", lower_case=True)
        tok.tokenize("Unaffable café!")  # ['un', '##aff', '##able', 'cafe', '!']
        WordPiece(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hi"], lower_case=False)
    """

    type_name = "wordpiece"

    def __init__(
        self,
        vocab: str | os.PathLike | Sequence[str],
        lower_case: bool = True,
        *,
        strip_accents: bool | None = None,
        tokenize_chinese_chars: bool = True,
        clean_text: bool = True,
        max_chars_per_word: int = ORIGINAL_MAX_CHARS_PER_WORD,
    ):
        if isinstance(vocab, str | os.PathLike):
            file = os.fspath(vocab)
            if not os.path.isfile(file):
                raise FileNotFoundError(
                    f"WordPiece vocabulary {file!r} does not exist; pass the path of a BERT "
                    "vocab.txt (one token per line)."
                )
            # Split on "\n" only and strip each line, like the original load_vocab.
            with open(file, encoding="utf-8", newline="\n") as f:
                tokens = [line.strip() for line in f]
        else:
            file, tokens = None, list(vocab)
            # save() writes them as a vocab.txt, one per line, which the loader strips.
            bad = [(i, t) for i, t in enumerate(tokens) if t != t.strip() or "\n" in t]
            if bad:
                raise ValueError(
                    f"Token(s) {bad[:5]} (id, token) have whitespace at their ends or a line "
                    "break; a vocab.txt cannot hold them. Remove them from the vocabulary."
                )
        super().__init__(file, tokens, lower_case)
        self.strip_accents = lower_case if strip_accents is None else bool(strip_accents)
        self.tokenize_chinese_chars = bool(tokenize_chinese_chars)
        self.clean_text = bool(clean_text)
        self.max_chars_per_word = int(max_chars_per_word)
        # No vocabulary entry is longer than this, so longer candidates need not be looked up.
        self._max_piece_chars = max(map(len, tokens))

    @property
    def options(self) -> dict[str, Any]:
        """Every option, as keyword arguments of the constructor."""
        return {
            "lower_case": self.lower_case,
            "strip_accents": self.strip_accents,
            "tokenize_chinese_chars": self.tokenize_chinese_chars,
            "clean_text": self.clean_text,
            "max_chars_per_word": self.max_chars_per_word,
        }

    def replace(self, **options: Any) -> WordPiece:
        """The same vocabulary with some options changed: ``tok.replace(lower_case=False)``."""
        return WordPiece(self.file or self._tokens, **(self.options | options))

    def _extra_options(self) -> dict[str, Any]:
        # Options at the original's values are left out: files saved before they existed read
        # the same, and a default tokenizer's file stays {"type", "file", "lower_case"}.
        original = {
            "strip_accents": self.lower_case,
            "tokenize_chinese_chars": True,
            "clean_text": True,
            "max_chars_per_word": ORIGINAL_MAX_CHARS_PER_WORD,
        }
        return {k: self.options[k] for k, v in original.items() if self.options[k] != v}

    def _save_vocabulary(self, directory: str) -> str:
        if self.file is not None:
            return super()._save_vocabulary(directory)
        with open(os.path.join(directory, VOCAB_NAME), "w", encoding="utf-8") as f:
            f.write("".join(tok + "\n" for tok in self._tokens))
        return VOCAB_NAME

    def tokenize(self, text: str) -> list[str]:
        tokens: list[str] = []
        for word in self.basic_tokenize(text):
            tokens.extend(self._wordpiece(word))
        return tokens

    def decode(self, ids: Iterable[int]) -> str:
        return " ".join(self.id_to_token(i) for i in ids).replace(" ##", "").strip()

    def detokenize(self, tokens: list[str]) -> str:
        # As run_squad.py's write_predictions: glue continuations, then drop stray "##".
        return " ".join(tokens).replace(" ##", "").replace("##", "").strip()

    @staticmethod
    def _starts_word(token: str) -> bool:
        return not token.startswith("##")

    def basic_tokenize(self, text: str) -> list[str]:
        """Clean text, split on whitespace, CJK characters and punctuation; lower-case if asked."""
        text = "".join(_clean_char(c, self.clean_text, self.tokenize_chinese_chars) for c in text)
        words: list[str] = []
        # str.split(), as in the original: it also splits on e.g. U+2028, which is not Zs.
        for word in text.split():
            if self.lower_case:
                word = word.lower()
            if self.strip_accents:
                word = _strip_accents(word)
            words.extend(_split_on_punctuation(word))
        # Accent stripping can empty a word (a lone combining mark) or reveal whitespace.
        return " ".join(words).split()

    def _wordpiece(self, word: str) -> list[str]:
        """Greedy longest-match-first split of one word; ``[UNK]`` if any part has no match."""
        if len(word) > self.max_chars_per_word:
            return [UNK]
        pieces: list[str] = []
        start = 0
        while start < len(word):
            for end in range(min(len(word), start + self._max_piece_chars), start, -1):
                piece = word[start:end] if start == 0 else "##" + word[start:end]
                if piece in self._ids:
                    break
            else:
                return [UNK]
            pieces.append(piece)
            start = end
        return pieces


# ------------------------------------------------------------------------------------------------
# SentencePiece.


class SentencePiece(Tokenizer):
    """A SentencePiece model with BERT's special tokens (see :func:`train_sentencepiece`).

    Lower-casing is part of the model's normaliser, so it is read from the model, not passed in.

    Example::

        tok = SentencePiece("spm.model")
        tok.tokenize("Hello world")  # ['▁hello', '▁world']
    """

    type_name = "sentencepiece"

    def __init__(self, model_file: str):
        import sentencepiece as spm  # Lazy: only SentencePiece users need it.

        if not os.path.isfile(model_file):
            raise FileNotFoundError(
                f"SentencePiece model {model_file!r} does not exist; pass a .model file, e.g. "
                "one written by train_sentencepiece(texts, output_prefix, vocab_size)."
            )
        self._sp = spm.SentencePieceProcessor(model_file=model_file)
        tokens = [self._sp.id_to_piece(i) for i in range(self._sp.get_piece_size())]
        # A case-folding normaliser maps "A" and "a" to the same text.
        lower_case = self._sp.normalize("A") == self._sp.normalize("a")
        super().__init__(model_file, tokens, lower_case)

    def tokenize(self, text: str) -> list[str]:
        return self._sp.encode(text, out_type=str)

    def encode(self, text: str) -> list[int]:
        return self._sp.encode(text)

    def decode(self, ids: Iterable[int]) -> str:
        return self._sp.decode(list(ids))

    def basic_tokenize(self, text: str) -> list[str]:
        return (text.lower() if self.lower_case else text).split()

    def detokenize(self, tokens: list[str]) -> str:
        return "".join(tokens).replace("\u2581", " ").strip()

    @staticmethod
    def _starts_word(token: str) -> bool:
        return token.startswith("\u2581")


def train_sentencepiece(
    texts: Iterable[str],
    output_prefix: str,
    vocab_size: int,
    model_type: str = "unigram",
    lower_case: bool = True,
    **trainer_options,
) -> SentencePiece:
    """Trains a SentencePiece vocabulary whose ids 0-4 are [PAD] [UNK] [CLS] [SEP] [MASK].

    Writes ``{output_prefix}.model`` and ``.vocab``. ``lower_case`` uses the case-folding
    normaliser ``nmt_nfkc_cf``, stored in the model so encoding always matches training.
    ``trainer_options`` go to ``sentencepiece.SentencePieceTrainer.train`` (e.g.
    ``character_coverage=1.0``, ``input_sentence_size=10_000_000``).

    Example::

        tok = train_sentencepiece(open("corpus.txt"), "out/spm", vocab_size=32000)
    """
    import sentencepiece as spm

    if model_type not in ("unigram", "bpe"):
        raise ValueError(f"model_type={model_type!r}; use 'unigram' or 'bpe'.")
    if vocab_size <= len(SPECIAL_TOKENS):
        raise ValueError(
            f"vocab_size={vocab_size} leaves no room beside the {len(SPECIAL_TOKENS)} special "
            "tokens; use a larger vocab_size."
        )
    os.makedirs(os.path.dirname(os.path.abspath(output_prefix)), exist_ok=True)
    options = dict(
        model_prefix=output_prefix,
        vocab_size=vocab_size,
        model_type=model_type,
        normalization_rule_name="nmt_nfkc_cf" if lower_case else "nmt_nfkc",
        # BERT's specials take the meta-piece slots, so their ids are fixed at 0-3; [MASK] is a
        # control symbol (id 4): never produced from text, so a literal "[MASK]" is just text.
        pad_id=0,
        unk_id=1,
        bos_id=2,
        eos_id=3,
        pad_piece=PAD,
        unk_piece=UNK,
        bos_piece=CLS,
        eos_piece=SEP,
        control_symbols=[MASK],
        # vocab_size becomes an upper bound: small corpora cannot fill a unigram vocabulary.
        hard_vocab_limit=False,
    )
    options.update(trainer_options)
    with open(os.devnull, "w") as quiet:
        spm.SentencePieceTrainer.train(sentence_iterator=iter(texts), logstream=quiet, **options)
    return SentencePiece(output_prefix + ".model")


# ------------------------------------------------------------------------------------------------

# What Tokenizer.save may record besides lower_case (WordPiece._extra_options).
_WORDPIECE_OPTIONS = ("strip_accents", "tokenize_chinese_chars", "clean_text", "max_chars_per_word")


def load_tokenizer(directory: str) -> Tokenizer:
    """Reads back a tokenizer written by :meth:`Tokenizer.save`.

    Example::

        tok = load_tokenizer("run/tokenizer")
    """
    path = os.path.join(directory, CONFIG_NAME)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"{path} does not exist; write one with tokenizer.save({directory!r}) first."
        )
    with open(path, encoding="utf-8") as f:
        config = json.load(f)
    file = os.path.join(directory, config["file"])
    if config["type"] == WordPiece.type_name:
        options = {k: config[k] for k in _WORDPIECE_OPTIONS if k in config}
        return WordPiece(file, lower_case=config["lower_case"], **options)
    if config["type"] == SentencePiece.type_name:
        return SentencePiece(file)
    raise ValueError(
        f"{path} has type {config['type']!r}; expected {WordPiece.type_name!r} or "
        f"{SentencePiece.type_name!r}. Fix the file or save the tokenizer again."
    )


# ------------------------------------------------------------------------------------------------
# Hugging Face's tokenizer files. A fast tokenizer's tokenizer.json (the `tokenizers` library's
# format) is read and written as plain JSON: that library is not a bert_jax dependency.

# Hugging Face's default word-length limit (BertTokenizer's, and tokenizer.json's when unstated).
HF_MAX_CHARS_PER_WORD = 100
_SPECIAL_TOKEN_FIELDS = {
    "unk_token": UNK,
    "sep_token": SEP,
    "pad_token": PAD,
    "cls_token": CLS,
    "mask_token": MASK,
}


def _refuse(path: str, field: str, value: Any, why: str) -> ValueError:
    return ValueError(
        f"{path}: {field} is {value!r}; {why} bert_jax reproduces BERT WordPiece tokenizers only "
        "(normalizer BertNormalizer, pre_tokenizer BertPreTokenizer, model WordPiece with '##' "
        "continuations), as written by transformers' BertTokenizerFast."
    )


def from_hf_tokenizer_json(path: str | os.PathLike) -> WordPiece:
    """The WordPiece tokenizer a Hugging Face fast BERT ``tokenizer.json`` describes.

    The vocabulary is ``model.vocab``; lower-casing, accent stripping (``strip_accents: null``
    follows ``lowercase``), CJK spacing and text cleaning come from the ``BertNormalizer``, the
    word-length limit from ``model.max_input_chars_per_word``. Anything else (a BPE or Unigram
    model, another normaliser or pre-tokenizer, added tokens that are not special) is refused,
    naming the field, since bert_jax would give other ids. As everywhere in bert_jax, literal
    special-token text such as "[MASK]" is split like any text.

    >>> tok = from_hf_tokenizer_json("all-MiniLM-L6-v2/tokenizer.json")  # doctest: +SKIP
    >>> tok.lower_case, tok.max_chars_per_word  # doctest: +SKIP
    (True, 100)
    """
    path = os.fspath(path)
    with open(path, encoding="utf-8") as f:
        spec = json.load(f)
    if not isinstance(spec, dict) or not isinstance(spec.get("model"), dict):
        hint = (
            " It is a bert_jax tokenizer config: read it with load_tokenizer(its directory)."
            if isinstance(spec, dict) and "type" in spec and "file" in spec
            else ""
        )
        raise ValueError(f"{path} has no 'model' object: not a Hugging Face tokenizer.json.{hint}")
    model = spec["model"]
    if model.get("type") != "WordPiece":
        raise _refuse(path, "model.type", model.get("type"), "that is not BERT's WordPiece.")
    if model.get("continuing_subword_prefix", "##") != "##":
        prefix = model["continuing_subword_prefix"]
        raise _refuse(path, "model.continuing_subword_prefix", prefix, "bert_jax uses '##'.")
    if model.get("unk_token", UNK) != UNK:
        raise _refuse(path, "model.unk_token", model["unk_token"], f"bert_jax uses {UNK!r}.")
    vocab = model.get("vocab")
    if not isinstance(vocab, dict) or sorted(vocab.values()) != list(range(len(vocab))):
        raise ValueError(
            f"{path}: model.vocab must map tokens to the ids 0..N-1, each once; fix the file."
        )
    tokens = sorted(vocab, key=vocab.__getitem__)

    normalizer = spec.get("normalizer")
    if normalizer is None:  # no normalisation at all: cased, uncleaned, CJK not spaced out
        options = dict(
            lower_case=False, strip_accents=False, tokenize_chinese_chars=False, clean_text=False
        )
    elif normalizer.get("type") == "BertNormalizer":
        # Missing fields take the `tokenizers` library's defaults.
        options = dict(
            lower_case=bool(normalizer.get("lowercase", True)),
            strip_accents=normalizer.get("strip_accents"),
            tokenize_chinese_chars=bool(normalizer.get("handle_chinese_chars", True)),
            clean_text=bool(normalizer.get("clean_text", True)),
        )
    else:
        raise _refuse(path, "normalizer.type", normalizer.get("type"), "bert_jax cannot run it.")
    pre_tokenizer = spec.get("pre_tokenizer") or {}
    if pre_tokenizer.get("type") != "BertPreTokenizer":
        kind = pre_tokenizer.get("type")
        raise _refuse(path, "pre_tokenizer.type", kind, "bert_jax splits words as BERT does.")
    # transformers matches added tokens in raw text before anything else; bert_jax does not
    # (specials are the documented exception), so other added tokens would change ids.
    for added in spec.get("added_tokens") or []:
        content, i = added.get("content"), added.get("id")
        if not added.get("special") or vocab.get(content) != i:
            raise _refuse(
                path,
                f"added_tokens entry {content!r} (id {i})",
                added,
                "only special tokens already in model.vocab can be reproduced.",
            )
    try:
        return WordPiece(
            tokens,
            max_chars_per_word=model.get("max_input_chars_per_word", HF_MAX_CHARS_PER_WORD),
            **options,
        )
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from e


def _hf_tokenizer_json(tok: WordPiece) -> dict[str, Any]:
    """``tok`` in the `tokenizers` library's format, as BertTokenizerFast.save_pretrained writes."""

    def special(name: str, type_id: int) -> dict[str, Any]:
        return {"SpecialToken": {"id": name, "type_id": type_id}}

    def sequence(name: str, type_id: int) -> dict[str, Any]:
        return {"Sequence": {"id": name, "type_id": type_id}}

    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            {
                "id": tok.token_to_id(name),
                "content": name,
                "single_word": False,
                "lstrip": False,
                "rstrip": False,
                "normalized": False,
                "special": True,
            }
            for name in sorted(SPECIAL_TOKENS, key=tok.token_to_id)
        ],
        "normalizer": {
            "type": "BertNormalizer",
            "clean_text": tok.clean_text,
            "handle_chinese_chars": tok.tokenize_chinese_chars,
            "strip_accents": tok.strip_accents,
            "lowercase": tok.lower_case,
        },
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [special(CLS, 0), sequence("A", 0), special(SEP, 0)],
            "pair": [
                special(CLS, 0),
                sequence("A", 0),
                special(SEP, 0),
                sequence("B", 1),
                special(SEP, 1),
            ],
            "special_tokens": {
                name: {"id": name, "ids": [tok.token_to_id(name)], "tokens": [name]}
                for name in (CLS, SEP)
            },
        },
        "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": True},
        "model": {
            "type": "WordPiece",
            "unk_token": UNK,
            "continuing_subword_prefix": "##",
            "max_input_chars_per_word": tok.max_chars_per_word,
            # Later duplicates win, as in our lookups (and transformers' vocab.txt reader).
            "vocab": {t: i for i, t in enumerate(tok._tokens)},
        },
    }


def hf_tokenizer_files(tokenizer: Tokenizer, model_max_length: int) -> dict[str, str]:
    """The files ``transformers.AutoTokenizer`` loads for ``tokenizer``: file name -> text.

    ``tokenizer.json`` is read by the fast tokenizer (the default), ``vocab.txt`` with
    ``tokenizer_config.json`` by the slow ``BertTokenizer`` (``use_fast=False``); both give this
    tokenizer's ids, except where transformers departs from the original rules (module
    docstring). The fast tokenizer keeps this tokenizer's word-length limit; the slow one always
    cuts at 100 characters and always cleans text (``clean_text=False`` logs a warning).

    SentencePiece tokenizers are refused: transformers has no BERT tokenizer on a SentencePiece
    model, and its SentencePiece classes (ALBERT's, T5's, ...) preprocess text and place special
    tokens their own way, so they would not give bert_jax's ids.

    >>> for name, text in hf_tokenizer_files(tok, 512).items():  # doctest: +SKIP
    ...     Path("exported", name).write_text(text, encoding="utf-8")
    """
    if not isinstance(tokenizer, WordPiece):
        raise ValueError(
            f"A {type(tokenizer).__name__} tokenizer ({tokenizer.file}) cannot be exported for "
            "transformers: it has no BERT tokenizer on a SentencePiece model, and its "
            "SentencePiece tokenizers (ALBERT's, T5's) would give other ids. Export the weights "
            "alone (save_hf(..., tokenizer=None)) and ship the .model file with them."
        )
    if not tokenizer.clean_text:
        _log.warning(
            "transformers' slow BertTokenizer always cleans text: with use_fast=False, text with "
            "control characters may get other ids than clean_text=False gives (the fast "
            "tokenizer, the default, matches)."
        )
    config = {
        "tokenizer_class": "BertTokenizer",
        "do_lower_case": tokenizer.lower_case,
        "strip_accents": tokenizer.strip_accents,
        "tokenize_chinese_chars": tokenizer.tokenize_chinese_chars,
        "model_max_length": model_max_length,
        **_SPECIAL_TOKEN_FIELDS,
    }

    def dumps(obj: Mapping[str, Any]) -> str:
        return json.dumps(obj, indent=2, ensure_ascii=False) + "\n"

    return {
        VOCAB_NAME: "".join(t + "\n" for t in tokenizer._tokens),
        "tokenizer.json": dumps(_hf_tokenizer_json(tokenizer)),
        "tokenizer_config.json": dumps(config),
        "special_tokens_map.json": dumps(_SPECIAL_TOKEN_FIELDS),
    }
