/*
 * proc.h -- the process device's host side (see shared.h for what is
 * shared with the device process, backend.h for the contract).
 */
#ifndef PYMIC_PROC_H
#define PYMIC_PROC_H

#include "../engine.h"
#include "shared.h"

#include <sys/types.h>

struct proc_range;

enum proc_child_state {
    PROC_CHILD_SPAWN,   /* the monitor is asked to start a process        */
    PROC_CHILD_RUNNING, /* pid and pidfd are valid                        */
    PROC_CHILD_DEAD     /* none runs (reaped, or it could not start)      */
};

typedef struct proc_device {
    pymic_device *device;
    int memfd;                 /* O_CLOEXEC; the child gets a dup2 of it  */
    char *base;                /* the arena, same address in the child    */
    size_t total;              /* bytes mapped                            */
    proc_control *control;     /* == base                                 */

    /* Free ranges of device memory, sorted by address (arena.c). */
    pthread_mutex_t arena_lock;
    struct proc_range *free_ranges;
    /* PYMIC_CHECK=bounds: the guard page of each live block (protected
     * again in a new device process after a reset). */
    uintptr_t *guards;
    size_t nguards, guards_capacity;

    /* Serialises control requests (mailbox 0). Taken before `lock`. */
    pthread_mutex_t control_lock;

    /* Guards the fields below; `cond` signals state changes. */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool used[PROC_MAILBOXES];
    enum proc_child_state state;
    pid_t pid;
    int pidfd;
    char cause[160];           /* set by the watchdog or reset before a kill */
    pthread_t monitor;

    /* What each stream mailbox runs, for the loss message and the
     * watchdog: written by the mailbox's host worker, read by the monitor. */
    _Atomic(const struct pymic_kernel *) running[PROC_MAILBOXES];
    _Atomic uint64_t started_ns[PROC_MAILBOXES];
} proc_device;

/* arena.c */
bool proc_arena_init(proc_device *pd);
pymic_block *proc_arena_get(proc_device *pd, size_t nbytes, size_t alignment);
void proc_arena_put(proc_device *pd, pymic_block *block);
/* Give the pages of all free device memory back to the system (reset). */
void proc_arena_return_free(proc_device *pd);

/* monitor.c: start the monitor thread and the first device process
 * (false: out of resources; a process that cannot start marks the device
 * lost instead). */
bool proc_monitor_start(proc_device *pd);
/* With control_lock held: kill the process if it runs and wait until the
 * monitor has seen it die, then have a new one started and wait for it. */
void proc_monitor_respawn(proc_device *pd);

/* backend.c: one control request on mailbox 0, control_lock held.
 * PYMIC_OK, PYMIC_ERR_DEVICE_LOST (reason: device->lost_why) or -1 with
 * the device process's reason in mailbox 0's text. */
int proc_control_call(proc_device *pd, uint32_t request);

extern const pymic_backend_ops pymic_proc_backend;

#endif /* PYMIC_PROC_H */
