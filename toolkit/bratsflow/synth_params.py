"""The synthetic cohort's parameters (bratsflow.synth), apart from synth.py, which loads SimpleITK: the command
line's parser reads their defaults without it."""

from __future__ import annotations

from dataclasses import dataclass

from .labels import DEFAULT_CONVENTION


@dataclass(frozen=True)
class SynthParams:
    resolution_mm: float = 1.0
    max_rotation_deg: float = 15.0
    max_shift_mm: float = 20.0
    deformation_spacing_mm: float = 16.0
    deformation_sd_mm: float = 2.5
    noise_fraction: tuple[float, float] = (0.015, 0.035)
    bias_amplitude: float = 0.2
    convention: str = DEFAULT_CONVENTION
