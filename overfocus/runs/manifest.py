"""THE run.json of a run directory: built here (`run_manifest`, for `overfocus train`, the Tracker and
the analysis of a checkpoint folder) and read here (`RunInfo`: what analyze, audit and render
need from it: the model's recipe, the preprocessing, the layers and the probe ids).

Example:
    >>> manifest = run_manifest({"model": {"name": "cifarnet", "width": 0.125}, "data": {"spec": "builtin",
    ...                          "image_size": 32, "mean": [0.5] * 3, "std": [0.25] * 3}}, num_classes=3,
    ...                         gradcam_layer="block3", latent_layer="block3", probe_ids=["test/0"])
    >>> info = RunInfo.from_manifest(manifest)
    >>> info.model_name, info.num_classes, info.probe_ids, manifest["status"]
    ('cifarnet', 3, ('test/0',), 'running')
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import torch

from ..data import image_id_at
from ..errors import OverfocusError
from ..models import MODELS
from ..models.build import ModelOptions, allow_recorded_arch, build_target, check_recipe_args
from ..versions import software_versions
from .rundir import SCHEMA_VERSION


def run_manifest(config: Mapping[str, Any], *, num_classes: int, gradcam_layer: str, latent_layer: str,
                 probe_ids: Iterable[str], status: str = "running", source: Optional[Mapping[str, Any]] = None,
                 seed: Optional[int] = None, dataset: Optional[Mapping[str, Any]] = None, versions: bool = True,
                 epoch0_is_initial: bool = True, epochs: Sequence[Mapping[str, Any]] = (),
                 **extra: Any) -> Dict[str, Any]:
    """A new run.json: the recipe (`config`), who wrote it (`source`: none for `overfocus train`), the
    data's fingerprint, the layers, the probe ids, then `extra` (e.g. skipped_files, epoch_offset).
    The epochs are added one by one by `runs.writer.EpochWriter`."""
    manifest: Dict[str, Any] = {"schema": SCHEMA_VERSION, "status": status}
    if source is not None:
        manifest["source"] = dict(source)
    manifest["config"] = dict(config)
    if seed is not None:
        manifest["seed"] = seed
    if versions:
        manifest["versions"] = software_versions()
    if dataset is not None:
        manifest["dataset"] = dict(dataset)
    manifest.update({"num_classes": int(num_classes), "latent_layer": latent_layer, "gradcam_layer": gradcam_layer,
                     "probe_ids": list(probe_ids), "epoch0_is_initial": epoch0_is_initial})
    manifest.update({k: v for k, v in extra.items() if k != "skipped_files"})
    manifest["epochs"] = [dict(e) for e in epochs]
    if "skipped_files" in extra:
        manifest["skipped_files"] = extra["skipped_files"]
    return manifest


def dataset_fingerprint(spec: str, train, test, classes: List[str], has_boxes: bool) -> Dict[str, Any]:
    """What identifies the data: spec, sizes, classes, and a hash of the test image ids."""
    ids = [image_id_at(test, i) for i in range(min(len(test), 256))]
    digest = hashlib.sha256("\n".join(map(str, ids)).encode("utf-8", "surrogateescape")).hexdigest()[:16]
    return {"spec": spec, "train_size": len(train), "test_size": len(test),
            "classes": list(classes), "has_boxes": has_boxes, "test_ids_sha": digest}


@dataclass(frozen=True)
class RunInfo:
    """What analyze needs from run.json: the model, the preprocessing and the probe ids."""

    model_name: str
    width: float
    small_input: bool
    num_classes: int
    data_spec: str
    image_size: int
    mean: Tuple[float, ...]
    std: Tuple[float, ...]
    batch_size: int
    num_workers: int
    gradcam_layer: str
    latent_layer: str
    probe_ids: Tuple[str, ...]
    batch_norm: Optional[bool] = None  # model.batch_norm of the run (None = the architecture's default)
    skip_bad: bool = False  # the run was trained with --skip-bad: analysis skips unreadable images too
    arch: Optional[str] = None  # "package.module:Factory" of a tracked run's model (model_name then empty)

    @classmethod
    def from_manifest(cls, manifest: Dict[str, Any]) -> "RunInfo":
        cfg = manifest.get("config") or {}
        model, data = cfg.get("model") or {}, cfg.get("data") or {}
        if not (model.get("name") or model.get("arch")) or "spec" not in data:
            raise OverfocusError("run.json has no model/data configuration: was it written by `overfocus train`?")
        layers = [manifest.get("gradcam_layer"), manifest.get("latent_layer")]
        if not all(layers):  # older run.json: the registry entry declares them
            entry = MODELS.get(model["name"])
            layers = [layers[0] or entry.gradcam_layer, layers[1] or entry.latent_layer]
        recipe = {"num_classes": manifest.get("num_classes") or model.get("num_classes"),
                  "width": model.get("width", 1.0), "small_input": model.get("small_input", True),
                  "batch_norm": model.get("batch_norm")}
        check_recipe_args(recipe, "run.json")  # a value of the wrong type never reaches a model factory
        return cls(model.get("name") or "", float(recipe["width"]), recipe["small_input"], recipe["num_classes"],
                   data["spec"],
                   int(data.get("image_size", 64)), tuple(data.get("mean")), tuple(data.get("std")),
                   int(data.get("batch_size", 64)), int(data.get("num_workers", 0)), layers[0], layers[1],
                   tuple(manifest.get("probe_ids") or ()), model.get("batch_norm"), bool(data.get("skip_bad", False)),
                   model.get("arch") or None)

    def build_model(self, allow: Optional[ModelOptions] = None) -> torch.nn.Module:
        """The recorded recipe with random weights: a registry (or timm:NAME) model, or the import
        path, which is built only when `allow` names the same path (`arch=`) or trusts the recipe
        (`trust_recipe=True`; see `models.build.allow_recorded_arch`).

        Example:
            >>> info = RunInfo("cifarnet", 0.125, True, 3, "builtin", 32, (0.5,) * 3, (0.25,) * 3, 8, 0,
            ...                "block3", "block3", ())
            >>> type(info.build_model()).__name__
            'CifarNet'
        """
        arch = allow_recorded_arch(self.arch, allow or ModelOptions(), "run.json") if self.arch else None
        options = ModelOptions(model=None if arch else self.model_name, arch=arch, width=self.width,
                               small_input=self.small_input, batch_norm=self.batch_norm)
        return build_target(options, self.num_classes)[0]
