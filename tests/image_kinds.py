"""The image kinds of real data sets (issue 12, case 5; issue 22, item 6), written from known pixels: each kind's
reference is what it looks like (upright; transparent ones composited onto white, whatever colour their
transparent pixels hold).

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
    "rgba_black.png": "RGBA PNG, transparent on the left, black under the transparent pixels",
    "rgba_white.png": "the same look, white under the transparent pixels",
    "la.png": "gray + alpha PNG",
    "palette.png": "palette PNG with a tRNS chunk (an alpha per palette entry)",
    "alpha.webp": "lossless WebP with alpha",
}
KIND_SIZE = 48
#: Background of transparent images (the library's ALPHA_BACKGROUND, restated so that this file stays light).
WHITE = 255


def pattern(height: int, width: int) -> np.ndarray:
    """A smooth RGB image that shows its orientation: red grows left to right, green top to bottom."""
    x = np.linspace(0, 1, width, dtype=np.float32)[None, :]
    y = np.linspace(0, 1, height, dtype=np.float32)[:, None]
    image = np.stack([30 + 200 * x + 0 * y, 30 + 200 * y + 0 * x, 120 + 60 * np.sin(3 * x + 2 * y)], axis=-1)
    return np.clip(image, 0, 255).astype(np.uint8)


def alpha_ramp(height: int, width: int) -> np.ndarray:
    """uint8 alpha: 0 (transparent) on the left fifth, rising to 255 (opaque) on the right fifth."""
    x = np.clip(np.linspace(-0.25, 1.25, width), 0, 1)
    return np.repeat(np.rint(x * 255).astype(np.uint8)[None, :], height, axis=0)


def over_white(color: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """``color`` composited onto white with ``alpha`` (rounded as the library rounds)."""
    a = alpha.astype(np.uint16)[..., None]
    return ((color.astype(np.uint16) * a + WHITE * (255 - a) + 127) // 255).astype(np.uint8)


def _stored_rgba(name: str) -> np.ndarray:
    """The RGBA pixels an alpha kind's file holds: the colour, replaced by black or white where alpha is 0."""
    color, alpha = _alpha_kind(name)
    hidden = 255 if name == "rgba_white.png" else 0
    color = np.where(alpha[..., None] == 0, hidden, color).astype(np.uint8)
    return np.dstack([color, alpha])


def _alpha_kind(name: str):
    size = KIND_SIZE
    alpha = alpha_ramp(size, size)
    if name == "la.png":
        return np.repeat(cv2.cvtColor(pattern(size, size), cv2.COLOR_RGB2GRAY)[..., None], 3, axis=2), alpha
    if name == "palette.png":  # one palette entry per column: colour and alpha vary left to right only
        return np.repeat(pattern(1, size), size, axis=0), alpha
    return pattern(size, size), alpha


def image_kind_reference(name: str) -> np.ndarray:
    """The upright RGB pixels the kind ``name`` shows (a grayscale one in three channels)."""
    if name in ("rgba_black.png", "rgba_white.png", "la.png", "palette.png", "alpha.webp"):
        return over_white(*_alpha_kind(name))
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
    elif name in ("rgba_black.png", "rgba_white.png", "la.png", "palette.png", "alpha.webp"):
        _write_alpha(path, name)
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


def _write_alpha(path: str, name: str) -> None:
    from PIL import Image

    rgba = _stored_rgba(name)
    if name == "la.png":
        Image.fromarray(np.dstack([rgba[..., 0], rgba[..., 3]]), "LA").save(path, "PNG")
    elif name == "palette.png":
        image = Image.fromarray(np.repeat(np.arange(KIND_SIZE, dtype=np.uint8)[None, :], KIND_SIZE, axis=0), "P")
        image.putpalette(rgba[0, :, :3].tobytes())
        image.save(path, "PNG", transparency=rgba[0, :, 3].tobytes())
    else:
        Image.fromarray(rgba, "RGBA").save(path, "WEBP" if name.endswith(".webp") else "PNG",
                                           **(dict(lossless=True, exact=True) if name.endswith(".webp") else {}))


def strip_png(height: int = 4000, width: int = 1) -> bytes:
    """A PNG of extreme aspect ratio (issue 22, item 4: 1 x 4000, about 12 KB): a smooth gradient along it."""
    t = np.linspace(0, 1, max(height, width), dtype=np.float32)
    rgb = np.stack([40 + 180 * t, 200 - 150 * t, 120 + 80 * np.sin(20 * t)], axis=-1).astype(np.uint8)
    rgb = rgb.reshape(height, width, 3)
    return cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))[1].tobytes()


def huge_bilevel_png(side: int = 33000) -> bytes:
    """A valid all-black 1-bit PNG of ``side`` x ``side`` pixels (33000: 132 KB, over OpenCV's 2^30 pixels),
    written chunk by chunk (PNG specification, 3rd edition, section 5) without holding its pixels."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    row = bytes(1 + (side + 7) // 8)  # filter byte 0, then the packed bits
    packer = zlib.compressobj(9)
    idat = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)  # bit depth 1, grayscale
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


if __name__ == "__main__":
    os.makedirs(sys.argv[1], exist_ok=True)
    for kind in sys.argv[2:]:
        _write(sys.argv[1], kind)
