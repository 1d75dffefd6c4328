/* origin_helper.c -- a library the origin test kernels need, found only
 * through their run path $ORIGIN (beside them). */
int pymic_test_origin_helper(void);

int pymic_test_origin_helper(void)
{
    return 42;
}
