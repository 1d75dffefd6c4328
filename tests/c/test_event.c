/*
 * test_event.c -- events: record, query, sync, elapsed time, ordering
 * across streams, and the NOT_RECORDED / not-completed errors.
 *
 * argv[1]: the test kernel library.
 */
#include "check.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>

static pymic_kernel *k_gate, *k_append, *k_sleep;

static pymic_kernel *find(pymic_library *l, const char *name)
{
    pymic_kernel *k = NULL;
    CHECK_OK(pymic_kernel_find(l, name, &k));
    return k;
}

static void test_unrecorded(void)
{
    pymic_event *e, *f;
    pymic_stream *s;
    CHECK_OK(pymic_event_create(&e));
    CHECK_OK(pymic_event_create(&f));
    CHECK_OK(pymic_stream_create(0, &s));
    double seconds;
    CHECK_STATUS(pymic_event_sync(e), PYMIC_ERR_NOT_RECORDED);
    CHECK_MESSAGE("never recorded");
    CHECK_STATUS(pymic_event_query(e), PYMIC_ERR_NOT_RECORDED);
    CHECK_STATUS(pymic_stream_wait_event(s, e), PYMIC_ERR_NOT_RECORDED);
    CHECK_STATUS(pymic_event_elapsed(e, f, &seconds), PYMIC_ERR_NOT_RECORDED);
    CHECK_OK(pymic_event_record(e, s));
    CHECK_STATUS(pymic_event_elapsed(e, f, &seconds), PYMIC_ERR_NOT_RECORDED);
    CHECK_MESSAGE("end event");

    CHECK_STATUS(pymic_event_create(NULL), PYMIC_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(pymic_event_record(NULL, s), PYMIC_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(pymic_event_record(e, NULL), PYMIC_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(pymic_stream_wait_event(NULL, e), PYMIC_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(pymic_stream_wait_event(s, NULL), PYMIC_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(pymic_event_sync(NULL), PYMIC_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(pymic_event_query(NULL), PYMIC_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(pymic_event_destroy(NULL), PYMIC_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(pymic_event_elapsed(e, NULL, &seconds), PYMIC_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(pymic_event_elapsed(e, f, NULL), PYMIC_ERR_INVALID_ARGUMENT);

    CHECK_OK(pymic_stream_destroy(s));
    CHECK_OK(pymic_event_destroy(e));
    CHECK_OK(pymic_event_destroy(f));
}

static void test_record_query_elapsed(void)
{
    pymic_stream *s;
    pymic_event *start, *end;
    CHECK_OK(pymic_stream_create(0, &s));
    CHECK_OK(pymic_event_create(&start));
    CHECK_OK(pymic_event_create(&end));

    _Atomic int64_t gate = 0;
    pymic_arg gate_arg = {(void *)&gate, 0};
    int64_t ms = 20;
    pymic_arg ms_arg = {&ms, sizeof ms};
    CHECK_OK(pymic_invoke(s, k_gate, 1, &gate_arg));
    CHECK_OK(pymic_event_record(start, s));
    CHECK_OK(pymic_invoke(s, k_sleep, 1, &ms_arg));
    CHECK_OK(pymic_event_record(end, s));
    /* Held by the gate: nothing has completed. */
    CHECK(pymic_event_query(start) == 0);
    CHECK(pymic_event_query(end) == 0);
    double seconds = -1;
    CHECK_STATUS(pymic_event_elapsed(start, end, &seconds), PYMIC_ERR_INVALID_ARGUMENT);
    CHECK_MESSAGE("not completed");
    atomic_store(&gate, 1);
    CHECK_OK(pymic_event_sync(end));
    CHECK(pymic_event_query(start) == 1);
    CHECK(pymic_event_query(end) == 1);
    CHECK_OK(pymic_event_elapsed(start, end, &seconds));
    CHECK(seconds >= 0.019 && seconds < 5.0);

    /* Re-recording moves the event; its time is the new point's. */
    CHECK_OK(pymic_invoke(s, k_sleep, 1, &ms_arg));
    CHECK_OK(pymic_event_record(start, s));
    CHECK_OK(pymic_event_sync(start));
    double after = 0;
    CHECK_OK(pymic_event_elapsed(end, start, &after));
    CHECK(after >= 0.019);

    CHECK_OK(pymic_stream_destroy(s));
    CHECK_OK(pymic_event_destroy(start));
    CHECK_OK(pymic_event_destroy(end));
}

/* Stream b waits for an event of stream a, which is held by a gate: b's
 * later commands must run after a's earlier ones, and the host must not
 * block in wait_event. */
static void test_cross_stream_order(void)
{
    pymic_stream *a, *b;
    pymic_event *e;
    CHECK_OK(pymic_stream_create(0, &a));
    CHECK_OK(pymic_stream_create(0, &b));
    CHECK_OK(pymic_event_create(&e));
    int64_t log[8] = {0};
    _Atomic int64_t gate = 0;
    pymic_arg gate_arg = {(void *)&gate, 0};
    int64_t one = 1, two = 2;
    pymic_arg from_a[2] = {{log, 0}, {&one, sizeof one}};
    pymic_arg from_b[2] = {{log, 0}, {&two, sizeof two}};

    CHECK_OK(pymic_invoke(a, k_gate, 1, &gate_arg));
    CHECK_OK(pymic_invoke(a, k_append, 2, from_a));
    CHECK_OK(pymic_event_record(e, a));
    CHECK_OK(pymic_stream_wait_event(b, e)); /* returns at once */
    CHECK_OK(pymic_invoke(b, k_append, 2, from_b));
    CHECK(pymic_stream_query(b) == 0);
    atomic_store(&gate, 1);
    CHECK_OK(pymic_stream_sync(b));
    CHECK(log[0] == 2 && log[1] == 1 && log[2] == 2);

    /* The event may be destroyed while a wait for it is still queued. */
    atomic_store(&gate, 0);
    CHECK_OK(pymic_invoke(a, k_gate, 1, &gate_arg));
    CHECK_OK(pymic_event_record(e, a));
    CHECK_OK(pymic_stream_wait_event(b, e));
    CHECK_OK(pymic_invoke(b, k_append, 2, from_b));
    atomic_store(&gate, 1);
    CHECK_OK(pymic_event_destroy(e)); /* returns; the pending record still runs */
    CHECK_OK(pymic_stream_sync(b));
    CHECK(log[0] == 3 && log[3] == 2);

    CHECK_OK(pymic_stream_destroy(a));
    CHECK_OK(pymic_stream_destroy(b));
}

/* An event synced from several threads at once, with zero spin (every
 * waiter sleeps on the futex): a gate holds the stream until all of them
 * have started waiting, then one record must release every one. */
enum { SYNC_THREADS = 4 };

typedef struct event_waiter {
    pymic_event *event;
    _Atomic int *started;
    int status;
} event_waiter;

static void *sync_event_thread(void *p)
{
    event_waiter *w = p;
    atomic_fetch_add(w->started, 1);
    w->status = pymic_event_sync(w->event);
    return NULL;
}

static void test_sleeping_event_wait(void)
{
    CHECK_OK(pymic_set_spin_ns(0));
    pymic_stream *s;
    pymic_event *e;
    CHECK_OK(pymic_stream_create(0, &s));
    CHECK_OK(pymic_event_create(&e));
    for (int round = 0; round < 5; round++) {
        _Atomic int64_t gate = 0;
        pymic_arg gate_arg = {(void *)&gate, 0};
        CHECK_OK(pymic_invoke(s, k_gate, 1, &gate_arg));
        CHECK_OK(pymic_event_record(e, s));
        _Atomic int started = 0;
        event_waiter waiters[SYNC_THREADS];
        pthread_t threads[SYNC_THREADS];
        for (int t = 0; t < SYNC_THREADS; t++) {
            waiters[t] = (event_waiter){e, &started, -100};
            CHECK(pthread_create(&threads[t], NULL, sync_event_thread, &waiters[t]) == 0);
        }
        while (atomic_load(&started) < SYNC_THREADS)
            sched_yield();
        CHECK(pymic_event_query(e) == 0); /* nobody got through the gate */
        atomic_store(&gate, 1);
        for (int t = 0; t < SYNC_THREADS; t++) {
            pthread_join(threads[t], NULL);
            CHECK(waiters[t].status == PYMIC_OK);
        }
        CHECK(pymic_event_query(e) == 1);
    }
    CHECK_OK(pymic_event_destroy(e));
    CHECK_OK(pymic_stream_destroy(s));
    CHECK_OK(pymic_set_spin_ns(50000));
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s test_kernels.so\n", argv[0]);
        return 2;
    }
    pymic_library *lib;
    CHECK_OK(pymic_library_load(0, argv[1], &lib));
    k_gate = find(lib, "wait_for_gate");
    k_append = find(lib, "append");
    k_sleep = find(lib, "sleep_ms");
    test_unrecorded();
    test_record_query_elapsed();
    test_cross_stream_order();
    test_sleeping_event_wait();
    CHECK_OK(pymic_library_unload(lib));
    return check_finish();
}
