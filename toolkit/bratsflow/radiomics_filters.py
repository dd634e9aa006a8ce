"""Filtered images radiomics can add to the parameter file's image types (config `radiomics.filters`): option name
-> pyradiomics image type. Apart from radiomics.py, which loads pandas: the command line's parser offers them
without it."""

from __future__ import annotations

FILTERS = {"log": "LoG", "wavelet": "Wavelet"}
