"""The inference API: predictor from a checkpoint, validation preprocessing, INT8/bfloat16, ONNX export.

A briefly trained resnet50_v1_5 on the embedded Fashion-MNIST (3,000 training images, 3 epochs, 32 px) is made
once per session; the low-precision models are compared with it on 1,000 test images.
"""
import json
import os
import subprocess
import sys

import cv2
import mxnet as mx
import numpy as np
import pytest

from helpers import (huge_bilevel_png, image_kind_references, jpeg, make_records, peak_rss_mb, smooth_image,
                     strip_png, tiny_net, write_image_kinds)
from resnet_gluon.data import fashion_mnist, recordio
from resnet_gluon.data.preprocessing import Preprocessing
from resnet_gluon import resnet50_v1_5
from resnet_gluon.deploy.predictor import Predictor
from resnet_gluon.data.preprocessing import load_image, preprocess
from resnet_gluon.deploy.export import onnx_logits

IMAGE_SIZE = 32


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(checkpoint prefix, data folder, float32 test top-1 from the DALI validation pipeline)."""
    from resnet_gluon.data import pipelines
    from resnet_gluon.train.callbacks import Checkpoint
    from resnet_gluon.train.fit import fit

    if not os.path.isdir(recordio.FASHION_MNIST_DIR):
        pytest.fail(f"{recordio.FASHION_MNIST_DIR} is missing: tools/setup_env.sh installs dataset-fashion-mnist")
    root = tmp_path_factory.mktemp("fmnist")
    mx.random.seed(0)
    np.random.seed(0)
    fashion_mnist.fashion_mnist_to_recordio(root, image_size=IMAGE_SIZE, train_limit=3000, val_limit=1000)
    pre = Preprocessing.for_size(IMAGE_SIZE, area=(0.75, 1.0))
    train, val = pipelines.imagenet(root, batch_size=32, preprocessing=pre, seed=0, num_shards=1, shard_id=0)
    net = resnet50_v1_5(classes=10)
    prefix = os.path.join(root, "model")
    # Three epochs, not one: after one the model is still moving fast (top-1 ~0.55) and its INT8 copy swings by
    # +-5 points depending on float rounding order alone; after three (~0.70) INT8 agrees on ~98% of images.
    history = fit(net, train, val, epochs=3, lr=0.05, schedule="cosine", warmup_epochs=0.2, progress=False,
                  callbacks=[Checkpoint(prefix, class_names=recordio.FASHION_MNIST_CLASSES, preprocessing=pre)], dtype="float32")
    top1 = history.history["val_top1"][-1]
    assert top1 > 0.3, f"the briefly trained model should learn something (chance: 0.1), got top-1 {top1}"
    return prefix, root, top1


def _val_images(root, n=None):
    items = list(recordio.read_records(os.path.join(root, "val.rec")))[:n]
    return [bytes(b) for _, b in items], np.array([label for label, _ in items])


def _top1(predictor, images, labels):
    logits = predictor.logits(preprocess(images, predictor.preprocessing))
    return float((logits.argmax(1) == labels).mean())


# ------------------------------------------------------------------------------------------ preprocessing
@pytest.mark.parametrize("size,pre", [((40, 48), Preprocessing.for_size(32)),
                                      ((37, 45), Preprocessing(image_size=32, resize=37)),
                                      ((90, 61), Preprocessing(image_size=33, resize=40))])
def test_preprocess_matches_dali_validation(tmp_path, size, pre):
    from resnet_gluon.data.pipelines import DALIPipeline

    _, items = make_records(tmp_path / "r", 8, size=size, seed=1)
    x, _ = next(iter(DALIPipeline(tmp_path / "r.rec", batch_size=8, train=False, preprocessing=pre,
                                  num_shards=1, shard_id=0)))
    mine = preprocess([encoded for _, encoded, _ in items], pre)
    assert mine.shape == (8, 3, pre.image_size, pre.image_size) and mine.dtype == np.float32
    diff = np.abs(mine - x.asnumpy())
    # Same decoder output and crop; the resize differs by interpolation rounding only (1/58 = one grey level).
    assert diff.mean() < 0.02 and diff.max() < 0.15, (diff.mean(), diff.max())


def test_load_image_grayscale_rgba_and_arrays(tmp_path):
    rgb = smooth_image(np.random.RandomState(0), 30, 20)
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    cv2.imwrite(str(tmp_path / "gray.png"), gray)
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 77, np.uint8)])
    cv2.imwrite(str(tmp_path / "rgba.png"), cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA))
    g = load_image(tmp_path / "gray.png")
    assert g.shape == (30, 20, 3) and g.dtype == np.uint8 and (g == gray[:, :, None]).all()
    # alpha 77 of 255: composited onto white, rounded (PNG is lossless, so exactly)
    seen = np.rint((rgb.astype(np.float64) * 77 + 255 * (255 - 77)) / 255).astype(np.uint8)
    assert (load_image(tmp_path / "rgba.png") == seen).all() and (load_image(rgba) == seen).all()
    assert (load_image(gray) == g).all()
    assert (load_image(rgb.astype(np.float32)) == rgb).all()  # floats on the 0-255 scale, as documented
    with pytest.raises(ValueError, match=r"shape \(3, 30, 20\)"):
        load_image(rgb.transpose(2, 0, 1))


def test_not_an_image_is_a_clear_error(tmp_path):
    bad = tmp_path / "notes.jpg"
    bad.write_text("this is not a picture")
    with pytest.raises(ValueError, match="notes.jpg.*not an image"):
        load_image(bad)
    truncated = tmp_path / "cut.jpg"
    truncated.write_bytes(jpeg(smooth_image(np.random.RandomState(0), 40, 40))[:20])
    with pytest.raises(ValueError, match="cut.jpg"):
        preprocess([truncated])
    with pytest.raises(FileNotFoundError, match="missing.png"):
        load_image(tmp_path / "missing.png")


# ------------------------------------------------------------------------------ issue 22: images and inputs
def _resize_then_crop(rgb, pre):
    """Yesterday's validation transform: cv2.resize of the whole image, then the centre crop (0-255 float32)."""
    h, w = rgb.shape[:2]
    scale = pre.resize / min(h, w)
    size = (max(pre.resize, round(w * scale)), max(pre.resize, round(h * scale)))
    resized = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    top, left = int((size[1] - pre.image_size) / 2 + 0.5), int((size[0] - pre.image_size) / 2 + 0.5)
    return resized[top:top + pre.image_size, left:left + pre.image_size].astype(np.float32)


@pytest.mark.parametrize("shape,pre", [((375, 500), Preprocessing()), ((500, 375), Preprocessing()),
                                       ((40, 48), Preprocessing.for_size(32)),
                                       ((400, 1), Preprocessing.for_size(32)),
                                       ((3, 200), Preprocessing.for_size(32)),
                                       ((1000, 999), Preprocessing(image_size=33, resize=40))])
def test_validation_window_gives_yesterdays_pixels(shape, pre):
    """Item 4: resampling only the window the centre crop keeps gives the pixels of resizing the whole image
    and cropping (shrinking, enlarging and extreme shapes), to within one level of rounding."""
    rgb = np.random.RandomState(0).randint(0, 256, shape + (3,)).astype(np.uint8)  # noise: every pixel counts
    got = preprocess([rgb], pre)[0].transpose(1, 2, 0) * np.float32(pre.std) + np.float32(pre.mean)
    diff = np.abs(got - _resize_then_crop(rgb, pre))
    assert diff.max() < 1.01 and diff.mean() < 0.2, (diff.max(), diff.mean())


@pytest.mark.slow
def test_extreme_aspect_ratio_costs_no_more_memory_than_an_ordinary_image(tmp_path):
    """Item 4: one 1 x 4000 PNG (12 KB) through the Predictor at 224 px, in a fresh process, peaks within 1.2x
    of one 500 x 375 JPEG (it took +820 MB and 5 s when the shorter side was resized to 256 first)."""
    (tmp_path / "strip.png").write_bytes(strip_png(4000, 1))
    (tmp_path / "photo.jpg").write_bytes(jpeg(smooth_image(np.random.RandomState(0), 375, 500)))
    peaks = {}
    for name in ("photo.jpg", "strip.png"):
        peaks[name] = peak_rss_mb(f"""
import time
from helpers import tiny_net
from resnet_gluon import Predictor
predictor = Predictor(tiny_net(4))
start = time.perf_counter()
predictor.predict({str(tmp_path / name)!r})
assert time.perf_counter() - start < 2, time.perf_counter() - start
""")
    print(f"peak memory (MB): {peaks}")
    assert peaks["strip.png"] <= 1.2 * peaks["photo.jpg"], peaks


def test_transparent_images_are_read_as_they_look(tmp_path):
    """Item 6: RGBA, LA, palette + tRNS and WebP alpha, whatever colour the transparent pixels hold, decode as
    composited onto white; so do RGBA and gray + alpha arrays."""
    names = ["rgba_black.png", "rgba_white.png", "la.png", "palette.png", "alpha.webp"]
    write_image_kinds(tmp_path, names)
    looks = image_kind_references(names)
    for name in names:
        assert np.array_equal(load_image(tmp_path / name), looks[name]), name
    assert (looks["rgba_black.png"][:, :5] == 255).all()  # the transparent left edge is white, not black
    assert np.array_equal(preprocess([tmp_path / "rgba_black.png"]), preprocess([tmp_path / "rgba_white.png"]))
    rgba = np.dstack([np.zeros((4, 4, 3), np.uint8), np.array([0, 255, 128, 128] * 4, np.uint8).reshape(4, 4)])
    assert load_image(rgba)[0, :, 0].tolist() == [255, 0, 127, 127]  # 255 * 127 / 255 = 127 (rounded)
    la = np.dstack([np.full((2, 2), 100, np.uint8), np.full((2, 2), 0, np.uint8)])
    assert (load_image(la) == 255).all()


def test_array_values_outside_the_expected_range_are_refused():
    """Item 7: a float image in [0, 1] was rounded to {0, 1} and predicted as black; now it, a normalised array,
    uint16 and NaN raise one line saying the range expected, and max_value= accepts other scales."""
    rgb = smooth_image(np.random.RandomState(0), 30, 40)
    want = load_image(rgb)
    cases = {"values in \\[0, 1\\].*max_value=1.0": rgb.astype(np.float32) / 255,
             "values down to -[0-9.]+; expected RGB pixels in \\[0, 255\\], not a normalised": (rgb - 123.7) / 58.4,
             "dtype uint16.*max_value=65535": rgb.astype(np.uint16) * 257,
             "NaN": np.full((4, 4, 3), np.nan, np.float32),
             "values up to 300, above 255": np.full((4, 4, 3), 300.0),
             "dtype bool": rgb > 128}
    for message, array in cases.items():
        with pytest.raises(ValueError, match=message) as err:
            load_image(array)
        assert "\n" not in str(err.value)
    assert np.array_equal(load_image(rgb.astype(np.float32) / 255, max_value=1.0), want)
    assert np.array_equal(load_image(rgb.astype(np.uint16) * 257, max_value=65535), want)
    assert np.array_equal(load_image(np.zeros((3, 3), np.float32)), np.zeros((3, 3, 3), np.uint8))  # black is black
    predictor = Predictor(tiny_net(4), preprocessing=Preprocessing.for_size(32))
    with pytest.raises(ValueError, match=r"^image array is float32 with values in \[0, 1\]"):
        predictor.predict(rgb.astype(np.float32) / 255)
    assert predictor.predict(rgb.astype(np.float32) / 255, max_value=1.0) == predictor.predict(rgb)


def test_decoder_errors_and_paths_are_one_line_naming_the_file(tmp_path):
    """Items 5 and 9: a valid 33000 x 33000 1-bit PNG (132 KB) is over OpenCV's pixel limit; a folder, a broken
    link and a missing file each get their own reason."""
    (tmp_path / "huge.png").write_bytes(huge_bilevel_png(33000))
    with pytest.raises(ValueError, match=r"^'[^']*huge\.png' has 33000 x 33000 pixels, over OpenCV's limit of 2\^30 "
                                         r"pixels \(CV_IO_MAX_IMAGE_PIXELS\); downscale it") as err:
        Predictor(tiny_net(4), preprocessing=Preprocessing.for_size(32)).predict(tmp_path / "huge.png")
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match=r"^'[^']*' is a folder; pass image files"):
        load_image(tmp_path)
    os.symlink(tmp_path / "gone.jpg", tmp_path / "link.jpg")
    with pytest.raises(FileNotFoundError, match=r"link\.jpg' is a broken symbolic link \(to '.*gone\.jpg', which"):
        load_image(tmp_path / "link.jpg")
    with pytest.raises(FileNotFoundError, match=r"^no image file '.*gone\.jpg'$"):
        load_image(tmp_path / "gone.jpg")


def test_predict_command_on_a_folder_and_on_bad_files(tmp_path, capsys):
    """Items 9, 5, 8 on the command line: 'predict some_folder/' said "no image file 'some_folder'"; now it predicts
    the images in the folder (sorted, one line each, sub-folders and other files left out, broken links named);
    a file over OpenCV's pixel limit is a one-line error; a Latin-1 name is printed escaped, on one line."""
    from resnet_gluon.cli import main as cli

    Predictor(tiny_net(3), preprocessing=Preprocessing.for_size(32), class_names=list("xyz")).save(tmp_path / "m")
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    rng = np.random.RandomState(0)
    for name in ("b.jpg", "a.png", "caf\udce9.jpg", "sub/c.jpg", ".hidden.jpg"):
        with open(os.path.join(os.fsencode(folder), os.fsencode(name)), "wb") as f:
            f.write(jpeg(smooth_image(rng, 40, 40)))
    (folder / "notes.txt").write_text("not an image")
    os.symlink(tmp_path / "nowhere.jpg", folder / "gone.jpg")
    assert cli(["predict", "--model-prefix", str(tmp_path / "m"), str(folder), "-k", "2"]) == 0
    out, err = capsys.readouterr()
    lines = out.strip().splitlines()
    assert [line.split(": ")[0] for line in lines] == [f"{folder}/a.png", f"{folder}/b.jpg", f"{folder}/caf\\xe9.jpg"]
    assert all(line.count("(") == 2 for line in lines)  # top-2 classes each
    assert err.strip() == f"warning: skipped 1 broken symbolic link(s) in '{folder}': 'gone.jpg'"
    (tmp_path / "empty").mkdir()
    (tmp_path / "huge.png").write_bytes(huge_bilevel_png(33000))
    for bad, why in ((tmp_path / "empty", "holds no image files"), (tmp_path / "huge.png", "CV_IO_MAX_IMAGE_PIXELS")):
        assert cli(["predict", "--model-prefix", str(tmp_path / "m"), str(bad)]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("resnet-gluon predict: error: ") and why in err[0], err


# ------------------------------------------------------------------------------------------ predictor
def test_predictor_from_checkpoint_matches_validation(trained):
    prefix, root, dali_top1 = trained
    predictor = Predictor.from_checkpoint(prefix)
    assert predictor.preprocessing.image_size == IMAGE_SIZE and predictor.class_names[0] == "T-shirt/top"
    images, labels = _val_images(root)
    top1 = _top1(predictor, images, labels)
    assert abs(top1 - dali_top1) <= 0.01, (top1, dali_top1)
    # Top-k predictions: names, sorted probabilities that sum to at most 1, one result per input.
    results = predictor.predict(images[:3], top_k=3)
    assert len(results) == 3 and all(len(r.classes) == 3 for r in results)
    for r in results:
        assert list(r.probabilities) == sorted(r.probabilities, reverse=True) and sum(r.probabilities) <= 1 + 1e-5
        assert r.name == recordio.FASHION_MNIST_CLASSES[r.label]
    single = predictor.predict(images[0], top_k=20)
    assert single.classes == results[0].classes[:1] + single.classes[1:] and len(single.classes) == 10


def test_predictor_errors(trained, tmp_path):
    prefix, root, _ = trained
    with pytest.raises(ValueError, match="unknown dtype 'int4'"):
        Predictor.from_checkpoint(prefix, dtype="int4")
    with pytest.raises(FileNotFoundError, match="no checkpoint .*model-0007.params.*complete epochs.*: 1, 2, 3"):
        Predictor.from_checkpoint(prefix, 7)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        Predictor.from_checkpoint(tmp_path / "nothing")
    with pytest.raises(ValueError, match="needs calibration data"):
        Predictor.from_checkpoint(prefix, dtype="int8")
    predictor = Predictor.from_checkpoint(prefix)
    with pytest.raises(ValueError, match=r"expected a preprocessed batch of shape \(N, 3, 32, 32\)"):
        predictor.logits(np.zeros((2, 32, 32, 3), np.float32))
    with pytest.raises(ValueError, match="3 class names for a network with 10 outputs"):
        Predictor(predictor.net, preprocessing=predictor.preprocessing, class_names=["a", "b", "c"])


def test_calibration_set_smaller_than_a_batch(trained, tmp_path):
    prefix, _, _ = trained
    make_records(tmp_path / "tiny", 5, size=(32, 32))
    with pytest.raises(ValueError, match="holds 5 images, fewer than one batch of 32"):
        Predictor.from_checkpoint(prefix, dtype="int8", calibration=tmp_path / "tiny.rec")
    with pytest.raises(FileNotFoundError, match="absent.rec"):
        Predictor.from_checkpoint(prefix, dtype="int8", calibration=tmp_path / "absent.rec")


def test_int8_accuracy_and_reload_in_a_fresh_process(trained, tmp_path):
    prefix, root, _ = trained
    images, labels = _val_images(root)
    f32 = Predictor.from_checkpoint(prefix)
    int8 = Predictor.from_checkpoint(prefix, dtype="int8", calibration=os.path.join(root, "train.rec"))
    symbol = json.load(open(int8.save(tmp_path / "int8")[0]))
    assert sum(n.get("attrs", {}).get("quantized") == "true" for n in symbol["nodes"]) >= 50
    top1_f32, top1_int8 = _top1(f32, images, labels), _top1(int8, images, labels)
    print(f"top-1 on {len(labels)} test images: float32 {top1_f32:.4f}, int8 {top1_int8:.4f}")
    agree = float((f32.logits(preprocess(images, f32.preprocessing)).argmax(1) ==
                   int8.logits(preprocess(images, int8.preprocessing)).argmax(1)).mean())
    print(f"INT8 and float32 agree on {agree:.1%} of the images")
    # ~2% of images change class, so the paired top-1 difference has a standard deviation of ~0.5 points
    assert top1_int8 >= top1_f32 - 0.015 and agree >= 0.95, (top1_f32, top1_int8, agree)

    batch = preprocess(images[:16], f32.preprocessing)
    np.save(tmp_path / "batch.npy", batch)
    np.save(tmp_path / "int8.npy", int8.logits(batch))
    onnx_file = f32.export_onnx(tmp_path / "model.onnx")
    mx_logits = f32.logits(batch)
    ort_logits = onnx_logits(onnx_file, batch)
    # Same float32 graph in another runtime: agreement within 1e-4 relative to the logits' scale.
    assert np.abs(ort_logits - mx_logits).max() <= 1e-4 * max(1.0, np.abs(mx_logits).max())
    np.save(tmp_path / "onnx.npy", ort_logits)
    script = f"""
import numpy as np
from resnet_gluon.deploy.predictor import Predictor, onnx_logits
batch = np.load({str(tmp_path / 'batch.npy')!r})
p = Predictor.from_checkpoint({str(tmp_path / 'int8')!r})
assert p.dtype == 'int8' and p.class_names[9] == 'Ankle boot', p
np.testing.assert_allclose(p.logits(batch), np.load({str(tmp_path / 'int8.npy')!r}), rtol=0, atol=1e-5)
np.testing.assert_allclose(onnx_logits({str(onnx_file)!r}, batch), np.load({str(tmp_path / 'onnx.npy')!r}),
                           rtol=0, atol=1e-5)
print('same outputs')
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "same outputs" in proc.stdout, proc.stderr[-3000:]


def test_openvino_float32_and_int8_accuracy(trained):
    """OpenVINO runs the same float32 model (same top-1), and INT8 calibrated on the MXNet path's images (the same
    .rec, the same preprocessing) stays within the MXNet INT8 test's bounds of float32."""
    prefix, root, _ = trained
    images, labels = _val_images(root)
    f32 = Predictor.from_checkpoint(prefix)
    ov32 = Predictor.from_checkpoint(prefix, backend="openvino")
    ov8 = Predictor.from_checkpoint(prefix, dtype="int8", backend="openvino", calibration=os.path.join(root, "train.rec"))
    batch = preprocess(images, f32.preprocessing)
    reference, same, int8 = f32.logits(batch), ov32.logits(batch), ov8.logits(batch)
    assert np.abs(same - reference).max() <= 1e-4 * max(1.0, np.abs(reference).max())
    top1 = [float((logits.argmax(1) == labels).mean()) for logits in (reference, same, int8)]
    agree = float((int8.argmax(1) == reference.argmax(1)).mean())
    print(f"top-1 on {len(labels)} test images: float32 {top1[0]:.4f}, OpenVINO float32 {top1[1]:.4f}, "
          f"OpenVINO INT8 {top1[2]:.4f} (agrees with float32 on {agree:.1%})")
    assert top1[1] == top1[0]
    # This briefly trained model (top-1 ~0.70) is sensitive: measured INT8 0.710 with 91-92% of the images keeping
    # their class (min-max, percentile and entropy calibration alike); top-1 within the MXNet INT8 test's bound.
    assert top1[2] >= top1[0] - 0.015 and agree >= 0.88, (top1, agree)
    assert ov8.class_names == f32.class_names and ov8.preprocessing == f32.preprocessing


@pytest.mark.bf16
def test_bfloat16_accuracy(trained):
    prefix, root, _ = trained
    images, labels = _val_images(root)
    top1_f32 = _top1(Predictor.from_checkpoint(prefix), images, labels)
    top1_bf16 = _top1(Predictor.from_checkpoint(prefix, dtype="bfloat16"), images, labels)
    print(f"top-1 on {len(labels)} test images: float32 {top1_f32:.4f}, bfloat16 {top1_bf16:.4f}")
    assert top1_bf16 >= top1_f32 - 0.01, (top1_f32, top1_bf16)


def test_bfloat16_unsupported_is_a_clear_error(trained):
    from resnet_gluon._core.amp import bfloat16_supported

    if bfloat16_supported():
        pytest.skip("this CPU supports bfloat16; test_bfloat16_accuracy covers it")
    with pytest.raises(ValueError, match="bfloat16 is not supported on this CPU"):
        Predictor.from_checkpoint(trained[0], dtype="bfloat16")


def test_predictor_on_an_untrained_network_with_arrays():
    net = resnet50_v1_5(classes=4)
    net.initialize(mx.init.Xavier())
    pre = Preprocessing.for_size(32)
    predictor = Predictor(net, preprocessing=pre, class_names=list("abcd"), batch_size=3)
    rng = np.random.RandomState(0)
    images = [smooth_image(rng, 40 + i, 50) for i in range(7)]  # 7 images in batches of 3
    results = predictor.predict(images, top_k=2)
    assert len(results) == 7 and all(r.names[0] in "abcd" for r in results)
    np.testing.assert_allclose(predictor.logits(preprocess(images, pre))[:1],
                               predictor.logits(preprocess(images[:1], pre)), rtol=1e-4, atol=1e-5)
