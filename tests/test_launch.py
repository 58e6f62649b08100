"""Launch scripts: their dry runs print exactly the cloud and cluster commands they would run.

Every printed line is parsed back with shlex, so the quoting is checked as a shell would read it.
"""

import os
import pathlib
import shlex
import subprocess

import pytest

from bert_jax import sweep as sw

REPO = pathlib.Path(__file__).resolve().parent.parent
LAUNCH = REPO / "launch"
CONFIG = "configs/pretrain.py:model=base"


def _dry_run(script, *args, env=None, cwd=REPO):
    """The commands the script would run, each as its argv; the script must succeed."""
    result = subprocess.run(
        ["bash", str(LAUNCH / script), *args],
        capture_output=True,
        text=True,
        env={**os.environ, "DRY_RUN": "1", **(env or {})},
        cwd=cwd,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    return [shlex.split(line) for line in result.stdout.splitlines()]


def _fails(script, *args):
    result = subprocess.run(
        ["bash", str(LAUNCH / script), *args], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 2 and not result.stdout
    return result.stderr


def _option(argv, name):
    (value,) = [a.split("=", 1)[1] for a in argv if a.startswith(f"{name}=")]
    return value


@pytest.mark.parametrize("script", ["tpu_vm.sh", "xpk.sh", "slurm.sh", "slurm.sbatch"])
def test_scripts_are_valid_bash(script):
    subprocess.run(["bash", "-n", str(LAUNCH / script)], check=True)


def test_tpu_vm_creates_installs_trains_on_all_workers_and_collects():
    create, tar, scp, setup, mount, train, mkdir, rsync = _dry_run(
        "tpu_vm.sh",
        "--dry_run",
        "all",
        "--tpu_name=bert-v4",
        "--zone=us-central2-b",
        "--accelerator_type=v4-32",
        "--project=my-proj",
        f"--config={CONFIG}",
        "--workdir=gs://my-bucket/runs/base",
        "--collect_to=/tmp/runs/base",
        "--",
        "--config.learning_rate=3e-05",
        "--config.data.data_dir=gs://my-bucket/data dir",
    )
    assert create[:6] == ["gcloud", "compute", "tpus", "tpu-vm", "create", "bert-v4"]
    assert _option(create, "--accelerator-type") == "v4-32"
    assert (_option(create, "--zone"), _option(create, "--project")) == ("us-central2-b", "my-proj")
    assert tar[:2] == ["tar", "-czf"] and tar[2] in scp
    assert scp[:5] == ["gcloud", "compute", "tpus", "tpu-vm", "scp"]
    assert scp[6] == "bert-v4:bert_jax_src.tar.gz" and "--worker=all" in scp
    for ssh in (setup, mount, train):
        assert ssh[:6] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "bert-v4"]
        assert "--worker=all" in ssh and _option(ssh, "--zone") == "us-central2-b"
    assert "pip install" in _option(setup, "--command")
    # Every worker mounts the buckets that gs:// paths name; bert_jax gets the mounted paths.
    assert "gcsfuse --implicit-dirs my-bucket /gcs/my-bucket" in _option(mount, "--command")
    remote = shlex.split(_option(train, "--command"))
    assert remote[:3] == ["cd", "~/bert_jax", "&&"]
    assert remote[3:] == [
        "python3",
        "-m",
        "bert_jax.main",
        f"--config={CONFIG}",
        "--workdir=/gcs/my-bucket/runs/base",
        "--config.learning_rate=3e-05",
        "--config.data.data_dir=/gcs/my-bucket/data dir",  # one argument, space and all
    ]
    assert mkdir == ["mkdir", "-p", "/tmp/runs/base"]
    assert rsync == [
        "gcloud",
        "storage",
        "rsync",
        "--recursive",
        "gs://my-bucket/runs/base",
        "/tmp/runs/base",
    ]


def test_tpu_vm_reads_the_environment_and_runs_single_steps():
    env = {"TPU_NAME": "env-tpu", "ZONE": "europe-west4-a", "BUCKET": "bkt"}
    (delete,) = _dry_run("tpu_vm.sh", "delete", env=env)
    assert delete[:6] == ["gcloud", "compute", "tpus", "tpu-vm", "delete", "env-tpu"]
    assert _option(delete, "--zone") == "europe-west4-a" and "--quiet" in delete
    (train,) = _dry_run("tpu_vm.sh", "train", env=env)
    assert "--workdir=/gcs/bkt/bert_jax/env-tpu" in shlex.split(_option(train, "--command"))


@pytest.mark.parametrize(
    "args, message",
    [
        ((), "no STEPS"),
        (("train",), "--bucket"),
        (("train", "--workdir=/local/dir"), "gs://"),
        (("train,launch", "--bucket=b"), "unknown step 'launch'"),
        (("train", "--bukcet=b"), "unknown option --bukcet=b"),
    ],
)
def test_tpu_vm_refuses_bad_arguments(args, message):
    assert message in _fails("tpu_vm.sh", "--dry_run", *args)


def test_sweep_runs_go_through_tpu_vm_train_and_collect(tmp_path):
    masking = {"data.mask_token_ratio": [0.8, 1.0], "data.random_token_ratio": [0.1, 0.0]}
    sweep = sw.Sweep("configs/pretrain.py:model=tiny", [masking, {"seed": [0]}], "accuracy")
    run = sweep.runs()[1]
    command = sw.run_command(sweep, run, tmp_path, launcher="tpu_vm", remote_dir="gs://b/masking")
    result = subprocess.run(
        command, capture_output=True, text=True, env={**os.environ, "DRY_RUN": "1"}, timeout=30
    )
    assert result.returncode == 0, result.stderr
    mount, train, mkdir, rsync = (shlex.split(line) for line in result.stdout.splitlines())
    assert "gcsfuse --implicit-dirs b /gcs/b" in _option(mount, "--command")
    remote = shlex.split(_option(train, "--command"))
    assert remote[3:] == [
        "python3",
        "-m",
        "bert_jax.main",
        "--config=configs/pretrain.py:model=tiny",  # resolved on the workers, in their checkout
        f"--workdir=/gcs/b/masking/{run.name}",
        "--config.data.mask_token_ratio=1.0",
        "--config.data.random_token_ratio=0.0",
        "--config.seed=0",
    ]
    assert rsync[-2:] == [f"gs://b/masking/{run.name}", str(tmp_path / run.name)]
    assert mkdir == ["mkdir", "-p", str(tmp_path / run.name)]


def test_xpk_creates_a_workload_running_the_trainer():
    (create,) = _dry_run(
        "xpk.sh",
        "--cluster=my-v5p",
        "--workload=bert-base",
        "--tpu_type=v5p-128",
        "--num_slices=2",
        "--project=my-proj",
        "--zone=us-east5-a",
        f"--config={CONFIG}",
        "--workdir=gs://my-bucket/bert_base",
        "--",
        "--config.total_steps=10",
    )
    assert create[:3] == ["xpk", "workload", "create"]
    expected = {
        "--cluster": "my-v5p",
        "--workload": "bert-base",
        "--tpu-type": "v5p-128",
        "--num-slices": "2",
        "--project": "my-proj",
        "--zone": "us-east5-a",
        "--script-dir": str(REPO),
    }
    assert {k: _option(create, k) for k in expected} == expected
    install, train = _option(create, "--command").split(" && ")
    assert "pip install" in install
    assert shlex.split(train) == [
        "python3",
        "-m",
        "bert_jax.main",
        f"--config={CONFIG}",
        "--workdir=/gcs/my-bucket/bert_base",  # the bucket as the pods' GCS FUSE mount sees it
        "--config.total_steps=10",
    ]


def test_xpk_with_a_prebuilt_image_only_trains():
    (create,) = _dry_run(
        "xpk.sh", "--cluster=c", "--workdir=gs://b/w", "--docker_image=gcr.io/p/bert:1"
    )
    assert _option(create, "--docker-image") == "gcr.io/p/bert:1"
    assert not any(a.startswith("--base-docker-image") for a in create)
    assert shlex.split(_option(create, "--command"))[:3] == ["python3", "-m", "bert_jax.main"]
    assert "--cluster" in _fails("xpk.sh", "--dry_run", "--workdir=gs://b/w")
    assert "gs://" in _fails("xpk.sh", "--dry_run", "--cluster=c", "--workdir=/tmp/w")


def test_slurm_submits_one_task_per_node_running_the_trainer(tmp_path):
    (sbatch,) = _dry_run(
        "slurm.sh",
        "--nodes=4",
        "--gpus_per_node=8",
        "--partition=gpu",
        f"--config={CONFIG}",
        "--workdir=/shared/runs/base",
        "--",
        "--config.seed=1",
    )
    assert sbatch[0] == "sbatch" and _option(sbatch, "--nodes") == "4"
    assert (_option(sbatch, "--gpus-per-node"), _option(sbatch, "--partition")) == ("8", "gpu")
    assert sbatch[-4:] == ["launch/slurm.sbatch", CONFIG, "/shared/runs/base", "--config.seed=1"]

    # What the job runs, from the submission directory as SLURM starts it (not the repository).
    (srun,) = _dry_run(
        "slurm.sbatch", *sbatch[-3:], env={"SLURM_SUBMIT_DIR": str(REPO)}, cwd=tmp_path
    )
    assert srun[0] == "srun" and "--ntasks-per-node=1" in srun
    assert srun[srun.index("-m") :] == [
        "-m",
        "bert_jax.main",
        f"--config={CONFIG}",
        "--workdir=/shared/runs/base",
        "--config.seed=1",
    ]
    header = (LAUNCH / "slurm.sbatch").read_text()
    assert "#SBATCH --ntasks-per-node=1" in header
    assert "--workdir" in _fails("slurm.sh", "--dry_run", f"--config={CONFIG}")
    assert "usage" in _fails("slurm.sbatch")
