/*
 * tuning.h -- in which messages a copy of an MPI device goes, learnt from
 * the copies before it (tuning.c).
 *
 * A large copy can go as chunks of MPIDEV_CHUNK bytes, several in flight
 * (protocol.h), or as one message.  Which is faster depends on the
 * transport, and the host cannot see the transport: Open MPI 4.1 between
 * two processes of one node, measured in plain MPI, moved 4 MiB in 1 MiB
 * chunks faster than as one message over shared memory (420-520 us
 * against 512-632 us) and slower over TCP (692-890 us against 487-695
 * us), while over TCP 64 MiB went faster in chunks again (10.9 ms against
 * 13.3-15.9 ms).  So each device measures: per direction and per size
 * class (2^k <= bytes < 2^(k+1), above 1 MiB and below 2 GiB), its first
 * copies take turns between the two ways until each has
 * MPIDEV_TUNE_TRIALS timings, and from then on the way with the better
 * time per byte goes -- save every MPIDEV_TUNE_RECHECK-th copy of the
 * class, which takes the other way, so a choice made in a bad moment is
 * made again.  A timing counts only if no other copy of the device ran
 * beside it (they share the transport).  Every way lands the same bytes
 * in the same places: tuning changes how long a copy takes, never what it
 * does.
 *
 * PYMIC_MPI_CHUNK fixes the chunk size instead, for every copy.  The
 * state is a plain struct guarded by its own lock, with no MPI in it, so
 * its rule is tested by itself (tests/c/test_mpi_tuning.c).
 */
#ifndef PYMIC_MPI_TUNING_H
#define PYMIC_MPI_TUNING_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "pymic_mpi.h"

/* Timings of each way before a class chooses (pymic_mpi.h tells users
 * how many copies that takes). */
#define MPIDEV_TUNE_TRIALS (PYMIC_MPI_LEARNING_COPIES / 2)
/* Every this-many-th copy of a class that has chosen takes the other way. */
#define MPIDEV_TUNE_RECHECK 64
/* Size classes: floor(log2(bytes)) from 20 (above MPIDEV_CHUNK = 2^20,
 * where the ways differ) to 30 (up to 2^31 - 1, an MPI count); larger
 * copies always go in chunks. */
#define MPIDEV_TUNE_LOWEST 20
#define MPIDEV_TUNE_CLASSES 11

enum { MPIDEV_WAY_CHUNKS, MPIDEV_WAY_WHOLE, MPIDEV_WAYS };

typedef struct {
    uint64_t copies;                  /* taken this class so far */
    int settled;                      /* its way since the trials (-1: in trials) */
    uint32_t timed[MPIDEV_WAYS];      /* timings that counted */
    double best_ns_per_byte[MPIDEV_WAYS];
} mpidev_tune_class;

typedef struct {
    pthread_mutex_t lock;
    uint64_t fixed_chunk; /* PYMIC_MPI_CHUNK (0: learn) */
    uint64_t default_chunk;
    /* Copies under way, and how many have started (to tell whether one
     * ran alone from its start to its end). */
    uint32_t running;
    uint64_t started;
    mpidev_tune_class classes[2][MPIDEV_TUNE_CLASSES]; /* [sending][class] */
} mpidev_tuner;

/* One copy's choice, handed back with its time. */
typedef struct {
    int sending;
    int klass; /* -1: not a tuned size */
    int way;
    bool alone_at_start;
    uint64_t ticket;
    uint64_t nbytes;
} mpidev_tune_choice;

/* `fixed_chunk`: every copy in chunks of that many bytes (0: learn);
 * `default_chunk`: the chunk size of the chunked way. */
void mpidev_tuner_init(mpidev_tuner *t, uint64_t fixed_chunk, uint64_t default_chunk);
void mpidev_tuner_destroy(mpidev_tuner *t);

/* The chunk size for a copy of `nbytes` (h2d: sending = 1); *choice is
 * handed to mpidev_tune_done when the copy has ended, whatever its end. */
uint64_t mpidev_tune_pick(mpidev_tuner *t, int sending, uint64_t nbytes,
                          mpidev_tune_choice *choice);

/* The copy of `choice` has ended after `elapsed_ns`; `completed`: it
 * moved all its bytes (a failed or skipped copy's time says nothing).
 * True if its class has now chosen a way, or another than before: then
 * *decided holds the class as it is (for a debug message). */
bool mpidev_tune_done(mpidev_tuner *t, const mpidev_tune_choice *choice, uint64_t elapsed_ns,
                      bool completed, mpidev_tune_class *decided);

/* The way a class takes now, outside of its trials and rechecks: the one
 * with the better time per byte (chunks while either lacks timings, and
 * on a tie). */
int mpidev_tune_settled_way(const mpidev_tune_class *c);

#endif
