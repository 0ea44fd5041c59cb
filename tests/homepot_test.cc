#include "homepot.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "credentials.h"
#include "registry.h"
#include "registry_source.h"
#include "stats.h"
#include "testing.h"

namespace homepot {
namespace {

// Mosquitto's MOSQ_ACL_* values.
constexpr int kRead = 1;
constexpr int kWrite = 2;
constexpr int kSubscribe = 4;
constexpr int kUnsubscribe = 8;

// Records what the core asks of the broker.
class FakeBroker : public Broker {
 public:
  struct Published {
    std::string topic;
    std::string payload;
    int qos;
    bool retain;
  };
  void Log(LogLevel level, const std::string& message) override {
    logs.emplace_back(level, message);
  }
  void KickUsername(const std::string& username) override {
    kicks.push_back(username);
  }
  void KickClientId(const std::string& client_id) override {
    kicked_ids.push_back(client_id);
  }
  void Publish(const std::string& topic, std::string_view payload, int qos,
               bool retain) override {
    publishes.push_back({topic, std::string(payload), qos, retain});
  }
  Untracked Classify(const void* handle) override {
    if (retain_checks.count(handle) != 0) return Untracked::kRetainCheck;
    return tls_sessions.count(handle) != 0 ? Untracked::kTlsSession
                                           : Untracked::kClosed;
  }
  void* Alloc(size_t size) override { return std::malloc(size); }
  void Free(void* ptr) override { std::free(ptr); }

  int LogsContaining(const std::string& text,
                     std::optional<LogLevel> level = std::nullopt) const {
    return static_cast<int>(
        std::count_if(logs.begin(), logs.end(), [&](const auto& entry) {
          return (!level || entry.first == *level) &&
                 entry.second.find(text) != std::string::npos;
        }));
  }
  bool Kicked(const std::string& username) const {
    return std::find(kicks.begin(), kicks.end(), username) != kicks.end();
  }
  bool KickedId(const std::string& client_id) const {
    return std::find(kicked_ids.begin(), kicked_ids.end(), client_id) !=
           kicked_ids.end();
  }

  std::vector<std::pair<LogLevel, std::string>> logs;
  std::vector<std::string> kicks;
  std::vector<std::string> kicked_ids;
  std::vector<Published> publishes;
  std::set<const void*> tls_sessions;   // connected with a certificate
  std::set<const void*> retain_checks;  // check_retain_source stand-ins
};

// A clock that moves only when told.
class FakeClock : public Clock {
 public:
  int64_t MonotonicMs() override { return mono; }
  int64_t WallMs() override { return wall; }
  void Advance(int64_t ms) {
    mono += ms;
    wall += ms;
  }
  int64_t mono = 1000000;
  int64_t wall = 1795000000000;  // 2026-11-18
};

// A registry source the test drives by hand: what it pushes is there at the
// core's next event, as if the worker had just built it.
class FakeRegistrySource : public RegistrySource {
 public:
  void Push(std::shared_ptr<const Snapshot> snapshot,
            std::vector<std::string> revoked) {
    if (pending_) {  // not taken yet: merged, as the worker does
      revoked.insert(revoked.end(), pending_->revoked.begin(),
                     pending_->revoked.end());
    }
    pending_ = RegistryUpdate{std::move(snapshot), std::move(revoked), 0};
    update_flag()->store(true);
  }
  void AddLog(std::string line) {
    logs_.push_back(std::move(line));
    log_flag()->store(true);
  }

  bool TakeUpdate(RegistryUpdate* out,
                  std::shared_ptr<const Snapshot>* retired) override {
    if (!pending_) return false;
    retired_.push_back(std::move(*retired));
    retired->reset();
    *out = std::move(*pending_);
    pending_.reset();
    update_flag()->store(false);
    return true;
  }
  void RequestReload() override {
    ++reload_requests;
    if (on_reload) on_reload();
  }
  bool TakeLogs(std::vector<std::string>* out) override {
    out->swap(logs_);
    logs_.clear();
    log_flag()->store(false);
    return true;
  }
  bool SubmitStats(std::vector<DeviceStatsDelta>* batch) override {
    if (busy_until_shutdown && shutdowns == 0) return false;
    for (DeviceStatsDelta& d : *batch) {
      DeviceCounters& c = stats[d.device_id];
      c.published += d.counters.published;
      c.delivered += d.counters.delivered;
      c.rejected += d.counters.rejected;
      c.expired += d.counters.expired;
      c.last_connect_ms =
          std::max(c.last_connect_ms, d.counters.last_connect_ms);
      c.last_publish_ms =
          std::max(c.last_publish_ms, d.counters.last_publish_ms);
      c.last_delivery_ms =
          std::max(c.last_delivery_ms, d.counters.last_delivery_ms);
      c.acked += d.counters.acked;
      if (d.counters.presence_changed) {
        c.sessions = d.counters.sessions;
        c.subscribed = d.counters.subscribed;
        c.presence_changed = true;
      }
    }
    batch->clear();
    return true;
  }
  bool SubmitLog(std::vector<DeliveryEvent>* batch) override {
    if (busy_until_shutdown && shutdowns == 0) return false;
    log.insert(log.end(), batch->begin(), batch->end());
    batch->clear();
    return true;
  }
  bool LastError(std::string* out) override {
    *out = last_error;
    return true;
  }
  void Shutdown() override { ++shutdowns; }

  // What a reload request does (the fixture pushes the registry).
  std::function<void()> on_reload;
  int reload_requests = 0;
  int shutdowns = 0;
  // SubmitStats fails until Shutdown, as when the registry thread holds
  // its lock at every hand-over.
  bool busy_until_shutdown = false;
  std::string last_error;
  std::map<std::string, DeviceCounters> stats;  // submitted, merged
  std::vector<DeliveryEvent> log;               // submitted, in order

 private:
  std::optional<RegistryUpdate> pending_;
  std::vector<std::string> logs_;
  std::vector<std::shared_ptr<const Snapshot>> retired_;
};

PasswordHash Hash(const std::string& password) {
  Result<PasswordHash> h = HashPassword(password, 10);
  EXPECT_TRUE(h.ok());
  return *h;
}

// A client session for the events.
struct Client {
  Client(const char* user, const char* id) : username(user), client_id(id) {}
  ClientInfo info() const {
    ClientInfo c;
    c.handle = this;
    c.username = username;
    c.client_id = client_id;
    return c;
  }
  const char* username;
  const char* client_id;
};

class HomepotTest : public ::testing::Test {
 protected:
  void SetUp() override {
    AddDevice("sensor-001", "iot_sensor", 10240, "s3cret");
    AddDevice("homepot", "backend", 262144, "backend-pw");
    AddDevice("off-1", "unknown", 10240, "off-pw", /*enabled=*/false);
    AddRule("homepot", "devices/+/notifications", kRuleWrite);
    AddRule("homepot", "backend/status", kRuleRead | kRuleWrite);

    config_.db_path = "/registry/of/this/test.db";  // only named in logs
    config_.stats_interval_s = 0;  // no stats publications in these tests
    config_.auth_max_failures = 3;
    config_.auth_lockout_seconds = 60;
  }
  void TearDown() override {
    core_.reset();
    source_ = nullptr;
  }

  // The registry as the test has it: changed by hand, then pushed.
  void AddDevice(const std::string& id, const std::string& type,
                 uint32_t max_payload, const std::string& password,
                 bool enabled = true) {
    AddDevice(id, type, max_payload, Hash(password), enabled);
  }
  void AddDevice(const std::string& id, const std::string& type,
                 uint32_t max_payload, const PasswordHash& password,
                 bool enabled = true) {
    Device d;
    d.id = id;
    d.type = type;
    d.max_payload = max_payload;
    d.enabled = enabled;
    d.has_password = true;
    d.password = password;
    devices_.push_back(std::move(d));
  }
  Device& Registered(const std::string& id) {
    auto it = std::find_if(devices_.begin(), devices_.end(),
                           [&](const Device& d) { return d.id == id; });
    EXPECT_NE(it, devices_.end()) << id;
    return *it;
  }
  void AddRule(const std::string& id, const std::string& filter,
               uint8_t access) {
    Registered(id).rules.push_back({filter, access});
  }
  void RemoveDevice(const std::string& id) {
    devices_.erase(std::remove_if(devices_.begin(), devices_.end(),
                                  [&](const Device& d) { return d.id == id; }),
                   devices_.end());
  }
  std::shared_ptr<const Snapshot> BuildSnapshot() {
    return Snapshot::Build(devices_, {}, generation_++, 10240);
  }
  // Hands the registry as it is now to the core, with the devices it
  // revokes, as the worker does after a change (or a forced reload).
  void PushRegistry() {
    auto next = BuildSnapshot();
    source_->Push(next, RevokedDevices(*pushed_, *next));
    pushed_ = next;
  }

  void Create() {
    auto source = std::make_unique<FakeRegistrySource>();
    source_ = source.get();
    source_->on_reload = [this] { PushRegistry(); };
    for (const std::string& line : startup_logs_) source_->AddLog(line);
    pushed_ = BuildSnapshot();
    core_ = Homepot::Create(config_, &broker_, &clock_, std::move(source),
                            pushed_, clock_.MonotonicMs());
  }

  // Sets sensor-001's password to "n3w" and lets the core take the new
  // snapshot in through events that kick nothing: RELOAD, then a delivery to
  // `old_session` (which ends Mosquitto's re-check pass after RELOAD).
  bool ChangeSensorPasswordQuietly(const Client& old_session) {
    Registered("sensor-001").password = Hash("n3w");
    core_->OnReload();
    if (broker_.LogsContaining("registry reloaded") != 1) return false;
    core_->OnAclCheck(old_session.info(), "devices/sensor-001/notifications",
                      kRead);
    return true;
  }

  Verdict Auth(const Client& c, const char* username, const char* password) {
    return core_->OnBasicAuth(c.info(), username, password);
  }
  // A client that did not log in through BASIC_AUTH stands for a connected
  // TLS identity session (the fake reports a certificate for it).
  Verdict Acl(const Client& c, const std::string& topic, int access) {
    broker_.tls_sessions.insert(c.info().handle);
    return core_->OnAclCheck(c.info(), topic, access);
  }
  Verdict Publish(const Client& c, const std::string& topic,
                  const std::string& payload, int qos = 1) {
    broker_.tls_sessions.insert(c.info().handle);
    return core_->OnAclCheck(c.info(), topic, kWrite, payload.data(),
                             static_cast<uint32_t>(payload.size()), qos, false);
  }

  std::vector<Device> devices_;
  int64_t generation_ = 1;
  std::shared_ptr<const Snapshot> pushed_;  // the last snapshot handed over
  std::vector<std::string> startup_logs_;   // the source has them at Create
  Config config_;
  FakeBroker broker_;
  FakeClock clock_;
  FakeRegistrySource* source_ = nullptr;  // owned by core_
  std::unique_ptr<Homepot> core_;
};

TEST_F(HomepotTest, CreateLoadsAndLogsTheRegistry) {
  Create();
  EXPECT_EQ(core_->snapshot().device_count(), 3u);
  EXPECT_EQ(core_->snapshot().rule_count(), 2u);
  EXPECT_EQ(broker_.LogsContaining("registry " + config_.db_path +
                                   " loaded: 3 devices, 2 acl rules"),
            1);
  EXPECT_TRUE(broker_.kicks.empty());
}

TEST_F(HomepotTest, BasicAuthVerdicts) {
  Create();
  Client c("ignored", "client-1");
  Client b("ignored", "client-2");
  EXPECT_EQ(Auth(c, "sensor-001", "s3cret"), Verdict::kAllow);
  EXPECT_EQ(Auth(b, "homepot", "backend-pw"), Verdict::kAllow);
  EXPECT_EQ(Auth(c, "sensor-001", "wrong"), Verdict::kDeny);
  EXPECT_EQ(Auth(c, "sensor-001", nullptr), Verdict::kDeny);
  EXPECT_EQ(Auth(c, "sensor-001", "s3cret"), Verdict::kAllow);
  EXPECT_EQ(Auth(c, "sensor-001", "backend-pw"), Verdict::kDeny);
  EXPECT_EQ(Auth(c, "ghost", "s3cret"), Verdict::kDeny);
  EXPECT_EQ(Auth(c, "off-1", "off-pw"), Verdict::kDeny);
  // No anonymous devices.
  EXPECT_EQ(Auth(c, nullptr, nullptr), Verdict::kDeny);
  EXPECT_EQ(Auth(c, nullptr, "s3cret"), Verdict::kDeny);
  EXPECT_EQ(Auth(c, "", "s3cret"), Verdict::kDeny);
  EXPECT_EQ(Auth(c, "", nullptr), Verdict::kDeny);
}

TEST_F(HomepotTest, BasicAuthRefusesWildcardsInUsernameOrClientId) {
  Create();
  Client good("x", "client-1");
  for (const char* user :
       {"sensor+1", "sensor#1", "devices/sensor-001", "+", "#", "/"}) {
    EXPECT_EQ(Auth(good, user, "s3cret"), Verdict::kDeny) << user;
  }
  for (const char* id : {"c+1", "c#1", "c/1", "+", "#", "/"}) {
    Client c("x", id);
    EXPECT_EQ(Auth(c, "sensor-001", "s3cret"), Verdict::kDeny) << id;
  }
  // Mosquitto assigns a client id before BASIC_AUTH; none at all is refused.
  Client no_id("x", nullptr);
  EXPECT_EQ(Auth(no_id, "sensor-001", "s3cret"), Verdict::kDeny);
  EXPECT_EQ(Auth(good, "sensor-001", "s3cret"), Verdict::kAllow);
}

TEST_F(HomepotTest, UnknownUsernamesAreDeferredWhenConfigured) {
  config_.defer_unknown = true;
  Create();
  Client ghost("ghost", "g-1");
  EXPECT_EQ(Auth(ghost, "ghost", "whatever"), Verdict::kDefer);
  EXPECT_EQ(Acl(ghost, "anything", kRead), Verdict::kDefer);
  EXPECT_EQ(Acl(ghost, "anything", kWrite), Verdict::kDefer);
  // Registered devices are judged here, not deferred.
  Client sensor("sensor-001", "s-1");
  EXPECT_EQ(Auth(sensor, "sensor-001", "wrong"), Verdict::kDeny);
  EXPECT_EQ(Auth(sensor, "sensor-001", "s3cret"), Verdict::kAllow);
  EXPECT_EQ(Acl(sensor, "anything", kRead), Verdict::kDeny);
  Client off("off-1", "o-1");
  EXPECT_EQ(Auth(off, "off-1", "off-pw"), Verdict::kDeny);
  EXPECT_EQ(Acl(off, "devices/off-1/notifications", kRead), Verdict::kDeny);
  // Wildcards are refused before any deferral.
  EXPECT_EQ(Auth(ghost, "gh+ost", "x"), Verdict::kDeny);
}

TEST_F(HomepotTest, LockoutFollowsTheClock) {
  Create();
  Client c("sensor-001", "client-1");
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(Auth(c, "sensor-001", "wrong"), Verdict::kDeny);
  }
  EXPECT_EQ(Auth(c, "sensor-001", "s3cret"), Verdict::kDeny);
  clock_.Advance(59999);
  EXPECT_EQ(Auth(c, "sensor-001", "s3cret"), Verdict::kDeny);
  clock_.Advance(1);
  EXPECT_EQ(Auth(c, "sensor-001", "s3cret"), Verdict::kAllow);
}

TEST_F(HomepotTest, AclCheckVerdicts) {
  Create();
  Client sensor("sensor-001", "s-1");
  EXPECT_EQ(Acl(sensor, "devices/sensor-001/notifications", kRead),
            Verdict::kAllow);
  EXPECT_EQ(Acl(sensor, "devices/sensor-001/notifications", kSubscribe),
            Verdict::kAllow);
  EXPECT_EQ(Acl(sensor, "$SYS/homepot/rejections/sensor-001", kSubscribe),
            Verdict::kAllow);
  EXPECT_EQ(Acl(sensor, "devices/sensor-001/notifications", kUnsubscribe),
            Verdict::kAllow);
  EXPECT_EQ(
      Publish(sensor, "devices/sensor-001/notifications", test::kNotification),
      Verdict::kDeny);
  EXPECT_EQ(Acl(sensor, "devices/sensor-002/notifications", kRead),
            Verdict::kDeny);
  EXPECT_EQ(Acl(sensor, "devices/#", kSubscribe), Verdict::kDeny);
  EXPECT_EQ(Acl(sensor, "$SYS/homepot/stats", kRead), Verdict::kDeny);

  Client backend("homepot", "b-1");
  EXPECT_EQ(
      Publish(backend, "devices/sensor-001/notifications", test::kNotification),
      Verdict::kAllow);
  EXPECT_EQ(Publish(backend, "backend/status", "online"), Verdict::kAllow);
  EXPECT_EQ(Acl(backend, "backend/status", kRead), Verdict::kAllow);
  EXPECT_EQ(Acl(backend, "devices/sensor-001/notifications", kRead),
            Verdict::kDeny);
  EXPECT_EQ(Publish(backend, "$SYS/homepot/stats", "{}"), Verdict::kDeny);
  EXPECT_EQ(Publish(backend, "$SYS/homepot/rejections/sensor-001", "{}"),
            Verdict::kDeny);

  // No username, unknown and disabled devices: denied everything.
  Client anonymous(nullptr, "a-1");
  Client ghost("ghost", "g-1");
  Client off("off-1", "o-1");
  for (const Client* c : {&anonymous, &ghost, &off}) {
    for (int access : {kRead, kSubscribe, kUnsubscribe}) {
      EXPECT_EQ(Acl(*c, "backend/status", access), Verdict::kDeny)
          << (c->username ? c->username : "(null)") << " " << access;
    }
    EXPECT_EQ(Publish(*c, "backend/status", "x"), Verdict::kDeny);
  }
  EXPECT_EQ(Acl(off, "devices/off-1/notifications", kRead), Verdict::kDeny);
  EXPECT_EQ(Acl(ghost, "devices/ghost/notifications", kRead), Verdict::kDeny);
}

TEST_F(HomepotTest, InvalidNotificationIsDeniedAndTheSenderIsTold) {
  Create();
  Client backend("homepot", "b-1");
  EXPECT_EQ(Publish(backend, "devices/sensor-001/notifications", "not json"),
            Verdict::kDeny);
  auto it = std::find_if(broker_.publishes.begin(), broker_.publishes.end(),
                         [](const FakeBroker::Published& p) {
                           return p.topic == "$SYS/homepot/rejections/homepot";
                         });
  ASSERT_NE(it, broker_.publishes.end());
  EXPECT_FALSE(it->retain);
  EXPECT_NE(it->payload.find("devices/sensor-001/notifications"),
            std::string::npos)
      << it->payload;
}

TEST_F(HomepotTest, DisablingADeviceKicksItAndDeniesIt) {
  Create();
  Client sensor("sensor-001", "s-1");
  ASSERT_EQ(Auth(sensor, "sensor-001", "s3cret"), Verdict::kAllow);
  ASSERT_EQ(Acl(sensor, "devices/sensor-001/notifications", kRead),
            Verdict::kAllow);
  Registered("sensor-001").enabled = false;
  PushRegistry();
  // Its session logged in through us: ended by its client id.
  core_->OnTick();
  ASSERT_TRUE(broker_.KickedId("s-1"));
  EXPECT_EQ(broker_.kicked_ids, std::vector<std::string>{"s-1"});
  EXPECT_TRUE(broker_.kicks.empty());
  EXPECT_EQ(broker_.LogsContaining("registry reloaded", LogLevel::kNotice), 1);
  EXPECT_FALSE(core_->snapshot().Find("sensor-001")->enabled);
  EXPECT_EQ(Acl(sensor, "devices/sensor-001/notifications", kRead),
            Verdict::kDeny);
  // The cached secret does not let it back in.
  EXPECT_EQ(Auth(sensor, "sensor-001", "s3cret"), Verdict::kDeny);
}

TEST_F(HomepotTest, NextAclCheckAppliesTheUpdate) {
  Create();
  Client sensor("sensor-001", "s-1");
  ASSERT_EQ(Acl(sensor, "devices/sensor-001/+", kSubscribe), Verdict::kDeny);
  AddRule("sensor-001", "devices/sensor-001/#", kRuleRead);
  PushRegistry();
  ASSERT_EQ(Acl(sensor, "devices/sensor-001/+", kSubscribe), Verdict::kAllow);
  EXPECT_EQ(core_->snapshot().rule_count(), 3u);
  // A rule change ends no sessions.
  EXPECT_TRUE(broker_.kicks.empty());
  EXPECT_EQ(Acl(sensor, "devices/#", kSubscribe), Verdict::kDeny);
}

TEST_F(HomepotTest, PasswordChangeKicksAndRefusesTheOldPassword) {
  Create();
  Client sensor("sensor-001", "s-1");
  ASSERT_EQ(Auth(sensor, "sensor-001", "s3cret"), Verdict::kAllow);
  ASSERT_EQ(Auth(sensor, "sensor-001", "s3cret"), Verdict::kAllow);  // cached
  Registered("sensor-001").password = Hash("n3w");
  PushRegistry();
  core_->OnTick();
  ASSERT_TRUE(broker_.KickedId("s-1"));
  EXPECT_EQ(broker_.kicked_ids, std::vector<std::string>{"s-1"});
  EXPECT_EQ(Auth(sensor, "sensor-001", "s3cret"), Verdict::kDeny);
  EXPECT_EQ(Auth(sensor, "sensor-001", "n3w"), Verdict::kAllow);
}

TEST_F(HomepotTest, RemovingADeviceKicksIt) {
  Create();
  Client backend("homepot", "b-1");
  ASSERT_EQ(Auth(backend, "homepot", "backend-pw"), Verdict::kAllow);
  RemoveDevice("homepot");
  PushRegistry();
  core_->OnTick();
  ASSERT_TRUE(broker_.KickedId("b-1"));
  EXPECT_EQ(broker_.kicked_ids, std::vector<std::string>{"b-1"});
  EXPECT_EQ(core_->snapshot().Find("homepot"), nullptr);
  core_->OnDisconnect(backend.info());
  EXPECT_EQ(Auth(backend, "homepot", "backend-pw"), Verdict::kDeny);
  EXPECT_EQ(Publish(backend, "backend/status", "x"), Verdict::kDeny);
}

TEST_F(HomepotTest, OnReloadReloadsWithoutWaitingForTheInterval) {
  Create();
  // A TLS identity session of the device that acted: untracked sessions
  // exist, so the device is also ended by name.
  Client tls("homepot", "t-1");
  ASSERT_EQ(Acl(tls, "backend/status", kSubscribe), Verdict::kAllow);
  core_->OnDisconnect(tls.info());
  // Changed, but not pushed: the source's own interval has not come.
  Registered("homepot").enabled = false;
  core_->OnTick();
  EXPECT_TRUE(broker_.kicks.empty()) << "no reload before the interval";
  EXPECT_EQ(source_->reload_requests, 0);
  core_->OnReload();
  EXPECT_EQ(source_->reload_requests, 1);
  core_->OnTick();
  ASSERT_TRUE(broker_.Kicked("homepot"));
  EXPECT_EQ(broker_.LogsContaining("registry reloaded", LogLevel::kNotice), 1);
}

TEST_F(HomepotTest, RegistryErrorsAreLoggedAndTheLastGoodRegistryStays) {
  Create();
  // What the worker reports when the file goes missing (once; see
  // RegistryWorkerTest.MissingFileKeepsTheRegistryAndLogsOnce).
  source_->last_error = "registry file " + config_.db_path + " is missing";
  source_->AddLog("registry: " + source_->last_error +
                  "; keeping generation 1");
  core_->OnTick();
  ASSERT_GT(broker_.LogsContaining("missing", LogLevel::kWarning), 0);
  // Many more events: still one line.
  for (int i = 0; i < 50; ++i) core_->OnTick();
  EXPECT_EQ(broker_.LogsContaining("missing"), 1);
  EXPECT_TRUE(broker_.kicks.empty());
  EXPECT_EQ(core_->snapshot().device_count(), 3u);
  Client sensor("sensor-001", "s-1");
  EXPECT_EQ(Auth(sensor, "sensor-001", "s3cret"), Verdict::kAllow);
  EXPECT_EQ(Acl(sensor, "devices/sensor-001/notifications", kRead),
            Verdict::kAllow);
}

TEST_F(HomepotTest, LoadWarningsAreForwardedToTheBrokerLog) {
  // What the worker logs when it skips a rule at its first load (see
  // RegistryWorkerTest.StartLogsLoadWarnings).
  startup_logs_.push_back("registry: skipped invalid acl rule 'a/#/b'");
  Create();
  EXPECT_EQ(broker_.LogsContaining("skipped invalid acl rule 'a/#/b'",
                                   LogLevel::kWarning),
            1);
}

// Mosquitto must not be asked to kick the client whose event is running (it
// would free that context under the broker): a revoked device's own write or
// subscribe gets an error (Mosquitto then ends the session itself) and the
// kick is left for TICK or another client's event.
TEST_F(HomepotTest, RevokedDeviceIsNeverKickedFromItsOwnEvent) {
  Create();
  Client sensor("sensor-001", "s-1");
  Client other("homepot", "h-1");
  ASSERT_EQ(Auth(sensor, "sensor-001", "s3cret"), Verdict::kAllow);
  Registered("sensor-001").enabled = false;
  PushRegistry();
  // The new snapshot comes in through the sensor's own event only.
  Acl(sensor, "devices/sensor-001/notifications", kRead);
  ASSERT_FALSE(core_->snapshot().Find("sensor-001")->enabled);
  EXPECT_TRUE(broker_.kicked_ids.empty());
  EXPECT_EQ(Acl(sensor, "devices/sensor-001/notifications", kSubscribe),
            Verdict::kDisconnect);
  EXPECT_TRUE(broker_.kicked_ids.empty());
  // A delivery to another client kicks nothing (a publisher's message may be
  // in flight); that client's own packet does.
  Acl(other, "devices/sensor-001/notifications", kRead);
  EXPECT_TRUE(broker_.kicked_ids.empty());
  Acl(other, "backend/status", kSubscribe);
  EXPECT_EQ(broker_.kicked_ids, std::vector<std::string>{"s-1"});
}

// With TICK, stats fall due on TICK only: the message path reads no clock.
TEST_F(HomepotTest, WithTickStatsArePublishedFromTickOnly) {
  config_.stats_interval_s = 1;
  Create();
  Client sensor("sensor-001", "s-1");
  auto stats = [&] {
    return std::count_if(broker_.publishes.begin(), broker_.publishes.end(),
                         [](const FakeBroker::Published& p) {
                           return p.topic == "$SYS/homepot/stats";
                         });
  };
  core_->OnTick();
  ASSERT_EQ(stats(), 0);
  clock_.Advance(1500);
  Acl(sensor, "devices/sensor-001/notifications", kRead);
  EXPECT_EQ(stats(), 0) << "a non-TICK event published while TICK runs";
  core_->OnTick();
  EXPECT_EQ(stats(), 1);
}

// Without TICK (per_listener_settings true) any event publishes when due.
TEST_F(HomepotTest, WithoutTickAnyEventPublishesDueStats) {
  config_.stats_interval_s = 1;
  Create();
  Client sensor("sensor-001", "s-1");
  clock_.Advance(1500);
  Acl(sensor, "devices/sensor-001/notifications", kRead);
  EXPECT_EQ(std::count_if(broker_.publishes.begin(), broker_.publishes.end(),
                          [](const FakeBroker::Published& p) {
                            return p.topic == "$SYS/homepot/stats";
                          }),
            1);
}

// last_delivery is the later of the message's receipt and the last TICK.
TEST_F(HomepotTest, DeliveryTimeIsTheReceiptOrTheLastTick) {
  config_.stats_interval_s = 3600;
  Create();
  Client backend("homepot", "b-1");
  Client sensor("sensor-001", "s-1");
  ASSERT_EQ(Auth(sensor, "sensor-001", "s3cret"), Verdict::kAllow);
  const std::string topic = "devices/sensor-001/notifications";
  const std::string body = R"({"title":"t","body":"b"})";
  auto deliver = [&] {
    return core_->OnAclCheck(sensor.info(), topic, kRead, body.data(),
                             static_cast<uint32_t>(body.size()));
  };
  auto last_delivery = [&] {
    core_->PublishStats();  // hands the deltas to the registry source
    auto it = source_->stats.find("sensor-001");
    return it == source_->stats.end() || it->second.last_delivery_ms == 0
               ? std::string()
               : StampString(it->second.last_delivery_ms);
  };
  core_->OnTick();
  const int64_t tick = clock_.wall;
  clock_.Advance(5000);  // no TICK since
  ASSERT_EQ(Publish(backend, topic, body), Verdict::kAllow);
  const int64_t receipt = clock_.wall;
  clock_.Advance(70);
  ASSERT_EQ(deliver(), Verdict::kAllow);
  EXPECT_EQ(last_delivery(), StampString(receipt));
  EXPECT_GT(receipt, tick);
}

// The last deltas reach the registry at shutdown even when every hand-over
// before found the source busy.
TEST_F(HomepotTest, ShutdownHandsOverDeltasTheBusySourceRefused) {
  config_.stats_interval_s = 3600;
  Create();
  source_->busy_until_shutdown = true;
  Client backend("homepot", "b-1");
  const std::string topic = "devices/sensor-001/notifications";
  ASSERT_EQ(Publish(backend, topic, R"({"title":"t","body":"b"})"),
            Verdict::kAllow);
  core_->PublishStats();  // refused: the source is busy
  EXPECT_TRUE(source_->stats.empty());
  core_->Shutdown();
  ASSERT_EQ(source_->stats.count("homepot"), 1u);
  EXPECT_EQ(source_->stats["homepot"].published, 1u);
  EXPECT_EQ(source_->shutdowns, 2);
}

// A handle the broker reuses after a disconnect is a new session: nothing
// of the old device's state (cached lookups included) carries over.
TEST_F(HomepotTest, ReusedHandleIsANewSession) {
  Create();
  Client c("sensor-001", "s-1");
  ASSERT_EQ(Auth(c, "sensor-001", "s3cret"), Verdict::kAllow);
  ASSERT_EQ(Acl(c, "devices/sensor-001/notifications", kRead), Verdict::kAllow);
  core_->OnDisconnect(c.info());
  EXPECT_EQ(core_->counters().connected, 0u);
  c.username = "homepot";
  c.client_id = "b-1";
  ASSERT_EQ(Auth(c, "homepot", "backend-pw"), Verdict::kAllow);
  EXPECT_EQ(Acl(c, "devices/sensor-001/notifications", kRead), Verdict::kDeny);
  EXPECT_EQ(Acl(c, "backend/status", kWrite), Verdict::kAllow);
  EXPECT_EQ(core_->counters().connected, 1u);
}

}  // namespace
}  // namespace homepot

namespace homepot {
namespace {

// The device logs in again with its new password before its old session was
// kicked (its records must not dangle): the old session is ended,
// the new one is kept, whatever its client id.
TEST_F(HomepotTest, PasswordChangeEndsOnlyTheOldSessionWithADifferentId) {
  Create();
  Client old_session("sensor-001", "s-1");
  Client new_session("sensor-001", "s-2");
  ASSERT_EQ(Auth(old_session, "sensor-001", "s3cret"), Verdict::kAllow);
  ASSERT_TRUE(ChangeSensorPasswordQuietly(old_session));
  ASSERT_EQ(Auth(new_session, "sensor-001", "n3w"), Verdict::kAllow);
  core_->OnTick();
  EXPECT_EQ(broker_.kicked_ids, std::vector<std::string>{"s-1"});
  EXPECT_TRUE(broker_.kicks.empty());
  core_->OnDisconnect(old_session.info());
  // The new session is not revoked: its own events go through.
  EXPECT_EQ(Acl(new_session, "devices/sensor-001/notifications", kSubscribe),
            Verdict::kAllow);
  core_->OnTick();
  EXPECT_EQ(broker_.kicked_ids.size(), 1u);
}

TEST_F(HomepotTest, PasswordChangeKeepsTheNewSessionWithTheSameId) {
  Create();
  Client old_session("sensor-001", "s-1");
  Client new_session("sensor-001", "s-1");
  ASSERT_EQ(Auth(old_session, "sensor-001", "s3cret"), Verdict::kAllow);
  ASSERT_TRUE(ChangeSensorPasswordQuietly(old_session));
  ASSERT_EQ(Auth(new_session, "sensor-001", "n3w"), Verdict::kAllow);
  // Mosquitto's takeover ends the old session; a kick by its id would end
  // the new one.
  core_->OnTick();
  core_->OnDisconnect(old_session.info());
  core_->OnTick();
  EXPECT_TRUE(broker_.kicked_ids.empty());
  EXPECT_TRUE(broker_.kicks.empty());
  EXPECT_EQ(Acl(new_session, "devices/sensor-001/notifications", kSubscribe),
            Verdict::kAllow);
}

TEST_F(HomepotTest, AClientIdIsNeverTakenOverByAnotherDevice) {
  Create();
  Client sensor("sensor-001", "shared");
  ASSERT_EQ(Auth(sensor, "sensor-001", "s3cret"), Verdict::kAllow);
  Client thief("homepot", "shared");
  EXPECT_EQ(Auth(thief, "homepot", "backend-pw"), Verdict::kDeny);
  EXPECT_EQ(
      broker_.LogsContaining("client id 'shared' is in use by another client"),
      1);
  // Nor after the owner disconnected from a session that may persist.
  core_->OnDisconnect(sensor.info(), /*may_persist=*/true);
  EXPECT_EQ(Auth(thief, "homepot", "backend-pw"), Verdict::kDeny);
  EXPECT_EQ(broker_.LogsContaining("client id 'shared' is held by device "
                                   "'sensor-001'"),
            1);
  // A clean session frees the id.
  ASSERT_EQ(Auth(sensor, "sensor-001", "s3cret"), Verdict::kAllow);
  core_->OnDisconnect(sensor.info(), /*may_persist=*/false);
  EXPECT_EQ(Auth(thief, "homepot", "backend-pw"), Verdict::kAllow);
}

TEST_F(HomepotTest, ClientIdsThatWouldWidenPercentCAreRefused) {
  Create();
  for (const char* id : {"$SYS", "$share", "sensor-001"}) {
    Client c("homepot", id);
    EXPECT_EQ(Auth(c, "homepot", "backend-pw"), Verdict::kDeny) << id;
  }
  std::string long_id(257, 'c');
  Client c("homepot", long_id.c_str());
  EXPECT_EQ(Auth(c, "homepot", "backend-pw"), Verdict::kDeny);
  // Its own id is fine.
  Client own("sensor-001", "sensor-001");
  EXPECT_EQ(Auth(own, "sensor-001", "s3cret"), Verdict::kAllow);
}

// Per-device claims are bounded: the oldest id no session uses is released.
TEST_F(HomepotTest, ClaimsPerDeviceAreBounded) {
  Create();
  std::vector<std::string> ids;
  for (size_t i = 0; i <= SessionTable::kMaxClaimsPerDevice; ++i) {
    ids.push_back("c-" + std::to_string(i));
  }
  std::vector<std::unique_ptr<Client>> clients;
  for (const std::string& id : ids) {
    clients.push_back(std::make_unique<Client>("sensor-001", id.c_str()));
    ASSERT_EQ(Auth(*clients.back(), "sensor-001", "s3cret"), Verdict::kAllow);
    core_->OnDisconnect(clients.back()->info(), /*may_persist=*/true);
  }
  // c-0 was released for the last one; c-1 is still held.
  Client a("homepot", "c-0");
  EXPECT_EQ(Auth(a, "homepot", "backend-pw"), Verdict::kAllow);
  Client b("homepot", "c-1");
  EXPECT_EQ(Auth(b, "homepot", "backend-pw"), Verdict::kDeny);
}

// A will gets no MESSAGE event and its payload cannot be replaced: the plugin
// publishes a stamped copy and refuses the original.
TEST_F(HomepotTest, WillIsPublishedStampedAndTheOriginalRefused) {
  Create();
  Client backend("homepot", "b-1");
  ASSERT_EQ(Auth(backend, "homepot", "backend-pw"), Verdict::kAllow);
  core_->OnDisconnect(backend.info());
  const std::string will =
      R"({"title":"t","body":"b","received_at":"1999-01-01T00:00:00.000Z"})";
  EXPECT_EQ(core_->OnAclCheck(
                backend.info(), "devices/sensor-001/notifications", kWrite,
                will.data(), static_cast<uint32_t>(will.size()), 1, false),
            Verdict::kDeny);
  auto it = std::find_if(broker_.publishes.begin(), broker_.publishes.end(),
                         [](const FakeBroker::Published& p) {
                           return p.topic == "devices/sensor-001/notifications";
                         });
  ASSERT_NE(it, broker_.publishes.end());
  nlohmann::json got = nlohmann::json::parse(it->payload);
  EXPECT_EQ(got["received_at"], StampString(clock_.wall));
  EXPECT_EQ(got["timestamp"], StampString(clock_.wall));
  EXPECT_EQ(it->qos, 1);
  // An invalid will is refused and not published.
  broker_.publishes.clear();
  const std::string bad = R"({"title":"t"})";
  EXPECT_EQ(core_->OnAclCheck(
                backend.info(), "devices/sensor-001/notifications", kWrite,
                bad.data(), static_cast<uint32_t>(bad.size()), 1, false),
            Verdict::kDeny);
  EXPECT_EQ(std::count_if(broker_.publishes.begin(), broker_.publishes.end(),
                          [](const FakeBroker::Published& p) {
                            return p.topic ==
                                   "devices/sensor-001/notifications";
                          }),
            0);
}

// Copies for an offline session: QoS 0 ones are dropped by Mosquitto and not
// counted; QoS 1 ones are queued and counted once (not again at replay).
TEST_F(HomepotTest, DeliveriesCountOnlyCopiesSentOrQueued) {
  Create();
  Client sensor("sensor-001", "s-1");
  ASSERT_EQ(Auth(sensor, "sensor-001", "s3cret"), Verdict::kAllow);
  const std::string body = test::kNotification;
  const std::string topic = "devices/sensor-001/notifications";
  auto deliver = [&](int qos) {
    return core_->OnAclCheck(sensor.info(), topic, kRead, body.data(),
                             static_cast<uint32_t>(body.size()), qos, false);
  };
  core_->OnTick();
  ASSERT_EQ(deliver(0), Verdict::kAllow);
  EXPECT_EQ(core_->counters().deliveries, 1u);
  core_->OnDisconnect(sensor.info(), /*may_persist=*/true);
  ASSERT_EQ(deliver(0), Verdict::kAllow);
  EXPECT_EQ(core_->counters().deliveries, 1u);
  ASSERT_EQ(deliver(1), Verdict::kAllow);
  EXPECT_EQ(core_->counters().deliveries, 2u);
  // Back online: the queue is checked again at login (replay), not counted.
  Client back("sensor-001", "s-1");
  ASSERT_EQ(Auth(back, "sensor-001", "s3cret"), Verdict::kAllow);
  ASSERT_EQ(core_->OnAclCheck(back.info(), topic, kRead, body.data(),
                              static_cast<uint32_t>(body.size()), 1, false),
            Verdict::kAllow);
  EXPECT_EQ(core_->counters().deliveries, 2u);
  core_->OnTick();
  ASSERT_EQ(core_->OnAclCheck(back.info(), topic, kRead, body.data(),
                              static_cast<uint32_t>(body.size()), 1, false),
            Verdict::kAllow);
  EXPECT_EQ(core_->counters().deliveries, 3u);
}

// Publishes `body` as the backend through the ACL check and MESSAGE event,
// as Mosquitto does; returns the stamped buffer (freed by the test).
struct Routed {
  Verdict verdict;
  Message message;
  std::string payload() const {
    return std::string(static_cast<const char*>(message.payload),
                       message.payloadlen);
  }
};

class LifetimeTest : public HomepotTest {
 protected:
  void TearDown() override {
    for (void* p : buffers_) std::free(p);
    HomepotTest::TearDown();
  }
  Routed Route(const std::string& body, bool retain = false) {
    Routed r;
    r.message.topic = kTopic;
    r.message.payload = const_cast<char*>(body.data());
    r.message.payloadlen = static_cast<uint32_t>(body.size());
    r.message.qos = 1;
    r.message.retain = retain;
    r.verdict = core_->OnAclCheck(backend_.info(), kTopic, kWrite, body.data(),
                                  r.message.payloadlen, 1, retain);
    if (r.verdict != Verdict::kAllow) return r;
    r.verdict = core_->OnMessage(backend_.info(), &r.message);
    if (r.message.payload != body.data()) buffers_.push_back(r.message.payload);
    return r;
  }
  Verdict Read(const Client& c, const Routed& r, bool retain = false) {
    return core_->OnAclCheck(c.info(), kTopic, kRead, r.message.payload,
                             r.message.payloadlen, 1, retain);
  }
  uint64_t DeviceExpired() {
    core_->PublishStats();
    return source_->stats["sensor-001"].expired;
  }

  static constexpr const char* kTopic = "devices/sensor-001/notifications";
  Client backend_{"homepot", "b-1"};
  Client sensor_{"sensor-001", "s-1"};
  std::vector<void*> buffers_;
};

TEST_F(LifetimeTest, ACopyIsDeliveredOnlyWithinItsTtl) {
  Create();
  ASSERT_EQ(Auth(backend_, "homepot", "backend-pw"), Verdict::kAllow);
  ASSERT_EQ(Auth(sensor_, "sensor-001", "s3cret"), Verdict::kAllow);
  Routed r = Route(R"({"title":"t","body":"b","ttl":2,"message_id":"m-7"})");
  ASSERT_EQ(r.verdict, Verdict::kAllow);
  EXPECT_EQ(Read(sensor_, r), Verdict::kAllow);
  core_->OnDisconnect(sensor_.info(), /*may_persist=*/true);
  clock_.Advance(1999);
  EXPECT_EQ(Read(sensor_, r), Verdict::kAllow);  // queued while offline
  EXPECT_EQ(core_->counters().deliveries, 2u);
  clock_.Advance(1);
  // Back after the ttl: the queued copy is not delivered.
  Client back("sensor-001", "s-1");
  ASSERT_EQ(Auth(back, "sensor-001", "s3cret"), Verdict::kAllow);
  EXPECT_EQ(Read(back, r), Verdict::kDeny);
  EXPECT_EQ(core_->counters().expired, 1u);
  EXPECT_EQ(core_->counters().deliveries, 2u);
  EXPECT_EQ(core_->counters().acl_deliver_denied, 0u);
  // Nor as a retained copy on subscribe.
  core_->OnTick();
  EXPECT_EQ(Read(back, r, /*retain=*/true), Verdict::kDeny);
  EXPECT_EQ(core_->counters().expired, 2u);
  EXPECT_EQ(DeviceExpired(), 2u);
}

TEST_F(LifetimeTest, TtlZeroReachesOnlyConnectedSessionsAndIsNotRetained) {
  Create();
  ASSERT_EQ(Auth(backend_, "homepot", "backend-pw"), Verdict::kAllow);
  ASSERT_EQ(Auth(sensor_, "sensor-001", "s3cret"), Verdict::kAllow);
  Routed r = Route(R"({"title":"t","body":"b","ttl":0})", /*retain=*/true);
  ASSERT_EQ(r.verdict, Verdict::kAllow);
  EXPECT_FALSE(r.message.retain);
  EXPECT_EQ(Read(sensor_, r), Verdict::kAllow);
  EXPECT_EQ(Read(sensor_, r, /*retain=*/true), Verdict::kDeny);
  core_->OnDisconnect(sensor_.info(), /*may_persist=*/true);
  EXPECT_EQ(Read(sensor_, r), Verdict::kDeny);  // not queued offline
  EXPECT_EQ(core_->counters().expired, 2u);
  EXPECT_EQ(core_->counters().deliveries, 1u);
}

TEST_F(LifetimeTest, DefaultTtlAppliesWithoutTtl) {
  config_.default_ttl_s = 10;
  Create();
  ASSERT_EQ(Auth(backend_, "homepot", "backend-pw"), Verdict::kAllow);
  ASSERT_EQ(Auth(sensor_, "sensor-001", "s3cret"), Verdict::kAllow);
  Routed r = Route(R"({"title":"t","body":"b"})");
  Routed forever = Route(R"({"title":"t","body":"b","ttl":100})");
  clock_.Advance(10000);
  core_->OnTick();
  EXPECT_EQ(Read(sensor_, r), Verdict::kDeny);
  EXPECT_EQ(Read(sensor_, forever), Verdict::kAllow);
}

TEST_F(LifetimeTest, NoTtlAndNoDefaultMeansNoLimit) {
  Create();
  ASSERT_EQ(Auth(backend_, "homepot", "backend-pw"), Verdict::kAllow);
  ASSERT_EQ(Auth(sensor_, "sensor-001", "s3cret"), Verdict::kAllow);
  Routed r = Route(R"({"title":"t","body":"b"})");
  clock_.Advance(int64_t{3650} * 24 * 3600 * 1000);
  EXPECT_EQ(Read(sensor_, r), Verdict::kAllow);
  EXPECT_EQ(core_->counters().expired, 0u);
}

// A payload the plugin did not stamp in this run (restored from the
// persistence file after a restart) is judged by its own stamp.
TEST_F(LifetimeTest, RestoredPayloadIsJudgedByItsStamp) {
  Create();
  ASSERT_EQ(Auth(sensor_, "sensor-001", "s3cret"), Verdict::kAllow);
  const std::string restored =
      R"({"title":"t","body":"b","ttl":60,"received_at":")" +
      StampString(clock_.wall - 61000) + "\"}";
  const std::string fresh =
      R"({"title":"t","body":"b","ttl":60,"received_at":")" +
      StampString(clock_.wall - 59000) + "\"}";
  auto read = [&](const std::string& p) {
    return core_->OnAclCheck(sensor_.info(), kTopic, kRead, p.data(),
                             static_cast<uint32_t>(p.size()), 1, false);
  };
  EXPECT_EQ(read(restored), Verdict::kDeny);
  EXPECT_EQ(read(fresh), Verdict::kAllow);
  clock_.Advance(1000);
  EXPECT_EQ(read(fresh), Verdict::kDeny);
  EXPECT_EQ(core_->counters().expired, 2u);
}

TEST_F(LifetimeTest, WillWithTtlZeroIsNotRetained) {
  Create();
  ASSERT_EQ(Auth(backend_, "homepot", "backend-pw"), Verdict::kAllow);
  core_->OnDisconnect(backend_.info());
  const std::string will = R"({"title":"t","body":"gone","ttl":0})";
  EXPECT_EQ(core_->OnAclCheck(backend_.info(), kTopic, kWrite, will.data(),
                              static_cast<uint32_t>(will.size()), 1, true),
            Verdict::kDeny);
  ASSERT_FALSE(broker_.publishes.empty());
  EXPECT_EQ(broker_.publishes.back().topic, kTopic);
  EXPECT_FALSE(broker_.publishes.back().retain);
}

// Bridge trust (registry.h, IsTrustedBridge): a notification published
// under an enabled device of type "bridge" that carries a stamp as the
// plugin writes it keeps that stamp and counts only as bridged.
class BridgeTrustTest : public LifetimeTest {
 protected:
  void SetUp() override {
    LifetimeTest::SetUp();
    AddDevice("hub-link", "bridge", 262144, "bridge-pw");
    AddRule("hub-link", "devices/#", kRuleRead | kRuleWrite);
  }
  // A notification stamped by another node `age_ms` ago.
  std::string Stamped(int64_t age_ms, const std::string& extra = "") {
    const std::string stamp = StampString(clock_.wall - age_ms);
    return R"({"title":"t","body":"b")" + extra + R"(,"received_at":")" +
           stamp + R"(","timestamp":")" + stamp + "\"}";
  }
  // What Mosquitto does with a PUBLISH its bridge brings in: no ACL check,
  // the MESSAGE event with the bridge's remote_username.
  Routed Forward(const std::string& body) {
    Routed r;
    r.message.topic = kTopic;
    r.message.payload = const_cast<char*>(body.data());
    r.message.payloadlen = static_cast<uint32_t>(body.size());
    r.message.qos = 1;
    r.verdict = core_->OnMessage(edge_link_.info(), &r.message);
    if (r.message.payload != body.data()) buffers_.push_back(r.message.payload);
    return r;
  }
  // The bridge context of an edge connected to this node (a device
  // session): ACL check, then MESSAGE.
  Routed PublishAsLink(const std::string& body) {
    Routed r;
    r.message.topic = kTopic;
    r.message.payload = const_cast<char*>(body.data());
    r.message.payloadlen = static_cast<uint32_t>(body.size());
    r.message.qos = 1;
    r.verdict = core_->OnAclCheck(hub_link_.info(), kTopic, kWrite, body.data(),
                                  r.message.payloadlen, 1, false);
    if (r.verdict != Verdict::kAllow) return r;
    r.verdict = core_->OnMessage(hub_link_.info(), &r.message);
    if (r.message.payload != body.data()) buffers_.push_back(r.message.payload);
    return r;
  }
  static nlohmann::json Json(const Routed& r) {
    return nlohmann::json::parse(r.payload());
  }

  Client edge_link_{"hub-link", "edge-1.hub"};  // never logs in here
  Client hub_link_{"hub-link", "hub-link"};     // logs in here
};

TEST_F(BridgeTrustTest, ForwardedNotificationKeepsItsStampAndCountsOnce) {
  Create();
  ASSERT_EQ(Auth(sensor_, "sensor-001", "s3cret"), Verdict::kAllow);
  const std::string body =
      Stamped(4000, R"(,"ttl":10,"message_id":"m-1","priority":"high")");
  Routed r = Forward(body);
  ASSERT_EQ(r.verdict, Verdict::kAllow);
  EXPECT_EQ(r.payload(), body);  // not a byte changed
  EXPECT_EQ(core_->counters().bridged, 1u);
  EXPECT_EQ(core_->counters().total_sent, 0u);
  EXPECT_EQ(core_->counters().total_success, 0u);
  EXPECT_EQ(core_->counters().qos[1], 0u);
  EXPECT_EQ(
      core_->counters().priority[static_cast<size_t>(Priority::kHigh) - 1], 0u);
  // Its copies here are deliveries like any other.
  EXPECT_EQ(Read(sensor_, r), Verdict::kAllow);
  EXPECT_EQ(core_->counters().deliveries, 1u);
  core_->OnTick();
  core_->PublishStats();
  EXPECT_EQ(source_->stats["hub-link"].published, 0u);
  EXPECT_EQ(source_->stats["sensor-001"].delivered, 1u);
  EXPECT_TRUE(source_->log.empty());  // its row is the first node's
  // Its lifetime runs from the kept stamp: 10 s from 4 s ago.
  clock_.Advance(5999);
  core_->OnTick();
  EXPECT_EQ(Read(sensor_, r), Verdict::kAllow);
  clock_.Advance(1);
  core_->OnTick();
  EXPECT_EQ(Read(sensor_, r), Verdict::kDeny);
  EXPECT_EQ(core_->counters().expired, 1u);
}

TEST_F(BridgeTrustTest, EdgePublicationKeepsItsStampWithoutAReceipt) {
  Create();
  ASSERT_EQ(Auth(hub_link_, "hub-link", "bridge-pw"), Verdict::kAllow);
  ASSERT_EQ(core_->OnAclCheck(hub_link_.info(),
                              "$SYS/homepot/receipts/hub-link", kSubscribe),
            Verdict::kAllow);
  ASSERT_EQ(Auth(sensor_, "sensor-001", "s3cret"), Verdict::kAllow);
  const std::string body = Stamped(250, R"(,"message_id":"m-2")");
  Routed r = PublishAsLink(body);
  ASSERT_EQ(r.verdict, Verdict::kAllow);
  EXPECT_EQ(r.payload(), body);
  EXPECT_EQ(Read(sensor_, r), Verdict::kAllow);
  core_->OnTick();
  core_->PublishStats();
  EXPECT_EQ(core_->counters().bridged, 1u);
  EXPECT_EQ(core_->counters().total_sent, 0u);
  EXPECT_EQ(core_->counters().receipts_sent, 0u);
  EXPECT_EQ(source_->stats["hub-link"].published, 0u);
  EXPECT_TRUE(source_->log.empty());
}

TEST_F(BridgeTrustTest, WithoutAStampAsWrittenABridgeIsStampedAndCounted) {
  Create();
  const std::string now = StampString(clock_.wall);
  for (
      const std::string& body : {
          std::string(R"({"title":"t","body":"b"})"),
          std::string(R"({"title":"t","body":"b","received_at":"x"})"),
          std::string(
              R"({"title":"t","body":"b","received_at":"2026-11-18T00:00:00Z"})"),
      }) {
    Routed r = Forward(body);
    ASSERT_EQ(r.verdict, Verdict::kAllow) << body;
    EXPECT_EQ(Json(r)["received_at"], now) << body;
  }
  EXPECT_EQ(core_->counters().bridged, 0u);
  EXPECT_EQ(core_->counters().total_sent, 3u);
  core_->PublishStats();
  EXPECT_EQ(source_->stats["hub-link"].published, 3u);
  // An invalid one is refused as any other.
  EXPECT_EQ(Forward(R"({"title":"t","received_at":")" + now + "\"}").verdict,
            Verdict::kDeny);
  EXPECT_EQ(core_->counters().total_failed, 1u);
}

// A bridge's context gets MESSAGE events without ACL checks: each payload
// is validated, even one at the address and of the length of the last.
TEST_F(BridgeTrustTest, EveryForwardedPayloadIsValidated) {
  Create();
  std::string body = Stamped(1000);
  ASSERT_EQ(Forward(body).verdict, Verdict::kAllow);
  body.replace(body.find("\"title\""), 7, "\"titel\"");
  EXPECT_EQ(Forward(body).verdict, Verdict::kDeny);
  EXPECT_EQ(core_->counters().bridged, 1u);
  EXPECT_EQ(core_->counters().total_failed, 1u);
}

TEST_F(BridgeTrustTest, OnlyAnEnabledBridgeDeviceIsTrusted) {
  Create();
  const std::string now = StampString(clock_.wall);
  const std::string body = Stamped(60000);
  // An ordinary device's stamp is overwritten.
  ASSERT_EQ(Auth(backend_, "homepot", "backend-pw"), Verdict::kAllow);
  Routed ordinary = Route(body);
  ASSERT_EQ(ordinary.verdict, Verdict::kAllow);
  EXPECT_EQ(Json(ordinary)["received_at"], now);
  // Another type: not trusted, from the next event after the change.
  Registered("hub-link").type = "gateway";
  PushRegistry();
  EXPECT_EQ(Json(Forward(body))["received_at"], now);
  // Disabled: not trusted.
  Registered("hub-link").type = "bridge";
  Registered("hub-link").enabled = false;
  PushRegistry();
  EXPECT_EQ(Json(Forward(body))["received_at"], now);
  // Removed: not trusted.
  RemoveDevice("hub-link");
  PushRegistry();
  EXPECT_EQ(Json(Forward(body))["received_at"], now);
  EXPECT_EQ(core_->counters().bridged, 0u);
  EXPECT_EQ(core_->counters().total_sent, 4u);
  // Enabled again: trusted again.
  AddDevice("hub-link", "bridge", 262144, "bridge-pw");
  PushRegistry();
  EXPECT_EQ(Forward(body).payload(), body);
  EXPECT_EQ(core_->counters().bridged, 1u);
}

// Receipts, acknowledgements, reachability and the delivery log events.
class DeliveryTruthTest : public LifetimeTest {
 protected:
  static constexpr const char* kReceipts = "$SYS/homepot/receipts/homepot";
  static constexpr const char* kAcks = "devices/sensor-001/acks";

  void LogIn() {
    Create();
    ASSERT_EQ(Auth(backend_, "homepot", "backend-pw"), Verdict::kAllow);
    ASSERT_EQ(Auth(sensor_, "sensor-001", "s3cret"), Verdict::kAllow);
    ASSERT_EQ(core_->OnAclCheck(backend_.info(), kReceipts, kSubscribe),
              Verdict::kAllow);
  }
  // The receipts published so far, parsed.
  std::vector<nlohmann::json> Receipts() const {
    std::vector<nlohmann::json> out;
    for (const auto& p : broker_.publishes) {
      if (p.topic == kReceipts) out.push_back(nlohmann::json::parse(p.payload));
    }
    return out;
  }
  // The sensor's own write and MESSAGE on `topic`.
  Verdict SensorPublishes(const std::string& topic, const std::string& body) {
    Verdict v = core_->OnAclCheck(sensor_.info(), topic, kWrite, body.data(),
                                  static_cast<uint32_t>(body.size()), 1, false);
    if (v != Verdict::kAllow) return v;
    Message m;
    m.topic = topic.c_str();
    m.payload = const_cast<char*>(body.data());
    m.payloadlen = static_cast<uint32_t>(body.size());
    m.qos = 1;
    return core_->OnMessage(sensor_.info(), &m);
  }
};

TEST_F(DeliveryTruthTest, ReceiptCountsRoutedAndQueuedCopies) {
  LogIn();
  Client offline("sensor-001", "s-old");  // a closed session's queue
  Routed r = Route(R"({"title":"t","body":"b","ttl":60,"message_id":"m-1"})");
  ASSERT_EQ(r.verdict, Verdict::kAllow);
  EXPECT_EQ(Read(sensor_, r), Verdict::kAllow);
  EXPECT_EQ(Read(offline, r), Verdict::kAllow);
  EXPECT_TRUE(Receipts().empty());  // still routing
  core_->OnTick();
  std::vector<nlohmann::json> receipts = Receipts();
  ASSERT_EQ(receipts.size(), 1u);
  const nlohmann::json& j = receipts[0];
  EXPECT_EQ(j["message_id"], "m-1");
  EXPECT_EQ(j["topic"], kTopic);
  EXPECT_EQ(j["received_at"], StampString(clock_.wall));
  EXPECT_EQ(j["routed"], 1);
  EXPECT_EQ(j["queued"], 1);
  EXPECT_EQ(j["expires_at"], StampString(clock_.wall + 60000));
  EXPECT_EQ(core_->counters().receipts_sent, 1u);
  // Nobody could receive the next one: the receipt says so at once.
  ASSERT_EQ(Route(R"({"title":"t","body":"b","message_id":"m-2"})").verdict,
            Verdict::kAllow);
  core_->OnTick();
  receipts = Receipts();
  ASSERT_EQ(receipts.size(), 2u);
  EXPECT_EQ(receipts[1]["routed"], 0);
  EXPECT_EQ(receipts[1]["queued"], 0);
  EXPECT_TRUE(receipts[1]["expires_at"].is_null());
  // The log has one row per notification with a message_id.
  core_->PublishStats();
  ASSERT_EQ(source_->log.size(), 2u);
  EXPECT_EQ(source_->log[0].kind, DeliveryEvent::Kind::kAccepted);
  EXPECT_EQ(source_->log[0].message_id, "m-1");
  EXPECT_EQ(source_->log[0].publisher, "homepot");
  EXPECT_EQ(source_->log[0].target_device, "sensor-001");
  EXPECT_EQ(source_->log[0].routed, 1u);
  EXPECT_EQ(source_->log[0].queued, 1u);
  EXPECT_EQ(source_->log[0].expires_ms, clock_.wall + 60000);
  EXPECT_EQ(source_->log[1].routed + source_->log[1].queued, 0u);
}

TEST_F(DeliveryTruthTest, NoReceiptForAPublisherNotReadingThem) {
  LogIn();
  ASSERT_EQ(core_->OnAclCheck(backend_.info(), kReceipts, kUnsubscribe),
            Verdict::kAllow);
  Routed r = Route(R"({"title":"t","body":"b","message_id":"m-1"})");
  EXPECT_EQ(Read(sensor_, r), Verdict::kAllow);
  core_->OnTick();
  EXPECT_TRUE(Receipts().empty());
  EXPECT_EQ(core_->counters().receipts_sent, 0u);
  core_->PublishStats();
  EXPECT_EQ(source_->log.size(), 1u);  // still logged
}

TEST_F(DeliveryTruthTest, ReceiptsFalseTurnsThemOff) {
  config_.receipts = false;
  config_.log_retention_rows = 0;
  LogIn();
  Routed r = Route(R"({"title":"t","body":"b","message_id":"m-1"})");
  EXPECT_EQ(Read(sensor_, r), Verdict::kAllow);
  core_->OnTick();
  EXPECT_TRUE(Receipts().empty());
  core_->PublishStats();
  EXPECT_TRUE(source_->log.empty());  // log_retention_rows 0: no log
}

TEST_F(DeliveryTruthTest, AckOfWhatTheDeviceWasSent) {
  LogIn();
  Routed r = Route(R"({"title":"t","body":"b","message_id":"m-1"})");
  EXPECT_EQ(Read(sensor_, r), Verdict::kAllow);
  clock_.Advance(250);
  EXPECT_EQ(SensorPublishes(kAcks, R"({"message_id":"m-1"})"), Verdict::kAllow);
  std::vector<nlohmann::json> receipts = Receipts();
  ASSERT_EQ(receipts.size(), 2u);
  EXPECT_EQ(receipts[1]["message_id"], "m-1");
  EXPECT_EQ(receipts[1]["device"], "sensor-001");
  EXPECT_EQ(receipts[1]["status"], "received");
  EXPECT_EQ(receipts[1]["acked_at"], StampString(clock_.wall));
  EXPECT_EQ(receipts[1]["latency_ms"], 250);
  EXPECT_EQ(core_->counters().acks_matched, 1u);
  // Unknown ids, junk and another device's topic are not matched.
  EXPECT_EQ(SensorPublishes(kAcks, R"({"message_id":"m-9"})"), Verdict::kAllow);
  EXPECT_EQ(SensorPublishes(kAcks, "junk"), Verdict::kAllow);
  EXPECT_EQ(SensorPublishes("devices/homepot/acks", R"({"message_id":"m-1"})"),
            Verdict::kDeny);
  EXPECT_EQ(core_->counters().acks_unmatched, 2u);
  EXPECT_EQ(core_->counters().acks_matched, 1u);
  core_->PublishStats();
  EXPECT_EQ(source_->stats["sensor-001"].acked, 1u);
  ASSERT_EQ(source_->log.size(), 2u);
  const DeliveryEvent& acked = source_->log[1];
  EXPECT_EQ(acked.kind, DeliveryEvent::Kind::kAcked);
  EXPECT_EQ(acked.device, "sensor-001");
  EXPECT_EQ(acked.publisher, "homepot");
  EXPECT_EQ(acked.latency_ms, 250);
}

TEST_F(DeliveryTruthTest, ExpiredQueuedCopyIsLogged) {
  LogIn();
  Client offline("sensor-001", "s-old");
  Routed r = Route(R"({"title":"t","body":"b","ttl":1,"message_id":"m-1"})");
  EXPECT_EQ(Read(offline, r), Verdict::kAllow);
  clock_.Advance(1000);
  core_->OnTick();
  EXPECT_EQ(Read(offline, r), Verdict::kDeny);
  core_->PublishStats();
  ASSERT_EQ(source_->log.size(), 2u);
  EXPECT_EQ(source_->log[0].queued, 1u);
  EXPECT_EQ(source_->log[1].kind, DeliveryEvent::Kind::kExpired);
  EXPECT_EQ(source_->log[1].device, "sensor-001");
}

TEST_F(DeliveryTruthTest, RejectedNotificationIsLoggedWithItsReason) {
  LogIn();
  Routed r = Route(R"({"title":"t","message_id":"m-bad"})");
  EXPECT_EQ(r.verdict, Verdict::kDeny);
  core_->PublishStats();
  ASSERT_EQ(source_->log.size(), 1u);
  EXPECT_EQ(source_->log[0].kind, DeliveryEvent::Kind::kRejected);
  EXPECT_EQ(source_->log[0].reason, "missing_field");
  EXPECT_EQ(source_->log[0].publisher, "homepot");
}

TEST_F(DeliveryTruthTest, ReachabilityFollowsSubscriptions) {
  LogIn();
  auto gauges = [&] {
    core_->PublishStats();
    return std::make_pair(core_->counters().reachable,
                          core_->counters().connected_not_subscribed);
  };
  EXPECT_EQ(gauges(), std::make_pair(int64_t{0}, int64_t{2}));
  ASSERT_EQ(core_->OnAclCheck(sensor_.info(), kTopic, kSubscribe),
            Verdict::kAllow);
  EXPECT_EQ(gauges(), std::make_pair(int64_t{1}, int64_t{1}));
  EXPECT_EQ(source_->stats["sensor-001"].sessions, 1);
  EXPECT_EQ(source_->stats["sensor-001"].subscribed, 1);
  // A clean session's subscriptions end with it.
  core_->OnDisconnect(sensor_.info(), /*may_persist=*/false);
  EXPECT_EQ(gauges(), std::make_pair(int64_t{0}, int64_t{1}));
  EXPECT_EQ(source_->stats["sensor-001"].sessions, 0);
  Client durable("sensor-001", "s-1");
  ASSERT_EQ(core_->OnBasicAuth(durable.info(), "sensor-001", "s3cret",
                               /*clean_start=*/false),
            Verdict::kAllow);
  EXPECT_EQ(gauges(), std::make_pair(int64_t{0}, int64_t{2}));
  // A session that may persist keeps its subscription across reconnects,
  // even when Mosquitto reports it as clean at its DISCONNECT (a takeover).
  ASSERT_EQ(core_->OnAclCheck(durable.info(), kTopic, kSubscribe),
            Verdict::kAllow);
  core_->OnDisconnect(durable.info(), /*may_persist=*/false);
  EXPECT_EQ(gauges(), std::make_pair(int64_t{0}, int64_t{1}));
  Client back("sensor-001", "s-1");
  ASSERT_EQ(core_->OnBasicAuth(back.info(), "sensor-001", "s3cret",
                               /*clean_start=*/false),
            Verdict::kAllow);
  EXPECT_EQ(gauges(), std::make_pair(int64_t{1}, int64_t{1}));
  ASSERT_EQ(core_->OnAclCheck(back.info(), kTopic, kUnsubscribe),
            Verdict::kAllow);
  EXPECT_EQ(gauges(), std::make_pair(int64_t{0}, int64_t{2}));
  // A clean start forgets what an earlier session of the id held.
  ASSERT_EQ(core_->OnAclCheck(back.info(), kTopic, kSubscribe),
            Verdict::kAllow);
  core_->OnDisconnect(back.info(), /*may_persist=*/true);
  Client fresh("sensor-001", "s-1");
  ASSERT_EQ(core_->OnBasicAuth(fresh.info(), "sensor-001", "s3cret",
                               /*clean_start=*/true),
            Verdict::kAllow);
  EXPECT_EQ(gauges(), std::make_pair(int64_t{0}, int64_t{2}));
  EXPECT_EQ(source_->stats["sensor-001"].subscribed, 0);
}

}  // namespace
}  // namespace homepot

namespace homepot {
namespace {

// check_retain_source re-checks the source of a retained message on a
// stand-in context: answered from the ACL alone, never taken for a will.
TEST_F(HomepotTest, RetainSourceCheckIsOnlyAnAclQuestion) {
  Create();
  Client source("homepot", "b-1");
  broker_.retain_checks.insert(source.info().handle);
  const std::string body = test::kNotification;
  EXPECT_EQ(core_->OnAclCheck(source.info(), "devices/sensor-001/notifications",
                              kWrite, body.data(),
                              static_cast<uint32_t>(body.size()), 1, true),
            Verdict::kAllow);
  EXPECT_TRUE(broker_.publishes.empty());
  EXPECT_EQ(core_->counters().total_sent, 0u);
  Client other("sensor-001", "s-1");
  broker_.retain_checks.insert(other.info().handle);
  EXPECT_EQ(core_->OnAclCheck(other.info(), "devices/sensor-001/notifications",
                              kWrite, body.data(),
                              static_cast<uint32_t>(body.size()), 1, true),
            Verdict::kDeny);
}

}  // namespace
}  // namespace homepot

namespace homepot {
namespace {

// A session whose client id a newer session of the same device takes has its
// will checked at once (Mosquitto's takeover): that check is a will. Any
// later write of it is an ordinary publish.
TEST_F(HomepotTest, TakenOverSessionIsAWillOnlyDuringTheTakeover) {
  Create();
  Client old_session("homepot", "b-1");
  Client new_session("homepot", "b-1");
  ASSERT_EQ(Auth(old_session, "homepot", "backend-pw"), Verdict::kAllow);
  const std::string body = test::kNotification;
  const std::string topic = "devices/sensor-001/notifications";
  auto write = [&](const Client& c) {
    return core_->OnAclCheck(c.info(), topic, kWrite, body.data(),
                             static_cast<uint32_t>(body.size()), 1, false);
  };
  ASSERT_EQ(Auth(new_session, "homepot", "backend-pw"), Verdict::kAllow);
  EXPECT_EQ(write(old_session), Verdict::kDeny);  // its will, as a copy
  EXPECT_EQ(broker_.publishes.size(), 1u);
  core_->OnTick();
  EXPECT_EQ(write(old_session), Verdict::kAllow);  // not a will any more
  EXPECT_EQ(broker_.publishes.size(), 1u);
}

}  // namespace
}  // namespace homepot

namespace homepot {
namespace {

// SIGHUP: Mosquitto runs BASIC_AUTH again for every session right after the
// RELOAD event. Those calls change nothing: no counts, no new sessions, no
// claims, no lockout, and valid sessions stay.
TEST_F(HomepotTest, SighupRecheckChangesNothing) {
  Create();
  Client sensor("sensor-001", "s-1");
  ASSERT_EQ(Auth(sensor, "sensor-001", "s3cret"), Verdict::kAllow);
  core_->OnTick();
  // Someone tries wrong passwords until sensor-001 is locked out.
  Client attacker("sensor-001", "a-1");
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(Auth(attacker, "sensor-001", "wrong"), Verdict::kDeny);
  }
  const uint64_t logins = core_->counters().connection_count;
  core_->OnReload();
  EXPECT_EQ(Auth(sensor, "sensor-001", "s3cret"), Verdict::kAllow);
  Client offline("homepot", "b-9");  // an offline session: untracked
  EXPECT_EQ(Auth(offline, "homepot", "guess"), Verdict::kDeny);
  EXPECT_EQ(Auth(offline, "homepot", "backend-pw"), Verdict::kAllow);
  Client gone("off-1", "o-9");
  EXPECT_EQ(Auth(gone, "off-1", "off-pw"), Verdict::kDeny);
  core_->OnTick();  // the pass is over
  EXPECT_EQ(core_->counters().connection_count, logins);
  EXPECT_EQ(core_->counters().connected, 1u);
  EXPECT_TRUE(broker_.kicked_ids.empty());
  EXPECT_TRUE(broker_.kicks.empty());
  // After the pass, an untracked handle is a login again: password checked.
  EXPECT_EQ(Auth(offline, "homepot", "stale-or-not"), Verdict::kDeny);
}

// A revocation of many devices is applied in batches, one per event.
TEST_F(HomepotTest, MassRevocationIsAppliedInBoundedBatches) {
  const int n = 10000;
  const PasswordHash x = Hash("x");
  for (int i = 0; i < n; ++i) {
    AddDevice("bulk-" + std::to_string(i), "unknown", 10240, x);
  }
  Create();
  Client first("bulk-0", "k-0");
  ASSERT_EQ(Auth(first, "bulk-0", "x"), Verdict::kAllow);
  for (Device& d : devices_) {
    if (d.id.rfind("bulk-", 0) == 0) d.enabled = false;
  }
  core_->OnReload();
  ASSERT_EQ(broker_.LogsContaining("10000 revoked"), 1);
  // Each event applies at most a batch; a few TICKs finish the job.
  for (int i = 0; i < 5; ++i) core_->OnTick();
  EXPECT_EQ(broker_.kicked_ids, std::vector<std::string>{"k-0"});
  EXPECT_TRUE(broker_.kicks.empty()) << "no untracked sessions to look for";
}

// The will of a session that was revoked when it closed is refused.
TEST_F(HomepotTest, RevokedSessionsWillIsRefused) {
  Create();
  Client backend("homepot", "b-1");
  ASSERT_EQ(Auth(backend, "homepot", "backend-pw"), Verdict::kAllow);
  Registered("homepot").password = Hash("n3w");
  core_->OnReload();
  ASSERT_EQ(broker_.LogsContaining("registry reloaded"), 1);
  core_->OnDisconnect(backend.info());
  const std::string will = test::kNotification;
  EXPECT_EQ(core_->OnAclCheck(
                backend.info(), "devices/sensor-001/notifications", kWrite,
                will.data(), static_cast<uint32_t>(will.size()), 1, false),
            Verdict::kDeny);
  EXPECT_TRUE(broker_.publishes.empty());
}

}  // namespace
}  // namespace homepot

namespace homepot {
namespace {

// A deferred login was judged by another mechanism: if a device of the same
// name is added later, that session does not gain the device's rights.
TEST_F(HomepotTest, DeferredSessionNeverBecomesADevice) {
  config_.defer_unknown = true;
  Create();
  Client ghost("ghost", "g-1");
  ASSERT_EQ(Auth(ghost, "ghost", "whatever"), Verdict::kDefer);
  AddDevice("ghost", "unknown", 10240, "pw");
  AddRule("ghost", "ghost/#", kRuleRead);
  core_->OnReload();
  ASSERT_NE(core_->snapshot().Find("ghost"), nullptr);
  core_->OnTick();
  EXPECT_EQ(Acl(ghost, "ghost/x", kSubscribe), Verdict::kDefer);
}

}  // namespace
}  // namespace homepot

namespace homepot {
namespace {

// Without TICK (per_listener_settings true) nothing marks the end of the
// re-check pass: only a handle that closed under that very username passes
// for an offline session, and a pause ends the pass. Anything else is a
// login, password checked.
TEST_F(HomepotTest, SighupRecheckWithoutTickNeverSkipsAPasswordCheck) {
  Create();
  Client sensor("sensor-001", "s-1");
  ASSERT_EQ(Auth(sensor, "sensor-001", "s3cret"), Verdict::kAllow);
  Client durable("homepot", "b-1");
  ASSERT_EQ(Auth(durable, "homepot", "backend-pw"), Verdict::kAllow);
  core_->OnDisconnect(durable.info(), /*may_persist=*/true);
  core_->OnReload();
  // Without TICK an untracked handle is taken as a login: its password and
  // client id are checked (failures are not counted toward the lockout, as
  // it may be an offline session re-checked with an old password).
  EXPECT_EQ(Auth(durable, "homepot", "guess"), Verdict::kDeny);
  EXPECT_EQ(Auth(durable, "homepot", "backend-pw"), Verdict::kAllow);
  Client thief("homepot", "s-1");
  EXPECT_EQ(Auth(thief, "homepot", "backend-pw"), Verdict::kDeny);
  // A tracked session's re-check verifies its password too.
  EXPECT_EQ(Auth(sensor, "sensor-001", "wrong"), Verdict::kDeny);
  for (int i = 0; i < 5; ++i) Auth(durable, "homepot", "guess");
  Client later("homepot", "b-2");
  EXPECT_EQ(Auth(later, "homepot", "backend-pw"), Verdict::kAllow)
      << "failures inside the window do not lock the device out";
}

}  // namespace
}  // namespace homepot

namespace homepot {
namespace {

// A login that reuses the client id of a connected session, right after a
// SIGHUP: a re-checked context cannot share its id with another, so it is a
// login (tracked, claims checked), and the old session's kick spares it.
TEST_F(HomepotTest, LoginDuringTheRecheckWindowWithAHeldIdIsALogin) {
  Create();
  Client old_session("sensor-001", "s-1");
  ASSERT_EQ(Auth(old_session, "sensor-001", "s3cret"), Verdict::kAllow);
  const uint64_t logins = core_->counters().connection_count;
  core_->OnReload();
  Client new_session("sensor-001", "s-1");
  ASSERT_EQ(Auth(new_session, "sensor-001", "s3cret"), Verdict::kAllow);
  EXPECT_EQ(core_->counters().connection_count, logins + 1);
}

}  // namespace
}  // namespace homepot
