"""The element types OffloadArray supports and scalar conversion to them."""

from typing import Any

import numpy
from numpy.typing import DTypeLike

#: dtype -> suffix of the built-in kernels (see src/kernels/pymic_array.h).
KERNEL_SUFFIX: dict[numpy.dtype[Any], str] = {
    numpy.dtype(numpy.int64): "int64",
    numpy.dtype(numpy.int32): "int32",
    numpy.dtype(numpy.uint64): "uint64",
    numpy.dtype(numpy.float64): "float64",
    numpy.dtype(numpy.float32): "float32",
    numpy.dtype(numpy.complex128): "complex128",
    numpy.dtype(numpy.complex64): "complex64",
}

#: dtype of abs() for each supported dtype (complex magnitudes are real).
ABS_RESULT: dict[numpy.dtype[Any], numpy.dtype[Any]] = {
    numpy.dtype(numpy.complex128): numpy.dtype(numpy.float64),
    numpy.dtype(numpy.complex64): numpy.dtype(numpy.float32),
}

# Which kinds of scalar an array of a given kind accepts without losing
# meaning: an int fits anywhere, a float needs a float or complex array, a
# complex number needs a complex array.
_ACCEPTED_SCALAR_KINDS = {
    "i": "biu",
    "u": "biu",
    "f": "biuf",
    "c": "biufc",
}


def supported_dtype(dtype: DTypeLike) -> numpy.dtype[Any]:
    """Return `dtype` as a numpy.dtype if OffloadArray supports it.

    Parameters
    ----------
    dtype : dtype-like
        Anything ``numpy.dtype`` accepts.

    Returns
    -------
    numpy.dtype
        The normalised dtype.

    Raises
    ------
    TypeError
        If `dtype` is not a valid dtype.
    ValueError
        If the dtype is valid but not one of the seven supported ones.
    """
    try:
        normalised = numpy.dtype(dtype)
    except TypeError as error:
        raise TypeError(f"not a dtype: {dtype!r}") from error
    if normalised not in KERNEL_SUFFIX:
        names = ", ".join(sorted(KERNEL_SUFFIX.values()))
        raise ValueError(f"OffloadArray does not support dtype {normalised}; "
                         f"supported: {names}")
    return normalised


def scalar_of(value: Any, dtype: numpy.dtype[Any]) -> Any:
    """Convert a Python or NumPy scalar to a NumPy scalar of `dtype`.

    Parameters
    ----------
    value : int, float, complex, bool or numpy.generic
        The scalar operand.
    dtype : numpy.dtype
        A supported dtype.

    Returns
    -------
    numpy.generic
        The value as one element of `dtype`, ready to pass to a kernel.

    Raises
    ------
    ValueError
        If `value` is not a scalar, is of a kind the dtype cannot represent
        (e.g. a float for an integer array) or is out of its range.
    """
    if isinstance(value, (bool, numpy.bool_)):
        kind = "b"
    elif isinstance(value, int):
        kind = "i"
    elif isinstance(value, float):
        kind = "f"
    elif isinstance(value, complex):
        kind = "c"
    elif isinstance(value, numpy.generic):
        kind = value.dtype.kind
    else:
        raise ValueError(f"operand {value!r} ({type(value).__name__}) is not a scalar, "
                         f"an ndarray or an OffloadArray")
    if kind not in _ACCEPTED_SCALAR_KINDS[dtype.kind]:
        raise ValueError(f"scalar {value!r} does not match the array's dtype {dtype}")
    if kind in "biu" and dtype.kind in "iu":
        info = numpy.iinfo(dtype)
        if not info.min <= int(value) <= info.max:
            raise ValueError(f"scalar {value!r} is out of range for dtype {dtype}")
    return dtype.type(value)
