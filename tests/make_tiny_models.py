"""Train the tiny models that the tests load (tests/data/tiny_models): two nnU-Net v2 ensemble members and an
HD-BET brain-extraction model, each trained on two subjects of the tiny synthetic cohort.

Training them took about five minutes of every CI run, so they are trained once and shipped; `training.json`
records what they learnt from, and tests/test_tiny_models.py fails when the tiny cohort no longer matches. Rerun
after changing the synthetic generator or these helpers:

    PYTHONPATH=toolkit:tests python tests/make_tiny_models.py
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from conftest import TINY_MODELS, TINY_RESOLUTION_MM, TINY_SEED, TINY_SUBJECTS
from nnunet_helpers import TRAIN, train_tiny_models, training_inputs_sha256


def main() -> None:
    import torch

    from bratsflow.synth import SynthParams, generate_cohort

    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory(prefix="tiny-models-") as tmp:
        cohort, trained = Path(tmp) / "cohort", Path(tmp) / "models"
        generate_cohort(cohort, TINY_SUBJECTS, TINY_SEED, SynthParams(resolution_mm=TINY_RESOLUTION_MM))
        folders = train_tiny_models(cohort, trained)
        shutil.rmtree(TINY_MODELS, ignore_errors=True)
        TINY_MODELS.mkdir(parents=True)
        for name, folder in folders.items():
            shutil.copytree(folder, TINY_MODELS / name)
        record = {"cohort": {"subjects": TINY_SUBJECTS, "seed": TINY_SEED, "resolution_mm": TINY_RESOLUTION_MM},
                  "trained_on": list(TRAIN), "inputs_sha256": training_inputs_sha256(cohort),
                  "torch": torch.__version__, "models": sorted(folders)}
        (TINY_MODELS / "training.json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {', '.join(sorted(folders))} and training.json to {TINY_MODELS}")


if __name__ == "__main__":
    main()
