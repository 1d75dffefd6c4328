/*
 * invoke.c -- OffloadStream.invoke: argument marshalling in one C loop.
 *
 * Each argument is classified once, cheapest checks first (exact int and
 * float, None, device pointers, OffloadArrays, then NumPy types), into the
 * pymic_arg table the engine takes.  Nothing is enqueued until every
 * argument has been accepted, so a TypeError or ValueError leaves the
 * stream untouched.
 *
 * ndarray arguments follow pyMIC's copy-in/copy-out: device memory from the
 * engine's caching allocator, a copy in before the kernel, a copy back after
 * it, a stream-ordered free, and a sync with the GIL released before invoke
 * returns.  A non-contiguous array travels as a contiguous copy that is
 * written back into the original afterwards.
 */
#include "engine_module.h"

#include <string.h>

/* Scalar bytes of one argument: big enough for NumPy's clongdouble. */
typedef union scalar_slot {
    int64_t i64;
    double f64;
    double c128[2];
    unsigned char bytes[32];
} scalar_slot;

/* An ndarray argument staged for copy-in/copy-out. */
typedef struct staged_array {
    int index;            /* position in the pymic_arg table               */
    Py_buffer view;       /* buffer of the contiguous array that travels   */
    PyObject *original;   /* non-contiguous original to write back, or NULL */
    PyObject *contiguous; /* the contiguous copy of `original`, or NULL     */
    int writable;         /* copy back after the kernel                     */
    void *device;         /* device memory, once allocated                  */
} staged_array;

typedef struct invoke_state {
    pymic_arg args[PYMIC_MAX_KERNEL_ARGS];
    scalar_slot slots[PYMIC_MAX_KERNEL_ARGS];
    staged_array staged[PYMIC_MAX_KERNEL_ARGS];
    int nstaged;
} invoke_state;

static const pymic_kernel *kernel_from_handle(PyObject *obj)
{
    if (Py_IS_TYPE(obj, KernelHandle_Type)) {
        PyObject *ref = PyStructSequence_GET_ITEM(obj, KERNEL_HANDLE_REF_INDEX);
        if (ref != NULL && Py_IS_TYPE(ref, &KernelRef_Type))
            return ((KernelRefObject *)ref)->kernel;
    }
    PyErr_Format(PyExc_TypeError,
                 "invoke: the first argument must be a kernel handle (library.<name>), "
                 "not %.100s",
                 Py_TYPE(obj)->tp_name);
    return NULL;
}

static int bad_argument(Py_ssize_t position, PyObject *obj)
{
    PyErr_Format(PyExc_TypeError,
                 "invoke: argument %zd (%.100s) cannot be passed to a kernel; expected an "
                 "OffloadArray, numpy.ndarray, device pointer, int, float, complex, bool, "
                 "NumPy scalar or None",
                 position, Py_TYPE(obj)->tp_name);
    return -1;
}

/* The argument is a copy of the first `size` bytes of its slot. */
static inline int use_slot(pymic_arg *arg, scalar_slot *slot, size_t size)
{
    arg->data = slot;
    arg->size = size;
    return 0;
}

static int set_int64(pymic_arg *arg, scalar_slot *slot, PyObject *obj, Py_ssize_t position)
{
    int overflow = 0;
    long long value = PyLong_AsLongLongAndOverflow(obj, &overflow);
    if (value == -1 && PyErr_Occurred())
        return -1;
    if (overflow != 0) {
        PyErr_Format(PyExc_OverflowError,
                     "invoke: argument %zd (%R) does not fit in a 64-bit signed integer",
                     position, obj);
        return -1;
    }
    slot->i64 = (int64_t)value;
    return use_slot(arg, slot, sizeof(int64_t));
}

static int set_complex(pymic_arg *arg, scalar_slot *slot, PyObject *obj)
{
    Py_complex value = PyComplex_AsCComplex(obj);
    if (value.real == -1.0 && PyErr_Occurred())
        return -1;
    slot->c128[0] = value.real;
    slot->c128[1] = value.imag;
    return use_slot(arg, slot, 2 * sizeof(double));
}

/* A NumPy scalar exports its value's bytes in its own dtype. */
static int set_numpy_scalar(pymic_arg *arg, scalar_slot *slot, PyObject *obj,
                            Py_ssize_t position)
{
    Py_buffer view;
    if (PyObject_GetBuffer(obj, &view, PyBUF_SIMPLE) < 0)
        return -1;
    if (view.len <= 0 || (size_t)view.len > sizeof(slot->bytes)) {
        PyErr_Format(PyExc_TypeError, "invoke: argument %zd (%.100s) has no fixed-size value",
                     position, Py_TYPE(obj)->tp_name);
        PyBuffer_Release(&view);
        return -1;
    }
    size_t size = (size_t)view.len;
    memcpy(slot->bytes, view.buf, size);
    PyBuffer_Release(&view);
    return use_slot(arg, slot, size);
}

/* Pass `offset` bytes into a device pointer's memory.  Memory of another
 * device would be a wild pointer on a real accelerator, so it is refused
 * even where the host backend could cope. */
static int set_device_memory(pymic_arg *arg, const DevicePointerObject *dptr, Py_ssize_t offset,
                             int device, Py_ssize_t position, const char *when_freed)
{
    if (dptr->freed) {
        PyErr_Format(OffloadError, "invoke: argument %zd %s", position, when_freed);
        return -1;
    }
    if (dptr->device != device) {
        PyErr_Format(OffloadError,
                     "invoke: argument %zd lives on device %d, the stream runs on device %d",
                     position, dptr->device, device);
        return -1;
    }
    arg->data = (char *)dptr->ptr + offset;
    arg->size = 0;
    return 0;
}

static int set_offload_array(pymic_arg *arg, PyObject *obj, int device, Py_ssize_t position)
{
    ArrayBaseObject *array = (ArrayBaseObject *)obj;
    if (array->dptr == NULL || !Py_IS_TYPE(array->dptr, &DevicePointer_Type)) {
        PyErr_Format(OffloadError, "invoke: argument %zd is an OffloadArray without device memory",
                     position);
        return -1;
    }
    return set_device_memory(arg, (DevicePointerObject *)array->dptr, array->doffset, device,
                             position, "uses deallocated device memory");
}

/* Stage a non-contiguous array as a contiguous copy.  Results go back into
 * the original only if it is writable (probe with a strided request, which
 * any array satisfies). */
static int stage_contiguous_copy(staged_array *staged, PyObject *obj, int flags)
{
    Py_buffer probe;
    staged->writable = PyObject_GetBuffer(obj, &probe, PyBUF_FULL_RO | PyBUF_WRITABLE) == 0;
    if (staged->writable)
        PyBuffer_Release(&probe);
    else
        PyErr_Clear();
    PyObject *copy = PyObject_CallMethod(obj, "copy", NULL);
    if (copy == NULL)
        return -1;
    if (PyObject_GetBuffer(copy, &staged->view, flags | PyBUF_WRITABLE) < 0) {
        Py_DECREF(copy);
        return -1;
    }
    staged->original = staged->writable ? Py_NewRef(obj) : NULL;
    staged->contiguous = copy;
    return 0;
}

/* Export an ndarray's buffer for copy-in/copy-out.  Non-contiguous arrays
 * travel as a contiguous copy; read-only arrays are not copied back. */
static int stage_ndarray(invoke_state *state, int index, PyObject *obj)
{
    staged_array *staged = &state->staged[state->nstaged];
    staged->index = index;
    staged->original = NULL;
    staged->contiguous = NULL;
    staged->device = NULL;
    staged->writable = 1;
    const int flags = PyBUF_ANY_CONTIGUOUS | PyBUF_FORMAT;
    int rc = PyObject_GetBuffer(obj, &staged->view, flags | PyBUF_WRITABLE);
    if (rc < 0) {
        PyErr_Clear();
        staged->writable = 0; /* read-only: copy in only */
        rc = PyObject_GetBuffer(obj, &staged->view, flags);
    }
    if (rc < 0) {
        PyErr_Clear();
        rc = stage_contiguous_copy(staged, obj, flags);
    }
    if (rc < 0)
        return -1;
    state->nstaged++; /* from here on, release_staged gives the entry back */
    /* Python object pointers mean nothing on a device (and a kernel writing
     * them would corrupt reference counts), so object arrays are refused. */
    if (staged->view.format != NULL && strchr(staged->view.format, 'O') != NULL) {
        PyErr_Format(PyExc_TypeError,
                     "invoke: argument %d is an ndarray of Python objects, which cannot be "
                     "passed to a kernel",
                     index + 1);
        return -1;
    }
    return 0;
}

static int classify(invoke_state *state, int device, PyObject *const *objs, int nargs)
{
    for (int i = 0; i < nargs; i++) {
        PyObject *obj = objs[i];
        PyTypeObject *type = Py_TYPE(obj);
        pymic_arg *arg = &state->args[i];
        scalar_slot *slot = &state->slots[i];
        Py_ssize_t position = i + 1;
        int rc;
        if (type == &PyLong_Type) {
            rc = set_int64(arg, slot, obj, position);
        } else if (type == &PyFloat_Type) {
            slot->f64 = PyFloat_AS_DOUBLE(obj);
            rc = use_slot(arg, slot, sizeof(double));
        } else if (obj == Py_None) {
            arg->data = NULL;
            arg->size = 0;
            rc = 0;
        } else if (type == &DevicePointer_Type) {
            rc = set_device_memory(arg, (DevicePointerObject *)obj, 0, device, position,
                                   "is a deallocated device pointer");
        } else if (PyType_IsSubtype(type, &ArrayBase_Type)) {
            rc = set_offload_array(arg, obj, device, position);
        } else if (ndarray_type != NULL && PyType_IsSubtype(type, ndarray_type)) {
            rc = stage_ndarray(state, i, obj);
        } else if (type == &PyBool_Type) {
            slot->bytes[0] = (obj == Py_True); /* numpy.bool_: one byte */
            rc = use_slot(arg, slot, 1);
        } else if (numpy_generic_type != NULL && PyType_IsSubtype(type, numpy_generic_type)) {
            rc = set_numpy_scalar(arg, slot, obj, position);
        } else if (PyComplex_Check(obj)) {
            rc = set_complex(arg, slot, obj);
        } else if (PyLong_Check(obj)) {
            rc = set_int64(arg, slot, obj, position);
        } else if (PyFloat_Check(obj)) {
            slot->f64 = PyFloat_AS_DOUBLE(obj);
            rc = use_slot(arg, slot, sizeof(double));
        } else {
            rc = bad_argument(position, obj);
        }
        if (rc < 0)
            return -1;
    }
    return 0;
}

/* Give back everything staging took.  With `write_back`, first copy the
 * results of non-contiguous arrays into their originals. */
static int release_staged(invoke_state *state, int write_back)
{
    int rc = 0;
    for (int s = 0; s < state->nstaged; s++) {
        staged_array *staged = &state->staged[s];
        PyBuffer_Release(&staged->view);
        if (staged->original != NULL) {
            if (write_back && rc == 0 &&
                PyObject_SetItem(staged->original, Py_Ellipsis, staged->contiguous) < 0)
                rc = -1;
            Py_DECREF(staged->original);
        }
        Py_XDECREF(staged->contiguous);
    }
    state->nstaged = 0;
    return rc;
}

/* Free staged device memory in stream order and wait (GIL released) until
 * no queued command touches the host buffers any more.  Returns the first
 * failing status of the wait, else of the frees. */
static int drain_staged(StreamObject *self, invoke_state *state)
{
    int free_status = PYMIC_OK;
    for (int s = 0; s < state->nstaged; s++) {
        if (state->staged[s].device != NULL) {
            /* Safe to let other threads run: the staged memory and the
             * exported host buffers belong to this call alone. */
            stream_make_room(self, 1);
            int rc = pymic_mem_free(self->handle, state->staged[s].device);
            if (rc != PYMIC_OK && free_status == PYMIC_OK)
                free_status = rc;
            state->staged[s].device = NULL;
        }
    }
    int sync_status;
    Py_BEGIN_ALLOW_THREADS
    sync_status = pymic_stream_sync(self->handle);
    Py_END_ALLOW_THREADS
    return sync_status != PYMIC_OK ? sync_status : free_status;
}

/* Commands enqueued up to and including the kernel: one copy-in per
 * non-empty staged array, then the invoke. */
static uint64_t commands_before_kernel(const invoke_state *state)
{
    uint64_t count = 1;
    for (int s = 0; s < state->nstaged; s++)
        count += state->staged[s].view.len > 0;
    return count;
}

/* Allocate and copy in every staged array; then the kernel; then copy out.
 * The caller has made room for everything up to the kernel (see
 * stream_invoke). */
static PyObject *invoke_with_arrays(StreamObject *self, const pymic_kernel *kernel,
                                    invoke_state *state, int nargs)
{
    int status = PYMIC_OK;
    for (int s = 0; s < state->nstaged && status == PYMIC_OK; s++) {
        staged_array *staged = &state->staged[s];
        size_t nbytes = (size_t)staged->view.len;
        /* Zero-size arrays still get a valid (tiny) allocation to point at. */
        status = pymic_mem_alloc(self->device, nbytes ? nbytes : 1, 64, &staged->device);
        if (status != PYMIC_OK) {
            staged->device = NULL;
            break;
        }
        state->args[staged->index].data = staged->device;
        state->args[staged->index].size = 0;
        if (nbytes)
            status = pymic_memcpy_h2d(self->handle, staged->device, 0, staged->view.buf, nbytes);
    }
    if (status == PYMIC_OK)
        status = pymic_invoke(self->handle, kernel, nargs, state->args);
    for (int s = 0; s < state->nstaged && status == PYMIC_OK; s++) {
        staged_array *staged = &state->staged[s];
        if (!staged->writable || staged->view.len == 0)
            continue;
        stream_make_room(self, 1);
        status = pymic_memcpy_d2h(self->handle, staged->view.buf, staged->device, 0,
                                  (size_t)staged->view.len);
    }
    /* Whatever happened, nothing queued may outlive the host buffers.  The
     * drain below may overwrite the engine's message, so keep it. */
    char message[512] = "";
    if (status != PYMIC_OK)
        snprintf(message, sizeof(message), "%s", pymic_last_error());
    int drain_status = drain_staged(self, state);
    if (status != PYMIC_OK || drain_status != PYMIC_OK) {
        release_staged(state, 0);
        return status != PYMIC_OK ? raise_engine_message(status, message)
                                  : raise_engine_error(drain_status);
    }
    stream_release_completed(self);
    if (release_staged(state, 1) < 0)
        return NULL;
    Py_RETURN_NONE;
}

const char stream_invoke_doc[] =
"invoke(kernel, *args)\n"
"--\n"
"\n"
"Enqueue a kernel on this stream.\n"
"\n"
"The kernel receives one pointer per argument: an OffloadArray's device\n"
"buffer, a device pointer's memory, a device copy of an ndarray, a copy of\n"
"a scalar (int as int64, float as double, complex as double complex, bool\n"
"and NumPy scalars in their NumPy dtype) or NULL for None.  Scalars are\n"
"captured now.\n"
"\n"
"Parameters\n"
"----------\n"
"kernel : pymic.kernel\n"
"    Handle from ``library.<name>``, loaded on this stream's device.\n"
"*args\n"
"    The kernel's arguments, at most ``PYMIC_MAX_KERNEL_ARGS`` (128).\n"
"\n"
"Returns\n"
"-------\n"
"None\n"
"    Returns as soon as the kernel is enqueued, unless an argument is a\n"
"    ``numpy.ndarray``: then it returns after the array has been copied\n"
"    back (pyMIC's copy-in/copy-out semantics).\n"
"\n"
"Raises\n"
"------\n"
"TypeError\n"
"    If an argument cannot be passed to a kernel (naming its position).\n"
"OverflowError\n"
"    If an int does not fit in a 64-bit signed integer.\n"
"ValueError\n"
"    If there are too many arguments; nothing is enqueued.\n"
"OffloadError\n"
"    If the kernel belongs to another device or the engine fails.\n";

PyObject *stream_invoke(StreamObject *self, PyObject *const *objs, Py_ssize_t nobjs)
{
    if (nobjs < 1) {
        PyErr_SetString(PyExc_TypeError, "invoke() missing the kernel argument");
        return NULL;
    }
    const pymic_kernel *kernel = kernel_from_handle(objs[0]);
    if (kernel == NULL)
        return NULL;
    Py_ssize_t nargs = nobjs - 1;
    if (nargs > PYMIC_MAX_KERNEL_ARGS) {
        PyErr_Format(OffloadValueError, "invoke: %zd kernel arguments, at most %d are allowed",
                     nargs, PYMIC_MAX_KERNEL_ARGS);
        return NULL;
    }
    invoke_state state;
    state.nstaged = 0;
    /* Room is made before the arguments are read: once read, the GIL must
     * stay held until the kernel is enqueued, or another thread could free
     * or rebind an OffloadArray whose address is already in state.args. */
    stream_make_room(self, 1);
    for (;;) {
        if (classify(&state, self->device, objs + 1, (int)nargs) < 0) {
            release_staged(&state, 0);
            return NULL;
        }
        /* Copy-in/copy-out needs room for the copies in front of the
         * kernel too; only now is their number known.  Waiting released
         * the GIL, so the arguments are read again. */
        if (state.nstaged == 0 || !stream_make_room(self, commands_before_kernel(&state)))
            break;
        release_staged(&state, 0);
    }
    PYMIC_DEBUG_PRINT(2, "invoke %s on device %d with %zd argument(s)%s",
                      pymic_kernel_name(kernel), self->device, nargs,
                      state.nstaged ? " (copy-in/copy-out)" : "");
    if (state.nstaged > 0)
        return invoke_with_arrays(self, kernel, &state, (int)nargs);
    stream_release_completed(self);
    return none_or_engine_error(pymic_invoke(self->handle, kernel, (int)nargs, state.args));
}
