/*
 * Large buffers on huge pages (bigmem.h).
 */
#include "mamori/bigmem.h"

#include <sys/mman.h>

void *mm_bigmem_alloc(size_t bytes)
{
	void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		return NULL;
	/* Best effort: the kernel may run transparent huge pages "madvise" only, or not at all. */
	(void)madvise(p, bytes, MADV_HUGEPAGE);
	return p;
}

void mm_bigmem_free(void *p, size_t bytes)
{
	if (p)
		munmap(p, bytes);
}
