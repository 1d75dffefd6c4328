/*
 * event.c -- pymic.OffloadEvent: markers recorded in streams.
 *
 * An event completes when its stream reaches the point where it was
 * recorded.  Other streams can wait for it without blocking the host, the
 * host can wait for it or poll it, and two completed events time the span
 * between them.
 */
#include "engine_module.h"

#include <stddef.h>

static EventObject *event_create(PyTypeObject *type)
{
    EventObject *self = (EventObject *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    int status = pymic_event_create(&self->handle);
    if (status != PYMIC_OK) {
        self->handle = NULL;
        Py_DECREF(self);
        return (EventObject *)raise_engine_error(status);
    }
    return self;
}

static PyObject *event_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    if (!PyArg_ParseTuple(args, ":OffloadEvent") ||
        (kwargs != NULL && PyDict_GET_SIZE(kwargs) > 0)) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError, "OffloadEvent() takes no arguments");
        return NULL;
    }
    return (PyObject *)event_create(type);
}

static void event_dealloc(EventObject *self)
{
    if (self->weakreflist != NULL)
        PyObject_ClearWeakRefs((PyObject *)self);
    if (self->handle != NULL) {
        /* Returns at once: queued records and waits keep what they need. */
        pymic_event_destroy(self->handle);
        self->handle = NULL;
    }
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static EventObject *event_check(PyObject *obj)
{
    if (!PyObject_TypeCheck(obj, &Event_Type)) {
        PyErr_Format(PyExc_TypeError, "expected an OffloadEvent, not %.100s",
                     Py_TYPE(obj)->tp_name);
        return NULL;
    }
    return (EventObject *)obj;
}

PyDoc_STRVAR(event_sync_doc,
"sync()\n"
"--\n"
"\n"
"Block until the stream has reached the point where the event was\n"
"recorded.  The GIL is released while waiting.\n"
"\n"
"Returns\n"
"-------\n"
"None\n"
"\n"
"Raises\n"
"------\n"
"OffloadError\n"
"    If the event was never recorded.\n"
"KeyboardInterrupt\n"
"    On Ctrl-C while waiting; the stream's work goes on.\n");

static PyObject *event_sync(EventObject *self, PyObject *Py_UNUSED(ignored))
{
    wait_target target = {.kind = WAIT_EVENT, .event = self->handle};
    if (wait_status_to_exception(wait_interruptibly(&target)) < 0)
        return NULL;
    Py_RETURN_NONE;
}

PyDoc_STRVAR(event_query_doc,
"query()\n"
"--\n"
"\n"
"Tell whether the event has completed, without blocking.\n"
"\n"
"Returns\n"
"-------\n"
"bool\n"
"    True if the stream has passed the event.\n"
"\n"
"Raises\n"
"------\n"
"OffloadError\n"
"    If the event was never recorded.\n");

static PyObject *event_query(EventObject *self, PyObject *Py_UNUSED(ignored))
{
    int answer = pymic_event_query(self->handle);
    if (answer < 0)
        return raise_engine_error(answer);
    return PyBool_FromLong(answer);
}

static PyObject *event_get_done(EventObject *self, void *Py_UNUSED(closure))
{
    return event_query(self, NULL);
}

PyDoc_STRVAR(event_elapsed_doc,
"elapsed(other)\n"
"--\n"
"\n"
"Time from this event to `other`, both completed.\n"
"\n"
"Parameters\n"
"----------\n"
"other : OffloadEvent\n"
"    The later event.\n"
"\n"
"Returns\n"
"-------\n"
"float\n"
"    Seconds between the two events (negative if `other` came first).\n"
"\n"
"Raises\n"
"------\n"
"OffloadError\n"
"    If either event has not completed or was never recorded.\n");

static PyObject *event_elapsed(EventObject *self, PyObject *other_obj)
{
    EventObject *other = event_check(other_obj);
    if (other == NULL)
        return NULL;
    double seconds = 0.0;
    int status = pymic_event_elapsed(self->handle, other->handle, &seconds);
    if (status != PYMIC_OK)
        return raise_engine_error(status);
    return PyFloat_FromDouble(seconds);
}

static PyMethodDef event_methods[] = {
    {"sync", (PyCFunction)event_sync, METH_NOARGS, event_sync_doc},
    {"query", (PyCFunction)event_query, METH_NOARGS, event_query_doc},
    {"elapsed", (PyCFunction)event_elapsed, METH_O, event_elapsed_doc},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef event_getset[] = {
    {"done", (getter)event_get_done, NULL,
     "bool: True if the event has completed (non-blocking).", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

PyDoc_STRVAR(event_type_doc,
"OffloadEvent()\n"
"--\n"
"\n"
"A marker recorded in a stream.\n"
"\n"
"Usually obtained from :meth:`OffloadStream.record_event`.  Another stream\n"
"can wait for it with :meth:`OffloadStream.wait_event`; the host can block\n"
"on it with :meth:`sync` or poll :attr:`done`; :meth:`elapsed` times the\n"
"span between two completed events.\n");

PyTypeObject Event_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "pymic.OffloadEvent",
    .tp_basicsize = sizeof(EventObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = event_type_doc,
    .tp_new = event_new,
    .tp_dealloc = (destructor)event_dealloc,
    .tp_methods = event_methods,
    .tp_getset = event_getset,
    .tp_weaklistoffset = offsetof(EventObject, weakreflist),
};

/* ----------------------------------------------------- stream methods */

const char stream_record_event_doc[] =
"record_event(event=None)\n"
"--\n"
"\n"
"Record an event at the current end of the stream.\n"
"\n"
"Parameters\n"
"----------\n"
"event : OffloadEvent, optional\n"
"    An event to move to this point; a new one is created if omitted.\n"
"\n"
"Returns\n"
"-------\n"
"OffloadEvent\n"
"    The event, which completes once every command enqueued so far has.\n";

PyObject *stream_record_event(StreamObject *self, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"event", NULL};
    PyObject *event_obj = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|O:record_event", keywords, &event_obj))
        return NULL;
    if (stream_make_room(self, 1) < 0)
        return NULL;
    EventObject *event;
    if (event_obj == Py_None) {
        event = event_create(&Event_Type);
        if (event == NULL)
            return NULL;
    } else {
        event = event_check(event_obj);
        if (event == NULL)
            return NULL;
        Py_INCREF(event);
    }
    int status = pymic_event_record(event->handle, self->handle);
    if (status != PYMIC_OK) {
        Py_DECREF(event);
        return raise_engine_error(status);
    }
    return (PyObject *)event;
}

const char stream_wait_event_doc[] =
"wait_event(event)\n"
"--\n"
"\n"
"Make later commands of this stream wait until `event` has completed.\n"
"\n"
"The host does not block.  The event may belong to a stream of any\n"
"device.\n"
"\n"
"Parameters\n"
"----------\n"
"event : OffloadEvent\n"
"    A recorded event.\n"
"\n"
"Returns\n"
"-------\n"
"None\n"
"\n"
"Raises\n"
"------\n"
"OffloadError\n"
"    If the event was never recorded.\n";

PyObject *stream_wait_event(StreamObject *self, PyObject *event_obj)
{
    if (stream_make_room(self, 1) < 0)
        return NULL;
    EventObject *event = event_check(event_obj);
    if (event == NULL)
        return NULL;
    return none_or_engine_error(pymic_stream_wait_event(self->handle, event->handle));
}
