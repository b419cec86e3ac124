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

/*
 * Lattice-generating decoder (cbridge/decoder.c): Kaldi's
 * LatticeFasterDecoder over an HCLG whose input labels are transition-ids
 * (0 = epsilon) and output labels words.
 *
 * Handles (the one exception to "callers own every buffer"): the decoder
 * keeps a validated graph and each decoding result in C memory behind an
 * opaque handle, returned as an int64 (the address, tagged with a magic
 * number) in handle_out[0] / result_out[0]. The caller owns the handle and
 * must release it exactly once with the matching *_free function
 * (kbind.decode.decoder does so in __del__ / close()); 0 is never a valid
 * handle and freeing 0 is a no-op. No other scratch outlives a call.
 *
 * kb_decoder_graph_new validates the graph once (out_offsets span the arcs,
 * destinations in range, ilabel in [0, num_tids], olabel >= 0, no NaN
 * weight or final cost, tid2pdf[1..num_tids] >= 0, no epsilon cycle) and
 * keeps POINTERS to the caller's arrays: they must stay alive and unchanged
 * until kb_decoder_graph_free. A graph handle may be used by several
 * threads at once (read-only).
 *   final_cost[num_states] (+inf = not final); dst/ilabel/olabel/weight
 *   [num_arcs] grouped by source; out_offsets[num_states + 1];
 *   tid2pdf[num_tids + 1] (entry 0 unused).
 */
int kb_decoder_graph_new(int32_t num_states, int64_t num_arcs, int32_t start,
                         const float *final_cost, const int32_t *dst, const int32_t *ilabel,
                         const int32_t *olabel, const float *weight,
                         const int64_t *out_offsets, const int32_t *tid2pdf,
                         int32_t num_tids, int64_t *handle_out, char *err, size_t errlen);
int kb_decoder_graph_free(int64_t handle, char *err, size_t errlen);

/*
 * Decode one utterance: loglikes[num_frames][num_cols] (row-major float32,
 * column = pdf-id; num_cols must exceed every pdf-id of tid2pdf; NaN or +inf
 * -> KB_EINVAL naming the frame). Options as LatticeFasterDecoderConfig
 * (beam, max_active, min_active, lattice_beam, prune_interval, beam_delta,
 * hash_ratio, prune_scale) and the decodable's acoustic_scale.
 * On success result_out[0] is a result handle and
 *   sizes_out[0] = num_frames, [1] = number of words on the best path,
 *   [2] = lattice states, [3] = lattice arcs, [4] = 1 if a final state was
 *   reached (Kaldi's ReachedFinal), else 0 (then the lattice treats every
 *   last-frame state as final, as use_final_probs does).
 * Fails if no token survives to the end (Kaldi: "Failed to decode").
 */
int kb_decode_lattice_faster(int64_t graph, const float *loglikes, int32_t num_frames,
                             int32_t num_cols, float acoustic_scale, float beam,
                             int32_t max_active, int32_t min_active, float lattice_beam,
                             int32_t prune_interval, float beam_delta, float hash_ratio,
                             float prune_scale, int64_t *result_out, int64_t *sizes_out,
                             char *err, size_t errlen);

/*
 * Copy a result out (any output may be NULL):
 *   alignment[num_frames]: transition-ids of the best path;
 *   words[sizes_out[1]]: its words;
 *   costs[3]: best path graph cost, SCALED acoustic cost (acoustic_scale *
 *     -loglikes, as Kaldi's decoder holds it), final-relative cost;
 *   the raw lattice (Kaldi's GetRawLattice with use_final_probs, then
 *   Connect): start state 0, states in topological (frame) order, arcs
 *   grouped by source: lat_src/dst/ilabel(tid)/olabel(word)[arcs],
 *   lat_weight[arcs][2] = (graph cost, SCALED acoustic cost),
 *   lat_final[states][2] ((+inf, +inf) = not final).
 */
int kb_decode_result_copy(int64_t result, int32_t *alignment, int32_t *words, float *costs,
                          int32_t *lat_src, int32_t *lat_dst, int32_t *lat_ilabel,
                          int32_t *lat_olabel, float *lat_weight, float *lat_final,
                          char *err, size_t errlen);
int kb_decode_result_free(int64_t result, char *err, size_t errlen);

#endif
