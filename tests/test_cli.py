import subprocess
import sys

import nibabel as nib
import pytest

from bratsflow.cli import main
from bratsflow.cohort import load_sheet
from conftest import TINY_SPACING_RANGE_MM

TINY = ["--max-spacing", str(TINY_SPACING_RANGE_MM[1])]


def test_ingest_cli_from_sheet(tiny_cohort, tmp_path):
    assert main(["ingest", "--subject", "sub-002", "--samples", str(tiny_cohort / "subjects.tsv"),
                 "--out", str(tmp_path / "out"), *TINY]) == 0
    assert nib.load(tmp_path / "out" / "flair.nii.gz").shape


def test_ingest_cli_from_bids_and_explicit_paths(tiny_cohort, tmp_path):
    assert main(["ingest", "--subject", "sub-003", "--bids", str(tiny_cohort), "--out", str(tmp_path / "b"),
                 *TINY]) == 0
    subject = load_sheet(tiny_cohort / "subjects.tsv")[0]
    paths = [arg for m in ("t1", "t1c", "t2", "flair") for arg in (f"--{m}", str(subject.image(m)))]
    assert main(["--threads", "2", "ingest", "--subject", "x1", *paths, "--out", str(tmp_path / "c"), *TINY]) == 0


def test_user_errors_are_one_line_and_exit_2(tiny_cohort, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "bratsflow.cli", "ingest", "--subject", "sub-404",
         "--samples", str(tiny_cohort / "subjects.tsv"), "--out", str(tmp_path)],
        capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip() == "bratsflow ingest: error: subject 'sub-404' is not in the cohort"


def test_missing_modality_argument(tmp_path, capsys):
    assert main(["ingest", "--subject", "s1", "--t1", "a.nii.gz", "--out", str(tmp_path)]) == 2
    assert "missing --t1c --t2 --flair" in capsys.readouterr().err


def test_synth_cli_with_montage(tmp_path):
    assert main(["synth", "--out", str(tmp_path / "c"), "--subjects", "2", "--seed", "3", "--resolution", "4",
                 "--only", "sub-002", "--montage", str(tmp_path / "m.png")]) == 0
    assert (tmp_path / "m.png").stat().st_size > 10_000
    assert (tmp_path / "c" / "sub-002" / "anat" / "sub-002_FLAIR.nii.gz").is_file()


HEAVY = ("pandas", "SimpleITK", "ants", "torch", "nnunetv2", "radiomics", "jsonschema")


@pytest.mark.parametrize("run", [
    "from bratsflow.cli import build_parser; build_parser()",
    "import contextlib, io; from bratsflow.cli import main\n"
    "for argv in (['--help'], ['ingest', '--help']):\n"
    "    with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
    "        main(argv)",
], ids=["build_parser", "help"])
def test_parser_and_help_load_no_heavy_library(run):
    # Every command builds the whole parser first: a step's heavy libraries load only when that step runs.
    code = f"import sys\n{run}\nprint(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
