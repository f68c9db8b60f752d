"""The cost of fit's stop check (resnet_gluon.train.stopping.StopRequest.should_stop) per step, against a training step.

    .venv/bin/python benchmarks/stop_check.py [--calls 2000] [--image-size 28] [--batch-size 64]

Times ``should_stop()`` with one worker (a flag check) and under ``horovodrun -np 2`` (plus one allreduce of one
number over Gloo), and a bare ResNet-50 v1.5 training step (:func:`resnet_gluon.benchmark.step_speed`, the embedded
demo's size by default) in the same run; prints microseconds per call and the share of a step.
"""
import argparse
import json
import os
import subprocess
import sys
import time


def _calls(n):
    from resnet_gluon._core import dist
    from resnet_gluon.train.stopping import StopRequest

    dist.init()
    request = StopRequest()
    for _ in range(20):   # warm-up (Horovod negotiates a new tensor name once)
        request.should_stop()
    start = time.perf_counter()
    for _ in range(n):
        request.should_stop()
    request.close()
    return (time.perf_counter() - start) / n * 1e6


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--image-size", type=int, default=28)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        us = _calls(args.calls)
        from resnet_gluon._core import dist

        if dist.rank() == 0:
            print("RESULT " + json.dumps(us), flush=True)
        return
    from resnet_gluon.benchmark import in_fresh_process
    from resnet_gluon._core.dist import worker_command

    one = _calls(args.calls)
    out = subprocess.run([*worker_command(2), os.path.abspath(__file__), "--worker", "--calls", str(args.calls)],
                         capture_output=True, text=True, check=True).stdout
    two = json.loads(out.split("RESULT ", 1)[1].splitlines()[0])
    step = in_fresh_process("step_speed", model="resnet50_v1_5", mode="train", batch_size=args.batch_size,
                            image_size=args.image_size, steps=5)
    step_us = 1e6 * args.batch_size / step["img_s"]
    print(f"stop check: 1 worker {one:.2f} us per step, 2 workers {two:.1f} us per step (one allreduce)")
    print(f"training step (resnet50_v1_5, {args.image_size} px, batch {args.batch_size}): {step_us / 1e3:.0f} ms; "
          f"the check is {one / step_us:.2e} (1 worker) and {two / step_us:.2e} (2 workers) of a step")


if __name__ == "__main__":
    sys.exit(main())
