import re

import pytest

from helpers import horovodrun


@pytest.mark.distributed
def test_horovodrun_gloo_allreduce():
    out = horovodrun(2, "tests/scripts/allreduce.py", timeout=300).stdout
    lines = sorted(re.findall(r"rank=(\d) size=(\d) sum=\[(.*?)\] mean=\[(.*?)\]", out))
    assert [(r, s) for r, s, _, _ in lines] == [("0", "2"), ("1", "2")], out
    for _, _, total, mean in lines:
        assert [float(v) for v in total.split(",")] == [3.0, 30.0]
        assert [float(v) for v in mean.split(",")] == [1.5, 15.0]
