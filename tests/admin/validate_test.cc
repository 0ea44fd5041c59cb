#include "admin/validate.h"

#include <gtest/gtest.h>

#include <string>

namespace homepot::admin {
namespace {

TEST(ValidateTest, DeviceIdsFollowTheSchema) {
  EXPECT_TRUE(ValidateDeviceId("sensor-001").ok());
  EXPECT_TRUE(ValidateDeviceId("a b.c_d:e@f%g").ok());
  EXPECT_TRUE(ValidateDeviceId(std::string(128, 'x')).ok());
  EXPECT_TRUE(ValidateDeviceId("\xc2\x85").ok());  // C1 is allowed, as in SQL
  EXPECT_EQ(ValidateDeviceId(std::string(129, 'x')).message(),
            "invalid device id '" + std::string(80, 'x') +
                "...': longer than 128 bytes");
  EXPECT_EQ(ValidateDeviceId("\x7f").message(),
            "invalid device id '\\x7f': contains a control character");
  EXPECT_EQ(ValidateDeviceId("a+").message(),
            "invalid device id 'a+': contains '+'");
  EXPECT_EQ(ValidateDeviceId("$SYS").message(),
            "invalid device id '$SYS': begins with '$'");
  EXPECT_TRUE(ValidateDeviceId("a$").ok());
}

TEST(ValidateTest, FiltersAndTokens) {
  EXPECT_TRUE(ValidateFilter("#").ok());
  EXPECT_TRUE(ValidateFilter("devices/%u/#").ok());
  EXPECT_TRUE(ValidateFilter("$SYS/homepot/stats").ok());
  EXPECT_FALSE(ValidateFilter("a/b#").ok());
  EXPECT_FALSE(ValidateFilter(std::string(65536, 'a')).ok());
  EXPECT_TRUE(ValidateToken("factory/line-1/plc-7").ok());
  EXPECT_FALSE(ValidateToken("a/#").ok());
  EXPECT_FALSE(ValidateToken("$SYS/x").ok());
}

TEST(ValidateTest, AccessWords) {
  for (RuleAccess a : {kRuleRead, kRuleWrite, kRuleReadWrite, kRuleDeny}) {
    Result<RuleAccess> parsed = ParseRuleAccess(RuleAccessWord(a));
    ASSERT_TRUE(parsed.ok());
    EXPECT_EQ(*parsed, a);
  }
  EXPECT_EQ(ParseRuleAccess("Read").status().message(),
            "invalid access 'Read': expected read, write, readwrite or deny");
  EXPECT_FALSE(ParseRuleAccess("").ok());
}

TEST(ValidateTest, IterationCounts) {
  EXPECT_EQ(*ParseIterations("1"), 1);
  EXPECT_EQ(*ParseIterations("101"), 101);
  EXPECT_EQ(*ParseIterations("1000"), 1000);
  for (const char* bad : {"", "0", "-1", "+5", " 5", "5 ", "1e3", "1001",
                          "10000000", "99999999999999999999"}) {
    EXPECT_FALSE(ParseIterations(bad).ok()) << bad;
  }
}

TEST(ValidateTest, QuoteKeepsMessagesOnOneLine) {
  EXPECT_EQ(Quote("plain"), "'plain'");
  EXPECT_EQ(Quote("it's"), "'it\\'s'");
  EXPECT_EQ(Quote("a\\b"), "'a\\\\b'");
  EXPECT_EQ(Quote("l1\nl2\r\t"), "'l1\\nl2\\r\\t'");
  EXPECT_EQ(Quote("\x1b[31m"), "'\\x1b[31m'");
  EXPECT_EQ(Quote("\xc2\x9b"), "'\\xc2\\x9b'");  // C1 CSI is not printed raw
  EXPECT_EQ(Quote("caf\xc3\xa9"), "'caf\xc3\xa9'");
  EXPECT_EQ(Quote(std::string(81, 'z')), "'" + std::string(80, 'z') + "...'");
  // A cut never splits a UTF-8 character.
  const std::string euro = "\xe2\x82\xac";
  std::string text(79, 'a');
  text += euro + euro;
  EXPECT_EQ(Quote(text), "'" + std::string(79, 'a') + "...'");
  EXPECT_EQ(Printable("x'y"), "x'y");
}

}  // namespace
}  // namespace homepot::admin
