"""Namings of weights files: Hugging Face transformers' ResNets (every depth), the unknown-naming error (it lists the
supported namings), and messages that name only options the called function has."""
import json

import mxnet as mx
import numpy as np
import pytest
from safetensors.numpy import save_file

import resnet_gluon as rg
from resnet_gluon.models.transfer import load_pretrained
from resnet_gluon.models.weights import load_parameters
from helpers import state_dict_file, torchvision_file, torchvision_state_dict_shapes

# microsoft/resnet-{18,34,50,101,152}'s config.json (transformers' ResNetConfig): layer_type, depths, hidden_sizes;
# embedding_size 64, downsample_in_first_stage and downsample_in_bottleneck false.
TRANSFORMERS = {"resnet18_v1_5": ("basic", (2, 2, 2, 2), (64, 128, 256, 512)),
                "resnet34_v1_5": ("basic", (3, 4, 6, 3), (64, 128, 256, 512)),
                "resnet50_v1_5": ("bottleneck", (3, 4, 6, 3), (256, 512, 1024, 2048)),
                "resnet101_v1_5": ("bottleneck", (3, 4, 23, 3), (256, 512, 1024, 2048)),
                "resnet152_v1_5": ("bottleneck", (3, 8, 36, 3), (256, 512, 1024, 2048))}
TORCHVISION_KEYS = {"resnet18_v1_5": 122, "resnet34_v1_5": 218, "resnet50_v1_5": 320, "resnet101_v1_5": 626,
                    "resnet152_v1_5": 932}


def transformers_state_dict_shapes(layer_type, depths, hidden_sizes, *, num_labels=1000, prefix="resnet."):
    """(key, shape) of ResNetForImageClassification's state dict, in module order, written from transformers'
    models/resnet/modeling_resnet.py (ResNetConvLayer, ResNetShortCut, ResNet{Basic,BottleNeck}Layer, ResNetStage,
    ResNetEncoder), not from our code. ``prefix=''``, ``num_labels=0``: ResNetModel's (no classifier)."""
    entries = []

    def conv_layer(p, cin, cout, k):
        entries.append((f"{p}.convolution.weight", (cout, cin, k, k)))
        entries.extend([(f"{p}.normalization.{f}", (cout,)) for f in ("weight", "bias", "running_mean", "running_var")]
                       + [(f"{p}.normalization.num_batches_tracked", ())])

    conv_layer(f"{prefix}embedder.embedder", 3, 64, 7)
    stages = [(64, hidden_sizes[0], 1)] + [(hidden_sizes[i], hidden_sizes[i + 1], 2) for i in range(len(depths) - 1)]
    for s, ((cin, cout, stride), depth) in enumerate(zip(stages, depths)):
        for i in range(depth):
            c_in, st, p = (cin, stride, f"{prefix}encoder.stages.{s}.layers.{i}") if i == 0 else \
                (cout, 1, f"{prefix}encoder.stages.{s}.layers.{i}")
            if c_in != cout or st != 1:
                conv_layer(f"{p}.shortcut", c_in, cout, 1)
            if layer_type == "bottleneck":
                conv_layer(f"{p}.layer.0", c_in, cout // 4, 1)
                conv_layer(f"{p}.layer.1", cout // 4, cout // 4, 3)  # v1.5: stride here (downsample_in_bottleneck)
                conv_layer(f"{p}.layer.2", cout // 4, cout, 1)
            else:
                conv_layer(f"{p}.layer.0", c_in, cout, 3)
                conv_layer(f"{p}.layer.1", cout, cout, 3)
    if num_labels:
        entries += [("classifier.1.weight", (num_labels, hidden_sizes[-1])), ("classifier.1.bias", (num_labels,))]
    return entries


def transformers_to_torchvision(key):
    """The same module in torchvision's naming (both libraries' module structures, by hand)."""
    key = key[len("resnet."):] if key.startswith("resnet.") else key
    key = key.replace("embedder.embedder.convolution", "conv1").replace("embedder.embedder.normalization", "bn1")
    key = key.replace("classifier.1.", "fc.")
    parts = key.split(".")
    if parts[0] == "encoder":  # encoder.stages.S.layers.L.(layer.K|shortcut).(convolution|normalization).field
        stage, block, rest = int(parts[2]), parts[4], parts[5:]
        if rest[0] == "shortcut":
            module = "downsample.0" if rest[1] == "convolution" else "downsample.1"
            rest = rest[2:]
        else:
            module = ("conv" if rest[2] == "convolution" else "bn") + str(int(rest[1]) + 1)
            rest = rest[3:]
        key = ".".join([f"layer{stage + 1}", block, module, *rest])
    return key


def transformers_file(path, name, *, num_labels=1000, prefix="resnet.", **options):
    """A safetensors file of transformers' keys and shapes (options: :func:`state_dict_file`'s)."""
    entries = transformers_state_dict_shapes(*TRANSFORMERS[name], num_labels=num_labels, prefix=prefix)
    return state_dict_file(path, entries, **options)


@pytest.mark.parametrize("name", sorted(TRANSFORMERS))
def test_transformers_names_map_onto_the_modules_torchvision_names(name):
    """The two structures, each written from its own library, are the same modules with the same shapes."""
    block = TRANSFORMERS[name][0]
    theirs = {transformers_to_torchvision(k): s for k, s in transformers_state_dict_shapes(*TRANSFORMERS[name])}
    assert theirs == dict(torchvision_state_dict_shapes(block, TRANSFORMERS[name][1]))
    assert len(theirs) == TORCHVISION_KEYS[name]


@pytest.mark.parametrize("name", ["resnet18_v1_5", "resnet50_v1_5", "resnet101_v1_5"])  # 101: 23 blocks in a stage
def test_transformers_weights_land_where_torchvision_weights_do(tmp_path, name):
    source = transformers_file(tmp_path / "model.safetensors", name, seed=11)
    net = load_parameters(rg.get_model(name), tmp_path / "model.safetensors")
    save_file({transformers_to_torchvision(k): v for k, v in source.items()}, str(tmp_path / "tv.safetensors"))
    reference = load_parameters(rg.get_model(name), tmp_path / "tv.safetensors")
    for (key, a), b in zip(net._collect_params_with_prefix().items(), reference.collect_params().values()):
        assert np.array_equal(a.data().asnumpy(), b.data().asnumpy()), key
    stage2 = "resnet.encoder.stages.1.layers.0"
    assert np.array_equal(net.features[2][0].downsample[1].running_mean.data().asnumpy(),
                          source[f"{stage2}.shortcut.normalization.running_mean"])
    assert np.array_equal(net.features[2][1].conv2.weight.data().asnumpy(),
                          source["resnet.encoder.stages.1.layers.1.layer.1.convolution.weight"])
    assert np.array_equal(net.features[0].bn.gamma.data().asnumpy(),
                          source["resnet.embedder.embedder.normalization.weight"])
    assert np.array_equal(net.output.weight.data().asnumpy(), source["classifier.1.weight"])

    # A NumPy reference of one layer: stage 2's stride-2 shortcut (1x1 convolution + BatchNorm, inference mode).
    x = np.random.RandomState(0).normal(size=(2, TRANSFORMERS[name][2][0], 8, 8)).astype(np.float32)
    w = source[f"{stage2}.shortcut.convolution.weight"][:, :, 0, 0]
    conv = np.einsum("oc,nchw->nohw", w, x[:, :, ::2, ::2])
    bn = {f: source[f"{stage2}.shortcut.normalization.{f}"][None, :, None, None]
          for f in ("weight", "bias", "running_mean", "running_var")}
    expected = (conv - bn["running_mean"]) / np.sqrt(bn["running_var"] + 1e-5) * bn["weight"] + bn["bias"]
    got = net.features[2][0].downsample(mx.nd.array(x)).asnumpy()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_transformers_model_without_head_and_prefix_fine_tunes(tmp_path, capsys):
    """ResNetModel / ResNetBackbone save no 'resnet.' prefix and no classifier."""
    source = transformers_file(tmp_path / "model.safetensors", "resnet18_v1_5", num_labels=0, prefix="")
    net = load_pretrained(rg.resnet18_v1_5(classes=3), tmp_path / "model.safetensors")
    assert np.array_equal(net.features[4][1].bn1.beta.data().asnumpy(),
                          source["encoder.stages.3.layers.1.layer.0.normalization.bias"])
    assert "no classifier, the network 3" in capsys.readouterr().err


def test_transformers_errors_speak_the_files_naming(tmp_path):
    missing = "resnet.encoder.stages.3.layers.2.layer.2.normalization.running_var"
    transformers_file(tmp_path / "holed.safetensors", "resnet50_v1_5", drop=[missing])
    with pytest.raises(ValueError, match=rf"lacks parameter '{missing}' \(shape \(2048,\), network name "
                                         r"'features\.4\.2\.bn3\.running_var'\)"):
        load_parameters(rg.resnet50_v1_5(), tmp_path / "holed.safetensors")
    transformers_file(tmp_path / "plain.safetensors", "resnet18_v1_5", prefix="",
                      drop=["encoder.stages.1.layers.0.shortcut.convolution.weight"])
    with pytest.raises(ValueError, match=r"lacks parameter 'encoder\.stages\.1\.layers\.0\.shortcut\.convolution"
                                         r"\.weight' \(shape \(128, 64, 1, 1\)"):
        load_parameters(rg.resnet18_v1_5(classes=1000), tmp_path / "plain.safetensors", ignore_extra=True)
    transformers_file(tmp_path / "r18.safetensors", "resnet18_v1_5")
    with pytest.raises(ValueError, match=r"'resnet\.encoder\.stages\.0\.layers\.0\.layer\.0\.convolution\.weight' "
                                         r"has shape \(64, 64, 3, 3\) .* but \(64, 64, 1, 1\) in the network"):
        load_parameters(rg.resnet50_v1_5(), tmp_path / "r18.safetensors")


@pytest.mark.parametrize("setting,value,loads", [(None, None, True), ("downsample_in_bottleneck", True, False),
                                                 ("downsample_in_first_stage", True, False),
                                                 ("hidden_act", "gelu", False), ("downsample_in_bottleneck", False,
                                                                                 True)])
def test_transformers_config_beside_the_weights_is_checked(tmp_path, setting, value, loads):
    transformers_file(tmp_path / "model.safetensors", "resnet18_v1_5")
    config = {"model_type": "resnet", "layer_type": "basic", "depths": [2, 2, 2, 2], "embedding_size": 64,
              "hidden_sizes": [64, 128, 256, 512], "hidden_act": "relu"}
    if setting:
        config[setting] = value
    (tmp_path / "config.json").write_text(json.dumps(config))
    if loads:
        load_parameters(rg.resnet18_v1_5(), tmp_path / "model.safetensors")
    else:
        with pytest.raises(ValueError, match=rf"config\.json' sets {setting}=.* but these ResNet v1\.5 networks"):
            load_parameters(rg.resnet18_v1_5(), tmp_path / "model.safetensors")


SUPPORTED = ("Gluon (features.1.0.conv1.weight", "torchvision/timm (layer1.0.conv1.weight",
             "gluoncv resnet*_v1b (", "Hugging Face transformers (resnet.encoder.stages.0.layers.0.layer.0.",
             "exported checkpoint (arg:")


def test_an_unknown_naming_lists_the_supported_ones(tmp_path):
    save_file({"backbone.stem.conv.weight": np.zeros((64, 3, 7, 7), np.float32),
               "head.fc.bias": np.zeros(1000, np.float32)}, str(tmp_path / "other.safetensors"))
    for load in (lambda p: load_parameters(rg.resnet50_v1_5(), p),
                 lambda p: load_parameters(rg.resnet50_v1_5(), p, allow_missing=True, ignore_extra=True),
                 lambda p: load_pretrained(rg.resnet50_v1_5(classes=3), p)):
        with pytest.raises(ValueError, match=r"names its tensors in none of the namings read here \(first key "
                                             r"'backbone\.stem\.conv\.weight'\); supported: ") as err:
            load(tmp_path / "other.safetensors")
        message = str(err.value)
        assert "\n" not in message and "allow_missing" not in message
        assert all(label in message for label in SUPPORTED), message


def test_gluon_model_zoo_files_are_an_unknown_naming_not_a_lone_classifier(tmp_path):
    """Gluon's model zoo resnet18_v1 names its classifier 'output' as we do, and nothing else alike: loading
    only its classifier is not offered."""
    zoo = mx.gluon.model_zoo.vision.resnet18_v1()
    zoo.initialize()
    zoo(mx.nd.zeros((1, 3, 32, 32)))  # its shapes are inferred on the first call
    zoo.save_parameters(str(tmp_path / "zoo.params"))
    assert "output.weight" in mx.nd.load(str(tmp_path / "zoo.params"))
    with pytest.raises(ValueError, match=r"none of the namings read here \(first key 'features\.0\.weight'\)"):
        load_parameters(rg.resnet18_v1_5(), tmp_path / "zoo.params", allow_missing=True, ignore_extra=True)


def test_hints_name_only_options_the_function_has(tmp_path):
    torchvision_file(tmp_path / "holed.safetensors", "resnet18_v1_5", drop=["layer2.1.bn2.running_mean"])
    with pytest.raises(ValueError, match=r"lacks parameter 'layer2\.1\.bn2\.running_mean'.*\(allow_missing=True "
                                         r"skips it\)$"):
        load_parameters(rg.resnet18_v1_5(), tmp_path / "holed.safetensors")
    with pytest.raises(ValueError, match=r"lacks parameter 'layer2\.1\.bn2\.running_mean'") as err:
        load_pretrained(rg.resnet18_v1_5(classes=4), tmp_path / "holed.safetensors")
    assert "allow_missing" not in str(err.value) and "=True" not in str(err.value)
    torchvision_file(tmp_path / "extra.safetensors", "resnet18_v1_5", extra={"layer5.0.conv1.weight": np.ones(2, "f")})
    with pytest.raises(ValueError, match=r"'layer5\.0\.conv1\.weight' that the network lacks \(1 in all; "
                                         r"ignore_extra=True skips them\)"):
        load_parameters(rg.resnet18_v1_5(), tmp_path / "extra.safetensors")
    with pytest.raises(ValueError, match=r"'layer5\.0\.conv1\.weight' that the network lacks \(1 in all\)$"):
        load_pretrained(rg.resnet18_v1_5(classes=4), tmp_path / "extra.safetensors")


def test_two_keys_for_one_parameter_are_refused(tmp_path):
    torchvision_file(tmp_path / "twice.safetensors", "resnet18_v1_5", extra={"bn1.gamma": np.ones(64, "f")})
    with pytest.raises(ValueError, match=r"two tensors for parameter 'features\.0\.bn\.gamma': 'bn1\.(weight|gamma)' "
                                         r"and 'bn1\.(gamma|weight)'"):
        load_parameters(rg.resnet18_v1_5(), tmp_path / "twice.safetensors")
