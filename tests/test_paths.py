"""The results layout (bratsflow.paths): names a new step can use without adding its own."""

from bratsflow import steps
from bratsflow.paths import StepFiles


def test_a_step_table_is_named_after_its_step_beside_its_record(tmp_path):
    files = StepFiles(tmp_path, "example")
    assert files.table() == tmp_path / "example.tsv"
    assert files.table(".parquet") == tmp_path / "example.parquet"
    assert files.table().with_suffix(".json") == files.record


def test_every_step_names_an_image_of_the_registry():
    images = {image.name for image in steps.IMAGES}
    assert {step.image for step in steps.STEPS} <= images
