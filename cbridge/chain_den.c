/*
 * Kaldi's chain denominator forward-backward (DenominatorComputation::Forward
 * + Backward) on the CPU: see kbind_native.h (kb_chain_den_forward_backward)
 * for the contract and kbind/chain/denominator.py for the math.
 *
 * Design (performance is the point; one thread should run a pass over the
 * arcs at a good fraction of the machine's FMA rate):
 *
 *  - The sequences are processed in blocks of SB = 16 or 32 lanes (32 with
 *    AVX2/AVX-512 when there are enough sequences for every thread). Every
 *    per-state quantity is stored as [state][lane], so each arc touches one
 *    contiguous row of SB floats (one or two zmm registers) and the innermost
 *    "loop over sequences" is a fixed-width SIMD vector (GCC vector
 *    extensions). exp(nnet_output) of a frame is computed when a pass needs
 *    it, transposed as x[pdf][lane] (a vectorised exp, within 2 ulp of expf;
 *    kept for one frame only: with thousands of pdfs, all frames' x is tens
 *    of MB, and reading it back cost more than computing it twice).
 *  - A block runs all frames of its forward and backward pass on its own:
 *    blocks are independent, so OpenMP runs blocks in parallel with no
 *    synchronisation per frame (threads <= number of blocks).
 *  - Arcs are grouped into "virtual destinations" v = (dst, pdf): all arcs into
 *    v consume x(t, pdf_v). Forward: a pull over the arcs entering each state,
 *    accumulated in registers: u(t+1, v) = sum_{a in v} p_a alpha'(t, src_a),
 *    alpha(t+1, j) = sum_{v into j} u(t+1, v) x(t, pdf_v) / tot(t). The leak is
 *    folded into the groups: alpha' = alpha + leaky init tot is never stored;
 *    u(t+1, v) = sum_{a in v} p_a alpha(t, src_a) + vleak(v) tot(t) with
 *    vleak(v) = sum_{a in v} p_a leaky init(src_a) (no pass over the states
 *    to add the leak).
 *  - The backward needs alpha(t): the forward keeps alpha every K frames
 *    (checkpoints, copied from the rolling buffer of the forward with
 *    non-temporal stores; K frames of alphas fill about KB_DEN_SEG_BYTES), and the
 *    backward recomputes the K - 1 other frames of a segment from its
 *    checkpoint (the same operations: bitwise the same alphas) just before it
 *    needs them, while they are in the cache. Small graphs get long segments
 *    (little memory for long sequences); frames of more than 256 KiB (the
 *    2227-state graph with 32 lanes) get K = 1, every frame kept, with the
 *    next frame prefetched into L2 during the backward: measured faster
 *    there than recomputing (K = 2 or 3).
 *  - Backward, per frame: one pass over the arcs, by source state i (states
 *    in order of their number of arcs, so that the loop over a state's arcs
 *    has a predictable trip count), as Kaldi's: with r_a = p_a beta(t+1, dst_a),
 *      beta'(t, i) = sum_{a leaving i} r_a x(t, pdf_a) / tot(t), accumulated
 *      in registers, and
 *      gamma(t, n) = x(t, n) / tot(t) sum_{arcs a with pdf n} r_a alpha'(t, src_a),
 *      a read-modify-write of gamma's row pdf_a per arc (D rows: in L1; the
 *      arcs leaving a state of a den graph usually have distinct pdfs, so
 *      consecutive updates seldom touch the same row).
 *    beta'(t) is written to a second buffer (beta(t+1) is read meanwhile),
 *    then the leak is added to it (beta = beta' + leaky init . beta') in a
 *    pass over the states, and the two swap. (Earlier designs, measured
 *    slower: per-group products w(v) = beta(t+1, dst_v) x(t, pdf_v) in their
 *    own pass with gamma from u(t+1, v) recomputed from alpha(t), a third pass
 *    over the arcs; or u(t+1, v) of every frame kept by the forward, which
 *    doubles what goes to and from memory.)
 *  - Arithmetic: float32 storage of alpha, beta', tot and gamma, as Kaldi.
 *    The per-arc products and the per-state sums over arcs are float
 *    multiply-adds (two interleaved accumulators; Kaldi forms each product in
 *    float and sums them in double); the sums over states (tot, the leaky
 *    terms, the total probability) are float over runs of 16 states, then
 *    double; log-probs in double. The differences to Kaldi's CPU code and to
 *    the torch path are of the order of float rounding (spec section 8;
 *    tests/chain/test_denominator_c.py: about 1e-6 on the posteriors, 1e-7
 *    relative on log-probs). Each lane does the same operations whatever the
 *    other lanes hold and whatever the block width, so a sequence's results do
 *    not depend on the batch it is in, on the number of threads, or on the
 *    other sequences' lengths (on one instruction set).
 *  - Instruction sets: the block kernel is compiled for baseline (16 lanes),
 *    AVX2 and AVX-512 (16 and 32 lanes each) by including this file again
 *    with KB_DEN_TEMPLATE defined, with target attributes, and picked at run
 *    time (__builtin_cpu_supports), since the extension is built without
 *    -march.
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

#define KB_DEN_SB_MAX 32 /* lanes (sequences) per block: 16 or 32 */
#define KB_DEN_ALIGN 64
#define KB_DEN_RUN 16 /* states per float partial sum of a sum over states */
#ifndef KB_DEN_SEG_BYTES
#define KB_DEN_SEG_BYTES (1 << 19) /* alphas of one backward segment (a quarter of an L2) */
#endif

#define KB_LIMIT 30.0f

/* Index lists of the in-register transpose of VW x VW floats (KB_TRANSPOSE):
   stage h swaps, between rows i and i + h (bit h of i clear), the elements
   whose column has bit h set in row i with those whose column has it clear
   in row i + h; the stages h = VW/2 .. 1 together transpose. */
#define KB_TI16_8 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23
#define KB_TJ16_8 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31
#define KB_TI16_4 0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27
#define KB_TJ16_4 4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31
#define KB_TI16_2 0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29
#define KB_TJ16_2 2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31
#define KB_TI16_1 0, 16, 2, 18, 4, 20, 6, 22, 8, 24, 10, 26, 12, 28, 14, 30
#define KB_TJ16_1 1, 17, 3, 19, 5, 21, 7, 23, 9, 25, 11, 27, 13, 29, 15, 31
#define KB_TI8_4 0, 1, 2, 3, 8, 9, 10, 11
#define KB_TJ8_4 4, 5, 6, 7, 12, 13, 14, 15
#define KB_TI8_2 0, 1, 8, 9, 4, 5, 12, 13
#define KB_TJ8_2 2, 3, 10, 11, 6, 7, 14, 15
#define KB_TI8_1 0, 8, 2, 10, 4, 12, 6, 14
#define KB_TJ8_1 1, 9, 3, 11, 5, 13, 7, 15
#define KB_TI4_2 0, 1, 4, 5
#define KB_TJ4_2 2, 3, 6, 7
#define KB_TI4_1 0, 4, 2, 6
#define KB_TJ4_1 1, 5, 3, 7

/*
 * A "pull" out[r] = sum_{a in arcs(r)} p_a rows[idx_a] over R output rows,
 * laid out for the kernel: the rows in order of their number of arcs (stable),
 * so that runs of rows with the same count follow each other and the loop
 * over a row's arcs has a predictable trip count. Position k = 0..R-1 is row
 * ord[k], its arcs are idx/p[off[k] .. off[k+1]); runs: positions
 * run[b] .. run[b+1] (b < nrun) all have run_n[b] arcs.
 */
typedef struct {
  int32_t R, nrun;
  const int32_t *ord, *idx, *idx2, *run, *run_n;
  const int64_t *off;
  const float *p;
} kb_pull_plan;

typedef struct {
  int32_t *ord, *idx, *idx2, *run, *run_n;
  int64_t *off;
  float *p;
} kb_pull_plan_mem;

static void kb_pull_plan_free(kb_pull_plan_mem *m) {
  free(m->ord);
  free(m->idx);
  free(m->idx2);
  free(m->run);
  free(m->run_n);
  free(m->off);
  free(m->p);
  memset(m, 0, sizeof(*m));
}

/* Plan of the pull whose row r has arcs idx/idx2/p[roff[r] .. roff[r+1]) (idx2:
   a second index per arc, carried along). 0 when out of memory. */
static int kb_pull_plan_build(int32_t R, const int64_t *roff, const int32_t *idx,
                              const int32_t *idx2, const float *p, kb_pull_plan *pl,
                              kb_pull_plan_mem *m) {
  memset(m, 0, sizeof(*m));
  const int64_t A = roff[R];
  int32_t maxn = 0;
  for (int32_t r = 0; r < R; r++)
    if (roff[r + 1] - roff[r] > maxn) maxn = (int32_t)(roff[r + 1] - roff[r]);
  int64_t *cnt = calloc((size_t)maxn + 2, sizeof(int64_t));
  m->ord = malloc((size_t)(R ? R : 1) * sizeof(int32_t));
  m->off = malloc((size_t)(R + 1) * sizeof(int64_t));
  m->idx = malloc((size_t)(A ? A : 1) * sizeof(int32_t));
  m->idx2 = malloc((size_t)(A ? A : 1) * sizeof(int32_t));
  m->p = malloc((size_t)(A ? A : 1) * sizeof(float));
  m->run = malloc((size_t)(maxn + 2) * sizeof(int32_t));
  m->run_n = malloc((size_t)(maxn + 1) * sizeof(int32_t));
  if (!cnt || !m->ord || !m->off || !m->idx || !m->idx2 || !m->p || !m->run || !m->run_n) {
    free(cnt);
    kb_pull_plan_free(m);
    return 0;
  }
  for (int32_t r = 0; r < R; r++) cnt[roff[r + 1] - roff[r] + 1]++;
  int32_t nrun = 0;
  for (int32_t n = 0; n <= maxn; n++) {
    if (cnt[n + 1]) {
      m->run[nrun] = (int32_t)cnt[n];
      m->run_n[nrun] = n;
      nrun++;
    }
    cnt[n + 1] += cnt[n];
  }
  m->run[nrun] = R;
  for (int32_t r = 0; r < R; r++) m->ord[cnt[roff[r + 1] - roff[r]]++] = r;
  int64_t o = 0;
  for (int32_t k = 0; k < R; k++) {
    const int32_t r = m->ord[k];
    m->off[k] = o;
    for (int64_t a = roff[r]; a < roff[r + 1]; a++, o++) {
      m->idx[o] = idx[a];
      m->idx2[o] = idx2[a];
      m->p[o] = p[a];
    }
  }
  m->off[R] = o;
  free(cnt);
  pl->R = R;
  pl->nrun = nrun;
  pl->ord = m->ord;
  pl->idx = m->idx;
  pl->idx2 = m->idx2;
  pl->run = m->run;
  pl->run_n = m->run_n;
  pl->off = m->off;
  pl->p = m->p;
  return 1;
}

/* The graph, regrouped for the block kernel (built once per call). */
typedef struct {
  int32_t H, D, V;
  int64_t A;
  /* forward grouping: v = 0..V-1 sorted by (dst, pdf); arcs of v are
     fv_src/fv_p[v_off[v] .. v_off[v+1]) in source-then-arc order. */
  const int32_t *v_pdf;
  const int64_t *v_off;
  const int32_t *fv_src;
  const float *fv_p;
  const int64_t *j_voff; /* groups of destination j: j_voff[j] .. j_voff[j+1] */
  const float *init; /* [H] */
  const float *linit; /* [H]: (float)leaky * init (float product, as torch) */
  const float *vleak; /* [V]: sum_{a in v} p_a linit(src_a), the leak into group v */
  kb_pull_plan bwd;   /* rows i = source states: idx = dst_a, idx2 = pdf_a, p = p_a */
} kb_den_graph;

typedef struct {
  const float *y;        /* [S][T][D] */
  const int64_t *lengths; /* [S] or NULL */
  int32_t S, T;
  int32_t K; /* frames per checkpoint segment (backward) */
  float leaky_f;
  float *logprob; /* [S] */
  float *deriv;   /* [S][T][D] or NULL */
} kb_den_io;

/* Scratch of one block (one worker thread), for SB lanes and segments of K
   frames. */
typedef struct {
  float *ck;     /* [(T-1)/K + 1][H][SB]: alpha' of frames 0, K, 2K, ... (backward) */
  float *al;     /* [max(K, 2)][H][SB]: alpha' of the other frames of a segment
                    (backward), or of frames t-1, t (forward) */
  float *tot;    /* [T+1][SB]: sum of un-leaked alphas */
  double *tp;    /* [T+1][SB]: sum of alpha' (where a sequence ends) */
  float *x;      /* [D16][SB]: limited exp of the outputs of one frame (D16: D
                    rounded up to 16) */
  float *ytmp;   /* [SB][D rounded up to 16]: x of one frame, lane by lane */
  float *beta2;  /* [H][SB] (backward): beta and beta2 alternate as beta(t+1), beta'(t) */
  float *beta;   /* [H][SB] (backward) */
  float *gam;    /* [D][SB] (backward) */
} kb_den_work;

#define KB_DEN_NWORK 9

static void *kb_aligned(size_t n) {
  if (n == 0) n = KB_DEN_ALIGN;
  n = (n + KB_DEN_ALIGN - 1) / KB_DEN_ALIGN * KB_DEN_ALIGN; /* C11: a multiple */
  return aligned_alloc(KB_DEN_ALIGN, n);
}

static void kb_den_work_free(kb_den_work *w) {
  free(w->ck);
  free(w->al);
  free(w->tot);
  free(w->tp);
  free(w->x);
  free(w->ytmp);
  free(w->beta2);
  free(w->beta);
  free(w->gam);
  memset(w, 0, sizeof(*w));
}

/* Sizes (bytes) of the scratch arrays of one block, in kb_den_work order. */
static void kb_den_work_sizes(int32_t H, int32_t D, int32_t T, int32_t SB,
                              int32_t K, int backward, size_t sz[KB_DEN_NWORK]) {
  sz[0] = backward ? (size_t)((T - 1) / K + 1) * H * SB * sizeof(float) : 0;
  sz[1] = (size_t)(K > 2 ? K : 2) * H * SB * sizeof(float);
  sz[2] = (size_t)(T + 1) * SB * sizeof(float);
  sz[3] = (size_t)(T + 1) * SB * sizeof(double);
  sz[4] = (size_t)(D + 15) / 16 * 16 * SB * sizeof(float);
  sz[5] = (size_t)SB * ((D + 15) / 16 * 16) * sizeof(float);
  sz[6] = backward ? (size_t)H * SB * sizeof(float) : 0;
  sz[7] = backward ? (size_t)H * SB * sizeof(float) : 0;
  sz[8] = backward ? (size_t)D * SB * sizeof(float) : 0;
}

static size_t kb_den_work_bytes(int32_t H, int32_t D, int32_t T, int32_t SB,
                                int32_t K, int backward) {
  size_t sz[KB_DEN_NWORK], n = 0;
  kb_den_work_sizes(H, D, T, SB, K, backward, sz);
  for (int i = 0; i < KB_DEN_NWORK; i++) n += sz[i];
  return n;
}

static int kb_den_work_alloc(kb_den_work *w, int32_t H, int32_t D, int32_t T,
                             int32_t SB, int32_t K, int backward) {
  size_t sz[KB_DEN_NWORK];
  kb_den_work_sizes(H, D, T, SB, K, backward, sz);
  memset(w, 0, sizeof(*w));
  w->al = kb_aligned(sz[1]);
  w->tot = kb_aligned(sz[2]);
  w->tp = kb_aligned(sz[3]);
  w->x = kb_aligned(sz[4]);
  w->ytmp = kb_aligned(sz[5]);
  int ok = w->al && w->tot && w->tp && w->x && w->ytmp;
  if (backward) {
    w->ck = kb_aligned(sz[0]);
    w->beta2 = kb_aligned(sz[6]);
    w->beta = kb_aligned(sz[7]);
    w->gam = kb_aligned(sz[8]);
    ok = ok && w->ck && w->beta2 && w->beta && w->gam;
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
 * The block kernel, instantiated below once per instruction set and block
 * width by including this file again with KB_DEN_TEMPLATE defined: KB_VW =
 * floats per native vector (4 SSE2, 8 AVX2, 16 AVX-512), KB_SB = lanes per
 * block, KB_FN = the function's name, KB_ATTR = its target attribute. A row of
 * KB_SB lanes is KB_SB / KB_VW native vectors held in small arrays that the
 * compiler keeps in registers.
 */
#define KB_DEN_TEMPLATE
#define KB_ATTR
#define KB_VW 4
#define KB_SHUF_LO 0, 1
#define KB_SHUF_HI 2, 3
#define KB_SB 16
#define KB_FN kb_den_block_generic16
#include "chain_den.c"
#undef KB_SB
#undef KB_FN
#undef KB_SHUF_LO
#undef KB_SHUF_HI
#undef KB_VW
#undef KB_ATTR

#if defined(__GNUC__) && defined(__x86_64__)
#define KB_DEN_X86 1
#define KB_ATTR __attribute__((target("avx2,fma"), optimize("fp-contract=fast")))
#define KB_VW 8
#define KB_SHUF_LO 0, 1, 2, 3
#define KB_SHUF_HI 4, 5, 6, 7
#define KB_SB 16
#define KB_FN kb_den_block_avx2_16
#include "chain_den.c"
#undef KB_SB
#undef KB_FN
#define KB_SB 32
#define KB_FN kb_den_block_avx2_32
#include "chain_den.c"
#undef KB_SB
#undef KB_FN
#undef KB_SHUF_LO
#undef KB_SHUF_HI
#undef KB_VW
#undef KB_ATTR

#define KB_ATTR                                                                      \
  __attribute__((target("avx512f,avx512dq,avx512vl,avx2,fma"),                       \
                 optimize("fp-contract=fast")))
#define KB_VW 16
#define KB_SHUF_LO 0, 1, 2, 3, 4, 5, 6, 7
#define KB_SHUF_HI 8, 9, 10, 11, 12, 13, 14, 15
#define KB_SB 16
#define KB_FN kb_den_block_avx512_16
#include "chain_den.c"
#undef KB_SB
#undef KB_FN
#define KB_SB 32
#define KB_FN kb_den_block_avx512_32
#include "chain_den.c"
#undef KB_SB
#undef KB_FN
#undef KB_SHUF_LO
#undef KB_SHUF_HI
#undef KB_VW
#undef KB_ATTR
#endif
#undef KB_DEN_TEMPLATE

int kb_den_best_isa(void) {
  int best = 0;
#ifdef KB_DEN_X86
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) best = 1;
  if (best == 1 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
      __builtin_cpu_supports("avx512vl"))
    best = 2;
#endif
  return best;
}

/* 0 = baseline, 1 = AVX2, 2 = AVX-512; forced by isa >= 0 (clipped to what the
   CPU has). */
static int kb_den_pick_isa(int isa) {
  const int best = kb_den_best_isa();
  if (isa >= 0 && isa < best) return isa;
  return best;
}

/* The block width: 32 lanes (with AVX2/AVX-512) when there are more than 16
   sequences and the 32-lane blocks still give every thread one. */
static int32_t kb_den_pick_sb(int isa, int32_t S, int nt) {
  if (isa == 0 || S <= 16) return 16;
  const int32_t b32 = (S + 31) / 32, b16 = (S + 15) / 16;
  return b32 >= (nt < b16 ? nt : b16) ? 32 : 16;
}

static kb_den_block_fn kb_den_fn(int isa, int32_t sb) {
#ifdef KB_DEN_X86
  if (isa == 2) return sb == 32 ? kb_den_block_avx512_32 : kb_den_block_avx512_16;
  if (isa == 1) return sb == 32 ? kb_den_block_avx2_32 : kb_den_block_avx2_16;
#endif
  (void)isa;
  (void)sb;
  return kb_den_block_generic16;
}

/* Regroup the graph (see kb_den_graph). Returns KB_OK or an error. */
typedef struct {
  int32_t *v_pdf, *fv_src, *bo_dst, *bo_pdf;
  int64_t *v_off, *j_voff, *bo_off;
  float *fv_p, *bo_p;
  float *init, *linit, *vleak;
  kb_pull_plan_mem bwd;
} kb_den_graph_mem;

static void kb_den_graph_free(kb_den_graph_mem *m) {
  free(m->v_pdf);
  free(m->fv_src);
  free(m->bo_dst);
  free(m->bo_pdf);
  free(m->v_off);
  free(m->j_voff);
  free(m->bo_off);
  free(m->fv_p);
  free(m->bo_p);
  free(m->init);
  free(m->linit);
  free(m->vleak);
  kb_pull_plan_free(&m->bwd);
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
  m->v_pdf = malloc((size_t)(A ? A : 1) * sizeof(int32_t));
  m->v_off = malloc((size_t)(A + 1) * sizeof(int64_t));
  m->fv_src = malloc((size_t)(A ? A : 1) * sizeof(int32_t));
  m->fv_p = malloc((size_t)(A ? A : 1) * sizeof(float));
  m->j_voff = calloc((size_t)H + 1, sizeof(int64_t));
  m->bo_off = calloc((size_t)H + 1, sizeof(int64_t));
  m->bo_dst = malloc((size_t)(A ? A : 1) * sizeof(int32_t));
  m->bo_pdf = malloc((size_t)(A ? A : 1) * sizeof(int32_t));
  m->bo_p = malloc((size_t)(A ? A : 1) * sizeof(float));
  m->linit = malloc((size_t)H * sizeof(float));
  m->init = malloc((size_t)H * sizeof(float));
  int rc = KB_OK;
  if (!cnt || !ord1 || !ord2 || !a_src || !a_idx || !m->v_pdf ||
      !m->v_off || !m->fv_src || !m->fv_p || !m->j_voff || !m->bo_off || !m->bo_dst || !m->bo_pdf ||
      !m->bo_p || !m->linit || !m->init) {
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
        m->v_pdf[V] = pdf;
        m->v_off[V] = r;
        m->j_voff[dst + 1]++;
        V++;
        pd = dst;
        pp = pdf;
      }
      m->fv_src[r] = a_src[k];
      m->fv_p[r] = tprob[a_idx[k]];
    }
    m->v_off[V] = A;
    for (int32_t j = 0; j < H; j++) m->j_voff[j + 1] += m->j_voff[j];
    g->V = V;
  }
  /* backward: arcs by source state, in (dst, pdf) order within a state (stable
     counting sort of the forward order) */
  for (int64_t r = 0; r < A; r++) m->bo_off[a_src[ord2[r]] + 1]++;
  for (int32_t i = 0; i < H; i++) m->bo_off[i + 1] += m->bo_off[i];
  memcpy(cnt, m->bo_off, (size_t)H * sizeof(int64_t));
  for (int64_t r = 0; r < A; r++) {
    int32_t k = ord2[r];
    int64_t pos = cnt[a_src[k]]++;
    m->bo_dst[pos] = tstate[a_idx[k]];
    m->bo_pdf[pos] = tpdf[a_idx[k]];
    m->bo_p[pos] = tprob[a_idx[k]];
  }
  memcpy(m->init, init, (size_t)H * sizeof(float)); /* the index outlives the caller's array */
  for (int32_t i = 0; i < H; i++) m->linit[i] = leaky_f * init[i];
  m->vleak = malloc((size_t)(g->V ? g->V : 1) * sizeof(float));
  if (!m->vleak) {
    rc = kb_fail(err, errlen, KB_ENOMEM, "out of memory building the den graph index");
    goto done;
  }
  for (int32_t v = 0; v < g->V; v++) {
    float c = 0.0f;
    for (int64_t r = m->v_off[v]; r < m->v_off[v + 1]; r++) c += m->fv_p[r] * m->linit[m->fv_src[r]];
    m->vleak[v] = c;
  }
  g->H = H;
  g->D = D;
  g->A = A;
  g->v_pdf = m->v_pdf;
  g->v_off = m->v_off;
  g->fv_src = m->fv_src;
  g->fv_p = m->fv_p;
  g->j_voff = m->j_voff;
  g->init = m->init;
  g->linit = m->linit;
  g->vleak = m->vleak;
  /* the backward's per-state pull */
  if (!kb_pull_plan_build(H, m->bo_off, m->bo_dst, m->bo_pdf, m->bo_p, &g->bwd, &m->bwd))
    rc = kb_fail(err, errlen, KB_ENOMEM, "out of memory building the den graph index");
  /* (the plan holds the backward's arcs now) */
  free(m->bo_off);
  free(m->bo_dst);
  free(m->bo_pdf);
  free(m->bo_p);
  m->bo_off = NULL;
  m->bo_dst = NULL;
  m->bo_pdf = NULL;
  m->bo_p = NULL;
done:
  free(cnt);
  free(ord1);
  free(ord2);
  free(a_src);
  free(a_idx);
  if (rc != KB_OK) kb_den_graph_free(m);
  return rc;
}

struct kb_den_index {
  kb_den_graph g;
  kb_den_graph_mem m;
  float leaky_f;
};

void kb_den_index_free(kb_den_index *index) {
  if (!index) return;
  kb_den_graph_free(&index->m);
  free(index);
}

int kb_den_index_new(int32_t num_states, int32_t num_pdfs, const int32_t *forward_transitions,
                     int64_t num_transitions, const float *transitions_prob,
                     const int32_t *transitions_pdf, const int32_t *transitions_hmm_state,
                     const float *initial_probs, double leaky_hmm_coefficient,
                     kb_den_index **out, char *err, size_t errlen) {
  const int32_t H = num_states, D = num_pdfs;
  if (!out) return kb_fail(err, errlen, KB_EINVAL, "missing output pointer");
  *out = NULL;
  if (H <= 0 || D <= 0)
    return kb_fail(err, errlen, KB_EINVAL, "den graph sizes must be positive: %d states, %d pdfs",
                   (int)H, (int)D);
  if (num_transitions < 0)
    return kb_fail(err, errlen, KB_EINVAL, "negative number of transitions %lld",
                   (long long)num_transitions);
  if (!(leaky_hmm_coefficient > 0.0 && leaky_hmm_coefficient < 1.0))
    return kb_fail(err, errlen, KB_EINVAL,
                   "leaky_hmm_coefficient must be in (0, 1) (Kaldi asserts this); got %g",
                   leaky_hmm_coefficient);
  if (!forward_transitions || !initial_probs ||
      (num_transitions > 0 && (!transitions_prob || !transitions_pdf || !transitions_hmm_state)))
    return kb_fail(err, errlen, KB_EINVAL, "missing input or output array");
  kb_den_index *ix = calloc(1, sizeof(*ix));
  if (!ix) return kb_fail(err, errlen, KB_ENOMEM, "out of memory");
  ix->leaky_f = (float)leaky_hmm_coefficient;
  int rc = kb_den_graph_build(H, D, forward_transitions, num_transitions, transitions_prob,
                              transitions_pdf, transitions_hmm_state, initial_probs, ix->leaky_f,
                              &ix->g, &ix->m, err, errlen);
  if (rc != KB_OK) {
    free(ix);
    return rc;
  }
  *out = ix;
  return KB_OK;
}

int kb_chain_den_forward_backward_index(const kb_den_index *index, int32_t num_sequences,
                                        int32_t num_frames, const float *nnet_output,
                                        const int64_t *lengths, int32_t num_threads, int32_t isa,
                                        float *logprob, float *deriv, double *checks,
                                        int64_t *scratch_bytes, char *err, size_t errlen) {
  if (!index) return kb_fail(err, errlen, KB_EINVAL, "missing den graph index");
  const int32_t H = index->g.H, D = index->g.D, S = num_sequences, T = num_frames;
  if (S <= 0 || T <= 0)
    return kb_fail(err, errlen, KB_EINVAL,
                   "nnet_output must have at least one sequence and one frame; got %d "
                   "sequences, %d frames", (int)S, (int)T);
  if (!nnet_output || !logprob) return kb_fail(err, errlen, KB_EINVAL, "missing input or output array");
  if (lengths) {
    for (int32_t s = 0; s < S; s++)
      if (lengths[s] < 1 || lengths[s] > T)
        return kb_fail(err, errlen, KB_EINVAL,
                       "length %lld of sequence %d out of range [1, %d] (the padded number of "
                       "frames)", (long long)lengths[s], (int)s, (int)T);
  }
  if ((double)T * D * KB_DEN_SB_MAX > 1e12 || (double)T * index->g.A * KB_DEN_SB_MAX > 1e12)
    return kb_fail(err, errlen, KB_EINVAL, "sizes too large: %d frames, %d states", (int)T,
                   (int)H);
  int rc = KB_OK;

  const kb_den_graph g = index->g;
  kb_den_io io = {nnet_output, lengths, S, T, 1, index->leaky_f, logprob, deriv};
  int nt = 1;
#ifdef _OPENMP
  nt = num_threads > 0 ? num_threads : omp_get_max_threads();
#endif
  const int isa_used = kb_den_pick_isa(isa);
  const int32_t SB = kb_den_pick_sb(isa_used, S, nt);
  const int32_t nblocks = (S + SB - 1) / SB;
  kb_den_block_fn fn = kb_den_fn(isa_used, SB);
  {
    /* segment length: K frames of alphas (H rows of SB floats each) in about
       KB_DEN_SEG_BYTES, so that a segment stays in the L2 cache */
    int64_t k = (int64_t)KB_DEN_SEG_BYTES / ((int64_t)H * SB * (int64_t)sizeof(float) + 1);
    io.K = (int32_t)(k < 1 ? 1 : (k > T ? T : k));
  }
  double *bchecks = calloc((size_t)nblocks * 2, sizeof(double));
  if (!bchecks) return kb_fail(err, errlen, KB_ENOMEM, "out of memory");
  int nomem = 0;
#ifdef _OPENMP
  if (nt > nblocks) nt = nblocks;
#pragma omp parallel num_threads(nt) reduction(| : nomem)
  {
#endif
    kb_den_work w;
    int have = kb_den_work_alloc(&w, H, D, T, SB, io.K, deriv != NULL);
    /* every thread must reach the worksharing loop, allocated or not */
#ifdef _OPENMP
#pragma omp for schedule(dynamic, 1)
#endif
    for (int32_t b = 0; b < nblocks; b++) {
      if (!have) {
        nomem = 1;
        continue;
      }
      int32_t b0 = b * SB;
      int32_t nb = S - b0 < SB ? S - b0 : SB;
      fn(&g, &io, &w, b0, nb, bchecks + 2 * b);
    }
    if (have) kb_den_work_free(&w);
#ifdef _OPENMP
  }
#endif
  if (nomem) {
    rc = kb_fail(err, errlen, KB_ENOMEM,
                 "out of memory allocating the den forward-backward scratch (%zu bytes per "
                 "thread)", kb_den_work_bytes(H, D, T, SB, io.K, deriv != NULL));
  } else if (checks) {
    checks[0] = checks[1] = 0.0;
    for (int32_t b = 0; b < nblocks; b++) {
      checks[0] += bchecks[2 * b];
      checks[1] += bchecks[2 * b + 1];
    }
  }
  if (scratch_bytes) {
    /* while the blocks run: per worker, kb_den_work; the graph index: per arc
       v_pdf, fv_src, fv_p, plan idx, idx2 and p (4 bytes), v_off (8); per
       state j_voff, plan off (8), init, linit, plan ord (4); vleak (4 per group);
       the block checks (16 per block). (The build's temporaries are freed
       before; they are smaller for T * SB > 4.) */
    const int64_t A = g.A;
    scratch_bytes[0] = (int64_t)kb_den_work_bytes(H, D, T, SB, io.K, deriv != NULL) * nt +
                       A * 32 + ((int64_t)H + 1) * 28 + (int64_t)g.V * 4 +
                       (int64_t)(g.bwd.nrun + 1) * 8 + (int64_t)nblocks * 16;
  }
  free(bchecks);
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
  if (num_sequences <= 0 || num_frames <= 0)
    return kb_fail(err, errlen, KB_EINVAL,
                   "nnet_output must have at least one sequence and one frame; got %d "
                   "sequences, %d frames", (int)num_sequences, (int)num_frames);
  kb_den_index *ix = NULL;
  int rc = kb_den_index_new(num_states, num_pdfs, forward_transitions, num_transitions,
                            transitions_prob, transitions_pdf, transitions_hmm_state,
                            initial_probs, leaky_hmm_coefficient, &ix, err, errlen);
  if (rc != KB_OK) return rc;
  rc = kb_chain_den_forward_backward_index(ix, num_sequences, num_frames, nnet_output, lengths,
                                           num_threads, isa, logprob, deriv, checks,
                                           scratch_bytes, err, errlen);
  kb_den_index_free(ix);
  return rc;
}

#else /* KB_DEN_TEMPLATE: the block kernel for one vector width and block width */

#define KB_CAT2(a, b) a##b
#define KB_CAT(a, b) KB_CAT2(a, b)
#define VF KB_CAT(kb_vf, KB_VW) /* KB_VW floats: one native register */
#define VI KB_CAT(kb_vi, KB_VW) /* KB_VW int32 */
#define VD KB_CAT(kb_vd, KB_VW) /* KB_VW / 2 doubles */
#define VH KB_CAT(kb_vh, KB_VW) /* KB_VW / 2 floats: half a register */
#define NF (KB_SB / KB_VW)      /* float vectors per row of lanes */
typedef float VF __attribute__((vector_size(KB_VW * 4), aligned(4)));
typedef int32_t VI __attribute__((vector_size(KB_VW * 4), aligned(4)));
typedef double VD __attribute__((vector_size(KB_VW * 4), aligned(8)));
typedef float VH __attribute__((vector_size(KB_VW * 2), aligned(4)));
#define LDF(p) (*(const VF *)(p))
#define STF(p, v) (*(VF *)(p) = (v))
/* a store that bypasses the caches: no read for ownership (rows read again
   only much later) */
#if KB_VW == 16
#define NTSTF(p, v) _mm512_stream_ps((p), (__m512)(v))
#elif KB_VW == 8
#define NTSTF(p, v) _mm256_stream_ps((p), (__m256)(v))
#else
#define NTSTF(p, v) STF(p, v)
#endif
/* float <-> double conversions: GCC lowers __builtin_convertvector between
   8 floats and 8 doubles as four 4-wide conversions, so use the instructions */
#if KB_VW == 16
#define H2D(v) ((VD)_mm512_cvtps_pd((__m256)(v)))
#define D2H(v) ((VH)_mm512_cvtpd_ps((__m512d)(v)))
#elif KB_VW == 8
#define H2D(v) ((VD)_mm256_cvtps_pd((__m128)(v)))
#define D2H(v) ((VH)_mm256_cvtpd_ps((__m256d)(v)))
#else
#define H2D(v) __builtin_convertvector((v), VD)
#define D2H(v) __builtin_convertvector((v), VH)
#endif
#define LO(v) __builtin_shufflevector((v), (v), KB_SHUF_LO)
#define HI(v) __builtin_shufflevector((v), (v), KB_SHUF_HI)
#define FORF _Pragma("GCC unroll 16") for (int f = 0; f < NF; f++)
/* dacc[2 NF] (double) += v[NF] (float), lane by lane */
#define ADD_D(dacc, v)                 \
  FORF {                               \
    dacc[2 * f] += H2D(LO((v)[f]));     \
    dacc[2 * f + 1] += H2D(HI((v)[f])); \
  }
/* out[NF] (float) = (float) dacc[2 NF] */
#define D2F(out, dacc) \
  FORF(out)[f] = __builtin_shufflevector(D2H(dacc[2 * f]), D2H(dacc[2 * f + 1]), KB_SHUF_LO, KB_SHUF_HI)

/*
 * acc[NF] (float) = sum over positions a in [a0, a1) of p[a] * rows[idx[a]]
 * (rows of SB floats): multiply-adds into two accumulators (even and odd
 * positions), added at the end.
 */
#define KB_PULL(acc, a0, a1, p, idx, rows)                                  \
  do {                                                                      \
    VF e_[NF], o_[NF];                                                      \
    FORF e_[f] = o_[f] = (VF){0};                                           \
    int64_t a_ = (a0);                                                      \
    const int64_t ae_ = (a1);                                               \
    for (; a_ + 2 <= ae_; a_ += 2) {                                        \
      const float p0_ = (p)[a_], p1_ = (p)[a_ + 1];                         \
      const float *r0_ = (rows) + (size_t)(idx)[a_] * KB_SB;                \
      const float *r1_ = (rows) + (size_t)(idx)[a_ + 1] * KB_SB;            \
      FORF {                                                                \
        e_[f] += p0_ * LDF(r0_ + f * KB_VW);                                \
        o_[f] += p1_ * LDF(r1_ + f * KB_VW);                                \
      }                                                                     \
    }                                                                       \
    if (a_ < ae_) {                                                         \
      const float p0_ = (p)[a_];                                            \
      const float *r0_ = (rows) + (size_t)(idx)[a_] * KB_SB;                \
      FORF e_[f] += p0_ * LDF(r0_ + f * KB_VW);                             \
    }                                                                       \
    FORF(acc)[f] = e_[f] + o_[f];                                           \
  } while (0)

/* one stage of the in-register transpose of r[0 .. KB_VW) (see KB_TI16_8) */
#define KB_TSTAGE(r, h, I, J)                                  \
  _Pragma("GCC unroll 16") for (int i_ = 0; i_ < KB_VW; i_++) { \
    if (!(i_ & (h))) {                                          \
      const VF a_ = (r)[i_], b_ = (r)[i_ + (h)];                \
      (r)[i_] = __builtin_shufflevector(a_, b_, I);             \
      (r)[i_ + (h)] = __builtin_shufflevector(a_, b_, J);       \
    }                                                           \
  }
#define KB_TRANSPOSE KB_CAT(KB_FN, _transpose)
KB_ATTR static inline void KB_TRANSPOSE(VF *r) {
#if KB_VW == 16
  KB_TSTAGE(r, 8, KB_TI16_8, KB_TJ16_8);
  KB_TSTAGE(r, 4, KB_TI16_4, KB_TJ16_4);
  KB_TSTAGE(r, 2, KB_TI16_2, KB_TJ16_2);
  KB_TSTAGE(r, 1, KB_TI16_1, KB_TJ16_1);
#elif KB_VW == 8
  KB_TSTAGE(r, 4, KB_TI8_4, KB_TJ8_4);
  KB_TSTAGE(r, 2, KB_TI8_2, KB_TJ8_2);
  KB_TSTAGE(r, 1, KB_TI8_1, KB_TJ8_1);
#else
  KB_TSTAGE(r, 2, KB_TI4_2, KB_TJ4_2);
  KB_TSTAGE(r, 1, KB_TI4_1, KB_TJ4_1);
#endif
}

#define KB_EXP KB_CAT(KB_FN, _exp)
/* exp(v) for v in [-30, 30] (Cephes' expf: range reduction by ln 2 in two
   parts, degree-7 polynomial; within 2 ulp of expf). */
KB_ATTR static inline VF KB_EXP(VF v) {
  const VF magic = (VF){0} + 12582912.0f; /* 1.5 * 2^23: rounds to an integer */
  const VF tq = v * 1.44269504088896341f + magic;
  const VF n = tq - magic;
  const VI ni = (VI)tq - (VI)magic;
  VF r = v - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  const VF z = r * r;
  VF q = 1.9875691500e-4f * r + 1.3981999507e-3f;
  q = q * r + 8.3334519073e-3f;
  q = q * r + 4.1665795894e-2f;
  q = q * r + 1.6666665459e-1f;
  q = q * r + 5.0000001201e-1f;
  q = q * z + r + 1.0f;
  return q * (VF)((ni + 127) << 23);
}
#define KB_FSTEP KB_CAT(KB_FN, _fstep)
/*
 * One forward frame: alpha(t) (without the leak) into at from alpha(t-1) (pa,
 * also without it), tot(t-1) (ptot), x(t-1) (xt) and the scale 1 / tot(t-1)
 * (scl). The leak enters through the groups: sum_{a in v} p_a alpha'(t-1,
 * src_a) = sum_{a in v} p_a alpha(t-1, src_a) + vleak(v) tot(t-1). tot(t)
 * (tott, SB floats) is computed and stored when compute_tot (else it is
 * known: a recomputation does the same operations, so gives the same alphas).
 * A copy of alpha(t) goes to copy (if not NULL) through non-temporal stores.
 */
KB_ATTR static inline __attribute__((always_inline)) void KB_FSTEP(
    const kb_den_graph *g, const float *pa, const float *ptot, float *at, const float *xt,
    const float *scl, float *tott, int compute_tot, float *copy) {
  const int32_t H = g->H;
  VF scale[NF], pt[NF], run[NF];
  VD tacc[2 * NF];
  FORF {
    scale[f] = LDF(scl + f * KB_VW);
    pt[f] = LDF(ptot + f * KB_VW);
    run[f] = (VF){0};
    tacc[2 * f] = tacc[2 * f + 1] = (VD){0};
  }
  int64_t v = 0;
  for (int32_t j = 0; j < H; j++) {
    /* alpha(t, j) = sum_{v into j} u(v) x(t-1, pdf_v) / tot(t-1),
       u(v) = sum_{a in v} p_a alpha'(t-1, src_a) */
    VF acc[NF];
    FORF acc[f] = (VF){0};
    const int64_t ve = g->j_voff[j + 1];
    for (; v < ve; v++) {
      const float *xr = xt + (size_t)g->v_pdf[v] * KB_SB;
      const float vl = g->vleak[v];
      VF u[NF];
      KB_PULL(u, g->v_off[v], g->v_off[v + 1], g->fv_p, g->fv_src, pa);
      FORF acc[f] += (u[f] + vl * pt[f]) * LDF(xr + f * KB_VW);
    }
    float *ar = at + (size_t)j * KB_SB;
    FORF {
      const VF al = acc[f] * scale[f];
      STF(ar + f * KB_VW, al);
      if (copy) NTSTF(copy + (size_t)j * KB_SB + f * KB_VW, al);
      run[f] += al;
    }
    if (compute_tot && (j + 1) % KB_DEN_RUN == 0) {
      ADD_D(tacc, run);
      FORF run[f] = (VF){0};
    }
  }
  if (compute_tot) {
    VF totf[NF];
    ADD_D(tacc, run);
    D2F(totf, tacc);
    FORF STF(tott + f * KB_VW, totf[f]);
  }
}

#define KB_XFRAME KB_CAT(KB_FN, _xframe)
/*
 * x(t, n, lane) = exp(limit(y(t, n))) of one frame t of the block's lanes
 * into xt ([D][SB]); 1 (neutral) past a sequence's end and in padding lanes.
 * Computed when a pass needs it (twice per frame: forward and backward),
 * not kept for all frames: for large D (thousands of pdfs) the [T][D][SB]
 * array is tens of MB, and reading it back from memory cost more than the
 * exps. The lanes' rows of exps go to the tile ytmp[lane][n] (rows padded
 * to D16 = D rounded up to 16), then are transposed into xt (D16 rows) by
 * blocks of KB_VW x KB_VW in registers.
 */
KB_ATTR static void KB_XFRAME(const kb_den_io *io, float *ytmp, int32_t D, int32_t b0,
                              int32_t nb, const int32_t *len, int32_t t, float *xt) {
  const int32_t T = io->T, D16 = (D + 15) / 16 * 16;
  for (int k = 0; k < KB_SB; k++) {
    float *yt = ytmp + (size_t)k * D16;
    if (k < nb && t < len[k]) {
      const float *yr = io->y + ((size_t)(b0 + k) * T + t) * D;
      for (int32_t n = 0; n < D; n++) {
        float v = yr[n];
        yt[n] = (v >= -KB_LIMIT) ? (v > KB_LIMIT ? KB_LIMIT : v) : -KB_LIMIT;
      }
      for (int32_t n = D; n < D16; n++) yt[n] = 0.0f;
      for (int32_t n = 0; n < D16; n += KB_VW) STF(yt + n, KB_EXP(LDF(yt + n)));
    } else {
      for (int32_t n = 0; n < D16; n++) yt[n] = 1.0f;
    }
  }
  for (int32_t n0 = 0; n0 < D16; n0 += KB_VW)
    for (int k0 = 0; k0 < KB_SB; k0 += KB_VW) {
      VF r[KB_VW];
      _Pragma("GCC unroll 16") for (int q = 0; q < KB_VW; q++)
        r[q] = LDF(ytmp + (size_t)(k0 + q) * D16 + n0);
      KB_TRANSPOSE(r);
      _Pragma("GCC unroll 16") for (int q = 0; q < KB_VW; q++)
        STF(xt + (size_t)(n0 + q) * KB_SB + k0, r[q]);
    }
}

/*
 * One block of up to KB_SB sequences starting at b0 (nb of them real).
 * checks[0] = sum alpha'(0) beta'(0), checks[1] = sum gamma(0) over the real
 * lanes (backward only).
 */
KB_ATTR static void KB_FN(const kb_den_graph *g, const kb_den_io *io, kb_den_work *w,
                          int32_t b0, int32_t nb, double *checks) {
  enum { SB = KB_SB };
  const int32_t H = g->H, D = g->D, T = io->T, K = io->K;
  const int backward = io->deriv != NULL;
  const size_t HS = (size_t)H * SB;
  int32_t len[SB];
  for (int k = 0; k < SB; k++) {
    int32_t L = T;
    if (k < nb && io->lengths) L = (int32_t)io->lengths[b0 + k];
    len[k] = L;
  }

  /* ---------------- forward ----------------
     alpha of frame t is written to the rolling buffer al[t & 1], which the
     next frame reads, and when t % K == 0 (and the backward follows) copied
     to checkpoint t / K through non-temporal stores: writing the checkpoints
     through the cache reads each line from memory first (measured 11% slower
     on the 2227-state graph, where every frame is kept). */
#define KB_ALPHA_AT(t) (w->al + (size_t)((t) & 1) * HS)
  {
    float *alpha0 = KB_ALPHA_AT(0);
    double s = 0.0;
    for (int32_t j = 0; j < H; j++) s += (double)g->init[j];
    const float tot0 = (float)s;
    double tp = 0.0;
    for (int32_t j = 0; j < H; j++) {
      for (int k = 0; k < SB; k++) alpha0[(size_t)j * SB + k] = g->init[j];
      tp += (double)(g->init[j] + g->linit[j] * tot0);
    }
    for (int k = 0; k < SB; k++) {
      w->tot[k] = tot0;
      w->tp[k] = tp;
    }
    if (backward) memcpy(w->ck, alpha0, HS * sizeof(float));
  }
  float scl[SB];
  for (int32_t t = 1; t <= T; t++) {
    float *at = KB_ALPHA_AT(t);
    const float *pa = KB_ALPHA_AT(t - 1);
    /* Kaldi: BaseFloat arbitrary_scale = 1.0 / prev_tot */
    for (int k = 0; k < SB; k++) scl[k] = (float)(1.0 / (double)w->tot[(size_t)(t - 1) * SB + k]);
    KB_XFRAME(io, w->ytmp, D, b0, nb, len, t - 1, w->x);
    KB_FSTEP(g, pa, w->tot + (size_t)(t - 1) * SB, at, w->x, scl,
             w->tot + (size_t)t * SB, 1,
             backward && t % K == 0 && t < T ? w->ck + (size_t)(t / K) * HS : NULL);
    /* the sum of alpha' where some sequence ends */
    int sum_tp = 0;
    for (int k = 0; k < SB; k++) sum_tp |= len[k] == t;
    if (sum_tp) {
      VF run[NF], tt[NF];
      VD pacc[2 * NF];
      FORF {
        run[f] = (VF){0};
        tt[f] = LDF(w->tot + (size_t)t * SB + f * KB_VW);
        pacc[2 * f] = pacc[2 * f + 1] = (VD){0};
      }
      for (int32_t j = 0; j < H; j++) {
        const float *ar = at + (size_t)j * SB;
        const float li = g->linit[j];
        FORF run[f] += LDF(ar + f * KB_VW) + li * tt[f];
        if ((j + 1) % KB_DEN_RUN == 0) {
          ADD_D(pacc, run);
          FORF run[f] = (VF){0};
        }
      }
      ADD_D(pacc, run);
      double *tpr = w->tp + (size_t)t * SB;
      FORF {
        *(VD *)(tpr + f * KB_VW) = pacc[2 * f];
        *(VD *)(tpr + f * KB_VW + KB_VW / 2) = pacc[2 * f + 1];
      }
    }
  }
#undef KB_ALPHA_AT
#if defined(__SSE__)
  if (backward) _mm_sfence();
#endif
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
  /* bn = beta(t+1) (with the leak) is read while beta'(t) is written to bc;
     then bc += the leak and the buffers swap */
  float *bn = w->beta, *bc = w->beta2;
  for (int32_t i = 0; i < H; i++)
    for (int k = 0; k < SB; k++) bn[(size_t)i * SB + k] = (len[k] == T) ? beta_last[k] : 0.0f;
  /* segments [c, e) of K frames, last first: recompute alpha'(c+1 .. e-1) from
     the checkpoint alpha'(c) into al[1 .. e-c-1], then run frames e-1 .. c */
  for (int32_t c = (T - 1) / K * K; c >= 0; c -= K) {
    const int32_t e = c + K < T ? c + K : T;
    const float *ckc = w->ck + (size_t)(c / K) * HS;
    for (int32_t t1 = c + 1; t1 < e; t1++) {
      for (int k = 0; k < SB; k++)
        scl[k] = (float)(1.0 / (double)w->tot[(size_t)(t1 - 1) * SB + k]);
      KB_XFRAME(io, w->ytmp, D, b0, nb, len, t1 - 1, w->x);
      KB_FSTEP(g, t1 == c + 1 ? ckc : w->al + (size_t)(t1 - 1 - c) * HS,
               w->tot + (size_t)(t1 - 1) * SB, w->al + (size_t)(t1 - c) * HS,
               w->x, scl, w->tot + (size_t)t1 * SB, 0, NULL);
    }
    for (int32_t t = e - 1; t >= c; t--) {
      /* sequences whose last frame is t start here */
      if (t + 1 < T) {
        for (int k = 0; k < SB; k++) {
          if (len[k] == t + 1)
            for (int32_t i = 0; i < H; i++) bn[(size_t)i * SB + k] = beta_last[k];
        }
      }
      const float *at = t == c ? ckc : w->al + (size_t)(t - c) * HS; /* alpha(t) */
      KB_XFRAME(io, w->ytmp, D, b0, nb, len, t, w->x);
      const float *xt = w->x;
      float rts[SB];
      for (int k = 0; k < SB; k++) rts[k] = (float)(1.0 / (double)w->tot[(size_t)t * SB + k]);
      VF rt[NF], tt[NF];
      FORF {
        rt[f] = LDF(rts + f * KB_VW);
        tt[f] = LDF(w->tot + (size_t)t * SB + f * KB_VW);
      }
      memset(w->gam, 0, (size_t)D * SB * sizeof(float));
      /* one pass over the arcs, by source state i in the order of the plan:
         with r_a = p_a beta(t+1, dst_a),
           beta'(t, i) = sum_{a leaving i} r_a x(t, pdf_a) / tot(t), and
           gamma(t, n) = x(t, n) / tot(t) sum_{a with pdf n} r_a alpha'(t, src_a)
         (Kaldi's sums, in its order: arcs by source state; the arcs leaving a
         state have distinct pdfs); ib = sum_i init(i) beta'(t, i) */
      VF run[NF];
      VD ib[2 * NF];
      FORF {
        run[f] = (VF){0};
        ib[2 * f] = ib[2 * f + 1] = (VD){0};
      }
      {
        const kb_pull_plan *pl = &g->bwd;
        int32_t cnt16 = 0;
        /* the checkpoint the next segment starts from (from memory), one row
           per position into the L2 cache */
        const char *pf = (t == c && c > 0) ? (const char *)(w->ck + (size_t)(c / K - 1) * HS) : NULL;
        for (int32_t b_ = 0; b_ < pl->nrun; b_++) {
          const int32_t n_ = pl->run_n[b_], ke = pl->run[b_ + 1];
          for (int32_t k = pl->run[b_]; k < ke; k++) {
            const int32_t i = pl->ord[k];
            if (pf) {
              for (int l = 0; l < SB * 4; l += 64) __builtin_prefetch(pf + (size_t)k * SB * 4 + l, 0, 2);
            }
            VF sb_[NF], al_[NF];
            {
              const float li = g->linit[i];
              const float *ar = at + (size_t)i * SB;
              FORF al_[f] = LDF(ar + f * KB_VW) + li * tt[f];
            }
            {
              VF e_[NF], o_[NF];
              FORF e_[f] = o_[f] = (VF){0};
              int64_t a_ = pl->off[k];
              const int64_t ae_ = a_ + n_;
              for (; a_ + 2 <= ae_; a_ += 2) {
                const float p0_ = pl->p[a_], p1_ = pl->p[a_ + 1];
                const float *r0_ = bn + (size_t)pl->idx[a_] * SB;
                const float *r1_ = bn + (size_t)pl->idx[a_ + 1] * SB;
                const size_t n0_ = (size_t)pl->idx2[a_] * SB, n1_ = (size_t)pl->idx2[a_ + 1] * SB;
                VF q0_[NF], q1_[NF];
                FORF {
                  q0_[f] = p0_ * LDF(r0_ + f * KB_VW);
                  q1_[f] = p1_ * LDF(r1_ + f * KB_VW);
                  e_[f] += q0_[f] * LDF(xt + n0_ + f * KB_VW);
                  o_[f] += q1_[f] * LDF(xt + n1_ + f * KB_VW);
                }
                FORF STF(w->gam + n0_ + f * KB_VW, LDF(w->gam + n0_ + f * KB_VW) + q0_[f] * al_[f]);
                FORF STF(w->gam + n1_ + f * KB_VW, LDF(w->gam + n1_ + f * KB_VW) + q1_[f] * al_[f]);
              }
              if (a_ < ae_) {
                const float p0_ = pl->p[a_];
                const float *r0_ = bn + (size_t)pl->idx[a_] * SB;
                const size_t n0_ = (size_t)pl->idx2[a_] * SB;
                FORF {
                  const VF q0_ = p0_ * LDF(r0_ + f * KB_VW);
                  e_[f] += q0_ * LDF(xt + n0_ + f * KB_VW);
                  STF(w->gam + n0_ + f * KB_VW, LDF(w->gam + n0_ + f * KB_VW) + q0_ * al_[f]);
                }
              }
              FORF sb_[f] = e_[f] + o_[f];
            }
            const float ini = g->init[i];
            float *br = bc + (size_t)i * SB;
            FORF {
              const VF bd = sb_[f] * rt[f];
              STF(br + f * KB_VW, bd);
              run[f] += ini * bd;
            }
            if (++cnt16 == KB_DEN_RUN) {
              cnt16 = 0;
              ADD_D(ib, run);
              FORF run[f] = (VF){0};
            }
          }
        }
      }
      ADD_D(ib, run);
      for (int32_t n = 0; n < D; n++) {
        float *gr = w->gam + (size_t)n * SB;
        FORF STF(gr + f * KB_VW, LDF(gr + f * KB_VW) * LDF(xt + (size_t)n * SB + f * KB_VW) * rt[f]);
      }
      if (t == 0 && checks) {
        /* alpha'(0, i) = init(i) + leaky init(i) tot(0) */
        double ab = 0.0, gs = 0.0;
        for (int32_t i = 0; i < H; i++) {
          const double a0 = (double)(g->init[i] + g->linit[i] * w->tot[0]);
          for (int k = 0; k < nb; k++) ab += a0 * (double)bc[(size_t)i * SB + k];
        }
        for (int32_t n = 0; n < D; n++)
          for (int k = 0; k < nb; k++) gs += (double)w->gam[(size_t)n * SB + k];
        checks[0] = ab;
        checks[1] = gs;
      }
      /* the posteriors of frame t: gamma transposed by blocks of KB_VW pdfs x
         KB_VW lanes in registers (the last D % KB_VW pdfs one by one) */
      {
        int32_t n0 = 0;
        for (; n0 + KB_VW <= D; n0 += KB_VW)
          for (int k0 = 0; k0 < nb; k0 += KB_VW) {
            VF r[KB_VW];
            _Pragma("GCC unroll 16") for (int q = 0; q < KB_VW; q++)
              r[q] = LDF(w->gam + (size_t)(n0 + q) * SB + k0);
            KB_TRANSPOSE(r);
            for (int q = 0; q < KB_VW && k0 + q < nb; q++) {
              float *dr = io->deriv + ((size_t)(b0 + k0 + q) * T + t) * D + n0;
              STF(dr, t < len[k0 + q] ? r[q] : (VF){0});
            }
          }
        for (; n0 < D; n0++)
          for (int k = 0; k < nb; k++)
            io->deriv[((size_t)(b0 + k) * T + t) * D + n0] =
                t < len[k] ? w->gam[(size_t)n0 * SB + k] : 0.0f;
      }
      /* beta(t) = beta'(t) + leaky (init . beta'(t)) */
      if (t > 0) {
        VF ibf[NF], tb[NF];
        D2F(ibf, ib);
        FORF tb[f] = io->leaky_f * ibf[f];
        for (int32_t i = 0; i < H; i++) {
          float *br = bc + (size_t)i * SB;
          FORF STF(br + f * KB_VW, LDF(br + f * KB_VW) + tb[f]);
        }
        float *sw = bn;
        bn = bc;
        bc = sw;
      }
    }
  }
}

#undef VF
#undef VI
#undef VD
#undef VH
#undef NF
#undef LDF
#undef STF
#undef NTSTF
#undef H2D
#undef D2H
#undef LO
#undef HI
#undef FORF
#undef ADD_D
#undef D2F
#undef KB_PULL
#undef KB_EXP
#undef KB_FSTEP
#undef KB_XFRAME
#undef KB_TRANSPOSE
#undef KB_TSTAGE
#endif /* KB_DEN_TEMPLATE */
