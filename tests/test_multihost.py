"""Several machines, simulated on this one (tests/multihost.py): Horovod's Gloo rendezvous with host names, local
ranks and cross ranks as ``horovodrun -H a:2,b:2`` gives them, every host in its own folder (nothing shared).

tests/scripts/multihost_train.py trains a BatchNorm-free net (BatchNorm statistics are per worker, as in the
reference, so only a BN-free net can match one worker exactly) with a Checkpoint at the relative prefix
``ckpt/model``: on host b that is another folder than on host a, as on machines without a shared file system.
"""
import json
import os
import subprocess
import sys
import time

import mxnet as mx
import numpy as np
import pytest

from helpers import one_horovod_job_at_a_time
from multihost import HostsFailed, python, run_hosts

N_IMAGES, BATCH = 40, 4  # 4 workers x 4 images = 16 a step: 3 steps, the last one empty on host b's workers
TIMEOUT = 180  # seconds for a whole simulated run; then every worker is killed
#: (rank, host, local rank, cross rank) of 'a:2,b:2', as horovodrun assigns them.
TWO_BY_TWO = [(0, "a", 0, 0), (1, "a", 1, 0), (2, "b", 0, 1), (3, "b", 1, 1)]


def _line(worker, tag):
    lines = [line for line in worker.stdout.splitlines() if line.startswith(tag + " ")]
    assert lines, worker.tail()
    return json.loads(lines[-1][len(tag) + 1:])


def _params(path):
    return {k: v.asnumpy() for k, v in mx.nd.load(str(path)).items()}


def _files(folder):
    return sorted(os.path.relpath(os.path.join(d, f), folder) for d, _, fs in os.walk(folder) for f in fs)


def _assert_params_close(got, want, atol=1e-5):
    assert sorted(got) == sorted(want)
    for name in want:
        np.testing.assert_allclose(got[name], want[name], atol=atol, rtol=0, err_msg=name)


def _train(root, epochs):
    out = root / f"out{epochs}"
    out.mkdir()
    workers = run_hosts("a:2,b:2", python("multihost_train.py", out, BATCH, N_IMAGES, epochs),
                        cwd=str(root / "{host}"), timeout=TIMEOUT)
    return workers, out


@pytest.fixture(scope="module")
def two_hosts(tmp_path_factory):
    """2 epochs on hosts a and b with 2 workers each, uninterrupted."""
    root = tmp_path_factory.mktemp("two_hosts")
    with one_horovod_job_at_a_time(tmp_path_factory):
        workers, out = _train(root, 2)
    return root, workers, out


@pytest.mark.slow
@pytest.mark.distributed
def test_two_hosts_of_two_workers_match_one_worker_with_4x_batch(two_hosts, tmp_path):
    root, workers, out = two_hosts
    for worker, (rank, host, local_rank, cross_rank) in zip(workers, TWO_BY_TWO):
        slot = _line(worker, "SLOT")
        assert (slot["rank"], slot["host"], slot["local_rank"], slot["cross_rank"]) == (rank, host, local_rank,
                                                                                        cross_rank)
        assert slot["size"] == 4 and slot["local_size"] == 2
        assert slot["omp_num_threads"] == str(max(1, slot["cores"] // 2))  # the cores of a host over its 2 workers
        assert slot["data_shard"] == [rank, 4]  # the pipelines' default shard: the global rank
    done = [_line(w, "WORKER") for w in workers]
    for epoch in range(2):
        reads = [i for d in done for lo, hi in d["epochs"][epoch]["reads"] for i in range(lo, hi)]
        assert sorted(reads) == list(range(N_IMAGES))  # every image exactly once across the 4 workers
        assert [d["epochs"][epoch]["num_images"] for d in done] == [N_IMAGES] * 4  # counted over all 4
    # rank 0 alone wrote files: two checkpoints and the report, in host a's folder; host b has none
    assert done[0]["written"] == [f"ckpt/{n}" for e in (1, 2) for n in (f"model-{e:04d}.params", "model-symbol.json",
                                                                         f"model-{e:04d}.states",
                                                                         f"model-{e:04d}.json", "report.json")]
    assert [d["written"] for d in done[1:]] == [[], [], []]
    assert _files(root / "b") == []
    assert len(json.load(open(root / "a" / "ckpt" / "report.json"))["metrics"]["train.loss"]) == 2
    assert ["epoch 2/2" in w.stderr for w in workers] == [True, False, False, False]  # the progress bar
    single = tmp_path / "single"
    single.mkdir()
    proc = subprocess.run(python("multihost_train.py", single, BATCH * 4, N_IMAGES, 2), cwd=single,
                          capture_output=True, text=True, timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    reference = _params(single / "params-rank0.params")
    for rank in range(4):
        _assert_params_close(_params(out / f"params-rank{rank}.params"), reference)


@pytest.mark.slow
@pytest.mark.distributed
def test_resume_when_only_rank_zero_sees_the_checkpoints(two_hosts, tmp_path):
    """1 epoch, then 2: every rank resumes at epoch 1 from host a's files, which host b never sees, and ends
    where the uninterrupted run ended."""
    _, uninterrupted, uninterrupted_out = two_hosts
    _, first_out = _train(tmp_path, 1)
    assert _files(tmp_path / "b") == []
    workers, out = _train(tmp_path, 2)
    assert _files(tmp_path / "b") == []
    first = _params(first_out / "params-rank0.params")
    resumed_at = sum(float(np.abs(v.astype(np.float64)).sum()) for v in first.values())
    done = [_line(w, "WORKER") for w in workers]
    steps = 3
    for d in done:
        assert (d["resumed_from"], d["initial_epoch"], d["num_update"], d["steps_taken"]) == (1, 1, steps, steps)
        assert d["checksum"] == pytest.approx(resumed_at, rel=1e-9)  # the parameters epoch 1 ended with
        assert [e["epoch"] for e in d["epochs"]] == [1]
        assert d["epochs"][0]["num_update"] == 2 * steps
        assert d["epochs"][0]["lr"] == _line(uninterrupted[0], "WORKER")["epochs"][1]["lr"]  # warmup position
    assert "resumed from ckpt/model-0001.params (epoch 1" in workers[0].stderr
    assert len(json.load(open(tmp_path / "a" / "ckpt" / "report.json"))["metrics"]["train.loss"]) == 2
    reference = _params(uninterrupted_out / "params-rank0.params")
    for rank in range(4):
        _assert_params_close(_params(out / f"params-rank{rank}.params"), reference)


@pytest.mark.distributed
def test_one_plus_three_hosts_local_settings_and_rank_zero_error_reaches_every_rank(tmp_path):
    """Host a runs 1 worker, host b 3: threads follow the local size (on 2 cores: 2 on a, 1 on b; the global
    size would give 1 everywhere). Rank 0 cannot create its checkpoint folder: every rank stops with that reason,
    none waits for the timeout."""
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "ckpt").write_text("a file where the checkpoint folder should be")
    (tmp_path / "out").mkdir()
    start = time.monotonic()
    workers = run_hosts("a:1,b:3", python("multihost_train.py", tmp_path / "out", BATCH, N_IMAGES, 1),
                        cwd=str(tmp_path / "{host}"), timeout=TIMEOUT, check=False)
    assert time.monotonic() - start < TIMEOUT / 2
    for worker in workers:
        slot = _line(worker, "SLOT")
        local_size = 1 if worker.hostname == "a" else 3
        assert (slot["rank"], slot["local_rank"], slot["local_size"]) == (worker.rank, worker.local_rank, local_size)
        assert slot["omp_num_threads"] == str(max(1, slot["cores"] // local_size))
        assert slot["data_threads"] == max(1, min(3, slot["cores"] // local_size))
        assert worker.returncode not in (0, None) and not worker.killed, worker.tail()
        assert "cannot create the checkpoint folder" in worker.stderr, worker.tail()
    for worker in workers[1:]:
        assert "PermissionError: rank 0 cannot use the checkpoint prefix 'ckpt/model'" in worker.stderr


@pytest.mark.slow
@pytest.mark.distributed
def test_cli_train_on_two_hosts_writes_on_rank_zero_only(tmp_path):
    argv = [sys.executable, "-m", "resnet_gluon", "train", "--data-backend", "synthetic", "--arch", "resnet18_v1_5",
            "--image-size", "32", "-b", "4", "--synthetic-batches", "2", "--num-classes", "10", "--num-epochs", "1",
            "--model-prefix", "ckpt/m", "--dtype", "float32", "--no-progress"]
    workers = run_hosts("a:2,b:2", argv, cwd=str(tmp_path / "{host}"), timeout=TIMEOUT)
    assert json.loads(workers[0].stdout.strip().splitlines()[-1])["epochs"] == 1
    assert [w.stdout.strip() for w in workers[1:]] == ["", "", ""]
    assert _files(tmp_path / "a") == ["ckpt/m-0001.json", "ckpt/m-0001.params", "ckpt/m-0001.states",
                                      "ckpt/m-report.json", "ckpt/m-report.png", "ckpt/m-symbol.json"]
    assert _files(tmp_path / "b") == []
    assert json.load(open(tmp_path / "a" / "ckpt" / "m-0001.json"))["workers"] == 4


def test_harness_kills_every_worker_at_the_timeout(tmp_path):
    start = time.monotonic()
    with pytest.raises(HostsFailed, match="killed after the 5 s timeout") as failed:
        run_hosts("a:1,b:1", [sys.executable, "-c", "import time; print('up', flush=True); time.sleep(600)"],
                  cwd=str(tmp_path / "{host}"), timeout=5)
    assert time.monotonic() - start < 30
    assert [(w.killed, w.returncode, w.stdout) for w in failed.value.workers] == [(True, -9, "up\n")] * 2
