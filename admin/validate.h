// Input checks shared by the homepot-admin commands. Every check returns a
// Status whose message is a complete, single-line reason that names the
// offending value (quoted with Quote()), ready for "homepot-admin: <reason>".
#ifndef HOMEPOT_ADMIN_VALIDATE_H_
#define HOMEPOT_ADMIN_VALIDATE_H_

#include <string>
#include <string_view>

#include "rule_access.h"
#include "status.h"

namespace homepot::admin {

// The limit of the schema's CHECKs on topic_filter and device_token.
inline constexpr size_t kMaxTopicBytes = 65535;

// One of the four access words (RuleAccessFromWord), or an error naming it.
Result<RuleAccess> ParseRuleAccess(std::string_view word);

// True when `text` contains a control character: U+0000-U+001F or U+007F
// (the set refused in device ids, filters and tokens).
// Precondition: IsValidUtf8(text).
bool HasControlCharacter(std::string_view text);

// A device id (= MQTT username) as DeviceIdProblem (common/device.h) defines
// it; the message names the id and the first rule it breaks.
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
