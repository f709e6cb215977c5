"""Training that writes a run directory: the engine of `overfocus train` (engine: `Trainer`), the
epoch-end hooks every writer of a run shares (hooks), your own loop's `Tracker` (tracker) and the
live probe pass with its TensorBoard / W&B writers (live).
"""
