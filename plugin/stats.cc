#include "stats.h"

#include <nlohmann/json.hpp>

namespace homepot {

std::string StampString(int64_t unix_ms) {
  char buf[kStampLen];
  FormatStamp(unix_ms, buf);
  return std::string(buf, kStampLen);
}

std::string RenderStats(const Counters& c, const RegistryInfo& registry,
                        int64_t uptime_s, int64_t now_ms) {
  using nlohmann::ordered_json;
  ordered_json j;
  ordered_json groups = ordered_json::object();
  auto put = [&](const char* group, const char* key, uint64_t value) {
    if (group[0] == '\0') {
      j[key] = value;
    } else {
      groups[group][key] = value;
    }
  };
  // Top-level counters first, in the order HOMEPOT's provider reports them.
  put("", "total_sent", c.total_sent);
  put("", "total_success", c.total_success);
  put("", "total_failed", c.total_failed);
  j["last_sent"] = c.last_sent_ms ? ordered_json(StampString(c.last_sent_ms))
                                  : ordered_json(nullptr);
  put("", "connection_count", c.connection_count);
  j["connected"] = c.connected;
  put("", "deliveries", c.deliveries);
#define HOMEPOT_X(name, group, key) \
  if (std::string_view(group) != "") put(group, key, c.name);
  HOMEPOT_COUNTERS(HOMEPOT_X)
#undef HOMEPOT_X
  j["auth"] = groups["auth"];
  j["acl"] = groups["acl"];
  ordered_json rejected = ordered_json::object();
  for (size_t i = 0; i < kRejectReasonCount; ++i) {
    rejected[std::string(RejectName(static_cast<Reject>(i + 1)))] =
        c.rejected[i];
  }
  j["rejected"] = rejected;
  j["qos"] = {{"0", c.qos[0]}, {"1", c.qos[1]}, {"2", c.qos[2]}};
  ordered_json priority = ordered_json::object();
  for (size_t i = 0; i < kPriorityCount; ++i) {
    priority[std::string(PriorityName(static_cast<Priority>(i + 1)))] =
        c.priority[i];
  }
  j["priority"] = priority;
  j["registry"] = {
      {"devices", registry.devices},
      {"acl_rules", registry.acl_rules},
      {"generation", registry.generation},
      {"loaded_at", registry.loaded_at_ms
                        ? ordered_json(StampString(registry.loaded_at_ms))
                        : ordered_json(nullptr)},
      {"last_error", registry.last_error.empty()
                         ? ordered_json(nullptr)
                         : ordered_json(registry.last_error)}};
  j["uptime_s"] = uptime_s;
  j["version"] = HOMEPOT_VERSION;
  j["timestamp"] = StampString(now_ms);
  return j.dump(-1, ' ', false, ordered_json::error_handler_t::replace);
}

}  // namespace homepot
