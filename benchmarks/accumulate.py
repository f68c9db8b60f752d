"""Gradient accumulation's cost: one batch of 64 against 16 x accumulate 4, the same global batch, in one run.

    .venv/bin/python benchmarks/accumulate.py [--image-size 224] [--updates 2] [--dtype float32]

ResNet-50 v1.5 trained through fit() on synthetic data, each setting in a fresh process (peak memory and MXNet's
settings are per process): img/s of the measured epoch (the first epoch warms up) and the process's peak resident
memory (``ru_maxrss``). Both settings train on the same number of images per epoch, ``updates x 64``.
"""
import argparse


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--updates", type=int, default=2, help="optimizer updates per epoch (2 epochs, 1 measured)")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--arch", default="resnet50_v1_5")
    args = parser.parse_args()
    from resnet_gluon.benchmark import in_fresh_process

    settings = [(64, 1), (16, 4)]
    results = []
    for batch, accumulate in settings:
        result = in_fresh_process("measure", arch=args.arch, batch_size=batch, accumulate=accumulate,
                                  iterations=args.updates * accumulate, epochs=2, warmup=1,
                                  image_size=args.image_size, dtype=args.dtype, classes=1000)
        results.append(result)
        print(f"batch {batch:3d} x accumulate {accumulate}: {result['total_ips']:6.2f} img/s, peak resident memory "
              f"{result['peak_rss_mib']:7.0f} MiB ({result['dtype']}, {args.image_size} px)", flush=True)
    (big, acc) = results
    print(f"16 x 4 / 64: speed {acc['total_ips'] / big['total_ips']:.3f}, "
          f"peak memory {acc['peak_rss_mib'] / big['peak_rss_mib']:.3f}")


if __name__ == "__main__":
    main()
