"""Sequence packing computes the same function as one pair per padded row."""

import dataclasses

import jax
import numpy as np
import pytest

from bert_jax.data import pretraining
from bert_jax.models.bert import BertConfig
from bert_jax.models.heads import BertForPreTraining
from bert_jax.objectives import loss_denominators, ltr_denominators, ltr_terms, pretraining_terms
from bert_jax.prepare import prepare

CFG = BertConfig.from_name("tiny", vocab_size=50, max_position_embeddings=32)


def _pairs(rng, lengths):
    pairs = []
    for i, n in enumerate(lengths):
        ids = rng.integers(5, 50, n)
        ids[0], ids[n // 2], ids[-1] = 2, 3, 3
        types = (np.arange(n) > n // 2).astype(np.int32)
        masked, positions, masked_ids, weights = pretraining.mask_tokens(
            ids, rng, vocab_size=50, mask_id=4, special_ids=[0, 2, 3, 4], max_predictions=3
        )
        pairs.append(
            dict(input_ids=masked, token_type_ids=types, masked_positions=positions,
                 masked_ids=masked_ids, masked_weights=weights, next_sentence_label=i % 2)
        )  # fmt: skip
    return pairs


def _stack(rows):
    return {k: np.stack([r[k] for r in rows]) for k in rows[0]}


def test_packed_losses_equal_unpacked_on_the_same_pairs():
    pairs = _pairs(np.random.default_rng(0), [11, 7, 13, 9, 5])
    plain = _stack([pretraining.assemble_row([p], 32, 3) for p in pairs])
    packed = _stack(
        [
            pretraining.assemble_row(pairs[:3], 32, 9, max_pairs=3),
            pretraining.assemble_row(pairs[3:], 32, 9, max_pairs=3),
        ]
    )
    model = BertForPreTraining(CFG)
    params = model.init(jax.random.key(0), plain["input_ids"])["params"]
    ours = jax.device_get(pretraining_terms(model, params, packed, None, deterministic=True))
    ref = jax.device_get(pretraining_terms(model, params, plain, None, deterministic=True))
    for key in ours:
        np.testing.assert_allclose(ours[key], ref[key], rtol=1e-5, atol=1e-5, err_msg=key)
    np.testing.assert_allclose(loss_denominators(packed)["nsp"], 5)
    np.testing.assert_allclose(loss_denominators(packed)["mlm"], plain["masked_weights"].sum())


def test_packed_next_token_losses_equal_unpacked_on_the_same_pairs():
    """Left-to-right (a causal model, the raw tokens): packed rows stay causal within each pair
    and predict nothing across a pair boundary, so they give one pair per row's sums."""
    unmasked = dict(masked_positions=[], masked_ids=[], masked_weights=[])
    pairs = [{**p, **unmasked} for p in _pairs(np.random.default_rng(1), [11, 7, 13, 9, 5])]
    plain = _stack([pretraining.assemble_row([p], 32, 0) for p in pairs])
    packed = _stack(
        [
            pretraining.assemble_row(pairs[:3], 32, 0, max_pairs=3),
            pretraining.assemble_row(pairs[3:], 32, 0, max_pairs=3),
        ]
    )
    model = BertForPreTraining(dataclasses.replace(CFG, causal=True))
    params = jax.jit(model.init)(jax.random.key(0), plain["input_ids"])["params"]
    terms = jax.jit(lambda batch: ltr_terms(model, params, batch, None, deterministic=True))
    ours, ref = jax.device_get((terms(packed), terms(plain)))
    for key in ours:
        np.testing.assert_allclose(ours[key], ref[key], rtol=1e-5, atol=1e-5, err_msg=key)
    # Every token but the last of each pair is a target.
    assert ltr_denominators(packed)["lm"] == ltr_denominators(plain)["lm"] == 45 - 5


def test_prepare_packs_and_reports_efficiency(tmp_path):
    options = dict(synthetic=100, spm_vocab_size=128, max_seq_lengths=[128], dupe_factor=2)
    plain = prepare(str(tmp_path / "plain"), **options)
    packed = prepare(str(tmp_path / "packed"), max_pairs_per_row=3, **options)
    assert packed["instances"] == plain["instances"] and packed["tokens"] == plain["tokens"]
    assert plain["rows"]["128"]["train"] == plain["instances"]["128"]["train"]
    efficiency = packed["packing_efficiency"]["128"]["train"]
    assert efficiency > 0.95
    assert efficiency / plain["packing_efficiency"]["128"]["train"] > 1.2


def test_packed_rows_train_through_the_same_step(tmp_path):
    import optax

    from bert_jax.data.pipeline import make_pretraining_loader
    from bert_jax.objectives import make_loss_fn
    from bert_jax.sharding import DEFAULT_RULES, make_mesh
    from bert_jax.train import create_train_state, global_batch, make_train_step

    summary = prepare(str(tmp_path), synthetic=60, spm_vocab_size=128, max_seq_lengths=[128],
                      dupe_factor=1, max_pairs_per_row=3)  # fmt: skip
    options = dict(seq_len=128, global_batch_size=8, seed=0, max_predictions=40, num_epochs=1)
    with pytest.raises(ValueError, match="max_pairs_per_row"):  # packed data read as plain
        list(make_pretraining_loader(str(tmp_path), "train", **options))
    batches = list(make_pretraining_loader(str(tmp_path), "train", max_pairs_per_row=3, **options))
    batch = batches[0]
    assert batch["segment_ids"].shape == (8, 128) and batch["cls_positions"].shape == (8, 3)
    assert batch["next_sentence_label"].shape == batch["nsp_weights"].shape == (8, 3)
    # Every pair of the epoch arrives once, in fewer rows than pairs.
    assert sum(b["nsp_weights"].sum() for b in batches) == summary["instances"]["128"]["train"]
    assert summary["rows"]["128"]["train"] < summary["instances"]["128"]["train"]

    cfg = BertConfig.from_name("tiny", vocab_size=128, max_position_embeddings=128)
    model = BertForPreTraining(cfg)
    mesh = make_mesh((-1, 1, 1))
    tx = optax.adamw(1e-3)
    state, shardings = create_train_state(
        lambda rng: model.init(rng, batch["input_ids"][:1])["params"], tx, mesh, DEFAULT_RULES, 0
    )
    step = make_train_step(
        make_loss_fn(model, True), loss_denominators, tx, shardings, mesh, DEFAULT_RULES
    )
    _, metrics = step(state, global_batch(batch, mesh))
    assert np.isfinite(float(metrics["loss"])) and float(metrics["nsp_loss"]) > 0


def test_packed_rows_never_corrupt_a_token_without_predicting_it(tmp_path):
    """Few masked-LM slots for a packed row: every [MASK] in the row is a predicted position."""
    from bert_jax.data.pipeline import make_pretraining_loader

    prepare(str(tmp_path), synthetic=60, spm_vocab_size=128, max_seq_lengths=[128],
            dupe_factor=1, max_pairs_per_row=3)  # fmt: skip
    loader = make_pretraining_loader(
        str(tmp_path), "train", seq_len=128, global_batch_size=8, seed=0, max_predictions=8,
        max_pairs_per_row=3, mask_token_ratio=1.0, random_token_ratio=0.0, num_epochs=1,
    )  # fmt: skip
    for batch in loader:
        masked = (batch["input_ids"] == 4).sum(axis=1)  # [MASK] = 4 in trained vocabularies
        np.testing.assert_array_equal(masked, batch["masked_weights"].sum(axis=1))
