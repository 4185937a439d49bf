/* Scratch blocks of the kernels (packed weights, a weight gradient's packing space),
   kept from one kernel call to the next.

   A block of a few MB comes from mmap and goes back to the system when freed: glibc
   reuses freed memory only below its mmap threshold (at most 32 MB), and less once
   its trim threshold hands the top of the heap back.  Every call then faulted in,
   and the system zeroed, every page of its packed weights anew: LSTM(1024) at batch
   8, 8,400 page faults a call.  The last few blocks freed wait here for the next
   call, as PyTorch's caching allocator keeps its tensors and fastrnn._scratch its
   NumPy buffers.

   Lock-free: a slot is emptied and filled by atomic exchange, so calls running at
   once (from several Python threads) never share a block. */
#ifndef FASTRNN_BLOCKS_H
#define FASTRNN_BLOCKS_H
#include <stddef.h>
#include <stdlib.h>

/* Slots for spare blocks: a call holds a few (the packed weights, one per thread for
   a weight gradient). */
#define FASTRNN_SPARE_BLOCKS 32
/* Larger blocks go back to the system: a layer that big pays its page faults. */
#define FASTRNN_SPARE_MAX_BYTES ((size_t)256 << 20)

/* The block's size sits in front of what the caller sees; 64 bytes keep the
   caller's start on a cache line whenever malloc's is. */
typedef struct { size_t bytes; char pad[64 - sizeof(size_t)]; } fastrnn_block_head;

static fastrnn_block_head* fastrnn_spare_blocks[FASTRNN_SPARE_BLOCKS];

/* A spare block of at least ``bytes`` and at most ``most`` bytes, or NULL.  Each slot
   is emptied to look at its block, and a block that does not fit goes back (freed
   should another block have filled the slot meanwhile). */
static fastrnn_block_head* fastrnn_take_spare(size_t bytes, size_t most) {
    for (int i = 0; i < FASTRNN_SPARE_BLOCKS; i++) {
        fastrnn_block_head* h =
            __atomic_exchange_n(&fastrnn_spare_blocks[i], NULL, __ATOMIC_ACQ_REL);
        if (h == NULL)
            continue;
        if (h->bytes >= bytes && h->bytes <= most)
            return h;
        fastrnn_block_head* empty = NULL;
        if (!__atomic_compare_exchange_n(&fastrnn_spare_blocks[i], &empty, h, 0,
                                         __ATOMIC_ACQ_REL, __ATOMIC_RELAXED))
            free(h);
    }
    return NULL;
}

/* Room for ``bytes`` bytes (NULL if malloc fails): a spare block that fits, one at
   most twice the size first (so that a small request leaves the large blocks to
   the large ones), else a new block. */
static void* fastrnn_block_alloc(size_t bytes) {
    fastrnn_block_head* h = fastrnn_take_spare(bytes, 2 * bytes);
    if (h == NULL)
        h = fastrnn_take_spare(bytes, (size_t)-1);
    if (h == NULL) {
        h = (fastrnn_block_head*)malloc(sizeof(fastrnn_block_head) + bytes);
        if (h == NULL)
            return NULL;
        h->bytes = bytes;
    }
    return h + 1;
}

/* Hands back a block of fastrnn_block_alloc (NULL is ignored). */
static void fastrnn_block_free(void* p) {
    if (p == NULL)
        return;
    fastrnn_block_head* h = (fastrnn_block_head*)p - 1;
    if (h->bytes <= FASTRNN_SPARE_MAX_BYTES) {
        for (int i = 0; i < FASTRNN_SPARE_BLOCKS; i++) {
            fastrnn_block_head* empty = NULL;
            if (__atomic_compare_exchange_n(&fastrnn_spare_blocks[i], &empty, h, 0,
                                            __ATOMIC_ACQ_REL, __ATOMIC_RELAXED))
                return;
        }
    }
    free(h);
}
#endif
