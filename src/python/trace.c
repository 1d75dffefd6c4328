/*
 * trace.c -- pymic._engine's face of the engine's trace recorder.
 *
 * Only switching and reading: recording happens inside libpymic, and the
 * package (pymic/trace.py) turns what is read into a trace file.
 */
#include "engine_module.h"

PyDoc_STRVAR(trace_start_doc,
"trace_start(commands_per_stream=0)\n"
"--\n"
"\n"
"Start recording every command and host wait.\n"
"\n"
"Parameters\n"
"----------\n"
"commands_per_stream : int\n"
"    Room for this many commands per stream (0: the engine's default).\n"
"\n"
"Raises\n"
"------\n"
"OffloadError\n"
"    If a trace is already being recorded.\n");

static PyObject *trace_start(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs > 1) {
        PyErr_SetString(PyExc_TypeError, "trace_start() takes at most 1 argument");
        return NULL;
    }
    size_t capacity = 0;
    if (nargs == 1 && parse_size_arg(args[0], "commands_per_stream", 1, &capacity) < 0)
        return NULL;
    return none_or_engine_error(pymic_trace_start(capacity));
}

PyDoc_STRVAR(trace_stop_doc,
"trace_stop()\n"
"--\n"
"\n"
"Stop recording (idempotent); what was recorded stays readable.\n");

static PyObject *trace_stop(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    return none_or_engine_error(pymic_trace_stop());
}

PyDoc_STRVAR(trace_active_doc,
"trace_active()\n"
"--\n"
"\n"
"True while a trace is being recorded.\n");

static PyObject *trace_active(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    return PyBool_FromLong(pymic_trace_active() == 1);
}

static PyObject *command_tuple(const pymic_trace_command *c)
{
    return Py_BuildValue("(iiKsiKKKKi)", c->device, c->stream, (unsigned long long)c->seq,
                         c->name, c->kind, (unsigned long long)c->bytes,
                         (unsigned long long)c->enqueue_ns, (unsigned long long)c->start_ns,
                         (unsigned long long)c->end_ns, c->host_thread);
}

static PyObject *wait_tuple(const pymic_trace_wait *w)
{
    return Py_BuildValue("(iiiKKKiO)", w->kind, w->device, w->stream,
                         (unsigned long long)w->target, (unsigned long long)w->start_ns,
                         (unsigned long long)w->end_ns, w->host_thread,
                         w->timed_out ? Py_True : Py_False);
}

PyDoc_STRVAR(trace_read_doc,
"trace_read()\n"
"--\n"
"\n"
"What the current or last trace recorded.\n"
"\n"
"Returns\n"
"-------\n"
"tuple\n"
"    ``(commands, waits, dropped)``: commands as tuples ``(device, stream,\n"
"    seq, name, kind, bytes, enqueue_ns, start_ns, end_ns, host_thread)``\n"
"    (start and end 0 for a command that had not run), waits as tuples\n"
"    ``(kind, device, stream, target, start_ns, end_ns, host_thread,\n"
"    timed_out)``, and the number of records lost to full buffers.\n"
"    Times are CLOCK_MONOTONIC nanoseconds, as ``time.monotonic_ns()``.\n");

static PyObject *trace_read(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    pymic_trace_command *commands = NULL;
    pymic_trace_wait *waits = NULL;
    size_t ncommands = 0, nwaits = 0;
    uint64_t dropped = 0;
    int status;
    Py_BEGIN_ALLOW_THREADS
    status = pymic_trace_read(&commands, &ncommands, &waits, &nwaits, &dropped);
    Py_END_ALLOW_THREADS
    if (status != PYMIC_OK)
        return raise_engine_error(status);
    PyObject *result = NULL;
    PyObject *clist = PyList_New((Py_ssize_t)ncommands);
    PyObject *wlist = PyList_New((Py_ssize_t)nwaits);
    if (!clist || !wlist)
        goto done;
    for (size_t i = 0; i < ncommands; i++) {
        PyObject *item = command_tuple(&commands[i]);
        if (!item)
            goto done;
        PyList_SET_ITEM(clist, (Py_ssize_t)i, item);
    }
    for (size_t i = 0; i < nwaits; i++) {
        PyObject *item = wait_tuple(&waits[i]);
        if (!item)
            goto done;
        PyList_SET_ITEM(wlist, (Py_ssize_t)i, item);
    }
    result = Py_BuildValue("(OOK)", clist, wlist, (unsigned long long)dropped);
done:
    Py_XDECREF(clist);
    Py_XDECREF(wlist);
    pymic_trace_free(commands);
    pymic_trace_free(waits);
    return result;
}

PyDoc_STRVAR(trace_stream_number_doc,
"trace_stream_number(stream)\n"
"--\n"
"\n"
"The number a trace gives `stream` (an _engine.Stream), 0 if never traced.\n");

static PyObject *trace_stream_number(PyObject *Py_UNUSED(module), PyObject *stream)
{
    if (!PyObject_TypeCheck(stream, &Stream_Type)) {
        PyErr_SetString(PyExc_TypeError, "trace_stream_number() needs a stream");
        return NULL;
    }
    return PyLong_FromLong(pymic_trace_stream_number(((StreamObject *)stream)->handle));
}

static PyMethodDef trace_methods[] = {
    {"trace_start", (PyCFunction)(void (*)(void))trace_start, METH_FASTCALL, trace_start_doc},
    {"trace_stop", trace_stop, METH_NOARGS, trace_stop_doc},
    {"trace_active", trace_active, METH_NOARGS, trace_active_doc},
    {"trace_read", trace_read, METH_NOARGS, trace_read_doc},
    {"trace_stream_number", trace_stream_number, METH_O, trace_stream_number_doc},
    {NULL, NULL, 0, NULL},
};

int trace_module_init(PyObject *module)
{
    return PyModule_AddFunctions(module, trace_methods);
}
