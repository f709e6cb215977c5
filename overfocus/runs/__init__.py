"""The run directory and every fact written into it: the format (rundir), THE run.json builder and
reader (manifest: `run_manifest`, `RunInfo`), the durable end of an epoch (writer: `EpochWriter`),
what a run keeps per epoch (checkpoints), taking an output folder (claim), one writer per folder
(lock), and eval-mode accuracy with THE evaluation loaders (accuracy).
"""
