#include "timestamp_injector.h"

#include <algorithm>
#include <utility>

namespace homepot {
namespace {

constexpr std::string_view kTimestampKey = "timestamp";
// ,"<name>":"<stamp>"
size_t MemberSize(std::string_view name) { return name.size() + 6 + kStampLen; }
char* WriteMember(char* out, std::string_view name, const char* stamp) {
  *out++ = ',';
  *out++ = '"';
  out = std::copy(name.begin(), name.end(), out);
  *out++ = '"';
  *out++ = ':';
  *out++ = '"';
  out = std::copy(stamp, stamp + kStampLen, out);
  *out++ = '"';
  return out;
}
}  // namespace

TimestampInjector::TimestampInjector(std::string field)
    : field_(std::move(field)), adds_timestamp_(field_ != kTimestampKey) {}

size_t TimestampInjector::InjectedSize(const NotificationCheck& check,
                                       size_t payload_len) const {
  size_t size = payload_len;
  if (check.has_stamp_field) {
    size = size - (check.stamp_end - check.stamp_begin) + kStampLen + 2;
  } else {
    size += MemberSize(field_);
  }
  if (!check.has_timestamp && adds_timestamp_) {
    size += MemberSize(kTimestampKey);
  }
  return size;
}

size_t TimestampInjector::StampOffset(const NotificationCheck& check) const {
  // Replaced in place, or added as ,"<field>":"<stamp>" before the brace.
  return check.has_stamp_field ? check.stamp_begin + 1
                               : check.close_brace + field_.size() + 5;
}

void TimestampInjector::Inject(const NotificationCheck& check,
                               std::string_view payload,
                               const char stamp[kStampLen], char* out) const {
  const char* in = payload.data();
  if (check.has_stamp_field) {
    out = std::copy(in, in + check.stamp_begin, out);
    *out++ = '"';
    out = std::copy(stamp, stamp + kStampLen, out);
    *out++ = '"';
    out = std::copy(in + check.stamp_end, in + check.close_brace, out);
  } else {
    out = std::copy(in, in + check.close_brace, out);
    out = WriteMember(out, field_, stamp);
  }
  if (!check.has_timestamp && adds_timestamp_) {
    out = WriteMember(out, kTimestampKey, stamp);
  }
  std::copy(in + check.close_brace, in + payload.size(), out);
}

std::optional<int64_t> TimestampInjector::ReadStamp(
    const NotificationCheck& check, std::string_view payload) const {
  if (!check.has_stamp_field ||
      check.stamp_end - check.stamp_begin != kStampLen + 2 ||
      check.stamp_end > payload.size() || payload[check.stamp_begin] != '"' ||
      payload[check.stamp_end - 1] != '"') {
    return std::nullopt;
  }
  const std::string_view text =
      payload.substr(check.stamp_begin + 1, kStampLen);
  const std::optional<int64_t> ms = ParseRfc3339Ms(text);
  if (!ms) return std::nullopt;
  char written[kStampLen];
  FormatStamp(*ms, written);
  if (text != std::string_view(written, kStampLen)) return std::nullopt;
  return ms;
}

}  // namespace homepot
