// Test helpers shared by the unit, integration and benchmark tests: the
// registry schema, SQL on a file, temporary directories and sample
// notifications. Each is written here once.
//
// Helpers that set up a test return testing::AssertionResult so that a test
// reads ASSERT_TRUE(test::ExecSqlOn(path, sql)) and a failure prints the
// SQLite error.
#ifndef HOMEPOT_TESTS_TESTING_TESTING_H_
#define HOMEPOT_TESTS_TESTING_TESTING_H_

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <optional>
#include <string>
#include <vector>

#include "database.h"

namespace homepot {

class Snapshot;

namespace test {

// A notification that passes the plugin's validation, as small as it gets.
inline constexpr const char* kNotification =
    R"({"title":"Hello","body":"from the backend"})";

// The product's sample notification (every optional field the backend
// sends, a nested "data" object and a non-ASCII character).
inline constexpr const char* kSampleNotification =
    R"({"title": "Temperature Alert", "body": "Temperature exceeded threshold: 85°C", "timestamp": "2026-11-25T10:30:00.123456", "platform": "mqtt_push", "message_id": "6f1c0e7e-3a54-4c1e-9a41-0d7c3b2f9e10", "data": {"sensor_id": "sensor-001", "value": 85, "threshold": 80}, "priority": "high", "ttl": 300})";

// The top-level keys of the stats JSON, in the order docs/operating.md
// ("Statistics") gives them.
const std::vector<std::string>& StatsKeys();

// The whole text of a file; empty when it cannot be read.
std::string ReadFile(const std::string& path);
// Replaces the file's contents with `text`; false on any error.
bool WriteFile(const std::string& path, const std::string& text);

// The text of schema/schema.sql, read once; records a test failure and
// returns "" when the file cannot be read.
const std::string& SchemaSql();

// The text of tests/fixtures/schema_v<version>.sql, the registry schema at
// an older version (1, 2, or 3 as it was before the feed's bound; for
// migration tests); read once, like SchemaSql().
const std::string& OldSchemaSql(int version);

// Runs `sql` (any number of statements) on an open connection.
testing::AssertionResult ExecSql(sqlite3* db, const std::string& sql);
// An empty in-memory SQLite database with foreign keys off, so that rows
// the schema would refuse (a device of a type without a row) can test how a
// load treats them. Records a test failure and returns nothing on error.
std::optional<Database> OpenMemoryDatabase();
// Runs `sql` on the database file at `path` through a short-lived connection
// with a 5 s busy timeout, as the admin tool or the sqlite3 shell would. The
// file must exist.
testing::AssertionResult ExecSqlOn(const std::string& path,
                                   const std::string& sql);
// Creates the database file at `path` (or opens it), applies the schema and
// then runs `sql`.
testing::AssertionResult CreateRegistryFile(const std::string& path,
                                            const std::string& sql = "");

// Creates the database file at `path` (or opens it), applies the schema at
// `version` (OldSchemaSql) and then runs `sql`: a registry as it was before
// migration.
testing::AssertionResult CreateOldRegistryFile(int version,
                                               const std::string& path,
                                               const std::string& sql = "");

// Every field a lookup can see of each device of `s` (sorted), its global
// rules and its figures: equal for snapshots that answer every lookup
// alike.
std::vector<std::string> DescribeSnapshot(const Snapshot& s);

// An encoded PBKDF2 hash of `password` (cheap: 10 iterations by default;
// the tests are not about hashing).
std::string EncodedHash(const std::string& password, int iterations = 10);

// A fresh directory under /tmp (mkdtemp), removed with everything in it on
// destruction; kept (and its path printed) when $HOMEPOT_KEEP_TEST_DIRS is
// set. Records a test failure when it cannot be created (then path() is
// empty).
class TempDir {
 public:
  // A fresh directory (mkdtemp: mode 0700) in `parent`; `prefix`: its name
  // before the random suffix.
  explicit TempDir(const std::string& prefix = "homepot-test",
                   const std::string& parent = "/tmp");
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  bool ok() const { return !path_.empty(); }
  const std::string& path() const { return path_; }
  // `name` inside the directory.
  std::string Path(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

}  // namespace test
}  // namespace homepot

#endif  // HOMEPOT_TESTS_TESTING_TESTING_H_
