/*
 * test_trace.c -- the engine's trace recorder: what a two-stream run
 * records (kinds, names, bytes, streams, order enforced by an event), host
 * waits (stream sync, event sync, device sync, waiting for room), sessions,
 * a full buffer, streams created or destroyed while tracing, the numbers
 * linking an event's record to its waits, and the call-site hook.
 *
 * argv[1]: the test kernel library.
 */
#include "check.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static pymic_kernel *k_gate, *k_increment, *k_empty;

static pymic_kernel *find(pymic_library *l, const char *name)
{
    pymic_kernel *k = NULL;
    CHECK_OK(pymic_kernel_find(l, name, &k));
    return k;
}

static void read_all(pymic_trace_command **c, size_t *nc, pymic_trace_wait **w, size_t *nw,
                     uint64_t *dropped)
{
    CHECK_OK(pymic_trace_read(c, nc, w, nw, dropped));
}

/* The first command of `stream` named `name` at or after index `from`. */
static const pymic_trace_command *command(const pymic_trace_command *c, size_t n, int stream,
                                          const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (c[i].stream == stream && strcmp(c[i].name, name) == 0)
            return &c[i];
    return NULL;
}

static int count_waits(const pymic_trace_wait *w, size_t n, int kind, int stream)
{
    int found = 0;
    for (size_t i = 0; i < n; i++)
        if (w[i].kind == kind && (stream < 0 || w[i].stream == stream))
            found++;
    return found;
}

static void test_two_streams(void)
{
    pymic_stream *a, *b;
    CHECK_OK(pymic_stream_create(0, &a));
    CHECK_STATUS(pymic_trace_stream_number(a), 0);
    CHECK_OK(pymic_trace_start(0));
    CHECK_STATUS(pymic_trace_active(), 1);
    CHECK_STATUS(pymic_trace_start(0), PYMIC_ERR_INVALID_ARGUMENT);
    CHECK_MESSAGE("already");
    /* Created while tracing: armed by the creation hook. */
    CHECK_OK(pymic_stream_create(0, &b));
    int na = pymic_trace_stream_number(a), nb = pymic_trace_stream_number(b);
    CHECK(na > 0 && nb > 0 && na != nb);

    static _Atomic int64_t gate;
    atomic_store(&gate, 0);
    static int64_t host[512], counter;
    void *dev = NULL;
    CHECK_OK(pymic_mem_alloc(0, sizeof host, 64, &dev));
    pymic_event *e;
    CHECK_OK(pymic_event_create(&e));

    /* a: a kernel held by the gate, then an event; b: waits for the event,
     * so its copy can only start after a's kernel has ended. */
    pymic_arg gate_arg = {(const void *)&gate, 0};
    CHECK_OK(pymic_invoke(a, k_gate, 1, &gate_arg));
    CHECK_OK(pymic_event_record(e, a));
    CHECK_OK(pymic_stream_wait_event(b, e));
    CHECK_OK(pymic_memcpy_h2d(b, dev, 0, host, sizeof host));
    pymic_arg counter_arg = {&counter, 0};
    CHECK_OK(pymic_invoke(b, k_increment, 1, &counter_arg));
    CHECK_OK(pymic_memcpy_d2h(b, host, dev, 0, 1024));
    CHECK_OK(pymic_memcpy_d2d(b, dev, 2048, dev, 0, 8));
    CHECK_OK(pymic_mem_free(b, dev));
    atomic_store(&gate, 1);
    CHECK_OK(pymic_stream_sync(b));
    CHECK_OK(pymic_event_sync(e));
    CHECK_OK(pymic_device_sync(0));
    CHECK_OK(pymic_trace_stop());
    CHECK_STATUS(pymic_trace_active(), 0);
    /* After stopping, nothing more is recorded. */
    CHECK_OK(pymic_invoke(a, k_empty, 0, NULL));
    CHECK_OK(pymic_stream_sync(a));

    pymic_trace_command *c;
    pymic_trace_wait *w;
    size_t nc, nw;
    uint64_t dropped = 99;
    read_all(&c, &nc, &w, &nw, &dropped);
    CHECK(dropped == 0);
    CHECK(nc == 8);
    const pymic_trace_command *gated = command(c, nc, na, "wait_for_gate");
    const pymic_trace_command *record = command(c, nc, na, "record event");
    const pymic_trace_command *wait = command(c, nc, nb, "wait event");
    const pymic_trace_command *h2d = command(c, nc, nb, "h2d");
    const pymic_trace_command *inc = command(c, nc, nb, "increment");
    const pymic_trace_command *d2h = command(c, nc, nb, "d2h");
    const pymic_trace_command *d2d = command(c, nc, nb, "d2d");
    const pymic_trace_command *freed = command(c, nc, nb, "free");
    CHECK(gated && record && wait && h2d && inc && d2h && d2d && freed);
    CHECK(command(c, nc, na, "empty_kernel") == NULL);
    if (gated && record && wait && h2d && inc && d2h && d2d && freed) {
        CHECK(gated->kind == PYMIC_TRACE_INVOKE && inc->kind == PYMIC_TRACE_INVOKE);
        CHECK(h2d->kind == PYMIC_TRACE_COPY_H2D && h2d->bytes == sizeof host);
        CHECK(d2h->kind == PYMIC_TRACE_COPY_D2H && d2h->bytes == 1024);
        CHECK(d2d->kind == PYMIC_TRACE_COPY_D2D && d2d->bytes == 8);
        CHECK(freed->kind == PYMIC_TRACE_FREE && freed->bytes == 0);
        CHECK(record->kind == PYMIC_TRACE_RECORD_EVENT && wait->kind == PYMIC_TRACE_WAIT_EVENT);
        /* The record and the wait it released carry the same number, as
         * does the event sync's target; other commands carry none. */
        CHECK(record->event_record > 0 && wait->event_record == record->event_record);
        CHECK(gated->event_record == 0 && h2d->event_record == 0);
        for (size_t i = 0; i < nw; i++)
            if (w[i].kind == PYMIC_TRACE_WAIT_EVENT_SYNC)
                CHECK(w[i].target == record->event_record);
        CHECK(gated->device == 0 && h2d->device == 0);
        CHECK(gated->seq + 1 == record->seq && h2d->seq + 1 == inc->seq);
        for (size_t i = 0; i < nc; i++) {
            CHECK(c[i].enqueue_ns > 0 && c[i].enqueue_ns <= c[i].start_ns);
            CHECK(c[i].start_ns <= c[i].end_ns);
            CHECK(c[i].host_thread > 0);
        }
        /* In-stream order, and the event's cross-stream order. */
        CHECK(gated->end_ns <= record->start_ns);
        CHECK(record->start_ns <= wait->end_ns); /* the wait ends once the record ran */
        CHECK(gated->end_ns <= h2d->start_ns);
        CHECK(h2d->end_ns <= inc->start_ns && inc->end_ns <= d2h->start_ns);
        /* b was enqueued while a's kernel was held: all of it waited. */
        CHECK(h2d->enqueue_ns < gated->end_ns);
    }
    CHECK(count_waits(w, nw, PYMIC_TRACE_WAIT_STREAM, nb) == 1);
    CHECK(count_waits(w, nw, PYMIC_TRACE_WAIT_EVENT_SYNC, -1) == 1);
    CHECK(count_waits(w, nw, PYMIC_TRACE_WAIT_DEVICE, -1) == 1);
    /* The sync of `a` after stopping is not recorded. */
    CHECK(count_waits(w, nw, PYMIC_TRACE_WAIT_STREAM, na) == 0);
    for (size_t i = 0; i < nw; i++) {
        CHECK(w[i].start_ns <= w[i].end_ns && w[i].host_thread > 0 && !w[i].timed_out);
        if (w[i].kind == PYMIC_TRACE_WAIT_STREAM && inc)
            CHECK(w[i].end_ns >= inc->end_ns); /* the sync waited for b's work */
    }
    pymic_trace_free(c);
    pymic_trace_free(w);

    /* The records survive b's destruction; a new trace discards them. */
    CHECK_OK(pymic_stream_destroy(b));
    read_all(&c, &nc, NULL, NULL, NULL);
    CHECK(nc == 8);
    pymic_trace_free(c);
    CHECK_OK(pymic_trace_start(0));
    CHECK_OK(pymic_invoke(a, k_empty, 0, NULL));
    CHECK_STATUS(pymic_stream_wait_seq_timeout(a, pymic_stream_last_enqueued(a), 5000000000u),
                 PYMIC_OK);
    CHECK_OK(pymic_trace_stop());
    read_all(&c, &nc, &w, &nw, NULL);
    CHECK(nc == 1 && strcmp(c[0].name, "empty_kernel") == 0 && c[0].stream == na);
    CHECK(count_waits(w, nw, PYMIC_TRACE_WAIT_STREAM, na) == 1);
    pymic_trace_free(c);
    pymic_trace_free(w);

    CHECK_OK(pymic_event_destroy(e));
    CHECK_OK(pymic_stream_destroy(a));
}

static void test_full_buffer(void)
{
    pymic_stream *s;
    CHECK_OK(pymic_stream_create(0, &s));
    CHECK_OK(pymic_trace_start(4));
    for (int i = 0; i < 10; i++)
        CHECK_OK(pymic_invoke(s, k_empty, 0, NULL));
    CHECK_OK(pymic_stream_sync(s));
    CHECK_OK(pymic_trace_stop());
    pymic_trace_command *c;
    size_t nc;
    uint64_t dropped;
    read_all(&c, &nc, NULL, NULL, &dropped);
    CHECK(nc == 4 && dropped == 6);
    for (size_t i = 0; i < nc; i++)
        CHECK(c[i].end_ns >= c[i].start_ns && c[i].start_ns > 0);
    pymic_trace_free(c);
    CHECK_OK(pymic_stream_destroy(s));
}

typedef struct opener {
    pymic_stream *stream;
    _Atomic int64_t *gate;
} opener;

/* Opens the gate once the ring is full and the producer had ample time to
 * start waiting for room. */
static void *open_when_full(void *arg)
{
    opener *o = arg;
    while (pymic_stream_last_enqueued(o->stream) < (uint64_t)pymic_stream_capacity(o->stream))
        sched_yield();
    struct timespec pause = {0, 200000000};
    nanosleep(&pause, NULL);
    atomic_store(o->gate, 1);
    return NULL;
}

static void test_room_wait(void)
{
    pymic_stream *s;
    CHECK_OK(pymic_stream_create(0, &s));
    static _Atomic int64_t gate;
    atomic_store(&gate, 0);
    CHECK_OK(pymic_trace_start(0));
    opener o = {s, &gate};
    pthread_t thread;
    CHECK(pthread_create(&thread, NULL, open_when_full, &o) == 0);
    pymic_arg gate_arg = {(const void *)&gate, 0};
    CHECK_OK(pymic_invoke(s, k_gate, 1, &gate_arg));
    int capacity = pymic_stream_capacity(s);
    for (int i = 0; i < capacity + 1; i++)
        CHECK_OK(pymic_invoke(s, k_empty, 0, NULL));
    pthread_join(thread, NULL);
    CHECK_OK(pymic_stream_sync(s));
    CHECK_OK(pymic_trace_stop());
    pymic_trace_command *c;
    pymic_trace_wait *w;
    size_t nc, nw;
    read_all(&c, &nc, &w, &nw, NULL);
    CHECK(nc == (size_t)capacity + 2);
    int number = pymic_trace_stream_number(s);
    CHECK(count_waits(w, nw, PYMIC_TRACE_WAIT_ROOM, number) >= 1);
    for (size_t i = 0; i < nw; i++)
        if (w[i].kind == PYMIC_TRACE_WAIT_ROOM) {
            if (!(w[i].target >= 1 && w[i].target <= 2))
                fprintf(stderr, "room wait target %llu\n", (unsigned long long)w[i].target);
            CHECK(w[i].target >= 1 && w[i].target <= 2 && w[i].device == 0);
            /* Waiting for the gated kernel's slot began while it ran. */
            if (w[i].target == 1)
                CHECK(strcmp(c[0].name, "wait_for_gate") == 0 && c[0].end_ns >= w[i].start_ns);
        }
    pymic_trace_free(c);
    pymic_trace_free(w);
    CHECK_OK(pymic_stream_destroy(s));
}

/* The child of a fork() starts with tracing off and can trace its own
 * streams; the parent's recording goes on. */
static void test_fork(void)
{
    pymic_stream *s;
    CHECK_OK(pymic_stream_create(0, &s));
    CHECK_OK(pymic_trace_start(0));
    CHECK_OK(pymic_invoke(s, k_empty, 0, NULL));
    fflush(NULL);
    pid_t child = fork();
    if (child == 0) {
        int bad = pymic_trace_active() != 0;
#if defined(__SANITIZE_THREAD__)
        /* ThreadSanitizer cannot start threads after a multi-threaded
         * fork: check only that recording is off. */
        _exit(bad);
#endif
        pymic_stream *mine;
        bad |= pymic_stream_create(0, &mine) != PYMIC_OK;
        bad |= pymic_trace_start(0) != PYMIC_OK;
        bad |= pymic_invoke(mine, k_empty, 0, NULL) != PYMIC_OK;
        bad |= pymic_stream_sync(mine) != PYMIC_OK;
        bad |= pymic_trace_stop() != PYMIC_OK;
        pymic_trace_command *c = NULL;
        size_t nc = 0;
        bad |= pymic_trace_read(&c, &nc, NULL, NULL, NULL) != PYMIC_OK;
        bad |= nc != 1 || c[0].start_ns == 0;
        _exit(bad);
    }
    int status = -1;
    CHECK(child > 0 && waitpid(child, &status, 0) == child);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK_STATUS(pymic_trace_active(), 1);
    CHECK_OK(pymic_invoke(s, k_empty, 0, NULL));
    CHECK_OK(pymic_stream_sync(s));
    CHECK_OK(pymic_trace_stop());
    pymic_trace_command *c;
    size_t nc;
    read_all(&c, &nc, NULL, NULL, NULL);
    CHECK(nc == 2);
    pymic_trace_free(c);
    CHECK_OK(pymic_stream_destroy(s));
}

/* The site hook: called on the enqueuing thread for each command while
 * tracing, never otherwise; its answer lands in the record. */
static _Thread_local uint32_t current_site;
static _Atomic int site_calls;

static uint32_t site_of_this_thread(void)
{
    atomic_fetch_add(&site_calls, 1);
    return current_site;
}

static void test_site_hook(void)
{
    pymic_stream *s;
    CHECK_OK(pymic_stream_create(0, &s));
    pymic_trace_set_site_hook(site_of_this_thread);
    current_site = 7;
    CHECK_OK(pymic_invoke(s, k_empty, 0, NULL));
    CHECK_OK(pymic_stream_sync(s));
    CHECK(atomic_load(&site_calls) == 0); /* not tracing: never called */
    CHECK_OK(pymic_trace_start(0));
    CHECK_OK(pymic_invoke(s, k_empty, 0, NULL));
    current_site = 8;
    static int64_t word;
    void *dev = NULL;
    CHECK_OK(pymic_mem_alloc(0, 8, 64, &dev));
    CHECK_OK(pymic_memcpy_h2d(s, dev, 0, &word, 8));
    CHECK_OK(pymic_mem_free(s, dev));
    /* A wait that must time out (the gate is closed): recorded with the
     * site of the thread that waited. */
    static _Atomic int64_t gate;
    atomic_store(&gate, 0);
    pymic_arg gate_arg = {(const void *)&gate, 0};
    CHECK_OK(pymic_invoke(s, k_gate, 1, &gate_arg));
    current_site = 9;
    CHECK_STATUS(pymic_stream_wait_seq_timeout(s, pymic_stream_last_enqueued(s), 1000000),
                 PYMIC_ERR_TIMEOUT);
    atomic_store(&gate, 1);
    current_site = 10;
    CHECK_OK(pymic_stream_sync(s));
    CHECK_OK(pymic_trace_stop());
    pymic_trace_command *c;
    pymic_trace_wait *w;
    size_t nc, nw;
    read_all(&c, &nc, &w, &nw, NULL);
    CHECK(nc == 4 && nw >= 1 && atomic_load(&site_calls) == 4 + (int)nw);
    if (nc == 4) {
        CHECK(c[0].site == 7 && strcmp(c[0].name, "empty_kernel") == 0);
        CHECK(c[1].site == 8 && c[2].site == 8 && c[3].site == 8);
    }
    int timed_out = 0;
    for (size_t i = 0; i < nw; i++) {
        CHECK(w[i].site == (w[i].timed_out ? 9u : 10u));
        timed_out += w[i].timed_out;
    }
    CHECK(timed_out == 1);
    pymic_trace_free(c);
    pymic_trace_free(w);
    int calls = atomic_load(&site_calls);
    pymic_trace_set_site_hook(NULL);
    CHECK_OK(pymic_trace_start(0));
    CHECK_OK(pymic_invoke(s, k_empty, 0, NULL));
    CHECK_OK(pymic_stream_sync(s));
    CHECK_OK(pymic_trace_stop());
    read_all(&c, &nc, NULL, NULL, NULL);
    CHECK(nc == 1 && c[0].site == 0 && atomic_load(&site_calls) == calls);
    pymic_trace_free(c);
    CHECK_OK(pymic_stream_destroy(s));
}

static void test_nothing_before_start(void)
{
    pymic_trace_command *c = (void *)1;
    pymic_trace_wait *w = (void *)1;
    size_t nc = 7, nw = 7;
    CHECK_OK(pymic_trace_read(&c, &nc, &w, &nw, NULL));
    CHECK(nc == 0 && nw == 0 && c && w);
    pymic_trace_free(c);
    pymic_trace_free(w);
    CHECK_STATUS(pymic_trace_active(), 0);
    CHECK_OK(pymic_trace_stop());
    CHECK_OK(pymic_trace_read(NULL, NULL, NULL, NULL, NULL));
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s <test kernel library>\n", argv[0]);
        return 2;
    }
    pymic_library *lib;
    CHECK_OK(pymic_library_load(0, argv[1], &lib));
    k_gate = find(lib, "wait_for_gate");
    k_increment = find(lib, "increment");
    k_empty = find(lib, "empty_kernel");
    test_nothing_before_start();
    test_two_streams();
    test_full_buffer();
    test_room_wait();
    test_fork();
    test_site_hook();
    CHECK_OK(pymic_library_unload(lib));
    return check_finish();
}
