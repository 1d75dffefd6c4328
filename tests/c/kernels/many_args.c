/*
 * many_args.c -- a kernel taking PYMIC_MAX_KERNEL_ARGS (128) arguments.
 *
 * Each argument points to an int64_t; the kernel writes into *out (the
 * first argument) the sum of value * position over the other 127, so a
 * misplaced or missing argument changes the result.
 */
#include <pymic_kernel.h>

/* C has no brief way to name 127 parameters; A(i) spells one of them. */
#define A(i) const int64_t *a##i
PYMIC_KERNEL void sum128(int64_t *out,
    A(1), A(2), A(3), A(4), A(5), A(6), A(7), A(8), A(9), A(10), A(11), A(12), A(13), A(14),
    A(15), A(16), A(17), A(18), A(19), A(20), A(21), A(22), A(23), A(24), A(25), A(26), A(27),
    A(28), A(29), A(30), A(31), A(32), A(33), A(34), A(35), A(36), A(37), A(38), A(39), A(40),
    A(41), A(42), A(43), A(44), A(45), A(46), A(47), A(48), A(49), A(50), A(51), A(52), A(53),
    A(54), A(55), A(56), A(57), A(58), A(59), A(60), A(61), A(62), A(63), A(64), A(65), A(66),
    A(67), A(68), A(69), A(70), A(71), A(72), A(73), A(74), A(75), A(76), A(77), A(78), A(79),
    A(80), A(81), A(82), A(83), A(84), A(85), A(86), A(87), A(88), A(89), A(90), A(91), A(92),
    A(93), A(94), A(95), A(96), A(97), A(98), A(99), A(100), A(101), A(102), A(103), A(104),
    A(105), A(106), A(107), A(108), A(109), A(110), A(111), A(112), A(113), A(114), A(115),
    A(116), A(117), A(118), A(119), A(120), A(121), A(122), A(123), A(124), A(125), A(126),
    A(127))
{
    const int64_t *v[] = {
        a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13, a14, a15, a16, a17, a18, a19,
        a20, a21, a22, a23, a24, a25, a26, a27, a28, a29, a30, a31, a32, a33, a34, a35, a36,
        a37, a38, a39, a40, a41, a42, a43, a44, a45, a46, a47, a48, a49, a50, a51, a52, a53,
        a54, a55, a56, a57, a58, a59, a60, a61, a62, a63, a64, a65, a66, a67, a68, a69, a70,
        a71, a72, a73, a74, a75, a76, a77, a78, a79, a80, a81, a82, a83, a84, a85, a86, a87,
        a88, a89, a90, a91, a92, a93, a94, a95, a96, a97, a98, a99, a100, a101, a102, a103,
        a104, a105, a106, a107, a108, a109, a110, a111, a112, a113, a114, a115, a116, a117,
        a118, a119, a120, a121, a122, a123, a124, a125, a126, a127};
    int64_t sum = 0;
    for (int i = 0; i < 127; i++)
        sum += *v[i] * (i + 1);
    *out = sum;
}
