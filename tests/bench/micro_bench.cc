// Micro-benchmarks of the plugin's per-message and per-connection work:
// notification validation + timestamp injection, ACL decisions and registry
// lookups at 100 and 1,000,000 devices, password checks and counter bumps.
// Every benchmark also reports heap allocations per operation ("allocs").
//
//   build/tests/bench/homepot_micro_bench                    # everything
//   build/tests/bench/homepot_micro_bench --benchmark_filter=Validate
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <new>
#include <random>
#include <string>
#include <vector>

#include "acl.h"
#include "auth.h"
#include "credentials.h"
#include "notification.h"
#include "registry.h"
#include "registry_worker.h"
#include "stats.h"
#include "testing.h"
#include "timestamp_injector.h"

// Counts every heap allocation in the process (the benchmarks run on one
// thread), so a benchmark can report allocations per operation.
namespace {
uint64_t g_allocations = 0;
}  // namespace

// None of these is inlined, so the compiler does not pair a malloc() with
// an operator delete (or a new with a free()) and warn.
[[gnu::noinline]] void* operator new(size_t size) {
  ++g_allocations;
  if (void* p = std::malloc(size ? size : 1)) return p;
  throw std::bad_alloc();
}
[[gnu::noinline]] void* operator new[](size_t size) {
  return operator new(size);
}
[[gnu::noinline]] void* operator new(size_t size,
                                     const std::nothrow_t&) noexcept {
  ++g_allocations;
  return std::malloc(size ? size : 1);
}
[[gnu::noinline]] void* operator new[](size_t size,
                                       const std::nothrow_t&) noexcept {
  return operator new(size, std::nothrow);
}
[[gnu::noinline]] void operator delete(void* p) noexcept { std::free(p); }
[[gnu::noinline]] void operator delete[](void* p) noexcept { std::free(p); }
[[gnu::noinline]] void operator delete(void* p, size_t) noexcept {
  std::free(p);
}
[[gnu::noinline]] void operator delete[](void* p, size_t) noexcept {
  std::free(p);
}

namespace homepot {
namespace {

constexpr uint32_t kLimit = 262144;
constexpr int kDepth = 3;
constexpr int kMaxDepth = 7;
constexpr int64_t kNowMs = 1795606354123;

// Reports allocations per iteration; construct after the set-up, before
// the timing loop.
class AllocationCounter {
 public:
  explicit AllocationCounter(benchmark::State& state)
      : state_(state), start_(g_allocations) {}
  ~AllocationCounter() {
    state_.counters["allocs"] =
        benchmark::Counter(static_cast<double>(g_allocations - start_),
                           benchmark::Counter::kAvgIterations);
  }

 private:
  benchmark::State& state_;
  uint64_t start_;
};

// --- Notifications ---------------------------------------------------------

const std::string kSample = test::kSampleNotification;

// A realistic notification of about `target` bytes: the HOMEPOT fields and
// a data object of per-metric readings, as an industrial controller's
// status report carries.
std::string SizedNotification(size_t target) {
  std::string s =
      R"({"title": "Line 3 status report", "body": "Periodic readings from )"
      R"(PLC line-3", "timestamp": "2026-11-25T10:30:00.123456", "platform": )"
      R"("mqtt_push", "message_id": "6f1c0e7e-3a54-4c1e-9a41-0d7c3b2f9e10", )"
      R"("priority": "normal", "ttl": 3600, "data": {"controller_id": )"
      R"("plc-line-3", "firmware": "4.2.17", "readings": {)";
  const char* units[] = {"C", "kPa", "rpm", "A", "V", "l/min"};
  for (int i = 0; s.size() + 160 < target; ++i) {
    char metric[192];
    std::snprintf(metric, sizeof(metric),
                  R"(%s"metric_%04d": {"value": %d.%03d, "unit": "%s", )"
                  R"("quality": "good", "alarm": %s, "sampled_at": )"
                  R"("2026-11-25T10:29:%02d.%06d"})",
                  i ? ", " : "", i, (i * 37) % 1000, (i * 113) % 1000,
                  units[i % 6], i % 17 ? "false" : "true", i % 60,
                  (i * 7919) % 1000000);
    s += metric;
  }
  s += "}, \"alarms\": [], \"sequence\": 184467}}";
  return s;
}

const std::string& Doc(int which) {
  static const auto* docs = new std::map<int, std::string>{
      {0, kSample},
      {4, SizedNotification(4096)},
      {100, SizedNotification(100 * 1024)},
      // Truncated: the cheapest refusal.
      {-1, kSample.substr(0, kSample.size() - 1)},
      // Valid JSON with a wrong type, found last: a full parse, then a
      // refusal with a detail message.
      {-2, kSample.substr(0, kSample.size() - 1) + R"(, "badge": "3"})"},
  };
  return docs->at(which);
}

// Check + InjectedSize + Inject into a buffer reused across messages (the
// plugin writes into broker memory instead).
void ValidateAndInject(benchmark::State& state, int which) {
  const std::string& doc = Doc(which);
  NotificationValidator validator("received_at");
  const TimestampInjector injector("received_at");
  std::vector<char> out(2 * doc.size() + 256);
  char stamp[kStampLen];
  FormatStamp(kNowMs, stamp);
  const bool valid =
      validator.Check(doc, kLimit, kDepth, kMaxDepth).reject == Reject::kNone;
  if (which >= 0 && !valid) {
    state.SkipWithError(validator.last().detail.c_str());
    return;
  }
  AllocationCounter allocations(state);
  for (auto _ : state) {
    const NotificationCheck& check =
        validator.Check(doc, kLimit, kDepth, kMaxDepth);
    if (check.reject == Reject::kNone) {
      size_t size = injector.InjectedSize(check, doc.size());
      injector.Inject(check, doc, stamp, out.data());
      benchmark::DoNotOptimize(size);
    }
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) *
                          static_cast<int64_t>(doc.size()));
  state.SetLabel(std::to_string(doc.size()) + " B");
}

void BM_ValidateInject_Sample(benchmark::State& s) { ValidateAndInject(s, 0); }
void BM_ValidateInject_4KB(benchmark::State& s) { ValidateAndInject(s, 4); }
void BM_ValidateInject_100KB(benchmark::State& s) { ValidateAndInject(s, 100); }
void BM_ValidateInvalid_TruncatedJson(benchmark::State& s) {
  ValidateAndInject(s, -1);
}
void BM_ValidateInvalid_WrongType(benchmark::State& s) {
  ValidateAndInject(s, -2);
}
BENCHMARK(BM_ValidateInject_Sample);
BENCHMARK(BM_ValidateInject_4KB);
BENCHMARK(BM_ValidateInject_100KB);
BENCHMARK(BM_ValidateInvalid_TruncatedJson);
BENCHMARK(BM_ValidateInvalid_WrongType);

// Injection alone, for the sample (the validation it needs is done once).
void BM_InjectOnly_Sample(benchmark::State& state) {
  NotificationValidator validator("received_at");
  const NotificationCheck& check =
      validator.Check(kSample, kLimit, kDepth, kMaxDepth);
  const TimestampInjector injector("received_at");
  std::vector<char> out(2 * kSample.size());
  AllocationCounter allocations(state);
  for (auto _ : state) {
    char stamp[kStampLen];
    FormatStamp(kNowMs, stamp);
    injector.Inject(check, kSample, stamp, out.data());
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
}
BENCHMARK(BM_InjectOnly_Sample);

// The receipt stamp every accepted notification gets.
void BM_FormatStamp(benchmark::State& state) {
  char stamp[kStampLen];
  int64_t ms = kNowMs;
  AllocationCounter allocations(state);
  for (auto _ : state) {
    FormatStamp(++ms, stamp);
    benchmark::DoNotOptimize(stamp);
  }
}
BENCHMARK(BM_FormatStamp);

// --- Registry and ACLs -------------------------------------------------------

std::string DeviceId(size_t i) {
  char id[32];
  std::snprintf(id, sizeof(id), "sensor-%07zu", i);
  return id;
}

std::string TokenOf(const std::string& id) {
  return "devices/" + id + "/notifications";
}

// A registry of `n` sensors plus the backend "homepot" (the integration
// guide's example in docs/operating.md, "Plain SQL and ready policies": homepot
// writes devices/+/notifications) and one global rule letting every device
// publish its status (LWT). Built once per size per process; the million-device
// one takes about 250 MB.
const Snapshot& Registry(size_t n) {
  static auto* cache = new std::map<size_t, std::shared_ptr<const Snapshot>>;
  auto& slot = (*cache)[n];
  if (slot) return *slot;
  auto started = std::chrono::steady_clock::now();
  std::vector<Device> devices;
  devices.reserve(n + 1);
  for (size_t i = 0; i < n; ++i) {
    Device d;
    d.id = DeviceId(i);
    d.type = "iot_sensor";
    d.max_payload = 10240;
    d.enabled = true;
    d.has_password = true;
    d.password.iterations = 1000;
    devices.push_back(std::move(d));
  }
  Device backend;
  backend.id = "homepot";
  backend.type = "backend";
  backend.max_payload = 262144;
  backend.enabled = true;
  backend.has_password = true;
  backend.rules = {{"devices/+/notifications", kRuleWrite},
                   {"$SYS/homepot/stats", kRuleRead}};
  devices.push_back(std::move(backend));
  slot = Snapshot::Build(std::move(devices),
                         {{"devices/%u/status", kRuleWrite}}, 1, 10240);
  double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started)
          .count();
  std::fprintf(stderr, "registry of %zu devices built in %.2f s\n", n, seconds);
  return *slot;
}

// 4096 devices picked at random (fixed seed), with their tokens, so that
// the 1M-device runs pay the cache misses a real broker would.
struct Sampled {
  std::vector<std::string> ids;
  std::vector<std::string> tokens;
};
const Sampled& Sample(size_t n) {
  static auto* cache = new std::map<size_t, Sampled>;
  auto [it, inserted] = cache->try_emplace(n);
  if (inserted) {
    std::mt19937_64 random(42);
    for (int i = 0; i < 4096; ++i) {
      std::string id = DeviceId(random() % n);
      it->second.tokens.push_back(TokenOf(id));
      it->second.ids.push_back(std::move(id));
    }
  }
  return it->second;
}

// A subscriber's delivery check on its own token (read access).
void BM_AclOwnToken(benchmark::State& state) {
  size_t n = static_cast<size_t>(state.range(0));
  const Snapshot& snapshot = Registry(n);
  const Sampled& sample = Sample(n);
  std::vector<const Device*> devices;
  for (const std::string& id : sample.ids) devices.push_back(snapshot.Find(id));
  size_t i = 0;
  AllocationCounter allocations(state);
  for (auto _ : state) {
    bool ok = AclAllows(snapshot, devices[i], sample.ids[i], sample.tokens[i],
                        Access::kRead);
    benchmark::DoNotOptimize(ok);
    i = (i + 1) & 4095;
  }
  if (!AclAllows(snapshot, devices[0], "", sample.tokens[0], Access::kRead)) {
    state.SkipWithError("own token refused");
  }
}
BENCHMARK(BM_AclOwnToken)->Arg(100)->Arg(1000000);

// The same subscriber subscribing to its own token.
void BM_AclSubscribeOwnToken(benchmark::State& state) {
  size_t n = static_cast<size_t>(state.range(0));
  const Snapshot& snapshot = Registry(n);
  const Sampled& sample = Sample(n);
  std::vector<const Device*> devices;
  for (const std::string& id : sample.ids) devices.push_back(snapshot.Find(id));
  size_t i = 0;
  AllocationCounter allocations(state);
  for (auto _ : state) {
    bool ok = AclAllows(snapshot, devices[i], sample.ids[i], sample.tokens[i],
                        Access::kSubscribe);
    benchmark::DoNotOptimize(ok);
    i = (i + 1) & 4095;
  }
}
BENCHMARK(BM_AclSubscribeOwnToken)->Arg(100)->Arg(1000000);

// The backend publishing to devices/<id>/notifications through its
// devices/+/notifications write rule.
void BM_AclBackendWrite(benchmark::State& state) {
  size_t n = static_cast<size_t>(state.range(0));
  const Snapshot& snapshot = Registry(n);
  const Sampled& sample = Sample(n);
  const Device* backend = snapshot.Find("homepot");
  size_t i = 0;
  AllocationCounter allocations(state);
  for (auto _ : state) {
    bool ok = AclAllows(snapshot, backend, "homepot-backend-1",
                        sample.tokens[i], Access::kWrite);
    benchmark::DoNotOptimize(ok);
    i = (i + 1) & 4095;
  }
  if (!AclAllows(snapshot, backend, "c", sample.tokens[0], Access::kWrite)) {
    state.SkipWithError("backend write refused");
  }
}
BENCHMARK(BM_AclBackendWrite)->Arg(100)->Arg(1000000);

// What OnAclCheck does per delivery: find the device, then decide.
void BM_FindThenAclOwnToken(benchmark::State& state) {
  size_t n = static_cast<size_t>(state.range(0));
  const Snapshot& snapshot = Registry(n);
  const Sampled& sample = Sample(n);
  size_t i = 0;
  AllocationCounter allocations(state);
  for (auto _ : state) {
    const Device* d = snapshot.Find(sample.ids[i]);
    bool ok =
        AclAllows(snapshot, d, sample.ids[i], sample.tokens[i], Access::kRead);
    benchmark::DoNotOptimize(ok);
    i = (i + 1) & 4095;
  }
}
BENCHMARK(BM_FindThenAclOwnToken)->Arg(100)->Arg(1000000);

// Registry lookups by device id: random ids, and one id again and again.
void BM_SnapshotFind_Random(benchmark::State& state) {
  size_t n = static_cast<size_t>(state.range(0));
  const Snapshot& snapshot = Registry(n);
  const Sampled& sample = Sample(n);
  size_t i = 0;
  AllocationCounter allocations(state);
  for (auto _ : state) {
    benchmark::DoNotOptimize(snapshot.Find(sample.ids[i]));
    i = (i + 1) & 4095;
  }
}
BENCHMARK(BM_SnapshotFind_Random)->Arg(100)->Arg(1000000);

void BM_SnapshotFind_Same(benchmark::State& state) {
  size_t n = static_cast<size_t>(state.range(0));
  const Snapshot& snapshot = Registry(n);
  std::string id = DeviceId(n / 2);
  AllocationCounter allocations(state);
  for (auto _ : state) benchmark::DoNotOptimize(snapshot.Find(id));
}
BENCHMARK(BM_SnapshotFind_Same)->Arg(1000000);

void BM_SnapshotFind_Unknown(benchmark::State& state) {
  size_t n = static_cast<size_t>(state.range(0));
  const Snapshot& snapshot = Registry(n);
  AllocationCounter allocations(state);
  for (auto _ : state) benchmark::DoNotOptimize(snapshot.Find("intruder-01"));
}
BENCHMARK(BM_SnapshotFind_Unknown)->Arg(1000000);

void BM_SnapshotFindByToken(benchmark::State& state) {
  size_t n = static_cast<size_t>(state.range(0));
  const Snapshot& snapshot = Registry(n);
  const Sampled& sample = Sample(n);
  size_t i = 0;
  AllocationCounter allocations(state);
  for (auto _ : state) {
    benchmark::DoNotOptimize(snapshot.FindByToken(sample.tokens[i]));
    i = (i + 1) & 4095;
  }
}
BENCHMARK(BM_SnapshotFindByToken)->Arg(1000000);

// --- Credentials ---------------------------------------------------------

// A full $7$ check at the default 1000 PBKDF2-HMAC-SHA512 iterations: what
// the first login of a device (and every wrong password) costs.
void BM_VerifyPassword(benchmark::State& state) {
  Result<PasswordHash> hash =
      HashPassword("s3cret-one", static_cast<int>(state.range(0)));
  if (!hash.ok()) {
    state.SkipWithError(hash.status().message().c_str());
    return;
  }
  AllocationCounter allocations(state);
  for (auto _ : state) {
    benchmark::DoNotOptimize(VerifyPassword(*hash, "s3cret-one"));
  }
}
BENCHMARK(BM_VerifyPassword)->Arg(1000)->Unit(benchmark::kMicrosecond);

std::shared_ptr<const Snapshot> OneDeviceRegistry(const PasswordHash& hash) {
  Device d;
  d.id = "sensor-001";
  d.type = "iot_sensor";
  d.enabled = true;
  d.has_password = true;
  d.password = hash;
  std::vector<Device> devices;
  devices.push_back(std::move(d));
  return Snapshot::Build(std::move(devices), {}, 1, 10240);
}

// A reconnect with the password that already succeeded once: the cached
// HMAC path, no PBKDF2.
void BM_AuthenticateCached(benchmark::State& state) {
  Result<PasswordHash> hash = HashPassword("s3cret-one", kDefaultIterations);
  auto snapshot = OneDeviceRegistry(*hash);
  Authenticator auth(AuthOptions{});
  if (auth.Authenticate(*snapshot, "sensor-001", "s3cret-one", 0) !=
      AuthResult::kAllow) {
    state.SkipWithError("first login refused");
    return;
  }
  AllocationCounter allocations(state);
  int64_t now = 1;
  for (auto _ : state) {
    benchmark::DoNotOptimize(
        auth.Authenticate(*snapshot, "sensor-001", "s3cret-one", ++now));
  }
}
BENCHMARK(BM_AuthenticateCached);

// A wrong password (lockout off, so every attempt pays the full hash).
void BM_AuthenticateWrongPassword(benchmark::State& state) {
  Result<PasswordHash> hash = HashPassword("s3cret-one", kDefaultIterations);
  auto snapshot = OneDeviceRegistry(*hash);
  AuthOptions options;
  options.max_failures = 0;
  options.hash_budget_us_per_s = 0;  // measure the hash, not the throttle
  Authenticator auth(options);
  auth.Authenticate(*snapshot, "sensor-001", "s3cret-one", 0);
  AllocationCounter allocations(state);
  int64_t now = 1;
  for (auto _ : state) {
    benchmark::DoNotOptimize(
        auth.Authenticate(*snapshot, "sensor-001", "wrong", ++now));
  }
}
BENCHMARK(BM_AuthenticateWrongPassword)->Unit(benchmark::kMicrosecond);

// --- Statistics ------------------------------------------------------------

// What OnMessage adds per accepted notification: global and per-device
// counters.
void BM_CountAccepted(benchmark::State& state) {
  Counters counters;
  DeviceCounters device;
  int qos = 1;
  size_t priority = 2;
  AllocationCounter allocations(state);
  for (auto _ : state) {
    ++counters.total_sent;
    counters.last_sent_ms = kNowMs;
    ++counters.total_success;
    ++counters.qos[qos];
    ++counters.priority[priority];
    ++device.published;
    device.last_publish_ms = kNowMs;
    device.dirty = true;
    benchmark::DoNotOptimize(&counters);
    benchmark::DoNotOptimize(&device);
    benchmark::ClobberMemory();
  }
}
BENCHMARK(BM_CountAccepted);

// The stats tick: render the stats document (docs/operating.md, "Statistics").
void BM_RenderStats(benchmark::State& state) {
  Counters counters;
  counters.total_sent = 123456789;
  counters.rejected[3] = 42;
  RegistryInfo info;
  info.devices = 1000000;
  info.loaded_at_ms = kNowMs;
  AllocationCounter allocations(state);
  for (auto _ : state) {
    benchmark::DoNotOptimize(
        RenderStats(counters, info, "broker-1", 3600, kNowMs));
  }
}
BENCHMARK(BM_RenderStats)->Unit(benchmark::kMicrosecond);

// --- device_stats flush ------------------------------------------------------

// One batched flush of `range(0)` devices with changed counters into a real
// registry file (WAL), on the worker's connection: what the background thread
// does once per stats interval.
void BM_DeviceStatsFlush(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  test::TempDir dir("homepot-bench");
  const std::string path = dir.Path("homepot.db");
  if (!dir.ok() || !test::CreateRegistryFile(path)) {
    state.SkipWithError("no registry file");
    return;
  }
  for (auto _ : state) {
    RegistryWorker worker(path, "bench", 600000, DeliveryLogRetention{});
    if (!worker.Start().ok()) {
      state.SkipWithError("registry did not load");
      break;
    }
    std::vector<DeviceStatsDelta> batch;
    for (int i = 0; i < n; ++i) {
      DeviceCounters c;
      c.published = 3;
      c.delivered = 5;
      c.last_publish_ms = 1795606354123;
      batch.push_back({"dev-" + std::to_string(i), c});
    }
    while (!worker.SubmitStats(&batch)) {
    }
    worker.Shutdown();  // writes the batch synchronously
    state.SetIterationTime(worker.last_flush_ms() / 1000.0);
    state.counters["rows"] = static_cast<double>(worker.last_flush_rows());
  }
}
BENCHMARK(BM_DeviceStatsFlush)
    ->Arg(10000)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond)
    ->Iterations(5);

}  // namespace
}  // namespace homepot

BENCHMARK_MAIN();
