#include "homepot.h"

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <stdlib.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "credentials.h"
#include "stats.h"

namespace homepot {
namespace {

using std::chrono::milliseconds;
using std::chrono::steady_clock;

constexpr auto kPatience = milliseconds(5000);

// Mosquitto's MOSQ_ACL_* values.
constexpr int kRead = 1;
constexpr int kWrite = 2;
constexpr int kSubscribe = 4;
constexpr int kUnsubscribe = 8;

constexpr char kValidNotification[] = R"({"title":"Hi","body":"There"})";

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

std::string SchemaText() {
  std::ifstream in(HOMEPOT_SCHEMA_SQL);
  EXPECT_TRUE(in.is_open()) << HOMEPOT_SCHEMA_SQL;
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string EncodedHash(const std::string& password) {
  Result<PasswordHash> h = HashPassword(password, 10);
  EXPECT_TRUE(h.ok());
  return EncodePasswordHash(*h);
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
    char tmpl[] = "/tmp/homepot-core-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    path_ = dir_ + "/registry.db";
    Exec(SchemaText());
    Exec(
        "INSERT INTO devices (device_id, device_type, password_hash) VALUES "
        "('sensor-001', 'iot_sensor', '" +
        EncodedHash("s3cret") +
        "'), "
        "('homepot', 'backend', '" +
        EncodedHash("backend-pw") + "')");
    Exec(
        "INSERT INTO devices (device_id, password_hash, enabled) VALUES "
        "('off-1', '" +
        EncodedHash("off-pw") + "', 0)");
    Exec(
        "INSERT INTO acl_rules (device_id, topic_filter, access) VALUES "
        "('homepot', 'devices/+/notifications', 'write'), "
        "('homepot', 'backend/status', 'readwrite')");

    config_.db_path = path_;
    config_.reload_interval_ms = 50;
    config_.stats_interval_s = 0;  // no stats publications in these tests
    config_.auth_max_failures = 3;
    config_.auth_lockout_seconds = 60;
  }
  void TearDown() override {
    core_.reset();
    std::string cmd = "rm -rf '" + dir_ + "'";
    ASSERT_EQ(std::system(cmd.c_str()), 0);
  }

  // Changes the registry through its own connection, as an admin would.
  void Exec(const std::string& sql) {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(path_.c_str(), &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    char* err = nullptr;
    int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err);
    EXPECT_EQ(rc, SQLITE_OK) << sql << ": " << (err ? err : "");
    sqlite3_free(err);
    sqlite3_close(db);
  }

  void Create() {
    auto r = Homepot::Create(config_, &broker_, &clock_);
    ASSERT_TRUE(r.ok()) << r.status().message();
    core_ = std::move(*r);
  }

  // Calls `poke` (which should drive the core) until `done` holds.
  bool Eventually(const std::function<void()>& poke,
                  const std::function<bool()>& done) {
    auto deadline = steady_clock::now() + kPatience;
    while (steady_clock::now() < deadline) {
      poke();
      if (done()) return true;
      std::this_thread::sleep_for(milliseconds(10));
    }
    return false;
  }

  // Sets sensor-001's password to "n3w" and lets the core take the new
  // snapshot in through events that kick nothing: RELOAD, then a delivery to
  // `old_session` (which ends Mosquitto's re-check pass after RELOAD).
  bool ChangeSensorPasswordQuietly(const Client& old_session) {
    Exec("UPDATE devices SET password_hash = '" + EncodedHash("n3w") +
         "' WHERE device_id = 'sensor-001'");
    if (!Eventually(
            [&] { core_->OnReload(); },
            [&] { return broker_.LogsContaining("registry reloaded") == 1; })) {
      return false;
    }
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

  std::string dir_;
  std::string path_;
  Config config_;
  FakeBroker broker_;
  FakeClock clock_;
  std::unique_ptr<Homepot> core_;
};

TEST_F(HomepotTest, CreateFailsNamingTheMissingFile) {
  config_.db_path = dir_ + "/nope.db";
  auto r = Homepot::Create(config_, &broker_, &clock_);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(),
            "registry file " + dir_ + "/nope.db does not exist");
}

TEST_F(HomepotTest, CreateFailsOnAFileWithoutTheSchema) {
  config_.db_path = dir_ + "/empty.db";
  { std::ofstream out(config_.db_path); }
  auto r = Homepot::Create(config_, &broker_, &clock_);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find(config_.db_path), std::string::npos)
      << r.status().message();
}

TEST_F(HomepotTest, CreateLoadsAndLogsTheRegistry) {
  Create();
  EXPECT_EQ(core_->snapshot().devices().size(), 3u);
  EXPECT_EQ(core_->snapshot().rule_count(), 2u);
  EXPECT_EQ(broker_.LogsContaining("registry " + path_ +
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
      Publish(sensor, "devices/sensor-001/notifications", kValidNotification),
      Verdict::kDeny);
  EXPECT_EQ(Acl(sensor, "devices/sensor-002/notifications", kRead),
            Verdict::kDeny);
  EXPECT_EQ(Acl(sensor, "devices/#", kSubscribe), Verdict::kDeny);
  EXPECT_EQ(Acl(sensor, "$SYS/homepot/stats", kRead), Verdict::kDeny);

  Client backend("homepot", "b-1");
  EXPECT_EQ(
      Publish(backend, "devices/sensor-001/notifications", kValidNotification),
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
  Exec("UPDATE devices SET enabled = 0 WHERE device_id = 'sensor-001'");
  // Its session logged in through us: ended by its client id.
  ASSERT_TRUE(Eventually([&] { core_->OnTick(); },
                         [&] { return broker_.KickedId("s-1"); }));
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
  Exec(
      "INSERT INTO acl_rules (device_id, topic_filter, access) VALUES "
      "('sensor-001', 'devices/sensor-001/#', 'read')");
  Verdict v = Verdict::kDeny;
  ASSERT_TRUE(
      Eventually([&] { v = Acl(sensor, "devices/sensor-001/+", kSubscribe); },
                 [&] { return v == Verdict::kAllow; }));
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
  Exec("UPDATE devices SET password_hash = '" + EncodedHash("n3w") +
       "' WHERE device_id = 'sensor-001'");
  ASSERT_TRUE(Eventually([&] { core_->OnTick(); },
                         [&] { return broker_.KickedId("s-1"); }));
  EXPECT_EQ(broker_.kicked_ids, std::vector<std::string>{"s-1"});
  EXPECT_EQ(Auth(sensor, "sensor-001", "s3cret"), Verdict::kDeny);
  EXPECT_EQ(Auth(sensor, "sensor-001", "n3w"), Verdict::kAllow);
}

TEST_F(HomepotTest, RemovingADeviceKicksIt) {
  Create();
  Client backend("homepot", "b-1");
  ASSERT_EQ(Auth(backend, "homepot", "backend-pw"), Verdict::kAllow);
  Exec("DELETE FROM devices WHERE device_id = 'homepot'");
  ASSERT_TRUE(Eventually([&] { core_->OnTick(); },
                         [&] { return broker_.KickedId("b-1"); }));
  EXPECT_EQ(broker_.kicked_ids, std::vector<std::string>{"b-1"});
  EXPECT_EQ(core_->snapshot().Find("homepot"), nullptr);
  core_->OnDisconnect(backend.info());
  EXPECT_EQ(Auth(backend, "homepot", "backend-pw"), Verdict::kDeny);
  EXPECT_EQ(Publish(backend, "backend/status", "x"), Verdict::kDeny);
}

TEST_F(HomepotTest, OnReloadReloadsWithoutWaitingForTheInterval) {
  config_.reload_interval_ms = 3600000;
  Create();
  // A TLS identity session of the device that acted: untracked sessions
  // exist, so the device is also ended by name.
  Client tls("homepot", "t-1");
  ASSERT_EQ(Acl(tls, "backend/status", kSubscribe), Verdict::kAllow);
  core_->OnDisconnect(tls.info());
  Exec("UPDATE devices SET enabled = 0 WHERE device_id = 'homepot'");
  std::this_thread::sleep_for(milliseconds(200));
  core_->OnTick();
  EXPECT_TRUE(broker_.kicks.empty()) << "no reload before the interval";
  core_->OnReload();
  ASSERT_TRUE(Eventually([&] { core_->OnTick(); },
                         [&] { return broker_.Kicked("homepot"); }));
  EXPECT_EQ(broker_.LogsContaining("registry reloaded", LogLevel::kNotice), 1);
}

TEST_F(HomepotTest, RegistryErrorsAreLoggedAndTheLastGoodRegistryStays) {
  Create();
  for (const char* suffix : {"", "-wal", "-shm"}) {
    std::remove((path_ + suffix).c_str());
  }
  ASSERT_TRUE(Eventually([&] { core_->OnTick(); },
                         [&] {
                           return broker_.LogsContaining(
                                      "missing", LogLevel::kWarning) > 0;
                         }));
  // Many more polls: still one line.
  auto until = steady_clock::now() + milliseconds(500);
  while (steady_clock::now() < until) {
    core_->OnTick();
    std::this_thread::sleep_for(milliseconds(10));
  }
  EXPECT_EQ(broker_.LogsContaining("missing"), 1);
  EXPECT_TRUE(broker_.kicks.empty());
  EXPECT_EQ(core_->snapshot().devices().size(), 3u);
  Client sensor("sensor-001", "s-1");
  EXPECT_EQ(Auth(sensor, "sensor-001", "s3cret"), Verdict::kAllow);
  EXPECT_EQ(Acl(sensor, "devices/sensor-001/notifications", kRead),
            Verdict::kAllow);
}

TEST_F(HomepotTest, LoadWarningsAreForwardedToTheBrokerLog) {
  Exec(
      "INSERT INTO acl_rules (device_id, topic_filter, access) VALUES "
      "('sensor-001', 'a/#/b', 'read')");
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
  Exec("UPDATE devices SET enabled = 0 WHERE device_id = 'sensor-001'");
  // Wait for the new snapshot through the sensor's own events only.
  ASSERT_TRUE(Eventually(
      [&] { Acl(sensor, "devices/sensor-001/notifications", kRead); },
      [&] { return !core_->snapshot().Find("sensor-001")->enabled; }));
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
    core_->PublishStats();  // hands the deltas to the registry thread
    std::string value;
    Eventually(
        [&] { core_->OnTick(); },
        [&] {
          sqlite3* db = nullptr;
          sqlite3_open(path_.c_str(), &db);
          sqlite3_stmt* st = nullptr;
          sqlite3_prepare_v2(db,
                             "SELECT last_delivery FROM device_stats "
                             "WHERE device_id = 'sensor-001'",
                             -1, &st, nullptr);
          if (st && sqlite3_step(st) == SQLITE_ROW &&
              sqlite3_column_text(st, 0)) {
            value = reinterpret_cast<const char*>(sqlite3_column_text(st, 0));
          }
          sqlite3_finalize(st);
          sqlite3_close(db);
          return !value.empty();
        });
    return value;
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
// kicked (the crash of issue "dangling records"): the old session is ended,
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
  for (size_t i = 0; i <= Homepot::kMaxClaimsPerDevice; ++i) {
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
  const std::string body = kValidNotification;
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
  const std::string body = kValidNotification;
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
  const std::string body = kValidNotification;
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
  std::string sql = "INSERT INTO devices (device_id, password_hash) VALUES ";
  const int n = 10000;
  for (int i = 0; i < n; ++i) {
    sql += (i ? ",('" : "('") + std::string("bulk-") + std::to_string(i) +
           "', '" + EncodedHash("x") + "')";
  }
  Exec(sql);
  Create();
  Client first("bulk-0", "k-0");
  ASSERT_EQ(Auth(first, "bulk-0", "x"), Verdict::kAllow);
  Exec("UPDATE devices SET enabled = 0 WHERE device_id LIKE 'bulk-%'");
  ASSERT_TRUE(
      Eventually([&] { core_->OnReload(); },
                 [&] { return broker_.LogsContaining("10000 revoked") == 1; }));
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
  Exec("UPDATE devices SET password_hash = '" + EncodedHash("n3w") +
       "' WHERE device_id = 'homepot'");
  ASSERT_TRUE(Eventually(
      [&] { core_->OnReload(); },
      [&] { return broker_.LogsContaining("registry reloaded") == 1; }));
  core_->OnDisconnect(backend.info());
  const std::string will = kValidNotification;
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
  Exec("INSERT INTO devices (device_id, password_hash) VALUES ('ghost', '" +
       EncodedHash("pw") + "')");
  Exec(
      "INSERT INTO acl_rules (device_id, topic_filter, access) VALUES "
      "('ghost', 'ghost/#', 'read')");
  ASSERT_TRUE(
      Eventually([&] { core_->OnReload(); },
                 [&] { return core_->snapshot().Find("ghost") != nullptr; }));
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
