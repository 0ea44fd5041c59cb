// Notification validation, timestamp injection and the stats topic, seen
// from real MQTT clients.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <regex>
#include <string>

#include "harness.h"

namespace homepot {
namespace integration {
namespace {

using nlohmann::json;

const std::regex kRfc3339Millis(
    R"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z)");

const std::string kToken = "devices/sensor-001/notifications";

class NotificationTest : public BrokerTest {
 protected:
  void SetUp() override {
    ASSERT_TRUE(AddFixtureDevices());
    ASSERT_TRUE(registry_.Grant("homepot", "devices/+/notifications", "write"));
    ASSERT_TRUE(registry_.Grant("homepot", "$SYS/homepot/stats", "read"));
  }

  // Sensor subscribed to its token; backend subscribed to its rejections.
  void Connect(int backend_protocol = kMqtt5) {
    sensor_ = ConnectAs("sensor-001", "s3cret-one");
    backend_ = ConnectAs("homepot", "backend-pass", backend_protocol);
    ASSERT_TRUE(sensor_ && backend_);
    ASSERT_EQ(sensor_->Subscribe("devices/sensor-001/notifications", 1), 1);
    ASSERT_EQ(backend_->Subscribe("$SYS/homepot/rejections/homepot", 1), 1);
  }

  // Publishes `payload` to the sensor's token, expects the refusal and a
  // notice with `reason`, and nothing delivered.
  void ExpectRejected(const std::string& payload, const std::string& reason) {
    SCOPED_TRACE(payload);
    EXPECT_EQ(backend_->Publish("devices/sensor-001/notifications", payload, 1),
              kReasonNotAuthorized);
    auto notice = backend_->WaitForMessage();
    ASSERT_TRUE(notice.has_value()) << "no rejection notice";
    EXPECT_EQ(notice->topic, "$SYS/homepot/rejections/homepot");
    EXPECT_FALSE(notice->retain);
    json j = json::parse(notice->payload, nullptr, false);
    ASSERT_TRUE(j.is_object()) << notice->payload;
    EXPECT_EQ(j.value("reason", ""), reason) << notice->payload;
    EXPECT_EQ(j.value("topic", ""), "devices/sensor-001/notifications");
    EXPECT_TRUE(j.contains("detail"));
    EXPECT_TRUE(j.contains("timestamp"));
    EXPECT_TRUE(NothingBefore(sensor_.get(), backend_.get(), kToken));
  }

  std::unique_ptr<Client> sensor_;
  std::unique_ptr<Client> backend_;
};

TEST_F(NotificationTest, MalformedNotificationsAreRefusedWithAReason) {
  ASSERT_TRUE(StartBroker({"stats_interval 0"}));
  Connect();
  ExpectRejected("not json", "invalid_json");
  ExpectRejected("[1,2]", "not_object");
  ExpectRejected(R"({"title":"t"})", "missing_field");
  ExpectRejected(R"({"title":1,"body":"b"})", "wrong_type");
  ExpectRejected(R"({"title":"t","body":"b","priority":"meh"})",
                 "bad_priority");
  ExpectRejected(R"({"title":"t","body":"b","timestamp":"yesterday"})",
                 "bad_timestamp");
  ExpectRejected(R"({"title":"t","body":"b","ttl":-1})", "wrong_type");
  // The backend's session survives its mistakes.
  EXPECT_TRUE(backend_->IsConnected());
  ASSERT_EQ(
      backend_->Publish("devices/sensor-001/notifications", kNotification, 1),
      0);
  EXPECT_TRUE(sensor_->WaitForMessage().has_value());
}

TEST_F(NotificationTest, Mqtt311PublisherGetsTheNoticeToo) {
  ASSERT_TRUE(StartBroker({"stats_interval 0"}));
  Connect(kMqtt311);
  EXPECT_EQ(backend_->Publish("devices/sensor-001/notifications", "{", 1), 0);
  auto notice = backend_->WaitForMessage();
  ASSERT_TRUE(notice.has_value());
  json j = json::parse(notice->payload, nullptr, false);
  ASSERT_TRUE(j.is_object()) << notice->payload;
  EXPECT_EQ(j.value("reason", ""), "invalid_json") << notice->payload;
  EXPECT_TRUE(NothingBefore(sensor_.get(), backend_.get(), kToken));
}

TEST_F(NotificationTest, AcceptedNotificationCarriesTheReceiptTime) {
  ASSERT_TRUE(StartBroker({"stats_interval 0"}));
  Connect();
  ASSERT_EQ(
      backend_->Publish(
          "devices/sensor-001/notifications",
          R"({"title":"t","body":"b","received_at":"forged","data":{}})", 1),
      0);
  auto m = sensor_->WaitForMessage();
  ASSERT_TRUE(m.has_value());
  json j = json::parse(m->payload, nullptr, false);
  ASSERT_TRUE(j.is_object()) << m->payload;
  std::string received_at = j.value("received_at", "");
  EXPECT_TRUE(std::regex_match(received_at, kRfc3339Millis)) << m->payload;
  EXPECT_EQ(j.value("timestamp", ""), received_at) << m->payload;
  EXPECT_EQ(j.value("title", ""), "t");

  // A publisher's own timestamp is kept.
  ASSERT_EQ(
      backend_->Publish(
          "devices/sensor-001/notifications",
          R"({"title":"t","body":"b","timestamp":"2024-05-01T10:00:00"})", 1),
      0);
  m = sensor_->WaitForMessage();
  ASSERT_TRUE(m.has_value());
  j = json::parse(m->payload, nullptr, false);
  EXPECT_EQ(j.value("timestamp", ""), "2024-05-01T10:00:00") << m->payload;
  EXPECT_TRUE(std::regex_match(j.value("received_at", ""), kRfc3339Millis));
}

TEST_F(NotificationTest, DeviceTypeLimitsThePayloadSize) {
  ASSERT_TRUE(StartBroker({"stats_interval 0"}));
  Connect();
  // iot_sensor allows 10 KiB, gateway 100 KiB.
  std::string big =
      R"({"title":"t","body":")" + std::string(12 * 1024, 'x') + R"("})";
  ExpectRejected(big, "too_large");
  EXPECT_EQ(backend_->Publish("devices/gateway-01/notifications", big, 1), 0);
}

TEST_F(NotificationTest, EmptyRetainedPublishClearsWithoutValidation) {
  ASSERT_TRUE(StartBroker({"stats_interval 0"}));
  Connect();
  EXPECT_EQ(backend_->Publish("devices/sensor-001/notifications", "", 1,
                              /*retain=*/true),
            0);
  // No rejection notice: the first notice the backend gets is the one for
  // a malformed notification sent afterwards.
  EXPECT_EQ(backend_->Publish("devices/gateway-01/notifications", "{", 1),
            kReasonNotAuthorized);
  auto notice = backend_->WaitForMessage();
  ASSERT_TRUE(notice.has_value());
  json j = json::parse(notice->payload, nullptr, false);
  EXPECT_EQ(j.value("topic", ""), "devices/gateway-01/notifications")
      << notice->payload;
}

TEST_F(NotificationTest, WillOnANotificationTopicIsValidatedToo) {
  ASSERT_TRUE(StartBroker({"stats_interval 0"}));
  Connect();
  // A malformed will is never delivered (whether Mosquitto refuses the
  // CONNECT or drops the will when it fires).
  Client bad(broker_.port());
  bad.SetWill("devices/sensor-001/notifications", "gone");
  if (bad.Connect("homepot", "backend-pass") == 0) bad.DropConnection();

  // A valid one is delivered (Mosquitto runs no message event for wills,
  // so it cannot be stamped). Its connection opens after the first one was
  // dropped and Mosquitto handles events in order, so the first message
  // the sensor gets is this will: the malformed one was not delivered.
  Client good(broker_.port());
  good.SetWill("devices/sensor-001/notifications",
               R"({"title":"backend offline","body":"b"})");
  ASSERT_EQ(good.Connect("homepot", "backend-pass"), 0);
  good.DropConnection();
  auto m = sensor_->WaitForMessage();
  ASSERT_TRUE(m.has_value()) << Tail(broker_.Log());
  json j = json::parse(m->payload, nullptr, false);
  EXPECT_EQ(j.value("title", ""), "backend offline") << m->payload;
}

TEST_F(NotificationTest, StatsArePublishedRetainedForAllowedReaders) {
  ASSERT_TRUE(StartBroker({"stats_interval 1"}));
  Connect();
  ASSERT_EQ(
      backend_->Publish("devices/sensor-001/notifications", kNotification, 1),
      0);
  ASSERT_TRUE(sensor_->WaitForMessage().has_value());
  EXPECT_TRUE(backend_->Subscribe("$SYS/homepot/stats", 0) == 0);
  EXPECT_GE(sensor_->Subscribe("$SYS/homepot/stats", 0), 0x80);

  // Stats are published every second: the first that counts the
  // notification comes within a few.
  json j;
  for (int i = 0; i < 10; ++i) {
    std::optional<Message> stats = backend_->WaitForMessage(5000);
    ASSERT_TRUE(stats.has_value()) << "no stats";
    if (stats->topic != "$SYS/homepot/stats") continue;
    j = json::parse(stats->payload, nullptr, false);
    ASSERT_TRUE(j.is_object()) << stats->payload;
    if (j.value("total_success", 0) >= 1) break;
  }
  ASSERT_GE(j.value("total_success", 0), 1)
      << "no stats with the notification counted: " << j.dump();
  for (const char* key : {"total_sent", "total_success", "total_failed",
                          "last_sent", "connection_count", "registry"}) {
    EXPECT_TRUE(j.contains(key)) << key << " in " << j.dump();
  }
  EXPECT_EQ(j["registry"].value("devices", 0), 4) << j.dump();

  // Retained: a late subscriber gets the last one at once.
  auto late = ConnectAs("homepot", "backend-pass");
  ASSERT_TRUE(late);
  ASSERT_EQ(late->Subscribe("$SYS/homepot/stats", 0), 0);
  auto retained = late->WaitForMessage();
  ASSERT_TRUE(retained.has_value());
  EXPECT_TRUE(retained->retain);
}

}  // namespace
}  // namespace integration
}  // namespace homepot
