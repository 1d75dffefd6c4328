/*
 * invoke.c -- OffloadStream.invoke: argument marshalling in one C loop.
 *
 * Arguments are read in two passes.  The first does every conversion that
 * can run Python code -- a NumPy scalar's or ndarray's buffer export, the
 * copy() of a non-contiguous ndarray (which a subclass may override) --
 * and the second takes the device addresses of OffloadArrays and device
 * pointers.  Between the second pass and the enqueue of the kernel no
 * Python code runs and the GIL is not released, so nothing can free or
 * rebind memory whose address the kernel is about to receive.  Nothing is
 * enqueued until every argument has been accepted, so a TypeError or
 * ValueError leaves the stream untouched.
 *
 * ndarray arguments follow pyMIC's copy-in/copy-out: device memory from the
 * engine's caching allocator, a copy in before the kernel, a copy back after
 * it, a stream-ordered free, and a wait before invoke returns.  ndarrays
 * whose memory overlaps (the same array passed twice, or two views of one
 * buffer) share one device copy, so a kernel writing through one argument
 * sees -- and the host gets back -- what it wrote, as when it runs on the
 * host arrays.  A non-contiguous array travels as a contiguous copy that is
 * written back into the original afterwards (the same object passed twice
 * shares that copy).
 */
#include "engine_module.h"

#include <stdlib.h>
#include <string.h>

/* Scalar bytes of one argument: big enough for NumPy's clongdouble. */
typedef union scalar_slot {
    int64_t i64;
    uint64_t u64;
    double f64;
    double c128[2];
    unsigned char bytes[32];
} scalar_slot;

/* An ndarray argument staged for copy-in/copy-out. */
typedef struct staged_array {
    int index;            /* position in the pymic_arg table               */
    int owner;            /* 1 if view/original/contiguous belong to this
                             entry; 0 for the same non-contiguous object
                             passed again, which shares an earlier entry's */
    int group;            /* the staged_group holding its device copy      */
    Py_buffer view;       /* buffer of the contiguous array that travels   */
    PyObject *original;   /* non-contiguous original to write back, or NULL */
    PyObject *contiguous; /* the contiguous copy of `original`, or NULL     */
    int writable;         /* copy back after the kernel                     */
    int declared_const;   /* the kernel's signature says it points to const */
} staged_array;

/* One device copy of a host byte range covering one or more staged arrays
 * whose memory overlaps. */
typedef struct staged_group {
    char *lo, *hi;        /* host range [lo, hi)                            */
    void *device;         /* device memory (at least 1 byte) or NULL        */
} staged_group;

/* How the first pass classified an argument that the second pass finishes. */
enum { ARG_DONE, ARG_DEVICE_POINTER, ARG_OFFLOAD_ARRAY };

typedef struct invoke_state {
    pymic_arg args[PYMIC_MAX_KERNEL_ARGS];
    scalar_slot slots[PYMIC_MAX_KERNEL_ARGS];
    unsigned char pending[PYMIC_MAX_KERNEL_ARGS];
    staged_array staged[PYMIC_MAX_KERNEL_ARGS];
    staged_group groups[PYMIC_MAX_KERNEL_ARGS];
    int nstaged;
    int ngroups;
} invoke_state;

static KernelRefObject *kernel_from_handle(PyObject *obj)
{
    if (Py_IS_TYPE(obj, KernelHandle_Type)) {
        PyObject *ref = PyStructSequence_GET_ITEM(obj, KERNEL_HANDLE_REF_INDEX);
        if (ref != NULL && Py_IS_TYPE(ref, &KernelRef_Type))
            return (KernelRefObject *)ref;
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

/* A Python int travels as int64, or as uint64 in [2**63, 2**64) -- what
 * numpy.asarray gives for it, and what pyMIC passed. */
static int set_integer(pymic_arg *arg, scalar_slot *slot, PyObject *obj, Py_ssize_t position,
                       unsigned char *code)
{
    *code = SIG_INT64;
    int overflow = 0;
    long long value = PyLong_AsLongLongAndOverflow(obj, &overflow);
    if (value == -1 && PyErr_Occurred())
        return -1;
    if (overflow > 0) {
        unsigned long long unsigned_value = PyLong_AsUnsignedLongLong(obj);
        if (unsigned_value == (unsigned long long)-1 && PyErr_Occurred()) {
            PyErr_Clear();
            overflow = 1;
        } else {
            slot->u64 = (uint64_t)unsigned_value;
            *code = SIG_UINT64;
            return use_slot(arg, slot, sizeof(uint64_t));
        }
    }
    if (overflow != 0) {
        PyErr_Format(PyExc_OverflowError,
                     "invoke: argument %zd (%R) does not fit in a 64-bit integer",
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
                            Py_ssize_t position, unsigned char *code)
{
    Py_buffer view;
    if (PyObject_GetBuffer(obj, &view, code ? PyBUF_FORMAT : PyBUF_SIMPLE) < 0)
        return -1;
    if (code != NULL)
        *code = signature_code_of_format(view.format);
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
    if (offset < 0 || (size_t)offset > dptr->nbytes) {
        PyErr_Format(OffloadValueError,
                     "invoke: argument %zd starts %zd bytes into an allocation of %zu bytes",
                     position, offset, dptr->nbytes);
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

/* The earlier staged entry of the same non-contiguous object, or NULL. */
static const staged_array *staged_copy_of(const invoke_state *state, PyObject *obj,
                                          PyObject *const *objs)
{
    for (int s = 0; s < state->nstaged; s++) {
        const staged_array *staged = &state->staged[s];
        if (staged->owner && staged->contiguous != NULL && objs[staged->index] == obj)
            return staged;
    }
    return NULL;
}

/* Export an ndarray's buffer for copy-in/copy-out.  Non-contiguous arrays
 * travel as a contiguous copy; read-only arrays are not copied back. */
static int stage_ndarray(invoke_state *state, int index, PyObject *obj, PyObject *const *objs)
{
    staged_array *staged = &state->staged[state->nstaged];
    staged->index = index;
    staged->owner = 1;
    staged->group = -1;
    staged->original = NULL;
    staged->contiguous = NULL;
    staged->writable = 1;
    staged->declared_const = 0;
    const int flags = PyBUF_ANY_CONTIGUOUS | PyBUF_FORMAT;
    int rc = PyObject_GetBuffer(obj, &staged->view, flags | PyBUF_WRITABLE);
    if (rc < 0) {
        PyErr_Clear();
        staged->writable = 0; /* read-only: copy in only */
        rc = PyObject_GetBuffer(obj, &staged->view, flags);
    }
    if (rc < 0) {
        PyErr_Clear();
        const staged_array *earlier = staged_copy_of(state, obj, objs);
        if (earlier != NULL) {
            /* Share the earlier copy: two copies would each be written
             * back, the second undoing the kernel's writes to the first. */
            *staged = *earlier;
            staged->index = index;
            staged->owner = 0;
            state->nstaged++;
            return 0;
        }
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

/* A non-negative int below 2**63 has the same bytes as int64 and uint64:
 * it fits a `uint64_t *` parameter too. */
static inline unsigned char python_int_code(unsigned char code, const scalar_slot *slot,
                                            const SignatureObject *sig, int i)
{
    if (sig != NULL && code == SIG_INT64 && slot->i64 >= 0 && sig->codes[i] == SIG_UINT64)
        return SIG_UINT64;
    return code;
}

/* A kernel declared to take `const T *` never writes through it: an
 * ndarray given there is not copied back -- unless the same object also
 * reaches a parameter that is not const through an entry sharing its copy. */
static void skip_const_copy_backs(invoke_state *state)
{
    for (int s = 0; s < state->nstaged; s++) {
        staged_array *staged = &state->staged[s];
        if (!staged->owner || !staged->declared_const || !staged->writable)
            continue;
        int written = 0;
        for (int t = 0; t < state->nstaged; t++) {
            const staged_array *other = &state->staged[t];
            if (!other->owner && !other->declared_const && other->view.buf == staged->view.buf)
                written = 1;
        }
        if (!written) {
            staged->writable = 0;
            Py_CLEAR(staged->original); /* nothing to write back either */
        }
    }
}

/* First pass: every conversion that may run Python code (buffer exports,
 * copy() of non-contiguous arrays).  Device addresses are only noted as
 * pending for the second pass.  With a signature, each argument's element
 * type is checked as it is converted, and the count before any. */
static int convert_arguments(invoke_state *state, PyObject *const *objs, int nargs,
                             const SignatureObject *sig)
{
    if (sig != NULL && signature_check_count(sig, nargs) < 0)
        return -1;
    for (int i = 0; i < nargs; i++) {
        PyObject *obj = objs[i];
        PyTypeObject *type = Py_TYPE(obj);
        pymic_arg *arg = &state->args[i];
        scalar_slot *slot = &state->slots[i];
        Py_ssize_t position = i + 1;
        int rc = 0;
        unsigned char code = SIG_ANY; /* the argument's element type */
        state->pending[i] = ARG_DONE;
        if (type == &PyLong_Type) {
            rc = set_integer(arg, slot, obj, position, &code);
            code = python_int_code(code, slot, sig, i);
        } else if (type == &PyFloat_Type) {
            slot->f64 = PyFloat_AS_DOUBLE(obj);
            rc = use_slot(arg, slot, sizeof(double));
            code = SIG_FLOAT64;
        } else if (obj == Py_None) {
            arg->data = NULL;
            arg->size = 0;
        } else if (type == &DevicePointer_Type) {
            state->pending[i] = ARG_DEVICE_POINTER;
        } else if (PyType_IsSubtype(type, &ArrayBase_Type)) {
            state->pending[i] = ARG_OFFLOAD_ARRAY;
            if (sig != NULL)
                rc = signature_array_code(obj, &code);
        } else if (ndarray_type != NULL && PyType_IsSubtype(type, ndarray_type)) {
            rc = stage_ndarray(state, i, obj, objs);
            if (rc == 0 && sig != NULL) {
                staged_array *staged = &state->staged[state->nstaged - 1];
                code = signature_code_of_format(staged->view.format);
                staged->declared_const = sig->is_const[i];
            }
        } else if (type == &PyBool_Type) {
            slot->bytes[0] = (obj == Py_True); /* numpy.bool_: one byte */
            rc = use_slot(arg, slot, 1);
            code = SIG_BOOL;
        } else if (numpy_generic_type != NULL && PyType_IsSubtype(type, numpy_generic_type)) {
            rc = set_numpy_scalar(arg, slot, obj, position, sig != NULL ? &code : NULL);
        } else if (PyComplex_Check(obj)) {
            rc = set_complex(arg, slot, obj);
            code = SIG_COMPLEX128;
        } else if (PyLong_Check(obj)) {
            rc = set_integer(arg, slot, obj, position, &code);
            code = python_int_code(code, slot, sig, i);
        } else if (PyFloat_Check(obj)) {
            slot->f64 = PyFloat_AS_DOUBLE(obj);
            rc = use_slot(arg, slot, sizeof(double));
            code = SIG_FLOAT64;
        } else {
            rc = bad_argument(position, obj);
        }
        if (rc < 0)
            return -1;
        if (sig != NULL && signature_check(sig, i, obj, code) < 0)
            return -1;
    }
    if (sig != NULL && state->nstaged > 0)
        skip_const_copy_backs(state);
    return 0;
}

/* Second pass: the device addresses.  Runs no Python code and keeps the
 * GIL, so the addresses hold until the kernel is enqueued. */
static int take_device_addresses(invoke_state *state, int device, PyObject *const *objs,
                                 int nargs)
{
    for (int i = 0; i < nargs; i++) {
        int rc = 0;
        if (state->pending[i] == ARG_DEVICE_POINTER)
            rc = set_device_memory(&state->args[i], (DevicePointerObject *)objs[i], 0, device,
                                   i + 1, "is a deallocated device pointer");
        else if (state->pending[i] == ARG_OFFLOAD_ARRAY)
            rc = set_offload_array(&state->args[i], objs[i], device, i + 1);
        if (rc < 0)
            return -1;
    }
    return 0;
}

static int compare_staged_start(const void *a, const void *b)
{
    const char *x = (*(staged_array *const *)a)->view.buf;
    const char *y = (*(staged_array *const *)b)->view.buf;
    return (x > y) - (x < y);
}

/* Give each staged array its group: arrays whose host bytes overlap share
 * one device copy of the union of their ranges. */
static void group_staged(invoke_state *state)
{
    staged_array *order[PYMIC_MAX_KERNEL_ARGS];
    int n = 0;
    for (int s = 0; s < state->nstaged; s++)
        if (state->staged[s].owner)
            order[n++] = &state->staged[s];
    qsort(order, (size_t)n, sizeof(order[0]), compare_staged_start);
    state->ngroups = 0;
    staged_group *current = NULL; /* the last non-empty group */
    for (int k = 0; k < n; k++) {
        staged_array *staged = order[k];
        char *lo = staged->view.buf;
        char *hi = lo + staged->view.len;
        staged_group *group;
        if (staged->view.len > 0 && current != NULL && lo < current->hi) {
            group = current;
            if (hi > group->hi)
                group->hi = hi;
        } else {
            /* An empty array shares no bytes: a group of its own, which
             * does not interrupt the chain of overlapping ones. */
            group = &state->groups[state->ngroups++];
            group->lo = lo;
            group->hi = hi;
            group->device = NULL;
            if (staged->view.len > 0)
                current = group;
        }
        staged->group = (int)(group - state->groups);
    }
    /* An entry sharing an earlier one's copy shares its group too. */
    for (int s = 0; s < state->nstaged; s++) {
        staged_array *staged = &state->staged[s];
        if (!staged->owner) {
            for (int t = 0; t < s; t++) {
                if (state->staged[t].owner && state->staged[t].view.buf == staged->view.buf) {
                    staged->group = state->staged[t].group;
                    break;
                }
            }
        }
    }
}

static inline size_t group_bytes(const staged_group *group)
{
    return (size_t)(group->hi - group->lo);
}

/* Every command the copy-in/copy-out of this call enqueues: copies in, the
 * kernel, copies out, frees. */
static uint64_t commands_needed(const invoke_state *state)
{
    uint64_t count = 1;
    for (int g = 0; g < state->ngroups; g++)
        count += 1 + (group_bytes(&state->groups[g]) > 0);
    for (int s = 0; s < state->nstaged; s++) {
        const staged_array *staged = &state->staged[s];
        count += staged->owner && staged->writable && staged->view.len > 0;
    }
    return count;
}

/* Give back everything staging took.  With `write_back`, first copy the
 * results of non-contiguous arrays into their originals.  Entries whose
 * view was handed to the keep-alive queue have view.obj == NULL. */
static int release_staged(invoke_state *state, int write_back)
{
    int rc = 0;
    for (int s = 0; s < state->nstaged; s++) {
        staged_array *staged = &state->staged[s];
        if (!staged->owner)
            continue;
        if (staged->view.obj != NULL)
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

/* Keep `obj` alive until the stream passes `seq` (a keep-alive entry holds
 * a buffer view; a view without data holds any object).  Steals `obj`. */
static int keep_object(StreamObject *self, uint64_t seq, PyObject *obj)
{
    Py_buffer view;
    if (PyBuffer_FillInfo(&view, NULL, NULL, 0, 1, PyBUF_SIMPLE) < 0) {
        Py_DECREF(obj);
        return -1;
    }
    view.obj = obj;
    if (keepalive_push_view(&self->keep, seq, &view) < 0) {
        Py_DECREF(obj);
        return -1;
    }
    return 0;
}

/* Ctrl-C arrived while commands using the staged memory are still queued.
 * Leave them running: the host buffers go to the stream's keep-alive queue,
 * and device copies not freed yet are freed in stream order -- now if the
 * ring has room, else by a device pointer object kept alive until the
 * queued work is done.  Only if that bookkeeping fails (out of memory)
 * does this wait, uninterruptibly, as the last way to keep the promise. */
static void abandon_staged(StreamObject *self, invoke_state *state)
{
    PyObject *type, *value, *traceback;
    PyErr_Fetch(&type, &value, &traceback);
    uint64_t seq = pymic_stream_last_enqueued(self->handle);
    int failed = 0;
    for (int g = 0; g < state->ngroups; g++) {
        staged_group *group = &state->groups[g];
        if (group->device == NULL)
            continue;
        uint64_t completed = pymic_stream_completed(self->handle);
        if (pymic_stream_last_enqueued(self->handle) + 1 - completed <= self->capacity &&
            pymic_mem_free(self->handle, group->device) == PYMIC_OK) {
            group->device = NULL;
            continue;
        }
        DevicePointerObject *holder =
            devptr_new(self, group->device, group_bytes(group) ? group_bytes(group) : 1, 0);
        if (holder == NULL || keep_object(self, seq, (PyObject *)holder) < 0) {
            failed = 1;
            break;
        }
        group->device = NULL;
    }
    for (int s = 0; s < state->nstaged && !failed; s++) {
        staged_array *staged = &state->staged[s];
        if (!staged->owner || staged->view.obj == NULL)
            continue;
        if (keepalive_push_view(&self->keep, seq, &staged->view) < 0) {
            failed = 1;
            break;
        }
        staged->view.obj = NULL; /* the keep-alive queue owns it now */
    }
    if (failed) {
        PyErr_Clear();
        Py_BEGIN_ALLOW_THREADS
        pymic_stream_wait_seq(self->handle, seq);
        Py_END_ALLOW_THREADS
        for (int g = 0; g < state->ngroups; g++)
            if (state->groups[g].device != NULL)
                pymic_mem_free(self->handle, state->groups[g].device);
    }
    release_staged(state, 0);
    PyErr_Restore(type, value, traceback);
}

/* Free staged device memory in stream order and wait until no queued
 * command touches the host buffers any more.  Returns the first failing
 * status of the wait, else of the frees; WAIT_INTERRUPTED if Ctrl-C
 * interrupted a wait (exception set, work still queued). */
static int drain_staged(StreamObject *self, invoke_state *state)
{
    int free_status = PYMIC_OK;
    for (int g = 0; g < state->ngroups; g++) {
        staged_group *group = &state->groups[g];
        if (group->device != NULL) {
            /* Safe to let other threads run: the staged memory and the
             * exported host buffers belong to this call alone. */
            if (stream_make_room(self, 1) < 0)
                return WAIT_INTERRUPTED;
            int rc = pymic_mem_free(self->handle, group->device);
            if (rc != PYMIC_OK && free_status == PYMIC_OK)
                free_status = rc;
            group->device = NULL;
        }
    }
    int sync_status = wait_stream_seq(self->handle, pymic_stream_last_enqueued(self->handle));
    return sync_status != PYMIC_OK ? sync_status : free_status;
}

/* Allocate and copy in every group; then the kernel; then copy out.  The
 * caller has made room for as much of this as the ring holds. */
static PyObject *invoke_with_arrays(StreamObject *self, const pymic_kernel *kernel,
                                    invoke_state *state, int nargs)
{
    int status = PYMIC_OK;
    for (int g = 0; g < state->ngroups && status == PYMIC_OK; g++) {
        staged_group *group = &state->groups[g];
        size_t nbytes = group_bytes(group);
        /* Zero-size arrays still get a valid (tiny) allocation to point at. */
        status = alloc_device_memory(self->device, nbytes ? nbytes : 1, 64, &group->device);
        if (status != PYMIC_OK) {
            group->device = NULL;
            break;
        }
        if (nbytes)
            status = pymic_memcpy_h2d(self->handle, group->device, 0, group->lo, nbytes);
    }
    if (status == PYMIC_OK) {
        for (int s = 0; s < state->nstaged; s++) {
            staged_array *staged = &state->staged[s];
            const staged_group *group = &state->groups[staged->group];
            state->args[staged->index].data =
                (char *)group->device + ((char *)staged->view.buf - group->lo);
            state->args[staged->index].size = 0;
        }
        status = pymic_invoke(self->handle, kernel, nargs, state->args);
    }
    for (int s = 0; s < state->nstaged && status == PYMIC_OK; s++) {
        staged_array *staged = &state->staged[s];
        if (!staged->owner || !staged->writable || staged->view.len == 0)
            continue;
        if (stream_make_room(self, 1) < 0) {
            abandon_staged(self, state);
            return NULL;
        }
        const staged_group *group = &state->groups[staged->group];
        status = pymic_memcpy_d2h(self->handle, staged->view.buf, group->device,
                                  (size_t)((char *)staged->view.buf - group->lo),
                                  (size_t)staged->view.len);
    }
    /* Whatever happened, nothing queued may outlive the host buffers.  The
     * drain below may overwrite the engine's message, so keep it. */
    char message[512] = "";
    if (status != PYMIC_OK)
        snprintf(message, sizeof(message), "%s", pymic_last_error());
    int drain_status = drain_staged(self, state);
    if (drain_status == WAIT_INTERRUPTED) {
        abandon_staged(self, state);
        return NULL;
    }
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
"a scalar (int as int64 -- uint64 from 2**63 on --, float as double,\n"
"complex as double complex, bool and NumPy scalars in their NumPy dtype)\n"
"or NULL for None.  Scalars are captured now.  ndarrays whose memory\n"
"overlaps (the same array passed twice, views of one buffer) share one\n"
"device copy.\n"
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
"    If an int does not fit in 64 bits (ints in [2**63, 2**64) travel as\n"
"    uint64).\n"
"KeyboardInterrupt\n"
"    On Ctrl-C while waiting for room or for the copy back of ndarray\n"
"    arguments; the queued work goes on, and the arrays it uses stay\n"
"    alive until it completes (a non-contiguous array then does not get\n"
"    the results written back).\n"
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
    KernelRefObject *ref = kernel_from_handle(objs[0]);
    if (ref == NULL)
        return NULL;
    const pymic_kernel *kernel = ref->kernel;
    Py_ssize_t nargs = nobjs - 1;
    if (nargs > PYMIC_MAX_KERNEL_ARGS) {
        PyErr_Format(OffloadValueError, "invoke: %zd kernel arguments, at most %d are allowed",
                     nargs, PYMIC_MAX_KERNEL_ARGS);
        return NULL;
    }
    invoke_state state;
    state.nstaged = 0;
    state.ngroups = 0;
    /* Held for the call: converting arguments may run Python code, which
     * may declare the kernel anew. */
    SignatureObject *sig = (SignatureObject *)Py_XNewRef(ref->signature);
    int converted = convert_arguments(&state, objs + 1, (int)nargs, sig);
    Py_XDECREF(sig);
    if (converted < 0) {
        release_staged(&state, 0);
        return NULL;
    }
    group_staged(&state);
    /* Keep-alive releases may run destructors: before any address is
     * taken.  Then room for this call's commands, since once the addresses
     * are taken the GIL must stay held until the kernel is enqueued (or
     * another thread could free or rebind an OffloadArray whose address is
     * in state.args). */
    stream_release_completed(self);
    if (stream_make_room(self, commands_needed(&state)) < 0 ||
        take_device_addresses(&state, self->device, objs + 1, (int)nargs) < 0) {
        release_staged(&state, 0);
        return NULL;
    }
    PYMIC_DEBUG_PRINT(2, "invoke %s on device %d with %zd argument(s)%s",
                      pymic_kernel_name(kernel), self->device, nargs,
                      state.nstaged ? " (copy-in/copy-out)" : "");
    if (state.nstaged > 0)
        return invoke_with_arrays(self, kernel, &state, (int)nargs);
    return none_or_engine_error(pymic_invoke(self->handle, kernel, (int)nargs, state.args));
}
