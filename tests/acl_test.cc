#include "acl.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "registry.h"

namespace homepot {
namespace {

constexpr Access kRead = Access::kRead;
constexpr Access kWrite = Access::kWrite;
constexpr Access kSubscribe = Access::kSubscribe;
constexpr Access kUnsubscribe = Access::kUnsubscribe;

// Builds snapshots from a few lines of rules per device.
class AclTest : public ::testing::Test {
 protected:
  void Add(const std::string& id, std::vector<AclRule> rules = {},
           std::string token = "", bool enabled = true) {
    Device d;
    d.id = id;
    d.token = std::move(token);
    d.enabled = enabled;
    d.rules = std::move(rules);
    devices_.push_back(std::move(d));
  }
  void Global(std::vector<AclRule> rules) { global_ = std::move(rules); }
  void Build() {
    snapshot_ =
        Snapshot::Build(std::move(devices_), std::move(global_), 1, 10240);
  }
  // Asks on behalf of `username` (looked up in the snapshot).
  bool Allows(const std::string& username, const std::string& topic,
              Access access, const std::string& client_id = "client-1") {
    return AclAllows(*snapshot_, snapshot_->Find(username), client_id, topic,
                     access);
  }

  std::vector<Device> devices_;
  std::vector<AclRule> global_;
  std::shared_ptr<const Snapshot> snapshot_;
};

AclRule Read(std::string f) { return {std::move(f), kRuleRead}; }
AclRule Write(std::string f) { return {std::move(f), kRuleWrite}; }
AclRule ReadWrite(std::string f) { return {std::move(f), kRuleReadWrite}; }
AclRule Deny(std::string f) { return {std::move(f), kRuleDeny}; }

TEST_F(AclTest, OwnDefaultTokenIsReadableWithoutARule) {
  Add("sensor-001");
  Add("sensor-002");
  Build();
  EXPECT_TRUE(Allows("sensor-001", "devices/sensor-001/notifications", kRead));
  EXPECT_TRUE(
      Allows("sensor-001", "devices/sensor-001/notifications", kSubscribe));
  EXPECT_TRUE(Allows("sensor-001", "$share/g/devices/sensor-001/notifications",
                     kSubscribe));
  // Reading is all it grants.
  EXPECT_FALSE(
      Allows("sensor-001", "devices/sensor-001/notifications", kWrite));
  // Exact subscriptions only: a wider filter needs a rule.
  EXPECT_FALSE(Allows("sensor-001", "devices/sensor-001/#", kSubscribe));
  EXPECT_FALSE(Allows("sensor-001", "devices/sensor-001/+", kSubscribe));
  // Another device's token is not readable.
  EXPECT_FALSE(Allows("sensor-001", "devices/sensor-002/notifications", kRead));
  EXPECT_FALSE(
      Allows("sensor-001", "devices/sensor-002/notifications", kSubscribe));
  EXPECT_FALSE(Allows("sensor-001", "devices/sensor-001/status", kRead));
}

TEST_F(AclTest, OwnCustomTokenIsReadableAndTheDefaultIsNot) {
  Add("plc-7", {}, "factory/line1/plc-7");
  Build();
  EXPECT_TRUE(Allows("plc-7", "factory/line1/plc-7", kRead));
  EXPECT_TRUE(Allows("plc-7", "factory/line1/plc-7", kSubscribe));
  EXPECT_FALSE(Allows("plc-7", "devices/plc-7/notifications", kRead));
  EXPECT_FALSE(Allows("plc-7", "devices/plc-7/notifications", kSubscribe));
  EXPECT_FALSE(Allows("plc-7", "factory/line1/+", kSubscribe));
}

TEST_F(AclTest, OwnRejectionTopicIsReadable) {
  Add("sensor-001");
  Build();
  EXPECT_TRUE(
      Allows("sensor-001", "$SYS/homepot/rejections/sensor-001", kRead));
  EXPECT_TRUE(
      Allows("sensor-001", "$SYS/homepot/rejections/sensor-001", kSubscribe));
  EXPECT_FALSE(
      Allows("sensor-001", "$SYS/homepot/rejections/sensor-0011", kRead));
  EXPECT_FALSE(
      Allows("sensor-001", "$SYS/homepot/rejections/sensor-001/x", kRead));
  EXPECT_FALSE(Allows("sensor-001", "$SYS/homepot/rejections/+", kSubscribe));
  EXPECT_FALSE(Allows("sensor-001", "$SYS/homepot/rejections/#", kSubscribe));
  // Nobody publishes there but the plugin.
  EXPECT_FALSE(
      Allows("sensor-001", "$SYS/homepot/rejections/sensor-001", kWrite));
  // The stats topic needs a rule.
  EXPECT_FALSE(Allows("sensor-001", "$SYS/homepot/stats", kRead));
}

TEST_F(AclTest, OthersRejectionTopicIsNeverReadable) {
  Add("monitor",
      {ReadWrite("#"), ReadWrite("$SYS/#"), Read("$SYS/homepot/rejections/#"),
       Read("$SYS/homepot/rejections/sensor-002")});
  Add("sensor-002");
  Global({Read("$SYS/homepot/#"), Read("$SYS/homepot/rejections/%u")});
  Build();
  EXPECT_FALSE(Allows("monitor", "$SYS/homepot/rejections/sensor-002", kRead));
  EXPECT_FALSE(Allows("monitor", "$SYS/homepot/rejections/other", kRead));
  EXPECT_FALSE(Allows("monitor", "$SYS/homepot/rejections/", kRead));
  // Its own, and other $SYS topics its rules grant, stay readable.
  EXPECT_TRUE(Allows("monitor", "$SYS/homepot/rejections/monitor", kRead));
  EXPECT_TRUE(Allows("monitor", "$SYS/homepot/stats", kRead));
  EXPECT_TRUE(Allows("monitor", "$SYS/broker/uptime", kRead));
  // The owner still reads its own.
  EXPECT_TRUE(
      Allows("sensor-002", "$SYS/homepot/rejections/sensor-002", kRead));
}

TEST_F(AclTest, ReceiptTopicsFollowTheRejectionRules) {
  const std::string p(kReceiptsPrefix);
  Add("backend", {ReadWrite("$SYS/#"), Read(p + "#"), Read(p + "sensor-002")});
  Add("sensor-002");
  Global({Read("$SYS/homepot/#"), Read(p + "%u")});
  Build();
  EXPECT_TRUE(Allows("backend", p + "backend", kRead));
  EXPECT_TRUE(Allows("backend", p + "backend", kSubscribe));
  EXPECT_TRUE(Allows("sensor-002", p + "sensor-002", kSubscribe));
  EXPECT_FALSE(Allows("backend", p + "sensor-002", kRead));
  EXPECT_FALSE(Allows("backend", p + "sensor-002", kSubscribe));
  EXPECT_FALSE(Allows("backend", p + "+", kSubscribe));
  EXPECT_FALSE(Allows("backend", p + "#", kSubscribe));
  EXPECT_FALSE(Allows("backend", p + "backend", kWrite));
  EXPECT_FALSE(Allows("backend", p + "backend/x", kRead));
}

TEST_F(AclTest, OwnAckTopicIsWritableWithoutARule) {
  Add("sensor-001", {Deny("blocked/#")});
  Add("sensor-002");
  Build();
  const AckTopic ack("devices/%u/acks");
  auto allows = [&](const std::string& user, const std::string& topic,
                    Access access) {
    return AclAllows(*snapshot_, snapshot_->Find(user), "c", topic, access,
                     &ack);
  };
  EXPECT_TRUE(allows("sensor-001", "devices/sensor-001/acks", kWrite));
  EXPECT_FALSE(allows("sensor-001", "devices/sensor-002/acks", kWrite));
  EXPECT_FALSE(allows("sensor-001", "devices/sensor-001/acks/x", kWrite));
  EXPECT_FALSE(allows("sensor-001", "devices/sensor-0011/acks", kWrite));
  // Writing is all it grants.
  EXPECT_FALSE(allows("sensor-001", "devices/sensor-001/acks", kRead));
  // Without the option there is no such topic.
  EXPECT_FALSE(Allows("sensor-001", "devices/sensor-001/acks", kWrite));
  // Deny rules still win.
  const AckTopic blocked("blocked/%u");
  EXPECT_FALSE(AclAllows(*snapshot_, snapshot_->Find("sensor-001"), "c",
                         "blocked/sensor-001", kWrite, &blocked));
  const AckTopic off("");
  EXPECT_FALSE(off.enabled());
  EXPECT_FALSE(off.IsOf("devices/sensor-001/acks", "sensor-001"));
}

TEST_F(AclTest, StatsTopicReadableWithARule) {
  Add("backend", {Read("$SYS/homepot/stats")});
  Add("sensor-001", {ReadWrite("#")});
  Build();
  EXPECT_TRUE(Allows("backend", "$SYS/homepot/stats", kRead));
  EXPECT_TRUE(Allows("backend", "$SYS/homepot/stats", kSubscribe));
  // '#' does not reach '$' topics.
  EXPECT_FALSE(Allows("sensor-001", "$SYS/homepot/stats", kRead));
  EXPECT_FALSE(Allows("sensor-001", "$SYS/homepot/stats", kSubscribe));
  EXPECT_FALSE(Allows("sensor-001", "$SYS/#", kSubscribe));
}

TEST_F(AclTest, DenyBeatsAllow) {
  Add("sensor-001", {ReadWrite("devices/#"), Deny("devices/secret/#"),
                     Deny("devices/sensor-001/notifications")});
  Build();
  EXPECT_TRUE(Allows("sensor-001", "devices/open/x", kWrite));
  EXPECT_TRUE(Allows("sensor-001", "devices/open/x", kRead));
  EXPECT_TRUE(Allows("sensor-001", "devices/open/+", kSubscribe));
  // Publish.
  EXPECT_FALSE(Allows("sensor-001", "devices/secret/x", kWrite));
  EXPECT_FALSE(Allows("sensor-001", "devices/secret", kWrite));
  // Read (each delivery).
  EXPECT_FALSE(Allows("sensor-001", "devices/secret/x", kRead));
  EXPECT_FALSE(Allows("sensor-001", "devices/secret/a/b", kRead));
  // Subscribe.
  EXPECT_FALSE(Allows("sensor-001", "devices/secret/+", kSubscribe));
  EXPECT_FALSE(Allows("sensor-001", "devices/secret/#", kSubscribe));
  EXPECT_FALSE(Allows("sensor-001", "devices/secret", kSubscribe));
  // Deny beats even the implicit read of the own token.
  EXPECT_FALSE(Allows("sensor-001", "devices/sensor-001/notifications", kRead));
  EXPECT_FALSE(
      Allows("sensor-001", "devices/sensor-001/notifications", kSubscribe));
}

TEST_F(AclTest, GlobalDenyBeatsDeviceAllow) {
  Add("sensor-001", {ReadWrite("#")});
  Global({Deny("admin/#")});
  Build();
  EXPECT_TRUE(Allows("sensor-001", "x", kWrite));
  EXPECT_FALSE(Allows("sensor-001", "admin/users", kWrite));
  EXPECT_FALSE(Allows("sensor-001", "admin/users", kRead));
  EXPECT_FALSE(Allows("sensor-001", "admin/+", kSubscribe));
}

TEST_F(AclTest, DeviceDenyBeatsGlobalAllow) {
  Add("sensor-001", {Deny("devices/sensor-001/private")});
  Add("sensor-002");
  Global({ReadWrite("devices/%u/#")});
  Build();
  EXPECT_TRUE(Allows("sensor-001", "devices/sensor-001/public", kWrite));
  EXPECT_FALSE(Allows("sensor-001", "devices/sensor-001/private", kWrite));
  EXPECT_FALSE(Allows("sensor-001", "devices/sensor-001/private", kRead));
  EXPECT_TRUE(Allows("sensor-002", "devices/sensor-002/private", kWrite));
}

TEST_F(AclTest, WriteRules) {
  // The HOMEPOT guide's example.
  Add("homepot", {Write("devices/+/notifications")});
  Add("sensor-001", {Read("devices/sensor-001/notifications")});
  Build();
  EXPECT_TRUE(Allows("homepot", "devices/sensor-001/notifications", kWrite));
  EXPECT_TRUE(Allows("homepot", "devices/anything/notifications", kWrite));
  EXPECT_FALSE(Allows("homepot", "devices/a/b/notifications", kWrite));
  EXPECT_FALSE(Allows("homepot", "devices/sensor-001/status", kWrite));
  // Write does not grant read or subscribe.
  EXPECT_FALSE(Allows("homepot", "devices/sensor-001/notifications", kRead));
  EXPECT_FALSE(Allows("homepot", "devices/+/notifications", kSubscribe));
  // A publish topic must be a topic name.
  EXPECT_FALSE(Allows("homepot", "devices/+/notifications", kWrite));
  EXPECT_FALSE(Allows("homepot", "", kWrite));
  // Read does not grant write.
  EXPECT_TRUE(Allows("sensor-001", "devices/sensor-001/notifications", kRead));
  EXPECT_FALSE(
      Allows("sensor-001", "devices/sensor-001/notifications", kWrite));
}

TEST_F(AclTest, ReadWriteGrantsBoth) {
  Add("gw", {ReadWrite("site/gw/#")});
  Build();
  EXPECT_TRUE(Allows("gw", "site/gw/temp", kRead));
  EXPECT_TRUE(Allows("gw", "site/gw/temp", kWrite));
  EXPECT_TRUE(Allows("gw", "site/gw", kWrite));
  EXPECT_TRUE(Allows("gw", "site/gw/+", kSubscribe));
  EXPECT_FALSE(Allows("gw", "site/other", kRead));
  EXPECT_FALSE(Allows("gw", "site/other", kWrite));
}

TEST_F(AclTest, GlobalRulesSubstituteUsernameAndClientId) {
  Add("sensor-001");
  Add("sensor-002");
  Global({ReadWrite("devices/%u/#"), Read("clients/%c/#"),
          Write("telemetry/%u/%c")});
  Build();
  EXPECT_TRUE(Allows("sensor-001", "devices/sensor-001/status", kRead));
  EXPECT_TRUE(Allows("sensor-001", "devices/sensor-001/status", kWrite));
  EXPECT_FALSE(Allows("sensor-001", "devices/sensor-002/status", kRead));
  EXPECT_FALSE(Allows("sensor-001", "devices/sensor-002/status", kWrite));
  EXPECT_TRUE(Allows("sensor-002", "devices/sensor-002/status", kWrite));

  EXPECT_TRUE(Allows("sensor-001", "clients/cid-1/x", kRead, "cid-1"));
  EXPECT_FALSE(Allows("sensor-001", "clients/cid-2/x", kRead, "cid-1"));
  // An empty client id matches nothing.
  EXPECT_FALSE(Allows("sensor-001", "clients//x", kRead, ""));
  EXPECT_FALSE(Allows("sensor-001", "clients/%c/x", kRead, ""));

  EXPECT_TRUE(
      Allows("sensor-001", "telemetry/sensor-001/cid-9", kWrite, "cid-9"));
  EXPECT_FALSE(
      Allows("sensor-001", "telemetry/sensor-001/cid-8", kWrite, "cid-9"));

  EXPECT_TRUE(Allows("sensor-001", "devices/sensor-001/+", kSubscribe));
  EXPECT_TRUE(Allows("sensor-001", "devices/sensor-001/#", kSubscribe));
  EXPECT_FALSE(Allows("sensor-001", "devices/+/status", kSubscribe));
  EXPECT_FALSE(Allows("sensor-001", "devices/#", kSubscribe));
}

TEST_F(AclTest, SubscriptionMustLieInsideAReadableFilter) {
  Add("sensor-001", {Read("devices/sensor-001/#"), Write("out/#")});
  Build();
  EXPECT_TRUE(Allows("sensor-001", "devices/sensor-001/+", kSubscribe));
  EXPECT_TRUE(Allows("sensor-001", "devices/sensor-001", kSubscribe));
  EXPECT_TRUE(Allows("sensor-001", "devices/sensor-001/#", kSubscribe));
  EXPECT_TRUE(Allows("sensor-001", "devices/sensor-001/a/+/b", kSubscribe));
  EXPECT_FALSE(Allows("sensor-001", "devices/#", kSubscribe));
  EXPECT_FALSE(Allows("sensor-001", "devices/+", kSubscribe));
  EXPECT_FALSE(Allows("sensor-001", "devices/+/notifications", kSubscribe));
  EXPECT_FALSE(Allows("sensor-001", "#", kSubscribe));
  EXPECT_FALSE(Allows("sensor-001", "+/sensor-001/#", kSubscribe));
  // Write rules do not allow subscribing.
  EXPECT_FALSE(Allows("sensor-001", "out/x", kSubscribe));
  // Malformed filters are refused.
  EXPECT_FALSE(Allows("sensor-001", "devices/sensor-001/a#", kSubscribe));
  EXPECT_FALSE(Allows("sensor-001", "devices/sensor-001/#/x", kSubscribe));
  EXPECT_FALSE(Allows("sensor-001", "", kSubscribe));
}

TEST_F(AclTest, SharedSubscriptionsAreJudgedWithoutTheSharePrefix) {
  Add("worker", {Read("jobs/#")});
  Build();
  EXPECT_TRUE(Allows("worker", "$share/pool/jobs/+", kSubscribe));
  EXPECT_TRUE(Allows("worker", "$share/pool/jobs/#", kSubscribe));
  EXPECT_FALSE(Allows("worker", "$share/pool/other/#", kSubscribe));
  EXPECT_FALSE(Allows("worker", "$share/pool/#", kSubscribe));
  // Malformed shared subscriptions.
  EXPECT_FALSE(Allows("worker", "$share/pool", kSubscribe));
  EXPECT_FALSE(Allows("worker", "$share//jobs/x", kSubscribe));
  EXPECT_FALSE(Allows("worker", "$share/+/jobs/x", kSubscribe));
  EXPECT_FALSE(Allows("worker", "$share/pool/", kSubscribe));
}

TEST_F(AclTest, SysWritesAreDeniedEvenWithARuleAllowingThem) {
  Add("root", {ReadWrite("#"), ReadWrite("$SYS/#"), Write("$SYS/homepot/#"),
               Write("$SYS/homepot/stats")});
  Build();
  EXPECT_FALSE(Allows("root", "$SYS/homepot/stats", kWrite));
  EXPECT_FALSE(Allows("root", "$SYS/homepot/rejections/root", kWrite));
  EXPECT_FALSE(Allows("root", "$SYS/homepot/rejections/other", kWrite));
  EXPECT_FALSE(Allows("root", "$SYS/broker/uptime", kWrite));
  EXPECT_FALSE(Allows("root", "$SYS/", kWrite));
  EXPECT_TRUE(Allows("root", "$SYS/broker/uptime", kRead));
  EXPECT_TRUE(Allows("root", "anything/else", kWrite));
}

TEST_F(AclTest, ControlTopicsAreDenied) {
  Add("root", {ReadWrite("#"), ReadWrite("$CONTROL/#")});
  Build();
  for (Access a : {kRead, kWrite, kSubscribe}) {
    EXPECT_FALSE(Allows("root", "$CONTROL/dynamic-security/v1", a))
        << static_cast<int>(a);
  }
  EXPECT_FALSE(Allows("root", "$CONTROL/#", kSubscribe));
}

TEST_F(AclTest, UnknownDeviceIsDeniedEverything) {
  Add("sensor-001", {ReadWrite("#")});
  Global({ReadWrite("#"), ReadWrite("devices/%u/#")});
  Build();
  for (Access a : {kRead, kWrite, kSubscribe, kUnsubscribe}) {
    EXPECT_FALSE(AclAllows(*snapshot_, nullptr, "cid", "x", a))
        << static_cast<int>(a);
    EXPECT_FALSE(
        AclAllows(*snapshot_, nullptr, "cid", "devices/ghost/notifications", a))
        << static_cast<int>(a);
  }
  EXPECT_FALSE(Allows("ghost", "devices/ghost/notifications", kRead));
  EXPECT_FALSE(Allows("ghost", "$SYS/homepot/rejections/ghost", kRead));
}

TEST_F(AclTest, DisabledDeviceIsDeniedEverything) {
  Add("off", {ReadWrite("#")}, "", /*enabled=*/false);
  Global({ReadWrite("#")});
  Build();
  for (Access a : {kRead, kWrite, kSubscribe, kUnsubscribe}) {
    EXPECT_FALSE(Allows("off", "x", a)) << static_cast<int>(a);
  }
  EXPECT_FALSE(Allows("off", "devices/off/notifications", kRead));
  EXPECT_FALSE(Allows("off", "devices/off/notifications", kSubscribe));
  EXPECT_FALSE(Allows("off", "$SYS/homepot/rejections/off", kRead));
}

TEST_F(AclTest, UnsubscribeIsAlwaysAllowedForAnEnabledDevice) {
  Add("sensor-001", {Deny("#")});
  Build();
  EXPECT_TRUE(Allows("sensor-001", "anything/#", kUnsubscribe));
  EXPECT_TRUE(Allows("sensor-001", "#", kUnsubscribe));
  EXPECT_TRUE(Allows("sensor-001", "$CONTROL/x", kUnsubscribe));
  EXPECT_TRUE(Allows("sensor-001", "$share/g/x", kUnsubscribe));
}

TEST_F(AclTest, UsernameCannotWidenAPercentURule) {
  // Ids with wildcards cannot be registered, but even so they stay literal.
  Add("+");
  Add("#");
  Add("sensor-001");
  Global({ReadWrite("devices/%u/#")});
  Build();
  EXPECT_FALSE(Allows("+", "devices/sensor-001/x", kRead));
  EXPECT_FALSE(Allows("+", "devices/sensor-001/x", kWrite));
  EXPECT_FALSE(Allows("#", "devices/sensor-001/x", kRead));
  EXPECT_FALSE(Allows("+", "devices/+/#", kSubscribe));
  EXPECT_FALSE(Allows("#", "devices/#", kSubscribe));
  EXPECT_FALSE(Allows("+", "devices/sensor-001/#", kSubscribe));
}

}  // namespace
}  // namespace homepot
