/*
 * keepalive.c -- host objects kept alive until the commands using them end.
 *
 * The engine's threads never touch Python objects, so a stream cannot drop
 * a reference when a copy finishes.  Instead the stream records, for each
 * host buffer a queued command uses, the command's sequence number; entries
 * are released (with the GIL held) once pymic_stream_completed() has passed
 * that number: at sync, and opportunistically when new work is enqueued.
 */
#include "engine_module.h"

static int keepalive_reserve(keepalive_queue *queue)
{
    if (queue->tail < queue->capacity)
        return 0;
    size_t live = queue->tail - queue->head;
    /* Slide live entries to the front when at least half the array is spent;
     * otherwise grow it. */
    if (queue->head > 0 && live <= queue->capacity / 2) {
        memmove(queue->items, queue->items + queue->head, live * sizeof(*queue->items));
        queue->head = 0;
        queue->tail = live;
        return 0;
    }
    size_t capacity = queue->capacity ? queue->capacity * 2 : 16;
    keepalive_entry *items = PyMem_Realloc(queue->items, capacity * sizeof(*items));
    if (items == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    queue->items = items;
    queue->capacity = capacity;
    return 0;
}

int keepalive_push_view(keepalive_queue *queue, uint64_t seq, Py_buffer *view)
{
    if (keepalive_reserve(queue) < 0)
        return -1;
    keepalive_entry *entry = &queue->items[queue->tail++];
    entry->seq = seq;
    entry->view = *view;
    return 0;
}

void keepalive_release_until(keepalive_queue *queue, uint64_t completed)
{
    /* Releasing may run arbitrary destructors that enqueue more work on this
     * stream (and push entries), so advance head before each release. */
    while (queue->head < queue->tail && queue->items[queue->head].seq <= completed) {
        keepalive_entry entry = queue->items[queue->head++];
        PyBuffer_Release(&entry.view);
    }
    if (queue->head == queue->tail)
        queue->head = queue->tail = 0;
}

void keepalive_release_all(keepalive_queue *queue)
{
    keepalive_release_until(queue, UINT64_MAX);
    PyMem_Free(queue->items);
    queue->items = NULL;
    queue->head = queue->tail = queue->capacity = 0;
}

int keepalive_traverse(keepalive_queue *queue, visitproc visit, void *arg)
{
    for (size_t i = queue->head; i < queue->tail; i++)
        Py_VISIT(queue->items[i].view.obj);
    return 0;
}
