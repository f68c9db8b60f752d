"""RecordIO data sets: preparation, checking, and the preprocessing settings shared by every pipeline.

A data set is a pair ``<name>.rec`` + ``<name>.idx`` written by MXNet's recordio (JPEG bytes with an
``IRHeader`` holding the float label), as the reference's ``im2rec`` writes them, plus ``<name>.lst``
(index, label, relative path) and, beside them, ``classes.json`` with the class names in label order: one
list per folder (data root), shared by every split in it. Image folders are turned into such files by
:mod:`resnet_gluon.data.folders`; :mod:`resnet_gluon.data.images` decides which image bytes are stored as they are.

Nothing here imports DALI or Horovod.
"""
from __future__ import annotations

import dataclasses
import json
import mmap
import os
import struct
import unicodedata
from typing import Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np
from mxnet import recordio

from .._core.deprecation import renamed_argument
from .._core.files import PathLike, atomic_path, atomic_write_json, printable, short_list, temporary_name

__all__ = ["FASHION_MNIST_DIR", "FASHION_MNIST_CLASSES",
           "RecordFiles", "record_files", "RecordWriter", "write_records", "read_records", "read_labels",
           "RecordReader", "rebuild_index", "check_records", "load_classes", "num_classes", "check_classes",
           "save_classes", "list_name_problem"]


FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                         "Bag", "Ankle boot")


@dataclasses.dataclass(frozen=True)
class RecordFiles:
    """The files of one RecordIO data set."""

    rec: str
    idx: str

    def __len__(self) -> int:
        with open(self.idx) as f:
            return sum(1 for line in f if line.strip())


def record_files(path: PathLike) -> RecordFiles:
    """Check that a ``.rec`` file and its ``.idx`` exist and agree; ``path`` may omit the ``.rec`` suffix.

    Raises
    ------
    FileNotFoundError
        Naming the missing file and how to make it.
    ValueError
        When the ``.idx`` does not describe the ``.rec`` (offsets past its end, or not pointing at records).
    """
    path = os.fspath(path)
    rec = path if path.endswith(".rec") else path + ".rec"
    idx = rec[: -len(".rec")] + ".idx"
    if not os.path.isfile(rec):
        raise FileNotFoundError(f"RecordIO file {rec!r} does not exist; write it with "
                                "resnet_gluon.data.folders.images_to_recordio or 'resnet-gluon prepare'")
    if not os.path.isfile(idx):
        raise FileNotFoundError(f"index {idx!r} for {rec!r} does not exist; rebuild it with "
                                f"resnet_gluon.data.recordio.rebuild_index({rec!r}) or 'resnet-gluon prepare --rebuild-index {rec}'")
    _check_index(rec, idx)
    return RecordFiles(rec, idx)


_MAGIC = 0xCED7230A


def _check_index(rec: str, idx: str) -> None:
    size = os.path.getsize(rec)
    offsets = []
    with open(idx) as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                offsets.append(int(line.split("\t")[1]))
            except (IndexError, ValueError):
                raise ValueError(f"{idx!r} line {n} is not '<key>\\t<offset>'; rebuild it with "
                                 f"resnet_gluon.data.recordio.rebuild_index({rec!r})") from None
    if not offsets:
        raise ValueError(f"{idx!r} lists no records; is {rec!r} empty?")
    with open(rec, "rb") as f:
        for offset in (offsets[0], offsets[len(offsets) // 2], offsets[-1]):
            f.seek(offset)
            head = f.read(4)
            if offset >= size or len(head) < 4 or struct.unpack("<I", head)[0] != _MAGIC:
                raise ValueError(f"{idx!r} does not match {rec!r} (offset {offset} is not the start of a record); "
                                 f"rebuild the index with resnet_gluon.data.recordio.rebuild_index({rec!r})")


def rebuild_index(rec: PathLike) -> str:
    """Write ``<name>.idx`` for ``<name>.rec`` by scanning the records (keys 0, 1, 2, ... in file order).

    Raises
    ------
    ValueError
        When the file is not a RecordIO file or is truncated (names the byte offset).
    """
    rec = os.fspath(rec)
    idx = rec[: -len(".rec")] + ".idx" if rec.endswith(".rec") else rec + ".idx"
    offsets = []
    with open(rec, "rb") as f:
        offset = 0
        while True:
            head = f.read(8)
            if not head:
                break
            magic, lrec = struct.unpack("<II", head) if len(head) == 8 else (None, 0)
            if magic != _MAGIC:
                raise ValueError(f"{rec!r} is not a RecordIO file or is truncated (no record at byte {offset})")
            if lrec >> 29 in (0, 1):  # a whole record or the first part of a split one
                offsets.append(offset)
            padded = ((lrec & ((1 << 29) - 1)) + 3) // 4 * 4
            f.seek(padded, os.SEEK_CUR)
            offset += 8 + padded
    with atomic_path(idx) as tmp:
        with open(tmp, "w") as out:
            out.writelines(f"{key}\t{off}\n" for key, off in enumerate(offsets))
    return idx


class RecordWriter:
    """``prefix.rec``/``.idx``/``.lst`` written record by record under temporary names
    (:func:`~resnet_gluon._core.files.temporary_name`): :meth:`commit` renames them into place, :meth:`abort`
    removes them (so a failed write leaves nothing behind). :func:`write_records` and
    :func:`~resnet_gluon.data.folders.images_to_recordio` write through it.

    Parameters
    ----------
    prefix : str or PathLike
        The files' path without extension.
    overwrite : bool
        Replace existing files (on :meth:`commit`); otherwise they are an error.

    Raises
    ------
    FileExistsError
        When one of the files exists and ``overwrite`` is False.
    """

    def __init__(self, prefix: PathLike, *, overwrite: bool):
        self.prefix = os.fspath(prefix)
        self.final = [self.prefix + ext for ext in (".rec", ".idx", ".lst")]
        existing = [p for p in self.final if os.path.exists(p)]
        if existing and not overwrite:
            raise FileExistsError(f"{existing[0]} exists; remove it or pass overwrite=True (--overwrite)")
        os.makedirs(os.path.dirname(os.path.abspath(self.prefix)), exist_ok=True)
        self.tmp = [temporary_name(p) for p in self.final]
        self._writer = recordio.MXIndexedRecordIO(self.tmp[1], self.tmp[0], "w")
        self._lst = open(self.tmp[2], "w", encoding="utf-8")
        self.count = 0

    def write(self, label: float, data: bytes, name: str) -> None:
        """Append one record: ``label`` (float, the class index), ``data`` (the encoded image) and ``name``
        (its path in the ``.lst`` file).

        Raises
        ------
        ValueError
            When ``name`` cannot be a line of a ``.lst`` file (:func:`list_name_problem` says why).
        """
        problem = list_name_problem(name)
        if problem:
            raise ValueError(f"{printable(name)} {problem}, which a .lst file cannot hold; rename it")
        i = self.count
        self._writer.write_idx(i, recordio.pack(recordio.IRHeader(0, float(label), i, 0), data))
        self._lst.write(f"{i}\t{float(label)}\t{name}\n")
        self.count += 1

    def _close(self) -> None:
        if self._lst is not None:
            self._writer.close()
            self._lst.close()
            self._lst = None

    def abort(self) -> None:
        """Remove the temporary files."""
        self._close()
        for p in self.tmp:
            if os.path.exists(p):
                os.remove(p)

    def commit(self) -> RecordFiles:
        """Rename the files into place; returns them.

        Raises
        ------
        ValueError
            When no record was written (the temporary files are removed, nothing is left).
        """
        self._close()
        if not self.count:
            self.abort()
            raise ValueError(f"no images to write to {self.prefix}.rec")
        for t, f in zip(self.tmp, self.final):
            os.replace(t, f)
        return RecordFiles(self.final[0], self.final[1])


def list_name_problem(name: str) -> Optional[str]:
    """Why ``name`` cannot be a path in a ``.lst`` file (UTF-8 text, one ``index\tlabel\tpath`` line per
    record), as a phrase following it; None when it can.

    Refused: names that are not UTF-8 (Python keeps their bytes as surrogates, e.g. ``caf\\udce9.jpg`` from a
    Latin-1 archive), and control characters or line separators (a tab or line break would split the line).
    """
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return "has a name that is not valid UTF-8 (bytes of another encoding, such as Latin-1)"
    if any(unicodedata.category(ch) in ("Cc", "Zl", "Zp") for ch in name):
        return "has a tab, line break or other control character in its name"
    return None


def write_records(prefix: PathLike, items: Iterable[Tuple[float, bytes, str]], *,
                  class_names: Optional[Sequence[str]] = None, overwrite: bool = False,
                  classes: Optional[Sequence[str]] = None) -> RecordFiles:
    """Write ``(label, encoded_image, name)`` items as ``prefix.rec``/``.idx``/``.lst``, atomically.

    ``class_names`` (in label order), when given, goes to ``classes.json`` beside the files. Existing files
    are kept unless ``overwrite``: a ``FileExistsError`` names them, and a ``ValueError`` a ``classes.json``
    that lists other classes. An exception while ``items`` are produced leaves no files behind. ``classes`` is
    0.1's name of ``class_names`` (deprecated).
    """
    classes = renamed_argument("write_records", "classes", classes, "class_names", class_names)
    root = os.path.dirname(os.path.abspath(os.fspath(prefix)))
    if classes and not overwrite:
        check_classes(root, classes)
    writer = RecordWriter(prefix, overwrite=overwrite)
    try:
        for label, data, name in items:
            writer.write(label, data, name)
    except BaseException:
        writer.abort()
        raise
    files = writer.commit()
    if classes:
        save_classes(root, classes)
    return files


def load_classes(data_root: Optional[PathLike]) -> Optional[List[str]]:
    """Class names in label order from ``classes.json`` in ``data_root`` (None if there is none, or no root)."""
    if data_root is None:
        return None
    path = os.path.join(os.fspath(data_root), "classes.json")
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def num_classes(data_root: Optional[PathLike] = None, *, default: int = 1000) -> int:
    """The class count of ``classes.json`` in ``data_root``; ``default`` (ImageNet's 1000) without one."""
    names = load_classes(data_root)
    return len(names) if names else default


def check_classes(data_root: PathLike, class_names: Optional[Sequence[str]] = None, *,
                  classes: Optional[Sequence[str]] = None) -> None:
    """Check that ``classes.json`` in ``data_root``, if there is one, lists exactly ``class_names`` (``classes``:
    0.1's name of it, deprecated).

    Raises
    ------
    ValueError
        Naming both lists: one data root has one class list, and its record files use that numbering.
    """
    classes = renamed_argument("check_classes", "classes", classes, "class_names", class_names) or []
    existing = load_classes(data_root)
    if existing is not None and list(existing) != list(classes):
        path = os.path.join(os.fspath(data_root), "classes.json")
        raise ValueError(f"{path} lists the classes {short_list(existing)}, not {short_list(classes)}; the record "
                         "files there use its numbering (pass overwrite=True / --overwrite to replace it)")


def save_classes(data_root: PathLike, class_names: Optional[Sequence[str]] = None, *,
                 classes: Optional[Sequence[str]] = None) -> Optional[List[str]]:
    """Write ``class_names`` (``classes``: 0.1's name of it, deprecated) as ``classes.json`` in ``data_root``
    (atomically); returns the list it replaced, if it was another."""
    classes = renamed_argument("save_classes", "classes", classes, "class_names", class_names) or []
    existing = load_classes(data_root)
    if existing == list(classes):
        return None
    atomic_write_json(os.path.join(os.fspath(data_root), "classes.json"), list(classes))
    return existing


def _records(files: RecordFiles, positions: Optional[Sequence[int]] = None) -> Iterator[Tuple[int, float, bytes]]:
    """``(key, label, image_bytes)`` in index order or at ``positions`` (0-based places in the index)."""
    reader = recordio.MXIndexedRecordIO(files.idx, files.rec, "r")
    try:
        keys = reader.keys if positions is None else [reader.keys[i] for i in positions]
        for key in keys:
            header, data = recordio.unpack(reader.read_idx(key))
            label = header.label if np.isscalar(header.label) else header.label[0]
            yield key, float(label), data
    finally:
        reader.close()


def read_records(path: PathLike, positions: Optional[Sequence[int]] = None) -> Iterator[Tuple[float, bytes]]:
    """Yield ``(label, image_bytes)`` for every record in index order, or for the records at ``positions``
    (0-based places in the index, read directly)."""
    for _, label, data in _records(record_files(path), positions):
        yield label, data


class RecordReader:
    """Random access to the records of a ``.rec``/``.idx`` pair by their place in the index, without copies.

    The ``.rec`` is memory-mapped: ``reader[i]`` gives ``(label, image)`` of the ``i``-th record listed in the
    ``.idx``, the image bytes as a read-only ``uint8`` view (MXNet's reader copies each record twice through
    ctypes: about 0.2 ms per 100 KB image, measured, against a few microseconds here). A record that MXNet's
    writer split (it splits where the payload holds the RecordIO magic number) is read with MXNet's reader.
    The layout: a ``uint32`` magic, a ``uint32`` with the continuation flag (top 3 bits) and the length, then
    the payload: ``IRHeader`` (flag, label, id, id2: ``<IfQQ``), ``flag`` float32 labels when ``flag > 0``,
    and the image bytes (dmlc-core ``recordio.h``, ``mxnet.recordio``).
    """

    def __init__(self, path: PathLike):
        self.files = record_files(path)
        with open(self.files.idx) as f:
            rows = [line.split("\t") for line in f if line.strip()]
        self.keys = np.array([int(key) for key, _ in rows], np.int64)
        self.offsets = np.array([int(offset) for _, offset in rows], np.int64)
        with open(self.files.rec, "rb") as f:
            self._map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        self._bytes = np.frombuffer(self._map, np.uint8)
        self._mxnet = None

    def __len__(self) -> int:
        return len(self.offsets)

    def label(self, i: int) -> float:
        """The (first) label of record ``i``, from its header only."""
        start = int(self.offsets[i]) + 8
        flag, label = struct.unpack_from("<If", self._map, start)
        return label if flag == 0 else struct.unpack_from("<f", self._map, start + 24)[0]

    def __getitem__(self, i: int) -> Tuple[float, np.ndarray]:
        offset = int(self.offsets[i])
        length = struct.unpack_from("<I", self._map, offset + 4)[0]
        if length >> 29:  # a split record
            if self._mxnet is None:
                self._mxnet = recordio.MXIndexedRecordIO(self.files.idx, self.files.rec, "r")
            header, data = recordio.unpack(self._mxnet.read_idx(int(self.keys[i])))
            label = header.label if np.isscalar(header.label) else header.label[0]
            return float(label), np.frombuffer(data, np.uint8)
        flag = struct.unpack_from("<I", self._map, offset + 8)[0]
        return self.label(i), self._bytes[offset + 8 + 24 + 4 * flag: offset + 8 + length]


def read_labels(path: PathLike, positions: Optional[Sequence[int]] = None) -> np.ndarray:
    """Labels of every record in index order, or of the records at ``positions``, as float32 ``(N,)``.

    Reads only each record's header (:class:`RecordReader`), so it is fast on large files.
    """
    reader = RecordReader(path)
    places = range(len(reader)) if positions is None else positions
    return np.array([reader.label(int(i)) for i in places], np.float32)


def check_records(path: PathLike, *, classes: Optional[int] = None, decode: bool = True) -> int:
    """Check every record: labels are integers in ``[0, classes)`` and DALI and the other pipelines read the
    image alike (:func:`resnet_gluon.data.images.image_problem`: not a GIF, truncated JPEG, undecodable image or
    EXIF-rotated JPEG). Returns the number of records.

    Raises
    ------
    ValueError
        One line naming the first bad record (its key in the ``.idx``), what is wrong with it, and the keys
        of the other bad records.
    """
    from .images import image_problem

    files = record_files(path)
    bad, count = [], 0
    bound = f"[0, {classes})" if classes is not None else "the non-negative integers"
    for count, (key, label, data) in enumerate(_records(files), 1):
        if label != int(label) or label < 0 or (classes is not None and label >= classes):
            bad.append((key, f"has label {label}, outside {bound}"))
        elif decode:
            problem = image_problem(data)
            if problem:
                bad.append((key, problem))
    if bad:
        others = [str(key) for key, _ in bad[1:]]
        more = f"; {len(others)} more bad records: {', '.join(others[:10])}{', ...' if len(others) > 10 else ''}"
        raise ValueError(f"record {bad[0][0]} of {files.rec!r} {bad[0][1]}{more if others else ''}; re-create the "
                         "data set from intact images with resnet_gluon.data.folders.images_to_recordio or "
                         "'resnet-gluon prepare'")
    return count
