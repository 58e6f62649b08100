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
100 characters to ``[UNK]`` (the original: longer than 200).

Example::

    tok = WordPiece("vocab.txt", lower_case=True)
    ids, type_ids = tok.encode_pair(tok.encode("Hello, world!"), tok.encode("Bye."), 128)
    tok.save("run/tokenizer")
    tok = load_tokenizer("run/tokenizer")
"""

from __future__ import annotations

import abc
import functools
import json
import os
import shutil
import unicodedata
from collections.abc import Iterable
from typing import ClassVar

import numpy as np

PAD, UNK, CLS, SEP, MASK = "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"
SPECIAL_TOKENS = (PAD, UNK, CLS, SEP, MASK)
CONFIG_NAME = "tokenizer.json"


class Tokenizer(abc.ABC):
    """Vocabulary lookups, special ids, pair encoding and saving shared by all tokenizers.

    Subclasses load their vocabulary as a list of tokens (index = id) and implement
    :meth:`tokenize` and :meth:`decode`.
    """

    type_name: ClassVar[str]

    def __init__(self, file: str, tokens: list[str], lower_case: bool):
        self.file = file
        self.lower_case = lower_case
        self._tokens = tokens
        # Later duplicates win, as in the original load_vocab.
        self._ids = {tok: i for i, tok in enumerate(tokens)}
        missing = [tok for tok in SPECIAL_TOKENS if tok not in self._ids]
        if missing:
            raise ValueError(
                f"{file} lacks the special token(s) {missing}; BERT needs all of "
                f"{list(SPECIAL_TOKENS)}. Add them to the vocabulary (e.g. as the first entries)."
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
        """Copies the vocabulary file into ``directory`` and writes ``tokenizer.json`` beside it."""
        os.makedirs(directory, exist_ok=True)
        name = os.path.basename(self.file)
        target = os.path.join(directory, name)
        if not (os.path.exists(target) and os.path.samefile(self.file, target)):
            shutil.copyfile(self.file, target)
        config = {"type": self.type_name, "file": name, "lower_case": self.lower_case}
        with open(os.path.join(directory, CONFIG_NAME), "w", encoding="utf-8") as f:
            json.dump(config, f, indent=2)


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
def _clean_char(char: str) -> str:
    """What ``char`` becomes before whitespace splitting: dropped, a space, or spaced out."""
    cp = ord(char)
    if cp == 0 or cp == 0xFFFD or _is_control(char):
        return ""
    if _is_whitespace(char):
        return " "
    if _is_chinese_char(cp):
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


class WordPiece(Tokenizer):
    """BERT's WordPiece tokenizer on a ``vocab.txt`` (one token per line, line number = id).

    ``lower_case=True`` lower-cases and strips accents (uncased models); ``False`` keeps both.

    Example::

        tok = WordPiece("vocab.txt", lower_case=True)
        tok.tokenize("Unaffable café!")  # ['un', '##aff', '##able', 'cafe', '!']
    """

    type_name = "wordpiece"
    max_chars_per_word = 200

    def __init__(self, vocab_file: str, lower_case: bool = True):
        if not os.path.isfile(vocab_file):
            raise FileNotFoundError(
                f"WordPiece vocabulary {vocab_file!r} does not exist; pass the path of a BERT "
                "vocab.txt (one token per line)."
            )
        # Split on "\n" only and strip each line, like the original load_vocab.
        with open(vocab_file, encoding="utf-8", newline="\n") as f:
            tokens = [line.strip() for line in f]
        super().__init__(vocab_file, tokens, lower_case)
        # No vocabulary entry is longer than this, so longer candidates need not be looked up.
        self._max_piece_chars = max(map(len, tokens))

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
        text = "".join(_clean_char(c) for c in text)
        words: list[str] = []
        # str.split(), as in the original: it also splits on e.g. U+2028, which is not Zs.
        for word in text.split():
            if self.lower_case:
                word = _strip_accents(word.lower())
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
        return WordPiece(file, lower_case=config["lower_case"])
    if config["type"] == SentencePiece.type_name:
        return SentencePiece(file)
    raise ValueError(
        f"{path} has type {config['type']!r}; expected {WordPiece.type_name!r} or "
        f"{SentencePiece.type_name!r}. Fix the file or save the tokenizer again."
    )
