"""Text -> BERT pretraining sentence pairs in array_record files, streaming and sharded.

Input, one of:
  --input=GLOB      text files in the original BERT format: one sentence per line, a blank line
                    between documents (a new file also starts a new document);
  --tfds=NAME[:SPLIT] --tfds_text_key=text   a prepared TFDS dataset (offline), each record a
                    document split into sentences at newlines and after . ! ? before a capital;
  --synthetic=NUM_DOCS   `bert_jax.data.synthetic` documents.
Vocabulary, one of: --vocab=vocab.txt [--lower_case] (WordPiece), --vocab_dir=DIR (a saved
tokenizer), --spm_vocab_size=N (train a SentencePiece model on the first --spm_sample_sentences
sentences of the input).

Output (format of a record: `bert_jax.data.pretraining.serialize_row`):
  DIR/tokenizer/                                         the tokenizer (tokenizer.save)
  DIR/seq{L}/{train,eval}-{shard:05d}-of-{num_shards:05d}.array_record   unpadded, unmasked pairs
  DIR/summary-{shard:05d}-of-{num_shards:05d}.json       counts (documents, sentences, instances,
                                                         tokens, cleaning events), each file's
                                                         records, bytes and sha256, and the
                                                         arguments (written last: a shard without
                                                         it was cut short)

Memory stays bounded: documents are tokenized and turned into pairs in buffers of
--buffer_documents documents (per split), so a random next segment comes from another document of
the same buffer or of the last 1000 of the buffer before, not of the whole corpus; pairs are
shuffled within a buffer (the loader shuffles globally). Each of --max_seq_length's lengths gets
its own pairs from the same tokenized documents.
Held-out documents (eval split, --eval_fraction) are chosen by a hash of the document's index in
the input stream, so the choice does not depend on sharding; eval pairs are made once (no dupes).

Packing (--max_pairs_per_row > 1): the pairs of a buffer are packed into rows of
--max_seq_length tokens (best-fit decreasing); the summary's packing_efficiency (real tokens /
row capacity) says what that buys against one pair per padded row.

Sharding: worker --shard_index of --num_shards handles the documents i with
i % num_shards == shard_index and writes only its own files. A vocabulary is trained once, not per
shard: run `--only_vocab --spm_vocab_size=N` first, then every shard with --vocab_dir=DIR/tokenizer.

Malformed input never stops a run: bytes that are not UTF-8 are replaced (U+FFFD, which the
tokenizer drops), control characters are removed, lines longer than --max_line_bytes are
truncated and documents left without tokens are dropped; each event is counted in the summary.

Usage:
    python -m bert_jax.prepare --output=/data/bert --input='/corpus/*.txt' \\
        --vocab=vocab.txt --lower_case --max_seq_length=128,512
    python -m bert_jax.prepare --output=/tmp/synth --synthetic=20000 --spm_vocab_size=512
    # in process:
    from bert_jax.prepare import prepare
    summary = prepare("/tmp/synth", synthetic=2000, spm_vocab_size=400, max_seq_lengths=(128,))
"""

import argparse
import dataclasses
import glob
import hashlib
import inspect
import itertools
import json
import os
import re
import shlex
import tempfile
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np
from array_record.python.array_record_module import ArrayRecordWriter

from bert_jax.data import pretraining
from bert_jax.data.synthetic import synthetic_documents

# group_size:1 makes every record its own compressed chunk, which random access (the shuffled
# grain loader) needs; grain warns about other group sizes.
ARRAY_RECORD_OPTIONS = "group_size:1"
SPLITS = ("train", "eval")
_REPLACEMENT_CHAR = "\ufffd"
# One sentence boundary: after . ! ? (and closing quotes/brackets), before a capital or digit.
_SENTENCE_BOUNDARY = re.compile(r"(?:(?<=[.!?])|(?<=[.!?][\"')\]]))\s+(?=[\"'(\[]?[A-Z0-9])")


@dataclasses.dataclass
class CleaningCounts:
    """Events met while reading the input (all recovered from, counted for the summary)."""

    non_utf8_bytes_replaced: int = 0
    control_chars_removed: int = 0
    long_lines_truncated: int = 0
    empty_documents_dropped: int = 0


def _decode(raw: bytes, counts: CleaningCounts) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("utf-8", errors="replace")
        # U+FFFD already in the input (its valid 3-byte encoding) is not a replacement.
        counts.non_utf8_bytes_replaced += text.count(_REPLACEMENT_CHAR) - raw.count(
            _REPLACEMENT_CHAR.encode()
        )
        return text


def _remove_control_chars(text: str, counts: CleaningCounts) -> str:
    """Drops control characters as BERT's tokenizer cleaning does (Unicode category C*, except
    tab and newlines), counting them."""
    if text.isprintable():  # the common case, checked in C
        return text
    kept = [c for c in text if c in "\t\r\n" or not unicodedata.category(c).startswith("C")]
    counts.control_chars_removed += len(text) - len(kept)
    return "".join(kept)


def _read_lines(path: str, max_line_bytes: int, counts: CleaningCounts) -> Iterator[str]:
    """Decoded lines of a file; never holds more than max_line_bytes of one line in memory."""
    with open(path, "rb") as f:
        while raw := f.readline(max_line_bytes + 1):
            if len(raw) > max_line_bytes and not raw.endswith(b"\n"):
                counts.long_lines_truncated += 1
                # Cut at a character boundary (not inside a UTF-8 sequence), skip the rest.
                cut = max_line_bytes
                while cut > 0 and (raw[cut] & 0xC0) == 0x80:
                    cut -= 1
                raw = raw[:cut]
                while (rest := f.readline(1 << 20)) and not rest.endswith(b"\n"):
                    pass
            yield _decode(raw, counts)


def _text_file_documents(
    pattern: str, max_line_bytes: int, counts: CleaningCounts
) -> Iterator[list[str]]:
    paths = sorted(glob.glob(pattern))
    if not paths:
        raise FileNotFoundError(f"--input={pattern!r} matches no file.")
    for path in paths:
        document: list[str] = []
        for line in _read_lines(path, max_line_bytes, counts):
            if line.strip():
                document.append(line)
            elif document:
                yield document
                document = []
        if document:
            yield document


def split_sentences(text: str) -> list[str]:
    """Splits a document into sentences: at newlines, and after . ! ? before a capital or digit.

    Usage:
        >>> split_sentences("It rains. The dog runs!\\nNew line")
        ['It rains.', 'The dog runs!', 'New line']
    """
    return [
        sentence.strip()
        for paragraph in text.splitlines()
        for sentence in _SENTENCE_BOUNDARY.split(paragraph)
        if sentence.strip()
    ]


def _tfds_documents(
    spec: str, text_key: str, data_dir: str | None, counts: CleaningCounts
) -> Iterator[list[str]]:
    import tensorflow_datasets as tfds  # heavy; only this input needs it

    name, _, split = spec.partition(":")
    split = split or "train"
    try:  # array_record datasets are read without TensorFlow
        records: Iterable[Any] = tfds.data_source(name, split=split, data_dir=data_dir)
    except NotImplementedError:  # tfrecord datasets need tf.data
        records = tfds.as_numpy(tfds.load(name, split=split, data_dir=data_dir))
    for record in records:
        if text_key not in record:
            raise KeyError(
                f"TFDS {name} has no feature {text_key!r}; pass --tfds_text_key, one of "
                f"{sorted(record)}."
            )
        text = record[text_key]
        text = _decode(text, counts) if isinstance(text, bytes) else str(text)
        yield split_sentences(text)


def _is_eval_document(doc_index: int, eval_fraction: float) -> bool:
    digest = hashlib.blake2b(str(doc_index).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") < eval_fraction * 2**64


def _make_tokenizer(
    tokenizer_dir: str,
    documents: Callable[[], Iterator[list[str]]],
    *,
    vocab: str | None,
    lower_case: bool,
    vocab_dir: str | None,
    spm_vocab_size: int | None,
    spm_sample_sentences: int,
    num_shards: int,
) -> Any:
    """The tokenizer named by the flags; a trained SentencePiece model is saved to
    tokenizer_dir at once (its files live in a temporary directory until then)."""
    from bert_jax import tokenizers

    if sum(x is not None for x in (vocab, vocab_dir, spm_vocab_size)) != 1:
        raise ValueError("Pass exactly one of --vocab, --vocab_dir, --spm_vocab_size.")
    if vocab is not None:
        return tokenizers.WordPiece(vocab, lower_case)
    if vocab_dir is not None:
        return tokenizers.load_tokenizer(vocab_dir)
    if num_shards > 1:
        raise ValueError(
            "--spm_vocab_size with --num_shards > 1 would train one vocabulary per shard. Train it "
            f"once: `--only_vocab --spm_vocab_size={spm_vocab_size}`, then run every shard with "
            f"--vocab_dir={tokenizer_dir}."
        )
    sentences = itertools.islice(
        (s for document in documents() for s in document), spm_sample_sentences
    )
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = tokenizers.train_sentencepiece(
            sentences, os.path.join(tmp, "spm"), spm_vocab_size, lower_case=lower_case
        )
        tokenizer.save(tokenizer_dir)
    return tokenizer


def prepare(
    output: str,
    *,
    input: str | None = None,
    tfds: str | None = None,
    tfds_text_key: str = "text",
    tfds_data_dir: str | None = None,
    synthetic: int | None = None,
    vocab: str | None = None,
    lower_case: bool = False,
    vocab_dir: str | None = None,
    spm_vocab_size: int | None = None,
    spm_sample_sentences: int = 1_000_000,
    tokenizer: Any = None,
    only_vocab: bool = False,
    max_seq_lengths: Sequence[int] = (128,),
    dupe_factor: int = 10,
    max_pairs_per_row: int = 1,
    short_seq_prob: float = 0.1,
    eval_fraction: float = 0.01,
    num_shards: int = 1,
    shard_index: int = 0,
    seed: int = 12345,
    buffer_documents: int = 10_000,
    max_line_bytes: int = 100_000,
) -> dict[str, Any]:
    """Writes one shard of pretraining pairs (see the module docstring) and returns its summary.

    Exactly one input (`input` glob, `tfds` name, `synthetic` document count) and one vocabulary
    (`vocab` file, `vocab_dir`, `spm_vocab_size`, or an in-memory `tokenizer` object, which is
    saved to output/tokenizer) are needed. `only_vocab` stops after writing the tokenizer.

    Usage:
        >>> summary = prepare("/tmp/bert_synth", synthetic=200, spm_vocab_size=300)
        >>> summary["instances"]["128"]["train"] > 0
        True
    """
    arguments = {k: v for k, v in locals().items() if k not in ("output", "tokenizer")}
    arguments["max_seq_lengths"] = list(max_seq_lengths)
    inputs = {"input": input, "tfds": tfds, "synthetic": synthetic}
    if sum(v is not None for v in inputs.values()) != 1:
        raise ValueError("Pass exactly one of --input, --tfds, --synthetic.")
    if not 0 <= shard_index < num_shards:
        raise ValueError(f"Need 0 <= --shard_index < --num_shards, got {shard_index}/{num_shards}.")
    if not 0.0 <= eval_fraction < 1.0:
        raise ValueError(f"--eval_fraction must be in [0, 1), got {eval_fraction}.")
    if dupe_factor < 1 or not max_seq_lengths or min(max_seq_lengths) < 5:
        raise ValueError(
            f"Need --dupe_factor >= 1 and every --max_seq_length >= 5, got {dupe_factor} and "
            f"{list(max_seq_lengths)}."
        )

    def documents(counts: CleaningCounts) -> Iterator[list[str]]:
        """The input stream, cleaned; read once per pass (vocabulary sample, then pairs)."""
        if input is not None:
            stream = _text_file_documents(input, max_line_bytes, counts)
        elif tfds is not None:
            stream = _tfds_documents(tfds, tfds_text_key, tfds_data_dir, counts)
        else:
            stream = synthetic_documents(synthetic, seed)
        for document in stream:
            yield [_remove_control_chars(line, counts) for line in document]

    shard_name = f"{shard_index:05d}-of-{num_shards:05d}"
    outputs = [os.path.join(output, f"summary-{shard_name}.json")] + [
        os.path.join(output, f"seq{length}", f"{split}-{shard_name}.array_record")
        for length in max_seq_lengths
        for split in SPLITS
    ]
    existing = [path for path in outputs if os.path.exists(path)]
    if existing and not only_vocab:
        raise FileExistsError(
            f"{existing[0]} exists (shard {shard_index} was prepared before): prepare into a new "
            "--output, or delete that shard's files to prepare it again."
        )
    os.makedirs(output, exist_ok=True)
    tokenizer_dir = os.path.join(output, "tokenizer")
    if tokenizer is None:
        tokenizer = _make_tokenizer(
            tokenizer_dir,
            lambda: documents(CleaningCounts()),
            vocab=vocab,
            lower_case=lower_case,
            vocab_dir=vocab_dir,
            spm_vocab_size=spm_vocab_size,
            spm_sample_sentences=spm_sample_sentences,
            num_shards=num_shards,
        )
    # Shard 0 writes the tokenizer, unless it is already there (trained, or read from there).
    already_saved = spm_vocab_size is not None or (
        vocab_dir is not None and os.path.realpath(vocab_dir) == os.path.realpath(tokenizer_dir)
    )
    if shard_index == 0 and not already_saved:
        tokenizer.save(tokenizer_dir)
    if only_vocab:
        return {"tokenizer": tokenizer_dir, "vocab_size": tokenizer.vocab_size}

    writers = {}
    for length in max_seq_lengths:
        os.makedirs(os.path.join(output, f"seq{length}"), exist_ok=True)
        for split in SPLITS:
            path = os.path.join(output, f"seq{length}", f"{split}-{shard_name}.array_record")
            writers[length, split] = ArrayRecordWriter(path, ARRAY_RECORD_OPTIONS)
    num_documents = dict.fromkeys(SPLITS, 0)
    num_sentences = dict.fromkeys(SPLITS, 0)
    num_instances = {str(length): dict.fromkeys(SPLITS, 0) for length in max_seq_lengths}
    num_tokens = {str(length): dict.fromkeys(SPLITS, 0) for length in max_seq_lengths}
    num_rows = {str(length): dict.fromkeys(SPLITS, 0) for length in max_seq_lengths}
    buffers: dict[str, list[list[list[int]]]] = {split: [] for split in SPLITS}
    earlier: dict[str, list[list[list[int]]]] = {split: [] for split in SPLITS}
    num_flushes = dict.fromkeys(SPLITS, 0)

    def flush(split: str) -> None:
        """Pairs from the buffered documents of a split, for every length, shuffled, written."""
        docs = buffers[split]
        # Random next segments may also come from the previous buffer's documents (not paired
        # again themselves), so that a short last buffer still gets its 50% of random pairs.
        pool = docs + earlier[split]
        for length in max_seq_lengths:
            rng = np.random.default_rng(
                [seed, shard_index, SPLITS.index(split), num_flushes[split], length]
            )
            instances = [
                instance
                for _ in range(dupe_factor if split == "train" else 1)
                for index, document in enumerate(docs)
                for instance in pretraining.create_instances(
                    document,
                    pool,
                    index,
                    length,
                    short_seq_prob,
                    rng,
                    tokenizer.cls_id,
                    tokenizer.sep_id,
                )
            ]
            instances = [instances[i] for i in rng.permutation(len(instances))]
            rows = [[pair] for pair in instances]
            if max_pairs_per_row > 1:
                rows = pretraining.pack_pairs(instances, length, max_pairs_per_row)
                rows = [rows[i] for i in rng.permutation(len(rows))]
            for row in rows:
                writers[length, split].write(pretraining.serialize_row(row))
            num_tokens[str(length)][split] += sum(len(p["input_ids"]) for p in instances)
            num_instances[str(length)][split] += len(instances)
            num_rows[str(length)][split] += len(rows)
        num_flushes[split] += 1
        earlier[split] = docs[-1000:]
        buffers[split] = []

    counts = CleaningCounts()
    try:
        for doc_index, document in enumerate(documents(counts)):
            if doc_index % num_shards != shard_index:
                continue
            sentences = [ids for ids in map(tokenizer.encode, document) if ids]
            if not sentences:
                counts.empty_documents_dropped += 1
                continue
            split = "eval" if _is_eval_document(doc_index, eval_fraction) else "train"
            num_documents[split] += 1
            num_sentences[split] += len(sentences)
            buffers[split].append(sentences)
            if len(buffers[split]) >= buffer_documents:
                flush(split)
        for split in SPLITS:
            flush(split)
    finally:
        for writer in writers.values():
            writer.close()

    summary = {
        "shard_index": shard_index,
        "num_shards": num_shards,
        "documents": num_documents,
        "sentences": num_sentences,
        "instances": num_instances,
        "tokens": num_tokens,
        "rows": num_rows,
        # Real tokens / row capacity: what packing buys against one pair per padded row.
        "packing_efficiency": {
            length: {
                split: num_tokens[length][split] / max(1, num_rows[length][split] * int(length))
                for split in SPLITS
            }
            for length in num_tokens
        },
        # What a training run checks its shards against (bert_jax.faults.check_prepared).
        "files": {
            f"seq{length}/{split}-{shard_name}.array_record": _file_record(
                os.path.join(output, f"seq{length}", f"{split}-{shard_name}.array_record"),
                num_rows[str(length)][split],
            )
            for length in max_seq_lengths
            for split in SPLITS
        },
        # How to write this shard again (shard_command), should one of its files be damaged.
        "arguments": {k: v for k, v in arguments.items() if v != _DEFAULTS[k]},
        "cleaning": dataclasses.asdict(counts),
        "tokenizer": tokenizer_dir,
        "vocab_size": tokenizer.vocab_size,
        "settings": {
            "max_seq_lengths": list(max_seq_lengths),
            "dupe_factor": dupe_factor,
            "max_pairs_per_row": max_pairs_per_row,
            "short_seq_prob": short_seq_prob,
            "eval_fraction": eval_fraction,
            "seed": seed,
            "buffer_documents": buffer_documents,
        },
    }
    path = os.path.join(output, f"summary-{shard_name}.json")
    with open(path + ".tmp", "w") as f:
        json.dump(summary, f, indent=2)
    os.replace(path + ".tmp", path)  # never half a summary: its presence marks a finished shard
    return summary


_VOCABULARY_ARGUMENTS = (
    "vocab",
    "lower_case",
    "vocab_dir",
    "spm_vocab_size",
    "spm_sample_sentences",
)
_ARGUMENT_ORDER = list(inspect.signature(prepare).parameters)
_DEFAULTS = {
    name: list(p.default) if isinstance(p.default, tuple) else p.default
    for name, p in inspect.signature(prepare).parameters.items()
}


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _file_record(path: str, records: int) -> dict[str, Any]:
    # Just written, the file is read back from the page cache.
    return {"records": records, "bytes": os.path.getsize(path), "sha256": file_sha256(path)}


def shard_command(output: str, arguments: dict[str, Any], shard_index: int) -> str:
    """The command that writes shard ``shard_index`` of ``output`` again, from the ``arguments``
    of a summary: the same input and settings, with the tokenizer already saved in ``output``.

    >>> shard_command("/d", {"synthetic": 30, "num_shards": 2}, 1).split()[4:]
    ['--synthetic=30', '--vocab_dir=/d/tokenizer', '--num_shards=2', '--shard_index=1']
    """
    arguments = {**arguments, "shard_index": shard_index}
    for vocabulary in _VOCABULARY_ARGUMENTS:  # the saved tokenizer replaces them
        arguments.pop(vocabulary, None)
    arguments = {"vocab_dir": os.path.join(output, "tokenizer"), **arguments}
    arguments = {k: arguments[k] for k in sorted(arguments, key=_ARGUMENT_ORDER.index)}
    flags = [f"--output={shlex.quote(output)}"]
    for key, value in arguments.items():
        if key == "max_seq_lengths":
            flags.append(f"--max_seq_length={','.join(map(str, value))}")
        elif value is True:
            flags.append(f"--{key}")
        elif value is not None and value is not False:
            flags.append(f"--{key}={shlex.quote(str(value))}")
    return "python -m bert_jax.prepare " + " ".join(flags)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Command line entry point: `python -m bert_jax.prepare --help`."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--output", required=True, help="output directory")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--input", help="glob of text files (BERT format)")
    source.add_argument("--tfds", help="TFDS dataset NAME[:SPLIT] (prepared, offline)")
    source.add_argument("--synthetic", type=int, help="NUM_DOCS")
    parser.add_argument("--tfds_text_key", default="text")
    parser.add_argument("--tfds_data_dir", default=None)
    parser.add_argument("--vocab", help="WordPiece vocab.txt")
    parser.add_argument("--lower_case", action="store_true")
    parser.add_argument("--vocab_dir", help="a saved tokenizer directory")
    parser.add_argument("--spm_vocab_size", type=int, help="train a SentencePiece vocabulary")
    parser.add_argument("--spm_sample_sentences", type=int, default=1_000_000)
    parser.add_argument("--only_vocab", action="store_true", help="write the tokenizer, stop")
    parser.add_argument(
        "--max_seq_length",
        dest="max_seq_lengths",
        type=lambda s: tuple(int(x) for x in s.split(",")),
        default=(128,),
        help="comma-separated lengths, e.g. 128,512",
    )
    parser.add_argument("--dupe_factor", type=int, default=10)
    parser.add_argument(
        "--max_pairs_per_row",
        type=int,
        default=1,
        help="pack up to this many pairs per row (1: no packing); train with the same "
        "--config.data.max_pairs_per_row",
    )
    parser.add_argument("--short_seq_prob", type=float, default=0.1)
    parser.add_argument("--eval_fraction", type=float, default=0.01)
    parser.add_argument("--num_shards", type=int, default=1)
    parser.add_argument("--shard_index", type=int, default=0)
    parser.add_argument("--seed", type=int, default=12345)
    parser.add_argument("--buffer_documents", type=int, default=10_000)
    parser.add_argument("--max_line_bytes", type=int, default=100_000)
    args = vars(parser.parse_args(argv))
    summary = prepare(args.pop("output"), **args)
    print(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    main()
