/*
 * test_mpi_flow.c -- progress.c's flows (a copy's chunks in flight) and
 * the answer a d2h's receiver watches while it waits for the data: one
 * process talking to itself on MPI_COMM_SELF, so every message is real
 * MPI and nothing else is needed.
 *
 * The host posts the receives of a d2h's answer and of its first chunks
 * before it asks; the device sends the data and then the answer, or only
 * the answer when it sends no data (a refused copy).  So: an answer that
 * comes while the data is awaited stops the wait, and the flow's receives,
 * abandoned, take nothing sent afterwards; data and answer that both come
 * are all received, in place, whichever completes first.
 */
#include "check.h"

#include <mpi.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "progress.h"

enum { ANSWER_TAG = 1, DATA_TAG = 2, CHUNK = 4, WINDOW = 2 };

/* A refused copy: only its answer comes. */
static void test_an_answer_without_data_stops_the_wait(void)
{
    char data[3 * CHUNK];
    memset(data, '.', sizeof data);
    int32_t answer = 0, refused = -7;
    MPI_Request pending;
    mpidev_flow flow;
    CHECK(MPI_Irecv(&answer, 1, MPI_INT32_T, 0, ANSWER_TAG, MPI_COMM_SELF, &pending) ==
          MPI_SUCCESS);
    CHECK(mpidev_flow_start(&flow, 0, data, sizeof data, CHUNK, WINDOW, 0, DATA_TAG,
                            MPI_COMM_SELF) == MPI_SUCCESS);
    MPI_Request sent;
    MPI_Isend(&refused, 1, MPI_INT32_T, 0, ANSWER_TAG, MPI_COMM_SELF, &sent);
    CHECK(mpidev_flow_finish(&flow, &pending, NULL) == MPIDEV_FLOW_ANSWERED);
    MPI_Wait(&sent, MPI_STATUS_IGNORE);
    CHECK(answer == refused);
    mpidev_flow_abandon(&flow);
    /* What comes next on the data tag is not taken by the abandoned
     * receives: a new receive gets it, the flow's buffer stays as it was. */
    char later[CHUNK] = {'w', 'x', 'y', 'z'}, got[CHUNK] = {0};
    MPI_Request receive;
    MPI_Isend(later, CHUNK, MPI_CHAR, 0, DATA_TAG, MPI_COMM_SELF, &sent);
    MPI_Irecv(got, CHUNK, MPI_CHAR, 0, DATA_TAG, MPI_COMM_SELF, &receive);
    MPI_Wait(&receive, MPI_STATUS_IGNORE);
    MPI_Wait(&sent, MPI_STATUS_IGNORE);
    CHECK(memcmp(got, later, CHUNK) == 0);
    bool untouched = true;
    for (size_t i = 0; i < sizeof data; i++)
        untouched = untouched && data[i] == '.';
    CHECK(untouched);
}

/* A copy that goes: more chunks than the window, then the answer. */
static void test_data_and_answer_all_arrive(void)
{
    char sent_data[3 * CHUNK + 1] = "abcdefghijk", data[3 * CHUNK] = {0};
    int32_t answer = -1, ok = 0;
    MPI_Request pending, sends[4];
    mpidev_flow flow;
    CHECK(MPI_Irecv(&answer, 1, MPI_INT32_T, 0, ANSWER_TAG, MPI_COMM_SELF, &pending) ==
          MPI_SUCCESS);
    CHECK(mpidev_flow_start(&flow, 0, data, 11, CHUNK, WINDOW, 0, DATA_TAG, MPI_COMM_SELF) ==
          MPI_SUCCESS);
    for (int i = 0; i < 3; i++)
        MPI_Isend(sent_data + i * CHUNK, i < 2 ? CHUNK : 3, MPI_CHAR, 0, DATA_TAG, MPI_COMM_SELF,
                  &sends[i]);
    MPI_Isend(&ok, 1, MPI_INT32_T, 0, ANSWER_TAG, MPI_COMM_SELF, &sends[3]);
    int rc = mpidev_flow_finish(&flow, &pending, NULL);
    if (rc == MPIDEV_FLOW_ANSWERED) /* the answer was matched first */
        rc = mpidev_flow_finish(&flow, NULL, NULL);
    CHECK(rc == MPI_SUCCESS);
    MPI_Waitall(4, sends, MPI_STATUSES_IGNORE);
    CHECK(answer == ok && pending == MPI_REQUEST_NULL);
    CHECK(memcmp(data, sent_data, 11) == 0 && data[11] == 0);
}

/* Sending and receiving flows, windows of their own. */
static void test_a_flow_to_itself(void)
{
    char out[10] = "0123456789", in[10] = {0};
    mpidev_flow sending, receiving;
    /* Every send posted at once (a window of 4 chunks of 3 bytes), the
     * receives two at a time: the receiving flow's wait moves them all. */
    CHECK(mpidev_flow_start(&sending, 1, out, sizeof out, 3, 4, 0, DATA_TAG, MPI_COMM_SELF) ==
          MPI_SUCCESS);
    CHECK(mpidev_flow_start(&receiving, 0, in, sizeof in, 3, WINDOW, 0, DATA_TAG,
                            MPI_COMM_SELF) == MPI_SUCCESS);
    CHECK(mpidev_flow_finish(&receiving, NULL, NULL) == MPI_SUCCESS);
    CHECK(mpidev_flow_finish(&sending, NULL, NULL) == MPI_SUCCESS);
    CHECK(memcmp(in, out, sizeof in) == 0);
}

/* A window out of range is refused before anything is posted. */
static void test_bad_window(void)
{
    char data[8];
    mpidev_flow flow;
    CHECK(mpidev_flow_start(&flow, 0, data, sizeof data, 4, MPIDEV_FLOW_MOST + 1, 0, DATA_TAG,
                            MPI_COMM_SELF) == MPI_ERR_ARG);
    mpidev_flow_abandon(&flow); /* nothing to abandon: harmless */
    CHECK(mpidev_flow_start(&flow, 0, data, sizeof data, 0, 1, 0, DATA_TAG, MPI_COMM_SELF) ==
          MPI_ERR_ARG);
}

/* progress.c's counts of this thread's polls followed at once with the
 * next (spins), and of every wait's yields and sleeps between polls. */
uint64_t pymic_mpi_wait_spins_on_this_thread(void);
uint64_t pymic_mpi_wait_yields(void);
uint64_t pymic_mpi_wait_pauses(void);

/* A word comes this long after the wait for it starts: far beyond any
 * wait's spin window (50 µs), so the wait always reaches its yields. */
enum { LATE_TAG = 4, LATE_MS = 100 };

/* Sends the word after LATE_MS, asleep meanwhile. */
static void *send_late(void *arg)
{
    (void)arg;
    struct timespec pause = {0, LATE_MS * 1000000L};
    nanosleep(&pause, NULL);
    int32_t word = 1;
    MPI_Send(&word, 1, MPI_INT32_T, 0, LATE_TAG, MPI_COMM_SELF);
    return NULL;
}

/* Wait for a word sent LATE_MS later (a transfer's wait if `transfer`);
 * the polls it spun. */
static uint64_t spins_of_a_wait_for_a_late_word(bool transfer)
{
    int32_t word = 0;
    uint64_t before = pymic_mpi_wait_spins_on_this_thread();
    pthread_t late;
    CHECK(pthread_create(&late, NULL, send_late, NULL) == 0);
    if (transfer) {
        CHECK(mpidev_transfer(0, &word, sizeof word, sizeof word, 1, 0, LATE_TAG,
                              MPI_COMM_SELF, NULL) == MPI_SUCCESS);
    } else {
        MPI_Request request;
        CHECK(MPI_Irecv(&word, 1, MPI_INT32_T, 0, LATE_TAG, MPI_COMM_SELF, &request) ==
              MPI_SUCCESS);
        CHECK(mpidev_wait(&request, MPI_STATUS_IGNORE, NULL) == MPI_SUCCESS);
    }
    uint64_t spun = pymic_mpi_wait_spins_on_this_thread() - before;
    pthread_join(late, NULL);
    CHECK(word == 1);
    return spun;
}

/* Stand-ins for sched_yield: one that gives the core away for 20 µs (as
 * when another thread runs there), one that returns at once. */
static void yield_to_a_crowd(void)
{
    struct timespec pause = {0, 20000};
    nanosleep(&pause, NULL);
}

static void yield_to_nobody(void)
{
}

/* The four waits of the test below, on a thread of their own (what they
 * test is the thread's state): the spins of each. */
static void *waits_on_a_crowded_core(void *arg)
{
    uint64_t *spun = arg;
    mpidev_set_yield(yield_to_a_crowd);
    spun[0] = spins_of_a_wait_for_a_late_word(false);
    spun[1] = spins_of_a_wait_for_a_late_word(false);
    spun[2] = spins_of_a_wait_for_a_late_word(true);
    mpidev_set_yield(yield_to_nobody);
    spun[3] = spins_of_a_wait_for_a_late_word(false);
    mpidev_set_yield(NULL);
    return NULL;
}

/* A wait whose yield gave the core to another thread for long stops
 * spinning: until a yield returns at once again, its thread's waits yield
 * after every poll from their first, since spinning only keeps the other
 * thread -- often the other end of the exchange -- from the core, a whole
 * spin window per message.  (A short sleep after such a yield, tried
 * before, paired the two ends of small copies on one core in about half
 * of B13's runs.) */
static void test_a_wait_on_a_crowded_core_stops_spinning(void)
{
    uint64_t spun[4];
    pthread_t waiter;
    CHECK(pthread_create(&waiter, NULL, waits_on_a_crowded_core, spun) == 0);
    pthread_join(waiter, NULL);
    CHECK(spun[0] > 0);  /* a thread's first wait spins its window */
    CHECK(spun[1] == 0); /* its yields found the core crowded: the next does not */
    CHECK(spun[2] == 0); /* nor a transfer's */
    CHECK(spun[3] > 0);  /* once a yield returns at once, waits spin again */
}

/* Wait for a word sent LATE_MS later, with a transfer counted as running
 * in this process; the wait's own kind: a transfer's or another. */
static void wait_beside_a_transfer(bool own_transfer)
{
    int32_t word = 0;
    pthread_t late;
    CHECK(pthread_create(&late, NULL, send_late, NULL) == 0);
    mpidev_transfer_begins();
    if (own_transfer) {
        CHECK(mpidev_transfer(0, &word, sizeof word, sizeof word, 1, 0, LATE_TAG, MPI_COMM_SELF,
                              NULL) == MPI_SUCCESS);
    } else {
        MPI_Request request;
        CHECK(MPI_Irecv(&word, 1, MPI_INT32_T, 0, LATE_TAG, MPI_COMM_SELF, &request) ==
              MPI_SUCCESS);
        CHECK(mpidev_wait(&request, MPI_STATUS_IGNORE, NULL) == MPI_SUCCESS);
    }
    mpidev_transfer_ends();
    pthread_join(late, NULL);
    CHECK(word == 1);
}

/* While a transfer runs in this process (a device rank is often bound to
 * one core), a wait other than the transfer's own sleeps between polls
 * after its spin window and never yields: a yielding thread shares the
 * core about evenly with the transfer's, whose data moves only while it
 * polls.  The transfer's own wait still yields, as it did. */
static void *waits_beside_a_transfer(void *arg)
{
    (void)arg;
    uint64_t yields = pymic_mpi_wait_yields(), pauses = pymic_mpi_wait_pauses();
    wait_beside_a_transfer(false);
    CHECK(pymic_mpi_wait_yields() == yields);
    CHECK(pymic_mpi_wait_pauses() > pauses);
    yields = pymic_mpi_wait_yields();
    wait_beside_a_transfer(true);
    CHECK(pymic_mpi_wait_yields() > yields);
    return NULL;
}

static void test_a_wait_beside_a_transfer_sleeps_instead_of_yielding(void)
{
    /* On a thread of its own: one whose yields found its core crowded
     * would yield in its spin window (see the test above). */
    pthread_t waiter;
    CHECK(pthread_create(&waiter, NULL, waits_beside_a_transfer, NULL) == 0);
    pthread_join(waiter, NULL);
}

/* The wait of the test below: a word on LATE_TAG, beside a transfer. */
static void *waits_for_a_word(void *arg)
{
    int32_t *word = arg;
    MPI_Request request;
    CHECK(MPI_Irecv(word, 1, MPI_INT32_T, 0, LATE_TAG, MPI_COMM_SELF, &request) ==
          MPI_SUCCESS);
    CHECK(mpidev_wait(&request, MPI_STATUS_IGNORE, NULL) == MPI_SUCCESS);
    return NULL;
}

/* A wait beside a transfer sleeps until the transfer ends: it does not
 * wake while the transfer moves (its polls would take MPI's progress and
 * a core from the transfer's thread), and the transfer's end wakes it at
 * once, not when a pause is over.  The longest sleep is set to a minute,
 * so both are seen in what happens, not in how long it took. */
static void test_a_wait_beside_a_transfer_sleeps_until_it_ends(void)
{
    mpidev_set_sleep_beside_transfers_ns(60ull * 1000000000u);
    uint64_t pauses = pymic_mpi_wait_pauses();
    int32_t word = 0;
    pthread_t waiter;
    mpidev_transfer_begins();
    CHECK(pthread_create(&waiter, NULL, waits_for_a_word, &word) == 0);
    while (pymic_mpi_wait_pauses() == pauses) /* its spin window, then asleep */
        sched_yield();
    struct timespec moving = {0, 20 * 1000000L};
    nanosleep(&moving, NULL);
    CHECK(pymic_mpi_wait_pauses() == pauses + 1); /* one sleep, not woken since */
    int32_t one = 1;
    MPI_Send(&one, 1, MPI_INT32_T, 0, LATE_TAG, MPI_COMM_SELF);
    mpidev_transfer_ends(); /* wakes it: it polls, and finds the word */
    struct timespec limit;
    clock_gettime(CLOCK_REALTIME, &limit);
    limit.tv_sec += 30; /* (only a guard against a hang: it wakes at once) */
    CHECK(pthread_timedjoin_np(waiter, NULL, &limit) == 0);
    CHECK(word == 1);
    mpidev_set_sleep_beside_transfers_ns(0);
}

int main(int argc, char **argv)
{
    int provided;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
    test_an_answer_without_data_stops_the_wait();
    test_data_and_answer_all_arrive();
    test_a_flow_to_itself();
    test_bad_window();
    test_a_wait_on_a_crowded_core_stops_spinning();
    test_a_wait_beside_a_transfer_sleeps_instead_of_yielding();
    test_a_wait_beside_a_transfer_sleeps_until_it_ends();
    MPI_Finalize();
    return check_finish();
}
