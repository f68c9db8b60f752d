"""The tests' shared helpers: small data sets made on the fly, toy networks, subprocess launchers."""
import contextlib
import os
import shutil
import subprocess
import sys

import cv2
import numpy as np

from resnet_gluon.data import recordio
from image_kinds import (IMAGE_KINDS, KIND_SIZE, huge_bilevel_png, image_kind_references, pattern,  # noqa: F401
                         strip_png, write_image_kinds)
from weight_files import (TORCH_MAGIC, TORCHVISION, state_dict_file, torch_legacy, torch_zip,  # noqa: F401
                          torchvision_file, torchvision_state_dict_shapes)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FASHION_MNIST_SIZE = 32  # image side of the session's briefly trained model (conftest.fashion_mnist_model)


def jpeg(image: np.ndarray, quality: int = 95) -> bytes:
    """JPEG bytes of an RGB uint8 image."""
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return buf.tobytes()


def smooth_image(rng: np.random.RandomState, height: int, width: int) -> np.ndarray:
    """A smooth random RGB image (low frequencies only), so resize filters agree closely."""
    small = rng.randint(0, 256, (4, 4, 3)).astype(np.float32)
    return np.clip(cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC), 0, 255).astype(np.uint8)


def make_records(prefix, n: int, *, classes: int = 3, size=(40, 48), seed: int = 0, label_is_index=False):
    """``n`` smooth JPEGs of ``size`` (h, w) with labels ``i % classes`` (or ``i``)."""
    rng = np.random.RandomState(seed)
    items = []
    for i in range(n):
        items.append((i if label_is_index else i % classes, jpeg(smooth_image(rng, *size)), f"img{i}.jpg"))
    return recordio.write_records(prefix, items, overwrite=True), items


def make_image_folder(root, counts=(3, 2), size=(24, 30), seed=0):
    rng = np.random.RandomState(seed)
    paths = []
    for c, n in enumerate(counts):
        os.makedirs(os.path.join(root, f"class{c}"), exist_ok=True)
        for i in range(n):
            path = os.path.join(root, f"class{c}", f"{i}.jpg")
            cv2.imwrite(path, cv2.cvtColor(smooth_image(rng, *size), cv2.COLOR_RGB2BGR))
            paths.append((c, path))
    return paths


def tiny_net(classes: int = 4):
    """A small BatchNorm-free net (Xavier init, seeded by the caller). BatchNorm statistics are per worker, as in
    the reference, so only a BN-free net trains to the same parameters on 1 worker and on several."""
    import mxnet as mx
    from mxnet.gluon import nn

    net = nn.HybridSequential()
    net.add(nn.Conv2D(8, 3, padding=1, in_channels=3, activation="relu"), nn.MaxPool2D(2),
            nn.Conv2D(8, 3, padding=1, in_channels=8, activation="relu"), nn.GlobalAvgPool2D(),
            nn.Dense(classes, in_units=8))
    net.classes = classes
    net.initialize(mx.init.Xavier())
    return net


class ArrayBatches:
    """In-memory data with the pipelines' interface: the same order every epoch, sharded like DALI's reader
    (each global batch of ``batch_size * num_shards`` images is split between the shards in order).
    ``reads`` lists the ``(start, stop)`` image indices of every batch given out, non-empty or not."""

    def __init__(self, x: np.ndarray, y: np.ndarray, batch_size: int, shard_id: int = 0, num_shards: int = 1):
        self.x, self.y = x.astype(np.float32), y.astype(np.float32)
        self.batch_size, self.shard_id, self.num_shards = batch_size, shard_id, num_shards
        self.reads = []

    def __len__(self):
        global_batch = self.batch_size * self.num_shards
        return -(-len(self.x) // global_batch)

    def __iter__(self):
        import mxnet as mx

        global_batch = self.batch_size * self.num_shards
        for start in range(0, len(self.x) + global_batch - 1, global_batch)[: len(self)]:
            lo = start + self.shard_id * self.batch_size
            hi = min(lo + self.batch_size, start + global_batch, len(self.x))
            lo = min(lo, hi)
            self.reads.append((lo, hi))
            yield mx.nd.array(self.x[lo:hi].reshape((-1,) + self.x.shape[1:])), mx.nd.array(self.y[lo:hi])


def readme_loop(net, train, trainer, epochs: int) -> None:
    """The README's "your own loop": Trainer.backward and Trainer.step, an empty batch included."""
    from mxnet import autograd, gluon

    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    for _ in range(epochs):
        for images, labels in train:
            if images.shape[0]:
                with autograd.record():
                    loss = loss_fn(net(images), labels)
                trainer.backward(loss)
            trainer.step(images.shape[0])


def quadrant_problem(n: int, size: int = 16, classes: int = 4, seed: int = 0):
    """A small learnable problem: the label is the brightest quadrant of a noisy image (NCHW float32)."""
    rng = np.random.RandomState(seed)
    y = rng.randint(0, classes, n)
    x = rng.normal(0, 1, (n, 3, size, size)).astype(np.float32)
    h = size // 2
    for i, label in enumerate(y):
        r, c = divmod(int(label), 2)
        x[i, :, r * h:(r + 1) * h, c * h:(c + 1) * h] += 1.5
    return x, y



def class_sorted_records(prefix, *, classes: int = 3, per_class: int = 1500, size: int = 8):
    """A ``.rec`` written class after class (as im2rec without shuffling writes it): ``per_class`` copies of
    one tiny JPEG per class, labels 0, 0, ..., 1, 1, ..., 2, ..."""
    encoded = jpeg(pattern(size, size))
    items = [(c, encoded, f"{c}/{i}.jpg") for c in range(classes) for i in range(per_class)]
    return recordio.write_records(prefix, items, overwrite=True)


def peak_rss_mb(code: str, timeout: float = 300) -> float:
    """Run ``code`` in a fresh Python process and return its peak resident memory (ru_maxrss) in MB."""
    import subprocess
    import sys

    script = code + "\nimport resource\nprint('PEAK', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([repo, os.path.join(repo, "tests")])}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=timeout, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return int(proc.stdout.split("PEAK")[-1]) / 1024


@contextlib.contextmanager
def file_lock(path):
    """Hold an exclusive lock on the file ``path`` (made if missing) for the ``with`` block: the pytest-xdist
    workers of ``make test`` use it to take turns (flock: released by the kernel if a worker dies)."""
    import fcntl

    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def run_folder(tmp_path_factory):
    """The temporary folder of the whole test run: under pytest-xdist, the one above each worker's own."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@contextlib.contextmanager
def one_horovod_job_at_a_time(tmp_path_factory):
    """Under pytest-xdist (``make test``'s two workers), hold a lock the workers share while a Horovod job runs, so
    that two jobs never run at once: their workers need both cores (beside another job, a two-worker run once
    aborted). A no-op in a plain pytest run."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        yield
        return
    with file_lock(str(run_folder(tmp_path_factory) / "horovod.lock")):
        yield


def _first_error_lines(stderr: str, lines: int = 15) -> str:
    """Each rank's first stderr lines: the rank that failed first often says why only there, long before the
    other ranks' tracebacks that fill the end of the output."""
    ranks = {}
    for line in stderr.splitlines():
        if "]<stderr>:" in line:
            ranks.setdefault(line.split("]<stderr>:", 1)[0], []).append(line)
    return "".join("\n".join(found[:lines]) + "\n...\n" for _, found in sorted(ranks.items()))


def horovodrun(np_: int, script: str, *args: str, timeout: float = 600, env=None) -> subprocess.CompletedProcess:
    """Run ``python script args`` under ``horovodrun -np np_`` with Gloo on this host; fail loudly on error."""
    exe = shutil.which("horovodrun", path=os.path.dirname(sys.executable)) or shutil.which("horovodrun")
    assert exe, "horovodrun is not installed in this environment (run tools/setup_env.sh)"
    cmd = [exe, "-np", str(np_), "-H", f"localhost:{np_}", "--gloo", sys.executable, script, *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=REPO,
                          env={**os.environ, **(env or {})})
    assert proc.returncode == 0, f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n" + \
        _first_error_lines(proc.stderr) + proc.stderr[-4000:]
    return proc


def val_images(root, n=None):
    """The first ``n`` (all by default) encoded images of ``root``/val.rec and their labels (an int array)."""
    items = list(recordio.read_records(os.path.join(root, "val.rec")))[:n]
    return [bytes(b) for _, b in items], np.array([label for label, _ in items])


def predictor_top1(predictor, images, labels) -> float:
    """Top-1 accuracy of a Predictor on encoded images with their labels."""
    from resnet_gluon.data.preprocessing import preprocess

    logits = predictor.logits(preprocess(images, predictor.preprocessing))
    return float((logits.argmax(1) == labels).mean())
