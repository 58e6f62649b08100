"""Useful (real) tokens per second of the pretraining step on packed rows against padded rows.

One synthetic corpus is prepared twice at ``--seq``: one sentence pair per row, and up to
``--max_pairs_per_row`` pairs packed per row (``prepare --max_pairs_per_row``). The same model's
training step is then timed on batches of each, alternating, and each step's time is charged with
the mean number of real tokens of that kind of batch: the ratio is what packing buys end to end.

Usage::

    python -m benchmarks.packing --model=small --seq=256 --batch=16
"""

from __future__ import annotations

import argparse
import statistics
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
from benchmarks.input_pipeline import default_data_dir, prepared_corpus
from benchmarks.train_step import bert_jax_step
from bert_jax.models.bert import BertConfig

TARGET_RATIO = 1.8  # the target for data with a BERT-like length spread


def _batches(data_dir: str, seq: int, batch: int, max_pairs: int, predictions: int, n: int):
    from bert_jax.data.pipeline import make_pretraining_loader

    loader = make_pretraining_loader(
        data_dir,
        "train",
        seq_len=seq,
        global_batch_size=batch,
        seed=0,
        max_predictions=predictions,
        max_pairs_per_row=max_pairs,
        process_index=0,
        process_count=1,
    )
    return [next(loader) for _ in range(n)]


def run(
    model: str = "small",
    seq: int = 256,
    batch: int = 16,
    max_pairs_per_row: int = 3,
    documents: int = 2000,
    steps: int = 5,
    warmup: int = 2,
    spm_vocab_size: int = 1000,
) -> dict[str, Any]:
    cfg = BertConfig.from_name(
        model,
        vocab_size=spm_vocab_size,
        max_position_embeddings=seq,
        hidden_dropout=0.0,
        attention_dropout=0.0,
    )
    predictions = round(seq * 0.15)
    kinds = {"padded": 1, "packed": max_pairs_per_row}
    steps_fns, tokens, fill = {}, {}, {}
    for kind, pairs in kinds.items():
        data_dir = default_data_dir(documents, seq, pairs, spm_vocab_size)
        prepared_corpus(data_dir, documents, seq, pairs, spm_vocab_size)
        # Packed rows hold several pairs: give them the masked-LM slots of all of them.
        batches = _batches(data_dir, seq, batch, pairs, predictions * pairs, n=8)
        tokens[kind] = statistics.mean(int(b["attention_mask"].sum()) for b in batches)
        fill[kind] = tokens[kind] / (batch * seq)
        steps_fns[kind] = bert_jax_step(cfg, batches[0])
    times: dict[str, list[float]] = {kind: [] for kind in kinds}
    for i in range(warmup + steps):  # alternating, so that drift hits both alike
        for kind, step in steps_fns.items():
            t0 = time.perf_counter()
            step()
            if i >= warmup:
                times[kind].append(time.perf_counter() - t0)
    result: dict[str, Any] = {}
    for kind in kinds:
        step_time = statistics.median(times[kind])
        result[kind] = {
            "useful_tokens_per_sec": tokens[kind] / step_time,
            "step_time_s": step_time,
            "fill": fill[kind],
        }
    ratio = result["packed"]["useful_tokens_per_sec"] / result["padded"]["useful_tokens_per_sec"]
    result["ratio"] = ratio
    result["config"] = {
        "model": model,
        "seq": seq,
        "batch": batch,
        "max_pairs_per_row": max_pairs_per_row,
        "documents": documents,
        "steps": steps,
        "hardware": hardware(),
        "load_average_1m": load_average(),
    }
    return result


def report(result: dict[str, Any], results_file: bool) -> None:
    c = result["config"]
    header = ["rows", "fill", "step s", "useful tok/s"]
    rows = [
        [kind, f"{r['fill']:.2f}", f"{r['step_time_s']:.3f}", f"{r['useful_tokens_per_sec']:,.0f}"]
        for kind, r in ((k, result[k]) for k in ("padded", "packed"))
    ]
    print(f"{c['model']} seq {c['seq']} batch {c['batch']} on {c['hardware']} "
          f"(load {c['load_average_1m']:.2f})")  # fmt: skip
    print(format_table(header, rows))
    print(f"packed / padded useful tokens/s: {result['ratio']:.2f}x (target {TARGET_RATIO}x)")
    if results_file:
        append_result(
            "Packing",
            ["command", "hardware", "load", "fill padded", "fill packed", "useful tok/s ratio"],
            [
                f"`{command_line()}`",
                c["hardware"],
                f"{c['load_average_1m']:.2f}",
                rows[0][1],
                rows[1][1],
                f"{result['ratio']:.2f}",
            ],
        )


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="small")
    parser.add_argument("--seq", type=int, default=256)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--max_pairs_per_row", type=int, default=3)
    parser.add_argument("--documents", type=int, default=2000)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--no_results_file", action="store_true")
    args = parser.parse_args(argv)
    result = run(
        args.model,
        args.seq,
        args.batch,
        args.max_pairs_per_row,
        args.documents,
        args.steps,
        args.warmup,
    )
    return publish(result, report, results_file=not args.no_results_file)


if __name__ == "__main__":
    run_with_steady_malloc()
    main()
