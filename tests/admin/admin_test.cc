// homepot-admin end to end, in process: RunAdmin on a temporary registry
// file, with string streams for stdin/stdout/stderr. Every failure case
// checks the exit code, the exact single stderr line, and that the registry
// is byte-for-byte the same table content as before.
#include "admin/admin.h"

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "admin/validate.h"
#include "credentials.h"
#include "delivery_log.h"
#include "testing.h"

namespace homepot::admin {
namespace {

namespace fs = std::filesystem;

// The repository root.
fs::path SourceRoot() { return fs::path(HOMEPOT_SOURCE_DIR); }

struct Outcome {
  int code;
  std::string out;
  std::string err;
};

// A throwaway SQLite connection for looking at (or tampering with) the file
// behind the tool's back.
class Peek {
 public:
  explicit Peek(const fs::path& path) {
    EXPECT_EQ(sqlite3_open(path.c_str(), &db_), SQLITE_OK);
  }
  ~Peek() { sqlite3_close(db_); }
  Peek(const Peek&) = delete;
  Peek& operator=(const Peek&) = delete;

  void Exec(const std::string& sql) { ASSERT_TRUE(test::ExecSql(db_, sql)); }
  // Rows as "a|b|c" lines; NULL shows as "NULL".
  std::vector<std::string> Rows(const std::string& sql) {
    std::vector<std::string> rows;
    sqlite3_stmt* stmt = nullptr;
    EXPECT_EQ(sqlite3_prepare_v2(db_, sql.c_str(), -1, &stmt, nullptr),
              SQLITE_OK)
        << sqlite3_errmsg(db_) << "\n"
        << sql;
    if (stmt == nullptr) return rows;
    while (sqlite3_step(stmt) == SQLITE_ROW) {
      std::string row;
      for (int i = 0; i < sqlite3_column_count(stmt); ++i) {
        if (i > 0) row += "|";
        const auto* text =
            reinterpret_cast<const char*>(sqlite3_column_text(stmt, i));
        row += text ? std::string(text, sqlite3_column_bytes(stmt, i)) : "NULL";
      }
      rows.push_back(row);
    }
    sqlite3_finalize(stmt);
    return rows;
  }
  std::string One(const std::string& sql) {
    std::vector<std::string> rows = Rows(sql);
    return rows.empty() ? "<no row>" : rows[0];
  }

 private:
  sqlite3* db_ = nullptr;
};

class AdminTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(tmp_.ok());
    env_.schema_sql = test::SchemaSql();
  }

  // homepot-admin --db <db_> args..., with `input` on stdin.
  Outcome Admin(std::vector<std::string> args, const std::string& input = "") {
    args.insert(args.begin(), {"--db", db_.string()});
    return Raw(args, input);
  }
  Outcome Raw(const std::vector<std::string>& args,
              const std::string& input = "") {
    std::istringstream in(input);
    std::ostringstream out;
    std::ostringstream err;
    const int code = RunAdmin(args, in, out, err, env_);
    return {code, out.str(), err.str()};
  }

  void Init() {
    Outcome r = Admin({"init"});
    ASSERT_EQ(r.code, 0) << r.err;
  }
  void AddDevice(const std::string& id, const std::string& type = "iot_sensor",
                 const std::string& password = "pw") {
    Outcome r = Admin({"device", "add", id, "--type", type}, password + "\n");
    ASSERT_EQ(r.code, 0) << r.err;
  }

  // Every row of every table plus user_version: equal before and after a
  // refused command means it changed nothing.
  std::string Snapshot() {
    if (!fs::exists(db_)) return "<no file>";
    Peek peek(db_);
    std::string all = peek.One("PRAGMA user_version") + "\n";
    for (const std::string& table :
         peek.Rows("SELECT name FROM sqlite_schema WHERE type = 'table' "
                   "ORDER BY name")) {
      all += "[" + table + "]\n";
      std::vector<std::string> rows =
          peek.Rows("SELECT * FROM \"" + table + "\"");
      std::sort(rows.begin(), rows.end());
      for (const std::string& row : rows) all += row + "\n";
    }
    return all;
  }

  std::string Path() const { return "'" + db_.string() + "'"; }

  void ExpectRefused(const std::vector<std::string>& args,
                     const std::string& input, int code,
                     const std::string& message) {
    const std::string before = Snapshot();
    const Outcome r = Admin(args, input);
    EXPECT_EQ(r.code, code);
    EXPECT_EQ(r.err, "homepot-admin: " + message + "\n");
    EXPECT_EQ(r.out, "");
    EXPECT_EQ(Snapshot(), before);
  }

  test::TempDir tmp_{"homepot-admin-test"};
  fs::path dir_ = tmp_.path();
  fs::path db_ = dir_ / "homepot.db";
  AdminEnv env_;
};

// Runs `args` expecting failure with `code` and exactly
// "homepot-admin: <message>\n" on stderr, nothing on stdout, and no change.
#define EXPECT_REFUSED(args, input, code, message) \
  do {                                             \
    SCOPED_TRACE("EXPECT_REFUSED");                \
    ExpectRefused(args, input, code, message);     \
  } while (0)

using Args = std::vector<std::string>;

// ---------------------------------------------------------------- init ----

TEST_F(AdminTest, InitCreatesTheRegistryInWalModeWithSeededTypes) {
  Outcome r = Admin({"init"});
  EXPECT_EQ(r.code, 0);
  EXPECT_EQ(r.out, "created registry " + Path() + " (schema version 4)\n");
  EXPECT_EQ(r.err, "");
  Peek peek(db_);
  EXPECT_EQ(peek.One("PRAGMA user_version"), "4");
  EXPECT_EQ(peek.One("PRAGMA journal_mode"), "wal");
  EXPECT_EQ(peek.Rows("SELECT name, max_payload_bytes FROM device_types "
                      "ORDER BY name"),
            (std::vector<std::string>{
                "backend|262144", "bridge|262144", "gateway|102400",
                "industrial_controller|102400", "iot_sensor|10240",
                "pos_terminal|102400", "unknown|10240"}));
}

TEST_F(AdminTest, InitTwiceSaysUpToDateAndChangesNothing) {
  Init();
  const std::string before = Snapshot();
  Outcome r = Admin({"init"});
  EXPECT_EQ(r.code, 0);
  EXPECT_EQ(r.out,
            "registry " + Path() + " is up to date (schema version 4)\n");
  EXPECT_EQ(Snapshot(), before);
}

TEST_F(AdminTest, TheEmbeddedSchemaIsVersionFour) {
  Result<int> version = SchemaVersionOf(test::SchemaSql());
  ASSERT_TRUE(version.ok()) << version.status().message();
  EXPECT_EQ(*version, 4);
  ASSERT_EQ(BuiltinMigrations().size(), 3u);
  EXPECT_EQ(BuiltinMigrations()[0].from_version, 1);
  EXPECT_EQ(BuiltinMigrations()[1].from_version, 2);
  EXPECT_EQ(BuiltinMigrations()[2].from_version, 3);
}

// The schema of a file, table by table, as the columns, indexes and
// triggers SQLite reports and the views' text (ALTER TABLE rewrites the
// CREATE TABLE text, so that text is not compared).
std::string SchemaShape(const fs::path& path) {
  Peek peek(path);
  std::string shape;
  for (const std::string& table :
       peek.Rows("SELECT name FROM sqlite_schema WHERE type = 'table' "
                 "ORDER BY name")) {
    shape += "[" + table + "]\n";
    for (const std::string& row :
         peek.Rows("SELECT name, type, \"notnull\", dflt_value, pk FROM "
                   "pragma_table_info('" +
                   table + "') ORDER BY name")) {
      shape += row + "\n";
    }
  }
  for (const std::string& row :
       peek.Rows("SELECT type, name, tbl_name, sql FROM sqlite_schema "
                 "WHERE type IN ('index', 'trigger', 'view') ORDER BY name")) {
    shape += row + "\n";
  }
  return shape;
}

// A registry at schema version 1 (tests/fixtures/schema_v1.sql, the schema as
// it was) at `path`, holding `sql`.
void CreateVersionOneRegistry(const fs::path& path, const std::string& sql) {
  ASSERT_TRUE(test::CreateOldRegistryFile(1, path.string(), sql));
}

constexpr const char* kVersionOneRows =
    "INSERT INTO device_types VALUES ('camera', 4096);"
    "INSERT INTO devices (device_id, device_type, password_hash, "
    "device_token, metadata, enabled, created_at, updated_at) VALUES "
    "('sensor-001', 'iot_sensor', NULL, NULL, '{\"floor\":2}', 1, "
    "'2026-01-01T00:00:00.000Z', '2026-01-01T00:00:00.000Z'),"
    "('cam-1', 'camera', NULL, 'site/cam-1/push', '{}', 0, "
    "'2026-01-02T00:00:00.000Z', '2026-01-02T00:00:00.000Z');"
    "INSERT INTO acl_rules (device_id, topic_filter, access) VALUES "
    "('sensor-001', 'devices/%u/#', 'read'), (NULL, 'public/#', 'read');"
    "INSERT INTO device_stats VALUES ('sensor-001', 12, 30, 2, "
    "'2026-01-01T00:00:00.000Z', '2026-01-01T00:01:00.000Z', NULL);";

TEST_F(AdminTest, InitMigratesAVersionOneRegistryKeepingEveryRow) {
  CreateVersionOneRegistry(db_, kVersionOneRows);
  const std::vector<std::string> kept = {"device_types", "devices", "acl_rules",
                                         "registry_meta"};
  // Version 3 added the 'bridge' type.
  const std::string kBridgeType = "bridge|262144";
  std::map<std::string, std::vector<std::string>> rows_before;
  {
    Peek old(db_);
    for (const std::string& table : kept) {
      rows_before[table] = old.Rows("SELECT * FROM " + table + " ORDER BY 1");
    }
  }

  Outcome r = Admin({"init"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.err, "");
  EXPECT_EQ(r.out,
            "migrated registry " + Path() + " from schema version 1 to 4\n");

  Peek peek(db_);
  EXPECT_EQ(peek.One("PRAGMA user_version"), "4");
  EXPECT_EQ(peek.One("PRAGMA journal_mode"), "wal");
  // Every row kept; device_stats rows gain zero expired, acked, sessions and
  // subscribed.
  // registry_meta among them: the generation did not move, the migration
  // is not a change of the registry.
  rows_before["device_types"].push_back(kBridgeType);
  std::sort(rows_before["device_types"].begin(),
            rows_before["device_types"].end());
  for (const std::string& table : kept) {
    SCOPED_TRACE(table);
    EXPECT_EQ(peek.Rows("SELECT * FROM " + table + " ORDER BY 1"),
              rows_before[table]);
  }
  EXPECT_EQ(rows_before["devices"].size(), 2u);
  // The statistics become the rows of node '' (a single broker's).
  EXPECT_EQ(
      peek.Rows("SELECT * FROM device_stats"),
      (std::vector<std::string>{"sensor-001||12|30|2|2026-01-01T00:00:00.000Z|"
                                "2026-01-01T00:01:00.000Z|NULL|0|0|0|0"}));
  EXPECT_EQ(peek.One("SELECT count(*) FROM notification_log"), "0");
  EXPECT_EQ(peek.One("SELECT count(*) FROM registry_changes"), "0");

  // The same schema as a file created at version 4.
  const fs::path fresh = dir_ / "fresh.db";
  ASSERT_TRUE(test::CreateRegistryFile(fresh.string()));
  EXPECT_EQ(SchemaShape(db_), SchemaShape(fresh));

  // The commands work on it.
  r = Admin({"stats", "sensor-001", "--json"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out)[0]["expired"], 0);
  r = Admin({"device", "list", "--json"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out).size(), 2u);
}

TEST_F(AdminTest, InitOnAMigratedRegistryChangesNothing) {
  CreateVersionOneRegistry(db_, kVersionOneRows);
  Init();
  const std::string before = Snapshot();
  Outcome r = Admin({"init"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out,
            "registry " + Path() + " is up to date (schema version 4)\n");
  EXPECT_EQ(Snapshot(), before);
}

// A step that fails leaves the file at version 1, every row as it was.
TEST_F(AdminTest, AFailedMigrationChangesNothing) {
  CreateVersionOneRegistry(
      db_, std::string(kVersionOneRows) +
               "ALTER TABLE device_stats ADD COLUMN acked TEXT;");
  EXPECT_REFUSED(Args{"init"}, "", 1,
                 "migrating registry " + Path() +
                     " from schema version 1 failed: duplicate column name: "
                     "acked");
  EXPECT_EQ(Peek(db_).One("PRAGMA user_version"), "1");
}

TEST_F(AdminTest, CommandsOnAVersionOneRegistryAskForInit) {
  CreateVersionOneRegistry(db_, kVersionOneRows);
  const std::string message = "registry " + Path() +
                              " has schema version 1; run 'homepot-admin "
                              "init' to migrate it to version 4";
  EXPECT_REFUSED((Args{"device", "list"}), "", 1, message);
  EXPECT_REFUSED((Args{"stats"}), "", 1, message);
}

// A pretend version 5 shows how a further migration step is applied.
TEST_F(AdminTest, InitMigratesAnOlderRegistryInPlace) {
  Init();
  AddDevice("sensor-001");
  std::string v5 = test::SchemaSql();
  const size_t at = v5.rfind("PRAGMA user_version = 4");
  ASSERT_NE(at, std::string::npos);
  v5.replace(at, 23, "PRAGMA user_version = 5");
  env_.schema_sql = v5;
  env_.migrations = {{4, "ALTER TABLE devices ADD COLUMN location TEXT;"}};

  Outcome r = Admin({"init"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out,
            "migrated registry " + Path() + " from schema version 4 to 5\n");
  Peek peek(db_);
  EXPECT_EQ(peek.One("PRAGMA user_version"), "5");
  EXPECT_EQ(peek.One("SELECT device_id, location FROM devices"),
            "sensor-001|NULL");
}

// Version 1 to 5 in one go: the built-in steps, then the next.
TEST_F(AdminTest, InitRunsEveryStepFromVersionOne) {
  CreateVersionOneRegistry(db_, kVersionOneRows);
  std::string v5 = test::SchemaSql();
  v5.replace(v5.rfind("PRAGMA user_version = 4"), 23,
             "PRAGMA user_version = 5");
  env_.schema_sql = v5;
  env_.migrations = BuiltinMigrations();
  env_.migrations.push_back(
      {4, "ALTER TABLE devices ADD COLUMN location TEXT;"});
  Outcome r = Admin({"init"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out,
            "migrated registry " + Path() + " from schema version 1 to 5\n");
  Peek peek(db_);
  EXPECT_EQ(peek.One("SELECT expired, acked FROM device_stats"), "0|0");
  EXPECT_EQ(peek.One("SELECT location FROM devices WHERE device_id = 'cam-1'"),
            "NULL");
}

TEST_F(AdminTest, InitWithoutAMigrationStepChangesNothing) {
  Init();
  std::string v6 = test::SchemaSql();
  v6.replace(v6.rfind("PRAGMA user_version = 4"), 23,
             "PRAGMA user_version = 6");
  env_.schema_sql = v6;
  env_.migrations = {{4, "ALTER TABLE devices ADD COLUMN location TEXT;"}};
  EXPECT_REFUSED(Args{"init"}, "", 1,
                 "cannot migrate registry " + Path() +
                     ": no migration from schema version 5");
}

TEST_F(AdminTest, InitRefusesANewerRegistry) {
  Init();
  Peek(db_).Exec("PRAGMA user_version = 7");
  const std::string message =
      "registry " + Path() +
      " has schema version 7, newer than this homepot-admin supports (4); "
      "use a newer homepot-admin";
  EXPECT_REFUSED(Args{"init"}, "", 1, message);
  EXPECT_REFUSED((Args{"device", "list"}), "", 1, message);
}

TEST_F(AdminTest, InitRefusesAForeignDatabase) {
  Peek(db_).Exec("CREATE TABLE orders (id INTEGER)");
  EXPECT_REFUSED(Args{"init"}, "", 1,
                 Path() +
                     " is not a HOMEPOT registry: it has tables but no schema "
                     "version; refusing to change it");
}

TEST_F(AdminTest, InitRefusesAFileThatIsNotSqlite) {
  ASSERT_TRUE(test::WriteFile(db_, std::string(4096, 'x')));
  const Outcome r = Admin({"init"});
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.err, "homepot-admin: cannot read registry " + Path() +
                       ": file is not a database\n");
  EXPECT_EQ(test::ReadFile(db_), std::string(4096, 'x'));
}

TEST_F(AdminTest, CommandsOnAMissingRegistryDoNotCreateIt) {
  EXPECT_REFUSED(
      (Args{"device", "list"}), "", 1,
      "registry " + Path() + " does not exist; run 'homepot-admin init' first");
  EXPECT_FALSE(fs::exists(db_));
}

TEST_F(AdminTest, CommandsOnAnEmptyFileAskForInit) {
  ASSERT_TRUE(test::WriteFile(db_, ""));
  EXPECT_REFUSED(
      (Args{"acl", "list"}), "", 1,
      "registry " + Path() + " is not initialised; run 'homepot-admin init'");
}

// ------------------------------------------------------ command line ----

TEST_F(AdminTest, MissingDbIsAUsageError) {
  const Outcome r = Raw({"device", "list"});
  EXPECT_EQ(r.code, 2);
  EXPECT_EQ(r.err,
            "homepot-admin: no registry given: use --db PATH|URL or set "
            "HOMEPOT_DB\n");
  EXPECT_EQ(r.out, "");
}

TEST_F(AdminTest, HomepotDbIsTheDefaultRegistry) {
  env_.default_db = db_.string();
  const Outcome r = Raw({"init"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(fs::exists(db_));
  // --db wins over $HOMEPOT_DB.
  const fs::path other = dir_ / "other.db";
  EXPECT_EQ(Raw({"--db=" + other.string(), "init"}).code, 0);
  EXPECT_TRUE(fs::exists(other));
}

// A postgresql:// URL is a PostgreSQL registry, never a file name; a server
// that cannot be reached (nothing listens on port 1) is one line naming the
// URL with its password masked. The registry tests on a real server are in
// tests/integration/admin_postgres_test.cc.
TEST_F(AdminTest, AnUnreachablePostgresUrlFailsOnOneLineWithoutItsPassword) {
  const std::string url =
      "postgresql://homepot:Pa55word@127.0.0.1:1/registry?connect_timeout=5";
  const std::string masked =
      "postgresql://homepot:***@127.0.0.1:1/registry?connect_timeout=5";
  for (const Args& args : {Args{"init"}, Args{"device", "list"},
                           Args{"acl", "grant", "--all", "read", "a/#"}}) {
    for (const bool from_env : {false, true}) {
      SCOPED_TRACE(args[0] + (from_env ? " via HOMEPOT_DB" : " via --db"));
      Args full = args;
      if (from_env) {
        env_.default_db = url;
      } else {
        env_.default_db.reset();
        full.insert(full.begin(), {"--db", url});
      }
      const Outcome r = Raw(full);
      EXPECT_EQ(r.code, 1);
      EXPECT_EQ(r.out, "");
      EXPECT_EQ(r.err.rfind("homepot-admin: cannot connect to the registry: " +
                                masked + ": ",
                            0),
                0u)
          << r.err;
      EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
      EXPECT_EQ(r.err.find("Pa55word"), std::string::npos) << r.err;
    }
  }
  // --db wins over a URL in $HOMEPOT_DB.
  env_.default_db = url;
  EXPECT_EQ(Admin({"init"}).code, 0);
  EXPECT_TRUE(fs::exists(db_));
}

TEST_F(AdminTest, HelpPrintsUsage) {
  for (const Args& args : {Args{"--help"}, Args{"-h"}, Args{"help"},
                           Args{"device", "add", "--help"}}) {
    const Outcome r = Raw(args);
    EXPECT_EQ(r.code, 0);
    EXPECT_EQ(r.out, std::string(UsageText()));
    EXPECT_EQ(r.err, "");
  }
  EXPECT_NE(UsageText().find("acl grant ID|--all"), std::string::npos);
}

TEST_F(AdminTest, MalformedCommandLinesExitWithTwo) {
  Init();
  const struct {
    Args args;
    std::string message;
  } cases[] = {
      {{}, "missing command (try --help)"},
      {{"frobnicate"}, "unknown command 'frobnicate' (try --help)"},
      {{"device"},
       "device: missing subcommand (add, passwd, enable, disable, remove or "
       "list)"},
      {{"device", "rename", "x"},
       "device: unknown subcommand 'rename' (add, passwd, enable, disable, "
       "remove or list)"},
      {{"device", "add", "x"}, "device add: --type TYPE is required"},
      {{"device", "add", "--type", "backend"}, "device add: missing ID"},
      {{"device", "add", "x", "--type"}, "device add: --type needs a value"},
      {{"device", "add", "x", "--type", "a", "--type", "b"},
       "device add: --type given twice"},
      {{"device", "add", "x", "--type", "backend", "--password", "p"},
       "device add: unknown option '--password' (try --help)"},
      {{"device", "enable"}, "device enable: missing ID"},
      {{"device", "remove", "a", "b"},
       "device remove: unexpected argument 'b'"},
      {{"device", "list", "--yaml"},
       "device list: unknown option '--yaml' (try --help)"},
      {{"acl"}, "acl: missing subcommand (grant, revoke or list)"},
      {{"acl", "grant", "x", "read"}, "acl grant: missing FILTER"},
      {{"acl", "grant"}, "acl grant: missing ID or --all"},
      {{"acl", "grant", "x", "--all", "read", "a/b"},
       "acl grant: give either ID or --all, not both"},
      {{"acl", "revoke", "--all"}, "acl revoke: missing FILTER"},
      {{"acl", "list", "a", "b"}, "acl list: unexpected argument 'b'"},
      {{"import-passwd"}, "import-passwd: missing FILE"},
      {{"import-acl", "a", "b"}, "import-acl: unexpected argument 'b'"},
      {{"stats", "a", "b"}, "stats: unexpected argument 'b'"},
      {{"init", "now"}, "init: unexpected argument 'now'"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(testing::PrintToString(c.args));
    EXPECT_REFUSED(c.args, "", 2, c.message);
  }
  const Outcome r = Raw({"--verbose", "init"});
  EXPECT_EQ(r.code, 2);
  EXPECT_EQ(r.err, "homepot-admin: unknown option '--verbose' (try --help)\n");
}

// ---------------------------------------------------------- device add ----

TEST_F(AdminTest, DeviceAddStoresAHashOfThePasswordFromStdin) {
  Init();
  const Outcome r =
      Admin({"device", "add", "sensor-001", "--type", "iot_sensor"},
            "s3cret\r\nignored second line\n");
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "added device 'sensor-001' (type iot_sensor)\n");
  EXPECT_EQ(r.err, "");

  Peek peek(db_);
  EXPECT_EQ(peek.One("SELECT device_type, device_token, platform, metadata, "
                     "enabled FROM devices WHERE device_id = 'sensor-001'"),
            "iot_sensor|devices/sensor-001/notifications|mqtt_push|{}|1");
  const std::string stored = peek.One("SELECT password_hash FROM devices");
  EXPECT_EQ(stored.rfind("$7$", 0), 0u);
  Result<PasswordHash> hash = ParsePasswordHash(stored);
  ASSERT_TRUE(hash.ok()) << hash.status().message();
  EXPECT_EQ(hash->iterations, kDefaultIterations);
  EXPECT_TRUE(VerifyPassword(*hash, "s3cret"));
  EXPECT_FALSE(VerifyPassword(*hash, "s3cret\r"));
  // The hash is never printed.
  EXPECT_EQ(r.out.find(stored.substr(3, 20)), std::string::npos);
}

TEST_F(AdminTest, DeviceAddTakesTokenMetadataAndIterations) {
  Init();
  const Outcome r = Admin(
      {"device", "add", "plc-7", "--type", "industrial_controller", "--token",
       "factory/line-1/plc-7", "--metadata",
       R"({ "site": "Berlin", "ports": [1, 2], "a": null })", "--iterations=5"},
      "pw\n");
  EXPECT_EQ(r.code, 0) << r.err;
  Peek peek(db_);
  EXPECT_EQ(
      peek.One("SELECT device_type, device_token, metadata FROM devices"),
      R"(industrial_controller|factory/line-1/plc-7|{"site":"Berlin","ports":[1,2],"a":null})");
  Result<PasswordHash> hash =
      ParsePasswordHash(peek.One("SELECT password_hash FROM devices"));
  ASSERT_TRUE(hash.ok());
  EXPECT_EQ(hash->iterations, 5);
  EXPECT_TRUE(VerifyPassword(*hash, "pw"));
}

TEST_F(AdminTest, DeviceAddAcceptsUtf8IdsAndAnIdAfterDoubleDash) {
  Init();
  EXPECT_EQ(
      Admin({"device", "add", "capteur-é-東京", "--type", "gateway"}, "pw\n")
          .code,
      0);
  const Outcome r =
      Admin({"device", "add", "--type", "backend", "--", "-dash"}, "pw\n");
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(Peek(db_).Rows("SELECT device_id FROM devices ORDER BY 1"),
            (std::vector<std::string>{"-dash", "capteur-é-東京"}));
}

TEST_F(AdminTest, DeviceAddGeneratePasswordPrintsItOnce) {
  Init();
  const Outcome r = Admin(
      {"device", "add", "homepot", "--type", "backend", "--generate-password"},
      "not read\n");
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.err, "");
  // stdout is the password alone, so that $(...) captures it.
  ASSERT_FALSE(r.out.empty());
  ASSERT_EQ(r.out.back(), '\n');
  const std::string secret = r.out.substr(0, r.out.size() - 1);
  EXPECT_GE(secret.size(), 20u);
  EXPECT_EQ(secret.find_first_of(" \t\n'\"$"), std::string::npos);
  EXPECT_EQ(Peek(db_).One("SELECT device_type FROM devices"), "backend");
  Result<PasswordHash> hash =
      ParsePasswordHash(Peek(db_).One("SELECT password_hash FROM devices"));
  ASSERT_TRUE(hash.ok());
  EXPECT_TRUE(VerifyPassword(*hash, secret));
  EXPECT_FALSE(VerifyPassword(*hash, "not read"));
}

TEST_F(AdminTest, DeviceAddRefusesBadInputAndChangesNothing) {
  Init();
  AddDevice("sensor-001");
  const std::string long_id(129, 'a');
  const struct {
    Args args;
    std::string input;
    std::string message;
  } cases[] = {
      {{"device", "add", "x", "--type", "toaster"},
       "pw\n",
       "unknown device type 'toaster' (known: backend, bridge, gateway, "
       "industrial_controller, iot_sensor, pos_terminal, unknown)"},
      {{"device", "add", "a/b", "--type", "backend"},
       "pw\n",
       "invalid device id 'a/b': contains '/'"},
      {{"device", "add", "a+b", "--type", "backend"},
       "pw\n",
       "invalid device id 'a+b': contains '+'"},
      {{"device", "add", "a#", "--type", "backend"},
       "pw\n",
       "invalid device id 'a#': contains '#'"},
      {{"device", "add", "$SYS", "--type", "backend"},
       "pw\n",
       "invalid device id '$SYS': begins with '$'"},
      {{"device", "add", "", "--type", "backend"},
       "pw\n",
       "invalid device id '': empty"},
      {{"device", "add", long_id, "--type", "backend"},
       "pw\n",
       "invalid device id '" + std::string(80, 'a') +
           "...': longer than 128 bytes"},
      {{"device", "add", "bad\xff", "--type", "backend"},
       "pw\n",
       "invalid device id 'bad\\xff': not valid UTF-8"},
      {{"device", "add", "\xc0\xaf", "--type", "backend"},
       "pw\n",
       "invalid device id '\\xc0\\xaf': not valid UTF-8"},
      {{"device", "add", "two\nlines", "--type", "backend"},
       "pw\n",
       "invalid device id 'two\\nlines': contains a control character"},
      {{"device", "add", "tab\there", "--type", "backend"},
       "pw\n",
       "invalid device id 'tab\\there': contains a control character"},
      {{"device", "add", std::string("nul\0x", 5), "--type", "backend"},
       "pw\n",
       "invalid device id 'nul\\x00x': contains a control character"},
      {{"device", "add", "x", "--type", "backend", "--metadata", "{\"a\":"},
       "pw\n",
       "invalid --metadata '{\"a\":': not valid JSON"},
      {{"device", "add", "x", "--type", "backend", "--metadata", "[1]"},
       "pw\n",
       "invalid --metadata '[1]': not a JSON object"},
      {{"device", "add", "x", "--type", "backend", "--iterations", "0"},
       "pw\n",
       "invalid iteration count '0': expected an integer from 1 to 1000 "
       "(every login hashes on the broker thread)"},
      {{"device", "add", "x", "--type", "backend", "--iterations", "-5"},
       "pw\n",
       "invalid iteration count '-5': expected an integer from 1 to 1000 "
       "(every login hashes on the broker thread)"},
      {{"device", "add", "x", "--type", "backend", "--iterations", "10000001"},
       "pw\n",
       "invalid iteration count '10000001': expected an integer from 1 to "
       "1000 (every login hashes on the broker thread)"},
      {{"device", "add", "x", "--type", "backend", "--iterations", "1e3"},
       "pw\n",
       "invalid iteration count '1e3': expected an integer from 1 to "
       "1000 (every login hashes on the broker thread)"},
      {{"device", "add", "x", "--type", "backend", "--token", "devices/+/x"},
       "pw\n",
       "invalid device token 'devices/+/x': a topic name cannot contain '+' "
       "or '#'"},
      {{"device", "add", "x", "--type", "backend", "--token",
        "$SYS/homepot/stats"},
       "pw\n",
       "invalid device token '$SYS/homepot/stats': topics beginning with '$' "
       "are reserved"},
      {{"device", "add", "x", "--type", "backend", "--token", ""},
       "pw\n",
       "invalid device token '': empty"},
      {{"device", "add", "x", "--type", "backend"},
       "\n",
       "empty password on standard input (use --generate-password for a "
       "random one)"},
      {{"device", "add", "x", "--type", "backend"},
       "\r\n",
       "empty password on standard input (use --generate-password for a "
       "random one)"},
      {{"device", "add", "x", "--type", "backend"},
       "",
       "no password on standard input (pipe it in, or use "
       "--generate-password)"},
      {{"device", "add", "sensor-001", "--type", "backend"},
       "pw\n",
       "device 'sensor-001' already exists"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.message);
    EXPECT_REFUSED(c.args, c.input, 1, c.message);
  }
}

TEST_F(AdminTest, AQuoteInAValueIsEscaped) {
  Init();
  EXPECT_REFUSED(
      (Args{"device", "add", "x", "--type", "it's"}), "pw\n", 1,
      "unknown device type 'it\\'s' (known: backend, bridge, gateway, "
      "industrial_controller, iot_sensor, pos_terminal, unknown)");
}

TEST_F(AdminTest, PasswordPromptOnATerminalTurnsEchoOffAndAsksTwice) {
  Init();
  std::vector<bool> echo_calls;
  env_.set_echo = [&](bool on) { echo_calls.push_back(on); };
  Outcome r = Admin({"device", "add", "x", "--type", "backend"}, "pw\npw\n");
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.err, "Password: \nRepeat password: \n");
  EXPECT_EQ(echo_calls, (std::vector<bool>{false, true, false, true}));

  const std::string before = Snapshot();
  r = Admin({"device", "add", "y", "--type", "backend"}, "pw\nother\n");
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.err,
            "Password: \nRepeat password: \n"
            "homepot-admin: passwords do not match\n");
  EXPECT_EQ(Snapshot(), before);
  EXPECT_EQ(echo_calls.size(), 8u);
  EXPECT_TRUE(echo_calls.back());  // echo is back on
}

// ------------------------------------------------------- device passwd ----

TEST_F(AdminTest, DevicePasswdReplacesTheHash) {
  Init();
  AddDevice("sensor-001", "iot_sensor", "old");
  Outcome r =
      Admin({"device", "passwd", "sensor-001", "--iterations", "7"}, "new\n");
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "changed the password of device 'sensor-001'\n");
  Result<PasswordHash> hash =
      ParsePasswordHash(Peek(db_).One("SELECT password_hash FROM devices"));
  ASSERT_TRUE(hash.ok());
  EXPECT_EQ(hash->iterations, 7);
  EXPECT_TRUE(VerifyPassword(*hash, "new"));
  EXPECT_FALSE(VerifyPassword(*hash, "old"));

  r = Admin({"device", "passwd", "sensor-001", "--generate-password"});
  EXPECT_EQ(r.code, 0) << r.err;
  ASSERT_GE(r.out.size(), 2u);
  const std::string secret = r.out.substr(0, r.out.size() - 1);
  EXPECT_EQ(r.out.find('\n'), r.out.size() - 1);
  hash = ParsePasswordHash(Peek(db_).One("SELECT password_hash FROM devices"));
  ASSERT_TRUE(hash.ok());
  EXPECT_TRUE(VerifyPassword(*hash, secret));
}

TEST_F(AdminTest, DevicePasswdRefusesBadInput) {
  Init();
  AddDevice("sensor-001");
  EXPECT_REFUSED((Args{"device", "passwd", "ghost"}), "pw\n", 1,
                 "unknown device 'ghost'");
  EXPECT_REFUSED((Args{"device", "passwd", "sensor-001"}), "\n", 1,
                 "empty password on standard input (use --generate-password "
                 "for a random one)");
  EXPECT_REFUSED((Args{"device", "passwd", "a/b"}), "pw\n", 1,
                 "invalid device id 'a/b': contains '/'");
  EXPECT_REFUSED((Args{"device", "passwd", "sensor-001", "--iterations", "x"}),
                 "pw\n", 1,
                 "invalid iteration count 'x': expected an integer from 1 to "
                 "1000 (every login hashes on the broker thread)");
}

// ------------------------------------------- enable / disable / remove ----

TEST_F(AdminTest, DeviceDisableAndEnable) {
  Init();
  AddDevice("sensor-001");
  Outcome r = Admin({"device", "disable", "sensor-001"});
  EXPECT_EQ(r.code, 0);
  EXPECT_EQ(r.out, "disabled device 'sensor-001'\n");
  EXPECT_EQ(Peek(db_).One("SELECT enabled FROM devices"), "0");

  const std::string before = Snapshot();
  r = Admin({"device", "disable", "sensor-001"});
  EXPECT_EQ(r.code, 0);
  EXPECT_EQ(r.out, "device 'sensor-001' is already disabled\n");
  EXPECT_EQ(Snapshot(), before);  // not even the generation moves

  r = Admin({"device", "enable", "sensor-001"});
  EXPECT_EQ(r.code, 0);
  EXPECT_EQ(r.out, "enabled device 'sensor-001'\n");
  EXPECT_EQ(Peek(db_).One("SELECT enabled FROM devices"), "1");
  r = Admin({"device", "enable", "sensor-001"});
  EXPECT_EQ(r.out, "device 'sensor-001' is already enabled\n");

  EXPECT_REFUSED((Args{"device", "disable", "ghost"}), "", 1,
                 "unknown device 'ghost'");
  EXPECT_REFUSED((Args{"device", "enable", "a#"}), "", 1,
                 "invalid device id 'a#': contains '#'");
}

TEST_F(AdminTest, DeviceRemoveTakesItsRulesAndStatistics) {
  Init();
  AddDevice("sensor-001");
  AddDevice("sensor-002");
  ASSERT_EQ(Admin({"acl", "grant", "sensor-001", "read", "a/#"}).code, 0);
  ASSERT_EQ(Admin({"acl", "grant", "sensor-001", "write", "b"}).code, 0);
  ASSERT_EQ(Admin({"acl", "grant", "sensor-002", "write", "b"}).code, 0);
  ASSERT_EQ(Admin({"acl", "grant", "--all", "read", "c"}).code, 0);
  Peek(db_).Exec(
      "INSERT INTO device_stats (device_id, published) VALUES "
      "('sensor-001', 3), ('sensor-002', 4)");

  Outcome r = Admin({"device", "remove", "sensor-001"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "removed device 'sensor-001' and its 2 ACL rules\n");
  Peek peek(db_);
  EXPECT_EQ(peek.Rows("SELECT device_id FROM devices"),
            (std::vector<std::string>{"sensor-002"}));
  EXPECT_EQ(peek.Rows("SELECT device_id, topic_filter FROM acl_rules "
                      "ORDER BY 1, 2"),
            (std::vector<std::string>{"NULL|c", "sensor-002|b"}));
  EXPECT_EQ(peek.Rows("SELECT device_id FROM device_stats"),
            (std::vector<std::string>{"sensor-002"}));

  EXPECT_REFUSED((Args{"device", "remove", "sensor-001"}), "", 1,
                 "unknown device 'sensor-001'");
}

// --------------------------------------------------------- device list ----

TEST_F(AdminTest, DeviceListShowsATableWithoutHashes) {
  Init();
  Outcome r = Admin({"device", "list"});
  EXPECT_EQ(r.code, 0);
  EXPECT_EQ(r.out, "DEVICE  TYPE  ENABLED  PASSWORD  TOKEN  CREATED\n");

  AddDevice("sensor-001");
  ASSERT_EQ(Admin({"device", "add", "homepot", "--type", "backend", "--token",
                   "backend/inbox"},
                  "pw\n")
                .code,
            0);
  ASSERT_EQ(Admin({"device", "disable", "homepot"}).code, 0);
  Peek peek(db_);
  peek.Exec("UPDATE devices SET created_at = '2026-01-02T03:04:05.006Z'");
  peek.Exec(
      "INSERT INTO devices (device_id, device_type) VALUES ('nopw', "
      "'unknown')");
  peek.Exec("UPDATE devices SET created_at = '2026-01-02T03:04:05.006Z'");

  r = Admin({"device", "list"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(
      r.out,
      "DEVICE      TYPE        ENABLED  PASSWORD  TOKEN"
      "                             CREATED\n"
      "homepot     backend     no       set       backend/inbox"
      "                     2026-01-02T03:04:05.006Z\n"
      "nopw        unknown     yes      none      devices/nopw/notifications"
      "        2026-01-02T03:04:05.006Z\n"
      "sensor-001  iot_sensor  yes      set       "
      "devices/sensor-001/notifications  2026-01-02T03:04:05.006Z\n");
  EXPECT_EQ(r.out.find("$7$"), std::string::npos);
}

TEST_F(AdminTest, DeviceListJson) {
  Init();
  ASSERT_EQ(Admin({"device", "add", "sensor-001", "--type", "iot_sensor",
                   "--metadata", R"({"floor":2})"},
                  "pw\n")
                .code,
            0);
  const Outcome r = Admin({"device", "list", "--json"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out.find("$7$"), std::string::npos);
  const nlohmann::json list = nlohmann::json::parse(r.out);
  ASSERT_EQ(list.size(), 1u);
  const nlohmann::json& d = list[0];
  EXPECT_EQ(d["device_id"], "sensor-001");
  EXPECT_EQ(d["device_type"], "iot_sensor");
  EXPECT_EQ(d["enabled"], true);
  EXPECT_EQ(d["has_password"], true);
  EXPECT_EQ(d["device_token"], "devices/sensor-001/notifications");
  EXPECT_EQ(d["platform"], "mqtt_push");
  EXPECT_EQ(d["metadata"], nlohmann::json({{"floor", 2}}));
  EXPECT_TRUE(d["created_at"].is_string());
  EXPECT_TRUE(d["updated_at"].is_string());
  EXPECT_FALSE(d.contains("password_hash"));

  EXPECT_EQ(Admin({"device", "list", "--json"}).out.back(), '\n');
  Init();  // idempotent; list still works
  EXPECT_EQ(nlohmann::json::parse(Admin({"device", "list", "--json"}).out),
            list);
}

// ---------------------------------------------------------------- acl -----

TEST_F(AdminTest, AclGrantAddsRulesOnceEach) {
  Init();
  AddDevice("homepot", "backend");
  AddDevice("sensor-001");
  Outcome r =
      Admin({"acl", "grant", "homepot", "write", "devices/+/notifications"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out,
            "granted write on 'devices/+/notifications' to device 'homepot'\n");
  r = Admin({"acl", "grant", "sensor-001", "read",
             "devices/sensor-001/notifications"});
  EXPECT_EQ(r.code, 0);
  r = Admin({"acl", "grant", "--all", "readwrite", "devices/%u/#"});
  EXPECT_EQ(r.code, 0);
  EXPECT_EQ(r.out, "granted readwrite on 'devices/%u/#' to all devices\n");
  r = Admin({"acl", "grant", "sensor-001", "deny", "devices/sensor-001/admin"});
  EXPECT_EQ(r.code, 0);

  // Again: no duplicate, including the global (NULL device) rule.
  const std::string before = Snapshot();
  r = Admin({"acl", "grant", "--all", "readwrite", "devices/%u/#"});
  EXPECT_EQ(r.code, 0);
  EXPECT_EQ(r.out, "all devices already have readwrite on 'devices/%u/#'\n");
  r = Admin({"acl", "grant", "homepot", "write", "devices/+/notifications"});
  EXPECT_EQ(
      r.out,
      "device 'homepot' already has write on 'devices/+/notifications'\n");
  EXPECT_EQ(Snapshot(), before);

  EXPECT_EQ(Peek(db_).Rows("SELECT device_id, topic_filter, access FROM "
                           "acl_rules ORDER BY id"),
            (std::vector<std::string>{
                "homepot|devices/+/notifications|write",
                "sensor-001|devices/sensor-001/notifications|read",
                "NULL|devices/%u/#|readwrite",
                "sensor-001|devices/sensor-001/admin|deny"}));
}

TEST_F(AdminTest, AclGrantRefusesBadInput) {
  Init();
  AddDevice("sensor-001");
  const struct {
    Args args;
    std::string message;
  } cases[] = {
      {{"acl", "grant", "sensor-001", "admin", "a/b"},
       "invalid access 'admin': expected read, write, readwrite or deny"},
      {{"acl", "grant", "sensor-001", "READ", "a/b"},
       "invalid access 'READ': expected read, write, readwrite or deny"},
      {{"acl", "grant", "sensor-001", "read", "a/#/b"},
       "invalid topic filter 'a/#/b': '+' and '#' must fill a whole level and "
       "'#' must be last"},
      {{"acl", "grant", "sensor-001", "read", "sport+"},
       "invalid topic filter 'sport+': '+' and '#' must fill a whole level and "
       "'#' must be last"},
      {{"acl", "grant", "sensor-001", "read", ""},
       "invalid topic filter '': empty"},
      {{"acl", "grant", "sensor-001", "read", "a\x01"},
       "invalid topic filter 'a\\x01': contains a control character"},
      {{"acl", "grant", "sensor-001", "read", "\xe2\x82"},
       "invalid topic filter '\\xe2\\x82': not valid UTF-8"},
      {{"acl", "grant", "ghost", "read", "a/b"}, "unknown device 'ghost'"},
      {{"acl", "grant", "a/b", "read", "a/b"},
       "invalid device id 'a/b': contains '/'"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.message);
    EXPECT_REFUSED(c.args, "", 1, c.message);
  }
}

TEST_F(AdminTest, AclRevokeRemovesEveryAccessOnTheFilter) {
  Init();
  AddDevice("sensor-001");
  ASSERT_EQ(Admin({"acl", "grant", "sensor-001", "read", "a/#"}).code, 0);
  ASSERT_EQ(Admin({"acl", "grant", "sensor-001", "deny", "a/#"}).code, 0);
  ASSERT_EQ(Admin({"acl", "grant", "sensor-001", "read", "b"}).code, 0);
  ASSERT_EQ(Admin({"acl", "grant", "--all", "read", "a/#"}).code, 0);

  Outcome r = Admin({"acl", "revoke", "sensor-001", "a/#"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "revoked 2 rules on 'a/#' from device 'sensor-001'\n");
  r = Admin({"acl", "revoke", "--all", "a/#"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "revoked 1 rule on 'a/#' from all devices\n");
  EXPECT_EQ(Peek(db_).Rows("SELECT device_id, topic_filter FROM acl_rules"),
            (std::vector<std::string>{"sensor-001|b"}));

  EXPECT_REFUSED((Args{"acl", "revoke", "sensor-001", "a/#"}), "", 1,
                 "no rule on 'a/#' for device 'sensor-001'");
  EXPECT_REFUSED((Args{"acl", "revoke", "--all", "b"}), "", 1,
                 "no rule on 'b' for all devices");
  EXPECT_REFUSED((Args{"acl", "revoke", "ghost", "b"}), "", 1,
                 "unknown device 'ghost'");
  EXPECT_REFUSED((Args{"acl", "revoke", "sensor-001", "b/#/c"}), "", 1,
                 "invalid topic filter 'b/#/c': '+' and '#' must fill a whole "
                 "level and '#' must be last");
}

TEST_F(AdminTest, AclListShowsAllRulesOrThoseOfOneDevice) {
  Init();
  AddDevice("homepot", "backend");
  AddDevice("sensor-001");
  ASSERT_EQ(
      Admin({"acl", "grant", "homepot", "write", "devices/+/notifications"})
          .code,
      0);
  ASSERT_EQ(Admin({"acl", "grant", "sensor-001", "read",
                   "devices/sensor-001/notifications"})
                .code,
            0);
  ASSERT_EQ(Admin({"acl", "grant", "--all", "read", "$SYS/homepot/x"}).code, 0);

  Outcome r = Admin({"acl", "list"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out,
            "DEVICE      ACCESS  FILTER\n"
            "(all)       read    $SYS/homepot/x\n"
            "homepot     write   devices/+/notifications\n"
            "sensor-001  read    devices/sensor-001/notifications\n");

  r = Admin({"acl", "list", "sensor-001"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out,
            "DEVICE      ACCESS  FILTER\n"
            "(all)       read    $SYS/homepot/x\n"
            "sensor-001  read    devices/sensor-001/notifications\n");

  r = Admin({"acl", "list", "homepot", "--json"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out), nlohmann::json::parse(R"([
              {"device_id": null, "access": "read",
               "topic_filter": "$SYS/homepot/x"},
              {"device_id": "homepot", "access": "write",
               "topic_filter": "devices/+/notifications"}])"));

  EXPECT_REFUSED((Args{"acl", "list", "ghost"}), "", 1,
                 "unknown device 'ghost'");
}

// ------------------------------------------------------- import-passwd ----

struct FixtureUser {
  std::string name;
  std::string password;
};
const FixtureUser kFixtureUsers[] = {
    // fixtures/mosquitto_passwd.README documents these.
    {"sensor-001", "s3cret-one"},
    {"homepot", "backend-pass"},
    {"legacy", "old-password"},
    {"gateway-01", "gw-pass-1000"},
};

TEST_F(AdminTest, ImportPasswdAddsUnknownUsersAndUpdatesKnownOnes) {
  const fs::path fixture = fs::path(HOMEPOT_FIXTURES) / "mosquitto_passwd.txt";
  if (!fs::exists(fixture)) GTEST_SKIP() << "no " << fixture;
  Init();
  AddDevice("homepot", "backend", "to-be-replaced");

  const Outcome r = Admin({"import-passwd", fixture.string()});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "imported 4 users from '" + fixture.string() +
                       "': 3 added (type unknown), 1 updated\n");
  EXPECT_EQ(r.err, "");

  Peek peek(db_);
  EXPECT_EQ(peek.Rows("SELECT device_id, device_type, device_token, enabled "
                      "FROM devices ORDER BY 1"),
            (std::vector<std::string>{
                "gateway-01|unknown|devices/gateway-01/notifications|1",
                "homepot|backend|devices/homepot/notifications|1",
                "legacy|unknown|devices/legacy/notifications|1",
                "sensor-001|unknown|devices/sensor-001/notifications|1"}));
  for (const FixtureUser& user : kFixtureUsers) {
    SCOPED_TRACE(user.name);
    Result<PasswordHash> hash = ParsePasswordHash(
        peek.One("SELECT password_hash FROM devices WHERE device_id = '" +
                 user.name + "'"));
    ASSERT_TRUE(hash.ok()) << hash.status().message();
    EXPECT_TRUE(VerifyPassword(*hash, user.password));
    EXPECT_FALSE(VerifyPassword(*hash, "to-be-replaced"));
  }
  // The stored text is the file's hash, unchanged.
  const std::string file = test::ReadFile(fixture);
  EXPECT_NE(file.find("legacy:" + peek.One("SELECT password_hash FROM devices "
                                           "WHERE device_id = 'legacy'")),
            std::string::npos);
}

TEST_F(AdminTest, ImportPasswdReadsWhatTheRealMosquittoPasswdWrites) {
  if (std::system("command -v mosquitto_passwd >/dev/null 2>&1") != 0) {
    GTEST_SKIP() << "mosquitto_passwd is not installed";
  }
  const fs::path file = dir_ / "passwd";
  const std::string quoted = "'" + file.string() + "'";
  ASSERT_EQ(std::system(("mosquitto_passwd -c -b " + quoted +
                         " alpha 'first pass' >/dev/null 2>&1")
                            .c_str()),
            0);
  ASSERT_EQ(std::system(("mosquitto_passwd -I 50 -b " + quoted +
                         " beta second >/dev/null 2>&1")
                            .c_str()),
            0);
  ASSERT_EQ(std::system(("mosquitto_passwd -H sha512 -b " + quoted +
                         " gamma third >/dev/null 2>&1")
                            .c_str()),
            0);
  Init();
  const Outcome r = Admin({"import-passwd", file.string()});
  ASSERT_EQ(r.code, 0) << r.err;
  Peek peek(db_);
  const std::map<std::string, std::string> passwords = {
      {"alpha", "first pass"}, {"beta", "second"}, {"gamma", "third"}};
  for (const auto& [user, password] : passwords) {
    SCOPED_TRACE(user);
    Result<PasswordHash> hash = ParsePasswordHash(peek.One(
        "SELECT password_hash FROM devices WHERE device_id = '" + user + "'"));
    ASSERT_TRUE(hash.ok()) << hash.status().message();
    EXPECT_TRUE(VerifyPassword(*hash, password));
    EXPECT_FALSE(VerifyPassword(*hash, password + "!"));
  }
}

TEST_F(AdminTest, ImportPasswdSkipsCommentsAndWarnsAboutLinesWithoutColon) {
  Init();
  const std::string encoded = test::EncodedHash("pw", 3);
  ASSERT_NE(encoded, "");
  const fs::path file = dir_ / "passwd";
  ASSERT_TRUE(test::WriteFile(
      file,
      "# a comment\n\n  \nstray line\r\n dev one : " + encoded + " \r\n"));
  const Outcome r = Admin({"import-passwd", file.string()});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.err, "homepot-admin: warning: " + file.string() +
                       ":4: skipped a line without ':' (Mosquitto ignores it "
                       "too)\n");
  EXPECT_EQ(r.out, "imported 1 user from '" + file.string() +
                       "': 1 added (type unknown), 0 updated\n");
  EXPECT_EQ(Peek(db_).One("SELECT device_id, password_hash FROM devices"),
            "dev one|" + encoded);
}

TEST_F(AdminTest, ImportPasswdIsAllOrNothing) {
  Init();
  AddDevice("sensor-001", "iot_sensor", "keep");
  const std::string good = test::EncodedHash("pw", 3);
  ASSERT_NE(good, "");
  const fs::path file = dir_ / "passwd";
  const std::string f = file.string();

  ASSERT_TRUE(test::WriteFile(
      file, "sensor-001:" + good + "\nnew-one:" + good +
                "\nbroken:$7$101$c2FsdHNhbHRzYWx0$bm90LWEtaGFzaA==\n"));
  {
    const std::string before = Snapshot();
    const Outcome r = Admin({"import-passwd", f});
    EXPECT_EQ(r.code, 1);
    EXPECT_EQ(r.err.rfind("homepot-admin: " + f +
                              ":3: bad password hash for user 'broken': ",
                          0),
              0u)
        << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1);
    // No hash in messages.
    EXPECT_EQ(r.err.find("bm90LWEtaGFzaA"), std::string::npos);
    EXPECT_EQ(Snapshot(), before);
  }
  ASSERT_TRUE(test::WriteFile(file, "a/b:" + good + "\n"));
  EXPECT_REFUSED((Args{"import-passwd", f}), "", 1,
                 f + ":1: invalid device id 'a/b': contains '/'");
  ASSERT_TRUE(test::WriteFile(file, "x:" + good + "\nx:" + good + "\n"));
  EXPECT_REFUSED((Args{"import-passwd", f}), "", 1,
                 f + ":2: user 'x' is listed twice (first on line 1)");
  ASSERT_TRUE(test::WriteFile(file, "x:\n"));
  EXPECT_REFUSED((Args{"import-passwd", f}), "", 1,
                 f + ":1: user 'x' has no password hash");
  EXPECT_REFUSED((Args{"import-passwd", (dir_ / "missing").string()}), "", 1,
                 "cannot read '" + (dir_ / "missing").string() +
                     "': No such file or directory");
}

// ---------------------------------------------------------- import-acl ----

TEST_F(AdminTest, ImportAclTurnsUsersTopicsAndPatternsIntoRules) {
  Init();
  AddDevice("homepot", "backend");
  AddDevice("sensor-001");
  const fs::path file = dir_ / "acl";
  ASSERT_TRUE(test::WriteFile(file,
                              "# Mosquitto acl_file\n"
                              "topic read public/#\n"
                              "\n"
                              "user homepot\n"
                              "topic write devices/+/notifications\n"
                              "topic   factory/#\n"
                              "  # indented comment\n"
                              "pattern read devices/%u/notifications\n"
                              "user sensor-001\r\n"
                              "topic deny devices/sensor-001/secret\n"
                              "topic read rooms/living room/temp  \n"
                              "pattern write $SYS/homepot/rejections/%c\n"));
  Outcome r = Admin({"import-acl", file.string()});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.err,
            "homepot-admin: warning: " + file.string() +
                ":2: skipped a 'topic' line before any 'user' line (it would "
                "apply to anonymous clients, which HOMEPOT does not allow)\n");
  EXPECT_EQ(r.out, "imported 6 rules from '" + file.string() +
                       "': 6 added, 0 already present, 1 anonymous skipped\n");
  const std::vector<std::string> rules = {
      "homepot|devices/+/notifications|write",
      "homepot|factory/#|readwrite",
      "NULL|devices/%u/notifications|read",
      "sensor-001|devices/sensor-001/secret|deny",
      "sensor-001|rooms/living room/temp|read",
      "NULL|$SYS/homepot/rejections/%c|write",
  };
  EXPECT_EQ(Peek(db_).Rows("SELECT device_id, topic_filter, access FROM "
                           "acl_rules ORDER BY id"),
            rules);

  // Importing again adds nothing (global rules included).
  r = Admin({"import-acl", file.string()});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "imported 6 rules from '" + file.string() +
                       "': 0 added, 6 already present, 1 anonymous skipped\n");
  EXPECT_EQ(Peek(db_).Rows("SELECT device_id, topic_filter, access FROM "
                           "acl_rules ORDER BY id"),
            rules);
}

TEST_F(AdminTest, ImportAclIsAllOrNothing) {
  Init();
  AddDevice("homepot", "backend");
  const fs::path file = dir_ / "acl";
  const std::string f = file.string();
  const struct {
    std::string text;
    std::string message;
  } cases[] = {
      {"user homepot\ntopic write a\nuser ghost\ntopic read b\n",
       f + ":3: unknown device 'ghost' (add it with 'homepot-admin device "
           "add' or import-passwd first)"},
      {"user homepot\ntopic write a\ntopic sometimes b\n",
       f + ":3: invalid access 'sometimes': expected read, write, readwrite "
           "or deny"},
      {"user homepot\ntopic write a\ntopic read a/#/b\n",
       f + ":3: invalid topic filter 'a/#/b': '+' and '#' must fill a whole "
           "level and '#' must be last"},
      {"user homepot\ntopic write a\nallow all\n",
       f + ":3: unknown keyword 'allow' (expected user, topic or pattern)"},
      {"user homepot\ntopic\n", f + ":2: missing topic filter"},
      {"user \n", f + ":1: missing user name"},
      {"user a/b\n", f + ":1: invalid device id 'a/b': contains '/'"},
      {"pattern read devices/\xff\n",
       f + ":1: invalid topic filter 'devices/\\xff': not valid UTF-8"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.message);
    ASSERT_TRUE(test::WriteFile(file, c.text));
    EXPECT_REFUSED((Args{"import-acl", f}), "", 1, c.message);
  }
}

// --------------------------------------------------------------- stats ----

TEST_F(AdminTest, StatsListsDeviceStatistics) {
  Init();
  AddDevice("sensor-001");
  AddDevice("sensor-002");
  Outcome r = Admin({"stats"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out,
            "DEVICE  PUBLISHED  DELIVERED  REJECTED  EXPIRED  ACKED  "
            "SESSIONS  SUBSCRIBED  LAST_CONNECT  LAST_PUBLISH  "
            "LAST_DELIVERY\n");

  Peek(db_).Exec(
      "INSERT INTO device_stats (device_id, published, delivered, rejected, "
      "last_connect, last_publish, last_delivery, expired, acked, sessions, "
      "subscribed) VALUES "
      "('sensor-001', 12, 30, 2, '2026-01-01T00:00:00.000Z', "
      "'2026-01-01T00:01:00.000Z', NULL, 5, 25, 2, 1)");
  r = Admin({"stats"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out,
            "DEVICE      PUBLISHED  DELIVERED  REJECTED  EXPIRED  ACKED  "
            "SESSIONS  SUBSCRIBED  LAST_CONNECT              "
            "LAST_PUBLISH              LAST_DELIVERY\n"
            "sensor-001  12         30         2         5        25     "
            "2         1           2026-01-01T00:00:00.000Z  "
            "2026-01-01T00:01:00.000Z  -\n");

  r = Admin({"stats", "sensor-001", "--json"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out), nlohmann::json::parse(R"([
    {"device_id": "sensor-001", "published": 12, "delivered": 30,
     "rejected": 2, "expired": 5, "acked": 25, "sessions": 2,
     "subscribed": 1, "last_connect": "2026-01-01T00:00:00.000Z",
     "last_publish": "2026-01-01T00:01:00.000Z", "last_delivery": null}])"));

  // A known device without a row yet: zeros.
  r = Admin({"stats", "sensor-002", "--json"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out), nlohmann::json::parse(R"([
    {"device_id": "sensor-002", "published": 0, "delivered": 0,
     "rejected": 0, "expired": 0, "acked": 0, "sessions": 0,
     "subscribed": 0, "last_connect": null,
     "last_publish": null,
     "last_delivery": null}])"));

  EXPECT_REFUSED((Args{"stats", "ghost"}), "", 1, "unknown device 'ghost'");
  EXPECT_REFUSED((Args{"stats", "a/b"}), "", 1,
                 "invalid device id 'a/b': contains '/'");
}

// sensor-001 on two broker nodes, sensor-002 on one: the figures as the
// nodes wrote them.
constexpr const char* kTwoNodeStats =
    "INSERT INTO device_stats (device_id, node, published, delivered, "
    "rejected, last_connect, last_publish, last_delivery, expired, acked, "
    "sessions, subscribed) VALUES "
    "('sensor-001', 'node-a', 3, 10, 1, '2026-01-01T00:00:03.000Z', "
    "'2026-01-01T00:01:00.000Z', NULL, 2, 7, 1, 0), "
    "('sensor-001', 'node-b', 4, 20, 0, '2026-01-01T00:00:01.000Z', "
    "'2026-01-01T00:02:00.000Z', '2026-01-01T00:03:00.000Z', 1, 8, 2, 1), "
    "('sensor-002', 'node-b', 5, 0, 0, NULL, '2026-01-01T00:04:00.000Z', "
    "NULL, 0, 0, 0, 0)";

// stats shows the fleet: every node's row of a device added, the latest
// times; --by-node and --node show the rows per node.
TEST_F(AdminTest, StatsSumsTheNodes) {
  Init();
  AddDevice("sensor-001");
  AddDevice("sensor-002");
  Peek(db_).Exec(kTwoNodeStats);
  Outcome r = Admin({"stats", "--json"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out), nlohmann::json::parse(R"([
    {"device_id": "sensor-001", "published": 7, "delivered": 30,
     "rejected": 1, "expired": 3, "acked": 15, "sessions": 3,
     "subscribed": 1, "last_connect": "2026-01-01T00:00:03.000Z",
     "last_publish": "2026-01-01T00:02:00.000Z",
     "last_delivery": "2026-01-01T00:03:00.000Z"},
    {"device_id": "sensor-002", "published": 5, "delivered": 0,
     "rejected": 0, "expired": 0, "acked": 0, "sessions": 0,
     "subscribed": 0, "last_connect": null,
     "last_publish": "2026-01-01T00:04:00.000Z", "last_delivery": null}])"));
  r = Admin({"stats", "sensor-001"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out,
            "DEVICE      PUBLISHED  DELIVERED  REJECTED  EXPIRED  ACKED  "
            "SESSIONS  SUBSCRIBED  LAST_CONNECT              "
            "LAST_PUBLISH              LAST_DELIVERY\n"
            "sensor-001  7          30         1         3        15     "
            "3         1           2026-01-01T00:00:03.000Z  "
            "2026-01-01T00:02:00.000Z  2026-01-01T00:03:00.000Z\n");

  r = Admin({"stats", "--by-node"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out,
            "DEVICE      NODE    PUBLISHED  DELIVERED  REJECTED  EXPIRED  "
            "ACKED  SESSIONS  SUBSCRIBED  LAST_CONNECT              "
            "LAST_PUBLISH              LAST_DELIVERY\n"
            "sensor-001  node-a  3          10         1         2        "
            "7      1         0           2026-01-01T00:00:03.000Z  "
            "2026-01-01T00:01:00.000Z  -\n"
            "sensor-001  node-b  4          20         0         1        "
            "8      2         1           2026-01-01T00:00:01.000Z  "
            "2026-01-01T00:02:00.000Z  2026-01-01T00:03:00.000Z\n"
            "sensor-002  node-b  5          0          0         0        "
            "0      0         0           -                         "
            "2026-01-01T00:04:00.000Z  -\n");
  r = Admin({"stats", "sensor-001", "--node", "node-b", "--json"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out), nlohmann::json::parse(R"([
    {"device_id": "sensor-001", "node": "node-b", "published": 4,
     "delivered": 20, "rejected": 0, "expired": 1, "acked": 8,
     "sessions": 2, "subscribed": 1,
     "last_connect": "2026-01-01T00:00:01.000Z",
     "last_publish": "2026-01-01T00:02:00.000Z",
     "last_delivery": "2026-01-01T00:03:00.000Z"}])"));
  r = Admin({"stats", "--node=node-a", "--json"});
  EXPECT_EQ(r.code, 0) << r.err;
  const nlohmann::json node_a = nlohmann::json::parse(r.out);
  ASSERT_EQ(node_a.size(), 1u);
  EXPECT_EQ(node_a[0]["device_id"], "sensor-001");
  EXPECT_EQ(node_a[0]["published"], 3);
  // A device a node never wrote: no row for that node.
  r = Admin({"stats", "sensor-002", "--node", "node-a", "--json"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out), nlohmann::json::array());

  EXPECT_REFUSED((Args{"stats", "--by-node", "--node", "node-a"}), "", 2,
                 "stats: --by-node and --node exclude each other");
  EXPECT_REFUSED((Args{"stats", "--node"}), "", 2,
                 "stats: --node needs a value");
}

// ------------------------------------------------------ log, delivery ----

// notification_log rows as the plugin writes them (delivery_log.h): two
// devices, every outcome, one notification on a topic that is no device's
// token; written by node-a, node-b, and (the last) before nodes were
// recorded.
constexpr const char* kLogRows = R"(
INSERT INTO notification_log (id, message_id, publisher, topic,
  target_device, received_at, routed, queued, expires_at, acked_at,
  latency_ms, status, outcome, reason, node) VALUES
(1, 'm1', 'homepot', 'devices/sensor-001/notifications', 'sensor-001',
 '2026-11-18T09:00:00.000Z', 1, 0, NULL, NULL, NULL, NULL, 'routed', NULL, 'node-a'),
(2, 'm2', 'homepot', 'devices/sensor-001/notifications', 'sensor-001',
 '2026-11-18T09:30:00.000Z', 1, 0, '2026-11-18T09:35:00.000Z',
 '2026-11-18T09:30:00.300Z', 300, 'opened', 'acked', NULL, 'node-a'),
(3, 'm3', 'homepot', 'devices/sensor-001/notifications', 'sensor-001',
 '2026-11-18T10:00:00.000Z', 0, 1, '2026-11-18T10:05:00.000Z', NULL, NULL,
 NULL, 'queued', NULL, 'node-a'),
(4, 'm4', 'homepot', 'devices/sensor-001/notifications', 'sensor-001',
 '2026-11-18T10:15:00.000Z', 0, 1, '2026-11-18T10:20:00.000Z', NULL, NULL,
 NULL, 'expired', NULL, 'node-a'),
(5, 'm5', 'homepot', 'devices/sensor-001/notifications', 'sensor-001',
 '2026-11-18T10:30:00.000Z', 0, 0, NULL, NULL, NULL, NULL, 'unreachable',
 NULL, 'node-a'),
(6, NULL, 'sensor-002', 'devices/sensor-001/notifications', 'sensor-001',
 '2026-11-18T10:45:00.000Z', 0, 0, NULL, NULL, NULL, NULL, 'rejected',
 'not_allowed', 'node-a'),
(7, 'm7', 'homepot', 'devices/sensor-002/notifications', 'sensor-002',
 '2026-11-18T11:00:00.000Z', 1, 0, NULL, '2026-11-18T11:00:00.050Z', 50,
 'ok', 'acked', NULL, 'node-b'),
(8, 'm8', 'homepot', 'home/all', NULL, '2026-11-18T11:30:00.000Z', 3, 0,
 NULL, NULL, NULL, NULL, 'routed', NULL, 'node-b'),
(9, 'm9', 'homepot', 'devices/sensor-001/notifications', 'sensor-001',
 '2026-11-18T11:45:00.000Z', 1, 0, NULL, '2026-11-18T11:45:00.100Z', 100,
 'ok', 'acked', NULL, '');
)";

// 2026-11-18T12:00:00.000Z
constexpr int64_t kLogNowMs = 1795003200000;

class AdminLogTest : public AdminTest {
 protected:
  void SetUp() override {
    AdminTest::SetUp();
    env_.wall_ms = [] { return kLogNowMs; };
    Init();
    Peek(db_).Exec(kLogRows);
  }

  // The message ids of `log --json` with `options`, in the order printed.
  std::vector<std::string> LoggedIds(std::vector<std::string> options) {
    options.insert(options.begin(), "log");
    options.push_back("--json");
    const Outcome r = Admin(options);
    EXPECT_EQ(r.code, 0) << r.err;
    EXPECT_EQ(r.err, "");
    std::vector<std::string> ids;
    for (const nlohmann::json& row : nlohmann::json::parse(r.out)) {
      ids.push_back(row["message_id"].is_null()
                        ? "null"
                        : row["message_id"].get<std::string>());
    }
    return ids;
  }
};

TEST_F(AdminLogTest, LogPrintsRowsNewestFirst) {
  Outcome r = Admin({"log", "--limit", "3"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out,
            "RECEIVED_AT               OUTCOME  MESSAGE_ID  PUBLISHER  "
            "TARGET      ROUTED  QUEUED  LATENCY_MS  DETAIL  NODE    TOPIC\n"
            "2026-11-18T11:45:00.000Z  acked    m9          homepot    "
            "sensor-001  1       0       100         ok      -       "
            "devices/sensor-001/notifications\n"
            "2026-11-18T11:30:00.000Z  routed   m8          homepot    "
            "-           3       0       -           -       node-b  home/all\n"
            "2026-11-18T11:00:00.000Z  acked    m7          homepot    "
            "sensor-002  1       0       50          ok      node-b  "
            "devices/sensor-002/notifications\n");
}

TEST_F(AdminLogTest, LogJsonHasEveryColumn) {
  Outcome r = Admin({"log", "--message", "m2", "--json"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out), nlohmann::json::parse(R"([
    {"id": 2, "received_at": "2026-11-18T09:30:00.000Z", "outcome": "acked",
     "message_id": "m2", "publisher": "homepot",
     "topic": "devices/sensor-001/notifications",
     "target_device": "sensor-001", "routed": 1, "queued": 0,
     "expires_at": "2026-11-18T09:35:00.000Z",
     "acked_at": "2026-11-18T09:30:00.300Z", "latency_ms": 300,
     "status": "opened", "reason": null, "node": "node-a"}])"));
  r = Admin({"log", "--message", "nothing", "--json"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out), nlohmann::json::array());
}

TEST_F(AdminLogTest, LogFilters) {
  EXPECT_EQ(LoggedIds({}),
            (std::vector<std::string>{"m9", "m8", "m7", "null", "m5", "m4",
                                      "m3", "m2", "m1"}));
  // Target or publisher.
  EXPECT_EQ(LoggedIds({"--device", "sensor-002"}),
            (std::vector<std::string>{"m7", "null"}));
  EXPECT_EQ(LoggedIds({"--device=homepot", "--limit=2"}),
            (std::vector<std::string>{"m9", "m8"}));
  EXPECT_EQ(LoggedIds({"--since", "2026-11-18T11:00:00Z"}),
            (std::vector<std::string>{"m9", "m8", "m7"}));
  EXPECT_EQ(LoggedIds({"--since", "2026-11-18T12:00:00.001+01:00"}),
            (std::vector<std::string>{"m9", "m8"}));
  EXPECT_EQ(LoggedIds({"--since", "1h"}),
            (std::vector<std::string>{"m9", "m8", "m7"}));
  EXPECT_EQ(LoggedIds({"--since", "61m", "--device", "sensor-001"}),
            (std::vector<std::string>{"m9"}));
  EXPECT_EQ(LoggedIds({"--since", "7200s", "--message", "m3"}),
            (std::vector<std::string>{"m3"}));
  EXPECT_EQ(LoggedIds({"--since", "2026-11-19"}), (std::vector<std::string>{}));
  EXPECT_EQ(LoggedIds({"--since", "1d"}).size(), 9u);
  // The rows one node wrote.
  EXPECT_EQ(LoggedIds({"--node", "node-b"}),
            (std::vector<std::string>{"m8", "m7"}));
  EXPECT_EQ(LoggedIds({"--node=node-a", "--device", "sensor-002"}),
            (std::vector<std::string>{"null"}));
  EXPECT_EQ(LoggedIds({"--node", "node-c"}), (std::vector<std::string>{}));
}

TEST_F(AdminLogTest, LogAndDeliveryRefuseBadValues) {
  EXPECT_REFUSED((Args{"log", "--since", "yesterday"}), "", 1,
                 "invalid --since 'yesterday': expected an RFC 3339 time "
                 "(2026-11-18T08:00:00Z) or a duration (30m, 12h, 7d)");
  EXPECT_REFUSED((Args{"log", "--since", "2026-02-30T00:00:00Z"}), "", 1,
                 "invalid --since '2026-02-30T00:00:00Z': expected an RFC "
                 "3339 time (2026-11-18T08:00:00Z) or a duration (30m, 12h, "
                 "7d)");
  EXPECT_REFUSED((Args{"delivery", "--since", "5w"}), "", 1,
                 "invalid --since '5w': expected an RFC 3339 time "
                 "(2026-11-18T08:00:00Z) or a duration (30m, 12h, 7d)");
  EXPECT_REFUSED((Args{"log", "--limit", "0"}), "", 1,
                 "invalid --limit '0': expected an integer from 1 to "
                 "1000000000");
  EXPECT_REFUSED((Args{"log", "--device", "a/b"}), "", 1,
                 "invalid device id 'a/b': contains '/'");
  EXPECT_REFUSED((Args{"log", "--follow"}), "", 2,
                 "log: unknown option '--follow' (try --help)");
  EXPECT_REFUSED((Args{"delivery", "sensor-001"}), "", 2,
                 "delivery: unexpected argument 'sensor-001'");
}

// Per target device; the total also counts rows without one.
TEST_F(AdminLogTest, DeliverySumsUpPerTargetDevice) {
  Outcome r = Admin({"delivery", "--json"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out), nlohmann::json::parse(R"({
    "devices": [
      {"device_id": "sensor-001", "notifications": 6, "routed": 1,
       "queued": 1, "expired": 1, "unreachable": 1, "acked": 2,
       "rejected": 1, "delivery_rate": 0.5, "p50_ack_ms": 100,
       "p99_ack_ms": 300},
      {"device_id": "sensor-002", "notifications": 1, "routed": 0,
       "queued": 0, "expired": 0, "unreachable": 0, "acked": 1,
       "rejected": 0, "delivery_rate": 1.0, "p50_ack_ms": 50,
       "p99_ack_ms": 50}],
    "total": {"notifications": 8, "routed": 2, "queued": 1, "expired": 1,
              "unreachable": 1, "acked": 3, "rejected": 1,
              "delivery_rate": 0.625, "p50_ack_ms": 100,
              "p99_ack_ms": 300}})"));

  r = Admin({"delivery"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out,
            "DEVICE      NOTIFICATIONS  ROUTED  QUEUED  EXPIRED  UNREACHABLE  "
            "ACKED  REJECTED  DELIVERY_RATE  P50_MS  P99_MS\n"
            "sensor-001  6              1       1       1        1            "
            "2      1         50.0%          100     300\n"
            "sensor-002  1              0       0       0        0            "
            "1      0         100.0%         50      50\n"
            "(total)     8              2       1       1        1            "
            "3      1         62.5%          100     300\n");

  // From 11:00: m7, m8, m9.
  r = Admin({"delivery", "--since", "1h", "--json"});
  EXPECT_EQ(r.code, 0) << r.err;
  const nlohmann::json since = nlohmann::json::parse(r.out);
  ASSERT_EQ(since["devices"].size(), 2u);
  EXPECT_EQ(since["devices"][0]["notifications"], 1);
  EXPECT_EQ(since["devices"][0]["acked"], 1);
  EXPECT_EQ(since["devices"][0]["p50_ack_ms"], 100);
  EXPECT_EQ(since["total"]["notifications"], 3);
  EXPECT_EQ(since["total"]["delivery_rate"], 1.0);
  EXPECT_EQ(since["total"]["p99_ack_ms"], 100);

  // The rows of one node: node-b wrote m7 (sensor-002) and m8 (no device).
  r = Admin({"delivery", "--node", "node-b", "--json"});
  EXPECT_EQ(r.code, 0) << r.err;
  const nlohmann::json node_b = nlohmann::json::parse(r.out);
  ASSERT_EQ(node_b["devices"].size(), 1u);
  EXPECT_EQ(node_b["devices"][0]["device_id"], "sensor-002");
  EXPECT_EQ(node_b["total"]["notifications"], 2);
  EXPECT_EQ(node_b["total"]["acked"], 1);
  EXPECT_EQ(node_b["total"]["routed"], 1);
}

TEST_F(AdminLogTest, DeliveryOfAnEmptyLog) {
  Peek(db_).Exec("DELETE FROM notification_log");
  Outcome r = Admin({"delivery", "--json"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out), nlohmann::json::parse(R"({
    "devices": [],
    "total": {"notifications": 0, "routed": 0, "queued": 0, "expired": 0,
              "unreachable": 0, "acked": 0, "rejected": 0,
              "delivery_rate": null, "p50_ack_ms": null,
              "p99_ack_ms": null}})"));
  r = Admin({"delivery"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out,
            "DEVICE   NOTIFICATIONS  ROUTED  QUEUED  EXPIRED  UNREACHABLE  "
            "ACKED  REJECTED  DELIVERY_RATE  P50_MS  P99_MS\n"
            "(total)  0              0       0       0        0            "
            "0      0         -              -       -\n");
}

// What the plugin's writer stores, `log` reads back; a --since equal to a
// stored received_at includes that row (both write the same time format).
TEST_F(AdminTest, LogReadsWhatThePluginWrites) {
  Init();
  std::atomic<bool> ready{false};
  LogQueue lines(&ready);
  const int64_t received_ms = kLogNowMs - 1500;  // 11:59:58.500Z
  DeliveryLogWriter writer(db_.string(), "node-a", {100, 0},
                           SystemClock::Instance(), &lines);
  DeliveryEvent accepted;
  accepted.message_id = "m1";
  accepted.publisher = "homepot";
  accepted.topic = "devices/sensor-001/notifications";
  accepted.target_device = "sensor-001";
  accepted.received_ms = received_ms;
  accepted.queued = 1;
  accepted.expires_ms = received_ms + 300000;
  DeliveryEvent acked;
  acked.kind = DeliveryEvent::Kind::kAcked;
  acked.message_id = "m1";
  acked.publisher = "homepot";
  acked.device = "sensor-001";
  acked.status = "ok";
  acked.at_ms = received_ms + 1234;
  acked.latency_ms = 1234;
  std::vector<DeliveryEvent> events = {accepted, acked};
  ASSERT_TRUE(writer.Submit(&events));
  {
    Result<Database> db =
        Database::Open(db_.string(), Database::Mode::kReadWrite);
    ASSERT_TRUE(db.ok()) << db.status().message();
    ASSERT_TRUE(writer.Flush(&*db, 1000));
  }
  const Outcome r =
      Admin({"log", "--since", "2026-11-18T11:59:58.500Z", "--json"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out), nlohmann::json::parse(R"([
    {"id": 1, "received_at": "2026-11-18T11:59:58.500Z", "outcome": "acked",
     "message_id": "m1", "publisher": "homepot",
     "topic": "devices/sensor-001/notifications",
     "target_device": "sensor-001", "routed": 0, "queued": 1,
     "expires_at": "2026-11-18T12:04:58.500Z",
     "acked_at": "2026-11-18T11:59:59.734Z", "latency_ms": 1234,
     "status": "ok", "reason": null, "node": "node-a"}])"));
  const Outcome later =
      Admin({"log", "--since", "2026-11-18T11:59:58.501Z", "--json"});
  EXPECT_EQ(later.code, 0) << later.err;
  EXPECT_EQ(nlohmann::json::parse(later.out), nlohmann::json::array());
}

// ---------------------------------------------------- acl/*.sql scripts ----

int Sqlite3Shell(const fs::path& db, const fs::path& script) {
  const std::string command =
      "sqlite3 -batch '" + db.string() + "' < '" + script.string() + "' 2>&1";
  return std::system(command.c_str());
}

TEST_F(AdminTest, GuideExampleScriptAppliesTwiceWithTheSameResult) {
  if (std::system("command -v sqlite3 >/dev/null 2>&1") != 0) {
    GTEST_SKIP() << "sqlite3 shell is not installed";
  }
  Init();
  const fs::path script = SourceRoot() / "acl" / "homepot-guide-example.sql";
  ASSERT_TRUE(fs::exists(script)) << script;
  ASSERT_EQ(Sqlite3Shell(db_, script), 0);
  const std::string once = Snapshot();
  ASSERT_EQ(Sqlite3Shell(db_, script), 0);
  EXPECT_EQ(Snapshot(), once);

  Peek peek(db_);
  EXPECT_EQ(peek.Rows("SELECT device_id, device_type, password_hash FROM "
                      "devices ORDER BY 1"),
            (std::vector<std::string>{"homepot|backend|NULL",
                                      "sensor-001|iot_sensor|NULL"}));
  EXPECT_EQ(peek.Rows("SELECT device_id, topic_filter, access FROM acl_rules "
                      "ORDER BY 1"),
            (std::vector<std::string>{
                "homepot|devices/+/notifications|write",
                "sensor-001|devices/sensor-001/notifications|read"}));
  // The tool sees them and can give them passwords.
  const Outcome r = Admin({"device", "passwd", "sensor-001"}, "pw\n");
  EXPECT_EQ(r.code, 0) << r.err;
}

TEST_F(AdminTest, GuideExampleScriptKeepsExistingDevices) {
  if (std::system("command -v sqlite3 >/dev/null 2>&1") != 0) {
    GTEST_SKIP() << "sqlite3 shell is not installed";
  }
  Init();
  AddDevice("sensor-001", "gateway", "pw");
  ASSERT_EQ(
      Sqlite3Shell(db_, SourceRoot() / "acl" / "homepot-guide-example.sql"), 0);
  Peek peek(db_);
  EXPECT_EQ(peek.One("SELECT device_type, password_hash IS NOT NULL FROM "
                     "devices WHERE device_id = 'sensor-001'"),
            "gateway|1");
}

TEST_F(AdminTest, EveryAclScriptAppliesIdempotently) {
  if (std::system("command -v sqlite3 >/dev/null 2>&1") != 0) {
    GTEST_SKIP() << "sqlite3 shell is not installed";
  }
  const std::map<std::string, std::vector<std::string>> expected = {
      {"homepot-guide-example.sql",
       {"homepot|devices/+/notifications|write",
        "sensor-001|devices/sensor-001/notifications|read"}},
      {"monitoring.sql", {"monitor|$SYS/homepot/stats|read"}},
      {"devices-own-subtree.sql", {"NULL|devices/%u/#|readwrite"}},
      {"backend-broadcast.sql",
       {"backend|devices/+/notifications|write", "backend|emergency/#|write",
        "backend|factory/#|write", "backend|home/#|write"}},
  };
  size_t scripts = 0;
  for (const auto& entry : fs::directory_iterator(SourceRoot() / "acl")) {
    if (entry.path().extension() == ".sql") ++scripts;
  }
  EXPECT_EQ(scripts, expected.size());
  for (const auto& [name, rules] : expected) {
    SCOPED_TRACE(name);
    db_ = dir_ / (name + ".db");
    Init();
    const fs::path script = SourceRoot() / "acl" / name;
    ASSERT_EQ(Sqlite3Shell(db_, script), 0);
    const std::string once = Snapshot();
    ASSERT_EQ(Sqlite3Shell(db_, script), 0);
    EXPECT_EQ(Snapshot(), once);
    EXPECT_EQ(Peek(db_).Rows("SELECT device_id, topic_filter, access FROM "
                             "acl_rules ORDER BY 1, 2"),
              rules);
    // Every rule passes the tool's own checks.
    for (const std::string& filter :
         Peek(db_).Rows("SELECT topic_filter FROM acl_rules")) {
      EXPECT_TRUE(ValidateFilter(filter).ok()) << filter;
    }
  }
}

// ------------------------------------------------------- presence ----

// schema.sql without device_stats.sessions and .subscribed: a version-2
// file that lacks them.
// A version-2 file (tests/fixtures/schema_v2.sql) with presence figures a
// broker left behind.
constexpr const char* kVersionTwoRows =
    "INSERT INTO devices (device_id) VALUES ('sensor-001');"
    "INSERT INTO acl_rules (device_id, topic_filter, access) VALUES "
    "('sensor-001', 'devices/%u/#', 'read');"
    "INSERT INTO device_stats (device_id, published, acked, sessions, "
    "subscribed) VALUES ('sensor-001', 4, 1, 2, 1);"
    "INSERT INTO notification_log (topic, received_at, outcome) VALUES "
    "('devices/sensor-001/notifications', '2026-01-01T00:00:00.000Z', "
    "'routed');";

TEST_F(AdminTest, InitMigratesAVersionTwoFile) {
  ASSERT_TRUE(test::CreateOldRegistryFile(2, db_.string(), kVersionTwoRows));
  const std::string generation =
      Peek(db_).One("SELECT generation FROM registry_meta");

  Outcome r = Admin({"init"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.err, "");
  EXPECT_EQ(r.out,
            "migrated registry " + Path() + " from schema version 2 to 4\n");
  {
    Peek peek(db_);
    EXPECT_EQ(peek.One("PRAGMA user_version"), "4");
    // Counters kept as node ''; presence starts again at 0.
    EXPECT_EQ(peek.One("SELECT node, published, acked, sessions, subscribed "
                       "FROM device_stats"),
              "|4|1|0|0");
    EXPECT_EQ(peek.One("SELECT node, outcome FROM notification_log"),
              "|routed");
    EXPECT_EQ(peek.One("SELECT max_payload_bytes FROM device_types "
                       "WHERE name = 'bridge'"),
              "262144");
    EXPECT_EQ(peek.One("SELECT generation FROM registry_meta"), generation);
    // The feed records changes from now on.
    peek.Exec("UPDATE devices SET enabled = 0");
    EXPECT_EQ(
        peek.Rows("SELECT kind, name FROM registry_changes"),
        (std::vector<std::string>{"device|sensor-001", "device|sensor-001"}));
  }
  const fs::path fresh = dir_ / "fresh.db";
  ASSERT_TRUE(test::CreateRegistryFile(fresh.string()));
  EXPECT_EQ(SchemaShape(db_), SchemaShape(fresh));
}

// A version-3 file keeps every row of notification_log and registry_changes
// through their rebuild; their CHECKs and the feed triggers still hold.
TEST_F(AdminTest, InitMigratesAVersionThreeFile) {
  ASSERT_TRUE(test::CreateOldRegistryFile(
      3, db_.string(),
      std::string(kVersionTwoRows) +
          "INSERT INTO notification_log (message_id, topic, received_at, "
          "outcome, reason, node) VALUES ('m-2', 'devices/x/notifications', "
          "'2026-01-02T00:00:00.000Z', 'rejected', 'invalid_json', 'n1');"));
  const std::vector<std::string> tables = {"notification_log",
                                           "registry_changes", "device_stats",
                                           "devices", "registry_meta"};
  std::map<std::string, std::vector<std::string>> before;
  for (const std::string& table : tables) {
    before[table] = Peek(db_).Rows("SELECT * FROM " + table + " ORDER BY 1");
  }
  ASSERT_EQ(before["notification_log"].size(), 2u);
  ASSERT_FALSE(before["registry_changes"].empty());

  Outcome r = Admin({"init"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out,
            "migrated registry " + Path() + " from schema version 3 to 4\n");
  Peek peek(db_);
  EXPECT_EQ(peek.One("PRAGMA user_version"), "4");
  for (const std::string& table : tables) {
    SCOPED_TRACE(table);
    EXPECT_EQ(peek.Rows("SELECT * FROM " + table + " ORDER BY 1"),
              before[table]);
  }
  EXPECT_EQ(peek.One("SELECT count(*) FROM write_marks"), "0");
  EXPECT_FALSE(test::ExecSqlOn(db_.string(),
                               "INSERT INTO notification_log (topic, "
                               "received_at, outcome) VALUES ('t', "
                               "'2026-01-03T00:00:00.000Z', 'delivered')"));
  EXPECT_FALSE(
      test::ExecSqlOn(db_.string(),
                      "INSERT INTO registry_changes (generation, kind) "
                      "VALUES (1, 'node')"));
  peek.Exec("UPDATE devices SET enabled = 0");
  EXPECT_EQ(peek.One("SELECT kind, name FROM registry_changes WHERE "
                     "generation = (SELECT generation FROM registry_meta)"),
            "device|sensor-001");
  const fs::path fresh = dir_ / "fresh.db";
  ASSERT_TRUE(test::CreateRegistryFile(fresh.string()));
  EXPECT_EQ(SchemaShape(db_), SchemaShape(fresh));
}

// Views and triggers of the operator's own that name notification_log or
// registry_changes do not stop their rebuild, and name the new tables.
TEST_F(AdminTest, InitMigratesAVersionThreeFileWithViewsOnTheRebuiltTables) {
  ASSERT_TRUE(test::CreateOldRegistryFile(
      3, db_.string(),
      std::string(kVersionTwoRows) +
          "CREATE VIEW log_by_node AS SELECT node, count(*) AS n "
          "FROM notification_log GROUP BY node;"
          "CREATE VIEW feed_kinds AS SELECT DISTINCT kind FROM "
          "registry_changes;"
          "CREATE TABLE audit (n INTEGER);"
          "CREATE TRIGGER audit_log AFTER INSERT ON audit BEGIN "
          "DELETE FROM notification_log WHERE id = NEW.n; END;"));
  Outcome r = Admin({"init"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out,
            "migrated registry " + Path() + " from schema version 3 to 4\n");
  Peek peek(db_);
  EXPECT_EQ(peek.One("PRAGMA user_version"), "4");
  EXPECT_EQ(peek.One("SELECT sum(n) FROM log_by_node"), "1");
  EXPECT_EQ(peek.One("SELECT count(*) FROM feed_kinds"), "1");
  peek.Exec("INSERT INTO audit (n) SELECT id FROM notification_log");
  EXPECT_EQ(peek.One("SELECT count(*) FROM notification_log"), "0");
  EXPECT_EQ(peek.One("PRAGMA integrity_check"), "ok");
}

// A file created by an early version-2 schema, before device_stats had the
// presence columns, migrates the same way.
TEST_F(AdminTest, InitMigratesAnEarlyVersionTwoFile) {
  std::string early = test::OldSchemaSql(2);
  const std::string columns =
      ",\n  sessions      INTEGER NOT NULL DEFAULT 0,"
      "\n  subscribed    INTEGER NOT NULL DEFAULT 0";
  const size_t at = early.find(columns);
  ASSERT_NE(at, std::string::npos);
  early.erase(at, columns.size());
  Peek(db_).Exec(early +
                 "INSERT INTO devices (device_id) VALUES ('sensor-001');"
                 "INSERT INTO device_stats (device_id, published) "
                 "VALUES ('sensor-001', 4);");
  Outcome r = Admin({"init"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out,
            "migrated registry " + Path() + " from schema version 2 to 4\n");
  EXPECT_EQ(Peek(db_).One("SELECT published, sessions FROM device_stats"),
            "4|0");
  const fs::path fresh = dir_ / "fresh.db";
  ASSERT_TRUE(test::CreateRegistryFile(fresh.string()));
  EXPECT_EQ(SchemaShape(db_), SchemaShape(fresh));
}

// A step that fails leaves the file at version 2.
TEST_F(AdminTest, AFailedVersionTwoMigrationChangesNothing) {
  ASSERT_TRUE(
      test::CreateOldRegistryFile(2, db_.string(), "DROP TABLE device_stats;"));
  EXPECT_REFUSED(Args{"init"}, "", 1,
                 "migrating registry " + Path() +
                     " from schema version 2 failed: no such table: "
                     "device_stats");
  EXPECT_EQ(Peek(db_).One("PRAGMA user_version"), "2");
}

// The triggers and views of a file, as SQLite reports them.
std::vector<std::string> TriggersAndViews(const fs::path& path) {
  return Peek(path).Rows(
      "SELECT name, sql FROM sqlite_schema WHERE type IN ('trigger', 'view') "
      "ORDER BY name");
}

// The step from version 3 gives a file made by the earlier version-3
// schema (tests/fixtures/schema_v3.sql) the feed's bound and triggers of
// schema.sql, its rows kept: the feed keeps its last 50000 generations.
TEST_F(AdminTest, StepThreeGivesAVersionThreeFileTheFeedTriggersOfTheSchema) {
  ASSERT_TRUE(test::CreateOldRegistryFile(
      3, db_.string(), "INSERT INTO devices (device_id) VALUES ('a'), ('b');"));
  const fs::path fresh = dir_ / "fresh.db";
  ASSERT_TRUE(test::CreateRegistryFile(fresh.string()));
  ASSERT_NE(TriggersAndViews(db_), TriggersAndViews(fresh));
  const Migration& step = BuiltinMigrations().at(2);
  ASSERT_EQ(step.from_version, 3);
  Peek peek(db_);
  peek.Exec("BEGIN;\n" + std::string(step.sql) + "\nCOMMIT;");
  EXPECT_EQ(TriggersAndViews(db_), TriggersAndViews(fresh));
  EXPECT_EQ(peek.One("SELECT count(*) FROM registry_changes"), "2");

  peek.Exec("UPDATE registry_meta SET generation = 100000");
  peek.Exec(
      "INSERT INTO registry_changes (generation, kind, name) VALUES "
      "(50002, 'device', 'pruned'), (50003, 'device', 'kept')");
  peek.Exec("DELETE FROM devices WHERE device_id = 'a'");  // 100001
  peek.Exec("DELETE FROM devices WHERE device_id = 'b'");  // 100002
  EXPECT_EQ(peek.Rows("SELECT generation, name FROM registry_changes "
                      "ORDER BY generation"),
            (std::vector<std::string>{"50003|kept", "100001|a", "100002|b"}));
}

// A version-1 file gets the presence columns from the migration itself.
TEST_F(AdminTest, MigrationFromVersionOneAddsThePresenceColumns) {
  CreateVersionOneRegistry(db_, kVersionOneRows);
  Outcome r = Admin({"init"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out,
            "migrated registry " + Path() + " from schema version 1 to 4\n");
  EXPECT_EQ(Peek(db_).One("SELECT sessions, subscribed FROM device_stats"),
            "0|0");
  r = Admin({"stats", "sensor-001", "--json"});
  EXPECT_EQ(r.code, 0) << r.err;
  const nlohmann::json stats = nlohmann::json::parse(r.out);
  EXPECT_EQ(stats[0]["sessions"], 0);
  EXPECT_EQ(stats[0]["subscribed"], 0);
}

// Devices in every situation, times relative to now: listed with the
// default 24 h are zombie (connected, not subscribed), stale (not connected,
// seen 2 days ago), never (no row) and blank (a row without times).
constexpr const char* kPresenceRows =
    "INSERT INTO devices (device_id, enabled) VALUES ('zombie', 1), "
    "('reachable', 1), ('recent', 1), ('stale', 1), ('never', 1), "
    "('blank', 1), ('disabled', 0);"
    "INSERT INTO device_stats (device_id, last_connect, last_publish, "
    "last_delivery, sessions, subscribed) VALUES "
    "('zombie', strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-1 minutes'), NULL, "
    "NULL, 1, 0), "
    "('reachable', strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-3 days'), NULL, "
    "NULL, 2, 1), "
    "('recent', NULL, strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-1 hours'), "
    "NULL, 0, 0), "
    "('stale', strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-3 days'), NULL, "
    "strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-2 days'), 0, 0), "
    "('blank', NULL, NULL, NULL, 0, 0), "
    "('disabled', '2020-01-01T00:00:00.000Z', NULL, NULL, 1, 0);";

// device_id -> [state, sessions, subscribed, last_seen] of a --json listing,
// checking that every item has exactly those keys.
std::map<std::string, nlohmann::json> UnreachableById(const std::string& out) {
  std::map<std::string, nlohmann::json> by_id;
  const nlohmann::json list = nlohmann::json::parse(out);
  EXPECT_TRUE(list.is_array());
  for (const nlohmann::json& item : list) {
    EXPECT_EQ(item.size(), 5u) << item;
    by_id[item.at("device_id").get<std::string>()] = {
        item.at("state"), item.at("sessions"), item.at("subscribed"),
        item.at("last_seen")};
  }
  return by_id;
}

TEST_F(AdminTest, DevicesUnreachableListsZombiesAndIdleDevices) {
  Init();
  Peek(db_).Exec(kPresenceRows);
  const std::string stale_seen = Peek(db_).One(
      "SELECT last_delivery FROM device_stats WHERE device_id = 'stale'");
  const std::string zombie_seen = Peek(db_).One(
      "SELECT last_connect FROM device_stats WHERE device_id = 'zombie'");
  const std::string recent_seen = Peek(db_).One(
      "SELECT last_publish FROM device_stats WHERE device_id = 'recent'");

  Outcome r = Admin({"devices", "--unreachable", "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.err, "");
  using J = nlohmann::json;
  std::map<std::string, J> expected = {
      {"blank", {"not_seen", 0, 0, nullptr}},
      {"never", {"not_seen", 0, 0, nullptr}},
      {"stale", {"not_seen", 0, 0, stale_seen}},
      {"zombie", {"connected_not_subscribed", 1, 0, zombie_seen}},
  };
  EXPECT_EQ(UnreachableById(r.out), expected);
  // Sorted by device id.
  EXPECT_EQ(J::parse(r.out)[0]["device_id"], "blank");

  r = Admin({"devices", "--unreachable", "--idle", "30m", "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  expected["recent"] = {"not_seen", 0, 0, recent_seen};
  EXPECT_EQ(UnreachableById(r.out), expected);

  r = Admin({"devices", "--unreachable", "--idle=7d", "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  expected.erase("recent");
  expected.erase("stale");
  EXPECT_EQ(UnreachableById(r.out), expected);

  // A zombie is listed however recently it was seen; a connected device
  // with a subscription never is, however long ago it connected.
  r = Admin({"devices", "--unreachable", "--idle", "36500d", "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(UnreachableById(r.out), expected);
  r = Admin({"devices", "--unreachable", "--idle", "1s", "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  std::map<std::string, J> all = UnreachableById(r.out);
  EXPECT_EQ(all.count("reachable"), 0u);
  EXPECT_EQ(all.count("disabled"), 0u);
  EXPECT_EQ(all.size(), 5u);
}

TEST_F(AdminTest, DevicesUnreachablePrintsATable) {
  Init();
  Outcome r = Admin({"devices", "--unreachable"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "DEVICE  STATE  SESSIONS  SUBSCRIBED  LAST_SEEN\n");
  r = Admin({"devices", "--unreachable", "--json"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out), nlohmann::json::array());

  Peek(db_).Exec(
      "INSERT INTO devices (device_id) VALUES ('a-zombie'), ('b-stale'), "
      "('c-never');"
      "INSERT INTO device_stats (device_id, last_connect, last_publish, "
      "sessions, subscribed) VALUES "
      "('a-zombie', '2020-01-02T00:00:00.000Z', NULL, 2, 0), "
      "('b-stale', '2020-01-01T00:00:00.000Z', '2020-01-01T00:05:00.000Z', "
      "0, 0)");
  r = Admin({"devices", "--unreachable"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out,
            "DEVICE    STATE                      SESSIONS  SUBSCRIBED  "
            "LAST_SEEN\n"
            "a-zombie  connected, not subscribed  2         0           "
            "2020-01-02T00:00:00.000Z\n"
            "b-stale   not seen                   0         0           "
            "2020-01-01T00:05:00.000Z\n"
            "c-never   never seen                 0         0           -\n");
}

TEST_F(AdminTest, DevicesUnreachableRefusesBadCommandLines) {
  Init();
  const std::string bad_idle =
      "': expected a whole number and a unit s, m, h or d (e.g. 30m, 6h, "
      "7d), at most 36500d";
  for (const std::string idle :
       {"30", "m", "0m", "-5m", "5w", "1.5h", "36501d", "99999999999d", ""}) {
    SCOPED_TRACE(idle);
    EXPECT_REFUSED((Args{"devices", "--unreachable", "--idle", idle}), "", 1,
                   "invalid --idle '" + idle + bad_idle);
  }
  EXPECT_REFUSED((Args{"devices"}), "", 2,
                 "devices: --unreachable is required (every device: device "
                 "list)");
  EXPECT_REFUSED((Args{"devices", "--idle", "6h"}), "", 2,
                 "devices: --unreachable is required (every device: device "
                 "list)");
  EXPECT_REFUSED((Args{"devices", "--unreachable", "--idle"}), "", 2,
                 "devices: --idle needs a value");
  EXPECT_REFUSED((Args{"devices", "--unreachable", "sensor-001"}), "", 2,
                 "devices: unexpected argument 'sensor-001'");
  EXPECT_REFUSED((Args{"devices", "--unreachable", "--all"}), "", 2,
                 "devices: unknown option '--all' (try --help)");
}

// devices --unreachable judges the fleet: a device connected to one node
// with a subscription and to another without is reachable; one connected
// nowhere with a subscription is a zombie however many nodes it is on.
TEST_F(AdminTest, DevicesUnreachableSumsTheNodes) {
  Init();
  Peek(db_).Exec(
      "INSERT INTO devices (device_id) VALUES ('split'), ('zombie');"
      "INSERT INTO device_stats (device_id, node, last_connect, sessions, "
      "subscribed) VALUES "
      "('split', 'node-a', '2020-01-01T00:00:00.000Z', 1, 0), "
      "('split', 'node-b', '2020-01-01T00:00:00.000Z', 1, 1), "
      "('zombie', 'node-a', '2020-01-02T00:00:00.000Z', 1, 0), "
      "('zombie', 'node-b', '2020-01-03T00:00:00.000Z', 2, 0)");
  Outcome r = Admin({"devices", "--unreachable", "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  using J = nlohmann::json;
  EXPECT_EQ(UnreachableById(r.out),
            (std::map<std::string, J>{{"zombie",
                                       {"connected_not_subscribed", 3, 0,
                                        "2020-01-03T00:00:00.000Z"}}}));
}

}  // namespace
}  // namespace homepot::admin
