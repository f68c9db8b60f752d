"""ResNet-50 v1.5 training speed with MXNet's own threading defaults vs resnet_gluon's, in one run.

    .venv/bin/python benchmarks/threads.py [--batch-size 32] [--image-size 224] [--steps 5]

Each setting runs :func:`resnet_gluon.benchmark.step_speed` in a fresh process (MXNet reads these variables
at import).
"""
import argparse
import os

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
    from resnet_gluon.benchmark import in_fresh_process
    from resnet_gluon._core.runtime import cpu_thread_defaults

    print(f"resnet_gluon defaults here: {cpu_thread_defaults()}")
    base = {k: v for k, v in os.environ.items() if k not in cpu_thread_defaults()}
    results = {}
    for name, extra in SETTINGS.items():
        results[name] = in_fresh_process("step_speed", env={**base, **extra}, batch_size=args.batch_size,
                                         image_size=args.image_size, steps=args.steps)["img_s"]
        print(f"{name:22} {results[name]:8.2f} img/s", flush=True)
    print(f"ratio resnet_gluon / mxnet defaults: {results['resnet_gluon defaults'] / results['mxnet defaults']:.2f}")


if __name__ == "__main__":
    main()
