"""Fine-tuning batches without padding waste, length-bucketed or packed: the plans, the same
function as padded rows, and an exact mid-epoch resume with each on."""

import json
import pathlib
import shutil
import sys

import jax
import numpy as np
import pytest

from bert_jax import finetune, pretrained
from bert_jax.data import buckets, packing
from bert_jax.models.bert import BertConfig
from bert_jax.models.heads import BertForPreTraining
from bert_jax.sharding import DEFAULT_RULES, make_mesh
from bert_jax.tasks import get_family
from bert_jax.tasks.glue import read_split
from bert_jax.tasks.glue_synthetic import write_synthetic_glue
from bert_jax.tokenizers import train_sentencepiece

ROOT = pathlib.Path(__file__).parent.parent
sys.path.insert(0, str(ROOT))
from configs import glue as glue_config  # noqa: E402
from configs import ner as ner_config  # noqa: E402
from configs import squad as squad_config  # noqa: E402
from configs import swag as swag_config  # noqa: E402


def _mask(lengths, max_len, choices=None):
    mask = (np.arange(max_len) < np.asarray(lengths)[..., None]).astype(np.int32)
    return mask if choices is None else mask.reshape(-1, choices, max_len)


def test_bucket_lengths():
    assert buckets.bucket_lengths((), 128) == (16, 32, 48, 64, 80, 96, 112, 128)
    assert buckets.bucket_lengths((), 384) == (48, 96, 144, 192, 240, 288, 336, 384)
    assert buckets.bucket_lengths((), 512) == (64, 128, 192, 256, 320, 384, 448, 512)
    assert buckets.bucket_lengths((), 50) == (16, 32, 48, 50)
    assert buckets.bucket_lengths((), 32) == (16, 32)
    assert buckets.bucket_lengths((64, 16, 128), 128) == (16, 64, 128)
    with pytest.raises(ValueError, match="must be positive and end at max_seq_length=128"):
        buckets.bucket_lengths((32, 64), 128)


def test_row_lengths_read_the_mask():
    lengths = np.array([0, 1, 7, 8])
    assert buckets.row_lengths({"attention_mask": _mask(lengths, 8)}).tolist() == [0, 1, 7, 8]
    # Multiple choice: a row is as long as its longest choice.
    mask = _mask([3, 5, 2, 2, 8, 1, 1, 1], 8, choices=4)
    assert buckets.row_lengths({"attention_mask": mask}).tolist() == [5, 8]


@pytest.mark.parametrize("seed", [0, 1])
def test_train_plan_is_an_epoch_of_full_batches_within_buckets(seed):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 129, size=203)
    bucket = (32, 64, 96, 128)
    plans = [buckets.train_plan(lengths, bucket, 16, seed, epoch) for epoch in range(2)]
    for plan in plans:
        assert len(plan) == 203 // 16  # as many steps as the padded loop
        rows = np.concatenate([r for r, _ in plan])
        assert len(rows) == len(set(rows.tolist())) == 12 * 16  # no row twice in an epoch
        for r, length in plan:
            assert len(r) == 16 and length in bucket and lengths[r].max() <= length
            # Cut to its own bucket or, for rows carried up from a shorter one, a longer one.
            assert (lengths[r] > length - 32).any() or length == 32
        # Most batches hold rows of one bucket: padding is a fraction of what 128 costs.
        assert sum(len(r) * length for r, length in plan) < 0.75 * len(rows) * 128
    assert [r.tolist() for r, _ in plans[0]] != [r.tolist() for r, _ in plans[1]]
    again = buckets.train_plan(lengths, bucket, 16, seed, 0)
    assert all(
        (a == b).all() and la == lb for (a, la), (b, lb) in zip(plans[0], again, strict=True)
    )


def test_eval_plan_covers_every_row_once():
    lengths = np.random.default_rng(0).integers(0, 65, size=37)
    plan = buckets.eval_plan(lengths, (16, 32, 64), 8)
    rows = np.concatenate([r for r, _ in plan])
    assert sorted(rows.tolist()) == list(range(37))
    assert all(lengths[r].max() <= length for r, length in plan)
    assert [len(r) for r, _ in plan] == [8, 8, 8, 8, 5]


def test_cut_touches_only_token_axes():
    batch = {
        "input_ids": np.zeros((2, 4, 16)),
        "labels": np.zeros((2,)),
        "spans": np.zeros((2, 3)),
        "token_labels": np.zeros((2, 16)),
    }
    cut = buckets.cut(batch, 8, 16)
    assert {k: v.shape for k, v in cut.items()} == {
        "input_ids": (2, 4, 8),
        "labels": (2,),
        "spans": (2, 3),
        "token_labels": (2, 8),
    }


def test_pack_keeps_every_example_whole_in_its_slot():
    """Every example once, its tokens contiguous from its [CLS] with positions from 0, its
    per-example values in its slot; empty slots weigh 0; rows a multiple of row_multiple and
    close to the fewest that can hold the tokens."""
    rng = np.random.default_rng(0)
    n, length, per_row = 50, 64, 4
    lengths = rng.integers(1, 40, size=n)
    mask = _mask(lengths, length)
    batch = {
        "input_ids": rng.integers(5, 128, size=(n, length)).astype(np.int32) * mask,
        "token_type_ids": (np.arange(length) >= lengths[:, None] // 2).astype(np.int32) * mask,
        "attention_mask": mask,
        "labels": rng.integers(0, 3, size=n).astype(np.int32),
        "weights": np.ones(n, np.float32),
    }
    packed, slots = packing.pack(batch, length, per_row, row_multiple=8)
    assert len(slots) % 8 == 0 and sorted(slots[slots >= 0]) == list(range(n))
    used = int((slots >= 0).any(1).sum())
    fewest = max(-(-lengths.sum() // length), -(-n // per_row))
    assert fewest <= used <= 1.25 * fewest + 1
    for r, s in zip(*np.nonzero(slots >= 0), strict=True):
        i, start = slots[r, s], packed["cls_positions"][r, s]
        mine = packed["segment_ids"][r] == s + 1
        assert mine.sum() == lengths[i] and mine[start : start + lengths[i]].all()
        for key in ("input_ids", "token_type_ids"):
            np.testing.assert_array_equal(packed[key][r, mine], batch[key][i, : lengths[i]])
        np.testing.assert_array_equal(packed["position_ids"][r, mine], np.arange(lengths[i]))
        assert packed["labels"][r, s] == batch["labels"][i] and packed["weights"][r, s] == 1
    assert (packed["weights"][slots < 0] == 0).all()
    np.testing.assert_array_equal(packed["attention_mask"], packed["segment_ids"] > 0)


# ------------------------------------------------------------------------------------------------
# The same function as padded rows, and an exact resume.


@pytest.fixture(scope="module")
def init_checkpoint(tmp_path_factory):
    """A random tiny BERT with a SentencePiece vocabulary of the synthetic SST-2 text."""
    root = tmp_path_factory.mktemp("init")
    split = read_split(write_synthetic_glue(root / "glue", seed=0), "sst2", "train")
    tokenizer = train_sentencepiece(split.texts_a, str(root / "spm"), vocab_size=128)
    tokenizer.save(str(root / "tokenizer"))
    cfg = BertConfig.from_name("tiny", vocab_size=128, max_position_embeddings=64)
    params = BertForPreTraining(cfg).init(jax.random.key(0), np.zeros((1, 8), np.int32))["params"]
    pretrained.save(root / "ckpt", cfg, jax.device_get(params), root / "tokenizer")
    return str(root / "ckpt")


def _config(init_checkpoint, **overrides):
    c = glue_config.get_config("task=sst2,model=tiny")
    c.init_checkpoint = init_checkpoint
    c.synthetic_train_examples = 96
    c.batch_size = 16
    c.eval_batch_size = 16
    c.num_epochs = 2.0
    c.learning_rate = 1e-3
    c.length_buckets = (32, 64)
    c.predict_test = False
    for k, v in overrides.items():
        c[k] = v
    return c


def _family_and_arrays(name, init_checkpoint):
    """A family built from its config, and 12 random rows of lengths 3..29 padded to 64."""
    rng = np.random.default_rng(0)
    lengths = rng.integers(3, 30, size=12)
    shape, labels = (12, 64), rng.integers(0, 2, size=12)
    if name == "classification":
        family = get_family(_config(init_checkpoint))
    elif name == "span":
        family = get_family(squad_config.get_config("version=2.0,model=tiny"))
        labels = None
    elif name == "multiple_choice":
        family = get_family(swag_config.get_config("model=tiny"))
        shape, lengths = (12, 4, 64), rng.integers(3, 30, size=(12, 4))
    else:  # tagging, fine-tuned or frozen features under a BiLSTM
        family = get_family(ner_config.get_config(f"mode={name.split('/')[1]},model=tiny"))
        family.labels = ["O", "B-PER", "I-PER"]
        labels = rng.integers(-1, 3, size=shape)
    mask = (np.arange(64) < lengths[..., None]).astype(np.int32)
    arrays = {
        "input_ids": rng.integers(5, 128, size=shape).astype(np.int32) * mask,
        "token_type_ids": np.zeros(shape, np.int32),
        "attention_mask": mask,
        "weights": np.ones(12, np.float32),
    }
    if labels is not None:  # a tag per real token at most (-1: none), as featurize gives
        arrays["labels"] = np.where(mask > 0, labels, -1) if labels.ndim == 2 else labels
        arrays["labels"] = arrays["labels"].astype(np.int32)
    return family, arrays


@pytest.mark.parametrize(
    "name", ["classification", "span", "multiple_choice", "tagging/finetune", "tagging/feature"]
)
def test_bucketed_prediction_is_the_padded_function(name, init_checkpoint):
    """Every family: outputs of batches cut to their buckets equal those of the padded batches
    at every real token (dropout is off in prediction); cut-off token positions read -inf."""
    family, arrays = _family_and_arrays(name, init_checkpoint)
    model = family.model(BertConfig.from_name("tiny", vocab_size=128, max_position_embeddings=64))
    params = model.init(jax.random.key(1), arrays["input_ids"][:1])["params"]
    mesh = make_mesh((-1, 1, 1))
    predict_fn = finetune.make_predict_fn(family, model, mesh, DEFAULT_RULES)
    token_outputs = getattr(family, "token_outputs", ())
    padded = finetune.predict(predict_fn, params, arrays, 8, mesh)
    bucketed = finetune.predict(predict_fn, params, arrays, 8, mesh, (16, 32, 64), token_outputs)
    real = arrays["attention_mask"] > 0
    for key, value in padded.items():
        assert bucketed[key].shape == value.shape
        if key in token_outputs:
            np.testing.assert_allclose(bucketed[key][real], value[real], atol=1e-5)
            assert np.isneginf(bucketed[key][~real & (np.arange(64) >= 32)]).all()
        else:
            np.testing.assert_allclose(bucketed[key], value, atol=1e-5)


def test_cut_batch_has_the_padded_batch_loss(init_checkpoint):
    """A training batch cut to its bucket has the padded batch's per-row losses."""
    family, arrays = _family_and_arrays("tagging/finetune", init_checkpoint)
    # Dropout is the only randomness; with rate 0 the step computes the same numbers.
    cfg = BertConfig.from_name("tiny", vocab_size=128, max_position_embeddings=64,
                               hidden_dropout=0.0, attention_dropout=0.0)  # fmt: skip
    model = family.model(cfg)
    params = model.init(jax.random.key(1), arrays["input_ids"][:1])["params"]
    rng = jax.random.key(2)
    cut = buckets.cut(arrays, 32, 64)
    assert cut["labels"].shape == (12, 32)
    np.testing.assert_allclose(family.loss(model, params, cut, rng)[0],
                               family.loss(model, params, arrays, rng)[0], rtol=1e-5)  # fmt: skip


@pytest.mark.parametrize(("task", "causal"), [("sst2", False), ("sst2", True), ("stsb", False)])
def test_packed_batch_has_the_padded_batch_losses_and_gradients(init_checkpoint, task, causal):
    """Classification, regression and a left-to-right (causal) encoder: each example's loss in a
    packed batch is its loss in its own padded row, and the batch's loss and gradients (the
    training step's) are those of the padded batch."""
    family, arrays = _family_and_arrays("classification", init_checkpoint)
    if task == "stsb":
        family = get_family(_config(init_checkpoint, task="stsb"))
        arrays["labels"] = np.random.default_rng(1).uniform(0, 5, 12).astype(np.float32)
    cfg = BertConfig.from_name("tiny", vocab_size=128, max_position_embeddings=64, causal=causal,
                               hidden_dropout=0.0, attention_dropout=0.0)  # fmt: skip
    model = family.model(cfg)
    params = model.init(jax.random.key(1), arrays["input_ids"][:1])["params"]
    packed, slots = packing.pack(arrays, 64, per_row := 16, row_multiple=8)
    assert packed["labels"].shape == (8, per_row) and (slots >= 0).any(1).sum() < 12
    rng = jax.random.key(2)
    padded_losses = family.loss(model, params, arrays, rng)[0]
    packed_losses = family.loss(model, params, packed, rng)[0]
    real = slots >= 0
    np.testing.assert_allclose(packed_losses[real], padded_losses[slots[real]], rtol=2e-5)
    loss_fn = jax.value_and_grad(finetune.make_loss_fn(family, model), has_aux=True)

    def step(batch):
        return loss_fn(params, batch, rng, finetune.example_denominators(batch))

    (padded_loss, _), padded_grads = step(arrays)
    (packed_loss, _), packed_grads = step(packed)
    np.testing.assert_allclose(packed_loss, padded_loss, rtol=2e-5)
    for x, y in zip(jax.tree.leaves(packed_grads), jax.tree.leaves(padded_grads), strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-3, atol=1e-6)


def test_packing_is_chosen_where_it_computes_fewer_tokens():
    """Short rows for the length (Rotten Tomatoes-like, median 27 of 128) pack into far fewer
    tokens than buckets cut; rows filling most of the length (the synthetic SST-2's, about 37
    of 64) do not, and stay bucketed under the default threshold."""
    rng = np.random.default_rng(0)
    short = np.clip(rng.lognormal(np.log(27), 0.37, 512).round(), 3, 128).astype(int)
    ratio = packing.token_ratio(short, buckets.bucket_lengths((), 128), 32, 16)
    assert ratio < 0.9
    filling = rng.integers(25, 52, size=512)
    ratio = packing.token_ratio(filling, buckets.bucket_lengths((), 64), 32, 16)
    assert ratio >= glue_config.get_config("task=sst2").pack_if_token_ratio_below


def test_only_families_that_pack_accept_pack_examples(tmp_path):
    config = squad_config.get_config("version=1.1,model=tiny")
    config.pack_examples = True
    with pytest.raises(ValueError, match=r"squad/v1.1 family does not pack its examples"):
        finetune.train_and_evaluate(config, str(tmp_path / "run"))
    assert not (tmp_path / "run" / "config.json").exists()


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["bucketed", "packed"])
def test_resume_mid_epoch_is_exact(init_checkpoint, tmp_path, layout):
    """A run killed after its checkpoint in the middle of epoch 1 and restarted ends with the
    same training losses and the same parameters as the run that was never stopped."""
    # The synthetic SST-2's rows fill most of 64 tokens: packing them is forced (inf).
    config = _config(init_checkpoint, num_epochs=1.0, eval_every_epochs=0.5, log_every_steps=1,
                     pack_examples=layout == "packed")  # fmt: skip
    config.pack_if_token_ratio_below = float("inf")
    straight = tmp_path / "straight"
    finetune.train_and_evaluate(config, str(straight))

    resumed = tmp_path / "resumed"
    shutil.copytree(straight, resumed)
    for step_dir in (resumed / "checkpoints").iterdir():
        if step_dir.name.isdigit() and int(step_dir.name) > 3:  # the kill came after step 3
            shutil.rmtree(step_dir)
    (resumed / "results.json").unlink()
    (resumed / "metrics.jsonl").write_text("")
    finetune.train_and_evaluate(config, str(resumed))

    def losses(workdir):
        rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
        return {r["step"]: r["loss"] for r in rows if "loss" in r and r["step"] > 3}

    assert len(losses(resumed)) == 3 and losses(resumed) == losses(straight)
    final = [
        pretrained.restore_host_arrays(workdir / "checkpoints" / "6" / "state", "params")
        for workdir in (straight, resumed)
    ]
    for x, y in zip(*map(jax.tree.leaves, final), strict=True):
        np.testing.assert_array_equal(x, y)
