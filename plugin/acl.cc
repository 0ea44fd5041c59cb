#include "acl.h"

#include <cstring>

#include "topic.h"

namespace homepot {
namespace {

bool StartsWith(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

// True when `topic` is `$SYS/homepot/rejections/<device id>`.
bool IsOwnRejectionTopic(const Device& d, std::string_view topic) {
  return StartsWith(topic, kRejectionsPrefix) &&
         topic.substr(kRejectionsPrefix.size()) == d.id;
}

// Applies `test(filter)` to every rule of the device and every global rule
// that carries one of `bits`.
template <typename Test>
bool AnyRule(const Snapshot& snapshot, const Device& d, uint8_t bits,
             Test test) {
  for (const AclRule& r : d.rules) {
    if ((r.access & bits) && test(r.filter)) return true;
  }
  for (const AclRule& r : snapshot.global_rules()) {
    if ((r.access & bits) && test(r.filter)) return true;
  }
  return false;
}

bool TopicAllowed(const Snapshot& snapshot, const Device& d,
                  std::string_view client_id, std::string_view topic,
                  uint8_t bit) {
  auto matches = [&](const std::string& f) {
    return FilterMatches(f, topic, d.id, client_id);
  };
  if (AnyRule(snapshot, d, kRuleDeny, matches)) return false;
  if (bit == kRuleRead && (d.IsToken(topic) || IsOwnRejectionTopic(d, topic))) {
    return true;
  }
  return AnyRule(snapshot, d, bit, matches);
}

bool SubscriptionAllowed(const Snapshot& snapshot, const Device& d,
                         std::string_view client_id, std::string_view filter) {
  filter = StripSharePrefix(filter);
  if (!IsValidFilter(filter)) return false;
  auto inside = [&](const std::string& f) {
    return FilterInside(filter, f, d.id, client_id);
  };
  if (AnyRule(snapshot, d, kRuleDeny, inside)) return false;
  // Own token / rejection topic: exact subscriptions only.
  if (d.IsToken(filter) || IsOwnRejectionTopic(d, filter)) return true;
  // Filters aimed at other devices' rejection notices are refused outright
  // (wider ones such as $SYS/# are filtered per delivery).
  if (FilterInside(filter, "$SYS/homepot/rejections/#")) return false;
  return AnyRule(snapshot, d, kRuleRead, inside);
}

}  // namespace

const char* ClientIdFormatProblem(std::string_view client_id) {
  if (client_id.empty()) return "empty client id";
  if (client_id.size() > kMaxClientIdBytes) {
    return "client id longer than 256 bytes";
  }
  if (client_id[0] == '$') return "client id starts with '$'";
  for (char c : client_id) {
    if (c == '+' || c == '#' || c == '/' || c == '\0') {
      return "client id contains '+', '#', '/' or NUL";
    }
  }
  return nullptr;
}

bool ClientIdMayExpand(const Snapshot& snapshot, const Device& device,
                       std::string_view client_id) {
  if (ClientIdFormatProblem(client_id) != nullptr) return false;
  const Device* other = snapshot.Find(client_id);
  return other == nullptr || other == &device;
}

bool AclAllows(const Snapshot& snapshot, const Device* device,
               std::string_view client_id, std::string_view topic,
               Access access) {
  if (device == nullptr || !device->enabled) return false;
  if (access == Access::kUnsubscribe) return true;
  if (StartsWith(topic, "$CONTROL/")) return false;
  switch (access) {
    case Access::kWrite:
      // Mosquitto checks topic names too; memchr keeps this one cheap.
      if (StartsWith(topic, "$SYS/") || topic.empty() ||
          std::memchr(topic.data(), '+', topic.size()) != nullptr ||
          std::memchr(topic.data(), '#', topic.size()) != nullptr) {
        return false;
      }
      return TopicAllowed(snapshot, *device, client_id, topic, kRuleWrite);
    case Access::kRead:
      if (StartsWith(topic, kRejectionsPrefix) &&
          !IsOwnRejectionTopic(*device, topic)) {
        return false;
      }
      return TopicAllowed(snapshot, *device, client_id, topic, kRuleRead);
    case Access::kSubscribe:
      return SubscriptionAllowed(snapshot, *device, client_id, topic);
    case Access::kUnsubscribe:
      return true;
  }
  return false;
}

}  // namespace homepot
