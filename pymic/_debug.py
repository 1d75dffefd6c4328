"""Debug messages of the Python layer (PYMIC_DEBUG), on stderr."""

import sys
from typing import Any

from . import _engine


def debug(level: int, message: str, *args: Any) -> None:
    """Print a debug message if the debug level is at least `level`.

    Parameters
    ----------
    level : int
        Lowest PYMIC_DEBUG level at which the message appears.
    message : str
        A ``%``-format string.
    *args
        Values for `message`; formatting only happens when printing.

    Returns
    -------
    None
    """
    if _engine.get_debug_level() >= level:
        text = message % args if args else message
        print("PYMIC: " + text, file=sys.stderr, flush=True)
