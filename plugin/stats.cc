#include "stats.h"

#include <nlohmann/json.hpp>

namespace homepot {

namespace {

using nlohmann::ordered_json;

ordered_json RenderCount(uint64_t value) { return value; }
ordered_json RenderGauge(int64_t value) { return value; }
ordered_json RenderTime(int64_t unix_ms) {
  return unix_ms ? ordered_json(StampString(unix_ms)) : ordered_json(nullptr);
}

}  // namespace

std::string RenderStats(const Counters& c, const RegistryInfo& registry,
                        std::string_view node, int64_t uptime_s,
                        int64_t now_ms) {
  ordered_json j = ordered_json::object();
  const auto put = [&j](const char* group, const char* key,
                        ordered_json value) {
    (group[0] == '\0' ? j : j[group])[key] = std::move(value);
  };
#define HOMEPOT_X(name, group, key, kind) put(group, key, Render##kind(c.name));
  HOMEPOT_COUNTERS(HOMEPOT_X)
#undef HOMEPOT_X
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
  j["registry"] = {{"devices", registry.devices},
                   {"acl_rules", registry.acl_rules},
                   {"generation", registry.generation},
                   {"loaded_at", RenderTime(registry.loaded_at_ms)},
                   {"last_error", registry.last_error.empty()
                                      ? ordered_json(nullptr)
                                      : ordered_json(registry.last_error)}};
  j["node"] = node;
  j["uptime_s"] = uptime_s;
  j["version"] = HOMEPOT_VERSION;
  j["timestamp"] = StampString(now_ms);
  return j.dump(-1, ' ', false, ordered_json::error_handler_t::replace);
}

}  // namespace homepot
