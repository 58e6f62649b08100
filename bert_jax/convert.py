"""Converts a Hugging Face or original-TF BERT checkpoint into a bert_jax pretrained directory.

Usage::

    python -m bert_jax.convert --from=hf --input=bert-base-uncased/ --output=ckpt/bert-base
    python -m bert_jax.convert --from=hf --input=all-MiniLM-L6-v2/ --output=ckpt/minilm
    python -m bert_jax.convert --from=tf --input=uncased_L-12_H-768_A-12/bert_model.ckpt \\
        --output=ckpt/bert-base-tf   # bert_config.json and vocab.txt are found next to the input

Hugging Face input: any layout transformers writes (model.safetensors, sharded safetensors,
pytorch_model.bin, sharded .bin; pickles are read weights-only), and sentence-transformers
directories, whose pooling (cls / mean / max, then L2 normalisation or not) is kept in
``OUTPUT/pooling.json`` (``bert_jax.pretrained.load_pooling``).

The tokenizer becomes ``OUTPUT/tokenizer`` (a WordPiece): from ``--vocab`` if given, else from the
input's ``tokenizer.json`` (what transformers' AutoTokenizer loads), else from ``vocab.txt`` next
to the input. Lower-casing comes from ``--lower_case``, else from the ``do_lower_case`` of a
Hugging Face ``tokenizer_config.json``, else defaults to true (the uncased models); see
``interop.load_hf_tokenizer``. With no tokenizer to be found the conversion stops, since
fine-tuning cannot start without one.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path

from bert_jax import interop, pretrained


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bert_jax.convert",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--from", dest="source", choices=("hf", "tf"), required=True)
    parser.add_argument(
        "--input", required=True, help="HF directory, or TF checkpoint prefix (.../bert_model.ckpt)"
    )
    parser.add_argument("--output", required=True, help="new bert_jax pretrained directory")
    parser.add_argument("--bert_config", help="TF only; default: bert_config.json next to --input")
    parser.add_argument("--vocab", help="WordPiece vocab.txt; default: see above")
    parser.add_argument("--lower_case", choices=("true", "false"), help="default: see above")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = _parse(argv)
    source = Path(args.input)
    input_dir = source if args.source == "hf" else source.parent
    output = Path(args.output)
    # Fail before the (possibly long) conversion rather than after it.
    if output.exists() and any(output.iterdir()):
        raise FileExistsError(f"{output} exists and is not empty; choose a new --output.")
    if args.vocab and not Path(args.vocab).is_file():
        raise FileNotFoundError(f"--vocab={args.vocab} does not exist.")
    lower_case = None if args.lower_case is None else args.lower_case == "true"
    tokenizer = interop.load_hf_tokenizer(input_dir, vocab_file=args.vocab, lower_case=lower_case)

    pooling = None
    if args.source == "hf":
        pooling = interop.load_sentence_pooling(source)
        model_config, params = interop.load_hf(source)
    else:
        bert_config = args.bert_config or input_dir / "bert_config.json"
        model_config, params = interop.load_tf(source, bert_config)

    with tempfile.TemporaryDirectory() as staging:
        tokenizer.save(staging)
        pretrained.save(output, model_config, params, tokenizer_dir=staging, pooling=pooling)
    logging.info("Wrote %s (%s; pooling %s).", output, model_config, pooling)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    main()
