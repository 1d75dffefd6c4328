/*
 * devptr.c -- device pointer objects and the stream's memory calls.
 *
 * A device pointer is an opaque handle to one device allocation.  Programs
 * may attach attributes of their own (PyFR stores the translated address on
 * it).  Unless created sticky, it frees its memory when garbage-collected,
 * ordered in the stream that allocated it, so commands still queued there
 * never see the memory vanish under them.
 */
#include "engine_module.h"

#include <stddef.h>

DevicePointerObject *devptr_new(StreamObject *stream, void *ptr, size_t nbytes, int sticky)
{
    DevicePointerObject *self = PyObject_GC_New(DevicePointerObject, &DevicePointer_Type);
    if (self == NULL)
        return NULL;
    self->ptr = ptr;
    self->nbytes = nbytes;
    self->device = stream->device;
    self->sticky = sticky;
    self->freed = 0;
    self->stream = (StreamObject *)Py_NewRef(stream);
    self->dict = NULL;
    self->weakreflist = NULL;
    PyObject_GC_Track(self);
    return self;
}

DevicePointerObject *devptr_check_live(PyObject *obj, const char *what)
{
    if (!Py_IS_TYPE(obj, &DevicePointer_Type)) {
        PyErr_Format(PyExc_TypeError, "%s must be a device pointer, not %.100s", what,
                     Py_TYPE(obj)->tp_name);
        return NULL;
    }
    DevicePointerObject *dptr = (DevicePointerObject *)obj;
    if (dptr->freed) {
        PyErr_Format(OffloadError, "%s: device pointer %p was already deallocated", what,
                     dptr->ptr);
        return NULL;
    }
    return dptr;
}

static int devptr_traverse(DevicePointerObject *self, visitproc visit, void *arg)
{
    Py_VISIT(self->dict);
    Py_VISIT(self->stream);
    return 0;
}

static int devptr_clear(DevicePointerObject *self)
{
    /* The stream stays: dealloc needs it to free in stream order, and the
     * stream never refers back to device pointers. */
    Py_CLEAR(self->dict);
    return 0;
}

static void devptr_dealloc(DevicePointerObject *self)
{
    PyObject_GC_UnTrack(self);
    if (self->weakreflist != NULL)
        PyObject_ClearWeakRefs((PyObject *)self);
    if (!self->freed && !self->sticky && self->stream != NULL &&
        self->stream->handle != NULL) {
        /* No stream_make_room here: a destructor runs wherever the last
         * reference drops, e.g. inside invoke between reading an
         * OffloadArray's address and enqueueing the kernel.  Letting other
         * threads run there could free memory that kernel is about to use,
         * so on a full ring this waits for one command with the GIL held. */
        int status = pymic_mem_free(self->stream->handle, self->ptr);
        if (status != PYMIC_OK)
            PYMIC_DEBUG_PRINT(1, "freeing device pointer %p failed: %s", self->ptr,
                              pymic_last_error());
    }
    devptr_clear(self);
    Py_CLEAR(self->stream);
    PyObject_GC_Del(self);
}

static PyObject *devptr_repr(DevicePointerObject *self)
{
    return PyUnicode_FromFormat("<pymic device pointer %p (%zu bytes) on device %d%s%s>",
                                self->ptr, self->nbytes, self->device,
                                self->sticky ? ", sticky" : "",
                                self->freed ? ", deallocated" : "");
}

static PyObject *devptr_get_nbytes(DevicePointerObject *self, void *Py_UNUSED(closure))
{
    return PyLong_FromSize_t(self->nbytes);
}

static PyObject *devptr_get_device_id(DevicePointerObject *self, void *Py_UNUSED(closure))
{
    return PyLong_FromLong(self->device);
}

static PyObject *devptr_get_sticky(DevicePointerObject *self, void *Py_UNUSED(closure))
{
    return PyBool_FromLong(self->sticky);
}

static PyObject *devptr_get_stream(DevicePointerObject *self, void *Py_UNUSED(closure))
{
    return Py_NewRef(self->stream ? (PyObject *)self->stream : Py_None);
}

static int devptr_set_stream(DevicePointerObject *self, PyObject *value, void *Py_UNUSED(closure))
{
    if (value == NULL || !PyObject_TypeCheck(value, &Stream_Type)) {
        PyErr_SetString(PyExc_TypeError, "the owning stream must be a stream");
        return -1;
    }
    if (((StreamObject *)value)->device != self->device) {
        PyErr_SetString(PyExc_ValueError, "the owning stream must be on the pointer's device");
        return -1;
    }
    Py_SETREF(self->stream, (StreamObject *)Py_NewRef(value));
    return 0;
}

static PyGetSetDef devptr_getset[] = {
    {"nbytes", (getter)devptr_get_nbytes, NULL, "int: size of the allocation in bytes.", NULL},
    {"device_id", (getter)devptr_get_device_id, NULL,
     "int: number of the device holding the memory.", NULL},
    {"sticky", (getter)devptr_get_sticky, NULL,
     "bool: if True, garbage collection does not free the memory.", NULL},
    {"_stream", (getter)devptr_get_stream, (setter)devptr_set_stream,
     "The stream in whose order garbage collection frees the memory.", NULL},
    {"__dict__", PyObject_GenericGetDict, PyObject_GenericSetDict, NULL, NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

int alloc_device_memory(int device, size_t nbytes, size_t alignment, void **ptr)
{
    int status = pymic_mem_alloc_nowait(device, nbytes, alignment, ptr);
    if (status != PYMIC_ERR_OUT_OF_MEMORY)
        return status;
    /* Memory freed on some stream may still be on its way back (its free
     * queued behind other commands): wait for it without the GIL, since
     * those commands may wait for another Python thread. */
    Py_BEGIN_ALLOW_THREADS
    status = pymic_mem_alloc(device, nbytes, alignment, ptr);
    Py_END_ALLOW_THREADS
    return status;
}

PyDoc_STRVAR(devptr_type_doc,
"Opaque handle to device memory, returned by\n"
":meth:`OffloadStream.allocate_device_memory`.\n"
"\n"
"Pass it to ``invoke`` (the kernel receives the device address), to the\n"
"``transfer_*`` calls, or to ``translate_device_pointer``.  Unless it was\n"
"allocated with ``sticky=True`` its memory is freed, in stream order, when\n"
"the object is garbage-collected.  Arbitrary attributes may be set on it.\n");

PyTypeObject DevicePointer_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "pymic.DevicePointer",
    .tp_basicsize = sizeof(DevicePointerObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = devptr_type_doc,
    .tp_dealloc = (destructor)devptr_dealloc,
    .tp_traverse = (traverseproc)devptr_traverse,
    .tp_clear = (inquiry)devptr_clear,
    .tp_repr = (reprfunc)devptr_repr,
    .tp_getset = devptr_getset,
    .tp_dictoffset = offsetof(DevicePointerObject, dict),
    .tp_weaklistoffset = offsetof(DevicePointerObject, weakreflist),
};

/* ----------------------------------------------------- stream methods */

const char stream_allocate_device_memory_doc[] =
"allocate_device_memory(nbytes, alignment=64, sticky=False)\n"
"--\n"
"\n"
"Allocate memory on the stream's device (synchronous).\n"
"\n"
"Parameters\n"
"----------\n"
"nbytes : int\n"
"    Size in bytes, greater than zero.\n"
"alignment : int, optional\n"
"    Alignment in bytes, a power of two (default 64).\n"
"sticky : bool, optional\n"
"    If True the memory is not freed when the returned object is\n"
"    garbage-collected; only ``deallocate_device_memory`` frees it.\n"
"\n"
"Returns\n"
"-------\n"
"DevicePointer\n"
"    Opaque handle to the allocation.\n"
"\n"
"Raises\n"
"------\n"
"ValueError\n"
"    If `nbytes` <= 0 or `alignment` is not a power of two.\n"
"OffloadError\n"
"    If the device is out of memory.\n";

PyObject *stream_allocate_device_memory(StreamObject *self, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"nbytes", "alignment", "sticky", NULL};
    PyObject *nbytes_obj = NULL;
    PyObject *alignment_obj = NULL;
    int sticky = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O|Op:allocate_device_memory", keywords,
                                     &nbytes_obj, &alignment_obj, &sticky))
        return NULL;
    size_t nbytes = 0;
    size_t alignment = 64;
    if (parse_size_arg(nbytes_obj, "nbytes", 0, &nbytes) < 0)
        return NULL;
    if (alignment_obj != NULL && alignment_obj != Py_None) {
        if (parse_size_arg(alignment_obj, "alignment", 0, &alignment) < 0)
            return NULL;
        if ((alignment & (alignment - 1)) != 0) {
            PyErr_Format(OffloadValueError, "alignment must be a power of two, got %zu",
                         alignment);
            return NULL;
        }
    }
    void *ptr = NULL;
    int status = alloc_device_memory(self->device, nbytes, alignment, &ptr);
    if (status != PYMIC_OK)
        return raise_engine_error(status);
    DevicePointerObject *dptr = devptr_new(self, ptr, nbytes, sticky);
    if (dptr == NULL) {
        pymic_mem_free(self->handle, ptr);
        return NULL;
    }
    PYMIC_DEBUG_PRINT(2, "allocated %zu bytes at %p on device %d", nbytes, ptr, self->device);
    return (PyObject *)dptr;
}

const char stream_deallocate_device_memory_doc[] =
"deallocate_device_memory(device_ptr)\n"
"--\n"
"\n"
"Free device memory in stream order.\n"
"\n"
"The memory is released once every command enqueued on this stream\n"
"before the call has completed; the pointer is dead at once.\n"
"\n"
"Parameters\n"
"----------\n"
"device_ptr : DevicePointer\n"
"    Handle returned by ``allocate_device_memory``.\n"
"\n"
"Returns\n"
"-------\n"
"None\n"
"\n"
"Raises\n"
"------\n"
"OffloadError\n"
"    If the pointer was already deallocated or belongs to another device.\n";

PyObject *stream_deallocate_device_memory(StreamObject *self, PyObject *obj)
{
    /* Before the check: another thread may deallocate it meanwhile. */
    if (stream_make_room(self, 1) < 0)
        return NULL;
    DevicePointerObject *dptr = devptr_check_live(obj, "deallocate_device_memory");
    if (dptr == NULL)
        return NULL;
    int status = pymic_mem_free(self->handle, dptr->ptr);
    if (status != PYMIC_OK)
        return raise_engine_error(status);
    dptr->freed = 1;
    stream_release_completed(self);
    Py_RETURN_NONE;
}

const char stream_translate_device_pointer_doc[] =
"translate_device_pointer(device_ptr)\n"
"--\n"
"\n"
"Return the raw device address behind a device pointer.\n"
"\n"
"Synchronizes the stream first, so the address may be used by code that\n"
"runs outside pymic's ordering.\n"
"\n"
"Parameters\n"
"----------\n"
"device_ptr : DevicePointer or None\n"
"    Handle returned by ``allocate_device_memory``; None translates to 0.\n"
"\n"
"Returns\n"
"-------\n"
"int\n"
"    The address as the device's code sees it.\n"
"\n"
"Raises\n"
"------\n"
"OffloadError\n"
"    If the pointer was deallocated, belongs to another device, or the\n"
"    engine rejects it.\n"
"KeyboardInterrupt\n"
"    On Ctrl-C while synchronizing.\n";

PyObject *stream_translate_device_pointer(StreamObject *self, PyObject *obj)
{
    if (stream_sync_released(self) < 0)
        return NULL;
    if (obj == Py_None)
        return PyLong_FromLong(0);
    DevicePointerObject *dptr = devptr_check_live(obj, "translate_device_pointer");
    if (dptr == NULL)
        return NULL;
    /* The address means something only to code running on this stream's
     * device. */
    if (dptr->device != self->device) {
        PyErr_Format(OffloadError,
                     "translate_device_pointer: device pointer of device %d used on a stream "
                     "of device %d",
                     dptr->device, self->device);
        return NULL;
    }
    uintptr_t address = 0;
    int status = pymic_mem_translate(dptr->device, dptr->ptr, 0, &address);
    if (status != PYMIC_OK)
        return raise_engine_error(status);
    return PyLong_FromVoidPtr((void *)address);
}
