/*
 * memory.c -- tracked device memory and checked transfers.
 *
 * Every live allocation of every device sits in one table sorted by base
 * address, so any pointer (even one inside an allocation, or one of another
 * device) is found by binary search and each copy or free is checked
 * before anything is enqueued.  The same lock guards the per-device byte
 * accounting, so limit checks and table updates cannot interleave.
 */
#include "engine.h"

#include <stdlib.h>
#include <string.h>

static pthread_mutex_t table_lock = PTHREAD_MUTEX_INITIALIZER;
static pymic_alloc **table;     /* sorted by base address */
static size_t table_count, table_capacity;

/* Index of the first entry whose base is > ptr. */
static size_t upper_bound(const void *ptr)
{
    size_t lo = 0, hi = table_count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if ((uintptr_t)table[mid]->base <= (uintptr_t)ptr)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* The allocation containing ptr, or NULL.  Caller holds table_lock. */
static pymic_alloc *find_containing(const void *ptr, size_t *index)
{
    size_t i = upper_bound(ptr);
    if (i == 0)
        return NULL;
    pymic_alloc *a = table[i - 1];
    if ((uintptr_t)ptr - (uintptr_t)a->base >= a->nbytes)
        return NULL;
    if (index)
        *index = i - 1;
    return a;
}

static bool table_insert(pymic_alloc *alloc)
{
    if (table_count == table_capacity) {
        size_t cap = table_capacity ? 2 * table_capacity : 64;
        pymic_alloc **grown = realloc(table, cap * sizeof *grown);
        if (!grown)
            return false;
        table = grown;
        table_capacity = cap;
    }
    size_t i = upper_bound(alloc->base);
    memmove(&table[i + 1], &table[i], (table_count - i) * sizeof *table);
    table[i] = alloc;
    table_count++;
    return true;
}

static void table_remove(size_t index)
{
    memmove(&table[index], &table[index + 1], (table_count - index - 1) * sizeof *table);
    table_count--;
}

void pymic_memory_after_fork(void)
{
    pthread_mutex_init(&table_lock, NULL);
}

void pymic_memory_usage(pymic_device *device, size_t *limit, size_t *used)
{
    pthread_mutex_lock(&table_lock);
    *limit = device->memory_limit;
    *used = device->memory_used;
    pthread_mutex_unlock(&table_lock);
}

int pymic_device_set_memory_limit(int device, size_t bytes)
{
    int status;
    pymic_device *d = pymic_device_lookup(device, "pymic_device_set_memory_limit", &status);
    if (!d)
        return status;
    if (bytes == 0)
        bytes = pymic_global.default_memory_limit;
    pthread_mutex_lock(&table_lock);
    size_t used = d->memory_used;
    if (bytes >= used)
        d->memory_limit = bytes;
    pthread_mutex_unlock(&table_lock);
    if (bytes < used)
        return pymic_fail(PYMIC_ERR_OUT_OF_MEMORY,
                          "pymic_device_set_memory_limit: device %d: limit %zu bytes is below "
                          "the %zu bytes already allocated",
                          device, bytes, used);
    return PYMIC_OK;
}

/* ------------------------------------------------------------- alloc/free */

int pymic_mem_alloc(int device, size_t nbytes, size_t alignment, void **device_ptr)
{
    static const char op[] = "pymic_mem_alloc";
    int status;
    pymic_device *d = pymic_device_lookup(device, op, &status);
    if (!d)
        return status;
    if (!device_ptr)
        return pymic_fail(PYMIC_ERR_INVALID_ARGUMENT, "%s: device %d: output pointer is NULL",
                          op, device);
    if (nbytes == 0)
        return pymic_fail(PYMIC_ERR_INVALID_ARGUMENT, "%s: device %d: size is zero", op, device);
    if (alignment == 0)
        alignment = 64;
    if (alignment & (alignment - 1))
        return pymic_fail(PYMIC_ERR_INVALID_ARGUMENT,
                          "%s: device %d: alignment %zu is not a power of two", op, device,
                          alignment);
    if (nbytes > SIZE_MAX / 2 || alignment > ((size_t)1 << 30))
        return pymic_fail(PYMIC_ERR_OUT_OF_MEMORY,
                          "%s: device %d: %zu bytes aligned to %zu cannot be allocated", op,
                          device, nbytes, alignment);

    /* Reserve the bytes against the limit first so concurrent allocations
     * cannot overshoot it together. */
    pthread_mutex_lock(&table_lock);
    bool fits = nbytes <= d->memory_limit - d->memory_used && d->memory_used <= d->memory_limit;
    if (fits)
        d->memory_used += nbytes;
    size_t used = d->memory_used, limit = d->memory_limit;
    pthread_mutex_unlock(&table_lock);
    if (!fits)
        return pymic_fail(PYMIC_ERR_OUT_OF_MEMORY,
                          "%s: device %d: %zu bytes requested, %zu of the %zu-byte limit in use",
                          op, device, nbytes, used, limit);

    pymic_alloc *alloc = malloc(sizeof *alloc);
    pymic_block *block = alloc ? pymic_block_get(d->cache, nbytes, alignment) : NULL;
    bool tracked = false;
    if (block) {
        alloc->base = block->ptr;
        alloc->nbytes = nbytes;
        alloc->device = d;
        alloc->block = block;
        pthread_mutex_lock(&table_lock);
        tracked = table_insert(alloc);
        pthread_mutex_unlock(&table_lock);
    }
    if (!tracked) {
        if (block)
            pymic_block_put(d->cache, block);
        free(alloc);
        pthread_mutex_lock(&table_lock);
        d->memory_used -= nbytes;
        pthread_mutex_unlock(&table_lock);
        return pymic_fail(PYMIC_ERR_OUT_OF_MEMORY,
                          "%s: device %d: the system has no memory for %zu bytes", op, device,
                          nbytes);
    }
    *device_ptr = alloc->base;
    return PYMIC_OK;
}

void pymic_alloc_release(pymic_alloc *alloc)
{
    pymic_device *d = alloc->device;
    pymic_block_put(d->cache, alloc->block);
    pthread_mutex_lock(&table_lock);
    d->memory_used -= alloc->nbytes;
    pthread_mutex_unlock(&table_lock);
    free(alloc);
}

int pymic_mem_free(pymic_stream *stream, void *device_ptr)
{
    static const char op[] = "pymic_mem_free";
    int status = pymic_stream_check(stream, op);
    if (status != PYMIC_OK)
        return status;
    int device = stream->device->id;
    pthread_mutex_lock(&table_lock);
    size_t index;
    pymic_alloc *alloc = find_containing(device_ptr, &index);
    if (!alloc)
        status = PYMIC_ERR_INVALID_POINTER;
    else if (alloc->base != device_ptr)
        status = PYMIC_ERR_INVALID_POINTER;
    else if (alloc->device != stream->device)
        status = PYMIC_ERR_WRONG_DEVICE;
    else
        table_remove(index);
    int owner = alloc ? alloc->device->id : -1;
    pthread_mutex_unlock(&table_lock);

    if (status == PYMIC_ERR_INVALID_POINTER && !alloc)
        return pymic_fail(status, "%s: device %d: %p is not a live allocation (never allocated "
                          "or already freed)", op, device, device_ptr);
    if (status == PYMIC_ERR_INVALID_POINTER)
        return pymic_fail(status, "%s: device %d: %p points inside an allocation, not at its "
                          "start", op, device, device_ptr);
    if (status == PYMIC_ERR_WRONG_DEVICE)
        return pymic_fail(status, "%s: device %d: %p belongs to device %d", op, device,
                          device_ptr, owner);

    /* The pointer is dead from now on; its memory goes back after every
     * command queued before this one has run. */
    pymic_command *cmd = pymic_stream_reserve(stream);
    cmd->kind = PYMIC_CMD_FREE;
    cmd->u.alloc = alloc;
    pymic_stream_publish(stream);
    return PYMIC_OK;
}

/* ---------------------------------------------------------------- queries */

/* What the table says about one allocation, copied out under the lock. */
typedef struct alloc_view {
    uintptr_t base;
    size_t nbytes;
} alloc_view;

/* Check that [ptr + offset, ptr + offset + nbytes) lies inside one live
 * allocation of `device` (nbytes == 0: that ptr + offset does); describe
 * that allocation in *view.  `what` names the side ("destination",
 * "source") for the message. */
static int check_range(const char *op, const char *what, pymic_device *device,
                       const void *ptr, size_t offset, size_t nbytes, alloc_view *view)
{
    pthread_mutex_lock(&table_lock);
    pymic_alloc *alloc = find_containing(ptr, NULL);
    int owner = -1;
    if (alloc) {
        view->base = (uintptr_t)alloc->base;
        view->nbytes = alloc->nbytes;
        owner = alloc->device->id;
    }
    pthread_mutex_unlock(&table_lock);

    if (!alloc)
        return pymic_fail(PYMIC_ERR_INVALID_POINTER,
                          "%s: device %d: %s %p is not a live allocation", op, device->id,
                          what, ptr);
    if (owner != device->id)
        return pymic_fail(PYMIC_ERR_WRONG_DEVICE, "%s: device %d: %s %p belongs to device %d",
                          op, device->id, what, ptr, owner);
    size_t start = (size_t)((uintptr_t)ptr - view->base); /* < nbytes */
    size_t room = view->nbytes - start;
    bool inside = offset < room && nbytes <= room - offset;
    if (!inside)
        return pymic_fail(PYMIC_ERR_OUT_OF_RANGE,
                          "%s: device %d: %s range of %zu bytes at offset %zu from %p exceeds "
                          "the %zu-byte allocation at %p",
                          op, device->id, what, nbytes, offset, ptr, view->nbytes,
                          (void *)view->base);
    return PYMIC_OK;
}

int pymic_mem_query(int device, const void *device_ptr, void **base, size_t *nbytes)
{
    static const char op[] = "pymic_mem_query";
    int status;
    pymic_device *d = pymic_device_lookup(device, op, &status);
    if (!d)
        return status;
    if (!base || !nbytes)
        return pymic_fail(PYMIC_ERR_INVALID_ARGUMENT, "%s: device %d: NULL output", op, device);
    alloc_view view;
    status = check_range(op, "pointer", d, device_ptr, 0, 0, &view);
    if (status != PYMIC_OK)
        return status;
    *base = (void *)view.base;
    *nbytes = view.nbytes;
    return PYMIC_OK;
}

int pymic_mem_translate(int device, const void *device_ptr, size_t offset, uintptr_t *address)
{
    static const char op[] = "pymic_mem_translate";
    int status;
    pymic_device *d = pymic_device_lookup(device, op, &status);
    if (!d)
        return status;
    if (!address)
        return pymic_fail(PYMIC_ERR_INVALID_ARGUMENT, "%s: device %d: NULL output", op, device);
    alloc_view view;
    status = check_range(op, "pointer", d, device_ptr, offset, 0, &view);
    if (status != PYMIC_OK)
        return status;
    *address = (uintptr_t)device_ptr + offset;
    return PYMIC_OK;
}

/* -------------------------------------------------------------- transfers */

static int enqueue_copy(pymic_stream *stream, void *dst, const void *src, size_t nbytes)
{
    /* Only a device-to-device copy within one allocation can overlap;
     * memcpy would be undefined there, so the worker uses memmove. */
    bool overlap = (uintptr_t)dst < (uintptr_t)src + nbytes
                && (uintptr_t)src < (uintptr_t)dst + nbytes;
    pymic_command *cmd = pymic_stream_reserve(stream);
    cmd->kind = PYMIC_CMD_COPY;
    cmd->u.copy.dst = dst;
    cmd->u.copy.src = src;
    cmd->u.copy.nbytes = nbytes;
    cmd->u.copy.overlap = overlap;
    pymic_stream_publish(stream);
    return PYMIC_OK;
}

static int check_copy_args(const char *op, pymic_stream *stream, size_t nbytes)
{
    int status = pymic_stream_check(stream, op);
    if (status != PYMIC_OK)
        return status;
    if (nbytes == 0)
        return pymic_fail(PYMIC_ERR_INVALID_ARGUMENT, "%s: device %d: size is zero", op,
                          stream->device->id);
    return PYMIC_OK;
}

static int check_host_buffer(const char *op, pymic_stream *stream, const void *host)
{
    if (!host)
        return pymic_fail(PYMIC_ERR_INVALID_ARGUMENT, "%s: device %d: host buffer is NULL", op,
                          stream->device->id);
    return PYMIC_OK;
}

int pymic_memcpy_h2d(pymic_stream *stream, void *device_dst, size_t dst_offset,
                     const void *host_src, size_t nbytes)
{
    static const char op[] = "pymic_memcpy_h2d";
    alloc_view dst;
    int status = check_copy_args(op, stream, nbytes);
    if (status == PYMIC_OK)
        status = check_host_buffer(op, stream, host_src);
    if (status == PYMIC_OK)
        status = check_range(op, "destination", stream->device, device_dst, dst_offset, nbytes,
                             &dst);
    if (status != PYMIC_OK)
        return status;
    pymic_trace_label("h2d");
    return enqueue_copy(stream, (char *)device_dst + dst_offset, host_src, nbytes);
}

int pymic_memcpy_d2h(pymic_stream *stream, void *host_dst, const void *device_src,
                     size_t src_offset, size_t nbytes)
{
    static const char op[] = "pymic_memcpy_d2h";
    alloc_view src;
    int status = check_copy_args(op, stream, nbytes);
    if (status == PYMIC_OK)
        status = check_host_buffer(op, stream, host_dst);
    if (status == PYMIC_OK)
        status = check_range(op, "source", stream->device, device_src, src_offset, nbytes,
                             &src);
    if (status != PYMIC_OK)
        return status;
    pymic_trace_label("d2h");
    return enqueue_copy(stream, host_dst, (const char *)device_src + src_offset, nbytes);
}

int pymic_memcpy_d2d(pymic_stream *stream, void *device_dst, size_t dst_offset,
                     const void *device_src, size_t src_offset, size_t nbytes)
{
    static const char op[] = "pymic_memcpy_d2d";
    alloc_view dst, src;
    int status = check_copy_args(op, stream, nbytes);
    if (status == PYMIC_OK)
        status = check_range(op, "destination", stream->device, device_dst, dst_offset, nbytes,
                             &dst);
    if (status == PYMIC_OK)
        status = check_range(op, "source", stream->device, device_src, src_offset, nbytes,
                             &src);
    if (status != PYMIC_OK)
        return status;
    pymic_trace_label("d2d");
    return enqueue_copy(stream, (char *)device_dst + dst_offset,
                        (const char *)device_src + src_offset, nbytes);
}
