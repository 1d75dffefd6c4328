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

/* progress.c's count of yields after which a wait stepped off its core. */
uint64_t pymic_mpi_wait_steps_off(void);

enum { CROWD_TAG = 3, CROWD_MS = 30 };

/* A thread that keeps its core busy, never yielding, for CROWD_MS, then
 * sends the word the waiting thread waits for. */
static void *crowd(void *arg)
{
    (void)arg;
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    do
        clock_gettime(CLOCK_MONOTONIC, &now);
    while ((now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000 <
           CROWD_MS);
    int32_t word = 1;
    MPI_Send(&word, 1, MPI_INT32_T, 0, CROWD_TAG, MPI_COMM_SELF);
    return NULL;
}

/* A wait that shares its core with a busy thread: its yields give the core
 * away for long (the busy thread runs its whole time slice), and the wait
 * steps off the core with a short sleep, so that the kernel may place it
 * on an idle core (two waits that took turns on one core by yielding
 * stayed there while the other core idled).  Both threads are held on one
 * CPU for the test. */
static void test_a_wait_on_a_crowded_core_steps_off_it(void)
{
    cpu_set_t all, one;
    CHECK(sched_getaffinity(0, sizeof all, &all) == 0);
    CPU_ZERO(&one);
    CPU_SET(sched_getcpu(), &one);
    CHECK(sched_setaffinity(0, sizeof one, &one) == 0);
    int32_t word = 0;
    MPI_Request request;
    CHECK(MPI_Irecv(&word, 1, MPI_INT32_T, 0, CROWD_TAG, MPI_COMM_SELF, &request) ==
          MPI_SUCCESS);
    uint64_t before = pymic_mpi_wait_steps_off();
    pthread_t busy;
    CHECK(pthread_create(&busy, NULL, crowd, NULL) == 0); /* (it inherits the one CPU) */
    CHECK(mpidev_wait(&request, MPI_STATUS_IGNORE, NULL) == MPI_SUCCESS);
    pthread_join(busy, NULL);
    CHECK(word == 1);
    CHECK(pymic_mpi_wait_steps_off() > before);
    CHECK(sched_setaffinity(0, sizeof all, &all) == 0);
}

/* A transfer's wait on a crowded core steps off it as any wait does: the
 * two ends of small copies otherwise stayed paired on one core (each copy
 * a few hundred µs, every wait spinning its window out while the other
 * end waited for the core). */
static void test_a_transfer_on_a_crowded_core_steps_off_it(void)
{
    cpu_set_t all, one;
    CHECK(sched_getaffinity(0, sizeof all, &all) == 0);
    CPU_ZERO(&one);
    CPU_SET(sched_getcpu(), &one);
    CHECK(sched_setaffinity(0, sizeof one, &one) == 0);
    int32_t word = 0;
    uint64_t before = pymic_mpi_wait_steps_off();
    pthread_t busy;
    CHECK(pthread_create(&busy, NULL, crowd, NULL) == 0); /* (it inherits the one CPU) */
    CHECK(mpidev_transfer(0, &word, sizeof word, sizeof word, 1, 0, CROWD_TAG, MPI_COMM_SELF,
                          NULL) == MPI_SUCCESS);
    pthread_join(busy, NULL);
    CHECK(word == 1);
    CHECK(pymic_mpi_wait_steps_off() > before);
    CHECK(sched_setaffinity(0, sizeof all, &all) == 0);
}

/* progress.c's counts of every wait's yields and sleeps between polls. */
uint64_t pymic_mpi_wait_yields(void);
uint64_t pymic_mpi_wait_pauses(void);

enum { LATE_TAG = 4, LATE_MS = 20 };

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
static void test_a_wait_beside_a_transfer_sleeps_instead_of_yielding(void)
{
    uint64_t yields = pymic_mpi_wait_yields(), pauses = pymic_mpi_wait_pauses();
    wait_beside_a_transfer(false);
    CHECK(pymic_mpi_wait_yields() == yields);
    CHECK(pymic_mpi_wait_pauses() > pauses);
    yields = pymic_mpi_wait_yields();
    wait_beside_a_transfer(true);
    CHECK(pymic_mpi_wait_yields() > yields);
}

int main(int argc, char **argv)
{
    int provided;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
    test_an_answer_without_data_stops_the_wait();
    test_data_and_answer_all_arrive();
    test_a_flow_to_itself();
    test_bad_window();
    test_a_wait_on_a_crowded_core_steps_off_it();
    test_a_transfer_on_a_crowded_core_steps_off_it();
    test_a_wait_beside_a_transfer_sleeps_instead_of_yielding();
    MPI_Finalize();
    return check_finish();
}
