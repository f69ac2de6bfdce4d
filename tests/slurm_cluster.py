"""A single-node SLURM cluster in a scratch folder, from the distribution's slurm-wlm and munge.

Its own munge key and socket, its own slurm.conf (free localhost ports, state and logs inside the
folder, no accounting database). `sbatch`, `squeue` and `scancel` find it through `SLURM_CONF`,
which `cluster()` returns in the environment to run them with; but the `srun` that runs each job
inside its allocation does not (snakemake's jobstep plugin drops every `SLURM_*` variable), so
while the cluster is up the config is also at SLURM's default path, `/etc/slurm/slurm.conf`: on a
machine that already has one, no test cluster is started. Jobs are kept in `squeue` for an hour
after they end (`MinJobAge`): without an accounting database, that is where the executor plugin
reads how a job ended.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd")
DEFAULT_CONF = Path("/etc/slurm/slurm.conf")
#: GPUs the node declares: the profile's `--gpus=1` requests are scheduled (two at a time) as on
#: a GPU cluster, and the jobs train on the CPU. Slurm counts a node's GPUs by their device
#: files; two that every machine has stand in.
GPUS = 2
GRES = "AutoDetect=off\nName=gpu File=/dev/null\nName=gpu File=/dev/zero\n"


def unavailable() -> str | None:
    """Why no cluster can be started here, or None."""
    missing = [d for d in DAEMONS if shutil.which(d) is None]
    if missing:
        return f"{', '.join(missing)} not installed (apt-get install slurm-wlm munge)"
    if os.geteuid() != 0:
        return "slurmd must run as root to start jobs as the submitting user"
    if DEFAULT_CONF.exists() and not _ours(DEFAULT_CONF):
        return f"{DEFAULT_CONF} exists: this machine has a SLURM cluster of its own"
    return None


def _ours(conf: Path) -> bool:
    """A test cluster's config (or a dangling link to one) at the default path, left there by a
    run that was killed."""
    if not conf.is_symlink():
        return False
    return not conf.exists() or "ClusterName=shpeft-test" in conf.read_text()


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _memory_mb() -> int:
    pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return int(pages / 2**20 * 0.8)


def _conf(folder: Path, node: str) -> str:
    controller, daemon = _free_ports(2)
    return "\n".join(
        [
            "ClusterName=shpeft-test",
            f"SlurmctldHost={node}(127.0.0.1)",
            "SlurmUser=root",
            f"SlurmctldPort={controller}",
            f"SlurmdPort={daemon}",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"AuthInfo=socket={folder}/munge.socket",
            f"StateSaveLocation={folder}/state",
            f"SlurmdSpoolDir={folder}/spool",
            f"SlurmctldPidFile={folder}/slurmctld.pid",
            f"SlurmdPidFile={folder}/slurmd.pid",
            f"SlurmctldLogFile={folder}/slurmctld.log",
            f"SlurmdLogFile={folder}/slurmd.log",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core_Memory",
            "ReturnToService=2",
            "MinJobAge=3600",
            "AccountingStorageType=accounting_storage/none",
            "JobAcctGatherType=jobacct_gather/none",
            "JobCompType=jobcomp/none",
            "MpiDefault=none",
            "SchedulerParameters=sched_interval=1",
            "GresTypes=gpu",
            f"NodeName={node} NodeAddr=127.0.0.1 CPUs={os.cpu_count()} "
            f"RealMemory={_memory_mb()} Gres=gpu:{GPUS} State=UNKNOWN",
            f"PartitionName=test Nodes={node} Default=YES MaxTime=INFINITE State=UP",
            "",
        ]
    )


def _wait(check, what: str, logs: list[Path], timeout: float = 30) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if check():
            return
        time.sleep(0.3)
    tails = "\n".join(f"--- {p}\n{p.read_text()[-2000:]}" for p in logs if p.is_file())
    raise RuntimeError(f"the test cluster's {what} did not come up in {timeout:.0f} s\n{tails}")


def _idle(env: dict[str, str]) -> bool:
    out = subprocess.run(
        ["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, env=env
    ).stdout
    return out.strip() == "idle"


def _daemon(command: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen:
    """A daemon in the foreground, its messages in `log` (the reason it stopped, if it did)."""
    with log.open("w") as out:
        return subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)


@contextmanager
def cluster(folder: Path) -> Iterator[dict[str, str]]:
    """Start munged, slurmctld and slurmd under `folder`; yield the environment that reaches
    them; stop all three (and any job left running) on the way out."""
    folder.mkdir(parents=True, exist_ok=True)
    for sub in ("state", "spool"):
        (folder / sub).mkdir(exist_ok=True)
    node = socket.gethostname().split(".")[0]
    conf = folder / "slurm.conf"
    conf.write_text(_conf(folder, node))
    (folder / "gres.conf").write_text(GRES)
    key = folder / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    env = {**os.environ, "SLURM_CONF": str(conf)}
    for name in ("SLURM_JOB_ID", "SLURM_JOBID"):  # a job's own variables would confuse sbatch
        env.pop(name, None)
    started: list[subprocess.Popen] = []
    DEFAULT_CONF.parent.mkdir(parents=True, exist_ok=True)
    if _ours(DEFAULT_CONF):
        DEFAULT_CONF.unlink(missing_ok=True)
    DEFAULT_CONF.symlink_to(conf)
    try:
        munge = [
            "munged",
            "--foreground",
            "--force",
            f"--key-file={key}",
            f"--socket={folder}/munge.socket",
            f"--pid-file={folder}/munged.pid",
            f"--log-file={folder}/munged.log",
            f"--seed-file={folder}/munged.seed",
        ]
        started.append(_daemon(munge, folder / "munged.out", env))
        _wait(lambda: (folder / "munge.socket").exists(), "munged", [folder / "munged.out"])
        started.append(_daemon(["slurmctld", "-D", "-i"], folder / "slurmctld.out", env))
        started.append(_daemon(["slurmd", "-D", "-N", node], folder / "slurmd.out", env))
        logs = [folder / "slurmctld.out", folder / "slurmd.out"]
        _wait(lambda: _idle(env), "node", logs, timeout=60)
        yield env
    finally:
        subprocess.run(["scancel", "--full", "--user", "root"], env=env, capture_output=True)
        for process in reversed(started):
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        DEFAULT_CONF.unlink(missing_ok=True)
