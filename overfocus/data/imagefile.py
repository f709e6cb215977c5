"""Decoding image files safely: one-line errors for corrupt, truncated and oversized images.

Two rules on top of OpenCV's decoder:

- **Size**: the pixel count is read from the file's header (Pillow reads only the header) before
  anything is decoded; above `MAX_IMAGE_PIXELS` the image is refused, so a header that claims
  100000 x 100000 pixels costs nothing instead of tens of gigabytes.
- **JPEG completeness**: OpenCV decodes a truncated JPEG with a grey tail and only a warning, so
  a JPEG must contain its end-of-image marker (EOI) where the decoder would meet it: after the
  last scan, found by walking the marker segments. Bytes after EOI (zero padding to a block size,
  common in real datasets) are ignored, as PIL and OpenCV ignore them.

Example:
    >>> import cv2, numpy as np
    >>> data = cv2.imencode(".jpg", np.zeros((8, 8, 3), np.uint8))[1].tobytes()
    >>> jpeg_is_complete(data), jpeg_is_complete(data + bytes(4096)), jpeg_is_complete(data[:-40])
    (True, True, False)
"""
from __future__ import annotations

import io
import re
import warnings
from pathlib import Path
from typing import Optional, Union

import numpy as np

from ..errors import OverfocusError

MAX_IMAGE_PIXELS = 1 << 26  # 64 megapixels (8192 x 8192): a 50 MP photo fits, a decompression bomb does not
SKIP_HINT = "replace it or pass --skip-bad to skip such files"
# markers without a length field: TEM, RST0-7, SOI, EOI
_STANDALONE = {0x01, *range(0xD0, 0xDA)}


def header_pixels(data: bytes) -> Optional[int]:
    """Width x height from an image header without decoding; None when Pillow cannot tell.

    Example:
        >>> import cv2, numpy as np
        >>> header_pixels(cv2.imencode(".png", np.zeros((3, 5), np.uint8))[1].tobytes())
        15
    """
    from PIL import Image  # imported here: keeps `import overfocus` light

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                return img.size[0] * img.size[1]
    except Image.DecompressionBombError as exc:  # beyond Pillow's own limit; it names the count
        found = re.search(r"\((\d+) pixels\)", str(exc))
        return int(found.group(1)) if found else MAX_IMAGE_PIXELS + 1
    except Exception:  # noqa: BLE001 (any header Pillow cannot parse: let OpenCV judge the bytes)
        return None


def jpeg_is_complete(data: bytes) -> bool:
    """True when a JPEG's scans end with an EOI marker (trailing bytes after it are allowed)."""
    buf = np.frombuffer(data, np.uint8)
    pos = 2  # after SOI
    while pos + 1 < len(buf):
        if buf[pos] != 0xFF:
            return False  # not at a marker: the segment structure is broken
        marker = int(buf[pos + 1])
        if marker == 0xFF:  # fill byte before a marker
            pos += 1
            continue
        if marker == 0xD9:
            return True
        if marker in _STANDALONE:
            pos += 2
            continue
        if pos + 3 >= len(buf):
            return False
        pos += 2 + (int(buf[pos + 2]) << 8 | int(buf[pos + 3]))
        if marker == 0xDA:  # start of scan: entropy-coded data runs to the next real marker
            pos = _next_marker(buf, pos)
    return False


def _next_marker(buf: np.ndarray, start: int) -> int:
    """Position of the first 0xFF in buf[start:] that begins a marker other than RST (len(buf) if none).

    In entropy-coded data a 0xFF byte is followed by 0x00 (stuffing), so only real markers remain.
    """
    body = buf[start:]
    if len(body) < 2:
        return len(buf)
    nxt = body[1:]
    hits = np.flatnonzero((body[:-1] == 0xFF) & (nxt != 0x00) & (nxt != 0xFF) & ((nxt < 0xD0) | (nxt > 0xD7)))
    return start + int(hits[0]) if hits.size else len(buf)


def decode_image(data: Union[bytes, np.ndarray], name: Union[str, Path], hint: str = SKIP_HINT) -> np.ndarray:
    """Encoded image bytes -> the array OpenCV decodes (BGR/BGRA/grey, any depth), checked first.

    Raises OverfocusError naming `name` for an empty, oversized, truncated or undecodable image;
    `hint` ends the message (how to fix it where the image is read).
    """
    import cv2

    data = data.tobytes() if isinstance(data, np.ndarray) else bytes(data)
    if not data:
        raise OverfocusError(f"cannot read image {name}: the file is missing or empty")
    pixels = header_pixels(data)
    if pixels is not None and pixels > MAX_IMAGE_PIXELS:
        raise OverfocusError(f"image {name} claims {pixels:,} pixels in its header, more than the "
                             f"{MAX_IMAGE_PIXELS:,} overfocus reads: {hint}")
    if data[:3] == b"\xff\xd8\xff" and not jpeg_is_complete(data):
        raise OverfocusError(f"cannot decode image {name}: the file is corrupt (a JPEG truncated before "
                             f"its end marker); {hint}")
    try:
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error:
        img = None
    if img is None:
        raise OverfocusError(f"cannot decode image {name}: the file is corrupt; {hint}")
    return img
