"""OffloadStream: the Python face of a stream.

invoke, sync, the transfers, the device memory calls and events are C
methods inherited from ``_engine.Stream``; this class adds the
NumPy-facing conveniences that create OffloadArrays.
"""

import numpy

from . import _engine
from ._dtypes import supported_dtype


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

    def __new__(cls, device=None):
        from .device import _resolve_device
        device = _resolve_device(device)
        return super().__new__(cls, device.device_id, device)

    def __init__(self, device=None):
        # Everything happened in __new__; this only accepts the argument.
        pass

    def __repr__(self):
        return f"<OffloadStream {self.number} on device {self.device_id} at {id(self):#x}>"

    def get_device(self):
        """Return the device this stream runs on.

        Returns
        -------
        OffloadDevice
            The stream's device.
        """
        return self._device

    # ------------------------------------------------ OffloadArray makers

    def bind(self, array, update_device=True):
        """Create an OffloadArray bound to a host array.

        Parameters
        ----------
        array : numpy.ndarray
            C- or Fortran-contiguous array of a supported dtype; its memory
            is the host side of the new OffloadArray.
        update_device : bool, optional
            If True (default) enqueue the copy of `array` to the device.

        Returns
        -------
        OffloadArray
            Array whose ``array`` attribute is `array` itself.

        Raises
        ------
        ValueError
            If `array` is not contiguous or its dtype is not supported.
        TypeError
            If `array` is not a numpy.ndarray.
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

    def copy(self, array, update_device=True):
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
        order = "F" if source.flags.f_contiguous and not source.flags.c_contiguous else "C"
        return self.bind(numpy.array(source, order=order, copy=True), update_device)

    def empty(self, shape, dtype=float, order="C", update_host=True):
        """Create an uninitialised OffloadArray.

        Parameters
        ----------
        shape : int or tuple of int
            Shape of the array.
        dtype : dtype-like, optional
            One of the supported dtypes; default float64.
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

    def zeros(self, shape, dtype=float, order="C", update_host=True):
        """Create an OffloadArray filled with zeros on the device.

        Parameters
        ----------
        shape : int or tuple of int
            Shape of the array.
        dtype : dtype-like, optional
            One of the supported dtypes; default float64.
        order : {'C', 'F'}, optional
            Memory layout; default 'C'.
        update_host : bool, optional
            If True (default) also enqueue the copy to the host array.

        Returns
        -------
        OffloadArray
            The new array.
        """
        return self.bcast(0, shape, dtype, order, update_host)

    def ones(self, shape, dtype=float, order="C", update_host=True):
        """Create an OffloadArray filled with ones on the device.

        Parameters
        ----------
        shape : int or tuple of int
            Shape of the array.
        dtype : dtype-like, optional
            One of the supported dtypes; default float64.
        order : {'C', 'F'}, optional
            Memory layout; default 'C'.
        update_host : bool, optional
            If True (default) also enqueue the copy to the host array.

        Returns
        -------
        OffloadArray
            The new array.
        """
        return self.bcast(1, shape, dtype, order, update_host)

    def bcast(self, value, shape, dtype=float, order="C", update_host=True):
        """Create an OffloadArray with every element set to `value`.

        Parameters
        ----------
        value : scalar
            Fill value, representable in `dtype`.
        shape : int or tuple of int
            Shape of the array.
        dtype : dtype-like, optional
            One of the supported dtypes; default float64.
        order : {'C', 'F'}, optional
            Memory layout; default 'C'.
        update_host : bool, optional
            If True (default) also enqueue the copy to the host array.

        Returns
        -------
        OffloadArray
            The new array.
        """
        from .array import OffloadArray
        offload_array = OffloadArray(shape, supported_dtype(dtype), order=order, stream=self)
        offload_array.fill(value)
        if update_host:
            offload_array.update_host()
        return offload_array

    def empty_like(self, other, dtype=None, order=None, update_host=True):
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

    def zeros_like(self, other, dtype=None, order=None, update_host=True):
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

    def ones_like(self, other, dtype=None, order=None, update_host=True):
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

    def bcast_like(self, value, other, dtype=None, order=None, update_host=True):
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


def _like(other, dtype, order):
    """Shape, dtype and order of a template array, with overrides."""
    shape = tuple(other.shape)
    dtype = other.dtype if dtype is None else dtype
    if order is None:
        order = getattr(other, "order", None)
        if order is None:
            flags = other.flags
            order = "F" if flags.f_contiguous and not flags.c_contiguous else "C"
    return shape, dtype, order
