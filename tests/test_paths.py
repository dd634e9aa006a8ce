"""The results layout (bratsflow.paths): names a new step can use without adding its own."""

from bratsflow.paths import StepFiles


def test_a_step_table_is_named_after_its_step_beside_its_record(tmp_path):
    files = StepFiles(tmp_path, "example")
    assert files.table() == tmp_path / "example.tsv"
    assert files.table(".parquet") == tmp_path / "example.parquet"
    assert files.table().with_suffix(".json") == files.record

