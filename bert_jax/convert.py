"""Converts a Hugging Face or original-TF BERT checkpoint into a bert_jax pretrained directory.

Usage::

    python -m bert_jax.convert --from=hf --input=bert-base-uncased/ --output=ckpt/bert-base
    python -m bert_jax.convert --from=tf --input=uncased_L-12_H-768_A-12/bert_model.ckpt \\
        --output=ckpt/bert-base-tf   # bert_config.json and vocab.txt are found next to the input

The vocabulary (``--vocab``, else ``vocab.txt`` next to the input) becomes a WordPiece tokenizer in
``OUTPUT/tokenizer``; lower-casing comes from ``--lower_case``, else from the ``do_lower_case`` of a
Hugging Face ``tokenizer_config.json``, else defaults to true (the uncased models).
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
from pathlib import Path

from bert_jax import interop, pretrained, tokenizers


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
    parser.add_argument("--vocab", help="WordPiece vocab.txt; default: vocab.txt next to --input")
    parser.add_argument("--lower_case", choices=("true", "false"), help="default: see above")
    return parser.parse_args(argv)


def _lower_case(flag: str | None, input_dir: Path) -> bool:
    if flag is not None:
        return flag == "true"
    config = input_dir / "tokenizer_config.json"
    if config.is_file():
        with config.open() as f:
            return bool(json.load(f).get("do_lower_case", True))
    return True


def main(argv: list[str] | None = None) -> None:
    args = _parse(argv)
    source = Path(args.input)
    input_dir = source if args.source == "hf" else source.parent
    output = Path(args.output)
    # Fail before the (possibly long) conversion rather than after it.
    if output.exists() and any(output.iterdir()):
        raise FileExistsError(f"{output} exists and is not empty; choose a new --output.")

    if args.source == "hf":
        model_config, params = interop.load_hf(source)
    else:
        bert_config = args.bert_config or input_dir / "bert_config.json"
        model_config, params = interop.load_tf(source, bert_config)

    vocab = Path(args.vocab) if args.vocab else input_dir / "vocab.txt"
    if args.vocab and not vocab.is_file():
        raise FileNotFoundError(f"--vocab={vocab} does not exist.")
    with tempfile.TemporaryDirectory() as staging:
        tokenizer_dir = None
        if vocab.is_file():
            tokenizer = tokenizers.WordPiece(str(vocab), _lower_case(args.lower_case, input_dir))
            tokenizer.save(staging)
            tokenizer_dir = staging
        else:
            logging.warning("No %s; writing %s without a tokenizer (pass --vocab).", vocab, output)
        pretrained.save(output, model_config, params, tokenizer_dir=tokenizer_dir)
    logging.info("Wrote %s (%s).", output, model_config)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    main()
