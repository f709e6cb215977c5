"""`overfocus audit`: one checkpoint -> metrics, findings (ok / warning / problem) and CI gates.

Modules: flow (`audit`: the evaluation through `analysis.core`, the report files), inputs (the
options, the checkpoint and run to audit, preprocessing, images, gate validation: all before any
model runs), findings (thresholds, findings and gates), accumulate (the per-image accumulator,
kept examples and their summary). See docs/audit.md.
"""
from .flow import AuditResult, audit, write_outputs
from .inputs import AuditOptions

__all__ = ["AuditOptions", "AuditResult", "audit", "write_outputs"]
