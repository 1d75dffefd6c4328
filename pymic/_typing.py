"""Type aliases of pymic's annotations (nothing here runs at import but
the aliases themselves)."""

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal, Protocol, SupportsIndex

import numpy

if TYPE_CHECKING:
    from typing_extensions import CapsuleType

#: A library name or path, as load_library and OffloadLibrary take it.
StrPath = str | os.PathLike[str]

#: Memory layout of an OffloadArray: C (row-major) or Fortran (column-major).
Order = Literal["C", "F"]

#: A shape: one extent (an int or NumPy integer) or a sequence of extents.
ShapeLike = int | numpy.integer[Any] | Sequence[SupportsIndex]


class SupportsDLPack(Protocol):
    """A DLPack producer, as :func:`pymic.from_dlpack` takes it: an object
    whose ``__dlpack__`` gives a capsule (NumPy arrays, torch tensors,
    OffloadArrays ...)."""

    def __dlpack__(self, /, *, stream: None = None) -> "CapsuleType": ...
