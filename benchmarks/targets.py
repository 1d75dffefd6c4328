"""Target rows: one line of the results table, with its PASS/MISS verdict."""

import operator

PASS, MISS, NOT_AVAILABLE, REPORTED = "PASS", "MISS", "N/A", "REPORTED"

_COMPARISONS = {">=": operator.ge, "<=": operator.le, "<": operator.lt, ">": operator.gt}


def check(bench, goal, pymic_text, peer_text, value, comparison, threshold,
          value_text=None, note=""):
    """Build a table row whose verdict compares `value` with `threshold`.

    Parameters
    ----------
    bench : str
        Benchmark id, e.g. ``"B1"``.
    goal : str
        The target in words, e.g. ``"≥ 20× faster than PoCL"``.
    pymic_text, peer_text : str
        pymic's figure and the peer's figure, formatted with units.
    value : float or None
        The number the verdict is about (usually the ratio); None when a
        contender could not run, which makes the row N/A.
    comparison : {'>=', '<=', '<', '>'}
        How `value` must relate to `threshold` to pass.
    threshold : float
        The target's bound.
    value_text : str, optional
        How to print `value`; defaults to two decimals and a ``×``.
    note : str, optional
        Anything a reader needs to interpret the row (e.g. why N/A).

    Returns
    -------
    dict
        Keys ``bench goal pymic peer value value_text threshold comparison
        status note``.
    """
    if value is None:
        status, shown = NOT_AVAILABLE, "—"
    else:
        status = PASS if _COMPARISONS[comparison](value, threshold) else MISS
        shown = value_text if value_text is not None else f"{value:.2f}×"
    return {
        "bench": bench, "goal": goal, "pymic": pymic_text, "peer": peer_text,
        "value": value, "value_text": shown, "threshold": threshold,
        "comparison": comparison, "status": status, "note": note,
    }


def reported(bench, goal, pymic_text, peer_text, value_text, note=""):
    """Build a row for a figure that is reported without a pass bound.

    Parameters
    ----------
    bench, goal, pymic_text, peer_text, value_text, note : str
        As in :func:`check`.

    Returns
    -------
    dict
        A row with status ``REPORTED``.
    """
    return {
        "bench": bench, "goal": goal, "pymic": pymic_text, "peer": peer_text,
        "value": None, "value_text": value_text, "threshold": None,
        "comparison": None, "status": REPORTED, "note": note,
    }


def failed(bench, goal, reason):
    """Build a row for a benchmark that could not produce its figure.

    Parameters
    ----------
    bench, goal : str
        As in :func:`check`.
    reason : str
        What went wrong (exception text, exit status).

    Returns
    -------
    dict
        A row with status ``ERROR``.
    """
    return {
        "bench": bench, "goal": goal, "pymic": "—", "peer": "—", "value": None,
        "value_text": "—", "threshold": None, "comparison": None,
        "status": "ERROR", "note": reason,
    }


def format_time(seconds):
    """Format a duration with a unit that keeps 3 significant digits.

    Parameters
    ----------
    seconds : float
        Duration in seconds.

    Returns
    -------
    str
        e.g. ``"1.23 µs"``, ``"45.6 ms"``.
    """
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"
