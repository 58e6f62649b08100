"""Steady-state BERT pretraining step: bert_jax against Hugging Face Flax and PyTorch.

All implementations train the same model (same Hugging Face config: exact GELU, dropout off) on
the same batch (full-length rows of random ids, ``--predictions`` masked positions per row) with
MLM + NSP losses, global-norm clipping to 1.0 and AdamW, in the same dtype, in one process. After
``--warmup`` steps each (compilation included) they run one step each in turn, ``--steps`` times,
so that drift in the machine's speed hits all of them alike; every step is waited for.

* ``bert_jax``: ``BertForPreTraining`` via ``bert_jax.train.make_train_step`` with the pretraining
  objective (MLM head on the masked positions only), ``make_optimizer("adamw")``, donated state,
  on a one-device mesh (the peers use one device too).
* ``hf_flax``: transformers' ``FlaxBertForPreTraining`` with the same optax optimizer under
  ``jax.jit`` (donated params and optimizer state); its MLM head runs at every position, as the
  model does when used as documented.
* ``hf_torch``: transformers' ``BertForPreTraining`` (SDPA attention, transformers' default) with
  ``torch.optim.AdamW``; on GPU in bf16 autocast when ``--dtype=bfloat16``, on CPU in float32.
* ``keras_hub``: KerasHub's ``BertMaskedLM`` on JAX with Keras' AdamW, in KerasHub's own
  environment (``--keras_python``, made by ``benchmarks/keras_env.sh``; see
  ``benchmarks/keras_peer.py``), so it runs after the others rather than alternating with them.
  KerasHub has no NSP head: it is compared with ``bert_jax_mlm``, bert_jax's MLM-only step (the
  "No NSP" objective), which then joins the alternating steps. Its MLM head, like bert_jax's,
  runs on the masked positions only.

``--full_head`` makes bert_jax compute its MLM head at every position too (same loss, the
positions outside the mask weighted 0): the head's share of the speed-up. ``--no_prune`` makes
its last layer compute every position (``prune_last_layer=False``): that option's share.

Usage::

    python -m benchmarks.train_step --model=base --seq=128 --batch=8 --dtype=float32
    python -m benchmarks.train_step --model=tiny --seq=32 --batch=4 --steps=2 --no_results_file
    python -m benchmarks.train_step --peers=hf_flax,hf_torch,keras_hub \
        --keras_python=.venv-keras/bin/python
"""

from __future__ import annotations

import argparse
import functools
import os
import resource
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import (
    append_result,
    command_line,
    format_table,
    hardware,
    keras_peer,
    load_average,
    publish,
    run_with_steady_malloc,
)
from bert_jax.metrics import device_peak_flops, training_flops_per_token
from bert_jax.models.bert import VARIANTS, BertConfig

PEERS = ("hf_flax", "hf_torch", "keras_hub")
LEARNING_RATE, WEIGHT_DECAY, CLIP_NORM = 1e-4, 0.01, 1.0
MASK_ID = 103  # [MASK] in BERT's uncased vocabulary; any id works for timing


def pruned_flops_per_token(cfg: BertConfig, seq: int, predictions: int) -> float:
    """Training FLOPs per token that ``prune_last_layer`` skips: the last layer's query and
    output projections, feed-forward (60 H^2) and attention (12 H S) at the positions other than
    the ``predictions`` masked ones and [CLS] (its keys and values, 12 H^2, stay)."""
    H = cfg.hidden_size
    return (60 * H * H + 12 * H * seq) * (1 - (predictions + 1) / seq)


def make_batch(
    vocab_size: int, batch: int, seq: int, predictions: int, full_head: bool = False, seed: int = 0
) -> dict[str, np.ndarray]:
    """One pretraining batch of full-length rows, in bert_jax's format plus HF's ``labels``.

    ``predictions`` distinct positions per row (never [CLS]) are masked. With ``full_head`` the
    masked-position list covers every position, with weight 0 outside the mask: the loss is the
    same, but the MLM head runs on all tokens as Hugging Face's does.
    """
    if not 0 < predictions < seq:
        raise ValueError(f"--predictions={predictions} must lie in [1, seq={seq}).")
    rng = np.random.default_rng(seed)
    ids = rng.integers(1000, vocab_size, (batch, seq), dtype=np.int32)
    positions = np.sort(
        np.stack([rng.choice(np.arange(1, seq), predictions, replace=False) for _ in range(batch)]),
        axis=1,
    ).astype(np.int32)
    rows = np.arange(batch)[:, None]
    labels = np.full((batch, seq), -100, np.int64)
    labels[rows, positions] = ids[rows, positions]
    input_ids = ids.copy()
    input_ids[rows, positions] = MASK_ID
    token_type_ids = np.zeros((batch, seq), np.int32)
    token_type_ids[:, seq // 2 :] = 1
    if full_head:
        weights = (labels != -100).astype(np.float32)
        positions = np.broadcast_to(np.arange(seq, dtype=np.int32), (batch, seq)).copy()
        masked_ids = np.where(labels != -100, labels, 0).astype(np.int32)
    else:
        weights = np.ones((batch, predictions), np.float32)
        masked_ids = ids[rows, positions]
    return {
        "input_ids": input_ids,
        "token_type_ids": token_type_ids,
        "attention_mask": np.ones((batch, seq), np.int32),
        "masked_positions": positions,
        "masked_ids": masked_ids,
        "masked_weights": weights,
        "next_sentence_label": rng.integers(0, 2, batch, dtype=np.int32),
        "labels": labels,
    }


def hf_config(cfg: BertConfig):
    """The transformers ``BertConfig`` of the same model (dropout off)."""
    import transformers

    from bert_jax.interop import hf_config_fields

    return transformers.BertConfig(**hf_config_fields(cfg))


# Each builder returns step(): one training step, waited for.
Step = Callable[[], None]


def bert_jax_step(cfg: BertConfig, batch: dict[str, np.ndarray], use_nsp: bool = True) -> Step:
    from bert_jax import optim
    from bert_jax.models.heads import BertForPreTraining
    from bert_jax.objectives import loss_denominators, make_loss_fn
    from bert_jax.sharding import DEFAULT_RULES, make_mesh
    from bert_jax.train import create_train_state, global_batch, make_train_step

    mesh = make_mesh((1, 1, 1), jax.devices()[:1])
    model = BertForPreTraining(cfg)
    tx = optim.make_optimizer(
        "adamw", LEARNING_RATE, weight_decay=WEIGHT_DECAY, clip_norm=CLIP_NORM
    )
    dummy = jnp.zeros((1, batch["input_ids"].shape[1]), jnp.int32)

    def init_params(rng):
        return model.init(rng, dummy, masked_positions=dummy[:, :1])["params"]

    state, shardings = create_train_state(init_params, tx, mesh, DEFAULT_RULES, seed=0)
    train_step = make_train_step(
        make_loss_fn(model, use_nsp=use_nsp), loss_denominators, tx, shardings, mesh, DEFAULT_RULES
    )
    inputs = global_batch({k: v for k, v in batch.items() if k != "labels"}, mesh)

    def step():
        nonlocal state
        state, metrics = train_step(state, inputs)
        jax.block_until_ready((state, metrics))

    return step


def hf_flax_step(cfg: BertConfig, batch: dict[str, np.ndarray]) -> Step:
    import optax
    from transformers import FlaxBertForPreTraining

    from bert_jax import optim

    device = jax.devices()[0]
    model = FlaxBertForPreTraining(hf_config(cfg), seed=0, dtype=cfg.compute_dtype)
    # The same optax optimizer as bert_jax: decay_mask reads leaf names (bias/scale are not
    # decayed), which HF's Flax parameters share.
    tx = optim.make_optimizer(
        "adamw", LEARNING_RATE, weight_decay=WEIGHT_DECAY, clip_norm=CLIP_NORM
    )
    params = jax.device_put(model.params, device)
    # Committed to the device like the step's outputs: an uncommitted leaf (optax's step count)
    # would make the second call compile again.
    opt_state = jax.device_put(tx.init(params), device)
    inputs = jax.device_put(
        {k: batch[k] for k in ("input_ids", "token_type_ids", "attention_mask", "labels")}
        | {"next_sentence_label": batch["next_sentence_label"]},
        device,
    )

    def loss_fn(params, b):
        out = model(
            b["input_ids"], b["attention_mask"], b["token_type_ids"], params=params, train=False
        )
        weights = b["labels"] != -100
        mlm = optax.softmax_cross_entropy_with_integer_labels(
            out.prediction_logits.astype(jnp.float32), jnp.where(weights, b["labels"], 0)
        )
        nsp = optax.softmax_cross_entropy_with_integer_labels(
            out.seq_relationship_logits.astype(jnp.float32), b["next_sentence_label"]
        )
        return (mlm * weights).sum() / weights.sum() + nsp.mean()

    def train_step(params, opt_state, b):
        loss, grads = jax.value_and_grad(loss_fn)(params, b)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    train_step = jax.jit(train_step, donate_argnums=(0, 1))

    def step():
        nonlocal params, opt_state
        params, opt_state, loss = train_step(params, opt_state, inputs)
        jax.block_until_ready((params, opt_state, loss))

    return step


def hf_torch_step(cfg: BertConfig, batch: dict[str, np.ndarray]) -> Step:
    import contextlib

    import torch
    from transformers import BertForPreTraining

    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    torch.manual_seed(0)
    model = BertForPreTraining._from_config(hf_config(cfg), attn_implementation="sdpa")
    model.to(device).train()
    # Transformers' Trainer convention: no weight decay on biases and LayerNorm weights.
    no_decay = [p for n, p in model.named_parameters() if "bias" in n or "LayerNorm" in n]
    decay = [p for n, p in model.named_parameters() if not ("bias" in n or "LayerNorm" in n)]
    opt = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": WEIGHT_DECAY},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=LEARNING_RATE,
    )
    inputs = {
        k: torch.as_tensor(batch[k], dtype=torch.long, device=device)
        for k in ("input_ids", "token_type_ids", "attention_mask", "labels", "next_sentence_label")
    }
    # bf16 autocast only on GPU; a CPU run is float32 whatever --dtype says (see torch_dtype).
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16)
        if cuda and cfg.dtype == "bfloat16"
        else contextlib.nullcontext()
    )

    def step():
        opt.zero_grad(set_to_none=True)
        with autocast:
            loss = model(**inputs).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP_NORM)
        opt.step()
        if cuda:
            torch.cuda.synchronize()

    return step


BUILDERS: dict[str, Callable[[BertConfig, dict[str, np.ndarray]], Step]] = {
    "bert_jax": bert_jax_step,
    "bert_jax_mlm": functools.partial(bert_jax_step, use_nsp=False),  # against keras_hub
    "hf_flax": hf_flax_step,
    "hf_torch": hf_torch_step,
}


class MatmulProbe:
    """This machine's FLOP/s on the matmuls of one BERT layer's forward pass (query, key, value
    and output ``[T, H] x [H, H]``, then ``[T, H] x [H, 4H]`` and ``[T, 4H] x [4H, H]``) under XLA
    in ``dtype``: the rate the model's matmuls can reach here, measured, not the datasheet's.

    Each call runs every shape once and returns the seconds; the benchmarks call it between their
    steps, alternating, so that the host's drift (this 2-core host's matmul rate moves by 20%
    from minute to minute) hits the steps and the rate alike. ``flops / median(seconds)`` is the
    rate.

    Usage::

        probe = MatmulProbe(batch * seq, 768, 3072, "float32")
        rate = probe.flops / statistics.median(probe() for _ in range(5))
    """

    def __init__(self, tokens: int, hidden: int, intermediate: int, dtype: str):
        shapes = [(tokens, hidden, hidden)] * 4 + [
            (tokens, hidden, intermediate),
            (tokens, intermediate, hidden),
        ]
        rng = np.random.default_rng(0)
        self._operands = [
            (jnp.asarray(rng.standard_normal((m, k)), dtype),
             jnp.asarray(rng.standard_normal((k, n)), dtype))
            for m, k, n in shapes
        ]  # fmt: skip
        self.flops = sum(2.0 * m * k * n for m, k, n in shapes)
        self._matmul = jax.jit(jnp.matmul)
        self()  # compiles each shape

    def __call__(self) -> float:
        t0 = time.perf_counter()
        for a, b in self._operands:
            self._matmul(a, b).block_until_ready()
        return time.perf_counter() - t0


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def _torch_gpu() -> tuple[bool, str | None]:
    import torch

    return torch.cuda.is_available(), (
        torch.cuda.get_device_name() if torch.cuda.is_available() else None
    )


def run(
    model: str = "base",
    seq: int = 128,
    batch: int = 8,
    dtype: str = "float32",
    steps: int = 5,
    warmup: int = 2,
    peers: Sequence[str] = ("hf_flax", "hf_torch"),
    predictions: int = 20,
    full_head: bool = False,
    scan_layers: bool = False,
    remat: str = "none",
    attention_impl: str | None = "xla",
    prune_last_layer: bool = True,
    keras_python: str | None = None,
) -> dict[str, Any]:
    """Times every implementation; returns the result object that ``main`` prints as JSON."""
    unknown = sorted(set(peers) - set(PEERS))
    if unknown:
        raise ValueError(f"Unknown peers {unknown}; choose from {list(PEERS)}.")
    if "keras_hub" in peers and not keras_python:
        raise ValueError(
            "keras_hub runs in its own environment: pass --keras_python=PATH/bin/python "
            "(made by benchmarks/keras_env.sh), or leave keras_hub out of --peers."
        )
    if steps < 1 or warmup < 1:
        raise ValueError(
            f"--steps={steps} and --warmup={warmup} must be >= 1 (the first compiles)."
        )
    cfg = BertConfig.from_name(
        model,
        hidden_dropout=0.0,
        attention_dropout=0.0,
        dtype=dtype,
        hidden_act="gelu",
        scan_layers=scan_layers,
        remat=remat,
        attention_impl=attention_impl,
        prune_last_layer=prune_last_layer,
    )
    if seq > cfg.max_position_embeddings:
        raise ValueError(
            f"--seq={seq} exceeds max_position_embeddings={cfg.max_position_embeddings}."
        )
    data = make_batch(cfg.vocab_size, batch, seq, predictions, full_head)
    # In this process, alternating; keras_hub runs afterwards in its own environment.
    names = ["bert_jax", *["bert_jax_mlm"] * ("keras_hub" in peers)]
    names += [p for p in PEERS if p in peers and p != "keras_hub"]
    probe = MatmulProbe(batch * seq, cfg.hidden_size, cfg.intermediate_size, dtype)

    results: dict[str, dict[str, Any]] = {}
    steps_fns: dict[str, Step] = {}
    for name in names:  # build, then warm up (the first call compiles)
        step, setup_s = _timed(lambda name=name: BUILDERS[name](cfg, data))
        _, first_s = _timed(step)
        for _ in range(warmup - 1):
            step()
        steps_fns[name] = step
        results[name] = {"setup_s": setup_s, "first_step_s": first_s}
        if name != "hf_torch":
            results[name]["compile_s"] = first_s
    times: dict[str, list[float]] = {name: [] for name in names}
    matmul_times = []
    for _ in range(steps):  # round-robin, so that drift hits every implementation alike
        for name in names:
            times[name].append(_timed(steps_fns[name])[1])
        matmul_times.append(probe())
    matmul_flops = probe.flops / statistics.median(matmul_times)

    if "keras_hub" in peers:
        keras = keras_peer.measure(keras_python, "mlm", {
            "token_ids": data["input_ids"], "segment_ids": data["token_type_ids"],
            "padding_mask": data["attention_mask"].astype(bool),
            "mask_positions": data["masked_positions"], "mask_ids": data["masked_ids"],
            "mask_weights": data["masked_weights"],
        }, model=model, dtype=dtype, steps=steps, warmup=warmup, learning_rate=LEARNING_RATE,
           weight_decay=WEIGHT_DECAY, clip_norm=CLIP_NORM)  # fmt: skip
        results["keras_hub"] = {k: keras[k] for k in ("setup_s", "compile_s")}
        times["keras_hub"] = keras["step_times_s"]
        names.append("keras_hub")

    tokens = batch * seq  # every row is full length
    model_flops = training_flops_per_token(cfg, seq, predictions / seq) * tokens
    head_everywhere = training_flops_per_token(cfg, seq, 1.0) * tokens
    pruned = prune_last_layer and not full_head
    bert_jax_flops = model_flops - pruned * pruned_flops_per_token(cfg, seq, predictions) * tokens
    peak = device_peak_flops()
    for name in names:
        t = statistics.median(times[name])
        computed = {"bert_jax": bert_jax_flops, "bert_jax_mlm": bert_jax_flops,
                    "keras_hub": model_flops}.get(name, head_everywhere)  # fmt: skip
        if full_head and name.startswith("bert_jax"):
            computed = head_everywhere
        results[name].update(
            step_time_s=t,
            step_times_s=times[name],
            tokens_per_sec=tokens / t,
            # Model FLOPs count the MLM head on the masked positions only (REFERENCE.md section 5),
            # so tflops and mfu compare implementations by useful work; hardware_tflops counts
            # what each actually computes.
            tflops=model_flops / t / 1e12,
            hardware_tflops=computed / t / 1e12,
            mfu=model_flops / t / peak if peak else None,
            # The step's model FLOP/s as a fraction of what this machine's matmuls reach.
            of_matmul_rate=model_flops / t / matmul_flops,
        )
    # KerasHub has no NSP: it is compared with bert_jax's MLM-only step.
    ours = {p: "bert_jax_mlm" if p == "keras_hub" else "bert_jax" for p in PEERS if p in names}
    ratios = {
        f"vs_{p}": results[mine]["tokens_per_sec"] / results[p]["tokens_per_sec"]
        for p, mine in ours.items()
    }

    accelerator = None if jax.devices()[0].platform == "cpu" else jax.devices()[0].device_kind
    memory: dict[str, Any] = {
        # Linux reports kilobytes; the whole process (all implementations together).
        "process_max_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }
    if accelerator:
        # One allocator for both JAX implementations: the peak is theirs together.
        stats = jax.devices()[0].memory_stats() or {}
        memory["jax_peak_bytes_in_use"] = stats.get("peak_bytes_in_use")
    if "keras_hub" in names:
        memory["keras_hub_process_max_rss_bytes"] = keras["max_rss_bytes"]
    torch_cuda = False
    if "hf_torch" in names:
        torch_cuda, torch_gpu = _torch_gpu()
        if torch_cuda:
            import torch

            memory["torch_max_memory_allocated_bytes"] = torch.cuda.max_memory_allocated()
            accelerator = accelerator or torch_gpu
    config = {
        "model": model,
        "seq": seq,
        "batch": batch,
        "dtype": dtype,
        "torch_dtype": "bfloat16 autocast" if torch_cuda and dtype == "bfloat16" else "float32",
        "predictions": predictions,
        "full_head": full_head,
        "prune_last_layer": pruned,
        "scan_layers": scan_layers,
        "remat": remat,
        "attention_impl": attention_impl,
        "steps": steps,
        "warmup": warmup,
        "tokens_per_step": tokens,
        "model_flops_per_token": model_flops / tokens,
        "matmul_tflops": matmul_flops / 1e12,
        "jax_backend": jax.default_backend(),
        "hardware": hardware(accelerator),
        "load_average_1m": load_average(),
        "memory": memory,
    }
    return {**results, "ratios": ratios, "config": config}


def _fmt(x: float | None, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def report(result: dict[str, Any], results_file: bool) -> None:
    names = [n for n in (*BUILDERS, "keras_hub") if n in result]
    rows = [
        [
            name,
            _fmt(r["step_time_s"], ".3f"),
            _fmt(r["tokens_per_sec"], ",.0f"),
            _fmt(result["ratios"].get(f"vs_{name}"), ".2f"),
            _fmt(r["tflops"], ".3f"),
            _fmt(r["hardware_tflops"], ".3f"),
            _fmt(r["mfu"], ".1%"),
            _fmt(r["of_matmul_rate"], ".1%"),
            _fmt(r.get("compile_s"), ".1f"),
        ]
        for name, r in ((n, result[n]) for n in names)
    ]
    c = result["config"]
    print(
        f"{c['model']} seq {c['seq']} batch {c['batch']} {c['dtype']} on {c['hardware']} "
        f"(load {c['load_average_1m']:.2f}); median of {c['steps']} alternating steps; "
        f"this machine's {c['dtype']} matmuls (one layer's shapes) reach "
        f"{c['matmul_tflops']:.3f} TFLOP/s"
    )
    header = [
        "impl",
        "step s",
        "tokens/s",
        "bert_jax x",
        "TFLOP/s",
        "hw TFLOP/s",
        "MFU",
        "of matmul rate",
        "compile s",
    ]
    print(format_table(header, rows))
    if "keras_hub" in result:
        print("keras_hub: KerasHub's BertMaskedLM (no NSP head), in its own environment after "
              "the others; its 'bert_jax x' is bert_jax_mlm's (MLM only) over it.")  # fmt: skip
    print(f"memory: {c['memory']}")
    if results_file:
        tps = {
            n: _fmt(result[n]["tokens_per_sec"], ".0f") if n in result else "-"
            for n in ("bert_jax", "hf_flax", "hf_torch")
        }
        append_result(
            "Training step",
            [
                "command",
                "hardware",
                "load",
                "bert_jax tok/s",
                "hf_flax tok/s",
                "hf_torch tok/s",
                "vs hf_flax",
                "vs hf_torch",
                "bert_jax TFLOP/s",
                "MFU",
                "matmul TFLOP/s",
                "of matmul rate",
                "compile s",
            ],
            [
                f"`{command_line()}`",
                c["hardware"],
                f"{c['load_average_1m']:.2f}",
                *tps.values(),
                _fmt(result["ratios"].get("vs_hf_flax"), ".2f"),
                _fmt(result["ratios"].get("vs_hf_torch"), ".2f"),
                _fmt(result["bert_jax"]["tflops"], ".3f"),
                _fmt(result["bert_jax"]["mfu"], ".1%"),
                _fmt(c["matmul_tflops"], ".3f"),
                _fmt(result["bert_jax"]["of_matmul_rate"], ".1%"),
                _fmt(result["bert_jax"]["compile_s"], ".1f"),
            ],
        )
        if "keras_hub" in result:
            _append_keras_result(result)


def _append_keras_result(result: dict[str, Any]) -> None:
    c, mlm, keras = result["config"], result["bert_jax_mlm"], result["keras_hub"]
    append_result(
        "Training step, MLM only: bert_jax and KerasHub",
        ["command", "hardware", "load", "bert_jax_mlm tok/s", "keras_hub tok/s", "vs keras_hub",
         "bert_jax_mlm compile s", "keras_hub compile s", "keras_hub RSS GB"],
        [f"`{command_line()}`", c["hardware"], f"{c['load_average_1m']:.2f}",
         f"{mlm['tokens_per_sec']:.0f}", f"{keras['tokens_per_sec']:.0f}",
         f"{result['ratios']['vs_keras_hub']:.2f}", f"{mlm['compile_s']:.1f}",
         f"{keras['compile_s']:.1f}",
         f"{c['memory']['keras_hub_process_max_rss_bytes'] / 1e9:.1f}"],
    )  # fmt: skip


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line's arguments (``benchmarks/gpu.sh --dry_run``'s commands are checked
    with it)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="base", choices=list(VARIANTS))
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--steps", type=int, default=5, help="timed steps of each implementation")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps (the first compiles)")
    parser.add_argument(
        "--peers",
        default="hf_flax,hf_torch",
        help=f"comma-separated subset of {list(PEERS)}, or ''",
    )
    parser.add_argument("--predictions", type=int, default=20, help="masked positions per row")
    parser.add_argument("--full_head", action="store_true", help="bert_jax MLM head everywhere")
    parser.add_argument(
        "--no_prune", action="store_true", help="bert_jax: last layer at every position"
    )
    parser.add_argument("--scan_layers", action="store_true", help="bert_jax: nn.scan the layers")
    parser.add_argument("--remat", default="none", choices=["none", "full", "dots"])
    parser.add_argument(
        "--attention_impl", default="xla", help="bert_jax: xla, cudnn (GPU) or auto"
    )
    parser.add_argument("--keras_python", help="keras_hub: the Python of KerasHub's environment")
    parser.add_argument("--no_results_file", action="store_true")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse(argv)
    peers = [p for p in args.peers.split(",") if p]
    # transformers decides which frameworks exist when first imported: Flax on for the Flax peer
    # (the test suite's environment turns it off), TensorFlow off (6 s and 660 MB to import).
    os.environ["USE_TF"] = "0"
    # On a GPU, JAX would otherwise take 75% of its memory up front and leave torch too little.
    # Read when JAX starts its backend, which nothing has done yet.
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    if "hf_flax" in peers:
        os.environ["USE_FLAX"] = "1"
    if "hf_torch" in peers:
        import torch

        torch.set_num_threads(os.cpu_count() or 1)
    result = run(
        args.model,
        args.seq,
        args.batch,
        args.dtype,
        args.steps,
        args.warmup,
        peers,
        args.predictions,
        args.full_head,
        args.scan_layers,
        args.remat,
        None if args.attention_impl == "auto" else args.attention_impl,
        not args.no_prune,
        args.keras_python,
    )
    return publish(result, report, results_file=not args.no_results_file)


if __name__ == "__main__":
    run_with_steady_malloc()
    main()
