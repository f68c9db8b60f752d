import json
import os
import subprocess
import sys

import numpy as np
import pytest

from helpers import REPO, huge_bilevel_png, jpeg, make_image_folder, smooth_image, tiny_net
from resnet_gluon.data.preprocessing import Preprocessing
from resnet_gluon.deploy.predictor import Predictor

CLI = [sys.executable, "-m", "resnet_gluon"]


def run(*args, check=True, timeout=600):
    proc = subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, timeout=timeout, cwd=REPO)
    if check:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def run_here(capsys, *args):
    """The command run by ``cli.main`` in this process (no new interpreter: ~4 s less), reported as ``run`` does."""
    from resnet_gluon.cli import main

    capsys.readouterr()
    try:
        code = main([str(a) for a in args])
    except SystemExit as exit_:
        code = exit_.code
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(list(args), code, out, err)


def _one_line_error(proc, code, pattern):
    assert proc.returncode == code, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and pattern in errors[0], proc.stderr
    if code == 2:  # a usage error is that one line alone (no usage block)
        assert [line for line in proc.stderr.splitlines() if line.strip()] == errors, proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    make_image_folder(root / "imgs_train", counts=(12, 12, 12), size=(40, 44))
    make_image_folder(root / "imgs_val", counts=(5, 5, 6), size=(40, 44), seed=1)
    run("prepare", "--images", root / "imgs_train", "-o", root / "data" / "train")
    run("prepare", "--images", root / "imgs_val", "-o", root / "data" / "val")
    return root


def test_help_lists_every_subcommand(capsys):
    out = run("--help").stdout  # python -m resnet_gluon itself; the sub-commands' help in this process
    for name in ("prepare", "train", "benchmark", "predict", "demo"):
        assert name in out
    assert "--data-backend" in run_here(capsys, "train", "--help").stdout
    assert "--calibration" in run_here(capsys, "predict", "--help").stdout


def test_prepare_writes_recordio_and_classes(tiny_data):
    data = tiny_data / "data"
    assert sorted(os.listdir(data)) == ["classes.json", "train.idx", "train.lst", "train.rec", "val.idx",
                                        "val.lst", "val.rec"]
    assert json.load(open(data / "classes.json")) == ["class0", "class1", "class2"]


def test_prepare_fashion_mnist_limit(tmp_path):
    out = run("prepare", "--fashion-mnist", "--limit", 20, "--image-size", 28, "-o", tmp_path).stdout
    assert "train.rec: 20 images" in out and "val.rec: 20 images" in out


@pytest.mark.slow
def test_train_then_val_on_checkpoint_gives_same_accuracy(tiny_data, tmp_path):
    prefix = tmp_path / "m"
    common = ["--data-root", tiny_data / "data", "--arch", "resnet18_v1_5", "--image-size", 32, "-b", 8,
              "--model-prefix", prefix, "--dtype", "float32", "--data-threads", 1]
    out = run("train", *common, "--num-epochs", 2, "--lr", 0.05, "--warmup-epochs", 0, "--no-progress").stdout
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["epochs"] == 2
    report = json.load(open(f"{prefix}-report.json"))
    assert len(report["metrics"]["val.top1"]) == 2
    assert os.path.isfile(f"{prefix}-0002.params") and os.path.isfile(f"{prefix}-symbol.json")
    val = json.loads(run("train", *common, "--mode", "val").stdout)
    assert val["val_top1"] == pytest.approx(report["metrics"]["val.top1"][-1], abs=1e-9)
    assert val["val_num_images"] == 16
    # the same command again resumes: nothing left to train
    again = run("train", *common, "--num-epochs", 2, "--no-progress")
    assert "resumed from" in again.stderr


@pytest.mark.slow
def test_train_builds_the_recipes_augmentation_into_the_pipeline(tiny_data, tmp_path):
    prefix = tmp_path / "m"
    proc = run("train", "--data-root", tiny_data / "data", "--arch", "resnet18_v1_5", "--image-size", 32, "-b", 8,
               "--model-prefix", prefix, "--dtype", "float32", "--data-threads", 1, "--num-epochs", 1,
               "--no-progress", "--recipe", "rsb_a3", "--random-erasing", 0.25, "--lr", 0.01)
    assert "recipe 'rsb_a3'" in proc.stderr and "does not say whether" not in proc.stderr
    recipe = json.load(open(f"{prefix}-0001.json"))["recipe"]
    # fit refuses a pipeline without the recipe's augmentation: the run trained with it
    assert (recipe["auto_augment"], recipe["random_erasing"], recipe["cutmix"]) == ("rand-m6-n2-inc1", 0.25, 1.0)


@pytest.mark.slow
@pytest.mark.distributed
def test_train_two_workers_through_horovodrun(tiny_data, tmp_path):
    prefix = tmp_path / "m2"
    out = run("train", "-n", 2, "--data-root", tiny_data / "data", "--arch", "resnet18_v1_5", "--image-size", 32,
              "-b", 4, "--model-prefix", prefix, "--dtype", "float32", "--num-epochs", 1, "--data-threads", 1,
              "--no-progress").stdout
    assert '"epochs": 1' in out
    report = json.load(open(f"{prefix}-report.json"))
    assert report["workers"] == 2
    # validation counted every image exactly once across both workers
    assert json.load(open(f"{prefix}-0001.json"))["metrics"]["val_num_images"] == 16


@pytest.mark.slow  # the demo trains ResNet-50 (its model; the fast tier trains nothing bigger than resnet18)
def test_demo_end_to_end_on_few_images_then_resumes(tmp_path):
    out = tmp_path / "demo"
    args = ["demo", "-o", out, "--epochs", 1, "--train-images", 256, "--test-images", 500, "-b", 32]
    line = run(*args).stdout.strip().splitlines()[-1]
    assert line.startswith("demo: 1 epochs, test top-1 "), line
    record = json.load(open(out / "model-0001.json"))
    assert record["metrics"]["val_num_images"] == 500             # the first 500 of Fashion-MNIST's test set
    assert record["class_names"][0] == "T-shirt/top" and len(record["class_names"]) == 10
    report = json.load(open(out / "report.json"))
    assert report["metrics"]["val.top1"] == [pytest.approx(float(line.split("top-1 ")[1].split(",")[0]), abs=1e-4)]
    for name in ("model-symbol.json", "model-0001.params", "report.png", "data/train.rec", "data/val.idx"):
        assert os.path.isfile(out / name), name
    assert "already complete" in run(*args).stdout


def test_train_batch_larger_than_the_data_is_refused_and_accumulate_trains(tiny_data, tmp_path):
    """Issue #22 item 10 through the CLI: 36 training images at -b 64 is a one-line error naming the fix, before
    a weight changes (no checkpoint); -b 8 --accumulate 2 trains with updates of 16 images."""
    common = ["--data-root", tiny_data / "data", "--arch", "resnet18_v1_5", "--image-size", 32, "--dtype", "float32",
              "--data-threads", 1, "--num-epochs", 1, "--no-progress", "--mode", "train"]
    _one_line_error(run("train", *common, "-b", 64, "--model-prefix", tmp_path / "big", check=False), 1,
                    "an epoch holds 36 training images, fewer than the global batch of 64 (batch_size 64 x 1 "
                    "worker(s) x accumulate 1) that the learning rate is scaled for; use a batch size of at most 36")
    assert not os.path.exists(f"{tmp_path / 'big'}-0001.params")
    proc = run("train", *common, "-b", 8, "--accumulate", 2, "--model-prefix", tmp_path / "acc")
    warned = [line for line in proc.stderr.splitlines() if "warning" in line.lower()]
    # batches 8 x 4 + 4: only the last update is partial, no word about it; the one warning is that this 1-epoch
    # run never leaves the reference's 5-epoch warm-up (the lr checked below is a warm-up one, on purpose)
    assert len(warned) == 1 and "the lr warm-up (5 epochs) is longer than the run (1 epochs)" in warned[0], proc.stderr
    record = json.load(open(f"{tmp_path / 'acc'}-0001.json"))
    assert (record["batch_size"], record["accumulate"], record["steps_per_epoch"], record["num_update"]) == (8, 2, 5, 3)
    assert record["metrics"]["lr"] == pytest.approx(0.1 * 16 / 256 * 3 / 15)  # warmup: update 3 of 5 epochs x 3


def test_bad_inputs_give_one_line_errors(tiny_data, tmp_path, capsys):
    # One usage error and (below) one input error in a fresh interpreter, where nothing else may reach stderr (no
    # import-time warning either); the others in this process: main() gives the same exit status and stderr.
    _one_line_error(run("train", "-b", 0, check=False), 2, "must be >= 1")
    _one_line_error(run_here(capsys, "train", "--data-root", tmp_path / "missing", "--model-prefix", tmp_path / "m"),
                    1, "data root")
    _one_line_error(run_here(capsys, "train", "--dtype", "fp8"), 2, "invalid choice: 'fp8'")
    _one_line_error(run_here(capsys, "train", "--data-backend", "tfrecord"), 2, "invalid choice: 'tfrecord'")
    _one_line_error(run_here(capsys, "train", "--data-root", tiny_data / "data", "--mode", "val", "--model-prefix",
                             tmp_path / "none", "--load-epoch", 3), 1, "no checkpoint")
    (tmp_path / "imgs" / "a").mkdir(parents=True)
    (tmp_path / "imgs" / "a" / "x.jpg").write_text("not an image")
    _one_line_error(run("prepare", "--images", tmp_path / "imgs", "-o", tmp_path / "o", check=False), 1,
                    "is not a readable image")


@pytest.mark.slow
@pytest.mark.distributed
def test_benchmark_writes_one_entry_per_workers_and_batch_size(tmp_path):
    out = tmp_path / "bench.json"
    run("benchmark", "-n", "1,2", "-b", "4,8", "-i", 2, "-e", 2, "-w", 1, "--arch", "resnet18_v1_5",
        "--image-size", 32, "--dtype", "float32", "--num-classes", 10, "-o", out)
    report = json.load(open(out))
    assert report["mode"] == "training"
    assert [(r["workers"], r["batch_size"]) for r in report["results"]] == [(1, 4), (1, 8), (2, 4), (2, 8)]
    for r in report["results"]:
        assert r["total_ips"] > 0 and r["latency_50"] > 0 and r["epochs"] == 1


def test_benchmark_of_inference_in_float32_and_int8(tmp_path, capsys):
    out = tmp_path / "bench.json"
    run("benchmark", "--only-inference", "-b", 8, "-i", 2, "-e", 2, "--arch", "resnet18_v1_5", "--image-size", 32,
        "--dtype", "float32", "--num-classes", 10, "-o", out)
    report = json.load(open(out))
    assert report["mode"] == "inference" and report["results"][0]["total_ips"] > 0
    run("benchmark", "--only-inference", "-b", 8, "-i", 2, "-e", 2, "--arch", "resnet18_v1_5", "--image-size", 32,
        "--dtype", "int8", "--num-classes", 10, "-o", out)
    report = json.load(open(out))
    assert report["results"][0]["dtype"] == "int8" and report["results"][0]["total_ips"] > 0
    _one_line_error(run_here(capsys, "benchmark", "--dtype", "int8"), 1, "add --only-inference")


@pytest.fixture(scope="module")
def checkpoint(tiny_data):
    prefix = tiny_data / "ckpt" / "m"
    run("train", "--data-root", tiny_data / "data", "--arch", "resnet18_v1_5", "--image-size", 32, "-b", 8,
        "--model-prefix", prefix, "--dtype", "float32", "--data-threads", 1, "--num-epochs", 1, "--lr", 0.05,
        "--warmup-epochs", 0, "--no-progress")
    return prefix


@pytest.mark.slow
def test_predict_on_a_validation_set_and_on_image_files(tiny_data, checkpoint, tmp_path):
    record = json.load(open(f"{checkpoint}-0001.json"))
    assert record["class_names"] == ["class0", "class1", "class2"] and record["preprocessing"]["image_size"] == 32
    out = json.loads(run("predict", "--model-prefix", checkpoint, "--data-root", tiny_data / "data", "-b", 8,
                         "--json", "--onnx", tmp_path / "m.onnx").stdout.strip().splitlines()[-1])
    assert os.path.isfile(tmp_path / "m.onnx")
    assert out["num_images"] == 16 and out["dtype"] == "float32"
    assert out["top1"] == pytest.approx(record["metrics"]["val_top1"], abs=1e-6)
    assert out["total_ips"] > 0 and out["latency_99"] >= out["latency_50"] > 0
    text = run("predict", "--model-prefix", checkpoint, "--data-root", tiny_data / "data", "-b", 8).stdout
    assert "top-1" in text and "img/s" in text and "p99" in text

    images = sorted(str(p) for p in (tiny_data / "imgs_val").rglob("*.jpg"))[:3]
    lines = run("predict", "--model-prefix", checkpoint, "--epoch", 1, "-k", 2, *images).stdout.strip().splitlines()
    assert len(lines) == 3
    for image, line in zip(images, lines):
        assert line.startswith(image + ": ") and line[len(image):].count("class") == 2

    # INT8: calibrated on train.rec, saved, and loaded back by prefix.
    run("predict", "--model-prefix", checkpoint, "--dtype", "int8", "--data-root", tiny_data / "data",
        "--num-calib-images", 32, "--calib-batch-size", 8, "--save-prefix", tmp_path / "q", "-b", 8)
    q = json.loads(run("predict", "--model-prefix", tmp_path / "q", "--rec", tiny_data / "data" / "val.rec", "-b", 8,
                       "--json").stdout.strip().splitlines()[-1])
    assert q["dtype"] == "int8" and q["num_images"] == 16


def test_predict_and_evaluation_need_no_horovod(tiny_data, checkpoint):
    """Scoring a model imports neither Horovod nor the training loop, Trainer or callbacks (the recipe, a plain
    dataclass the parser reads its defaults from, may load)."""
    code = ("import sys; from resnet_gluon import cli, evaluation; from resnet_gluon.deploy import predictor; "
            f"rc = cli.main(['predict', '--model-prefix', {str(checkpoint)!r}, '--data-root', "
            f"{str(tiny_data / 'data')!r}, '-b', '8', '--json']); "
            "print('LOADED', sorted(m for m in sys.modules if m.startswith(('horovod', 'resnet_gluon.train.fit', "
            "'resnet_gluon.train.trainer', 'resnet_gluon.train.callbacks'))), rc)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "LOADED [] 0" in proc.stdout, proc.stdout


def test_predict_bad_inputs_give_one_line_errors(tiny_data, checkpoint, tmp_path, capsys):
    bad = tmp_path / "photo.jpg"
    bad.write_text("not an image")
    # The deprecated --precision in a fresh interpreter (its stderr holds the one line); the others in this process.
    _one_line_error(run("predict", "--model-prefix", checkpoint, "--precision", "int4", bad, check=False), 2,
                    "invalid choice: 'int4'")
    _one_line_error(run_here(capsys, "predict", "--model-prefix", checkpoint, bad), 1, "is not an image")
    _one_line_error(run_here(capsys, "predict", "--model-prefix", checkpoint, "--epoch", 9, "--data-root",
                             tiny_data / "data"), 1, "no checkpoint")
    _one_line_error(run_here(capsys, "predict", "--model-prefix", checkpoint, "--dtype", "int8", "--calibration",
                             tiny_data / "data" / "val.rec", bad), 1, "fewer than one batch of 32")
    _one_line_error(run_here(capsys, "predict", "--model-prefix", checkpoint), 1, "give image files")
    _one_line_error(run_here(capsys, "predict", "--model-prefix", checkpoint, "--dtype", "int8", "--onnx",
                             tmp_path / "x.onnx"), 1, "--onnx exports the float32 model")


def test_predict_command_on_a_folder_and_on_bad_files(tmp_path, capsys):
    """Items 9, 5, 8 on the command line: 'predict some_folder/' said "no image file 'some_folder'"; now it predicts
    the images in the folder (sorted, one line each, sub-folders and other files left out, broken links named);
    a file over OpenCV's pixel limit is a one-line error; a Latin-1 name is printed escaped, on one line."""
    from resnet_gluon.cli import main as cli

    Predictor(tiny_net(3), preprocessing=Preprocessing.for_size(32), class_names=list("xyz")).save(tmp_path / "m")
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    rng = np.random.RandomState(0)
    for name in ("b.jpg", "a.png", "caf\udce9.jpg", "sub/c.jpg", ".hidden.jpg"):
        with open(os.path.join(os.fsencode(folder), os.fsencode(name)), "wb") as f:
            f.write(jpeg(smooth_image(rng, 40, 40)))
    (folder / "notes.txt").write_text("not an image")
    os.symlink(tmp_path / "nowhere.jpg", folder / "gone.jpg")
    assert cli(["predict", "--model-prefix", str(tmp_path / "m"), str(folder), "-k", "2"]) == 0
    out, err = capsys.readouterr()
    lines = out.strip().splitlines()
    assert [line.split(": ")[0] for line in lines] == [f"{folder}/a.png", f"{folder}/b.jpg", f"{folder}/caf\\xe9.jpg"]
    assert all(line.count("(") == 2 for line in lines)  # top-2 classes each
    assert err.strip() == f"warning: skipped 1 broken symbolic link(s) in '{folder}': 'gone.jpg'"
    (tmp_path / "empty").mkdir()
    (tmp_path / "huge.png").write_bytes(huge_bilevel_png(33000))
    for bad, why in ((tmp_path / "empty", "holds no image files"), (tmp_path / "huge.png", "CV_IO_MAX_IMAGE_PIXELS")):
        assert cli(["predict", "--model-prefix", str(tmp_path / "m"), str(bad)]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("resnet-gluon predict: error: ") and why in err[0], err


_WORKER = """
import pathlib, signal, sys, time
out = pathlib.Path(sys.argv[1])
def stop(signum, frame):
    out.with_suffix('.signal').write_text(str(signum))
    sys.exit(75)
signal.signal(signal.SIGTERM, stop)
signal.signal(signal.SIGUSR1, stop)
out.with_suffix('.ready').touch()
time.sleep(60)
sys.exit(1)
"""

_LAUNCHER = """
import pathlib, signal, subprocess, sys
out = pathlib.Path(sys.argv[1])
def hit(signum, frame):
    (out / 'launcher.signal').write_text(str(signum))
signal.signal(signal.SIGTERM, hit)
signal.signal(signal.SIGUSR1, hit)
# 'resnet_gluon' in the workers' command lines, as in horovodrun's `python -m resnet_gluon train ...`
workers = [subprocess.Popen([sys.executable, '-c', sys.argv[2], str(out / f'worker{i}'), 'resnet_gluon'])
           for i in range(2)]
sys.exit(max(w.wait() for w in workers))
"""


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGUSR1"])
def test_train_with_workers_forwards_a_stop_signal_to_the_workers_not_to_horovodrun(tmp_path, signame):
    """``train -n N`` runs horovodrun; a cluster's stop signal to it must reach the workers (which checkpoint and
    exit 75), not horovodrun, which would freeze a worker and kill it 5 s later. A stand-in launcher with two
    workers takes horovodrun's place."""
    import signal
    import time

    launcher = [sys.executable, "-c", _LAUNCHER, str(tmp_path), _WORKER]
    outer = subprocess.Popen([sys.executable, "-c", "import sys; from resnet_gluon.cli import _run_forwarding_signals;"
                              f" sys.exit(_run_forwarding_signals({launcher!r}))"], cwd=REPO)
    try:
        deadline = time.monotonic() + 60
        while not all((tmp_path / f"worker{i}.ready").exists() for i in range(2)):
            assert time.monotonic() < deadline and outer.poll() is None, "the stand-in workers did not start"
            time.sleep(0.1)
        outer.send_signal(getattr(signal, signame))
        assert outer.wait(timeout=30) == 75
    finally:
        outer.kill()
    sent = str(int(getattr(signal, signame)))
    assert [(tmp_path / f"worker{i}.signal").read_text() for i in range(2)] == [sent, sent]
    assert not (tmp_path / "launcher.signal").exists()


def test_main_makes_warnings_one_line_and_restores_the_format_after(capsys):
    import warnings

    from resnet_gluon.cli import main

    before = warnings.formatwarning
    assert main(["train", "--data-backend", "synthetic", "--num-classes", "3", "--arch", "resnet18_v1_5",
                 "--image-size", "16", "-b", "2", "--synthetic-batches", "1", "--num-epochs", "1", "--no-progress",
                 "--dtype", "float32", "--auto-augment", "rand-m9-n2", "--mode", "val", "--model-prefix",
                 "/nonexistent/m"]) == 1   # an input error after the swap
    assert warnings.formatwarning is before
    assert warnings.formatwarning("x", UserWarning, "f.py", 1) != "resnet-gluon train: warning: x\n"


def test_train_mode_val_validates_with_the_checkpoints_recorded_preprocessing(tmp_path, capsys):
    """``--mode val`` without --image-size takes the crop and resize the record holds, as predict does (it took
    the flags' 224 px defaults); given sizes are used, with a warning when they differ from the record."""
    import mxnet as mx

    from helpers import ArrayBatches, quadrant_problem
    from resnet_gluon import Checkpoint, fit
    from resnet_gluon.cli import _parser, _preprocessing, _recipe

    prefix = str(tmp_path / "m")
    x, y = quadrant_problem(16, size=16)
    mx.random.seed(0)
    fit(tiny_net(), ArrayBatches(x, y, 8), epochs=1, dtype="float32", progress=False, warmup_epochs=0,
        callbacks=[Checkpoint(prefix, preprocessing=Preprocessing.for_size(16, crop_ratio=0.95))])
    capsys.readouterr()

    def val_preprocessing(*flags):
        args = _parser().parse_args(["train", "--mode", "val", "--model-prefix", prefix, *flags])
        return _preprocessing(args, _recipe(args)), capsys.readouterr().err

    (p, err) = val_preprocessing()
    assert (p.image_size, p.resize, err) == (16, 17, "")
    (p, err) = val_preprocessing("--image-size", "24")
    assert (p.image_size, p.resize) == (24, 27)
    assert "validating with image_size 24, resize 27; " in err and "records image_size 16, resize 17" in err
    (p, err) = val_preprocessing("--test-crop-ratio", "0.5")   # the recorded size, another resize
    assert (p.image_size, p.resize) == (16, 32) and "records resize 17" in err
    (p, err) = val_preprocessing("--layout", "NHWC")   # not a size: the record's, as without flags
    assert (p.image_size, p.layout) == (16, "NCHW") and err == ""
    args = _parser().parse_args(["train", "--model-prefix", prefix])   # training: the flags (default 224)
    assert _preprocessing(args, _recipe(args)).image_size == 224
