"""The command line: ``python -m resnet_gluon`` / ``resnet-gluon`` with ``prepare``, ``train``, ``benchmark``,
``predict`` and ``demo``. A thin layer over the public API; argparse lives here only.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from typing import List, Optional

__all__ = ["main"]


class _Parser(argparse.ArgumentParser):
    """argparse that prints a one-line error naming the flag (and where to look for the rest), exit status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _int_list(text: str) -> List[int]:
    try:
        values = [int(v) for v in text.replace(",", " ").split()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers like '1,2' or '64 128', got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected integers >= 1, got {text!r}")
    return values


def _training_dtypes():
    from .amp import TRAINING_DTYPES

    return list(TRAINING_DTYPES)


def _inference_dtypes():
    from .amp import INFERENCE_DTYPES

    return ["auto", *INFERENCE_DTYPES]


def _default_backend() -> str:
    from .runtime import num_gpus

    return "dali-gpu" if num_gpus() > 0 else "dali-cpu"


def _backends():
    from .pipelines import BACKENDS

    return list(BACKENDS)


def _models():
    from .models import list_models

    return list_models()


# ---------------------------------------------------------------------------------------------------- prepare
def _add_prepare(sub):
    p = sub.add_parser("prepare", help="write .rec/.idx/.lst (+ classes.json) from an image folder or Fashion-MNIST",
                       description="Pack images into RecordIO: an image-folder tree (one sub-folder per class) "
                                   "with --images, split into train and val with --val-fraction, or the embedded "
                                   "Fashion-MNIST with --fashion-mnist. One folder of record files has one class "
                                   "list, classes.json: the first split prepared there writes it, later ones use "
                                   "its numbering.")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--images", help="image folder: <images>/<class>/<file>")
    source.add_argument("--fashion-mnist", action="store_true",
                        help="the embedded Fashion-MNIST (Debian package dataset-fashion-mnist)")
    source.add_argument("--rebuild-index", metavar="REC", help="rebuild the .idx of an existing .rec")
    source.add_argument("--check", metavar="REC", help="check every record of a .rec (labels, and images DALI "
                                                       "would fail on or misread)")
    p.add_argument("-o", "--output", default=None,
                   help="with --images, a prefix (default: data/train, writing data/train.rec/.idx/.lst and "
                        "data/classes.json); with --images --val-fraction or --fashion-mnist, a folder that gets "
                        "train.* and val.* (default: data)")
    p.add_argument("--val-fraction", type=float, default=None,
                   help="--images: put this fraction of each class (stratified, seeded) into val.*, the rest into "
                        "train.*, both in the folder -o")
    p.add_argument("--no-shuffle", dest="shuffle", action="store_false",
                   help="--images: write class by class instead of in a random order (default: shuffled, as "
                        "im2rec does)")
    p.add_argument("--shuffle", dest="shuffle", action="store_true", default=True, help=argparse.SUPPRESS)
    p.add_argument("--seed", type=int, default=0,
                   help="--images: seed of the order and the split (default: %(default)s)")
    p.add_argument("--resize", type=_positive, default=None,
                   help="--images: downscale images whose shorter side is longer to this many pixels "
                        "(as im2rec --resize; default: keep sizes)")
    p.add_argument("--image-size", type=_positive, default=32, help="Fashion-MNIST image size (default: %(default)s)")
    p.add_argument("--fashion-mnist-root", default=None, help="folder of the Fashion-MNIST IDX files")
    p.add_argument("--num-threads", type=_positive, default=2, help="encoding threads (default: %(default)s)")
    p.add_argument("--limit", type=_positive, default=None, help="Fashion-MNIST: keep the first N images of each split")
    p.add_argument("--overwrite", action="store_true", help="replace existing files (and a classes.json that lacks "
                                                            "a class of --images)")
    p.set_defaults(run=_prepare)


def _prepare(args) -> int:
    from . import data, image_folders

    if args.rebuild_index:
        print(data.rebuild_index(args.rebuild_index))
    elif args.check:
        print(f"{args.check}: {data.check_records(args.check)} records, all readable")
    elif args.fashion_mnist:
        root = args.fashion_mnist_root or data.FASHION_MNIST_DIR
        train, val = data.fashion_mnist_to_recordio(args.output or "data", image_size=args.image_size, root=root,
                                                    train_limit=args.limit, val_limit=args.limit,
                                                    overwrite=args.overwrite, num_threads=args.num_threads)
        print(f"{train.rec}: {len(train)} images\n{val.rec}: {len(val)} images")
    else:
        options = dict(num_threads=args.num_threads, shuffle=args.shuffle, seed=args.seed, overwrite=args.overwrite,
                       resize=args.resize)
        if args.val_fraction is not None:
            done = image_folders.split_images_to_recordio(args.images, args.output or "data",
                                                          val_fraction=args.val_fraction, **options)
        else:
            done = [image_folders.images_to_recordio(args.images, args.output or os.path.join("data", "train"),
                                                     **options)]
        for summary in done:
            print(summary)
        if done[0].skipped():
            print(f"{done[0].skipped()} in {args.images}")
        if done[0].replaced_classes:
            root = os.path.dirname(done[0].files.rec) or "."
            old = list(done[0].replaced_classes)
            print(f"warning: replaced {os.path.join(root, 'classes.json')} (it listed {old}); record files prepared "
                  f"before in {root} use the old numbering: prepare them again", file=sys.stderr)
    return 0


# ------------------------------------------------------------------------------------------------------ train
def _add_common_training(p, *, defaults):
    p.add_argument("-n", "--num-workers", type=_positive, default=1,
                   help="worker processes on this host (launches horovodrun -np N; under horovodrun already, "
                        "ignored) (default: %(default)s)")
    p.add_argument("-b", "--batch-size", type=_positive, default=defaults["batch_size"],
                   help="images per worker per step (default: %(default)s)")
    p.add_argument("--arch", default="resnet50_v1_5", choices=_models(), metavar="ARCH",
                   help="model name: %(choices)s (default: %(default)s)")
    p.add_argument("--dtype", default=defaults["dtype"], choices=defaults.get("dtypes", _training_dtypes()),
                   help="precision; auto = float16 on GPUs, bfloat16 on CPUs that support it, else float32 "
                        "(default: %(default)s)")
    p.add_argument("--data-backend", default=_default_backend(), choices=_backends(),
                   help="input pipeline; dali-gpu decodes with nvJPEG on the GPU (default here: %(default)s)")
    p.add_argument("--layout", default="NCHW", choices=["NCHW", "NHWC"],
                   help="tensor layout of data and model; NHWC (GPUs only) is the reference's on Tensor Cores")
    p.add_argument("--data-dtype", default="float32", choices=["float32", "float16"],
                   help="dtype of the pipeline's output batches (float16 halves the copy to the model)")
    p.add_argument("--pad-output", action="store_true",
                   help="pad images to 4 channels (DALI's pad_output, the reference's GPU input) with a 4-channel stem")
    p.add_argument("--image-size", type=_positive, default=defaults["image_size"],
                   help="training/validation crop (default: %(default)s)")
    p.add_argument("--num-classes", type=_positive, default=None,
                   help="classes (default: from classes.json in --data-root, else 1000)")
    p.add_argument("--data-threads", type=_positive, default=None,
                   help="pipeline threads (default: 3, the reference's, at most the cores of a worker)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")


def _add_train(sub):
    p = sub.add_parser("train", help="train (and validate) a model; resumes from --model-prefix",
                       description="Train with validation and a checkpoint after every epoch (the reference's "
                                   "workflow). Re-running the same command resumes from the newest checkpoint.")
    _add_common_training(p, defaults=dict(batch_size=256, dtype="auto", image_size=224))
    p.add_argument("--data-root", default=None, help="folder with train.rec/.idx and val.rec/.idx")
    p.add_argument("--mode", default="train_val", choices=["train_val", "train", "val"],
                   help="train and validate, train only, or validate a checkpoint (default: %(default)s)")
    from .preprocessing import Preprocessing
    from .recipe import SCHEDULES, Recipe

    r = Recipe()
    p.add_argument("--num-epochs", type=_positive, default=r.epochs, help="epochs (default: %(default)s)")
    p.add_argument("--lr", type=float, default=None,
                   help=f"peak lr (default: {r.lr_per_256} per 256 images of global batch)")
    p.add_argument("--lr-schedule", default=r.schedule, choices=SCHEDULES, help="(default: %(default)s)")
    p.add_argument("--warmup-epochs", type=float, default=r.warmup_epochs, help="(default: %(default)s)")
    p.add_argument("--wd", type=float, default=r.wd, help="weight decay (default: %(default)s)")
    p.add_argument("--label-smoothing", type=float, default=r.label_smoothing, help="(default: %(default)s)")
    p.add_argument("--mixup", type=float, default=r.mixup, help="mixup alpha (default: %(default)s)")
    p.add_argument("--model-prefix", default="model", help="checkpoint prefix (default: %(default)s)")
    p.add_argument("--load-epoch", type=int, default=None, help="with --mode val: checkpoint epoch (default: newest)")
    p.add_argument("--report", default=None, help="JSON report path (default: <model-prefix>-report.json)")
    p.add_argument("--min-area", type=float, default=Preprocessing().area[0],
                   help="random-resized-crop min area (default: %(default)s)")
    p.add_argument("--synthetic-batches", type=_positive, default=20, help="batches per epoch for synthetic data")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--pretrained", metavar="FILE", default=None,
                   help="start from these weights: ours/gluoncv .params, an exported checkpoint's -NNNN.params, "
                        "torchvision/timm .safetensors or .pth (needs torch); a classifier with another class count "
                        "is replaced by a new one")
    p.add_argument("--freeze-features", action="store_true", help="train only the classifier")
    p.add_argument("--features-lr-mult", type=float, default=None,
                   help="learning-rate multiplier of everything but the classifier, e.g. 0.1 (default: 1)")
    p.set_defaults(run=_train)


def _relaunch_under_horovodrun(args, argv: List[str]) -> Optional[int]:
    """Re-run this command under ``horovodrun -np N`` when asked for N > 1 workers outside horovodrun."""
    from .dist import under_horovodrun

    if args.num_workers == 1 or under_horovodrun():
        return None
    exe = shutil.which("horovodrun", path=os.path.dirname(sys.executable)) or shutil.which("horovodrun")
    if exe is None:
        raise FileNotFoundError("-n > 1 needs horovodrun (pip install horovod, built with MXNet)")
    n = args.num_workers
    cmd = [exe, "-np", str(n), "-H", f"localhost:{n}", "--gloo", sys.executable, "-m", "resnet_gluon", *argv]
    return subprocess.call(cmd)


def _classes(args) -> int:
    if args.num_classes:
        return args.num_classes
    names = _class_names(args)
    return len(names) if names else 1000


def _class_names(args) -> Optional[List[str]]:
    from .data import load_classes

    return load_classes(args.data_root) if getattr(args, "data_root", None) else None


def _pipelines(args, preprocessing):
    from . import pipelines

    if args.data_backend == "synthetic":
        from .runtime import default_context

        make = lambda train: pipelines.SyntheticData(batch_size=args.batch_size, classes=_classes(args),
                                                     num_batches=args.synthetic_batches, preprocessing=preprocessing,
                                                     ctx=default_context())  # on the device: no copy per step
        return make(True), make(False)
    if not args.data_root:
        raise ValueError(f"--data-root is required with --data-backend {args.data_backend}")
    options = dict(num_threads=args.data_threads, seed=args.seed)
    return pipelines.imagenet(args.data_root, batch_size=args.batch_size, backend=args.data_backend,
                              preprocessing=preprocessing, **options)


def _train(args) -> int:
    from . import checkpoint, models
    from .callbacks import Checkpoint, Report
    from .preprocessing import Preprocessing
    from .evaluation import evaluate
    from .runtime import default_context
    from .training import fit

    import mxnet as mx

    mx.random.seed(args.seed)
    preprocessing = Preprocessing.for_size(args.image_size, area=(args.min_area, 1.0), layout=args.layout,
                                           dtype=args.data_dtype, pad_output=args.pad_output)
    if args.mode == "val":
        ctx = default_context()
        net, epoch, _ = checkpoint.load_network(args.model_prefix, args.load_epoch, ctx=ctx)
        _, val_data = _pipelines(args, preprocessing)
        net.hybridize(static_alloc=True)
        logs = evaluate(net, val_data, ctx=ctx)
        print(json.dumps(dict(epoch=epoch, **logs), indent=1))
        return 0
    train_data, val_data = _pipelines(args, preprocessing)
    net = models.get_model(args.arch, classes=_classes(args), layout=args.layout,
                           in_channels=preprocessing.channels)
    from .transfer import prepare_fine_tuning

    prepare_fine_tuning(net, args.pretrained, freeze_features=args.freeze_features,
                        features_lr_mult=args.features_lr_mult)

    report = args.report or f"{args.model_prefix}-report.json"
    history = fit(net, train_data, val_data if args.mode == "train_val" else None, epochs=args.num_epochs,
                  dtype=args.dtype, lr=args.lr, schedule=args.lr_schedule, warmup_epochs=args.warmup_epochs,
                  wd=args.wd, label_smoothing=args.label_smoothing, mixup=args.mixup,
                  callbacks=[Checkpoint(args.model_prefix, class_names=_class_names(args), preprocessing=preprocessing),
                             Report(report, cmd=sys.argv)],
                  progress=not args.no_progress)
    from .dist import is_rank_zero

    if is_rank_zero() and history.epochs:
        last = {k: v[-1] for k, v in history.history.items() if k in ("loss", "top1", "val_loss", "val_top1",
                                                                        "val_top5", "total_ips")}
        print(json.dumps({"epochs": history.epochs[-1] + 1, **last}))
    return 0


# -------------------------------------------------------------------------------------------------- benchmark
def _add_benchmark(sub):
    p = sub.add_parser("benchmark", help="training or inference img/s and latency over worker counts x batch sizes",
                       description="Runs short training (or inference) jobs for every workers x batch size pair, each "
                                   "in a fresh process (resnet_gluon.benchmark.sweep), and writes one JSON entry per "
                                   "pair: images/s with data loading included and latency percentiles (seconds per "
                                   "batch), warm-up epochs excluded.")
    p.add_argument("-n", "--num-workers", type=_int_list, default=[1], help="worker counts, e.g. 1,2 (default: 1)")
    p.add_argument("-b", "--batch-size", type=_int_list, default=[32], help="batch sizes, e.g. 32,64 (default: 32)")
    p.add_argument("-i", "--iterations", type=_positive, default=20, help="iterations per epoch (synthetic data)")
    p.add_argument("-e", "--epochs", type=_positive, default=3, help="epochs per run, warm-up included")
    p.add_argument("-w", "--warmup", type=int, default=1, help="warm-up epochs left out of the figures")
    p.add_argument("--only-inference", action="store_true", help="time inference instead of training")
    p.add_argument("--arch", default="resnet50_v1_5", choices=_models(), metavar="ARCH")
    p.add_argument("--dtype", default="auto", choices=_inference_dtypes(),
                   help="precision; int8 (oneDNN quantization, CPU) only with --only-inference (default: auto)")
    p.add_argument("--image-size", type=_positive, default=224)
    p.add_argument("--data-backend", default="synthetic", choices=_backends())
    p.add_argument("--data-root", default=None, help="with a real data backend: folder with train.rec and val.rec")
    p.add_argument("--num-classes", type=_positive, default=None)
    p.add_argument("--data-threads", type=_positive, default=None, help="(default: 3, at most the cores of a worker)")
    p.add_argument("-o", "--output", default="benchmark.json", help="JSON report (default: %(default)s)")
    p.set_defaults(run=_benchmark)


def _benchmark(args) -> int:
    from .benchmark import sweep
    from .files import atomic_write_json

    if args.warmup >= args.epochs:
        raise ValueError("--warmup must be smaller than --epochs")
    if args.dtype == "int8" and not args.only_inference:
        raise ValueError("--dtype int8 is for inference: add --only-inference")
    options = dict(arch=args.arch, dtype=args.dtype, image_size=args.image_size, data_backend=args.data_backend,
                   data_root=args.data_root, iterations=args.iterations, epochs=args.epochs, warmup=args.warmup,
                   only_inference=args.only_inference, classes=args.num_classes, data_threads=args.data_threads)
    results = sweep(num_workers=args.num_workers, batch_sizes=args.batch_size,
                    on_result=lambda r: print(json.dumps(r), flush=True), **options)
    atomic_write_json(args.output, dict(model=args.arch, mode="inference" if args.only_inference else "training",
                                        dtype=args.dtype, image_size=args.image_size, data_backend=args.data_backend,
                                        results=results))
    print(f"wrote {args.output}")
    return 0


# ---------------------------------------------------------------------------------------------------- predict
def _add_predict(sub):
    p = sub.add_parser("predict", help="inference from a checkpoint: accuracy on a .rec, or top-k of image files",
                       description="Loads <model-prefix>-symbol.json + <model-prefix>-NNNN.params into a predictor "
                                   "(float32, bfloat16 or INT8). With --data-root or --rec: top-1/top-5, img/s and "
                                   "latency percentiles on that validation set. With image files: the top-k "
                                   "classes and their names for each. --save-prefix / --onnx write the converted "
                                   "model / an ONNX export.")
    p.add_argument("images", nargs="*", help="image files (JPEG, PNG, ...) to classify")
    p.add_argument("--model-prefix", default="model", help="checkpoint prefix (default: %(default)s)")
    p.add_argument("--epoch", type=int, default=None, help="checkpoint epoch NNNN (default: the newest)")
    p.add_argument("--dtype", "--precision", dest="dtype", default=None, choices=_inference_dtypes()[1:],
                   help="inference precision (default: as saved, float32 for training checkpoints; "
                        "--precision is the deprecated name)")
    p.add_argument("--data-root", default=None, help="folder with val.rec/.idx to evaluate on (and train.rec "
                                                     "for INT8 calibration)")
    p.add_argument("--rec", default=None, help="a .rec file to evaluate on (instead of <data-root>/val.rec)")
    p.add_argument("--calibration", default=None,
                   help="INT8: .rec file of calibration images (default: <data-root>/train.rec)")
    p.add_argument("--num-calib-images", type=_positive, default=256, help="INT8 calibration images "
                                                                          "(default: %(default)s)")
    p.add_argument("--calib-batch-size", type=_positive, default=32, help="(default: %(default)s)")
    p.add_argument("--calib-mode", default="naive", choices=["naive", "entropy"], help="(default: %(default)s)")
    p.add_argument("-b", "--batch-size", type=_positive, default=64, help="(default: %(default)s)")
    p.add_argument("-k", "--top-k", type=_positive, default=5, help="classes shown per image (default: %(default)s)")
    p.add_argument("--image-size", type=_positive, default=None, help="override the recorded crop size")
    p.add_argument("--data-backend", default="dali-cpu", choices=["dali-cpu", "dali-gpu", "mxnet"],
                   help="pipeline for --data-root/--rec (default: %(default)s)")
    p.add_argument("--data-threads", type=_positive, default=None, help="(default: 3, at most the cores)")
    p.add_argument("--save-prefix", default=None, help="write the (converted) model here, reloadable with "
                                                        "--model-prefix")
    p.add_argument("--onnx", default=None, help="write an ONNX export of the float32 model to this file")
    p.add_argument("--json", action="store_true", help="print results as JSON lines")
    p.set_defaults(run=_predict)


def _predict(args) -> int:
    from .inference import Predictor

    rec = args.rec or (os.path.join(args.data_root, "val.rec") if args.data_root else None)
    if not rec and not args.images and not args.save_prefix and not args.onnx:
        raise ValueError("give image files, --data-root or --rec (or --save-prefix/--onnx)")
    if args.onnx and args.dtype not in (None, "float32"):
        raise ValueError("--onnx exports the float32 model; run it without --dtype")
    if args.data_root and not os.path.isdir(args.data_root):
        raise FileNotFoundError(f"data root {args.data_root!r} does not exist")
    calibration = args.calibration or (os.path.join(args.data_root, "train.rec") if args.data_root else None)
    predictor = Predictor.from_checkpoint(
        args.model_prefix, args.epoch, dtype=args.dtype, image_size=args.image_size,
        batch_size=args.batch_size, calibration=calibration,
        calibration_options=dict(num_images=args.num_calib_images, batch_size=args.calib_batch_size,
                                 calib_mode=args.calib_mode))
    if args.save_prefix:
        files = predictor.save(args.save_prefix)
        print(f"wrote {predictor.dtype} model: {', '.join(files)}", file=sys.stderr)
    if args.onnx:
        print(f"wrote {predictor.export_onnx(args.onnx)}", file=sys.stderr)
    for image, prediction in zip(args.images, predictor.predict(args.images, top_k=args.top_k) if args.images else []):
        if args.json:
            print(json.dumps(dict(image=image, classes=prediction.classes, names=prediction.names,
                                  probabilities=[round(p, 6) for p in prediction.probabilities])))
        else:
            ranked = ", ".join(f"{n} ({c}) {p:.4f}" for c, n, p in zip(prediction.classes, prediction.names,
                                                                       prediction.probabilities))
            print(f"{image}: {ranked}")
    if rec:
        from . import pipelines
        from .evaluation import evaluate

        data = pipelines.make_pipeline(args.data_backend, rec, batch_size=min(args.batch_size, _records(rec)),
                                       train=False, preprocessing=predictor.preprocessing, num_shards=1,
                                       shard_id=0, num_threads=args.data_threads)
        logs = evaluate(predictor.net, data, ctx=predictor.ctx, prefix="")
        keys = ("top1", "top5", "total_ips", "latency_avg", "latency_50", "latency_90", "latency_99", "num_images")
        result = dict(dtype=predictor.dtype, rec=rec, **{k: logs[k] for k in keys})
        if args.json:
            print(json.dumps(result))
        else:
            top5 = f"{result['top5']:.4f}" if result["top5"] is not None else "n/a"
            print(f"{rec}: {result['num_images']} images, {predictor.dtype}: top-1 {result['top1']:.4f}, "
                  f"top-5 {top5}, {result['total_ips']:.1f} img/s, latency per batch of {data.batch_size} "
                  f"p50 {1e3 * result['latency_50']:.1f} ms, p99 {1e3 * result['latency_99']:.1f} ms")
    return 0


def _records(rec: str) -> int:
    from .data import record_files

    return len(record_files(rec))


# ------------------------------------------------------------------------------------------------------- demo
def _add_demo(sub):
    p = sub.add_parser("demo", help="the embedded demo: ResNet-50 v1.5 on Fashion-MNIST, end to end",
                       description="Prepares Fashion-MNIST as RecordIO, trains resnet50_v1_5 through the DALI "
                                   "pipeline, the Horovod Trainer and AMP where the CPU supports bfloat16, "
                                   "evaluates on the 10,000 test images, and leaves checkpoints, the JSON report "
                                   "and a PNG of the curves in --output. Re-running resumes.")
    p.add_argument("-o", "--output", default="runs/demo", help="output folder (default: %(default)s)")
    p.add_argument("--epochs", type=_positive, default=2, help="(default: %(default)s)")
    p.add_argument("--train-images", type=int, default=36000,
                   help="training images used, of 60,000 (default: %(default)s; 0 = all)")
    p.add_argument("--image-size", type=_positive, default=28, help="(default: %(default)s, Fashion-MNIST's own)")
    p.add_argument("-b", "--batch-size", type=_positive, default=64, help="(default: %(default)s)")
    p.add_argument("--lr", type=float, default=None,
                   help="peak lr (default: the reference's 0.1 per 256 images: 0.025 for one worker at batch 64)")
    p.add_argument("--min-area", type=float, default=0.75,
                   help="random-resized-crop min area; Fashion-MNIST items fill the frame (default: %(default)s)")
    p.add_argument("--dtype", default="auto", choices=_training_dtypes())
    p.add_argument("--full", action="store_true", help="all 60,000 images for 6 epochs (89.0%% in 73 min on 2 cores)")
    p.add_argument("--num-threads", type=_positive, default=None,
                   help="DALI threads (default: 3, at most the cores of a worker)")
    p.add_argument("-n", "--num-workers", type=_positive, default=1, help="worker processes (horovodrun)")
    p.set_defaults(run=_demo)


def _demo(args) -> int:
    from . import data, pipelines
    from .callbacks import Checkpoint, Report
    from .dist import barrier, is_rank_zero
    from .models import resnet50_v1_5
    from .training import fit

    if args.full:
        args.train_images, args.epochs = 0, 6
    data_dir = os.path.join(args.output, "data")
    if is_rank_zero():
        data.fashion_mnist_to_recordio(data_dir, image_size=args.image_size, train_limit=args.train_images or None)
    barrier("demo_data_ready")  # the other ranks wait until rank 0 has written the data
    preprocessing = data.Preprocessing.for_size(args.image_size, area=(args.min_area, 1.0))
    train, val = pipelines.imagenet(data_dir, batch_size=args.batch_size, preprocessing=preprocessing, seed=0,
                                    num_threads=args.num_threads)
    net = resnet50_v1_5(classes=10)
    start = time.time()
    history = fit(net, train, val, epochs=args.epochs, dtype=args.dtype, lr=args.lr, schedule="cosine",
                  warmup_epochs=0.2, callbacks=[Checkpoint(os.path.join(args.output, "model"),
                                                           class_names=data.FASHION_MNIST_CLASSES,
                                                           preprocessing=preprocessing),
                                                Report(os.path.join(args.output, "report.json"), cmd=sys.argv)])
    if is_rank_zero():
        h = history.history
        if history.epochs:
            print(f"demo: {history.epochs[-1] + 1} epochs, test top-1 {h['val_top1'][-1]:.4f}, top-5 "
                  f"{h['val_top5'][-1]:.4f}, {time.time() - start:.0f} s; files in {args.output}/")
        else:
            print(f"demo: already complete; see {args.output}/report.json")
    return 0


# -------------------------------------------------------------------------------------------------------- main
def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="resnet-gluon", description="ResNet-50 v1.5 with MXNet Gluon: NVIDIA's recipe.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser,
                                metavar="{prepare,train,benchmark,predict,demo}")
    _add_prepare(sub)
    _add_train(sub)
    _add_benchmark(sub)
    _add_predict(sub)
    _add_demo(sub)
    return parser


#: What a bad input raises in the library: printed as one line with exit status 1.
_INPUT_ERRORS = (ValueError, FileNotFoundError, FileExistsError, PermissionError, FloatingPointError, ChildProcessError)


def main(argv: Optional[List[str]] = None) -> int:
    """Run the command line; returns the exit status (2 for a bad flag, 1 for bad input)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    try:
        if isinstance(getattr(args, "num_workers", None), int):
            code = _relaunch_under_horovodrun(args, argv)
            if code is not None:
                return code
        return args.run(args)
    except _INPUT_ERRORS as err:
        print(f"resnet-gluon {args.command}: error: {err}", file=sys.stderr)
        return 1
