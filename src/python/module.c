/*
 * module.c -- pymic._engine: module functions and type registration.
 *
 * The module-level functions expose engine-wide facts (devices, versions,
 * debug level, spin window) to the pymic package, which wraps them in the
 * classes a program sees.
 */
#include "engine_module.h"

#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

PyTypeObject *ndarray_type;
PyTypeObject *numpy_generic_type;
int debug_level;

/* An int argument (device number, debug level).  Out-of-range values raise
 * OverflowError instead of wrapping around to another device. */
static int parse_int_arg(PyObject *arg, int *out)
{
    long value = PyLong_AsLong(arg);
    if (value == -1 && PyErr_Occurred())
        return -1;
    if (value < INT_MIN || value > INT_MAX) {
        PyErr_SetString(PyExc_OverflowError, "Python int too large to convert to C int");
        return -1;
    }
    *out = (int)value;
    return 0;
}

PyDoc_STRVAR(init_doc,
"init()\n"
"--\n"
"\n"
"Initialise the engine (idempotent), reading PYMIC_DEVICES and friends.\n"
"\n"
"Returns\n"
"-------\n"
"None\n"
"\n"
"Raises\n"
"------\n"
"OffloadError\n"
"    If the environment describes an invalid device layout.\n");

static PyObject *module_init_engine(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    return none_or_engine_error(pymic_init());
}

PyDoc_STRVAR(device_count_doc,
"device_count()\n"
"--\n"
"\n"
"Number of offload devices.\n"
"\n"
"Returns\n"
"-------\n"
"int\n"
"    How many devices the engine runs (at least 1).\n");

static PyObject *module_device_count(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    int count = 0;
    int status = pymic_device_count(&count);
    if (status != PYMIC_OK)
        return raise_engine_error(status);
    return PyLong_FromLong(count);
}

PyDoc_STRVAR(local_device_index_doc,
"local_device_index()\n"
"--\n"
"\n"
"Number of the device this process calls its own (pymic_local_device_index).\n"
"\n"
"Returns\n"
"-------\n"
"int\n"
"    Under host:auto, the MPI local rank; else the rank's block of devices.\n"
"\n"
"Raises\n"
"------\n"
"OffloadError\n"
"    If the MPI launcher's variables are malformed.\n");

static PyObject *module_local_device_index(PyObject *Py_UNUSED(module),
                                           PyObject *Py_UNUSED(ignored))
{
    int device = 0;
    int status = pymic_local_device_index(&device);
    if (status != PYMIC_OK)
        return raise_engine_error(status);
    return PyLong_FromLong(device);
}

PyDoc_STRVAR(device_info_doc,
"device_info(device_id)\n"
"--\n"
"\n"
"Describe one device.\n"
"\n"
"Parameters\n"
"----------\n"
"device_id : int\n"
"    Device number.\n"
"\n"
"Returns\n"
"-------\n"
"dict\n"
"    Keys ``id``, ``kind``, ``name``, ``ncores``, ``memory_total``,\n"
"    ``memory_used``, ``cpus`` (list of CPU numbers) and\n"
"    ``host_addressable`` (bool: this process can use the memory).\n"
"\n"
"Raises\n"
"------\n"
"OffloadError\n"
"    For an unknown device number.\n");

static PyObject *module_device_info(PyObject *Py_UNUSED(module), PyObject *arg)
{
    int device;
    if (parse_int_arg(arg, &device) < 0)
        return NULL;
    pymic_device_info info;
    int status = pymic_device_get_info(device, &info);
    if (status != PYMIC_OK)
        return raise_engine_error(status);
    /* Linux's default CPU set size bounds the CPU numbers a device can own. */
    int cpus[1024];
    int count = 0;
    status = pymic_device_get_cpus(device, cpus, (int)(sizeof(cpus) / sizeof(cpus[0])), &count);
    if (status != PYMIC_OK)
        return raise_engine_error(status);
    if (count > (int)(sizeof(cpus) / sizeof(cpus[0])))
        count = (int)(sizeof(cpus) / sizeof(cpus[0]));
    PyObject *cpu_list = PyList_New(count);
    for (int i = 0; cpu_list != NULL && i < count; i++) {
        PyObject *number = PyLong_FromLong(cpus[i]);
        if (number == NULL) {
            Py_CLEAR(cpu_list);
            break;
        }
        PyList_SET_ITEM(cpu_list, i, number);
    }
    if (cpu_list == NULL)
        return NULL;
    return Py_BuildValue("{s:i,s:s,s:s,s:i,s:K,s:K,s:N,s:O}", "id", info.id, "kind",
                         info.kind, "name", info.name, "ncores", info.ncores, "memory_total",
                         (unsigned long long)info.memory_total, "memory_used",
                         (unsigned long long)info.memory_used, "cpus", cpu_list,
                         "host_addressable", info.host_addressable ? Py_True : Py_False);
}

PyDoc_STRVAR(device_sync_doc,
"device_sync(device_id)\n"
"--\n"
"\n"
"Block (GIL released) until every stream of a device has drained.\n"
"\n"
"Parameters\n"
"----------\n"
"device_id : int\n"
"    Device number.\n"
"\n"
"Returns\n"
"-------\n"
"None\n"
"\n"
"Raises\n"
"------\n"
"KeyboardInterrupt\n"
"    On Ctrl-C while waiting; the device's work goes on.\n");

static PyObject *module_device_sync(PyObject *Py_UNUSED(module), PyObject *arg)
{
    int device;
    if (parse_int_arg(arg, &device) < 0)
        return NULL;
    wait_target target = {.kind = WAIT_DEVICE, .device = device};
    if (wait_status_to_exception(wait_interruptibly(&target)) < 0)
        return NULL;
    Py_RETURN_NONE;
}

PyDoc_STRVAR(device_reset_doc,
"device_reset(device_id)\n"
"--\n"
"\n"
"Start a device afresh (a new device process on a process device).\n"
"\n"
"Parameters\n"
"----------\n"
"device_id : int\n"
"    Device number.\n"
"\n"
"Returns\n"
"-------\n"
"None\n");

static PyObject *module_device_reset(PyObject *Py_UNUSED(module), PyObject *arg)
{
    int device;
    if (parse_int_arg(arg, &device) < 0)
        return NULL;
    int status;
    Py_BEGIN_ALLOW_THREADS
    status = pymic_device_reset(device);
    Py_END_ALLOW_THREADS
    return none_or_engine_error(status);
}

PyDoc_STRVAR(device_lost_doc,
"device_lost(device_id)\n"
"--\n"
"\n"
"Why a device is lost (its device process died), or None.\n"
"\n"
"Parameters\n"
"----------\n"
"device_id : int\n"
"    Device number.\n"
"\n"
"Returns\n"
"-------\n"
"str or None\n");

static PyObject *module_device_lost(PyObject *Py_UNUSED(module), PyObject *arg)
{
    int device;
    if (parse_int_arg(arg, &device) < 0)
        return NULL;
    char why[256];
    int lost = pymic_device_lost(device, why, sizeof why);
    if (lost < 0)
        return raise_engine_error(lost);
    if (!lost)
        Py_RETURN_NONE;
    return PyUnicode_FromString(why);
}

PyDoc_STRVAR(set_numpy_types_doc,
"set_numpy_types(ndarray, generic)\n"
"--\n"
"\n"
"Tell invoke which types are NumPy arrays and NumPy scalars.\n"
"\n"
"Parameters\n"
"----------\n"
"ndarray : type\n"
"    ``numpy.ndarray``.\n"
"generic : type\n"
"    ``numpy.generic``.\n"
"\n"
"Returns\n"
"-------\n"
"None\n");

static PyObject *module_set_numpy_types(PyObject *Py_UNUSED(module), PyObject *args)
{
    PyObject *array_type, *generic_type;
    if (!PyArg_ParseTuple(args, "O!O!:set_numpy_types", &PyType_Type, &array_type,
                          &PyType_Type, &generic_type))
        return NULL;
    Py_XSETREF(ndarray_type, (PyTypeObject *)Py_NewRef(array_type));
    Py_XSETREF(numpy_generic_type, (PyTypeObject *)Py_NewRef(generic_type));
    Py_RETURN_NONE;
}

PyDoc_STRVAR(set_debug_level_doc,
"set_debug_level(level)\n"
"--\n"
"\n"
"Set the debug level of the engine and of this module.\n"
"\n"
"Parameters\n"
"----------\n"
"level : int\n"
"    0 silences; >= 1 prints engine and library messages, >= 2 also one\n"
"    line per invoke, all on stderr prefixed ``PYMIC:``.\n"
"\n"
"Returns\n"
"-------\n"
"None\n");

static PyObject *module_set_debug_level(PyObject *Py_UNUSED(module), PyObject *arg)
{
    int level;
    if (parse_int_arg(arg, &level) < 0)
        return NULL;
    int status = pymic_set_debug_level(level);
    if (status != PYMIC_OK)
        return raise_engine_error(status);
    debug_level = level;
    Py_RETURN_NONE;
}

PyDoc_STRVAR(get_debug_level_doc,
"get_debug_level()\n"
"--\n"
"\n"
"Current debug level.\n"
"\n"
"Returns\n"
"-------\n"
"int\n"
"    The level set by PYMIC_DEBUG or ``set_debug_level``.\n");

static PyObject *module_get_debug_level(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    return PyLong_FromLong(debug_level);
}

PyDoc_STRVAR(set_spin_ns_doc,
"set_spin_ns(ns)\n"
"--\n"
"\n"
"Set how long waiters spin before they sleep.\n"
"\n"
"Parameters\n"
"----------\n"
"ns : int\n"
"    Spin window in nanoseconds; 0 sleeps at once.\n"
"\n"
"Returns\n"
"-------\n"
"None\n");

static PyObject *module_set_spin_ns(PyObject *Py_UNUSED(module), PyObject *arg)
{
    unsigned long long ns = PyLong_AsUnsignedLongLong(arg);
    if (ns == (unsigned long long)-1 && PyErr_Occurred())
        return NULL;
    return none_or_engine_error(pymic_set_spin_ns((uint64_t)ns));
}

PyDoc_STRVAR(get_spin_ns_doc,
"get_spin_ns()\n"
"--\n"
"\n"
"Current spin window of waiters.\n"
"\n"
"Returns\n"
"-------\n"
"int\n"
"    Nanoseconds a waiter spins before it sleeps.\n");

static PyObject *module_get_spin_ns(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    uint64_t ns = 0;
    int status = pymic_get_spin_ns(&ns);
    if (status != PYMIC_OK)
        return raise_engine_error(status);
    return PyLong_FromUnsignedLongLong(ns);
}

PyDoc_STRVAR(version_doc,
"version()\n"
"--\n"
"\n"
"Version of the loaded libpymic.\n"
"\n"
"Returns\n"
"-------\n"
"tuple of int\n"
"    ``(major, minor, patch)``.\n");

static PyObject *module_version(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    int version = pymic_version();
    return Py_BuildValue("(iii)", version / 10000, version / 100 % 100, version % 100);
}

PyDoc_STRVAR(drain_closing_doc,
"drain_closing()\n"
"--\n"
"\n"
"Block (GIL released) until the commands of every destroyed stream have\n"
"run, and release the host buffers they used.\n"
"\n"
"Returns\n"
"-------\n"
"None\n"
"\n"
"Raises\n"
"------\n"
"KeyboardInterrupt\n"
"    On Ctrl-C; what was not drained stays kept alive.\n");

static PyObject *module_drain_closing(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    if (closing_drain() < 0)
        return NULL;
    Py_RETURN_NONE;
}

PyDoc_STRVAR(after_fork_child_doc,
"after_fork_child()\n"
"--\n"
"\n"
"In a child of fork(): drop the host buffers kept for the parent's\n"
"destroyed streams (their commands never run in the child).\n"
"\n"
"Returns\n"
"-------\n"
"None\n");

static PyObject *module_after_fork_child(PyObject *Py_UNUSED(module),
                                         PyObject *Py_UNUSED(ignored))
{
    closing_after_fork_child();
    Py_RETURN_NONE;
}

PyDoc_STRVAR(fail_exit_status_doc,
"fail_exit_status()\n"
"--\n"
"\n"
"Make the process end with exit status 1 whatever Python ends with\n"
"(the atexit hook calls it after printing failures nobody was told of).\n"
"Python's exit handlers and finalisation still run first.\n"
"\n"
"Returns\n"
"-------\n"
"None\n");

static volatile sig_atomic_t exit_failed;

/* A C exit handler runs after Python has finalised (Python's own atexit
 * handlers cannot change the status Python exits with). */
static void exit_with_failure(void)
{
    if (exit_failed) {
        fflush(NULL);
        _exit(1);
    }
}

static PyObject *module_fail_exit_status(PyObject *Py_UNUSED(module),
                                         PyObject *Py_UNUSED(ignored))
{
    static int registered;
    if (!registered) {
        if (atexit(exit_with_failure) != 0) {
            PyErr_SetString(PyExc_RuntimeError, "cannot register an exit handler");
            return NULL;
        }
        registered = 1;
    }
    exit_failed = 1;
    Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"fail_exit_status", module_fail_exit_status, METH_NOARGS, fail_exit_status_doc},
    {"drain_closing", module_drain_closing, METH_NOARGS, drain_closing_doc},
    {"after_fork_child", module_after_fork_child, METH_NOARGS, after_fork_child_doc},
    {"init", module_init_engine, METH_NOARGS, init_doc},
    {"device_count", module_device_count, METH_NOARGS, device_count_doc},
    {"local_device_index", module_local_device_index, METH_NOARGS, local_device_index_doc},
    {"device_info", module_device_info, METH_O, device_info_doc},
    {"device_sync", module_device_sync, METH_O, device_sync_doc},
    {"device_reset", module_device_reset, METH_O, device_reset_doc},
    {"device_lost", module_device_lost, METH_O, device_lost_doc},
    {"set_numpy_types", module_set_numpy_types, METH_VARARGS, set_numpy_types_doc},
    {"set_debug_level", module_set_debug_level, METH_O, set_debug_level_doc},
    {"get_debug_level", module_get_debug_level, METH_NOARGS, get_debug_level_doc},
    {"set_spin_ns", module_set_spin_ns, METH_O, set_spin_ns_doc},
    {"get_spin_ns", module_get_spin_ns, METH_NOARGS, get_spin_ns_doc},
    {"version", module_version, METH_NOARGS, version_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef engine_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "pymic._engine",
    .m_doc = "C bridge between the pymic package and libpymic (internal).",
    .m_size = -1,
    .m_methods = module_methods,
};

static int add_type(PyObject *module, const char *name, PyTypeObject *type)
{
    if (PyType_Ready(type) < 0)
        return -1;
    return PyModule_AddObjectRef(module, name, (PyObject *)type);
}

PyMODINIT_FUNC PyInit__engine(void)
{
    PyObject *module = PyModule_Create(&engine_module);
    if (module == NULL)
        return NULL;
    if (errors_module_init(module) < 0 || add_type(module, "Stream", &Stream_Type) < 0 ||
        add_type(module, "DevicePointer", &DevicePointer_Type) < 0 ||
        add_type(module, "ArrayBase", &ArrayBase_Type) < 0 ||
        add_type(module, "Event", &Event_Type) < 0 || library_module_init(module) < 0 ||
        trace_module_init(module) < 0 || signature_module_init(module) < 0 ||
        dlpack_module_init(module) < 0 ||
        PyModule_AddIntConstant(module, "MAX_KERNEL_ARGS", PYMIC_MAX_KERNEL_ARGS) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    /* The engine reads PYMIC_DEBUG itself; mirror its level here. */
    int level = 0;
    if (pymic_get_debug_level(&level) == PYMIC_OK)
        debug_level = level;
    return module;
}
