// Internals of homepot-admin shared by the command files (admin.cc,
// device_commands.cc, acl_commands.cc, log_commands.cc). Not part of the tool's
// contract; admin.h is.
#ifndef HOMEPOT_ADMIN_COMMANDS_H_
#define HOMEPOT_ADMIN_COMMANDS_H_

#include <cstdint>
#include <iosfwd>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "admin/admin.h"
#include "admin/validate.h"
#include "database.h"
#include "device.h"
#include "status.h"

namespace homepot::admin::internal {

// Everything a command may touch.
struct Context {
  const AdminEnv& env;
  std::istream& in;
  std::ostream& out;
  std::ostream& err;
  // The registry: a SQLite file's path or a PostgreSQL URL (IsPostgresUrl).
  std::string db_path;
  // db_path as messages name it: a URL with its password masked.
  std::string db_name;
  int schema_version = 0;  // the version of env.schema_sql
  // Set by UsageError(): the failure is a malformed command line (exit 2).
  bool usage_error = false;
};

// Returns an error for a malformed command line and marks it as such.
Status UsageError(Context* ctx, std::string message);

// Prints "homepot-admin: warning: <message>" on ctx->err.
void Warn(Context* ctx, std::string_view message);

// The words after the command name, split into positionals, options that take
// a value (--name VALUE or --name=VALUE) and flags (--name). "--" ends the
// options. An unknown or repeated option, or one missing its value, is a
// usage error naming `command`.
struct CommandLine {
  std::vector<std::string> positional;
  std::map<std::string, std::string, std::less<>> values;
  std::set<std::string, std::less<>> flags;

  bool Has(std::string_view flag) const { return flags.count(flag) > 0; }
  std::optional<std::string> Get(std::string_view option) const;
};
struct OptionSpec {
  std::vector<std::string_view> with_value;
  std::vector<std::string_view> flags;
};
Result<CommandLine> ParseCommandLine(Context* ctx, std::string_view command,
                                     const std::vector<std::string>& words,
                                     const OptionSpec& spec);

// Usage error unless there are exactly `names.size()` positionals, which
// `names` describes ("ID", "FILTER", ...).
Status ExpectPositionals(Context* ctx, std::string_view command,
                         const CommandLine& line,
                         const std::vector<std::string_view>& names);

// The optional "[ID]" of a listing command: at most one positional, a valid
// device id when present.
Result<std::optional<std::string>> OptionalDeviceId(Context* ctx,
                                                    std::string_view command,
                                                    const CommandLine& line);

// The "FILE" argument of an import command (no options), read whole.
struct InputFile {
  std::string path;
  std::string text;
};
Result<InputFile> ReadFileArgument(Context* ctx, std::string_view command,
                                   const std::vector<std::string>& words);

// Opens the registry (which must exist and be at the current schema
// version). Read-only commands pass Database::Mode::kReadOnly (on
// PostgreSQL, the session's transactions are then read-only).
Result<Database> OpenRegistry(Context* ctx, Database::Mode mode);

// Prefixes a database failure with what was being done.
Status DbError(std::string_view doing, const Status& status);

// True when `device_id` is in `devices`.
Result<bool> DeviceExists(Database* db, std::string_view device_id);
// Error "unknown device 'ID'" unless it exists.
Status RequireDevice(Database* db, std::string_view device_id);

// Inside a write transaction: on PostgreSQL, locks acl_rules against other
// writers until the transaction ends (readers go on), so that the check of
// InsertAclRule still holds when the transaction commits; on SQLite the
// transaction's BEGIN IMMEDIATE already does.
Status LockAclRules(Database* db);

// Inserts the ACL rule unless an identical one exists (device NULL compares
// equal to NULL here, unlike in a UNIQUE constraint). True when inserted.
Result<bool> InsertAclRule(Database* db,
                           const std::optional<std::string>& device,
                           std::string_view filter, RuleAccess access);

// "COLLATE \"C\"" on PostgreSQL, "" on SQLite: appended to a text
// expression, it orders and compares it bytewise on both (SQLite's default),
// whatever the PostgreSQL database's collation.
std::string_view ByteOrder(const Database& db);

// Unix milliseconds now: ctx->env.wall_ms, else the system clock.
int64_t NowMs(const Context& ctx);

// A duration as a whole number and a unit, s, m, h or d ("30m", "6h",
// "7d"), in seconds: 1 second to 36500 days. Errors name `option`.
Result<int64_t> ParseDuration(std::string_view option, std::string_view text);

// Writes `rows` as aligned columns under `header`; the last column is not
// padded. Cells must already be printable (see Printable()).
void PrintTable(std::ostream& out, const std::vector<std::string>& header,
                const std::vector<std::vector<std::string>>& rows);

// A broker node's name as a table cell: printable, "-" for the empty node
// of rows written before nodes were recorded.
std::string NodeCell(std::string_view node);

// Commands. `words` are the arguments after the command's own name(s).
Status RunInit(Context* ctx, const std::vector<std::string>& words);
Status RunStats(Context* ctx, const std::vector<std::string>& words);
Status RunDevice(Context* ctx, const std::vector<std::string>& words);
Status RunDevices(Context* ctx, const std::vector<std::string>& words);
Status RunImportPasswd(Context* ctx, const std::vector<std::string>& words);
Status RunAcl(Context* ctx, const std::vector<std::string>& words);
Status RunImportAcl(Context* ctx, const std::vector<std::string>& words);
Status RunLog(Context* ctx, const std::vector<std::string>& words);
Status RunDelivery(Context* ctx, const std::vector<std::string>& words);

// Reads a whole file for the import commands.
Result<std::string> ReadFile(const std::string& path);

}  // namespace homepot::admin::internal

#endif  // HOMEPOT_ADMIN_COMMANDS_H_
