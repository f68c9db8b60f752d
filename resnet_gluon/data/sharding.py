"""Which records each worker reads, in which order, each epoch: the order and sharding arithmetic of the
pipelines in :mod:`resnet_gluon.data.pipelines`, and the record source they feed to DALI's ``external_source``.

A training epoch is a permutation of the whole file, a pure function of ``(seed, epoch)`` (:func:`epoch_order`),
cut into one contiguous part per shard (:func:`shard_positions`), so it does not depend on how the ``.rec`` was
written (a class-sorted file trains like a shuffled one), every shard sees every class every epoch, and a
resumed run replays the same images. Validation reads the file in order. MXNet's ``ImageRecordIter`` splits a
file its own way (:func:`record_iter_part`) and needs a shuffled file for several training shards
(:func:`check_mixed`).
"""
from __future__ import annotations

import collections
import math
from typing import List, Optional, Tuple

import numpy as np

from .._core import dist
from .recordio import RecordFiles, RecordReader, read_labels

__all__ = ["epoch_order", "shard_positions", "resolve_shard", "record_iter_part", "check_mixed", "ShardSource"]


def epoch_order(num_samples: int, *, seed: int, epoch: int) -> np.ndarray:
    """The records of training epoch ``epoch`` in the order they are read: a permutation of
    ``0 .. num_samples - 1`` (places in the ``.idx``), a pure function of ``(seed, epoch)``."""
    return np.random.default_rng([seed, epoch]).permutation(num_samples)


def shard_positions(num_samples: int, shard_id: int, num_shards: int,
                    order: Optional[np.ndarray] = None) -> np.ndarray:
    """Shard ``shard_id``'s part of ``order`` (default file order): contiguous, sizes differ by at most one,
    possibly empty when there are fewer records than shards."""
    return np.array_split(np.arange(num_samples) if order is None else order, num_shards)[shard_id]


def resolve_shard(shard_id: Optional[int], num_shards: Optional[int]) -> Tuple[int, int]:
    """``(shard_id, num_shards)``, each defaulting to Horovod's rank and size (0 and 1 without horovodrun).

    Raises
    ------
    ValueError
        When ``shard_id`` is not in ``[0, num_shards)``.
    """
    num_shards = dist.size() if num_shards is None else num_shards
    shard_id = dist.rank() if shard_id is None else shard_id
    if not 0 <= shard_id < num_shards:
        raise ValueError(f"shard_id must be in [0, {num_shards}), got {shard_id}")
    return shard_id, num_shards


def record_iter_part(num_samples: int, part: int, parts: int) -> int:
    """Records of part ``part`` of ``parts`` as ``ImageRecordIter`` splits a file (dmlc-core's
    ``IndexedRecordIOSplitter``: contiguous parts of ``ceil(n / parts)`` records, the last ones shorter or empty)."""
    step = math.ceil(num_samples / parts)
    return max(0, min((part + 1) * step, num_samples) - min(part * step, num_samples))


def check_mixed(files: RecordFiles, num_shards: int, samples: int = 4096) -> None:
    """Refuse a class-sorted file for several ``ImageRecordIter`` training shards (each would see some classes).

    Reads the labels of up to ``samples`` records spread over the file: in a shuffled file neighbours share
    a label about as often as two random records do (the sum of squared class shares); in a sorted one
    almost always.

    Raises
    ------
    ValueError
        For a file ordered by class, saying how to fix it.
    """
    n = len(files)
    labels = read_labels(files.rec, np.unique(np.linspace(0, n - 1, min(n, samples)).astype(np.int64)))
    if len(labels) < 3:
        return
    same = float(np.mean(labels[1:] == labels[:-1]))
    chance = float(np.sum((np.unique(labels, return_counts=True)[1] / len(labels)) ** 2))
    if same > chance + 0.25:
        raise ValueError(f"{files.rec!r} is ordered by class ({same:.0%} of neighbouring records share a label, "
                         f"{chance:.0%} by chance) and mx.io.ImageRecordIter gives each of the {num_shards} shards a "
                         "contiguous part of the file, so each would train on some classes only; re-create it "
                         "shuffled ('resnet-gluon prepare' shuffles by default) or use a DALI backend, which reads "
                         "a fresh global order every epoch")


class ShardSource:
    """DALI ``external_source`` callback: the encoded images and labels of ``positions`` (places in the
    ``.idx``), batch by batch; StopIteration after the last one.

    ``served`` keeps the latest batches' positions, so that a decoding failure can name the bad record.
    """

    def __init__(self, reader: RecordReader, positions: np.ndarray, batch_size: int):
        self.reader, self.positions, self.batch_size = reader, positions, batch_size
        self.served = collections.deque(maxlen=8)

    def __call__(self, info) -> Tuple[List[np.ndarray], List[np.ndarray]]:
        start = info.iteration * self.batch_size
        chunk = self.positions[start:start + self.batch_size]
        if not len(chunk):
            raise StopIteration
        records = [self.reader[int(i)] for i in chunk]
        self.served.append(chunk)
        return [image for _, image in records], [np.array([label], np.float32) for label, _ in records]
