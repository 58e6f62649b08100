"""Faults a long run meets (``bert_jax.faults``): a damaged shard, a changed dataset under a resumed
run, two runs on one workdir, a full disk during a save. Each must end in a message that names the
thing and the fix, and lose nothing committed: the last checkpoint restores and the run resumes to
the losses of a run that met no fault.

The runs are in-process pretraining runs of the tiny model (2 steps from a checkpoint); they share
one compilation through JAX's persistent cache.
"""

import errno
import json
import logging
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time

import jax
import numpy as np
import pytest
from jax.experimental.compilation_cache import compilation_cache

from bert_jax import checkpoints, faults, pretrain
from bert_jax.config_lib import load_config
from bert_jax.prepare import prepare
from tests.local_jobs import run_processes

ROOT = pathlib.Path(__file__).parent.parent
TRAIN = "seq32/train-00000-of-00001.array_record"
STEPS = 6


@pytest.fixture(scope="module", autouse=True)
def compile_once(tmp_path_factory):
    """Every run here compiles the same step: the persistent cache makes that once (a run takes
    about 5 s instead of 15 s on 2 cores)."""
    names = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs")
    before = {name: getattr(jax.config, name) for name in names}
    jax.config.update(names[0], str(tmp_path_factory.mktemp("jax_cache")))
    jax.config.update(names[1], 0)
    compilation_cache.reset_cache()
    yield
    for name, value in before.items():
        jax.config.update(name, value)
    compilation_cache.reset_cache()


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("data") / "prepared"
    prepare(str(out), synthetic=100, spm_vocab_size=256, max_seq_lengths=[32], seed=0)
    return out


def config(data_dir, **overrides):
    fields = {
        "data.data_dir": data_dir,
        "data.synthetic_documents": 0,
        "data.seq_len": 32,
        "data.max_predictions": 5,
        "batch_size": 8,
        "total_steps": STEPS,
        "log_every_steps": 1,
        "eval_every_steps": 0,
        "checkpoint_every_steps": 2,
        "schedule": "constant",
        "warmup_steps": 0,
        "learning_rate": 1e-3,
        **overrides,
    }
    return load_config(
        [f"--config={ROOT}/configs/pretrain.py:model=tiny"]
        + [f"--config.{k}={v}" for k, v in fields.items()]
    )


def losses(workdir):
    """Each step's loss as last logged (a resumed run logs again the steps it trains again)."""
    with open(workdir / "metrics.jsonl") as f:
        by_step = {row["step"]: row["loss"] for row in map(json.loads, f)}
    return np.array([by_step[step] for step in sorted(by_step)])


def committed_steps(workdir):
    return sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())


@pytest.fixture(scope="module")
def straight(data_dir, tmp_path_factory):
    """The run that meets no fault: 6 steps, checkpoints at 2, 4 and 6."""
    workdir = tmp_path_factory.mktemp("straight")
    pretrain.train_and_evaluate(config(data_dir), str(workdir))
    assert committed_steps(workdir) == [2, 4, 6]
    return workdir


@pytest.fixture
def at_step_2(straight, tmp_path):
    """A run stopped after its checkpoint of step 2 (the straight run, cut back)."""
    workdir = tmp_path / "run"
    shutil.copytree(straight, workdir)
    for step in (4, 6):
        shutil.rmtree(workdir / "checkpoints" / str(step))
    (workdir / "results.json").unlink()
    kept = (workdir / "metrics.jsonl").read_text().splitlines()[:2]
    (workdir / "metrics.jsonl").write_text("\n".join(kept) + "\n")
    return workdir


def resumes_to_the_same_losses(data_dir, workdir, straight, **overrides):
    """The last committed checkpoint restores; the run ends with the straight run's losses."""
    pretrain.train_and_evaluate(config(data_dir, **overrides), str(workdir))
    np.testing.assert_array_equal(losses(workdir), losses(straight))


@pytest.fixture
def no_compile(monkeypatch):
    """Fails the test if a run gets as far as building (compiling) its train state."""

    def compiled(*args, **kwargs):
        raise AssertionError("the run compiled before failing")

    monkeypatch.setattr(pretrain, "create_train_state", compiled)
    return monkeypatch


# ----------------------------------------------------------------------------------------------
# 1. Damaged or missing shards.
# ----------------------------------------------------------------------------------------------
def test_truncated_missing_unreadable_or_foreign_shard_fails_before_compiling(
    data_dir, straight, at_step_2, no_compile, tmp_path
):
    shard = data_dir / TRAIN
    original = tmp_path / "original.array_record"
    shutil.copy(shard, original)
    size = shard.stat().st_size
    rewrite = f"python -m bert_jax.prepare --output={data_dir} --synthetic=100 --vocab_dir="

    def cut_short():  # a copy interrupted
        os.truncate(shard, size // 2)

    def footer_overwritten():  # same size, unreadable
        with open(shard, "r+b") as f:
            f.seek(size - 70_000)
            f.write(b"\xff" * 70_000)

    def foreign():  # a shard of another preparation, in the same folder
        shutil.copy(original, data_dir / "seq32/train-00001-of-00002.array_record")

    faults_and_messages = [
        (cut_short, f"{shard} has {size // 2} bytes where prepare wrote {size}: it was cut short"),
        (shard.unlink, f"{shard} is missing"),
        (footer_overwritten, f"{shard} cannot be read"),
        (foreign, "train-00001-of-00002.array_record is not part of the preparation"),
    ]
    for damage, message in faults_and_messages:
        damage()
        with pytest.raises(faults.DataError) as failure:
            pretrain.train_and_evaluate(config(data_dir), str(at_step_2))
        assert message in str(failure.value)
        if damage is not foreign:
            assert rewrite in str(failure.value), str(failure.value)
        (data_dir / "seq32/train-00001-of-00002.array_record").unlink(missing_ok=True)
        shutil.copy(original, shard)

    assert committed_steps(at_step_2) == [2]
    no_compile.undo()
    resumes_to_the_same_losses(data_dir, at_step_2, straight)


def test_shard_damaged_while_the_run_reads_it_names_the_file_and_the_step(
    data_dir, straight, at_step_2, monkeypatch, tmp_path
):
    shard = data_dir / TRAIN
    shutil.copy(shard, tmp_path / "original.array_record")
    make_loader = pretrain.make_loader

    def damaged_after_opening(*args, **kwargs):
        loader = make_loader(*args, **kwargs)
        with open(shard, "r+b") as f:  # the records' chunks, not the footer read at opening
            f.seek(4096)
            f.write(os.urandom(shard.stat().st_size - 70_000))
        return loader

    monkeypatch.setattr(pretrain, "make_loader", damaged_after_opening)
    with pytest.raises(faults.DataError) as failure:
        pretrain.train_and_evaluate(config(data_dir), str(at_step_2))
    message = str(failure.value)
    assert message.startswith(f"Step 3: {shard} is damaged (Corrupted Riegeli/records file")
    assert f"--output={data_dir}" in message
    assert f"The last committed checkpoint, {at_step_2}/checkpoints/2, is intact" in message
    assert committed_steps(at_step_2) == [2]

    monkeypatch.undo()
    shutil.copy(tmp_path / "original.array_record", shard)  # the fix: copy it again
    resumes_to_the_same_losses(data_dir, at_step_2, straight)


# ----------------------------------------------------------------------------------------------
# 2. A changed dataset under a resumed run.
# ----------------------------------------------------------------------------------------------
def test_resuming_on_changed_data_is_refused_unless_allowed(
    data_dir, straight, at_step_2, no_compile, tmp_path
):
    other = tmp_path / "other"
    prepare(str(other), synthetic=100, spm_vocab_size=256, max_seq_lengths=[32], seed=1)
    shutil.move(data_dir, tmp_path / "ours")
    shutil.copytree(other, data_dir)  # another preparation under the same path
    try:
        with pytest.raises(faults.DataError) as failure:
            pretrain.train_and_evaluate(config(data_dir), str(at_step_2))
        message = str(failure.value)
        assert f"{at_step_2}/checkpoints/2 was reading other data than this run would" in message
        assert f"{TRAIN}: bytes " in message and "settings: seed 0 -> 1" in message
        assert "--config.allow_data_change=True" in message

        allowed = tmp_path / "allowed"
        shutil.copytree(at_step_2, allowed)
        no_compile.undo()
        pretrain.train_and_evaluate(config(data_dir, allow_data_change=True), str(allowed))
        lines = (allowed / "data_changes.jsonl").read_text().splitlines()
        (record,) = [json.loads(line) for line in lines]
        assert record["step"] == 2 and any(TRAIN in change for change in record["changes"])
        assert committed_steps(allowed)[-1] == STEPS
    finally:
        shutil.rmtree(data_dir)
        shutil.move(tmp_path / "ours", data_dir)
    assert committed_steps(at_step_2) == [2]
    resumes_to_the_same_losses(data_dir, at_step_2, straight)


def test_fine_tuning_fingerprint_names_the_changed_file_and_split(tmp_path):
    from bert_jax.tasks import Features

    train = tmp_path / "train.tsv"
    train.write_text("sentence\tlabel\nfine\t1\n")

    def fingerprint():
        with faults.files_read() as files:
            rows = train.read_text().splitlines()[1:]
            import bert_jax.tasks.glue  # noqa: F401  (module files are not data)
        features = {"train": Features({"input_ids": np.arange(len(rows))[:, None]})}
        return faults.finetune_fingerprint(features, files)

    before = fingerprint()
    assert set(before) == {"train split", str(train)}
    train.write_text("sentence\tlabel\nfine\t1\nbad\t0\n")
    changes = faults.data_changes(before, fingerprint())
    assert changes[0].startswith(f"{train}: bytes 22 -> 28, sha256 ")
    assert changes[1].startswith("train split: rows 1 -> 2, sha256 ")


# ----------------------------------------------------------------------------------------------
# 3. Two runs on one workdir.
# ----------------------------------------------------------------------------------------------
def write_lock(workdir, pid, host=None, heartbeat_age=0.0):
    holder = faults.Holder(
        host=host or socket.gethostname(),
        pid=pid,
        started="2026-12-06T10:00:00+00:00",
        heartbeat=time.time() - heartbeat_age,
        token="theirs",
        command="python -m bert_jax.main ...",
    )
    (workdir / faults.LOCK_FILE).write_text(json.dumps(holder.__dict__))


def test_a_held_workdir_is_refused_and_a_dead_runs_lock_taken_over(
    data_dir, straight, at_step_2, no_compile, caplog
):
    other_run = subprocess.Popen(["sleep", "60"])
    write_lock(at_step_2, other_run.pid)
    config_before = (at_step_2 / "config.json").read_text()
    start = time.monotonic()
    with pytest.raises(faults.WorkdirLocked) as failure:
        pretrain.train_and_evaluate(config(data_dir), str(at_step_2))
    assert time.monotonic() - start < 2, "refused at once"
    message = str(failure.value)
    assert f"{at_step_2} is held by another run: pid {other_run.pid} on host " in message
    assert "started 2026-12-06T10:00:00+00:00" in message and "use another --workdir" in message
    assert (at_step_2 / "config.json").read_text() == config_before

    other_run.send_signal(signal.SIGKILL)  # killed: its lock stays behind
    other_run.wait()
    no_compile.undo()
    with caplog.at_level(logging.WARNING):
        resumes_to_the_same_losses(data_dir, at_step_2, straight)
    assert f"process {other_run.pid} is no longer running" in caplog.text
    assert not (at_step_2 / faults.LOCK_FILE).exists(), "released at the end"


def test_another_hosts_lock_is_stale_once_its_heartbeat_stops(tmp_path):
    write_lock(tmp_path, pid=1, host="node-17", heartbeat_age=10)
    with pytest.raises(faults.WorkdirLocked, match="pid 1 on host node-17"):
        faults.WorkdirLock(str(tmp_path)).acquire()
    write_lock(tmp_path, pid=1, host="node-17", heartbeat_age=faults.STALE_SECONDS + 1)
    lock = faults.WorkdirLock(str(tmp_path), heartbeat_seconds=0.05)
    lock.acquire()  # taken over
    first = lock.read().heartbeat
    time.sleep(0.3)
    assert lock.read().heartbeat > first and lock.read().pid == os.getpid(), "heartbeat refreshed"
    with pytest.raises(faults.WorkdirLocked, match=f"pid {os.getpid()}"):
        faults.WorkdirLock(str(tmp_path)).acquire()
    lock.release()
    assert not (tmp_path / faults.LOCK_FILE).exists()


TWO_PROCESSES = textwrap.dedent(
    """
    import json, os, sys
    import jax
    jax.distributed.initialize(f"127.0.0.1:{sys.argv[1]}", 2, int(sys.argv[2]))
    from jax.experimental import multihost_utils
    from bert_jax import faults
    held, free = sys.argv[3:5]
    try:
        with faults.hold_workdir(held):
            print("not refused")
    except faults.WorkdirLocked as e:
        print("refused:", e)
    with faults.hold_workdir(free):
        holder = faults.WorkdirLock(free).read()
        print(json.dumps({"pid": os.getpid(), "holder": holder.pid}))
        multihost_utils.sync_global_devices("both inside")
    """
)


def test_a_two_process_job_holds_the_workdir_once_and_is_refused_together(tmp_path, free_port):
    (tmp_path / "held").mkdir()
    write_lock(tmp_path / "held", pid=os.getpid())  # this live process holds it
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=1"}
    paths = [str(tmp_path / "held"), str(tmp_path / "free")]
    commands = [
        [sys.executable, "-c", TWO_PROCESSES, str(free_port), str(i), *paths] for i in range(2)
    ]
    outputs = run_processes(commands, ROOT, env, timeout=300)
    pids = []
    for out in outputs:
        refused, held = out.splitlines()[-2:]
        assert refused.startswith(f"refused: {paths[0]} is held by another run: pid {os.getpid()}")
        pids.append(json.loads(held))
    assert pids[0]["holder"] == pids[1]["holder"] == pids[0]["pid"], "process 0 holds it, once"
    assert not (tmp_path / "free" / faults.LOCK_FILE).exists()


# ----------------------------------------------------------------------------------------------
# 4. A full disk or a failing filesystem during a save.
# ----------------------------------------------------------------------------------------------
def fail_writes_at(monkeypatch, steps):
    """orbax's array writes raise ENOSPC in the background while saving one of ``steps``."""
    from orbax.checkpoint._src.serialization import serialization

    write = serialization.async_serialize_from_host

    async def disk_full(rslices, spec, *args, **kwargs):
        if any(f"/{step}.orbax-checkpoint-tmp" in str(spec) for step in steps):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "d/0123")
        return await write(rslices, spec, *args, **kwargs)

    monkeypatch.setattr(serialization, "async_serialize_from_host", disk_full)


def checkpoint_bytes(workdir):
    state = checkpoints.pretrained.restore_host_arrays(workdir / "checkpoints/2/state")
    return sum(np.asarray(x).nbytes for x in jax.tree.leaves(state))


def test_full_disk_during_a_save_stops_the_run_and_keeps_the_last_checkpoint(
    data_dir, straight, at_step_2, monkeypatch
):
    fail_writes_at(monkeypatch, [4])
    with pytest.raises(checkpoints.SaveError) as failure:
        pretrain.train_and_evaluate(config(data_dir), str(at_step_2))
    message = str(failure.value)
    directory = at_step_2 / "checkpoints"
    assert f"Checkpoint step 4 could not be saved in {directory} (no space left on device)" in (
        message
    )
    assert f"needs about {checkpoint_bytes(at_step_2) / 1e6:,.1f} MB" in message
    assert f"The last committed checkpoint, {directory}/2, is intact" in message
    assert "--config.keep_going_on_save_error=True" in message
    assert committed_steps(at_step_2) == [2], "stopped at the next save: no step 6"

    monkeypatch.undo()
    resumes_to_the_same_losses(data_dir, at_step_2, straight)


def test_keep_going_on_save_error_trains_on_and_saves_again(
    data_dir, straight, at_step_2, monkeypatch, caplog
):
    fail_writes_at(monkeypatch, [4])
    with caplog.at_level(logging.ERROR):
        resumes_to_the_same_losses(data_dir, at_step_2, straight, keep_going_on_save_error=True)
    assert "Checkpoint step 4 could not be saved" in caplog.text
    assert "Training goes on" in caplog.text
    assert committed_steps(at_step_2) == [2, 6]


REAL_DISK = textwrap.dedent(
    """
    import sys
    from bert_jax import checkpoints, pretrain
    from tests.test_faults import config
    try:
        pretrain.train_and_evaluate(config(sys.argv[1]), sys.argv[2])
    except checkpoints.SaveError as e:
        print(e)
        sys.exit(3)
    """
)


def test_a_real_full_filesystem_during_a_save(data_dir, straight, at_step_2, tmp_path):
    """A tmpfs of 8 MB in a user namespace: the checkpoint of step 2 (5.4 MB) fits, step 4's not."""
    mount = tmp_path / "small_disk"
    mount.mkdir()
    probe = ["unshare", "-rm", "mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)]
    if subprocess.run(probe, capture_output=True).returncode:
        pytest.skip("no user namespace here to mount a small tmpfs in")
    script = (
        f"mount -t tmpfs -o size=8m tmpfs {mount} && cp -r {at_step_2} {mount}/run && "
        f'{sys.executable} -c "$0" {data_dir} {mount}/run; rc=$?; '
        f"rm -r {at_step_2} && cp -r {mount}/run {at_step_2}; exit $rc"
    )
    env = {
        **os.environ,
        "XLA_FLAGS": "--xla_force_host_platform_device_count=8",
        "JAX_COMPILATION_CACHE_DIR": jax.config.jax_compilation_cache_dir,
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
    }
    proc = subprocess.run(
        ["unshare", "-rm", "sh", "-c", script, REAL_DISK],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    errors = "\n".join(line for line in proc.stderr.splitlines() if "Error" in line)
    assert proc.returncode == 3, errors[-3000:]
    directory = mount / "run" / "checkpoints"
    assert f"Checkpoint step 4 could not be saved in {directory} (no space left" in proc.stdout
    assert f"The last committed checkpoint, {directory}/2, is intact" in proc.stdout
    assert committed_steps(at_step_2) == [2]
    resumes_to_the_same_losses(data_dir, at_step_2, straight)
