import numpy as np
import pytest
import cv2

from resnet_gluon import data, pipelines
from helpers import jpeg, make_records, smooth_image

MEAN = np.array(data.IMAGENET_MEAN, np.float32)
STD = np.array(data.IMAGENET_STD, np.float32)


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
    prep = data.Preprocessing(image_size=64, resize=72)
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
    files = data.write_records(tmp_path / "train", items)
    prep = data.Preprocessing(image_size=32, resize=32)
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
    prep = data.Preprocessing(image_size=16, resize=16, area=(0.5, 1.0))
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
    prep = data.Preprocessing(image_size=24, resize=28, layout="NHWC", dtype="float16")
    batch, label = next(iter(pipelines.DALIPipeline(files.rec, batch_size=4, train=False, preprocessing=prep)))
    assert batch.shape == (4, 24, 24, 3) and batch.dtype == np.float16 and label.shape == (4,)


def test_synthetic_data_interface():
    prep = data.Preprocessing(image_size=32, resize=32)
    synth = pipelines.make_pipeline("synthetic", batch_size=8, train=True, preprocessing=prep, num_batches=3,
                                    classes=10)
    batches = list(synth)
    assert len(synth) == len(batches) == 3
    assert batches[0][0].shape == (8, 3, 32, 32) and batches[0][1].asnumpy().max() < 10


def test_bad_inputs(tmp_path):
    files, _ = make_records(tmp_path / "d", 6)
    with pytest.raises(ValueError, match=r"batch_size=4 is larger than a shard .* \(3 images with 2 shard"):
        pipelines.DALIPipeline(files.rec, batch_size=4, train=True, shard_id=0, num_shards=2)
    with pytest.raises(ValueError, match="unknown data backend 'dali'"):
        pipelines.make_pipeline("dali", files.rec, batch_size=2, train=True)
    with pytest.raises(FileNotFoundError, match="data root .* does not exist"):
        pipelines.imagenet(tmp_path / "nope", batch_size=2)
    with pytest.raises(FileNotFoundError, match="train.rec' does not exist"):
        pipelines.imagenet(tmp_path, batch_size=2)  # holds only d.rec


def test_corrupt_record_error_says_how_to_find_it(tmp_path):
    rng = np.random.RandomState(0)
    items = [(0, jpeg(smooth_image(rng, 20, 20)), "a"), (0, b"\xff\xd8\xff\xe0 broken", "b")]
    files = data.write_records(tmp_path / "c", items)
    with pytest.raises(RuntimeError, match=r"(?s)c\.rec' at record 1 \(byte \d+\).*check_records") as err:
        list(pipelines.DALIPipeline(files.rec, batch_size=2, train=False,
                                    preprocessing=data.Preprocessing(image_size=16, resize=16)))
    assert "frame 0" not in str(err.value)  # no C++ stack trace in the message


def test_training_epochs_are_reproducible_for_resume(tmp_path):
    files, _ = make_records(tmp_path / "d", 12, size=(24, 24), label_is_index=True)
    prep = data.Preprocessing(image_size=16, resize=16, area=(0.3, 1.0))

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
    from resnet_gluon import runtime

    monkeypatch.setattr(runtime, "_usable_cores", lambda: 16)
    assert runtime.default_data_threads(1) == 3                    # the reference's --dali-threads
    assert runtime.default_data_threads(8) == 2
    assert runtime.cpu_thread_defaults(4)["OMP_NUM_THREADS"] == "4"
    monkeypatch.setattr(runtime, "_usable_cores", lambda: 2)
    assert runtime.default_data_threads(1) == 2
    assert runtime.default_data_threads(2) == 1
