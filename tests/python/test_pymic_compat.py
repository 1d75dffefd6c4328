"""pyMIC programs run unchanged: kernel names, load_library forms, scalar
and byte-count conversions, the device table, and pyMIC's own example
patterns (double_it, double_float, data_transfers) written as pyMIC's
examples wrote them."""

import numpy as np
import pytest

import pymic
from helpers import assert_usable, run_python


# ------------------------------------------------------------ kernel names

def test_kernel_name_with_leading_underscore(stream, lib):
    out = np.zeros(1, dtype=np.int64)
    stream.invoke(lib._bb, out)
    assert out[0] == 42
    assert lib._bb is lib._bb


def test_get_kernel_by_name_string(stream, lib):
    assert lib.get_kernel("_bb") == lib._bb
    assert lib.get_kernel("empty_kernel").name == "empty_kernel"
    stream.invoke(lib.get_kernel("empty_kernel"))


def test_get_kernel_of_an_unknown_name(lib):
    with pytest.raises(pymic.OffloadError, match="no_such_kernel"):
        lib.get_kernel("no_such_kernel")
    with pytest.raises(TypeError):
        lib.get_kernel(3)


def test_unknown_kernel_is_also_an_attribute_error(lib):
    # hasattr and tools probing attributes see an ordinary missing one.
    assert not hasattr(lib, "no_such_kernel")
    assert not hasattr(lib, "_no_such_kernel")
    with pytest.raises(AttributeError):
        lib.__no_such_special__


def test_kernel_name_with_nul_is_rejected_not_cut(lib):
    # 'empty_kernel\0junk' must not find 'empty_kernel'.
    with pytest.raises(ValueError, match="NUL"):
        lib.get_kernel("empty_kernel\x00junk")
    with pytest.raises(ValueError, match="NUL"):
        getattr(lib, "empty_kernel\x00junk")


# ------------------------------------------------------------ load_library

def test_load_library_with_a_one_tuple_returns_the_library(device, kernel_dir):
    path = str(kernel_dir / "libpymictest.so")
    library = device.load_library((path,))
    assert isinstance(library, pymic.OffloadLibrary)
    assert device.load_library([path]) is library
    both = device.load_library((path, str(kernel_dir / "libpymicsecond.so")))
    assert isinstance(both, list) and len(both) == 2 and both[0] is library


def test_library_through_a_symlink_is_the_same_library(device, kernel_dir, tmp_path):
    link = tmp_path / "liblinked.so"
    link.symlink_to(kernel_dir / "libpymictest.so")
    assert device.load_library(str(link)) is device.load_library(
        str(kernel_dir / "libpymictest.so"))


# ------------------------------------------------------------ int scalars

@pytest.mark.parametrize("value", [2**63, 2**63 + 12345, 2**64 - 1])
def test_ints_beyond_int64_pass_as_uint64(stream, lib, value):
    out = np.zeros(1, dtype=np.uint64)
    stream.invoke(lib.store_int64, out, value)
    assert int(out[0]) == value == int(np.asarray(value))


@pytest.mark.parametrize("value", [2**64, -2**63 - 1, 2**80])
def test_ints_beyond_64_bits_raise_overflow(stream, lib, usable, value):
    with pytest.raises(OverflowError):
        stream.invoke(lib.store_int64, np.zeros(1, dtype=np.int64), value)
    usable()


# ------------------------------------------------------- float byte counts

def test_integral_floats_as_byte_counts_and_offsets(stream):
    data = np.arange(16, dtype=np.float64)
    back = np.zeros_like(data)
    nbytes = data.nbytes
    pointer = stream.allocate_device_memory(nbytes * 1.0)
    stream.transfer_host2device(data, pointer, nbytes / 2)
    stream.transfer_host2device(data, pointer, nbytes / 2, offset_host=nbytes / 2,
                                offset_device=nbytes / 2)
    stream.transfer_device2host(pointer, back, nbytes / 1, 0.0, 0.0)
    stream.sync()
    np.testing.assert_array_equal(back, data)
    stream.deallocate_device_memory(pointer)


def test_numpy_integers_as_byte_counts(stream):
    data = np.arange(4, dtype=np.float64)
    pointer = stream.allocate_device_memory(np.int64(32))
    stream.transfer_host2device(data, pointer, np.uint32(32), np.int16(0), np.int64(0))
    stream.sync()


@pytest.mark.parametrize("bad", [16.5, float("nan"), float("inf"), -8.0])
def test_other_floats_as_byte_counts_raise_value_error(stream, lib, usable, bad):
    pointer = stream.allocate_device_memory(64)
    data = np.zeros(8)
    with pytest.raises(ValueError):
        stream.transfer_host2device(data, pointer, bad)
    with pytest.raises(ValueError):
        stream.transfer_host2device(data, pointer, 8, offset_device=bad)
    with pytest.raises(ValueError):
        stream.allocate_device_memory(bad)
    usable()


# ------------------------------------------------------------ device table

def test_missing_device_says_how_many_and_how_to_get_more():
    count = len(pymic.devices)
    with pytest.raises(KeyError) as error:
        pymic.devices[count]
    message = str(error.value)
    assert f"{count} device" in message
    assert "PYMIC_DEVICES=host*2" in message


def test_missing_device_with_one_device():
    result = run_python("import pymic\ntry:\n    pymic.devices[1]\n"
                        "except KeyError as e:\n    print(e)\n",
                        env={"PYMIC_DEVICES": "host"})
    assert result.returncode == 0, result.stderr
    assert "1 device" in result.stdout and "PYMIC_DEVICES=host*2" in result.stdout


def test_float_keys_find_devices_like_a_dict():
    assert pymic.devices[0.0] is pymic.devices[0]
    assert pymic.devices[np.float64(0.0)] is pymic.devices[0]
    assert pymic.devices[np.int32(0)] is pymic.devices[0]
    assert 0.0 in pymic.devices and 0 in pymic.devices
    assert 0.5 not in pymic.devices
    assert "0" not in pymic.devices
    assert len(pymic.devices) not in pymic.devices
    assert float(len(pymic.devices)) not in pymic.devices
    with pytest.raises(KeyError):
        pymic.devices[0.5]
    assert pymic.devices.get(0.0) is pymic.devices[0]
    assert pymic.devices.get(0.5) is None


# Every call that takes a device number follows the table's rule: ints,
# NumPy integers and integral floats name a device; other numbers are
# refused with ValueError, other objects with TypeError.
DEVICE_TAKERS = {
    "OffloadDevice": pymic.OffloadDevice,
    "OffloadStream": lambda number: pymic.OffloadStream(number).get_device(),
    "OffloadArray": lambda number: pymic.OffloadArray(3, float, device=number).device,
}


@pytest.mark.parametrize("take", DEVICE_TAKERS.values(), ids=DEVICE_TAKERS.keys())
@pytest.mark.parametrize("number", [0, 0.0, np.float64(0.0), np.int64(0), np.uint8(0)],
                         ids=["int", "float", "numpy_float", "numpy_int", "numpy_uint8"])
def test_device_numbers_follow_one_rule(take, number):
    assert take(number) is pymic.devices[0]


@pytest.mark.parametrize("take", DEVICE_TAKERS.values(), ids=DEVICE_TAKERS.keys())
@pytest.mark.parametrize("number", [0.5, 1.5, -0.5, float("nan"), float("inf"),
                                    np.float32(0.25)])
def test_device_numbers_that_are_not_whole_are_a_value_error(take, number, stream, usable):
    with pytest.raises(ValueError, match="device numbers are whole numbers"):
        take(number)
    with pytest.raises(KeyError, match="whole numbers"):
        pymic.devices[number]
    usable()


@pytest.mark.parametrize("take", DEVICE_TAKERS.values(), ids=DEVICE_TAKERS.keys())
@pytest.mark.parametrize("value", ["0", b"0", [0]])
def test_device_numbers_that_are_not_numbers_are_a_type_error(take, value, stream, usable):
    with pytest.raises(TypeError, match="device number"):
        take(value)
    usable()


# ----------------------------------------------- pyMIC's example patterns

def test_pymic_double_it_pattern(kernel_dir):
    # examples/double_it/double_it.py of pyMIC, kernel rebuilt with gcc.
    device = pymic.devices[0]
    library = device.load_library((str(kernel_dir / "libpymictest.so"),))
    stream = device.get_default_stream()
    na = np.arange(1, 33, dtype=np.int64)
    a = stream.bind(na)
    stream.invoke(library.doubleit_kernel, a, na.size)
    stream.sync()
    a.update_host()
    stream.sync()
    np.testing.assert_array_equal(a.array, np.arange(1, 33) * 2)


def test_pymic_double_float_pattern(kernel_dir):
    # examples/double_float of pyMIC: an ndarray straight into invoke.
    device = pymic.devices[0]
    library = device.load_library((str(kernel_dir / "libpymictest.so"),))
    stream = device.get_default_stream()
    na = np.arange(1, 33, dtype=np.float64)
    stream.invoke(library.double_float_kernel, na, na.size)
    stream.sync()
    np.testing.assert_array_equal(na, np.arange(1, 33) * 2.0)


def test_pymic_data_transfers_pattern(lib):
    # examples/data_transfers of pyMIC: the low-level API, byte counts
    # computed with true division.
    device = pymic.devices[0]
    stream = device.get_default_stream()
    nelems = 64
    a = np.arange(nelems, dtype=np.float64)
    b = np.zeros(nelems, dtype=np.float64)
    nbytes = a.nbytes
    device_ptr = stream.allocate_device_memory(nbytes)
    half = nbytes / 2
    stream.transfer_host2device(a.ctypes.data, device_ptr, half)
    stream.transfer_host2device(a.ctypes.data, device_ptr, half, offset_host=half,
                                offset_device=half)
    stream.invoke(lib.scale_double, device_ptr, nelems, 2.0)
    stream.transfer_device2host(device_ptr, b.ctypes.data, nbytes)
    stream.sync()
    np.testing.assert_array_equal(b, a * 2.0)
    stream.deallocate_device_memory(device_ptr)
    assert_usable(stream, lib)
