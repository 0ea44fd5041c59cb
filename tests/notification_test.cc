#include "notification.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "testing.h"
#include "timestamp_injector.h"

namespace homepot {
namespace {

using namespace std::string_literals;

constexpr uint32_t kLimit = 262144;  // plugin_opt_max_payload default
constexpr int kDepth = 3;            // devices/sensor-001/notifications
constexpr int kMaxDepth = 7;         // plugin_opt_max_topic_depth default

const std::string kSample = test::kSampleNotification;

// The broker receipt time every injection test uses, and its text.
constexpr int64_t kStampMs = 1795606354123;
constexpr std::string_view kStamp = "2026-11-25T11:32:34.123Z";

// A notification with a title and a body, then `extra` members.
std::string Note(const std::string& extra) {
  return R"({"title":"t","body":"b")" + (extra.empty() ? "" : "," + extra) +
         "}";
}

// `depth` nested arrays.
std::string Nested(size_t depth) {
  return std::string(depth, '[') + std::string(depth, ']');
}

struct ValidationCase {
  const char* name;  // test name suffix: letters, digits, '_'
  std::string payload;
  Reject want;
};

std::vector<ValidationCase> ValidationCases() {
  const Reject ok = Reject::kNone;
  const Reject json = Reject::kInvalidJson;
  const Reject type = Reject::kWrongType;
  const Reject prio = Reject::kBadPriority;
  const Reject bad_time = Reject::kBadTimestamp;
  const Reject missing = Reject::kMissingField;
  const Reject object = Reject::kNotObject;
  auto ts = [](const std::string& t) {
    return Note(R"("timestamp":")" + t + "\"");
  };
  return {
      // Accepted documents.
      {"HomepotSample", kSample, ok},
      {"Minimal", Note(""), ok},
      {"EmptyTitleAndBody", R"({"title":"","body":""})", ok},
      {"BodyBeforeTitle", R"({"body":"b","title":"t"})", ok},
      {"UnknownFieldsOfAnyType",
       Note(R"("x":1,"y":[1,2],"z":{"a":null},"w":true,"v":-2.5e-3,"u":null)"),
       ok},
      {"DataEmpty", Note(R"("data":{})"), ok},
      {"DataNested", Note(R"("data":{"a":{"b":[1,{"c":"d"}]},"title":5})"), ok},
      {"DataWithDuplicateKeys", Note(R"("data":{"k":1,"k":2})"), ok},
      {"PriorityLow", Note(R"("priority":"low")"), ok},
      {"PriorityNormal", Note(R"("priority":"normal")"), ok},
      {"PriorityHigh", Note(R"("priority":"high")"), ok},
      {"PriorityUrgent", Note(R"("priority":"urgent")"), ok},
      {"PriorityCritical", Note(R"("priority":"critical")"), ok},
      {"TtlZero", Note(R"("ttl":0)"), ok},
      {"TtlNegativeZero", Note(R"("ttl":-0)"), ok},
      {"TtlMaxUint64", Note(R"("ttl":18446744073709551615)"), ok},
      {"BadgeZero", Note(R"("badge":0)"), ok},
      {"BadgeNegative", Note(R"("badge":-3)"), ok},
      {"BadgeMaxUint64", Note(R"("badge":18446744073709551615)"), ok},
      {"StringFields",
       Note(R"("message_id":"m-1","platform":"mqtt_push","sound":"default")"),
       ok},
      {"TimestampNoZone", ts("2026-11-25T10:30:00"), ok},
      {"TimestampMicroseconds", ts("2026-11-25T10:30:00.123456"), ok},
      {"TimestampNanoseconds", ts("2026-11-25T10:30:00.123456789"), ok},
      {"TimestampCommaFraction", ts("2026-11-25T10:30:00,5"), ok},
      {"TimestampZulu", ts("2026-11-25T10:30:00Z"), ok},
      {"TimestampZuluMillis", ts("2026-11-25T10:30:00.123Z"), ok},
      {"TimestampOffsetColon", ts("2026-11-25T10:30:00+01:00"), ok},
      {"TimestampOffsetCompact", ts("2026-11-25T10:30:00.1-0530"), ok},
      {"TimestampOffsetHours", ts("2026-11-25T10:30:00+05"), ok},
      {"TimestampLowercase", ts("2026-11-25t10:30:00z"), ok},
      {"TimestampLeapSecond", ts("2016-12-31T23:59:60Z"), ok},
      {"TimestampLeapDay", ts("2024-02-29T00:00:00"), ok},
      {"TimestampLeapDay2000", ts("2000-02-29T12:00:00"), ok},
      {"StampFieldObjectIsOverwritten", Note(R"("received_at":{"x":1})"), ok},
      {"StampFieldNullIsOverwritten", Note(R"("received_at":null)"), ok},
      {"PrettyPrinted",
       "\n{\n  \"title\" : \"t\",\r\n\t\"body\":\"b\"  ,\n \"ttl\": 5\n}\n",
       ok},
      {"EscapedKeys", R"({"ti\u0074le":"t","\u0062ody":"b"})", ok},
      {"EscapedContent",
       Note(R"("x":"\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00\u0000")"), ok},
      {"RawUtf8",
       "{\"title\":\"Temp\xC3\xA9rature \xE2\x9C\x93\",\"body\":"
       "\"\xF0\x9F\x9A\x80\",\"\xC3\xA9\":1}",
       ok},
      {"RawDelCharacter", Note("\"x\":\"\x7f\""), ok},
      {"TinyFloatUnderflows", Note(R"("x":1e-400)"), ok},
      {"Int64Bounds",
       Note(R"("a":-9223372036854775808,"b":9223372036854775807)"), ok},
      {"DeepButAllowed", Note(R"("data":{"a":)" + Nested(1000) + "}"), ok},

      // Wrong types (docs/operating.md lists each optional field's type).
      {"TitleNumber", R"({"title":1,"body":"b"})", type},
      {"TitleNull", R"({"title":null,"body":"b"})", type},
      {"TitleBoolean", R"({"title":true,"body":"b"})", type},
      {"BodyArray", R"({"title":"t","body":["b"]})", type},
      {"BodyObject", R"({"title":"t","body":{}})", type},
      {"DataString", Note(R"("data":"x")"), type},
      {"DataArray", Note(R"("data":[])"), type},
      {"DataNull", Note(R"("data":null)"), type},
      {"PriorityNumber", Note(R"("priority":1)"), type},
      {"PriorityNull", Note(R"("priority":null)"), type},
      {"PriorityArray", Note(R"("priority":["high"])"), type},
      {"TimestampNumber", Note(R"("timestamp":1795606354)"), type},
      {"TimestampNull", Note(R"("timestamp":null)"), type},
      {"TtlNegative", Note(R"("ttl":-1)"), type},
      {"TtlFraction", Note(R"("ttl":1.5)"), type},
      {"TtlIntegralFloat", Note(R"("ttl":300.0)"), type},
      {"TtlExponent", Note(R"("ttl":3e2)"), type},
      {"TtlString", Note(R"("ttl":"300")"), type},
      {"TtlBoolean", Note(R"("ttl":true)"), type},
      {"BadgeFraction", Note(R"("badge":1.5)"), type},
      {"BadgeString", Note(R"("badge":"1")"), type},
      {"MessageIdNumber", Note(R"("message_id":123)"), type},
      {"PlatformNull", Note(R"("platform":null)"), type},
      {"SoundBoolean", Note(R"("sound":false)"), type},
      {"SoundObject", Note(R"("sound":{})"), type},
      // The first problem found is reported: a type error comes before a
      // missing field and before a duplicate.
      {"WrongTypeBeforeMissing", R"({"title":1})", type},
      {"WrongTypeBeforeDuplicate", R"({"title":1,"title":"t","body":"b"})",
       type},

      // Priorities are exact lower-case words.
      {"PriorityUpperCase", Note(R"("priority":"HIGH")"), prio},
      {"PriorityEmpty", Note(R"("priority":"")"), prio},
      {"PriorityUnknown", Note(R"("priority":"medium")"), prio},
      {"PriorityPadded", Note(R"("priority":" high")"), prio},
      {"PriorityPrefix", Note(R"("priority":"hig")"), prio},
      {"PriorityTrailingNul", Note(R"("priority":"high\u0000")"), prio},

      // Timestamps that are not ISO-8601 date-times.
      {"TimestampMonth13", ts("2026-13-25T10:30:00"), bad_time},
      {"TimestampMonth00", ts("2026-00-25T10:30:00"), bad_time},
      {"TimestampFeb30", ts("2026-02-30T10:30:00"), bad_time},
      {"TimestampFeb29NonLeap", ts("2026-02-29T10:30:00"), bad_time},
      {"TimestampFeb29Century", ts("1900-02-29T10:30:00"), bad_time},
      {"TimestampApril31", ts("2026-04-31T10:30:00"), bad_time},
      {"TimestampDay00", ts("2026-11-00T10:30:00"), bad_time},
      {"TimestampMissingSeconds", ts("2026-11-25T10:30"), bad_time},
      {"TimestampMissingSecondsZulu", ts("2026-11-25T10:30Z"), bad_time},
      {"TimestampDateOnly", ts("2026-11-25"), bad_time},
      {"TimestampSpaceSeparator", ts("2026-11-25 10:30:00"), bad_time},
      {"TimestampHour24", ts("2026-11-25T24:00:00"), bad_time},
      {"TimestampMinute60", ts("2026-11-25T10:60:00"), bad_time},
      {"TimestampSecond61", ts("2026-11-25T10:30:61"), bad_time},
      {"TimestampEmptyFraction", ts("2026-11-25T10:30:00.Z"), bad_time},
      {"TimestampTenDigitFraction", ts("2026-11-25T10:30:00.1234567890"),
       bad_time},
      {"TimestampZoneHour24", ts("2026-11-25T10:30:00+24:00"), bad_time},
      {"TimestampZoneMinute60", ts("2026-11-25T10:30:00+01:60"), bad_time},
      {"TimestampZoneOneDigit", ts("2026-11-25T10:30:00+5"), bad_time},
      {"TimestampZoneShortMinutes", ts("2026-11-25T10:30:00+05:3"), bad_time},
      {"TimestampTrailingJunk", ts("2026-11-25T10:30:00Zjunk"), bad_time},
      {"TimestampUnpadded", ts("2026-1-5T1:2:3"), bad_time},
      {"TimestampEpochText", ts("1795606354"), bad_time},
      {"TimestampGarbage", ts("yesterday"), bad_time},
      {"TimestampEmpty", ts(""), bad_time},

      // Required fields.
      {"NoTitle", R"({"body":"b"})", missing},
      {"NoBody", R"({"title":"t"})", missing},
      {"EmptyObject", "{}", missing},
      {"TitleOnlyInsideData", R"({"data":{"title":"t","body":"b"}})", missing},
      {"TitleWrongCase", R"({"Title":"t","body":"b"})", missing},

      // Not an object.
      {"EmptyArray", "[]", object},
      {"ArrayOfNotification", "[" + Note("") + "]", object},
      {"String", R"("title")", object},
      {"Number", "42", object},
      {"Null", "null", object},
      {"True", "true", object},

      // Not JSON at all.
      {"Empty", "", json},
      {"Whitespace", " \n\t", json},
      {"TruncatedSample", kSample.substr(0, kSample.size() - 1), json},
      {"TruncatedSampleHalf", kSample.substr(0, kSample.size() / 2), json},
      {"TruncatedInString", R"({"title":"Tem)", json},
      {"TruncatedAfterColon", R"({"title":)", json},
      {"TruncatedInEscape", R"({"title":"\u00)", json},
      {"TrailingGarbage", Note("") + "x", json},
      {"TwoObjects", Note("") + Note(""), json},
      {"TrailingComma", R"({"title":"t","body":"b",})", json},
      {"SingleQuotes", R"({'title':'t','body':'b'})", json},
      {"Comment", R"({"title":"t",/* c */"body":"b"})", json},
      {"UnquotedKey", R"({title:"t","body":"b"})", json},
      {"NaN", Note(R"("x":NaN)"), json},
      {"Infinity", Note(R"("x":Infinity)"), json},
      {"LeadingZero", Note(R"("ttl":0300)"), json},
      {"HexNumber", Note(R"("ttl":0x10)"), json},
      {"Utf8InvalidByte", "{\"title\":\"t\xFF\",\"body\":\"b\"}", json},
      {"Utf8Overlong", "{\"title\":\"\xC0\xAF\",\"body\":\"b\"}", json},
      {"Utf8OverlongNul", "{\"title\":\"\xC0\x80\",\"body\":\"b\"}", json},
      {"Utf8EncodedSurrogate", "{\"title\":\"\xED\xA0\x80\",\"body\":\"b\"}",
       json},
      {"Utf8AboveU10FFFF", "{\"title\":\"\xF4\x90\x80\x80\",\"body\":\"b\"}",
       json},
      {"Utf8Truncated", "{\"title\":\"\xE2\x82\",\"body\":\"b\"}", json},
      {"Utf8InvalidInKey", "{\"title\":\"t\",\"body\":\"b\",\"\xFE\":1}", json},
      // RFC 8259 §8.2 calls lone surrogate escapes syntactically valid with
      // unpredictable results; simdjson (and nlohmann) refuse them, so no
      // subscriber ever sees one.
      {"LoneHighSurrogateEscape", Note(R"("x":"\ud800")"), json},
      {"LoneLowSurrogateEscape", Note(R"("x":"\udc00")"), json},
      {"HighSurrogateThenLetter", Note(R"("x":"\ud800\u0041")"), json},
      {"ReversedSurrogates", Note(R"("x":"\ude00\ud83d")"), json},
      {"BadEscape", Note(R"("x":"\x41")"), json},
      {"ShortUnicodeEscape", Note(R"("x":"\u12")"), json},
      {"RawNulInString", "{\"title\":\"a\0b\",\"body\":\"b\"}"s, json},
      {"RawNulAfterObject", Note("") + "\0"s, json},
      {"RawTabInString", "{\"title\":\"a\tb\",\"body\":\"b\"}", json},
      {"RawNewlineInString", "{\"title\":\"a\nb\",\"body\":\"b\"}", json},
      {"ByteOrderMark", "\xEF\xBB\xBF" + Note(""), json},
      {"DeepArrays100000", Note(R"("data":{"a":)" + Nested(100000) + "}"),
       json},
      {"DeepObjects40000",  // 240 KB, under the size limit
       [] {
         std::string s;
         for (int i = 0; i < 40000; ++i) s += R"({"a":)";
         s += "1";
         s += std::string(40000, '}');
         return s;
       }(),
       json},
      // Numbers simdjson cannot represent are refused, not rounded.
      {"IntegerAboveUint64", Note(R"("x":18446744073709551616)"), json},
      {"IntegerBelowInt64", Note(R"("x":-9223372036854775809)"), json},
      {"HugeInteger", Note(R"("x":123456789012345678901234567890)"), json},
      {"HugeTtl", Note(R"("ttl":99999999999999999999)"), json},
      {"HugeExponent", Note(R"("x":1e400)"), json},
      // Duplicate top-level names would let the validator and a consumer
      // disagree, so they are refused (nested ones are the consumer's).
      {"DuplicateTitle", R"({"title":"a","title":"b","body":"b"})", json},
      {"DuplicateStampField", Note(R"("received_at":"x","received_at":"y")"),
       json},
      {"DuplicateTimestamp",
       Note(
           R"("timestamp":"2026-11-25T10:30:00","timestamp":"2026-11-25T10:30:01")"),
       json},
      {"DuplicateUnknownField", Note(R"("x":1,"x":1)"), json},
      {"DuplicateThroughEscape", R"({"title":"a","ti\u0074le":"b","body":"b"})",
       json},
  };
}

void PrintTo(const ValidationCase& c, std::ostream* os) { *os << c.name; }

class NotificationValidationTest
    : public testing::TestWithParam<ValidationCase> {};

std::string CaseName(const testing::TestParamInfo<ValidationCase>& info) {
  return info.param.name;
}

// Writes `payload` with the stamp injected, checking the size contract and
// that nothing is written past InjectedSize.
std::string InjectInto(const NotificationValidator& v,
                       std::string_view payload) {
  const NotificationCheck& check = v.last();
  char stamp[kStampLen];
  FormatStamp(kStampMs, stamp);
  const TimestampInjector injector(v.timestamp_field());
  size_t size = injector.InjectedSize(check, payload.size());
  std::string out(size + 16, '\xAA');
  injector.Inject(check, payload, stamp, out.data());
  EXPECT_EQ(out.substr(size), std::string(16, '\xAA'))
      << "Inject wrote past InjectedSize";
  out.resize(size);
  return out;
}

// The output must be the input object with the stamp field set (in place
// when present, else appended) and "timestamp" appended when absent.
void ExpectInputPlusStamps(std::string_view in, std::string_view out,
                           const std::string& field) {
  using nlohmann::ordered_json;
  ordered_json want = ordered_json::parse(in);
  want[field] = kStamp;
  if (!want.contains("timestamp")) want["timestamp"] = kStamp;
  ordered_json got;
  ASSERT_NO_THROW(got = ordered_json::parse(out)) << out;
  EXPECT_EQ(got, want) << "in:  " << in << "\nout: " << out;
}

TEST_P(NotificationValidationTest, Check) {
  const ValidationCase& c = GetParam();
  NotificationValidator v("received_at");
  const NotificationCheck& check =
      v.Check(c.payload, kLimit, kDepth, kMaxDepth);
  EXPECT_EQ(RejectName(check.reject), RejectName(c.want)) << check.detail;
  EXPECT_EQ(check.detail.empty(), c.want == Reject::kNone) << check.detail;
  if (c.want == Reject::kNone) {
    ExpectInputPlusStamps(c.payload, InjectInto(v, c.payload), "received_at");
  }
}

TEST_P(NotificationValidationTest, SameVerdictFromAReusedValidator) {
  // A validator that just saw a larger payload (stale bytes in its padded
  // buffer) must decide exactly as a fresh one does.
  const ValidationCase& c = GetParam();
  NotificationValidator v("received_at");
  std::string big = Note(R"("data":{"pad":")" + std::string(4096, 'x') + "\"}");
  ASSERT_EQ(v.Check(big, kLimit, kDepth, kMaxDepth).reject, Reject::kNone);
  EXPECT_EQ(v.Check(c.payload, kLimit, kDepth, kMaxDepth).reject, c.want);
}

TEST_P(NotificationValidationTest, ReadsOnlyThePayloadSpan) {
  // The payload is not NUL-terminated: bytes after it must not matter.
  const ValidationCase& c = GetParam();
  NotificationValidator v("received_at");
  std::string buffer = c.payload + R"(,"title":"x"}})";
  std::string_view payload(buffer.data(), c.payload.size());
  EXPECT_EQ(v.Check(payload, kLimit, kDepth, kMaxDepth).reject, c.want);
}

INSTANTIATE_TEST_SUITE_P(Table, NotificationValidationTest,
                         testing::ValuesIn(ValidationCases()), CaseName);

TEST(NotificationTest, TableCoversEveryReason) {
  std::vector<int> seen(kRejectReasonCount + 1);
  for (const ValidationCase& c : ValidationCases()) {
    ++seen[static_cast<size_t>(c.want)];
  }
  // too_large and topic_too_deep depend on the limits: tested below.
  for (size_t i = 0; i <= static_cast<size_t>(Reject::kBadTimestamp); ++i) {
    EXPECT_GT(seen[i], 0) << RejectName(static_cast<Reject>(i));
  }
  EXPECT_GE(ValidationCases().size(), 50u);
}

TEST(NotificationTest, SampleFields) {
  NotificationValidator v("received_at");
  const NotificationCheck& c = v.Check(kSample, kLimit, kDepth, kMaxDepth);
  ASSERT_EQ(c.reject, Reject::kNone);
  EXPECT_EQ(c.priority, Priority::kHigh);
  EXPECT_TRUE(c.has_timestamp);
  EXPECT_FALSE(c.has_stamp_field);
  EXPECT_EQ(c.close_brace, kSample.size() - 1);
}

TEST(NotificationTest, TtlAndMessageId) {
  NotificationValidator v("received_at");
  const NotificationCheck* c =
      &v.Check(R"({"title":"t","body":"b","ttl":300,"message_id":"m\u002d1"})",
               kLimit, kDepth, kMaxDepth);
  ASSERT_EQ(c->reject, Reject::kNone);
  EXPECT_EQ(c->ttl_s, 300);
  EXPECT_TRUE(c->has_message_id);
  EXPECT_EQ(c->message_id, "m-1");  // unescaped
  c = &v.Check(R"({"title":"t","body":"b","ttl":0})", kLimit, kDepth,
               kMaxDepth);
  ASSERT_EQ(c->reject, Reject::kNone);
  EXPECT_EQ(c->ttl_s, 0);
  EXPECT_FALSE(c->has_message_id);  // not carried over from the last check
  EXPECT_EQ(c->message_id, "");
  c = &v.Check(R"({"title":"t","body":"b","ttl":18446744073709551615})", kLimit,
               kDepth, kMaxDepth);
  ASSERT_EQ(c->reject, Reject::kNone);
  EXPECT_EQ(c->ttl_s, kMaxTtlSeconds);
  c = &v.Check(R"({"title":"t","body":"b"})", kLimit, kDepth, kMaxDepth);
  EXPECT_EQ(c->ttl_s, -1);  // absent
}

TEST(NotificationTest, PriorityOfEachWord) {
  NotificationValidator v("received_at");
  const std::pair<const char*, Priority> words[] = {
      {"low", Priority::kLow},
      {"normal", Priority::kNormal},
      {"high", Priority::kHigh},
      {"urgent", Priority::kUrgent},
      {"critical", Priority::kCritical}};
  for (const auto& [word, priority] : words) {
    std::string doc = Note(std::string(R"("priority":")") + word + "\"");
    EXPECT_EQ(v.Check(doc, kLimit, kDepth, kMaxDepth).priority, priority)
        << word;
    EXPECT_EQ(PriorityName(priority), word);
  }
  EXPECT_EQ(v.Check(Note(""), kLimit, kDepth, kMaxDepth).priority,
            Priority::kNone);
}

TEST(NotificationTest, Details) {
  NotificationValidator v("received_at");
  auto detail = [&](const std::string& doc) {
    return v.Check(doc, kLimit, kDepth, kMaxDepth).detail;
  };
  EXPECT_EQ(detail(Note(R"("ttl":-1)")),
            "field 'ttl' must be a non-negative integer, got integer");
  EXPECT_EQ(detail(Note(R"("data":[1])")),
            "field 'data' must be an object, got array");
  EXPECT_EQ(detail(R"({"title":"t","body":1.5})"),
            "field 'body' must be a string, got number");
  EXPECT_EQ(detail(R"({"title":"t"})"), "field 'body' is required");
  EXPECT_EQ(detail(R"({"body":"b"})"), "field 'title' is required");
  EXPECT_EQ(detail("[]"), "payload is a JSON array, not an object");
  EXPECT_EQ(detail("null"), "payload is a JSON null, not an object");
  EXPECT_EQ(detail(Note(R"("priority":"x")")),
            "priority must be one of low normal high urgent critical");
  EXPECT_EQ(detail(Note(R"("timestamp":"x")")),
            "timestamp is not an ISO-8601 date-time");
  EXPECT_EQ(detail(Note(R"("x":1,"x":2)")), "duplicate field 'x'");
  EXPECT_FALSE(detail("{").empty());
}

TEST(NotificationTest, SizeLimit) {
  NotificationValidator v("received_at");
  const uint32_t size = static_cast<uint32_t>(kSample.size());
  EXPECT_EQ(v.Check(kSample, size, kDepth, kMaxDepth).reject, Reject::kNone);
  EXPECT_EQ(v.Check(kSample, size - 1, kDepth, kMaxDepth).reject,
            Reject::kTooLarge);
  EXPECT_EQ(v.last().detail, "payload is " + std::to_string(size) +
                                 " bytes, limit " + std::to_string(size - 1));
  // The size is checked before parsing.
  EXPECT_EQ(v.Check("x" + kSample, size, kDepth, kMaxDepth).reject,
            Reject::kTooLarge);

  // At the plugin's default limit exactly, and one byte over.
  std::string prefix = Note(R"("data":{"pad":")");
  std::string exact =
      prefix + std::string(kLimit - prefix.size() - 3, 'x') + "\"}}";
  ASSERT_EQ(exact.size(), kLimit);
  EXPECT_EQ(v.Check(exact, kLimit, kDepth, kMaxDepth).reject, Reject::kNone);
  std::string over =
      prefix + std::string(kLimit - prefix.size() - 2, 'x') + "\"}}";
  ASSERT_EQ(over.size(), kLimit + 1);
  EXPECT_EQ(v.Check(over, kLimit, kDepth, kMaxDepth).reject, Reject::kTooLarge);
}

TEST(NotificationTest, TopicDepth) {
  NotificationValidator v("received_at");
  EXPECT_EQ(v.Check(kSample, kLimit, 7, 7).reject, Reject::kNone);
  EXPECT_EQ(v.Check(kSample, kLimit, 8, 7).reject, Reject::kTopicTooDeep);
  EXPECT_EQ(v.last().detail, "topic has 8 levels, limit 7");
  // The topic is checked first, even for a payload that is also too large
  // and not JSON.
  EXPECT_EQ(v.Check("not json", 1, 8, 7).reject, Reject::kTopicTooDeep);
  EXPECT_EQ(v.Check("not json", 1, 7, 7).reject, Reject::kTooLarge);
}

TEST(NotificationTest, RejectNames) {
  EXPECT_EQ(RejectName(Reject::kNone), "");
  EXPECT_EQ(RejectName(Reject::kInvalidJson), "invalid_json");
  EXPECT_EQ(RejectName(Reject::kNotObject), "not_object");
  EXPECT_EQ(RejectName(Reject::kMissingField), "missing_field");
  EXPECT_EQ(RejectName(Reject::kWrongType), "wrong_type");
  EXPECT_EQ(RejectName(Reject::kBadPriority), "bad_priority");
  EXPECT_EQ(RejectName(Reject::kBadTimestamp), "bad_timestamp");
  EXPECT_EQ(RejectName(Reject::kTooLarge), "too_large");
  EXPECT_EQ(RejectName(Reject::kTopicTooDeep), "topic_too_deep");
  EXPECT_EQ(static_cast<size_t>(Reject::kTopicTooDeep), kRejectReasonCount);
}

TEST(NotificationTest, PriorityNames) {
  EXPECT_EQ(PriorityName(Priority::kNone), "");
  EXPECT_EQ(PriorityName(Priority::kLow), "low");
  EXPECT_EQ(PriorityName(Priority::kNormal), "normal");
  EXPECT_EQ(PriorityName(Priority::kHigh), "high");
  EXPECT_EQ(PriorityName(Priority::kUrgent), "urgent");
  EXPECT_EQ(PriorityName(Priority::kCritical), "critical");
  EXPECT_EQ(static_cast<size_t>(Priority::kCritical), kPriorityCount);
}

TEST(NotificationTest, IsIsoTimestamp) {
  const std::pair<std::string, bool> cases[] = {
      {"2026-11-25T10:30:00.123456", true},
      {"2026-11-25T10:30:00", true},
      {"2026-11-25T10:30:00Z", true},
      {"2026-11-25T10:30:00.123Z", true},
      {"2026-11-25T10:30:00,123", true},
      {"2026-11-25T10:30:00+01:00", true},
      {"2026-11-25T10:30:00-05:30", true},
      {"2026-11-25T10:30:00.5+0100", true},
      {"2026-11-25T10:30:00-01", true},
      {"2026-11-25T23:59:59.999999999+23:59", true},
      {"2026-11-25t10:30:00z", true},
      {"2016-12-31T23:59:60Z", true},
      {"2024-02-29T00:00:00", true},
      {"2000-02-29T00:00:00", true},
      {"0000-01-01T00:00:00", true},
      {"9999-12-31T23:59:59", true},
      {"2026-11-25T11:32:34.123Z", true},  // what FormatStamp writes
      {"", false},
      {"2026-11-25", false},
      {"2026-11-25T10:30", false},
      {"2026-11-25T10:30Z", false},
      {"2026-11-25 10:30:00", false},
      {"2026-11-25_10:30:00", false},
      {"2026-13-01T00:00:00", false},
      {"2026-00-01T00:00:00", false},
      {"2026-01-00T00:00:00", false},
      {"2026-01-32T00:00:00", false},
      {"2026-02-29T00:00:00", false},
      {"2026-02-30T00:00:00", false},
      {"1900-02-29T00:00:00", false},
      {"2026-06-31T00:00:00", false},
      {"2026-11-25T24:00:00", false},
      {"2026-11-25T10:60:00", false},
      {"2026-11-25T10:30:61", false},
      {"2026-11-25T10:30:00.", false},
      {"2026-11-25T10:30:00.Z", false},
      {"2026-11-25T10:30:00.1234567890", false},
      {"2026-11-25T10:30:00ZZ", false},
      {"2026-11-25T10:30:00 Z", false},
      {"2026-11-25T10:30:00+", false},
      {"2026-11-25T10:30:00+1", false},
      {"2026-11-25T10:30:00+100", false},
      {"2026-11-25T10:30:00+01:0", false},
      {"2026-11-25T10:30:00+01:000", false},
      {"2026-11-25T10:30:00+24:00", false},
      {"2026-11-25T10:30:00+01:60", false},
      {"2026-11-25T10:30:00+01-00", false},
      {"2026-11-25T10:30:00GMT", false},
      {"+2026-11-25T10:30:00", false},
      {"2026/11/25T10:30:00", false},
      {"2026-11-25T10.30.00", false},
      {"2O26-11-25T10:30:00", false},
      {"2026-11-25T10:30:00\0"s, false},
      {"yesterday", false},
  };
  for (const auto& [text, want] : cases) {
    EXPECT_EQ(IsIsoTimestamp(text), want) << "'" << text << "'";
  }
}

struct InjectionCase {
  const char* name;
  std::string field;
  std::string in;
  std::string out;  // "S" stands for the stamp
};

std::string WithStamp(std::string s) {
  for (size_t at = s.find("\"S\""); at != std::string::npos;
       at = s.find("\"S\"", at + kStamp.size() + 2)) {
    s.replace(at + 1, 1, kStamp);
  }
  return s;
}

std::vector<InjectionCase> InjectionCases() {
  return {
      {"BothAbsent", "received_at", R"({"title":"a","body":"b"})",
       R"({"title":"a","body":"b","received_at":"S","timestamp":"S"})"},
      {"PublisherTimestampKept", "received_at",
       R"({"title":"a","body":"b","timestamp":"2026-11-25T10:30:00.123456"})",
       R"({"title":"a","body":"b","timestamp":"2026-11-25T10:30:00.123456","received_at":"S"})"},
      {"StringReplacedInPlace", "received_at",
       R"({"received_at":"old","title":"a","body":"b","timestamp":"2026-01-01T00:00:00"})",
       R"({"received_at":"S","title":"a","body":"b","timestamp":"2026-01-01T00:00:00"})"},
      {"NumberReplaced", "received_at",
       R"({"title":"a","received_at":-1.5e3,"body":"b"})",
       R"({"title":"a","received_at":"S","body":"b","timestamp":"S"})"},
      {"NullReplacedAsLastMember", "received_at",
       R"({"title":"a","body":"b","received_at":null})",
       R"({"title":"a","body":"b","received_at":"S","timestamp":"S"})"},
      {"TrueReplaced", "received_at",
       R"({"received_at":true,"title":"a","body":"b"})",
       R"({"received_at":"S","title":"a","body":"b","timestamp":"S"})"},
      {"ObjectReplaced", "received_at",
       R"({"title":"a","received_at":{"x":[1,{"y":"}]\""}],"z":{}},"body":"b"})",
       R"({"title":"a","received_at":"S","body":"b","timestamp":"S"})"},
      {"ArrayReplaced", "received_at",
       R"({"title":"a","body":"b","received_at":[1,[2,[3]],"]"],"ttl":1})",
       R"({"title":"a","body":"b","received_at":"S","ttl":1,"timestamp":"S"})"},
      {"EmptyContainersReplaced", "received_at",
       R"({"title":"a","body":"b","received_at":[]})",
       R"({"title":"a","body":"b","received_at":"S","timestamp":"S"})"},
      {"WhitespaceAroundReplacedValue", "received_at",
       "{\"title\":\"a\",\"body\":\"b\",\"received_at\" :\n 7 \t,\"x\":1}",
       "{\"title\":\"a\",\"body\":\"b\",\"received_at\" :\n \"S\" \t,\"x\":1,"
       "\"timestamp\":\"S\"}"},
      {"WhitespaceBeforeFinalBracePreserved", "received_at",
       "{ \"title\" : \"a\" , \"body\" : \"b\" \r\n\t}",
       "{ \"title\" : \"a\" , \"body\" : \"b\" \r\n\t,\"received_at\":\"S\","
       "\"timestamp\":\"S\"}"},
      {"WhitespaceOutsideObjectPreserved", "received_at",
       "\n  {\"title\":\"a\",\"body\":\"b\"}  \n",
       "\n  {\"title\":\"a\",\"body\":\"b\",\"received_at\":\"S\","
       "\"timestamp\":\"S\"}  \n"},
      {"NestedStampFieldUntouched", "received_at",
       R"({"title":"a","body":"b","data":{"received_at":"keep","timestamp":1}})",
       R"({"title":"a","body":"b","data":{"received_at":"keep","timestamp":1},"received_at":"S","timestamp":"S"})"},
      {"NestedBeforeTopLevel", "received_at",
       R"({"data":{"received_at":"keep"},"received_at":"old","title":"a","body":"b"})",
       R"({"data":{"received_at":"keep"},"received_at":"S","title":"a","body":"b","timestamp":"S"})"},
      {"EscapedKeyReplaced", "received_at",
       R"({"title":"a","body":"b","received\u005fat":"x"})",
       R"({"title":"a","body":"b","received\u005fat":"S","timestamp":"S"})"},
      {"EscapedStringsBefore", "received_at",
       R"({"title":"a \"}\" b\\","body":"\\\"","received_at":"\"}\\"})",
       R"({"title":"a \"}\" b\\","body":"\\\"","received_at":"S","timestamp":"S"})"},
      {"KeyLookalikeInValue", "received_at",
       R"({"title":"\"received_at\":1","body":"b"})",
       R"({"title":"\"received_at\":1","body":"b","received_at":"S","timestamp":"S"})"},
      {"Utf8Preserved", "received_at",
       "{\"title\":\"85\xC2\xB0"
       "C \xF0\x9F\x94\xA5\",\"body\":\"b\"}",
       "{\"title\":\"85\xC2\xB0"
       "C \xF0\x9F\x94\xA5\",\"body\":\"b\","
       "\"received_at\":\"S\",\"timestamp\":\"S\"}"},
      {"CustomFieldAdded", "ts",
       R"({"title":"a","body":"b","received_at":"x"})",
       R"({"title":"a","body":"b","received_at":"x","ts":"S","timestamp":"S"})"},
      {"CustomFieldReplaced", "ts",
       R"({"ts":0,"title":"a","body":"b","timestamp":"2026-11-25T10:30:00"})",
       R"({"ts":"S","title":"a","body":"b","timestamp":"2026-11-25T10:30:00"})"},
      {"TimestampFieldAddedOnce", "timestamp", R"({"title":"a","body":"b"})",
       R"({"title":"a","body":"b","timestamp":"S"})"},
      {"TimestampFieldReplaced", "timestamp",
       R"({"timestamp":"2026-11-25T10:30:00.123456","title":"a","body":"b"})",
       R"({"timestamp":"S","title":"a","body":"b"})"},
      {"TimestampFieldReplacesAnyType", "timestamp",
       R"({"title":"a","timestamp":[1,2],"body":"b","received_at":"x"})",
       R"({"title":"a","timestamp":"S","body":"b","received_at":"x"})"},
      {"HomepotSample", "received_at", kSample,
       kSample.substr(0, kSample.size() - 1) + R"(,"received_at":"S"})"},
  };
}

void PrintTo(const InjectionCase& c, std::ostream* os) { *os << c.name; }

class InjectionTest : public testing::TestWithParam<InjectionCase> {};

std::string InjectionName(const testing::TestParamInfo<InjectionCase>& info) {
  return info.param.name;
}

TEST_P(InjectionTest, ExactBytes) {
  const InjectionCase& c = GetParam();
  NotificationValidator v(c.field);
  const NotificationCheck& check = v.Check(c.in, kLimit, kDepth, kMaxDepth);
  ASSERT_EQ(check.reject, Reject::kNone) << check.detail;
  std::string want = WithStamp(c.out);
  EXPECT_EQ(TimestampInjector(c.field).InjectedSize(check, c.in.size()),
            want.size());
  std::string got = InjectInto(v, c.in);
  EXPECT_EQ(got, want);
  ExpectInputPlusStamps(c.in, got, c.field);
}

TEST_P(InjectionTest, OutputIsStableUnderReinjection) {
  // Injecting the same stamp into an output changes nothing: the field is
  // now present, and so is "timestamp".
  const InjectionCase& c = GetParam();
  NotificationValidator v(c.field);
  ASSERT_EQ(v.Check(c.in, kLimit, kDepth, kMaxDepth).reject, Reject::kNone);
  std::string once = InjectInto(v, c.in);
  const NotificationCheck& again = v.Check(once, kLimit, kDepth, kMaxDepth);
  ASSERT_EQ(again.reject, Reject::kNone) << again.detail;
  EXPECT_TRUE(again.has_stamp_field);
  EXPECT_TRUE(again.has_timestamp);
  EXPECT_EQ(InjectInto(v, once), once);
}

INSTANTIATE_TEST_SUITE_P(Pairs, InjectionTest,
                         testing::ValuesIn(InjectionCases()), InjectionName);

TEST(InjectTest, SpansOfTheStampField) {
  NotificationValidator v("received_at");
  std::string doc = R"({"title":"a","received_at" : {"x":1} ,"body":"b"} )";
  const NotificationCheck& c = v.Check(doc, kLimit, kDepth, kMaxDepth);
  ASSERT_EQ(c.reject, Reject::kNone);
  EXPECT_TRUE(c.has_stamp_field);
  EXPECT_EQ(doc.substr(c.stamp_begin, c.stamp_end - c.stamp_begin),
            R"({"x":1})");
  EXPECT_EQ(c.close_brace, doc.size() - 2);
}

TEST(InjectTest, DeeplyNestedValueReplaced) {
  // Nesting within simdjson's depth limit is skipped without recursion.
  NotificationValidator v("received_at");
  std::string doc = Note(R"("received_at":)" + Nested(1000) + R"(,"x":1)");
  ASSERT_EQ(v.Check(doc, kLimit, kDepth, kMaxDepth).reject, Reject::kNone);
  EXPECT_EQ(InjectInto(v, doc),
            WithStamp(Note(R"("received_at":"S","x":1,"timestamp":"S")")));
}

TEST(InjectTest, LargePayloadReplacedInPlace) {
  NotificationValidator v("received_at");
  std::string pad(100000, 'y');
  std::string doc =
      R"({"title":"a","received_at":")" + pad + R"(","body":")" + pad + "\"}";
  ASSERT_EQ(v.Check(doc, kLimit, kDepth, kMaxDepth).reject, Reject::kNone);
  std::string out = InjectInto(v, doc);
  EXPECT_EQ(out, WithStamp(R"({"title":"a","received_at":"S","body":")" + pad +
                           R"(","timestamp":"S"})"));
}

TEST(InjectTest, ExactlySizedBuffers) {
  // Payload and output in buffers of exactly their size, so a sanitizer
  // build catches any read or write past either end.
  NotificationValidator v("received_at");
  std::vector<char> in(kSample.begin(), kSample.end());
  std::string_view payload(in.data(), in.size());
  const NotificationCheck& c = v.Check(payload, kLimit, kDepth, kMaxDepth);
  ASSERT_EQ(c.reject, Reject::kNone);
  char stamp[kStampLen];
  FormatStamp(kStampMs, stamp);
  const TimestampInjector injector("received_at");
  std::vector<char> out(injector.InjectedSize(c, in.size()));
  injector.Inject(c, payload, stamp, out.data());
  EXPECT_EQ(std::string(out.begin(), out.end()),
            kSample.substr(0, kSample.size() - 1) + ",\"received_at\":\"" +
                std::string(kStamp) + "\"}");
}

// ReadStamp takes exactly what Inject writes, and nothing else.
TEST(InjectTest, ReadStampReadsOnlyAStampAsInjected) {
  NotificationValidator v("received_at");
  const TimestampInjector injector("received_at");
  auto read = [&](const std::string& doc) -> std::optional<int64_t> {
    const NotificationCheck& c = v.Check(doc, kLimit, kDepth, kMaxDepth);
    EXPECT_EQ(c.reject, Reject::kNone) << doc;
    return injector.ReadStamp(c, doc);
  };
  // What Inject wrote reads back as the time it was given.
  ASSERT_EQ(v.Check(kSample, kLimit, kDepth, kMaxDepth).reject, Reject::kNone);
  EXPECT_EQ(read(InjectInto(v, kSample)), kStampMs);
  EXPECT_EQ(read(Note(R"("received_at" : ")" + std::string(kStamp) + "\"")),
            kStampMs);
  for (const std::string& value : {
           std::string("absent"),
           std::string(R"("2026-11-25T11:32:34Z")"),           // no millis
           std::string(R"("2026-11-25T11:32:34.1234Z")"),      // more digits
           std::string(R"("2026-11-25T12:32:34.123+01:00")"),  // a zone
           std::string(R"("2026-11-25t11:32:34.123z")"),       // lower case
           std::string(R"("2026-11-25 11:32:34.123Z")"),       // space
           std::string(R"("2026-02-30T11:32:34.123Z")"),       // no such day
           std::string(R"("2026-11-25T11:32:34.123\u005a")"),  // escaped
           std::string(R"(" 2026-11-25T11:32:34.123Z")"),
           std::string("1795000000000"),
           std::string(R"(["2026-11-25T11:32:34.123Z"])"),
       }) {
    const std::string doc =
        value == "absent" ? Note("") : Note(R"("received_at":)" + value);
    EXPECT_EQ(read(doc), std::nullopt) << doc;
  }
}

}  // namespace
}  // namespace homepot
