"""KerasHub's side of the benchmarks, run in KerasHub's own environment (it needs tensorflow-text
2.20, which bert_jax's tensorflow-cpu 2.21 excludes) with ``KERAS_BACKEND=jax``.

Two measurements, each a randomly initialised model of the named google-research/bert size
trained with Keras' AdamW through the JAX-native step KerasHub documents for JAX
(``stateless_call`` under ``jax.value_and_grad``, ``optimizer.stateless_apply``, all in one
``jax.jit``); each prints one JSON object on its last line:

* ``classify`` (``benchmarks.finetune``): ``BertTextClassifier`` (two classes, dropout 0.1) on
  the rows saved by the caller, random batches padded to their longest row rounded up to
  ``--pad_multiple`` (every new width compiles once; KerasHub's own preprocessor would pad every
  row to ``sequence_length``, slower). Prints ``setup_and_first_epoch_s`` and ``epoch_s``.
* ``mlm`` (``benchmarks.train_step``): ``BertMaskedLM`` (dropout off; KerasHub has no NSP head)
  on the saved pretraining batch, its head on the masked positions only. Prints ``setup_s``,
  ``compile_s`` (the first step), ``step_times_s`` and ``max_rss_bytes``.

Usage (what the benchmarks run with ``--keras_python=...``)::

    KERAS_BACKEND=jax .venv-keras/bin/python -m benchmarks.keras_peer classify --model=base \\
        --data=~/.cache/bert_jax/keras_rows.npz --batch=32 --rounds=2
    KERAS_BACKEND=jax .venv-keras/bin/python -m benchmarks.keras_peer mlm --model=base \\
        --data=~/.cache/bert_jax/keras_batch.npz --steps=5 --warmup=2
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import tempfile
import time

import numpy as np

# name -> (layers, hidden): the google-research/bert sizes (heads = hidden / 64, 4x feed-forward).
SIZES = {"tiny": (2, 128), "mini": (4, 256), "small": (4, 512), "medium": (8, 512),
         "base": (12, 768), "large": (24, 1024)}  # fmt: skip


def measure(python: str, task: str, arrays: dict[str, np.ndarray], **flags) -> dict:
    """Runs ``task`` on ``arrays`` in KerasHub's environment (``python``, made by
    ``benchmarks/keras_env.sh``) from the calling benchmark's process; returns its JSON."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "arrays.npz")
        np.savez(data, **arrays)
        cmd = [python, "-m", "benchmarks.keras_peer", task, f"--data={data}",
               *(f"--{k}={v}" for k, v in flags.items())]  # fmt: skip
        env = {**os.environ, "KERAS_BACKEND": "jax"}
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=root, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"KerasHub benchmark ({' '.join(cmd)}) failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("task", choices=["classify", "mlm"])
    parser.add_argument("--model", default="base", choices=list(SIZES))
    parser.add_argument("--data", required=True, help="an .npz the calling benchmark wrote")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--learning_rate", type=float, default=2e-5)
    parser.add_argument("--weight_decay", type=float, default=0.01)
    parser.add_argument("--clip_norm", type=float, default=1.0)
    parser.add_argument("--batch", type=int, default=32, help="classify: rows per batch")
    parser.add_argument("--rounds", type=int, default=2, help="classify: timed epochs")
    parser.add_argument("--pad_multiple", type=int, default=16, help="classify")
    parser.add_argument("--steps", type=int, default=5, help="mlm: timed steps")
    parser.add_argument("--warmup", type=int, default=2, help="mlm: untimed steps")
    return parser.parse_args()


def _jax_train_step(model, optimizer, loss_of):
    """The jitted ``step(state, x, y, weights) -> (state, loss)`` and the initial state."""
    import jax

    optimizer.build(model.trainable_variables)

    def loss_fn(trainable, non_trainable, x, y, weights):
        outputs, non_trainable = model.stateless_call(trainable, non_trainable, x, training=True)
        return loss_of(y, outputs, weights), non_trainable

    @jax.jit
    def step(state, x, y, weights):
        trainable, non_trainable, opt_vars = state
        (loss, non_trainable), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            trainable, non_trainable, x, y, weights
        )
        trainable, opt_vars = optimizer.stateless_apply(opt_vars, grads, trainable)
        return (trainable, non_trainable, opt_vars), loss

    state = (
        [v.value for v in model.trainable_variables],
        [v.value for v in model.non_trainable_variables],
        [v.value for v in optimizer.variables],
    )
    return step, state


def _peak_rss() -> int:
    """This process's peak resident memory in bytes. Linux's ``ru_maxrss`` would also count the
    parent's memory at the fork that started this process (kept across exec), so the benchmark's
    own gigabytes would be charged to KerasHub: ``VmHWM`` is this program's alone."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024  # kB
    except OSError:  # not Linux
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def main() -> None:
    args = _parse()
    if os.environ.get("KERAS_BACKEND") != "jax":
        raise SystemExit("Set KERAS_BACKEND=jax: this measures KerasHub on JAX.")

    import jax
    import keras
    import keras_hub

    t0 = time.perf_counter()
    rows = dict(np.load(os.path.expanduser(args.data)))
    if args.dtype == "bfloat16":
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
    layers, hidden = SIZES[args.model]
    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=30522, num_layers=layers, num_heads=hidden // 64, hidden_dim=hidden,
        intermediate_dim=4 * hidden, dropout=0.1 if args.task == "classify" else 0.0,
        max_sequence_length=512,
    )  # fmt: skip
    optimizer = keras.optimizers.AdamW(
        learning_rate=args.learning_rate,
        weight_decay=args.weight_decay,
        global_clipnorm=args.clip_norm,
    )
    cross_entropy = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    loss_of = lambda y, logits, w: cross_entropy(y, logits, sample_weight=w)  # noqa: E731

    if args.task == "mlm":
        model = keras_hub.models.BertMaskedLM(backbone, preprocessor=None)
        step, state = _jax_train_step(model, optimizer, loss_of)
        x = {k: rows[k] for k in ("token_ids", "segment_ids", "padding_mask", "mask_positions")}
        setup = time.perf_counter() - t0

        def timed_step():
            nonlocal state
            start = time.perf_counter()
            state, loss = step(state, x, rows["mask_ids"], rows["mask_weights"])
            jax.block_until_ready((state, loss))
            return time.perf_counter() - start

        compile_s = timed_step()
        for _ in range(args.warmup - 1):
            timed_step()
        times = [timed_step() for _ in range(args.steps)]
        result = {"setup_s": setup, "compile_s": compile_s, "step_times_s": times,
                  "step_time_s": statistics.median(times),
                  "max_rss_bytes": _peak_rss()}  # fmt: skip
        print(json.dumps(result))
        return

    model = keras_hub.models.BertTextClassifier(backbone, num_classes=2, preprocessor=None)
    step, state = _jax_train_step(model, optimizer, loss_of)
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
            state, loss = step(state, x, rows["labels"][b], None)
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
