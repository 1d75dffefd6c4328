/*
 * trace.c -- pymic._engine's face of the engine's trace recorder.
 *
 * Switching, reading, and call sites: recording happens inside libpymic,
 * and the package (pymic/tracing.py) turns what is read into a trace file.
 *
 * Call sites.  While a trace records, the engine asks a hook for a number
 * to keep in each record (pymic_trace_set_site_hook); the hook here walks
 * the Python frames of the calling thread up to the first one outside the
 * pymic package and numbers the source location it finds -- (code object,
 * instruction offset) pairs, one for `compact`, the whole stack for `full`
 * -- in a table that lives as long as the module.  Line numbers and file
 * names are only worked out when the trace is read.  The hook runs with the
 * stream's enqueue lock held, so it must not run Python code: the garbage
 * collector (which may call finalizers that enqueue) is held off while it
 * walks.  It finds the frames only on a thread holding the GIL; a blocking
 * wait, which releases the GIL, notes its site beforehand
 * (trace_wait_site_enter).  While no trace records the engine never calls
 * the hook, so an untraced invoke pays nothing for it.
 */
#include "engine_module.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ call sites */

enum site_mode { SITES_NONE = 0, SITES_COMPACT = 1, SITES_FULL = 2 };

/* One frame of a call site: the code object (a strong reference held by
 * the table) and the offset of the instruction that made the call. */
typedef struct site_frame {
    PyObject *code;
    int lasti;
} site_frame;

typedef struct site_entry {
    uint64_t hash;
    uint32_t nframes;
    site_frame *frames; /* innermost (the call) first */
} site_entry;

/* Frames deeper than this are cut from a `full` stack (outermost kept). */
#define SITE_MAX_FRAMES 256

static struct {
    /* Read by the hook on threads without the GIL too. */
    _Atomic int mode;
    PyObject *internal_prefix; /* the pymic package's directory + "/"     */
    /* code object -> 1 inside pymic, 2 outside (pointer keys, strong refs) */
    PyObject **class_keys;
    unsigned char *class_values;
    size_t class_capacity, class_count;
    /* sites, numbered from 1, and an index by hash */
    site_entry *entries;
    uint32_t count, capacity;
    uint32_t *index; /* entry number + 1, 0 = empty */
    size_t index_capacity;
    site_frame scratch[SITE_MAX_FRAMES];
} sites;

/* The site a thread noted before it released the GIL to wait. */
static _Thread_local uint32_t wait_site;

static uint64_t mix(uint64_t h, uint64_t v)
{
    h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
    return h * 0xff51afd7ed558ccdull;
}

static int grow_class_table(void)
{
    size_t capacity = sites.class_capacity ? 2 * sites.class_capacity : 256;
    PyObject **keys = calloc(capacity, sizeof *keys);
    unsigned char *values = calloc(capacity, 1);
    if (!keys || !values) {
        free(keys);
        free(values);
        return -1;
    }
    for (size_t i = 0; i < sites.class_capacity; i++) {
        PyObject *key = sites.class_keys[i];
        if (!key)
            continue;
        size_t j = (size_t)mix(0, (uintptr_t)key) & (capacity - 1);
        while (keys[j])
            j = (j + 1) & (capacity - 1);
        keys[j] = key;
        values[j] = sites.class_values[i];
    }
    free(sites.class_keys);
    free(sites.class_values);
    sites.class_keys = keys;
    sites.class_values = values;
    sites.class_capacity = capacity;
    return 0;
}

/* 1 if `code` belongs to the pymic package, 0 if not, -1 on failure. */
static int code_is_internal(PyObject *code)
{
    if (sites.class_capacity) {
        size_t j = (size_t)mix(0, (uintptr_t)code) & (sites.class_capacity - 1);
        while (sites.class_keys[j]) {
            if (sites.class_keys[j] == code)
                return sites.class_values[j] == 1;
            j = (j + 1) & (sites.class_capacity - 1);
        }
    }
    if (2 * (sites.class_count + 1) > sites.class_capacity && grow_class_table() < 0)
        return -1;
    int internal = 0;
    PyObject *filename = ((PyCodeObject *)code)->co_filename;
    if (sites.internal_prefix && filename && PyUnicode_Check(filename))
        internal = PyUnicode_Tailmatch(filename, sites.internal_prefix, 0, PY_SSIZE_T_MAX, -1) == 1;
    size_t j = (size_t)mix(0, (uintptr_t)code) & (sites.class_capacity - 1);
    while (sites.class_keys[j])
        j = (j + 1) & (sites.class_capacity - 1);
    sites.class_keys[j] = Py_NewRef(code);
    sites.class_values[j] = internal ? 1 : 2;
    sites.class_count++;
    return internal;
}

static int frame_lasti(PyFrameObject *frame)
{
#if PY_VERSION_HEX >= 0x030B0000
    return PyFrame_GetLasti(frame);
#else
    return frame->f_lasti * (int)sizeof(_Py_CODEUNIT);
#endif
}

static int grow_index(void)
{
    size_t capacity = sites.index_capacity ? 2 * sites.index_capacity : 256;
    uint32_t *index = calloc(capacity, sizeof *index);
    if (!index)
        return -1;
    for (uint32_t e = 0; e < sites.count; e++) {
        size_t j = (size_t)sites.entries[e].hash & (capacity - 1);
        while (index[j])
            j = (j + 1) & (capacity - 1);
        index[j] = e + 1;
    }
    free(sites.index);
    sites.index = index;
    sites.index_capacity = capacity;
    return 0;
}

/* Field by field: the structs have padding that memcmp would compare. */
static bool same_frames(const site_frame *a, const site_frame *b, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++)
        if (a[i].code != b[i].code || a[i].lasti != b[i].lasti)
            return false;
    return true;
}

/* The number of the site made of `n` frames, adding it if new; 0 on
 * failure. */
static uint32_t site_number(const site_frame *frames, uint32_t n)
{
    uint64_t hash = n;
    for (uint32_t i = 0; i < n; i++)
        hash = mix(mix(hash, (uintptr_t)frames[i].code), (uint64_t)(unsigned)frames[i].lasti);
    if (sites.index_capacity) {
        size_t j = (size_t)hash & (sites.index_capacity - 1);
        for (; sites.index[j]; j = (j + 1) & (sites.index_capacity - 1)) {
            const site_entry *e = &sites.entries[sites.index[j] - 1];
            if (e->hash == hash && e->nframes == n && same_frames(e->frames, frames, n))
                return sites.index[j];
        }
    }
    if (sites.count == UINT32_MAX - 1)
        return 0;
    if (2 * ((size_t)sites.count + 1) > sites.index_capacity && grow_index() < 0)
        return 0;
    if (sites.count == sites.capacity) {
        uint32_t capacity = sites.capacity ? 2 * sites.capacity : 64;
        site_entry *entries = realloc(sites.entries, capacity * sizeof *entries);
        if (!entries)
            return 0;
        sites.entries = entries;
        sites.capacity = capacity;
    }
    site_frame *copy = malloc(n * sizeof *copy);
    if (!copy)
        return 0;
    for (uint32_t i = 0; i < n; i++) {
        copy[i].code = Py_NewRef(frames[i].code);
        copy[i].lasti = frames[i].lasti;
    }
    sites.entries[sites.count] = (site_entry){hash, n, copy};
    uint32_t number = ++sites.count;
    size_t j = (size_t)hash & (sites.index_capacity - 1);
    while (sites.index[j])
        j = (j + 1) & (sites.index_capacity - 1);
    sites.index[j] = number;
    return number;
}

/* The site of the Python code running on this thread (GIL held). */
static uint32_t current_site(void)
{
    bool compact = atomic_load_explicit(&sites.mode, memory_order_relaxed) == SITES_COMPACT;
    PyObject *type, *value, *traceback;
    PyErr_Fetch(&type, &value, &traceback);
    int gc_was_enabled = PyGC_Disable();
    uint32_t n = 0, number = 0;
    PyFrameObject *frame = PyEval_GetFrame(); /* borrowed */
    Py_XINCREF(frame);
    bool outside = false;
    while (frame) {
        PyObject *code = (PyObject *)PyFrame_GetCode(frame);
        int internal = outside ? 0 : code_is_internal(code);
        if (internal < 0) {
            Py_DECREF(code);
            break;
        }
        if (!internal) {
            outside = true;
            if (n == SITE_MAX_FRAMES)
                memmove(sites.scratch + 1, sites.scratch + 2,
                        (SITE_MAX_FRAMES - 2) * sizeof *sites.scratch); /* keep the call */
            else
                n++;
            sites.scratch[n - 1] = (site_frame){code, frame_lasti(frame)};
        }
        Py_DECREF(code); /* the table takes its own references */
        if (outside && compact)
            break;
        PyFrameObject *back = PyFrame_GetBack(frame);
        Py_DECREF(frame);
        frame = back;
    }
    Py_XDECREF(frame);
    if (n)
        number = site_number(sites.scratch, n);
    if (gc_was_enabled)
        PyGC_Enable();
    PyErr_Clear();
    PyErr_Restore(type, value, traceback);
    return number;
}

static uint32_t site_hook(void)
{
    if (atomic_load_explicit(&sites.mode, memory_order_relaxed) == SITES_NONE)
        return 0;
    /* Without the GIL the frames may not be touched: a wait notes its site
     * before it lets the GIL go. */
    if (!PyGILState_Check())
        return wait_site;
    return current_site();
}

int trace_sites_on;

void trace_wait_site_enter_slow(void)
{
    if (pymic_trace_active() == 1)
        wait_site = current_site();
}

void trace_wait_site_leave_slow(void)
{
    wait_site = 0;
}

PyDoc_STRVAR(trace_set_sites_doc,
"trace_set_sites(mode, internal_prefix)\n"
"--\n"
"\n"
"Choose the call sites recorded while tracing.\n"
"\n"
"Parameters\n"
"----------\n"
"mode : str\n"
"    ``'none'``, ``'compact'`` (the call: the first frame outside the\n"
"    package) or ``'full'`` (the whole stack from there out).\n"
"internal_prefix : str\n"
"    Frames whose file name starts with this are the package's own.\n");

static PyObject *trace_set_sites(PyObject *Py_UNUSED(module), PyObject *const *args,
                                 Py_ssize_t nargs)
{
    if (nargs != 2 || !PyUnicode_Check(args[0]) || !PyUnicode_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "trace_set_sites() takes two strings");
        return NULL;
    }
    const char *mode = PyUnicode_AsUTF8(args[0]);
    if (!mode)
        return NULL;
    enum site_mode chosen;
    if (strcmp(mode, "none") == 0)
        chosen = SITES_NONE;
    else if (strcmp(mode, "compact") == 0)
        chosen = SITES_COMPACT;
    else if (strcmp(mode, "full") == 0)
        chosen = SITES_FULL;
    else {
        PyErr_Format(PyExc_ValueError, "call sites: %R is not one of 'none', 'compact', 'full'",
                     args[0]);
        return NULL;
    }
    if (!sites.internal_prefix || PyUnicode_Compare(sites.internal_prefix, args[1]) != 0) {
        /* A new prefix makes every classification stale. */
        for (size_t i = 0; i < sites.class_capacity; i++)
            Py_XDECREF(sites.class_keys[i]);
        free(sites.class_keys);
        free(sites.class_values);
        sites.class_keys = NULL;
        sites.class_values = NULL;
        sites.class_capacity = sites.class_count = 0;
        Py_XSETREF(sites.internal_prefix, Py_NewRef(args[1]));
    }
    atomic_store_explicit(&sites.mode, (int)chosen, memory_order_relaxed);
    trace_sites_on = chosen != SITES_NONE;
    pymic_trace_set_site_hook(chosen == SITES_NONE ? NULL : site_hook);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(trace_sites_doc,
"trace_sites(first=1)\n"
"--\n"
"\n"
"The call sites numbered so far, from number `first` on.\n"
"\n"
"Returns\n"
"-------\n"
"list of tuple\n"
"    Item i is site ``first + i``: a tuple of frames ``(filename, line,\n"
"    function)``, the outermost first and the call last.\n");

static PyObject *site_tuple(const site_entry *e)
{
    PyObject *frames = PyTuple_New((Py_ssize_t)e->nframes);
    if (!frames)
        return NULL;
    for (uint32_t i = 0; i < e->nframes; i++) {
        PyCodeObject *code = (PyCodeObject *)e->frames[i].code;
        int line = PyCode_Addr2Line(code, e->frames[i].lasti);
        PyObject *frame = Py_BuildValue("(OiO)", code->co_filename, line, code->co_name);
        if (!frame) {
            Py_DECREF(frames);
            return NULL;
        }
        PyTuple_SET_ITEM(frames, (Py_ssize_t)(e->nframes - 1 - i), frame);
    }
    return frames;
}

static PyObject *trace_sites(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    size_t first = 1;
    if (nargs > 1) {
        PyErr_SetString(PyExc_TypeError, "trace_sites() takes at most 1 argument");
        return NULL;
    }
    if (nargs == 1 && parse_size_arg(args[0], "first", 1, &first) < 0)
        return NULL;
    if (first < 1)
        first = 1;
    Py_ssize_t n = first > sites.count ? 0 : (Py_ssize_t)(sites.count - first + 1);
    PyObject *list = PyList_New(n);
    if (!list)
        return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = site_tuple(&sites.entries[first - 1 + (size_t)i]);
        if (!item) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, i, item);
    }
    return list;
}

/* ---------------------------------------------------------------- records */

/* What a trace recorded, as read once: read record by record from Python
 * (trace files are written as they are read, never as one big list). */
typedef struct {
    PyObject_HEAD
    pymic_trace_command *commands;
    pymic_trace_wait *waits;
    size_t ncommands, nwaits;
    unsigned long long dropped;
} RecordsObject;

static void records_dealloc(RecordsObject *self)
{
    pymic_trace_free(self->commands);
    pymic_trace_free(self->waits);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int wait_start_order(const void *a, const void *b)
{
    const pymic_trace_wait *x = a, *y = b;
    return (x->start_ns > y->start_ns) - (x->start_ns < y->start_ns);
}

/* The command record at index `arg`, or NULL with an exception set. */
static const pymic_trace_command *command_at(RecordsObject *self, PyObject *arg)
{
    Py_ssize_t i = PyLong_AsSsize_t(arg);
    if (i == -1 && PyErr_Occurred())
        return NULL;
    if (i < 0 || (size_t)i >= self->ncommands) {
        PyErr_SetString(PyExc_IndexError, "command record out of range");
        return NULL;
    }
    return &self->commands[i];
}

static PyObject *records_command(RecordsObject *self, PyObject *arg)
{
    const pymic_trace_command *c = command_at(self, arg);
    if (!c)
        return NULL;
    return Py_BuildValue("(iiKsiKKKKiIK)", c->device, c->stream, (unsigned long long)c->seq,
                         c->name, c->kind, (unsigned long long)c->bytes,
                         (unsigned long long)c->enqueue_ns, (unsigned long long)c->start_ns,
                         (unsigned long long)c->end_ns, c->host_thread, (unsigned)c->site,
                         (unsigned long long)c->event_record);
}

static PyObject *records_device_span(RecordsObject *self, PyObject *arg)
{
    const pymic_trace_command *c = command_at(self, arg);
    if (!c)
        return NULL;
    if (!c->device_start_ns)
        Py_RETURN_NONE;
    return Py_BuildValue("(KKK)", (unsigned long long)c->device_start_ns,
                         (unsigned long long)c->device_end_ns,
                         (unsigned long long)c->device_clock_error_ns);
}

static PyObject *records_wait(RecordsObject *self, PyObject *arg)
{
    Py_ssize_t i = PyLong_AsSsize_t(arg);
    if (i == -1 && PyErr_Occurred())
        return NULL;
    if (i < 0 || (size_t)i >= self->nwaits) {
        PyErr_SetString(PyExc_IndexError, "wait record out of range");
        return NULL;
    }
    const pymic_trace_wait *w = &self->waits[i];
    return Py_BuildValue("(iiiKKKiOI)", w->kind, w->device, w->stream,
                         (unsigned long long)w->target, (unsigned long long)w->start_ns,
                         (unsigned long long)w->end_ns, w->host_thread,
                         w->timed_out ? Py_True : Py_False, (unsigned)w->site);
}

static PyObject *records_counts(RecordsObject *self, PyObject *Py_UNUSED(ignored))
{
    return Py_BuildValue("(nnK)", (Py_ssize_t)self->ncommands, (Py_ssize_t)self->nwaits,
                         self->dropped);
}

static PyMethodDef records_methods[] = {
    {"command", (PyCFunction)records_command, METH_O,
     "command(i): command record i as a tuple (device, stream, seq, name, kind, bytes, "
     "enqueue_ns, start_ns, end_ns, host_thread, site, event_record)."},
    {"device_span", (PyCFunction)records_device_span, METH_O,
     "device_span(i): command record i's span on the device itself, in the host's clock, "
     "as (start_ns, end_ns, clock_error_ns), or None (the device has no process of its "
     "own, or the command did not run there)."},
    {"wait", (PyCFunction)records_wait, METH_O,
     "wait(i): wait record i (by start time) as a tuple (kind, device, stream, target, "
     "start_ns, end_ns, host_thread, timed_out, site)."},
    {"counts", (PyCFunction)records_counts, METH_NOARGS,
     "counts(): (commands, waits, dropped)."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject Records_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "pymic._engine.TraceRecords",
    .tp_basicsize = sizeof(RecordsObject),
    .tp_dealloc = (destructor)records_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "What a trace recorded, read once (from _engine.trace_records()).",
    .tp_methods = records_methods,
};

PyDoc_STRVAR(trace_records_doc,
"trace_records()\n"
"--\n"
"\n"
"What the current or last trace recorded, as a TraceRecords object whose\n"
"records are turned into tuples one at a time (command(i), wait(i)); the\n"
"waits are sorted by start time.\n");

static PyObject *trace_records(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    RecordsObject *self = PyObject_New(RecordsObject, &Records_Type);
    if (!self)
        return NULL;
    self->commands = NULL;
    self->waits = NULL;
    self->ncommands = self->nwaits = 0;
    uint64_t dropped = 0;
    int status;
    Py_BEGIN_ALLOW_THREADS
    status = pymic_trace_read(&self->commands, &self->ncommands, &self->waits, &self->nwaits,
                              &dropped);
    if (status == PYMIC_OK && self->nwaits > 1)
        qsort(self->waits, self->nwaits, sizeof *self->waits, wait_start_order);
    Py_END_ALLOW_THREADS
    self->dropped = dropped;
    if (status != PYMIC_OK) {
        Py_DECREF(self);
        return raise_engine_error(status);
    }
    return (PyObject *)self;
}

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
    {"trace_records", trace_records, METH_NOARGS, trace_records_doc},
    {"trace_set_sites", (PyCFunction)(void (*)(void))trace_set_sites, METH_FASTCALL,
     trace_set_sites_doc},
    {"trace_sites", (PyCFunction)(void (*)(void))trace_sites, METH_FASTCALL, trace_sites_doc},
    {NULL, NULL, 0, NULL},
};

int trace_module_init(PyObject *module)
{
    if (PyType_Ready(&Records_Type) < 0)
        return -1;
    return PyModule_AddFunctions(module, trace_methods);
}
