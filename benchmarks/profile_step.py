"""Where bert_jax's pretraining step spends its time, set against this machine's matmul rate.

``benchmarks.train_step`` reports the step's model FLOP/s as a fraction of what this machine's
matmuls reach ("of matmul rate"). This benchmark says what the rest of the step is: it traces a
few steps with ``jax.profiler`` and sums every XLA op's time, grouped by what the op computes
(read from the op's source metadata in the compiled HLO, which XLA dumps for the step):

* matmuls, split into the encoder's dense layers, attention's two batched products and the tied
  MLM decoder, with their FLOPs (from the HLO's dot shapes) and the rate they ran at in the step;
* attention's softmax and mask, LayerNorm, GELU, the loss and its metrics, the optimizer
  (clipping, AdamW), layout copies and transposes, and the remaining elementwise work.

So the report shows what keeps the step below the matmul rate: matmuls running slower inside the
step than alone, or time spent outside them. It reads XLA:CPU's trace events (each names its HLO
op); on accelerators use their own profilers.

Usage::

    python -m benchmarks.profile_step --model=base --seq=128 --batch=8
    python -m benchmarks.profile_step --model=tiny --seq=32 --batch=4 --no_results_file
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import math
import os
import re
import statistics
import tempfile
import time
from collections.abc import Sequence
from typing import Any

from benchmarks import (
    append_result,
    command_line,
    format_table,
    hardware,
    load_average,
    publish,
    run_with_steady_malloc,
)

# The traced function's name in XLA: bert_jax.train.make_train_step jits a function `step`.
MODULE = "jit_step"
MATMULS = ("dense matmuls", "attention matmuls", "MLM decoder matmuls")
CATEGORIES = (
    *MATMULS,
    "attention softmax/mask",
    "LayerNorm",
    "GELU",
    "loss and metrics",
    "optimizer (clip, AdamW)",
    "layout copies",
    "other elementwise",
)

_COMPUTATION = re.compile(r"^(?:ENTRY )?%(\S+) .*\{$")
# A tuple-shaped result, e.g. argmax's (f32[8,20], s32[8,20]), has spaces in its shape.
_INSTRUCTION = re.compile(r"^\s+(?:ROOT )?%(\S+) = (\([^)]*\)|\S+) ([\w-]+)\((.*)$")


def _dims(shape: str) -> list[int]:
    """``f32[8,128,768]{2,1,0}`` -> [8, 128, 768]."""
    inner = shape[shape.index("[") + 1 : shape.index("]")] if "[" in shape else ""
    return [int(d) for d in inner.split(",") if d]


def parse_hlo(text: str) -> dict[str, dict[str, Any]]:
    """The compiled module's instructions by name: ``opcode``, ``op_name`` (the JAX source op
    from the metadata) and ``dot_flops``, the FLOPs of the dots it computes (2 x output size x
    contraction size), those inside the computations it calls included."""
    computations: dict[str, dict[str, dict[str, Any]]] = {}
    current: dict[str, dict[str, Any]] = {}
    for line in text.splitlines():
        if header := _COMPUTATION.match(line):
            current = computations.setdefault(header.group(1), {})
        elif inst := _INSTRUCTION.match(line):
            name, shape, opcode, rest = inst.groups()
            op_name = re.search(r'op_name="([^"]*)"', rest)
            calls = re.search(r"calls=%([\w.\-]+)", rest)
            contracting = re.search(r"lhs_contracting_dims=\{([\d,]*)\}", rest)
            current[name] = {
                "opcode": opcode,
                "shape": shape,
                "op_name": op_name.group(1) if op_name else "",
                "calls": calls.group(1) if calls else None,
                "contracting": [int(d) for d in contracting.group(1).split(",") if d]
                if contracting
                else [],
                "operands": re.findall(r"%([\w.\-]+)", rest.split(")", 1)[0]),
            }

    def flops(inst: dict[str, Any], computation: dict[str, dict[str, Any]]) -> float:
        if inst["opcode"] == "dot":
            lhs = _dims(computation[inst["operands"][0]]["shape"])
            return (
                2.0
                * math.prod(_dims(inst["shape"]))
                * math.prod(lhs[d] for d in inst["contracting"])
            )
        called = computations.get(inst["calls"] or "", {})
        return sum(flops(i, called) for i in called.values())

    return {
        name: {**inst, "dot_flops": flops(inst, computation)}
        for computation in computations.values()
        for name, inst in computation.items()
    }


def categorize(hlo_op: str, inst: dict[str, Any]) -> str:
    """What an executed op computes, from its dots and the JAX op it came from."""
    source = inst["op_name"]
    if inst["dot_flops"]:
        if "attend" in source or "mlm_head" in source:
            return "MLM decoder matmuls"
        # Attention's two products are the einsums (BTNH,BSNH->BNTS) of dot_product_attention.
        if "attention" in source and ("->" in source or "dot_product_attention" in source):
            return "attention matmuls"
        return "dense matmuls"
    if "softmax" in source or "dot_product_attention" in source or "->" in source:
        return "attention softmax/mask"
    if "layer_norm" in source:
        return "LayerNorm"
    if "gelu" in source or "/erf" in source:
        return "GELU"
    if "jvp()" in source or "transpose(jvp())" in source:
        return "loss and metrics"  # inside the differentiated loss function, outside the model
    if source and "jvp(" not in source and "transpose(" not in source:
        return "optimizer (clip, AdamW)"  # after the forward and backward pass
    if inst["opcode"] in ("copy", "transpose") or hlo_op.startswith(("copy", "transpose")):
        return "layout copies"
    return "other elementwise"


def op_times(trace_dir: str, steps: int) -> dict[str, float]:
    """Seconds per step of every op of the step's module, summed over threads, from the
    Perfetto trace that ``jax.profiler.trace(create_perfetto_trace=True)`` wrote."""
    (path,) = glob.glob(os.path.join(trace_dir, "**", "perfetto_trace.json.gz"), recursive=True)
    with gzip.open(path) as f:
        events = json.load(f)["traceEvents"]
    seconds: collections.Counter[str] = collections.Counter()
    for e in events:
        args = e.get("args", {})
        if e.get("ph") == "X" and args.get("hlo_module") == MODULE:
            seconds[args["hlo_op"]] += e["dur"] * 1e-6 / steps  # microseconds
    return dict(seconds)


def _compiled_step_hlo(dump_dir: str) -> str:
    candidates = glob.glob(os.path.join(dump_dir, f"*.{MODULE}.cpu_after_optimizations.txt"))
    if not candidates:
        raise RuntimeError(f"XLA dumped no optimized HLO for {MODULE} into {dump_dir}.")
    with open(max(candidates, key=os.path.getsize)) as f:
        return f.read()


def _profile(
    work: str, model: str, seq: int, batch: int, steps: int, predictions: int
) -> dict[str, Any]:
    """Times ``steps`` steps, then traces as many, with XLA's files in the folder ``work``."""
    dump_dir = os.path.join(work, "hlo")
    # Read when JAX starts its backend, which nothing in this process has done yet; given back
    # once the step has compiled, so that the results table shows the command as it was typed.
    flags = os.environ.get("XLA_FLAGS")
    os.environ["XLA_FLAGS"] = " ".join(
        [flags or "", f"--xla_dump_to={dump_dir}", "--xla_dump_hlo_as_text",
         f"--xla_dump_hlo_module_re={MODULE}"]
    )  # fmt: skip
    import jax

    from benchmarks.train_step import MatmulProbe, bert_jax_step, make_batch
    from bert_jax.metrics import training_flops_per_token
    from bert_jax.models.bert import BertConfig

    cfg = BertConfig.from_name(
        model, hidden_dropout=0.0, attention_dropout=0.0, hidden_act="gelu", attention_impl="xla"
    )
    step = bert_jax_step(cfg, make_batch(cfg.vocab_size, batch, seq, predictions))
    step()  # compiles
    step()
    if flags is None:
        del os.environ["XLA_FLAGS"]
    else:
        os.environ["XLA_FLAGS"] = flags
    probe = MatmulProbe(batch * seq, cfg.hidden_size, cfg.intermediate_size, "float32")
    step_times, matmul_times = [], []
    for _ in range(steps):  # alternating, so that the host's drift hits both alike
        t0 = time.perf_counter()
        step()
        step_times.append(time.perf_counter() - t0)
        matmul_times.append(probe())
    trace_dir = os.path.join(work, "trace")
    with jax.profiler.trace(trace_dir, create_perfetto_trace=True):
        for _ in range(steps):
            step()
    return {
        "step_s": statistics.median(step_times),
        "matmul_flops": probe.flops / statistics.median(matmul_times),
        "model_flops": training_flops_per_token(cfg, seq, predictions / seq) * batch * seq,
        "instructions": parse_hlo(_compiled_step_hlo(dump_dir)),
        "times": op_times(trace_dir, steps),
    }


def run(
    model: str = "base", seq: int = 128, batch: int = 8, steps: int = 3, predictions: int = 20
) -> dict[str, Any]:
    """Profiles ``steps`` steps of bert_jax's pretraining step; returns the result object."""
    with tempfile.TemporaryDirectory(prefix="profile_step_") as work:
        profile = _profile(work, model, seq, batch, steps, predictions)
    instructions, times = profile["instructions"], profile["times"]
    step_s, model_flops = profile["step_s"], profile["model_flops"]
    unknown = {"opcode": "", "op_name": "", "dot_flops": 0.0}
    category = {name: categorize(name, instructions.get(name, unknown)) for name in times}

    by_category = {c: {"seconds": 0.0, "dot_flops": 0.0, "ops": 0} for c in CATEGORIES}
    for hlo_op, seconds in times.items():
        entry = by_category[category[hlo_op]]
        entry["seconds"] += seconds
        entry["dot_flops"] += instructions.get(hlo_op, unknown)["dot_flops"]
        entry["ops"] += 1
    op_seconds = sum(times.values())
    matmul_seconds = sum(by_category[c]["seconds"] for c in MATMULS)
    matmul_dot_flops = sum(by_category[c]["dot_flops"] for c in MATMULS)
    top = sorted(times.items(), key=lambda kv: -kv[1])[:12]
    return {
        "config": {
            "model": model,
            "seq": seq,
            "batch": batch,
            "steps": steps,
            "hardware": hardware(),
            "load_average_1m": load_average(),
            "matmul_tflops": profile["matmul_flops"] / 1e12,
        },
        "step_time_s": step_s,
        "op_time_s": op_seconds,
        "of_matmul_rate": model_flops / step_s / profile["matmul_flops"],
        "matmul_share": matmul_seconds / op_seconds,
        "in_step_matmul_tflops": matmul_dot_flops / matmul_seconds / 1e12,
        "computed_over_model_flops": matmul_dot_flops / model_flops,
        "categories": {
            c: {**v, "share": v["seconds"] / op_seconds} for c, v in by_category.items()
        },
        "top_ops": [
            {
                "hlo_op": name,
                "seconds": s,
                "category": category[name],
                "source": instructions.get(name, unknown)["op_name"],
            }
            for name, s in top
        ],  # fmt: skip
    }


def report(result: dict[str, Any], results_file: bool) -> None:
    c = result["config"]
    print(
        f"{c['model']} seq {c['seq']} batch {c['batch']} float32 on {c['hardware']} "
        f"(load {c['load_average_1m']:.2f}): step {result['step_time_s'] * 1e3:.0f} ms (median of "
        f"{c['steps']}), {result['of_matmul_rate']:.1%} of this machine's matmul rate "
        f"({c['matmul_tflops']:.3f} TFLOP/s alone)"
    )
    rows = [
        [name, f"{v['seconds'] * 1e3:.1f}", f"{v['share']:.1%}", v["ops"],
         f"{v['dot_flops'] / v['seconds'] / 1e12:.3f}" if v["dot_flops"] else "-"]
        for name, v in result["categories"].items()
    ]  # fmt: skip
    print(format_table(["ops", "ms/step", "share", "XLA ops", "TFLOP/s"], rows))
    print(
        f"op time {result['op_time_s'] * 1e3:.0f} ms/step (summed over threads); matmuls "
        f"{result['matmul_share']:.1%} of it at {result['in_step_matmul_tflops']:.3f} TFLOP/s; "
        f"they compute {result['computed_over_model_flops']:.2f}x the model FLOPs"
    )
    print("slowest ops:")
    print(format_table(
        ["op", "ms/step", "ops", "source"],
        [[t["hlo_op"], f"{t['seconds'] * 1e3:.1f}", t["category"], t["source"][-70:]]
         for t in result["top_ops"]],
    ))  # fmt: skip
    if results_file:
        shares = result["categories"]
        append_result(
            "Training step profile",
            ["command", "hardware", "load", "step ms", "of matmul rate", "matmul share",
             "in-step matmul TFLOP/s", "matmul TFLOP/s alone", "softmax/mask", "LayerNorm",
             "GELU", "loss/metrics", "optimizer", "copies", "other"],
            [f"`{command_line()}`", c["hardware"], f"{c['load_average_1m']:.2f}",
             f"{result['step_time_s'] * 1e3:.0f}", f"{result['of_matmul_rate']:.1%}",
             f"{result['matmul_share']:.1%}", f"{result['in_step_matmul_tflops']:.3f}",
             f"{c['matmul_tflops']:.3f}",
             *(f"{shares[k]['share']:.1%}" for k in CATEGORIES[len(MATMULS):])],
        )  # fmt: skip


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="base")
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=3, help="timed steps, then as many traced")
    parser.add_argument("--predictions", type=int, default=20, help="masked positions per row")
    parser.add_argument("--no_results_file", action="store_true")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse(argv)
    result = run(args.model, args.seq, args.batch, args.steps, args.predictions)
    return publish(result, report, results_file=not args.no_results_file)


if __name__ == "__main__":
    run_with_steady_malloc()
    main()
