"""Module level of pymic (API.md section 2): devices, classes, errors."""

import importlib
import os
from pathlib import Path

import pytest

import pymic
from helpers import run_python


def test_devices_has_device_zero():
    assert 0 in pymic.devices
    assert isinstance(pymic.devices[0], pymic.OffloadDevice)


def test_devices_behaves_like_a_mapping_of_numbers():
    assert len(pymic.devices) == pymic.number_of_devices()
    numbers = list(pymic.devices)
    assert numbers == list(range(len(pymic.devices)))
    for number in pymic.devices:
        assert pymic.devices[number].device_id == number


def test_number_of_devices_is_a_positive_int():
    count = pymic.number_of_devices()
    assert isinstance(count, int)
    assert count >= 1


def test_unknown_device_number_is_a_key_error():
    with pytest.raises(KeyError):
        pymic.devices[pymic.number_of_devices()]


def test_classes_are_exported_from_the_package_root():
    for name in ("OffloadArray", "OffloadStream", "OffloadDevice",
                 "OffloadLibrary", "OffloadError"):
        assert isinstance(getattr(pymic, name), type), name


def test_offload_error_is_an_exception():
    assert issubclass(pymic.OffloadError, Exception)
    with pytest.raises(pymic.OffloadError, match="reason"):
        raise pymic.OffloadError("reason")


def test_get_include_holds_both_headers():
    include = Path(pymic.get_include())
    assert include.is_dir()
    assert (include / "pymic_kernel.h").is_file()
    assert (include / "pymic.h").is_file()


def test_public_calls_have_docstrings():
    public = [pymic.number_of_devices, pymic.local_device, pymic.get_include,
              pymic.OffloadDevice,
              pymic.OffloadStream, pymic.OffloadArray, pymic.OffloadLibrary,
              pymic.OffloadDevice.load_library, pymic.OffloadStream.invoke,
              pymic.OffloadStream.bind, pymic.OffloadArray.update_host]
    for item in public:
        assert item.__doc__ and item.__doc__.strip(), item


def test_import_twice_in_a_fresh_interpreter():
    # The package executed a second time (importlib.reload re-runs
    # __init__, so the engine is initialised again and the exit hook is
    # registered twice): devices stay the same objects, work still runs,
    # and the interpreter exits cleanly.
    result = run_python(
        "import importlib, numpy as np, pymic\n"
        "first = pymic.devices[0]\n"
        "stream = first.get_default_stream()\n"
        "again = importlib.reload(pymic)\n"
        "assert again is pymic and pymic.devices[0] is first\n"
        "assert pymic.devices[0].get_default_stream() is stream\n"
        "a = stream.bind(np.arange(4.0))\n"
        "r = (a + a).update_host().array\n"
        "stream.sync()\n"
        "print(r.tolist())\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[0.0, 2.0, 4.0, 6.0]"
    assert result.stderr == ""


def test_module_lives_in_an_installed_package_directory():
    assert os.path.isdir(os.path.dirname(pymic.__file__))


def test_devices_converts_to_a_dict():
    as_dict = dict(pymic.devices)
    assert sorted(as_dict) == list(range(pymic.number_of_devices()))
    assert as_dict[0] == pymic.devices[0]
