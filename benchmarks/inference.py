"""CPU inference speed of resnet50_v1_5 in MXNet (float32, bfloat16, INT8), OpenVINO (float32, its default, INT8)
and ONNX Runtime float32, in one run.

    .venv/bin/python benchmarks/inference.py [--batch-sizes 1,16,64] [--image-size 224] [--images 320]
        [--precisions float32,bfloat16,int8,openvino-float32,openvino-auto,openvino-int8,onnxruntime]
        [-o inference.json]

Each precision runs :func:`resnet_gluon.benchmark.inference_speed` in its own process, through a
:class:`resnet_gluon.deploy.predictor.Predictor` (INT8: calibrated on 64 random images, by oneDNN's quantization for
MXNet and ONNX Runtime's QDQ quantization for OpenVINO; weights are random, which does not change the speed).
``openvino-auto`` is OpenVINO's own choice of precision (bfloat16 on AMX CPUs); the table names what it took. For
every batch size it times forward passes on a preprocessed batch after 3 warm-up passes and prints img/s, latency
per batch p50/p99 (ms) and the speed-up over MXNet float32 measured in the same run. A precision this CPU cannot
run (bfloat16 without AVX-512) is reported with its error instead of figures. The CPU's oneDNN instruction set is
printed first.
"""
import argparse


def measure(precision, args):
    """The figures per batch size of one precision in a fresh process, or (None, the error)."""
    from resnet_gluon.benchmark import in_fresh_process

    engine, dtype = ("onnxruntime", "float32") if precision == "onnxruntime" else \
        ("openvino", precision.split("-", 1)[1]) if precision.startswith("openvino-") else ("mxnet", precision)
    try:
        return in_fresh_process("inference_speed", dtype=dtype, engine=engine, image_size=args.image_size,
                                images=args.images, batch_sizes=[int(b) for b in args.batch_sizes.split(",")]), ""
    except ChildProcessError as err:
        return None, str(err)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", default="1,16,64")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--images", type=int, default=320, help="images timed per batch size (at least 5 batches)")
    parser.add_argument("--precisions",
                        default="float32,bfloat16,int8,openvino-float32,openvino-auto,openvino-int8,onnxruntime")
    parser.add_argument("-o", "--output", default=None, help="also write the figures as JSON")
    args = parser.parse_args()
    from resnet_gluon._core import runtime

    isa = f"{runtime.onednn_isa()} (AMX {runtime.amx_status()})"
    print(f"CPU: oneDNN instruction set {isa}", flush=True)
    report = {}
    for precision in args.precisions.split(","):
        results, error = measure(precision, args)
        report[precision] = results if results is not None else {"error": error}
        print(f"{precision}: {'measured' if results is not None else 'FAILED: ' + error}", flush=True)
    base = {r["batch_size"]: r["img_s"] for r in report.get("float32", [])} if isinstance(report.get("float32"), list) else {}
    print(f"\nresnet50_v1_5 inference at {args.image_size} px (img/s, latency per batch p50/p99 ms, x float32)")
    print(f"{'precision':<17} {'runs as':<9} {'batch':>5} {'img/s':>8} {'p50 ms':>9} {'p99 ms':>9} {'x fp32':>7}")
    for precision, results in report.items():
        if isinstance(results, dict):
            print(f"{precision:<17} {'-':<9} {'-':>5} {results['error']}")
            continue
        for r in results:
            ratio = r["img_s"] / base[r["batch_size"]] if r["batch_size"] in base else float("nan")
            r["ratio_vs_float32"] = ratio
            print(f"{precision:<17} {r['dtype']:<9} {r['batch_size']:>5} {r['img_s']:>8.1f} {r['p50_ms']:>9.1f} "
                  f"{r['p99_ms']:>9.1f} {ratio:>7.2f}")
    if args.output:
        from resnet_gluon._core.files import atomic_write_json

        atomic_write_json(args.output, dict(image_size=args.image_size, cpu_isa=isa, results=report))


if __name__ == "__main__":
    main()
