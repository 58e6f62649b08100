"""The shared train step: gradient accumulation computes the full-batch update exactly."""

import jax
import numpy as np
import optax

from bert_jax.models.bert import BertConfig
from bert_jax.models.heads import BertForPreTraining
from bert_jax.objectives import loss_denominators, make_loss_fn
from bert_jax.sharding import DEFAULT_RULES, make_mesh
from bert_jax.train import create_train_state, global_batch, make_train_step

CFG = BertConfig.from_name("tiny", vocab_size=64, hidden_dropout=0.0, attention_dropout=0.0)


def _batch(rng, batch=8, length=16, predictions=3):
    lengths = rng.integers(6, length + 1, batch)
    mask = (np.arange(length)[None] < lengths[:, None]).astype(np.int32)
    weights = (rng.random((batch, predictions)) < 0.8).astype(np.float32)  # uneven per row
    return dict(
        input_ids=rng.integers(5, 64, (batch, length)).astype(np.int32) * mask,
        token_type_ids=np.zeros((batch, length), np.int32),
        attention_mask=mask,
        masked_positions=rng.integers(1, 6, (batch, predictions)).astype(np.int32),
        masked_ids=rng.integers(5, 64, (batch, predictions)).astype(np.int32),
        masked_weights=weights,
        next_sentence_label=rng.integers(0, 2, batch).astype(np.int32),
    )


def test_gradient_accumulation_equals_full_batch():
    model = BertForPreTraining(CFG)
    mesh = make_mesh((-1, 1, 1))
    tx = optax.sgd(0.5)
    dummy = np.zeros((1, 16), np.int32)

    def init(rng):
        return model.init(rng, dummy, masked_positions=dummy[:, :1])["params"]

    batch = global_batch(_batch(np.random.default_rng(0)), mesh)
    results = []
    for accum in (1, 4):
        state, shardings = create_train_state(init, tx, mesh, DEFAULT_RULES, seed=0)
        step = make_train_step(
            make_loss_fn(model, True), loss_denominators, tx, shardings, mesh, DEFAULT_RULES, accum
        )
        state, metrics = step(state, batch)
        results.append((jax.device_get(state.params), jax.device_get(metrics)))
    (p1, m1), (p4, m4) = results
    for k in ("loss", "mlm_loss", "nsp_loss", "mlm_accuracy", "grad_norm"):
        np.testing.assert_allclose(m4[k], m1[k], rtol=2e-5, err_msg=k)
    for a, b in zip(jax.tree.leaves(p4), jax.tree.leaves(p1), strict=True):
        np.testing.assert_allclose(a, b, atol=2e-6)


def test_preemption_gives_sigterm_back_when_closed():
    """The loop turns SIGTERM into a flag while it runs; afterwards the process stops on it."""
    import signal

    from bert_jax.train import Preemption

    before = signal.getsignal(signal.SIGTERM)
    preemption = Preemption()
    assert signal.getsignal(signal.SIGTERM) == preemption._handle
    preemption.close()
    assert signal.getsignal(signal.SIGTERM) == before
