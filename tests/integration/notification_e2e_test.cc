// Notifications end to end (docs/operating.md, "Notifications" and "Timestamp
// injection"): HOMEPOT-shaped payloads, every refusal reason as each kind of
// publisher sees it, topics the plugin must leave alone, device-type size
// limits, retained stamps, QoS 2 duplicates at the packet level, and will
// messages.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <regex>
#include <string>
#include <vector>

#include "harness.h"

namespace homepot {
namespace integration {
namespace {

using nlohmann::json;

// The notification HOMEPOT's backend sends (spaces, UTF-8 and key order as
// it serialises them).
const std::string kHomepotNotification = test::kSampleNotification;

const std::string kSensorToken = "devices/sensor-001/notifications";
const std::string kPlcToken = "devices/plc-01/notifications";
const std::string kDeepTopic = "factory/l1/l2/l3/l4/l5/l6/l7";  // 8 levels
const std::string kRejections = "$SYS/homepot/rejections/";

const std::regex kStampSuffix(
    R"re(,"received_at":"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z)"\})re");
// The same when the publisher sent no "timestamp": it is added, equal.
const std::regex kStampsSuffix(
    R"re(,"received_at":"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z)","timestamp":"\1"\})re");

std::string Abbreviate(const std::string& s) {
  return s.size() <= 400
             ? s
             : s.substr(0, 200) + "...(" + std::to_string(s.size()) +
                   " bytes)..." + s.substr(s.size() - 150);
}

// `original` (without a received_at field) as the plugin must deliver it:
// the original bytes with ,"received_at":"<stamp>" (and
// ,"timestamp":"<stamp>" when it had no timestamp) before the final brace.
// Returns the stamp, or "" (with a failure recorded) when the delivered
// bytes differ otherwise.
std::string ExpectOriginalPlusStamp(const std::string& original,
                                    const std::string& delivered) {
  std::string head = original.substr(0, original.size() - 1);
  if (delivered.compare(0, head.size(), head) != 0) {
    ADD_FAILURE() << "payload changed:\n sent      " << Abbreviate(original)
                  << "\n delivered " << Abbreviate(delivered);
    return "";
  }
  std::string tail = delivered.substr(head.size());
  bool had_timestamp =
      json::parse(original, nullptr, false).contains("timestamp");
  std::smatch m;
  if (!std::regex_match(tail, m,
                        had_timestamp ? kStampSuffix : kStampsSuffix)) {
    ADD_FAILURE() << "unexpected tail '" << tail << "' after the original "
                  << "bytes in " << Abbreviate(delivered);
    return "";
  }
  return m[1];
}

class NotificationE2eTest : public BrokerTest {
 protected:
  void SetUp() override {
    start_ms_ = WallMs();
    ASSERT_TRUE(registry_.AddDevice("homepot", "backend", "backend-pass"));
    ASSERT_TRUE(registry_.AddDevice("legacy", "backend", "legacy-pass"));
    ASSERT_TRUE(registry_.AddDevice("sensor-001", "iot_sensor", "sensor-pass"));
    ASSERT_TRUE(
        registry_.AddDevice("plc-01", "industrial_controller", "plc-pass"));
    ASSERT_TRUE(registry_.AddDevice("watcher", "gateway", "watcher-pass"));
    ASSERT_TRUE(registry_.AddDevice("snoop", "gateway", "snoop-pass"));
    for (const char* backend : {"homepot", "legacy"}) {
      ASSERT_TRUE(registry_.Grant(backend, "devices/+/notifications", "write"));
      ASSERT_TRUE(registry_.Grant(backend, "factory/#", "write"));
    }
    ASSERT_TRUE(registry_.Grant("watcher", "devices/#", "read"));
    ASSERT_TRUE(registry_.Grant("watcher", "factory/#", "read"));
    ASSERT_TRUE(registry_.Grant("sensor-001", "devices/%u/telemetry", "write"));
    ASSERT_TRUE(registry_.Grant("sensor-001", "devices/%u/status", "write"));
    // Everything the rules can give, but no rejection topic of another
    // device (those are readable by their own device alone).
    ASSERT_TRUE(registry_.Grant("snoop", "#", "readwrite"));
    ASSERT_TRUE(registry_.Grant("snoop", "$SYS/#", "read"));
  }

  std::unique_ptr<Client> Backend(int protocol = kMqtt5) {
    auto c = ConnectAs("homepot", "backend-pass", protocol);
    if (c && c->Subscribe(kRejections + "homepot", 1) != 1) {
      ADD_FAILURE() << "homepot cannot subscribe to its rejection topic";
      return nullptr;
    }
    return c;
  }

  std::unique_ptr<Client> Subscriber(const std::string& user,
                                     const std::string& pass,
                                     const std::vector<std::string>& filters,
                                     int qos = 1) {
    auto c = ConnectAs(user, pass);
    if (!c) return nullptr;
    for (const std::string& f : filters) {
      if (c->Subscribe(f, qos) != qos) {
        ADD_FAILURE() << user << " cannot subscribe to " << f;
        return nullptr;
      }
    }
    return c;
  }

  // The next rejection notice on `client` (skipping nothing: the notice must
  // be the next message), checked for shape; returns it parsed.
  json ExpectNotice(Client* client, const std::string& device,
                    const std::string& topic, const std::string& reason) {
    auto m = client->WaitForMessage();
    if (!m) {
      ADD_FAILURE() << "no rejection notice for " << device << " (" << reason
                    << ")";
      return json();
    }
    EXPECT_EQ(m->topic, kRejections + device);
    EXPECT_FALSE(m->retain);
    json j = json::parse(m->payload, nullptr, false);
    if (!j.is_object()) {
      ADD_FAILURE() << "notice is not a JSON object: " << m->payload;
      return json();
    }
    std::vector<std::string> keys;
    for (auto it = j.begin(); it != j.end(); ++it) keys.push_back(it.key());
    std::sort(keys.begin(), keys.end());
    EXPECT_EQ(keys, (std::vector<std::string>{"detail", "reason", "timestamp",
                                              "topic"}))
        << m->payload;
    EXPECT_EQ(j.value("reason", ""), reason) << m->payload;
    EXPECT_EQ(j.value("topic", ""), topic) << m->payload;
    EXPECT_TRUE(j["detail"].is_string() &&
                !j["detail"].get<std::string>().empty())
        << m->payload;
    int64_t stamp = ParseStampMs(j.value("timestamp", ""));
    EXPECT_GE(stamp, start_ms_) << m->payload;
    EXPECT_LE(stamp, WallMs()) << m->payload;
    return j;
  }

  // No rejection notice is on its way to `client` (a session of `device`
  // subscribed to its rejection topic): the next notice it gets is the one
  // for a malformed notification it sends now.
  void ExpectNoNotice(Client* client, const std::string& device) {
    SCOPED_TRACE("no notice before the barrier");
    // v5: refused; v3.1.1: a plain PUBACK.
    int rc = client->Publish(kPlcToken, "{barrier", 1);
    EXPECT_TRUE(rc == kReasonNotAuthorized || rc == 0) << rc;
    ExpectNotice(client, device, kPlcToken, "invalid_json");
  }

  int64_t start_ms_ = 0;
};

TEST_F(NotificationE2eTest, HomepotNotificationArrivesByteIdenticalPlusStamp) {
  ASSERT_TRUE(StartBroker({"stats_interval 0"}));
  auto sensor = Subscriber("sensor-001", "sensor-pass", {kSensorToken});
  auto backend = Backend();
  ASSERT_TRUE(sensor && backend);

  int64_t before = WallMs();
  ASSERT_EQ(backend->Publish(kSensorToken, kHomepotNotification, 1), 0);
  auto m = sensor->WaitForMessage();
  int64_t after = WallMs();
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->topic, kSensorToken);
  EXPECT_EQ(m->qos, 1);
  std::string stamp = ExpectOriginalPlusStamp(kHomepotNotification, m->payload);
  int64_t stamp_ms = ParseStampMs(stamp);
  ASSERT_GT(stamp_ms, 0) << m->payload;
  // The broker's receipt time, on the same clock.
  EXPECT_GE(stamp_ms, before) << stamp;
  EXPECT_LE(stamp_ms, after) << stamp;

  // Still the publisher's JSON, with its own timestamp kept.
  json j = json::parse(m->payload, nullptr, false);
  ASSERT_TRUE(j.is_object()) << m->payload;
  EXPECT_EQ(j.value("timestamp", ""), "2026-11-25T10:30:00.123456");
  EXPECT_EQ(j.value("body", ""), "Temperature exceeded threshold: 85°C");
  EXPECT_EQ(j["data"].value("value", 0), 85);
  EXPECT_EQ(j.value("received_at", ""), stamp);
  ExpectNoNotice(backend.get(), "homepot");
}

struct RefusalCase {
  const char* reason;
  std::string topic;
  std::string payload;
};

std::vector<RefusalCase> RefusalCases() {
  return {
      {"invalid_json", kSensorToken, R"({"title":"t","body":)"},
      {"not_object", kSensorToken, R"(["title","body"])"},
      {"missing_field", kSensorToken, R"({"title":"t"})"},
      {"wrong_type", kSensorToken, R"({"title":"t","body":"b","data":"x"})"},
      {"bad_priority", kSensorToken,
       R"({"title":"t","body":"b","priority":"HIGH"})"},
      {"bad_timestamp", kSensorToken,
       R"({"title":"t","body":"b","timestamp":"25/11/2026 10:30"})"},
      // iot_sensor: 10 KiB.
      {"too_large", kSensorToken,
       R"({"title":"t","body":")" + std::string(11 * 1024, 'x') + R"("})"},
      {"topic_too_deep", kDeepTopic, R"({"title":"t","body":"b"})"},
  };
}

TEST_F(NotificationE2eTest, EveryRefusalReasonEndToEnd) {
  ASSERT_TRUE(StartBroker({"stats_interval 0"}));
  auto sensor = Subscriber("sensor-001", "sensor-pass", {kSensorToken});
  auto watcher =
      Subscriber("watcher", "watcher-pass", {"devices/#", "factory/#"});
  auto v5 = Backend(kMqtt5);
  auto v311 = ConnectAs("legacy", "legacy-pass", kMqtt311);
  ASSERT_TRUE(sensor && watcher && v5 && v311);
  ASSERT_EQ(v311->Subscribe(kRejections + "legacy", 1), 1);

  // Another device never receives someone else's notices, not even with
  // '#' and '$SYS/#' rules and subscriptions aimed at them (whether the
  // SUBACK refuses them is RejectionTopicOfAnotherDeviceCannotBeSubscribed).
  auto snoop = ConnectAs("snoop", "snoop-pass");
  ASSERT_TRUE(snoop);
  ASSERT_EQ(snoop->Subscribe("factory/#", 1), 1);  // for the barrier
  snoop->Subscribe(kRejections + "homepot", 1);
  snoop->Subscribe(kRejections + "+", 1);
  EXPECT_EQ(snoop->Subscribe("$SYS/#", 1), 1);
  EXPECT_GE(v5->Subscribe(kRejections + "legacy", 1), 0x80);
  EXPECT_GE(v311->Subscribe(kRejections + "homepot", 1), 0x80);

  for (const RefusalCase& c : RefusalCases()) {
    SCOPED_TRACE(c.reason);
    // MQTT v5, QoS 1: PUBACK "not authorized".
    EXPECT_EQ(v5->Publish(c.topic, c.payload, 1), kReasonNotAuthorized);
    ExpectNotice(v5.get(), "homepot", c.topic, c.reason);
    // MQTT v5, QoS 2: PUBREC "not authorized".
    EXPECT_EQ(v5->Publish(c.topic, c.payload, 2), kReasonNotAuthorized);
    ExpectNotice(v5.get(), "homepot", c.topic, c.reason);
    // MQTT v3.1.1 has no refusal code (PUBACK is plain), but the notice
    // tells it.
    EXPECT_EQ(v311->Publish(c.topic, c.payload, 1), 0);
    ExpectNotice(v311.get(), "legacy", c.topic, c.reason);
    EXPECT_TRUE(v5->IsConnected());
    EXPECT_TRUE(v311->IsConnected());
    EXPECT_EQ(sensor->pending_messages(), 0u);
    EXPECT_EQ(watcher->pending_messages(), 0u);
  }
  // Both sessions are still good for valid notifications, and these are the
  // first messages the subscribers get: no refused one was delivered.
  ASSERT_EQ(v5->Publish(kSensorToken, R"({"title":"ok","body":"v5"})", 1), 0);
  ASSERT_EQ(v311->Publish(kSensorToken, R"({"title":"ok","body":"v311"})", 1),
            0);
  ASSERT_EQ(v5->Publish(kDeepTopic.substr(0, kDeepTopic.rfind('/')),
                        R"({"title":"ok","body":"7 levels"})", 1),
            0);
  for (const char* body : {"v5", "v311"}) {
    auto m = sensor->WaitForMessage();
    ASSERT_TRUE(m.has_value()) << body;
    EXPECT_EQ(json::parse(m->payload, nullptr, false).value("body", ""), body);
  }
  for (int i = 0; i < 3; ++i) {
    auto m = watcher->WaitForMessage();
    ASSERT_TRUE(m.has_value()) << i;
    EXPECT_EQ(json::parse(m->payload, nullptr, false).value("title", ""), "ok")
        << m->topic << ": " << m->payload;
  }
  ExpectNoNotice(v5.get(), "homepot");
  ExpectNoNotice(v311.get(), "legacy");

  // 24 notices (and the barriers' two) were published; none reached the
  // snoop.
  std::vector<Message> before;
  ASSERT_TRUE(
      ReceiveUntilBarrier(snoop.get(), v5.get(), "factory/barrier", &before));
  for (const Message& m : before) {
    EXPECT_NE(m.topic.rfind("$SYS/homepot/rejections/", 0), 0u)
        << "snoop received " << m.topic << ": " << m.payload;
    EXPECT_NE(m.topic.rfind("devices/", 0), 0u) << "snoop " << m.topic;
  }
}

// docs/operating.md, "Notifications": the notice topic is readable by that
// device alone, whatever the rules. Deliveries to others are denied one by one;
// the subscription itself must be refused too, as any unreadable filter is.
TEST_F(NotificationE2eTest, RejectionTopicOfAnotherDeviceCannotBeSubscribed) {
  ASSERT_TRUE(StartBroker({"stats_interval 0"}));
  auto snoop = ConnectAs("snoop", "snoop-pass");
  auto legacy = ConnectAs("legacy", "legacy-pass", kMqtt311);
  ASSERT_TRUE(snoop && legacy);
  for (const std::string& filter : {kRejections + "homepot", kRejections + "+",
                                    std::string("$SYS/homepot/rejections/#"),
                                    "$share/g/" + kRejections + "homepot"}) {
    EXPECT_GE(snoop->Subscribe(filter, 1), 0x80) << filter;
    EXPECT_EQ(legacy->Subscribe(filter, 1), kSubackFailure311) << filter;
  }
  // Its own is fine, for both.
  EXPECT_EQ(snoop->Subscribe(kRejections + "snoop", 1), 1);
  EXPECT_EQ(legacy->Subscribe(kRejections + "legacy", 1), 1);
}

TEST_F(NotificationE2eTest, NonNotificationTopicsPassByteForByte) {
  ASSERT_TRUE(StartBroker({"stats_interval 0"}));
  auto watcher = Subscriber("watcher", "watcher-pass", {"devices/#"});
  auto backend = Backend();
  auto sensor = ConnectAs("sensor-001", "sensor-pass");
  ASSERT_TRUE(watcher && backend && sensor);
  ASSERT_EQ(sensor->Subscribe(kRejections + "sensor-001", 1), 1);

  // Binary telemetry: every byte value, NULs, invalid UTF-8, a stray brace.
  std::string binary;
  for (int i = 0; i < 256; ++i) binary.push_back(static_cast<char>(i));
  binary += "{\xff\xfe\x00}";
  const std::string telemetry = "devices/sensor-001/telemetry";
  for (int qos : {0, 1, 2}) {
    ASSERT_EQ(sensor->Publish(telemetry, binary, qos), 0) << qos;
    auto m = watcher->WaitForMessage();
    ASSERT_TRUE(m.has_value()) << qos;
    EXPECT_EQ(m->topic, telemetry);
    EXPECT_TRUE(m->payload == binary)
        << "binary payload altered at QoS " << qos;
  }
  // JSON-looking text that would be refused as a notification.
  ASSERT_EQ(sensor->Publish(telemetry, R"({"title":1})", 1), 0);
  auto m = watcher->WaitForMessage();
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->payload, R"({"title":1})");

  // LWT "offline" on the device's status topic, delivered as set.
  Client lwt(broker_.port(), kMqtt5, "sensor-001-lwt");
  lwt.SetWill("devices/sensor-001/status", "offline", 1, /*retain=*/false);
  ASSERT_EQ(lwt.Connect("sensor-001", "sensor-pass"), 0);
  lwt.DropConnection();
  m = watcher->WaitForMessage();
  ASSERT_TRUE(m.has_value()) << Tail(broker_.Log());
  EXPECT_EQ(m->topic, "devices/sensor-001/status");
  EXPECT_EQ(m->payload, "offline");
  // No rejection notices: the sensor's first message is a barrier.
  ASSERT_EQ(sensor->Subscribe(kSensorToken, 1), 1);
  EXPECT_TRUE(NothingBefore(sensor.get(), backend.get(), kSensorToken));
  m = watcher->WaitForMessage();  // the barrier, on devices/#
  ASSERT_TRUE(m.has_value());
  EXPECT_TRUE(IsBarrier(*m)) << m->payload;

  // Zero-length retained publish on a notification topic clears it.
  ASSERT_EQ(backend->Publish(kSensorToken, R"({"title":"keep","body":"me"})", 1,
                             /*retain=*/true),
            0);
  m = watcher->WaitForMessage();
  ASSERT_TRUE(m.has_value());
  {
    auto fresh = Subscriber("sensor-001", "sensor-pass", {kSensorToken});
    ASSERT_TRUE(fresh);
    auto retained = fresh->WaitForMessage();
    ASSERT_TRUE(retained.has_value()) << "nothing retained to clear";
    EXPECT_TRUE(retained->retain);
  }
  ASSERT_EQ(backend->Publish(kSensorToken, "", 1, /*retain=*/true), 0);
  m = watcher->WaitForMessage();  // the clearing publish itself is routed
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->payload, "");
  ExpectNoNotice(backend.get(), "homepot");  // not refused
  auto fresh = Subscriber("sensor-001", "sensor-pass", {kSensorToken});
  ASSERT_TRUE(fresh);
  EXPECT_TRUE(NothingBefore(fresh.get(), backend.get(), kSensorToken))
      << "retained notification not cleared";
}

TEST_F(NotificationE2eTest, SizeLimitFollowsTheTargetDeviceType) {
  ASSERT_TRUE(StartBroker({"stats_interval 0"}));
  auto sensor = Subscriber("sensor-001", "sensor-pass", {kSensorToken});
  auto plc = Subscriber("plc-01", "plc-pass", {kPlcToken});
  auto backend = Backend();
  ASSERT_TRUE(sensor && plc && backend);

  // A 20 KB notification that is otherwise valid.
  std::string big = R"({"title":"firmware","body":")" +
                    std::string(20 * 1000, 'x') + R"(","priority":"low"})";
  ASSERT_GE(big.size(), 20000u);
  EXPECT_EQ(backend->Publish(kSensorToken, big, 1), kReasonNotAuthorized);
  json notice =
      ExpectNotice(backend.get(), "homepot", kSensorToken, "too_large");
  EXPECT_TRUE(NothingBefore(sensor.get(), backend.get(), kSensorToken));

  ASSERT_EQ(backend->Publish(kPlcToken, big, 1), 0);
  auto m = plc->WaitForMessage();
  ASSERT_TRUE(m.has_value());
  EXPECT_GT(ParseStampMs(ExpectOriginalPlusStamp(big, m->payload)), 0);
  ExpectNoNotice(backend.get(), "homepot");
}

TEST_F(NotificationE2eTest, RetainedNotificationKeepsItsReceiptTime) {
  ASSERT_TRUE(StartBroker({"stats_interval 0"}));
  auto sensor = Subscriber("sensor-001", "sensor-pass", {kSensorToken});
  auto backend = Backend();
  ASSERT_TRUE(sensor && backend);
  const std::string payload = R"({"title":"door","body":"open"})";
  ASSERT_EQ(backend->Publish(kSensorToken, payload, 1, /*retain=*/true), 0);
  auto live = sensor->WaitForMessage();
  ASSERT_TRUE(live.has_value());
  json lj = json::parse(live->payload, nullptr, false);
  std::string stamp = lj.value("received_at", "");
  ASSERT_GT(ParseStampMs(stamp), 0) << live->payload;
  EXPECT_EQ(lj.value("timestamp", ""), stamp) << live->payload;

  // Time moves on, so that a stamp made on delivery would differ.
  SleepMs(1200);
  auto late = Subscriber("sensor-001", "sensor-pass", {kSensorToken});
  ASSERT_TRUE(late);
  auto retained = late->WaitForMessage();
  ASSERT_TRUE(retained.has_value());
  EXPECT_TRUE(retained->retain);
  // The very bytes delivered live: stamped once, on receipt.
  EXPECT_EQ(retained->payload, live->payload);
  json rj = json::parse(retained->payload, nullptr, false);
  EXPECT_EQ(rj.value("received_at", ""), stamp);
  EXPECT_GE(WallMs() - ParseStampMs(stamp), 1100);
}

// CONNECT, PUBLISH QoS 2 (mid 1), PUBREC, the same PUBLISH again with DUP,
// PUBREC, PUBREL, PUBCOMP: the subscriber must see exactly one copy.
void RunQos2Duplicate(int port, int version, Client* sensor, Client* backend) {
  SCOPED_TRACE(version == kMqtt5 ? "MQTT v5" : "MQTT v3.1.1");
  RawClient raw;
  ASSERT_TRUE(raw.Open(port));
  ASSERT_EQ(raw.Connect(version, "raw-qos2-" + std::to_string(version),
                        "homepot", "backend-pass"),
            0);
  const std::string payload =
      R"({"title":"valve","body":"close","priority":"critical","v":)" +
      std::to_string(version) + "}";
  const std::string publish =
      RawClient::PublishPacket(version, kSensorToken, payload, 2, 1);
  const std::string dup =
      RawClient::PublishPacket(version, kSensorToken, payload, 2, 1, true);
  auto expect_ack = [&](int type, const char* name) {
    auto p = raw.Read(3000);
    ASSERT_TRUE(p.has_value()) << "no " << name;
    ASSERT_EQ(p->type(), type) << name;
    ASSERT_GE(p->body.size(), 2u);
    EXPECT_EQ(p->body.substr(0, 2), std::string("\x00\x01", 2)) << name;
    if (p->body.size() > 2) {
      EXPECT_LT(static_cast<uint8_t>(p->body[2]), 0x80) << name << " refused";
    }
  };
  ASSERT_TRUE(raw.Send(publish));
  expect_ack(5, "PUBREC");
  // Long enough for a fresh stamp to differ from the first one.
  SleepMs(30);
  ASSERT_TRUE(raw.Send(dup));
  expect_ack(5, "PUBREC (after DUP)");
  ASSERT_TRUE(raw.Send(RawClient::PubrelPacket(1)));
  expect_ack(7, "PUBCOMP");

  auto m = sensor->WaitForMessage();
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->qos, 2);
  EXPECT_GT(ParseStampMs(ExpectOriginalPlusStamp(payload, m->payload)), 0);
  EXPECT_TRUE(NothingBefore(sensor, backend, kSensorToken))
      << "duplicate delivered";
  raw.Send(RawClient::DisconnectPacket(version));
}

TEST_F(NotificationE2eTest, Qos2RetransmissionBeforePubrelDeliversOnce) {
  ASSERT_TRUE(StartBroker({"stats_interval 0"}));
  auto sensor = Subscriber("sensor-001", "sensor-pass", {kSensorToken}, 2);
  auto backend = ConnectAs("homepot", "backend-pass");
  ASSERT_TRUE(sensor && backend);
  RunQos2Duplicate(broker_.port(), kMqtt311, sensor.get(), backend.get());
  RunQos2Duplicate(broker_.port(), kMqtt5, sensor.get(), backend.get());
  EXPECT_EQ(CountOccurrences(broker_.Log(), "Reused message ID"), 0)
      << "the retransmission was not recognised as the same message";
}

TEST_F(NotificationE2eTest, WillOnANotificationTopicIsHeldToTheRules) {
  ASSERT_TRUE(StartBroker({"stats_interval 0"}));
  auto sensor = Subscriber("sensor-001", "sensor-pass", {kSensorToken});
  // A second session of the backend watches its rejection topic.
  auto backend = Backend();
  ASSERT_TRUE(sensor && backend);

  struct BadWill {
    int protocol;
    const char* payload;
    const char* reason;
  };
  for (const BadWill& w :
       {BadWill{kMqtt5, "gone", "invalid_json"},
        BadWill{kMqtt311, R"({"title":"gone"})", "missing_field"},
        BadWill{kMqtt5, R"({"title":"t","body":"b","priority":9})",
                "wrong_type"}}) {
    SCOPED_TRACE(w.payload);
    Client bad(broker_.port(), w.protocol);
    bad.SetWill(kSensorToken, w.payload, 1);
    int rc = bad.Connect("homepot", "backend-pass");
    if (rc == 0) {
      bad.DropConnection();
      // The device is told, on its own rejection topic.
      ExpectNotice(backend.get(), "homepot", kSensorToken, w.reason);
    }
    EXPECT_TRUE(NothingBefore(sensor.get(), backend.get(), kSensorToken))
        << "invalid will delivered";
  }

  for (int protocol : {kMqtt5, kMqtt311}) {
    Client good(broker_.port(), protocol);
    const std::string will =
        R"({"title":"backend offline","body":"lost","priority":"urgent"})";
    good.SetWill(kSensorToken, will, 1);
    ASSERT_EQ(good.Connect("homepot", "backend-pass"), 0);
    good.DropConnection();
    auto m = sensor->WaitForMessage();
    ASSERT_TRUE(m.has_value()) << protocol << "\n" << Tail(broker_.Log());
    json j = json::parse(m->payload, nullptr, false);
    EXPECT_EQ(j.value("title", ""), "backend offline") << m->payload;
    ExpectNoNotice(backend.get(), "homepot");
  }
}

}  // namespace
}  // namespace integration
}  // namespace homepot
