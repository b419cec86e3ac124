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

/* Check CSR offsets[num_states + 1] (num_states > 0): they start at 0, never
   decrease and end at num_arcs, so that offsets[s] .. offsets[s+1]-1 are arc
   indices. `name` names the array in the message. */
static inline int kb_check_offsets(const char *name, int32_t num_states, int64_t num_arcs,
                                   const int64_t *offsets, char *err, size_t errlen) {
  if (offsets[0] != 0 || offsets[num_states] != num_arcs)
    return kb_fail(err, errlen, KB_EINVAL, "%s must run from 0 to the %lld arcs (got %lld .. "
                   "%lld)", name, (long long)num_arcs, (long long)offsets[0],
                   (long long)offsets[num_states]);
  for (int32_t s = 0; s < num_states; s++)
    if (offsets[s + 1] < offsets[s])
      return kb_fail(err, errlen, KB_EINVAL, "%s decrease at state %d (%lld after %lld)", name,
                     (int)s, (long long)offsets[s + 1], (long long)offsets[s]);
  return KB_OK;
}

/* An output buffer of a copy-out function: `capacity` entries allocated by
   the caller (in the units of `need`), `need` the entries the result has;
   buf NULL = not requested. */
typedef struct {
  const void *buf;
  const char *name;
  int64_t capacity, need;
} kb_output;

/* KB_OK if every requested output has room for its result, else KB_EINVAL
   naming the first that has not. */
static inline int kb_check_capacities(const kb_output *outs, size_t n, char *err,
                                      size_t errlen) {
  for (size_t i = 0; i < n; i++)
    if (outs[i].buf && outs[i].capacity < outs[i].need)
      return kb_fail(err, errlen, KB_EINVAL, "%s: room for %lld, the result has %lld",
                     outs[i].name, (long long)outs[i].capacity, (long long)outs[i].need);
  return KB_OK;
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

/* Validate a decoding or training graph in place (cbridge/decoder.c; the
   checks kbind_native.h lists under kb_decoder_graph_new). On success
   *has_eps_out (if not NULL) receives a malloc'd num_states flags "state has
   an input-epsilon arc" (the caller frees it) and *max_pdf_out (if not
   NULL) the largest pdf-id of tid2pdf (-1 if none). */
int kb_hclg_check(int32_t num_states, int64_t num_arcs, int32_t start, const float *final_cost,
                  const int32_t *dst, const int32_t *ilabel, const int32_t *olabel,
                  const float *weight, const int64_t *out_offsets, const int32_t *tid2pdf,
                  int32_t num_tids, uint8_t **has_eps_out, int32_t *max_pdf_out, char *err,
                  size_t errlen);

#endif
