"""The shipped tiny models (tests/data/tiny_models) were trained on the tiny cohort the tests make today."""

import json

from conftest import TINY_MODELS, TINY_RESOLUTION_MM, TINY_SEED, TINY_SUBJECTS
from nnunet_helpers import training_inputs_sha256


def test_shipped_tiny_models_were_trained_on_todays_tiny_cohort(tiny_cohort):
    record = json.loads((TINY_MODELS / "training.json").read_text())
    assert record["cohort"] == {"subjects": TINY_SUBJECTS, "seed": TINY_SEED, "resolution_mm": TINY_RESOLUTION_MM}
    assert record["inputs_sha256"] == training_inputs_sha256(tiny_cohort), (
        "the tiny cohort changed since the tiny models were trained: "
        "retrain them with `PYTHONPATH=toolkit:tests python tests/make_tiny_models.py`")
    assert sorted(p.name for p in TINY_MODELS.iterdir() if p.is_dir()) == record["models"]
