"""Model-surgery helpers shared by the regularizers: run the classifier head alone on a given
latent (`HeadRunner`), switch modules to eval mode for a block (`eval_mode`), capture one module's
output (`capture_output`), a fixed tracing input (`probe_input`) and the exact top-k mask
(`largest_k_mask`) used by SGDrop, saliency-guided training and Catch-up Mix.
"""
from __future__ import annotations

import contextlib
from typing import Dict, Iterator, List, Tuple

import torch
import torch.nn as nn

from ..models import get_module
from ..models.hooks import Hooks


# ---- running the classifier psi alone -------------------------------------------------------
class HeadRunner:
    """Runs psi, the part of a model after module `layer`, on a given latent tensor.

    One traced eval-mode forward finds the modules that run entirely before `layer` (the encoder);
    during a head run their `forward` is temporarily the identity and `layer` returns the given z,
    so the model's own `forward` (flatten, pooling, ...) does the rest: psi works for any model
    without knowing its code. The trace also checks head(z) == model(x); if not (a model whose
    forward mixes encoder outputs), the encoder runs in full and only z is substituted.

    Example:
        >>> from overfocus.models import build_model
        >>> m = build_model("resnet18", 3, 0.125, True).eval()
        >>> x = torch.randn(2, 3, 32, 32)
        >>> head = HeadRunner(m, "layer4", x)
        >>> z = m.layer4(m.layer3(m.layer2(m.layer1(m.relu(m.bn1(m.conv1(x)))))))
        >>> bool(torch.allclose(head(z, x), m(x), atol=1e-5))
        True
    """

    def __init__(self, model: nn.Module, layer: str, example: torch.Tensor):
        self.model, self.layer = model, layer
        self.latent = get_module(model, layer)
        self.all_modules = list(model.modules())
        self.encoder_roots: List[nn.Module] = []
        self.head_leaves: List[Tuple[str, nn.Module]] = []
        self._trace(example)

    @torch.no_grad()
    def _trace(self, example: torch.Tensor) -> None:
        """Eval mode and no grad: the trace changes no BatchNorm statistic and draws no random number."""
        names = {m: n for n, m in self.model.named_modules()}
        by_name = {n: m for m, n in names.items()}
        calls: Dict[nn.Module, List[Tuple[int, int]]] = {}
        order: List[Tuple[int, nn.Module]] = []
        with eval_mode(self.all_modules):
            with _call_recorder(self.model, calls, order):
                reference = self.model(example)
            latent_start = min(s for s, _ in calls[self.latent])
            latent_end = max(e for _, e in calls[self.latent])
            encoder = {m for m, c in calls.items() if max(e for _, e in c) < latent_start}
            self.encoder_roots = [m for m in encoder if by_name.get(_parent_name(names[m])) not in encoder]
            self.head_leaves = [(names[m], m) for s, m in order if s > latent_end and not list(m.children())]
            self._verify(example, reference)

    def _verify(self, example: torch.Tensor, reference: torch.Tensor) -> None:
        z = capture_output(self.model, self.latent, example)
        try:
            ok = torch.allclose(self(z, example), reference, rtol=1e-4, atol=1e-5)
        except Exception:  # a forward that consumes encoder outputs besides z: fall back below
            ok = False
        if not ok:
            self.encoder_roots = []

    @contextlib.contextmanager
    def substituted(self, z: torch.Tensor) -> Iterator[None]:
        """Within the block, a call of the model skips the encoder and uses z as the latent."""
        for m in self.encoder_roots:
            m.forward = _identity
        self.latent.forward = lambda *_a, **_k: z
        try:
            yield
        finally:
            for m in self.encoder_roots + [self.latent]:
                del m.forward

    def __call__(self, z: torch.Tensor, stub: torch.Tensor) -> torch.Tensor:
        """psi(z); `stub` is any valid model input (it flows through the skipped encoder)."""
        with self.substituted(z):
            return self.model(stub)


def _identity(x, *_args, **_kwargs):
    return x


def _parent_name(name: str) -> str:
    """Dotted name of the parent module ("" is the model itself)."""
    return name.rsplit(".", 1)[0] if "." in name else ""


@contextlib.contextmanager
def _call_recorder(model: nn.Module, calls, order) -> Iterator[None]:
    """Record (start, end) event numbers of every module call, and the call order."""
    clock = [0]
    pending: Dict[nn.Module, List[int]] = {}

    def pre(m, _inp):
        clock[0] += 1
        pending.setdefault(m, []).append(clock[0])
        order.append((clock[0], m))

    def post(m, _inp, _out):
        clock[0] += 1
        calls.setdefault(m, []).append((pending[m].pop(), clock[0]))

    with Hooks() as hooks:
        for m in model.modules():
            hooks.forward_pre(m, pre).forward(m, post)
        yield


@contextlib.contextmanager
def eval_mode(modules: List[nn.Module]) -> Iterator[None]:
    """Put every module in eval mode for the block, then restore each one's own flag."""
    flags = [m.training for m in modules]
    for m in modules:
        m.training = False
    try:
        yield
    finally:
        for m, flag in zip(modules, flags):
            m.training = flag


def capture_output(model: nn.Module, module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The output of `module` during model(x) (the rest of the forward is cut short)."""
    holder: Dict[str, torch.Tensor] = {}

    def hook(_m, _i, out):
        holder["out"] = out
        raise _StopForward

    with Hooks().forward(module, hook):
        try:
            model(x)
        except _StopForward:
            pass
    return holder["out"]


def probe_input(model: nn.Module, image_size: int = 64) -> torch.Tensor:
    """A fixed 2 x 3 x S x S input for tracing, from a private generator (the global RNG is untouched)."""
    param = next(model.parameters())
    noise = torch.randn(2, 3, image_size, image_size, generator=torch.Generator().manual_seed(0))
    return noise.to(device=param.device, dtype=param.dtype)


class _StopForward(Exception):
    """Raised by a hook to end a forward pass once the wanted activation is known."""



# ---- exact top-k selection --------------------------------------------------------------------
def largest_k_mask(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Boolean B x n mask of exactly k largest entries per row; ties go to the lower index.

    torch.topk finds the k-th value; entries above it are taken, and among those equal to it the
    first ones by index (a cumulative count) until k: deterministic on every device.

    Example:
        >>> largest_k_mask(torch.tensor([[0.0, 2.0, 2.0, 1.0]]), 2).int()
        tensor([[0, 1, 1, 0]], dtype=torch.int32)
        >>> largest_k_mask(torch.tensor([[0.0, 0.0, 5.0, 0.0]]), 2).int()
        tensor([[1, 0, 1, 0]], dtype=torch.int32)
    """
    if k <= 0:
        return torch.zeros_like(scores, dtype=torch.bool)
    kth = torch.topk(scores, k, dim=1, sorted=False).values.min(dim=1, keepdim=True).values
    above = scores > kth
    tied = scores == kth
    room = k - above.sum(dim=1, keepdim=True)
    return above | (tied & (tied.cumsum(dim=1) <= room))
