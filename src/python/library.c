/*
 * library.c -- loaded kernel libraries and kernel handles.
 *
 * A kernel handle behaves like pyMIC's tuple (name, address, device,
 * library).  It is a struct sequence -- a real tuple subclass of length 4 --
 * that carries one hidden field, a KernelRef holding the engine's kernel
 * pointer.  invoke reads that field directly, and because only this file
 * creates KernelRefs a forged tuple can never reach the engine.
 */
#include "engine_module.h"

#include <string.h>

PyTypeObject *KernelHandle_Type;

/* ---------------------------------------------------------- KernelRef */

static void kernelref_dealloc(KernelRefObject *self)
{
    Py_XDECREF(self->signature);
    Py_XDECREF(self->library);
    PyObject_Free(self);
}

static PyObject *kernelref_repr(KernelRefObject *self)
{
    return PyUnicode_FromFormat("<pymic kernel reference %s>", pymic_kernel_name(self->kernel));
}

PyTypeObject KernelRef_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "pymic._engine.KernelRef",
    .tp_basicsize = sizeof(KernelRefObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Opaque engine reference to a kernel (internal).",
    .tp_dealloc = (destructor)kernelref_dealloc,
    .tp_repr = (reprfunc)kernelref_repr,
};

/* ------------------------------------------------------------ Library */

static PyObject *library_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"device_id", "path", "fd", "checked", NULL};
    int device = 0, fd = -1, checked = 0;
    PyObject *path_obj = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "iO&|ip:Library", keywords, &device,
                                     PyUnicode_FSConverter, &path_obj, &fd, &checked))
        return NULL;
    LibraryObject *self = (LibraryObject *)type->tp_alloc(type, 0);
    if (self == NULL) {
        Py_DECREF(path_obj);
        return NULL;
    }
    const char *path = PyBytes_AS_STRING(path_obj);
    int status = fd < 0     ? pymic_library_load(device, path, &self->handle)
                 : checked ? pymic_library_load_fd(device, fd, path, &self->handle)
                           : pymic_library_load_opened(device, fd, path, &self->handle);
    Py_DECREF(path_obj);
    if (status != PYMIC_OK) {
        self->handle = NULL;
        Py_DECREF(self);
        return raise_engine_error(status);
    }
    return (PyObject *)self;
}

static void library_dealloc(LibraryObject *self)
{
    /* Kernel handles hold their library, so no handle outlives this.
     * Unloading returns at once; the engine closes the shared object once
     * the invokes queued on the device have run. */
    if (self->handle != NULL)
        pymic_library_unload(self->handle);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *library_get_path(LibraryObject *self, void *Py_UNUSED(closure))
{
    return PyUnicode_DecodeFSDefault(pymic_library_path(self->handle));
}

static PyObject *library_get_device_id(LibraryObject *self, void *Py_UNUSED(closure))
{
    return PyLong_FromLong(pymic_library_device(self->handle));
}

PyDoc_STRVAR(library_kernel_doc,
"kernel(name, device, owner)\n"
"--\n"
"\n"
"Look up an exported function and build its kernel handle.\n"
"\n"
"Parameters\n"
"----------\n"
"name : str\n"
"    Name of the exported function.\n"
"device : object\n"
"    Stored as the handle's element 2.\n"
"owner : object\n"
"    Stored as the handle's element 3 (the OffloadLibrary).\n"
"\n"
"Returns\n"
"-------\n"
"pymic.kernel\n"
"    Tuple-like handle ``(name, address, device, library)``.\n"
"\n"
"Raises\n"
"------\n"
"ValueError\n"
"    If `name` contains a NUL character.\n"
"OffloadError\n"
"    If the library does not export `name`.\n");

static PyObject *library_kernel(LibraryObject *self, PyObject *args)
{
    PyObject *name_obj, *device_obj, *owner_obj;
    if (!PyArg_ParseTuple(args, "UOO:kernel", &name_obj, &device_obj, &owner_obj))
        return NULL;
    Py_ssize_t length = 0;
    const char *name = PyUnicode_AsUTF8AndSize(name_obj, &length);
    if (name == NULL)
        return NULL;
    /* The engine takes a C string: a NUL inside would silently cut the
     * name and find another kernel ('empty\0junk' -> 'empty'). */
    if ((size_t)length != strlen(name)) {
        PyErr_Format(PyExc_ValueError, "kernel name %R contains a NUL character", name_obj);
        return NULL;
    }
    pymic_kernel *kernel = NULL;
    int status = pymic_kernel_find(self->handle, name, &kernel);
    if (status != PYMIC_OK)
        return raise_engine_error(status);
    KernelRefObject *ref = PyObject_New(KernelRefObject, &KernelRef_Type);
    if (ref == NULL)
        return NULL;
    ref->kernel = kernel;
    ref->library = Py_NewRef(self);
    ref->signature = NULL; /* unchecked until declared */
    PyObject *address = PyLong_FromVoidPtr(pymic_kernel_address(kernel));
    PyObject *handle = PyStructSequence_New(KernelHandle_Type);
    if (address == NULL || handle == NULL) {
        Py_XDECREF(address);
        Py_XDECREF(handle);
        Py_DECREF(ref);
        return NULL;
    }
    PyStructSequence_SetItem(handle, 0, Py_NewRef(name_obj));
    PyStructSequence_SetItem(handle, 1, address);
    PyStructSequence_SetItem(handle, 2, Py_NewRef(device_obj));
    PyStructSequence_SetItem(handle, 3, Py_NewRef(owner_obj));
    PyStructSequence_SetItem(handle, KERNEL_HANDLE_REF_INDEX, (PyObject *)ref);
    return handle;
}

static PyMethodDef library_methods[] = {
    {"kernel", (PyCFunction)library_kernel, METH_VARARGS, library_kernel_doc},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef library_getset[] = {
    {"path", (getter)library_get_path, NULL, "str: file the library was loaded from.", NULL},
    {"device_id", (getter)library_get_device_id, NULL,
     "int: number of the device the library is loaded on.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

PyDoc_STRVAR(library_type_doc,
"Library(device_id, path, fd=-1, checked=False)\n"
"--\n"
"\n"
"A shared object loaded on a device (engine side of OffloadLibrary).\n"
"\n"
"Parameters\n"
"----------\n"
"device_id : int\n"
"    Device to load the library on.\n"
"path : str or os.PathLike\n"
"    File to load (opened once; the device loads that open file).\n"
"fd : int\n"
"    If not negative, a descriptor of the file `path` names, to load\n"
"    instead of opening `path` again: the device runs exactly that file\n"
"    (loaded by `path`, so that $ORIGIN names its directory, when the\n"
"    loader's object for `path` is that file).  The caller keeps the\n"
"    descriptor.\n"
"checked : bool\n"
"    With `fd`: the caller checked the open file (the compile cache), so\n"
"    it is loaded only through the descriptor, never by a name; `path`\n"
"    only names it.\n"
"\n"
"Raises\n"
"------\n"
"OffloadError\n"
"    Naming the file and the loader's reason if it cannot be loaded.\n");

PyTypeObject Library_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "pymic._engine.Library",
    .tp_basicsize = sizeof(LibraryObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = library_type_doc,
    .tp_new = library_new,
    .tp_dealloc = (destructor)library_dealloc,
    .tp_methods = library_methods,
    .tp_getset = library_getset,
};

/* ------------------------------------------------------ kernel handle */

static PyStructSequence_Field kernel_handle_fields[] = {
    {"name", "str: name of the kernel function"},
    {"address", "int: the function's address on the device"},
    {"device", "OffloadDevice: the device the library is loaded on"},
    {"library", "OffloadLibrary: the library exporting the kernel"},
    {"_ref", "engine reference used by invoke (internal)"},
    {NULL, NULL},
};

static PyStructSequence_Desc kernel_handle_desc = {
    "pymic.kernel",
    "Handle of a kernel, as returned by ``library.<name>``.\n"
    "\n"
    "Behaves like pyMIC's tuple ``(name, address, device, library)``:\n"
    "``k[0]`` is the name, ``k[1]`` the function's address on the device,\n"
    "``k[2]`` the device and ``k[3]`` the library.  Pass it as the first\n"
    "argument of :meth:`OffloadStream.invoke`.",
    kernel_handle_fields,
    KERNEL_HANDLE_VISIBLE,
};

int library_module_init(PyObject *module)
{
    if (PyType_Ready(&KernelRef_Type) < 0 || PyType_Ready(&Library_Type) < 0)
        return -1;
    KernelHandle_Type = PyStructSequence_NewType(&kernel_handle_desc);
    if (KernelHandle_Type == NULL)
        return -1;
    if (PyModule_AddObjectRef(module, "Library", (PyObject *)&Library_Type) < 0)
        return -1;
    return PyModule_AddObjectRef(module, "KernelHandle", (PyObject *)KernelHandle_Type);
}
