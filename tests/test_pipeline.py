"""The grain pretraining loader: process split, dynamic/static masks, restore, padding, shapes."""

import collections
import glob
import json

import grain
import numpy as np
import orbax.checkpoint as ocp
import pytest
from array_record.python.array_record_module import ArrayRecordReader

from bert_jax.data import pipeline, pretraining
from bert_jax.prepare import prepare
from bert_jax.sharding import make_mesh
from bert_jax.train import global_batch

SEQ_LEN, MAX_PREDICTIONS = 64, 10
FIELDS = {
    "input_ids": (np.int32, (SEQ_LEN,)),
    "token_type_ids": (np.int32, (SEQ_LEN,)),
    "attention_mask": (np.int32, (SEQ_LEN,)),
    "masked_positions": (np.int32, (MAX_PREDICTIONS,)),
    "masked_ids": (np.int32, (MAX_PREDICTIONS,)),
    "masked_weights": (np.float32, (MAX_PREDICTIONS,)),
    "next_sentence_label": (np.int32, ()),
}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("pretraining"))
    prepare(
        out,
        synthetic=60,
        spm_vocab_size=250,
        max_seq_lengths=(SEQ_LEN,),
        dupe_factor=1,
        eval_fraction=0.1,
    )
    return out


def _records(data_dir: str, split: str) -> list[tuple[int, ...]]:
    records = []
    for path in sorted(glob.glob(f"{data_dir}/seq{SEQ_LEN}/{split}-*.array_record")):
        reader = ArrayRecordReader(path)
        records += [
            tuple(pair["input_ids"]) for r in reader.read_all() for pair in pretraining.parse_row(r)
        ]
        reader.close()
    return records


def _loader(data_dir, **kwargs):
    options = dict(
        split="train",
        seq_len=SEQ_LEN,
        global_batch_size=8,
        seed=3,
        max_predictions=MAX_PREDICTIONS,
        process_index=0,
        process_count=1,
    )
    options.update(kwargs)
    return pipeline.make_pretraining_loader(data_dir, **options)


def _rows(batch):
    """(original token ids, mask) per real row: masking undone with masked_positions/ids."""
    for i in range(len(batch["input_ids"])):
        n = int(batch["attention_mask"][i].sum())
        if n == 0:  # a padding row
            continue
        ids = batch["input_ids"][i, :n].copy()
        k = int(batch["masked_weights"][i].sum())
        positions = batch["masked_positions"][i, :k]
        masked = tuple(ids[positions].tolist()), tuple(positions.tolist())
        ids[positions] = batch["masked_ids"][i, :k]
        yield tuple(ids.tolist()), masked


def _check_shapes(batch, rows):
    assert set(batch) == set(FIELDS)
    for key, (dtype, shape) in FIELDS.items():
        assert batch[key].dtype == dtype and batch[key].shape == (rows, *shape), key


def test_processes_split_one_epoch_disjointly(data_dir):
    records = _records(data_dir, "train")
    assert len(set(records)) == len(records) > 40, "records must be distinct for this test"
    seen = {}
    num_batches = {}
    for process in (0, 1):
        loader = _loader(
            data_dir, num_epochs=1, process_index=process, process_count=2, global_batch_size=16
        )
        batches = list(loader)
        for batch in batches:
            _check_shapes(batch, 8)
        num_batches[process] = len(batches)
        seen[process] = collections.Counter(ids for b in batches for ids, _ in _rows(b))
    assert num_batches[0] == num_batches[1], "every process runs the same number of steps"
    assert not seen[0] & seen[1]
    assert seen[0] + seen[1] == collections.Counter(records), "the union is the whole epoch"


def test_dynamic_masks_change_per_epoch_and_survive_restore(data_dir):
    num_records = len(_records(data_dir, "train"))
    masks = collections.defaultdict(list)
    loader = _loader(data_dir, num_epochs=2, shuffle=True)
    for batch in loader:
        for ids, mask in _rows(batch):
            masks[ids].append(mask)
    assert len(masks) == num_records and all(len(m) == 2 for m in masks.values())
    changed = np.mean([m[0] != m[1] for m in masks.values()])
    assert changed > 0.9, changed

    loader = _loader(data_dir)
    for _ in range(7):
        next(loader)
    state = loader.get_state()
    json.dumps(state)  # small and serialisable: it goes into every checkpoint
    expected = [next(loader) for _ in range(3)]
    restored = _loader(data_dir)
    restored.set_state(state)
    for want in expected:
        got = next(restored)
        for key in FIELDS:
            np.testing.assert_array_equal(got[key], want[key])


def test_static_masks_repeat_every_epoch(data_dir):
    masks = collections.defaultdict(set)
    for batch in _loader(data_dir, num_epochs=3, dynamic=False):
        for ids, mask in _rows(batch):
            masks[ids].add(mask)
    assert all(len(m) == 1 for m in masks.values())


def test_masking_options_reach_the_examples(data_dir):
    batch = next(_loader(data_dir, mask_token_ratio=1.0, random_token_ratio=0.0, whole_word=True))
    _check_shapes(batch, 8)
    rows, cols = np.nonzero(batch["masked_weights"])
    positions = batch["masked_positions"][rows, cols]
    assert np.all(batch["input_ids"][rows, positions] != batch["masked_ids"][rows, cols])
    assert np.all(batch["input_ids"][rows, positions] == 4), "[MASK] everywhere"


def test_eval_loader_pads_final_batch(data_dir):
    records = _records(data_dir, "eval")
    global_batch_size = 2 * (len(records) // 2 + 3)  # more than the records: a padded batch
    rows = collections.Counter()
    num_padding = 0
    for process in (0, 1):
        loader = _loader(
            data_dir,
            split="eval",
            shuffle=False,
            num_epochs=1,
            global_batch_size=global_batch_size,
            process_index=process,
            process_count=2,
        )
        (batch,) = list(loader)
        _check_shapes(batch, global_batch_size // 2)
        padding = batch["attention_mask"][:, 0] == 0
        num_padding += padding.sum()
        assert np.all(batch["masked_weights"][padding] == 0)
        assert np.all(batch["input_ids"][padding] == 0)
        rows.update(ids for ids, _ in _rows(batch))
    assert rows == collections.Counter(records)
    assert num_padding == global_batch_size - len(records)


def test_loader_errors(data_dir):
    with pytest.raises(FileNotFoundError, match="--max_seq_length=32"):
        _loader(data_dir, seq_len=32)
    with pytest.raises(ValueError, match="not divisible"):
        _loader(data_dir, global_batch_size=9, process_count=2)


def test_global_batches_do_not_depend_on_the_process_count(data_dir):
    """Two processes' rows, side by side, are exactly one process's batch: same examples, masks."""
    single = _loader(data_dir, global_batch_size=8)
    halves = [
        _loader(data_dir, global_batch_size=8, process_index=p, process_count=2) for p in (0, 1)
    ]
    for _ in range(6):  # across an epoch boundary of the small fixture too
        want = next(single)
        parts = [next(h) for h in halves]
        for key in FIELDS:
            np.testing.assert_array_equal(np.concatenate([p[key] for p in parts]), want[key])


def test_global_batch_shards_rows_over_devices(data_dir):
    mesh = make_mesh((-1, 1, 1))
    local = next(_loader(data_dir))
    arrays = global_batch(local, mesh)
    for key, value in local.items():
        assert arrays[key].shape == value.shape
        assert len(arrays[key].addressable_shards) == 8
        np.testing.assert_array_equal(np.asarray(arrays[key]), value)


@pytest.mark.slow
def test_worker_processes_give_the_same_batches(data_dir):
    single = _loader(data_dir)
    expected = [next(single) for _ in range(4)]
    loader = _loader(data_dir, worker_count=2)
    for want in expected:
        got = next(loader)
        for key in FIELDS:
            np.testing.assert_array_equal(got[key], want[key])


def test_orbax_checkpoint_roundtrip(data_dir, tmp_path):
    loader = _loader(data_dir)
    next(loader)
    manager = ocp.CheckpointManager(
        str(tmp_path), options=ocp.CheckpointManagerOptions(enable_async_checkpointing=False)
    )
    manager.save(1, args=ocp.args.Composite(data=grain.checkpoint.CheckpointSave(loader)))
    expected = next(loader)
    restored = _loader(data_dir)
    manager.restore(1, args=ocp.args.Composite(data=grain.checkpoint.CheckpointRestore(restored)))
    got = next(restored)
    for key in FIELDS:
        np.testing.assert_array_equal(got[key], expected[key])
