"""The DALI operator graphs of :class:`~resnet_gluon.data.pipelines.DALIPipeline`: the reference's training and
validation preprocessing (:func:`preprocess`) and the augmentation beyond it (:func:`auto_augment`,
:func:`random_erasing`). Part of :mod:`resnet_gluon.data.pipelines`, the only module that imports this one (and so
DALI).

Every random draw here comes from DALI operators created without a seed of their own, which DALI seeds from the
pipeline's seed (:class:`~resnet_gluon.data.pipelines.DALIPipeline` derives it from ``(seed, epoch, shard)``): two
pipelines with the same seed augment alike, and a resumed run replays the uninterrupted one's augmentation.
"""
from __future__ import annotations

import math

import numpy as np

from .augmentation import parse_auto_augment
from .preprocessing import Preprocessing


def import_dali():
    """``(dali, fn, types, dali_mxnet)``: NVIDIA DALI, its operators, its types and its MXNet plugin.

    Raises
    ------
    ImportError
        Without DALI or its MXNet plugin (the message names the install step).
    """
    try:
        from nvidia import dali
        from nvidia.dali import fn, types
        from nvidia.dali.plugin import mxnet as dali_mxnet
    except ImportError as err:
        raise ImportError(f"NVIDIA DALI with its MXNet plugin is needed for the 'dali-*' backends ({err}); "
                          "install it with 'pip install nvidia-dali-cuda120==1.35.0', or use "
                          "data_backend='mxnet'") from err
    return dali, fn, types, dali_mxnet


def needs_conditionals(p: Preprocessing, *, train: bool) -> bool:
    """Whether the graph of :func:`preprocess` needs a pipeline built with ``enable_conditionals=True``: DALI's
    auto-augment policies choose their operations per sample with conditionals."""
    return train and p.auto_augment is not None


def preprocess(jpegs, labels, p: Preprocessing, *, train: bool, device: str = "cpu"):
    """The graph from encoded images to a batch: ``(images, labels)`` nodes.

    Training: random resized crop (area ``p.area``, aspect ``p.aspect``) decoded with
    ``decoders.image_random_crop``, resized to ``p.crop_size(train=True)``, the ``p.auto_augment`` policy, a random
    flip and normalisation, then ``p.random_erasing``. Validation: the part of the image that resizing the shorter
    side to ``p.resize`` and centre cropping keeps (:func:`centre_window`), resized to ``p.image_size``, normalised.
    Output: ``p.layout`` without N, ``p.dtype``; on the GPU with ``device='gpu'`` (decoded with nvJPEG, 'mixed').
    """
    from nvidia.dali import fn, types

    size = p.crop_size(train=train)
    decoder = "cpu" if device == "cpu" else "mixed"
    ops = "cpu" if device == "cpu" else "gpu"
    augment = train and p.augments
    if train:
        images = fn.decoders.image_random_crop(jpegs, device=decoder, output_type=types.RGB,
                                               random_area=list(p.area), random_aspect_ratio=list(p.aspect),
                                               num_attempts=100)
        images = fn.resize(images, device=ops, resize_x=size, resize_y=size)
        mirror = fn.random.coin_flip(probability=p.flip)
        if p.auto_augment is not None:
            images = auto_augment(images, p)
    else:
        images = fn.decoders.image(jpegs, device=decoder, output_type=types.RGB)
        roi_start, roi_end = centre_window(fn, types, jpegs, p)
        images = fn.resize(images, device=ops, size=[size, size], roi_start=roi_start, roi_end=roi_end)
        mirror = 0
    erase = augment and p.random_erasing > 0  # DALI's CPU arithmetic has no float16: erase in float32
    images = fn.crop_mirror_normalize(
        images, device=ops, dtype=types.FLOAT16 if p.dtype == "float16" and not erase else types.FLOAT,
        output_layout=p.layout[1:], crop=(size, size), mean=list(p.mean), std=list(p.std), pad_output=p.pad_output,
        mirror=mirror)
    if erase:
        images = random_erasing(images, p, fn, types, device=ops)
    return images, labels.gpu() if ops == "gpu" else labels


def centre_window(fn, types, jpegs, p: Preprocessing):
    """``(roi_start, roi_end)`` nodes, ``(y, x)`` in source pixels: the part of each image that resizing the
    shorter side to ``p.resize`` and centre cropping ``p.image_size`` keeps. Resized alone to the crop size, it
    gives the same pixels (same scale, filter and sample positions: identical to within one level, measured
    with DALI 1.35) at a cost that follows the output: resized whole, a 1 x 4000 strip is 1,024,000 x 256.
    DALI's arithmetic: ``resize_shorter`` keeps the scale exactly, rounds each extent and centres the source
    region (``subpixel_scale``); the crop anchor is ``round((extent - crop) / 2)``.
    """
    from nvidia.dali import math as dmath

    shape = fn.peek_image_shape(jpegs)  # (H, W, C) from the header; DALI ignores EXIF orientation, as here
    height, width = (fn.cast(shape[axis], dtype=types.FLOAT) for axis in (0, 1))
    scale = p.resize / dmath.min(height, width)
    starts, ends = [], []
    for extent in (height, width):
        resized = dmath.max(dmath.floor(extent * scale + 0.5), 1.0)
        source_start = (extent - resized / scale) * 0.5
        anchor = dmath.floor((resized - p.image_size) * 0.5 + 0.5)
        starts.append(source_start + anchor / scale)
        ends.append(source_start + (anchor + p.image_size) / scale)
    return fn.stack(*starts), fn.stack(*ends)


#: Random erasing as timm's ``RandomErasing`` (``timm/data/random_erasing.py``; Zhong et al. 2020,
#: arXiv:1708.04896) with its defaults: erased area a uniform fraction of the image, log-uniform aspect ratio,
#: up to 10 tries for a box that fits.
ERASE_AREA = (0.02, 1 / 3)
ERASE_ASPECT = (0.3, 1 / 0.3)
ERASE_ATTEMPTS = 10

#: Fill of the pixels that translation, rotation and shear uncover (DALI's default; timm fills with the
#: ImageNet mean, (124, 116, 104)).
FILL_VALUE = 128


def auto_augment(images, p: Preprocessing):
    """``images`` (uint8 HWC, training crops of ``p.crop_size(train=True)`` square) through the policy
    ``p.auto_augment`` names, with DALI's ``nvidia.dali.auto_aug`` (needs a pipeline built with
    ``enable_conditionals=True``). Translations are relative to the image size (RandAugment's up to 100/224 of
    it, the others' DALI defaults)."""
    from nvidia.dali.auto_aug import auto_augment as aa, rand_augment, trivial_augment

    spec = parse_auto_augment(p.auto_augment)
    shape = [p.crop_size(train=True)] * 2
    if spec["policy"] == "rand":
        return rand_augment.rand_augment(images, n=spec["n"], m=spec["m"], num_magnitude_bins=11, shape=shape,
                                         monotonic_mag=spec["increasing"], fill_value=FILL_VALUE)
    if spec["policy"] == "trivialaugment":
        return trivial_augment.trivial_augment_wide(images, shape=shape, fill_value=FILL_VALUE)
    return aa.auto_augment_image_net(images, shape=shape, fill_value=FILL_VALUE)


def random_erasing(images, p: Preprocessing, fn, types, device: str = "cpu"):
    """timm's random erasing in 'pixel' mode on normalised ``images`` (``p.layout`` without N, float): with
    probability ``p.random_erasing`` an image gets one box of per-pixel N(0, 1) noise (the normalised scale),
    area a uniform fraction in :data:`ERASE_AREA` of the image, aspect ratio (height / width) log-uniform in
    :data:`ERASE_ASPECT`, ``h = round(sqrt(area * aspect))``, ``w = round(sqrt(area / aspect))``; the first of
    :data:`ERASE_ATTEMPTS` draws with ``h < H`` and ``w < W`` is used (none: no box), at a uniform position
    inside the image. A padded fourth channel (``pad_output``) stays zero. ``device``: where ``images`` are
    ('cpu' or 'gpu'); the draws are made on the CPU either way.
    """
    from nvidia.dali import math as dmath

    size, n = float(p.crop_size(train=True)), ERASE_ATTEMPTS
    # All attempts at once, as vectors: DALI's CPU operators cost about a millisecond a batch each, whatever
    # the size of their data, so a loop of scalar operations would cost more than the erasing.
    area = fn.random.uniform(range=list(ERASE_AREA), shape=[n]) * (size * size)
    aspect = dmath.exp(fn.random.uniform(range=[math.log(a) for a in ERASE_ASPECT], shape=[n]))
    h, w = dmath.floor(dmath.sqrt(area * aspect) + 0.5), dmath.floor(dmath.sqrt(area / aspect) + 0.5)
    # the first attempt that fits has the largest rank; none fits: best is 0
    rank = (h < size) * (w < size) * types.Constant(np.arange(n, 0, -1, dtype=np.float32))
    best = fn.reductions.max(rank)
    first = (rank == best) * (best > 0)
    height, width = fn.reductions.sum(first * h), fn.reductions.sum(first * w)
    erase = fn.cast(fn.random.coin_flip(probability=p.random_erasing), dtype=types.FLOAT) * (best > 0)
    top = dmath.floor(fn.random.uniform(range=[0.0, 1.0]) * (size - height + 1))
    left = dmath.floor(fn.random.uniform(range=[0.0, 1.0]) * (size - width + 1))
    # not erased: an empty box (cheaper than a DALI conditional, measured: its batch split and merge cost more)
    height, width = height * erase, width * erase
    keep = fn.erase(images * 0 + 1, anchor=fn.stack(top, left), shape=fn.stack(height, width),
                    axis_names="HW", fill_value=0)  # 1 outside the box, 0 inside
    noise = _noise_box(fn, types, p, top, left, height, width)
    images = images * keep + (noise.gpu() if device == "gpu" else noise)
    return fn.cast(images, dtype=types.FLOAT16) if p.dtype == "float16" else images


def _noise_box(fn, types, p: Preprocessing, top, left, height, width):
    """N(0, 1) noise in the box (``top``, ``left``, ``height``, ``width``), zero elsewhere, of the image's shape:
    drawn for the box only (drawing normal numbers is most of erasing's cost) and moved into place by a slice
    that starts outside the box and pads with zeros."""
    channels, hw = p.channels, (1, 2) if p.layout == "NCHW" else (0, 1)
    extent = [fn.cast(v, dtype=types.INT32) for v in (height, width)]
    box = fn.random.normal(shape=fn.stack(channels, *extent) if hw == (1, 2) else fn.stack(*extent, channels))
    if p.pad_output:  # the fourth channel stays zero
        mask = np.array([1.0, 1.0, 1.0, 0.0], np.float32).reshape((4, 1, 1) if hw == (1, 2) else (1, 1, 4))
        box = box * types.Constant(mask)
    size = float(p.crop_size(train=True))
    return fn.slice(box, fn.stack(-top, -left), fn.stack(size + 0 * top, size + 0 * left), axes=list(hw),
                    normalized_anchor=False, normalized_shape=False, out_of_bounds_policy="pad", fill_values=0.0)
