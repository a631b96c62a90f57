// oneDNN 2.6 C API for Swift, plus the few things Swift cannot import from it.
#ifndef CDNNL_SHIM_H
#define CDNNL_SHIM_H

#include <oneapi/dnnl/dnnl.h>

/// `DNNL_MEMORY_ALLOCATE` is a cast macro Swift does not import: ask oneDNN to own the buffer.
static inline void *cdnnl_memory_allocate(void) { return DNNL_MEMORY_ALLOCATE; }

/// `DNNL_MEMORY_NONE`: create a memory object without a buffer (one is attached later).
static inline void *cdnnl_memory_none(void) { return DNNL_MEMORY_NONE; }

/// oneDNN here runs on libgomp. The OpenMP thread count is a per-thread setting
/// (nthreads-var), so the thread that calls oneDNN sets it for itself.
extern void omp_set_num_threads(int num_threads);
extern int omp_get_max_threads(void);

#endif
