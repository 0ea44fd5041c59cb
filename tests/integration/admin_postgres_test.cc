// homepot-admin on PostgreSQL (a throwaway test::PostgresCluster): init,
// every command with its effect read back from the database, the same
// command sequence on a SQLite file giving the same output and the same
// table contents, --db against $HOMEPOT_DB in the real binary, and the
// password of a URL never printed.
#include <gtest/gtest.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "admin/admin.h"
#include "admin/validate.h"
#include "credentials.h"
#include "database.h"
#include "harness.h"
#include "pg.h"
#include "postgres.h"
#include "rfc3339.h"
#include "testing.h"

namespace homepot {
namespace integration {
namespace {

using admin::AdminEnv;
using admin::RunAdmin;

struct Outcome {
  int code;
  std::string out;
  std::string err;
};

// The tool's clock: the fixed rows below are about an hour before it. Stamps
// of that day are the test's own; any other is a time the database took.
constexpr const char* kNow = "2030-01-01T12:00:00.000Z";
constexpr const char* kTestDay = "2030-01-01";

// `rows` of the single statement `sql` as "a|b|c" lines (NULL as "NULL"),
// read through the database layer from the registry at `location`.
std::vector<std::string> Rows(const std::string& location,
                              const std::string& sql, int columns) {
  std::vector<std::string> rows;
  Result<Database> db =
      Database::OpenLocation(location, Database::Mode::kReadOnly);
  EXPECT_TRUE(db.ok()) << db.status().message();
  if (!db.ok()) return rows;
  Result<Statement> stmt = db->Prepare(sql);
  EXPECT_TRUE(stmt.ok()) << stmt.status().message() << "\n" << sql;
  if (!stmt.ok()) return rows;
  for (;;) {
    Result<bool> more = stmt->Step();
    EXPECT_TRUE(more.ok()) << more.status().message() << "\n" << sql;
    if (!more.ok() || !*more) break;
    std::string row;
    for (int i = 0; i < columns; ++i) {
      if (i > 0) row += "|";
      row += stmt->IsNull(i) ? "NULL" : stmt->Text(i);
    }
    rows.push_back(row);
  }
  return rows;
}

std::string One(const std::string& location, const std::string& sql) {
  std::vector<std::string> rows = Rows(location, sql, 1);
  return rows.size() == 1 ? rows[0]
                          : "<" + std::to_string(rows.size()) + " rows>";
}

testing::AssertionResult Exec(const std::string& location,
                              const std::string& sql) {
  Result<Database> db =
      Database::OpenLocation(location, Database::Mode::kReadWrite);
  if (!db.ok()) return testing::AssertionFailure() << db.status().message();
  if (Status s = db->Exec(sql); !s.ok()) {
    return testing::AssertionFailure() << s.message() << "\n" << sql;
  }
  return testing::AssertionSuccess();
}

// What the registry holds, table by table, in a form both backends print
// alike: hashes as set/none (their salts are random), whether updated_at
// follows created_at, the keys of the change feed.
std::string Snapshot(const std::string& location) {
  struct Query {
    const char* table;
    const char* sql;
    int columns;
  };
  static const Query kQueries[] = {
      {"device_types",
       "SELECT name, max_payload_bytes FROM device_types ORDER BY name", 2},
      {"devices",
       "SELECT device_id, device_type, CASE WHEN password_hash IS NULL "
       "THEN 'none' ELSE 'set' END, device_token, platform, metadata, "
       "enabled, CASE WHEN created_at <= updated_at THEN 'ok' ELSE 'bad' END "
       "FROM devices ORDER BY device_id",
       8},
      {"acl_rules",
       "SELECT coalesce(device_id, '(all)'), topic_filter, access "
       "FROM acl_rules ORDER BY 1, 2, 3",
       3},
      {"device_stats",
       "SELECT device_id, node, published, delivered, rejected, expired, "
       "acked, sessions, subscribed, last_connect, last_publish, "
       "last_delivery FROM device_stats ORDER BY device_id, node",
       12},
      {"notification_log",
       "SELECT id, message_id, publisher, topic, target_device, received_at, "
       "outcome, latency_ms, node FROM notification_log ORDER BY id",
       9},
      // The keys the change feed named (SQLite's updated_at trigger takes
      // a generation of its own, PostgreSQL's does not).
      {"registry_changes",
       "SELECT DISTINCT kind, name FROM registry_changes ORDER BY kind, name",
       2},
  };
  std::string all;
  for (const Query& q : kQueries) {
    all += std::string("[") + q.table + "]\n";
    for (const std::string& row : Rows(location, q.sql, q.columns)) {
      all += row + "\n";
    }
  }
  return all;
}

// `text` with the registry's name (as the tool quotes it) replaced by <db>
// and every stamp not of kTestDay (a time the database or clock took) by
// <now>.
std::string Normalized(std::string text, const std::string& name) {
  const std::string quoted = admin::Quote(name);
  for (size_t at = text.find(quoted); at != std::string::npos;
       at = text.find(quoted, at)) {
    text.replace(at, quoted.size(), "'<db>'");
  }
  static const std::regex kStamp(
      std::string("(?!") + kTestDay +
      ")\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d\\.\\d{3}Z");
  return std::regex_replace(text, kStamp, "<now>");
}

class AdminPostgresTest : public testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(tmp_.ok());
    ASSERT_TRUE(cluster_.Start());
    ASSERT_TRUE(cluster_.CreateDatabase("registry"));
    pg_ = cluster_.Url("registry");
    sqlite_ = tmp_.Path("homepot.db");
    env_.schema_sql = test::SchemaSql();
    env_.postgres_schema_sql = test::PostgresSchemaSql();
    env_.wall_ms = [] { return ParseRfc3339Ms(kNow).value_or(0); };
  }

  // homepot-admin --db <location> args..., with `input` on stdin.
  Outcome Admin(const std::string& location, std::vector<std::string> args,
                const std::string& input = "") {
    args.insert(args.begin(), {"--db", location});
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

  // The real binary, with $HOMEPOT_DB set to `homepot_db` (unset when
  // empty); stdout and stderr together in `output`.
  int Binary(const std::string& homepot_db,
             const std::vector<std::string>& args, const std::string& input,
             std::string* output) {
    std::vector<std::string> argv = {"/usr/bin/env", "-u", "HOMEPOT_DB"};
    if (!homepot_db.empty()) argv.push_back("HOMEPOT_DB=" + homepot_db);
    argv.push_back(HOMEPOT_ADMIN_PATH);
    argv.insert(argv.end(), args.begin(), args.end());
    return RunCommand(argv, input, output);
  }

  test::TempDir tmp_{"homepot-admin-pg"};
  test::PostgresCluster cluster_;
  std::string pg_;
  std::string sqlite_;
  AdminEnv env_;
};

// ---------------------------------------------------------------- init ----

TEST_F(AdminPostgresTest, InitAppliesTheSchemaOnceAndRefusesANewerVersion) {
  const std::string name = pg::MaskedUrl(pg_);
  Outcome r = Admin(pg_, {"init"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out,
            "created registry " + admin::Quote(name) + " (schema version 4)\n");
  EXPECT_EQ(r.err, "");
  EXPECT_EQ(One(pg_, "SELECT schema_version FROM registry_meta"), "4");
  EXPECT_EQ(One(pg_, "SELECT count(*) FROM device_types"), "7");
  const std::string before = Snapshot(pg_);

  r = Admin(pg_, {"init"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "registry " + admin::Quote(name) +
                       " is up to date (schema version 4)\n");
  EXPECT_EQ(Snapshot(pg_), before);

  ASSERT_TRUE(Exec(pg_, "UPDATE registry_meta SET schema_version = 5"));
  const std::string newer =
      "homepot-admin: registry " + admin::Quote(name) +
      " has schema version 5, newer than this homepot-admin supports (4); "
      "use a newer homepot-admin\n";
  r = Admin(pg_, {"init"});
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.err, newer);
  r = Admin(pg_, {"device", "list"});
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.err, newer);
  EXPECT_EQ(r.out, "");
}

TEST_F(AdminPostgresTest, TwoInitsAtOnceBothSucceed) {
  Outcome first{-1, "", ""};
  Outcome second{-1, "", ""};
  std::thread a([&] { first = Admin(pg_, {"init"}); });
  std::thread b([&] { second = Admin(pg_, {"init"}); });
  a.join();
  b.join();
  EXPECT_EQ(first.code, 0) << first.err;
  EXPECT_EQ(second.code, 0) << second.err;
  EXPECT_EQ(One(pg_, "SELECT schema_version FROM registry_meta"), "4");
  EXPECT_EQ(One(pg_, "SELECT count(*) FROM device_types"), "7");
}

// A version-3 registry is brought to version 4 in place, every row kept.
TEST_F(AdminPostgresTest, InitUpgradesAnOlderRegistryInPlace) {
  const std::string name = pg::MaskedUrl(pg_);
  ASSERT_TRUE(Exec(pg_, test::PostgresSchemaV3Sql()));
  ASSERT_EQ(One(pg_, "SELECT schema_version FROM registry_meta"), "3");
  ASSERT_TRUE(Exec(pg_,
                   "INSERT INTO devices (device_id) VALUES ('sensor-001');"
                   "INSERT INTO device_stats (device_id, node, published) "
                   "VALUES ('sensor-001', 'n1', 5);"));
  const std::string before = Snapshot(pg_);
  ASSERT_EQ(One(pg_, "SELECT (to_regclass('write_marks') IS NULL)::int"), "1");

  Outcome r = Admin(pg_, {"init"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "migrated registry " + admin::Quote(name) +
                       " from schema version 3 to 4\n");
  EXPECT_EQ(One(pg_, "SELECT schema_version FROM registry_meta"), "4");
  EXPECT_EQ(One(pg_, "SELECT count(*) FROM write_marks"), "0");
  EXPECT_EQ(Snapshot(pg_), before);

  // At its version, init changes nothing.
  r = Admin(pg_, {"init"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "registry " + admin::Quote(name) +
                       " is up to date (schema version 4)\n");
  EXPECT_EQ(Snapshot(pg_), before);
}

TEST_F(AdminPostgresTest, CommandsRefuseADatabaseWithoutTheRegistry) {
  const std::string name = admin::Quote(pg::MaskedUrl(pg_));
  Outcome r = Admin(pg_, {"device", "list"});
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.err, "homepot-admin: registry " + name +
                       " is not initialised; run 'homepot-admin init'\n");

  // Another application's tables are left alone; a table of the registry's
  // without a schema version is refused.
  ASSERT_TRUE(Exec(pg_, "CREATE TABLE other_app (x INTEGER)"));
  ASSERT_TRUE(Exec(pg_, "CREATE TABLE devices (x INTEGER)"));
  r = Admin(pg_, {"init"});
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.err, "homepot-admin: " + name +
                       " is not a HOMEPOT registry: it has registry tables "
                       "but no schema version; refusing to change it\n");
  EXPECT_EQ(One(pg_,
                "SELECT CASE WHEN to_regclass('registry_meta') IS NULL "
                "THEN 'absent' ELSE 'present' END"),
            "absent");
  ASSERT_TRUE(Exec(pg_, "DROP TABLE devices"));
  r = Admin(pg_, {"init"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(One(pg_, "SELECT count(*) FROM other_app"), "0");
}

// ------------------------------------------------------- every command ----

// One step of the sequence: a command (or, with `sql`, rows written behind
// the tool's back) and a query whose result shows its effect.
struct Step {
  std::vector<std::string> args;
  int code = 0;          // the exit status expected
  std::string input;     // stdin
  std::string sql;       // run instead of a command when set
  std::string check;     // a query of one column
  std::string expected;  // its rows, joined by ","
  std::string password;  // when set, `check` yields a hash of it

  Step& Input(std::string text) {
    input = std::move(text);
    return *this;
  }
  Step& Check(std::string query, std::string rows) {
    check = std::move(query);
    expected = std::move(rows);
    return *this;
  }
};

Step Run(std::vector<std::string> args, int code = 0) {
  Step step;
  step.args = std::move(args);
  step.code = code;
  return step;
}

// The rows of the statistics and the delivery log the commands read: node n1
// and n2, times an hour before kNow.
constexpr const char* kActivityRows = R"sql(
INSERT INTO device_stats (device_id, node, published, delivered, rejected,
    last_connect, last_publish, last_delivery, expired, acked, sessions,
    subscribed)
  VALUES ('sensor-001', 'n1', 5, 4, 1, '2030-01-01T10:59:00.000Z',
          '2030-01-01T11:00:00.000Z', NULL, 0, 3, 1, 1),
         ('sensor-001', 'n2', 2, 2, 0, '2030-01-01T11:30:00.000Z', NULL,
          '2030-01-01T11:31:00.000Z', 1, 2, 0, 0),
         ('gw-1', 'n1', 0, 0, 0, '2029-12-30T08:00:00.000Z', NULL, NULL, 0, 0,
          1, 0);
INSERT INTO notification_log (message_id, publisher, topic, target_device,
    received_at, routed, queued, expires_at, acked_at, latency_ms, status,
    outcome, reason, node)
  VALUES ('m1', 'homepot', 'devices/sensor-001/notifications', 'sensor-001',
          '2030-01-01T10:00:00.000Z', 1, 0, NULL, '2030-01-01T10:00:00.250Z',
          250, 'ok', 'acked', NULL, 'n1'),
         ('m2', 'homepot', 'devices/sensor-001/notifications', 'sensor-001',
          '2030-01-01T11:10:00.000Z', 0, 1, '2030-01-01T12:10:00.000Z', NULL,
          NULL, NULL, 'queued', NULL, 'n2'),
         (NULL, 'homepot', 'site/gw-1/push', 'gw-1',
          '2030-01-01T11:20:00.000Z', 0, 0, NULL, NULL, NULL, NULL,
          'rejected', 'payload too large', 'n1'),
         ('m3', 'homepot', 'site/gw-1/push', 'gw-1',
          '2030-01-01T11:50:00.000Z', 1, 0, NULL, NULL, NULL, NULL, 'routed',
          NULL, 'n2');
)sql";

std::vector<Step> EveryCommand(const std::string& passwd_file,
                               const std::string& acl_file) {
  const std::string devices = "SELECT count(*) FROM devices";
  const std::string enabled_of_gw =
      "SELECT enabled FROM devices WHERE device_id = 'gw-1'";
  const std::string rule_count = "SELECT count(*) FROM acl_rules";
  const std::string rules =
      "SELECT coalesce(device_id, '(all)') || ' ' || access || ' ' || "
      "topic_filter FROM acl_rules ORDER BY 1";
  Step passwd = Run({"device", "passwd", "sensor-001"}).Input("pw3\n");
  passwd.check =
      "SELECT password_hash FROM devices WHERE device_id = 'sensor-001'";
  passwd.password = "pw3";
  Step activity;
  activity.sql = kActivityRows;
  activity.Check("SELECT count(*) FROM notification_log", "4");
  return {
      Run({"init"}).Check("SELECT count(*) FROM device_types", "7"),
      Run({"init"}).Check(devices, "0"),
      Run({"device", "add", "sensor-001", "--type", "iot_sensor"})
          .Input("pw1\n")
          .Check("SELECT device_type || ' ' || device_token FROM devices",
                 "iot_sensor devices/sensor-001/notifications"),
      Run({"device", "add", "gw-1", "--type", "gateway", "--token",
           "site/gw-1/push", "--metadata", R"({"site": "north", "floor": 2})"})
          .Input("pw2\n")
          .Check("SELECT metadata FROM devices WHERE device_id = 'gw-1'",
                 R"({"site":"north","floor":2})"),
      Run({"device", "add", "sensor-001", "--type", "iot_sensor"}, 1)
          .Input("pw\n")
          .Check(devices, "2"),
      Run({"device", "add", "x", "--type", "toaster"}, 1)
          .Input("pw\n")
          .Check(devices, "2"),
      passwd,
      Run({"device", "passwd", "ghost"}, 1).Input("pw\n").Check(devices, "2"),
      Run({"device", "disable", "gw-1"}).Check(enabled_of_gw, "0"),
      Run({"device", "disable", "gw-1"}).Check(enabled_of_gw, "0"),
      Run({"device", "enable", "gw-1"}).Check(enabled_of_gw, "1"),
      Run({"device", "list"}),
      Run({"device", "list", "--json"}),
      Run({"acl", "grant", "sensor-001", "read", "devices/sensor-001/#"})
          .Check(rules, "sensor-001 read devices/sensor-001/#"),
      Run({"acl", "grant", "sensor-001", "read", "devices/sensor-001/#"})
          .Check(rule_count, "1"),
      Run({"acl", "grant", "--all", "write", "public/#"})
          .Check(rules,
                 "(all) write public/#,sensor-001 read devices/sensor-001/#"),
      // A second identical global rule is not added (NULL device ids).
      Run({"acl", "grant", "--all", "write", "public/#"})
          .Check(rule_count, "2"),
      Run({"acl", "grant", "--all", "deny", "public/#"})
          .Check("SELECT count(*) FROM acl_rules WHERE device_id IS NULL", "2"),
      Run({"acl", "list"}),
      Run({"acl", "list", "sensor-001", "--json"}),
      Run({"acl", "revoke", "--all", "public/#"})
          .Check(rules, "sensor-001 read devices/sensor-001/#"),
      Run({"acl", "revoke", "--all", "public/#"}, 1).Check(rule_count, "1"),
      Run({"acl", "revoke", "sensor-001", "nothing/here"}, 1)
          .Check(rule_count, "1"),
      Run({"import-passwd", passwd_file})
          .Check("SELECT device_id || ' ' || device_type FROM devices "
                 "ORDER BY 1",
                 "gateway-01 unknown,gw-1 gateway,homepot unknown,legacy "
                 "unknown,sensor-001 iot_sensor"),
      Run({"import-acl", acl_file})
          .Check(rules,
                 "(all) read devices/%u/notifications,homepot write "
                 "devices/+/notifications,sensor-001 deny "
                 "devices/sensor-001/secret,sensor-001 read "
                 "devices/sensor-001/#"),
      Run({"import-acl", acl_file}).Check(rule_count, "4"),
      activity,
      Run({"stats"}),
      Run({"stats", "--json"}),
      Run({"stats", "sensor-001"}),
      Run({"stats", "homepot", "--json"}),
      Run({"stats", "--by-node"}),
      Run({"stats", "sensor-001", "--node", "n2", "--json"}),
      Run({"stats", "ghost"}, 1),
      Run({"log"}),
      Run({"log", "--json"}),
      Run({"log", "--device", "gw-1", "--json"}),
      Run({"log", "--message", "m2"}),
      Run({"log", "--since", "2030-01-01T11:00:00Z", "--limit", "2"}),
      Run({"log", "--since", "1h", "--node", "n2"}),
      Run({"delivery"}),
      Run({"delivery", "--json"}),
      Run({"delivery", "--node", "n1", "--since", "2030-01-01"}),
      Run({"devices", "--unreachable"}),
      Run({"devices", "--unreachable", "--idle", "45m", "--json"}),
      Run({"device", "remove", "sensor-001"})
          .Check("SELECT count(*) FROM acl_rules "
                 "WHERE device_id = 'sensor-001'",
                 "0"),
      Run({"device", "remove", "sensor-001"}, 1)
          .Check("SELECT count(*) FROM device_stats "
                 "WHERE device_id = 'sensor-001'",
                 "0"),
      Run({"device", "list"}),
      Run({"acl", "list", "--json"}),
  };
}

TEST_F(AdminPostgresTest, EveryCommandDoesOnPostgresWhatItDoesOnSqlite) {
  const std::string passwd_file = tmp_.Path("passwd");
  ASSERT_TRUE(test::WriteFile(
      passwd_file,
      test::ReadFile(std::string(HOMEPOT_FIXTURES) + "/mosquitto_passwd.txt")));
  const std::string acl_file = tmp_.Path("acl");
  ASSERT_TRUE(test::WriteFile(acl_file,
                              "topic read public/#\n"
                              "pattern read devices/%u/notifications\n"
                              "user homepot\n"
                              "topic write devices/+/notifications\n"
                              "user sensor-001\n"
                              "topic deny devices/sensor-001/secret\n"));

  int listed = 0;
  for (const Step& step : EveryCommand(passwd_file, acl_file)) {
    std::string what = step.sql.empty() ? "" : "(rows written)";
    for (const std::string& word : step.args) what += " " + word;
    SCOPED_TRACE(what);
    Outcome on_sqlite{0, "", ""};
    Outcome on_pg{0, "", ""};
    if (!step.sql.empty()) {
      ASSERT_TRUE(Exec(sqlite_, step.sql));
      ASSERT_TRUE(Exec(pg_, step.sql));
    } else {
      on_sqlite = Admin(sqlite_, step.args, step.input);
      on_pg = Admin(pg_, step.args, step.input);
    }
    EXPECT_EQ(on_pg.code, step.code) << on_pg.err;
    EXPECT_EQ(on_sqlite.code, step.code) << on_sqlite.err;
    EXPECT_EQ(Normalized(on_pg.out, pg::MaskedUrl(pg_)),
              Normalized(on_sqlite.out, sqlite_));
    EXPECT_EQ(Normalized(on_pg.err, pg::MaskedUrl(pg_)),
              Normalized(on_sqlite.err, sqlite_));
    // A refusal is one line; listings have content.
    if (step.code != 0) {
      EXPECT_EQ(std::count(on_pg.err.begin(), on_pg.err.end(), '\n'), 1)
          << on_pg.err;
    } else if (step.sql.empty() && step.args[0] != "init") {
      EXPECT_FALSE(on_pg.out.empty());
      ++listed;
    }
    if (!step.password.empty()) {
      Result<PasswordHash> hash = ParsePasswordHash(One(pg_, step.check));
      ASSERT_TRUE(hash.ok()) << hash.status().message();
      EXPECT_TRUE(VerifyPassword(*hash, step.password));
    } else if (!step.check.empty()) {
      std::string joined;
      for (const std::string& row : Rows(pg_, step.check, 1)) {
        joined += (joined.empty() ? "" : ",") + row;
      }
      EXPECT_EQ(joined, step.expected) << step.check;
    }
    EXPECT_EQ(Snapshot(pg_), Snapshot(sqlite_));
  }
  EXPECT_GT(listed, 30);
  // Every change took a generation and notified.
  EXPECT_EQ(One(pg_,
                "SELECT CASE WHEN generation = (SELECT max(generation) "
                "FROM registry_changes) THEN 'ok' ELSE 'bad' END "
                "FROM registry_meta"),
            "ok");
}

// The listings carry what the rows say (parsed, not compared as text).
TEST_F(AdminPostgresTest, ListingsShowTheRows) {
  ASSERT_EQ(Admin(pg_, {"init"}).code, 0);
  ASSERT_EQ(Admin(pg_, {"device", "add", "sensor-001", "--type", "iot_sensor"},
                  "pw\n")
                .code,
            0);
  ASSERT_EQ(
      Admin(pg_, {"device", "add", "gw-1", "--type", "gateway"}, "pw\n").code,
      0);
  ASSERT_TRUE(Exec(pg_, kActivityRows));

  Outcome r = Admin(pg_, {"device", "list", "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  nlohmann::json list = nlohmann::json::parse(r.out);
  ASSERT_EQ(list.size(), 2u);
  EXPECT_EQ(list[0]["device_id"], "gw-1");
  EXPECT_EQ(list[1]["has_password"], true);
  EXPECT_EQ(list[1]["enabled"], true);
  EXPECT_EQ(list[1]["created_at"], One(pg_,
                                       "SELECT created_at FROM devices "
                                       "WHERE device_id = 'sensor-001'"));

  r = Admin(pg_, {"stats", "sensor-001", "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  nlohmann::json stats = nlohmann::json::parse(r.out);
  ASSERT_EQ(stats.size(), 1u);
  EXPECT_EQ(stats[0]["published"], 7);
  EXPECT_EQ(stats[0]["acked"], 5);
  EXPECT_EQ(stats[0]["sessions"], 1);
  EXPECT_EQ(stats[0]["last_connect"], "2030-01-01T11:30:00.000Z");

  r = Admin(pg_, {"devices", "--unreachable", "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  nlohmann::json unreachable = nlohmann::json::parse(r.out);
  ASSERT_EQ(unreachable.size(), 1u);
  EXPECT_EQ(unreachable[0]["device_id"], "gw-1");
  EXPECT_EQ(unreachable[0]["state"], "connected_not_subscribed");

  r = Admin(pg_, {"log", "--device", "sensor-001", "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  nlohmann::json log = nlohmann::json::parse(r.out);
  ASSERT_EQ(log.size(), 2u);
  EXPECT_EQ(log[0]["message_id"], "m2");
  EXPECT_EQ(log[1]["latency_ms"], 250);

  r = Admin(pg_, {"delivery", "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  nlohmann::json delivery = nlohmann::json::parse(r.out);
  EXPECT_EQ(delivery["total"]["notifications"], 3);
  EXPECT_EQ(delivery["total"]["rejected"], 1);
  EXPECT_EQ(delivery["total"]["p50_ack_ms"], 250);
}

// Checks made inside a transaction hold at its commit: a grant waits for
// another transaction that is adding the same global rule (which a UNIQUE
// constraint does not catch: NULL device ids are distinct), then finds it.
TEST_F(AdminPostgresTest, AGrantWaitsForAConcurrentIdenticalGrant) {
  ASSERT_EQ(Admin(pg_, {"init"}).code, 0);
  Result<Database> other =
      Database::OpenLocation(pg_, Database::Mode::kReadWrite);
  ASSERT_TRUE(other.ok()) << other.status().message();
  ASSERT_TRUE(other->Exec("BEGIN").ok());
  ASSERT_TRUE(other
                  ->Exec("INSERT INTO acl_rules (device_id, topic_filter, "
                         "access) VALUES (NULL, 'public/#', 'read')")
                  .ok());
  Outcome grant{-1, "", ""};
  std::thread tool([&] {
    grant = Admin(pg_, {"acl", "grant", "--all", "read", "public/#"});
  });
  const bool waited = Eventually(
      [&] {
        return One(pg_,
                   "SELECT count(*) FROM pg_locks WHERE NOT granted "
                   "AND relation = 'acl_rules'::regclass") == "1";
      },
      10000);
  EXPECT_TRUE(waited);
  ASSERT_TRUE(other->Exec("COMMIT").ok());
  tool.join();
  EXPECT_EQ(grant.code, 0) << grant.err;
  EXPECT_EQ(grant.out, "all devices already have read on 'public/#'\n");
  EXPECT_EQ(One(pg_, "SELECT count(*) FROM acl_rules"), "1");
}

// ------------------------------------------- --db, $HOMEPOT_DB, passwords ----

TEST_F(AdminPostgresTest, TheBinaryTakesDbOverHomepotDb) {
  std::string output;
  // The embedded schema/postgresql.sql, through $HOMEPOT_DB.
  ASSERT_EQ(Binary(pg_, {"init"}, "", &output), 0) << output;
  EXPECT_EQ(output, "created registry " + admin::Quote(pg::MaskedUrl(pg_)) +
                        " (schema version 4)\n");
  EXPECT_EQ(One(pg_, "SELECT schema_version FROM registry_meta"), "4");
  ASSERT_EQ(Binary(pg_, {"device", "add", "on-pg", "--type", "backend"}, "pw\n",
                   &output),
            0)
      << output;
  // --db wins over $HOMEPOT_DB.
  ASSERT_EQ(Binary(pg_, {"--db", sqlite_, "init"}, "", &output), 0) << output;
  ASSERT_EQ(Binary(pg_,
                   {"--db", sqlite_, "device", "add", "on-sqlite", "--type",
                    "backend"},
                   "pw\n", &output),
            0)
      << output;
  EXPECT_EQ(Rows(pg_, "SELECT device_id FROM devices", 1),
            std::vector<std::string>{"on-pg"});
  EXPECT_EQ(Rows(sqlite_, "SELECT device_id FROM devices", 1),
            std::vector<std::string>{"on-sqlite"});

  const auto listed = [&](const std::string& homepot_db,
                          std::vector<std::string> args) {
    args.insert(args.end(), {"device", "list", "--json"});
    std::string out;
    EXPECT_EQ(Binary(homepot_db, args, "", &out), 0) << out;
    std::vector<std::string> ids;
    if (!nlohmann::json::accept(out)) return ids;
    for (const auto& item : nlohmann::json::parse(out)) {
      ids.push_back(item.at("device_id").get<std::string>());
    }
    return ids;
  };
  const std::vector<std::string> pg_ids = {"on-pg"};
  const std::vector<std::string> sqlite_ids = {"on-sqlite"};
  EXPECT_EQ(listed(pg_, {}), pg_ids);
  EXPECT_EQ(listed(pg_, {"--db", sqlite_}), sqlite_ids);
  EXPECT_EQ(listed(sqlite_, {}), sqlite_ids);
  EXPECT_EQ(listed(sqlite_, {"--db", pg_}), pg_ids);
  EXPECT_EQ(listed(sqlite_, {"--db=" + pg_}), pg_ids);
  EXPECT_EQ(listed("", {"--db", pg_}), pg_ids);

  ASSERT_EQ(Binary("", {"device", "list"}, "", &output), 2);
  EXPECT_EQ(output,
            "homepot-admin: no registry given: use --db PATH|URL or set "
            "HOMEPOT_DB\n");
}

TEST_F(AdminPostgresTest, ErrorsNameTheUrlWithThePasswordMasked) {
  const std::string password = cluster_.password();
  ASSERT_GE(password.size(), 8u);
  // The password in the URL works, and is never printed.
  const std::string with_password = cluster_.UrlWithPassword("registry");
  ASSERT_NE(with_password.find(password), std::string::npos);
  const std::string masked = pg::MaskedUrl(with_password);
  ASSERT_EQ(masked.find(password), std::string::npos);
  ASSERT_NE(masked.find("***"), std::string::npos);
  Outcome r = Admin(with_password, {"init"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "created registry " + admin::Quote(masked) +
                       " (schema version 4)\n");

  // A wrong password, a database that does not exist, a port nobody
  // listens on: one line naming the URL, password masked.
  std::string wrong = with_password;
  wrong.replace(wrong.find(password), password.size(), "Wr0ngPassw0rd");
  std::string no_db = with_password;
  no_db.replace(no_db.rfind("/registry"), 9, "/nosuchdb");
  const std::string no_server = "postgresql://homepot:" + password +
                                "@127.0.0.1:1/registry?connect_timeout=5";
  for (const std::string& url : {wrong, no_db, no_server}) {
    SCOPED_TRACE(pg::MaskedUrl(url));
    for (const std::vector<std::string>& args :
         {std::vector<std::string>{"init"},
          std::vector<std::string>{"device", "list"},
          std::vector<std::string>{"device", "add", "d", "--type",
                                   "backend"}}) {
      r = Admin(url, args, "pw\n");
      EXPECT_EQ(r.code, 1);
      EXPECT_EQ(r.out, "");
      EXPECT_EQ(r.err.rfind("homepot-admin: cannot connect to the registry: " +
                                pg::MaskedUrl(url) + ": ",
                            0),
                0u)
          << r.err;
      EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
      EXPECT_EQ(r.err.find(password), std::string::npos) << r.err;
      EXPECT_EQ(r.err.find("Wr0ngPassw0rd"), std::string::npos) << r.err;
    }
  }
  // The real binary and its environment likewise.
  std::string output;
  EXPECT_EQ(Binary(wrong, {"device", "list"}, "", &output), 1);
  EXPECT_NE(output.find(pg::MaskedUrl(wrong)), std::string::npos) << output;
  EXPECT_EQ(output.find("Wr0ngPassw0rd"), std::string::npos) << output;
  EXPECT_EQ(output.find(password), std::string::npos) << output;
}

}  // namespace
}  // namespace integration
}  // namespace homepot
