// Broker timestamp injection (docs/operating.md): writes an accepted
// notification with the broker's receipt time in the timestamp field.
// Injection splices the payload: every byte the publisher sent stays, in
// order, except the value of the timestamp field it replaces. No allocation:
// the caller provides the output buffer, sized by InjectedSize.
#ifndef HOMEPOT_PLUGIN_TIMESTAMP_INJECTOR_H_
#define HOMEPOT_PLUGIN_TIMESTAMP_INJECTOR_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "notification.h"
#include "rfc3339.h"

namespace homepot {

// Sets one timestamp field (a stamp from FormatStamp, common/rfc3339.h). Every
// NotificationCheck passed in must be an accepted one (reject == kNone) from a
// NotificationValidator built with the same field name, for the same payload.
// Stateless after construction, so it may be shared between threads.
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

  // The time in the field of `payload` when it holds a stamp exactly as
  // Inject writes it (a JSON string of FormatStamp's 24 characters, no
  // escapes), else nullopt (absent, another type, another form of time).
  // Writing that time again with Inject reproduces the field's bytes.
  std::optional<int64_t> ReadStamp(const NotificationCheck& check,
                                   std::string_view payload) const;

  const std::string& field() const { return field_; }

 private:
  const std::string field_;
  const bool adds_timestamp_;  // field_ is not "timestamp"
};

}  // namespace homepot

#endif  // HOMEPOT_PLUGIN_TIMESTAMP_INJECTOR_H_
