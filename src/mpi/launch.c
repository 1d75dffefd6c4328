/*
 * launch.c -- the MPMD handshake (launch.h).
 */
#include "launch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

bool mpidev_world_has_other_programs(void)
{
    const char *forced = getenv("PYMIC_MPI_LAUNCH");
    if (forced && strcmp(forced, "mpmd") == 0)
        return true;
    if (forced && strcmp(forced, "spawn") == 0)
        return false;
    const char *app = getenv("OMPI_APP_CTX_NUM_PROCS");
    const char *world = getenv("OMPI_COMM_WORLD_SIZE");
    if (app && world)
        return atoi(app) != atoi(world);
    /* Other launchers: a world of several programs says so only once MPI
     * runs (MPI_APPNUM); without Open MPI's word, ask for it explicitly. */
    return false;
}

/* What each rank tells the others in the handshake. */
typedef struct rank_card {
    int wanted; /* -1: a device rank */
    char node[MPI_MAX_PROCESSOR_NAME];
} rank_card;

/* Give host `host` up to `room` free devices from cards[] (those on
 * `node` only, unless node is NULL), in rank order. */
static void take_devices(const rank_card *cards, int size, int *owner, int host,
                         const char *node, int *taken, int room)
{
    for (int r = 0; r < size && *taken < room; r++) {
        if (cards[r].wanted != -1 || owner[r] != -1)
            continue;
        if (node && strcmp(cards[r].node, node) != 0)
            continue;
        owner[r] = host;
        (*taken)++;
    }
}

int mpidev_handshake(int wanted, MPI_Comm *pair_comm, MPI_Comm *side_comm, int *peers,
                     int max_peers, int *npeers, char *why, size_t why_len)
{
    int rank, size, rc, len;
    *npeers = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    rank_card mine = {.wanted = wanted};
    MPI_Get_processor_name(mine.node, &len);
    rank_card *cards = calloc((size_t)size, sizeof *cards);
    int *owner = malloc(sizeof *owner * (size_t)size);
    int *taken = calloc((size_t)size, sizeof *taken);
    if (!cards || !owner || !taken) {
        free(cards);
        free(owner);
        free(taken);
        snprintf(why, why_len, "out of host memory");
        return MPI_ERR_NO_MEM;
    }
    const char *step = "MPI_Comm_dup";
    rc = MPI_Comm_dup(MPI_COMM_WORLD, pair_comm);
    if (rc == MPI_SUCCESS) {
        step = "MPI_Comm_split";
        rc = MPI_Comm_split(MPI_COMM_WORLD, wanted == -1, rank, side_comm);
    }
    if (rc == MPI_SUCCESS) {
        step = "MPI_Allgather";
        rc = MPI_Allgather(&mine, sizeof mine, MPI_BYTE, cards, sizeof mine, MPI_BYTE,
                           *pair_comm);
    }
    if (rc != MPI_SUCCESS) {
        snprintf(why, why_len, "%s failed in the handshake of hosts and MPI devices", step);
    } else {
        /* The same computation on every rank gives the same pairing. */
        for (int r = 0; r < size; r++)
            owner[r] = -1;
        for (int h = 0; h < size; h++)
            if (cards[h].wanted > 0)
                take_devices(cards, size, owner, h, cards[h].node, &taken[h], cards[h].wanted);
        for (int h = 0; h < size; h++)
            if (cards[h].wanted > 0)
                take_devices(cards, size, owner, h, NULL, &taken[h], cards[h].wanted);
        if (wanted == -1) {
            if (owner[rank] != -1) {
                peers[0] = owner[rank];
                *npeers = 1;
            }
        } else {
            for (int r = 0; r < size && *npeers < max_peers; r++)
                if (owner[r] == rank)
                    peers[(*npeers)++] = r;
        }
    }
    free(cards);
    free(owner);
    free(taken);
    return rc;
}
