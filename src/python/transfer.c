/*
 * transfer.c -- the stream's explicit copies between host and device.
 *
 * pyMIC's low-level API takes raw host addresses (ndarray.ctypes.data) and
 * device pointer objects.  pymic also accepts any object exporting a
 * contiguous buffer in place of a raw address; such an object is kept alive
 * until the copy completes.  Every range is checked here, before anything is
 * enqueued, so bad values raise ValueError (the engine checks again).
 */
#include "engine_module.h"

#include <string.h>

/* Where a copy's host side lives: a raw address, or an exported buffer that
 * must be kept alive while the copy is queued. */
typedef struct host_side {
    char *address;
    Py_buffer view; /* view.obj == NULL for raw addresses */
} host_side;

static int host_side_open(PyObject *obj, int writable, size_t offset, size_t nbytes,
                          host_side *host)
{
    host->view.obj = NULL;
    if (PyLong_Check(obj)) {
        void *address = PyLong_AsVoidPtr(obj);
        if (address == NULL && PyErr_Occurred())
            return -1;
        if (address == NULL) {
            PyErr_SetString(OffloadValueError, "host_ptr must not be 0 (NULL)");
            return -1;
        }
        host->address = (char *)address + offset;
        return 0;
    }
    int flags = PyBUF_ANY_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, &host->view, flags) < 0) {
        if (PyErr_ExceptionMatches(PyExc_TypeError))
            return -1;
        PyErr_Clear();
        PyErr_Format(OffloadValueError, "host_ptr: %.100s buffer is not %scontiguous",
                     Py_TYPE(obj)->tp_name, writable ? "writable and " : "");
        return -1;
    }
    /* Copying raw bytes over Python object pointers would corrupt
     * reference counts. */
    if (host->view.format != NULL && strchr(host->view.format, 'O') != NULL) {
        PyErr_SetString(PyExc_TypeError, "host_ptr: a buffer of Python objects cannot be "
                                         "transferred");
        PyBuffer_Release(&host->view);
        return -1;
    }
    if (offset > (size_t)host->view.len || nbytes > (size_t)host->view.len - offset) {
        PyErr_Format(OffloadValueError,
                     "host range [%zu, %zu) lies beyond the host buffer (%zd bytes)", offset,
                     offset + nbytes, host->view.len);
        PyBuffer_Release(&host->view);
        return -1;
    }
    host->address = (char *)host->view.buf + offset;
    return 0;
}

/* After a successful enqueue: hand the buffer (if any) to the keep-alive
 * queue tagged with the copy's sequence number. */
static int host_side_keep(StreamObject *stream, host_side *host)
{
    if (host->view.obj == NULL)
        return 0;
    uint64_t seq = pymic_stream_last_enqueued(stream->handle);
    if (keepalive_push_view(&stream->keep, seq, &host->view) < 0) {
        /* Out of memory: keep the promise by waiting for the copy. */
        PyObject *type, *value, *traceback;
        PyErr_Fetch(&type, &value, &traceback);
        Py_BEGIN_ALLOW_THREADS
        pymic_stream_wait_seq(stream->handle, seq);
        Py_END_ALLOW_THREADS
        PyBuffer_Release(&host->view);
        PyErr_Restore(type, value, traceback);
        return -1;
    }
    return 0;
}

static void host_side_close(host_side *host)
{
    if (host->view.obj != NULL)
        PyBuffer_Release(&host->view);
}

/* Check a device range against a device pointer's allocation and stream. */
static DevicePointerObject *device_side(StreamObject *stream, PyObject *obj, const char *what,
                                        size_t offset, size_t nbytes)
{
    DevicePointerObject *dptr = devptr_check_live(obj, what);
    if (dptr == NULL)
        return NULL;
    if (dptr->device != stream->device) {
        PyErr_Format(OffloadError, "%s: device pointer of device %d used on a stream of device %d",
                     what, dptr->device, stream->device);
        return NULL;
    }
    if (offset > dptr->nbytes || nbytes > dptr->nbytes - offset) {
        PyErr_Format(OffloadValueError,
                     "%s: range [%zu, %zu) lies beyond the allocation (%zu bytes)", what,
                     offset, offset + nbytes, dptr->nbytes);
        return NULL;
    }
    return dptr;
}

/* The arguments every transfer takes, in its own order: two endpoints, a
 * byte count and one optional offset per endpoint. */
typedef struct transfer_args {
    PyObject *first, *second;
    size_t nbytes, offset_first, offset_second;
} transfer_args;

static int parse_offset(PyObject *obj, const char *name, size_t *out)
{
    *out = 0;
    if (obj == NULL)
        return 0;
    return parse_size_arg(obj, name, 1, out);
}

/* `names` lists the five parameter names in signature order. */
static int transfer_parse(const char *function, const char *const names[5],
                          PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
                          transfer_args *out)
{
    PyObject *parsed[5];
    if (fastargs_parse(function, args, nargs, kwnames, names, 3, 5, parsed) < 0 ||
        parse_size_arg(parsed[2], "nbytes", 0, &out->nbytes) < 0 ||
        parse_offset(parsed[3], names[3], &out->offset_first) < 0 ||
        parse_offset(parsed[4], names[4], &out->offset_second) < 0)
        return -1;
    out->first = parsed[0];
    out->second = parsed[1];
    return 0;
}

/* A copy between host and device memory in either direction (to_device
 * selects host-to-device).  Checks the device range, then the host range,
 * enqueues, and keeps a host buffer object alive until the copy is done. */
static PyObject *host_transfer(StreamObject *self, const char *function, int to_device,
                               PyObject *host_obj, size_t off_host, PyObject *dptr_obj,
                               size_t off_dev, size_t nbytes)
{
    /* Before the checks: they must still hold when the copy is enqueued. */
    if (stream_make_room(self, 1) < 0)
        return NULL;
    DevicePointerObject *dptr = device_side(self, dptr_obj, function, off_dev, nbytes);
    if (dptr == NULL)
        return NULL;
    host_side host;
    if (host_side_open(host_obj, !to_device, off_host, nbytes, &host) < 0)
        return NULL;
    stream_release_completed(self);
    int status = to_device
                     ? pymic_memcpy_h2d(self->handle, dptr->ptr, off_dev, host.address, nbytes)
                     : pymic_memcpy_d2h(self->handle, host.address, dptr->ptr, off_dev, nbytes);
    if (status != PYMIC_OK) {
        host_side_close(&host);
        return raise_engine_error(status);
    }
    if (host_side_keep(self, &host) < 0)
        return NULL;
    Py_RETURN_NONE;
}

const char stream_transfer_host2device_doc[] =
"transfer_host2device(host_ptr, device_ptr, nbytes, offset_host=0, offset_device=0)\n"
"--\n"
"\n"
"Enqueue a copy from host memory to device memory.\n"
"\n"
"Parameters\n"
"----------\n"
"host_ptr : int or buffer\n"
"    Raw host address (e.g. ``ndarray.ctypes.data``), or an object exporting\n"
"    a contiguous buffer, which is then kept alive until the copy completes.\n"
"    A raw address must stay valid until the copy completes.\n"
"device_ptr : DevicePointer\n"
"    Destination allocation.\n"
"nbytes : int\n"
"    Bytes to copy, greater than zero.\n"
"offset_host, offset_device : int, optional\n"
"    Byte offsets into the source and destination.\n"
"\n"
"Returns\n"
"-------\n"
"None\n"
"\n"
"Raises\n"
"------\n"
"TypeError\n"
"    If an argument is missing or of the wrong type.\n"
"ValueError\n"
"    For negative offsets, `nbytes` <= 0 or a range beyond the allocation.\n"
"OffloadError\n"
"    For a deallocated pointer or another device's pointer.\n";

PyObject *stream_transfer_host2device(StreamObject *self, PyObject *const *args,
                                      Py_ssize_t nargs, PyObject *kwnames)
{
    static const char *const names[] = {"host_ptr", "device_ptr", "nbytes", "offset_host",
                                        "offset_device"};
    transfer_args a;
    if (transfer_parse("transfer_host2device", names, args, nargs, kwnames, &a) < 0)
        return NULL;
    return host_transfer(self, "transfer_host2device", 1, a.first, a.offset_first, a.second,
                         a.offset_second, a.nbytes);
}

const char stream_transfer_device2host_doc[] =
"transfer_device2host(device_ptr, host_ptr, nbytes, offset_device=0, offset_host=0)\n"
"--\n"
"\n"
"Enqueue a copy from device memory to host memory.\n"
"\n"
"Parameters\n"
"----------\n"
"device_ptr : DevicePointer\n"
"    Source allocation.\n"
"host_ptr : int or buffer\n"
"    Raw host address, or an object exporting a writable contiguous\n"
"    buffer (kept alive until the copy completes).\n"
"nbytes : int\n"
"    Bytes to copy, greater than zero.\n"
"offset_device, offset_host : int, optional\n"
"    Byte offsets into the source and destination.\n"
"\n"
"Returns\n"
"-------\n"
"None\n"
"\n"
"Raises\n"
"------\n"
"TypeError\n"
"    If an argument is missing or of the wrong type.\n"
"ValueError\n"
"    For negative offsets, `nbytes` <= 0 or a range beyond the allocation.\n"
"OffloadError\n"
"    For a deallocated pointer or another device's pointer.\n";

PyObject *stream_transfer_device2host(StreamObject *self, PyObject *const *args,
                                      Py_ssize_t nargs, PyObject *kwnames)
{
    static const char *const names[] = {"device_ptr", "host_ptr", "nbytes", "offset_device",
                                        "offset_host"};
    transfer_args a;
    if (transfer_parse("transfer_device2host", names, args, nargs, kwnames, &a) < 0)
        return NULL;
    return host_transfer(self, "transfer_device2host", 0, a.second, a.offset_second, a.first,
                         a.offset_first, a.nbytes);
}

const char stream_transfer_device2device_doc[] =
"transfer_device2device(src_ptr, dst_ptr, nbytes, offset_device_src=0, offset_device_dst=0)\n"
"--\n"
"\n"
"Enqueue a copy between two allocations of the stream's device.\n"
"\n"
"Parameters\n"
"----------\n"
"src_ptr, dst_ptr : DevicePointer\n"
"    Source and destination allocations.\n"
"nbytes : int\n"
"    Bytes to copy, greater than zero.\n"
"offset_device_src, offset_device_dst : int, optional\n"
"    Byte offsets into the source and destination.\n"
"\n"
"Returns\n"
"-------\n"
"None\n"
"\n"
"Raises\n"
"------\n"
"TypeError\n"
"    If an argument is missing or of the wrong type.\n"
"ValueError\n"
"    For negative offsets, `nbytes` <= 0 or a range beyond an allocation.\n"
"OffloadError\n"
"    For a deallocated pointer or another device's pointer.\n";

PyObject *stream_transfer_device2device(StreamObject *self, PyObject *const *args,
                                        Py_ssize_t nargs, PyObject *kwnames)
{
    static const char *const names[] = {"src_ptr", "dst_ptr", "nbytes", "offset_device_src",
                                        "offset_device_dst"};
    transfer_args a;
    if (transfer_parse("transfer_device2device", names, args, nargs, kwnames, &a) < 0)
        return NULL;
    if (stream_make_room(self, 1) < 0) /* before the checks, as in host_transfer */
        return NULL;
    DevicePointerObject *src = device_side(self, a.first, "transfer_device2device (source)",
                                           a.offset_first, a.nbytes);
    if (src == NULL)
        return NULL;
    DevicePointerObject *dst = device_side(self, a.second, "transfer_device2device (destination)",
                                           a.offset_second, a.nbytes);
    if (dst == NULL)
        return NULL;
    stream_release_completed(self);
    return none_or_engine_error(pymic_memcpy_d2d(self->handle, dst->ptr, a.offset_second,
                                                 src->ptr, a.offset_first, a.nbytes));
}
