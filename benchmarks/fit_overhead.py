"""fit()'s own overhead: fit on synthetic data against a bare Gluon loop over the same model, in one run.

    .venv/bin/python benchmarks/fit_overhead.py [--image-size 28] [--batch-size 64] [--steps 8] [--rounds 6]

The bare loop is forward, loss, backward and ``gluon.Trainer.step`` with nothing else (no metrics, no reads
back to the host but the final wait). The two alternate ``--rounds`` times on the same ``resnet50_v1_5``
(float32, CPU or this worker's GPU), so that drift of the machine's speed hits both alike. Warm-up is excluded:
each fit call runs two epochs of ``--steps`` steps and its second epoch's ``total_ips`` counts (the first
rebuilds the graph: fit hybridizes the net); the bare loop runs ``--warmup`` steps before its clock starts.
The goal of issue 16: fit >= 0.98x the bare loop at 28 px, batch 64, float32. The load average is printed
before and after: on a machine shared with other work the per-round ratios scatter widely; compare medians.
"""
import argparse
import os
import statistics
import time


def bare_loop(net, data, label, trainer, loss_fn, steps: int, warmup: int) -> float:
    """Images per second of forward/backward/step over ``steps`` steps after ``warmup`` untimed ones."""
    import mxnet as mx
    from mxnet import autograd

    for i in range(warmup + steps):
        if i == warmup:
            mx.nd.waitall()
            start = time.perf_counter()
        with autograd.record():
            loss = loss_fn(net(data), label)
        loss.backward()
        trainer.step(data.shape[0])
    mx.nd.waitall()
    return steps * data.shape[0] / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=28)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=8, help="timed steps per measurement")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps before the bare loop's clock starts")
    parser.add_argument("--rounds", type=int, default=6, help="alternations of fit and the bare loop")
    parser.add_argument("--lr", type=float, default=0.025, help="both: the reference's 0.1 per 256 images")
    args = parser.parse_args()
    import resnet_gluon as rg
    from mxnet import gluon
    from resnet_gluon import pipelines
    from resnet_gluon.data import Preprocessing
    from resnet_gluon.training import default_context

    ctx = default_context()
    source = pipelines.SyntheticData(batch_size=args.batch_size, num_batches=args.steps, classes=10,
                                     preprocessing=Preprocessing.for_size(args.image_size), ctx=ctx)
    data, label = next(iter(source))
    net = rg.resnet50_v1_5(classes=10)
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    print(f"resnet50_v1_5, {args.image_size} px, batch {args.batch_size}, float32, {ctx}; {args.steps} timed "
          f"steps per measurement, {args.rounds} rounds; load average {os.getloadavg()[0]:.1f}", flush=True)
    fit_ips, bare_ips = [], []
    bare_trainer = None
    for r in range(args.rounds):
        history = rg.fit(net, source, epochs=2, dtype="float32", progress=False, batch_size=args.batch_size,
                         lr=args.lr, warmup_epochs=0)
        fit_ips.append(history.history["total_ips"][-1])
        if bare_trainer is None:   # after fit has initialised and hybridized the net
            bare_trainer = gluon.Trainer(net.collect_params(), "sgd",
                                         {"learning_rate": args.lr, "momentum": 0.9, "wd": 1e-4})
        bare_ips.append(bare_loop(net, data, label, bare_trainer, loss_fn, args.steps, args.warmup))
        print(f"round {r + 1}: fit {fit_ips[-1]:7.2f} img/s   bare loop {bare_ips[-1]:7.2f} img/s   "
              f"ratio {fit_ips[-1] / bare_ips[-1]:.3f}", flush=True)
    ratios = [f / b for f, b in zip(fit_ips, bare_ips)]
    print(f"mean: fit {statistics.mean(fit_ips):.2f} img/s, bare loop {statistics.mean(bare_ips):.2f} img/s; "
          f"ratio of means {statistics.mean(fit_ips) / statistics.mean(bare_ips):.3f}, "
          f"median of round ratios {statistics.median(ratios):.3f} (goal >= 0.98); load average "
          f"{os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
