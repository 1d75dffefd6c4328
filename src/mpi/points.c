/*
 * points.c -- event points on the device side (protocol.h, "Points").
 *
 * One table for the device process, a hash of short chains under one
 * lock: a point is looked at three or four times in its life (its record,
 * a wait or two, its forgetting), each for a few instructions, so one lock
 * is plenty; waiters sleep on one condition variable, woken by every mark.
 * Points wait on a condition variable rather than the MPI pacing of
 * progress.c: the waiting slot's thread has nothing to poll meanwhile (its
 * next request's receive is posted and lands on its own).
 */
#include "points.h"

#include <pthread.h>
#include <stdlib.h>

#define BUCKETS 256

typedef struct point {
    uint64_t id;
    bool marked, failed;
    /* Given up by a reset before it was marked: waits on it fail. */
    bool abandoned;
    struct point *next;
} point;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t changed = PTHREAD_COND_INITIALIZER;
static point *buckets[BUCKETS];
/* Bumped by points_abandon: a wait under way sees it and gives up. */
static uint64_t abandons;
/* The device's generation (its resets, as the host counts them). */
static uint64_t current_generation;

static point **link_of(uint64_t id)
{
    point **link = &buckets[(id ^ (id >> 8)) % BUCKETS];
    while (*link && (*link)->id != id)
        link = &(*link)->next;
    return link;
}

/* The point `id`, made if it is new (lock held); NULL without memory. */
static point *find_or_make(uint64_t id)
{
    point **link = link_of(id);
    if (!*link) {
        *link = calloc(1, sizeof **link);
        if (*link)
            (*link)->id = id;
    }
    return *link;
}

void points_mark(uint64_t id, bool failed)
{
    pthread_mutex_lock(&lock);
    point *p = find_or_make(id);
    if (p) {
        p->marked = true;
        p->failed = failed;
        p->abandoned = false;
    }
    pthread_cond_broadcast(&changed);
    pthread_mutex_unlock(&lock);
}

enum point_outcome points_wait(uint64_t id, uint64_t generation)
{
    pthread_mutex_lock(&lock);
    if (generation != current_generation) {
        pthread_mutex_unlock(&lock);
        return POINT_ABANDONED;
    }
    uint64_t seen = abandons;
    point *p = find_or_make(id);
    while (p && !p->marked && !p->abandoned && abandons == seen)
        pthread_cond_wait(&changed, &lock);
    enum point_outcome outcome = !p || !p->marked ? POINT_ABANDONED
                               : p->failed        ? POINT_FAILED
                                                  : POINT_REACHED;
    pthread_mutex_unlock(&lock);
    return outcome;
}

void points_forget(const uint64_t *ids, uint64_t n)
{
    if (n == 0)
        return;
    pthread_mutex_lock(&lock);
    for (uint64_t i = 0; i < n; i++) {
        point **link = link_of(ids[i]);
        point *p = *link;
        if (p) {
            *link = p->next;
            free(p);
        }
    }
    pthread_mutex_unlock(&lock);
}

void points_set_generation(uint64_t generation)
{
    pthread_mutex_lock(&lock);
    current_generation = generation;
    pthread_mutex_unlock(&lock);
}

void points_abandon(uint64_t generation)
{
    pthread_mutex_lock(&lock);
    current_generation = generation;
    abandons++;
    for (int b = 0; b < BUCKETS; b++)
        for (point *p = buckets[b]; p; p = p->next)
            if (!p->marked)
                p->abandoned = true;
    pthread_cond_broadcast(&changed);
    pthread_mutex_unlock(&lock);
}
