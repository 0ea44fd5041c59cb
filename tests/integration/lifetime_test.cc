// Notification lifetime against the real broker: copies queued for an
// offline session, retained copies and copies restored from the persistence
// file are delivered only while the notification is live; "ttl": 0 reaches
// only the sessions connected when it is routed.
#include <memory>
#include <string>
#include <vector>

#include "harness.h"

namespace homepot {
namespace integration {
namespace {

const std::string kTopic = "devices/sensor-001/notifications";

// The message ids of `messages`, barriers left out.
std::vector<std::string> MessageIds(const std::vector<Message>& messages) {
  std::vector<std::string> ids;
  for (const Message& m : messages) {
    if (IsBarrier(m)) continue;
    nlohmann::json n = nlohmann::json::parse(m.payload, nullptr, false);
    ids.push_back(n.is_object() && n.contains("message_id")
                      ? n["message_id"].get<std::string>()
                      : "?");
  }
  return ids;
}

class LifetimeTest : public BrokerTest {
 protected:
  void SetUp() override {
    ASSERT_TRUE(registry_.AddDevice("homepot", "backend", "backend-pass"));
    ASSERT_TRUE(registry_.AddDevice("sensor-001", "iot_sensor", "sensor-pass"));
    ASSERT_TRUE(registry_.AddDevice("monitor", "unknown", "monitor-pass"));
    ASSERT_TRUE(registry_.Grant("homepot", "devices/+/notifications", "write"));
    ASSERT_TRUE(registry_.Grant("monitor", kStatsTopic, "read"));
  }

  std::unique_ptr<Client> Sensor(ClientOptions options) {
    auto c = std::make_unique<Client>(broker_.port(), std::move(options));
    if (c->Connect("sensor-001", "sensor-pass") != 0) {
      ADD_FAILURE() << "sensor-001 could not connect";
      return nullptr;
    }
    return c;
  }
  // Opens the durable session, subscribes and goes offline.
  void SubscribeAndLeave(int protocol, const std::string& client_id) {
    auto s = Sensor(Durable(protocol, client_id));
    ASSERT_TRUE(s);
    ASSERT_EQ(s->Subscribe(kTopic, 1), 1);
    s->Disconnect();
  }
  // The expired count of the next stats reaching at least `at_least`.
  int64_t WaitForExpired(int64_t at_least) {
    auto monitor = ConnectAs("monitor", "monitor-pass");
    if (!monitor || monitor->Subscribe(kStatsTopic, 0) != 0) return -1;
    nlohmann::json last;
    nlohmann::json s = WaitForStats(
        monitor.get(),
        [&](const nlohmann::json& j) {
          return j.value("expired", int64_t{0}) >= at_least;
        },
        kStatsWaitMs, &last);
    return s.is_null() ? last.value("expired", int64_t{-1})
                       : s.value("expired", int64_t{-1});
  }
};

class OfflineSessionTest : public LifetimeTest,
                           public testing::WithParamInterface<int> {};

TEST_P(OfflineSessionTest, GetsOnlyTheCopiesStillLive) {
  ASSERT_TRUE(StartBroker({"stats_interval 1"}));
  ASSERT_NO_FATAL_FAILURE(SubscribeAndLeave(GetParam(), "s-durable"));
  auto backend = ConnectAs("homepot", "backend-pass");
  ASSERT_TRUE(backend);
  ASSERT_EQ(backend->Publish(kTopic, NotificationWithId("short", 1), 1), 0);
  ASSERT_EQ(backend->Publish(kTopic, NotificationWithId("long", 60), 1), 0);
  SleepMs(1500);  // past the first one's ttl
  auto back = Sensor(Durable(GetParam(), "s-durable"));
  ASSERT_TRUE(back);
  std::vector<Message> got;
  ASSERT_TRUE(ReceiveUntilBarrier(back.get(), backend.get(), kTopic, &got));
  EXPECT_EQ(MessageIds(got), std::vector<std::string>{"long"});
  EXPECT_EQ(WaitForExpired(1), 1);
}

INSTANTIATE_TEST_SUITE_P(Protocols, OfflineSessionTest,
                         testing::Values(kMqtt311, kMqtt5));

TEST_F(LifetimeTest, RetainedNotificationStopsAfterItsTtl) {
  ASSERT_TRUE(StartBroker({"stats_interval 1"}));
  auto backend = ConnectAs("homepot", "backend-pass");
  ASSERT_TRUE(backend);
  ASSERT_EQ(backend->Publish(kTopic, NotificationWithId("kept", 2), 1, true),
            0);
  {
    auto early = Sensor(ClientOptions());
    ASSERT_TRUE(early);
    ASSERT_EQ(early->Subscribe(kTopic, 1), 1);
    std::vector<Message> got;
    ASSERT_TRUE(ReceiveUntilBarrier(early.get(), backend.get(), kTopic, &got));
    EXPECT_EQ(MessageIds(got), std::vector<std::string>{"kept"});
    ASSERT_FALSE(got.empty());
    EXPECT_TRUE(got.front().retain);
  }
  SleepMs(2200);
  auto late = Sensor(ClientOptions());
  ASSERT_TRUE(late);
  ASSERT_EQ(late->Subscribe(kTopic, 1), 1);
  EXPECT_TRUE(NothingBefore(late.get(), backend.get(), kTopic));
  EXPECT_EQ(WaitForExpired(1), 1);
}

TEST_F(LifetimeTest, TtlZeroReachesOnlyConnectedSessionsAndIsNotRetained) {
  ASSERT_TRUE(StartBroker({"stats_interval 1"}));
  ASSERT_NO_FATAL_FAILURE(SubscribeAndLeave(kMqtt5, "s-offline"));
  auto online = Sensor(ClientOptions());
  ASSERT_TRUE(online);
  ASSERT_EQ(online->Subscribe(kTopic, 1), 1);
  auto backend = ConnectAs("homepot", "backend-pass");
  ASSERT_TRUE(backend);
  ASSERT_EQ(backend->Publish(kTopic, NotificationWithId("now", 0), 1, true), 0);
  std::vector<Message> got;
  ASSERT_TRUE(ReceiveUntilBarrier(online.get(), backend.get(), kTopic, &got));
  EXPECT_EQ(MessageIds(got), std::vector<std::string>{"now"});
  // The offline session gets nothing when it returns, a new subscriber no
  // retained copy.
  auto back = Sensor(Durable(kMqtt5, "s-offline"));
  ASSERT_TRUE(back);
  EXPECT_TRUE(NothingBefore(back.get(), backend.get(), kTopic));
  auto late = Sensor(ClientOptions());
  ASSERT_TRUE(late);
  ASSERT_EQ(late->Subscribe(kTopic, 1), 1);
  EXPECT_TRUE(NothingBefore(late.get(), backend.get(), kTopic));
  EXPECT_EQ(WaitForExpired(1), 1);
}

// The queued copies survive a restart in Mosquitto's persistence file; the
// plugin reads their lifetime from their stamp.
TEST_F(LifetimeTest, QueuedCopyRestoredAfterARestartExpiresOnTime) {
  const std::vector<std::string> persistence = {
      "persistence true", "persistence_location " + registry_.dir() + "/"};
  ASSERT_TRUE(StartBroker({"stats_interval 1"}, persistence));
  ASSERT_NO_FATAL_FAILURE(SubscribeAndLeave(kMqtt311, "s-durable"));
  const int64_t published = WallMs();
  {
    auto backend = ConnectAs("homepot", "backend-pass");
    ASSERT_TRUE(backend);
    ASSERT_EQ(backend->Publish(kTopic, NotificationWithId("short", 3), 1), 0);
    ASSERT_EQ(backend->Publish(kTopic, NotificationWithId("long", 60), 1), 0);
  }
  ASSERT_EQ(broker_.Stop(), 0);
  ASSERT_TRUE(StartBroker({"stats_interval 1"}, persistence));
  const int64_t wait = published + 3200 - WallMs();
  ASSERT_GT(wait, 0) << "the restart took longer than the ttl";
  SleepMs(static_cast<int>(wait));
  auto backend = ConnectAs("homepot", "backend-pass");
  auto back = Sensor(Durable(kMqtt311, "s-durable"));
  ASSERT_TRUE(backend && back);
  std::vector<Message> got;
  ASSERT_TRUE(ReceiveUntilBarrier(back.get(), backend.get(), kTopic, &got));
  EXPECT_EQ(MessageIds(got), std::vector<std::string>{"long"});
  EXPECT_EQ(WaitForExpired(1), 1);
}

}  // namespace
}  // namespace integration
}  // namespace homepot
