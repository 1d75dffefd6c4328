"""OffloadArray: a NumPy array with a buffer on an offload device."""

import math
import operator
from typing import TYPE_CHECKING, Any, ClassVar, SupportsIndex

import numpy
from numpy.typing import ArrayLike, DTypeLike, NDArray

from . import _engine
from ._dtypes import ABS_RESULT, KERNEL_SUFFIX, scalar_of, supported_dtype
from ._typing import Order, ShapeLike

if TYPE_CHECKING:
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
        One of int64, int32, uint64, float64, float32, complex128, complex64.
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
        Stream used by the array's operations.
    shape, dtype, size, ndim, order, nbytes
        As for the host array.

    Raises
    ------
    ValueError
        For an unsupported dtype, a bad order, or a `base` that does not
        match.
    OffloadError
        If the device is out of memory.
    """

    array: NDArray[Any] | None
    device: "OffloadDevice"
    stream: "OffloadStream"
    shape: tuple[int, ...]
    dtype: numpy.dtype[Any]
    order: Order
    ndim: int
    size: int
    nbytes: int
    _dptr: _engine.DevicePointer

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

    def _describe(self, array: NDArray[Any] | None, device: "OffloadDevice",
                  stream: "OffloadStream", shape: tuple[int, ...], dtype: numpy.dtype[Any],
                  order: Order) -> None:
        self.array = array
        self.device = device
        self.stream = stream
        self.shape = shape
        self.dtype = dtype
        self.order = order
        self.ndim = len(shape)
        self.size = math.prod(shape)
        self.nbytes = self.size * dtype.itemsize

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
            self.stream.transfer_host2device(self.array, self._dptr, self.nbytes, 0,
                                             self._doffset)
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
            self.stream.transfer_device2host(self._dptr, self.array, self.nbytes,
                                             self._doffset, 0)
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
        self.stream = stream
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
        operand = self._device_operand(other)
        if operation == "pow":
            self._check_integer_exponent(operand)
        if isinstance(operand, OffloadArray):
            if out._overlaps_partially(operand):
                operand = out._detached(operand)
            kernel = self._kernel(operation)
        else:
            kernel = self._kernel(operation + "_scalar")
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
        """
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
            A value representable in the array's dtype.

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
            self.stream.invoke(self._kernel("fill"), self, scalar, self.size)
        return self

    def zero(self) -> "OffloadArray":
        """Set every element to zero on the device.

        Returns
        -------
        OffloadArray
            self.
        """
        return self.fill(0)

    def one(self) -> "OffloadArray":
        """Set every element to one on the device.

        Returns
        -------
        OffloadArray
            self.
        """
        return self.fill(1)

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
            self.stream.transfer_host2device(source, self._dptr, self.nbytes, 0,
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
        """
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
            host = view.array[0] if view.array is not None else None
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
            self.stream.transfer_host2device(source, self._dptr, target.nbytes, 0,
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
        return str(self.array)

    def __repr__(self) -> str:
        return repr(self.array)
