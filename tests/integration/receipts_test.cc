// Receipts, acknowledgements and reachability against the real broker: the
// publisher's receipt counts the copies routed to connected sessions and
// kept for offline ones, a device's acknowledgement produces a second
// receipt with its latency, nobody else can read a receipt or acknowledge
// for another device, and the stats tell reachable devices from connected
// ones that are not subscribed.
#include <memory>
#include <string>
#include <vector>

#include "device.h"
#include "harness.h"

namespace homepot {
namespace integration {
namespace {

const std::string kReceipts = "$SYS/homepot/receipts/homepot";

class ReceiptsTest : public BrokerTest {
 protected:
  void SetUp() override {
    ASSERT_TRUE(registry_.AddDevice("homepot", "backend", "backend-pass"));
    for (const char* id : {"sensor-001", "sensor-002", "sensor-003"}) {
      ASSERT_TRUE(registry_.AddDevice(id, "iot_sensor", "sensor-pass"));
    }
    ASSERT_TRUE(registry_.AddDevice("monitor", "unknown", "monitor-pass"));
    ASSERT_TRUE(registry_.AddDevice("evil", "backend", "evil-pass"));
    ASSERT_TRUE(registry_.Grant("homepot", "devices/+/notifications", "write"));
    ASSERT_TRUE(registry_.Grant("homepot", "home/#", "write"));
    ASSERT_TRUE(registry_.Grant("evil", "devices/+/notifications", "write"));
    ASSERT_TRUE(registry_.Grant("homepot", "devices/+/acks", "read"));
    ASSERT_TRUE(registry_.Grant("monitor", kStatsTopic, "read"));
  }

  std::unique_ptr<Client> Sensor(const std::string& id,
                                 ClientOptions options = {}) {
    auto c = std::make_unique<Client>(broker_.port(), std::move(options));
    if (c->Connect(id, "sensor-pass") != 0) {
      ADD_FAILURE() << id << " could not connect";
      return nullptr;
    }
    return c;
  }
  // Opens `device`'s durable session, subscribes to its token and leaves.
  void SubscribeAndLeave(const std::string& device,
                         const ClientOptions& durable) {
    auto c = Sensor(device, durable);
    ASSERT_TRUE(c);
    ASSERT_EQ(c->Subscribe(DefaultToken(device), 1), 1);
    c->Disconnect();
  }
  // The backend, reading its receipts.
  std::unique_ptr<Client> Backend() {
    auto c = ConnectAs("homepot", "backend-pass");
    if (c && c->Subscribe(kReceipts, 1) != 1) {
      ADD_FAILURE() << "the backend cannot subscribe to its receipts";
      return nullptr;
    }
    return c;
  }
  // The next receipt `backend` gets, parsed (null after the timeout or for
  // a message that is not one).
  static nlohmann::json NextReceipt(Client* backend, int timeout_ms = 5000) {
    std::optional<Message> m = backend->WaitForMessage(timeout_ms);
    if (!m) return nullptr;
    EXPECT_EQ(m->topic, kReceipts);
    return nlohmann::json::parse(m->payload, nullptr, false);
  }
  // The first stats object satisfying `pred`, or null.
  nlohmann::json StatsWhere(
      const std::function<bool(const nlohmann::json&)>& pred,
      nlohmann::json* last) {
    auto monitor = ConnectAs("monitor", "monitor-pass");
    if (!monitor || monitor->Subscribe(kStatsTopic, 0) != 0) return nullptr;
    return WaitForStats(monitor.get(), pred, kStatsWaitMs, last);
  }
};

TEST_F(ReceiptsTest, CountsConnectedOfflineAndAbsentDevices) {
  ASSERT_TRUE(StartBroker({"stats_interval 1"}));
  auto live = Sensor("sensor-001");
  ASSERT_TRUE(live);
  ASSERT_EQ(live->Subscribe(DefaultToken("sensor-001"), 1), 1);
  const ClientOptions durable = Durable(kMqtt311, "sensor-002-durable");
  ASSERT_NO_FATAL_FAILURE(SubscribeAndLeave("sensor-002", durable));
  auto backend = Backend();
  ASSERT_TRUE(backend);

  struct Case {
    std::string device, id;
    int qos, routed, queued;
  };
  const std::vector<Case> cases = {
      {"sensor-001", "to-live", 1, 1, 0},
      {"sensor-002", "to-offline", 1, 0, 1},
      {"sensor-003", "to-nobody", 1, 0, 0},
      {"sensor-001", "to-live-qos2", 2, 1, 0},
      {"sensor-003", "to-nobody-qos2", 2, 0, 0},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.id);
    const int64_t before = WallMs();
    ASSERT_EQ(backend->Publish(DefaultToken(c.device),
                               NotificationWithId(c.id, 300), c.qos),
              0);
    nlohmann::json r = NextReceipt(backend.get());
    ASSERT_TRUE(r.is_object()) << r;
    EXPECT_EQ(r["message_id"], c.id);
    EXPECT_EQ(r["topic"], DefaultToken(c.device));
    EXPECT_EQ(r["routed"], c.routed);
    EXPECT_EQ(r["queued"], c.queued);
    const int64_t received = ParseStampMs(r["received_at"].get<std::string>());
    EXPECT_GE(received, before - 5);
    EXPECT_LE(received, WallMs());
    EXPECT_EQ(ParseStampMs(r["expires_at"].get<std::string>()),
              received + 300 * 1000);
  }
  // The live sensor got both of its notifications, stamped as the receipts
  // say.
  for (int i = 0; i < 2; ++i) {
    std::optional<Message> m = live->WaitForMessage();
    ASSERT_TRUE(m);
  }
  nlohmann::json last;
  nlohmann::json s = StatsWhere(
      [](const nlohmann::json& j) { return j["receipts"]["sent"] == 5; },
      &last);
  EXPECT_FALSE(s.is_null()) << last;
}

TEST_F(ReceiptsTest, NotificationWithoutMessageIdOrTtl) {
  ASSERT_TRUE(StartBroker());
  auto backend = Backend();
  ASSERT_TRUE(backend);
  ASSERT_EQ(backend->Publish(DefaultToken("sensor-001"), kNotification, 0), 0);
  nlohmann::json r = NextReceipt(backend.get());
  ASSERT_TRUE(r.is_object()) << r;
  EXPECT_TRUE(r["message_id"].is_null());
  EXPECT_TRUE(r["expires_at"].is_null());  // default_ttl 0: no limit
  EXPECT_EQ(r["routed"], 0);
  EXPECT_EQ(r["queued"], 0);
}

TEST_F(ReceiptsTest, AckGivesTheLatencyAndForeignAcksAreIgnored) {
  ASSERT_TRUE(StartBroker({"stats_interval 1"}));
  auto sensor = Sensor("sensor-001");
  auto other = Sensor("sensor-002");
  ASSERT_TRUE(sensor && other);
  ASSERT_EQ(sensor->Subscribe(DefaultToken("sensor-001"), 1), 1);
  auto backend = Backend();
  ASSERT_TRUE(backend);
  ASSERT_EQ(backend->Publish(DefaultToken("sensor-001"),
                             NotificationWithId("m-1", 300)),
            0);
  nlohmann::json routed = NextReceipt(backend.get());
  ASSERT_TRUE(routed.is_object());
  ASSERT_EQ(routed["routed"], 1);
  ASSERT_TRUE(sensor->WaitForMessage());

  // Another device cannot write this device's ack topic, and its own ack
  // of a message id it was never sent matches nothing.
  const std::string ack = R"({"message_id":"m-1","status":"displayed"})";
  EXPECT_EQ(other->Publish("devices/sensor-001/acks", ack, 1),
            kReasonNotAuthorized);
  EXPECT_EQ(other->Publish("devices/sensor-002/acks", ack, 1), 0);
  EXPECT_EQ(sensor->Publish("devices/sensor-001/acks",
                            R"({"message_id":"never-sent"})", 1),
            0);
  EXPECT_EQ(sensor->Publish("devices/sensor-001/acks", "not json", 1), 0);
  // The device's own ack of what it was sent.
  ASSERT_EQ(sensor->Publish("devices/sensor-001/acks", ack, 1), 0);
  nlohmann::json r = NextReceipt(backend.get());
  ASSERT_TRUE(r.is_object()) << r;
  EXPECT_EQ(r["message_id"], "m-1");
  EXPECT_EQ(r["device"], "sensor-001");
  EXPECT_EQ(r["status"], "displayed");
  const int64_t acked = ParseStampMs(r["acked_at"].get<std::string>());
  EXPECT_EQ(r["latency_ms"].get<int64_t>(),
            acked - ParseStampMs(routed["received_at"].get<std::string>()));
  EXPECT_GE(r["latency_ms"].get<int64_t>(), 0);
  nlohmann::json last;
  nlohmann::json s = StatsWhere(
      [](const nlohmann::json& j) {
        return j["acks"]["matched"] == 1 && j["acks"]["unmatched"] == 3;
      },
      &last);
  EXPECT_FALSE(s.is_null()) << last;
}

TEST_F(ReceiptsTest, OnlyThePublisherReadsItsReceipts) {
  ASSERT_TRUE(StartBroker());
  auto other = Sensor("sensor-002");
  ASSERT_TRUE(other);
  EXPECT_EQ(other->Subscribe(kReceipts, 1), kReasonNotAuthorized);
  EXPECT_EQ(other->Subscribe("$SYS/homepot/receipts/+", 1),
            kReasonNotAuthorized);
  EXPECT_EQ(other->Subscribe("$SYS/homepot/receipts/#", 1),
            kReasonNotAuthorized);
  ASSERT_EQ(other->Subscribe("$SYS/homepot/receipts/sensor-002", 1), 1);
  ASSERT_EQ(other->Subscribe(DefaultToken("sensor-002"), 1), 1);
  auto backend = Backend();
  ASSERT_TRUE(backend);
  ASSERT_EQ(
      backend->Publish(DefaultToken("sensor-001"), NotificationWithId("m", 60)),
      0);
  ASSERT_TRUE(NextReceipt(backend.get()).is_object());
  // The backend's receipt never reached sensor-002.
  EXPECT_TRUE(
      NothingBefore(other.get(), backend.get(), DefaultToken("sensor-002")));
}

TEST_F(ReceiptsTest, ReceiptsOffSendsNone) {
  ASSERT_TRUE(StartBroker({"receipts false"}));
  auto backend = Backend();
  ASSERT_TRUE(backend);
  ASSERT_EQ(
      backend->Publish(DefaultToken("sensor-001"), NotificationWithId("m", 60)),
      0);
  // A barrier the backend can read: its own acks topic is readable by its
  // rule, and the sensor sends it.
  auto sensor = Sensor("sensor-001");
  ASSERT_TRUE(sensor);
  ASSERT_EQ(backend->Subscribe("devices/sensor-001/acks", 1), 1);
  EXPECT_TRUE(
      NothingBefore(backend.get(), sensor.get(), "devices/sensor-001/acks"));
}

TEST_F(ReceiptsTest, StatsTellReachableFromConnectedNotSubscribed) {
  ASSERT_TRUE(StartBroker({"stats_interval 1"}));
  auto monitor = ConnectAs("monitor", "monitor-pass");
  ASSERT_TRUE(monitor);
  ASSERT_EQ(monitor->Subscribe(kStatsTopic, 0), 0);
  auto reachable = Sensor("sensor-001");
  auto zombie = Sensor("sensor-002");
  ASSERT_TRUE(reachable && zombie);
  ASSERT_EQ(reachable->Subscribe(DefaultToken("sensor-001"), 1), 1);
  const ClientOptions durable = Durable(kMqtt311, "sensor-003-durable");
  ASSERT_NO_FATAL_FAILURE(SubscribeAndLeave("sensor-003", durable));
  // Back without subscribing again: its session kept the subscription.
  auto s3 = Sensor("sensor-003", durable);
  ASSERT_TRUE(s3);
  auto gauges = [](int64_t connected, int64_t reach) {
    return [=](const nlohmann::json& j) {
      return j["connected"] == connected && j["reachable"] == reach &&
             j["connected_not_subscribed"] == connected - reach;
    };
  };
  nlohmann::json last;
  // monitor, sensor-001, sensor-002 and sensor-003.
  EXPECT_FALSE(
      WaitForStats(monitor.get(), gauges(4, 2), kStatsWaitMs, &last).is_null())
      << last;
  reachable->Disconnect();
  EXPECT_FALSE(
      WaitForStats(monitor.get(), gauges(3, 1), kStatsWaitMs, &last).is_null())
      << last;
  // Unsubscribing makes sensor-003 a zombie; a clean start of its client
  // id forgets the old subscription too.
  ASSERT_EQ(zombie->Subscribe(DefaultToken("sensor-002"), 1), 1);
  EXPECT_FALSE(
      WaitForStats(monitor.get(), gauges(3, 2), kStatsWaitMs, &last).is_null())
      << last;
  s3->Disconnect();
  ClientOptions clean;
  clean.protocol = kMqtt311;
  clean.client_id = "sensor-003-durable";
  auto fresh = Sensor("sensor-003", clean);
  ASSERT_TRUE(fresh);
  EXPECT_FALSE(
      WaitForStats(monitor.get(), gauges(3, 1), kStatsWaitMs, &last).is_null())
      << last;
}

TEST_F(ReceiptsTest, TakingOverADurableSessionKeepsItReachable) {
  ASSERT_TRUE(StartBroker({"stats_interval 1"}));
  auto monitor = ConnectAs("monitor", "monitor-pass");
  ASSERT_TRUE(monitor);
  ASSERT_EQ(monitor->Subscribe(kStatsTopic, 0), 0);
  const ClientOptions durable = Durable(kMqtt311, "sensor-001-durable");
  auto first = Sensor("sensor-001", durable);
  ASSERT_TRUE(first);
  ASSERT_EQ(first->Subscribe(DefaultToken("sensor-001"), 1), 1);
  // A reconnect while the old connection is still open: Mosquitto hands
  // the session, subscriptions included, to the new connection.
  auto second = Sensor("sensor-001", durable);
  ASSERT_TRUE(second);
  ASSERT_TRUE(first->WaitForDisconnect(5000));
  nlohmann::json last;
  EXPECT_FALSE(WaitForStats(
                   monitor.get(),
                   [](const nlohmann::json& j) {
                     return j["connected"] == 2 && j["reachable"] == 1;
                   },
                   kStatsWaitMs, &last)
                   .is_null())
      << last;
  auto backend = Backend();
  ASSERT_TRUE(backend);
  ASSERT_EQ(
      backend->Publish(DefaultToken("sensor-001"), NotificationWithId("t", 60)),
      0);
  nlohmann::json r = NextReceipt(backend.get());
  ASSERT_TRUE(r.is_object());
  EXPECT_EQ(r["routed"], 1);
  EXPECT_TRUE(second->WaitForMessage().has_value());
}

// A QoS 2 retransmission (DUP before PUBREL) is one notification with one
// receipt; the same payload published again afresh is another.
TEST_F(ReceiptsTest, Qos2RetransmissionAndRepublish) {
  ASSERT_TRUE(StartBroker());
  auto live = Sensor("sensor-001");
  ASSERT_TRUE(live);
  ASSERT_EQ(live->Subscribe(DefaultToken("sensor-001"), 1), 1);
  auto backend = Backend();
  ASSERT_TRUE(backend);
  RawClient raw;
  ASSERT_TRUE(raw.Open(broker_.port()));
  ASSERT_EQ(raw.Connect(kMqtt311, "backend-raw", "homepot", "backend-pass"), 0);
  const std::string n = NotificationWithId("dup-1", 300);
  const std::string token = DefaultToken("sensor-001");
  ASSERT_TRUE(raw.Send(RawClient::PublishPacket(kMqtt311, token, n, 2, 9)));
  ASSERT_TRUE(raw.Read());  // PUBREC
  ASSERT_TRUE(
      raw.Send(RawClient::PublishPacket(kMqtt311, token, n, 2, 9, true)));
  ASSERT_TRUE(raw.Read());
  ASSERT_TRUE(raw.Send(RawClient::PubrelPacket(9)));
  ASSERT_TRUE(raw.Read());  // PUBCOMP
  nlohmann::json r = NextReceipt(backend.get());
  ASSERT_TRUE(r.is_object());
  EXPECT_EQ(r["message_id"], "dup-1");
  EXPECT_EQ(r["routed"], 1);
  // Published afresh (a new packet id) it is routed, and receipted, again;
  // no receipt came in between.
  for (int i = 0; i < 2; ++i) {
    ASSERT_EQ(backend->Publish(token, NotificationWithId("same", 300), 2), 0);
    r = NextReceipt(backend.get());
    ASSERT_TRUE(r.is_object()) << i;
    EXPECT_EQ(r["message_id"], "same") << i;
    EXPECT_EQ(r["routed"], 1) << i;
  }
  std::vector<Message> got;
  ASSERT_TRUE(ReceiveUntilBarrier(live.get(), backend.get(), token, &got));
  EXPECT_EQ(got.size(), 3u);
}

// A QoS 2 notification whose buffer Mosquitto freed before its PUBREL (its
// packet id reused with another payload) never takes the copies of a later
// notification stamped at the same address.
TEST_F(ReceiptsTest, AFreedQos2NotificationTakesNoOtherCopies) {
  ASSERT_TRUE(StartBroker());
  auto live = Sensor("sensor-001");
  ASSERT_TRUE(live);
  ASSERT_EQ(live->Subscribe(DefaultToken("sensor-001"), 1), 1);
  auto backend = Backend();
  ASSERT_TRUE(backend);
  const std::string victim =
      NotificationWithId("victim-0001", 300, std::string(200, 'v'));
  const std::string a =
      NotificationWithId("evil-000001", 300, std::string(200, 'a'));
  const std::string b =
      NotificationWithId("evil-000002", 300, std::string(200, 'b'));
  ASSERT_EQ(a.size(), victim.size());
  RawClient evil;
  ASSERT_TRUE(evil.Open(broker_.port()));
  ASSERT_EQ(evil.Connect(kMqtt311, "evil-c", "evil", "evil-pass"), 0);
  for (const std::string* payload : {&a, &b}) {
    ASSERT_TRUE(evil.Send(RawClient::PublishPacket(
        kMqtt311, DefaultToken("sensor-003"), *payload, 2, 7)));
    std::optional<RawPacket> rec = evil.Read();
    ASSERT_TRUE(rec && rec->type() == 5);  // PUBREC
  }
  ASSERT_EQ(backend->Publish(DefaultToken("sensor-001"), victim, 2), 0);
  nlohmann::json r = NextReceipt(backend.get());
  ASSERT_TRUE(r.is_object());
  EXPECT_EQ(r["message_id"], "victim-0001");
  EXPECT_EQ(r["routed"], 1);
  EXPECT_TRUE(live->WaitForMessage().has_value());
}

// Topics in receipts are cut at 256 bytes, never inside a character.
TEST_F(ReceiptsTest, ALongTopicIsCutAtACharacter) {
  ASSERT_TRUE(StartBroker());
  auto backend = Backend();
  ASSERT_TRUE(backend);
  const std::string topic = "home/" + std::string(250, 'a') + "\xc3\xa9x";
  ASSERT_EQ(backend->Publish(topic, NotificationWithId("utf", 300), 1), 0);
  nlohmann::json r = NextReceipt(backend.get());
  ASSERT_TRUE(r.is_object());
  EXPECT_EQ(r["topic"], "home/" + std::string(250, 'a'));
}

// Another publisher reusing a message_id for the same device does not take
// the device's acknowledgement from the first.
TEST_F(ReceiptsTest, TheFirstPublisherKeepsTheAck) {
  ASSERT_TRUE(StartBroker());
  auto live = Sensor("sensor-001");
  ASSERT_TRUE(live);
  ASSERT_EQ(live->Subscribe(DefaultToken("sensor-001"), 1), 1);
  auto backend = Backend();
  auto evil = ConnectAs("evil", "evil-pass");
  ASSERT_TRUE(backend && evil);
  ASSERT_EQ(evil->Subscribe("$SYS/homepot/receipts/evil", 1), 1);
  ASSERT_EQ(backend->Publish(DefaultToken("sensor-001"),
                             NotificationWithId("m-1", 300)),
            0);
  ASSERT_TRUE(NextReceipt(backend.get()).is_object());
  ASSERT_EQ(evil->Publish(DefaultToken("sensor-001"),
                          NotificationWithId("m-1", 300, "spoof")),
            0);
  std::optional<Message> evil_routed = evil->WaitForMessage();
  ASSERT_TRUE(evil_routed);
  ASSERT_TRUE(live->WaitForMessage());
  ASSERT_TRUE(live->WaitForMessage());
  ASSERT_EQ(live->Publish("devices/sensor-001/acks",
                          R"({"message_id":"m-1","status":"displayed"})", 1),
            0);
  nlohmann::json r = NextReceipt(backend.get());
  ASSERT_TRUE(r.is_object());
  EXPECT_EQ(r["device"], "sensor-001");
  EXPECT_EQ(r["status"], "displayed");
  // evil's next receipt is the one for its next notification: no ack came.
  ASSERT_EQ(evil->Publish(DefaultToken("sensor-002"),
                          NotificationWithId("marker", 60)),
            0);
  std::optional<Message> next = evil->WaitForMessage();
  ASSERT_TRUE(next);
  EXPECT_EQ(nlohmann::json::parse(next->payload)["message_id"], "marker");
}

}  // namespace
}  // namespace integration
}  // namespace homepot
