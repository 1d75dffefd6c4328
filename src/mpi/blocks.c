/*
 * blocks.c -- device memory of an MPI device: allocated and freed in the
 * device process (control requests), and what becomes of it when that
 * process ends and a reset spawns a new one.
 *
 * The engine's allocation table keeps the blocks of the ended process
 * (the program still holds their addresses, and frees them later), but
 * their memory went with the process: they are orphans.  The new process
 * knows nothing of them and may well hand out the same addresses again
 * (same program, same heap layout), which would put two live allocations
 * at one address in the table.  So an allocation of the new process that
 * overlaps an orphan is held back -- kept allocated there, never handed
 * out -- and another is asked for; held allocations are freed once no
 * orphan overlaps them any more.
 */
#include <stdlib.h>

#include "host.h"

static mpi_device *state_of(pymic_device *device)
{
    return device->backend;
}

/* True if [address, address + nbytes) overlaps an orphan (blocks_lock
 * held). */
static bool overlaps_orphan(const mpi_device *md, uint64_t address, uint64_t nbytes)
{
    for (const mpi_block *b = md->blocks; b; b = b->next) {
        uint64_t base = (uintptr_t)b->block.ptr;
        if (b->orphaned && address < base + b->block.class_bytes && base < address + nbytes)
            return true;
    }
    return false;
}

static void free_on_device(mpi_device *md, uint64_t address)
{
    mpidev_request rq = {.op = MPIDEV_FREE, .a = address};
    mpidev_reply reply;
    if (mpidev_control(md, &rq, &reply) != PYMIC_OK && reply.status != PYMIC_ERR_DEVICE_LOST &&
        !md->gone)
        pymic_log(1, "device %d: freeing %#llx on the MPI device: %s", md->device->id,
                  (unsigned long long)address, reply.text);
}

pymic_block *mpidev_block_get(pymic_device *device, size_t nbytes, size_t alignment)
{
    mpi_device *md = state_of(device);
    mpi_block *mb = calloc(1, sizeof *mb);
    if (!mb)
        return NULL;
    for (;;) {
        mpidev_request rq = {.op = MPIDEV_ALLOC, .a = nbytes, .b = alignment};
        mpidev_reply reply;
        if (mpidev_control(md, &rq, &reply) != PYMIC_OK) {
            free(mb);
            return NULL;
        }
        pthread_mutex_lock(&md->blocks_lock);
        /* Each held allocation stays taken, so every retry gets another
         * address, until the device runs out of memory. */
        mpi_held *held = NULL;
        if (md->orphans && overlaps_orphan(md, reply.value, nbytes ? nbytes : 1)) {
            held = malloc(sizeof *held);
            if (held) {
                *held = (mpi_held){.address = reply.value, .nbytes = nbytes ? nbytes : 1,
                                   .next = md->held};
                md->held = held;
                pthread_mutex_unlock(&md->blocks_lock);
                continue;
            }
            pthread_mutex_unlock(&md->blocks_lock);
            free_on_device(md, reply.value);
            free(mb);
            return NULL;
        }
        mb->block.ptr = (void *)(uintptr_t)reply.value;
        mb->block.class_bytes = nbytes;
        mb->next = md->blocks;
        if (md->blocks)
            md->blocks->prev = mb;
        md->blocks = mb;
        pthread_mutex_unlock(&md->blocks_lock);
        return &mb->block;
    }
}

void mpidev_block_put(pymic_device *device, pymic_block *block)
{
    mpi_device *md = state_of(device);
    mpi_block *mb = (mpi_block *)block; /* the first member */
    pthread_mutex_lock(&md->blocks_lock);
    if (mb->prev)
        mb->prev->next = mb->next;
    else
        md->blocks = mb->next;
    if (mb->next)
        mb->next->prev = mb->prev;
    bool orphaned = mb->orphaned;
    mpi_held *released = NULL;
    if (orphaned) {
        md->orphans--;
        /* Held allocations no orphan overlaps any more go back. */
        for (mpi_held **link = &md->held; *link;) {
            mpi_held *h = *link;
            if (md->orphans && overlaps_orphan(md, h->address, h->nbytes)) {
                link = &h->next;
                continue;
            }
            *link = h->next;
            h->next = released;
            released = h;
        }
    }
    pthread_mutex_unlock(&md->blocks_lock);
    /* An orphan's memory went with its process: nothing to free there. */
    if (!orphaned)
        free_on_device(md, (uintptr_t)block->ptr);
    while (released) {
        mpi_held *h = released;
        released = h->next;
        free_on_device(md, h->address);
        free(h);
    }
    free(mb);
}

void mpidev_blocks_orphan(mpi_device *md)
{
    pthread_mutex_lock(&md->blocks_lock);
    for (mpi_block *b = md->blocks; b; b = b->next) {
        if (!b->orphaned) {
            b->orphaned = true;
            md->orphans++;
        }
    }
    /* What an earlier process held back went with it. */
    while (md->held) {
        mpi_held *h = md->held;
        md->held = h->next;
        free(h);
    }
    pthread_mutex_unlock(&md->blocks_lock);
}
