"""One checkpoint of an analysis in this process: its records (by section), probe maps and
coverage, through the shared batch evaluation of `core.evaluate_batch`.

Everything an `EpochEvaluator` needs comes in its constructor: the one model object (each
checkpoint is loaded into it), the settings, the images, the runtime.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from ..attribution import attribution_mode, normalize_maps
from ..errors import OverfocusError
from ..metrics import NeuronCoverage
from ..metrics.faithfulness import FaithfulnessOptions
from ..models.layers import spatial_sizes
from ..progress import progress
from ..runs.manifest import RunInfo
from .core import FaithfulnessRequest, check_finite_weights, evaluate_batch
from .settings import COVERAGE_METRICS, Runtime, Settings
from .shards import SECTIONS, merge_sections
from .source import BatchSource, batch_subset
from .storage import ALL_IMAGES, DEGENERATE, MODEL_METHOD


@dataclass(frozen=True)
class AnalysisData:
    """The images of one analyze call as this process sees them."""

    source: BatchSource  # this process's images: all of them, or its part's contiguous share
    test: Any  # the test split (the probe set comes from it)
    classes: List[str]
    has_boxes: bool
    split: str
    n_analysed: int  # images analysed by all processes together
    probe_batch: Any  # the probe images, one Batch
    probe_index: Tuple[int, ...]  # their positions in the test split
    human: Optional[BatchSource] = None
    n_human: int = 0
    faithful: Optional[BatchSource] = None  # this process's share of the faithfulness images
    faithful_ids: Tuple[str, ...] = ()  # all faithfulness images (every process)
    analysed_index: Optional[Tuple[int, ...]] = None  # positions of the analysed images in the split (None = all)

    @property
    def probe_pos(self) -> Dict[str, int]:
        return {iid: k for k, iid in enumerate(self.probe_batch.image_ids)}

    def uncovered_probe(self) -> List[int]:
        """Probe positions whose image is not among the analysed ones (--limit, --split train)."""
        if self.split != "test":
            return list(range(len(self.probe_index)))
        if self.analysed_index is None:
            return []
        analysed = set(self.analysed_index)
        return [k for k, index in enumerate(self.probe_index) if index not in analysed]


@dataclass
class EpochOutput:
    """One checkpoint's results in this process: record sections, probe entries, the coverage hooks."""

    sections: Dict[str, List[Dict[str, Any]]] = field(default_factory=lambda: {name: [] for name in SECTIONS})
    cumulative: List[Dict[str, Any]] = field(default_factory=list)
    probe: Dict[int, tuple] = field(default_factory=dict)  # probe position -> (maps per method, logits)
    cov: Any = None
    small: Dict[str, List[torch.Tensor]] = field(default_factory=dict)  # method -> batches of small maps
    small_ids: List[str] = field(default_factory=list)

    def small_arrays(self) -> Dict[str, np.ndarray]:
        """The small maps of the images met (drift/epoch_NNNN.npz): image ids and float16 maps per method."""
        arrays = {f"maps_{m}": torch.cat(v).numpy() for m, v in self.small.items() if v}
        return {"image_ids": np.asarray(self.small_ids, dtype=str), **arrays}

    def rows(self) -> List[Dict[str, Any]]:
        return merge_sections([self.sections], self.cumulative)


class EpochEvaluator:
    """Loads a checkpoint into the call's one model and evaluates this process's images with it."""

    def __init__(self, model: torch.nn.Module, settings: Settings, info: RunInfo, runtime: Runtime,
                 data: AnalysisData, show_progress: bool = False,
                 init_model: Optional[Callable[[], Optional[torch.nn.Module]]] = None):
        self.model, self.settings, self.info, self.rt, self.data = model, settings, info, runtime, data
        self.show = show_progress
        self.probe_pos = data.probe_pos
        self._make_init_model = init_model  # the model with the run's epoch-0 weights (sanity_init), made once
        self._init_model: Optional[torch.nn.Module] = None
        self.drift_size: Optional[Tuple[int, int]] = None  # the small maps' size, found on the first batch

    def load(self, source, epoch: int) -> torch.nn.Module:
        """Load epoch's weights from the run source (`runsource.RunSource`) into the call's one model
        (strict: every parameter and buffer is overwritten), so memory stays that of one model
        whatever the number of checkpoints and no time goes into random initialisation per checkpoint.
        Weights holding NaN or inf (a diverged training) raise `core.NonFiniteModel`: the checkpoint
        is skipped, not measured."""
        source.load_into(self.model, epoch)
        check_finite_weights(self.model)
        return self.model.eval()

    def evaluate(self, epoch: int, probe_positions: Optional[List[int]]) -> EpochOutput:
        """This process's images of the loaded checkpoint; `probe_positions`: probe images to
        compute on top of those met (None: every one not met). Parameters stay frozen (their
        requires_grad off) for the whole epoch and are restored afterwards."""
        with attribution_mode(self.model):
            return self._evaluate(epoch, probe_positions)

    def _evaluate(self, epoch: int, probe_positions: Optional[List[int]]) -> EpochOutput:
        s = self.settings
        out = EpochOutput(cov=NeuronCoverage(self.model, latent_layer=s.latent_layer) if s.coverage else None)
        seen: List[Tuple[str, int]] = []
        for batch, _ in progress(self.data.source, self.show, desc=f"epoch {epoch}"):
            labels = batch.labels.tolist()  # from the host copy: no device round trip for the rows
            batch = batch.to(self.rt.device)
            result = self._evaluate_batch(batch, s.map_metrics, out.cov, s.target)
            out.sections["batch"] += batch_rows(epoch, batch, labels, result)
            self._keep_small(batch, result.maps, out)
            seen += list(zip(batch.image_ids, labels))
            self._keep_probe(batch, result.maps, result.logits, out.probe)
        if out.cov is not None:
            out.sections["coverage"] = coverage_image_rows(epoch, out.cov, seen)
            out.cumulative = cumulative_rows(epoch, out.cov.cumulative())
        if self.data.human is not None:
            out.sections["human"] = self._human_rows(epoch)
        if self.data.faithful is not None and s.faithful_metrics:
            out.sections["faithfulness"] = self._faithfulness_rows(epoch)
        if probe_positions is None:
            probe_positions = [k for k in range(len(self.data.probe_batch)) if k not in out.probe]
        self._fill_probe(out.probe, probe_positions)
        return out

    def _evaluate_batch(self, batch, metric_names: Sequence[str], cov, target: str, human=None):
        s = self.settings
        return evaluate_batch(self.model, batch.images, batch.labels, batch.boxes if self.data.has_boxes else None,
                              mean=self.info.mean, std=self.info.std, methods=s.methods, layer=s.layer,
                              metric_names=metric_names, target=target, coverage=cov,
                              shared_forward=s.coverage_shares_forward, human=human, amp_dtype=self.rt.amp_dtype,
                              channels_last=self.rt.channels_last, method_args=s.method_args)

    def _keep_small(self, batch, maps: Dict[str, torch.Tensor], out: EpochOutput) -> None:
        """Every map at the attribution layer's resolution (float16 on the host): what drift compares."""
        if self.drift_size is None:
            self.drift_size = drift_resolution(self.model, self.settings.layer, batch.images)
        for m in self.settings.methods:
            small = F.adaptive_avg_pool2d(maps[m].float()[:, None], self.drift_size)[:, 0]
            out.small.setdefault(m, []).append(small.to(torch.float16).cpu())
        out.small_ids += list(batch.image_ids)

    def _keep_probe(self, batch, maps, logits, probe: Dict[int, tuple]) -> None:
        """Probe images are usually test images analysed anyway: keep their maps, not compute them twice."""
        if self.data.split != "test":
            return
        for j, iid in enumerate(batch.image_ids):
            k = self.probe_pos.get(iid)
            if k is not None:
                probe[k] = ({m: v[j].clone() for m, v in maps.items()}, logits[j].clone())

    def _human_rows(self, epoch: int) -> List[Dict[str, Any]]:
        """Human-map images: the predicted class (their labels are not the model's), `harmonization`."""
        rows: List[Dict[str, Any]] = []
        for batch, human in self.data.human:
            labels = batch.labels.tolist()
            batch = batch.to(self.rt.device)
            result = self._evaluate_batch(batch, self.settings.human_metrics, None, "predicted",
                                          human.to(self.rt.device))
            columns = [(m, name, v) for m, table in result.metrics.items() for name, v in table.items()]
            ids = [f"human:{i}" for i in batch.image_ids]  # never mistaken for an analysed image
            rows += table_rows(epoch, ids, labels, columns)
        return rows

    def initial_model(self) -> Optional[torch.nn.Module]:
        """The model with the run's epoch-0 weights, made on first use (None: the run has none)."""
        if self._init_model is None and self._make_init_model is not None:
            self._init_model = self._make_init_model()
            self._make_init_model = None  # made (or found missing) once per call
        return self._init_model

    def faithfulness_request(self) -> FaithfulnessRequest:
        """The model-dependent metrics of this analysis; the epoch-0 model is made on first use."""
        s = self.settings
        self.initial_model()
        options = FaithfulnessOptions(steps=s.faithfulness_steps, baseline=s.faithfulness_baseline)
        return FaithfulnessRequest(s.faithful_metrics, options, init_model=self._init_model)

    def _faithfulness_rows(self, epoch: int) -> List[Dict[str, Any]]:
        """The faithfulness images: the model-dependent metrics per method and for the random baseline."""
        request = self.faithfulness_request()
        rows: List[Dict[str, Any]] = []
        for batch, _ in progress(self.data.faithful, self.show, desc=f"epoch {epoch} faithfulness"):
            labels = batch.labels.tolist()
            batch = batch.to(self.rt.device)
            s = self.settings
            result = evaluate_batch(self.model, batch.images, batch.labels,
                                    batch.boxes if self.data.has_boxes else None, mean=self.info.mean,
                                    std=self.info.std, methods=s.methods, layer=s.layer, metric_names=(),
                                    target=s.target, amp_dtype=self.rt.amp_dtype,
                                    channels_last=self.rt.channels_last, method_args=s.method_args,
                                    faithfulness=request)
            columns = [(m, name, v) for m, table in result.metrics.items() for name, v in table.items()]
            rows += table_rows(epoch, batch.image_ids, labels, columns)
        return rows

    def _fill_probe(self, probe: Dict[int, tuple], positions: List[int]) -> None:
        if positions:
            batch = batch_subset(self.data.probe_batch, positions).to(self.rt.device)
            result = self._evaluate_batch(batch, (), None, self.settings.target)
            probe.update({k: ({m: v[j] for m, v in result.maps.items()}, result.logits[j])
                          for j, k in enumerate(positions)})

    def probe_arrays(self, epoch: int, probe: Dict[int, tuple]) -> Dict[str, np.ndarray]:
        """float16 per-sample max-normalised maps of the probe set, with prediction and confidence."""
        n = len(self.data.probe_batch)
        missing = [k for k in range(n) if k not in probe]
        if missing:
            raise OverfocusError(f"no maps of probe images {missing[:3]} for epoch {epoch}: delete "
                                 "RUN/analysis/parts and analyse again")
        logits = torch.stack([probe[k][1] for k in range(n)])
        conf, pred = torch.softmax(logits.float(), 1).max(1)
        arrays = {f"maps_{m}": normalize_maps(torch.stack([probe[k][0][m] for k in range(n)]))[0].cpu().numpy()
                  .astype(np.float16) for m in self.settings.methods}
        return {**arrays, "pred": pred.cpu().numpy().astype(np.int64), "conf": conf.cpu().numpy().astype(np.float32),
                "epoch": np.asarray(epoch), "image_ids": np.asarray(self.data.probe_batch.image_ids, dtype=str)}


DRIFT_SIDE = (4, 64)  # the small maps' side: the layer's, clamped to this range


def drift_resolution(model: torch.nn.Module, layer: str, images: torch.Tensor) -> Tuple[int, int]:
    """The attribution layer's spatial size for these images (clamped to DRIFT_SIDE), else 16 x 16.

    Example:
        >>> from overfocus.models import build_model
        >>> drift_resolution(build_model("cifarnet", 3, width=0.125), "block3", torch.zeros(1, 3, 32, 32))
        (4, 4)
    """
    size = dict(spatial_sizes(model, images[:1])).get(layer, (16, 16))
    lo, hi = DRIFT_SIDE
    return tuple(int(min(max(side, lo), hi, full)) for side, full in zip(size, images.shape[-2:]))


# ---- records ----------------------------------------------------------------------------------
def table_rows(epoch: int, ids: Sequence[str], labels: Sequence[int],
               columns: List[Tuple[str, str, torch.Tensor]]) -> List[Dict[str, Any]]:
    """Rows of one batch from (method, metric, B values) columns, with ONE device-to-host copy."""
    if not columns:
        return []
    device = columns[0][2].device
    values = torch.stack([v.detach().float().reshape(-1).to(device) for *_, v in columns]).cpu().tolist()
    rows = []
    for (method, metric, _), column in zip(columns, values):
        for iid, label, value in zip(ids, labels, column):
            rows.append({"epoch": epoch, "method": method, "image_id": iid, "label": label,
                         "metric": metric, "value": value})
    return rows


def batch_rows(epoch: int, batch, labels: Sequence[int], result) -> List[Dict[str, Any]]:
    """Records of one batch: map metrics per method on the raw maps and the map's `degenerate`
    flag (1 = all zero or non-finite), then correct and confidence; everything stays on the device
    until the one copy of `table_rows`."""
    columns = [(m, name, v) for m, table in result.metrics.items() for name, v in table.items()]
    columns += [(m, DEGENERATE, flags.float()) for m, flags in result.degenerate.items()]
    conf, pred = result.confidence_and_prediction()
    columns += [(MODEL_METHOD, "correct", (pred == batch.labels).float()), (MODEL_METHOD, "confidence", conf)]
    return table_rows(epoch, batch.image_ids, labels, columns)


def coverage_image_rows(epoch: int, cov, seen: List[Tuple[str, int]]) -> List[Dict[str, Any]]:
    """Per-image neuron coverage of the images seen, in order."""
    per_image = cov.per_image()
    ids, labels = [s[0] for s in seen], [s[1] for s in seen]
    assert all(len(v) == len(ids) for v in per_image.values()), "one coverage value per analysed image"
    return table_rows(epoch, ids, labels, [(MODEL_METHOD, k, per_image[k]) for k in COVERAGE_METRICS])


def cumulative_rows(epoch: int, cumulative: Dict[str, float]) -> List[Dict[str, Any]]:
    """The cumulative coverage of the epoch as `__all__` rows."""
    return [{"epoch": epoch, "method": MODEL_METHOD, "image_id": ALL_IMAGES, "label": -1,
             "metric": f"{name}_cumulative", "value": float(value)} for name, value in cumulative.items()]
