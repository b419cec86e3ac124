/*
 * Best paths of one acyclic lattice under many weight settings at once: the
 * lmwt x word-insertion-penalty sweep of Kaldi's score.sh, which for each
 * setting runs lattice-scale --inv-acoustic-scale=lmwt, lattice-add-penalty
 * and lattice-best-path. The topological order is computed once and shared.
 *
 * Arithmetic mirrors kbind.io.lattice (Lattice.scale + best_path) and
 * kbind.decode.scoring.add_word_insertion_penalty exactly, so results are
 * identical to the Python path: scaled acoustic cost = float(ac_scale * a) in
 * double, graph cost + float(wip) in float on arcs with a word; path costs
 * summed in double as (total, graph) pairs compared lexicographically (ties
 * to the lower graph cost, as Kaldi's LatticeWeight Compare); Kahn's order
 * with a LIFO stack; the first best final state in state order.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

int kb_lattice_best_paths(int32_t num_states, int64_t num_arcs, int32_t start,
                          const int64_t *offsets,
                          const int32_t *dst, const float *graph, const float *acoustic,
                          const int32_t *olabel, const float *final_graph,
                          const float *final_acoustic, int32_t num_settings,
                          const double *ac_scale, const float *wip, int32_t *best_final,
                          int64_t *back, char *err, size_t errlen) {
  if (num_states < 0 || num_arcs < 0 || num_settings < 0)
    return kb_fail(err, errlen, KB_EINVAL, "negative size (%d states, %lld arcs, %d settings)",
                   (int)num_states, (long long)num_arcs, (int)num_settings);
  for (int32_t k = 0; k < num_settings; k++) best_final[k] = -1;
  if (num_states == 0 || start < 0) return KB_OK;
  if (start >= num_states)
    return kb_fail(err, errlen, KB_EINVAL, "start state %d out of range [0, %d)", (int)start,
                   (int)num_states);
  int rc = kb_check_offsets("arc offsets", num_states, num_arcs, offsets, err, errlen);
  if (rc != KB_OK) return rc;
  for (int64_t a = 0; a < num_arcs; a++)
    if (dst[a] < 0 || dst[a] >= num_states)
      return kb_fail(err, errlen, KB_EINVAL, "arc %lld: next state %d out of range [0, %d)",
                     (long long)a, (int)dst[a], (int)num_states);

  int32_t *indeg = calloc((size_t)num_states, sizeof(int32_t));
  int32_t *order = malloc((size_t)num_states * sizeof(int32_t));
  int32_t *stack = malloc((size_t)num_states * sizeof(int32_t));
  double *dist = malloc((size_t)num_states * 2 * sizeof(double));
  unsigned char *seen = malloc((size_t)num_states);
  if (!indeg || !order || !stack || !dist || !seen) {
    rc = kb_fail(err, errlen, KB_ENOMEM, "out of memory for a lattice of %d states",
                 (int)num_states);
    goto done;
  }
  /* Kahn's algorithm, LIFO, as Lattice.topological_order */
  for (int64_t a = 0; a < num_arcs; a++) indeg[dst[a]]++;
  int32_t top = 0, n = 0;
  for (int32_t s = 0; s < num_states; s++)
    if (indeg[s] == 0) stack[top++] = s;
  while (top > 0) {
    int32_t s = stack[--top];
    order[n++] = s;
    for (int64_t a = offsets[s]; a < offsets[s + 1]; a++)
      if (--indeg[dst[a]] == 0) stack[top++] = dst[a];
  }
  if (n != num_states) {
    rc = kb_fail(err, errlen, KB_EINVAL, "the lattice has a cycle (best paths need an "
                 "acyclic lattice)");
    goto done;
  }
  for (int32_t k = 0; k < num_settings; k++) {
    const double sc = ac_scale[k];
    const float pen = wip[k];
    int64_t *bk = back + (int64_t)k * num_states;
    memset(seen, 0, (size_t)num_states);
    for (int32_t s = 0; s < num_states; s++) bk[s] = -1;
    seen[start] = 1;
    dist[2 * start] = 0.0;
    dist[2 * start + 1] = 0.0;
    for (int32_t i = 0; i < num_states; i++) {
      int32_t s = order[i];
      if (!seen[s]) continue;
      double d0 = dist[2 * s], d1 = dist[2 * s + 1];
      for (int64_t a = offsets[s]; a < offsets[s + 1]; a++) {
        float g = graph[a];
        float ac = (float)(0.0 * (double)g + sc * (double)acoustic[a]);
        if (olabel[a] != 0) g = g + pen;
        double tot = (double)g + (double)ac;
        if (tot == INFINITY) continue;
        double c0 = d0 + tot, c1 = d1 + (double)g;
        int32_t t = dst[a];
        if (!seen[t] || c0 < dist[2 * t] || (c0 == dist[2 * t] && c1 < dist[2 * t + 1])) {
          seen[t] = 1;
          dist[2 * t] = c0;
          dist[2 * t + 1] = c1;
          bk[t] = a;
        }
      }
    }
    int32_t best = -1;
    double b0 = 0.0, b1 = 0.0;
    for (int32_t s = 0; s < num_states; s++) {
      if (!seen[s] || (final_graph[s] == INFINITY && final_acoustic[s] == INFINITY)) continue;
      float fg = final_graph[s];
      float fa = (float)(0.0 * (double)fg + sc * (double)final_acoustic[s]);
      double c0 = dist[2 * s] + (double)fg + (double)fa, c1 = dist[2 * s + 1] + (double)fg;
      if (best < 0 || c0 < b0 || (c0 == b0 && c1 < b1)) {
        best = s;
        b0 = c0;
        b1 = c1;
      }
    }
    best_final[k] = best;
  }
done:
  free(indeg);
  free(order);
  free(stack);
  free(dist);
  free(seen);
  return rc;
}
