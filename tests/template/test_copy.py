"""`template.copy` refuses a source that is not a whole project (the CLI test copies one)."""
import pytest

from template import copy


def test_copy_names_what_the_source_lacks_and_writes_nothing(tmp_path):
    source = tmp_path / "source"
    (source / "template").mkdir(parents=True)
    (source / "pipeline.py").write_text("")
    destination = tmp_path / "copy"

    with pytest.raises(FileNotFoundError, match="local_runner.py") as raised:
        copy.copy(str(destination), "my-pipeline", source=str(source))

    assert "pipeline.py," not in str(raised.value)
    assert "components" in str(raised.value)
    assert not destination.exists()
