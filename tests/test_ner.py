"""CoNLL-2003 NER: the reader, document-context featurization (against a reference written here),
the conlleval scorer (against seqeval), the frozen encoder of the feature-based mode, every
layer's hidden states (against transformers) and one small end-to-end run of each mode."""

import dataclasses
import functools
import json
import pathlib
import random
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow_datasets as tfds
import torch
import transformers
from seqeval.metrics import classification_report

from bert_jax import interop, optim, pretrained, sweep
from bert_jax.finetune import resolve_options
from bert_jax.models.bert import BertModel, to_layer_layout
from bert_jax.models.heads import FEATURE_LAYERS, BertFeatureTagger
from bert_jax.tasks import conll
from bert_jax.tasks.tagging import Tagging
from bert_jax.tokenizers import SPECIAL_TOKENS, WordPiece
from tests.test_interop import HF_CONFIGS, make_batch, randomise_, torch_inputs
from tests.tiny_runs import run_main, tiny_checkpoint

ROOT = pathlib.Path(__file__).parent.parent
sys.path.insert(0, str(ROOT))
from configs import ner as ner_config  # noqa: E402

# ------------------------------------------------------------------------------------ reading

# IOB1 as the original release: I- opens entities, B- only between two of one type. Line 10 has
# one column, line 11 three, line 17 a tag that is no IOB tag: all three are left out.
IOB1_FILE = """\
-DOCSTART- -X- -X- O

EU NNP I-NP I-ORG
rejects VBZ I-VP O
German JJ I-NP I-MISC
call NN I-NP O

Peter NNP I-NP I-PER
Blackburn NNP I-NP I-PER
lonely
Smith NNP I-PER
Paul NNP I-NP B-PER
. . O O


-DOCSTART- -X- -X- O
BRUSSELS NNP I-NP X-LOC
1996-08-22 CD I-NP O
"""


def test_reader_documents_iob1_and_malformed_lines(tmp_path):
    (tmp_path / "eng.train").write_text(IOB1_FILE)
    split = conll.read_split(tmp_path, "train")
    assert split.scheme == "iob1"
    assert [len(d) for d in split.documents] == [2, 1]
    first, second = split.documents[0]
    assert first.words == ["EU", "rejects", "German", "call"]
    assert first.tags == ["B-ORG", "O", "B-MISC", "O"]  # IOB2 inside
    assert second.words == ["Peter", "Blackburn", "Paul", "."]
    assert second.tags == ["B-PER", "I-PER", "B-PER", "O"]  # two adjacent persons
    assert split.documents[1][0].words == ["1996-08-22"]
    assert [n for n, _ in split.skipped] == [10, 11, 17]
    assert "has no tag column" in split.skipped[0][1]
    assert "3 columns, the file's lines have 4" in split.skipped[1][1]
    assert "'X-LOC' is not O, B-TYPE or I-TYPE" in split.skipped[2][1]
    # Written back in the file's scheme: the original tags.
    out = conll.write_predictions(tmp_path / "out", split, conll.gold(split))
    rows = [line.split() for line in out.read_text().splitlines() if line]
    written = ["I-ORG", "O", "I-MISC", "O", "I-PER", "I-PER", "B-PER", "O", "O"]
    assert [r[1] for r in rows] == written
    assert all(r[1] == r[2] for r in rows)


def test_reader_iob2_layout_and_errors(tmp_path):
    (tmp_path / "train.txt").write_text("Paris B-LOC\nis O\n\nLe B-ORG\nMonde I-ORG\n")
    split = conll.read_split(tmp_path, "train")
    assert split.scheme == "iob2" and split.skipped == []
    assert len(split.documents) == 1 and len(split) == 2  # no -DOCSTART-: one document
    assert conll.read_conll(tmp_path / "train.txt", scheme="iob1").scheme == "iob1"
    with pytest.raises(FileNotFoundError, match=r"eng\.testa nor .*valid\.txt exists; expected"):
        conll.read_split(tmp_path, "dev")
    (tmp_path / "valid.txt").write_text("Berlin NNP B-LOC\n")
    with pytest.raises(ValueError, match="tag_column=3 is not a tag column"):
        conll.read_split(tmp_path, "dev", tag_column=3)
    assert conll.read_split(tmp_path, "dev", tag_column=-1).sentences[0].tags == ["B-LOC"]
    (tmp_path / "test.txt").write_text("a NN\nb VB\n")
    with pytest.raises(ValueError, match="no valid token line .* line 1: tag 'NN'"):
        conll.read_split(tmp_path, "test")
    # An entity type of dev that training never saw fails, naming it.
    (tmp_path / "valid.txt").write_text("Berlin B-LOC\nACME B-COMPANY\n")
    dev = conll.read_split(tmp_path, "dev")
    with pytest.raises(ValueError, match=r"entity types \{'COMPANY': 1\}.*entity_types"):
        conll.check_types(dev, conll.entity_types(split), given=False)


def test_own_files_through_the_family(tmp_path):
    """A researcher's files: labels from training or given; another tag column; no test file."""
    (tmp_path / "train.txt").write_text("Ann NNP B-NP B-PER\nruns VBZ B-VP O\n")
    (tmp_path / "valid.txt").write_text("Bob NNP B-NP B-PER\n")
    config = ner_config.get_config("mode=finetune,model=tiny")
    with config.unlocked():
        config.data_source, config.data_dir = "conll", str(tmp_path)
    family = Tagging(config)
    with pytest.raises(FileNotFoundError, match="test.txt exists.*predict_test=False"):
        family.load(config, str(tmp_path))
    config.predict_test = False
    assert set(family.load(config, str(tmp_path))) == {"train", "dev"}
    assert family.labels == ["O", "B-PER", "I-PER"]
    config.entity_types = "PER, LOC"
    family.load(config, str(tmp_path))
    assert family.labels == ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]
    config.entity_types, config.tag_column = "", 2  # chunking instead of NER
    splits = family.load(config, str(tmp_path))
    assert family.labels == ["O", "B-NP", "I-NP", "B-VP", "I-VP"]
    assert splits["train"].sentences[0].tags == ["B-NP", "B-VP"]


def test_files_without_document_markers_are_tagged_sentence_by_sentence(tmp_path, caplog):
    """Tweets: no -DOCSTART- lines. Document context would window each with unrelated ones, so it
    is refused naming both ways out; context=sentence reads them, and then buckets by length
    (resolved once, after the overrides, logged), where document windows keep full rows."""
    tweets = "Ann NNP B-NP B-PER\nruns VBZ B-VP O\n\nBob NNP B-NP B-PER\nsits VBZ B-VP O\n"
    (tmp_path / "train.txt").write_text(tweets)
    (tmp_path / "valid.txt").write_text(tweets)
    config = ner_config.get_config("mode=finetune,model=tiny")
    with config.unlocked():
        config.data_source, config.data_dir, config.predict_test = "conll", str(tmp_path), False
    assert config.bucket_by_length is None  # follows context unless set
    with pytest.raises(ValueError, match=r"train.txt has no -DOCSTART- lines.*2 sentences.*"
                       r"--config.context=sentence.*one at the top"):  # fmt: skip
        Tagging(config).load(config, str(tmp_path))
    assert resolve_options(config, Tagging(config)).bucket_by_length is False

    config.context = "sentence"
    family = Tagging(config)
    splits = family.load(config, str(tmp_path))
    assert [len(d) for d in splits["train"].documents] == [2] and not splits["train"].marked
    with caplog.at_level("INFO"):
        resolved = resolve_options(config, family)
    assert resolved.bucket_by_length is True and config.bucket_by_length is None
    assert "bucket_by_length=True" in caplog.text
    config.bucket_by_length = False  # an explicit choice is kept
    assert resolve_options(config, family).bucket_by_length is False

    # One marker at the top: the whole file is one document, as its author says.
    for name in ("train.txt", "valid.txt"):
        (tmp_path / name).write_text("-DOCSTART- -X- -X- O\n\n" + tweets)
    config.context = "document"
    splits = Tagging(config).load(config, str(tmp_path))
    assert [len(d) for d in splits["train"].documents] == [2] and splits["train"].marked


def test_load_tfds_mock(monkeypatch):
    with tfds.testing.mock_data(num_examples=5):
        split = conll.load_tfds("dev")
        records = list(tfds.data_source("conll2003", split="dev", download=False))
    assert len(split) == 5 and len(split.documents) == 5  # no document boundaries in TFDS
    tags = {t for s in split.sentences for t in s.tags}
    assert tags <= set(conll.label_names(["LOC", "MISC", "ORG", "PER"]))

    # Data prepared as tfrecord (no random access) is read through tfds.load instead.
    def no_random_access(*args, **kwargs):
        raise NotImplementedError("Random access data source for file format tfrecord ...")

    calls = []
    monkeypatch.setattr(tfds, "data_source", no_random_access)
    monkeypatch.setattr(tfds, "load", lambda *args, **kwargs: calls.append(kwargs) or records)
    monkeypatch.setattr(tfds, "as_numpy", lambda dataset: dataset)
    again = conll.load_tfds("dev")
    assert calls[0]["download"] is False and again.sentences == split.sentences


# ------------------------------------------------------------------------------- the scorer


def seqeval_scores(gold, predicted) -> dict:
    """seqeval's default (conlleval-compatible) scores, in conlleval's percentages."""
    report = classification_report(gold, predicted, output_dict=True, zero_division=0)
    names = {"precision": "precision", "recall": "recall", "f1": "f1-score"}
    out = {k: 100 * report["micro avg"][m] for k, m in names.items()}
    for entity_type, row in report.items():
        if not entity_type.endswith(" avg"):
            out |= {f"{entity_type}/{k}": 100 * row[m] for k, m in names.items()}
    return out


HARD_CASES = [
    # IOB1: I- opens entities, B- between two of one type.
    (["I-PER", "I-PER", "B-PER", "O", "I-LOC"], ["B-PER", "I-PER", "I-PER", "O", "B-LOC"]),
    # a stray I- after O, and a type change inside a run
    (["O", "I-ORG", "I-ORG", "O"], ["O", "B-ORG", "I-ORG", "O"]),
    (["B-PER", "I-PER", "I-LOC", "I-LOC"], ["B-PER", "I-PER", "B-LOC", "I-LOC"]),
    (["B-PER", "B-PER", "I-PER"], ["B-PER", "I-PER", "I-PER"]),
    (["B-MISC", "I-ORG", "B-ORG", "O"], ["I-MISC", "B-ORG", "I-ORG", "O"]),
    # entities at the sentence end, and a sentence without any prediction
    (["O", "B-LOC"], ["O", "O"]),
    (["I-LOC"], ["I-LOC"]),
]


def test_score_matches_seqeval_on_hard_cases():
    gold, predicted = [g for g, _ in HARD_CASES], [p for _, p in HARD_CASES]
    ours = conll.score(gold, predicted)
    reference = seqeval_scores(gold, predicted)
    assert {k: v for k, v in ours.items() if k != "accuracy"} == pytest.approx(reference)
    tokens = [(a, b) for g, p in HARD_CASES for a, b in zip(g, p, strict=True)]
    assert ours["accuracy"] == pytest.approx(100 * np.mean([a == b for a, b in tokens]))
    # Each case alone, too (its own types only).
    for g, p in HARD_CASES:
        ours = conll.score([g], [p])
        assert {k: v for k, v in ours.items() if k != "accuracy"} == pytest.approx(
            seqeval_scores([g], [p])
        ), (g, p)


def test_score_matches_seqeval_on_random_tags():
    rng = random.Random(0)
    tags = ["O", "O", "B-A", "I-A", "B-B", "I-B", "I-C"]
    for _ in range(20):
        gold = [[rng.choice(tags) for _ in range(rng.randint(1, 12))] for _ in range(30)]
        predicted = [[rng.choice(tags) for _ in s] for s in gold]
        ours = conll.score(gold, predicted)
        assert {k: v for k, v in ours.items() if k != "accuracy"} == pytest.approx(
            seqeval_scores(gold, predicted)
        )
        # Converting between the schemes changes no entity.
        as_iob1 = [conll.to_iob1(conll.to_iob2(s)) for s in gold]
        assert [conll.chunks(s) for s in as_iob1] == [conll.chunks(s) for s in gold]


# ------------------------------------------------------------------------- featurization

PIECES = ["john", "##ny", "new", "york", "##er", "lives", "in", ".", "paris", "ca", "##t", "##s"]
VOCAB = [*SPECIAL_TOKENS, *PIECES]


def reference_features(units, tok, labels, max_seq_length, stride):
    """What the featurization must give, written from its definition: windows of
    max_seq_length - 2 tokens every ``stride`` tokens over each unit (a document, or a sentence);
    a token's window maximises min(tokens left, tokens right) + 0.01 * window length (the first
    of equal ones); each word labelled on its first sub-token in its first sub-token's window."""
    width = max_seq_length - 2
    rows, targets, where = [], [], []
    for unit in units:
        ids, firsts, word_labels = [], [], []
        for words, tags in unit:
            for word, tag in zip(words, tags, strict=True):
                firsts.append(len(ids))
                ids += [tok.token_to_id(t) for t in tok.tokenize(word)] or [tok.unk_id]
                word_labels.append(labels.index(tag))
        starts = [0]
        while starts[-1] + width < len(ids):
            starts.append(starts[-1] + stride)
        windows = [(s, min(width, len(ids) - s)) for s in starts]

        def best(t, windows=windows):
            def score(s, n):
                return min(t - s, s + n - 1 - t) + 0.01 * n if s <= t < s + n else -1e9

            scores = [score(s, n) for s, n in windows]
            return scores.index(max(scores))

        base = len(rows)
        for s, n in windows:
            row = [tok.cls_id, *ids[s : s + n], tok.sep_id]
            rows.append(row + [tok.pad_id] * (max_seq_length - len(row)))
            targets.append([-1] * max_seq_length)
        for f, label in zip(firsts, word_labels, strict=True):
            w = best(f)
            position = 1 + f - windows[w][0]
            targets[base + w][position] = label
            where.append((base + w, position))
    return np.array(rows), np.array(targets), where


FEATURIZE_FILE = """\
-DOCSTART- O

johnny B-PER
lives O
in O
new B-LOC
yorker I-LOC
. O

cats O
\x07 O
paris B-LOC

-DOCSTART- O

john B-PER
. O

johnny B-PER
in O
paris B-LOC
zzz O
.
"""


@pytest.mark.parametrize("context", ["document", "sentence"])
def test_featurize_matches_reference(tmp_path, context):
    # "zzz" is unknown ([UNK]); "\x07" tokenizes to nothing and becomes [UNK] too; the last line
    # is malformed (one column) and left out.
    (tmp_path / "eng.train").write_text(FEATURIZE_FILE)
    split = conll.read_split(tmp_path, "train")
    tok = WordPiece(VOCAB, lower_case=True)
    labels = conll.label_names(conll.entity_types(split))
    for max_seq_length, stride in ((7, 2), (8, 3), (32, 16)):
        feats = conll.featurize(split, tok, labels, max_seq_length, stride, context)
        units = [[(s.words, s.tags) for s in d] for d in split.documents]
        if context == "sentence":
            units = [[sentence] for unit in units for sentence in unit]
        rows, targets, where = reference_features(units, tok, labels, max_seq_length, stride)
        np.testing.assert_array_equal(feats.arrays["input_ids"], rows)
        np.testing.assert_array_equal(feats.arrays["labels"], targets)
        np.testing.assert_array_equal(feats.arrays["attention_mask"], rows != tok.pad_id)
        pairs = zip(feats.word_rows.tolist(), feats.word_positions.tolist(), strict=True)
        assert list(pairs) == where
        # Each word is predicted once: one labelled position per word.
        assert (targets >= 0).sum() == len(where) == sum(len(s.words) for s in split.sentences)
        # A model that outputs the targets predicts the gold tags.
        logits = np.eye(len(labels))[np.maximum(targets, 0)]
        assert conll.predictions(split, feats, logits, labels) == conll.gold(split)


# ------------------------------------------------------------------- frozen feature encoder


def test_freeze_leaves_groups_untouched_even_by_weight_decay():
    params = {"bert": {"kernel": jnp.ones((3, 3))}, "head": {"kernel": jnp.ones((3, 2))}}
    grads = {"bert": {"kernel": jnp.zeros((3, 3))}, "head": {"kernel": jnp.ones((3, 2))}}
    for name in optim.OPTIMIZERS:
        tx = optim.make_optimizer(name, 0.1, weight_decay=0.5)
        # Unfrozen, weight decay alone moves the encoder even with a zero gradient.
        updates, _ = tx.update(grads, tx.init(params), params)
        assert float(jnp.abs(updates["bert"]["kernel"]).max()) > 0
        frozen = optim.freeze(tx, ["bert"])
        updates, state = frozen.update(grads, frozen.init(params), params)
        assert float(jnp.abs(updates["bert"]["kernel"]).max()) == 0.0
        assert float(jnp.abs(updates["head"]["kernel"]).min()) > 0
        # No optimizer state (Adam moments) for the frozen group.
        shapes = {x.shape for x in jax.tree.leaves(state)}
        assert (3, 3) not in shapes and (3, 2) in shapes
    assert optim.freeze(tx, ()) is tx
    # The feature-based tagger freezes its encoder; the loop applies it (optim.freeze in
    # finetune.py): test_end_to_end[feature] checks the trained encoder is the initial one.
    assert Tagging(ner_config.get_config("mode=feature,model=tiny")).frozen == ("bert",)
    assert Tagging(ner_config.get_config("mode=finetune,model=tiny")).frozen == ()
    with pytest.raises(ValueError, match=r"Cannot freeze \['encoder'\]"):
        optim.freeze(tx, ["encoder"]).init(params)


# ------------------------------------------------------------------ hidden states and tagger


def test_hidden_states_match_transformers(tmp_path):
    hf_config = HF_CONFIGS["h48_gelu_new"]  # three layers: two scanned, the last apart
    model = randomise_(transformers.BertModel(transformers.BertConfig(**hf_config)), 4)
    model.save_pretrained(tmp_path)
    batch = make_batch(hf_config)
    with torch.no_grad():
        states = model(**torch_inputs(batch), output_hidden_states=True).hidden_states
    expected = [h.numpy() for h in states]
    cfg, params = interop.load_hf(tmp_path)
    for scan in (False, True):
        c = dataclasses.replace(cfg, scan_layers=scan)
        bert = to_layer_layout(params, scan)["bert"]
        apply = jax.jit(functools.partial(BertModel(c).apply, output_hidden_states=True))
        out = apply({"params": bert}, **batch)
        assert len(out.hidden_states) == len(expected) == c.num_layers + 1
        for i, (ours, ref) in enumerate(zip(out.hidden_states, expected, strict=True)):
            np.testing.assert_allclose(ours, ref, atol=1e-4, rtol=0, err_msg=f"state {i}")
        np.testing.assert_array_equal(out.hidden_states[-1], out.sequence_output)
    # The tagger's features, each combination against the same reference states: with no LSTM
    # and an identity classifier, its logits are its features. Weighted sums start uniform.
    layers = expected[1:][-4:]  # the "last four" of a three-layer model are its three layers
    references = {
        "embeddings": expected[0],
        "second_to_last": expected[-2],
        "last": expected[-1],
        "sum_last_four": np.mean(layers, axis=0),
        "concat_last_four": np.concatenate(layers, axis=-1),
        "sum_all": np.mean(expected[1:], axis=0),
    }
    assert set(references) == set(FEATURE_LAYERS)
    for features, reference in references.items():
        width = reference.shape[-1]
        tagger = BertFeatureTagger(cfg, width, features, lstm_layers=0)
        head = {"classifier": {"kernel": np.eye(width), "bias": np.zeros(width)}}
        if features.startswith("sum"):
            mixed = len(layers) if "four" in features else len(expected) - 1
            head |= {"layer_weights": np.zeros(mixed), "layer_scale": np.ones(())}
        logits = tagger.apply({"params": {"bert": params["bert"], **head}}, **batch)
        np.testing.assert_allclose(logits, reference, atol=1e-4, rtol=0, err_msg=features)


# ------------------------------------------------------------------------- configs and sweep


def test_config_recipes_and_the_table7_sweep():
    c = ner_config.get_config("mode=finetune,model=base")
    assert (c.batch_size, c.learning_rate, c.num_epochs, c.warmup_fraction) == (32, 5e-5, 4.0, 0.1)
    assert (c.context, c.max_seq_length, c.doc_stride) == ("document", 256, 128)
    f = ner_config.get_config("mode=feature,model=base").feature
    assert (f.layers, f.lstm_size, f.lstm_layers) == ("concat_last_four", 768, 2)
    with pytest.raises(ValueError, match="Unknown NER mode 'frozen'"):
        ner_config.get_config("mode=frozen")
    for arg in ("model=tiny,seeds=1", "model=tiny,seeds=1,mode=finetune"):
        table7 = sweep.load_sweep(f"configs/sweeps/ner_feature_based.py:{arg}")
        sweep.validate(table7)  # every run's overrides apply to the locked config
    runs = sweep.load_sweep("configs/sweeps/ner_feature_based.py:seeds=1").runs()
    assert [r.overrides["feature.layers"] for r in runs] == list(FEATURE_LAYERS)


# ------------------------------------------------------------------------------ end to end


@pytest.fixture(scope="module")
def init_checkpoint(tmp_path_factory):
    """A random tiny BERT with a SentencePiece vocabulary of the synthetic NER words."""
    root = tmp_path_factory.mktemp("ner_init")
    data = conll.write_synthetic_conll(root / "conll", num_train_documents=50)
    texts = [" ".join(s.words) for s in conll.read_split(data, "train").sentences]
    return tiny_checkpoint(root, texts)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["finetune", "feature"])
def test_end_to_end(init_checkpoint, tmp_path, mode):
    overrides = (
        f"init_checkpoint={init_checkpoint} synthetic_train_documents=24 num_epochs=2 "
        "batch_size=16 max_seq_length=32 doc_stride=16 feature.lstm_size=16 feature.lstm_layers=1"
    )
    config = f"configs/ner.py:mode={mode},model=tiny"
    run_main(config, tmp_path, *(f"--config.{o}" for o in overrides.split()))

    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    dev = [r for r in rows if "dev/f1" in r]
    assert len(dev) == 2  # one evaluation per epoch
    assert {"dev/precision", "dev/recall", "dev/accuracy"} <= set(dev[0])
    types = conll.entity_types(conll.read_split(tmp_path / "conll_data", "dev"))
    assert {f"dev/{t}/f1" for t in types} <= set(dev[0])
    assert "best/f1" in json.loads((tmp_path / "results.json").read_text())

    # Prediction files: every word once, gold as in the file (IOB1), predictions in IOB1.
    for split, name in (("dev", "eng.testa"), ("test", "eng.testb")):
        source = (tmp_path / "conll_data" / name).read_text().splitlines()
        tokens = [line.split() for line in source if line and not line.startswith("-DOCSTART-")]
        written = (tmp_path / "predictions" / split / "predictions.txt").read_text().splitlines()
        columns = [line.split() for line in written if line]
        assert [c[0] for c in columns] == [t[0] for t in tokens]
        assert [c[1] for c in columns] == [t[-1] for t in tokens]
        assert {c[2] for c in columns} <= {"O", *(f"{p}-{t}" for t in types for p in "BI")}
    scores = json.loads((tmp_path / "predictions" / "test" / "scores.json").read_text())
    assert 0 <= scores["f1"] <= 100

    if mode == "feature":  # frozen: after training (weight decay 0.01), the initial encoder
        _, initial = pretrained.load(init_checkpoint)
        _, best = pretrained.load(tmp_path / "best")
        jax.tree.map(np.testing.assert_array_equal, initial["bert"], best["bert"])
