"""Human importance maps: OSIE fixations / mouse tracking, ClickMe TFRecords, heatmap folders.

Every dataset here yields the samples of `overfocus.data.base` (image in [0, 1], label, boxes,
image_id) plus `human`: an image_size x image_size float tensor, max-normalised to 1 (an all-zero
map stays zero). Their classes are not the model's: `label` is the shard's label for ClickMe and
-1 otherwise; score a model on its predicted class. Open one with `open_human_dataset(spec, size)`:

    osie:PATH[?source=eye|mouse&sigma=24]   PATH/stimuli/<id>.jpg, PATH/eye/fixations.mat,
                                            PATH/mouse_lab/<id>.mat (the OSIE layout)
    clickme:PATH[?verify=true&raw_dtype=uint8]  a TFRecord shard, or a folder of shards
    heatmaps:PATH                           PATH/images/x.jpg + PATH/heatmaps/x.png, or
                                            PATH/x.jpg + PATH/x_heatmap.png

OSIE maps: all viewers' points on an empty map at the photo's resolution, Gaussian blur with
`sigma` pixels (default 24 px, about one degree of visual angle in OSIE's setup), resized to the
model's input like the photo, then normalised. Fixations (`fix_x`, `fix_y`) are 1-based (x, y)
pixels; mouse samples (`coord`) are 1-based (row, column) pairs: both become 0-based (x, y).

ClickMe shards are read WITHOUT TensorFlow: the TFRecord framing (uint64 length, masked CRC-32C of
the length, data, masked CRC-32C of the data; both CRCs checked unless verify=false) and the
tf.train.Example protobuf are decoded here. Fields: `image` and `heatmap` as encoded image bytes
(JPEG/PNG/..., decoded with OpenCV) or raw arrays; `label` int64 (optional). A raw array's shape
comes from an int64 field `<name>_shape` (H, W[, C]) or `height`/`width` when present; otherwise
it is assumed SQUARE with 3 channels (image) or 1 (heatmap), bytes read as `raw_dtype` (uint8 by
default, or float32). Raw float images in [0, 1] are taken as is, others as 0-255 values.
"""
from __future__ import annotations

import functools
import struct
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import yaml

from ..errors import OverfocusError
from .base import Batch, collate_samples, read_rgb, resize_with_boxes, to_tensor

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
OSIE_SIGMA = 24.0  # px at 800 x 600: about one degree of visual angle in OSIE's recordings

# ----------------------------------------------------------------------------------------------
# Maps from points, resizing
# ----------------------------------------------------------------------------------------------


def points_to_map(points_xy: np.ndarray, height: int, width: int, sigma: float = OSIE_SIGMA) -> np.ndarray:
    """Place 0-based (x, y) points (x = column) on a height x width map, blur, normalise to max 1.

    Example:
        >>> m = points_to_map(np.array([[70.0, 10.0]]), 50, 100, sigma=2)
        >>> tuple(int(v) for v in np.unravel_index(m.argmax(), m.shape))   # (row, column)
        (10, 70)
    """
    import cv2

    canvas = np.zeros((height, width), np.float32)
    pts = np.asarray(points_xy, np.float64).reshape(-1, 2)
    pts = pts[np.isfinite(pts).all(axis=1)]
    cols = np.clip(np.round(pts[:, 0]).astype(int), 0, width - 1)
    rows = np.clip(np.round(pts[:, 1]).astype(int), 0, height - 1)
    np.add.at(canvas, (rows, cols), 1.0)
    if sigma > 0:
        canvas = cv2.GaussianBlur(canvas, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_CONSTANT)
    return normalise_map(canvas)


def normalise_map(heatmap: np.ndarray) -> np.ndarray:
    """Float32 map divided by its max; negative values clipped; an all-zero map stays zero."""
    heatmap = np.nan_to_num(np.asarray(heatmap, np.float32)).clip(min=0)
    peak = float(heatmap.max()) if heatmap.size else 0.0
    return heatmap / peak if peak > 0 else heatmap


def resize_map(heatmap: np.ndarray, size: int) -> np.ndarray:
    """Resize an H x W map to size x size as the photo is resized (area when shrinking)."""
    import cv2

    heatmap = np.asarray(heatmap, np.float32)
    if heatmap.shape != (size, size):
        shrink = min(heatmap.shape) > size
        heatmap = cv2.resize(heatmap, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    return heatmap


def make_sample(image: np.ndarray, heatmap: np.ndarray, image_size: int, label: int, image_id: str) -> Dict:
    """A base sample (no boxes) plus `human`, both at image_size x image_size."""
    img, boxes = resize_with_boxes(image, np.zeros((0, 4), np.float32), image_size)
    human = torch.from_numpy(normalise_map(resize_map(heatmap, image_size)))
    return {"image": to_tensor(img), "label": int(label), "boxes": torch.from_numpy(boxes),
            "image_id": image_id, "human": human}


def collate_human(samples: Sequence[Dict]) -> Tuple[Batch, torch.Tensor]:
    """Collate human-map samples: the usual Batch and the human maps B x H x W.

    Example:
        >>> s = {"image": torch.zeros(3, 4, 4), "label": -1, "boxes": torch.zeros(0, 4),
        ...      "image_id": "a", "human": torch.zeros(4, 4)}
        >>> collate_human([s, s])[1].shape
        torch.Size([2, 4, 4])
    """
    samples = [s for s in samples if s is not None]
    return collate_samples(samples), torch.stack([s["human"] for s in samples])


# ----------------------------------------------------------------------------------------------
# OSIE
# ----------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=4)
def _osie_fixations(path: str) -> Dict[str, np.ndarray]:
    """Stimulus name -> all viewers' fixations as 0-based (x, y), from OSIE's fixations.mat."""
    import scipy.io

    try:
        entries = scipy.io.loadmat(path, squeeze_me=True, struct_as_record=False)["fixations"]
    except (OSError, KeyError, ValueError) as exc:
        raise OverfocusError(f"cannot read OSIE fixations {path} ({exc}): "
                             "expected the original fixations.mat") from None
    table = {}
    for entry in np.atleast_1d(entries):
        subjects = np.atleast_1d(entry.subjects)
        xs = [np.atleast_1d(s.fix_x).astype(np.float64) for s in subjects]
        ys = [np.atleast_1d(s.fix_y).astype(np.float64) for s in subjects]
        table[str(entry.img)] = np.stack([np.concatenate(xs) - 1, np.concatenate(ys) - 1], axis=1)
    return table


def _osie_mouse(path: Path) -> np.ndarray:
    """Mouse-tracking samples of one stimulus as 0-based (x, y); `coord` holds 1-based (row, col)."""
    import scipy.io

    try:
        data = scipy.io.loadmat(str(path), squeeze_me=True, struct_as_record=False)
    except (OSError, ValueError) as exc:
        raise OverfocusError(f"cannot read OSIE mouse data {path} ({exc})") from None
    record = data.get("fixations", data)
    coord = getattr(record, "coord", None) if not isinstance(record, dict) else record.get("coord")
    if coord is None:
        raise OverfocusError(f"{path} has no `coord` array: expected OSIE's mouse_lab/<id>.mat files")
    coord = np.asarray(coord, np.float64).reshape(-1, 2)
    return np.stack([coord[:, 1] - 1, coord[:, 0] - 1], axis=1)


class OSIEDataset(torch.utils.data.Dataset):
    """OSIE photographs with eye-fixation or mouse-tracking importance maps; label -1.

    Example:
        >>> ds = OSIEDataset("/data/osie-150", image_size=64, source="mouse")  # doctest: +SKIP
        >>> ds[0]["human"].shape                                                 # doctest: +SKIP
        torch.Size([64, 64])
    """

    has_boxes = False
    classes: List[str] = []

    def __init__(self, root: Union[str, Path], image_size: int, source: str = "eye", sigma: float = OSIE_SIGMA):
        if source not in ("eye", "mouse"):
            raise OverfocusError(f"OSIE source={source!r}: use eye or mouse")
        self.root, self.image_size, self.source, self.sigma = Path(root), image_size, source, float(sigma)
        stimuli = self.root / "stimuli"
        self.paths = sorted(p for p in stimuli.glob("*") if p.suffix.lower() in IMAGE_EXTS) if stimuli.is_dir() else []
        if not self.paths:
            raise OverfocusError(f"no OSIE stimuli in {stimuli}: expected PATH/stimuli/<id>.jpg, "
                                 "PATH/eye/fixations.mat and PATH/mouse_lab/<id>.mat")
        if source == "eye" and not (self.root / "eye" / "fixations.mat").is_file():
            raise OverfocusError(f"{self.root / 'eye' / 'fixations.mat'} is missing: use source=mouse or fix the path")

    def __len__(self) -> int:
        return len(self.paths)

    def points(self, index: int) -> np.ndarray:
        """All viewers' points of image `index` as 0-based (x, y) pixels of the original photo."""
        path = self.paths[index]
        if self.source == "mouse":
            return _osie_mouse(self.root / "mouse_lab" / f"{path.stem}.mat")
        table = _osie_fixations(str(self.root / "eye" / "fixations.mat"))
        if path.name not in table:
            raise OverfocusError(f"fixations.mat has no entry for {path.name}")
        return table[path.name]

    def __getitem__(self, index: int) -> Dict:
        image = read_rgb(self.paths[index])
        heatmap = points_to_map(self.points(index), image.shape[0], image.shape[1], self.sigma)
        return make_sample(image, heatmap, self.image_size, -1, f"osie/{self.paths[index].stem}")


# ----------------------------------------------------------------------------------------------
# TFRecord framing and CRC-32C
# ----------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _crc32c_table() -> Tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1  # Castagnoli, reflected
        table.append(crc)
    return tuple(table)


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli) of `data`, pure Python.

    Example:
        >>> hex(crc32c(b"123456789"))
        '0xe3069283'
    """
    table, crc = _crc32c_table(), 0xFFFFFFFF
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
    """TFRecord's masked CRC: rotate right by 15 bits and add 0xa282ead8 (mod 2^32)."""
    crc = crc32c(data)
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


def tfrecord_index(path: Path, verify: bool = True) -> List[Tuple[int, int]]:
    """(data offset, length) of every record of a TFRecord file, reading only the headers."""
    index, size = [], path.stat().st_size
    with open(path, "rb") as fh:
        while True:
            start = fh.tell()
            header = fh.read(12)
            if not header:
                return index
            if len(header) < 12:
                raise OverfocusError(f"TFRecord file {path} is truncated at byte {start}: re-copy the shard")
            (length,), (length_crc,) = struct.unpack("<Q", header[:8]), struct.unpack("<I", header[8:])
            if verify and masked_crc32c(header[:8]) != length_crc:
                raise OverfocusError(f"TFRecord file {path}: length CRC mismatch at byte {start}; the file is corrupt "
                                     "or not a TFRecord")
            if start + 12 + length + 4 > size:
                raise OverfocusError(f"TFRecord file {path} is truncated at record {len(index)}: re-copy the shard")
            index.append((start + 12, length))
            fh.seek(length + 4, 1)


def read_tfrecord(path: Path, offset: int, length: int, verify: bool = True) -> bytes:
    """The data of one record, its CRC checked (error naming the file on mismatch)."""
    with open(path, "rb") as fh:
        fh.seek(offset)
        data, footer = fh.read(length), fh.read(4)
    if len(data) != length or len(footer) != 4:
        raise OverfocusError(f"TFRecord file {path} is truncated at byte {offset}: re-copy the shard")
    if verify and masked_crc32c(data) != struct.unpack("<I", footer)[0]:
        raise OverfocusError(f"TFRecord file {path}: data CRC mismatch in the record at byte {offset}; "
                             "the file is corrupt (or pass verify=false to skip the check)")
    return data


def iter_tfrecords(path: Union[str, Path], verify: bool = True) -> Iterator[bytes]:
    """Every record's data of a TFRecord file, in order.

    Example:
        >>> import tempfile, os
        >>> p = os.path.join(tempfile.mkdtemp(), "x.tfrecord")
        >>> write_tfrecords(p, [b"ab", b""])
        >>> list(iter_tfrecords(p))
        [b'ab', b'']
    """
    path = Path(path)
    for offset, length in tfrecord_index(path, verify):
        yield read_tfrecord(path, offset, length, verify)


def write_tfrecords(path: Union[str, Path], records: Iterable[bytes]) -> None:
    """Write records with TFRecord framing (atomically); used by tests and small exports."""
    from ..fileio import atomic_write_bytes

    chunks = []
    for data in records:
        length = struct.pack("<Q", len(data))
        chunks += [length, struct.pack("<I", masked_crc32c(length)), data, struct.pack("<I", masked_crc32c(data))]
    atomic_write_bytes(Path(path), b"".join(chunks))


# ----------------------------------------------------------------------------------------------
# A minimal protobuf decoder/encoder for tf.train.Example
# ----------------------------------------------------------------------------------------------

FeatureValue = Union[List[bytes], List[float], List[int]]


def _varint(buf: bytes, pos: int) -> Tuple[int, int]:
    value, shift = 0, 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise ValueError("truncated or over-long varint")
        byte = buf[pos]
        value |= (byte & 0x7F) << shift
        pos, shift = pos + 1, shift + 7
        if not byte & 0x80:
            return value, pos


def _fields(buf: bytes) -> Iterator[Tuple[int, int, Union[int, bytes]]]:
    """(field number, wire type, value) of each field of a message; value int or bytes."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire in (1, 5):
            width = 8 if wire == 1 else 4
            value, pos = bytes(buf[pos:pos + width]), pos + width
        elif wire == 2:
            size, pos = _varint(buf, pos)
            value, pos = bytes(buf[pos:pos + size]), pos + size
        else:
            raise ValueError(f"unsupported wire type {wire}")
        if pos > len(buf):
            raise ValueError("field runs past the end of the message")
        yield number, wire, value


def _signed64(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _parse_feature(buf: bytes) -> FeatureValue:
    """Feature = oneof {1: BytesList, 2: FloatList, 3: Int64List}; each list is field 1, repeated."""
    values: FeatureValue = []
    for kind, _wire, body in _fields(buf):
        for _n, wire, item in _fields(body):
            if kind == 1:
                values.append(item)
            elif kind == 2:
                values.extend(np.frombuffer(item, "<f4").tolist())  # packed (wire 2) or single (wire 5)
            elif kind == 3 and wire == 2:
                pos = 0
                while pos < len(item):
                    v, pos = _varint(item, pos)
                    values.append(_signed64(v))
            elif kind == 3:
                values.append(_signed64(item))
    return values


def parse_example(buf: bytes) -> Dict[str, FeatureValue]:
    """Decode a serialized tf.train.Example into {name: list of bytes | floats | ints}.

    Example:
        >>> parse_example(encode_example({"label": [7], "name": [b"x"]}))
        {'label': [7], 'name': [b'x']}
    """
    features: Dict[str, FeatureValue] = {}
    for number, _w, body in _fields(buf):
        if number != 1:
            continue  # Example has only `features` (1)
        for entry_no, _w2, entry in _fields(body):
            if entry_no != 1:
                continue  # Features has only the map `feature` (1)
            parts = {part: item for part, _w3, item in _fields(entry)}  # map entry: 1 key, 2 value
            key, value = parts.get(1, b"").decode("utf-8"), parts.get(2, b"")
            features[key] = _parse_feature(value)
    return features


def _tag(number: int, wire: int) -> bytes:
    return _encode_varint((number << 3) | wire)


def _encode_varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # negative int64: two's complement, 10 bytes
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _length_delimited(number: int, payload: bytes) -> bytes:
    return _tag(number, 2) + _encode_varint(len(payload)) + payload


def _encode_feature(values) -> bytes:
    if isinstance(values, (bytes, str)):
        values = [values]
    values = list(np.asarray(values).ravel()) if isinstance(values, np.ndarray) else list(values)
    if values and isinstance(values[0], (bytes, str)):
        body = b"".join(_length_delimited(1, v.encode() if isinstance(v, str) else v) for v in values)
        return _length_delimited(1, body)
    if values and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values):
        return _length_delimited(3, _length_delimited(1, b"".join(_encode_varint(int(v)) for v in values)))
    return _length_delimited(2, _length_delimited(1, np.asarray(values, "<f4").tobytes()))


def encode_example(features: Dict[str, Union[bytes, str, Sequence, np.ndarray]]) -> bytes:
    """Serialize {name: bytes | list of bytes | ints | floats} as a tf.train.Example."""
    entries = b"".join(_length_delimited(1, _length_delimited(1, k.encode()) + _length_delimited(2, _encode_feature(v)))
                       for k, v in features.items())
    return _length_delimited(1, entries)


def write_tfrecord_examples(path: Union[str, Path], examples: Iterable[Dict]) -> None:
    """Write tf.train.Example records (dicts as for `encode_example`) to a TFRecord file."""
    write_tfrecords(path, (encode_example(e) for e in examples))


# ----------------------------------------------------------------------------------------------
# ClickMe
# ----------------------------------------------------------------------------------------------


# JPEG, PNG, TIFF: magic numbers long enough not to be mistaken for raw pixel bytes
_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"II*\x00", b"MM\x00*")


def _decode_encoded(data: bytes) -> Optional[np.ndarray]:
    """Encoded image bytes -> array (colour as RGB); None when the bytes are not an image format."""
    import cv2

    if not (data.startswith(_MAGIC) or (data[:4] == b"RIFF" and data[8:12] == b"WEBP")):
        return None
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ValueError("an encoded image that OpenCV cannot decode")
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


class ClickMeDataset(torch.utils.data.Dataset):
    """ClickMe images and human click maps from TFRecord shards, read without TensorFlow.

    Example:
        >>> ds = ClickMeDataset("/data/clickme/val", image_size=64)   # doctest: +SKIP
        >>> ds[0]["human"].shape                                       # doctest: +SKIP
        torch.Size([64, 64])
    """

    has_boxes = False
    classes: List[str] = []

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


# ----------------------------------------------------------------------------------------------
# Folders of image + heatmap pairs
# ----------------------------------------------------------------------------------------------


def _images_in(folder: Path) -> List[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTS)


def _find(folder: Path, stem: str) -> Optional[Path]:
    for ext in IMAGE_EXTS + tuple(e.upper() for e in IMAGE_EXTS) + (".npy",):
        if (folder / f"{stem}{ext}").is_file():
            return folder / f"{stem}{ext}"
    return None


def heatmap_pairs(root: Path) -> List[Tuple[Path, Path]]:
    """(image, heatmap) pairs of either layout (module docstring); a missing heatmap is an error."""
    split = (root / "images").is_dir() and (root / "heatmaps").is_dir()
    images = _images_in(root / "images") if split else \
        [p for p in _images_in(root) if not p.stem.endswith("_heatmap")]
    pairs = []
    for image in images:
        heat = _find(root / "heatmaps", image.stem) if split else _find(root, f"{image.stem}_heatmap")
        if heat is None:
            where = f"{root / 'heatmaps'}/{image.stem}.png" if split else f"{root}/{image.stem}_heatmap.png"
            raise OverfocusError(f"image {image} has no heatmap: expected {where}")
        pairs.append((image, heat))
    return pairs


def read_heatmap(path: Path) -> np.ndarray:
    """A heatmap file (any OpenCV image, 8 or 16 bit, or .npy) as a float32 H x W map."""
    import cv2

    if path.suffix == ".npy":
        heat = np.load(path, allow_pickle=False)
    else:
        heat = cv2.imdecode(np.fromfile(str(path), np.uint8), cv2.IMREAD_UNCHANGED)
        if heat is None:
            raise OverfocusError(f"cannot decode heatmap {path}: the file is corrupt")
    heat = np.asarray(heat, np.float32)
    return heat.mean(axis=2) if heat.ndim == 3 else heat


class HeatmapFolderDataset(torch.utils.data.Dataset):
    """Images with human heatmaps from a folder (two layouts, see the module docstring); label -1."""

    has_boxes = False
    classes: List[str] = []

    def __init__(self, root: Union[str, Path], image_size: int):
        self.root, self.image_size = Path(root), image_size
        if not self.root.is_dir():
            raise OverfocusError(f"heatmap folder {self.root} does not exist")
        self.pairs = heatmap_pairs(self.root)
        if not self.pairs:
            raise OverfocusError(f"no images in {self.root}: expected images/ + heatmaps/ or x.jpg + x_heatmap.png")

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> Dict:
        image_path, heat_path = self.pairs[index]
        image_id = image_path.relative_to(self.root).with_suffix("").as_posix()
        return make_sample(read_rgb(image_path), read_heatmap(heat_path), self.image_size, -1, image_id)


# ----------------------------------------------------------------------------------------------
# Spec strings
# ----------------------------------------------------------------------------------------------

_OPTIONS = {"osie": {"source", "sigma"}, "clickme": {"verify", "raw_dtype"}, "heatmaps": set()}


def open_human_dataset(spec: str, image_size: int):
    """Open a human-map dataset from `osie:PATH[?source=mouse]`, `clickme:PATH` or `heatmaps:PATH`.

    Example:
        >>> open_human_dataset("nope:/x", 64)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        overfocus.errors.OverfocusError: unknown human-map kind 'nope' in 'nope:/x': use osie:PATH, ...
    """
    head, _, query = spec.partition("?")
    kind, _, path = head.partition(":")
    if kind not in _OPTIONS:
        raise OverfocusError(f"unknown human-map kind {kind!r} in {spec!r}: use osie:PATH, clickme:PATH "
                             "or heatmaps:PATH")
    if not path:
        raise OverfocusError(f"human-map spec {spec!r} has no path: write {kind}:PATH")
    options = {}
    for part in filter(None, query.split("&")):
        key, eq, value = part.partition("=")
        if not eq or key not in _OPTIONS[kind]:
            raise OverfocusError(f"bad option {part!r} in {spec!r}: {kind} takes {sorted(_OPTIONS[kind]) or 'none'}")
        options[key] = yaml.safe_load(value)
    factory = {"osie": OSIEDataset, "clickme": ClickMeDataset, "heatmaps": HeatmapFolderDataset}[kind]
    return factory(path, image_size, **options)


# ----------------------------------------------------------------------------------------------
# Maps named after image ids (audit --human DIR)
# ----------------------------------------------------------------------------------------------
HUMAN_MAP_SUFFIXES = (".npy", ".png", ".jpg", ".jpeg")


def human_map_file(root: Path, image_id: str) -> Optional[Path]:
    """The human map of an image: ROOT/<image_id>[.npy|.png|.jpg], also without the image's suffix."""
    stem = Path(image_id).with_suffix("") if Path(image_id).suffix else Path(image_id)
    candidates = [root / image_id] + [root / f"{stem}{s}" for s in HUMAN_MAP_SUFFIXES]
    candidates += [root / f"{Path(image_id).stem}{s}" for s in HUMAN_MAP_SUFFIXES]
    return next((p for p in candidates if p.is_file()), None)


def load_maps_by_id(root: Path, image_ids: Sequence[str], size: int) -> Tuple[torch.Tensor, int]:
    """B x size x size human maps named after `image_ids` in `root` (bilinear resize, negative
    values clipped); a missing one is all zero. Returns (maps, number found).

    Example:
        >>> import tempfile
        >>> root = Path(tempfile.mkdtemp())
        >>> np.save(root / "a.npy", np.ones((4, 4), np.float32))
        >>> maps, found = load_maps_by_id(root, ["a.jpg", "b"], 2)
        >>> maps.shape, found, maps[0].tolist()
        (torch.Size([2, 2, 2]), 1, [[1.0, 1.0], [1.0, 1.0]])
    """
    import cv2

    maps, found = torch.zeros(len(image_ids), size, size), 0
    for i, image_id in enumerate(image_ids):
        path = human_map_file(Path(root), image_id)
        if path is None:
            continue
        arr = read_heatmap(path)
        if arr.ndim != 2:
            raise OverfocusError(f"human map {path} is not a 2-D map: save H x W arrays or greyscale images")
        arr = cv2.resize(np.asarray(arr, np.float32), (size, size), interpolation=cv2.INTER_LINEAR)
        maps[i] = torch.from_numpy(np.clip(arr, 0, None))
        found += 1
    return maps, found
