"""Encoded images as the pipelines read them: which files every decoder of the stack reads alike, and
re-encoding the others.

DALI (``fn.decoders.image``), MXNet's ``ImageRecordIter`` (the OpenCV built into libmxnet) and the Predictor
(:func:`resnet_gluon.data.preprocessing.load_image`, OpenCV 4) agree on plain JPEGs: baseline or extended-sequential,
8-bit, one (grayscale) or three (YCbCr) components, no EXIF orientation. They differ on the rest (measured
with DALI 1.35 and opencv-python 4.8):

- EXIF orientation: ignored by DALI, ``ImageRecordIter`` and ``cv2.IMREAD_UNCHANGED``; applied by
  ``cv2.IMREAD_COLOR`` (to JPEGs, PNGs and TIFFs), image viewers and Pillow's ``ImageOps.exif_transpose``.
- GIF: decoded by none of DALI, ``ImageRecordIter`` and OpenCV. WebP: not by ``ImageRecordIter``.
- CMYK JPEGs: each library converts them with its own formula.
- A truncated JPEG is decoded without an error by DALI and OpenCV, with grey or garbage in its lower part.
- Transparency (RGBA, LA, palette or grayscale PNGs with a ``tRNS`` chunk, WebP with alpha): every decoder
  drops the alpha channel and shows the colour stored under it, which viewers never show: two files that
  look alike can hold different colours there.

So :func:`for_records` passes plain JPEGs through byte for byte and stores every other decodable image as
pixels all of them read alike, decoded by :func:`decode_upright`: EXIF orientation applied (upright, as
viewers show it), CMYK converted to RGB by OpenCV (the Adobe convention of Photoshop's CMYK JPEGs, not
inverted), transparent images composited onto :data:`ALPHA_BACKGROUND` (white: as they look on a white
page), 16-bit scaled to 8-bit, re-encoded as a baseline JPEG of quality 95 (as MXNet's ``im2rec``
re-encodes). GIFs, truncated or undecodable files and images over OpenCV's size limit are refused with a
one-line :class:`ImageError` naming the file, the reason and the fix.

Nothing here imports DALI or MXNet; OpenCV is imported when an image is decoded.
"""
from __future__ import annotations

import dataclasses
import struct
from typing import Optional, Tuple

import numpy as np

from .._core.files import printable

__all__ = ["ImageInfo", "ImageError", "ALPHA_BACKGROUND", "inspect_image", "image_problem", "refusal",
           "decode_upright", "composite", "for_records", "JPEG_QUALITY"]

#: Quality of re-encoded images (MXNet's ``im2rec`` default).
JPEG_QUALITY = 95

#: The one background transparent images are composited onto (RGB, 0-255), white, as they look on a page.
ALPHA_BACKGROUND = (255, 255, 255)

_SIGNATURES = ((b"\xff\xd8\xff", "JPEG"), (b"\x89PNG\r\n\x1a\n", "PNG"), (b"GIF87a", "GIF"), (b"GIF89a", "GIF"),
               (b"BM", "BMP"), (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"), (b"\x00\x00\x00\x0cjP  ", "JPEG 2000"))
# Start-of-frame markers (ITU T.81 table B.1): the frame header gives precision and components.
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
# OpenCV refuses to decode more pixels than this (imgcodecs' CV_IO_MAX_IMAGE_PIXELS default, 2^30).
_OPENCV_MAX_PIXELS = 1 << 30


class ImageError(ValueError):
    """An image that cannot be used, as one line: ``'<name>' <reason>; <fix>``.

    Attributes ``name`` (the file, or 'image bytes'), ``reason`` (a phrase following the name: 'is a GIF, ...')
    and ``fix`` (what to do: 'convert it to PNG or JPEG').
    """

    def __init__(self, name, reason: str, fix: str):
        self.name, self.reason, self.fix = name, reason, fix
        super().__init__(f"{printable(name)} {reason}; {fix}")


@dataclasses.dataclass(frozen=True)
class ImageInfo:
    """What the file's header says (no pixels decoded).

    ``format``: 'JPEG', 'PNG', 'GIF', 'BMP', 'TIFF', 'WebP', 'JPEG 2000', 'PNM' or 'unknown' (from the
    signature bytes, never the file name). ``width`` and ``height`` in pixels (JPEG, PNG; None for others).
    ``alpha``: the header declares transparency (PNG colour types 4 and 6 or a ``tRNS`` chunk, WebP's alpha
    flags), False when it rules it out, None when the header does not say (TIFF, JPEG 2000).
    ``orientation``: EXIF tag 0x0112, 1-8 (JPEG APP1, PNG ``eXIf`` before the image data; None without one).
    For JPEGs: ``sof`` (start-of-frame marker, 0xC0 baseline, 0xC1 extended sequential, 0xC2 progressive,
    ...), ``precision`` (bits), ``components`` (1 gray, 3 YCbCr/RGB, 4 CMYK/YCCK), ``adobe_transform``
    (APP14 'Adobe' colour transform: 0 none/RGB/CMYK, 1 YCbCr, 2 YCCK) and ``complete`` (an end-of-image
    marker follows the first scan; False for a truncated file).
    """

    format: str
    sof: Optional[int] = None
    precision: Optional[int] = None
    components: Optional[int] = None
    orientation: Optional[int] = None
    adobe_transform: Optional[int] = None
    complete: bool = True
    width: Optional[int] = None
    height: Optional[int] = None
    alpha: Optional[bool] = None

    @property
    def plain_jpeg(self) -> bool:
        """A JPEG that DALI, ``ImageRecordIter`` and OpenCV decode to the same pixels."""
        return (self.format == "JPEG" and self.complete and self.sof in (0xC0, 0xC1) and self.precision == 8
                and self.components in (1, 3) and self.orientation in (None, 1)
                and not (self.components == 3 and self.adobe_transform == 0))

    def describe(self) -> str:
        """Why the image is not a plain JPEG, in a few words ('PNG', 'CMYK JPEG', 'EXIF-rotated JPEG', ...)."""
        if self.format != "JPEG":
            return self.format
        if self.components == 4:
            return "CMYK JPEG"
        if self.orientation not in (None, 1):
            return "EXIF-rotated JPEG"
        if self.sof == 0xC2:
            return "progressive JPEG"
        if self.precision != 8:
            return f"{self.precision}-bit JPEG"
        return "other JPEG" if not self.plain_jpeg else "JPEG"


def _format(raw: bytes) -> str:
    for signature, name in _SIGNATURES:
        if raw.startswith(signature):
            return name
    if raw[:4] == b"RIFF" and raw[8:12] == b"WEBP":
        return "WebP"
    if len(raw) > 2 and raw[:1] == b"P" and raw[1:2] in b"123456" and raw[2:3].isspace():
        return "PNM"
    return "unknown"


def _exif_orientation(tiff: bytes) -> Optional[int]:
    """Orientation (tag 0x0112) of IFD0 in the TIFF structure of an EXIF segment (CIPA DC-008 section 4.6)."""
    try:
        order = {b"II": "<", b"MM": ">"}[tiff[:2]]
        (ifd,) = struct.unpack(order + "I", tiff[4:8])
        (count,) = struct.unpack(order + "H", tiff[ifd:ifd + 2])
        for i in range(count):
            tag, kind, _, value = struct.unpack(order + "HHI4s", tiff[ifd + 2 + 12 * i: ifd + 14 + 12 * i])
            if tag == 0x0112 and kind == 3:  # SHORT
                return struct.unpack(order + "H", value[:2])[0]
    except (KeyError, struct.error):
        pass
    return None


def _jpeg_info(raw: bytes) -> ImageInfo:
    """Walk the marker segments up to the first scan (ITU T.81 annex B); stop at anything malformed."""
    fields = dict(format="JPEG", alpha=False)
    pos = 2
    while pos + 4 <= len(raw):
        if raw[pos] != 0xFF:
            break
        marker = raw[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if 0xD0 <= marker <= 0xD8 or marker == 0x01:  # markers without a length
            pos += 2
            continue
        (length,) = struct.unpack(">H", raw[pos + 2:pos + 4])
        segment = raw[pos + 4:pos + 2 + length]
        if marker in _SOF and len(segment) >= 6:
            height, width = struct.unpack(">HH", segment[1:5])
            fields.update(sof=marker, precision=segment[0], components=segment[5], width=width, height=height)
        elif marker == 0xE1 and segment.startswith(b"Exif\x00\x00") and "orientation" not in fields:
            fields["orientation"] = _exif_orientation(segment[6:])
        elif marker == 0xEE and segment.startswith(b"Adobe") and len(segment) >= 12:
            fields["adobe_transform"] = segment[11]
        elif marker == 0xDA:
            # In entropy-coded data 0xFF is always followed by 0x00 or a restart marker, so the next FFD9
            # is the end-of-image marker; a truncated file has none.
            return ImageInfo(**fields, complete=raw.find(b"\xff\xd9", pos + 2 + length) >= 0)
        pos += 2 + length
    return ImageInfo(**fields, complete=False)


def _png_chunks(raw: bytes):
    """``(type, data)`` of the chunks before the first IDAT (what libpng's ``png_read_info`` reads)."""
    pos = 8
    while pos + 8 <= len(raw):
        length, kind = struct.unpack(">I4s", raw[pos:pos + 8])
        if kind == b"IDAT":
            return
        yield kind, raw[pos + 8:pos + 8 + length]
        pos += 12 + length


def _png_info(raw: bytes) -> ImageInfo:
    """IHDR (size, colour type), tRNS and eXIf (PNG specification, 3rd edition, section 11)."""
    fields = dict(format="PNG", alpha=False)
    for kind, data in _png_chunks(raw):
        if kind == b"IHDR" and len(data) >= 10:
            fields.update(width=struct.unpack(">I", data[0:4])[0], height=struct.unpack(">I", data[4:8])[0],
                          precision=data[8], components=data[9])  # bit depth, colour type
            fields["alpha"] = data[9] in (4, 6)
        elif kind == b"tRNS":
            fields["alpha"] = True
        elif kind == b"eXIf":
            fields["orientation"] = _exif_orientation(data)
    return ImageInfo(**fields)


def _webp_alpha(raw: bytes) -> bool:
    """The alpha flag of an extended (VP8X) or lossless (VP8L) WebP header (RFC 9649 sections 2.7, 3.2)."""
    if raw[12:16] == b"VP8X":
        return len(raw) > 20 and bool(raw[20] & 0x10)
    if raw[12:16] == b"VP8L" and len(raw) >= 25:
        return bool(struct.unpack("<I", raw[21:25])[0] >> 28 & 1)
    return False


def inspect_image(raw: bytes) -> ImageInfo:
    """The format of encoded image bytes, its size and transparency where the header gives them, and, for
    JPEGs, the header fields that decide how it decodes."""
    fmt = _format(raw)
    if fmt == "JPEG":
        return _jpeg_info(raw)
    if fmt == "PNG":
        return _png_info(raw)
    if fmt == "WebP":
        return ImageInfo(format=fmt, alpha=_webp_alpha(raw))
    return ImageInfo(format=fmt, alpha=None if fmt in ("TIFF", "JPEG 2000") else False)


_REFUSED = {"GIF": ("is a GIF, which DALI and OpenCV cannot decode", "convert it to PNG or JPEG"),
            "truncated": ("is a truncated JPEG (its data ends before the end-of-image marker)",
                          "replace it with an intact copy")}
_UNREADABLE = "is not a readable image (it is not an image, or it is corrupt)"
_REPLACE = "replace it with a JPEG, PNG, BMP, TIFF or WebP image"


def refusal(info: ImageInfo) -> Optional[str]:
    """Why an image is refused before decoding (a phrase following its name), or None."""
    refused = _refused(info)
    return refused[0] if refused else None


def _refused(info: ImageInfo) -> Optional[Tuple[str, str]]:
    """(reason, fix) for what is refused before decoding: GIFs and truncated JPEGs."""
    if info.format == "GIF":
        return _REFUSED["GIF"]
    if info.format == "JPEG" and not info.complete:
        return _REFUSED["truncated"]
    return None


def _opencv_error(err: Exception, info: ImageInfo) -> Tuple[str, str]:
    """(reason, fix) for an exception OpenCV raised while decoding."""
    message = str(err)
    if "CV_IO_MAX_IMAGE" in message:
        size = f"{info.width} x {info.height} pixels" if info.width else "more pixels than OpenCV decodes"
        return (f"has {size}, over OpenCV's limit of 2^30 pixels (CV_IO_MAX_IMAGE_PIXELS)",
                "downscale it (e.g. to at most 20000 pixels a side)")
    detail = next((line.strip() for line in reversed(message.splitlines()) if line.strip()), type(err).__name__)
    return f"could not be decoded by OpenCV ({detail})", _REPLACE


def _orient(array: np.ndarray, orientation: Optional[int]) -> np.ndarray:
    """Apply an EXIF orientation (1-8) as OpenCV's ``IMREAD_COLOR`` does (imgcodecs ``ExifTransform``)."""
    if orientation in (5, 6, 7, 8):
        array = array.swapaxes(0, 1)
    rows, cols = {2: (1, -1), 3: (-1, -1), 4: (-1, 1), 6: (1, -1), 7: (-1, -1), 8: (-1, 1)}.get(orientation, (1, 1))
    return np.ascontiguousarray(array[::rows, ::cols])


def _alpha(buf: np.ndarray, info: ImageInfo) -> Optional[np.ndarray]:
    """The image's alpha channel as uint8 (H, W) in the orientation ``IMREAD_COLOR`` gives, or None if opaque."""
    import cv2

    if info.alpha is False:
        return None
    full = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)  # the one flag that keeps alpha (and skips EXIF rotation)
    if full is None:
        return None
    if full.ndim == 3 and full.shape[2] in (2, 4):
        alpha = full[:, :, -1]
    elif info.format == "PNG" and info.components == 0 and full.ndim == 2:
        # Grayscale with a tRNS key: OpenCV keeps one channel, so the key's pixels are the transparent ones.
        key = _png_gray_key(buf.tobytes(), info, full.dtype)
        alpha = np.where(full == key, 0, 255).astype(np.uint8) if key is not None else None
    else:
        alpha = None
    if alpha is None:
        return None
    if alpha.dtype != np.uint8:  # 16-bit alpha (uint16) or float TIFFs: to 0-255
        scale = 255 / 65535 if alpha.dtype == np.uint16 else 255
        alpha = np.clip(np.rint(alpha.astype(np.float32) * scale), 0, 255).astype(np.uint8)
    if alpha.min() == 255:
        return None
    return _orient(alpha, info.orientation) if info.format == "PNG" else alpha  # TIFFs come upright


def _png_gray_key(raw: bytes, info: ImageInfo, dtype) -> Optional[int]:
    """The transparent gray level of a grayscale PNG's tRNS chunk, on the scale OpenCV decodes it to."""
    data = dict(_png_chunks(raw)).get(b"tRNS", b"")
    if len(data) < 2:
        return None
    key, depth = struct.unpack(">H", data[:2])[0], info.precision or 8
    return key if depth >= 8 or dtype != np.uint8 else key * 255 // ((1 << depth) - 1)


def composite(color: np.ndarray, alpha: np.ndarray, background: Tuple[int, int, int] = ALPHA_BACKGROUND
              ) -> np.ndarray:
    """``color`` (uint8 ``(H, W, 3)``) over ``background`` (in the same channel order) with ``alpha``
    (uint8 ``(H, W)``, 255 opaque): ``round((color * alpha + background * (255 - alpha)) / 255)``, uint8."""
    a = alpha.astype(np.uint16)[:, :, None]
    # At most 255 * 255 + 127 before the division: uint16 holds every step.
    mixed = color.astype(np.uint16) * a + np.asarray(background, np.uint16) * (255 - a) + 127
    return (mixed // 255).astype(np.uint8)


def _decode(raw: bytes, name) -> Tuple[np.ndarray, bool]:
    """(BGR uint8 pixels as :func:`decode_upright` gives them, whether the image had transparency)."""
    import cv2

    info = inspect_image(raw)
    refused = _refused(info) if raw else (_UNREADABLE, _REPLACE)
    if refused:
        raise ImageError(name, *refused)
    buf = np.frombuffer(raw, np.uint8)
    try:
        image = cv2.imdecode(buf, cv2.IMREAD_COLOR)
        alpha = _alpha(buf, info) if image is not None else None
    except cv2.error as err:
        raise ImageError(name, *_opencv_error(err, info)) from None
    if image is None:
        raise ImageError(name, _UNREADABLE, _REPLACE)
    if alpha is None:
        return image, False
    if alpha.shape != image.shape[:2]:
        raise ImageError(name, f"has an alpha channel of shape {alpha.shape} for an image of {image.shape[:2]}",
                         _REPLACE)
    return composite(image, alpha, ALPHA_BACKGROUND[::-1]), True


def decode_upright(raw: bytes, *, name="image bytes") -> np.ndarray:
    """Decode image bytes as every path of the library reads them: BGR uint8 ``(H, W, 3)``, upright.

    ``cv2.IMREAD_COLOR`` applies the EXIF orientation, converts CMYK and grayscale to BGR and scales 16-bit
    to 8-bit; transparent images (RGBA, LA, palette or grayscale PNGs with ``tRNS``, WebP or TIFF with alpha)
    are composited onto :data:`ALPHA_BACKGROUND`, so they are read as they look, whatever colour their
    transparent pixels hold.

    Raises
    ------
    ImageError
        One line naming ``name``: a GIF, a truncated JPEG, bytes OpenCV cannot decode, an image over
        OpenCV's limit of 2^30 pixels, or any other OpenCV error.
    """
    return _decode(raw, name)[0]


def image_problem(raw: bytes) -> Optional[str]:
    """Why DALI or another pipeline would fail on, or misread, these image bytes; None when they are fine.

    A phrase to follow the image's name: what :func:`for_records` refuses (a GIF, a truncated JPEG, bytes
    OpenCV cannot decode, an image over OpenCV's size limit), an EXIF orientation other than 1, which DALI
    and ``ImageRecordIter`` ignore, or transparency, which they drop (showing the hidden colour).
    """
    try:
        _, transparent = _decode(raw, "image")
    except ImageError as err:
        return err.reason
    info = inspect_image(raw)
    if info.format == "JPEG" and info.orientation not in (None, 1):
        return f"has EXIF orientation {info.orientation}, which DALI and ImageRecordIter ignore (it trains rotated)"
    if transparent:
        return ("has transparent pixels, which DALI and ImageRecordIter read as the colour stored under them "
                "(prepare composites them onto white)")
    return None


def for_records(raw: bytes, *, name="image", resize: Optional[int] = None) -> Tuple[bytes, Optional[str]]:
    """Bytes to store in a record for an image file, and why they were re-encoded (None: stored unchanged).

    Parameters
    ----------
    raw : bytes
        The file's bytes.
    name : str
        The file's name, for error messages.
    resize : int, optional
        Downscale (OpenCV area interpolation) so that the shorter side is ``resize`` pixels when it is
        longer, as ``im2rec --resize`` does; default keep every size.

    Returns
    -------
    (bytes, reason)
        Plain JPEGs (see :attr:`ImageInfo.plain_jpeg`) come back unchanged with reason None; other images as
        decoded by :func:`decode_upright` (upright, RGB, transparency composited onto white), re-encoded as
        a quality-95 baseline JPEG, with the reason ('PNG', 'CMYK JPEG', 'EXIF-rotated JPEG', 'downscaled',
        ...).

    Raises
    ------
    ImageError
        One line naming ``name`` and ending '..., or remove it' (see :func:`decode_upright`).
    """
    import cv2

    info = inspect_image(raw)
    try:
        image = decode_upright(raw, name=name)
    except ImageError as err:
        raise ImageError(name, err.reason, f"{err.fix}, or remove it") from None
    height, width = image.shape[:2]
    shrink = resize is not None and min(height, width) > resize
    if info.plain_jpeg and not shrink:
        return raw, None
    reason = info.describe() if not info.plain_jpeg else "downscaled"
    if shrink:
        scale = resize / min(height, width)
        size = (max(resize, round(width * scale)), max(resize, round(height * scale)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise ImageError(name, "could not be re-encoded as JPEG", "convert it to PNG or JPEG, or remove it")
    return encoded.tobytes(), reason
