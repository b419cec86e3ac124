/*
 * kbind native core: the C API called from Python through cffi.
 *
 * Conventions (every function):
 *   - returns KB_OK (0) on success and a nonzero KB_E* code on failure, after
 *     writing a NUL-terminated message into `err` (at most `errlen` bytes);
 *   - never exits, aborts or prints;
 *   - never allocates memory the caller must free: callers own every buffer
 *     (usually the storage of contiguous torch tensors); scratch memory is
 *     freed before returning;
 *   - bounds-checks every index it reads from caller data before using it.
 *
 * Compact FST representation (shared by the chain, alignment and decoding
 * kernels). An FST with `num_states` states and `num_arcs` arcs is given as
 * parallel arc arrays sorted by source state, in the FST's own arc order:
 *   src[a], dst[a], ilabel[a], olabel[a], weight[a]  (a = 0 .. num_arcs-1)
 * kb_fst_index validates it and builds two CSR indices:
 *   out_offsets[s] .. out_offsets[s+1]-1  : the arcs leaving state s
 *                                            (positions in the arc arrays);
 *   in_offsets[s] .. in_offsets[s+1]-1    : positions in in_arcs of the arcs
 *                                            entering state s, ordered by
 *                                            source state then arc order
 *                                            (Kaldi's backward transitions).
 */
#ifndef KBIND_NATIVE_H
#define KBIND_NATIVE_H

#include <stddef.h>
#include <stdint.h>

#define KB_OK 0
#define KB_EINVAL 1
#define KB_ENOMEM 2

/* Version of the C API, and a hash of the sources it was built from
   (lets Python detect a stale build). */
const char *kb_version(void);
const char *kb_source_hash(void);

/* Threads OpenMP would use (1 when built without OpenMP). */
int kb_max_threads(void);

/*
 * Validate an FST in arc-array form and build its CSR indices.
 *   start: the start state, or -1 for an empty FST (then num_states == 0);
 *   min_label, max_label: inclusive range allowed for ilabel and, when
 *     olabel is not NULL, for olabel;
 *   out_offsets, in_offsets: num_states + 1 entries each (written);
 *   in_arcs: num_arcs entries (written).
 * Fails (KB_EINVAL) on: negative sizes, start out of range, arcs not sorted
 * by source, a source/destination state out of range, a label out of range,
 * a NaN weight (when weight is not NULL).
 */
int kb_fst_index(int32_t num_states, int64_t num_arcs, int32_t start,
                 const int32_t *src, const int32_t *dst,
                 const int32_t *ilabel, const int32_t *olabel, const float *weight,
                 int32_t min_label, int32_t max_label,
                 int64_t *out_offsets, int64_t *in_offsets, int64_t *in_arcs,
                 char *err, size_t errlen);

/*
 * Connection check on an indexed FST: writes accessible[s] = 1 if s is
 * reachable from `start`, and coaccessible[s] = 1 if a final state (final
 * cost finite) is reachable from s. Either output may be NULL.
 */
int kb_fst_connect(int32_t num_states, int32_t start, const float *final_cost,
                   const int32_t *dst, const int32_t *src,
                   const int64_t *out_offsets, const int64_t *in_offsets,
                   const int64_t *in_arcs,
                   uint8_t *accessible, uint8_t *coaccessible,
                   char *err, size_t errlen);

#endif
