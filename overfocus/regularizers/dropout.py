"""Plain dropout at the latent layer (METHODS.md section 2), the paper's baseline."""
from __future__ import annotations

from dataclasses import dataclass

import torch.nn as nn
import torch.nn.functional as F

from ..errors import OverfocusError
from ..models import get_module
from ..models.hooks import Hooks
from .base import REGULARIZERS, Regularizer


@REGULARIZERS.register("dropout")
class LatentDropout(Regularizer):
    """Standard (inverted) dropout on z, in addition to any dropout the classifier has.

    Hyper-parameters: `p` (drop probability, default 0.5; 0 is the identity), `layer` (module
    name; default the model's latent layer). Training only: evaluation sees z unchanged.
    Citation: Srivastava et al., JMLR 2014.
    """

    name = "dropout"

    @dataclass
    class Params:
        p: float = 0.5
        layer: str = ""

    def setup(self, model: nn.Module) -> None:
        if not 0.0 <= self.params.p < 1.0:
            raise OverfocusError(f"regularizer.p={self.params.p}: dropout needs 0 <= p < 1")
        layer = self.params.layer or self.ctx.latent_layer
        self.hooks = Hooks().forward(get_module(model, layer),
                                     lambda mod, _i, out: F.dropout(out, self.params.p, training=mod.training))

    def teardown(self, model: nn.Module) -> None:
        if getattr(self, "hooks", None) is not None:  # teardown without setup (a failed start)
            self.hooks.remove()
