import os

import numpy as np
import pytest
import cv2

from resnet_gluon.data import folders, pipelines, recordio
from resnet_gluon.data.preprocessing import IMAGENET_MEAN, IMAGENET_STD, Preprocessing
from resnet_gluon.deploy import predictor as inference
from helpers import (IMAGE_KINDS, class_sorted_records, image_kind_references, jpeg, make_records, peak_rss_mb,
                     smooth_image, strip_png, write_image_kinds)

MEAN = np.array(IMAGENET_MEAN, np.float32)
STD = np.array(IMAGENET_STD, np.float32)


def _denormalise(batch):
    """(N, 3, H, W) normalised float32 -> (N, H, W, 3) on the 0-255 scale."""
    return batch.asnumpy().transpose(0, 2, 3, 1) * STD + MEAN


def _reference_val(jpg_bytes, resize, crop):
    """Independent validation preprocessing with OpenCV: resize the shorter side (area filter, i.e. with
    antialiasing, as DALI does), centre crop. (OpenCV rather than PIL: once DALI/Horovod are loaded in a
    process, PIL's JPEG decoder can fail there with "broken data stream".)"""
    image = cv2.cvtColor(cv2.imdecode(np.frombuffer(jpg_bytes, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    h, w = image.shape[:2]
    scale = resize / min(w, h)
    image = cv2.resize(image, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    h, w = image.shape[:2]
    top, left = (h - crop) // 2, (w - crop) // 2
    return image[top:top + crop, left:left + crop].astype(np.float32)


@pytest.mark.parametrize("backend", ["dali-cpu", "mxnet"])
def test_validation_matches_independent_reference(tmp_path, backend):
    files, items = make_records(tmp_path / "val", 6, size=(120, 160))
    prep = Preprocessing(image_size=64, resize=72)
    pipe = pipelines.make_pipeline(backend, files.rec, batch_size=4, train=False, preprocessing=prep)
    got, labels = [], []
    for batch, label in pipe:
        assert batch.dtype == np.float32 and batch.shape[1:] == (3, 64, 64)
        got.append(_denormalise(batch))
        labels += label.asnumpy().tolist()
    got = np.concatenate(got)
    want = np.stack([_reference_val(b, 72, 64) for _, b, _ in items])
    assert labels == [float(lab) for lab, _, _ in items]
    # Resampling filters differ slightly between libraries: on smooth images they agree within a few levels
    # of 255 (measured: mean 0.25-0.35, max 2).
    diff = np.abs(got - want)
    assert diff.mean() < 1.0 and np.percentile(diff, 99) < 3 and diff.max() <= 8, (diff.mean(), diff.max())


def _coordinate_image(size=200):
    """R encodes x and G encodes y (0..255 over the image); B is constant."""
    ramp = np.linspace(0, 255, size, dtype=np.float32)
    image = np.zeros((size, size, 3), np.uint8)
    image[..., 0] = ramp[None, :]
    image[..., 1] = ramp[:, None]
    image[..., 2] = 128
    return image


def test_training_crops_within_bounds_and_flip_half_the_time(tmp_path):
    size = 200
    items = [(0, jpeg(_coordinate_image(size), quality=100), f"{i}") for i in range(200)]
    files = recordio.write_records(tmp_path / "train", items)
    prep = Preprocessing(image_size=32, resize=32)
    pipe = pipelines.DALIPipeline(files.rec, batch_size=50, train=True, preprocessing=prep, seed=7)
    flips, areas, aspects = 0, [], []
    for batch, _ in pipe:
        assert batch.shape == (50, 3, 32, 32) and batch.dtype == np.float32
        for img in _denormalise(batch):
            r, g = img[..., 0], img[..., 1]
            flipped = r[:, 0].mean() > r[:, -1].mean()
            flips += flipped
            # Crop extent from the first/last pixel centres (each is half an output pixel inside the edge).
            x0, x1 = sorted((r[:, 0].mean(), r[:, -1].mean()))
            y0, y1 = g[0, :].mean(), g[-1, :].mean()
            w = (x1 - x0) * 32 / 31 * size / 255
            h = (y1 - y0) * 32 / 31 * size / 255
            areas.append(w * h / size ** 2)
            aspects.append(w / h)
    assert len(areas) == 200
    assert 0.05 * 0.85 <= min(areas) and max(areas) <= 1.0 * 1.05, (min(areas), max(areas))
    assert 0.75 * 0.9 <= min(aspects) and max(aspects) <= 4 / 3 * 1.1, (min(aspects), max(aspects))
    assert np.std(areas) > 0.1  # the crops really vary
    assert 70 <= flips <= 130  # p = 0.5 over 200 images


@pytest.mark.parametrize("backend", ["dali-cpu", "mxnet"])
@pytest.mark.parametrize("train", [True, False])
def test_two_shards_see_every_image_once_with_equal_batch_counts(tmp_path, backend, train):
    files, _ = make_records(tmp_path / "d", 17, size=(20, 20), label_is_index=True)
    prep = Preprocessing(image_size=16, resize=16, area=(0.5, 1.0))
    shards = [pipelines.make_pipeline(backend, files.rec, batch_size=4, train=train, preprocessing=prep,
                                      shard_id=k, num_shards=2) for k in range(2)]
    for _epoch in range(2):
        seen, counts = [], []
        for pipe in shards:
            batches = list(pipe)
            counts.append(len(batches))
            seen += [int(v) for _, label in batches for v in label.asnumpy()]
        assert counts == [len(shards[0])] * 2 == [3, 3]
        assert sorted(seen) == list(range(17))


def test_output_layout_dtype_options(tmp_path):
    files, _ = make_records(tmp_path / "d", 4, size=(40, 40))
    prep = Preprocessing(image_size=24, resize=28, layout="NHWC", dtype="float16")
    batch, label = next(iter(pipelines.DALIPipeline(files.rec, batch_size=4, train=False, preprocessing=prep)))
    assert batch.shape == (4, 24, 24, 3) and batch.dtype == np.float16 and label.shape == (4,)


def test_synthetic_data_interface():
    prep = Preprocessing(image_size=32, resize=32)
    synth = pipelines.make_pipeline("synthetic", batch_size=8, train=True, preprocessing=prep, num_batches=3,
                                    classes=10)
    batches = list(synth)
    assert len(synth) == len(batches) == 3
    assert batches[0][0].shape == (8, 3, 32, 32) and batches[0][1].asnumpy().max() < 10
    with pytest.warns(UserWarning, match="synthetic data is random tensors, made once: its batches get no "
                                         "auto_augment or random_erasing"):
        pipelines.imagenet(backend="synthetic", batch_size=2, classes=3, num_batches=1,
                           preprocessing=Preprocessing(auto_augment="rand-m9-n2"))


def test_bad_inputs(tmp_path):
    files, _ = make_records(tmp_path / "d", 6)
    with pytest.raises(ValueError, match="batch_size must be >= 1, got 0"):
        pipelines.DALIPipeline(files.rec, batch_size=0, train=True)
    with pytest.raises(ValueError, match=r"seed=-1 \(random\) with 2 shards: every shard must read the same"):
        pipelines.DALIPipeline(files.rec, batch_size=4, train=True, shard_id=0, num_shards=2, seed=-1)
    with pytest.raises(ValueError, match=r"shard_id must be in \[0, 2\)"):
        pipelines.RecordIterPipeline(files.rec, batch_size=4, train=True, shard_id=2, num_shards=2)
    with pytest.raises(ValueError, match="unknown data backend 'dali'"):
        pipelines.make_pipeline("dali", files.rec, batch_size=2, train=True)
    with pytest.raises(FileNotFoundError, match="data root .* does not exist"):
        pipelines.imagenet(tmp_path / "nope", batch_size=2)
    with pytest.raises(FileNotFoundError, match="train.rec' does not exist"):
        pipelines.imagenet(tmp_path, batch_size=2)  # holds only d.rec


def test_corrupt_record_error_says_how_to_find_it(tmp_path):
    rng = np.random.RandomState(0)
    items = [(0, jpeg(smooth_image(rng, 20, 20)), "a"), (0, b"\xff\xd8\xff\xe0 broken", "b")]
    files = recordio.write_records(tmp_path / "c", items)
    with pytest.raises(RuntimeError, match=r"(?s)c\.rec' at record 1 \(byte \d+\).*check_records") as err:
        list(pipelines.DALIPipeline(files.rec, batch_size=2, train=False,
                                    preprocessing=Preprocessing(image_size=16, resize=16)))
    assert "frame 0" not in str(err.value)  # no C++ stack trace in the message


def test_training_epochs_are_reproducible_for_resume(tmp_path):
    files, _ = make_records(tmp_path / "d", 12, size=(24, 24), label_is_index=True)
    prep = Preprocessing(image_size=16, resize=16, area=(0.3, 1.0))

    def epoch_batches(pipe):
        return [(x.asnumpy(), y.asnumpy()) for x, y in pipe]

    full = pipelines.DALIPipeline(files.rec, batch_size=4, train=True, preprocessing=prep, seed=11)
    first, second = epoch_batches(full), epoch_batches(full)
    assert not all(np.array_equal(a[1], b[1]) for a, b in zip(first, second))  # reshuffled each epoch
    resumed = pipelines.DALIPipeline(files.rec, batch_size=4, train=True, preprocessing=prep, seed=11)
    resumed.set_epoch(1)
    for (x1, y1), (x2, y2) in zip(second, epoch_batches(resumed)):
        np.testing.assert_array_equal(y1, y2)
        np.testing.assert_array_equal(x1, x2)


def test_default_data_threads_are_the_reference_3_capped_at_a_workers_cores(monkeypatch):
    from resnet_gluon._core import runtime

    monkeypatch.setattr(runtime, "_usable_cores", lambda: 16)
    assert runtime.default_data_threads(1) == 3                    # the reference's --dali-threads
    assert runtime.default_data_threads(8) == 2
    assert runtime.cpu_thread_defaults(4)["OMP_NUM_THREADS"] == "4"
    monkeypatch.setattr(runtime, "_usable_cores", lambda: 2)
    assert runtime.default_data_threads(1) == 2
    assert runtime.default_data_threads(2) == 1


# ---------------------------------------------------------------- issue 12: order, image kinds, small shards
def test_class_sorted_file_trains_in_a_global_order_on_every_shard(tmp_path):
    """Case 1: 3 classes x 1,500 images written class after class; batch 64, 2 shards, 2 epochs."""
    files = class_sorted_records(tmp_path / "sorted")
    prep = Preprocessing(image_size=8, resize=8, area=(0.5, 1.0))
    shards = [pipelines.DALIPipeline(files.rec, batch_size=64, train=True, preprocessing=prep, shard_id=k,
                                     num_shards=2, seed=3) for k in range(2)]
    orders = []
    for epoch in range(2):
        orders.append(np.concatenate([pipe.positions(epoch) for pipe in shards]))
        for pipe in shards:
            labels = [y.asnumpy().astype(int) for _, y in pipe]
            assert len(labels) == len(pipe) == 36
            counts = np.bincount(np.concatenate(labels), minlength=3)
            assert counts.sum() == 2250 and np.all(np.abs(counts - 750) <= 0.2 * 750), (epoch, counts)
            assert not any(len(set(batch)) == 1 for batch in labels if len(batch) == 64)
            assert np.mean([len(set(batch)) for batch in labels]) > 2.9  # was 2.45 reading in file order
    for order in orders:  # every image exactly once per epoch over the shards, in a fresh order each epoch
        assert sorted(order) == list(range(4500))
    assert not np.array_equal(orders[0], orders[1])


def test_record_iter_pipeline_order_on_a_class_sorted_file(tmp_path):
    """Case 1 for mx.io.ImageRecordIter: one shard shuffles the whole file; several would split it into
    class-disjoint parts, so that is refused with the fix."""
    files = class_sorted_records(tmp_path / "sorted", per_class=300)
    prep = Preprocessing(image_size=8, resize=8, area=(0.5, 1.0))
    labels = [y.asnumpy().astype(int) for _, y in
              pipelines.RecordIterPipeline(files.rec, batch_size=64, train=True, preprocessing=prep)]
    assert np.bincount(np.concatenate(labels)).tolist() == [300, 300, 300]
    assert not any(len(set(batch)) == 1 for batch in labels)
    with pytest.raises(ValueError, match=r"sorted.rec' is ordered by class .* re-create it shuffled"):
        pipelines.RecordIterPipeline(files.rec, batch_size=64, train=True, preprocessing=prep, shard_id=0,
                                     num_shards=2)
    shuffled, _ = make_records(tmp_path / "shuffled", 900, classes=3, size=(8, 8))  # labels i % 3: mixed
    pipelines.RecordIterPipeline(shuffled.rec, batch_size=64, train=True, preprocessing=prep, shard_id=0,
                                 num_shards=2)


@pytest.fixture(scope="module")
def prepared_kinds(tmp_path_factory):
    """Every kind that prepare accepts, prepared in a known order; the 6000x4000 photo in its own file."""
    root = tmp_path_factory.mktemp("kinds")
    accepted = [n for n in IMAGE_KINDS if n not in ("truncated.jpg", "anim.gif")]
    write_image_kinds(root / "originals", accepted)
    for group, names in (("small", [n for n in accepted if n != "large.jpg"]), ("large", ["large.jpg"])):
        (root / group / "a").mkdir(parents=True)
        for name in names:
            os.link(root / "originals" / name, root / group / "a" / name)
        folders.images_to_recordio(root / group, root / "data" / group, shuffle=False)
    return root


def _decoded(pipe):
    return np.concatenate([_denormalise(x) for x, _ in pipe])


def _agree(a, b, mean, p99):
    diff = np.abs(a - b)
    assert diff.mean() < mean and np.percentile(diff, 99) < p99, (diff.mean(), np.percentile(diff, 99))


@pytest.mark.parametrize("group", ["small", "large"])
def test_every_image_kind_decodes_alike_everywhere(prepared_kinds, group):
    """Case 5: DALI training and validation, ImageRecordIter and the Predictor's preprocess read each prepared
    image alike, upright (EXIF applied at prepare time) and CMYK not inverted."""
    rec = str(prepared_kinds / "data" / f"{group}.rec")
    names = [line.split("\t")[2].strip().split(os.sep)[-1] for line in open(rec[:-4] + ".lst")]
    prep = Preprocessing(image_size=32, resize=36)
    val = {backend: _decoded(pipelines.make_pipeline(backend, rec, batch_size=4, train=False, preprocessing=prep))
           for backend in ("dali-cpu", "mxnet")}
    records = inference.preprocess([b for _, b in recordio.read_records(rec)], prep)
    originals = inference.preprocess([str(prepared_kinds / "originals" / n) for n in names
                                      if n != "exif6.jpg"], prep)
    upright = inference.preprocess([image_kind_references([n])[n] for n in names], prep)
    to_pixels = lambda batch: batch.transpose(0, 2, 3, 1) * STD + MEAN  # noqa: E731
    _agree(val["dali-cpu"], val["mxnet"], 1.0, 3)
    _agree(val["dali-cpu"], to_pixels(records), 1.0, 3)
    _agree(val["dali-cpu"], to_pixels(upright), 2.0, 6)  # the pixels each kind shows: no rotation, no inversion
    _agree(np.delete(val["dali-cpu"], names.index("exif6.jpg"), 0) if "exif6.jpg" in names else val["dali-cpu"],
           to_pixels(originals), 2.0, 6)  # the Predictor on the original files (lossy re-encoding: +q95 JPEG)
    for i, name in enumerate(names):  # per image too: one bad kind cannot hide in the mean
        _agree(val["dali-cpu"][i], to_pixels(upright)[i], 3.0, 10)
    # training (the whole image: area 1, the image's aspect, no flip) equals the squashed full image
    h, w = image_kind_references([names[0]])[names[0]].shape[:2]
    train_prep = Preprocessing(image_size=32, resize=32, area=(1.0, 1.0), aspect=(w / h, w / h), flip=0.0)
    train = _decoded(pipelines.DALIPipeline(rec, batch_size=4, train=True, preprocessing=train_prep))
    order = np.argsort(pipelines.DALIPipeline(rec, batch_size=4, train=True).positions(0))
    squashed = np.stack([cv2.resize(image_kind_references([n])[n], (32, 32), interpolation=cv2.INTER_AREA)
                         for n in names]).astype(np.float32)
    _agree(train[order], squashed, 2.5, 8)


def test_predictor_applies_exif_orientation_like_prepare(prepared_kinds):
    """A photo with EXIF orientation 6 given to the Predictor is decoded upright, as prepare stores it."""
    prep = Preprocessing(image_size=32, resize=36)
    original = inference.preprocess([str(prepared_kinds / "originals" / "exif6.jpg")], prep)
    upright = inference.preprocess([image_kind_references(["exif6.jpg"])["exif6.jpg"]], prep)
    assert np.abs(original - upright).mean() * STD.mean() < 3.0


def _tiny_net(classes=3):
    import mxnet as mx

    from resnet_gluon.models.blocks import BasicBlock, ResNet

    net = ResNet(BasicBlock, (1,), classes=classes, stem_channels=8)
    net.initialize(mx.init.Xavier(rnd_type="gaussian", magnitude=2), ctx=mx.cpu())
    return net


@pytest.mark.parametrize("backend", ["dali-cpu", "mxnet"])
@pytest.mark.parametrize("count,batch_size", [(9, 16), (9, 4)])
def test_small_validation_sets_give_the_same_top1_on_1_2_3_shards(tmp_path, backend, count, batch_size):
    """Case 6: 9 validation images with -b 16, and -n 3 -b 4 (shares smaller than a batch): partial batches,
    every image counted once, the same top-1 (summed over workers as evaluate does)."""
    from resnet_gluon.evaluation import evaluate

    files, _ = make_records(tmp_path / "val", count, classes=3, size=(24, 24))
    prep = Preprocessing(image_size=16, resize=18)
    net = _tiny_net()
    results = {}
    for num_shards in (1, 2, 3):
        correct = seen = 0
        for shard in range(num_shards):
            pipe = pipelines.make_pipeline(backend, files.rec, batch_size=batch_size, train=False,
                                           preprocessing=prep, shard_id=shard, num_shards=num_shards)
            batches = list(pipe)
            assert len(batches) == len(pipe) == -(-(-(-count // num_shards)) // batch_size)
            assert all(x.shape[0] <= batch_size and x.shape[1:] == (3, 16, 16) for x, _ in batches)
            assert batches[0][0].shape[0] == min(batch_size, len(pipelines.shard_positions(count, shard, num_shards)))
            logs = evaluate(net, pipe)
            correct += logs["val_top1"] * logs["val_num_images"]
            seen += logs["val_num_images"]
        results[num_shards] = (seen, correct / seen)
    assert results[1][0] == results[2][0] == results[3][0] == count
    assert results[1][1] == pytest.approx(results[2][1], abs=1e-9) == pytest.approx(results[3][1], abs=1e-9)


@pytest.mark.parametrize("backend", ["dali-cpu", "mxnet"])
@pytest.mark.parametrize("train", [True, False])
def test_empty_shards_give_empty_batches_of_the_right_shape(tmp_path, backend, train):
    """4 images on 3 shards with batch 4: shard sizes differ (and with ImageRecordIter's split one is empty),
    yet every shard gives len() batches, the missing ones empty with the trailing shape (3, H, W)."""
    files, _ = make_records(tmp_path / "d", 4, size=(20, 20), label_is_index=True)
    prep = Preprocessing(image_size=16, resize=16, area=(0.5, 1.0))
    seen = []
    for shard in range(3):
        pipe = pipelines.make_pipeline(backend, files.rec, batch_size=4, train=train, preprocessing=prep,
                                       shard_id=shard, num_shards=3)
        batches = list(pipe)
        assert len(batches) == len(pipe) == 1
        assert all(x.shape[1:] == (3, 16, 16) and y.shape == (x.shape[0],) for x, y in batches)
        seen += [int(v) for _, y in batches for v in y.asnumpy()]
    assert sorted(seen) == [0, 1, 2, 3]
    tiny, _ = make_records(tmp_path / "two", 2, size=(20, 20))
    empty = pipelines.make_pipeline(backend, tiny.rec, batch_size=4, train=train, preprocessing=prep, shard_id=2,
                                    num_shards=3)
    (x, y), = list(empty)
    assert x.shape == (0, 3, 16, 16) and y.shape == (0,) and x.dtype == np.float32


# ---------------------------------------------------------------- issue 22, item 4: extreme aspect ratios
def _png(rgb):
    return cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))[1].tobytes()


def test_dali_validation_window_gives_yesterdays_pixels(tmp_path):
    """Resizing only the window the centre crop keeps gives the pixels of DALI's resize_shorter + crop (the
    graph of before, built here), for shrinking, enlarging and extreme shapes (lossless PNG records of noise)."""
    from nvidia import dali
    from nvidia.dali import fn, types

    rng = np.random.RandomState(0)
    shapes = [(375, 500), (500, 375), (40, 48), (3, 200), (257, 300), (1000, 999)]
    files = recordio.write_records(tmp_path / "v", [(i, _png(rng.randint(0, 256, s + (3,)).astype(np.uint8)), f"{i}.png")
                                                for i, s in enumerate(shapes)])
    prep = Preprocessing()

    @dali.pipeline_def(batch_size=len(shapes), num_threads=1, device_id=None)
    def before():
        encoded, _ = fn.readers.mxnet(path=[files.rec], index_path=[files.idx])
        images = fn.resize(fn.decoders.image(encoded, output_type=types.RGB), resize_shorter=prep.resize)
        return fn.crop_mirror_normalize(images, crop=(prep.image_size, prep.image_size), mean=list(prep.mean),
                                        std=list(prep.std), dtype=types.FLOAT, output_layout="CHW")

    old = before()
    old.build()
    want = np.stack([np.array(x) for x in old.run()[0]])
    got = np.concatenate([x.asnumpy() for x, _ in pipelines.DALIPipeline(files.rec, batch_size=len(shapes),
                                                                         train=False, preprocessing=prep)])
    diff = np.abs(got - want) * STD[:, None, None]  # on the 0-255 scale
    assert diff.max() < 1.01 and diff.mean() < 0.01, (diff.max(), diff.mean())


@pytest.mark.slow
def test_extreme_aspect_ratio_costs_dali_no_more_memory_than_an_ordinary_image(tmp_path):
    """A 1 x 4000 image through the DALI validation pipeline took 1.25 GB against 0.46 GB for ordinary ones
    (a 1,024,000 x 256 intermediate); now its peak, with the training pipeline's random resized crop too, is
    within 1.2x of a 500 x 375 photo's (each in a fresh process, one image at 224 px)."""
    from resnet_gluon.data.images import for_records

    strip, _ = for_records(strip_png(4000, 1), name="strip.png")  # as prepare stores it
    photo = jpeg(smooth_image(np.random.RandomState(0), 375, 500))
    peaks = {}
    for name, encoded in (("photo", photo), ("strip", strip)):
        files = recordio.write_records(tmp_path / name, [(0, encoded, name)])
        peaks[name] = peak_rss_mb(f"""
from resnet_gluon import pipelines
for train in (False, True):
    pipe = pipelines.DALIPipeline({files.rec!r}, batch_size=1, train=train, num_threads=1)
    (x, y), = list(pipe)
    assert x.shape == (1, 3, 224, 224), x.shape
""")
    print(f"peak memory (MB): {peaks}")
    assert peaks["strip"] <= 1.2 * peaks["photo"], peaks
