/*
 * arena.c -- device memory of a process device: ranges of the shared
 * arena, handed out by the host (the device process never allocates).
 *
 * First fit over a sorted list of free ranges, neighbours merged on
 * release.  Memory given back stays mapped in both processes (its pages
 * are already touched, so the next copy into it runs at full speed).
 */
#include "proc.h"

#include <stdlib.h>

typedef struct proc_range {
    uintptr_t start;
    size_t bytes;
    struct proc_range *next;
} proc_range;

#define PROC_GRAIN ((size_t)64)

bool proc_arena_init(proc_device *pd)
{
    pthread_mutex_init(&pd->arena_lock, NULL);
    proc_range *all = malloc(sizeof *all);
    if (!all)
        return false;
    all->start = (uintptr_t)pd->base + PROC_DATA_OFFSET;
    all->bytes = pd->total - PROC_DATA_OFFSET;
    all->next = NULL;
    pd->free_ranges = all;
    return true;
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
    if (joins_prev && joins_next) {
        prev->bytes += bytes + next->bytes;
        prev->next = next->next;
        free(next);
    } else if (joins_prev) {
        prev->bytes += bytes;
    } else if (joins_next) {
        next->start = start;
        next->bytes += bytes;
    } else if (node) {
        node->start = start;
        node->bytes = bytes;
        node->next = next;
        if (prev)
            prev->next = node;
        else
            pd->free_ranges = node;
        node = NULL;
    }
    /* (Out of host memory for a list node: the range is lost, not reused.) */
    pthread_mutex_unlock(&pd->arena_lock);
    free(node);
}
