/*
 * array_stream.h -- non-temporal (streaming) stores for large outputs.
 *
 * An ordinary store first reads the cache line it writes (read for
 * ownership), so filling an array much larger than the caches moves every
 * byte twice.  Streaming stores skip that read and go straight to memory.
 * They only pay off when the data will not be read again soon from cache,
 * hence PYMIC_STREAM_MIN_BYTES, and they are weakly ordered: a thread must
 * call pymic_stream_fence() before its stores may be seen as complete (the
 * engine marks the command done from another thread after the kernel).
 */
#ifndef PYMIC_ARRAY_STREAM_H
#define PYMIC_ARRAY_STREAM_H

#include <stddef.h>
#include <stdint.h>

#if defined(__SSE2__)
#include <immintrin.h>
#define PYMIC_HAVE_STREAM_STORES 1
#else
#define PYMIC_HAVE_STREAM_STORES 0
#endif

/* Outputs from this size on are written with streaming stores: half the
 * last-level cache of the machines pymic targets (tens of MiB). */
#ifndef PYMIC_STREAM_MIN_BYTES
#define PYMIC_STREAM_MIN_BYTES ((int64_t)16 << 20)
#endif

#define PYMIC_STREAM_LINE 64

#if PYMIC_HAVE_STREAM_STORES
/* Write the 64-byte `line` to the 64-byte aligned `dst`, bypassing caches. */
static inline void pymic_stream_line(void *dst, const void *line)
{
#if defined(__AVX512F__)
    _mm512_stream_si512((__m512i *)dst, _mm512_loadu_si512(line));
#elif defined(__AVX__)
    const __m256i *src = (const __m256i *)line;
    _mm256_stream_si256((__m256i *)dst, _mm256_loadu_si256(src));
    _mm256_stream_si256((__m256i *)dst + 1, _mm256_loadu_si256(src + 1));
#else
    const __m128i *src = (const __m128i *)line;
    for (int part = 0; part < 4; part++)
        _mm_stream_si128((__m128i *)dst + part, _mm_loadu_si128(src + part));
#endif
}

static inline void pymic_stream_fence(void)
{
    _mm_sfence();
}
#endif

#endif /* PYMIC_ARRAY_STREAM_H */
