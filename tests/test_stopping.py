"""Stopping on a signal or a time budget at a step boundary, the mid-epoch checkpoint, and the exact resume."""
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time

import mxnet as mx
import numpy as np
import pytest

from helpers import REPO, ArrayBatches, make_records, one_horovod_job_at_a_time, quadrant_problem
from resnet_gluon import Callback, Checkpoint, fit
from resnet_gluon.models import checkpoint
from resnet_gluon.models.blocks import BasicBlock, ResNet
from resnet_gluon.train.stopping import STOPPED_EXIT_STATUS, StopRequest, TrainingStopped, parse_duration

SCRIPT = os.path.join(REPO, "tests", "scripts", "train_stop.py")


def _signal_main_thread(sig):
    """A signal to this process's main thread, where Python runs handlers (a process-directed one may land on a
    native thread of an earlier test's library). The process-directed path is tested in fresh processes below."""
    signal.pthread_kill(threading.main_thread().ident, sig)


def test_handlers_survive_a_signal_stack_a_library_freed():
    # What OpenVINO/ONNX Runtime's INT8 quantization left behind in the test process: the main thread's alternate
    # signal stack pointing at unmapped memory, so that any handled signal crashed it (SIGSEGV on delivery).
    code = """
import ctypes, mmap, os, signal, sys
from resnet_gluon.train.stopping import StopRequest
class Stack(ctypes.Structure):
    _fields_ = [("ss_sp", ctypes.c_void_p), ("ss_flags", ctypes.c_int), ("ss_size", ctypes.c_size_t)]
libc = ctypes.CDLL(None)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
addr = libc.mmap(None, 65536, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1, 0)
assert libc.sigaltstack(ctypes.byref(Stack(addr, 0, 65536)), None) == 0
libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
assert libc.munmap(addr, 65536) == 0
if sys.argv[1] == "plain":
    signal.signal(signal.SIGUSR1, lambda *a: None)
else:
    request = StopRequest((signal.SIGUSR1,))
os.kill(os.getpid(), signal.SIGUSR1)
print("survived", request.should_stop() if sys.argv[1] != "plain" else "", flush=True)
"""
    plain = subprocess.run([sys.executable, "-c", code, "plain"], capture_output=True, text=True, timeout=120)
    assert plain.returncode != 0 and "survived" not in plain.stdout   # the hazard is real
    ours = subprocess.run([sys.executable, "-c", code, "ours"], capture_output=True, text=True, timeout=120)
    assert ours.returncode == 0 and "survived signal SIGUSR1" in ours.stdout, ours.stderr[-2000:]


@pytest.mark.parametrize("text,seconds", [("3h50m", 13800), ("90m", 5400), ("45s", 45), ("1h", 3600), ("2d", 172800),
                                          ("01:30:00", 5400), ("1:30", 90), ("600", 600), (7.5, 7.5)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["3 hours", "-5", "0", "1h-2m", ""])
def test_bad_durations_are_one_line_errors(text):
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_stop_request_notes_a_signal_and_a_budget_and_restores_handlers():
    before = signal.getsignal(signal.SIGUSR1)
    request = StopRequest((signal.SIGUSR1,), None)
    assert request.should_stop() is None
    _signal_main_thread(signal.SIGUSR1)
    assert request.should_stop() == "signal SIGUSR1"
    request.close()
    assert signal.getsignal(signal.SIGUSR1) == before
    timed = StopRequest((), 0.05, budget_text="50ms")
    assert timed.should_stop() is None
    time.sleep(0.06)
    assert timed.should_stop() == "the run-time budget of 50ms is spent"


def test_a_first_signal_during_a_stop_for_another_reason_is_noted_not_passed_on():
    # A stop already under way (here the time budget; or another worker's vote) must not turn this worker's first
    # SIGUSR1 into a "second signal" that goes to the previous handler (by default: death while saving).
    passed_on = []
    before = signal.signal(signal.SIGUSR1, lambda signum, frame: passed_on.append(signum))
    try:
        request = StopRequest((signal.SIGUSR1,), 0.01, budget_text="10ms")
        time.sleep(0.02)
        assert request.should_stop() == "the run-time budget of 10ms is spent"
        _signal_main_thread(signal.SIGUSR1)
        assert passed_on == [] and request.reason == "the run-time budget of 10ms is spent"
        _signal_main_thread(signal.SIGUSR1)   # the second of its kind: the previous handler
        assert passed_on == [signal.SIGUSR1]
        request.close()
    finally:
        signal.signal(signal.SIGUSR1, before)


def test_a_signal_that_comes_during_the_vote_counts_at_the_next_step_on_every_worker(monkeypatch):
    # Two workers, seen from one: the other votes 0 and answers from the sum alone. The signal reaches this worker
    # while the vote is in flight (its handler runs when the allreduce returns). Answering from the handler's note
    # would stop this worker alone, while the other goes on to its next collective: the deadlock of two hung
    # workers (one in the metrics' allreduce, one in the next vote) that CI met.
    from resnet_gluon._core import dist as dist_module

    request = StopRequest((signal.SIGUSR1,), None)
    votes = []

    def allreduce_sum(values, name):
        votes.append(values[0])
        if len(votes) == 1:
            _signal_main_thread(signal.SIGUSR1)
            time.sleep(0.01)   # the handler runs here, before this worker reads the sum
        return [values[0] + 0.0]   # + the other worker's vote: 0

    monkeypatch.setattr(dist_module, "size", lambda: 2)
    monkeypatch.setattr(dist_module, "allreduce_sum", allreduce_sum)
    try:
        assert request.should_stop() is None          # the sum said go on: so does this worker
        assert request.reason == "signal SIGUSR1"     # noted, for the next vote
        assert request.should_stop() == "signal SIGUSR1"
        assert votes == [0.0, 1.0]
    finally:
        request.close()


def test_a_second_signal_ends_the_process_and_uncatchable_signals_are_refused():
    code = ("import os, signal, time; from resnet_gluon.train.stopping import StopRequest; r = StopRequest(); "
            "os.kill(os.getpid(), signal.SIGTERM); print(r.should_stop(), flush=True); "
            "os.kill(os.getpid(), signal.SIGTERM); time.sleep(5); print('survived')")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.stdout.strip() == "signal SIGTERM" and proc.returncode == -signal.SIGTERM, proc
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(ValueError, match="cannot catch signal"):
        StopRequest((signal.SIGTERM, signal.SIGKILL))
    assert signal.getsignal(signal.SIGTERM) == before   # rolled back


# ------------------------------------------------------------------------------------------ one process, in-process
def _net():
    mx.random.seed(7)
    return ResNet(BasicBlock, (1,), classes=4, stem_channels=8)


def _fit(prefix, data, callbacks=(), accumulate=1):
    return fit(_net(), data, epochs=3, lr=0.1, warmup_epochs=0, progress=False, dtype="float32", read_every=3,
               callbacks=[Checkpoint(prefix), *callbacks], accumulate=accumulate)


@pytest.mark.parametrize("accumulate", [1, 2])
def test_sigterm_mid_epoch_saves_and_the_rerun_continues_at_the_next_step(tmp_path, accumulate):
    x, y = quadrant_problem(80, size=16)  # 10 batches of 8 an epoch, no random augmentation: deterministic
    reference = _fit(str(tmp_path / "ref" / "m"), ArrayBatches(x, y, 8), accumulate=accumulate)

    class SigtermAt(Callback):
        def on_batch_end(self, batch, logs):
            if self.state.epoch == 1 and batch == 3:
                _signal_main_thread(signal.SIGTERM)

    prefix = str(tmp_path / "run" / "m")
    with pytest.raises(TrainingStopped) as stopped:
        _fit(prefix, ArrayBatches(x, y, 8), [SigtermAt()], accumulate=accumulate)
    # the batches in flight when the signal came finish; every worker stops after the same step
    assert stopped.value.code == STOPPED_EXIT_STATUS == 75 and stopped.value.epoch == 1
    assert 4 <= stopped.value.step <= 7 and stopped.value.reason == "signal SIGTERM"
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL   # fit put the handler back
    step = stopped.value.step
    assert step % accumulate == 0               # at an update boundary: no accumulated gradient is lost
    assert checkpoint.mid_epoch_checkpoints(prefix) == [(1, step)]
    assert checkpoint.latest_checkpoint(prefix) == 1       # predict and --mode val still take epoch 1's checkpoint

    data = ArrayBatches(x, y, 8)
    resumed = _fit(prefix, data, accumulate=accumulate)
    assert resumed.epochs == [1, 2]
    # the interrupted epoch reports the whole epoch: every image counted once, and the same figures
    for key in ("num_images", "loss", "top1"):
        np.testing.assert_allclose(resumed.history[key][0], reference.history[key][1], rtol=1e-6, err_msg=key)
    assert resumed.history["num_images"][0] == 80
    final_ref, final = (mx.nd.load(f"{p}-0003.params") for p in (str(tmp_path / "ref" / "m"), prefix))
    assert len(final) == len(final_ref)
    for (name, a), b in zip(final_ref.items(), final.values()):   # same process, same arithmetic: identical
        np.testing.assert_array_equal(b.asnumpy(), a.asnumpy(), err_msg=name)   # (net names differ: resnet0/1)
    assert checkpoint.mid_epoch_checkpoints(prefix) == []   # pruned once epoch 2's checkpoint existed
    assert not [f for f in os.listdir(tmp_path / "run") if f"-0001-{step:06d}" in f]


def test_stop_after_the_last_step_resumes_without_reading_the_epoch_and_other_data_is_refused(tmp_path):
    x, y = quadrant_problem(80, size=16)
    prefix = str(tmp_path / "m")

    class SigtermLast(Callback):
        def on_batch_end(self, batch, logs):
            if self.state.epoch == 0 and batch == 7:
                _signal_main_thread(signal.SIGTERM)

    with pytest.raises(TrainingStopped) as stopped:
        _fit(prefix, ArrayBatches(x, y, 8), [SigtermLast()])
    assert stopped.value.step == 10   # the signal came while the last batches were in flight
    # an incomplete mid-epoch checkpoint left by an earlier interrupted save is pruned too
    open(checkpoint.checkpoint_files(prefix, 0, 3).params, "w").close()
    with pytest.raises(ValueError, match=r"cannot resume mid-epoch .*\(steps_per_epoch 10 -> 8\)"):
        _fit(prefix, ArrayBatches(x[:64], y[:64], 8))
    data = ArrayBatches(x, y, 8)
    history = _fit(prefix, data)
    assert history.epochs == [0, 1, 2] and history.history["num_images"][0] == 80
    assert len(data.reads) == 21   # one batch to build the graph to export, then epochs 2 and 3: epoch 1 not read
    assert not [f for f in os.listdir(tmp_path) if "-0000-0000" in f]


def test_max_run_time_stops_at_a_step_boundary(tmp_path):
    x, y = quadrant_problem(80, size=16)

    class Slow(Callback):
        def on_batch_end(self, batch, logs):
            time.sleep(0.05)

    with pytest.raises(TrainingStopped) as stopped:
        fit(_net(), ArrayBatches(x, y, 8), epochs=3, lr=0.1, warmup_epochs=0, progress=False, dtype="float32",
            max_run_time=0.5, callbacks=[Checkpoint(str(tmp_path / "m")), Slow()])
    assert "run-time budget of 0.5 is spent" in stopped.value.reason
    assert checkpoint.mid_epoch_checkpoints(str(tmp_path / "m"))


# ------------------------------------------------------------------------------------------ several processes
def _data(tmp_path):
    make_records(tmp_path / "data" / "train", 48, classes=3, size=(40, 40))
    make_records(tmp_path / "data" / "val", 12, classes=3, size=(40, 40), seed=1)
    return str(tmp_path / "data")


class _Run:
    """A training script under ``horovodrun -np N`` (or plain Python), its output collected as it comes."""

    def __init__(self, workers, *args):
        exe = shutil.which("horovodrun", path=os.path.dirname(sys.executable)) or "horovodrun"
        cmd = [sys.executable, SCRIPT, *map(str, args)]
        if workers > 1:
            cmd = [exe, "-np", str(workers), "-H", f"localhost:{workers}", "--gloo", *cmd]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([REPO, os.environ.get("PYTHONPATH", "")]))
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO,
                                     env=env)
        self.lines = []
        self._reader = threading.Thread(target=lambda: self.lines.extend(iter(self.proc.stdout.readline, "")),
                                        daemon=True)
        self._reader.start()

    def batches(self):
        return [line.split("BATCH ", 1)[1].split() for line in list(self.lines) if "BATCH " in line]

    def wait(self, timeout):
        code = self.proc.wait(timeout=timeout)
        self._reader.join(10)
        return code

    def text(self):
        return "".join(self.lines)[-4000:]


def _params(prefix):
    return mx.nd.load(f"{prefix}-0003.params")


def _assert_same(a, b):
    for name in a:  # another process: MXNet's CPU arithmetic is repeatable; 1e-5 leaves room for thread order
        np.testing.assert_allclose(b[name].asnumpy(), a[name].asnumpy(), rtol=1e-5, atol=1e-6, err_msg=name)


@pytest.fixture(scope="module")
def two_worker_reference(tmp_path_factory):
    """(data root, checkpoint prefix) of one uninterrupted 3-epoch run of two workers, shared by both signal targets
    (one run is enough: the same data and seeds give the same parameters, as the tests themselves rely on)."""
    tmp = tmp_path_factory.mktemp("stop_reference")
    root = _data(tmp)
    with one_horovod_job_at_a_time(tmp_path_factory):
        ref = _Run(2, root, tmp / "ref" / "m", 3)
        assert ref.wait(600) == 0, ref.text()
    return root, tmp / "ref" / "m"


@pytest.mark.slow
@pytest.mark.distributed
@pytest.mark.parametrize("target", ["every worker", "one worker"])
def test_sigterm_to_the_workers_or_one_worker_then_resume_matches_uninterrupted(two_worker_reference, tmp_path,
                                                                                target):
    # To the workers, as Slurm signals a job step's tasks, not to horovodrun: horovodrun on SIGTERM may SIGSTOP a
    # worker (when its shell exec'd it) and SIGKILL it 5 s later, before any handler runs (seen in 3 of 6 tries).
    root, ref_prefix = two_worker_reference
    prefix = tmp_path / "run" / "m"
    run = _Run(2, root, prefix, 3, "--delay", 0.3)
    # 6 steps an epoch; the loop runs 2 batches ahead of the BATCH lines, so the stop lands a few steps later
    stop_at = random.Random(0 if target == "every worker" else 1).randint(0, 1)
    deadline = time.time() + 300
    while not any(b[0] == "1" and int(b[1]) >= stop_at for b in run.batches()):   # epoch 2 (0-based 1)
        assert time.time() < deadline and run.proc.poll() is None, run.text()
        time.sleep(0.05)
    workers = {b[3]: int(b[2]) for b in run.batches()}
    for rank in (("rank0", "rank1") if target == "every worker" else ("rank1",)):
        os.kill(workers[rank], signal.SIGTERM)
    signalled = time.time()
    # Every worker stops and exits within 30 s. horovodrun's own teardown is not ours: when a worker exits with
    # status 75 it terminates the others (SIGSTOP, then SIGKILL) and once hung here for over a minute, so it is
    # killed if it is still there after the workers are gone.
    import psutil

    def gone(pid):
        try:
            return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True

    while not all(gone(pid) for pid in workers.values()):
        assert time.time() - signalled < 30, run.text()
        time.sleep(0.1)
    try:
        code = run.wait(10)  # with its workers gone, a horovodrun still there after 10 s is hung
    except subprocess.TimeoutExpired:
        run.proc.kill()
        code = run.wait(30)
    stopped = [line for line in run.lines if "STOPPED " in line]
    assert len(stopped) == 2 and code != 0, run.text()     # both ranks stopped; horovodrun reports their status
    epochs_steps = {tuple(line.split("STOPPED ", 1)[1].split()[:2]) for line in stopped}
    assert len(epochs_steps) == 1, stopped                 # the same step on every rank
    epoch, step = map(int, epochs_steps.pop())
    assert epoch == 1 and checkpoint.mid_epoch_checkpoints(str(prefix)) == [(1, step)]
    again = _Run(2, root, prefix, 3)
    assert again.wait(600) == 0, again.text()
    resumed = [(int(b[0]), int(b[1])) for b in again.batches() if b[3] == "rank0"]
    # the next step of the interrupted epoch (or, stopped after its last step, the next epoch's first)
    assert resumed[0] == ((1, step) if step < 6 else (2, 0)), (step, resumed[:3])
    _assert_same(_params(ref_prefix), _params(prefix))
    # the interrupted epoch's figures are the whole epoch's, summed over both workers
    ref_report, report = (json.load(open(f"{p}-report.json"))["metrics"] for p in (ref_prefix, prefix))
    for key in ("train.loss", "train.top1", "val.top1"):
        np.testing.assert_allclose(report[key], ref_report[key], rtol=1e-4, err_msg=key)


@pytest.mark.slow
def test_a_chain_of_runs_with_max_run_time_ends_with_the_uninterrupted_parameters(tmp_path):
    root = _data(tmp_path)
    ref = _Run(1, root, tmp_path / "ref" / "m", 3)
    assert ref.wait(600) == 0, ref.text()
    prefix = tmp_path / "run" / "m"
    codes = []
    for _ in range(12):
        run = _Run(1, root, prefix, 3, "--delay", 0.1, "--max-run-time", 2)
        codes.append(run.wait(600))
        if codes[-1] == 0:
            break
        assert codes[-1] == STOPPED_EXIT_STATUS and "run-time budget of 2 is spent" in run.text(), run.text()
    assert codes[-1] == 0 and len(codes) >= 2, codes
    _assert_same(_params(tmp_path / "ref" / "m"), _params(prefix))
