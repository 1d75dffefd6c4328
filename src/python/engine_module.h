/*
 * engine_module.h -- internals shared by the source files of pymic._engine.
 *
 * pymic._engine is the CPython face of libpymic.  Each file implements one
 * concept (stream, device pointer, event, library, keep-alive, invoke,
 * transfers, errors); this header declares the objects and helpers they
 * share.  Nothing here is part of any public API.
 */
#ifndef PYMIC_ENGINE_MODULE_H
#define PYMIC_ENGINE_MODULE_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

#include "pymic.h"

/* The extension uses C API that appeared in Python 3.10 (Py_NewRef,
 * PyModule_AddObjectRef, ...); pyproject.toml says so too. */
#if PY_VERSION_HEX < 0x030A0000
#error "pymic's extension needs Python 3.10 or newer"
#endif

/* ------------------------------------------------------------------ waits */

/* What a blocking call waits for. */
typedef enum wait_kind { WAIT_STREAM_SEQ, WAIT_EVENT, WAIT_DEVICE } wait_kind;

typedef struct wait_target {
    wait_kind kind;
    pymic_stream *stream; /* WAIT_STREAM_SEQ: until completed >= seq */
    uint64_t seq;
    pymic_event *event;   /* WAIT_EVENT                              */
    int device;           /* WAIT_DEVICE: every stream of the device */
} wait_target;

/* wait_interruptibly's result when a signal handler raised (the exception
 * is set); engine statuses are <= 0. */
#define WAIT_INTERRUPTED 1

/* Wait for `target` with the GIL released, in short slices; between slices
 * take the GIL and run the signal handlers, so that Ctrl-C raises
 * KeyboardInterrupt within milliseconds whatever the device is doing.
 * Call with the GIL held.  Returns PYMIC_OK, a negative engine status (no
 * exception set), or WAIT_INTERRUPTED with the handler's exception set --
 * then the awaited work is still in flight: whatever it uses must stay
 * alive.  Every blocking wait of the extension goes through here. */
int wait_interruptibly(const wait_target *target);
/* The same for `stream` reaching `seq`. */
int wait_stream_seq(pymic_stream *stream, uint64_t seq);
/* 0 for PYMIC_OK; else -1 with an exception set (the engine's error, or
 * the pending KeyboardInterrupt). */
int wait_status_to_exception(int status);

/* ------------------------------------------------------------- keep-alive */

/* The exported buffer of a host object that a queued command reads or
 * writes. */
typedef struct keepalive_entry {
    uint64_t seq;   /* stream sequence number of the last command using it */
    Py_buffer view;
} keepalive_entry;

/* FIFO of keep-alive entries; sequence numbers grow from head to tail, so
 * completed entries are always at the head. */
typedef struct keepalive_queue {
    keepalive_entry *items;
    size_t head;
    size_t tail;
    size_t capacity;
} keepalive_queue;

/* Takes over `view` (which must have been filled by PyObject_GetBuffer). */
int keepalive_push_view(keepalive_queue *queue, uint64_t seq, Py_buffer *view);
/* Releases every entry whose command has completed (seq <= completed). */
void keepalive_release_until(keepalive_queue *queue, uint64_t completed);
void keepalive_release_all(keepalive_queue *queue);
int keepalive_traverse(keepalive_queue *queue, visitproc visit, void *arg);

static inline int keepalive_is_empty(const keepalive_queue *queue)
{
    return queue->head == queue->tail;
}

/* ------------------------------------------------- destroyed streams */

/* Keep-alive queues of destroyed streams whose commands may still run
 * (closing.c).  closing_add takes over *keep (leaving it empty) and records
 * an event at the stream's end; -1 (no exception set) if it cannot, and
 * the caller must then wait itself.  closing_poll releases the entries
 * whose streams have drained; call it with the GIL held. */
extern int closing_pending;
int closing_add(pymic_stream *stream, keepalive_queue *keep);
void closing_poll(void);
/* Wait (GIL released, interruptibly) until every entry is released:
 * 0, or -1 with the signal handler's exception set (the rest stays). */
int closing_drain(void);
/* In a child of fork(): release every entry (nothing runs them there). */
void closing_after_fork_child(void);

/* ----------------------------------------------------------------- stream */

typedef struct StreamObject {
    PyObject_HEAD
    pymic_stream *handle;
    int device;
    PyObject *device_obj; /* the Python OffloadDevice (or the device number) */
    keepalive_queue keep;
    uint64_t capacity;    /* pymic_stream_capacity(handle), 0 without one  */
} StreamObject;

extern PyTypeObject Stream_Type;

/* Release keep-alive entries of commands that have completed. */
static inline void stream_release_completed(StreamObject *stream)
{
    if (!keepalive_is_empty(&stream->keep))
        keepalive_release_until(&stream->keep, pymic_stream_completed(stream->handle));
    if (closing_pending)
        closing_poll();
}

/* Slow path of stream_make_room: wait with the GIL released until `k`
 * more commands fit.  Returns 1 if it released the GIL, 0 if not, -1 if
 * Ctrl-C interrupted the wait (exception set). */
int stream_wait_room(StreamObject *stream, uint64_t k);

/* Call before enqueueing `k` commands with the GIL held.  The engine blocks
 * an enqueue on a full command ring, and it would block holding the GIL,
 * freezing every Python thread for as long as the running kernel takes;
 * so when the backlog leaves no room for `k` more, wait here with the GIL
 * released instead.  Returns 1 if the GIL was released (other threads may
 * have run: anything read from Python objects before must be read again),
 * 0 if not, and -1 with KeyboardInterrupt (or whatever a signal handler
 * raised) set if the wait was interrupted: the caller must then give up
 * before enqueueing anything.  `k` beyond the capacity waits for an empty ring.  A failing
 * wait (a stream unusable in this process) is not reported here: the
 * enqueue that follows fails with the same reason.
 *
 * Room is only guaranteed against other Python threads, which cannot
 * enqueue between this check and the caller's enqueue; C code enqueueing
 * without the GIL may still take the room, and then the engine blocks. */
static inline int stream_make_room(StreamObject *stream, uint64_t k)
{
    /* `completed` first: it never passes the `last_enqueued` read after it,
     * so the difference cannot wrap; a stale value only overestimates. */
    uint64_t completed = pymic_stream_completed(stream->handle);
    if (pymic_stream_last_enqueued(stream->handle) + k - completed <= stream->capacity)
        return 0;
    return stream_wait_room(stream, k);
}

/* Block (GIL released, interruptibly) until everything enqueued has
 * completed; then drop the keep-alive references.  Returns 0 or -1 with an
 * exception set (an engine error or KeyboardInterrupt; after an interrupt
 * the keep-alive references stay until their commands complete). */
int stream_sync_released(StreamObject *stream);

/* Stream methods implemented in other files. */
PyObject *stream_invoke(StreamObject *self, PyObject *const *args, Py_ssize_t nargs);
PyObject *stream_allocate_device_memory(StreamObject *self, PyObject *args, PyObject *kwargs);
/* pymic_mem_alloc with the GIL held only while it cannot block: short of
 * memory, it waits for memory already freed with the GIL released. */
int alloc_device_memory(int device, size_t nbytes, size_t alignment, void **ptr);
PyObject *stream_deallocate_device_memory(StreamObject *self, PyObject *dptr);
PyObject *stream_transfer_host2device(StreamObject *self, PyObject *const *args,
                                      Py_ssize_t nargs, PyObject *kwnames);
PyObject *stream_transfer_device2host(StreamObject *self, PyObject *const *args,
                                      Py_ssize_t nargs, PyObject *kwnames);
PyObject *stream_transfer_device2device(StreamObject *self, PyObject *const *args,
                                        Py_ssize_t nargs, PyObject *kwnames);
PyObject *stream_translate_device_pointer(StreamObject *self, PyObject *dptr);
PyObject *stream_record_event(StreamObject *self, PyObject *args, PyObject *kwargs);
PyObject *stream_wait_event(StreamObject *self, PyObject *event);

extern const char stream_invoke_doc[];
extern const char stream_allocate_device_memory_doc[];
extern const char stream_deallocate_device_memory_doc[];
extern const char stream_transfer_host2device_doc[];
extern const char stream_transfer_device2host_doc[];
extern const char stream_transfer_device2device_doc[];
extern const char stream_translate_device_pointer_doc[];
extern const char stream_record_event_doc[];
extern const char stream_wait_event_doc[];

/* --------------------------------------------------------- device pointer */

typedef struct DevicePointerObject {
    PyObject_HEAD
    void *ptr;
    size_t nbytes;
    int device;
    int sticky;            /* never freed by garbage collection            */
    int freed;             /* deallocate_device_memory has been called     */
    StreamObject *stream;  /* garbage collection frees in this stream      */
    PyObject *dict;        /* programs may attach attributes of their own  */
    PyObject *weakreflist;
} DevicePointerObject;

extern PyTypeObject DevicePointer_Type;

/* A device pointer object for memory `stream` allocated (it frees it in
 * that stream's order when collected, unless sticky).  NULL on failure. */
DevicePointerObject *devptr_new(StreamObject *stream, void *ptr, size_t nbytes, int sticky);

/* Checks that `obj` is a live device pointer; sets an exception if not. */
DevicePointerObject *devptr_check_live(PyObject *obj, const char *what);

/* ------------------------------------------------------------ array base */

/* C base of pymic.OffloadArray: where its elements live on the device.
 * invoke reads dptr and doffset directly, without attribute lookups.
 *
 * The description (shape, dtype, stream, ...) is read-only to Python and
 * set only by the checked _describe / _set_stream methods, so that the
 * bytes it covers always lie inside the allocation: a kernel launched by
 * an array operation never runs past the buffer. */
typedef struct ArrayBaseObject {
    PyObject_HEAD
    PyObject *dptr;        /* DevicePointerObject, or NULL before binding */
    Py_ssize_t doffset;    /* byte offset of the first element (views)    */
    Py_ssize_t nbytes;     /* bytes the description covers from doffset  */
    /* NULL until described; the ints are kept as objects so that reading
     * them from Python costs what an instance attribute did. */
    PyObject *array, *device, *stream, *shape, *dtype, *order, *ndim, *size, *nbytes_obj;
    /* The dtype's signature code + 1, cached by the first checked invoke;
     * 0 = not known.  _describe clears it (the dtype may have been
     * replaced). */
    unsigned char dtype_code;
} ArrayBaseObject;

extern PyTypeObject ArrayBase_Type;

/* ------------------------------------------------------------------ event */

typedef struct EventObject {
    PyObject_HEAD
    pymic_event *handle;
    PyObject *weakreflist;
} EventObject;

extern PyTypeObject Event_Type;

/* -------------------------------------------------------- library, kernel */

typedef struct LibraryObject {
    PyObject_HEAD
    pymic_library *handle;
} LibraryObject;

extern PyTypeObject Library_Type;

/* The opaque reference hidden inside a kernel handle. */
typedef struct KernelRefObject {
    PyObject_HEAD
    pymic_kernel *kernel;
    PyObject *library;   /* LibraryObject that owns the kernel            */
    PyObject *signature; /* SignatureObject invoke checks against, or NULL */
} KernelRefObject;

extern PyTypeObject KernelRef_Type;

/* pymic.kernel: a tuple (name, address, device, library) carrying a hidden
 * KernelRef beyond its visible length. */
extern PyTypeObject *KernelHandle_Type;
#define KERNEL_HANDLE_VISIBLE 4
#define KERNEL_HANDLE_REF_INDEX 4

int library_module_init(PyObject *module);

/* ------------------------------------------------------ kernel signatures */

/* Element types a kernel parameter may point to, and that an argument may
 * carry (signature.c).  SIG_ANY: `void *` (takes anything), or an argument
 * of unknown type (a device pointer, None).  SIG_CHAR: plain `char *`,
 * taking int8 or uint8.  SIG_OTHER: an argument of no C type
 * (byte-swapped, structured). */
enum {
    SIG_ANY, SIG_BOOL, SIG_INT8, SIG_UINT8, SIG_INT16, SIG_UINT16, SIG_INT32, SIG_UINT32,
    SIG_INT64, SIG_UINT64, SIG_FLOAT16, SIG_FLOAT32, SIG_FLOAT64, SIG_LONGDOUBLE,
    SIG_COMPLEX64, SIG_COMPLEX128, SIG_CLONGDOUBLE, SIG_CHAR, SIG_OTHER, SIG_NCODES
};

/* A kernel's declared parameters: what invoke checks its arguments
 * against.  Immutable once made. */
typedef struct SignatureObject {
    PyObject_HEAD
    int nparams;
    unsigned char codes[PYMIC_MAX_KERNEL_ARGS];    /* element type pointed to */
    unsigned char is_const[PYMIC_MAX_KERNEL_ARGS]; /* points to const         */
    PyObject *name;   /* the kernel's name                                 */
    PyObject *params; /* tuple of (parameter name, C type) for messages     */
} SignatureObject;

extern PyTypeObject Signature_Type;

/* The code of a buffer's struct-module format (NULL: bytes). */
unsigned char signature_code_of_format(const char *format);
/* The code of an OffloadArray's dtype (cached in the ArrayBase); -1 with
 * an exception if its dtype cannot be read.  May run Python code the first
 * time. */
int signature_array_code(PyObject *array, unsigned char *code);
/* 0 if argument `index` (0-based) of element type `given` fits the
 * declared parameter; else -1 with a TypeError naming the argument, what
 * was given and what the kernel takes. */
int signature_check(const SignatureObject *sig, int index, PyObject *obj, unsigned char given);
int signature_mismatch(const SignatureObject *sig, int index, PyObject *obj,
                       unsigned char given);
/* 0 if `nargs` arguments fit; else -1 with a TypeError spelling the
 * prototype. */
int signature_check_count(const SignatureObject *sig, Py_ssize_t nargs);
int signature_module_init(PyObject *module);

/* dlpack.c: dlpack_capsule(), DLPack capsules of OffloadArray buffers. */
int dlpack_module_init(PyObject *module);
int trace_module_init(PyObject *module); /* trace.c: the trace_* functions */
/* trace.c: a blocking wait notes the Python call site (only while a trace
 * records call sites) before it releases the GIL, and forgets it after.
 * Untraced, each costs a load and a branch. */
extern int trace_sites_on; /* guarded by the GIL */
void trace_wait_site_enter_slow(void);
void trace_wait_site_leave_slow(void);

static inline void trace_wait_site_enter(void)
{
    if (trace_sites_on)
        trace_wait_site_enter_slow();
}

static inline void trace_wait_site_leave(void)
{
    if (trace_sites_on)
        trace_wait_site_leave_slow();
}

/* ----------------------------------------------------------------- errors */

extern PyObject *OffloadError;      /* every failure the engine reports   */
extern PyObject *OffloadValueError; /* OffloadError and ValueError at once */

int errors_module_init(PyObject *module);

/* Raise the exception that matches an engine status, carrying
 * pymic_last_error().  Always returns NULL. */
PyObject *raise_engine_error(int status);
/* The same with a message saved earlier (when later calls may replace it). */
PyObject *raise_engine_message(int status, const char *message);

/* The usual ending of a call that returns nothing: None for PYMIC_OK, else
 * the matching exception (NULL). */
static inline PyObject *none_or_engine_error(int status)
{
    if (status != PYMIC_OK)
        return raise_engine_error(status);
    Py_RETURN_NONE;
}

/* ---------------------------------------------------------- module state */

/* numpy.ndarray and numpy.generic, handed over by the package at import so
 * that invoke can recognise arrays and NumPy scalars without importing
 * NumPy from C.  NULL until then. */
extern PyTypeObject *ndarray_type;
extern PyTypeObject *numpy_generic_type;

/* Cached PYMIC_DEBUG level of the Python layer. */
extern int debug_level;

#define PYMIC_DEBUG_PRINT(level, ...)                   \
    do {                                                \
        if (debug_level >= (level)) {                   \
            fputs("PYMIC: ", stderr);                   \
            fprintf(stderr, __VA_ARGS__);               \
            fputc('\n', stderr);                        \
        }                                               \
    } while (0)

/* Match the arguments of a METH_FASTCALL | METH_KEYWORDS call to `names`:
 * out[i] receives the object for names[i], or NULL if an optional one is
 * missing.  The first `nrequired` names are required.  -1 with TypeError. */
int fastargs_parse(const char *function, PyObject *const *args, Py_ssize_t nargs,
                   PyObject *kwnames, const char *const *names, int nrequired, int nnames,
                   PyObject **out);

/* Parse a non-negative byte count or offset: an int, a NumPy integer (any
 * __index__) or a float with an integral value (pyMIC programs compute
 * `nbytes / 2`).  -1 with TypeError or ValueError set.  May run Python code
 * (__index__): call it before taking device addresses. */
int parse_size_arg(PyObject *obj, const char *name, int allow_zero, size_t *out);

#endif /* PYMIC_ENGINE_MODULE_H */
