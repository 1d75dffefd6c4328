/*
 * tuning.c -- in which messages a copy of an MPI device goes (tuning.h).
 */
#include "tuning.h"

void mpidev_tuner_init(mpidev_tuner *t, uint64_t fixed_chunk, uint64_t default_chunk)
{
    *t = (mpidev_tuner){.fixed_chunk = fixed_chunk, .default_chunk = default_chunk};
    for (int s = 0; s < 2; s++)
        for (int k = 0; k < MPIDEV_TUNE_CLASSES; k++)
            t->classes[s][k].settled = -1;
    pthread_mutex_init(&t->lock, NULL);
}

void mpidev_tuner_destroy(mpidev_tuner *t)
{
    pthread_mutex_destroy(&t->lock);
}

/* The class of a copy of `nbytes`, or -1 where the ways do not differ (one
 * chunk holds it all) or one message cannot hold it. */
static int class_of(const mpidev_tuner *t, uint64_t nbytes)
{
    if (nbytes <= t->default_chunk)
        return -1;
    int log2 = 63 - __builtin_clzll(nbytes);
    if (log2 < MPIDEV_TUNE_LOWEST || log2 >= MPIDEV_TUNE_LOWEST + MPIDEV_TUNE_CLASSES)
        return -1;
    return log2 - MPIDEV_TUNE_LOWEST;
}

int mpidev_tune_settled_way(const mpidev_tune_class *c)
{
    if (c->timed[MPIDEV_WAY_CHUNKS] < MPIDEV_TUNE_TRIALS ||
        c->timed[MPIDEV_WAY_WHOLE] < MPIDEV_TUNE_TRIALS)
        return MPIDEV_WAY_CHUNKS;
    return c->best_ns_per_byte[MPIDEV_WAY_WHOLE] < c->best_ns_per_byte[MPIDEV_WAY_CHUNKS]
               ? MPIDEV_WAY_WHOLE
               : MPIDEV_WAY_CHUNKS;
}

/* The way of a class's next copy, the n-th (from 0). */
static int next_way(const mpidev_tune_class *c, uint64_t n)
{
    uint32_t chunks = c->timed[MPIDEV_WAY_CHUNKS], whole = c->timed[MPIDEV_WAY_WHOLE];
    if (chunks < MPIDEV_TUNE_TRIALS || whole < MPIDEV_TUNE_TRIALS) {
        /* Trials: the way with fewer timings (copies beside others are not
         * timed), taking turns while they have as many. */
        if (chunks != whole)
            return chunks < whole ? MPIDEV_WAY_CHUNKS : MPIDEV_WAY_WHOLE;
        return n % 2 ? MPIDEV_WAY_WHOLE : MPIDEV_WAY_CHUNKS;
    }
    int settled = mpidev_tune_settled_way(c);
    return n % MPIDEV_TUNE_RECHECK == 0 ? MPIDEV_WAYS - 1 - settled : settled;
}

uint64_t mpidev_tune_pick(mpidev_tuner *t, int sending, uint64_t nbytes,
                          mpidev_tune_choice *choice)
{
    *choice = (mpidev_tune_choice){.sending = sending != 0, .klass = -1,
                                   .way = MPIDEV_WAY_CHUNKS, .nbytes = nbytes};
    if (t->fixed_chunk)
        return t->fixed_chunk;
    pthread_mutex_lock(&t->lock);
    t->running++;
    choice->ticket = ++t->started;
    choice->alone_at_start = t->running == 1;
    choice->klass = class_of(t, nbytes);
    if (choice->klass >= 0) {
        mpidev_tune_class *c = &t->classes[choice->sending][choice->klass];
        choice->way = next_way(c, c->copies++);
    }
    pthread_mutex_unlock(&t->lock);
    return choice->way == MPIDEV_WAY_WHOLE ? nbytes : t->default_chunk;
}

bool mpidev_tune_done(mpidev_tuner *t, const mpidev_tune_choice *choice, uint64_t elapsed_ns,
                      bool completed, mpidev_tune_class *decided)
{
    if (t->fixed_chunk)
        return false;
    bool changed = false;
    pthread_mutex_lock(&t->lock);
    t->running--;
    /* Alone from start to end: none ran when it started, none started
     * since. */
    bool alone = choice->alone_at_start && t->started == choice->ticket;
    if (choice->klass >= 0 && completed && alone) {
        mpidev_tune_class *c = &t->classes[choice->sending][choice->klass];
        double per_byte = (double)elapsed_ns / (double)choice->nbytes;
        if (c->timed[choice->way] == 0 || per_byte < c->best_ns_per_byte[choice->way])
            c->best_ns_per_byte[choice->way] = per_byte;
        c->timed[choice->way]++;
        int now = c->timed[MPIDEV_WAY_CHUNKS] >= MPIDEV_TUNE_TRIALS &&
                          c->timed[MPIDEV_WAY_WHOLE] >= MPIDEV_TUNE_TRIALS
                      ? mpidev_tune_settled_way(c)
                      : -1;
        if (now != c->settled) {
            c->settled = now;
            *decided = *c;
            changed = true;
        }
    }
    pthread_mutex_unlock(&t->lock);
    return changed;
}
