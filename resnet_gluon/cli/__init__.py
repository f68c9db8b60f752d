"""The command line: ``python -m resnet_gluon`` / ``resnet-gluon`` with ``prepare``, ``train``, ``benchmark``,
``predict`` and ``demo``. A thin layer over the public API: each command reads its parsed flags (defined in
:mod:`resnet_gluon.cli._flags`, the only other place argparse is used) and calls the library.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import warnings
from typing import List, Optional

from .. import benchmark
from ..data import fashion_mnist, folders, pipelines, recordio
from ..models import registry as models
from ..evaluation import describe, evaluate_checkpoint
from .._core.files import printable
from ._flags import RECIPE_FLAGS, build_parser

__all__ = ["main"]


def _prepare(args) -> int:
    if args.rebuild_index or args.check:
        print(recordio.rebuild_index(args.rebuild_index) if args.rebuild_index else
              f"{args.check}: {recordio.check_records(args.check)} records, all readable")
    elif args.fashion_mnist:
        train, val = fashion_mnist.fashion_mnist_to_recordio(args.output or "data", image_size=args.image_size,
                                                    root=args.fashion_mnist_root or recordio.FASHION_MNIST_DIR,
                                                    train_limit=args.limit, val_limit=args.limit,
                                                    overwrite=args.overwrite, num_threads=args.num_threads)
        print(f"{train.rec}: {len(train)} images\n{val.rec}: {len(val)} images")
    else:
        done = folders.prepare_images(args.images, args.output, val_fraction=args.val_fraction,
                                            num_threads=args.num_threads, shuffle=args.shuffle, seed=args.seed,
                                            overwrite=args.overwrite, resize=args.resize)
        print("\n".join(map(str, done)) + (f"\n{done[0].skipped()} in {args.images}" if done[0].skipped() else ""))
        if done[0].warning():
            print(done[0].warning(), file=sys.stderr)
    return 0


def _recipe(args):
    """The --recipe preset with the values of the flags given."""
    from ..train.recipe import Recipe

    values = {k: getattr(args, k) for k in RECIPE_FLAGS}  # --auto-augment none: Recipe switches it off
    return Recipe.preset(args.recipe, epochs=args.num_epochs, **values)


def _preprocessing(args, recipe):
    """train's Preprocessing: --image-size is the test crop (default 224); the training crop is --train-image-size,
    else the recipe's scaled to --image-size (Recipe.preprocessing). With --mode val and neither --image-size nor
    --test-crop-ratio given: the checkpoint's recorded validation preprocessing, as predict uses (a warning when
    the flags ask for another)."""
    from ..data.preprocessing import Preprocessing
    from ..models.checkpoint import resolve_epoch

    record = resolve_epoch(args.model_prefix, args.load_epoch)[1] if args.mode == "val" else None
    recorded = Preprocessing.from_validation_settings(record.preprocessing) if record and record.preprocessing \
        else None
    if recorded is not None and args.image_size is None and args.test_crop_ratio is None:
        return dataclasses.replace(recorded, dtype=args.data_dtype)
    built = recipe.preprocessing(args.image_size or (recorded.image_size if recorded else 224),
                                 train_image_size=args.train_image_size, area=(args.min_area, 1.0),
                                 layout=args.layout, dtype=args.data_dtype, pad_output=args.pad_output)
    if args.mode == "val":  # validation only: the recipe's training augmentation plays no part
        built = dataclasses.replace(built, auto_augment=None, random_erasing=0.0)
    keys = ("image_size", "resize", "mean", "std", "layout", "pad_output")
    differ = [k for k in keys if recorded is not None and getattr(built, k) != getattr(recorded, k)]
    if differ:
        print(f"resnet-gluon train: warning: validating with {_settings(built, differ)}; {args.model_prefix!r} "
              f"records {_settings(recorded, differ)}, what training validated with and predict uses: leave out "
              "--image-size and --test-crop-ratio to use it", file=sys.stderr)
    return built


def _settings(preprocessing, keys) -> str:
    return ", ".join(f"{k} {getattr(preprocessing, k)}" for k in keys)


def _train(args) -> int:
    import mxnet as mx

    from ..train.callbacks import Checkpoint, Report
    from .._core.dist import is_rank_zero
    from ..train.fit import fit
    from ..models.transfer import prepare_fine_tuning

    mx.random.seed(args.seed)
    recipe = _recipe(args)
    preprocessing = _preprocessing(args, recipe)
    classes = args.num_classes or recordio.num_classes(args.data_root)
    train_data, val_data = pipelines.imagenet(
        args.data_root, batch_size=args.batch_size, backend=args.data_backend, preprocessing=preprocessing,
        classes=classes, num_batches=args.synthetic_batches, num_threads=args.data_threads, seed=args.seed)
    if args.mode == "val":
        print(json.dumps(evaluate_checkpoint(args.model_prefix, val_data, epoch=args.load_epoch), indent=1))
        return 0
    net = models.get_model(args.arch, classes=classes, layout=args.layout, in_channels=preprocessing.channels)
    prepare_fine_tuning(net, args.pretrained, freeze_features=args.freeze_features,
                        features_lr_mult=args.features_lr_mult)
    callbacks = [Checkpoint(args.model_prefix, class_names=recordio.load_classes(args.data_root),
                            preprocessing=preprocessing),
                 Report(args.report or f"{args.model_prefix}-report.json", cmd=sys.argv)]
    from ..train.stopping import TrainingStopped, parse_duration

    parse_duration(args.max_run_time)  # a bad duration is an input error before anything starts
    try:
        history = fit(net, train_data, val_data if args.mode == "train_val" else None, recipe=recipe,
                      dtype=args.dtype, callbacks=callbacks, progress=not args.no_progress,
                      accumulate=args.accumulate, max_run_time=args.max_run_time)
    except TrainingStopped as stop:
        if is_rank_zero():
            print(f"resnet-gluon train: {stop}; saved a mid-epoch checkpoint under {args.model_prefix!r}: run the "
                  f"same command again to continue (exit status {stop.code})", file=sys.stderr)
        raise
    if is_rank_zero() and history.epochs:
        print(json.dumps(history.summary()))
    return 0


def _benchmark(args) -> int:
    benchmark.sweep(num_workers=args.num_workers, batch_sizes=args.batch_size, output=args.output,
                    on_result=lambda r: print(json.dumps(r), flush=True), arch=args.arch, dtype=args.dtype,
                    image_size=args.image_size, data_backend=args.data_backend, data_root=args.data_root,
                    iterations=args.iterations, epochs=args.epochs, warmup=args.warmup,
                    only_inference=args.only_inference, classes=args.num_classes, data_threads=args.data_threads,
                    backend=args.backend)
    print(f"wrote {args.output}")
    return 0


def _load_predictor(args):
    from ..deploy.predictor import Predictor

    if args.onnx and args.dtype not in (None, "float32"):
        raise ValueError("--onnx exports the float32 model; run it without --dtype")
    if args.data_root and not os.path.isdir(args.data_root):
        raise FileNotFoundError(f"data root {args.data_root!r} does not exist")
    calibration = args.calibration or (os.path.join(args.data_root, "train.rec") if args.data_root else None)
    options = dict(num_images=args.num_calib_images, batch_size=args.calib_batch_size, calib_mode=args.calib_mode)
    engine = {} if args.backend is None else dict(backend=args.backend)
    predictor = Predictor.from_checkpoint(args.model_prefix, args.epoch, dtype=args.dtype, image_size=args.image_size,
                                          batch_size=args.batch_size, calibration=calibration,
                                          calibration_options=options, ema=args.ema, **engine)
    if predictor.weights == "ema" or not args.ema:  # said only where a choice was made
        print("weights: the moving average saved with the checkpoint (--no-ema: the raw ones)"
              if predictor.weights == "ema" else "weights: raw (--no-ema)", file=sys.stderr)
    if args.save_prefix:
        print(f"wrote {predictor.dtype} model: {', '.join(predictor.save(args.save_prefix))}", file=sys.stderr)
    if args.onnx:
        print(f"wrote {predictor.export_onnx(args.onnx)}", file=sys.stderr)
    return predictor


def _predict(args) -> int:
    rec = args.rec or (os.path.join(args.data_root, "val.rec") if args.data_root else None)
    if not rec and not args.images and not args.save_prefix and not args.onnx:
        raise ValueError("give image files, --data-root or --rec (or --save-prefix/--onnx)")
    images = _image_files(args.images)
    predictor = _load_predictor(args)
    for image, prediction in zip(images, predictor.predict(images, top_k=args.top_k) if images else []):
        shown = printable(image, quote=False)  # a name that is not UTF-8 or holds a tab stays one printable line
        print(json.dumps(dict(image=shown, **prediction.as_dict())) if args.json else f"{shown}: {prediction}")
    if rec:
        result = predictor.evaluate(rec, data_backend=args.data_backend, num_threads=args.data_threads)
        print(json.dumps({k: v for k, v in result.items() if k != "batch_size"}) if args.json else
              f"{rec}: {describe(result, dtype=predictor.dtype)}")
    return 0


def _image_files(paths: List[str]) -> List[str]:
    """predict's arguments with each folder replaced by the image files in it, sorted by name."""
    files = []
    for path in paths:
        if not os.path.isdir(path):
            files.append(path)
            continue
        entries = folders.folder_entries(path)
        if entries.broken:
            print(f"warning: skipped {len(entries.broken)} broken symbolic link(s) in {printable(path)}: "
                  f"{', '.join(printable(name) for name in entries.broken)}", file=sys.stderr)
        if not entries.images:
            raise ValueError(f"folder {printable(path)} holds no image files ({', '.join(folders.IMAGE_EXTENSIONS)}"
                             "); sub-folders are not searched")
        files += [os.path.join(path, name) for name in entries.images]
    return files


def _demo(args) -> int:
    from ..demo import run_demo
    from .._core.dist import is_rank_zero

    train_images, epochs = (0, 6) if args.full else (args.train_images, args.epochs)
    result = run_demo(args.output, epochs=epochs, train_images=train_images or None, image_size=args.image_size,
                      batch_size=args.batch_size, lr=args.lr, min_area=args.min_area, dtype=args.dtype,
                      num_threads=args.num_threads, test_images=args.test_images)
    if is_rank_zero():
        print(result)
    return 0


def _parser() -> argparse.ArgumentParser:
    return build_parser(dict(prepare=_prepare, train=_train, benchmark=_benchmark, predict=_predict, demo=_demo))


#: What a bad input raises in the library: printed as one line with exit status 1.
_INPUT_ERRORS = (ValueError, FileNotFoundError, FileExistsError, PermissionError, FloatingPointError, ChildProcessError)


def _run_forwarding_signals(cmd: List[str]) -> int:
    """Run ``cmd`` (horovodrun) and pass SIGTERM, SIGUSR1 and SIGINT on to its workers, so that a cluster's stop
    signal reaches them (they stop cleanly, see resnet_gluon.train.stopping); returns its exit status. Not to horovodrun
    itself: on SIGTERM it may freeze (SIGSTOP) a worker and kill it 5 s later, before its checkpoint."""
    import signal

    import psutil

    proc = subprocess.Popen(cmd)

    def forward(signum, frame):
        try:
            workers = [p for p in psutil.Process(proc.pid).children(recursive=True)
                       if not p.children() and "resnet_gluon" in " ".join(p.cmdline())]
        except psutil.Error:
            workers = []
        for worker in workers or [proc]:
            worker.send_signal(signum)

    signals = (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)
    previous = {s: signal.signal(s, forward) for s in signals}
    try:
        return proc.wait()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def main(argv: Optional[List[str]] = None) -> int:
    """Run the command line; returns the exit status (2 for a bad flag, 1 for bad input)."""
    from .._core.dist import under_horovodrun, worker_command

    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    formatwarning = warnings.formatwarning
    # a warning is one line for the user of the command, not the library's file, line and source
    warnings.formatwarning = lambda message, *_, **__: f"resnet-gluon {args.command}: warning: {message}\n"
    try:
        if isinstance(getattr(args, "num_workers", None), int) and args.num_workers > 1 and not under_horovodrun():
            # asked for N workers outside horovodrun: run this same command under horovodrun -np N
            return _run_forwarding_signals([*worker_command(args.num_workers), "-m", "resnet_gluon", *argv])
        return args.run(args)
    except _INPUT_ERRORS as err:
        print(f"resnet-gluon {args.command}: error: {err}", file=sys.stderr)
        return 1
    finally:
        warnings.formatwarning = formatwarning
