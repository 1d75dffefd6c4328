/*
 * test_stress.c -- who runs a stream's commands ("caller runs", stream.c),
 * and a randomized stress test of the command ring and the wait/notify
 * code.
 *
 * The ordering tests check what must hold whoever runs a command: every
 * command runs exactly once, in enqueue order, never ahead of a command
 * that blocks, a wait-event never on a syncing thread, a timed wait never
 * runs a kernel of unknown duration, a poll (timeout 0) runs nothing, a
 * thread outside the device's CPUs never runs commands, and commands the
 * worker claims several at a time (a batch) still run once each, in
 * order, one at a time, while the worker and three syncing threads hand
 * the stream over to each other.  (A batch claimed wrongly also shows as
 * a hang: `completed` would go backwards.)
 * A device sync waits for every command enqueued before it while other
 * threads create, fill and destroy streams.  The stress test has many
 * threads enqueue into shared and private streams, sync in every way the engine offers
 * (sync, wait_seq, timed waits in slices, polling, events, device sync),
 * with the spin window at 0 and at its default, and checks per-producer
 * sequence numbers and sums kept by the kernels.
 *
 * argv[1]: the stress kernel library.  PYMIC_STRESS_OPS sets the number
 * of enqueued commands (default 1000000; meson lowers it under the
 * sanitizers); the batched-claims test enqueues a twentieth of it.  Run with "--outside" (done by the test itself, in a child
 * with PYMIC_DEVICES set to one CPU) for the check of a thread outside the
 * device.
 */
#include "check.h"

#include <pthread.h>
#include <sched.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static pymic_kernel *k_order, *k_who, *k_sleep, *k_gate, *k_team, *k_sleep_who, *k_sequence,
    *k_count;

static pymic_arg ptr_arg(void *p)
{
    return (pymic_arg){p, 0};
}

static int64_t my_tid(void)
{
    return (int64_t)syscall(SYS_gettid);
}

static void sleep_ms(long ms)
{
    struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}

static void load_kernels(const char *path)
{
    pymic_library *lib = NULL;
    CHECK_OK(pymic_library_load(0, path, &lib));
    CHECK_OK(pymic_kernel_find(lib, "stress_in_order", &k_order));
    CHECK_OK(pymic_kernel_find(lib, "stress_whoami", &k_who));
    CHECK_OK(pymic_kernel_find(lib, "stress_sleep_ms", &k_sleep));
    CHECK_OK(pymic_kernel_find(lib, "stress_gate", &k_gate));
    CHECK_OK(pymic_kernel_find(lib, "stress_team_size", &k_team));
    CHECK_OK(pymic_kernel_find(lib, "stress_sleep_whoami", &k_sleep_who));
    CHECK_OK(pymic_kernel_find(lib, "stress_sequence", &k_sequence));
    CHECK_OK(pymic_kernel_find(lib, "stress_count", &k_count));
}

static int invoke_order(pymic_stream *s, int64_t *track, int64_t value)
{
    pymic_arg args[2] = {ptr_arg(track), {&value, sizeof value}};
    return pymic_invoke(s, k_order, 2, args);
}

/* Invoke whoami + sync `rounds` times; how many ran on this thread. */
static int ran_here(pymic_stream *s, int rounds, bool timed)
{
    int here = 0;
    int64_t tid = 0;
    pymic_arg arg = ptr_arg(&tid);
    for (int i = 0; i < rounds; i++) {
        CHECK_OK(pymic_invoke(s, k_who, 1, &arg));
        if (timed)
            CHECK_OK(pymic_stream_wait_seq_timeout(s, pymic_stream_last_enqueued(s),
                                                   UINT64_C(10000000000)));
        else
            CHECK_OK(pymic_stream_sync(s));
        here += tid == my_tid();
    }
    return here;
}

/* A syncing thread on the device's CPUs runs commands itself (the test
 * process's default device has every CPU it may use), and they still run
 * once each and in order. */
static void test_caller_runs_in_order(void)
{
    pymic_stream *s;
    CHECK_OK(pymic_stream_create(0, &s));
    int64_t track[3] = {0, 0, 0};
    enum { N = 2000 };
    for (int64_t v = 1; v <= N; v++) {
        CHECK_OK(invoke_order(s, track, v));
        if (v % 3 == 0)
            CHECK_OK(pymic_stream_sync(s));
    }
    CHECK_OK(pymic_stream_sync(s));
    CHECK(track[0] == N && track[1] == 0 && track[2] == (int64_t)N * (N + 1) / 2);
    /* Some of these (almost all, in practice) ran on this thread. */
    CHECK(ran_here(s, 500, false) > 0);
    /* Timed waits may run kernels they have seen end quickly. */
    CHECK(ran_here(s, 500, true) > 0);
    CHECK_OK(pymic_stream_destroy(s)); /* a napping worker still stops */
}

/* A timed wait never runs a kernel it knows nothing about: its caller
 * must stay free to notice Ctrl-C.  (If it ran the 300 ms kernel, the
 * 20 ms wait would return PYMIC_OK.) */
static void test_timed_wait_leaves_unknown_kernels(void)
{
    pymic_stream *s;
    CHECK_OK(pymic_stream_create(0, &s));
    int64_t ms = 300;
    pymic_arg arg = {&ms, sizeof ms};
    CHECK_OK(pymic_invoke(s, k_sleep, 1, &arg));
    CHECK_STATUS(pymic_stream_wait_seq_timeout(s, 1, 20000000), PYMIC_ERR_TIMEOUT);
    CHECK_OK(pymic_stream_sync(s));
    CHECK(pymic_stream_completed(s) == 1);
    CHECK_OK(pymic_stream_destroy(s));
}

/* One slow run does not make a short kernel long: a run that paid for
 * creating an OpenMP pool must not hand the kernel back to the worker.
 * Each round: a 3 ms run, then a 0 ms run under a timed wait, which may
 * run only kernels known to be short.  With one slow run counting as
 * "long", the second never runs on this thread. */
static void test_one_slow_run_keeps_a_kernel_short(void)
{
    pymic_stream *s;
    CHECK_OK(pymic_stream_create(0, &s));
    int64_t tid = 0, ms = 0;
    pymic_arg args[2] = {ptr_arg(&tid), {&ms, sizeof ms}};
    CHECK_OK(pymic_invoke(s, k_sleep_who, 2, args)); /* known short now */
    CHECK_OK(pymic_stream_sync(s));
    int here = 0;
    for (int round = 0; round < 50; round++) {
        ms = 3;
        CHECK_OK(pymic_invoke(s, k_sleep_who, 2, args));
        CHECK_OK(pymic_stream_sync(s));
        ms = 0;
        CHECK_OK(pymic_invoke(s, k_sleep_who, 2, args));
        CHECK_OK(pymic_stream_wait_seq_timeout(s, pymic_stream_last_enqueued(s),
                                               UINT64_C(10000000000)));
        here += tid == my_tid();
    }
    CHECK(here > 0);
    /* Two slow timed runs in a row make it long: a timed wait leaves it
     * to the worker (a 300 ms run, so a 20 ms wait times out).  A short
     * kernel is timed on one run in 8 (stream.c, SHORT_KERNEL_SAMPLE) and
     * on every run after a slow one, so 9 slow runs in a row are sure to
     * make it long. */
    ms = 3;
    for (int i = 0; i < 9; i++) {
        CHECK_OK(pymic_invoke(s, k_sleep_who, 2, args));
        CHECK_OK(pymic_stream_sync(s));
    }
    ms = 300;
    CHECK_OK(pymic_invoke(s, k_sleep_who, 2, args));
    CHECK_STATUS(pymic_stream_wait_seq_timeout(s, pymic_stream_last_enqueued(s), 20000000),
                 PYMIC_ERR_TIMEOUT);
    CHECK_OK(pymic_stream_sync(s));
    CHECK_OK(pymic_stream_destroy(s));
}

/* Which commands a wait runs is its own choice (PYMIC_WAIT_RUNS_*), not
 * its deadline's.  The kernel here sleeps 2 ms per run, so after its
 * first run it is known long. */
static void test_wait_runs_independent_of_deadline(void)
{
    pymic_stream *s;
    CHECK_OK(pymic_stream_create(0, &s));
    int64_t tid = 0, ms = 2;
    pymic_arg args[2] = {ptr_arg(&tid), {&ms, sizeof ms}};
    /* An untimed wait that runs quick commands only leaves an unknown or
     * long kernel to the worker, every time. */
    int here = 0;
    for (int round = 0; round < 20; round++) {
        CHECK_OK(pymic_invoke(s, k_sleep_who, 2, args));
        CHECK_OK(pymic_stream_wait_seq_runs(s, pymic_stream_last_enqueued(s), UINT64_MAX,
                                            PYMIC_WAIT_RUNS_QUICK));
        here += tid == my_tid();
        CHECK_OK(pymic_invoke(s, k_sleep_who, 2, args));
        CHECK_OK(pymic_device_sync_runs(0, UINT64_MAX, PYMIC_WAIT_RUNS_QUICK));
        here += tid == my_tid();
    }
    CHECK(here == 0);
    /* A timed wait that may run anything runs long kernels here too
     * (with a timed wait's default, quick only, none would). */
    for (int round = 0; round < 50; round++) {
        CHECK_OK(pymic_invoke(s, k_sleep_who, 2, args));
        CHECK_OK(pymic_stream_wait_seq_runs(s, pymic_stream_last_enqueued(s),
                                            UINT64_C(10000000000), PYMIC_WAIT_RUNS_ANY));
        here += tid == my_tid();
    }
    CHECK(here > 0);
    /* Nothing else is a choice: a clear error, and the stream still works. */
    uint64_t last = pymic_stream_last_enqueued(s);
    CHECK_STATUS(pymic_stream_wait_seq_runs(s, last, UINT64_MAX, 3),
                 PYMIC_ERR_INVALID_ARGUMENT);
    CHECK_MESSAGE("PYMIC_WAIT_RUNS_ANY");
    CHECK_STATUS(pymic_device_sync_runs(0, UINT64_MAX, -1), PYMIC_ERR_INVALID_ARGUMENT);
    CHECK_OK(pymic_invoke(s, k_sleep_who, 2, args));
    CHECK_OK(pymic_stream_sync(s));
    CHECK_OK(pymic_stream_destroy(s));
}

/* A wait with a timeout of 0 is a poll: it runs nothing on the calling
 * thread, not even a kernel known to be short (here a gate that ran
 * quickly once and now blocks: run by the poll, the poll would never
 * return). */
static void test_poll_runs_nothing(void)
{
    pymic_stream *s;
    CHECK_OK(pymic_stream_create(0, &s));
    _Atomic int64_t gate = 1;
    pymic_arg arg = ptr_arg((void *)&gate);
    CHECK_OK(pymic_invoke(s, k_gate, 1, &arg)); /* open: known short now */
    CHECK_OK(pymic_stream_sync(s));
    atomic_store(&gate, 0);
    CHECK_OK(pymic_invoke(s, k_gate, 1, &arg));
    uint64_t last = pymic_stream_last_enqueued(s);
    CHECK_STATUS(pymic_stream_wait_seq_timeout(s, last, 0), PYMIC_ERR_TIMEOUT);
    CHECK_STATUS(pymic_device_sync_timeout(0, 0), PYMIC_ERR_TIMEOUT);
    atomic_store(&gate, 1);
    CHECK_OK(pymic_stream_sync(s));
    CHECK(pymic_stream_completed(s) == last);
    CHECK_OK(pymic_stream_destroy(s));
}

typedef struct {
    pymic_stream *s;
    _Atomic int done;
} syncer;

static void *sync_thread(void *arg)
{
    syncer *t = arg;
    CHECK_OK(pymic_stream_sync(t->s));
    atomic_store(&t->done, 1);
    return NULL;
}

/* Nothing behind a blocked command runs, whoever syncs; afterwards all of
 * it runs in order. */
static void test_nothing_overtakes_a_blocked_command(void)
{
    pymic_stream *s;
    CHECK_OK(pymic_stream_create(0, &s));
    _Atomic int64_t gate = 0;
    int64_t track[3] = {0, 0, 0};
    CHECK_OK(pymic_invoke(s, k_gate, 1, (pymic_arg[]){ptr_arg((void *)&gate)}));
    for (int64_t v = 1; v <= 3; v++)
        CHECK_OK(invoke_order(s, track, v));
    syncer t = {s, 0};
    pthread_t thread;
    pthread_create(&thread, NULL, sync_thread, &t);
    sleep_ms(30);
    CHECK(pymic_stream_completed(s) == 0 && atomic_load(&t.done) == 0);
    atomic_store(&gate, 1);
    pthread_join(thread, NULL);
    CHECK(pymic_stream_completed(s) == 4);
    CHECK(track[0] == 3 && track[1] == 0);
    CHECK_OK(pymic_stream_destroy(s));
}

/* A stream waiting for an event is not overtaken, and its wait does not
 * end before the record, also while a host thread syncs it. */
static void test_event_wait_across_streams(void)
{
    pymic_stream *a, *b;
    pymic_event *e;
    CHECK_OK(pymic_stream_create(0, &a));
    CHECK_OK(pymic_stream_create(0, &b));
    CHECK_OK(pymic_event_create(&e));
    _Atomic int64_t gate = 0;
    int64_t track[3] = {0, 0, 0};
    CHECK_OK(pymic_invoke(a, k_gate, 1, (pymic_arg[]){ptr_arg((void *)&gate)}));
    CHECK_OK(pymic_event_record(e, a));
    CHECK_OK(pymic_stream_wait_event(b, e));
    CHECK_OK(invoke_order(b, track, 1));
    syncer t = {b, 0};
    pthread_t thread;
    pthread_create(&thread, NULL, sync_thread, &t);
    sleep_ms(30);
    CHECK(track[0] == 0 && atomic_load(&t.done) == 0);
    atomic_store(&gate, 1);
    pthread_join(thread, NULL);
    CHECK(track[0] == 1);
    CHECK(pymic_event_query(e) == 1);
    CHECK_OK(pymic_event_destroy(e));
    CHECK_OK(pymic_stream_destroy(a));
    CHECK_OK(pymic_stream_destroy(b));
}

/* ------------------------------------------------------ batched claims */

static uint64_t next_random(uint64_t *state)
{
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    return *state;
}


/* The worker's claim may take several commands (stream.c, try_claim); it
 * runs them alone and in order, and nobody claims past what was enqueued
 * or runs a command twice.  The main thread enqueues bursts and
 * now and then syncs to a random point; two more threads wait for random
 * points of the same stream (untimed, and in timed slices as Python does),
 * so the worker and three syncing threads hand the stream over to each
 * other again and again.  The sequence checker kernel sees every value
 * once, in order, never two of them at a time (and under TSan its plain
 * updates show that each runner saw the previous one's writes). */
typedef struct {
    pymic_stream *s;
    _Atomic int done;
    uint64_t rng;
    long waits, wrong; /* counted here: check.h's counters are the main thread's */
} claim_syncer;

static void *claim_sync_thread(void *arg)
{
    claim_syncer *t = arg;
    while (!atomic_load(&t->done)) {
        uint64_t completed = pymic_stream_completed(t->s);
        uint64_t last = pymic_stream_last_enqueued(t->s);
        if (last <= completed) {
            sched_yield();
            continue;
        }
        uint64_t r = next_random(&t->rng);
        uint64_t target = completed + 1 + r % (last - completed);
        int status;
        if (r & (1u << 20))
            status = pymic_stream_wait_seq(t->s, target);
        else
            while ((status = pymic_stream_wait_seq_timeout(t->s, target, 1000000)) ==
                   PYMIC_ERR_TIMEOUT)
                ;
        t->wrong += status != PYMIC_OK || pymic_stream_completed(t->s) < target;
        t->waits++;
    }
    return NULL;
}

static void test_batched_claims_keep_order(long total)
{
    pymic_stream *s;
    CHECK_OK(pymic_stream_create(0, &s));
    int64_t seq[4] = {0, 0, 0, 0}, caller = my_tid(), value = 0;
    _Atomic int64_t busy = 0;
    int64_t *runner = calloc((size_t)total, sizeof *runner);
    pymic_arg args[5] = {ptr_arg(seq), ptr_arg((void *)&busy), ptr_arg(runner),
                         ptr_arg(&caller), {&value, sizeof value}};
    claim_syncer syncers[2] = {{s, 0, 0x2545f4914f6cdd1du, 0, 0}, {s, 0, 0x9e3779b97f4a7c15u, 0, 0}};
    pthread_t threads[2];
    for (int i = 0; i < 2; i++)
        pthread_create(&threads[i], NULL, claim_sync_thread, &syncers[i]);
    uint64_t rng = 0x853c49e6748fea9bu;
    long failed = 0;
    while (value < total) {
        uint64_t r = next_random(&rng);
        long burst = 1 + (long)(r % 80);
        for (long i = 0; i < burst && value < total; i++) {
            value++;
            failed += pymic_invoke(s, k_sequence, 5, args) != PYMIC_OK;
        }
        uint64_t last = pymic_stream_last_enqueued(s);
        switch ((r >> 8) % 8) {
        case 0:
            CHECK_OK(pymic_stream_sync(s));
            break;
        case 1:
            CHECK_OK(pymic_stream_wait_seq(s, 1 + (r >> 16) % last));
            break;
        case 2:
            CHECK_OK(pymic_stream_wait_seq_timeout(s, last, UINT64_C(10000000000)));
            break;
        default:
            break; /* left to the worker and the other threads */
        }
    }
    CHECK_OK(pymic_stream_sync(s));
    for (int i = 0; i < 2; i++) {
        atomic_store(&syncers[i].done, 1);
        pthread_join(threads[i], NULL);
        CHECK(syncers[i].wrong == 0);
    }
    CHECK(failed == 0);
    CHECK(seq[0] == total && seq[1] == 0 && seq[2] == 0);
    long handovers = 0, unrun = runner[0] == 0;
    for (long v = 1; v < total; v++) {
        handovers += runner[v] != runner[v - 1];
        unrun += runner[v] == 0;
    }
    CHECK(unrun == 0);
    printf("batched claims: %ld commands, %lld run by the producing thread, %ld hand-overs "
           "between runners, %ld + %ld waits by two other threads\n",
           total, (long long)seq[3], handovers, syncers[0].waits, syncers[1].waits);
    free(runner);
    CHECK_OK(pymic_stream_destroy(s));
}

/* ------------------------------------------------- device sync, churn */

/* A device sync waits for every command whose enqueue returned before the
 * sync was called, while other threads create streams, enqueue into them,
 * sometimes sync them, and destroy them (device.c keeps a list of the
 * streams with work; this is that list under churn). */
typedef struct {
    _Atomic int64_t announced; /* commands whose invoke has returned */
    _Atomic int64_t ran;       /* runs counted by the kernel         */
    _Atomic int stop;
    uint64_t rng;
    long wrong;
} churner;

static void *churn_thread(void *arg)
{
    churner *c = arg;
    pymic_arg counter = ptr_arg((void *)&c->ran);
    while (!atomic_load(&c->stop)) {
        uint64_t r = next_random(&c->rng);
        pymic_stream *s;
        if (pymic_stream_create(0, &s) != PYMIC_OK) {
            c->wrong++;
            return NULL;
        }
        for (int i = 0, n = 1 + (int)(r % 24); i < n; i++) {
            c->wrong += pymic_invoke(s, k_count, 1, &counter) != PYMIC_OK;
            atomic_fetch_add(&c->announced, 1);
        }
        if ((r >> 8) % 4 == 0)
            c->wrong += pymic_stream_sync(s) != PYMIC_OK;
        c->wrong += pymic_stream_destroy(s) != PYMIC_OK;
    }
    return NULL;
}

static void test_device_sync_waits_for_churning_streams(long commands_wanted)
{
    enum { CHURNERS = 3 };
    static churner churners[CHURNERS];
    pthread_t threads[CHURNERS];
    for (int i = 0; i < CHURNERS; i++) {
        memset(&churners[i], 0, sizeof churners[i]);
        churners[i].rng = 0x9e3779b97f4a7c15u * (uint64_t)(i + 7);
        pthread_create(&threads[i], NULL, churn_thread, &churners[i]);
    }
    long early = 0, failed = 0, rounds = 0;
    for (int64_t seen = 0; seen < commands_wanted; rounds++) {
        int64_t announced[CHURNERS];
        seen = 0;
        for (int i = 0; i < CHURNERS; i++)
            seen += announced[i] = atomic_load(&churners[i].announced);
        failed += pymic_device_sync(0) != PYMIC_OK;
        for (int i = 0; i < CHURNERS; i++)
            early += atomic_load(&churners[i].ran) < announced[i];
    }
    for (int i = 0; i < CHURNERS; i++) {
        atomic_store(&churners[i].stop, 1);
        pthread_join(threads[i], NULL);
        CHECK(churners[i].wrong == 0);
    }
    CHECK_OK(pymic_device_sync(0));
    CHECK(failed == 0);
    CHECK(early == 0); /* a device sync returned before work it had to wait for */
    long commands = 0;
    for (int i = 0; i < CHURNERS; i++) {
        CHECK(atomic_load(&churners[i].ran) == atomic_load(&churners[i].announced));
        commands += (long)atomic_load(&churners[i].announced);
    }
    printf("device sync under churn: %ld device syncs, %ld commands on streams created "
           "and destroyed meanwhile\n", rounds, commands);
}

/* ---------------------------------------------------------- outside */

typedef struct {
    pymic_stream *s;
    int ran;
} pinned;

static void *pinned_runner(void *arg)
{
    pinned *p = arg;
    p->ran = ran_here(p->s, 300, false);
    return NULL;
}

static int64_t team_size(pymic_stream *s)
{
    int64_t size = 0;
    pymic_arg arg = ptr_arg(&size);
    CHECK_OK(pymic_invoke(s, k_team, 1, &arg));
    CHECK_OK(pymic_stream_sync(s));
    return size;
}

/* In a process whose device 0 is one CPU: a thread that may also run
 * elsewhere never runs commands; a thread pinned to that CPU may.  The
 * worker's teams keep the device's size after callers took over and the
 * worker released its OpenMP pool. */
static int outside_main(const char *kernels)
{
    load_kernels(kernels);
    int cpus[1], count = 0;
    CHECK_OK(pymic_device_get_cpus(0, cpus, 1, &count));
    pymic_stream *s;
    CHECK_OK(pymic_stream_create(0, &s));
    CHECK(ran_here(s, 300, false) == 0);
    CHECK(team_size(s) == 1); /* run by the worker, which now has a pool */

    pthread_attr_t attr;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpus[0], &set);
    pthread_attr_init(&attr);
    pthread_attr_setaffinity_np(&attr, sizeof set, &set);
    pinned p = {s, 0};
    pthread_t thread;
    pthread_create(&thread, &attr, pinned_runner, &p);
    pthread_join(thread, NULL);
    pthread_attr_destroy(&attr);
    CHECK(p.ran > 0);
    sleep_ms(20); /* the napping worker sees the callers' claims */
    CHECK(team_size(s) == 1); /* on the worker again: this thread is outside */
    CHECK_OK(pymic_stream_destroy(s));
    return check_finish();
}

/* Run this test program again as `self kernels mode`, with the variable
 * named by `drop` ("NAME=") replaced by `setting`; it must pass. */
static void run_child(const char *self, const char *kernels, const char *mode,
                      const char *drop, const char *setting)
{
    char *env[64];
    int n = 0;
    size_t drop_len = strlen(drop);
    for (char **e = environ; *e && n < 62; e++)
        if (strncmp(*e, drop, drop_len) != 0)
            env[n++] = *e;
    env[n++] = (char *)setting;
    env[n] = NULL;
    char *argv[] = {(char *)self, (char *)kernels, (char *)mode, NULL};
    pid_t pid;
    int status = -1;
    CHECK(posix_spawn(&pid, "/proc/self/exe", NULL, NULL, argv, env) == 0);
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

static void test_thread_outside_device_never_runs(const char *self, const char *kernels)
{
    cpu_set_t set;
    sched_getaffinity(0, sizeof set, &set);
    int first = -1;
    for (int c = 0; c < CPU_SETSIZE && first < 0; c++)
        if (CPU_ISSET(c, &set))
            first = c;
    if (CPU_COUNT(&set) < 2) {
        printf("one CPU only: outside-the-device check skipped\n");
        return;
    }
    char layout[64];
    snprintf(layout, sizeof layout, "PYMIC_DEVICES=host:%d", first);
    run_child(self, kernels, "--outside", "PYMIC_DEVICES=", layout);
}

/* With PYMIC_CALLER_RUNS=0 no syncing thread runs a command itself, even
 * on the device's own CPUs where it otherwise would (test_caller_runs_in_
 * order): the core reads the switch for every backend. */
static int caller_runs_off_main(const char *kernels)
{
    load_kernels(kernels);
    pymic_stream *s;
    CHECK_OK(pymic_stream_create(0, &s));
    CHECK(ran_here(s, 300, false) == 0);
    CHECK(ran_here(s, 300, true) == 0);
    CHECK_OK(pymic_stream_destroy(s));
    return check_finish();
}

static void test_caller_runs_off(const char *self, const char *kernels)
{
    run_child(self, kernels, "--caller-runs-off", "PYMIC_CALLER_RUNS=", "PYMIC_CALLER_RUNS=0");
}

/* ------------------------------------------------------------ stress */

enum { THREADS = 6, SHARED = 2, STREAMS = SHARED + THREADS };

static pymic_stream *streams[STREAMS];
static long ops_per_thread;
static _Atomic long failures;

typedef struct {
    int id;
    uint64_t rng;
    int64_t track[STREAMS][3]; /* written by kernels, read after waits */
    int64_t sent[STREAMS];     /* values enqueued per stream           */
    pymic_event *event;
} producer;

static void fail(const char *what, int id, int stream)
{
    if (atomic_fetch_add(&failures, 1) < 10)
        fprintf(stderr, "stress: %s (thread %d, stream %d): %s\n", what, id, stream,
                pymic_last_error());
}

/* Wait for everything this thread enqueued on stream `k`, in one of the
 * engine's ways, then check that all of it ran. */
static void wait_for_mine(producer *p, int k, unsigned how)
{
    pymic_stream *s = streams[k];
    uint64_t last = pymic_stream_last_enqueued(s);
    int status = PYMIC_OK;
    switch (how % 5) {
    case 0:
        status = pymic_stream_sync(s);
        break;
    case 1:
        status = pymic_stream_wait_seq(s, last);
        break;
    case 2: /* slices, as the Python layer waits */
        do
            status = pymic_stream_wait_seq_timeout(s, last, 1000000);
        while (status == PYMIC_ERR_TIMEOUT);
        break;
    case 3: /* polling */
        while ((status = pymic_stream_query(s)) == 0)
            sched_yield();
        status = status == 1 ? PYMIC_OK : status;
        break;
    default:
        status = pymic_event_record(p->event, s);
        if (status == PYMIC_OK)
            status = pymic_event_sync(p->event);
        break;
    }
    if (status != PYMIC_OK)
        fail("wait failed", p->id, k);
    else if (p->track[k][0] != p->sent[k])
        fail("a waited-for command has not run", p->id, k);
}

static void *stress_thread(void *arg)
{
    producer *p = arg;
    int own = SHARED + p->id;
    for (long op = 0; op < ops_per_thread; op++) {
        uint64_t r = next_random(&p->rng);
        int k = (r & 3) == 0 ? own : (int)((r >> 2) % SHARED);
        if (invoke_order(streams[k], p->track[k], ++p->sent[k]) != PYMIC_OK)
            fail("invoke failed", p->id, k);
        unsigned dice = (unsigned)(r >> 8) % 64;
        if (dice < 6) {
            wait_for_mine(p, k, (unsigned)(r >> 16));
        } else if (dice == 6) {
            /* Another stream waits for this one's progress. */
            int other = (int)((r >> 16) % STREAMS);
            if (pymic_event_record(p->event, streams[k]) != PYMIC_OK ||
                pymic_stream_wait_event(streams[other], p->event) != PYMIC_OK)
                fail("event failed", p->id, k);
        } else if (dice == 7 && (r >> 20) % 64 == 0) {
            if (pymic_device_sync(0) != PYMIC_OK)
                fail("device sync failed", p->id, k);
        }
    }
    return NULL;
}

static void stress_round(uint64_t spin_ns, long total_ops)
{
    CHECK_OK(pymic_set_spin_ns(spin_ns));
    for (int k = 0; k < STREAMS; k++)
        CHECK_OK(pymic_stream_create(0, &streams[k]));
    static producer producers[THREADS];
    pthread_t threads[THREADS];
    ops_per_thread = total_ops / THREADS;
    for (int t = 0; t < THREADS; t++) {
        memset(&producers[t], 0, sizeof producers[t]);
        producers[t].id = t;
        producers[t].rng = 0x9e3779b97f4a7c15u * (uint64_t)(t + 1) + spin_ns;
        CHECK_OK(pymic_event_create(&producers[t].event));
        pthread_create(&threads[t], NULL, stress_thread, &producers[t]);
    }
    for (int t = 0; t < THREADS; t++)
        pthread_join(threads[t], NULL);
    CHECK_OK(pymic_device_sync(0));
    long commands = 0;
    int wrong = 0;
    for (int t = 0; t < THREADS; t++) {
        for (int k = 0; k < STREAMS; k++) {
            int64_t n = producers[t].sent[k];
            int64_t *track = producers[t].track[k];
            commands += n;
            wrong += track[0] != n || track[1] != 0 || track[2] != n * (n + 1) / 2;
        }
        CHECK_OK(pymic_event_destroy(producers[t].event));
    }
    CHECK(wrong == 0);
    CHECK(atomic_load(&failures) == 0);
    CHECK(commands == ops_per_thread * THREADS);
    for (int k = 0; k < STREAMS; k++)
        CHECK_OK(pymic_stream_destroy(streams[k]));
    printf("stress: %ld commands from %d threads into %d streams, spin window %llu ns\n",
           commands, THREADS, STREAMS, (unsigned long long)spin_ns);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s stress-kernel-library [--outside | --caller-runs-off]\n", argv[0]);
        return 2;
    }
    if (argc > 2 && strcmp(argv[2], "--outside") == 0)
        return outside_main(argv[1]);
    if (argc > 2 && strcmp(argv[2], "--caller-runs-off") == 0)
        return caller_runs_off_main(argv[1]);
    load_kernels(argv[1]);
    uint64_t default_spin = 0;
    CHECK_OK(pymic_get_spin_ns(&default_spin));

    test_caller_runs_in_order();
    test_timed_wait_leaves_unknown_kernels();
    test_one_slow_run_keeps_a_kernel_short();
    test_poll_runs_nothing();
    test_wait_runs_independent_of_deadline();
    test_nothing_overtakes_a_blocked_command();
    test_event_wait_across_streams();
    test_thread_outside_device_never_runs(argv[0], argv[1]);
    test_caller_runs_off(argv[0], argv[1]);

    const char *text = getenv("PYMIC_STRESS_OPS");
    long total = text && *text ? atol(text) : 1000000;
    test_batched_claims_keep_order(total / 20);
    test_device_sync_waits_for_churning_streams(total / 50);
    stress_round(0, total / 2);
    stress_round(default_spin, total - total / 2);
    return check_finish();
}
