"""Augmentation beyond the reference: DALI auto-augment policies and random erasing, mixup/CutMix, their replay."""
import signal
import warnings

import mxnet as mx
import numpy as np
import pytest

from helpers import ArrayBatches, make_records, quadrant_problem
from resnet_gluon import Checkpoint, Recipe, fit
from resnet_gluon.data import pipelines
from resnet_gluon.data.preprocessing import IMAGENET_MEAN, IMAGENET_STD, Preprocessing
from resnet_gluon.data.augmentation import SWITCH_PROB, cutmix_box, mix_batch, mixing_rng, parse_auto_augment
from resnet_gluon.models.blocks import BasicBlock, ResNet
from resnet_gluon.train.stopping import TrainingStopped
from resnet_gluon.train.callbacks import Callback

LOW = (0 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)    # normalised value of 0, per channel
HIGH = (255 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
POLICIES = ["rand-m9-n2", "rand-m7-n2-inc1", "trivialaugment", "autoaugment"]


# ------------------------------------------------------------------------------------------ option strings
def test_auto_augment_strings():
    assert parse_auto_augment("rand-m9-n2") == dict(policy="rand", n=2, m=9, increasing=False)
    assert parse_auto_augment("rand-m7-mstd0-inc1") == dict(policy="rand", n=2, m=7, increasing=True)
    assert parse_auto_augment("rand") == dict(policy="rand", n=2, m=10, increasing=False)   # timm's defaults
    assert parse_auto_augment("trivialaugment") == dict(policy="trivialaugment")
    assert parse_auto_augment(None) is None
    for bad, why in (("rand-m11", "magnitude m11 is above 10"), ("rand-m9-mstd0.5", "mstd0.5 .* not available"),
                     ("rand-m9.5", ".*whole numbers"), ("rand-inc2", ".*inc 0 or 1"), ("rand-x1", "not a known"),
                     ("original", "not a known"), ("rand-n0", "n0 applies no operation"), ("rand-", "not a known")):
        with pytest.raises(ValueError, match=f"auto_augment '{bad}': {why}.*e.g. 'rand-m9-n2'"):
            parse_auto_augment(bad)
    with pytest.raises(ValueError, match="auto_augment 'rand-m12'"):
        Preprocessing(auto_augment="rand-m12")
    with pytest.raises(ValueError, match="random_erasing is a probability in"):
        Preprocessing(random_erasing=1.5)
    with pytest.raises(ValueError, match="auto_augment 'rand-m9-mstd1'"):
        Recipe(auto_augment="rand-m9-mstd1")


# ------------------------------------------------------------------------------------------ DALI augmentation
@pytest.fixture(scope="module")
def records(tmp_path_factory):
    files, _ = make_records(tmp_path_factory.mktemp("aug") / "a", 16, size=(40, 40), label_is_index=True)
    return files


def _run(files, seed=3, epoch=0, device="cpu", **options):
    """One training epoch of 16 images at 32 px. The crop is the whole image, unflipped, so that without the
    options every run gives the same images: what differs is the options' doing. In record order (the label).
    ``device='gpu'``: DALI's GPU pipeline, batches on ``mx.gpu(0)``."""
    prep = Preprocessing(image_size=32, resize=32, area=(1.0, 1.0), aspect=(1.0, 1.0), flip=0.0, **options)
    gpu = dict(device="gpu", ctx=mx.gpu(0)) if device == "gpu" else {}
    pipe = pipelines.DALIPipeline(files.rec, batch_size=8, train=True, preprocessing=prep, seed=seed, **gpu)
    pipe.set_epoch(epoch)
    batches = [(x.asnumpy(), y.asnumpy()) for x, y in pipe]
    images, labels = np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches])
    return images[np.argsort(labels)]


@pytest.mark.parametrize("policy", POLICIES)
def test_auto_augment_changes_images_within_range_and_replays_by_seed(records, policy):
    plain, augmented = _run(records), _run(records, auto_augment=policy)
    assert augmented.shape == plain.shape == (16, 3, 32, 32) and augmented.dtype == np.float32
    # uint8 images before normalisation: every value is a level of 0-255
    levels = augmented * np.array(IMAGENET_STD)[:, None, None] + np.array(IMAGENET_MEAN)[:, None, None]
    assert np.abs(levels - np.round(levels)).max() < 1e-3 and levels.min() > -1e-3 and levels.max() < 255 + 1e-3
    changed = [np.abs(a - b).max() > 0.05 for a, b in zip(augmented, plain)]
    assert sum(changed) >= 10, changed   # some draws are identity (or no-ops on that image); most are not
    np.testing.assert_array_equal(augmented, _run(records, auto_augment=policy))   # same seed: same images
    assert not np.array_equal(augmented, _run(records, seed=4, auto_augment=policy))


@pytest.mark.gpu
@pytest.mark.parametrize("options", [dict(auto_augment=policy) for policy in POLICIES] + [dict(random_erasing=1.0)],
                         ids=[*POLICIES, "erasing"])
def test_augmentation_in_the_gpu_pipeline_changes_images_within_range_and_replays_by_seed(records, options):
    plain, augmented = _run(records, device="gpu"), _run(records, device="gpu", **options)
    assert augmented.shape == plain.shape == (16, 3, 32, 32) and augmented.dtype == np.float32
    if "auto_augment" in options:   # uint8 levels before normalisation
        levels = augmented * np.array(IMAGENET_STD)[:, None, None] + np.array(IMAGENET_MEAN)[:, None, None]
        assert np.abs(levels - np.round(levels)).max() < 1e-2 and levels.min() > -1e-2 and levels.max() < 255.01
    assert sum(np.abs(a - b).max() > 0.05 for a, b in zip(augmented, plain)) >= 10
    np.testing.assert_array_equal(augmented, _run(records, device="gpu", **options))   # same seed: same images
    assert not np.array_equal(augmented, _run(records, seed=4, device="gpu", **options))


def test_random_erasing_boxes_of_noise_at_the_stated_rate(records):
    plain, erased = _run(records), _run(records, random_erasing=1.0)
    np.testing.assert_array_equal(erased, _run(records, random_erasing=1.0))
    noise = []
    for a, b in zip(erased, plain):
        box = np.any(a != b, axis=0)
        rows, cols = np.where(box)
        assert box.sum() == (rows.ptp() + 1) * (cols.ptp() + 1)   # one rectangle, the rest untouched
        height, width = rows.ptp() + 1, cols.ptp() + 1
        # timm's rule: area a fraction 0.02-1/3 of 32 x 32, aspect (h / w) 0.3-1/0.3, each side rounded to a
        # whole pixel, so the drawn area and aspect lie within half a pixel of each side of the box's
        assert (height + 0.5) * (width + 0.5) >= 0.02 * 1024 and (height - 0.5) * (width - 0.5) <= 1024 / 3
        assert (height + 0.5) / (width - 0.5) >= 0.3 and (height - 0.5) / (width + 0.5) <= 1 / 0.3
        noise.append(a[:, box].ravel())
    noise = np.concatenate(noise)
    assert abs(noise.mean()) < 0.1 and abs(noise.std() - 1) < 0.1   # N(0, 1) on the normalised scale
    some = [_run(records, seed=s, random_erasing=0.5) for s in range(4)]
    rate = np.mean([np.any(a != b) for run in some for a, b in zip(run, plain)])
    assert 0.25 < rate < 0.75, rate   # 64 images at p = 0.5: 4 standard deviations


def test_augmentation_in_other_layouts_dtypes_and_train_sizes_keeps_the_padded_channel_zero(records):
    prep = Preprocessing(image_size=32, resize=32, train_image_size=24, layout="NHWC", dtype="float16",
                              pad_output=True, auto_augment="rand-m9-n2", random_erasing=1.0)
    x = next(iter(pipelines.DALIPipeline(records.rec, batch_size=8, train=True, preprocessing=prep)))[0].asnumpy()
    assert x.shape == (8, 24, 24, 4) and x.dtype == np.float16   # training crops of train_image_size
    assert not x[..., 3].any() and np.isfinite(x).all()


def test_a_resumed_epoch_replays_the_augmentation(records):
    options = dict(auto_augment="trivialaugment", random_erasing=0.5)
    prep = Preprocessing(image_size=32, resize=32, **options)
    full = pipelines.DALIPipeline(records.rec, batch_size=8, train=True, preprocessing=prep, seed=5)
    [x.asnumpy() for x, _ in full]
    second = [x.asnumpy() for x, _ in full]
    resumed = pipelines.DALIPipeline(records.rec, batch_size=8, train=True, preprocessing=prep, seed=5)
    resumed.set_epoch(1)
    for a, b in zip(second, [x.asnumpy() for x, _ in resumed]):
        np.testing.assert_array_equal(a, b)


def test_the_mxnet_backend_refuses_augmentation_it_cannot_do(records):
    with pytest.raises(ValueError, match="'mxnet' backend has no auto_augment or random_erasing; use a DALI"):
        pipelines.make_pipeline("mxnet", records.rec, batch_size=4, train=True,
                                preprocessing=Preprocessing(image_size=32, resize=32, random_erasing=0.5))


# ------------------------------------------------------------------------------------------ mixup and CutMix
def _labelled_batch(n=8, classes=8, size=(12, 20), layout="NCHW"):
    """Image i is the constant i + 1 (so a pixel tells where it came from); label i."""
    shape = (n, 3) + size if layout == "NCHW" else (n,) + size + (3,)
    x = mx.nd.array(np.broadcast_to(np.arange(1, n + 1, dtype=np.float32).reshape((n,) + (1,) * 3), shape))
    return x, mx.nd.one_hot(mx.nd.arange(n), classes)


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_cutmix_labels_weigh_the_pasted_area(layout):
    x, target = _labelled_batch(layout=layout)
    for draw in range(20):
        mixed, mixed_target, info = mix_batch(x, target, cutmix=1.0, rng=mixing_rng(0, 0, draw), layout=layout)
        assert info["kind"] == "cutmix"
        mixed, mixed_target = mixed.asnumpy(), mixed_target.asnumpy()
        np.testing.assert_allclose(mixed_target.sum(axis=1), 1, rtol=1e-6)
        for i, j in enumerate(info["perm"]):
            own = (mixed[i] == i + 1).mean()     # the share of image i's pixels still its own
            if i == j:
                assert (mixed[i] == i + 1).all() and mixed_target[i, i] == pytest.approx(1)
                continue
            pasted = (mixed[i] == j + 1).mean()
            assert own + pasted == pytest.approx(1)
            assert mixed_target[i, i] == pytest.approx(own, abs=1e-6) == pytest.approx(info["lam"], abs=1e-6)
            assert mixed_target[i, j] == pytest.approx(pasted, abs=1e-6)
    np.testing.assert_array_equal(x.asnumpy()[:, 0, 0, 0], np.arange(1, 9))   # the input is left as it was


def test_cutmix_box_follows_the_paper():
    rng = np.random.Generator(np.random.PCG64(0))
    boxes = [cutmix_box(100, 60, 0.64, rng) for _ in range(2000)]
    inside = [b for b in boxes if b[0] > 0 and b[1] < 100 and b[2] > 0 and b[3] < 60]
    # unclipped boxes have sides sqrt(1 - lam) = 0.6 of the image's (rounded down to even, as timm's)
    assert all(b[1] - b[0] == 60 and b[3] - b[2] == 36 for b in inside) and len(inside) > 100
    centres = np.array([((b[0] + b[1]) / 2, (b[2] + b[3]) / 2) for b in inside])
    assert centres.min() > 0 and centres[:, 0].max() < 100


def test_with_both_on_a_batch_takes_one_of_them_cutmix_half_the_time():
    x, target = _labelled_batch()
    kinds = [mix_batch(x, target, mixup=0.2, cutmix=1.0, rng=mixing_rng(1, 0, s))[2]["kind"] for s in range(400)]
    assert set(kinds) == {"mixup", "cutmix"}
    assert abs(kinds.count("cutmix") / 400 - SWITCH_PROB) < 4 * np.sqrt(0.25 / 400)
    mixed, mixed_target, info = mix_batch(x, target, mixup=0.2, rng=mixing_rng(1, 0, 0))
    lam, perm = info["lam"], info["perm"]
    np.testing.assert_allclose(mixed.asnumpy()[:, 0, 0, 0], lam * np.arange(1, 9) + (1 - lam) * (perm + 1), rtol=1e-5)
    np.testing.assert_allclose(mixed_target.asnumpy().sum(axis=1), 1, rtol=1e-6)


def test_mixing_draws_are_a_function_of_seed_epoch_step_and_rank():
    x, target = _labelled_batch()
    draw = lambda *key: mix_batch(x, target, mixup=0.2, cutmix=1.0, rng=mixing_rng(*key))[2]  # noqa: E731
    a, b = draw(3, 1, 5, 0), draw(3, 1, 5, 0)
    assert (a["kind"], a["lam"], a["box"]) == (b["kind"], b["lam"], b["box"]) and (a["perm"] == b["perm"]).all()
    others = [draw(4, 1, 5, 0), draw(3, 2, 5, 0), draw(3, 1, 6, 0), draw(3, 1, 5, 1)]
    assert all(o["lam"] != a["lam"] for o in others)


def _net():
    mx.random.seed(7)
    return ResNet(BasicBlock, (1,), classes=4, stem_channels=8)


def _fit(prefix, data, callbacks=()):
    return fit(_net(), data, epochs=2, lr=0.1, warmup_epochs=0, progress=False, dtype="float32", read_every=3,
               mixup=0.2, cutmix=1.0, callbacks=[Checkpoint(prefix), *callbacks])


def test_a_resumed_run_replays_mixup_and_cutmix(tmp_path):
    from test_stopping import _signal_main_thread

    x, y = quadrant_problem(48, size=16)   # 6 batches of 8 an epoch
    _fit(str(tmp_path / "ref" / "m"), ArrayBatches(x, y, 8))

    class SigtermAt(Callback):
        def on_batch_end(self, batch, logs):
            if self.state.epoch == 1 and batch == 1:
                _signal_main_thread(signal.SIGTERM)

    prefix = str(tmp_path / "run" / "m")
    with pytest.raises(TrainingStopped):
        _fit(prefix, ArrayBatches(x, y, 8), [SigtermAt()])
    _fit(prefix, ArrayBatches(x, y, 8))
    final_ref, final = (mx.nd.load(f"{p}-0002.params") for p in (str(tmp_path / "ref" / "m"), prefix))
    for (name, a), b in zip(final_ref.items(), final.values()):   # same process, same arithmetic: identical
        np.testing.assert_array_equal(b.asnumpy(), a.asnumpy(), err_msg=name)


# ------------------------------------------------------------------------------------------ recipe and data
def test_fit_refuses_a_pipeline_without_the_recipes_augmentation(records):
    recipe = Recipe(auto_augment="rand-m9-n2", epochs=1)
    plain = pipelines.DALIPipeline(records.rec, batch_size=8, train=True,
                                   preprocessing=Preprocessing(image_size=32, resize=32))
    with pytest.raises(ValueError, match=r"recipe 'reference' asks for \{'auto_augment': 'rand-m9-n2', "
                                         r"'random_erasing': 0.0\}, but the training pipeline applies .*recipe.augment"):
        fit(_net(), plain, recipe=recipe, progress=False, dtype="float32")
    assert recipe.augment(plain.preprocessing).auto_augment == "rand-m9-n2"
    assert Recipe().augment(plain.preprocessing) is plain.preprocessing
    x, y = quadrant_problem(8, size=16)
    with pytest.warns(UserWarning, match="does not say whether it applies them"):
        fit(_net(), ArrayBatches(x, y, 8), recipe=recipe, progress=False, dtype="float32")
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        fit(_net(), ArrayBatches(x, y, 8), epochs=1, warmup_epochs=0, progress=False, dtype="float32")
