/* Helpers shared by the C sources of kbind (not part of the cffi API). */
#ifndef KBIND_COMMON_H
#define KBIND_COMMON_H

#include <stdarg.h>
#include <stdio.h>

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

#endif
