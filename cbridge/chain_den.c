/*
 * Kaldi's chain denominator forward-backward (DenominatorComputation::Forward
 * + Backward) on the CPU: see kbind_native.h (kb_chain_den_forward_backward)
 * for the contract and kbind/chain/denominator.py for the math.
 *
 * Design (performance is the point):
 *
 *  - The sequences are processed in blocks of KB_DEN_SB = 16 lanes. Every
 *    per-state quantity is stored as [state][lane] (Kaldi's alpha[t][h*S+s]
 *    layout restricted to one block), so each arc touches one contiguous row
 *    of 16 floats (one zmm register with AVX-512) and the innermost "loop over
 *    sequences" is a fixed-width SIMD vector (GCC vector extensions). The
 *    loop over arcs is outer, the lanes inner; exp(nnet_output) is stored
 *    transposed as x[t][pdf][lane].
 *  - A block runs all frames of its forward and backward pass on its own:
 *    blocks are independent, so OpenMP runs blocks in parallel with no
 *    synchronisation per frame (threads <= number of blocks), and a block's
 *    per-frame working set (one frame of alphas: H x 64 bytes = 142 KB for
 *    H = 2227) stays in L2.
 *  - Forward: arcs are grouped into "virtual destinations" v = (dst, pdf)
 *    (arcs into v all consume x(t, pdf_v)), as the torch path does:
 *    u[v] = sum_{a in v} p_a alpha'(t-1, src_a) (one multiply-add per arc and
 *    lane), alpha(t, dst_v) += x(t-1, pdf_v) u[v] (double).
 *  - Backward: Kaldi's BetaDashGeneralFrame, state by state with the arcs
 *    leaving it: w[v] = beta(t+1, dst_v) x(t, pdf_v) once per group, then per
 *    arc f = p_a w[v_a], beta'(t, i) += f (double), gamma(t, pdf_a) += f occ(i)
 *    (float, as Kaldi's CPU code); one pass over the arcs.
 *  - Arithmetic: float32 storage of alpha', beta', tot and gamma, rounded at
 *    the same points as Kaldi; the per-state sums over arcs (Kaldi's double
 *    this_tot_alpha / tot_variable_factor), the sums over states (tot, the
 *    leaky terms, log-probs) in double. Arc products are formed in float and
 *    summed in float in runs of at most 4 arcs before entering the double
 *    accumulator (Kaldi's CUDA kernel does pairs); with AVX2/AVX-512 these use
 *    fused multiply-adds. Differences to Kaldi's CPU code and to the torch
 *    path are of the order of float rounding (see tests/chain/test_denominator_c.py).
 *    Each lane does the same operations whatever the other lanes hold, so a
 *    sequence's results do not depend on the batch it is in, on the number of
 *    threads, or on the other sequences' lengths (on one instruction set).
 *  - Instruction sets: the block kernel is compiled three times (baseline,
 *    AVX2, AVX-512) by including this file again with KB_DEN_TEMPLATE
 *    defined, with target attributes, and picked at run time
 *    (__builtin_cpu_supports), since the extension is built without -march.
 */
#ifndef KB_DEN_TEMPLATE
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif
#if defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h>
#endif

#include "common.h"

#define KB_DEN_SB 16 /* lanes (sequences) per block */
#define KB_DEN_ALIGN 64


#define KB_LIMIT 30.0f

/* The graph, regrouped for the block kernel (built once per call). */
typedef struct {
  int32_t H, D, V;
  int64_t A;
  /* forward grouping: v = 0..V-1 sorted by (dst, pdf); arcs of v are
     fv_src/fv_p[v_off[v] .. v_off[v+1]) in source-then-arc order. */
  const int32_t *v_dst, *v_pdf;
  const int64_t *v_off;
  const int32_t *fv_src;
  const float *fv_p;
  const int64_t *j_voff; /* groups of destination j: j_voff[j] .. j_voff[j+1] */
  /* backward: arcs leaving i: bo_v/bo_p[bo_off[i] .. bo_off[i+1]), v ascending */
  const int64_t *bo_off;
  const int32_t *bo_v;
  const int32_t *bo_pdf; /* pdf of each of those arcs */
  const float *bo_p;
  const float *init; /* [H] */
  const float *linit; /* [H]: (float)leaky * init (float product, as torch) */
} kb_den_graph;

typedef struct {
  const float *y;        /* [S][T][D] */
  const int64_t *lengths; /* [S] or NULL */
  int32_t S, T;
  float leaky_f;
  float *logprob; /* [S] */
  float *deriv;   /* [S][T][D] or NULL */
} kb_den_io;

/* Scratch of one block (one worker thread). */
typedef struct {
  float *alpha;  /* [T+1 (2 if forward only)][H][SB]: alpha' (leak added) */
  float *tot;    /* [T+1][SB]: sum of un-leaked alphas */
  double *tp;    /* [T+1][SB]: sum of alpha' */
  float *x;      /* [T][D][SB]: limited exp of the outputs */
  float *wv;     /* [V][SB]: beta(t+1, dst_v) x(t, pdf_v) (backward) */
  float *beta;   /* [H][SB] (backward) */
  float *gam;    /* [D][SB] (backward) */
} kb_den_work;

static void *kb_aligned(size_t n) {
  if (n == 0) n = KB_DEN_ALIGN;
  n = (n + KB_DEN_ALIGN - 1) / KB_DEN_ALIGN * KB_DEN_ALIGN; /* C11: a multiple */
  return aligned_alloc(KB_DEN_ALIGN, n);
}

static void kb_den_work_free(kb_den_work *w) {
  free(w->alpha);
  free(w->tot);
  free(w->tp);
  free(w->x);
  free(w->wv);
  free(w->beta);
  free(w->gam);
  memset(w, 0, sizeof(*w));
}

/* Sizes (bytes) of the scratch arrays of one block, in kb_den_work order. */
static void kb_den_work_sizes(int32_t H, int32_t D, int32_t V, int32_t T, int backward,
                              size_t sz[8]) {
  const size_t SB = KB_DEN_SB;
  sz[0] = (backward ? (size_t)(T + 1) : 2) * H * SB * sizeof(float);
  sz[1] = (size_t)(T + 1) * SB * sizeof(float);
  sz[2] = (size_t)(T + 1) * SB * sizeof(double);
  sz[3] = (size_t)T * D * SB * sizeof(float);
  sz[4] = 0; /* (unused) */
  sz[5] = backward ? (size_t)V * SB * sizeof(float) : 0;
  sz[6] = backward ? (size_t)H * SB * sizeof(float) : 0;
  sz[7] = backward ? (size_t)D * SB * sizeof(float) : 0;
}

static size_t kb_den_work_bytes(int32_t H, int32_t D, int32_t V, int32_t T, int backward) {
  size_t sz[8], n = 0;
  kb_den_work_sizes(H, D, V, T, backward, sz);
  for (int i = 0; i < 8; i++) n += sz[i];
  return n;
}

static int kb_den_work_alloc(kb_den_work *w, int32_t H, int32_t D, int32_t V, int32_t T,
                             int backward) {
  size_t sz[8];
  kb_den_work_sizes(H, D, V, T, backward, sz);
  memset(w, 0, sizeof(*w));
  w->alpha = kb_aligned(sz[0]);
  w->tot = kb_aligned(sz[1]);
  w->tp = kb_aligned(sz[2]);
  w->x = kb_aligned(sz[3]);
  int ok = w->alpha && w->tot && w->tp && w->x;
  if (backward) {
    w->wv = kb_aligned(sz[5]);
    w->beta = kb_aligned(sz[6]);
    w->gam = kb_aligned(sz[7]);
    ok = ok && w->wv && w->beta && w->gam;
  }
  if (!ok) {
    kb_den_work_free(w);
    return 0;
  }
  return 1;
}

typedef void (*kb_den_block_fn)(const kb_den_graph *, const kb_den_io *, kb_den_work *,
                                int32_t, int32_t, double *);

/*
 * The block kernel, instantiated below once per instruction set by including
 * this file again with KB_DEN_TEMPLATE defined: KB_VW = doubles per native
 * vector (2 SSE2, 4 AVX2, 8 AVX-512), KB_FN = the function's name, KB_ATTR =
 * its target attribute. A row of KB_DEN_SB lanes is KB_DEN_SB / KB_VW native
 * vectors held in small arrays that the compiler keeps in registers.
 */
#define KB_DEN_TEMPLATE
#define KB_VW 2
#define KB_SHUF_LO 0, 1
#define KB_SHUF_HI 2, 3
#define KB_FN kb_den_block_generic
#define KB_ATTR
#include "chain_den.c"
#undef KB_SHUF_LO
#undef KB_SHUF_HI
#undef KB_VW
#undef KB_FN
#undef KB_ATTR

#if defined(__GNUC__) && defined(__x86_64__)
#define KB_DEN_X86 1
#define KB_VW 4
#define KB_SHUF_LO 0, 1, 2, 3
#define KB_SHUF_HI 4, 5, 6, 7
#define KB_FN kb_den_block_avx2
#define KB_ATTR __attribute__((target("avx2,fma"), optimize("fp-contract=fast")))
#include "chain_den.c"
#undef KB_VW
#undef KB_FN
#undef KB_ATTR

#undef KB_SHUF_LO
#undef KB_SHUF_HI
#define KB_VW 8
#define KB_SHUF_LO 0, 1, 2, 3, 4, 5, 6, 7
#define KB_SHUF_HI 8, 9, 10, 11, 12, 13, 14, 15
#define KB_FN kb_den_block_avx512
#define KB_ATTR __attribute__((target("avx512f,avx512dq,avx512vl,avx2,fma"), optimize("fp-contract=fast")))
#include "chain_den.c"
#undef KB_VW
#undef KB_SHUF_LO
#undef KB_SHUF_HI
#undef KB_FN
#undef KB_ATTR
#endif
#undef KB_DEN_TEMPLATE

/* 0 = baseline, 1 = AVX2, 2 = AVX-512; forced by isa >= 0 (clipped to what the
   CPU has). */
static int kb_den_pick_isa(int isa) {
  int best = 0;
#ifdef KB_DEN_X86
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) best = 1;
  if (best == 1 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
      __builtin_cpu_supports("avx512vl"))
    best = 2;
#endif
  if (isa >= 0 && isa < best) return isa;
  return best;
}

static kb_den_block_fn kb_den_fn(int isa) {
#ifdef KB_DEN_X86
  if (isa == 2) return kb_den_block_avx512;
  if (isa == 1) return kb_den_block_avx2;
#endif
  (void)isa;
  return kb_den_block_generic;
}

/* Regroup the graph (see kb_den_graph). Returns KB_OK or an error. */
typedef struct {
  int32_t *v_dst, *v_pdf, *fv_src, *bo_v, *bo_pdf;
  int64_t *v_off, *j_voff, *bo_off;
  float *fv_p, *bo_p;
  float *linit;
} kb_den_graph_mem;

static void kb_den_graph_free(kb_den_graph_mem *m) {
  free(m->v_dst);
  free(m->v_pdf);
  free(m->fv_src);
  free(m->bo_v);
  free(m->bo_pdf);
  free(m->v_off);
  free(m->j_voff);
  free(m->bo_off);
  free(m->fv_p);
  free(m->bo_p);
  free(m->linit);
  memset(m, 0, sizeof(*m));
}

static int kb_den_graph_build(int32_t H, int32_t D, const int32_t *fwd, int64_t num_trans,
                              const float *tprob, const int32_t *tpdf, const int32_t *tstate,
                              const float *init, float leaky_f, kb_den_graph *g,
                              kb_den_graph_mem *m, char *err, size_t errlen) {
  memset(m, 0, sizeof(*m));
  int64_t A = 0;
  for (int32_t i = 0; i < H; i++) {
    int32_t b = fwd[2 * i], e = fwd[2 * i + 1];
    if (b < 0 || e < b || (int64_t)e > num_trans)
      return kb_fail(err, errlen, KB_EINVAL,
                     "den graph state %d: forward transitions [%d, %d) out of range [0, %lld]",
                     (int)i, (int)b, (int)e, (long long)num_trans);
    for (int32_t a = b; a < e; a++) {
      if (tstate[a] < 0 || tstate[a] >= H)
        return kb_fail(err, errlen, KB_EINVAL,
                       "den graph transition %d (from state %d): next state %d out of range "
                       "[0, %d)", (int)a, (int)i, (int)tstate[a], (int)H);
      if (tpdf[a] < 0 || tpdf[a] >= D)
        return kb_fail(err, errlen, KB_EINVAL,
                       "den graph transition %d (from state %d): pdf-id %d out of range "
                       "[0, %d) (num_pdfs = nnet output dimension)",
                       (int)a, (int)i, (int)tpdf[a], (int)D);
      if (!(tprob[a] >= 0.0f) || isinf(tprob[a]))
        return kb_fail(err, errlen, KB_EINVAL,
                       "den graph transition %d: probability %g is not finite and >= 0",
                       (int)a, (double)tprob[a]);
    }
    A += e - b;
  }
  for (int32_t i = 0; i < H; i++)
    if (!(init[i] >= 0.0f) || isinf(init[i]))
      return kb_fail(err, errlen, KB_EINVAL,
                     "den graph initial prob of state %d is %g (must be finite and >= 0)",
                     (int)i, (double)init[i]);
  if (A > INT32_MAX) return kb_fail(err, errlen, KB_EINVAL, "den graph has too many arcs");

  int64_t *cnt = calloc((size_t)(H > D ? H : D) + 1, sizeof(int64_t));
  int32_t *ord1 = malloc((size_t)(A ? A : 1) * sizeof(int32_t));
  int32_t *ord2 = malloc((size_t)(A ? A : 1) * sizeof(int32_t));
  int32_t *a_src = malloc((size_t)(A ? A : 1) * sizeof(int32_t));
  int32_t *a_idx = malloc((size_t)(A ? A : 1) * sizeof(int32_t));
  int32_t *a_vid = malloc((size_t)(A ? A : 1) * sizeof(int32_t));
  m->v_dst = malloc((size_t)(A ? A : 1) * sizeof(int32_t));
  m->v_pdf = malloc((size_t)(A ? A : 1) * sizeof(int32_t));
  m->v_off = malloc((size_t)(A + 1) * sizeof(int64_t));
  m->fv_src = malloc((size_t)(A ? A : 1) * sizeof(int32_t));
  m->fv_p = malloc((size_t)(A ? A : 1) * sizeof(float));
  m->j_voff = calloc((size_t)H + 1, sizeof(int64_t));
  m->bo_off = calloc((size_t)H + 1, sizeof(int64_t));
  m->bo_v = malloc((size_t)(A ? A : 1) * sizeof(int32_t));
  m->bo_pdf = malloc((size_t)(A ? A : 1) * sizeof(int32_t));
  m->bo_p = malloc((size_t)(A ? A : 1) * sizeof(float));
  m->linit = malloc((size_t)H * sizeof(float));
  int rc = KB_OK;
  if (!cnt || !ord1 || !ord2 || !a_src || !a_idx || !a_vid || !m->v_dst || !m->v_pdf ||
      !m->v_off || !m->fv_src || !m->fv_p || !m->j_voff || !m->bo_off || !m->bo_v || !m->bo_pdf ||
      !m->bo_p || !m->linit) {
    rc = kb_fail(err, errlen, KB_ENOMEM, "out of memory building the den graph index");
    goto done;
  }
  /* arcs in Kaldi's forward order */
  {
    int64_t k = 0;
    for (int32_t i = 0; i < H; i++)
      for (int32_t a = fwd[2 * i]; a < fwd[2 * i + 1]; a++) {
        a_src[k] = i;
        a_idx[k] = a;
        k++;
      }
  }
  /* stable counting sort by pdf, then by dst: order by (dst, pdf, arc order) */
  memset(cnt, 0, ((size_t)(H > D ? H : D) + 1) * sizeof(int64_t));
  for (int64_t k = 0; k < A; k++) cnt[tpdf[a_idx[k]] + 1]++;
  for (int32_t n = 0; n < D; n++) cnt[n + 1] += cnt[n];
  for (int64_t k = 0; k < A; k++) ord1[cnt[tpdf[a_idx[k]]]++] = (int32_t)k;
  memset(cnt, 0, ((size_t)(H > D ? H : D) + 1) * sizeof(int64_t));
  for (int64_t k = 0; k < A; k++) cnt[tstate[a_idx[k]] + 1]++;
  for (int32_t j = 0; j < H; j++) cnt[j + 1] += cnt[j];
  for (int64_t r = 0; r < A; r++) {
    int32_t k = ord1[r];
    ord2[cnt[tstate[a_idx[k]]]++] = k;
  }
  /* groups */
  {
    int32_t V = 0;
    int32_t pd = -1, pp = -1;
    for (int64_t r = 0; r < A; r++) {
      int32_t k = ord2[r];
      int32_t dst = tstate[a_idx[k]], pdf = tpdf[a_idx[k]];
      if (dst != pd || pdf != pp) {
        m->v_dst[V] = dst;
        m->v_pdf[V] = pdf;
        m->v_off[V] = r;
        m->j_voff[dst + 1]++;
        V++;
        pd = dst;
        pp = pdf;
      }
      m->fv_src[r] = a_src[k];
      m->fv_p[r] = tprob[a_idx[k]];
      a_vid[k] = V - 1;
    }
    m->v_off[V] = A;
    for (int32_t j = 0; j < H; j++) m->j_voff[j + 1] += m->j_voff[j];
    g->V = V;
  }
  /* backward: arcs by source, v ascending (stable counting sort of the v order) */
  for (int64_t r = 0; r < A; r++) m->bo_off[a_src[ord2[r]] + 1]++;
  for (int32_t i = 0; i < H; i++) m->bo_off[i + 1] += m->bo_off[i];
  memcpy(cnt, m->bo_off, (size_t)H * sizeof(int64_t));
  for (int64_t r = 0; r < A; r++) {
    int32_t k = ord2[r];
    int64_t pos = cnt[a_src[k]]++;
    m->bo_v[pos] = a_vid[k];
    m->bo_pdf[pos] = tpdf[a_idx[k]];
    m->bo_p[pos] = tprob[a_idx[k]];
  }
  for (int32_t i = 0; i < H; i++) m->linit[i] = leaky_f * init[i];
  g->H = H;
  g->D = D;
  g->A = A;
  g->v_dst = m->v_dst;
  g->v_pdf = m->v_pdf;
  g->v_off = m->v_off;
  g->fv_src = m->fv_src;
  g->fv_p = m->fv_p;
  g->j_voff = m->j_voff;
  g->bo_off = m->bo_off;
  g->bo_v = m->bo_v;
  g->bo_pdf = m->bo_pdf;
  g->bo_p = m->bo_p;
  g->init = init;
  g->linit = m->linit;
done:
  free(cnt);
  free(ord1);
  free(ord2);
  free(a_src);
  free(a_idx);
  free(a_vid);
  if (rc != KB_OK) kb_den_graph_free(m);
  return rc;
}

int kb_chain_den_forward_backward(int32_t num_states, int32_t num_pdfs,
                                  const int32_t *forward_transitions, int64_t num_transitions,
                                  const float *transitions_prob, const int32_t *transitions_pdf,
                                  const int32_t *transitions_hmm_state,
                                  const float *initial_probs, int32_t num_sequences,
                                  int32_t num_frames, const float *nnet_output,
                                  const int64_t *lengths, double leaky_hmm_coefficient,
                                  int32_t num_threads, int32_t isa, float *logprob,
                                  float *deriv, double *checks, int64_t *scratch_bytes,
                                  char *err, size_t errlen) {
  const int32_t H = num_states, D = num_pdfs, S = num_sequences, T = num_frames;
  if (H <= 0 || D <= 0)
    return kb_fail(err, errlen, KB_EINVAL, "den graph sizes must be positive: %d states, %d pdfs",
                   (int)H, (int)D);
  if (S <= 0 || T <= 0)
    return kb_fail(err, errlen, KB_EINVAL,
                   "nnet_output must have at least one sequence and one frame; got %d "
                   "sequences, %d frames", (int)S, (int)T);
  if (num_transitions < 0)
    return kb_fail(err, errlen, KB_EINVAL, "negative number of transitions %lld",
                   (long long)num_transitions);
  if (!(leaky_hmm_coefficient > 0.0 && leaky_hmm_coefficient < 1.0))
    return kb_fail(err, errlen, KB_EINVAL,
                   "leaky_hmm_coefficient must be in (0, 1) (Kaldi asserts this); got %g",
                   leaky_hmm_coefficient);
  if (!forward_transitions || !initial_probs || !nnet_output || !logprob ||
      (num_transitions > 0 && (!transitions_prob || !transitions_pdf || !transitions_hmm_state)))
    return kb_fail(err, errlen, KB_EINVAL, "missing input or output array");
  if (lengths) {
    for (int32_t s = 0; s < S; s++)
      if (lengths[s] < 1 || lengths[s] > T)
        return kb_fail(err, errlen, KB_EINVAL,
                       "length %lld of sequence %d out of range [1, %d] (the padded number of "
                       "frames)", (long long)lengths[s], (int)s, (int)T);
  }
  if ((double)T * D * KB_DEN_SB > 1e12 || (double)(T + 1) * H * KB_DEN_SB > 1e12)
    return kb_fail(err, errlen, KB_EINVAL, "sizes too large: %d frames, %d states", (int)T,
                   (int)H);

  float leaky_f = (float)leaky_hmm_coefficient;
  kb_den_graph g;
  kb_den_graph_mem gm;
  int rc = kb_den_graph_build(H, D, forward_transitions, num_transitions, transitions_prob,
                              transitions_pdf, transitions_hmm_state, initial_probs, leaky_f,
                              &g, &gm, err, errlen);
  if (rc != KB_OK) return rc;

  kb_den_io io = {nnet_output, lengths, S, T, leaky_f, logprob, deriv};
  const int32_t nblocks = (S + KB_DEN_SB - 1) / KB_DEN_SB;
  kb_den_block_fn fn = kb_den_fn(kb_den_pick_isa(isa));
  double *bchecks = calloc((size_t)nblocks * 2, sizeof(double));
  if (!bchecks) {
    kb_den_graph_free(&gm);
    return kb_fail(err, errlen, KB_ENOMEM, "out of memory");
  }
  int nomem = 0;
  int nt = 1;
#ifdef _OPENMP
  nt = num_threads > 0 ? num_threads : omp_get_max_threads();
  if (nt > nblocks) nt = nblocks;
#pragma omp parallel num_threads(nt) reduction(| : nomem)
  {
#endif
    kb_den_work w;
    int have = kb_den_work_alloc(&w, H, D, g.V, T, deriv != NULL);
    /* every thread must reach the worksharing loop, allocated or not */
#ifdef _OPENMP
#pragma omp for schedule(dynamic, 1)
#endif
    for (int32_t b = 0; b < nblocks; b++) {
      if (!have) {
        nomem = 1;
        continue;
      }
      int32_t b0 = b * KB_DEN_SB;
      int32_t nb = S - b0 < KB_DEN_SB ? S - b0 : KB_DEN_SB;
      fn(&g, &io, &w, b0, nb, bchecks + 2 * b);
    }
    if (have) kb_den_work_free(&w);
#ifdef _OPENMP
  }
#endif
  if (nomem) {
    rc = kb_fail(err, errlen, KB_ENOMEM,
                 "out of memory allocating the den forward-backward scratch (%zu bytes per "
                 "thread)", kb_den_work_bytes(H, D, g.V, T, deriv != NULL));
  } else if (checks) {
    checks[0] = checks[1] = 0.0;
    for (int32_t b = 0; b < nblocks; b++) {
      checks[0] += bchecks[2 * b];
      checks[1] += bchecks[2 * b + 1];
    }
  }
  if (scratch_bytes) {
    /* per worker: kb_den_work; graph index: v_dst, v_pdf, fv_src, bo_v (int32),
       v_off, fv_p, bo_p (8 bytes), j_voff, bo_off, linit; build temporaries freed before */
    int64_t A = g.A;
    scratch_bytes[0] = (int64_t)kb_den_work_bytes(H, D, g.V, T, deriv != NULL) * nt +
                       A * (7 * 4 + 8) + (int64_t)(H + 1) * 16 + (int64_t)H * 4 +
                       (int64_t)nblocks * 16;
  }
  free(bchecks);
  kb_den_graph_free(&gm);
  return rc;
}


#else /* KB_DEN_TEMPLATE: the block kernel for one vector width */

#define KB_CAT2(a, b) a##b
#define KB_CAT(a, b) KB_CAT2(a, b)
#define VD KB_CAT(kb_vd, KB_VW) /* KB_VW doubles: one native register */
#define VF KB_CAT(kb_vf, KB_VW) /* 2 KB_VW floats: one native register */
#define VH KB_CAT(kb_vh, KB_VW) /* KB_VW floats: half a register */
#define NV (KB_DEN_SB / KB_VW)       /* double vectors per row of lanes */
#define NF (KB_DEN_SB / (2 * KB_VW)) /* float vectors per row of lanes */
typedef double VD __attribute__((vector_size(KB_VW * 8), aligned(8)));
typedef float VF __attribute__((vector_size(KB_VW * 8), aligned(4)));
typedef float VH __attribute__((vector_size(KB_VW * 4), aligned(4)));
#define LDF(p) (*(const VF *)(p))
#define LDH(p) (*(const VH *)(p))
#define LDD(p) (*(const VD *)(p))
#define STF(p, v) (*(VF *)(p) = (v))
#define STH(p, v) (*(VH *)(p) = (v))
#define STD(p, v) (*(VD *)(p) = (v))
/* float <-> double conversions: GCC lowers __builtin_convertvector between
   8 floats and 8 doubles as four 4-wide conversions, so use the instructions */
#if KB_VW == 8
#define H2D(v) ((VD)_mm512_cvtps_pd((__m256)(v)))
#define D2H(v) ((VH)_mm512_cvtpd_ps((__m512d)(v)))
#elif KB_VW == 4
#define H2D(v) ((VD)_mm256_cvtps_pd((__m128)(v)))
#define D2H(v) ((VH)_mm256_cvtpd_ps((__m256d)(v)))
#else
#define H2D(v) __builtin_convertvector((v), VD)
#define D2H(v) __builtin_convertvector((v), VH)
#endif
#define LO(v) __builtin_shufflevector((v), (v), KB_SHUF_LO)
#define HI(v) __builtin_shufflevector((v), (v), KB_SHUF_HI)
#define FORQ _Pragma("GCC unroll 16") for (int q = 0; q < NV; q++)
#define FORF _Pragma("GCC unroll 16") for (int f = 0; f < NF; f++)

/*
 * acc[0..NV) (double lanes) += sum over positions a in [a0, a1) of
 * p[a] * rows[idx[a]] (float rows of SB lanes): the products and partial sums
 * of up to 4 arcs in float (fused multiply-add where the instruction set has
 * it), each partial sum then added in double (Kaldi's GPU kernel: pairs).
 */
#define KB_GATHER_SUM(acc, a0, a1, p, idx, rows)                                          \
  do {                                                                                   \
    int64_t a_ = (a0);                                                                   \
    const int64_t ae_ = (a1);                                                            \
    for (; a_ + 4 <= ae_; a_ += 4) {                                                     \
      const float p0_ = (p)[a_], p1_ = (p)[a_ + 1], p2_ = (p)[a_ + 2], p3_ = (p)[a_ + 3]; \
      const float *r0_ = (rows) + (size_t)(idx)[a_] * SB;                                \
      const float *r1_ = (rows) + (size_t)(idx)[a_ + 1] * SB;                            \
      const float *r2_ = (rows) + (size_t)(idx)[a_ + 2] * SB;                            \
      const float *r3_ = (rows) + (size_t)(idx)[a_ + 3] * SB;                            \
      FORF {                                                                             \
        VF c_ = (p0_ * LDF(r0_ + f * 2 * KB_VW) + p1_ * LDF(r1_ + f * 2 * KB_VW)) +      \
                (p2_ * LDF(r2_ + f * 2 * KB_VW) + p3_ * LDF(r3_ + f * 2 * KB_VW));       \
        acc[2 * f] += H2D(LO(c_));                                                       \
        acc[2 * f + 1] += H2D(HI(c_));                                                   \
      }                                                                                  \
    }                                                                                    \
    if (a_ + 2 <= ae_) {                                                                 \
      const float p0_ = (p)[a_], p1_ = (p)[a_ + 1];                                      \
      const float *r0_ = (rows) + (size_t)(idx)[a_] * SB;                                \
      const float *r1_ = (rows) + (size_t)(idx)[a_ + 1] * SB;                            \
      FORF {                                                                             \
        VF c_ = p0_ * LDF(r0_ + f * 2 * KB_VW) + p1_ * LDF(r1_ + f * 2 * KB_VW);         \
        acc[2 * f] += H2D(LO(c_));                                                       \
        acc[2 * f + 1] += H2D(HI(c_));                                                   \
      }                                                                                  \
      a_ += 2;                                                                           \
    }                                                                                    \
    if (a_ < ae_) {                                                                      \
      const float p0_ = (p)[a_];                                                         \
      const float *r0_ = (rows) + (size_t)(idx)[a_] * SB;                                \
      FORF {                                                                             \
        VF c_ = p0_ * LDF(r0_ + f * 2 * KB_VW);                                          \
        acc[2 * f] += H2D(LO(c_));                                                       \
        acc[2 * f + 1] += H2D(HI(c_));                                                   \
      }                                                                                  \
    }                                                                                    \
  } while (0)

/*
 * One block of up to KB_DEN_SB sequences starting at b0 (nb of them real).
 * checks[0] = sum alpha'(0) beta'(0), checks[1] = sum gamma(0) over the real
 * lanes (backward only).
 */
KB_ATTR static void KB_FN(const kb_den_graph *g, const kb_den_io *io, kb_den_work *w,
                          int32_t b0, int32_t nb, double *checks) {
  enum { SB = KB_DEN_SB };
  const int32_t H = g->H, D = g->D, T = io->T;
  const int backward = io->deriv != NULL;
  const size_t HS = (size_t)H * SB;
  int32_t len[SB];
  for (int k = 0; k < SB; k++) {
    int32_t L = T;
    if (k < nb && io->lengths) L = (int32_t)io->lengths[b0 + k];
    len[k] = L;
  }

  /* x(t, n, lane) = exp(limit(y)); 1 (neutral) past a sequence's end and in
     padding lanes. */
  for (int32_t t = 0; t < T; t++) {
    float *xt = w->x + (size_t)t * D * SB;
    for (int k = 0; k < SB; k++) {
      if (k < nb && t < len[k]) {
        const float *yr = io->y + ((size_t)(b0 + k) * T + t) * D;
        for (int32_t n = 0; n < D; n++) {
          float v = yr[n];
          v = (v >= -KB_LIMIT) ? (v > KB_LIMIT ? KB_LIMIT : v) : -KB_LIMIT;
          xt[(size_t)n * SB + k] = expf(v);
        }
      } else {
        for (int32_t n = 0; n < D; n++) xt[(size_t)n * SB + k] = 1.0f;
      }
    }
  }

  /* ---------------- forward ---------------- */
  {
    float *alpha0 = w->alpha;
    double s = 0.0;
    for (int32_t j = 0; j < H; j++) s += (double)g->init[j];
    const float tot0 = (float)s;
    double tp = 0.0;
    for (int32_t j = 0; j < H; j++) {
      const float a = g->init[j] + g->linit[j] * tot0;
      for (int k = 0; k < SB; k++) alpha0[(size_t)j * SB + k] = a;
      tp += (double)a;
    }
    for (int k = 0; k < SB; k++) {
      w->tot[k] = tot0;
      w->tp[k] = tp;
    }
  }
  for (int32_t t = 1; t <= T; t++) {
    float *at = w->alpha + (size_t)(backward ? t : (t & 1)) * HS;
    const float *pa = w->alpha + (size_t)(backward ? t - 1 : ((t - 1) & 1)) * HS;
    const float *xt = w->x + (size_t)(t - 1) * D * SB;
    const float *ptot = w->tot + (size_t)(t - 1) * SB;
    VD scale[NV], totacc[NV];
    FORQ {
      /* Kaldi: BaseFloat arbitrary_scale = 1.0 / prev_tot */
      scale[q] = H2D(D2H(1.0 / H2D(LDH(ptot + q * KB_VW))));
      totacc[q] = (VD){0};
    }
    for (int32_t j = 0; j < H; j++) {
      VD acc[NV];
      FORQ acc[q] = (VD){0};
      for (int64_t v = g->j_voff[j]; v < g->j_voff[j + 1]; v++) {
        /* u[v] = sum_{a in v} p_a alpha'(t-1, src_a); alpha(t, j) += u x(pdf_v) */
        VD u[NV];
        FORQ u[q] = (VD){0};
        KB_GATHER_SUM(u, g->v_off[v], g->v_off[v + 1], g->fv_p, g->fv_src, pa);
        const float *xr = xt + (size_t)g->v_pdf[v] * SB;
        FORQ acc[q] += u[q] * H2D(LDH(xr + q * KB_VW));
      }
      float *ar = at + (size_t)j * SB;
      FORQ {
        VH al = D2H(acc[q] * scale[q]);
        STH(ar + q * KB_VW, al);
        totacc[q] += H2D(al);
      }
    }
    VH totf[NV];
    VD tp[NV];
    FORQ {
      totf[q] = D2H(totacc[q]);
      STH(w->tot + (size_t)t * SB + q * KB_VW, totf[q]);
      tp[q] = (VD){0};
    }
    for (int32_t j = 0; j < H; j++) {
      const float li = g->linit[j];
      float *ar = at + (size_t)j * SB;
      FORQ {
        VH al = LDH(ar + q * KB_VW) + li * totf[q];
        STH(ar + q * KB_VW, al);
        tp[q] += H2D(al);
      }
    }
    FORQ STD(w->tp + (size_t)t * SB + q * KB_VW, tp[q]);
  }
  double tot_prob[SB];
  for (int k = 0; k < nb; k++) {
    const int32_t L = len[k];
    const double tpk = w->tp[(size_t)L * SB + k];
    double lp = log(tpk);
    for (int32_t t = 0; t < L; t++) lp += log((double)w->tot[(size_t)t * SB + k]);
    io->logprob[b0 + k] = (float)lp;
    tot_prob[k] = tpk;
  }
  if (!backward) return;

  /* ---------------- backward ---------------- */
  float beta_last[SB];
  double init_sum = 0.0;
  for (int32_t i = 0; i < H; i++) init_sum += (double)g->init[i];
  for (int k = 0; k < SB; k++) {
    /* torch: beta' = 1 / float(tot_prob); beta = beta' + leaky (init . beta') */
    float bd = 1.0f;
    if (k < nb) bd = 1.0f / (float)tot_prob[k];
    const float tb = io->leaky_f * (float)(init_sum * (double)bd);
    beta_last[k] = bd + tb;
  }
  for (int32_t i = 0; i < H; i++)
    for (int k = 0; k < SB; k++) w->beta[(size_t)i * SB + k] = (len[k] == T) ? beta_last[k] : 0.0f;
  for (int32_t t = T - 1; t >= 0; t--) {
    /* sequences whose last frame is t start here */
    if (t + 1 < T) {
      for (int k = 0; k < SB; k++) {
        if (len[k] == t + 1) {
          for (int32_t i = 0; i < H; i++) w->beta[(size_t)i * SB + k] = beta_last[k];
        }
      }
    }
    const float *at = w->alpha + (size_t)t * HS;
    const float *xt = w->x + (size_t)t * D * SB;
    VF totf2[NF];
    VD rtot[NV];
    FORF totf2[f] = LDF(w->tot + (size_t)t * SB + f * 2 * KB_VW);
    FORQ rtot[q] = 1.0 / H2D(LDH(w->tot + (size_t)t * SB + q * KB_VW));
    /* w[v] = beta(t+1, dst_v) x(t, pdf_v) (float, as Kaldi's product) */
    for (int32_t v = 0; v < g->V; v++) {
      const float *br = w->beta + (size_t)g->v_dst[v] * SB;
      const float *xr = xt + (size_t)g->v_pdf[v] * SB;
      float *wr = w->wv + (size_t)v * SB;
      FORF STF(wr + f * 2 * KB_VW, LDF(br + f * 2 * KB_VW) * LDF(xr + f * 2 * KB_VW));
    }
    memset(w->gam, 0, (size_t)D * SB * sizeof(float));
    /* Kaldi's BetaDashGeneralFrame: for each state i, occ = alpha'(t, i) / tot(t);
       for each arc a leaving i: f = p_a w[v_a]; beta'(t, i) += f (double);
       gamma(t, pdf_a) += f occ (float). beta' overwrites beta(t+1). */
    VD ib[NV];
    FORQ ib[q] = (VD){0};
    for (int32_t i = 0; i < H; i++) {
      const float *ar = at + (size_t)i * SB;
      VF occ[NF];
      FORF occ[f] = LDF(ar + f * 2 * KB_VW) / totf2[f];
      VD s[NV];
      FORQ s[q] = (VD){0};
      int64_t a = g->bo_off[i];
      const int64_t ae = g->bo_off[i + 1];
      for (; a + 4 <= ae; a += 4) {
        const float p0 = g->bo_p[a], p1 = g->bo_p[a + 1], p2 = g->bo_p[a + 2],
                    p3 = g->bo_p[a + 3];
        const float *r0 = w->wv + (size_t)g->bo_v[a] * SB;
        const float *r1 = w->wv + (size_t)g->bo_v[a + 1] * SB;
        const float *r2 = w->wv + (size_t)g->bo_v[a + 2] * SB;
        const float *r3 = w->wv + (size_t)g->bo_v[a + 3] * SB;
        float *g0 = w->gam + (size_t)g->bo_pdf[a] * SB;
        float *g1 = w->gam + (size_t)g->bo_pdf[a + 1] * SB;
        float *g2 = w->gam + (size_t)g->bo_pdf[a + 2] * SB;
        float *g3 = w->gam + (size_t)g->bo_pdf[a + 3] * SB;
        FORF {
          const VF f0 = p0 * LDF(r0 + f * 2 * KB_VW);
          const VF f1 = p1 * LDF(r1 + f * 2 * KB_VW);
          const VF f2 = p2 * LDF(r2 + f * 2 * KB_VW);
          const VF f3 = p3 * LDF(r3 + f * 2 * KB_VW);
          STF(g0 + f * 2 * KB_VW, LDF(g0 + f * 2 * KB_VW) + f0 * occ[f]);
          STF(g1 + f * 2 * KB_VW, LDF(g1 + f * 2 * KB_VW) + f1 * occ[f]);
          STF(g2 + f * 2 * KB_VW, LDF(g2 + f * 2 * KB_VW) + f2 * occ[f]);
          STF(g3 + f * 2 * KB_VW, LDF(g3 + f * 2 * KB_VW) + f3 * occ[f]);
          const VF c = (f0 + f1) + (f2 + f3);
          s[2 * f] += H2D(LO(c));
          s[2 * f + 1] += H2D(HI(c));
        }
      }
      if (a + 2 <= ae) {
        const float p0 = g->bo_p[a], p1 = g->bo_p[a + 1];
        const float *r0 = w->wv + (size_t)g->bo_v[a] * SB;
        const float *r1 = w->wv + (size_t)g->bo_v[a + 1] * SB;
        float *g0 = w->gam + (size_t)g->bo_pdf[a] * SB;
        float *g1 = w->gam + (size_t)g->bo_pdf[a + 1] * SB;
        FORF {
          const VF f0 = p0 * LDF(r0 + f * 2 * KB_VW);
          const VF f1 = p1 * LDF(r1 + f * 2 * KB_VW);
          STF(g0 + f * 2 * KB_VW, LDF(g0 + f * 2 * KB_VW) + f0 * occ[f]);
          STF(g1 + f * 2 * KB_VW, LDF(g1 + f * 2 * KB_VW) + f1 * occ[f]);
          const VF c = f0 + f1;
          s[2 * f] += H2D(LO(c));
          s[2 * f + 1] += H2D(HI(c));
        }
        a += 2;
      }
      if (a < ae) {
        const float p0 = g->bo_p[a];
        const float *r0 = w->wv + (size_t)g->bo_v[a] * SB;
        float *g0 = w->gam + (size_t)g->bo_pdf[a] * SB;
        FORF {
          const VF f0 = p0 * LDF(r0 + f * 2 * KB_VW);
          STF(g0 + f * 2 * KB_VW, LDF(g0 + f * 2 * KB_VW) + f0 * occ[f]);
          s[2 * f] += H2D(LO(f0));
          s[2 * f + 1] += H2D(HI(f0));
        }
      }
      const double ini = (double)g->init[i];
      float *br = w->beta + (size_t)i * SB;
      FORQ {
        const VH bd = D2H(s[q] * rtot[q]);
        STH(br + q * KB_VW, bd);
        ib[q] += ini * H2D(bd);
      }
    }
    if (t == 0 && checks) {
      double ab = 0.0, gs = 0.0;
      for (int32_t i = 0; i < H; i++)
        for (int k = 0; k < nb; k++)
          ab += (double)at[(size_t)i * SB + k] * (double)w->beta[(size_t)i * SB + k];
      for (int32_t n = 0; n < D; n++)
        for (int k = 0; k < nb; k++) gs += (double)w->gam[(size_t)n * SB + k];
      checks[0] = ab;
      checks[1] = gs;
    }
    /* the posteriors of frame t */
    for (int k = 0; k < nb; k++) {
      float *dr = io->deriv + ((size_t)(b0 + k) * T + t) * D;
      if (t < len[k]) {
        for (int32_t n = 0; n < D; n++) dr[n] = w->gam[(size_t)n * SB + k];
      } else {
        for (int32_t n = 0; n < D; n++) dr[n] = 0.0f;
      }
    }
    /* beta = beta' + leaky (init . beta') */
    VH tb[NV];
    FORQ tb[q] = io->leaky_f * D2H(ib[q]);
    for (int32_t i = 0; i < H; i++) {
      float *br = w->beta + (size_t)i * SB;
      FORQ STH(br + q * KB_VW, LDH(br + q * KB_VW) + tb[q]);
    }
  }
}

#undef VD
#undef VF
#undef VH
#undef NV
#undef NF
#undef LDF
#undef LDH
#undef LDD
#undef STF
#undef STH
#undef STD
#undef H2D
#undef D2H
#undef LO
#undef HI
#undef FORQ
#undef FORF
#undef KB_GATHER_SUM
#endif /* KB_DEN_TEMPLATE */
