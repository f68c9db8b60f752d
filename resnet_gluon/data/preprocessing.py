"""Image loading and the CPU validation transform: what the validation pipelines do, for single images.

:func:`load_image` decodes image files, encoded bytes or arrays with OpenCV into RGB, by the rules ``prepare``
stores images by (:mod:`resnet_gluon.data.images`); :func:`preprocess` applies the validation preprocessing of
:class:`Preprocessing` (resize the shorter side to ``resize``, centre crop ``image_size``, ``(x - mean) / std``),
giving float32 ``(N, 3, H, W)`` batches that match DALI's validation output to within interpolation rounding.
Both resample only the window the centre crop keeps, so memory and time per image follow the output size
whatever the aspect ratio. Nothing here imports Horovod or DALI.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Optional, Sequence, Tuple, Union

import numpy as np

from .augmentation import check_augmentation
from .._core.files import printable
from .images import composite, decode_upright

__all__ = ["Preprocessing", "IMAGENET_MEAN", "IMAGENET_STD", "ImageLike", "load_image", "preprocess"]

#: The reference's normalisation, on the 0-255 scale, RGB order.
IMAGENET_MEAN = (123.68, 116.779, 103.939)
IMAGENET_STD = (58.393, 57.12, 57.375)

ImageLike = Union[str, os.PathLike, bytes, np.ndarray]


@dataclasses.dataclass(frozen=True)
class Preprocessing:
    """Image preprocessing of the training and validation pipelines (defaults: the reference's ImageNet values).

    Training: random resized crop to ``train_image_size`` (default ``image_size``; area fraction in ``area``,
    aspect ratio in ``aspect``), horizontal flip with probability ``flip``, then ``(x - mean) / std``.
    Validation and inference (evaluate, the ``Predictor``, ``predict``, exports): resize the shorter side to
    ``resize``, centre crop ``image_size``, then ``(x - mean) / std``.
    Output: ``dtype`` tensors in ``layout`` ('NCHW' or 'NHWC'), RGB, plus a zero fourth channel with
    ``pad_output`` (DALI's ``pad_output``, as the reference feeds GPUs; the model then takes ``in_channels=4``).

    Augmentation beyond the reference, training only, DALI pipelines only, off by default (the recipe's fields
    of the same names set them, :meth:`~resnet_gluon.train.recipe.Recipe.augment`): ``auto_augment`` names a policy of
    DALI's ``nvidia.dali.auto_aug`` applied to the uint8 crop before the flip (the same in distribution as after it:
    its geometric operations take either sign) ('rand-m9-n2', 'trivialaugment', 'autoaugment':
    :func:`~resnet_gluon.data.augmentation.parse_auto_augment`); ``random_erasing`` is the probability
    of timm's random erasing of a box with N(0, 1) noise after normalisation
    (:func:`resnet_gluon.data._dali_graph.random_erasing` states the rule).

    A ``train_image_size`` below ``image_size`` trains at a lower resolution than the network is tested at
    ("FixRes", Touvron et al., "Fixing the train-test resolution discrepancy", NeurIPS 2019: random resized
    crops make objects look larger in training than in a centre crop of the same size, so testing at a higher
    resolution than training helps; "ResNet strikes back" A3 trains at 160 and tests at 224). The ResNets here
    end in global average pooling, so one network takes both sizes.

    Raises
    ------
    ValueError
        One line naming the field: sizes with ``image_size > resize`` or below 1, ``area`` or ``aspect`` not
        ``0 < min <= max`` (``area`` at most 1), a ``layout`` other than 'NCHW'/'NHWC', a ``dtype`` other than
        'float32'/'float16', or augmentation options :func:`~resnet_gluon.data.augmentation.check_augmentation`
        refuses.

    Examples
    --------
    >>> from resnet_gluon import Preprocessing
    >>> p = Preprocessing.for_size(32)  # 32 px centre crops of images resized to 37 px (the reference's 224/256)
    >>> p.image_size, p.resize, p.layout, p.dtype
    (32, 37, 'NCHW', 'float32')
    >>> p.data_shape(16, train=True)
    (16, 3, 32, 32)
    >>> Preprocessing(image_size=300, resize=256)
    Traceback (most recent call last):
    ...
    ValueError: need 1 <= image_size <= resize, got image_size=300, resize=256
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
    auto_augment: Optional[str] = None
    random_erasing: float = 0.0
    train_image_size: Optional[int] = None

    def __post_init__(self):
        object.__setattr__(self, "auto_augment", check_augmentation(self.auto_augment, self.random_erasing))
        if self.image_size < 1 or self.resize < self.image_size:
            raise ValueError(f"need 1 <= image_size <= resize, got image_size={self.image_size}, resize={self.resize}")
        if self.train_image_size is not None and self.train_image_size < 1:
            raise ValueError(f"train_image_size must be >= 1 (or None: image_size), got {self.train_image_size}")
        if not 0 < self.area[0] <= self.area[1] <= 1:
            raise ValueError(f"area must satisfy 0 < min <= max <= 1, got {self.area}")
        if not 0 < self.aspect[0] <= self.aspect[1]:
            raise ValueError(f"aspect must satisfy 0 < min <= max, got {self.aspect}")
        if self.layout not in ("NCHW", "NHWC"):
            raise ValueError(f"layout must be 'NCHW' or 'NHWC', got {self.layout!r}")
        if self.dtype not in ("float32", "float16"):
            raise ValueError(f"dtype must be 'float32' or 'float16', got {self.dtype!r}")

    @property
    def augments(self) -> bool:
        """Whether training applies augmentation beyond the reference's crop and flip."""
        return self.auto_augment is not None or self.random_erasing > 0

    @classmethod
    def for_size(cls, image_size: int, *, crop_ratio: float = 224 / 256, **kwargs) -> "Preprocessing":
        """Settings for another (test) image size: ``resize = round(image_size / crop_ratio)``.

        ``crop_ratio`` is the centre crop's share of the resized shorter side: the reference's 224/256 by
        default (32 px crops of 37 px), "ResNet strikes back"'s 0.95 (224 of 236). Other fields, such as
        ``train_image_size``, go through ``kwargs``; an explicit ``resize`` wins.

        Raises
        ------
        ValueError
            ``crop_ratio`` outside ``(0, 1]``, or a field out of range (see the class).
        """
        if not 0 < crop_ratio <= 1:
            raise ValueError(f"crop_ratio must be in (0, 1] (crop / resized shorter side), got {crop_ratio}")
        return cls(image_size=image_size, resize=kwargs.pop("resize", round(image_size / crop_ratio)), **kwargs)

    def crop_size(self, *, train: bool = False) -> int:
        """The side of the images a pipeline gives: ``train_image_size`` (default ``image_size``) for training,
        ``image_size`` for validation and inference."""
        return (self.train_image_size or self.image_size) if train else self.image_size

    def validation_settings(self) -> dict:
        """The validation part (``image_size``, ``resize``, ``mean``, ``std``, ``layout``, ``pad_output``) as
        JSON-ready values (checkpoint records), plus ``train_image_size`` when it differs from ``image_size``
        (informational: what the network was trained at)."""
        settings = dict(image_size=self.image_size, resize=self.resize, mean=list(self.mean), std=list(self.std),
                        layout=self.layout, pad_output=self.pad_output)
        if self.crop_size(train=True) != self.image_size:
            settings["train_image_size"] = self.train_image_size
        return settings

    @classmethod
    def from_validation_settings(cls, settings: dict) -> "Preprocessing":
        """The inverse of :meth:`validation_settings` (other fields at their defaults; records without
        ``train_image_size``, older ones included, were trained at ``image_size``)."""
        train = settings.get("train_image_size")
        return cls(image_size=int(settings["image_size"]), resize=int(settings["resize"]),
                   mean=tuple(settings["mean"]), std=tuple(settings["std"]),
                   layout=settings.get("layout", "NCHW"), pad_output=bool(settings.get("pad_output", False)),
                   train_image_size=None if train is None else int(train))

    @property
    def channels(self) -> int:
        """Channels of a batch, 3 (RGB), or 4 with ``pad_output`` (RGB and a zero channel, the reference's
        4-channel input on GPUs, with a stem of ``in_channels=4``)."""
        return 4 if self.pad_output else 3

    def data_shape(self, batch_size: int, *, train: bool = False) -> Tuple[int, int, int, int]:
        """Shape of a batch of ``batch_size`` images in this layout: validation/inference batches by default,
        training batches (:meth:`crop_size`) with ``train=True``."""
        s, c = self.crop_size(train=train), self.channels
        return (batch_size, c, s, s) if self.layout == "NCHW" else (batch_size, s, s, c)



def _cv2():
    import cv2  # opencv-python; imported late so that ``import resnet_gluon`` stays light

    return cv2


def load_image(image: ImageLike, *, name: Optional[str] = None, max_value: Optional[float] = None) -> np.ndarray:
    """Decode an image file, encoded bytes or an array into an RGB ``uint8`` array ``(H, W, 3)``.

    Files and bytes decode as ``prepare`` stores them (:func:`resnet_gluon.data.images.decode_upright`): EXIF
    orientation applied (upright), CMYK JPEGs converted to RGB, grayscale repeated over three channels,
    transparent images composited onto white (:data:`~resnet_gluon.data.images.ALPHA_BACKGROUND`), 16-bit scaled to
    8 bits; GIFs, truncated JPEGs and images over OpenCV's limit of 2^30 pixels are refused.

    Arrays are RGB pixels, ``(H, W)`` gray, ``(H, W, 1)``, ``(H, W, 2)`` gray + alpha, ``(H, W, 3)`` RGB or
    ``(H, W, 4)`` RGBA (alpha composited onto white as for files; 255 or ``max_value`` is opaque). Their values
    are read on the scale of ``max_value``, the value of white: by default 255 for ``uint8`` and float arrays;
    other dtypes (``uint16``, ...) need it. Nothing is guessed: values outside ``[0, max_value]`` (an already
    normalised array), NaN, and float arrays in ``[0, 1]`` without ``max_value=1.0`` are errors.

    Parameters
    ----------
    image : str, PathLike, bytes or ndarray
        A file, encoded bytes, or pixels as above.
    name : str, optional
        The name errors give it (default: the path, 'image bytes' or 'image array').
    max_value : float, optional
        Arrays only: the value of white, e.g. ``1.0`` for float images in ``[0, 1]``, ``65535`` for 16-bit.

    Raises
    ------
    FileNotFoundError
        A path that does not exist, or a broken symbolic link.
    ValueError
        A folder; bytes or a file that cannot be decoded (:class:`~resnet_gluon.data.images.ImageError`: the
        name, the reason and the fix on one line); an array of another shape, dtype or value range.
    """
    cv2 = _cv2()
    if isinstance(image, np.ndarray):
        return _from_array(image, name or "image array", max_value)
    if isinstance(image, (bytes, bytearray, memoryview)):
        raw, name = bytes(image), name or "image bytes"
    else:
        name = name or os.fspath(image)
        raw = _read(image, name)
    return cv2.cvtColor(decode_upright(raw, name=name), cv2.COLOR_BGR2RGB)


def _read(path, name: str) -> bytes:
    if os.path.isdir(path):
        raise ValueError(f"{printable(name)} is a folder; pass image files (the command line's predict takes a "
                         "folder and predicts the images in it)")
    if not os.path.isfile(path):
        if os.path.islink(path):
            raise FileNotFoundError(f"{printable(name)} is a broken symbolic link (to "
                                    f"{printable(os.readlink(path))}, which does not exist)")
        raise FileNotFoundError(f"no image file {printable(name)}")
    with open(path, "rb") as f:
        return f.read()


def _from_array(array: np.ndarray, name: str, max_value: Optional[float]) -> np.ndarray:
    """RGB uint8 (H, W, 3) of an array image (see :func:`load_image`)."""
    shape = array.shape
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 2, 3, 4) or 0 in array.shape:
        raise ValueError(f"{name} has shape {shape}; expected (H, W) or (H, W, 1) gray, (H, W, 2) gray + alpha, "
                         "(H, W, 3) RGB or (H, W, 4) RGBA")
    array = _to_uint8(array, name, max_value)
    color = np.repeat(array[:, :, :1], 3, axis=2) if array.shape[2] <= 2 else array[:, :, :3]
    if array.shape[2] in (2, 4):
        color = composite(color, array[:, :, -1])
    return np.ascontiguousarray(color)


def _to_uint8(array: np.ndarray, name: str, max_value: Optional[float]) -> np.ndarray:
    """Pixel values on the 0-255 scale as uint8, from ``[0, max_value]``; refuses what it would have to guess."""
    kind = array.dtype.kind
    if max_value is None and array.dtype == np.uint8:
        return array
    if kind not in "fiu":
        raise ValueError(f"{name} has dtype {array.dtype}; pass uint8 RGB pixels (0-255)")
    if max_value is None and kind != "f":
        raise ValueError(f"{name} has dtype {array.dtype}; pass uint8 RGB pixels (0-255), or give the value of white "
                         "with max_value= (e.g. max_value=65535 for 16-bit images)")
    if max_value is not None and not max_value > 0:
        raise ValueError(f"max_value must be > 0 (the value of white), got {max_value}")
    values = array.astype(np.float32)
    if not np.isfinite(values).all():
        raise ValueError(f"{name} has NaN or infinite values; pass RGB pixels in [0, {max_value or 255:g}]")
    low, high, white = float(values.min()), float(values.max()), float(max_value or 255)
    if low < 0:
        raise ValueError(f"{name} has values down to {low:.4g}; expected RGB pixels in [0, {white:g}], not a "
                         "normalised array ((x - mean) / std goes to Predictor.logits, not predict)")
    if high > white * (1 + 1e-6):
        raise ValueError(f"{name} has values up to {high:.6g}, above {white:g} (the value of white); pass pixels "
                         f"in [0, {white:g}], or the right max_value")
    if max_value is None and 0 < high <= 1:
        raise ValueError(f"{name} is {array.dtype} with values in [0, 1]; float arrays are read on the 0-255 scale: "
                         "pass max_value=1.0 for an image in [0, 1] (or max_value=255.0 for a dark 0-255 one)")
    return np.clip(np.rint(values * (255 / white)), 0, 255).astype(np.uint8)


def _taps(n: int, size: int, start: int, count: int, area: bool) -> Tuple[np.ndarray, np.ndarray]:
    """Source indices and weights ``(count, taps)`` of output pixels ``start .. start + count - 1`` of a
    resize of ``n`` pixels to ``size``, as ``cv2.resize`` samples them: the area of each output pixel's box
    ``[j, j + 1) * n / size`` (``INTER_AREA``, shrinking) or the two pixels around ``(j + 0.5) * n / size - 0.5``,
    clamped at the edges (``INTER_LINEAR``)."""
    s = n / size
    j = np.arange(start, start + count, dtype=np.float64)
    if area:
        low, high = j * s, np.minimum((j + 1) * s, n)
        index = np.floor(low).astype(np.int64)[:, None] + np.arange(int(np.ceil(s)) + 1)
        overlap = np.minimum(index + 1, high[:, None]) - np.maximum(index, low[:, None])
        weights = np.clip(overlap, 0, None) / (high - low)[:, None]
    else:
        x = (j + 0.5) * s - 0.5
        first = np.clip(np.floor(x), 0, n - 1)
        frac = np.where((x < 0) | (first >= n - 1), 0, x - first)
        index = np.stack([first, first + 1], 1).astype(np.int64)
        weights = np.stack([1 - frac, frac], 1)
    return np.minimum(index, n - 1), weights.astype(np.float32)


def _validation_transform(rgb: np.ndarray, p: Preprocessing) -> np.ndarray:
    """Resize the shorter side to ``p.resize``, centre crop ``p.image_size``, normalise; ``(3, S, S)`` float32.

    Only the window the crop keeps is resampled (separably, with :func:`_taps`), so time and memory follow the
    output size whatever the aspect ratio: a 1 x 4000 strip would be a 1,024,000 x 256 intermediate if resized
    whole. The pixels are those of ``cv2.resize`` (bilinear like DALI's resize; when shrinking, area averaging
    stands in for DALI's antialiasing) followed by the crop, to within one level of rounding.
    """
    h, w = rgb.shape[:2]
    scale = p.resize / min(h, w)
    height, width = max(p.resize, round(h * scale)), max(p.resize, round(w * scale))
    s = p.image_size
    # DALI's centre crop anchor: (size - crop) / 2 rounded half up.
    top, left = int((height - s) / 2 + 0.5), int((width - s) / 2 + 0.5)
    rows, row_w = _taps(h, height, top, s, scale < 1)
    cols, col_w = _taps(w, width, left, s, scale < 1)
    r0, c0 = rows.min(), cols.min()
    window = rgb[r0:rows.max() + 1, c0:cols.max() + 1]
    tall = np.zeros((s, window.shape[1], 3), np.float32)
    for t in range(rows.shape[1]):
        tall += row_w[:, t, None, None] * window[rows[:, t] - r0]
    crop = np.zeros((s, s, 3), np.float32)
    for t in range(cols.shape[1]):
        crop += col_w[None, :, t, None] * tall[:, cols[:, t] - c0]
    crop = np.clip(np.rint(crop), 0, 255)  # an 8-bit image, as cv2.resize and DALI's resize give
    crop = (crop - np.asarray(p.mean, np.float32)) / np.asarray(p.std, np.float32)
    return crop.transpose(2, 0, 1)


def preprocess(images: Sequence[ImageLike], preprocessing: Preprocessing = Preprocessing(), *,
               max_value: Optional[float] = None) -> np.ndarray:
    """Images (paths, encoded bytes or RGB arrays) -> the validation preprocessing's float32 batch.

    Parameters
    ----------
    images : sequence of str, PathLike, bytes or ndarray
        See :func:`load_image`.
    preprocessing : Preprocessing
        ``resize``, ``image_size``, ``mean`` and ``std`` of the validation pipeline (default: the reference's
        224/256 ImageNet values).
    max_value : float, optional
        The value of white in array images (:func:`load_image`): default 255 for uint8 and float arrays.

    Returns
    -------
    ndarray
        ``preprocessing.data_shape(N)`` float32: ``(N, 3, image_size, image_size)`` ('NCHW', RGB) by default,
        normalised as ``(x - mean) / std``; a zero fourth channel with ``pad_output``; channels last in 'NHWC'.

    Raises
    ------
    FileNotFoundError, ValueError
        As :func:`load_image`: a missing file, an image that cannot be decoded, an array out of range.
    TypeError
        For a single image (a path, bytes or an array) instead of a sequence of them.
    """
    if isinstance(images, (str, os.PathLike, bytes, np.ndarray)):
        raise TypeError("preprocess takes a sequence of images; wrap a single image in a list")
    s = preprocessing.image_size
    out = np.zeros((len(images), preprocessing.channels, s, s), np.float32)  # a padded channel stays 0
    for i, image in enumerate(images):
        out[i, :3] = _validation_transform(load_image(image, max_value=max_value), preprocessing)
    return out if preprocessing.layout == "NCHW" else np.ascontiguousarray(out.transpose(0, 2, 3, 1))
