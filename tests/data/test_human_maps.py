"""Human importance maps: points to maps, TFRecord/protobuf without TensorFlow, ClickMe, folders, OSIE."""
from __future__ import annotations

import struct

import cv2
import numpy as np
import pytest
import torch

from overfocus.data.clickme import ClickMeDataset
from overfocus.data.heatmap_folder import HeatmapFolderDataset
from overfocus.data.human import HUMAN_MAPS, collate_human, open_human_dataset, points_to_map
from overfocus.data.osie import OSIEDataset
from overfocus.data.tfrecord import crc32c, iter_tfrecords, masked_crc32c, parse_example
from overfocus.errors import OverfocusError

from tests.conftest import shared_data
from tests.helpers_tfrecord import encode_example, write_tfrecord_examples, write_tfrecords


def test_points_to_map_places_x_as_column():
    m = points_to_map(np.array([[70.0, 10.0], [70.0, 10.0], [5.0, 40.0]]), 50, 100, sigma=3)
    assert m.shape == (50, 100) and m.max() == pytest.approx(1.0)
    assert np.unravel_index(m.argmax(), m.shape) == (10, 70)
    assert m[40, 5] == pytest.approx(0.5, rel=1e-3)  # one point against two
    assert points_to_map(np.zeros((0, 2)), 4, 4).max() == 0.0


def test_crc32c_known_values():
    assert crc32c(b"123456789") == 0xE3069283  # the standard check value of CRC-32C
    assert crc32c(b"\x00" * 32) == 0x8A9136AA  # RFC 3720 B.4 test vector
    assert masked_crc32c(b"") == 0xA282EAD8


def test_tfrecord_round_trip_and_framing(tmp_path):
    path = tmp_path / "x.tfrecord"
    write_tfrecords(path, [b"hello", b"", b"\x00" * 300])
    raw = path.read_bytes()
    assert struct.unpack("<Q", raw[:8])[0] == 5 and raw[12:17] == b"hello"
    assert struct.unpack("<I", raw[8:12])[0] == masked_crc32c(raw[:8])
    assert list(iter_tfrecords(path)) == [b"hello", b"", b"\x00" * 300]


def test_tfrecord_corruption_is_reported_with_the_file_name(tmp_path):
    path = tmp_path / "bad.tfrecord"
    write_tfrecords(path, [b"hello world"])
    raw = bytearray(path.read_bytes())
    raw[14] ^= 0xFF  # flip a data byte
    path.write_bytes(bytes(raw))
    with pytest.raises(OverfocusError, match="bad.tfrecord.*CRC mismatch"):
        list(iter_tfrecords(path))
    assert list(iter_tfrecords(path, verify=False))[0] != b"hello world"
    path.write_bytes(bytes(raw[:-3]))
    with pytest.raises(OverfocusError, match="truncated"):
        list(iter_tfrecords(path))


def test_parse_hand_assembled_example_packed_and_unpacked():
    """tf.train.Example{features{feature{key: "label" value{int64_list{value: [7]}}}}}, byte by byte."""
    def wrap(int64_list: bytes) -> bytes:
        feature = b"\x1a" + bytes([len(int64_list)]) + int64_list  # Feature.int64_list = field 3
        entry = b"\x0a\x05label" + b"\x12" + bytes([len(feature)]) + feature
        features = b"\x0a" + bytes([len(entry)]) + entry
        return b"\x0a" + bytes([len(features)]) + features

    assert parse_example(wrap(b"\x0a\x01\x07")) == {"label": [7]}  # packed
    assert parse_example(wrap(b"\x08\x07\x08\x09")) == {"label": [7, 9]}  # unpacked
    single_float = b"\x0d" + struct.pack("<f", 1.5)  # FloatList, unpacked (wire type 5)
    feature = b"\x12" + bytes([len(single_float)]) + single_float  # Feature.float_list = field 2
    entry = b"\x0a\x01f" + b"\x12" + bytes([len(feature)]) + feature
    features = b"\x0a" + bytes([len(entry)]) + entry
    assert parse_example(b"\x0a" + bytes([len(features)]) + features) == {"f": [1.5]}


def test_example_encoder_decoder_round_trip():
    example = {"image": [b"\x00\x01\xff"], "label": [3, -2, 2 ** 40], "heat": [0.5, -1.25], "names": [b"a", b"bc"]}
    assert parse_example(encode_example(example)) == example


def _png(img: np.ndarray) -> bytes:
    return cv2.imencode(".png", img)[1].tobytes()


def test_clickme_shard_encoded_and_raw(tmp_path):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    heat = np.zeros((32, 32), np.uint8)
    heat[5:9, 20:26] = 200  # rows 5-8, columns 20-25
    write_tfrecord_examples(tmp_path / "train-0.tfrecords", [
        {"image": [_png(rgb[:, :, ::-1])], "heatmap": [_png(heat)], "label": [412]},  # OpenCV writes BGR
        {"image": [rgb.tobytes()], "heatmap": heat.astype(np.float32).ravel().tolist(), "label": [7]},
    ])
    ds = open_human_dataset(f"clickme:{tmp_path}", 32)
    assert isinstance(ds, ClickMeDataset) and len(ds) == 2
    for i, label in enumerate([412, 7]):
        s = ds[i]
        assert s["label"] == label and s["boxes"].shape == (0, 4)
        np.testing.assert_array_equal((s["image"].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8), rgb)
        assert s["human"].shape == (32, 32) and s["human"].max() == 1.0
        rows, cols = torch.nonzero(s["human"] > 0.5, as_tuple=True)
        assert (rows.min(), rows.max(), cols.min(), cols.max()) == (5, 8, 20, 25)
    batch, human = collate_human([ds[0], ds[1]])
    assert batch.images.shape == (2, 3, 32, 32) and human.shape == (2, 32, 32)
    assert ds[0]["image_id"] == "train-0.tfrecords#0"


def test_clickme_raw_float32_and_shape_fields(tmp_path):
    img = np.random.default_rng(1).random((6, 10, 3)).astype(np.float32)  # not square: needs a shape
    write_tfrecord_examples(tmp_path / "s.tfrecord", [
        {"image": [img.tobytes()], "image_shape": [6, 10, 3], "heatmap": [np.ones((6, 10), np.float32).tobytes()],
         "heatmap_shape": [6, 10]}])
    s = ClickMeDataset(tmp_path / "s.tfrecord", 8, raw_dtype="float32")[0]
    assert s["label"] == -1 and s["image"].shape == (3, 8, 8) and s["human"].min() == 1.0
    write_tfrecord_examples(tmp_path / "bad.tfrecord", [{"image": [b"\x01" * 7], "heatmap": [b"\x00" * 4]}])
    with pytest.raises(OverfocusError, match="record 0 of .*bad.tfrecord is malformed"):
        ClickMeDataset(tmp_path / "bad.tfrecord", 8)[0]


@pytest.mark.parametrize("layout", ["split", "suffix"])
def test_heatmap_folder_layouts(tmp_path, layout):
    img = np.full((20, 30, 3), 128, np.uint8)
    heat = np.zeros((20, 30), np.uint8)
    heat[2:4, 25:28] = 255
    if layout == "split":
        (tmp_path / "images").mkdir()
        (tmp_path / "heatmaps").mkdir()
        cv2.imwrite(str(tmp_path / "images" / "a.jpg"), img)
        cv2.imwrite(str(tmp_path / "heatmaps" / "a.png"), heat)
    else:
        cv2.imwrite(str(tmp_path / "a.jpg"), img)
        cv2.imwrite(str(tmp_path / "a_heatmap.png"), heat)
    ds = open_human_dataset(f"heatmaps:{tmp_path}", 30)
    assert isinstance(ds, HeatmapFolderDataset) and len(ds) == 1
    human = ds[0]["human"]
    row, col = divmod(int(human.argmax()), 30)
    assert col >= 24 and row <= 5  # the heat sits top right (x = column)
    cv2.imwrite(str(tmp_path / ("images" if layout == "split" else ".") / "b.jpg"), img)
    with pytest.raises(OverfocusError, match="has no heatmap"):
        open_human_dataset(f"heatmaps:{tmp_path}", 30)


def test_bad_specs():
    with pytest.raises(OverfocusError, match="unknown human-map kind"):
        open_human_dataset("clickmee:/x", 32)
    with pytest.raises(OverfocusError, match="bad option"):
        open_human_dataset("osie:/x?colour=red", 32)
    with pytest.raises(OverfocusError, match="no OSIE stimuli"):
        open_human_dataset("osie:/nonexistent", 32)
    with pytest.raises(OverfocusError, match="no ClickMe TFRecord shards"):
        open_human_dataset("clickme:/nonexistent", 32)


def test_osie_real_data_eye_and_mouse_agree():
    from overfocus.metrics import spearman

    root = shared_data("osie-150")
    eye = open_human_dataset(f"osie:{root}", 64)
    mouse = open_human_dataset(f"osie:{root}?source=mouse&sigma=24", 64)
    assert isinstance(eye, OSIEDataset) and len(eye) == len(mouse) == 150
    s = eye[0]
    assert s["image"].shape == (3, 64, 64) and s["label"] == -1 and s["image_id"] == "osie/1001"
    assert s["human"].shape == (64, 64) and s["human"].max() == 1.0
    assert len(eye.points(0)) > 100  # 15 viewers' fixations
    # the two kinds of human data point at the same places: a check of x/y and 1-based handling
    rho = spearman(torch.stack([eye[i]["human"].flatten() for i in (0, 40)]),
                   torch.stack([mouse[i]["human"].flatten() for i in (0, 40)]))
    assert bool((rho > 0.5).all())


def test_human_map_kinds_come_from_the_registry(tmp_path):
    assert HUMAN_MAPS.names() == ["clickme", "heatmaps", "osie"]
    assert HUMAN_MAPS.get("osie") is OSIEDataset and OSIEDataset.OPTIONS == {"source", "sigma"}

    @HUMAN_MAPS.register("probe-kind")
    class ProbeKind(torch.utils.data.Dataset):
        OPTIONS, USAGE = frozenset({"scale"}), "probe-kind:PATH[?scale=1]"

        def __init__(self, path, image_size, scale=1):
            self.args = (path, image_size, scale)

    try:
        assert open_human_dataset("probe-kind:/p?scale=3", 16).args == ("/p", 16, 3)
        with pytest.raises(OverfocusError, match="unknown human-map kind.*probe-kind:PATH"):
            open_human_dataset("nope:/p", 16)
    finally:
        HUMAN_MAPS._items.pop("probe-kind")


def test_old_import_paths_still_work():
    import overfocus.data.human as human

    assert human.ClickMeDataset is ClickMeDataset and human.crc32c is crc32c
    with pytest.raises(AttributeError):
        human.no_such_name


def test_human_map_images_go_through_the_checked_decoder(tmp_path):
    jpeg = cv2.imencode(".jpg", np.full((16, 16, 3), 90, np.uint8))[1].tobytes()
    heat = _png(np.ones((16, 16), np.uint8))
    write_tfrecord_examples(tmp_path / "cut.tfrecord", [{"image": [jpeg[:-30]], "heatmap": [heat]}])
    with pytest.raises(OverfocusError, match="record 0 of .*cut.tfrecord is malformed.*corrupt"):
        ClickMeDataset(tmp_path / "cut.tfrecord", 8)[0]
    write_tfrecord_examples(tmp_path / "pad.tfrecord", [{"image": [jpeg + bytes(1000)], "heatmap": [heat]}])
    assert ClickMeDataset(tmp_path / "pad.tfrecord", 8)[0]["image"].shape == (3, 8, 8)
    (tmp_path / "h").mkdir()
    cv2.imwrite(str(tmp_path / "h" / "a.jpg"), np.zeros((8, 8, 3), np.uint8))
    (tmp_path / "h" / "a_heatmap.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    with pytest.raises(OverfocusError, match="a_heatmap.png.*corrupt"):
        open_human_dataset(f"heatmaps:{tmp_path / 'h'}", 8)[0]
