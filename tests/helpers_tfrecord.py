"""A TFRecord / tf.train.Example WRITER for tests (the library only reads, see overfocus/data/tfrecord.py)."""
from __future__ import annotations

import struct
from pathlib import Path
from typing import Dict, Iterable, Sequence, Union

import numpy as np

from overfocus.data.tfrecord import masked_crc32c


def write_tfrecords(path: Union[str, Path], records: Iterable[bytes]) -> None:
    """Write records with TFRecord framing."""
    chunks = []
    for data in records:
        length = struct.pack("<Q", len(data))
        chunks += [length, struct.pack("<I", masked_crc32c(length)), data, struct.pack("<I", masked_crc32c(data))]
    Path(path).write_bytes(b"".join(chunks))


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
