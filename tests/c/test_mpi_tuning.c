/*
 * test_mpi_tuning.c -- the rule by which an MPI device chooses in which
 * messages a copy goes (src/mpi/tuning.c), fed with timings chosen here:
 * trials of both ways, the faster by time per byte from then on, a
 * recheck now and then, and no timing taken from a copy that shared the
 * transport or failed.  No MPI is needed: the rule is plain C.
 */
#include "check.h"

#include <pthread.h>
#include <stdint.h>

#include "tuning.h"

enum { MIB = 1 << 20, CHUNK = MIB };

/* Where mpidev_tune_done reports a decision, and how many it reported
 * (to the copies of copy_4mib). */
static mpidev_tune_class decided;
static int decisions;

/* One copy: its chunk size, timed at `ns` (alone, completed). */
static uint64_t copy(mpidev_tuner *t, int sending, uint64_t nbytes, uint64_t ns)
{
    mpidev_tune_choice choice;
    uint64_t chunk = mpidev_tune_pick(t, sending, nbytes, &choice);
    mpidev_tune_done(t, &choice, ns, true, &decided);
    return chunk;
}

/* Time per byte of each way: a whole message `whole_ns` for 4 MiB, chunks
 * `chunks_ns` for 4 MiB. */
static uint64_t copy_4mib(mpidev_tuner *t, uint64_t whole_ns, uint64_t chunks_ns)
{
    mpidev_tune_choice choice;
    uint64_t chunk = mpidev_tune_pick(t, 1, 4 * MIB, &choice);
    if (mpidev_tune_done(t, &choice, chunk == 4 * MIB ? whole_ns : chunks_ns, true, &decided))
        decisions++;
    return chunk;
}

static void test_the_first_copies_take_turns(void)
{
    mpidev_tuner t;
    mpidev_tuner_init(&t, 0, CHUNK);
    uint64_t want[2 * MPIDEV_TUNE_TRIALS];
    for (int i = 0; i < 2 * MPIDEV_TUNE_TRIALS; i++)
        want[i] = i % 2 ? 4 * MIB : CHUNK;
    for (int i = 0; i < 2 * MPIDEV_TUNE_TRIALS; i++)
        CHECK(copy_4mib(&t, 500000, 500000) == want[i]);
    mpidev_tuner_destroy(&t);
}

static void test_the_faster_way_goes(void)
{
    for (int whole_wins = 0; whole_wins < 2; whole_wins++) {
        mpidev_tuner t;
        mpidev_tuner_init(&t, 0, CHUNK);
        uint64_t whole_ns = whole_wins ? 500000 : 700000, chunks_ns = whole_wins ? 700000 : 500000;
        for (int i = 0; i < 2 * MPIDEV_TUNE_TRIALS; i++)
            copy_4mib(&t, whole_ns, chunks_ns);
        uint64_t winner = whole_wins ? 4 * MIB : CHUNK;
        int winners = 0;
        for (int i = 2 * MPIDEV_TUNE_TRIALS; i < MPIDEV_TUNE_RECHECK; i++)
            winners += copy_4mib(&t, whole_ns, chunks_ns) == winner;
        CHECK(winners == MPIDEV_TUNE_RECHECK - 2 * MPIDEV_TUNE_TRIALS);
        mpidev_tuner_destroy(&t);
    }
}

/* The best timing of each way counts, not the last or the mean: one slow
 * trial (another program's moment) does not decide. */
static void test_the_best_timing_counts(void)
{
    mpidev_tuner t;
    mpidev_tuner_init(&t, 0, CHUNK);
    /* chunks: 500, 500, 2000 us; whole: 550, 550, 550 us. */
    uint64_t chunks_ns[] = {500000, 500000, 2000000};
    for (int i = 0; i < MPIDEV_TUNE_TRIALS; i++) {
        CHECK(copy_4mib(&t, 0, chunks_ns[i]) == CHUNK);
        CHECK(copy_4mib(&t, 550000, 0) == 4 * MIB);
    }
    CHECK(copy_4mib(&t, 550000, 500000) == CHUNK);
    mpidev_tuner_destroy(&t);
    /* And the other way round: a slow whole message, then a slow chunked
     * copy at the start. */
    mpidev_tuner_init(&t, 0, CHUNK);
    uint64_t whole_ns[] = {500000, 500000, 3000000};
    uint64_t slow_first_ns[] = {3000000, 550000, 550000};
    for (int i = 0; i < MPIDEV_TUNE_TRIALS; i++) {
        copy_4mib(&t, 0, slow_first_ns[i]);
        copy_4mib(&t, whole_ns[i], 0);
    }
    CHECK(copy_4mib(&t, 500000, 550000) == 4 * MIB);
    mpidev_tuner_destroy(&t);
}

/* Every MPIDEV_TUNE_RECHECK-th copy of a class takes the other way; when
 * that way has become faster, the class changes its mind. */
static void test_a_recheck_can_change_the_choice(void)
{
    mpidev_tuner t;
    mpidev_tuner_init(&t, 0, CHUNK);
    decisions = 0;
    for (int i = 0; i < 2 * MPIDEV_TUNE_TRIALS; i++)
        copy_4mib(&t, 900000, 500000); /* chunks win the trials */
    /* The last trial settled the class, and said so. */
    CHECK(decisions == 1);
    CHECK(decided.settled == MPIDEV_WAY_CHUNKS);
    CHECK(decided.best_ns_per_byte[MPIDEV_WAY_CHUNKS] == 500000.0 / (4 * MIB));
    int others = 0, at = -1;
    for (int i = 2 * MPIDEV_TUNE_TRIALS; i <= MPIDEV_TUNE_RECHECK; i++) {
        /* From now on whole messages take 400 us. */
        if (copy_4mib(&t, 400000, 500000) == 4 * MIB) {
            others++;
            at = i;
        }
    }
    CHECK(others == 1);
    CHECK(at == MPIDEV_TUNE_RECHECK);
    /* The recheck changed the choice, and said so; nothing else did. */
    CHECK(decisions == 2);
    CHECK(decided.settled == MPIDEV_WAY_WHOLE);
    CHECK(copy_4mib(&t, 400000, 500000) == 4 * MIB);
    CHECK(copy_4mib(&t, 400000, 500000) == 4 * MIB);
    mpidev_tuner_destroy(&t);
}

/* Time per byte: 3 MiB and 2 MiB copies are one class and compare as
 * such; directions and classes learn apart. */
static void test_classes_and_directions_are_apart(void)
{
    mpidev_tuner t;
    mpidev_tuner_init(&t, 0, CHUNK);
    /* Class [2 MiB, 4 MiB): whole messages of 3 MiB in 300 us (100 us per
     * MiB) against chunked copies of 2 MiB in 240 us (120 us per MiB):
     * whole wins though its copies took longer. */
    for (int i = 0; i < MPIDEV_TUNE_TRIALS; i++) {
        CHECK(copy(&t, 1, 2 * MIB, 240000) == CHUNK);
        CHECK(copy(&t, 1, 3 * MIB, 300000) == 3 * MIB);
    }
    CHECK(copy(&t, 1, 2 * MIB + 7, 0) == 2 * MIB + 7);
    /* The other direction of that class, and the next class, still try. */
    CHECK(copy(&t, 0, 3 * MIB, 1) == CHUNK);
    CHECK(copy(&t, 0, 3 * MIB, 1) == 3 * MIB);
    CHECK(copy(&t, 1, 4 * MIB, 1) == CHUNK);
    CHECK(copy(&t, 1, 4 * MIB, 1) == 4 * MIB);
    mpidev_tuner_destroy(&t);
}

/* A copy one chunk holds, or one message cannot hold, is not tuned; a
 * fixed chunk size (PYMIC_MPI_CHUNK) is used for every copy. */
static void test_sizes_outside_the_classes_and_a_fixed_chunk(void)
{
    mpidev_tuner t;
    mpidev_tuner_init(&t, 0, CHUNK);
    for (int i = 0; i < 4; i++) {
        CHECK(copy(&t, 1, CHUNK, 1) == CHUNK);
        CHECK(copy(&t, 0, 5000, 1) == CHUNK);
        CHECK(copy(&t, 1, (uint64_t)1 << 31, 1) == CHUNK);
        CHECK(copy(&t, 0, (uint64_t)5 << 32, 1) == CHUNK);
    }
    CHECK(copy(&t, 1, CHUNK + 1, 1) == CHUNK);
    CHECK(copy(&t, 1, CHUNK + 1, 1) == CHUNK + 1);
    CHECK(copy(&t, 1, ((uint64_t)1 << 31) - 1, 1) == CHUNK);
    CHECK(copy(&t, 1, ((uint64_t)1 << 31) - 1, 1) == ((uint64_t)1 << 31) - 1);
    mpidev_tuner_destroy(&t);
    mpidev_tuner_init(&t, 65536, CHUNK);
    for (int i = 0; i < 2 * MPIDEV_TUNE_TRIALS + 2; i++)
        CHECK(copy(&t, i % 2, 4 * MIB, 1) == 65536);
    mpidev_tuner_destroy(&t);
}

/* Copies that overlap share the transport: neither's time counts, and the
 * way still lacking timings goes next. */
static void test_overlapping_or_failed_copies_are_not_timed(void)
{
    mpidev_tuner t;
    mpidev_tuner_init(&t, 0, CHUNK);
    mpidev_tune_choice a, b;
    CHECK(mpidev_tune_pick(&t, 1, 4 * MIB, &a) == CHUNK);
    CHECK(mpidev_tune_pick(&t, 0, 64 * 1024, &b) == CHUNK); /* small, but beside it */
    mpidev_tune_done(&t, &b, 1, true, &decided);
    mpidev_tune_done(&t, &a, 1, true, &decided);
    /* Started alone, but another started before it ended. */
    CHECK(mpidev_tune_pick(&t, 1, 4 * MIB, &a) == 4 * MIB);
    CHECK(mpidev_tune_pick(&t, 1, 8 * MIB, &b) == CHUNK);
    mpidev_tune_done(&t, &b, 1, true, &decided);
    mpidev_tune_done(&t, &a, 1, true, &decided);
    const mpidev_tune_class *c = &t.classes[1][2];
    CHECK(c->timed[MPIDEV_WAY_CHUNKS] == 0 && c->timed[MPIDEV_WAY_WHOLE] == 0);
    /* A failed copy: not timed either. */
    CHECK(mpidev_tune_pick(&t, 1, 4 * MIB, &a) == CHUNK);
    mpidev_tune_done(&t, &a, 1, false, &decided);
    CHECK(c->timed[MPIDEV_WAY_CHUNKS] == 0);
    /* The fourth copy of the class, timed alone: whole, by turns. */
    CHECK(copy(&t, 1, 4 * MIB, 1) == 4 * MIB);
    /* The fifth, chunks by turns, beside another again. */
    CHECK(mpidev_tune_pick(&t, 1, 4 * MIB, &a) == CHUNK);
    CHECK(mpidev_tune_pick(&t, 0, 64 * 1024, &b) == CHUNK);
    mpidev_tune_done(&t, &a, 1, true, &decided);
    mpidev_tune_done(&t, &b, 1, true, &decided);
    CHECK(c->timed[MPIDEV_WAY_CHUNKS] == 0 && c->timed[MPIDEV_WAY_WHOLE] == 1);
    /* The sixth: chunks, the way lacking a timing (turns would give whole). */
    CHECK(copy(&t, 1, 4 * MIB, 1) == CHUNK);
    CHECK(c->timed[MPIDEV_WAY_CHUNKS] == 1 && c->timed[MPIDEV_WAY_WHOLE] == 1);
    CHECK(t.running == 0);
    mpidev_tuner_destroy(&t);
}

/* Copies from several threads keep the books straight (and TSan sees the
 * lock). */
static void *copies_from_a_thread(void *tuner)
{
    for (int i = 0; i < 20000; i++)
        copy(tuner, i % 2, (uint64_t)(1 + i % 7) * MIB + 1, 1000 + (uint64_t)(i % 13));
    return NULL;
}

static void test_copies_from_several_threads(void)
{
    mpidev_tuner t;
    mpidev_tuner_init(&t, 0, CHUNK);
    pthread_t threads[3];
    for (int i = 0; i < 3; i++)
        pthread_create(&threads[i], NULL, copies_from_a_thread, &t);
    for (int i = 0; i < 3; i++)
        pthread_join(threads[i], NULL);
    CHECK(t.running == 0);
    CHECK(t.started == 60000);
    uint64_t copies = 0;
    for (int s = 0; s < 2; s++)
        for (int k = 0; k < MPIDEV_TUNE_CLASSES; k++)
            copies += t.classes[s][k].copies;
    CHECK(copies == 60000);
    mpidev_tuner_destroy(&t);
}

int main(void)
{
    test_the_first_copies_take_turns();
    test_the_faster_way_goes();
    test_the_best_timing_counts();
    test_a_recheck_can_change_the_choice();
    test_classes_and_directions_are_apart();
    test_sizes_outside_the_classes_and_a_fixed_chunk();
    test_overlapping_or_failed_copies_are_not_timed();
    test_copies_from_several_threads();
    return check_finish();
}
