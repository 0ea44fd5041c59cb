#include "acl.h"

#include <cstring>

#include "topic.h"

namespace homepot {
namespace {

bool StartsWith(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

// True when `topic` is `$SYS/homepot/rejections/<device id>` or
// `$SYS/homepot/receipts/<device id>`.
bool IsOwnNoticeTopic(const Device& d, std::string_view topic) {
  for (std::string_view prefix : {kRejectionsPrefix, kReceiptsPrefix}) {
    if (StartsWith(topic, prefix)) return topic.substr(prefix.size()) == d.id;
  }
  return false;
}

// True when `topic` lies under the per-device notice prefixes.
bool IsNoticeTopic(std::string_view topic) {
  return StartsWith(topic, kRejectionsPrefix) ||
         StartsWith(topic, kReceiptsPrefix);
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
                  uint8_t bit, const AckTopic* ack) {
  auto matches = [&](const std::string& f) {
    return FilterMatches(f, topic, d.id, client_id);
  };
  if (AnyRule(snapshot, d, kRuleDeny, matches)) return false;
  if (bit == kRuleRead && (d.IsToken(topic) || IsOwnNoticeTopic(d, topic))) {
    return true;
  }
  if (bit == kRuleWrite && ack != nullptr && ack->IsOf(topic, d.id)) {
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
  // Own token / notice topics: exact subscriptions only.
  if (d.IsToken(filter) || IsOwnNoticeTopic(d, filter)) return true;
  // Filters aimed at other devices' notices are refused outright (wider
  // ones such as $SYS/# are filtered per delivery).
  if (FilterInside(filter, "$SYS/homepot/rejections/#") ||
      FilterInside(filter, "$SYS/homepot/receipts/#")) {
    return false;
  }
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

AckTopic::AckTopic(std::string_view pattern) {
  const size_t at = pattern.find("%u");
  if (at == std::string_view::npos) return;
  enabled_ = true;
  prefix_ = pattern.substr(0, at);
  suffix_ = pattern.substr(at + 2);
}

bool AclAllows(const Snapshot& snapshot, const Device* device,
               std::string_view client_id, std::string_view topic,
               Access access, const AckTopic* ack) {
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
      return TopicAllowed(snapshot, *device, client_id, topic, kRuleWrite, ack);
    case Access::kRead:
      if (IsNoticeTopic(topic) && !IsOwnNoticeTopic(*device, topic)) {
        return false;
      }
      return TopicAllowed(snapshot, *device, client_id, topic, kRuleRead, ack);
    case Access::kSubscribe:
      return SubscriptionAllowed(snapshot, *device, client_id, topic);
    case Access::kUnsubscribe:
      return true;
  }
  return false;
}

}  // namespace homepot
