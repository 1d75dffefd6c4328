"""The PyOpenCL-on-PoCL peer: the established offload module on this CPU."""

from timing import Unavailable


class OpenCLPeer:
    """An OpenCL context and in-order queue on PoCL's CPU device.

    Raises
    ------
    Unavailable
        If PyOpenCL does not import, finds no CPU device, or cannot build a
        kernel; the message carries the reason for the results table.
    """

    def __init__(self):
        try:
            import pyopencl as cl
        except Exception as error:  # any import failure means "peer absent"
            raise Unavailable(f"pyopencl does not import: {error}") from error
        self._cl = cl
        try:
            devices = [device for platform in cl.get_platforms()
                       for device in platform.get_devices(device_type=cl.device_type.CPU)]
        except Exception as error:
            raise Unavailable(f"no OpenCL platform: {error}") from error
        if not devices:
            raise Unavailable("no OpenCL CPU device (is pocl-binary-distribution installed?)")
        self.device = devices[0]
        try:
            self.context = cl.Context(devices=[self.device])
            self.queue = cl.CommandQueue(self.context)
            program = cl.Program(self.context, "__kernel void empty(void) {}").build()
            self._empty = program.empty
        except Exception as error:
            raise Unavailable(f"PoCL failed to set up: {error}") from error

    def describe(self):
        """Return platform and device names and versions.

        Returns
        -------
        dict
            Keys ``platform``, ``platform_version``, ``device``,
            ``pyopencl``.
        """
        platform = self.device.platform
        return {
            "platform": platform.name,
            "platform_version": platform.version,
            "device": self.device.name,
            "pyopencl": self._cl.VERSION_TEXT,
        }

    def empty_kernel_and_finish(self):
        """Enqueue the empty kernel on one work-item and wait for the queue."""
        self._cl.enqueue_nd_range_kernel(self.queue, self._empty, (1,), None)
        self.queue.finish()
