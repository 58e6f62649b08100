"""KerasHub's side of ``benchmarks.finetune``: run in KerasHub's own environment (it needs
tensorflow-text 2.20, which bert_jax's tensorflow-cpu 2.21 excludes), with ``KERAS_BACKEND=jax``.

Trains a randomly initialised ``keras_hub.models.BertTextClassifier`` (``BertBackbone`` of the
named size, two classes, dropout 0.1) with AdamW on the rows that ``benchmarks.finetune`` saved,
through the JAX-native training step KerasHub documents for JAX (``stateless_call`` under
``jax.value_and_grad``, ``optimizer.stateless_apply``, all in one ``jax.jit``). Batches are
random, padded to their longest row rounded up to ``--pad_multiple`` (every new width
compiles once; KerasHub's own preprocessor would pad every row to ``sequence_length``, slower).
Prints one JSON object: ``setup_and_first_epoch_s`` and ``epoch_s`` per timed epoch.

Usage (what ``benchmarks.finetune --keras_python=...`` runs)::

    KERAS_BACKEND=jax .venv-keras/bin/python -m benchmarks.keras_finetune --model=base \\
        --data=~/.cache/bert_jax/keras_rows.npz --batch=32 --rounds=2
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

# name -> (layers, hidden): the google-research/bert sizes (heads = hidden / 64, 4x feed-forward).
SIZES = {"tiny": (2, 128), "mini": (4, 256), "small": (4, 512), "medium": (8, 512),
         "base": (12, 768), "large": (24, 1024)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="base", choices=list(SIZES))
    parser.add_argument("--data", required=True)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--pad_multiple", type=int, default=16)
    parser.add_argument("--learning_rate", type=float, default=2e-5)
    parser.add_argument("--weight_decay", type=float, default=0.01)
    parser.add_argument("--clip_norm", type=float, default=1.0)
    args = parser.parse_args()
    if os.environ.get("KERAS_BACKEND") != "jax":
        raise SystemExit("Set KERAS_BACKEND=jax: this measures KerasHub on JAX.")

    import jax
    import keras
    import keras_hub

    t0 = time.perf_counter()
    rows = dict(np.load(os.path.expanduser(args.data)))
    layers, hidden = SIZES[args.model]
    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=30522, num_layers=layers, num_heads=hidden // 64, hidden_dim=hidden,
        intermediate_dim=4 * hidden, dropout=0.1, max_sequence_length=512,
    )  # fmt: skip
    model = keras_hub.models.BertTextClassifier(backbone, num_classes=2, preprocessor=None)
    optimizer = keras.optimizers.AdamW(
        learning_rate=args.learning_rate,
        weight_decay=args.weight_decay,
        global_clipnorm=args.clip_norm,
    )
    optimizer.build(model.trainable_variables)
    cross_entropy = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def loss_fn(trainable, non_trainable, x, y):
        logits, non_trainable = model.stateless_call(trainable, non_trainable, x, training=True)
        return cross_entropy(y, logits), non_trainable

    @jax.jit
    def train_step(state, x, y):
        trainable, non_trainable, opt_vars = state
        (loss, non_trainable), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            trainable, non_trainable, x, y
        )
        trainable, opt_vars = optimizer.stateless_apply(opt_vars, grads, trainable)
        return (trainable, non_trainable, opt_vars), loss

    state = (
        [v.value for v in model.trainable_variables],
        [v.value for v in model.non_trainable_variables],
        [v.value for v in optimizer.variables],
    )
    mask = rows["attention_mask"]
    lengths = mask.shape[1] - np.argmax(mask[:, ::-1] > 0, axis=1)
    n = len(lengths)
    rng = np.random.default_rng(0)

    def run_epoch():
        nonlocal state
        order = rng.permutation(n)
        for i in range(0, n // args.batch * args.batch, args.batch):
            b = order[i : i + args.batch]
            width = -(-int(lengths[b].max()) // args.pad_multiple) * args.pad_multiple
            x = {
                "token_ids": rows["input_ids"][b, :width],
                "segment_ids": rows["token_type_ids"][b, :width],
                "padding_mask": rows["attention_mask"][b, :width].astype(bool),
            }
            state, loss = train_step(state, x, rows["labels"][b])
        jax.block_until_ready((state, loss))

    run_epoch()  # compiles every width this data meets
    first = time.perf_counter() - t0
    epochs = []
    for _ in range(args.rounds):
        t0 = time.perf_counter()
        run_epoch()
        epochs.append(time.perf_counter() - t0)
    print(json.dumps({"setup_and_first_epoch_s": first, "epoch_s": epochs}))


if __name__ == "__main__":
    main()
