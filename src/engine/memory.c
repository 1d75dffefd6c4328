/*
 * memory.c -- tracked device memory and checked transfers.
 *
 * Every live allocation of a device sits in its device's table, sorted by
 * base address, so any pointer (even one inside an allocation) is found by
 * binary search and each copy or free is checked before anything is
 * enqueued.  Each device has its own table: device addresses are the
 * backend's business, and two devices may hand out equal ones (a remote
 * device's memory is not this process's), so a pointer is only ever
 * looked up among the allocations of the device it is used on.  Only when
 * it is not there are the other devices' tables asked, one at a time, to
 * name its owner in the error.  The table's lock also guards the device's
 * byte accounting, so limit checks and table updates cannot interleave.
 *
 * Frees are ordered across streams (PyTorch's record_stream, made
 * automatic): every command that touches an allocation -- a copy, or an
 * invoke given a pointer into it -- records (stream, sequence number) in
 * the allocation's use list while it is enqueued.  A free is queued on one
 * stream; when it runs there, the memory goes back only once every other
 * stream of the list has passed its last use, and until then it is parked
 * (parked.c) rather than waited for.  The pointer itself dies at the free
 * call: later uses and double frees are errors at once.
 *
 * Lock order: a stream's enqueue lock, then a device's table lock (uses
 * are recorded with the slot reserved, so the sequence number is known).
 * A table lock is a leaf: nothing else is taken while it is held (blocks
 * go back to the backend after it is released), only one is ever held at
 * a time, and the fork handlers take them last.
 *
 * Nothing here reads or writes device memory: addresses are compared
 * with the addresses of the same device only (the overlap of a copy too,
 * except on a host-addressable device, where a host buffer may be device
 * memory).
 */
#include "engine.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct pymic_alloc_table alloc_table;

/* Index of the first entry whose base is > ptr. */
static size_t upper_bound(const alloc_table *t, const void *ptr)
{
    size_t lo = 0, hi = t->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if ((uintptr_t)t->entries[mid]->base <= (uintptr_t)ptr)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* The allocation of t containing ptr, or NULL.  Caller holds t->lock. */
static pymic_alloc *find_containing(const alloc_table *t, const void *ptr, size_t *index)
{
    size_t i = upper_bound(t, ptr);
    if (i == 0)
        return NULL;
    pymic_alloc *a = t->entries[i - 1];
    if ((uintptr_t)ptr - (uintptr_t)a->base >= a->nbytes)
        return NULL;
    if (index)
        *index = i - 1;
    return a;
}

static bool table_insert(alloc_table *t, pymic_alloc *alloc)
{
    if (t->count == t->capacity) {
        size_t cap = t->capacity ? 2 * t->capacity : 64;
        pymic_alloc **grown = realloc(t->entries, cap * sizeof *grown);
        if (!grown)
            return false;
        t->entries = grown;
        t->capacity = cap;
    }
    size_t i = upper_bound(t, alloc->base);
    memmove(&t->entries[i + 1], &t->entries[i], (t->count - i) * sizeof *t->entries);
    t->entries[i] = alloc;
    t->count++;
    return true;
}

static void table_remove(alloc_table *t, size_t index)
{
    memmove(&t->entries[index], &t->entries[index + 1],
            (t->count - index - 1) * sizeof *t->entries);
    t->count--;
}

/* The device that holds a live allocation containing `ptr`, other than
 * `except`, or -1: only to name the owner of a pointer used on the wrong
 * device (each table is locked in turn, never two at once).  With
 * devices whose addresses coincide the answer is one of them. */
static int owner_elsewhere(const pymic_device *except, const void *ptr)
{
    for (int i = 0; i < pymic_global.ndevices; i++) {
        pymic_device *d = &pymic_global.devices[i];
        if (d == except)
            continue;
        pthread_mutex_lock(&d->table.lock);
        bool found = find_containing(&d->table, ptr, NULL) != NULL;
        pthread_mutex_unlock(&d->table.lock);
        if (found)
            return d->id;
    }
    return -1;
}

void pymic_memory_table_init(pymic_device *device)
{
    pthread_mutex_init(&device->table.lock, NULL);
}

void pymic_memory_prefork(void)
{
    for (int i = 0; i < pymic_global.ndevices; i++)
        pthread_mutex_lock(&pymic_global.devices[i].table.lock);
}

void pymic_memory_postfork_parent(void)
{
    for (int i = pymic_global.ndevices - 1; i >= 0; i--)
        pthread_mutex_unlock(&pymic_global.devices[i].table.lock);
}

void pymic_memory_postfork_child(void)
{
    for (int i = 0; i < pymic_global.ndevices; i++)
        pthread_mutex_init(&pymic_global.devices[i].table.lock, NULL);
}

/* Drop the uses that are over: they can no longer delay a free, and each
 * holds its stream, so a long-lived allocation touched by many short-lived
 * streams would otherwise keep every one of them (and its command ring)
 * in memory.  Caller holds the allocation's table lock. */
static void prune_passed_uses(pymic_alloc *alloc)
{
    int kept = 0;
    for (int i = 0; i < alloc->nuses; i++) {
        if (pymic_stream_passed(alloc->uses[i].stream, alloc->uses[i].seq))
            pymic_stream_release(alloc->uses[i].stream);
        else
            alloc->uses[kept++] = alloc->uses[i];
    }
    alloc->nuses = kept;
}

/* Note that command `seq` of `stream` uses `alloc`.  Caller holds its
 * table lock.  False when the use list cannot grow (out of host memory). */
static bool record_use(pymic_alloc *alloc, pymic_stream *stream, uint64_t seq)
{
    for (int i = 0; i < alloc->nuses; i++) {
        if (alloc->uses[i].stream == stream) {
            alloc->uses[i].seq = seq;
            return true;
        }
    }
    prune_passed_uses(alloc);
    if (alloc->nuses == alloc->uses_capacity) {
        int capacity = alloc->uses_capacity ? 2 * alloc->uses_capacity : 2;
        pymic_use *grown = realloc(alloc->uses, sizeof *grown * (size_t)capacity);
        if (!grown)
            return false;
        alloc->uses = grown;
        alloc->uses_capacity = capacity;
    }
    pymic_stream_retain(stream);
    alloc->uses[alloc->nuses++] = (pymic_use){stream, seq};
    return true;
}

void pymic_memory_usage(pymic_device *device, size_t *limit, size_t *used)
{
    pthread_mutex_lock(&device->table.lock);
    *limit = device->memory_limit;
    *used = device->memory_used;
    pthread_mutex_unlock(&device->table.lock);
}

int pymic_device_set_memory_limit(int device, size_t bytes)
{
    int status;
    pymic_device *d = pymic_device_lookup(device, "setting the memory limit", &status);
    if (!d)
        return status;
    pthread_mutex_lock(&d->table.lock);
    if (bytes == 0)
        bytes = d->memory_default;
    size_t used = d->memory_used;
    if (bytes >= used)
        d->memory_limit = bytes;
    pthread_mutex_unlock(&d->table.lock);
    if (bytes < used)
        return pymic_fail(PYMIC_ERR_OUT_OF_MEMORY,
                          "setting the memory limit of device %d: %zu bytes is below "
                          "the %zu bytes already allocated",
                          device, bytes, used);
    return PYMIC_OK;
}

/* ------------------------------------------------------------- alloc/free */

/* Count `nbytes` against the device's limit (first, so concurrent
 * allocations cannot overshoot it together).  False if they do not fit;
 * *used, *limit and *pending describe the device for the message. */
static bool reserve_bytes(pymic_device *d, size_t nbytes, size_t *used, size_t *limit,
                          size_t *pending)
{
    pthread_mutex_lock(&d->table.lock);
    bool fits = nbytes <= d->memory_limit - d->memory_used && d->memory_used <= d->memory_limit;
    if (fits)
        d->memory_used += nbytes;
    *used = d->memory_used;
    *limit = d->memory_limit;
    *pending = d->memory_pending;
    pthread_mutex_unlock(&d->table.lock);
    return fits;
}

/* A freed allocation of `d` whose FREE command has not run yet, with its
 * stream retained, or false if there is none (streams inherited across a
 * fork never run theirs). */
static bool queued_free(pymic_device *d, pymic_use *out)
{
    bool found = false;
    pthread_mutex_lock(&d->table.lock);
    for (pymic_alloc *a = d->table.pending_head; a && !found; a = a->pending_next) {
        pymic_stream *s = a->freed_by.stream;
        if (!s || pymic_stream_passed(s, a->freed_by.seq) ||
            pymic_stream_inherited(s))
            continue;
        pymic_stream_retain(s);
        *out = a->freed_by;
        found = true;
    }
    pthread_mutex_unlock(&d->table.lock);
    return found;
}

/* Short of memory: wait for memory already freed to come back -- frees
 * queued on any stream (the caller's own included) and frees parked until
 * other streams pass their last use -- until `nbytes` fit or nothing
 * freed is left to wait for.  Each round waits for one queued free, so
 * frees queued meanwhile are waited for too. */
static bool reserve_after_frees(pymic_device *d, size_t nbytes, size_t *used, size_t *limit,
                                size_t *pending)
{
    for (;;) {
        pymic_parked_drain();
        if (reserve_bytes(d, nbytes, used, limit, pending))
            return true;
        /* Even with every pending free back it would not fit: fail now. */
        if (*used - *pending > *limit || nbytes > *limit - (*used - *pending))
            return false;
        pymic_use wait_for;
        if (!queued_free(d, &wait_for))
            return false;
        pymic_kick(&wait_for.stream->work_q); /* a napping worker runs it */
        pymic_wait_geq(&wait_for.stream->done_q, &wait_for.stream->completed, wait_for.seq);
        pymic_stream_release(wait_for.stream);
    }
}

static int mem_alloc(int device, size_t nbytes, size_t alignment, void **device_ptr,
                     bool may_wait)
{
    static const char op[] = "allocation";
    int status;
    pymic_device *d = pymic_device_open(device, op, &status);
    if (!d)
        return status;
    if (!device_ptr)
        return pymic_fail(PYMIC_ERR_INVALID_ARGUMENT, "%s: device %d: output pointer is NULL",
                          op, device);
    if (nbytes == 0)
        return pymic_fail(PYMIC_ERR_INVALID_ARGUMENT, "%s on device %d: size is zero", op, device);
    if (alignment == 0)
        alignment = 64;
    if (alignment & (alignment - 1))
        return pymic_fail(PYMIC_ERR_INVALID_ARGUMENT,
                          "%s of %zu bytes on device %d: alignment %zu is not a power of two",
                          op, nbytes, device,
                          alignment);
    if (nbytes > SIZE_MAX / 2 || alignment > ((size_t)1 << 30))
        return pymic_fail(PYMIC_ERR_OUT_OF_MEMORY,
                          "%s of %zu bytes on device %d: cannot be aligned to %zu bytes", op,
                          nbytes, device, alignment);

    if (atomic_load_explicit(&pymic_parked_count, memory_order_relaxed) > 0)
        pymic_parked_poll();
    size_t used, limit, pending;
    if (!reserve_bytes(d, nbytes, &used, &limit, &pending) &&
        !(may_wait && reserve_after_frees(d, nbytes, &used, &limit, &pending)))
        return pymic_fail(PYMIC_ERR_OUT_OF_MEMORY,
                          "%s of %zu bytes on device %d: %zu of the %zu-byte limit in use (%zu "
                          "of them freed and pending release)",
                          op, nbytes, device, used, limit, pending);

    pymic_alloc *alloc = calloc(1, sizeof *alloc);
    pymic_block *block = alloc ? d->ops->block_get(d, nbytes, alignment) : NULL;
    if (alloc && !block) {
        /* The system is out of memory: give cached blocks back, retry. */
        if (may_wait)
            pymic_parked_drain();
        else
            pymic_parked_poll();
        if (d->ops->trim)
            d->ops->trim(d);
        block = d->ops->block_get(d, nbytes, alignment);
    }
    bool tracked = false;
    if (block) {
        alloc->base = block->ptr;
        alloc->nbytes = nbytes;
        alloc->device = d;
        alloc->block = block;
        /* Armed before any check can see the allocation in the table. */
        if (pymic_global.check_bounds)
            d->ops->bounds_arm(d, alloc);
        pthread_mutex_lock(&d->table.lock);
        tracked = table_insert(&d->table, alloc);
        pthread_mutex_unlock(&d->table.lock);
    }
    if (!tracked) {
        if (block)
            d->ops->block_put(d, block);
        free(alloc);
        pthread_mutex_lock(&d->table.lock);
        d->memory_used -= nbytes;
        pthread_mutex_unlock(&d->table.lock);
        /* A backend whose memory is elsewhere cannot hand any out once
         * its device is lost: say so rather than "no memory". */
        if (!block && atomic_load(&d->lost))
            return pymic_fail(PYMIC_ERR_DEVICE_LOST, "%s of %zu bytes on device %d: %s", op,
                              nbytes, device, d->lost_why);
        return pymic_fail(PYMIC_ERR_OUT_OF_MEMORY,
                          "%s of %zu bytes on device %d: the system has no memory for it", op,
                          nbytes, device);
    }
    *device_ptr = alloc->base;
    return PYMIC_OK;
}

int pymic_mem_alloc(int device, size_t nbytes, size_t alignment, void **device_ptr)
{
    return mem_alloc(device, nbytes, alignment, device_ptr, true);
}

int pymic_mem_alloc_nowait(int device, size_t nbytes, size_t alignment, void **device_ptr)
{
    return mem_alloc(device, nbytes, alignment, device_ptr, false);
}

void pymic_memory_visit(pymic_device *device, void (*visit)(pymic_alloc *, void *), void *arg)
{
    alloc_table *t = &device->table;
    pthread_mutex_lock(&t->lock);
    for (size_t i = 0; i < t->count; i++)
        visit(t->entries[i], arg);
    /* Freed but not back yet: commands queued before the free still use
     * it (a kernel may overrun a buffer freed right after the invoke). */
    for (pymic_alloc *a = t->pending_head; a; a = a->pending_next)
        visit(a, arg);
    pthread_mutex_unlock(&t->lock);
}

/* `address` lies between the end of `a` and the end of the guard page
 * after it. */
static bool past_end_of(const pymic_alloc *a, uintptr_t address)
{
    uintptr_t end = (uintptr_t)a->base + a->nbytes;
    uintptr_t guard_end = ((end + PYMIC_GUARD_PAGE - 1) & ~(PYMIC_GUARD_PAGE - 1)) +
                          PYMIC_GUARD_PAGE;
    return address >= end && address < guard_end;
}

bool pymic_memory_describe_fault(pymic_device *device, uintptr_t address, char *out, size_t len)
{
    alloc_table *t = &device->table;
    pthread_mutex_lock(&t->lock);
    size_t i = upper_bound(t, (const void *)address);
    const pymic_alloc *hit = i > 0 && past_end_of(t->entries[i - 1], address) ? t->entries[i - 1]
                                                                             : NULL;
    /* Freed, but still in use by the commands queued before the free. */
    for (const pymic_alloc *a = t->pending_head; !hit && a; a = a->pending_next)
        if (past_end_of(a, address))
            hit = a;
    if (hit)
        snprintf(out, len, "writing past the end of allocation %p (%zu bytes) at %p", hit->base,
                 hit->nbytes, (void *)address);
    pthread_mutex_unlock(&t->lock);
    return hit != NULL;
}

/* Give the memory back (the allocation left the table at its free). */
static void release_memory(void *arg)
{
    pymic_alloc *alloc = arg;
    pymic_device *d = alloc->device;
    /* Off the pending list before the block can be handed out again
     * (bounds checks visit the list). */
    pthread_mutex_lock(&d->table.lock);
    d->memory_used -= alloc->nbytes;
    d->memory_pending -= alloc->nbytes;
    if (alloc->pending_prev)
        alloc->pending_prev->pending_next = alloc->pending_next;
    else
        d->table.pending_head = alloc->pending_next;
    if (alloc->pending_next)
        alloc->pending_next->pending_prev = alloc->pending_prev;
    pymic_stream *freed_by = alloc->freed_by.stream;
    pthread_mutex_unlock(&d->table.lock);
    d->ops->block_put(d, alloc->block);
    pymic_stream_release(freed_by);
    free(alloc);
}

void pymic_alloc_execute_free(pymic_stream *stream, pymic_alloc *alloc)
{
    /* The use list is frozen: the allocation left the table when it was
     * freed, so no command can have recorded a use since.  Uses on the
     * freeing stream ran before this command; the others are waited for. */
    int n = 0;
    for (int i = 0; i < alloc->nuses; i++) {
        if (alloc->uses[i].stream == stream)
            pymic_stream_release(stream);
        else
            alloc->uses[n++] = alloc->uses[i];
    }
    pymic_use *others = n ? alloc->uses : NULL;
    if (!n)
        free(alloc->uses);
    alloc->uses = NULL;
    alloc->nuses = alloc->uses_capacity = 0;
    pymic_release_after(others, n, release_memory, alloc);
}

int pymic_mem_free(pymic_stream *stream, void *device_ptr)
{
    static const char op[] = "free on";
    int status = pymic_stream_check(stream, op);
    if (status != PYMIC_OK)
        return status;
    /* The slot first (lock order: enqueue lock, then the table), so the
     * allocation leaves the table and joins the pending list with the
     * sequence number of its FREE in one step. */
    pymic_command *cmd = pymic_stream_reserve(stream);
    alloc_table *t = &stream->device->table;
    pthread_mutex_lock(&t->lock);
    size_t index;
    pymic_alloc *alloc = find_containing(t, device_ptr, &index);
    if (!alloc || alloc->base != device_ptr)
        status = PYMIC_ERR_INVALID_POINTER;
    if (status == PYMIC_OK) {
        table_remove(t, index);
        pymic_stream_retain(stream);
        alloc->freed_by = (pymic_use){stream, pymic_stream_reserved_seq(stream)};
        alloc->pending_prev = NULL;
        alloc->pending_next = t->pending_head;
        if (t->pending_head)
            t->pending_head->pending_prev = alloc;
        t->pending_head = alloc;
        alloc->device->memory_pending += alloc->nbytes;
    }
    pthread_mutex_unlock(&t->lock);
    int owner = -1;
    if (status != PYMIC_OK) {
        pymic_stream_cancel(stream);
        /* Not this device's: whose, if anybody's? */
        if (!alloc && (owner = owner_elsewhere(stream->device, device_ptr)) >= 0)
            status = PYMIC_ERR_WRONG_DEVICE;
    }

    if (status == PYMIC_ERR_INVALID_POINTER && !alloc)
        return pymic_fail(status, "%s " PYMIC_STREAM_FMT ": %p is not a live allocation (never "
                          "allocated or already freed)", op, PYMIC_STREAM_ARGS(stream),
                          device_ptr);
    if (status == PYMIC_ERR_INVALID_POINTER)
        return pymic_fail(status, "%s " PYMIC_STREAM_FMT ": %p points inside an allocation, "
                          "not at its start", op, PYMIC_STREAM_ARGS(stream), device_ptr);
    if (status == PYMIC_ERR_WRONG_DEVICE)
        return pymic_fail(status, "%s " PYMIC_STREAM_FMT ": %p belongs to device %d", op,
                          PYMIC_STREAM_ARGS(stream), device_ptr, owner);

    /* The pointer is dead from now on; its memory goes back after every
     * command queued before this one has run. */
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
 * "source") for the message.  With a `user` stream, a range that passes
 * is recorded as used by its command `seq`, under the same lock, so the
 * allocation cannot be freed between the check and the record. */
static int check_range(const char *op, const char *what, pymic_device *device,
                       const void *ptr, size_t offset, size_t nbytes, alloc_view *view,
                       pymic_stream *user, uint64_t seq)
{
    alloc_table *t = &device->table;
    pthread_mutex_lock(&t->lock);
    pymic_alloc *alloc = find_containing(t, ptr, NULL);
    int owner = -1;
    bool inside = false, recorded = true;
    if (alloc) {
        view->base = (uintptr_t)alloc->base;
        view->nbytes = alloc->nbytes;
        owner = device->id;
        size_t start = (size_t)((uintptr_t)ptr - view->base); /* < nbytes */
        size_t room = view->nbytes - start;
        inside = offset < room && nbytes <= room - offset;
        if (inside && user)
            recorded = record_use(alloc, user, seq);
    }
    pthread_mutex_unlock(&t->lock);
    if (alloc && inside && recorded)
        return PYMIC_OK;
    if (!alloc)
        owner = owner_elsewhere(device, ptr);

    /* What the caller did: "copy to the device on stream 3 on device 0". */
    char who[128];
    if (user)
        snprintf(who, sizeof who, "%s " PYMIC_STREAM_FMT, op, PYMIC_STREAM_ARGS(user));
    else
        snprintf(who, sizeof who, "%s device %d", op, device->id);
    if (!alloc && owner < 0)
        return pymic_fail(PYMIC_ERR_INVALID_POINTER, "%s: %s %p is not a live allocation", who,
                          what, ptr);
    if (!alloc)
        return pymic_fail(PYMIC_ERR_WRONG_DEVICE, "%s: %s %p belongs to device %d", who, what,
                          ptr, owner);
    if (!inside)
        return pymic_fail(PYMIC_ERR_OUT_OF_RANGE,
                          "%s: %s range of %zu bytes at offset %zu from %p exceeds the "
                          "%zu-byte allocation at %p",
                          who, what, nbytes, offset, ptr, view->nbytes, (void *)view->base);
    return pymic_fail(PYMIC_ERR_SYSTEM, "%s: out of host memory", who);
}

int pymic_memory_claim(const char *op, const char *what, pymic_stream *stream,
                       const void *ptr, size_t offset, size_t nbytes, uint64_t seq)
{
    alloc_view view;
    return check_range(op, what, stream->device, ptr, offset, nbytes, &view, stream, seq);
}

int pymic_memory_note_uses(pymic_stream *stream, const pymic_arg *args, int nargs, uint64_t seq,
                           pymic_command *cmd)
{
    bool recorded = true;
    int npointers = 0;
    for (int i = 0; i < nargs; i++)
        npointers += args[i].size == 0 && args[i].data;
    if (npointers == 0)
        return PYMIC_OK;
    alloc_table *t = &stream->device->table;
    pthread_mutex_lock(&t->lock);
    for (int i = 0; i < nargs && recorded; i++) {
        if (args[i].size != 0 || !args[i].data)
            continue;
        pymic_alloc *alloc = find_containing(t, args[i].data, NULL);
        if (alloc) {
            recorded = record_use(alloc, stream, seq);
            cmd->arg_kind[i] = PYMIC_ARG_DEVICE;
        }
    }
    pthread_mutex_unlock(&t->lock);
    if (!recorded)
        return pymic_fail(PYMIC_ERR_SYSTEM, "invoke on " PYMIC_STREAM_FMT ": out of host memory",
                          PYMIC_STREAM_ARGS(stream));
    return PYMIC_OK;
}

int pymic_mem_query(int device, const void *device_ptr, void **base, size_t *nbytes)
{
    static const char op[] = "query of memory on";
    int status;
    pymic_device *d = pymic_device_lookup(device, op, &status);
    if (!d)
        return status;
    if (!base || !nbytes)
        return pymic_fail(PYMIC_ERR_INVALID_ARGUMENT, "%s: device %d: NULL output", op, device);
    alloc_view view;
    status = check_range(op, "pointer", d, device_ptr, 0, 0, &view, NULL, 0);
    if (status != PYMIC_OK)
        return status;
    *base = (void *)view.base;
    *nbytes = view.nbytes;
    return PYMIC_OK;
}

int pymic_mem_translate(int device, const void *device_ptr, size_t offset, uintptr_t *address)
{
    static const char op[] = "translation of a pointer on";
    int status;
    pymic_device *d = pymic_device_lookup(device, op, &status);
    if (!d)
        return status;
    if (!address)
        return pymic_fail(PYMIC_ERR_INVALID_ARGUMENT, "%s: device %d: NULL output", op, device);
    alloc_view view;
    status = check_range(op, "pointer", d, device_ptr, offset, 0, &view, NULL, 0);
    if (status != PYMIC_OK)
        return status;
    *address = (uintptr_t)device_ptr + offset;
    return PYMIC_OK;
}

/* -------------------------------------------------------------- transfers */

/* One device-side range of a copy: checked, and recorded as used by the
 * copy, once its slot is reserved. */
typedef struct copy_side {
    const char *what;
    const void *ptr;
    size_t offset;
} copy_side;

/* Check every device side, reserve a slot, record the uses, publish.
 * `host` is the host buffer when `has_host` (h2d, d2h); `label` names the
 * copy in a trace. */
static int enqueue_copy(const char *op, const char *label, int dir, pymic_stream *stream,
                        void *dst, const void *src, size_t nbytes, const copy_side *sides,
                        int nsides, bool has_host, const void *host)
{
    int status = pymic_stream_check(stream, op);
    if (status != PYMIC_OK)
        return status;
    if (nbytes == 0)
        return pymic_fail(PYMIC_ERR_INVALID_ARGUMENT, "%s " PYMIC_STREAM_FMT ": size is zero",
                          op, PYMIC_STREAM_ARGS(stream));
    if (has_host && !host)
        return pymic_fail(PYMIC_ERR_INVALID_ARGUMENT,
                          "%s " PYMIC_STREAM_FMT ": host buffer is NULL", op,
                          PYMIC_STREAM_ARGS(stream));
    pymic_command *cmd = pymic_stream_reserve(stream);
    uint64_t seq = pymic_stream_reserved_seq(stream);
    for (int i = 0; i < nsides; i++) {
        status = pymic_memory_claim(op, sides[i].what, stream, sides[i].ptr, sides[i].offset,
                                    nbytes, seq);
        if (status != PYMIC_OK) {
            /* A use recorded for the other side names a sequence number
             * the next command takes over: it only makes a free wait for
             * that command too. */
            pymic_stream_cancel(stream);
            return status;
        }
    }
    /* Source and destination may overlap only when both are addresses of
     * one space: a device-to-device copy (same device), or, on a device
     * whose memory is this process's at its device addresses, a host
     * buffer that is device memory.  Elsewhere a host and a device
     * address are never compared.  The backend then moves (memmove), as
     * memcpy would be undefined. */
    bool same_space = dir == PYMIC_COPY_D2D || stream->ops->host_addressable;
    bool overlap = same_space && (uintptr_t)dst < (uintptr_t)src + nbytes &&
                   (uintptr_t)src < (uintptr_t)dst + nbytes;
    cmd->kind = PYMIC_CMD_COPY;
    cmd->u.copy.dst = dst;
    cmd->u.copy.src = src;
    cmd->u.copy.nbytes = nbytes;
    cmd->u.copy.overlap = overlap;
    cmd->u.copy.dir = dir;
    pymic_trace_label(label);
    pymic_stream_publish(stream);
    return PYMIC_OK;
}

int pymic_memcpy_h2d(pymic_stream *stream, void *device_dst, size_t dst_offset,
                     const void *host_src, size_t nbytes)
{
    copy_side dst = {"destination", device_dst, dst_offset};
    return enqueue_copy("copy to the device on", "h2d", PYMIC_COPY_H2D, stream, (char *)device_dst + dst_offset,
                        host_src, nbytes, &dst, 1, true, host_src);
}

int pymic_memcpy_d2h(pymic_stream *stream, void *host_dst, const void *device_src,
                     size_t src_offset, size_t nbytes)
{
    copy_side src = {"source", device_src, src_offset};
    return enqueue_copy("copy from the device on", "d2h", PYMIC_COPY_D2H, stream, host_dst,
                        (const char *)device_src + src_offset, nbytes, &src, 1, true, host_dst);
}

int pymic_memcpy_d2d(pymic_stream *stream, void *device_dst, size_t dst_offset,
                     const void *device_src, size_t src_offset, size_t nbytes)
{
    copy_side sides[2] = {{"destination", device_dst, dst_offset},
                          {"source", device_src, src_offset}};
    return enqueue_copy("device-to-device copy on", "d2d", PYMIC_COPY_D2D, stream, (char *)device_dst + dst_offset,
                        (const char *)device_src + src_offset, nbytes, sides, 2, false, NULL);
}
