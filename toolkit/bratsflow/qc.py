"""The report step's data: how much the ensemble agrees, voxel by voxel and per region, and QC flags computed from
the subject's results, each with its reason and threshold (`QCParams`, config `report:`).

Uncertainty: for each nested region (WT, TC, ET) the vote fraction of the members (0: none says tumour, 1: all do)
and its binary entropy in bits (0 unanimous, 1 split evenly); the disagreement map is the largest of the three
entropies. Per region: the members' mean pairwise Dice (1 with one member) and the disputed volume (voxels some
but not all members put in the region).

Where members write probabilities (nnU-Net members, `<member>_probabilities.npz`): the unweighted mean of their
region probabilities, its binary entropy per region, the largest of the three as a map, and per region the volume
where that entropy reaches UNCERTAIN_BITS. Votes see only each member's decision; the mean probability also shows
where members agree but are each unsure.

With a ground truth on the atlas grid (sample sheet column `truth`, the synthetic cohort's), the BraTS metrics
(bratsflow.metrics.evaluate: region-wise and lesion-wise) of each member and of the fused segmentation.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from itertools import combinations
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import nibabel as nib
import numpy as np

from .errors import InputError
from .io import label_data, load_probabilities, probability_kind, require_same_grid
from .labels import (DEFAULT_CONVENTION, NESTING, REGION_DEPTH, REGION_MEMBERS, REGIONS, SUMMARY_REGIONS, region_mask,
                     to_depth)
from .paths import StepFiles

if TYPE_CHECKING:  # pandas loads only when the cohort tables are made
    import pandas as pd


@dataclass(frozen=True)
class QCParams:
    # The config blocks it mirrors, each with the block's keys it does not own (tests/test_defaults.py).
    CONFIG_BLOCKS: ClassVar[dict[str, tuple[str, ...]]] = {"report": ()}

    # A fused whole tumour smaller than this (mL) is flagged as tiny.
    min_tumour_ml: float = 1.0
    # The members' mean pairwise Dice of the whole tumour below this is flagged as low agreement.
    min_agreement: float = 0.8
    # A larger share of the fused whole tumour outside the brain mask is flagged.
    max_outside_brain: float = 0.02
    # The brain mask meeting a face of the grid over more than this (cm²) is flagged: the grid cuts the brain. The
    # MNI152 mask's brainstem meets the inferior face over 0.4 cm² (0.5 cm² on the tests' 3 mm grid).
    max_border_contact_cm2: float = 2.0
    # Registrations that passed co-registration's gates (coregister.min_nmi 1.04, min_nmi_atlas 1.01) but with an
    # NMI below these are flagged as marginal, to be looked at: the worst of 49 correct registrations of the real
    # cases and their degradations reached 1.072 and 1.026 (README, Real scans).
    min_nmi: float = 1.06
    min_nmi_atlas: float = 1.02
    # A brain mask outside this range (mL) is flagged (skull stripping fails a subject only outside its wider
    # skullstrip.volume_range_ml): the real cases' masks hold 1,350 and 1,699 mL, the MNI152-based phantoms' 1,890.
    min_brain_ml: float = 900.0
    max_brain_ml: float = 2000.0
    # Each atlas-space image's NMI with the co-registration's reference inside the brain mask (both divided by their
    # local mean, as co-registration's check does) below this is flagged images_misaligned. Real cases: 1.080–1.188
    # as delivered; their FLAIR moved by 3 mm 1.033–1.035, by 10 mm 1.010–1.013 (README, Report).
    min_image_nmi: float = 1.06


@dataclass(frozen=True)
class ReportImages:
    """What the report's figures are drawn on: skull stripping's and co-registration's atlas-space images (by
    modality), and the atlas of the co-registration (bratsflow.atlas.load_atlas)."""
    stripped: Mapping[str, str | Path]
    coregistered: Mapping[str, str | Path]
    atlas: str = "mni152"
    atlas_mask: str | None = None


def vote_counts(depths: np.ndarray) -> np.ndarray:
    """Members' depth maps (K, ...) -> how many members vote for each region, (3, ...) uint8 in REGIONS order."""
    return np.stack([(depths >= REGION_DEPTH[r]).sum(axis=0, dtype=np.uint8) for r in REGIONS])


def vote_levels(members: int) -> np.ndarray:
    """The vote fractions `members` members can give, by count of votes (0, 1/K, ..., 1), float32."""
    return np.arange(members + 1, dtype=np.float32) / members


def vote_fractions(counts: np.ndarray, members: int) -> np.ndarray:
    """The regions' vote counts (vote_counts of `members` members) -> the share of members voting for each region,
    (3, ...) float32 in REGIONS order."""
    return vote_levels(members)[counts]


def binary_entropy(fraction: np.ndarray) -> np.ndarray:
    """Entropy in bits of a yes/no vote split `fraction` : 1 - `fraction`."""
    p = np.clip(fraction.astype(np.float64), 0.0, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = -(p * np.log2(p)) - ((1 - p) * np.log2(1 - p))
    return np.nan_to_num(terms, nan=0.0).astype(np.float32)


# A region's mean probability is counted uncertain where its binary entropy reaches this many bits, i.e. between
# about 0.11 and 0.89: halfway between a sure voxel (0 bits) and an even split (1 bit), so neither a confident
# member's slight doubt nor only coin flips count.
UNCERTAIN_BITS = 0.5


def mean_region_probabilities(members: Iterable[Mapping[str, np.ndarray]], shape) -> np.ndarray:
    """The unweighted mean of the members' region probabilities, (3, *shape) float32 in REGIONS order: a region
    model's own (keys WT, TC, ET), a label model's sums of its sub-labels (WT = NETC + SNFH + ET, TC = NETC + ET,
    ET), as fusion reads them. `members` may be a generator, so that one member's float16 maps at a time are held."""
    total = np.zeros((len(REGIONS), *shape), np.float32)
    at_depth = {depth: REGIONS.index(region) for region, depth in REGION_DEPTH.items()}
    inner = np.empty(shape, np.float32)
    count = 0
    for member in members:
        if probability_kind(member) == "regions":
            for region_total, region in zip(total, REGIONS):
                np.add(region_total, member[region], out=region_total)
        else:
            # From the inside out (ET, + NETC = TC, + SNFH = WT), so that each float16 map is converted once: the
            # conversion costs eight times the float32 addition.
            inner[...] = 0
            for depth in range(len(NESTING), 0, -1):
                np.add(inner, member[NESTING[depth - 1]], out=inner)
                np.add(total[at_depth[depth]], inner, out=total[at_depth[depth]])
        count += 1
    if count == 0:
        raise ValueError("the mean of no member's probabilities")
    total /= np.float32(count)
    return total


def probability_entropy(mean: np.ndarray, voxel_ml: float) -> tuple[np.ndarray, dict[str, float]]:
    """From the mean region probabilities (3, ...): the largest of the regions' binary entropies (bits) per voxel,
    and per region the volume (mL) where its entropy reaches UNCERTAIN_BITS."""
    largest, uncertain_ml = np.zeros(mean.shape[1:], np.float32), {}
    flat = largest.reshape(-1)
    for region, probability in zip(REGIONS, mean):
        # The entropy is 0 at 0 and 1: computed only in between it is the same, and most of a head is exactly 0
        # in nnU-Net's maps (outside its crop), so several times faster.
        where = np.flatnonzero((probability > 0) & (probability < 1))
        entropy = binary_entropy(probability.reshape(-1)[where])
        uncertain_ml[region] = round(float(np.count_nonzero(entropy >= UNCERTAIN_BITS)) * voxel_ml, 3)
        flat[where] = np.maximum(flat[where], entropy)
    return largest, uncertain_ml


def disagreement_map(counts: np.ndarray, members: int) -> np.ndarray:
    """The largest binary entropy of the regions' votes (vote_counts of `members` members), float32. Looked up by
    count: K members give K + 1 entropies, and their float64 logarithms voxel by voxel took 2 s at 1 mm."""
    return binary_entropy(vote_levels(members))[counts].max(axis=0)


def ensemble_maps(depths: np.ndarray, box: tuple[slice, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Members' depth maps (K, ...) -> their vote fractions (..., 3 regions) and disagreement map, float32 in
    Fortran order (as written). Computed in the `box` around the voxels some member puts in the tumour
    (tumour_box): elsewhere every fraction and entropy is 0, and at 1 mm the box is a few per cent of the grid."""
    votes = np.zeros((*depths.shape[1:], len(REGIONS)), np.float32, order="F")
    disagreement = np.zeros(depths.shape[1:], np.float32, order="F")
    counts = vote_counts(depths[(slice(None), *box)])
    votes[box] = np.moveaxis(vote_fractions(counts, len(depths)), 0, -1)
    disagreement[box] = disagreement_map(counts, len(depths))
    return votes, disagreement


def tumour_box(depths: np.ndarray) -> tuple[slice, ...]:
    """The smallest box of the grid holding every voxel some member puts in the tumour (empty without any)."""
    tumour = depths.any(axis=0)
    box = []
    for axis in range(tumour.ndim):
        hit = np.flatnonzero(tumour.any(axis=tuple(a for a in range(tumour.ndim) if a != axis)))
        box.append(slice(int(hit[0]), int(hit[-1]) + 1) if hit.size else slice(0, 0))
    return tuple(box)


def agreement(depths: np.ndarray, voxel_ml: float) -> dict[str, dict[str, float]]:
    """Per region: the members' mean pairwise Dice (both empty count 1) and the disputed volume in mL."""
    out = {}
    for region in REGIONS:
        masks = depths >= REGION_DEPTH[region]
        sizes = [int(np.count_nonzero(mask)) for mask in masks]
        dices = []
        for a, b in combinations(range(len(masks)), 2):
            size = sizes[a] + sizes[b]
            dices.append(1.0 if size == 0 else 2.0 * int(np.count_nonzero(masks[a] & masks[b])) / size)
        votes = masks.sum(axis=0, dtype=np.uint8)
        disputed = int(np.count_nonzero((votes > 0) & (votes < len(masks))))
        out[region] = {"mean_pairwise_dice": round(float(np.mean(dices)) if dices else 1.0, 4),
                       "disputed_ml": round(disputed * voxel_ml, 3)}
    return out


def region_volumes(labels: np.ndarray, voxel_ml: float, convention: str) -> dict[str, float]:
    # Voxels counted once per sub-region (its depth), not once per region with a mask of its label values.
    depth = to_depth(labels, convention)
    voxels = {name: int(np.count_nonzero(depth == index)) for index, name in enumerate(NESTING, start=1)}
    return {region: round(float(sum(voxels[name] for name in REGION_MEMBERS.get(region, (region,)))) * voxel_ml, 3)
            for region in SUMMARY_REGIONS}


def border_contact_cm2(mask: np.ndarray, spacing_mm) -> float:
    """The largest area (cm²) over which the mask meets one face of its grid."""
    # Faces as views: np.take copied the whole (Fortran-ordered) mask for each face, 0.16 s at 1 mm.
    return max(float(np.count_nonzero(mask[(slice(None),) * axis + (index,)]))
               * float(np.prod(np.delete(spacing_mm, axis))) / 100 for axis in range(mask.ndim) for index in (0, -1))


def flags(volumes_ml: dict[str, float], agreement_by_region: dict, members: int, outside_brain: float,
          border_contact: float, params: QCParams) -> list[dict[str, str]]:
    """The QC flags that fire, each {"flag", "reason"}; an empty list is a clean subject."""
    raised = []

    def flag(name: str, reason: str) -> None:
        raised.append({"flag": name, "reason": reason})

    whole = volumes_ml["WT"]
    if whole == 0:
        flag("empty_segmentation", "the fused segmentation holds no tumour")
    elif whole < params.min_tumour_ml:
        flag("tiny_segmentation", f"whole tumour {whole:g} mL < report.min_tumour_ml {params.min_tumour_ml:g}")
    if whole > 0 and volumes_ml["ET"] == 0:
        flag("no_enhancing_tumour", "a tumour without enhancing tumour (ET 0 mL)")
    dice = agreement_by_region["WT"]["mean_pairwise_dice"]
    if members > 1 and dice < params.min_agreement:
        flag("low_agreement", f"members' mean pairwise Dice of the whole tumour {dice:.3f} < report.min_agreement "
                              f"{params.min_agreement:g}")
    if outside_brain > params.max_outside_brain:
        flag("tumour_outside_brain", f"{100 * outside_brain:.1f} % of the whole tumour lies outside the brain mask "
                                     f"(report.max_outside_brain {100 * params.max_outside_brain:g} %)")
    if border_contact > params.max_border_contact_cm2:
        flag("mask_at_border", f"the brain mask meets a face of the image over {border_contact:.1f} cm² "
                               f"(report.max_border_contact_cm2 {params.max_border_contact_cm2:g}): part of the "
                               f"brain may be cut off")
    return raised


def record_flags(coregister: dict | None, skullstrip: dict | None, params: QCParams) -> list[dict[str, str]]:
    """Flags from the earlier steps' records: registrations that passed their gates narrowly or only at a second
    attempt, a brain volume outside the usual range, brain tissue cut off by the acquired field of view."""
    raised = []
    if coregister is not None:
        marginal, retried = [], []
        for modality, registration in coregister["registrations"].items():
            if registration["method"] != "registered":
                continue
            target = registration["fixed"]
            floor, key = (params.min_nmi_atlas, "min_nmi_atlas") if target == "atlas" else (params.min_nmi, "min_nmi")
            if registration["nmi_after"] < floor:
                marginal.append(f"{modality} → {target} NMI {registration['nmi_after']:.3f} < report.{key} {floor:g}")
            if len(registration["attempts"]) > 1:
                first = "; ".join(registration["attempts"][0]["failed"])
                retried.append(f"{modality} → {target} (first attempt: {first})")
        if marginal:
            raised.append({"flag": "registration_marginal", "reason": "; ".join(marginal)})
        if retried:
            raised.append({"flag": "registration_retried", "reason": "passed at a later attempt: " + "; ".join(retried)})
    if skullstrip is not None:
        volume = skullstrip["brain_volume_ml"]
        if not params.min_brain_ml <= volume <= params.max_brain_ml:
            raised.append({"flag": "brain_volume", "reason": f"brain mask {volume:g} mL outside report.min_brain_ml–"
                                                             f"max_brain_ml {params.min_brain_ml:g}–{params.max_brain_ml:g}"})
        clipped = skullstrip.get("field_of_view", {}).get("clipped_ml", 0)
        if clipped:
            raised.append({"flag": "brain_cut_by_field_of_view", "reason": f"{clipped:g} mL of the brain mask lie outside "
                                                                         "the acquired field of view and were removed"})
    return raised


# The alignment check samples the images about this often (mm): on the real cases at 1 mm, every second voxel gives
# the same NMI to 0.001 in a fifteenth of the time (the 10 mm local mean dominates).
ALIGNMENT_SAMPLING_MM = 2.0


def images_nmi(images: Mapping[str, np.ndarray], reference: str, brain: np.ndarray, spacing_mm) -> dict[str, float]:
    """Each image's normalised mutual information with `reference` inside the brain, both divided by their local
    mean (bratsflow.alignment.flatten: bias fields do not count) — how well the delivered images line up."""
    from .alignment import flatten, flatten_weight, normalized_mutual_information

    strides = [max(1, round(ALIGNMENT_SAMPLING_MM / float(s))) for s in spacing_mm]
    sample = tuple(slice(None, None, stride) for stride in strides)
    spacing = [float(s) * stride for s, stride in zip(spacing_mm, strides)]
    inside = brain[sample]
    weight = flatten_weight(inside, spacing)

    def flat(data: np.ndarray) -> np.ndarray:
        return flatten(data[sample], inside, spacing, weight=weight)[inside]

    fixed = flat(images[reference])
    return {m: round(normalized_mutual_information(fixed, flat(data)), 4) for m, data in images.items() if m != reference}


def alignment_flags(image_nmi: Mapping[str, float], reference: str, params: QCParams) -> list[dict[str, str]]:
    low = [f"{m} {value:.3f}" for m, value in image_nmi.items() if value < params.min_image_nmi]
    if not low:
        return []
    return [{"flag": "images_misaligned", "reason": f"NMI with {reference} inside the brain below report.min_image_nmi "
                                                    f"{params.min_image_nmi:g}: {', '.join(low)}"}]


def report_subject(segmentation: str | Path, members: dict[str, str | Path], brain_mask: str | Path,
                   out_dir: str | Path, *, convention: str = DEFAULT_CONVENTION, params: QCParams = QCParams(),
                   images: ReportImages | None = None, subject: str | None = None,
                   missing_modalities: Sequence[str] = (), coregister_record: str | Path | None = None,
                   skullstrip_record: str | Path | None = None, truth: str | Path | None = None,
                   probabilities: Mapping[str, str | Path] | None = None) -> dict:
    """Write the subject's vote fractions, disagreement map and record (volumes, agreement, flags), and with
    `images` the QC figures (paths.FIGURES); `missing_modalities`: what the subject ran without
    (missing_modalities: run-available), recorded. With the co-registration's and skull stripping's records,
    their flags too (record_flags). With a `truth` label map on the fused segmentation's grid, the BraTS metrics
    of the fused segmentation and of each member (truth_metrics). With `probabilities` (member name -> its
    probability file, for the members that write one), the entropy of their mean (`_probability_entropy`)."""
    from .figures import PALETTE, SubjectData, report_figures
    from .step import StepRun, read_record

    files = StepFiles(out_dir, "report")
    run = StepRun("report", subject, files.record, parameters={"convention": convention, **asdict(params)})
    if not members:
        raise InputError("the report needs the ensemble's member label maps", subject=subject)
    if "fused" in members:
        raise InputError("a member named 'fused' cannot be told from the fused segmentation in the report: rename "
                         "the member (segment.members)", subject=subject)
    unknown = sorted(set(probabilities or ()) - set(members))
    if unknown:
        raise InputError(f"probability files of {unknown}, which are not among the members {list(members)}",
                         subject=subject)
    with run.phase("load"):
        fused, fused_img, _ = label_data(segmentation, subject=subject)
        fused = np.asarray(fused)
        to_depth(fused, convention, subject=subject, file=segmentation)
        member_labels = {}
        for name, path in members.items():
            data, img, _ = label_data(path, subject=subject)
            require_same_grid(img, fused_img, "the fused segmentation's grid", why=f"member {name}",
                              subject=subject, file=path)
            member_labels[name] = np.asarray(data)
        depths = np.stack([to_depth(data, convention, subject=subject, file=members[name])
                           for name, data in member_labels.items()])
        brain_data, brain_img, _ = label_data(brain_mask, subject=subject)
        require_same_grid(brain_img, fused_img, "the fused segmentation's grid", why="the brain mask",
                          subject=subject, file=brain_mask)
        brain = np.asarray(brain_data) > 0
        truth_labels = None if truth is None else _truth_labels(truth, fused_img, convention, subject)
    run.add_inputs({"segmentation": segmentation, "brain_mask": brain_mask,
                    **({"truth": truth} if truth is not None else {}),
                    **{f"member_{name}": path for name, path in members.items()},
                    **{f"{name}_record": path for name, path in (("coregister", coregister_record),
                                                                 ("skullstrip", skullstrip_record)) if path}})
    voxel_ml = float(np.prod(fused_img.header.get_zooms()[:3])) / 1000
    with run.phase("uncertainty"):
        box = tumour_box(depths)
        votes, disagreement = ensemble_maps(depths, box)
        # Outside the members' tumours no voxel counts towards a Dice or a disputed volume.
        by_region = agreement(depths[(slice(None), *box)], voxel_ml)
    volumes = region_volumes(fused, voxel_ml, convention)
    tumour = region_mask(fused, "WT", convention)
    outside = float(np.count_nonzero(tumour & ~brain)) / max(int(np.count_nonzero(tumour)), 1)
    contact = border_contact_cm2(brain, fused_img.header.get_zooms()[:3])
    earlier = {name: read_record(path, subject) for name, path in
               (("coregister", coregister_record), ("skullstrip", skullstrip_record)) if path is not None}
    raised = flags(volumes, by_region, len(members), outside, contact, params) + \
        record_flags(earlier.get("coregister"), earlier.get("skullstrip"), params)
    with run.phase("write"):
        run.save_image("votes", _float_image(votes, fused_img), files.votes)
        run.save_image("disagreement", _float_image(disagreement, fused_img), files.disagreement)
    by_probability = {}
    if probabilities is not None:
        with run.phase("probability entropy"):
            by_probability = _probability_entropy(run, probabilities, list(members), fused_img, voxel_ml,
                                                  files.probability_entropy)
    scores = {}
    if truth_labels is not None:
        with run.phase("metrics"):
            scores = truth_metrics({"fused": fused, **member_labels}, truth_labels, convention,
                                   fused_img.header.get_zooms()[:3])
    image_nmi = {}
    if images is not None:
        with run.phase("load images"):
            stripped, coregistered = _load_images(run, images, fused_img)
        reference = earlier["coregister"]["centre"] if "coregister" in earlier else \
            "t1c" if "t1c" in coregistered else next(iter(coregistered))
        with run.phase("alignment"):
            image_nmi = images_nmi(coregistered, reference, brain, fused_img.header.get_zooms()[:3])
        raised += alignment_flags(image_nmi, reference, params)
        with run.phase("figures"):
            data = SubjectData(fused_img.affine, stripped, coregistered, brain, _atlas_brain(run, images, fused_img),
                               fused, member_labels, disagreement, convention, run.subject or "", reference)
            for name, figure in report_figures(data):
                run.save_figure(name, figure, files.figure(name), PALETTE)
    return run.finish(
        members=list(members),
        missing_modalities=list(missing_modalities),
        volumes_ml={**volumes, "brain": round(float(np.count_nonzero(brain)) * voxel_ml, 2)},
        agreement=by_region,
        tumour_outside_brain=round(outside, 4),
        mask_border_contact_cm2=round(contact, 2),
        image_nmi=image_nmi,
        metrics=scores,
        flags=raised,
        maps={"votes": f"4-D, one volume per region in the order {list(REGIONS)}: the members' vote fraction",
              "disagreement": "the largest binary entropy (bits) of the three regions' votes",
              **({"probability_entropy": "the largest binary entropy (bits) of the three regions' mean probability "
                                        "over the members that write probabilities; NaN where none did"}
                 if probabilities is not None else {})},
        **({"probability_entropy": by_probability} if probabilities is not None else {}),
    )


def _probability_entropy(run, probabilities: Mapping[str, str | Path], members: list[str], grid: nib.Nifti1Image,
                         voxel_ml: float, path: Path) -> dict:
    """Write the entropy map of the mean probability of the members in `probabilities` and return its record: the
    members that contributed, those without probabilities, and the uncertain volume per region. With no member's
    probabilities (under missing_modalities: run-available every member that writes them may have been skipped)
    the map the workflow expects is still written, NaN: unknown, not certain."""
    contributing = [name for name in members if name in probabilities]
    run.add_inputs({f"probabilities_{name}": probabilities[name] for name in contributing})

    def loaded():
        for name in contributing:
            member = load_probabilities(probabilities[name], subject=run.subject)
            shape = next(iter(member.values())).shape
            if shape != grid.shape[:3]:
                raise InputError(f"member {name}'s probability maps have shape {shape}, the fused segmentation "
                                 f"{grid.shape[:3]}", subject=run.subject, file=probabilities[name])
            yield member

    uncertain_ml = None
    if contributing:
        entropy, uncertain_ml = probability_entropy(mean_region_probabilities(loaded(), grid.shape[:3]), voxel_ml)
    else:
        entropy = np.full(grid.shape[:3], np.nan, np.float32)
    run.save_image("probability_entropy", _float_image(entropy, grid), path)
    return {"members": contributing, "without_probabilities": [name for name in members if name not in probabilities],
            "uncertain_bits": UNCERTAIN_BITS, "uncertain_ml": uncertain_ml}


def _truth_labels(truth: str | Path, grid: nib.Nifti1Image, convention: str, subject: str | None) -> np.ndarray:
    """The truth's labels, checked to be valid in `convention` and to lie on the fused segmentation's grid."""
    data, img, _ = label_data(truth, subject=subject)
    require_same_grid(img, grid, "the fused segmentation's grid", why="the ground truth must lie on the atlas grid "
                      "(truth in native space is not supported yet)", subject=subject, file=truth)
    data = np.asarray(data)
    to_depth(data, convention, subject=subject, file=truth)
    return data


def truth_metrics(segmentations: Mapping[str, np.ndarray], truth: np.ndarray, convention: str,
                  spacing_mm) -> dict[str, dict[str, dict[str, float | int]]]:
    """Segmentation name -> region -> its BraTS metrics against `truth` (bratsflow.metrics.evaluate: Dice, HD95,
    sensitivity, specificity, volumes and the lesion-wise scores)."""
    from .metrics import evaluate

    out = {}
    for name, labels in segmentations.items():
        table, _ = evaluate(labels, truth, convention, spacing_mm)
        out[name] = {row.pop("region"): {k: _rounded(v) for k, v in row.items()}
                     for row in table.to_dict("records")}
    return out


def _rounded(value) -> float | int:
    """A table value as JSON: counts stay integers, measures get 4 decimals."""
    return int(value) if isinstance(value, (int, np.integer)) else round(float(value), 4)


def _load_images(run, images: ReportImages, grid: nib.Nifti1Image) -> tuple[dict[str, np.ndarray], ...]:
    """The skull-stripped and co-registered atlas-space images, checked to lie on the fused segmentation's grid."""
    from .io import check_image, load_image

    def volumes(paths: Mapping[str, str | Path], kind: str) -> dict[str, np.ndarray]:
        out = {}
        for modality, path in paths.items():
            img = check_image(load_image(path), subject=run.subject, file=path, spacing_range_mm=None)
            require_same_grid(img, grid, "the fused segmentation's grid", why=f"the {kind} {modality} image",
                              subject=run.subject, file=path)
            out[modality] = np.asarray(img.dataobj, dtype=np.float32)
        return out

    run.add_inputs({**{f"stripped_{m}": p for m, p in images.stripped.items()},
                    **{f"coregistered_{m}": p for m, p in images.coregistered.items()}})
    return volumes(images.stripped, "skull-stripped"), volumes(images.coregistered, "co-registered")


def _atlas_brain(run, images: ReportImages, grid: nib.Nifti1Image) -> np.ndarray:
    from .atlas import load_atlas

    atlas = load_atlas(images.atlas, images.atlas_mask)
    require_same_grid(atlas.image, grid, f"the grid of atlas {atlas.name}", why="the report outlines the atlas brain "
                      "on the atlas-space images", subject=run.subject)
    run.add_atlas(atlas.name, source=atlas.source, sha256=atlas.sha256)
    # A template without a mask is a brain-only one (the BraTS SRI24): its support is the brain.
    return np.asarray((atlas.image if atlas.mask is None else atlas.mask).dataobj) > 0


def _float_image(data: np.ndarray, reference: nib.Nifti1Image) -> nib.Nifti1Image:
    # NIfTI stores voxels in Fortran order: nibabel writes such an array in one piece, any other in slow chunks
    # (the same bytes; the 1 mm maps' write 0.9 -> 0.6 s).
    img = nib.Nifti1Image(np.asarray(data, dtype=np.float32, order="F"), reference.affine)
    img.set_data_dtype(np.float32)
    img.header.set_xyzt_units("mm")
    return img


def cohort_tables(records: list[str | Path]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """From the subjects' report records: volumes (one row per subject, mL of each region and of the brain) and
    QC (one row per subject: flags, agreement, disputed volume, the fused segmentation's Dice against the truth
    where a subject has one, the volume where the members' mean probability is uncertain where members write
    probabilities, tumour outside the brain)."""
    import pandas as pd

    from .step import read_record

    volumes, qc = [], []
    for path in records:
        record = read_record(path)
        subject = record["subject"]
        volumes.append({"subject": subject, **{f"{k}_ml": v for k, v in record["volumes_ml"].items()},
                        "flags": len(record["flags"])})
        qc.append({"subject": subject, "flags": ";".join(f["flag"] for f in record["flags"]),
                   "members": len(record["members"]),
                   # Records of reports written before the missing-modality policy lack the key.
                   "missing_modalities": ",".join(record.get("missing_modalities", [])),
                   **{f"{region}_mean_pairwise_dice": record["agreement"][region]["mean_pairwise_dice"]
                      for region in REGIONS},
                   **{f"{region}_disputed_ml": record["agreement"][region]["disputed_ml"] for region in REGIONS},
                   **{f"{region}_dice_truth": scores["dice"]
                      for region, scores in record.get("metrics", {}).get("fused", {}).items()},
                   **{f"{region}_uncertain_ml": volume for region, volume in
                      ((record.get("probability_entropy") or {}).get("uncertain_ml") or {}).items()},
                   "tumour_outside_brain": record["tumour_outside_brain"],
                   "mask_border_contact_cm2": record["mask_border_contact_cm2"],
                   "reasons": " | ".join(f["reason"] for f in record["flags"])})
    return pd.DataFrame(volumes), pd.DataFrame(qc)
