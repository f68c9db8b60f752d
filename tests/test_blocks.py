import mxnet as mx
import numpy as np
import pytest

from resnet_gluon.models.blocks import BasicBlock, Bottleneck, ResNet, Stage, Stem, reference_initializer


def _run(block, shape):
    block.initialize()
    return block(mx.nd.random.normal(shape=shape))


def test_stem_quarters_the_resolution():
    assert _run(Stem(64), (2, 3, 64, 64)).shape == (2, 64, 16, 16)
    assert _run(Stem(32, in_channels=1), (1, 1, 33, 33)).shape == (1, 32, 9, 9)


@pytest.mark.parametrize("block,channels", [(BasicBlock, 32), (Bottleneck, 64)])
def test_downsampling_block_halves_resolution(block, channels):
    out = _run(block(channels, 2, True, in_channels=16), (2, 16, 16, 16))
    assert out.shape == (2, channels, 8, 8)


def test_identity_block_with_zero_gamma_is_relu_of_input():
    x = mx.nd.random.normal(shape=(2, 64, 8, 8))
    block = Bottleneck(64, in_channels=64, last_gamma=True)
    block.initialize()
    with mx.autograd.predict_mode():
        np.testing.assert_allclose(block(x).asnumpy(), mx.nd.relu(x).asnumpy(), atol=1e-6)


def test_bottleneck_channels_must_divide_by_expansion():
    with pytest.raises(ValueError, match="multiple of 4"):
        Bottleneck(30)


def test_stage_builds_blocks_and_downsamples_only_first():
    stage = Stage(Bottleneck, 3, 512, 2, in_channels=256)
    assert len(stage) == 3
    assert stage[0].downsample is not None and stage[1].downsample is None and stage[2].downsample is None
    assert _run(stage, (1, 256, 8, 8)).shape == (1, 512, 4, 4)
    with pytest.raises(ValueError, match="at least one block"):
        Stage(BasicBlock, 0, 64)
    with pytest.raises(TypeError, match="needs num_blocks and channels"):
        Stage(BasicBlock, channels=64)


def test_stage_blocks_keyword_of_0_1_warns_and_means_num_blocks():
    with pytest.warns(DeprecationWarning, match=r"Stage\(blocks=...\).*Stage\(num_blocks=...\)"):
        stage = Stage(BasicBlock, blocks=2, channels=16)
    assert len(stage) == 2 and len(Stage(BasicBlock, num_blocks=3, channels=16)) == 3


def test_custom_depth_from_one_class():
    net = ResNet(BasicBlock, (1, 1), classes=4, stem_channels=16)
    net.initialize()
    assert net.num_features == 32
    assert net(mx.nd.zeros((2, 3, 32, 32))).shape == (2, 4)
    with pytest.raises(ValueError, match="classes must be >= 1"):
        ResNet(BasicBlock, (1,), classes=0)


def test_reference_initializer_scale():
    conv = mx.gluon.nn.Conv2D(256, 3, in_channels=128, weight_initializer=reference_initializer())
    conv.initialize()
    std = conv.weight.data().asnumpy().std()
    assert abs(std - np.sqrt(2.0 / (128 * 9))) < 0.05 * np.sqrt(2.0 / (128 * 9))


def test_blocks_hybridize_to_the_same_output():
    block = Bottleneck(64, 2, True, in_channels=32, last_gamma=False)
    block.initialize()
    x = mx.nd.random.normal(shape=(2, 32, 8, 8))
    eager = block(x).asnumpy()
    block.hybridize()
    np.testing.assert_allclose(block(x).asnumpy(), eager, atol=1e-5)


def test_four_channel_stem_with_zero_fourth_channel_matches_three_channels():
    # The reference's padded input (DALI pad_output): RGB plus a zero channel. A 4-channel net whose first three
    # stem input channels carry a 3-channel net's weights must give the same logits.
    from resnet_gluon import get_model

    assert get_model("resnet50_v1_5", classes=10, in_channels=4).features[0].conv.weight.shape == (64, 4, 7, 7)
    net4 = ResNet(BasicBlock, (1, 1), classes=5, stem_channels=16, in_channels=4, last_gamma=False)
    net3 = ResNet(BasicBlock, (1, 1), classes=5, stem_channels=16, in_channels=3, last_gamma=False)
    net4.initialize()
    net3.initialize()
    params4, params3 = list(net4.collect_params().values()), list(net3.collect_params().values())
    assert len(params4) == len(params3)
    for p4, p3 in zip(params4, params3):
        w = p4.data()
        p3.set_data(w[:, :3] if p4 is net4.features[0].conv.weight else w)
    x3 = mx.nd.random.normal(shape=(2, 3, 32, 32))
    x4 = mx.nd.concat(x3, mx.nd.zeros((2, 1, 32, 32)), dim=1)
    with mx.autograd.predict_mode():
        out3, out4 = net3(x3).asnumpy(), net4(x4).asnumpy()
        nonzero = net4(mx.nd.concat(x3, mx.nd.ones((2, 1, 32, 32)), dim=1)).asnumpy()
    np.testing.assert_allclose(out4, out3, rtol=1e-5, atol=1e-5)
    assert np.abs(nonzero - out3).max() > 1e-3  # the 4th channel is really read


def _pair(rate, hybridize):
    """A small ResNet with stochastic depth and the same network without it, sharing the weights."""
    nets = [ResNet(BasicBlock, (2, 2), classes=4, stem_channels=8, last_gamma=False, drop_path_rate=r)
            for r in (rate, 0.0)]
    nets[0].initialize(mx.init.Xavier())
    nets[1].initialize()
    for a, b in zip(nets[0].collect_params().values(), nets[1].collect_params().values()):
        b.set_data(a.data())
    if hybridize:
        for net in nets:
            net.hybridize()
    return nets


@pytest.mark.parametrize("hybridize", [False, True])
def test_drop_path_is_a_no_op_in_predict_mode_and_in_export(hybridize, tmp_path):
    from resnet_gluon.models.checkpoint import export_checkpoint

    net, plain = _pair(0.5, hybridize)
    x = mx.nd.random.normal(shape=(6, 3, 32, 32))
    expected = plain(x).asnumpy()
    np.testing.assert_allclose(net(x).asnumpy(), expected, rtol=1e-5, atol=1e-6)
    with mx.autograd.record(train_mode=False):
        np.testing.assert_allclose(net(x).asnumpy(), expected, rtol=1e-5, atol=1e-6)
    with mx.autograd.train_mode():  # ... and it does act in training mode
        assert np.abs(net(x).asnumpy() - plain(x).asnumpy()).max() > 1e-3
    net.hybridize()
    symbol, params = export_checkpoint(net, str(tmp_path / "dp"), input_shape=(1, 3, 32, 32))
    imported = mx.gluon.SymbolBlock.imports(symbol, ["data"], params)
    np.testing.assert_allclose(imported(x).asnumpy(), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("hybridize", [False, True])
def test_drop_path_drops_whole_branches_at_the_rate(hybridize):
    rate, n = 0.3, 4000
    block = BasicBlock(4, in_channels=4, last_gamma=False, drop_path=rate)
    block.initialize(mx.init.Xavier())
    if hybridize:
        block.hybridize()
    x = mx.nd.random.normal(shape=(n, 4, 3, 3))
    with mx.autograd.train_mode():
        out = block(x).asnumpy().reshape(n, -1)
        body = block._body(mx.nd, x).asnumpy().reshape(n, -1)  # deterministic: BatchNorm on the same batch
    xs = x.asnumpy().reshape(n, -1)
    dropped = np.isclose(out, np.maximum(xs, 0), atol=1e-5).all(axis=1)
    kept = np.isclose(out, np.maximum(xs + body / (1 - rate), 0), atol=1e-4).all(axis=1)
    assert (dropped ^ kept).all()  # each sample: the whole branch, or none of it
    sd = np.sqrt(rate * (1 - rate) / n)
    assert abs(dropped.mean() - rate) < 4 * sd, dropped.mean()


def test_drop_path_rate_is_linear_over_blocks():
    from resnet_gluon import resnet50_v1_5
    from resnet_gluon.models.blocks import set_drop_path_rate

    net = ResNet(BasicBlock, (2, 2), classes=4, stem_channels=8, drop_path_rate=0.3)
    rates = [b.drop_path for stage in list(net.features)[1:3] for b in stage]
    np.testing.assert_allclose(rates, [0.0, 0.1, 0.2, 0.3])
    assert net.drop_path_rate == 0.3
    big = resnet50_v1_5(drop_path_rate=0.05)
    rates = [b.drop_path for stage in list(big.features)[1:5] for b in stage]
    assert len(rates) == 16 and rates[0] == 0.0 and rates[-1] == pytest.approx(0.05)
    np.testing.assert_allclose(np.diff(rates), 0.05 / 15)
    set_drop_path_rate(big, 0.0)
    assert big.drop_path_rate == 0.0 and not any(b.drop_path for s in list(big.features)[1:5] for b in s)
    with pytest.raises(ValueError, match="needs residual blocks; Dense has none"):
        set_drop_path_rate(mx.gluon.nn.Dense(2), 0.1)
    with pytest.raises(ValueError, match=r"drop_path_rate must be in \[0, 1\), got 1.0"):
        ResNet(BasicBlock, (1,), drop_path_rate=1.0)
