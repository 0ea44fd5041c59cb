#include "registry.h"

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <algorithm>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "credentials.h"
#include "database.h"
#include "testing.h"

namespace homepot {
namespace {

using test::EncodedHash;

// An in-memory registry database.
class RegistryTest : public ::testing::Test {
 protected:
  void SetUp() override { OpenMemory(); }
  // A new, empty in-memory database in place of the one open.
  void OpenMemory() {
    database_ = test::OpenMemoryDatabase();
    ASSERT_TRUE(database_.has_value());
    db_ = database_->handle();
  }

  void ApplySchema() { Exec(test::SchemaSql()); }

  // Runs `sql`, failing the test on error.
  void Exec(const std::string& sql) { EXPECT_TRUE(test::ExecSql(db_, sql)); }

  // Runs `sql`, returning the error message ("" on success).
  std::string TryExec(const std::string& sql) {
    testing::AssertionResult result = test::ExecSql(db_, sql);
    return result ? "" : result.message();
  }

  int64_t Generation() {
    Result<int64_t> g = ReadGeneration(&*database_);
    EXPECT_TRUE(g.ok()) << g.status().message();
    return g.ok() ? *g : -1;
  }

  std::shared_ptr<const Snapshot> Load() {
    warnings_.clear();
    auto r = LoadSnapshot(&*database_, &warnings_);
    EXPECT_TRUE(r.ok()) << r.status().message();
    return r.ok() ? *r : nullptr;
  }

  bool WarnedAbout(const std::string& text) const {
    return std::any_of(warnings_.begin(), warnings_.end(),
                       [&](const std::string& w) {
                         return w.find(text) != std::string::npos;
                       });
  }

  std::optional<Database> database_;
  sqlite3* db_ = nullptr;  // database_'s handle
  std::vector<std::string> warnings_;
};

TEST_F(RegistryTest, EmptyRegistryLoads) {
  ApplySchema();
  ASSERT_TRUE(CheckSchema(&*database_).ok());
  auto s = Load();
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->device_count(), 0u);
  EXPECT_TRUE(s->global_rules().empty());
  EXPECT_EQ(s->rule_count(), 0u);
  EXPECT_EQ(s->generation(), 1);
  EXPECT_EQ(s->unknown_type_max_payload(), 10240u);
  EXPECT_EQ(s->Find("anyone"), nullptr);
  EXPECT_TRUE(warnings_.empty());
}

TEST_F(RegistryTest, SchemaIsIdempotent) {
  ApplySchema();
  Exec("INSERT INTO devices (device_id) VALUES ('sensor-001')");
  ApplySchema();
  auto s = Load();
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->device_count(), 1u);
}

TEST_F(RegistryTest, SeededDeviceTypes) {
  ApplySchema();
  Exec(
      "INSERT INTO devices (device_id, device_type) VALUES "
      "('s', 'iot_sensor'), ('i', 'industrial_controller'), ('g', 'gateway'), "
      "('p', 'pos_terminal'), ('b', 'backend'), ('u', 'unknown')");
  Exec("INSERT INTO devices (device_id) VALUES ('d')");  // default type
  auto s = Load();
  ASSERT_NE(s, nullptr);
  const std::vector<std::pair<std::string, uint32_t>> want = {
      {"s", 10240},  {"i", 102400}, {"g", 102400}, {"p", 102400},
      {"b", 262144}, {"u", 10240},  {"d", 10240},
  };
  for (const auto& [id, limit] : want) {
    const Device* d = s->Find(id);
    ASSERT_NE(d, nullptr) << id;
    EXPECT_EQ(d->max_payload, limit) << id;
  }
  EXPECT_EQ(s->Find("d")->type, "unknown");
  EXPECT_EQ(s->Find("b")->type, "backend");
}

TEST_F(RegistryTest, DevicesAreLoaded) {
  ApplySchema();
  Exec(
      "INSERT INTO devices (device_id, device_type, password_hash) VALUES "
      "('sensor-001', 'iot_sensor', '" +
      EncodedHash("s3cret") + "'), ('homepot', 'backend', NULL)");
  auto s = Load();
  ASSERT_NE(s, nullptr);
  ASSERT_EQ(s->device_count(), 2u);

  const Device* sensor = s->Find("sensor-001");
  ASSERT_NE(sensor, nullptr);
  EXPECT_EQ(sensor->id, "sensor-001");
  EXPECT_EQ(sensor->type, "iot_sensor");
  EXPECT_EQ(sensor->max_payload, 10240u);
  EXPECT_TRUE(sensor->enabled);
  EXPECT_TRUE(sensor->has_password);
  EXPECT_TRUE(VerifyPassword(sensor->password, "s3cret"));
  EXPECT_FALSE(VerifyPassword(sensor->password, "wrong"));

  const Device* backend = s->Find("homepot");
  ASSERT_NE(backend, nullptr);
  EXPECT_EQ(backend->max_payload, 262144u);
  EXPECT_FALSE(backend->has_password);

  EXPECT_EQ(s->Find("sensor-002"), nullptr);
  EXPECT_EQ(s->Find("sensor-00"), nullptr);
  EXPECT_EQ(s->Find(""), nullptr);
  EXPECT_TRUE(warnings_.empty());
}

TEST_F(RegistryTest, CustomTypeLimitAndMissingTypeFallsBackToUnknown) {
  ApplySchema();
  Exec("INSERT INTO device_types VALUES ('camera', 1048576)");
  Exec(
      "UPDATE device_types SET max_payload_bytes = 5000 WHERE name = "
      "'unknown'");
  // Foreign keys are off by default, so a type without a row can exist.
  Exec(
      "INSERT INTO devices (device_id, device_type) VALUES ('cam', "
      "'camera'), ('odd', 'no_such_type')");
  auto s = Load();
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->Find("cam")->max_payload, 1048576u);
  EXPECT_EQ(s->Find("odd")->max_payload, 5000u);
  EXPECT_EQ(s->unknown_type_max_payload(), 5000u);
}

TEST_F(RegistryTest, DefaultAndCustomTokens) {
  ApplySchema();
  Exec(
      "INSERT INTO devices (device_id, device_token) VALUES "
      "('sensor-001', NULL), "
      "('sensor-002', 'devices/sensor-002/notifications'), "
      "('plc-7', 'factory/line1/plc-7')");
  auto s = Load();
  ASSERT_NE(s, nullptr);

  const Device* d1 = s->Find("sensor-001");
  ASSERT_NE(d1, nullptr);
  EXPECT_TRUE(d1->token.empty());
  EXPECT_TRUE(d1->IsToken("devices/sensor-001/notifications"));
  EXPECT_FALSE(d1->IsToken("devices/sensor-002/notifications"));
  EXPECT_FALSE(d1->IsToken("devices/sensor-001/notifications/x"));
  EXPECT_FALSE(d1->IsToken("devices/sensor-001"));

  // A stored token equal to the default is kept as the default.
  const Device* d2 = s->Find("sensor-002");
  ASSERT_NE(d2, nullptr);
  EXPECT_TRUE(d2->token.empty());
  EXPECT_TRUE(d2->IsToken("devices/sensor-002/notifications"));

  const Device* plc = s->Find("plc-7");
  ASSERT_NE(plc, nullptr);
  EXPECT_EQ(plc->token, "factory/line1/plc-7");
  EXPECT_TRUE(plc->IsToken("factory/line1/plc-7"));
  EXPECT_FALSE(plc->IsToken("devices/plc-7/notifications"));

  EXPECT_EQ(s->FindByToken("devices/sensor-001/notifications"), d1);
  EXPECT_EQ(s->FindByToken("devices/sensor-002/notifications"), d2);
  EXPECT_EQ(s->FindByToken("factory/line1/plc-7"), plc);
  // A device with a custom token does not own its default topic.
  EXPECT_EQ(s->FindByToken("devices/plc-7/notifications"), nullptr);
  EXPECT_EQ(s->FindByToken("devices/nobody/notifications"), nullptr);
  EXPECT_EQ(s->FindByToken("devices//notifications"), nullptr);
  EXPECT_EQ(s->FindByToken("devices/notifications"), nullptr);
  EXPECT_EQ(s->FindByToken("factory/line1"), nullptr);
  EXPECT_EQ(s->FindByToken(""), nullptr);
}

TEST_F(RegistryTest, RulesSplitIntoGlobalAndPerDevice) {
  ApplySchema();
  Exec(
      "INSERT INTO devices (device_id) VALUES ('homepot'), ('sensor-001'), "
      "('sensor-002')");
  Exec(
      "INSERT INTO acl_rules (device_id, topic_filter, access) VALUES "
      "('homepot', 'devices/+/notifications', 'write'), "
      "('sensor-001', 'devices/sensor-001/notifications', 'read'), "
      "('sensor-001', 'devices/sensor-001/status', 'readwrite'), "
      "('sensor-001', 'devices/sensor-001/secret', 'deny'), "
      "(NULL, 'devices/%u/#', 'read'), "
      "(NULL, '$SYS/#', 'deny')");
  auto s = Load();
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->rule_count(), 6u);

  ASSERT_EQ(s->global_rules().size(), 2u);
  std::set<std::pair<std::string, int>> global;
  for (const AclRule& r : s->global_rules())
    global.insert({r.filter, r.access});
  EXPECT_EQ(global, (std::set<std::pair<std::string, int>>{
                        {"devices/%u/#", kRuleRead}, {"$SYS/#", kRuleDeny}}));

  const Device* backend = s->Find("homepot");
  ASSERT_EQ(backend->rules.size(), 1u);
  EXPECT_EQ(backend->rules[0].filter, "devices/+/notifications");
  EXPECT_EQ(backend->rules[0].access, kRuleWrite);

  const Device* sensor = s->Find("sensor-001");
  ASSERT_EQ(sensor->rules.size(), 3u);  // in insertion (id) order
  EXPECT_EQ(sensor->rules[0].filter, "devices/sensor-001/notifications");
  EXPECT_EQ(sensor->rules[0].access, kRuleRead);
  EXPECT_EQ(sensor->rules[1].filter, "devices/sensor-001/status");
  EXPECT_EQ(sensor->rules[1].access, kRuleReadWrite);
  EXPECT_EQ(sensor->rules[2].filter, "devices/sensor-001/secret");
  EXPECT_EQ(sensor->rules[2].access, kRuleDeny);

  EXPECT_TRUE(s->Find("sensor-002")->rules.empty());
  EXPECT_TRUE(warnings_.empty());
}

TEST_F(RegistryTest, RuleOfAnUnregisteredDeviceIsIgnored) {
  ApplySchema();
  Exec("INSERT INTO devices (device_id) VALUES ('a')");
  // Foreign keys are off by default: such a row can exist.
  Exec(
      "INSERT INTO acl_rules (device_id, topic_filter, access) VALUES "
      "('ghost', '#', 'readwrite'), ('a', 'x', 'read')");
  auto s = Load();
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->rule_count(), 1u);
  EXPECT_TRUE(s->global_rules().empty());
  EXPECT_EQ(s->Find("a")->rules.size(), 1u);
}

TEST_F(RegistryTest, InvalidRuleIsSkippedWithAWarning) {
  ApplySchema();
  Exec("INSERT INTO devices (device_id) VALUES ('sensor-001')");
  Exec(
      "INSERT INTO acl_rules (device_id, topic_filter, access) VALUES "
      "('sensor-001', 'a/#/b', 'read'), "
      "('sensor-001', 'ok/+', 'read'), "
      "(NULL, 'bad+', 'write')");
  auto s = Load();
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->rule_count(), 1u);
  ASSERT_EQ(s->Find("sensor-001")->rules.size(), 1u);
  EXPECT_EQ(s->Find("sensor-001")->rules[0].filter, "ok/+");
  EXPECT_TRUE(s->global_rules().empty());
  EXPECT_TRUE(WarnedAbout("skipped invalid acl rule 'a/#/b'"));
  EXPECT_TRUE(WarnedAbout("skipped invalid acl rule 'bad+'"));
}

TEST_F(RegistryTest, DisabledDeviceIsLoadedDisabled) {
  ApplySchema();
  Exec(
      "INSERT INTO devices (device_id, enabled) VALUES ('on', 1), ('off', "
      "0)");
  auto s = Load();
  ASSERT_NE(s, nullptr);
  ASSERT_NE(s->Find("off"), nullptr);
  EXPECT_FALSE(s->Find("off")->enabled);
  EXPECT_TRUE(s->Find("on")->enabled);
}

TEST_F(RegistryTest, BadHashIsSkippedWithAWarning) {
  ApplySchema();
  Exec(
      "INSERT INTO devices (device_id, password_hash) VALUES "
      "('broken', 'not-a-hash'), ('good', '" +
      EncodedHash("pw") + "')");
  auto s = Load();
  ASSERT_NE(s, nullptr);
  const Device* broken = s->Find("broken");
  ASSERT_NE(broken, nullptr);  // the device stays, it just cannot log in
  EXPECT_FALSE(broken->has_password);
  EXPECT_TRUE(s->Find("good")->has_password);
  ASSERT_EQ(warnings_.size(), 1u);
  EXPECT_NE(warnings_[0].find("device 'broken': unusable password_hash"),
            std::string::npos)
      << warnings_[0];
  EXPECT_EQ(warnings_[0].find("not-a-hash"), std::string::npos)
      << "a warning must not echo the stored hash: " << warnings_[0];
}

TEST_F(RegistryTest, MosquittoSha512HashIsAccepted) {
  ApplySchema();
  // A $6$ hash as mosquitto_passwd 1.x wrote it (12-byte salt, 64-byte hash).
  PasswordHash h;
  h.kind = PasswordHash::Kind::kSha512;
  h.salt.fill(7);
  h.hash.fill(9);
  Exec("INSERT INTO devices (device_id, password_hash) VALUES ('legacy', '" +
       EncodePasswordHash(h) + "')");
  auto s = Load();
  ASSERT_NE(s, nullptr);
  EXPECT_TRUE(s->Find("legacy")->has_password);
  EXPECT_EQ(s->Find("legacy")->password.kind, PasswordHash::Kind::kSha512);
}

TEST_F(RegistryTest, InvalidUtf8DeviceIdIsSkipped) {
  ApplySchema();
  // The schema cannot check UTF-8; the loader does.
  Exec(
      "INSERT INTO devices (device_id) VALUES (CAST(x'61ff62' AS TEXT)), "
      "('fine')");
  auto s = Load();
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->device_count(), 1u);
  EXPECT_NE(s->Find("fine"), nullptr);
  EXPECT_TRUE(WarnedAbout("skipped device with invalid id"));
}

TEST_F(RegistryTest, GenerationIncreasesOnEveryRegistryChange) {
  ApplySchema();
  int64_t g = Generation();
  EXPECT_EQ(g, 1);
  auto expect_increase = [&](const std::string& sql) {
    Exec(sql);
    int64_t now = Generation();
    EXPECT_GT(now, g) << sql;
    g = now;
  };
  expect_increase("INSERT INTO devices (device_id) VALUES ('a')");
  expect_increase("UPDATE devices SET enabled = 0 WHERE device_id = 'a'");
  expect_increase(
      "INSERT INTO acl_rules (device_id, topic_filter, access) VALUES ('a', "
      "'x', 'read')");
  expect_increase("UPDATE acl_rules SET access = 'write'");
  expect_increase("DELETE FROM acl_rules");
  expect_increase("INSERT INTO device_types VALUES ('camera', 100)");
  expect_increase(
      "UPDATE device_types SET max_payload_bytes = 200 WHERE name = "
      "'camera'");
  expect_increase("DELETE FROM device_types WHERE name = 'camera'");
  expect_increase("DELETE FROM devices WHERE device_id = 'a'");

  // device_stats is not part of the registry snapshot.
  Exec("INSERT INTO device_stats (device_id, published) VALUES ('a', 1)");
  Exec("UPDATE device_stats SET delivered = 5, expired = 2, acked = 1");
  Exec("DELETE FROM device_stats");
  // Nor is notification_log.
  Exec(
      "INSERT INTO notification_log (message_id, topic, received_at, "
      "outcome) VALUES ('m1', 'devices/a/notifications', "
      "'2026-12-01T00:00:00.000Z', 'routed')");
  Exec("UPDATE notification_log SET outcome = 'acked'");
  Exec("DELETE FROM notification_log");
  EXPECT_EQ(Generation(), g);

  auto s = Load();
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->generation(), g);
}

TEST_F(RegistryTest, UpdatedAtIsTouchedOnUpdate) {
  ApplySchema();
  Exec(
      "INSERT INTO devices (device_id, updated_at) VALUES ('a', "
      "'2000-01-01T00:00:00.000Z')");
  Exec("UPDATE devices SET enabled = 0 WHERE device_id = 'a'");
  sqlite3_stmt* stmt = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db_,
                               "SELECT updated_at FROM devices WHERE "
                               "device_id = 'a'",
                               -1, &stmt, nullptr),
            SQLITE_OK);
  ASSERT_EQ(sqlite3_step(stmt), SQLITE_ROW);
  std::string updated =
      reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0));
  sqlite3_finalize(stmt);
  EXPECT_NE(updated, "2000-01-01T00:00:00.000Z");
}

TEST_F(RegistryTest, CheckSchemaRefusesAnEmptyDatabase) {
  Status s = CheckSchema(&*database_);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.message(),
            "no HOMEPOT schema (user_version 0); run homepot-admin init");
  std::vector<std::string> warnings;
  auto loaded = LoadSnapshot(&*database_, &warnings);
  ASSERT_FALSE(loaded.ok());
  EXPECT_EQ(loaded.status().message(), s.message());
}

TEST_F(RegistryTest, CheckSchemaRefusesANewerVersion) {
  ApplySchema();
  Exec("PRAGMA user_version = 5");
  Status s = CheckSchema(&*database_);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.message(),
            "schema version 5 is newer than this plugin understands (4)");
  std::vector<std::string> warnings;
  EXPECT_FALSE(LoadSnapshot(&*database_, &warnings).ok());
}

// A version-1 file (tests/fixtures/schema_v1.sql) must be migrated by
// homepot-admin init first; the message says so.
TEST_F(RegistryTest, CheckSchemaRefusesAVersionOneFile) {
  const std::string& v1 = test::OldSchemaSql(1);
  ASSERT_FALSE(v1.empty());
  Exec(v1);
  Exec("INSERT INTO devices (device_id) VALUES ('sensor-001')");
  Status s = CheckSchema(&*database_);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.message(),
            "schema version 1 is older than this plugin understands (4); run "
            "homepot-admin init to migrate it");
  std::vector<std::string> warnings;
  auto loaded = LoadSnapshot(&*database_, &warnings);
  ASSERT_FALSE(loaded.ok());
  EXPECT_EQ(loaded.status().message(), s.message());
}

TEST_F(RegistryTest, TheSchemaHasTheDeliveryColumnsAndLog) {
  ApplySchema();
  ASSERT_TRUE(CheckSchema(&*database_).ok());
  Exec("INSERT INTO device_stats (device_id) VALUES ('a')");
  sqlite3_stmt* stmt = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db_,
                               "SELECT expired, acked FROM device_stats "
                               "WHERE device_id = 'a'",
                               -1, &stmt, nullptr),
            SQLITE_OK);
  ASSERT_EQ(sqlite3_step(stmt), SQLITE_ROW);
  EXPECT_EQ(sqlite3_column_int64(stmt, 0), 0);
  EXPECT_EQ(sqlite3_column_int64(stmt, 1), 0);
  sqlite3_finalize(stmt);
  for (const char* outcome :
       {"routed", "queued", "acked", "expired", "unreachable", "rejected"}) {
    SCOPED_TRACE(outcome);
    EXPECT_EQ(TryExec(std::string("INSERT INTO notification_log (topic, "
                                  "received_at, outcome) VALUES ('t', "
                                  "'2026-12-01T00:00:00.000Z', '") +
                      outcome + "')"),
              "");
  }
  EXPECT_NE(TryExec("INSERT INTO notification_log (topic, received_at, "
                    "outcome) VALUES ('t', '2026-12-01T00:00:00.000Z', "
                    "'lost')"),
            "");
  EXPECT_NE(TryExec("INSERT INTO notification_log (received_at, outcome) "
                    "VALUES ('2026-12-01T00:00:00.000Z', 'routed')"),
            "");
}

TEST_F(RegistryTest, CheckSchemaRefusesMissingDeliveryColumns) {
  for (const char* column : {"expired", "acked", "sessions", "subscribed"}) {
    SCOPED_TRACE(column);
    OpenMemory();
    ApplySchema();
    Exec("DROP VIEW fleet_stats");
    Exec(std::string("ALTER TABLE device_stats DROP COLUMN ") + column);
    Status s = CheckSchema(&*database_);
    ASSERT_FALSE(s.ok());
    EXPECT_EQ(s.message(),
              std::string("table device_stats is missing or unreadable: no "
                          "such column: ") +
                  column);
  }
}

TEST_F(RegistryTest, CheckSchemaRefusesAMissingTable) {
  for (const char* table :
       {"device_types", "devices", "acl_rules", "device_stats", "registry_meta",
        "notification_log"}) {
    SCOPED_TRACE(table);
    OpenMemory();
    ApplySchema();
    Exec(std::string("DROP TABLE ") + table);
    Status s = CheckSchema(&*database_);
    ASSERT_FALSE(s.ok());
    EXPECT_EQ(s.message(),
              std::string("table ") + table +
                  " is missing or unreadable: no such table: " + table);
    std::vector<std::string> warnings;
    EXPECT_FALSE(LoadSnapshot(&*database_, &warnings).ok());
  }
}

TEST_F(RegistryTest, LoadFailsWhenTheGenerationRowIsGone) {
  ApplySchema();
  Exec("DELETE FROM registry_meta");
  std::vector<std::string> warnings;
  auto loaded = LoadSnapshot(&*database_, &warnings);
  ASSERT_FALSE(loaded.ok());
  EXPECT_NE(loaded.status().message().find("cannot read registry generation"),
            std::string::npos)
      << loaded.status().message();
}

TEST_F(RegistryTest, LoadLeavesNoTransactionOpen) {
  ApplySchema();
  ASSERT_NE(Load(), nullptr);
  EXPECT_TRUE(sqlite3_get_autocommit(db_));
  Exec("INSERT INTO devices (device_id) VALUES ('after')");
  Exec("PRAGMA user_version = 9");
  std::vector<std::string> warnings;
  EXPECT_FALSE(LoadSnapshot(&*database_, &warnings).ok());
  EXPECT_TRUE(sqlite3_get_autocommit(db_));
}

TEST_F(RegistryTest, SchemaRefusesBadDeviceIds) {
  ApplySchema();
  const std::vector<std::string> bad = {
      "'a/b'",
      "'a+b'",
      "'#'",
      "'+'",
      "'sensor/#'",
      "''",
      "'" + std::string(129, 'x') + "'",
      "'" +
          [] {
            std::string s;
            for (int i = 0; i < 65; ++i)
              s += "\xC3\xA9";  // 130 bytes, 65 chars
            return s;
          }() +
          "'",
      "'a' || char(10) || 'b'",
      "'a' || char(1)",
      "char(31)",
      "'a' || char(127)",
      "'a' || char(0) || 'b'",
      "NULL",
  };
  for (const std::string& id : bad) {
    std::string err =
        TryExec("INSERT INTO devices (device_id) VALUES (" + id + ")");
    EXPECT_NE(err, "") << "accepted device id " << id;
  }
  EXPECT_NE(TryExec("INSERT INTO devices (device_id) VALUES ('a/b')")
                .find("device_id_format"),
            std::string::npos);
  EXPECT_EQ(Generation(), 1);

  const std::vector<std::string> good = {
      "'sensor-001'",
      "'x'",
      "'" + std::string(128, 'x') + "'",
      "'Ger\xC3\xA4t \xE2\x84\x96 7'",  // UTF-8 and a space
      "'dollar$sign'",
      "'percent%u'",
  };
  for (const std::string& id : good) {
    EXPECT_EQ(TryExec("INSERT INTO devices (device_id) VALUES (" + id + ")"),
              "")
        << id;
  }
  auto s = Load();
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->device_count(), good.size());
  EXPECT_TRUE(warnings_.empty());
}

TEST_F(RegistryTest, SchemaRefusesBadAccessWords) {
  ApplySchema();
  Exec("INSERT INTO devices (device_id) VALUES ('a')");
  for (const char* access :
       {"'READ'", "'write '", "'all'", "''", "'subscribe'", "NULL"}) {
    std::string err = TryExec(
        std::string("INSERT INTO acl_rules (device_id, topic_filter, access) "
                    "VALUES ('a', 'x', ") +
        access + ")");
    EXPECT_NE(err, "") << "accepted access " << access;
  }
  EXPECT_NE(TryExec("INSERT INTO acl_rules (device_id, topic_filter, access) "
                    "VALUES ('a', 'x', 'all')")
                .find("access_value"),
            std::string::npos);
  for (const char* access : {"'read'", "'write'", "'readwrite'", "'deny'"}) {
    EXPECT_EQ(TryExec(std::string("INSERT INTO acl_rules (device_id, "
                                  "topic_filter, access) VALUES ('a', 'x', ") +
                      access + ")"),
              "")
        << access;
  }
}

TEST_F(RegistryTest, SchemaRefusesWildcardTokens) {
  ApplySchema();
  for (const char* token : {"'devices/+/notifications'", "'a/#'", "''"}) {
    EXPECT_NE(TryExec(std::string("INSERT INTO devices (device_id, "
                                  "device_token) VALUES ('a', ") +
                      token + ")"),
              "")
        << token;
  }
}

// A device for Snapshot::Build fixtures.
Device MakeDevice(std::string id, bool enabled = true,
                  const PasswordHash* hash = nullptr) {
  Device d;
  d.id = std::move(id);
  d.enabled = enabled;
  if (hash != nullptr) {
    d.has_password = true;
    d.password = *hash;
  }
  return d;
}

std::set<std::string> Revoked(const Snapshot& prev, const Snapshot& next) {
  auto v = RevokedDevices(prev, next);
  return std::set<std::string>(v.begin(), v.end());
}

TEST(RevokedDevicesTest, RemovalDisableAndPasswordChangeRevoke) {
  Result<PasswordHash> h1 = HashPassword("one", 10);
  Result<PasswordHash> h2 = HashPassword("two", 10);
  ASSERT_TRUE(h1.ok() && h2.ok());
  std::vector<Device> before;
  before.push_back(MakeDevice("removed", true, &*h1));
  before.push_back(MakeDevice("disabled", true, &*h1));
  before.push_back(MakeDevice("repassworded", true, &*h1));
  before.push_back(MakeDevice("password-dropped", true, &*h1));
  before.push_back(MakeDevice("password-added", true, nullptr));
  before.push_back(MakeDevice("unchanged", true, &*h1));
  before.push_back(MakeDevice("was-off", false, &*h1));
  before.push_back(MakeDevice("re-enabled", false, &*h1));
  auto prev = Snapshot::Build(std::move(before), {}, 1, 10240);

  std::vector<Device> after;
  after.push_back(MakeDevice("disabled", false, &*h1));
  after.push_back(MakeDevice("repassworded", true, &*h2));
  after.push_back(MakeDevice("password-dropped", true, nullptr));
  after.push_back(MakeDevice("password-added", true, &*h2));
  Device unchanged = MakeDevice("unchanged", true, &*h1);
  unchanged.rules.push_back({"x/#", kRuleRead});  // rules do not revoke
  unchanged.type = "gateway";
  after.push_back(std::move(unchanged));
  after.push_back(MakeDevice("was-off", false, &*h2));
  after.push_back(MakeDevice("re-enabled", true, &*h1));
  after.push_back(MakeDevice("brand-new", true, &*h1));
  auto next = Snapshot::Build(std::move(after), {}, 2, 10240);

  EXPECT_EQ(Revoked(*prev, *next),
            (std::set<std::string>{"removed", "disabled", "repassworded",
                                   "password-dropped", "password-added"}));
}

TEST(RevokedDevicesTest, SamePasswordRehashedWithANewSaltRevokes) {
  Result<PasswordHash> a = HashPassword("same", 10);
  Result<PasswordHash> b = HashPassword("same", 10);
  ASSERT_TRUE(a.ok() && b.ok());
  std::vector<Device> v1, v2;
  v1.push_back(MakeDevice("d", true, &*a));
  v2.push_back(MakeDevice("d", true, &*b));
  auto prev = Snapshot::Build(std::move(v1), {}, 1, 10240);
  auto next = Snapshot::Build(std::move(v2), {}, 2, 10240);
  EXPECT_EQ(Revoked(*prev, *next), (std::set<std::string>{"d"}));
}

TEST(RevokedDevicesTest, IdenticalSnapshotsRevokeNothing) {
  Result<PasswordHash> h = HashPassword("pw", 10);
  ASSERT_TRUE(h.ok());
  std::vector<Device> v1, v2;
  v1.push_back(MakeDevice("a", true, &*h));
  v1.push_back(MakeDevice("b", true, nullptr));
  v2.push_back(MakeDevice("a", true, &*h));
  v2.push_back(MakeDevice("b", true, nullptr));
  auto prev = Snapshot::Build(std::move(v1), {}, 1, 10240);
  auto next = Snapshot::Build(std::move(v2), {}, 2, 10240);
  EXPECT_TRUE(RevokedDevices(*prev, *next).empty());
  EXPECT_TRUE(RevokedDevices(*prev, *prev).empty());
}

TEST_F(RegistryTest, RevokedDevicesFromRealLoads) {
  ApplySchema();
  Exec("INSERT INTO devices (device_id, password_hash) VALUES ('a', '" +
       EncodedHash("a") + "'), ('b', '" + EncodedHash("b") + "'), ('c', '" +
       EncodedHash("c") + "'), ('d', '" + EncodedHash("d") + "')");
  auto before = Load();
  ASSERT_NE(before, nullptr);
  Exec("DELETE FROM devices WHERE device_id = 'a'");
  Exec("UPDATE devices SET enabled = 0 WHERE device_id = 'b'");
  Exec("UPDATE devices SET password_hash = '" + EncodedHash("c2") +
       "' WHERE device_id = 'c'");
  Exec("UPDATE devices SET metadata = '{\"room\": 4}' WHERE device_id = 'd'");
  auto after = Load();
  ASSERT_NE(after, nullptr);
  EXPECT_EQ(Revoked(*before, *after), (std::set<std::string>{"a", "b", "c"}));
}

TEST(SnapshotTest, EmptySnapshotFindsNothing) {
  auto s = Snapshot::Build({}, {}, 0, 10240);
  EXPECT_EQ(s->Find("a"), nullptr);
  EXPECT_EQ(s->Find(""), nullptr);
  EXPECT_EQ(s->FindByToken("devices/a/notifications"), nullptr);
  EXPECT_EQ(s->FindByToken("x"), nullptr);
  EXPECT_EQ(s->rule_count(), 0u);
}

TEST(SnapshotTest, RuleCountIncludesGlobalAndDeviceRules) {
  std::vector<Device> devices;
  devices.push_back(MakeDevice("a"));
  devices[0].rules = {{"x", kRuleRead}, {"y", kRuleWrite}};
  devices.push_back(MakeDevice("b"));
  devices[1].rules = {{"z", kRuleDeny}};
  auto s = Snapshot::Build(std::move(devices), {{"%u/#", kRuleRead}}, 7, 999);
  EXPECT_EQ(s->rule_count(), 4u);
  EXPECT_EQ(s->generation(), 7);
  EXPECT_EQ(s->unknown_type_max_payload(), 999u);
}

TEST(SnapshotTest, BuildAndFindWithAHundredThousandDevices) {
  constexpr int kDevices = 100000;
  std::vector<Device> devices;
  devices.reserve(kDevices);
  for (int i = 0; i < kDevices; ++i) {
    Device d = MakeDevice("dev-" + std::to_string(i));
    if (i % 10 == 0) d.token = "custom/" + std::to_string(i) + "/inbox";
    devices.push_back(std::move(d));
  }
  auto s = Snapshot::Build(std::move(devices), {}, 1, 10240);
  ASSERT_EQ(s->device_count(), static_cast<size_t>(kDevices));
  for (int i = 0; i < kDevices; ++i) {
    std::string id = "dev-" + std::to_string(i);
    const Device* d = s->Find(id);
    ASSERT_NE(d, nullptr) << id;
    ASSERT_EQ(d->id, id);
    if (i % 10 == 0) {
      std::string token = "custom/" + std::to_string(i) + "/inbox";
      ASSERT_EQ(s->FindByToken(token), d) << token;
      ASSERT_EQ(s->FindByToken("devices/" + id + "/notifications"), nullptr);
    } else {
      ASSERT_EQ(s->FindByToken("devices/" + id + "/notifications"), d) << id;
    }
  }
  for (const std::string& absent :
       {std::string("dev-100000"), std::string("dev-"), std::string("dev-1 "),
        std::string("DEV-1"), std::string(""), std::string("dev-0000"),
        std::string("dev-999999")}) {
    EXPECT_EQ(s->Find(absent), nullptr) << absent;
  }
  for (int i = kDevices; i < kDevices + 1000; ++i) {
    ASSERT_EQ(s->Find("dev-" + std::to_string(i)), nullptr);
    ASSERT_EQ(s->FindByToken("custom/" + std::to_string(i) + "/inbox"),
              nullptr);
  }
  EXPECT_EQ(s->FindByToken("custom/1/inbox"), nullptr);  // 1 has no custom one
}

}  // namespace
}  // namespace homepot
