"""`osie:PATH[?source=eye|mouse&sigma=24]`: OSIE photographs with eye-fixation or mouse-tracking maps.

Layout (OSIE's own): PATH/stimuli/<id>.jpg, PATH/eye/fixations.mat, PATH/mouse_lab/<id>.mat.
Maps: all viewers' points on an empty map at the photo's resolution, Gaussian blur with `sigma`
pixels (default 24 px, about one degree of visual angle in OSIE's setup), resized to the model's
input like the photo, then normalised. Fixations (`fix_x`, `fix_y`) are 1-based (x, y) pixels;
mouse samples (`coord`) are 1-based (row, column) pairs: both become 0-based (x, y).
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Dict, List, Union

import numpy as np
import torch

from ..errors import OverfocusError
from .base import read_rgb
from .human import HUMAN_MAPS, IMAGE_EXTS, OSIE_SIGMA, make_sample, points_to_map


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


@HUMAN_MAPS.register("osie")
class OSIEDataset(torch.utils.data.Dataset):
    """OSIE photographs with eye-fixation or mouse-tracking importance maps; label -1.

    Example:
        >>> ds = OSIEDataset("/data/osie-150", image_size=64, source="mouse")  # doctest: +SKIP
        >>> ds[0]["human"].shape                                                 # doctest: +SKIP
        torch.Size([64, 64])
    """

    has_boxes = False
    classes: List[str] = []
    OPTIONS = frozenset({"source", "sigma"})
    USAGE = "osie:PATH[?source=eye|mouse&sigma=24]"

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
