// Hub and edges (docs/operating.md, "Hub and edges"): two real brokers with
// the plugin, an edge bridged to a hub with Mosquitto's own bridge. A
// notification the hub accepted reaches the edge's subscribers with the
// hub's received_at and is counted as a publication once; the edge stamps
// and counts what its own devices publish; a bridge that logs in as
// anything but an enabled device of type bridge is not trusted.
#include <gtest/gtest.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "harness.h"

namespace homepot {
namespace integration {
namespace {

using nlohmann::json;

constexpr const char* kEdgeToken = "devices/sensor-edge/notifications";
constexpr const char* kForged = "1999-01-01T00:00:00.000Z";

// A notification with `message_id` and a received_at its publisher made up.
std::string Forged(const std::string& message_id) {
  return R"({"title":"t","body":"b","message_id":")" + message_id +
         R"(","received_at":")" + kForged + "\"}";
}

class BridgeTest : public testing::Test {
 protected:
  void SetUp() override {
    // Hub and edge each have their copy of the one registry.
    for (TempRegistry* r : {&hub_registry_, &edge_registry_}) {
      ASSERT_TRUE(
          r->Exec("INSERT OR IGNORE INTO device_types(name, max_payload_bytes) "
                  "VALUES('bridge', 262144)"));
      ASSERT_TRUE(r->AddDevice("homepot", "backend", "backend-pass"));
      ASSERT_TRUE(r->AddDevice("gateway-01", "gateway", "gateway-pass"));
      ASSERT_TRUE(r->AddDevice("sensor-edge", "iot_sensor", "sensor-pass"));
      ASSERT_TRUE(r->AddDevice("monitor", "unknown", "monitor-pass"));
      ASSERT_TRUE(r->AddDevice("edge-1-link", "bridge", "link-pass"));
      ASSERT_TRUE(r->Grant("homepot", "devices/+/notifications", "write"));
      ASSERT_TRUE(r->Grant("gateway-01", "devices/+/notifications", "write"));
      ASSERT_TRUE(r->Grant("gateway-01", "devices/#", "read"));
      ASSERT_TRUE(r->Grant("monitor", kStatsTopic, "read"));
      ASSERT_TRUE(r->Grant("edge-1-link", "devices/#", "readwrite"));
    }
  }

  // Starts the hub, then the edge bridged to it as edge-1-link, bridging
  // devices/# in `direction`; waits until the bridge's subscription is in
  // place at the hub.
  void StartHubAndEdge(const std::string& direction = "in") {
    BrokerConfig hub;
    hub.db_path = hub_registry_.db_path();
    hub.plugin_options = {"stats_interval 1"};
    ASSERT_TRUE(hub_.Start(hub));
    StartEdge("edge-1-link", "link-pass", "edge-1-link", direction);
    ASSERT_TRUE(hub_.WaitForLog("Sending SUBACK to edge-1-link", 10000))
        << "the bridge did not subscribe at the hub; edge log:\n"
        << Tail(edge_.Log()) << "\nhub log:\n"
        << Tail(hub_.Log());
  }
  // Starts the edge with a bridge to the hub that logs in there as `link`
  // (`link_password`, client id `link_client_id`) and has `link` as its
  // local_username.
  void StartEdge(const std::string& link, const std::string& link_password,
                 const std::string& link_client_id,
                 const std::string& direction = "in") {
    BrokerConfig edge;
    edge.db_path = edge_registry_.db_path();
    edge.plugin_options = {"stats_interval 1"};
    edge.extra_lines = {
        "connection hub",
        "address 127.0.0.1:" + std::to_string(hub_.port()),
        "remote_username " + link,
        "remote_password " + link_password,
        "remote_clientid " + link_client_id,
        "local_username " + link,
        "topic devices/# " + direction + " 1",
        "cleansession true",
        "notifications false",
        "restart_timeout 1",
    };
    ASSERT_TRUE(edge_.Start(edge));
  }

  std::unique_ptr<Client> Connect(Broker& broker, const std::string& user,
                                  const std::string& password,
                                  const std::string& client_id = "") {
    auto c = std::make_unique<Client>(broker.port(), kMqtt5, client_id);
    int rc = c->Connect(user, password);
    if (rc != 0) {
      ADD_FAILURE() << user << " could not connect: CONNACK " << rc
                    << "; log tail:\n"
                    << Tail(broker.Log(), 10);
      return nullptr;
    }
    return c;
  }
  // sensor-edge, subscribed to its token at `broker`.
  std::unique_ptr<Client> Subscriber(Broker& broker,
                                     const std::string& client_id) {
    auto c = Connect(broker, "sensor-edge", "sensor-pass", client_id);
    if (c && c->Subscribe(kEdgeToken, 1) != 1) {
      ADD_FAILURE() << "sensor-edge cannot subscribe at port " << broker.port();
      return nullptr;
    }
    return c;
  }
  std::unique_ptr<Client> Monitor(Broker& broker) {
    auto c = Connect(broker, "monitor", "monitor-pass");
    if (c && c->Subscribe(kStatsTopic, 0) != 0) {
      ADD_FAILURE() << "monitor cannot subscribe to the stats topic";
      return nullptr;
    }
    return c;
  }
  // The notification `c` receives next on kEdgeToken, parsed (null JSON
  // when none arrives in time).
  static json Next(Client* c, std::string* raw = nullptr) {
    std::optional<Message> m = c->WaitForMessage(10000);
    if (!m) return json();
    EXPECT_EQ(m->topic, kEdgeToken);
    if (raw != nullptr) *raw = m->payload;
    return json::parse(m->payload, nullptr, false);
  }
  // A device_stats figure of `device` in `registry` (0 without a row).
  static int64_t Figure(TempRegistry& registry, const std::string& device,
                        const std::string& column) {
    return registry.QueryInt("SELECT COALESCE((SELECT " + column +
                                 " FROM device_stats WHERE device_id = '" +
                                 device + "'), 0)",
                             -1);
  }

  TempRegistry hub_registry_;
  TempRegistry edge_registry_;
  Broker hub_{hub_registry_.dir()};
  Broker edge_{edge_registry_.dir()};
};

TEST_F(BridgeTest, EdgeKeepsTheHubStampAndCountsNoPublication) {
  ASSERT_NO_FATAL_FAILURE(StartHubAndEdge());
  auto at_hub = Subscriber(hub_, "sensor-edge-hub");
  auto at_edge = Subscriber(edge_, "sensor-edge-edge");
  auto backend = Connect(hub_, "homepot", "backend-pass");
  auto hub_monitor = Monitor(hub_);
  auto edge_monitor = Monitor(edge_);
  ASSERT_TRUE(at_hub && at_edge && backend && hub_monitor && edge_monitor);

  const int64_t before = WallMs();
  ASSERT_EQ(backend->Publish(kEdgeToken, Forged("m-hub"), 1), 0);
  std::string hub_copy, edge_copy;
  json got_hub = Next(at_hub.get(), &hub_copy);
  json got_edge = Next(at_edge.get(), &edge_copy);
  const int64_t after = WallMs();
  ASSERT_TRUE(got_hub.is_object()) << hub_copy;
  ASSERT_TRUE(got_edge.is_object()) << "nothing bridged; edge log:\n"
                                    << Tail(edge_.Log());
  // The hub overwrote the forged stamp with its own...
  const int64_t stamp = ParseStampMs(got_hub.value("received_at", ""));
  EXPECT_GE(stamp, before);
  EXPECT_LE(stamp, after);
  EXPECT_EQ(got_hub["timestamp"], got_hub["received_at"]);
  // ... and the edge kept it: the very bytes the hub routed.
  EXPECT_EQ(got_edge["received_at"], got_hub["received_at"]);
  EXPECT_EQ(got_edge["message_id"], "m-hub");
  EXPECT_EQ(edge_copy, hub_copy);

  // One publication in the fleet: at the hub. Its copies: the hub's
  // subscriber and the bridge at the hub, the subscriber at the edge.
  json last;
  json hub_stats = WaitForStats(
      hub_monitor.get(),
      [&](const json& j) {
        return ParseStampMs(j.value("timestamp", "")) > after;
      },
      kStatsWaitMs, &last);
  ASSERT_TRUE(hub_stats.is_object()) << last;
  EXPECT_EQ(hub_stats["total_sent"], 1) << hub_stats;
  EXPECT_EQ(hub_stats["total_success"], 1) << hub_stats;
  EXPECT_EQ(hub_stats["bridged"], 0) << hub_stats;
  EXPECT_EQ(hub_stats["deliveries"], 2) << hub_stats;
  json edge_stats = WaitForStats(
      edge_monitor.get(),
      [&](const json& j) {
        return ParseStampMs(j.value("timestamp", "")) > after;
      },
      kStatsWaitMs, &last);
  ASSERT_TRUE(edge_stats.is_object()) << last;
  EXPECT_EQ(edge_stats["total_sent"], 0) << edge_stats;
  EXPECT_EQ(edge_stats["total_success"], 0) << edge_stats;
  EXPECT_EQ(edge_stats["qos"]["1"], 0) << edge_stats;
  EXPECT_EQ(edge_stats["bridged"], 1) << edge_stats;
  EXPECT_EQ(edge_stats["deliveries"], 1) << edge_stats;

  // device_stats: published once, by the backend at the hub; the edge's
  // bridge device published nothing there, its subscriber got one copy.
  ASSERT_TRUE(Eventually(
      [&] { return Figure(edge_registry_, "sensor-edge", "delivered") == 1; },
      kStatsWaitMs, 100))
      << Figure(edge_registry_, "sensor-edge", "delivered");
  EXPECT_EQ(Figure(edge_registry_, "edge-1-link", "published"), 0);
  ASSERT_TRUE(Eventually(
      [&] { return Figure(hub_registry_, "homepot", "published") == 1; },
      kStatsWaitMs, 100));
  EXPECT_EQ(Figure(hub_registry_, "edge-1-link", "delivered"), 1);
  EXPECT_EQ(Figure(hub_registry_, "sensor-edge", "delivered"), 1);
}

TEST_F(BridgeTest, EdgeStampsItsOwnDevicesAndOverwritesForgedStamps) {
  ASSERT_NO_FATAL_FAILURE(StartHubAndEdge());
  auto at_edge = Subscriber(edge_, "sensor-edge-edge");
  auto gateway = Connect(edge_, "gateway-01", "gateway-pass");
  auto edge_monitor = Monitor(edge_);
  ASSERT_TRUE(at_edge && gateway && edge_monitor);

  const int64_t before = WallMs();
  ASSERT_EQ(gateway->Publish(kEdgeToken, Forged("m-edge"), 1), 0);
  json got = Next(at_edge.get());
  const int64_t after = WallMs();
  ASSERT_TRUE(got.is_object());
  EXPECT_NE(got["received_at"], kForged);
  const int64_t stamp = ParseStampMs(got.value("received_at", ""));
  EXPECT_GE(stamp, before);
  EXPECT_LE(stamp, after);

  json last;
  json stats = WaitForStats(
      edge_monitor.get(),
      [&](const json& j) {
        return ParseStampMs(j.value("timestamp", "")) > after;
      },
      kStatsWaitMs, &last);
  ASSERT_TRUE(stats.is_object()) << last;
  EXPECT_EQ(stats["total_sent"], 1) << stats;
  EXPECT_EQ(stats["total_success"], 1) << stats;
  EXPECT_EQ(stats["bridged"], 0) << stats;
  ASSERT_TRUE(Eventually(
      [&] { return Figure(edge_registry_, "gateway-01", "published") == 1; },
      kStatsWaitMs, 100));
}

// The other way: what an edge's device published, forwarded by the edge's
// bridge to the hub, keeps the edge's stamp and counts once, at the edge.
TEST_F(BridgeTest, HubKeepsTheEdgeStampOfAForwardedNotification) {
  ASSERT_NO_FATAL_FAILURE(StartHubAndEdge("both"));
  auto at_hub = Subscriber(hub_, "sensor-edge-hub");
  auto at_edge = Subscriber(edge_, "sensor-edge-edge");
  auto gateway = Connect(edge_, "gateway-01", "gateway-pass");
  auto hub_monitor = Monitor(hub_);
  ASSERT_TRUE(at_hub && at_edge && gateway && hub_monitor);

  ASSERT_EQ(gateway->Publish(kEdgeToken, Forged("m-out"), 1), 0);
  std::string edge_copy, hub_copy;
  json got_edge = Next(at_edge.get(), &edge_copy);
  json got_hub = Next(at_hub.get(), &hub_copy);
  const int64_t after = WallMs();
  ASSERT_TRUE(got_edge.is_object());
  ASSERT_TRUE(got_hub.is_object()) << "nothing bridged; hub log:\n"
                                   << Tail(hub_.Log());
  EXPECT_NE(got_edge["received_at"], kForged);
  EXPECT_EQ(hub_copy, edge_copy);

  json last;
  json stats = WaitForStats(
      hub_monitor.get(),
      [&](const json& j) {
        return ParseStampMs(j.value("timestamp", "")) > after;
      },
      kStatsWaitMs, &last);
  ASSERT_TRUE(stats.is_object()) << last;
  EXPECT_EQ(stats["total_sent"], 0) << stats;
  EXPECT_EQ(stats["bridged"], 1) << stats;
  EXPECT_EQ(stats["receipts"]["sent"], 0) << stats;
  ASSERT_TRUE(Eventually(
      [&] { return Figure(hub_registry_, "sensor-edge", "delivered") == 1; },
      kStatsWaitMs, 100));
  EXPECT_EQ(Figure(hub_registry_, "edge-1-link", "published"), 0);
  // Not sent back to the edge: its subscriber got one copy.
  EXPECT_TRUE(NothingBefore(at_edge.get(), gateway.get(), kEdgeToken));
}

// The trust is the bridge device's type: a bridge logging in to the hub as
// an ordinary device gets what it brings stamped again by the edge. (The
// notification is retained at the hub and bridged when the edge starts, so
// the edge's stamp is later than the hub's.)
TEST_F(BridgeTest, BridgeLoggingInAsAnOrdinaryDeviceIsNotTrusted) {
  BrokerConfig hub;
  hub.db_path = hub_registry_.db_path();
  hub.plugin_options = {"stats_interval 1"};
  ASSERT_TRUE(hub_.Start(hub));
  auto at_hub = Subscriber(hub_, "sensor-edge-hub");
  auto backend = Connect(hub_, "homepot", "backend-pass");
  ASSERT_TRUE(at_hub && backend);
  ASSERT_EQ(backend->Publish(kEdgeToken, Forged("m-retained"), 1,
                             /*retain=*/true),
            0);
  json got_hub = Next(at_hub.get());
  ASSERT_TRUE(got_hub.is_object());
  const int64_t hub_stamp = ParseStampMs(got_hub.value("received_at", ""));
  ASSERT_GT(hub_stamp, 0);
  ASSERT_TRUE(Eventually([&] { return WallMs() > hub_stamp; }, 1000, 1));

  ASSERT_NO_FATAL_FAILURE(
      StartEdge("gateway-01", "gateway-pass", "gateway-01-bridge"));
  ASSERT_TRUE(hub_.WaitForLog("Sending SUBACK to gateway-01-bridge", 10000))
      << Tail(edge_.Log());
  // Live or retained at the edge, whichever comes first: the same buffer.
  auto at_edge = Subscriber(edge_, "sensor-edge-edge");
  auto edge_monitor = Monitor(edge_);
  ASSERT_TRUE(at_edge && edge_monitor);
  json got_edge = Next(at_edge.get());
  ASSERT_TRUE(got_edge.is_object()) << Tail(edge_.Log());
  EXPECT_EQ(got_edge["message_id"], "m-retained");
  EXPECT_GT(ParseStampMs(got_edge.value("received_at", "")), hub_stamp)
      << got_edge << " vs " << got_hub;

  json last;
  json stats = WaitForStats(
      edge_monitor.get(),
      [&](const json& j) { return j.value("total_sent", 0) >= 1; },
      kStatsWaitMs, &last);
  ASSERT_TRUE(stats.is_object()) << last;
  EXPECT_EQ(stats["total_sent"], 1) << stats;
  EXPECT_EQ(stats["bridged"], 0) << stats;
}

}  // namespace
}  // namespace integration
}  // namespace homepot
