"""Checkpoint files of any training: readers (files), state_dict keys (keys), one file -> a model
(load), a folder of files -> epochs (folder), a training's own accuracy log (history).

Checkpoints are untrusted: every read is `torch.load(weights_only=True)` unless the user opts in.
"""
