#include "rfc3339.h"

#include <algorithm>
#include <cstdio>
#include <cstring>

namespace homepot {
namespace {

constexpr int64_t kMsPerDay = 86400000;

// Days since 1970-01-01 of a proleptic Gregorian date, and back
// (H. Hinnant's days_from_civil and civil_from_days).
int64_t DaysFromCivil(int64_t y, int64_t m, int64_t d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const int64_t yoe = y - era * 400;
  const int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

struct Civil {
  int64_t year;
  int month;
  int day;
};

Civil CivilFromDays(int64_t days) {
  const int64_t z = days + 719468;
  const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const int64_t doe = z - era * 146097;
  const int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const int64_t mp = (5 * doy + 2) / 153;
  const int day = static_cast<int>(doy - (153 * mp + 2) / 5 + 1);
  const int month = static_cast<int>(mp < 10 ? mp + 3 : mp - 9);
  return {yoe + era * 400 + (month <= 2), month, day};
}

// Reads a text from its start, one part at a time.
class Reader {
 public:
  explicit Reader(std::string_view text) : text_(text) {}

  bool done() const { return pos_ == text_.size(); }

  // `count` digits, advancing; nullopt when they are not all digits.
  std::optional<int> Digits(size_t count) {
    if (pos_ + count > text_.size()) return std::nullopt;
    int value = 0;
    for (size_t i = 0; i < count; ++i) {
      const char c = text_[pos_ + i];
      if (c < '0' || c > '9') return std::nullopt;
      value = value * 10 + (c - '0');
    }
    pos_ += count;
    return value;
  }

  // One of `chars`, advancing; 0 when the next character is none of them.
  char Expect(std::string_view chars) {
    if (done() || chars.find(text_[pos_]) == std::string_view::npos) return 0;
    return text_[pos_++];
  }

  // The milliseconds of a fraction after the '.', cut off beyond them;
  // nullopt when no digit follows.
  std::optional<int> Fraction() {
    const size_t start = pos_;
    int ms = 0;
    int scale = 100;
    while (!done() && text_[pos_] >= '0' && text_[pos_] <= '9') {
      ms += (text_[pos_] - '0') * scale;
      scale /= 10;
      ++pos_;
    }
    if (pos_ == start) return std::nullopt;
    return ms;
  }

 private:
  const std::string_view text_;
  size_t pos_ = 0;
};

bool IsDate(int year, int month, int day) {
  static constexpr int kMonthDays[] = {31, 29, 31, 30, 31, 30,
                                       31, 31, 30, 31, 30, 31};
  if (month < 1 || month > 12 || day < 1 || day > kMonthDays[month - 1]) {
    return false;
  }
  const bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
  return month != 2 || day != 29 || leap;
}

// The zone at the end of the text, as minutes east of UTC.
std::optional<int> ZoneMinutes(Reader* r, Rfc3339Zones zones) {
  const bool lenient = zones == Rfc3339Zones::kLenient;
  if (r->done()) return lenient ? std::optional<int>(0) : std::nullopt;
  if (r->Expect("Zz")) return 0;
  const char sign = r->Expect("+-");
  if (!sign) return std::nullopt;
  const std::optional<int> hours = r->Digits(2);
  if (!hours) return std::nullopt;
  int minutes = 0;
  if (r->Expect(":")) {
    const std::optional<int> m = r->Digits(2);
    if (!m) return std::nullopt;
    minutes = *m;
  } else if (!lenient) {
    return std::nullopt;
  } else if (!r->done()) {
    const std::optional<int> m = r->Digits(2);
    if (!m) return std::nullopt;
    minutes = *m;
  }
  if (*hours > 23 || minutes > 59) return std::nullopt;
  const int offset = *hours * 60 + minutes;
  return sign == '-' ? -offset : offset;
}

}  // namespace

std::optional<int64_t> ParseRfc3339Ms(std::string_view text,
                                      Rfc3339Zones zones) {
  Reader r(text);
  const std::optional<int> year = r.Digits(4);
  if (!year || !r.Expect("-")) return std::nullopt;
  const std::optional<int> month = r.Digits(2);
  if (!month || !r.Expect("-")) return std::nullopt;
  const std::optional<int> day = r.Digits(2);
  if (!day || !IsDate(*year, *month, *day) || !r.Expect("Tt ")) {
    return std::nullopt;
  }
  const std::optional<int> hour = r.Digits(2);
  if (!hour || !r.Expect(":")) return std::nullopt;
  const std::optional<int> minute = r.Digits(2);
  if (!minute || !r.Expect(":")) return std::nullopt;
  const std::optional<int> second = r.Digits(2);
  if (!second || *hour > 23 || *minute > 59 || *second > 60) {
    return std::nullopt;
  }
  int ms = 0;
  if (r.Expect(".")) {
    const std::optional<int> fraction = r.Fraction();
    if (!fraction) return std::nullopt;
    ms = *fraction;
  }
  const std::optional<int> zone = ZoneMinutes(&r, zones);
  if (!zone || !r.done()) return std::nullopt;
  const int64_t seconds = DaysFromCivil(*year, *month, *day) * 86400 +
                          *hour * 3600 + *minute * 60 + std::min(*second, 59) -
                          *zone * 60;
  return seconds * 1000 + ms;
}

void FormatStamp(int64_t unix_ms, char out[kStampLen], StampCache* cache) {
  StampCache local;
  if (cache == nullptr) cache = &local;
  const int64_t days =
      unix_ms >= 0 ? unix_ms / kMsPerDay : (unix_ms + 1) / kMsPerDay - 1;
  const int64_t in_day = unix_ms - days * kMsPerDay;
  const int64_t second = days * 86400 + in_day / 1000;
  if (second != cache->second) {
    const Civil date = CivilFromDays(days);
    char buf[64];
    std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.",
                  static_cast<int>(date.year % 10000), date.month, date.day,
                  static_cast<int>(in_day / 3600000),
                  static_cast<int>(in_day / 60000 % 60),
                  static_cast<int>(in_day / 1000 % 60));
    std::memcpy(cache->prefix, buf, sizeof cache->prefix);
    cache->second = second;
  }
  const int ms = static_cast<int>(in_day % 1000);
  std::memcpy(out, cache->prefix, sizeof cache->prefix);
  out[20] = static_cast<char>('0' + ms / 100);
  out[21] = static_cast<char>('0' + ms / 10 % 10);
  out[22] = static_cast<char>('0' + ms % 10);
  out[23] = 'Z';
}

std::string StampString(int64_t unix_ms) {
  char buf[kStampLen];
  FormatStamp(unix_ms, buf);
  return std::string(buf, kStampLen);
}

}  // namespace homepot
