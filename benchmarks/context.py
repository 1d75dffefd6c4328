"""What every benchmark module receives: run options and kernel locations."""

import dataclasses
import os
import pathlib


@dataclasses.dataclass
class Context:
    """Options of one benchmark run.

    Parameters
    ----------
    quick : bool
        Fewer iterations and sizes, for iterating on the harness itself.
    kernel_dir : pathlib.Path
        Where the Makefile put libbench_kernels.so and libbench_dgemm.so.
    """

    quick: bool
    kernel_dir: pathlib.Path

    def kernel_library(self, stem):
        """Return the absolute path of kernel library ``lib<stem>.so``.

        Parameters
        ----------
        stem : str
            ``"bench_kernels"`` or ``"bench_dgemm"``.

        Returns
        -------
        str
            Absolute path; FileNotFoundError if it was not built.
        """
        path = (self.kernel_dir / f"lib{stem}.so").resolve()
        if not path.is_file():
            raise FileNotFoundError(f"{path} not built (run the benchmarks' Makefile)")
        return os.fspath(path)

    def pick(self, full, quick):
        """Return `quick` in quick mode, else `full`.

        Parameters
        ----------
        full, quick : object
            The setting for a complete run and for a quick one.

        Returns
        -------
        object
            One of the two.
        """
        return quick if self.quick else full


def pymic_default_stream(context, stem="bench_kernels"):
    """Load a benchmark kernel library into pymic's device 0.

    Parameters
    ----------
    context : Context
        Locates the library.
    stem : str, optional
        Library name without ``lib`` and ``.so``.

    Returns
    -------
    tuple
        ``(pymic module, device 0, its default stream, OffloadLibrary)``.
    """
    import pymic

    device = pymic.devices[0]
    library = device.load_library(context.kernel_library(stem))
    return pymic, device, device.get_default_stream(), library
