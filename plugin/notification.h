// Notification validation (docs/operating.md): NotificationValidator decides
// whether a payload is an acceptable notification and, for an accepted one,
// where the timestamp field's value and the root's closing brace are, which
// is all TimestampInjector (timestamp_injector.h) needs. It fully validates
// the JSON (UTF-8 included) with simdjson, without recursion, reusing its
// buffers: after warm-up an accepted notification costs no allocation.
#ifndef HOMEPOT_PLUGIN_NOTIFICATION_H_
#define HOMEPOT_PLUGIN_NOTIFICATION_H_

#include <simdjson.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace homepot {

// Stable machine words, published in notices and stats. Keep the order:
// counters are indexed by it.
#define HOMEPOT_REJECT_REASONS(X)   \
  X(kInvalidJson, "invalid_json")   \
  X(kNotObject, "not_object")       \
  X(kMissingField, "missing_field") \
  X(kWrongType, "wrong_type")       \
  X(kBadPriority, "bad_priority")   \
  X(kBadTimestamp, "bad_timestamp") \
  X(kTooLarge, "too_large")         \
  X(kTopicTooDeep, "topic_too_deep")

enum class Reject : uint8_t {
  kNone,
#define HOMEPOT_X(name, word) name,
  HOMEPOT_REJECT_REASONS(HOMEPOT_X)
#undef HOMEPOT_X
};
inline constexpr size_t kRejectReasonCount = 0
#define HOMEPOT_X(name, word) +1
    HOMEPOT_REJECT_REASONS(HOMEPOT_X)
#undef HOMEPOT_X
    ;
std::string_view RejectName(Reject reason);  // "" for kNone

#define HOMEPOT_PRIORITIES(X) \
  X(kLow, "low")              \
  X(kNormal, "normal")        \
  X(kHigh, "high") X(kUrgent, "urgent") X(kCritical, "critical")

enum class Priority : uint8_t {
  kNone,  // absent
#define HOMEPOT_X(name, word) name,
  HOMEPOT_PRIORITIES(HOMEPOT_X)
#undef HOMEPOT_X
};
inline constexpr size_t kPriorityCount = 0
#define HOMEPOT_X(name, word) +1
    HOMEPOT_PRIORITIES(HOMEPOT_X)
#undef HOMEPOT_X
    ;
std::string_view PriorityName(Priority p);  // "" for kNone

struct NotificationCheck {
  Reject reject = Reject::kNone;
  std::string detail;  // human-readable, set only when rejected
  Priority priority = Priority::kNone;
  bool has_timestamp = false;    // publisher sent "timestamp"
  bool has_stamp_field = false;  // publisher sent the timestamp_field
  size_t stamp_begin = 0;        // its value's byte span in the payload
  size_t stamp_end = 0;
  size_t close_brace = 0;  // offset of the root object's '}'
  // "ttl" in seconds (capped at kMaxTtlSeconds), or -1 when absent.
  int64_t ttl_s = -1;
  // "message_id" when it is a string (unescaped), else empty. Its buffer is
  // reused from one check to the next.
  bool has_message_id = false;
  std::string message_id;
};

// Larger "ttl" values are read as this (about 100 years).
inline constexpr int64_t kMaxTtlSeconds = int64_t{100} * 366 * 24 * 3600;

// True when `timestamp` is ISO-8601 as HOMEPOT sends it:
// YYYY-MM-DDTHH:MM:SS[.fraction][Z|±HH:MM|±HHMM|±HH].
bool IsIsoTimestamp(std::string_view timestamp);

// Checks notifications against the rules of docs/operating.md for one
// timestamp field name. Not thread-safe: one per broker thread.
class NotificationValidator {
 public:
  explicit NotificationValidator(std::string timestamp_field);
  NotificationValidator(const NotificationValidator&) = delete;
  NotificationValidator& operator=(const NotificationValidator&) = delete;

  // Checks a notification published on a topic of `topic_depth` levels.
  // `max_payload` is the effective size limit (the smaller of the plugin's
  // and the target device type's). The result lives until the next call.
  const NotificationCheck& Check(std::string_view payload, uint32_t max_payload,
                                 int topic_depth, int max_topic_depth);

  // The result of the last Check.
  const NotificationCheck& last() const { return check_; }
  const std::string& timestamp_field() const { return field_; }

 private:
  void Reject(homepot::Reject reason, std::string detail);
  void FindSpans(std::string_view payload, size_t stamp_index);

  const std::string field_;
  simdjson::dom::parser parser_;
  std::vector<char> buffer_;  // padded copy of the payload
  std::vector<std::string_view> keys_;
  NotificationCheck check_;
};

}  // namespace homepot

#endif  // HOMEPOT_PLUGIN_NOTIFICATION_H_
