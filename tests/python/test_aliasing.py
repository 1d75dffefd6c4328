"""Operands that share memory, and arguments whose conversion runs Python
code: results must be NumPy's (or the host's), whatever the staging."""

import gc

import numpy as np
import pytest

import pymic
from helpers import assert_usable, run_python

N = 1000


# ---------------------------------------------- overlapping OffloadArrays

@pytest.mark.parametrize("dtype", [np.float64, np.int64, np.complex128])
@pytest.mark.parametrize("op", ["+=", "-=", "*="])
def test_shifted_views_in_place_give_numpys_result(stream, dtype, op):
    host = (np.arange(N) % 7 + 1).astype(dtype)
    expected = host.copy()
    exec(f"expected[1:] {op} expected[:-1]")
    exec(f"expected[:-3] {op} expected[3:]")
    x = stream.bind(host.copy())
    view_a, view_b = x[1:], x[:-1]
    exec(f"view_a {op} view_b")
    view_c, view_d = x[:-3], x[3:]
    exec(f"view_c {op} view_d")
    result = x.update_host().array
    stream.sync()
    np.testing.assert_array_equal(result, expected)


def test_identical_operands_need_no_temporary(stream):
    x = stream.bind(np.arange(8.0))
    x += x
    x[2:5] += x[2:5]
    expected = np.arange(8.0) * 2
    expected[2:5] *= 2
    result = x.update_host().array
    stream.sync()
    np.testing.assert_array_equal(result, expected)


@pytest.mark.parametrize("n", [N, 3 << 20])
def test_assigning_an_overlapping_slice(stream, n):
    # Large enough for the copy to be split over several threads.
    host = np.arange(n, dtype=np.float64)
    expected = host.copy()
    expected[1:] = expected[:-1].copy()
    x = stream.bind(host.copy())
    x[1:] = x[:-1]
    result = x.update_host().array
    stream.sync()
    np.testing.assert_array_equal(result, expected)


def test_overlapping_operands_on_another_stream(device, stream):
    other = device.create_stream()
    x = other.bind(np.arange(N, dtype=np.float64))
    y = x[1:]
    y.assign_stream(stream)
    y += x[:-1]
    expected = np.arange(N, dtype=np.float64)
    expected[1:] += expected[:-1].copy()
    # x's own stream must wait for the sum before copying x back.
    x.stream.wait_event(stream.record_event())
    result = x.update_host().array
    other.sync()
    stream.sync()
    np.testing.assert_array_equal(result, expected)


# --------------------------------------------- the same ndarray twice

def test_same_ndarray_twice_is_staged_once(stream, lib):
    data = np.arange(8.0)
    stream.invoke(lib.add_one_forward, data, data, data.size)
    np.testing.assert_array_equal(data, np.arange(8.0) + 1.0)


def test_overlapping_ndarrays_see_each_others_writes(stream, lib):
    # Forward copy with the destination one element after the source:
    # on the host every element becomes base[0] + i (separate copies would
    # give base[i - 1] + 1 instead).
    base = np.arange(16.0) ** 2
    expected = base.copy()
    for i in range(15):
        expected[1 + i] = expected[i] + 1.0
    stream.invoke(lib.add_one_forward, base[1:], base[:-1], 15)
    np.testing.assert_array_equal(base, expected)


def test_an_empty_view_between_overlapping_ones(stream, lib):
    # Sorted by address the empty view lies between the two overlapping
    # ones; it must not split them into separate copies.
    base = np.arange(16.0) ** 2
    expected = base.copy()
    for i in range(14):
        expected[i + 2] = expected[i] + 1.0
    stream.invoke(lib.add_one_forward_extra, base[2:], base[:-2], 14, base[1:1])
    np.testing.assert_array_equal(base, expected)


def test_read_only_alias_of_a_written_array(stream, lib):
    data = np.arange(8.0)
    frozen = data[:]
    frozen.flags.writeable = False
    stream.invoke(lib.add_one_forward, data, frozen, 8)
    np.testing.assert_array_equal(data, np.arange(8.0) + 1.0)


def test_same_non_contiguous_ndarray_twice(stream, lib):
    base = np.arange(16.0)
    strided = base[::2]
    stream.invoke(lib.add_one_forward, strided, strided, 8)
    expected = np.arange(16.0)
    expected[::2] += 1.0
    np.testing.assert_array_equal(base, expected)


def test_disjoint_views_of_one_buffer_stay_separate(stream, lib):
    base = np.arange(16.0)
    stream.invoke(lib.add_one_forward, base[8:], base[:8], 8)
    np.testing.assert_array_equal(base, np.concatenate([np.arange(8.0),
                                                        np.arange(8.0) + 1.0]))
    assert_usable(stream, lib)


# ------------------------------------- Python code inside argument reading

def test_copy_override_that_frees_an_earlier_offload_array(stream, lib):
    n = 64
    victim = stream.bind(np.zeros(n))
    replacement = stream.allocate_device_memory(n * 8)
    stream.transfer_host2device(np.zeros(n), replacement, n * 8)

    class Rebinding(np.ndarray):
        def copy(self, *args, **kwargs):
            # Drops the last reference to victim's device memory, whose
            # address an early reader would already have taken.
            victim._dptr = replacement
            gc.collect()
            return np.array(self.view(np.ndarray), copy=True)

    source = (np.arange(2 * n, dtype=np.float64) + 1.0)[::2].view(Rebinding)
    stream.invoke(lib.copy_double, victim, source, n)
    written = np.zeros(n)
    stream.transfer_device2host(replacement, written, n * 8)
    stream.sync()
    np.testing.assert_array_equal(written, np.arange(0, 2 * n, 2, dtype=np.float64) + 1.0)
    assert_usable(stream, lib)


# ------------------------------------------------------------ smaller ones

@pytest.mark.parametrize("dtype", [np.int64, np.int32])
def test_integer_to_negative_power_raises_like_numpy(stream, dtype):
    x = stream.bind(np.arange(1, 5, dtype=dtype))
    message = "Integers to negative integer powers are not allowed."
    with pytest.raises(ValueError, match=message):
        np.arange(1, 5, dtype=dtype) ** -1
    with pytest.raises(ValueError, match=message):
        x ** -1
    with pytest.raises(ValueError, match=message):
        x ** np.int64(-2)
    with pytest.raises(ValueError, match=message):
        x ** np.array([1, -1, 2, 3], dtype=dtype)
    result = (x ** 2).update_host().array
    stream.sync()
    np.testing.assert_array_equal(result, np.arange(1, 5) ** 2)


def test_float_to_negative_power_still_works(stream):
    x = stream.bind(np.arange(1.0, 5.0))
    result = (x ** -1).update_host().array
    stream.sync()
    np.testing.assert_allclose(result, 1.0 / np.arange(1.0, 5.0))


def test_device_offset_is_checked_against_the_allocation(stream, lib):
    x = stream.bind(np.zeros(8))
    with pytest.raises(ValueError, match="beyond"):
        x._doffset = x._dptr.nbytes + 8
    view = x[4:]
    small = stream.allocate_device_memory(16)
    with pytest.raises(ValueError, match="beyond"):
        view._dptr = small
    with pytest.raises(ValueError, match="beyond"):
        x._doffset = 8  # the array's 64 bytes from there would overrun
    x[8:]._doffset = x._dptr.nbytes  # one past the end, as an empty view has
    assert_usable(stream, lib)


def test_translate_device_pointer_rejects_another_devices_pointer():
    result = run_python(
        "import pymic\n"
        "s0 = pymic.devices[0].get_default_stream()\n"
        "s1 = pymic.devices[1].get_default_stream()\n"
        "p1 = s1.allocate_device_memory(64)\n"
        "try:\n"
        "    s0.translate_device_pointer(p1)\n"
        "except pymic.OffloadError as e:\n"
        "    print('refused:', e)\n"
        "print(s1.translate_device_pointer(p1) != 0)\n",
        env={"PYMIC_DEVICES": "host*2"})
    assert result.returncode == 0, result.stderr
    assert "refused:" in result.stdout and "device 1" in result.stdout
    assert result.stdout.rstrip().endswith("True")
