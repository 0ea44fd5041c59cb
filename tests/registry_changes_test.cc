// LoadChanges: the change feed brings a snapshot forward, re-reading only
// what changed, to exactly what a full LoadSnapshot reads.
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <algorithm>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "change_feed_scenarios.h"
#include "database.h"
#include "postgres.h"
#include "registry.h"
#include "testing.h"

namespace homepot {
namespace {

using test::EncodedHash;

class RegistryChangesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    OpenMemory();
    Exec(test::SchemaSql());
  }
  // A new, empty in-memory database in place of the one open.
  void OpenMemory() {
    database_ = test::OpenMemoryDatabase();
    ASSERT_TRUE(database_.has_value());
    db_ = database_->handle();
  }

  void Exec(const std::string& sql) { EXPECT_TRUE(test::ExecSql(db_, sql)); }

  std::shared_ptr<const Snapshot> Full() { return Feed().Full(); }
  ChangedSnapshot Changes(const Snapshot& base) { return Feed().Changes(base); }
  ChangedSnapshot ForwardMatchesFull(const Snapshot& base) {
    return Feed().ForwardMatchesFull(base);
  }
  test::ChangeFeedScenarios Feed() {
    return test::ChangeFeedScenarios(&*database_);
  }

  std::optional<Database> database_;
  sqlite3* db_ = nullptr;  // database_'s handle
};

TEST_F(RegistryChangesTest, EveryKindOfChangeMatchesAFullLoad) {
  Feed().EveryKindOfChangeMatchesAFullLoad();
}

TEST_F(RegistryChangesTest, RevocationsAreThoseOfAFullLoad) {
  Feed().RevocationsAreThoseOfAFullLoad();
}

TEST_F(RegistryChangesTest, ManyChangedDevicesMatchAFullLoad) {
  Feed().ManyChangedDevicesMatchAFullLoad(10000);
}

// Only the touched shards are new: the other devices are the very objects of
// the previous snapshot.
TEST_F(RegistryChangesTest, UnchangedDevicesAreSharedNotCopied) {
  std::string values;
  for (int i = 0; i < 2000; ++i) {
    values += (i ? ",('dev-" : "('dev-") + std::to_string(i) + "')";
  }
  Exec("INSERT INTO devices (device_id) VALUES " + values);
  auto base = Full();
  ASSERT_NE(base, nullptr);
  Exec("UPDATE devices SET enabled = 0 WHERE device_id = 'dev-7'");
  ChangedSnapshot moved = ForwardMatchesFull(*base);
  ASSERT_NE(moved.snapshot, nullptr);
  EXPECT_EQ(moved.changed, 1u);
  int shared = 0;
  for (int i = 0; i < 2000; ++i) {
    const std::string id = "dev-" + std::to_string(i);
    shared += base->Find(id) == moved.snapshot->Find(id);
  }
  // dev-7 and at most the few devices in its shard were copied.
  EXPECT_GE(shared, 1990);
  EXPECT_NE(base->Find("dev-7"), moved.snapshot->Find("dev-7"));
  EXPECT_FALSE(moved.snapshot->Find("dev-7")->enabled);
}

TEST_F(RegistryChangesTest, AGapOrAGenerationThatWentBackAsksForAFullLoad) {
  Feed().AGapOrAGenerationThatWentBackAsksForAFullLoad();
}

// Every changed row is a generation of its own on SQLite; the feed keeps
// the last kMaxChangedDevices of them.
TEST_F(RegistryChangesTest, TheFeedKeepsTheLastGenerationsUpToTheBound) {
  const int64_t bound = static_cast<int64_t>(kMaxChangedDevices);
  Exec("UPDATE registry_meta SET generation = 500000");
  Exec("INSERT INTO devices (device_id) VALUES ('a'), ('b')");  // 500002
  Exec("INSERT INTO registry_changes (generation, kind, name) VALUES (" +
       std::to_string(500003 - bound) + ", 'device', 'pruned'), (" +
       std::to_string(500004 - bound) + ", 'device', 'kept')");
  Exec("DELETE FROM devices WHERE device_id = 'a'");  // 500003
  Result<Statement> rows = database_->Prepare(
      "SELECT group_concat(name, ',') FROM (SELECT name FROM "
      "registry_changes ORDER BY generation)");
  ASSERT_TRUE(rows.ok()) << rows.status().message();
  ASSERT_TRUE(*rows->Step());
  EXPECT_EQ(rows->Text(0), "kept,a,b,a");
}

TEST_F(RegistryChangesTest, ABulkWriteOverTheBoundAsksForAFullLoad) {
  Feed().ABulkWriteOverTheBoundAsksForAFullLoad();
}

TEST_F(RegistryChangesTest, ABulkWriteAtTheBoundGoesThroughTheFeed) {
  Feed().ABulkWriteAtTheBoundGoesThroughTheFeed();
}

// The bound is written once in each schema, as kMaxChangedDevices.
TEST(ChangeFeedBoundTest, BothSchemasLeaveAGapAboveTheReadersBound) {
  const std::string bound = std::to_string(kMaxChangedDevices);
  EXPECT_NE(test::SchemaSql().find(
                "CREATE VIEW IF NOT EXISTS registry_changes_kept AS SELECT " +
                bound + " AS generations;"),
            std::string::npos);
  EXPECT_NE(test::PostgresSchemaSql().find(
                "max_rows CONSTANT BIGINT := " + bound + ";"),
            std::string::npos);
}

TEST_F(RegistryChangesTest, InvalidRowsAreSkippedWithAWarningAsInAFullLoad) {
  Feed().InvalidRowsAreSkippedWithAWarningAsInAFullLoad();
}

// Many random changes, applied in several steps, end where a full load does.
TEST_F(RegistryChangesTest, RandomChangesEndWhereAFullLoadDoes) {
  Feed().RandomChangesEndWhereAFullLoadDoes();
}

// REPLACE deletes a conflicting row without its delete trigger; the rule
// taken from its owner must still leave the owner's snapshot.
TEST_F(RegistryChangesTest, ReplacingARuleByIdChangesItsOldOwner) {
  Exec("INSERT INTO devices (device_id) VALUES ('a'), ('b')");
  Exec(
      "INSERT INTO acl_rules (id, device_id, topic_filter, access) VALUES "
      "(1, 'a', 'secret/#', 'readwrite'), (2, NULL, 'pub/#', 'write'), "
      "(3, 'b', 'z', 'read')");
  auto base = Full();
  ASSERT_NE(base, nullptr);
  Exec(
      "INSERT OR REPLACE INTO acl_rules (id, device_id, topic_filter, access)"
      " VALUES (1, 'b', 'x', 'read')");
  Exec(
      "REPLACE INTO acl_rules (id, device_id, topic_filter, access)"
      " VALUES (2, 'b', 'y', 'read')");
  ChangedSnapshot moved = ForwardMatchesFull(*base);
  ASSERT_NE(moved.snapshot, nullptr);
  EXPECT_TRUE(moved.snapshot->Find("a")->rules.empty());
  EXPECT_TRUE(moved.snapshot->global_rules().empty());
  Exec("UPDATE OR REPLACE acl_rules SET id = 1 WHERE id = 3");
  ForwardMatchesFull(*moved.snapshot);
}

TEST_F(RegistryChangesTest, CascadesMatchAFullLoad) {
  Exec("PRAGMA foreign_keys = ON");
  Exec(
      "INSERT INTO devices (device_id, device_type) VALUES "
      "('a', 'iot_sensor'), ('b', 'backend')");
  Exec(
      "INSERT INTO acl_rules (device_id, topic_filter, access) VALUES "
      "('a', 's/#', 'read'), ('b', 't/#', 'write')");
  auto base = Full();
  ASSERT_NE(base, nullptr);
  Exec(
      "UPDATE device_types SET name = 'sensor2', max_payload_bytes = 99 "
      "WHERE name = 'iot_sensor'");
  ChangedSnapshot s1 = ForwardMatchesFull(*base);
  ASSERT_NE(s1.snapshot, nullptr);
  Exec("UPDATE devices SET device_id = 'a2' WHERE device_id = 'a'");
  ChangedSnapshot s2 = ForwardMatchesFull(*s1.snapshot);
  ASSERT_NE(s2.snapshot, nullptr);
  Exec("UPDATE acl_rules SET device_id = 'b' WHERE device_id = 'a2'");
  ChangedSnapshot s3 = ForwardMatchesFull(*s2.snapshot);
  ASSERT_NE(s3.snapshot, nullptr);
  Exec("DELETE FROM devices WHERE device_id = 'b'");
  ForwardMatchesFull(*s3.snapshot);
}

}  // namespace
}  // namespace homepot
