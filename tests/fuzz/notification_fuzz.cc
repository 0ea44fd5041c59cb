// libFuzzer target for the notification validator and timestamp injector.
//
// For arbitrary bytes as a payload (limit 1 MiB, topic depth 3 of 7), for
// three timestamp_field settings, it checks:
//  - the verdict agrees with an independent oracle written against
//    nlohmann::json (every payload simdjson accepts nlohmann accepts too; the
//    field rules of docs/operating.md "Notifications" give the same
//    accept/reject answer);
//  - an accepted payload, once injected, is InjectedSize bytes, parses as a
//    JSON object equal to the input plus the stamp field (and "timestamp"
//    when absent), and keeps every input byte outside the replaced value in
//    order;
//  - the output is itself accepted and injecting it again changes nothing.
// Any disagreement aborts (libFuzzer then saves the input).
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "notification.h"
#include "timestamp_injector.h"

namespace {

using homepot::Reject;
using nlohmann::ordered_json;

constexpr uint32_t kMaxPayload = 1 << 20;
constexpr int kTopicDepth = 3;
constexpr int kMaxTopicDepth = 7;
constexpr int64_t kStampMs = 1795606354123;  // 2026-11-25T11:32:34.123Z

[[noreturn]] void Fail(const char* what, std::string_view detail = {}) {
  std::fprintf(stderr, "notification_fuzz: %s %.*s\n", what,
               static_cast<int>(detail.size()), detail.data());
  std::abort();
}
void CheckImpl(const char* text, bool ok, std::string_view detail = {}) {
  if (!ok) Fail(text, detail);
}
// CHECK(condition[, detail]) aborts with the condition's text and detail.
#define CHECK(...) CheckImpl("CHECK failed: " #__VA_ARGS__, __VA_ARGS__)

// ISO-8601 as docs/operating.md ("Notifications") describes it, written
// independently of the plugin.
bool OracleTimestamp(const std::string& t) {
  if (t.size() > 64) return false;
  static const std::regex re(
      R"(^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})([.,]\d{1,9})?)"
      R"(([Zz]|[+-](\d{2})(:?(\d{2}))?)?$)");
  std::smatch m;
  if (!std::regex_match(t, m, re)) return false;
  int year = std::stoi(m[1]), month = std::stoi(m[2]), day = std::stoi(m[3]);
  int hour = std::stoi(m[4]), minute = std::stoi(m[5]),
      second = std::stoi(m[6]);
  if (month < 1 || month > 12 || day < 1) return false;
  static const int kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
  int days = kDays[month - 1] + (month == 2 && leap ? 1 : 0);
  if (day > days || hour > 23 || minute > 59 || second > 60) return false;
  if (m[9].matched && std::stoi(m[9]) > 23) return false;
  if (m[11].matched && std::stoi(m[11]) > 59) return false;
  return true;
}

// The set of rule violations (bits by Reject value) nlohmann sees, or
// kUnparsed when nlohmann refuses the document.
constexpr uint32_t kUnparsed = 1u << 31;
constexpr uint32_t kDuplicate = 1u << 30;
uint32_t Oracle(std::string_view payload, const std::string& field,
                ordered_json* parsed) {
  std::set<std::string> keys;
  bool duplicate = false;
  auto callback = [&](int depth, ordered_json::parse_event_t event,
                      ordered_json& value) {
    if (event == ordered_json::parse_event_t::key && depth == 1 &&
        !keys.insert(value.get<std::string>()).second) {
      duplicate = true;
    }
    return true;
  };
  try {
    *parsed = ordered_json::parse(payload.begin(), payload.end(), callback);
  } catch (const ordered_json::exception&) {  // parse_error, out_of_range
    return kUnparsed;
  }
  const ordered_json& j = *parsed;
  if (!j.is_object()) return 1u << static_cast<int>(Reject::kNotObject);
  uint32_t bits = duplicate ? kDuplicate : 0;
  auto bad = [&](Reject r) { bits |= 1u << static_cast<int>(r); };
  if (!j.contains("title") || !j.contains("body")) bad(Reject::kMissingField);
  for (const auto& [key, value] : j.items()) {
    bool is_string = value.is_string();
    bool is_integer = value.is_number_integer();  // signed or unsigned
    if (key == field) continue;                   // overwritten: any value goes
    if (key == "title" || key == "body" || key == "message_id" ||
        key == "platform" || key == "sound") {
      if (!is_string) bad(Reject::kWrongType);
    } else if (key == "data") {
      if (!value.is_object()) bad(Reject::kWrongType);
    } else if (key == "priority") {
      static const std::set<std::string> kWords = {"low", "normal", "high",
                                                   "urgent", "critical"};
      if (!is_string) {
        bad(Reject::kWrongType);
      } else if (!kWords.count(value.get<std::string>())) {
        bad(Reject::kBadPriority);
      }
    } else if (key == "timestamp") {
      if (!is_string) {
        bad(Reject::kWrongType);
      } else if (!OracleTimestamp(value.get<std::string>())) {
        bad(Reject::kBadTimestamp);
      }
    } else if (key == "ttl") {
      if (!is_integer ||
          (value.is_number_integer() && !value.is_number_unsigned() &&
           value.get<int64_t>() < 0)) {
        bad(Reject::kWrongType);
      }
    } else if (key == "badge") {
      if (!is_integer) bad(Reject::kWrongType);
    }
  }
  return bits;
}

// True when `needle` is a subsequence of `hay`.
bool Subsequence(std::string_view needle, std::string_view hay) {
  size_t i = 0;
  for (char c : hay) {
    if (i < needle.size() && needle[i] == c) ++i;
  }
  return i == needle.size();
}

void CheckOne(homepot::NotificationValidator* v, std::string_view payload) {
  const std::string& field = v->timestamp_field();
  const homepot::NotificationCheck& check =
      v->Check(payload, kMaxPayload, kTopicDepth, kMaxTopicDepth);
  if (check.reject == Reject::kTooLarge) {
    CHECK(payload.size() > kMaxPayload);
    return;
  }
  CHECK(check.reject != Reject::kTopicTooDeep);
  CHECK((check.reject == Reject::kNone) == check.detail.empty(), check.detail);

  ordered_json in;
  uint32_t oracle = Oracle(payload, field, &in);
  if (check.reject == Reject::kInvalidJson) {
    bool duplicate = check.detail.rfind("duplicate field", 0) == 0;
    if (duplicate) CHECK(oracle & kDuplicate, check.detail);
    // Otherwise simdjson is stricter than nlohmann in known ways (numbers
    // beyond 64 bits, a BOM, a trailing NUL, nesting over 1024): no claim.
    return;
  }
  // simdjson accepted the JSON: nlohmann must too.
  CHECK(oracle != kUnparsed, "nlohmann refuses what simdjson accepted");
  if (oracle & kDuplicate) {
    // nlohmann keeps only the last of duplicate names, so the oracle cannot
    // judge the others; the validator must refuse the document anyway.
    CHECK(check.reject != Reject::kNone, "duplicate names accepted");
    return;
  }
  if (check.reject == Reject::kNone) {
    CHECK(oracle == 0, "validator accepted a bad one");
  } else {
    CHECK(oracle & (1u << static_cast<int>(check.reject)),
          homepot::RejectName(check.reject));
    return;
  }

  // Injection.
  char stamp[homepot::kStampLen];
  homepot::FormatStamp(kStampMs, stamp);
  const std::string stamp_text(stamp, homepot::kStampLen);
  const bool had_timestamp = check.has_timestamp;
  const size_t size =
      homepot::TimestampInjector(field).InjectedSize(check, payload.size());
  // Exactly sized heap buffers: ASan sees any overflow.
  std::vector<char> out_buffer(size);
  homepot::TimestampInjector(field).Inject(check, payload, stamp,
                                           out_buffer.data());
  std::string out(out_buffer.begin(), out_buffer.end());

  ordered_json got;
  try {
    got = ordered_json::parse(out);
  } catch (const ordered_json::exception&) {
    Fail("output is not JSON:", out);
  }
  CHECK(got.is_object());
  CHECK(got[field] == stamp_text, out);
  CHECK(got.contains("timestamp"), out);
  if (!had_timestamp) CHECK(got["timestamp"] == stamp_text, out);
  ordered_json want = in;
  want[field] = stamp_text;
  if (!want.contains("timestamp")) want["timestamp"] = stamp_text;
  CHECK(got == want, out);

  // Every input byte outside the replaced value survives, in order; the
  // prefix up to the value (or to the closing brace) and everything from
  // the closing brace on are copied verbatim.
  std::string kept(payload);
  size_t prefix = check.close_brace;
  if (check.has_stamp_field) {
    CHECK(check.stamp_begin < check.stamp_end &&
          check.stamp_end <= check.close_brace);
    kept.erase(check.stamp_begin, check.stamp_end - check.stamp_begin);
    prefix = check.stamp_begin;
  }
  CHECK(payload[check.close_brace] == '}');
  CHECK(Subsequence(kept, out), out);
  CHECK(out.compare(0, prefix, payload.substr(0, prefix)) == 0, out);
  std::string_view tail = payload.substr(check.close_brace);
  CHECK(out.size() >= tail.size() &&
            out.compare(out.size() - tail.size(), tail.size(), tail) == 0,
        out);

  // The output is a valid notification, and re-injecting is a no-op.
  const homepot::NotificationCheck& again =
      v->Check(out, UINT32_MAX, kTopicDepth, kMaxTopicDepth);
  CHECK(again.reject == Reject::kNone, again.detail);
  CHECK(again.has_stamp_field && again.has_timestamp);
  CHECK(homepot::TimestampInjector(field).InjectedSize(again, out.size()) ==
        out.size());
  std::vector<char> twice(out.size());
  homepot::TimestampInjector(field).Inject(again, out, stamp, twice.data());
  CHECK(std::string_view(twice.data(), twice.size()) == out, out);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // Long-lived validators, as in the plugin: buffers are reused, so stale
  // bytes from earlier inputs sit in the padding.
  static auto* validators = new std::vector<homepot::NotificationValidator*>{
      new homepot::NotificationValidator("received_at"),
      new homepot::NotificationValidator("timestamp"),
      new homepot::NotificationValidator("ts")};
  std::string_view payload(reinterpret_cast<const char*>(data), size);
  for (homepot::NotificationValidator* v : *validators) CheckOne(v, payload);
  return 0;
}
