"""The `random` attribution method: a uniform random map per image, the chance level of every
faithfulness number (a method whose maps rank pixels no better than this is not faithful).

The map is drawn from a seed of the image's own pixels (`overfocus.data.seeds`), so an image gets the
same map at every epoch, in every process, shard and device; it ignores the model and the target.

Example:
    >>> import torch
    >>> from overfocus.attribution import attribute
    >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48, 2))
    >>> x = torch.rand(2, 3, 4, 4)
    >>> a = attribute(model, x, torch.tensor([0, 1]), methods="random")["random"]
    >>> tuple(a.shape), torch.equal(a, attribute(model, x, torch.tensor([1, 0]), methods="random")["random"])
    ((2, 4, 4), True)
"""
from __future__ import annotations

import torch

from ..data.seeds import image_seeds, seeded_uniform
from .methods import AttributionRequest, register_method


@register_method("random", "random baseline")
def random_map(req: AttributionRequest) -> torch.Tensor:
    """Uniform [0, 1) values per pixel at input size, seeded by the image (not the model)."""
    # the seed comes from the [0, 1]-looking content of the normalised input: any fixed function
    # of the image works, as long as it is the same at every epoch
    images = req.images.detach().float()
    lo = images.flatten(1).amin(1).view(-1, 1, 1, 1)
    hi = images.flatten(1).amax(1).view(-1, 1, 1, 1)
    unit = (images - lo) / torch.where(hi > lo, hi - lo, torch.ones_like(hi))
    return seeded_uniform(image_seeds(unit), req.size, images.device)
