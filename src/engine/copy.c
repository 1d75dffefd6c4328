/*
 * copy.c -- copies between two buffers of this process, big ones split
 * over a worker's helper threads: what a backend whose device memory is
 * this process's memory (host, proc) uses for its copy operation.
 *
 * One core rarely saturates the memory system, so a big copy is cut into
 * chunks that the stream's worker and its helper threads (one per further
 * device core, pinned like the worker) claim one at a time.  Nobody waits
 * for a helper that has not started: if the other cores are busy with
 * other work, the worker simply copies more chunks itself, and the copy
 * ends when every *claimed* chunk is done.  (An OpenMP team was tried
 * first; its end-of-region barrier waits for every member, and one member
 * descheduled by another process cut a 16 MiB copy to 0.4x of memcpy.)
 *
 * Claims go through one 64-bit word: job generation (24 bits), chunk count
 * (20 bits) and next chunk (20 bits).  A claim is a compare-and-swap of
 * that word, so a helper that wakes late can never take a chunk of a newer
 * job with the description of an older one.  The job description itself
 * is rewritten only after every chunk of the previous job is done, and
 * helpers read it only after a successful claim.
 */
#include "engine.h"

#include <stdlib.h>
#include <string.h>

/* Below this a single memcpy wins over waking helpers. */
#define PYMIC_PARALLEL_COPY_MIN ((size_t)1 << 20)
/* Chunks: a few per core so a slow core delays the end by little. */
#define PYMIC_CHUNKS_PER_CORE 4
#define PYMIC_MIN_CHUNK ((size_t)256 << 10)

#define NEXT_BITS 20
#define COUNT_BITS 20
#define FIELD_MASK ((UINT64_C(1) << NEXT_BITS) - 1)

struct pymic_copy_team {
    int nhelpers;
    pthread_t *helpers;
    const pymic_device *device;

    _Atomic uint64_t claim_word; /* generation | chunk count | next chunk */
    char *dst;                   /* description of the current job        */
    const char *src;
    size_t nbytes, chunk;

    _Atomic uint64_t posted;     /* jobs posted; helpers wait on it       */
    pymic_waitq post_q;
    _Atomic uint64_t chunks_done; /* over all jobs; the worker waits on it */
    pymic_waitq done_q;
    _Atomic bool stop;
};

static uint64_t pack(uint64_t generation, uint64_t count, uint64_t next)
{
    return (generation << (NEXT_BITS + COUNT_BITS)) | (count << NEXT_BITS) | next;
}

/* Claim and copy chunks of the current job until none is left or a newer
 * job has replaced it. */
static void copy_chunks(struct pymic_copy_team *team)
{
    uint64_t word = atomic_load_explicit(&team->claim_word, memory_order_acquire);
    for (;;) {
        uint64_t next = word & FIELD_MASK;
        uint64_t count = (word >> NEXT_BITS) & FIELD_MASK;
        if (next >= count)
            return;
        if (!atomic_compare_exchange_weak_explicit(&team->claim_word, &word, word + 1,
                                                   memory_order_acq_rel,
                                                   memory_order_acquire))
            continue;
        size_t begin = (size_t)next * team->chunk;
        size_t len = team->nbytes - begin < team->chunk ? team->nbytes - begin : team->chunk;
        memcpy(team->dst + begin, team->src + begin, len);
        atomic_fetch_add_explicit(&team->chunks_done, 1, memory_order_seq_cst);
        pymic_notify(&team->done_q);
        word = atomic_load_explicit(&team->claim_word, memory_order_acquire);
    }
}

static void *helper_main(void *arg)
{
    struct pymic_copy_team *team = arg;
    for (uint64_t seen = 1;; seen++) {
        pymic_wait_geq(&team->post_q, &team->posted, seen);
        if (atomic_load_explicit(&team->stop, memory_order_acquire))
            return NULL;
        /* Jobs posted while this helper slept are finished already. */
        seen = atomic_load_explicit(&team->posted, memory_order_acquire);
        copy_chunks(team);
    }
}

static struct pymic_copy_team *team_create(const pymic_device *device)
{
    struct pymic_copy_team *team = calloc(1, sizeof *team);
    if (!team)
        return NULL;
    team->device = device;
    team->helpers = calloc((size_t)device->ncpus, sizeof *team->helpers);
    if (!team->helpers) {
        free(team);
        return NULL;
    }
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setaffinity_np(&attr, sizeof device->cpuset, &device->cpuset);
    for (int i = 0; i < device->ncpus - 1; i++) {
        if (pthread_create(&team->helpers[i], &attr, helper_main, team) != 0)
            break; /* fewer helpers only means a slower copy */
        team->nhelpers++;
    }
    pthread_attr_destroy(&attr);
    return team;
}

void pymic_copy_team_destroy(struct pymic_copy_team *team)
{
    if (!team)
        return;
    atomic_store_explicit(&team->stop, true, memory_order_release);
    atomic_fetch_add_explicit(&team->posted, 1, memory_order_seq_cst);
    pymic_notify(&team->post_q);
    for (int i = 0; i < team->nhelpers; i++)
        pthread_join(team->helpers[i], NULL);
    free(team->helpers);
    free(team);
}

static void parallel_copy(struct pymic_copy_team *team, void *dst, const void *src,
                          size_t nbytes)
{
    size_t ncores = (size_t)team->device->ncpus;
    size_t chunk = nbytes / (ncores * PYMIC_CHUNKS_PER_CORE);
    if (chunk < PYMIC_MIN_CHUNK)
        chunk = PYMIC_MIN_CHUNK;
    if (chunk < (nbytes >> NEXT_BITS) + 1) /* the chunk count must fit its field */
        chunk = (nbytes >> NEXT_BITS) + 1;
    chunk = (chunk + 4095) & ~(size_t)4095; /* whole pages per chunk */
    uint64_t count = (nbytes + chunk - 1) / chunk;

    /* Every chunk of the previous job is done, so nobody reads these now. */
    team->dst = dst;
    team->src = src;
    team->nbytes = nbytes;
    team->chunk = chunk;
    uint64_t generation = (atomic_load_explicit(&team->claim_word, memory_order_relaxed) >>
                           (NEXT_BITS + COUNT_BITS)) + 1;
    uint64_t done_before = atomic_load_explicit(&team->chunks_done, memory_order_relaxed);
    atomic_store_explicit(&team->claim_word, pack(generation & 0xffffff, count, 0),
                          memory_order_release);
    atomic_fetch_add_explicit(&team->posted, 1, memory_order_seq_cst);
    pymic_notify(&team->post_q);

    copy_chunks(team);
    pymic_wait_geq(&team->done_q, &team->chunks_done, done_before + count);
}

void pymic_copy_parallel(struct pymic_copy_team **team, const pymic_device *device, void *dst,
                     const void *src, size_t nbytes)
{
    if (device->ncpus < 2 || nbytes < PYMIC_PARALLEL_COPY_MIN) {
        memcpy(dst, src, nbytes);
        return;
    }
    if (!*team)
        *team = team_create(device);
    if (!*team || (*team)->nhelpers == 0) {
        memcpy(dst, src, nbytes);
        return;
    }
    parallel_copy(*team, dst, src, nbytes);
}
