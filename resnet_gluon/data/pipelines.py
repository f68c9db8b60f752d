"""Input pipelines as Python objects: iterables of ``(data, label)`` MXNet NDArrays.

Every source here has the same interface, so ``fit`` and your own loops never see DALI types:

- :class:`DALIPipeline` — the reference's path: ``.rec/.idx`` records decoded by DALI on the CPU or on the
  GPU ('mixed'), augmented, and handed over through DALI's MXNet plugin.
- :class:`RecordIterPipeline` — the same augmentation with MXNet's own ``mx.io.ImageRecordIter`` (the
  reference's 'mxnet' backend), for machines without DALI and for comparison.
- :class:`SyntheticData` — one fixed random batch repeated, for benchmarks.

Iterating gives ``data`` of shape ``(N, 3, H, W)`` ('NCHW', float32 by default) normalised as
``(x - mean) / std`` on the 0-255 scale, and ``label`` of shape ``(N,)`` float32 class indices. ``N`` is the
batch size except for the last batch of a shard, which holds its remaining images, and the empty batches
(``N == 0``) that end a shard with fewer batches than the longest one. ``len(pipeline)`` is the number of
batches per epoch, the same on every shard; ``num_samples`` the images of all shards.

Order: a training epoch is a permutation of the whole file, a pure function of ``(seed, epoch)``, cut into
one contiguous part per shard; validation reads the file in order (:mod:`resnet_gluon.data.sharding`).

This module (with its private helper :mod:`resnet_gluon.data._dali_graph`, the DALI operator graphs) is the one
place that uses ``nvidia.dali``; it imports it when a DALI pipeline is built.
:func:`resnet_gluon._core.dist.import_horovod` imports it too, only to load it before Horovod's library.
"""
from __future__ import annotations

import math
import os
import re
import warnings
from typing import Iterator, Optional, Tuple

import mxnet as mx
import numpy as np

from . import _dali_graph
from .._core.files import PathLike
from .recordio import RecordReader, num_classes, record_files
from .preprocessing import Preprocessing
from .._core.runtime import default_context, default_data_threads, gpu_device_id
from .sharding import ShardSource, check_mixed, epoch_order, record_iter_part, resolve_shard, shard_positions

__all__ = ["DALIPipeline", "RecordIterPipeline", "SyntheticData", "make_pipeline", "imagenet", "BACKENDS"]

BACKENDS = ("dali-cpu", "dali-gpu", "mxnet", "synthetic")


class _Pipeline:
    """What the pipelines share: the epoch length, identical on every shard, and trimming padded batches.

    Shards differ in size by at most one image and may be smaller than a batch. So that every Horovod rank
    runs the same number of steps, every shard gives ``ceil(ceil(num_samples / num_shards) / batch_size)``
    batches; a shard that runs out first ends its epoch with empty batches (``data.shape[0] == 0``, the
    trailing shape of a full one), which ``fit`` and the ``Trainer`` handle. No image is dropped or repeated.
    """

    ctx: Optional[mx.Context] = None
    preprocessing: Preprocessing = Preprocessing()
    train: bool = True  # training batches are preprocessing.crop_size(train=True) pixels on a side

    def __init__(self, num_samples: int, batch_size: int, num_shards: int = 1):
        self.num_samples = num_samples
        self.batch_size = batch_size
        self.num_shards = num_shards

    def __len__(self) -> int:
        return math.ceil(math.ceil(self.num_samples / self.num_shards) / self.batch_size)

    def _open_shard(self, path: PathLike, batch_size: int, shard_id: Optional[int], num_shards: Optional[int]):
        """Check the ``.rec``/``.idx`` pair and the shard, and set the epoch bookkeeping; returns (files, shard_id)."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        files = record_files(path)
        shard_id, num_shards = resolve_shard(shard_id, num_shards)
        _Pipeline.__init__(self, len(files), batch_size, num_shards)
        return files, shard_id

    def _empty(self, ctx: mx.Context) -> Tuple[mx.nd.NDArray, mx.nd.NDArray]:
        """An empty batch: data of shape ``(0,) + (3, H, W)`` (or ``(H, W, 3)``) and labels of shape ``(0,)``."""
        p = self.preprocessing
        data = mx.nd.zeros(p.data_shape(1, train=self.train), ctx=ctx, dtype=p.dtype)[:0]
        return data, mx.nd.zeros((1,), ctx=ctx)[:0]

    def _batches(self, batches, ctx: mx.Context):
        """Yield ``(data, label)`` from ``(data, label, pad)``, trimmed, then empty ones up to ``len(self)``."""
        n = 0
        for data, label, pad in batches:
            if pad:
                data, label = data[: data.shape[0] - pad], label[: label.shape[0] - pad]
            if self.ctx is not None and data.context != self.ctx:
                data, label = data.as_in_context(self.ctx), label.as_in_context(self.ctx)
            n += 1
            yield data, label
        if n < len(self):
            empty = self._empty(self.ctx or ctx)
            for _ in range(len(self) - n):
                yield empty


class DALIPipeline(_Pipeline):
    """A DALI pipeline over a ``.rec``/``.idx`` pair: training augmentation or validation preprocessing.

    Parameters
    ----------
    path : str or PathLike
        The ``.rec`` file (its ``.idx`` must sit beside it).
    batch_size : int
        Images per batch on this worker (a shard may hold fewer: it then gives one partial batch).
    train : bool
        Training augmentation (random resized crop, the preprocessing's ``auto_augment`` policy, flip and,
        after normalisation, ``random_erasing`` when set; a fresh global order each epoch) or validation
        (resize, centre crop, file order).
    preprocessing : Preprocessing
        Sizes (training crops ``train_image_size``, validation ``image_size``; see
        :meth:`~resnet_gluon.data.preprocessing.Preprocessing.crop_size`), crop bounds, mean/std, layout, dtype and
        augmentation;
        default the reference's ImageNet values.
    shard_id, num_shards : int, optional
        This worker's part of the data; default Horovod's rank and size (0 and 1 without horovodrun).
    device : {'cpu', 'gpu'}
        Decode and augment on the CPU (works without a GPU) or decode with nvJPEG ('mixed') on the GPU.
    num_threads : int, optional
        DALI CPU threads; default the reference's 3, at most this worker's share of the cores
        (:func:`~resnet_gluon._core.runtime.default_data_threads`: they compete with MXNet's threads).
    prefetch : int
        Prefetch queue depth.
    seed : int
        Random seed of the order and the augmentation, the same on every worker (-1: random, one shard only).
        Training epoch ``e`` reads the records in ``epoch_order(n, seed=seed, epoch=e)`` and augments with a
        DALI seed drawn from ``(seed, e, shard_id)`` (every random operator, auto-augment's and erasing's too,
        is seeded from it), so a resumed run (``set_epoch``) sees exactly the images
        and augmentations of an uninterrupted one, and workers draw different crops.
    ctx : Context, optional
        Where batches are delivered; default where DALI puts them (``cpu(0)``, or the GPU for 'gpu').
    device_id : int, optional
        GPU to use with ``device='gpu'``; default :func:`~resnet_gluon._core.runtime.gpu_device_id` (the local rank).

    Notes
    -----
    The records are read by the pipeline's ``fn.external_source`` in an order this class sets, rather than by
    DALI's ``fn.readers.mxnet``: that reader follows the file order (it sorts the ``.idx`` offsets), shuffles
    only inside a buffer of about 1,000 records and gives each shard a contiguous part of the file, so a
    class-sorted file would give near single-class batches and class-disjoint shards. A training pipeline is
    rebuilt at the start of each epoch, with that epoch's order and seed.

    Raises
    ------
    ImportError
        Without NVIDIA DALI and its MXNet plugin (the message names the install step).
    FileNotFoundError
        For a missing ``.rec`` or ``.idx`` file.
    ValueError
        For ``batch_size < 1``, a ``device`` other than 'cpu' or 'gpu', a ``shard_id`` outside
        ``[0, num_shards)``, or a random ``seed`` (< 0) with several shards.
    """

    def __init__(self, path: PathLike, *, batch_size: int, train: bool,
                 preprocessing: Preprocessing = Preprocessing(), shard_id: Optional[int] = None,
                 num_shards: Optional[int] = None, device: str = "cpu", num_threads: Optional[int] = None,
                 prefetch: int = 2, seed: int = 0, ctx: Optional[mx.Context] = None,
                 device_id: Optional[int] = None):
        if device not in ("cpu", "gpu"):
            raise ValueError(f"device must be 'cpu' or 'gpu', got {device!r}")
        files, shard_id = self._open_shard(path, batch_size, shard_id, num_shards)
        if seed < 0 and self.num_shards > 1:
            raise ValueError(f"seed={seed} (random) with {self.num_shards} shards: every shard must read the same "
                             "epoch order; pass the same seed >= 0 on every worker")
        self.files, self.train, self.preprocessing = files, train, preprocessing
        self.shard_id, self.device = shard_id, device
        if device == "gpu":
            device_id = gpu_device_id() if device_id is None else device_id
        num_threads = num_threads or default_data_threads()
        self._options = dict(num_threads=num_threads, prefetch_queue_depth=prefetch,
                             device_id=None if device == "cpu" else device_id)
        self._out_ctx = mx.cpu() if device == "cpu" else mx.gpu(device_id)
        self.seed = seed if seed >= 0 else int(np.random.randint(0, 2 ** 31 - 1 - 10 ** 6))
        self.epoch = 0
        self._iter = None
        self._source = self._reader = None
        self.ctx = ctx

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration epoch ``epoch`` (0-based); ``fit`` calls it, so resumed runs line up."""
        self.epoch = epoch

    def positions(self, epoch: int = 0) -> np.ndarray:
        """Places in the ``.idx`` of the records this shard reads in ``epoch``, in reading order."""
        order = epoch_order(self.num_samples, seed=self.seed, epoch=epoch) if self.train else None
        return shard_positions(self.num_samples, self.shard_id, self.num_shards, order)

    def _inputs(self, fn, types, positions: np.ndarray):
        """The graph's ``(encoded images, labels)`` nodes: the records at ``positions``, in that order."""
        if self._reader is None:
            self._reader = RecordReader(self.files.rec)
        self._source = ShardSource(self._reader, positions, self.batch_size)
        return fn.external_source(source=self._source, num_outputs=2, batch=True, batch_info=True,
                                  dtype=[types.UINT8, types.FLOAT])

    def _build(self, epoch: int, positions: np.ndarray):
        dali, fn, types, _ = _dali_graph.import_dali()
        p, train = self.preprocessing, self.train
        seed = int(np.random.SeedSequence([self.seed, epoch, self.shard_id]).generate_state(1)[0] >> 1)

        @dali.pipeline_def(batch_size=self.batch_size, seed=seed,
                           enable_conditionals=_dali_graph.needs_conditionals(p, train=train), **self._options)
        def pipeline():
            jpegs, labels = self._inputs(fn, types, positions)
            return _dali_graph.preprocess(jpegs, labels, p, train=train, device=self.device)

        return pipeline()

    def _iterator(self, epoch: int, positions: np.ndarray):
        _, _, _, dali_mxnet = _dali_graph.import_dali()
        return dali_mxnet.DALIClassificationIterator([self._build(epoch, positions)], size=-1,
                                                     data_layout=self.preprocessing.layout, auto_reset=True)

    def __iter__(self) -> Iterator[Tuple[mx.nd.NDArray, mx.nd.NDArray]]:
        epoch = self.epoch if self.train else 0
        positions = self.positions(epoch)
        iterator, self._iter = self._iter, None  # an epoch left half-way is not continued
        if len(positions):
            try:
                if iterator is None or self.train:
                    iterator = None  # release the previous epoch's pipeline first
                    iterator = self._iterator(epoch, positions)
                yield from self._batches(((b[0].data[0], b[0].label[0], b[0].pad) for b in iterator), self._out_ctx)
            except RuntimeError as err:
                raise RuntimeError(self._explain(str(err))) from None
            if not self.train:
                self._iter = iterator  # the same batches next time (DALI's iterator has reset itself)
        else:
            yield from self._batches((), self._out_ctx)  # an empty shard: only empty batches
        if self.train:
            self.epoch = epoch + 1

    def _explain(self, message: str) -> str:
        """One line naming the record DALI failed on (the first bad one among those just read) and why."""
        from .images import image_problem

        lines = [line.strip() for line in message.splitlines() if line.strip()]
        first = next((i for i, line in enumerate(lines) if line.startswith("Error")), 0)
        # DALI's "Error when executing <operator>, encountered:" line, then "[file:line] <the cause>"
        reason = " ".join([*lines[first:first + 1], *(re.sub(r"^\[[^]]*\] ", "", line) for line in
                                                      lines[first + 1:first + 2] if line.startswith("["))])
        reason = reason or "no message"
        where = ""
        if self._source is not None:
            reader = self._source.reader
            for i in (int(q) for chunk in self._source.served for q in chunk):
                problem = image_problem(reader[i][1].tobytes())
                if problem:
                    where, reason = f" at record {reader.keys[i]} (byte {reader.offsets[i]})", problem
                    break
        return (f"DALI failed reading {self.files.rec!r}{where}: {reason}; resnet_gluon.data.recordio.check_records("
                f"{self.files.rec!r}) names every bad record: re-create the data set from intact images")


class RecordIterPipeline(_Pipeline):
    """The same preprocessing as :class:`DALIPipeline` with MXNet's ``mx.io.ImageRecordIter`` (no DALI needed).

    Parameters are those of :class:`DALIPipeline` except ``device`` (always the CPU) and ``prefetch``
    (``prefetch_buffer`` batches). Only ``layout='NCHW'`` and float32 3-channel output are supported.

    Notes
    -----
    Order: ``ImageRecordIter`` gives each shard a contiguous part of the file (``ceil(n / num_shards)``
    records) and, for training, shuffles that part afresh each epoch (seed ``seed + epoch``). With one shard
    that is a global order like :class:`DALIPipeline`'s; with several it relies on a shuffled file, so a
    class-sorted one is refused for training (a ``ValueError`` saying how to fix it).

    Raises
    ------
    FileNotFoundError
        For a missing ``.rec`` or ``.idx`` file.
    ValueError
        For a ``preprocessing`` other than float32 'NCHW' or with ``auto_augment``/``random_erasing``
        (DALI backends only), ``batch_size < 1``, a ``shard_id`` outside ``[0, num_shards)``, or a class-sorted
        file for training with several shards.
    """

    def __init__(self, path: PathLike, *, batch_size: int, train: bool,
                 preprocessing: Preprocessing = Preprocessing(), shard_id: Optional[int] = None,
                 num_shards: Optional[int] = None, num_threads: Optional[int] = None, prefetch: int = 4,
                 seed: int = 0, ctx: Optional[mx.Context] = None):
        p = preprocessing
        if p.layout != "NCHW" or p.dtype != "float32" or p.pad_output:
            raise ValueError("the 'mxnet' backend gives float32 'NCHW' batches only; use a DALI backend for others")
        if train and p.augments:
            raise ValueError("the 'mxnet' backend has no auto_augment or random_erasing; use a DALI backend "
                             "('dali-cpu', 'dali-gpu') for them, or switch them off (--auto-augment none "
                             "--random-erasing 0; auto_augment='none', random_erasing=0)")
        files, shard_id = self._open_shard(path, batch_size, shard_id, num_shards)
        if train and self.num_shards > 1:
            check_mixed(files, self.num_shards)
        self.files, self.ctx, self.preprocessing, self.train = files, ctx, preprocessing, train
        size = p.crop_size(train=train)
        self.part_size = record_iter_part(self.num_samples, shard_id, self.num_shards)
        # ImageRecordIter refuses a part much smaller than its batch; such a part is one batch anyway.
        common = dict(path_imgrec=files.rec, path_imgidx=files.idx, data_shape=(3, size, size),
                      batch_size=min(batch_size, max(1, self.part_size)), part_index=shard_id,
                      num_parts=self.num_shards, preprocess_threads=num_threads or default_data_threads(),
                      prefetch_buffer=prefetch, seed=seed, round_batch=True,
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
        batches = mx.io.ImageRecordIter(**kwargs) if self.part_size else ()  # an empty part: only empty batches
        yield from self._batches(((b.data[0], b.label[0], b.pad) for b in batches), mx.cpu())


class SyntheticData(_Pipeline):
    """One random batch, repeated ``num_batches`` times per epoch (the reference's synthetic mode): no
    augmentation of any kind (crop, flip, ``auto_augment``, ``random_erasing``) is applied to it.

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
    train : bool
        Training batches (``preprocessing.crop_size(train=True)`` on a side) or validation ones (``image_size``).
    ctx : Context, optional
        Where the batch lives; default ``mx.cpu()``.

    Raises
    ------
    ValueError
        For ``batch_size`` or ``num_batches`` below 1.
    """

    def __init__(self, *, batch_size: int, num_batches: int = 100, classes: int = 1000,
                 preprocessing: Preprocessing = Preprocessing(), ctx: Optional[mx.Context] = None, seed: int = 0,
                 train: bool = True):
        if batch_size < 1 or num_batches < 1:
            raise ValueError(f"batch_size and num_batches must be >= 1, got {batch_size}, {num_batches}")
        if train and preprocessing.augments:
            warnings.warn("synthetic data is random tensors, made once: its batches get no auto_augment or "
                          "random_erasing (they measure the network and the step, not the pipeline)", stacklevel=3)
        super().__init__(batch_size * num_batches, batch_size)
        ctx = ctx or mx.cpu()
        self.ctx, self.preprocessing, self.train = ctx, preprocessing, train
        rng = np.random.RandomState(seed)  # its own generator: the caller's global seeds stay untouched
        self._data = mx.nd.array(rng.normal(size=preprocessing.data_shape(batch_size, train=train)), ctx=ctx,
                                 dtype=preprocessing.dtype)
        self._label = mx.nd.array(rng.randint(0, classes, size=batch_size), ctx=ctx)

    def __iter__(self) -> Iterator[Tuple[mx.nd.NDArray, mx.nd.NDArray]]:
        for _ in range(len(self)):
            yield self._data, self._label


def make_pipeline(backend: str, path: Optional[PathLike] = None, *, batch_size: int, train: bool,
                  preprocessing: Preprocessing = Preprocessing(), **kwargs) -> _Pipeline:
    """Build a pipeline by backend name ('dali-cpu', 'dali-gpu', 'mxnet', 'synthetic'); ``kwargs`` go to the chosen
    class (``shard_id``, ``num_shards``, ``num_threads``, ``seed``, ``ctx``; 'synthetic': ``num_batches``, ``classes``).

    Raises
    ------
    ValueError
        For an unknown ``backend``, or no ``path`` for a backend that reads a ``.rec`` file; and as the
        chosen class (:class:`DALIPipeline`, :class:`RecordIterPipeline`, :class:`SyntheticData`).
    """
    if backend == "synthetic":
        return SyntheticData(batch_size=batch_size, preprocessing=preprocessing, train=train, **kwargs)
    if path is None:
        raise ValueError(f"backend {backend!r} reads a .rec file: pass its path")
    if backend in ("dali-cpu", "dali-gpu"):
        return DALIPipeline(path, batch_size=batch_size, train=train, preprocessing=preprocessing,
                            device=backend[len("dali-"):], **kwargs)
    if backend == "mxnet":
        return RecordIterPipeline(path, batch_size=batch_size, train=train, preprocessing=preprocessing, **kwargs)
    raise ValueError(f"unknown data backend {backend!r}; choose one of {', '.join(BACKENDS)}")


def imagenet(data_root: Optional[PathLike] = None, *, batch_size: int, backend: str = "dali-cpu",
             preprocessing: Preprocessing = Preprocessing(), classes: Optional[int] = None, num_batches: int = 20,
             **kwargs) -> Tuple[_Pipeline, _Pipeline]:
    """``(train, val)`` pipelines of the folder ``data_root`` holding ``train.rec/.idx`` and ``val.rec/.idx``.

    ``kwargs`` go to :func:`make_pipeline` for both (``num_threads``, ``seed``, ``shard_id``, ...). With
    ``backend='synthetic'`` no file is read (``data_root`` may be None): one random batch on ``ctx`` (default
    this worker's device), ``num_batches`` an epoch, labels in ``[0, classes)`` (default: the class count of
    ``classes.json`` in ``data_root``, else 1000); ``seed`` applies, the options of file readers
    (``num_threads``, ``shard_id``, ``num_shards``) are ignored, and any other option is an error.

    Raises
    ------
    FileNotFoundError
        ``data_root`` missing (for a backend that reads files) or not a folder.
    TypeError
        An option synthetic data does not take.
    """
    if backend == "synthetic":
        unknown = sorted(set(kwargs) - {"seed", "ctx", "num_threads", "shard_id", "num_shards"})
        if unknown:
            raise TypeError(f"synthetic data takes no option {', '.join(unknown)}")
        return tuple(SyntheticData(batch_size=batch_size, classes=classes or num_classes(data_root),
                                   num_batches=num_batches, preprocessing=preprocessing, seed=kwargs.get("seed") or 0,
                                   ctx=kwargs.get("ctx") or default_context(), train=train)
                     for train in (True, False))
    if data_root is None:
        raise FileNotFoundError(f"data backend {backend!r} reads train.rec/.idx and val.rec/.idx: give their folder "
                                "as data_root (--data-root; make them with 'resnet-gluon prepare')")
    root = os.fspath(data_root)
    if not os.path.isdir(root):
        raise FileNotFoundError(f"data root {root!r} does not exist; it must hold train.rec/.idx and val.rec/.idx "
                                "(make them with 'resnet-gluon prepare')")
    return tuple(make_pipeline(backend, os.path.join(root, f"{split}.rec"), batch_size=batch_size, train=split == "train",
                               preprocessing=preprocessing, **kwargs) for split in ("train", "val"))
