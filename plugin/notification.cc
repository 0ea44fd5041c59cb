#include "notification.h"

#include <algorithm>
#include <cstring>

namespace homepot {
namespace {

constexpr std::string_view kReasonWords[] = {
#define HOMEPOT_X(name, word) word,
    HOMEPOT_REJECT_REASONS(HOMEPOT_X)
#undef HOMEPOT_X
};
constexpr std::string_view kPriorityWords[] = {
#define HOMEPOT_X(name, word) word,
    HOMEPOT_PRIORITIES(HOMEPOT_X)
#undef HOMEPOT_X
};
static_assert(std::size(kReasonWords) == kRejectReasonCount);
static_assert(std::size(kPriorityWords) == kPriorityCount);

using simdjson::dom::element_type;

const char* TypeName(element_type t) {
  switch (t) {
    case element_type::ARRAY:
      return "array";
    case element_type::OBJECT:
      return "object";
    case element_type::INT64:
    case element_type::UINT64:
      return "integer";
    case element_type::DOUBLE:
      return "number";
    case element_type::STRING:
      return "string";
    case element_type::BOOL:
      return "boolean";
    case element_type::NULL_VALUE:
      return "null";
  }
  return "value";
}

bool Digits(std::string_view s, size_t pos, size_t n) {
  if (pos + n > s.size()) return false;
  for (size_t i = pos; i < pos + n; ++i) {
    if (s[i] < '0' || s[i] > '9') return false;
  }
  return true;
}

int DigitsValue(std::string_view s, size_t pos, size_t n) {
  int v = 0;
  for (size_t i = pos; i < pos + n; ++i) v = v * 10 + (s[i] - '0');
  return v;
}

// Skips a JSON string starting at the opening quote; returns the offset just
// past the closing quote. The input is already validated.
size_t SkipString(std::string_view s, size_t i) {
  for (++i; i < s.size(); ++i) {
    if (s[i] == '\\') {
      ++i;
    } else if (s[i] == '"') {
      return i + 1;
    }
  }
  return s.size();
}

size_t SkipSpace(std::string_view s, size_t i) {
  while (i < s.size() &&
         (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r')) {
    ++i;
  }
  return i;
}

// Skips one validated JSON value starting at `i`, iteratively.
size_t SkipValue(std::string_view s, size_t i) {
  int depth = 0;
  do {
    char c = s[i];
    if (c == '"') {
      i = SkipString(s, i);
    } else if (c == '{' || c == '[') {
      ++depth;
      ++i;
    } else if (c == '}' || c == ']') {
      --depth;
      ++i;
    } else if (depth > 0) {
      ++i;  // separators, literals and numbers inside a container
    } else {
      while (i < s.size() && s[i] != ',' && s[i] != '}' && s[i] != ']' &&
             s[i] != ' ' && s[i] != '\t' && s[i] != '\n' && s[i] != '\r') {
        ++i;
      }
    }
  } while (depth > 0 && i < s.size());
  return i;
}

// The notification's fields, told apart by length first: a notification has ~10
// keys, and comparing each with every name cost more than the JSON parse.
enum class Field : uint8_t {
  kOther,
  kTitle,
  kBody,
  kData,
  kPriority,
  kTimestamp,
  kTtl,
  kBadge,
  kString
};

Field Classify(std::string_view k) {
  switch (k.size()) {
    case 3:
      return k == "ttl" ? Field::kTtl : Field::kOther;
    case 4:
      return k == "body"   ? Field::kBody
             : k == "data" ? Field::kData
                           : Field::kOther;
    case 5:
      return k == "title"   ? Field::kTitle
             : k == "badge" ? Field::kBadge
             : k == "sound" ? Field::kString
                            : Field::kOther;
    case 8:
      return k == "priority"   ? Field::kPriority
             : k == "platform" ? Field::kString
                               : Field::kOther;
    case 9:
      return k == "timestamp" ? Field::kTimestamp : Field::kOther;
    case 10:
      return k == "message_id" ? Field::kString : Field::kOther;
  }
  return Field::kOther;
}

}  // namespace

std::string_view RejectName(homepot::Reject reason) {
  if (reason == homepot::Reject::kNone) return "";
  return kReasonWords[static_cast<size_t>(reason) - 1];
}

std::string_view PriorityName(Priority p) {
  if (p == Priority::kNone) return "";
  return kPriorityWords[static_cast<size_t>(p) - 1];
}

bool IsIsoTimestamp(std::string_view t) {
  // YYYY-MM-DDTHH:MM:SS
  if (t.size() < 19 || t[4] != '-' || t[7] != '-' ||
      (t[10] != 'T' && t[10] != 't') || t[13] != ':' || t[16] != ':') {
    return false;
  }
  // Two digits at `i` as a number, or -1.
  auto two = [&t](size_t i) {
    unsigned a = static_cast<unsigned char>(t[i]) - '0';
    unsigned b = static_cast<unsigned char>(t[i + 1]) - '0';
    return a > 9 || b > 9 ? -1 : static_cast<int>(a * 10 + b);
  };
  int century = two(0), year2 = two(2), month = two(5), day = two(8);
  int hour = two(11), minute = two(14), second = two(17);
  if ((century | year2 | month | day | hour | minute | second) < 0) {
    return false;
  }
  int year = century * 100 + year2;
  static constexpr int kDays[] = {31, 29, 31, 30, 31, 30,
                                  31, 31, 30, 31, 30, 31};
  if (month < 1 || month > 12 || day < 1 || day > kDays[month - 1]) {
    return false;
  }
  bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
  if (month == 2 && day == 29 && !leap) return false;
  if (hour > 23 || minute > 59 || second > 60) return false;
  size_t i = 19;
  if (i < t.size() && (t[i] == '.' || t[i] == ',')) {
    size_t start = ++i;
    while (i < t.size() && t[i] >= '0' && t[i] <= '9') ++i;
    if (i == start || i - start > 9) return false;
  }
  if (i == t.size()) return true;  // no zone: local time, as HOMEPOT sends
  if ((t[i] == 'Z' || t[i] == 'z') && i + 1 == t.size()) return true;
  if (t[i] != '+' && t[i] != '-') return false;
  std::string_view zone = t.substr(i + 1);
  int zh = -1, zm = 0;
  if (zone.size() == 2 && Digits(zone, 0, 2)) {
    zh = DigitsValue(zone, 0, 2);
  } else if (zone.size() == 4 && Digits(zone, 0, 4)) {
    zh = DigitsValue(zone, 0, 2);
    zm = DigitsValue(zone, 2, 2);
  } else if (zone.size() == 5 && Digits(zone, 0, 2) && zone[2] == ':' &&
             Digits(zone, 3, 2)) {
    zh = DigitsValue(zone, 0, 2);
    zm = DigitsValue(zone, 3, 2);
  }
  return zh >= 0 && zh <= 23 && zm <= 59;
}

NotificationValidator::NotificationValidator(std::string timestamp_field)
    : field_(std::move(timestamp_field)) {}

void NotificationValidator::Reject(homepot::Reject reason, std::string detail) {
  check_.reject = reason;
  check_.detail = std::move(detail);
}

const NotificationCheck& NotificationValidator::Check(std::string_view payload,
                                                      uint32_t max_payload,
                                                      int topic_depth,
                                                      int max_topic_depth) {
  check_.reject = homepot::Reject::kNone;
  check_.detail.clear();
  check_.priority = Priority::kNone;
  check_.has_timestamp = false;
  check_.has_stamp_field = false;
  check_.stamp_begin = check_.stamp_end = check_.close_brace = 0;
  check_.ttl_s = -1;
  check_.has_message_id = false;
  check_.message_id.clear();

  if (topic_depth > max_topic_depth) {
    Reject(homepot::Reject::kTopicTooDeep,
           "topic has " + std::to_string(topic_depth) + " levels, limit " +
               std::to_string(max_topic_depth));
    return check_;
  }
  if (payload.size() > max_payload) {
    Reject(homepot::Reject::kTooLarge,
           "payload is " + std::to_string(payload.size()) + " bytes, limit " +
               std::to_string(max_payload));
    return check_;
  }
  if (buffer_.size() < payload.size() + simdjson::SIMDJSON_PADDING) {
    buffer_.resize(payload.size() + simdjson::SIMDJSON_PADDING);
  }
  std::memcpy(buffer_.data(), payload.data(), payload.size());
  simdjson::dom::element root;
  auto error = parser_.parse(buffer_.data(), payload.size(), false).get(root);
  if (error) {
    Reject(homepot::Reject::kInvalidJson, simdjson::error_message(error));
    return check_;
  }
  simdjson::dom::object object;
  if (root.get_object().get(object)) {
    Reject(homepot::Reject::kNotObject, std::string("payload is a JSON ") +
                                            TypeName(root.type()) +
                                            ", not an object");
    return check_;
  }

  bool has_title = false, has_body = false;
  size_t stamp_index = SIZE_MAX;
  size_t index = 0;
  keys_.clear();
  for (simdjson::dom::key_value_pair field : object) {
    std::string_view key = field.key;
    simdjson::dom::element value = field.value;
    element_type type = value.type();
    keys_.push_back(key);
    auto expect = [&](bool ok, const char* wanted) {
      if (!ok && check_.reject == homepot::Reject::kNone) {
        Reject(homepot::Reject::kWrongType, "field '" + std::string(key) +
                                                "' must be " + wanted +
                                                ", got " + TypeName(type));
      }
    };
    if (key == field_) {
      stamp_index = index;  // any value: it is overwritten
    }
    switch (Classify(key)) {
      case Field::kTitle:
        has_title = true;
        expect(type == element_type::STRING, "a string");
        break;
      case Field::kBody:
        has_body = true;
        expect(type == element_type::STRING, "a string");
        break;
      case Field::kData:
        expect(type == element_type::OBJECT, "an object");
        break;
      case Field::kPriority:
        expect(type == element_type::STRING, "a string");
        if (type == element_type::STRING) {
          std::string_view p = value.get_string().value_unsafe();
          auto it = std::find(std::begin(kPriorityWords),
                              std::end(kPriorityWords), p);
          if (it != std::end(kPriorityWords)) {
            check_.priority =
                static_cast<Priority>(1 + (it - std::begin(kPriorityWords)));
          } else if (check_.reject == homepot::Reject::kNone) {
            Reject(homepot::Reject::kBadPriority,
                   "priority must be one of low normal high urgent critical");
          }
        }
        break;
      case Field::kTimestamp:
        check_.has_timestamp = true;
        if (key != field_) {
          expect(type == element_type::STRING, "a string");
          if (type == element_type::STRING &&
              !IsIsoTimestamp(value.get_string().value_unsafe()) &&
              check_.reject == homepot::Reject::kNone) {
            Reject(homepot::Reject::kBadTimestamp,
                   "timestamp is not an ISO-8601 date-time");
          }
        }
        break;
      case Field::kTtl: {
        bool ok = type == element_type::UINT64 ||
                  (type == element_type::INT64 &&
                   value.get_int64().value_unsafe() >= 0);
        expect(ok, "a non-negative integer");
        if (ok) {
          uint64_t ttl =
              type == element_type::UINT64
                  ? value.get_uint64().value_unsafe()
                  : static_cast<uint64_t>(value.get_int64().value_unsafe());
          check_.ttl_s = ttl > static_cast<uint64_t>(kMaxTtlSeconds)
                             ? kMaxTtlSeconds
                             : static_cast<int64_t>(ttl);
        }
        break;
      }
      case Field::kBadge:
        expect(type == element_type::INT64 || type == element_type::UINT64,
               "an integer");
        break;
      case Field::kString:
        expect(type == element_type::STRING, "a string");
        if (type == element_type::STRING && key == "message_id") {
          check_.has_message_id = true;
          check_.message_id.assign(value.get_string().value_unsafe());
        }
        break;
      case Field::kOther:
        break;
    }
    ++index;
  }
  if (check_.reject != homepot::Reject::kNone) return check_;
  // Duplicate names would let the validator and a consumer disagree. A
  // 64-bit filter on (length, first, last byte) finds candidates; only those
  // are compared (sorting cost more than the parse).
  uint64_t seen = 0;
  for (size_t i = 0; i < keys_.size(); ++i) {
    std::string_view k = keys_[i];
    unsigned bit = k.empty()
                       ? 0
                       : (k.size() * 7 + static_cast<unsigned char>(k[0]) * 3 +
                          static_cast<unsigned char>(k.back())) &
                             63;
    if (seen & (uint64_t{1} << bit)) {
      for (size_t j = 0; j < i; ++j) {
        if (keys_[j] == k) {
          Reject(homepot::Reject::kInvalidJson,
                 "duplicate field '" + std::string(k) + "'");
          return check_;
        }
      }
    }
    seen |= uint64_t{1} << bit;
  }
  if (!has_title || !has_body) {
    Reject(homepot::Reject::kMissingField, std::string("field '") +
                                               (has_title ? "body" : "title") +
                                               "' is required");
    return check_;
  }
  FindSpans(payload, stamp_index);
  return check_;
}

void NotificationValidator::FindSpans(std::string_view s, size_t stamp_index) {
  if (stamp_index == SIZE_MAX) {
    // Usual case: only the root's closing brace is needed, the last
    // non-space byte of a validated object.
    size_t end = s.size();
    while (s[end - 1] == ' ' || s[end - 1] == '\t' || s[end - 1] == '\n' ||
           s[end - 1] == '\r') {
      --end;
    }
    check_.close_brace = end - 1;
    return;
  }
  size_t i = SkipSpace(s, 0);
  ++i;  // '{'
  size_t index = 0;
  while (true) {
    i = SkipSpace(s, i);
    if (s[i] == '}') break;
    i = SkipString(s, i);     // key
    i = SkipSpace(s, i) + 1;  // ':'
    i = SkipSpace(s, i);
    size_t end = SkipValue(s, i);
    if (index == stamp_index) {
      check_.has_stamp_field = true;
      check_.stamp_begin = i;
      check_.stamp_end = end;
    }
    i = SkipSpace(s, end);
    ++index;
    if (s[i] == ',') ++i;
  }
  check_.close_brace = i;
}

}  // namespace homepot
