#include "admin/mosquitto_files.h"

#include <gtest/gtest.h>

#include <string>

#include "testing.h"

namespace homepot::admin {
namespace {

std::string SomeHash() { return test::EncodedHash("pw", 2); }

TEST(PasswordFileTest, ParsesUsersLikeMosquitto) {
  const std::string h = SomeHash();
  Result<PasswdFile> file = ParsePasswordFile(
      "# comment\n\nalpha:" + h + "\n  beta  :  " + h + "  \r\nno colon\n",
      "pw.txt");
  ASSERT_TRUE(file.ok()) << file.status().message();
  ASSERT_EQ(file->entries.size(), 2u);
  EXPECT_EQ(file->entries[0].user, "alpha");
  EXPECT_EQ(file->entries[0].line, 3);
  EXPECT_EQ(file->entries[1].user, "beta");
  EXPECT_EQ(EncodePasswordHash(file->entries[1].hash), h);
  ASSERT_EQ(file->warnings.size(), 1u);
  EXPECT_EQ(file->warnings[0],
            "pw.txt:5: skipped a line without ':' (Mosquitto ignores it too)");
}

TEST(PasswordFileTest, EmptyFileHasNoUsers) {
  Result<PasswdFile> file = ParsePasswordFile("", "pw.txt");
  ASSERT_TRUE(file.ok());
  EXPECT_TRUE(file->entries.empty());
}

TEST(PasswordFileTest, ErrorsNameTheLine) {
  EXPECT_EQ(ParsePasswordFile("\n\nx:$9$abc\n", "f")
                .status()
                .message()
                .rfind("f:3: bad password hash for user 'x': ", 0),
            0u);
  EXPECT_EQ(ParsePasswordFile(":" + SomeHash(), "f").status().message(),
            "f:1: invalid device id '': empty");
}

TEST(AclFileTest, ParsesUserTopicAndPatternLines) {
  Result<AclFile> file = ParseAclFile(
      "topic anon/#\n"
      "pattern deny secret/%c\n"
      "user u1\n"
      "topic x\n"
      "topic read y z\n"
      "user u2\n"
      "topic\twrite\tw\n",
      "acl");
  ASSERT_TRUE(file.ok()) << file.status().message();
  ASSERT_EQ(file->users.size(), 2u);
  EXPECT_EQ(file->users[1].name, "u2");
  EXPECT_EQ(file->users[1].line, 6);
  ASSERT_EQ(file->rules.size(), 4u);
  EXPECT_FALSE(file->rules[0].device.has_value());
  EXPECT_EQ(file->rules[0].access, kRuleDeny);
  EXPECT_EQ(file->rules[0].filter, "secret/%c");
  EXPECT_EQ(*file->rules[1].device, "u1");
  EXPECT_EQ(file->rules[1].access, kRuleReadWrite);
  EXPECT_EQ(file->rules[1].filter, "x");
  EXPECT_EQ(file->rules[2].filter, "y z");
  EXPECT_EQ(file->rules[2].access, kRuleRead);
  EXPECT_EQ(*file->rules[3].device, "u2");
  EXPECT_EQ(file->rules[3].access, kRuleWrite);
  ASSERT_EQ(file->warnings.size(), 1u);
  EXPECT_EQ(file->warnings[0].rfind("acl:1: skipped a 'topic' line", 0), 0u);
}

TEST(AclFileTest, OneBadLineFailsTheFile) {
  EXPECT_EQ(ParseAclFile("user a\ntopic rw x\n", "acl").status().message(),
            "acl:2: invalid access 'rw': expected read, write, readwrite or "
            "deny");
  EXPECT_EQ(ParseAclFile("user\n", "acl").status().message(),
            "acl:1: missing user name");
  EXPECT_EQ(ParseAclFile("pattern\n", "acl").status().message(),
            "acl:1: missing topic filter");
}

}  // namespace
}  // namespace homepot::admin
