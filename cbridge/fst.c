/*
 * Compact FST indices (see kbind_native.h for the representation).
 *
 * kb_fst_index builds the out-arc CSR from the (sorted) source array in one
 * pass and the in-arc CSR with a stable counting sort by destination, so
 * arcs entering a state keep source-then-arc order, as Kaldi's
 * DenominatorGraph orders its backward transitions.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

int kb_fst_index(int32_t num_states, int64_t num_arcs, int32_t start,
                 const int32_t *src, const int32_t *dst,
                 const int32_t *ilabel, const int32_t *olabel, const float *weight,
                 int32_t min_label, int32_t max_label,
                 int64_t *out_offsets, int64_t *in_offsets, int64_t *in_arcs,
                 char *err, size_t errlen) {
  if (num_states < 0 || num_arcs < 0)
    return kb_fail(err, errlen, KB_EINVAL, "negative size: %d states, %lld arcs",
                   (int)num_states, (long long)num_arcs);
  if (num_states == 0) {
    if (num_arcs != 0)
      return kb_fail(err, errlen, KB_EINVAL, "an FST with no states cannot have %lld arcs",
                     (long long)num_arcs);
    if (start != -1)
      return kb_fail(err, errlen, KB_EINVAL, "start state %d in an FST with no states",
                     (int)start);
    out_offsets[0] = 0;
    in_offsets[0] = 0;
    return KB_OK;
  }
  if (start < 0 || start >= num_states)
    return kb_fail(err, errlen, KB_EINVAL, "start state %d out of range [0, %d)", (int)start,
                   (int)num_states);
  if (num_arcs > 0 && (!src || !dst || !ilabel))
    return kb_fail(err, errlen, KB_EINVAL, "missing arc arrays");

  for (int64_t s = 0; s <= num_states; s++) {
    out_offsets[s] = 0;
    in_offsets[s] = 0;
  }
  int32_t prev = 0;
  for (int64_t a = 0; a < num_arcs; a++) {
    int32_t s = src[a], d = dst[a];
    if (s < 0 || s >= num_states)
      return kb_fail(err, errlen, KB_EINVAL, "arc %lld: source state %d out of range [0, %d)",
                     (long long)a, (int)s, (int)num_states);
    if (d < 0 || d >= num_states)
      return kb_fail(err, errlen, KB_EINVAL,
                     "arc %lld (from state %d): destination state %d out of range [0, %d)",
                     (long long)a, (int)s, (int)d, (int)num_states);
    if (s < prev)
      return kb_fail(err, errlen, KB_EINVAL,
                     "arc %lld: arcs are not sorted by source state (%d after %d)",
                     (long long)a, (int)s, (int)prev);
    prev = s;
    if (ilabel[a] < min_label || ilabel[a] > max_label)
      return kb_fail(err, errlen, KB_EINVAL,
                     "arc %lld (state %d -> %d): input label %d out of range [%d, %d]",
                     (long long)a, (int)s, (int)d, (int)ilabel[a], (int)min_label,
                     (int)max_label);
    if (olabel && (olabel[a] < min_label || olabel[a] > max_label))
      return kb_fail(err, errlen, KB_EINVAL,
                     "arc %lld (state %d -> %d): output label %d out of range [%d, %d]",
                     (long long)a, (int)s, (int)d, (int)olabel[a], (int)min_label,
                     (int)max_label);
    if (weight && isnan(weight[a]))
      return kb_fail(err, errlen, KB_EINVAL, "arc %lld (state %d -> %d): weight is NaN",
                     (long long)a, (int)s, (int)d);
    out_offsets[s + 1]++;
    in_offsets[d + 1]++;
  }
  for (int32_t s = 0; s < num_states; s++) {
    out_offsets[s + 1] += out_offsets[s];
    in_offsets[s + 1] += in_offsets[s];
  }
  int64_t *fill = (int64_t *)malloc(sizeof(int64_t) * (size_t)num_states);
  if (!fill) return kb_fail(err, errlen, KB_ENOMEM, "out of memory (%d states)", (int)num_states);
  memcpy(fill, in_offsets, sizeof(int64_t) * (size_t)num_states);
  for (int64_t a = 0; a < num_arcs; a++) in_arcs[fill[dst[a]]++] = a;
  free(fill);
  return KB_OK;
}

/* Depth-first search over a CSR index with an explicit stack. */
static int reach(int32_t num_states, const int32_t *seeds, int32_t num_seeds,
                 const int64_t *offsets, const int64_t *order, const int32_t *next,
                 uint8_t *mark, char *err, size_t errlen) {
  int32_t *stack = (int32_t *)malloc(sizeof(int32_t) * (size_t)(num_states > 0 ? num_states : 1));
  if (!stack) return kb_fail(err, errlen, KB_ENOMEM, "out of memory (%d states)", (int)num_states);
  memset(mark, 0, (size_t)num_states);
  int32_t top = 0;
  for (int32_t i = 0; i < num_seeds; i++) {
    if (!mark[seeds[i]]) {
      mark[seeds[i]] = 1;
      stack[top++] = seeds[i];
    }
  }
  while (top > 0) {
    int32_t s = stack[--top];
    for (int64_t k = offsets[s]; k < offsets[s + 1]; k++) {
      int64_t a = order ? order[k] : k;
      int32_t t = next[a];
      if (!mark[t]) {
        mark[t] = 1;
        stack[top++] = t;
      }
    }
  }
  free(stack);
  return KB_OK;
}

/* Every entry of states[n] in [0, num_states). */
static int check_states(const char *name, int64_t n, const int32_t *states,
                        int32_t num_states, char *err, size_t errlen) {
  for (int64_t a = 0; a < n; a++)
    if (states[a] < 0 || states[a] >= num_states)
      return kb_fail(err, errlen, KB_EINVAL, "arc %lld: %s state %d out of range [0, %d)",
                     (long long)a, name, (int)states[a], (int)num_states);
  return KB_OK;
}

int kb_fst_connect(int32_t num_states, int64_t num_arcs, int32_t start, const float *final_cost,
                   const int32_t *dst, const int32_t *src,
                   const int64_t *out_offsets, const int64_t *in_offsets,
                   const int64_t *in_arcs,
                   uint8_t *accessible, uint8_t *coaccessible,
                   char *err, size_t errlen) {
  if (num_states < 0 || num_arcs < 0)
    return kb_fail(err, errlen, KB_EINVAL, "negative size: %d states, %lld arcs",
                   (int)num_states, (long long)num_arcs);
  if (num_states == 0) return KB_OK;
  if (start < 0 || start >= num_states)
    return kb_fail(err, errlen, KB_EINVAL, "start state %d out of range [0, %d)", (int)start,
                   (int)num_states);
  int rc = KB_OK;
  if (accessible) {
    if (!out_offsets || (num_arcs > 0 && !dst))
      return kb_fail(err, errlen, KB_EINVAL, "missing arrays for the accessible states");
    if ((rc = kb_check_offsets("out_offsets", num_states, num_arcs, out_offsets, err, errlen)) ||
        (rc = check_states("destination", num_arcs, dst, num_states, err, errlen)))
      return rc;
  }
  if (coaccessible) {
    if (!final_cost || !in_offsets || (num_arcs > 0 && (!src || !in_arcs)))
      return kb_fail(err, errlen, KB_EINVAL, "missing arrays for the coaccessible states");
    if ((rc = kb_check_offsets("in_offsets", num_states, num_arcs, in_offsets, err, errlen)) ||
        (rc = check_states("source", num_arcs, src, num_states, err, errlen)))
      return rc;
    for (int64_t k = 0; k < num_arcs; k++)
      if (in_arcs[k] < 0 || in_arcs[k] >= num_arcs)
        return kb_fail(err, errlen, KB_EINVAL, "in_arcs[%lld] = %lld out of range [0, %lld)",
                       (long long)k, (long long)in_arcs[k], (long long)num_arcs);
  }
  if (accessible)
    rc = reach(num_states, &start, 1, out_offsets, NULL, dst, accessible, err, errlen);
  if (rc == KB_OK && coaccessible) {
    int32_t *finals = (int32_t *)malloc(sizeof(int32_t) * (size_t)num_states);
    if (!finals) return kb_fail(err, errlen, KB_ENOMEM, "out of memory");
    int32_t n = 0;
    for (int32_t s = 0; s < num_states; s++)
      if (isfinite(final_cost[s])) finals[n++] = s;
    rc = reach(num_states, finals, n, in_offsets, in_arcs, src, coaccessible, err, errlen);
    free(finals);
  }
  return rc;
}
