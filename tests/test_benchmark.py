"""resnet_gluon.benchmark as library code, and the pieces the CLI's train command was cut into (issue 14)."""
import ast
import json
import os
import pathlib

import mxnet as mx
import numpy as np
import pytest

from resnet_gluon import benchmark
from resnet_gluon.data import recordio, pipelines
from resnet_gluon.evaluation import describe
from resnet_gluon.deploy.predictor import Prediction
from resnet_gluon.data.preprocessing import Preprocessing
from resnet_gluon.train.fit import History

BENCHMARKS = pathlib.Path(__file__).resolve().parent.parent / "benchmarks"


def test_benchmark_scripts_are_plain_python_over_the_library():
    """No worker code kept in strings for ``python -c``, no sys.path imports of one script from another."""
    scripts = sorted(BENCHMARKS.glob("*.py"))
    assert len(scripts) >= 6
    for script in scripts:
        text = script.read_text()
        tree = ast.parse(text)  # everything a script runs is code a linter sees
        assert "sys.path" not in text, script.name
        assert '"-c"' not in text and "WORKER" not in text, script.name
        imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        assert not imported & {p.stem for p in scripts}, f"{script.name} imports another benchmark script"


def test_in_fresh_process_returns_the_functions_result_and_names_failures():
    result = benchmark.in_fresh_process("step_speed", model="resnet18_v1_5", mode="infer", batch_size=2,
                                        image_size=32, steps=2, warmup=1)
    assert result["img_s"] > 0 and result["iterations"] == 2 and result["p99_ms"] >= result["p50_ms"] > 0
    with pytest.raises(ChildProcessError, match="step_speed.*failed: .*resnet7"):
        benchmark.in_fresh_process("step_speed", model="resnet7", steps=1)
    with pytest.raises(ValueError, match="unknown benchmark function 'nope'; choose one of measure"):
        benchmark.in_fresh_process("nope")
    with pytest.raises(ValueError, match="not 'train' in 'float16'"):  # not float32 figures under another name
        benchmark.step_speed(dtype="float16")


def test_measure_trains_with_accumulation_and_reports_peak_memory():
    """benchmarks/accumulate.py's figures: img/s per batch with accumulate=2, the fresh process's peak memory."""
    result = benchmark.in_fresh_process("measure", arch="resnet18_v1_5", batch_size=4, accumulate=2, iterations=4,
                                        epochs=2, warmup=1, image_size=32, dtype="float32", classes=10)
    assert (result["batch_size"], result["accumulate"], result["epochs"]) == (4, 2, 1)
    assert result["total_ips"] > 0 and 100 < result["peak_rss_mib"] < 64 * 1024  # MiB: mxnet alone holds ~200


def test_inference_speed_reports_each_batch_size():
    results = benchmark.inference_speed(batch_sizes=[1, 3], image_size=32, images=6, arch="resnet18_v1_5")
    assert [r["batch_size"] for r in results] == [1, 3]
    assert [r["iterations"] for r in results] == [6, 5]  # max(5, images // batch)
    assert all(r["img_s"] > 0 for r in results)
    with pytest.raises(ValueError, match="unknown inference engine 'tvm'"):
        benchmark.inference_speed(engine="tvm", batch_sizes=[1], image_size=32, arch="resnet18_v1_5")


def test_sweep_checks_its_options_before_starting_a_process(tmp_path):
    with pytest.raises(ValueError, match="warmup \\(2\\) must be smaller than epochs \\(2\\)"):
        benchmark.sweep(warmup=2, epochs=2, output=str(tmp_path / "b.json"))
    with pytest.raises(ValueError, match="add --only-inference"):
        benchmark.sweep(dtype="int8")
    with pytest.raises(TypeError, match="benchmark options: .*'iterattions'"):
        benchmark.sweep(iterattions=5)
    assert not os.path.exists(tmp_path / "b.json")


def test_make_jpeg_records_writes_readable_photos_of_about_100_kb(tmp_path):
    files, mean_bytes = benchmark.make_jpeg_records(str(tmp_path / "b"), 3)
    assert len(files) == 3 and 60_000 < mean_bytes < 160_000
    assert list(recordio.read_labels(files.rec)) == [0, 1, 2]


def test_imagenet_gives_synthetic_pipelines_with_the_data_roots_class_count(tmp_path):
    prep = Preprocessing.for_size(16)
    train, val = pipelines.imagenet(batch_size=4, backend="synthetic", preprocessing=prep, classes=7,
                                    num_batches=3, num_threads=5, seed=2)
    assert len(train) == 3 and len(val) == 3
    x, y = next(iter(train))
    assert x.shape == (4, 3, 16, 16) and y.asnumpy().max() < 7
    recordio.save_classes(tmp_path, ["a", "b"])
    _, val = pipelines.imagenet(tmp_path, batch_size=64, backend="synthetic", preprocessing=prep)
    assert set(next(iter(val))[1].asnumpy().astype(int)) == {0, 1}  # 2 classes from classes.json
    with pytest.raises(FileNotFoundError, match="'dali-cpu' reads train.rec.*as data_root"):
        pipelines.imagenet(batch_size=4)
    with pytest.raises(TypeError, match="synthetic data takes no option num_batch"):
        pipelines.imagenet(batch_size=4, backend="synthetic", num_batch=3)
    train, _ = pipelines.imagenet(batch_size=4, backend="synthetic", preprocessing=prep, ctx=mx.cpu(1))
    assert next(iter(train))[0].context == mx.cpu(1)


def test_num_classes_reads_classes_json_else_the_default(tmp_path):
    assert recordio.num_classes(None) == 1000 and recordio.num_classes(tmp_path, default=10) == 10
    recordio.save_classes(tmp_path, ["a", "b", "c"])
    assert recordio.num_classes(tmp_path) == 3


def test_describe_and_the_json_forms_of_results():
    figures = dict(num_images=16, top1=0.5, top5=None, total_ips=123.45, latency_50=0.0123, latency_99=0.05,
                   batch_size=8)
    assert describe(figures) == ("16 images: top-1 0.5000, top-5 n/a, 123.5 img/s, latency per batch of 8 "
                                 "p50 12.3 ms, p99 50.0 ms")
    assert describe(dict(figures, top5=0.875, batch_size=None), dtype="int8").startswith(
        "16 images, int8: top-1 0.5000, top-5 0.8750, 123.5 img/s, latency per batch p50")
    prediction = Prediction(class_indices=(2, 0), probabilities=(np.float32(0.7500004), 0.25), names=("c", "a"))
    assert json.loads(json.dumps(prediction.as_dict())) == dict(class_indices=[2, 0], names=["c", "a"],
                                                                probabilities=[0.75, 0.25])
    history = History()
    assert history.summary() == {}
    history.append(4, dict(loss=1.0, top1=0.5, lr=0.1))
    history.append(5, dict(loss=0.5, top1=0.75, lr=0.01))
    assert history.summary() == dict(epochs=6, loss=0.5, top1=0.75)
