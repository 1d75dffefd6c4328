"""Helpers shared by the test modules (imported as ``helpers``)."""

import os
import subprocess
import sys
import tempfile

import numpy as np


def assert_usable(stream, lib):
    """Check that a normal invoke still works on `stream`.

    Every error test calls this after the expected exception, because a
    failed call must leave pymic usable.

    Parameters
    ----------
    stream : pymic.OffloadStream
        The stream to invoke on.
    lib : pymic.OffloadLibrary
        The test kernel library.
    """
    data = np.arange(8, dtype=np.float64)
    stream.invoke(lib.scale_double, data, data.size, 3.0)
    stream.sync()
    np.testing.assert_array_equal(data, np.arange(8, dtype=np.float64) * 3.0)
    bound = stream.bind(np.ones(4))
    stream.invoke(lib.scale_double, bound, 4, 2.0)
    result = bound.update_host().array
    stream.sync()
    np.testing.assert_array_equal(result, np.full(4, 2.0))


def run_python(code, env=None, cwd=None, timeout=60):
    """Run a Python snippet in a fresh interpreter (same as the tests').

    Parameters
    ----------
    code : str
        The program text.
    env : dict, optional
        Variables added to (or, with value None, removed from) the
        environment of the child.
    cwd : str or pathlib.Path, optional
        Working directory of the child; by default the temporary directory,
        so that a pymic source tree in the working directory cannot shadow
        the installed package.
    timeout : float
        Seconds before the child is considered hung.

    Returns
    -------
    subprocess.CompletedProcess
        With text ``stdout`` and ``stderr``.
    """
    child_env = dict(os.environ)
    for key, value in (env or {}).items():
        if value is None:
            child_env.pop(key, None)
        else:
            child_env[key] = value
    return subprocess.run([sys.executable, "-c", code], capture_output=True,
                          text=True, env=child_env, cwd=cwd or tempfile.gettempdir(),
                          timeout=timeout)


def block(call):
    """Call `call()`; another thread recognises the call by this frame.

    Tests that must act while the main thread waits inside a blocking call
    make the call through here and poll :func:`main_thread_blocked`.
    """
    return call()


def main_thread_blocked():
    """True if the main thread is inside a call made through :func:`block`.

    Checked from another Python thread, which can only run when the main
    thread has released the GIL: seeing the main thread in there means it
    waits inside the call with the GIL released (or is just entering it).
    """
    import threading
    frame = sys._current_frames().get(threading.main_thread().ident)
    for _ in range(8):
        if frame is None:
            return False
        if frame.f_code is block.__code__:
            return True
        frame = frame.f_back
    return False
