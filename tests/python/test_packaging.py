"""The distribution is `pymic-offload` (`pymic` on PyPI is an unrelated
project); what it installs is imported as `pymic`."""

import importlib.metadata
import sys
from pathlib import Path

import pymic

REPOSITORY = Path(__file__).resolve().parents[2]


def test_import_name_pymic_comes_from_distribution_pymic_offload():
    distribution = importlib.metadata.distribution("pymic-offload")
    assert distribution.metadata["Name"] == "pymic-offload"
    assert distribution.version == pymic.__version__
    installed = {str(path) for path in distribution.files}
    assert "pymic/__init__.py" in installed


def test_pyproject_names_the_distribution():
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # the file is simple enough for a line scan
        tomllib = None
    text = (REPOSITORY / "pyproject.toml").read_text()
    if tomllib:
        assert tomllib.loads(text)["project"]["name"] == "pymic-offload"
    else:
        assert 'name = "pymic-offload"' in text
