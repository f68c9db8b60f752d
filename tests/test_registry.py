import os
import subprocess
import sys

import mxnet as mx
import numpy as np
import pytest

import resnet_gluon as rg
from resnet_gluon.models.blocks import Bottleneck
from resnet_gluon.models.checkpoint import checkpoint_files
from resnet_gluon.models.weights import save_gluoncv_parameters

PUBLISHED_COUNTS = {
    "resnet18_v1_5": 11_689_512,
    "resnet34_v1_5": 21_797_672,
    "resnet50_v1_5": 25_557_032,
    "resnet101_v1_5": 44_549_160,
    "resnet152_v1_5": 60_192_808,
}


def _randomise(net, seed=1):
    """Give every parameter (running statistics too) random values, so no branch is a zero/identity."""
    rng = np.random.RandomState(seed)
    for name, p in net.collect_params().items():
        if name.endswith("running_var"):
            value = rng.uniform(0.5, 1.5, p.shape)
        elif name.endswith(("gamma", "running_mean", "beta")):
            value = rng.uniform(-0.5, 1.0, p.shape)
        else:
            value = rng.normal(0, np.sqrt(2.0 / max(1, np.prod(p.shape[1:]))), p.shape)
        p.set_data(mx.nd.array(value))


def test_registry_lists_every_variant():
    assert rg.list_models() == sorted(PUBLISHED_COUNTS)


@pytest.mark.parametrize("name", sorted(PUBLISHED_COUNTS))
def test_parameter_counts_match_published(name):
    assert rg.count_parameters(rg.get_model(name, classes=1000)) == PUBLISHED_COUNTS[name]


def test_unknown_model_lists_valid_names():
    with pytest.raises(ValueError, match="resnet50_v1_5"):
        rg.get_model("resnet51")


def test_v1_5_stride_on_3x3():
    stage2_first = rg.resnet50_v1_5().features[2][0]
    assert isinstance(stage2_first, Bottleneck)
    assert stage2_first.conv1._kwargs["stride"] == (1, 1)
    assert stage2_first.conv2._kwargs["stride"] == (2, 2)
    assert stage2_first.downsample[0]._kwargs["stride"] == (2, 2)


def test_last_gamma_zero_initialised():
    net = rg.resnet50_v1_5(classes=10)
    net.initialize()
    assert all((b.bn3.gamma.data() == 0).asnumpy().all() for stage in net.features[1:5] for b in stage)
    net = rg.resnet50_v1_5(classes=10, last_gamma=False)
    net.initialize()
    assert (net.features[1][0].bn3.gamma.data() == 1).asnumpy().all()


def _gluoncv_v1b():
    gluoncv = pytest.importorskip("gluoncv")  # part of the pinned test stack; absent only outside it
    net = gluoncv.model_zoo.resnet50_v1b(pretrained=False, classes=1000)
    net.initialize()
    net(mx.nd.zeros((1, 3, 32, 32)))
    return net


def test_parity_with_gluoncv_resnet50_v1b(tmp_path):
    ours = rg.resnet50_v1_5(classes=1000)
    ours.initialize()
    _randomise(ours)
    theirs = _gluoncv_v1b()
    save_gluoncv_parameters(ours, tmp_path / "v1b.params")
    theirs.load_parameters(str(tmp_path / "v1b.params"))
    x = mx.nd.random.normal(shape=(2, 3, 64, 64))
    np.testing.assert_allclose(ours(x).asnumpy(), theirs(x).asnumpy(), atol=1e-4, rtol=0)
    with mx.autograd.record(train_mode=True):
        a, b = ours(x), theirs(x)
    np.testing.assert_allclose(a.asnumpy(), b.asnumpy(), atol=1e-4, rtol=0)

    # and back: gluoncv's own file loads into ours
    theirs.save_parameters(str(tmp_path / "theirs.params"))
    back = rg.resnet50_v1_5(classes=1000)
    rg.load_parameters(back, tmp_path / "theirs.params")
    np.testing.assert_allclose(back(x).asnumpy(), theirs(x).asnumpy(), atol=1e-4, rtol=0)


def test_hybridized_equals_imperative_and_export_roundtrip(tmp_path):
    net = rg.resnet18_v1_5(classes=7)
    net.initialize()
    _randomise(net)
    x = mx.nd.random.normal(shape=(3, 3, 48, 48))
    imperative = net(x).asnumpy()
    net.hybridize()
    hybrid = net(x).asnumpy()
    np.testing.assert_allclose(hybrid, imperative, atol=1e-5, rtol=1e-5)

    symbol_file, params_file = rg.export_checkpoint(net, tmp_path / "model", 3)
    files = checkpoint_files(tmp_path / "model", 3)
    assert (symbol_file, params_file) == (files.symbol, files.params)
    assert sorted(os.listdir(tmp_path)) == ["model-0003.params", "model-symbol.json"]
    imported = mx.gluon.SymbolBlock.imports(symbol_file, ["data"], params_file)
    np.testing.assert_allclose(imported(x).asnumpy(), imperative, atol=1e-5, rtol=1e-5)
    ours = rg.resnet18_v1_5(classes=7)
    rg.load_parameters(ours, params_file)
    np.testing.assert_allclose(ours(x).asnumpy(), imperative, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("size,classes", [(32, 10), (64, 3), (224, 1000)])
def test_output_shapes(size, classes):
    net = rg.resnet50_v1_5(classes=classes)
    net.initialize()
    assert net(mx.nd.zeros((2, 3, size, size))).shape == (2, classes)
    assert net.features(mx.nd.zeros((1, 3, size, size))).shape == (1, 2048)


def test_load_errors_name_the_parameter(tmp_path):
    src = rg.resnet18_v1_5(classes=10)
    src.initialize()
    src.save_parameters(str(tmp_path / "r18.params"))
    with pytest.raises(ValueError, match=r"output\.weight.*shape \(10, 512\).*\(5, 512\)"):
        rg.load_parameters(rg.resnet18_v1_5(classes=5), tmp_path / "r18.params")
    with pytest.raises(ValueError, match=r"'features\.1\.0\.conv1\.weight' has shape \(64, 64, 3, 3\)"):
        rg.load_parameters(rg.resnet50_v1_5(classes=10), tmp_path / "r18.params")
    partial = {k: v for k, v in mx.nd.load(str(tmp_path / "r18.params")).items()}
    del partial["features.2.0.bn1.gamma"]
    mx.nd.save(str(tmp_path / "partial.params"), partial)
    with pytest.raises(ValueError, match=r"lacks parameter 'features\.2\.0\.bn1\.gamma'"):
        rg.load_parameters(rg.resnet18_v1_5(classes=10), tmp_path / "partial.params")
    partial["features.9.extra"] = mx.nd.zeros(1)
    partial["features.2.0.bn1.gamma"] = mx.nd.ones(128)
    mx.nd.save(str(tmp_path / "extra.params"), partial)
    with pytest.raises(ValueError, match=r"'features\.9\.extra' that the network lacks"):
        rg.load_parameters(rg.resnet18_v1_5(classes=10), tmp_path / "extra.params")
    with pytest.raises(FileNotFoundError, match="no parameter file"):
        rg.load_parameters(rg.resnet18_v1_5(), tmp_path / "missing.params")


def test_nhwc_on_cpu_fails_at_construction():
    if mx.context.num_gpus():
        pytest.skip("this machine has a GPU, where NHWC is supported")
    with pytest.raises(ValueError, match="layout='NHWC' needs a GPU"):
        rg.resnet50_v1_5(layout="NHWC")


def test_bad_layout():
    with pytest.raises(ValueError, match="layout must be one of"):
        rg.resnet18_v1_5(layout="CHWN")


def test_import_needs_only_mxnet_and_prints_no_warning():
    code = ("import sys, warnings\n"
            "with warnings.catch_warnings(record=True) as seen:\n"
            "    warnings.simplefilter('always')\n"
            "    import resnet_gluon; resnet_gluon.resnet50_v1_5()\n"
            "ours = [str(w.message) for w in seen if 'resnet_gluon' in w.filename]\n"
            "assert not ours, ours\n"
            "assert 'horovod' not in sys.modules and 'nvidia.dali' not in sys.modules, sorted(sys.modules)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == "" and proc.stdout.strip() == "", proc.stderr
