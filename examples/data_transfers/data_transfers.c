/*
 * data_transfers.c -- the kernel of the data_transfers example: adds a
 * constant to a block of doubles that lives in raw device memory.
 */
#include <pymic_kernel.h>

PYMIC_KERNEL
void add_constant(double *block, const int64_t *count, const double *constant)
{
    for (int64_t i = 0; i < *count; i++)
        block[i] += *constant;
}
