"""Type aliases of pymic's annotations (nothing here runs at import but
the aliases themselves)."""

import os
from collections.abc import Sequence
from typing import Any, Literal, SupportsIndex

import numpy

#: A library name or path, as load_library and OffloadLibrary take it.
StrPath = str | os.PathLike[str]

#: Memory layout of an OffloadArray: C (row-major) or Fortran (column-major).
Order = Literal["C", "F"]

#: A shape: one extent (an int or NumPy integer) or a sequence of extents.
ShapeLike = int | numpy.integer[Any] | Sequence[SupportsIndex]
