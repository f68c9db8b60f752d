"""Deployment: the :class:`~.predictor.Predictor` (:mod:`.predictor`), INT8 quantization (:mod:`.quantization`),
ONNX export (:mod:`.export`) and the OpenVINO engine (:mod:`.openvino`). Never imports :mod:`resnet_gluon.train` or
Horovod.
"""
