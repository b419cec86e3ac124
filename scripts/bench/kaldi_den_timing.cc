// Times Kaldi's own chain denominator computation on the CPU, for
// bench_kaldi_den.py: the same den graph, nnet output and leaky-HMM coefficient
// that bench_chain.py gives kbind's C kernel.
//
// One call is what ComputeChainObjfAndDeriv does for the denominator:
// construct chain::DenominatorComputation (exp of the clamped nnet output,
// alpha and beta allocation), Forward(), Backward(1.0, &deriv). The
// DenominatorGraph is built once, as kbind caches its graph index. Each call is
// timed in wall-clock and in process CPU time; the output is one JSON object.
//
// Usage: kaldi_den_timing <den.fst> <num-pdfs> <nnet-output-rxfilename>
//          <num-sequences> <leaky-hmm-coefficient> <warmup> <rounds> <reps>
// The nnet output is a Kaldi matrix with row t * S + s for frame t of sequence s.

#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "base/kaldi-common.h"
#include "chain/chain-den-graph.h"
#include "chain/chain-denominator.h"
#include "chain/chain-training.h"
#include "cudamatrix/cu-matrix.h"
#include "fstext/kaldi-fst-io.h"
#include "util/kaldi-io.h"

namespace {

double CpuSeconds() {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

void PrintList(const char *name, const std::vector<double> &v, bool last) {
  std::printf("  \"%s\": [", name);
  for (size_t i = 0; i < v.size(); i++)
    std::printf("%s%.6f", i ? ", " : "", v[i]);
  std::printf("]%s\n", last ? "" : ",");
}

}  // namespace

int main(int argc, char *argv[]) {
  using namespace kaldi;
  if (argc != 9) {
    std::fprintf(stderr, "usage: %s <den.fst> <num-pdfs> <nnet-output> <num-sequences> "
                 "<leaky-hmm-coefficient> <warmup> <rounds> <reps>\n", argv[0]);
    return 1;
  }
  fst::StdVectorFst den_fst;
  fst::ReadFstKaldi(argv[1], &den_fst);
  const int32 num_pdfs = std::atoi(argv[2]);
  Matrix<BaseFloat> output;
  ReadKaldiObject(argv[3], &output);
  const int32 num_sequences = std::atoi(argv[4]);
  chain::ChainTrainingOptions opts;
  opts.leaky_hmm_coefficient = std::atof(argv[5]);
  const int warmup = std::atoi(argv[6]), rounds = std::atoi(argv[7]),
      reps = std::atoi(argv[8]);

  chain::DenominatorGraph den_graph(den_fst, num_pdfs);
  CuMatrix<BaseFloat> nnet_output(output);
  CuMatrix<BaseFloat> deriv(nnet_output.NumRows(), nnet_output.NumCols());

  BaseFloat logprob = 0.0;
  auto one_call = [&]() {
    chain::DenominatorComputation den(opts, den_graph, num_sequences, nnet_output);
    logprob = den.Forward();
    den.Backward(1.0, &deriv);
  };
  for (int i = 0; i < warmup; i++) one_call();
  std::vector<double> wall_ms, cpu_ms;
  for (int r = 0; r < rounds; r++) {
    if (r) std::this_thread::sleep_for(std::chrono::milliseconds(500));
    for (int i = 0; i < reps; i++) {
      deriv.SetZero();
      auto t0 = std::chrono::steady_clock::now();
      double c0 = CpuSeconds();
      one_call();
      double c1 = CpuSeconds();
      auto t1 = std::chrono::steady_clock::now();
      wall_ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
      cpu_ms.push_back(1e3 * (c1 - c0));
    }
  }
  size_t num_arcs = 0;
  for (int32 s = 0; s < den_fst.NumStates(); s++) num_arcs += den_fst.NumArcs(s);
  std::printf("{\n  \"num_states\": %d,\n  \"num_arcs\": %zu,\n  \"logprob\": %.9g,\n",
              den_graph.NumStates(), num_arcs, logprob);
  std::printf("  \"deriv_row_sum_mean\": %.9g,\n",
              deriv.Sum() / static_cast<double>(deriv.NumRows()));
  PrintList("wall_ms", wall_ms, false);
  PrintList("cpu_ms", cpu_ms, true);
  std::printf("}\n");
  return 0;
}
