"""Transfer learning: start from pretrained weights with a new classifier, and freeze or slow the features.

::

    net = resnet50_v1_5(classes=5)
    load_pretrained(net, "resnet50_torchvision.safetensors")   # everything but the 1000-class classifier
    set_features_lr_mult(net, 0.1)                             # or freeze_features(net)
    fit(net, train, val, epochs=10, lr=0.01)

The preprocessing that matches ImageNet weights (RGB, ImageNet mean/std, 224 px crops of 256 px resizes) is
:class:`~resnet_gluon.data.preprocessing.Preprocessing`'s default; keep it when fine-tuning them.
"""
from __future__ import annotations

import os
import sys
from typing import List, Optional

from mxnet import gluon
from mxnet.gluon import nn

from .._core.files import PathLike
from ._weight_loading import assign_named, check_named, read_named, structural_params

__all__ = ["load_pretrained", "freeze_features", "features_frozen", "set_features_lr_mult", "prepare_fine_tuning",
           "CLASSES_MISMATCH"]

CLASSES_MISMATCH = ("reinit", "error")


def _check_resnet(net: gluon.Block) -> None:
    if not (hasattr(net, "features") and hasattr(net, "output")):
        raise ValueError(f"expected a ResNet with .features and .output, got a {type(net).__name__}")


def load_pretrained(net: gluon.Block, filename: PathLike, *, classes_mismatch: str = "reinit",
                    ctx=None, verbose: bool = True) -> gluon.Block:
    """Load pretrained weights for fine-tuning: all of them, or all but the classifier when the classes differ.

    When the file's classifier (``fc.*`` / ``output.*``) has another class count than ``net`` (or the file
    has none), every other parameter is loaded (BatchNorm running statistics included) and ``net.output`` is
    initialised afresh with its own initializers; one line on stderr (rank 0 only) says so.

    Parameters
    ----------
    net : ResNet
        E.g. ``resnet50_v1_5(classes=5)``; it need not be initialised.
    filename : str or PathLike
        Any file :func:`~resnet_gluon.models.weights.load_parameters` reads: Gluon, gluoncv, exported checkpoint,
        torchvision/timm or Hugging Face transformers safetensors, or ``.pth`` (with torch).
    classes_mismatch : {'reinit', 'error'}
        What to do when the classifiers differ: a new classifier, or the shape error of ``load_parameters``.
    ctx : Context, optional
        Where to put the weights; default the current context.
    verbose : bool
        Print the line about a new classifier.

    Returns
    -------
    ResNet
        The same ``net``.

    Raises
    ------
    FileNotFoundError, ValueError
        As :func:`~resnet_gluon.models.weights.load_parameters`, for every parameter but the classifier's.

    Examples
    --------
    Weights of a 3-class network, saved as torchvision names them, fine-tuned for 5 classes:

    >>> import os, tempfile
    >>> from resnet_gluon import resnet18_v1_5
    >>> from resnet_gluon.models.weights import save_parameters
    >>> trained = resnet18_v1_5(classes=3)
    >>> trained.initialize()
    >>> path = save_parameters(trained, os.path.join(tempfile.mkdtemp(), "r18.safetensors"), format="torchvision")
    >>> net = load_pretrained(resnet18_v1_5(classes=5), path, verbose=False)
    >>> net.output.weight.shape
    (5, 512)
    >>> stem = lambda n: n.features[0].conv.weight.data().asnumpy()
    >>> bool((stem(net) == stem(trained)).all())
    True
    """
    if classes_mismatch not in CLASSES_MISMATCH:
        raise ValueError(f"classes_mismatch must be one of {CLASSES_MISMATCH}, got {classes_mismatch!r}")
    _check_resnet(net)
    filename = os.fspath(filename)
    found = read_named(net, filename)
    params = structural_params(net)
    head = [name for name in params if name.startswith("output.")]
    if classes_mismatch == "error" or all(
            name in found.arrays and tuple(found.arrays[name][1].shape) == params[name].shape for name in head):
        check_named(net, found, filename)
        assign_named(params, found, ctx)
        return net
    theirs = {name: found.arrays.pop(name) for name in list(found.arrays) if name.startswith("output.")}
    check_named(net, found, filename, skip=head)
    assign_named({name: p for name, p in params.items() if name not in head}, found, ctx)
    net.output.initialize(ctx=ctx, force_reinit=True)
    if verbose and _rank_zero():
        weight = theirs.get("output.weight")
        had = f"{weight[1].shape[0]} classes" if weight is not None else "no classifier"
        print(f"{filename}: its classifier has {had}, the network {params['output.weight'].shape[0]}: loaded all "
              "but the classifier, which is newly initialised", file=sys.stderr)
    return net


def _rank_zero() -> bool:
    from .._core.dist import is_rank_zero

    return is_rank_zero()


def freeze_features(net: gluon.Block) -> gluon.Block:
    """Train only the classifier: ``net.features`` is frozen, its BatchNorm layers included.

    The rule for frozen features (the same for this function, ``set_features_lr_mult(net, 0)``,
    ``prepare_fine_tuning`` and ``train --freeze-features`` / ``--features-lr-mult 0``) is torchvision's
    ``FrozenBatchNorm2d`` (its detection models' pretrained backbones): every parameter of ``net.features`` gets
    ``grad_req='null'`` (Gluon's and Horovod's trainers skip it: no gradient, allreduce, update or weight decay),
    and every BatchNorm normalises with its running statistics in training too (``use_global_stats=True``) and
    never updates them. So the classifier learns on the features that ``evaluate``, ``predict``, INT8
    calibration and ONNX compute, and frozen features stay bit-for-bit the pretrained ones. (Left to MXNet,
    a BatchNorm would normalise with each batch's statistics in training while its running statistics stay
    where they are, or, with an lr multiplier of 0, drift with the new data.)

    A hybridized network's cached graph is dropped, so the next call builds it with the frozen BatchNorm; the
    setting lives in the blocks, so it holds through ``hybridize``, ``export`` (the symbol records it) and
    loading weights. :func:`set_features_lr_mult` with a multiplier > 0 unfreezes.

    Returns
    -------
    ResNet
        The same ``net``.

    Raises
    ------
    ValueError
        For a network without ``.features`` and ``.output``.
    """
    return _set_frozen(net, True)


def features_frozen(net: gluon.Block) -> bool:
    """Whether ``net.features`` is frozen as :func:`freeze_features` does (False for a network without them)."""
    if not (hasattr(net, "features") and hasattr(net, "output")):
        return False
    frozen_norms = all(bn._kwargs["use_global_stats"] for bn in _batch_norms(net.features))  # pylint: disable=W0212
    return frozen_norms and all(p.grad_req == "null" for p in net.features.collect_params().values())


def set_features_lr_mult(net: gluon.Block, mult: float) -> gluon.Block:
    """Scale the learning rate of ``net.features`` by ``mult`` (``Parameter.lr_mult``); the classifier keeps 1.

    MXNet's optimizers multiply each parameter's learning rate (schedule included) by its ``lr_mult`` at every
    update (``Optimizer._get_lrs`` reads the Trainer's live ``param_dict``), so this also works on a running
    Trainer. Typical fine-tuning values are 0.1 or 0.01. ``mult=0`` freezes the features as
    :func:`freeze_features` does (BatchNorm included); ``mult > 0`` on frozen features unfreezes them (their
    parameters take the classifier's ``grad_req``, their BatchNorm layers follow the batches again), for the
    second phase of a two-phase fine-tuning.

    Raises
    ------
    ValueError
        For a negative ``mult``, or a network without ``.features`` and ``.output``.
    """
    if not mult >= 0:
        raise ValueError(f"the features' lr multiplier must be >= 0, got {mult}")
    _check_resnet(net)
    net.features.collect_params().setattr("lr_mult", float(mult))
    return _set_frozen(net, mult == 0)


def _batch_norms(block: gluon.Block) -> List[nn.BatchNorm]:
    found: List[nn.BatchNorm] = []
    block.apply(lambda b: found.append(b) if isinstance(b, nn.BatchNorm) else None)
    return found


def _set_frozen(net: gluon.Block, frozen: bool) -> gluon.Block:
    _check_resnet(net)
    if not frozen and not features_frozen(net):
        return net  # nothing to undo; leaves any grad_req the user set alone
    net.features.collect_params().setattr("grad_req", "null" if frozen else net.output.weight.grad_req)
    for bn in _batch_norms(net.features):
        bn._kwargs["use_global_stats"] = frozen  # pylint: disable=protected-access
    # A cached graph holds the old BatchNorm setting: drop every one, so the next forward pass builds anew.
    net.apply(lambda b: b._clear_cached_op() if isinstance(b, gluon.HybridBlock) else None)
    return net


def prepare_fine_tuning(net: gluon.Block, pretrained: Optional[PathLike] = None, *,
                        freeze_features: bool = False, features_lr_mult: Optional[float] = None) -> gluon.Block:
    """The three steps above in one call (what ``train --pretrained/--freeze-features/--features-lr-mult`` does).

    Parameters
    ----------
    net : ResNet
        The network to prepare, before training.
    pretrained : str or PathLike, optional
        Weights to start from (:func:`load_pretrained`, a new classifier when the class counts differ).
    freeze_features : bool
        :func:`freeze_features`.
    features_lr_mult : float, optional
        :func:`set_features_lr_mult`; default leave the multipliers as they are.

    Raises
    ------
    ValueError
        For both ``freeze_features`` and ``features_lr_mult`` (a frozen extractor has no learning rate), and as
        the functions it calls.
    """
    if freeze_features and features_lr_mult is not None:
        raise ValueError("give either freeze_features or features_lr_mult, not both: frozen features are not updated")
    if pretrained is not None:
        load_pretrained(net, pretrained)
    if freeze_features:
        _set_frozen(net, True)
    if features_lr_mult is not None:
        set_features_lr_mult(net, features_lr_mult)
    return net
