"""Composable Gluon ``HybridBlock``\\ s of the ResNet v1.5 family.

Every block takes and returns ``float32`` (or the AMP dtype) 4-D tensors in the layout given by its
``layout`` argument: ``'NCHW'`` (the default, the only one MXNet's CPU kernels run) or ``'NHWC'`` (GPUs).
All parameter shapes are known at construction (``in_channels`` is always given), so weights can be
loaded and checked before the first forward pass.

The v1.5 change (NVIDIA's ResNet-50 v1.5, torchvision's ResNet): a downsampling :class:`Bottleneck`
puts ``strides=2`` on its 3x3 convolution, not on the first 1x1 as the original ResNet v1 does.
"""
from __future__ import annotations

from typing import Optional, Sequence, Type

import mxnet as mx
from mxnet.gluon import Block, HybridBlock, nn

from .._core.deprecation import deprecated

__all__ = ["Stem", "BasicBlock", "Bottleneck", "Stage", "ResNet", "reference_initializer", "check_layout",
           "set_drop_path_rate"]

_LAYOUTS = ("NCHW", "NHWC")
_NHWC_RUNS_ON_CPU: Optional[bool] = None


def reference_initializer() -> mx.init.Initializer:
    """The reference recipe's weight initializer: ``Xavier(rnd_type='gaussian', factor_type='in', magnitude=2)``."""
    return mx.init.Xavier(rnd_type="gaussian", factor_type="in", magnitude=2)


def _nhwc_runs_on_cpu() -> bool:
    global _NHWC_RUNS_ON_CPU
    if _NHWC_RUNS_ON_CPU is None:
        try:
            x = mx.nd.ones((1, 4, 4, 2))
            w = mx.nd.ones((2, 1, 1, 2))
            mx.nd.Convolution(x, w, kernel=(1, 1), num_filter=2, no_bias=True, layout="NHWC").wait_to_read()
            _NHWC_RUNS_ON_CPU = True
        except mx.MXNetError:
            _NHWC_RUNS_ON_CPU = False
    return _NHWC_RUNS_ON_CPU


def check_layout(layout: str) -> str:
    """Validate a tensor layout and make sure this machine can run it.

    Raises
    ------
    ValueError
        For a layout other than ``'NCHW'``/``'NHWC'``, or for ``'NHWC'`` on a machine without a GPU, whose
        MXNet CPU convolutions support only ``'NCHW'``.
    """
    if layout not in _LAYOUTS:
        raise ValueError(f"layout must be one of {_LAYOUTS}, got {layout!r}")
    if layout == "NHWC" and mx.context.num_gpus() == 0 and not _nhwc_runs_on_cpu():
        raise ValueError(
            "layout='NHWC' needs a GPU: MXNet's CPU convolutions only run 'NCHW'. "
            "Use layout='NCHW' on this machine (the default)."
        )
    return layout


def _check_rate(rate: float, name: str) -> float:
    if not 0 <= rate < 1:
        raise ValueError(f"{name} must be in [0, 1), got {rate}")
    return float(rate)


def set_drop_path_rate(net: Block, rate: float) -> None:
    """Stochastic depth over the residual blocks of ``net``, linear in the block's position: ``rate * i / (n - 1)``
    for block ``i`` of ``n`` (0 for the first, ``rate`` for the last; timm's ``ResNet`` rule); 0 turns it off.

    Takes effect at the next forward pass (cached graphs are dropped); in training mode only.

    Raises
    ------
    ValueError
        For a rate outside ``[0, 1)``, or a rate above 0 for a network without resnet_gluon residual blocks.
    """
    rate = _check_rate(rate, "drop_path_rate")
    blocks: list = []
    net.apply(lambda b: blocks.append(b) if isinstance(b, _ResidualBlock) else None)  # children in build order
    if rate and not blocks:
        raise ValueError(f"drop_path_rate={rate} needs residual blocks; {type(net).__name__} has none (build the "
                         "network from resnet_gluon's blocks, or use drop_path_rate=0)")
    for i, block in enumerate(blocks):
        block.drop_path = rate * (i / (len(blocks) - 1) if len(blocks) > 1 else 1.0)
    if blocks:
        net.drop_path_rate = rate
    # the rate is a constant of a hybridized graph: trace it again
    net.apply(lambda b: b._clear_cached_op() if isinstance(b, HybridBlock) else None)  # pylint: disable=protected-access


class _Layers:
    """Builds the convolutions and BatchNorms of a network with options shared by all of them."""

    def __init__(self, layout: str, bn_epsilon: float, bn_momentum: float,
                 weight_initializer: Optional[mx.init.Initializer]):
        self.layout = check_layout(layout)
        self.bn_epsilon = bn_epsilon
        self.bn_momentum = bn_momentum
        self.weight_initializer = weight_initializer if weight_initializer is not None else reference_initializer()

    def options(self) -> dict:
        return dict(layout=self.layout, bn_epsilon=self.bn_epsilon, bn_momentum=self.bn_momentum,
                    weight_initializer=self.weight_initializer)

    def conv(self, channels: int, kernel_size: int, strides: int, in_channels: int) -> nn.Conv2D:
        return nn.Conv2D(channels, kernel_size, strides=strides, padding=kernel_size // 2, use_bias=False,
                         in_channels=in_channels, layout=self.layout,
                         weight_initializer=self.weight_initializer)

    def bn(self, in_channels: int, zero_gamma: bool = False) -> nn.BatchNorm:
        return nn.BatchNorm(axis=self.layout.index("C"), epsilon=self.bn_epsilon, momentum=self.bn_momentum,
                            in_channels=in_channels, gamma_initializer="zeros" if zero_gamma else "ones")


class Stem(HybridBlock):
    """The ResNet input stem: 7x7 convolution with stride 2, BatchNorm, ReLU, 3x3 max-pool with stride 2.

    Input ``(N, in_channels, H, W)`` float32 (in 'NCHW') gives ``(N, channels, ceil(H/4), ceil(W/4))``.

    Parameters
    ----------
    channels : int
        Output channels (64 in every standard ResNet).
    in_channels : int
        Input channels: 3 for RGB images, 4 for the reference's padded input (DALI's ``pad_output``: RGB plus a
        zero channel, as the reference feeds NHWC float16 on GPUs).
    layout : {'NCHW', 'NHWC'}
        Tensor layout of inputs, outputs and every layer; 'NHWC' needs a GPU.
    bn_epsilon, bn_momentum : float
        BatchNorm epsilon and running-statistics momentum (the reference's 1e-5 and 0.9).
    weight_initializer : mxnet.init.Initializer, optional
        Initializer of convolution weights; default :func:`reference_initializer`.
    prefix, params
        Gluon's naming and parameter sharing arguments.
    """

    def __init__(self, channels: int = 64, *, in_channels: int = 3, layout: str = "NCHW",
                 bn_epsilon: float = 1e-5, bn_momentum: float = 0.9,
                 weight_initializer: Optional[mx.init.Initializer] = None, prefix=None, params=None):
        super().__init__(prefix=prefix, params=params)
        layers = _Layers(layout, bn_epsilon, bn_momentum, weight_initializer)
        with self.name_scope():
            self.conv = layers.conv(channels, 7, 2, in_channels)
            self.bn = layers.bn(channels)
            self.pool = nn.MaxPool2D(pool_size=3, strides=2, padding=1, layout=layout)

    def hybrid_forward(self, F, x):
        return self.pool(F.Activation(self.bn(self.conv(x)), act_type="relu"))


class _ResidualBlock(HybridBlock):
    """The part the residual blocks share: building the shortcut, stochastic depth, the addition, the final ReLU."""

    expansion = 1

    def __init__(self, channels: int, strides: int = 1, downsample: bool = False, *, in_channels: int = 0,
                 last_gamma: bool = True, layout: str = "NCHW", bn_epsilon: float = 1e-5,
                 bn_momentum: float = 0.9, weight_initializer: Optional[mx.init.Initializer] = None,
                 drop_path: float = 0.0, prefix=None, params=None):
        super().__init__(prefix=prefix, params=params)
        if channels % self.expansion:
            raise ValueError(f"{type(self).__name__}: channels={channels} must be a multiple of {self.expansion}")
        self.drop_path = _check_rate(drop_path, "drop_path")
        layers = _Layers(layout, bn_epsilon, bn_momentum, weight_initializer)
        in_channels = in_channels or channels
        with self.name_scope():
            self._build(layers, channels, strides, in_channels, last_gamma)
            if downsample:
                self.downsample = nn.HybridSequential(prefix="down_")
                with self.downsample.name_scope():
                    self.downsample.add(layers.conv(channels, 1, strides, in_channels), layers.bn(channels))
            else:
                self.downsample = None

    def _build(self, layers: _Layers, channels: int, strides: int, in_channels: int, last_gamma: bool):
        raise NotImplementedError

    def _body(self, F, x):
        raise NotImplementedError

    def hybrid_forward(self, F, x):
        shortcut = self.downsample(x) if self.downsample is not None else x
        body = self._body(F, x)
        if self.drop_path:
            # Stochastic depth (Huang et al., 2016, as timm's drop_path): one mask value per sample, over all of
            # (C, H, W), so a whole residual branch is dropped with probability drop_path and kept ones are
            # scaled by 1 / (1 - drop_path). Dropout is the identity outside training: predict mode and exported
            # graphs compute the full branch.
            body = F.Dropout(body, p=self.drop_path, axes=(1, 2, 3))
        return F.Activation(body + shortcut, act_type="relu")


# The parameters both residual blocks document alike (their docstrings differ in the summary and strides).
_RESIDUAL_BLOCK_PARAMETERS = """    downsample : bool
        Give the shortcut a 1x1 convolution + BatchNorm (needed when the shape changes).
    in_channels : int
        Input channels; 0 means ``channels``.
    last_gamma : bool
        Initialise the gamma of the last BatchNorm to zero, so the block starts as an identity (the reference's
        default).
    layout : {'NCHW', 'NHWC'}
        Tensor layout of inputs, outputs and every layer; 'NHWC' needs a GPU.
    bn_epsilon, bn_momentum : float
        BatchNorm epsilon and running-statistics momentum (the reference's 1e-5 and 0.9).
    weight_initializer : mxnet.init.Initializer, optional
        Initializer of convolution weights; default :func:`reference_initializer`.
    drop_path : float
        Stochastic depth: in training, drop the residual branch of a sample with this probability (scaling kept
        ones by ``1 / (1 - drop_path)``); 0 (the default) leaves the block as it is.
    prefix, params
        Gluon's naming and parameter sharing arguments.
"""


class BasicBlock(_ResidualBlock):
    __doc__ = f"""Two 3x3 convolutions with a residual connection (ResNet-18/34).

    Input ``(N, in_channels, H, W)`` float32 (in 'NCHW') gives ``(N, channels, ceil(H/strides), ceil(W/strides))``.

    Parameters
    ----------
    channels : int
        Output channels.
    strides : int
        Stride of the first 3x3 convolution (and of the shortcut when ``downsample``).
{_RESIDUAL_BLOCK_PARAMETERS}"""

    expansion = 1

    def _build(self, layers, channels, strides, in_channels, last_gamma):
        self.conv1 = layers.conv(channels, 3, strides, in_channels)
        self.bn1 = layers.bn(channels)
        self.conv2 = layers.conv(channels, 3, 1, channels)
        self.bn2 = layers.bn(channels, zero_gamma=last_gamma)

    def _body(self, F, x):
        x = F.Activation(self.bn1(self.conv1(x)), act_type="relu")
        return self.bn2(self.conv2(x))


class Bottleneck(_ResidualBlock):
    __doc__ = f"""The ResNet v1.5 bottleneck: 1x1 reduce to ``channels // 4``, 3x3 carrying the stride (v1.5), 1x1 expand,
    with a residual connection.

    Input ``(N, in_channels, H, W)`` float32 (in 'NCHW') gives ``(N, channels, ceil(H/strides), ceil(W/strides))``.

    Parameters
    ----------
    channels : int
        Output channels.
    strides : int
        Stride of the 3x3 convolution (v1.5; v1 strides the first 1x1) and of the shortcut when ``downsample``.
{_RESIDUAL_BLOCK_PARAMETERS}"""

    expansion = 4

    def _build(self, layers, channels, strides, in_channels, last_gamma):
        width = channels // self.expansion
        self.conv1 = layers.conv(width, 1, 1, in_channels)
        self.bn1 = layers.bn(width)
        self.conv2 = layers.conv(width, 3, strides, width)
        self.bn2 = layers.bn(width)
        self.conv3 = layers.conv(channels, 1, 1, width)
        self.bn3 = layers.bn(channels, zero_gamma=last_gamma)

    def _body(self, F, x):
        x = F.Activation(self.bn1(self.conv1(x)), act_type="relu")
        x = F.Activation(self.bn2(self.conv2(x)), act_type="relu")
        return self.bn3(self.conv3(x))


class Stage(nn.HybridSequential):
    """A stage of ``num_blocks`` residual blocks of one type; the first one may downsample.

    Parameters
    ----------
    block : type
        :class:`BasicBlock`, :class:`Bottleneck` or another ``_ResidualBlock`` subclass.
    num_blocks : int
        Number of residual blocks (0.1's ``blocks``, deprecated).
    channels : int
        Output channels of every block.
    strides : int
        Stride of the first block.
    in_channels : int
        Input channels of the first block.
    last_gamma : bool
        As for :class:`Bottleneck`.
    layout : {'NCHW', 'NHWC'}
        Tensor layout of inputs, outputs and every layer; 'NHWC' needs a GPU.
    bn_epsilon, bn_momentum : float
        BatchNorm epsilon and running-statistics momentum (the reference's 1e-5 and 0.9).
    weight_initializer : mxnet.init.Initializer, optional
        Initializer of convolution weights; default :func:`reference_initializer`.
    prefix, params
        Gluon's naming and parameter sharing arguments.
    blocks : int, optional
        Deprecated name of ``num_blocks``.

    Raises
    ------
    TypeError
        Without ``num_blocks`` or ``channels``.
    ValueError
        For ``num_blocks < 1``, or a ``layout`` :func:`check_layout` refuses.
    """

    def __init__(self, block: Type[_ResidualBlock], num_blocks: Optional[int] = None, channels: Optional[int] = None,
                 strides: int = 1, *, in_channels: int = 0, last_gamma: bool = True, layout: str = "NCHW",
                 bn_epsilon: float = 1e-5, bn_momentum: float = 0.9,
                 weight_initializer: Optional[mx.init.Initializer] = None, prefix=None, params=None,
                 blocks: Optional[int] = None):
        super().__init__(prefix=prefix, params=params)
        if blocks is not None:
            deprecated("Stage(blocks=...)", "Stage(num_blocks=...) (a count of residual blocks)")
            num_blocks = blocks if num_blocks is None else num_blocks
        if num_blocks is None or channels is None:
            raise TypeError("Stage needs num_blocks and channels, e.g. Stage(Bottleneck, 3, 256)")
        if num_blocks < 1:
            raise ValueError(f"Stage needs at least one block, got num_blocks={num_blocks}")
        options = dict(last_gamma=last_gamma, layout=layout, bn_epsilon=bn_epsilon, bn_momentum=bn_momentum,
                       weight_initializer=weight_initializer)
        in_channels = in_channels or channels
        with self.name_scope():
            self.add(block(channels, strides, strides != 1 or in_channels != channels, in_channels=in_channels,
                           **options))
            for _ in range(num_blocks - 1):
                self.add(block(channels, 1, False, in_channels=channels, **options))


class ResNet(HybridBlock):
    """A ResNet v1.5 classifier built from a residual block type and the number of blocks per stage.

    Input is ``(N, in_channels, H, W)`` in 'NCHW' (``(N, H, W, in_channels)`` in 'NHWC'), float32 or the AMP
    dtype, normalised images of any size >= 32 px; output ``(N, classes)`` logits (no softmax).

    Parameters
    ----------
    block : type
        :class:`BasicBlock` (ResNet-18/34) or :class:`Bottleneck` (ResNet-50/101/152).
    layers : sequence of int
        Residual blocks in each stage, e.g. ``(3, 4, 6, 3)`` for ResNet-50.
    classes : int
        Number of output classes.
    in_channels : int
        Image channels, passed to the :class:`Stem`: 3 (RGB), or 4 for RGB padded with a zero channel (the
        reference's ``pad_output`` DALI input on GPUs).
    stem_channels : int
        Channels of the stem and of the first stage's inner width.
    last_gamma : bool
        Zero-initialise the last BatchNorm gamma of every residual block (the reference's default).
    layout : {'NCHW', 'NHWC'}
        Tensor layout of inputs, outputs and every layer; 'NHWC' needs a GPU.
    bn_epsilon, bn_momentum : float
        BatchNorm epsilon and running-statistics momentum (the reference's 1e-5 and 0.9).
    weight_initializer : mxnet.init.Initializer, optional
        Initializer of convolution weights; default :func:`reference_initializer`.
    drop_path_rate : float
        Stochastic depth of the last residual block, linear from 0 over the blocks (:func:`set_drop_path_rate`;
        "ResNet strikes back" A1/A2: 0.05); 0 (the default): none. Training mode only.
    prefix, params
        Gluon's naming and parameter sharing arguments.

    Attributes
    ----------
    features : HybridSequential
        Everything before the classifier (stem, stages, global average pool, flatten): images
        ``(N, in_channels, H, W)`` float32 -> features ``(N, num_features)``, for transfer learning.
    output : Dense
        The classifier, ``num_features`` -> ``classes``.

    Raises
    ------
    ValueError
        For ``classes < 1``, or a ``layout`` :func:`check_layout` refuses.
    """

    def __init__(self, block: Type[_ResidualBlock], layers: Sequence[int], *, classes: int = 1000,
                 in_channels: int = 3, stem_channels: int = 64, last_gamma: bool = True, layout: str = "NCHW",
                 bn_epsilon: float = 1e-5, bn_momentum: float = 0.9,
                 weight_initializer: Optional[mx.init.Initializer] = None, drop_path_rate: float = 0.0,
                 prefix=None, params=None):
        super().__init__(prefix=prefix, params=params)
        if classes < 1:
            raise ValueError(f"classes must be >= 1, got {classes}")
        layer_options = _Layers(layout, bn_epsilon, bn_momentum, weight_initializer).options()
        self.layout = layout
        self.classes = classes
        channels = stem_channels
        with self.name_scope():
            self.features = nn.HybridSequential(prefix="")
            self.features.add(Stem(stem_channels, in_channels=in_channels, **layer_options))
            for i, num_blocks in enumerate(layers):
                out_channels = stem_channels * 2 ** i * block.expansion
                self.features.add(Stage(block, num_blocks, out_channels, 1 if i == 0 else 2, in_channels=channels,
                                        last_gamma=last_gamma, **layer_options))
                channels = out_channels
            self.features.add(nn.GlobalAvgPool2D(layout=layout), nn.Flatten())
            self.num_features = channels
            self.output = nn.Dense(classes, in_units=channels, weight_initializer=layer_options["weight_initializer"])
        set_drop_path_rate(self, drop_path_rate)

    def hybrid_forward(self, F, x):
        return self.output(self.features(x))
