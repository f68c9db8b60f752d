"""Image loading and the CPU validation transform: what the validation pipelines do, for single images.

:func:`load_image` decodes image files, encoded bytes or arrays with OpenCV into RGB; :func:`preprocess` applies
the validation preprocessing of :class:`Preprocessing` (resize the shorter side to ``resize``, centre crop
``image_size``, ``(x - mean) / std``), giving float32 ``(N, 3, H, W)`` batches that match DALI's validation
output to within interpolation rounding. Nothing here imports Horovod or DALI.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Optional, Sequence, Tuple, Union

import numpy as np

from .images import decode_upright, refusal, inspect_image

__all__ = ["Preprocessing", "IMAGENET_MEAN", "IMAGENET_STD", "ImageLike", "load_image", "preprocess"]

#: The reference's normalisation, on the 0-255 scale, RGB order.
IMAGENET_MEAN = (123.68, 116.779, 103.939)
IMAGENET_STD = (58.393, 57.12, 57.375)

ImageLike = Union[str, os.PathLike, bytes, np.ndarray]


@dataclasses.dataclass(frozen=True)
class Preprocessing:
    """Image preprocessing of the training and validation pipelines (defaults: the reference's ImageNet values).

    Training: random resized crop to ``image_size`` (area fraction in ``area``, aspect ratio in ``aspect``),
    horizontal flip with probability ``flip``, then ``(x - mean) / std``.
    Validation: resize the shorter side to ``resize``, centre crop ``image_size``, then ``(x - mean) / std``.
    Output: ``dtype`` tensors in ``layout`` ('NCHW' or 'NHWC'), RGB, plus a zero fourth channel with
    ``pad_output`` (DALI's ``pad_output``, as the reference feeds GPUs; the model then takes ``in_channels=4``).
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
    pad_output: bool = False

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
        """The validation part (``image_size``, ``resize``, ``mean``, ``std``, ``layout``, ``pad_output``) as
        JSON-ready values (checkpoint records)."""
        return dict(image_size=self.image_size, resize=self.resize, mean=list(self.mean), std=list(self.std),
                    layout=self.layout, pad_output=self.pad_output)

    @classmethod
    def from_validation_settings(cls, settings: dict) -> "Preprocessing":
        """The inverse of :meth:`validation_settings` (other fields at their defaults)."""
        return cls(image_size=int(settings["image_size"]), resize=int(settings["resize"]),
                   mean=tuple(settings["mean"]), std=tuple(settings["std"]),
                   layout=settings.get("layout", "NCHW"), pad_output=bool(settings.get("pad_output", False)))

    @property
    def channels(self) -> int:
        """Channels of a batch: 3 (RGB), or 4 with ``pad_output`` (RGB and a zero channel, the reference's
        4-channel input on GPUs, with a stem of ``in_channels=4``)."""
        return 4 if self.pad_output else 3

    def data_shape(self, batch_size: int) -> Tuple[int, int, int, int]:
        """Shape of a batch of ``batch_size`` images in this layout."""
        s, c = self.image_size, self.channels
        return (batch_size, c, s, s) if self.layout == "NCHW" else (batch_size, s, s, c)



def _cv2():
    import cv2  # opencv-python; imported late so that ``import resnet_gluon`` stays light

    return cv2


def load_image(image: ImageLike, *, name: Optional[str] = None) -> np.ndarray:
    """Decode an image file, encoded bytes or an array into an RGB ``uint8`` array ``(H, W, 3)``.

    Files and bytes decode as ``prepare`` stores them (:mod:`resnet_gluon.images`): EXIF orientation applied
    (upright), CMYK JPEGs converted to RGB, grayscale repeated over three channels, alpha dropped, 16-bit
    scaled to 8 bits; GIFs and truncated JPEGs are refused. Arrays are taken as RGB: ``(H, W)``, ``(H, W, 1)``,
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
    raw = encoded.tobytes()
    problem = refusal(inspect_image(raw)) if raw else None
    if problem:  # what prepare refuses too: a GIF, a truncated JPEG
        raise ValueError(f"{name!r} {problem}; pass JPEG, PNG, BMP, TIFF or WebP files")
    # Decoded as prepare stores images (resnet_gluon.images): EXIF orientation applied, CMYK converted to RGB,
    # alpha dropped, 16-bit scaled to 8-bit; so a photo predicts as it would train.
    decoded = decode_upright(raw)
    if decoded is None:
        raise ValueError(f"{name!r} is not an image OpenCV can decode (not an image, truncated or corrupt); "
                         "pass JPEG, PNG, BMP, TIFF or WebP files")
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
        ``preprocessing.data_shape(N)`` float32: ``(N, 3, image_size, image_size)`` ('NCHW', RGB) by default,
        normalised as ``(x - mean) / std``; a zero fourth channel with ``pad_output``; channels last in 'NHWC'.
    """
    if isinstance(images, (str, os.PathLike, bytes, np.ndarray)):
        raise TypeError("preprocess takes a sequence of images; wrap a single image in a list")
    s = preprocessing.image_size
    out = np.zeros((len(images), preprocessing.channels, s, s), np.float32)  # a padded channel stays 0
    for i, image in enumerate(images):
        out[i, :3] = _validation_transform(load_image(image), preprocessing)
    return out if preprocessing.layout == "NCHW" else np.ascontiguousarray(out.transpose(0, 2, 3, 1))
