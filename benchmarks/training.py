"""End-to-end training speed: the DALI CPU pipeline + model + Trainer against synthetic data, in one run.

    .venv/bin/python benchmarks/training.py [--image-size 224] [--batch-size 16] [--steps 8] [--images 256]

Both runs go through fit() with the same model and Trainer; the ratio (real data / synthetic) shows how much
the input pipeline slows training down (goal >= 0.95). Prints img/s with data loading included.
"""
import argparse
import os
import tempfile


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=8, help="steps per measured epoch")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    import resnet_gluon as rg
    from resnet_gluon.data import pipelines
    from resnet_gluon.benchmark import make_jpeg_records
    from resnet_gluon.data.preprocessing import Preprocessing

    prep = Preprocessing.for_size(args.image_size)
    with tempfile.TemporaryDirectory() as tmp:
        files, _ = make_jpeg_records(os.path.join(tmp, "bench"), args.batch_size * args.steps)
        sources = {
            "synthetic": pipelines.SyntheticData(batch_size=args.batch_size, num_batches=args.steps, classes=10,
                                                 preprocessing=prep),
            "dali-cpu": pipelines.DALIPipeline(files.rec, batch_size=args.batch_size, train=True,
                                               preprocessing=prep, num_threads=args.threads, seed=0),
        }
        results = {}
        for name, source in sources.items():
            net = rg.resnet50_v1_5(classes=10)
            # epoch 1 warms up (graph building, first steps); epoch 2 is measured
            history = rg.fit(net, source, epochs=2, lr=0.01, warmup_epochs=0, progress=False)
            results[name] = history.history["total_ips"][-1]
            print(f"{name:10} {results[name]:8.2f} img/s (data loading included), "
                  f"p50 step {history.history['latency_50'][-1] * 1000:.0f} ms", flush=True)
    print(f"ratio dali-cpu / synthetic: {results['dali-cpu'] / results['synthetic']:.3f}")


if __name__ == "__main__":
    main()
