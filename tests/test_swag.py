"""SWAG and the multiple-choice family against independent references.

The reader on hand-written CSVs in the official layout (malformed rows included); featurization
against transformers' BertTokenizer with ``truncation=True`` (what Hugging Face's run_swag does);
the head's logits against transformers' BertForMultipleChoice with the same random weights;
accuracy against sklearn; one end-to-end run of configs/swag.py through bert_jax.main.
"""

import csv
import functools
import json
import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from sklearn.metrics import accuracy_score

from bert_jax import interop
from bert_jax.data.synthetic import _SHARED, _TOPICS, _pluralize, synthetic_documents
from bert_jax.models.bert import BertConfig
from bert_jax.models.heads import BertForMultipleChoice
from bert_jax.tasks import Features, get_family, swag
from bert_jax.tasks.multiple_choice import ChoiceRows
from bert_jax.tokenizers import WordPiece
from tests.test_interop import ATOL, randomise_
from tests.test_squad import _write_vocab
from tests.tiny_runs import run_main, tiny_checkpoint

ROOT = pathlib.Path(__file__).parent.parent
sys.path.insert(0, str(ROOT))
from configs import swag as swag_config  # noqa: E402

HEADER = ",video-id,fold-ind,startphrase,sent1,sent2,gold-source,ending0,ending1,ending2,ending3"
# Line numbers in comments; line 1 is the header. Quoted fields hold commas, quotes, a newline.
TRAIN = f"""{HEADER},label
0,anetv_1,5,"A man sits, then stands. He","A man sits, then stands.",He,gold,"walks away, ""slowly"".",sings a very long song about many different things that happen to him.,runs.,sleeps.,0
1,anetv_2,6,start,Someone opens the door.,Someone,gen,walks in.,leaves.,"shouts,
and waves.",sits.,2
2,anetv_3,7,start,Too few columns.,x,gold,a,b,c,d
3,anetv_4,8,start,Label four.,x,gold,a,b,c,d,4
4,anetv_5,9,start,Label word.,x,gold,a,b,c,d,two
5,anetv_6,10,start,An empty ending.,x,gold,a, ,c,d,1
6,anetv_7,11,start,,x,gold,a,b,c,d,1
7,anetv_8,12,start,She smiles.,She,gold,laughs.,cries.,jumps.,waits.,3
"""  # noqa: E501 (lines 2-3, 4 [a quoted newline], 5, 6, 7, 8, 9, 10)
TEST = f"""{HEADER}
10,anetv_9,1,start,A dog barks.,The dog,gold,runs.,sits.,eats.,hides.
11,anetv_10,2,start,A cat meows.,The cat,gold,purrs.,,eats.,hides.
"""


@pytest.fixture
def swag_dir(tmp_path):
    (tmp_path / "train.csv").write_text(TRAIN, encoding="utf-8")
    (tmp_path / "val.csv").write_text(TRAIN, encoding="utf-8")
    (tmp_path / "test.csv").write_text(TEST, encoding="utf-8")
    return tmp_path


def test_reader_keeps_good_rows_and_counts_malformed_ones(swag_dir, caplog):
    train = swag.read_csv(swag_dir, "train")
    assert train.ids == ["0", "1", "7"]  # the unnamed index column
    first, second, last = train.examples
    assert first.sent1 == "A man sits, then stands." and first.sent2 == "He"
    assert first.endings[0] == 'walks away, "slowly".'
    assert second.endings[2] == "shouts,\nand waves."
    assert list(train.labels) == [0, 2, 3]
    assert train.skipped == [
        (5, "11 columns, expected 12"),
        (6, "label '4' is not one of 0, 1, 2, 3"),
        (7, "label 'two' is not one of 0, 1, 2, 3"),
        (8, "empty ending1"),
        (9, "empty sent1"),
    ]
    assert "skipped 5 malformed rows (first: line 5" in caplog.text
    test = swag.read_csv(swag_dir, "test")  # no label column
    assert test.ids == ["10"] and test.labels is None and test.skipped == [(3, "empty ending1")]


def test_reader_names_missing_files_and_columns(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"val\.csv not found: expected the official SWAG"):
        swag.read_csv(tmp_path, "dev")
    (tmp_path / "train.csv").write_text("sent1,sent2,ending0,label\na,b,c,0\n")
    with pytest.raises(ValueError, match=r"columns \['ending1', 'ending2', 'ending3'\] not in"):
        swag.read_csv(tmp_path, "train")
    with pytest.raises(ValueError, match="valid splits: train, dev, test"):
        swag.split_path(tmp_path, "validation")


def test_headers_without_the_index_column_number_rows(tmp_path):
    rows = [row[1:] for row in csv.reader(TRAIN.splitlines(keepends=True))]
    with open(tmp_path / "train.csv", "w", newline="") as f:
        csv.writer(f).writerows(rows)
    # Positions among the data rows, skipped rows counted, so an id finds its row in the file.
    assert swag.read_csv(tmp_path, "train").ids == ["0", "1", "7"]


@pytest.mark.parametrize("lower_case", [True, False], ids=["uncased", "cased"])
def test_featurize_matches_transformers_run_swag(swag_dir, lower_case):
    split = swag.read_csv(swag_dir, "train")
    texts = [t for e in split.examples for t in (e.sent1, e.sent2, *e.endings)]
    vocab = _write_vocab(swag_dir / "vocab.txt", texts, lower_case)
    ours = WordPiece(vocab, lower_case=lower_case)
    reference = transformers.BertTokenizer(vocab, do_lower_case=lower_case)
    length = 24  # the first example's long ending needs truncation
    arrays = swag.featurize(split, ours, length)
    assert arrays["input_ids"].shape == (3, 4, length)
    for i, example in enumerate(split.examples):
        # Hugging Face's run_swag: first sentences = the context four times, second = header
        # + " " + ending; pairs truncated longest-first, padded after the tokens.
        expected = reference(
            [example.sent1] * 4,
            [f"{example.sent2} {ending}" for ending in example.endings],
            truncation=True,
            max_length=length,
            padding="max_length",
        )
        for name in ("input_ids", "token_type_ids", "attention_mask"):
            np.testing.assert_array_equal(arrays[name][i], expected[name], err_msg=name)
    assert arrays["attention_mask"][0, 1].all()  # truncated to exactly the length
    np.testing.assert_array_equal(arrays["labels"], [0, 2, 3])


def test_synthetic_set_is_official_layout_and_worded_from_the_corpus(tmp_path):
    swag.write_synthetic_swag(tmp_path, seed=1, num_train=200, num_dev=40, num_test=20)
    with open(tmp_path / "train.csv", newline="") as f:
        assert next(csv.reader(f)) == list(swag.HEADER)
    train, test = swag.read_csv(tmp_path, "train"), swag.read_csv(tmp_path, "test")
    assert len(train) == 200 and not train.skipped and len(test) == 20 and test.labels is None
    assert np.bincount(train.labels, minlength=4).min() > 30  # the right ending anywhere
    vocabulary = set(" ".join(" ".join(d) for d in synthetic_documents(300, seed=0)).split())
    topic_of, plural_nouns = {}, set()
    for topic, (nouns, verbs) in _TOPICS.items():
        for word in (nouns + " " + verbs).split():
            topic_of[word] = topic_of[_pluralize(word)] = topic
        plural_nouns |= {_pluralize(noun) for noun in nouns.split()}
    for e in train.examples:
        assert set(" ".join((e.sent1, e.sent2, *e.endings)).split()) <= vocabulary
        context_topic = {topic_of[w] for w in e.sent1.split() if w in topic_of}
        assert len(context_topic) == 1
        plural = e.sent2.split()[0] in _SHARED["determiner_plural"]
        for j, ending in enumerate(e.endings):
            # Only the right ending keeps to the context's topic; all agree with sent2's number.
            topics = {topic_of[w] for w in ending.split() if w in topic_of}
            assert (topics == context_topic) == (j == e.label), (e, j)
            assert (ending.split()[0] in plural_nouns) == plural, (e, j)
    again = swag.write_synthetic_swag(tmp_path / "again", seed=1, num_train=200, num_dev=40)
    assert (again / "train.csv").read_bytes() == (tmp_path / "train.csv").read_bytes()


# ---------------------------------------------------------------------------------- the head

HF_CONFIG = dict(
    vocab_size=97,
    hidden_size=48,
    num_hidden_layers=2,
    num_attention_heads=3,
    intermediate_size=96,
    max_position_embeddings=32,
    hidden_act="gelu_new",
)


def test_head_logits_match_transformers_multiple_choice(tmp_path):
    model = randomise_(transformers.BertForMultipleChoice(transformers.BertConfig(**HF_CONFIG)), 5)
    model.save_pretrained(tmp_path)
    cfg, params = interop.load_hf(tmp_path)
    params = {"bert": params["bert"], "classifier": params["classifier"]}
    rng = np.random.default_rng(0)
    batch = {
        "input_ids": rng.integers(0, HF_CONFIG["vocab_size"], (2, 4, 16)),
        "token_type_ids": np.zeros((2, 4, 16), np.int64),
        "attention_mask": np.ones((2, 4, 16), np.int64),
    }
    batch["token_type_ids"][..., 8:] = 1
    batch["attention_mask"][0, 1, 10:] = 0  # padding after the tokens, different per choice
    batch["attention_mask"][1, :, 5:] = 0
    with torch.no_grad():
        expected = model(**{k: torch.from_numpy(v) for k, v in batch.items()}).logits.numpy()
    apply = jax.jit(functools.partial(ChoiceRows(cfg).apply, deterministic=True))
    ours = np.asarray(apply({"params": params}, **batch))
    assert ours.shape == (2, 4)
    np.testing.assert_allclose(ours, expected, atol=ATOL, rtol=0)


def test_two_dimensional_ids_build_the_multiple_choice_tree():
    """The loop initialises every model from [1, length] ids; the tree must be the head's."""
    cfg = BertConfig.from_name("tiny", vocab_size=50, max_position_embeddings=16)

    def shapes(model, ids):
        tree = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros(ids, jnp.int32)))
        return jax.tree.map(lambda x: x.shape, tree)

    assert shapes(ChoiceRows(cfg), (1, 8)) == shapes(BertForMultipleChoice(cfg), (1, 4, 8))


# ------------------------------------------------------------------------ the family's files


def test_accuracy_and_prediction_files(swag_dir, tmp_path):
    family = get_family(swag_config.get_config("model=tiny"))
    dev = swag.read_csv(swag_dir, "dev")
    logits = np.array([[3.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [2.0, 0.0, 0.0, 1.0]])
    scores, write = family.evaluate("dev", dev, Features({}), {"logits": logits})
    assert scores == {"dev/accuracy": accuracy_score(dev.labels, logits.argmax(-1))}
    write(str(tmp_path / "dev"))
    with open(tmp_path / "dev" / "predictions.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["id", "prediction", "prob0", "prob1", "prob2", "prob3"]
    assert [r[:2] for r in rows[1:]] == [["0", "0"], ["1", "2"], ["7", "0"]]
    probabilities = np.array([[float(x) for x in r[2:]] for r in rows[1:]])
    expected = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    np.testing.assert_allclose(probabilities, expected, atol=1e-6)

    test = swag.read_csv(swag_dir, "test")
    (path,) = family.write_test("test", test, Features({}), {"logits": logits[:1]}, tmp_path)
    assert path == str(tmp_path / "submission" / "swag_test.csv")
    with pytest.raises(ValueError, match=r"shape \(2, 4\) for 1 ids"):
        swag.write_predictions(tmp_path / "x.csv", ["a"], expected[:2])


def test_config_refuses_tfds_by_name(tmp_path):
    config = swag_config.get_config("model=tiny")
    with config.unlocked():
        config.data_source = "tfds"
    with pytest.raises(ValueError, match="has no SWAG builder"):
        get_family(config).load(config, str(tmp_path))
    config = swag_config.get_config("model=base")  # the official CSVs, which need a folder
    with pytest.raises(ValueError, match="set --config.data_dir to the folder holding"):
        get_family(config).load(config, str(tmp_path))


# ------------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def init_checkpoint(tmp_path_factory):
    """A random tiny BERT with a SentencePiece vocabulary of the synthetic corpus."""
    texts = (" ".join(d) for d in synthetic_documents(300, seed=0))
    return tiny_checkpoint(tmp_path_factory.mktemp("init"), texts)


@pytest.mark.slow
def test_swag_fine_tune_end_to_end(init_checkpoint, tmp_path):
    run_main(
        "configs/swag.py:model=tiny", tmp_path, f"--config.init_checkpoint={init_checkpoint}",
        "--config.synthetic_train_examples=64", "--config.max_seq_length=24",
        "--config.num_epochs=1", "--config.log_every_steps=2",
    )  # fmt: skip
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "dev/accuracy" in r] == [4]  # 64 examples / batch 16
    assert all(np.isfinite(r["loss"]) for r in rows if "loss" in r)
    results = json.loads((tmp_path / "results.json").read_text())
    assert 0.0 <= results["best/accuracy"] <= 1.0
    dev = swag.read_csv(tmp_path / "swag_data", "dev")
    test = swag.read_csv(tmp_path / "swag_data", "test")
    for path, split in (("predictions/dev/predictions.csv", dev), ("submission/swag_test.csv",
                                                                   test)):  # fmt: skip
        with open(tmp_path / path, newline="") as f:
            table = list(csv.DictReader(f))
        assert [r["id"] for r in table] == split.ids
        assert {r["prediction"] for r in table} <= {"0", "1", "2", "3"}
        sums = [sum(float(r[f"prob{i}"]) for i in range(4)) for r in table]
        np.testing.assert_allclose(sums, 1.0, atol=1e-5)
