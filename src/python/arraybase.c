/*
 * arraybase.c -- _engine.ArrayBase, the C base of pymic.OffloadArray.
 *
 * It holds what invoke needs to pass an OffloadArray to a kernel (the
 * device pointer object owning the buffer and the byte offset of the
 * array's first element, non-zero for slices) and the array's description:
 * array, device, stream, shape, dtype, order, ndim, size, nbytes.
 *
 * The description is read-only from Python.  The element-wise operations
 * launch kernels over `size` elements from `dptr + doffset`, so a size or
 * shape changed by assignment would run them past the buffer; here every
 * change goes through _describe, _set_stream, or the _dptr/_doffset
 * setters, and each of them keeps doffset + nbytes inside the allocation
 * and the stream on the buffer's device.
 */
#include "engine_module.h"

#include <stddef.h>
#include <string.h>

/* Read-only object members: Py_T_OBJECT_EX raises AttributeError while
 * unset, and CPython specialises loads of such members like instance
 * attributes. */
#if PY_VERSION_HEX >= 0x030C0000
#define MEMBER_OBJECT Py_T_OBJECT_EX
#define MEMBER_READONLY Py_READONLY
#else
#include <structmember.h>
#define MEMBER_OBJECT T_OBJECT_EX
#define MEMBER_READONLY READONLY
#endif

static int arraybase_traverse(ArrayBaseObject *self, visitproc visit, void *arg)
{
    Py_VISIT(self->dptr);
    Py_VISIT(self->array);
    Py_VISIT(self->device);
    Py_VISIT(self->stream);
    Py_VISIT(self->shape);
    Py_VISIT(self->dtype);
    Py_VISIT(self->order);
    Py_VISIT(self->ndim);
    Py_VISIT(self->size);
    Py_VISIT(self->nbytes_obj);
    return 0;
}

static int arraybase_clear(ArrayBaseObject *self)
{
    Py_CLEAR(self->dptr);
    Py_CLEAR(self->array);
    Py_CLEAR(self->device);
    Py_CLEAR(self->stream);
    Py_CLEAR(self->shape);
    Py_CLEAR(self->dtype);
    Py_CLEAR(self->order);
    Py_CLEAR(self->ndim);
    Py_CLEAR(self->size);
    Py_CLEAR(self->nbytes_obj);
    return 0;
}

static void arraybase_dealloc(ArrayBaseObject *self)
{
    PyObject_GC_UnTrack(self);
    arraybase_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* 0 if `nbytes` bytes from `offset` lie inside `dptr`'s allocation; else
 * a ValueError naming `what` is set. */
static int check_fits(PyObject *dptr, Py_ssize_t offset, Py_ssize_t nbytes, const char *what)
{
    if (dptr == NULL)
        return 0;
    size_t allocated = ((DevicePointerObject *)dptr)->nbytes;
    if ((size_t)nbytes > allocated || (size_t)offset > allocated - (size_t)nbytes) {
        PyErr_Format(OffloadValueError,
                     "%s: %zd bytes from offset %zd reach beyond the allocation of %zu bytes",
                     what, nbytes, offset, allocated);
        return -1;
    }
    return 0;
}

/* 0 if `stream` runs on the device holding `dptr` (when there is one). */
static int check_stream_device(PyObject *dptr, PyObject *stream, const char *what)
{
    if (!PyObject_TypeCheck(stream, &Stream_Type)) {
        PyErr_Format(PyExc_TypeError, "%s: expected an OffloadStream, not %.100s", what,
                     Py_TYPE(stream)->tp_name);
        return -1;
    }
    int stream_device = ((StreamObject *)stream)->device;
    if (dptr != NULL && ((DevicePointerObject *)dptr)->device != stream_device) {
        PyErr_Format(PyExc_ValueError,
                     "%s: the array's memory is on device %d, the stream runs on device %d",
                     what, ((DevicePointerObject *)dptr)->device, stream_device);
        return -1;
    }
    return 0;
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
    if (check_fits(value, self->doffset, self->nbytes, "_dptr") < 0)
        return -1;
    if (self->stream != NULL && check_stream_device(value, self->stream, "_dptr") < 0)
        return -1;
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
    if (check_fits(self->dptr, offset, self->nbytes, "_doffset") < 0)
        return -1;
    self->doffset = offset;
    return 0;
}

/* The number of elements of `shape` (a tuple of ints >= 0), or -1 with an
 * exception set. */
static Py_ssize_t element_count(PyObject *shape)
{
    if (!PyTuple_Check(shape)) {
        PyErr_Format(PyExc_TypeError, "_describe: shape must be a tuple, not %.100s",
                     Py_TYPE(shape)->tp_name);
        return -1;
    }
    Py_ssize_t count = 1;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(shape); i++) {
        PyObject *item = PyTuple_GET_ITEM(shape, i);
        if (!PyLong_Check(item)) {
            PyErr_Format(PyExc_TypeError, "_describe: shape entries must be ints, not %.100s",
                         Py_TYPE(item)->tp_name);
            return -1;
        }
        Py_ssize_t extent = PyLong_AsSsize_t(item);
        if (extent == -1 && PyErr_Occurred())
            return -1;
        if (extent < 0) {
            PyErr_Format(PyExc_ValueError, "negative dimensions are not allowed: %R", shape);
            return -1;
        }
        if (extent != 0 && count > PY_SSIZE_T_MAX / extent) {
            PyErr_Format(PyExc_ValueError, "array of shape %R is too large", shape);
            return -1;
        }
        count *= extent;
    }
    return count;
}

static Py_ssize_t dtype_itemsize(PyObject *dtype)
{
    PyObject *itemsize_obj = PyObject_GetAttrString(dtype, "itemsize");
    if (itemsize_obj == NULL)
        return -1;
    Py_ssize_t itemsize = PyLong_AsSsize_t(itemsize_obj);
    Py_DECREF(itemsize_obj);
    if (itemsize == -1 && PyErr_Occurred())
        return -1;
    if (itemsize < 0) {
        PyErr_SetString(PyExc_ValueError, "_describe: negative itemsize");
        return -1;
    }
    return itemsize;
}

PyDoc_STRVAR(arraybase_describe_doc,
"_describe(array, device, stream, shape, dtype, order)\n"
"--\n"
"\n"
"Set the array's description at once (internal to pymic).\n"
"\n"
"ndim, size and nbytes follow from shape and dtype.  Refused if the bytes\n"
"described do not fit the device allocation already attached, or the\n"
"stream runs on another device.");

static PyObject *arraybase_describe(ArrayBaseObject *self, PyObject *const *args,
                                    Py_ssize_t nargs)
{
    if (nargs != 6) {
        PyErr_Format(PyExc_TypeError, "_describe() takes 6 arguments (%zd given)", nargs);
        return NULL;
    }
    PyObject *array = args[0], *device = args[1], *stream = args[2], *shape = args[3],
             *dtype = args[4], *order = args[5];
    if (!PyUnicode_Check(order) || (PyUnicode_CompareWithASCIIString(order, "C") != 0 &&
                                    PyUnicode_CompareWithASCIIString(order, "F") != 0)) {
        PyErr_Format(PyExc_ValueError, "order must be 'C' or 'F', not %R", order);
        return NULL;
    }
    if (check_stream_device(self->dptr, stream, "_describe") < 0)
        return NULL;
    Py_ssize_t size = element_count(shape);
    if (size < 0)
        return NULL;
    Py_ssize_t itemsize = dtype_itemsize(dtype);
    if (itemsize < 0)
        return NULL;
    if (itemsize != 0 && size > PY_SSIZE_T_MAX / itemsize) {
        PyErr_Format(PyExc_ValueError, "array of shape %R is too large", shape);
        return NULL;
    }
    Py_ssize_t nbytes = size * itemsize;
    if (check_fits(self->dptr, self->doffset, nbytes, "_describe") < 0)
        return NULL;
    PyObject *ndim_obj = PyLong_FromSsize_t(PyTuple_GET_SIZE(shape));
    PyObject *size_obj = PyLong_FromSsize_t(size);
    PyObject *nbytes_obj = PyLong_FromSsize_t(nbytes);
    if (ndim_obj == NULL || size_obj == NULL || nbytes_obj == NULL) {
        Py_XDECREF(ndim_obj);
        Py_XDECREF(size_obj);
        Py_XDECREF(nbytes_obj);
        return NULL;
    }
    Py_XSETREF(self->array, Py_NewRef(array));
    Py_XSETREF(self->device, Py_NewRef(device));
    Py_XSETREF(self->stream, Py_NewRef(stream));
    Py_XSETREF(self->shape, Py_NewRef(shape));
    Py_XSETREF(self->dtype, Py_NewRef(dtype));
    Py_XSETREF(self->order, Py_NewRef(order));
    Py_XSETREF(self->ndim, ndim_obj);
    Py_XSETREF(self->size, size_obj);
    Py_XSETREF(self->nbytes_obj, nbytes_obj);
    self->nbytes = nbytes;
    self->dtype_code = 0; /* the signature code invoke cached may be stale */
    Py_RETURN_NONE;
}

PyDoc_STRVAR(arraybase_set_stream_doc,
"_set_stream(stream)\n"
"--\n"
"\n"
"Make `stream` the array's stream (internal: OffloadArray.assign_stream\n"
"orders it after the old one first).  Refused for a stream of another\n"
"device.");

static PyObject *arraybase_set_stream(ArrayBaseObject *self, PyObject *stream)
{
    if (check_stream_device(self->dptr, stream, "_set_stream") < 0)
        return NULL;
    if (self->stream != NULL &&
        ((StreamObject *)self->stream)->device != ((StreamObject *)stream)->device) {
        PyErr_Format(PyExc_ValueError,
                     "_set_stream: the array is on device %d, the stream runs on device %d",
                     ((StreamObject *)self->stream)->device, ((StreamObject *)stream)->device);
        return NULL;
    }
    Py_XSETREF(self->stream, Py_NewRef(stream));
    Py_RETURN_NONE;
}

static PyGetSetDef arraybase_getset[] = {
    {"_dptr", (getter)arraybase_get_dptr, (setter)arraybase_set_dptr,
     "Device pointer object owning the array's device buffer.", NULL},
    {"_doffset", (getter)arraybase_get_doffset, (setter)arraybase_set_doffset,
     "Byte offset of the first element inside the device buffer.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

#define DESCRIPTION_MEMBER(name, field, doc)                                                \
    {name, MEMBER_OBJECT, offsetof(ArrayBaseObject, field), MEMBER_READONLY, doc}

static PyMemberDef arraybase_members[] = {
    DESCRIPTION_MEMBER("array", array, "numpy.ndarray or None: the host array (read-only)."),
    DESCRIPTION_MEMBER("device", device, "OffloadDevice: device holding the buffer (read-only)."),
    DESCRIPTION_MEMBER("stream", stream,
                       "OffloadStream: stream of the array's operations (read-only; change "
                       "it with assign_stream())."),
    DESCRIPTION_MEMBER("shape", shape, "tuple of int: the array's shape (read-only)."),
    DESCRIPTION_MEMBER("dtype", dtype, "numpy.dtype: the element type (read-only)."),
    DESCRIPTION_MEMBER("order", order, "str: memory layout, 'C' or 'F' (read-only)."),
    DESCRIPTION_MEMBER("ndim", ndim, "int: number of dimensions (read-only)."),
    DESCRIPTION_MEMBER("size", size, "int: number of elements (read-only)."),
    DESCRIPTION_MEMBER("nbytes", nbytes_obj, "int: bytes of the elements (read-only)."),
    {NULL, 0, 0, 0, NULL},
};

/* Assigning a description attribute raises an AttributeError that says
 * why and, for the stream, what to call instead (the member descriptor's
 * own message is a bare "readonly attribute"). */
static int arraybase_setattro(PyObject *self, PyObject *name, PyObject *value)
{
    /* Private names (_dptr, _doffset, ...) skip the search: they are set
     * on every new array. */
    if (PyUnicode_Check(name) && PyUnicode_GET_LENGTH(name) > 0 &&
        PyUnicode_READ_CHAR(name, 0) != '_') {
        for (const PyMemberDef *member = arraybase_members; member->name != NULL; member++) {
            if (PyUnicode_CompareWithASCIIString(name, member->name) != 0)
                continue;
            if (strcmp(member->name, "stream") == 0)
                PyErr_SetString(PyExc_AttributeError,
                                "OffloadArray.stream is read-only: change it with "
                                "assign_stream(), which orders the new stream after the old");
            else
                PyErr_Format(PyExc_AttributeError,
                             "OffloadArray.%s is read-only: the array's operations rely on "
                             "it describing the array's buffers",
                             member->name);
            return -1;
        }
    }
    return PyObject_GenericSetAttr(self, name, value);
}

static PyMethodDef arraybase_methods[] = {
    {"_describe", (PyCFunction)(void (*)(void))arraybase_describe, METH_FASTCALL,
     arraybase_describe_doc},
    {"_set_stream", (PyCFunction)arraybase_set_stream, METH_O, arraybase_set_stream_doc},
    {NULL, NULL, 0, NULL},
};

PyTypeObject ArrayBase_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "pymic._engine.ArrayBase",
    .tp_basicsize = sizeof(ArrayBaseObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "Device-side storage and read-only description of an OffloadArray (C base "
              "class).",
    .tp_new = PyType_GenericNew,
    .tp_dealloc = (destructor)arraybase_dealloc,
    .tp_traverse = (traverseproc)arraybase_traverse,
    .tp_clear = (inquiry)arraybase_clear,
    .tp_methods = arraybase_methods,
    .tp_members = arraybase_members,
    .tp_getset = arraybase_getset,
    .tp_setattro = arraybase_setattro,
};
