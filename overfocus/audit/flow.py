"""`overfocus audit`: one checkpoint -> metrics, findings (ok / warning / problem) and CI gates.

The audit evaluates a model on a test split (at most `limit` images, evenly spaced so that a sorted
folder does not yield a single class), computes Grad-CAM and SGDrop maps for the ground-truth class,
the map metrics of docs/metrics (area ratio, hit ratio, pointing game, energy pointing game,
harmonization where human maps are given), the neuron coverage, and turns them into findings with
a level and one sentence each. Thresholds are in THRESHOLDS (documented in docs/audit.md) and can
be overridden. The report files are written by `write_outputs` (JSON here, HTML in
overfocus.render.report).

Example:
    >>> result = audit(AuditOptions("runs/demo"))          # doctest: +SKIP
    >>> [f["message"] for f in result.report["findings"]]   # doctest: +SKIP
    ['accuracy 87% (chance 17%)', 'attention covers 4% of the image on average', ...]
"""
from __future__ import annotations

import math
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.nn as nn

from ..analysis.core import NonFiniteModel, check_finite_weights, evaluate_batch
from ..analysis.onset import read_onset
from ..analysis.storage import parse_summary_file
from ..attribution import attribution_mode, normalize_maps
from ..attribution.methods import method_info
from ..checkpoint.load import LoadedModel, load_model
from ..data import collate_samples, normalize
from ..data.human import load_maps_by_id
from ..device import resolve_device
from ..errors import OverfocusError, option
from ..fileio import atomic_write_json
from ..metrics import NeuronCoverage
from ..metrics.registry import METRICS, metric_info
from ..models import get_module
from ..models.layers import choose_layer, small_layer_note
from ..models.tokens import layer_layout
from ..progress import progress
from ..render.report import write_report_html
from ..versions import software_versions
from .accumulate import Accumulator, Example, class_summary, collect_metrics
from .findings import evaluate_gates, make_findings
from .inputs import (AuditOptions, Preprocessing, AuditTarget, check_options, human_root, model_options, open_audit_data,
                     resolve_preprocessing, resolve_source)

REPORT_SCHEMA = 1


@dataclass
class AuditResult:
    report: Dict[str, Any]
    best: List[Example]
    worst: List[Example]
    metrics_rows: List[Dict[str, Any]]
    summary_rows: List[Dict[str, Any]]
    classes: List[str]


# ---- the computation ------------------------------------------------------------------------------------
@dataclass
class Context:
    """What every batch needs: model, layers, preprocessing, methods and switches."""

    model: nn.Module
    device: torch.device
    prep: Preprocessing
    methods: Tuple[str, ...]
    layer: Optional[str]
    has_boxes: bool
    target_class: str
    human: Optional[Path]
    score_metric: str
    higher_is_better: bool
    method_args: Dict[str, Dict[str, Any]] = field(default_factory=dict)


def audit_batch(ctx: Context, batch, acc: Accumulator, coverage) -> None:
    """Evaluate the batch (the evaluation `analyze` makes: a no-grad forward with the coverage hooks,
    then the maps and their metrics), record it, and offer the batch's examples."""
    batch = batch.to(ctx.device)
    methods = ctx.methods if ctx.layer is not None else ()
    human = None
    if ctx.human is not None and methods:
        human, found = load_maps_by_id(ctx.human, batch.image_ids, batch.images.shape[-1])
        human, acc.human_found = human.to(ctx.device), acc.human_found + found
    result = evaluate_batch(ctx.model, batch.images, batch.labels, batch.boxes if ctx.has_boxes else None,
                            mean=ctx.prep.mean, std=ctx.prep.std, methods=methods, layer=ctx.layer,
                            metric_names=METRICS.registered(), target=ctx.target_class, coverage=coverage,
                            shared_forward=False, human=human, method_args=ctx.method_args)
    acc.outputs = int(result.logits.shape[1])
    conf, preds = result.confidence_and_prediction()
    acc.labels += batch.labels.tolist()
    acc.preds += preds.tolist()
    acc.conf += conf.tolist()
    if methods:
        normed = measure_maps(result, acc)
        acc.offer(make_examples(ctx, batch, normed, preds, conf, acc))


def measure_maps(result, acc: Accumulator) -> Dict[str, torch.Tensor]:
    """A batch's map metrics (and the all-zero flags) per method into the accumulator; returns the
    per-sample normalised maps."""
    normed_all = {}
    for method, table in result.metrics.items():
        for name, values in table.items():
            acc.add_values(method, name, values)
        acc.add_values(method, "degenerate", result.degenerate[method].float().reshape(-1))
        normed_all[method] = normalize_maps(result.maps[method])[0]
    return normed_all


def make_examples(ctx: Context, batch, normed: Dict[str, torch.Tensor], preds, conf, acc: Accumulator) -> List[Example]:
    """Example candidates of a batch, scored by the primary method's score metric."""
    n, primary = len(batch), ctx.methods[0]
    if ctx.score_metric == "confidence":
        scores = np.asarray(conf.detach().float().cpu() if torch.is_tensor(conf) else conf, np.float64)
    else:
        scores = acc.per_image(primary, ctx.score_metric)[-n:] if ctx.score_metric in acc.values[primary] \
            else np.full(n, np.nan)
    # an all-zero map has no localisation to rank (its score is 0 by convention): the finding reports it
    scores = np.where(acc.per_image(primary, "degenerate")[-n:] > 0, np.nan, scores)
    images = (batch.images.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()
    return [Example(images[i], {m: normed[m][i].float().cpu().numpy() for m in ctx.methods},
                    batch.boxes[i].cpu().numpy().reshape(-1, 4), int(batch.labels[i]), int(preds[i]),
                    float(conf[i]), batch.image_ids[i], float(scores[i])) for i in range(n)]


# ---- aggregation ----------------------------------------------------------------------------------------


# ---- findings -------------------------------------------------------------------------------------------


# ---- the audit ------------------------------------------------------------------------------------------
def audit(opts: AuditOptions) -> AuditResult:
    """Audit one checkpoint (or a run's last one) on the test split; see the module docstring.

    Example:
        >>> result = audit(AuditOptions("runs/demo", limit=64))                 # doctest: +SKIP
        >>> result.report["metrics"]["accuracy"]["value"]                       # doctest: +SKIP
        0.84
    """
    thresholds = check_options(opts)
    source = resolve_source(opts.target)
    prep = resolve_preprocessing(opts, source)
    loaded = load_model(source.checkpoint, model_options(opts, source))
    with diverged_is_bad_input(source.checkpoint):  # a diverged model would read as extreme overfocusing
        check_finite_weights(loaded.model)
    # a run is audited on its own test split; data given by --data on all of it when it has no split
    dataset, split = open_audit_data(prep, opts.limit, whole_folder=opts.data is not None)
    device = resolve_device(opts.device)
    model = loaded.model.to(device).eval()
    check_input_size(model, dataset, prep, device)
    layer, latent = resolve_layers(loaded, model, dataset, prep, device)
    ctx = make_context(opts, model, device, prep, layer, dataset)
    coverage = make_coverage(model, latent, loaded.notes)
    acc = Accumulator(opts.methods, opts.examples, ctx.higher_is_better)
    start = time.perf_counter()
    with attribution_mode(model), diverged_is_bad_input(source.checkpoint):  # parameters frozen, restored after
        run_batches(ctx, dataset, acc, coverage, opts)
    metrics = collect_metrics(acc, coverage, opts.methods if layer else ())
    facts = {**make_facts(opts, source, prep, loaded, dataset, acc, layer, model), "split": split}
    report = build_report(opts, source, prep, loaded, dataset, layer, latent, thresholds, metrics, facts, acc)
    report["seconds"] = round(time.perf_counter() - start, 3)
    best, worst = split_examples(acc)
    metrics_rows, summary_rows = read_history(source)
    return AuditResult(report, best, worst, metrics_rows, summary_rows, list(dataset.classes))


def first_image(dataset) -> torch.Tensor:
    """The first image that reads (under --skip-bad an unreadable one is None)."""
    for i in range(len(dataset)):
        sample = dataset[i]
        if sample is not None:
            return sample["image"]
    raise OverfocusError("none of the images to audit could be read: check the data (see the warnings above)")


def check_input_size(model: nn.Module, dataset, prep: Preprocessing, device: torch.device) -> None:
    """One forward pass on one image; a model built for another input size fails here with one line.

    A fixed-size classifier (a Linear after a Flatten) raises a shape error deep inside the model;
    that is the user's --image-size, not a bug and not a failed gate.
    """
    sample = normalize(first_image(dataset).unsqueeze(0).to(device), prep.mean, prep.std)
    try:
        with torch.no_grad():
            model(sample)
    except RuntimeError as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if not any(word in detail for word in ("shape", "size", "dimension", "mat1")):
            raise
        raise OverfocusError(f"the model does not accept {prep.image_size} px images ({detail}): pass the size "
                             "it was trained at with --image-size N") from None


@contextmanager
def diverged_is_bad_input(checkpoint: Path):
    """A model with NaN/inf weights or logits: one line naming the checkpoint (exit 2), no report."""
    try:
        yield
    except NonFiniteModel as exc:
        raise OverfocusError(f"cannot audit {checkpoint}: {exc}") from None


def resolve_layers(loaded: LoadedModel, model: nn.Module, dataset, prep: Preprocessing,
                   device: torch.device) -> Tuple[Optional[str], Optional[str]]:
    """(attribution layer, latent layer): declared, given, or picked from a forward pass."""
    if not loaded.hookable:
        return None, None
    sample = normalize(first_image(dataset).unsqueeze(0).to(device), prep.mean, prep.std)
    choice = choose_layer(model, sample, asked=loaded.layer)
    layer = choice.name
    if choice.automatic:
        loaded.notes.append(f"attention layer picked automatically: {layer} (pass --layer to choose another)")
    get_module(model, layer)
    small = small_layer_note(model, layer, sample)
    if small:
        loaded.notes.append(small)
    latent = loaded.latent_layer or layer
    get_module(model, latent)
    return layer, latent


def layer_reshape(model: nn.Module, layer: str, image_size: int) -> str:
    """How the attention layer's output became a map (a transformer's token grid), for the report."""
    device = next(model.parameters()).device
    try:
        return layer_layout(model, layer, torch.zeros(1, 3, image_size, image_size, device=device)).describe()
    except OverfocusError:
        return ""


def example_score(has_boxes: bool) -> str:
    """What ranks the report's examples: energy pointing game with boxes, else the model's confidence."""
    return "energy_pg" if has_boxes else "confidence"


def make_context(opts: AuditOptions, model, device, prep, layer, dataset) -> Context:
    has_boxes = bool(getattr(dataset, "has_boxes", False))
    # energy_pg ranks localisation where boxes exist (a lower value: attention off the object);
    # without boxes nothing says where the object is, and a wide map is no better one (it may light
    # the sky): the examples are the images the model is most and least confident about.
    score = example_score(has_boxes)
    return Context(model, device, prep, tuple(opts.methods), layer, has_boxes, opts.target_class,
                   human_root(opts.human), score, True, dict(opts.method_args))


def make_coverage(model: nn.Module, latent: Optional[str], notes: List[str]):
    """A NeuronCoverage on the model, or None (with a note) where it has no activation modules."""
    if not latent:
        return None
    coverage = NeuronCoverage(model, latent_layer=latent, threshold=0.0)
    try:
        with coverage:  # hooks are only placed here: a model with functional ReLUs only has none
            pass
    except OverfocusError as exc:
        notes.append(f"neuron coverage skipped: {exc}")
        return None
    return coverage


def run_batches(ctx: Context, dataset, acc: Accumulator, coverage, opts: AuditOptions) -> None:
    loader = torch.utils.data.DataLoader(dataset, batch_size=opts.batch_size, shuffle=False,
                                         collate_fn=collate_samples)
    for batch in progress(loader, opts.progress, desc="audit"):
        audit_batch(ctx, batch, acc, coverage)


def split_examples(acc: Accumulator) -> Tuple[List[Example], List[Example]]:
    """Best and worst examples without overlap: at most half of the scored images each."""
    ids = {e.image_id for e in acc.best} | {e.image_id for e in acc.worst}
    k = min(acc.keep, max(1, len(ids) // 2)) if ids else 0
    best = acc.best[:k]
    taken = {e.image_id for e in best}
    return best, [e for e in acc.worst if e.image_id not in taken][:k]


def make_facts(opts, source, prep, loaded, dataset, acc, layer, model) -> Dict[str, Any]:
    """What findings need besides metrics: classes, layer, history row, and warnings to show."""
    warnings = list(loaded.notes)
    if prep.assumed:
        warnings.append(assumed_preprocessing_note(prep))
    if not getattr(dataset, "has_boxes", False) and layer:
        warnings.append("localisation was not checked: the data has no object boxes")
    outputs = acc.outputs
    if outputs and outputs != len(dataset.classes):
        warnings.append(f"the model has {outputs} outputs but the data has {len(dataset.classes)} classes: "
                        "accuracy compares class indices")
    if opts.human and acc.human_found == 0:
        warnings.append(f"no human map in {opts.human} matched an image id: name them <image_id>.npy or .png")
    return {"method": opts.methods[0], "n_classes": len(dataset.classes), "layer": layer, "warnings": warnings,
            "history_row": history_row(source, loaded.epoch), "onset": run_onset(source)}


def assumed_preprocessing_note(prep: Preprocessing) -> str:
    """The warning naming only the preprocessing values nobody gave (a given --image-size is not "assumed").

    Example:
        >>> prep = Preprocessing("builtin", 32, (0.5,) * 3, (0.25,) * 3, "options", ["mean", "std"], False)
        >>> assumed_preprocessing_note(prep)
        'preprocessing was not fully given: assumed mean [0.5, 0.5, 0.5], std [0.25, 0.25, 0.25]; pass mean=... and std=... as the model was trained, or every number may be wrong'
    """
    shown = {"image_size": f"{prep.image_size} px", "mean": f"mean {list(prep.mean)}", "std": f"std {list(prep.std)}"}
    values = ", ".join(shown[name] for name in prep.assumed)
    flags = " and ".join(option(name, "...") for name in prep.assumed)
    return (f"preprocessing was not fully given: assumed {values}; pass {flags} as the model was trained, "
            "or every number may be wrong")


def run_onset(source: AuditTarget) -> Optional[Dict[str, Any]]:
    """The onset.json that `overfocus analyze` wrote for the audited run, or None."""
    return read_onset(source.run.analysis) if source.run is not None else None


def history_row(source: AuditTarget, epoch: Optional[int]) -> Optional[Dict[str, Any]]:
    """The run's metrics.jsonl line of the audited epoch (the last line when unknown)."""
    if source.run is None:
        return None
    rows = source.run.read_metrics()
    match = [r for r in rows if r.get("epoch") == epoch]
    return (match or rows or [None])[-1]


def build_report(opts, source, prep, loaded, dataset, layer, latent, thresholds, metrics, facts, acc) -> Dict[str, Any]:
    """The JSON-ready report (NaN never appears: missing numbers are null)."""
    findings = make_findings(metrics, thresholds, facts)
    gates = evaluate_gates(opts.gates, metrics, opts.methods[0])
    inputs = {"checkpoint": str(source.checkpoint), "sha256": loaded.sha256, "kind": loaded.kind,
              "model": loaded.description, "epoch": loaded.epoch, "outputs": acc.outputs,
              "run_dir": str(source.run.root) if source.run else None, "data": prep.data, "split": facts["split"],
              "images": len(acc.labels), "split_size": len(getattr(dataset, "dataset", dataset)),
              "limit": opts.limit, "classes": list(dataset.classes),
              "has_boxes": bool(getattr(dataset, "has_boxes", False)), "layer": layer, "latent_layer": latent,
              "layer_reshape": layer_reshape(loaded.model, layer, prep.image_size) if layer else "",
              "methods": list(opts.methods) if layer else [], "method_args": dict(opts.method_args) if layer else {},
              "target": opts.target_class, "human": opts.human}
    return clean_json({
        "schema": REPORT_SCHEMA, "tool": "overfocus audit", "created": datetime.now(timezone.utc).isoformat(),
        "passed": all(g["passed"] for g in gates), "inputs": inputs,
        "preprocessing": {"image_size": prep.image_size, "mean": list(prep.mean), "std": list(prep.std),
                          "source": prep.source, "assumed": prep.assumed},
        "versions": software_versions(), "thresholds": thresholds, "metrics": metrics, "findings": findings,
        "gates": gates,
        "examples": examples_summary(acc, facts["method"], example_score(bool(inputs["has_boxes"]))),
        "classes": class_summary(acc.labels, acc.preds, inputs["classes"]),
        "method_info": method_info(inputs["methods"]), "metric_info": metric_info(list(metrics)), "history": {
            "epoch": (facts.get("history_row") or {}).get("epoch"), "row": facts.get("history_row")}})


def examples_summary(acc: Accumulator, method: str, score_metric: str) -> Dict[str, Any]:
    best, worst = split_examples(acc)
    brief = lambda e: {"image_id": e.image_id, "label": e.label, "pred": e.pred, "score": e.score}  # noqa: E731
    unranked = int(np.nansum(acc.per_image(method, "degenerate"))) if method in acc.values else 0
    return {"method": method, "score_metric": score_metric, "unranked_all_zero": unranked,
            "best": [brief(e) for e in best],
            "worst": [brief(e) for e in worst]}


def clean_json(obj: Any) -> Any:
    """Recursively make `obj` strict JSON: NaN/inf -> None, numpy scalars -> Python, tuples -> lists."""
    if isinstance(obj, dict):
        return {str(k): clean_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean_json(v) for v in obj]
    if isinstance(obj, (np.generic,)):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def read_history(source: AuditTarget) -> Tuple[List[Dict[str, Any]], List[Dict[str, Any]]]:
    """The run's metrics.jsonl rows and, when analysed, its summary.csv rows (numbers parsed)."""
    if source.run is None:
        return [], []
    summary = source.run.analysis / "summary.csv"
    return source.run.read_metrics(), parse_summary_file(summary) if summary.is_file() else []


def default_out(target: str | Path) -> Path:
    """RUN/audit for a run directory, else `<checkpoint dir>/audit-<stem>`."""
    path = Path(target)
    return path / "audit" if path.is_dir() else path.parent / f"audit-{path.stem}"


def write_outputs(result: AuditResult, out: Path) -> Tuple[Path, Path]:
    """Write report.json and the self-contained report.html into `out`; return both paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "report.json", result.report)
    return out / "report.json", write_report_html(result, out / "report.html")


def summary_lines(report: Dict[str, Any]) -> List[str]:
    """Human-readable console summary: one line per finding and per gate."""
    inputs = report["inputs"]
    where = ("all images (the data has no train/test split of its own)" if inputs["split"] == "all"
             else f"the {inputs['split']} split")
    lines = [f"audit of {inputs['checkpoint']} (sha256 {inputs['sha256'][:12]}...) on {inputs['images']} images "
             f"of {where}, {inputs.get('split_size', inputs['images'])} in all (--limit {inputs['limit']}), of "
             f"{inputs['data']}"]
    if inputs.get("layer"):
        reshape = inputs.get("layer_reshape")
        lines.append(f"  attention layer {inputs['layer']}" + (f" ({reshape})" if reshape else ""))
    lines += [f"  [{f['level']}] {f['message']}" for f in report["findings"]]
    for g in report["gates"]:
        verdict = "passed" if g["passed"] else "FAILED"
        lines.append(f"  gate {g['metric']} >= {g['min']:g}: {verdict} ({g['value']:.4g})")
    return lines
