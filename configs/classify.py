r"""Fine-tune on your own classification or regression data (TSV, CSV or JSON lines).

  python -m bert_jax.main --config=configs/classify.py:model=base --workdir=/tmp/mine \
    --config.init_checkpoint=/ckpt/bert-base --config.data_dir=/data/mine \
    --config.text_columns=review --config.label_column=stars --config.metrics=accuracy,f1

``data_dir`` holds ``train``, ``dev`` and optionally ``test`` files (``.tsv``, ``.csv`` or
``.jsonl``), or name each: ``--config.train_file=PATH``, ``dev_file``, ``test_file``. Sentence
pairs: ``--config.text_columns=premise,hypothesis``. Regression: ``--config.task_type=regression``
(metrics pearson, spearmanr). The label set is inferred from the training file (sorted) unless
given in index order, ``--config.labels=neg,neutral,pos``; a dev label outside it fails by name.
Test predictions (``id<TAB>prediction``, the label name) go to
WORKDIR/submission/test_predictions.tsv; the best checkpoint's dev predictions to
WORKDIR/predictions/dev/predictions.tsv. Reading rules and errors: ``bert_jax.tasks.own_data``.

The embedded default writes a generated example set into WORKDIR/own_data/ (a sentiment CSV;
``task_type=regression``: a JSON-lines set of rated review pairs) and fine-tunes the embedded
tiny pretraining run on it:

  python -m bert_jax.main --config=configs/classify.py:model=tiny --workdir=/tmp/own \
    --config.init_checkpoint=/tmp/bert_tiny

Arguments: ``model`` (tiny ... large), ``task_type`` (classification, regression).
"""

import ml_collections as mlc

from bert_jax.config_lib import finetune_config, parse_arg
from bert_jax.tasks import own_data


def get_config(arg: str | None = None) -> mlc.ConfigDict:
    arg = parse_arg(arg, model="base", task_type="classification")
    if arg.task_type not in own_data.TASK_TYPES:
        raise ValueError(f"Unknown task_type {arg.task_type!r}; use {own_data.TASK_TYPES}.")
    c = finetune_config("classification", arg.model)
    c.task = own_data.TASK  # not a GLUE task: the files below
    # The paper's fine-tuning protocol (finetune_config): batch 32, 3 epochs, lr 2e-5, length 128.
    c.data_source = "files"  # files (data_dir, or the *_file paths) | example (generated)
    c.train_file = mlc.FieldReference(None, field_type=str)  # these override data_dir's files
    c.dev_file = mlc.FieldReference(None, field_type=str)
    c.test_file = mlc.FieldReference(None, field_type=str)
    c.file_format = ""  # "" (by extension) | tsv | csv | jsonl
    c.text_columns = "sentence"  # one column, or two comma-separated for sentence pairs
    c.label_column = "label"
    c.id_column = ""  # "" -> the row's position in the file (written with the predictions)
    c.task_type = arg.task_type  # classification | regression
    c.labels = ""  # label names in index order, comma-separated; "" -> inferred from train
    # Comma-separated; the first picks the best checkpoint. Classification: accuracy, f1 (binary:
    # of the second label), matthews_corr ("" -> accuracy); regression: pearson, spearmanr ("" ->
    # both).
    c.metrics = ""

    if arg.model == "tiny":
        c.data_source = "example"
        if arg.task_type == "classification":
            c.text_columns, c.label_column = "review", "sentiment"
        else:
            c.text_columns, c.label_column = "review1,review2", "rating"
        c.id_column = "id"
        # As configs/glue.py:model=tiny. Measured on the regression example: Pearson 0.44 after
        # 3 epochs, 0.97 after 10 (lr 3e-4: 0.75 after 3).
        c.learning_rate = 1e-4
        c.num_epochs = 10.0
        c.max_seq_length = 64
        c.log_every_steps = 20

    c.lock()
    return c
