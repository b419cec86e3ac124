/* Helpers shared by the C sources of kbind (not part of the cffi API). */
#ifndef KBIND_COMMON_H
#define KBIND_COMMON_H

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "kbind_native.h"

/* Write a formatted message into err and return code. */
static inline int kb_fail(char *err, size_t errlen, int code, const char *fmt, ...) {
  if (err && errlen) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
  }
  return code;
}

/* Grow a realloc'd array to hold at least `need` elements (capacity doubles
   from 256, capped at INT32_MAX). Returns 0, or -1 when it cannot (the array
   is left as it was). */
static inline int kb_grow(void **p, int32_t *cap, int64_t need, size_t elem) {
  if (need <= *cap) return 0;
  int64_t nc = *cap > 0 ? *cap : 256;
  while (nc < need) nc *= 2;
  if (nc > INT32_MAX) nc = INT32_MAX;
  if (nc < need) return -1;
  void *q = realloc(*p, (size_t)nc * elem);
  if (!q) return -1;
  *p = q;
  *cap = (int32_t)nc;
  return 0;
}

#endif
