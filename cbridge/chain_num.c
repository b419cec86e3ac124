/*
 * Chain numerator forward-backward in log space (Kaldi's NumeratorComputation
 * and GenericNumeratorComputation) on the CPU: see kbind_native.h
 * (kb_chain_num_forward_backward) for the contract and
 * kbind/chain/numerator.py for the math (the torch path does exactly the
 * same operations, vectorised over arcs).
 *
 * Design:
 *  - one sequence at a time per thread (OpenMP over sequences, dynamic
 *    schedule: lengths and graph sizes differ); each sequence's FST is small
 *    (hundreds to thousands of arcs), so its per-frame working set is in L1;
 *  - per frame, arcs are visited in their given order twice: once to form
 *    v_a and the running max of each destination (forward) or source
 *    (backward), once to sum exp(v_a - max); log once per state. Arcs whose
 *    source has alpha = -inf are skipped (they contribute nothing), which
 *    makes acyclic (constrained) graphs cost O(arcs) per sequence rather
 *    than O(arcs * frames) in exps, and avoids work on the unreachable part
 *    of e2e graphs at early frames;
 *  - per-frame renormalisation by the previous frame's log-sum as Kaldi's
 *    GenericNumeratorComputation (also used, in double, for the constrained
 *    kind: mathematically identical to Kaldi's unnormalised double recursion);
 *  - the arithmetic is done in REAL = float or double (compiled twice by
 *    including this file again with KB_NUM_TEMPLATE defined); the log-prob
 *    adds up the per-frame log-sums in double;
 *  - posteriors are written only at (frame, pdf) entries some arc uses, in
 *    each sequence's own rows (no races); each sequence's rows are zeroed by
 *    the thread that owns it.
 */
#ifndef KB_NUM_TEMPLATE
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "common.h"

typedef struct {
  int32_t S, T, D;
  const int64_t *lengths, *state_offsets, *arc_offsets;
  const int32_t *start, *src, *dst, *pdf;
  const double *arc_logprob, *final_logprob, *offsets;
  const float *y_f;
  const double *y_d;
  float *post_f;
  double *post_d;
  double *logprob;
  int64_t *bad;
} KbNumArgs;

/* y is "bad" (the sequence is not scored) if NaN or +inf; -inf is a valid
   log-likelihood (an impossible arc). */
static inline int kb_num_bad_f(float v) { return v != v || v == INFINITY; }
static inline int kb_num_bad_d(double v) { return v != v || v == INFINITY; }

#define KB_NUM_TEMPLATE
#define REAL float
#define SFX(n) n##_f
#define EXP expf
#define LOG logf
#include "chain_num.c"
#undef REAL
#undef SFX
#undef EXP
#undef LOG
#define REAL double
#define SFX(n) n##_d
#define EXP exp
#define LOG log
#include "chain_num.c"
#undef REAL
#undef SFX
#undef EXP
#undef LOG
#undef KB_NUM_TEMPLATE

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
                                  int64_t *bad, char *err, size_t errlen) {
  const int32_t S = num_sequences, T = num_frames, D = num_pdfs;
  if (S <= 0 || T <= 0 || D <= 0)
    return kb_fail(err, errlen, KB_EINVAL,
                   "numerator: sizes must be positive (sequences %d, frames %d, pdfs %d)",
                   (int)S, (int)T, (int)D);
  if (!lengths || !state_offsets || !arc_offsets || !start || !final_logprob || !logprob)
    return kb_fail(err, errlen, KB_EINVAL, "numerator: a required array is NULL");
  if ((nnet_output_f == NULL) == (nnet_output_d == NULL))
    return kb_fail(err, errlen, KB_EINVAL,
                   "numerator: give exactly one of the float32 / float64 nnet outputs");
  if (post_f && post_d)
    return kb_fail(err, errlen, KB_EINVAL,
                   "numerator: give at most one of the float32 / float64 posterior buffers");
  if (state_offsets[0] != 0 || state_offsets[S] != num_states)
    return kb_fail(err, errlen, KB_EINVAL, "numerator: state offsets must run from 0 to the "
                   "%lld states (got %lld .. %lld)", (long long)num_states,
                   (long long)state_offsets[0], (long long)state_offsets[S]);
  if (arc_offsets[0] != 0 || arc_offsets[S] != num_arcs)
    return kb_fail(err, errlen, KB_EINVAL, "numerator: arc offsets must run from 0 to the "
                   "%lld arcs (got %lld .. %lld)", (long long)num_arcs,
                   (long long)arc_offsets[0], (long long)arc_offsets[S]);
  int64_t maxN = 1, maxA = 1, maxL = 1;
  for (int32_t s = 0; s < S; s++) {
    int64_t n = state_offsets[s + 1] - state_offsets[s];
    int64_t na = arc_offsets[s + 1] - arc_offsets[s];
    if (n <= 0 || n > INT32_MAX)
      return kb_fail(err, errlen, KB_EINVAL, "numerator: sequence %d has %lld states",
                     (int)s, (long long)n);
    if (na < 0)
      return kb_fail(err, errlen, KB_EINVAL, "numerator: sequence %d has %lld arcs", (int)s,
                     (long long)na);
    if (lengths[s] < 1 || lengths[s] > T)
      return kb_fail(err, errlen, KB_EINVAL,
                     "numerator: sequence %d has %lld frames, outside [1, %d] (the frames "
                     "of nnet_output)",
                     (int)s, (long long)lengths[s], (int)T);
    if (start[s] < 0 || start[s] >= n)
      return kb_fail(err, errlen, KB_EINVAL,
                     "numerator: sequence %d: start state %d out of range [0, %lld)", (int)s,
                     (int)start[s], (long long)n);
    if (offsets && !isfinite(offsets[s]))
      return kb_fail(err, errlen, KB_EINVAL, "numerator: sequence %d: offset is not finite",
                     (int)s);
    if (na > 0 && (!arc_src || !arc_dst || !arc_pdf || !arc_logprob))
      return kb_fail(err, errlen, KB_EINVAL, "numerator: arc arrays are NULL");
    if (n > maxN) maxN = n;
    if (na > maxA) maxA = na;
    if (lengths[s] > maxL) maxL = lengths[s];
    for (int64_t a = arc_offsets[s]; a < arc_offsets[s + 1]; a++) {
      if (arc_src[a] < 0 || arc_src[a] >= n || arc_dst[a] < 0 || arc_dst[a] >= n)
        return kb_fail(err, errlen, KB_EINVAL,
                       "numerator: sequence %d arc %lld: state %d -> %d out of range [0, %lld)",
                       (int)s, (long long)(a - arc_offsets[s]), (int)arc_src[a],
                       (int)arc_dst[a], (long long)n);
      if (arc_pdf[a] < 0 || arc_pdf[a] >= D)
        return kb_fail(err, errlen, KB_EINVAL,
                       "numerator: sequence %d arc %lld: pdf-id %d out of range [0, %d) "
                       "(the nnet output's columns)",
                       (int)s, (long long)(a - arc_offsets[s]), (int)arc_pdf[a], (int)D);
      double lp = arc_logprob[a];
      if (lp != lp || lp == INFINITY)
        return kb_fail(err, errlen, KB_EINVAL,
                       "numerator: sequence %d arc %lld: log-prob %g (must be finite or -inf)",
                       (int)s, (long long)(a - arc_offsets[s]), lp);
    }
    for (int64_t h = state_offsets[s]; h < state_offsets[s + 1]; h++) {
      double f = final_logprob[h];
      if (f != f || f == INFINITY)
        return kb_fail(err, errlen, KB_EINVAL,
                       "numerator: sequence %d state %lld: final log-prob %g (must be finite "
                       "or -inf)",
                       (int)s, (long long)(h - state_offsets[s]), f);
    }
  }

  KbNumArgs g = {S, T, D, lengths, state_offsets, arc_offsets, start, arc_src, arc_dst,
                 arc_pdf, arc_logprob, final_logprob, offsets, nnet_output_f, nnet_output_d,
                 post_f, post_d, logprob, bad};
  /* scratch per thread, in REAL: alpha (maxL + 1) x maxN, sigma maxL + 1, four
     state vectors, one arc vector, the gathered outputs maxL x maxA */
  size_t rs = compute_double ? sizeof(double) : sizeof(float);
  if ((double)(maxL + 1) * (double)(maxN + maxA + 5) * (double)rs > 1e15)
    return kb_fail(err, errlen, KB_ENOMEM,
                   "numerator: scratch for %lld frames x (%lld states + %lld arcs) is too large",
                   (long long)maxL, (long long)maxN, (long long)maxA);
  size_t nreal = (size_t)(maxL + 1) * (size_t)maxN + (size_t)(maxL + 1) + 4 * (size_t)maxN +
                 (size_t)(maxL + 1) * (size_t)maxA;
  int nomem = 0;
  int nt = 1;
#ifdef _OPENMP
  nt = num_threads > 0 ? num_threads : omp_get_max_threads();
  if (nt > S) nt = S;
#pragma omp parallel num_threads(nt) reduction(| : nomem)
#endif
  {
    void *ws = malloc(nreal * rs);
    if (!ws) nomem = 1;
#ifdef _OPENMP
#pragma omp for schedule(dynamic, 1)
#endif
    for (int32_t s = 0; s < S; s++) {
      if (!ws) continue;
      if (compute_double)
        kb_num_sequence_d(&g, s, (double *)ws);
      else
        kb_num_sequence_f(&g, s, (float *)ws);
    }
    free(ws);
  }
  (void)nt;
  if (nomem)
    return kb_fail(err, errlen, KB_ENOMEM, "numerator: cannot allocate %zu bytes of scratch",
                   nreal * rs);
  return KB_OK;
}

#else /* KB_NUM_TEMPLATE: the per-sequence kernel in REAL precision */

/* log sum_h exp(x[h]) over n entries (-inf if all -inf). */
static REAL SFX(kb_num_lse)(const REAL *x, int64_t n) {
  REAL m = -INFINITY;
  for (int64_t h = 0; h < n; h++)
    if (x[h] > m) m = x[h];
  if (m == -INFINITY) return m;
  REAL acc = 0;
  for (int64_t h = 0; h < n; h++) acc += EXP(x[h] - m);
  return LOG(acc) + m;
}

static void SFX(kb_num_sequence)(const KbNumArgs *g, int32_t s, REAL *ws) {
  const int64_t N = g->state_offsets[s + 1] - g->state_offsets[s];
  const int64_t a0 = g->arc_offsets[s], A = g->arc_offsets[s + 1] - a0;
  const int64_t L = g->lengths[s];
  const int32_t *src = g->src + a0, *dst = g->dst + a0, *pdf = g->pdf + a0;
  const double *lpd = g->arc_logprob + a0;
  const double *fin = g->final_logprob + g->state_offsets[s];
  const size_t row0 = (size_t)s * (size_t)g->T;
  const size_t D = (size_t)g->D;
  REAL *alpha = ws;                            /* (L + 1) x N */
  REAL *sigma = alpha + (size_t)(L + 1) * N;   /* L + 1 */
  REAL *m = sigma + (L + 1);                   /* N: running max */
  REAL *acc = m + N;                           /* N: running sums */
  REAL *bnext = acc + N, *bcur = bnext + N;    /* N each: betas */
  REAL *v = bcur + N;                          /* A: per-arc values */
  REAL *ya = v + A;                            /* L x A: the outputs arcs read */
  double *logprob = g->logprob + s;

  if (g->post_f) memset(g->post_f + row0 * D, 0, (size_t)g->T * D * sizeof(float));
  if (g->post_d) memset(g->post_d + row0 * D, 0, (size_t)g->T * D * sizeof(double));
  if (g->bad) g->bad[s] = -1;

  /* gather the outputs the arcs read, ya[t][a] (independent loads: the
     misses overlap), and check them: NaN / +inf -> the sequence is not scored */
  for (int64_t t = 0; t < L; t++) {
    size_t r = (row0 + (size_t)t) * D;
    REAL *yt = ya + (size_t)t * A;
    int bad = 0;
    if (g->y_f) {
      const float *yr = g->y_f + r;
      for (int64_t a = 0; a < A; a++) {
        float x = yr[pdf[a]];
        bad |= kb_num_bad_f(x);
        yt[a] = (REAL)x;
      }
    } else {
      const double *yr = g->y_d + r;
      for (int64_t a = 0; a < A; a++) {
        double x = yr[pdf[a]];
        bad |= kb_num_bad_d(x);
        yt[a] = (REAL)x;
      }
    }
    if (bad) {
      for (int64_t a = 0; a < A; a++) {
        int b = g->y_f ? kb_num_bad_f(g->y_f[r + pdf[a]]) : kb_num_bad_d(g->y_d[r + pdf[a]]);
        if (b) {
          if (g->bad) g->bad[s] = t * (int64_t)D + pdf[a];
          break;
        }
      }
      *logprob = NAN;
      return;
    }
  }

#define KB_Y(t, a) ya[(size_t)(t) * A + (a)]

  /* forward */
  for (int64_t h = 0; h < N; h++) alpha[h] = -INFINITY;
  alpha[g->start[s]] = 0;
  sigma[0] = 0;
  for (int64_t t = 1; t <= L; t++) {
    const REAL *ap = alpha + (size_t)(t - 1) * N;
    REAL *an = alpha + (size_t)t * N;
    const REAL sp = sigma[t - 1];
    for (int64_t h = 0; h < N; h++) {
      m[h] = -INFINITY;
      acc[h] = 0;
    }
    for (int64_t a = 0; a < A; a++) {
      REAL as = ap[src[a]];
      if (as == -INFINITY) {
        v[a] = -INFINITY;
        continue;
      }
      REAL x = (as + (REAL)lpd[a]) + KB_Y(t - 1, a);
      v[a] = x;
      if (x > m[dst[a]]) m[dst[a]] = x;
    }
    for (int64_t a = 0; a < A; a++)
      if (v[a] != -INFINITY) acc[dst[a]] += EXP(v[a] - m[dst[a]]);
    for (int64_t h = 0; h < N; h++)
      an[h] = m[h] == -INFINITY ? (REAL)-INFINITY : (LOG(acc[h]) + m[h]) - sp;
    sigma[t] = SFX(kb_num_lse)(an, N);
    if (sigma[t] == -INFINITY) { /* no path of t frames */
      *logprob = -INFINITY;
      return;
    }
  }
  const REAL *aL = alpha + (size_t)L * N;
  for (int64_t h = 0; h < N; h++) m[h] = aL[h] + (REAL)fin[h];
  const REAL tot = SFX(kb_num_lse)(m, N);
  if (tot == -INFINITY) { /* no path ends in a final state at frame L */
    *logprob = -INFINITY;
    return;
  }
  double log_scale = 0.0;
  for (int64_t t = 1; t < L; t++) log_scale += (double)sigma[t];
  REAL off = g->offsets ? (REAL)g->offsets[s] : (REAL)0;
  *logprob = (double)(REAL)(tot - off) + log_scale;
  if (!g->post_f && !g->post_d) return;

  /* backward with posteriors */
  for (int64_t h = 0; h < N; h++) bnext[h] = (REAL)fin[h] - tot;
  for (int64_t t = L - 1; t >= 0; t--) {
    const REAL *at = alpha + (size_t)t * N;
    const REAL st = sigma[t];
    for (int64_t h = 0; h < N; h++) {
      m[h] = -INFINITY;
      acc[h] = 0;
    }
    for (int64_t a = 0; a < A; a++) {
      REAL bn = bnext[dst[a]];
      if (at[src[a]] == -INFINITY || bn == -INFINITY) {
        v[a] = -INFINITY;
        continue;
      }
      REAL x = (((REAL)lpd[a] + bn) + KB_Y(t, a)) - st;
      v[a] = x;
      if (x > m[src[a]]) m[src[a]] = x;
    }
    size_t r = (row0 + (size_t)t) * D;
    if (g->post_f) {
      float *pr = g->post_f + r;
      for (int64_t a = 0; a < A; a++) {
        if (v[a] == -INFINITY) continue;
        acc[src[a]] += EXP(v[a] - m[src[a]]);
        pr[pdf[a]] += (float)EXP(v[a] + at[src[a]]);
      }
    } else {
      double *pr = g->post_d + r;
      for (int64_t a = 0; a < A; a++) {
        if (v[a] == -INFINITY) continue;
        acc[src[a]] += EXP(v[a] - m[src[a]]);
        pr[pdf[a]] += (double)EXP(v[a] + at[src[a]]);
      }
    }
    if (t == 0) break;
    for (int64_t h = 0; h < N; h++)
      bcur[h] = m[h] == -INFINITY ? (REAL)-INFINITY : LOG(acc[h]) + m[h];
    REAL *tmp = bnext;
    bnext = bcur;
    bcur = tmp;
  }
#undef KB_Y
}

#endif /* KB_NUM_TEMPLATE */
