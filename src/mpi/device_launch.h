/*
 * device_launch.h -- pymic-device's way into the MPI device
 * (device_launch.c).
 */
#ifndef PYMIC_MPI_DEVICE_LAUNCH_H
#define PYMIC_MPI_DEVICE_LAUNCH_H

#include <stdbool.h>

/* pymic-device's exit status when it cannot run the MPI device. */
#define PYMIC_DEVICE_EXIT_MPI 125

/* True when an MPI launcher started pymic-device (no arguments, and the
 * launcher's variables in the environment). */
bool pymic_device_started_by_mpi(int argc);
/* Run the MPI device (libpymic_mpi.so beside this program); its exit
 * status. */
int pymic_device_run_mpi(int argc, char **argv);

#endif /* PYMIC_MPI_DEVICE_LAUNCH_H */
