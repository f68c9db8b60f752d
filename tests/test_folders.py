"""Image folders to RecordIO (data/folders.py; `prepare` on the command line): labels, splits, image kinds."""
import os

import numpy as np
import pytest

from helpers import (IMAGE_KINDS, huge_bilevel_png, image_kind_references, jpeg, make_image_folder, pattern,
                     write_image_kinds)
from resnet_gluon.cli import main as cli
from resnet_gluon.data import folders, images, recordio


def test_image_folder_roundtrip_keeps_bytes_and_labels(tmp_path):
    paths = make_image_folder(tmp_path / "imgs", counts=(3, 2, 4))
    summary = folders.images_to_recordio(tmp_path / "imgs", tmp_path / "out" / "train", num_threads=2,
                                               shuffle=False)
    files = summary.files
    assert summary.images == len(files) == 9 and summary.reencoded == {} and summary.hidden == summary.other == 0
    records = list(recordio.read_records(files.rec))
    assert len(records) == len(paths) == len(files) == 9
    for (label, path), (read_label, read_bytes) in zip(sorted(paths), records):
        assert read_label == label
        with open(path, "rb") as f:
            assert read_bytes == f.read()  # JPEG bytes pass through unchanged
    assert recordio.load_classes(tmp_path / "out") == ["class0", "class1", "class2"]
    lst = (tmp_path / "out" / "train.lst").read_text().splitlines()
    assert lst[0].split("\t") == ["0", "0.0", os.path.join("class0", "0.jpg")]
    assert recordio.check_records(files.rec, classes=3) == 9


def test_existing_files_are_not_overwritten(tmp_path):
    make_image_folder(tmp_path / "imgs")
    with pytest.warns(DeprecationWarning, match="resnet_gluon.data.folders.images_to_recordio"):
        import resnet_gluon.data

        resnet_gluon.data.images_to_recordio(tmp_path / "imgs", tmp_path / "train")  # 0.1's path still works
    before = (tmp_path / "train.rec").read_bytes()
    with pytest.raises(FileExistsError, match="train.rec exists"):
        folders.images_to_recordio(tmp_path / "imgs", tmp_path / "train")
    assert (tmp_path / "train.rec").read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["classes.json", "imgs", "train.idx", "train.lst", "train.rec"]


def test_png_is_reencoded_and_corrupt_image_named(tmp_path):
    import cv2

    make_image_folder(tmp_path / "imgs", counts=(1, 1))
    cv2.imwrite(str(tmp_path / "imgs" / "class0" / "extra.png"), np.zeros((8, 8, 3), np.uint8))
    summary = folders.images_to_recordio(tmp_path / "imgs", tmp_path / "ok")
    assert all(b[:2] == b"\xff\xd8" for _, b in recordio.read_records(summary.files.rec))
    assert summary.reencoded == {"PNG": 1}
    (tmp_path / "imgs" / "class1" / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00 and no more")
    with pytest.raises(ValueError, match=r"bad\.jpg' is a truncated JPEG"):
        folders.images_to_recordio(tmp_path / "imgs", tmp_path / "bad")
    (tmp_path / "imgs" / "class1" / "bad.jpg").write_bytes(b"not an image at all")
    with pytest.raises(ValueError, match=r"bad\.jpg' is not a readable image"):
        folders.images_to_recordio(tmp_path / "imgs", tmp_path / "bad")
    assert not [f for f in os.listdir(tmp_path) if f.startswith("bad")]  # no temporary files either


def test_empty_and_missing_folders(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        folders.images_to_recordio(tmp_path / "nope", tmp_path / "x")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no class sub-folders"):
        folders.images_to_recordio(tmp_path / "empty", tmp_path / "x")
    (tmp_path / "empty" / "cat").mkdir()
    (tmp_path / "empty" / "cat" / "._0.jpg").write_bytes(b"\x00\x05\x16\x07 resource fork")
    with pytest.raises(ValueError, match="holds no images"):
        folders.images_to_recordio(tmp_path / "empty", tmp_path / "x")


# ---------------------------------------------------------------- issue 12: real image folders
def _labels(lst_path):
    return [int(float(line.split("\t")[1])) for line in open(lst_path)]


def test_prepare_shuffles_by_default_with_a_seed(tmp_path):
    """Case 1 (prepare): the default order is random and seeded, so a .rec is not written class by class."""
    make_image_folder(tmp_path / "imgs", counts=(8, 8, 8), size=(8, 8))
    for name, options in (("a", {}), ("b", {}), ("c", dict(seed=1)), ("sorted", dict(shuffle=False))):
        folders.images_to_recordio(tmp_path / "imgs", tmp_path / name / "train", **options)
    a, b, c = (_labels(tmp_path / name / "train.lst") for name in "abc")
    assert a == b and a != c  # a pure function of the seed
    assert _labels(tmp_path / "sorted" / "train.lst") == sorted(a) == [0] * 8 + [1] * 8 + [2] * 8
    assert a != sorted(a) and sum(x == y for x, y in zip(a, a[1:])) < 12  # not in runs of one class


def test_hidden_entries_are_skipped_and_counted(tmp_path, capsys):
    """Case 2: .ipynb_checkpoints/ is not a class and a macOS ._0.jpg does not abort prepare."""
    make_image_folder(tmp_path / "imgs", counts=(2, 3), size=(8, 8))
    make_image_folder(tmp_path / "imgs" / ".ipynb_checkpoints", counts=(1,), size=(8, 8))  # holds class0/0.jpg
    (tmp_path / "imgs" / "class0" / "._0.jpg").write_bytes(b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X")
    (tmp_path / "imgs" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (tmp_path / "imgs" / "class1" / "notes.txt").write_text("not an image")
    summary = folders.images_to_recordio(tmp_path / "imgs", tmp_path / "data" / "train", shuffle=False)
    assert summary.class_names == ("class0", "class1")
    assert recordio.load_classes(tmp_path / "data") == ["class0", "class1"]
    assert _labels(tmp_path / "data" / "train.lst") == [0, 0, 1, 1, 1]
    assert (summary.hidden, summary.other, summary.images) == (3, 1, 5)
    assert cli(["prepare", "--images", str(tmp_path / "imgs"), "-o", str(tmp_path / "cli" / "train")]) == 0
    out = capsys.readouterr().out
    assert "train.rec: 5 images, 2 classes" in out
    assert "skipped 3 hidden (name starting with '.') and 1 without an image extension" in out


def test_one_class_list_per_data_root(tmp_path, capsys):
    """Case 3: train/{a,b,c} then val/{a,c}: val's 'c' keeps label 2 and classes.json is kept."""
    for split, names in (("train", "abc"), ("val", "ac"), ("bad", "ad")):
        for name in names:
            (tmp_path / split / name).mkdir(parents=True)
            for i in range(2):
                (tmp_path / split / name / f"{i}.jpg").write_bytes(jpeg(pattern(8, 8 + i)))
    folders.images_to_recordio(tmp_path / "train", tmp_path / "data" / "train", shuffle=False)
    val = folders.images_to_recordio(tmp_path / "val", tmp_path / "data" / "val", shuffle=False)
    assert _labels(tmp_path / "data" / "val.lst") == [0, 0, 2, 2]
    assert val.class_names == ("a", "b", "c") and recordio.load_classes(tmp_path / "data") == ["a", "b", "c"]
    with pytest.raises(ValueError, match=r"class folder '.*bad/d' is not in .*classes.json \['a', 'b', 'c'\]"):
        folders.images_to_recordio(tmp_path / "bad", tmp_path / "data" / "other")
    assert not (tmp_path / "data" / "other.rec").exists()
    assert recordio.load_classes(tmp_path / "data") == ["a", "b", "c"]
    # written first, the smaller split sets the list; the larger one is refused, naming the folder
    folders.images_to_recordio(tmp_path / "val", tmp_path / "root2" / "val")
    assert cli(["prepare", "--images", str(tmp_path / "train"), "-o", str(tmp_path / "root2" / "train")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "error: class folder" in err[0] and "train/b' is not in" in err[0], err
    # write_records keeps the list too; overwrite replaces it and says which list it replaced
    with pytest.raises(ValueError, match=r"lists the classes \['a', 'c'\] \(2\), not \['x'\]"):
        recordio.write_records(tmp_path / "root2" / "x", [(0, jpeg(pattern(8, 8)), "x.jpg")], class_names=["x"])
    with pytest.warns(DeprecationWarning, match=r"write_records\(classes=...\) .* use class_names="), \
            pytest.raises(ValueError, match=r"not \['x'\]"):
        recordio.write_records(tmp_path / "root2" / "x", [(0, jpeg(pattern(8, 8)), "x.jpg")], classes=["x"])
    with pytest.raises(TypeError, match="pass class_names only"), pytest.warns(DeprecationWarning):
        recordio.check_classes(tmp_path / "root2", ["a"], classes=["b"])
    summary = folders.images_to_recordio(tmp_path / "train", tmp_path / "root2" / "train", overwrite=True)
    with pytest.warns(DeprecationWarning, match="PrepareSummary.replaced_class_names"):
        assert summary.replaced_classes == summary.replaced_class_names
    assert summary.replaced_class_names == ("a", "c") and recordio.load_classes(tmp_path / "root2") == ["a", "b", "c"]


def test_one_folder_split_is_stratified_and_seeded(tmp_path, capsys):
    """Case 4: prepare --images DIR -o data --val-fraction 0.2 writes data/train.* and data/val.*."""
    make_image_folder(tmp_path / "imgs", counts=(10, 20, 5), size=(8, 8))
    train, val = folders.split_images_to_recordio(tmp_path / "imgs", tmp_path / "data", val_fraction=0.2)
    assert np.bincount(_labels(tmp_path / "data" / "val.lst")).tolist() == [2, 4, 1]
    assert np.bincount(_labels(tmp_path / "data" / "train.lst")).tolist() == [8, 16, 4]
    assert (len(train), len(val)) == (28, 7) and train.class_names == val.class_names == ("class0", "class1", "class2")

    def names(root, split):
        return [line.split("\t")[2].strip() for line in open(tmp_path / root / f"{split}.lst")]

    assert sorted(names("data", "train") + names("data", "val")) == sorted(
        os.path.join(f"class{c}", f"{i}.jpg") for c, n in enumerate((10, 20, 5)) for i in range(n))
    assert cli(["prepare", "--images", str(tmp_path / "imgs"), "-o", str(tmp_path / "cli"),
                "--val-fraction", "0.2"]) == 0
    assert "val.rec: 7 images, 3 classes" in capsys.readouterr().out
    assert sorted(os.listdir(tmp_path / "cli")) == ["classes.json", "train.idx", "train.lst", "train.rec",
                                                    "val.idx", "val.lst", "val.rec"]
    assert sorted(names("cli", "val")) == sorted(names("data", "val"))  # seeded: the same split
    folders.split_images_to_recordio(tmp_path / "imgs", tmp_path / "seed1", val_fraction=0.2, seed=1)
    assert sorted(names("seed1", "val")) != sorted(names("data", "val"))
    with pytest.raises(ValueError, match="gives no validation image"):
        folders.split_images_to_recordio(tmp_path / "imgs", tmp_path / "none", val_fraction=0.01)
    # -o is a prefix without --val-fraction; a folder there is refused instead of writing cli.rec beside it
    assert cli(["prepare", "--images", str(tmp_path / "imgs"), "-o", str(tmp_path / "cli")]) == 1
    assert "is a folder; the output is a prefix such as" in capsys.readouterr().err


@pytest.fixture(scope="module")
def kinds(tmp_path_factory):
    folder = tmp_path_factory.mktemp("kinds")
    write_image_kinds(folder)
    return folder


EXPECTED = {  # case 5: how each kind is stored (None: byte for byte) or the error naming it
    "plain.jpg": None, "gray.jpg": None, "large.jpg": None,
    "progressive.jpg": "progressive JPEG", "png.JPEG": "PNG", "cmyk.jpg": "CMYK JPEG",
    "exif6.jpg": "EXIF-rotated JPEG", "bmp.jpg": "BMP", "webp.jpg": "WebP", "icon.png": "PNG",
    "truncated.jpg": "is a truncated JPEG", "anim.gif": "is a GIF, which DALI and OpenCV cannot decode",
    "rgba_black.png": "PNG", "rgba_white.png": "PNG", "la.png": "PNG", "palette.png": "PNG", "alpha.webp": "WebP",
}


@pytest.mark.parametrize("name", sorted(IMAGE_KINDS))
def test_each_image_kind_is_stored_upright_or_refused_by_name(kinds, tmp_path, name):
    """Case 5 (prepare): the stored bytes, or a one-line error naming the file and nothing left behind."""
    folder = tmp_path / "imgs" / "a"
    folder.mkdir(parents=True)
    (folder / name).write_bytes((kinds / name).read_bytes())
    prefix = tmp_path / "data" / "train"
    if EXPECTED[name] and EXPECTED[name].startswith("is a"):
        with pytest.raises(ValueError, match=rf"^'[^']*{name}' {EXPECTED[name]}.*, or remove it$"):
            folders.images_to_recordio(tmp_path / "imgs", prefix)
        assert not (tmp_path / "data").exists() or os.listdir(tmp_path / "data") == []
        return
    summary = folders.images_to_recordio(tmp_path / "imgs", prefix)
    (_, stored), = recordio.read_records(summary.files.rec)
    if EXPECTED[name] is None:
        assert stored == (kinds / name).read_bytes() and summary.reencoded == {}
    else:
        assert summary.reencoded == {EXPECTED[name]: 1}
        info = images.inspect_image(stored)
        assert info.plain_jpeg and info.orientation is None, info
    assert recordio.check_records(summary.files.rec, classes=1) == 1


def test_prepare_can_downscale_large_photos(kinds, tmp_path):
    (tmp_path / "imgs" / "a").mkdir(parents=True)
    (tmp_path / "imgs" / "a" / "large.jpg").write_bytes((kinds / "large.jpg").read_bytes())
    summary = folders.images_to_recordio(tmp_path / "imgs", tmp_path / "train", resize=64)
    assert summary.reencoded == {"downscaled": 1}
    import cv2

    (_, stored), = recordio.read_records(summary.files.rec)
    assert cv2.imdecode(np.frombuffer(stored, np.uint8), cv2.IMREAD_COLOR).shape == (64, 96, 3)


def test_check_records_reports_what_dali_fails_on_or_misreads(kinds, tmp_path):
    """Records written by hand or by im2rec --pass-through: GIF (DALI fails), truncated JPEG (DALI decodes
    garbage without an error), EXIF orientation (ignored by DALI)."""
    names = ["plain.jpg", "anim.gif", "truncated.jpg", "exif6.jpg", "cmyk.jpg"]
    items = [(0, (kinds / n).read_bytes(), n) for n in names]
    files = recordio.write_records(tmp_path / "raw", items)
    with pytest.raises(ValueError) as err:
        recordio.check_records(files.rec)
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"record 1 of {files.rec!r} is a GIF")
    assert "2 more bad records: 2, 3;" in message
    assert images.image_problem(items[2][1]).startswith("is a truncated JPEG")
    assert "EXIF orientation 6" in images.image_problem(items[3][1])
    assert images.image_problem(items[4][1]) is None  # CMYK: DALI reads it (prepare re-encodes it anyway)
    assert cli(["prepare", "--check", files.rec]) == 1


# ---------------------------------------------------------------- issue 22: images and inputs
def _one_class(tmp_path, files):
    """``tmp_path/imgs/a/<name>`` for each ``name: bytes``; returns the folder."""
    folder = tmp_path / "imgs" / "a"
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        with open(os.path.join(os.fsencode(folder), os.fsencode(name)), "wb") as f:
            f.write(content)
    return tmp_path / "imgs"


def _nothing_written(root):
    return not os.path.exists(root) or os.listdir(root) == []


def test_image_over_opencvs_pixel_limit_is_refused_by_name(tmp_path, capsys):
    """Item 5: a valid 33000 x 33000 1-bit PNG (132 KB) stopped prepare with a cv2.error traceback."""
    huge = huge_bilevel_png(33000)
    imgs = _one_class(tmp_path, {"ok.jpg": jpeg(pattern(8, 8)), "huge.png": huge})
    with pytest.raises(ValueError, match=r"^'[^']*a/huge\.png' has 33000 x 33000 pixels, over OpenCV's limit of 2\^30 "
                                         r"pixels \(CV_IO_MAX_IMAGE_PIXELS\); downscale it .*, or remove it$"):
        folders.images_to_recordio(imgs, tmp_path / "data" / "train")
    assert _nothing_written(tmp_path / "data")
    assert cli(["prepare", "--images", str(imgs), "-o", str(tmp_path / "data" / "train")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "huge.png' has 33000 x 33000 pixels" in err[0], err
    files = recordio.write_records(tmp_path / "raw", [(0, huge, "huge.png")])  # written by another tool
    with pytest.raises(ValueError, match=r"record 0 of .* has 33000 x 33000 pixels, over OpenCV's limit"):
        recordio.check_records(files.rec)


def test_transparent_pngs_are_stored_as_they_look(tmp_path):
    """Item 6: two PNGs that look alike (transparent on the left) but hold black or white under the transparent
    pixels are stored alike: composited onto white; a record holding transparency is named by check_records."""
    import cv2

    names = ["rgba_black.png", "rgba_white.png"]
    write_image_kinds(tmp_path / "imgs" / "a", names)
    summary = folders.images_to_recordio(tmp_path / "imgs", tmp_path / "data" / "train", shuffle=False)
    stored = [cv2.cvtColor(cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
              for _, b in recordio.read_records(summary.files.rec)]
    look = image_kind_references(names)["rgba_black.png"]
    for image in stored:  # JPEG quality 95 of the composited pixels
        assert np.abs(image.astype(int) - look).mean() < 1.0 and np.abs(image[:, :8].astype(int) - 255).max() <= 3
    assert np.abs(stored[0].astype(int) - stored[1]).max() <= 1
    raw = (tmp_path / "imgs" / "a" / "rgba_black.png").read_bytes()
    with pytest.raises(ValueError, match=r"record 0 of .* has transparent pixels, which DALI and ImageRecordIter"):
        recordio.check_records(recordio.write_records(tmp_path / "raw", [(0, raw, "x.png")]).rec)


@pytest.mark.parametrize("name,shown", [("caf\udce9.jpg", r"caf\\xe9\.jpg' has a name that is not valid UTF-8"),
                                        ("tab\there.jpg", r"tab\\there\.jpg' has a tab, line break"),
                                        ("line\nbreak.jpg", r"line\\nbreak\.jpg' has a tab, line break")])
def test_names_a_lst_file_cannot_hold_are_refused_by_name(tmp_path, name, shown):
    """Item 8: 'caf\\xe9.jpg' (Latin-1) stopped prepare with "surrogates not allowed", naming no file; a tab or a
    newline wrote a broken .lst. Now one line names the file, printable, and nothing is written."""
    imgs = _one_class(tmp_path, {"ok.jpg": jpeg(pattern(8, 8)), name: jpeg(pattern(8, 9))})
    with pytest.raises(ValueError, match=rf"^'[^\n]*a/{shown}.*; rename it, or remove it$"):
        folders.images_to_recordio(imgs, tmp_path / "data" / "train")
    assert _nothing_written(tmp_path / "data")
    with pytest.raises(ValueError, match=shown):
        recordio.write_records(tmp_path / "w", [(0, jpeg(pattern(8, 8)), "ok.jpg"), (0, jpeg(pattern(8, 8)), name)])
    assert not [f for f in os.listdir(tmp_path) if f.startswith("w")]


def test_utf8_names_are_stored_and_read_back(tmp_path):
    imgs = _one_class(tmp_path, {"café.jpg": jpeg(pattern(8, 8)), "naïve photo.jpg": jpeg(pattern(8, 9))})
    folders.images_to_recordio(imgs, tmp_path / "data" / "train", shuffle=False)
    lines = (tmp_path / "data" / "train.lst").read_text(encoding="utf-8").splitlines()
    assert [line.split("\t")[2] for line in lines] == [os.path.join("a", "café.jpg"), os.path.join("a", "naïve photo.jpg")]


def test_broken_links_are_named_as_broken(tmp_path, capsys):
    """Item 9: a dangling symlink gone.jpg was counted as 'without an image extension'."""
    imgs = _one_class(tmp_path, {"ok.jpg": jpeg(pattern(8, 8)), "notes.txt": b"text"})
    os.symlink(tmp_path / "nowhere.jpg", imgs / "a" / "gone.jpg")
    summary = folders.images_to_recordio(imgs, tmp_path / "data" / "train")
    assert (summary.images, summary.other, summary.broken) == (1, 1, (os.path.join("a", "gone.jpg"),))
    assert summary.skipped() == ("skipped 1 without an image extension and 1 broken symbolic link "
                                 f"('{os.path.join('a', 'gone.jpg')}')")
    assert cli(["prepare", "--images", str(imgs), "-o", str(tmp_path / "cli" / "train")]) == 0
    assert "1 broken symbolic link ('a/gone.jpg')" in capsys.readouterr().out
