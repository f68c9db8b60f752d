"""Several hosts simulated on this machine: Horovod's own Gloo rendezvous, one local process per slot.

``horovodrun -H a:2,b:2`` would reach hosts ``a`` and ``b`` over ssh. Here the same plan is made with
Horovod's functions (``parse_hosts``, ``get_host_assignments``, ``RendezvousServer``) and every slot is started
as a local subprocess with the environment ``gloo_run`` gives it (``create_slot_env_vars`` and
``create_run_env_vars``: HOROVOD_HOSTNAME, HOROVOD_RANK/SIZE, HOROVOD_LOCAL_RANK/LOCAL_SIZE,
HOROVOD_CROSS_RANK/CROSS_SIZE, HOROVOD_GLOO_RENDEZVOUS_ADDR/PORT, HOROVOD_CONTROLLER=gloo,
HOROVOD_CPU_OPERATIONS=gloo, HOROVOD_GLOO_IFACE, NCCL_SOCKET_IFNAME; PYTHONUNBUFFERED=1), over the loopback
interface. Horovod then builds its local communicators per HOROVOD_HOSTNAME, as on real hosts.

What differs between hosts is simulated too: each host gets its own working folder (``cwd`` with ``{host}``),
so relative paths do not reach another host's files, and no thread setting of this (pytest) process leaks into
the workers, which start as a fresh login on a host would.
"""
from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional, Sequence

from horovod.runner.common.util.hosts import get_host_assignments, parse_hosts
from horovod.runner.gloo_run import create_run_env_vars, create_slot_env_vars
from horovod.runner.http.http_server import RendezvousServer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: Set by ``import resnet_gluon`` in this process; a fresh process on another host would not have them.
_PROCESS_LOCAL = ("OMP_NUM_THREADS", "MXNET_CPU_WORKER_NTHREADS", "NCCL_SOCKET_IFNAME")


@dataclasses.dataclass
class Worker:
    """One finished (or killed) worker process: its slot and what it printed."""

    rank: int
    hostname: str
    local_rank: int
    cross_rank: int
    cwd: str
    returncode: Optional[int] = None
    stdout: str = ""
    stderr: str = ""
    killed: bool = False

    def tail(self, chars: int = 3000) -> str:
        return (f"--- rank {self.rank} ({self.hostname}, local rank {self.local_rank}) exit {self.returncode}"
                f"{' (killed)' if self.killed else ''}\n{self.stdout[-chars:]}\n{self.stderr[-chars:]}")


class HostsFailed(AssertionError):
    """A simulated run that failed or ran out of time; the message holds every rank's output."""

    def __init__(self, message: str, workers: List[Worker]):
        super().__init__(message + "\n" + "\n".join(w.tail() for w in workers))
        self.workers = workers


def _base_env(env: Optional[Dict[str, str]]) -> Dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("HOROVOD_") and k not in _PROCESS_LOCAL}
    base["PYTHONPATH"] = os.pathsep.join([REPO, os.path.join(REPO, "tests")] +
                                         ([base["PYTHONPATH"]] if base.get("PYTHONPATH") else []))
    base["PYTHONUNBUFFERED"] = "1"
    base["HOROVOD_GLOO_TIMEOUT_SECONDS"] = "120"  # horovodrun --gloo-timeout-seconds: slow starts on a busy host
    base.update(env or {})
    return base


def _kill(procs: Sequence[subprocess.Popen]) -> None:
    for proc in procs:
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # its own session: children (DALI, ...) go with it
            except ProcessLookupError:
                pass
    for proc in procs:
        proc.wait()


def run_hosts(hosts: str, argv: Sequence[str], *, cwd: str, timeout: float, env: Optional[Dict[str, str]] = None,
              grace: float = 20.0, check: bool = True) -> List[Worker]:
    """Run ``argv`` once per slot of ``hosts`` (horovodrun's ``-H`` syntax, e.g. ``'a:2,b:2'``) on this machine.

    Parameters
    ----------
    hosts : str
        Host names with slots; ranks are assigned host by host as ``horovodrun`` does.
    argv : sequence of str
        The command of every worker, e.g. ``[sys.executable, 'script.py', ...]``.
    cwd : str
        Working folder of each worker; ``{host}`` is replaced by its host name (created if missing).
    timeout : float
        Seconds for the whole run; then every worker is killed (``HostsFailed``). Never waits longer.
    env : dict, optional
        Extra variables for every worker.
    grace : float
        Seconds the other workers get to finish once one has failed; then they are killed (as horovodrun does).
    check : bool
        Raise ``HostsFailed`` unless every worker exits with 0.

    Returns
    -------
    list of Worker
        By rank.
    """
    host_list = parse_hosts(hosts)
    plan = get_host_assignments(host_list, sum(h.slots for h in host_list))
    rendezvous = RendezvousServer()
    port = rendezvous.start()
    rendezvous.init(plan)
    run_env = {k: str(v) for k, v in create_run_env_vars("127.0.0.1", ["lo"], port).items()}
    workers, procs, logs = [], [], []
    deadline = time.monotonic() + timeout
    try:
        for slot in plan:
            folder = cwd.replace("{host}", slot.hostname)
            os.makedirs(folder, exist_ok=True)
            workers.append(Worker(slot.rank, slot.hostname, slot.local_rank, slot.cross_rank, folder))
            out, err = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")  # not in the host's folder
            logs.append((out, err))
            procs.append(subprocess.Popen(list(argv), cwd=folder, stdout=out, stderr=err, start_new_session=True,
                                          env={**_base_env(env), **run_env, **create_slot_env_vars(slot)}))
        failed_at = None
        while any(p.poll() is None for p in procs) and time.monotonic() < deadline:
            if failed_at is None and any(p.returncode not in (None, 0) for p in procs):
                failed_at = time.monotonic()
            if failed_at is not None and time.monotonic() > failed_at + grace:
                break
            time.sleep(0.2)
    finally:
        running = [p for p in procs if p.poll() is None]
        _kill(procs)
        rendezvous.stop()
        for worker, proc, (out, err) in zip(workers, procs, logs):
            worker.returncode, worker.killed = proc.returncode, proc in running
            for f, attr in ((out, "stdout"), (err, "stderr")):
                f.seek(0)
                setattr(worker, attr, f.read())
                f.close()
    if check and running and time.monotonic() >= deadline:
        raise HostsFailed(f"{hosts}: killed after the {timeout:.0f} s timeout", workers)
    if check and any(w.returncode != 0 for w in workers):
        raise HostsFailed(f"{hosts}: a worker failed", workers)
    return workers


def python(script: str, *args: str) -> List[str]:
    """``[python, tests/scripts/<script>, *args]`` with absolute paths (workers run in their host's folder)."""
    return [sys.executable, os.path.join(REPO, "tests", "scripts", script), *map(str, args)]
