"""Image loading and the CPU validation transform: what the validation pipelines do, for single images.

:func:`load_image` decodes image files, encoded bytes or arrays with OpenCV into RGB; :func:`preprocess` applies
the validation preprocessing of :class:`Preprocessing` (resize the shorter side to ``resize``, centre crop
``image_size``, ``(x - mean) / std``), giving float32 ``(N, 3, H, W)`` batches that match DALI's validation
output to within interpolation rounding. Nothing here imports Horovod or DALI.
"""
from __future__ import annotations

import os
from typing import Optional, Sequence, Union

import numpy as np

from .data import Preprocessing

__all__ = ["Preprocessing", "ImageLike", "load_image", "preprocess"]

ImageLike = Union[str, os.PathLike, bytes, np.ndarray]


def _cv2():
    import cv2  # opencv-python; imported late so that ``import resnet_gluon`` stays light

    return cv2


def load_image(image: ImageLike, *, name: Optional[str] = None) -> np.ndarray:
    """Decode an image file, encoded bytes or an array into an RGB ``uint8`` array ``(H, W, 3)``.

    Grayscale images are repeated over three channels, the alpha channel of RGBA/BGRA images is dropped,
    and 16-bit images are scaled to 8 bits. Arrays are taken as RGB: ``(H, W)``, ``(H, W, 1)``,
    ``(H, W, 3)`` or ``(H, W, 4)``, ``uint8`` (0-255) or float (0-255).

    Raises
    ------
    FileNotFoundError
        A path that does not exist.
    ValueError
        Bytes or a file that OpenCV cannot decode (not an image, truncated or corrupt), or an array of another
        shape.
    """
    cv2 = _cv2()
    if isinstance(image, np.ndarray):
        array = image
        if array.ndim == 2:
            array = array[:, :, None]
        if array.ndim != 3 or array.shape[2] not in (1, 3, 4) or 0 in array.shape:
            raise ValueError(f"{name or 'image array'} has shape {image.shape}; expected (H, W), (H, W, 1), "
                             "(H, W, 3) RGB or (H, W, 4) RGBA")
        if array.dtype != np.uint8:
            array = np.clip(np.rint(array.astype(np.float32)), 0, 255).astype(np.uint8)
        if array.shape[2] == 1:
            array = np.repeat(array, 3, axis=2)
        return np.ascontiguousarray(array[:, :, :3])
    if isinstance(image, (bytes, bytearray, memoryview)):
        encoded = np.frombuffer(image, np.uint8)
        name = name or "image bytes"
    else:
        name = name or os.fspath(image)
        if not os.path.isfile(image):
            raise FileNotFoundError(f"no image file {name!r}")
        encoded = np.fromfile(image, np.uint8)
    decoded = cv2.imdecode(encoded, cv2.IMREAD_UNCHANGED) if encoded.size else None
    if decoded is None:
        raise ValueError(f"{name!r} is not an image OpenCV can decode (not an image, truncated or corrupt); "
                         "pass JPEG, PNG, BMP, TIFF or WebP files")
    if decoded.dtype == np.uint16:
        decoded = (decoded // 257).astype(np.uint8)
    elif decoded.dtype != np.uint8:
        decoded = cv2.normalize(decoded, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    if decoded.ndim == 2 or decoded.shape[2] == 1:
        return cv2.cvtColor(decoded.reshape(decoded.shape[:2]), cv2.COLOR_GRAY2RGB)
    if decoded.shape[2] == 4:
        return cv2.cvtColor(decoded, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB)


def _validation_transform(rgb: np.ndarray, p: Preprocessing) -> np.ndarray:
    """Resize the shorter side to ``p.resize``, centre crop ``p.image_size``, normalise; ``(3, S, S)`` float32."""
    cv2 = _cv2()
    h, w = rgb.shape[:2]
    scale = p.resize / min(h, w)
    size = (max(p.resize, round(w * scale)), max(p.resize, round(h * scale)))  # (width, height)
    # Bilinear like DALI's resize; when shrinking, area averaging stands in for DALI's antialiasing.
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(rgb, size, interpolation=interpolation) if size != (w, h) else rgb
    s = p.image_size
    # DALI's centre crop anchor: (size - crop) / 2 rounded half up.
    top, left = int((resized.shape[0] - s) / 2 + 0.5), int((resized.shape[1] - s) / 2 + 0.5)
    crop = resized[top:top + s, left:left + s].astype(np.float32)
    crop = (crop - np.asarray(p.mean, np.float32)) / np.asarray(p.std, np.float32)
    return crop.transpose(2, 0, 1)


def preprocess(images: Sequence[ImageLike], preprocessing: Preprocessing = Preprocessing()) -> np.ndarray:
    """Images (paths, encoded bytes or RGB arrays) -> the validation preprocessing's float32 batch.

    Parameters
    ----------
    images : sequence of str, PathLike, bytes or ndarray
        See :func:`load_image`.
    preprocessing : Preprocessing
        ``resize``, ``image_size``, ``mean`` and ``std`` of the validation pipeline (default: the reference's
        224/256 ImageNet values).

    Returns
    -------
    ndarray
        ``(N, 3, image_size, image_size)`` float32 ('NCHW', RGB), normalised as ``(x - mean) / std``.
    """
    if isinstance(images, (str, os.PathLike, bytes, np.ndarray)):
        raise TypeError("preprocess takes a sequence of images; wrap a single image in a list")
    out = np.empty((len(images), 3, preprocessing.image_size, preprocessing.image_size), np.float32)
    for i, image in enumerate(images):
        out[i] = _validation_transform(load_image(image), preprocessing)
    return out
