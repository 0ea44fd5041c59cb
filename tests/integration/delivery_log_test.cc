// The delivery log against the real broker: notifications with a message_id
// become notification_log rows off the broker thread, a device's ack turns
// its row to "acked" with the latency, homepot-admin reads them, and the
// retention options bound the table.
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "device.h"
#include "harness.h"

namespace homepot {
namespace integration {
namespace {

class DeliveryLogTest : public BrokerTest {
 protected:
  void SetUp() override {
    ASSERT_TRUE(registry_.AddDevice("homepot", "backend", "backend-pass"));
    for (const char* id : {"sensor-001", "sensor-002"}) {
      ASSERT_TRUE(registry_.AddDevice(id, "iot_sensor", "sensor-pass"));
    }
    ASSERT_TRUE(registry_.Grant("homepot", "devices/+/notifications", "write"));
  }

  // `homepot-admin ARGS... --json` on the registry, parsed (null on failure).
  nlohmann::json AdminJson(std::vector<std::string> args) {
    args.insert(args.begin(),
                {HOMEPOT_ADMIN_PATH, "--db", registry_.db_path()});
    args.push_back("--json");
    std::string out;
    EXPECT_EQ(RunCommand(args, "", &out), 0) << out;
    return nlohmann::json::parse(out, nullptr, false);
  }

  // message_id and outcome of every row, oldest first, as "id outcome".
  std::vector<std::string> Outcomes() {
    std::vector<TempRegistry::Row> rows;
    EXPECT_TRUE(registry_.Query(
        "SELECT message_id || ' ' || outcome FROM notification_log "
        "ORDER BY id",
        &rows));
    std::vector<std::string> out;
    for (const auto& row : rows) out.push_back(row[0].value_or("NULL"));
    return out;
  }
};

TEST_F(DeliveryLogTest, RowsAreWrittenAndAnAckUpdatesItsRow) {
  ASSERT_TRUE(StartBroker());
  auto sensor = ConnectAs("sensor-001", "sensor-pass");
  auto backend = ConnectAs("homepot", "backend-pass");
  ASSERT_TRUE(sensor && backend);
  ASSERT_EQ(sensor->Subscribe(DefaultToken("sensor-001"), 1), 1);

  const int64_t before = WallMs();
  ASSERT_EQ(backend->Publish(DefaultToken("sensor-001"),
                             NotificationWithId("m-1"), 1),
            0);
  ASSERT_EQ(backend->Publish(DefaultToken("sensor-002"),
                             NotificationWithId("m-2"), 1),
            0);
  ASSERT_TRUE(sensor->WaitForMessage());
  // Written while the broker runs, off its thread.
  ASSERT_TRUE(Eventually([&] { return Outcomes().size() == 2; }, 10000))
      << ::testing::PrintToString(Outcomes());
  EXPECT_EQ(Outcomes(),
            (std::vector<std::string>{"m-1 routed", "m-2 unreachable"}));

  ASSERT_EQ(sensor->Publish("devices/sensor-001/acks",
                            R"({"message_id":"m-1","status":"displayed"})", 1),
            0);
  ASSERT_TRUE(
      Eventually([&] { return Outcomes().front() == "m-1 acked"; }, 10000))
      << ::testing::PrintToString(Outcomes());

  nlohmann::json rows = AdminJson({"log", "--message", "m-1"});
  ASSERT_TRUE(rows.is_array() && rows.size() == 1) << rows;
  const nlohmann::json& row = rows[0];
  EXPECT_EQ(row["publisher"], "homepot");
  EXPECT_EQ(row["topic"], DefaultToken("sensor-001"));
  EXPECT_EQ(row["target_device"], "sensor-001");
  EXPECT_EQ(row["routed"], 1);
  EXPECT_EQ(row["queued"], 0);
  EXPECT_EQ(row["status"], "displayed");
  const int64_t received = ParseStampMs(row["received_at"].get<std::string>());
  const int64_t acked = ParseStampMs(row["acked_at"].get<std::string>());
  EXPECT_GE(received, before - 5);
  EXPECT_EQ(ParseStampMs(row["expires_at"].get<std::string>()),
            received + 300 * 1000);
  EXPECT_EQ(row["latency_ms"].get<int64_t>(), acked - received);
  EXPECT_GE(acked, received);

  nlohmann::json delivery = AdminJson({"delivery"});
  ASSERT_TRUE(delivery.is_object()) << delivery;
  EXPECT_EQ(delivery["total"]["notifications"], 2);
  EXPECT_EQ(delivery["total"]["acked"], 1);
  EXPECT_EQ(delivery["total"]["unreachable"], 1);
  EXPECT_EQ(delivery["total"]["delivery_rate"], 0.5);
  EXPECT_EQ(delivery["total"]["p50_ack_ms"], acked - received);
  // Writing the log never looked like a registry change.
  EXPECT_EQ(CountOccurrences(broker_.Log(), "registry reloaded"), 0)
      << Tail(broker_.Log());
}

// log_retention_rows keeps the newest rows; a clean shutdown writes what is
// pending.
TEST_F(DeliveryLogTest, RetentionRowsBoundTheLog) {
  ASSERT_TRUE(StartBroker({"log_retention_rows 3"}));
  auto backend = ConnectAs("homepot", "backend-pass");
  ASSERT_TRUE(backend);
  for (int i = 1; i <= 5; ++i) {
    ASSERT_EQ(backend->Publish(DefaultToken("sensor-001"),
                               NotificationWithId("m-" + std::to_string(i)), 1),
              0);
  }
  backend->Disconnect();
  ASSERT_EQ(broker_.Stop(), 0) << Tail(broker_.Log());
  EXPECT_EQ(Outcomes(),
            (std::vector<std::string>{"m-3 unreachable", "m-4 unreachable",
                                      "m-5 unreachable"}));
}

// log_retention_rows 0: nothing is written.
TEST_F(DeliveryLogTest, ZeroRowsTurnsTheLogOff) {
  ASSERT_TRUE(StartBroker({"log_retention_rows 0"}));
  auto backend = ConnectAs("homepot", "backend-pass");
  ASSERT_TRUE(backend);
  ASSERT_EQ(backend->Publish(DefaultToken("sensor-001"),
                             NotificationWithId("m-1"), 1),
            0);
  backend->Disconnect();
  ASSERT_EQ(broker_.Stop(), 0) << Tail(broker_.Log());
  EXPECT_EQ(registry_.QueryInt("SELECT count(*) FROM notification_log"), 0);
}

}  // namespace
}  // namespace integration
}  // namespace homepot
