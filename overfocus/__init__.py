"""overfocus: watch, measure and counter how CNNs narrow their attention during training.

The public API is four plain functions and the Tracker class, imported lazily so that
`import overfocus` does not import torch:

    analyze(run_dir, ...)                     overfocus.analysis.runner.analyze
    attribute(model, images, targets=None, methods=("grad_cam",), layer=None, mean=None, std=None)
                                              overfocus.attribution.quick.attribute: maps in [0, 1]
    overlay(image, map)                       overfocus.render.overlay.overlay: H x W x 3 uint8
    normalize_maps(maps)                      overfocus.attribution.normalize_maps
    Tracker(run_dir, data=..., ...)           overfocus.training.tracker.Tracker: your own loop writes a run

`overfocus.attribution.attribute` is the raw form (unscaled maps, explicit targets and layer).
"""
__version__ = "0.1.0"
__all__ = ["Tracker", "analyze", "attribute", "normalize_maps", "overlay"]

_PUBLIC = {"analyze": "overfocus.analysis.runner", "attribute": "overfocus.attribution.quick",
           "normalize_maps": "overfocus.attribution.api", "overlay": "overfocus.render.overlay",
           "Tracker": "overfocus.training.tracker"}


def __getattr__(name: str):
    """The public functions and classes, imported on first use."""
    if name in _PUBLIC:
        import importlib

        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *__all__])
