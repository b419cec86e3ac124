/*
 * Lattice-generating beam search over an HCLG: Kaldi's LatticeFasterDecoder
 * (src/decoder/lattice-faster-decoder.cc, LatticeFasterDecoderTpl with
 * StdToken) followed by what latgen-faster does with the result before
 * writing (GetRawLattice, fst::Connect, GetBestPath / ShortestPath).
 *
 * Semantics kept from Kaldi (see kbind_native.h for the API):
 *   - tokens per (frame, HCLG state) with tot_cost / extra_cost, forward
 *     links (ilabel, olabel, graph_cost, acoustic_cost) pushed on the head
 *     of the token's link list, new tokens pushed on the head of the frame's
 *     token list;
 *   - decodable: LogLikelihood(t, tid) = acoustic_scale * loglike[t, pdf]
 *     (float * float, as DecodableMatrixScaledMapped); acoustic costs of
 *     links carry the per-frame cost_offset (= -best tot_cost of the
 *     previous frame) exactly as Kaldi stores them, and GetRawLattice
 *     subtracts it again (same float rounding);
 *   - GetCutoff (beam, max_active, min_active, beam_delta -> adaptive beam,
 *     nth_element semantics), ProcessEmitting (best-token-first bound on
 *     next_cutoff), ProcessNonemitting (LIFO queue, links of re-visited
 *     tokens regenerated), PruneActiveTokens every prune_interval frames
 *     with delta = lattice_beam * prune_scale, FinalizeDecoding
 *     (PruneForwardLinksFinal with final costs when any token is final,
 *     else all tokens final with cost 0; then PruneForwardLinks delta 0 and
 *     PruneTokensForFrame backwards);
 *   - GetRawLattice(use_final_probs = true): frames in order, tokens of a
 *     frame topologically sorted over their epsilon links; final weight
 *     (final_cost, 0) on final tokens, or One on every last-frame token when
 *     no token is final; then Connect (drops states not on a start->final
 *     path, keeping the order);
 *   - best path: shortest path over the raw lattice with LatticeWeight
 *     comparison (graph+acoustic, ties by graph cost), costs summed in float.
 *
 * Differences: the token hash is an open-addressing table (hash_ratio sizes
 * it); iteration order over a frame's tokens is the frame's token list
 * (Kaldi uses its HashList order), so which of two exactly tied hypotheses
 * wins may differ; the within-frame topological order of lattice states is
 * Kahn's algorithm seeded oldest-token-first (Kaldi's TopSortTokens walks
 * an unordered_map, whose order is unspecified).
 *
 * The graph must have no epsilon cycles (checked in kb_decoder_graph_new;
 * Kaldi asserts on them in TopSortTokens).
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

#define GRAPH_MAGIC 0x4b424447u  /* "KBDG" */
#define RESULT_MAGIC 0x4b424452u /* "KBDR" */

typedef struct {
  uint32_t magic;
  int32_t num_states, start, num_tids, max_pdf;
  int64_t num_arcs;
  /* copies of the caller's arrays, owned by the graph */
  float *final;
  int32_t *dst, *ilabel, *olabel;
  float *weight;
  int64_t *off;
  int32_t *tid2pdf;
  uint8_t *has_eps;
} DecGraph;

typedef struct {
  uint32_t magic;
  int32_t num_frames, reached_final, num_words, num_states;
  int64_t num_arcs;
  float graph_cost, acoustic_cost, final_relative_cost;
  int32_t *ali, *words;
  int32_t *src, *dst, *ilabel, *olabel;
  float *weight, *final;
} DecResult;

/* ------------------------------------------------------------------------ */
/* graph                                                                     */

/* The sizes, start state and array pointers of a graph: all that sizing
   copies of its arrays needs. */
static int check_graph_sizes(int32_t num_states, int64_t num_arcs, int32_t start,
                             int32_t num_tids, const float *final_cost, const int32_t *dst,
                             const int32_t *ilabel, const int32_t *olabel, const float *weight,
                             const int64_t *out_offsets, const int32_t *tid2pdf, char *err,
                             size_t errlen) {
  if (num_states <= 0) return kb_fail(err, errlen, KB_EINVAL, "decoding graph has no states");
  if (num_arcs < 0) return kb_fail(err, errlen, KB_EINVAL, "negative number of arcs");
  if (start < 0 || start >= num_states)
    return kb_fail(err, errlen, KB_EINVAL, "start state %d out of range [0, %d)", (int)start,
                   (int)num_states);
  if (num_tids < 0) return kb_fail(err, errlen, KB_EINVAL, "negative number of transition-ids");
  if (!final_cost || !out_offsets || !tid2pdf ||
      (num_arcs > 0 && (!dst || !ilabel || !olabel || !weight)))
    return kb_fail(err, errlen, KB_EINVAL, "missing graph arrays");
  return KB_OK;
}

int kb_hclg_check(int32_t num_states, int64_t num_arcs, int32_t start, const float *final_cost,
                  const int32_t *dst, const int32_t *ilabel, const int32_t *olabel,
                  const float *weight, const int64_t *out_offsets, const int32_t *tid2pdf,
                  int32_t num_tids, uint8_t **has_eps_out, int32_t *max_pdf_out, char *err,
                  size_t errlen) {
  int rc = check_graph_sizes(num_states, num_arcs, start, num_tids, final_cost, dst, ilabel,
                             olabel, weight, out_offsets, tid2pdf, err, errlen);
  if (rc != KB_OK) return rc;
  rc = kb_check_offsets("out_offsets", num_states, num_arcs, out_offsets, err, errlen);
  if (rc != KB_OK) return rc;
  int32_t max_pdf = -1;
  for (int64_t t = 1; t <= num_tids; t++) {
    if (tid2pdf[t] < 0)
      return kb_fail(err, errlen, KB_EINVAL, "transition-id %d maps to negative pdf-id %d",
                     (int)t, (int)tid2pdf[t]);
    if (tid2pdf[t] > max_pdf) max_pdf = tid2pdf[t];
  }
  for (int32_t s = 0; s < num_states; s++)
    if (isnan(final_cost[s]))
      return kb_fail(err, errlen, KB_EINVAL, "final cost of state %d is NaN", (int)s);
  uint8_t *has_eps = (uint8_t *)calloc((size_t)num_states, 1);
  uint8_t *color = (uint8_t *)calloc((size_t)num_states, 1);
  int32_t *stack = (int32_t *)malloc(sizeof(int32_t) * (size_t)num_states);
  int64_t *pos = (int64_t *)malloc(sizeof(int64_t) * (size_t)num_states);
  if (!has_eps || !color || !stack || !pos) {
    rc = kb_fail(err, errlen, KB_ENOMEM, "out of memory (%d states)", (int)num_states);
    goto done;
  }
  for (int32_t s = 0; s < num_states && rc == KB_OK; s++) {
    for (int64_t a = out_offsets[s]; a < out_offsets[s + 1]; a++) {
      if (dst[a] < 0 || dst[a] >= num_states) {
        rc = kb_fail(err, errlen, KB_EINVAL, "arc %lld (from state %d): destination %d out of "
                     "range [0, %d)", (long long)a, (int)s, (int)dst[a], (int)num_states);
        break;
      }
      if (ilabel[a] < 0 || ilabel[a] > num_tids) {
        rc = kb_fail(err, errlen, KB_EINVAL, "arc %lld (from state %d): input label %d is not "
                     "a transition-id in [0, %d]", (long long)a, (int)s, (int)ilabel[a],
                     (int)num_tids);
        break;
      }
      if (olabel[a] < 0) {
        rc = kb_fail(err, errlen, KB_EINVAL, "arc %lld (from state %d): negative output label "
                     "%d", (long long)a, (int)s, (int)olabel[a]);
        break;
      }
      if (isnan(weight[a])) {
        rc = kb_fail(err, errlen, KB_EINVAL, "arc %lld (from state %d): weight is NaN",
                     (long long)a, (int)s);
        break;
      }
      if (ilabel[a] == 0) has_eps[s] = 1;
    }
  }
  if (rc != KB_OK) goto done;
  /* epsilon-cycle check: iterative DFS over input-epsilon arcs
     (color 0 = new, 1 = on stack, 2 = done) */
  for (int32_t root = 0; root < num_states && rc == KB_OK; root++) {
    if (color[root] || !has_eps[root]) continue;
    int32_t top = 0;
    stack[top++] = root;
    color[root] = 1;
    pos[root] = out_offsets[root];
    while (top > 0) {
      int32_t s = stack[top - 1];
      int pushed = 0;
      while (pos[s] < out_offsets[s + 1]) {
        int64_t a = pos[s]++;
        if (ilabel[a] != 0) continue;
        int32_t d = dst[a];
        if (color[d] == 1) {
          rc = kb_fail(err, errlen, KB_EINVAL, "decoding graph has an epsilon cycle through "
                       "state %d (not allowed, as in Kaldi)", (int)d);
          break;
        }
        if (color[d] == 0) {
          color[d] = 1;
          pos[d] = out_offsets[d];
          stack[top++] = d;
          pushed = 1;
          break;
        }
      }
      if (rc != KB_OK) break;
      if (!pushed) {
        color[s] = 2;
        top--;
      }
    }
  }
  if (rc != KB_OK) goto done;
  if (max_pdf_out) *max_pdf_out = max_pdf;
  if (has_eps_out) {
    *has_eps_out = has_eps;
    has_eps = NULL;
  }
done:
  free(has_eps);
  free(color);
  free(stack);
  free(pos);
  return rc;
}

static void graph_free(DecGraph *g) {
  g->magic = 0;
  free(g->final);
  free(g->dst);
  free(g->ilabel);
  free(g->olabel);
  free(g->weight);
  free(g->off);
  free(g->tid2pdf);
  free(g->has_eps);
  free(g);
}

/* n entries of `size` bytes copied into new memory (at least one byte), or NULL. */
static void *copy_array(const void *src, int64_t n, size_t size) {
  void *p = malloc(n > 0 ? (size_t)n * size : 1);
  if (p && n > 0) memcpy(p, src, (size_t)n * size);
  return p;
}

int kb_decoder_graph_new(int32_t num_states, int64_t num_arcs, int32_t start,
                         const float *final_cost, const int32_t *dst, const int32_t *ilabel,
                         const int32_t *olabel, const float *weight,
                         const int64_t *out_offsets, const int32_t *tid2pdf,
                         int32_t num_tids, int64_t *handle_out, char *err, size_t errlen) {
  if (!handle_out) return kb_fail(err, errlen, KB_EINVAL, "handle_out is NULL");
  handle_out[0] = 0;
  /* the sizes and pointers first (they size the copies), then everything
     else on the copies, which no caller can change afterwards */
  int rc = check_graph_sizes(num_states, num_arcs, start, num_tids, final_cost, dst, ilabel,
                             olabel, weight, out_offsets, tid2pdf, err, errlen);
  if (rc != KB_OK) return rc;
  DecGraph *g = (DecGraph *)calloc(1, sizeof(DecGraph));
  if (!g) return kb_fail(err, errlen, KB_ENOMEM, "out of memory");
  g->magic = GRAPH_MAGIC;
  g->num_states = num_states;
  g->start = start;
  g->num_tids = num_tids;
  g->num_arcs = num_arcs;
  g->final = (float *)copy_array(final_cost, num_states, sizeof(float));
  g->off = (int64_t *)copy_array(out_offsets, (int64_t)num_states + 1, sizeof(int64_t));
  g->dst = (int32_t *)copy_array(dst, num_arcs, sizeof(int32_t));
  g->ilabel = (int32_t *)copy_array(ilabel, num_arcs, sizeof(int32_t));
  g->olabel = (int32_t *)copy_array(olabel, num_arcs, sizeof(int32_t));
  g->weight = (float *)copy_array(weight, num_arcs, sizeof(float));
  g->tid2pdf = (int32_t *)copy_array(tid2pdf, (int64_t)num_tids + 1, sizeof(int32_t));
  if (!g->final || !g->off || !g->dst || !g->ilabel || !g->olabel || !g->weight ||
      !g->tid2pdf) {
    graph_free(g);
    return kb_fail(err, errlen, KB_ENOMEM, "out of memory copying a graph of %d states and "
                   "%lld arcs", (int)num_states, (long long)num_arcs);
  }
  rc = kb_hclg_check(num_states, num_arcs, start, g->final, g->dst, g->ilabel, g->olabel,
                     g->weight, g->off, g->tid2pdf, num_tids, &g->has_eps, &g->max_pdf, err,
                     errlen);
  if (rc != KB_OK) {
    graph_free(g);
    return rc;
  }
  handle_out[0] = (int64_t)(intptr_t)g;
  return KB_OK;
}

static DecGraph *get_graph(int64_t h) {
  DecGraph *g = (DecGraph *)(intptr_t)h;
  if (!g || g->magic != GRAPH_MAGIC) return NULL;
  return g;
}

int kb_decoder_graph_free(int64_t handle, char *err, size_t errlen) {
  if (handle == 0) return KB_OK;
  DecGraph *g = get_graph(handle);
  if (!g) return kb_fail(err, errlen, KB_EINVAL, "not a decoder graph handle");
  graph_free(g);
  return KB_OK;
}

/* ------------------------------------------------------------------------ */
/* decoder state                                                             */

typedef struct {
  float tot_cost, extra_cost;
  int32_t state, links, next;
  int32_t hnext; /* order of Kaldi's HashList (toks_.GetList()) */
} Tok;

typedef struct {
  int32_t next_tok, ilabel, olabel;
  float graph_cost, acoustic_cost;
  int32_t next;
} Link;

typedef struct {
  int32_t toks;
  uint8_t must_prune_forward_links, must_prune_tokens;
} TokList;

typedef struct {
  const DecGraph *g;
  const float *ll;
  int32_t T, D;
  float acoustic_scale, beam, lattice_beam, beam_delta, hash_ratio, prune_scale;
  int32_t max_active, min_active, prune_interval;
  /* pools */
  Tok *tok;
  int32_t tok_cap, tok_used, tok_free, num_toks, start_tok;
  Link *link;
  int32_t link_cap, link_used, link_free;
  /* frames */
  TokList *frames; /* T + 1 */
  int32_t num_frames_plus_one; /* active_toks_.size() */
  float *cost_offsets;         /* T */
  float *scaled;               /* D: acoustic_scale * loglike row */
  /* hash over the newest frame: state -> token */
  int32_t *hkey, *hval;
  int32_t hcap, hcount;
  int32_t *hused; /* slots used, for clearing */
  int32_t hused_cap;
  /* emulation of the element order of Kaldi's HashList<StateId, Token*>
     (bucket = state % hash_size; buckets in order of first use, elements of
     a bucket contiguous in insertion order): it decides the order in which
     GetCutoff / ProcessEmitting / ProcessNonemitting visit tokens, and so
     which tokens survive order-dependent pruning */
  int32_t hl_head, hl_tail_bucket;
  int32_t *bucket_last;
  int64_t khash_size;
  int32_t bucket_cap;
  int32_t *bucket_used;
  int32_t nbucket_used, bucket_used_cap;
  /* scratch */
  int32_t *queue;
  int32_t queue_cap;
  float *tmp;
  int32_t tmp_cap;
  /* finalization */
  int decoding_finalized;
  float *final_cost_of_tok; /* by token index, +inf = not final (NULL if none final) */
  int any_final;
  float final_best_cost, final_relative_cost;
  char *err;
  size_t errlen;
} Dec;

static const float kInf = INFINITY;

static int32_t new_tok(Dec *d, float tot_cost, float extra_cost, int32_t state, int32_t next) {
  int32_t i;
  if (d->tok_free >= 0) {
    i = d->tok_free;
    d->tok_free = d->tok[i].next;
  } else {
    if (d->tok_used == d->tok_cap &&
        kb_grow((void **)&d->tok, &d->tok_cap, d->tok_used + 1, sizeof(Tok)))
      return -1;
    i = d->tok_used++;
  }
  Tok *t = &d->tok[i];
  t->tot_cost = tot_cost;
  t->extra_cost = extra_cost;
  t->state = state;
  t->links = -1;
  t->next = next;
  d->num_toks++;
  return i;
}

static void free_tok(Dec *d, int32_t i) {
  if (i == d->start_tok) d->start_tok = -1;
  d->tok[i].next = d->tok_free;
  d->tok[i].state = -1;
  d->tok_free = i;
  d->num_toks--;
}

static int32_t new_link(Dec *d, int32_t next_tok, int32_t ilabel, int32_t olabel, float gc,
                        float ac, int32_t next) {
  int32_t i;
  if (d->link_free >= 0) {
    i = d->link_free;
    d->link_free = d->link[i].next;
  } else {
    if (d->link_used == d->link_cap &&
        kb_grow((void **)&d->link, &d->link_cap, d->link_used + 1, sizeof(Link)))
      return -1;
    i = d->link_used++;
  }
  Link *l = &d->link[i];
  l->next_tok = next_tok;
  l->ilabel = ilabel;
  l->olabel = olabel;
  l->graph_cost = gc;
  l->acoustic_cost = ac;
  l->next = next;
  return i;
}

static void free_link(Dec *d, int32_t i) {
  d->link[i].next = d->link_free;
  d->link_free = i;
}

static void delete_forward_links(Dec *d, int32_t t) {
  int32_t l = d->tok[t].links;
  while (l >= 0) {
    int32_t m = d->link[l].next;
    free_link(d, l);
    l = m;
  }
  d->tok[t].links = -1;
}

/* -- hash ------------------------------------------------------------------ */

static inline uint32_t hslot(int32_t key, int32_t cap) {
  return ((uint32_t)key * 2654435761u) & (uint32_t)(cap - 1);
}

static void hash_clear(Dec *d) {
  for (int32_t i = 0; i < d->hcount; i++) d->hkey[d->hused[i]] = -1;
  d->hcount = 0;
}

static int hash_alloc(Dec *d, int32_t cap) {
  int32_t *k = (int32_t *)malloc(sizeof(int32_t) * (size_t)cap);
  int32_t *v = (int32_t *)malloc(sizeof(int32_t) * (size_t)cap);
  int32_t *u = (int32_t *)malloc(sizeof(int32_t) * (size_t)(cap / 2 + 1));
  if (!k || !v || !u) {
    free(k);
    free(v);
    free(u);
    return -1;
  }
  for (int32_t i = 0; i < cap; i++) k[i] = -1;
  /* re-insert */
  int32_t n = 0;
  for (int32_t i = 0; i < d->hcount; i++) {
    int32_t s = d->hused[i];
    int32_t key = d->hkey[s];
    uint32_t j = hslot(key, cap);
    while (k[j] >= 0) j = (j + 1) & (uint32_t)(cap - 1);
    k[j] = key;
    v[j] = d->hval[s];
    u[n++] = (int32_t)j;
  }
  free(d->hkey);
  free(d->hval);
  free(d->hused);
  d->hkey = k;
  d->hval = v;
  d->hused = u;
  d->hused_cap = cap / 2 + 1;
  d->hcap = cap;
  d->hcount = n;
  return 0;
}

/* PossiblyResizeHash: capacity >= hash_ratio * num_toks, at least twice the
   count (open addressing keeps the load <= 1/2), a power of 2. */
static int hash_reserve(Dec *d, int64_t num_toks) {
  int64_t want = (int64_t)((float)num_toks * d->hash_ratio);
  if (want < 2 * num_toks) want = 2 * num_toks;
  int64_t cap = d->hcap > 0 ? d->hcap : 1024;
  while (cap < want) cap *= 2;
  if (cap > (1 << 30)) return -1;
  if (cap == d->hcap) return 0;
  return hash_alloc(d, (int32_t)cap);
}

/* returns the slot of key (existing or empty) */
static inline uint32_t hash_find(const Dec *d, int32_t key) {
  uint32_t j = hslot(key, d->hcap);
  while (d->hkey[j] >= 0 && d->hkey[j] != key) j = (j + 1) & (uint32_t)(d->hcap - 1);
  return j;
}

/* HashList::Clear(): returns the old list head; the old elements keep their
   hnext links (valid while iterating the previous frame). */
static int32_t hl_clear(Dec *d) {
  for (int32_t i = 0; i < d->nbucket_used; i++) d->bucket_last[d->bucket_used[i]] = -1;
  d->nbucket_used = 0;
  int32_t head = d->hl_head;
  d->hl_head = -1;
  d->hl_tail_bucket = -1;
  return head;
}

/* HashList::SetSize (only grows, as PossiblyResizeHash calls it). */
static int hl_set_size(Dec *d, int64_t size) {
  if (size <= d->khash_size) return 0;
  if (size > INT32_MAX) return -1;
  if (size > d->bucket_cap) {
    int32_t *b = (int32_t *)realloc(d->bucket_last, sizeof(int32_t) * (size_t)size);
    if (!b) return -1;
    for (int64_t i = d->bucket_cap; i < size; i++) b[i] = -1;
    d->bucket_last = b;
    d->bucket_cap = (int32_t)size;
  }
  d->khash_size = size;
  return 0;
}

/* HashList::Insert of a new element (token t with key state). */
static int hl_insert(Dec *d, int32_t t, int32_t state) {
  int32_t b = (int32_t)((uint64_t)(uint32_t)state % (uint64_t)d->khash_size);
  Tok *tok = &d->tok[t];
  if (d->bucket_last[b] < 0) {
    if (d->hl_tail_bucket < 0) d->hl_head = t;
    else d->tok[d->bucket_last[d->hl_tail_bucket]].hnext = t;
    tok->hnext = -1;
    d->bucket_last[b] = t;
    d->hl_tail_bucket = b;
    if (d->nbucket_used == d->bucket_used_cap &&
        kb_grow((void **)&d->bucket_used, &d->bucket_used_cap, d->nbucket_used + 1,
             sizeof(int32_t)))
      return -1;
    d->bucket_used[d->nbucket_used++] = b;
  } else {
    int32_t last = d->bucket_last[b];
    tok->hnext = d->tok[last].hnext;
    d->tok[last].hnext = t;
    d->bucket_last[b] = t;
  }
  return 0;
}

/* FindOrAddToken; returns token index or -1 (ENOMEM); *changed set. */
static int32_t find_or_add_token(Dec *d, int32_t state, int32_t frame_plus_one, float tot_cost,
                                 int *changed) {
  if ((int64_t)(d->hcount + 1) * 2 > d->hcap) {
    if (hash_alloc(d, d->hcap * 2)) return -1;
  }
  uint32_t j = hash_find(d, state);
  if (d->hkey[j] < 0) {
    TokList *tl = &d->frames[frame_plus_one];
    int32_t t = new_tok(d, tot_cost, 0.0f, state, tl->toks);
    if (t < 0) return -1;
    tl->toks = t;
    if (hl_insert(d, t, state)) return -1;
    d->hkey[j] = state;
    d->hval[j] = t;
    d->hused[d->hcount++] = (int32_t)j;
    if (changed) *changed = 1;
    return t;
  }
  int32_t t = d->hval[j];
  if (d->tok[t].tot_cost > tot_cost) {
    d->tok[t].tot_cost = tot_cost;
    if (changed) *changed = 1;
  } else if (changed) {
    *changed = 0;
  }
  return t;
}

/* -- pruning --------------------------------------------------------------- */

/* Kaldi's link-pruning loop, shared by PruneForwardLinks and
   PruneForwardLinksFinal: drop the links of `tok` whose extra cost exceeds the
   lattice beam and return min(tok_extra_cost, extra cost of each kept link,
   floored at 0). Sets *links_pruned (if not NULL) when a link was dropped. */
static float prune_tok_links(Dec *d, Tok *tok, float tok_extra_cost, int *links_pruned) {
  int32_t l = tok->links, prev = -1;
  while (l >= 0) {
    Link *lk = &d->link[l];
    Tok *nt = &d->tok[lk->next_tok];
    float link_extra_cost = nt->extra_cost +
        ((tok->tot_cost + lk->acoustic_cost + lk->graph_cost) - nt->tot_cost);
    if (link_extra_cost > d->lattice_beam) {
      int32_t nl = lk->next;
      if (prev >= 0) d->link[prev].next = nl;
      else tok->links = nl;
      free_link(d, l);
      l = nl;
      if (links_pruned) *links_pruned = 1;
    } else {
      if (link_extra_cost < 0.0f) link_extra_cost = 0.0f;
      if (link_extra_cost < tok_extra_cost) tok_extra_cost = link_extra_cost;
      prev = l;
      l = lk->next;
    }
  }
  return tok_extra_cost;
}

static void prune_forward_links(Dec *d, int32_t f, int *extra_costs_changed, int *links_pruned,
                                float delta) {
  *extra_costs_changed = 0;
  *links_pruned = 0;
  int changed = 1;
  while (changed) {
    changed = 0;
    for (int32_t t = d->frames[f].toks; t >= 0; t = d->tok[t].next) {
      Tok *tok = &d->tok[t];
      float tok_extra_cost = prune_tok_links(d, tok, kInf, links_pruned);
      if (fabsf(tok_extra_cost - tok->extra_cost) > delta) changed = 1;
      tok->extra_cost = tok_extra_cost;
    }
    if (changed) *extra_costs_changed = 1;
  }
}

static int approx_equal(float a, float b, float rel) {
  if (a == b) return 1;
  float diff = fabsf(a - b);
  if (isinf(diff) || diff != diff) return 0;
  return diff <= rel * (fabsf(a) + fabsf(b));
}

static void prune_tokens_for_frame(Dec *d, int32_t f) {
  int32_t *head = &d->frames[f].toks;
  int32_t prev = -1;
  for (int32_t t = *head, nt; t >= 0; t = nt) {
    nt = d->tok[t].next;
    if (d->tok[t].extra_cost == kInf) {
      if (prev >= 0) d->tok[prev].next = nt;
      else *head = nt;
      delete_forward_links(d, t); /* (Kaldi leaves none: all were pruned) */
      free_tok(d, t);
    } else {
      prev = t;
    }
  }
}

static void prune_active_tokens(Dec *d, float delta) {
  int32_t cur = d->num_frames_plus_one - 1; /* NumFramesDecoded() */
  for (int32_t f = cur - 1; f >= 0; f--) {
    if (d->frames[f].must_prune_forward_links) {
      int ecc = 0, lp = 0;
      prune_forward_links(d, f, &ecc, &lp, delta);
      if (ecc && f > 0) d->frames[f - 1].must_prune_forward_links = 1;
      if (lp) d->frames[f].must_prune_tokens = 1;
      d->frames[f].must_prune_forward_links = 0;
    }
    if (f + 1 < cur && d->frames[f + 1].must_prune_tokens) {
      prune_tokens_for_frame(d, f + 1);
      d->frames[f + 1].must_prune_tokens = 0;
    }
  }
}

/* ComputeFinalCosts over the newest frame's tokens (those in the hash). */
static int compute_final_costs(Dec *d) {
  const DecGraph *g = d->g;
  float best_cost = kInf, best_with_final = kInf;
  d->any_final = 0;
  free(d->final_cost_of_tok);
  d->final_cost_of_tok = (float *)malloc(sizeof(float) * (size_t)(d->tok_used > 0 ? d->tok_used : 1));
  if (!d->final_cost_of_tok) return -1;
  int32_t last = d->num_frames_plus_one - 1;
  (void)last;
  for (int32_t t = d->hl_head; t >= 0; t = d->tok[t].hnext) {
    float fc = g->final[d->tok[t].state];
    float cost = d->tok[t].tot_cost, cwf = cost + fc;
    if (cost < best_cost) best_cost = cost;
    if (cwf < best_with_final) best_with_final = cwf;
    d->final_cost_of_tok[t] = fc;
    if (fc != kInf) d->any_final = 1;
  }
  if (best_cost == kInf && best_with_final == kInf) d->final_relative_cost = kInf;
  else d->final_relative_cost = best_with_final - best_cost;
  d->final_best_cost = best_with_final != kInf ? best_with_final : best_cost;
  return 0;
}

static int prune_forward_links_final(Dec *d) {
  int32_t f = d->num_frames_plus_one - 1;
  if (compute_final_costs(d)) return -1;
  d->decoding_finalized = 1;
  hash_clear(d);
  hl_clear(d);
  int changed = 1;
  const float delta = 1.0e-05f;
  while (changed) {
    changed = 0;
    for (int32_t t = d->frames[f].toks; t >= 0; t = d->tok[t].next) {
      Tok *tok = &d->tok[t];
      float final_cost = !d->any_final ? 0.0f : d->final_cost_of_tok[t];
      float tok_extra_cost = tok->tot_cost + final_cost - d->final_best_cost;
      tok_extra_cost = prune_tok_links(d, tok, tok_extra_cost, NULL);
      if (tok_extra_cost > d->lattice_beam) tok_extra_cost = kInf;
      if (!approx_equal(tok->extra_cost, tok_extra_cost, delta)) changed = 1;
      tok->extra_cost = tok_extra_cost;
    }
  }
  return 0;
}

static int finalize_decoding(Dec *d) {
  int32_t last = d->num_frames_plus_one - 1;
  if (prune_forward_links_final(d)) return -1;
  for (int32_t f = last - 1; f >= 0; f--) {
    int b1, b2;
    prune_forward_links(d, f, &b1, &b2, 0.0f);
    prune_tokens_for_frame(d, f + 1);
  }
  prune_tokens_for_frame(d, 0);
  return 0;
}

/* -- search ---------------------------------------------------------------- */

static void swapf(float *a, float *b) {
  float t = *a;
  *a = *b;
  *b = t;
}

/* std::nth_element on a[lo, hi) (ascending): a[k] gets the k-th smallest,
   [lo, k) <= a[k] <= (k, hi). */
static void nth_element(float *a, int32_t lo, int32_t k, int32_t hi) {
  int32_t l = lo, r = hi - 1;
  while (r > l) {
    int32_t m = l + (r - l) / 2;
    /* median of three as pivot */
    if (a[m] < a[l]) swapf(&a[m], &a[l]);
    if (a[r] < a[l]) swapf(&a[r], &a[l]);
    if (a[r] < a[m]) swapf(&a[r], &a[m]);
    float pivot = a[m];
    int32_t i = l, j = r;
    while (i <= j) {
      while (a[i] < pivot) i++;
      while (pivot < a[j]) j--;
      if (i <= j) {
        swapf(&a[i], &a[j]);
        i++;
        j--;
      }
    }
    if (k <= j) r = j;
    else if (k >= i) l = i;
    else return;
  }
}

/* GetCutoff over the tokens of frame f (its token list). */
static int get_cutoff(Dec *d, int32_t head, float *cutoff, int32_t *tok_count, float *adaptive_beam,
                      int32_t *best_tok) {
  float best_weight = kInf;
  int32_t count = 0;
  *best_tok = -1;
  if (d->max_active == INT32_MAX && d->min_active == 0) {
    for (int32_t t = head; t >= 0; t = d->tok[t].hnext, count++) {
      float w = d->tok[t].tot_cost;
      if (w < best_weight) {
        best_weight = w;
        *best_tok = t;
      }
    }
    *tok_count = count;
    *adaptive_beam = d->beam;
    *cutoff = best_weight + d->beam;
    return 0;
  }
  for (int32_t t = head; t >= 0; t = d->tok[t].hnext) {
    if (count == d->tmp_cap && kb_grow((void **)&d->tmp, &d->tmp_cap, count + 1, sizeof(float)))
      return -1;
    float w = d->tok[t].tot_cost;
    d->tmp[count++] = w;
    if (w < best_weight) {
      best_weight = w;
      *best_tok = t;
    }
  }
  *tok_count = count;
  float beam_cutoff = best_weight + d->beam, min_active_cutoff = kInf, max_active_cutoff = kInf;
  if (count > d->max_active) {
    nth_element(d->tmp, 0, d->max_active, count);
    max_active_cutoff = d->tmp[d->max_active];
  }
  if (max_active_cutoff < beam_cutoff) {
    *adaptive_beam = max_active_cutoff - best_weight + d->beam_delta;
    *cutoff = max_active_cutoff;
    return 0;
  }
  if (count > d->min_active) {
    if (d->min_active == 0) {
      min_active_cutoff = best_weight;
    } else {
      nth_element(d->tmp, 0, d->min_active, count > d->max_active ? d->max_active : count);
      min_active_cutoff = d->tmp[d->min_active];
    }
  }
  if (min_active_cutoff > beam_cutoff) {
    *adaptive_beam = min_active_cutoff - best_weight + d->beam_delta;
    *cutoff = min_active_cutoff;
  } else {
    *adaptive_beam = d->beam;
    *cutoff = beam_cutoff;
  }
  return 0;
}

/* ProcessEmitting: frame = NumFramesDecoded(); returns next_cutoff. */
static int process_emitting(Dec *d, float *next_cutoff_out) {
  const DecGraph *g = d->g;
  int32_t frame = d->num_frames_plus_one - 1;
  d->num_frames_plus_one++;
  TokList *nl = &d->frames[frame + 1];
  nl->toks = -1;
  nl->must_prune_forward_links = 1;
  nl->must_prune_tokens = 1;

  hash_clear(d); /* toks_.Clear(): the previous frame's tokens leave the hash */
  int32_t final_toks = hl_clear(d);
  float cur_cutoff, adaptive_beam;
  int32_t tok_cnt, best_tok;
  if (get_cutoff(d, final_toks, &cur_cutoff, &tok_cnt, &adaptive_beam, &best_tok)) return -1;
  if (hash_reserve(d, tok_cnt)) return -1;
  /* PossiblyResizeHash */
  if (hl_set_size(d, (int64_t)((float)tok_cnt * d->hash_ratio))) return -1;

  const float *row = d->ll + (size_t)frame * (size_t)d->D;
  for (int32_t p = 0; p < d->D; p++) d->scaled[p] = d->acoustic_scale * row[p];
  const float *sc = d->scaled;
  const int32_t *t2p = g->tid2pdf;

  float next_cutoff = kInf, cost_offset = 0.0f;
  if (best_tok >= 0) {
    Tok *tok = &d->tok[best_tok];
    cost_offset = -tok->tot_cost;
    int32_t s = tok->state;
    for (int64_t a = g->off[s]; a < g->off[s + 1]; a++) {
      int32_t il = g->ilabel[a];
      if (il != 0) {
        float new_weight = g->weight[a] + cost_offset - sc[t2p[il]] + tok->tot_cost;
        if (new_weight + adaptive_beam < next_cutoff) next_cutoff = new_weight + adaptive_beam;
      }
    }
  }
  d->cost_offsets[frame] = cost_offset;

  for (int32_t t = final_toks; t >= 0; t = d->tok[t].hnext) {
    if (!(d->tok[t].tot_cost <= cur_cutoff)) continue;
    int32_t s = d->tok[t].state;
    for (int64_t a = g->off[s]; a < g->off[s + 1]; a++) {
      int32_t il = g->ilabel[a];
      if (il == 0) continue;
      float ac_cost = cost_offset - sc[t2p[il]], graph_cost = g->weight[a],
            cur_cost = d->tok[t].tot_cost, tot_cost = cur_cost + ac_cost + graph_cost;
      if (tot_cost >= next_cutoff) continue;
      else if (tot_cost + adaptive_beam < next_cutoff) next_cutoff = tot_cost + adaptive_beam;
      int32_t nt = find_or_add_token(d, g->dst[a], frame + 1, tot_cost, NULL);
      if (nt < 0) return -1;
      int32_t l = new_link(d, nt, il, g->olabel[a], graph_cost, ac_cost, d->tok[t].links);
      if (l < 0) return -1;
      d->tok[t].links = l;
    }
  }
  *next_cutoff_out = next_cutoff;
  return 0;
}

/* ProcessNonemitting over the newest frame's tokens. */
static int process_nonemitting(Dec *d, float cutoff) {
  const DecGraph *g = d->g;
  int32_t fp1 = d->num_frames_plus_one - 1; /* frame + 1 */
  int32_t qn = 0;
  for (int32_t t = d->hl_head; t >= 0; t = d->tok[t].hnext) {
    if (g->has_eps[d->tok[t].state]) {
      if (qn == d->queue_cap && kb_grow((void **)&d->queue, &d->queue_cap, qn + 1, sizeof(int32_t)))
        return -1;
      d->queue[qn++] = t;
    }
  }
  while (qn > 0) {
    int32_t t = d->queue[--qn];
    float cur_cost = d->tok[t].tot_cost;
    if (cur_cost >= cutoff) continue;
    delete_forward_links(d, t);
    int32_t s = d->tok[t].state;
    for (int64_t a = g->off[s]; a < g->off[s + 1]; a++) {
      if (g->ilabel[a] != 0) continue;
      float graph_cost = g->weight[a], tot_cost = cur_cost + graph_cost;
      if (tot_cost < cutoff) {
        int changed = 0;
        int32_t nt = find_or_add_token(d, g->dst[a], fp1, tot_cost, &changed);
        if (nt < 0) return -1;
        int32_t l = new_link(d, nt, 0, g->olabel[a], graph_cost, 0.0f, d->tok[t].links);
        if (l < 0) return -1;
        d->tok[t].links = l;
        if (changed && g->has_eps[g->dst[a]]) {
          if (qn == d->queue_cap &&
              kb_grow((void **)&d->queue, &d->queue_cap, qn + 1, sizeof(int32_t)))
            return -1;
          d->queue[qn++] = nt;
        }
      }
    }
  }
  return 0;
}

/* ------------------------------------------------------------------------ */
/* raw lattice                                                               */

static void free_result(DecResult *r) {
  if (!r) return;
  r->magic = 0;
  free(r->ali);
  free(r->words);
  free(r->src);
  free(r->dst);
  free(r->ilabel);
  free(r->olabel);
  free(r->weight);
  free(r->final);
  free(r);
}

/* GetRawLattice + Connect + ShortestPath into r. Returns KB_OK or an error. */
static int build_lattice(Dec *d, DecResult *r) {
  int32_t nf1 = d->num_frames_plus_one;
  int32_t ncap = d->tok_used > 0 ? d->tok_used : 1;
  int32_t *state_of = (int32_t *)malloc(sizeof(int32_t) * (size_t)ncap);
  int32_t *indeg = (int32_t *)calloc((size_t)ncap, sizeof(int32_t));
  int32_t *order = NULL;
  int64_t *soff = NULL;
  uint8_t *keep = NULL;
  int32_t *newid = NULL;
  int32_t *bp = NULL;
  float *dg = NULL, *da = NULL;
  int rc = KB_OK;
  int32_t n = 0;
  for (int32_t f = 0; f < nf1; f++)
    for (int32_t t = d->frames[f].toks; t >= 0; t = d->tok[t].next) n++;
  order = (int32_t *)malloc(sizeof(int32_t) * (size_t)(n > 0 ? n : 1)); /* state -> token */
  if (!state_of || !indeg || !order) {
    rc = kb_fail(d->err, d->errlen, KB_ENOMEM, "out of memory building the lattice");
    goto done;
  }
  for (int32_t f = 0; f < nf1; f++) {
    if (d->frames[f].toks < 0) {
      rc = kb_fail(d->err, d->errlen, KB_ENOPATH,
                   "no tokens active on frame %d: cannot produce a lattice", (int)f);
      goto done;
    }
  }
  /* number states: per frame, Kahn over epsilon links, oldest token first */
  int32_t ns = 0;
  for (int32_t f = 0; f < nf1; f++) {
    int32_t first = ns;
    /* collect the frame's tokens oldest-first into order[first..] */
    int32_t cnt = 0;
    for (int32_t t = d->frames[f].toks; t >= 0; t = d->tok[t].next) cnt++;
    int32_t i = first + cnt;
    for (int32_t t = d->frames[f].toks; t >= 0; t = d->tok[t].next) order[--i] = t;
    for (int32_t k = first; k < first + cnt; k++) indeg[order[k]] = 0;
    for (int32_t k = first; k < first + cnt; k++)
      for (int32_t l = d->tok[order[k]].links; l >= 0; l = d->link[l].next)
        if (d->link[l].ilabel == 0) indeg[d->link[l].next_tok]++;
    /* Kahn: stable-ish; use state_of as a "placed" marker via a queue in
       a temporary region: we emit into ord[] then copy back */
    int32_t *ord = (int32_t *)malloc(sizeof(int32_t) * (size_t)(cnt > 0 ? cnt : 1));
    int32_t *stk = (int32_t *)malloc(sizeof(int32_t) * (size_t)(cnt > 0 ? cnt : 1));
    if (!ord || !stk) {
      free(ord);
      free(stk);
      rc = kb_fail(d->err, d->errlen, KB_ENOMEM, "out of memory building the lattice");
      goto done;
    }
    int32_t no = 0;
    /* seeds in oldest-first order; process with a FIFO over ord itself */
    for (int32_t k = first; k < first + cnt; k++)
      if (indeg[order[k]] == 0) ord[no++] = order[k];
    for (int32_t h = 0; h < no; h++) {
      int32_t t = ord[h];
      int32_t ns2 = 0;
      for (int32_t l = d->tok[t].links; l >= 0; l = d->link[l].next)
        if (d->link[l].ilabel == 0 && --indeg[d->link[l].next_tok] == 0)
          stk[ns2++] = d->link[l].next_tok;
      /* links are newest-first; append in reverse (arc order) */
      while (ns2 > 0) ord[no++] = stk[--ns2];
    }
    free(stk);
    if (no != cnt) {
      free(ord);
      rc = kb_fail(d->err, d->errlen, KB_EINVAL, "epsilon cycle among the tokens of frame %d",
                   (int)f);
      goto done;
    }
    for (int32_t k = 0; k < cnt; k++) {
      order[first + k] = ord[k];
      state_of[ord[k]] = first + k;
    }
    free(ord);
    ns = first + cnt;
  }
  /* arcs: count, then fill grouped by state */
  int64_t na = 0;
  for (int32_t s = 0; s < ns; s++)
    for (int32_t l = d->tok[order[s]].links; l >= 0; l = d->link[l].next) na++;
  soff = (int64_t *)malloc(sizeof(int64_t) * (size_t)(ns + 1));
  keep = (uint8_t *)calloc((size_t)ns, 1);
  newid = (int32_t *)malloc(sizeof(int32_t) * (size_t)ns);
  int32_t *adst = (int32_t *)malloc(sizeof(int32_t) * (size_t)(na > 0 ? na : 1));
  int32_t *ail = (int32_t *)malloc(sizeof(int32_t) * (size_t)(na > 0 ? na : 1));
  int32_t *aol = (int32_t *)malloc(sizeof(int32_t) * (size_t)(na > 0 ? na : 1));
  float *aw = (float *)malloc(sizeof(float) * 2 * (size_t)(na > 0 ? na : 1));
  float *fin = (float *)malloc(sizeof(float) * 2 * (size_t)ns);
  uint8_t *acc = (uint8_t *)calloc((size_t)ns, 1);
  if (!soff || !keep || !newid || !adst || !ail || !aol || !aw || !fin || !acc) {
    free(adst);
    free(ail);
    free(aol);
    free(aw);
    free(fin);
    free(acc);
    rc = kb_fail(d->err, d->errlen, KB_ENOMEM, "out of memory building the lattice");
    goto done;
  }
  int32_t last = nf1 - 1;
  int64_t k = 0;
  for (int32_t f = 0, s = 0; f < nf1; f++) {
    int32_t cnt = 0;
    for (int32_t t = d->frames[f].toks; t >= 0; t = d->tok[t].next) cnt++;
    for (int32_t e = s + cnt; s < e; s++) {
      int32_t t = order[s];
      soff[s] = k;
      for (int32_t l = d->tok[t].links; l >= 0; l = d->link[l].next, k++) {
        const Link *lk = &d->link[l];
        float cost_offset = lk->ilabel != 0 ? d->cost_offsets[f] : 0.0f;
        adst[k] = state_of[lk->next_tok];
        ail[k] = lk->ilabel;
        aol[k] = lk->olabel;
        aw[2 * k] = lk->graph_cost;
        aw[2 * k + 1] = lk->acoustic_cost - cost_offset;
      }
      fin[2 * s] = kInf;
      fin[2 * s + 1] = kInf;
      if (f == last) {
        if (d->any_final) {
          float fc = d->final_cost_of_tok[t];
          if (fc != kInf) {
            fin[2 * s] = fc;
            fin[2 * s + 1] = 0.0f;
          }
        } else {
          fin[2 * s] = 0.0f;
          fin[2 * s + 1] = 0.0f;
        }
      }
    }
  }
  soff[ns] = k;
  /* Connect: accessible (forward, states are topologically numbered) and
     coaccessible (backward) */
  /* the start token has no incoming links and is the oldest of frame 0, so
     Kahn's order puts it first: state 0, as Kaldi's GetRawLattice assumes */
  if (d->start_tok < 0 || state_of[d->start_tok] != 0) {
    free(adst);
    free(ail);
    free(aol);
    free(aw);
    free(fin);
    free(acc);
    rc = kb_fail(d->err, d->errlen, KB_ENOPATH, "the start token did not survive pruning");
    goto done;
  }
  acc[0] = 1;
  for (int32_t s = 0; s < ns; s++)
    if (acc[s])
      for (int64_t a = soff[s]; a < soff[s + 1]; a++) acc[adst[a]] = 1;
  for (int32_t s = ns - 1; s >= 0; s--) {
    uint8_t co = fin[2 * s] != kInf || fin[2 * s + 1] != kInf;
    for (int64_t a = soff[s]; a < soff[s + 1] && !co; a++) co = keep[adst[a]];
    keep[s] = co;
  }
  int32_t nkeep = 0;
  int64_t nakeep = 0;
  for (int32_t s = 0; s < ns; s++) {
    keep[s] = keep[s] && acc[s];
    newid[s] = keep[s] ? nkeep++ : -1;
  }
  for (int32_t s = 0; s < ns; s++)
    if (keep[s])
      for (int64_t a = soff[s]; a < soff[s + 1]; a++) nakeep += keep[adst[a]] ? 1 : 0;
  free(acc);
  r->num_states = nkeep;
  r->num_arcs = nakeep;
  r->src = (int32_t *)malloc(sizeof(int32_t) * (size_t)(nakeep > 0 ? nakeep : 1));
  r->dst = (int32_t *)malloc(sizeof(int32_t) * (size_t)(nakeep > 0 ? nakeep : 1));
  r->ilabel = (int32_t *)malloc(sizeof(int32_t) * (size_t)(nakeep > 0 ? nakeep : 1));
  r->olabel = (int32_t *)malloc(sizeof(int32_t) * (size_t)(nakeep > 0 ? nakeep : 1));
  r->weight = (float *)malloc(sizeof(float) * 2 * (size_t)(nakeep > 0 ? nakeep : 1));
  r->final = (float *)malloc(sizeof(float) * 2 * (size_t)(nkeep > 0 ? nkeep : 1));
  bp = (int32_t *)malloc(sizeof(int32_t) * (size_t)(nkeep > 0 ? nkeep : 1));
  dg = (float *)malloc(sizeof(float) * (size_t)(nkeep > 0 ? nkeep : 1));
  da = (float *)malloc(sizeof(float) * (size_t)(nkeep > 0 ? nkeep : 1));
  if (!r->src || !r->dst || !r->ilabel || !r->olabel || !r->weight || !r->final || !bp || !dg ||
      !da) {
    free(adst);
    free(ail);
    free(aol);
    free(aw);
    free(fin);
    rc = kb_fail(d->err, d->errlen, KB_ENOMEM, "out of memory building the lattice");
    goto done;
  }
  int64_t j = 0;
  for (int32_t s = 0; s < ns; s++) {
    if (!keep[s]) continue;
    int32_t ss = newid[s];
    r->final[2 * ss] = fin[2 * s];
    r->final[2 * ss + 1] = fin[2 * s + 1];
    for (int64_t a = soff[s]; a < soff[s + 1]; a++) {
      if (!keep[adst[a]]) continue;
      r->src[j] = ss;
      r->dst[j] = newid[adst[a]];
      r->ilabel[j] = ail[a];
      r->olabel[j] = aol[a];
      r->weight[2 * j] = aw[2 * a];
      r->weight[2 * j + 1] = aw[2 * a + 1];
      j++;
    }
  }
  free(adst);
  free(ail);
  free(aol);
  free(aw);
  free(fin);
  /* shortest path (LatticeWeight order: v1+v2, then v1), float sums */
  if (nkeep == 0) {
    rc = kb_fail(d->err, d->errlen, KB_ENOPATH, "the lattice is empty after Connect "
                 "(no path from the start to a surviving token)");
    goto done;
  }
  for (int32_t s = 0; s < nkeep; s++) {
    dg[s] = kInf;
    da[s] = kInf;
    bp[s] = -1;
  }
  dg[0] = 0.0f;
  da[0] = 0.0f;
  for (int64_t a = 0; a < nakeep; a++) {
    int32_t s = r->src[a], t = r->dst[a];
    if (dg[s] == kInf) continue;
    float g2 = dg[s] + r->weight[2 * a], a2 = da[s] + r->weight[2 * a + 1];
    float f1 = g2 + a2, f2 = dg[t] + da[t];
    if (f1 < f2 || (f1 == f2 && g2 < dg[t])) {
      dg[t] = g2;
      da[t] = a2;
      bp[t] = (int32_t)a;
    }
  }
  int32_t best = -1;
  float bg = kInf, ba = kInf;
  for (int32_t s = 0; s < nkeep; s++) {
    if (r->final[2 * s] == kInf && r->final[2 * s + 1] == kInf) continue;
    if (dg[s] == kInf) continue;
    float g2 = dg[s] + r->final[2 * s], a2 = da[s] + r->final[2 * s + 1];
    float f1 = g2 + a2, f2 = bg + ba;
    if (best < 0 || f1 < f2 || (f1 == f2 && g2 < bg)) {
      best = s;
      bg = g2;
      ba = a2;
    }
  }
  if (best < 0) {
    rc = kb_fail(d->err, d->errlen, KB_ENOPATH, "no path to a final state in the lattice");
    goto done;
  }
  /* trace back: collect arcs, then sum in path order */
  int32_t plen = 0;
  for (int32_t s = best; bp[s] >= 0; s = r->src[bp[s]]) plen++;
  int32_t *path = (int32_t *)malloc(sizeof(int32_t) * (size_t)(plen > 0 ? plen : 1));
  r->ali = (int32_t *)malloc(sizeof(int32_t) * (size_t)(plen > 0 ? plen : 1));
  r->words = (int32_t *)malloc(sizeof(int32_t) * (size_t)(plen > 0 ? plen : 1));
  if (!path || !r->ali || !r->words) {
    free(path);
    rc = kb_fail(d->err, d->errlen, KB_ENOMEM, "out of memory");
    goto done;
  }
  {
    int32_t i = plen;
    for (int32_t s = best; bp[s] >= 0; s = r->src[bp[s]]) path[--i] = bp[s];
  }
  float gsum = 0.0f, asum = 0.0f;
  int32_t nali = 0, nw = 0;
  for (int32_t i = 0; i < plen; i++) {
    int32_t a = path[i];
    gsum += r->weight[2 * a];
    asum += r->weight[2 * a + 1];
    if (r->ilabel[a] != 0) r->ali[nali++] = r->ilabel[a];
    if (r->olabel[a] != 0) r->words[nw++] = r->olabel[a];
  }
  gsum += r->final[2 * best];
  asum += r->final[2 * best + 1];
  free(path);
  if (nali != d->T) {
    rc = kb_fail(d->err, d->errlen, KB_EINVAL, "internal error: best path has %d emitting "
                 "arcs for %d frames", (int)nali, (int)d->T);
    goto done;
  }
  r->num_words = nw;
  r->graph_cost = gsum;
  r->acoustic_cost = asum;
done:
  free(state_of);
  free(indeg);
  free(order);
  free(soff);
  free(keep);
  free(newid);
  free(bp);
  free(dg);
  free(da);
  return rc;
}

static void free_dec(Dec *d) {
  free(d->tok);
  free(d->link);
  free(d->frames);
  free(d->cost_offsets);
  free(d->scaled);
  free(d->hkey);
  free(d->hval);
  free(d->hused);
  free(d->queue);
  free(d->tmp);
  free(d->final_cost_of_tok);
  free(d->bucket_last);
  free(d->bucket_used);
}

int kb_decode_lattice_faster(int64_t graph, const float *loglikes, int32_t num_frames,
                             int32_t num_cols, float acoustic_scale, float beam,
                             int32_t max_active, int32_t min_active, float lattice_beam,
                             int32_t prune_interval, float beam_delta, float hash_ratio,
                             float prune_scale, int64_t *result_out, int64_t *sizes_out,
                             char *err, size_t errlen) {
  if (!result_out || !sizes_out) return kb_fail(err, errlen, KB_EINVAL, "NULL output");
  result_out[0] = 0;
  const DecGraph *g = get_graph(graph);
  if (!g) return kb_fail(err, errlen, KB_EINVAL, "not a decoder graph handle");
  if (num_frames < 0 || num_cols <= 0)
    return kb_fail(err, errlen, KB_EINVAL, "bad log-likelihood matrix: %d frames x %d columns",
                   (int)num_frames, (int)num_cols);
  if (num_cols <= g->max_pdf)
    return kb_fail(err, errlen, KB_EINVAL, "loglikes have %d columns but the transition "
                   "model has pdf-ids up to %d", (int)num_cols, (int)g->max_pdf);
  if (!(beam > 0.0f) || !(lattice_beam > 0.0f) || max_active <= 1 || min_active < 0 ||
      min_active > max_active || prune_interval <= 0 || !(beam_delta > 0.0f) ||
      !(hash_ratio >= 1.0f) || !(prune_scale > 0.0f && prune_scale < 1.0f) ||
      isnan(acoustic_scale))
    return kb_fail(err, errlen, KB_EINVAL, "invalid decoder options (need beam > 0, "
                   "lattice_beam > 0, max_active > 1, 0 <= min_active <= max_active, "
                   "prune_interval > 0, beam_delta > 0, hash_ratio >= 1, 0 < prune_scale < 1)");
  if (num_frames == 0)
    return kb_fail(err, errlen, KB_ENOPATH, "zero-length utterance: no frames to decode");
  if (!loglikes) return kb_fail(err, errlen, KB_EINVAL, "loglikes is NULL");
  for (int32_t t = 0; t < num_frames; t++) {
    const float *row = loglikes + (size_t)t * (size_t)num_cols;
    for (int32_t p = 0; p < num_cols; p++) {
      if (isnan(row[p]) || row[p] == INFINITY)
        return kb_fail(err, errlen, KB_EINVAL, "loglike at frame %d, pdf %d is %s", (int)t,
                       (int)p, isnan(row[p]) ? "NaN" : "+inf");
    }
  }
  Dec dd;
  memset(&dd, 0, sizeof(dd));
  Dec *d = &dd;
  d->g = g;
  d->ll = loglikes;
  d->T = num_frames;
  d->D = num_cols;
  d->acoustic_scale = acoustic_scale;
  d->beam = beam;
  d->lattice_beam = lattice_beam;
  d->beam_delta = beam_delta;
  d->hash_ratio = hash_ratio;
  d->prune_scale = prune_scale;
  d->max_active = max_active;
  d->min_active = min_active;
  d->prune_interval = prune_interval;
  d->tok_free = -1;
  d->link_free = -1;
  d->hl_head = -1;
  d->hl_tail_bucket = -1;
  d->err = err;
  d->errlen = errlen;
  int rc = KB_OK;
  DecResult *r = NULL;
  d->frames = (TokList *)malloc(sizeof(TokList) * ((size_t)num_frames + 1));
  d->cost_offsets = (float *)calloc((size_t)num_frames, sizeof(float));
  d->scaled = (float *)malloc(sizeof(float) * (size_t)num_cols);
  if (!d->frames || !d->cost_offsets || !d->scaled || hash_reserve(d, 1000) ||
      hl_set_size(d, 1000)) /* toks_.SetSize(1000) */
    goto nomem;

  /* InitDecoding */
  d->num_frames_plus_one = 1;
  d->frames[0].toks = -1;
  d->frames[0].must_prune_forward_links = 1;
  d->frames[0].must_prune_tokens = 1;
  {
    int32_t st = find_or_add_token(d, g->start, 0, 0.0f, NULL);
    if (st < 0) goto nomem;
    d->start_tok = st;
  }
  if (process_nonemitting(d, beam)) goto nomem;
  /* AdvanceDecoding */
  while (d->num_frames_plus_one - 1 < num_frames) {
    if ((d->num_frames_plus_one - 1) % prune_interval == 0)
      prune_active_tokens(d, lattice_beam * prune_scale);
    float cutoff;
    if (process_emitting(d, &cutoff)) goto nomem;
    if (process_nonemitting(d, cutoff)) goto nomem;
  }
  /* FinalizeDecoding */
  if (finalize_decoding(d)) goto nomem;

  r = (DecResult *)calloc(1, sizeof(DecResult));
  if (!r) goto nomem;
  r->magic = RESULT_MAGIC;
  r->num_frames = num_frames;
  r->reached_final = d->final_relative_cost != kInf;
  r->final_relative_cost = d->final_relative_cost;
  rc = build_lattice(d, r);
  if (rc != KB_OK) {
    free_result(r);
    free_dec(d);
    return rc;
  }
  sizes_out[0] = r->num_frames;
  sizes_out[1] = r->num_words;
  sizes_out[2] = r->num_states;
  sizes_out[3] = r->num_arcs;
  sizes_out[4] = r->reached_final;
  result_out[0] = (int64_t)(intptr_t)r;
  free_dec(d);
  return KB_OK;
nomem:
  free_dec(d);
  return kb_fail(err, errlen, KB_ENOMEM, "out of memory while decoding");
}

static DecResult *get_result(int64_t h) {
  DecResult *r = (DecResult *)(intptr_t)h;
  if (!r || r->magic != RESULT_MAGIC) return NULL;
  return r;
}

int kb_decode_result_copy(int64_t result, int32_t frames_capacity, int32_t words_capacity,
                          int32_t states_capacity, int64_t arcs_capacity,
                          int32_t *alignment, int32_t *words, float *costs,
                          int32_t *lat_src, int32_t *lat_dst, int32_t *lat_ilabel,
                          int32_t *lat_olabel, float *lat_weight, float *lat_final,
                          char *err, size_t errlen) {
  DecResult *r = get_result(result);
  if (!r) return kb_fail(err, errlen, KB_EINVAL, "not a decode result handle");
  const kb_output outs[] = {
      {alignment, "alignment (frames)", frames_capacity, r->num_frames},
      {words, "words", words_capacity, r->num_words},
      {lat_src, "lat_src (arcs)", arcs_capacity, r->num_arcs},
      {lat_dst, "lat_dst (arcs)", arcs_capacity, r->num_arcs},
      {lat_ilabel, "lat_ilabel (arcs)", arcs_capacity, r->num_arcs},
      {lat_olabel, "lat_olabel (arcs)", arcs_capacity, r->num_arcs},
      {lat_weight, "lat_weight (arcs)", arcs_capacity, r->num_arcs},
      {lat_final, "lat_final (states)", states_capacity, r->num_states},
  };
  int rc = kb_check_capacities(outs, sizeof(outs) / sizeof(outs[0]), err, errlen);
  if (rc != KB_OK) return rc;
  if (alignment) memcpy(alignment, r->ali, sizeof(int32_t) * (size_t)r->num_frames);
  if (words && r->num_words) memcpy(words, r->words, sizeof(int32_t) * (size_t)r->num_words);
  if (costs) {
    costs[0] = r->graph_cost;
    costs[1] = r->acoustic_cost;
    costs[2] = r->final_relative_cost;
  }
  size_t na = (size_t)r->num_arcs;
  if (lat_src && na) memcpy(lat_src, r->src, sizeof(int32_t) * na);
  if (lat_dst && na) memcpy(lat_dst, r->dst, sizeof(int32_t) * na);
  if (lat_ilabel && na) memcpy(lat_ilabel, r->ilabel, sizeof(int32_t) * na);
  if (lat_olabel && na) memcpy(lat_olabel, r->olabel, sizeof(int32_t) * na);
  if (lat_weight && na) memcpy(lat_weight, r->weight, sizeof(float) * 2 * na);
  if (lat_final && r->num_states)
    memcpy(lat_final, r->final, sizeof(float) * 2 * (size_t)r->num_states);
  return KB_OK;
}

int kb_decode_result_free(int64_t result, char *err, size_t errlen) {
  if (result == 0) return KB_OK;
  DecResult *r = get_result(result);
  if (!r) return kb_fail(err, errlen, KB_EINVAL, "not a decode result handle");
  free_result(r);
  return KB_OK;
}
