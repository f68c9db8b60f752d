"""The training recipe, declared once: NVIDIA's ResNet-50 v1.5 for MXNet (the default) and other published recipes.

``fit``, the :class:`~resnet_gluon.train.trainer.Trainer` and the command line read their defaults from
:class:`Recipe`; :class:`~resnet_gluon.train.callbacks.Checkpoint` records it (its ``name`` and every value), so a
resumed run can tell what changed. Augmentation settings live in :class:`~resnet_gluon.data.preprocessing.Preprocessing`.

Presets (:data:`PRESETS`, :meth:`Recipe.preset`), each value's source in its docstring:

- ``reference``: NVIDIA DeepLearningExamples, ``MxNet/Classification/RN50v1.5`` (README "Default configuration"):
  90 epochs, SGD with momentum 0.9, lr 0.1 per 256 images scaled linearly with the global batch, linear warmup
  over 5 epochs, lr x0.1 after epochs 30, 60 and 80, weight decay 1e-4.
- ``later_release``: the same repository's later releases: cosine, lr 0.256 per 256, momentum 0.875, weight decay
  1/32768 and none on BatchNorm, label smoothing 0.1.
- ``mlperf``: NVIDIA's MLPerf Training ResNet-50 v1.5 submission for MXNet: LARS, polynomial decay of power 2.
- ``rsb_a1``, ``rsb_a2``, ``rsb_a3``: "ResNet strikes back" (Wightman, Touvron, Jegou, arXiv:2110.00476),
  procedures A1-A3: LAMB, cosine, binary cross-entropy.

Image sizes: a recipe states its training crop and test crop ratio for ImageNet's 224 px test crops
(``train_image_size``, ``test_crop_ratio``); :meth:`Recipe.preprocessing` scales them to the run's test size, and the
command line builds its pipelines with it (``--image-size``: the test size; ``--train-image-size`` overrides).

What a source recipe has and resnet_gluon does not build (RandAugment's magnitude noise, repeated augmentation, ...) is listed
in the preset's ``omitted`` field, recorded with it, and named in a warning when the preset is built: the run trains
without those ingredients, never silently.
"""
from __future__ import annotations

import dataclasses
import warnings
from typing import TYPE_CHECKING, Any, Dict, Optional, Tuple

from ..data.augmentation import check_augmentation

if TYPE_CHECKING:
    from ..data.preprocessing import Preprocessing

__all__ = ["Recipe", "SCHEDULES", "LOSSES", "PRESETS", "reference_lr"]

SCHEDULES = ("step", "cosine", "poly")
LOSSES = ("softmax", "bce")
#: The names :meth:`Recipe.preset` takes (each a classmethod of :class:`Recipe`).
PRESETS = ("reference", "later_release", "mlperf", "rsb_a1", "rsb_a2", "rsb_a3")

# "ResNet strikes back", Table 1 (arXiv:2110.00476), as reproduced by mmpretrain's configs
# (configs/resnet/resnet50_8xb256-rsb-a{1,2,3}*.py with their _base_ dataset/schedule files) and openmixup's
# (configs/classification/imagenet/resnet/resnet50_rsb_a*.py): what differs between A1, A2 and A3.
# RandAugment: timm's 'rand-m7-mstd0.5-inc1' (A1, A2) and 'rand-m6-mstd0.5-inc1' (A3), two operations (timm's
# default n), mmpretrain's RandAugment(policies='timm_increasing', num_policies=2, magnitude_level=7 or 6,
# magnitude_std=0.5); the magnitude noise is left out (_RSB_OMITTED).
_RSB = {
    "a1": dict(epochs=600, lr=5e-3, wd=0.01, label_smoothing=0.1, mixup=0.2, drop_path_rate=0.05,
               auto_augment="rand-m7-n2-inc1", omitted=("repeated augmentation",)),
    "a2": dict(epochs=300, lr=5e-3, wd=0.02, label_smoothing=0.0, mixup=0.1, drop_path_rate=0.05,
               auto_augment="rand-m7-n2-inc1", omitted=("repeated augmentation",)),
    "a3": dict(epochs=100, lr=8e-3, wd=0.02, label_smoothing=0.0, mixup=0.1, drop_path_rate=0.0,
               train_image_size=160, auto_augment="rand-m6-n2-inc1", omitted=()),
}
_MSTD = "RandAugment's magnitude noise mstd0.5 (DALI's rand_augment applies one fixed magnitude)"
_RAND_OPS = "timm RandAugment's Invert and SolarizeAdd operations (DALI's suite has Identity in their place)"
_LAMB_CLIP = "timm Lamb's scaling of the gradients to a global norm <= 1 (max_grad_norm=1.0)"
_LARS_MOMENTUM = "LARS momentum scaled by lr_t / lr_(t-1) as NVIDIA's SGDwLARS does"
_BIAS_WD = "weight decay on the classifier bias (NVIDIA keeps it; no_wd_bn_bias drops it)"
_RSB_OMITTED = (_MSTD, _RAND_OPS, _LAMB_CLIP)
#: When an omitted ingredient still matters: a preset whose overrides switch off what it belongs to (RandAugment,
#: the optimizer, the bias exclusion) no longer lists it. Others always do.
_OMITTED_IF = {
    _MSTD: lambda r: (r.auto_augment or "").startswith("rand"),
    _RAND_OPS: lambda r: (r.auto_augment or "").startswith("rand"),
    _LAMB_CLIP: lambda r: r.optimizer == "lamb",
    _LARS_MOMENTUM: lambda r: r.optimizer == "lars",
    _BIAS_WD: lambda r: r.no_wd_bn_bias,
}


def reference_lr(global_batch_size: int, *, lr_per_256: float = 0.1) -> float:
    """The linear scaling rule (Goyal et al., 2017): ``lr_per_256 * global_batch_size / 256``."""
    return lr_per_256 * global_batch_size / 256


def _warn_omitted(recipe: "Recipe") -> "Recipe":
    """Warn about the ingredients ``recipe`` names as not built (those its values made irrelevant are already
    gone: ``Recipe.__post_init__``)."""
    if recipe.omitted:
        warnings.warn(f"recipe {recipe.name!r}: resnet_gluon does not build {'; '.join(recipe.omitted)}. Training "
                      "goes without them (listed in Recipe.omitted and in checkpoint records)", stacklevel=3)
    return recipe


@dataclasses.dataclass(frozen=True)
class Recipe:
    """Optimiser, schedule, loss and regularisation settings of a training run; the defaults are the reference's.

    Parameters
    ----------
    name : str
        The preset these values started from (:data:`PRESETS`); ``Recipe.preset(name).differences(recipe)``
        lists what was changed.
    epochs : int
        Training length (the reference: 90).
    lr : float, optional
        Peak learning rate; default ``lr_per_256 * global_batch / 256`` (:func:`reference_lr`).
    lr_per_256 : float
        The reference's 0.1; its later releases use 0.256.
    batch_size : int, optional
        Global batch (images per step, all workers) that a preset's absolute ``lr`` was set for; the Trainer
        warns when a run's global batch differs (LARS/LAMB lrs do not follow the linear rule). Informational.
    schedule : {'step', 'cosine', 'poly'}
        After the warmup: step decay at ``lr_steps`` (the reference), cosine decay to ``final_lr`` (its later
        releases, "ResNet strikes back") or polynomial decay of power ``poly_power`` to ``final_lr`` (MLPerf).
    warmup_epochs : float
        Linear warmup from 0 to the peak lr.
    lr_steps : tuple of int
        Epochs after which the step schedule multiplies the lr by ``lr_factor``.
    lr_factor : float
        Step schedule factor.
    final_lr : float
        Where the cosine and poly schedules end.
    poly_power : float
        Power of the poly schedule (MLPerf: 2).
    momentum, wd : float
        SGD/NAG/LARS momentum and weight decay (for LAMB, ``wd`` is its decoupled-in-the-update decay).
    optimizer : str
        An MXNet optimizer name: 'sgd', 'nag', 'lars' (``mx.optimizer.LARS``), 'lamb' (``mx.optimizer.LAMB``), ...
    lars_eta : float
        LARS trust coefficient (MXNet's ``eta``; MLPerf: 0.001).
    trust_ratio_bn_bias : bool
        LARS/LAMB: scale the updates of BatchNorm parameters and biases by their trust ratio too. Off, as in
        MLPerf's LARS and timm's LAMB, which leave them out (see :mod:`resnet_gluon.train.optimizers`).
    no_wd_bn_bias : bool
        No weight decay on BatchNorm parameters and biases.
    loss : {'softmax', 'bce'}
        Softmax cross-entropy (the reference) or binary cross-entropy per class on the same, possibly smoothed or
        mixed, one-hot targets ("ResNet strikes back").
    label_smoothing : float
        Label smoothing epsilon (the later releases: 0.1).
    mixup : float
        Mixup alpha (0: off).
    cutmix : float
        CutMix alpha (0: off). With ``mixup`` too, each batch takes one of them, CutMix with probability 0.5
        (timm's rule; :mod:`resnet_gluon.data.augmentation`). Mixing draws are replayed by a resumed run.
    auto_augment : str, optional
        An auto-augment policy of the training pipeline ('rand-m9-n2', 'trivialaugment', 'autoaugment':
        :func:`~resnet_gluon.data.augmentation.parse_auto_augment`); None: none.
    random_erasing : float
        Probability of timm's random erasing in the training pipeline (0: off).

        These two are pipeline settings: :meth:`augment` puts them into a
        :class:`~resnet_gluon.data.preprocessing.Preprocessing` (the command line builds its pipelines so), and
        ``fit`` refuses training data whose ``preprocessing`` lacks them, or warns when the data does not say.
    drop_path_rate : float, optional
        Stochastic depth of the last residual block, linear over blocks from 0 (timm's rule); ``fit`` sets it on
        the network. None leaves the network as built.
    train_image_size : int, optional
        Training crop (random resized crops) for 224 px test crops; :meth:`preprocessing` scales it to other test
        sizes by ``size / 224`` (rounded: "ResNet strikes back" A3's 160 gives 20 px for 28 px, 23 px for 32 px).
        None: train at the test size (the reference).
    test_crop_ratio : float
        Validation's centre crop over the resized shorter side: the reference's 224/256 (0.875); "ResNet strikes
        back" 0.95 (resize 236 for 224).
    ema_decay : float
        Exponential moving average of the weights, decay per optimizer update (e.g. 0.9998); 0: none, in every
        preset: NVIDIA's recipes have none, nor have the reproductions of "ResNet strikes back" A1-A3 that
        :meth:`rsb_a3` follows (the paper's Table 1, which lists EMA per procedure, could not be read here). ``fit``
        evaluates the averaged weights beside the raw ones (``val_top1_ema``), checkpoints them, and
        ``Predictor.from_checkpoint`` uses them; see :mod:`resnet_gluon.train.ema`.
    ema_warmup : bool
        timm ``ModelEmaV3``'s warm-up of the decay, ``min(ema_decay, 1 - (1 + t) ** (-2/3))`` after ``t + 1``
        updates.
    omitted : tuple of str
        Ingredients of the source recipe that resnet_gluon does not build (the run goes without them).

    Raises
    ------
    ValueError
        For a value outside its range or an unknown schedule or loss, naming the field.

    Examples
    --------
    >>> from resnet_gluon import Recipe
    >>> r = Recipe()  # NVIDIA's ResNet-50 v1.5 for MXNet
    >>> r.epochs, r.schedule, r.lr_per_256, r.warmup_epochs
    (90, 'step', 0.1, 5)
    >>> r.replace(epochs=10).epochs
    10
    >>> Recipe(schedule="linear")
    Traceback (most recent call last):
    ...
    ValueError: ...schedule...
    """

    name: str = "reference"
    epochs: int = 90
    lr: Optional[float] = None
    lr_per_256: float = 0.1
    batch_size: Optional[int] = None
    schedule: str = "step"
    warmup_epochs: float = 5
    lr_steps: Tuple[int, ...] = (30, 60, 80)
    lr_factor: float = 0.1
    final_lr: float = 0.0
    poly_power: float = 2.0
    momentum: float = 0.9
    wd: float = 1e-4
    optimizer: str = "sgd"
    lars_eta: float = 0.001
    trust_ratio_bn_bias: bool = False
    no_wd_bn_bias: bool = False
    loss: str = "softmax"
    label_smoothing: float = 0.0
    mixup: float = 0.0
    cutmix: float = 0.0
    auto_augment: Optional[str] = None
    random_erasing: float = 0.0
    drop_path_rate: Optional[float] = None
    train_image_size: Optional[int] = None
    test_crop_ratio: float = 224 / 256
    ema_decay: float = 0.0
    ema_warmup: bool = False
    omitted: Tuple[str, ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "lr_steps", tuple(int(e) for e in self.lr_steps))
        # an ingredient that the values switched off (RandAugment, the optimizer it belongs to) is not missing
        object.__setattr__(self, "omitted", tuple(str(o) for o in self.omitted
                                                  if _OMITTED_IF.get(str(o), lambda r: True)(self)))
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        for field, choices in (("schedule", SCHEDULES), ("loss", LOSSES)):
            if getattr(self, field) not in choices:
                raise ValueError(f"unknown {field} {getattr(self, field)!r}; choose one of {', '.join(choices)}")
        if self.lr is not None and self.lr < 0:
            raise ValueError(f"lr must be >= 0, got {self.lr}")
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        for field in ("warmup_epochs", "final_lr", "wd", "mixup", "cutmix"):
            if getattr(self, field) < 0:
                raise ValueError(f"{field} must be >= 0, got {getattr(self, field)}")
        for field in ("poly_power", "lars_eta"):
            if getattr(self, field) <= 0:
                raise ValueError(f"{field} must be > 0, got {getattr(self, field)}")
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.drop_path_rate is not None and not 0 <= self.drop_path_rate < 1:
            raise ValueError(f"drop_path_rate must be in [0, 1), got {self.drop_path_rate}")
        object.__setattr__(self, "auto_augment", check_augmentation(self.auto_augment, self.random_erasing))
        if self.train_image_size is not None and self.train_image_size < 1:
            raise ValueError(f"train_image_size must be >= 1 (or None: the test size), got {self.train_image_size}")
        if not 0 < self.test_crop_ratio <= 1:
            raise ValueError(f"test_crop_ratio must be in (0, 1] (crop / resized shorter side), got "
                             f"{self.test_crop_ratio}")
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"ema_decay must be in [0, 1) (0: no weight averaging), got {self.ema_decay}")
        if self.ema_warmup and not self.ema_decay:
            raise ValueError("ema_warmup is the warm-up of a weight average, and ema_decay is 0 (no average): set "
                             "ema_decay (--ema-decay, e.g. 0.9998) too, or leave ema_warmup off")

    # ------------------------------------------------------------------------------------------ presets
    @classmethod
    def preset(cls, name: str, **overrides) -> "Recipe":
        """The preset ``name`` (one of :data:`PRESETS`) with ``overrides`` (``None`` values leave a field as is).

        Raises
        ------
        ValueError
            For an unknown preset name, listing the valid ones.
        TypeError
            For an unknown field.

        Examples
        --------
        >>> from resnet_gluon import Recipe
        >>> Recipe.preset("reference", epochs=50, label_smoothing=0.1).differences(Recipe())
        {'epochs': (50, 90), 'label_smoothing': (0.1, 0.0)}
        >>> sorted(Recipe.preset("later_release").differences(Recipe()))  # doctest: +SKIP
        ['label_smoothing', 'lr_per_256', 'momentum', 'name', 'no_wd_bn_bias', 'omitted', 'schedule', 'wd']
        """
        if name not in PRESETS:
            raise ValueError(f"unknown recipe {name!r}; choose one of {', '.join(PRESETS)}")
        with warnings.catch_warnings():  # warn once below, about the recipe actually returned
            warnings.simplefilter("ignore")
            recipe = getattr(cls, name)().replace(**overrides)
        return _warn_omitted(recipe)

    @classmethod
    def reference(cls, **overrides) -> "Recipe":
        """NVIDIA's ResNet-50 v1.5 for MXNet, the defaults (see the module docstring for the values' source)."""
        return cls().replace(**overrides)

    @classmethod
    def later_release(cls, **overrides) -> "Recipe":
        """The reference's later releases: cosine, lr 0.256 per 256 images, momentum 0.875, wd 1/32768, label smoothing 0.1.

        Source: NVIDIA DeepLearningExamples, ``MxNet/Classification/RN50v1.5``, README "Default configuration" of
        the later releases (mxnet-20.12 container): SGD with momentum 0.875, lr 0.256 for batch 256 scaled
        linearly, cosine schedule after 5 linear warmup epochs, weight decay 3.0517578125e-05 (1/32768) and "no WD
        on batch norm trainable parameters (gamma/bias)", label smoothing 0.1, 90 epochs (also 50, and 250 with
        mixup 0.2); ``fit.py`` defaults ``--mom 0.875``, ``--wd 1/32768``, ``--label-smoothing 0.1``,
        ``--lr-schedule cosine``, ``--warmup-epochs 5``. ``no_wd_bn_bias`` also takes the decay off the classifier's
        bias, which the source keeps (``omitted``). The random-resized-crop area stays the reference's 5-100%
        (``Preprocessing.area``; that README's parameter list gives ``--min-random-area 0.05``, its prose 8%).
        """
        values = dict(name="later_release", schedule="cosine", lr_per_256=0.256, momentum=0.875, wd=1 / 32768,
                      no_wd_bn_bias=True, label_smoothing=0.1,
                      omitted=(_BIAS_WD,))
        return _warn_omitted(cls(**values).replace(**overrides))

    @classmethod
    def mlperf(cls, **overrides) -> "Recipe":
        """NVIDIA's MLPerf Training ResNet-50 v1.5 for MXNet: LARS, poly power 2, label smoothing 0.1, 37 epochs.

        Values from ``NVIDIA/benchmarks/resnet/implementations/mxnet/config_DGXA100.sh`` of MLPerf Training v2.0
        (mlcommons/training_results_v2.0), one DGX A100 with 8 GPUs x 408 images (``batch_size=3264``):
        ``OPTIMIZER=sgdwfastlars``, ``LR=10.5``, ``WARMUP_EPOCHS=2``, ``WD=5.0e-05``, ``MOM=0.9``,
        ``LARSETA=0.001``, ``LABELSMOOTHING=0.1``, ``LRSCHED=pow2``, ``NUMEPOCHS=37`` (the run stops earlier
        once it reaches MLPerf's 75.9% top-1: ``fit(target_accuracy=0.759)``). From ``common/fit.py`` of the v0.7
        submission (mlcommons/training_results_v0.7): the poly schedule (linear warmup from 0, then
        ``1e-4 + (lr - 1e-4) * (1 - t')**2``), LARS left out for parameters named ``*gamma``, ``*beta``,
        ``*bias``, weight decay on ``*_weight`` and on the classifier's bias (not on BatchNorm parameters).
        ``lr=10.5`` belongs to that batch; NVIDIA's configs change it with the batch by hand (8.4 at 6528 images),
        so set ``lr`` for another batch.
        """
        values = dict(name="mlperf", optimizer="lars", lr=10.5, batch_size=3264, epochs=37, warmup_epochs=2,
                      schedule="poly", poly_power=2.0, final_lr=1e-4, momentum=0.9, wd=5e-5, lars_eta=0.001,
                      label_smoothing=0.1, no_wd_bn_bias=True, drop_path_rate=0.0,
                      omitted=(_LARS_MOMENTUM, _BIAS_WD))
        return _warn_omitted(cls(**values).replace(**overrides))

    @classmethod
    def rsb_a1(cls, **overrides) -> "Recipe":
        """The "ResNet strikes back" procedure A1: 600 epochs, LAMB lr 5e-3 at batch 2048, wd 0.01, BCE with label smoothing
        0.1, mixup 0.2, stochastic depth 0.05 (see :meth:`rsb_a3` for the values shared by A1-A3)."""
        return _warn_omitted(cls._rsb("a1").replace(**overrides))

    @classmethod
    def rsb_a2(cls, **overrides) -> "Recipe":
        """The "ResNet strikes back" procedure A2: 300 epochs, LAMB lr 5e-3 at batch 2048, wd 0.02, BCE, mixup 0.1, stochastic
        depth 0.05 (see :meth:`rsb_a3` for the values shared by A1-A3)."""
        return _warn_omitted(cls._rsb("a2").replace(**overrides))

    @classmethod
    def rsb_a3(cls, **overrides) -> "Recipe":
        """The "ResNet strikes back" procedure A3: 100 epochs, LAMB lr 8e-3 at batch 2048, wd 0.02, BCE, mixup 0.1
        and CutMix 1.0, RandAugment m6.

        Source: Wightman, Touvron, Jegou, "ResNet strikes back: An improved training procedure in timm",
        arXiv:2110.00476, Table 1. The paper's table was not readable here; the values are those of two
        reproductions that follow it, mmpretrain (``configs/resnet/resnet50_8xb256-rsb-a3-100e_in1k.py``) and
        openmixup (``resnet50_rsb_a3_sz160_8xb256_ep100.py``), which agree on: LAMB (timm's: betas 0.9/0.999,
        eps 1e-6, as MXNet's defaults), global batch 2048, cosine schedule, 5 warmup epochs, no weight decay on
        BatchNorm and biases (timm's LAMB then leaves them out of the trust ratio), BCE loss, mixup 0.1 and
        CutMix 1.0 (one of them per batch, each with probability 0.5), RandAugment of two operations at magnitude
        6 of 10 (timm's 'rand-m6-mstd0.5-inc1'; A1 and A2: 7) with timm's "increasing" operations, no random
        erasing, no label smoothing, no stochastic depth, no EMA, test crop ratio 0.95 (224 of 236; timm's
        ``crop_pct=0.95`` for these weights). The RandAugment magnitude's per-image noise (mstd 0.5) is not built
        (``omitted``). They differ on the end of the cosine
        (``final_lr``): 1e-6 in mmpretrain, 0 in openmixup; 1e-6 here, not checked against the paper. The
        training resolution 160 (``train_image_size``, testing at 224) is openmixup's and the paper's; mmpretrain
        trains A3 at 224. timm's schedule decays per epoch
        and its cosine spans the warmup too; MXNet's CosineScheduler here decays per step after the warmup.
        Whether timm's runs thresholded the BCE targets (``bce_target_thresh``) could not be checked.
        """
        return _warn_omitted(cls._rsb("a3").replace(**overrides))

    @classmethod
    def _rsb(cls, procedure: str) -> "Recipe":
        values = dict(_RSB[procedure])
        omitted = values.pop("omitted") + _RSB_OMITTED
        return cls(name=f"rsb_{procedure}", optimizer="lamb", batch_size=2048, schedule="cosine", warmup_epochs=5,
                   final_lr=1e-6, no_wd_bn_bias=True, loss="bce", cutmix=1.0, test_crop_ratio=0.95, omitted=omitted,
                   **values)

    # ------------------------------------------------------------------------------------------ values
    def replace(self, **overrides) -> "Recipe":
        """A copy with some fields changed; ``None`` means "not given" and leaves a field as it is.

        To switch a preset's auto-augment policy off, pass ``auto_augment='none'``; to set another field to
        ``None`` (``lr``: the linear rule again, ``train_image_size``), ``dataclasses.replace(recipe, lr=None)``.

        Raises
        ------
        TypeError
            Naming an unknown field and listing the valid ones.
        """
        names = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise TypeError(f"unknown recipe option {unknown[0]!r}; valid options: {', '.join(sorted(names))}")
        changes = {k: v for k, v in overrides.items() if v is not None}
        return dataclasses.replace(self, **changes) if changes else self

    def augment(self, preprocessing: "Preprocessing") -> "Preprocessing":
        """``preprocessing`` with this recipe's ``auto_augment`` and ``random_erasing``, when it sets them
        (otherwise ``preprocessing`` as it is, its own augmentation included)."""
        if self.auto_augment is None and not self.random_erasing:
            return preprocessing
        return dataclasses.replace(preprocessing, auto_augment=self.auto_augment, random_erasing=self.random_erasing)

    def check_data(self, train_data: Any) -> None:
        """Refuse training data that would silently drop the pipeline augmentation this recipe asks for.

        Raises
        ------
        ValueError
            ``train_data.preprocessing`` has another ``auto_augment`` or ``random_erasing`` than the recipe sets.
            Data without a ``preprocessing`` attribute (your own iterable) gets a warning instead: whether it
            augments cannot be told.
        """
        if self.auto_augment is None and not self.random_erasing:
            return
        wanted = dict(auto_augment=self.auto_augment, random_erasing=self.random_erasing)
        p = getattr(train_data, "preprocessing", None)
        if p is None:
            warnings.warn(f"recipe {self.name!r} asks for {wanted}; the training data does not say whether it "
                          "applies them (it has no .preprocessing): make sure it does", stacklevel=3)
            return
        has = dict(auto_augment=p.auto_augment, random_erasing=p.random_erasing)
        if has != wanted:
            raise ValueError(f"recipe {self.name!r} asks for {wanted}, but the training pipeline applies {has}: "
                             "build its Preprocessing with recipe.preprocessing(image_size) or recipe.augment(preprocessing) "
                             "(the command line does), "
                             "or set those recipe fields to what the pipeline does")

    def preprocessing(self, image_size: int = 224, *, train_image_size: Optional[int] = None, **kwargs):
        """The :class:`~resnet_gluon.data.preprocessing.Preprocessing` of this recipe for ``image_size`` px test crops.

        The training crop is ``train_image_size`` if given, else this recipe's, scaled by ``image_size / 224``
        and rounded (``rsb_a3``: 160 at 224, 20 at 28), else ``image_size``; validation resizes the shorter side
        to ``round(image_size / test_crop_ratio)``; the recipe's ``auto_augment`` and ``random_erasing``
        (:meth:`augment`). ``kwargs`` are other ``Preprocessing`` fields (``area``, ``layout``, ...). ``fit``
        takes pipelines as built: build them with this to train at the recipe's sizes and augmentation.

        Raises
        ------
        ValueError
            A size out of range (see ``Preprocessing``).
        """
        from ..data.preprocessing import Preprocessing

        if train_image_size is None and self.train_image_size is not None:
            scaled = max(1, round(image_size * self.train_image_size / 224))
            train_image_size = None if scaled == image_size else scaled
        return self.augment(Preprocessing.for_size(image_size, crop_ratio=self.test_crop_ratio,
                                                   train_image_size=train_image_size, **kwargs))

    def check_train_size(self, preprocessing) -> None:
        """Warn when this recipe trains at its own resolution (``rsb_a3``) and a training pipeline's
        ``preprocessing`` was built at one size (``train_image_size`` None): ``fit`` calls it, since it takes
        pipelines as built and would otherwise train at the test size without a word. A pipeline with any
        ``train_image_size`` of its own (a choice, e.g. ``--train-image-size``) is left alone."""
        if self.train_image_size is None or preprocessing is None or preprocessing.train_image_size is not None:
            return
        wanted = self.preprocessing(preprocessing.image_size).crop_size(train=True)
        if wanted != preprocessing.image_size:
            warnings.warn(f"recipe {self.name!r} trains at {self.train_image_size}/224 of the test size ({wanted} px "
                          f"for {preprocessing.image_size}), but the train pipeline crops {preprocessing.image_size} "
                          f"px: build its Preprocessing with recipe.preprocessing({preprocessing.image_size})",
                          stacklevel=3)

    def peak_lr(self, global_batch_size: int) -> float:
        """``lr`` if given, else the linear scaling rule for ``global_batch_size`` images per step."""
        return self.lr if self.lr is not None else reference_lr(global_batch_size, lr_per_256=self.lr_per_256)

    def to_dict(self) -> Dict[str, Any]:
        """JSON-ready values (checkpoint records)."""
        values = dataclasses.asdict(self)
        values["lr_steps"] = list(self.lr_steps)
        values["omitted"] = list(self.omitted)
        return values

    @classmethod
    def from_dict(cls, values: Dict[str, Any]) -> "Recipe":
        """The inverse of :meth:`to_dict`; unknown keys (from newer versions) are ignored. No warning about
        ``omitted``: a record describes a run that happened. An ``ema_warmup`` without ``ema_decay`` (0.2's
        command line took ``--ema-warmup`` alone, which did nothing) reads as off."""
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in values.items() if k in names}
        if values.get("ema_warmup") and not values.get("ema_decay"):
            values["ema_warmup"] = False
        return cls(**values)

    def differences(self, other: "Recipe") -> Dict[str, Tuple[Any, Any]]:
        """``{field: (self's value, other's value)}`` for the fields that differ."""
        mine, theirs = self.to_dict(), other.to_dict()
        return {k: (mine[k], theirs[k]) for k in mine if mine[k] != theirs[k]}
