// RFC 3339 times as Unix milliseconds, read and written: the stamp the
// plugin writes into notifications, device_stats and notification_log (so
// that text order is time order), read back by Lifetimes and
// homepot-admin. Proleptic Gregorian calendar, no leap seconds (a second
// 60 reads as 59). Plain arithmetic: no time zone database, no allocation
// except in StampString.
#ifndef HOMEPOT_COMMON_RFC3339_H_
#define HOMEPOT_COMMON_RFC3339_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace homepot {

// The zone forms ParseRfc3339Ms reads.
enum class Rfc3339Zones {
  kStrict,   // RFC 3339: Z or ±HH:MM, required
  kLenient,  // also ±HHMM, ±HH, and none (UTC)
};

// Parses a date-time YYYY-MM-DD(T|t| )HH:MM:SS[.fraction] and its zone
// (Z and z alike) into Unix milliseconds; fraction digits beyond the
// millisecond are cut off. The date must exist (2024-02-29 does,
// 2026-02-30 does not). Years 0000 to 9999. nullopt for anything else,
// including any trailing character.
std::optional<int64_t> ParseRfc3339Ms(
    std::string_view text, Rfc3339Zones zones = Rfc3339Zones::kStrict);

// RFC 3339 UTC with milliseconds: "2026-11-25T11:32:34.123Z" (24 chars).
// For times from 0000 to 9999 (years wrap modulo 10000 beyond).
inline constexpr size_t kStampLen = 24;

// The "YYYY-MM-DDTHH:MM:SS." prefix of the second formatted last: it changes
// once a second, and formatting the date costs more than parsing a
// notification. Owned by its one user (not thread-safe). Deliberately not
// thread_local: Mosquitto unloads the plugin before the process exits, and
// a module's thread-local blocks outliving it break LeakSanitizer.
struct StampCache {
  int64_t second = INT64_MIN;
  char prefix[20] = {};
};

// Formats `unix_ms` (no terminating NUL); `cache` (optional) saves the date
// formatting.
void FormatStamp(int64_t unix_ms, char out[kStampLen],
                 StampCache* cache = nullptr);

// FormatStamp as a std::string.
std::string StampString(int64_t unix_ms);

}  // namespace homepot

#endif  // HOMEPOT_COMMON_RFC3339_H_
