"""OffloadStream: the Python face of a stream.

invoke, sync, the transfers, the device memory calls and events are C
methods inherited from ``_engine.Stream``; this class adds the
NumPy-facing conveniences that create OffloadArrays.
"""

from typing import TYPE_CHECKING, Any, Callable

import numpy
from numpy.typing import ArrayLike, DTypeLike, NDArray

from . import _engine
from ._dtypes import supported_dtype
from ._typing import Order, ShapeLike

if TYPE_CHECKING:
    from .array import OffloadArray
    from .device import OffloadDevice


class OffloadStream(_engine.Stream):
    """An in-order queue of commands on one device.

    Commands (copies, kernel invocations, frees, events) run one after
    another in the order they were enqueued; streams of one device run
    concurrently.  Obtain streams from :meth:`OffloadDevice.get_default_stream`
    or :meth:`OffloadDevice.create_stream`.

    Parameters
    ----------
    device : OffloadDevice or int, optional
        The device to run on; default ``pymic.devices[0]``.

    Raises
    ------
    OffloadError
        If the engine cannot create the stream.
    """

    def __new__(cls, device: "OffloadDevice | int | None" = None) -> "OffloadStream":
        from .device import _resolve_device
        device = _resolve_device(device)
        return super().__new__(cls, device.device_id, device)

    def __init__(self, device: "OffloadDevice | int | None" = None) -> None:
        # Everything happened in __new__; this only accepts the argument.
        pass

    def __repr__(self) -> str:
        return f"<OffloadStream {self.number} on device {self.device_id} at {id(self):#x}>"

    def get_device(self) -> "OffloadDevice":
        """Return the device this stream runs on.

        Returns
        -------
        OffloadDevice
            The stream's device.
        """
        return self._device

    # ------------------------------------------------ OffloadArray makers

    def bind(self, array: NDArray[Any], update_device: bool = True) -> "OffloadArray":
        """Create an OffloadArray bound to a host array.

        Parameters
        ----------
        array : numpy.ndarray
            C- or Fortran-contiguous array of any fixed-size dtype without
            Python objects; its memory is the host side of the new
            OffloadArray.
        update_device : bool, optional
            If True (default) enqueue the copy of `array` to the device.

        Returns
        -------
        OffloadArray
            Array whose ``array`` attribute is `array` itself.

        Raises
        ------
        ValueError
            If `array` is not contiguous.
        TypeError
            If `array` is not a numpy.ndarray, or its dtype holds Python
            objects.
        """
        from .array import OffloadArray
        if not isinstance(array, numpy.ndarray):
            raise TypeError(f"bind() needs a numpy.ndarray, not {type(array).__name__}")
        flags = array.flags
        if flags.c_contiguous:
            order = "C"
        elif flags.f_contiguous:
            order = "F"
        else:
            raise ValueError("bind() needs a C- or Fortran-contiguous array; "
                             "use numpy.ascontiguousarray() or stream.copy()")
        offload_array = OffloadArray(array.shape, array.dtype, order=order, base=array,
                                     stream=self)
        if update_device:
            offload_array.update_device()
        return offload_array

    def copy(self, array: ArrayLike, update_device: bool = True) -> "OffloadArray":
        """Create an OffloadArray bound to a private copy of a host array.

        Parameters
        ----------
        array : array_like
            Data to copy; any layout.
        update_device : bool, optional
            If True (default) enqueue the copy to the device.

        Returns
        -------
        OffloadArray
            Array whose ``array`` attribute is a new contiguous copy, so
            later transfers never touch the original.
        """
        source = numpy.asarray(array)
        order: Order = "F" if source.flags.f_contiguous and not source.flags.c_contiguous else "C"
        return self.bind(numpy.array(source, order=order, copy=True), update_device)

    def empty(self, shape: ShapeLike, dtype: DTypeLike = float, order: Order = "C",
              update_host: bool = True) -> "OffloadArray":
        """Create an uninitialised OffloadArray.

        Parameters
        ----------
        shape : int or tuple of int
            Shape of the array.
        dtype : dtype-like, optional
            Any fixed-size dtype without Python objects; default float64.
        order : {'C', 'F'}, optional
            Memory layout; default 'C'.
        update_host : bool, optional
            If True (default) enqueue a copy of the device contents to the
            new host array.

        Returns
        -------
        OffloadArray
            The new array.
        """
        from .array import OffloadArray
        offload_array = OffloadArray(shape, dtype, order=order, stream=self)
        if update_host:
            offload_array.update_host()
        return offload_array

    def zeros(self, shape: ShapeLike, dtype: DTypeLike = float, order: Order = "C",
              update_host: bool = True) -> "OffloadArray":
        """Create an OffloadArray filled with zeros on the device.

        Parameters
        ----------
        shape : int or tuple of int
            Shape of the array.
        dtype : dtype-like, optional
            Any fixed-size dtype without Python objects; default float64.
        order : {'C', 'F'}, optional
            Memory layout; default 'C'.
        update_host : bool, optional
            If True (default) also enqueue the copy to the host array.

        Returns
        -------
        OffloadArray
            The new array; for every dtype its elements are all-zero
            bytes, as NumPy's ``zeros`` gives.
        """
        from .array import OffloadArray
        return self._filled(OffloadArray.zero, shape, dtype, order, update_host)

    def ones(self, shape: ShapeLike, dtype: DTypeLike = float, order: Order = "C",
             update_host: bool = True) -> "OffloadArray":
        """Create an OffloadArray filled with ones on the device.

        Parameters
        ----------
        shape : int or tuple of int
            Shape of the array.
        dtype : dtype-like, optional
            Any fixed-size dtype without Python objects; default float64.
        order : {'C', 'F'}, optional
            Memory layout; default 'C'.
        update_host : bool, optional
            If True (default) also enqueue the copy to the host array.

        Returns
        -------
        OffloadArray
            The new array.

        Raises
        ------
        TypeError
            If `dtype` is not a bool or number dtype.
        """
        from .array import OffloadArray
        return self._filled(OffloadArray.one, shape, dtype, order, update_host)

    def bcast(self, value: Any, shape: ShapeLike, dtype: DTypeLike = float, order: Order = "C",
              update_host: bool = True) -> "OffloadArray":
        """Create an OffloadArray with every element set to `value`.

        Parameters
        ----------
        value : scalar
            Fill value, representable in `dtype`.
        shape : int or tuple of int
            Shape of the array.
        dtype : dtype-like, optional
            Any fixed-size dtype without Python objects; default float64.
        order : {'C', 'F'}, optional
            Memory layout; default 'C'.
        update_host : bool, optional
            If True (default) also enqueue the copy to the host array.

        Returns
        -------
        OffloadArray
            The new array.
        """
        return self._filled(lambda array: array.fill(value), shape, dtype, order, update_host)

    def _filled(self, set_elements: "Callable[[OffloadArray], object]", shape: ShapeLike,
                dtype: DTypeLike, order: str, update_host: bool) -> "OffloadArray":
        """A new OffloadArray whose elements `set_elements(array)` sets."""
        from .array import OffloadArray
        offload_array = OffloadArray(shape, supported_dtype(dtype), order=order, stream=self)
        set_elements(offload_array)
        if update_host:
            offload_array.update_host()
        return offload_array

    def empty_like(self, other: "OffloadArray | NDArray[Any]", dtype: DTypeLike | None = None,
                   order: Order | None = None, update_host: bool = True) -> "OffloadArray":
        """Create an uninitialised OffloadArray shaped like `other`.

        Parameters
        ----------
        other : OffloadArray or numpy.ndarray
            Template for shape (and dtype and order unless given).
        dtype : dtype-like, optional
            Overrides `other`'s dtype.
        order : {'C', 'F'}, optional
            Overrides `other`'s layout.
        update_host : bool, optional
            If True (default) enqueue the copy to the host array.

        Returns
        -------
        OffloadArray
            The new array.
        """
        shape, dtype, order = _like(other, dtype, order)
        return self.empty(shape, dtype, order, update_host)

    def zeros_like(self, other: "OffloadArray | NDArray[Any]", dtype: DTypeLike | None = None,
                   order: Order | None = None, update_host: bool = True) -> "OffloadArray":
        """Create a zero-filled OffloadArray shaped like `other`.

        Parameters
        ----------
        other : OffloadArray or numpy.ndarray
            Template for shape (and dtype and order unless given).
        dtype : dtype-like, optional
            Overrides `other`'s dtype.
        order : {'C', 'F'}, optional
            Overrides `other`'s layout.
        update_host : bool, optional
            If True (default) enqueue the copy to the host array.

        Returns
        -------
        OffloadArray
            The new array.
        """
        shape, dtype, order = _like(other, dtype, order)
        return self.zeros(shape, dtype, order, update_host)

    def ones_like(self, other: "OffloadArray | NDArray[Any]", dtype: DTypeLike | None = None,
                  order: Order | None = None, update_host: bool = True) -> "OffloadArray":
        """Create a one-filled OffloadArray shaped like `other`.

        Parameters
        ----------
        other : OffloadArray or numpy.ndarray
            Template for shape (and dtype and order unless given).
        dtype : dtype-like, optional
            Overrides `other`'s dtype.
        order : {'C', 'F'}, optional
            Overrides `other`'s layout.
        update_host : bool, optional
            If True (default) enqueue the copy to the host array.

        Returns
        -------
        OffloadArray
            The new array.
        """
        shape, dtype, order = _like(other, dtype, order)
        return self.ones(shape, dtype, order, update_host)

    def bcast_like(self, value: Any, other: "OffloadArray | NDArray[Any]",
                   dtype: DTypeLike | None = None, order: Order | None = None,
                   update_host: bool = True) -> "OffloadArray":
        """Create an OffloadArray shaped like `other` filled with `value`.

        Parameters
        ----------
        value : scalar
            Fill value, representable in the dtype.
        other : OffloadArray or numpy.ndarray
            Template for shape (and dtype and order unless given).
        dtype : dtype-like, optional
            Overrides `other`'s dtype.
        order : {'C', 'F'}, optional
            Overrides `other`'s layout.
        update_host : bool, optional
            If True (default) enqueue the copy to the host array.

        Returns
        -------
        OffloadArray
            The new array.
        """
        shape, dtype, order = _like(other, dtype, order)
        return self.bcast(value, shape, dtype, order, update_host)


def _like(other: Any, dtype: DTypeLike | None,
          order: Order | None) -> tuple[tuple[int, ...], DTypeLike, Order]:
    """Shape, dtype and order of a template array, with overrides."""
    shape = tuple(other.shape)
    dtype = other.dtype if dtype is None else dtype
    if order is None:
        order = getattr(other, "order", None)
        if order is None:
            flags = other.flags
            order = "F" if flags.f_contiguous and not flags.c_contiguous else "C"
    return shape, dtype, order
