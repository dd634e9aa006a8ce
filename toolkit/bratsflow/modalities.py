"""The four MRI modalities a subject has, and how messages name them.

Kept apart from cohort.py, which loads pandas and jsonschema to read sample sheets: the steps and the command
line's parser need the names without them.
"""

from __future__ import annotations

MODALITIES = ("t1", "t1c", "t2", "flair")
MODALITY_NAMES = {"t1": "T1", "t1c": "T1c", "t2": "T2", "flair": "FLAIR"}
