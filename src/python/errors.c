/*
 * errors.c -- pymic's exceptions and the mapping from engine statuses.
 *
 * Every failure libpymic reports becomes pymic.OffloadError carrying the
 * engine's message.  Statuses that mean "you passed a bad value" become
 * OffloadValueError, a subclass of both OffloadError and ValueError, so a
 * program may catch either; the extension's own checks of the same kind of
 * value (sizes, offsets, ranges, alignments) raise it too, so one kind of
 * error has one class whichever layer finds it.
 */
#include "engine_module.h"

#include <math.h>

PyObject *OffloadError;
PyObject *OffloadValueError;

PyDoc_STRVAR(offload_error_doc,
"Error reported by the pymic offload engine.\n"
"\n"
"Raised for every failure of a device, stream, transfer, library or\n"
"kernel call.  The message names the operation, the device and the\n"
"reason, as reported by the engine.\n");

PyDoc_STRVAR(offload_value_error_doc,
"A bad argument value for device memory or a kernel call.\n"
"\n"
"A subclass of both :class:`OffloadError` and :class:`ValueError`, raised\n"
"wherever pymic checks such a value -- before anything is queued or in\n"
"the engine: sizes and offsets that are negative, not whole or too large,\n"
"ranges beyond an allocation or a host buffer, an offset into a device\n"
"pointer beyond its allocation, bad alignments, too many kernel\n"
"arguments -- so ``except ValueError`` and ``except OffloadError`` both\n"
"catch it.\n");

int errors_module_init(PyObject *module)
{
    OffloadError = PyErr_NewExceptionWithDoc("pymic.OffloadError", offload_error_doc,
                                             PyExc_Exception, NULL);
    if (OffloadError == NULL)
        return -1;
    PyObject *bases = PyTuple_Pack(2, OffloadError, PyExc_ValueError);
    if (bases == NULL)
        return -1;
    OffloadValueError = PyErr_NewExceptionWithDoc("pymic.OffloadValueError",
                                                  offload_value_error_doc, bases, NULL);
    Py_DECREF(bases);
    if (OffloadValueError == NULL)
        return -1;
    if (PyModule_AddObjectRef(module, "OffloadError", OffloadError) < 0)
        return -1;
    return PyModule_AddObjectRef(module, "OffloadValueError", OffloadValueError);
}

static int is_value_status(int status)
{
    return status == PYMIC_ERR_INVALID_ARGUMENT || status == PYMIC_ERR_OUT_OF_RANGE ||
           status == PYMIC_ERR_TOO_MANY_ARGS;
}

PyObject *raise_engine_message(int status, const char *message)
{
    if (message == NULL || message[0] == '\0')
        message = pymic_status_name(status);
    PyErr_SetString(is_value_status(status) ? OffloadValueError : OffloadError, message);
    return NULL;
}

PyObject *raise_engine_error(int status)
{
    return raise_engine_message(status, pymic_last_error());
}

/* A byte count given as a float: pyMIC programs written with true division
 * compute `nbytes / 2`, and pyMIC accepted that.  Integral values become
 * ints; anything else is refused. */
static PyObject *integral_float(PyObject *obj, const char *name)
{
    double value = PyFloat_AsDouble(obj);
    if (value == -1.0 && PyErr_Occurred())
        return NULL;
    if (!isfinite(value) || value != floor(value)) {
        PyErr_Format(OffloadValueError, "%s must be a whole number of bytes, got %R", name, obj);
        return NULL;
    }
    return PyLong_FromDouble(value);
}

int parse_size_arg(PyObject *obj, const char *name, int allow_zero, size_t *out)
{
    PyObject *number;
    if (PyLong_Check(obj)) {
        number = Py_NewRef(obj);
    } else if (PyFloat_Check(obj)) {
        number = integral_float(obj, name);
    } else if (PyIndex_Check(obj)) {
        number = PyNumber_Index(obj); /* NumPy integers */
    } else {
        PyErr_Format(PyExc_TypeError, "%s must be an int, not %.100s", name,
                     Py_TYPE(obj)->tp_name);
        return -1;
    }
    if (number == NULL)
        return -1;
    int overflow = 0;
    long long value = PyLong_AsLongLongAndOverflow(number, &overflow);
    Py_DECREF(number);
    if (value == -1 && PyErr_Occurred())
        return -1;
    if (overflow > 0) {
        PyErr_Format(OffloadValueError, "%s is too large", name);
        return -1;
    }
    if (overflow < 0 || value < 0 || (value == 0 && !allow_zero)) {
        PyErr_Format(OffloadValueError, "%s must be %s, got %S", name,
                     allow_zero ? ">= 0" : "> 0", obj);
        return -1;
    }
    *out = (size_t)value;
    return 0;
}
