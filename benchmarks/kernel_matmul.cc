// The CPU kernel's matmuls alone on a SmolLM2-135M decode step, and this CPU's FMA peak.
// Built and run by benchmarks/kernel_matmul.py (it includes the kernel source itself).
#include <cstdio>
#include <initializer_list>

#include "../zeroplay/kernels/cpu_decode.cc"

namespace {

double FmaPeak(int threads) {  // GFLOP/s of independent FMA chains on `threads` threads
  const long n = 20000000;
  auto run = [n] {
    __m256 a[12];
    for (int i = 0; i < 12; ++i) a[i] = _mm256_set1_ps(i * 1e-3f);
    const __m256 x = _mm256_set1_ps(0.9999f), y = _mm256_set1_ps(1e-5f);
    for (long i = 0; i < n; ++i) {
#pragma GCC unroll 12
      for (int j = 0; j < 12; ++j) a[j] = _mm256_fmadd_ps(a[j], x, y);  // 12 chains in registers
    }
    float total = 0.0f;  // every chain feeds the result, so none is dead code
    for (int j = 0; j < 12; ++j) total += a[j][0];
    volatile float sink = total;
    (void)sink;
  };
  auto t0 = std::chrono::steady_clock::now();
  std::vector<std::thread> ts;
  for (int i = 0; i < threads; ++i) ts.emplace_back(run);
  for (auto& t : ts) t.join();
  return threads * n * 12 * 16.0 / std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / 1e9;
}

}  // namespace

int main(int argc, char** argv) {
  const int iters = argc > 1 ? std::atoi(argv[1]) : 20;
  struct Shape { int k, n; };
  const Shape shapes[] = {{576, 960}, {576, 576}, {576, 3072}, {1536, 576}};  // qkv, o, gate/up, down
  std::vector<std::vector<float>> ws;
  for (int l = 0; l < 30; ++l)
    for (auto s : shapes) ws.emplace_back(static_cast<size_t>(s.k) * ((s.n + 15) / 16 * 16), 0.01f);
  std::vector<float> head(static_cast<size_t>(576) * 49152, 0.01f);
  const double bytes = 4.0 * (30.0 * (576 * 960 + 576 * 576 + 576 * 3072 + 1536 * 576) + 576.0 * 49152);
  double peak = 0;
  for (int t = 0; t < 5; ++t) peak = std::max(peak, FmaPeak(Team::Get().size()));  // best of 5: the VM is noisy
  std::printf("FMA peak: %.0f GFLOP/s on %d threads\n", peak, Team::Get().size());
  std::printf("| batch | matmuls of one step | weight read rate | matmul rate |\n|---|---|---|---|\n");
  for (int b : {1, 8, 32}) {
    std::vector<float> x(static_cast<size_t>(b) * 1536, 1.0f), y(static_cast<size_t>(b) * 49152), scratch;
    double best = 1e9;
    for (int it = 0; it < iters; ++it) {
      auto t0 = std::chrono::steady_clock::now();
      int i = 0;
      for (int l = 0; l < 30; ++l)
        for (auto s : shapes) Matmul{x.data(), ws[i++].data(), nullptr, y.data(), b, s.k, s.n, Epilogue::kStore, &scratch}.Run();
      Matmul{x.data(), head.data(), nullptr, y.data(), b, 576, 49152, Epilogue::kStore, &scratch}.Run();
      best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    std::printf("| %d | %.1f ms | %.1f GB/s | %.0f GFLOP/s |\n", b, best * 1e3, bytes / best / 1e9,
                bytes / 4 * 2 * b / best / 1e9);
  }
}
