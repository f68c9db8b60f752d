"""Recipes on the embedded data set, same run and budget: the reference vs rsb_a3-style training vs reference + EMA.

    .venv/bin/python benchmarks/recipes.py [--epochs 5] [--limit 36000] [--seeds 0,1] [-o runs/recipes]
    .venv/bin/python benchmarks/recipes.py --quick        # smoke test: resnet18, 512 images, 1 epoch, 1 seed
    .venv/bin/python benchmarks/recipes.py --only reference,reference+ema
    .venv/bin/python benchmarks/recipes.py --dry-run      # the train commands, nothing run

Issue #24's measurement. Every contender is one ``python -m resnet_gluon train`` per seed on Fashion-MNIST at 28 px
(``prepare --fashion-mnist``, the demo's data and its 36,000 training images by default), with the same images,
epochs, batch, seeds, precision and random-resized-crop area; the figure is top-1 of the last epoch on the
validation split (``val_top1`` of the last checkpoint's record; ``val_top1_ema`` too where the run averages
weights), median over the seeds (of two, their mean). Runs resume (rerun the same command after an interruption;
``seconds`` is what each invocation ran); results go to ``<output>/recipes.json``.

rsb_a3 scaled to 28 px, and the budget (what "same run" means here):

- Resolution: rsb_a3 trains at 160 px for 224 px tests; ``Recipe.preprocessing`` scales that by 28/224 to 20 px
  training crops, tested at 28 px with RSB's crop ratio 0.95 (resize 29). The reference trains and tests at 28.
- Augmentation magnitudes stay as RSB states them: RandAugment's translations are fractions of the image side,
  the CutMix box and the erased rectangle fractions of its area, and its colour and geometry magnitudes do not
  depend on the size, so m6 means at 20 px what it means at 160.
- Random resized crop: area 0.75-1 for every contender (the demo's; Fashion-MNIST items fill the frame, and RSB's
  0.08 would keep a few pixels of a 28 px item), so the crops differ only by resolution.
- Schedule squeezed into the budget: warm-up and the reference's lr steps scaled by ``epochs / recipe epochs``
  (the reference: 5 of 90 warm-up epochs and decays after 30, 60, 80 become 0.28 and 2, 3, 4 for 5 epochs).
- lr: the reference's linear rule (0.1 per 256 images); rsb_a3's LAMB lr 8e-3 at batch 2048 scaled by
  ``sqrt(batch / 2048)``, timm's rule for LAMB and Adam-type optimizers (``lr_base_scale='sqrt'`` in its train.py).
- EMA: decay 0.9998 per step, as timm's ``--model-ema-decay`` default: a time constant of 5,000 steps, about 9
  epochs of 563 steps at batch 64 and 36,000 images, longer than the run; the decay's warm-up (timm's ModelEmaV3)
  is what lets the average follow the weights in so short a run. A sweep of the decay is not part of this.
- Cost: resnet50_v1_5 at about 85 img/s on 2 CPU cores (the demo's speed): 7 min an epoch, 6 runs of 5 epochs
  about 3.5 hours.

EMA's flags (``--ema-decay``, ``--ema-warmup``: :mod:`resnet_gluon.train.ema`) are in the table below.
"""
import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time

#: Flags of the contenders' features (change them here only).
EMA = ["--ema-decay", "0.9998", "--ema-warmup"]
# rsb_a3's own RandAugment and CutMix (its preset sets them; stated again here); no random erasing, as in RSB's A3.
# RandAugment's magnitude noise (mstd0.5) is not built (Recipe.omitted).
RSB_AUGMENTATION = ["--auto-augment", "rand-m6-n2-inc1", "--cutmix", "1.0"]

#: contender -> (recipe preset, extra train flags)
CONTENDERS = {
    "reference": ("reference", []),
    "rsb_a3": ("rsb_a3", RSB_AUGMENTATION),
    "reference+ema": ("reference", EMA),
}

IMAGE_SIZE = 28  # Fashion-MNIST's own
MIN_AREA = 0.75  # the demo's random-resized-crop minimum area, for every contender


def _parse():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", default=os.path.join("runs", "recipes"), help="data, runs and results")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seeds", default="0,1", help="comma-separated seeds; the figure is their median")
    parser.add_argument("--arch", default="resnet50_v1_5")
    parser.add_argument("-b", "--batch-size", type=int, default=64)
    parser.add_argument("--limit", type=int, default=36000, help="first images of each split (the demo's 36,000 "
                                                                 "training images; all 10,000 validation ones)")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--data-threads", type=int)
    parser.add_argument("-n", "--num-workers", type=int, default=1)
    parser.add_argument("--only", help=f"comma-separated contenders (default: all of {', '.join(CONTENDERS)})")
    parser.add_argument("--quick", action="store_true", help="smoke test: resnet18_v1_5, 512 images a split, "
                                                             "1 epoch, seed 0, batch 32")
    parser.add_argument("--dry-run", action="store_true", help="print the train commands, run nothing")
    args = parser.parse_args()
    if args.quick:
        args.arch, args.limit, args.epochs, args.seeds, args.batch_size = "resnet18_v1_5", 512, 1, "0", 32
    args.seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    args.only = [c.strip() for c in args.only.split(",")] if args.only else list(CONTENDERS)
    unknown = [c for c in args.only if c not in CONTENDERS]
    if unknown or not args.seeds or args.epochs < 1:
        parser.error(f"unknown contender {unknown[0]!r}; choose from {', '.join(CONTENDERS)}" if unknown else
                     "need at least one seed and one epoch")
    return args


def _cli(*argv, log=None, dry_run=False):
    """Run ``python -m resnet_gluon ARGV``; on failure raise with the tail of its output."""
    if dry_run:
        print("python -m resnet_gluon " + " ".join(map(str, argv)))
        return ""
    proc = subprocess.run([sys.executable, "-m", "resnet_gluon", *map(str, argv)], capture_output=True, text=True)
    if log:
        with open(log, "a") as f:
            f.write(proc.stdout + proc.stderr)
    if proc.returncode:
        raise SystemExit(f"{' '.join(map(str, argv[:2]))} failed (status {proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc.stdout


def _budget_flags(preset: str, args) -> list:
    """The recipe squeezed into ``args.epochs`` (warm-up, lr steps) and its lr for ``args.batch_size`` (see the
    module docstring)."""
    import warnings

    from resnet_gluon import Recipe

    with warnings.catch_warnings():  # the omitted ingredients are named by the train command itself
        warnings.simplefilter("ignore")
        recipe = Recipe.preset(preset)
    scale = args.epochs / recipe.epochs
    flags = ["--warmup-epochs", round(recipe.warmup_epochs * scale, 3)]
    if recipe.schedule == "step":
        steps = sorted({round(e * scale) for e in recipe.lr_steps if 1 <= round(e * scale) < args.epochs})
        flags += ["--lr-steps", ",".join(map(str, steps or [args.epochs]))]  # [epochs]: no decay in the run
    global_batch = args.batch_size * args.num_workers
    if recipe.lr is not None and recipe.batch_size:  # an absolute lr for a stated batch (rsb_a3: LAMB)
        flags += ["--lr", f"{recipe.lr * math.sqrt(global_batch / recipe.batch_size):.6g}"]
    return flags


def _run(name: str, seed: int, data_root: str, args) -> dict:
    preset, extra = CONTENDERS[name]
    prefix = os.path.join(args.output, f"{name}-seed{seed}", "m")
    os.makedirs(os.path.dirname(prefix), exist_ok=True)
    start = time.time()
    _cli("train", "--data-root", data_root, "--recipe", preset, "--image-size", IMAGE_SIZE, "--min-area", MIN_AREA,
         "--arch", args.arch, "-b", args.batch_size, "--num-epochs", args.epochs, "--seed", seed, "--dtype",
         args.dtype, "-n", args.num_workers, "--no-progress", "--model-prefix", prefix,
         *(["--data-threads", args.data_threads] if args.data_threads else []), *_budget_flags(preset, args), *extra,
         log=f"{prefix}.log", dry_run=args.dry_run)
    if args.dry_run:
        return {}
    from resnet_gluon.models.checkpoint import latest_checkpoint, read_checkpoint_record

    epoch = latest_checkpoint(prefix)
    if epoch != args.epochs:
        raise SystemExit(f"{name} seed {seed}: the newest checkpoint is epoch {epoch}, not {args.epochs}")
    record = read_checkpoint_record(prefix, epoch)
    metrics = record.metrics
    return dict(contender=name, seed=seed, val_top1=metrics["val_top1"], val_top1_ema=metrics.get("val_top1_ema"),
                train_image_size=record.preprocessing.get("train_image_size", record.preprocessing["image_size"]),
                image_size=record.preprocessing["image_size"], seconds=round(time.time() - start, 1))


def _summary(runs: list) -> dict:
    out = {}
    for name in dict.fromkeys(r["contender"] for r in runs):
        mine = [r for r in runs if r["contender"] == name]
        ema = [r["val_top1_ema"] for r in mine if r["val_top1_ema"] is not None]
        out[name] = dict(val_top1=statistics.median(r["val_top1"] for r in mine),
                         val_top1_ema=statistics.median(ema) if len(ema) == len(mine) else None, seeds=len(mine))
    return out


def main():
    args = _parse()
    from resnet_gluon._core.files import atomic_write_json

    data_root = os.path.join(args.output, "data")
    if not os.path.isfile(os.path.join(data_root, "val.idx")) and not args.dry_run:
        _cli("prepare", "--fashion-mnist", "--image-size", IMAGE_SIZE, "-o", data_root,
             *(["--limit", args.limit] if args.limit else []))
    runs = []
    for name in args.only:
        for seed in args.seeds:
            result = _run(name, seed, data_root, args)
            if result:  # nothing in a dry run
                runs.append(result)
                print(json.dumps(result), flush=True)
    if args.dry_run:
        return
    summary = _summary(runs)
    settings = {k: v for k, v in vars(args).items() if k != "only"}
    atomic_write_json(os.path.join(args.output, "recipes.json"),
                      dict(settings=settings, contenders={c: CONTENDERS[c] for c in args.only}, runs=runs,
                           summary=summary))
    print(f"\n{args.arch}, Fashion-MNIST {IMAGE_SIZE} px, {args.epochs} epochs, batch {args.batch_size}, seeds "
          f"{args.seeds}: top-1 (median)")
    for name, s in summary.items():
        ema = f", EMA weights {s['val_top1_ema']:.4f}" if s["val_top1_ema"] is not None else ""
        print(f"  {name:15} {s['val_top1']:.4f}{ema}")


if __name__ == "__main__":
    main()
