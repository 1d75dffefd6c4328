/*
 * parked.c -- releases that wait for other streams, without anyone waiting.
 *
 * Some resources may only go once several streams have passed a point:
 * device memory that other streams still read (freed in the order of one
 * stream, used by others), a library whose kernels are queued on every
 * stream of its device.  No thread may block for that -- a worker waiting
 * on another stream can deadlock, a destructor must return at once -- so
 * such a release is parked here with the uses it waits for (stream,
 * sequence number) and run by whoever polls next once all have passed.
 *
 * Workers poll after each command while anything is parked, so a parked
 * item goes as soon as the command it waited for completes; the count
 * keeps that check to one relaxed load when nothing is parked.
 *
 * Lock order: parked_lock, then whatever a release takes (the allocation
 * table, a block cache, the loader's lock in dlclose); nothing calls in
 * here with one of those held.
 */
#include "engine.h"

#include <stdlib.h>

typedef struct parked_item {
    struct parked_item *next;
    void (*release)(void *);
    void *arg;
    int nuses;
    pymic_use *uses;
} parked_item;

static pthread_mutex_t parked_lock = PTHREAD_MUTEX_INITIALIZER;
static parked_item *parked_head; /* guarded by parked_lock */
_Atomic int pymic_parked_count;

/* A use is over once its stream has passed it -- or, in the child of a
 * fork, if the stream is the parent's: nothing runs it here. */
static bool use_over(const pymic_use *use)
{
    return pymic_stream_passed(use->stream, use->seq) || pymic_stream_inherited(use->stream);
}

static bool all_passed(const pymic_use *uses, int n)
{
    for (int i = 0; i < n; i++)
        if (!use_over(&uses[i]))
            return false;
    return true;
}

static void drop_uses(pymic_use *uses, int n)
{
    for (int i = 0; i < n; i++)
        pymic_stream_release(uses[i].stream);
    free(uses);
}

void pymic_release_after(pymic_use *uses, int n, void (*release)(void *), void *arg)
{
    if (all_passed(uses, n)) {
        release(arg);
        drop_uses(uses, n);
        return;
    }
    parked_item *item = malloc(sizeof *item);
    if (!item) {
        /* Out of host memory: waiting is the only safe way left. */
        for (int i = 0; i < n; i++)
            pymic_wait_geq(&uses[i].stream->done_q, &uses[i].stream->completed, uses[i].seq);
        release(arg);
        drop_uses(uses, n);
        return;
    }
    item->release = release;
    item->arg = arg;
    item->nuses = n;
    item->uses = uses;
    pthread_mutex_lock(&parked_lock);
    item->next = parked_head;
    parked_head = item;
    atomic_fetch_add_explicit(&pymic_parked_count, 1, memory_order_seq_cst);
    pthread_mutex_unlock(&parked_lock);
    /* The uses may have passed between the check above and the count
     * becoming visible to the workers: look once more. */
    pymic_parked_poll();
}

void pymic_parked_poll(void)
{
    /* Releases run under the lock: a poll that returns has seen every
     * release it could do finished, even one another thread started, so
     * "sync, then poll" is a point after which released means released. */
    pthread_mutex_lock(&parked_lock);
    for (parked_item **link = &parked_head; *link;) {
        parked_item *item = *link;
        if (!all_passed(item->uses, item->nuses)) {
            link = &item->next;
            continue;
        }
        *link = item->next;
        item->release(item->arg);
        drop_uses(item->uses, item->nuses);
        free(item);
        /* Counted down only once released: a poller that sees a count of
         * zero may rely on every release being finished. */
        atomic_fetch_sub_explicit(&pymic_parked_count, 1, memory_order_release);
    }
    pthread_mutex_unlock(&parked_lock);
}

void pymic_parked_drain(void)
{
    for (;;) {
        pymic_use wait_for = {NULL, 0};
        pthread_mutex_lock(&parked_lock);
        for (parked_item *item = parked_head; item && !wait_for.stream; item = item->next) {
            for (int i = 0; i < item->nuses; i++) {
                if (!use_over(&item->uses[i])) {
                    wait_for = item->uses[i];
                    pymic_stream_retain(wait_for.stream);
                    break;
                }
            }
        }
        pthread_mutex_unlock(&parked_lock);
        pymic_parked_poll();
        if (!wait_for.stream)
            return;
        pymic_wait_geq(&wait_for.stream->done_q, &wait_for.stream->completed, wait_for.seq);
        pymic_stream_release(wait_for.stream);
    }
}

void pymic_parked_prefork(void)
{
    pthread_mutex_lock(&parked_lock);
}

void pymic_parked_postfork_parent(void)
{
    pthread_mutex_unlock(&parked_lock);
}

void pymic_parked_postfork_child(void)
{
    pthread_mutex_init(&parked_lock, NULL);
}
