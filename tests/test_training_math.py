"""Training math against an independent reference: transformers' PyTorch BertForPreTraining with a
PyTorch optimizer, 10 steps from the same weights on the same batches (dropout off)."""

import jax
import numpy as np
import pytest
import torch
import transformers

from bert_jax import optim
from bert_jax.interop import save_hf
from bert_jax.models.bert import BertConfig
from bert_jax.models.heads import BertForPreTraining
from bert_jax.objectives import loss_denominators, make_loss_fn
from bert_jax.sharding import DEFAULT_RULES, make_mesh
from bert_jax.train import create_train_state, global_batch, make_train_step
from tests.torch_reference import AdamWeightDecay, original_bert_lr

STEPS, LR, WARMUP, WD = 10, 1e-3, 3, 0.01
CFG = BertConfig.from_name(
    "tiny",
    vocab_size=120,
    hidden_size=48,
    num_heads=3,
    intermediate_size=96,
    max_position_embeddings=32,
    hidden_dropout=0.0,
    attention_dropout=0.0,
)


def make_batches(rng, n, batch=4, length=16, predictions=3):
    batches = []
    for _ in range(n):
        lengths = rng.integers(8, length + 1, batch)
        mask = (np.arange(length)[None] < lengths[:, None]).astype(np.int32)
        ids = rng.integers(5, CFG.vocab_size, (batch, length)).astype(np.int32) * mask
        types = ((np.arange(length)[None] >= lengths[:, None] // 2) * mask).astype(np.int32)
        positions = np.stack(
            [np.sort(rng.choice(np.arange(1, 8), predictions, False)) for _ in range(batch)]
        )
        weights = np.ones((batch, predictions), np.float32)
        weights[0, -1] = 0.0  # a padded prediction slot
        batches.append(
            dict(
                input_ids=ids,
                token_type_ids=types,
                attention_mask=mask,
                masked_positions=positions.astype(np.int32),
                masked_ids=rng.integers(5, CFG.vocab_size, (batch, predictions)).astype(np.int32),
                masked_weights=weights,
                next_sentence_label=rng.integers(0, 2, batch).astype(np.int32),
            )
        )
    return batches


def torch_losses(model_dir, batches, optimizer_name):
    torch.manual_seed(0)
    model = transformers.BertForPreTraining.from_pretrained(model_dir, attn_implementation="eager")
    model.train()
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if "bias" in name or "LayerNorm" in name else decay).append(p)
    groups = [dict(params=decay, weight_decay=WD), dict(params=no_decay, weight_decay=0.0)]
    if optimizer_name == "bert_adam":
        opt = AdamWeightDecay(groups, lr=LR, weight_decay=WD)
    else:
        opt = torch.optim.AdamW(groups, lr=LR, eps=1e-6)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda t: original_bert_lr(t, LR, STEPS, WARMUP) / LR
    )
    losses = []
    for b in batches:
        labels = np.full(b["input_ids"].shape, -100, np.int64)
        for row in range(len(labels)):
            for pos, tok, w in zip(
                b["masked_positions"][row],
                b["masked_ids"][row],
                b["masked_weights"][row],
                strict=True,
            ):
                if w:
                    labels[row, pos] = tok
        out = model(
            input_ids=torch.tensor(b["input_ids"], dtype=torch.long),
            token_type_ids=torch.tensor(b["token_type_ids"], dtype=torch.long),
            attention_mask=torch.tensor(b["attention_mask"], dtype=torch.long),
            labels=torch.tensor(labels),
            next_sentence_label=torch.tensor(b["next_sentence_label"], dtype=torch.long),
        )
        opt.zero_grad()
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(out.loss.item())
    return np.array(losses)


@pytest.mark.parametrize("optimizer_name", ["bert_adam", "adamw"])
def test_ten_steps_match_transformers_and_torch_optimizer(tmp_path, optimizer_name):
    model = BertForPreTraining(CFG)
    mesh = make_mesh((1, 1, 1), jax.devices()[:1])
    schedule = optim.make_schedule("bert", LR, STEPS, WARMUP)
    tx = optim.make_optimizer(optimizer_name, schedule, weight_decay=WD, eps=1e-6, clip_norm=1.0)
    dummy = np.zeros((1, 16), np.int32)
    state, shardings = create_train_state(
        lambda rng: model.init(rng, dummy, masked_positions=dummy[:, :1])["params"],
        tx,
        mesh,
        DEFAULT_RULES,
        seed=3,
    )
    save_hf(CFG, jax.device_get(state.params), str(tmp_path / "hf"), tokenizer=None)
    step = make_train_step(
        make_loss_fn(model, True), loss_denominators, tx, shardings, mesh, DEFAULT_RULES
    )

    batches = make_batches(np.random.default_rng(0), 2) * (STEPS // 2)  # cycled: it must learn
    ours = []
    for b in batches:
        state, metrics = step(state, global_batch(b, mesh))
        ours.append(float(metrics["loss"]))
    theirs = torch_losses(str(tmp_path / "hf"), batches, optimizer_name)
    assert ours[-1] < ours[1] - 0.05  # the steps really train
    np.testing.assert_allclose(ours, theirs, atol=1e-4)
