/*
 * Pruned lattice determinization: Kaldi's DeterminizeLatticePhonePrunedWrapper
 * (src/lat/determinize-lattice-pruned.cc, LatticeDeterminizerPruned) for the
 * raw state-level lattices of cbridge/decoder.c.  API in kbind_native.h.
 *
 * Algorithm (as Kaldi; the input is "inverted": the determinization label of
 * an arc is its word (raw olabel, 0 = epsilon) and the string symbol its
 * transition-id (raw ilabel, 0 = none)):
 *   - subset construction in the semiring (LatticeWeight, string of
 *     transition-ids); a subset element is (input state, residual string,
 *     residual weight), one per state (the best, by Kaldi's Compare:
 *     graph+acoustic, then graph, then the shorter string, then the
 *     lexicographically larger one);
 *   - epsilon closure over word-epsilon arcs, ConvertToMinimal (keep only
 *     states with a labelled arc or a final weight), NormalizeSubset (best
 *     weight and common string prefix go on the output arc); an
 *     "initial-subset" lookaside hash skips the closure for subsets seen
 *     before; subsets are hashed on (state, string) and compared with
 *     approximate weight equality (|dgraph| <= delta and |dacoustic| <=
 *     delta);
 *   - pruning DURING determinization: backward costs of the input, each
 *     (output state, label) transition is a task of priority
 *     forward_cost(output state) + min over its elements of (weight +
 *     backward cost); tasks above best + beam are never created, the others
 *     are processed best-first from a priority queue; final weights above
 *     the cutoff are dropped; output states get the forward cost of the
 *     path that created them;
 *   - element pruning (not in Kaldi, same output within the beam): an
 *     element whose best completion, forward_cost(output state) + its
 *     residual weight + backward cost of its state, exceeds the cutoff lies
 *     on no path within the beam for this output prefix; it is dropped from
 *     transition subsets and from epsilon closures (Kaldi keeps it: larger
 *     subsets, fewer of them equal).  The first arrival at an initial subset
 *     has the best forward cost (equal normalized subsets: priority order is
 *     forward-cost order), so reusing its closure for later arrivals is safe;
 *   - limits: before each task, stop when #states > max_states, #arcs >
 *     max_arcs or the memory estimate (string repository + subsets + arcs +
 *     queued tasks, bytes) > max_mem; the effective beam is then the
 *     priority of the best unprocessed task minus the best cost.  As
 *     Kaldi's DeterminizeLatticePruned: if effective_beam < beam *
 *     retry_cutoff, the INPUT of this pass is pruned (PruneLattice) at
 *     new_beam = max(beam * sqrt(effective_beam / beam), beam / 2) and the
 *     pass retried (10 attempts at most; the last one is kept whatever its
 *     beam); otherwise the partial output is kept;
 *   - phone pass (when a transition-id -> phone map is given): phone labels
 *     (first_phone_label + phone, first_phone_label = highest word + 1) are
 *     inserted on arcs whose transition-id starts a phone (HMM state 0, not
 *     a self-loop), as a new arc after the word when the arc has a word;
 *     arcs leaving the start state are skipped (as Kaldi); the lattice is
 *     determinized on words+phones, expanded back to a state-level lattice
 *     (strings as chains of arcs), phone labels deleted, then the word pass
 *     runs on it;
 *   - the output is Connect-ed and renumbered in topological order (start =
 *     0), arcs of a state sorted by word.
 *
 * Differences from Kaldi: weights are summed in double (Kaldi: float), so
 * the default delta can be far below Kaldi's kDelta (1/1024) and both
 * weight components are compared; the memory check runs before every task
 * and never rebuilds the string repository (Kaldi rebuilds it, then stops
 * if still > 0.8 max_mem); max_loop does not exist (the closure visits each
 * state once: states are numbered topologically); max_states / max_arcs
 * apply to both passes (Kaldi's phone-pruned code forwards only max_arcs);
 * a cyclic input is an error (Kaldi: KALDI_ERR in the wrapper).
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

#define LATDET_MAGIC 0x4b424c44u /* "KBLD" */
#define LD_MAX_ITERS 10

typedef struct {
  double g, a;
} W;

static inline double wcost(W w) { return w.g + w.a; }
static inline W wtimes(W x, W y) {
  W r = {x.g + y.g, x.a + y.a};
  return r;
}
/* Kaldi's Compare on LatticeWeight: 1 if x is better (more in the semiring). */
static inline int wcmp(W x, W y) {
  double fx = x.g + x.a, fy = y.g + y.a;
  if (fx < fy) return 1;
  if (fx > fy) return -1;
  if (x.g < y.g) return 1;
  if (x.g > y.g) return -1;
  return 0;
}

/* growable array: ensure capacity for `need` elements of size `sz` */
static int grow(void **p, int64_t *cap, int64_t need, size_t sz) {
  if (need <= *cap) return 0;
  int64_t nc = *cap ? *cap : 16;
  while (nc < need) nc *= 2;
  void *q = realloc(*p, (size_t)nc * sz);
  if (!q) return -1;
  *p = q;
  *cap = nc;
  return 0;
}

static inline uint64_t mix64(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ULL;
  x ^= x >> 33;
  return x;
}

/* ------------------------------------------------------------------------ */
/* string repository: a hash-consed trie; id 0 = empty string               */

typedef struct {
  int32_t parent, label, id;
} RSlot;

typedef struct {
  int32_t *parent, *label, *len;
  int64_t n, cap;
  RSlot *tab; /* open addressing, keys inline (id -1 = empty) */
  int64_t tabcap; /* power of 2 */
} Repo;

static int repo_init(Repo *r) {
  memset(r, 0, sizeof(*r));
  if (grow((void **)&r->parent, &r->cap, 1024, sizeof(int32_t))) return -1;
  r->label = (int32_t *)malloc(sizeof(int32_t) * (size_t)r->cap);
  r->len = (int32_t *)malloc(sizeof(int32_t) * (size_t)r->cap);
  r->tabcap = 2048;
  r->tab = (RSlot *)malloc(sizeof(RSlot) * (size_t)r->tabcap);
  if (!r->label || !r->len || !r->tab) return -1;
  memset(r->tab, 0xff, sizeof(RSlot) * (size_t)r->tabcap);
  r->parent[0] = -1;
  r->label[0] = 0;
  r->len[0] = 0;
  r->n = 1;
  return 0;
}

static void repo_free(Repo *r) {
  free(r->parent);
  free(r->label);
  free(r->len);
  free(r->tab);
  memset(r, 0, sizeof(*r));
}

static inline uint64_t repo_hash(int32_t parent, int32_t label) {
  return mix64(((uint64_t)(uint32_t)parent << 32) | (uint32_t)label);
}

/* the string s + [label]; -1 when out of memory */
static int32_t repo_succ(Repo *r, int32_t s, int32_t label) {
  uint64_t mask = (uint64_t)r->tabcap - 1, h = repo_hash(s, label) & mask;
  for (;;) {
    const RSlot *e = &r->tab[h];
    if (e->id < 0) break;
    if (e->parent == s && e->label == label) return e->id;
    h = (h + 1) & mask;
  }
  if (r->n >= INT32_MAX - 1) return -1;
  if (r->n + 1 > r->cap) {
    int64_t cap = r->cap;
    if (grow((void **)&r->parent, &cap, r->n + 1, sizeof(int32_t))) return -1;
    int32_t *l = (int32_t *)realloc(r->label, sizeof(int32_t) * (size_t)cap);
    if (!l) return -1;
    r->label = l;
    l = (int32_t *)realloc(r->len, sizeof(int32_t) * (size_t)cap);
    if (!l) return -1;
    r->len = l;
    r->cap = cap;
  }
  int32_t id = (int32_t)r->n++;
  r->parent[id] = s;
  r->label[id] = label;
  r->len[id] = r->len[s] + 1;
  RSlot ns = {s, label, id};
  r->tab[h] = ns;
  if (r->n * 2 > r->tabcap) { /* rehash */
    int64_t nc = r->tabcap * 2;
    RSlot *t = (RSlot *)malloc(sizeof(RSlot) * (size_t)nc);
    if (!t) return -1;
    memset(t, 0xff, sizeof(RSlot) * (size_t)nc);
    uint64_t m2 = (uint64_t)nc - 1;
    for (int32_t i = 1; i < (int32_t)r->n; i++) {
      uint64_t k = repo_hash(r->parent[i], r->label[i]) & m2;
      while (t[k].id >= 0) k = (k + 1) & m2;
      RSlot e = {r->parent[i], r->label[i], i};
      t[k] = e;
    }
    free(r->tab);
    r->tab = t;
    r->tabcap = nc;
  }
  return id;
}

/* longest common prefix (lowest common ancestor in the trie) */
static int32_t repo_lcp(const Repo *r, int32_t a, int32_t b) {
  while (r->len[a] > r->len[b]) a = r->parent[a];
  while (r->len[b] > r->len[a]) b = r->parent[b];
  while (a != b) {
    a = r->parent[a];
    b = r->parent[b];
  }
  return a;
}

/* Kaldi's string order in CompactLatticeWeight's Compare: 1 if a is better
   (shorter; at equal length lexicographically larger) */
static int repo_cmp(const Repo *r, int32_t a, int32_t b) {
  if (a == b) return 0;
  if (r->len[a] > r->len[b]) return -1;
  if (r->len[a] < r->len[b]) return 1;
  int32_t c = repo_lcp(r, a, b), lc = r->len[c];
  while (r->len[a] > lc + 1) a = r->parent[a];
  while (r->len[b] > lc + 1) b = r->parent[b];
  return r->label[a] < r->label[b] ? -1 : 1;
}

/* labels of s into buf[0 .. len-1] */
static void repo_vec(const Repo *r, int32_t s, int32_t *buf) {
  for (int32_t i = r->len[s] - 1; i >= 0; i--) {
    buf[i] = r->label[s];
    s = r->parent[s];
  }
}

/* ------------------------------------------------------------------------ */
/* input lattice: states topologically numbered, start = 0, connected        */

typedef struct {
  int32_t ns;
  int64_t na;
  int64_t *off;
  int32_t *dst, *lab, *out;
  W *w, *fin;
  uint8_t *emit_or_final;
  double *bwd;
} ILat;

static void ilat_free(ILat *L) {
  free(L->off);
  free(L->dst);
  free(L->lab);
  free(L->out);
  free(L->w);
  free(L->fin);
  free(L->emit_or_final);
  free(L->bwd);
  memset(L, 0, sizeof(*L));
}

/* Build an ILat from arc lists (any order; per-source order kept): drops
   arcs of infinite cost, sorts topologically (KB_EINVAL if cyclic), keeps
   states on a start->final path, renumbers them in topological order. */
static int ilat_build(int32_t ns, int32_t start, int64_t na, const int32_t *src,
                      const int32_t *dst, const int32_t *lab, const int32_t *out, const W *w,
                      const W *fin, ILat *L, char *err, size_t errlen) {
  memset(L, 0, sizeof(*L));
  int rc = KB_OK;
  int64_t *off = NULL, *ord_arcs = NULL, *fill = NULL;
  int32_t *indeg = NULL, *topo = NULL, *newid = NULL;
  uint8_t *acc = NULL, *coacc = NULL;
  if (ns <= 0 || start < 0) return KB_OK;
  off = (int64_t *)calloc((size_t)ns + 1, sizeof(int64_t));
  fill = (int64_t *)calloc((size_t)ns + 1, sizeof(int64_t));
  ord_arcs = (int64_t *)malloc(sizeof(int64_t) * (size_t)(na ? na : 1));
  indeg = (int32_t *)calloc((size_t)ns, sizeof(int32_t));
  topo = (int32_t *)malloc(sizeof(int32_t) * (size_t)ns);
  newid = (int32_t *)malloc(sizeof(int32_t) * (size_t)ns);
  acc = (uint8_t *)calloc((size_t)ns, 1);
  coacc = (uint8_t *)calloc((size_t)ns, 1);
  if (!off || !fill || !ord_arcs || !indeg || !topo || !newid || !acc || !coacc) goto nomem;
  for (int64_t k = 0; k < na; k++) {
    if (!(wcost(w[k]) < INFINITY)) continue;
    off[src[k] + 1]++;
    indeg[dst[k]]++;
  }
  for (int32_t s = 0; s < ns; s++) off[s + 1] += off[s];
  memcpy(fill, off, sizeof(int64_t) * (size_t)ns);
  for (int64_t k = 0; k < na; k++) {
    if (!(wcost(w[k]) < INFINITY)) continue;
    ord_arcs[fill[src[k]]++] = k;
  }
  /* Kahn (FIFO) */
  int32_t head = 0, tail = 0;
  for (int32_t s = 0; s < ns; s++)
    if (indeg[s] == 0) topo[tail++] = s;
  while (head < tail) {
    int32_t s = topo[head++];
    for (int64_t i = off[s]; i < off[s + 1]; i++) {
      int32_t d = dst[ord_arcs[i]];
      if (--indeg[d] == 0) topo[tail++] = d;
    }
  }
  if (tail != ns) {
    rc = kb_fail(err, errlen, KB_EINVAL,
                 "lattice is cyclic (cannot determinize it; probably empty words or an "
                 "epsilon cycle in the graph)");
    goto done;
  }
  acc[start] = 1;
  for (int32_t i = 0; i < ns; i++) {
    int32_t s = topo[i];
    if (!acc[s]) continue;
    for (int64_t j = off[s]; j < off[s + 1]; j++) acc[dst[ord_arcs[j]]] = 1;
  }
  for (int32_t i = ns - 1; i >= 0; i--) {
    int32_t s = topo[i];
    uint8_t c = wcost(fin[s]) < INFINITY;
    for (int64_t j = off[s]; j < off[s + 1] && !c; j++) c = coacc[dst[ord_arcs[j]]];
    coacc[s] = c;
  }
  if (!acc[start] || !coacc[start]) goto done; /* empty */
  int32_t n2 = 0;
  for (int32_t i = 0; i < ns; i++) {
    int32_t s = topo[i];
    newid[s] = (acc[s] && coacc[s]) ? n2++ : -1;
  }
  int64_t na2 = 0;
  for (int32_t s = 0; s < ns; s++) {
    if (newid[s] < 0) continue;
    for (int64_t j = off[s]; j < off[s + 1]; j++)
      if (newid[dst[ord_arcs[j]]] >= 0) na2++;
  }
  L->ns = n2;
  L->na = na2;
  L->off = (int64_t *)calloc((size_t)n2 + 1, sizeof(int64_t));
  L->dst = (int32_t *)malloc(sizeof(int32_t) * (size_t)(na2 ? na2 : 1));
  L->lab = (int32_t *)malloc(sizeof(int32_t) * (size_t)(na2 ? na2 : 1));
  L->out = (int32_t *)malloc(sizeof(int32_t) * (size_t)(na2 ? na2 : 1));
  L->w = (W *)malloc(sizeof(W) * (size_t)(na2 ? na2 : 1));
  L->fin = (W *)malloc(sizeof(W) * (size_t)n2);
  L->emit_or_final = (uint8_t *)calloc((size_t)n2, 1);
  L->bwd = (double *)malloc(sizeof(double) * (size_t)n2);
  if (!L->off || !L->dst || !L->lab || !L->out || !L->w || !L->fin || !L->emit_or_final ||
      !L->bwd)
    goto nomem;
  int64_t k2 = 0;
  for (int32_t i = 0; i < ns; i++) {
    int32_t s = topo[i], s2 = newid[s];
    if (s2 < 0) continue;
    W f = fin[s];
    if (!(wcost(f) < INFINITY)) f.g = f.a = INFINITY;
    L->fin[s2] = f;
    uint8_t ef = wcost(f) < INFINITY;
    for (int64_t j = off[s]; j < off[s + 1]; j++) {
      int64_t k = ord_arcs[j];
      int32_t d2 = newid[dst[k]];
      if (d2 < 0) continue;
      L->dst[k2] = d2;
      L->lab[k2] = lab[k];
      L->out[k2] = out[k];
      L->w[k2] = w[k];
      if (lab[k] != 0) ef = 1;
      k2++;
    }
    L->off[s2 + 1] = k2;
    L->emit_or_final[s2] = ef;
  }
  for (int32_t s = n2 - 1; s >= 0; s--) {
    double c = wcost(L->fin[s]);
    for (int64_t j = L->off[s]; j < L->off[s + 1]; j++) {
      double c2 = wcost(L->w[j]) + L->bwd[L->dst[j]];
      if (c2 < c) c = c2;
    }
    L->bwd[s] = c;
  }
  goto done;
nomem:
  ilat_free(L);
  rc = kb_fail(err, errlen, KB_ENOMEM, "out of memory in lattice determinization");
done:
  if (rc != KB_OK) ilat_free(L);
  free(off);
  free(fill);
  free(ord_arcs);
  free(indeg);
  free(topo);
  free(newid);
  free(acc);
  free(coacc);
  return rc;
}

/* Kaldi's PruneLattice on an ILat (arcs and finals on a path within beam of
   the best), then Connect. */
static int ilat_prune(const ILat *L, double beam, ILat *out, char *err, size_t errlen) {
  memset(out, 0, sizeof(*out));
  if (L->ns == 0) return KB_OK;
  int rc = KB_OK;
  double *alpha = (double *)malloc(sizeof(double) * (size_t)L->ns);
  int32_t *src = (int32_t *)malloc(sizeof(int32_t) * (size_t)(L->na ? L->na : 1));
  W *w = (W *)malloc(sizeof(W) * (size_t)(L->na ? L->na : 1));
  W *fin = (W *)malloc(sizeof(W) * (size_t)L->ns);
  if (!alpha || !src || !w || !fin) {
    rc = kb_fail(err, errlen, KB_ENOMEM, "out of memory in lattice determinization");
    goto done;
  }
  for (int32_t s = 0; s < L->ns; s++) alpha[s] = INFINITY;
  alpha[0] = 0;
  for (int32_t s = 0; s < L->ns; s++)
    for (int64_t j = L->off[s]; j < L->off[s + 1]; j++) {
      double c = alpha[s] + wcost(L->w[j]);
      if (c < alpha[L->dst[j]]) alpha[L->dst[j]] = c;
    }
  double cutoff = L->bwd[0] + beam;
  for (int32_t s = 0; s < L->ns; s++) {
    fin[s] = L->fin[s];
    if (!(alpha[s] + wcost(fin[s]) <= cutoff)) fin[s].g = fin[s].a = INFINITY;
    for (int64_t j = L->off[s]; j < L->off[s + 1]; j++) {
      src[j] = s;
      w[j] = L->w[j];
      if (!(alpha[s] + wcost(w[j]) + L->bwd[L->dst[j]] <= cutoff)) w[j].g = w[j].a = INFINITY;
    }
  }
  rc = ilat_build(L->ns, 0, L->na, src, L->dst, L->lab, L->out, w, fin, out, err, errlen);
done:
  free(alpha);
  free(src);
  free(w);
  free(fin);
  return rc;
}

/* ------------------------------------------------------------------------ */
/* the determinizer                                                          */

typedef struct {
  int32_t state, str;
  W w;
} Elem;

typedef struct {
  int32_t src, dst, lab, str; /* dst -1: final weight */
  W w;
} TArc;

/* an element whose string is parent + [out] (out = 0: parent), made
   only when needed; lab: the label of the arc that produced it */
typedef struct {
  int32_t lab, state, parent, out;
  W w;
} Cand;

typedef struct {
  double prio;
  int64_t seq;
  int32_t ostate, lab, n;
  Cand *sub; /* strings deferred until the task is processed */
} Task;

typedef struct {
  int64_t off;
  int32_t len, next;
  uint64_t hash;
  double fwd;
} OState;

typedef struct {
  uint64_t hash;
  int64_t off;
  int32_t len, next, ostate, str;
  W w;
} IEntry;

/* closure entries: the string of an entry is its predecessor's string
   (pred = index of the entry it was reached from, -1 for an initial
   element whose string is `base`) + out; strings go to the repository only
   for the elements kept (ConvertToMinimal) and for exact weight ties, so
   the repository does not grow with every state the closure visits. */
typedef struct {
  int32_t state, pred, base, out;
  W w;
} CEnt;


typedef struct {
  double beam, delta, retry_cutoff;
  int64_t max_mem, max_states, max_arcs;
} Opts;

typedef struct {
  const ILat *L;
  Opts o;
  double cutoff, best;
  Repo repo;
  Elem *pool;
  int64_t npool, cpool;
  OState *os;
  int64_t nos, cos;
  int32_t *mhead;
  int64_t mcap;
  IEntry *ie;
  int64_t nie, cie;
  int32_t *ihead;
  int64_t icap;
  TArc *arcs;
  int64_t narcs, carcs;
  Task *heap;
  int64_t nheap, cheap, seq, task_elems;
  /* scratch */
  int32_t *slot; /* [ns], -1 */
  CEnt *cl;
  int64_t ncl, ccl;
  int32_t *cheapq;
  int64_t ncheapq, ccheapq;
  Elem *ctmp;
  int64_t nctmp, cctmp;
  Cand *all, *all2;
  int64_t nall, call, call2;
  int32_t *labcnt, *labs; /* [max_lab + 1] zero between calls; distinct labels */
  int64_t nlabs, clabs;
  int32_t max_lab;
  Elem *tsub;
  int64_t ctsub;
  int32_t *ibuf;
  int64_t cibuf;
} Det;

static void det_free(Det *d) {
  repo_free(&d->repo);
  for (int64_t i = 0; i < d->nheap; i++) free(d->heap[i].sub);
  free(d->heap);
  free(d->pool);
  free(d->os);
  free(d->mhead);
  free(d->ie);
  free(d->ihead);
  free(d->arcs);
  free(d->slot);
  free(d->cl);
  free(d->cheapq);
  free(d->ctmp);
  free(d->all);
  free(d->all2);
  free(d->labcnt);
  free(d->labs);
  free(d->tsub);
  free(d->ibuf);
  memset(d, 0, sizeof(*d));
}

static int64_t det_mem(const Det *d) {
  return d->repo.n * (int64_t)(3 * sizeof(int32_t)) + d->repo.tabcap * (int64_t)sizeof(RSlot) +
         d->npool * (int64_t)sizeof(Elem) + d->nos * (int64_t)sizeof(OState) +
         d->nie * (int64_t)sizeof(IEntry) + d->narcs * (int64_t)sizeof(TArc) +
         d->nheap * (int64_t)sizeof(Task) + d->task_elems * (int64_t)sizeof(Cand) +
         (d->mcap + d->icap) * (int64_t)sizeof(int32_t);
}

static int ibuf_need(Det *d, int64_t n) {
  return grow((void **)&d->ibuf, &d->cibuf, n > 0 ? n : 1, sizeof(int32_t));
}

/* s with its first n labels removed; -1 on nomem */
static int32_t remove_prefix(Det *d, int32_t s, int32_t n) {
  if (n == 0) return s;
  int32_t m = d->repo.len[s] - n; /* suffix length */
  if (ibuf_need(d, m)) return -1;
  for (int32_t i = m - 1; i >= 0; i--) { /* walk up the suffix only */
    d->ibuf[i] = d->repo.label[s];
    s = d->repo.parent[s];
  }
  int32_t r = 0;
  for (int32_t i = 0; i < m && r >= 0; i++) r = repo_succ(&d->repo, r, d->ibuf[i]);
  return r;
}

static int32_t concat(Det *d, int32_t a, int32_t b) {
  if (b == 0) return a;
  int32_t L = d->repo.len[b];
  if (ibuf_need(d, L)) return -1;
  repo_vec(&d->repo, b, d->ibuf);
  for (int32_t i = 0; i < L && a >= 0; i++) a = repo_succ(&d->repo, a, d->ibuf[i]);
  return a;
}

static uint64_t sub_hash(const Elem *e, int32_t n) {
  uint64_t h = 0x9e3779b97f4a7c15ULL ^ (uint64_t)n;
  for (int32_t i = 0; i < n; i++)
    h = mix64(h ^ (((uint64_t)(uint32_t)e[i].state << 32) | (uint32_t)e[i].str));
  return h;
}

static int sub_equal(const Det *d, const Elem *x, const Elem *y, int32_t n) {
  for (int32_t i = 0; i < n; i++) {
    if (x[i].state != y[i].state || x[i].str != y[i].str) return 0;
    if (!(fabs(x[i].w.g - y[i].w.g) <= d->o.delta && fabs(x[i].w.a - y[i].w.a) <= d->o.delta))
      return 0;
  }
  return 1;
}

/* ---- task heap (min on prio, then seq) ---- */
static inline int task_less(const Task *a, const Task *b) {
  return a->prio < b->prio || (a->prio == b->prio && a->seq < b->seq);
}

static int heap_push(Det *d, Task t) {
  if (grow((void **)&d->heap, &d->cheap, d->nheap + 1, sizeof(Task))) return -1;
  int64_t i = d->nheap++;
  while (i > 0) {
    int64_t p = (i - 1) / 2;
    if (!task_less(&t, &d->heap[p])) break;
    d->heap[i] = d->heap[p];
    i = p;
  }
  d->heap[i] = t;
  d->task_elems += t.n;
  return 0;
}

static Task heap_pop(Det *d) {
  Task top = d->heap[0], last = d->heap[--d->nheap];
  int64_t i = 0, n = d->nheap;
  for (;;) {
    int64_t c = 2 * i + 1;
    if (c >= n) break;
    if (c + 1 < n && task_less(&d->heap[c + 1], &d->heap[c])) c++;
    if (!task_less(&d->heap[c], &last)) break;
    d->heap[i] = d->heap[c];
    i = c;
  }
  if (n) d->heap[i] = last;
  d->task_elems -= top.n;
  return top;
}

/* ---- epsilon closure + ConvertToMinimal: in[0..n) -> d->ctmp (sorted by
   state). States are topologically numbered, so popping the smallest state
   first finalizes each element before its epsilon successors. ---- */

static int cheap_push(Det *d, int32_t s) {
  if (grow((void **)&d->cheapq, &d->ccheapq, d->ncheapq + 1, sizeof(int32_t))) return -1;
  int64_t i = d->ncheapq++;
  while (i > 0) {
    int64_t p = (i - 1) / 2;
    if (d->cheapq[p] <= s) break;
    d->cheapq[i] = d->cheapq[p];
    i = p;
  }
  d->cheapq[i] = s;
  return 0;
}

static int32_t cheap_pop(Det *d) {
  int32_t top = d->cheapq[0], last = d->cheapq[--d->ncheapq];
  int64_t i = 0, n = d->ncheapq;
  for (;;) {
    int64_t c = 2 * i + 1;
    if (c >= n) break;
    if (c + 1 < n && d->cheapq[c + 1] < d->cheapq[c]) c++;
    if (d->cheapq[c] >= last) break;
    d->cheapq[i] = d->cheapq[c];
    i = c;
  }
  if (n) d->cheapq[i] = last;
  return top;
}

static inline int32_t cand_string(Det *d, const Cand *c) {
  return c->out ? repo_succ(&d->repo, c->parent, c->out) : c->parent;
}

/* materialize the string of closure entry k; caches it (base) on every
   entry of the walked path, whose strings are made on the way anyway */
static int32_t cent_string(Det *d, int32_t k) {
  CEnt *cl = d->cl;
  int64_t n = 0;
  int32_t q = k;
  while (cl[q].base < 0) { /* walk to an entry with a known string */
    n++;
    q = cl[q].pred;
  }
  if (n == 0) return cl[k].base;
  if (ibuf_need(d, n)) return -1;
  int64_t i = n;
  for (int32_t r = k; r != q; r = cl[r].pred) d->ibuf[--i] = r;
  int32_t s = cl[q].base;
  for (int64_t j = 0; j < n; j++) {
    CEnt *e = &cl[d->ibuf[j]];
    if (e->out) s = repo_succ(&d->repo, s, e->out);
    if (s < 0) return -1;
    e->base = s;
  }
  return s;
}

static int closure(Det *d, const Elem *in, int32_t n, double fwd) {
  const ILat *L = d->L;
  d->ncl = 0;
  d->ncheapq = 0;
  d->nctmp = 0;
  if (grow((void **)&d->cl, &d->ccl, n, sizeof(CEnt))) return -1;
  for (int32_t i = 0; i < n; i++) {
    CEnt c = {in[i].state, -1, in[i].str, 0, in[i].w};
    d->slot[in[i].state] = (int32_t)d->ncl;
    d->cl[d->ncl++] = c;
    if (cheap_push(d, in[i].state)) return -1;
  }
  int rc = 0;
  while (d->ncheapq) {
    int32_t s = cheap_pop(d);
    int32_t ks = d->slot[s];
    W w = d->cl[ks].w;
    if (L->emit_or_final[s]) {
      int32_t str = cent_string(d, ks);
      if (str < 0) { rc = -1; break; }
      /* cache it: successors then stop their walk here */
      CEnt *c = &d->cl[ks];
      c->base = str;
      if (grow((void **)&d->ctmp, &d->cctmp, d->nctmp + 1, sizeof(Elem))) { rc = -1; break; }
      Elem e = {s, str, w};
      d->ctmp[d->nctmp++] = e;
    }
    for (int64_t j = L->off[s]; j < L->off[s + 1]; j++) {
      if (L->lab[j] != 0) continue;
      int32_t t = L->dst[j];
      CEnt nc = {t, ks, -1, L->out[j], wtimes(w, L->w[j])};
      if (fwd + wcost(nc.w) + L->bwd[t] > d->cutoff) continue; /* element pruning */
      int32_t k = d->slot[t];
      if (k < 0) {
        if (grow((void **)&d->cl, &d->ccl, d->ncl + 1, sizeof(CEnt))) { rc = -1; break; }
        d->slot[t] = (int32_t)d->ncl;
        d->cl[d->ncl++] = nc;
        if (cheap_push(d, t)) { rc = -1; break; }
      } else {
        CEnt *cur = &d->cl[k];
        int cmp = wcmp(nc.w, cur->w);
        if (cmp == 0) { /* exact tie: compare the strings */
          int32_t s2 = cent_string(d, k);
          if (s2 < 0) { rc = -1; break; }
          cur = &d->cl[k];
          cur->base = s2;
          cur->pred = -1;
          cur->out = 0;
          /* the candidate's string: the predecessor's + out */
          int32_t sp = cent_string(d, ks);
          if (sp < 0) { rc = -1; break; }
          int32_t s1 = nc.out ? repo_succ(&d->repo, sp, nc.out) : sp;
          if (s1 < 0) { rc = -1; break; }
          nc.base = s1;
          nc.pred = -1;
          nc.out = 0;
          cmp = repo_cmp(&d->repo, s1, s2);
        }
        if (cmp == 1) d->cl[k] = nc;
      }
    }
    if (rc) break;
  }
  for (int64_t i = 0; i < d->ncl; i++) d->slot[d->cl[i].state] = -1;
  return rc;
}

/* NormalizeSubset: best weight (Plus) and common prefix out of e[0..n) */
static int normalize(Det *d, Elem *e, int32_t n, W *tot, int32_t *prefix) {
  W b = e[0].w;
  int32_t p = e[0].str;
  for (int32_t i = 1; i < n; i++) {
    if (wcmp(e[i].w, b) == 1) b = e[i].w;
    p = repo_lcp(&d->repo, p, e[i].str);
  }
  int32_t pl = d->repo.len[p];
  for (int32_t i = 0; i < n; i++) {
    e[i].w.g -= b.g;
    e[i].w.a -= b.a;
    e[i].str = remove_prefix(d, e[i].str, pl);
    if (e[i].str < 0) return -1;
  }
  *tot = b;
  *prefix = p;
  return 0;
}

static int add_arc(Det *d, int32_t src, int32_t dst, int32_t lab, int32_t str, W w) {
  if (grow((void **)&d->arcs, &d->carcs, d->narcs + 1, sizeof(TArc))) return -1;
  TArc a = {src, dst, lab, str, w};
  d->arcs[d->narcs++] = a;
  return 0;
}

static int process_final(Det *d, int32_t id) {
  const ILat *L = d->L;
  OState *o = &d->os[id];
  int found = 0;
  W bw = {0, 0};
  int32_t bs = 0;
  for (int32_t i = 0; i < o->len; i++) {
    const Elem *e = &d->pool[o->off + i];
    W f = L->fin[e->state];
    if (!(wcost(f) < INFINITY)) continue;
    W w = wtimes(e->w, f);
    int cmp = found ? wcmp(w, bw) : 1;
    if (cmp == 0) cmp = repo_cmp(&d->repo, e->str, bs);
    if (cmp == 1) {
      found = 1;
      bw = w;
      bs = e->str;
    }
  }
  if (found && wcost(bw) + o->fwd <= d->cutoff) return add_arc(d, id, -1, 0, bs, bw);
  return 0;
}

static int cand_state_cmp(const void *x, const void *y) {
  const Cand *a = (const Cand *)x, *b = (const Cand *)y;
  return a->state < b->state ? -1 : a->state > b->state;
}

static int int_cmp(const void *x, const void *y) {
  int32_t a = *(const int32_t *)x, b = *(const int32_t *)y;
  return a < b ? -1 : a > b;
}

/* sort c[0..n) by state: usually nearly sorted already (destinations
   follow the source order), so insertion sort unless that gets long */
static void sort_by_state(Cand *c, int64_t n) {
  int64_t moves = 0;
  for (int64_t i = 1; i < n; i++) {
    if (c[i - 1].state <= c[i].state) continue;
    Cand v = c[i];
    int64_t j = i;
    while (j > 0 && c[j - 1].state > v.state) {
      c[j] = c[j - 1];
      j--;
      if (++moves > 8 * n + 64) { /* far from sorted */
        c[j] = v;
        qsort(c, (size_t)n, sizeof(Cand), cand_state_cmp);
        return;
      }
    }
    c[j] = v;
  }
}

/* ProcessTransitions: one task per label out of output state id, unless
   its priority is beyond the cutoff */
static int process_transitions(Det *d, int32_t id) {
  const ILat *L = d->L;
  d->nall = 0;
  d->nlabs = 0;
  int32_t len = d->os[id].len;
  int64_t off = d->os[id].off;
  double fwd = d->os[id].fwd;
  for (int32_t i = 0; i < len; i++) {
    Elem e = d->pool[off + i];
    for (int64_t j = L->off[e.state]; j < L->off[e.state + 1]; j++) {
      int32_t lab = L->lab[j];
      if (lab == 0) continue;
      /* element pruning: no path within the beam goes through this
         element with this output prefix (see the file comment) */
      if (fwd + wcost(e.w) + wcost(L->w[j]) + L->bwd[L->dst[j]] > d->cutoff) continue;
      if (grow((void **)&d->all, &d->call, d->nall + 1, sizeof(Cand))) return -1;
      Cand c = {lab, L->dst[j], e.str, L->out[j], wtimes(e.w, L->w[j])};
      d->all[d->nall++] = c;
      if (d->labcnt[lab]++ == 0) {
        if (grow((void **)&d->labs, &d->clabs, d->nlabs + 1, sizeof(int32_t))) return -1;
        d->labs[d->nlabs++] = lab;
      }
    }
  }
  if (d->nall == 0) return 0;
  qsort(d->labs, (size_t)d->nlabs, sizeof(int32_t), int_cmp);
  if (grow((void **)&d->all2, &d->call2, d->nall, sizeof(Cand))) return -1;
  /* counting sort by label (labcnt becomes the write position) */
  int64_t pos = 0;
  for (int64_t i = 0; i < d->nlabs; i++) {
    int32_t c = d->labcnt[d->labs[i]];
    d->labcnt[d->labs[i]] = (int32_t)pos;
    pos += c;
  }
  for (int64_t k = 0; k < d->nall; k++) d->all2[d->labcnt[d->all[k].lab]++] = d->all[k];
  for (int64_t i = 0; i < d->nlabs; i++) d->labcnt[d->labs[i]] = 0;
  int64_t i = 0;
  int rc = 0;
  while (i < d->nall) {
    int64_t j = i;
    double prio = INFINITY;
    int32_t lab = d->all2[i].lab;
    while (j < d->nall && d->all2[j].lab == lab) {
      double c = wcost(d->all2[j].w) + L->bwd[d->all2[j].state];
      if (c < prio) prio = c;
      j++;
    }
    prio += fwd;
    if (prio <= d->cutoff) {
      Cand *g = d->all2 + i;
      int64_t gn = j - i;
      sort_by_state(g, gn);
      /* MakeSubsetUnique: best (weight, string) per state */
      Cand *sub = (Cand *)malloc(sizeof(Cand) * (size_t)gn);
      if (!sub) return -1;
      int32_t n = 0;
      for (int64_t k = 0; k < gn; k++) {
        Cand c = g[k];
        if (n > 0 && sub[n - 1].state == c.state) {
          Cand *p = &sub[n - 1];
          int cmp = wcmp(c.w, p->w);
          if (cmp == 0) {
            int32_t s1 = cand_string(d, &c), s2 = cand_string(d, p);
            if (s1 < 0 || s2 < 0) { rc = -1; break; }
            p->parent = s2;
            p->out = 0;
            c.parent = s1;
            c.out = 0;
            cmp = repo_cmp(&d->repo, s1, s2);
          }
          if (cmp == 1) *p = c;
          continue;
        }
        sub[n++] = c;
      }
      Task t = {prio, d->seq++, id, lab, n, sub};
      if (rc || heap_push(d, t)) { free(sub); return -1; }
    }
    i = j;
  }
  return rc;
}

/* add a new output state with minimal subset sub[0..n) (copied) */
static int32_t new_ostate(Det *d, const Elem *sub, int32_t n, uint64_t h, double fwd) {
  if (d->nos >= INT32_MAX - 1) return -1;
  if (grow((void **)&d->pool, &d->cpool, d->npool + n, sizeof(Elem))) return -1;
  if (grow((void **)&d->os, &d->cos, d->nos + 1, sizeof(OState))) return -1;
  memcpy(d->pool + d->npool, sub, sizeof(Elem) * (size_t)n);
  int32_t id = (int32_t)d->nos++;
  OState *o = &d->os[id];
  o->off = d->npool;
  o->len = n;
  o->hash = h;
  o->fwd = fwd;
  d->npool += n;
  if (d->nos * 2 > d->mcap) { /* grow + rehash minimal hash */
    int64_t nc = d->mcap ? d->mcap * 2 : 1024;
    int32_t *hd = (int32_t *)malloc(sizeof(int32_t) * (size_t)nc);
    if (!hd) return -1;
    memset(hd, 0xff, sizeof(int32_t) * (size_t)nc);
    for (int32_t k = 0; k < id; k++) {
      uint64_t b = d->os[k].hash & (uint64_t)(nc - 1);
      d->os[k].next = hd[b];
      hd[b] = k;
    }
    free(d->mhead);
    d->mhead = hd;
    d->mcap = nc;
  }
  uint64_t b = h & (uint64_t)(d->mcap - 1);
  o->next = d->mhead[b];
  d->mhead[b] = id;
  return id;
}

/* MinimalToStateId; -1 on nomem */
static int32_t minimal_to_state(Det *d, const Elem *sub, int32_t n, double fwd) {
  uint64_t h = sub_hash(sub, n);
  if (d->mcap) {
    for (int32_t k = d->mhead[h & (uint64_t)(d->mcap - 1)]; k >= 0; k = d->os[k].next) {
      const OState *o = &d->os[k];
      if (o->hash == h && o->len == n && sub_equal(d, d->pool + o->off, sub, n)) return k;
    }
  }
  int32_t id = new_ostate(d, sub, n, h, fwd);
  if (id < 0) return -1;
  if (process_final(d, id) || process_transitions(d, id)) return -1;
  return id;
}

/* InitialToStateId: sub (normalized, pre-closure) -> output state, with the
   remaining weight and string; -1 on nomem, -2 for an empty subset */
static int32_t initial_to_state(Det *d, const Elem *sub, int32_t n, double fwd, W *rem,
                                int32_t *pre) {
  uint64_t h = sub_hash(sub, n);
  if (d->icap) {
    for (int32_t k = d->ihead[h & (uint64_t)(d->icap - 1)]; k >= 0; k = d->ie[k].next) {
      const IEntry *e = &d->ie[k];
      if (e->hash == h && e->len == n && sub_equal(d, d->pool + e->off, sub, n)) {
        *rem = e->w;
        *pre = e->str;
        return e->ostate;
      }
    }
  }
  if (closure(d, sub, n, fwd)) return -1;
  if (d->nctmp == 0) return -2;
  W tot;
  int32_t prefix;
  if (normalize(d, d->ctmp, (int32_t)d->nctmp, &tot, &prefix)) return -1;
  int32_t id = minimal_to_state(d, d->ctmp, (int32_t)d->nctmp, fwd + wcost(tot));
  if (id < 0) return -1;
  /* remember the initial subset */
  if (grow((void **)&d->pool, &d->cpool, d->npool + n, sizeof(Elem))) return -1;
  if (grow((void **)&d->ie, &d->cie, d->nie + 1, sizeof(IEntry))) return -1;
  memcpy(d->pool + d->npool, sub, sizeof(Elem) * (size_t)n);
  int32_t k = (int32_t)d->nie++;
  IEntry *e = &d->ie[k];
  e->hash = h;
  e->off = d->npool;
  e->len = n;
  e->ostate = id;
  e->str = prefix;
  e->w = tot;
  d->npool += n;
  if (d->nie * 2 > d->icap) {
    int64_t nc = d->icap ? d->icap * 2 : 1024;
    int32_t *hd = (int32_t *)malloc(sizeof(int32_t) * (size_t)nc);
    if (!hd) return -1;
    memset(hd, 0xff, sizeof(int32_t) * (size_t)nc);
    for (int32_t q = 0; q < k; q++) {
      uint64_t b = d->ie[q].hash & (uint64_t)(nc - 1);
      d->ie[q].next = hd[b];
      hd[b] = q;
    }
    free(d->ihead);
    d->ihead = hd;
    d->icap = nc;
  }
  uint64_t b = h & (uint64_t)(d->icap - 1);
  e->next = d->ihead[b];
  d->ihead[b] = k;
  *rem = tot;
  *pre = prefix;
  return id;
}

static int process_task(Det *d, Task *t) {
  double fwd = d->os[t->ostate].fwd;
  W tot, ntot;
  int32_t common, ncommon;
  if (grow((void **)&d->tsub, &d->ctsub, t->n, sizeof(Elem))) return -1;
  Elem *sub = d->tsub;
  for (int32_t i = 0; i < t->n; i++) {
    sub[i].state = t->sub[i].state;
    sub[i].str = cand_string(d, &t->sub[i]);
    sub[i].w = t->sub[i].w;
    if (sub[i].str < 0) return -1;
  }
  if (normalize(d, sub, t->n, &tot, &common)) return -1;
  int32_t next = initial_to_state(d, sub, t->n, fwd + wcost(tot), &ntot, &ncommon);
  if (next == -2) return 0; /* empty subset: dead end (cannot happen on a connected input) */
  if (next < 0) return -1;
  int32_t str = concat(d, common, ncommon);
  if (str < 0) return -1;
  return add_arc(d, t->ostate, next, t->lab, str, wtimes(tot, ntot));
}

/* One determinization (Kaldi's LatticeDeterminizerPruned::Determinize).
   Returns 0, or -1 when out of memory; *complete = 1 when the queue was
   emptied; *eff_beam the effective beam. */
static int det_run(Det *d, const ILat *L, const Opts *o, int *complete, double *eff_beam) {
  memset(d, 0, sizeof(*d));
  d->L = L;
  d->o = *o;
  *complete = 1;
  *eff_beam = o->beam;
  if (L->ns == 0) return 0;
  if (repo_init(&d->repo)) return -1;
  d->slot = (int32_t *)malloc(sizeof(int32_t) * (size_t)L->ns);
  if (!d->slot) return -1;
  memset(d->slot, 0xff, sizeof(int32_t) * (size_t)L->ns);
  d->max_lab = 0;
  for (int64_t k = 0; k < L->na; k++)
    if (L->lab[k] > d->max_lab) d->max_lab = L->lab[k];
  d->labcnt = (int32_t *)calloc((size_t)d->max_lab + 1, sizeof(int32_t));
  if (!d->labcnt) return -1;
  d->best = L->bwd[0];
  d->cutoff = d->best + o->beam;
  /* start state: closure, minimal, not normalized */
  Elem st = {0, 0, {0, 0}};
  if (closure(d, &st, 1, 0.0)) return -1;
  int32_t id = new_ostate(d, d->ctmp, (int32_t)d->nctmp, sub_hash(d->ctmp, (int32_t)d->nctmp), 0);
  if (id < 0 || process_final(d, id) || process_transitions(d, id)) return -1;
  while (d->nheap) {
    const Task *top = &d->heap[0];
    if ((o->max_states > 0 && d->nos > o->max_states) ||
        (o->max_arcs > 0 && d->narcs > o->max_arcs) ||
        (o->max_mem > 0 && det_mem(d) > o->max_mem)) {
      *complete = 0;
      *eff_beam = top->prio - d->best;
      return 0;
    }
    Task t = heap_pop(d);
    int rc = process_task(d, &t);
    free(t.sub);
    if (rc) return -1;
  }
  return 0;
}

/* topological order (Kahn, smallest state first) and coaccessibility of the
   output states; newid[s] = position among kept states or -1; returns the
   number kept, -1 on nomem.  arcs_by_src: CSR of non-final arcs. */
static int64_t det_order(const Det *d, int64_t *aoff, int64_t *aidx, int32_t *newid,
                         int32_t **order_out) {
  int64_t ns = d->nos;
  int32_t *indeg = (int32_t *)calloc((size_t)ns, sizeof(int32_t));
  int32_t *order = (int32_t *)malloc(sizeof(int32_t) * (size_t)ns);
  int32_t *hp = (int32_t *)malloc(sizeof(int32_t) * (size_t)ns);
  uint8_t *co = (uint8_t *)calloc((size_t)ns, 1);
  uint8_t *isf = (uint8_t *)calloc((size_t)ns, 1);
  if (!indeg || !order || !hp || !co || !isf) {
    free(indeg); free(order); free(hp); free(co); free(isf);
    return -1;
  }
  memset(aoff, 0, sizeof(int64_t) * (size_t)(ns + 1));
  for (int64_t k = 0; k < d->narcs; k++) {
    if (d->arcs[k].dst < 0) { isf[d->arcs[k].src] = 1; continue; }
    aoff[d->arcs[k].src + 1]++;
    indeg[d->arcs[k].dst]++;
  }
  for (int64_t s = 0; s < ns; s++) aoff[s + 1] += aoff[s];
  {
    int64_t *fill = (int64_t *)malloc(sizeof(int64_t) * (size_t)(ns + 1));
    if (!fill) { free(indeg); free(order); free(hp); free(co); free(isf); return -1; }
    memcpy(fill, aoff, sizeof(int64_t) * (size_t)(ns + 1));
    for (int64_t k = 0; k < d->narcs; k++)
      if (d->arcs[k].dst >= 0) aidx[fill[d->arcs[k].src]++] = k;
    free(fill);
  }
  /* min-heap Kahn */
  int64_t nh = 0, no = 0;
  for (int64_t s = 0; s < ns; s++)
    if (indeg[s] == 0) hp[nh++] = (int32_t)s; /* increasing: already a heap */
  while (nh) {
    int32_t s = hp[0], last = hp[--nh];
    int64_t i = 0;
    for (;;) {
      int64_t c = 2 * i + 1;
      if (c >= nh) break;
      if (c + 1 < nh && hp[c + 1] < hp[c]) c++;
      if (hp[c] >= last) break;
      hp[i] = hp[c];
      i = c;
    }
    if (nh) hp[i] = last;
    order[no++] = s;
    for (int64_t j = aoff[s]; j < aoff[s + 1]; j++) {
      int32_t t = d->arcs[aidx[j]].dst;
      if (--indeg[t] == 0) {
        int64_t q = nh++;
        while (q > 0 && hp[(q - 1) / 2] > t) {
          hp[q] = hp[(q - 1) / 2];
          q = (q - 1) / 2;
        }
        hp[q] = t;
      }
    }
  }
  /* (acyclic by construction: no == ns) */
  for (int64_t i = no - 1; i >= 0; i--) {
    int32_t s = order[i];
    uint8_t c = isf[s];
    for (int64_t j = aoff[s]; j < aoff[s + 1] && !c; j++) c = co[d->arcs[aidx[j]].dst];
    co[s] = c;
  }
  int64_t kept = 0;
  for (int64_t s = 0; s < ns; s++) newid[s] = -1;
  if (ns && co[0]) {
    int64_t w = 0;
    for (int64_t i = 0; i < no; i++) {
      int32_t s = order[i];
      if (co[s]) {
        newid[s] = (int32_t)kept++;
        order[w++] = s;
      }
    }
  }
  free(indeg); free(hp); free(co); free(isf);
  *order_out = order;
  return kept;
}

/* phone-pass output -> state-level lattice for the word pass (Kaldi's
   Output to a Lattice, then DeterminizeLatticeDeletePhones) */
static int det_to_ilat(Det *d, int32_t first_phone, ILat *out, char *err, size_t errlen) {
  memset(out, 0, sizeof(*out));
  if (d->nos == 0) return KB_OK;
  const Repo *r = &d->repo;
  int64_t ns = d->nos, na = 0;
  int64_t maxlen = 1;
  for (int64_t k = 0; k < d->narcs; k++) {
    int32_t L = r->len[d->arcs[k].str];
    if (L > maxlen) maxlen = L;
    if (d->arcs[k].dst < 0) {
      ns += L;
      na += L;
    } else {
      ns += L >= 2 ? L - 1 : 0;
      na += L >= 1 ? L : 1;
    }
  }
  if (ns >= INT32_MAX) return kb_fail(err, errlen, KB_ENOMEM, "lattice too large");
  int rc = KB_OK;
  int32_t *src = (int32_t *)malloc(sizeof(int32_t) * (size_t)(na ? na : 1));
  int32_t *dst = (int32_t *)malloc(sizeof(int32_t) * (size_t)(na ? na : 1));
  int32_t *lab = (int32_t *)malloc(sizeof(int32_t) * (size_t)(na ? na : 1));
  int32_t *olab = (int32_t *)malloc(sizeof(int32_t) * (size_t)(na ? na : 1));
  W *w = (W *)malloc(sizeof(W) * (size_t)(na ? na : 1));
  W *fin = (W *)malloc(sizeof(W) * (size_t)ns);
  int32_t *seq = (int32_t *)malloc(sizeof(int32_t) * (size_t)maxlen);
  if (!src || !dst || !lab || !olab || !w || !fin || !seq) {
    rc = kb_fail(err, errlen, KB_ENOMEM, "out of memory in lattice determinization");
    goto done;
  }
  for (int64_t s = 0; s < ns; s++) fin[s].g = fin[s].a = INFINITY;
  int32_t next_state = (int32_t)d->nos;
  int64_t k2 = 0;
  const W one = {0, 0};
  for (int64_t k = 0; k < d->narcs; k++) {
    const TArc *t = &d->arcs[k];
    int32_t L = r->len[t->str];
    repo_vec(r, t->str, seq);
    int32_t cur = t->src;
    int32_t l = t->lab >= first_phone ? 0 : t->lab;
    if (t->dst < 0) {
      for (int32_t i = 0; i < L; i++) {
        int32_t nx = next_state++;
        src[k2] = cur; dst[k2] = nx; lab[k2] = 0; olab[k2] = seq[i];
        w[k2++] = i == 0 ? t->w : one;
        cur = nx;
      }
      fin[cur] = L == 0 ? t->w : one;
    } else {
      for (int32_t i = 0; i + 1 < L; i++) {
        int32_t nx = next_state++;
        src[k2] = cur; dst[k2] = nx; lab[k2] = i == 0 ? l : 0; olab[k2] = seq[i];
        w[k2++] = i == 0 ? t->w : one;
        cur = nx;
      }
      src[k2] = cur; dst[k2] = t->dst; lab[k2] = L <= 1 ? l : 0;
      olab[k2] = L > 0 ? seq[L - 1] : 0;
      w[k2++] = L <= 1 ? t->w : one;
    }
  }
  rc = ilat_build((int32_t)ns, 0, na, src, dst, lab, olab, w, fin, out, err, errlen);
done:
  free(src); free(dst); free(lab); free(olab); free(w); free(fin); free(seq);
  return rc;
}

/* ------------------------------------------------------------------------ */
/* result                                                                    */

typedef struct {
  uint32_t magic;
  int32_t num_states;
  int64_t num_arcs, final_str_len, arc_str_len;
  float *final;
  int64_t *fs_off;
  int32_t *fs_data;
  int32_t *src, *dst, *lab;
  float *weight;
  int64_t *as_off;
  int32_t *as_data;
} LatDetResult;

static void free_ldresult(LatDetResult *r) {
  if (!r) return;
  r->magic = 0;
  free(r->final); free(r->fs_off); free(r->fs_data);
  free(r->src); free(r->dst); free(r->lab); free(r->weight);
  free(r->as_off); free(r->as_data);
  free(r);
}

static int det_to_result(Det *d, LatDetResult *res) {
  int64_t ns = d->nos;
  int rc = -1;
  int64_t *aoff = (int64_t *)malloc(sizeof(int64_t) * (size_t)(ns + 1));
  int64_t *aidx = (int64_t *)malloc(sizeof(int64_t) * (size_t)(d->narcs ? d->narcs : 1));
  int32_t *newid = (int32_t *)malloc(sizeof(int32_t) * (size_t)(ns ? ns : 1));
  int64_t *finarc = (int64_t *)malloc(sizeof(int64_t) * (size_t)(ns ? ns : 1));
  int32_t *order = NULL;
  if (!aoff || !aidx || !newid || !finarc) goto done;
  int64_t kept = ns ? det_order(d, aoff, aidx, newid, &order) : 0;
  if (kept < 0) goto done;
  for (int64_t s = 0; s < ns; s++) finarc[s] = -1;
  for (int64_t k = 0; k < d->narcs; k++)
    if (d->arcs[k].dst < 0) finarc[d->arcs[k].src] = k;
  const Repo *r = &d->repo;
  int64_t na = 0, fsl = 0, asl = 0;
  for (int64_t i = 0; i < kept; i++) {
    int32_t s = order[i];
    if (finarc[s] >= 0) fsl += r->len[d->arcs[finarc[s]].str];
    for (int64_t j = aoff[s]; j < aoff[s + 1]; j++) {
      const TArc *t = &d->arcs[aidx[j]];
      if (newid[t->dst] < 0) continue;
      na++;
      asl += r->len[t->str];
    }
  }
  res->num_states = (int32_t)kept;
  res->num_arcs = na;
  res->final_str_len = fsl;
  res->arc_str_len = asl;
  res->final = (float *)malloc(sizeof(float) * 2 * (size_t)(kept ? kept : 1));
  res->fs_off = (int64_t *)malloc(sizeof(int64_t) * (size_t)(kept + 1));
  res->fs_data = (int32_t *)malloc(sizeof(int32_t) * (size_t)(fsl ? fsl : 1));
  res->src = (int32_t *)malloc(sizeof(int32_t) * (size_t)(na ? na : 1));
  res->dst = (int32_t *)malloc(sizeof(int32_t) * (size_t)(na ? na : 1));
  res->lab = (int32_t *)malloc(sizeof(int32_t) * (size_t)(na ? na : 1));
  res->weight = (float *)malloc(sizeof(float) * 2 * (size_t)(na ? na : 1));
  res->as_off = (int64_t *)malloc(sizeof(int64_t) * (size_t)(na + 1));
  res->as_data = (int32_t *)malloc(sizeof(int32_t) * (size_t)(asl ? asl : 1));
  if (!res->final || !res->fs_off || !res->fs_data || !res->src || !res->dst || !res->lab ||
      !res->weight || !res->as_off || !res->as_data)
    goto done;
  int64_t a = 0, fp = 0, ap = 0;
  res->fs_off[0] = 0;
  res->as_off[0] = 0;
  for (int64_t i = 0; i < kept; i++) {
    int32_t s = order[i];
    if (finarc[s] >= 0) {
      const TArc *t = &d->arcs[finarc[s]];
      res->final[2 * i] = (float)t->w.g;
      res->final[2 * i + 1] = (float)t->w.a;
      repo_vec(r, t->str, res->fs_data + fp);
      fp += r->len[t->str];
    } else {
      res->final[2 * i] = res->final[2 * i + 1] = INFINITY;
    }
    res->fs_off[i + 1] = fp;
    /* this state's arcs, sorted by label (insertion sort: few arcs) */
    int64_t b = aoff[s], e = aoff[s + 1];
    for (int64_t p = b + 1; p < e; p++) {
      int64_t v = aidx[p], q = p;
      while (q > b && d->arcs[aidx[q - 1]].lab > d->arcs[v].lab) {
        aidx[q] = aidx[q - 1];
        q--;
      }
      aidx[q] = v;
    }
    for (int64_t j = b; j < e; j++) {
      const TArc *t = &d->arcs[aidx[j]];
      if (newid[t->dst] < 0) continue;
      res->src[a] = (int32_t)i;
      res->dst[a] = newid[t->dst];
      res->lab[a] = t->lab;
      res->weight[2 * a] = (float)t->w.g;
      res->weight[2 * a + 1] = (float)t->w.a;
      repo_vec(r, t->str, res->as_data + ap);
      ap += r->len[t->str];
      a++;
      res->as_off[a] = ap;
    }
  }
  rc = 0;
done:
  free(aoff); free(aidx); free(newid); free(finarc); free(order);
  return rc;
}

/* ------------------------------------------------------------------------ */
/* one pass with Kaldi's retry loop                                          */

typedef struct {
  int64_t retries, states_created, phone_states, phone_arcs;
  int complete;
  double beam_used, effective_beam;
} Stats;

static int det_pass(const ILat *in, const Opts *o0, Det *d, Stats *st, char *err,
                    size_t errlen) {
  Opts o = *o0;
  ILat pruned;
  int have_pruned = 0;
  const ILat *cur = in;
  for (int iter = 0; iter < LD_MAX_ITERS; iter++) {
    int complete;
    double eff;
    if (det_run(d, cur, &o, &complete, &eff)) {
      det_free(d);
      if (have_pruned) ilat_free(&pruned);
      return kb_fail(err, errlen, KB_ENOMEM, "out of memory in lattice determinization");
    }
    st->states_created += d->nos;
    if (eff >= o.beam * o.retry_cutoff || isinf(o.beam) || iter + 1 == LD_MAX_ITERS) {
      if (!complete) st->complete = 0;
      if (o.beam < st->beam_used) st->beam_used = o.beam;
      if (eff < st->effective_beam) st->effective_beam = eff;
      d->L = NULL; /* the input is not needed for the output */
      if (have_pruned) ilat_free(&pruned);
      return KB_OK;
    }
    det_free(d);
    st->complete = 0;
    st->retries++;
    if (eff < 0) eff = 0;
    double nb = o.beam * sqrt(eff / o.beam);
    if (nb < 0.5 * o.beam) nb = 0.5 * o.beam;
    o.beam = nb;
    ILat next;
    int rc = ilat_prune(cur, nb, &next, err, errlen);
    if (have_pruned) ilat_free(&pruned);
    if (rc) return rc;
    pruned = next;
    have_pruned = 1;
    cur = &pruned;
  }
  return KB_OK; /* unreachable */
}

/* ------------------------------------------------------------------------ */
/* API                                                                       */

int kb_latdet_pruned(int32_t num_states, int64_t num_arcs, int32_t start,
                     const float *final_cost, const int64_t *out_offsets, const int32_t *dst,
                     const int32_t *ilabel, const int32_t *olabel, const float *weight,
                     const int32_t *tid2phone_start, int32_t num_tids, double beam,
                     double delta, int64_t max_mem, int64_t max_states, int64_t max_arcs,
                     double retry_cutoff, int64_t *result_out, int64_t *sizes_out,
                     double *stats_out, char *err, size_t errlen) {
  if (!result_out || !sizes_out || !stats_out)
    return kb_fail(err, errlen, KB_EINVAL, "result_out / sizes_out / stats_out is NULL");
  result_out[0] = 0;
  if (num_states < 0 || num_arcs < 0)
    return kb_fail(err, errlen, KB_EINVAL, "negative lattice size");
  if (num_states == 0 ? start != -1 : (start < 0 || start >= num_states))
    return kb_fail(err, errlen, KB_EINVAL, "start state %d out of range (%d states)",
                   (int)start, (int)num_states);
  if (!(beam > 0)) return kb_fail(err, errlen, KB_EINVAL, "beam must be > 0 (got %g)", beam);
  if (!(delta >= 0)) return kb_fail(err, errlen, KB_EINVAL, "delta must be >= 0");
  if (!(retry_cutoff >= 0 && retry_cutoff < 1))
    return kb_fail(err, errlen, KB_EINVAL, "retry_cutoff must be in [0, 1)");
  if (num_states > 0 && (!final_cost || !out_offsets))
    return kb_fail(err, errlen, KB_EINVAL, "final_cost / out_offsets is NULL");
  if (num_arcs > 0 && (!dst || !ilabel || !olabel || !weight))
    return kb_fail(err, errlen, KB_EINVAL, "arc array is NULL");
  if (tid2phone_start && num_tids < 0)
    return kb_fail(err, errlen, KB_EINVAL, "num_tids must be >= 0");
  if (num_states > 0) {
    int rc = kb_check_offsets("out_offsets", num_states, num_arcs, out_offsets, err, errlen);
    if (rc != KB_OK) return rc;
    for (int32_t s = 0; s < num_states; s++) {
      float g = final_cost[2 * s], a = final_cost[2 * s + 1];
      if (isnan(g) || isnan(a) || g == -INFINITY || a == -INFINITY)
        return kb_fail(err, errlen, KB_EINVAL, "state %d: final weight is NaN or -inf", (int)s);
    }
  } else if (num_arcs != 0) {
    return kb_fail(err, errlen, KB_EINVAL, "arcs in a lattice without states");
  }
  int32_t max_word = 0, max_phone = 0;
  for (int64_t k = 0; k < num_arcs; k++) {
    if (dst[k] < 0 || dst[k] >= num_states)
      return kb_fail(err, errlen, KB_EINVAL, "arc %lld: destination state %d out of range",
                     (long long)k, (int)dst[k]);
    if (olabel[k] < 0)
      return kb_fail(err, errlen, KB_EINVAL, "arc %lld: negative word label %d", (long long)k,
                     (int)olabel[k]);
    if (ilabel[k] < 0 || (tid2phone_start && ilabel[k] > num_tids))
      return kb_fail(err, errlen, KB_EINVAL,
                     "arc %lld: transition-id %d out of range (transition model has %d)",
                     (long long)k, (int)ilabel[k], (int)num_tids);
    float g = weight[2 * k], a = weight[2 * k + 1];
    if (isnan(g) || isnan(a) || g == -INFINITY || a == -INFINITY)
      return kb_fail(err, errlen, KB_EINVAL, "arc %lld: weight is NaN or -inf", (long long)k);
    if (olabel[k] > max_word) max_word = olabel[k];
  }
  if (tid2phone_start) {
    for (int64_t t = 1; t <= num_tids; t++) {
      if (tid2phone_start[t] < 0)
        return kb_fail(err, errlen, KB_EINVAL, "tid2phone_start[%d] is negative", (int)t);
      if (tid2phone_start[t] > max_phone) max_phone = tid2phone_start[t];
    }
    if ((int64_t)max_word + 1 + max_phone >= INT32_MAX)
      return kb_fail(err, errlen, KB_EINVAL, "word / phone labels too large");
  }
  int32_t first_phone = max_word + 1;
  Opts o = {beam, delta, retry_cutoff, max_mem, max_states, max_arcs};
  Stats st = {0, 0, 0, 0, 1, beam, beam};
  int rc = KB_OK;
  int32_t *src = NULL, *lab = NULL, *out = NULL;
  W *w = NULL, *fin = NULL;
  ILat L0, L1;
  memset(&L0, 0, sizeof(L0));
  memset(&L1, 0, sizeof(L1));
  Det d;
  memset(&d, 0, sizeof(d));
  LatDetResult *res = (LatDetResult *)calloc(1, sizeof(LatDetResult));
  if (!res) return kb_fail(err, errlen, KB_ENOMEM, "out of memory in lattice determinization");
  res->magic = LATDET_MAGIC;
  if (num_states > 0) {
    /* raw lattice, inverted (label = word, out = tid), with phones inserted */
    int64_t extra = 0;
    if (tid2phone_start)
      for (int32_t s = 0; s < num_states; s++) {
        if (s == start) continue;
        for (int64_t k = out_offsets[s]; k < out_offsets[s + 1]; k++)
          if (ilabel[k] && tid2phone_start[ilabel[k]] && olabel[k]) extra++;
      }
    int64_t ns = num_states + extra, na = num_arcs + extra;
    if (ns >= INT32_MAX) {
      rc = kb_fail(err, errlen, KB_EINVAL, "lattice too large");
      goto fail;
    }
    src = (int32_t *)malloc(sizeof(int32_t) * (size_t)(na ? na : 1));
    int32_t *dd = (int32_t *)malloc(sizeof(int32_t) * (size_t)(na ? na : 1));
    lab = (int32_t *)malloc(sizeof(int32_t) * (size_t)(na ? na : 1));
    out = (int32_t *)malloc(sizeof(int32_t) * (size_t)(na ? na : 1));
    w = (W *)malloc(sizeof(W) * (size_t)(na ? na : 1));
    fin = (W *)malloc(sizeof(W) * (size_t)ns);
    if (!src || !dd || !lab || !out || !w || !fin) {
      free(dd);
      rc = kb_fail(err, errlen, KB_ENOMEM, "out of memory in lattice determinization");
      goto fail;
    }
    for (int32_t s = 0; s < num_states; s++) {
      fin[s].g = final_cost[2 * s];
      fin[s].a = final_cost[2 * s + 1];
    }
    for (int64_t s = num_states; s < ns; s++) fin[s].g = fin[s].a = INFINITY;
    int32_t nxt = num_states;
    int64_t k2 = num_arcs;
    for (int32_t s = 0; s < num_states; s++)
      for (int64_t k = out_offsets[s]; k < out_offsets[s + 1]; k++) {
        src[k] = s;
        dd[k] = dst[k];
        lab[k] = olabel[k];
        out[k] = ilabel[k];
        w[k].g = weight[2 * k];
        w[k].a = weight[2 * k + 1];
        int32_t ph = (tid2phone_start && s != start && ilabel[k]) ? tid2phone_start[ilabel[k]] : 0;
        if (!ph) continue;
        if (olabel[k] == 0) {
          lab[k] = first_phone + ph;
        } else {
          int32_t x = nxt++;
          src[k2] = x;
          dd[k2] = dst[k];
          lab[k2] = first_phone + ph;
          out[k2] = 0;
          w[k2].g = w[k2].a = 0;
          k2++;
          dd[k] = x;
        }
      }
    rc = ilat_build((int32_t)ns, start, na, src, dd, lab, out, w, fin, &L0, err, errlen);
    free(dd);
    free(src); src = NULL;
    free(lab); lab = NULL;
    free(out); out = NULL;
    free(w); w = NULL;
    free(fin); fin = NULL;
    if (rc) goto fail;
    sizes_out[6] = L0.na;
    const ILat *word_in = &L0;
    if (tid2phone_start) {
      rc = det_pass(&L0, &o, &d, &st, err, errlen);
      if (rc) goto fail;
      ilat_free(&L0);
      rc = det_to_ilat(&d, first_phone, &L1, err, errlen);
      det_free(&d);
      if (rc) goto fail;
      st.phone_states = L1.ns;
      st.phone_arcs = L1.na;
      word_in = &L1;
    }
    rc = det_pass(word_in, &o, &d, &st, err, errlen);
    ilat_free(&L0);
    ilat_free(&L1);
    if (rc) goto fail;
    if (det_to_result(&d, res)) {
      rc = kb_fail(err, errlen, KB_ENOMEM, "out of memory in lattice determinization");
      goto fail;
    }
    det_free(&d);
  } else {
    res->fs_off = (int64_t *)calloc(1, sizeof(int64_t));
    res->as_off = (int64_t *)calloc(1, sizeof(int64_t));
    if (!res->fs_off || !res->as_off) {
      rc = kb_fail(err, errlen, KB_ENOMEM, "out of memory in lattice determinization");
      goto fail;
    }
    sizes_out[6] = 0;
  }
  sizes_out[0] = res->num_states;
  sizes_out[1] = res->num_arcs;
  sizes_out[2] = res->final_str_len;
  sizes_out[3] = res->arc_str_len;
  sizes_out[4] = st.complete;
  sizes_out[5] = st.retries;
  sizes_out[7] = st.states_created;
  stats_out[0] = st.beam_used;
  stats_out[1] = st.effective_beam;
  stats_out[2] = (double)st.phone_states;
  stats_out[3] = (double)st.phone_arcs;
  result_out[0] = (int64_t)(intptr_t)res;
  return KB_OK;
fail:
  free(src); free(lab); free(out); free(w); free(fin);
  ilat_free(&L0);
  ilat_free(&L1);
  det_free(&d);
  free_ldresult(res);
  return rc;
}

static LatDetResult *get_ldresult(int64_t h) {
  LatDetResult *r = (LatDetResult *)(intptr_t)h;
  if (!r || r->magic != LATDET_MAGIC) return NULL;
  return r;
}

int kb_latdet_result_copy(int64_t result, int64_t states_capacity, int64_t arcs_capacity,
                          int64_t final_string_capacity, int64_t arc_string_capacity,
                          float *final_cost, int64_t *final_string_offsets,
                          int32_t *final_string_data, int32_t *arc_src, int32_t *arc_dst,
                          int32_t *arc_label, float *arc_weight, int64_t *arc_string_offsets,
                          int32_t *arc_string_data, char *err, size_t errlen) {
  LatDetResult *r = get_ldresult(result);
  if (!r) return kb_fail(err, errlen, KB_EINVAL, "not a lattice determinization result handle");
  const kb_output outs[] = {
      {final_cost, "final_cost (states)", states_capacity, r->num_states},
      {final_string_offsets, "final_string_offsets (states)", states_capacity, r->num_states},
      {final_string_data, "final_string_data", final_string_capacity, r->final_str_len},
      {arc_src, "arc_src (arcs)", arcs_capacity, r->num_arcs},
      {arc_dst, "arc_dst (arcs)", arcs_capacity, r->num_arcs},
      {arc_label, "arc_label (arcs)", arcs_capacity, r->num_arcs},
      {arc_weight, "arc_weight (arcs)", arcs_capacity, r->num_arcs},
      {arc_string_offsets, "arc_string_offsets (arcs)", arcs_capacity, r->num_arcs},
      {arc_string_data, "arc_string_data", arc_string_capacity, r->arc_str_len},
  };
  int rc = kb_check_capacities(outs, sizeof(outs) / sizeof(outs[0]), err, errlen);
  if (rc != KB_OK) return rc;
  size_t ns = (size_t)r->num_states, na = (size_t)r->num_arcs;
  if (final_cost && ns) memcpy(final_cost, r->final, sizeof(float) * 2 * ns);
  if (final_string_offsets) memcpy(final_string_offsets, r->fs_off, sizeof(int64_t) * (ns + 1));
  if (final_string_data && r->final_str_len)
    memcpy(final_string_data, r->fs_data, sizeof(int32_t) * (size_t)r->final_str_len);
  if (arc_src && na) memcpy(arc_src, r->src, sizeof(int32_t) * na);
  if (arc_dst && na) memcpy(arc_dst, r->dst, sizeof(int32_t) * na);
  if (arc_label && na) memcpy(arc_label, r->lab, sizeof(int32_t) * na);
  if (arc_weight && na) memcpy(arc_weight, r->weight, sizeof(float) * 2 * na);
  if (arc_string_offsets) memcpy(arc_string_offsets, r->as_off, sizeof(int64_t) * (na + 1));
  if (arc_string_data && r->arc_str_len)
    memcpy(arc_string_data, r->as_data, sizeof(int32_t) * (size_t)r->arc_str_len);
  return KB_OK;
}

int kb_latdet_result_free(int64_t result, char *err, size_t errlen) {
  if (result == 0) return KB_OK;
  LatDetResult *r = get_ldresult(result);
  if (!r) return kb_fail(err, errlen, KB_EINVAL, "not a lattice determinization result handle");
  free_ldresult(r);
  return KB_OK;
}
