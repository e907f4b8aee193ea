/* Array memory for NumPy that starts on a cache line (deepgrad/_native/memory.py installs it).
 *
 * NumPy takes its array data from malloc, which aligns to 16 bytes; MKL's GEMM ran the
 * (128 x 784) @ (784 x 512) product of an MLP step 13% slower on such operands than on 64-byte
 * aligned ones, and PyTorch's allocator aligns every tensor to 64 bytes. This is a NumPy memory
 * handler (NEP 49, numpy/ndarraytypes.h: PyDataMem_Handler) whose blocks all start on a
 * 64-byte boundary.
 *
 * Layout: a block is malloc'd (or calloc'd) with ALIGN spare bytes in front; the pointer
 * handed out is the first 64-byte boundary past the block's start, and the byte just before it
 * holds the distance back to that start (1 to 64), so free and realloc find the block again.
 * calloc stays calloc: a large zeroed array keeps the lazily zeroed pages of the system's
 * allocator.
 *
 * Small sizes are served from a cache of freed blocks, as NumPy's own allocator does (without
 * it each small array cost about 30 ns more, 2-3% of a tiny network's training step). Like
 * NumPy's cache it relies on the GIL to serialise calls, so it is only switched on (by
 * memory.py) in an interpreter that has one. A cached block is reused for any size of its
 * class: NumPy frees with the size it allocated (its own cache depends on that too). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    void *ctx;
    void *(*malloc)(void *ctx, size_t size);
    void *(*calloc)(void *ctx, size_t nelem, size_t elsize);
    void *(*realloc)(void *ctx, void *ptr, size_t new_size);
    void (*free)(void *ctx, void *ptr, size_t size);
} np_allocator;

typedef struct {
    char name[127];
    uint8_t version;
    np_allocator allocator;
} np_handler;

#define ALIGN 64
#define SMALL 1024       /* sizes below this are cached, as in NumPy */
#define CLASS_BYTES 16   /* size classes of 16 bytes: class c holds (c + 1) * 16 bytes */
#define CLASSES (SMALL / CLASS_BYTES)
#define KEEP 8           /* freed blocks kept per class */

static void *cache[CLASSES][KEEP];
static int cached[CLASSES];
static int use_cache;

static size_t class_of(size_t n) { return n ? (n - 1) / CLASS_BYTES : 0; }

/* what a block must hold past the pointer handed out: small sizes the whole class, so any
 * size of the class can reuse it */
static size_t room(size_t n) { return n < SMALL ? (class_of(n) + 1) * CLASS_BYTES : n; }

static void *place(char *start) {
    if (!start) return NULL;
    char *p = (char *)(((uintptr_t)start + ALIGN) & ~(uintptr_t)(ALIGN - 1));
    p[-1] = (char)(p - start);
    return p;
}

static char *start_of(void *p) { return (char *)p - ((unsigned char *)p)[-1]; }

static void *aligned_malloc(void *ctx, size_t n) {
    (void)ctx;
    if (n < SMALL && use_cache) {
        size_t c = class_of(n);
        if (cached[c]) return cache[c][--cached[c]];
    }
    if (n > SIZE_MAX - 2 * ALIGN) return NULL;
    return place(malloc(room(n) + ALIGN));
}

static void *aligned_calloc(void *ctx, size_t k, size_t size) {
    if (size && k > (SIZE_MAX - 2 * ALIGN) / size) return NULL;
    size_t n = k * size;
    if (n < SMALL) {
        void *p = aligned_malloc(ctx, n);
        if (p) memset(p, 0, n);
        return p;
    }
    return place(calloc(1, n + ALIGN));
}

static void *aligned_realloc(void *ctx, void *p, size_t n) {
    if (!p) return aligned_malloc(ctx, n);
    if (n > SIZE_MAX - 2 * ALIGN) return NULL;
    char *start = start_of(p);
    size_t offset = (char *)p - start;
    char *moved = realloc(start, room(n) + ALIGN);
    if (!moved) return NULL;  /* the old block stands, as realloc's contract says */
    char *q = (char *)(((uintptr_t)moved + ALIGN) & ~(uintptr_t)(ALIGN - 1));
    /* the data sits at the old offset in the moved block; slide it onto the new boundary
     * (n bytes from either offset stay inside the block) */
    if ((size_t)(q - moved) != offset) memmove(q, moved + offset, n);
    q[-1] = (char)(q - moved);
    return q;
}

static void aligned_free(void *ctx, void *p, size_t n) {
    (void)ctx;
    if (!p) return;
    if (n < SMALL && use_cache) {
        size_t c = class_of(n);
        if (cached[c] < KEEP) {
            cache[c][cached[c]++] = p;
            return;
        }
    }
    free(start_of(p));
}

static np_handler handler = {
    "deepgrad_aligned_64", 1,
    {NULL, aligned_malloc, aligned_calloc, aligned_realloc, aligned_free}};

/* the handler for a "mem_handler" capsule; cache: whether calls are serialised by a GIL */
void *aligned_handler(int cache_small) {
    use_cache = cache_small;
    return &handler;
}
