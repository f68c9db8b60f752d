"""The image kinds of real data sets (issue 12, case 5), written from known upright pixels.

Light on purpose (numpy, OpenCV, Pillow): ``python image_kinds.py FOLDER [NAME ...]`` writes the files in a
child process, because Pillow's JPEG codec can fail in a process that has loaded DALI or Horovod.
"""
import os
import subprocess
import sys

import cv2
import numpy as np

#: File name -> what it is.
IMAGE_KINDS = {
    "plain.jpg": "baseline JPEG",
    "progressive.jpg": "progressive JPEG",
    "png.JPEG": "PNG named .JPEG",
    "cmyk.jpg": "CMYK JPEG (Adobe, as Photoshop writes them)",
    "gray.jpg": "grayscale JPEG",
    "exif6.jpg": "JPEG stored sideways with EXIF orientation 6",
    "bmp.jpg": "BMP named .jpg",
    "webp.jpg": "WebP named .jpg",
    "icon.png": "16x16 RGBA icon",
    "large.jpg": "6000x4000 photo",
    "truncated.jpg": "JPEG cut to 60% of its bytes",
    "anim.gif": "GIF",
}
KIND_SIZE = 48


def pattern(height: int, width: int) -> np.ndarray:
    """A smooth RGB image that shows its orientation: red grows left to right, green top to bottom."""
    x = np.linspace(0, 1, width, dtype=np.float32)[None, :]
    y = np.linspace(0, 1, height, dtype=np.float32)[:, None]
    image = np.stack([30 + 200 * x + 0 * y, 30 + 200 * y + 0 * x, 120 + 60 * np.sin(3 * x + 2 * y)], axis=-1)
    return np.clip(image, 0, 255).astype(np.uint8)


def image_kind_reference(name: str) -> np.ndarray:
    """The upright RGB pixels the kind ``name`` shows (a grayscale one in three channels)."""
    if name == "icon.png":
        return pattern(16, 16)
    if name == "large.jpg":  # smooth, so cheap to make and to compare
        return cv2.resize(pattern(40, 60), (6000, 4000), interpolation=cv2.INTER_LINEAR)
    base = pattern(KIND_SIZE, KIND_SIZE)
    if name == "gray.jpg":
        return np.repeat(cv2.cvtColor(base, cv2.COLOR_RGB2GRAY)[..., None], 3, axis=2)
    return base


def image_kind_references(names=None):
    return {name: image_kind_reference(name) for name in names or IMAGE_KINDS}


def write_image_kinds(folder, names=None) -> None:
    """Write the files of :data:`IMAGE_KINDS` (or ``names`` of them) into ``folder`` (in a child process)."""
    subprocess.run([sys.executable, os.path.abspath(__file__), os.fspath(folder), *(names or IMAGE_KINDS)],
                   check=True)


def _jpeg(image: np.ndarray, quality: int = 95) -> bytes:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    return buf.tobytes()


def _write(folder: str, name: str) -> None:
    from PIL import Image

    path = os.path.join(folder, name)
    upright = Image.fromarray(image_kind_reference(name))
    if name in ("plain.jpg", "large.jpg", "truncated.jpg"):
        data = _jpeg(image_kind_reference(name), 90 if name == "large.jpg" else 95)
        with open(path, "wb") as f:
            f.write(data[: int(0.6 * len(data))] if name == "truncated.jpg" else data)
    elif name == "exif6.jpg":
        # Stored turned 90 degrees counter-clockwise with orientation 6 ('rotate 90 clockwise to display'),
        # as a camera held upright writes it.
        exif = Image.Exif()
        exif[0x0112] = 6
        stored = Image.fromarray(np.ascontiguousarray(np.rot90(image_kind_reference(name), 1)))
        stored.save(path, "JPEG", quality=95, exif=exif.tobytes())
    else:
        options = {"progressive.jpg": ("JPEG", dict(quality=95, progressive=True)), "png.JPEG": ("PNG", {}),
                   "cmyk.jpg": ("JPEG", dict(quality=95)), "gray.jpg": ("JPEG", dict(quality=95)),
                   "bmp.jpg": ("BMP", {}), "webp.jpg": ("WEBP", dict(lossless=True)), "icon.png": ("PNG", {}),
                   "anim.gif": ("GIF", {})}[name]
        mode = {"cmyk.jpg": "CMYK", "gray.jpg": "L", "icon.png": "RGBA"}.get(name, "RGB")
        upright.convert(mode).save(path, options[0], **options[1])


if __name__ == "__main__":
    os.makedirs(sys.argv[1], exist_ok=True)
    for kind in sys.argv[2:]:
        _write(sys.argv[1], kind)
