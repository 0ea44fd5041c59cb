#include "stats.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "testing.h"

namespace homepot {
namespace {

using nlohmann::ordered_json;
using Keys = std::vector<std::string>;

constexpr int64_t kNowMs = 1795606354123;  // 2026-11-25T11:32:34.123Z

Keys KeysOf(const ordered_json& object) {
  Keys keys;
  for (const auto& item : object.items()) keys.push_back(item.key());
  return keys;
}

ordered_json Render(const Counters& c, const RegistryInfo& r,
                    int64_t uptime_s = 0, int64_t now_ms = kNowMs,
                    std::string_view node = "broker-a") {
  std::string text = RenderStats(c, r, node, uptime_s, now_ms);
  ordered_json j;
  EXPECT_NO_THROW(j = ordered_json::parse(text)) << text;
  return j;
}

// Every counter a distinct value, so a swapped field shows.
Counters Filled() {
  Counters c;
  c.total_sent = 101;
  c.total_success = 102;
  c.total_failed = 103;
  c.connection_count = 104;
  c.deliveries = 105;
  c.auth_success = 106;
  c.auth_failure = 107;
  c.auth_locked_out = 108;
  c.acl_publish_denied = 109;
  c.acl_subscribe_denied = 110;
  c.acl_deliver_denied = 111;
  for (size_t i = 0; i < kRejectReasonCount; ++i) c.rejected[i] = 201 + i;
  for (size_t i = 0; i < 3; ++i) c.qos[i] = 301 + i;
  for (size_t i = 0; i < kPriorityCount; ++i) c.priority[i] = 401 + i;
  c.connected = 7;
  c.last_sent_ms = 1795606350000;  // 2026-11-25T11:32:30.000Z
  return c;
}

RegistryInfo FilledRegistry() {
  RegistryInfo r;
  r.devices = 1000;
  r.acl_rules = 2001;
  r.generation = 42;
  r.loaded_at_ms = 1795606300042;  // 2026-11-25T11:31:40.042Z
  r.last_error = "database is locked";
  return r;
}

TEST(StatsTest, KeysAndOrderFollowTheDocs) {
  ordered_json j = Render(Counters{}, RegistryInfo{});
  EXPECT_EQ(KeysOf(j), test::StatsKeys());
  EXPECT_EQ(KeysOf(j["auth"]), (Keys{"success", "failure", "locked_out"}));
  EXPECT_EQ(KeysOf(j["acl"]),
            (Keys{"publish_denied", "subscribe_denied", "deliver_denied"}));
  EXPECT_EQ(KeysOf(j["receipts"]), (Keys{"sent"}));
  EXPECT_EQ(KeysOf(j["acks"]), (Keys{"matched", "unmatched"}));
  EXPECT_EQ(KeysOf(j["log"]), (Keys{"dropped"}));
  EXPECT_EQ(
      KeysOf(j["rejected"]),
      (Keys{"invalid_json", "not_object", "missing_field", "wrong_type",
            "bad_priority", "bad_timestamp", "too_large", "topic_too_deep"}));
  EXPECT_EQ(KeysOf(j["qos"]), (Keys{"0", "1", "2"}));
  EXPECT_EQ(KeysOf(j["priority"]),
            (Keys{"low", "normal", "high", "urgent", "critical"}));
  EXPECT_EQ(KeysOf(j["registry"]), (Keys{"devices", "acl_rules", "generation",
                                         "loaded_at", "last_error"}));
}

ordered_json ExpectedCount(int64_t v) { return static_cast<uint64_t>(v); }
ordered_json ExpectedGauge(int64_t v) { return v; }
ordered_json ExpectedTime(int64_t v) { return StampString(v); }

TEST(StatsTest, EveryMemberOfTheCounterListIsRendered) {
  Counters c;
  int64_t next = 1795606300000;  // distinct values, each a valid time too
#define HOMEPOT_X(name, group, key, kind) \
  c.name = static_cast<kind##Stat>(next += 1000);
  HOMEPOT_COUNTERS(HOMEPOT_X)
#undef HOMEPOT_X
  ordered_json j = Render(c, RegistryInfo{});
  int members = 0;
  next = 1795606300000;
#define HOMEPOT_X(name, group, key, kind)                                   \
  {                                                                         \
    ++members;                                                              \
    const std::string where = std::string(group) + "." + key;               \
    const ordered_json& parent = std::string(group).empty() ? j : j[group]; \
    ASSERT_TRUE(parent.is_object()) << where;                               \
    ASSERT_TRUE(parent.contains(key)) << where;                             \
    EXPECT_EQ(parent[key], Expected##kind(next += 1000)) << where;          \
  }
  HOMEPOT_COUNTERS(HOMEPOT_X)
#undef HOMEPOT_X
  EXPECT_GE(members, 13);
}

TEST(StatsTest, ZeroCounters) {
  ordered_json j = Render(Counters{}, RegistryInfo{});
  EXPECT_EQ(j["total_sent"], 0);
  EXPECT_TRUE(j["last_sent"].is_null());
  EXPECT_TRUE(j["registry"]["last_error"].is_null());
  EXPECT_TRUE(j["registry"]["loaded_at"].is_null());
  for (const auto& group : {"auth", "acl", "rejected", "qos", "priority"}) {
    for (const auto& item : j[group].items()) {
      EXPECT_EQ(item.value(), 0) << group << "." << item.key();
      EXPECT_TRUE(item.value().is_number_unsigned()) << item.key();
    }
  }
}

TEST(StatsTest, ExactTextForFilledCounters) {
  std::string text =
      RenderStats(Filled(), FilledRegistry(), "broker-a", 3600, kNowMs);
  EXPECT_EQ(text,
            std::string(
                R"({"total_sent":101,"total_success":102,"total_failed":103,)"
                R"("last_sent":"2026-11-25T11:32:30.000Z",)"
                R"("connection_count":104,"connected":7,"reachable":0,)"
                R"("connected_not_subscribed":0,"deliveries":105,)"
                R"("expired":0,"bridged":0,)"
                R"("auth":{"success":106,"failure":107,"locked_out":108},)"
                R"("acl":{"publish_denied":109,"subscribe_denied":110,)"
                R"("deliver_denied":111},)"
                R"("receipts":{"sent":0},"acks":{"matched":0,"unmatched":0},)"
                R"("log":{"dropped":0},)"
                R"("rejected":{"invalid_json":201,"not_object":202,)"
                R"("missing_field":203,"wrong_type":204,"bad_priority":205,)"
                R"("bad_timestamp":206,"too_large":207,"topic_too_deep":208},)"
                R"("qos":{"0":301,"1":302,"2":303},)"
                R"("priority":{"low":401,"normal":402,"high":403,)"
                R"("urgent":404,"critical":405},)"
                R"("registry":{"devices":1000,"acl_rules":2001,)"
                R"("generation":42,"loaded_at":"2026-11-25T11:31:40.042Z",)"
                R"("last_error":"database is locked"},)"
                R"("node":"broker-a","uptime_s":3600,"version":")") +
                HOMEPOT_VERSION +
                R"(","timestamp":"2026-11-25T11:32:34.123Z"})");
}

TEST(StatsTest, RejectedIndexedByReason) {
  // Counters::rejected[i] is the reason Reject(i + 1), as homepot.cc bumps it.
  for (size_t i = 0; i < kRejectReasonCount; ++i) {
    Counters c;
    c.rejected[i] = 1;
    ordered_json j = Render(c, RegistryInfo{});
    std::string word(RejectName(static_cast<Reject>(i + 1)));
    for (const auto& item : j["rejected"].items()) {
      EXPECT_EQ(item.value(), item.key() == word ? 1 : 0) << item.key();
    }
  }
  for (size_t i = 0; i < kPriorityCount; ++i) {
    Counters c;
    c.priority[i] = 1;
    ordered_json j = Render(c, RegistryInfo{});
    std::string word(PriorityName(static_cast<Priority>(i + 1)));
    for (const auto& item : j["priority"].items()) {
      EXPECT_EQ(item.value(), item.key() == word ? 1 : 0) << item.key();
    }
  }
}

TEST(StatsTest, LargestCounterIsExact) {
  Counters c;
  c.total_sent = std::numeric_limits<uint64_t>::max();
  c.acl_deliver_denied = std::numeric_limits<uint64_t>::max() - 1;
  std::string text = RenderStats(c, RegistryInfo{}, "broker-a", 0, kNowMs);
  EXPECT_NE(text.find(R"("total_sent":18446744073709551615,)"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find(R"("deliver_denied":18446744073709551614})"),
            std::string::npos)
      << text;
}

TEST(StatsTest, LastErrorIsEscaped) {
  RegistryInfo r;
  r.last_error = "cannot open \"/var/lib/homepot.db\":\nno such file\\";
  ordered_json j = Render(Counters{}, r);
  EXPECT_EQ(j["registry"]["last_error"], r.last_error);
}

TEST(StatsTest, InvalidUtf8InLastErrorIsReplaced) {
  // A file name in Latin-1 must not make the stats document invalid JSON.
  RegistryInfo r;
  r.last_error = "cannot open /tmp/caf\xE9.db";
  ordered_json j = Render(Counters{}, r);
  EXPECT_EQ(j["registry"]["last_error"], "cannot open /tmp/caf\xEF\xBF\xBD.db");
}

// The node id is the option's value as it is: any valid node id (UTF-8,
// quotes and backslashes included) comes out as the same JSON string.
TEST(StatsTest, NodeIsTheNodeId) {
  for (const std::string node :
       {"broker-a", "h\xC3\xB6st \"7\" \\ eu-west", "x"}) {
    ordered_json j = Render(Counters{}, RegistryInfo{}, 0, kNowMs, node);
    EXPECT_EQ(j["node"], node);
  }
}

TEST(StatsTest, TimesAndVersion) {
  ordered_json j = Render(Counters{}, FilledRegistry(), 86400, kNowMs);
  EXPECT_EQ(j["uptime_s"], 86400);
  EXPECT_EQ(j["timestamp"], "2026-11-25T11:32:34.123Z");
  EXPECT_EQ(j["registry"]["loaded_at"], "2026-11-25T11:31:40.042Z");
  std::string version = j["version"];
  EXPECT_EQ(version, HOMEPOT_VERSION);
  int major = -1, minor = -1, patch = -1;
  EXPECT_EQ(std::sscanf(version.c_str(), "%d.%d.%d", &major, &minor, &patch), 3)
      << version;
}

TEST(StatsTest, StampString) {
  EXPECT_EQ(StampString(kNowMs), "2026-11-25T11:32:34.123Z");
  EXPECT_EQ(StampString(0), "1970-01-01T00:00:00.000Z");
}

}  // namespace
}  // namespace homepot
