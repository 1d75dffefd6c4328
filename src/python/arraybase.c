/*
 * arraybase.c -- _engine.ArrayBase, the C base of pymic.OffloadArray.
 *
 * It holds only what invoke needs to pass an OffloadArray to a kernel: the
 * device pointer object owning the buffer and the byte offset of the
 * array's first element (non-zero for slices).  Everything else about an
 * OffloadArray lives in Python.
 */
#include "engine_module.h"

#include <stddef.h>

static int arraybase_traverse(ArrayBaseObject *self, visitproc visit, void *arg)
{
    Py_VISIT(self->dptr);
    return 0;
}

static int arraybase_clear(ArrayBaseObject *self)
{
    Py_CLEAR(self->dptr);
    return 0;
}

static void arraybase_dealloc(ArrayBaseObject *self)
{
    PyObject_GC_UnTrack(self);
    arraybase_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *arraybase_get_dptr(ArrayBaseObject *self, void *Py_UNUSED(closure))
{
    return Py_NewRef(self->dptr ? self->dptr : Py_None);
}

static int arraybase_set_dptr(ArrayBaseObject *self, PyObject *value, void *Py_UNUSED(closure))
{
    if (value == NULL || value == Py_None) {
        Py_CLEAR(self->dptr);
        return 0;
    }
    if (!Py_IS_TYPE(value, &DevicePointer_Type)) {
        PyErr_Format(PyExc_TypeError, "_dptr must be a device pointer, not %.100s",
                     Py_TYPE(value)->tp_name);
        return -1;
    }
    size_t nbytes = ((DevicePointerObject *)value)->nbytes;
    if ((size_t)self->doffset > nbytes) {
        PyErr_Format(OffloadValueError,
                     "_doffset %zd lies beyond the new allocation of %zu bytes", self->doffset,
                     nbytes);
        return -1;
    }
    Py_XSETREF(self->dptr, Py_NewRef(value));
    return 0;
}

static PyObject *arraybase_get_doffset(ArrayBaseObject *self, void *Py_UNUSED(closure))
{
    return PyLong_FromSsize_t(self->doffset);
}

static int arraybase_set_doffset(ArrayBaseObject *self, PyObject *value,
                                 void *Py_UNUSED(closure))
{
    if (value == NULL) {
        PyErr_SetString(PyExc_AttributeError, "_doffset cannot be deleted");
        return -1;
    }
    Py_ssize_t offset = PyLong_AsSsize_t(value);
    if (offset == -1 && PyErr_Occurred())
        return -1;
    if (offset < 0) {
        PyErr_SetString(OffloadValueError, "_doffset must be >= 0");
        return -1;
    }
    /* invoke passes dptr + doffset to kernels: it must stay inside the
     * allocation (invoke checks again, as the pointer may be rebound). */
    if (self->dptr != NULL && (size_t)offset > ((DevicePointerObject *)self->dptr)->nbytes) {
        PyErr_Format(OffloadValueError, "_doffset %zd lies beyond the allocation of %zu bytes",
                     offset, ((DevicePointerObject *)self->dptr)->nbytes);
        return -1;
    }
    self->doffset = offset;
    return 0;
}

static PyGetSetDef arraybase_getset[] = {
    {"_dptr", (getter)arraybase_get_dptr, (setter)arraybase_set_dptr,
     "Device pointer object owning the array's device buffer.", NULL},
    {"_doffset", (getter)arraybase_get_doffset, (setter)arraybase_set_doffset,
     "Byte offset of the first element inside the device buffer.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

PyTypeObject ArrayBase_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "pymic._engine.ArrayBase",
    .tp_basicsize = sizeof(ArrayBaseObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "Device-side storage of an OffloadArray (C base class).",
    .tp_new = PyType_GenericNew,
    .tp_dealloc = (destructor)arraybase_dealloc,
    .tp_traverse = (traverseproc)arraybase_traverse,
    .tp_clear = (inquiry)arraybase_clear,
    .tp_getset = arraybase_getset,
};
