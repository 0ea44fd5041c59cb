// Input checks shared by the homepot-admin commands. Every check returns a
// Status whose message is a complete, single-line reason that names the
// offending value (quoted with Quote()), ready for "homepot-admin: <reason>".
#ifndef HOMEPOT_ADMIN_VALIDATE_H_
#define HOMEPOT_ADMIN_VALIDATE_H_

#include <string>
#include <string_view>

#include "status.h"

namespace homepot::admin {

// Limits mirrored from schema/schema.sql.
inline constexpr size_t kMaxDeviceIdBytes = 128;
inline constexpr size_t kMaxTopicBytes = 65535;

// The four words of acl_rules.access (and of a Mosquitto acl_file).
enum class Access { kRead, kWrite, kReadWrite, kDeny };
const char* AccessName(Access access);
Result<Access> ParseAccess(std::string_view word);

// True for well-formed UTF-8: no overlong forms, no surrogates, nothing above
// U+10FFFF.
bool IsValidUtf8(std::string_view text);

// True when `text` contains a control character: U+0000-U+001F or U+007F
// (the set the schema's CHECK and the plugin refuse in device ids).
// Precondition: IsValidUtf8(text).
bool HasControlCharacter(std::string_view text);

// A device id (= MQTT username): 1-128 bytes of UTF-8 without '+', '#', '/',
// NUL or control characters and not beginning with '$', so that %u can never
// widen an ACL filter or reach $-topics (mirrors schema/schema.sql).
Status ValidateDeviceId(std::string_view id);

// A topic filter for acl_rules: a valid MQTT filter (homepot::IsValidFilter),
// UTF-8 without control characters, at most 65535 bytes.
Status ValidateFilter(std::string_view filter);

// A device_token: a valid MQTT topic name (no wildcards), UTF-8 without
// control characters, at most 65535 bytes, not under '$' (reserved for the
// broker; a token there would let a device read e.g. $SYS/homepot/stats).
Status ValidateToken(std::string_view token);

// A PBKDF2 iteration count: decimal digits only, 1..kMaxIterations.
Result<int> ParseIterations(std::string_view text);

// `text` made safe to print on one line: control characters (C1 included),
// backslashes and invalid UTF-8 bytes are escaped (\n, \r, \t, \xNN, \\);
// so is `quote` when it is not NUL.
std::string Printable(std::string_view text, char quote = '\0');

// Printable(text) in single quotes (a quote inside becomes \'), cut after 80
// bytes and marked with "..." so that messages stay short.
std::string Quote(std::string_view text);

}  // namespace homepot::admin

#endif  // HOMEPOT_ADMIN_VALIDATE_H_
