"""CPU inference speed of resnet50_v1_5 in float32, bfloat16 and INT8 (and ONNX Runtime float32), in one run.

    .venv/bin/python benchmarks/inference.py [--batch-sizes 1,16,64] [--image-size 224] [--images 320]
                                             [--precisions float32,bfloat16,int8,onnxruntime] [-o inference.json]

Each precision runs in its own process through :class:`resnet_gluon.inference.Predictor` (INT8: oneDNN
quantization calibrated on 64 random images; weights are random, which does not change the speed). For every
batch size it times forward passes on a preprocessed batch after 3 warm-up passes and prints img/s, latency per
batch p50/p99 (ms) and the speed-up over float32 measured in the same run. A precision this CPU cannot run
(bfloat16 without AVX-512) is reported with its error instead of figures.
"""
import argparse
import json
import subprocess
import sys

WORKER = r"""
import json, sys, time
import numpy as np
import resnet_gluon as rg                         # thread defaults before mxnet
import mxnet as mx
from resnet_gluon.inference import Predictor, export_onnx
precision, size, images = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
batches = [int(b) for b in sys.argv[4].split(",")]
pre = rg.Preprocessing.for_size(size)
net = rg.resnet50_v1_5(classes=1000)
net.initialize(mx.init.Xavier())
rng = np.random.RandomState(0)
if precision == "onnxruntime":
    import os, tempfile, onnxruntime
    path = export_onnx(net, os.path.join(tempfile.mkdtemp(), "r50.onnx"), preprocessing=pre)
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    run = lambda x: session.run(None, {"data": x})[0]
else:
    calibration = mx.io.NDArrayIter(rng.randn(64, 3, size, size).astype("float32"), batch_size=32, data_name="data")
    predictor = Predictor(net, preprocessing=pre, dtype=precision, calibration=calibration)
    run = lambda x: predictor.net(x).wait_to_read()
results = []
for bs in batches:
    x = rng.randn(bs, 3, size, size).astype("float32")
    x = x if precision == "onnxruntime" else mx.nd.array(x)
    for _ in range(3):
        run(x)
    lat = []
    for _ in range(max(5, images // bs)):
        t = time.perf_counter(); run(x); lat.append(time.perf_counter() - t)
    lat = np.array(lat)
    results.append(dict(batch_size=bs, img_s=bs / lat.mean(), p50_ms=1e3 * np.percentile(lat, 50),
                        p99_ms=1e3 * np.percentile(lat, 99), iterations=len(lat)))
print(json.dumps(results))
"""


def measure(precision, args):
    proc = subprocess.run([sys.executable, "-c", WORKER, precision, str(args.image_size), str(args.images),
                           args.batch_sizes], capture_output=True, text=True)
    if proc.returncode:
        lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
        return None, lines[-1] if lines else f"exit status {proc.returncode}"
    return json.loads(proc.stdout.strip().splitlines()[-1]), ""


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", default="1,16,64")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--images", type=int, default=320, help="images timed per batch size (at least 5 batches)")
    parser.add_argument("--precisions", default="float32,bfloat16,int8,onnxruntime")
    parser.add_argument("-o", "--output", default=None, help="also write the figures as JSON")
    args = parser.parse_args()
    report = {}
    for precision in args.precisions.split(","):
        results, error = measure(precision, args)
        report[precision] = results if results is not None else {"error": error}
        print(f"{precision}: {'measured' if results is not None else 'FAILED: ' + error}", flush=True)
    base = {r["batch_size"]: r["img_s"] for r in report.get("float32", [])} if isinstance(report.get("float32"), list) else {}
    print(f"\nresnet50_v1_5 inference at {args.image_size} px (img/s, latency per batch p50/p99 ms, x float32)")
    print(f"{'precision':<12} {'batch':>5} {'img/s':>8} {'p50 ms':>9} {'p99 ms':>9} {'x fp32':>7}")
    for precision, results in report.items():
        if isinstance(results, dict):
            print(f"{precision:<12} {'-':>5} {results['error']}")
            continue
        for r in results:
            ratio = r["img_s"] / base[r["batch_size"]] if r["batch_size"] in base else float("nan")
            r["ratio_vs_float32"] = ratio
            print(f"{precision:<12} {r['batch_size']:>5} {r['img_s']:>8.1f} {r['p50_ms']:>9.1f} {r['p99_ms']:>9.1f} "
                  f"{ratio:>7.2f}")
    if args.output:
        with open(args.output, "w") as f:
            json.dump(dict(image_size=args.image_size, results=report), f, indent=1)


if __name__ == "__main__":
    main()
