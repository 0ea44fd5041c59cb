// Statistics (docs/operating.md, "Statistics"): the retained stats object with
// exact figures after a known scenario, the live `connected` gauge, who may
// read or write the stats topic, stats_interval 0, per_listener_settings true,
// the per-device figures in device_stats across restarts, a locked registry
// file and kill -9, and two brokers (node_id) adding up in one registry.
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <sys/wait.h>

#include <algorithm>
#include <array>
#include <cstdlib>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <regex>
#include <string>
#include <vector>

#include "harness.h"

namespace homepot {
namespace integration {
namespace {

using nlohmann::json;

const std::string kSensorToken = "devices/sensor-001/notifications";

std::string Valid(int i, const char* priority = nullptr) {
  std::string s = R"({"title":"n)" + std::to_string(i) + R"(","body":"b")";
  if (priority != nullptr)
    s += R"(,"priority":")" + std::string(priority) + "\"";
  return s + "}";
}

class StatsTest : public BrokerTest {
 protected:
  void SetUp() override {
    ASSERT_TRUE(registry_.AddDevice("homepot", "backend", "backend-pass"));
    ASSERT_TRUE(registry_.AddDevice("sensor-001", "iot_sensor", "sensor-pass"));
    ASSERT_TRUE(registry_.AddDevice("monitor", "unknown", "monitor-pass"));
    ASSERT_TRUE(registry_.Grant("homepot", "devices/+/notifications", "write"));
    ASSERT_TRUE(registry_.Grant("homepot", "factory/#", "write"));
    ASSERT_TRUE(registry_.Grant("monitor", kStatsTopic, "read"));
  }

  std::unique_ptr<Client> Monitor() {
    auto c = ConnectAs("monitor", "monitor-pass");
    if (c && c->Subscribe(kStatsTopic, 0) != 0) {
      ADD_FAILURE() << "monitor cannot subscribe to the stats topic";
      return nullptr;
    }
    return c;
  }

  struct DeviceRow {
    int64_t published = -1, delivered = -1, rejected = -1;
    std::optional<std::string> last_connect, last_publish, last_delivery;
    bool found = false;
  };
  DeviceRow DeviceStats(const std::string& id) {
    std::vector<TempRegistry::Row> rows;
    DeviceRow r;
    EXPECT_TRUE(registry_.Query(
        "SELECT published, delivered, rejected, last_connect, last_publish, "
        "last_delivery FROM device_stats WHERE device_id = '" +
            id + "'",
        &rows));
    if (rows.size() != 1) return r;
    r.found = true;
    r.published = std::stoll(rows[0][0].value_or("-1"));
    r.delivered = std::stoll(rows[0][1].value_or("-1"));
    r.rejected = std::stoll(rows[0][2].value_or("-1"));
    r.last_connect = rows[0][3];
    r.last_publish = rows[0][4];
    r.last_delivery = rows[0][5];
    return r;
  }

  // Waits until all of `want` (device -> {published, delivered, rejected})
  // are in device_stats.
  bool WaitForDeviceStats(
      const std::map<std::string, std::array<int64_t, 3>>& want,
      int timeout_ms) {
    return Eventually(
        [&] {
          for (const auto& [id, w] : want) {
            DeviceRow r = DeviceStats(id);
            if (r.published != w[0] || r.delivered != w[1] ||
                r.rejected != w[2]) {
              return false;
            }
          }
          return true;
        },
        timeout_ms, 100);
  }

  std::string DescribeDeviceStats() {
    std::vector<TempRegistry::Row> rows;
    registry_.Query("SELECT * FROM device_stats ORDER BY device_id", &rows);
    std::string out;
    for (const auto& row : rows) {
      for (const auto& cell : row) out += cell.value_or("NULL") + " | ";
      out += "\n";
    }
    return out.empty() ? "(no rows)\n" : out;
  }
};

// A statistics scenario: 3 subscribers, 37 valid notifications (mixed QoS and
// priorities) and 5 invalid ones.
TEST_F(StatsTest, ScenarioGivesExactFigures) {
  ASSERT_TRUE(StartBroker({"stats_interval 1"}));
  std::vector<std::unique_ptr<Client>> sensors;
  for (const char* id : {"sensor-a", "sensor-b", "sensor-c"}) {
    sensors.push_back(ConnectAs("sensor-001", "sensor-pass", kMqtt5, id));
    ASSERT_TRUE(sensors.back());
    ASSERT_EQ(sensors.back()->Subscribe(kSensorToken, 2), 2);
  }
  auto backend = ConnectAs("homepot", "backend-pass");
  auto monitor = Monitor();
  ASSERT_TRUE(backend && monitor);

  // 37 valid: QoS 0/1/2 = 12/13/12; priorities none 10, low 5, normal 8,
  // high 7, urgent 4, critical 3.
  std::vector<const char*> priorities;
  for (auto [p, n] :
       std::vector<std::pair<const char*, int>>{{nullptr, 10},
                                                {"low", 5},
                                                {"normal", 8},
                                                {"high", 7},
                                                {"urgent", 4},
                                                {"critical", 3}}) {
    for (int i = 0; i < n; ++i) priorities.push_back(p);
  }
  ASSERT_EQ(priorities.size(), 37u);
  int qos_count[3] = {0, 0, 0};
  for (int i = 0; i < 37; ++i) {
    int qos = i < 12 ? 0 : i < 25 ? 1 : 2;
    ++qos_count[qos];
    ASSERT_EQ(backend->Publish(kSensorToken, Valid(i, priorities[i]), qos), 0)
        << i;
  }
  ASSERT_EQ(qos_count[1], 13);
  // 5 invalid, one each of five reasons.
  const std::pair<std::string, std::string> invalid[] = {
      {kSensorToken, "{nope"},            // invalid_json
      {kSensorToken, "42"},               // not_object
      {kSensorToken, R"({"body":"b"})"},  // missing_field
      {kSensorToken,
       R"({"title":"t","body":"b","priority":"x"})"},  // bad_priority
      {"factory/a/b/c/d/e/f/g",
       R"({"title":"t","body":"b"})"},  // topic_too_deep
  };
  for (const auto& [topic, payload] : invalid) {
    EXPECT_EQ(backend->Publish(topic, payload, 1), kReasonNotAuthorized)
        << payload;
  }
  for (auto& s : sensors) {
    for (int i = 0; i < 37; ++i) {
      ASSERT_TRUE(s->WaitForMessage().has_value())
          << s->client_id() << " got only " << i;
    }
  }
  // One notification with a message_id, acknowledged by two of the
  // sessions (twice by one), and an ack of nothing.
  ASSERT_EQ(
      backend->Publish(
          kSensorToken,
          R"({"title":"a","body":"b","message_id":"ack-me","ttl":60})", 1),
      0);
  for (auto& s : sensors) ASSERT_TRUE(s->WaitForMessage().has_value());
  const std::string acks = "devices/sensor-001/acks";
  ASSERT_EQ(sensors[0]->Publish(acks, R"({"message_id":"ack-me"})", 1), 0);
  ASSERT_EQ(sensors[1]->Publish(acks, R"({"message_id":"ack-me"})", 1), 0);
  ASSERT_EQ(sensors[1]->Publish(
                acks, R"({"message_id":"ack-me","status":"displayed"})", 1),
            0);
  ASSERT_EQ(sensors[2]->Publish(acks, R"({"message_id":"other"})", 1), 0);
  // One with a ttl of 1 s, also queued for an offline durable session that
  // returns after it expired.
  const ClientOptions durable = Durable(kMqtt311, "sensor-durable");
  {
    Client d(broker_.port(), durable);
    ASSERT_EQ(d.Connect("sensor-001", "sensor-pass"), 0);
    ASSERT_EQ(d.Subscribe(kSensorToken, 1), 1);
    d.Disconnect();
  }
  ASSERT_EQ(
      backend->Publish(kSensorToken, R"({"title":"x","body":"b","ttl":1})", 1),
      0);
  for (auto& s : sensors) ASSERT_TRUE(s->WaitForMessage().has_value());
  SleepMs(1100);  // past its ttl
  Client returned(broker_.port(), durable);
  ASSERT_EQ(returned.Connect("sensor-001", "sensor-pass"), 0);

  std::string raw;
  json j = NextStats(monitor.get(), kStatsWaitMs, &raw);
  ASSERT_TRUE(j.is_object()) << "no stats after the traffic";
  const int64_t received_at = WallMs();
  auto ordered = nlohmann::ordered_json::parse(raw);
  SCOPED_TRACE(j.dump());
  EXPECT_EQ(j.value("total_sent", -1), 44);
  EXPECT_EQ(j.value("total_success", -1), 39);
  EXPECT_EQ(j.value("total_failed", -1), 5);
  // 37 and "ack-me" to three sessions, the ttl-1 one to three and queued
  // for the durable one, where it expired.
  EXPECT_EQ(j.value("deliveries", -1), 118);
  EXPECT_EQ(j.value("expired", -1), 1);
  // The four sensor sessions subscribe to their token (the durable one kept
  // its subscription); the backend and the monitor do not.
  EXPECT_EQ(j.value("reachable", -1), 4);
  EXPECT_EQ(j.value("connected_not_subscribed", -1), 2);
  EXPECT_EQ(j["acks"], json::parse(R"({"matched":3,"unmatched":1})"));
  EXPECT_EQ(j["receipts"], json::parse(R"({"sent":0})"));
  EXPECT_GT(ParseStampMs(j.value("last_sent", "")), 0);
  EXPECT_EQ(j.value("connection_count", -1), 7);
  EXPECT_EQ(j.value("connected", -1), 6);
  EXPECT_EQ(j["auth"],
            json::parse(R"({"success":7,"failure":0,"locked_out":0})"));
  EXPECT_EQ(
      j["acl"],
      json::parse(
          R"({"publish_denied":0,"subscribe_denied":0,"deliver_denied":0})"));
  EXPECT_EQ(j["rejected"], json::parse(R"({"invalid_json":1,"not_object":1,
      "missing_field":1,"wrong_type":0,"bad_priority":1,"bad_timestamp":0,
      "too_large":0,"topic_too_deep":1})"));
  EXPECT_EQ(j["qos"], json::parse(R"({"0":12,"1":15,"2":12})"));
  EXPECT_EQ(
      j["priority"],
      json::parse(R"({"low":5,"normal":8,"high":7,"urgent":4,"critical":3})"));
  ASSERT_TRUE(j["registry"].is_object());
  EXPECT_EQ(j["registry"].value("devices", -1), 3);
  EXPECT_EQ(j["registry"].value("acl_rules", -1), 3);
  EXPECT_EQ(j["registry"].value("generation", -1),
            registry_.QueryInt("SELECT generation FROM registry_meta"));
  EXPECT_GT(ParseStampMs(j["registry"].value("loaded_at", "")), 0);
  EXPECT_TRUE(j["registry"].contains("last_error") &&
              j["registry"]["last_error"].is_null());
  EXPECT_TRUE(j["uptime_s"].is_number_integer());
  EXPECT_TRUE(
      std::regex_match(j.value("version", ""), std::regex(R"(\d+\.\d+\.\d+)")));
  EXPECT_LE(ParseStampMs(j.value("timestamp", "")), received_at);
  // The keys of docs/operating.md "Statistics", in its order.
  std::vector<std::string> keys;
  for (auto it = ordered.begin(); it != ordered.end(); ++it) {
    keys.push_back(it.key());
  }
  EXPECT_EQ(keys, test::StatsKeys());
  // Each sensor got each notification once.
  for (auto& s : sensors) {
    EXPECT_TRUE(NothingBefore(s.get(), backend.get(), kSensorToken))
        << s->client_id();
  }
  // device_stats carries the acknowledgements, the expired copy and the
  // presence, once the flushes after the last event are written.
  EXPECT_TRUE(Eventually(
      [&] {
        return registry_.QueryInt(
                   "SELECT acked = 3 AND expired = 1 AND sessions = 4 AND "
                   "subscribed = 4 FROM device_stats WHERE "
                   "device_id = 'sensor-001'") == 1;
      },
      5000))
      << DescribeDeviceStats();
  EXPECT_EQ(registry_.QueryInt("SELECT subscribed FROM device_stats WHERE "
                               "device_id = 'homepot'"),
            0);
}

// A QoS 2 PUBLISH retransmitted with DUP before PUBREL is one notification:
// Mosquitto runs the ACL check and the message event again for it, but
// routes it once.
TEST_F(StatsTest, Qos2RetransmissionIsCountedOnce) {
  ASSERT_TRUE(registry_.Grant("monitor", kSensorToken, "write"));
  ASSERT_TRUE(StartBroker({"stats_interval 1"}));
  auto sensor = ConnectAs("sensor-001", "sensor-pass");
  auto monitor = Monitor();
  ASSERT_TRUE(sensor && monitor);
  ASSERT_EQ(sensor->Subscribe(kSensorToken, 2), 2);
  RawClient raw;
  ASSERT_TRUE(raw.Open(broker_.port()));
  ASSERT_EQ(raw.Connect(kMqtt311, "raw-dup", "homepot", "backend-pass"), 0);
  std::string payload = Valid(1, "urgent");
  ASSERT_TRUE(raw.Send(
      RawClient::PublishPacket(kMqtt311, kSensorToken, payload, 2, 7)));
  auto p = raw.Read();
  ASSERT_TRUE(p && p->type() == 5);
  ASSERT_TRUE(raw.Send(RawClient::PublishPacket(kMqtt311, kSensorToken, payload,
                                                2, 7, /*dup=*/true)));
  p = raw.Read();
  ASSERT_TRUE(p && p->type() == 5);
  ASSERT_TRUE(raw.Send(RawClient::PubrelPacket(7)));
  p = raw.Read();
  ASSERT_TRUE(p && p->type() == 7);
  ASSERT_TRUE(sensor->WaitForMessage().has_value());

  json j = NextStats(monitor.get());
  ASSERT_TRUE(j.is_object());
  SCOPED_TRACE(j.dump());
  EXPECT_EQ(j.value("deliveries", -1), 1);
  EXPECT_EQ(j.value("total_sent", -1), 1);
  EXPECT_EQ(j.value("total_success", -1), 1);
  EXPECT_EQ(j["qos"].value("2", -1), 1);
  EXPECT_EQ(j["priority"].value("urgent", -1), 1);
  // Routed once.
  EXPECT_TRUE(NothingBefore(sensor.get(), monitor.get(), kSensorToken));
  raw.Close();
  monitor.reset();
  sensor.reset();
  broker_.Stop();
  DeviceRow backend_row = DeviceStats("homepot");
  EXPECT_EQ(backend_row.published, 1) << DescribeDeviceStats();
}

// total_sent = total_success + total_failed, and deliveries count
// notification copies only: a will on a notification topic is a
// notification (validated like one, docs/operating.md "Notifications") and,
// when valid, routed; a zero-length retained clear is not a notification at
// all.
TEST_F(StatsTest, WillsAndRetainedClearsKeepTheCountersConsistent) {
  ASSERT_TRUE(StartBroker({"stats_interval 1"}));
  auto sensor = ConnectAs("sensor-001", "sensor-pass");
  auto backend = ConnectAs("homepot", "backend-pass");
  auto monitor = Monitor();
  ASSERT_TRUE(sensor && backend && monitor);
  ASSERT_EQ(sensor->Subscribe(kSensorToken, 1), 1);

  // One retained notification, then its clearing.
  ASSERT_EQ(backend->Publish(kSensorToken, Valid(1, "low"), 1, true), 0);
  ASSERT_TRUE(sensor->WaitForMessage().has_value());
  ASSERT_EQ(backend->Publish(kSensorToken, "", 1, true), 0);
  ASSERT_TRUE(sensor->WaitForMessage().has_value());
  // A valid will, delivered.
  {
    Client will(broker_.port());
    will.SetWill(kSensorToken, Valid(2, "urgent"), 1);
    ASSERT_EQ(will.Connect("homepot", "backend-pass"), 0);
    will.DropConnection();
  }
  ASSERT_TRUE(sensor->WaitForMessage().has_value());
  // An invalid will, refused.
  {
    Client will(broker_.port());
    will.SetWill(kSensorToken, "{bad", 1);
    ASSERT_EQ(will.Connect("homepot", "backend-pass"), 0);
    will.DropConnection();
  }

  json j = NextStats(monitor.get());
  ASSERT_TRUE(j.is_object());
  SCOPED_TRACE(j.dump());
  EXPECT_EQ(j.value("total_sent", -1),
            j.value("total_success", -1) + j.value("total_failed", -1));
  EXPECT_EQ(j.value("total_sent", -1), 3);
  EXPECT_EQ(j.value("total_success", -1), 2);
  EXPECT_EQ(j.value("total_failed", -1), 1);
  EXPECT_EQ(j.value("deliveries", -1), 2);
  EXPECT_EQ(j["rejected"].value("invalid_json", -1), 1);
  // The stats counted the invalid will: it was handled, and not delivered.
  EXPECT_TRUE(NothingBefore(sensor.get(), backend.get(), kSensorToken));
}

TEST_F(StatsTest, ConnectedFollowsConnectsDisconnectsKicksAndTimeouts) {
  ASSERT_TRUE(registry_.AddDevice("leaver", "iot_sensor", "pw"));
  ASSERT_TRUE(registry_.AddDevice("kicked", "iot_sensor", "pw"));
  ASSERT_TRUE(registry_.AddDevice("sleeper", "iot_sensor", "pw"));
  ASSERT_TRUE(StartBroker({"stats_interval 1", "reload_interval_ms 100"}));
  auto monitor = Monitor();
  auto leaver = ConnectAs("leaver", "pw");
  auto kicked = ConnectAs("kicked", "pw", kMqtt311);
  // Silent from the start with keepalive 1 (raw MQTT: libmosquitto refuses
  // keepalives below 5 s). Mosquitto 2.0.11 checks keepalives only every
  // 6 s (keepalive.c), so it goes at the first check after start.
  RawClient sleeper;
  ASSERT_TRUE(sleeper.Open(broker_.port()));
  ASSERT_EQ(sleeper.Connect(kMqtt311, "sleeper-1", "sleeper", "pw", 1), 0);
  ASSERT_TRUE(monitor && leaver && kicked);
  // A refused login is not a connection.
  Client refused(broker_.port());
  EXPECT_NE(refused.Connect("kicked", "wrong"), 0);

  json last;
  json j = WaitForStats(
      monitor.get(),
      [](const json& s) { return s.value("connected", -1) == 4; }, 10000,
      &last);
  ASSERT_TRUE(j.is_object()) << "last: " << last.dump();
  EXPECT_EQ(j.value("connection_count", -1), 4);

  // Three ways to go: DISCONNECT, kicked by the registry, keepalive timeout.
  leaver->Disconnect();
  ASSERT_TRUE(registry_.Exec(
      "UPDATE devices SET enabled = 0 WHERE device_id = 'kicked'"));
  EXPECT_TRUE(kicked->WaitForDisconnect(10000)) << "not kicked";

  j = WaitForStats(
      monitor.get(),
      [](const json& s) { return s.value("connected", -1) == 2; }, 10000,
      &last);
  EXPECT_TRUE(j.is_object()) << "last: " << last.dump();
  int64_t lowest = 99;
  j = WaitForStats(
      monitor.get(),
      [&](const json& s) {
        lowest = std::min<int64_t>(lowest, s.value("connected", -1));
        return s.value("connected", -1) == 1;
      },
      20000, &last);
  ASSERT_TRUE(j.is_object()) << "last: " << last.dump() << "\n"
                             << Tail(broker_.Log(), 15);
  EXPECT_GE(lowest, 1);
  EXPECT_EQ(j.value("connection_count", -1), 4);
  EXPECT_EQ(j["auth"].value("failure", -1), 1);
  EXPECT_TRUE(sleeper.WaitForClose(5000)) << "the silent client is still on";
  EXPECT_TRUE(broker_.WaitForLog("exceeded timeout", 5000))
      << Tail(broker_.Log(), 15);
}

// A second CONNECT with a client id in use takes the session over; the old
// connection is closed by the broker. Still one connection for that id.
TEST_F(StatsTest, SessionTakeoverCountsOneConnection) {
  ASSERT_TRUE(StartBroker({"stats_interval 1"}));
  auto monitor = Monitor();
  ASSERT_TRUE(monitor);
  auto first = ConnectAs("sensor-001", "sensor-pass", kMqtt311, "same-id");
  ASSERT_TRUE(first);
  auto second = ConnectAs("sensor-001", "sensor-pass", kMqtt5, "same-id");
  ASSERT_TRUE(second);
  EXPECT_TRUE(first->WaitForDisconnect(10000));
  json j = NextStats(monitor.get());
  ASSERT_TRUE(j.is_object());
  EXPECT_EQ(j.value("connected", -1), 2) << j.dump();
  EXPECT_EQ(j.value("connection_count", -1), 3) << j.dump();
  second->Disconnect();
  json last;
  j = WaitForStats(
      monitor.get(),
      [](const json& s) { return s.value("connected", -1) == 1; }, 10000,
      &last);
  EXPECT_TRUE(j.is_object()) << last.dump();
}

TEST_F(StatsTest, OnlyReadersWithARuleSeeStatsAndNobodyWritesThem) {
  ASSERT_TRUE(registry_.AddDevice("nosy", "gateway", "pw"));
  ASSERT_TRUE(registry_.AddDevice("plain", "iot_sensor", "pw"));
  ASSERT_TRUE(registry_.Grant("nosy", "#", "readwrite"));
  ASSERT_TRUE(StartBroker({"stats_interval 1"}));
  auto nosy = ConnectAs("nosy", "pw");
  auto plain = ConnectAs("plain", "pw", kMqtt311);
  auto backend = ConnectAs("homepot", "backend-pass");
  ASSERT_TRUE(nosy && plain && backend);
  EXPECT_EQ(nosy->Subscribe("#", 0), 0);
  nosy->Subscribe("$SYS/#", 0);  // refused or not, stats must not arrive
  nosy->Subscribe(kStatsTopic, 0);
  plain->Subscribe("#", 0);
  plain->Subscribe("$SYS/#", 0);
  plain->Subscribe(kStatsTopic, 0);

  // Nobody publishes there but the plugin, whatever the rules.
  const std::string fake = R"({"total_sent":999})";
  EXPECT_EQ(nosy->Publish(kStatsTopic, fake, 1, /*retain=*/true),
            kReasonNotAuthorized);
  EXPECT_EQ(nosy->Publish(kStatsTopic, fake, 0, /*retain=*/true), 0);
  EXPECT_EQ(backend->Publish(kStatsTopic, fake, 1, /*retain=*/true),
            kReasonNotAuthorized);
  EXPECT_EQ(nosy->Publish("$SYS/homepot/other", fake, 1), kReasonNotAuthorized);

  auto monitor = Monitor();
  ASSERT_TRUE(monitor);
  // Two stats objects (the retained one and a fresh one, or two fresh), all
  // the plugin's own: nothing was counted.
  for (int seen = 0; seen < 2; ++seen) {
    auto m = monitor->WaitForMessage(10000);
    ASSERT_TRUE(m.has_value())
        << "the reader with the rule got only " << seen << " stats";
    ASSERT_EQ(m->topic, kStatsTopic);
    json j = json::parse(m->payload, nullptr, false);
    ASSERT_TRUE(j.is_object()) << m->payload;
    EXPECT_EQ(j.value("total_sent", -1), 0) << m->payload;
  }
  // Those stats went to the readers with a rule only.
  ASSERT_EQ(plain->Subscribe("devices/plain/notifications", 0), 0);
  const std::pair<Client*, const char*> others[] = {
      {nosy.get(), "factory/barrier"},
      {plain.get(), "devices/plain/notifications"}};
  for (const auto& [c, barrier_topic] : others) {
    std::vector<Message> before;
    ASSERT_TRUE(ReceiveUntilBarrier(c, backend.get(), barrier_topic, &before));
    for (const Message& m : before) {
      EXPECT_NE(m.topic.rfind("$SYS/homepot/", 0), 0u)
          << c->client_id() << " got " << m.topic << ": " << m.payload;
    }
  }
}

TEST_F(StatsTest, IntervalZeroPublishesNoStats) {
  ASSERT_TRUE(registry_.Grant("monitor", "factory/#", "read"));
  ASSERT_TRUE(StartBroker({"stats_interval 0"}));
  auto sensor = ConnectAs("sensor-001", "sensor-pass");
  auto backend = ConnectAs("homepot", "backend-pass");
  ASSERT_TRUE(sensor && backend);
  ASSERT_EQ(sensor->Subscribe(kSensorToken, 1), 1);
  ASSERT_EQ(backend->Publish(kSensorToken, Valid(1), 1), 0);
  ASSERT_TRUE(sensor->WaitForMessage().has_value());
  // Two seconds in which stats_interval 1 would have published twice.
  SleepMs(2000);
  auto monitor = Monitor();
  ASSERT_TRUE(monitor);
  // No stats retained: the first message is the barrier.
  ASSERT_EQ(monitor->Subscribe("factory/#", 1), 1);
  EXPECT_TRUE(NothingBefore(monitor.get(), backend.get(), "factory/barrier"))
      << "stats retained with interval 0";
}

TEST_F(StatsTest, PerListenerSettingsStillPublishStats) {
  ASSERT_TRUE(StartBroker({"stats_interval 1"}, {}, /*per_listener=*/true));
  auto sensor = ConnectAs("sensor-001", "sensor-pass");
  auto backend = ConnectAs("homepot", "backend-pass");
  auto monitor = Monitor();
  ASSERT_TRUE(sensor && backend && monitor);
  ASSERT_EQ(sensor->Subscribe(kSensorToken, 1), 1);
  // No TICK with per_listener_settings true: traffic drives the schedule.
  int sent = 0;
  std::vector<json> stats;
  auto deadline =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(20000);
  while (std::chrono::steady_clock::now() < deadline && stats.size() < 2) {
    ASSERT_EQ(backend->Publish(kSensorToken, Valid(sent), 1), 0);
    ++sent;
    ASSERT_TRUE(sensor->WaitForMessage().has_value());
    while (auto m = monitor->WaitForMessage(150)) {
      json j = json::parse(m->payload, nullptr, false);
      ASSERT_TRUE(j.is_object()) << m->payload;
      stats.push_back(j);
    }
  }
  ASSERT_GE(stats.size(), 2u) << "stats not published with "
                                 "per_listener_settings true";
  EXPECT_GE(stats.back().value("total_success", -1), 1) << stats.back().dump();
  EXPECT_EQ(stats.back().value("connected", -1), 3) << stats.back().dump();
}

TEST_F(StatsTest, DeviceStatsAddUpAcrossRestarts) {
  // Long interval: only the clean shutdown writes device_stats.
  ASSERT_TRUE(StartBroker({"stats_interval 60"}));
  int64_t start = WallMs();
  {
    auto sensor = ConnectAs("sensor-001", "sensor-pass");
    auto backend = ConnectAs("homepot", "backend-pass");
    ASSERT_TRUE(sensor && backend);
    ASSERT_EQ(sensor->Subscribe(kSensorToken, 1), 1);
    for (int i = 0; i < 5; ++i) {
      ASSERT_EQ(backend->Publish(kSensorToken, Valid(i), 1), 0);
    }
    EXPECT_EQ(backend->Publish(kSensorToken, "nope", 1), kReasonNotAuthorized);
    EXPECT_EQ(backend->Publish(kSensorToken, "{}", 1), kReasonNotAuthorized);
    for (int i = 0; i < 5; ++i) ASSERT_TRUE(sensor->WaitForMessage());
  }
  int status = broker_.Stop();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;

  DeviceRow b = DeviceStats("homepot");
  DeviceRow s = DeviceStats("sensor-001");
  ASSERT_TRUE(b.found && s.found)
      << DescribeDeviceStats() << Tail(broker_.Log(), 10);
  EXPECT_EQ(b.published, 5);
  EXPECT_EQ(b.delivered, 0);
  EXPECT_EQ(b.rejected, 2);
  EXPECT_EQ(s.published, 0);
  EXPECT_EQ(s.delivered, 5);
  EXPECT_EQ(s.rejected, 0);
  ASSERT_TRUE(b.last_connect && b.last_publish);
  EXPECT_FALSE(b.last_delivery.has_value());
  ASSERT_TRUE(s.last_connect && s.last_delivery);
  EXPECT_FALSE(s.last_publish.has_value());
  EXPECT_GE(ParseStampMs(*b.last_publish), start - 1000) << *b.last_publish;
  EXPECT_GE(ParseStampMs(*s.last_delivery), start - 1000) << *s.last_delivery;
  EXPECT_FALSE(
      registry_.QueryInt("SELECT count(*) FROM device_stats WHERE device_id = "
                         "'monitor'") > 0)
      << "a device that never connected has a row";

  SleepMs(20);  // so that the second run's stamps are later
  ASSERT_TRUE(StartBroker({"stats_interval 60"}));
  {
    auto sensor = ConnectAs("sensor-001", "sensor-pass");
    auto backend = ConnectAs("homepot", "backend-pass");
    ASSERT_TRUE(sensor && backend);
    ASSERT_EQ(sensor->Subscribe(kSensorToken, 1), 1);
    for (int i = 0; i < 3; ++i) {
      ASSERT_EQ(backend->Publish(kSensorToken, Valid(i), 2), 0);
    }
    EXPECT_EQ(backend->Publish(kSensorToken, "[]", 1), kReasonNotAuthorized);
    for (int i = 0; i < 3; ++i) ASSERT_TRUE(sensor->WaitForMessage());
  }
  broker_.Stop();
  DeviceRow b2 = DeviceStats("homepot");
  DeviceRow s2 = DeviceStats("sensor-001");
  EXPECT_EQ(b2.published, 8) << DescribeDeviceStats();
  EXPECT_EQ(b2.rejected, 3);
  EXPECT_EQ(s2.delivered, 8);
  ASSERT_TRUE(b2.last_connect && s2.last_delivery);
  EXPECT_GT(*b2.last_connect, *b.last_connect);
  EXPECT_GT(*s2.last_delivery, *s.last_delivery);

  // homepot-admin shows them.
  std::string out;
  ASSERT_EQ(RunCommand({HOMEPOT_ADMIN_PATH, "--db", registry_.db_path(),
                        "stats", "--json"},
                       "", &out),
            0)
      << out;
  json list = json::parse(out, nullptr, false);
  ASSERT_TRUE(list.is_array()) << out;
  std::map<std::string, json> by_id;
  for (const json& row : list) by_id[row.value("device_id", "")] = row;
  ASSERT_TRUE(by_id.count("homepot") && by_id.count("sensor-001")) << out;
  EXPECT_EQ(by_id["homepot"].value("published", -1), 8);
  EXPECT_EQ(by_id["homepot"].value("rejected", -1), 3);
  EXPECT_EQ(by_id["sensor-001"].value("delivered", -1), 8);
  EXPECT_EQ(by_id["sensor-001"].value("last_delivery", ""), *s2.last_delivery);
  ASSERT_EQ(RunCommand({HOMEPOT_ADMIN_PATH, "--db", registry_.db_path(),
                        "stats", "sensor-001"},
                       "", &out),
            0)
      << out;
  EXPECT_NE(out.find("sensor-001"), std::string::npos) << out;
  EXPECT_NE(out.find(*s2.last_delivery), std::string::npos) << out;
}

// A broker that stops leaves no presence in its rows (nobody is connected
// to it any more), so a node retired for good does not make its devices
// look connected in fleet_stats.
TEST_F(StatsTest, AStoppedNodeLeavesNoPresence) {
  ASSERT_TRUE(StartBroker({"stats_interval 1"}));
  auto sensor = ConnectAs("sensor-001", "sensor-pass");
  ASSERT_TRUE(sensor);
  ASSERT_EQ(sensor->Subscribe(kSensorToken, 1), 1);
  const std::string presence =
      "SELECT sessions * 10 + subscribed FROM device_stats "
      "WHERE device_id = 'sensor-001'";
  ASSERT_TRUE(
      Eventually([&] { return registry_.QueryInt(presence) == 11; }, 5000))
      << DescribeDeviceStats();
  // Stopped with the sensor still connected.
  int status = broker_.Stop();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  EXPECT_EQ(registry_.QueryInt(presence), 0) << DescribeDeviceStats();
  EXPECT_EQ(registry_.QueryInt("SELECT sessions FROM fleet_stats "
                               "WHERE device_id = 'sensor-001'"),
            0);
}

TEST_F(StatsTest, FlushWaitsOutALockedRegistryWithoutStallingMessages) {
  ASSERT_TRUE(StartBroker({"stats_interval 1"}));
  auto sensor = ConnectAs("sensor-001", "sensor-pass");
  auto backend = ConnectAs("homepot", "backend-pass");
  ASSERT_TRUE(sensor && backend);
  ASSERT_EQ(sensor->Subscribe(kSensorToken, 1), 1);

  // Another process-like connection holds the write lock for ~3 s.
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open_v2(registry_.db_path().c_str(), &db,
                            SQLITE_OPEN_READWRITE, nullptr),
            SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr),
            SQLITE_OK)
      << sqlite3_errmsg(db);
  // Notifications keep flowing while flushes (one a second) find the file
  // locked: at least 3 s, and until a flush was delayed by the lock.
  auto locked_at = std::chrono::steady_clock::now();
  int sent = 0;
  for (; sent < 1000; ++sent) {
    bool long_enough = std::chrono::steady_clock::now() - locked_at >=
                       std::chrono::milliseconds(3000);
    if (long_enough &&
        CountOccurrences(broker_.Log(), "device_stats flush delayed") > 0) {
      break;
    }
    ASSERT_EQ(backend->Publish(kSensorToken, Valid(sent), 1), 0);
    ASSERT_TRUE(sensor->WaitForMessage().has_value()) << sent;
    SleepMs(50);  // paces the load
  }
  // Nothing could be written meanwhile.
  int64_t during = registry_.QueryInt(
      "SELECT coalesce(sum(published), 0) FROM device_stats");
  ASSERT_EQ(sqlite3_exec(db, "COMMIT", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(db);
  EXPECT_EQ(during, 0);
  EXPECT_LT(sent, 1000) << "no flush was delayed by the lock";

  EXPECT_TRUE(WaitForDeviceStats(
      {{"homepot", {sent, 0, 0}}, {"sensor-001", {0, sent, 0}}}, 10000))
      << "sent " << sent << "; device_stats:\n"
      << DescribeDeviceStats() << Tail(broker_.Log(), 10);
  EXPECT_TRUE(broker_.WaitForLog("device_stats flush delayed", 5000))
      << "the lock was never hit?\n"
      << Tail(broker_.Log(), 10);
}

TEST_F(StatsTest, KillNineLosesAtMostOneInterval) {
  ASSERT_TRUE(StartBroker({"stats_interval 1"}));
  {
    auto sensor = ConnectAs("sensor-001", "sensor-pass");
    auto backend = ConnectAs("homepot", "backend-pass");
    ASSERT_TRUE(sensor && backend);
    ASSERT_EQ(sensor->Subscribe(kSensorToken, 1), 1);
    for (int i = 0; i < 10; ++i) {
      ASSERT_EQ(backend->Publish(kSensorToken, Valid(i), 1), 0);
    }
    EXPECT_EQ(backend->Publish(kSensorToken, "{", 1), kReasonNotAuthorized);
    for (int i = 0; i < 10; ++i) ASSERT_TRUE(sensor->WaitForMessage());
    // The next periodic flush writes them; kill -9 right after it.
    ASSERT_TRUE(WaitForDeviceStats(
        {{"homepot", {10, 0, 1}}, {"sensor-001", {0, 10, 0}}}, 10000))
        << DescribeDeviceStats();
    broker_.Kill();
  }
  DeviceRow b = DeviceStats("homepot");
  DeviceRow s = DeviceStats("sensor-001");
  EXPECT_EQ(b.published, 10) << DescribeDeviceStats();
  EXPECT_EQ(b.rejected, 1);
  EXPECT_EQ(s.delivered, 10);
  EXPECT_TRUE(b.last_publish && s.last_delivery && b.last_connect);
}

// Two brokers with their own node_id on one registry file, a backend
// publishing through both and the sensor subscribed on both: each broker
// counts its own traffic (its stats JSON carries its node), device_stats has
// a row per device and node, fleet_stats adds them up exactly, the delivery
// log rows carry the node, and a broker that restarts resets only its own
// presence.
TEST_F(StatsTest, TwoNodesOnOneRegistryAddUp) {
  ASSERT_TRUE(StartBroker({"stats_interval 1", "node_id node-a"}));
  test::TempDir dir_b("homepot-it-node-b");
  ASSERT_TRUE(dir_b.ok());
  Broker broker_b(dir_b.path());
  BrokerConfig config_b;
  config_b.db_path = registry_.db_path();
  config_b.plugin_options = {"stats_interval 1", "node_id node-b"};
  ASSERT_TRUE(broker_b.Start(config_b));

  // node -> its broker's port, and what the backend publishes there.
  const std::map<std::string, std::pair<int, int>> nodes = {
      {"node-a", {broker_.port(), 3}}, {"node-b", {broker_b.port(), 4}}};
  std::map<std::string, std::unique_ptr<Client>> sensors, monitors;
  for (const auto& [node, where] : nodes) {
    const auto& [port, count] = where;
    auto sensor = std::make_unique<Client>(port, kMqtt5, "sensor-" + node);
    ASSERT_EQ(sensor->Connect("sensor-001", "sensor-pass"), 0) << node;
    ASSERT_EQ(sensor->Subscribe(kSensorToken, 1), 1) << node;
    auto monitor = std::make_unique<Client>(port);
    ASSERT_EQ(monitor->Connect("monitor", "monitor-pass"), 0) << node;
    ASSERT_EQ(monitor->Subscribe(kStatsTopic, 0), 0) << node;
    Client backend(port);
    ASSERT_EQ(backend.Connect("homepot", "backend-pass"), 0) << node;
    for (int i = 0; i < count; ++i) {
      ASSERT_EQ(backend.Publish(
                    kSensorToken,
                    NotificationWithId(node + "-" + std::to_string(i)), 1),
                0)
          << node << " " << i;
      ASSERT_TRUE(sensor->WaitForMessage().has_value()) << node << " " << i;
    }
    backend.Disconnect();
    sensors[node] = std::move(sensor);
    monitors[node] = std::move(monitor);
  }

  // Each broker's stats are its own, and say which node it is.
  for (const auto& [node, where] : nodes) {
    const int count = where.second;
    json last;
    json j = WaitForStats(
        monitors[node].get(),
        [&](const json& s) { return s.value("total_success", -1) == count; },
        kStatsWaitMs, &last);
    ASSERT_TRUE(j.is_object()) << node << " last: " << last.dump();
    EXPECT_EQ(j.value("node", ""), node) << j.dump();
    EXPECT_EQ(j.value("deliveries", -1), count) << j.dump();
  }

  // The final rows: both nodes' counts, presence and log rows written.
  const std::string fleet_written =
      "SELECT (SELECT published = 7 AND sessions = 0 AND nodes = 2 "
      "FROM fleet_stats WHERE device_id = 'homepot') AND (SELECT "
      "delivered = 7 AND "
      "sessions = 2 AND subscribed = 2 AND nodes = 2 FROM fleet_stats "
      "WHERE device_id = 'sensor-001') AND (SELECT count(*) = 7 FROM "
      "notification_log)";
  ASSERT_TRUE(Eventually([&] { return registry_.QueryInt(fleet_written) == 1; },
                         kStatsWaitMs, 100))
      << DescribeDeviceStats();
  std::vector<TempRegistry::Row> rows;
  ASSERT_TRUE(registry_.Query(
      "SELECT device_id, node, published, delivered, sessions, subscribed "
      "FROM device_stats WHERE device_id IN ('homepot', 'sensor-001') "
      "ORDER BY device_id, node",
      &rows));
  std::vector<std::string> lines;
  for (const auto& row : rows) {
    std::string line;
    for (const auto& cell : row) line += cell.value_or("NULL") + "|";
    lines.push_back(line);
  }
  EXPECT_EQ(lines,
            (std::vector<std::string>{
                "homepot|node-a|3|0|0|0|", "homepot|node-b|4|0|0|0|",
                "sensor-001|node-a|0|3|1|1|", "sensor-001|node-b|0|4|1|1|"}));
  EXPECT_EQ(registry_.QueryInt(
                "SELECT count(*) FROM notification_log WHERE node = 'node-a' "
                "AND message_id LIKE 'node-a-%' AND outcome = 'routed'"),
            3);
  EXPECT_EQ(registry_.QueryInt(
                "SELECT count(*) FROM notification_log WHERE node = 'node-b' "
                "AND message_id LIKE 'node-b-%' AND outcome = 'routed'"),
            4);

  // homepot-admin shows the sums, and the rows per node.
  std::string out;
  ASSERT_EQ(RunCommand({HOMEPOT_ADMIN_PATH, "--db", registry_.db_path(),
                        "stats", "sensor-001", "--json"},
                       "", &out),
            0)
      << out;
  json sums = json::parse(out, nullptr, false);
  ASSERT_TRUE(sums.is_array() && sums.size() == 1) << out;
  EXPECT_EQ(sums[0].value("delivered", -1), 7) << out;
  EXPECT_EQ(sums[0].value("sessions", -1), 2) << out;
  ASSERT_EQ(RunCommand({HOMEPOT_ADMIN_PATH, "--db", registry_.db_path(),
                        "stats", "homepot", "--by-node", "--json"},
                       "", &out),
            0)
      << out;
  json per_node = json::parse(out, nullptr, false);
  ASSERT_TRUE(per_node.is_array() && per_node.size() == 2) << out;
  EXPECT_EQ(per_node[0].value("node", ""), "node-a") << out;
  EXPECT_EQ(per_node[0].value("published", -1), 3) << out;
  EXPECT_EQ(per_node[1].value("node", ""), "node-b") << out;
  EXPECT_EQ(per_node[1].value("published", -1), 4) << out;

  // node-b dies with its sensor session on and comes back: when it
  // starts, its presence goes to 0 (nobody is connected to it yet), while
  // node-a's sensor session stays counted.
  broker_b.Kill();
  sensors["node-b"].reset();
  monitors["node-b"].reset();
  EXPECT_EQ(registry_.QueryInt("SELECT sessions FROM fleet_stats WHERE "
                               "device_id = 'sensor-001'"),
            2);
  ASSERT_TRUE(broker_b.Start(config_b));
  EXPECT_TRUE(Eventually(
      [&] {
        return registry_.QueryInt(
                   "SELECT sessions = 1 AND subscribed = 1 AND "
                   "delivered = 7 FROM fleet_stats WHERE "
                   "device_id = 'sensor-001'") == 1;
      },
      kStatsWaitMs, 100))
      << DescribeDeviceStats();
  EXPECT_EQ(registry_.QueryInt("SELECT sessions = 1 AND subscribed = 1 FROM "
                               "device_stats WHERE device_id = 'sensor-001' "
                               "AND node = 'node-a'"),
            1)
      << DescribeDeviceStats();
}

}  // namespace
}  // namespace integration
}  // namespace homepot
