"""RecordIO files (data/recordio.py): the .rec/.idx pair, its index rebuilt, records checked and read."""
import os

import pytest

from helpers import make_records
from resnet_gluon.data import recordio


def test_missing_rec_and_idx_and_rebuild(tmp_path):
    files, _ = make_records(tmp_path / "d" / "train", 5)
    with pytest.raises(FileNotFoundError, match="val.rec' does not exist"):
        recordio.record_files(tmp_path / "d" / "val.rec")
    original = open(files.idx).read()
    os.remove(files.idx)
    with pytest.raises(FileNotFoundError, match=r"train\.idx' .* does not exist; rebuild it with .*rebuild_index"):
        recordio.record_files(files.rec)
    recordio.rebuild_index(files.rec)
    assert open(files.idx).read() == original
    assert sorted(os.listdir(tmp_path / "d")) == ["train.idx", "train.lst", "train.rec"]  # no temporary file
    assert len(recordio.record_files(files.rec)) == 5


def test_index_that_does_not_match_rec(tmp_path):
    files, _ = make_records(tmp_path / "a", 6)
    other, _ = make_records(tmp_path / "b", 6, size=(64, 80), seed=1)
    os.replace(other.idx, files.idx)  # an index of another file
    with pytest.raises(ValueError, match=r"does not match .*rebuild the index"):
        recordio.record_files(files.rec)


def test_check_records_names_bad_label_and_corrupt_record(tmp_path):
    files, items = make_records(tmp_path / "t", 4, classes=4)
    with pytest.raises(ValueError, match=r"record 3 of .* has label 3.0, outside \[0, 3\)"):
        recordio.check_records(files.rec, classes=3)
    items[2] = (0, b"\x89PNG\r\n\x1a\n garbage", "bad.png")
    recordio.write_records(tmp_path / "t", items, overwrite=True)
    with pytest.raises(ValueError, match=r"record 2 of .* is not a readable image"):
        recordio.check_records(tmp_path / "t.rec")


def test_read_labels_reads_headers_only(tmp_path):
    files, items = make_records(tmp_path / "r", 7, classes=7)
    assert recordio.read_labels(files.rec).tolist() == [float(i) for i in range(7)]
    assert recordio.read_labels(files.rec, [5, 1]).tolist() == [5.0, 1.0]


def test_record_reader_gives_the_bytes_of_mxnet_reader_also_for_split_records(tmp_path):
    """MXNet's writer splits a record where its payload holds the RecordIO magic number (4-byte aligned)."""
    magic = (0xCED7230A).to_bytes(4, "little")
    payloads = [b"\xff\xd8" + bytes(range(50)), b"\xff\xd8\xff\xe0" + magic * 3 + b"tail", b"x" * 4 + magic]
    files = recordio.write_records(tmp_path / "m", [(i, p, f"{i}") for i, p in enumerate(payloads)])
    reader = recordio.RecordReader(files.rec)
    assert [(label, image.tobytes()) for label, image in (reader[i] for i in range(3))] == \
        [(label, bytes(image)) for label, image in recordio.read_records(files.rec)] == \
        [(float(i), p) for i, p in enumerate(payloads)]
    raw = open(files.rec, "rb").read()
    assert [int.from_bytes(raw[o + 4:o + 8], "little") >> 29 for o in reader.offsets] == [0, 1, 1]  # split: 1
