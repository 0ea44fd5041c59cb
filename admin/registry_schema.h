// Creating and migrating the registry. schema/schema.sql is the single
// source of truth for a fresh SQLite registry and for the current version
// number (its "PRAGMA user_version = N"); a file at an older version is
// brought forward by the Migration steps below, all in one transaction.
// schema/postgresql.sql creates the same version on PostgreSQL, where the
// version is registry_meta.schema_version, 3 is the first, and the schema
// file itself upgrades an older registry.
#ifndef HOMEPOT_ADMIN_REGISTRY_SCHEMA_H_
#define HOMEPOT_ADMIN_REGISTRY_SCHEMA_H_

#include <string>
#include <string_view>
#include <vector>

#include "database.h"
#include "status.h"

namespace homepot::admin {

// One step that upgrades a registry from `from_version` to from_version + 1.
// `sql` runs inside the caller's transaction, so it must not contain BEGIN,
// COMMIT or PRAGMA user_version; the caller sets the version.
struct Migration {
  int from_version;
  std::string_view sql;
};

// The steps this build knows, one per version below schema.sql's: 1 -> 2
// adds device_stats.expired, .acked, .sessions and .subscribed and the
// notification_log table; 2 -> 3 adds the change feed (registry_changes and
// its triggers, replacing the generation triggers), the 'bridge' device type,
// per-node device_stats rows (sessions and subscribed start at 0: the plugin
// resets them when it starts), the fleet_stats view and notification_log.node;
// 3 -> 4 adds write_marks, rebuilds notification_log and registry_changes
// with their CHECK lists spelled as ORs (each row of them written costs
// less), and gives the change feed its bound (the registry_changes_kept
// view: the last 50000 generations, not 100000) and the triggers that keep
// to it.
// When schema.sql moves to version N+1, append {N, "..."}.
const std::vector<Migration>& BuiltinMigrations();

// The version that `schema_sql` sets with "PRAGMA user_version = N".
Result<int> SchemaVersionOf(std::string_view schema_sql);

// What InitRegistry did.
struct InitOutcome {
  int from_version = 0;  // 0 = the file had no registry yet
  int to_version = 0;
};

// Brings the SQLite registry open in `db` to the version of `schema_sql`:
// - version 0 and no tables: applies `schema_sql` (itself one transaction);
// - version 0 with tables: refuses (not a HOMEPOT registry);
// - an older version: runs `migrations` from it upward in one transaction;
// - the current version: nothing;
// - a newer version: refuses, naming both versions.
// `path` only serves the messages.
Result<InitOutcome> InitRegistry(Database* db, const std::string& path,
                                 std::string_view schema_sql,
                                 const std::vector<Migration>& migrations);

// Brings the PostgreSQL registry open in `db` to `version`:
// - no registry_meta table and none of the registry's tables: applies
//   `postgres_schema_sql` (itself one transaction, idempotent; two processes
//   applying it at once take turns);
// - registry tables without registry_meta: refuses (not a HOMEPOT registry);
// - `version`: nothing;
// - 3 (the first version on PostgreSQL) up to `version`: applies
//   `postgres_schema_sql` again, which brings the registry to `version`
//   (so every change to that file comes with a new version);
// - another version: refuses, naming both.
// `name` (the URL with its password masked) only serves the messages.
Result<InitOutcome> InitPostgresRegistry(Database* db, const std::string& name,
                                         std::string_view postgres_schema_sql,
                                         int version);

// OK when the registry in `db` (either backend) is exactly at `version`;
// otherwise says what to run (init) or that the tool is too old.
Status CheckRegistryVersion(Database* db, const std::string& path, int version);

// The schema version of the registry in `db`: PRAGMA user_version on SQLite,
// registry_meta.schema_version on PostgreSQL; 0 when there is none yet.
Result<int> ReadSchemaVersion(Database* db);

}  // namespace homepot::admin

#endif  // HOMEPOT_ADMIN_REGISTRY_SCHEMA_H_
