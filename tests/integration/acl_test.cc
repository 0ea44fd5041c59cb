// Topic ACLs from the registry, enforced by the real broker: publishing,
// subscribing and each delivery.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "harness.h"

namespace homepot {
namespace integration {
namespace {

// A refused SUBACK entry: 0x80 (3.1.1) or 0x87 not authorized (5).
bool Refused(int granted) {
  return granted == kSubackFailure311 || granted == kReasonNotAuthorized;
}

class AclTest : public BrokerTest {
 protected:
  void SetUp() override { ASSERT_TRUE(AddFixtureDevices()); }

  // The backend, allowed to write every device's notification topic, as in
  // the HOMEPOT integration guide.
  void GrantBackendExample() {
    ASSERT_TRUE(registry_.Grant("homepot", "devices/+/notifications", "write"));
    ASSERT_TRUE(registry_.Grant("sensor-001",
                                "devices/sensor-001/notifications", "read"));
  }
};

TEST_F(AclTest, BackendNotificationReachesTheSensor) {
  GrantBackendExample();
  ASSERT_TRUE(StartBroker());
  auto sensor = ConnectAs("sensor-001", "s3cret-one");
  auto backend = ConnectAs("homepot", "backend-pass");
  ASSERT_TRUE(sensor && backend);
  ASSERT_EQ(sensor->Subscribe("devices/sensor-001/notifications", 1), 1);

  ASSERT_EQ(
      backend->Publish("devices/sensor-001/notifications", kNotification, 1),
      0);
  auto m = sensor->WaitForMessage();
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->topic, "devices/sensor-001/notifications");
  nlohmann::json j = nlohmann::json::parse(m->payload, nullptr, false);
  ASSERT_TRUE(j.is_object()) << m->payload;
  EXPECT_EQ(j.value("title", ""), "Hello") << m->payload;
  EXPECT_EQ(j.value("body", ""), "from the backend") << m->payload;
  EXPECT_EQ(m->qos, 1);
}

TEST_F(AclTest, BackendNotificationWithEveryQosAndProtocol) {
  GrantBackendExample();
  ASSERT_TRUE(StartBroker());
  auto sensor = ConnectAs("sensor-001", "s3cret-one", kMqtt311);
  ASSERT_TRUE(sensor);
  ASSERT_EQ(sensor->Subscribe("devices/sensor-001/notifications", 2), 2);
  for (int protocol : {kMqtt311, kMqtt5}) {
    auto backend = ConnectAs("homepot", "backend-pass", protocol);
    ASSERT_TRUE(backend);
    for (int qos : {0, 1, 2}) {
      ASSERT_EQ(backend->Publish("devices/sensor-001/notifications",
                                 kNotification, qos),
                0)
          << "protocol " << protocol << " qos " << qos;
      auto m = sensor->WaitForMessage();
      ASSERT_TRUE(m.has_value()) << "protocol " << protocol << " qos " << qos;
      EXPECT_EQ(m->qos, qos);
    }
  }
}

TEST_F(AclTest, PublishWithoutWriteRuleIsRefusedAndNotDelivered) {
  GrantBackendExample();
  ASSERT_TRUE(StartBroker());
  auto sensor = ConnectAs("sensor-001", "s3cret-one");
  auto gateway = ConnectAs("gateway-01", "gw-pass-1000");
  auto backend = ConnectAs("homepot", "backend-pass");
  ASSERT_TRUE(sensor && gateway && backend);
  ASSERT_EQ(sensor->Subscribe("devices/sensor-001/notifications", 2), 2);

  // QoS 0 has no answer, but must not be delivered either (the refused
  // QoS 1 and 2 publishes after it on the same connection are answered).
  EXPECT_EQ(
      gateway->Publish("devices/sensor-001/notifications", kNotification, 0),
      0);
  EXPECT_EQ(
      gateway->Publish("devices/sensor-001/notifications", kNotification, 1),
      kReasonNotAuthorized);
  EXPECT_EQ(
      gateway->Publish("devices/sensor-001/notifications", kNotification, 2),
      kReasonNotAuthorized);
  // A device may read its own token but not write it.
  EXPECT_EQ(
      sensor->Publish("devices/sensor-001/notifications", kNotification, 1),
      kReasonNotAuthorized);
  // MQTT 3.1.1 publishers get a plain PUBACK; the message is still dropped.
  auto old = ConnectAs("gateway-01", "gw-pass-1000", kMqtt311);
  ASSERT_TRUE(old);
  EXPECT_EQ(old->Publish("devices/sensor-001/notifications", kNotification, 1),
            0);
  EXPECT_TRUE(NothingBefore(sensor.get(), backend.get(),
                            "devices/sensor-001/notifications"));
  EXPECT_TRUE(gateway->IsConnected());
}

TEST_F(AclTest, SubscribingBeyondTheOwnTokenIsRefused) {
  ASSERT_TRUE(StartBroker());
  for (int protocol : {kMqtt311, kMqtt5}) {
    auto sensor = ConnectAs("sensor-001", "s3cret-one", protocol);
    ASSERT_TRUE(sensor);
    for (const char* filter :
         {"devices/#", "#", "devices/+/notifications",
          "devices/sensor-002/notifications", "devices/sensor-001/#",
          "devices/sensor-001/+", "$SYS/#", "$SYS/homepot/stats"}) {
      EXPECT_TRUE(Refused(sensor->Subscribe(filter, 1)))
          << filter << " protocol " << protocol;
    }
    EXPECT_EQ(sensor->Subscribe("devices/sensor-001/notifications", 1), 1)
        << "protocol " << protocol;
  }
}

TEST_F(AclTest, ReadRuleCoversOnlyNarrowerSubscriptions) {
  ASSERT_TRUE(registry_.Grant("sensor-001", "devices/sensor-001/#", "read"));
  ASSERT_TRUE(registry_.Grant("homepot", "devices/#", "write"));
  ASSERT_TRUE(StartBroker());
  auto sensor = ConnectAs("sensor-001", "s3cret-one");
  auto backend = ConnectAs("homepot", "backend-pass");
  ASSERT_TRUE(sensor && backend);
  EXPECT_TRUE(Refused(sensor->Subscribe("devices/#", 1)));
  EXPECT_TRUE(Refused(sensor->Subscribe("devices/+/status", 1)));
  EXPECT_TRUE(Refused(sensor->Subscribe("devices/+/+", 1)));
  EXPECT_TRUE(Refused(sensor->Subscribe("+/sensor-001/status", 1)));
  EXPECT_EQ(sensor->Subscribe("devices/sensor-001/+", 1), 1);
  EXPECT_EQ(sensor->Subscribe("devices/sensor-001/config/#", 1), 1);
  EXPECT_EQ(sensor->Subscribe("devices/sensor-001/#", 1), 1);

  ASSERT_EQ(backend->Publish("devices/sensor-001/status", "online", 1), 0);
  auto m = sensor->WaitForMessage();
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->topic, "devices/sensor-001/status");
  EXPECT_EQ(m->payload, "online");  // not a notification topic: untouched
  // Overlapping subscriptions deliver once per subscription in Mosquitto
  // (no subscription identifiers); drain them.
  std::vector<Message> copies;
  ASSERT_TRUE(ReceiveUntilBarrier(sensor.get(), backend.get(),
                                  "devices/sensor-001/status", &copies));
  for (const Message& copy : copies) EXPECT_EQ(copy.payload, "online");
  ASSERT_EQ(backend->Publish("devices/sensor-002/status", "online", 1), 0);
  EXPECT_TRUE(
      NothingBefore(sensor.get(), backend.get(), "devices/sensor-001/status"));
}

TEST_F(AclTest, DenyBeatsAllow) {
  ASSERT_TRUE(registry_.Grant("gateway-01", "factory/#", "readwrite"));
  ASSERT_TRUE(registry_.Grant("gateway-01", "factory/secret/#", "deny"));
  ASSERT_TRUE(registry_.Grant("homepot", "factory/#", "write"));
  ASSERT_TRUE(registry_.Grant(nullptr, "factory/+/estop", "deny"));
  ASSERT_TRUE(StartBroker());
  auto gateway = ConnectAs("gateway-01", "gw-pass-1000");
  auto backend = ConnectAs("homepot", "backend-pass");
  ASSERT_TRUE(gateway && backend);

  EXPECT_EQ(gateway->Publish("factory/line1/alarm", kNotification, 1), 0);
  EXPECT_EQ(gateway->Publish("factory/secret/plans", kNotification, 1),
            kReasonNotAuthorized);
  // A global deny beats the device's own allow.
  EXPECT_EQ(gateway->Publish("factory/line1/estop", kNotification, 1),
            kReasonNotAuthorized);
  EXPECT_EQ(backend->Publish("factory/line1/estop", kNotification, 1),
            kReasonNotAuthorized);
  EXPECT_TRUE(Refused(gateway->Subscribe("factory/secret/#", 1)));
  EXPECT_TRUE(Refused(gateway->Subscribe("factory/secret/plans", 1)));

  // A broad subscription is allowed, but denied topics are not delivered.
  ASSERT_EQ(gateway->Subscribe("factory/#", 1), 1);
  ASSERT_EQ(backend->Publish("factory/secret/plans", kNotification, 1), 0);
  ASSERT_EQ(backend->Publish("factory/line2/alarm", kNotification, 1), 0);
  auto m = gateway->WaitForMessage();
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->topic, "factory/line2/alarm");
  EXPECT_TRUE(NothingBefore(gateway.get(), backend.get(), "factory/line2/x"));
}

TEST_F(AclTest, UsernamePatternRuleGivesEachDeviceItsOwnSubtree) {
  ASSERT_TRUE(registry_.AddDevice("dev-a", "iot_sensor", "pw-a"));
  ASSERT_TRUE(registry_.AddDevice("dev-b", "iot_sensor", "pw-b"));
  ASSERT_TRUE(registry_.Grant(nullptr, "devices/%u/#", "readwrite"));
  ASSERT_TRUE(StartBroker());
  auto a = ConnectAs("dev-a", "pw-a");
  auto b = ConnectAs("dev-b", "pw-b");
  ASSERT_TRUE(a && b);

  EXPECT_EQ(a->Subscribe("devices/dev-a/#", 1), 1);
  EXPECT_EQ(b->Subscribe("devices/dev-b/#", 1), 1);
  EXPECT_TRUE(Refused(a->Subscribe("devices/dev-b/#", 1)));
  EXPECT_TRUE(Refused(a->Subscribe("devices/+/status", 1)));
  EXPECT_TRUE(Refused(a->Subscribe("devices/%u/#", 1)));

  EXPECT_EQ(b->Publish("devices/dev-b/status", "b-online", 1), 0);
  EXPECT_EQ(a->Publish("devices/dev-b/status", "spoofed", 1),
            kReasonNotAuthorized);
  EXPECT_EQ(a->Publish("devices/dev-a/status", "a-online", 1), 0);

  auto got_b = b->WaitForMessage();
  ASSERT_TRUE(got_b.has_value());
  EXPECT_EQ(got_b->payload, "b-online");
  EXPECT_TRUE(NothingBefore(b.get(), b.get(), "devices/dev-b/status"));
  auto got_a = a->WaitForMessage();
  ASSERT_TRUE(got_a.has_value());
  EXPECT_EQ(got_a->topic, "devices/dev-a/status");
  EXPECT_EQ(got_a->payload, "a-online");
  EXPECT_TRUE(NothingBefore(a.get(), a.get(), "devices/dev-a/status"));
}

TEST_F(AclTest, ClientIdPatternRule) {
  ASSERT_TRUE(registry_.Grant(nullptr, "clients/%c/#", "readwrite"));
  ASSERT_TRUE(StartBroker());
  auto gw = ConnectAs("gateway-01", "gw-pass-1000", kMqtt5, "gw-main");
  ASSERT_TRUE(gw);
  EXPECT_EQ(gw->Subscribe("clients/gw-main/#", 1), 1);
  EXPECT_TRUE(Refused(gw->Subscribe("clients/gw-other/#", 1)));
  EXPECT_EQ(gw->Publish("clients/gw-main/hello", "x", 1), 0);
  EXPECT_EQ(gw->Publish("clients/gw-other/hello", "x", 1),
            kReasonNotAuthorized);
  auto m = gw->WaitForMessage();
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->topic, "clients/gw-main/hello");
}

TEST_F(AclTest, SharedSubscriptionToOwnTokenIsAllowed) {
  GrantBackendExample();
  ASSERT_TRUE(StartBroker());
  auto sensor = ConnectAs("sensor-001", "s3cret-one");
  auto backend = ConnectAs("homepot", "backend-pass");
  ASSERT_TRUE(sensor && backend);
  EXPECT_EQ(sensor->Subscribe("$share/g/devices/sensor-001/notifications", 1),
            1);
  EXPECT_TRUE(Refused(sensor->Subscribe("$share/g/devices/#", 1)));
  EXPECT_TRUE(
      Refused(sensor->Subscribe("$share/g/devices/+/notifications", 1)));
  ASSERT_EQ(
      backend->Publish("devices/sensor-001/notifications", kNotification, 1),
      0);
  auto m = sensor->WaitForMessage();
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->topic, "devices/sensor-001/notifications");
}

TEST_F(AclTest, CustomTokenReplacesTheDefaultTopic) {
  ASSERT_TRUE(
      registry_.AddDevice("pos-17", "pos_terminal", "pos-pw", "shops/17/pos"));
  ASSERT_TRUE(registry_.Grant("homepot", "shops/#", "write"));
  ASSERT_TRUE(StartBroker());
  auto pos = ConnectAs("pos-17", "pos-pw");
  auto backend = ConnectAs("homepot", "backend-pass");
  ASSERT_TRUE(pos && backend);
  EXPECT_EQ(pos->Subscribe("shops/17/pos", 1), 1);
  EXPECT_TRUE(Refused(pos->Subscribe("devices/pos-17/notifications", 1)));
  EXPECT_TRUE(Refused(pos->Subscribe("shops/17/#", 1)));
  ASSERT_EQ(backend->Publish("shops/17/pos", "paid", 1), 0);
  auto m = pos->WaitForMessage();
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->payload, "paid");
}

TEST_F(AclTest, PluginTopicsUnderSysHomepotAreNotWritable) {
  ASSERT_TRUE(registry_.Grant("gateway-01", "#", "readwrite"));
  ASSERT_TRUE(registry_.Grant("gateway-01", "$SYS/#", "readwrite"));
  ASSERT_TRUE(registry_.Grant("homepot", "$SYS/homepot/#", "read"));
  ASSERT_TRUE(registry_.Grant("homepot", "plant/#", "read"));
  ASSERT_TRUE(StartBroker({"stats_interval 0"}));
  auto gateway = ConnectAs("gateway-01", "gw-pass-1000");
  auto monitor = ConnectAs("homepot", "backend-pass");
  ASSERT_TRUE(gateway && monitor);
  ASSERT_EQ(monitor->Subscribe("$SYS/homepot/#", 1), 1);
  ASSERT_EQ(monitor->Subscribe("plant/#", 1), 1);
  for (const char* topic : {"$SYS/homepot/x", "$SYS/homepot/stats",
                            "$SYS/homepot/rejections/gateway-01",
                            "$SYS/homepot/rejections/sensor-001"}) {
    EXPECT_EQ(gateway->Publish(topic, "{}", 1), kReasonNotAuthorized) << topic;
    EXPECT_EQ(gateway->Publish(topic, "{}", 2), kReasonNotAuthorized) << topic;
    EXPECT_EQ(gateway->Publish(topic, "{}", 1, /*retain=*/true),
              kReasonNotAuthorized)
        << topic;
  }
  // The rule '#' still works for ordinary topics: the barrier is one.
  EXPECT_TRUE(NothingBefore(monitor.get(), gateway.get(), "plant/x"));
}

TEST_F(AclTest, OwnRejectionTopicIsReadableOthersAreNot) {
  ASSERT_TRUE(StartBroker());
  auto sensor = ConnectAs("sensor-001", "s3cret-one");
  ASSERT_TRUE(sensor);
  EXPECT_EQ(sensor->Subscribe("$SYS/homepot/rejections/sensor-001", 1), 1);
  EXPECT_TRUE(
      Refused(sensor->Subscribe("$SYS/homepot/rejections/gateway-01", 1)));
  EXPECT_TRUE(Refused(sensor->Subscribe("$SYS/homepot/rejections/+", 1)));
  EXPECT_TRUE(Refused(sensor->Subscribe("$SYS/homepot/rejections/#", 1)));
}

TEST_F(AclTest, ControlTopicsAreRefusedEvenWithRules) {
  ASSERT_TRUE(registry_.Grant("gateway-01", "#", "readwrite"));
  ASSERT_TRUE(registry_.Grant("gateway-01", "$CONTROL/#", "readwrite"));
  ASSERT_TRUE(StartBroker());
  auto gateway = ConnectAs("gateway-01", "gw-pass-1000");
  ASSERT_TRUE(gateway);
  EXPECT_EQ(gateway->Publish("$CONTROL/dynamic-security/v1", "{}", 1),
            kReasonNotAuthorized);
  EXPECT_EQ(gateway->Publish("$CONTROL/anything", "{}", 2),
            kReasonNotAuthorized);
  EXPECT_TRUE(Refused(gateway->Subscribe("$CONTROL/#", 1)));
  EXPECT_TRUE(
      Refused(gateway->Subscribe("$CONTROL/dynamic-security/v1/response", 1)));
  EXPECT_TRUE(gateway->IsConnected());
}

TEST_F(AclTest, SubscriptionRefusalIn311IsFailureCode) {
  ASSERT_TRUE(StartBroker());
  auto sensor = ConnectAs("sensor-001", "s3cret-one", kMqtt311);
  ASSERT_TRUE(sensor);
  EXPECT_EQ(sensor->Subscribe("devices/#", 1), kSubackFailure311);
  EXPECT_EQ(sensor->Subscribe("devices/sensor-001/notifications", 0), 0);
}

}  // namespace
}  // namespace integration
}  // namespace homepot
