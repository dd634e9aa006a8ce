"""A deliberately simple tumour segmentation (intensity thresholds inside the brain), used as the algorithm of
the tiny container member in tests; the same function runs on the host to check the container's output."""

import sys
from pathlib import Path

import nibabel as nib
import numpy as np


def segment(t1c: np.ndarray, flair: np.ndarray) -> np.ndarray:
    brain = flair > 0
    labels = np.zeros(flair.shape, dtype=np.uint8)
    if not brain.any():
        return labels

    def z(image):
        values = image[brain]
        return (image - np.median(values)) / (values.std() + 1e-6)

    oedema = brain & (z(flair) > 1.5)
    enhancing = oedema & (z(t1c) > 1.5)
    labels[oedema] = 2
    labels[enhancing] = 3
    return labels


def main(input_dir: Path, output_dir: Path) -> None:
    for case in sorted(p for p in input_dir.iterdir() if p.is_dir()):
        t1c = nib.load(case / f"{case.name}-t1c.nii.gz")
        flair = nib.load(case / f"{case.name}-t2f.nii.gz")
        labels = segment(t1c.get_fdata(), flair.get_fdata())
        nib.save(nib.Nifti1Image(labels, t1c.affine), output_dir / f"{case.name}.nii.gz")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
