// Concurrency stress ("churn"): for HOMEPOT_CHURN_SECONDS (default 15) an
// admin thread rewrites the registry under the running broker (password
// changes, disable/enable, remove/add, ACL grants and revokes, SIGHUP now and
// then) while one thread per churn device logs in and out with current, old
// and wrong passwords on a small pool of its own client ids, a backend
// publishes notifications and "stable" devices, whose credentials never
// change, stay subscribed for the whole run.
//
// The test keeps its own model of what it did: for every device the list of
// credential changes with the time the SQL started, the time the commit
// returned and the registry generation after it; the plugin's log line
// "registry reloaded: generation N" (tailed while the run goes on) says from
// when the broker had applied a generation. From that, at the end:
//
// - a session that logged in with credentials that a later change revoked
//   (disable, remove, password change) must be gone within kRevocationLimitMs
//   of the commit of that change returning;
// - a session is "valid" when its login can only have been judged against
//   the registry state in force at its CONNACK (the plugin had applied every
//   earlier change of its device, or no earlier state would have accepted its
//   password): it must not be disconnected by the broker before the next
//   change of its device;
// - no login is accepted with credentials that no registry state the plugin
//   could have had would accept, and none with valid credentials is refused
//   once the plugin has applied the device's last change;
// - stable devices and the backend are never disconnected, and every QoS 1
//   notification the backend got a PUBACK for reaches its stable subscriber
//   (payload parsed as JSON, receipt stamp present);
// - the broker is still running at the end, serves a fresh login, and exits
//   cleanly on SIGTERM.
//
// Waits use deadlines, never a sleep followed by an assertion; the only
// sleeps pace the load generators. Every loop is bounded in time and count.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "credentials.h"
#include "harness.h"

namespace homepot {
namespace integration {
namespace {

using Clock = std::chrono::steady_clock;
using TimePoint = Clock::time_point;
using nlohmann::json;

// ------------------------------------------------------------- parameters

constexpr int kChurnDevices = 8;
constexpr int kStableDevices = 4;
constexpr int kIdsPerDevice = 4;         // client ids per churn device
constexpr size_t kMaxLivePerDevice = 3;  // < kIdsPerDevice: one id is free
constexpr int kReloadIntervalMs = 100;
// 1 s from the commit returning to the session being gone, plus slack for
// the reload poll.
constexpr int64_t kRevocationLimitMs = 1500;
// How long the admin waits for the plugin to apply a change before it moves
// on (and reports it).
constexpr int kApplyTimeoutMs = 5000;
constexpr int kHashIterations = 10;  // the registry accepts at most 1000
constexpr int kPasswordPool = 1000;
constexpr int kConnectTimeoutMs = 5000;
constexpr int kSubscribeTimeoutMs = 5000;
constexpr int kPublishTimeoutMs = 10000;
constexpr int kBurstLimitMs = 3000;  // a device retrying its new password
// The retry interval of such a device, and the backend's between publishes.
// A retry is often the first event after the plugin's reload thread posted
// the change, so that the login itself swaps the new registry in: the path
// where old sessions must be ended and the new one kept.
constexpr int kBurstPauseMs = 10;
constexpr int kBackendPauseMs = 10;
// Upper bounds on every loop, whatever the clock does.
constexpr int kMaxAdminOps = 20000;
constexpr int kMaxAclRounds = 10000;
constexpr int kMaxWorkerSteps = 20000;
constexpr int kMaxBurstAttempts = 100;
constexpr int64_t kMaxPublishes = 2000000;
constexpr int kMaxWatchPolls = 10000000;
constexpr size_t kMaxFindingsShown = 40;
// A crashing broker closes its sockets a moment before the watcher (polling
// every 5 ms) sees the process gone.
constexpr int kCrashSlackMs = 100;

int64_t MsBetween(TimePoint from, TimePoint to) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(to - from)
      .count();
}

int EnvInt(const char* name, int fallback, int lo, int hi) {
  const char* env = getenv(name);
  if (env == nullptr || env[0] == '\0') return fallback;
  char* end = nullptr;
  long v = strtol(env, &end, 10);
  if (end == env || *end != '\0' || v < lo || v > hi) {
    ADD_FAILURE() << name << "='" << env << "' is not a whole number in [" << lo
                  << ", " << hi << "]";
    return fallback;
  }
  return static_cast<int>(v);
}

std::string Token(const std::string& device) {
  return "devices/" + device + "/notifications";
}

// True while `pid` (our child) exists and is not a zombie.
bool ProcessAlive(pid_t pid) {
  if (pid <= 0) return false;
  std::string stat = ReadFile("/proc/" + std::to_string(pid) + "/stat");
  size_t paren = stat.rfind(')');
  if (paren == std::string::npos || paren + 2 >= stat.size()) return false;
  char state = stat[paren + 2];
  return state != 'Z' && state != 'X';
}

std::string DescribeStatus(int status) {
  if (WIFEXITED(status)) {
    return "exit status " + std::to_string(WEXITSTATUS(status));
  }
  if (WIFSIGNALED(status)) {
    int sig = WTERMSIG(status);
    const char* name = strsignal(sig);
    return "signal " + std::to_string(sig) + " (" + (name ? name : "?") + ")";
  }
  return "wait status " + std::to_string(status);
}

std::string NotificationPayload(const std::string& to, int64_t seq) {
  json j = {{"title", "churn"},
            {"body", "message " + std::to_string(seq) + " for " + to},
            {"data", {{"seq", seq}, {"to", to}}}};
  return j.dump();
}

// The checks a delivered notification must pass; empty = fine. Sets `seq`.
std::string CheckDelivered(const std::string& device, const std::string& topic,
                           const std::string& payload, int64_t* seq) {
  if (topic != Token(device)) return "on foreign topic " + topic;
  json j = json::parse(payload, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return "not a JSON object";
  auto title = j.find("title");
  auto body = j.find("body");
  auto data = j.find("data");
  auto stamp = j.find("received_at");
  if (title == j.end() || *title != "churn") return "wrong title";
  if (body == j.end() || !body->is_string()) return "no body";
  if (data == j.end() || !data->is_object()) return "no data object";
  auto s = data->find("seq");
  auto to = data->find("to");
  if (s == data->end() || !s->is_number_integer()) return "no data.seq";
  if (to == data->end() || *to != device) return "data.to is not " + device;
  if (stamp == j.end() || !stamp->is_string() ||
      ParseStampMs(stamp->get<std::string>()) < 0) {
    return "no received_at stamp";
  }
  *seq = s->get<int64_t>();
  return "";
}

// ------------------------------------------------------------- findings

class Findings {
 public:
  void Add(std::string what) {
    std::lock_guard<std::mutex> lock(mu_);
    list_.push_back(std::move(what));
  }
  std::vector<std::string> All() {
    std::lock_guard<std::mutex> lock(mu_);
    return list_;
  }

 private:
  std::mutex mu_;
  std::vector<std::string> list_;
};

// --------------------------------------------------------------- sessions

// One login attempt and, when accepted, the session it opened.
struct SessionRecord {
  std::string device;
  std::string client_id;
  std::string password;
  int protocol = kMqtt5;
  bool stable = false;  // stable device or backend: must never go down
  bool raw = false;     // RawSession (TCP first, CONNECT a moment later)
  bool attempted = false;
  TimePoint attempt{};  // just before the CONNECT went out
  int connack = -1;     // -1: none (timeout, or the socket closed)
  std::optional<TimePoint> connack_at;
  std::optional<TimePoint> down_at;  // disconnect callback
  int down_rc = 0;                   // v5: the DISCONNECT reason code
  // When the test itself ended the session (DISCONNECT, or a new login with
  // the same client id, which makes the broker take the old one over).
  std::optional<TimePoint> test_closed_at;
  std::string test_close_why;
};

struct SessionLog {
  std::mutex mu;  // guards every field of every record
  std::vector<std::shared_ptr<SessionRecord>> all;
};

using Sink =
    std::function<void(const std::string& topic, const std::string& payload)>;

// What the test does with any of its sessions; keeps the SessionRecord.
class SessionBase {
 public:
  SessionBase(int protocol, const std::string& client_id,
              const std::string& device, bool stable, bool raw, SessionLog* log)
      : protocol_(protocol), client_id_(client_id), log_(log) {
    rec_ = std::make_shared<SessionRecord>();
    rec_->device = device;
    rec_->client_id = client_id;
    rec_->protocol = protocol;
    rec_->stable = stable;
    rec_->raw = raw;
    std::lock_guard<std::mutex> lock(log_->mu);
    log_->all.push_back(rec_);
  }
  virtual ~SessionBase() = default;
  SessionBase(const SessionBase&) = delete;
  SessionBase& operator=(const SessionBase&) = delete;

  const std::string& client_id() const { return client_id_; }
  virtual bool IsUp() = 0;
  // Test-initiated end: DISCONNECT (if still up), then release everything.
  virtual void Close(const char* why) = 0;

  TimePoint attempt() {
    std::lock_guard<std::mutex> lock(log_->mu);
    return rec_->attempt;
  }

  // The broker will end this session because the test logged in again with
  // its client id at `t`: that disconnect is the test's doing.
  void MarkReplaced(TimePoint t) {
    std::lock_guard<std::mutex> lock(log_->mu);
    if ((!rec_->down_at || *rec_->down_at >= t) &&
        (!rec_->test_closed_at || *rec_->test_closed_at > t)) {
      rec_->test_closed_at = t;
      rec_->test_close_why = "taken over by a new login with its client id";
    }
  }

 protected:
  void RecordAttempt(const std::string& password) {
    std::lock_guard<std::mutex> lock(log_->mu);
    rec_->password = password;
    rec_->attempted = true;
    rec_->attempt = Clock::now();
  }
  void RecordConnack(int rc) {
    TimePoint now = Clock::now();
    std::lock_guard<std::mutex> lock(log_->mu);
    rec_->connack = rc;
    rec_->connack_at = now;
  }
  void RecordDown(int rc) {
    TimePoint now = Clock::now();
    std::lock_guard<std::mutex> lock(log_->mu);
    if (!rec_->down_at) {
      rec_->down_at = now;
      rec_->down_rc = rc;
    }
  }
  void RecordTestClose(const char* why) {
    TimePoint now = Clock::now();
    std::lock_guard<std::mutex> lock(log_->mu);
    if (!rec_->down_at && !rec_->test_closed_at) {
      rec_->test_closed_at = now;
      rec_->test_close_why = why;
    }
  }

  const int protocol_;
  const std::string client_id_;

 private:
  SessionLog* const log_;
  std::shared_ptr<SessionRecord> rec_;
};

// The harness's Client, single-use, stamping CONNACK and disconnect times
// into its SessionRecord and handing every message to a Sink.
class ChurnClient : public SessionBase {
 public:
  ChurnClient(int port, int protocol, const std::string& client_id,
              const std::string& device, bool stable, SessionLog* log,
              Sink sink)
      : SessionBase(protocol, client_id, device, stable, false, log),
        client_(port, Options(protocol, client_id, std::move(sink))) {}

  ~ChurnClient() override { Close("closed by the test"); }

  // CONNACK code (0 = accepted), or -1 without one.
  int Connect(const std::string& user, const std::string& password) {
    if (used_) return -1;
    used_ = true;
    RecordAttempt(password);
    return client_.Connect(user, password, kConnectTimeoutMs);
  }

  // Granted QoS / failure code from the SUBACK, or -1.
  int Subscribe(const std::string& filter, int qos, int timeout_ms) {
    return client_.Subscribe(filter, qos, timeout_ms);
  }

  // The PUBACK reason code (v3.1.1: always 0), or -1.
  int Publish(const std::string& topic, const std::string& payload, int qos,
              int timeout_ms) {
    return client_.PublishForReason(topic, payload, qos, timeout_ms);
  }

  bool IsUp() override { return client_.IsConnected(); }

  void Close(const char* why) override {
    if (client_.IsConnected()) RecordTestClose(why);
    client_.Disconnect();
  }

 private:
  ClientOptions Options(int protocol, const std::string& client_id, Sink sink) {
    ClientOptions options;
    options.protocol = protocol;
    options.client_id = client_id;
    options.on_connack = [this](int rc) { RecordConnack(rc); };
    options.on_down = [this](int rc) { RecordDown(rc); };
    // Without a sink, messages are dropped (nobody reads the queue).
    options.on_message =
        sink ? std::move(sink) : [](const std::string&, const std::string&) {};
    return options;
  }

  Client client_;
  bool used_ = false;
};

// MQTT over a plain socket for a device whose TCP connection is up before
// it sends CONNECT (a slow link, or a client that connects ahead). The
// broker accepts the socket in one loop iteration and reads the CONNECT in a
// later one, so a registry update posted in between is swapped in by this
// very login, the path where the plugin must end the device's old sessions
// and keep this one. Not subscribed: nothing arrives but a DISCONNECT.
class RawSession : public SessionBase {
 public:
  RawSession(int port, int protocol, const std::string& client_id,
             const std::string& device, SessionLog* log)
      : SessionBase(protocol, client_id, device, false, true, log),
        port_(port) {}
  ~RawSession() override { Close("closed by the test"); }

  // The TCP connection alone.
  bool Open() { return raw_.Open(port_); }

  // Sends CONNECT and reads CONNACK: its code, or -1 without one.
  int Connect(const std::string& user, const std::string& password) {
    RecordAttempt(password);
    // Keepalive 0: this session never pings, so it must not time out.
    int rc = raw_.Connect(protocol_, client_id_, user, password, 0);
    if (rc < 0) {
      if (raw_.closed()) RecordDown(-2);
      return -1;
    }
    RecordConnack(rc);
    if (rc != 0) {
      RecordDown(rc);
      return rc;
    }
    up_ = true;
    monitor_ = std::thread([this] { Monitor(); });
    return 0;
  }

  bool IsUp() override { return up_.load(); }

  void Close(const char* why) override {
    if (up_.load()) {
      RecordTestClose(why);
      raw_.Send(RawClient::DisconnectPacket(protocol_));
      Eventually([this] { return !up_.load(); }, 1000, 2);
    }
    stop_ = true;
    if (monitor_.joinable()) monitor_.join();
    raw_.Close();
  }

 private:
  // Waits for the broker to close the connection (keeping a v5 reason).
  void Monitor() {
    int reason = 7;  // MOSQ_ERR_CONN_LOST, as libmosquitto reports it
    while (!stop_.load()) {
      std::optional<RawPacket> p = raw_.Read(50);
      if (p) {
        if (p->type() == 14) {  // DISCONNECT
          reason = p->body.empty() ? 0 : static_cast<uint8_t>(p->body[0]);
        }
        continue;
      }
      if (raw_.closed()) {
        RecordDown(reason);
        up_ = false;
        return;
      }
    }
  }

  const int port_;
  // Read by the monitor thread alone once it runs; Send is safe beside it.
  RawClient raw_;
  std::atomic<bool> up_{false};
  std::atomic<bool> stop_{false};
  std::thread monitor_;
};

// ------------------------------------------------------------------ model

// A device's credentials as the registry holds them.
struct CredState {
  bool present = false;
  bool enabled = false;
  std::string password;
};

bool Accepts(const CredState& s, const std::string& password) {
  return s.present && s.enabled && s.password == password;
}

enum class Change { kInitial, kPassword, kDisable, kEnable, kRemove, kAdd };

const char* ChangeName(Change c) {
  switch (c) {
    case Change::kInitial:
      return "initial";
    case Change::kPassword:
      return "password change";
    case Change::kDisable:
      return "disable";
    case Change::kEnable:
      return "enable";
    case Change::kRemove:
      return "remove";
    case Change::kAdd:
      return "add";
  }
  return "?";
}

struct CredEvent {
  Change change = Change::kInitial;
  TimePoint start{};       // before the SQL
  TimePoint end{};         // after the commit returned
  int64_t generation = 0;  // registry generation read after the commit (>=)
  CredState after;
};

// What the test did to each churn device, in order (one admin thread makes
// every credential change, so events never overlap).
class Model {
 public:
  struct View {
    CredState state;
    int version = 0;
    std::vector<std::string> old_passwords;
  };

  void AddDevice(const CredEvent& initial) {
    std::lock_guard<std::mutex> lock(mu_);
    devices_.push_back({{initial}, 0});
  }

  View Get(int d) {
    std::lock_guard<std::mutex> lock(mu_);
    const Device& dev = devices_[d];
    View v;
    v.state = dev.events.back().after;
    v.version = dev.version;
    for (const CredEvent& e : dev.events) {
      if (e.after.password != v.state.password &&
          std::find(v.old_passwords.begin(), v.old_passwords.end(),
                    e.after.password) == v.old_passwords.end()) {
        v.old_passwords.push_back(e.after.password);
      }
    }
    return v;
  }

  void Append(int d, const CredEvent& e) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      devices_[d].events.push_back(e);
      ++devices_[d].version;
    }
    cv_.notify_all();
  }

  // Waits until device `d` changes past `seen`, `ms` pass or `stop` says so.
  void WaitChange(int d, int seen, int ms, const std::function<bool()>& stop) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, std::chrono::milliseconds(ms),
                 [&] { return devices_[d].version != seen || stop(); });
  }

  void WakeAll() { cv_.notify_all(); }

  std::vector<CredEvent> Events(int d) {
    std::lock_guard<std::mutex> lock(mu_);
    return devices_[d].events;
  }

 private:
  struct Device {
    std::vector<CredEvent> events;
    int version;
  };
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Device> devices_;
};

// Tails the broker log for "registry reloaded: generation N": from when on
// the test knows the plugin had applied generation N.
class RegistryWatch {
 public:
  RegistryWatch(std::string path, int64_t initial, TimePoint t0)
      : path_(std::move(path)) {
    seen_.push_back({t0, initial});
  }

  // Reads what the log gained since the last call (one thread only).
  void Poll() {
    std::ifstream in(path_, std::ios::binary);
    if (!in) return;
    in.seekg(0, std::ios::end);
    std::streamoff size = in.tellg();
    if (size < offset_) {  // rewritten: start over
      offset_ = 0;
      partial_.clear();
    }
    if (size == offset_) return;
    in.seekg(offset_);
    std::string chunk(static_cast<size_t>(size - offset_), '\0');
    in.read(&chunk[0], static_cast<std::streamsize>(chunk.size()));
    chunk.resize(static_cast<size_t>(in.gcount()));
    offset_ += static_cast<std::streamoff>(chunk.size());
    partial_ += chunk;
    TimePoint now = Clock::now();
    size_t start = 0;
    for (size_t nl; (nl = partial_.find('\n', start)) != std::string::npos;
         start = nl + 1) {
      Line(std::string_view(partial_).substr(start, nl - start), now);
    }
    partial_.erase(0, start);
  }

  int64_t Applied() {
    std::lock_guard<std::mutex> lock(mu_);
    return seen_.back().second;
  }

  // The highest generation known applied at `t`.
  int64_t AppliedAt(TimePoint t) {
    std::lock_guard<std::mutex> lock(mu_);
    int64_t g = seen_.front().second;
    for (const auto& [when, gen] : seen_) {
      if (when > t) break;
      g = gen;
    }
    return g;
  }

  int reload_lines() {
    std::lock_guard<std::mutex> lock(mu_);
    return reload_lines_;
  }
  int error_lines() {
    std::lock_guard<std::mutex> lock(mu_);
    return error_lines_;
  }

 private:
  void Line(std::string_view line, TimePoint now) {
    static constexpr std::string_view kReloaded =
        "registry reloaded: generation ";
    if (line.find("keeping generation") != std::string_view::npos) {
      std::lock_guard<std::mutex> lock(mu_);
      ++error_lines_;
    }
    size_t at = line.find(kReloaded);
    if (at == std::string_view::npos) return;
    int64_t gen = 0;
    bool digits = false;
    for (size_t i = at + kReloaded.size();
         i < line.size() && line[i] >= '0' && line[i] <= '9'; ++i) {
      gen = gen * 10 + (line[i] - '0');
      digits = true;
    }
    if (!digits) return;
    std::lock_guard<std::mutex> lock(mu_);
    ++reload_lines_;
    if (gen > seen_.back().second) seen_.push_back({now, gen});
  }

  const std::string path_;
  std::streamoff offset_ = 0;
  std::string partial_;
  std::mutex mu_;
  std::vector<std::pair<TimePoint, int64_t>> seen_;  // increasing
  int reload_lines_ = 0;
  int error_lines_ = 0;
};

// The verdict on one accepted churn login, from the model.
struct Assessment {
  // No registry state the plugin could have judged the login against
  // accepts its password.
  bool accepted_invalid = false;
  // The login can only have been judged against the state in force at its
  // CONNACK: the broker must not end it before `window_end`.
  bool is_valid = false;
  std::optional<TimePoint> window_end;
  // The change that revokes its credentials, and by when it must be gone.
  std::optional<size_t> revoked_by;
  std::optional<TimePoint> deadline;
  size_t state_index = 0;  // k: last change started before the CONNACK
};

// ------------------------------------------------------------------ the run

struct RunOptions {
  bool per_listener_settings = false;
  int seconds = 15;
  uint32_t seed = 0;
};

class ChurnRun {
 public:
  ChurnRun(TempRegistry* registry, Broker* broker, RunOptions options)
      : registry_(registry), broker_(broker), opt_(options) {}
  ~ChurnRun() { StopThreads(); }
  ChurnRun(const ChurnRun&) = delete;
  ChurnRun& operator=(const ChurnRun&) = delete;

  void Run();

 private:
  // ---- setup
  void PreparePasswords();
  bool TakePassword(std::string* password, std::string* hash);
  std::string PasswordLabel(const std::string& password) const;
  void RegisterDevices();
  void StartBrokerAndStableSessions();

  // ---- load generators (threads)
  void WatchLoop();
  void AdminLoop();
  void AclLoop();
  void BackendLoop();
  void WorkerLoop(int d);

  // ---- worker helpers
  using Live = std::vector<std::unique_ptr<SessionBase>>;
  // Logs device `d` in on client id `id`; accepted sessions join `live`
  // (replacing one with the same id). `raw`: TCP first, CONNECT after
  // kBurstPauseMs. Returns the CONNACK code, -1 without one.
  int ConnectOnce(int d, const std::string& password, const std::string& id,
                  bool raw, Live* live, std::mt19937* rng);
  // Makes room for a session on `id`: at most kMaxLivePerDevice.
  void MakeRoom(const std::string& id, Live* live);
  void Burst(int d, const Model::View& view, Live* live, std::mt19937* rng);
  std::string FreeId(int d, const Live& live, std::mt19937* rng) const;
  static void Prune(Live* live);

  // ---- end
  void StopChurn();    // admin, ACL and device threads
  void StopBackend();  // the publisher
  void StopThreads();
  int DeviceIndex(const std::string& device) const;
  Assessment Assess(const SessionRecord& r, const std::vector<CredEvent>& ev);
  // The registry states the plugin may have judged the login against: the
  // indexes lo..k of `ev` (k: the last change begun before the CONNACK; lo:
  // the last one the plugin was known to have applied at the CONNECT).
  void Candidates(const SessionRecord& r, const std::vector<CredEvent>& ev,
                  size_t* lo, size_t* k);
  void WaitForRevocationDeadlines();
  std::string DescribeSession(const SessionRecord& r) const;
  std::string DescribeEvent(const CredEvent& e) const;
  // Names a SIGHUP sent shortly before `t`, if any.
  std::string NearSighup(TimePoint t) const;
  void Evaluate();

  bool Stopping() const {
    return churn_stop_.load() || stop_.load() || broker_dead_.load();
  }
  bool BackendStopping() const { return stop_.load() || broker_dead_.load(); }
  // Paces a load generator; returns early when it is to stop.
  void Pause(int ms, bool backend = false) {
    std::unique_lock<std::mutex> lock(stop_mu_);
    stop_cv_.wait_for(lock, std::chrono::milliseconds(ms),
                      [&] { return backend ? BackendStopping() : Stopping(); });
  }
  bool WaitApplied(int64_t gen) {
    return Eventually(
               [&] { return watch_->Applied() >= gen || broker_dead_.load(); },
               kApplyTimeoutMs, 5) &&
           !broker_dead_.load();
  }
  int64_t Rel(TimePoint t) const { return MsBetween(t0_, t); }
  int64_t ReadGeneration() {
    return registry_->QueryInt("SELECT generation FROM registry_meta", -1);
  }
  static double U(std::mt19937* rng) {
    return std::uniform_real_distribution<double>(0.0, 1.0)(*rng);
  }
  static int R(std::mt19937* rng, int lo, int hi) {  // [lo, hi]
    return std::uniform_int_distribution<int>(lo, hi)(*rng);
  }

  TempRegistry* const registry_;
  Broker* const broker_;
  const RunOptions opt_;
  TimePoint t0_ = Clock::now();

  std::vector<std::pair<std::string, std::string>> pool_;  // password, hash
  std::map<std::string, size_t> pool_index_;
  size_t pool_next_ = 0;  // admin thread only (after setup)

  std::vector<std::string> churn_ids_;
  std::vector<std::string> stable_ids_;
  std::vector<std::string> stable_passwords_;
  const std::string backend_id_ = "backend-0";
  std::string backend_password_;
  int64_t initial_generation_ = 0;

  Model model_;
  std::unique_ptr<RegistryWatch> watch_;
  SessionLog sessions_;
  Findings findings_;
  struct Inbox {
    std::mutex mu;
    std::set<int64_t> received;
    int duplicates = 0;
    std::vector<std::string> bad;
  };
  std::vector<std::unique_ptr<Inbox>> inbox_;
  std::vector<std::vector<int64_t>> acked_;  // backend thread, per stable
  int64_t publish_failures_ = 0;             // backend thread
  int64_t churn_publishes_ = 0;              // backend thread

  std::atomic<bool> churn_stop_{false};  // admin, ACL, device threads
  std::atomic<bool> stop_{false};        // all load generators
  std::atomic<bool> watch_stop_{false};  // the log/process watcher
  std::atomic<bool> broker_dead_{false};
  std::mutex stop_mu_;
  std::condition_variable stop_cv_;
  std::optional<TimePoint> dead_at_;  // watch thread; read after its join

  // Counters (written by one thread each; read after the joins).
  std::map<Change, int> changes_;
  std::atomic<int> acl_changes_{0};
  int acl_probes_ = 0;
  std::vector<TimePoint> sighup_times_;  // admin thread
  std::atomic<int> bursts_{0};
  std::atomic<int> bad_deliveries_{0};

  struct Summary {
    int attempts = 0;
    int raw_attempts = 0;
    int accepted = 0;
    int refused = 0;
    int no_answer = 0;
    int valid = 0;                   // accepted and known valid
    int revoked = 0;                 // accepted, then revoked by a change
    int ended_by_broker = 0;         // ...then ended by the broker
    int ended_by_test = 0;           // ...but the test ended it first
    int gray_ended = 0;              // neither valid nor revoked yet ended
    std::vector<int64_t> latencies;  // revocation commit -> disconnect
    std::string max_latency_what;
  };
  Summary summary_;

  // Declared last: sessions go before the logs and inboxes they write to.
  std::unique_ptr<ChurnClient> backend_;
  std::vector<std::unique_ptr<ChurnClient>> stable_;
  std::mutex leftovers_mu_;
  Live leftovers_;  // sessions the workers still held when they stopped

  std::thread watch_thread_;
  std::thread admin_thread_;
  std::thread acl_thread_;
  std::thread backend_thread_;
  std::vector<std::thread> worker_threads_;
};

// ------------------------------------------------------------------ setup

void ChurnRun::PreparePasswords() {
  std::mt19937 rng(opt_.seed ^ 0x5eed);
  for (int i = 0; i < kPasswordPool; ++i) {
    std::string pw =
        "churn-pw-" + std::to_string(i) + "-" + std::to_string(rng() % 1000000);
    Result<PasswordHash> hash = HashPassword(pw, kHashIterations);
    ASSERT_TRUE(hash.ok()) << hash.status().message();
    pool_index_[pw] = pool_.size();
    pool_.push_back({pw, EncodePasswordHash(*hash)});
  }
}

bool ChurnRun::TakePassword(std::string* password, std::string* hash) {
  if (pool_next_ >= pool_.size()) return false;
  *password = pool_[pool_next_].first;
  *hash = pool_[pool_next_].second;
  ++pool_next_;
  return true;
}

std::string ChurnRun::PasswordLabel(const std::string& password) const {
  auto it = pool_index_.find(password);
  return it == pool_index_.end() ? "a wrong password"
                                 : "password #" + std::to_string(it->second);
}

void ChurnRun::RegisterDevices() {
  std::string pw;
  std::string hash;
  for (int d = 0; d < kChurnDevices; ++d) {
    churn_ids_.push_back("churn-" + std::to_string(d));
    ASSERT_TRUE(TakePassword(&pw, &hash));
    ASSERT_TRUE(
        registry_->AddDeviceWithHash(churn_ids_[d], "iot_sensor", hash));
    CredEvent initial;
    initial.start = initial.end = t0_;
    initial.after = {true, true, pw};
    model_.AddDevice(initial);
  }
  for (int s = 0; s < kStableDevices; ++s) {
    stable_ids_.push_back("stable-" + std::to_string(s));
    ASSERT_TRUE(TakePassword(&pw, &hash));
    ASSERT_TRUE(
        registry_->AddDeviceWithHash(stable_ids_[s], "iot_sensor", hash));
    stable_passwords_.push_back(pw);
  }
  ASSERT_TRUE(TakePassword(&pw, &hash));
  ASSERT_TRUE(registry_->AddDeviceWithHash(backend_id_, "backend", hash));
  backend_password_ = pw;
  ASSERT_TRUE(registry_->Grant(backend_id_.c_str(), "devices/+/notifications",
                               "write"));
  initial_generation_ = ReadGeneration();
  ASSERT_GT(initial_generation_, 0);
}

void ChurnRun::StartBrokerAndStableSessions() {
  BrokerConfig config;
  config.db_path = registry_->db_path();
  config.plugin_options = {
      "reload_interval_ms " + std::to_string(kReloadIntervalMs),
      // Old and wrong passwords are part of the load: a lockout would then
      // refuse the right ones, which is not what this test is about.
      "auth_max_failures 0"};
  config.per_listener_settings = opt_.per_listener_settings;
  ASSERT_TRUE(broker_->Start(config));
  watch_ = std::make_unique<RegistryWatch>(broker_->log_path(),
                                           initial_generation_, t0_);
  acked_.resize(kStableDevices);
  for (int s = 0; s < kStableDevices; ++s) {
    inbox_.push_back(std::make_unique<Inbox>());
    Inbox* box = inbox_.back().get();
    const std::string dev = stable_ids_[s];
    Sink sink = [box, dev](const std::string& topic,
                           const std::string& payload) {
      int64_t seq = -1;
      std::string problem = CheckDelivered(dev, topic, payload, &seq);
      std::lock_guard<std::mutex> lock(box->mu);
      if (!problem.empty()) {
        if (box->bad.size() < 10) {
          box->bad.push_back(problem + ": " + payload.substr(0, 200));
        }
        return;
      }
      if (!box->received.insert(seq).second) ++box->duplicates;
    };
    int protocol = s % 2 == 0 ? kMqtt5 : kMqtt311;
    auto c = std::make_unique<ChurnClient>(
        broker_->port(), protocol, dev + "-main", dev, true, &sessions_, sink);
    ASSERT_EQ(c->Connect(dev, stable_passwords_[s]), 0) << Tail(broker_->Log());
    ASSERT_EQ(c->Subscribe(Token(dev), 1, kSubscribeTimeoutMs), 1);
    stable_.push_back(std::move(c));
  }
  backend_ = std::make_unique<ChurnClient>(broker_->port(), kMqtt5,
                                           backend_id_ + "-main", backend_id_,
                                           true, &sessions_, nullptr);
  ASSERT_EQ(backend_->Connect(backend_id_, backend_password_), 0)
      << Tail(broker_->Log());
}

// ------------------------------------------------------------ generators

void ChurnRun::WatchLoop() {
  const pid_t pid = broker_->pid();
  for (int i = 0; i < kMaxWatchPolls && !watch_stop_.load(); ++i) {
    watch_->Poll();
    if (!ProcessAlive(pid)) {
      dead_at_ = Clock::now();
      watch_->Poll();
      {
        std::lock_guard<std::mutex> lock(stop_mu_);
        broker_dead_ = true;
      }
      stop_cv_.notify_all();
      model_.WakeAll();
      return;
    }
    SleepMs(5);
  }
}

void ChurnRun::AdminLoop() {
  std::mt19937 rng(opt_.seed + 1);
  std::vector<bool> acl_granted(kChurnDevices, false);
  TimePoint next_hup =
      Clock::now() + std::chrono::milliseconds(R(&rng, 500, 1500));
  for (int op = 0; op < kMaxAdminOps && !Stopping(); ++op) {
    Pause(R(&rng, 30, 150));
    if (Stopping()) break;
    if (Clock::now() >= next_hup) {
      broker_->Reload();  // SIGHUP
      sighup_times_.push_back(Clock::now());
      next_hup = Clock::now() + std::chrono::milliseconds(R(&rng, 800, 2000));
    }
    const int d = R(&rng, 0, kChurnDevices - 1);
    const std::string& dev = churn_ids_[d];
    const std::string quoted = "'" + dev + "'";
    const CredState cur = model_.Get(d).state;

    if (cur.present && U(&rng) < 0.25) {
      // Rule churn on a side topic of the device (never its token).
      static const char* const kAccess[] = {"read", "write", "readwrite",
                                            "deny"};
      std::string filter = "'devices/" + dev + "/extra/#'";
      std::string sql =
          acl_granted[d]
              ? "DELETE FROM acl_rules WHERE device_id = " + quoted +
                    " AND topic_filter = " + filter + ";"
              : "INSERT OR IGNORE INTO acl_rules (device_id, topic_filter, "
                "access) VALUES (" +
                    quoted + ", " + filter + ", '" + kAccess[R(&rng, 0, 3)] +
                    "');";
      testing::AssertionResult ok = registry_->Exec(sql);
      if (!ok) {
        findings_.Add(std::string("admin SQL failed: ") + ok.message());
        continue;
      }
      acl_granted[d] = !acl_granted[d];
      ++acl_changes_;
      continue;
    }

    CredEvent e;
    e.after = cur;
    std::string sql;
    std::string hash;
    const double r = U(&rng);
    if (!cur.present) {
      if (!TakePassword(&e.after.password, &hash)) continue;
      e.change = Change::kAdd;
      e.after.present = e.after.enabled = true;
      sql =
          "INSERT INTO devices (device_id, device_type, password_hash) "
          "VALUES (" +
          quoted + ", 'iot_sensor', '" + hash + "');";
    } else if (!cur.enabled && r < 0.7) {
      e.change = Change::kEnable;
      e.after.enabled = true;
      sql = "UPDATE devices SET enabled = 1 WHERE device_id = " + quoted + ";";
    } else if (r < (cur.enabled ? 0.6 : 0.85)) {
      if (!TakePassword(&e.after.password, &hash)) continue;
      e.change = Change::kPassword;
      sql = "UPDATE devices SET password_hash = '" + hash +
            "' WHERE device_id = " + quoted + ";";
    } else if (cur.enabled && r < 0.82) {
      e.change = Change::kDisable;
      e.after.enabled = false;
      sql = "UPDATE devices SET enabled = 0 WHERE device_id = " + quoted + ";";
    } else {
      e.change = Change::kRemove;
      e.after.present = e.after.enabled = false;
      // Rules and stats explicitly: this connection has no foreign keys on.
      sql = "BEGIN; DELETE FROM acl_rules WHERE device_id = " + quoted +
            "; DELETE FROM devices WHERE device_id = " + quoted +
            "; DELETE FROM device_stats WHERE device_id = " + quoted +
            "; COMMIT;";
      acl_granted[d] = false;
    }
    e.start = Clock::now();
    testing::AssertionResult ok = registry_->Exec(sql);
    e.end = Clock::now();
    if (!ok) {
      findings_.Add(std::string("admin SQL failed: ") + ok.message());
      continue;
    }
    e.generation = ReadGeneration();
    if (e.generation < 0) {
      findings_.Add("cannot read the registry generation after a " +
                    std::string(ChangeName(e.change)) + " of " + dev);
      e.generation = INT64_MAX;  // never known applied: nothing is "valid"
    }
    model_.Append(d, e);
    ++changes_[e.change];
    // Next change only once the plugin has this one: a revocation reverted
    // before any reload could see it would revoke nothing.
    if (!WaitApplied(e.generation) && !broker_dead_.load()) {
      findings_.Add("the plugin did not log applying generation " +
                    std::to_string(e.generation) + " (" + DescribeEvent(e) +
                    " of " + dev + ") within " +
                    std::to_string(kApplyTimeoutMs) + " ms");
    }
  }
}

void ChurnRun::AclLoop() {
  std::mt19937 rng(opt_.seed + 2);
  for (int round = 0; round < kMaxAclRounds && !Stopping(); ++round) {
    Pause(R(&rng, 50, 200));
    if (Stopping()) break;
    const int s = R(&rng, 0, kStableDevices - 1);
    const std::string& dev = stable_ids_[s];
    const std::string filter = "devices/" + dev + "/extra/#";
    for (bool grant : {true, false}) {
      std::string sql =
          grant ? "INSERT OR IGNORE INTO acl_rules (device_id, topic_filter, "
                  "access) VALUES ('" +
                      dev + "', '" + filter + "', 'read');"
                : "DELETE FROM acl_rules WHERE device_id = '" + dev +
                      "' AND topic_filter = '" + filter + "';";
      testing::AssertionResult ok = registry_->Exec(sql);
      if (!ok) {
        findings_.Add(std::string("ACL SQL failed: ") + ok.message());
        break;
      }
      ++acl_changes_;
      int64_t gen = ReadGeneration();
      if (!WaitApplied(gen)) {
        if (!broker_dead_.load()) {
          findings_.Add("the plugin did not log applying generation " +
                        std::to_string(gen) + " (ACL change of " + dev +
                        ") within " + std::to_string(kApplyTimeoutMs) + " ms");
        }
        break;
      }
      // A stable session that went down is reported on its own.
      if (!stable_[s]->IsUp()) break;
      int got = stable_[s]->Subscribe(filter, 1, kSubscribeTimeoutMs);
      ++acl_probes_;
      bool expected = grant ? got == 1 : got >= 0x80;
      if (!expected && stable_[s]->IsUp()) {
        findings_.Add("ACL probe: " + dev + " subscribing to " + filter +
                      " after the rule was " + (grant ? "granted" : "revoked") +
                      " and generation " + std::to_string(gen) +
                      " applied got SUBACK " + std::to_string(got) +
                      (grant ? " (want 1)" : " (want a refusal)"));
      }
    }
  }
}

void ChurnRun::BackendLoop() {
  std::mt19937 rng(opt_.seed + 3);
  std::vector<int64_t> next_seq(kStableDevices, 0);
  int64_t churn_seq = 0;
  auto fail = [&](const std::string& what) {
    if (++publish_failures_ <= 5) findings_.Add(what);
  };
  for (int64_t n = 0; n < kMaxPublishes && !BackendStopping(); ++n) {
    const int s = static_cast<int>(n % kStableDevices);
    const std::string& dev = stable_ids_[s];
    const int64_t seq = next_seq[s]++;
    TimePoint at = Clock::now();
    int rc = backend_->Publish(Token(dev), NotificationPayload(dev, seq), 1,
                               kPublishTimeoutMs);
    if (rc == 0) {
      acked_[s].push_back(seq);
    } else {
      // 0x10 "no matching subscribers" means the stable subscriber is gone.
      fail(
          "backend publish of #" + std::to_string(seq) + " to " + dev +
          " at t=" + std::to_string(Rel(at)) + " ms got " +
          (rc < 0 ? std::string("no PUBACK") : "reason " + std::to_string(rc)));
    }
    if (n % 4 == 3) {
      const std::string& to = churn_ids_[R(&rng, 0, kChurnDevices - 1)];
      int crc =
          backend_->Publish(Token(to), NotificationPayload(to, churn_seq++), 1,
                            kPublishTimeoutMs);
      ++churn_publishes_;
      if (crc < 0 || crc >= 0x80) {
        fail("backend publish to " + to + " got " +
             (crc < 0 ? std::string("no PUBACK")
                      : "reason " + std::to_string(crc)));
      }
    }
    Pause(kBackendPauseMs, true);
  }
}

std::string ChurnRun::FreeId(int d, const Live& live, std::mt19937* rng) const {
  std::vector<std::string> free;
  for (int i = 0; i < kIdsPerDevice; ++i) {
    std::string id = churn_ids_[d] + "-" + static_cast<char>('a' + i);
    bool used = std::any_of(live.begin(), live.end(), [&](const auto& c) {
      return c->client_id() == id;
    });
    if (!used) free.push_back(id);
  }
  if (free.empty()) return churn_ids_[d] + "-a";
  return free[R(rng, 0, static_cast<int>(free.size()) - 1)];
}

void ChurnRun::Prune(Live* live) {
  live->erase(std::remove_if(live->begin(), live->end(),
                             [](const std::unique_ptr<SessionBase>& c) {
                               return !c->IsUp();
                             }),
              live->end());
}

void ChurnRun::MakeRoom(const std::string& id, Live* live) {
  bool reuses = std::any_of(live->begin(), live->end(), [&](const auto& c) {
    return c->client_id() == id;
  });
  if (!reuses && live->size() >= kMaxLivePerDevice) {
    live->front()->Close("closed by its device to make room");
    live->erase(live->begin());
  }
}

int ChurnRun::ConnectOnce(int d, const std::string& password,
                          const std::string& id, bool raw, Live* live,
                          std::mt19937* rng) {
  const std::string& dev = churn_ids_[d];
  MakeRoom(id, live);
  const int protocol = U(rng) < 0.5 ? kMqtt5 : kMqtt311;
  std::unique_ptr<SessionBase> session;
  if (raw) {
    auto c = std::make_unique<RawSession>(broker_->port(), protocol, id, dev,
                                          &sessions_);
    if (!c->Open()) return -1;
    Pause(kBurstPauseMs);
    int rc = c->Connect(dev, password);
    if (rc != 0) return rc;
    session = std::move(c);
  } else {
    Sink sink = [this, dev](const std::string& topic,
                            const std::string& payload) {
      int64_t seq = 0;
      std::string problem = CheckDelivered(dev, topic, payload, &seq);
      if (!problem.empty() && bad_deliveries_++ < 5) {
        findings_.Add("a session of " + dev + " received a bad delivery (" +
                      problem + "): " + payload.substr(0, 200));
      }
    };
    auto c = std::make_unique<ChurnClient>(broker_->port(), protocol, id, dev,
                                           false, &sessions_, std::move(sink));
    int rc = c->Connect(dev, password);
    if (rc != 0) return rc;
    c->Subscribe(Token(dev), 1, kSubscribeTimeoutMs);  // any answer will do
    session = std::move(c);
  }
  // The broker took over a session with the same client id: that
  // disconnect is the test's doing.
  TimePoint attempt = session->attempt();
  for (auto it = live->begin(); it != live->end();) {
    if ((*it)->client_id() == id) {
      (*it)->MarkReplaced(attempt);
      it = live->erase(it);
    } else {
      ++it;
    }
  }
  live->push_back(std::move(session));
  return 0;
}

void ChurnRun::Burst(int d, const Model::View& view, Live* live,
                     std::mt19937* rng) {
  ++bursts_;
  // The device was told its new credentials and logs in again at once,
  // often on the client id of a session the change just revoked (which the
  // broker then takes over): the plugin must end the old session, never the
  // new one. Half the time over raw connections whose CONNECT trails the
  // TCP accept (see RawSession).
  std::string id =
      !live->empty() && U(rng) < 0.6
          ? (*live)[R(rng, 0, static_cast<int>(live->size()) - 1)]->client_id()
          : FreeId(d, *live, rng);
  const bool raw = U(rng) < 0.5;
  TimePoint start = Clock::now();
  for (int a = 0; a < kMaxBurstAttempts && !Stopping(); ++a) {
    if (model_.Get(d).version != view.version) return;  // changed again
    if (ConnectOnce(d, view.state.password, id, raw, live, rng) == 0) return;
    if (MsBetween(start, Clock::now()) > kBurstLimitMs) return;
    if (!raw) Pause(kBurstPauseMs);  // raw: the pause is before the CONNECT
  }
}

void ChurnRun::WorkerLoop(int d) {
  std::mt19937 rng(opt_.seed * 7919u + static_cast<uint32_t>(d) + 11u);
  Live live;
  int seen = model_.Get(d).version;
  for (int step = 0; step < kMaxWorkerSteps && !Stopping(); ++step) {
    Prune(&live);
    Model::View view = model_.Get(d);
    if (view.version != seen) {
      seen = view.version;
      if (view.state.present && view.state.enabled && U(&rng) < 0.8) {
        Burst(d, view, &live, &rng);
        continue;
      }
    }
    const double r = U(&rng);
    if (r < 0.3) {
      // Mostly the current password, sometimes an old or a wrong one.
      std::string password = view.state.password;
      const double p = U(&rng);
      if (p >= 0.9) {
        password = "wrong-" + std::to_string(rng());
      } else if (p >= 0.7 && !view.old_passwords.empty()) {
        password = view.old_passwords[R(
            &rng, 0, static_cast<int>(view.old_passwords.size()) - 1)];
      }
      std::string id =
          !live.empty() && U(&rng) < 0.25
              ? live[R(&rng, 0, static_cast<int>(live.size()) - 1)]->client_id()
              : FreeId(d, live, &rng);
      ConnectOnce(d, password, id, U(&rng) < 0.2, &live, &rng);
    } else if (r < 0.36 && !live.empty()) {
      size_t i =
          static_cast<size_t>(R(&rng, 0, static_cast<int>(live.size()) - 1));
      live[i]->Close("closed by its device");
      live.erase(live.begin() + static_cast<std::ptrdiff_t>(i));
    } else {
      model_.WaitChange(d, seen, R(&rng, 60, 200),
                        [this] { return Stopping(); });
    }
  }
  // Kept open: revocations still under way are checked at the end.
  std::lock_guard<std::mutex> lock(leftovers_mu_);
  for (auto& c : live) leftovers_.push_back(std::move(c));
}

// -------------------------------------------------------------------- end

void ChurnRun::StopChurn() {
  {
    std::lock_guard<std::mutex> lock(stop_mu_);
    churn_stop_ = true;
  }
  stop_cv_.notify_all();
  model_.WakeAll();
  for (std::thread* t : {&admin_thread_, &acl_thread_}) {
    if (t->joinable()) t->join();
  }
  for (std::thread& t : worker_threads_) {
    if (t.joinable()) t.join();
  }
}

void ChurnRun::StopBackend() {
  {
    std::lock_guard<std::mutex> lock(stop_mu_);
    stop_ = true;
  }
  stop_cv_.notify_all();
  if (backend_thread_.joinable()) backend_thread_.join();
}

void ChurnRun::StopThreads() {
  StopChurn();
  StopBackend();
  watch_stop_ = true;
  if (watch_thread_.joinable()) watch_thread_.join();
}

int ChurnRun::DeviceIndex(const std::string& device) const {
  auto it = std::find(churn_ids_.begin(), churn_ids_.end(), device);
  return it == churn_ids_.end() ? -1
                                : static_cast<int>(it - churn_ids_.begin());
}

void ChurnRun::Candidates(const SessionRecord& r,
                          const std::vector<CredEvent>& ev, size_t* lo,
                          size_t* k) {
  // The login was judged before its CONNACK arrived (or, without one, at
  // the latest when the client gave up waiting).
  TimePoint judged_by =
      r.connack_at ? *r.connack_at
                   : r.attempt + std::chrono::milliseconds(kConnectTimeoutMs);
  *k = 0;
  for (size_t i = 0; i < ev.size(); ++i) {
    if (ev[i].start < judged_by) *k = i;
  }
  // Changes whose generation the plugin was known to have applied when the
  // CONNECT went out are certainly in the state it judged against.
  int64_t applied = watch_->AppliedAt(r.attempt);
  *lo = 0;
  for (size_t i = 0; i <= *k; ++i) {
    if (ev[i].generation <= applied) *lo = i;
  }
}

Assessment ChurnRun::Assess(const SessionRecord& r,
                            const std::vector<CredEvent>& ev) {
  Assessment a;
  size_t lo = 0;
  size_t k = 0;
  Candidates(r, ev, &lo, &k);
  a.state_index = k;
  std::vector<size_t> accepting;
  for (size_t j = lo; j <= k; ++j) {
    if (Accepts(ev[j].after, r.password)) accepting.push_back(j);
  }
  if (accepting.empty()) {
    a.accepted_invalid = true;
    return a;
  }
  // Only the state in force at the CONNACK accepts: the login was judged
  // against it (a fresh password proves the plugin had its change, so does
  // the logged generation).
  a.is_valid = accepting.size() == 1 && accepting[0] == k;
  size_t last = accepting.back();
  for (size_t m = last + 1; m < ev.size(); ++m) {
    if (!Accepts(ev[m].after, r.password)) {
      a.revoked_by = m;
      a.deadline = ev[m].end + std::chrono::milliseconds(kRevocationLimitMs);
      if (a.is_valid) a.window_end = ev[m].start;
      break;
    }
  }
  return a;
}

void ChurnRun::WaitForRevocationDeadlines() {
  std::vector<std::vector<CredEvent>> events;
  for (int d = 0; d < kChurnDevices; ++d) events.push_back(model_.Events(d));
  std::vector<std::shared_ptr<SessionRecord>> records;
  {
    std::lock_guard<std::mutex> lock(sessions_.mu);
    records = sessions_.all;
  }
  std::vector<std::shared_ptr<SessionRecord>> pending;
  TimePoint last = Clock::now();
  for (const auto& rec : records) {
    SessionRecord r;
    {
      std::lock_guard<std::mutex> lock(sessions_.mu);
      r = *rec;
    }
    int d = DeviceIndex(r.device);
    if (!r.attempted || r.stable || d < 0 || r.connack != 0 || r.down_at ||
        r.test_closed_at) {
      continue;
    }
    Assessment a = Assess(r, events[d]);
    if (!a.deadline) continue;
    pending.push_back(rec);
    last = std::max(last, *a.deadline);
  }
  int64_t budget = MsBetween(Clock::now(), last) + 200;
  Eventually(
      [&] {
        std::lock_guard<std::mutex> lock(sessions_.mu);
        return std::all_of(pending.begin(), pending.end(), [](const auto& p) {
          return p->down_at.has_value() || p->test_closed_at.has_value();
        });
      },
      static_cast<int>(std::max<int64_t>(budget, 0)), 10);
}

std::string ChurnRun::DescribeSession(const SessionRecord& r) const {
  std::ostringstream o;
  o << "session '" << r.client_id << "' of " << r.device << " (MQTT "
    << (r.protocol == kMqtt5 ? "v5" : "v3.1.1")
    << "), CONNECT at t=" << Rel(r.attempt) << " ms with "
    << PasswordLabel(r.password);
  if (r.connack_at) {
    o << ", CONNACK " << r.connack << " at t=" << Rel(*r.connack_at) << " ms";
  } else {
    o << ", no CONNACK";
  }
  if (r.down_at) {
    o << ", disconnected at t=" << Rel(*r.down_at) << " ms (code " << r.down_rc
      << ")";
  }
  if (r.test_closed_at) {
    o << ", " << r.test_close_why << " at t=" << Rel(*r.test_closed_at)
      << " ms";
  }
  return o.str();
}

std::string ChurnRun::NearSighup(TimePoint t) const {
  for (auto it = sighup_times_.rbegin(); it != sighup_times_.rend(); ++it) {
    if (*it > t) continue;
    int64_t before = MsBetween(*it, t);
    if (before > 500) break;
    return " [SIGHUP sent at t=" + std::to_string(Rel(*it)) + " ms, " +
           std::to_string(before) + " ms before]";
  }
  return "";
}

std::string ChurnRun::DescribeEvent(const CredEvent& e) const {
  std::ostringstream o;
  o << ChangeName(e.change);
  if (e.change == Change::kPassword || e.change == Change::kAdd) {
    o << " to " << PasswordLabel(e.after.password);
  }
  if (e.change != Change::kInitial) {
    o << " (SQL t=" << Rel(e.start) << ".." << Rel(e.end) << " ms, generation "
      << e.generation << ")";
  }
  return o.str();
}

void ChurnRun::Evaluate() {
  std::vector<std::vector<CredEvent>> events;
  for (int d = 0; d < kChurnDevices; ++d) events.push_back(model_.Events(d));
  std::vector<SessionRecord> records;
  {
    std::lock_guard<std::mutex> lock(sessions_.mu);
    for (const auto& rec : sessions_.all) records.push_back(*rec);
  }
  Summary& sum = summary_;
  // Sockets close as the process dies, a little before the watcher sees
  // it gone: from then on every disconnect is the crash's doing.
  std::optional<TimePoint> crash;
  if (dead_at_) crash = *dead_at_ - std::chrono::milliseconds(kCrashSlackMs);
  auto after_death = [&](TimePoint t) { return crash && t >= *crash; };
  for (const SessionRecord& r : records) {
    if (!r.attempted) continue;  // a raw session whose TCP connect failed
    // Who ended it: the test (DISCONNECT, or a login taking its client id
    // over), or the broker.
    bool by_test =
        r.down_at && r.test_closed_at && *r.test_closed_at <= *r.down_at;
    if (r.stable) {
      if (r.connack == 0 && r.down_at && !by_test && !after_death(*r.down_at)) {
        findings_.Add(
            "a session whose credentials never changed was "
            "disconnected: " +
            DescribeSession(r) + NearSighup(*r.down_at));
      }
      continue;
    }
    int d = DeviceIndex(r.device);
    if (d < 0) continue;
    const std::vector<CredEvent>& ev = events[d];
    ++sum.attempts;
    sum.raw_attempts += r.raw;
    if (after_death(r.attempt)) continue;
    if (r.connack != 0) {
      ++(r.connack < 0 ? sum.no_answer : sum.refused);
      size_t lo = 0;
      size_t k = 0;
      Candidates(r, ev, &lo, &k);
      bool all_accept = true;
      for (size_t j = lo; j <= k; ++j) {
        all_accept = all_accept && Accepts(ev[j].after, r.password);
      }
      if (all_accept && !(r.connack < 0 && crash)) {
        findings_.Add("a login with valid credentials was " +
                      std::string(r.connack < 0 ? "not answered" : "refused") +
                      " although the plugin had applied the device's last "
                      "change (" +
                      DescribeEvent(ev[k]) + "): " + DescribeSession(r));
      }
      continue;
    }
    ++sum.accepted;
    Assessment a = Assess(r, ev);
    if (a.accepted_invalid) {
      findings_.Add(
          "a login was accepted that no registry state the plugin "
          "could have had accepts (last change before it: " +
          DescribeEvent(ev[a.state_index]) + "): " + DescribeSession(r));
      continue;
    }
    bool by_broker = r.down_at && !by_test && !after_death(*r.down_at);
    if (a.is_valid) {
      ++sum.valid;
      if (by_broker && (!a.window_end || *r.down_at < *a.window_end)) {
        findings_.Add(
            "a valid session was disconnected by the broker before its "
            "device changed again (the device's last change: " +
            DescribeEvent(ev[a.state_index]) + ", " +
            std::to_string(MsBetween(ev[a.state_index].end, *r.down_at)) +
            " ms before the disconnect" +
            (a.revoked_by ? "; next change " + DescribeEvent(ev[*a.revoked_by])
                          : std::string("; no later change")) +
            "): " + DescribeSession(r) + NearSighup(*r.down_at));
      }
    }
    if (!a.deadline) {
      if (!a.is_valid && by_broker) ++sum.gray_ended;
      continue;
    }
    const CredEvent& e = ev[*a.revoked_by];
    // Ended before the revoking change began: nothing to check.
    std::optional<TimePoint> ended = r.down_at;
    if (r.test_closed_at && (!ended || *r.test_closed_at < *ended)) {
      ended = r.test_closed_at;
    }
    if (ended && *ended < e.start) {
      if (by_broker && !a.is_valid) ++sum.gray_ended;
      continue;
    }
    ++sum.revoked;
    bool gone = (r.down_at && *r.down_at <= *a.deadline) ||
                (r.test_closed_at && *r.test_closed_at <= *a.deadline);
    if (!gone && !(crash && *crash <= *a.deadline)) {
      findings_.Add("a session was not disconnected within " +
                    std::to_string(kRevocationLimitMs) + " ms of the " +
                    DescribeEvent(e) +
                    " that revoked its credentials: " + DescribeSession(r) +
                    (r.down_at
                         ? " (" + std::to_string(MsBetween(e.end, *r.down_at)) +
                               " ms after the commit)"
                         : std::string(" (still connected at the end)")));
    }
    if (by_broker && *r.down_at >= e.start) {
      ++sum.ended_by_broker;
      int64_t latency = MsBetween(e.end, *r.down_at);
      if (sum.latencies.empty() ||
          latency >
              *std::max_element(sum.latencies.begin(), sum.latencies.end())) {
        sum.max_latency_what = DescribeEvent(e) + " -> " + DescribeSession(r);
      }
      sum.latencies.push_back(latency);
    } else if (by_broker) {
      ++sum.gray_ended;
    } else if (r.test_closed_at) {
      ++sum.ended_by_test;
    }
  }
}

void ChurnRun::Run() {
  std::printf("[churn] per_listener_settings %s, %d s, seed %u\n",
              opt_.per_listener_settings ? "true" : "false", opt_.seconds,
              opt_.seed);
  PreparePasswords();
  if (testing::Test::HasFatalFailure()) return;
  RegisterDevices();
  if (testing::Test::HasFatalFailure()) return;
  StartBrokerAndStableSessions();
  if (testing::Test::HasFatalFailure()) return;
  const pid_t pid = broker_->pid();

  watch_thread_ = std::thread([this] { WatchLoop(); });
  const TimePoint churn_start = Clock::now();
  const TimePoint churn_end = churn_start + std::chrono::seconds(opt_.seconds);
  backend_thread_ = std::thread([this] { BackendLoop(); });
  admin_thread_ = std::thread([this] { AdminLoop(); });
  acl_thread_ = std::thread([this] { AclLoop(); });
  for (int d = 0; d < kChurnDevices; ++d) {
    worker_threads_.emplace_back([this, d] { WorkerLoop(d); });
  }

  // Meanwhile, cheaply: the broker and the long-lived sessions stay up.
  std::vector<ChurnClient*> keepers;
  for (auto& c : stable_) keepers.push_back(c.get());
  keepers.push_back(backend_.get());
  std::vector<bool> noticed(keepers.size(), false);
  for (int tick = 0; tick < opt_.seconds * 20 + 100 &&
                     Clock::now() < churn_end && !broker_dead_.load();
       ++tick) {
    Pause(50);
    for (size_t i = 0; i < keepers.size(); ++i) {
      if (!noticed[i] && !keepers[i]->IsUp()) {
        noticed[i] = true;
        std::printf("[churn] %s went down at t=%lld ms\n",
                    keepers[i]->client_id().c_str(),
                    static_cast<long long>(Rel(Clock::now())));
      }
    }
  }
  const TimePoint load_stopped = Clock::now();
  StopChurn();

  // Revocations committed last must still be seen through. The backend
  // keeps publishing meanwhile: with per_listener_settings true the broker
  // has no TICK, and an idle broker applies nothing (docs/operating.md, "Reload
  // and kicks").
  if (!broker_dead_.load()) WaitForRevocationDeadlines();
  StopBackend();

  // Every notification the backend got a PUBACK for reaches its subscriber.
  auto missing = [&](int s) {
    std::lock_guard<std::mutex> lock(inbox_[s]->mu);
    int64_t n = 0;
    for (int64_t seq : acked_[s]) n += inbox_[s]->received.count(seq) == 0;
    return n;
  };
  bool delivered = Eventually(
      [&] {
        for (int s = 0; s < kStableDevices; ++s) {
          if (missing(s) > 0) return false;
        }
        return true;
      },
      broker_dead_.load() ? 0 : 10000, 20);

  // A fresh login of a stable device still works.
  int fresh_connack = -2;
  int fresh_suback = -2;
  if (!broker_dead_.load()) {
    ChurnClient fresh(broker_->port(), kMqtt5, stable_ids_[0] + "-fresh",
                      stable_ids_[0], true, &sessions_, nullptr);
    fresh_connack = fresh.Connect(stable_ids_[0], stable_passwords_[0]);
    if (fresh_connack == 0) {
      fresh_suback =
          fresh.Subscribe(Token(stable_ids_[0]), 1, kSubscribeTimeoutMs);
    }
  }
  std::vector<std::string> keepers_down;
  for (ChurnClient* c : keepers) {
    if (!c->IsUp()) keepers_down.push_back(c->client_id());
  }
  const bool alive =
      ProcessAlive(pid) && broker_->running() && !broker_dead_.load();

  // From here on every disconnect is the test's own.
  {
    std::lock_guard<std::mutex> lock(leftovers_mu_);
    for (auto& c : leftovers_) c->Close("closed at the end of the run");
  }
  for (auto& c : stable_) c->Close("closed at the end of the run");
  backend_->Close("closed at the end of the run");
  watch_stop_ = true;
  if (watch_thread_.joinable()) watch_thread_.join();
  const std::string log = broker_->Log();
  const int status = broker_->Stop();

  Evaluate();

  // ---- report
  const Summary& sum = summary_;
  int64_t acked_total = 0;
  int64_t received_total = 0;
  int duplicates = 0;
  for (int s = 0; s < kStableDevices; ++s) {
    std::lock_guard<std::mutex> lock(inbox_[s]->mu);
    acked_total += static_cast<int64_t>(acked_[s].size());
    received_total += static_cast<int64_t>(inbox_[s]->received.size());
    duplicates += inbox_[s]->duplicates;
    for (const std::string& bad : inbox_[s]->bad) {
      findings_.Add(stable_ids_[s] + " received a bad notification: " + bad);
    }
  }
  std::vector<int64_t> lat = sum.latencies;
  std::sort(lat.begin(), lat.end());
  std::ostringstream changes;
  for (const auto& [change, n] : changes_) {
    changes << " " << ChangeName(change) << "=" << n;
  }
  std::printf(
      "[churn] %.1f s of churn: credential changes:%s; ACL changes %d "
      "(%d probes); SIGHUPs %d; reload log lines %d (registry errors %d)\n",
      static_cast<double>(MsBetween(churn_start, load_stopped)) / 1000.0,
      changes.str().c_str(), acl_changes_.load(), acl_probes_,
      static_cast<int>(sighup_times_.size()), watch_->reload_lines(),
      watch_->error_lines());
  std::printf(
      "[churn] churn logins %d (%d raw): accepted %d, refused %d, unanswered "
      "%d; reconnect bursts %d; valid sessions %d; revoked sessions %d (ended "
      "by the broker %d, by the test first %d); other broker-ended %d\n",
      sum.attempts, sum.raw_attempts, sum.accepted, sum.refused, sum.no_answer,
      bursts_.load(), sum.valid, sum.revoked, sum.ended_by_broker,
      sum.ended_by_test, sum.gray_ended);
  if (!lat.empty()) {
    std::printf(
        "[churn] revocation commit -> disconnect: n=%zu median %lld ms, "
        "max %lld ms (limit %lld ms)\n[churn]   max: %s\n",
        lat.size(), static_cast<long long>(lat[lat.size() / 2]),
        static_cast<long long>(lat.back()),
        static_cast<long long>(kRevocationLimitMs),
        sum.max_latency_what.c_str());
  }
  std::printf(
      "[churn] stable subscribers: %lld notifications acknowledged to the "
      "backend, %lld received, %d duplicates; backend publishes to churn "
      "devices %lld; publish failures %lld\n",
      static_cast<long long>(acked_total),
      static_cast<long long>(received_total), duplicates,
      static_cast<long long>(churn_publishes_),
      static_cast<long long>(publish_failures_));
  if (!lat.empty()) {
    testing::Test::RecordProperty("max_revocation_latency_ms",
                                  static_cast<int>(lat.back()));
  }

  // ---- verdict
  EXPECT_TRUE(alive) << "mosquitto died during the run ("
                     << DescribeStatus(status)
                     << ") at t=" << (dead_at_ ? Rel(*dead_at_) : -1)
                     << " ms; log tail:\n"
                     << Tail(log, 40);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
      << "mosquitto ended with " << DescribeStatus(status) << "; log tail:\n"
      << Tail(log, 40);
  for (const char* crash_sign :
       {"Segmentation fault", "AddressSanitizer",
        "runtime error:", "terminate called", "Assertion `"}) {
    std::vector<std::string> lines = LinesContaining(log, crash_sign);
    EXPECT_TRUE(lines.empty())
        << "the broker's log or output shows a crash: " << lines.front();
  }
  if (alive) {
    EXPECT_EQ(fresh_connack, 0)
        << "a fresh login of " << stable_ids_[0] << " failed after the churn";
    EXPECT_EQ(fresh_suback, 1);
    EXPECT_TRUE(keepers_down.empty())
        << "long-lived sessions down at the end: " << keepers_down.size();
    std::ostringstream lost;
    for (int s = 0; s < kStableDevices; ++s) {
      lost << " " << stable_ids_[s] << ": " << missing(s) << " of "
           << acked_[s].size();
    }
    EXPECT_TRUE(delivered) << "acknowledged notifications never delivered:"
                           << lost.str();
    // The run did exercise what it is about.
    EXPECT_GT(sum.accepted, 0);
    EXPECT_GT(acked_total, 0);
    int changes_total = 0;
    for (const auto& entry : changes_) changes_total += entry.second;
    EXPECT_GT(changes_total, 0);
  }
  std::vector<std::string> found = findings_.All();
  std::ostringstream listing;
  for (size_t i = 0; i < found.size() && i < kMaxFindingsShown; ++i) {
    listing << "\n  - " << found[i];
  }
  if (found.size() > kMaxFindingsShown) {
    listing << "\n  ... and " << found.size() - kMaxFindingsShown << " more";
  }
  EXPECT_TRUE(found.empty()) << found.size() << " finding(s); times are ms "
                             << "since the test started:" << listing.str();
}

class ChurnTest : public BrokerTest {
 protected:
  void RunChurn(bool per_listener_settings) {
    ASSERT_TRUE(registry_.ok());
    RunOptions options;
    options.per_listener_settings = per_listener_settings;
    options.seconds = EnvInt("HOMEPOT_CHURN_SECONDS", 15, 1, 3600);
    options.seed = static_cast<uint32_t>(
        EnvInt("HOMEPOT_CHURN_SEED",
               static_cast<int>(std::random_device{}() >> 1), 0, INT32_MAX));
    ChurnRun run(&registry_, &broker_, options);
    run.Run();
  }
};

TEST_F(ChurnTest, PerListenerSettingsFalse) { RunChurn(false); }

TEST_F(ChurnTest, PerListenerSettingsTrue) { RunChurn(true); }

}  // namespace
}  // namespace integration
}  // namespace homepot
