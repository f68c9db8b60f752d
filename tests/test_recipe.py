"""Recipe presets, their record in checkpoints, the BCE loss, --recipe on the command line."""
import json
import subprocess
import sys
import warnings

import mxnet as mx
import numpy as np
import pytest

from helpers import REPO, ArrayBatches, quadrant_problem, tiny_net
from resnet_gluon import Checkpoint, Recipe, fit
from resnet_gluon.models import checkpoint
from resnet_gluon.models.blocks import BasicBlock, ResNet
from resnet_gluon.train.recipe import PRESETS


def _quiet(name, **overrides):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Recipe.preset(name, **overrides)


def _small(**kwargs):
    net = ResNet(BasicBlock, (1, 1), classes=4, stem_channels=8, **kwargs)
    net.model_name = "small"
    return net


def test_presets_by_name_and_their_values():
    assert Recipe.preset("reference") == Recipe() == Recipe.reference()
    for name in PRESETS:
        assert _quiet(name).name == name
    later = _quiet("later_release")  # NVIDIA's later MXNet README and fit.py defaults
    assert (later.schedule, later.lr_per_256, later.momentum, later.wd, later.label_smoothing, later.warmup_epochs) \
        == ("cosine", 0.256, 0.875, 3.0517578125e-05, 0.1, 5)
    assert later.no_wd_bn_bias and later.epochs == 90 and later.lr is None
    mlperf = _quiet("mlperf")
    assert (mlperf.optimizer, mlperf.lr, mlperf.batch_size, mlperf.epochs, mlperf.warmup_epochs) == \
        ("lars", 10.5, 3264, 37, 2)
    assert (mlperf.schedule, mlperf.poly_power, mlperf.final_lr, mlperf.wd, mlperf.lars_eta) == \
        ("poly", 2.0, 1e-4, 5e-5, 0.001)
    assert mlperf.label_smoothing == 0.1 and mlperf.no_wd_bn_bias and not mlperf.trust_ratio_bn_bias
    a3 = _quiet("rsb_a3")
    assert (a3.optimizer, a3.lr, a3.batch_size, a3.wd, a3.epochs, a3.schedule, a3.warmup_epochs) == \
        ("lamb", 8e-3, 2048, 0.02, 100, "cosine", 5)
    assert (a3.loss, a3.label_smoothing, a3.mixup, a3.drop_path_rate) == ("bce", 0.0, 0.1, 0.0)
    assert (a3.cutmix, a3.auto_augment, a3.random_erasing) == (1.0, "rand-m6-n2-inc1", 0.0)
    for name, values in (("rsb_a2", (300, 5e-3, 0.02, 0.0, 0.1, 0.05, "rand-m7-n2-inc1", None)),
                         ("rsb_a1", (600, 5e-3, 0.01, 0.1, 0.2, 0.05, "rand-m7-n2-inc1", None))):
        r = _quiet(name)  # the paper's Table 1, as mmpretrain's and openmixup's configs reproduce it
        assert (r.epochs, r.lr, r.wd, r.label_smoothing, r.mixup, r.drop_path_rate, r.auto_augment,
                r.train_image_size) == values
    # A1 and A2 differ from A3 in numbers (and in what is omitted) only
    for name, changed in (("rsb_a2", {"epochs", "lr", "drop_path_rate", "auto_augment"}),
                          ("rsb_a1", {"epochs", "lr", "wd", "label_smoothing", "mixup", "drop_path_rate",
                                      "auto_augment"})):
        assert set(a3.differences(_quiet(name))) == changed | {"name", "omitted", "train_image_size"}
    with pytest.raises(ValueError, match="unknown recipe 'rsb_a4'; choose one of reference, later_release"):
        Recipe.preset("rsb_a4")
    with pytest.raises(TypeError, match="unknown recipe option 'lrr'"):
        Recipe.preset("mlperf", lrr=1)


def test_presets_name_what_they_do_not_build():
    with pytest.warns(UserWarning, match=r"recipe 'rsb_a3': resnet_gluon does not build RandAugment's magnitude "
                                         r"noise mstd0.5"):
        a3 = Recipe.rsb_a3()
    assert not any("CutMix" in o for o in a3.omitted) and a3.cutmix == 1.0
    with pytest.warns(UserWarning, match="recipe 'mlperf'"):
        Recipe.preset("mlperf", lr=1.0)
    with pytest.warns(UserWarning, match="recipe 'later_release': resnet_gluon does not build weight decay on the "
                                         "classifier bias"):
        Recipe.later_release()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert Recipe.preset("reference").omitted == () and Recipe.from_dict(a3.to_dict()) == a3


def test_bad_values_are_refused_with_the_field_named():
    for kwargs, message in ((dict(schedule="exp"), "unknown schedule 'exp'; choose one of step, cosine, poly"),
                            (dict(loss="hinge"), "unknown loss 'hinge'; choose one of softmax, bce"),
                            (dict(drop_path_rate=1.0), r"drop_path_rate must be in \[0, 1\)"),
                            (dict(poly_power=0), "poly_power must be > 0"), (dict(final_lr=-1), "final_lr must be"),
                            (dict(batch_size=0), "batch_size must be >= 1")):
        with pytest.raises(ValueError, match=message):
            Recipe(**kwargs)


def test_bce_loss_is_the_mean_binary_cross_entropy_over_classes():
    from resnet_gluon.train.fit import _loss, _targets

    rng = np.random.RandomState(0)
    logits, labels = rng.normal(0, 3, (5, 4)), np.array([0, 3, 1, 1, 2])
    recipe = Recipe(loss="bce", label_smoothing=0.1)
    target = _targets(mx.nd.array(labels), 4, 0.1).asnumpy()
    assert target[0].tolist() == pytest.approx([0.925, 0.025, 0.025, 0.025])
    got = _loss(recipe, 4)(mx.nd.array(logits), mx.nd.array(target)).asnumpy()
    p = 1 / (1 + np.exp(-logits))
    expected = -(target * np.log(p) + (1 - target) * np.log(1 - p)).mean(axis=1)
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    with pytest.raises(ValueError, match="need the class count"):
        _loss(recipe, None)


def test_rsb_a3_trains_and_round_trips_through_the_checkpoint(tmp_path):
    x, y = quadrant_problem(96, size=16)
    vx, vy = quadrant_problem(48, size=16, seed=1)
    recipe = _quiet("rsb_a3", epochs=6, lr=0.03, warmup_epochs=0.5, drop_path_rate=0.05)
    prefix = str(tmp_path / "m")
    mx.random.seed(0)
    net = _small()
    history = fit(net, ArrayBatches(x, y, 16), ArrayBatches(vx, vy, 16), recipe=recipe, dtype="float32",
                  progress=False, callbacks=[Checkpoint(prefix)])
    assert history.history["val_top1"][-1] > 0.75, history.history  # BCE + LAMB learn the 4 quadrants (chance 0.25)
    assert net.drop_path_rate == 0.05 and net.features[2][0].drop_path == pytest.approx(0.05)
    record = checkpoint.read_checkpoint_record(prefix, 6)
    assert record.recipe["name"] == "rsb_a3" and "mstd0.5" in " ".join(record.recipe["omitted"])
    assert Recipe.from_dict(record.recipe) == recipe
    assert Recipe.rsb_a3().differences(Recipe.from_dict(record.recipe)) == {
        "epochs": (100, 6), "lr": (0.008, 0.03), "warmup_epochs": (5, 0.5), "drop_path_rate": (0.0, 0.05)}


def test_stochastic_depth_needs_residual_blocks():
    x, y = quadrant_problem(16, size=8)
    with pytest.raises(ValueError, match="drop_path_rate=0.1 needs residual blocks"):
        fit(tiny_net(), ArrayBatches(x, y, 8), epochs=1, dtype="float32", progress=False, drop_path_rate=0.1)


def _args(*argv):
    from resnet_gluon.cli import _parser

    return _parser().parse_args(["train", *argv])


def test_cli_recipe_flags_change_single_values():
    from resnet_gluon.cli import _recipe

    assert _recipe(_args()) == Recipe()
    with pytest.warns(UserWarning, match="recipe 'rsb_a3'"):
        changed = _recipe(_args("--recipe", "rsb_a3", "--lr", "0.01"))
    assert _quiet("rsb_a3").differences(changed) == {"lr": (0.008, 0.01)}
    with pytest.warns(UserWarning, match="recipe 'rsb_a3'"):
        augmentation = _recipe(_args("--recipe", "rsb_a3", "--auto-augment", "none", "--cutmix", "0",
                                     "--random-erasing", "0.25"))
    differences = _quiet("rsb_a3").differences(augmentation)
    assert differences.pop("omitted")[1] == [o for o in _quiet("rsb_a3").omitted if "Lamb" in o]  # RandAugment's off
    assert differences == {"auto_augment": ("rand-m6-n2-inc1", None), "cutmix": (1.0, 0.0),
                           "random_erasing": (0.0, 0.25)}
    assert _recipe(_args("--auto-augment", "trivialaugment")).auto_augment == "trivialaugment"
    several = _recipe(_args("--lr-schedule", "poly", "--optimizer", "lamb", "--loss", "bce", "--num-epochs", "3",
                            "--drop-path-rate", "0.1", "--warmup-epochs", "0"))
    assert set(Recipe().differences(several)) == {"schedule", "optimizer", "loss", "epochs", "drop_path_rate",
                                                  "warmup_epochs"}
    assert Recipe().differences(_recipe(_args("--lr-steps", "3,6,8", "--test-crop-ratio", "0.95"))) == {
        "lr_steps": ([30, 60, 80], [3, 6, 8]), "test_crop_ratio": (0.875, 0.95)}


def test_cli_train_with_a_recipe_records_it(tmp_path):
    prefix = tmp_path / "m"
    argv = ["train", "--data-backend", "synthetic", "--num-classes", 3, "--arch", "resnet18_v1_5", "--image-size",
            32, "-b", 4, "--synthetic-batches", 2, "--num-epochs", 1, "--dtype", "float32", "--no-progress",
            "--recipe", "mlperf", "--lr", 0.5, "--model-prefix", prefix]
    proc = subprocess.run([sys.executable, "-m", "resnet_gluon", *map(str, argv)], capture_output=True, text=True,
                          timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # warnings as one line each, without the library's file, line and source
    assert "resnet-gluon train: warning: recipe 'mlperf': resnet_gluon does not build" in proc.stderr
    assert "UserWarning" not in proc.stderr and ".py:" not in proc.stderr
    assert "for a global batch" not in proc.stderr  # the lr is the user's, not the preset's for 3264 images
    recipe = json.load(open(f"{prefix}-0001.json"))["recipe"]
    assert _quiet("mlperf").differences(Recipe.from_dict(recipe)) == {"epochs": (37, 1), "lr": (10.5, 0.5)}


@pytest.mark.parametrize("loss,smoothing,mixup", [("softmax", 0.1, 0.0), ("softmax", 0.0, 0.2), ("bce", 0.1, 0.2)])
def test_every_loss_and_target_combination_trains(loss, smoothing, mixup):
    x, y = quadrant_problem(32, size=8)
    history = fit(_small(), ArrayBatches(x, y, 16), epochs=2, dtype="float32", progress=False, lr=0.1,
                  warmup_epochs=0, loss=loss, label_smoothing=smoothing, mixup=mixup)
    assert np.isfinite(history.history["loss"]).all() and history.history["loss"][1] < history.history["loss"][0]


@pytest.mark.parametrize("optimizer", ["lars", "lamb"])
def test_resumed_lars_and_lamb_runs_match_uninterrupted_ones(tmp_path, optimizer):
    x, y = quadrant_problem(48, size=8)
    options = dict(dtype="float32", progress=False, optimizer=optimizer, lr=0.5 if optimizer == "lars" else 0.01,
                   warmup_epochs=1, schedule="poly", no_wd_bn_bias=True)
    final = {}
    for name, stops in (("straight", [3]), ("resumed", [1, 3])):
        for epochs in stops:
            mx.random.seed(0)
            net = _small()
            fit(net, ArrayBatches(x, y, 16), epochs=epochs, callbacks=[Checkpoint(str(tmp_path / name))], **options)
        final[name] = {k: p.data().asnumpy() for k, p in net._collect_params_with_prefix().items()}
    for key, value in final["straight"].items():
        np.testing.assert_allclose(final["resumed"][key], value, rtol=1e-5, atol=1e-6, err_msg=key)


def test_cli_bad_recipe_values_give_one_line_errors(capsys, tmp_path):
    from resnet_gluon.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["train", "--recipe", "rsb_a4"])
    assert exit_.value.code == 2 and "invalid choice: 'rsb_a4'" in capsys.readouterr().err
    argv = ["train", "--data-backend", "synthetic", "--num-classes", "3", "--arch", "resnet18_v1_5", "--image-size",
            "32", "-b", "2", "--synthetic-batches", "1", "--dtype", "float32", "--no-progress",
            "--model-prefix", str(tmp_path / "m")]
    for flags, message in ((["--optimizer", "lasr"], "unknown optimizer 'lasr'; MXNet knows:"),
                           (["--drop-path-rate", "1.5"], "drop_path_rate must be in [0, 1), got 1.5"),
                           (["--auto-augment", "rand-m9-mstd0.5"], "auto_augment 'rand-m9-mstd0.5': mstd0.5"),
                           (["--data-backend", "mxnet", "--data-root", str(tmp_path), "--random-erasing", "0.5"],
                            "'mxnet' backend has no auto_augment or random_erasing")):
        assert main(argv + flags) == 1
        errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
        assert len(errors) == 1 and message in errors[0], errors


def test_a_preset_policy_switches_off_with_none_and_its_omitted_ingredients_follow_the_values():
    a3 = _quiet("rsb_a3", auto_augment="none")
    assert a3.auto_augment is None and not any("RandAugment" in o for o in a3.omitted)
    assert any("Lamb" in o for o in a3.omitted)   # LAMB is still the optimizer
    assert not any("Lamb" in o for o in _quiet("rsb_a3", optimizer="sgd").omitted)
    assert _quiet("mlperf", no_wd_bn_bias=False).omitted == (_quiet("mlperf").omitted[0],)
    assert _quiet("later_release", no_wd_bn_bias=False).omitted == ()
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)   # nothing left to warn about
        Recipe.later_release(no_wd_bn_bias=False)
    from resnet_gluon.data.preprocessing import Preprocessing
    assert Preprocessing(auto_augment="none").auto_augment is None and not Preprocessing(auto_augment="none").augments


def test_ema_warmup_without_a_decay_is_refused():
    with pytest.raises(ValueError, match="ema_warmup is the warm-up of a weight average, and ema_decay is 0"):
        Recipe(ema_warmup=True)
    assert Recipe(ema_warmup=True, ema_decay=0.99).ema_warmup


def test_a_warmup_longer_than_the_run_warns():
    x, y = quadrant_problem(16, size=8)
    with pytest.warns(UserWarning, match=r"the lr warm-up \(5 epochs\) is longer than the run \(2 epochs\): the lr never "
                                         r"reaches its peak"):
        fit(_small(), ArrayBatches(x, y, 8), epochs=2, dtype="float32", progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        fit(_small(), ArrayBatches(x, y, 8), epochs=2, dtype="float32", progress=False, warmup_epochs=1)


def test_resuming_with_another_optimizer_is_refused_not_a_crash(tmp_path):
    x, y = quadrant_problem(16, size=8)
    prefix = str(tmp_path / "m")
    options = dict(dtype="float32", progress=False, warmup_epochs=0, lr=0.01)
    fit(_small(), ArrayBatches(x, y, 8), epochs=1, optimizer="lamb", callbacks=[Checkpoint(prefix)], **options)
    for other in ("sgd", "lars"):   # SGD's Updater asserted on LAMB's states; LARS failed to unpack them
        with pytest.raises(ValueError, match=f"it was trained with optimizer 'lamb' .* this run asks for '{other}'"):
            fit(_small(), ArrayBatches(x, y, 8), epochs=2, optimizer=other, callbacks=[Checkpoint(prefix)], **options)
    history = fit(_small(), ArrayBatches(x, y, 8), epochs=2, optimizer="lamb", callbacks=[Checkpoint(prefix)],
                  **options)
    assert history.epochs == [1]
