// Delivery statistics: counters declared once, bumped on the broker thread
// (plain integers, no locks, no allocation), rendered to the stats JSON
// (docs/operating.md) on the stats interval.
#ifndef HOMEPOT_PLUGIN_STATS_H_
#define HOMEPOT_PLUGIN_STATS_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "notification.h"
#include "rfc3339.h"  // StampString, the times in the stats JSON

namespace homepot {

// Every scalar the broker thread keeps for the stats JSON, in the JSON's
// order: X(member, group, key, kind). group "" is the top level; a group
// object appears where its first member does. kind is
//   Count: uint64_t, only ever incremented;
//   Gauge: int64_t, a current value;
//   Time:  int64_t wall-clock ms, 0 = never; rendered as an RFC 3339 stamp
//          or null.
// This list alone decides what RenderStats writes for these members: a new
// entry needs no other edit to appear in the JSON.
#define HOMEPOT_COUNTERS(X)                                          \
  X(total_sent, "", "total_sent", Count)                             \
  X(total_success, "", "total_success", Count)                       \
  X(total_failed, "", "total_failed", Count)                         \
  X(last_sent_ms, "", "last_sent", Time)                             \
  X(connection_count, "", "connection_count", Count)                 \
  X(connected, "", "connected", Gauge)                               \
  X(reachable, "", "reachable", Gauge)                               \
  X(connected_not_subscribed, "", "connected_not_subscribed", Gauge) \
  X(deliveries, "", "deliveries", Count)                             \
  X(expired, "", "expired", Count)                                   \
  X(bridged, "", "bridged", Count)                                   \
  X(auth_success, "auth", "success", Count)                          \
  X(auth_failure, "auth", "failure", Count)                          \
  X(auth_locked_out, "auth", "locked_out", Count)                    \
  X(acl_publish_denied, "acl", "publish_denied", Count)              \
  X(acl_subscribe_denied, "acl", "subscribe_denied", Count)          \
  X(acl_deliver_denied, "acl", "deliver_denied", Count)              \
  X(receipts_sent, "receipts", "sent", Count)                        \
  X(acks_matched, "acks", "matched", Count)                          \
  X(acks_unmatched, "acks", "unmatched", Count)                      \
  X(log_dropped, "log", "dropped", Count)

using CountStat = uint64_t;
using GaugeStat = int64_t;
using TimeStat = int64_t;

// After the list above, RenderStats writes the per-reason, per-QoS and
// per-priority arrays as the groups "rejected", "qos" and "priority" (keys
// from HOMEPOT_REJECT_REASONS and HOMEPOT_PRIORITIES).
struct Counters {
#define HOMEPOT_X(name, group, key, kind) kind##Stat name = 0;
  HOMEPOT_COUNTERS(HOMEPOT_X)
#undef HOMEPOT_X
  uint64_t rejected[kRejectReasonCount] = {};  // [Reject - 1]
  uint64_t qos[3] = {};
  uint64_t priority[kPriorityCount] = {};  // [Priority - 1]
};

struct RegistryInfo {
  uint64_t devices = 0;
  uint64_t acl_rules = 0;
  int64_t generation = 0;
  int64_t loaded_at_ms = 0;  // wall clock
  std::string last_error;    // empty = none
};

// The stats JSON object (docs/operating.md): the members of Counters in the
// order above, then "registry", "node" (`node`, Config::node_id),
// "uptime_s", "version" and "timestamp".
std::string RenderStats(const Counters& c, const RegistryInfo& registry,
                        std::string_view node, int64_t uptime_s,
                        int64_t now_ms);

// Per-device figures accumulated between flushes to device_stats.
struct DeviceCounters {
  uint64_t published = 0;
  uint64_t delivered = 0;
  uint64_t rejected = 0;
  uint64_t expired = 0;         // copies for this device dropped as expired
  uint64_t acked = 0;           // acknowledgements matched to a notification
  int64_t last_connect_ms = 0;  // 0 = unchanged since the last flush
  int64_t last_publish_ms = 0;
  int64_t last_delivery_ms = 0;
  // Presence, written over the stored values (not added) when
  // presence_changed: the device's sessions connected now, and how many of
  // them hold a subscription that covers its token.
  int64_t sessions = 0;
  int64_t subscribed = 0;
  bool presence_changed = false;
  bool dirty = false;
};

struct DeviceStatsDelta {
  std::string device_id;
  DeviceCounters counters;
};

}  // namespace homepot

#endif  // HOMEPOT_PLUGIN_STATS_H_
