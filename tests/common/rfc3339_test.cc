#include "rfc3339.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace homepot {
namespace {

constexpr int64_t kStampMs = 1795606354123;  // 2026-11-25T11:32:34.123Z

std::optional<int64_t> Lenient(std::string_view text) {
  return ParseRfc3339Ms(text, Rfc3339Zones::kLenient);
}

constexpr std::nullopt_t kNo = std::nullopt;

// The zones each mode reads: RFC 3339's (Z or ±HH:MM, required) in both, the
// other ISO 8601 forms (±HHMM, ±HH, none = UTC) when lenient.
TEST(Rfc3339Test, ReadsZonesAndFractions) {
  struct Case {
    std::string text;
    std::optional<int64_t> strict;
    std::optional<int64_t> lenient;
  };
  const Case cases[] = {
      {"1970-01-01T00:00:00Z", 0, 0},
      {"1970-01-01T00:00:00z", 0, 0},
      {"1970-01-01t00:00:00Z", 0, 0},
      {"1970-01-01 00:00:00Z", 0, 0},
      {"1970-01-01T00:00:01.5Z", 1500, 1500},
      {"1970-01-01T00:00:00.123456", kNo, 123},
      {"1970-01-01T00:00:00", kNo, 0},
      {"1970-01-01T01:00:00+01:00", 0, 0},
      {"1970-01-01T00:00:00-01:30", 5400000, 5400000},
      {"1970-01-01T00:00:00-0130", kNo, 5400000},
      {"1970-01-01T02:00:00+02", kNo, 0},
      {StampString(1795000000123), 1795000000123, 1795000000123},
      {"2024-02-29T12:00:00Z", 1709208000000, 1709208000000},
      {"2026-11-18T11:00:00Z", 1794999600000, 1794999600000},
      {"2026-11-18T12:00:00.001+01:00", 1794999600001, 1794999600001},
      {"2026-11-18T09:00:00.5+01:00", 1794988800500, 1794988800500},
      {"2026-11-18T11:59:58.500Z", 1795003198500, 1795003198500},
      {"2026-11-18T11:59:58.5009Z", 1795003198500, 1795003198500},
      // Neither reads these.
      {"", kNo, kNo},
      {"2024-02-29", kNo, kNo},
      {"2026-11-19T", kNo, kNo},
      {"2026-11-19T10:00Z", kNo, kNo},
      {"2024-13-01T00:00:00Z", kNo, kNo},
      {"2024-02-29T12:00:00X", kNo, kNo},
      {"2024-02-29T12:00:00.Z", kNo, kNo},
      {"2024-02-29T12:00:00+1", kNo, kNo},
      {"2024-02-29T12:00:00+01:", kNo, kNo},
      {"2024-02-29T12:00:00+0100Z", kNo, kNo},
      {"2026-11-19T10:00:00+24:00", kNo, kNo},
      {"2026-11-19T10:00:00+01:60", kNo, kNo},
      {"2026-11-19T10:00:00Zz", kNo, kNo},
      {"2026-11-19X10:00:00Z", kNo, kNo},
      {" 2026-11-19T10:00:00Z", kNo, kNo},
      {"yesterday", kNo, kNo},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(ParseRfc3339Ms(c.text), c.strict) << c.text;
    EXPECT_EQ(Lenient(c.text), c.lenient) << c.text;
  }
}

TEST(Rfc3339Test, DatesMustExist) {
  EXPECT_EQ(ParseRfc3339Ms("2024-02-29T12:00:00Z"), 1709208000000);
  EXPECT_EQ(ParseRfc3339Ms("2000-02-29T00:00:00Z"), 951782400000);
  EXPECT_EQ(ParseRfc3339Ms("2026-12-31T00:00:00Z"), 1798675200000);
  for (const char* bad :
       {"2026-02-30T00:00:00Z", "2026-02-29T00:00:00Z", "1900-02-29T00:00:00Z",
        "2026-04-31T00:00:00Z", "2026-00-10T00:00:00Z", "2026-01-00T00:00:00Z",
        "2026-01-32T00:00:00Z", "2026-01-01T24:00:00Z", "2026-01-01T00:60:00Z",
        "2026-01-01T00:00:61Z", "2O26-01-01T00:00:00Z"}) {
    EXPECT_FALSE(ParseRfc3339Ms(bad).has_value()) << bad;
    EXPECT_FALSE(Lenient(bad).has_value()) << bad;
  }
}

TEST(Rfc3339Test, LeapSecondReadsAsFiftyNine) {
  EXPECT_EQ(ParseRfc3339Ms("2016-12-31T23:59:60.250Z"),
            ParseRfc3339Ms("2016-12-31T23:59:59.250Z"));
}

TEST(Rfc3339Test, FormatStamp) {
  auto format = [](int64_t ms) {
    char out[kStampLen];
    FormatStamp(ms, out);
    return std::string(out, kStampLen);
  };
  EXPECT_EQ(format(kStampMs), "2026-11-25T11:32:34.123Z");
  EXPECT_EQ(format(0), "1970-01-01T00:00:00.000Z");
  EXPECT_EQ(format(1795606354005), "2026-11-25T11:32:34.005Z");
  EXPECT_EQ(format(951782400999), "2000-02-29T00:00:00.999Z");
  EXPECT_EQ(format(253402300799999), "9999-12-31T23:59:59.999Z");
  EXPECT_EQ(format(-1), "1969-12-31T23:59:59.999Z");
  EXPECT_EQ(format(-86400000), "1969-12-31T00:00:00.000Z");
  EXPECT_EQ(format(-62167219200000), "0000-01-01T00:00:00.000Z");
}

TEST(Rfc3339Test, StampString) {
  EXPECT_EQ(StampString(kStampMs), "2026-11-25T11:32:34.123Z");
  EXPECT_EQ(StampString(0), "1970-01-01T00:00:00.000Z");
  EXPECT_EQ(StampString(1795000000123), "2026-11-18T11:06:40.123Z");
}

TEST(Rfc3339Test, CacheKeepsTheSecondItFormatted) {
  StampCache cache;
  char out[kStampLen];
  for (int64_t ms :
       {kStampMs, kStampMs + 1, kStampMs + 877, kStampMs - 124,
        kStampMs + 86400000, int64_t{-1}, int64_t{-1000}, kStampMs}) {
    FormatStamp(ms, out, &cache);
    EXPECT_EQ(std::string(out, kStampLen), StampString(ms)) << ms;
  }
}

TEST(Rfc3339Test, ReadsWhatItWrites) {
  for (int64_t ms = -62167219200000; ms < 253402300800000;
       ms += 7777777777 + 77) {
    EXPECT_EQ(ParseRfc3339Ms(StampString(ms)), ms) << StampString(ms);
  }
}

}  // namespace
}  // namespace homepot
