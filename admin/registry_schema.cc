#include "admin/registry_schema.h"

#include <cctype>
#include <utility>

#include "admin/validate.h"

namespace homepot::admin {
namespace {

Status NewerThanTool(const std::string& path, int found, int known) {
  return Status::Error("registry " + Quote(path) + " has schema version " +
                       std::to_string(found) +
                       ", newer than this homepot-admin supports (" +
                       std::to_string(known) + "); use a newer homepot-admin");
}

// Tables of the registry in `db`: on SQLite every table (a fresh file has
// none); on PostgreSQL those of the registry's names that exist (the
// database may hold other applications' tables).
Result<int64_t> CountTables(Database* db) {
  Result<Statement> stmt = db->Prepare(
      db->backend() == Backend::kPostgres
          ? "SELECT count(*) FROM unnest(ARRAY['device_types', 'devices', "
            "'acl_rules', 'device_stats', 'notification_log', "
            "'registry_changes', 'registry_meta']) AS t (name) "
            "WHERE to_regclass(t.name) IS NOT NULL"
          : "SELECT count(*) FROM sqlite_schema WHERE type = 'table' "
            "AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'");
  if (!stmt.ok()) return stmt.status();
  Result<bool> row = stmt->Step();
  if (!row.ok()) return row.status();
  return stmt->Int(0);
}

// A single integer the statement `sql` yields (0 when it yields no row).
Result<int64_t> QueryInt(Database* db, std::string_view sql) {
  Result<Statement> stmt = db->Prepare(sql);
  if (!stmt.ok()) return stmt.status();
  Result<bool> row = stmt->Step();
  if (!row.ok()) return row.status();
  return *row ? stmt->Int(0) : 0;
}

// The change feed's bound and triggers as schema.sql creates them. Step 2
// adds them; step 3 replaces the triggers of a version-3 file made by an
// earlier schema.sql, which each kept the last 100000 generations, with
// these, which keep registry_changes_kept's.
constexpr std::string_view kFeedSql = R"sql(
CREATE VIEW IF NOT EXISTS registry_changes_kept AS SELECT 50000 AS generations;

CREATE TRIGGER IF NOT EXISTS feed_devices_ins AFTER INSERT ON devices
  BEGIN
    UPDATE registry_meta SET generation = generation + 1;
    INSERT INTO registry_changes (generation, kind, name)
      SELECT generation, 'device', NEW.device_id FROM registry_meta;
    DELETE FROM registry_changes WHERE generation <=
      (SELECT generation FROM registry_meta) -
      (SELECT generations FROM registry_changes_kept);
  END;
CREATE TRIGGER IF NOT EXISTS feed_devices_upd AFTER UPDATE ON devices
  BEGIN
    UPDATE registry_meta SET generation = generation + 1;
    INSERT INTO registry_changes (generation, kind, name)
      SELECT generation, 'device', OLD.device_id FROM registry_meta
      UNION ALL
      SELECT generation, 'device', NEW.device_id FROM registry_meta
        WHERE NEW.device_id IS NOT OLD.device_id;
    DELETE FROM registry_changes WHERE generation <=
      (SELECT generation FROM registry_meta) -
      (SELECT generations FROM registry_changes_kept);
  END;
CREATE TRIGGER IF NOT EXISTS feed_devices_del AFTER DELETE ON devices
  BEGIN
    UPDATE registry_meta SET generation = generation + 1;
    INSERT INTO registry_changes (generation, kind, name)
      SELECT generation, 'device', OLD.device_id FROM registry_meta;
    DELETE FROM registry_changes WHERE generation <=
      (SELECT generation FROM registry_meta) -
      (SELECT generations FROM registry_changes_kept);
  END;
CREATE TRIGGER IF NOT EXISTS feed_acl_ins AFTER INSERT ON acl_rules
  BEGIN
    UPDATE registry_meta SET generation = generation + 1;
    INSERT INTO registry_changes (generation, kind, name)
      SELECT generation,
             CASE WHEN NEW.device_id IS NULL THEN 'global' ELSE 'device' END,
             coalesce(NEW.device_id, '') FROM registry_meta;
    DELETE FROM registry_changes WHERE generation <=
      (SELECT generation FROM registry_meta) -
      (SELECT generations FROM registry_changes_kept);
  END;
CREATE TRIGGER IF NOT EXISTS feed_acl_upd AFTER UPDATE ON acl_rules
  BEGIN
    UPDATE registry_meta SET generation = generation + 1;
    INSERT INTO registry_changes (generation, kind, name)
      SELECT generation,
             CASE WHEN OLD.device_id IS NULL THEN 'global' ELSE 'device' END,
             coalesce(OLD.device_id, '') FROM registry_meta
      UNION ALL
      SELECT generation,
             CASE WHEN NEW.device_id IS NULL THEN 'global' ELSE 'device' END,
             coalesce(NEW.device_id, '') FROM registry_meta
        WHERE NEW.device_id IS NOT OLD.device_id;
    DELETE FROM registry_changes WHERE generation <=
      (SELECT generation FROM registry_meta) -
      (SELECT generations FROM registry_changes_kept);
  END;
CREATE TRIGGER IF NOT EXISTS feed_acl_del AFTER DELETE ON acl_rules
  BEGIN
    UPDATE registry_meta SET generation = generation + 1;
    INSERT INTO registry_changes (generation, kind, name)
      SELECT generation,
             CASE WHEN OLD.device_id IS NULL THEN 'global' ELSE 'device' END,
             coalesce(OLD.device_id, '') FROM registry_meta;
    DELETE FROM registry_changes WHERE generation <=
      (SELECT generation FROM registry_meta) -
      (SELECT generations FROM registry_changes_kept);
  END;
-- INSERT OR REPLACE and UPDATE OR REPLACE delete a row whose id is taken
-- without firing feed_acl_del (SQLite fires delete triggers for REPLACE
-- only with recursive_triggers on): these record the owner of that row
-- first. A statement that fails instead undoes them. (A conflict on
-- (device_id, topic_filter, access) replaces a row of the same owner,
-- which the insert or update records.)
CREATE TRIGGER IF NOT EXISTS feed_acl_replace_ins BEFORE INSERT ON acl_rules
  WHEN EXISTS (SELECT 1 FROM acl_rules WHERE id = NEW.id)
  BEGIN
    UPDATE registry_meta SET generation = generation + 1;
    INSERT INTO registry_changes (generation, kind, name)
      SELECT m.generation,
             CASE WHEN r.device_id IS NULL THEN 'global' ELSE 'device' END,
             coalesce(r.device_id, '')
        FROM registry_meta AS m, acl_rules AS r WHERE r.id = NEW.id;
  END;
CREATE TRIGGER IF NOT EXISTS feed_acl_replace_upd BEFORE UPDATE OF id
  ON acl_rules
  WHEN NEW.id IS NOT OLD.id AND EXISTS (SELECT 1 FROM acl_rules WHERE id = NEW.id)
  BEGIN
    UPDATE registry_meta SET generation = generation + 1;
    INSERT INTO registry_changes (generation, kind, name)
      SELECT m.generation,
             CASE WHEN r.device_id IS NULL THEN 'global' ELSE 'device' END,
             coalesce(r.device_id, '')
        FROM registry_meta AS m, acl_rules AS r WHERE r.id = NEW.id;
  END;
CREATE TRIGGER IF NOT EXISTS feed_types_ins AFTER INSERT ON device_types
  BEGIN
    UPDATE registry_meta SET generation = generation + 1;
    INSERT INTO registry_changes (generation, kind, name)
      SELECT generation, 'type', NEW.name FROM registry_meta;
    DELETE FROM registry_changes WHERE generation <=
      (SELECT generation FROM registry_meta) -
      (SELECT generations FROM registry_changes_kept);
  END;
CREATE TRIGGER IF NOT EXISTS feed_types_upd AFTER UPDATE ON device_types
  BEGIN
    UPDATE registry_meta SET generation = generation + 1;
    INSERT INTO registry_changes (generation, kind, name)
      SELECT generation, 'type', OLD.name FROM registry_meta
      UNION ALL
      SELECT generation, 'type', NEW.name FROM registry_meta
        WHERE NEW.name IS NOT OLD.name;
    DELETE FROM registry_changes WHERE generation <=
      (SELECT generation FROM registry_meta) -
      (SELECT generations FROM registry_changes_kept);
  END;
CREATE TRIGGER IF NOT EXISTS feed_types_del AFTER DELETE ON device_types
  BEGIN
    UPDATE registry_meta SET generation = generation + 1;
    INSERT INTO registry_changes (generation, kind, name)
      SELECT generation, 'type', OLD.name FROM registry_meta;
    DELETE FROM registry_changes WHERE generation <=
      (SELECT generation FROM registry_meta) -
      (SELECT generations FROM registry_changes_kept);
  END;
)sql";

constexpr std::string_view kStepTwo = R"sql(
DROP TRIGGER IF EXISTS gen_devices_ins;
DROP TRIGGER IF EXISTS gen_devices_upd;
DROP TRIGGER IF EXISTS gen_devices_del;
DROP TRIGGER IF EXISTS gen_acl_ins;
DROP TRIGGER IF EXISTS gen_acl_upd;
DROP TRIGGER IF EXISTS gen_acl_del;
DROP TRIGGER IF EXISTS gen_types_ins;
DROP TRIGGER IF EXISTS gen_types_upd;
DROP TRIGGER IF EXISTS gen_types_del;
INSERT OR IGNORE INTO device_types (name, max_payload_bytes)
  VALUES ('bridge', 262144);
ALTER TABLE device_stats RENAME TO device_stats_v2;
CREATE TABLE device_stats (
  device_id     TEXT NOT NULL,
  node          TEXT NOT NULL DEFAULT '',
  published     INTEGER NOT NULL DEFAULT 0,
  delivered     INTEGER NOT NULL DEFAULT 0,
  rejected      INTEGER NOT NULL DEFAULT 0,
  last_connect  TEXT,
  last_publish  TEXT,
  last_delivery TEXT,
  expired       INTEGER NOT NULL DEFAULT 0,
  acked         INTEGER NOT NULL DEFAULT 0,
  sessions      INTEGER NOT NULL DEFAULT 0,
  subscribed    INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (device_id, node)
);
INSERT INTO device_stats (device_id, published, delivered, rejected,
    last_connect, last_publish, last_delivery, expired, acked)
  SELECT device_id, published, delivered, rejected, last_connect,
         last_publish, last_delivery, expired, acked
    FROM device_stats_v2;
DROP TABLE device_stats_v2;
CREATE VIEW IF NOT EXISTS fleet_stats AS
  SELECT device_id,
         sum(published) AS published, sum(delivered) AS delivered,
         sum(rejected) AS rejected, max(last_connect) AS last_connect,
         max(last_publish) AS last_publish,
         max(last_delivery) AS last_delivery, sum(expired) AS expired,
         sum(acked) AS acked, sum(sessions) AS sessions,
         sum(subscribed) AS subscribed, count(*) AS nodes
    FROM device_stats GROUP BY device_id;
ALTER TABLE notification_log ADD COLUMN node TEXT NOT NULL DEFAULT '';
CREATE TABLE IF NOT EXISTS registry_changes (
  generation INTEGER NOT NULL,
  kind       TEXT NOT NULL CHECK (kind IN ('device', 'global', 'type')),
  name       TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS registry_changes_generation
  ON registry_changes (generation);
)sql";

constexpr std::string_view kStepThree = R"sql(
DROP TRIGGER IF EXISTS feed_devices_ins;
DROP TRIGGER IF EXISTS feed_devices_upd;
DROP TRIGGER IF EXISTS feed_devices_del;
DROP TRIGGER IF EXISTS feed_acl_ins;
DROP TRIGGER IF EXISTS feed_acl_upd;
DROP TRIGGER IF EXISTS feed_acl_del;
DROP TRIGGER IF EXISTS feed_types_ins;
DROP TRIGGER IF EXISTS feed_types_upd;
DROP TRIGGER IF EXISTS feed_types_del;
-- write_marks, and the CHECKs of notification_log and registry_changes with
-- their lists spelled as ORs (cheaper for SQLite); kFeedSql follows.
CREATE TABLE IF NOT EXISTS write_marks (
  node   TEXT NOT NULL,
  writer TEXT NOT NULL,
  mark   TEXT NOT NULL,
  PRIMARY KEY (node, writer)
);
CREATE TABLE notification_log_v4 (
  id            INTEGER PRIMARY KEY,
  message_id    TEXT,
  publisher     TEXT,
  topic         TEXT NOT NULL,
  target_device TEXT,
  received_at   TEXT NOT NULL,
  routed        INTEGER NOT NULL DEFAULT 0,
  queued        INTEGER NOT NULL DEFAULT 0,
  expires_at    TEXT,
  acked_at      TEXT,
  latency_ms    INTEGER,
  status        TEXT,
  outcome       TEXT NOT NULL
                CHECK (outcome = 'routed' OR outcome = 'queued' OR
                       outcome = 'acked' OR outcome = 'expired' OR
                       outcome = 'unreachable' OR outcome = 'rejected'),
  reason        TEXT,
  node          TEXT NOT NULL DEFAULT ''
);
INSERT INTO notification_log_v4 (id, message_id, publisher, topic,
    target_device, received_at, routed, queued, expires_at, acked_at,
    latency_ms, status, outcome, reason, node)
  SELECT id, message_id, publisher, topic, target_device, received_at,
         routed, queued, expires_at, acked_at, latency_ms, status, outcome,
         reason, node
    FROM notification_log;
-- The feed triggers (and an operator's own views and triggers) name the two
-- tables: each is renamed without rewriting or checking them (they name the
-- table as it is once renamed).
PRAGMA legacy_alter_table = ON;
DROP TABLE notification_log;
ALTER TABLE notification_log_v4 RENAME TO notification_log;
CREATE INDEX IF NOT EXISTS notification_log_message
  ON notification_log (message_id);
CREATE INDEX IF NOT EXISTS notification_log_target
  ON notification_log (target_device, received_at);
CREATE INDEX IF NOT EXISTS notification_log_received
  ON notification_log (received_at);
CREATE TABLE registry_changes_v4 (
  generation INTEGER NOT NULL,
  kind       TEXT NOT NULL
             CHECK (kind = 'device' OR kind = 'global' OR kind = 'type'),
  name       TEXT NOT NULL DEFAULT ''
);
INSERT INTO registry_changes_v4 (generation, kind, name)
  SELECT generation, kind, name FROM registry_changes;
DROP TABLE registry_changes;
ALTER TABLE registry_changes_v4 RENAME TO registry_changes;
PRAGMA legacy_alter_table = OFF;
CREATE INDEX IF NOT EXISTS registry_changes_generation
  ON registry_changes (generation);
)sql";

// The first schema version on PostgreSQL: its schema file upgrades any
// registry from this one on.
constexpr int kFirstPostgresVersion = 3;

// Applies schema/postgresql.sql (its own transaction, idempotent) and checks
// that it left the registry at `version`.
Result<InitOutcome> ApplyPostgresSchema(Database* db, const std::string& name,
                                        std::string_view postgres_schema_sql,
                                        int version, InitOutcome outcome) {
  if (postgres_schema_sql.empty()) {
    return Status::Error("cannot create registry " + Quote(name) +
                         ": this homepot-admin has no PostgreSQL schema");
  }
  if (Status s = db->Exec(postgres_schema_sql); !s.ok()) {
    if (db->InTransaction()) db->Exec("ROLLBACK");
    return Status::Error("cannot apply the schema to " + Quote(name) + ": " +
                         s.message());
  }
  Result<int> now = ReadSchemaVersion(db);
  if (!now.ok()) {
    return Status::Error("cannot read registry " + Quote(name) + ": " +
                         now.status().message());
  }
  if (*now != version) {
    return Status::Error("applying the schema to " + Quote(name) +
                         " left it at version " + std::to_string(*now) +
                         ", not " + std::to_string(version));
  }
  return outcome;
}

}  // namespace

const std::vector<Migration>& BuiltinMigrations() {
  // Each step leaves the file as schema.sql at the next version creates it.
  static const std::string* const kTwo =
      new std::string(std::string(kStepTwo).append(kFeedSql));
  static const std::string* const kThree =
      new std::string(std::string(kStepThree).append(kFeedSql));
  static const std::vector<Migration> kMigrations = {
      {1,
       "ALTER TABLE device_stats ADD COLUMN expired INTEGER NOT NULL "
       "DEFAULT 0;\n"
       "ALTER TABLE device_stats ADD COLUMN acked INTEGER NOT NULL "
       "DEFAULT 0;\n"
       "ALTER TABLE device_stats ADD COLUMN sessions INTEGER NOT NULL "
       "DEFAULT 0;\n"
       "ALTER TABLE device_stats ADD COLUMN subscribed INTEGER NOT NULL "
       "DEFAULT 0;\n"
       "CREATE TABLE IF NOT EXISTS notification_log (\n"
       "  id            INTEGER PRIMARY KEY,\n"
       "  message_id    TEXT,\n"
       "  publisher     TEXT,\n"
       "  topic         TEXT NOT NULL,\n"
       "  target_device TEXT,\n"
       "  received_at   TEXT NOT NULL,\n"
       "  routed        INTEGER NOT NULL DEFAULT 0,\n"
       "  queued        INTEGER NOT NULL DEFAULT 0,\n"
       "  expires_at    TEXT,\n"
       "  acked_at      TEXT,\n"
       "  latency_ms    INTEGER,\n"
       "  status        TEXT,\n"
       "  outcome       TEXT NOT NULL\n"
       "                CHECK (outcome IN ('routed', 'queued', 'acked', "
       "'expired',\n"
       "                                   'unreachable', 'rejected')),\n"
       "  reason        TEXT\n"
       ");\n"
       "CREATE INDEX IF NOT EXISTS notification_log_message\n"
       "  ON notification_log (message_id);\n"
       "CREATE INDEX IF NOT EXISTS notification_log_target\n"
       "  ON notification_log (target_device, received_at);\n"
       "CREATE INDEX IF NOT EXISTS notification_log_received\n"
       "  ON notification_log (received_at);\n"},
      {2, *kTwo},
      {3, *kThree},
  };
  return kMigrations;
}

Result<int> SchemaVersionOf(std::string_view schema_sql) {
  constexpr std::string_view kPragma = "PRAGMA user_version";
  const size_t at = schema_sql.rfind(kPragma);
  if (at == std::string_view::npos) {
    return Status::Error("embedded schema has no PRAGMA user_version");
  }
  size_t pos = at + kPragma.size();
  const auto skip_blanks = [&] {
    while (pos < schema_sql.size() &&
           std::isspace(static_cast<unsigned char>(schema_sql[pos]))) {
      ++pos;
    }
  };
  skip_blanks();
  if (pos >= schema_sql.size() || schema_sql[pos] != '=') {
    return Status::Error("embedded schema has a malformed PRAGMA user_version");
  }
  ++pos;
  skip_blanks();
  int version = 0;
  size_t digits = 0;
  while (pos < schema_sql.size() && digits < 9 &&
         std::isdigit(static_cast<unsigned char>(schema_sql[pos]))) {
    version = version * 10 + (schema_sql[pos] - '0');
    ++pos;
    ++digits;
  }
  if (digits == 0 || version < 1) {
    return Status::Error("embedded schema has a malformed PRAGMA user_version");
  }
  return version;
}

Result<int> ReadSchemaVersion(Database* db) {
  if (db->backend() == Backend::kSqlite) {
    Result<int64_t> version = QueryInt(db, "PRAGMA user_version");
    if (!version.ok()) return version.status();
    return static_cast<int>(*version);
  }
  Result<int64_t> exists =
      QueryInt(db,
               "SELECT CASE WHEN to_regclass('registry_meta') IS NULL "
               "THEN 0 ELSE 1 END");
  if (!exists.ok()) return exists.status();
  if (*exists == 0) return 0;
  Result<int64_t> version =
      QueryInt(db, "SELECT schema_version FROM registry_meta WHERE id = 1");
  if (!version.ok()) return version.status();
  return static_cast<int>(*version);
}

Result<InitOutcome> InitRegistry(Database* db, const std::string& path,
                                 std::string_view schema_sql,
                                 const std::vector<Migration>& migrations) {
  // Every message names the file.
  const auto fail = [&](std::string_view doing, const Status& s) {
    return Status::Error(std::string(doing) + " " + Quote(path) + ": " +
                         s.message());
  };
  Result<int> latest = SchemaVersionOf(schema_sql);
  if (!latest.ok()) return latest.status();
  Result<int> found = ReadSchemaVersion(db);
  if (!found.ok()) return fail("cannot read registry", found.status());

  InitOutcome outcome;
  outcome.from_version = *found;
  outcome.to_version = *latest;
  if (*found > *latest) return NewerThanTool(path, *found, *latest);
  if (*found == *latest) return outcome;

  if (*found == 0) {
    Result<int64_t> tables = CountTables(db);
    if (!tables.ok()) return fail("cannot read registry", tables.status());
    if (*tables > 0) {
      return Status::Error(Quote(path) +
                           " is not a HOMEPOT registry: it has tables but no "
                           "schema version; refusing to change it");
    }
    // schema.sql switches to WAL, then runs its own BEGIN ... COMMIT.
    Status s = db->Exec(schema_sql);
    if (!s.ok()) {
      if (db->InTransaction()) db->Exec("ROLLBACK");
      return fail("cannot apply the schema to", s);
    }
    Result<int> now = ReadSchemaVersion(db);
    if (!now.ok()) return fail("cannot read registry", now.status());
    if (*now != *latest) {
      return Status::Error("applying the schema to " + Quote(path) +
                           " left it at version " + std::to_string(*now));
    }
    return outcome;
  }

  // An older registry: every step, then the new version, in one transaction.
  Result<Transaction> txn = Transaction::Begin(db);
  if (!txn.ok()) return fail("cannot migrate registry", txn.status());
  // Another process may have migrated it since the check above.
  Result<int> current = ReadSchemaVersion(db);
  if (!current.ok()) return fail("cannot read registry", current.status());
  outcome.from_version = *current;
  if (*current > *latest) return NewerThanTool(path, *current, *latest);
  for (int version = *current; version < *latest; ++version) {
    const Migration* step = nullptr;
    for (const Migration& m : migrations) {
      if (m.from_version == version) step = &m;
    }
    if (step == nullptr) {
      return Status::Error("cannot migrate registry " + Quote(path) +
                           ": no migration from schema version " +
                           std::to_string(version));
    }
    if (Status s = db->Exec(step->sql); !s.ok()) {
      return Status::Error("migrating registry " + Quote(path) +
                           " from schema version " + std::to_string(version) +
                           " failed: " + s.message());
    }
  }
  if (Status s = db->Exec("PRAGMA user_version = " + std::to_string(*latest));
      !s.ok()) {
    return fail("cannot migrate registry", s);
  }
  if (Status s = txn->Commit(); !s.ok()) {
    return fail("cannot migrate registry", s);
  }
  // Older files may predate WAL; the broker relies on it.
  if (Status s = db->Exec("PRAGMA journal_mode = WAL"); !s.ok()) {
    return fail("cannot switch to WAL mode in", s);
  }
  return outcome;
}

Result<InitOutcome> InitPostgresRegistry(Database* db, const std::string& name,
                                         std::string_view postgres_schema_sql,
                                         int version) {
  const auto fail = [&](std::string_view doing, const Status& s) {
    return Status::Error(std::string(doing) + " " + Quote(name) + ": " +
                         s.message());
  };
  Result<int> found = ReadSchemaVersion(db);
  if (!found.ok()) return fail("cannot read registry", found.status());
  InitOutcome outcome;
  outcome.from_version = *found;
  outcome.to_version = version;
  if (*found > version) return NewerThanTool(name, *found, version);
  if (*found != 0 && *found < kFirstPostgresVersion) {
    return Status::Error("cannot migrate registry " + Quote(name) +
                         ": no migration from schema version " +
                         std::to_string(*found) + " on PostgreSQL");
  }
  if (*found == version) return outcome;
  if (*found != 0) {
    return ApplyPostgresSchema(db, name, postgres_schema_sql, version, outcome);
  }
  Result<int64_t> tables = CountTables(db);
  if (!tables.ok()) return fail("cannot read registry", tables.status());
  if (*tables > 0) {
    // Another process may have applied the schema since the first look.
    Result<int> again = ReadSchemaVersion(db);
    if (again.ok() && *again == version) {
      outcome.from_version = version;
      return outcome;
    }
    return Status::Error(Quote(name) +
                         " is not a HOMEPOT registry: it has registry tables "
                         "but no schema version; refusing to change it");
  }
  return ApplyPostgresSchema(db, name, postgres_schema_sql, version, outcome);
}

Status CheckRegistryVersion(Database* db, const std::string& path,
                            int version) {
  Result<int> found = ReadSchemaVersion(db);
  if (!found.ok()) {
    return Status::Error("cannot read registry " + Quote(path) + ": " +
                         found.status().message());
  }
  if (*found == version) return Status::Ok();
  if (*found > version) return NewerThanTool(path, *found, version);
  if (*found == 0) {
    return Status::Error("registry " + Quote(path) +
                         " is not initialised; run 'homepot-admin init'");
  }
  return Status::Error("registry " + Quote(path) + " has schema version " +
                       std::to_string(*found) +
                       "; run 'homepot-admin init' to migrate it to version " +
                       std::to_string(version));
}

}  // namespace homepot::admin
