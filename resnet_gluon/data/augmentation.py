"""Augmentation beyond the reference: the auto-augment policies' option strings, and batch mixing (mixup, CutMix).

Per image (in the DALI pipelines, options of :class:`~resnet_gluon.data.preprocessing.Preprocessing`): an auto-augment
policy of DALI's own ``nvidia.dali.auto_aug`` named by a string (:func:`parse_auto_augment`), and random erasing
(built in :mod:`resnet_gluon.data._dali_graph`).

Per batch (in ``fit``, on the device; options of :class:`~resnet_gluon.train.recipe.Recipe`): mixup (Zhang et al.
2018) and CutMix (Yun et al. 2019) with timm's rules (``timm/data/mixup.py``, class ``Mixup`` in its default
'batch' mode): with both on, each batch takes CutMix with probability :data:`SWITCH_PROB` and mixup otherwise;
the mixing weight ``lam`` is drawn from Beta(alpha, alpha) of the one chosen; CutMix's labels take the pasted
area's actual share (timm's ``correct_lam``). :func:`mixing_rng` makes the draws a function of
``(seed, epoch, step, rank)``, so a resumed run replays them. Nothing here imports DALI.
"""
from __future__ import annotations

import re
from typing import Dict, Optional, Tuple, Union

import mxnet as mx
import numpy as np

__all__ = ["parse_auto_augment", "check_augmentation", "AUTO_AUGMENT_FORMS", "SWITCH_PROB", "mixing_rng", "mix_batch", "cutmix_box"]

#: The option strings :func:`parse_auto_augment` takes.
AUTO_AUGMENT_FORMS = ("rand-m<M>[-n<N>][-inc<0|1>] (RandAugment, timm's notation)", "trivialaugment",
                      "autoaugment", "none (off)")

#: Probability that a batch takes CutMix rather than mixup when both are on (timm's ``switch_prob`` default).
SWITCH_PROB = 0.5

#: timm's magnitude scale: ``m`` of 0-10 is the fraction ``m / 10`` of each operation's largest strength.
_LEVELS = 10

#: One ``-`` separated part of a RandAugment string after 'rand'.
_RAND_PART = re.compile(r"(?P<key>m|n|inc|mstd)(?P<value>\d+(?:\.\d+)?)")


def _bad(spec: str, why: str) -> ValueError:
    return ValueError(f"auto_augment {spec!r}: {why}; use one of {', '.join(AUTO_AUGMENT_FORMS)}, e.g. "
                      "'rand-m9-n2'")


def parse_auto_augment(spec: Optional[str]) -> Optional[Dict[str, Union[str, int, bool]]]:
    """The policy an ``auto_augment`` option names, as ``dict(policy=..., ...)``; ``None`` for ``None`` and
    ``'none'`` (off: the spelling that switches a recipe preset's policy off).

    Forms (:data:`AUTO_AUGMENT_FORMS`):

    - ``'rand-m9-n2'``: RandAugment (Cubuk et al. 2020, arXiv:1909.13719) in timm's notation: ``n`` operations
      per image (default 2), magnitude ``m`` of 0-10 on timm's scale (``m / 10`` of each operation's range,
      DALI's ``num_magnitude_bins=11``); ``-inc1`` takes the operations whose strength increases with ``m``
      (timm's "increasing" set, DALI's ``monotonic_mag=True``), the default ``-inc0`` the original ranges (DALI's
      ``monotonic_mag=False``). Returns ``dict(policy='rand', n=, m=, increasing=)``.
    - ``'trivialaugment'``: TrivialAugment-wide (Mueller & Hutter 2021, arXiv:2103.10158; torchvision's
      ``TrivialAugmentWide``): one operation of a random magnitude of 31 bins per image.
    - ``'autoaugment'``: the AutoAugment ImageNet policy (Cubuk et al. 2019, arXiv:1805.09501; timm's
      ``'original'``).

    Raises
    ------
    ValueError
        For another string, a magnitude above 10, ``n`` of 0, or timm's ``mstd`` (per-image magnitude noise):
        DALI's ``rand_augment`` applies one fixed magnitude, so ``mstd`` > 0 cannot be built and is refused.

    Examples
    --------
    >>> parse_auto_augment("rand-m9-n2")
    {'policy': 'rand', 'n': 2, 'm': 9, 'increasing': False}
    >>> parse_auto_augment("rand-m9-mstd0.5")
    Traceback (most recent call last):
    ...
    ValueError: ...mstd...
    """
    if spec is None or spec == "none":
        return None
    if not isinstance(spec, str):
        raise _bad(spec, "not a string")
    if spec in ("trivialaugment", "autoaugment"):
        return dict(policy=spec)
    head, *rest = spec.split("-")
    parts = [_RAND_PART.fullmatch(part) for part in rest]
    if head != "rand" or not all(parts):
        raise _bad(spec, "not a known policy")
    values = {p["key"]: p["value"] for p in parts}
    if any(not values[k].isdigit() for k in ("m", "n", "inc") if k in values) or values.get("inc", "0") not in "01":
        raise _bad(spec, "m and n take whole numbers, inc 0 or 1")
    m, n = int(values.get("m", _LEVELS)), int(values.get("n", 2))
    if m > _LEVELS:
        raise _bad(spec, f"magnitude m{m} is above {_LEVELS} (timm's scale: m10 is each operation's largest)")
    if n < 1:
        raise _bad(spec, "n0 applies no operation; for no auto-augment, use 'none'")
    if float(values.get("mstd", 0)) != 0:
        raise _bad(spec, f"mstd{values['mstd']} (random magnitude per image) is not available: DALI's "
                         "rand_augment applies one fixed magnitude; drop it")
    return dict(policy="rand", n=n, m=m, increasing=values.get("inc", "0") == "1")


def check_augmentation(auto_augment: Optional[str], random_erasing: float) -> Optional[str]:
    """Check the per-image augmentation options (of :class:`~resnet_gluon.data.preprocessing.Preprocessing` and
    :class:`~resnet_gluon.train.recipe.Recipe`); returns ``auto_augment`` as those classes keep it: ``None`` for
    ``'none'`` (the spelling that switches a preset's policy off, where ``None`` means "not given").

    Raises
    ------
    ValueError
        One line naming the option and the fix: an ``auto_augment`` string :func:`parse_auto_augment` refuses, or
        ``random_erasing`` outside ``[0, 1]``.
    """
    parse_auto_augment(auto_augment)
    if not 0 <= random_erasing <= 1:
        raise ValueError(f"random_erasing is a probability in [0, 1], got {random_erasing}")
    return None if auto_augment == "none" else auto_augment


def mixing_rng(seed: int, epoch: int, step: int, rank: int = 0) -> np.random.Generator:
    """The generator of one batch's mixing draws: a function of ``(seed, epoch, step, rank)`` only (NumPy's
    ``SeedSequence``), so a resumed run draws what the uninterrupted one drew, and workers draw differently
    (as timm's workers, seeded by their rank)."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, epoch, step, rank])))


def cutmix_box(height: int, width: int, lam: float, rng: np.random.Generator) -> Tuple[int, int, int, int]:
    """CutMix's box ``(top, bottom, left, right)``, rows ``top:bottom`` and columns ``left:right``: sides
    ``sqrt(1 - lam)`` of the image's, centred on a uniformly drawn pixel and clipped at the borders (Yun et al.
    2019, Algorithm A1; timm's ``rand_bbox``)."""
    ratio = np.sqrt(1.0 - lam)
    cut_h, cut_w = int(height * ratio), int(width * ratio)
    cy, cx = int(rng.integers(0, height)), int(rng.integers(0, width))
    return (int(np.clip(cy - cut_h // 2, 0, height)), int(np.clip(cy + cut_h // 2, 0, height)),
            int(np.clip(cx - cut_w // 2, 0, width)), int(np.clip(cx + cut_w // 2, 0, width)))


def mix_batch(x: mx.nd.NDArray, target: mx.nd.NDArray, *, mixup: float = 0.0, cutmix: float = 0.0,
              rng: np.random.Generator, layout: str = "NCHW") -> Tuple[mx.nd.NDArray, mx.nd.NDArray, Dict]:
    """Mix a batch with a random permutation of itself: mixup or CutMix by timm's rule (module docstring).

    Parameters
    ----------
    x : NDArray
        Images ``(N, C, H, W)`` ('NCHW') or ``(N, H, W, C)`` ('NHWC'), any float dtype, on any device; not changed.
    target : NDArray
        One-hot (possibly smoothed) targets ``(N, classes)``.
    mixup, cutmix : float
        Beta(alpha, alpha) parameters; 0 turns one off. With both 0 the batch is returned as it is.
    rng : numpy.random.Generator
        Source of every draw (:func:`mixing_rng`).
    layout : {'NCHW', 'NHWC'}
        Where the image axes are.

    Returns
    -------
    (NDArray, NDArray, dict)
        Mixed images and targets (each row's targets still sum to what they summed to), and what was drawn:
        ``kind`` ('mixup', 'cutmix' or None), ``lam`` (the first image's weight in the labels: for CutMix
        ``1 - box area / image area``), ``box`` (CutMix's ``(top, bottom, left, right)``), ``perm``.

    Examples
    --------
    >>> import mxnet as mx, numpy as np
    >>> x = mx.nd.ones((4, 3, 8, 8))
    >>> target = mx.nd.one_hot(mx.nd.array([0, 1, 2, 3]), 4)
    >>> mixed, mixed_target, drawn = mix_batch(x, target, mixup=0.2, rng=np.random.default_rng(0))
    >>> drawn["kind"], mixed.shape, mixed_target.sum(axis=1).asnumpy().tolist()
    ('mixup', (4, 3, 8, 8), [1.0, 1.0, 1.0, 1.0])
    """
    if not (mixup or cutmix) or x.shape[0] == 0:
        return x, target, dict(kind=None, lam=1.0, box=None, perm=None)
    use_cutmix = cutmix > 0 and (mixup <= 0 or rng.random() < SWITCH_PROB)
    alpha = cutmix if use_cutmix else mixup
    lam = float(rng.beta(alpha, alpha))
    perm = rng.permutation(x.shape[0])
    other = x.take(mx.nd.array(perm, ctx=x.context))
    box = None
    if use_cutmix:
        h_axis = 2 if layout == "NCHW" else 1
        height, width = x.shape[h_axis], x.shape[h_axis + 1]
        box = cutmix_box(height, width, lam, rng)
        top, bottom, left, right = box
        lam = 1.0 - (bottom - top) * (right - left) / (height * width)  # the area actually pasted
        mixed = x.copy()
        if bottom == top or right == left:
            pass  # nothing pasted (MXNet refuses an empty slice assignment)
        elif h_axis == 2:
            mixed[:, :, top:bottom, left:right] = other[:, :, top:bottom, left:right]
        else:
            mixed[:, top:bottom, left:right, :] = other[:, top:bottom, left:right, :]
    else:
        mixed = lam * x + (1 - lam) * other
    target = lam * target + (1 - lam) * target.take(mx.nd.array(perm, ctx=target.context))
    return mixed, target, dict(kind="cutmix" if use_cutmix else "mixup", lam=lam, box=box, perm=perm)
