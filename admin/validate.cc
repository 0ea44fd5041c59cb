#include "admin/validate.h"

#include <cstdint>

#include "credentials.h"
#include "device.h"
#include "topic.h"
#include "utf8.h"

namespace homepot::admin {
namespace {

// Decodes the UTF-8 sequence at text[pos] for Printable, which escapes what
// it cannot decode. Returns its length (1-4) and sets *code_point, or returns
// 0 for an invalid sequence.
size_t DecodeUtf8(std::string_view text, size_t pos, uint32_t* code_point) {
  const auto byte = [&](size_t i) -> uint32_t {
    return static_cast<uint8_t>(text[i]);
  };
  const uint32_t b0 = byte(pos);
  size_t len;
  uint32_t cp;
  uint32_t min;
  if (b0 < 0x80) {
    *code_point = b0;
    return 1;
  } else if ((b0 & 0xE0) == 0xC0) {
    len = 2;
    cp = b0 & 0x1F;
    min = 0x80;
  } else if ((b0 & 0xF0) == 0xE0) {
    len = 3;
    cp = b0 & 0x0F;
    min = 0x800;
  } else if ((b0 & 0xF8) == 0xF0) {
    len = 4;
    cp = b0 & 0x07;
    min = 0x10000;
  } else {
    return 0;
  }
  if (pos + len > text.size()) return 0;
  for (size_t i = 1; i < len; ++i) {
    const uint32_t b = byte(pos + i);
    if ((b & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (b & 0x3F);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
  *code_point = cp;
  return len;
}

// Control characters as the schema and the plugin define them for device ids.
bool IsControl(uint32_t cp) { return cp < 0x20 || cp == 0x7F; }

// Also C1 controls: a terminal may act on U+009B (CSI) and friends.
bool IsUnsafeToPrint(uint32_t cp) {
  return IsControl(cp) || (cp >= 0x80 && cp <= 0x9F);
}

// Shared checks for text stored in the registry; `what` names the value in
// the message ("device id", "topic filter", "device token").
Status ValidateText(std::string_view what, std::string_view text,
                    size_t max_bytes) {
  if (text.empty()) {
    return Status::Error("invalid " + std::string(what) + " '': empty");
  }
  if (text.size() > max_bytes) {
    return Status::Error("invalid " + std::string(what) + " " + Quote(text) +
                         ": longer than " + std::to_string(max_bytes) +
                         " bytes");
  }
  if (!IsValidUtf8(text)) {
    return Status::Error("invalid " + std::string(what) + " " + Quote(text) +
                         ": not valid UTF-8");
  }
  if (HasControlCharacter(text)) {
    return Status::Error("invalid " + std::string(what) + " " + Quote(text) +
                         ": contains a control character");
  }
  return Status::Ok();
}

}  // namespace

Result<RuleAccess> ParseRuleAccess(std::string_view word) {
  if (std::optional<RuleAccess> access = RuleAccessFromWord(word)) {
    return *access;
  }
  return Status::Error("invalid access " + Quote(word) +
                       ": expected read, write, readwrite or deny");
}

bool HasControlCharacter(std::string_view text) {
  // In valid UTF-8 these bytes only ever stand for themselves.
  for (unsigned char c : text) {
    if (IsControl(c)) return true;
  }
  return false;
}

Status ValidateDeviceId(std::string_view id) {
  if (const char* problem = DeviceIdProblem(id)) {
    return Status::Error("invalid device id " + Quote(id) + ": " + problem);
  }
  return Status::Ok();
}

Status ValidateFilter(std::string_view filter) {
  if (Status s = ValidateText("topic filter", filter, kMaxTopicBytes);
      !s.ok()) {
    return s;
  }
  if (!IsValidFilter(filter)) {
    return Status::Error("invalid topic filter " + Quote(filter) +
                         ": '+' and '#' must fill a whole level and '#' "
                         "must be last");
  }
  return Status::Ok();
}

Status ValidateToken(std::string_view token) {
  if (Status s = ValidateText("device token", token, kMaxTopicBytes); !s.ok()) {
    return s;
  }
  if (!IsValidTopic(token)) {
    return Status::Error("invalid device token " + Quote(token) +
                         ": a topic name cannot contain '+' or '#'");
  }
  if (token.front() == '$') {
    return Status::Error("invalid device token " + Quote(token) +
                         ": topics beginning with '$' are reserved");
  }
  return Status::Ok();
}

Result<int> ParseIterations(std::string_view text) {
  const Status bad = Status::Error("invalid iteration count " + Quote(text) +
                                   ": expected an integer from 1 to " +
                                   std::to_string(kMaxIterations) +
                                   " (every login hashes on the broker "
                                   "thread)");
  if (text.empty() || text.size() > 9) return bad;
  int64_t value = 0;
  for (const char c : text) {
    if (c < '0' || c > '9') return bad;
    value = value * 10 + (c - '0');
  }
  if (value < 1 || value > kMaxIterations) return bad;
  return static_cast<int>(value);
}

std::string Printable(std::string_view text, char quote) {
  static constexpr char kHex[] = "0123456789abcdef";
  const auto hex = [](std::string* out, uint8_t b) {
    *out += "\\x";
    *out += kHex[b >> 4];
    *out += kHex[b & 0xF];
  };
  std::string out;
  out.reserve(text.size());
  uint32_t cp;
  for (size_t pos = 0; pos < text.size();) {
    const size_t len = DecodeUtf8(text, pos, &cp);
    if (len == 0) {
      hex(&out, static_cast<uint8_t>(text[pos]));
      ++pos;
      continue;
    }
    if (cp == '\n') {
      out += "\\n";
    } else if (cp == '\r') {
      out += "\\r";
    } else if (cp == '\t') {
      out += "\\t";
    } else if (cp == '\\' || (quote != '\0' && cp == uint32_t(quote))) {
      out += '\\';
      out += static_cast<char>(cp);
    } else if (IsUnsafeToPrint(cp)) {
      for (size_t i = 0; i < len; ++i) {
        hex(&out, static_cast<uint8_t>(text[pos + i]));
      }
    } else {
      out.append(text.substr(pos, len));
    }
    pos += len;
  }
  return out;
}

std::string Quote(std::string_view text) {
  constexpr size_t kMaxShown = 80;
  if (text.size() <= kMaxShown) return "'" + Printable(text, '\'') + "'";
  // Cut on a character boundary: back up over UTF-8 continuation bytes.
  size_t cut = kMaxShown;
  while (cut > kMaxShown - 3 &&
         (static_cast<uint8_t>(text[cut]) & 0xC0) == 0x80) {
    --cut;
  }
  return "'" + Printable(text.substr(0, cut), '\'') + "...'";
}

}  // namespace homepot::admin
