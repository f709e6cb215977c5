"""`heatmaps:PATH`: images with human heatmaps from a folder, in one of two layouts.

    PATH/images/x.jpg + PATH/heatmaps/x.png     (split layout)
    PATH/x.jpg + PATH/x_heatmap.png             (suffix layout)

A heatmap is any image OpenCV reads (8 or 16 bit) or a .npy array (`human.read_heatmap`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

import torch

from ..errors import OverfocusError
from .base import read_rgb
from .human import HUMAN_MAPS, IMAGE_EXTS, make_sample, read_heatmap


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



@HUMAN_MAPS.register("heatmaps")
class HeatmapFolderDataset(torch.utils.data.Dataset):
    """Images with human heatmaps from a folder (two layouts, see the module docstring); label -1."""

    has_boxes = False
    classes: List[str] = []
    OPTIONS: frozenset = frozenset()
    USAGE = "heatmaps:PATH"

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
