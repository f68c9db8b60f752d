"""The embedded Fashion-MNIST (Debian package ``dataset-fashion-mnist``) as ``train`` and ``val`` RecordIO."""
from __future__ import annotations

import gzip
import os
import struct
from concurrent.futures import ThreadPoolExecutor
from typing import Optional, Tuple

import numpy as np

from .._core.files import PathLike
from .recordio import FASHION_MNIST_CLASSES, FASHION_MNIST_DIR, RecordFiles, record_files, write_records

__all__ = ["fashion_mnist_to_recordio", "load_split"]


def _read_idx_images(path: str) -> np.ndarray:
    with gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb") as f:
        magic, count = struct.unpack(">II", f.read(8))
        if magic == 2051:
            rows, cols = struct.unpack(">II", f.read(8))
            return np.frombuffer(f.read(), np.uint8).reshape(count, rows, cols)
        if magic == 2049:
            return np.frombuffer(f.read(), np.uint8)
    raise ValueError(f"{path!r} is not an IDX image or label file")


def load_split(root: str = FASHION_MNIST_DIR, split: str = "train") -> Tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST images ``(N, 28, 28)`` uint8 and labels ``(N,)`` uint8 of ``split`` ('train': 60,000;
    'val'/'test': the 10,000 test images) from the IDX files in ``root`` (gzipped or not).

    Raises
    ------
    FileNotFoundError
        Naming the missing file and the Debian package that provides it.
    """
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
        images, labels = load_split(os.fspath(root), split)
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
                                        class_names=FASHION_MNIST_CLASSES, overwrite=True))
    return result[0], result[1]
