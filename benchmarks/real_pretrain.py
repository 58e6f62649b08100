"""Real text through ``prepare``, side by side with the original ``create_pretraining_data.py``,
then BERT-mini pretrained on it for a bounded time.

The text is the 2017 news articles of REFERENCE.md section 9 (``real_data.news_articles()``),
written in the original input format (one sentence per line, ``bert_jax.prepare.split_sentences``;
a blank line between articles), with the bert-base-uncased vocabulary of all-MiniLM-L6-v2.

1. The same text, vocabulary and settings (max_seq_length 128, dupe_factor, short_seq_prob 0.1,
   masked_lm_prob 0.15, max_predictions 20) through ``python -m bert_jax.prepare`` and through
   google-research/bert's ``create_pretraining_data.py`` (PyPI ``bert-tensorflow`` 1.0.4, run on
   TensorFlow 2's compat.v1 as it is): wall time each, and the statistics of what they wrote:
   pairs, tokens per pair (mean, median, p95, share at full length), the random-next fraction and
   masked tokens per pair. bert_jax masks in the loader (a fresh mask per epoch), so its masked
   counts come from ``bert_jax.data.pretraining.mask_tokens`` applied to every written pair once;
   the original masks once, when it writes.
2. BERT-mini (L4/H256) pretrained from scratch on the same text prepared with a held-out split,
   for ``--steps`` steps (killed at ``--minutes`` if slower): the held-out MLM and NSP curve.

Usage::

    python -m benchmarks.real_pretrain                       # 1000 articles, dupe_factor 5
    python -m benchmarks.real_pretrain --articles=0 --dupe_factor=10 --steps=3000 --minutes=30
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from benchmarks import (
    append_result,
    command_line,
    format_table,
    hardware,
    load_average,
    publish,
    real_data,
    run_with_steady_malloc,
)

SEQ, MAX_PREDICTIONS, MASKED_LM_PROB, SHORT_SEQ_PROB, SEED = 128, 20, 0.15, 0.1, 12345
BERT_TENSORFLOW = ("bert-tensorflow", "1.0.4")


def write_corpus(articles: int, directory: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
    """The articles in BERT's input format, and the vocabulary as a vocab.txt."""
    from bert_jax.prepare import split_sentences

    texts = real_data.news_articles()
    texts = texts[:articles] if articles else texts
    corpus = directory / "news.txt"
    with open(corpus, "w") as f:
        for text in texts:
            sentences = split_sentences(text)
            if sentences:
                f.write("\n".join(sentences) + "\n\n")
    tokens = json.loads((real_data.minilm_dir() / "tokenizer.json").read_text())["model"]["vocab"]
    vocab = directory / "vocab.txt"
    vocab.write_text("".join(t + "\n" for t, _ in sorted(tokens.items(), key=lambda kv: kv[1])))
    return corpus, vocab


def _timed_run(cmd: list[str], **kwargs) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, text=True, **kwargs)
    return time.perf_counter() - t0


def bert_jax_pairs(corpus, vocab, output, dupe_factor: int, eval_fraction: float) -> float:
    """``python -m bert_jax.prepare`` on the corpus; returns its wall time."""
    return _timed_run([sys.executable, "-m", "bert_jax.prepare", f"--output={output}",
                       f"--input={corpus}", f"--vocab={vocab}", "--lower_case",
                       f"--max_seq_length={SEQ}", f"--dupe_factor={dupe_factor}",
                       f"--short_seq_prob={SHORT_SEQ_PROB}", f"--eval_fraction={eval_fraction}",
                       f"--seed={SEED}"])  # fmt: skip


def original_pairs(corpus, vocab, output_file, dupe_factor: int) -> float:
    """The original create_pretraining_data.py (imported from its wheel); returns its wall time."""
    wheel = real_data.fetch_wheel(*BERT_TENSORFLOW)
    env = {**os.environ, "PYTHONPATH": str(wheel), "TF_CPP_MIN_LOG_LEVEL": "2"}
    return _timed_run([sys.executable, "-m", "bert.create_pretraining_data",
                       f"--input_file={corpus}", f"--output_file={output_file}",
                       f"--vocab_file={vocab}", "--do_lower_case=True", f"--max_seq_length={SEQ}",
                       f"--max_predictions_per_seq={MAX_PREDICTIONS}",
                       f"--masked_lm_prob={MASKED_LM_PROB}", f"--random_seed={SEED}",
                       f"--dupe_factor={dupe_factor}", f"--short_seq_prob={SHORT_SEQ_PROB}"],
                      env=env)  # fmt: skip


def _statistics(lengths: np.ndarray, random_next: np.ndarray, masked: np.ndarray) -> dict:
    return {
        "pairs": int(len(lengths)),
        "tokens_mean": float(lengths.mean()),
        "tokens_p50": float(np.median(lengths)),
        "tokens_p95": float(np.percentile(lengths, 95)),
        "full_length_fraction": float((lengths == SEQ).mean()),
        "random_next_fraction": float(random_next.mean()),
        "masked_per_pair": float(masked.mean()),
    }


def bert_jax_statistics(output: pathlib.Path) -> dict:
    from array_record.python.array_record_data_source import ArrayRecordDataSource

    from bert_jax.data import pretraining
    from bert_jax.tokenizers import load_tokenizer

    tokenizer = load_tokenizer(str(output / "tokenizer"))
    special = [tokenizer.token_to_id(t) for t in ("[CLS]", "[SEP]", "[PAD]", "[MASK]")]
    rng = np.random.default_rng(0)
    lengths, random_next, masked = [], [], []
    for path in sorted((output / f"seq{SEQ}").glob("train-*.array_record")):
        source = ArrayRecordDataSource([str(path)])
        for record in source.__getitems__(range(len(source))):
            for pair in pretraining.parse_row(record):
                ids = pair["input_ids"]
                weights = pretraining.mask_tokens(
                    ids, rng, vocab_size=tokenizer.vocab_size, mask_id=special[3],
                    special_ids=special, masked_lm_prob=MASKED_LM_PROB,
                    max_predictions=MAX_PREDICTIONS,
                )[3]  # fmt: skip
                lengths.append(len(ids))
                random_next.append(pair["next_sentence_label"])
                masked.append(weights.sum())
    return _statistics(np.array(lengths), np.array(random_next), np.array(masked))


def original_statistics(path: pathlib.Path) -> dict:
    import tensorflow as tf

    lengths, random_next, masked = [], [], []
    for raw in tf.data.TFRecordDataset(str(path)).as_numpy_iterator():
        feature = tf.train.Example.FromString(raw).features.feature
        lengths.append(sum(feature["input_mask"].int64_list.value))
        random_next.append(feature["next_sentence_labels"].int64_list.value[0])
        masked.append(sum(feature["masked_lm_weights"].float_list.value))
    return _statistics(np.array(lengths), np.array(random_next), np.array(masked))


def pretrain_mini(data_dir: pathlib.Path, workdir: pathlib.Path, steps: int, minutes: float):
    """BERT-mini on the prepared text; the held-out curve and whether it finished in time."""
    cmd = [sys.executable, "-m", "bert_jax.main", "--config=configs/pretrain.py:model=mini",
           f"--workdir={workdir}", f"--config.data.data_dir={data_dir}",
           f"--config.total_steps={steps}", "--config.batch_size=32",
           "--config.data.phase2_fraction=0.0", "--config.optimizer=adamw",
           "--config.learning_rate=5e-4", f"--config.warmup_steps={steps // 10}",
           f"--config.eval_every_steps={max(steps // 10, 1)}",
           f"--config.checkpoint_every_steps={max(steps // 2, 1)}",
           f"--config.log_every_steps={max(steps // 20, 1)}"]  # fmt: skip
    root = pathlib.Path(__file__).resolve().parent.parent
    t0 = time.perf_counter()
    try:
        subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=root,
                       timeout=minutes * 60)  # fmt: skip
        finished = True
    except subprocess.TimeoutExpired:
        finished = False
    wall = time.perf_counter() - t0
    rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    curve = [{k: v for k, v in r.items() if k == "step" or k.startswith("eval/")}
             for r in rows if any(k.startswith("eval/") for k in r)]  # fmt: skip
    return {"curve": curve, "finished": finished, "wall_s": wall, "steps": steps}


def run(articles: int = 1000, dupe_factor: int = 5, steps: int = 1000, minutes: float = 15.0,
        workdir: str | None = None) -> dict[str, Any]:  # fmt: skip
    root = pathlib.Path(workdir or tempfile.mkdtemp(prefix="real_pretrain_"))
    root.mkdir(parents=True, exist_ok=True)
    corpus, vocab = write_corpus(articles, root)
    documents = corpus.read_text().count("\n\n")
    ours, original = root / "bert_jax_pairs", root / "original.tfrecord"
    for stale in (ours, original):  # each run measures both from nothing
        shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink(
            missing_ok=True
        )
    seconds = {
        "bert_jax": bert_jax_pairs(corpus, vocab, ours, dupe_factor, eval_fraction=0.0),
        "original": original_pairs(corpus, vocab, original, dupe_factor),
    }
    stats = {"bert_jax": bert_jax_statistics(ours), "original": original_statistics(original)}
    for name, s in stats.items():
        s["seconds"] = seconds[name]
        s["corpus_mb_per_s"] = corpus.stat().st_size / 1e6 / seconds[name]
    with_eval = root / "pretraining_data"
    shutil.rmtree(with_eval, ignore_errors=True)
    bert_jax_pairs(corpus, vocab, with_eval, dupe_factor, eval_fraction=0.02)
    shutil.rmtree(root / "mini", ignore_errors=True)
    pretraining = pretrain_mini(with_eval, root / "mini", steps, minutes)
    config = {
        "articles": articles or "all",
        "documents": documents,
        "corpus_mb": corpus.stat().st_size / 1e6,
        "dupe_factor": dupe_factor,
        "hardware": hardware(),
        "load_average_1m": load_average(),
    }
    speedup = seconds["original"] / seconds["bert_jax"]
    return {"prepare": stats, "prepare_speedup": speedup, "pretraining": pretraining,
            "config": config}  # fmt: skip


def report(result: dict[str, Any], results_file: bool) -> None:
    c, p = result["config"], result["prepare"]
    print(
        f"{c['documents']} news articles ({c['corpus_mb']:.1f} MB), max_seq_length {SEQ}, "
        f"dupe_factor {c['dupe_factor']}, on {c['hardware']} (load {c['load_average_1m']:.2f})"
    )
    keys = ["pairs", "tokens_mean", "tokens_p50", "tokens_p95", "full_length_fraction",
            "random_next_fraction", "masked_per_pair", "seconds"]  # fmt: skip
    rows = [[k, *(f"{p[name][k]:.3f}" if isinstance(p[name][k], float) else p[name][k]
                  for name in ("bert_jax", "original"))] for k in keys]  # fmt: skip
    print(format_table(["statistic", "bert_jax prepare", "create_pretraining_data"], rows))
    print(f"prepare is {result['prepare_speedup']:.2f}x the original's speed")
    t = result["pretraining"]
    print(f"BERT-mini, {t['steps']} steps of 32 pairs, {t['wall_s']:.0f} s"
          f"{'' if t['finished'] else ' (stopped at the time limit)'}; held-out:")  # fmt: skip
    for point in t["curve"]:
        print("  " + ", ".join(f"{k} {v:.4g}" for k, v in point.items()))
    if results_file:
        last = t["curve"][-1] if t["curve"] else {}
        append_result(
            "Real text: prepare against create_pretraining_data.py, BERT-mini pretraining",
            ["command", "hardware", "load", "MB", "pairs ours / original",
             "random-next ours / original", "masked/pair ours / original", "prepare speed ratio",
             "mini steps", "held-out MLM acc", "held-out NSP acc"],
            [f"`{command_line()}`", c["hardware"], f"{c['load_average_1m']:.2f}",
             f"{c['corpus_mb']:.1f}", f"{p['bert_jax']['pairs']} / {p['original']['pairs']}",
             f"{p['bert_jax']['random_next_fraction']:.3f} / "
             f"{p['original']['random_next_fraction']:.3f}",
             f"{p['bert_jax']['masked_per_pair']:.2f} / {p['original']['masked_per_pair']:.2f}",
             f"{result['prepare_speedup']:.2f}", last.get("step", "-"),
             f"{last.get('eval/mlm_accuracy', float('nan')):.3f}",
             f"{last.get('eval/nsp_accuracy', float('nan')):.3f}"],
        )  # fmt: skip


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--articles", type=int, default=1000, help="0: all of them")
    parser.add_argument("--dupe_factor", type=int, default=5)
    parser.add_argument("--steps", type=int, default=1000, help="BERT-mini pretraining steps")
    parser.add_argument("--minutes", type=float, default=15.0, help="pretraining time limit")
    parser.add_argument("--workdir", help="default: a new temporary folder")
    parser.add_argument("--no_results_file", action="store_true")
    args = parser.parse_args(argv)
    result = run(args.articles, args.dupe_factor, args.steps, args.minutes, args.workdir)
    return publish(result, report, results_file=not args.no_results_file)


if __name__ == "__main__":
    run_with_steady_malloc()
    main()
