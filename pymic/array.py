"""OffloadArray: a NumPy array with a buffer on an offload device."""

import math
import operator
from typing import TYPE_CHECKING, Any, ClassVar, NoReturn, SupportsIndex

import numpy
from numpy.typing import ArrayLike, DTypeLike, NDArray

from . import _engine
from ._dtypes import ABS_RESULT, KERNEL_SUFFIX, kernel_suffix, scalar_of, supported_dtype
from ._typing import Order, ShapeLike, SupportsDLPack

if TYPE_CHECKING:
    from typing_extensions import CapsuleType

    from .device import OffloadDevice
    from .stream import OffloadStream


def _normalise_shape(shape: ShapeLike) -> tuple[int, ...]:
    """Return `shape` as a tuple of non-negative ints."""
    if isinstance(shape, (int, numpy.integer)):
        shape = (shape,)
    try:
        shape = tuple(operator.index(extent) for extent in shape)
    except TypeError as error:
        raise TypeError(f"shape must be an int or a sequence of ints, not {shape!r}") from error
    if any(extent < 0 for extent in shape):
        raise ValueError(f"negative dimensions are not allowed: {shape}")
    return shape


def _normalise_order(order: object) -> Order:
    if order not in ("C", "F"):
        raise ValueError(f"order must be 'C' or 'F', not {order!r}")
    return order


def _resolve_placement(device: "OffloadDevice | int | None", stream: "OffloadStream | None"
                       ) -> "tuple[OffloadDevice, OffloadStream]":
    """The (device, stream) pair an array lives on, from either or both."""
    from .device import _resolve_device
    if stream is None:
        device = _resolve_device(device)
        return device, device.get_default_stream()
    stream_device = stream.get_device()
    if device is not None and _resolve_device(device) != stream_device:
        raise ValueError(f"stream runs on {stream_device}, not on {device}")
    return stream_device, stream


#: DLPack's kDLCPU device type.
_DL_CPU = 1
#: numpy dtype kind -> DLPack type code (kDLInt, kDLUInt, kDLFloat, kDLComplex, kDLBool).
_DLPACK_TYPE_CODES = {"i": 0, "u": 1, "f": 2, "c": 5, "b": 6}


def from_dlpack(obj: SupportsDLPack, stream: "OffloadStream | None" = None,
                device: "OffloadDevice | int | None" = None) -> "OffloadArray":
    """Copy a DLPack tensor on the CPU into device memory.

    The tensor (anything with ``__dlpack__``: a NumPy array, a torch CPU
    tensor, an OffloadArray ...) is copied into a new host array now, and
    from there to the device on `stream`, so it may change as soon as this
    returns.

    Parameters
    ----------
    obj : object
        A DLPack producer whose data is in this process's memory (kDLCPU).
    stream : OffloadStream, optional
        The stream the copy is enqueued on and the new array uses; default
        the default stream of `device`.
    device : OffloadDevice or int, optional
        Device of the new array; default that of `stream`, else device 0.

    Returns
    -------
    OffloadArray
        A new array of the tensor's shape and dtype; its ``array`` holds
        the same values.

    Raises
    ------
    BufferError, TypeError, RuntimeError
        From ``numpy.from_dlpack`` for a tensor that is not on the CPU or
        not a DLPack producer.
    ValueError
        For a dtype OffloadArray does not support.
    """
    device, stream = _resolve_placement(device, stream)
    host = numpy.from_dlpack(obj)
    return stream.copy(host)


def _raw_bytes(host: numpy.ndarray) -> numpy.ndarray:
    """A void view of `host`'s bytes, for transfers of dtypes without kernels.

    NumPy exports no buffer for datetime64 and timedelta64 (nor structured
    dtypes holding them), which the transfers need; a view of the same
    bytes as ``V<itemsize>`` exports one, whatever the dtype and layout.
    """
    return host.view(numpy.dtype((numpy.void, host.dtype.itemsize)))


# How the operators are written, for error messages.
_OPERATOR_SYMBOLS = {"add": "+", "sub": "-", "mul": "*", "pow": "**"}


def _refuse_operation(dtype: numpy.dtype[Any], operation: str,
                      in_place: bool = False) -> NoReturn:
    """Raise the TypeError for an operator the kernels do not cover for `dtype`."""
    symbol = _OPERATOR_SYMBOLS.get(operation, operation)
    kernel_suffix(dtype, f"'{symbol}='" if in_place else f"'{symbol}'")
    raise AssertionError(f"kernel_suffix accepted {dtype}")


class OffloadArray(_engine.ArrayBase):
    """A NumPy array with a mirror buffer on an offload device.

    The host side is the ``array`` attribute; the device side is written by
    kernels and element-wise operations.  The two meet only through
    :meth:`update_device` and :meth:`update_host`, which are asynchronous
    like every operation on the array.  Usually created by the stream
    methods ``bind``, ``copy``, ``empty``, ``zeros``, ``ones`` and ``bcast``.

    Parameters
    ----------
    shape : int or tuple of int
        Shape of the array.
    dtype : dtype-like
        Any fixed-size dtype without Python objects (bool, integers and
        floats of every width, complex, datetime64, fixed-size strings,
        structured dtypes).  The element-wise operations (arithmetic,
        ``abs``, ``reverse``) cover int64, int32, uint64, float64, float32,
        complex128 and complex64.
    order : {'C', 'F'}, optional
        Memory layout; default 'C'.
    alloc_arr : bool, optional
        If True (default) and `base` is None, allocate a new host array.
    base : numpy.ndarray, optional
        Host array to bind to (same shape, dtype and contiguous in `order`).
    device : OffloadDevice, optional
        Device of the array; default that of `stream`, else device 0.
    stream : OffloadStream, optional
        Stream the array's operations use; default the device's default
        stream.

    Attributes
    ----------
    array : numpy.ndarray
        The host array (None if created with ``alloc_arr=False``).
    device : OffloadDevice
        Device holding the buffer.
    stream : OffloadStream
        Stream used by the array's operations; change it with
        :meth:`assign_stream`.
    shape, dtype, size, ndim, order, nbytes
        As for the host array.

    All attributes above are read-only (assigning raises AttributeError):
    the device operations rely on them describing the device buffer.

    Raises
    ------
    TypeError
        For a dtype the array cannot hold (object, unsized or sub-array
        dtypes).
    ValueError
        For a bad order, or a `base` that does not match.
    OffloadError
        If the device is out of memory.
    """

    # array, device, shape, dtype, order, ndim, size and nbytes are the C
    # base's read-only members (typed in _engine.pyi).
    _dptr: _engine.DevicePointer

    if TYPE_CHECKING:
        # The base holds any engine stream; an OffloadArray's is always an
        # OffloadStream (every stream it is given passes through
        # _resolve_placement or assign_stream).
        @property
        def stream(self) -> "OffloadStream": ...

    __hash__: ClassVar[None]  # type: ignore[assignment]
    __hash__ = None
    # True for the temporary made from an ndarray operand (its host values
    # are the device values).
    _bound_to_operand = False
    # NumPy must defer to our reflected operators (ndarray + OffloadArray).
    __array_ufunc__ = None

    def __init__(self, shape: ShapeLike, dtype: DTypeLike, order: str = "C",
                 alloc_arr: bool = True, base: NDArray[Any] | None = None,
                 device: "OffloadDevice | int | None" = None,
                 stream: "OffloadStream | None" = None) -> None:
        shape = _normalise_shape(shape)
        dtype = supported_dtype(dtype)
        order = _normalise_order(order)
        device, stream = _resolve_placement(device, stream)
        if base is not None:
            array = self._check_base(base, shape, dtype, order)
        elif alloc_arr:
            array = numpy.empty(shape, dtype=dtype, order=order)
        else:
            array = None
        self._describe(array, device, stream, shape, dtype, order)
        # Empty arrays still own a (tiny) allocation so that kernels get a
        # valid pointer.
        self._dptr = stream.allocate_device_memory(max(self.nbytes, 1))
        self._doffset = 0

    @staticmethod
    def _check_base(base: object, shape: tuple[int, ...], dtype: numpy.dtype[Any],
                    order: Order) -> NDArray[Any]:
        if not isinstance(base, numpy.ndarray):
            raise TypeError(f"base must be a numpy.ndarray, not {type(base).__name__}")
        if base.shape != shape or base.dtype != dtype:
            raise ValueError(f"base has shape {base.shape} and dtype {base.dtype}, "
                             f"expected {shape} and {dtype}")
        contiguous = base.flags.c_contiguous if order == "C" else base.flags.f_contiguous
        if not contiguous:
            raise ValueError(f"base must be {order}-contiguous")
        return base

    # _describe(array, device, stream, shape, dtype, order), inherited from
    # the C base, sets the read-only attributes (ndim, size and nbytes
    # follow from shape and dtype) and refuses a description that does not
    # fit the device buffer.

    def _view(self, array: NDArray[Any] | None, shape: tuple[int, ...],
              byte_offset: int = 0) -> "OffloadArray":
        """A new OffloadArray sharing this one's device buffer."""
        view = OffloadArray.__new__(OffloadArray)
        view._describe(array, self.device, self.stream, shape, self.dtype, self.order)
        view._dptr = self._dptr
        view._doffset = self._doffset + byte_offset
        return view

    def _new_like(self, dtype: numpy.dtype[Any] | None = None) -> "OffloadArray":
        """A new array of this shape for a result, on the same stream.

        Skips the constructor's argument checks: everything is known valid.
        """
        dtype = self.dtype if dtype is None else dtype
        result = OffloadArray.__new__(OffloadArray)
        result._describe(numpy.empty(self.shape, dtype=dtype, order=self.order), self.device,
                         self.stream, self.shape, dtype, self.order)
        result._dptr = self.stream.allocate_device_memory(max(result.nbytes, 1))
        return result

    def _kernel(self, operation: str, dtype: numpy.dtype[Any] | None = None
                ) -> _engine.KernelHandle:
        suffix = KERNEL_SUFFIX[self.dtype if dtype is None else dtype]
        return self.device._array_kernel(f"pymic_array_{operation}_{suffix}")

    # ------------------------------------------------------------ transfers

    def update_device(self) -> "OffloadArray":
        """Enqueue the copy of the host array to the device buffer.

        Returns
        -------
        OffloadArray
            self.
        """
        if self.array is None:
            raise _engine.OffloadError("this OffloadArray has no host array")
        if self.nbytes:
            host = self.array if self.dtype in KERNEL_SUFFIX else _raw_bytes(self.array)
            self.stream.transfer_host2device(host, self._dptr, self.nbytes, 0, self._doffset)
        return self

    def update_host(self) -> "OffloadArray":
        """Enqueue the copy of the device buffer to the host array.

        The host array holds the device contents once the stream has been
        synchronised: ``r = a.update_host().array; stream.sync()``.

        Returns
        -------
        OffloadArray
            self.
        """
        if self.array is None:
            raise _engine.OffloadError("this OffloadArray has no host array")
        if self.nbytes:
            host = self.array if self.dtype in KERNEL_SUFFIX else _raw_bytes(self.array)
            self.stream.transfer_device2host(self._dptr, host, self.nbytes, self._doffset, 0)
        return self

    def assign_stream(self, stream: "OffloadStream") -> None:
        """Make later operations of this array use `stream`.

        Later commands of `stream` wait for the work already enqueued on the
        old stream, so the switch needs no host synchronisation.

        Parameters
        ----------
        stream : OffloadStream
            A stream of the same device.

        Returns
        -------
        None

        Raises
        ------
        ValueError
            If `stream` belongs to another device.
        """
        if not isinstance(stream, _engine.Stream):
            raise TypeError(f"expected an OffloadStream, not {type(stream).__name__}")
        if stream.get_device() != self.device:
            raise ValueError(f"cannot assign a stream of {stream.get_device()} to an array "
                             f"on {self.device}")
        if stream is self.stream:
            return
        stream.wait_event(self.stream.record_event())
        self._set_stream(stream)
        # Garbage collection frees the buffer in the order of the new stream.
        self._dptr._stream = stream

    # ------------------------------------------------------------ operands

    def _device_operand(self, other: object) -> Any:
        """Return `other` as an OffloadArray (device data) or a scalar."""
        if isinstance(other, OffloadArray):
            if other.shape != self.shape or other.dtype != self.dtype:
                raise ValueError(f"operands differ: shape {self.shape} dtype {self.dtype} "
                                 f"and shape {other.shape} dtype {other.dtype}")
            if other.order != self.order and self.ndim > 1:
                raise ValueError("operands have different memory orders")
            if other.device != self.device:
                raise ValueError("operands live on different devices")
            self._wait_for(other)
            return other
        if isinstance(other, numpy.ndarray):
            if other.shape != self.shape or other.dtype != self.dtype:
                raise ValueError(f"ndarray operand has shape {other.shape} and dtype "
                                 f"{other.dtype}, expected {self.shape} and {self.dtype}")
            host = numpy.require(other, requirements=[self.order])
            operand = self.stream.bind(host)
            operand._bound_to_operand = True
            return operand
        return scalar_of(other, self.dtype)

    def _overlaps_partially(self, other: "OffloadArray") -> bool:
        """True if `other` shares device bytes with this array but not all.

        Element-wise kernels read and write element i in one step, so an
        operand identical to the output is safe; one shifted against it
        (``x[1:] += x[:-1]``) would read elements the kernel has already
        overwritten.
        """
        if other._dptr is not self._dptr:
            return False
        if other._doffset == self._doffset and other.nbytes == self.nbytes:
            return False
        return (other._doffset < self._doffset + self.nbytes
                and self._doffset < other._doffset + other.nbytes)

    def _detached(self, other: "OffloadArray") -> "OffloadArray":
        """A copy of `other` in new device memory, made on this array's stream.

        What NumPy does for overlapping operands: the operation reads the
        copy, so the result is as if every input were read before any output
        was written.
        """
        copy = OffloadArray.__new__(OffloadArray)
        copy._describe(None, self.device, self.stream, other.shape, other.dtype, other.order)
        copy._dptr = self.stream.allocate_device_memory(max(other.nbytes, 1))
        copy._doffset = 0
        if other.nbytes:
            self.stream.transfer_device2device(other._dptr, copy._dptr, other.nbytes,
                                               other._doffset, 0)
        return copy

    def _wait_for(self, other: "OffloadArray") -> None:
        """Order this array's stream after work queued on `other`'s stream."""
        if other.stream is not self.stream:
            self.stream.wait_event(other.stream.record_event())

    def _binary(self, operation: str, other: object, out: "OffloadArray") -> "OffloadArray":
        suffix = KERNEL_SUFFIX.get(self.dtype)
        if suffix is None:
            _refuse_operation(self.dtype, operation, out is self)
        operand = self._device_operand(other)
        if operation == "pow":
            self._check_integer_exponent(operand)
        if isinstance(operand, OffloadArray):
            if out._overlaps_partially(operand):
                operand = out._detached(operand)
            kernel = self.device._array_kernel(f"pymic_array_{operation}_{suffix}")
        else:
            kernel = self.device._array_kernel(f"pymic_array_{operation}_scalar_{suffix}")
        self.stream.invoke(kernel, self, operand, out, self.size)
        return out

    def _check_integer_exponent(self, exponent: Any) -> None:
        """Refuse negative integer powers of integers, as NumPy does.

        A scalar exponent (or an ndarray operand, checked on the host) is
        checked here; exponents already on the device cannot be checked
        without a synchronisation.
        """
        if self.dtype.kind not in "iu":
            return
        if isinstance(exponent, OffloadArray):
            values = exponent.array if exponent._bound_to_operand else None
        else:
            values = exponent
        if values is not None and numpy.any(numpy.asarray(values) < 0):
            raise ValueError("Integers to negative integer powers are not allowed.")

    def _reflected(self, operation: str, other: object) -> "OffloadArray":
        """``other <op> self`` for a non-commutative operation."""
        if self.dtype not in KERNEL_SUFFIX:
            _refuse_operation(self.dtype, operation)
        operand = self._device_operand(other)
        out = self._new_like()
        if isinstance(operand, OffloadArray):
            self.stream.invoke(self._kernel(operation), operand, self, out, self.size)
        else:
            self.stream.invoke(self._kernel(f"r{operation}_scalar"), self, operand, out,
                               self.size)
        return out

    def __add__(self, other: object) -> "OffloadArray":
        return self._binary("add", other, self._new_like())

    def __sub__(self, other: object) -> "OffloadArray":
        return self._binary("sub", other, self._new_like())

    def __mul__(self, other: object) -> "OffloadArray":
        return self._binary("mul", other, self._new_like())

    def __pow__(self, other: object) -> "OffloadArray":
        return self._binary("pow", other, self._new_like())

    def __radd__(self, other: object) -> "OffloadArray":
        return self._binary("add", other, self._new_like())

    def __rmul__(self, other: object) -> "OffloadArray":
        return self._binary("mul", other, self._new_like())

    def __rsub__(self, other: object) -> "OffloadArray":
        return self._reflected("sub", other)

    def __rpow__(self, other: object) -> "OffloadArray":
        return self._reflected("pow", other)

    def __iadd__(self, other: object) -> "OffloadArray":
        return self._binary("add", other, self)

    def __isub__(self, other: object) -> "OffloadArray":
        return self._binary("sub", other, self)

    def __imul__(self, other: object) -> "OffloadArray":
        return self._binary("mul", other, self)

    for _method, _expression, _result in (
            (__add__, "self + other", "A new array."),
            (__sub__, "self - other", "A new array."),
            (__mul__, "self * other", "A new array."),
            (__pow__, "self ** other", "A new array."),
            (__radd__, "other + self", "A new array."),
            (__rsub__, "other - self", "A new array."),
            (__rmul__, "other * self", "A new array."),
            (__rpow__, "other ** self", "A new array."),
            (__iadd__, "self += other", "self, updated in place."),
            (__isub__, "self -= other", "self, updated in place."),
            (__imul__, "self *= other", "self, updated in place.")):
        _method.__doc__ = f"""Element-wise ``{_expression}`` on the device (asynchronous).

        Parameters
        ----------
        other : OffloadArray, numpy.ndarray or scalar
            An OffloadArray or ndarray of the same shape and dtype (an ndarray
            is copied to the device into a temporary), or a scalar of the
            array's type.

        Returns
        -------
        OffloadArray
            {_result}

        Raises
        ------
        TypeError
            If the built-in kernels do not cover the array's dtype.
        ValueError
            If `other` does not match the array's shape, dtype or type.
        """
    del _method, _expression, _result

    def __abs__(self) -> "OffloadArray":
        """Element-wise absolute value on the device (asynchronous).

        Returns
        -------
        OffloadArray
            A new array; complex arrays give real arrays of the matching
            precision (complex128 -> float64, complex64 -> float32).

        Raises
        ------
        TypeError
            If the built-in kernels do not cover the array's dtype.
        """
        if self.dtype not in KERNEL_SUFFIX:
            _refuse_operation(self.dtype, "abs()")
        result_dtype = ABS_RESULT.get(self.dtype, self.dtype)
        out = self._new_like(result_dtype)
        self.stream.invoke(self._kernel("abs"), self, out, self.size)
        return out

    # ------------------------------------------------------------ filling

    def fill(self, value: Any) -> "OffloadArray":
        """Set every element to `value` on the device.

        Parameters
        ----------
        value : scalar
            A value representable in the array's dtype: a number of a
            kind the dtype holds (see the operators), a bool for bool
            arrays, a ``numpy.datetime64``/``timedelta64`` for those,
            bytes or str (not longer than the dtype holds) for fixed-size
            strings, a tuple or ``numpy.void`` for structured dtypes.

        Returns
        -------
        OffloadArray
            self.

        Raises
        ------
        ValueError
            If `value` does not match the dtype.
        """
        scalar = scalar_of(value, self.dtype)
        if self.size:
            if self.dtype in KERNEL_SUFFIX:
                self.stream.invoke(self._kernel("fill"), self, scalar, self.size)
            else:
                # Zeros first: the padding of aligned structured dtypes
                # gets defined bytes too.
                pattern = numpy.zeros(1, dtype=self.dtype)
                pattern[0] = scalar
                self._fill_with_element(pattern)
        return self

    def _fill_with_element(self, element: numpy.ndarray) -> None:
        """Fill the device buffer with copies of one element's bytes.

        For the dtypes without a fill kernel: the element is copied to the
        device once, then the filled part is doubled by device-to-device
        copies (never overlapping), so n elements take about log2(n)
        commands and no host memory.
        """
        filled = self.dtype.itemsize
        self.stream.transfer_host2device(_raw_bytes(element), self._dptr, filled, 0,
                                         self._doffset)
        while filled < self.nbytes:
            chunk = min(filled, self.nbytes - filled)
            self.stream.transfer_device2device(self._dptr, self._dptr, chunk, self._doffset,
                                               self._doffset + filled)
            filled += chunk

    def zero(self) -> "OffloadArray":
        """Set every element to zero on the device.

        Works for every dtype: the elements become all-zero bytes, NumPy's
        ``zeros`` (for datetime64 the epoch, for structured dtypes every
        field zero).

        Returns
        -------
        OffloadArray
            self.
        """
        if self.dtype in KERNEL_SUFFIX:
            return self.fill(0)
        if self.size:
            self._fill_with_element(numpy.zeros(1, dtype=self.dtype))
        return self

    def one(self) -> "OffloadArray":
        """Set every element to one on the device.

        Returns
        -------
        OffloadArray
            self.

        Raises
        ------
        TypeError
            If the dtype is not a number or bool dtype (one has no meaning
            for datetimes, strings or structured dtypes).
        """
        if self.dtype.kind not in "biufc":
            raise TypeError(f"one() needs a bool or number dtype, not {self.dtype}")
        return self.fill(self.dtype.type(1))

    def fillfrom(self, array: ArrayLike) -> "OffloadArray":
        """Copy the contents of a host array into the device buffer.

        The array's own host side is not changed.

        Parameters
        ----------
        array : array_like
            Data of the same shape; converted to the array's dtype.

        Returns
        -------
        OffloadArray
            self.

        Raises
        ------
        ValueError
            If the shapes differ.
        """
        source = numpy.asarray(array)
        if source.shape != self.shape:
            raise ValueError(f"fillfrom: shape {source.shape} does not match {self.shape}")
        source = numpy.require(source, dtype=self.dtype, requirements=[self.order])
        if self.nbytes:
            self.stream.transfer_host2device(_raw_bytes(source), self._dptr, self.nbytes, 0,
                                             self._doffset)
        return self

    # ------------------------------------------------------------ reshaping

    def reverse(self) -> "OffloadArray":
        """Return a new array with the elements in reverse order (1-D only).

        Returns
        -------
        OffloadArray
            The reversed array.

        Raises
        ------
        ValueError
            If the array is not one-dimensional.
        TypeError
            If the built-in kernels do not cover the array's dtype.
        """
        if self.dtype not in KERNEL_SUFFIX:
            _refuse_operation(self.dtype, "reverse()")
        if self.ndim != 1:
            raise ValueError(f"reverse() needs a 1-D array, this one has {self.ndim} dimensions")
        out = self._new_like()
        if self.size:
            self.stream.invoke(self._kernel("reverse"), self, out, self.size)
        return out

    def reshape(self, *shape: Any, order: str | None = None) -> "OffloadArray":
        """Return a view with a new shape sharing the device buffer.

        Parameters
        ----------
        *shape : int or tuple of int
            The new shape, given as ints or one tuple; one extent may be -1.
        order : {'C', 'F'}, optional
            Must match the array's order if given.

        Returns
        -------
        OffloadArray
            A view: kernels writing it write this array's device buffer.

        Raises
        ------
        ValueError
            If the total size changes.
        """
        if len(shape) == 1 and not isinstance(shape[0], (int, numpy.integer)):
            shape = shape[0]
        if order is not None and order != self.order:
            raise ValueError("reshape cannot change the memory order of an OffloadArray")
        try:
            host = (self.array if self.array is not None
                    else numpy.empty(self.shape, self.dtype, order=self.order))
            new_host = host.reshape(shape, order=self.order)
        except (ValueError, TypeError) as error:
            raise ValueError(f"cannot reshape array of size {self.size} into shape "
                             f"{shape}") from error
        return self._view(new_host if self.array is not None else None, new_host.shape)

    def ravel(self) -> "OffloadArray":
        """Return a one-dimensional view sharing the device buffer.

        Returns
        -------
        OffloadArray
            A view of all elements in memory order.
        """
        return self.reshape(self.size)

    # ------------------------------------------------------------ slicing

    def _leading_range(self, key: slice | SupportsIndex) -> tuple[int, int]:
        """(start, stop) of a step-1 slice (or index) of the leading axis."""
        if self.ndim == 0:
            raise ValueError("a 0-d OffloadArray cannot be sliced")
        if isinstance(key, slice):
            start, stop, step = key.indices(self.shape[0])
            if step != 1:
                raise ValueError(f"OffloadArray slices need step 1, got {key.step}")
            stop = max(start, stop)
        else:
            try:
                index = operator.index(key)
            except TypeError:
                raise TypeError("OffloadArray indices must be slices of the leading axis "
                                f"or ints, not {type(key).__name__}") from None
            if index < 0:
                index += self.shape[0]
            if not 0 <= index < self.shape[0]:
                raise IndexError(f"index {key} out of range for length {self.shape[0]}")
            start, stop = index, index + 1
        if self.ndim > 1 and self.order == "F":
            raise ValueError("slicing the leading axis of a multi-dimensional Fortran-order "
                             "OffloadArray is not contiguous")
        return start, stop

    def _slice_view(self, start: int, stop: int) -> "OffloadArray":
        row_size = math.prod(self.shape[1:])
        shape = (stop - start,) + self.shape[1:]
        host = self.array[start:stop] if self.array is not None else None
        return self._view(host, shape, start * row_size * self.dtype.itemsize)

    def __getitem__(self, key: slice | SupportsIndex) -> "OffloadArray":
        """Return a view of a step-1 slice (or one index) of the leading axis.

        Parameters
        ----------
        key : slice or int
            Rows of the leading axis; a slice must have step 1.

        Returns
        -------
        OffloadArray
            A view sharing the device buffer; an index drops the leading
            axis, as in NumPy.

        Raises
        ------
        ValueError
            For a step other than 1, a 0-d array, or a multi-dimensional
            Fortran-order array.
        IndexError
            For an index out of range.
        TypeError
            For a key that is neither a slice nor an int.
        """
        start, stop = self._leading_range(key)
        view = self._slice_view(start, stop)
        if not isinstance(key, slice):
            # An index drops the leading axis, as in NumPy.
            # [0, ...] keeps a 0-d ndarray viewing the bound memory (a plain
            # [0] of a 1-D array would be a NumPy scalar, a detached copy).
            host = view.array[0, ...] if view.array is not None else None
            view = view._view(host, view.shape[1:])
        return view

    def __setitem__(self, key: slice | SupportsIndex, value: Any) -> None:
        """Assign a scalar, ndarray or OffloadArray to rows ``key`` on the device.

        The assignment is enqueued on the array's stream; the host array is
        not changed.

        Parameters
        ----------
        key : slice or int
            Rows of the leading axis; a slice must have step 1.
        value : scalar, numpy.ndarray or OffloadArray
            A scalar of the array's type, or an array of the target's shape
            (an ndarray is converted to the array's dtype).

        Returns
        -------
        None

        Raises
        ------
        ValueError
            For a step other than 1, a value of another shape (or, for an
            OffloadArray, another dtype) or a scalar the dtype cannot hold.
        IndexError
            For an index out of range.
        """
        start, stop = self._leading_range(key)
        target = self._slice_view(start, stop)
        if target.size == 0:
            return
        if isinstance(value, OffloadArray):
            if value.shape != target.shape or value.dtype != target.dtype:
                raise ValueError(f"cannot assign shape {value.shape} dtype {value.dtype} to "
                                 f"shape {target.shape} dtype {target.dtype}")
            self._wait_for(value)
            if target._overlaps_partially(value):
                # A copy between overlapping ranges, split over threads,
                # would read bytes already overwritten.
                value = target._detached(value)
            self.stream.transfer_device2device(value._dptr, self._dptr, target.nbytes,
                                               value._doffset, target._doffset)
        elif isinstance(value, numpy.ndarray):
            if value.shape != target.shape:
                raise ValueError(f"cannot assign shape {value.shape} to shape {target.shape}")
            source = numpy.require(value, dtype=self.dtype, requirements=["C"])
            self.stream.transfer_host2device(_raw_bytes(source), self._dptr, target.nbytes, 0,
                                             target._doffset)
        else:
            target.fill(value)

    # ------------------------------------------------------------ protocol

    def __len__(self) -> int:
        """Return the length of the leading dimension.

        Returns
        -------
        int
            ``shape[0]``.

        Raises
        ------
        TypeError
            For a 0-d array.
        """
        if self.ndim == 0:
            raise TypeError("len() of a 0-d OffloadArray")
        return self.shape[0]

    def __str__(self) -> str:
        """Return ``str()`` of the host array, as pyMIC did.

        The host copy is shown, not the device's data: after a kernel it
        is stale until ``update_host()`` and a sync (``str(a.get())`` shows
        the device's data).

        Returns
        -------
        str
        """
        return str(self.array)

    def __repr__(self) -> str:
        """Return ``repr()`` of the host array, as pyMIC did.

        Like :meth:`__str__`, this shows the host copy, which may be stale.

        Returns
        -------
        str
        """
        return repr(self.array)

    # ------------------------------------------------------------ NumPy interoperability

    def get(self, stream: "OffloadStream | None" = None) -> numpy.ndarray:
        """Return a new ndarray holding the device's data (CuPy's name).

        The host array (``self.array``) is not changed.

        Parameters
        ----------
        stream : OffloadStream, optional
            None (default): the copy runs on the array's stream and ``get``
            returns once it is done.  A stream of the array's device: the
            copy is enqueued there, after the work already queued on the
            array's stream, and ``get`` returns at once; the result holds
            the data once that stream has been synchronised.  Later work on
            the array's stream waits for the copy.

        Returns
        -------
        numpy.ndarray
            A new array of the same shape, dtype and memory order.

        Raises
        ------
        ValueError
            If `stream` belongs to another device.
        OffloadError
            If the copy (or work before it) fails.
        """
        result = numpy.empty(self.shape, dtype=self.dtype, order=self.order)
        copy_stream = self._interop_stream(stream)
        if self.nbytes:
            copy_stream.transfer_device2host(self._dptr, _raw_bytes(result), self.nbytes,
                                             self._doffset, 0)
        self._finish_interop(copy_stream, stream)
        return result

    def set(self, array: numpy.ndarray,
            stream: "OffloadStream | None" = None) -> "OffloadArray":
        """Copy an ndarray into the device buffer (CuPy's name).

        The host array (``self.array``) is not changed.

        Parameters
        ----------
        array : numpy.ndarray
            Source of exactly this array's shape and dtype (any layout).
        stream : OffloadStream, optional
            None (default): the copy runs on the array's stream and ``set``
            returns once it is done, so `array` may be changed right away.
            A stream of the array's device: the copy is enqueued there after
            the work queued on the array's stream and ``set`` returns at
            once; `array` must then stay unchanged until that stream has
            been synchronised.  Later work on the array's stream waits for
            the copy.

        Returns
        -------
        OffloadArray
            self.

        Raises
        ------
        TypeError
            If `array` is not a numpy.ndarray.
        ValueError
            If its shape or dtype differ, or `stream` belongs to another
            device.
        """
        if not isinstance(array, numpy.ndarray):
            raise TypeError(f"set() takes a numpy.ndarray, not {type(array).__name__}")
        if array.shape != self.shape or array.dtype != self.dtype:
            raise ValueError(f"set(): the ndarray has shape {array.shape} and dtype "
                             f"{array.dtype}, this OffloadArray has shape {self.shape} and "
                             f"dtype {self.dtype}")
        source = numpy.require(array, requirements=[self.order])
        copy_stream = self._interop_stream(stream)
        if self.nbytes:
            copy_stream.transfer_host2device(_raw_bytes(source), self._dptr, self.nbytes, 0,
                                             self._doffset)
        self._finish_interop(copy_stream, stream)
        return self

    def _interop_stream(self, stream: "OffloadStream | None") -> "OffloadStream":
        """The stream a get/set copy runs on, ordered after the array's work."""
        if stream is None or stream is self.stream:
            return self.stream
        if not isinstance(stream, _engine.Stream):
            raise TypeError(f"stream must be an OffloadStream, not {type(stream).__name__}")
        if stream.get_device() != self.device:
            raise ValueError(f"stream runs on {stream.get_device()}, the array lives on "
                             f"{self.device}")
        stream.wait_event(self.stream.record_event())
        return stream

    def _finish_interop(self, copy_stream: "OffloadStream",
                        stream: "OffloadStream | None") -> None:
        """Wait for a get/set copy (no stream given) or order the array after it."""
        if stream is None:
            copy_stream.record_event().sync()
        elif copy_stream is not self.stream:
            self.stream.wait_event(copy_stream.record_event())

    _IMPLICIT = ("an OffloadArray does not convert to a NumPy array implicitly (its host "
                 "copy may be stale): use a.get() for the device's data, or "
                 "a.update_host() and a sync, then a.array, for the host copy")

    def __array__(self, dtype: object = None, copy: "bool | None" = None) -> NoReturn:
        """Refuse implicit conversion (``numpy.asarray(a)``): raise TypeError.

        The device's data is what an OffloadArray means, and reading it
        needs a copy and a wait; NumPy would otherwise build an array from
        the stale host copy.  Use :meth:`get` instead (CuPy's rule).

        Raises
        ------
        TypeError
            Always, naming the explicit ways.
        """
        raise TypeError(self._IMPLICIT)

    # ------------------------------------------------------------ DLPack

    def __dlpack_device__(self) -> tuple[int, int]:
        """Return where the device buffer lives, for DLPack: ``(kDLCPU, 0)``.

        Returns
        -------
        tuple of int
            ``(1, 0)``: the buffer is memory of this process.

        Raises
        ------
        BufferError
            If the array's device keeps its memory outside this process.
        """
        self._check_exportable()
        return (_DL_CPU, 0)

    def __dlpack__(self, *, stream: "int | None" = None,
                   max_version: "tuple[int, int] | None" = None,
                   dl_device: "tuple[int, int] | None" = None,
                   copy: "bool | None" = None) -> "CapsuleType":
        """Export the device buffer as a DLPack capsule (zero copy).

        ``numpy.from_dlpack(a)`` (or torch's, JAX's ...) then views the
        device's data in place: writes through the view change the
        device's data.  The capsule keeps the device memory allocated for
        as long as the consumer holds it, even after the OffloadArray is
        gone.  Only for devices whose memory this process can address
        (``device.host_addressable``: host and process devices).

        Parameters
        ----------
        stream : None or -1, optional
            The protocol's stream rule for a CPU device: None (what
            consumers pass) makes this wait until the work queued on the
            array's stream has completed, so the consumer reads the
            device's current data; -1 skips that wait (the caller orders
            the work itself).
        max_version : tuple of int, optional
            Highest DLPack version the consumer understands: ``(1, x)``
            gives a versioned capsule (``dltensor_versioned``), None the
            legacy one (``dltensor``).
        dl_device : tuple of int, optional
            Where the consumer wants the data; only ``(1, 0)`` (kDLCPU).
        copy : bool, optional
            True: export a copy (``a.get()``) instead of the buffer itself;
            False or None: no copy.

        Returns
        -------
        PyCapsule
            The DLPack capsule.

        Raises
        ------
        BufferError
            If the device keeps its memory outside this process, for a
            `dl_device` other than the CPU, or a dtype DLPack cannot name.
        ValueError
            For a `stream` other than None or -1.
        """
        self._check_exportable()
        if dl_device is not None and tuple(dl_device) != (_DL_CPU, 0):
            raise BufferError(f"the OffloadArray's data is in this process's memory "
                              f"(kDLCPU, 0); it cannot be exported to device {dl_device}")
        if stream is not None and stream != -1:
            raise ValueError(f"a CPU (kDLCPU) DLPack export takes stream None or -1, "
                             f"not {stream!r}")
        versioned = max_version is not None and tuple(max_version)[0] >= 1
        if copy:
            host = self.get()
            if versioned:
                return host.__dlpack__(max_version=max_version)
            return host.__dlpack__()
        dtype = self.dtype
        code = _DLPACK_TYPE_CODES.get(dtype.kind)
        if code is None or not dtype.isnative:
            raise BufferError(f"DLPack has no type for dtype {dtype}")
        if stream is None:
            # The protocol's stream rule: the producer makes its work
            # visible before the consumer reads.
            self.stream.record_event().sync()
        return _engine.dlpack_capsule(self, self.shape, self._element_strides(), code,
                                      8 * dtype.itemsize, versioned, False)

    def _check_exportable(self) -> None:
        if not self.device.host_addressable:
            raise BufferError(f"{self.device} keeps its memory outside this process, so "
                              f"DLPack cannot export it in place; use a.get()")

    def _element_strides(self) -> tuple[int, ...]:
        """Strides in elements of the contiguous device buffer."""
        strides = []
        step = 1
        dims = self.shape if self.order == "F" else self.shape[::-1]
        for extent in dims:
            strides.append(step)
            step *= extent
        return tuple(strides) if self.order == "F" else tuple(strides[::-1])

    def __bool__(self) -> NoReturn:
        """Refuse a truth value (``if a:``, ``bool(a)``, ``not a``): TypeError.

        Without this Python would answer ``len(a) > 0`` whatever the
        device holds; the data's truth needs a copy: test ``a.get()``.

        Raises
        ------
        TypeError
            Always, naming the explicit way.
        """
        raise TypeError("an OffloadArray has no truth value (it would need the device's "
                        "data): test a.get() with NumPy, e.g. a.get().any(), or use "
                        "'a is not None', 'a.size'")

    def _refuse_comparison(self, other: object) -> NoReturn:
        raise TypeError("OffloadArray has no element-wise comparisons; compare a.get() "
                        "(the device's data) with NumPy")

    def __eq__(self, other: object) -> NoReturn:
        """Refuse ``==``: no element-wise comparison on the device (TypeError)."""
        self._refuse_comparison(other)

    def __ne__(self, other: object) -> NoReturn:
        """Refuse ``!=``: no element-wise comparison on the device (TypeError)."""
        self._refuse_comparison(other)

    def __lt__(self, other: object) -> NoReturn:
        """Refuse ``<``: no element-wise comparison on the device (TypeError)."""
        self._refuse_comparison(other)

    def __le__(self, other: object) -> NoReturn:
        """Refuse ``<=``: no element-wise comparison on the device (TypeError)."""
        self._refuse_comparison(other)

    def __gt__(self, other: object) -> NoReturn:
        """Refuse ``>``: no element-wise comparison on the device (TypeError)."""
        self._refuse_comparison(other)

    def __ge__(self, other: object) -> NoReturn:
        """Refuse ``>=``: no element-wise comparison on the device (TypeError)."""
        self._refuse_comparison(other)
