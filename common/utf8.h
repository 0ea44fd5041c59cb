// The one UTF-8 check of the plugin and homepot-admin.
#ifndef HOMEPOT_COMMON_UTF8_H_
#define HOMEPOT_COMMON_UTF8_H_

#include <string_view>

namespace homepot {

// True for well-formed UTF-8: no overlong forms, no surrogates, nothing above
// U+10FFFF (simdjson's validator, the one the notification parser applies).
bool IsValidUtf8(std::string_view text);

}  // namespace homepot

#endif  // HOMEPOT_COMMON_UTF8_H_
