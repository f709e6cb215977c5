"""overfocus: watch, measure and counter how CNNs narrow their attention during training.

The public API is three plain functions, imported lazily so that `import overfocus` does not
import torch:

    analyze(run_dir, ...)                     overfocus.analysis.runner.analyze
    attribute(model, images, targets, ...)    overfocus.attribution.attribute
    normalize_maps(maps)                      overfocus.attribution.normalize_maps
"""
__version__ = "0.1.0"
__all__ = ["analyze", "attribute", "normalize_maps"]

_PUBLIC = {"analyze": "overfocus.analysis.runner", "attribute": "overfocus.attribution.api",
           "normalize_maps": "overfocus.attribution.api"}


def __getattr__(name: str):
    """The public functions, imported on first use."""
    if name in _PUBLIC:
        import importlib

        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *__all__])
