"""Data: RecordIO files (:mod:`.recordio`), image decoding (:mod:`.images`), data sets from image folders
(:mod:`.folders`) and from the embedded Fashion-MNIST (:mod:`.fashion_mnist`), the preprocessing spec and the CPU
validation transform (:mod:`.preprocessing`), sharding over workers (:mod:`.sharding`) and the training and
validation pipelines (:mod:`.pipelines`). Imports only :mod:`resnet_gluon._core` of this package.
"""
from .._compat import package_getattr as _package_getattr


def __getattr__(name):  # resnet_gluon.data.<name> of 0.1 (then one module: now .recordio): deprecated
    return _package_getattr(__name__, name)
