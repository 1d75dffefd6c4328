/*
 * closing.c -- keep-alive lists of streams that have been destroyed.
 *
 * Destroying a stream never blocks (the engine drains it in the
 * background), but the host buffers its queued commands read or write must
 * live until those commands have run, and only a thread holding the GIL may
 * release them.  So a destroyed stream's keep-alive queue moves here with
 * an engine event recorded at the stream's end, and is released by the next
 * call that holds the GIL once that event has completed (the pattern of
 * libuv's closing handles).  At interpreter exit, and before anything that
 * must see every buffer back, closing_drain() waits for them (in slices,
 * so Ctrl-C still interrupts it).
 */
#include "engine_module.h"

typedef struct closing_entry {
    pymic_event *done; /* recorded after the stream's last command */
    keepalive_queue keep;
} closing_entry;

static closing_entry *entries;
static size_t count, capacity;
int closing_pending;

int closing_add(pymic_stream *stream, keepalive_queue *keep)
{
    pymic_event *done = NULL;
    if (count == capacity) {
        size_t grown = capacity ? 2 * capacity : 8;
        closing_entry *more = PyMem_Realloc(entries, grown * sizeof *more);
        if (!more)
            return -1;
        entries = more;
        capacity = grown;
    }
    if (pymic_event_create(&done) != PYMIC_OK)
        return -1;
    if (pymic_event_record(done, stream) != PYMIC_OK) {
        pymic_event_destroy(done);
        return -1;
    }
    entries[count].done = done;
    entries[count].keep = *keep;
    memset(keep, 0, sizeof *keep);
    count++;
    closing_pending = 1;
    return 0;
}

/* Release entry i (its commands have run) and close the gap. */
static void release_entry(size_t i)
{
    closing_entry entry = entries[i];
    entries[i] = entries[--count];
    closing_pending = count > 0;
    pymic_event_destroy(entry.done);
    /* May run destructors that enqueue work or destroy streams, which can
     * add entries: the array is consistent before this call. */
    keepalive_release_all(&entry.keep);
}

void closing_poll(void)
{
    for (size_t i = 0; i < count;) {
        if (pymic_event_query(entries[i].done) != 0)
            release_entry(i); /* done, or unusable here (after fork) */
        else
            i++;
    }
}

int closing_drain(void)
{
    while (count > 0) {
        wait_target target = {.kind = WAIT_EVENT, .event = entries[count - 1].done};
        int status = wait_interruptibly(&target);
        if (status == WAIT_INTERRUPTED)
            return -1; /* Ctrl-C: the rest stays on the list */
        if (status != PYMIC_OK) {
            release_entry(count - 1); /* nothing will ever run it here */
        } else {
            closing_poll();
        }
    }
    return 0;
}

void closing_after_fork_child(void)
{
    /* The commands belong to the parent's workers, which do not exist in
     * the child: nothing will touch these buffers here. */
    while (count > 0)
        release_entry(count - 1);
}
