/*
 * allocator.c -- the caching allocator behind host-device memory.
 *
 * A freshly mapped buffer page-faults on first touch, which halves the
 * bandwidth of the first copy into it.  Programs bind and free buffers of
 * the same sizes over and over, so freed large blocks are kept per size
 * class and handed out again with their pages already mapped.  The cache
 * is bounded for the whole process, however many devices there are: a
 * block that would push all caches together past PYMIC_CACHE_MAX_BYTES goes
 * back to the OS at once.
 *
 * Small blocks come from malloc, which already caches well.
 */
#include "host.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* Blocks from this size up are mapped and cached. */
#define PYMIC_CACHE_MIN_BYTES ((size_t)256 << 10)
/* Most bytes kept in the caches of all devices together. */
#define PYMIC_CACHE_MAX_BYTES ((size_t)1 << 30)
/* Four size classes per power of two: at most 25% slack per block. */
#define PYMIC_CLASS_STEPS 4
#define PYMIC_NUM_CLASSES (64 * PYMIC_CLASS_STEPS)

struct pymic_block_cache {
    pthread_mutex_t lock;
    pymic_block *free_lists[PYMIC_NUM_CLASSES];
};

/* Bytes held by all caches; reserved before a block enters a cache. */
static _Atomic size_t total_cached_bytes;

static bool reserve_cache_room(size_t bytes)
{
    size_t seen = atomic_load(&total_cached_bytes);
    do {
        if (seen + bytes > PYMIC_CACHE_MAX_BYTES)
            return false;
    } while (!atomic_compare_exchange_weak(&total_cached_bytes, &seen, seen + bytes));
    return true;
}

struct pymic_block_cache *pymic_block_cache_create(void)
{
    struct pymic_block_cache *cache = calloc(1, sizeof *cache);
    if (cache)
        pthread_mutex_init(&cache->lock, NULL);
    return cache;
}

void pymic_block_cache_after_fork(struct pymic_block_cache *cache)
{
    pthread_mutex_init(&cache->lock, NULL);
}

static void unmap_block(pymic_block *block)
{
    if (block->map_bytes)
        munmap(block->map, block->map_bytes);
    else
        free(block->map);
    free(block);
}

static void flush_cache(struct pymic_block_cache *cache)
{
    for (int c = 0; c < PYMIC_NUM_CLASSES; c++) {
        while (cache->free_lists[c]) {
            pymic_block *b = cache->free_lists[c];
            cache->free_lists[c] = b->next;
            atomic_fetch_sub(&total_cached_bytes, b->class_bytes);
            unmap_block(b);
        }
    }
}

void pymic_block_cache_prefork(struct pymic_block_cache *cache)
{
    pthread_mutex_lock(&cache->lock);
}

void pymic_block_cache_postfork_parent(struct pymic_block_cache *cache)
{
    pthread_mutex_unlock(&cache->lock);
}

void pymic_block_cache_trim(struct pymic_block_cache *cache)
{
    pthread_mutex_lock(&cache->lock);
    flush_cache(cache);
    pthread_mutex_unlock(&cache->lock);
}

void pymic_block_cache_destroy(struct pymic_block_cache *cache)
{
    if (!cache)
        return;
    flush_cache(cache);
    pthread_mutex_destroy(&cache->lock);
    free(cache);
}

/* Round `nbytes` up to its size class; returns the class index. */
static int size_class(size_t nbytes, size_t *class_bytes)
{
    int log2 = 63 - __builtin_clzll((unsigned long long)nbytes);
    size_t base = (size_t)1 << log2;
    size_t step = base / PYMIC_CLASS_STEPS;
    size_t steps = (nbytes - base + step - 1) / step; /* 0 .. STEPS */
    *class_bytes = base + steps * step;
    return log2 * PYMIC_CLASS_STEPS + (int)steps; /* steps == STEPS is next power */
}

static pymic_block *map_block(size_t class_bytes, size_t alignment)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t extra = alignment > page ? alignment : 0;
    size_t map_bytes = class_bytes + extra;
    void *map = mmap(NULL, map_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (map == MAP_FAILED)
        return NULL;
    pymic_block *block = malloc(sizeof *block);
    if (!block) {
        munmap(map, map_bytes);
        return NULL;
    }
    /* No MADV_HUGEPAGE here: with the kernel's default "defrag=madvise"
     * the first touch of an madvised 64 MiB block compacts memory
     * synchronously and ran 20x slower (0.4 GB/s instead of 8 GB/s). */
    uintptr_t aligned = ((uintptr_t)map + extra) & ~(uintptr_t)(extra ? alignment - 1 : 0);
    block->map = map;
    block->map_bytes = map_bytes;
    block->ptr = extra ? (void *)aligned : map;
    /* Over-aligned mappings are not interchangeable: keep them out of the cache. */
    block->class_bytes = extra ? 0 : class_bytes;
    block->next = NULL;
    return block;
}

static pymic_block *malloc_block(size_t nbytes, size_t alignment)
{
    pymic_block *block = malloc(sizeof *block);
    if (!block)
        return NULL;
    void *ptr = NULL;
    if (alignment < sizeof(void *))
        alignment = sizeof(void *);
    if (posix_memalign(&ptr, alignment, nbytes) != 0) {
        free(block);
        return NULL;
    }
    block->map = ptr;
    block->ptr = ptr;
    block->map_bytes = 0;
    block->class_bytes = 0;
    block->next = NULL;
    return block;
}

pymic_block *pymic_block_get(struct pymic_block_cache *cache, size_t nbytes, size_t alignment)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    if (nbytes < PYMIC_CACHE_MIN_BYTES)
        return malloc_block(nbytes, alignment);

    size_t class_bytes;
    int c = size_class(nbytes, &class_bytes);
    class_bytes = (class_bytes + page - 1) & ~(page - 1);
    if (alignment <= page) {
        pthread_mutex_lock(&cache->lock);
        pymic_block *b = cache->free_lists[c];
        if (b) {
            cache->free_lists[c] = b->next;
            atomic_fetch_sub(&total_cached_bytes, b->class_bytes);
        }
        pthread_mutex_unlock(&cache->lock);
        if (b) {
            b->next = NULL;
            return b;
        }
    }
    pymic_block *block = map_block(class_bytes, alignment);
    if (!block) {
        /* The OS refused: give back what the cache holds and try once more. */
        pthread_mutex_lock(&cache->lock);
        flush_cache(cache);
        pthread_mutex_unlock(&cache->lock);
        block = map_block(class_bytes, alignment);
    }
    return block;
}

void pymic_block_put(struct pymic_block_cache *cache, pymic_block *block)
{
    if (block->class_bytes == 0) {
        unmap_block(block);
        return;
    }
    size_t class_bytes;
    int c = size_class(block->class_bytes, &class_bytes);
    /* A class size maps back to its own class index (classes of cached
     * sizes are multiples of 64 KiB, so page rounding never moves them). */
    if (!reserve_cache_room(block->class_bytes)) {
        unmap_block(block);
        return;
    }
    pthread_mutex_lock(&cache->lock);
    block->next = cache->free_lists[c];
    cache->free_lists[c] = block;
    pthread_mutex_unlock(&cache->lock);
}
