"""`clickme:PATH[?verify=true&raw_dtype=uint8]`: ClickMe images and click maps from TFRecord shards.

PATH is a shard or a folder of shards, read WITHOUT TensorFlow (`tfrecord.py`). Fields: `image`
and `heatmap` as encoded image bytes (JPEG/PNG/..., decoded with OpenCV) or raw arrays; `label`
int64 (optional). A raw array's shape comes from an int64 field `<name>_shape` (H, W[, C]) or
`height`/`width` when present; otherwise it is assumed SQUARE with 3 channels (image) or 1
(heatmap), bytes read as `raw_dtype` (uint8 by default, or float32). Raw float images in [0, 1]
are taken as is, others as 0-255 values.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

import numpy as np
import torch

from ..errors import OverfocusError
from .human import HUMAN_MAPS, make_sample
from .imagefile import decode_image
from .tfrecord import parse_example, read_tfrecord, tfrecord_index


# JPEG, PNG, TIFF: magic numbers long enough not to be mistaken for raw pixel bytes
_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"II*\x00", b"MM\x00*")


def _decode_encoded(data: bytes) -> Optional[np.ndarray]:
    """Encoded image bytes -> array (colour as RGB); None when the bytes are not an image format."""
    import cv2

    if not (data.startswith(_MAGIC) or (data[:4] == b"RIFF" and data[8:12] == b"WEBP")):
        return None
    try:
        image = decode_image(data, "bytes", hint="re-export the record")
    except OverfocusError as exc:  # a ValueError: the caller names the record and the shard
        raise ValueError(f"its encoded image: {exc}") from None
    if image.ndim == 3 and image.shape[2] >= 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2RGB if image.shape[2] == 4 else cv2.COLOR_BGR2RGB)
    return image


def _raw_shape(example: Dict, name: str, count: int, channels: int) -> Tuple[int, ...]:
    """Shape from `<name>_shape` or `height`/`width`, else square with `channels` (see module doc)."""
    if f"{name}_shape" in example:
        return tuple(int(v) for v in example[f"{name}_shape"])
    if "height" in example and "width" in example:
        h, w = int(example["height"][0]), int(example["width"][0])
        return (h, w) if count == h * w else (h, w, count // max(1, h * w))
    side = int(round((count / channels) ** 0.5))
    if side * side * channels != count:
        raise ValueError(f"{count} raw values are not a square {channels}-channel array; add a {name}_shape field")
    return (side, side, channels) if channels > 1 else (side, side)


def decode_array(example: Dict, name: str, channels: int, raw_dtype: str = "uint8") -> np.ndarray:
    """The field `name` as an array: encoded image bytes, raw bytes, or a float/int64 list."""
    values = example.get(name)
    if not values:
        raise ValueError(f"no field {name!r} (fields: {sorted(example)})")
    if isinstance(values[0], bytes):
        decoded = _decode_encoded(values[0])
        if decoded is not None:
            return decoded
        arr = np.frombuffer(values[0], np.dtype(raw_dtype).newbyteorder("<")).copy()  # writable
    else:
        arr = np.asarray(values, np.float32)
    return arr.reshape(_raw_shape(example, name, arr.size, channels))


def _as_rgb(image: np.ndarray) -> np.ndarray:
    """Decoded or raw RGB pixels (uint8 or float) -> H x W x 3 uint8 RGB."""
    import cv2

    if image.dtype != np.uint8:
        image = image.astype(np.float32)
        scale = 255.0 if float(np.nanmax(image, initial=0)) <= 1.0 else 1.0
        image = np.clip(image * scale, 0, 255).astype(np.uint8)
    if image.ndim == 2 or image.shape[2] == 1:
        return cv2.cvtColor(image.reshape(image.shape[:2]), cv2.COLOR_GRAY2RGB)
    return image[:, :, :3]


@HUMAN_MAPS.register("clickme")
class ClickMeDataset(torch.utils.data.Dataset):
    """ClickMe images and human click maps from TFRecord shards, read without TensorFlow.

    Example:
        >>> ds = ClickMeDataset("/data/clickme/val", image_size=64)   # doctest: +SKIP
        >>> ds[0]["human"].shape                                       # doctest: +SKIP
        torch.Size([64, 64])
    """

    has_boxes = False
    classes: List[str] = []
    OPTIONS = frozenset({"verify", "raw_dtype"})
    USAGE = "clickme:PATH[?verify=true&raw_dtype=uint8]"

    def __init__(self, path: Union[str, Path], image_size: int, verify: bool = True, raw_dtype: str = "uint8"):
        if raw_dtype not in ("uint8", "float32"):
            raise OverfocusError(f"ClickMe raw_dtype={raw_dtype!r}: use uint8 or float32")
        self.path, self.image_size, self.verify, self.raw_dtype = Path(path), image_size, verify, raw_dtype
        shards = self._shards()
        self.records = [(shard, off, n, i) for shard in shards
                        for i, (off, n) in enumerate(tfrecord_index(shard, verify))]
        if not self.records:
            raise OverfocusError(f"the ClickMe shards in {self.path} hold no records")

    def _shards(self) -> List[Path]:
        if self.path.is_file():
            return [self.path]
        shards = sorted(p for p in self.path.glob("*") if p.is_file() and not p.name.startswith(".")) \
            if self.path.is_dir() else []
        if not shards:
            raise OverfocusError(f"no ClickMe TFRecord shards at {self.path}: pass a shard or a folder of shards")
        return shards

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> Dict:
        shard, offset, length, number = self.records[index]
        try:
            example = parse_example(read_tfrecord(shard, offset, length, self.verify))
            image = _as_rgb(decode_array(example, "image", 3, self.raw_dtype))
            heatmap = decode_array(example, "heatmap", 1, self.raw_dtype).astype(np.float32)
        except ValueError as exc:  # OverfocusError is a ValueError too: keep its message
            if isinstance(exc, OverfocusError):
                raise
            raise OverfocusError(f"ClickMe record {number} of {shard} is malformed ({exc})") from None
        if heatmap.ndim == 3:
            heatmap = heatmap.mean(axis=2)  # a colour-encoded heatmap: its grey level
        label = int(example["label"][0]) if example.get("label") else -1
        return make_sample(image, heatmap, self.image_size, label, f"{shard.name}#{number}")
