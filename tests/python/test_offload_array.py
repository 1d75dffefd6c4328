"""OffloadArray (API.md section 7): every operation for every dtype, compared
with the same NumPy expression on the host."""

import operator

import numpy as np
import pytest

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


def test_arithmetic_on_an_unsupported_dtype_is_refused(stream, usable):
    try:
        offload = stream.bind(np.ones(4, dtype=np.int8))
    except (TypeError, ValueError):
        usable()
        return
    with pytest.raises((TypeError, ValueError)):
        offload + offload
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
