/*
 * bounds.c -- PYMIC_CHECK=bounds: canaries around every allocation.
 *
 * Each allocation gets PYMIC_CANARY_BYTES of a known pattern before its
 * start and at least as many after its end, up to a page boundary (the
 * backends place the block so that both exist: host/backend.c,
 * proc/arena.c).  After
 * every invoke the worker checks the canaries of the allocations the
 * kernel's arguments point into; the first one found overwritten becomes
 * the command's failure ("kernel 'k' wrote past the end of allocation
 * ...") and is re-armed, so the same damage is reported once.  Then, if
 * none was, it checks every other live allocation of the device -- a
 * kernel may write through a pointer it was not given as an argument --
 * but only when no other kernel of the device is between its start and
 * its own check (pymic_device.bounds_kernels): with kernels of several
 * streams running, damage outside this kernel's arguments is likelier
 * theirs, and blaming (and re-arming) it here lost it for the kernel that
 * did it, whose check then found nothing (seen: of two streams whose
 * kernels each overran their own buffer, one failure went unreported in
 * about 1 of 100 runs, the other stream's check having taken it).  A
 * process device also puts a PROT_NONE guard page after each allocation:
 * a write beyond the canary faults in the device process, which is then
 * reported as a lost device naming the allocation (proc/monitor.c).
 *
 * The host device has no guard page (a fault there would end the host
 * program): a write that jumps over its canaries into other memory is not
 * seen.  Reads out of bounds are never seen by canaries.
 *
 * This reads and writes device memory at its device addresses, so it is
 * the implementation of the bounds operations (backend.h) of the host-
 * addressable backends only (host, proc); another backend checks bounds
 * its own way or not at all.
 */
#include "engine.h"

#include <stdio.h>
#include <string.h>

static unsigned char pattern_at(uintptr_t address)
{
    /* Depends on the address: a block copied elsewhere does not pass. */
    return (unsigned char)(0xA5u ^ (address * 0x9Du >> 3));
}

size_t pymic_bounds_span(size_t nbytes, size_t alignment, size_t after)
{
    size_t bytes = PYMIC_CANARY_BYTES + alignment + nbytes + after;
    return (bytes + PYMIC_GUARD_PAGE - 1) & ~(PYMIC_GUARD_PAGE - 1);
}

/* The canary ranges of an allocation: before [lo, base), after
 * [end, page end). */
static void canary_ranges(const pymic_alloc *a, uintptr_t *lo, uintptr_t *end, uintptr_t *hi)
{
    uintptr_t base = (uintptr_t)a->base;
    *lo = base - PYMIC_CANARY_BYTES;
    *end = base + a->nbytes;
    /* To the end of the page PYMIC_CANARY_BYTES after the end: at least
     * that many bytes, inside the block's own span (host: its mapping ends
     * there; process device: the guard page, writable on the host side). */
    *hi = (*end + PYMIC_CANARY_BYTES + PYMIC_GUARD_PAGE - 1) & ~(PYMIC_GUARD_PAGE - 1);
}

static void fill(uintptr_t from, uintptr_t to)
{
    for (uintptr_t p = from; p < to; p++)
        *(unsigned char *)p = pattern_at(p);
}

/* The first address in [from, to) that lost its pattern, or 0. */
static uintptr_t first_changed(uintptr_t from, uintptr_t to)
{
    for (uintptr_t p = from; p < to; p++)
        if (*(const unsigned char *)p != pattern_at(p))
            return p;
    return 0;
}

void pymic_bounds_arm(pymic_device *device, const pymic_alloc *alloc)
{
    (void)device;
    uintptr_t lo, end, hi;
    canary_ranges(alloc, &lo, &end, &hi);
    fill(lo, (uintptr_t)alloc->base);
    fill(end, hi);
}

typedef struct bounds_scan {
    const pymic_command *cmd;
    bool arguments; /* this pass: the kernel's arguments, or the others */
    const pymic_alloc *hit;
    uintptr_t where;
    bool before;
} bounds_scan;

/* Whether an argument of the invoke points into `a` or its canaries (a
 * pointer just before its start is an address argument, not a device
 * one: it is the kernel's all the same). */
static bool argument_of(const pymic_command *cmd, const pymic_alloc *a)
{
    uintptr_t lo, end, hi;
    canary_ranges(a, &lo, &end, &hi);
    for (int i = 0; i < cmd->nargs; i++) {
        uintptr_t arg = (uintptr_t)cmd->args[i];
        if (cmd->arg_kind[i] != PYMIC_ARG_SCALAR && arg >= lo && arg < hi)
            return true;
    }
    return false;
}

static void check_one(pymic_alloc *a, void *arg)
{
    bounds_scan *scan = arg;
    if (scan->hit || argument_of(scan->cmd, a) != scan->arguments)
        return;
    uintptr_t lo, end, hi, changed;
    canary_ranges(a, &lo, &end, &hi);
    if ((changed = first_changed(lo, (uintptr_t)a->base)) != 0) {
        scan->before = true;
    } else if ((changed = first_changed(end, hi)) == 0) {
        return;
    }
    scan->hit = a;
    scan->where = changed;
    pymic_bounds_arm(a->device, a);
}

void pymic_bounds_after_invoke(pymic_stream *stream, const pymic_command *cmd)
{
    if (atomic_load_explicit(&stream->device->lost, memory_order_acquire))
        return; /* the kernel did not run (or did not finish) */
    bounds_scan scan = {cmd, true, NULL, 0, false};
    pymic_memory_visit(stream->device, check_one, &scan);
    if (!scan.hit &&
        atomic_load_explicit(&stream->device->bounds_kernels, memory_order_acquire) == 1) {
        scan.arguments = false;
        pymic_memory_visit(stream->device, check_one, &scan);
    }
    if (!scan.hit)
        return;
    uint64_t seq = atomic_load_explicit(&stream->completed, memory_order_relaxed) + 1;
    pymic_stream_fail_status(
        stream, seq, PYMIC_ERR_OUT_OF_RANGE,
        "device %d: kernel '%s' (command %llu) wrote %s allocation %p (%zu bytes)%s: the "
        "canary at %p was overwritten (PYMIC_CHECK=bounds)",
        stream->device->id, cmd->u.call.handle->name, (unsigned long long)seq,
        scan.before ? "before the start of" : "past the end of", scan.hit->base,
        scan.hit->nbytes, scan.arguments ? "" : ", which none of its arguments points into",
        (void *)scan.where);
}
