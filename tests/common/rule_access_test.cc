#include "rule_access.h"

#include <gtest/gtest.h>

#include <string>

#include "database.h"
#include "testing.h"

namespace homepot {
namespace {

TEST(RuleAccessTest, WordsRoundTrip) {
  for (RuleAccess a : {kRuleRead, kRuleWrite, kRuleReadWrite, kRuleDeny}) {
    std::optional<RuleAccess> parsed = RuleAccessFromWord(RuleAccessWord(a));
    ASSERT_TRUE(parsed.has_value());
    EXPECT_EQ(*parsed, a);
  }
  EXPECT_EQ(kRuleReadWrite, kRuleRead | kRuleWrite);
  for (const char* bad : {"Read", "", "write ", "all", "subscribe"}) {
    EXPECT_FALSE(RuleAccessFromWord(bad).has_value()) << bad;
  }
}

// The schema's CHECK access_value accepts exactly the words parsed here.
TEST(RuleAccessTest, TheSchemaCheckListsTheSameWords) {
  Result<Database> db = Database::Open(":memory:", Database::Mode::kCreate);
  ASSERT_TRUE(db.ok());
  ASSERT_TRUE(db->Exec(test::SchemaSql()).ok());
  ASSERT_TRUE(db->Exec("INSERT INTO devices (device_id) VALUES ('a')").ok());
  Result<Statement> insert = db->Prepare(
      "INSERT INTO acl_rules (device_id, topic_filter, access) "
      "VALUES ('a', 'x', ?1)");
  ASSERT_TRUE(insert.ok());
  for (const char* word : {"read", "write", "readwrite", "deny", "READ",
                           "write ", "all", "", "subscribe"}) {
    EXPECT_EQ(insert->Bind(1, std::string_view(word)).Run().ok(),
              RuleAccessFromWord(word).has_value())
        << word;
  }
}

}  // namespace
}  // namespace homepot
