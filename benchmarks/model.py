"""Training-step and inference speed of resnet50_v1_5 against gluoncv's resnet50_v1b, in one run.

    .venv/bin/python benchmarks/model.py [--batch-size 32] [--image-size 224] [--steps 10] [--dtypes float32,bfloat16]

Each measurement is :func:`resnet_gluon.benchmark.step_speed` in its own process (AMP is process-wide): a bare
Gluon step (or forward pass) after 3 warm-up ones, waiting for each; prints img/s and the ratio ours / gluoncv
(>= 1.0 means we add no overhead).
"""
import argparse


def measure(model, mode, dtype, args):
    """img/s of one step in a fresh process (AMP is process-wide), or (None, the error)."""
    from resnet_gluon.benchmark import in_fresh_process

    try:
        return in_fresh_process("step_speed", model=model, mode=mode, dtype=dtype, batch_size=args.batch_size,
                                image_size=args.image_size, steps=args.steps)["img_s"], ""
    except ChildProcessError as err:
        return None, str(err)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--dtypes", default="float32,bfloat16")
    parser.add_argument("--modes", default="train,infer")
    args = parser.parse_args()
    from resnet_gluon._core.amp import bfloat16_supported

    print(f"batch {args.batch_size}, {args.image_size} px, {args.steps} timed steps after 3 warm-up")
    print(f"{'mode':6} {'dtype':9} {'ours img/s':>11} {'gluoncv img/s':>14} {'ratio':>6}")
    for mode in args.modes.split(","):
        for dtype in args.dtypes.split(","):
            if dtype == "bfloat16" and not bfloat16_supported():
                print(f"{mode:6} {dtype:9} skipped: this CPU has no oneDNN bfloat16 (needs AVX-512)")
                continue
            ours, err1 = measure("resnet50_v1_5", mode, dtype, args)
            theirs, err2 = measure("gluoncv:resnet50_v1b", mode, dtype, args)
            if ours is None or theirs is None:
                print(f"{mode:6} {dtype:9} failed: {err1 or err2}")
                continue
            print(f"{mode:6} {dtype:9} {ours:11.2f} {theirs:14.2f} {ours / theirs:6.3f}", flush=True)


if __name__ == "__main__":
    main()
