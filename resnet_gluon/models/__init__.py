"""Models: the ResNet v1.5 building blocks (:mod:`.blocks`), the model registry and variants (:mod:`.registry`),
weight files of other libraries (:mod:`.weights`), transfer learning (:mod:`.transfer`) and the checkpoint format
(:mod:`.checkpoint`). Imports only :mod:`resnet_gluon._core` of this package.
"""
from .._compat import package_getattr as _package_getattr


def __getattr__(name):  # resnet_gluon.models.<name> of 0.1 (then one module: now .registry): deprecated
    return _package_getattr(__name__, name)
