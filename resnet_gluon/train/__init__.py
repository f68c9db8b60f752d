"""Training: the recipe (:mod:`.recipe`), optimizers beyond MXNet's (:mod:`.optimizers`), the
:class:`~.trainer.Trainer` that owns a step (:mod:`.trainer`), the loop ``fit`` (:mod:`.fit`), its callbacks
(:mod:`.callbacks`) and clean stops (:mod:`.stopping`). Horovod and DALI are imported where used. Never imported by
:mod:`resnet_gluon.deploy`.
"""
