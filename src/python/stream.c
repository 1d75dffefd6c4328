/*
 * stream.c -- _engine.Stream, the C base of pymic.OffloadStream.
 *
 * The hot calls (invoke, sync, transfers) are methods of this type so that a
 * Python program reaches libpymic without running Python code in between.
 * Methods that live in other files (invoke.c, transfer.c, event.c) are
 * wired into the method table here.
 */
#include "engine_module.h"

static PyObject *stream_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"device_id", "device", NULL};
    int device = 0;
    PyObject *device_obj = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "i|O:Stream", keywords, &device,
                                     &device_obj))
        return NULL;
    StreamObject *self = (StreamObject *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    int status;
    /* Starting a thread takes a while: let other Python threads run. */
    Py_BEGIN_ALLOW_THREADS
    status = pymic_stream_create(device, &self->handle);
    Py_END_ALLOW_THREADS
    if (status != PYMIC_OK) {
        self->handle = NULL;
        Py_DECREF(self);
        return raise_engine_error(status);
    }
    self->capacity = (uint64_t)pymic_stream_capacity(self->handle);
    self->device = device;
    self->device_obj = Py_NewRef(device_obj);
    PYMIC_DEBUG_PRINT(1, "created stream %p on device %d", (void *)self->handle, device);
    return (PyObject *)self;
}

static int stream_traverse(StreamObject *self, visitproc visit, void *arg)
{
    Py_VISIT(self->device_obj);
    return keepalive_traverse(&self->keep, visit, arg);
}

static int stream_clear(StreamObject *self)
{
    /* Keep-alive entries are not cleared here: their commands may still be
     * running.  They go when the stream is destroyed (to the closing list
     * if commands are still queued). */
    Py_CLEAR(self->device_obj);
    return 0;
}

static void stream_dealloc(StreamObject *self)
{
    PyTypeObject *type = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    if (self->handle != NULL) {
        /* Destroying never blocks: the engine drains the stream in the
         * background.  Buffers its queued commands use stay alive on the
         * closing list until then; if even that is impossible (out of
         * memory, or a stream inherited across fork() where nothing will
         * run), the buffers of runnable commands are waited for here. */
        pymic_stream *handle = self->handle;
        self->handle = NULL;
        keepalive_release_until(&self->keep, pymic_stream_completed(handle));
        if (!keepalive_is_empty(&self->keep) && closing_add(handle, &self->keep) < 0) {
            uint64_t last = pymic_stream_last_enqueued(handle);
            Py_BEGIN_ALLOW_THREADS
            pymic_stream_wait_seq(handle, last);
            Py_END_ALLOW_THREADS
        }
        pymic_stream_destroy(handle);
    }
    keepalive_release_all(&self->keep);
    stream_clear(self);
    /* A Python subclass's dealloc drops the reference to its heap type. */
    type->tp_free((PyObject *)self);
}

int stream_wait_room(StreamObject *self, uint64_t k)
{
    if (k > self->capacity)
        k = self->capacity;
    int released = 0;
    /* Loop: a C thread enqueueing without the GIL may take the room again
     * before this thread has the GIL back. */
    for (;;) {
        uint64_t completed = pymic_stream_completed(self->handle);
        uint64_t last = pymic_stream_last_enqueued(self->handle);
        if (last + k - completed <= self->capacity)
            return released;
        int status = wait_stream_seq(self->handle, last + k - self->capacity);
        released = 1;
        if (status == WAIT_INTERRUPTED)
            return -1;
        if (status != PYMIC_OK)
            return released;
    }
}

int stream_sync_released(StreamObject *self)
{
    uint64_t target = pymic_stream_last_enqueued(self->handle);
    /* An idle stream needs no wait: skip the GIL hand-over, which costs
     * about as much as a whole small offload. */
    if (pymic_stream_completed(self->handle) < target) {
        if (wait_status_to_exception(wait_stream_seq(self->handle, target)) < 0)
            return -1;
    } else {
        /* Nothing to wait for, but a command that already ran may have
         * failed (a lost device): the engine reports it without blocking. */
        int status = pymic_stream_wait_seq(self->handle, target);
        if (status != PYMIC_OK) {
            raise_engine_error(status);
            return -1;
        }
    }
    stream_release_completed(self);
    return 0;
}

PyDoc_STRVAR(stream_sync_doc,
"sync()\n"
"--\n"
"\n"
"Block until every command enqueued on this stream has completed.\n"
"\n"
"The GIL is released while waiting, so other Python threads keep\n"
"running.  Host objects kept alive for the completed commands are\n"
"released.  Ctrl-C interrupts the wait (KeyboardInterrupt); the queued\n"
"work goes on and the objects it uses stay alive until it completes.\n"
"\n"
"Returns\n"
"-------\n"
"None\n"
"\n"
"Raises\n"
"------\n"
"OffloadError\n"
"    If the engine reports a failure.\n"
"KeyboardInterrupt\n"
"    On Ctrl-C while waiting.\n");

static PyObject *stream_sync(StreamObject *self, PyObject *Py_UNUSED(ignored))
{
    if (stream_sync_released(self) < 0)
        return NULL;
    Py_RETURN_NONE;
}

PyDoc_STRVAR(stream_query_doc,
"query()\n"
"--\n"
"\n"
"Tell whether every command enqueued so far has completed, without\n"
"blocking.\n"
"\n"
"Returns\n"
"-------\n"
"bool\n"
"    True if the stream is idle.\n");

static PyObject *stream_query(StreamObject *self, PyObject *Py_UNUSED(ignored))
{
    int answer = pymic_stream_query(self->handle);
    if (answer < 0)
        return raise_engine_error(answer);
    if (answer)
        stream_release_completed(self);
    return PyBool_FromLong(answer);
}

static PyObject *stream_get_done(StreamObject *self, void *Py_UNUSED(closure))
{
    return stream_query(self, NULL);
}

static PyObject *stream_get_device_id(StreamObject *self, void *Py_UNUSED(closure))
{
    return PyLong_FromLong(self->device);
}

static PyObject *stream_get_number(StreamObject *self, void *Py_UNUSED(closure))
{
    return PyLong_FromLong(pymic_stream_number(self->handle));
}

static PyObject *stream_get_device_obj(StreamObject *self, void *Py_UNUSED(closure))
{
    return Py_NewRef(self->device_obj ? self->device_obj : Py_None);
}

static PyObject *stream_get_pending_host_objects(StreamObject *self, void *Py_UNUSED(closure))
{
    return PyLong_FromSize_t(self->keep.tail - self->keep.head);
}

static PyMethodDef stream_methods[] = {
    {"invoke", (PyCFunction)(void (*)(void))stream_invoke, METH_FASTCALL, stream_invoke_doc},
    {"sync", (PyCFunction)stream_sync, METH_NOARGS, stream_sync_doc},
    {"query", (PyCFunction)stream_query, METH_NOARGS, stream_query_doc},
    {"allocate_device_memory", (PyCFunction)(void (*)(void))stream_allocate_device_memory,
     METH_VARARGS | METH_KEYWORDS, stream_allocate_device_memory_doc},
    {"deallocate_device_memory", (PyCFunction)stream_deallocate_device_memory, METH_O,
     stream_deallocate_device_memory_doc},
    {"transfer_host2device", (PyCFunction)(void (*)(void))stream_transfer_host2device,
     METH_FASTCALL | METH_KEYWORDS, stream_transfer_host2device_doc},
    {"transfer_device2host", (PyCFunction)(void (*)(void))stream_transfer_device2host,
     METH_FASTCALL | METH_KEYWORDS, stream_transfer_device2host_doc},
    {"transfer_device2device", (PyCFunction)(void (*)(void))stream_transfer_device2device,
     METH_FASTCALL | METH_KEYWORDS, stream_transfer_device2device_doc},
    {"translate_device_pointer", (PyCFunction)stream_translate_device_pointer, METH_O,
     stream_translate_device_pointer_doc},
    {"record_event", (PyCFunction)(void (*)(void))stream_record_event,
     METH_VARARGS | METH_KEYWORDS, stream_record_event_doc},
    {"wait_event", (PyCFunction)stream_wait_event, METH_O, stream_wait_event_doc},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef stream_getset[] = {
    {"done", (getter)stream_get_done, NULL,
     "bool: True if every command enqueued so far has completed (non-blocking).", NULL},
    {"device_id", (getter)stream_get_device_id, NULL,
     "int: number of the device this stream runs on.", NULL},
    {"number", (getter)stream_get_number, NULL,
     "int: the stream's number on its device (1, 2, ... in the order streams were created), "
     "as error messages name it.", NULL},
    {"_device", (getter)stream_get_device_obj, NULL,
     "The device object given at creation.", NULL},
    {"_pending_host_objects", (getter)stream_get_pending_host_objects, NULL,
     "int: host objects still kept alive for queued commands (for tests).", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

PyDoc_STRVAR(stream_type_doc,
"Stream(device_id, device=None)\n"
"--\n"
"\n"
"An in-order queue of commands on one device (C base of OffloadStream).\n"
"\n"
"Parameters\n"
"----------\n"
"device_id : int\n"
"    Number of the device the stream's worker runs on.\n"
"device : object, optional\n"
"    The Python device object to remember for ``get_device()``.\n");

PyTypeObject Stream_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "pymic._engine.Stream",
    .tp_basicsize = sizeof(StreamObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_doc = stream_type_doc,
    .tp_new = stream_new,
    .tp_dealloc = (destructor)stream_dealloc,
    .tp_traverse = (traverseproc)stream_traverse,
    .tp_clear = (inquiry)stream_clear,
    .tp_methods = stream_methods,
    .tp_getset = stream_getset,
};
