// The one UTF-8 check of the plugin and homepot-admin.
#ifndef HOMEPOT_COMMON_UTF8_H_
#define HOMEPOT_COMMON_UTF8_H_

#include <cstddef>
#include <string_view>

namespace homepot {

// True for well-formed UTF-8: no overlong forms, no surrogates, nothing above
// U+10FFFF (simdjson's validator, the one the notification parser applies).
bool IsValidUtf8(std::string_view text);

// The longest prefix of `text` of at most `max_bytes` that does not end
// inside a multi-byte character (valid UTF-8 stays valid).
inline std::string_view Utf8Prefix(std::string_view text, size_t max_bytes) {
  if (text.size() <= max_bytes) return text;
  size_t n = max_bytes;
  while (n > 0 && (static_cast<unsigned char>(text[n]) & 0xC0) == 0x80) --n;
  return text.substr(0, n);
}

}  // namespace homepot

#endif  // HOMEPOT_COMMON_UTF8_H_
