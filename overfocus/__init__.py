"""overfocus: watch, measure and counter how CNNs narrow their attention during training."""
__version__ = "0.1.0"


def __getattr__(name: str):
    """Lazy public API: `overfocus.analyze(run_dir, ...)` without importing torch at `import overfocus`."""
    if name == "analyze":
        import importlib

        return importlib.import_module(".analyze", __name__)  # a callable module: see analyze.py
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
