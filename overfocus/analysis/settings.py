"""What an analysis is made of: the run's facts (RunInfo), the user's choices checked against the
registries and the data (Settings), where it computes (Runtime) and which epochs it takes.

Example:
    >>> parse_epochs("0:10:5", range(12))
    ([0, 5, 10], [])
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import torch

from ..attribution.methods import ATTRIBUTIONS, check_method_args
from ..device import resolve_device
from ..distributed import DistInfo, env_info, init_process_group
from ..errors import OverfocusError
from ..metrics.registry import METRICS
from ..registry import did_you_mean
from ..runs.rundir import RunDir
from .core import RANDOM_BASELINE
from .shards import parse_shard
from .summary import derived_metrics

IMAGE_METRICS = ("correct", "confidence")  # always recorded: free, from the logits
COVERAGE_METRICS = ("coverage_global", "coverage_latent", "unit_coverage_global", "unit_coverage_latent")
COVERAGE_NAMES = {"coverage", *COVERAGE_METRICS}  # --metrics names that switch coverage on
COMPARED_SETTINGS = ("methods", "method_args", "metrics", "layer", "target", "data_spec", "split", "limit",
                     "probe_ids", "human", "image_size", "precision", "faithfulness_images", "faithfulness_metrics",
                     "faithfulness_steps", "faithfulness_baseline", "image_choice")
# what an analysis.json written before the key existed meant (no faithfulness pass)
SETTING_DEFAULTS = {"precision": "float32", "method_args": {}, "faithfulness_images": 0, "faithfulness_metrics": [],
                    "faithfulness_steps": 16, "faithfulness_baseline": "blur",
                    "image_choice": ""}  # "" = all images, or (before "evenly") the FIRST --limit N
FAITHFULNESS_IMAGES = 256  # default --faithfulness-images: evenly spaced over the analysed images


@dataclass(frozen=True)
class Settings:
    """What an analysis is made with; two calls writing to one folder must agree on all of it."""

    methods: Tuple[str, ...]
    map_metrics: Tuple[str, ...]  # computed on the analysed images
    human_metrics: Tuple[str, ...]  # computed on the human-map images
    coverage: bool
    layer: str
    latent_layer: str
    target: str
    data_spec: str
    split: str
    limit: int
    probe_ids: Tuple[str, ...]
    human: str
    image_size: int
    precision: str = "float32"  # "bfloat16"/"float16" under --amp: the numbers differ slightly
    method_args: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # --method-args, per method
    # the model-dependent metrics (faithfulness, sanity) on `faithfulness_images` evenly spaced images
    faithfulness_images: int = 0
    faithfulness_metrics: Tuple[str, ...] = ()
    faithfulness_steps: int = 16
    faithfulness_baseline: str = "blur"
    layer_reshape: str = ""  # how the layer's output became a map (a token grid's reshape), not compared
    image_choice: str = ""  # how --limit picks its images: "evenly" spaced over the split; "" = all of them

    @property
    def metrics(self) -> List[str]:
        """Every metric name the records hold (map metrics, then the image-level ones)."""
        return [*self.map_metrics, "degenerate", *self.human_metrics, *IMAGE_METRICS,
                *(COVERAGE_METRICS if self.coverage else ()), *self.faithful_metrics]

    @property
    def faithful_metrics(self) -> Tuple[str, ...]:
        """The model-dependent metrics this analysis computes (none without faithfulness images)."""
        return self.faithfulness_metrics if self.faithfulness_images > 0 else ()

    @property
    def recorded_methods(self) -> Tuple[str, ...]:
        """The methods the records hold: the chosen ones, plus the random baseline of the
        faithfulness metrics (its faithfulness values only) when it was not chosen."""
        extra = (RANDOM_BASELINE,) if self.faithful_metrics and RANDOM_BASELINE not in self.methods else ()
        return (*self.methods, *extra)

    @property
    def coverage_shares_forward(self) -> bool:
        """Coverage hooks ride on attribute()'s forward unless another forward is needed anyway."""
        return self.target == "gt" and shares_one_pass(self.methods)

    def compared(self) -> Dict[str, Any]:
        d = {k: getattr(self, k) for k in COMPARED_SETTINGS}
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


    def summary_metrics(self) -> List[str]:
        """Every metric name summary.csv can hold for these settings (for `metric_info`)."""
        cumulative = [f"{m}_cumulative" for m in COVERAGE_METRICS] if self.coverage else []
        flips = [f"{m}_flip" for m in ("hit", "pointing_game") if m in self.map_metrics]
        return [*self.metrics, *derived_metrics(self.map_metrics), *cumulative, "drift", *flips]


def shares_one_pass(methods: Sequence[str]) -> bool:
    """True when every method comes from the same single forward (+ backward) pass, so hooks on
    that forward (neuron coverage) see exactly one forward of the batch.

    Example:
        >>> shares_one_pass(["grad_cam", "sgdrop"]), shares_one_pass(["grad_cam", "saliency"])
        (True, False)
    """
    passes = {ATTRIBUTIONS.get(m).forward_pass for m in methods}
    return len(passes) == 1 and None not in passes


@dataclass(frozen=True)
class Runtime:
    """Where and how this process computes: device, torchrun rank, shard, precision, layout."""

    device: torch.device
    dist: DistInfo = DistInfo()
    shard: Optional[Tuple[int, int]] = None
    amp_dtype: Optional[torch.dtype] = None
    channels_last: bool = False

    @property
    def part(self) -> Optional[Tuple[int, int]]:
        """(rank, world) of the share this process computes; None when it computes everything."""
        if self.shard is not None:
            return self.shard
        return (self.dist.rank, self.dist.world_size) if self.dist.enabled else None

    @property
    def precision(self) -> str:
        return "float32" if self.amp_dtype is None else str(self.amp_dtype).removeprefix("torch.")


def make_runtime(device: str = "auto", amp: bool = False, channels_last: bool = False,
                 shard: Optional[str | Tuple[int, int]] = None) -> Runtime:
    """The Runtime of this process; under torchrun it joins the process group (gloo/nccl).

    Example:
        >>> make_runtime("cpu").precision
        'float32'
    """
    info, shard = env_info(), parse_shard(shard)
    if shard is not None and info.enabled:
        raise OverfocusError("--shard is for independent processes: under torchrun the ranks split the work "
                             "themselves, drop --shard")
    dev = resolve_device(device, info.local_rank)
    init_process_group(info, dev)
    return Runtime(dev, info, shard, _amp_dtype(dev) if amp else None, bool(channels_last))


def _amp_dtype(device: torch.device) -> torch.dtype:
    """bfloat16 where the GPU has it (its range keeps Grad-CAM's small gradients), else float16;
    on the CPU autocast knows bfloat16 only (rarely faster there: --amp is meant for GPUs)."""
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return torch.float16
    return torch.bfloat16


# ---- epoch selection ----------------------------------------------------------------------------
def available_epochs(run: RunDir) -> List[int]:
    """Epochs the run knows of: listed in run.json (not pruned by train.keep_every) or present as a checkpoint file."""
    listed = {int(e["epoch"]) for e in run.read_manifest().get("epochs", []) if "epoch" in e and not e.get("pruned")}
    return sorted(listed | set(run.checkpoint_epochs()))


def parse_epochs(spec: Optional[Iterable[int] | str], available: Sequence[int]) -> Tuple[List[int], List[int]]:
    """Resolve an epoch selection to (selected epochs that exist, explicitly asked ones that do not).

    Example:
        >>> parse_epochs("0:10:5", range(12))
        ([0, 5, 10], [])
        >>> parse_epochs("3,50", range(12))
        ([3], [50])
    """
    avail = sorted(set(available))
    if spec is None or (isinstance(spec, str) and spec.strip() in ("", "all")):
        return avail, []
    if isinstance(spec, str) and ":" in spec:
        start, stop, step = _parse_range(spec)
        return [e for e in avail if start <= e <= stop and (e - start) % step == 0], []
    asked = _parse_list(spec)
    return [e for e in asked if e in avail], [e for e in asked if e not in avail]


def _parse_range(text: str) -> Tuple[int, int, int]:
    parts = text.split(":")
    try:
        if len(parts) > 3:
            raise ValueError
        start = int(parts[0]) if parts[0].strip() else 0
        stop = int(parts[1]) if parts[1].strip() else sys.maxsize
        step = int(parts[2]) if len(parts) == 3 and parts[2].strip() else 1
    except ValueError:
        raise OverfocusError(f"--epochs {text!r}: use START:STOP[:STEP] (STOP included), e.g. 0:50:5") from None
    if step < 1:
        raise OverfocusError(f"--epochs {text!r}: the step must be at least 1")
    if start < 0 or stop < start:
        raise OverfocusError(f"--epochs {text!r}: START must be 0 or more and STOP at least START, e.g. 0:50:5")
    return start, stop, step


def _parse_list(spec: Iterable[int] | str) -> List[int]:
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    try:
        epochs = sorted({int(str(e).strip()) for e in items if str(e).strip()})
    except ValueError:
        raise OverfocusError(f"--epochs {spec!r}: use all, a list such as 3,5,7 or a range such as 0:50:5") from None
    if epochs and epochs[0] < 0:
        raise OverfocusError(f"--epochs {spec!r}: epochs are 0 (the initial weights) or more")
    return epochs


def select_epochs(spec, available: Sequence[int], root) -> Tuple[List[int], List[int]]:
    """The epochs to analyse; an asked epoch the run does not have is an error, not a silent skip."""
    selected, missing = parse_epochs(spec, available)
    if missing:
        raise OverfocusError(f"--epochs {spec}: {root} has no epoch {', '.join(map(str, missing))}; "
                             f"it has epochs {_span(available)} (use --epochs all or a subset of those)")
    if not selected:
        raise OverfocusError(f"no checkpoint of {root} matches --epochs {spec}: "
                             f"the run has epochs {_span(available) if available else 'none yet'}")
    return selected, missing


def _span(epochs: Sequence[int]) -> str:
    """'0-5' for consecutive epochs, else the list; 'none yet' for none."""
    if not epochs:
        return "none yet"
    if list(epochs) == list(range(epochs[0], epochs[-1] + 1)):
        return f"{epochs[0]}-{epochs[-1]}"
    return ", ".join(map(str, epochs))


# ---- methods and metrics ------------------------------------------------------------------------
def resolve_methods(methods: Sequence[str]) -> Tuple[str, ...]:
    methods = tuple(dict.fromkeys(m.strip() for m in ([methods] if isinstance(methods, str) else methods) if m.strip()))
    if not methods:
        raise OverfocusError("--methods is empty: name at least one, e.g. --methods grad_cam,sgdrop")
    for m in methods:
        ATTRIBUTIONS.get(m)  # one-line error listing the known methods
    return methods


def resolve_method_args(methods: Sequence[str], method_args: Optional[Mapping[str, Mapping[str, Any]]]
                        ) -> Dict[str, Dict[str, Any]]:
    """`--method-args` checked against the methods (before any model runs), as analysis.json keeps it.

    Example:
        >>> resolve_method_args(("grad_cam", "score_cam"), {"score_cam": {"batch_size": 8}})
        {'score_cam': {'batch_size': 8}}
    """
    check_method_args(methods, method_args)
    return {name: dict(args) for name, args in sorted((method_args or {}).items()) if args}


def resolve_metrics(names: Optional[Sequence[str]], has_boxes: bool,
                     has_human: bool) -> Tuple[Tuple[str, ...], Tuple[str, ...], bool]:
    """Split metric names into (map metrics, human-map metrics, coverage on?), checking their needs;
    the model-dependent metrics are left out (`resolve_model_metrics`)."""
    if names is None:
        specs = [METRICS.get(n) for n in METRICS.names() if not METRICS.get(n).needs_model]
        chosen = [s.name for s in specs if (has_boxes or not s.needs_boxes) and (has_human or not s.needs_human)]
        coverage = True
    else:
        names = [n.strip() for n in ([names] if isinstance(names, str) else names) if n.strip()]
        coverage = any(n in COVERAGE_NAMES for n in names)
        chosen = [n for n in dict.fromkeys(names) if n not in COVERAGE_NAMES and n not in IMAGE_METRICS]
        for n in chosen:
            if n not in METRICS:
                known = ", ".join(METRICS.names() + ["coverage"])
                hint = did_you_mean(n, METRICS.names() + ["coverage"])
                raise OverfocusError(f"unknown metric {n!r} in --metrics{hint}: choose from {known}")
            _check_metric(METRICS.get(n), has_boxes, has_human)
        if has_human and "harmonization" in METRICS and "harmonization" not in chosen:
            chosen.append("harmonization")  # --human asks for it
    chosen = [n for n in chosen if not METRICS.get(n).needs_model]
    human = tuple(n for n in chosen if METRICS.get(n).needs_human)
    return tuple(n for n in chosen if n not in human), human, coverage


def resolve_model_metrics(names: Optional[Sequence[str]]) -> Tuple[str, ...]:
    """The model-dependent metrics (faithfulness, sanity) among `--metrics` names, in registration
    order; by default (None) those marked `by_default` (all but ROAD). Unknown names are refused
    by `resolve_metrics`.

    Example:
        >>> resolve_model_metrics(["area_ratio", "insertion", "deletion"])
        ('deletion', 'insertion')
        >>> "road_morf" in resolve_model_metrics(None), "sanity_init" in resolve_model_metrics(None)
        (False, True)
    """
    wanted = None if names is None else {n.strip() for n in ([names] if isinstance(names, str) else names)}
    specs = [METRICS.get(n) for n in METRICS.registered()]
    return tuple(s.name for s in specs if s.needs_model and (s.by_default if wanted is None else s.name in wanted))


def _check_metric(spec, has_boxes: bool, has_human: bool) -> None:
    if spec.needs_boxes and not has_boxes:
        raise OverfocusError(f"metric {spec.name} needs boxes and this data has none: drop it from --metrics")
    if spec.needs_human and not has_human:
        raise OverfocusError(f"metric {spec.name} needs human maps: pass --human SPEC (e.g. osie:PATH)")

