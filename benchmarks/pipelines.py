"""Input pipeline throughput: DALI CPU vs mx.io.ImageRecordIter vs gluon DataLoader, same augmentation and
thread count, on realistic JPEGs (about 500x375, ~100 KB), in one run.

    .venv/bin/python benchmarks/pipelines.py [--images 512] [--batch-size 64] [--threads 2] [--epochs 2] [--repeats 1]

Prints img/s (and per thread) for the training augmentation and the validation preprocessing at 224 px,
and each backend's ratio to the fastest other one; with ``--repeats N`` the backends take turns N times and
the medians are printed (for shared, noisy machines). 'dali-cpu file order' is the same DALI graph fed by
DALI's own ``fn.readers.mxnet`` (file order, a shuffle buffer), as DALIPipeline read before it drew a global
order per epoch: its difference to 'dali-cpu' is what reading in the library's order costs (it is left out
of the ratios).

    .venv/bin/python benchmarks/pipelines.py --augment [--images 256] [--epochs 1] [--repeats 1]

instead measures the cost of each augmentation beyond the reference in the DALI CPU training pipeline
(``Preprocessing.auto_augment``: RandAugment rand-m9-n2, TrivialAugment-wide, AutoAugment ImageNet; random
erasing with probability 0.25, timm's usual, and 1, every image erased): img/s, CPU ms per image, and the ratio to the plain pipeline
measured in the same run (the variants take turns, ``--repeats`` times; medians).
"""
import argparse
import os
import tempfile
import time

import numpy as np


def gluon_loader(rec: str, batch_size: int, train: bool, threads: int, prep):
    from mxnet.gluon.data import DataLoader
    from mxnet.gluon.data.vision import ImageRecordDataset, transforms

    mean = [m / 255 for m in prep.mean]
    std = [s / 255 for s in prep.std]
    if train:
        chain = [transforms.RandomResizedCrop(prep.image_size, scale=prep.area, ratio=prep.aspect),
                 transforms.RandomFlipLeftRight()]
    else:
        chain = [transforms.Resize(prep.resize, keep_ratio=True), transforms.CenterCrop(prep.image_size)]
    transform = transforms.Compose(chain + [transforms.ToTensor(), transforms.Normalize(mean, std)])
    dataset = ImageRecordDataset(rec).transform_first(transform)
    return DataLoader(dataset, batch_size=batch_size, shuffle=train, num_workers=threads)  # processes: a recordio reader is not thread-safe


def file_order_dali():
    """DALIPipeline with DALI's ``fn.readers.mxnet`` as its input, as before the global order."""
    from resnet_gluon.data import _dali_graph, pipelines

    class FileOrderDALIPipeline(pipelines.DALIPipeline):
        def _inputs(self, fn, types, positions):
            return fn.readers.mxnet(path=[self.files.rec], index_path=[self.files.idx], shard_id=self.shard_id,
                                    num_shards=self.num_shards, random_shuffle=self.train, stick_to_shard=True,
                                    pad_last_batch=True, name="Reader")

        def _iterator(self, epoch, positions):
            dali_mxnet = _dali_graph.import_dali()[3]
            return dali_mxnet.DALIClassificationIterator(
                [self._build(epoch, positions)], reader_name="Reader", data_layout=self.preprocessing.layout,
                last_batch_policy=dali_mxnet.LastBatchPolicy.PARTIAL, auto_reset=True)

    return FileOrderDALIPipeline


def cpu_seconds() -> float:
    """CPU time of this process and its live children (the DataLoader's workers)."""
    import psutil

    me = psutil.Process()
    return sum(sum(p.cpu_times()[:2]) for p in [me, *me.children(recursive=True)])


def timed(make, epochs: int):
    """(img/s, CPU ms per image); CPU time is less sensitive than img/s to other processes on the machine."""
    source = make()
    for _ in source:  # warm-up epoch
        pass
    n, start, cpu = 0, time.perf_counter(), cpu_seconds()
    for _ in range(epochs):
        for batch in source:
            data = batch[0]
            data.wait_to_read()
            n += data.shape[0]
    return n / (time.perf_counter() - start), 1e3 * (cpu_seconds() - cpu) / n


#: The augmentation variants ``--augment`` compares, as Preprocessing options.
AUGMENTATIONS = {"plain": {}, "rand-m9-n2": dict(auto_augment="rand-m9-n2"),
                 "trivialaugment": dict(auto_augment="trivialaugment"),
                 "autoaugment": dict(auto_augment="autoaugment"), "random erasing p=0.25": dict(random_erasing=0.25),
                 "random erasing p=1": dict(random_erasing=1.0)}


def medians(runs, names):
    """Median img/s and CPU ms/img of each name over the runs."""
    return ({name: float(np.median([run[name][0] for run in runs])) for name in names},
            {name: float(np.median([run[name][1] for run in runs])) for name in names})


def compare_backends(args, files, prep):
    from resnet_gluon.data import pipelines

    for train in (True, False):
        kind = "train" if train else "val"
        backends = {
            "dali-cpu": lambda: pipelines.DALIPipeline(files.rec, batch_size=args.batch_size, train=train,
                                                       preprocessing=prep, num_threads=args.threads, seed=1),
            "dali-cpu file order": lambda: file_order_dali()(files.rec, batch_size=args.batch_size, train=train,
                                                             preprocessing=prep, num_threads=args.threads, seed=1),
            "mxnet ImageRecordIter": lambda: pipelines.RecordIterPipeline(
                files.rec, batch_size=args.batch_size, train=train, preprocessing=prep,
                num_threads=args.threads),
            "gluon DataLoader": lambda: gluon_loader(files.rec, args.batch_size, train, args.threads, prep),
        }
        runs = [{name: timed(make, args.epochs) for name, make in backends.items()} for _ in range(args.repeats)]
        results, cpu = medians(runs, backends)
        for name, ips in results.items():
            best_other = max(v for k, v in results.items() if k != name and k != "dali-cpu file order")
            print(f"{kind:5} {name:22} {ips:8.1f} img/s {ips / args.threads:7.1f} per thread  "
                  f"ratio to best other {ips / best_other:5.2f}  CPU {cpu[name]:5.2f} ms/img", flush=True)
        ours, before = results["dali-cpu"], results["dali-cpu file order"]
        print(f"{kind:5} dali-cpu global order vs file order: {ours - before:+.1f} img/s ({ours / before:.2f}x), "
              f"CPU {cpu['dali-cpu'] - cpu['dali-cpu file order']:+.2f} ms/img")


def augmentation_cost(args, files, prep):
    import dataclasses

    from resnet_gluon.data import pipelines

    def make(options):
        return lambda: pipelines.DALIPipeline(files.rec, batch_size=args.batch_size, train=True, seed=1,
                                              preprocessing=dataclasses.replace(prep, **options),
                                              num_threads=args.threads)

    runs = [{name: timed(make(options), args.epochs) for name, options in AUGMENTATIONS.items()}
            for _ in range(args.repeats)]
    results, cpu = medians(runs, AUGMENTATIONS)
    for name, ips in results.items():
        print(f"train dali-cpu {name:26} {ips:8.1f} img/s  ratio to plain {ips / results['plain']:5.2f}  "
              f"CPU {cpu[name]:5.2f} ms/img ({cpu[name] - cpu['plain']:+.2f})", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, help="default 512 (--augment: 256)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--epochs", type=int, help="timed epochs after a warm-up one; default 2 (--augment: 1)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--augment", action="store_true", help="the cost of each augmentation beyond the "
                        "reference in the DALI CPU training pipeline, instead of the backends' comparison")
    args = parser.parse_args()
    args.images = args.images or (256 if args.augment else 512)
    args.epochs = args.epochs or (1 if args.augment else 2)
    from resnet_gluon.benchmark import make_jpeg_records
    from resnet_gluon.data.preprocessing import Preprocessing

    prep = Preprocessing()
    with tempfile.TemporaryDirectory() as tmp:
        files, size = make_jpeg_records(os.path.join(tmp, "bench"), args.images)
        print(f"{args.images} JPEGs of 500x375, {size / 1024:.0f} KB on average; batch {args.batch_size}, "
              f"{args.threads} threads, 224 px")
        (augmentation_cost if args.augment else compare_backends)(args, files, prep)


if __name__ == "__main__":
    main()
