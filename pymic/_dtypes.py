"""The element types OffloadArray holds, those its kernels cover, and scalar conversion."""

from typing import Any

import numpy
from numpy.typing import DTypeLike

#: dtype -> suffix of the built-in kernels (see src/kernels/pymic_array.h): the
#: dtypes of the element-wise operations (arithmetic, abs, fill, reverse).
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
# meaning: a bool array takes bools, an int fits any integer array, a float
# needs a float or complex array, a complex number needs a complex array.
_ACCEPTED_SCALAR_KINDS = {
    "b": "b",
    "i": "biu",
    "u": "biu",
    "f": "biuf",
    "c": "biufc",
}

# The Python scalar types that stand for one element of the other kinds.
_FIXED_SCALAR_TYPES: dict[str, tuple[type[Any], ...]] = {
    "M": (numpy.datetime64,),
    "m": (numpy.timedelta64,),
    "S": (bytes,),
    "U": (str,),
    "V": (tuple, numpy.void),
}


def supported_dtype(dtype: DTypeLike) -> numpy.dtype[Any]:
    """Return `dtype` as a numpy.dtype if an OffloadArray can hold it.

    Any fixed-size dtype is held, as in pyMIC: bool, every integer and
    float width, complex, datetime64/timedelta64, fixed-size strings and
    structured dtypes.  Only the element-wise kernels are limited (see
    :func:`kernel_suffix`).

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
        If `dtype` is not a valid dtype, holds Python objects (their
        pointers mean nothing on a device), has no size (``'S'``, ``'U'``,
        ``'V'`` without a length) or is a sub-array dtype.
    """
    try:
        normalised: numpy.dtype[Any] = numpy.dtype(dtype)
    except TypeError as error:
        raise TypeError(f"not a dtype: {dtype!r}") from error
    if normalised.hasobject:
        raise TypeError(f"OffloadArray cannot hold dtype {normalised}: it contains Python "
                        f"objects, whose pointers mean nothing on a device")
    if normalised.itemsize == 0:
        raise TypeError(f"OffloadArray cannot hold dtype {normalised}: it has no size; give "
                        f"one, e.g. 'S8' or 'U4'")
    if normalised.subdtype is not None:
        base, extents = normalised.subdtype
        raise TypeError(f"OffloadArray cannot hold the sub-array dtype {normalised}: add "
                        f"{extents} to the shape and use dtype {base}")
    return normalised


def kernel_suffix(dtype: numpy.dtype[Any], operation: str) -> str:
    """Return the suffix of the built-in kernels for `dtype`.

    Parameters
    ----------
    dtype : numpy.dtype
        The array's dtype.
    operation : str
        What the kernel is for, as the user wrote it (``'+'``, ``'abs()'``,
        ...), for the error message.

    Returns
    -------
    str
        E.g. ``'float64'``.

    Raises
    ------
    TypeError
        If the built-in kernels do not cover `dtype`.
    """
    suffix = KERNEL_SUFFIX.get(dtype)
    if suffix is None:
        names = ", ".join(sorted(KERNEL_SUFFIX.values()))
        raise TypeError(f"OffloadArray {operation} is not supported for dtype {dtype}; the "
                        f"built-in kernels cover {names} (in native byte order)")
    return suffix


def scalar_of(value: Any, dtype: numpy.dtype[Any]) -> Any:
    """Convert a Python or NumPy scalar to a NumPy scalar of `dtype`.

    Parameters
    ----------
    value : int, float, complex, bool, numpy.generic, bytes, str or tuple
        The scalar operand: a number for numeric dtypes, a bool for bool,
        a datetime64/timedelta64 for those, bytes or str for fixed-size
        strings, a tuple (or numpy.void) for structured dtypes.
    dtype : numpy.dtype
        A dtype :func:`supported_dtype` accepts.

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
    if dtype.kind not in _ACCEPTED_SCALAR_KINDS:
        return _fixed_scalar_of(value, dtype)
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


def _fixed_scalar_of(value: Any, dtype: numpy.dtype[Any]) -> Any:
    """scalar_of for the non-numeric kinds (datetimes, strings, structured)."""
    accepted = _FIXED_SCALAR_TYPES[dtype.kind]
    if not isinstance(value, accepted):
        names = " or ".join(kind.__name__ for kind in accepted)
        raise ValueError(f"scalar {value!r} does not match the array's dtype {dtype}: "
                         f"give a {names}")
    if dtype.kind in "SU":
        # NumPy would cut a longer string short without a word.
        length = dtype.itemsize // (4 if dtype.kind == "U" else 1)
        if len(value) > length:
            raise ValueError(f"scalar {value!r} is longer than dtype {dtype} holds")
    try:
        if dtype.kind in "Mm":
            return numpy.asarray(value).astype(dtype, casting="same_kind")[()]
        return numpy.array(value, dtype=dtype)[()]
    except (TypeError, ValueError) as error:
        raise ValueError(f"scalar {value!r} does not match the array's dtype {dtype}: "
                         f"{error}") from error
