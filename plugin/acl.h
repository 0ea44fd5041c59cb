// Topic access decisions against a registry snapshot. Pure: no broker, no
// clock, no allocation.
#ifndef HOMEPOT_PLUGIN_ACL_H_
#define HOMEPOT_PLUGIN_ACL_H_

#include <string>
#include <string_view>

#include "registry.h"

namespace homepot {

// What the client asks to do; values equal Mosquitto's MOSQ_ACL_*.
enum class Access { kRead = 1, kWrite = 2, kSubscribe = 4, kUnsubscribe = 8 };

// Topics only the plugin publishes on, and the per-device rejection notices.
inline constexpr std::string_view kReservedPrefix = "$SYS/homepot/";
inline constexpr std::string_view kRejectionsPrefix =
    "$SYS/homepot/rejections/";
inline constexpr std::string_view kReceiptsPrefix = "$SYS/homepot/receipts/";

// The acknowledgement topic of each device (option ack_topic, a pattern
// whose one %u level is the device id; see IsAckTopicPattern), which the
// device may write without a rule. Empty pattern: no such topic.
class AckTopic {
 public:
  explicit AckTopic(std::string_view pattern);
  bool enabled() const { return enabled_; }
  // True when `topic` is the acknowledgement topic of `device_id`.
  bool IsOf(std::string_view topic, std::string_view device_id) const {
    return enabled_ &&
           topic.size() == prefix_.size() + device_id.size() + suffix_.size() &&
           topic.compare(0, prefix_.size(), prefix_) == 0 &&
           topic.compare(prefix_.size(), device_id.size(), device_id) == 0 &&
           topic.compare(prefix_.size() + device_id.size(), suffix_.size(),
                         suffix_) == 0;
  }

 private:
  bool enabled_ = false;
  std::string prefix_;  // before %u
  std::string suffix_;  // after %u
};

// Limit on client ids (checked at login, before anything is stored).
inline constexpr size_t kMaxClientIdBytes = 256;

// Why `client_id` is refused at login, or nullptr when its form is fine:
// 1-256 bytes without '+', '#', '/' or NUL, not starting with '$'. So %c can
// never widen a filter nor reach $-topics.
const char* ClientIdFormatProblem(std::string_view client_id);

// True when %c may expand to `client_id` for `device`: a well-formed id that
// is not the id of another registered device (which would let a device pose
// as that device's subtree in rules such as devices/%c/#). Otherwise %c
// expands to nothing and its rules match nothing.
bool ClientIdMayExpand(const Snapshot& snapshot, const Device& device,
                       std::string_view client_id);

// True when `device` (nullptr = unknown or not registered) may do `access` on
// `topic` (for kSubscribe, a filter, possibly $share/...). `client_id`
// substitutes %c. Rules: deny beats allow; a device may read its own token
// and its own rejection topic; everything else needs a rule; nothing under
// $SYS/ or $CONTROL/ is writable; rejection topics are readable by their
// device alone (subscriptions inside $SYS/homepot/rejections/# other than
// the own topic are refused); the same holds for receipt topics
// ($SYS/homepot/receipts/<device id>); a device may write its own
// acknowledgement topic (`ack`); an unknown or disabled device is denied
// everything.
bool AclAllows(const Snapshot& snapshot, const Device* device,
               std::string_view client_id, std::string_view topic,
               Access access, const AckTopic* ack = nullptr);

}  // namespace homepot

#endif  // HOMEPOT_PLUGIN_ACL_H_
