"""Tokens per second delivered by the pretraining input pipeline (read, mask, pad, batch).

Prepares a synthetic corpus once with ``bert_jax.prepare`` (cached under ``--data_dir``), then
draws batches from ``bert_jax.data.pipeline.make_pretraining_loader`` for ``--seconds`` after
``--warmup`` batches. Real tokens are the attention-mask sum; padded tokens are batch * seq.

Usage::

    python -m benchmarks.input_pipeline --seq=128 --batch=256
    python -m benchmarks.input_pipeline --seq=128 --batch=256 --workers=2
"""

from __future__ import annotations

import argparse
import hashlib
import os
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

TARGET_TOKENS_PER_SEC = 750_000  # real tokens/s on the project's 2-core CPU machine


def default_data_dir(documents: int, seq: int, max_pairs_per_row: int, spm_vocab_size: int) -> str:
    """A cache folder under /tmp named by the settings and by the code that writes and reads
    records, so that a change of the record format never reads a stale corpus."""
    from bert_jax import prepare
    from bert_jax.data import pretraining

    code = hashlib.sha1()
    for module in (prepare, pretraining):
        with open(module.__file__, "rb") as f:
            code.update(f.read())
    name = f"docs{documents}_seq{seq}_pairs{max_pairs_per_row}_vocab{spm_vocab_size}"
    return os.path.join(
        tempfile.gettempdir(), "bert_jax_benchmark_data", f"{name}_{code.hexdigest()[:10]}"
    )


def prepared_corpus(
    data_dir: str, documents: int, seq: int, max_pairs_per_row: int, spm_vocab_size: int
) -> str:
    """Prepares ``documents`` synthetic documents at length ``seq`` unless already done."""
    from bert_jax.prepare import prepare

    done = os.path.join(data_dir, "DONE")
    if not os.path.exists(done):
        prepare(
            data_dir,
            synthetic=documents,
            spm_vocab_size=spm_vocab_size,
            max_seq_lengths=(seq,),
            max_pairs_per_row=max_pairs_per_row,
        )
        open(done, "w").close()
    return data_dir


def run(
    seq: int = 128,
    batch: int = 256,
    documents: int = 2000,
    workers: int = 0,
    read_threads: int = 1,
    max_pairs_per_row: int = 1,
    seconds: float = 10.0,
    warmup: int = 3,
    data_dir: str | None = None,
    spm_vocab_size: int = 1000,
) -> dict[str, Any]:
    """Measures the loader; returns the result object that ``main`` prints as JSON."""
    from bert_jax.data.pipeline import make_pretraining_loader

    if seconds <= 0 or warmup < 0 or documents < 1:
        raise ValueError(
            f"Need --seconds > 0, --warmup >= 0 and --documents >= 1; got {seconds}, {warmup}, "
            f"{documents}."
        )
    data_dir = data_dir or default_data_dir(documents, seq, max_pairs_per_row, spm_vocab_size)
    t0 = time.perf_counter()
    prepared_corpus(data_dir, documents, seq, max_pairs_per_row, spm_vocab_size)
    prepare_s = time.perf_counter() - t0

    loader = make_pretraining_loader(
        data_dir,
        "train",
        seq_len=seq,
        global_batch_size=batch,
        seed=0,
        worker_count=workers,
        read_threads=read_threads,
        max_pairs_per_row=max_pairs_per_row,
        process_index=0,
        process_count=1,
    )
    t0 = time.perf_counter()
    for _ in range(warmup):  # worker start-up and first reads
        next(loader)
    warmup_s = time.perf_counter() - t0

    batches = real = 0
    t0 = time.perf_counter()
    while (elapsed := time.perf_counter() - t0) < seconds:
        b = next(loader)
        real += int(b["attention_mask"].sum())
        batches += 1
    loader.close()  # stops worker processes and frees their shared memory
    padded = batches * batch * seq
    return {
        "tokens_per_sec": real / elapsed,
        "padded_tokens_per_sec": padded / elapsed,
        "rows_per_sec": batches * batch / elapsed,
        "batch_time_s": elapsed / batches,
        "fill": real / padded,
        "target_tokens_per_sec": TARGET_TOKENS_PER_SEC,
        "meets_target": real / elapsed >= TARGET_TOKENS_PER_SEC,
        "config": {
            "seq": seq,
            "batch": batch,
            "documents": documents,
            "workers": workers,
            "read_threads": read_threads,
            "max_pairs_per_row": max_pairs_per_row,
            "seconds": elapsed,
            "batches": batches,
            "warmup": warmup,
            "warmup_s": warmup_s,
            "prepare_s": prepare_s,
            "data_dir": data_dir,
            "hardware": hardware(),
            "load_average_1m": load_average(),
        },
    }


def report(result: dict[str, Any], results_file: bool) -> None:
    c = result["config"]
    print(
        f"seq {c['seq']} batch {c['batch']} workers {c['workers']} "
        f"pairs/row {c['max_pairs_per_row']} on {c['hardware']} "
        f"(load {c['load_average_1m']:.2f}); {c['batches']} batches in {c['seconds']:.1f} s"
    )
    row = [
        f"{result['tokens_per_sec']:,.0f}",
        f"{result['padded_tokens_per_sec']:,.0f}",
        f"{result['rows_per_sec']:,.0f}",
        f"{result['batch_time_s'] * 1e3:.1f}",
        f"{result['fill']:.2f}",
        "yes" if result["meets_target"] else "no",
    ]
    header = ["real tok/s", "padded tok/s", "rows/s", "ms/batch", "fill", ">= 750k"]
    print(format_table(header, [row]))
    if results_file:
        append_result(
            "Input pipeline",
            ["command", "hardware", "load", *header],
            [f"`{command_line()}`", c["hardware"], f"{c['load_average_1m']:.2f}", *row],
        )


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--documents", type=int, default=2000, help="synthetic documents")
    parser.add_argument("--workers", type=int, default=0, help="grain worker processes")
    parser.add_argument("--read_threads", type=int, default=1)
    parser.add_argument(
        "--max_pairs_per_row",
        type=int,
        default=1,
        help=">1: packed rows (the corpus is prepared with the same value)",
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="measurement time")
    parser.add_argument("--warmup", type=int, default=3, help="untimed batches first")
    parser.add_argument("--data_dir", default=None, help="corpus cache (default: under /tmp)")
    parser.add_argument("--spm_vocab_size", type=int, default=1000)
    parser.add_argument("--no_results_file", action="store_true")
    args = parser.parse_args(argv)
    result = run(
        args.seq,
        args.batch,
        args.documents,
        args.workers,
        args.read_threads,
        args.max_pairs_per_row,
        args.seconds,
        args.warmup,
        args.data_dir,
        args.spm_vocab_size,
    )
    return publish(result, report, results_file=not args.no_results_file)


if __name__ == "__main__":
    run_with_steady_malloc()
    main()
