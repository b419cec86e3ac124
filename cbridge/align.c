/*
 * Viterbi forced alignment over one training graph: Kaldi's
 * AlignUtteranceWrapper (src/decoder/decoder-wrappers.cc, used by
 * gmm-align-compiled and nnet3-align-compiled; align-compiled-mapped does
 * the same without --careful) on a graph whose transition probabilities are
 * already added (see kbind/align for AddTransitionProbs and careful mode).
 *
 * Search: Kaldi's FasterDecoder (src/decoder/faster-decoder.cc), kept
 * operation for operation so that which tokens survive pruning -- and so
 * whether the final state is reached with `beam` -- is Kaldi's:
 *   - one token per graph state of the current frame; token cost in double,
 *     cost = prev cost + arc weight (float) + acoustic cost (float), the
 *     acoustic cost being -(acoustic_scale * loglike[t, tid2pdf[tid]])
 *     computed in float (DecodableMatrixScaledMapped);
 *   - the token list in the order of Kaldi's HashList<StateId, Token*>
 *     (bucket = state % hash_size; buckets in order of first use within the
 *     frame, elements of a bucket in insertion order; hash_size starts at
 *     1000 and grows to hash_ratio * active tokens, and is kept across the
 *     retry, as the same decoder object is reused);
 *   - GetCutoff (beam, max_active, min_active, nth_element semantics on
 *     the costs rounded to float as Kaldi's tmp_array_ holds them, so a
 *     max_active / min_active cutoff is a float value; adaptive beam in
 *     float), ProcessEmitting (the best token's arcs first
 *     to bound next_weight_cutoff, then every token under the cutoff in list
 *     order, a new token kept if new_weight < next_weight_cutoff, an
 *     existing element's token replaced only by a strictly cheaper one),
 *     ProcessNonemitting (LIFO queue of list elements, re-pushed when
 *     improved; cutoff float max after InitDecoding);
 *   - ReachedFinal: some token of the last frame on a final state; if not,
 *     decode again with retry_beam (when > 0); if still not, the utterance
 *     fails (no alignment written, as Kaldi's "Did not successfully decode");
 *   - GetBestPath: the token minimising cost + final cost (first in list
 *     order on ties); per-arc costs as Kaldi's traceback: graph = arc
 *     weight, acoustic = float(cost - prev cost) - graph.
 * Difference: Kaldi sums the per-arc (graph, acoustic) floats along the path
 * after RemoveEpsLocal (float, in an order that depends on the epsilon
 * arcs); here they are summed in double and rounded once, so totals may
 * differ from Kaldi's in the last bits.
 *
 * Memory: tokens are reference counted (Kaldi's TokenDelete) in a pool with
 * a free list; everything is allocated and freed inside the call.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

typedef struct {
  double cost;
  int64_t arc; /* arc index, -1 = the dummy arc into the start state */
  int32_t prev, ref;
} ATok;

typedef struct {
  int32_t key, val, tail; /* state, token, next element of the list */
} AElem;

typedef struct {
  /* graph */
  int32_t num_states, start;
  const float *final;
  const int64_t *off;
  const int32_t *dst, *ilabel, *olabel;
  const float *weight;
  const int32_t *tid2pdf;
  /* decodable */
  const float *ll;
  int32_t D;
  float acoustic_scale;
  /* options */
  float beam, beam_delta, hash_ratio;
  int32_t max_active, min_active;
  /* token pool */
  ATok *tok;
  int32_t tok_cap, tok_used, tok_free;
  /* element pool */
  AElem *el;
  int32_t el_cap, el_used, el_free;
  /* HashList emulation */
  int32_t *state_elem; /* state -> element in the current hash, -1 = none */
  int32_t list_head, bucket_list_tail;
  int64_t hash_size;
  int32_t *bucket_last, *bucket_prev;
  int64_t bucket_cap;
  /* scratch */
  int32_t *queue;
  int32_t queue_cap, queue_len;
  float *tmp; /* Kaldi's tmp_array_ is std::vector<BaseFloat> */
  int32_t tmp_cap;
  int oom;
} Align;

/* -- tokens (Kaldi's Token with reference counts) --------------------------- */

static int32_t tok_new(Align *a, double cost, int64_t arc, int32_t prev) {
  int32_t i;
  if (a->tok_free >= 0) {
    i = a->tok_free;
    a->tok_free = a->tok[i].prev;
  } else {
    if (kb_grow((void **)&a->tok, &a->tok_cap, (int64_t)a->tok_used + 1, sizeof(ATok))) {
      a->oom = 1;
      return -1;
    }
    i = a->tok_used++;
  }
  ATok *t = &a->tok[i];
  t->cost = cost;
  t->arc = arc;
  t->prev = prev;
  t->ref = 1;
  if (prev >= 0) a->tok[prev].ref++;
  return i;
}

/* Token::TokenDelete */
static void tok_delete(Align *a, int32_t i) {
  while (i >= 0 && --a->tok[i].ref == 0) {
    int32_t p = a->tok[i].prev;
    a->tok[i].prev = a->tok_free;
    a->tok_free = i;
    i = p;
  }
}

/* -- HashList<StateId, Token*> ------------------------------------------------ */

static int32_t elem_new(Align *a) {
  int32_t i;
  if (a->el_free >= 0) {
    i = a->el_free;
    a->el_free = a->el[i].tail;
  } else {
    if (kb_grow((void **)&a->el, &a->el_cap, (int64_t)a->el_used + 1, sizeof(AElem))) {
      a->oom = 1;
      return -1;
    }
    i = a->el_used++;
  }
  return i;
}

static void elem_delete(Align *a, int32_t e) {
  a->el[e].tail = a->el_free;
  a->el_free = e;
}

/* HashList::Clear: empties the hash, returns the old list (the caller
   deletes its elements). */
static int32_t hl_clear(Align *a) {
  for (int64_t b = a->bucket_list_tail; b >= 0; b = a->bucket_prev[b]) a->bucket_last[b] = -1;
  for (int32_t e = a->list_head; e >= 0; e = a->el[e].tail) a->state_elem[a->el[e].key] = -1;
  a->bucket_list_tail = -1;
  int32_t head = a->list_head;
  a->list_head = -1;
  return head;
}

/* HashList::SetSize (hash must be empty) */
static int hl_set_size(Align *a, int64_t size) {
  if (size > a->bucket_cap) {
    if (size > INT32_MAX) return -1;
    int32_t *bl = (int32_t *)realloc(a->bucket_last, sizeof(int32_t) * (size_t)size);
    if (!bl) return -1;
    a->bucket_last = bl;
    int32_t *bp = (int32_t *)realloc(a->bucket_prev, sizeof(int32_t) * (size_t)size);
    if (!bp) return -1;
    a->bucket_prev = bp;
    for (int64_t i = a->bucket_cap; i < size; i++) {
      bl[i] = -1;
      bp[i] = -1;
    }
    a->bucket_cap = size;
  }
  a->hash_size = size;
  return 0;
}

/* HashList::Insert: the element of `state` if present, else a new element
   holding tok (placed as Kaldi places it). -1 on ENOMEM. */
static int32_t hl_insert(Align *a, int32_t state, int32_t tok) {
  int32_t found = a->state_elem[state];
  if (found >= 0) return found;
  int32_t e = elem_new(a);
  if (e < 0) return -1;
  AElem *el = &a->el[e];
  el->key = state;
  el->val = tok;
  int64_t b = (int64_t)((uint64_t)(uint32_t)state % (uint64_t)a->hash_size);
  if (a->bucket_last[b] < 0) {
    if (a->bucket_list_tail < 0) a->list_head = e;
    else a->el[a->bucket_last[a->bucket_list_tail]].tail = e;
    el->tail = -1;
    a->bucket_last[b] = e;
    a->bucket_prev[b] = a->bucket_list_tail;
    a->bucket_list_tail = (int32_t)b;
  } else {
    int32_t last = a->bucket_last[b];
    el->tail = a->el[last].tail;
    a->el[last].tail = e;
    a->bucket_last[b] = e;
  }
  a->state_elem[state] = e;
  return e;
}

/* -- FasterDecoder ------------------------------------------------------------ */

static int queue_push(Align *a, int32_t e) {
  if (kb_grow((void **)&a->queue, &a->queue_cap, (int64_t)a->queue_len + 1, sizeof(int32_t))) {
    a->oom = 1;
    return -1;
  }
  a->queue[a->queue_len++] = e;
  return 0;
}

static int process_nonemitting(Align *a, double cutoff) {
  a->queue_len = 0;
  for (int32_t e = a->list_head; e >= 0; e = a->el[e].tail)
    if (queue_push(a, e)) return -1;
  while (a->queue_len > 0) {
    int32_t e = a->queue[--a->queue_len];
    int32_t state = a->el[e].key;
    int32_t tok = a->el[e].val;
    if (a->tok[tok].cost > cutoff) continue;
    for (int64_t k = a->off[state]; k < a->off[state + 1]; k++) {
      if (a->ilabel[k] != 0) continue;
      double cost = a->tok[tok].cost + a->weight[k];
      if (cost > cutoff) continue; /* Kaldi creates, then deletes the token */
      int32_t nt = tok_new(a, cost, k, tok);
      if (nt < 0) return -1;
      int32_t f = hl_insert(a, a->dst[k], nt);
      if (f < 0) return -1;
      if (a->el[f].val == nt) {
        if (queue_push(a, f)) return -1;
      } else if (a->tok[a->el[f].val].cost > cost) {
        tok_delete(a, a->el[f].val);
        a->el[f].val = nt;
        if (queue_push(a, f)) return -1;
      } else {
        tok_delete(a, nt);
      }
    }
  }
  return 0;
}

/* k-th smallest of v[0..n) (the value std::nth_element puts at k; n > k),
   by quickselect; reorders v so that v[0..k) <= v[k] <= v[k+1..n). */
static double kth_smallest(float *v, int32_t n, int32_t k) {
  int32_t lo = 0, hi = n - 1;
  while (hi > lo) {
    float pivot = v[lo + (hi - lo) / 2];
    int32_t i = lo, j = hi;
    while (i <= j) {
      while (v[i] < pivot) i++;
      while (v[j] > pivot) j--;
      if (i <= j) {
        float t = v[i];
        v[i] = v[j];
        v[j] = t;
        i++;
        j--;
      }
    }
    if (k <= j) hi = j;
    else if (k >= i) lo = i;
    else break; /* j < k < i: v[k] == pivot */
  }
  return (double)v[k];
}

/* GetCutoff over the list starting at head. */
static double get_cutoff(Align *a, int32_t head, int32_t *tok_count, float *adaptive_beam,
                         int32_t *best_elem) {
  double best_cost = INFINITY;
  int32_t count = 0;
  *best_elem = -1;
  if (a->max_active == INT32_MAX && a->min_active == 0) {
    for (int32_t e = head; e >= 0; e = a->el[e].tail, count++) {
      double w = a->tok[a->el[e].val].cost;
      if (w < best_cost) {
        best_cost = w;
        *best_elem = e;
      }
    }
    *tok_count = count;
    *adaptive_beam = a->beam;
    return best_cost + a->beam;
  }
  int32_t n = 0;
  for (int32_t e = head; e >= 0; e = a->el[e].tail, count++) {
    double w = a->tok[a->el[e].val].cost;
    if (kb_grow((void **)&a->tmp, &a->tmp_cap, (int64_t)n + 1, sizeof(float))) {
      a->oom = 1;
      return NAN;
    }
    a->tmp[n++] = (float)w; /* rounded to float, as Kaldi stores it */
    if (w < best_cost) {
      best_cost = w;
      *best_elem = e;
    }
  }
  *tok_count = count;
  double beam_cutoff = best_cost + a->beam, min_active_cutoff = INFINITY,
         max_active_cutoff = INFINITY;
  if (n > a->max_active) max_active_cutoff = kth_smallest(a->tmp, n, a->max_active);
  if (max_active_cutoff < beam_cutoff) {
    *adaptive_beam = (float)(max_active_cutoff - best_cost + a->beam_delta);
    return max_active_cutoff;
  }
  if (n > a->min_active) {
    if (a->min_active == 0) {
      min_active_cutoff = best_cost;
    } else {
      /* Kaldi's nth_element runs over the first max_active entries when
         there are more (their order is then that of the previous
         nth_element): only reached when max_active_cutoff >= beam_cutoff */
      int32_t m = n > a->max_active ? a->max_active : n;
      min_active_cutoff = kth_smallest(a->tmp, m, a->min_active);
    }
  }
  if (min_active_cutoff > beam_cutoff) {
    *adaptive_beam = (float)(min_active_cutoff - best_cost + a->beam_delta);
    return min_active_cutoff;
  }
  *adaptive_beam = a->beam;
  return beam_cutoff;
}

static double process_emitting(Align *a, int32_t frame) {
  int32_t last = hl_clear(a);
  int32_t tok_cnt, best_elem;
  float adaptive_beam;
  double weight_cutoff = get_cutoff(a, last, &tok_cnt, &adaptive_beam, &best_elem);
  if (a->oom) return NAN;
  /* PossiblyResizeHash */
  int64_t new_sz = (int64_t)((float)tok_cnt * a->hash_ratio);
  if (new_sz > a->hash_size && hl_set_size(a, new_sz)) {
    a->oom = 1;
    return NAN;
  }
  const float *row = a->ll + (int64_t)frame * a->D;
  double next_cutoff = INFINITY;
  if (best_elem >= 0) {
    int32_t state = a->el[best_elem].key;
    double c = a->tok[a->el[best_elem].val].cost;
    for (int64_t k = a->off[state]; k < a->off[state + 1]; k++) {
      if (a->ilabel[k] == 0) continue;
      float ac = -(a->acoustic_scale * row[a->tid2pdf[a->ilabel[k]]]);
      double nw = (double)a->weight[k] + c + ac;
      if (nw + adaptive_beam < next_cutoff) next_cutoff = nw + adaptive_beam;
    }
  }
  for (int32_t e = last, tail; e >= 0; e = tail) {
    int32_t state = a->el[e].key;
    int32_t tok = a->el[e].val;
    double c = a->tok[tok].cost;
    if (c < weight_cutoff) {
      for (int64_t k = a->off[state]; k < a->off[state + 1]; k++) {
        if (a->ilabel[k] == 0) continue;
        float ac = -(a->acoustic_scale * row[a->tid2pdf[a->ilabel[k]]]);
        double nw = (double)a->weight[k] + c + ac;
        if (nw < next_cutoff) {
          int32_t nt = tok_new(a, nw, k, tok);
          if (nt < 0) return NAN;
          int32_t f = hl_insert(a, a->dst[k], nt);
          if (f < 0) return NAN;
          if (nw + adaptive_beam < next_cutoff) next_cutoff = nw + adaptive_beam;
          if (a->el[f].val != nt) {
            if (a->tok[a->el[f].val].cost > nw) {
              tok_delete(a, a->el[f].val);
              a->el[f].val = nt;
            } else {
              tok_delete(a, nt);
            }
          }
        }
      }
    }
    tail = a->el[e].tail;
    tok_delete(a, tok);
    elem_delete(a, e);
  }
  return next_cutoff;
}

/* ClearToks(toks_.Clear()) */
static void clear_toks(Align *a) {
  for (int32_t e = hl_clear(a), tail; e >= 0; e = tail) {
    tail = a->el[e].tail;
    tok_delete(a, a->el[e].val);
    elem_delete(a, e);
  }
}

/* InitDecoding + AdvanceDecoding over all frames; 0 or -1 (ENOMEM). */
static int decode(Align *a, int32_t num_frames) {
  clear_toks(a);
  int32_t t0 = tok_new(a, 0.0, -1, -1);
  if (t0 < 0 || hl_insert(a, a->start, t0) < 0) return -1;
  if (process_nonemitting(a, (double)3.40282346638528859812e+38F)) return -1;
  for (int32_t t = 0; t < num_frames; t++) {
    double cutoff = process_emitting(a, t);
    if (a->oom) return -1;
    if (process_nonemitting(a, cutoff)) return -1;
  }
  return 0;
}

static int reached_final(const Align *a) {
  for (int32_t e = a->list_head; e >= 0; e = a->el[e].tail)
    if (a->tok[a->el[e].val].cost != INFINITY && a->final[a->el[e].key] != INFINITY) return 1;
  return 0;
}

static void align_free(Align *a) {
  free(a->tok);
  free(a->el);
  free(a->state_elem);
  free(a->bucket_last);
  free(a->bucket_prev);
  free(a->queue);
  free(a->tmp);
}

int kb_align_compiled(int32_t num_states, int64_t num_arcs, int32_t start,
                      const float *final_cost, const int64_t *out_offsets, const int32_t *dst,
                      const int32_t *ilabel, const int32_t *olabel, const float *weight,
                      const int32_t *tid2pdf, int32_t num_tids, const float *loglikes,
                      int32_t num_frames, int32_t num_cols, float acoustic_scale, float beam,
                      float retry_beam, int32_t max_active, int32_t min_active,
                      float beam_delta, float hash_ratio, int32_t *alignment, int32_t *words,
                      int32_t words_capacity, int32_t *info, float *costs, char *err,
                      size_t errlen) {
  if (!alignment || !info || !costs || words_capacity < 0 || (words_capacity > 0 && !words))
    return kb_fail(err, errlen, KB_EINVAL, "missing output arrays (or words_capacity %d < 0)",
                   (int)words_capacity);
  if (num_frames < 0 || num_cols <= 0 || (num_frames > 0 && !loglikes))
    return kb_fail(err, errlen, KB_EINVAL, "bad log-likelihood matrix: %d frames x %d columns",
                   (int)num_frames, (int)num_cols);
  if (!(beam > 0.0f) || !(retry_beam == 0.0f || retry_beam > beam))
    return kb_fail(err, errlen, KB_EINVAL, "beams do not make sense: beam %g, retry-beam %g "
                   "(need beam > 0 and retry-beam 0 or > beam)", (double)beam,
                   (double)retry_beam);
  if (!(acoustic_scale > 0.0f) || !isfinite(acoustic_scale))
    return kb_fail(err, errlen, KB_EINVAL, "acoustic scale %g must be > 0",
                   (double)acoustic_scale);
  if (max_active <= 1 || min_active < 0 || min_active >= max_active || !(hash_ratio >= 1.0f) ||
      !(beam_delta >= 0.0f))
    return kb_fail(err, errlen, KB_EINVAL, "bad FasterDecoder options (need max_active > 1, "
                   "0 <= min_active < max_active, hash_ratio >= 1, beam_delta >= 0)");
  /* graph checks (sizes, offsets, destinations, labels in [0, num_tids],
     NaN weights, epsilon cycles, tid2pdf >= 0): shared with the decoder */
  int rc = kb_hclg_check(num_states, num_arcs, start, final_cost, dst, ilabel, olabel, weight,
                         out_offsets, tid2pdf, num_tids, NULL, NULL, err, errlen);
  if (rc != KB_OK) return rc;
  for (int64_t k = 0; k < num_arcs; k++)
    if (weight[k] == -INFINITY)
      return kb_fail(err, errlen, KB_EINVAL, "arc %lld has weight -inf", (long long)k);
  for (int32_t s = 0; s < num_states; s++)
    if (final_cost[s] == -INFINITY)
      return kb_fail(err, errlen, KB_EINVAL, "final cost of state %d is -inf", (int)s);
  for (int64_t t = 1; t <= num_tids; t++)
    if (tid2pdf[t] >= num_cols)
      return kb_fail(err, errlen, KB_EINVAL, "transition-id %d maps to pdf-id %d, but the "
                     "log-likelihoods have only %d columns", (int)t, (int)tid2pdf[t],
                     (int)num_cols);
  for (int32_t t = 0; t < num_frames; t++) {
    const float *row = loglikes + (int64_t)t * num_cols;
    for (int32_t j = 0; j < num_cols; j++)
      if (isnan(row[j]) || row[j] == INFINITY)
        return kb_fail(err, errlen, KB_EINVAL, "log-likelihood of frame %d, pdf %d is %s",
                       (int)t, (int)j, isnan(row[j]) ? "NaN" : "+inf");
  }

  Align a;
  memset(&a, 0, sizeof(a));
  a.num_states = num_states;
  a.start = start;
  a.final = final_cost;
  a.off = out_offsets;
  a.dst = dst;
  a.ilabel = ilabel;
  a.olabel = olabel;
  a.weight = weight;
  a.tid2pdf = tid2pdf;
  a.ll = loglikes;
  a.D = num_cols;
  a.acoustic_scale = acoustic_scale;
  a.beam = beam;
  a.beam_delta = beam_delta;
  a.hash_ratio = hash_ratio;
  a.max_active = max_active;
  a.min_active = min_active;
  a.tok_free = a.el_free = -1;
  a.list_head = a.bucket_list_tail = -1;
  a.state_elem = (int32_t *)malloc(sizeof(int32_t) * (size_t)num_states);
  if (!a.state_elem || hl_set_size(&a, 1000)) {
    align_free(&a);
    return kb_fail(err, errlen, KB_ENOMEM, "out of memory (%d states)", (int)num_states);
  }
  for (int32_t s = 0; s < num_states; s++) a.state_elem[s] = -1;

  info[0] = info[1] = info[2] = 0;
  costs[0] = costs[1] = costs[2] = 0.0f;
  if (decode(&a, num_frames)) goto oom;
  int ok = reached_final(&a);
  if (!ok && retry_beam != 0.0f) {
    info[1] = 1;
    a.beam = retry_beam;
    if (decode(&a, num_frames)) goto oom;
    ok = reached_final(&a);
  }
  if (ok) {
    /* GetBestPath (final states only) */
    int32_t best = -1;
    double best_cost = INFINITY;
    for (int32_t e = a.list_head; e >= 0; e = a.el[e].tail) {
      double c = a.tok[a.el[e].val].cost + a.final[a.el[e].key];
      if (c < best_cost && c != INFINITY) {
        best_cost = c;
        best = a.el[e].val;
      }
    }
    double g = 0.0, ac = 0.0;
    int32_t nfr = 0, nw = 0;
    for (int32_t t = best; t >= 0; t = a.tok[t].prev) {
      int64_t k = a.tok[t].arc;
      if (k < 0) break; /* the dummy arc into the start state */
      int32_t p = a.tok[t].prev;
      float tot = (float)(a.tok[t].cost - (p >= 0 ? a.tok[p].cost : 0.0));
      float gc = a.weight[k];
      g += gc;
      ac += (double)(tot - gc);
      if (ilabel[k] != 0) nfr++;
      if (olabel[k] != 0) nw++;
    }
    if (nfr != num_frames) {
      align_free(&a);
      return kb_fail(err, errlen, KB_EINVAL, "internal error: best path has %d emitting arcs "
                     "for %d frames", (int)nfr, (int)num_frames);
    }
    int32_t fi = num_frames, wi = nw;
    for (int32_t t = best; t >= 0; t = a.tok[t].prev) {
      int64_t k = a.tok[t].arc;
      if (k < 0) break;
      if (ilabel[k] != 0) alignment[--fi] = ilabel[k];
      if (olabel[k] != 0 && --wi < words_capacity) words[wi] = olabel[k];
    }
    g += a.final[a.tok[best].arc >= 0 ? dst[a.tok[best].arc] : start];
    info[0] = 1;
    info[2] = nw;
    float gf = (float)g, af = (float)ac;
    costs[0] = gf;
    costs[1] = af;
    costs[2] = -(gf + af) / acoustic_scale;
  }
  align_free(&a);
  return KB_OK;
oom:
  align_free(&a);
  return kb_fail(err, errlen, KB_ENOMEM, "out of memory while aligning (%d frames, %d states)",
                 (int)num_frames, (int)num_states);
}
