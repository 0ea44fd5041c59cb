// Delivery statistics: counters declared once, bumped on the broker thread
// (plain integers, no locks, no allocation), rendered to the JSON of
// SPEC §7 on the stats interval.
#ifndef HOMEPOT_PLUGIN_STATS_H_
#define HOMEPOT_PLUGIN_STATS_H_

#include <cstdint>
#include <string>

#include "notification.h"

namespace homepot {

// name in code, JSON group ("" = top level), JSON key
#define HOMEPOT_COUNTERS(X)                          \
  X(total_sent, "", "total_sent")                    \
  X(total_success, "", "total_success")              \
  X(total_failed, "", "total_failed")                \
  X(connection_count, "", "connection_count")        \
  X(deliveries, "", "deliveries")                    \
  X(auth_success, "auth", "success")                 \
  X(auth_failure, "auth", "failure")                 \
  X(auth_locked_out, "auth", "locked_out")           \
  X(acl_publish_denied, "acl", "publish_denied")     \
  X(acl_subscribe_denied, "acl", "subscribe_denied") \
  X(acl_deliver_denied, "acl", "deliver_denied")

struct Counters {
#define HOMEPOT_X(name, group, key) uint64_t name = 0;
  HOMEPOT_COUNTERS(HOMEPOT_X)
#undef HOMEPOT_X
  uint64_t rejected[kRejectReasonCount] = {};
  uint64_t qos[3] = {};
  uint64_t priority[kPriorityCount] = {};
  int64_t connected = 0;
  int64_t last_sent_ms = 0;  // wall clock; 0 = never
};

struct RegistryInfo {
  uint64_t devices = 0;
  uint64_t acl_rules = 0;
  int64_t generation = 0;
  int64_t loaded_at_ms = 0;  // wall clock
  std::string last_error;    // empty = none
};

// The stats JSON object (SPEC §7), keys in a fixed order.
std::string RenderStats(const Counters& c, const RegistryInfo& registry,
                        int64_t uptime_s, int64_t now_ms);

// RFC 3339 UTC with milliseconds as a std::string.
std::string StampString(int64_t unix_ms);

// Per-device figures accumulated between flushes to device_stats.
struct DeviceCounters {
  uint64_t published = 0;
  uint64_t delivered = 0;
  uint64_t rejected = 0;
  int64_t last_connect_ms = 0;  // 0 = unchanged since the last flush
  int64_t last_publish_ms = 0;
  int64_t last_delivery_ms = 0;
  bool dirty = false;
};

struct DeviceStatsDelta {
  std::string device_id;
  DeviceCounters counters;
};

}  // namespace homepot

#endif  // HOMEPOT_PLUGIN_STATS_H_
