"""OffloadDevice (API.md section 3)."""

import gc

import numpy as np
import pytest

import pymic


def test_device_id_is_its_number(device):
    assert device.device_id == 0


def test_repr_and_str_name_the_device(device):
    for text in (repr(device), str(device)):
        assert isinstance(text, str) and text
        assert "0" in text


def test_equality_is_by_id(device):
    assert device == pymic.devices[0]
    assert not (device != pymic.devices[0])
    if pymic.number_of_devices() > 1:
        assert device != pymic.devices[1]


def test_default_stream_is_one_per_device(device):
    first = device.get_default_stream()
    second = device.get_default_stream()
    assert isinstance(first, pymic.OffloadStream)
    assert first is second or first == second


def test_default_stream_belongs_to_the_device(device):
    assert device.get_default_stream().get_device() == device


def test_create_stream_gives_new_streams(device):
    one = device.create_stream()
    two = device.create_stream()
    assert isinstance(one, pymic.OffloadStream)
    assert one is not two
    assert one is not device.get_default_stream()
    assert one.get_device() == device
    assert two.get_device() == device


def test_created_stream_runs_kernels(device, lib):
    new_stream = device.create_stream()
    data = np.ones(16)
    new_stream.invoke(lib.scale_double, data, data.size, 5.0)
    new_stream.sync()
    assert (data == 5.0).all()


def test_many_streams_can_be_created_and_dropped(device, lib):
    for _ in range(32):
        created = device.create_stream()
        created.invoke(lib.empty_kernel)
        created.sync()
        del created
    gc.collect()


def test_load_library_returns_an_offload_library(device, kernel_dir):
    library = device.load_library(str(kernel_dir / "libpymictest.so"))
    assert isinstance(library, pymic.OffloadLibrary)


def test_load_library_with_several_names_returns_a_list(device, kernel_dir):
    libraries = device.load_library(str(kernel_dir / "libpymictest.so"),
                                    str(kernel_dir / "libpymicsecond.so"))
    assert isinstance(libraries, list) and len(libraries) == 2
    assert all(isinstance(item, pymic.OffloadLibrary) for item in libraries)


def test_load_library_accepts_a_tuple_as_pymic_did(device, kernel_dir):
    libraries = device.load_library((str(kernel_dir / "libpymictest.so"),
                                     str(kernel_dir / "libpymicsecond.so")))
    assert isinstance(libraries, list) and len(libraries) == 2
    stream = device.get_default_stream()
    out = np.zeros(1, dtype=np.int64)
    stream.invoke(libraries[1].second_answer, out)
    assert out[0] == 42


def test_load_library_accepts_a_path_object(device, kernel_dir):
    library = device.load_library(kernel_dir / "libpymicsecond.so")
    assert isinstance(library, pymic.OffloadLibrary)


def test_missing_library_names_the_file(device):
    with pytest.raises(pymic.OffloadError, match="libdoesnotexist"):
        device.load_library("libdoesnotexist.so")
