r"""Runs a sweep; the same as ``python -m bert_jax.sweep`` (see there for the flags).

python launch/sweep.py --sweep=configs/ablations/masking.py:model=tiny --sweep_dir=/tmp/masking
"""

import pathlib
import sys

# Lets the script run from a checkout where bert_jax is not installed.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from absl import app  # noqa: E402

from bert_jax.sweep import main  # noqa: E402

if __name__ == "__main__":
    app.run(main)
