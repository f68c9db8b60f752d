"""The training recipe, declared once: NVIDIA's ResNet-50 v1.5 for MXNet, and its later releases as options.

``fit``, the :class:`~resnet_gluon.trainer.Trainer` and the command line read their defaults from
:class:`Recipe`; :class:`~resnet_gluon.callbacks.Checkpoint` records it, so a resumed run can tell what
changed. Augmentation settings live in :class:`~resnet_gluon.preprocessing.Preprocessing`.

Source: NVIDIA DeepLearningExamples, ``MxNet/Classification/RN50v1.5`` (README "Default configuration"):
90 epochs, SGD with momentum 0.9, lr 0.1 per 256 images scaled linearly with the global batch, linear warmup
over 5 epochs, lr x0.1 after epochs 30, 60 and 80, weight decay 1e-4.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Dict, Optional, Tuple

__all__ = ["Recipe", "SCHEDULES", "reference_lr"]

SCHEDULES = ("step", "cosine")


def reference_lr(global_batch_size: int, *, lr_per_256: float = 0.1) -> float:
    """The linear scaling rule (Goyal et al., 2017): ``lr_per_256 * global_batch_size / 256``."""
    return lr_per_256 * global_batch_size / 256


@dataclasses.dataclass(frozen=True)
class Recipe:
    """Optimiser, schedule and loss settings of a training run; the defaults are the reference's.

    Parameters
    ----------
    epochs : int
        Training length (the reference: 90).
    lr : float, optional
        Peak learning rate; default ``lr_per_256 * global_batch / 256`` (:func:`reference_lr`).
    lr_per_256 : float
        The reference's 0.1; its later releases use 0.256.
    schedule : {'step', 'cosine'}
        Step decay at ``lr_steps`` (the reference) or cosine decay to 0 (its later releases).
    warmup_epochs : float
        Linear warmup from 0 to the peak lr.
    lr_steps : tuple of int
        Epochs after which the step schedule multiplies the lr by ``lr_factor``.
    lr_factor : float
        Step schedule factor.
    momentum, wd : float
        SGD momentum and weight decay.
    optimizer : str
        MXNet optimizer name ('sgd', 'nag', ...).
    no_wd_bn_bias : bool
        No weight decay on BatchNorm parameters and biases.
    label_smoothing : float
        Label smoothing epsilon (the later releases: 0.1).
    mixup : float
        Mixup alpha (0: off).
    """

    epochs: int = 90
    lr: Optional[float] = None
    lr_per_256: float = 0.1
    schedule: str = "step"
    warmup_epochs: float = 5
    lr_steps: Tuple[int, ...] = (30, 60, 80)
    lr_factor: float = 0.1
    momentum: float = 0.9
    wd: float = 1e-4
    optimizer: str = "sgd"
    no_wd_bn_bias: bool = False
    label_smoothing: float = 0.0
    mixup: float = 0.0

    def __post_init__(self):
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown lr schedule {self.schedule!r}; choose one of {', '.join(SCHEDULES)}")
        if self.lr is not None and self.lr < 0:
            raise ValueError(f"lr must be >= 0, got {self.lr}")
        if self.warmup_epochs < 0:
            raise ValueError(f"warmup_epochs must be >= 0, got {self.warmup_epochs}")
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        object.__setattr__(self, "lr_steps", tuple(int(e) for e in self.lr_steps))

    @classmethod
    def later_release(cls, **overrides) -> "Recipe":
        """The reference's later releases: cosine schedule, lr 0.256 per 256 images, label smoothing 0.1."""
        return cls(**{**dict(schedule="cosine", lr_per_256=0.256, label_smoothing=0.1), **overrides})

    def replace(self, **overrides) -> "Recipe":
        """A copy with some fields changed; ``None`` means "not given" and leaves a field as it is.

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

    def peak_lr(self, global_batch_size: int) -> float:
        """``lr`` if given, else the linear scaling rule for ``global_batch_size`` images per step."""
        return self.lr if self.lr is not None else reference_lr(global_batch_size, lr_per_256=self.lr_per_256)

    def to_dict(self) -> Dict[str, Any]:
        """JSON-ready values (checkpoint records)."""
        values = dataclasses.asdict(self)
        values["lr_steps"] = list(self.lr_steps)
        return values

    @classmethod
    def from_dict(cls, values: Dict[str, Any]) -> "Recipe":
        """The inverse of :meth:`to_dict`; unknown keys (from newer versions) are ignored."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})

    def differences(self, other: "Recipe") -> Dict[str, Tuple[Any, Any]]:
        """``{field: (self's value, other's value)}`` for the fields that differ."""
        mine, theirs = self.to_dict(), other.to_dict()
        return {k: (mine[k], theirs[k]) for k in mine if mine[k] != theirs[k]}
