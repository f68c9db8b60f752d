import json
import os
import signal
import subprocess
import sys
import time
import warnings

import mxnet as mx
import numpy as np
import pytest

from helpers import REPO, ArrayBatches, horovodrun, make_records, quadrant_problem, tiny_net
from resnet_gluon import Checkpoint, evaluate, fit, resnet18_v1_5
from resnet_gluon._core.amp import bfloat16_supported
from resnet_gluon.models.blocks import BasicBlock, ResNet
from resnet_gluon.train.callbacks import REPORT_METRICS, latest_checkpoint


def _result(stdout):
    line = [l for l in stdout.splitlines() if "RESULT " in l]  # horovodrun prefixes lines with [rank]<stdout>:
    assert line, stdout
    return json.loads(line[-1].split("RESULT ", 1)[1])


@pytest.mark.distributed
@pytest.mark.parametrize("n_images", [24, 18])  # 18: the second worker's last batch is empty
def test_two_workers_match_one_worker_with_double_batch(tmp_path, n_images):
    script = os.path.join(REPO, "tests", "scripts", "train_equivalence.py")
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    single = subprocess.run([sys.executable, script, str(tmp_path / "one"), "8", str(n_images)],
                            capture_output=True, text=True, timeout=300)
    assert single.returncode == 0, single.stderr[-3000:]
    double = horovodrun(2, script, str(tmp_path / "two"), "4", str(n_images), timeout=300)
    one = mx.nd.load(str(tmp_path / "one" / "params-rank0.params"))
    two = [mx.nd.load(str(tmp_path / "two" / f"params-rank{r}.params")) for r in range(2)]
    assert sorted(one) == sorted(two[0])
    for name in one:
        np.testing.assert_array_equal(two[0][name].asnumpy(), two[1][name].asnumpy())  # ranks identical
        np.testing.assert_allclose(two[0][name].asnumpy(), one[name].asnumpy(), atol=1e-5, rtol=0)
    r1, r2 = _result(single.stdout), _result(double.stdout)
    assert r1["num_images"] == r2["num_images"] == [n_images] * 2
    assert r1["val_num_images"] == r2["val_num_images"] == [13, 13]  # every validation image once
    assert r1["val_top1"] == pytest.approx(r2["val_top1"], abs=1e-6)
    assert r1["val_loss"] == pytest.approx(r2["val_loss"], abs=1e-4)
    assert r1["loss"] == pytest.approx(r2["loss"], abs=1e-4)


@pytest.mark.distributed
def test_own_loop_with_loss_scaling_matches_fit_on_two_workers(tmp_path):
    """The README's loop (Trainer.backward/step) under loss scaling, with an empty last batch on rank 1, gives
    fit's parameters; the scaler is really in use."""
    script = os.path.join(REPO, "tests", "scripts", "train_equivalence.py")
    for mode in ("fit", "loop"):
        (tmp_path / mode).mkdir()
        proc = horovodrun(2, script, str(tmp_path / mode), "4", "18", mode, "scaled", timeout=300)
    result = _result(proc.stdout)
    assert result["loss_scaling"] and result["loss_scale"] == 2.0 ** 16
    fitted = mx.nd.load(str(tmp_path / "fit" / "params-rank0.params"))
    looped = [mx.nd.load(str(tmp_path / "loop" / f"params-rank{r}.params")) for r in range(2)]
    for name in fitted:
        np.testing.assert_array_equal(looped[0][name].asnumpy(), looped[1][name].asnumpy())
        np.testing.assert_allclose(looped[0][name].asnumpy(), fitted[name].asnumpy(), atol=1e-6, rtol=0)


@pytest.mark.bf16
def test_bfloat16_amp_lowers_loss():
    proc = subprocess.run([sys.executable, os.path.join(REPO, "tests", "scripts", "amp_bf16.py")],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = _result(proc.stdout)
    assert result["dtype"] == "bfloat16" and result["amp_cast_in_graph"]
    assert result["loss"][-1] < 0.7 * result["loss"][0], result["loss"]
    assert "cannot change to float32" in proc.stdout


def test_fit_learns_and_evaluate_matches(tmp_path):
    x, y = quadrant_problem(128, size=16)
    vx, vy = quadrant_problem(40, size=16, seed=3)
    net = ResNet(BasicBlock, (1, 1), classes=4, stem_channels=8)
    history = fit(net, ArrayBatches(x, y, 16), ArrayBatches(vx, vy, 16), epochs=3, lr=0.1, warmup_epochs=0,
                  progress=False, dtype="float32")
    assert history.epochs == [0, 1, 2]
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert history.history["val_num_images"] == [40] * 3
    again = evaluate(net, ArrayBatches(vx, vy, 16), ctx=mx.cpu())
    assert again["val_top1"] == pytest.approx(history.history["val_top1"][-1])
    assert 0 < history.history["total_ips"][-1] and history.history["latency_50"][-1] > 0


def _data(tmp_path):
    make_records(tmp_path / "data" / "train", 48, classes=3, size=(40, 40))
    make_records(tmp_path / "data" / "val", 12, classes=3, size=(40, 40), seed=1)
    return str(tmp_path / "data")


def _run_resume_script(data_root, prefix, epochs, delay=0.0):
    return subprocess.Popen([sys.executable, os.path.join(REPO, "tests", "scripts", "train_resume.py"), data_root,
                             prefix, str(epochs), str(delay)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_matches_uninterrupted(tmp_path):
    data_root = _data(tmp_path)
    ref = _run_resume_script(data_root, str(tmp_path / "ref" / "model"), 3)
    out, err = ref.communicate(timeout=600)
    assert ref.returncode == 0, err[-3000:]

    prefix = str(tmp_path / "run" / "model")
    victim = _run_resume_script(data_root, prefix, 3, delay=0.3)
    deadline = time.time() + 300
    while latest_checkpoint(prefix) != 1:  # wait for epoch 1's checkpoint, then into epoch 2
        assert time.time() < deadline and victim.poll() is None, victim.communicate()[1][-3000:]
        time.sleep(0.1)
    time.sleep(0.7)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert latest_checkpoint(prefix) == 1
    assert json.load(open(prefix + "-report.json"))["metrics"]["train.top1"].__len__() == 1  # valid JSON
    leftovers = [f for f in os.listdir(tmp_path / "run") if ".tmp" in f]
    assert not leftovers

    resumed = _run_resume_script(data_root, prefix, 3)
    out, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err[-3000:]
    assert "resumed from" in err and "epoch 0 batch" not in out
    final_ref = mx.nd.load(str(tmp_path / "ref" / "model-0003.params"))
    final = mx.nd.load(prefix + "-0003.params")
    for name in final_ref:
        np.testing.assert_allclose(final[name].asnumpy(), final_ref[name].asnumpy(), rtol=1e-5, atol=1e-6)
    report = json.load(open(prefix + "-report.json"))
    for part in ("train", "val"):
        for metric in REPORT_METRICS:
            assert len(report["metrics"][f"{part}.{metric}"]) == 3, (part, metric)
    assert set(report) >= {"model", "ngpus", "total_duration", "cmd", "metrics"}
    assert report["model"] == "resnet18_v1_5"
    assert os.path.isfile(prefix + "-report.png")


def test_resume_with_other_class_count_is_refused(tmp_path):
    x, y = quadrant_problem(32, size=16)
    prefix = str(tmp_path / "m")
    fit(resnet18_v1_5(classes=4), ArrayBatches(x, y, 16), epochs=1, callbacks=[Checkpoint(prefix)], progress=False, dtype="float32")
    with pytest.raises(ValueError, match=r"trained as classes=4 but this run has classes=5"):
        fit(resnet18_v1_5(classes=5), ArrayBatches(x, y % 5, 16), epochs=2, callbacks=[Checkpoint(prefix)],
            progress=False, dtype="float32")


def test_clear_errors(tmp_path):
    x, y = quadrant_problem(32, size=16)
    net = ResNet(BasicBlock, (1,), classes=4, stem_channels=8)
    with pytest.raises(ValueError, match="batch size must be >= 1"):
        fit(net, ArrayBatches(x, y, 16), epochs=1, batch_size=0, progress=False, dtype="float32")
    if os.geteuid() != 0:  # root can write anywhere
        (tmp_path / "ro").mkdir(mode=0o500)
        with pytest.raises(PermissionError, match="not writable"):
            fit(net, ArrayBatches(x, y, 16), epochs=1, callbacks=[Checkpoint(str(tmp_path / "ro" / "m"))],
                progress=False, dtype="float32")
    with pytest.raises(PermissionError, match="cannot create the checkpoint folder"):
        (tmp_path / "file").write_text("x")
        fit(net, ArrayBatches(x, y, 16), epochs=1, callbacks=[Checkpoint(str(tmp_path / "file" / "sub" / "m"))],
            progress=False, dtype="float32")
    with pytest.raises(ValueError, match=r"label 7.0 at epoch 1, step 1 is outside \[0, 4\)"):
        fit(net, ArrayBatches(x, y + 7, 16), epochs=1, progress=False, dtype="float32")
    prefix = str(tmp_path / "nan" / "m")
    diverging = mx.gluon.nn.HybridSequential()
    diverging.add(mx.gluon.nn.Dense(4, in_units=3 * 16 * 16), mx.gluon.nn.HybridLambda(lambda F, v: v * np.inf))
    with pytest.raises(FloatingPointError, match="non-finite loss at epoch 1, step 1"):
        fit(diverging, ArrayBatches(x, y, 16), epochs=1, callbacks=[Checkpoint(prefix)], progress=False, dtype="float32")
    assert latest_checkpoint(prefix) is None
    with pytest.raises(ValueError, match="float16 needs a GPU"):
        fit(net, ArrayBatches(x, y, 16), epochs=1, dtype="float16", progress=False)
    if not bfloat16_supported():
        with pytest.raises(ValueError, match="bfloat16 is not supported on this CPU.*AVX-512"):
            fit(net, ArrayBatches(x, y, 16), epochs=1, dtype="bfloat16", progress=False)
    with pytest.raises(ValueError, match="unknown dtype 'fp8'"):
        fit(net, ArrayBatches(x, y, 16), epochs=1, dtype="fp8", progress=False)


def test_metric_cadence_does_not_change_the_reported_figures():
    """Metrics read from the device every batch or every 50 batches give the same epoch figures."""
    x, y = quadrant_problem(96, size=16)
    results = []
    for read_every in (1, 50):
        mx.random.seed(3)
        net = ResNet(BasicBlock, (1,), classes=4, stem_channels=8)
        h = fit(net, ArrayBatches(x, y, 16), ArrayBatches(x, y, 16), epochs=2, lr=0.1, warmup_epochs=0,
                progress=False, dtype="float32", read_every=read_every)
        results.append({k: h.history[k] for k in ("loss", "top1", "top5", "val_loss", "val_top1", "num_images")})
    for key in results[0]:
        if results[0][key][0] is None:
            assert results[1][key] == results[0][key]
            continue
        np.testing.assert_allclose(results[1][key], results[0][key], rtol=1e-6, err_msg=key)


def test_loop_runs_a_bounded_distance_ahead_and_the_bar_shows_only_computed_work():
    """Callbacks see batch i once its result exists, with at most RUN_AHEAD batches taken beyond it; the progress
    bar counts those batches and shows no loss before one was read from the device."""
    import io

    from resnet_gluon import Callback, ProgressBar
    from resnet_gluon.train.fit import RUN_AHEAD

    x, y = quadrant_problem(160, size=16)
    data = ArrayBatches(x, y, 16)   # data.reads grows as fit takes batches

    class Watch(Callback):
        seen, logs = [], []

        def on_batch_end(self, batch, logs):
            self.seen.append((batch, len(data.reads)))
            self.logs.append(dict(logs))

    out = io.StringIO()
    net = ResNet(BasicBlock, (1,), classes=4, stem_channels=8)
    fit(net, data, epochs=1, lr=0.1, warmup_epochs=0, progress=False, dtype="float32", read_every=100,
        callbacks=[Watch(), ProgressBar(file=out, mininterval=0)])
    assert [b for b, _ in Watch.seen] == list(range(10))
    assert all(taken <= batch + 1 + RUN_AHEAD for batch, taken in Watch.seen), Watch.seen
    assert max(taken - batch - 1 for batch, taken in Watch.seen) == RUN_AHEAD  # the device still gets work queued
    assert all(logs == {} for logs in Watch.logs)     # read_every=100: nothing read during the epoch
    text = out.getvalue()
    assert "10/10" in text and "loss=0.000" not in text and "top1=" not in text.split("10/10")[0], text


def _accumulate_run(tmp_path, name, workers, *args):
    """tests/scripts/train_accumulate.py with ``args`` on 1 (plain process) or 2 workers; its RESULT and rank
    0's parameters."""
    out = tmp_path / name
    out.mkdir()
    script = os.path.join(REPO, "tests", "scripts", "train_accumulate.py")
    args = [str(out), *map(str, args)]
    if workers == 1:
        proc = subprocess.run([sys.executable, script, *args], capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
    else:
        proc = horovodrun(workers, script, *args, timeout=300)
    return _result(proc.stdout), [mx.nd.load(str(out / f"params-rank{r}.params")) for r in range(workers)]


@pytest.mark.distributed
def test_accumulate_2_on_one_worker_equals_two_workers_with_batchnorm(tmp_path):
    """Batch 16 x accumulate 2 on one worker = batch 16 on two workers, for a network with BatchNorm: the same
    16 images per BatchNorm batch, one update per 32 images, lr and warmup counted in updates (3 of them)."""
    one, (p_one,) = _accumulate_run(tmp_path, "one", 1, 16, 96, 2, 1, "bn", "fit")
    two, p_two = _accumulate_run(tmp_path, "two", 2, 16, 96, 1, 1, "bn", "fit")
    assert one["updates"] == two["updates"] == 3 and one["steps"] == 6 and two["steps"] == 3
    assert one["rounds"] == 3  # one allreduce round per update, not per batch
    assert one["lr"] == two["lr"] == pytest.approx(1.0 * 32 / 256)  # lr_per_256=1 for the global batch of 32
    assert one["num_images"] == two["num_images"] == [96]
    assert one["loss"] == pytest.approx(two["loss"], rel=1e-6)
    trained = [k for k in p_one if not k.endswith(("running_mean", "running_var"))]
    assert len(trained) == one["params_with_grad"] == 11
    for name in trained:  # running statistics are per worker (2 updates of them here, 1 there) and differ
        np.testing.assert_allclose(p_two[0][name].asnumpy(), p_one[name].asnumpy(), rtol=1e-5, atol=1e-6,
                                   err_msg=name)


@pytest.mark.distributed
def test_own_loop_accumulates_on_two_workers_with_one_allreduce_per_update(tmp_path):
    """The README's loop with Trainer(accumulate=2) on two workers at batch 8 = fit at batch 32 on one: 36 images
    give 3 batches an epoch, updates of 32 and 4 images (rank 1's second accumulation is empty), 2 epochs; Horovod
    allreduces each gradient once per update."""
    big, (p_big,) = _accumulate_run(tmp_path, "big", 1, 32, 36, 1, 2, "plain", "fit")
    acc, p_acc = _accumulate_run(tmp_path, "acc", 2, 8, 36, 2, 2, "plain", "loop")
    assert big["updates"] == acc["updates"] == 4 and acc["steps"] == 6
    assert acc["rounds"] == 4 and acc["tensors"] == 4 * acc["params_with_grad"] == 24
    assert acc["lr"] == big["lr"] == pytest.approx(1.0 * 32 / 256)
    for name in p_big:
        np.testing.assert_array_equal(p_acc[0][name].asnumpy(), p_acc[1][name].asnumpy())  # ranks identical
        np.testing.assert_allclose(p_acc[0][name].asnumpy(), p_big[name].asnumpy(), rtol=1e-5, atol=1e-6,
                                   err_msg=name)


def test_accumulate_2_x_16_equals_one_batch_of_32_without_batchnorm():
    """72 images: batches of 32, 32, 8 against 16 x 2, 16 x 2, 8 (an epoch of 5 batches ends with a shorter
    accumulation, its exact mean); two epochs, so the second starts a fresh accumulation; warmup over 3 updates."""
    x, y = quadrant_problem(72, size=8)
    runs = []
    for batch, accumulate in ((32, 1), (16, 2)):
        mx.random.seed(42)
        net = tiny_net()
        history = fit(net, ArrayBatches(x, y, batch), epochs=2, dtype="float32", progress=False, lr_per_256=1.0,
                      warmup_epochs=1, schedule="cosine", accumulate=accumulate)
        runs.append((history.history, {k: p.data().asnumpy() for k, p in net.collect_params().items()}))
    (h_big, p_big), (h_acc, p_acc) = runs
    assert h_acc["num_images"] == h_big["num_images"] == [72, 72]
    np.testing.assert_allclose(h_acc["lr"], h_big["lr"], rtol=1e-9)  # schedule counted in updates: 3 an epoch
    np.testing.assert_allclose(h_acc["loss"], h_big["loss"], rtol=1e-6)
    for (name, big), acc in zip(p_big.items(), p_acc.values()):
        np.testing.assert_allclose(acc, big, rtol=1e-5, atol=1e-6, err_msg=name)


def test_batch_larger_than_the_training_set_is_an_error():
    """Issue #22 item 10: 40 images at batch 64 (or 16 x accumulate 4) would train every step with the lr of a
    batch of 64 that never happens; the first update is refused, before it changes a weight."""
    x, y = quadrant_problem(40, size=8)
    for batch, accumulate in ((64, 1), (16, 4)):
        net = tiny_net()
        before = [p.data().asnumpy().copy() for p in net.collect_params().values()]
        with pytest.raises(ValueError, match=rf"an epoch holds 40 training images, fewer than the global batch of 64 "
                                             rf"\(batch_size {batch} x 1 worker\(s\) x accumulate {accumulate}\).*"
                                             rf"at most {40 // accumulate} images per worker"):
            fit(net, ArrayBatches(x, y, batch), epochs=1, dtype="float32", progress=False, accumulate=accumulate)
        for old, p in zip(before, net.collect_params().values()):
            np.testing.assert_array_equal(p.data().asnumpy(), old)
    # exactly one global batch is fine, silently, and so is a validation set smaller than a batch
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        fit(tiny_net(), ArrayBatches(x, y, 40), ArrayBatches(x[:5], y[:5], 40), epochs=1, dtype="float32",
            progress=False, warmup_epochs=0)
