// Hostile clients and admin churn against the real broker (docs/operating.md,
// "Trust limits" and "Reload and kicks"):
//
//   sessions    a device logging in with its new password right after the
//               change: the broker survives, the old session ends, the new
//               one is not kicked (per_listener_settings false and true);
//   sizes       overlong usernames and passwords are refused, and a flood of
//               64 KiB usernames does not grow the broker;
//   hash cost   hashes above the maximum iteration count can be neither
//               provisioned, imported nor used to log in;
//   wills       a will on a notification topic is stamped by the broker;
//   client ids  one device cannot take over another device's client id, live
//               or durable;
//   $ and %c    client ids starting with '$' or naming another device are
//               refused, so %c cannot reach $SYS or another device's subtree;
//   removal     `device remove` resets the statistics for good;
//   offline     QoS 0 copies dropped for an offline session are not counted.
//
// Login timing is measured by scripts/bench --hardening, not asserted here.
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "credentials.h"
#include "harness.h"

namespace homepot {
namespace integration {
namespace {

using nlohmann::json;

const std::string kSensorToken = "devices/sensor-001/notifications";
// A non-notification topic the backend may write: its publishes are broker
// events (ACL checks) that carry no notification.
const std::string kPaceTopic = "pace/tick";

int NotAuthorized(int protocol) {
  return protocol == kMqtt5 ? kReasonNotAuthorized : kConnackNotAuthorized311;
}

const char* ProtocolName(int protocol) {
  return protocol == kMqtt5 ? "MQTT 5" : "MQTT 3.1.1";
}

std::string Valid(const std::string& title) {
  return json{{"title", title}, {"body", "b"}}.dump();
}

// A $7$ hash computed with OpenSSL directly, in mosquitto_passwd's format,
// so that any iteration count can be written whatever the tools accept.
std::string Pbkdf2Hash(const std::string& password, int iterations) {
  std::array<uint8_t, kSaltLen> salt{};
  std::array<uint8_t, kHashLen> out{};
  if (RAND_bytes(salt.data(), static_cast<int>(salt.size())) != 1 ||
      PKCS5_PBKDF2_HMAC(password.data(), static_cast<int>(password.size()),
                        salt.data(), static_cast<int>(salt.size()), iterations,
                        EVP_sha512(), static_cast<int>(out.size()),
                        out.data()) != 1) {
    ADD_FAILURE() << "OpenSSL PBKDF2 failed";
    return "";
  }
  return "$7$" + std::to_string(iterations) + "$" +
         Base64Encode(salt.data(), salt.size()) + "$" +
         Base64Encode(out.data(), out.size());
}

// Whether `pid` exists and has not exited (a crashed, unreaped broker is a
// zombie).
bool ProcessAlive(pid_t pid) {
  if (pid <= 0) return false;
  std::string stat = ReadFile("/proc/" + std::to_string(pid) + "/stat");
  size_t paren = stat.rfind(')');
  if (paren == std::string::npos || paren + 2 >= stat.size()) return false;
  char state = stat[paren + 2];
  return state != 'Z' && state != 'X';
}

// Resident set size of `pid` in KiB, -1 when unreadable.
int64_t RssKib(pid_t pid) {
  for (const std::string& line : LinesContaining(
           ReadFile("/proc/" + std::to_string(pid) + "/status"), "VmRSS:")) {
    std::istringstream in(line.substr(6));
    int64_t kib = -1;
    in >> kib;
    return kib;
  }
  return -1;
}

std::vector<std::string> SplitLines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty()) lines.push_back(line);
  }
  return lines;
}

// "1000" as a number of its own (not inside 10000000), or "1,000".
bool MentionsOneThousand(const std::string& text) {
  static const std::regex kThousand(R"((^|[^0-9,])1,?000([^0-9,]|$))");
  return std::regex_search(text, kThousand);
}

// ------------------------------------------------------------------ fixture

class HardeningTest : public BrokerTest {
 protected:
  void SetUp() override {
    ASSERT_TRUE(registry_.AddDevice("homepot", "backend", "backend-pass"));
    ASSERT_TRUE(registry_.AddDevice("sensor-001", "iot_sensor", "sensor-pass"));
    ASSERT_TRUE(registry_.AddDevice("evil", "iot_sensor", "evil-pass"));
    ASSERT_TRUE(registry_.AddDevice("monitor", "unknown", "monitor-pass"));
    ASSERT_TRUE(registry_.Grant("homepot", "devices/+/notifications", "write"));
    ASSERT_TRUE(registry_.Grant("homepot", "pace/#", "write"));
    ASSERT_TRUE(registry_.Grant("monitor", kStatsTopic, "read"));
  }

  // True while the broker process lives (Broker::running() only knows
  // whether it was reaped).
  bool BrokerAlive() {
    return broker_.running() && ProcessAlive(broker_.pid());
  }

  // For a failure message: how the broker ended, and its log tail.
  std::string DeathReport() {
    std::ostringstream out;
    if (!BrokerAlive() && broker_.running()) {
      int status = broker_.Stop();  // reaps the dead process
      if (WIFSIGNALED(status)) {
        out << "the broker died of signal " << WTERMSIG(status);
      } else if (WIFEXITED(status)) {
        out << "the broker exited with status " << WEXITSTATUS(status);
      }
    }
    out << "; log tail:\n" << Tail(broker_.Log(), 25);
    return out.str();
  }

  std::unique_ptr<Client> Monitor() {
    auto c = ConnectAs("monitor", "monitor-pass");
    if (c && c->Subscribe(kStatsTopic, 0) != 0) {
      ADD_FAILURE() << "monitor cannot subscribe to the stats topic";
      return nullptr;
    }
    return c;
  }

  // Polls `condition` while `pacer` publishes to kPaceTopic every 50 ms: with
  // per_listener_settings true Mosquitto sends no TICK, so the plugin acts
  // (swaps the registry, kicks) only on some client's event.
  bool EventuallyWithEvents(Client* pacer, const std::function<bool()>& cond,
                            int timeout_ms) {
    return Eventually(
        [&] {
          pacer->Publish(kPaceTopic, "x", 1, false, 1000);
          return cond();
        },
        timeout_ms, 50);
  }

  // `count` publishes by `pacer`, 50 ms apart: a stretch of broker events in
  // which a pending kick would be carried out.
  void DriveEvents(Client* pacer, int count = 6) {
    for (int i = 0; i < count; ++i) {
      EXPECT_EQ(pacer->Publish(kPaceTopic, "x", 1, false, 1000), 0);
      SleepMs(50);
    }
  }

  int RunAdmin(const std::vector<std::string>& args, const std::string& input,
               std::string* output) {
    std::vector<std::string> argv = {HOMEPOT_ADMIN_PATH, "--db",
                                     registry_.db_path()};
    argv.insert(argv.end(), args.begin(), args.end());
    return RunCommand(argv, input, output);
  }

  std::optional<std::string> StoredHash(const std::string& id) {
    std::vector<TempRegistry::Row> rows;
    EXPECT_TRUE(registry_.Query(
        "SELECT password_hash FROM devices WHERE device_id = '" + id + "'",
        &rows));
    if (rows.size() != 1) return std::nullopt;
    return rows[0][0];
  }

  // device_stats of `id`: {published, delivered, rejected}, or nothing when
  // it has no row.
  std::optional<std::array<int64_t, 3>> DeviceStats(const std::string& id) {
    std::vector<TempRegistry::Row> rows;
    EXPECT_TRUE(registry_.Query(
        "SELECT published, delivered, rejected FROM device_stats WHERE "
        "device_id = '" +
            id + "'",
        &rows));
    if (rows.empty()) return std::nullopt;
    std::array<int64_t, 3> r{};
    for (size_t i = 0; i < 3; ++i) r[i] = std::stoll(rows[0][i].value_or("-1"));
    return r;
  }

  std::string DescribeDeviceStats() {
    std::vector<TempRegistry::Row> rows;
    registry_.Query(
        "SELECT device_id, published, delivered, rejected FROM device_stats",
        &rows);
    std::string out = "device_stats:\n";
    for (const auto& row : rows) {
      for (const auto& cell : row) out += " " + cell.value_or("NULL");
      out += "\n";
    }
    return out;
  }
};

// ================================================== new password, old session

// A device connected; its password changed with SQL; the device logs in with
// the new password before its old session was kicked, eight times in a row.
// Parameters: per_listener_settings, and whether the new session reuses the
// old session's client id.
//
// Odd rounds log in at once after the commit and retry until the broker has
// the new registry. Even rounds first leave the broker without any event for
// longer than stats_interval, with statistics pending: the login is then the
// event at which the registry is swapped AND the statistics are handed to the
// registry thread, which frees the retired registry while the login is still
// being checked (a use after free if a record outlived its snapshot).
class HardeningRotationTest
    : public HardeningTest,
      public testing::WithParamInterface<std::tuple<bool, bool>> {};

TEST_P(HardeningRotationTest, NewPasswordLoginRightAfterTheChange) {
  const auto [per_listener, same_client_id] = GetParam();
  // Ids longer than the small-string buffer keep their bytes on the heap.
  const std::string device = "rotor-device-with-a-long-id";
  const std::string token = "devices/" + device + "/notifications";
  ASSERT_TRUE(registry_.AddDevice(device, "iot_sensor", "pw-0", "", 1000));
  ASSERT_TRUE(StartBroker(
      {"reload_interval_ms 50", "stats_interval 1", "auth_max_failures 0"}, {},
      per_listener));
  const pid_t pid = broker_.pid();
  auto backend = ConnectAs("homepot", "backend-pass");
  ASSERT_TRUE(backend);
  std::string client_id = device + "-0";
  auto current = ConnectAs(device, "pw-0", kMqtt5, client_id);
  ASSERT_TRUE(current);
  ASSERT_EQ(current->Subscribe(token, 1), 1);

  for (int round = 1; round <= 8; ++round) {
    const bool quiet = round % 2 == 0;
    SCOPED_TRACE("round " + std::to_string(round) +
                 (quiet ? " (after a quiet period)" : " (at once)"));
    const std::string password = "pw-" + std::to_string(round);
    const std::string new_id =
        same_client_id ? client_id : device + "-" + std::to_string(round);
    const int protocol = round % 4 < 2 ? kMqtt311 : kMqtt5;
    if (quiet) {
      // Statistics to hand over: a delivery to the current session.
      ASSERT_EQ(backend->Publish(token, Valid("pending"), 1), 0);
      ASSERT_TRUE(current->WaitForMessage().has_value());
    }
    ASSERT_TRUE(registry_.Exec("UPDATE devices SET password_hash = '" +
                               test::EncodedHash(password, 1000) +
                               "' WHERE device_id = '" + device + "'"));
    // No client acts meanwhile: the registry thread loads the change (it
    // polls every 50 ms) and the statistics fall due (1 s).
    if (quiet) SleepMs(1300);  // the quiet period itself
    // Until the broker has the new registry the old hash refuses it.
    auto fresh = std::make_unique<Client>(broker_.port(), protocol, new_id);
    bool logged_in = Eventually(
        [&] {
          return fresh->Connect(device, password, 2000) == 0 || !BrokerAlive();
        },
        10000, 5);
    ASSERT_TRUE(BrokerAlive()) << DeathReport();
    ASSERT_TRUE(logged_in) << "the new password never worked; "
                           << Tail(broker_.Log(), 15);
    ASSERT_EQ(fresh->Subscribe(token, 1), 1)
        << "the new session was ended at once; " << Tail(broker_.Log(), 15);

    // The old session ends (taken over or kicked)...
    EXPECT_TRUE(EventuallyWithEvents(
        backend.get(), [&] { return !current->IsConnected(); }, 10000))
        << "the old session (client id " << client_id << ") is still on";
    // ...the revocation has been applied...
    ASSERT_TRUE(broker_.WaitForLog("registry reloaded", 10000, round))
        << Tail(broker_.Log(), 15);
    // ...and whatever events follow, the new session stays.
    DriveEvents(backend.get());
    ASSERT_TRUE(BrokerAlive()) << DeathReport();
    EXPECT_TRUE(fresh->IsConnected())
        << "the new session (client id " << new_id << ") was kicked; "
        << Tail(broker_.Log(), 15);
    const std::string title = "round-" + std::to_string(round);
    ASSERT_EQ(backend->Publish(token, Valid(title), 1), 0);
    std::optional<Message> m = fresh->WaitForMessage();
    ASSERT_TRUE(m.has_value())
        << "the new session got no notification; " << Tail(broker_.Log(), 15);
    json j = json::parse(m->payload, nullptr, false);
    EXPECT_EQ(j.value("title", ""), title) << m->payload;

    current = std::move(fresh);
    client_id = new_id;
  }

  // Still the same broker, and it takes new logins.
  ASSERT_TRUE(BrokerAlive()) << DeathReport();
  EXPECT_EQ(broker_.pid(), pid);
  Client probe(broker_.port());
  EXPECT_EQ(probe.Connect("homepot", "backend-pass"), 0);
  EXPECT_TRUE(current->IsConnected());
}

INSTANTIATE_TEST_SUITE_P(
    Hardening, HardeningRotationTest,
    testing::Combine(testing::Bool(), testing::Bool()),
    [](const testing::TestParamInfo<std::tuple<bool, bool>>& p) {
      return std::string(std::get<0>(p.param) ? "PerListener"
                                              : "GlobalSettings") +
             (std::get<1>(p.param) ? "_SameClientId" : "_NewClientId");
    });

// ====================================================================== sizes

TEST_F(HardeningTest, OverlongUsernamesAndPasswordsAreRefused) {
  const std::string id128(128, 'd');
  const std::string pw1024(1024, 'p');
  const std::string pw1025(1025, 'q');
  ASSERT_TRUE(registry_.AddDevice(id128, "iot_sensor", "pw"));
  ASSERT_TRUE(registry_.AddDevice("pw-1024", "iot_sensor", pw1024));
  ASSERT_TRUE(registry_.AddDevice("pw-1025", "iot_sensor", pw1025));
  ASSERT_TRUE(StartBroker());
  for (int protocol : {kMqtt311, kMqtt5}) {
    SCOPED_TRACE(ProtocolName(protocol));
    auto code = [&](const std::string& user, const std::string& pass) {
      Client c(broker_.port(), protocol);
      return c.Connect(user, pass);
    };
    // Within the limits.
    EXPECT_EQ(code(id128, "pw"), 0) << "a 128-byte device id";
    EXPECT_EQ(code("pw-1024", pw1024), 0) << "a 1024-byte password";
    // Beyond them.
    EXPECT_EQ(code(std::string(129, 'd'), "pw"), NotAuthorized(protocol));
    EXPECT_EQ(code(std::string(1000, 'u'), "pw"), NotAuthorized(protocol));
    EXPECT_EQ(code(std::string(65535, 'u'), "pw"), NotAuthorized(protocol));
    EXPECT_EQ(code("sensor+001", "sensor-pass"), NotAuthorized(protocol));
    EXPECT_EQ(code("pw-1025", pw1025), NotAuthorized(protocol))
        << "a 1025-byte password was accepted";
  }
  EXPECT_TRUE(BrokerAlive()) << DeathReport();
}

// Failed logins with ever new 64 KiB usernames must not be stored whole: the
// broker's resident memory stays put.
TEST_F(HardeningTest, FloodOfHugeUsernamesDoesNotGrowTheBroker) {
  ASSERT_TRUE(StartBroker());
  std::mt19937 rng(10);
  std::uniform_int_distribution<int> letter('a', 'z');
  int sent = 0;
  auto flood = [&](int n) {
    for (int i = 0; i < n; ++i) {
      std::string user = std::to_string(sent++) + "-";
      user.reserve(65535);
      while (user.size() < 65535)
        user.push_back(static_cast<char>(letter(rng)));
      RawClient raw;
      ASSERT_TRUE(raw.Open(broker_.port()));
      int rc =
          raw.Connect(kMqtt311, "flood-" + std::to_string(sent), user, "pw");
      ASSERT_EQ(rc, kConnackNotAuthorized311) << "login " << sent;
    }
  };
  flood(50);  // warm-up: the broker's buffers for 64 KiB packets
  ASSERT_FALSE(HasFatalFailure());
  const int64_t before = RssKib(broker_.pid());
  ASSERT_GT(before, 0);
  flood(1500);  // ~98 MB of usernames
  ASSERT_FALSE(HasFatalFailure());
  ASSERT_TRUE(BrokerAlive()) << DeathReport();
  const int64_t after = RssKib(broker_.pid());
  RecordProperty("rss_growth_kib", std::to_string(after - before));
  // In the sanitizer run (harness.h: $HOMEPOT_TEST_PRELOAD) ASan's quarantine
  // keeps freed memory resident, so RSS says nothing there; the flood still
  // runs for the sanitizer's sake.
  const char* preload = std::getenv("HOMEPOT_TEST_PRELOAD");
  if (preload == nullptr || preload[0] == '\0') {
    EXPECT_LE(after - before, 24 * 1024)
        << "RSS grew from " << before << " KiB to " << after << " KiB over "
        << sent << " refused logins with 64 KiB usernames";
  }
  // Still serving.
  Client probe(broker_.port());
  EXPECT_EQ(probe.Connect("sensor-001", "sensor-pass"), 0);
}

// ================================================================== hash cost

TEST_F(HardeningTest, AdminRefusesIterationCountsAboveTheMaximum) {
  std::string out;
  // The maximum itself is fine.
  ASSERT_EQ(RunAdmin({"device", "add", "ok-1000", "--type", "iot_sensor",
                      "--iterations", "1000"},
                     "pw-ok\n", &out),
            0)
      << out;
  // One above is refused with one line that says what the maximum is.
  int rc = RunAdmin({"device", "add", "costly", "--type", "iot_sensor",
                     "--iterations", "1001"},
                    "pw-costly\n", &out);
  EXPECT_NE(rc, 0) << out;
  std::vector<std::string> lines = SplitLines(out);
  EXPECT_EQ(lines.size(), 1u) << out;
  EXPECT_EQ(out.rfind("homepot-admin: ", 0), 0u) << out;
  EXPECT_TRUE(MentionsOneThousand(out)) << out;
  EXPECT_EQ(registry_.QueryInt(
                "SELECT count(*) FROM devices WHERE device_id = 'costly'"),
            0);

  // The same for a new password of an existing device.
  std::optional<std::string> hash = StoredHash("sensor-001");
  ASSERT_TRUE(hash.has_value());
  rc = RunAdmin({"device", "passwd", "sensor-001", "--iterations", "20000"},
                "pw-costly\n", &out);
  EXPECT_NE(rc, 0) << out;
  EXPECT_EQ(SplitLines(out).size(), 1u) << out;
  EXPECT_TRUE(MentionsOneThousand(out)) << out;
  EXPECT_EQ(StoredHash("sensor-001"), hash) << "the hash was changed";
}

TEST_F(HardeningTest, ImportOfAnOverlyExpensiveHashChangesNothing) {
  const std::string costly = Pbkdf2Hash("imp-pw", 20000);
  const std::string fine = Pbkdf2Hash("imp-pw", 1000);
  std::optional<std::string> sensor_hash = StoredHash("sensor-001");
  ASSERT_TRUE(sensor_hash.has_value());
  const std::string file = registry_.Path("passwd");
  ASSERT_TRUE(WriteFile(file, "imp-ok:" + fine + "\n" + "sensor-001:" + fine +
                                  "\n" + "imp-costly:" + costly + "\n"));
  const int64_t devices = registry_.QueryInt("SELECT count(*) FROM devices");
  std::string out;
  int rc = RunAdmin({"import-passwd", file}, "", &out);
  EXPECT_NE(rc, 0) << out;
  EXPECT_EQ(SplitLines(out).size(), 1u) << out;
  EXPECT_EQ(out.find(costly), std::string::npos) << "the hash was printed";
  EXPECT_EQ(registry_.QueryInt("SELECT count(*) FROM devices"), devices);
  EXPECT_EQ(registry_.QueryInt("SELECT count(*) FROM devices WHERE device_id "
                               "IN ('imp-ok', 'imp-costly')"),
            0);
  EXPECT_EQ(StoredHash("sensor-001"), sensor_hash)
      << "an existing device got the imported hash";
}

// A registry row whose hash costs more than the maximum (written with SQL,
// which no tool check stops) never costs the broker that hash: the device is
// refused even with the right password, and the log says what to do.
TEST_F(HardeningTest, DeviceWithAnOverlyExpensiveHashIsRefused) {
  ASSERT_TRUE(registry_.AddDeviceWithHash("pb-1000", "iot_sensor",
                                          Pbkdf2Hash("cheap-pw", 1000)));
  ASSERT_TRUE(registry_.AddDeviceWithHash("costly-dev", "iot_sensor",
                                          Pbkdf2Hash("costly-pw", 20000)));
  ASSERT_TRUE(StartBroker());
  for (int protocol : {kMqtt311, kMqtt5}) {
    SCOPED_TRACE(ProtocolName(protocol));
    // The hash helper makes hashes the broker accepts...
    Client cheap(broker_.port(), protocol, "probe-cheap");
    EXPECT_EQ(cheap.Connect("pb-1000", "cheap-pw"), 0);
    // ...but not at 20,000 iterations.
    Client costly(broker_.port(), protocol, "probe-costly");
    EXPECT_EQ(costly.Connect("costly-dev", "costly-pw"),
              NotAuthorized(protocol));
  }
  // The log names the device and says to give it a new password.
  bool logged = Eventually(
      [&] {
        for (const std::string& line :
             LinesContaining(broker_.Log(), "costly-dev")) {
          if (line.find("passw") != std::string::npos) return true;
        }
        return false;
      },
      2000);
  EXPECT_TRUE(logged) << "no log line names costly-dev and a new password; "
                      << Tail(broker_.Log(), 15);
  EXPECT_TRUE(BrokerAlive()) << DeathReport();
}

// ====================================================================== wills

TEST_F(HardeningTest, WillOnANotificationTopicGetsTheBrokerStamp) {
  ASSERT_TRUE(StartBroker({"stats_interval 0"}));
  auto sensor = ConnectAs("sensor-001", "sensor-pass");
  auto backend = ConnectAs("homepot", "backend-pass", kMqtt311);
  ASSERT_TRUE(sensor && backend);
  ASSERT_EQ(sensor->Subscribe(kSensorToken, 1), 1);
  const std::string forged =
      R"({"title":"t","body":"b","received_at":"1999-01-01T00:00:00.000Z"})";
  for (int protocol : {kMqtt311, kMqtt5}) {
    // A lambda, so that a fatal failure ends this protocol's part only.
    [&] {
      SCOPED_TRACE(ProtocolName(protocol));
      Client publisher(broker_.port(), protocol);
      publisher.SetWill(kSensorToken, forged, 1);
      const int64_t connected_at = WallMs();
      ASSERT_EQ(publisher.Connect("homepot", "backend-pass"), 0);
      publisher.DropConnection();
      std::optional<Message> m = sensor->WaitForMessage();
      const int64_t received_at_ms = WallMs();
      ASSERT_TRUE(m.has_value())
          << "no will delivered; " << Tail(broker_.Log());
      EXPECT_EQ(m->topic, kSensorToken);
      json j = json::parse(m->payload, nullptr, false);
      ASSERT_TRUE(j.is_object()) << m->payload;
      EXPECT_EQ(j.value("title", ""), "t") << m->payload;
      EXPECT_EQ(j.value("body", ""), "b") << m->payload;
      const std::string received_at = j.value("received_at", "");
      const int64_t stamp = ParseStampMs(received_at);
      EXPECT_GT(stamp, 0) << m->payload;
      EXPECT_GE(stamp, connected_at)
          << "received_at is not the broker's time: " << m->payload;
      EXPECT_LE(stamp, received_at_ms)
          << "received_at is not the broker's time: " << m->payload;
      EXPECT_EQ(j.value("timestamp", ""), received_at)
          << "timestamp not added equal to received_at: " << m->payload;
    }();
  }
  // An invalid will is not delivered at all.
  for (int protocol : {kMqtt311, kMqtt5}) {
    // A lambda, so that a fatal failure ends this protocol's part only.
    [&] {
      SCOPED_TRACE(ProtocolName(protocol));
      Client publisher(broker_.port(), protocol);
      publisher.SetWill(
          kSensorToken,
          R"({"title":"t","received_at":"1999-01-01T00:00:00.000Z"})", 1);
      if (publisher.Connect("homepot", "backend-pass") == 0) {
        publisher.DropConnection();
      }
      // A valid notification after it: the next message must be that one.
      ASSERT_EQ(backend->Publish(kSensorToken, Valid("after-bad-will"), 1), 0);
      std::optional<Message> m = sensor->WaitForMessage();
      ASSERT_TRUE(m.has_value());
      json j = json::parse(m->payload, nullptr, false);
      EXPECT_EQ(j.value("title", ""), "after-bad-will")
          << "the invalid will was delivered: " << m->payload;
    }();
  }
}

// ================================================================= client ids

TEST_F(HardeningTest, LiveClientIdOfAnotherDeviceCannotBeTakenOver) {
  ASSERT_TRUE(StartBroker({"stats_interval 0"}));
  auto backend = ConnectAs("homepot", "backend-pass");
  ASSERT_TRUE(backend);
  for (int protocol : {kMqtt311, kMqtt5}) {
    // A lambda, so that a fatal failure ends this protocol's part only.
    [&] {
      SCOPED_TRACE(ProtocolName(protocol));
      auto sensor =
          ConnectAs("sensor-001", "sensor-pass", protocol, "sensor-001-main");
      ASSERT_TRUE(sensor);
      ASSERT_EQ(sensor->Subscribe(kSensorToken, 1), 1);
      for (int evil_protocol : {kMqtt311, kMqtt5}) {
        Client evil(broker_.port(), evil_protocol, "sensor-001-main");
        EXPECT_EQ(evil.Connect("evil", "evil-pass"),
                  NotAuthorized(evil_protocol))
            << "evil took the client id over with "
            << ProtocolName(evil_protocol);
      }
      // sensor-001's session is untouched and still served.
      const std::string title = std::string("live-") + ProtocolName(protocol);
      ASSERT_EQ(backend->Publish(kSensorToken, Valid(title), 1), 0);
      std::optional<Message> m = sensor->WaitForMessage();
      ASSERT_TRUE(m.has_value())
          << "sensor-001 lost its session; " << Tail(broker_.Log(), 10);
      EXPECT_EQ(json::parse(m->payload, nullptr, false).value("title", ""),
                title);
      EXPECT_TRUE(sensor->IsConnected());
      sensor->Disconnect();
    }();
  }
  // evil itself may log in, with a client id of its own.
  Client evil(broker_.port(), kMqtt5, "evil-main");
  EXPECT_EQ(evil.Connect("evil", "evil-pass"), 0);
  EXPECT_TRUE(BrokerAlive()) << DeathReport();
}

TEST_F(HardeningTest, DurableClientIdOfAnotherDeviceCannotBeTakenOver) {
  ASSERT_TRUE(StartBroker({"stats_interval 0"}));
  auto backend = ConnectAs("homepot", "backend-pass");
  ASSERT_TRUE(backend);
  for (int protocol : {kMqtt311, kMqtt5}) {
    // A lambda, so that a fatal failure ends this protocol's part only.
    [&] {
      SCOPED_TRACE(ProtocolName(protocol));
      const std::string client_id = std::string("sensor-001-main-") +
                                    (protocol == kMqtt5 ? "v5" : "v311");
      Client sensor(broker_.port(), Durable(protocol, client_id));
      ASSERT_EQ(sensor.Connect("sensor-001", "sensor-pass"), 0);
      ASSERT_EQ(sensor.Subscribe(kSensorToken, 1), 1);
      sensor.Disconnect();
      // The session is offline before anything is published to it.
      ASSERT_TRUE(broker_.WaitForLog(
          "Client " + sensor.client_id() + " disconnected", 10000))
          << Tail(broker_.Log(), 10);

      // Queued for the offline session.
      for (int i = 0; i < 3; ++i) {
        ASSERT_EQ(backend->Publish(kSensorToken,
                                   Valid("queued-" + std::to_string(i)), 1),
                  0);
      }
      Client evil(broker_.port(), protocol, client_id);
      EXPECT_EQ(evil.Connect("evil", "evil-pass"), NotAuthorized(protocol))
          << "evil took over the durable session";
      evil.Disconnect();

      ASSERT_EQ(sensor.Connect("sensor-001", "sensor-pass"), 0);
      for (int i = 0; i < 3; ++i) {
        std::optional<Message> m = sensor.WaitForMessage();
        ASSERT_TRUE(m.has_value())
            << "sensor-001 got " << i << " of its 3 queued notifications";
        EXPECT_EQ(json::parse(m->payload, nullptr, false).value("title", ""),
                  "queued-" + std::to_string(i))
            << m->payload;
      }
      // The subscription survived too.
      ASSERT_EQ(backend->Publish(kSensorToken, Valid("after"), 1), 0);
      std::optional<Message> m = sensor.WaitForMessage();
      ASSERT_TRUE(m.has_value()) << "the durable subscription was wiped";
      EXPECT_EQ(json::parse(m->payload, nullptr, false).value("title", ""),
                "after");
      sensor.Disconnect();
    }();
  }
}

// =================================================================== $ and %c

TEST_F(HardeningTest,
       ClientIdsStartingWithDollarOrNamingAnotherDeviceAreRefused) {
  ASSERT_TRUE(StartBroker({"stats_interval 0"}));
  for (int protocol : {kMqtt311, kMqtt5}) {
    SCOPED_TRACE(ProtocolName(protocol));
    auto code = [&](const std::string& client_id, const std::string& user,
                    const std::string& pass) {
      Client c(broker_.port(), protocol, client_id);
      return c.Connect(user, pass);
    };
    EXPECT_EQ(code("$SYS", "sensor-001", "sensor-pass"),
              NotAuthorized(protocol));
    EXPECT_EQ(code("$share", "sensor-001", "sensor-pass"),
              NotAuthorized(protocol));
    EXPECT_EQ(code("$x", "sensor-001", "sensor-pass"), NotAuthorized(protocol));
    // Another registered device's id.
    EXPECT_EQ(code("sensor-001", "evil", "evil-pass"), NotAuthorized(protocol));
    EXPECT_EQ(code("homepot", "evil", "evil-pass"), NotAuthorized(protocol));
    // Its own id, and ids that are no device's, are fine.
    EXPECT_EQ(code("sensor-001", "sensor-001", "sensor-pass"), 0);
    EXPECT_EQ(code("evil", "evil", "evil-pass"), 0);
    EXPECT_EQ(code("SYS", "sensor-001", "sensor-pass"), 0);
  }
}

TEST_F(HardeningTest, ClientIdPatternCannotReachSysOrAnotherDevicesSubtree) {
  ASSERT_TRUE(registry_.AddDevice("plain", "iot_sensor", "plain-pass"));
  ASSERT_TRUE(registry_.Grant(nullptr, "%c/#", "read"));
  ASSERT_TRUE(registry_.Grant("evil", "devices/%c/#", "read"));
  ASSERT_TRUE(registry_.Grant("homepot", "abc/#", "write"));
  ASSERT_TRUE(StartBroker({"stats_interval 1"}));
  auto monitor = Monitor();
  auto backend = ConnectAs("homepot", "backend-pass");
  ASSERT_TRUE(monitor && backend);

  // %c works as meant: the client's own subtree.
  auto abc = ConnectAs("plain", "plain-pass", kMqtt5, "abc");
  ASSERT_TRUE(abc);
  EXPECT_EQ(abc->Subscribe("abc/#", 1), 1);
  abc->Subscribe("$SYS/#", 0);  // refused or not, nothing may arrive
  abc->Subscribe(kStatsTopic, 0);

  // %c = "$SYS" would open all of $SYS: refused at login.
  for (int protocol : {kMqtt311, kMqtt5}) {
    SCOPED_TRACE(ProtocolName(protocol));
    Client sys(broker_.port(), protocol, "$SYS");
    int rc = sys.Connect("plain", "plain-pass");
    EXPECT_EQ(rc, NotAuthorized(protocol)) << "client id $SYS accepted";
    if (rc == 0) {
      sys.Subscribe("$SYS/#", 0);
      if (WaitForStats(
              monitor.get(), [](const json&) { return true; }, 2500)
              .is_object()) {
        std::optional<Message> m = sys.WaitForMessage(500);
        EXPECT_FALSE(m.has_value())
            << "%c = $SYS read " << m->topic << ": " << m->payload;
      }
    }
    // devices/%c/# with %c = another device's id: refused at login.
    Client evil(broker_.port(), protocol, "sensor-001");
    rc = evil.Connect("evil", "evil-pass");
    EXPECT_EQ(rc, NotAuthorized(protocol))
        << "evil logged in as client id sensor-001";
    if (rc == 0) {
      EXPECT_NE(evil.Subscribe("devices/sensor-001/#", 1), 1)
          << "evil may read sensor-001's subtree";
    }
  }

  // Two stats publications later, abc has seen nothing of $SYS.
  ASSERT_TRUE(NextStats(monitor.get()).is_object());
  ASSERT_TRUE(NextStats(monitor.get()).is_object());
  std::vector<Message> before;
  ASSERT_TRUE(
      ReceiveUntilBarrier(abc.get(), backend.get(), "abc/barrier", &before));
  for (const Message& m : before) {
    EXPECT_NE(m.topic.rfind("$SYS", 0), 0u)
        << "abc got " << m.topic << ": " << m.payload;
  }
}

// ==================================================================== removal

TEST_F(HardeningTest, RemovedDeviceStatsStayGoneAndAReAddedIdStartsAtZero) {
  ASSERT_TRUE(registry_.AddDevice("pub-x", "backend", "old-pass"));
  ASSERT_TRUE(registry_.Grant("pub-x", "devices/+/notifications", "write"));
  ASSERT_TRUE(StartBroker({"stats_interval 1", "reload_interval_ms 100"}));
  auto monitor = Monitor();
  auto pub = ConnectAs("pub-x", "old-pass");
  ASSERT_TRUE(monitor && pub);

  // pub-x publishes continuously, so it has counters in memory not yet
  // flushed whenever the removal lands.
  std::atomic<bool> stop{false};
  std::atomic<int> published{0};
  std::thread publisher([&] {
    for (int i = 0; !stop && pub->IsConnected(); ++i) {
      if (pub->Publish(kSensorToken, Valid("x" + std::to_string(i)), 1, false,
                       1000) == 0) {
        ++published;
      }
      SleepMs(10);
    }
  });
  struct Joiner {
    std::atomic<bool>* stop;
    std::thread* t;
    ~Joiner() {
      *stop = true;
      if (t->joinable()) t->join();
    }
  } joiner{&stop, &publisher};

  ASSERT_TRUE(Eventually(
      [&] {
        auto r = DeviceStats("pub-x");
        return r && (*r)[0] > 0;
      },
      10000, 50))
      << "pub-x never got a device_stats row; " << DescribeDeviceStats();
  std::string out;
  ASSERT_EQ(RunAdmin({"device", "remove", "pub-x"}, "", &out), 0) << out;
  EXPECT_FALSE(DeviceStats("pub-x").has_value())
      << "remove left the row; " << DescribeDeviceStats();
  EXPECT_TRUE(pub->WaitForDisconnect(10000)) << "the removed device stays on";
  stop = true;
  publisher.join();
  ASSERT_GT(published.load(), 0);

  // Three flushes later the row is still gone.
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(NextStats(monitor.get()).is_object()) << "no stats " << i;
    EXPECT_FALSE(DeviceStats("pub-x").has_value())
        << "the row came back after flush " << i + 1 << "; "
        << DescribeDeviceStats();
  }

  // The id added again starts from zero.
  ASSERT_EQ(RunAdmin({"device", "add", "pub-x", "--type", "backend"},
                     "new-pass\n", &out),
            0)
      << out;
  ASSERT_TRUE(registry_.Grant("pub-x", "devices/+/notifications", "write"));
  std::unique_ptr<Client> again;
  ASSERT_TRUE(Eventually(
      [&] {
        again = std::make_unique<Client>(broker_.port());
        return again->Connect("pub-x", "new-pass") == 0;
      },
      10000, 100))
      << "the re-added device cannot log in";
  for (int i = 0; i < 2; ++i) {
    ASSERT_TRUE(NextStats(monitor.get()).is_object());
    auto r = DeviceStats("pub-x");
    EXPECT_TRUE(!r || (*r == std::array<int64_t, 3>{0, 0, 0}))
        << "the re-added id does not start at zero; " << DescribeDeviceStats();
  }
  ASSERT_EQ(again->Publish(kSensorToken, Valid("first"), 1), 0);
  EXPECT_TRUE(Eventually(
      [&] {
        auto r = DeviceStats("pub-x");
        return r && (*r)[0] == 1;
      },
      10000, 50))
      << DescribeDeviceStats();
  ASSERT_TRUE(NextStats(monitor.get()).is_object());
  ASSERT_TRUE(NextStats(monitor.get()).is_object());
  auto r = DeviceStats("pub-x");
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ((*r)[0], 1) << DescribeDeviceStats();
}

// ============================================================= offline queues

TEST_F(HardeningTest, QosZeroCopiesDroppedForAnOfflineSessionAreNotCounted) {
  ASSERT_TRUE(registry_.AddDevice("sub311", "iot_sensor", "sub-pass"));
  ASSERT_TRUE(registry_.AddDevice("sub5", "iot_sensor", "sub-pass"));
  // Barriers go to pace/<device>: not a notification, so never counted.
  ASSERT_TRUE(registry_.Grant("sub311", "pace/sub311", "read"));
  ASSERT_TRUE(registry_.Grant("sub5", "pace/sub5", "read"));
  ASSERT_TRUE(StartBroker({"stats_interval 1"}));
  auto monitor = Monitor();
  auto backend = ConnectAs("homepot", "backend-pass");
  ASSERT_TRUE(monitor && backend);

  for (int protocol : {kMqtt311, kMqtt5}) {
    // A lambda, so that a fatal failure ends this protocol's part only.
    [&] {
      SCOPED_TRACE(ProtocolName(protocol));
      const std::string device = protocol == kMqtt5 ? "sub5" : "sub311";
      const std::string token = "devices/" + device + "/notifications";
      Client sub(broker_.port(), Durable(protocol, device + "-durable"));
      ASSERT_EQ(sub.Connect(device, "sub-pass"), 0);
      ASSERT_EQ(sub.Subscribe(token, 1), 1);
      sub.Disconnect();
      // The session is offline before anything is published to it.
      ASSERT_TRUE(broker_.WaitForLog(
          "Client " + sub.client_id() + " disconnected", 10000))
          << Tail(broker_.Log(), 10);

      json base = NextStats(monitor.get());
      ASSERT_TRUE(base.is_object());
      const int64_t sent0 = base.value("total_sent", -1);
      const int64_t deliveries0 = base.value("deliveries", -1);

      // Mosquitto drops QoS 0 copies for an offline session and queues QoS 1.
      for (int i = 0; i < 5; ++i) {
        ASSERT_EQ(backend->Publish(token, Valid("q0-" + std::to_string(i)), 0),
                  0);
      }
      for (int i = 0; i < 2; ++i) {
        ASSERT_EQ(backend->Publish(token, Valid("q1-" + std::to_string(i)), 1),
                  0);
      }
      json last;
      json j = WaitForStats(
          monitor.get(),
          [&](const json& s) { return s.value("total_sent", -1) >= sent0 + 7; },
          10000, &last);
      ASSERT_TRUE(j.is_object()) << "last stats: " << last.dump();
      EXPECT_EQ(j.value("total_sent", -1), sent0 + 7) << j.dump();
      EXPECT_EQ(j.value("deliveries", -1) - deliveries0, 2)
          << "deliveries counted copies Mosquitto dropped: " << j.dump();

      // The session gets exactly the two queued copies, and handing them over
      // is not a second delivery.
      ASSERT_EQ(sub.Connect(device, "sub-pass"), 0);
      for (int i = 0; i < 2; ++i) {
        std::optional<Message> m = sub.WaitForMessage();
        ASSERT_TRUE(m.has_value()) << "got " << i << " of 2";
        EXPECT_EQ(json::parse(m->payload, nullptr, false).value("title", ""),
                  "q1-" + std::to_string(i));
      }
      ASSERT_EQ(sub.Subscribe("pace/" + device, 1), 1);
      EXPECT_TRUE(NothingBefore(&sub, backend.get(), "pace/" + device));
      j = NextStats(monitor.get());
      ASSERT_TRUE(j.is_object());
      EXPECT_EQ(j.value("deliveries", -1) - deliveries0, 2)
          << "after the reconnect: " << j.dump();
      sub.Disconnect();
    }();
  }

  // The per-device figures agree once written out.
  int status = broker_.Stop();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  for (const char* device : {"sub311", "sub5"}) {
    auto r = DeviceStats(device);
    ASSERT_TRUE(r.has_value()) << device << "; " << DescribeDeviceStats();
    EXPECT_EQ((*r)[1], 2) << device << "; " << DescribeDeviceStats();
  }
}

}  // namespace
}  // namespace integration
}  // namespace homepot
