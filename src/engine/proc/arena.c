/*
 * arena.c -- device memory of a process device: ranges of the shared
 * arena, handed out by the host (the device process never allocates).
 *
 * First fit over a sorted list of free ranges, neighbours merged on
 * release.  Memory given back keeps its pages while there is little of
 * it: the next copy into a block of the same size then runs at full speed
 * (as with the host device's block cache).  Each free range knows the
 * span that may hold pages (*warm*: freed since its pages last went back);
 * once the warm pages of all free ranges pass PROC_WARM_MAX, every free
 * range's pages go back to the system (fallocate PUNCH_HOLE on the memfd:
 * the pages leave both processes' mappings and read as zeros if touched
 * again).  A reset gives back the pages of all free memory.  Only whole
 * pages inside a free range are returned: a page shared with a live block
 * stays.
 */
#include "proc.h"

#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>

typedef struct proc_range {
    uintptr_t start;
    size_t bytes;
    /* [warm_lo, warm_hi), clipped to the range: the part that may hold
     * pages.  Empty when warm_lo >= warm_hi. */
    uintptr_t warm_lo, warm_hi;
    struct proc_range *next;
} proc_range;

#define PROC_GRAIN ((size_t)64)
/* Most bytes of free device memory that keep their pages, per device. */
#define PROC_WARM_MAX ((size_t)64 << 20)

static uintptr_t page_down(uintptr_t a)
{
    return a & ~(uintptr_t)(PROC_PAGE - 1);
}

static uintptr_t page_up(uintptr_t a)
{
    return page_down(a + PROC_PAGE - 1);
}

/* The whole pages of `r` that may hold memory, [*lo, *hi); their bytes.
 * `all`: every whole page of the range, warm or not. */
static size_t pages_held(const proc_range *r, bool all, uintptr_t *lo, uintptr_t *hi)
{
    uintptr_t start = r->start, end = r->start + r->bytes;
    if (!all && r->warm_lo >= r->warm_hi)
        return 0;
    uintptr_t from = all || r->warm_lo < start ? start : r->warm_lo;
    uintptr_t to = all || r->warm_hi > end ? end : r->warm_hi;
    /* Pages the warm span touches, but only those wholly inside the range. */
    *lo = page_down(from) < page_up(start) ? page_up(start) : page_down(from);
    *hi = page_up(to) > page_down(end) ? page_down(end) : page_up(to);
    return *hi > *lo ? *hi - *lo : 0;
}

/* With arena_lock held: give the pages of `r` back to the system. */
static void return_pages(proc_device *pd, proc_range *r, bool all)
{
    uintptr_t lo, hi;
    if (pages_held(r, all, &lo, &hi) &&
        fallocate(pd->memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                  (off_t)(lo - (uintptr_t)pd->base), (off_t)(hi - lo)) != 0)
        pymic_log(1, "device %d: cannot return free memory to the system", pd->device->id);
    r->warm_lo = UINTPTR_MAX;
    r->warm_hi = 0;
}

/* Widen the warm span of `r` to cover [lo, hi) too. */
static void warm_up(proc_range *r, uintptr_t lo, uintptr_t hi)
{
    if (r->warm_lo >= r->warm_hi) {
        r->warm_lo = lo;
        r->warm_hi = hi;
        return;
    }
    if (lo < r->warm_lo)
        r->warm_lo = lo;
    if (hi > r->warm_hi)
        r->warm_hi = hi;
}

bool proc_arena_init(proc_device *pd)
{
    pthread_mutex_init(&pd->arena_lock, NULL);
    proc_range *all = malloc(sizeof *all);
    if (!all)
        return false;
    all->start = (uintptr_t)pd->base + PROC_DATA_OFFSET;
    all->bytes = pd->total - PROC_DATA_OFFSET;
    all->warm_lo = UINTPTR_MAX; /* never touched */
    all->warm_hi = 0;
    all->next = NULL;
    pd->free_ranges = all;
    return true;
}

void proc_arena_return_free(proc_device *pd)
{
    pthread_mutex_lock(&pd->arena_lock);
    for (proc_range *r = pd->free_ranges; r; r = r->next)
        return_pages(pd, r, true);
    pthread_mutex_unlock(&pd->arena_lock);
}

pymic_block *proc_arena_get(proc_device *pd, size_t nbytes, size_t alignment)
{
    if (alignment < PROC_GRAIN)
        alignment = PROC_GRAIN;
    size_t need = (nbytes + PROC_GRAIN - 1) & ~(PROC_GRAIN - 1);
    pymic_block *block = calloc(1, sizeof *block);
    proc_range *tail = malloc(sizeof *tail);
    if (!block || !tail) {
        free(block);
        free(tail);
        return NULL;
    }
    pthread_mutex_lock(&pd->arena_lock);
    proc_range **link = &pd->free_ranges, *r;
    for (r = *link; r; link = &r->next, r = r->next) {
        uintptr_t at = (r->start + alignment - 1) & ~(uintptr_t)(alignment - 1);
        size_t skip = at - r->start;
        if (skip > r->bytes || r->bytes - skip < need)
            continue;
        size_t after = r->bytes - skip - need;
        if (skip == 0 && after == 0) {
            *link = r->next;
            free(r);
        } else if (skip == 0) {
            r->start += need;
            r->bytes = after;
        } else {
            r->bytes = skip;
            if (after) {
                tail->start = at + need;
                tail->bytes = after;
                tail->warm_lo = r->warm_lo; /* both halves clip it */
                tail->warm_hi = r->warm_hi;
                tail->next = r->next;
                r->next = tail;
                tail = NULL;
            }
        }
        block->ptr = (void *)at;
        block->map = (void *)at;
        block->map_bytes = need;
        block->class_bytes = need;
        break;
    }
    pthread_mutex_unlock(&pd->arena_lock);
    free(tail);
    if (!r) {
        free(block);
        return NULL;
    }
    return block;
}

void proc_arena_put(proc_device *pd, pymic_block *block)
{
    uintptr_t start = (uintptr_t)block->map;
    size_t bytes = block->map_bytes;
    free(block);
    proc_range *node = malloc(sizeof *node);
    pthread_mutex_lock(&pd->arena_lock);
    proc_range *prev = NULL, *next = pd->free_ranges;
    while (next && next->start < start) {
        prev = next;
        next = next->next;
    }
    bool joins_prev = prev && prev->start + prev->bytes == start;
    bool joins_next = next && start + bytes == next->start;
    proc_range *merged = NULL;
    if (joins_prev && joins_next) {
        prev->bytes += bytes + next->bytes;
        prev->next = next->next;
        warm_up(prev, next->warm_lo, next->warm_hi);
        free(next);
        merged = prev;
    } else if (joins_prev) {
        prev->bytes += bytes;
        merged = prev;
    } else if (joins_next) {
        next->start = start;
        next->bytes += bytes;
        merged = next;
    } else if (node) {
        node->start = start;
        node->bytes = bytes;
        node->warm_lo = UINTPTR_MAX;
        node->warm_hi = 0;
        node->next = next;
        if (prev)
            prev->next = node;
        else
            pd->free_ranges = node;
        merged = node;
        node = NULL;
    }
    /* (Out of host memory for a list node: the range is lost, not reused.) */
    if (merged) {
        warm_up(merged, start, start + bytes);
        size_t warm = 0;
        uintptr_t lo, hi;
        for (proc_range *r = pd->free_ranges; r; r = r->next)
            warm += pages_held(r, false, &lo, &hi);
        if (warm > PROC_WARM_MAX)
            for (proc_range *r = pd->free_ranges; r; r = r->next)
                return_pages(pd, r, false);
    }
    pthread_mutex_unlock(&pd->arena_lock);
    free(node);
}
