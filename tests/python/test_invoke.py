"""OffloadStream.invoke: every argument kind of API.md section 1."""

import os

import numpy as np
import pytest


def test_empty_kernel(stream, lib):
    stream.invoke(lib.empty_kernel)
    stream.sync()


def test_int_arrives_as_int64(stream, lib):
    for value in (0, 1, -1, 2**62, -(2**63), 2**63 - 1):
        out = np.zeros(1, dtype=np.int64)
        stream.invoke(lib.store_int64, out, value)
        assert out[0] == value


def test_float_arrives_as_double(stream, lib):
    for value in (0.0, -1.5, 3.141592653589793, 1e300, float("inf")):
        out = np.zeros(1)
        stream.invoke(lib.store_double, out, value)
        assert out[0] == value


def test_nan_float_arrives(stream, lib):
    out = np.zeros(1)
    stream.invoke(lib.store_double, out, float("nan"))
    assert np.isnan(out[0])


def test_complex_arrives_as_double_complex(stream, lib):
    for value in (1 + 2j, -3.5j, complex(1e-300, -1e300)):
        out = np.zeros(1, dtype=np.complex128)
        stream.invoke(lib.store_complex, out, value)
        assert out[0] == value


@pytest.mark.parametrize("value", [True, False])
def test_bool_arrives_as_one_byte(stream, lib, value):
    out = np.full(8, 0xAA, dtype=np.uint8)
    stream.invoke(lib.store_bytes, out, value, 1)
    assert out[0] == int(value)
    assert (out[1:] == 0xAA).all()


@pytest.mark.parametrize("scalar", [
    np.int8(-7), np.uint8(200), np.int16(-30000), np.uint16(60000),
    np.int32(-123456), np.uint32(4000000000), np.int64(-(2**40)),
    np.uint64(2**63 + 5), np.float32(1.25), np.float64(-2.5),
    np.complex64(1.5 - 2j), np.complex128(-0.25 + 8j), np.bool_(True),
])
def test_numpy_scalar_arrives_with_its_dtype(stream, lib, scalar):
    dtype = np.asarray(scalar).dtype
    out = np.zeros(16, dtype=np.uint8)
    stream.invoke(lib.store_bytes, out, scalar, dtype.itemsize)
    received = out[:dtype.itemsize].view(dtype)[0]
    assert received == scalar


def test_mixed_scalars_keep_their_slots(stream, lib):
    out = np.zeros(5)
    stream.invoke(lib.store_mixed, out, 7, 2.5, 3 - 4j, True)
    np.testing.assert_array_equal(out, [7.0, 2.5, 3.0, -4.0, 1.0])


def test_none_arrives_as_null(stream, lib):
    out = np.zeros(2, dtype=np.uint64)
    stream.invoke(lib.report_address, out, None)
    assert out[1] == 1 and out[0] == 0


def test_scalars_are_captured_at_invoke_time(stream, lib):
    # The kernel sleeps first, so it runs long after invoke returned.
    target = stream.bind(np.zeros(4))
    value = 1.5
    stream.invoke(lib.sleep_then_fill, target, 4, value, 50)
    value = 99.0
    result = target.update_host().array
    stream.sync()
    np.testing.assert_array_equal(result, np.full(4, 1.5))
    assert value == 99.0


def test_ndarray_argument_is_copied_in_and_out(stream, lib):
    data = np.arange(10, dtype=np.float64)
    stream.invoke(lib.scale_double, data, data.size, 2.0)
    # invoke returns after the copy-back: no sync needed.
    np.testing.assert_array_equal(data, np.arange(10) * 2.0)


def test_ndarray_copy_back_waits_for_the_kernel(stream, lib):
    data = np.zeros(6)
    stream.invoke(lib.sleep_then_fill, data, data.size, 4.0, 100)
    np.testing.assert_array_equal(data, np.full(6, 4.0))


def test_ndarray_multidimensional_and_fortran(stream, lib):
    c_order = np.arange(12, dtype=np.float64).reshape(3, 4)
    f_order = np.asfortranarray(c_order)
    stream.invoke(lib.scale_double, c_order, c_order.size, -1.0)
    stream.invoke(lib.scale_double, f_order, f_order.size, -1.0)
    np.testing.assert_array_equal(c_order, -np.arange(12).reshape(3, 4))
    np.testing.assert_array_equal(f_order, -np.arange(12).reshape(3, 4))


def test_two_ndarrays_in_one_invoke(stream, lib):
    src = np.linspace(0, 1, 33)
    dst = np.zeros(33)
    stream.invoke(lib.copy_double, dst, src, src.size)
    np.testing.assert_array_equal(dst, src)
    np.testing.assert_array_equal(src, np.linspace(0, 1, 33))


def test_offload_array_argument_stays_on_the_device(stream, lib):
    host = np.arange(8, dtype=np.float64)
    bound = stream.bind(host)
    stream.invoke(lib.scale_double, bound, 8, 10.0)
    stream.sync()
    # Device memory is separate: the host array is unchanged until update_host.
    np.testing.assert_array_equal(host, np.arange(8))
    bound.update_host()
    stream.sync()
    np.testing.assert_array_equal(host, np.arange(8) * 10.0)


def test_offload_array_and_ndarray_together(stream, lib):
    src = stream.bind(np.full(5, 3.0))
    dst = np.zeros(5)
    stream.invoke(lib.copy_double, dst, src, 5)
    np.testing.assert_array_equal(dst, np.full(5, 3.0))


def test_device_pointer_argument(stream, lib):
    pointer = stream.allocate_device_memory(8 * 4)
    # A raw-address transfer is asynchronous: the source must outlive it.
    source = np.arange(4, dtype=np.float64)
    stream.transfer_host2device(source.ctypes.data, pointer, 32)
    stream.invoke(lib.scale_double, pointer, 4, 0.5)
    result = np.zeros(4)
    stream.transfer_device2host(pointer, result.ctypes.data, 32)
    stream.sync()
    np.testing.assert_array_equal(result, np.arange(4) * 0.5)


def test_device_pointer_is_passed_untranslated(stream, lib):
    pointer = stream.allocate_device_memory(64)
    out = np.zeros(2, dtype=np.uint64)
    stream.invoke(lib.report_address, out, pointer)
    assert out[1] == 0
    assert int(out[0]) == stream.translate_device_pointer(pointer)


def test_invokes_run_in_order(stream, lib):
    counter = stream.bind(np.zeros(3, dtype=np.int64))
    for _ in range(100):
        stream.invoke(lib.increment_int64, counter, 3)
    result = counter.update_host().array
    stream.sync()
    np.testing.assert_array_equal(result, [100, 100, 100])


def test_invoke_with_device_data_only_enqueues(stream, lib):
    # Only OffloadArray and scalar arguments: invoke enqueues and returns
    # while the kernel still sleeps, so an event recorded after it is pending.
    target = stream.bind(np.zeros(2))
    stream.invoke(lib.sleep_then_fill, target, 2, 1.0, 300)
    after_kernel = stream.record_event()
    assert not after_kernel.done
    result = target.update_host().array
    stream.sync()
    assert after_kernel.done
    np.testing.assert_array_equal(result, [1.0, 1.0])


def test_64_arguments(stream, lib):
    out = np.zeros(64, dtype=np.int64)
    values = [1000 + i for i in range(1, 64)]
    stream.invoke(lib.args_64, out, *values)
    assert out[0] == 64
    np.testing.assert_array_equal(out[1:], values)


def test_128_arguments_the_limit(stream, lib):
    out = np.zeros(128, dtype=np.int64)
    values = [-7 * i for i in range(1, 128)]
    stream.invoke(lib.args_128, out, *values)
    assert out[0] == 128
    np.testing.assert_array_equal(out[1:], values)


def test_128_arguments_with_offload_array_output(stream, lib):
    out = stream.bind(np.zeros(128, dtype=np.int64))
    values = list(range(1, 128))
    stream.invoke(lib.args_128, out, *values)
    result = out.update_host().array
    stream.sync()
    np.testing.assert_array_equal(result[1:], values)


def test_129_arguments_is_a_value_error(stream, lib, usable):
    out = np.zeros(129, dtype=np.int64)
    with pytest.raises(ValueError):
        stream.invoke(lib.args_128, out, *range(1, 129))
    usable()


def test_kernel_must_be_a_kernel_handle(stream, usable):
    for not_a_kernel in ("scale_double", 42, None, ("scale_double", 0)):
        with pytest.raises(TypeError):
            stream.invoke(not_a_kernel)
    usable()


def test_unsupported_argument_type_is_a_type_error(stream, lib, usable):
    for bad in ("text", b"bytes", [1.0, 2.0], {"a": 1}, object()):
        with pytest.raises(TypeError):
            stream.invoke(lib.store_double, np.zeros(1), bad)
    usable()


@pytest.mark.not_on_mpi("the MPI device's kernels run on the cores its launcher gave the device rank")
def test_openmp_kernel_uses_the_device_cores(stream, lib):
    out = np.zeros(5, dtype=np.int64)
    stream.invoke(lib.omp_report, out)
    cores = len(os.sched_getaffinity(0))
    all_cpus = sum(1 << cpu for cpu in os.sched_getaffinity(0) if cpu < 63)
    # The default layout is one host device on all cores of the process.
    assert out[0] == cores
    assert 1 <= out[1] <= cores
    assert out[2] == cores
    assert out[3] == all_cpus
    assert out[4] == all_cpus


def test_kernel_from_default_stream_and_created_stream(default_stream, stream, lib):
    first = np.ones(3)
    second = np.ones(3)
    default_stream.invoke(lib.scale_double, first, 3, 2.0)
    stream.invoke(lib.scale_double, second, 3, 4.0)
    np.testing.assert_array_equal(first, [2.0] * 3)
    np.testing.assert_array_equal(second, [4.0] * 3)


def test_128_ndarray_arguments(stream, lib):
    # Every argument is an array copied in and out: 128 buffers kept alive
    # and copied back in one invoke.
    out = np.zeros(128, dtype=np.int64)
    cells = [np.array([3 * i], dtype=np.int64) for i in range(1, 128)]
    stream.invoke(lib.args_128, out, *cells)
    assert out[0] == 128
    np.testing.assert_array_equal(out[1:], [3 * i for i in range(1, 128)])


def test_127_complex_scalars(stream, lib):
    # Near the most scalar bytes one invocation may carry (16 per complex).
    complexes = [complex(i + 0.5, -i) for i in range(127)]
    sink = np.zeros(128, dtype=np.int64)
    stream.invoke(lib.args_128, sink, *complexes)
    assert sink[0] == 128
    # Each pointer addresses a 16-byte complex; the kernel reads its first
    # 8 bytes as int64, i.e. the bit pattern of the real part.
    real_bits = np.array([c.real for c in complexes], dtype=np.float64).view(np.int64)
    np.testing.assert_array_equal(sink[1:], real_bits)


@pytest.mark.parametrize("value", [2**64, -(2**63) - 1, 10**30])
def test_int_out_of_int64_range_is_refused(stream, lib, usable, value):
    with pytest.raises((OverflowError, ValueError, TypeError)):
        stream.invoke(lib.store_int64, np.zeros(1, dtype=np.int64), value)
    usable()


def test_object_array_argument_is_refused(stream, lib, usable):
    # An object array holds PyObject pointers: a kernel writing it would
    # corrupt the interpreter.  (empty_kernel keeps this test from crashing
    # if pymic wrongly accepts it.)
    objects = np.array([1.0, None, "text"], dtype=object)
    with pytest.raises((TypeError, ValueError)):
        stream.invoke(lib.empty_kernel, objects)
    usable()


def test_non_contiguous_ndarray_argument_round_trips(stream, lib):
    # A strided view cannot be handed over as is; pymic either copies it
    # through a contiguous buffer (and back) or refuses it.
    base = np.arange(10.0)
    view = base[::2]
    try:
        stream.invoke(lib.scale_double, view, 5, 2.0)
    except ValueError:
        np.testing.assert_array_equal(base, np.arange(10.0))
        return
    expected = np.arange(10.0)
    expected[::2] *= 2.0
    np.testing.assert_array_equal(base, expected)
