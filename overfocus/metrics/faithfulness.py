"""Faithfulness metrics: does the map rank the pixels the MODEL relies on? Unlike the map metrics
they need the model and the image: each perturbs the image guided by the map and reads the
softmax probability of the explained class (docs/conventions.md, "Faithfulness").

- `deletion` / `insertion` (Petsiuk et al. 2018, RISE): the pixels, in order of decreasing
  attribution, are replaced by a baseline (deletion) or copied from the image into the baseline
  (insertion) in K equal steps (default 16); the value is the area under the probability curve
  over the removed fraction 0..1 (trapezoid rule over the K + 1 points). Baseline: a Gaussian
  blur of the image (kernel 11, sigma 5, as RISE) or `mean` (the normalisation mean: a zero model
  input). Lower deletion / higher insertion = more faithful.
- `road_morf` / `road_lerf` / `road_combined` (Rong et al. 2022, ROAD): p% of the pixels (default
  10/30/50/70/90) removed most relevant first (MoRF) or least relevant first (LeRF) and imputed by
  noisy linear imputation: every removed pixel is the weighted mean of its 8 neighbours (weight
  1/6 direct, 1/12 diagonal; solved exactly as one linear system per image and channel, by
  conjugate gradients) plus Gaussian noise (sigma 0.01 on the [0, 1] image). The value is the
  change of the probability, averaged over the percentages; combined = (LeRF - MoRF) / 2.
- `drop_in_confidence` / `increase_in_confidence` (Chattopadhay et al. 2018, Grad-CAM++): the
  model input multiplied by the map scaled to [0, 1] (in the normalised space, so a zero map gives
  the dataset mean); drop = max(0, Y - O) / Y, increase = 1 when O > Y (Y, O: the probability
  before and after).

Every count of removed pixels is round(fraction x H x W); ties in a map are broken in an order
drawn from the image's seed (`overfocus.data.seeds`), never in raster order. A degenerate map (all
zero or non-finite) ranks nothing: its values are NaN. All perturbed copies of a batch go
through the model in chunks of `forward_batch` copies (no loop over pixels or images).

Example:
    >>> w = torch.zeros(1, 3, 4, 4); w[0, :, 0, 0] = 4.0        # only pixel (0, 0) matters
    >>> def predict(x, targets):                                # probability of class 1
    ...     logit = (x * w).flatten(1).sum(1)
    ...     return torch.sigmoid(logit - 2.0)
    >>> images, targets = torch.ones(1, 3, 4, 4), torch.tensor([1])
    >>> batch = PerturbationBatch(predict, images, targets, FaithfulnessOptions(steps=16, baseline="mean"),
    ...                           fill=torch.zeros(3))
    >>> good = torch.zeros(1, 4, 4); good[0, 0, 0] = 1.0
    >>> bad = torch.ones(1, 4, 4); bad[0, 0, 0] = 0.0
    >>> bool(MapPerturbation(batch, good).deletion() < MapPerturbation(batch, bad).deletion())
    True
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from ..data.seeds import image_seeds, seeded_normal, seeded_uniform
from ..errors import OverfocusError
from .harmonization import gaussian_blur

Predict = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # ([0, 1] images N x C x H x W, N targets) -> N probs
BASELINES = ("blur", "mean")
# 8-neighbour weights of ROAD's linear imputation (Rong et al. 2022): direct 1/6, diagonal 1/12
_NEIGHBOURS = torch.tensor([[1 / 12, 1 / 6, 1 / 12], [1 / 6, 0.0, 1 / 6], [1 / 12, 1 / 6, 1 / 12]])


@dataclass(frozen=True)
class FaithfulnessOptions:
    """How the faithfulness metrics perturb (docs/conventions.md lists the defaults)."""

    steps: int = 16  # K of deletion / insertion
    baseline: str = "blur"  # "blur" (RISE) or "mean"
    road_percentages: Tuple[int, ...] = (10, 30, 50, 70, 90)
    road_noise: float = 0.01  # sigma of ROAD's imputation noise on the [0, 1] image
    forward_batch: int = 512  # perturbed copies per forward
    blur_ksize: int = 11
    blur_sigma: float = 5.0
    cg_tol: float = 1e-4  # relative residual at which ROAD's linear system counts as solved
    cg_max_iter: int = 3000

    def __post_init__(self):
        if self.steps < 2:
            raise OverfocusError(f"faithfulness steps {self.steps}: use 2 or more (default 16)")
        if self.baseline not in BASELINES:
            raise OverfocusError(f"faithfulness baseline {self.baseline!r}: use blur or mean")
        if not self.road_percentages or not all(0 < p < 100 for p in self.road_percentages):
            raise OverfocusError(f"ROAD percentages {self.road_percentages}: use values between 0 and 100, "
                                 "e.g. 10,30,50,70,90")
        if self.forward_batch < 1:
            raise OverfocusError(f"forward batch {self.forward_batch}: use 1 or more")


class PerturbationBatch:
    """What the metrics of one batch share across methods: the model's probability function, the
    images and targets, the original probabilities, the baseline (and its probability), seeds.

    Args:
        predict: ([0, 1] images, targets) -> probability of each target (no grad needed).
        images: B x C x H x W in [0, 1].
        targets: B explained classes.
        fill: C values, the normalisation mean (the `mean` baseline, the confidence metrics' zero).
    """

    def __init__(self, predict: Predict, images: torch.Tensor, targets: torch.Tensor,
                 options: FaithfulnessOptions = FaithfulnessOptions(), fill: Optional[torch.Tensor] = None,
                 seeds: Optional[Sequence[int]] = None):
        self.predict, self.images, self.targets, self.options = predict, images.float(), targets, options
        c = images.shape[1]
        fill = torch.full((c,), 0.5) if fill is None else torch.as_tensor(fill, dtype=torch.float32)
        self.fill = fill.to(images.device).view(1, c, 1, 1)
        self.seeds = list(seeds) if seeds is not None else image_seeds(images)
        with torch.no_grad():
            self.original = self._probabilities(self.images[:, None])[:, 0]
        self._baseline: Optional[torch.Tensor] = None
        self._baseline_prob: Optional[torch.Tensor] = None

    @property
    def baseline(self) -> torch.Tensor:
        if self._baseline is None:
            if self.options.baseline == "blur":
                b, c, h, w = self.images.shape
                blurred = gaussian_blur(self.images.reshape(b * c, h, w), self.options.blur_ksize,
                                        self.options.blur_sigma)
                self._baseline = blurred.reshape(b, c, h, w)
            else:
                self._baseline = self.fill.expand_as(self.images).clone()
        return self._baseline

    @property
    def baseline_probability(self) -> torch.Tensor:
        if self._baseline_prob is None:
            with torch.no_grad():
                self._baseline_prob = self._probabilities(self.baseline[:, None])[:, 0]
        return self._baseline_prob

    def probabilities(self, copies: int, build: Callable[[slice], torch.Tensor]) -> torch.Tensor:
        """B x copies probabilities of the explained class; `build(s)` makes the B x len(s) x C x H
        x W copies of the slice s of copy indices: chunks of about `forward_batch` copies per forward."""
        per_chunk = max(1, self.options.forward_batch // max(1, len(self.images)))
        out = []
        with torch.no_grad():
            for start in range(0, copies, per_chunk):
                out.append(self._probabilities(build(slice(start, min(copies, start + per_chunk)))))
        return torch.cat(out, dim=1) if out else self.original.new_zeros((len(self.images), 0))

    def _probabilities(self, copies: torch.Tensor) -> torch.Tensor:
        b, s = copies.shape[:2]
        flat = copies.reshape(b * s, *copies.shape[2:])
        probs = self.predict(flat, self.targets.repeat_interleave(s))
        return probs.float().reshape(b, s)


@dataclass
class MapPerturbation:
    """One method's maps over a PerturbationBatch; each metric family is computed once and cached
    (deletion with insertion, MoRF with LeRF, drop with increase)."""

    batch: PerturbationBatch
    maps: torch.Tensor  # B x H x W raw non-negative maps at input size
    # maps of the same images to compare with (metrics/sanity.py): "init" (epoch-0 weights), "class"
    references: Dict[str, torch.Tensor] = field(default_factory=dict)
    cache: Dict[str, torch.Tensor] = field(default_factory=dict)

    def __post_init__(self):
        if tuple(self.maps.shape[-2:]) != tuple(self.batch.images.shape[-2:]):
            raise OverfocusError(f"maps of size {tuple(self.maps.shape[-2:])} for images of size "
                                 f"{tuple(self.batch.images.shape[-2:])}: faithfulness needs maps at input size")
        flat = self.maps.detach().float().flatten(1)
        self.degenerate = ~torch.isfinite(flat).all(1) | (flat.amax(1) <= 0)
        self.rank = relevance_rank(torch.nan_to_num(flat, nan=0.0), self.batch.seeds)  # 0 = most relevant

    def _undefined(self, values: torch.Tensor) -> torch.Tensor:
        return torch.where(self.degenerate.to(values.device), torch.full_like(values, float("nan")), values)

    # -- deletion / insertion --
    def curves(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """(deletion, insertion) probability curves, B x (K + 1), over removed fractions k / K."""
        if "deletion_curve" not in self.cache:
            k, b = self.batch.options.steps, self.batch
            n = self.rank.shape[1]
            counts = [round(i * n / k) for i in range(1, k)]  # the inner steps; 0 and K are shared
            shape = b.images.shape

            def build(s: slice) -> torch.Tensor:
                chunk = []
                for j in range(s.start, s.stop):  # copy j: deletion step j (< K-1) or insertion step
                    removed = (self.rank < counts[j % (k - 1)]).view(shape[0], 1, *shape[2:])
                    chunk.append(torch.where(removed, b.baseline, b.images) if j < k - 1
                                 else torch.where(removed, b.images, b.baseline))
                return torch.stack(chunk, dim=1)

            inner = b.probabilities(2 * (k - 1), build)
            orig, base = b.original[:, None], b.baseline_probability[:, None]
            self.cache["deletion_curve"] = torch.cat([orig, inner[:, :k - 1], base], 1)
            self.cache["insertion_curve"] = torch.cat([base, inner[:, k - 1:], orig], 1)
        return self.cache["deletion_curve"], self.cache["insertion_curve"]

    def deletion(self) -> torch.Tensor:
        return self._undefined(trapezoid_auc(self.curves()[0]))

    def insertion(self) -> torch.Tensor:
        return self._undefined(trapezoid_auc(self.curves()[1]))

    # -- ROAD --
    def road(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """(MoRF, LeRF): mean over the percentages of the probability change after imputation."""
        if "road_morf" not in self.cache:
            b = self.batch
            percentages = b.options.road_percentages
            n, p = self.rank.shape[1], len(percentages)
            counts = [round(q / 100 * n) for q in percentages]
            shape = b.images.shape

            def build(s: slice) -> torch.Tensor:
                masks, seeds = [], []
                for j in range(s.start, s.stop):  # copy j: MoRF (j < p) or LeRF at percentage j % p
                    count = counts[j % p]
                    removed = self.rank < count if j < p else self.rank >= n - count
                    masks.append(removed.view(shape[0], *shape[2:]))
                    seeds.append([(seed + 7919 * (j + 1)) % 2 ** 62 for seed in b.seeds])
                removed = torch.stack(masks, 1)  # B x s x H x W
                images = b.images[:, None].expand(-1, len(masks), -1, -1, -1)
                flat_seeds = [seeds[i][img] for img in range(shape[0]) for i in range(len(masks))]
                imputed = noisy_linear_imputation(images.reshape(-1, *shape[1:]), removed.reshape(-1, *shape[2:]),
                                                  b.options.road_noise, flat_seeds, b.options.cg_tol,
                                                  b.options.cg_max_iter)
                return imputed.reshape(shape[0], len(masks), *shape[1:])

            change = b.probabilities(2 * p, build) - b.original[:, None]
            self.cache["road_morf"], self.cache["road_lerf"] = change[:, :p].mean(1), change[:, p:].mean(1)
        return self.cache["road_morf"], self.cache["road_lerf"]

    def road_morf(self) -> torch.Tensor:
        return self._undefined(self.road()[0])

    def road_lerf(self) -> torch.Tensor:
        return self._undefined(self.road()[1])

    def road_combined(self) -> torch.Tensor:
        morf, lerf = self.road()
        return self._undefined((lerf - morf) / 2)

    # -- confidence (Chattopadhay et al.) --
    def multiplied_probability(self) -> torch.Tensor:
        """O: the probability of the input multiplied by the [0, 1] map in the normalised space."""
        if "multiplied" not in self.cache:
            b = self.batch
            scale = self.maps.detach().float().flatten(1).amax(1).clamp_min(1e-30).view(-1, 1, 1)
            unit = torch.nan_to_num(self.maps.detach().float() / scale, nan=0.0).clamp(0, 1)[:, None]
            masked = b.fill + unit * (b.images - b.fill)  # (x - mean) * m, mapped back to [0, 1]
            self.cache["multiplied"] = b.probabilities(1, lambda s: masked[:, None])[:, 0]
        return self.cache["multiplied"]

    def drop_in_confidence(self) -> torch.Tensor:
        y, o = self.batch.original, self.multiplied_probability()
        return self._undefined(torch.clamp(y - o, min=0) / y.clamp_min(1e-12))

    def increase_in_confidence(self) -> torch.Tensor:
        return self._undefined((self.multiplied_probability() > self.batch.original).float())


def relevance_rank(flat_maps: torch.Tensor, seeds: Sequence[int]) -> torch.Tensor:
    """B x N: each pixel's position in the order of decreasing attribution (0 = most relevant);
    ties are broken in a random order drawn from the image's seed.

    Example:
        >>> relevance_rank(torch.tensor([[0.1, 0.9, 0.5]]), [0]).tolist()
        [[2, 0, 1]]
    """
    b, n = flat_maps.shape
    shuffle = torch.argsort(seeded_uniform(seeds, (n,), flat_maps.device), dim=1)  # the tie order
    order = shuffle.gather(1, torch.argsort(flat_maps.gather(1, shuffle), dim=1, descending=True, stable=True))
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(n, device=flat_maps.device).expand(b, n).contiguous())
    return rank


def trapezoid_auc(curve: torch.Tensor) -> torch.Tensor:
    """Area under B x (K + 1) curves sampled at 0, 1/K, ..., 1 (trapezoid rule).

    Example:
        >>> trapezoid_auc(torch.tensor([[1.0, 0.5, 0.0]])).tolist()
        [0.5]
    """
    k = curve.shape[1] - 1
    return (curve.sum(1) - (curve[:, 0] + curve[:, -1]) / 2) / k


def linear_imputation(images: torch.Tensor, removed: torch.Tensor, tol: float = 1e-4,
                      max_iter: int = 3000) -> torch.Tensor:
    """ROAD's linear imputation without noise: each removed pixel becomes the weighted mean of its
    in-image 8 neighbours (1/6 direct, 1/12 diagonal), known pixels stay; the resulting linear
    system (symmetric positive definite on the removed pixels while any pixel is kept) is solved
    for every image and channel at once by Jacobi-preconditioned conjugate gradients, started from
    the solution of the same problem at half resolution (nested iteration: CG then only removes
    the fine-scale error, in a few dozen steps whatever the image size).

    Args:
        images: N x C x H x W.
        removed: N x H x W bool.

    Example:
        >>> img = torch.tensor([[[[0.0, 1.0, 2.0]]]])                  # one row 0, 1, 2
        >>> linear_imputation(img, torch.tensor([[[False, True, False]]])).tolist()
        [[[[0.0, 1.0, 2.0]]]]
    """
    n, c, h, w = images.shape
    x = images.float().reshape(n * c, 1, h, w)
    m = removed.to(x.device).float().repeat_interleave(c, 0).reshape(n * c, 1, h, w)
    return _solve(x, m, tol, max_iter).reshape(n, c, h, w)


def _coarse_start(x: torch.Tensor, m: torch.Tensor, tol: float, max_iter: int) -> torch.Tensor:
    """The starting point of the CG at one resolution: the problem solved at half resolution (a
    coarse pixel is known when any of its 4 pixels is, with their mean) and upsampled; below 16
    pixels a push-pull fill."""
    if min(x.shape[-2:]) < 16:
        return _push_pull(x, 1 - m)
    known = 1 - m
    share = F.avg_pool2d(known, 2, ceil_mode=True)
    coarse_x = F.avg_pool2d(x * known, 2, ceil_mode=True) / share.clamp_min(1e-12)
    coarse_m = (share == 0).float()
    solved = _solve(coarse_x, coarse_m, tol, max_iter)
    return F.interpolate(solved, size=x.shape[-2:], mode="bilinear", align_corners=False)


def _solve(x: torch.Tensor, m: torch.Tensor, tol: float, max_iter: int) -> torch.Tensor:
    """The linear imputation of x (N x 1 x H x W) where m (N x 1 x H x W, 1 = removed)."""
    h, w = x.shape[-2:]
    kernel = _NEIGHBOURS.to(x).view(1, 1, 3, 3)

    def conv(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t, kernel, padding=1)  # zero padding: neighbours outside the image weigh nothing

    diag = conv(torch.ones(1, 1, h, w, device=x.device, dtype=x.dtype))  # weight of the in-image neighbours
    rhs = m * conv((1 - m) * x)

    def operator(u: torch.Tensor) -> torch.Tensor:
        return m * (diag * u - conv(m * u))

    u = m * _coarse_start(x, m, tol, max_iter)
    r = rhs - operator(u)
    z = r / diag
    p = z.clone()
    rz = (r * z).flatten(1).sum(1)
    scale = rhs.flatten(1).norm(dim=1).clamp_min(1e-12)
    for it in range(max_iter):
        if it % 5 == 0 and bool((r.flatten(1).norm(dim=1) <= tol * scale).all()):  # one sync per 5 steps
            break
        ap = operator(p)
        denom = (p * ap).flatten(1).sum(1)
        alpha = torch.where(denom > 0, rz / denom.clamp_min(1e-30), torch.zeros_like(rz))
        u = u + alpha.view(-1, 1, 1, 1) * p
        r = r - alpha.view(-1, 1, 1, 1) * ap
        z = r / diag
        rz_new = (r * z).flatten(1).sum(1)
        beta = torch.where(rz > 0, rz_new / rz.clamp_min(1e-30), torch.zeros_like(rz))
        p = z + beta.view(-1, 1, 1, 1) * p
        rz = rz_new
    return m * u + (1 - m) * x


def _push_pull(x: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """A smooth fill of the unknown pixels from a pyramid of known-pixel averages (push-pull): a
    starting point close to the harmonic solution, so that few CG steps remain."""
    values, weights = [x * known], [known]
    while min(values[-1].shape[-2:]) > 1:
        values.append(F.avg_pool2d(values[-1], 2, ceil_mode=True))
        weights.append(F.avg_pool2d(weights[-1], 2, ceil_mode=True))
    top_w = weights[-1].flatten(1).sum(1).clamp_min(1e-12).view(-1, 1, 1, 1)
    estimate = (values[-1].flatten(1).sum(1).view(-1, 1, 1, 1) / top_w).expand_as(values[-1])
    for v, w in zip(reversed(values[:-1]), reversed(weights[:-1])):
        up = F.interpolate(estimate, size=v.shape[-2:], mode="bilinear", align_corners=False)
        estimate = torch.where(w > 0, v / w.clamp_min(1e-12), up)
        estimate = w.clamp(max=1) * estimate + (1 - w.clamp(max=1)) * up  # partly known: blend
    return estimate


def noisy_linear_imputation(images: torch.Tensor, removed: torch.Tensor, noise: float, seeds: Sequence[int],
                            tol: float = 1e-4, max_iter: int = 3000) -> torch.Tensor:
    """`linear_imputation` plus Gaussian noise of sigma `noise` on the removed pixels, drawn from
    one seed per image (ROAD's noisy linear imputation)."""
    out = linear_imputation(images, removed, tol, max_iter)
    if noise > 0:
        n, c, h, w = images.shape
        eps = seeded_normal(seeds, (c, h, w), images.device)
        out = out + noise * eps * removed.to(out.device)[:, None].float()
    return out


# ---- registry adapters: fn(perturbation) -> B values ----------------------------------------------
def deletion(p: MapPerturbation) -> torch.Tensor:
    return p.deletion()


def insertion(p: MapPerturbation) -> torch.Tensor:
    return p.insertion()


def road_morf(p: MapPerturbation) -> torch.Tensor:
    return p.road_morf()


def road_lerf(p: MapPerturbation) -> torch.Tensor:
    return p.road_lerf()


def road_combined(p: MapPerturbation) -> torch.Tensor:
    return p.road_combined()


def drop_in_confidence(p: MapPerturbation) -> torch.Tensor:
    return p.drop_in_confidence()


def increase_in_confidence(p: MapPerturbation) -> torch.Tensor:
    return p.increase_in_confidence()
