"""OffloadArray (API.md section 7): every operation for every dtype, compared
with the same NumPy expression on the host."""

import operator
import re

import numpy as np
import pytest

from helpers import run_python

DTYPES = [np.int64, np.int32, np.uint64, np.float64, np.float32,
          np.complex128, np.complex64]
DTYPE_IDS = [np.dtype(d).name for d in DTYPES]
SHAPES = [(1001,), (7, 3)]
BINARY_OPS = {"add": operator.add, "sub": operator.sub,
              "mul": operator.mul, "pow": operator.pow}
INPLACE_OPS = {"iadd": operator.iadd, "isub": operator.isub, "imul": operator.imul}
OPERAND_KINDS = ["offload_array", "ndarray", "numpy_scalar", "python_scalar"]


def sample(dtype, shape, role, seed=0):
    """Test data of `dtype` that keeps every operation exact or well-conditioned.

    `role` is "base" or "exponent" for pow (small values, so integer powers
    do not overflow and float powers stay finite), anything else otherwise.
    """
    dtype = np.dtype(dtype)
    rng = np.random.default_rng(seed + 17 * DTYPE_IDS.index(dtype.name))
    if dtype.kind == "i":
        low, high = {"base": (-4, 5), "exponent": (0, 4)}.get(role, (-1000, 1000))
        values = rng.integers(low, high, size=shape)
    elif dtype.kind == "u":
        low, high = {"base": (0, 6), "exponent": (0, 4)}.get(role, (0, 1000))
        values = rng.integers(low, high, size=shape)
    elif dtype.kind == "f":
        low, high = {"base": (0.5, 2.0), "exponent": (-2.0, 2.0)}.get(role, (-100.0, 100.0))
        values = rng.uniform(low, high, size=shape)
    else:
        scale = 1.0 if role in ("base", "exponent") else 50.0
        values = scale * (rng.uniform(-1, 1, size=shape) + 1j * rng.uniform(-1, 1, size=shape))
    return np.ascontiguousarray(values.astype(dtype))


def scalar_sample(dtype, role, python):
    """A scalar of the array's type: a NumPy scalar, or the Python type of its kind."""
    dtype = np.dtype(dtype)
    value = {"i": 3, "u": 3, "f": 1.5, "c": 0.5 - 0.75j}[dtype.kind]
    if role == "exponent" and dtype.kind in "iu":
        value = 2
    if python:
        return {"i": int, "u": int, "f": float, "c": complex}[dtype.kind](value)
    return dtype.type(value)


def assert_matches(result, expected):
    """Compare a device result with NumPy: exact for integers, close for floats."""
    assert result.dtype == expected.dtype
    assert result.shape == expected.shape
    if expected.dtype.kind in "iub":
        np.testing.assert_array_equal(result, expected)
    else:
        single = expected.dtype in (np.float32, np.complex64)
        np.testing.assert_allclose(result, expected, rtol=2e-5 if single else 1e-12,
                                   atol=1e-6 if single else 1e-12)


def fetch(offload_array):
    """The device contents of `offload_array` on the host (update_host + sync)."""
    result = offload_array.update_host().array
    offload_array.stream.sync()
    return result


def make_operand(stream, kind, dtype, shape, role):
    """Second operand of a binary operation and its NumPy equivalent."""
    if kind in ("numpy_scalar", "python_scalar"):
        value = scalar_sample(dtype, role, python=kind == "python_scalar")
        return value, value
    host = sample(dtype, shape, role, seed=1)
    if kind == "ndarray":
        return host.copy(), host
    return stream.bind(host.copy()), host


# ------------------------------------------------------------ arithmetic

@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("shape", SHAPES, ids=["1d", "2d"])
@pytest.mark.parametrize("kind", OPERAND_KINDS)
@pytest.mark.parametrize("op_name", list(BINARY_OPS))
def test_binary_operation(stream, op_name, kind, shape, dtype):
    op = BINARY_OPS[op_name]
    pow_op = op_name == "pow"
    left_host = sample(dtype, shape, "base" if pow_op else "value")
    right, right_host = make_operand(stream, kind, dtype, shape,
                                     "exponent" if pow_op else "value")
    left = stream.bind(left_host.copy())
    result = op(left, right)
    expected = op(left_host, right_host)
    assert result is not left
    assert_matches(fetch(result), expected)
    # The operands are unchanged on the device.
    assert_matches(fetch(left), left_host)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("kind", OPERAND_KINDS)
@pytest.mark.parametrize("op_name", list(INPLACE_OPS))
def test_inplace_operation(stream, op_name, kind, dtype):
    op = INPLACE_OPS[op_name]
    shape = (513,)
    left_host = sample(dtype, shape, "value")
    right, right_host = make_operand(stream, kind, dtype, shape, "value")
    left = stream.bind(left_host.copy())
    same = op(left, right)
    assert same is left
    expected = op(left_host.copy(), right_host)
    assert_matches(fetch(left), expected)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_operation_chain_stays_on_the_device(stream, dtype):
    a_host = sample(dtype, (100,), "value")
    b_host = sample(dtype, (100,), "value", seed=5)
    a = stream.bind(a_host.copy())
    b = stream.bind(b_host.copy())
    result = (a + b) * b - a
    result += a
    assert_matches(fetch(result), (a_host + b_host) * b_host - a_host + a_host)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_abs(stream, dtype):
    host = sample(dtype, (257,), "value")
    result = abs(stream.bind(host.copy()))
    expected = np.abs(host)
    assert_matches(fetch(result), expected)
    if np.dtype(dtype).kind == "c":
        assert result.dtype == expected.dtype
        assert result.dtype.kind == "f"


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_abs_of_two_dimensional_array(stream, dtype):
    host = sample(dtype, (4, 6), "value")
    result = abs(stream.bind(host.copy()))
    assert_matches(fetch(result), np.abs(host))


# ------------------------------------------------------------ fill and friends

@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_fill_zero_one_fillfrom(stream, dtype):
    offload = stream.bind(sample(dtype, (77,), "value"))
    value = scalar_sample(dtype, "value", python=False)
    assert offload.fill(value) is offload
    assert_matches(fetch(offload), np.full(77, value, dtype=dtype))
    assert offload.zero() is offload
    assert_matches(fetch(offload), np.zeros(77, dtype=dtype))
    assert offload.one() is offload
    assert_matches(fetch(offload), np.ones(77, dtype=dtype))
    source = sample(dtype, (77,), "value", seed=9)
    assert offload.fillfrom(source) is offload
    assert_matches(fetch(offload), source)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_fill_with_python_scalar(stream, dtype):
    offload = stream.zeros((3, 4), dtype=dtype)
    value = scalar_sample(dtype, "value", python=True)
    offload.fill(value)
    assert_matches(fetch(offload), np.full((3, 4), value, dtype=dtype))


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_reverse(stream, dtype):
    host = sample(dtype, (101,), "value")
    offload = stream.bind(host.copy())
    reversed_array = offload.reverse()
    assert reversed_array is not offload
    assert_matches(fetch(reversed_array), host[::-1].copy())
    assert_matches(fetch(offload), host)


def test_reverse_of_two_dimensional_array_is_a_value_error(stream, usable):
    offload = stream.bind(np.zeros((2, 3)))
    with pytest.raises(ValueError):
        offload.reverse()
    usable()


# ------------------------------------------------------------ views and slices

@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_reshape_and_ravel_share_the_device_buffer(stream, dtype):
    host = sample(dtype, (24,), "value")
    offload = stream.bind(host.copy())
    reshaped = offload.reshape(4, 6)
    assert reshaped.shape == (4, 6)
    assert_matches(fetch(reshaped), host.reshape(4, 6))
    reshaped.zero()
    # The original array sees the change: same device buffer.
    assert_matches(fetch(offload), np.zeros(24, dtype=dtype))
    flat = reshaped.ravel()
    assert flat.shape == (24,)
    flat.one()
    assert_matches(fetch(reshaped), np.ones((4, 6), dtype=dtype))


def test_reshape_accepts_a_tuple(stream):
    offload = stream.bind(np.arange(6.0))
    assert offload.reshape((3, 2)).shape == (3, 2)


def test_reshape_to_another_size_is_a_value_error(stream, usable):
    offload = stream.bind(np.arange(6.0))
    with pytest.raises(ValueError):
        offload.reshape(4, 2)
    usable()


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_slice_assignment(stream, dtype):
    host = sample(dtype, (20,), "value")
    offload = stream.bind(host.copy())
    expected = host.copy()
    scalar = scalar_sample(dtype, "value", python=False)
    offload[2:5] = scalar
    expected[2:5] = scalar
    block = sample(dtype, (4,), "value", seed=3)
    offload[10:14] = block
    expected[10:14] = block
    other = stream.bind(sample(dtype, (3,), "value", seed=4))
    offload[17:20] = other
    expected[17:20] = fetch(other)
    assert_matches(fetch(offload), expected)


def test_slice_assignment_with_open_ends(stream):
    offload = stream.bind(np.zeros(6))
    offload[:2] = 1.0
    offload[4:] = 2.0
    np.testing.assert_array_equal(fetch(offload), [1, 1, 0, 0, 2, 2])


def test_slice_assignment_with_step_is_a_value_error(stream, usable):
    offload = stream.bind(np.zeros(10))
    with pytest.raises(ValueError):
        offload[0:10:2] = 1.0
    usable()


def test_slice_assignment_of_wrong_length_is_a_value_error(stream, usable):
    offload = stream.bind(np.zeros(10))
    with pytest.raises(ValueError):
        offload[0:3] = np.ones(4)
    usable()


# ------------------------------------------------------------ attributes

@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("order", ["C", "F"])
def test_attributes(stream, device, dtype, order):
    host = np.asarray(sample(dtype, (3, 5), "value"), order=order)
    offload = stream.bind(host)
    assert offload.array is host
    assert offload.device == device
    assert offload.stream is stream
    assert offload.shape == (3, 5)
    assert offload.dtype == np.dtype(dtype)
    assert offload.size == 15
    assert offload.ndim == 2
    assert offload.order == order
    assert offload.nbytes == host.nbytes
    assert len(offload) == 3


def test_str_and_repr_show_the_host_array(stream):
    host = np.array([1.5, 2.5, 3.5])
    offload = stream.bind(host)
    assert str(host) in str(offload)
    assert "1.5" in repr(offload)


def test_offload_arrays_are_not_hashable(stream):
    offload = stream.bind(np.zeros(3))
    with pytest.raises(TypeError):
        hash(offload)
    with pytest.raises(TypeError):
        {offload}


# ------------------------------------------------------------ transfers

def test_bind_copies_to_the_device_and_update_host_brings_back(stream, lib):
    host = np.arange(10.0)
    offload = stream.bind(host)
    stream.invoke(lib.scale_double, offload, 10, 2.0)
    assert offload.update_host() is offload
    stream.sync()
    np.testing.assert_array_equal(host, np.arange(10.0) * 2)


def test_bind_without_update_device(stream, lib):
    host = np.arange(4.0)
    offload = stream.bind(host, update_device=False)
    offload.fill(5.0)
    host[:] = -1.0
    offload.update_device()
    stream.invoke(lib.scale_double, offload, 4, 2.0)
    np.testing.assert_array_equal(fetch(offload), np.full(4, -2.0))


def test_update_device_sends_host_changes(stream):
    host = np.zeros(5)
    offload = stream.bind(host)
    host[:] = 3.0
    offload.update_device()
    stream.sync()
    # Once the copy has run, host changes no longer reach the device.
    offload.array[:] = 0.0
    np.testing.assert_array_equal(fetch(offload), np.full(5, 3.0))


def test_copy_is_bound_to_a_private_copy(stream, lib):
    host = np.arange(6.0)
    offload = stream.copy(host)
    assert offload.array is not host
    stream.invoke(lib.scale_double, offload, 6, 10.0)
    result = fetch(offload)
    np.testing.assert_array_equal(result, np.arange(6.0) * 10)
    np.testing.assert_array_equal(host, np.arange(6.0))


def test_copy_without_update_device(stream):
    host = np.arange(3.0)
    offload = stream.copy(host, update_device=False)
    offload.update_device()
    np.testing.assert_array_equal(fetch(offload), host)


def test_bind_fortran_array(stream, lib):
    host = np.asfortranarray(np.arange(12.0).reshape(3, 4))
    offload = stream.bind(host)
    assert offload.order == "F"
    stream.invoke(lib.scale_double, offload, 12, 2.0)
    np.testing.assert_array_equal(fetch(offload), np.arange(12.0).reshape(3, 4) * 2)


def test_bind_non_contiguous_is_a_value_error(stream, usable):
    with pytest.raises(ValueError):
        stream.bind(np.arange(20.0)[::2])
    with pytest.raises(ValueError):
        stream.bind(np.arange(20.0).reshape(4, 5)[:, 1:3])
    usable()


def test_bind_non_array_is_a_type_error(stream, usable):
    for bad in ([1.0, 2.0], 3.0, "abc", None):
        with pytest.raises(TypeError):
            stream.bind(bad)
    usable()


# ------------------------------------------------------------ creation

CREATORS = ["empty", "zeros", "ones"]


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("order", ["C", "F"])
def test_zeros_ones_empty(stream, dtype, order):
    zeros = stream.zeros((4, 3), dtype=dtype, order=order)
    ones = stream.ones((4, 3), dtype=dtype, order=order)
    empty = stream.empty((4, 3), dtype=dtype, order=order)
    for created in (zeros, ones, empty):
        assert created.shape == (4, 3)
        assert created.dtype == np.dtype(dtype)
        assert created.order == order
        assert created.array.shape == (4, 3)
    stream.sync()
    assert_matches(zeros.array, np.zeros((4, 3), dtype=dtype))
    assert_matches(ones.array, np.ones((4, 3), dtype=dtype))


def test_creators_default_to_float64(stream):
    for creator in CREATORS:
        assert getattr(stream, creator)(5).dtype == np.float64
    assert stream.bcast(1.0, 5).dtype == np.float64


def test_creators_accept_an_int_shape(stream):
    assert stream.zeros(7).shape == (7,)
    assert stream.bcast(2.0, 7).shape == (7,)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_bcast(stream, dtype):
    value = scalar_sample(dtype, "value", python=False)
    offload = stream.bcast(value, (5, 2), dtype=dtype)
    stream.sync()
    assert_matches(offload.array, np.full((5, 2), value, dtype=dtype))


def test_update_host_false_leaves_the_host_array_alone(stream):
    offload = stream.ones(6, update_host=False)
    offload.array[:] = 7.0
    stream.sync()
    np.testing.assert_array_equal(offload.array, np.full(6, 7.0))
    np.testing.assert_array_equal(fetch(offload), np.ones(6))


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_like_creators(stream, dtype):
    other = stream.bind(np.asfortranarray(sample(dtype, (3, 4), "value")))
    made = {"empty": stream.empty_like(other), "zeros": stream.zeros_like(other),
            "ones": stream.ones_like(other),
            "bcast": stream.bcast_like(scalar_sample(dtype, "value", python=False), other)}
    stream.sync()
    for created in made.values():
        assert created.shape == other.shape
        assert created.dtype == other.dtype
        assert created.order == other.order
    assert_matches(made["zeros"].array, np.zeros((3, 4), dtype=dtype))
    assert_matches(made["ones"].array, np.ones((3, 4), dtype=dtype))
    assert_matches(made["bcast"].array,
                   np.full((3, 4), scalar_sample(dtype, "value", python=False), dtype=dtype))


def test_like_creators_accept_ndarrays(stream):
    template = np.zeros((2, 2), dtype=np.int32)
    made = stream.ones_like(template)
    stream.sync()
    assert made.dtype == np.int32
    np.testing.assert_array_equal(made.array, np.ones((2, 2), dtype=np.int32))


# ------------------------------------------------------------ streams

def test_assign_stream_moves_later_operations(stream, device):
    other = device.create_stream()
    offload = stream.bind(np.arange(5.0))
    offload.assign_stream(other)
    assert offload.stream is other
    doubled = offload + offload
    assert doubled.stream is other
    np.testing.assert_array_equal(fetch(doubled), np.arange(5.0) * 2)


def test_assign_stream_rejects_non_streams(stream, usable):
    offload = stream.bind(np.arange(5.0))
    with pytest.raises((TypeError, ValueError)):
        offload.assign_stream("stream")
    usable()


# ------------------------------------------------------------ bad operands

@pytest.mark.parametrize("op", [operator.add, operator.sub, operator.mul, operator.pow,
                                operator.iadd, operator.isub, operator.imul])
def test_mismatched_shape_is_a_value_error(stream, usable, op):
    left = stream.bind(np.ones(6))
    with pytest.raises(ValueError):
        op(left, stream.bind(np.ones(5)))
    with pytest.raises(ValueError):
        op(left, np.ones((2, 3)))
    usable()


@pytest.mark.parametrize("op", [operator.add, operator.sub, operator.mul, operator.pow,
                                operator.iadd, operator.isub, operator.imul])
def test_mismatched_dtype_is_a_value_error(stream, usable, op):
    left = stream.bind(np.ones(6, dtype=np.int32))
    with pytest.raises(ValueError):
        op(left, stream.bind(np.ones(6, dtype=np.int64)))
    with pytest.raises(ValueError):
        op(left, np.ones(6, dtype=np.float64))
    usable()


@pytest.mark.parametrize("dtype, scalar", [
    (np.int64, 2.5), (np.int32, 1j), (np.float64, 1 + 1j), (np.float32, np.complex64(1))])
def test_scalar_of_another_type_is_a_value_error(stream, usable, dtype, scalar):
    left = stream.bind(np.ones(4, dtype=dtype))
    with pytest.raises(ValueError):
        left + scalar
    with pytest.raises(ValueError):
        left *= scalar
    usable()


def test_operand_of_unsupported_type_is_rejected(stream, usable):
    left = stream.bind(np.ones(3))
    with pytest.raises((TypeError, ValueError)):
        left + "text"
    with pytest.raises((TypeError, ValueError)):
        left + [1.0, 2.0, 3.0]
    usable()


def test_failed_operation_leaves_the_array_intact(stream, usable):
    left = stream.bind(np.arange(4.0))
    with pytest.raises(ValueError):
        left += np.ones(5)
    np.testing.assert_array_equal(fetch(left), np.arange(4.0))
    usable()


# ------------------------------------------------------------ layouts and misc

def test_fortran_arrays_add_like_numpy(stream):
    left = np.asfortranarray(np.arange(12.0).reshape(3, 4))
    right = np.asfortranarray(np.arange(12.0).reshape(3, 4) * 10)
    result = stream.bind(left.copy(order="F")) + stream.bind(right.copy(order="F"))
    np.testing.assert_array_equal(fetch(result), left + right)


def test_mixed_memory_orders_give_numpy_result_or_value_error(stream):
    # Element-wise kernels see flat buffers: a C and an F array of one shape
    # hold their elements in different places.  pymic must either line them
    # up (NumPy's answer) or refuse, never add unrelated elements.
    c_order = np.arange(6.0).reshape(2, 3)
    f_order = np.asfortranarray(np.arange(6.0).reshape(2, 3) * 10)
    try:
        result = stream.bind(c_order.copy()) + stream.bind(f_order.copy(order="F"))
    except ValueError:
        return
    np.testing.assert_array_equal(fetch(result), c_order + f_order)


def test_row_slice_of_a_two_dimensional_array(stream):
    host = np.zeros((4, 3))
    offload = stream.bind(host.copy())
    rows = np.arange(6.0).reshape(2, 3)
    offload[1:3] = rows
    host[1:3] = rows
    np.testing.assert_array_equal(fetch(offload), host)


def test_fillfrom_of_wrong_shape_is_a_value_error(stream, usable):
    offload = stream.bind(np.zeros(4))
    with pytest.raises(ValueError):
        offload.fillfrom(np.ones(5))
    with pytest.raises(ValueError):
        offload.fillfrom(np.ones((2, 2)).T[:, :1])
    np.testing.assert_array_equal(fetch(offload), np.zeros(4))
    usable()


def test_fillfrom_of_another_dtype_converts_like_numpy_or_refuses(stream, usable):
    offload = stream.bind(np.zeros(4))
    source = np.array([1, -2, 3, 2**40], dtype=np.int64)
    try:
        offload.fillfrom(source)
    except ValueError:
        np.testing.assert_array_equal(fetch(offload), np.zeros(4))
    else:
        # Never the raw bytes of the int64 values reinterpreted as doubles.
        np.testing.assert_array_equal(fetch(offload), source.astype(np.float64))
    usable()


def test_fill_with_a_value_of_another_kind_is_a_value_error(stream, usable):
    offload = stream.bind(np.zeros(4, dtype=np.int64))
    with pytest.raises(ValueError):
        offload.fill(2.5)
    with pytest.raises((TypeError, ValueError)):
        offload.fill("one")
    usable()


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_empty_arrays_work_like_numpy(stream, dtype):
    empty = stream.bind(np.zeros(0, dtype=dtype))
    total = empty + empty
    total += empty
    scaled = empty * scalar_sample(dtype, "value", python=False)
    assert fetch(total).shape == (0,)
    assert fetch(scaled).shape == (0,)
    assert fetch(abs(empty)).shape == (0,)
    assert stream.zeros((0, 3), dtype=dtype).shape == (0, 3)


def test_operands_on_two_streams_are_ordered(device, lib):
    # b's copy to the device waits behind a sleeping kernel on its stream;
    # a + b on a's stream must still see b's data, as a user expects.
    first, second = device.create_stream(), device.create_stream()
    a = first.bind(np.ones(4))
    second.invoke(lib.sleep_ms, 150)
    b = second.bind(np.full(4, 10.0))
    total = a + b
    a += b
    np.testing.assert_array_equal(fetch(total), np.full(4, 11.0))
    np.testing.assert_array_equal(fetch(a), np.full(4, 11.0))
    second.sync()


# ------------------------------------------------ read-only description

DESCRIPTION = ["array", "device", "stream", "shape", "dtype", "size", "ndim", "order",
               "nbytes"]


@pytest.mark.parametrize("name", DESCRIPTION)
def test_description_attributes_are_read_only(stream, usable, name):
    offload = stream.bind(np.arange(6.0))
    before = getattr(offload, name)
    replacement = {"stream": stream.get_device().create_stream(), "shape": (10**8,),
                   "dtype": np.dtype(np.complex128), "order": "F"}.get(name, 10**8)
    with pytest.raises(AttributeError, match=f"OffloadArray.{name} is read-only"):
        setattr(offload, name, replacement)
    with pytest.raises(AttributeError, match=f"OffloadArray.{name} is read-only"):
        delattr(offload, name)
    assert getattr(offload, name) is before
    np.testing.assert_array_equal(fetch(offload + 1.0), np.arange(6.0) + 1.0)
    usable()


def test_enlarged_size_cannot_run_a_kernel_past_the_buffer(stream, usable):
    # The report's crash: size set to 10**8, then a kernel over size elements.
    offload = stream.bind(np.ones(4))
    with pytest.raises(AttributeError):
        offload.size = 10**8
    with pytest.raises(AttributeError):
        offload.nbytes = 8 * 10**8
    np.testing.assert_array_equal(fetch(offload + 1.0), np.full(4, 2.0))
    usable()


def test_stream_attribute_names_assign_stream(stream):
    offload = stream.bind(np.zeros(3))
    with pytest.raises(AttributeError, match=r"assign_stream\(\)"):
        offload.stream = stream.get_device().create_stream()
    assert offload.stream is stream


def test_internal_description_must_fit_the_device_buffer(stream, usable):
    # The private setters keep the rule too: the bytes described lie inside
    # the allocation, so no route gives a kernel a wrong size.
    offload = stream.bind(np.zeros(8))
    with pytest.raises(ValueError, match="beyond"):
        offload._describe(offload.array, offload.device, offload.stream, (16,),
                          offload.dtype, "C")
    with pytest.raises(ValueError, match="beyond"):
        offload._doffset = 8
    with pytest.raises(TypeError):
        offload._set_stream("not a stream")
    assert offload.shape == (8,) and offload.size == 8 and offload._doffset == 0
    usable()


def test_views_describe_their_own_rows(stream):
    offload = stream.bind(np.arange(12.0).reshape(4, 3))
    rows = offload[1:3]
    row = offload[3]
    assert (rows.shape, rows.size, rows.nbytes, rows.ndim) == ((2, 3), 6, 48, 2)
    assert (row.shape, row.size, row.nbytes, row.ndim) == ((3,), 3, 24, 1)
    assert rows.stream is offload.stream and rows.device == offload.device


def test_stream_of_another_device_is_refused_on_every_route():
    # Needs two devices, so in a child process with its own PYMIC_DEVICES
    # (of the kind this run tests).
    import pymic
    kind = pymic.devices[0].kind
    result = run_python(
        "import numpy as np, pymic\n"
        "a = pymic.devices[0].get_default_stream().bind(np.arange(4.0))\n"
        "other = pymic.devices[1].create_stream()\n"
        "for attempt in (lambda: a.assign_stream(other),\n"
        "                lambda: setattr(a, 'stream', other),\n"
        "                lambda: a._set_stream(other)):\n"
        "    try:\n"
        "        attempt()\n"
        "    except (AttributeError, ValueError) as error:\n"
        "        print(type(error).__name__)\n"
        "assert a.stream is pymic.devices[0].get_default_stream()\n"
        "b = (a + 1.0).update_host()\n"
        "b.stream.sync()\n"
        "print(b.array.tolist())\n",
        env={"PYMIC_DEVICES": f"{kind};{kind}"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:4] == ["ValueError", "AttributeError", "ValueError",
                                              "[1.0, 2.0, 3.0, 4.0]"]


# ------------------------------------------------ every fixed-size dtype

HELD = {
    "bool": np.dtype(np.bool_),
    "int8": np.dtype(np.int8),
    "uint8": np.dtype(np.uint8),
    "int16": np.dtype(np.int16),
    "uint16": np.dtype(np.uint16),
    "uint32": np.dtype(np.uint32),
    "float16": np.dtype(np.float16),
    "complex64": np.dtype(np.complex64),
    "complex128": np.dtype(np.complex128),
    "structured": np.dtype([("x", np.int32), ("y", np.float64), ("tag", "S3")]),
    "aligned_structured": np.dtype([("a", np.uint8), ("b", np.float64)], align=True),
    "datetime64": np.dtype("M8[s]"),
    "timedelta64": np.dtype("m8[ms]"),
    "bytes": np.dtype("S5"),
    "str": np.dtype("U3"),
    "big_endian_float64": np.dtype(">f8"),
}
KERNEL_DTYPES = {np.dtype(d) for d in DTYPES}
WITHOUT_KERNELS = {name: dtype for name, dtype in HELD.items() if dtype not in KERNEL_DTYPES}


def distinct_values(dtype, shape, seed):
    """Values of `dtype` that differ from element to element and between seeds."""
    n = int(np.prod(shape))
    counter = np.arange(n) + 37 * seed + 1
    if dtype.names:
        values = np.zeros(n, dtype)
        for name in dtype.names:
            values[name] = distinct_values(dtype.fields[name][0], (n,), seed)
    elif dtype.kind == "b":
        values = counter % 3 == seed % 3
    elif dtype.kind in "iu":
        values = counter % 100
    elif dtype.kind == "f":
        values = counter * 0.5  # exact in float16 too
    elif dtype.kind == "c":
        values = counter - 1j * counter
    elif dtype.kind == "M":
        values = np.datetime64("2020-01-01T00:00:00") + counter.astype("m8[s]")
    elif dtype.kind == "m":
        values = counter.astype("m8[ms]")
    elif dtype.kind == "S":
        values = np.array([b"b%d" % (i % 1000) for i in counter])
    else:
        values = np.array([str(i % 1000) for i in counter])
    return np.asarray(values).astype(dtype).reshape(shape)


def element_of(dtype, seed=5):
    """One element of `dtype` as NumPy gives it (numpy.void for structured ones)."""
    return distinct_values(dtype, (1,), seed)[0]


@pytest.mark.parametrize("dtype", HELD.values(), ids=HELD.keys())
@pytest.mark.parametrize("order", ["C", "F"])
def test_every_fixed_size_dtype_round_trips(stream, dtype, order):
    host = np.array(distinct_values(dtype, (7, 3), 0), order=order)
    sent = host.copy()
    offload = stream.bind(host)
    stream.sync()
    assert (offload.dtype, offload.shape, offload.nbytes) == (dtype, (7, 3), host.nbytes)
    host[...] = distinct_values(dtype, (7, 3), 1)
    offload.update_host()
    stream.sync()
    np.testing.assert_array_equal(host, sent)  # back from the device
    changed = distinct_values(dtype, (7, 3), 2)
    host[...] = changed
    offload.update_device()
    stream.sync()
    host[...] = distinct_values(dtype, (7, 3), 1)
    offload.update_host()
    stream.sync()
    np.testing.assert_array_equal(host, changed)


@pytest.mark.parametrize("dtype", HELD.values(), ids=HELD.keys())
@pytest.mark.parametrize("order", ["C", "F"])
def test_every_fixed_size_dtype_gets_and_sets(stream, dtype, order):
    # get()/set(), the explicit conversions, for the dtypes without kernels
    # too (datetime64, structured, strings, either byte order).
    host = np.array(distinct_values(dtype, (5, 3), 0), order=order)
    offload = stream.bind(host)
    got = offload.get()
    assert got is not host and got.dtype == dtype and got.shape == (5, 3)
    np.testing.assert_array_equal(got, distinct_values(dtype, (5, 3), 0))
    changed = distinct_values(dtype, (5, 3), 1)
    assert offload.set(changed[::-1][::-1]) is offload
    np.testing.assert_array_equal(offload.get(), changed)
    np.testing.assert_array_equal(host, distinct_values(dtype, (5, 3), 0))  # host copy untouched
    if order == "C":  # rows of a view (Fortran-order arrays have no row views)
        rows = offload[1:4]
        rows.set(distinct_values(dtype, (3, 3), 2))
        expected = changed.copy()
        expected[1:4] = distinct_values(dtype, (3, 3), 2)
        np.testing.assert_array_equal(offload.get(), expected)
        np.testing.assert_array_equal(rows.get(), expected[1:4])


@pytest.mark.parametrize("dtype", HELD.values(), ids=HELD.keys())
def test_every_fixed_size_dtype_slices_and_assigns(stream, dtype):
    values = distinct_values(dtype, (10, 2), 0)
    offload = stream.bind(values.copy())
    rows = offload[3:7]
    assert (rows.dtype, rows.shape) == (dtype, (4, 2))
    np.testing.assert_array_equal(fetch(rows), values[3:7])
    new_rows = distinct_values(dtype, (2, 2), 1)
    offload[1:3] = new_rows  # ndarray -> device
    offload[5:7] = offload[0:2]  # device -> device
    expected = values.copy()
    expected[1:3] = new_rows
    expected[5:7] = expected[0:2]
    np.testing.assert_array_equal(fetch(offload), expected)

    line = stream.bind(distinct_values(dtype, (9,), 0))
    element = element_of(dtype)
    line[2:5] = element  # a scalar fills rows of the device buffer
    line[7] = element
    expected = distinct_values(dtype, (9,), 0)
    expected[2:5] = element
    expected[7] = element
    np.testing.assert_array_equal(fetch(line), expected)


@pytest.mark.parametrize("dtype", HELD.values(), ids=HELD.keys())
def test_every_fixed_size_dtype_copies_reshapes_and_fills(stream, dtype):
    values = distinct_values(dtype, (1001,), 0)  # an odd count of elements
    copied = stream.copy(values)
    assert copied.array is not values
    np.testing.assert_array_equal(fetch(copied.reshape(7, 143)), values.reshape(7, 143))

    element = element_of(dtype)
    filled = stream.bcast(element, 1001, dtype)
    zeros = stream.zeros((1001,), dtype)
    like = stream.zeros_like(copied)
    part = stream.bind(values.copy())
    part[100:900].fill(element)
    stream.sync()
    full = np.zeros(1001, dtype)
    full[:] = element
    np.testing.assert_array_equal(filled.array, full)
    np.testing.assert_array_equal(zeros.array, np.zeros(1001, dtype))
    np.testing.assert_array_equal(like.array, np.zeros(1001, dtype))
    expected = values.copy()
    expected[100:900] = element
    np.testing.assert_array_equal(fetch(part), expected)

    source = distinct_values(dtype, (1001,), 3)
    copied.fillfrom(source)
    np.testing.assert_array_equal(fetch(copied), source)


@pytest.mark.parametrize("dtype", HELD.values(), ids=HELD.keys())
def test_ones_for_number_dtypes_and_a_type_error_otherwise(stream, usable, dtype):
    if dtype.kind in "biufc":
        ones = stream.ones((5, 3), dtype)
        stream.sync()
        np.testing.assert_array_equal(ones.array, np.ones((5, 3), dtype))
    else:
        with pytest.raises(TypeError, match=re.escape(str(dtype))):
            stream.ones(5, dtype)
        with pytest.raises(TypeError, match=re.escape(str(dtype))):
            stream.zeros(5, dtype).one()
        usable()


@pytest.mark.parametrize("dtype", WITHOUT_KERNELS.values(), ids=WITHOUT_KERNELS.keys())
def test_fill_with_a_value_the_dtype_cannot_hold_is_a_value_error(stream, usable, dtype):
    offload = stream.bind(distinct_values(dtype, (4,), 0))
    wrong = {"b": 1, "i": 1.5, "u": -1, "f": 1j, "c": "x", "M": 5, "m": np.datetime64(0, "s"),
             "S": "much too long", "U": "much too long", "V": 7}[dtype.kind]
    with pytest.raises(ValueError):
        offload.fill(wrong)
    np.testing.assert_array_equal(fetch(offload), distinct_values(dtype, (4,), 0))
    usable()


ARITHMETIC = {
    "'+'": lambda a: a + a,
    "'-'": lambda a: a - a,
    "'*'": lambda a: a * a,
    "'**'": lambda a: a ** a,
    "reflected '-'": lambda a: 1 - a,
    "reflected '**'": lambda a: 2 ** a,
    "'+='": lambda a: operator.iadd(a, a),
    "'-='": lambda a: operator.isub(a, a),
    "'*='": lambda a: operator.imul(a, a),
    "'abs()'": abs,
    "'reverse()'": lambda a: a.reverse(),
}


@pytest.mark.parametrize("operation", ARITHMETIC, ids=ARITHMETIC.keys())
@pytest.mark.parametrize("dtype", WITHOUT_KERNELS.values(), ids=WITHOUT_KERNELS.keys())
def test_arithmetic_without_kernels_is_a_type_error_naming_dtype_and_operation(
        stream, usable, dtype, operation):
    values = distinct_values(dtype, (5,), 0)
    offload = stream.bind(values.copy())
    with pytest.raises(TypeError) as error:
        ARITHMETIC[operation](offload)
    message = str(error.value)
    assert str(dtype) in message
    assert operation.split()[-1] in message
    np.testing.assert_array_equal(fetch(offload), values)
    usable()


def test_kernels_run_on_byte_arrays_as_in_pymic(stream, device):
    library = device.load_source(
        "#include <pymic_kernel.h>\n"
        "PYMIC_KERNEL void add_one_to_bytes(uint8_t *data, const int64_t *n)\n"
        "{ for (int64_t i = 0; i < *n; i++) data[i]++; }\n")
    data = np.arange(250, dtype=np.uint8)
    offload = stream.bind(data)
    stream.invoke(library.add_one_to_bytes, offload[10:], 240)
    offload.update_host()
    stream.sync()
    expected = np.arange(250, dtype=np.uint8)
    expected[10:] += 1
    np.testing.assert_array_equal(data, expected)


UNHELD = {
    "bind_object_array": lambda s: s.bind(np.array([1, None], dtype=object)),
    "empty_object": lambda s: s.empty(3, dtype=object),
    "zeros_structured_with_object": lambda s: s.zeros(3, [("x", "f8"), ("o", object)]),
    "unsized_bytes": lambda s: s.empty(3, dtype="S"),
    "unsized_str": lambda s: s.zeros(3, dtype="U"),
    "sub_array_dtype": lambda s: s.empty(3, dtype=(np.float64, (2,))),
}


@pytest.mark.parametrize("make", UNHELD.values(), ids=UNHELD.keys())
def test_dtypes_an_offload_array_cannot_hold_are_a_type_error(stream, usable, make):
    with pytest.raises(TypeError, match="OffloadArray cannot hold"):
        make(stream)
    usable()


@pytest.mark.parametrize("dtype", HELD.values(), ids=HELD.keys())
def test_an_element_of_a_one_dimensional_array_shares_the_bound_host_memory(stream, dtype):
    values = distinct_values(dtype, (5,), 0)
    offload = stream.bind(values.copy())
    element = offload[3]
    assert element.shape == () and element.size == 1
    assert isinstance(element.array, np.ndarray)
    assert np.shares_memory(element.array, offload.array)
    element.fill(element_of(dtype))
    element.update_host()
    stream.sync()
    expected = values.copy()
    expected[3] = element_of(dtype)
    np.testing.assert_array_equal(offload.array, expected)
