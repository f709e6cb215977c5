"""TFRecord files read without TensorFlow: the framing, CRC-32C and the tf.train.Example protobuf.

A TFRecord file is a sequence of records, each framed as: uint64 length (little endian), masked
CRC-32C of those 8 bytes, the data, masked CRC-32C of the data. Both CRCs are checked unless
`verify=False`; a truncated or corrupt file is an OverfocusError naming it. `parse_example`
decodes a serialized tf.train.Example into {name: list of bytes | floats | ints}. Only reading
lives here (ClickMe shards, `clickme.py`); the test helpers hold a writer.
"""
from __future__ import annotations

import functools
import struct
from pathlib import Path
from typing import Dict, Iterator, List, Tuple, Union

import numpy as np

from ..errors import OverfocusError


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
        >>> import os, struct, tempfile
        >>> data, length = b"ab", struct.pack("<Q", 2)
        >>> frame = length + struct.pack("<I", masked_crc32c(length)) + data + struct.pack("<I", masked_crc32c(data))
        >>> p = os.path.join(tempfile.mkdtemp(), "x.tfrecord")
        >>> with open(p, "wb") as fh:
        ...     _ = fh.write(frame * 2)
        >>> list(iter_tfrecords(p))
        [b'ab', b'ab']
    """
    path = Path(path)
    for offset, length in tfrecord_index(path, verify):
        yield read_tfrecord(path, offset, length, verify)



# ----------------------------------------------------------------------------------------------
# A minimal protobuf decoder for tf.train.Example
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
        >>> parse_example(b"\\x0a\\x10\\x0a\\x0e\\x0a\\x05label\\x12\\x05\\x1a\\x03\\x0a\\x01\\x07")  # label: [7]
        {'label': [7]}
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
