"""A throwaway single-node SLURM on this machine, for the cluster test (Debian's slurmctld,
slurmd, slurm-client and munge; `scripts/bootstrap.sh --tests` installs them).

One node with this machine's CPUs, memory and one fake GPU (a gres whose device file is
/dev/null), so that jobs asking for a GPU are scheduled. The snakemake plugin's job steps drop
SLURM_CONF, so the config goes to /etc/slurm/ (whatever was there is put back afterwards).
Without slurmdbd there is no sacct: the plugin must use squeue, which only sees a finished job
for MinJobAge seconds, so MinJobAge is far above the plugin's first status check. Daemons are
started in the foreground as our children and stopped by their pids.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

ETC = Path("/etc/slurm")
PACKAGES = ("slurmctld", "slurmd", "sinfo", "sbatch", "squeue", "munged")


def available() -> str | None:
    """None when SLURM can be started here, else why not."""
    missing = [p for p in PACKAGES if shutil.which(p) is None and not Path(f"/usr/sbin/{p}").exists()]
    if missing:
        return f"not installed: {', '.join(missing)} (scripts/bootstrap.sh --tests installs them)"
    if os.geteuid() != 0:
        return "the test SLURM needs root (it writes /etc/slurm and runs the daemons)"
    return None


def _node_line() -> str:
    out = subprocess.run(["slurmd", "-C"], capture_output=True, text=True, check=True).stdout
    line = out.splitlines()[0]
    fields = dict(f.split("=", 1) for f in line.split())
    real = int(int(fields["RealMemory"]) * 0.9)  # leave the OS some
    return (f"NodeName={fields['NodeName']} CPUs={fields['CPUs']} RealMemory={real} Gres=gpu:1 State=UNKNOWN")


def _conf(tmp: Path, min_job_age: int) -> dict[str, str]:
    host = socket.gethostname().split(".")[0]
    node = _node_line()
    name = node.split()[0].split("=")[1]
    return {
        "slurm.conf": "\n".join([
            "ClusterName=animote-test",
            f"SlurmctldHost={host}",
            "SlurmUser=root", "SlurmdUser=root", "AuthType=auth/munge", "CryptoType=crypto/munge",
            f"StateSaveLocation={tmp}/state", f"SlurmdSpoolDir={tmp}/spool",
            f"SlurmctldPidFile={tmp}/slurmctld.pid", f"SlurmdPidFile={tmp}/slurmd.pid",
            f"SlurmctldLogFile={tmp}/slurmctld.log", f"SlurmdLogFile={tmp}/slurmd.log",
            "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none", "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none", "JobCompType=jobcomp/none",
            "SchedulerType=sched/backfill", "SelectType=select/cons_tres", "SelectTypeParameters=CR_CPU_Memory",
            "GresTypes=gpu",
            f"MinJobAge={min_job_age}",  # squeue reports a finished job this long (no sacct here)
            "DefMemPerCPU=1000",  # else a job without --mem takes the whole node
            "ReturnToService=2", "SlurmctldTimeout=30", "SlurmdTimeout=30", "KillWait=5",
            "MpiDefault=none", "LaunchParameters=enable_nss_slurm",
            node,
            f"PartitionName=test Nodes={name} Default=YES MaxTime=INFINITE State=UP",
            "",
        ]),
        "gres.conf": f"NodeName={name} Name=gpu File=/dev/null\n",
        "cgroup.conf": "CgroupPlugin=autodetect\nIgnoreSystemd=yes\n",
    }


def _wait(what: str, check, timeout: float, logs: list[Path]) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if check():
            return
        time.sleep(0.2)
    tail = "\n".join(f"--- {p}\n{p.read_text()[-1500:]}" for p in logs if p.exists())
    raise RuntimeError(f"SLURM test cluster: {what} not ready after {timeout:.0f} s\n{tail}")


def _node_idle() -> bool:
    r = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True)
    return r.returncode == 0 and r.stdout.strip() in ("idle", "idle*") and "*" not in r.stdout


@contextlib.contextmanager
def cluster(tmp: Path, min_job_age: int = 300) -> Iterator[dict]:
    """Start munge, slurmctld and slurmd; yield {partition, cpus}; stop them and restore /etc/slurm."""
    tmp = Path(tmp)
    for d in ("state", "spool"):
        (tmp / d).mkdir(parents=True, exist_ok=True)
    backup = tmp / "etc-slurm-backup"
    had_etc = ETC.exists()
    if had_etc:
        shutil.copytree(ETC, backup, symlinks=True)
    procs: list[subprocess.Popen] = []
    munged_pid = None
    try:
        ETC.mkdir(parents=True, exist_ok=True)
        for name, text in _conf(tmp, min_job_age).items():
            (ETC / name).write_text(text)
        if subprocess.run(["munge", "-n"], capture_output=True).returncode != 0:  # no munged answering
            sock_dir = Path("/run/munge")
            sock_dir.mkdir(parents=True, exist_ok=True)
            shutil.chown(sock_dir, "munge", "munge")
            key = Path("/etc/munge/munge.key")
            if not key.exists():
                subprocess.run(["mungekey", "--create", "--force"], check=True)
                shutil.chown(key, "munge", "munge")
            pid_file = sock_dir / "munged.test.pid"
            pid_file.unlink(missing_ok=True)
            subprocess.run(["runuser", "-u", "munge", "--", "munged", f"--pid-file={pid_file}"], check=True)
            _wait("munged", lambda: pid_file.exists() and pid_file.read_text().strip(), 10, [])
            munged_pid = int(pid_file.read_text())
        logs = [tmp / "slurmctld.log", tmp / "slurmd.log"]
        with open(tmp / "daemons.out", "ab") as out:
            procs.append(subprocess.Popen(["slurmctld", "-D", "-i"], stdout=out, stderr=out))
            _wait("slurmctld", lambda: subprocess.run(["scontrol", "ping"], capture_output=True,
                                                      text=True).stdout.count("UP") > 0, 30, logs)
            procs.append(subprocess.Popen(["slurmd", "-D"], stdout=out, stderr=out))
        _wait("the node", _node_idle, 30, logs + [tmp / "daemons.out"])
        cpus = int(subprocess.run(["sinfo", "-h", "-o", "%c"], capture_output=True, text=True).stdout.strip())
        yield {"partition": "test", "cpus": cpus, "logs": logs}
    finally:
        subprocess.run(["scancel", "--user", "root"], capture_output=True)
        for p in reversed(procs):
            p.send_signal(signal.SIGTERM)
        for p in reversed(procs):
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if munged_pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(munged_pid, signal.SIGTERM)
        for name in ("slurm.conf", "gres.conf", "cgroup.conf"):
            (ETC / name).unlink(missing_ok=True)
        if had_etc:
            for item in backup.iterdir():
                dst = ETC / item.name
                if not dst.exists():
                    (shutil.copytree if item.is_dir() else shutil.copy2)(item, dst)


class DemoOnSlurm:
    """The finished short demo, copied (``.snakemake`` too: its metadata tells what changed), its
    tracking store an MLflow server, so that training and evaluation rerun: submitted through the
    repository's slurm profile to a throwaway cluster, to the evaluation of the default experiment.
    The copy and the server are made at once; :meth:`start` runs the cluster in a thread (the run
    is mostly waiting on the plugin's polling, so other tests go on meanwhile)."""

    TARGET = "results/evaluate/default/recipe/metrics.json"

    def __init__(self, demo_run: Path, tmp: Path, repo: Path):
        import threading

        import yaml

        self.tmp, self.wd, self.store = Path(tmp), Path(tmp) / "wd", Path(tmp) / "mlflow-server"
        shutil.copytree(demo_run, self.wd, symlinks=True)
        self.uri = start_mlflow_server(self.store, repo)
        (self.wd / "cluster.yaml").write_text(yaml.safe_dump({
            "mlflow": {"tracking_uri": self.uri, "artifact_location": None}, "sweep": {"run": ["recipe"]}}))
        write_profile(repo, self.wd / "profile")
        self.result: dict | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> DemoOnSlurm:
        self._thread.start()
        return self

    def _run(self) -> None:
        from helpers import snakemake

        try:
            with cluster(self.tmp / "slurm"):
                t = time.perf_counter()
                proc = snakemake(self.wd, self.TARGET, "--profile", "profile", configs=("test.yaml", "cluster.yaml"),
                                 check=False, timeout=600)
                wall = time.perf_counter() - t
                self.result = {"proc": proc, "wall": wall, "jobs": jobs()}
        except BaseException as exc:  # noqa: BLE001 (handed to the test)
            self.error = exc

    def wait(self, timeout: float = 900) -> dict:
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError(f"the SLURM run did not end within {timeout} s")
        if self.error is not None:
            raise self.error
        return self.result

    def stop_server(self) -> None:
        stop_mlflow_server(self.store)


def start_mlflow_server(store: Path, repo: Path) -> str:
    """An MLflow server on a free local port with its store in ``store`` (scripts/mlflow_server.sh); its URI."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = subprocess.run(["bash", str(repo / "scripts/mlflow_server.sh"), "--store", str(store), "--port",
                              str(port), "--host", "127.0.0.1"], capture_output=True, text=True, timeout=120)
    if started.returncode != 0:
        raise RuntimeError(f"mlflow_server.sh failed: {started.stderr[-2000:]}")
    return started.stdout.strip().splitlines()[-1]


def stop_mlflow_server(store: Path) -> None:
    pid = Path(store) / "server.pid"
    if pid.exists():
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid.read_text()), signal.SIGTERM)


def write_profile(repo: Path, folder: Path) -> None:
    """The repository's slurm profile, with what this cluster lacks: accounts and accounting (no
    sacct, so squeue, which forgets a job MinJobAge = 300 s after it ends: far beyond 3 x 2 s)."""
    import yaml

    profile = yaml.safe_load((repo / "workflow/profiles/slurm/config.yaml").read_text())
    profile.update({"slurm-no-account": True, "slurm-status-command": "squeue",
                    "slurm-init-seconds-before-status-checks": 2, "latency-wait": 5})
    Path(folder).mkdir(parents=True)
    (Path(folder) / "config.yaml").write_text(yaml.safe_dump(profile))


def jobs() -> list[dict[str, str]]:
    """Rule, state and GPU request of every job SLURM still remembers (for MinJobAge)."""
    import re

    ids = subprocess.run(["squeue", "-h", "-t", "all", "-o", "%i"], capture_output=True, text=True,
                         check=True).stdout.split()
    found = []
    for i in ids:
        show = subprocess.run(["scontrol", "show", "job", "-o", i], capture_output=True, text=True, check=True).stdout
        field = dict(re.findall(r"(\w+)=(\S*)", show))
        rule = re.match(r"rule_([a-z_]+?)(_wildcards_.*)?$", field.get("Comment", ""))
        found.append({"rule": rule.group(1) if rule else field.get("Comment", ""), "state": field.get("JobState"),
                      "gpus": field.get("TresPerJob", "")})
    return found
