/*
 * dlpack.c -- DLPack capsules of OffloadArray device buffers.
 *
 * On a device whose memory this process can address (host and proc
 * devices) an OffloadArray's device buffer is ordinary memory of this
 * process, so another library (NumPy, PyTorch, JAX ...) may read and write
 * it in place.  DLPack is the protocol for that: __dlpack__ returns a
 * PyCapsule holding a DLManagedTensor (or, for consumers asking for
 * DLPack >= 1.0, a DLManagedTensorVersioned) that describes the buffer
 * and carries a deleter.  The tensor holds a reference to the device
 * pointer object owning the buffer, so the memory stays allocated for as
 * long as the consumer holds the tensor, whatever happens to the
 * OffloadArray; the deleter drops that reference (freeing the memory in
 * its stream's order if it was the last one).
 *
 * The structures below are DLPack's ABI (dlpack.h, v1.0), written out here
 * because only their layout matters.  Ordering with the array's stream
 * (the protocol's stream rule) is the Python layer's job: it synchronises
 * before asking for the capsule.
 */
#include "engine_module.h"

#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------ DLPack's ABI */

enum { DL_CPU = 1 };                       /* DLDeviceType kDLCPU          */
#define DL_FLAG_READ_ONLY (UINT64_C(1) << 0) /* DLPACK_FLAG_BITMASK_READ_ONLY */
#define DL_MAJOR 1
#define DL_MINOR 0

typedef struct {
    int32_t device_type;
    int32_t device_id;
} DLDevice;

typedef struct {
    uint8_t code; /* kDLInt 0, kDLUInt 1, kDLFloat 2, kDLComplex 5, kDLBool 6 */
    uint8_t bits;
    uint16_t lanes;
} DLDataType;

typedef struct {
    void *data;
    DLDevice device;
    int32_t ndim;
    DLDataType dtype;
    int64_t *shape;
    int64_t *strides; /* in elements */
    uint64_t byte_offset;
} DLTensor;

typedef struct DLManagedTensor {
    DLTensor dl_tensor;
    void *manager_ctx;
    void (*deleter)(struct DLManagedTensor *self);
} DLManagedTensor;

typedef struct {
    uint32_t major;
    uint32_t minor;
} DLPackVersion;

typedef struct DLManagedTensorVersioned {
    DLPackVersion version;
    void *manager_ctx;
    void (*deleter)(struct DLManagedTensorVersioned *self);
    uint64_t flags;
    DLTensor dl_tensor;
} DLManagedTensorVersioned;

/* ------------------------------------------------ one exported tensor */

/* Everything one export owns, in one allocation: the managed tensor the
 * consumer sees (either kind), shape and strides, and the reference that
 * keeps the device memory alive. */
typedef struct exported_tensor {
    union {
        DLManagedTensor legacy;
        DLManagedTensorVersioned versioned;
    } managed;
    PyObject *owner; /* the DevicePointerObject owning the buffer */
    int64_t dims[];  /* ndim extents, then ndim strides */
} exported_tensor;

/* The consumer may call a deleter from any thread, with or without the
 * GIL, and even while the interpreter shuts down. */
static void release_export(exported_tensor *export)
{
    if (Py_IsInitialized()) {
        PyGILState_STATE gil = PyGILState_Ensure();
        Py_XDECREF(export->owner);
        PyGILState_Release(gil);
    }
    free(export);
}

static void delete_legacy(DLManagedTensor *tensor)
{
    release_export(tensor->manager_ctx);
}

static void delete_versioned(DLManagedTensorVersioned *tensor)
{
    release_export(tensor->manager_ctx);
}

static const char legacy_name[] = "dltensor";
static const char versioned_name[] = "dltensor_versioned";

/* A capsule never consumed still owns its tensor; a consumer renames the
 * capsule ("used_...") when it takes the tensor over. */
static void capsule_destructor(PyObject *capsule)
{
    if (PyCapsule_IsValid(capsule, legacy_name)) {
        DLManagedTensor *tensor = PyCapsule_GetPointer(capsule, legacy_name);
        if (tensor->deleter)
            tensor->deleter(tensor);
    } else if (PyCapsule_IsValid(capsule, versioned_name)) {
        DLManagedTensorVersioned *tensor = PyCapsule_GetPointer(capsule, versioned_name);
        if (tensor->deleter)
            tensor->deleter(tensor);
    }
}

/* Parse a tuple of non-negative ints into `out`. */
static int parse_extents(PyObject *tuple, int ndim, int64_t *out, const char *what)
{
    if (!PyTuple_Check(tuple) || PyTuple_GET_SIZE(tuple) != ndim) {
        PyErr_Format(PyExc_ValueError, "dlpack: %s must be a tuple of %d ints", what, ndim);
        return -1;
    }
    for (int i = 0; i < ndim; i++) {
        long long value = PyLong_AsLongLong(PyTuple_GET_ITEM(tuple, i));
        if (value == -1 && PyErr_Occurred())
            return -1;
        out[i] = value;
    }
    return 0;
}

PyDoc_STRVAR(dlpack_capsule_doc,
"dlpack_capsule(array, shape, strides, type_code, bits, versioned, read_only)\n"
"--\n"
"\n"
"A DLPack capsule of an OffloadArray's device buffer (internal).\n"
"\n"
"The caller has checked that the device's memory is addressable here and\n"
"has ordered the array's stream before the consumer.\n"
"\n"
"Parameters\n"
"----------\n"
"array : OffloadArray\n"
"    The array; its device pointer is kept alive by the capsule's tensor.\n"
"shape, strides : tuple of int\n"
"    Extents and strides in elements.\n"
"type_code, bits : int\n"
"    DLPack data type (kDLInt 0, kDLUInt 1, kDLFloat 2, kDLComplex 5,\n"
"    kDLBool 6) and its size in bits.\n"
"versioned : bool\n"
"    A ``dltensor_versioned`` capsule (DLPack 1.0) instead of ``dltensor``.\n"
"read_only : bool\n"
"    Flag the versioned tensor read-only.\n"
"\n"
"Returns\n"
"-------\n"
"PyCapsule\n");

static PyObject *module_dlpack_capsule(PyObject *Py_UNUSED(module), PyObject *args)
{
    PyObject *array, *shape, *strides;
    int type_code, bits, versioned, read_only;
    if (!PyArg_ParseTuple(args, "O!OOiipp:dlpack_capsule", &ArrayBase_Type, &array, &shape,
                          &strides, &type_code, &bits, &versioned, &read_only))
        return NULL;
    ArrayBaseObject *base = (ArrayBaseObject *)array;
    if (base->dptr == NULL || !Py_IS_TYPE(base->dptr, &DevicePointer_Type)) {
        PyErr_SetString(PyExc_BufferError, "dlpack: the OffloadArray has no device memory");
        return NULL;
    }
    DevicePointerObject *dptr = (DevicePointerObject *)base->dptr;
    if (dptr->freed) {
        PyErr_SetString(PyExc_BufferError, "dlpack: the OffloadArray's device memory was "
                                           "deallocated");
        return NULL;
    }
    if (type_code < 0 || type_code > 255 || bits <= 0 || bits > 255) {
        PyErr_Format(PyExc_ValueError, "dlpack: bad data type (%d, %d)", type_code, bits);
        return NULL;
    }
    Py_ssize_t ndim_size = PyTuple_Check(shape) ? PyTuple_GET_SIZE(shape) : -1;
    if (ndim_size < 0 || ndim_size > 64) {
        PyErr_SetString(PyExc_ValueError, "dlpack: shape must be a tuple of at most 64 ints");
        return NULL;
    }
    int ndim = (int)ndim_size;
    exported_tensor *export = calloc(1, sizeof(*export) + 2 * (size_t)ndim * sizeof(int64_t));
    if (export == NULL)
        return PyErr_NoMemory();
    if (parse_extents(shape, ndim, export->dims, "shape") < 0 ||
        parse_extents(strides, ndim, export->dims + ndim, "strides") < 0) {
        free(export);
        return NULL;
    }
    DLTensor tensor = {
        /* byte_offset stays 0: some consumers ignore it. */
        .data = (char *)dptr->ptr + base->doffset,
        .device = {DL_CPU, 0},
        .ndim = ndim,
        .dtype = {(uint8_t)type_code, (uint8_t)bits, 1},
        .shape = ndim ? export->dims : NULL,
        .strides = ndim ? export->dims + ndim : NULL,
        .byte_offset = 0,
    };
    void *pointer;
    const char *name;
    if (versioned) {
        DLManagedTensorVersioned *managed = &export->managed.versioned;
        managed->version = (DLPackVersion){DL_MAJOR, DL_MINOR};
        managed->manager_ctx = export;
        managed->deleter = delete_versioned;
        managed->flags = read_only ? DL_FLAG_READ_ONLY : 0;
        managed->dl_tensor = tensor;
        pointer = managed;
        name = versioned_name;
    } else {
        DLManagedTensor *managed = &export->managed.legacy;
        managed->dl_tensor = tensor;
        managed->manager_ctx = export;
        managed->deleter = delete_legacy;
        pointer = managed;
        name = legacy_name;
    }
    export->owner = Py_NewRef((PyObject *)dptr);
    PyObject *capsule = PyCapsule_New(pointer, name, capsule_destructor);
    if (capsule == NULL) {
        Py_DECREF(export->owner);
        free(export);
    }
    return capsule;
}

static PyMethodDef dlpack_functions[] = {
    {"dlpack_capsule", module_dlpack_capsule, METH_VARARGS, dlpack_capsule_doc},
    {NULL, NULL, 0, NULL},
};

int dlpack_module_init(PyObject *module)
{
    return PyModule_AddFunctions(module, dlpack_functions);
}
