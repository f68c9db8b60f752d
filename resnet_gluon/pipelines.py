"""Input pipelines as Python objects: iterables of ``(data, label)`` MXNet NDArrays.

Every source here has the same interface, so ``fit`` and your own loops never see DALI types:

- :class:`DALIPipeline` — the reference's path: ``.rec/.idx`` read by DALI (``fn.readers.mxnet``), decoded
  on the CPU or on the GPU ('mixed'), augmented, and handed over through DALI's MXNet plugin.
- :class:`RecordIterPipeline` — the same augmentation with MXNet's own ``mx.io.ImageRecordIter`` (the
  reference's 'mxnet' backend), for machines without DALI and for comparison.
- :class:`SyntheticData` — one fixed random batch repeated, for benchmarks.

Iterating gives ``data`` of shape ``(N, 3, H, W)`` ('NCHW', float32 by default) normalised as
``(x - mean) / std`` on the 0-255 scale, and ``label`` of shape ``(N,)`` float32 class indices. ``N`` is the
batch size except for the last batch of an epoch, which holds the remaining images of this shard (no image
is dropped or repeated). ``len(pipeline)`` is the number of batches per epoch; ``num_samples`` the images.

This module is the one place that imports ``nvidia.dali``; it does so when a DALI pipeline is built.
"""
from __future__ import annotations

import math
import os
import re
from typing import Iterator, Optional, Tuple

import mxnet as mx
import numpy as np

from . import dist
from .data import PathLike, Preprocessing, record_files
from .runtime import default_data_threads

__all__ = ["DALIPipeline", "RecordIterPipeline", "SyntheticData", "make_pipeline", "imagenet", "BACKENDS"]

BACKENDS = ("dali-cpu", "dali-gpu", "mxnet", "synthetic")


def _import_dali():
    try:
        from nvidia import dali
        from nvidia.dali import fn, types
        from nvidia.dali.plugin import mxnet as dali_mxnet
    except ImportError as err:
        raise ImportError(f"NVIDIA DALI with its MXNet plugin is needed for the 'dali-*' backends ({err}); "
                          "install it with 'pip install nvidia-dali-cuda120==1.35.0', or use "
                          "data_backend='mxnet'") from err
    return dali, fn, types, dali_mxnet


def _shard(shard_id: Optional[int], num_shards: Optional[int]) -> Tuple[int, int]:
    num_shards = dist.size() if num_shards is None else num_shards
    shard_id = dist.rank() if shard_id is None else shard_id
    if not 0 <= shard_id < num_shards:
        raise ValueError(f"shard_id must be in [0, {num_shards}), got {shard_id}")
    return shard_id, num_shards


def _check_batch(batch_size: int, shard_size: int, path: str, num_shards: int) -> None:
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if batch_size > shard_size:
        raise ValueError(f"batch_size={batch_size} is larger than a shard of {path!r} ({shard_size} images "
                         f"with {num_shards} shard(s)); use batch_size <= {shard_size}")


class _Pipeline:
    """What the pipelines share: the epoch length, identical on every shard, and trimming padded batches.

    Shards differ in size by at most one image. So that every Horovod rank runs the same number of steps,
    every shard gives ``ceil(ceil(num_samples / num_shards) / batch_size)`` batches; a shard that runs out
    first ends its epoch with an empty batch (``data.shape[0] == 0``), which ``fit`` and the ``Trainer``
    handle. No image is dropped or repeated.
    """

    def __init__(self, num_samples: int, batch_size: int, num_shards: int = 1):
        self.num_samples = num_samples
        self.batch_size = batch_size
        self.num_shards = num_shards

    def __len__(self) -> int:
        return math.ceil(math.ceil(self.num_samples / self.num_shards) / self.batch_size)

    def _open_shard(self, path: PathLike, batch_size: int, shard_id: Optional[int], num_shards: Optional[int]):
        """Check the ``.rec``/``.idx`` pair and the shard, and set the epoch bookkeeping; returns (files, shard_id)."""
        files = record_files(path)
        shard_id, num_shards = _shard(shard_id, num_shards)
        total = len(files)
        _check_batch(batch_size, total // num_shards, files.rec, num_shards)
        _Pipeline.__init__(self, total, batch_size, num_shards)
        return files, shard_id

    def _batches(self, batches):
        """Yield ``(data, label)`` from ``(data, label, pad)``, trimmed, then empty ones up to ``len(self)``."""
        n = 0
        data = label = None
        for data, label, pad in batches:
            if pad:
                data, label = data[: data.shape[0] - pad], label[: label.shape[0] - pad]
            if self.ctx is not None and data.context != self.ctx:
                data, label = data.as_in_context(self.ctx), label.as_in_context(self.ctx)
            n += 1
            yield data, label
        for _ in range(len(self) - n):
            yield data[:0], label[:0]

    ctx: Optional[mx.Context] = None


class DALIPipeline(_Pipeline):
    """A DALI pipeline over a ``.rec``/``.idx`` pair: training augmentation or validation preprocessing.

    Parameters
    ----------
    path : str or PathLike
        The ``.rec`` file (its ``.idx`` must sit beside it).
    batch_size : int
        Images per batch on this worker.
    train : bool
        Training augmentation (shuffled random resized crop + flip) or validation (resize, centre crop).
    preprocessing : Preprocessing
        Sizes, crop bounds, mean/std, layout and dtype; default the reference's ImageNet values.
    shard_id, num_shards : int, optional
        This worker's part of the data; default Horovod's rank and size (0 and 1 without horovodrun).
    device : {'cpu', 'gpu'}
        Decode and augment on the CPU (works without a GPU) or decode with nvJPEG ('mixed') on the GPU.
    num_threads : int, optional
        DALI CPU threads; default the reference's 3, at most this worker's share of the cores
        (:func:`~resnet_gluon.runtime.default_data_threads`: they compete with MXNet's threads).
    prefetch : int
        Prefetch queue depth.
    seed : int
        Random seed of shuffling and augmentation (-1: random). Training epoch ``e`` uses ``seed + e``, so a
        resumed run (``set_epoch``) sees exactly the images and augmentations of an uninterrupted one.
    ctx : Context, optional
        Where batches are delivered; default where DALI puts them (``cpu(0)``, or the GPU for 'gpu').
    device_id : int, optional
        GPU to use with ``device='gpu'``; default Horovod's local rank.

    Notes
    -----
    A training pipeline is rebuilt at the start of each epoch, with that epoch's seed and the next shard
    (shards rotate over the workers across epochs, as DALI's readers do by default).
    """

    def __init__(self, path: PathLike, *, batch_size: int, train: bool,
                 preprocessing: Preprocessing = Preprocessing(), shard_id: Optional[int] = None,
                 num_shards: Optional[int] = None, device: str = "cpu", num_threads: Optional[int] = None,
                 prefetch: int = 2, seed: int = -1, ctx: Optional[mx.Context] = None,
                 device_id: Optional[int] = None):
        if device not in ("cpu", "gpu"):
            raise ValueError(f"device must be 'cpu' or 'gpu', got {device!r}")
        files, shard_id = self._open_shard(path, batch_size, shard_id, num_shards)
        self.files, self.train, self.preprocessing = files, train, preprocessing
        self.shard_id, self.device = shard_id, device
        if device == "gpu":
            device_id = dist.local_rank() if device_id is None else device_id
        num_threads = num_threads or default_data_threads()
        self._options = dict(num_threads=num_threads, prefetch_queue_depth=prefetch,
                             device_id=None if device == "cpu" else device_id)
        self.seed = seed if seed >= 0 else int(np.random.randint(0, 2 ** 31 - 1 - 10 ** 6))
        self.epoch = 0
        self._iter = None
        self._iter_epoch = None
        self.ctx = ctx

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration epoch ``epoch`` (0-based); ``fit`` calls it, so resumed runs line up."""
        self.epoch = epoch

    def _build(self, epoch: int):
        dali, fn, types, _ = _import_dali()
        p, files, train = self.preprocessing, self.files, self.train
        shard_id = (self.shard_id + epoch) % self.num_shards if train else self.shard_id
        decoder = "cpu" if self.device == "cpu" else "mixed"
        ops = "cpu" if self.device == "cpu" else "gpu"

        @dali.pipeline_def(batch_size=self.batch_size, seed=self.seed + (epoch if train else 0), **self._options)
        def pipeline():
            jpegs, labels = fn.readers.mxnet(path=[files.rec], index_path=[files.idx], shard_id=shard_id,
                                             num_shards=self.num_shards, random_shuffle=train,
                                             stick_to_shard=True, pad_last_batch=True, name="Reader")
            if train:
                images = fn.decoders.image_random_crop(jpegs, device=decoder, output_type=types.RGB,
                                                       random_area=list(p.area), random_aspect_ratio=list(p.aspect),
                                                       num_attempts=100)
                images = fn.resize(images, device=ops, resize_x=p.image_size, resize_y=p.image_size)
                mirror = fn.random.coin_flip(probability=p.flip)
            else:
                images = fn.decoders.image(jpegs, device=decoder, output_type=types.RGB)
                images = fn.resize(images, device=ops, resize_shorter=p.resize)
                mirror = 0
            images = fn.crop_mirror_normalize(
                images, device=ops, dtype=types.FLOAT16 if p.dtype == "float16" else types.FLOAT,
                output_layout=p.layout[1:], crop=(p.image_size, p.image_size), mean=list(p.mean), std=list(p.std),
                mirror=mirror)
            return images, labels.gpu() if ops == "gpu" else labels

        return pipeline()

    def _iterator(self, epoch: int):
        _, _, _, dali_mxnet = _import_dali()
        return dali_mxnet.DALIClassificationIterator(
            [self._build(epoch)], reader_name="Reader", data_layout=self.preprocessing.layout,
            last_batch_policy=dali_mxnet.LastBatchPolicy.PARTIAL, auto_reset=True)

    def __iter__(self) -> Iterator[Tuple[mx.nd.NDArray, mx.nd.NDArray]]:
        epoch = self.epoch if self.train else 0
        try:
            if self._iter is None or self._iter_epoch != epoch:
                self._iter = None  # release the previous epoch's pipeline first
                self._iter = self._iterator(epoch)
                self._iter_epoch = epoch
            yield from self._batches((b[0].data[0], b[0].label[0], b[0].pad) for b in self._iter)
        except RuntimeError as err:
            raise RuntimeError(self._explain(str(err))) from None
        if self.train:
            self.epoch = epoch + 1

    def _explain(self, message: str) -> str:
        """A short message naming the record DALI failed on (DALI reports its byte offset)."""
        where = ""
        found = re.search(r"at index (\d+)", message)
        if found:
            offset = found.group(1)
            with open(self.files.idx) as f:
                keys = [line.split("\t")[0] for line in f if line.split("\t")[1].strip() == offset]
            where = f" at record {keys[0] if keys else '?'} (byte {offset})"
        lines = [line.strip() for line in message.splitlines() if line.strip()]
        first = next((line for line in lines if line.startswith("Error")), lines[0] if lines else "")
        return (f"DALI failed reading {self.files.rec!r}{where}: {first}\nA corrupt image? "
                f"resnet_gluon.data.check_records({self.files.rec!r}) names every bad record; re-create the "
                "data set from intact images.")


class RecordIterPipeline(_Pipeline):
    """The same preprocessing as :class:`DALIPipeline` with MXNet's ``mx.io.ImageRecordIter`` (no DALI needed).

    Parameters are those of :class:`DALIPipeline` except ``device`` (always the CPU) and ``prefetch``
    (``prefetch_buffer`` batches). Only ``layout='NCHW'`` and float32 output are supported.
    """

    def __init__(self, path: PathLike, *, batch_size: int, train: bool,
                 preprocessing: Preprocessing = Preprocessing(), shard_id: Optional[int] = None,
                 num_shards: Optional[int] = None, num_threads: Optional[int] = None, prefetch: int = 4,
                 seed: int = 0, ctx: Optional[mx.Context] = None):
        p = preprocessing
        if p.layout != "NCHW" or p.dtype != "float32":
            raise ValueError("the 'mxnet' backend gives float32 'NCHW' batches only; use a DALI backend for others")
        files, shard_id = self._open_shard(path, batch_size, shard_id, num_shards)
        self.files, self.ctx = files, ctx
        common = dict(path_imgrec=files.rec, path_imgidx=files.idx, data_shape=(3, p.image_size, p.image_size),
                      batch_size=batch_size, part_index=shard_id, num_parts=self.num_shards,
                      preprocess_threads=num_threads or default_data_threads(), prefetch_buffer=prefetch,
                      seed=seed, round_batch=True,
                      mean_r=p.mean[0], mean_g=p.mean[1], mean_b=p.mean[2],
                      std_r=p.std[0], std_g=p.std[1], std_b=p.std[2])
        if train:
            common.update(shuffle=True, random_resized_crop=True, min_random_area=p.area[0],
                          max_random_area=p.area[1], min_aspect_ratio=p.aspect[0], max_aspect_ratio=p.aspect[1],
                          rand_mirror=p.flip > 0, inter_method=2)
        else:
            common.update(shuffle=False, resize=p.resize, rand_crop=False, inter_method=1)
        self._kwargs = common
        self._epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration epoch ``epoch`` (0-based; its shuffle seed is ``seed + epoch``)."""
        self._epoch = epoch

    def __iter__(self) -> Iterator[Tuple[mx.nd.NDArray, mx.nd.NDArray]]:
        # A new iterator each epoch: with round_batch, ImageRecordIter fills the last batch with the next
        # epoch's first images and then skips them, so a reused one would not show every image each epoch.
        kwargs = dict(self._kwargs, seed=self._kwargs["seed"] + self._epoch)
        self._epoch += 1
        batches = mx.io.ImageRecordIter(**kwargs)
        yield from self._batches((b.data[0], b.label[0], b.pad) for b in batches)


class SyntheticData(_Pipeline):
    """One random batch, repeated ``num_batches`` times per epoch (the reference's synthetic mode).

    Parameters
    ----------
    batch_size : int
        Images per batch.
    num_batches : int
        Batches per epoch.
    classes : int
        Labels are drawn from ``[0, classes)``.
    preprocessing : Preprocessing
        Image size, layout and dtype of the batch.
    ctx : Context, optional
        Where the batch lives; default ``mx.cpu()``.
    """

    def __init__(self, *, batch_size: int, num_batches: int = 100, classes: int = 1000,
                 preprocessing: Preprocessing = Preprocessing(), ctx: Optional[mx.Context] = None, seed: int = 0):
        if batch_size < 1 or num_batches < 1:
            raise ValueError(f"batch_size and num_batches must be >= 1, got {batch_size}, {num_batches}")
        super().__init__(batch_size * num_batches, batch_size)
        ctx = ctx or mx.cpu()
        self.ctx = ctx
        rng = np.random.RandomState(seed)  # its own generator: the caller's global seeds stay untouched
        self._data = mx.nd.array(rng.normal(size=preprocessing.data_shape(batch_size)), ctx=ctx,
                                 dtype=preprocessing.dtype)
        self._label = mx.nd.array(rng.randint(0, classes, size=batch_size), ctx=ctx)

    def __iter__(self) -> Iterator[Tuple[mx.nd.NDArray, mx.nd.NDArray]]:
        for _ in range(len(self)):
            yield self._data, self._label


def make_pipeline(backend: str, path: Optional[PathLike] = None, *, batch_size: int, train: bool,
                  preprocessing: Preprocessing = Preprocessing(), **kwargs) -> _Pipeline:
    """Build a pipeline by backend name: 'dali-cpu', 'dali-gpu', 'mxnet' or 'synthetic'.

    ``kwargs`` go to the chosen class (``shard_id``, ``num_shards``, ``num_threads``, ``seed``, ``ctx``, ...;
    for 'synthetic': ``num_batches`` and ``classes``).
    """
    if backend == "synthetic":
        return SyntheticData(batch_size=batch_size, preprocessing=preprocessing, **kwargs)
    if path is None:
        raise ValueError(f"backend {backend!r} reads a .rec file: pass its path")
    if backend in ("dali-cpu", "dali-gpu"):
        return DALIPipeline(path, batch_size=batch_size, train=train, preprocessing=preprocessing,
                            device=backend[len("dali-"):], **kwargs)
    if backend == "mxnet":
        return RecordIterPipeline(path, batch_size=batch_size, train=train, preprocessing=preprocessing, **kwargs)
    raise ValueError(f"unknown data backend {backend!r}; choose one of {', '.join(BACKENDS)}")


def imagenet(data_root: PathLike, *, batch_size: int, backend: str = "dali-cpu",
             preprocessing: Preprocessing = Preprocessing(), **kwargs) -> Tuple[_Pipeline, _Pipeline]:
    """The training and validation pipelines of a folder holding ``train.rec/.idx`` and ``val.rec/.idx``.

    Returns ``(train, val)``; ``kwargs`` go to :func:`make_pipeline` for both.
    """
    root = os.fspath(data_root)
    if not os.path.isdir(root):
        raise FileNotFoundError(f"data root {root!r} does not exist; it must hold train.rec/.idx and val.rec/.idx "
                                "(make them with 'resnet-gluon prepare')")
    train = make_pipeline(backend, os.path.join(root, "train.rec"), batch_size=batch_size, train=True,
                          preprocessing=preprocessing, **kwargs)
    val = make_pipeline(backend, os.path.join(root, "val.rec"), batch_size=batch_size, train=False,
                        preprocessing=preprocessing, **kwargs)
    return train, val
