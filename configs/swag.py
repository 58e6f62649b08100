r"""SWAG fine-tuning with the BERT paper's recipe (section 4.4: 3 epochs, lr 2e-5, batch 16).

  python -m bert_jax.main --config=configs/swag.py:model=base --workdir=/tmp/swag \
    --config.init_checkpoint=/ckpt/bert-base --config.data_dir=/data/swag

``data_dir`` holds the official train.csv, val.csv and test.csv (github.com/rowanz/swagaf,
data/); TensorFlow Datasets has no SWAG builder. Every example is four rows
``[CLS] sent1 [SEP] sent2 + " " + ending_i [SEP]`` scored from the pooled output, a softmax over
the four. The best dev checkpoint's predictions go to WORKDIR/predictions/dev/predictions.csv,
the test predictions to WORKDIR/submission/swag_test.csv (``id,prediction,prob0..prob3``).

The embedded default fine-tunes the embedded tiny pretraining run on a synthetic SWAG:

  python -m bert_jax.main --config=configs/swag.py:model=tiny --workdir=/tmp/swag \
    --config.init_checkpoint=/tmp/bert_tiny

Arguments: ``model`` (tiny ... large: the hyperparameters' scale).
"""

import ml_collections as mlc

from bert_jax.config_lib import finetune_config, parse_arg


def get_config(arg: str | None = None) -> mlc.ConfigDict:
    arg = parse_arg(arg, model="base")
    c = finetune_config("multiple_choice", arg.model)
    # The paper's SWAG recipe; batch_size and eval_batch_size count examples (4 rows each).
    c.learning_rate = 2e-5
    c.batch_size = 16
    c.num_epochs = 3.0
    c.max_seq_length = 128
    c.eval_batch_size = 32
    c.data_source = "csv"  # csv (data_dir: the official files) | synthetic (embedded)
    c.synthetic_train_examples = 2048  # training examples of the synthetic set

    if arg.model == "tiny":
        c.data_source = "synthetic"
        c.max_seq_length = 48  # synthetic rows are 20-35 tokens; the pretraining run had 64
        c.learning_rate = 1e-4
        c.num_epochs = 3.0
        c.batch_size = 16
        c.log_every_steps = 20

    c.lock()
    return c
