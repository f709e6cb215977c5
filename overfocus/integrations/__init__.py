"""Bridges to other training frameworks; each module imports its framework itself, so the core
install never needs them (`pip install "overfocus[integrations]"` brings lightning, timm, safetensors).

- `overfocus.integrations.lightning`: `OverfocusCallback`, a Lightning callback built on `overfocus.Tracker`.
"""
