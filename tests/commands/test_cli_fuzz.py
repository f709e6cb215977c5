"""Generated configurations and data specs through the real `overfocus.cli.main` (hypothesis).

The contract of docs/errors.md for any `--set KEY=VALUE` and any `--data` spec a careless or
hostile user may type: exit 0, or exactly one stderr line of at most ~300 characters with exit 2;
never a bug (exit 3), a traceback or a hang. `train` runs for real up to the point where training
would start: configuration, data, model, layers and the run folder (`Trainer.fit` is replaced, so
an example costs a fraction of a second; the engine's own tests train). Models are capped at a
small parameter count so that an example never builds a billion-parameter network; the cap is the
same refusal `check_model_size` gives at its real limit.
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from overfocus.cli import main

MAX_ERROR_LINE = 330  # "overfocus train: error: " + about 300 characters
KEYS = ["data.image_size", "data.batch_size", "data.num_workers", "data.train_subset", "data.limit", "data.mean",
        "data.std", "data.augment", "data.skip_bad", "model.name", "model.width", "model.small_input",
        "model.num_classes", "model.latent_layer", "model.classifier_dropout", "model.batch_norm", "optim.name",
        "optim.lr", "optim.momentum", "optim.weight_decay", "optim.schedule", "optim.step_size", "optim.gamma",
        "train.epochs", "train.seed", "train.amp", "train.channels_last", "regularizer.name", "regularizer.rho",
        "regularizer.tau", "regularizer.k_override", "regularizer.p", "model.wdth", "data", "a.b.c", "optim.lr.x"]
WORDS = ["nan", ".nan", ".inf", "-.inf", "1e-3", "1e15", "1.0e+15", "[1, 2, 3]", "[0.5, 0.5, nan]", "{a: 1}",
         "&a [1, 2]", "*a", "[" * 60 + "]" * 60, "0x10", "~", "null", "", "true", "resnet18", "vgg9", "cifarnet",
         "sgdrop", "dropout", "block1", "classifier", "features.0", "cosine", "step", "sgd", "adam", "cpu",
         str(2 ** 32), str(2 ** 64), "9" * 5000, "x" * 3000]
TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=30)
VALUES = st.one_of(
    st.integers(-2 ** 70, 2 ** 70).map(str),
    st.integers(-3, 70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(WORDS),
    TEXT,
)
# values that pass the type checks, so that the later checks (ranges, layers, data, model) are reached too
PLAUSIBLE = ["regularizer.name=sgdrop", "regularizer.name=dropout", "regularizer.name=excitation_dropout",
             "model.name=resnet18", "model.name=vgg9", "model.name=convnext_tiny", "model.latent_layer=layer4",
             "model.latent_layer=block3", "model.latent_layer=features", "model.num_classes=3", "model.num_classes=2",
             "data.train_subset=1000", "data.limit=1", "data.augment=true", "optim.schedule=step", "optim.name=sgd",
             "model.small_input=false", "model.batch_norm=false", "model.classifier_dropout=0.5",
             "train.seed=4294967295",
             "data.image_size=8", "data.image_size=4096", "model.width=8", "model.width=0.015625", "data.num_workers=0"]
SETS = st.lists(st.one_of(st.tuples(st.sampled_from(KEYS), VALUES).map(lambda kv: f"{kv[0]}={kv[1]}"),
                          st.sampled_from(PLAUSIBLE)), max_size=4)
OPTION = st.tuples(st.sampled_from(["classes", "train", "test", "seed", "decoy", "limit", "junk", ""]),
                   st.one_of(st.integers(-5, 40).map(str), VALUES))
SPECS = st.one_of(
    st.lists(OPTION, max_size=4).map(lambda opts: "builtin?" + "&".join(f"{k}={v}" for k, v in opts)),
    st.builds(lambda kind, rest: kind + rest, st.sampled_from(["builtin", "bultin", "folder", "coco", "yolo", "voc",
                                                              "cub", "tiny-imagenet", ""]),
              st.one_of(st.just(""), TEXT.map(lambda t: ":" + t), TEXT.map(lambda t: "?" + t))),
)
BASE = ["--set", "data.image_size=32", "--set", "model.width=0.125", "--set", "train.progress=false",
        "--set", "data.batch_size=8", "--epochs", "1"]
SMALL = "builtin?classes=3&train=16&test=8"


@pytest.fixture
def no_training(monkeypatch):
    """Everything up to the first epoch runs; the training itself does not (the engine's tests train)."""
    monkeypatch.setattr("overfocus.training.engine.Trainer.fit", lambda self: self.run.root)
    monkeypatch.setattr("overfocus.models.registry.MAX_PARAMETERS", 5_000_000)


def check_outcome(argv, capsys) -> None:
    out = Path(tempfile.mkdtemp(prefix="overfocus-fuzz-"))
    try:
        code = main([*argv, "--out", str(out / "run")])
    finally:
        shutil.rmtree(out, ignore_errors=True)
    err = capsys.readouterr().err
    assert code in (0, 2), f"exit {code} for {argv}: {err}"
    if code == 2:
        lines = err.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in err, f"{argv}: {err!r}"
        assert len(lines[0]) <= MAX_ERROR_LINE, f"{len(lines[0])} characters for {argv}"


FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
THOROUGH = settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FAST
@given(sets=SETS)
def test_generated_set_values_are_accepted_or_one_line(no_training, capsys, sets):
    check_outcome(["train", "--data", SMALL, *BASE, *[a for s in sets for a in ("--set", s)]], capsys)


@FAST
@given(spec=SPECS)
def test_generated_data_specs_are_accepted_or_one_line(no_training, capsys, spec):
    check_outcome(["train", "--data", spec, *BASE], capsys)


@pytest.mark.slow
@THOROUGH
@given(spec=SPECS, sets=SETS)
def test_generated_specs_and_values_together_thoroughly(no_training, capsys, spec, sets):
    check_outcome(["train", "--data", spec, *BASE, *[a for s in sets for a in ("--set", s)]], capsys)
