#include "device.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "database.h"
#include "device_ids.h"
#include "testing.h"
#include "utf8.h"

namespace homepot {
namespace {

// The rule's two spellings agree: DeviceIdProblem and the CHECK of
// schema/schema.sql accept and refuse the same ids, except ids of invalid
// UTF-8, which SQL cannot test (see device.h).
TEST(DeviceIdTest, TheSchemaCheckSpellsTheSameRule) {
  Result<Database> db = Database::Open(":memory:", Database::Mode::kCreate);
  ASSERT_TRUE(db.ok()) << db.status().message();
  ASSERT_TRUE(db->Exec(test::SchemaSql()).ok());
  Result<Statement> insert =
      db->Prepare("INSERT INTO devices (device_id) VALUES (?1)");
  ASSERT_TRUE(insert.ok());
  int valid = 0;
  int invalid = 0;
  for (const std::string& id : test::DeviceIdCorpus()) {
    const bool cpp = IsValidDeviceId(id);
    const bool sql = insert->Bind(1, id).Run().ok();
    (cpp ? valid : invalid)++;
    if (IsValidUtf8(id)) {
      EXPECT_EQ(sql, cpp) << "'" << id << "'";
    } else {
      EXPECT_FALSE(cpp) << "'" << id << "'";
    }
  }
  EXPECT_GE(valid, 10);
  EXPECT_GE(invalid, 20);
}

TEST(DeviceIdTest, Table) {
  const std::vector<std::pair<std::string, bool>> cases = {
      {"sensor-001", true},
      {"x", true},
      {std::string(128, 'a'), true},
      {"Ger\xC3\xA4t", true},
      {"with space", true},
      {"", false},
      {std::string(129, 'a'), false},
      {"a/b", false},
      {"a+b", false},
      {"a#b", false},
      {std::string("a\0b", 3), false},
      {"a\nb", false},
      {"a\x1f", false},
      {"a\x7f", false},
      {"\xff", false},
      {"a\xC3", false},         // truncated sequence
      {"\xC0\xAF", false},      // overlong '/'
      {"\xED\xA0\x80", false},  // surrogate
  };
  for (const auto& [id, valid] : cases) {
    EXPECT_EQ(IsValidDeviceId(id), valid) << "'" << id << "'";
  }
}

TEST(DeviceIdTest, TheFirstBrokenClauseIsTheReason) {
  EXPECT_STREQ(DeviceIdProblem(""), "empty");
  EXPECT_STREQ(DeviceIdProblem(std::string(129, 'x')), "longer than 128 bytes");
  EXPECT_STREQ(DeviceIdProblem("a\xC3"), "not valid UTF-8");
  EXPECT_STREQ(DeviceIdProblem("$a\x7f+"), "contains a control character");
  EXPECT_STREQ(DeviceIdProblem("$a/#+"), "contains '+'");
  EXPECT_STREQ(DeviceIdProblem("a/#"), "contains '#'");
  EXPECT_STREQ(DeviceIdProblem("a/b"), "contains '/'");
  EXPECT_STREQ(DeviceIdProblem("$SYS"), "begins with '$'");
  EXPECT_EQ(DeviceIdProblem("sensor-001"), nullptr);
}

TEST(DefaultTokenTest, NamesTheDevice) {
  EXPECT_EQ(DefaultToken("sensor-001"), "devices/sensor-001/notifications");
  EXPECT_TRUE(IsDefaultToken("devices/sensor-001/notifications", "sensor-001"));
  EXPECT_FALSE(IsDefaultToken("devices/sensor-001/notifications", "sensor-00"));
  EXPECT_FALSE(IsDefaultToken("devices/sensor-001/notification", "sensor-001"));
  EXPECT_FALSE(IsDefaultToken("device/sensor-001/notifications", "sensor-001"));
  EXPECT_EQ(DefaultTokenDeviceId("devices/a/b/notifications"), "a/b");
  EXPECT_EQ(DefaultTokenDeviceId("devices/x/notifications"), "x");
  EXPECT_EQ(DefaultTokenDeviceId("devices//notifications"), "");
  EXPECT_EQ(DefaultTokenDeviceId("devices/notifications"), "");
  EXPECT_EQ(DefaultTokenDeviceId("other/x/notifications"), "");
}

// schema/schema.sql's 'unknown' type spells kDefaultMaxPayloadBytes.
TEST(DefaultMaxPayloadTest, TheSchemaSpellsTheSameLimit) {
  Result<Database> db = Database::Open(":memory:", Database::Mode::kCreate);
  ASSERT_TRUE(db.ok());
  ASSERT_TRUE(db->Exec(test::SchemaSql()).ok());
  Result<Statement> stmt = db->Prepare(
      "SELECT max_payload_bytes FROM device_types WHERE name = 'unknown'");
  ASSERT_TRUE(stmt.ok());
  Result<bool> row = stmt->Step();
  ASSERT_TRUE(row.ok() && *row);
  EXPECT_EQ(stmt->Int(0), kDefaultMaxPayloadBytes);
}

}  // namespace
}  // namespace homepot
