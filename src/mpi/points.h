/*
 * points.h -- the device side's event points (points.c): where a slot's
 * thread marks that its stream reached an event record, and where another
 * slot's thread waits for it (protocol.h, "Points").
 */
#ifndef PYMIC_MPI_POINTS_H
#define PYMIC_MPI_POINTS_H

#include <stdbool.h>
#include <stdint.h>

/* What a wait found. */
enum point_outcome { POINT_REACHED, POINT_FAILED, POINT_ABANDONED };

/* The recording stream reached point `id` (failed: a failure before it). */
void points_mark(uint64_t id, bool failed);
/* Wait until point `id` is marked, or abandoned by points_abandon; a
 * wait the host sent before the device's last reset (an older
 * `generation`) is abandoned at once. */
enum point_outcome points_wait(uint64_t id, uint64_t generation);
/* The host will wait for none of these points any more. */
void points_forget(const uint64_t *ids, uint64_t n);
/* A reset or the end: every wait under way, every point not yet marked,
 * and every wait of an older generation than `generation` (the device's
 * from now on) gives up (a record that comes later still marks its
 * point). */
void points_abandon(uint64_t generation);
/* The device's generation, told by the host's HELLO. */
void points_set_generation(uint64_t generation);

#endif /* PYMIC_MPI_POINTS_H */
