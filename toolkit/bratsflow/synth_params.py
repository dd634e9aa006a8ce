"""The synthetic cohort's parameters (bratsflow.synth), apart from synth.py, which loads SimpleITK: the command
line's parser reads their defaults without it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from .labels import DEFAULT_CONVENTION


@dataclass(frozen=True)
class SynthParams:
    # The config blocks it mirrors, each with the block's keys it does not own (tests/test_defaults.py).
    # root is the demo rule's output folder; subjects and seed are synth's options outside SynthParams.
    CONFIG_BLOCKS: ClassVar[dict[str, tuple[str, ...]]] = {"demo": ("root", "subjects", "seed")}

    resolution_mm: float = 1.0
    max_rotation_deg: float = 15.0
    max_shift_mm: float = 20.0
    deformation_spacing_mm: float = 16.0
    deformation_sd_mm: float = 2.5
    noise_fraction: tuple[float, float] = (0.015, 0.035)
    bias_amplitude: float = 0.2
    convention: str = DEFAULT_CONVENTION
