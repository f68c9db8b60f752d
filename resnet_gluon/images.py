"""Encoded images as the pipelines read them: which files every decoder of the stack reads alike, and
re-encoding the others.

DALI (``fn.decoders.image``), MXNet's ``ImageRecordIter`` (the OpenCV built into libmxnet) and the Predictor
(:func:`resnet_gluon.inference.load_image`, OpenCV 4) agree on plain JPEGs: baseline or extended-sequential,
8-bit, one (grayscale) or three (YCbCr) components, no EXIF orientation. They differ on the rest (measured
with DALI 1.35 and opencv-python 4.8):

- EXIF orientation: ignored by DALI, ``ImageRecordIter`` and ``cv2.IMREAD_UNCHANGED``; applied by
  ``cv2.IMREAD_COLOR``, image viewers and Pillow's ``ImageOps.exif_transpose``.
- GIF: decoded by none of DALI, ``ImageRecordIter`` and OpenCV. WebP: not by ``ImageRecordIter``.
- CMYK JPEGs: each library converts them with its own formula.
- A truncated JPEG is decoded without an error by DALI and OpenCV, with grey or garbage in its lower part.

So :func:`for_records` passes plain JPEGs through byte for byte and stores every other decodable image as
pixels all of them read alike: EXIF orientation applied (upright, as viewers show it), CMYK converted to
RGB by OpenCV (the Adobe convention of Photoshop's CMYK JPEGs, not inverted), alpha dropped, 16-bit
scaled to 8-bit, re-encoded as a baseline JPEG of quality 95 (as MXNet's ``im2rec`` re-encodes). GIFs and
truncated or undecodable files are refused with a one-line error naming the file.

Nothing here imports DALI or MXNet; OpenCV is imported when an image is decoded.
"""
from __future__ import annotations

import dataclasses
import struct
from typing import Optional, Tuple

import numpy as np

__all__ = ["ImageInfo", "inspect_image", "image_problem", "refusal", "decode_upright", "for_records", "JPEG_QUALITY"]

#: Quality of re-encoded images (MXNet's ``im2rec`` default).
JPEG_QUALITY = 95

_SIGNATURES = ((b"\xff\xd8\xff", "JPEG"), (b"\x89PNG\r\n\x1a\n", "PNG"), (b"GIF87a", "GIF"), (b"GIF89a", "GIF"),
               (b"BM", "BMP"), (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"), (b"\x00\x00\x00\x0cjP  ", "JPEG 2000"))
# Start-of-frame markers (ITU T.81 table B.1): the frame header gives precision and components.
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


@dataclasses.dataclass(frozen=True)
class ImageInfo:
    """What the file's header says (no pixels decoded).

    ``format``: 'JPEG', 'PNG', 'GIF', 'BMP', 'TIFF', 'WebP', 'JPEG 2000', 'PNM' or 'unknown' (from the
    signature bytes, never the file name). For JPEGs: ``sof`` (start-of-frame marker, 0xC0 baseline,
    0xC1 extended sequential, 0xC2 progressive, ...), ``precision`` (bits), ``components`` (1 gray,
    3 YCbCr/RGB, 4 CMYK/YCCK), ``orientation`` (EXIF tag 0x0112, 1-8, None without one), ``adobe_transform``
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
    fields = dict(format="JPEG")
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
            fields.update(sof=marker, precision=segment[0], components=segment[5])
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


def inspect_image(raw: bytes) -> ImageInfo:
    """The format of encoded image bytes and, for JPEGs, the header fields that decide how it decodes."""
    fmt = _format(raw)
    return _jpeg_info(raw) if fmt == "JPEG" else ImageInfo(format=fmt)


def refusal(info: ImageInfo) -> Optional[str]:
    """Why an image is refused before decoding (a phrase following its name), or None."""
    if info.format == "GIF":
        return "is a GIF, which DALI and OpenCV cannot decode"
    if info.format == "JPEG" and not info.complete:
        return "is a truncated JPEG (its data ends before the end-of-image marker)"
    return None


_UNREADABLE = "is not a readable image (corrupt or unsupported format)"


def decode_upright(raw: bytes) -> Optional[np.ndarray]:
    """BGR uint8 pixels, upright (``cv2.IMREAD_COLOR`` applies the EXIF orientation), or None."""
    import cv2

    return cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_COLOR) if raw else None


def image_problem(raw: bytes) -> Optional[str]:
    """Why DALI or another pipeline would fail on, or misread, these image bytes; None when they are fine.

    A phrase to follow the image's name: what :func:`for_records` refuses (a GIF, a truncated JPEG, bytes
    OpenCV cannot decode), or an EXIF orientation other than 1, which DALI and ``ImageRecordIter`` ignore.
    """
    info = inspect_image(raw)
    problem = refusal(info)
    if problem is None and decode_upright(raw) is None:
        problem = _UNREADABLE
    if problem is None and info.format == "JPEG" and info.orientation not in (None, 1):
        problem = f"has EXIF orientation {info.orientation}, which DALI and ImageRecordIter ignore (it trains rotated)"
    return problem


def for_records(raw: bytes, *, name: str = "image", resize: Optional[int] = None) -> Tuple[bytes, Optional[str]]:
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
        an upright, RGB, quality-95 baseline JPEG, with the reason ('PNG', 'CMYK JPEG', 'EXIF-rotated JPEG',
        'downscaled', ...).

    Raises
    ------
    ValueError
        One line naming ``name``: a GIF, a truncated JPEG, or bytes OpenCV cannot decode.
    """
    import cv2

    info = inspect_image(raw)
    problem = refusal(info)
    image = None if problem else decode_upright(raw)
    if image is None:
        fix = "convert it to PNG or JPEG" if info.format == "GIF" else "replace it"
        raise ValueError(f"{name!r} {problem or _UNREADABLE}; {fix}, or remove it")
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
        raise ValueError(f"could not re-encode {name!r} as JPEG")
    return encoded.tobytes(), reason
