"""The cost of the moving average of the weights (resnet_gluon.train.ema.EMA) per optimizer update, against a step.

    .venv/bin/python benchmarks/ema.py [--updates 20] [--image-size 28] [--batch-size 64]

Times ``EMA.update()`` (one fused in-place operation per parameter) and the swap in and out for validation
(``EMA.applied()``) on ResNet-50 v1.5's 25.6 M parameters, and a bare training step
(:func:`resnet_gluon.benchmark.step_speed`, the embedded demo's size by default) in a fresh process of the same run;
prints milliseconds and the share of a step.
"""
import argparse
import statistics
import sys
import time


def _timed(fn, repeats):
    import mxnet as mx

    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        mx.nd.waitall()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=20)
    parser.add_argument("--image-size", type=int, default=28)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    import mxnet as mx

    from resnet_gluon import resnet50_v1_5
    from resnet_gluon.benchmark import in_fresh_process
    from resnet_gluon.train.ema import EMA

    net = resnet50_v1_5(classes=1000)
    net.initialize()
    net(mx.nd.zeros((1, 3, args.image_size, args.image_size)))
    ema = EMA(net.collect_params(), decay=0.9998)
    ema.update()  # allocates the averages
    update = _timed(ema.update, args.updates)

    def swap():
        with ema.applied():
            pass

    swapped = _timed(swap, 3)
    step = in_fresh_process("step_speed", model="resnet50_v1_5", mode="train", batch_size=args.batch_size,
                            image_size=args.image_size, steps=5)
    step_ms = 1e3 * args.batch_size / step["img_s"]
    print(f"EMA update (resnet50_v1_5, {len(ema.averages)} arrays): {update:.1f} ms (median of {args.updates}); "
          f"swap in and out: {swapped:.1f} ms (once per epoch)")
    print(f"training step ({args.image_size} px, batch {args.batch_size}): {step_ms:.0f} ms; the update is "
          f"{update / step_ms:.1%} of a step")


if __name__ == "__main__":
    sys.exit(main())
