"""overfocus: watch, measure and counter how CNNs narrow their attention during training."""
__version__ = "0.1.0"
