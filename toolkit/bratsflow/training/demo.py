"""The demo ensemble: small nnU-Net v2 models the project trains itself on synthetic subjects, because no
pretrained BraTS weights can be downloaded here. `bratsflow models train-demo --seed S` reproduces them end to end:

1. synthesise N training subjects with `bratsflow.synth` (1 mm, the demo cohort's generator) from seed S; S must
   not be a seed another cohort uses (`RESERVED_SEEDS`), so no demo or bench subject is ever trained on;
2. build each subject's input as the pipeline delivers it to segmentation: the four modalities resampled into the
   atlas frame (MNI152, 1 mm) through their true transforms, skull-stripped with the true atlas-space brain mask
   (0 outside), float32, channels t1, t1c, t2, flair; target: the atlas-space truth label map (BraTS 2023 values);
3. nnU-Net v2 fingerprint extraction and planning through its Python API, then one configuration per member
   written into the plans (coarse spacing, few stages and features, small patches: an iteration costs well under
   a second of CPU), preprocessing, and training with the plain `nnUNetTrainer` on CPU, fold 'all', fixed seeds
   and augmentation in the main process (so a seed gives the same model on the same thread count);
4. export: a plain nnU-Net v2 model folder per member (dataset.json, plans.json with the member's configuration
   only, fold_all/checkpoint_final.pth with the weights but without optimiser state), a `training.json` record
   and the checksum record of `models.write_manifest`.

The models know only synthetic tumours: never use them on patients.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import random
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from .. import models, synth
from ..errors import ConfigError
from ..io import label_image, load_image, save_image, save_json
from ..labels import REGIONS, get_convention
from ..modalities import MODALITIES, MODALITY_NAMES
from ..paths import TruthFiles
from ..provenance import environment

log = logging.getLogger(__name__)

DEFAULT_SEED = 1000
DEFAULT_SUBJECTS = 30
# Held-out subjects of bench/segment_demo.py: never trained on.
HELD_OUT_SEED = 2000
RESERVED_SEEDS = {
    42: "the demo cohort (config demo.seed)",
    7: "bench/skullstrip.py's cohort",
    11: "bench/coregister.py's cohort",
    HELD_OUT_SEED: "the held-out subjects of bench/segment_demo.py",
}
CONVENTION = "brats2023"
DATASETS = {False: (501, "BratsflowDemoLabels"), True: (502, "BratsflowDemoRegions")}
TRAINER = "nnUNetTrainer"
PLANS = "nnUNetPlans"
FILE_ENDING = ".nii.gz"


@dataclass(frozen=True)
class DemoMember:
    name: str
    regions: bool  # region-based (sigmoid per WT, TC, ET) or label-based (softmax over the labels)
    spacing_mm: float
    patch: int  # voxels per side of the cubic training patch
    features: tuple[int, ...]  # per encoder stage; two convolutions per stage
    epochs: int
    iterations: int  # per epoch, batch size 2
    seed_offset: int  # the member trains with seed S + seed_offset


MEMBERS = (
    DemoMember("demo_regions", regions=True, spacing_mm=2.0, patch=48, features=(8, 16, 32, 64),
               epochs=25, iterations=40, seed_offset=0),
    DemoMember("demo_labels", regions=False, spacing_mm=2.0, patch=32, features=(16, 32, 64, 128),
               epochs=25, iterations=40, seed_offset=1),
    # A second label-based member from another seed. With 8 features in the first stage and 48³ patches the
    # label-based network still had a pseudo-Dice of 0 for NETC and ET after 13 of 25 epochs (run here, stopped).
    DemoMember("demo_labels_b", regions=False, spacing_mm=2.0, patch=32, features=(16, 32, 64, 128),
               epochs=25, iterations=40, seed_offset=2),
)


# ---------------------------------------------------------------------------------------------- inputs

def atlas_inputs(root: str | Path, sid: str) -> tuple[dict[str, nib.Nifti1Image], nib.Nifti1Image]:
    """A synthetic subject's four modalities as the pipeline hands them to segmentation (atlas space through the
    true transforms, linear interpolation, skull-stripped with the true brain mask, float32), and its truth."""
    truth = TruthFiles(root, sid)
    labels = load_image(truth.labels, subject=sid)
    brain = np.asarray(load_image(truth.brain_mask, subject=sid).dataobj) > 0
    images = {}
    for modality, data in synth.resample_native_to_atlas(root, sid, order=1).items():
        img = nib.Nifti1Image(np.where(brain, data, 0).astype(np.float32), labels.affine)
        img.set_qform(labels.affine, code=2)
        img.set_sform(labels.affine, code=2)
        img.header.set_xyzt_units("mm")
        images[modality] = img
    return images, labels


def _synthesise_one(task: tuple[str, int, int, str]) -> str:
    root, n_subjects, seed, sid = task
    synth.generate_cohort(root, n_subjects, seed, only=[sid])
    return sid


def synthesise(root: Path, n_subjects: int, seed: int, processes: int) -> list[str]:
    """The cohort of `seed`; subjects whose truth record exists (written last) are kept from an earlier run."""
    subjects = [synth.subject_id(i) for i in range(n_subjects)]
    todo = [sid for sid in subjects if not TruthFiles(root, sid).record.is_file()]
    log.info("synthesising %d of %d training subjects (seed %d) in %d processes", len(todo), n_subjects, seed,
             processes)
    if todo:
        with multiprocessing.get_context("spawn").Pool(max(1, processes)) as pool:
            for sid in pool.imap_unordered(_synthesise_one, [(str(root), n_subjects, seed, s) for s in todo]):
                log.info("synthesised %s", sid)
    return subjects


def case_id(sid: str) -> str:
    return sid.replace("-", "_")


def write_raw_dataset(cohort: Path, subjects: list[str], raw: Path) -> None:
    """nnU-Net raw datasets: the label-based one holds the files; the region-based one links to them."""
    label_id, label_name = DATASETS[False]
    label_dir = raw / f"Dataset{label_id:03d}_{label_name}"
    for sid in subjects:
        case = case_id(sid)
        target = label_dir / "labelsTr" / f"{case}{FILE_ENDING}"
        if target.is_file():
            continue
        images, labels = atlas_inputs(cohort, sid)
        for channel, modality in enumerate(MODALITIES):
            save_image(images[modality], label_dir / "imagesTr" / f"{case}_{channel:04d}{FILE_ENDING}")
        save_image(label_image(np.asarray(labels.dataobj), labels.affine, aligned_to_atlas=True), target)
    for regions, (dataset_id, name) in DATASETS.items():
        folder = raw / f"Dataset{dataset_id:03d}_{name}"
        folder.mkdir(parents=True, exist_ok=True)
        if regions:
            for sub in ("imagesTr", "labelsTr"):
                if not (folder / sub).exists():
                    (folder / sub).symlink_to(label_dir / sub, target_is_directory=True)
        save_json(dataset_json(regions, len(subjects)), folder / "dataset.json")


def dataset_json(regions: bool, n_training: int) -> dict:
    conv = get_convention(CONVENTION)
    if regions:
        # nnU-Net paints the regions in this order, each with the label value given here: WT as SNFH, then TC as
        # NETC, then ET, so the output map holds label values (nnU-Net's BraTS region setup).
        labels = {"background": 0, **{r: list(conv.region_labels(r)) for r in REGIONS}}
        extra = {"regions_class_order": [conv.labels["SNFH"], conv.labels["NETC"], conv.labels["ET"]]}
    else:
        labels = {"background": 0, **conv.labels}
        extra = {}
    return {
        "channel_names": {str(i): MODALITY_NAMES[m] for i, m in enumerate(MODALITIES)},
        "labels": labels, **extra,
        "numTraining": n_training,
        "file_ending": FILE_ENDING,
        "description": f"bratsflow demo ensemble: synthetic BraTS-like subjects, atlas space, skull-stripped; "
                       f"label convention {CONVENTION}. Synthetic tumours only: never use on patients.",
    }


# ---------------------------------------------------------------------------------------------- nnU-Net

def nnunet_environment(work: Path) -> None:
    """nnU-Net reads its folders from the environment once, when `nnunetv2.paths` is first imported."""
    folders = {key: work / key for key in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")}
    for key, folder in folders.items():
        folder.mkdir(parents=True, exist_ok=True)
        os.environ[key] = str(folder)
    os.environ["nnUNet_compile"] = "F"
    import nnunetv2.paths as paths

    if Path(paths.nnUNet_raw or "") != folders["nnUNet_raw"]:
        raise RuntimeError("nnunetv2 was imported before its folders were set; run train-demo in a fresh process")


def member_configuration(base: dict, member: DemoMember) -> dict:
    """The planner's 3d_fullres configuration shrunk for CPU training (complete, without `inherits_from`)."""
    config = json.loads(json.dumps(base))
    arch = config["architecture"]
    if not arch["network_class_name"].endswith("PlainConvUNet"):
        raise RuntimeError(f"expected nnU-Net's default planner to plan a PlainConvUNet, got {arch['network_class_name']}")
    n = len(member.features)
    if member.patch % 2 ** (n - 1):
        raise ConfigError(f"{member.name}: patch {member.patch} is not divisible by 2^{n - 1} ({n} stages)")
    config.pop("inherits_from", None)
    config.update({
        "data_identifier": f"{PLANS}_{member.spacing_mm:g}mm",
        "spacing": [member.spacing_mm] * 3,
        "patch_size": [member.patch] * 3,
        "batch_size": 2,
        "median_image_size_in_voxels": [round(s * sp / member.spacing_mm)
                                        for s, sp in zip(base["median_image_size_in_voxels"], base["spacing"])],
    })
    arch["arch_kwargs"].update({
        "n_stages": n,
        "features_per_stage": list(member.features),
        "kernel_sizes": [[3, 3, 3]] * n,
        "strides": [[1, 1, 1]] + [[2, 2, 2]] * (n - 1),
        "n_conv_per_stage": [2] * n,
        "n_conv_per_stage_decoder": [2] * (n - 1),
    })
    return config


def reuse_preprocessed(folder: Path, members: list[DemoMember], n_cases: int) -> bool:
    """Where an earlier run left plans and every case preprocessed at each member's spacing, write the members'
    configurations into those plans and reuse the data. Patch size and network do not change preprocessing (the
    spacing, in the data identifier, does); nnU-Net deletes and redoes a configuration's data when asked to
    preprocess it again, about 13 minutes here."""
    plans_file = folder / f"{PLANS}.json"
    if not plans_file.is_file():
        return False
    plans = json.loads(plans_file.read_text())
    configurations = {m.name: member_configuration(plans["configurations"]["3d_fullres"], m) for m in members}
    for config in configurations.values():
        if len(list((folder / config["data_identifier"]).glob("*.pkl"))) != n_cases:
            return False
    plans["configurations"].update(configurations)
    plans_file.write_text(json.dumps(plans, indent=2))
    return True


def plan_and_preprocess(members: tuple[DemoMember, ...], threads: int, n_cases: int) -> bool:
    """Returns whether preprocessed data of an earlier run was reused (its time is then not in this run's)."""
    from nnunetv2.experiment_planning.plan_and_preprocess_api import (extract_fingerprints, plan_experiments,
                                                                       preprocess_dataset)
    from nnunetv2.paths import nnUNet_preprocessed

    preprocessed = Path(nnUNet_preprocessed)
    fingerprint = None
    reused = False
    for regions in sorted({m.regions for m in members}):
        dataset_id, name = DATASETS[regions]
        folder = preprocessed / f"Dataset{dataset_id:03d}_{name}"
        if reuse_preprocessed(folder, [m for m in members if m.regions == regions], n_cases):
            log.info("%s: reusing the preprocessed data of an earlier run in the work folder", folder.name)
            reused = True
            continue
        if fingerprint is None:
            extract_fingerprints([dataset_id], num_processes=threads, check_dataset_integrity=True,
                                 show_progress_bar=False)
            fingerprint = folder / "dataset_fingerprint.json"
        else:  # same image and label files: the same fingerprint
            folder.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(fingerprint, folder / "dataset_fingerprint.json")
        plan_experiments([dataset_id])
        plans_file = folder / f"{PLANS}.json"
        plans = json.loads(plans_file.read_text())
        configurations = []
        for member in members:
            if member.regions == regions:
                config = member_configuration(plans["configurations"]["3d_fullres"], member)
                plans["configurations"][member.name] = config
                if config["data_identifier"] not in {plans["configurations"][c]["data_identifier"]
                                                     for c in configurations}:
                    configurations.append(member.name)
        plans_file.write_text(json.dumps(plans, indent=2))
        preprocess_dataset(dataset_id, PLANS, configurations, [threads] * len(configurations),
                           show_progress_bar=False)
    return reused


def train_member(member: DemoMember, seed: int, threads: int) -> tuple[Path, dict]:
    """Train one member; returns nnU-Net's output folder and what the training record needs."""
    import torch
    from nnunetv2.paths import nnUNet_preprocessed, nnUNet_raw
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    dataset_id, name = DATASETS[member.regions]
    dataset = f"Dataset{dataset_id:03d}_{name}"
    plans = json.loads((Path(nnUNet_preprocessed) / dataset / f"{PLANS}.json").read_text())
    plans["continue_training"] = False
    dataset_description = json.loads((Path(nnUNet_raw) / dataset / "dataset.json").read_text())
    member_seed = seed + member.seed_offset
    random.seed(member_seed)
    np.random.seed(member_seed)
    torch.manual_seed(member_seed)
    torch.set_num_threads(max(1, threads))
    # Augmentation in the main process: seeded, so a seed gives the same model; and no worker competing with
    # the training threads for the cores. (The planner needs a positive value, so it is set only here.)
    os.environ["nnUNet_n_proc_DA"] = "0"
    trainer = nnUNetTrainer(plans, member.name, "all", dataset_description, device=torch.device("cpu"))
    if Path(trainer.output_folder).exists():  # a stale run must not leave its files in this one
        shutil.rmtree(trainer.output_folder)
        Path(trainer.output_folder).mkdir(parents=True)
    trainer.num_epochs = member.epochs
    trainer.num_iterations_per_epoch = member.iterations
    trainer.num_val_iterations_per_epoch = 2
    trainer.initialize()
    # oneDNN's 3-D convolution backward pass is several times faster on channels-last tensors on CPU; the
    # weights are the same, and the export stores them contiguous.
    trainer.network.to(memory_format=torch.channels_last_3d)
    start, cpu_start = time.perf_counter(), time.process_time()
    trainer.run_training()
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    log_values = trainer.logger.get_checkpoint()
    return Path(trainer.output_folder).parent, {
        "seed": member_seed,
        "train_seconds": round(seconds, 1),
        # On a shared machine the wall time depends on the other load; the CPU time much less.
        "train_cpu_seconds": round(cpu_seconds, 1),
        "final_train_loss": float(log_values["train_losses"][-1]),
        "final_pseudo_dice": [float(d) for d in log_values["dice_per_class_or_region"][-1]],
    }


def export_member(trained: Path, member: DemoMember, destination: Path, record: dict, source: str) -> Path:
    """A plain nnU-Net v2 model folder with only what inference needs, plus the records."""
    import torch

    staging = destination.with_name(f".{destination.name}.tmp")
    if staging.exists():
        shutil.rmtree(staging)
    (staging / "fold_all").mkdir(parents=True)
    plans = json.loads((trained / "plans.json").read_text())
    plans["configurations"] = {member.name: plans["configurations"][member.name]}
    save_json(plans, staging / "plans.json")
    shutil.copyfile(trained / "dataset.json", staging / "dataset.json")
    checkpoint = torch.load(trained / "fold_all" / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    init_args = {k: checkpoint["init_args"][k] for k in ("configuration", "fold")}
    # The decoder holds the encoder, so its weights appear twice in the state dict on shared storage; converting
    # each storage once keeps them shared (saved once).
    contiguous: dict[int, object] = {}
    weights = {k: contiguous.setdefault(v.data_ptr(), v.contiguous())
               for k, v in checkpoint["network_weights"].items()}
    torch.save({
        "network_weights": weights,
        "init_args": init_args,
        "trainer_name": checkpoint["trainer_name"],
        "inference_allowed_mirroring_axes": checkpoint["inference_allowed_mirroring_axes"],
        "current_epoch": checkpoint["current_epoch"],
    }, staging / "fold_all" / "checkpoint_final.pth")
    save_json(record, staging / "training.json")
    models.write_manifest(staging, member.name, source=source)
    if destination.exists():
        shutil.rmtree(destination)
    staging.rename(destination)
    return destination


def train_demo(out: str | Path, seed: int = DEFAULT_SEED, n_subjects: int = DEFAULT_SUBJECTS,
               work: str | Path | None = None, threads: int = 1,
               members: tuple[DemoMember | str, ...] = MEMBERS) -> list[Path]:
    """Synthesise, prepare, plan, preprocess, train and export the members (all, or those named) into `out/<name>/`;
    each member seeds itself, so training one alone gives the model a run of all of them gives.

    `work` keeps the cohort and nnU-Net's folders (an interrupted run reuses finished subjects and finished
    preprocessing); without it they
    go to a temporary folder that is removed at the end."""
    if seed in RESERVED_SEEDS:
        raise ConfigError(f"seed {seed} is the seed of {RESERVED_SEEDS[seed]}: the demo models must never see "
                          f"those subjects; choose another seed (the documented one is {DEFAULT_SEED})")
    if n_subjects < 2:
        raise ConfigError(f"--subjects {n_subjects}: training needs at least 2 subjects (the demo uses 20-40)")
    known = {m.name: m for m in MEMBERS}
    unknown = [m for m in members if isinstance(m, str) and m not in known]
    if unknown:
        raise ConfigError(f"unknown demo member(s) {', '.join(unknown)}; the demo members are {', '.join(known)}")
    members = tuple(known[m] if isinstance(m, str) else m for m in members)
    out = Path(out)
    with tempfile.TemporaryDirectory(prefix="bratsflow-train-demo-") as scratch:
        work = Path(work) if work else Path(scratch)
        # OpenMP threads that spin while waiting multiplied the CPU time per iteration 5-10x on a shared
        # machine (measured); read when torch loads its OpenMP runtime, so before the first torch import.
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        nnunet_environment(work)
        timings = {}
        start = time.perf_counter()
        subjects = synthesise(work / "cohort", n_subjects, seed, threads)
        timings["synthesis_seconds"] = round(time.perf_counter() - start, 1)
        start = time.perf_counter()
        write_raw_dataset(work / "cohort", subjects, Path(os.environ["nnUNet_raw"]))
        timings["preprocessing_reused"] = plan_and_preprocess(members, threads, len(subjects))
        timings["preprocessing_seconds"] = round(time.perf_counter() - start, 1)
        source = f"bratsflow --threads {threads} models train-demo --seed {seed} --subjects {n_subjects}"
        if {m.name for m in members} != set(known):
            source += " --members " + " ".join(m.name for m in members)
        exported = []
        for member in members:
            log.info("training %s", member.name)
            trained, result = train_member(member, seed, threads)
            record = {
                "member": asdict(member),
                "command": source,
                "training_cohort": {"generator": "bratsflow.synth", "seed": seed, "subjects": subjects,
                                    "resolution_mm": synth.SynthParams().resolution_mm},
                "reserved_seeds": {str(k): v for k, v in RESERVED_SEEDS.items()},
                "label_convention": CONVENTION,
                "threads": threads,
                **timings, **result,
                "environment": environment(),
                "warning": "trained on synthetic tumours only: never use on patients",
            }
            exported.append(export_member(trained, member, out / member.name, record, source))
            log.info("%s: trained in %.0f s, exported to %s", member.name, result["train_seconds"], exported[-1])
    return exported
