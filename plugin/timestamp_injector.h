// Broker timestamp injection (docs/operating.md): writes an accepted
// notification with the broker's receipt time in the timestamp field.
// Injection splices the payload: every byte the publisher sent stays, in
// order, except the value of the timestamp field it replaces. No allocation:
// the caller provides the output buffer, sized by InjectedSize.
#ifndef HOMEPOT_PLUGIN_TIMESTAMP_INJECTOR_H_
#define HOMEPOT_PLUGIN_TIMESTAMP_INJECTOR_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "notification.h"

namespace homepot {

// RFC 3339 UTC with milliseconds: "2026-11-25T11:32:34.123Z" (24 chars).
// For times from 1970 to 9999 (years wrap modulo 10000 beyond).
inline constexpr size_t kStampLen = 24;

// The "YYYY-MM-DDTHH:MM:SS." prefix of the second formatted last: it changes
// once a second, and gmtime_r + snprintf cost more than parsing a
// notification. Owned by its one user (not thread-safe). Deliberately not
// thread_local: Mosquitto unloads the plugin before the process exits, and
// a module's thread-local blocks outliving it break LeakSanitizer.
struct StampCache {
  int64_t second = INT64_MIN;
  char prefix[20] = {};
};

// Formats `unix_ms`; `cache` (optional) saves the date formatting.
void FormatStamp(int64_t unix_ms, char out[kStampLen],
                 StampCache* cache = nullptr);

// Sets one timestamp field. Every NotificationCheck passed in must be an
// accepted one (reject == kNone) from a NotificationValidator built with the
// same field name, for the same payload. Stateless after construction, so
// it may be shared between threads.
class TimestampInjector {
 public:
  explicit TimestampInjector(std::string field);

  // Size of the payload after Inject.
  size_t InjectedSize(const NotificationCheck& check, size_t payload_len) const;

  // Offset of the stamp (its first character, after the quote) in the
  // output of Inject.
  size_t StampOffset(const NotificationCheck& check) const;

  // Writes `payload` with the field set to `stamp` (replacing the
  // publisher's value, or added before the closing brace) and "timestamp"
  // added when the publisher sent none. `out` must hold InjectedSize bytes.
  void Inject(const NotificationCheck& check, std::string_view payload,
              const char stamp[kStampLen], char* out) const;

  const std::string& field() const { return field_; }

 private:
  const std::string field_;
  const bool adds_timestamp_;  // field_ is not "timestamp"
};

}  // namespace homepot

#endif  // HOMEPOT_PLUGIN_TIMESTAMP_INJECTOR_H_
