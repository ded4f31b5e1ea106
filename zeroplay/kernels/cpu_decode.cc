// One decode step of a Llama / Qwen2 / Qwen3 decoder on the CPU, as a single XLA FFI call; the
// same call with T new tokens per row is the sampler's prefill (a chunk of every prompt at once).
//
// Why it exists: on a CPU, XLA runs a one-token decode step as ~12 separate operations per layer,
// each with a fixed dispatch cost, and its float32 dots on thin [B, K] x [K, N] shapes read the
// weights at about half the memory bandwidth (benchmarks/decode_matmul_floor.py). This file runs
// the whole step (every layer, the final norm and the LM head) in one call: weights pre-packed
// into 16-column panels read once per step as a sequential stream, a 6x16 register-tiled FMA
// kernel, fused epilogues (bias, residual add, SwiGLU), and a small persistent thread team.
//
// Math is the decoder's, in float32: RMSNorm as scale * (x * rsqrt(mean(x^2) + eps)), rotary
// half-split rotation with cos/sin given by the caller (computed by XLA, as in the decoder),
// grouped-query attention over the cache slots kv_mask allows up to the token's own slot,
// SwiGLU MLP.
// Needs AVX2 and FMA; the Python side checks `zp_cpu_supported()` before registering it.

#include <immintrin.h>
#include <pthread.h>
#include <sched.h>
#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <thread>
#include <vector>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

constexpr int kPanel = 16;  // columns per packed weight panel: two 8-float AVX registers
constexpr int kPrefetch = 64;  // panel rows (64-byte lines, 4 KB) fetched ahead of the FMA loop
constexpr int kRows = 6;    // rows per register tile: 6 x 2 accumulators + 2 weights + 1 broadcast

// ------------------------------------------------------------------------------------------
// Thread team: the caller plus persistent workers that claim the items of a job one at a time.
//
// Correctness (the previous team read the job's item count as a plain field after loading the
// claim counter; a worker of job g that loaded g's exhausted counter and then read job g+1's
// larger count, before Run(g+1) stored the new counter, claimed item n_g of g+1 and ran it with
// g+1's fn/ctx, once more than it should and unseen by g+1's own count: an item run twice, and
// Run returning while an item still ran). The rules that make this one right:
//  1. The only thing a worker reads before it owns an item is one atomic word,
//     job_ = (generation << 32 | items not yet claimed). A claim is a CAS that lowers the low half
//     while the high half still holds the generation the worker is working on, so it can claim
//     only from that job and only while the job has unclaimed items: never across jobs.
//  2. Run writes the descriptor (fn_, ctx_, n_) and resets done_ before it publishes job_ with a
//     release store; a successful claim is an acquire RMW on job_, so it sees that descriptor.
//  3. A claimer reads fn_/ctx_/n_ only after its claim and before it counts its items done. Until
//     then done_ < n and Run(g) cannot return, so Run(g + 1) cannot have rewritten them: its
//     writes come after Run(g)'s acquire load of the final done_, which synchronises with every
//     claimer's release increment (the increments form one release sequence).
//  4. done_ = (generation << 32 | items finished) and Run(g) waits for exactly (g << 32 | n).
//     Only items claimed in g are added, by their claimers, before Run(g) can return, so a late
//     worker cannot add to another job's count, and Run never returns while an item runs.
//  5. ctx is dereferenced only by fn on a claimed item, so never after Run returns: a worker that
//     arrives late touches only job_ (its CAS fails or sees no items) and the team's own fields.
//  6. One job at a time: callers take call_mutex_ with try_lock; a second concurrent caller, a
//     call from inside an item (nested), or a forked child (pthread_atfork: the workers are gone
//     there) runs its items itself, serially.
//  7. ABA on job_ would need a worker to stall between its load and its CAS while exactly 2^32
//     further jobs run.
// Waiting (workers for the next job, the caller for the last items of its job): spin 20 us, then
// give the core away with sched_yield until 200 us, then sleep on a condition variable (the spin
// and yield times: ZEROPLAY_CPU_KERNEL_SPIN_US / _YIELD_US). So an idle team leaves the cores to
// other processes (the verifier pools) within a fraction of a millisecond, and a caller whose
// worker was preempted mid-item no longer spins on its core meanwhile, while the back-to-back jobs
// of one decode step (gaps of microseconds) still find the workers awake. The sleeper counts
// and the state they wait on are seq_cst on both sides (Dekker): a notifier either sees the
// sleeper registered or the sleeper's predicate sees the new state, so no wake-up is lost.
// Checked by tests/test_cpu_kernel_race.py: tests/cpu_team_stress.cc drives this team with random
// preemptions (and under ThreadSanitizer), and the decode step must be bitwise repeatable with
// more threads than cores.
// ------------------------------------------------------------------------------------------
using TaskFn = void (*)(const void* ctx, int item);

class Team {
 public:
  static Team& Get() {
    static Team* team = new Team();  // never destroyed: workers may outlive static destruction
    return *team;
  }

  int size() const { return static_cast<int>(workers_.size()) + 1; }

  // Runs fn(ctx, i) for i in [0, n) on the team; returns when all have finished.
  void Run(int n, TaskFn fn, const void* ctx) {
    if (n <= 0) return;
    if (workers_.empty() || n == 1 || in_job_ || forked_.load(std::memory_order_relaxed)) return Serial(n, fn, ctx);
    std::unique_lock<std::mutex> solo(call_mutex_, std::try_to_lock);
    if (!solo.owns_lock()) return Serial(n, fn, ctx);  // another caller has the team
    const uint64_t gen = ((job_.load(std::memory_order_relaxed) >> 32) + 1) & kLow;
    fn_ = fn;
    ctx_ = ctx;
    n_ = n;
    done_.store(gen << 32, std::memory_order_relaxed);
    job_.store(gen << 32 | static_cast<uint32_t>(n), std::memory_order_seq_cst);  // publish (release)
    if (idle_workers_.load(std::memory_order_seq_cst) > 0) {
      std::lock_guard<std::mutex> lock(sleep_mutex_);
      wake_.notify_all();
    }
    in_job_ = true;
    Work(gen);
    const uint64_t target = gen << 32 | static_cast<uint32_t>(n);
    Await([&] { return done_.load(std::memory_order_seq_cst) == target; }, caller_sleeping_, finished_);
    in_job_ = false;
  }

 private:
  static constexpr uint64_t kLow = 0xffffffffu;

  Team() {
    // A forked child has only the forking thread: the team's workers are gone, so run serially.
    pthread_atfork(nullptr, nullptr, [] { Team::Get().forked_.store(true, std::memory_order_relaxed); });
    int n = CountCpus();
    if (const char* env = std::getenv("ZEROPLAY_CPU_KERNEL_THREADS")) n = std::max(1, std::atoi(env));
    if (const char* env = std::getenv("ZEROPLAY_CPU_KERNEL_SPIN_US")) spin_ = std::chrono::microseconds(std::atoi(env));
    if (const char* env = std::getenv("ZEROPLAY_CPU_KERNEL_YIELD_US")) yield_ = std::chrono::microseconds(std::atoi(env));
    for (int i = 1; i < n; ++i) workers_.emplace_back([this] { Loop(); });
    for (auto& t : workers_) t.detach();
  }

  // The CPUs this process may run on (taskset, cgroup cpusets), not the machine's.
  static int CountCpus() {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) == 0) return std::max(1, CPU_COUNT(&set));
    return std::max(1u, std::thread::hardware_concurrency());
  }

  static void Serial(int n, TaskFn fn, const void* ctx) {
    for (int i = 0; i < n; ++i) fn(ctx, i);
  }

  // Claims and runs items of generation `gen` until it has none left (rules 1-4 above).
  void Work(uint64_t gen) {
    TaskFn fn = nullptr;
    const void* ctx = nullptr;
    int n = 0, count = 0;
    uint64_t cur = job_.load(std::memory_order_acquire);
    while ((cur >> 32) == gen && (cur & kLow) != 0) {
      if (!job_.compare_exchange_weak(cur, cur - 1, std::memory_order_acq_rel, std::memory_order_acquire)) continue;
      if (count == 0) fn = fn_, ctx = ctx_, n = n_;  // ours to read now: job gen cannot end before we count
      fn(ctx, n - static_cast<int>(cur & kLow));  // items in order: the first claim takes item 0
      ++count;
      cur = job_.load(std::memory_order_acquire);
    }
    if (count == 0) return;
    const uint64_t target = gen << 32 | static_cast<uint32_t>(n);
    if (done_.fetch_add(count, std::memory_order_seq_cst) + count == target &&
        caller_sleeping_.load(std::memory_order_seq_cst) > 0) {
      std::lock_guard<std::mutex> lock(sleep_mutex_);
      finished_.notify_all();
    }
  }

  void Loop() {
    in_job_ = true;  // a worker's items run any nested ParallelFor serially
    uint64_t seen = job_.load(std::memory_order_acquire) >> 32;
    for (;;) {
      uint64_t gen = seen;
      Await([&] { return (gen = job_.load(std::memory_order_seq_cst) >> 32) != seen; }, idle_workers_, wake_);
      seen = gen;
      Work(gen);
    }
  }

  // Waits until ready(): spins, then yields the core, then sleeps on cv counted in `sleepers`.
  template <class Ready>
  void Await(const Ready& ready, std::atomic<int>& sleepers, std::condition_variable& cv) {
    const auto start = std::chrono::steady_clock::now();
    for (int spins = 0; !ready(); ++spins) {
      if (spins < 64) {
        _mm_pause();
        continue;
      }
      spins = 0;
      const auto waited = std::chrono::steady_clock::now() - start;
      if (waited < spin_) continue;
      if (waited >= spin_ + yield_) {
        sleepers.fetch_add(1, std::memory_order_seq_cst);
        {
          std::unique_lock<std::mutex> lock(sleep_mutex_);
          cv.wait(lock, ready);
        }
        sleepers.fetch_sub(1, std::memory_order_seq_cst);
        return;
      }
      sched_yield();
      spins = 64;  // while yielding, look at the clock after every yield
    }
  }

  std::vector<std::thread> workers_;
  std::mutex call_mutex_, sleep_mutex_;
  std::condition_variable wake_, finished_;
  alignas(64) std::atomic<uint64_t> job_{0};  // generation << 32 | items not yet claimed
  alignas(64) std::atomic<uint64_t> done_{0};  // generation << 32 | items finished
  std::atomic<int> idle_workers_{0}, caller_sleeping_{0};
  std::atomic<bool> forked_{false};
  std::chrono::microseconds spin_{20}, yield_{180};  // waiting: spin, then yield, then sleep
  // The job's descriptor: written by Run before it publishes job_, read by claimers (rule 3).
  TaskFn fn_ = nullptr;
  const void* ctx_ = nullptr;
  int n_ = 0;
  static thread_local bool in_job_;  // this thread is running a job (worker, or caller inside Run)
};

thread_local bool Team::in_job_ = false;

template <class F>
void ParallelFor(int n, const F& f) {
  Team::Get().Run(n, [](const void* ctx, int i) { (*static_cast<const F*>(ctx))(i); }, &f);
}

// ------------------------------------------------------------------------------------------
// Vector math.
// ------------------------------------------------------------------------------------------
inline __m256 Exp(__m256 x) {  // Cephes-style exp: relative error ~1e-7 on [-87, 88]
  const __m256 hi = _mm256_set1_ps(88.3762626647949f), lo = _mm256_set1_ps(-87.3365478515625f);
  x = _mm256_max_ps(_mm256_min_ps(x, hi), lo);
  __m256 fx = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                              _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693359375f), x);
  x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.12194440e-4f), x);
  __m256 y = _mm256_set1_ps(1.9875691500E-4f);
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.3981999507E-3f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(8.3334519073E-3f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(4.1665795894E-2f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.6666665459E-1f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(5.0000001201E-1f));
  y = _mm256_fmadd_ps(y, _mm256_mul_ps(x, x), _mm256_add_ps(x, _mm256_set1_ps(1.0f)));
  __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(fx), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(y, _mm256_castsi256_ps(e));
}

inline float HorizontalSum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

inline float Dot(const float* a, const float* b, int n) {
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  int i = 0;
  for (; i + 16 <= n; i += 16) {
    acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
    acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), acc1);
  }
  for (; i + 8 <= n; i += 8) acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
  float s = HorizontalSum(_mm256_add_ps(acc0, acc1));
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}

// y = scale * (x * rsqrt(mean(x^2) + eps)), one row of n floats.
void RmsNorm(const float* x, const float* scale, float eps, int n, float* y) {
  float ms = Dot(x, x, n) / static_cast<float>(n);
  float r = 1.0f / std::sqrt(ms + eps);
  for (int i = 0; i < n; ++i) y[i] = scale[i] * (x[i] * r);
}

// ------------------------------------------------------------------------------------------
// Panel matmul: y[B, N] (op)= x[B, K] @ W, with W packed as [ceil(N / 16), K, 16] (zero padded).
// ------------------------------------------------------------------------------------------
enum class Epilogue { kStore, kBias, kAccumulate, kSwiGlu };

// One register tile: MB rows of x (packed [k_len, MB] by Matmul::Run) against k_len rows of one
// 16-column panel, accumulating into acc (zeroed first unless `resume`). The accumulators live in
// registers inside the loop. Line k of `prefetch` is requested at step k, to keep the memory
// stream ahead of the FMAs.
template <int MB>
__attribute__((always_inline)) inline void Tile(const float* x, const float* panel, int k_len,
                                                const float* prefetch, bool resume, __m256 acc[][2]) {
  __m256 a0[MB], a1[MB];
#pragma GCC unroll 8
  for (int r = 0; r < MB; ++r) {
    a0[r] = resume ? acc[r][0] : _mm256_setzero_ps();
    a1[r] = resume ? acc[r][1] : _mm256_setzero_ps();
  }
  for (int k = 0; k < k_len; ++k) {
    _mm_prefetch(reinterpret_cast<const char*>(prefetch + k * kPanel), _MM_HINT_T0);
    const __m256 w0 = _mm256_loadu_ps(panel + k * kPanel);
    const __m256 w1 = _mm256_loadu_ps(panel + k * kPanel + 8);
#pragma GCC unroll 8
    for (int r = 0; r < MB; ++r) {
      const __m256 xb = _mm256_broadcast_ss(x + k * MB + r);
      a0[r] = _mm256_fmadd_ps(xb, w0, a0[r]);
      a1[r] = _mm256_fmadd_ps(xb, w1, a1[r]);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < MB; ++r) acc[r][0] = a0[r], acc[r][1] = a1[r];
}

struct Matmul {
  const float* x;  // [B, K]
  const float* w;  // packed [NP, K, 16]
  const float* bias;  // [N] for kBias
  float* y;  // [B, N] (kSwiGlu: [B, N / 2])
  int b, k, n;
  Epilogue op;
  std::vector<float>* x_pack;  // scratch for x with each row tile packed [K, rows]
  const float* xp = nullptr;  // x_pack's data once Run() has filled it

  const float* PanelAt(int p) const { return w + static_cast<int64_t>(p) * k * kPanel; }

  void TileOf(int rows, int row0, int p, int k0, int k_len, const float* prefetch, __m256 acc[][2]) const {
    const float* xs = xp + static_cast<int64_t>(row0) * k + static_cast<int64_t>(k0) * rows;
    const float* panel = PanelAt(p) + static_cast<int64_t>(k0) * kPanel;
    const bool resume = k0 > 0;
    switch (rows) {
      case 6: Tile<6>(xs, panel, k_len, prefetch, resume, acc); break;
      case 5: Tile<5>(xs, panel, k_len, prefetch, resume, acc); break;
      case 4: Tile<4>(xs, panel, k_len, prefetch, resume, acc); break;
      case 3: Tile<3>(xs, panel, k_len, prefetch, resume, acc); break;
      case 2: Tile<2>(xs, panel, k_len, prefetch, resume, acc); break;
      default: Tile<1>(xs, panel, k_len, prefetch, resume, acc); break;
    }
  }

  void Finish(int rows, int row0, int p, __m256 acc[][2]) const {
    if (op == Epilogue::kSwiGlu) {  // panel p = 8 gate columns then 8 up columns of features 8p..8p+7
      const int f = n / 2;
      for (int r = 0; r < rows; ++r) {
        const __m256 g = acc[r][0];
        const __m256 silu = _mm256_div_ps(g, _mm256_add_ps(_mm256_set1_ps(1.0f),
                                                           Exp(_mm256_sub_ps(_mm256_setzero_ps(), g))));
        _mm256_storeu_ps(y + static_cast<int64_t>(row0 + r) * f + 8 * p, _mm256_mul_ps(silu, acc[r][1]));
      }
      return;
    }
    const int col0 = p * kPanel, cols = std::min(kPanel, n - col0);
    if (cols == kPanel) {  // a whole panel: vector epilogue
      for (int r = 0; r < rows; ++r) {
        float* dst = y + static_cast<int64_t>(row0 + r) * n + col0;
        __m256 lo = acc[r][0], hi = acc[r][1];
        if (op == Epilogue::kBias) {
          lo = _mm256_add_ps(lo, _mm256_loadu_ps(bias + col0));
          hi = _mm256_add_ps(hi, _mm256_loadu_ps(bias + col0 + 8));
        } else if (op == Epilogue::kAccumulate) {
          lo = _mm256_add_ps(lo, _mm256_loadu_ps(dst));
          hi = _mm256_add_ps(hi, _mm256_loadu_ps(dst + 8));
        }
        _mm256_storeu_ps(dst, lo);
        _mm256_storeu_ps(dst + 8, hi);
      }
      return;
    }
    for (int r = 0; r < rows; ++r) {
      alignas(32) float out[kPanel];
      _mm256_store_ps(out, acc[r][0]);
      _mm256_store_ps(out + 8, acc[r][1]);
      float* dst = y + static_cast<int64_t>(row0 + r) * n + col0;
      switch (op) {
        case Epilogue::kStore: for (int c = 0; c < cols; ++c) dst[c] = out[c]; break;
        case Epilogue::kBias: for (int c = 0; c < cols; ++c) dst[c] = out[c] + bias[col0 + c]; break;
        case Epilogue::kAccumulate: for (int c = 0; c < cols; ++c) dst[c] += out[c]; break;
        default: break;
      }
    }
  }

  // Row tiles: 6 rows each, except that a remainder of 1-3 rows is merged with one 6-row tile
  // and split in two (8 -> 4 + 4, 9 -> 5 + 4): a tile under 4 rows has too few accumulators to
  // hide the FMA latency.
  int RowTiles(std::vector<int>& rows) const {
    int full = b / kRows, rem = b % kRows;
    if (rem > 0 && rem < 4 && full > 0) --full, rem += kRows;
    rows.assign(full, kRows);
    if (rem > kRows) rows.push_back(rem - rem / 2), rem /= 2;
    if (rem > 0) rows.push_back(rem);
    return static_cast<int>(rows.size());
  }

  // Row tiles go in groups of up to 8 (48 rows); a group walks K in blocks of 128 panel rows
  // (8 KB), running each of its tiles on the block while it is in L1. So the weights stream
  // from memory once, without pausing for re-reads, and the partial sums (at most 8 x 12
  // registers) wait in L1 between blocks.
  void Panel(int p, const std::vector<int>& rows) const {
    constexpr int kBlock = 128, kGroup = 8;
    __m256 acc[kGroup][kRows][2];
    const int tiles = static_cast<int>(rows.size());
    for (int g0 = 0, row0 = 0; g0 < tiles; g0 += kGroup) {
      const int g1 = std::min(tiles, g0 + kGroup);
      for (int k0 = 0; k0 < k; k0 += kBlock) {
        const int k_len = std::min(kBlock, k - k0);
        const float* ahead = PanelAt(p) + static_cast<int64_t>(k0 + kPrefetch) * kPanel;
        for (int t = g0, row = row0; t < g1; row += rows[t], ++t)
          TileOf(rows[t], row, p, k0, k_len, ahead, acc[t - g0]);
      }
      for (int t = g0; t < g1; row0 += rows[t], ++t) Finish(rows[t], row0, p, acc[t - g0]);
    }
  }

  // Work items are runs of consecutive panels, so each thread streams long contiguous stretches
  // of the packed weights (the hardware prefetcher restarts at every jump): few long runs for
  // small (memory-bound) batches, more and shorter ones for large (compute-bound) batches, where
  // an uneven finish costs more than a restarted stream.
  // Many rows (a prefill): chunks of 96 rows, each a full pass over the weights, so a chunk's
  // packed x stays in L2 while the weights stream from L3 (a layer's matrices fit there).
  void Run() const {
    constexpr int kChunkRows = 96;
    if (b <= kChunkRows) return RunRows();
    const int64_t y_stride = op == Epilogue::kSwiGlu ? n / 2 : n;
    for (int r0 = 0; r0 < b; r0 += kChunkRows) {
      Matmul sub = *this;
      sub.x = x + static_cast<int64_t>(r0) * k;
      sub.y = y + r0 * y_stride;
      sub.b = std::min(kChunkRows, b - r0);
      sub.RunRows();
    }
  }

  void RunRows() const {
    const int panels = (n + kPanel - 1) / kPanel;
    const int items = std::min(panels, (b <= 2 * kRows ? 4 : 16) * Team::Get().size());
    std::vector<int> rows;
    RowTiles(rows);
    // The tile's broadcasts then read one contiguous stream instead of one stream per row.
    std::vector<float>& packed = *x_pack;
    if (packed.size() < static_cast<size_t>(b) * k) packed.resize(static_cast<size_t>(b) * k);
    std::vector<int> first(rows.size());
    for (size_t t = 1; t < rows.size(); ++t) first[t] = first[t - 1] + rows[t - 1];
    float* xp_out = packed.data();
    ParallelFor(static_cast<int>(rows.size()), [&](int t) {  // one row tile per item
      const size_t r0 = first[t], mb = rows[t];
      for (size_t r = 0; r < mb; ++r)
        for (int kk = 0; kk < k; ++kk) xp_out[r0 * k + kk * mb + r] = x[(r0 + r) * k + kk];
    });
    Matmul m = *this;
    m.xp = packed.data();
    ParallelFor(items, [&m, panels, items, &rows](int i) {
      const int end = static_cast<int>(static_cast<int64_t>(panels) * (i + 1) / items);
      for (int p = static_cast<int>(static_cast<int64_t>(panels) * i / items); p < end; ++p) m.Panel(p, rows);
    });
  }
};

// ------------------------------------------------------------------------------------------
// The decode step.
// ------------------------------------------------------------------------------------------
struct Scratch {
  std::vector<float> bufs[6];  // x, normed x / q, qkv, attention out, MLP activations, packed x
};

struct Dims {
  int64_t b, h, layers, nh, nkv, d, f, v, s, t;  // t: new tokens per row (1 when decoding)
};

// fn(r) for r in [0, rows): on the team when there are enough rows to be worth a job.
template <class F>
void ForRows(int64_t rows, const F& f) {
  if (rows < 64) {
    for (int64_t r = 0; r < rows; ++r) f(r);
    return;
  }
  const int items = static_cast<int>(std::min<int64_t>(rows, 8 * Team::Get().size()));
  ParallelFor(items, [&](int i) {
    for (int64_t r = rows * i / items, end = rows * (i + 1) / items; r < end; ++r) f(r);
  });
}

// out += sum_j p[j] * v[idx[j]] over NV vectors (8 NV floats) of each value row, from column c.
template <int NV>
inline void WeightedSum(const float* p, const int* idx, int n, const float* vals, int d, int c, float scale,
                        float* out) {
  __m256 a[NV];
  for (int i = 0; i < NV; ++i) a[i] = _mm256_setzero_ps();
  for (int j = 0; j < n; ++j) {
    const __m256 pb = _mm256_set1_ps(p[j]);
    const float* row = vals + static_cast<int64_t>(idx[j]) * d + c;
    for (int i = 0; i < NV; ++i) a[i] = _mm256_fmadd_ps(pb, _mm256_loadu_ps(row + 8 * i), a[i]);
  }
  for (int i = 0; i < NV; ++i) _mm256_storeu_ps(out + c + 8 * i, _mm256_mul_ps(a[i], _mm256_set1_ps(scale)));
}

// Dot products of q with NK key rows at once: NK independent FMA chains hide the FMA latency.
template <int NK>
inline void DotMany(const float* q, const float* keys, const int* idx, int d, float* out) {
  __m256 a[NK];
  for (int j = 0; j < NK; ++j) a[j] = _mm256_setzero_ps();
  for (int c = 0; c < d; c += 8) {
    const __m256 qv = _mm256_loadu_ps(q + c);
    for (int j = 0; j < NK; ++j)
      a[j] = _mm256_fmadd_ps(qv, _mm256_loadu_ps(keys + static_cast<int64_t>(idx[j]) * d + c), a[j]);
  }
  for (int j = 0; j < NK; ++j) out[j] = HorizontalSum(a[j]);
}

// Softmax attention of one query head over the n cache rows idx[0..n) of keys and vals; p is
// scratch for n + 8 scores. n == 0 (a padding position with no live slot) gives zeros.
void AttendOne(const float* qh, const float* keys, const float* vals, const int* idx, int n, int d, float scale,
               float* p, float* o) {
  if (n == 0) {
    std::fill(o, o + d, 0.0f);
    return;
  }
  int j = 0;
  for (; j + 8 <= n; j += 8) DotMany<8>(qh, keys, idx + j, d, p + j);
  for (; j < n; ++j) p[j] = Dot(qh, keys + static_cast<int64_t>(idx[j]) * d, d);
  float mx = -INFINITY;
  for (j = 0; j < n; ++j) mx = std::max(mx, p[j] *= scale);
  __m256 total = _mm256_setzero_ps();
  const __m256 vmx = _mm256_set1_ps(mx);
  for (j = 0; j + 8 <= n; j += 8) {
    const __m256 e = Exp(_mm256_sub_ps(_mm256_loadu_ps(p + j), vmx));
    _mm256_storeu_ps(p + j, e);
    total = _mm256_add_ps(total, e);
  }
  float sum = HorizontalSum(total);
  for (; j < n; ++j) sum += (p[j] = std::exp(p[j] - mx));
  int c = 0;
  for (; c + 64 <= d; c += 64) WeightedSum<8>(p, idx, n, vals, d, c, 1.0f / sum, o);
  for (; c + 32 <= d; c += 32) WeightedSum<4>(p, idx, n, vals, d, c, 1.0f / sum, o);
  for (; c < d; c += 8) WeightedSum<1>(p, idx, n, vals, d, c, 1.0f / sum, o);
}

// Grouped-query attention of the t new tokens of each row (row i's token j at cache slot
// slots[i] + j) over the live cache slots: kv_mask set and at most the token's own slot. One work
// item per (row, kv head, run of up to 16 tokens), its query heads sharing the gathered slot list.
void Attention(const Dims& dm, const float* q, const float* kc, const float* vc, const uint8_t* kv_mask,
               const int* slots, float* out) {
  const int group = static_cast<int>(dm.nh / dm.nkv), d = static_cast<int>(dm.d);
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  constexpr int64_t kRun = 16;
  const int64_t runs = (dm.t + kRun - 1) / kRun;
  ParallelFor(static_cast<int>(dm.b * dm.nkv * runs), [&](int item) {
    const int64_t bi = item / (dm.nkv * runs), kh = item / runs % dm.nkv, t0 = item % runs * kRun;
    const int64_t t1 = std::min(dm.t, t0 + kRun);
    const float* keys = kc + (bi * dm.nkv + kh) * dm.s * d;
    const float* vals = vc + (bi * dm.nkv + kh) * dm.s * d;
    const uint8_t* mask = kv_mask + bi * dm.s;
    const int slot = slots[bi];
    std::vector<int> idx;
    idx.reserve(slot + t1);
    for (int s = 0; s < slot + t0; ++s)
      if (mask[s]) idx.push_back(s);
    std::vector<float> p(slot + t1 + 8);
    for (int64_t tok = t0; tok < t1; ++tok) {
      if (mask[slot + tok]) idx.push_back(static_cast<int>(slot + tok));
      const int64_t r = bi * dm.t + tok;
      for (int g = 0; g < group; ++g) {
        const int64_t at = (r * dm.nh + kh * group + g) * d;
        AttendOne(q + at, keys, vals, idx.data(), static_cast<int>(idx.size()), d, scale, p.data(), out + at);
      }
    }
  });
}

// Rotary half-split rotation of one head vector in place: [x1 * cos - x2 * sin, x2 * cos + x1 * sin].
inline void Rope(float* x, const float* cos, const float* sin, int half) {
  for (int i = 0; i < half; ++i) {
    const float a = x[i], b = x[i + half];
    x[i] = a * cos[i] - b * sin[i];
    x[i + half] = b * cos[i] + a * sin[i];
  }
}

ffi::Error DecodeStep(ffi::Buffer<ffi::F32> embeds, ffi::Buffer<ffi::F32> rope_cos, ffi::Buffer<ffi::F32> rope_sin,
                      ffi::Buffer<ffi::U8> kv_mask, ffi::Buffer<ffi::S32> slot_buf,
                      ffi::Buffer<ffi::F32> ln1, ffi::Buffer<ffi::F32> qkv_w, ffi::Buffer<ffi::F32> qkv_b,
                      ffi::Buffer<ffi::F32> q_norm, ffi::Buffer<ffi::F32> k_norm, ffi::Buffer<ffi::F32> o_w,
                      ffi::Buffer<ffi::F32> ln2, ffi::Buffer<ffi::F32> gate_up_w, ffi::Buffer<ffi::F32> down_w,
                      ffi::Buffer<ffi::F32> final_norm, ffi::Buffer<ffi::F32> head_w,
                      ffi::Buffer<ffi::F32> k_in, ffi::Buffer<ffi::F32> v_in,
                      ffi::ResultBuffer<ffi::F32> logits, ffi::ResultBuffer<ffi::F32> k_cache,
                      ffi::ResultBuffer<ffi::F32> v_cache, float eps, int64_t num_heads, int64_t num_kv_heads,
                      bool has_bias, bool has_qk_norm) {
  const auto kdims = k_in.dimensions();  // [L, B, KVH, S, D]
  if (kdims.size() != 5) return ffi::Error::InvalidArgument("cache must be [L, B, KVH, S, D]");
  if (embeds.dimensions().size() != 2 || kdims[1] <= 0 || embeds.dimensions()[0] % kdims[1] != 0)
    return ffi::Error::InvalidArgument("embeds must hold the same number of tokens for every cache row");
  Dims dm{kdims[1], embeds.dimensions()[1], kdims[0], num_heads, num_kv_heads, kdims[4],
          gate_up_w.dimensions()[1] * 8, logits->dimensions()[1], kdims[3], embeds.dimensions()[0] / kdims[1]};
  if (dm.nkv <= 0 || dm.nh % dm.nkv != 0 || dm.d % 8 != 0 || dm.d > 1024 || dm.d / 2 != rope_cos.dimensions()[1])
    return ffi::Error::InvalidArgument("unsupported head layout");
  const int64_t m = dm.b * dm.t;  // rows of every matmul: token j of cache row i is row i * t + j
  // The packed shapes the Python side builds; a mismatch would read out of bounds, so refuse it.
  auto panels = [](int64_t n) { return (n + kPanel - 1) / kPanel; };
  auto is = [](ffi::Span<const int64_t> got, std::vector<int64_t> want) {
    return std::equal(got.begin(), got.end(), want.begin(), want.end());
  };
  const int64_t nq = (dm.nh + 2 * dm.nkv) * dm.d;
  if (!is(kv_mask.dimensions(), {dm.b, dm.s}) || !is(logits->dimensions(), {dm.b, dm.v}) ||
      !is(v_in.dimensions(), {dm.layers, dm.b, dm.nkv, dm.s, dm.d}) || !is(ln1.dimensions(), {dm.layers, dm.h}) ||
      !is(ln2.dimensions(), {dm.layers, dm.h}) || !is(qkv_w.dimensions(), {dm.layers, panels(nq), dm.h, kPanel}) ||
      !is(o_w.dimensions(), {dm.layers, panels(dm.h), dm.nh * dm.d, kPanel}) ||
      !is(gate_up_w.dimensions(), {dm.layers, dm.f / 8, dm.h, kPanel}) ||
      !is(down_w.dimensions(), {dm.layers, panels(dm.h), dm.f, kPanel}) ||
      !is(final_norm.dimensions(), {dm.h}) || !is(head_w.dimensions(), {panels(dm.v), dm.h, kPanel}) ||
      !is(rope_sin.dimensions(), {m, dm.d / 2}) || !is(rope_cos.dimensions(), {m, dm.d / 2}) ||
      (has_bias && !is(qkv_b.dimensions(), {dm.layers, nq})) ||
      (has_qk_norm && (!is(q_norm.dimensions(), {dm.layers, dm.d}) || !is(k_norm.dimensions(), {dm.layers, dm.d}))))
    return ffi::Error::InvalidArgument("zp_cpu_decode_step: operand shapes do not match the model");
  // One slot for every row ([1]: the prefill, a lockstep decode) or one per row ([B]: continuous
  // batching, where a refilled row restarts at its own slot while the others go on).
  const int64_t n_slots = slot_buf.element_count();
  if (n_slots != 1 && n_slots != dm.b) return ffi::Error::InvalidArgument("slot must be [1] or [B]");
  std::vector<int> slots(dm.b);
  for (int64_t i = 0; i < dm.b; ++i) {
    slots[i] = slot_buf.typed_data()[n_slots == 1 ? 0 : i];
    if (slots[i] < 0 || slots[i] + dm.t > dm.s) return ffi::Error::InvalidArgument("cache slot out of range");
  }

  float* kc = k_cache->typed_data();
  float* vc = v_cache->typed_data();
  const int64_t cache_elems = dm.layers * dm.b * dm.nkv * dm.s * dm.d;
  if (kc != k_in.typed_data()) std::memcpy(kc, k_in.typed_data(), cache_elems * sizeof(float));
  if (vc != v_in.typed_data()) std::memcpy(vc, v_in.typed_data(), cache_elems * sizeof(float));

  const int64_t b = dm.b, h = dm.h, d = dm.d, nh = dm.nh, nkv = dm.nkv, f = dm.f;
  const int64_t nqkv = (nh + 2 * nkv) * d, half = d / 2;
  // Scratch reused across calls (grow-only), so steady decoding touches no fresh pages; a call
  // that finds it in use (two steps at once in one process) works on its own buffers.
  static std::mutex shared_mutex;
  static Scratch shared;
  std::unique_lock<std::mutex> own(shared_mutex, std::try_to_lock);
  Scratch local;
  Scratch& sc = own.owns_lock() ? shared : local;
  auto& [x, hn, qkv, attn, act, x_pack] = sc.bufs;
  x.assign(embeds.typed_data(), embeds.typed_data() + m * h);
  for (auto [buf, size] : {std::pair{&hn, m * std::max(h, nh * d)}, std::pair{&qkv, m * nqkv},
                           std::pair{&attn, m * nh * d}, std::pair{&act, m * f}})
    if (static_cast<int64_t>(buf->size()) < size) buf->resize(size);
  const int64_t qkv_panels = (nqkv + kPanel - 1) / kPanel, o_panels = (h + kPanel - 1) / kPanel;
  const uint8_t* mask = kv_mask.typed_data();

  const int rows = static_cast<int>(m);
  for (int64_t l = 0; l < dm.layers; ++l) {
    ForRows(m, [&](int64_t r) { RmsNorm(x.data() + r * h, ln1.typed_data() + l * h, eps, h, hn.data() + r * h); });
    Matmul{hn.data(), qkv_w.typed_data() + l * qkv_panels * h * kPanel, qkv_b.typed_data() + l * nqkv * has_bias,
           qkv.data(), rows, static_cast<int>(h), static_cast<int>(nqkv),
           has_bias ? Epilogue::kBias : Epilogue::kStore, &x_pack}.Run();
    float* lk = kc + l * b * nkv * dm.s * d;
    float* lv = vc + l * b * nkv * dm.s * d;
    ForRows(m, [&](int64_t r) {
      float* row = qkv.data() + r * nqkv;
      const float* cs = rope_cos.typed_data() + r * half;
      const float* sn = rope_sin.typed_data() + r * half;
      for (int64_t hd = 0; hd < nh + nkv; ++hd) {  // q heads then k heads
        float* vec = row + hd * d;
        if (has_qk_norm) {
          const float* sc = (hd < nh ? q_norm.typed_data() : k_norm.typed_data()) + l * d;
          float tmp[1024];  // head_dim <= 1024 is checked above
          std::memcpy(tmp, vec, d * sizeof(float));
          RmsNorm(tmp, sc, eps, d, vec);
        }
        Rope(vec, cs, sn, half);
      }
      const int64_t bi = r / dm.t, at_slot = slots[bi] + r % dm.t;
      for (int64_t kh = 0; kh < nkv; ++kh) {
        const int64_t at = ((bi * nkv + kh) * dm.s + at_slot) * d;
        std::memcpy(lk + at, row + (nh + kh) * d, d * sizeof(float));
        std::memcpy(lv + at, row + (nh + nkv + kh) * d, d * sizeof(float));
      }
      std::memcpy(hn.data() + r * nh * d, row, nh * d * sizeof(float));  // q, contiguous per row
    });
    Attention(dm, hn.data(), lk, lv, mask, slots.data(), attn.data());
    Matmul{attn.data(), o_w.typed_data() + l * o_panels * nh * d * kPanel, nullptr, x.data(),
           rows, static_cast<int>(nh * d), static_cast<int>(h), Epilogue::kAccumulate, &x_pack}.Run();
    ForRows(m, [&](int64_t r) { RmsNorm(x.data() + r * h, ln2.typed_data() + l * h, eps, h, hn.data() + r * h); });
    Matmul{hn.data(), gate_up_w.typed_data() + l * (f / 8) * h * kPanel, nullptr, act.data(),
           rows, static_cast<int>(h), static_cast<int>(2 * f), Epilogue::kSwiGlu, &x_pack}.Run();
    Matmul{act.data(), down_w.typed_data() + l * o_panels * f * kPanel, nullptr, x.data(),
           rows, static_cast<int>(f), static_cast<int>(h), Epilogue::kAccumulate, &x_pack}.Run();
  }
  // Logits of each row's last new token only.
  for (int64_t bi = 0; bi < b; ++bi)
    RmsNorm(x.data() + ((bi + 1) * dm.t - 1) * h, final_norm.typed_data(), eps, h, hn.data() + bi * h);
  Matmul{hn.data(), head_w.typed_data(), nullptr, logits->typed_data(), static_cast<int>(b),
         static_cast<int>(h), static_cast<int>(dm.v), Epilogue::kStore, &x_pack}.Run();
  if (dm.t > 1)  // a prefill's activations are large: give them back rather than keep them for decoding
    for (auto& buf : sc.bufs) std::vector<float>().swap(buf);
  return ffi::Error::Success();
}

// ------------------------------------------------------------------------------------------
// Weight packing (once per generate call): XLA:CPU's transposes run at ~0.5 GB/s, this at
// memory speed. panels[l, p, k, j] = W[l, k, 16 p + j] (zero past N); with `transposed` the
// source is W^T [L, N, K] (a tied embedding used as the LM head).
// ------------------------------------------------------------------------------------------
// A fresh output buffer is untouched memory: first-touch page faults on 4 KB pages cost more
// than the copy (~0.5 s for a 540 MB model). Ask for transparent huge pages on it first.
void AdviseHugePages(void* data, int64_t bytes) {
  constexpr uintptr_t kHuge = 2 << 20;
  const uintptr_t begin = (reinterpret_cast<uintptr_t>(data) + kHuge - 1) & ~(kHuge - 1);
  const uintptr_t end = (reinterpret_cast<uintptr_t>(data) + bytes) & ~(kHuge - 1);
  if (end > begin) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);  // a hint only
}

ffi::Error PackPanels(ffi::Buffer<ffi::F32> src, ffi::ResultBuffer<ffi::F32> dst, bool transposed) {
  const auto sd = src.dimensions();
  if (sd.size() != 3) return ffi::Error::InvalidArgument("pack source must be [L, K, N] or [L, N, K]");
  const int64_t layers = sd[0], k = transposed ? sd[2] : sd[1], n = transposed ? sd[1] : sd[2];
  const int64_t panels = (n + kPanel - 1) / kPanel;
  const float* in = src.typed_data();
  float* out = dst->typed_data();
  AdviseHugePages(out, layers * panels * k * kPanel * sizeof(float));
  ParallelFor(static_cast<int>(layers * panels), [&](int item) {
    const int64_t l = item / panels, p = item % panels, cols = std::min<int64_t>(kPanel, n - p * kPanel);
    const float* w = in + l * k * n;
    float* o = out + (l * panels + p) * k * kPanel;
    if (!transposed) {
      for (int64_t r = 0; r < k; ++r) {
        const float* row = w + r * n + p * kPanel;
        for (int64_t j = 0; j < kPanel; ++j) o[r * kPanel + j] = j < cols ? row[j] : 0.0f;
      }
    } else {
      for (int64_t j = 0; j < kPanel; ++j) {
        const float* col = w + (p * kPanel + j) * k;
        for (int64_t r = 0; r < k; ++r) o[r * kPanel + j] = j < cols ? col[r] : 0.0f;
      }
    }
  });
  return ffi::Error::Success();
}

// Group fan-out of a prefilled cache: src [L, N, KVH, P, D] -> dst [L, N G, KVH, S, D], row
// n G + j holding src row n in slots [0, P) and zeros after. One parallel pass over fresh memory
// on huge pages, where XLA's repeat and pad take two passes over 4 KB pages that fault one by one.
ffi::Error FanOut(ffi::Buffer<ffi::F32> src, ffi::ResultBuffer<ffi::F32> dst) {
  const auto sd = src.dimensions();
  const auto dd = dst->dimensions();
  if (sd.size() != 5 || dd.size() != 5 || sd[0] != dd[0] || sd[2] != dd[2] || sd[4] != dd[4] || sd[1] <= 0 ||
      dd[1] % sd[1] != 0 || dd[3] < sd[3])
    return ffi::Error::InvalidArgument("zp_cpu_fan_out: want src [L, N, KVH, P, D] and dst [L, N G, KVH, S >= P, D]");
  const int64_t layers = sd[0], n = sd[1], rows = dd[1], kvh = sd[2], p = sd[3], s = dd[3], d = sd[4];
  const int64_t g = rows / n;
  AdviseHugePages(dst->typed_data(), layers * rows * kvh * s * d * static_cast<int64_t>(sizeof(float)));
  ParallelFor(static_cast<int>(layers * rows), [&](int item) {
    const int64_t l = item / rows, r = item % rows;
    for (int64_t h = 0; h < kvh; ++h) {
      const float* from = src.typed_data() + ((l * n + r / g) * kvh + h) * p * d;
      float* to = dst->typed_data() + ((l * rows + r) * kvh + h) * s * d;
      std::memcpy(to, from, p * d * sizeof(float));
      std::memset(to + p * d, 0, (s - p) * d * sizeof(float));
    }
  });
  return ffi::Error::Success();
}

// gate, up [L, K, F] -> [L, F / 8, K, 16]: panel p = gate features 8p..8p+7, then up's.
ffi::Error PackGateUp(ffi::Buffer<ffi::F32> gate, ffi::Buffer<ffi::F32> up, ffi::ResultBuffer<ffi::F32> dst) {
  const auto sd = gate.dimensions();
  if (sd.size() != 3 || sd[2] % 8 != 0) return ffi::Error::InvalidArgument("gate/up must be [L, K, F], F % 8 == 0");
  const int64_t layers = sd[0], k = sd[1], f = sd[2], panels = f / 8;
  AdviseHugePages(dst->typed_data(), layers * panels * k * kPanel * sizeof(float));
  ParallelFor(static_cast<int>(layers * panels), [&](int item) {
    const int64_t l = item / panels, p = item % panels;
    const float* g = gate.typed_data() + l * k * f + p * 8;
    const float* u = up.typed_data() + l * k * f + p * 8;
    float* o = dst->typed_data() + (l * panels + p) * k * kPanel;
    for (int64_t r = 0; r < k; ++r) {
      std::memcpy(o + r * kPanel, g + r * f, 8 * sizeof(float));
      std::memcpy(o + r * kPanel + 8, u + r * f, 8 * sizeof(float));
    }
  });
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(
    ZpCpuDecodeStep, DecodeStep,
    ffi::Ffi::Bind()
        .Arg<ffi::Buffer<ffi::F32>>()   // embeds [B T, H]: T new tokens per cache row, row-major
        .Arg<ffi::Buffer<ffi::F32>>()   // rope cos [B T, D / 2]
        .Arg<ffi::Buffer<ffi::F32>>()   // rope sin [B T, D / 2]
        .Arg<ffi::Buffer<ffi::U8>>()    // kv_mask [B, S]
        .Arg<ffi::Buffer<ffi::S32>>()   // slot [1] or [B]: the cache slot of each row's first new token
        .Arg<ffi::Buffer<ffi::F32>>()   // ln1 [L, H]
        .Arg<ffi::Buffer<ffi::F32>>()   // qkv packed [L, NP, H, 16]
        .Arg<ffi::Buffer<ffi::F32>>()   // qkv bias [L, (NH + 2 KVH) D] or [L, 0]
        .Arg<ffi::Buffer<ffi::F32>>()   // q_norm [L, D] or [L, 0]
        .Arg<ffi::Buffer<ffi::F32>>()   // k_norm [L, D] or [L, 0]
        .Arg<ffi::Buffer<ffi::F32>>()   // o packed [L, NP, NH D, 16]
        .Arg<ffi::Buffer<ffi::F32>>()   // ln2 [L, H]
        .Arg<ffi::Buffer<ffi::F32>>()   // gate/up packed [L, F / 8, H, 16]
        .Arg<ffi::Buffer<ffi::F32>>()   // down packed [L, NP, F, 16]
        .Arg<ffi::Buffer<ffi::F32>>()   // final norm [H]
        .Arg<ffi::Buffer<ffi::F32>>()   // head packed [NP, H, 16]
        .Arg<ffi::Buffer<ffi::F32>>()   // k cache [L, B, KVH, S, D]
        .Arg<ffi::Buffer<ffi::F32>>()   // v cache [L, B, KVH, S, D]
        .Ret<ffi::Buffer<ffi::F32>>()   // logits [B, V] of each row's last new token
        .Ret<ffi::Buffer<ffi::F32>>()   // k cache (aliases the input)
        .Ret<ffi::Buffer<ffi::F32>>()   // v cache (aliases the input)
        .Attr<float>("eps")
        .Attr<int64_t>("num_heads")
        .Attr<int64_t>("num_kv_heads")
        .Attr<bool>("has_bias")
        .Attr<bool>("has_qk_norm"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(ZpCpuPackPanels, PackPanels,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Attr<bool>("transposed"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(ZpCpuPackGateUp, PackGateUp,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>());

XLA_FFI_DEFINE_HANDLER_SYMBOL(ZpCpuFanOut, FanOut,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>());

extern "C" int zp_cpu_supported() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}
