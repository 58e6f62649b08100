"""Real checkpoint, real text, side by side: the released all-MiniLM-L6-v2 fine-tuned on the Rotten
Tomatoes review snippets by bert_jax and by transformers' PyTorch ``BertForSequenceClassification``.

Both start from the same hub directory (``real_data.minilm_dir()``: ``model.safetensors`` and
``tokenizer.json``, no ``vocab.txt``) and see the same train / dev split; each runs its own
pipeline, as a researcher would run it:

* bert_jax: ``python -m bert_jax.convert --from=hf`` once, then the fine-tuning loop of
  ``configs/classify.py`` (own JSON-lines files, length-bucketed batches, dev evaluation every
  epoch) called in this process;
* transformers: ``AutoTokenizer`` and ``BertForSequenceClassification.from_pretrained``, a
  run_glue-style loop (random sampler, dynamic padding, ``get_linear_schedule_with_warmup``).

The recipe is the same: AdamW (bias-corrected, eps 1e-8, weight decay 0.01 off biases and
LayerNorm), warmup over the first 10% of steps then linear decay, gradient clipping at 1.0,
batch 32, max_seq_length 128, dropout 0.1, dev accuracy after every epoch. Seeds run alternately
(bert_jax, transformers, next seed); each run's wall time counts everything from the converted
checkpoint to the last dev accuracy (bert_jax's compilation included).

Usage::

    python -m benchmarks.real_finetune                      # 3 seeds, 4000 training snippets
    python -m benchmarks.real_finetune --train_examples=0 --epochs=3   # the whole training split
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
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

LABELS = ("rotten", "fresh")  # index order: real_data's labels (1 = fresh)
MAX_SEQ_LENGTH, BATCH, EVAL_BATCH = 128, 32, 64
WEIGHT_DECAY, WARMUP_FRACTION, CLIP_NORM = 0.01, 0.1, 1.0


def prepare(train_examples: int, dev_fraction: float = 0.1) -> tuple[pathlib.Path, pathlib.Path]:
    """The converted MiniLM checkpoint and a folder of ``train.jsonl`` / ``dev.jsonl``, once."""
    root = real_data.cache_dir()
    hub_dir = real_data.minilm_dir()
    checkpoint = root / "minilm_bert_jax"
    if not (checkpoint / "model_config.json").is_file():
        cmd = [sys.executable, "-m", "bert_jax.convert", "--from=hf", f"--input={hub_dir}",
               f"--output={checkpoint}"]  # fmt: skip
        subprocess.run(cmd, check=True)
    texts, labels = real_data.rotten_tomatoes()
    train, dev = real_data.split(len(texts), dev_fraction, seed=0)
    if train_examples:
        train = np.sort(np.random.default_rng(0).permutation(train)[:train_examples])
    data_dir = root / f"rotten_tomatoes_{len(train)}"
    if not (data_dir / "dev.jsonl").is_file():
        staging = data_dir.with_name(data_dir.name + ".tmp")
        staging.mkdir(parents=True, exist_ok=True)
        for name, rows in (("train", train), ("dev", dev)):
            with open(staging / f"{name}.jsonl", "w") as f:
                for i in rows:
                    row = {"id": int(i), "sentence": texts[i], "label": LABELS[labels[i]]}
                    f.write(json.dumps(row) + "\n")
        staging.rename(data_dir)
    return checkpoint, data_dir


def _read_jsonl(path: pathlib.Path) -> tuple[list[str], np.ndarray]:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return [r["sentence"] for r in rows], np.array([LABELS.index(r["label"]) for r in rows])


def run_bert_jax(checkpoint, data_dir, seed: int, epochs: float, lr: float, workdir) -> dict:
    """bert_jax's fine-tuning loop on the files; dev accuracy after each epoch."""
    from bert_jax import finetune
    from configs import classify

    c = classify.get_config("model=base")  # the architecture comes from the checkpoint
    c.init_checkpoint, c.data_dir = str(checkpoint), str(data_dir)
    c.text_columns, c.label_column, c.id_column = "sentence", "label", "id"
    c.labels = ",".join(LABELS)
    c.optimizer, c.learning_rate, c.num_epochs, c.seed = "adamw", lr, epochs, seed
    c.schedule = "polynomial"  # transformers' get_linear_schedule_with_warmup
    c.weight_decay, c.warmup_fraction, c.clip_norm = WEIGHT_DECAY, WARMUP_FRACTION, CLIP_NORM
    c.batch_size, c.eval_batch_size, c.max_seq_length = BATCH, EVAL_BATCH, MAX_SEQ_LENGTH
    c.predict_test = False
    t0 = time.perf_counter()
    finetune.train_and_evaluate(c, str(workdir))
    wall = time.perf_counter() - t0
    lines = pathlib.Path(workdir, "metrics.jsonl").read_text().splitlines()
    key = "dev/dev/accuracy"  # dev/<split>/<metric>
    accuracy = [row[key] for row in map(json.loads, lines) if key in row]
    return {"dev_accuracy": accuracy, "wall_s": wall}


def run_hf_torch(hub_dir, data_dir, seed: int, epochs: float, lr: float) -> dict:
    """transformers' PyTorch classifier, run_glue's way; dev accuracy after each epoch."""
    import torch
    import transformers

    torch.manual_seed(seed)
    t0 = time.perf_counter()
    tokenizer = transformers.AutoTokenizer.from_pretrained(hub_dir)
    net = transformers.BertForSequenceClassification.from_pretrained(hub_dir, num_labels=2)
    encode = lambda texts: tokenizer(texts, truncation=True, max_length=MAX_SEQ_LENGTH)  # noqa: E731
    train_texts, train_labels = _read_jsonl(data_dir / "train.jsonl")
    dev_texts, dev_labels = _read_jsonl(data_dir / "dev.jsonl")
    train, dev = encode(train_texts), encode(dev_texts)

    def batch(encoded, rows):  # DataCollatorWithPadding: pad to the batch's longest row
        return tokenizer.pad(
            {k: [encoded[k][i] for i in rows] for k in encoded}, return_tensors="pt"
        )

    no_decay = [p for n, p in net.named_parameters() if "bias" in n or "LayerNorm" in n]
    decay = [p for n, p in net.named_parameters() if not ("bias" in n or "LayerNorm" in n)]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": WEIGHT_DECAY}, {"params": no_decay, "weight_decay": 0}],
        lr=lr,
        eps=1e-8,
    )
    steps_per_epoch = len(train_labels) // BATCH
    total = round(epochs * steps_per_epoch)
    schedule = transformers.get_linear_schedule_with_warmup(
        opt, round(WARMUP_FRACTION * total), total
    )
    generator = torch.Generator().manual_seed(seed)
    accuracy, step = [], 0
    while step < total:
        order = torch.randperm(len(train_labels), generator=generator).numpy()
        net.train()
        for i in range(steps_per_epoch):
            rows = order[i * BATCH : (i + 1) * BATCH]
            labels = torch.as_tensor(train_labels[rows])
            loss = net(**batch(train, rows), labels=labels).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), CLIP_NORM)
            opt.step()
            schedule.step()
            step += 1
            if step == total:
                break
        net.eval()
        right = 0
        with torch.no_grad():
            for i in range(0, len(dev_labels), EVAL_BATCH):
                rows = np.arange(i, min(i + EVAL_BATCH, len(dev_labels)))
                logits = net(**batch(dev, rows)).logits
                right += int((logits.argmax(-1).numpy() == dev_labels[rows]).sum())
        accuracy.append(right / len(dev_labels))
    return {"dev_accuracy": accuracy, "wall_s": time.perf_counter() - t0}


def _summary(runs: list[dict]) -> dict[str, float]:
    final = [r["dev_accuracy"][-1] for r in runs]
    best = [max(r["dev_accuracy"]) for r in runs]
    walls = [r["wall_s"] for r in runs]
    spread = lambda xs: statistics.stdev(xs) if len(xs) > 1 else 0.0  # noqa: E731
    return {
        "final_mean": statistics.mean(final),
        "final_std": spread(final),
        "best_mean": statistics.mean(best),
        "best_std": spread(best),
        "wall_s_mean": statistics.mean(walls),
    }


def run(seeds: int = 3, train_examples: int = 4000, epochs: float = 2.0, lr: float = 5e-5,
        workdir: str | None = None) -> dict[str, Any]:  # fmt: skip
    """Every seed with both implementations, alternating; returns the result object."""
    import tempfile

    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    checkpoint, data_dir = prepare(train_examples)
    root = pathlib.Path(workdir or tempfile.mkdtemp(prefix="real_finetune_"))
    runs: dict[str, list[dict]] = {"bert_jax": [], "hf_torch": []}
    for seed in range(seeds):
        run_dir = root / f"bert_jax_seed{seed}"
        runs["bert_jax"].append(run_bert_jax(checkpoint, data_dir, seed, epochs, lr, run_dir))
        runs["hf_torch"].append(run_hf_torch(real_data.minilm_dir(), data_dir, seed, epochs, lr))
        for name, r in runs.items():
            print(f"seed {seed} {name}: dev accuracy {r[-1]['dev_accuracy']}, "
                  f"{r[-1]['wall_s']:.0f} s", flush=True)  # fmt: skip
    summary = {name: _summary(r) for name, r in runs.items()}
    n_train, n_dev = (len(_read_jsonl(data_dir / f"{s}.jsonl")[1]) for s in ("train", "dev"))
    config = {
        "seeds": seeds,
        "train_examples": n_train,
        "dev_examples": n_dev,
        "epochs": epochs,
        "learning_rate": lr,
        "hardware": hardware(),
        "load_average_1m": load_average(),
    }
    ratio = summary["hf_torch"]["wall_s_mean"] / summary["bert_jax"]["wall_s_mean"]
    return {"runs": runs, "summary": summary, "hf_wall_over_bert_jax": ratio, "config": config}


def report(result: dict[str, Any], results_file: bool) -> None:
    c, s = result["config"], result["summary"]
    print(
        f"all-MiniLM-L6-v2 on Rotten Tomatoes: {c['train_examples']} train / {c['dev_examples']} "
        f"dev snippets, {c['epochs']} epochs, lr {c['learning_rate']}, {c['seeds']} seeds, on "
        f"{c['hardware']} (load {c['load_average_1m']:.2f})"
    )
    cell = lambda name, key: (
        f"{100 * s[name][key + '_mean']:.2f} ± {100 * s[name][key + '_std']:.2f}"
    )  # noqa: E731
    rows = [[name, cell(name, "final"), cell(name, "best"), f"{s[name]['wall_s_mean']:.0f}"]
            for name in s]  # fmt: skip
    print(format_table(["impl", "dev acc, last epoch", "dev acc, best epoch", "wall s/run"], rows))
    print(f"transformers' wall time / bert_jax's: {result['hf_wall_over_bert_jax']:.2f}")
    if results_file:
        append_result(
            "Real fine-tuning: all-MiniLM-L6-v2 on Rotten Tomatoes",
            ["command", "hardware", "load", "train / dev", "bert_jax acc (last)",
             "transformers acc (last)", "bert_jax s/run", "transformers s/run", "wall ratio"],
            [f"`{command_line()}`", c["hardware"], f"{c['load_average_1m']:.2f}",
             f"{c['train_examples']} / {c['dev_examples']}", cell("bert_jax", "final"),
             cell("hf_torch", "final"), f"{s['bert_jax']['wall_s_mean']:.0f}",
             f"{s['hf_torch']['wall_s_mean']:.0f}", f"{result['hf_wall_over_bert_jax']:.2f}"],
        )  # fmt: skip


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--train_examples", type=int, default=4000, help="0: the whole split")
    parser.add_argument("--epochs", type=float, default=2.0)
    parser.add_argument("--learning_rate", type=float, default=5e-5)
    parser.add_argument("--workdir", help="where bert_jax's runs go (default: a new temp folder)")
    parser.add_argument("--no_results_file", action="store_true")
    args = parser.parse_args(argv)
    os.environ["USE_TF"] = "0"  # transformers: no TensorFlow import
    result = run(args.seeds, args.train_examples, args.epochs, args.learning_rate, args.workdir)
    return publish(result, report, results_file=not args.no_results_file)


if __name__ == "__main__":
    run_with_steady_malloc()
    main()
