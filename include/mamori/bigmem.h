/*
 * Large buffers that are read at random rows (flow buffers, detector
 * tables): anonymous mappings, zeroed, on transparent huge pages where the
 * kernel gives them. With 4 KiB pages nearly every random touch of tens or
 * hundreds of MiB is also a TLB miss (two nested page walks under
 * virtualisation).
 */
#ifndef MAMORI_BIGMEM_H
#define MAMORI_BIGMEM_H

#include <stddef.h>

/* bytes of zeroed memory, or NULL when out of memory. Huge pages are only a hint. */
void *mm_bigmem_alloc(size_t bytes);

/* Releases what mm_bigmem_alloc(bytes) returned; NULL is ignored. */
void mm_bigmem_free(void *p, size_t bytes);

#endif
