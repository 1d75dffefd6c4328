/*
 * signature.c -- declared kernel signatures, checked by every invoke.
 *
 * A kernel receives one pointer per argument and cannot tell what it was
 * given: a float32 array passed to a `double *` kernel is read past its
 * end.  When a kernel's C prototype is known (load_source parses it,
 * OffloadLibrary.declare takes it), the Python layer turns it into a
 * Signature -- per parameter the element type it points to and whether it
 * points to const -- and hangs it on the kernel handle.  invoke then checks
 * each argument's element type against it while converting the arguments,
 * before anything is enqueued.  The check is a table compare per argument:
 * every argument's element type is known as a small code without looking
 * anything up (OffloadArrays cache theirs in ArrayBase).
 */
#include "engine_module.h"

#include <string.h>

/* Names of the codes, in enum order: what Python maps C types to and what
 * messages print. */
static const char *const code_names[SIG_NCODES] = {
    [SIG_ANY] = "any", [SIG_BOOL] = "bool", [SIG_INT8] = "int8", [SIG_UINT8] = "uint8",
    [SIG_INT16] = "int16", [SIG_UINT16] = "uint16", [SIG_INT32] = "int32",
    [SIG_UINT32] = "uint32", [SIG_INT64] = "int64", [SIG_UINT64] = "uint64",
    [SIG_FLOAT16] = "float16", [SIG_FLOAT32] = "float32", [SIG_FLOAT64] = "float64",
    [SIG_LONGDOUBLE] = "longdouble", [SIG_COMPLEX64] = "complex64",
    [SIG_COMPLEX128] = "complex128", [SIG_CLONGDOUBLE] = "clongdouble",
    [SIG_CHAR] = "char", [SIG_OTHER] = "another type",
};

/* ------------------------------------------------------------ type codes */

/* The code of a signed or unsigned integer of `size` bytes. */
static unsigned char integer_code(size_t size, int is_unsigned)
{
    switch (size) {
    case 1: return is_unsigned ? SIG_UINT8 : SIG_INT8;
    case 2: return is_unsigned ? SIG_UINT16 : SIG_INT16;
    case 4: return is_unsigned ? SIG_UINT32 : SIG_INT32;
    case 8: return is_unsigned ? SIG_UINT64 : SIG_INT64;
    default: return SIG_OTHER;
    }
}

unsigned char signature_code_of_format(const char *format)
{
    if (format == NULL)
        return SIG_UINT8; /* PyBUF_SIMPLE: unsigned bytes */
    /* Native order (no prefix, '@', '=', and '<' here) reads as written;
     * a byte-swapped array is no C type at all. */
    if (*format == '@' || *format == '=' || *format == '^')
        format++;
    else if (*format == '<' || *format == '>' || *format == '!') {
        int little = *format == '<';
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
        if (!little)
            return SIG_OTHER;
#else
        if (little)
            return SIG_OTHER;
#endif
        format++;
    }
    if (format[0] == 'Z' && format[1] != '\0' && format[2] == '\0') {
        switch (format[1]) {
        case 'f': return SIG_COMPLEX64;
        case 'd': return SIG_COMPLEX128;
        case 'g': return SIG_CLONGDOUBLE;
        default: return SIG_OTHER;
        }
    }
    if (format[0] == '\0' || format[1] != '\0')
        return SIG_OTHER; /* structured, sub-arrays, ... */
    switch (format[0]) {
    case '?': return SIG_BOOL;
    case 'b': case 'c': return SIG_INT8;
    case 'B': return SIG_UINT8;
    case 'h': return integer_code(sizeof(short), 0);
    case 'H': return integer_code(sizeof(short), 1);
    case 'i': return integer_code(sizeof(int), 0);
    case 'I': return integer_code(sizeof(int), 1);
    case 'l': return integer_code(sizeof(long), 0);
    case 'L': return integer_code(sizeof(long), 1);
    case 'q': return integer_code(sizeof(long long), 0);
    case 'Q': return integer_code(sizeof(long long), 1);
    case 'n': return integer_code(sizeof(Py_ssize_t), 0);
    case 'N': return integer_code(sizeof(size_t), 1);
    case 'e': return SIG_FLOAT16;
    case 'f': return SIG_FLOAT32;
    case 'd': return SIG_FLOAT64;
    case 'g': return SIG_LONGDOUBLE;
    default: return SIG_OTHER;
    }
}

/* The code of a numpy.dtype, from its kind, itemsize and byte order (only
 * on an OffloadArray's first checked invoke: the result is cached). */
static int code_of_dtype(PyObject *dtype, unsigned char *code)
{
    PyObject *kind = PyObject_GetAttrString(dtype, "kind");
    PyObject *itemsize = kind ? PyObject_GetAttrString(dtype, "itemsize") : NULL;
    PyObject *byteorder = itemsize ? PyObject_GetAttrString(dtype, "byteorder") : NULL;
    int rc = -1;
    if (byteorder != NULL) {
        const char *k = PyUnicode_Check(kind) ? PyUnicode_AsUTF8(kind) : NULL;
        const char *order = PyUnicode_Check(byteorder) ? PyUnicode_AsUTF8(byteorder) : NULL;
        Py_ssize_t size = PyLong_AsSsize_t(itemsize);
        if (k != NULL && order != NULL && !(size == -1 && PyErr_Occurred())) {
            rc = 0;
            *code = SIG_OTHER;
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
            const char swapped = '>';
#else
            const char swapped = '<';
#endif
            if (order[0] != swapped) {
                switch (k[0]) {
                case 'b': *code = size == 1 ? SIG_BOOL : SIG_OTHER; break;
                case 'i': *code = integer_code((size_t)size, 0); break;
                case 'u': *code = integer_code((size_t)size, 1); break;
                case 'f':
                    *code = size == 2 ? SIG_FLOAT16 : size == 4 ? SIG_FLOAT32
                          : size == 8 ? SIG_FLOAT64
                          : size == (Py_ssize_t)sizeof(long double) ? SIG_LONGDOUBLE
                          : SIG_OTHER;
                    break;
                case 'c':
                    *code = size == 8 ? SIG_COMPLEX64 : size == 16 ? SIG_COMPLEX128
                          : size == 2 * (Py_ssize_t)sizeof(long double) ? SIG_CLONGDOUBLE
                          : SIG_OTHER;
                    break;
                default: break;
                }
            }
        } else if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_TypeError, "invoke: an OffloadArray's dtype is not a dtype");
        }
    }
    Py_XDECREF(kind);
    Py_XDECREF(itemsize);
    Py_XDECREF(byteorder);
    return rc;
}

int signature_array_code(PyObject *array, unsigned char *code)
{
    ArrayBaseObject *base = (ArrayBaseObject *)array;
    if (base->dtype_code != 0) {
        *code = (unsigned char)(base->dtype_code - 1);
        return 0;
    }
    PyObject *dtype = PyObject_GetAttrString(array, "dtype");
    if (dtype == NULL)
        return -1;
    int rc = code_of_dtype(dtype, code);
    Py_DECREF(dtype);
    if (rc == 0)
        base->dtype_code = (unsigned char)(*code + 1);
    return rc;
}

/* -------------------------------------------------------------- checking */

static int accepts(unsigned char expected, unsigned char given)
{
    if (expected == SIG_ANY || given == SIG_ANY || expected == given)
        return 1;
    /* Plain char is signed or unsigned as the platform likes. */
    return expected == SIG_CHAR && (given == SIG_INT8 || given == SIG_UINT8);
}

/* "an ndarray of float32", "a Python int (passed as int64)", ... */
static PyObject *describe_given(PyObject *obj, unsigned char given)
{
    const char *name = code_names[given];
    PyTypeObject *type = Py_TYPE(obj);
    if (PyType_IsSubtype(type, &ArrayBase_Type))
        return PyUnicode_FromFormat("an OffloadArray of %s", name);
    if (ndarray_type != NULL && PyType_IsSubtype(type, ndarray_type))
        return PyUnicode_FromFormat("an ndarray of %s", name);
    if (type == &PyBool_Type)
        return PyUnicode_FromString("a Python bool (passed as bool)");
    if (PyLong_Check(obj) || PyFloat_Check(obj) || PyComplex_Check(obj))
        return PyUnicode_FromFormat("a Python %s (passed as %s)", type->tp_name, name);
    return PyUnicode_FromFormat("a %s (%s)", type->tp_name, name);
}

int signature_mismatch(const SignatureObject *sig, int index, PyObject *obj,
                       unsigned char given)
{
    PyObject *param = PyTuple_GET_ITEM(sig->params, index);
    PyObject *described = describe_given(obj, given);
    if (described == NULL)
        return -1;
    const char *expected = code_names[sig->codes[index]];
    PyObject *hint = PyUnicode_FromString("");
    if (hint == NULL) {
        Py_DECREF(described);
        return -1;
    }
    unsigned char want = sig->codes[index];
    /* Hints name NumPy types as every supported NumPy spells them:
     * numpy.bool exists only from NumPy 2 on (numpy.bool_ everywhere), and
     * plain char takes either 8-bit integer (numpy.char is a module). */
    const char *numpy_type = want == SIG_BOOL ? "bool_" : expected;
    int nameable = want != SIG_CHAR && want != SIG_OTHER && want != SIG_ANY;
    if (PyLong_Check(obj) || PyFloat_Check(obj) || PyComplex_Check(obj)) {
        /* What to pass instead: the Python type that travels as the
         * parameter's type, else the NumPy scalar type. */
        if (want == SIG_FLOAT64)
            Py_SETREF(hint, PyUnicode_FromString("; pass a float"));
        else if (want == SIG_INT64)
            Py_SETREF(hint, PyUnicode_FromString("; pass an int"));
        else if (want == SIG_COMPLEX128)
            Py_SETREF(hint, PyUnicode_FromString("; pass a complex"));
        else if (want == SIG_BOOL)
            Py_SETREF(hint, PyUnicode_FromString("; pass True or False"));
        else if (want == SIG_CHAR)
            Py_SETREF(hint, PyUnicode_FromString("; pass numpy.int8(...) or numpy.uint8(...)"));
        else if (nameable)
            Py_SETREF(hint, PyUnicode_FromFormat("; pass numpy.%s(...)", numpy_type));
    } else if (ndarray_type != NULL && PyType_IsSubtype(Py_TYPE(obj), ndarray_type)) {
        if (want == SIG_CHAR)
            Py_SETREF(hint, PyUnicode_FromString(
                "; convert it with .astype(numpy.int8) or .astype(numpy.uint8)"));
        else if (nameable)
            Py_SETREF(hint, PyUnicode_FromFormat("; convert it with .astype(numpy.%s)",
                                                 numpy_type));
    }
    if (hint == NULL) {
        Py_DECREF(described);
        return -1;
    }
    PyErr_Format(PyExc_TypeError, "%U(): argument %d '%U' is %U, the kernel takes %U (%s)%U",
                 sig->name, index + 1, PyTuple_GET_ITEM(param, 0), described,
                 PyTuple_GET_ITEM(param, 1), expected, hint);
    Py_DECREF(described);
    Py_DECREF(hint);
    return -1;
}

int signature_check(const SignatureObject *sig, int index, PyObject *obj, unsigned char given)
{
    if (accepts(sig->codes[index], given))
        return 0;
    return signature_mismatch(sig, index, obj, given);
}

int signature_check_count(const SignatureObject *sig, Py_ssize_t nargs)
{
    if (nargs == sig->nparams)
        return 0;
    PyObject *spelled = PyList_New(0);
    if (spelled == NULL)
        return -1;
    for (int i = 0; i < sig->nparams; i++) {
        PyObject *param = PyTuple_GET_ITEM(sig->params, i);
        PyObject *text = PyUnicode_FromFormat("%U%U", PyTuple_GET_ITEM(param, 1),
                                              PyTuple_GET_ITEM(param, 0));
        if (text == NULL || PyList_Append(spelled, text) < 0) {
            Py_XDECREF(text);
            Py_DECREF(spelled);
            return -1;
        }
        Py_DECREF(text);
    }
    PyObject *separator = PyUnicode_FromString(", ");
    PyObject *joined = separator ? PyUnicode_Join(separator, spelled) : NULL;
    Py_XDECREF(separator);
    Py_DECREF(spelled);
    if (joined == NULL)
        return -1;
    PyErr_Format(PyExc_TypeError, "%U() takes %d argument%s (%U), %zd given", sig->name,
                 sig->nparams, sig->nparams == 1 ? "" : "s", joined, nargs);
    Py_DECREF(joined);
    return -1;
}

/* ------------------------------------------------------- Signature type */

static void signature_dealloc(SignatureObject *self)
{
    Py_XDECREF(self->name);
    Py_XDECREF(self->params);
    PyObject_Free(self);
}

static PyObject *signature_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"name", "params", NULL};
    PyObject *name, *params;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "UO!:Signature", keywords, &name,
                                     &PyTuple_Type, &params))
        return NULL;
    Py_ssize_t n = PyTuple_GET_SIZE(params);
    if (n > PYMIC_MAX_KERNEL_ARGS) {
        PyErr_Format(PyExc_ValueError, "%U: %zd parameters, at most %d are allowed", name, n,
                     PYMIC_MAX_KERNEL_ARGS);
        return NULL;
    }
    SignatureObject *self = PyObject_New(SignatureObject, type);
    if (self == NULL)
        return NULL;
    self->nparams = (int)n;
    self->name = Py_NewRef(name);
    self->params = NULL;
    PyObject *names = PyTuple_New(n);
    if (names == NULL) {
        Py_DECREF(self);
        return NULL;
    }
    self->params = names;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *param_name, *spelling;
        int code, is_const;
        if (!PyArg_ParseTuple(PyTuple_GET_ITEM(params, i), "UUip:Signature parameter",
                              &param_name, &spelling, &code, &is_const)) {
            Py_DECREF(self);
            return NULL;
        }
        if (code < 0 || code >= SIG_NCODES) {
            PyErr_Format(PyExc_ValueError, "Signature: unknown type code %d", code);
            Py_DECREF(self);
            return NULL;
        }
        self->codes[i] = (unsigned char)code;
        self->is_const[i] = (unsigned char)is_const;
        PyObject *pair = PyTuple_Pack(2, param_name, spelling);
        if (pair == NULL) {
            Py_DECREF(self);
            return NULL;
        }
        PyTuple_SET_ITEM(names, i, pair);
    }
    return (PyObject *)self;
}

static PyObject *signature_repr(SignatureObject *self)
{
    return PyUnicode_FromFormat("<pymic kernel signature %U, %d parameter(s)>", self->name,
                                self->nparams);
}

PyDoc_STRVAR(signature_doc,
"Signature(name, params)\n"
"--\n"
"\n"
"A kernel's declared parameters, in the form invoke checks (internal).\n"
"\n"
"Parameters\n"
"----------\n"
"name : str\n"
"    The kernel's name, for messages.\n"
"params : tuple of (str, str, int, bool)\n"
"    Per parameter: its name, its C type as written (``'const double *'``),\n"
"    the code of the element type it points to (``TYPE_CODES``) and\n"
"    whether it points to const (such ndarrays are not copied back).\n");

PyTypeObject Signature_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "pymic._engine.Signature",
    .tp_basicsize = sizeof(SignatureObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = signature_doc,
    .tp_new = signature_new,
    .tp_dealloc = (destructor)signature_dealloc,
    .tp_repr = (reprfunc)signature_repr,
};

/* ------------------------------------------------------ module functions */

PyDoc_STRVAR(set_kernel_signature_doc,
"set_kernel_signature(kernel, signature)\n"
"--\n"
"\n"
"Make every later invoke of `kernel` check its arguments (internal).\n"
"\n"
"Parameters\n"
"----------\n"
"kernel : pymic.kernel\n"
"    A kernel handle.\n"
"signature : Signature or None\n"
"    The declared parameters; None makes the kernel unchecked again.\n"
"\n"
"Returns\n"
"-------\n"
"None\n");

static PyObject *module_set_kernel_signature(PyObject *Py_UNUSED(module), PyObject *args)
{
    PyObject *handle, *signature;
    if (!PyArg_ParseTuple(args, "O!O:set_kernel_signature", KernelHandle_Type, &handle,
                          &signature))
        return NULL;
    if (signature != Py_None && !Py_IS_TYPE(signature, &Signature_Type)) {
        PyErr_Format(PyExc_TypeError, "expected a Signature or None, not %.100s",
                     Py_TYPE(signature)->tp_name);
        return NULL;
    }
    PyObject *ref = PyStructSequence_GET_ITEM(handle, KERNEL_HANDLE_REF_INDEX);
    if (ref == NULL || !Py_IS_TYPE(ref, &KernelRef_Type)) {
        PyErr_SetString(PyExc_TypeError, "not a kernel handle made by a library");
        return NULL;
    }
    KernelRefObject *kernel = (KernelRefObject *)ref;
    Py_XSETREF(kernel->signature, signature == Py_None ? NULL : Py_NewRef(signature));
    Py_RETURN_NONE;
}

static PyMethodDef signature_functions[] = {
    {"set_kernel_signature", module_set_kernel_signature, METH_VARARGS,
     set_kernel_signature_doc},
    {NULL, NULL, 0, NULL},
};

int signature_module_init(PyObject *module)
{
    if (PyType_Ready(&Signature_Type) < 0 ||
        PyModule_AddObjectRef(module, "Signature", (PyObject *)&Signature_Type) < 0 ||
        PyModule_AddFunctions(module, signature_functions) < 0)
        return -1;
    PyObject *codes = PyDict_New();
    if (codes == NULL)
        return -1;
    for (int code = 0; code < SIG_NCODES; code++) {
        PyObject *value = PyLong_FromLong(code);
        if (value == NULL || PyDict_SetItemString(codes, code_names[code], value) < 0) {
            Py_XDECREF(value);
            Py_DECREF(codes);
            return -1;
        }
        Py_DECREF(value);
    }
    int rc = PyModule_AddObjectRef(module, "TYPE_CODES", codes);
    Py_DECREF(codes);
    return rc;
}
