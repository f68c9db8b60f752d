"""Small image data sets made on the fly for the tests."""
import os

import cv2
import numpy as np

from resnet_gluon import data


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
    return data.write_records(prefix, items, overwrite=True), items


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
