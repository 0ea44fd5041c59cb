// homepot_churn: registry churn against a running Mosquitto with the HOMEPOT
// plugin, driven by `scripts/bench --churn`.
//
// 1. Connects S "victim" devices (dev-0 .. dev-<S-1>, one live MQTT
//    connection each) and waits --idle-seconds: the broker's idle CPU and
//    RSS.
// 2. Applies --rate changes per second for --duration seconds to the
//    registry (--db: a SQLite file or a postgresql:// URL) through its own
//    connection (common/database.h), one autocommit statement each,
//    cycling through: a device's password changed, a device's enabled flag
//    flipped, a device inserted, a device deleted (random devices among
//    dev-<S> .. dev-<N-1>). S of those changes, one at a random place in
//    each S-th of the run (so that they fall at different points of the
//    plugin's poll interval), instead revoke a victim
//    (disabled, or its password changed, alternately): the time from that
//    commit until the broker closes the victim's connection is the change's
//    time to take effect, seen from the broker's side.
// 3. Reports the broker's CPU over the idle window and over the churn (all
//    threads, and per thread name, from /proc/PID/task/*/stat utime+stime),
//    VmRSS at the end of the idle window, the highest VmRSS sampled every
//    50 ms during the churn and VmHWM after the churn (reset at its start
//    through /proc/PID/clear_refs when allowed), and, on SQLite, how often
//    the registry file itself (not its WAL) was written during the churn,
//    by checkpoints (its mtime, sampled every 50 ms; NA on PostgreSQL).
//
// Output: lines starting with "# ", then one "RESULT key=value ..." line.
// Exit status 0 when every victim connected and every change committed (a
// victim never disconnected is reported, not an error), 2 on bad usage, 3
// when a victim could not connect or a change failed.
#include <dirent.h>
#include <mosquitto.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "database.h"

namespace {

int64_t NowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

constexpr int64_t kMs = 1000000;
constexpr int64_t kSec = 1000000000;

struct Options {
  int port = 1883;
  std::string db;
  std::string password;
  std::string hash;   // password_hash of --password (for inserted devices)
  std::string hash2;  // another valid hash (password changes)
  long devices = 0;   // dev-0 .. dev-<devices-1> exist
  double rate = 10;   // changes per second
  double duration_s = 30;
  int samples = 10;  // victims
  double idle_s = 5;
  int broker_pid = 0;
  double wait_s = 10;  // how long a victim's disconnect is awaited
};

[[noreturn]] void Usage(int status) {
  std::fprintf(
      status ? stderr : stdout,
      "usage: homepot_churn --port P --db FILE|URL --password PW --hash H "
      "--hash2 H2\n"
      "         --devices N --broker-pid PID [--rate K] [--duration D]\n"
      "         [--samples S] [--idle-seconds I] [--wait-seconds W]\n"
      "  --db is a SQLite file or a postgresql:// URL (password in a\n"
      "  passfile). dev-0 .. dev-<N-1> must exist with password PW (hash H);\n"
      "  H2 is another valid hash.\n"
      "  Defaults: K 10/s, D 30 s, S 10, I 5 s, W 10 s.\n");
  std::exit(status);
}

double ToDouble(const std::string& what, const char* s) {
  char* end = nullptr;
  double v = std::strtod(s, &end);
  if (end == s || *end != '\0') {
    std::fprintf(stderr, "homepot_churn: %s: not a number: %s\n", what.c_str(),
                 s);
    std::exit(2);
  }
  return v;
}

Options Parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--help" || a == "-h") Usage(0);
    if (i + 1 >= argc) {
      std::fprintf(stderr, "homepot_churn: %s needs a value\n", a.c_str());
      Usage(2);
    }
    const char* v = argv[++i];
    if (a == "--port")
      o.port = int(ToDouble(a, v));
    else if (a == "--db")
      o.db = v;
    else if (a == "--password")
      o.password = v;
    else if (a == "--hash")
      o.hash = v;
    else if (a == "--hash2")
      o.hash2 = v;
    else if (a == "--devices")
      o.devices = long(ToDouble(a, v));
    else if (a == "--rate")
      o.rate = ToDouble(a, v);
    else if (a == "--duration")
      o.duration_s = ToDouble(a, v);
    else if (a == "--samples")
      o.samples = int(ToDouble(a, v));
    else if (a == "--idle-seconds")
      o.idle_s = ToDouble(a, v);
    else if (a == "--broker-pid")
      o.broker_pid = int(ToDouble(a, v));
    else if (a == "--wait-seconds")
      o.wait_s = ToDouble(a, v);
    else {
      std::fprintf(stderr, "homepot_churn: unknown option %s\n", a.c_str());
      Usage(2);
    }
  }
  auto bad = [](const char* what) {
    std::fprintf(stderr, "homepot_churn: %s\n", what);
    std::exit(2);
  };
  if (o.db.empty() || o.password.empty() || o.hash.empty() || o.hash2.empty())
    bad("--db, --password, --hash and --hash2 are required");
  if (o.broker_pid <= 0) bad("--broker-pid is required");
  if (o.rate <= 0 || o.rate > 10000) bad("--rate must be in (0, 10000]");
  if (o.duration_s <= 0 || o.duration_s > 3600)
    bad("--duration must be in (0, 3600]");
  if (o.samples < 1 || o.samples > 1000) bad("--samples must be 1..1000");
  if (o.idle_s < 0 || o.idle_s > 600) bad("--idle-seconds must be 0..600");
  if (o.wait_s <= 0 || o.wait_s > 600) bad("--wait-seconds must be (0, 600]");
  if (o.devices < o.samples + 4) bad("--devices must exceed --samples + 4");
  if (o.rate * o.duration_s < 2.0 * o.samples)
    bad("rate x duration must be at least twice --samples");
  return o;
}

// ------------------------------------------------------------- /proc

// utime + stime in clock ticks per thread name, summed over the process's
// threads (threads that ended are not counted).
std::map<std::string, long long> ThreadTicks(int pid) {
  std::map<std::string, long long> out;
  const std::string dir = "/proc/" + std::to_string(pid) + "/task";
  DIR* d = opendir(dir.c_str());
  if (!d) return out;
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] == '.') continue;
    std::ifstream in(dir + "/" + e->d_name + "/stat");
    std::string line;
    if (!std::getline(in, line)) continue;
    // pid (comm) state ... : comm may hold spaces, so split at the last ')'.
    const size_t open = line.find('(');
    const size_t close = line.rfind(')');
    if (open == std::string::npos || close == std::string::npos) continue;
    const std::string comm = line.substr(open + 1, close - open - 1);
    std::istringstream rest(line.substr(close + 2));
    std::string field;
    long long utime = 0, stime = 0;
    // Fields 3.. of stat(5): utime is field 14, stime 15.
    for (int f = 3; f <= 15 && rest >> field; ++f) {
      if (f == 14) utime = std::atoll(field.c_str());
      if (f == 15) stime = std::atoll(field.c_str());
    }
    out[comm] += utime + stime;
  }
  closedir(d);
  return out;
}

long long Total(const std::map<std::string, long long>& ticks) {
  long long t = 0;
  for (const auto& [name, v] : ticks) t += v;
  return t;
}

// A "Vm...:" line of /proc/PID/status in kB, -1 when absent.
long StatusKb(int pid, const char* key) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  const size_t n = std::strlen(key);
  while (std::getline(in, line)) {
    if (line.compare(0, n, key) == 0 && line.size() > n && line[n] == ':') {
      return std::atol(line.c_str() + n + 1);
    }
  }
  return -1;
}

// The file's mtime in ns, -1 when it cannot be read.
int64_t MtimeNs(const std::string& path) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) return -1;
  return int64_t(st.st_mtim.tv_sec) * kSec + st.st_mtim.tv_nsec;
}

// Resets VmHWM to the current RSS (Linux >= 4.0); false if not allowed.
bool ResetHwm(int pid) {
  std::ofstream out("/proc/" + std::to_string(pid) + "/clear_refs");
  out << "5";
  out.flush();
  return static_cast<bool>(out);
}

// ------------------------------------------------------------- victims

// One device with a live connection, driven by its own thread until the
// broker closes the connection or Stop().
class Victim {
 public:
  Victim(const Options& o, const std::string& name) : name_(name) {
    mosq_ = mosquitto_new(("churn-" + name).c_str(), true, this);
    mosquitto_username_pw_set(mosq_, name.c_str(), o.password.c_str());
    mosquitto_connect_callback_set(mosq_, [](mosquitto*, void* self, int rc) {
      auto* v = static_cast<Victim*>(self);
      v->connack_ = rc;
    });
    mosquitto_disconnect_callback_set(mosq_, [](mosquitto*, void* self, int) {
      auto* v = static_cast<Victim*>(self);
      int64_t expected = 0;
      v->closed_ns_.compare_exchange_strong(expected, NowNs());
    });
    port_ = o.port;
  }
  ~Victim() {
    Stop();
    mosquitto_destroy(mosq_);
  }
  Victim(const Victim&) = delete;
  Victim& operator=(const Victim&) = delete;

  bool Start() {
    if (mosquitto_connect(mosq_, "127.0.0.1", port_, 60) != MOSQ_ERR_SUCCESS)
      return false;
    thread_ = std::thread([this] {
      while (!stop_.load() && closed_ns_.load() == 0) {
        if (mosquitto_loop(mosq_, 5, 1) != MOSQ_ERR_SUCCESS) {
          int64_t expected = 0;
          closed_ns_.compare_exchange_strong(expected, NowNs());
        }
      }
    });
    return true;
  }
  void Stop() {
    stop_.store(true);
    if (thread_.joinable()) thread_.join();
  }
  int connack() const { return connack_.load(); }  // -1: none yet
  int64_t closed_ns() const { return closed_ns_.load(); }
  const std::string& name() const { return name_; }

 private:
  std::string name_;
  int port_ = 0;
  mosquitto* mosq_ = nullptr;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<int> connack_{-1};
  std::atomic<int64_t> closed_ns_{0};
};

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return -1;
  std::sort(v.begin(), v.end());
  const size_t i = std::min(v.size() - 1, size_t(p * (v.size() - 1) + 0.5));
  return v[i];
}

std::string Num(double v, const char* fmt = "%.1f") {
  if (v < 0) return "NA";
  char buf[64];
  std::snprintf(buf, sizeof buf, fmt, v);
  return buf;
}

int Run(const Options& o) {
  const double tick = double(sysconf(_SC_CLK_TCK));
  mosquitto_lib_init();
  std::vector<std::unique_ptr<Victim>> victims;
  for (int s = 0; s < o.samples; ++s) {
    victims.push_back(std::make_unique<Victim>(o, "dev-" + std::to_string(s)));
    if (!victims.back()->Start()) {
      std::printf("# victim %d could not connect\nRESULT error=connect\n", s);
      return 3;
    }
  }
  const int64_t connect_deadline = NowNs() + 60 * kSec;
  for (auto& v : victims) {
    while (v->connack() < 0 && v->closed_ns() == 0 &&
           NowNs() < connect_deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    if (v->connack() != 0 || v->closed_ns() != 0) {
      std::printf("# %s was refused (CONNACK %d)\nRESULT error=connack\n",
                  v->name().c_str(), v->connack());
      return 3;
    }
  }

  // Idle: victims connected, no change.
  const auto idle0 = ThreadTicks(o.broker_pid);
  const int64_t idle_t0 = NowNs();
  std::this_thread::sleep_for(std::chrono::duration<double>(o.idle_s));
  const auto idle1 = ThreadTicks(o.broker_pid);
  const double idle_wall = double(NowNs() - idle_t0) / kSec;
  const long rss_idle_kb = StatusKb(o.broker_pid, "VmRSS");

  auto opened = homepot::Database::OpenLocation(
      o.db, homepot::Database::Mode::kReadWrite, 10000);
  if (!opened.ok()) {
    std::printf("# cannot open the registry: %s\nRESULT error=db\n",
                opened.status().message().c_str());
    return 3;
  }
  homepot::Database db = std::move(*opened);
  const bool on_file = db.backend() == homepot::Backend::kSqlite;
  // The changes, written once for both backends (?N parameters); each runs
  // as one autocommit statement.
  enum Kind { kDisable, kSetHash, kToggleHash, kFlip, kInsert, kDelete };
  const char* const kSql[] = {
      "UPDATE devices SET enabled = 0 WHERE device_id = ?1",
      "UPDATE devices SET password_hash = ?2 WHERE device_id = ?1",
      "UPDATE devices SET password_hash = CASE WHEN password_hash = ?2 "
      "THEN ?3 ELSE ?2 END WHERE device_id = ?1",
      "UPDATE devices SET enabled = 1 - enabled WHERE device_id = ?1",
      "INSERT INTO devices (device_id, device_type, password_hash) "
      "VALUES (?1, 'iot_sensor', ?2)",
      "DELETE FROM devices WHERE device_id = ?1",
  };
  std::vector<homepot::Statement> stmts;
  for (const char* sql : kSql) {
    auto st = db.Prepare(sql);
    if (!st.ok()) {
      std::printf("# cannot prepare %s: %s\nRESULT error=db\n", sql,
                  st.status().message().c_str());
      return 3;
    }
    stmts.push_back(std::move(*st));
  }

  const bool hwm_reset = ResetHwm(o.broker_pid);
  std::atomic<bool> sampling{true};
  std::atomic<long> rss_max_kb{StatusKb(o.broker_pid, "VmRSS")};
  std::atomic<int> file_writes{0};
  std::thread sampler([&] {
    int64_t mtime = on_file ? MtimeNs(o.db) : -1;
    while (sampling.load()) {
      rss_max_kb.store(
          std::max(rss_max_kb.load(), StatusKb(o.broker_pid, "VmRSS")));
      const int64_t m = on_file ? MtimeNs(o.db) : -1;
      if (m != mtime) file_writes.fetch_add(1);
      mtime = m;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  });

  const long changes = long(o.rate * o.duration_s);
  const long every = changes / o.samples;  // one victim change per `every`
  std::mt19937_64 rng(1);
  std::vector<long> victim_at(o.samples);
  for (int v = 0; v < o.samples; ++v) {
    victim_at[v] = v * every + long(rng() % uint64_t(every));
  }
  std::uniform_int_distribution<long> pick(o.samples, o.devices - 1);
  std::set<long> deleted;
  std::vector<int64_t> commit_ns(o.samples, 0);
  std::vector<double> exec_ms;
  long failed = 0, inserted = 0;
  std::string first_error;
  const auto churn0 = ThreadTicks(o.broker_pid);
  const int64_t t0 = NowNs();
  for (long c = 0; c < changes; ++c) {
    const int64_t due = t0 + int64_t(double(c) * kSec / o.rate);
    const int64_t now = NowNs();
    if (due > now) {
      std::this_thread::sleep_for(std::chrono::nanoseconds(due - now));
    }
    homepot::Statement* st = nullptr;
    int victim = -1;
    if (c / every < o.samples && c == victim_at[c / every]) {
      victim = int(c / every);
      st = &stmts[victim % 2 == 0 ? kDisable : kSetHash];
      st->Bind(1, victims[victim]->name());
      if (victim % 2 != 0) st->Bind(2, o.hash2);
    } else {
      long i = pick(rng);
      while (deleted.count(i)) i = pick(rng);
      const std::string id = "dev-" + std::to_string(i);
      switch (c % 4) {
        case 0:
          st = &stmts[kToggleHash];
          st->Bind(1, id).Bind(2, o.hash).Bind(3, o.hash2);
          break;
        case 1:
          st = &stmts[kFlip];
          st->Bind(1, id);
          break;
        case 2:
          st = &stmts[kInsert];
          st->Bind(1, "churn-" + std::to_string(inserted++)).Bind(2, o.hash);
          break;
        default:
          st = &stmts[kDelete];
          st->Bind(1, id);
          deleted.insert(i);
      }
    }
    const int64_t start = NowNs();
    const homepot::Status ran = st->Run();
    if (!ran.ok()) {
      if (first_error.empty()) first_error = ran.message();
      ++failed;
      st->Reset();
    }
    const int64_t end = NowNs();  // committed (autocommit)
    exec_ms.push_back(double(end - start) / kMs);
    if (victim >= 0) commit_ns[victim] = end;
  }
  const int64_t t1 = NowNs();
  const auto churn1 = ThreadTicks(o.broker_pid);
  sampling.store(false);
  sampler.join();
  const double churn_wall = double(t1 - t0) / kSec;
  const long hwm_kb = StatusKb(o.broker_pid, "VmHWM");
  const long rss_end_kb = StatusKb(o.broker_pid, "VmRSS");
  stmts.clear();

  // Time from each revoking commit to the closed connection.
  std::vector<double> effect_ms;
  int never = 0;
  for (int s = 0; s < o.samples; ++s) {
    const int64_t deadline = commit_ns[s] + int64_t(o.wait_s * kSec);
    while (victims[s]->closed_ns() == 0 && NowNs() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    const int64_t closed = victims[s]->closed_ns();
    if (closed == 0) {
      ++never;
      std::printf("# %s: not disconnected within %.0f s\n",
                  victims[s]->name().c_str(), o.wait_s);
    } else {
      effect_ms.push_back(double(closed - commit_ns[s]) / kMs);
      std::printf("# %s %s: closed %.1f ms after the commit\n",
                  victims[s]->name().c_str(),
                  s % 2 == 0 ? "disabled" : "password changed",
                  effect_ms.back());
    }
  }
  victims.clear();
  mosquitto_lib_cleanup();

  auto pct = [&](const std::map<std::string, long long>& a,
                 const std::map<std::string, long long>& b, double wall,
                 const std::string& name) {
    if (!name.empty() && !b.count(name)) return -1.0;  // no such thread
    const long long d = name.empty()
                            ? Total(b) - Total(a)
                            : b.at(name) - (a.count(name) ? a.at(name) : 0);
    return 100.0 * double(d) / tick / wall;
  };
  std::set<std::string> names;
  for (const auto& [n, v] : churn1) names.insert(n);
  for (const std::string& n : names) {
    std::printf("# thread %-16s idle %5.1f %%  churn %5.1f %%\n", n.c_str(),
                pct(idle0, idle1, idle_wall, n),
                pct(churn0, churn1, churn_wall, n));
  }
  if (failed > 0) {
    std::printf("# %ld changes failed, first: %s\n", failed,
                first_error.c_str());
  }
  const double within =
      effect_ms.empty()
          ? -1
          : double(std::count_if(effect_ms.begin(), effect_ms.end(),
                                 [](double ms) { return ms <= 1000; }));
  std::printf(
      "RESULT changes=%ld failed=%ld rate=%.2f churn_s=%.2f samples=%d "
      "effect_p50_ms=%s effect_max_ms=%s effect_min_ms=%s within_1s=%s "
      "never=%d exec_p50_ms=%s exec_max_ms=%s cpu_idle_pct=%s "
      "cpu_churn_pct=%s cpu_worker_idle_pct=%s cpu_worker_churn_pct=%s "
      "cpu_main_churn_pct=%s rss_idle_mb=%s rss_max_mb=%s hwm_mb=%s "
      "hwm_reset=%d rss_end_mb=%s file_writes=%s\n",
      changes, failed, double(changes) / churn_wall, churn_wall, o.samples,
      Num(Percentile(effect_ms, 0.5)).c_str(),
      Num(Percentile(effect_ms, 1.0)).c_str(),
      Num(Percentile(effect_ms, 0.0)).c_str(), Num(within, "%.0f").c_str(),
      never, Num(Percentile(exec_ms, 0.5), "%.2f").c_str(),
      Num(Percentile(exec_ms, 1.0), "%.2f").c_str(),
      Num(pct(idle0, idle1, idle_wall, ""), "%.2f").c_str(),
      Num(pct(churn0, churn1, churn_wall, ""), "%.2f").c_str(),
      Num(pct(idle0, idle1, idle_wall, "homepot-reg"), "%.2f").c_str(),
      Num(pct(churn0, churn1, churn_wall, "homepot-reg"), "%.2f").c_str(),
      Num(pct(churn0, churn1, churn_wall, "mosquitto"), "%.2f").c_str(),
      Num(rss_idle_kb / 1024.0).c_str(),
      Num(rss_max_kb.load() / 1024.0).c_str(), Num(hwm_kb / 1024.0).c_str(),
      hwm_reset ? 1 : 0, Num(rss_end_kb / 1024.0).c_str(),
      on_file ? std::to_string(file_writes.load()).c_str() : "NA");
  return failed > 0 ? 3 : 0;
}

}  // namespace

int main(int argc, char** argv) { return Run(Parse(argc, argv)); }
