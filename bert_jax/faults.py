"""The mundane faults of a long run, each stopped with a message that names the thing and the fix.

- **Damaged, missing or foreign shards** (:func:`check_prepared`): before anything compiles, every
  shard a pretraining run will read is checked against what ``prepare`` recorded in its summaries
  (record counts and sizes; sha256 too with ``data.verify_checksums``). A shard damaged while the
  run reads it is found by :func:`damaged_shard` and named with the step.
- **A changed dataset under a resumed run** (:func:`data_changes`): checkpoints record a fingerprint
  of the data they were reading (:func:`check_prepared`'s for pretraining,
  :func:`finetune_fingerprint` for fine-tuning); resuming on other data is refused unless
  ``allow_data_change`` says so (``bert_jax.checkpoints.Checkpointer.check_same_data``).
- **Two runs on one workdir** (:func:`hold_workdir`): a lock file names its holder (host, pid,
  start) and carries a heartbeat; a second run refuses at once, a killed run's lock is taken over.
- **A failing save** is ``bert_jax.checkpoints.Checkpointer``'s: it names the directory and the
  bytes a checkpoint needs, and stops the run (or, asked to, retries at the next checkpoint step).

Usage::

    with hold_workdir(workdir):
        fingerprint = check_prepared(data_dir, [(128, "train"), (128, "eval")])
        ...
"""

from __future__ import annotations

import _thread
import contextlib
import dataclasses
import datetime
import glob
import hashlib
import json
import logging
import os
import re
import socket
import sys
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils

from bert_jax import prepare


class DataError(ValueError):
    """Data a run cannot trust: a damaged, missing or foreign shard, or a changed dataset."""


# ----------------------------------------------------------------------------------------------
# Shards written by `python -m bert_jax.prepare`.
# ----------------------------------------------------------------------------------------------
_SHARD = re.compile(r"-(\d{5})-of-(\d{5})\.\w+$")
EMBEDDED_MARKER = "DONE"  # written by pretrain.prepare_embedded_corpus once the corpus is ready


def _shard_name(index: int, count: int) -> str:
    return f"{index:05d}-of-{count:05d}"


def _read_summaries(data_dir: str) -> dict[int, dict[str, Any]]:
    """shard index -> summary; every shard of the preparation must have one."""
    paths = sorted(glob.glob(os.path.join(data_dir, "summary-*-of-*.json")))
    if not paths:
        raise DataError(
            f"{data_dir} holds no summary-*.json: it was not written by `python -m "
            "bert_jax.prepare`, or its preparation was cut short (a shard's summary is written "
            "last). Prepare it again into a new --output."
        )
    counts = {int(_SHARD.search(p).group(2)) for p in paths}
    if len(counts) > 1:
        raise DataError(
            f"{data_dir} mixes the summaries of preparations into {sorted(counts)} shards: "
            "move the other preparation's files out (or prepare into a new --output)."
        )
    summaries: dict[int, dict[str, Any]] = {}
    for path in paths:
        try:
            with open(path) as f:
                summaries[int(_SHARD.search(path).group(1))] = json.load(f)
        except (OSError, ValueError) as e:
            raise DataError(f"{path} cannot be read ({e}): {_rewrite(data_dir, {}, path)}") from e
    count = counts.pop()
    missing = sorted(set(range(count)) - set(summaries))
    if missing:
        path = os.path.join(data_dir, f"summary-{_shard_name(missing[0], count)}.json")
        raise DataError(
            f"{path} is missing: shard {missing[0]} of {count} was not prepared, or its "
            f"preparation was cut short (shards without a summary: {missing}). "
            + _rewrite(data_dir, summaries, path)
        )
    return summaries


def _rewrite(data_dir: str, summaries: Mapping[int, dict[str, Any]], path: str) -> str:
    """How to write again the shard that ``path`` belongs to."""
    if os.path.exists(os.path.join(data_dir, EMBEDDED_MARKER)):
        return (
            f"Delete {data_dir} and re-run the same command: the embedded corpus is prepared "
            "again, identically."
        )
    index, count = (int(g) for g in _SHARD.search(path).groups())
    name = _shard_name(index, count)
    files = [f"summary-{name}.json"] + [
        os.path.relpath(p, data_dir)
        for p in sorted(glob.glob(os.path.join(data_dir, f"seq*/*-{name}.array_record")))
    ]
    arguments = next((s["arguments"] for s in summaries.values() if "arguments" in s), None)
    if arguments is None:  # prepared before summaries recorded their arguments
        command = (
            f"python -m bert_jax.prepare --output={data_dir} --vocab_dir={data_dir}/tokenizer "
            f"--num_shards={count} --shard_index={index} with the input and settings it was "
            "prepared with"
        )
    else:
        command = f"`{prepare.shard_command(data_dir, arguments, index)}`"
    return (
        f"Copy shard {index} of {count} again from where it came from, or write it again: delete "
        f"its files in {data_dir} ({', '.join(files)}) and run {command}."
    )


def _count_records(path: str) -> int:
    """The record count in an array_record file's footer, read as the loader reads it."""
    from array_record.python.array_record_data_source import ArrayRecordDataSource

    return len(ArrayRecordDataSource([path]))


def check_prepared(
    data_dir: str, reads: Iterable[tuple[int, str]], verify_checksums: bool = False
) -> dict[str, dict[str, Any]]:
    """Checks every shard of the ``(seq_len, split)`` pairs in ``reads`` against the summaries of
    ``prepare``; returns the data's fingerprint (what a checkpoint records).

    Raises:
      DataError: naming the first missing, truncated, unreadable or foreign file, and the command
        that writes its shard again.
    """
    summaries = _read_summaries(data_dir)
    count = len(summaries)
    settings = summaries[0].get("settings", {})
    fingerprint: dict[str, dict[str, Any]] = {"settings": {**settings, "num_shards": count}}
    for seq_len, split in sorted(set(reads)):
        folder = os.path.join(data_dir, f"seq{seq_len}")
        expected = {f"{split}-{_shard_name(i, count)}.array_record": i for i in range(count)}
        found = {os.path.basename(p) for p in glob.glob(f"{folder}/{split}-*-of-*.array_record")}
        foreign = sorted(found - set(expected))
        if foreign:  # the loader reads every file of the split's pattern
            raise DataError(
                f"{folder}/{foreign[0]} is not part of the preparation in {data_dir} (its "
                f"summaries describe {count} shard(s)), yet the loader would read it. Move it out "
                "of that folder, or prepare into a new --output."
            )
        for name, index in expected.items():
            path, relative = os.path.join(folder, name), f"seq{seq_len}/{name}"
            summary = summaries[index]
            rows = summary.get("rows", summary.get("instances", {})).get(str(seq_len))
            if rows is None:
                raise DataError(
                    f"{data_dir} was prepared for lengths {sorted(summary.get('rows', {}))}, not "
                    f"{seq_len}: prepare it with --max_seq_length={seq_len} into a new --output."
                )
            recorded = summary.get("files", {}).get(relative, {"records": rows[split]})
            fingerprint[relative] = _check_shard(path, recorded, verify_checksums, summaries)
    return fingerprint


def _check_shard(path: str, recorded: dict[str, Any], verify_checksums: bool, summaries) -> dict:
    data_dir = os.path.dirname(os.path.dirname(path))
    if not os.path.exists(path):
        raise DataError(f"{path} is missing. {_rewrite(data_dir, summaries, path)}")
    size = os.path.getsize(path)
    if "bytes" in recorded and size != recorded["bytes"]:
        how = "cut short (a copy interrupted?)" if size < recorded["bytes"] else "longer"
        raise DataError(
            f"{path} has {size} bytes where prepare wrote {recorded['bytes']}: it was {how}. "
            + _rewrite(data_dir, summaries, path)
        )
    try:
        records = _count_records(path)
    except Exception as e:
        raise DataError(
            f"{path} cannot be read ({e}). {_rewrite(data_dir, summaries, path)}"
        ) from e
    if records != recorded["records"]:
        raise DataError(
            f"{path} holds {records} records where prepare wrote {recorded['records']}. "
            + _rewrite(data_dir, summaries, path)
        )
    if (
        verify_checksums
        and "sha256" in recorded
        and prepare.file_sha256(path) != recorded["sha256"]
    ):
        raise DataError(
            f"{path} does not have the sha256 prepare recorded: its bytes were changed. "
            + _rewrite(data_dir, summaries, path)
        )
    return {
        "records": records,
        "bytes": size,
        **{k: v for k, v in recorded.items() if k == "sha256"},
    }


def damaged_shard(paths: Sequence[str], keys: Sequence[int], error: Exception) -> DataError:
    """The error for a read of records ``keys`` of the files ``paths`` (read as one source) that
    failed with ``error``: names the file that fails when read alone."""
    from array_record.python.array_record_data_source import ArrayRecordDataSource

    start = 0
    for path in paths:
        try:
            end = start + _count_records(path)
            mine = [k - start for k in keys if start <= k < end]
            if mine:
                ArrayRecordDataSource([path]).__getitems__(mine)
        except Exception:
            data_dir = os.path.dirname(os.path.dirname(path))
            summaries = {}
            with contextlib.suppress(DataError):
                summaries = _read_summaries(data_dir)
            return DataError(f"{path} is damaged ({error}). {_rewrite(data_dir, summaries, path)}")
        start = end
    return DataError(f"Reading records of {', '.join(paths)} failed: {error}")


# ----------------------------------------------------------------------------------------------
# What a checkpoint records of its data, and the differences a resumed run is shown.
# ----------------------------------------------------------------------------------------------
def _array_hash(arrays: Mapping[str, np.ndarray]) -> str:
    digest = hashlib.sha256()
    for key in sorted(arrays):
        array = np.ascontiguousarray(arrays[key])
        digest.update(f"{key}:{array.dtype.str}:{array.shape};".encode())
        digest.update(array.data)
    return digest.hexdigest()


def finetune_fingerprint(
    features: Mapping[str, Any], files: Iterable[str], workdir: str | None = None
) -> dict[str, dict]:
    """Each split's rows and a hash of its featurized arrays (what the run trains and evaluates
    on), and the size and sha256 of every file the family read them from. Files inside
    ``workdir`` (generated data) are named ``WORKDIR/...``, so a copied or moved workdir resumes."""
    fingerprint = {
        f"{name} split": {"rows": len(split), "sha256": _array_hash(split.arrays)}
        for name, split in features.items()
    }
    inside = os.path.join(os.path.realpath(workdir), "") if workdir else None
    for path in sorted(set(files)):
        name = "WORKDIR/" + path[len(inside) :] if inside and path.startswith(inside) else path
        fingerprint[name] = {"bytes": os.path.getsize(path), "sha256": prepare.file_sha256(path)}
    return fingerprint


def data_changes(recorded: Mapping[str, dict], current: Mapping[str, dict]) -> list[str]:
    """What differs between two fingerprints, one line per file or split."""
    changes = []
    for name in sorted(set(recorded) | set(current)):
        if name not in current:
            changes.append(f"{name}: no longer read")
        elif name not in recorded:
            changes.append(f"{name}: new")
        elif recorded[name] != current[name]:
            before, after = recorded[name], current[name]
            fields = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
            changes.append(
                f"{name}: " + ", ".join(f"{k} {before.get(k)} -> {after.get(k)}" for k in fields)
            )
    return changes


_reads: list[str] | None = None  # while files_read() records
_hooked = False
_excluded = tuple(
    os.path.join(os.path.realpath(p), "")
    for p in {sys.prefix, sys.base_prefix, "/proc", "/sys", "/dev", "/etc", "/usr"}
)


def _audit(event: str, args: tuple) -> None:
    if event != "open" or _reads is None or not isinstance(args[0], str | os.PathLike):
        return
    path, mode, flags = args
    reading = not set(mode or "") & set("wax+") if mode else flags & os.O_ACCMODE == os.O_RDONLY
    if reading:
        _reads.append(os.path.realpath(path))


@contextlib.contextmanager
def files_read() -> Iterator[list[str]]:
    """The data files Python opens for reading inside the block (a family's TSV, JSON, CoNLL
    files). Readers in C++ (TFDS's array_record sources) are not seen; the features' hashes
    cover what they read."""
    global _reads, _hooked
    if not _hooked:
        sys.addaudithook(_audit)  # for the process's life: audit hooks cannot be removed
        _hooked = True
    _reads, found = [], []
    try:
        yield found
    finally:
        opened, _reads = _reads, None
        found += sorted(
            {
                p
                for p in opened
                if not p.startswith(_excluded)
                and not p.endswith((".py", ".pyc", ".so"))
                and os.path.isfile(p)
            }
        )


# ----------------------------------------------------------------------------------------------
# One run per workdir.
# ----------------------------------------------------------------------------------------------
LOCK_FILE = "run.lock"
HEARTBEAT_SECONDS = 30.0  # how often the holder rewrites its heartbeat
STALE_SECONDS = 300.0  # a lock whose heartbeat is older than this is a dead run's


class WorkdirLocked(RuntimeError):
    """The workdir is held by another live run."""


def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return ""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


@dataclasses.dataclass
class Holder:
    """Who holds a workdir (the lock file's contents)."""

    host: str
    pid: int
    started: str
    heartbeat: float  # time.time() of the last heartbeat
    token: str
    boot_id: str = ""
    command: str = ""

    @classmethod
    def me(cls) -> Holder:
        return cls(
            host=socket.gethostname(),
            pid=os.getpid(),
            started=datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            heartbeat=time.time(),
            token=uuid.uuid4().hex,
            boot_id=_boot_id(),
            command=" ".join(sys.argv),
        )

    def describe(self) -> str:
        return (
            f"pid {self.pid} on host {self.host}, started {self.started}, last heartbeat "
            f"{time.time() - self.heartbeat:.0f} s ago (command: {self.command or '?'})"
        )

    def stale_because(self, stale_seconds: float) -> str | None:
        """Why the holder is known to be gone, or None while it may be alive."""
        if self.host == socket.gethostname():
            if self.boot_id and self.boot_id != _boot_id():
                return "its host has restarted since"
            if not _pid_alive(self.pid):
                return f"process {self.pid} is no longer running"
        age = time.time() - self.heartbeat
        if age > stale_seconds:
            return f"no heartbeat for {age:.0f} s (more than {stale_seconds:.0f} s)"
        return None


class WorkdirLock:
    """``WORKDIR/run.lock``, created exclusively, its heartbeat refreshed by a thread.

    A lock is stale when its holder ran on this host and its process is gone (or the host has
    restarted), or when its heartbeat is older than ``stale_seconds`` (a holder on another host:
    a pid means nothing there). Needs a filesystem with atomic exclusive create (local disks,
    NFS v3+, Lustre, GPFS).
    """

    def __init__(
        self,
        workdir: str,
        heartbeat_seconds: float = HEARTBEAT_SECONDS,
        stale_seconds: float = STALE_SECONDS,
    ):
        self.path = os.path.join(workdir, LOCK_FILE)
        self.heartbeat_seconds, self.stale_seconds = heartbeat_seconds, stale_seconds
        self.holder: Holder | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def read(self) -> Holder | None:
        try:
            with open(self.path) as f:
                return Holder(**json.load(f))
        except FileNotFoundError:
            return None
        except (ValueError, TypeError):  # not a lock of ours: stale once old enough
            with contextlib.suppress(FileNotFoundError):
                return Holder("?", -1, "?", os.path.getmtime(self.path), "")
            return None

    def refusal(self, holder: Holder) -> WorkdirLocked:
        workdir = os.path.dirname(self.path)
        return WorkdirLocked(
            f"{workdir} is held by another run: {holder.describe()}. Two runs in one workdir "
            "would overwrite each other's checkpoints: wait for that run to end or stop it, or "
            "use another --workdir. If that run is gone, its lock is taken over once its "
            f"heartbeat is {self.stale_seconds:.0f} s old; or delete {self.path} yourself."
        )

    def acquire(self) -> None:
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        me = Holder.me()
        for _ in range(10):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self.read()
                if holder is None:
                    continue  # released meanwhile
                reason = holder.stale_because(self.stale_seconds)
                if reason is None:
                    raise self.refusal(holder) from None
                self._take_over(holder, reason)
                continue
            with os.fdopen(fd, "w") as f:
                json.dump(dataclasses.asdict(me), f)
            self.holder = me
            self._thread = threading.Thread(target=self._beat, name="workdir-heartbeat")
            self._thread.daemon = True
            self._thread.start()
            return
        raise WorkdirLocked(f"{self.path} keeps changing hands; is another run starting there?")

    def _take_over(self, holder: Holder, reason: str) -> None:
        """Removes a stale lock, unless another run replaced it meanwhile."""
        aside = f"{self.path}.stale-{uuid.uuid4().hex}"
        try:
            os.rename(self.path, aside)  # atomic: of two runs taking over, one moves it
        except FileNotFoundError:
            return
        with open(aside) as f:
            moved = f.read()
        if holder.token and holder.token not in moved:  # a fresh lock: put it back
            os.rename(aside, self.path)
            raise self.refusal(self.read() or holder)
        os.remove(aside)
        logging.warning(
            "Took over %s from a run that is gone (%s): %s.", self.path, reason, holder.describe()
        )

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_seconds):
            current = self.read()
            if current is None or current.token != self.holder.token:
                logging.error(
                    "%s was taken over by %s (this run's heartbeat stalled for more than %.0f s): "
                    "stopping, since two runs must not write one workdir.",
                    self.path,
                    current.describe() if current else "nobody",
                    self.stale_seconds,
                )
                _thread.interrupt_main()
                return
            self.holder.heartbeat = time.time()
            with contextlib.suppress(OSError):  # a full disk must not kill the heartbeat
                with open(self.path + ".tmp", "w") as f:
                    json.dump(dataclasses.asdict(self.holder), f)
                os.replace(self.path + ".tmp", self.path)

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        current = self.read()
        if self.holder is not None and current is not None and current.token == self.holder.token:
            os.remove(self.path)
        self.holder = None


@contextlib.contextmanager
def hold_workdir(workdir: str) -> Iterator[None]:
    """Holds ``workdir`` for the block: process 0 takes the lock, once for the whole job; every
    process learns whether it got it, so that a refused job fails on all hosts at once.

    Raises:
      WorkdirLocked: naming the holder, when another live run holds the workdir.
    """
    lock = WorkdirLock(workdir)
    error = None
    if jax.process_index() == 0:
        try:
            lock.acquire()
        except WorkdirLocked as e:
            error = e
    if jax.process_count() > 1:
        held = multihost_utils.broadcast_one_to_all(np.int32(error is None))
        if not held and error is None:
            holder = lock.read()
            error = lock.refusal(holder) if holder else WorkdirLocked(f"{workdir} is held.")
    if error is not None:
        raise error
    try:
        yield
    finally:
        lock.release()
