// homepot-admin: administration of the HOMEPOT device registry
// (docs/operating.md).
//
//   homepot-admin [--db PATH|URL] COMMAND ...    (default: $HOMEPOT_DB)
//
// The registry is a SQLite file (PATH) or a PostgreSQL database (a
// postgresql:// or postgres:// URL, IsPostgresUrl of common/database.h); every
// command works on both. Messages name a URL with its password masked
// (pg::MaskedUrl).
//
// RunAdmin is the whole tool minus the process: main.cc hands it argv, the
// standard streams and the environment; tests hand it string streams and a
// temporary file. Contract:
// - Success: exit code 0, a short confirmation or the listing on `out`.
// - Failure: exit code 1 (refused: bad value, unknown device, database
//   error) or 2 (the command line does not parse), exactly one line
//   "homepot-admin: <reason>" on `err`, and the registry unchanged: every
//   change runs in one transaction.
// - Warnings (e.g. skipped lines of an imported file) go to `err` as
//   "homepot-admin: warning: ..." and do not change the exit code.
// - Passwords come from `in` (first line, trailing CR/LF removed), never from
//   the command line; hashes are never printed.
#ifndef HOMEPOT_ADMIN_ADMIN_H_
#define HOMEPOT_ADMIN_ADMIN_H_

#include <cstdint>
#include <functional>
#include <iosfwd>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "admin/registry_schema.h"

namespace homepot::admin {

inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;
inline constexpr int kExitUsage = 2;

// What the tool takes from its surroundings.
struct AdminEnv {
  // The text of schema/schema.sql; the binary embeds it at build time. Its
  // version (PRAGMA user_version) is the version this tool works with, on
  // either backend.
  std::string_view schema_sql;
  // The text of schema/postgresql.sql (embedded likewise), which init applies
  // to a PostgreSQL registry; it must create the same version.
  std::string_view postgres_schema_sql;
  // Steps from older schema versions (BuiltinMigrations() in the binary).
  std::vector<Migration> migrations = BuiltinMigrations();
  // $HOMEPOT_DB (a path or a URL), used when --db is not given.
  std::optional<std::string> default_db;
  // Set when `in` is a terminal: RunAdmin then prompts on `err`, calls
  // set_echo(false) while a password is typed (set_echo(true) after) and asks
  // for it twice.
  std::function<void(bool)> set_echo;
  // Unix milliseconds now (durations in --since count back from it); unset:
  // the system clock.
  std::function<int64_t()> wall_ms;
};

// `args` excludes the program name.
int RunAdmin(const std::vector<std::string>& args, std::istream& in,
             std::ostream& out, std::ostream& err, const AdminEnv& env);

// The usage text printed by --help.
std::string_view UsageText();

}  // namespace homepot::admin

#endif  // HOMEPOT_ADMIN_ADMIN_H_
