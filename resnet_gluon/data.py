"""RecordIO data sets: preparation, checking, and the preprocessing settings shared by every pipeline.

A data set is a pair ``<name>.rec`` + ``<name>.idx`` written by MXNet's recordio (JPEG bytes with an
``IRHeader`` holding the float label), as the reference's ``im2rec`` writes them, plus ``<name>.lst``
(index, label, relative path) and, beside them, ``classes.json`` with the class names in label order.

Nothing here imports DALI or Horovod.
"""
from __future__ import annotations

import dataclasses
import gzip
import json
import os
import struct
from concurrent.futures import ThreadPoolExecutor
from typing import Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
from mxnet import recordio

__all__ = ["Preprocessing", "IMAGENET_MEAN", "IMAGENET_STD", "FASHION_MNIST_DIR", "FASHION_MNIST_CLASSES",
           "RecordFiles", "record_files", "write_records", "images_to_recordio", "fashion_mnist_to_recordio",
           "read_records", "rebuild_index", "check_records", "load_classes"]

PathLike = Union[str, os.PathLike]

#: The reference's normalisation, on the 0-255 scale, RGB order.
IMAGENET_MEAN = (123.68, 116.779, 103.939)
IMAGENET_STD = (58.393, 57.12, 57.375)
FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                         "Bag", "Ankle boot")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")


@dataclasses.dataclass(frozen=True)
class Preprocessing:
    """Image preprocessing of the training and validation pipelines (defaults: the reference's ImageNet values).

    Training: random resized crop to ``image_size`` (area fraction in ``area``, aspect ratio in ``aspect``),
    horizontal flip with probability ``flip``, then ``(x - mean) / std``.
    Validation: resize the shorter side to ``resize``, centre crop ``image_size``, then ``(x - mean) / std``.
    Output: ``dtype`` tensors in ``layout`` ('NCHW' or 'NHWC'), RGB.
    """

    image_size: int = 224
    resize: int = 256
    area: Tuple[float, float] = (0.05, 1.0)
    aspect: Tuple[float, float] = (3 / 4, 4 / 3)
    flip: float = 0.5
    mean: Tuple[float, float, float] = IMAGENET_MEAN
    std: Tuple[float, float, float] = IMAGENET_STD
    layout: str = "NCHW"
    dtype: str = "float32"

    def __post_init__(self):
        if self.image_size < 1 or self.resize < self.image_size:
            raise ValueError(f"need 1 <= image_size <= resize, got image_size={self.image_size}, resize={self.resize}")
        if not 0 < self.area[0] <= self.area[1] <= 1:
            raise ValueError(f"area must satisfy 0 < min <= max <= 1, got {self.area}")
        if not 0 < self.aspect[0] <= self.aspect[1]:
            raise ValueError(f"aspect must satisfy 0 < min <= max, got {self.aspect}")
        if self.layout not in ("NCHW", "NHWC"):
            raise ValueError(f"layout must be 'NCHW' or 'NHWC', got {self.layout!r}")
        if self.dtype not in ("float32", "float16"):
            raise ValueError(f"dtype must be 'float32' or 'float16', got {self.dtype!r}")

    @classmethod
    def for_size(cls, image_size: int, **kwargs) -> "Preprocessing":
        """Settings for another image size, keeping the reference's resize ratio (256/224)."""
        return cls(image_size=image_size, resize=kwargs.pop("resize", round(image_size * 256 / 224)), **kwargs)

    def validation_settings(self) -> dict:
        """The validation part (``image_size``, ``resize``, ``mean``, ``std``) as JSON-ready values (checkpoint records)."""
        return dict(image_size=self.image_size, resize=self.resize, mean=list(self.mean), std=list(self.std))

    @classmethod
    def from_validation_settings(cls, settings: dict) -> "Preprocessing":
        """The inverse of :meth:`validation_settings` (other fields at their defaults)."""
        return cls(image_size=int(settings["image_size"]), resize=int(settings["resize"]),
                   mean=tuple(settings["mean"]), std=tuple(settings["std"]))

    def data_shape(self, batch_size: int) -> Tuple[int, int, int, int]:
        """Shape of a batch of ``batch_size`` images in this layout."""
        s = self.image_size
        return (batch_size, 3, s, s) if self.layout == "NCHW" else (batch_size, s, s, 3)


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
                                "resnet_gluon.data.images_to_recordio or 'resnet-gluon prepare'")
    if not os.path.isfile(idx):
        raise FileNotFoundError(f"index {idx!r} for {rec!r} does not exist; rebuild it with "
                                f"resnet_gluon.data.rebuild_index({rec!r}) or 'resnet-gluon prepare --rebuild-index {rec}'")
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
                                 f"resnet_gluon.data.rebuild_index({rec!r})") from None
    if not offsets:
        raise ValueError(f"{idx!r} lists no records; is {rec!r} empty?")
    with open(rec, "rb") as f:
        for offset in (offsets[0], offsets[len(offsets) // 2], offsets[-1]):
            f.seek(offset)
            head = f.read(4)
            if offset >= size or len(head) < 4 or struct.unpack("<I", head)[0] != _MAGIC:
                raise ValueError(f"{idx!r} does not match {rec!r} (offset {offset} is not the start of a record); "
                                 f"rebuild the index with resnet_gluon.data.rebuild_index({rec!r})")


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
    tmp = idx + ".tmp"
    with open(tmp, "w") as out:
        out.writelines(f"{key}\t{off}\n" for key, off in enumerate(offsets))
    os.replace(tmp, idx)
    return idx


def write_records(prefix: PathLike, items: Iterable[Tuple[float, bytes, str]], *, classes: Sequence[str] = (),
                  overwrite: bool = False) -> RecordFiles:
    """Write ``(label, encoded_image, name)`` items as ``prefix.rec``/``.idx``/``.lst``, atomically.

    ``classes`` (names in label order), when given, goes to ``classes.json`` beside the files.
    Existing files are kept unless ``overwrite``: a ``FileExistsError`` names them.
    """
    prefix = os.fspath(prefix)
    final = [prefix + ext for ext in (".rec", ".idx", ".lst")]
    existing = [p for p in final if os.path.exists(p)]
    if existing and not overwrite:
        raise FileExistsError(f"{existing[0]} exists; remove it or pass overwrite=True")
    os.makedirs(os.path.dirname(os.path.abspath(prefix)), exist_ok=True)
    tmp = [p + ".tmp" for p in final]
    writer = recordio.MXIndexedRecordIO(tmp[1], tmp[0], "w")
    count = 0
    with open(tmp[2], "w") as lst:
        for i, (label, data, name) in enumerate(items):
            writer.write_idx(i, recordio.pack(recordio.IRHeader(0, float(label), i, 0), data))
            lst.write(f"{i}\t{float(label)}\t{name}\n")
            count += 1
    writer.close()
    if not count:
        for p in tmp:
            os.remove(p)
        raise ValueError(f"no images to write to {prefix}.rec")
    for t, f in zip(tmp, final):
        os.replace(t, f)
    if classes:
        _write_json(os.path.join(os.path.dirname(os.path.abspath(prefix)), "classes.json"), list(classes))
    return RecordFiles(final[0], final[1])


def _write_json(path: str, obj) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1)
    os.replace(tmp, path)


def load_classes(data_root: PathLike) -> Optional[List[str]]:
    """Class names in label order from ``classes.json`` in ``data_root`` (None if there is none)."""
    path = os.path.join(os.fspath(data_root), "classes.json")
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def _encode_file(path: str) -> bytes:
    """JPEG bytes of an image file: JPEGs pass through unchanged (after a decode check), others are re-encoded."""
    import cv2

    with open(path, "rb") as f:
        raw = f.read()
    image = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"{path!r} is not a readable image (corrupt or unsupported format); remove or replace it")
    if raw[:2] == b"\xff\xd8":
        return raw
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 95])
    if not ok:
        raise ValueError(f"could not re-encode {path!r} as JPEG")
    return encoded.tobytes()


def images_to_recordio(folder: PathLike, prefix: PathLike, *, num_threads: int = 4, shuffle: bool = False,
                       seed: int = 0, overwrite: bool = False) -> RecordFiles:
    """Pack an image-folder tree (one sub-folder per class) into ``prefix.rec``/``.idx``/``.lst``.

    Labels are the class sub-folders in sorted order (0, 1, ...); their names are written to
    ``classes.json`` beside the files. JPEG bytes are passed through unchanged; other formats are
    re-encoded as JPEG (quality 95). Every image is decoded once to reject corrupt files up front.

    Raises
    ------
    FileNotFoundError
        ``folder`` does not exist.
    ValueError
        ``folder`` has no class sub-folders, a class has no images, or an image cannot be decoded
        (the message names the file).
    """
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"image folder {folder!r} does not exist")
    classes = sorted(d for d in os.listdir(folder) if os.path.isdir(os.path.join(folder, d)))
    if not classes:
        raise ValueError(f"{folder!r} has no class sub-folders; expected <folder>/<class name>/<image files>")
    entries = []
    for label, name in enumerate(classes):
        files = sorted(f for f in os.listdir(os.path.join(folder, name)) if f.lower().endswith(IMAGE_EXTENSIONS))
        if not files:
            raise ValueError(f"class folder {os.path.join(folder, name)!r} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
        entries += [(label, os.path.join(name, f)) for f in files]
    if shuffle:
        np.random.RandomState(seed).shuffle(entries)
    with ThreadPoolExecutor(max(1, num_threads)) as pool:
        encoded = pool.map(lambda e: _encode_file(os.path.join(folder, e[1])), entries)
        return write_records(prefix, ((label, data, rel) for (label, rel), data in zip(entries, encoded)),
                             classes=classes, overwrite=overwrite)


def _read_idx_images(path: str) -> np.ndarray:
    with gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb") as f:
        magic, count = struct.unpack(">II", f.read(8))
        if magic == 2051:
            rows, cols = struct.unpack(">II", f.read(8))
            return np.frombuffer(f.read(), np.uint8).reshape(count, rows, cols)
        if magic == 2049:
            return np.frombuffer(f.read(), np.uint8)
    raise ValueError(f"{path!r} is not an IDX image or label file")


def _fashion_mnist_split(root: str, split: str) -> Tuple[np.ndarray, np.ndarray]:
    stem = "train" if split == "train" else "t10k"
    paths = []
    for kind in ("images-idx3-ubyte", "labels-idx1-ubyte"):
        candidates = [os.path.join(root, f"{stem}-{kind}{ext}") for ext in (".gz", "")]
        found = [p for p in candidates if os.path.isfile(p)]
        if not found:
            raise FileNotFoundError(f"Fashion-MNIST file {candidates[0]!r} not found; install the Debian package "
                                    "'dataset-fashion-mnist' (apt-get install dataset-fashion-mnist) or pass root=")
        paths.append(found[0])
    return _read_idx_images(paths[0]), _read_idx_images(paths[1])


def fashion_mnist_to_recordio(out_dir: PathLike, *, image_size: int = 32, root: PathLike = FASHION_MNIST_DIR,
                              train_limit: Optional[int] = None, val_limit: Optional[int] = None,
                              quality: int = 95, overwrite: bool = False,
                              num_threads: int = 2) -> Tuple[RecordFiles, RecordFiles]:
    """Convert the embedded Fashion-MNIST (Debian ``dataset-fashion-mnist``) to ``train`` and ``val`` RecordIO.

    Each 28x28 grayscale image becomes an RGB JPEG of ``image_size`` x ``image_size`` (bilinear resize);
    the 60,000 training images go to ``out_dir/train.rec`` and the 10,000 test images to ``out_dir/val.rec``,
    with ``classes.json``. ``train_limit``/``val_limit`` keep only the first images of a split. Existing files
    are reused when they hold the requested number of images; otherwise (or with ``overwrite``) rewritten.
    """
    import cv2

    out_dir = os.fspath(out_dir)
    result = []
    for split, limit in (("train", train_limit), ("val", val_limit)):
        prefix = os.path.join(out_dir, split)
        images, labels = _fashion_mnist_split(os.fspath(root), split)
        if limit is not None:
            images, labels = images[:limit], labels[:limit]
        if not overwrite and os.path.exists(prefix + ".rec") and os.path.exists(prefix + ".idx"):
            existing = record_files(prefix)
            if len(existing) == len(labels):
                result.append(existing)
                continue

        def encode(i: int) -> bytes:
            image = cv2.resize(images[i], (image_size, image_size), interpolation=cv2.INTER_LINEAR)
            ok, data = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_GRAY2BGR),
                                    [cv2.IMWRITE_JPEG_QUALITY, quality])
            return data.tobytes()

        with ThreadPoolExecutor(max(1, num_threads)) as pool:
            encoded = pool.map(encode, range(len(labels)), chunksize=256)
            result.append(write_records(prefix, ((labels[i], data, f"{split}/{i}") for i, data in enumerate(encoded)),
                                        classes=FASHION_MNIST_CLASSES, overwrite=True))
    return result[0], result[1]


def read_records(path: PathLike, positions: Optional[Sequence[int]] = None) -> Iterator[Tuple[float, bytes]]:
    """Yield ``(label, image_bytes)`` for every record in index order, or for the records at ``positions``
    (0-based places in the index, read directly)."""
    files = record_files(path)
    reader = recordio.MXIndexedRecordIO(files.idx, files.rec, "r")
    try:
        keys = reader.keys if positions is None else [reader.keys[i] for i in positions]
        for key in keys:
            header, data = recordio.unpack(reader.read_idx(key))
            label = header.label if np.isscalar(header.label) else header.label[0]
            yield float(label), data
    finally:
        reader.close()


def check_records(path: PathLike, *, classes: Optional[int] = None, decode: bool = True) -> int:
    """Check every record: labels are integers in ``[0, classes)`` and images decode. Returns the count.

    Raises
    ------
    ValueError
        Naming the first bad record (its key in the ``.idx``) and what is wrong with it.
    """
    import cv2

    files = record_files(path)
    count = 0
    for count, (label, data) in enumerate(read_records(files.rec), 1):
        key = count - 1
        if label != int(label) or label < 0 or (classes is not None and label >= classes):
            bound = f"[0, {classes})" if classes is not None else "the non-negative integers"
            raise ValueError(f"record {key} of {files.rec!r} has label {label}, outside {bound}")
        if decode and cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) is None:
            raise ValueError(f"record {key} of {files.rec!r} is not a decodable image (corrupt JPEG?); "
                             "re-create the data set from intact images")
    return count
