/* Library-wide entry points: version, build hash, thread count. */
#include "common.h"

#ifdef _OPENMP
#include <omp.h>
#endif

#ifndef KB_SOURCE_HASH
#define KB_SOURCE_HASH "unknown"
#endif

const char *kb_version(void) { return "1"; }

const char *kb_source_hash(void) { return KB_SOURCE_HASH; }

int kb_max_threads(void) {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}
