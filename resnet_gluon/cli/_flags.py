"""The command line's flags: one argparse sub-parser per command of ``resnet-gluon`` (prepare, train, benchmark,
predict, demo). What the commands do with them is in :mod:`resnet_gluon.cli`; argparse lives in these two modules only.
"""
from __future__ import annotations

import argparse
from typing import Callable, Dict, List, Optional

from .._core import amp
from ..data import pipelines
from ..models import registry as models

__all__ = ["RECIPE_FLAGS", "build_parser"]


class _Help(argparse.HelpFormatter):
    """Appends '(default: X)' to a flag's help where the default is a value the help does not state."""

    def _get_help_string(self, action):
        shown = action.option_strings and action.default not in (None, False, argparse.SUPPRESS)
        return action.help + (" (default: %(default)s)" if shown and "default" not in action.help else "")


class _Parser(argparse.ArgumentParser):
    """argparse that prints a one-line error naming the flag (and where to look for the rest), exit status 2."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, formatter_class=_Help, **kwargs)

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _int_list(text: str) -> List[int]:
    values = [int(v) if v.isdigit() else 0 for v in text.replace(",", " ").split()]
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected integers >= 1 like '1,2' or '64 128', got {text!r}")
    return values


def _add_data_flags(p, *, backend: str, root: str, backends=None, image_size: Optional[int] = 224, crop="crop size"):
    """The input-pipeline flags that train, benchmark and predict share."""
    p.add_argument("--data-root", help=root)
    p.add_argument("--data-backend", default=backend, choices=backends or pipelines.BACKENDS,
                   help="input pipeline; dali-gpu decodes with nvJPEG on the GPU")
    p.add_argument("--data-threads", type=_positive, default=None,
                   help="pipeline threads (default: 3, the reference's, at most the cores of a worker)")
    p.add_argument("--image-size", type=_positive, default=image_size, help=crop)


def _add_workers(p):
    p.add_argument("-n", "--num-workers", type=_positive, default=1,
                   help="worker processes on this host (launches horovodrun -np N; ignored under horovodrun)")


def _add_prepare(sub):
    p = sub.add_parser("prepare", help="write .rec/.idx/.lst (+ classes.json) from an image folder or Fashion-MNIST",
                       description="Pack an image-folder tree or the embedded Fashion-MNIST into RecordIO; a folder "
                                   "of record files has one class list, classes.json, written by its first split.")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--images", help="image folder: <images>/<class>/<file>")
    source.add_argument("--fashion-mnist", action="store_true", help="the embedded Fashion-MNIST (Debian package "
                                                                     "dataset-fashion-mnist)")
    source.add_argument("--rebuild-index", metavar="REC", help="rebuild the .idx of an existing .rec")
    source.add_argument("--check", metavar="REC", help="check every record of a .rec (labels, and images DALI "
                                                       "would fail on or misread)")
    p.add_argument("-o", "--output", help="with --images, a prefix (default: data/train); with --val-fraction or "
                                          "--fashion-mnist, a folder for train.* and val.* (default: data)")
    p.add_argument("--val-fraction", type=float, help="--images: this fraction of each class (stratified, seeded) "
                                                      "goes to val.*, the rest to train.*, both in the folder -o")
    p.add_argument("--no-shuffle", dest="shuffle", action="store_false",
                   help="--images: write class by class (default: a random order, as im2rec does)")
    p.add_argument("--shuffle", dest="shuffle", action="store_true", default=True, help=argparse.SUPPRESS)
    p.add_argument("--seed", type=int, default=0, help="--images: seed of the order and the split")
    p.add_argument("--resize", type=_positive, help="--images: downscale to this shorter side (as im2rec --resize)")
    p.add_argument("--image-size", type=_positive, default=32, help="Fashion-MNIST image size")
    p.add_argument("--fashion-mnist-root", help="folder of the Fashion-MNIST IDX files")
    p.add_argument("--num-threads", type=_positive, default=2, help="encoding threads")
    p.add_argument("--limit", type=_positive, help="Fashion-MNIST: keep the first N images of each split")
    p.add_argument("--overwrite", action="store_true", help="replace existing files (and a classes.json that lacks "
                                                            "a class of --images)")
    return p


def _add_train(sub):
    from ..data.preprocessing import Preprocessing
    from .._core.runtime import num_gpus

    p = sub.add_parser("train", help="train (and validate) a model; resumes from --model-prefix",
                       description="Train with validation and a checkpoint after every epoch (the reference's "
                                   "workflow). Re-running the same command resumes from the newest checkpoint.")
    _add_workers(p)
    p.add_argument("-b", "--batch-size", type=_positive, default=256, help="images per worker per batch")
    p.add_argument("--accumulate", type=_positive, default=1, metavar="K",
                   help="batches per optimizer update (gradient accumulation): the lr and schedule follow the "
                        "global batch -b x workers x K")
    p.add_argument("--arch", default="resnet50_v1_5", choices=models.list_models(), metavar="ARCH",
                   help="model name: %(choices)s")
    p.add_argument("--dtype", default="auto", choices=amp.TRAINING_DTYPES,
                   help="precision; auto = float16 on GPUs, bfloat16 on CPUs with AMX, else float32")
    _add_data_flags(p, backend="dali-gpu" if num_gpus() > 0 else "dali-cpu", image_size=None,
                    crop="validation (test) crop, default 224 (--mode val: the checkpoint's recorded one); also the "
                         "training crop, unless the recipe trains at another resolution (rsb_a3: 160/224 of it, 20 "
                         "px for 28) or --train-image-size is given",
                    root="folder with train.rec/.idx and val.rec/.idx")
    p.add_argument("--train-image-size", type=_positive, help="training crop in pixels (default: the recipe's "
                   "for --image-size, see Recipe.preprocessing)")
    p.add_argument("--layout", default="NCHW", choices=["NCHW", "NHWC"],
                   help="tensor layout of data and model; NHWC (GPUs only) is the reference's on Tensor Cores")
    p.add_argument("--data-dtype", default="float32", choices=["float32", "float16"],
                   help="dtype of the pipeline's output batches (float16 halves the copy to the model)")
    p.add_argument("--pad-output", action="store_true", help="pad images to 4 channels (DALI's pad_output, the "
                                                             "reference's GPU input) with a 4-channel stem")
    p.add_argument("--num-classes", type=_positive, help="default: from classes.json in --data-root, else 1000")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--mode", default="train_val", choices=["train_val", "train", "val"],
                   help="train and validate, train only, or validate a checkpoint")
    _add_recipe_flags(p)
    p.add_argument("--model-prefix", default="model", help="checkpoint prefix")
    p.add_argument("--load-epoch", type=int, help="with --mode val: checkpoint epoch (default: newest)")
    p.add_argument("--report", help="JSON report path (default: <model-prefix>-report.json)")
    p.add_argument("--min-area", type=float, default=Preprocessing().area[0], help="random-resized-crop min area")
    p.add_argument("--synthetic-batches", type=_positive, default=20, help="batches per epoch for synthetic data")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--max-run-time", metavar="DURATION", help="stop cleanly at the first step after this long (e.g. "
                   "3h50m, 01:30:00): a mid-epoch checkpoint, exit status 75; rerun to resume. SIGTERM and SIGUSR1 "
                   "stop the same way")
    p.add_argument("--pretrained", metavar="FILE", help="start from these weights: ours/gluoncv .params, an "
                   "exported checkpoint's -NNNN.params, torchvision/timm .safetensors or .pth (needs torch); a "
                   "classifier with another class count is replaced by a new one")
    p.add_argument("--freeze-features", action="store_true", help="train only the classifier (BatchNorm frozen too)")
    p.add_argument("--features-lr-mult", type=float, help="learning-rate multiplier of everything but the "
                   "classifier, e.g. 0.1 (default: 1); 0 freezes the features as --freeze-features does")
    return p


def _add_recipe_flags(p):
    """--recipe and the flags that change one of its values (each defaults to the recipe's)."""
    from ..train.recipe import LOSSES, PRESETS, SCHEDULES, Recipe

    r = Recipe()
    p.add_argument("--recipe", default="reference", choices=PRESETS,
                   help="training recipe (resnet_gluon.Recipe.preset); the flags below change single values")
    p.add_argument("--num-epochs", type=_positive, help=f"epochs (default: the recipe's; reference: {r.epochs})")
    p.add_argument("--lr", type=float, help=f"peak lr (default: the recipe's; reference: {r.lr_per_256} per 256 "
                                            "images of global batch)")
    p.add_argument("--lr-schedule", dest="schedule", choices=SCHEDULES, help="lr schedule (default: the recipe's)")
    p.add_argument("--warmup-epochs", type=float, help="linear lr warm-up (default: the recipe's)")
    p.add_argument("--lr-steps", type=_int_list, help="step schedule: epochs after which the lr is multiplied by "
                   "the recipe's factor, e.g. 3,6,8 (default: the recipe's; reference: 30,60,80)")
    p.add_argument("--wd", type=float, help="weight decay (default: the recipe's)")
    p.add_argument("--optimizer", help="MXNet optimizer name, e.g. sgd, nag, lars, lamb (default: the recipe's)")
    p.add_argument("--loss", choices=LOSSES, help="softmax or binary cross-entropy (default: the recipe's)")
    p.add_argument("--label-smoothing", type=float, help="label smoothing (default: the recipe's)")
    p.add_argument("--mixup", type=float, help="mixup alpha (default: the recipe's)")
    p.add_argument("--cutmix", type=float, help="CutMix alpha; with mixup, one of them per batch, each with "
                                                "probability 0.5 (default: the recipe's)")
    p.add_argument("--auto-augment", metavar="POLICY", help="DALI auto-augment policy of the training images: "
                   "rand-m<M>[-n<N>][-inc1] (RandAugment, timm's notation, e.g. rand-m9-n2), trivialaugment, "
                   "autoaugment, or none (default: the recipe's)")
    p.add_argument("--random-erasing", type=float, metavar="PROB", help="probability of random erasing (timm's, "
                   "noise boxes after normalisation; default: the recipe's)")
    p.add_argument("--drop-path-rate", type=float, help="stochastic depth of the last block (default: the recipe's)")
    p.add_argument("--test-crop-ratio", type=float, help="validation crop / resized shorter side (default: the "
                                                         "recipe's; reference: 224/256, rsb: 0.95)")
    p.add_argument("--ema-decay", type=float, help="moving average of the weights, decay per update, e.g. 0.9998; "
                                                   "validated as val_top1_ema, used by predict (default: the recipe's: "
                                                   "0, none)")
    p.add_argument("--ema-warmup", action="store_const", const=True,
                   help="timm's warm-up of the EMA decay (min(decay, 1 - (1 + t) ** -2/3) after t + 1 updates)")


#: Recipe fields with a flag of their own (the flag's dest is the field's name, epochs aside).
RECIPE_FLAGS = ("lr", "schedule", "warmup_epochs", "lr_steps", "wd", "optimizer", "loss", "label_smoothing", "mixup",
                 "cutmix", "auto_augment", "random_erasing", "drop_path_rate", "test_crop_ratio", "ema_decay",
                 "ema_warmup")


def _add_benchmark(sub):
    p = sub.add_parser("benchmark", help="training or inference img/s and latency over worker counts x batch sizes",
                       description="A short job per workers x batch size pair in a fresh process: img/s (data "
                                   "loading included) and latency percentiles, warm-up epochs excluded.")
    p.add_argument("-n", "--num-workers", type=_int_list, default=[1], help="worker counts, e.g. 1,2 (default: 1)")
    p.add_argument("-b", "--batch-size", type=_int_list, default=[32], help="batch sizes, e.g. 32,64 (default: 32)")
    p.add_argument("-i", "--iterations", type=_positive, default=20, help="iterations per epoch (synthetic data)")
    p.add_argument("-e", "--epochs", type=_positive, default=3, help="epochs per run, warm-up included")
    p.add_argument("-w", "--warmup", type=int, default=1, help="warm-up epochs left out of the figures")
    p.add_argument("--only-inference", action="store_true", help="time inference instead of training")
    p.add_argument("--arch", default="resnet50_v1_5", choices=models.list_models(), metavar="ARCH", help="model name")
    p.add_argument("--dtype", default="auto", choices=["auto", *amp.INFERENCE_DTYPES],
                   help="precision; int8 (oneDNN quantization, CPU) only with --only-inference")
    p.add_argument("--backend", default="mxnet", choices=["mxnet", "openvino"],
                   help="inference engine with --only-inference (openvino: CPU; dtype auto is OpenVINO's choice)")
    _add_data_flags(p, backend="synthetic", root="with a real data backend: folder with train.rec and val.rec")
    p.add_argument("--num-classes", type=_positive)
    p.add_argument("-o", "--output", default="benchmark.json", help="JSON report")
    return p


def _add_predict(sub):
    p = sub.add_parser("predict", help="inference from a checkpoint: accuracy on a .rec, or top-k of image files",
                       description="A checkpoint as a predictor (float32, bfloat16, INT8): accuracy, img/s and "
                                   "latency on --data-root/--rec; top-k classes of image files; conversion, ONNX.")
    p.add_argument("images", nargs="*", help="image files (JPEG, PNG, ...) to classify, or folders: the image files in "
                                             "each (sorted; sub-folders not searched)")
    p.add_argument("--model-prefix", default="model", help="checkpoint prefix")
    p.add_argument("--epoch", type=int, help="checkpoint epoch NNNN (default: the newest)")
    p.add_argument("--dtype", "--precision", dest="dtype", choices=[*amp.INFERENCE_DTYPES, "auto"],
                   help="inference precision (default: as saved, float32 for training checkpoints; auto: the "
                        "fastest here; --precision is the deprecated name)")
    p.add_argument("--backend", default=None, choices=["mxnet", "openvino"],
                   help="inference engine (default: as saved, mxnet for training checkpoints; openvino runs the "
                        "ONNX export on the CPU, INT8 calibrated on the same images)")
    p.add_argument("--rec", help="a .rec file to evaluate on (instead of <data-root>/val.rec)")
    p.add_argument("--calibration", help="INT8: .rec file of calibration images (default: <data-root>/train.rec)")
    p.add_argument("--num-calib-images", type=_positive, default=256, help="INT8 calibration images")
    p.add_argument("--calib-batch-size", type=_positive, default=32, help="INT8 calibration batch size")
    p.add_argument("--calib-mode", default="naive", choices=["naive", "entropy"], help="INT8 calibration mode")
    p.add_argument("-b", "--batch-size", type=_positive, default=64, help="images per forward pass")
    p.add_argument("-k", "--top-k", type=_positive, default=5, help="classes shown per image")
    _add_data_flags(p, backend="dali-cpu", backends=["dali-cpu", "dali-gpu", "mxnet"], image_size=None,
                    crop="override the recorded crop size",
                    root="folder with val.rec/.idx to evaluate on (and train.rec for INT8 calibration)")
    p.add_argument("--save-prefix", help="write the (converted) model here, reloadable with --model-prefix")
    p.add_argument("--onnx", help="write an ONNX export of the float32 model to this file")
    p.add_argument("--no-ema", dest="ema", action="store_false",
                   help="use the raw weights of a checkpoint that also holds their moving average (default: the "
                        "average, when there is one)")
    p.add_argument("--json", action="store_true", help="print results as JSON lines")
    return p


def _add_demo(sub):
    p = sub.add_parser("demo", help="the embedded demo: ResNet-50 v1.5 on Fashion-MNIST, end to end",
                       description="Fashion-MNIST as RecordIO, resnet50_v1_5 trained and tested on it; checkpoints, "
                                   "report and curves in --output (resnet_gluon.demo.run_demo). Re-running resumes.")
    p.add_argument("-o", "--output", default="runs/demo", help="output folder")
    p.add_argument("--epochs", type=_positive, default=2, help="epochs")
    p.add_argument("--train-images", type=int, default=36000, help="training images used, of 60,000 (0 = all)")
    p.add_argument("--test-images", type=_positive, help="test images used, of 10,000 (default: all)")
    p.add_argument("--image-size", type=_positive, default=28, help="image size (28 is Fashion-MNIST's own)")
    p.add_argument("-b", "--batch-size", type=_positive, default=64, help="images per worker per step")
    p.add_argument("--lr", type=float,
                   help="peak lr (default: the reference's 0.1 per 256 images: 0.025 for one worker at batch 64)")
    p.add_argument("--min-area", type=float, default=0.75,
                   help="random-resized-crop min area; Fashion-MNIST items fill the frame")
    p.add_argument("--dtype", default="auto", choices=amp.TRAINING_DTYPES, help="precision")
    p.add_argument("--full", action="store_true", help="all 60,000 images for 6 epochs (89.0%% in 73 min on 2 cores)")
    p.add_argument("--num-threads", type=_positive, help="DALI threads (default: 3, at most the cores of a worker)")
    _add_workers(p)
    return p


def build_parser(commands: Dict[str, Callable[[argparse.Namespace], int]]) -> argparse.ArgumentParser:
    """The parser of ``resnet-gluon``: its sub-commands prepare, train, benchmark, predict and demo, each with
    ``run`` set to ``commands[<name>]`` (a function of the parsed arguments that returns the exit status).

    A bad flag prints one line naming it and exits with status 2.
    """
    parser = _Parser(prog="resnet-gluon", description="ResNet-50 v1.5 with MXNet Gluon: NVIDIA's recipe.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser,
                                metavar="{prepare,train,benchmark,predict,demo}")
    for name, add in (("prepare", _add_prepare), ("train", _add_train), ("benchmark", _add_benchmark),
                      ("predict", _add_predict), ("demo", _add_demo)):
        add(sub).set_defaults(run=commands[name])
    return parser
