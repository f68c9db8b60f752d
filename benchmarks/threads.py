"""ResNet-50 v1.5 training speed with MXNet's own threading defaults vs resnet_gluon's, in one run.

    .venv/bin/python benchmarks/threads.py [--batch-size 32] [--image-size 224] [--steps 5]

Each setting runs in a fresh process (MXNet reads these variables at import).
"""
import argparse
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from model import WORKER  # noqa: E402  (benchmarks/model.py: one timed training step, in its own process)

SETTINGS = {
    "mxnet defaults": {"RESNET_GLUON_NO_THREAD_DEFAULTS": "1"},
    "resnet_gluon defaults": {},
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    from resnet_gluon.runtime import cpu_thread_defaults

    print(f"resnet_gluon defaults here: {cpu_thread_defaults()}")
    base = {k: v for k, v in os.environ.items() if k not in cpu_thread_defaults()}
    results = {}
    for name, extra in SETTINGS.items():
        proc = subprocess.run([sys.executable, "-c", WORKER, "ours", "train", "float32", str(args.batch_size),
                               str(args.image_size), str(args.steps)], capture_output=True, text=True,
                              env={**base, **extra})
        results[name] = json.loads(proc.stdout.strip().splitlines()[-1])["img_s"]
        print(f"{name:22} {results[name]:8.2f} img/s", flush=True)
    print(f"ratio resnet_gluon / mxnet defaults: {results['resnet_gluon defaults'] / results['mxnet defaults']:.2f}")


if __name__ == "__main__":
    main()
