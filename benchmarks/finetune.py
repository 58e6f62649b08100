"""Fine-tuning throughput on real sentence lengths: bert_jax padded, length-bucketed and packed
against transformers' PyTorch with dynamic padding (what run_glue does) and KerasHub on JAX.

The data are the Rotten Tomatoes review snippets (``benchmarks.real_data``; the source of MR and
SST-2), tokenized once with the bert-base-uncased WordPiece vocabulary (from all-MiniLM-L6-v2's
``tokenizer.json``) and cut at ``--max_seq_length``; the model is a randomly initialised
``--model`` with two labels and dropout 0.1, trained with AdamW (lr 2e-5, clipping 1.0) on
``--examples`` snippets per epoch. Every implementation sees the same rows and the same batch
size; each first runs one untimed epoch (compiling every shape it meets), then the
implementations run one epoch each in turn, ``--rounds`` times, so drift in the machine's speed
hits all alike. The figure is training examples per second (median over rounds).

* ``padded``: bert_jax's fine-tuning step (``bert_jax.finetune``: the family's loss,
  ``train.make_train_step``) with every row padded to ``max_seq_length``.
* ``bucketed``: the same step on length-bucketed batches (``bert_jax.data.buckets``), one
  compiled shape per bucket.
* ``packed``: the same step on the padded run's batches packed into as few rows as hold them
  (``bert_jax.data.packing``; the default of the classification configs), one compiled shape
  per row count met (those of the timed epochs are compiled before timing).
* ``hf_torch``: transformers' ``BertForSequenceClassification`` (SDPA attention), random
  batches padded to their longest row (``DataCollatorWithPadding``), ``torch.optim.AdamW``.
* ``keras_hub``: KerasHub's ``BertTextClassifier`` backbone + head on the JAX backend, a
  stateless jitted step (``stateless_call`` + ``stateless_apply``) on batches padded to their
  longest row rounded up to 16. KerasHub needs tensorflow-text 2.20, which conflicts with
  bert_jax's tensorflow-cpu 2.21, so it runs in its own environment (``--keras_python``, e.g.
  ``.venv-keras/bin/python``; see ``benchmarks/keras_env.sh``) on the same rows, in a separate
  process after the others: its figure is not alternated with theirs.

Usage::

    python -m benchmarks.finetune --model=base --examples=512 --rounds=2
    python -m benchmarks.finetune --model=small --keras_python=.venv-keras/bin/python
    python -m benchmarks.finetune --model=tiny --examples=64 --rounds=1 --peers= --no_results_file
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from benchmarks import (
    append_result,
    command_line,
    format_table,
    hardware,
    keras_peer,
    load_average,
    publish,
    real_data,
)

PEERS = ("hf_torch", "keras_hub")
LEARNING_RATE, WEIGHT_DECAY, CLIP_NORM = 2e-5, 0.01, 1.0
KERAS_PAD_MULTIPLE = 16  # KerasHub recompiles per shape: batches are padded to multiples of this


def synthetic_rows(max_seq_length: int, examples: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Offline stand-in for :func:`tokenized_rows` (tests): random ids, with lengths drawn from
    a log-normal close to the Rotten Tomatoes snippets' (median 27 tokens, 5% above 49)."""
    rng = np.random.default_rng(seed)
    lengths = np.clip(rng.lognormal(np.log(27), 0.37, examples).round(), 3, max_seq_length)
    mask = (np.arange(max_seq_length) < lengths[:, None]).astype(np.int32)
    return {
        "input_ids": rng.integers(1000, 30522, (examples, max_seq_length), np.int32) * mask,
        "token_type_ids": np.zeros((examples, max_seq_length), np.int32),
        "attention_mask": mask,
        "labels": rng.integers(0, 2, examples, np.int32),
    }


def tokenized_rows(max_seq_length: int, examples: int, seed: int = 0) -> dict[str, np.ndarray]:
    """``examples`` Rotten Tomatoes snippets (a fixed random choice) as bert_jax's classification
    family featurizes them: ``[CLS] text [SEP]`` ids padded to ``max_seq_length``, and labels."""
    from bert_jax.tasks.classification import Classification
    from bert_jax.tasks.glue import GlueSplit
    from bert_jax.tokenizers import from_hf_tokenizer_json
    from configs import glue as glue_config

    texts, labels = real_data.rotten_tomatoes()
    rows = np.random.default_rng(seed).permutation(len(texts))[:examples]
    split = GlueSplit("sst2", "train", [texts[i] for i in rows], None, labels[rows],
                      [str(i) for i in rows])  # fmt: skip
    tokenizer = from_hf_tokenizer_json(real_data.minilm_dir() / "tokenizer.json")
    config = glue_config.get_config("task=sst2,model=base")
    config.max_seq_length = max_seq_length
    return Classification(config).featurize("train", split, tokenizer, config).arrays


def _model_config(model: str, vocab_size: int):
    from bert_jax.models.bert import BertConfig

    # The HF config's exact GELU, so that every implementation computes the same model.
    return BertConfig.from_name(model, vocab_size=vocab_size, hidden_act="gelu")


def _examples_per_row() -> int:
    """Packed rows hold as many examples as the classification configs' default allows."""
    from configs import glue as glue_config

    return glue_config.get_config("task=sst2").examples_per_row


# Each builder returns run_epoch(): one epoch over the rows, waited for.
Epoch = Callable[[], None]


BERT_JAX = ("padded", "bucketed", "packed")


def bert_jax_epoch(
    model: str, arrays: dict[str, np.ndarray], batch: int, layout: str, epochs: int
) -> Epoch:
    """``layout``: one of BERT_JAX; ``epochs``: how many will run (their shapes are compiled
    now)."""
    import jax
    import jax.numpy as jnp

    from bert_jax import optim
    from bert_jax.data import buckets
    from bert_jax.finetune import TrainBatches, example_denominators, make_loss_fn
    from bert_jax.sharding import DEFAULT_RULES, make_mesh
    from bert_jax.tasks import get_family
    from bert_jax.train import create_train_state, global_batch, make_train_step
    from configs import glue as glue_config

    max_seq_length = arrays["input_ids"].shape[1]
    cfg = _model_config(model, vocab_size=30522)
    family = get_family(glue_config.get_config("task=sst2,model=base"))
    net = family.model(cfg)
    mesh = make_mesh((1, 1, 1), jax.devices()[:1])
    tx = optim.make_optimizer(
        "adamw", LEARNING_RATE, weight_decay=WEIGHT_DECAY, clip_norm=CLIP_NORM
    )
    dummy = jnp.zeros((1, max_seq_length), jnp.int32)
    state, shardings = create_train_state(
        lambda rng: net.init(rng, dummy)["params"], tx, mesh, DEFAULT_RULES, seed=0
    )
    step_fn = make_train_step(make_loss_fn(family, net), example_denominators, tx, shardings,
                              mesh, DEFAULT_RULES)  # fmt: skip
    lengths = (max_seq_length,)
    if layout == "bucketed":
        lengths = buckets.bucket_lengths((), max_seq_length)
    rows = {**arrays, "weights": np.ones(len(arrays["input_ids"]), np.float32)}
    per_row = _examples_per_row() if layout == "packed" else 0
    batches = TrainBatches(rows, batch, lengths, seed=0, examples_per_row=per_row)
    step = 0

    def run_epoch():
        nonlocal state, step
        for _ in range(batches.steps_per_epoch):
            state, metrics = step_fn(state, global_batch(batches(step), mesh))
            step += 1
        jax.block_until_ready((state, metrics))

    # A long run meets every shape in its first epochs and compiles each once; the few epochs
    # timed here could meet one for the first time while timed, so each shape the timed epochs
    # use is compiled now (on a batch of that shape).
    warm = {}
    for t in range(epochs * batches.steps_per_epoch):
        b = batches(t)
        warm.setdefault(b["input_ids"].shape, b)
    for b in warm.values():
        state, _ = step_fn(state, global_batch(b, mesh))

    return run_epoch


def hf_torch_epoch(model: str, arrays: dict[str, np.ndarray], batch: int) -> Epoch:
    import torch
    import transformers

    from bert_jax.data.buckets import row_lengths
    from bert_jax.interop import hf_config_fields

    torch.manual_seed(0)
    config = transformers.BertConfig(**hf_config_fields(_model_config(model, 30522)), num_labels=2)
    net = transformers.BertForSequenceClassification._from_config(
        config, attn_implementation="sdpa"
    ).train()
    no_decay = [p for n, p in net.named_parameters() if "bias" in n or "LayerNorm" in n]
    decay = [p for n, p in net.named_parameters() if not ("bias" in n or "LayerNorm" in n)]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": WEIGHT_DECAY}, {"params": no_decay, "weight_decay": 0}],
        lr=LEARNING_RATE,
    )
    lengths = row_lengths(arrays)
    n = len(lengths)
    rng = np.random.default_rng(0)

    def run_epoch():
        order = rng.permutation(n)  # run_glue's random sampler
        for i in range(0, n // batch * batch, batch):
            rows = order[i : i + batch]
            width = int(lengths[rows].max())  # DataCollatorWithPadding: pad to the longest row
            inputs = {
                k: torch.as_tensor(arrays[k][rows, :width], dtype=torch.long)
                for k in ("input_ids", "token_type_ids", "attention_mask")
            }
            labels = torch.as_tensor(arrays["labels"][rows], dtype=torch.long)
            loss = net(**inputs, labels=labels).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), CLIP_NORM)
            opt.step()

    return run_epoch


def _time_epochs(builders: dict[str, Callable[[], Epoch]], rounds: int) -> dict[str, dict]:
    """Builds and warms up each epoch function, then times them round-robin."""
    epochs: dict[str, Epoch] = {}
    results: dict[str, dict] = {}
    for name, build in builders.items():
        t0 = time.perf_counter()
        epochs[name] = build()
        epochs[name]()  # an untimed epoch: every shape compiled, caches warm
        results[name] = {"setup_and_first_epoch_s": time.perf_counter() - t0, "epoch_s": []}
    for _ in range(rounds):
        for name, run_epoch in epochs.items():
            t0 = time.perf_counter()
            run_epoch()
            results[name]["epoch_s"].append(time.perf_counter() - t0)
    return results


def run(
    model: str = "base",
    max_seq_length: int = 128,
    batch: int = 32,
    examples: int = 512,
    rounds: int = 2,
    peers: Sequence[str] = ("hf_torch",),
    keras_python: str | None = None,
    data: str = "rotten_tomatoes",
) -> dict[str, Any]:
    """Times every implementation on the same rows; returns the result object."""
    unknown = sorted(set(peers) - set(PEERS))
    if unknown:
        raise ValueError(f"Unknown peers {unknown}; choose from {list(PEERS)}.")
    if "keras_hub" in peers and not keras_python:
        raise ValueError(
            "keras_hub runs in its own environment: pass --keras_python=PATH/bin/python "
            "(made by benchmarks/keras_env.sh), or leave keras_hub out of --peers."
        )
    if examples < batch or rounds < 1:
        raise ValueError(f"--examples={examples} must hold a batch of {batch}; --rounds >= 1.")
    rows = {"rotten_tomatoes": tokenized_rows, "synthetic": synthetic_rows}[data]
    arrays = rows(max_seq_length, examples)
    from bert_jax.data import packing
    from bert_jax.data.buckets import bucket_lengths, row_lengths

    lengths = row_lengths(arrays)
    builders: dict[str, Callable[[], Epoch]] = {
        layout: functools.partial(bert_jax_epoch, model, arrays, batch, layout, rounds + 1)
        for layout in BERT_JAX
    }
    if "hf_torch" in peers:
        import torch

        torch.set_num_threads(os.cpu_count() or 1)
        builders["hf_torch"] = lambda: hf_torch_epoch(model, arrays, batch)
    results = _time_epochs(builders, rounds)
    if "keras_hub" in peers:
        results["keras_hub"] = _keras_hub(keras_python, model, arrays, batch, rounds)
    trained = examples // batch * batch
    for r in results.values():
        r["examples_per_sec"] = trained / statistics.median(r["epoch_s"])
    best_peer = max((p for p in peers if p in results), default=None,
                    key=lambda p: results[p]["examples_per_sec"])  # fmt: skip
    ratios = {
        f"{ours}_vs_{other}": results[ours]["examples_per_sec"] / results[other]["examples_per_sec"]
        for ours in ("bucketed", "packed")
        for other in ("padded", *peers)
    }
    config = {
        "model": model,
        "max_seq_length": max_seq_length,
        "batch": batch,
        "examples": examples,
        "rounds": rounds,
        "data": data,
        "tokens_mean": float(lengths.mean()),
        "tokens_p50": float(np.median(lengths)),
        "tokens_p95": float(np.percentile(lengths, 95)),
        # What bert_jax's fine-tuning weighs before packing (config.pack_if_token_ratio_below).
        "packed_vs_bucketed_tokens": packing.token_ratio(
            lengths, bucket_lengths((), max_seq_length), batch, _examples_per_row()
        ),
        "best_peer": best_peer,
        "hardware": hardware(),
        "load_average_1m": load_average(),
    }
    return {**results, "ratios": ratios, "config": config}


def _keras_hub(python: str, model: str, arrays, batch: int, rounds: int) -> dict:
    """The KerasHub figure from its own environment (``benchmarks/keras_peer.py``)."""
    return keras_peer.measure(python, "classify", arrays, model=model, batch=batch,
                              rounds=rounds, pad_multiple=KERAS_PAD_MULTIPLE,
                              learning_rate=LEARNING_RATE, weight_decay=WEIGHT_DECAY,
                              clip_norm=CLIP_NORM)  # fmt: skip


def report(result: dict[str, Any], results_file: bool) -> None:
    c = result["config"]
    names = [n for n in (*BERT_JAX, *PEERS) if n in result]
    print(
        f"{c['model']} fine-tuning, max_seq_length {c['max_seq_length']}, batch {c['batch']}, "
        f"{c['examples']} {c['data']} rows (tokens mean {c['tokens_mean']:.1f}, median "
        f"{c['tokens_p50']:.0f}, p95 {c['tokens_p95']:.0f}; packed rows compute "
        f"{c['packed_vs_bucketed_tokens']:.2f}x the bucketed rows' tokens) on {c['hardware']} "
        f"(load {c['load_average_1m']:.2f}); median of {c['rounds']} epochs each"
    )
    rows = [
        [
            n,
            f"{result[n]['examples_per_sec']:.1f}",
            f"{result['packed']['examples_per_sec'] / result[n]['examples_per_sec']:.2f}",
            f"{result[n]['setup_and_first_epoch_s']:.1f}",
            "separate process" if n == "keras_hub" else "alternating",
        ]
        for n in names
    ]
    print(format_table(["impl", "examples/s", "packed x", "first epoch s", "timing"], rows))
    if results_file:
        eps = {n: f"{result[n]['examples_per_sec']:.1f}" if n in result else "-"
               for n in (*BERT_JAX, *PEERS)}  # fmt: skip
        vs_peer = result["ratios"].get(f"packed_vs_{c['best_peer']}", float("nan"))
        append_result(
            "Fine-tuning throughput: padded, bucketed and packed",
            ["command", "hardware", "load", "tokens mean", *[f"{n} ex/s" for n in eps],
             "packed vs padded", "packed vs best peer"],
            [f"`{command_line()}`", c["hardware"], f"{c['load_average_1m']:.2f}",
             f"{c['tokens_mean']:.1f}", *eps.values(),
             f"{result['ratios']['packed_vs_padded']:.2f}", f"{vs_peer:.2f}"],
        )  # fmt: skip


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line's arguments (``benchmarks/gpu.sh --dry_run``'s commands are checked
    with it)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="base")
    parser.add_argument("--max_seq_length", type=int, default=128)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--examples", type=int, default=512, help="training rows per epoch")
    parser.add_argument("--rounds", type=int, default=2, help="timed epochs of each")
    parser.add_argument("--peers", default="hf_torch", help=f"comma-separated subset of {PEERS}")
    parser.add_argument("--keras_python", help="the Python of KerasHub's environment")
    parser.add_argument(
        "--data", default="rotten_tomatoes", choices=["rotten_tomatoes", "synthetic"],
        help="synthetic: random ids with the snippets' length distribution (no download)",
    )  # fmt: skip
    parser.add_argument("--no_results_file", action="store_true")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse(argv)
    os.environ["USE_TF"] = "0"  # transformers: no TensorFlow import (6 s, 660 MB)
    result = run(
        args.model,
        args.max_seq_length,
        args.batch,
        args.examples,
        args.rounds,
        [p for p in args.peers.split(",") if p],
        args.keras_python,
        args.data,
    )
    return publish(result, report, results_file=not args.no_results_file)


if __name__ == "__main__":
    # Not under benchmarks.STEADY_MALLOC: a heap that never shrinks, fed a new set of shapes per
    # bucket and per implementation, grew past 20 GB at BERT-base (the OOM killer ended the run).
    main()
