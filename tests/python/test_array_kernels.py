"""Checks every kernel of libpymic_array against NumPy, for every dtype.

The library is called directly through ctypes, so these tests need nothing
of pymic but the installed ``libpymic_array.so``: the package directory is
found with ``importlib.util.find_spec``, which does not execute the package.
``PYMIC_ARRAY_LIBRARY=/path/to/libpymic_array.so`` tests another build.

Each kernel writes into a buffer with guard elements behind the last one,
so a kernel that writes past ``n`` fails the test.  Sizes cover the empty
array, odd sizes around the vector widths and both OpenMP thresholds.
"""

import ctypes
import importlib.util
import os

import numpy as np
import pytest

DTYPES = {
    "int64": np.int64, "int32": np.int32, "uint64": np.uint64,
    "float64": np.float64, "float32": np.float32,
    "complex128": np.complex128, "complex64": np.complex64,
}
INTEGER = ["int64", "int32", "uint64"]
FLOAT = ["float64", "float32"]
COMPLEX = ["complex128", "complex64"]

# 0, 1, sizes around 4/8/16-element vectors, around PYMIC_TEAM_MIN_COSTLY
# (512) and around PYMIC_TEAM_MIN_CHEAP (256 KiB of elements: 16 Ki for
# complex128, 32 Ki for 8-byte dtypes, 64 Ki for 4-byte ones), see
# src/kernels/array_loop.h.
SIZES = [0, 1, 3, 7, 8, 9, 15, 16, 17, 33, 63, 511, 512, 513,
         16383, 16385, 32767, 32769, 65535, 65536, 65537]
GUARD = 16


def find_library():
    """Locate the libpymic_array.so to test.

    Returns
    -------
    str
        ``$PYMIC_ARRAY_LIBRARY`` if set, else the file in the installed
        pymic package directory.
    """
    override = os.environ.get("PYMIC_ARRAY_LIBRARY")
    if override:
        return override
    spec = importlib.util.find_spec("pymic")
    if spec is None or not spec.submodule_search_locations:
        pytest.fail("pymic is not installed (run `make install`)")
    for directory in spec.submodule_search_locations:
        candidate = os.path.join(directory, "libpymic_array.so")
        if os.path.exists(candidate):
            return candidate
    pytest.fail("libpymic_array.so is missing from the pymic package")


@pytest.fixture(scope="module")
def lib():
    """The kernel library, loaded with ctypes.

    Returns
    -------
    ctypes.CDLL
    """
    return ctypes.CDLL(find_library())


def call(lib, name, *buffers):
    """Call kernel `name` with one pointer per buffer, as pymic does.

    Parameters
    ----------
    lib : ctypes.CDLL
        The kernel library.
    name : str
        Exported kernel name.
    *buffers : numpy.ndarray
        Arrays whose data pointers are passed, in order.
    """
    kernel = getattr(lib, name)
    kernel.restype = None
    kernel.argtypes = [ctypes.c_void_p] * len(buffers)
    kernel(*(b.ctypes.data for b in buffers))


def count(n):
    """The `n` argument: a pointer to one int64."""
    return np.array([n], dtype=np.int64)


def scalar(value, dtype):
    """A scalar operand: a pointer to one element of `dtype`."""
    return np.array([value], dtype=dtype)


def guarded(n, dtype, fill=0):
    """An output buffer of `n` elements followed by GUARD sentinels.

    Returns
    -------
    numpy.ndarray
        The whole buffer; ``buffer[:n]`` is what the kernel may write.
    """
    buffer = np.empty(n + GUARD, dtype=dtype)
    buffer[:] = fill
    buffer[n:] = 7
    return buffer


def check_guard(buffer, n):
    """Fail if a kernel wrote past element `n`."""
    assert np.all(buffer[n:] == 7), "kernel wrote past the end of its output"


def random_values(n, dtype, rng, low=-100, high=100):
    """`n` random values of `dtype` in [low, high) (both parts if complex)."""
    dtype = np.dtype(dtype)
    if dtype.kind in "iu":
        low = max(low, 0) if dtype.kind == "u" else low
        return rng.integers(low, high, n).astype(dtype)
    values = rng.uniform(low, high, n)
    if dtype.kind == "c":
        values = values + 1j * rng.uniform(low, high, n)
    return values.astype(dtype)


def assert_matches(actual, expected, rtol=0.0):
    """Compare element-wise: exactly when rtol is 0, else within rtol.

    NaNs must sit at the same places; infinities must match exactly.
    """
    assert actual.dtype == expected.dtype
    if rtol == 0.0:
        np.testing.assert_array_equal(actual, expected)
    else:
        np.testing.assert_allclose(actual, expected, rtol=rtol, atol=0)


def assert_within_ulps(actual, expected, ulps):
    """Finite values within `ulps` units in the last place of `expected`;
    NaNs, infinities and zeros exactly where `expected` has them."""
    assert actual.dtype == expected.dtype
    finite = np.isfinite(expected)
    np.testing.assert_array_equal(actual[~finite], expected[~finite])
    np.testing.assert_array_equal(actual[expected == 0], expected[expected == 0])
    spacing = np.spacing(np.abs(expected[finite]))
    error = np.abs(actual[finite].astype(np.float64) - expected[finite])
    worst = np.max(error / spacing, initial=0.0)
    assert worst <= ulps, f"off by {worst} ulp"


def assert_product_close(result, x, y):
    """Check a complex product against NumPy's within its rounding error.

    Whether a product is fused into multiply-adds depends on the vector path
    (GCC's and NumPy's alike), so the exact bits may differ by an ulp of
    |x||y| per component; anything beyond four such ulps is a wrong result.
    """
    expected = x * y
    assert result.dtype == expected.dtype
    eps = np.finfo(result.real.dtype).eps
    bound = 4 * eps * (np.abs(x).astype(np.float64) * np.abs(y))
    error = np.abs(result.astype(np.complex128) - expected)
    assert np.all(error <= bound), f"max error {np.max(error - bound)} over bound"


def check_op(op, result, x, y):
    """Assert `result` is x op y (x, y arrays or broadcast scalars)."""
    with np.errstate(all="ignore"):
        if op == "mul" and result.dtype.kind == "c":
            assert_product_close(result, *np.broadcast_arrays(x, y))
        else:
            assert_matches(result, OPERATORS[op](x, y).astype(result.dtype))


OPERATORS = {
    "add": lambda x, y: x + y,
    "sub": lambda x, y: x - y,
    "mul": lambda x, y: x * y,
}


def run_binary(lib, kernel, a, b, n, dtype, alias):
    """Run an array-array kernel out = kernel(a, b) with optional aliasing.

    Parameters
    ----------
    alias : {None, "a", "b"}
        Which input the output buffer is, if any.

    Returns
    -------
    numpy.ndarray
        The n result elements.
    """
    out = guarded(n, dtype)
    a_buf, b_buf = a, b
    if alias == "a":
        out[:n] = a
        a_buf = out
    elif alias == "b":
        out[:n] = b
        b_buf = out
    call(lib, kernel, a_buf, b_buf, out, count(n))
    check_guard(out, n)
    return out[:n]


def run_with_scalar(lib, kernel, a, s, n, dtype, in_place):
    """Run kernel(a, s, out) with out == a when in_place; return out[:n]."""
    out = guarded(n, dtype)
    source = a
    if in_place:
        out[:n] = a
        source = out
    call(lib, kernel, source, scalar(s, dtype), out, count(n))
    check_guard(out, n)
    return out[:n]


# ------------------------------------------------------- add, sub, mul
@pytest.mark.parametrize("alias", [None, "a", "b"])
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("suffix", list(DTYPES))
@pytest.mark.parametrize("op", ["add", "sub", "mul"])
def test_array_op_array(lib, op, suffix, n, alias):
    dtype = DTYPES[suffix]
    rng = np.random.default_rng(n)
    a, b = random_values(n, dtype, rng), random_values(n, dtype, rng)
    result = run_binary(lib, f"pymic_array_{op}_{suffix}", a, b, n, dtype, alias)
    check_op(op, result, a, b)


@pytest.mark.parametrize("in_place", [False, True])
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("suffix", list(DTYPES))
@pytest.mark.parametrize("op", ["add", "sub", "mul", "rsub"])
def test_array_op_scalar(lib, op, suffix, n, in_place):
    dtype = DTYPES[suffix]
    rng = np.random.default_rng(n + 1)
    a = random_values(n, dtype, rng)
    s = random_values(1, dtype, rng)
    kernel = (f"pymic_array_rsub_scalar_{suffix}" if op == "rsub"
              else f"pymic_array_{op}_scalar_{suffix}")
    result = run_with_scalar(lib, kernel, a, s[0], n, dtype, in_place)
    if op == "rsub":
        check_op("sub", result, s, a)
    else:
        check_op(op, result, a, s)


@pytest.mark.parametrize("alias", [None, "a", "b"])
@pytest.mark.parametrize("offset", [0, 1])
@pytest.mark.parametrize("suffix", list(DTYPES))
def test_array_op_beyond_the_caches(lib, suffix, offset, alias):
    # Outputs of 16 MiB and more, starting on or off a 64-byte line, with
    # the team splitting them in dynamic chunks.
    dtype = DTYPES[suffix]
    n = (16 << 20) // np.dtype(dtype).itemsize + 37
    rng = np.random.default_rng(offset)
    a, b = random_values(n, dtype, rng), random_values(n, dtype, rng)
    buffer = guarded(n + offset, dtype)
    buffer[:offset] = 7
    out = buffer[offset:]
    operands = {"a": a, "b": b}
    if alias is not None:
        out[:n] = operands[alias]
        operands[alias] = out
    call(lib, f"pymic_array_sub_{suffix}", operands["a"], operands["b"], out, count(n))
    check_guard(out, n)
    assert np.all(buffer[:offset] == 7), "kernel wrote before its output"
    check_op("sub", out[:n], a, b)
    if alias is None:
        result = guarded(n, ABS_RESULT.get(suffix, dtype))
        call(lib, f"pymic_array_abs_{suffix}", a, result, count(n))
        check_guard(result, n)
        if suffix in ABS_RESULT:
            assert_within_ulps(result[:n], np.abs(a), 3)
        else:
            assert_matches(result[:n], np.abs(a))


@pytest.mark.parametrize("suffix", INTEGER)
def test_integer_arithmetic_wraps_like_numpy(lib, suffix):
    dtype = DTYPES[suffix]
    info = np.iinfo(dtype)
    a = np.array([info.max, info.min, info.max, info.min, 3], dtype=dtype)
    b = np.array([1, 1, 2, info.max, info.max], dtype=dtype)
    for op in ["add", "sub", "mul"]:
        result = run_binary(lib, f"pymic_array_{op}_{suffix}", a, b,
                            a.size, dtype, None)
        check_op(op, result, a, b)


# ------------------------------------------------------------------ abs
ABS_RESULT = {"complex128": np.float64, "complex64": np.float32}


# Complex abs changes the element type, so it has no in-place form.
ABS_CASES = [(suffix, in_place) for suffix in DTYPES for in_place in (False, True)
             if not (in_place and suffix in ABS_RESULT)]


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("suffix,in_place", ABS_CASES)
def test_abs(lib, suffix, in_place, n):
    dtype = DTYPES[suffix]
    result_dtype = ABS_RESULT.get(suffix, dtype)
    rng = np.random.default_rng(n + 2)
    a = random_values(n, dtype, rng)
    out = guarded(n, result_dtype)
    source = a
    if in_place:
        out[:n] = a
        source = out
    call(lib, f"pymic_array_abs_{suffix}", source, out, count(n))
    check_guard(out, n)
    if suffix in ABS_RESULT:
        # NumPy's hypot is within an ulp of the truth; libmvec's within an
        # ulp on AVX-512 and within 2 ulp in its SSE variant.
        assert_within_ulps(out[:n], np.abs(a), 3)
    else:
        assert_matches(out[:n], np.abs(a))


@pytest.mark.parametrize("suffix", ["int64", "int32"])
def test_abs_of_most_negative_integer_wraps(lib, suffix):
    dtype = DTYPES[suffix]
    a = np.array([np.iinfo(dtype).min, -1, 0, 5], dtype=dtype)
    out = guarded(a.size, dtype)
    call(lib, f"pymic_array_abs_{suffix}", a, out, count(a.size))
    with np.errstate(all="ignore"):
        assert_matches(out[:a.size], np.abs(a))


@pytest.mark.parametrize("suffix", ["float64", "float32", "complex128", "complex64"])
def test_abs_special_values(lib, suffix):
    dtype = DTYPES[suffix]
    tiny, huge = (1e-310, 1e300) if DTYPES[suffix](0).real.itemsize == 8 else (1e-40, 1e38)
    parts = [0.0, -0.0, np.inf, -np.inf, np.nan, tiny, 3.0, -4.0, huge, -huge]
    if suffix in COMPLEX:
        a = np.array([complex(x, y) for x in parts for y in parts], dtype=dtype)
    else:
        a = np.array(parts, dtype=dtype)
    result_dtype = ABS_RESULT.get(suffix, dtype)
    out = guarded(a.size, result_dtype)
    call(lib, f"pymic_array_abs_{suffix}", a, out, count(a.size))
    with np.errstate(all="ignore"):
        expected = np.abs(a)
    assert_within_ulps(out[:a.size], expected, 3 if suffix in ABS_RESULT else 0)
    assert np.array_equal(np.signbit(out[:a.size]), np.signbit(expected))


# ---------------------------------------------------------- fill, reverse
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("suffix", list(DTYPES))
def test_fill(lib, suffix, n):
    dtype = DTYPES[suffix]
    value = random_values(1, dtype, np.random.default_rng(n))
    out = guarded(n, dtype)
    call(lib, f"pymic_array_fill_{suffix}", out, value, count(n))
    check_guard(out, n)
    assert_matches(out[:n], np.full(n, value[0], dtype=dtype))


@pytest.mark.parametrize("offset", [0, 1, 3])
@pytest.mark.parametrize("suffix", list(DTYPES))
def test_fill_beyond_the_caches(lib, suffix, offset):
    # From PYMIC_STREAM_MIN_BYTES (16 MiB) on, fill uses streaming stores of
    # whole 64-byte lines; an offset start leaves elements before the first
    # line and after the last one to be written normally.
    dtype = DTYPES[suffix]
    n = (16 << 20) // np.dtype(dtype).itemsize + 37
    value = random_values(1, dtype, np.random.default_rng(offset))
    buffer = guarded(n + offset, dtype)
    buffer[:offset] = 7
    out = buffer[offset:]
    call(lib, f"pymic_array_fill_{suffix}", out, value, count(n))
    check_guard(out, n)
    assert np.all(buffer[:offset] == 7), "kernel wrote before its output"
    assert np.all(out[:n] == value[0])


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("suffix", list(DTYPES))
def test_reverse(lib, suffix, n):
    dtype = DTYPES[suffix]
    a = random_values(n, dtype, np.random.default_rng(n))
    out = guarded(n, dtype)
    call(lib, f"pymic_array_reverse_{suffix}", a, out, count(n))
    check_guard(out, n)
    assert_matches(out[:n], a[::-1])


# -------------------------------------------------------------- integer pow
def integer_power(base, exponent, dtype):
    """NumPy's a ** b for integers, extended to negative exponents.

    NumPy refuses negative integer exponents; pymic gives the truncated real
    result instead: 1 for base 1, +-1 for base -1, 0 otherwise.
    """
    base = np.asarray(base, dtype=dtype)
    exponent = np.asarray(exponent, dtype=dtype)
    base, exponent = np.broadcast_arrays(base, exponent)
    with np.errstate(all="ignore"):
        if np.dtype(dtype).kind == "u":
            return np.power(base, exponent)
        positive = np.power(base, np.maximum(exponent, 0))
    odd = (exponent % 2) != 0
    negative = np.where(base == 1, 1, np.where(base == -1, np.where(odd, -1, 1), 0))
    return np.where(exponent >= 0, positive, negative).astype(dtype)


def integer_pow_operands(n, dtype, rng):
    """Bases and exponents that exercise overflow, 0, +-1 and negatives."""
    signed = np.dtype(dtype).kind == "i"
    base = rng.integers(-3 if signed else 0, 4, n).astype(dtype)
    big = rng.integers(-10**6 if signed else 0, 10**6, n).astype(dtype)
    base = np.where(rng.random(n) < 0.3, big, base).astype(dtype)
    exponent = rng.integers(-5 if signed else 0, 70, n).astype(dtype)
    return base, exponent


@pytest.mark.parametrize("alias", [None, "a", "b"])
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("suffix", INTEGER)
def test_integer_pow(lib, suffix, n, alias):
    dtype = DTYPES[suffix]
    a, b = integer_pow_operands(n, dtype, np.random.default_rng(n))
    result = run_binary(lib, f"pymic_array_pow_{suffix}", a, b, n, dtype, alias)
    assert_matches(result, integer_power(a, b, dtype))


@pytest.mark.parametrize("suffix", INTEGER)
def test_integer_pow_edge_cases(lib, suffix):
    dtype = DTYPES[suffix]
    info = np.iinfo(dtype)
    signed = info.min < 0
    bits = np.dtype(dtype).itemsize * 8
    bases = [0, 1, 2, 3, info.max] + ([-1, -2, info.min] if signed else [])
    exponents = [0, 1, 2, 3, bits - 1, bits, 62, 63, 64, info.max] + (
        [-1, -2, -3, info.min] if signed else [])
    a = np.array([x for x in bases for _ in exponents], dtype=dtype)
    b = np.array([y for _ in bases for y in exponents], dtype=dtype)
    result = run_binary(lib, f"pymic_array_pow_{suffix}", a, b, a.size, dtype, None)
    assert_matches(result, integer_power(a, b, dtype))
    if signed:
        # Spelled out, independent of integer_power.
        index = {(x, y): i for i, (x, y) in enumerate(zip(a.tolist(), b.tolist()))}
        assert result[index[(-1, -3)]] == -1
        assert result[index[(-1, -2)]] == 1
        assert result[index[(1, -1)]] == 1
        assert result[index[(2, -1)]] == 0
        assert result[index[(0, -1)]] == 0
        assert result[index[(-2, bits - 1)]] == info.min
    assert result[index_of(a, b, 0, 0)] == 1
    assert result[index_of(a, b, 2, bits)] == 0
    assert result[index_of(a, b, 3, 2)] == 9


def index_of(a, b, base, exponent):
    """Position of the pair (base, exponent) in the operand arrays."""
    return int(np.flatnonzero((a == base) & (b == exponent))[0])


@pytest.mark.parametrize("in_place", [False, True])
@pytest.mark.parametrize("n", [0, 1, 17, 513, 65537])
@pytest.mark.parametrize("suffix", INTEGER)
def test_integer_pow_scalar(lib, suffix, n, in_place):
    dtype = DTYPES[suffix]
    rng = np.random.default_rng(n)
    a, b = integer_pow_operands(n, dtype, rng)
    exponents = [0, 1, 2, 3, 33, 64, int(np.iinfo(dtype).max)]
    exponents += [-1, -2, int(np.iinfo(dtype).min)] if suffix != "uint64" else []
    for s in exponents:
        result = run_with_scalar(lib, f"pymic_array_pow_scalar_{suffix}", a, s,
                                 n, dtype, in_place)
        assert_matches(result, integer_power(a, s, dtype))
    for s in [0, 1, 2, 3] + ([-1, -2] if suffix != "uint64" else []):
        result = run_with_scalar(lib, f"pymic_array_rpow_scalar_{suffix}", b, s,
                                 n, dtype, in_place)
        assert_matches(result, integer_power(s, b, dtype))


# ---------------------------------------------------------------- float pow
def reference_power(a, b):
    """a ** b with at most 1 ulp of error, NumPy's accuracy.

    float64: NumPy's own pow (SVML on AVX-512, within 1 ulp; the kernels'
    libmvec pow is within 1 ulp too, so they may differ by 2).  float32: the
    float64 power rounded to float32, i.e. the correctly rounded result in
    all but the rarest cases; the kernels' float32 path is within 1 ulp of
    it, and equal to it in all but about 3 in 10^4 cases.
    """
    with np.errstate(all="ignore"):
        if a.dtype == np.float32:
            return np.power(a.astype(np.float64), b.astype(np.float64)).astype(np.float32)
        return np.power(a, b)


POW_ULPS = {"float64": 2, "float32": 1}


@pytest.mark.parametrize("alias", [None, "a", "b"])
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("suffix", FLOAT)
def test_float_pow(lib, suffix, n, alias):
    dtype = DTYPES[suffix]
    rng = np.random.default_rng(n)
    a = rng.uniform(0, 20, n).astype(dtype)
    b = rng.uniform(-8, 8, n).astype(dtype)
    result = run_binary(lib, f"pymic_array_pow_{suffix}", a, b, n, dtype, alias)
    assert_within_ulps(result, reference_power(a, b), POW_ULPS[suffix])


@pytest.mark.parametrize("suffix", FLOAT)
def test_float_pow_special_values(lib, suffix):
    dtype = DTYPES[suffix]
    values = [0.0, -0.0, 1.0, -1.0, 2.0, -2.0, 0.5, -0.5, 3.0, -3.0,
              np.inf, -np.inf, np.nan, 1e-30, 1e30, 100.0]
    a = np.array([x for x in values for _ in values], dtype=dtype)
    b = np.array([y for _ in values for y in values], dtype=dtype)
    result = run_binary(lib, f"pymic_array_pow_{suffix}", a, b, a.size, dtype, None)
    expected = reference_power(a, b)
    assert_within_ulps(result, expected, POW_ULPS[suffix])
    assert np.array_equal(np.signbit(result), np.signbit(expected))
    with np.errstate(all="ignore"):
        np.testing.assert_array_equal(np.isnan(result), np.isnan(np.power(a, b)))


@pytest.mark.parametrize("suffix", FLOAT)
def test_float_pow_whole_range(lib, suffix):
    # Bases across the exponent range and exponents large enough to overflow
    # and to underflow into subnormals: the float32 fast path clamps there.
    dtype = DTYPES[suffix]
    rng = np.random.default_rng(11)
    n = 100_000
    limit = 80 if suffix == "float32" else 700
    a = np.exp(rng.uniform(-limit, limit, n)).astype(dtype)
    b = rng.uniform(-4, 4, n).astype(dtype)
    b[::3] = rng.uniform(-300, 300, n)[::3].astype(dtype)
    result = run_binary(lib, f"pymic_array_pow_{suffix}", a, b, n, dtype, None)
    assert_within_ulps(result, reference_power(a, b), POW_ULPS[suffix])


def test_float32_pow_large_exponents(lib):
    # Finite results with |y log2(x)| up to 149, where the float32 path's
    # error in log2(x) is multiplied most: still within 1 ulp, and correctly
    # rounded in all but about 3 in 10^4 cases (its polynomials leave under
    # 1/100 ulp before rounding).
    rng = np.random.default_rng(12)
    n = 200_000
    a = np.exp2(rng.uniform(-20, 20, n)).astype(np.float32)
    a[a == 1] = 2
    target = rng.uniform(-149, 127.9, n)
    b = (target / np.log2(a.astype(np.float64))).astype(np.float32)
    result = run_binary(lib, "pymic_array_pow_float32", a, b, n, np.float32, None)
    expected = reference_power(a, b)
    assert_within_ulps(result, expected, 1)
    assert np.count_nonzero(result != expected) < n // 1000


@pytest.mark.parametrize("in_place", [False, True])
@pytest.mark.parametrize("n", [0, 1, 17, 513, 65537])
@pytest.mark.parametrize("suffix", FLOAT)
def test_float_pow_scalar(lib, suffix, n, in_place):
    dtype = DTYPES[suffix]
    rng = np.random.default_rng(n)
    a = rng.uniform(-20, 20, n).astype(dtype)
    a[: n // 4] = np.abs(a[: n // 4])
    specials = np.array([-0.0, -np.inf, np.inf, np.nan, 0.0], dtype=dtype)
    a[: min(n, specials.size)] = specials[: min(n, specials.size)]
    with np.errstate(all="ignore"):
        for s in [2.0, 0.5, 3.0, -1.0, 0.0, 1.0, 1.7]:
            result = run_with_scalar(lib, f"pymic_array_pow_scalar_{suffix}", a,
                                     s, n, dtype, in_place)
            if s in (2.0, 0.5):
                # NumPy's own `a ** 2` and `a ** 0.5` are square and sqrt.
                expected = a ** dtype(s)
                assert_matches(result, expected)
            else:
                expected = reference_power(a, np.full(n, s, dtype=dtype))
                assert_within_ulps(result, expected, POW_ULPS[suffix])
            assert np.array_equal(np.signbit(result), np.signbit(expected))
        b = rng.uniform(-6, 6, n).astype(dtype)
        for s in [2.0, 0.5, 10.0, -3.0]:
            result = run_with_scalar(lib, f"pymic_array_rpow_scalar_{suffix}", b,
                                     s, n, dtype, in_place)
            expected = reference_power(np.full(n, s, dtype=dtype), b)
            assert_within_ulps(result, expected, POW_ULPS[suffix])


# -------------------------------------------------------------- complex pow
def complex_operands(n, dtype, rng):
    """Complex bases with exponents that hit every branch of NumPy's pow."""
    a = random_values(n, dtype, rng, -3, 3)
    b = random_values(n, dtype, rng, -3, 3)
    kind = rng.integers(0, 4, n)
    integral = rng.integers(-120, 120, n).astype(np.float64)
    b = np.where(kind == 1, integral.astype(dtype), b)        # integral exponents
    b = np.where(kind == 2, b.real.astype(dtype), b)          # real exponents
    b = np.where(rng.random(n) < 0.02, np.zeros(1, dtype), b)  # b == 0
    a = np.where(rng.random(n) < 0.02, np.zeros(1, dtype), a)  # a == 0
    return a.astype(dtype), b.astype(dtype)


@pytest.mark.parametrize("alias", [None, "a", "b"])
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("suffix", COMPLEX)
def test_complex_pow(lib, suffix, n, alias):
    dtype = DTYPES[suffix]
    a, b = complex_operands(n, dtype, np.random.default_rng(n))
    result = run_binary(lib, f"pymic_array_pow_{suffix}", a, b, n, dtype, alias)
    with np.errstate(all="ignore"):
        assert_matches(result, np.power(a, b))


@pytest.mark.parametrize("in_place", [False, True])
@pytest.mark.parametrize("n", [0, 1, 17, 513, 65537])
@pytest.mark.parametrize("suffix", COMPLEX)
def test_complex_pow_scalar(lib, suffix, n, in_place):
    dtype = DTYPES[suffix]
    rng = np.random.default_rng(n)
    a, b = complex_operands(n, dtype, rng)
    with np.errstate(all="ignore"):
        for s in [2, 3, -3, 0, 1, 99, 100, 0.5, 1.5 - 2j, 1j]:
            result = run_with_scalar(lib, f"pymic_array_pow_scalar_{suffix}", a,
                                     s, n, dtype, in_place)
            assert_matches(result, np.power(a, np.full(n, s, dtype=dtype)))
            result = run_with_scalar(lib, f"pymic_array_rpow_scalar_{suffix}", b,
                                     s, n, dtype, in_place)
            assert_matches(result, np.power(np.full(n, s, dtype=dtype), b))


# ------------------------------------------- the Python layer's dispatch table

# Every kernel name OffloadArray builds from a dtype's suffix.
DISPATCHED = ["add", "sub", "mul", "pow", "add_scalar", "sub_scalar", "mul_scalar",
              "pow_scalar", "rsub_scalar", "rpow_scalar", "abs", "fill", "reverse"]
# Dtypes OffloadArray holds but has no element-wise kernels for.
HELD_WITHOUT_KERNELS = [np.bool_, np.int8, np.uint8, np.int16, np.uint16, np.uint32,
                        np.float16]


def load_dtypes_module():
    """pymic/_dtypes.py of the installed package, run on its own.

    It imports only NumPy, so the package (and its extension) is not run.
    """
    spec = importlib.util.find_spec("pymic")
    if spec is None or not spec.submodule_search_locations:
        pytest.fail("pymic is not installed (run `make install`)")
    for directory in spec.submodule_search_locations:
        path = os.path.join(directory, "_dtypes.py")
        if os.path.exists(path):
            module_spec = importlib.util.spec_from_file_location("pymic_dtypes_checked", path)
            module = importlib.util.module_from_spec(module_spec)
            module_spec.loader.exec_module(module)
            return module
    pytest.fail("_dtypes.py is missing from the pymic package")


def test_python_dispatch_names_exactly_the_kernels_the_library_has(lib):
    # OffloadArray refuses arithmetic (TypeError) on the dtypes without
    # kernels and calls kernels by name for the others: both sets must be
    # the library's own.
    dtypes = load_dtypes_module()
    assert set(dtypes.KERNEL_SUFFIX.values()) == set(DTYPES)
    for dtype, suffix in dtypes.KERNEL_SUFFIX.items():
        assert dtypes.kernel_suffix(dtype, "'+'") == suffix
        for operation in DISPATCHED:
            assert hasattr(lib, f"pymic_array_{operation}_{suffix}"), (operation, suffix)
    for dtype in map(np.dtype, HELD_WITHOUT_KERNELS):
        assert not any(hasattr(lib, f"pymic_array_{operation}_{dtype.name}")
                       for operation in DISPATCHED), dtype
        assert dtypes.supported_dtype(dtype) == dtype
        with pytest.raises(TypeError, match=f"'\\+' is not supported for dtype {dtype.name}"):
            dtypes.kernel_suffix(dtype, "'+'")
