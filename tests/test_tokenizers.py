"""Tokenizers against transformers' BertTokenizer (slow and fast) and the original BERT rules."""

import itertools
import json
import logging
import random
import re

import numpy as np
import pytest
import tokenizers as hf_tokenizers
from transformers import AutoTokenizer, BertTokenizer, BertTokenizerFast
from transformers.utils import logging as hf_logging

from bert_jax.tokenizers import (
    SentencePiece,
    WordPiece,
    from_hf_tokenizer_json,
    hf_tokenizer_files,
    load_tokenizer,
    train_sentencepiece,
)

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]

# Inputs on which the original BERT rules and Hugging Face agree, in both cased and uncased mode.
HARD_CORPUS = [
    "Hello, world! How's it going?",
    "The quick brown fox jumped over the lazy dogs; unaffable running quickly.",
    "Café au lait, naïve Ångström résumé coöperate CAFÉ",
    "中文字符mixed with English和中文。日本語テキスト ひらがな 안녕하세요",
    "Punctuation: ()[]{}<>!?.,;:'\"`~@#$%^&*-_=+|\\/ … — – «» ¡¿ 、。「」 ‘quotes’ “double”",
    "control\x01chars\x07here\x1b and\x7fDEL, zero\u200bwidth\u200djoiner soft\u00adhyphen",
    "nul\x00byte replacement\ufffdchar",
    "x" * 250 + " after a very long word",
    "",
    "   ",
    "\t\n\r \u00a0\u2003\u3000",
    "non\u00a0breaking\u00a0space and\u2009thin\u202fspaces",
    "tabs\tand\nnewlines\r\nhere",
    "line\u2028separator\u2029paragraph",
    "I love 🤗 and 👍🏽 🎉! ☃ ™ © ®",
    "مرحبا بالعالم، كيف حالك؟",
    "Привет, мир! Ёлка",
    "Γειά σου Κόσμε! ΟΔΟΣ ὀδός",
    "U.S.A. e-mail 3.14 1,000,000 $100 50% #hashtag @user",
    "İstanbul straße Ǆemal ﬁne ＡＢＣ full-width",
    "𠀀 CJK extension B 𪜀 and 㐀",
    "CamelCase UPPER lower MiXeD",
]
# Only uncased: Hugging Face NFC-normalises first; uncased mode's NFD makes that moot.
UNCASED_ONLY = [
    "cafe\u0301 decomposed",
    "combining a\u0308 e\u0301\u0302 \u0301 alone",
    "compatibility \uf900\uf901 ideographs",
]


def _build_vocab(path):
    """Specials, ASCII punctuation, every other corpus character (also as a "##" piece), every
    other corpus word (as written and lower-cased) and common suffixes: some words are whole,
    some split, some unknown."""
    text = " ".join(HARD_CORPUS + UNCASED_ONLY)
    chars = sorted({c for c in text if not c.isspace()})
    words = sorted(set(re.findall(r"\w+", text)))
    tokens = SPECIALS + ["[unused0]"]
    tokens += [chr(c) for c in range(33, 127) if not chr(c).isalnum()]
    tokens += [c for c in "abcdefghijklmnopqrstuvwxyz0123456789"]
    tokens += ["##" + c for c in "abcdefghijklmnopqrstuvwxyz0123456789"]
    tokens += chars[::2] + ["##" + c for c in chars[::3]]
    tokens += words[::2] + [w.lower() for w in words[1::4]]
    tokens += ["##ing", "##ed", "##ly", "##s", "##able", "un", "##aff", "mask", "cafe", "café"]
    tokens += ["##\u0301"]
    tokens = list(dict.fromkeys(tokens))  # de-duplicate, keep order
    path.write_text("\n".join(tokens) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def vocab_file(tmp_path_factory):
    return str(_build_vocab(tmp_path_factory.mktemp("vocab") / "vocab.txt"))


@pytest.fixture(scope="module", params=[True, False], ids=["uncased", "cased"])
def pair(request, vocab_file):
    """(ours, Hugging Face slow) for one casing."""
    lower = request.param
    ours = WordPiece(vocab_file, lower_case=lower)
    ref = BertTokenizer(vocab_file, do_lower_case=lower, tokenize_chinese_chars=True)
    return ours, ref


def _corpus(lower):
    return HARD_CORPUS + (UNCASED_ONLY if lower else [])


def test_vocab_mixes_known_and_unknown_words(pair):
    ours, _ = pair
    tokens = [t for text in HARD_CORPUS for t in ours.tokenize(text)]
    assert "[UNK]" in tokens
    assert any(t.startswith("##") for t in tokens)
    assert len(set(tokens)) > 60


def test_tokenize_and_encode_match_transformers(pair):
    ours, ref = pair
    for text in _corpus(ours.lower_case):
        assert ours.tokenize(text) == ref.tokenize(text), repr(text)
        assert ours.encode(text) == ref.encode(text, add_special_tokens=False), repr(text)


def test_tokenize_matches_transformers_fast(pair, vocab_file):
    ours, _ = pair
    fast = BertTokenizerFast(vocab_file, do_lower_case=ours.lower_case, tokenize_chinese_chars=True)
    for text in _corpus(ours.lower_case):
        assert ours.encode(text) == fast.encode(text, add_special_tokens=False), repr(text)


def test_decode_and_lookups_match_transformers(pair):
    ours, ref = pair
    assert ours.vocab_size == len(ref.vocab)
    assert [ours.pad_id, ours.unk_id, ours.cls_id, ours.sep_id, ours.mask_id] == [
        ref.pad_token_id,
        ref.unk_token_id,
        ref.cls_token_id,
        ref.sep_token_id,
        ref.mask_token_id,
    ]
    for text in HARD_CORPUS:
        ids = ours.encode(text)
        assert ours.decode(ids) == ref.convert_tokens_to_string(ref.convert_ids_to_tokens(ids))
        assert [ours.id_to_token(i) for i in ids] == ref.convert_ids_to_tokens(ids)
    assert ours.token_to_id("not-in-vocab") == ours.unk_id
    with pytest.raises(IndexError, match="outside the vocabulary"):
        ours.id_to_token(ours.vocab_size)


def test_word_start_mask_counts_basic_tokenizer_words(pair):
    """Every word from Hugging Face's basic (pre-WordPiece) tokenizer starts exactly once."""
    ours, ref = pair
    mask = ours.word_start_mask
    assert mask.dtype == np.bool_ and mask.shape == (ours.vocab_size,)
    assert mask[[ours.pad_id, ours.unk_id, ours.cls_id, ours.sep_id, ours.mask_id]].all()
    for text in HARD_CORPUS:
        words = ref.basic_tokenizer.tokenize(text)
        assert mask[ours.encode(text)].sum() == len(words), repr(text)


# Where the original BERT rules (followed here) and Hugging Face part ways; expected values are
# worked out by hand from google-research/bert tokenization.py.
def test_private_use_characters_are_kept_like_the_original(vocab_file):
    tok = WordPiece(vocab_file)
    # Category Co is not Cc/Cf, so the original keeps it and the word has no WordPiece match.
    assert tok.tokenize("a\ue000b") == ["[UNK]"]


def test_words_up_to_200_characters_are_split(vocab_file):
    tok = WordPiece(vocab_file)
    assert tok.tokenize("a" * 150) == ["a"] + ["##a"] * 149  # transformers: [UNK] past 100
    assert tok.tokenize("a" * 200) == ["a"] + ["##a"] * 199
    assert tok.tokenize("a" * 201) == ["[UNK]"]


def test_cased_text_is_not_unicode_normalised(vocab_file):
    tok = WordPiece(vocab_file, lower_case=False)
    assert tok.tokenize("cafe\u0301") == ["cafe", "##\u0301"]  # transformers NFC: ["café"]
    assert tok.tokenize("café") == ["café"]
    assert WordPiece(vocab_file, lower_case=True).tokenize("Cafe\u0301 CAFÉ") == ["cafe", "cafe"]


def test_special_token_text_is_split_like_any_text(vocab_file):
    assert WordPiece(vocab_file).tokenize("[MASK]") == ["[", "mask", "]"]


@pytest.fixture(scope="module")
def hf_uncased(vocab_file):
    hf_logging.set_verbosity_error()  # longest_first warns on every call
    return BertTokenizer(vocab_file, do_lower_case=True)


def test_encode_pair_matches_transformers(vocab_file, hf_uncased):
    tok = WordPiece(vocab_file)
    a_text = "The quick brown fox jumped over the lazy dogs, quickly."
    b_text = "Hello, Ångström!"
    a, b = tok.encode(a_text), tok.encode(b_text)
    assert len(a) > len(b) + 3
    for max_length in [3, 4, 5, 8, len(a) - len(b) + 3, 17, 18, 25, len(a) + len(b) + 3, 60]:
        ref = hf_uncased(a_text, b_text, truncation="longest_first", max_length=max_length)
        assert tok.encode_pair(a, b, max_length) == (ref["input_ids"], ref["token_type_ids"])
        ref = hf_uncased(b_text, a_text, truncation="longest_first", max_length=max_length)
        assert tok.encode_pair(b, a, max_length) == (ref["input_ids"], ref["token_type_ids"])
    for max_length in [3, 7, 40]:
        ref = hf_uncased(a_text, truncation=True, max_length=max_length)
        assert tok.encode_pair(a, None, max_length) == (ref["input_ids"], ref["token_type_ids"])
    # transformers refuses to empty a sequence completely; the original rule simply does.
    assert tok.encode_pair(a, None, 2) == ([tok.cls_id, tok.sep_id], [0, 0])


def test_encode_pair_truncation_matches_transformers_on_all_small_lengths(vocab_file, hf_uncased):
    tok = WordPiece(vocab_file)
    for len_a, len_b, max_length in itertools.product(range(7), range(7), range(3, 16)):
        a, b = list(range(100, 100 + len_a)), list(range(200, 200 + len_b))
        remove = max(0, len_a + len_b + 3 - max_length)
        ref_a, ref_b, _ = hf_uncased.truncate_sequences(
            a, b, num_tokens_to_remove=remove, truncation_strategy="longest_first"
        )
        ids, type_ids = tok.encode_pair(a, b, max_length)
        expected = [tok.cls_id, *ref_a, tok.sep_id, *ref_b, tok.sep_id]
        assert ids == expected, (len_a, len_b, max_length)
        assert type_ids == [0] * (len(ref_a) + 2) + [1] * (len(ref_b) + 1)


def test_encode_pair_rejects_too_small_max_length(vocab_file):
    with pytest.raises(ValueError, match="max_length >= 3"):
        WordPiece(vocab_file).encode_pair([5], [6], max_length=2)


def test_wordpiece_save_and_load(vocab_file, tmp_path):
    tok = WordPiece(vocab_file, lower_case=False)
    tok.save(str(tmp_path / "tok"))
    config = json.loads((tmp_path / "tok" / "tokenizer.json").read_text())
    assert config == {"type": "wordpiece", "file": "vocab.txt", "lower_case": False}
    loaded = load_tokenizer(str(tmp_path / "tok"))
    assert isinstance(loaded, WordPiece) and not loaded.lower_case
    for text in HARD_CORPUS:
        assert loaded.encode(text) == tok.encode(text)
    loaded.save(str(tmp_path / "tok"))  # saving onto its own files is harmless


def test_wordpiece_options_save_and_load(vocab_file, tmp_path):
    with open(vocab_file, encoding="utf-8") as f:
        tokens = f.read().split("\n")[:-1]
    tok = WordPiece(tokens, lower_case=True, max_chars_per_word=100)
    # strip_accents=None follows lower_case.
    assert tok.file is None and tok.strip_accents and not WordPiece(tokens, False).strip_accents
    tok = tok.replace(strip_accents=False)
    tok.save(str(tmp_path))
    config = json.loads((tmp_path / "tokenizer.json").read_text())
    # Only what differs from the original's rules is recorded.
    assert config == {
        "type": "wordpiece",
        "file": "vocab.txt",
        "lower_case": True,
        "strip_accents": False,
        "max_chars_per_word": 100,
    }
    loaded = load_tokenizer(str(tmp_path))
    assert loaded.options == tok.options
    assert loaded.tokenize("CAFÉ " + "a" * 101) == ["café", "[UNK]"]  # lower-cased, accented
    assert [loaded.id_to_token(i) for i in range(loaded.vocab_size)] == tokens
    with pytest.raises(ValueError, match=r"\(6, ' x'\).*vocab\.txt cannot hold"):
        WordPiece(tokens[:6] + [" x"])


# ------------------------------------------------------------------------------------------------
# Hugging Face tokenizer.json: read what transformers writes, write what it reads.

# Normaliser settings of a BertTokenizerFast tokenizer.json, and a word-length limit.
HF_JSON_VARIANTS = {
    "uncased": dict(lowercase=True, strip_accents=None),
    "cased": dict(lowercase=False, strip_accents=None),
    "lower_keep_accents": dict(lowercase=True, strip_accents=False),
    "cased_strip_accents": dict(lowercase=False, strip_accents=True),
    "no_cjk_spacing": dict(lowercase=True, handle_chinese_chars=False),
    "unclean": dict(lowercase=False, clean_text=False),
    "no_normalizer": None,
    "max_chars_12": dict(lowercase=True, max_input_chars_per_word=12),
}


@pytest.fixture(scope="module")
def hf_tokenizer_json(vocab_file, tmp_path_factory):
    """The tokenizer.json transformers writes for the test vocabulary (uncased)."""
    out = tmp_path_factory.mktemp("hf_fast")
    BertTokenizerFast(vocab_file, do_lower_case=True).save_pretrained(out)
    return json.loads((out / "tokenizer.json").read_text(encoding="utf-8"))


def _write_json(obj, path):
    path.write_text(json.dumps(obj, ensure_ascii=False), encoding="utf-8")
    return path


def _fast_ids(tokenizer, texts):
    return [tokenizer.encode(t, add_special_tokens=False).ids for t in texts]


HF_JSON_TEXTS = HARD_CORPUS + UNCASED_ONLY + ["a" * 11 + " " + "a" * 12 + " " + "b" * 13]


@pytest.mark.parametrize("variant", list(HF_JSON_VARIANTS))
def test_from_hf_tokenizer_json_matches_the_tokenizers_library(
    variant, hf_tokenizer_json, tmp_path
):
    spec = json.loads(json.dumps(hf_tokenizer_json))
    settings = HF_JSON_VARIANTS[variant]
    if settings is None:
        spec["normalizer"] = None
    else:
        settings = dict(settings)
        if "max_input_chars_per_word" in settings:
            spec["model"]["max_input_chars_per_word"] = settings.pop("max_input_chars_per_word")
        spec["normalizer"].update(settings)
    path = _write_json(spec, tmp_path / "tokenizer.json")
    reference = hf_tokenizers.Tokenizer.from_file(str(path))
    ours = from_hf_tokenizer_json(path)
    assert ours.vocab_size == reference.get_vocab_size()
    assert [ours.encode(t) for t in HF_JSON_TEXTS] == _fast_ids(reference, HF_JSON_TEXTS)


def _edit(path, value):
    def edit(spec):
        *parents, last = path
        for key in parents:
            spec = spec[key]
        spec[last] = value

    return edit


@pytest.mark.parametrize(
    "edit, match",
    [
        (_edit(["model", "type"], "BPE"), "model.type is 'BPE'"),
        (_edit(["model", "continuing_subword_prefix"], "@@"), "continuing_subword_prefix"),
        (_edit(["model", "unk_token"], "<unk>"), "model.unk_token is '<unk>'"),
        (_edit(["normalizer"], {"type": "NFKC"}), "normalizer.type is 'NFKC'"),
        (_edit(["pre_tokenizer"], {"type": "ByteLevel"}), "pre_tokenizer.type is 'ByteLevel'"),
        (_edit(["pre_tokenizer"], None), "pre_tokenizer.type is None"),
        (_edit(["model", "vocab", "[PAD]"], 9999), "ids 0..N-1"),
        (
            lambda spec: spec["added_tokens"].append({"id": 5, "content": "zzz", "special": False}),
            r"added_tokens entry 'zzz' \(id 5\)",
        ),
    ],
    ids=["bpe", "prefix", "unk", "normalizer", "pre_tokenizer", "no_pre_tokenizer", "ids", "added"],
)
def test_from_hf_tokenizer_json_refuses_what_it_cannot_reproduce(
    edit, match, hf_tokenizer_json, tmp_path
):
    spec = json.loads(json.dumps(hf_tokenizer_json))
    edit(spec)
    path = _write_json(spec, tmp_path / "tokenizer.json")
    with pytest.raises(ValueError, match=match) as error:
        from_hf_tokenizer_json(path)
    assert str(path) in str(error.value)


def test_from_hf_tokenizer_json_points_at_load_tokenizer(vocab_file, tmp_path):
    WordPiece(vocab_file).save(str(tmp_path))
    with pytest.raises(ValueError, match="bert_jax tokenizer config.*load_tokenizer"):
        from_hf_tokenizer_json(tmp_path / "tokenizer.json")


@pytest.mark.parametrize("lower", [True, False], ids=["uncased", "cased"])
def test_hf_tokenizer_files_load_in_transformers(lower, vocab_file, tmp_path):
    """Fast and slow AutoTokenizer give bert_jax's ids on the exported files."""
    ours = WordPiece(vocab_file, lower_case=lower)
    for name, text in hf_tokenizer_files(ours, model_max_length=64).items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    texts = _corpus(lower)
    expected = [ours.encode(t) for t in texts]
    assert _fast_ids(
        hf_tokenizers.Tokenizer.from_file(str(tmp_path / "tokenizer.json")), texts
    ) == (expected)
    for use_fast in (True, False):
        hf = AutoTokenizer.from_pretrained(tmp_path, use_fast=use_fast)
        assert hf.is_fast == use_fast and hf.model_max_length == 64
        assert [hf.encode(t, add_special_tokens=False) for t in texts] == expected
        pair = hf("Hello, world!", "naïve café")
        a, b = ours.encode("Hello, world!"), ours.encode("naïve café")
        assert (pair["input_ids"], pair["token_type_ids"]) == ours.encode_pair(a, b, 64)
        assert hf.all_special_ids == [
            ours.unk_id,
            ours.sep_id,
            ours.pad_id,
            ours.cls_id,
            ours.mask_id,
        ]
    # And what transformers reads back is what bert_jax reads.
    assert from_hf_tokenizer_json(tmp_path / "tokenizer.json").options == ours.options


def test_hf_tokenizer_files_warn_where_the_slow_tokenizer_differs(vocab_file, caplog):
    with caplog.at_level(logging.WARNING, logger="bert_jax.tokenizers"):
        hf_tokenizer_files(WordPiece(vocab_file), 64)
        assert not caplog.records
        hf_tokenizer_files(WordPiece(vocab_file, clean_text=False), 64)
    assert "slow BertTokenizer always cleans text" in caplog.text


def test_hf_tokenizer_files_refuse_sentencepiece(tmp_path):
    tok = train_sentencepiece(_sentences(100), str(tmp_path / "spm"), vocab_size=60)
    with pytest.raises(ValueError, match=r"SentencePiece tokenizer .*spm\.model.*tokenizer=None"):
        hf_tokenizer_files(tok, 64)


# ------------------------------------------------------------------------------------------------
# Errors name the file and the fix.


def test_missing_vocab_file(tmp_path):
    missing = str(tmp_path / "nope.txt")
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        WordPiece(missing)
    with pytest.raises(FileNotFoundError, match="nope.model"):
        SentencePiece(str(tmp_path / "nope.model"))
    with pytest.raises(FileNotFoundError, match="tokenizer.json"):
        load_tokenizer(str(tmp_path))


def test_vocab_without_mask(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\nhello\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"vocab\.txt lacks .*\[MASK\].*Add them"):
        WordPiece(str(path))


def test_unknown_tokenizer_type(vocab_file, tmp_path):
    WordPiece(vocab_file).save(str(tmp_path))
    (tmp_path / "tokenizer.json").write_text(json.dumps({"type": "bpe", "file": "vocab.txt"}))
    with pytest.raises(ValueError, match="'bpe'.*expected 'wordpiece' or 'sentencepiece'"):
        load_tokenizer(str(tmp_path))


# ------------------------------------------------------------------------------------------------
# SentencePiece.

WORDS = [
    "the",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "lazy",
    "dog",
    "hello",
    "world",
    "model",
    "naïve",
    "café",
]


def _sentences(n, seed=0):
    rng = random.Random(seed)
    for _ in range(n):
        yield " ".join(
            rng.choice(WORDS).capitalize() if rng.random() < 0.2 else rng.choice(WORDS)
            for _ in range(rng.randint(3, 12))
        )


@pytest.fixture(scope="module", params=["unigram", "bpe"])
def spm_tok(request, tmp_path_factory):
    prefix = str(tmp_path_factory.mktemp("spm") / "sub" / "spm")
    return train_sentencepiece(_sentences(300), prefix, vocab_size=80, model_type=request.param)


def test_sentencepiece_special_ids(spm_tok):
    ids = [spm_tok.pad_id, spm_tok.unk_id, spm_tok.cls_id, spm_tok.sep_id, spm_tok.mask_id]
    assert ids == [0, 1, 2, 3, 4]
    assert [spm_tok.id_to_token(i) for i in range(5)] == SPECIALS
    assert spm_tok.mask_id not in spm_tok.encode("a [MASK] b")  # control symbol: not from text
    assert spm_tok.vocab_size <= 80


def test_sentencepiece_round_trip_lower_cases(spm_tok):
    assert spm_tok.lower_case
    for text in _sentences(20, seed=1):
        ids = spm_tok.encode(text)
        assert spm_tok.decode(ids) == text.lower()
        assert [spm_tok.token_to_id(t) for t in spm_tok.tokenize(text)] == ids
    assert spm_tok.encode("HELLO World") == spm_tok.encode("hello world")
    assert spm_tok.unk_id in spm_tok.encode("жж")  # unseen characters


def test_sentencepiece_cased(tmp_path):
    tok = train_sentencepiece(_sentences(300), str(tmp_path / "cased"), 80, lower_case=False)
    assert not tok.lower_case
    text = "Hello world The fox"
    assert tok.decode(tok.encode(text)) == text
    assert tok.encode("Hello") != tok.encode("hello")


def test_sentencepiece_word_start_mask(spm_tok):
    mask = spm_tok.word_start_mask
    assert mask.shape == (spm_tok.vocab_size,) and mask[:5].all()
    for text in _sentences(20, seed=2):
        assert mask[spm_tok.encode(text)].sum() == len(text.split())


def test_sentencepiece_encode_pair(spm_tok, hf_uncased):
    a, b = spm_tok.encode("the quick brown fox jumps"), spm_tok.encode("hello")
    ids, type_ids = spm_tok.encode_pair(a, b, max_length=100)
    assert ids == [2, *a, 3, *b, 3]
    assert type_ids == [0] * (len(a) + 2) + [1] * (len(b) + 1)
    for max_length in range(3, len(a) + len(b) + 3):
        ref_a, ref_b, _ = hf_uncased.truncate_sequences(
            a, b, len(a) + len(b) + 3 - max_length, truncation_strategy="longest_first"
        )
        assert spm_tok.encode_pair(a, b, max_length)[0] == [2, *ref_a, 3, *ref_b, 3]


def test_sentencepiece_save_and_load(spm_tok, tmp_path):
    spm_tok.save(str(tmp_path))
    config = json.loads((tmp_path / "tokenizer.json").read_text())
    assert config == {"type": "sentencepiece", "file": "spm.model", "lower_case": True}
    loaded = load_tokenizer(str(tmp_path))
    assert isinstance(loaded, SentencePiece) and loaded.lower_case
    for text in _sentences(20, seed=3):
        assert loaded.encode(text) == spm_tok.encode(text)
    assert (loaded.word_start_mask == spm_tok.word_start_mask).all()


def test_train_sentencepiece_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="'wordpiece'.*'unigram' or 'bpe'"):
        train_sentencepiece(["a b"], str(tmp_path / "x"), 50, model_type="wordpiece")
    with pytest.raises(ValueError, match="larger vocab_size"):
        train_sentencepiece(["a b"], str(tmp_path / "x"), 5)
