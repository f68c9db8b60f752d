"""Validation preprocessing (data/preprocessing.py): the settings, load_image and preprocess (the pixels of DALI's
validation pipeline and of resizing the whole image), images and arrays accepted or refused by name."""
import os

import cv2
import numpy as np
import pytest

from helpers import (huge_bilevel_png, image_kind_references, jpeg, make_records, peak_rss_mb, smooth_image, strip_png,
                     tiny_net, write_image_kinds)
from resnet_gluon.data.preprocessing import Preprocessing, load_image, preprocess
from resnet_gluon.deploy.predictor import Predictor


def test_preprocessing_validation():
    assert Preprocessing.for_size(32).resize == 37
    with pytest.raises(ValueError, match="image_size <= resize"):
        Preprocessing(image_size=64, resize=32)
    with pytest.raises(ValueError, match="area"):
        Preprocessing(area=(0.0, 1.0))


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
