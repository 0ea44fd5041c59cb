#include "admin/admin.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <sstream>
#include <utility>

#include "admin/commands.h"

namespace homepot::admin {
namespace internal {
namespace {

constexpr std::string_view kUsage =
    R"(usage: homepot-admin [--db PATH|URL] COMMAND [ARGS]

The registry is the SQLite file PATH or the PostgreSQL database URL
(postgresql://USER@HOST:PORT/DB?passfile=FILE), or $HOMEPOT_DB when --db is
not given. Every command works on both.

  init                                   create or migrate the registry
                                         (on PostgreSQL: apply the schema)
  device add ID --type TYPE [--token TOPIC] [--metadata JSON]
             [--iterations N] [--generate-password]
                                         password read from stdin, never argv
  device passwd ID [--iterations N] [--generate-password]
                                         new password from stdin
  device enable|disable|remove ID
  device list [--json]
  devices --unreachable [--idle DURATION] [--json]
                                         connected but not subscribed to
                                         their token, or not seen for
                                         DURATION (default 24h; 30m, 6h, 7d)
  acl grant ID|--all read|write|readwrite|deny FILTER
  acl revoke ID|--all FILTER
  acl list [ID] [--json]
  import-passwd FILE                     a Mosquitto password_file
  import-acl FILE                        a Mosquitto acl_file (user/topic/pattern)
  stats [ID] [--by-node | --node NAME] [--json]
                                         per-device delivery statistics,
                                         summed over the broker nodes, or
                                         per node
  log [--device ID] [--message ID] [--node NAME] [--since TIME] [--limit N]
      [--json]                           delivery log rows, newest first
  delivery [--since TIME] [--node NAME] [--json]
                                         delivery rate and ack latency per
                                         target device

The password is the first line of standard input (trailing CR/LF removed).
--generate-password makes a random one and prints it once, alone on stdout.
TIME is an RFC 3339 time (2026-11-18T08:00:00Z) or a duration back from now
(30s, 30m, 12h, 7d).
Exit status: 0 done, 1 refused (nothing changed), 2 bad command line.
)";

// Width of `text` on a terminal, counting UTF-8 code points.
size_t DisplayWidth(std::string_view text) {
  return static_cast<size_t>(std::count_if(
      text.begin(), text.end(),
      [](char c) { return (static_cast<unsigned char>(c) & 0xC0) != 0x80; }));
}

// The columns of `stats` (JSON keys; the table's header says the same in
// capitals), in the order the statement selects them after device_id (and
// node, per node): figures, then times (NULL = never).
constexpr const char* kStatsFigures[] = {"published", "delivered", "rejected",
                                         "expired",   "acked",     "sessions",
                                         "subscribed"};
constexpr const char* kStatsTimes[] = {"last_connect", "last_publish",
                                       "last_delivery"};
constexpr int kStatsFigureCount = std::size(kStatsFigures);
constexpr int kStatsTimeCount = std::size(kStatsTimes);

// Prints the rows of `stmt`: device_id, then node when `per_node`, then the
// figures and times above.
Result<int64_t> PrintStatsTable(Context* ctx, Statement* stmt, bool per_node,
                                bool json) {
  const int first = per_node ? 2 : 1;  // column of the first figure
  std::vector<std::vector<std::string>> rows;
  nlohmann::ordered_json list = nlohmann::ordered_json::array();
  for (;;) {
    Result<bool> row = stmt->Step();
    if (!row.ok()) return row.status();
    if (!*row) break;
    if (json) {
      nlohmann::ordered_json item;
      item["device_id"] = stmt->Text(0);
      if (per_node) item["node"] = stmt->Text(1);
      for (int i = 0; i < kStatsFigureCount; ++i) {
        item[kStatsFigures[i]] = stmt->Int(first + i);
      }
      for (int i = 0; i < kStatsTimeCount; ++i) {
        const int col = first + kStatsFigureCount + i;
        item[kStatsTimes[i]] = stmt->IsNull(col)
                                   ? nlohmann::ordered_json(nullptr)
                                   : nlohmann::ordered_json(stmt->Text(col));
      }
      list.push_back(std::move(item));
    } else {
      std::vector<std::string> cells = {Printable(stmt->Text(0))};
      if (per_node) cells.push_back(NodeCell(stmt->Text(1)));
      for (int i = 0; i < kStatsFigureCount; ++i) {
        cells.push_back(std::to_string(stmt->Int(first + i)));
      }
      for (int i = 0; i < kStatsTimeCount; ++i) {
        const int col = first + kStatsFigureCount + i;
        cells.push_back(stmt->IsNull(col) ? "-" : Printable(stmt->Text(col)));
      }
      rows.push_back(std::move(cells));
    }
  }
  if (json) {
    ctx->out << list.dump(2, ' ', false,
                          nlohmann::ordered_json::error_handler_t::replace)
             << "\n";
    return static_cast<int64_t>(list.size());
  }
  std::vector<std::string> header = {"DEVICE"};
  if (per_node) header.push_back("NODE");
  header.insert(
      header.end(),
      {"PUBLISHED", "DELIVERED", "REJECTED", "EXPIRED", "ACKED", "SESSIONS",
       "SUBSCRIBED", "LAST_CONNECT", "LAST_PUBLISH", "LAST_DELIVERY"});
  PrintTable(ctx->out, header, rows);
  return static_cast<int64_t>(rows.size());
}

}  // namespace

std::string NodeCell(std::string_view node) {
  return node.empty() ? "-" : Printable(node);
}

Status UsageError(Context* ctx, std::string message) {
  ctx->usage_error = true;
  return Status::Error(std::move(message));
}

void Warn(Context* ctx, std::string_view message) {
  ctx->err << "homepot-admin: warning: " << message << "\n";
}

std::optional<std::string> CommandLine::Get(std::string_view option) const {
  const auto it = values.find(option);
  if (it == values.end()) return std::nullopt;
  return it->second;
}

Result<CommandLine> ParseCommandLine(Context* ctx, std::string_view command,
                                     const std::vector<std::string>& words,
                                     const OptionSpec& spec) {
  const auto known = [](const std::vector<std::string_view>& names,
                        std::string_view name) {
    return std::find(names.begin(), names.end(), name) != names.end();
  };
  CommandLine line;
  bool options_done = false;
  for (size_t i = 0; i < words.size(); ++i) {
    const std::string& word = words[i];
    if (options_done || word.size() < 2 || word[0] != '-') {
      line.positional.push_back(word);
      continue;
    }
    if (word == "--") {
      options_done = true;
      continue;
    }
    std::string name = word;
    std::optional<std::string> inline_value;
    if (const size_t eq = word.find('='); eq != std::string::npos) {
      name = word.substr(0, eq);
      inline_value = word.substr(eq + 1);
    }
    if (known(spec.flags, name) && !inline_value) {
      if (!line.flags.insert(name).second) {
        return UsageError(ctx,
                          std::string(command) + ": " + name + " given twice");
      }
      continue;
    }
    if (!known(spec.with_value, name)) {
      return UsageError(ctx, std::string(command) + ": unknown option " +
                                 Quote(word) + " (try --help)");
    }
    if (!inline_value) {
      if (i + 1 >= words.size()) {
        return UsageError(
            ctx, std::string(command) + ": " + name + " needs a value");
      }
      inline_value = words[++i];
    }
    if (!line.values.emplace(name, *inline_value).second) {
      return UsageError(ctx,
                        std::string(command) + ": " + name + " given twice");
    }
  }
  return line;
}

Status ExpectPositionals(Context* ctx, std::string_view command,
                         const CommandLine& line,
                         const std::vector<std::string_view>& names) {
  if (line.positional.size() == names.size()) return Status::Ok();
  if (line.positional.size() < names.size()) {
    return UsageError(ctx, std::string(command) + ": missing " +
                               std::string(names[line.positional.size()]));
  }
  return UsageError(ctx, std::string(command) + ": unexpected argument " +
                             Quote(line.positional[names.size()]));
}

Result<std::optional<std::string>> OptionalDeviceId(Context* ctx,
                                                    std::string_view command,
                                                    const CommandLine& line) {
  if (line.positional.size() > 1) {
    return UsageError(ctx, std::string(command) + ": unexpected argument " +
                               Quote(line.positional[1]));
  }
  std::optional<std::string> id;
  if (!line.positional.empty()) {
    id = line.positional[0];
    if (Status s = ValidateDeviceId(*id); !s.ok()) return s;
  }
  return id;
}

Result<InputFile> ReadFileArgument(Context* ctx, std::string_view command,
                                   const std::vector<std::string>& words) {
  Result<CommandLine> line = ParseCommandLine(ctx, command, words, {});
  if (!line.ok()) return line.status();
  if (Status s = ExpectPositionals(ctx, command, *line, {"FILE"}); !s.ok()) {
    return s;
  }
  InputFile file{line->positional[0], {}};
  Result<std::string> text = ReadFile(file.path);
  if (!text.ok()) return text.status();
  file.text = std::move(*text);
  return file;
}

namespace {

// Opens ctx->db_path, creating a SQLite file in kCreate mode.
Result<Database> OpenLocation(Context* ctx, Database::Mode mode) {
  if (IsPostgresUrl(ctx->db_path)) {
    // The error names the URL (password masked) itself.
    Result<Database> db = Database::OpenPostgres(ctx->db_path);
    if (!db.ok()) {
      return Status::Error("cannot connect to the registry: " +
                           db.status().message());
    }
    if (mode == Database::Mode::kReadOnly) {
      if (Status s =
              db->Exec("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY");
          !s.ok()) {
        return Status::Error("cannot connect to the registry: " + s.message());
      }
    }
    return db;
  }
  Result<Database> db = Database::Open(ctx->db_path, mode);
  if (!db.ok()) {
    return Status::Error("cannot open registry " + Quote(ctx->db_name) + ": " +
                         db.status().message());
  }
  return db;
}

}  // namespace

Result<Database> OpenRegistry(Context* ctx, Database::Mode mode) {
  std::error_code ec;
  if (!IsPostgresUrl(ctx->db_path) &&
      !std::filesystem::exists(ctx->db_path, ec)) {
    return Status::Error("registry " + Quote(ctx->db_name) +
                         " does not exist; run 'homepot-admin init' first");
  }
  Result<Database> db = OpenLocation(ctx, mode);
  if (!db.ok()) return db.status();
  if (Status s = CheckRegistryVersion(&*db, ctx->db_name, ctx->schema_version);
      !s.ok()) {
    return s;
  }
  return db;
}

std::string_view ByteOrder(const Database& db) {
  return db.backend() == Backend::kPostgres ? " COLLATE \"C\"" : "";
}

int64_t NowMs(const Context& ctx) {
  if (ctx.env.wall_ms) return ctx.env.wall_ms();
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

Status DbError(std::string_view doing, const Status& status) {
  return Status::Error(std::string(doing) + ": " + status.message());
}

Result<bool> DeviceExists(Database* db, std::string_view device_id) {
  Result<Statement> stmt =
      db->Prepare("SELECT 1 FROM devices WHERE device_id = ?1");
  if (!stmt.ok()) return stmt.status();
  stmt->Bind(1, device_id);
  return stmt->Step();
}

Status RequireDevice(Database* db, std::string_view device_id) {
  Result<bool> exists = DeviceExists(db, device_id);
  if (!exists.ok()) return DbError("looking up the device", exists.status());
  if (!*exists) return Status::Error("unknown device " + Quote(device_id));
  return Status::Ok();
}

Status LockAclRules(Database* db) {
  if (db->backend() != Backend::kPostgres) return Status::Ok();
  return db->Exec("LOCK TABLE acl_rules IN SHARE ROW EXCLUSIVE MODE");
}

Result<bool> InsertAclRule(Database* db,
                           const std::optional<std::string>& device,
                           std::string_view filter, RuleAccess access) {
  Result<Statement> stmt = db->Prepare(
      "INSERT INTO acl_rules (device_id, topic_filter, access) "
      "SELECT ?1, ?2, ?3 WHERE NOT EXISTS (SELECT 1 FROM acl_rules "
      "WHERE (device_id = ?1 OR (device_id IS NULL AND ?1 IS NULL)) "
      "AND topic_filter = ?2 AND access = ?3)");
  if (!stmt.ok()) return stmt.status();
  stmt->BindOptional(1, device).Bind(2, filter).Bind(3, RuleAccessWord(access));
  if (Status s = stmt->Run(); !s.ok()) return s;
  return db->Changes() > 0;
}

void PrintTable(std::ostream& out, const std::vector<std::string>& header,
                const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> widths(header.size(), 0);
  const auto measure = [&](const std::vector<std::string>& row) {
    for (size_t i = 0; i < row.size() && i < widths.size(); ++i) {
      widths[i] = std::max(widths[i], DisplayWidth(row[i]));
    }
  };
  measure(header);
  for (const auto& row : rows) measure(row);
  const auto print = [&](const std::vector<std::string>& row) {
    for (size_t i = 0; i < row.size(); ++i) {
      out << row[i];
      if (i + 1 < row.size()) {
        out << std::string(widths[i] - DisplayWidth(row[i]) + 2, ' ');
      }
    }
    out << "\n";
  };
  print(header);
  for (const auto& row : rows) print(row);
}

Result<std::string> ReadFile(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    return Status::Error("cannot read " + Quote(path) + ": is a directory");
  }
  std::ifstream file(path, std::ios::binary);
  if (!file) {
    return Status::Error("cannot read " + Quote(path) + ": " +
                         std::strerror(errno));
  }
  std::ostringstream text;
  text << file.rdbuf();
  if (file.bad()) return Status::Error("cannot read " + Quote(path));
  return text.str();
}

Status RunInit(Context* ctx, const std::vector<std::string>& words) {
  Result<CommandLine> line = ParseCommandLine(ctx, "init", words, {});
  if (!line.ok()) return line.status();
  if (Status s = ExpectPositionals(ctx, "init", *line, {}); !s.ok()) return s;

  const std::string& path = ctx->db_name;
  Result<Database> db = OpenLocation(ctx, Database::Mode::kCreate);
  if (!db.ok()) return db.status();
  Result<InitOutcome> outcome =
      db->backend() == Backend::kPostgres
          ? InitPostgresRegistry(&*db, path, ctx->env.postgres_schema_sql,
                                 ctx->schema_version)
          : InitRegistry(&*db, path, ctx->env.schema_sql, ctx->env.migrations);
  if (!outcome.ok()) return outcome.status();
  const std::string version = std::to_string(outcome->to_version);
  if (outcome->from_version == 0) {
    ctx->out << "created registry " << Quote(path) << " (schema version "
             << version << ")\n";
  } else if (outcome->from_version == outcome->to_version) {
    ctx->out << "registry " << Quote(path) << " is up to date (schema version "
             << version << ")\n";
  } else {
    ctx->out << "migrated registry " << Quote(path) << " from schema version "
             << outcome->from_version << " to " << version << "\n";
  }
  return Status::Ok();
}

Status RunStats(Context* ctx, const std::vector<std::string>& words) {
  Result<CommandLine> line = ParseCommandLine(
      ctx, "stats", words, {{"--node"}, {"--json", "--by-node"}});
  if (!line.ok()) return line.status();
  Result<std::optional<std::string>> parsed =
      OptionalDeviceId(ctx, "stats", *line);
  if (!parsed.ok()) return parsed.status();
  const std::optional<std::string>& id = *parsed;
  const std::optional<std::string> node = line->Get("--node");
  if (node && line->Has("--by-node")) {
    return UsageError(ctx, "stats: --by-node and --node exclude each other");
  }
  const bool per_node = node || line->Has("--by-node");
  Result<Database> db = OpenRegistry(ctx, Database::Mode::kReadOnly);
  if (!db.ok()) return db.status();
  if (id) {
    // A known device without a row yet shows zeros.
    if (Status s = RequireDevice(&*db, *id); !s.ok()) {
      Result<Statement> any =
          db->Prepare("SELECT 1 FROM device_stats WHERE device_id = ?1");
      if (!any.ok()) return DbError("reading statistics", any.status());
      any->Bind(1, *id);
      Result<bool> found = any->Step();
      if (!found.ok()) return DbError("reading statistics", found.status());
      if (!*found) return s;
    }
  }
  // The fleet: fleet_stats sums every node's row of a device. Per node: the
  // rows as the nodes wrote them.
  constexpr const char* kFleetOfOne =
      "SELECT ?1, coalesce(s.published, 0), coalesce(s.delivered, 0), "
      "coalesce(s.rejected, 0), coalesce(s.expired, 0), "
      "coalesce(s.acked, 0), coalesce(s.sessions, 0), "
      "coalesce(s.subscribed, 0), s.last_connect, s.last_publish, "
      "s.last_delivery FROM (SELECT 1) AS one LEFT JOIN fleet_stats s "
      "ON s.device_id = ?1";
  const std::string order(ByteOrder(*db));
  const std::string fleet =
      "SELECT device_id, published, delivered, rejected, expired, acked, "
      "sessions, subscribed, last_connect, last_publish, last_delivery "
      "FROM fleet_stats ORDER BY device_id" +
      order;
  const std::string per_node_sql =
      "SELECT device_id, node, published, delivered, rejected, expired, "
      "acked, sessions, subscribed, last_connect, last_publish, "
      "last_delivery FROM device_stats "
      "WHERE (CAST(?1 AS TEXT) IS NULL OR device_id = ?1) "
      "AND (CAST(?2 AS TEXT) IS NULL OR node = ?2) ORDER BY device_id" +
      order + ", node" + order;
  Result<Statement> stmt = db->Prepare(
      per_node ? per_node_sql : (id ? std::string(kFleetOfOne) : fleet));
  if (!stmt.ok()) return DbError("reading statistics", stmt.status());
  if (per_node) {
    stmt->BindOptional(1, id).BindOptional(2, node);
  } else if (id) {
    stmt->Bind(1, *id);
  }
  Result<int64_t> printed =
      PrintStatsTable(ctx, &*stmt, per_node, line->Has("--json"));
  if (!printed.ok()) return DbError("reading statistics", printed.status());
  return Status::Ok();
}

}  // namespace internal

std::string_view UsageText() { return internal::kUsage; }

int RunAdmin(const std::vector<std::string>& args, std::istream& in,
             std::ostream& out, std::ostream& err, const AdminEnv& env) {
  internal::Context ctx{env, in, out, err, {}, {}};
  // One line: a server's message may span several ("...\n\tIs the server
  // running ...").
  const auto fail = [&](const Status& status) {
    std::string message = status.message();
    while (!message.empty() &&
           std::isspace(static_cast<unsigned char>(message.back()))) {
      message.pop_back();
    }
    for (size_t at = message.find('\n'); at != std::string::npos;
         at = message.find('\n', at)) {
      size_t end = at + 1;
      while (end < message.size() &&
             (message[end] == '\t' || message[end] == ' ' ||
              message[end] == '\n')) {
        ++end;
      }
      message.replace(at, end - at, " ");
    }
    err << "homepot-admin: " << message << "\n";
    return ctx.usage_error ? kExitUsage : kExitFailure;
  };

  // Global options come before the command.
  std::optional<std::string> db_path;
  size_t i = 0;
  for (; i < args.size(); ++i) {
    const std::string& word = args[i];
    if (word == "--help" || word == "-h" || word == "help") {
      out << internal::kUsage;
      return kExitOk;
    }
    if (word == "--db") {
      if (i + 1 >= args.size()) {
        return fail(internal::UsageError(&ctx, "--db needs a path or URL"));
      }
      db_path = args[++i];
    } else if (word.rfind("--db=", 0) == 0) {
      db_path = word.substr(5);
    } else if (word.size() > 1 && word[0] == '-') {
      return fail(internal::UsageError(
          &ctx, "unknown option " + Quote(word) + " (try --help)"));
    } else {
      break;
    }
  }
  if (i >= args.size()) {
    return fail(internal::UsageError(&ctx, "missing command (try --help)"));
  }
  const std::string& command = args[i];
  const std::vector<std::string> words(args.begin() + i + 1, args.end());
  // "homepot-admin device add --help" and the like.
  for (const std::string& word : words) {
    if (word == "--") break;
    if (word == "--help" || word == "-h") {
      out << internal::kUsage;
      return kExitOk;
    }
  }

  using Handler =
      Status (*)(internal::Context*, const std::vector<std::string>&);
  static const std::pair<std::string_view, Handler> kCommands[] = {
      {"init", internal::RunInit},
      {"device", internal::RunDevice},
      {"devices", internal::RunDevices},
      {"acl", internal::RunAcl},
      {"import-passwd", internal::RunImportPasswd},
      {"import-acl", internal::RunImportAcl},
      {"stats", internal::RunStats},
      {"log", internal::RunLog},
      {"delivery", internal::RunDelivery},
  };
  Handler handler = nullptr;
  for (const auto& [name, fn] : kCommands) {
    if (command == name) handler = fn;
  }
  if (handler == nullptr) {
    return fail(internal::UsageError(
        &ctx, "unknown command " + Quote(command) + " (try --help)"));
  }

  if (!db_path) db_path = env.default_db;
  if (!db_path || db_path->empty()) {
    return fail(internal::UsageError(
        &ctx, "no registry given: use --db PATH|URL or set HOMEPOT_DB"));
  }
  ctx.db_path = *db_path;
  ctx.db_name = IsPostgresUrl(*db_path) ? pg::MaskedUrl(*db_path) : *db_path;
  Result<int> version = SchemaVersionOf(env.schema_sql);
  if (!version.ok()) return fail(version.status());
  ctx.schema_version = *version;

  try {
    Status s = handler(&ctx, words);
    if (!s.ok()) return fail(s);
  } catch (const std::exception& e) {
    return fail(Status::Error(std::string("internal error: ") + e.what()));
  }
  return kExitOk;
}

}  // namespace homepot::admin
