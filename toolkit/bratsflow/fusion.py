"""Label fusion of an ensemble's segmentations: voting, SIMPLE, STAPLE and probability averaging, region-aware.

`fuse(segmentations, method, weights, mode, convention, probabilities)` returns one label map.

Modes
-----
- ``regions`` (default): the nested regions WT ⊃ TC ⊃ ET are fused as three binary problems and the label map
  is rebuilt by painting WT, then TC, then ET, each over the previous one (nnU-Net's ``regions_class_order``):
  a voxel is ET where ET was fused, else NETC where TC was fused, else SNFH where WT was fused, else
  background. The output therefore always respects the hierarchy, and a voxel that the majority calls tumour
  stays tumour however the members split its sub-label (label-wise voting would empty it).
- ``labels``: background and the three sub-labels compete directly (a plurality vote over four classes).

Methods
-------
- ``majority``: unweighted vote. ``weighted``: the same vote with one positive weight per member.
- ``simple``: SIMPLE (Langerak et al., IEEE TMI 2010), per region (or over the labels in label mode): start
  from the (weighted) vote of all members; then repeat: score every member against the current estimate
  (Dice in region mode; in label mode the Dice pooled over the three tumour labels), drop the members whose
  score is below ``mean - alpha * std`` of the scores of the members still in, re-vote with the remaining
  members weighted by ``weight * score ** weight_power``, until neither the members nor the estimate change
  (or ``max_iterations``). Dropped members stay out for good. Dropping never leaves fewer than
  ``min_members`` members: if it would, members go in order of increasing score, whole groups of equal score
  at a time, as long as enough remain.
- ``staple``: STAPLE through SimpleITK over the whole image grid: ``STAPLEImageFilter`` per region (fused where
  the posterior is > 0.5), ``MultiLabelSTAPLEImageFilter`` in label mode. STAPLE takes no member weights. Like
  every ITK result, it is reproducible for a given thread count (``bratsflow --threads``). In region mode a
  voxel that no member calls tumour stays background.
- ``mean``: the (weighted) mean of the members' probability maps, then per-region threshold > 0.5 painted in
  hierarchy order (region mode) or argmax (label mode), like nnU-Net's own ensembling. Computed only where
  some member gives a tumour channel more than 1/8 (or, in label mode, background less than 1/8): elsewhere
  the result is background whatever the weights, so skipping those voxels changes nothing.

Tie rules (exact and deterministic; member order does not matter to majority, nor to simple without weights)
--------------------------------------------------------------------------------------------------------------
- Region mode: a region is fused where its (weighted) votes are *strictly more* than half of the total weight
  of the voting members; an exact tie (e.g. 3 of 6 members) leaves the voxel outside that region. For
  ``mean`` the same rule reads: mean probability strictly above 0.5. Weighted sums are compared with a
  tolerance of 1e-9 times the total weight, so 0.1 + 0.2 ties with 0.3 as it does on paper.
- Label mode: the class with the most (weighted) votes wins; among tied classes the *outermost* one wins, in
  the order background, SNFH, NETC, ET. A binary problem therefore resolves exactly like region mode
  (a tie never promotes a voxel into a region). For ``mean`` the first maximum in that order wins.
- ``staple``, label mode: voxels that ``MultiLabelSTAPLEImageFilter`` leaves undecided take the label of the
  unweighted label-mode vote (and its tie rule). Region mode: a posterior of exactly 0.5 stays outside.
- A region on which all members agree everywhere is taken as it is (STAPLE is not run on it).

Agreement with SimpleITK's ``LabelVotingImageFilter``: identical wherever that filter is decided; where it
is undecided (a tie) our rule picks the outermost tied class, so with undecided label 0 it matches every
binary (region) vote exactly.

Probability files (method ``mean``)
-----------------------------------
One file per member, ``<member>_probabilities.npz`` next to ``<member>.nii.gz`` (``numpy.savez_compressed``),
written and read by ``bratsflow.io.save_probabilities`` / ``load_probabilities``: one float16 array per key,
each of the member label map's shape and voxel order (the NIfTI data array's i, j, k), values in [0, 1].
Region models store their sigmoid outputs under ``WT``, ``TC``, ``ET``; label models their softmax under
``background``, ``NETC``, ``SNFH``, ``ET``. Keys are names, not label values, so a file does not depend on the
label convention. Members of both kinds may be mixed: in region mode a label model's region probability is
the sum of its sub-label probabilities; in label mode a region model's label probabilities are taken as
background 1 - WT, SNFH WT - TC, NETC TC - ET, ET ET (differences clipped at 0).

Inputs are integer label maps (numpy arrays, NIfTI images or paths); all members must share the shape and,
for images, the affine (within io.GRID_TOLERANCE_MM). A value outside the label convention is an error. The output keeps
the first image's geometry (or is a plain array when every member is an array) and is uint8.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar, Mapping, Sequence

import nibabel as nib
import numpy as np

from .availability import no_member_message
from .errors import ConfigError, InputError
from .io import (check_probabilities, grid_mismatch, label_data, label_image_like, load_image, load_probabilities,
                 probability_kind, same_grid)
from .labels import (BACKGROUND, DEFAULT_CONVENTION, NESTING, REGION_DEPTH, REGIONS, from_depth, get_convention,
                     nested_convention, to_depth)

log = logging.getLogger(__name__)

METHODS: tuple[str, ...] = ("majority", "weighted", "simple", "staple", "mean")
MODES: tuple[str, ...] = ("regions", "labels")
# What `fuse` does when not told (config `fuse.method`, `fuse.mode`).
DEFAULT_METHOD = "majority"
DEFAULT_MODE = "regions"
# The config keys whose defaults these are (tests/test_defaults.py checks config.yaml and the schema agree).
CONFIG_DEFAULTS = {"fuse.method": DEFAULT_METHOD, "fuse.mode": DEFAULT_MODE}
# Methods that take member weights (majority and staple take none).
WEIGHTED_METHODS: tuple[str, ...] = ("weighted", "simple", "mean")
TIE_TOLERANCE = 1e-9
N_CLASSES = len(NESTING) + 1  # background + sub-regions, indexed by depth
# Words (8 voxels) per block of the tumour scan: 512 KiB of each member, so a block's OR stays in cache.
BLOCK_WORDS = 1 << 16
# Regions by depth (WT 1, TC 2, ET 3), the order in which region mode paints them.
REGIONS_BY_DEPTH: tuple[str, ...] = tuple(sorted(REGIONS, key=REGION_DEPTH.get))


@dataclass(frozen=True)
class SimpleParams:
    """SIMPLE's parameters (config `fuse.simple`)."""

    # The config blocks it mirrors, each with the block's keys it does not own (tests/test_defaults.py).
    CONFIG_BLOCKS: ClassVar[dict[str, tuple[str, ...]]] = {"fuse.simple": ()}

    alpha: float = 1.0
    max_iterations: int = 25
    min_members: int = 3
    weight_power: float = 1.0

    def __post_init__(self):
        if not np.isfinite(self.alpha) or self.alpha < 0:
            raise ConfigError(f"SIMPLE alpha must be a number >= 0, got {self.alpha}")
        if self.max_iterations < 1 or self.min_members < 1:
            raise ConfigError("SIMPLE max_iterations and min_members must be >= 1")
        if not np.isfinite(self.weight_power) or self.weight_power < 0:
            raise ConfigError(f"SIMPLE weight_power must be a number >= 0, got {self.weight_power}")


@dataclass
class _Ensemble:
    """The members at the voxels that some member calls tumour (everywhere else all agree on background), taken
    in whole words of 8 voxels of the volume's memory: `members[k]` holds member k's depths at the 8 voxels of
    each of the `words`, so some of its columns are background in every member."""

    members: np.ndarray                # (K, 8 * len(words)) uint8 depths
    words: np.ndarray                  # indices of the words (8 voxels in memory order) where some member has tumour
    order: str                         # memory order of the volume, "C" or "F"
    names: list[str]
    shape: tuple[int, ...]
    reference: nib.Nifti1Image | None  # geometry of the output
    tumour: np.ndarray                 # (8 * len(words),) bool: some member calls the voxel tumour
    unanimous_voxels: int              # tumour voxels on which all members agree

    def full(self, values: np.ndarray) -> np.ndarray:
        """Values at the words' voxels (as a row of `members`) placed on the full grid, background elsewhere."""
        size = int(np.prod(self.shape))
        out = np.zeros(-(-size // 8), dtype=np.uint64)
        out[self.words] = np.ascontiguousarray(values, dtype=np.uint8).view(np.uint64)
        return out.view(np.uint8)[:size].reshape(self.shape, order=self.order)

    def crop(self, volume: np.ndarray) -> np.ndarray:
        """A full-grid volume's values at the words' voxels (uint8 or bool, the inverse of `full`)."""
        return _words(volume.view(np.uint8), self.order)[self.words].view(volume.dtype)


def _words(volume: np.ndarray, order: str) -> np.ndarray:
    """A one-byte volume as words of 8 voxels (uint64) in the given memory order, padded with background to a
    whole word: a view when the volume is contiguous in that order and fills whole words, else a copy."""
    flat = volume.reshape(-1, order=order)
    if flat.size % 8:
        flat = np.concatenate([flat, np.zeros(8 - flat.size % 8, dtype=flat.dtype)])
    return flat.view(np.uint64)


# ---------------------------------------------------------------------------------------------- inputs

def _default_name(segmentation: Any, index: int) -> str:
    filename = segmentation if isinstance(segmentation, (str, Path)) else None
    if isinstance(segmentation, nib.spatialimages.SpatialImage):
        filename = segmentation.get_filename()
    if filename:
        name = Path(filename).name
        for suffix in (".nii.gz", ".nii"):
            if name.endswith(suffix):
                return name[: -len(suffix)]
        return name
    return f"#{index + 1}"


def _member_error(name: str, reason: str, subject: str | None, file: Any = None) -> InputError:
    return InputError(f"member {name}: {reason}", subject=subject, file=file)


def _member_depths(name: str, labels: np.ndarray, convention: str, subject: str | None, file: Any) -> np.ndarray:
    try:
        return to_depth(labels, convention)
    except InputError as exc:
        raise _member_error(name, exc.reason, subject, file) from None


def _prepare(segmentations: Sequence, names: Sequence[str] | None, convention: str,
             subject: str | None) -> _Ensemble:
    nested_convention(convention)
    if len(segmentations) == 0:
        raise InputError("nothing to fuse: no segmentations given", subject=subject)
    if names is None:
        names = [_default_name(seg, i) for i, seg in enumerate(segmentations)]
    names = [str(n) for n in names]
    if len(names) != len(segmentations):
        raise ConfigError(f"{len(names)} member names for {len(segmentations)} segmentations", subject=subject)
    if len(set(names)) != len(names):
        raise ConfigError(f"member names are not unique: {names}", subject=subject)
    arrays, reference, reference_name, shape, files = [], None, None, None, []
    for name, seg in zip(names, segmentations):
        data, image, file = label_data(seg, subject=subject)
        if image is not None:
            if reference is None:
                reference, reference_name = image, name
            elif data.shape[:3] == reference.shape[:3] and not same_grid(image, reference):
                raise _member_error(name, f"not on member {reference_name}'s grid ({grid_mismatch(image, reference)})",
                                    subject, file)
        if data.dtype.kind not in "buif":
            raise _member_error(name, f"not a label map (dtype {data.dtype})", subject, file)
        if shape is None:
            shape = data.shape
        elif data.shape != shape:
            raise _member_error(name, f"shape {data.shape} differs from member {names[0]}'s {shape}", subject, file)
        arrays.append(data)
        files.append(file)
    if reference is not None and len(shape) != 3:
        raise InputError(f"expected 3-D label maps, got shape {shape}", subject=subject)
    for k, (name, data, file) in enumerate(zip(names, arrays, files)):
        if data.dtype != np.uint8:  # rare (label maps are written as uint8): check the whole map
            arrays[k] = from_depth(_member_depths(name, data, convention, subject, file), convention)
    # Labels are checked and mapped only in the words where some member has tumour (elsewhere every value is 0,
    # which every convention allows). NIfTI data is usually Fortran-ordered: work in the first member's order.
    first = arrays[0]
    order = "F" if first.flags.f_contiguous and not first.flags.c_contiguous else "C"
    hit, gathered = _tumour_words([_words(data, order) for data in arrays])
    # A voxel is unanimous where the AND of the members' labels equals their OR.
    anyone = np.bitwise_or.reduce(gathered, axis=0)
    agree = (np.bitwise_and.reduce(gathered, axis=0) ^ anyone).view(np.uint8) == 0
    anyone = anyone.view(np.uint8) != 0
    members = np.empty((len(arrays), 8 * hit.size), dtype=np.uint8)
    for name, row, labels, file in zip(names, members, gathered, files):
        row[:] = _member_depths(name, labels.view(np.uint8), convention, subject, file)
    return _Ensemble(members, hit, order, names, shape, reference, tumour=anyone,
                     unanimous_voxels=int(np.count_nonzero(agree & anyone)))


def _tumour_words(member_words: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The indices of the words where some member is non-zero, and every member's words there (K, W). One
    pass over the members, block by block (a block's OR stays in cache)."""

    def scan(start: int) -> tuple[np.ndarray, np.ndarray]:
        block = [words[start:start + BLOCK_WORDS] for words in member_words]
        union = block[0].copy()
        for words in block[1:]:
            np.bitwise_or(union, words, out=union)
        hit = np.flatnonzero(union != 0)
        return hit + start, np.stack([words.take(hit) for words in block])

    parts = [scan(start) for start in range(0, member_words[0].size, BLOCK_WORDS)]
    hits = [np.empty(0, dtype=np.intp), *(hit for hit, _ in parts)]
    words = [np.empty((len(member_words), 0), dtype=np.uint64), *(words for _, words in parts)]
    return np.concatenate(hits), np.concatenate(words, axis=1)


def _weights(weights, method: str, n: int, subject: str | None) -> np.ndarray:
    if weights is None:
        return np.ones(n)
    w = np.asarray(weights, dtype=np.float64).ravel()
    if w.size != n:
        raise ConfigError(f"{w.size} weights for {n} members", subject=subject)
    if not np.all(np.isfinite(w)) or np.any(w <= 0):
        raise ConfigError(f"member weights must be finite and > 0, got {w.tolist()}", subject=subject)
    if method not in WEIGHTED_METHODS and not np.all(w == w[0]):
        raise ConfigError(f"method {method} takes no member weights (got {w.tolist()}); use one of "
                          f"{list(WEIGHTED_METHODS)}", subject=subject)
    return w


# ---------------------------------------------------------------------------------------------- voting

def _region_vote(masks: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Strict (weighted) majority of binary member masks (K, M): votes > half the total weight."""
    total = float(weights.sum())
    if masks.shape[0] == 0 or total <= 0:
        return np.zeros(masks.shape[1:], dtype=bool)
    if np.all(weights == weights[0]):  # plain counting, exact
        return np.count_nonzero(masks, axis=0) > masks.shape[0] // 2
    votes = np.zeros(masks.shape[1:])
    for weight, mask in zip(weights, masks):
        votes[mask] += weight
    return votes > total / 2 + TIE_TOLERANCE * total


def _class_votes(depths: np.ndarray, weights: np.ndarray) -> np.ndarray:
    votes = np.zeros((N_CLASSES, *depths.shape[1:]))
    columns = np.arange(depths.shape[1])
    for weight, depth in zip(weights, depths):
        votes[depth, columns] += weight  # each voxel gets its member's weight in the row of its class
    return votes


def _plurality(votes: np.ndarray, total: float) -> np.ndarray:
    """Class with the most votes; ties (within the tolerance) go to the lowest depth, i.e. the outermost class."""
    tolerance = TIE_TOLERANCE * total
    best = np.zeros(votes.shape[1:], dtype=np.uint8)
    best_votes = votes[0].copy()
    for c in range(1, votes.shape[0]):
        better = votes[c] > best_votes + tolerance
        best[better] = c
        best_votes[better] = votes[c][better]
    return best


def _label_vote(depths: np.ndarray, weights: np.ndarray) -> np.ndarray:
    return _plurality(_class_votes(depths, weights), float(weights.sum()))


def _vote(depths: np.ndarray, weights: np.ndarray, mode: str) -> np.ndarray:
    """The (weighted) vote of member depths (K, M) in either mode, voxel by voxel."""
    if mode == "labels":
        return _label_vote(depths, weights)
    return _paint({REGION_DEPTH[r]: _region_vote(depths >= REGION_DEPTH[r], weights) for r in REGIONS_BY_DEPTH},
                  depths.shape[1:])


def _table_vote(depths: np.ndarray, weights: np.ndarray, mode: str) -> np.ndarray:
    """`_vote`, looked up in a table of its result for every combination of the K member depths when there are
    fewer combinations than voxels. A voxel's vote depends on its own member depths only, so the lookup gives
    the same result bit for bit (the same arithmetic in the same order), for the cost of one code per voxel."""
    n_members, n_voxels = depths.shape
    n_codes = N_CLASSES ** n_members
    if n_codes > n_voxels:
        return _vote(depths, weights, mode)
    table = _vote(np.indices((N_CLASSES,) * n_members, dtype=np.uint8).reshape(n_members, n_codes), weights, mode)
    code = np.zeros(n_voxels, dtype=np.min_scalar_type(n_codes - 1))
    for depth in depths:  # the combination's index in the C-ordered table: member 1 the slowest digit
        code *= N_CLASSES
        code += depth
    return table.take(code)


def _paint(region_estimates: dict[int, np.ndarray], shape) -> np.ndarray:
    """Rebuild depths from fused regions: WT, then TC, then ET, each painted over the previous one."""
    out = np.zeros(shape, dtype=np.uint8)
    for depth in sorted(region_estimates):
        out[region_estimates[depth]] = depth
    return out


# ---------------------------------------------------------------------------------------------- SIMPLE

def _dice_scores(masks: np.ndarray, estimate: np.ndarray) -> np.ndarray:
    """Dice of each binary member mask (K, M) with the estimate; both empty scores 1."""
    overlap = (masks & estimate).sum(axis=1)
    sizes = masks.sum(axis=1) + estimate.sum()
    return np.where(sizes > 0, 2.0 * overlap / np.maximum(sizes, 1), 1.0)


def _pooled_label_dice(depths: np.ndarray, estimate: np.ndarray) -> np.ndarray:
    """Dice pooled over the tumour labels: 2 Σ|A_c ∩ E_c| / Σ(|A_c| + |E_c|); both empty scores 1."""
    overlap = ((depths == estimate) & (estimate != 0)).sum(axis=1)
    sizes = (depths != 0).sum(axis=1) + (estimate != 0).sum()
    return np.where(sizes > 0, 2.0 * overlap / np.maximum(sizes, 1), 1.0)


def _dropouts(scores: np.ndarray, active: np.ndarray, threshold: float, min_members: int) -> np.ndarray:
    """Members to drop: the active ones scoring below the threshold, lowest first in groups of equal score,
    never leaving fewer than `min_members`. Independent of member order."""
    drop = np.zeros_like(active)
    remaining = int(active.sum())
    below = active & (scores < threshold - TIE_TOLERANCE)
    for value in np.unique(scores[below]):
        group = below & (scores == value)
        if remaining - int(group.sum()) < min_members:
            break
        drop |= group
        remaining -= int(group.sum())
    return drop


def _simple(members: np.ndarray, weights: np.ndarray, params: SimpleParams, names: list[str], *,
            vote, score) -> tuple[np.ndarray, dict]:
    """SIMPLE over members (K, M) with the given vote and score functions; returns the estimate and a record."""
    active = np.ones(members.shape[0], dtype=bool)
    current = weights.copy()
    estimate = vote(members, current)
    dropped: dict[str, int] = {}
    converged, iteration, scores = False, 0, np.ones(len(names))
    for iteration in range(1, params.max_iterations + 1):
        scores = score(members, estimate)
        active_scores = scores[active]
        threshold = float(active_scores.mean() - params.alpha * active_scores.std())
        drop = _dropouts(scores, active, threshold, params.min_members)
        for k in np.flatnonzero(drop):
            dropped[names[k]] = iteration
        active &= ~drop
        current = np.where(active, weights * scores ** params.weight_power, 0.0)
        new_estimate = vote(members[active], current[active])
        changed = not np.array_equal(new_estimate, estimate)
        estimate = new_estimate
        if not drop.any() and not changed:
            converged = True
            break
    record = {
        "iterations": iteration,
        "converged": converged,
        "kept": [n for n, a in zip(names, active) if a],
        "dropped": dropped,
        "scores": {n: round(float(s), 6) for n, s in zip(names, scores)},
        "final_weights": {n: round(float(w), 6) for n, w in zip(names, current)},
    }
    return estimate, record


# ---------------------------------------------------------------------------------------------- STAPLE

def _sitk_image(array: np.ndarray):
    import SimpleITK as sitk

    return sitk.GetImageFromArray(np.ascontiguousarray(array, dtype=np.uint8))


def _staple_region(ensemble: _Ensemble, depth: int) -> tuple[np.ndarray, dict]:
    import SimpleITK as sitk

    images = [_sitk_image(ensemble.full(m >= depth)) for m in ensemble.members]
    staple = sitk.STAPLEImageFilter()
    staple.SetForegroundValue(1)
    posterior = sitk.GetArrayFromImage(staple.Execute(images))
    record = {
        "iterations": int(staple.GetElapsedIterations()),
        "sensitivity": {n: round(float(s), 6) for n, s in zip(ensemble.names, staple.GetSensitivity())},
        "specificity": {n: round(float(s), 6) for n, s in zip(ensemble.names, staple.GetSpecificity())},
    }
    return posterior > 0.5, record


def _staple_labels(ensemble: _Ensemble) -> tuple[np.ndarray, dict]:
    """MultiLabelSTAPLE over the whole grid: full-grid depths, undecided voxels filled by the label vote."""
    import SimpleITK as sitk

    undecided = 255
    staple = sitk.MultiLabelSTAPLEImageFilter()
    staple.SetLabelForUndecidedPixels(undecided)
    fused = sitk.GetArrayFromImage(staple.Execute([_sitk_image(ensemble.full(m)) for m in ensemble.members]))
    unsure = fused == undecided
    if unsure.any():  # (all members are background outside the words, and so is their vote)
        fused[unsure] = ensemble.full(_label_vote(ensemble.members, np.ones(len(ensemble.names))))[unsure]
    return fused, {"undecided_voxels": int(unsure.sum())}


# ---------------------------------------------------------------------------------------------- mean

def _label_channels(probabilities: dict[str, np.ndarray], buffer: np.ndarray):
    """A region model's probabilities as label probabilities in depth order background (1 - WT), SNFH (WT - TC),
    NETC (TC - ET), ET; differences clipped at 0. Yields each channel, computed into `buffer` when needed."""
    regions = [probabilities[r] for r in REGIONS_BY_DEPTH]
    np.subtract(np.float32(1.0), regions[0], out=buffer, dtype=np.float32)
    yield buffer
    for outer, inner in zip(regions[:-1], regions[1:]):
        np.subtract(outer, inner, out=buffer, dtype=np.float32)
        np.maximum(buffer, 0.0, out=buffer)
        yield buffer
    yield regions[-1]


# Where every member gives each tumour channel at most this probability (and a label model in label mode gives
# background at least this), the mean is background whatever the weights: in label mode each member's background
# is then its largest channel, so the weighted sums keep that order (rounding is monotone); in region mode a
# region's mean is at most 3/8 (a label model's region adds up to three sub-labels), below the 1/2 threshold.
# A power of two, so float16 maps are compared exactly through their bit patterns.
NEGLIGIBLE_PROBABILITY = 0.125


def _comparable(channel: np.ndarray, threshold: float) -> tuple[np.ndarray, Any]:
    """The channel and the threshold in a form that compares like the values: float16 maps (validated to lie in
    [0, 1]) as their bit patterns, which order non-negative floats alike and skip the slow half-precision math."""
    if channel.dtype == np.float16:
        return channel.view(np.uint16), np.float16(threshold).view(np.uint16)
    return channel, channel.dtype.type(threshold)


def _mean_support(members: list[tuple[dict, str]], mode: str) -> np.ndarray:
    """The voxels where the mean may differ from background (see NEGLIGIBLE_PROBABILITY)."""
    support = None
    for member, kind in members:
        flags = []
        for key in REGIONS_BY_DEPTH if kind == "regions" else NESTING:
            values, bound = _comparable(member[key], NEGLIGIBLE_PROBABILITY)
            flags.append(values > bound)
        if kind == "labels" and mode == "labels":
            values, bound = _comparable(member[BACKGROUND], NEGLIGIBLE_PROBABILITY)
            flags.append(values < bound)
        for flag in flags:
            support = flag if support is None else np.logical_or(support, flag, out=support)
    return support


def _mean(ensemble: _Ensemble, probabilities: Sequence, weights: np.ndarray, mode: str,
          subject: str | None) -> np.ndarray:
    """Weighted mean of the members' probabilities, computed only on `_mean_support`: the rest is background."""
    if probabilities is None or len(probabilities) != len(ensemble.names):
        given = 0 if probabilities is None else len(probabilities)
        raise InputError(f"method mean needs one probability file per member ({given} for "
                         f"{len(ensemble.names)} members)", subject=subject)
    members = []
    for name, source in zip(ensemble.names, probabilities):
        file = source if isinstance(source, (str, Path)) else None
        try:
            member = load_probabilities(source, subject=subject) if file else check_probabilities(source)
        except InputError as exc:
            raise _member_error(name, exc.reason, subject, file or exc.file) from None
        member_shape = next(iter(member.values())).shape
        if member_shape != ensemble.shape:
            raise _member_error(name, f"probability maps have shape {member_shape}, the label maps "
                                      f"{ensemble.shape}", subject, file)
        members.append((member, probability_kind(member)))
    depths = np.zeros(ensemble.shape, dtype=np.uint8)
    where = np.flatnonzero(_mean_support(members, mode))
    if where.size:
        gathered = [({key: np.ravel(channel)[where] for key, channel in member.items()}, kind)
                    for member, kind in members]
        depths.reshape(-1)[where] = _mean_depths(gathered, weights, mode, where.shape)
    return depths


def _mean_depths(members: list[tuple[dict, str]], weights: np.ndarray, mode: str, shape) -> np.ndarray:
    """The fused depths from the members' probabilities (sums compared with the total weight, in float32)."""
    # Sums per kind: label channels in depth order (background only in label mode), region channels by depth.
    label_keys = (BACKGROUND, *NESTING) if mode == "labels" else NESTING
    label_sum = region_sum = None
    scratch, buffer = np.empty(shape, dtype=np.float32), np.empty(shape, dtype=np.float32)

    def accumulate(total: np.ndarray, channel: np.ndarray, weight: float) -> None:
        if weight == 1.0:
            np.add(total, channel, out=total)
        else:
            np.multiply(channel, np.float32(weight), out=scratch)
            np.add(total, scratch, out=total)

    for (member, kind), weight in zip(members, weights):
        if kind == "regions" and mode == "regions":
            region_sum = np.zeros((len(REGIONS_BY_DEPTH), *shape), np.float32) if region_sum is None else region_sum
            for total, region in zip(region_sum, REGIONS_BY_DEPTH):
                accumulate(total, member[region], weight)
            continue
        label_sum = np.zeros((len(label_keys), *shape), np.float32) if label_sum is None else label_sum
        channels = [member[key] for key in label_keys] if kind == "labels" else _label_channels(member, buffer)
        for total, channel in zip(label_sum, channels):
            accumulate(total, channel, weight)
    half = np.float32(0.5 * weights.sum())

    if mode == "labels":
        best = np.zeros(shape, dtype=np.uint8)
        best_value = label_sum[0]
        for depth in range(1, len(label_keys)):
            better = label_sum[depth] > best_value  # strictly greater: the first (outermost) maximum wins
            best[better] = depth
            best_value = np.maximum(best_value, label_sum[depth])
        return best
    regions = {}
    inner = None
    for depth in range(len(REGIONS_BY_DEPTH), 0, -1):  # ET, then TC = ET + NETC, then WT = TC + SNFH
        total = region_sum[depth - 1] if region_sum is not None else 0
        if label_sum is not None:
            inner = label_sum[depth - 1] if inner is None else inner + label_sum[depth - 1]
            total = total + inner
        regions[depth] = total > half
    return _paint(regions, shape)


# ---------------------------------------------------------------------------------------------- fuse

def fuse(segmentations: Sequence, method: str = DEFAULT_METHOD, weights: Sequence[float] | None = None,
         mode: str = DEFAULT_MODE, convention: str = DEFAULT_CONVENTION, probabilities: Sequence | None = None, *,
         names: Sequence[str] | None = None, simple: SimpleParams | None = None, subject: str | None = None,
         return_details: bool = False):
    """Fuse member label maps into one (see the module docstring for methods, modes and the tie rules).

    segmentations: label maps as numpy integer arrays, NIfTI images or paths. weights: one positive number per
    member (methods weighted, simple, mean). probabilities: per member a probability dict or `.npz` path
    (method mean). names: member names for messages and the record (default: file names, else #1, #2, …).
    Returns a uint8 NIfTI image on the first image's grid (a uint8 array if every member is an array); with
    `return_details`, a (result, details) pair where details records what the method decided.
    """
    if method not in METHODS:
        raise ConfigError(f"unknown fusion method {method!r}; expected one of {list(METHODS)}", subject=subject)
    if mode not in MODES:
        raise ConfigError(f"unknown fusion mode {mode!r}; expected one of {list(MODES)}", subject=subject)
    simple = simple or SimpleParams()
    ensemble = _prepare(segmentations, names, convention, subject)
    w = _weights(weights, method, len(ensemble.names), subject)
    details: dict[str, Any] = {"method": method, "mode": mode, "convention": convention,
                               "members": list(ensemble.names), "weights": w.tolist()}

    if method == "mean":
        labels = from_depth(_mean(ensemble, probabilities, w, mode, subject), convention)
    elif ensemble.words.size == 0:  # every member is all background
        labels = np.zeros(ensemble.shape, dtype=np.uint8)
    elif method == "staple" and mode == "labels":
        fused, details["staple"] = _staple_labels(ensemble)
        labels = from_depth(fused, convention)
    else:
        labels = ensemble.full(from_depth(_fuse_votes(ensemble, method, w, mode, simple, details), convention))

    result = label_image_like(labels, ensemble.reference) if ensemble.reference is not None else labels
    return (result, details) if return_details else result


def _fuse_votes(ensemble: _Ensemble, method: str, weights: np.ndarray, mode: str, simple: SimpleParams,
                details: dict) -> np.ndarray:
    """Voting methods (and region-mode STAPLE): the fused depths of the words' voxels."""
    members = ensemble.members
    details["tumour_voxels_union"] = int(np.count_nonzero(ensemble.tumour))
    details["unanimous_voxels"] = ensemble.unanimous_voxels
    if method in ("majority", "weighted"):
        return _table_vote(members, weights, mode)
    if mode == "labels":
        estimate, details["simple"] = _simple(members, weights, simple, ensemble.names,
                                              vote=_label_vote, score=_pooled_label_dice)
        return estimate
    regions, records = {}, {}
    for region in REGIONS_BY_DEPTH:
        depth = REGION_DEPTH[region]
        masks = members >= depth
        if np.all(masks == masks[0], axis=None):
            regions[depth] = masks[0]
            records[region] = {"unanimous": True}
        elif method == "simple":
            regions[depth], records[region] = _simple(masks, weights, simple, ensemble.names,
                                                      vote=_region_vote, score=_dice_scores)
        else:
            full, records[region] = _staple_region(ensemble, depth)
            regions[depth] = ensemble.crop(full) & ensemble.tumour  # where no member has tumour, neither has STAPLE
    details[method] = records
    return _paint(regions, members.shape[1:])


# ---------------------------------------------------------------------------------------------- files

def fuse_files(segmentations: Sequence[str | Path], out: str | Path, *, record: str | Path | None = None,
               names: Sequence[str] | None = None, probabilities: Sequence[str | Path] | None = None,
               method: str = DEFAULT_METHOD, weights: Sequence[float] | None = None, mode: str = DEFAULT_MODE,
               convention: str = DEFAULT_CONVENTION, simple: SimpleParams | None = None,
               subject: str | None = None, skipped: Mapping[str, list[str]] | None = None) -> Path:
    """Fuse label map files into `out` (uint8 NIfTI) and write the step's record (JSON) when asked. `skipped`:
    the ensemble members that did not run for lack of modalities (member -> the missing ones), recorded."""
    from .step import StepRun

    skipped = dict(skipped or {})
    if not segmentations:
        raise InputError(no_member_message(skipped) if skipped else "no label maps to fuse", subject=subject)
    paths = [Path(p) for p in segmentations]
    names = list(names) if names is not None else [_default_name(p, i) for i, p in enumerate(paths)]
    run = StepRun("fuse", subject, record)
    with run.phase("load"):
        images = [load_image(p, subject=subject) for p in paths]
    with run.phase("fuse"):
        fused, details = fuse(images, method=method, weights=weights, mode=mode, convention=convention,
                              probabilities=probabilities if method == "mean" else None, names=names,
                              simple=simple, subject=subject, return_details=True)
    with run.phase("save"):
        voxels = {name: int(np.count_nonzero(np.asanyarray(fused.dataobj) == value))
                  for name, value in get_convention(convention).labels.items()}
        run.save_image("segmentation", fused, out, voxels=voxels)
    if record is not None:
        run.add_inputs(dict(zip(names, paths)))
        if method == "mean":
            run.add_inputs({f"{name}_probabilities": path for name, path in zip(names, probabilities)})
        run.parameters = {
            "method": method,
            "mode": mode,
            "convention": convention,
            "members": names,
            "weights": details["weights"] if method in WEIGHTED_METHODS else None,
            "simple": asdict(simple or SimpleParams()) if method == "simple" else None,
        }
        run.finish(details={k: v for k, v in details.items() if k not in ("members", "weights", "method", "mode")},
                   skipped_members=skipped)
    log.info("fused %d members (%s, %s) into %s in %.2f s", len(paths), method, mode, out,
             sum(run.timer.seconds.values()))
    return Path(out)
