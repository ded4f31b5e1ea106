// Test-only driver of the CPU kernel's thread team (zeroplay/kernels/cpu_decode.cc, included
// whole so that the team in its anonymous namespace is visible). Built and run by
// tests/test_cpu_kernel_race.py, optimised and under ThreadSanitizer.
//
//     cpu_team_stress SECONDS [SEED [CHAOS_US [MAX_N [MATMULS]]]]  threads: ZEROPLAY_CPU_KERNEL_THREADS
//
// Runs tiny jobs back to back, a job of 2-4 items and then one of 3..MAX_N (so a job often has
// more items than the one before it: what let a late worker claim an item of the next job), and
// checks after every Run:
//   - every item of the job ran exactly once;
//   - no item of the job is still running once Run has returned;
//   - no item ever runs with a context whose Run has returned.
// Contexts live in a small ring and are reused, as a caller's stack frame is. Then 100 jobs after
// pauses (idle workers go to sleep and must be woken), half of them of slow items (the caller
// stops spinning and sleeps until the worker finishing the last one wakes it).
//
// Chaos (CHAOS_US > 0): a high-resolution timer per thread sends it SIGUSR1 every ~CHAOS_US
// microseconds and the handler gives the core away (sched_yield). So threads stop at random
// instructions, including the few instructions between two stores of Run, and another team
// thread runs meanwhile: the interleaving the race needs, which an oversubscribed machine
// produces only now and then (reported: 6 wrong decode steps in 100,000). With it the team before
// the fix failed this in every 3 s run (3 to 28 violations in 200k-2M jobs).
//
// Then the kernel's own use of the team: a panel matmul with the residual-add epilogue (an item
// run twice adds twice) on fixed inputs, MATMULS times, bitwise equal to a serial run; and a
// fork: the child (no workers) runs jobs serially and must get them right too.
//
// Prints "threads=T jobs=J items=I matmuls=M violations=V first=..." and exits 1 if V > 0.
#include "cpu_decode.cc"

#include <dirent.h>
#include <sched.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>

namespace {

void OnChaos(int) { sched_yield(); }

// One CLOCK_MONOTONIC timer per thread of the process (the team's workers included), each
// signalling its own thread; periods differ a little so the signals do not line up.
void StartChaos(long period_us) {
  struct sigaction sa {};
  sa.sa_handler = OnChaos;
  sa.sa_flags = SA_RESTART;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGUSR1, &sa, nullptr);
  DIR* dir = opendir("/proc/self/task");
  if (!dir) return;
  int k = 0;
  while (dirent* e = readdir(dir)) {
    const int tid = std::atoi(e->d_name);
    if (tid <= 0) continue;
    sigevent sev {};
    sev.sigev_notify = SIGEV_THREAD_ID;
    sev.sigev_signo = SIGUSR1;
    sev._sigev_un._tid = tid;
    timer_t timer;
    if (timer_create(CLOCK_MONOTONIC, &sev, &timer) != 0) continue;
    itimerspec its {};
    its.it_value.tv_nsec = its.it_interval.tv_nsec = period_us * 1000 + 997 * (k++ % 17);
    timer_settime(timer, 0, &its, nullptr);
  }
  closedir(dir);
}

constexpr int kMaxItems = 64;
constexpr int kRing = 4;

struct JobCtx {
  std::atomic<int> hits[kMaxItems];
  std::atomic<int> running{0};
  std::atomic<int> returned{1};  // 1 once this context's Run has returned (until it is reused)
  std::atomic<int> n{0};
  bool slow = false;
};

JobCtx ring[kRing];
std::atomic<long> violations{0};
std::atomic<const char*> first_what{nullptr};

void Violation(const char* what) {
  const char* none = nullptr;
  first_what.compare_exchange_strong(none, what);
  violations.fetch_add(1);
}

void Item(const void* p, int item) {
  auto* ctx = static_cast<JobCtx*>(const_cast<void*>(p));
  ctx->running.fetch_add(1);
  if (ctx->returned.load()) Violation("an item ran with a context whose Run had returned");
  if (item < 0 || item >= ctx->n.load()) Violation("an item index outside its job");
  else ctx->hits[item].fetch_add(1);
  if (ctx->slow) {  // long enough that a caller waiting for it stops spinning and sleeps
    const auto start = std::chrono::steady_clock::now();
    while (std::chrono::steady_clock::now() - start < std::chrono::microseconds(400)) _mm_pause();
  }
  ctx->running.fetch_sub(1);
}

// One job of n items on the team, checked (see the header).
void OneJob(long job, int n, bool slow = false) {
  JobCtx& ctx = ring[job % kRing];
  for (int i = 0; i < n; ++i) ctx.hits[i].store(0);
  ctx.n.store(n);
  ctx.slow = slow;
  ctx.returned.store(0);
  Team::Get().Run(n, Item, &ctx);
  ctx.returned.store(1);
  if (ctx.running.load() != 0) Violation("an item still running after Run returned");
  for (int i = 0; i < n; ++i) {
    const int h = ctx.hits[i].load();
    if (h != 1) Violation(h == 0 ? "an item that never ran" : "an item that ran twice");
  }
}

// y = base + x @ W (residual-add epilogue) for 9 rows, K = 136, N = 203 (a partial panel), as the
// kernel runs it: on the team, or item by item on this thread.
std::vector<float> MatmulOnce(bool serial) {
  constexpr int b = 9, k = 136, n = 203, np = (n + kPanel - 1) / kPanel;
  static std::vector<float> x, w, base;
  if (x.empty()) {
    std::mt19937 r(7);
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    for (int i = 0; i < b * k; ++i) x.push_back(u(r));
    for (int i = 0; i < np * k * kPanel; ++i) w.push_back(u(r));
    for (int i = 0; i < b * n; ++i) base.push_back(u(r));
  }
  std::vector<float> y = base, scratch;
  Matmul m{x.data(), w.data(), nullptr, y.data(), b, k, n, Epilogue::kAccumulate, &scratch};
  if (serial) {
    std::vector<int> rows;
    m.RowTiles(rows);
    scratch.assign(static_cast<size_t>(b) * k, 0.0f);
    for (size_t t = 0, r0 = 0; t < rows.size(); r0 += rows[t], ++t)
      for (int r = 0; r < rows[t]; ++r)
        for (int kk = 0; kk < k; ++kk) scratch[r0 * k + kk * rows[t] + r] = x[(r0 + r) * k + kk];
    m.xp = scratch.data();
    for (int p = 0; p < np; ++p) m.Panel(p, rows);
  } else {
    m.Run();
  }
  return y;
}

}  // namespace

int main(int argc, char** argv) {
  const double seconds = argc > 1 ? std::atof(argv[1]) : 2.0;
  std::mt19937 rng(argc > 2 ? std::atoi(argv[2]) : 1);
  const long chaos_us = argc > 3 ? std::atol(argv[3]) : 200;
  const int max_n = std::min(kMaxItems, std::max(4, argc > 4 ? std::atoi(argv[4]) : 6));
  Team& team = Team::Get();  // starts the workers, so the chaos timers cover them
  if (chaos_us > 0) StartChaos(chaos_us);
  const auto start = std::chrono::steady_clock::now();
  long jobs = 0, items = 0;
  for (; std::chrono::steady_clock::now() - start < std::chrono::duration<double>(seconds); ++jobs) {
    const int n = jobs % 2 ? 2 + static_cast<int>(rng() % 3) : 3 + static_cast<int>(rng() % (max_n - 2));
    OneJob(jobs, n);
    items += n;
  }
  // Sleep and wake: after a pause long enough for idle workers to go to sleep, a job, half of the
  // time of slow items (400 us), so the caller often waits long enough for a worker's to sleep.
  for (int i = 0; i < 100; ++i, ++jobs) {
    timespec gap {0, 300000};
    nanosleep(&gap, nullptr);
    OneJob(jobs, 2 + i % 7, /*slow=*/i % 2 == 0);
    items += 2 + i % 7;
  }
  const int matmuls = argc > 5 ? std::atoi(argv[5]) : 200;
  const std::vector<float> y0 = MatmulOnce(/*serial=*/true);
  for (int i = 0; i < matmuls; ++i)
    if (MatmulOnce(false) != y0) Violation("a matmul differing from the serial one");
  const pid_t child = fork();
  if (child == 0) {  // one thread here: the team must run serially, and right
    for (int j = 0; j < 200; ++j) OneJob(j, 2 + j % 7);
    if (MatmulOnce(false) != y0) Violation("a matmul in a forked child differing from the serial one");
    _exit(violations.load() ? 1 : 0);
  }
  int status = 0;
  if (child < 0 || waitpid(child, &status, 0) != child || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
    Violation("the forked child failed");
  const char* what = first_what.load();
  std::printf("threads=%d jobs=%ld items=%ld matmuls=%d violations=%ld first=%s\n", team.size(), jobs, items,
              matmuls, violations.load(), what ? what : "-");
  return violations.load() ? 1 : 0;
}
