/*
 * kbind native core: the C API called from Python through cffi.
 *
 * Conventions (every function):
 *   - returns KB_OK (0) on success and a nonzero KB_E* code on failure, after
 *     writing a NUL-terminated message into `err` (at most `errlen` bytes);
 *   - never exits, aborts or prints;
 *   - never allocates memory the caller must free: callers own every buffer
 *     (usually the storage of contiguous torch tensors); scratch memory is
 *     freed before returning; the exceptions are the opaque handles below
 *     (decoder graph, decode and determinization results, den graph index),
 *     each released by its own *_free function;
 *   - reads and writes exactly the number of entries each array's comment
 *     gives in terms of the size arguments (e.g. dst[num_arcs],
 *     out_offsets[num_states + 1]): the caller guarantees those lengths
 *     (kbind._native.ptr checks each array against them), and the function
 *     checks every index, offset and size it reads from caller data against
 *     the size arguments before using it, so that no input makes it read or
 *     write outside those lengths;
 *   - a function that keeps data beyond the call (a handle) keeps its own
 *     copy: the caller's arrays may change or be freed right after it returns.
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
#define KB_EINVAL 1  /* bad input: sizes, indices, labels, NaN / inf values, options */
#define KB_ENOMEM 2  /* an allocation failed */
#define KB_ENOPATH 3 /* valid input, but the search found no result (no token survived,
                        no path in the lattice, zero frames): Kaldi's "Failed to decode" */

/* Version of the C API, and a hash of the sources it was built from
   (lets Python detect a stale build). */
const char *kb_version(void);
const char *kb_source_hash(void);

/* Threads OpenMP would use (1 when built without OpenMP). */
int kb_max_threads(void);

/*
 * Validate an FST in arc-array form and build its CSR indices.
 *   src/dst/ilabel[num_arcs], olabel/weight[num_arcs] or NULL (read);
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
 * Connection check on an indexed FST (as kb_fst_index built it): writes
 * accessible[s] = 1 if s is reachable from `start`, and coaccessible[s] = 1
 * if a final state (final cost finite) is reachable from s. Either output
 * may be NULL.
 *   final_cost[num_states], dst/src/in_arcs[num_arcs],
 *   out_offsets/in_offsets[num_states + 1] (read); accessible/coaccessible
 *   [num_states] (written).
 * Fails (KB_EINVAL) on: negative sizes, start out of range, offsets that do
 * not start at 0, decrease or end elsewhere than num_arcs, an in_arcs entry
 * outside [0, num_arcs), a source/destination state out of range.
 */
int kb_fst_connect(int32_t num_states, int64_t num_arcs, int32_t start, const float *final_cost,
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
 * handle and freeing 0 is a no-op. No other scratch outlives a call. A
 * handle is used as the pointer it is: the magic number catches a handle of
 * the other kind (and usually one already freed), not any int64 at all.
 *
 * kb_decoder_graph_new copies the graph into memory the handle owns (16
 * bytes per arc, 13 per state, 4 per transition-id; freed by
 * kb_decoder_graph_free) and validates the copy: out_offsets start at 0,
 * never decrease and end at num_arcs; destinations in [0, num_states);
 * ilabel in [0, num_tids]; olabel >= 0; no NaN weight or final cost;
 * tid2pdf[1..num_tids] >= 0; no epsilon cycle. The caller's arrays are not
 * used after it returns. A graph handle may be used by several threads at
 * once (read-only); the caller must not free it while a search uses it
 * (kbind.decode.decoder's close() waits for running searches).
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
 * -> KB_EINVAL naming the frame and pdf). Options as LatticeFasterDecoderConfig
 * (beam, max_active, min_active, lattice_beam, prune_interval, beam_delta,
 * hash_ratio, prune_scale) and the decodable's acoustic_scale.
 * On success result_out[0] is a result handle and
 *   sizes_out[0] = num_frames, [1] = number of words on the best path,
 *   [2] = lattice states, [3] = lattice arcs, [4] = 1 if a final state was
 *   reached (Kaldi's ReachedFinal), else 0 (then the lattice treats every
 *   last-frame state as final, as use_final_probs does).
 * Fails with KB_EINVAL on bad input (a negative number of frames, too few
 * columns, a NaN or +inf log-likelihood, invalid options), and with
 * KB_ENOPATH when the input is valid but gives no lattice: zero frames
 * (Kaldi counts a zero-length utterance as failed), no token surviving to
 * the end, or no path from the start to a last-frame token (Kaldi: "Failed
 * to decode").
 */
int kb_decode_lattice_faster(int64_t graph, const float *loglikes, int32_t num_frames,
                             int32_t num_cols, float acoustic_scale, float beam,
                             int32_t max_active, int32_t min_active, float lattice_beam,
                             int32_t prune_interval, float beam_delta, float hash_ratio,
                             float prune_scale, int64_t *result_out, int64_t *sizes_out,
                             char *err, size_t errlen);

/*
 * Copy a result out (any output may be NULL). The capacities are the
 * entries the caller allocated: alignment has room for frames_capacity
 * transition-ids, words for words_capacity words, lat_src/dst/ilabel/olabel
 * for arcs_capacity arcs (lat_weight 2 * arcs_capacity floats), lat_final
 * for states_capacity states (2 * states_capacity floats). A non-NULL output
 * whose capacity is below the result's size (sizes_out of
 * kb_decode_lattice_faster) fails with KB_EINVAL naming it; nothing is
 * written then.
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
int kb_decode_result_copy(int64_t result, int32_t frames_capacity, int32_t words_capacity,
                          int32_t states_capacity, int64_t arcs_capacity,
                          int32_t *alignment, int32_t *words, float *costs,
                          int32_t *lat_src, int32_t *lat_dst, int32_t *lat_ilabel,
                          int32_t *lat_olabel, float *lat_weight, float *lat_final,
                          char *err, size_t errlen);
int kb_decode_result_free(int64_t result, char *err, size_t errlen);

/*
 * Pruned lattice determinization (cbridge/latdet.c): Kaldi's
 * DeterminizeLatticePhonePrunedWrapper on a raw state-level lattice (as
 * kb_decode_result_copy gives it: dst/ilabel/olabel[num_arcs], ilabel =
 * transition-id (0 = none), olabel = word (0 = epsilon), weight[num_arcs][2]
 * = (graph, acoustic) costs, final_cost[num_states][2], (+inf, +inf) = not
 * final; arcs grouped by source state with out_offsets[num_states + 1]; any
 * state numbering, but acyclic). Weights
 * are pruned as given (pass scaled acoustic costs, as Kaldi does).
 *   tid2phone_start[num_tids + 1] (or NULL: word-level pass only): for each
 *     transition-id, the phone it starts (> 0; Kaldi: HMM state 0 and not a
 *     self-loop), else 0; then every ilabel must be <= num_tids;
 *   beam (> 0, may be +inf), delta (approximate weight equality of subsets,
 *   >= 0), max_mem (bytes, estimate; <= 0: no limit), max_states, max_arcs
 *   (<= 0: no limit), retry_cutoff (Kaldi's, in [0, 1); 0.5).
 * Limits never fail the call: a pass that hits one stops, and is retried on
 * its input pruned at a narrower beam when its effective beam is below
 * beam * retry_cutoff (Kaldi's DeterminizeLatticePruned retry loop; see
 * latdet.c); otherwise the partial output is kept. Fails (KB_EINVAL) on bad
 * sizes, out_offsets that do not start at 0, decrease or end elsewhere than
 * num_arcs, a destination state out of range, a negative word, a
 * transition-id < 0 (or > num_tids with the phone map), a negative phone, a
 * NaN or -inf weight or final weight, a cyclic lattice; KB_ENOMEM when an
 * allocation fails.
 * On success result_out[0] is a result handle (free it with
 * kb_latdet_result_free) and
 *   sizes_out[8]: [0] output states, [1] output arcs, [2] total length of
 *     the final-weight strings, [3] total length of the arc strings,
 *     [4] 1 if every pass finished at the requested beam (no limit hit),
 *     [5] number of retries, [6] arcs of the (connected) raw lattice,
 *     [7] determinized states created (all passes and attempts);
 *   stats_out[4]: [0] the narrowest beam a kept pass used, [1] the smallest
 *     effective beam reached, [2] / [3] states / arcs of the phone-pass
 *     output (0 without phone pass).
 */
int kb_latdet_pruned(int32_t num_states, int64_t num_arcs, int32_t start,
                     const float *final_cost, const int64_t *out_offsets, const int32_t *dst,
                     const int32_t *ilabel, const int32_t *olabel, const float *weight,
                     const int32_t *tid2phone_start, int32_t num_tids, double beam,
                     double delta, int64_t max_mem, int64_t max_states, int64_t max_arcs,
                     double retry_cutoff, int64_t *result_out, int64_t *sizes_out,
                     double *stats_out, char *err, size_t errlen);

/*
 * Copy a determinization result out (any output may be NULL): a
 * CompactLattice with start state 0, states in topological order, arcs
 * grouped by source and sorted by word (ilabel = olabel = word, no
 * epsilons):
 *   final_cost[states][2], final_string_offsets[states + 1],
 *   final_string_data[sizes_out[2]]; arc_src/dst/label[arcs],
 *   arc_weight[arcs][2], arc_string_offsets[arcs + 1],
 *   arc_string_data[sizes_out[3]] (transition-ids).
 * The capacities are what the caller allocated, in the units above:
 * final_cost has room for states_capacity states and final_string_offsets
 * for states_capacity + 1 entries; the arc arrays for arcs_capacity arcs
 * and arc_string_offsets for arcs_capacity + 1 entries; final_string_data
 * and arc_string_data for final_string_capacity / arc_string_capacity
 * transition-ids. A non-NULL output whose capacity is below the result's
 * size fails with KB_EINVAL naming it; nothing is written then.
 */
int kb_latdet_result_copy(int64_t result, int64_t states_capacity, int64_t arcs_capacity,
                          int64_t final_string_capacity, int64_t arc_string_capacity,
                          float *final_cost, int64_t *final_string_offsets,
                          int32_t *final_string_data, int32_t *arc_src, int32_t *arc_dst,
                          int32_t *arc_label, float *arc_weight, int64_t *arc_string_offsets,
                          int32_t *arc_string_data, char *err, size_t errlen);
int kb_latdet_result_free(int64_t result, char *err, size_t errlen);

/*
 * Chain denominator forward-backward (cbridge/chain_den.c): Kaldi's
 * DenominatorComputation Forward + Backward on the CPU for S sequences of
 * per-sequence lengths, float32 (see kbind/chain/denominator.py).
 * The den graph in Kaldi's DenominatorGraph form:
 *   forward_transitions[num_states][2]: [begin, end) into the transitions
 *     arrays of the arcs leaving each state (only these entries are read);
 *   transitions_prob/pdf/hmm_state[num_transitions]: exp(-cost), pdf-id in
 *     [0, num_pdfs), destination state;
 *   initial_probs[num_states].
 * Inputs: nnet_output[S][T][num_pdfs] (batch-first, row-major float32: what
 * the torch API passes); lengths[S] in [1, T] (NULL = all T): frames past a
 * sequence's end are ignored and each sequence gives what it gives alone;
 * leaky_hmm_coefficient in (0, 1). exp(nnet_output) is limited as Kaldi's
 * ApplyExpLimited(-30, 30) (NaN -> exp(-30), +inf -> exp(30)).
 * Outputs (caller-owned): logprob[S] (log Z_den per sequence);
 *   deriv[S][T][num_pdfs] = d logprob_s / d nnet_output (the denominator
 *   posteriors, zero past each length), or NULL to run the forward pass only;
 *   checks[2] (may be NULL): Kaldi's sanity sums at t = 0 over all sequences,
 *   sum alpha'(0) beta'(0) and sum of the posteriors of frame 0 (both should
 *   equal S; backward only);
 *   scratch_bytes[1] (may be NULL): bytes of scratch memory this call held at
 *   its peak (all threads and the graph index).
 * num_threads: OpenMP threads (<= 0: OpenMP's default), used over blocks of
 *   16 or 32 sequences (32 with AVX2/AVX-512 when every thread still gets a
 *   block). isa: -1 = best the CPU has; 0 baseline, 1 AVX2, 2 AVX-512
 *   (clipped to what the CPU has; for tests and benchmarks).
 * Memory: allocates and frees its scratch itself: per thread, with SB lanes
 *   per block, alphas of every K-th frame and of one segment of K frames plus
 *   two frames of betas ((T/K + max(K, 2) + 2) * H * SB floats, K >= 1 frames
 *   of alphas being about 512 KiB; 2 * H * SB without deriv) + 3 * D16 * SB
 *   floats (exp(outputs) of one frame, its tile, the posteriors of one frame;
 *   D16 = D rounded up to 16); about 32 bytes per arc for the graph index.
 * Fails (KB_EINVAL, nothing written) on: non-positive sizes, a length out of
 * [1, T], leaky not in (0, 1), a transition range, next state or pdf-id out of
 * range, a negative or non-finite transition or initial probability;
 * KB_ENOMEM when scratch cannot be allocated.
 */
int kb_chain_den_forward_backward(int32_t num_states, int32_t num_pdfs,
                                  const int32_t *forward_transitions, int64_t num_transitions,
                                  const float *transitions_prob, const int32_t *transitions_pdf,
                                  const int32_t *transitions_hmm_state,
                                  const float *initial_probs, int32_t num_sequences,
                                  int32_t num_frames, const float *nnet_output,
                                  const int64_t *lengths, double leaky_hmm_coefficient,
                                  int32_t num_threads, int32_t isa, float *logprob,
                                  float *deriv, double *checks, int64_t *scratch_bytes,
                                  char *err, size_t errlen);

/*
 * The same in two steps, so that the graph index (the arcs regrouped for the
 * kernel, about 32 bytes per arc: building it costs about 1.5 ms for 25k arcs)
 * is built once per graph and leaky coefficient instead of once per call:
 * kb_den_index_new checks the graph and builds the index (it copies what it
 * needs: the arrays may be freed after), kb_chain_den_forward_backward_index
 * runs a batch on it (read-only: an index may serve concurrent calls), and
 * kb_den_index_free frees it (NULL is allowed). Arguments, outputs and errors
 * as kb_chain_den_forward_backward's.
 */
typedef struct kb_den_index kb_den_index;
/* The best instruction set of the den kernel on this CPU (the isa that -1
   picks, and the largest one an isa argument is clipped to): 0 baseline,
   1 AVX2 + FMA, 2 AVX-512 (F, DQ, VL). */
int kb_den_best_isa(void);
int kb_den_index_new(int32_t num_states, int32_t num_pdfs, const int32_t *forward_transitions,
                     int64_t num_transitions, const float *transitions_prob,
                     const int32_t *transitions_pdf, const int32_t *transitions_hmm_state,
                     const float *initial_probs, double leaky_hmm_coefficient,
                     kb_den_index **out, char *err, size_t errlen);
int kb_chain_den_forward_backward_index(const kb_den_index *index, int32_t num_sequences,
                                        int32_t num_frames, const float *nnet_output,
                                        const int64_t *lengths, int32_t num_threads, int32_t isa,
                                        float *logprob, float *deriv, double *checks,
                                        int64_t *scratch_bytes, char *err, size_t errlen);
void kb_den_index_free(kb_den_index *index);

/* ==== lattice best paths (cbridge/lattice.c) ============================== */
/*
 * Best paths of one acyclic lattice (Kaldi Lattice: graph and acoustic costs
 * per arc) for num_settings weight settings: setting k scales acoustic costs
 * by ac_scale[k] (lattice-scale --acoustic-scale) and adds wip[k] to the
 * graph cost of arcs with a word (lattice-add-penalty), as score.sh's sweep.
 *   offsets[num_states + 1], dst/graph/acoustic/olabel[num_arcs] (arcs
 *   grouped by source), final_graph/final_acoustic[num_states] (both +inf =
 *   not final); ac_scale/wip[num_settings]; start < 0 or no states: no path
 *   (nothing but best_final is read or written).
 * Outputs: best_final[num_settings] = the final state of the best path or
 *   -1 (no complete path); back[num_settings * num_states]: back[k *
 *   num_states + s] = the arc entering s on the best path to s (-1 for the
 *   start / unreached), to trace the path back.
 * Fails (KB_EINVAL) on negative sizes, start out of range, offsets that do
 * not start at 0, decrease or end elsewhere than num_arcs, a destination
 * state out of range, a cyclic lattice; KB_ENOMEM on scratch.
 */
int kb_lattice_best_paths(int32_t num_states, int64_t num_arcs, int32_t start,
                          const int64_t *offsets,
                          const int32_t *dst, const float *graph, const float *acoustic,
                          const int32_t *olabel, const float *final_graph,
                          const float *final_acoustic, int32_t num_settings,
                          const double *ac_scale, const float *wip, int32_t *best_final,
                          int64_t *back, char *err, size_t errlen);
/* ==== end of lattice best paths =========================================== */

/* ==== forced alignment (cbridge/align.c) ================================== */
/*
 * Viterbi forced alignment of one utterance over a training graph with
 * Kaldi's AlignUtteranceWrapper semantics (FasterDecoder with `beam`; if no
 * final state is reached, again with `retry_beam` when it is not 0; else
 * the utterance fails). The graph is used as given: transition
 * probabilities and careful mode are applied by the caller (kbind.align).
 *   graph: final_cost[num_states] (+inf = not final), out_offsets
 *     [num_states + 1], dst/ilabel/olabel/weight[num_arcs] grouped by source
 *     (ilabel: transition-id in [1, num_tids] or 0 = epsilon; olabel: word
 *     or 0); checked as kb_decoder_graph_new checks (no epsilon cycles),
 *     and no -inf weight or final cost; used in place (nothing is kept);
 *   tid2pdf[num_tids + 1] (entry 0 unused), every pdf-id < num_cols;
 *   loglikes[num_frames][num_cols] row-major float32 (NaN or +inf ->
 *     KB_EINVAL naming frame and pdf); the acoustic cost of an arc is
 *     -(acoustic_scale * loglike[t, tid2pdf[tid]]) (float);
 *   FasterDecoderOptions: max_active, min_active, beam_delta, hash_ratio
 *     (Kaldi's defaults: INT32_MAX, 20, 0.5, 2.0; the aligner sets only the
 *     beam).
 * Outputs (caller-owned): info[3]: [0] 1 if aligned (a final state was
 *   reached), 0 if the utterance failed (then nothing else is written);
 *   [1] 1 if the retry beam was used; [2] number of words on the path.
 *   alignment[num_frames]: the transition-ids of the best path;
 *   words[words_capacity]: its words (the first words_capacity of them:
 *   when info[2] > words_capacity, call again with a larger buffer);
 *   costs[3]: graph cost and SCALED acoustic cost of the best path (incl.
 *   the final cost), and the log-likelihood -(graph + acoustic) /
 *   acoustic_scale as Kaldi logs it.
 * Fails (KB_EINVAL) on bad sizes, graph, options or log-likelihoods;
 * KB_ENOMEM if scratch cannot be allocated (all scratch freed on return).
 */
int kb_align_compiled(int32_t num_states, int64_t num_arcs, int32_t start,
                      const float *final_cost, const int64_t *out_offsets, const int32_t *dst,
                      const int32_t *ilabel, const int32_t *olabel, const float *weight,
                      const int32_t *tid2pdf, int32_t num_tids, const float *loglikes,
                      int32_t num_frames, int32_t num_cols, float acoustic_scale, float beam,
                      float retry_beam, int32_t max_active, int32_t min_active,
                      float beam_delta, float hash_ratio, int32_t *alignment, int32_t *words,
                      int32_t words_capacity, int32_t *info, float *costs, char *err,
                      size_t errlen);
/* ==== end of forced alignment ============================================= */

/* ==== chain numerator (cbridge/chain_num.c) ==== */
/*
 * Chain numerator forward-backward in log space (Kaldi's
 * NumeratorComputation / GenericNumeratorComputation; see
 * kbind/chain/numerator.py) over S sequences, each with its own FST and
 * number of frames.
 * FSTs (sequence s owns states [state_offsets[s], state_offsets[s+1]) of the
 * per-state arrays and arcs [arc_offsets[s], arc_offsets[s+1]) of the per-arc
 * arrays; state ids are LOCAL to the sequence; any arc order, sorted by
 * source is fastest):
 *   state_offsets/arc_offsets[S + 1]: from 0 to num_states / num_arcs (the
 *     lengths of the per-state / per-arc arrays);
 *   start[S]: local start state;
 *   arc_src/arc_dst[num_arcs]: local states; arc_pdf[num_arcs] in [0, num_pdfs);
 *   arc_logprob[num_arcs]: -cost (finite or -inf), for e2e supervision already
 *     shifted by the start-arc offset (Kaldi's GenericNumeratorComputation);
 *   final_logprob[num_states]: -final cost (-inf = not final);
 *   offsets[S] (may be NULL = 0): subtracted from each log-prob.
 * lengths[S] in [1, num_frames]: frames of each sequence; frames past a
 *   sequence's length are never read.
 * nnet_output: [S][num_frames][num_pdfs] row-major, exactly one of
 *   nnet_output_f (float32) / nnet_output_d (float64) non-NULL, read in place.
 * compute_double: 0 = float arithmetic (Kaldi's generic numerator), 1 =
 *   double (Kaldi's constrained numerator). Both use Kaldi's per-frame
 *   renormalisation: alpha(t) = logsum_arcs(...) - sigma(t-1), sigma(t) =
 *   logsumexp_h alpha(t, h); log Z = (logsumexp_h(alpha(L, h) + final(h))
 *   - offset) + sum_{t=1}^{L-1} sigma(t) (the sum in double).
 * num_threads: OpenMP threads over sequences (<= 0: OpenMP's default).
 * Outputs (caller-owned): logprob[S] (double): log Z per sequence; -inf if no
 *   path of exactly L arcs ends in a final state; NaN if an output the arcs
 *   read (t < L) is NaN or +inf (-inf is allowed: an impossible arc);
 *   post_f / post_d [S][num_frames][num_pdfs] (at most one; both NULL =
 *   forward only): the posteriors d logprob_s / d nnet_output; the kernel
 *   zeroes the buffer and writes only the (frame, pdf) entries some arc uses;
 *   sequences with a non-finite logprob get all zeros;
 *   bad[S] (may be NULL): t * num_pdfs + pdf of the first NaN/+inf output of
 *   sequence s (frame-major, in arc order), else -1.
 * Fails (KB_EINVAL, nothing scored) on: non-positive sizes, offsets not
 * starting at 0 or not ending at num_states / num_arcs, a sequence with no
 * states or negative arcs, a length out of [1, num_frames], a start / arc
 * state or pdf-id out of range, a NaN or +inf arc or final log-prob, a
 * non-finite offset; KB_ENOMEM if scratch cannot be
 * allocated (per thread, in the compute precision: (max L + 1) * (max states
 * + max arcs + 1) + 4 * max states values).
 */
int kb_chain_num_forward_backward(int32_t num_sequences, int32_t num_frames, int32_t num_pdfs,
                                  int64_t num_states, int64_t num_arcs,
                                  const int64_t *lengths, const int64_t *state_offsets,
                                  const int64_t *arc_offsets, const int32_t *start,
                                  const int32_t *arc_src, const int32_t *arc_dst,
                                  const int32_t *arc_pdf, const double *arc_logprob,
                                  const double *final_logprob, const double *offsets,
                                  int32_t compute_double, const float *nnet_output_f,
                                  const double *nnet_output_d, int32_t num_threads,
                                  double *logprob, float *post_f, double *post_d,
                                  int64_t *bad, char *err, size_t errlen);
/* ==== end chain numerator ==== */

#endif
