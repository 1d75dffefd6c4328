/* origin.c -- kernels linked against origin_helper with the run path
 * $ORIGIN: they load only if $ORIGIN names their own directory. */
#include <pymic_kernel.h>

int pymic_test_origin_helper(void);

PYMIC_KERNEL void origin_value(int64_t *out)
{
    *out = pymic_test_origin_helper();
}
