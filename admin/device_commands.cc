// homepot-admin device ..., devices and import-passwd.
#include <cstdint>
#include <istream>
#include <nlohmann/json.hpp>
#include <ostream>
#include <utility>

#include "admin/commands.h"
#include "admin/mosquitto_files.h"
#include "credentials.h"
#include "rfc3339.h"

namespace homepot::admin::internal {
namespace {

using Json = nlohmann::ordered_json;

// The new password: generated (and printed by the caller) or the first line
// of ctx->in. With a terminal, prompts without echo and asks twice.
Result<std::string> ReadPassword(Context* ctx) {
  const auto read_line =
      [&](std::string_view prompt) -> std::optional<std::string> {
    const bool terminal = static_cast<bool>(ctx->env.set_echo);
    if (terminal) {
      ctx->err << prompt << std::flush;
      ctx->env.set_echo(false);
    }
    std::string line;
    const bool got = static_cast<bool>(std::getline(ctx->in, line));
    if (terminal) {
      ctx->env.set_echo(true);
      ctx->err << "\n";
    }
    if (!got) return std::nullopt;
    while (!line.empty() && (line.back() == '\r' || line.back() == '\n')) {
      line.pop_back();
    }
    return line;
  };
  std::optional<std::string> password = read_line("Password: ");
  if (!password) {
    return Status::Error(
        "no password on standard input (pipe it in, or use "
        "--generate-password)");
  }
  if (password->empty()) {
    return Status::Error(
        "empty password on standard input (use --generate-password for a "
        "random one)");
  }
  if (password->size() > kMaxPasswordBytes) {
    return Status::Error("password longer than " +
                         std::to_string(kMaxPasswordBytes) + " bytes");
  }
  if (password->find('\0') != std::string::npos) {
    return Status::Error("password contains a NUL byte");
  }
  if (ctx->env.set_echo) {
    std::optional<std::string> again = read_line("Repeat password: ");
    if (!again || *again != *password) {
      return Status::Error("passwords do not match");
    }
  }
  return *std::move(password);
}

struct NewPassword {
  std::string encoded_hash;
  std::optional<std::string> generated;  // to print once
};

Result<NewPassword> MakePassword(Context* ctx, const CommandLine& line) {
  int iterations = kDefaultIterations;
  if (std::optional<std::string> text = line.Get("--iterations")) {
    Result<int> parsed = ParseIterations(*text);
    if (!parsed.ok()) return parsed.status();
    iterations = *parsed;
  }
  NewPassword result;
  std::string password;
  if (line.Has("--generate-password")) {
    Result<std::string> secret = GenerateSecret();
    if (!secret.ok()) {
      return Status::Error("cannot generate a password: " +
                           secret.status().message());
    }
    password = *secret;
    result.generated = *secret;
  } else {
    Result<std::string> typed = ReadPassword(ctx);
    if (!typed.ok()) return typed.status();
    password = std::move(*typed);
  }
  Result<PasswordHash> hash = HashPassword(password, iterations);
  if (!hash.ok()) {
    return Status::Error("cannot hash the password: " +
                         hash.status().message());
  }
  result.encoded_hash = EncodePasswordHash(*hash);
  return result;
}

// Prints the one line of output: the generated password alone (so that
// `pw=$(homepot-admin device add ... --generate-password)` captures it), or
// else `confirmation`.
void PrintDone(Context* ctx, const NewPassword& password,
               const std::string& confirmation) {
  ctx->out << (password.generated ? *password.generated : confirmation) << "\n";
}

// Error unless `type` is in device_types; the message lists the known ones.
Status RequireType(Database* db, std::string_view type) {
  Result<Statement> stmt =
      db->Prepare("SELECT name FROM device_types ORDER BY name");
  if (!stmt.ok()) return DbError("reading device types", stmt.status());
  std::string known;
  for (;;) {
    Result<bool> row = stmt->Step();
    if (!row.ok()) return DbError("reading device types", row.status());
    if (!*row) break;
    const std::string name = stmt->Text(0);
    if (name == type) return Status::Ok();
    known += (known.empty() ? "" : ", ") + Printable(name);
  }
  return Status::Error("unknown device type " + Quote(type) +
                       " (known: " + known + ")");
}

// Checks made before reading the password and again inside the transaction.
Status CheckAddable(Database* db, std::string_view id, std::string_view type) {
  if (Status s = RequireType(db, type); !s.ok()) return s;
  Result<bool> exists = DeviceExists(db, id);
  if (!exists.ok()) return DbError("looking up the device", exists.status());
  if (*exists) return Status::Error("device " + Quote(id) + " already exists");
  return Status::Ok();
}

Status DeviceAdd(Context* ctx, const std::vector<std::string>& words) {
  constexpr std::string_view kCommand = "device add";
  Result<CommandLine> line =
      ParseCommandLine(ctx, kCommand, words,
                       {{"--type", "--token", "--metadata", "--iterations"},
                        {"--generate-password"}});
  if (!line.ok()) return line.status();
  if (Status s = ExpectPositionals(ctx, kCommand, *line, {"ID"}); !s.ok()) {
    return s;
  }
  const std::string& id = line->positional[0];
  if (Status s = ValidateDeviceId(id); !s.ok()) return s;
  const std::optional<std::string> type = line->Get("--type");
  if (!type) return UsageError(ctx, "device add: --type TYPE is required");
  std::string token = DefaultToken(id);
  if (std::optional<std::string> given = line->Get("--token")) {
    if (Status s = ValidateToken(*given); !s.ok()) return s;
    token = *given;
  }
  std::string metadata = "{}";
  if (std::optional<std::string> given = line->Get("--metadata")) {
    if (!Json::accept(*given)) {
      return Status::Error("invalid --metadata " + Quote(*given) +
                           ": not valid JSON");
    }
    const Json parsed = Json::parse(*given);
    if (!parsed.is_object()) {
      return Status::Error("invalid --metadata " + Quote(*given) +
                           ": not a JSON object");
    }
    metadata = parsed.dump();
  }
  if (std::optional<std::string> text = line->Get("--iterations")) {
    if (Result<int> n = ParseIterations(*text); !n.ok()) return n.status();
  }

  Result<Database> db = OpenRegistry(ctx, Database::Mode::kReadWrite);
  if (!db.ok()) return db.status();
  // Fail before asking for a password, and again under the write lock.
  if (Status s = CheckAddable(&*db, id, *type); !s.ok()) return s;
  Result<NewPassword> password = MakePassword(ctx, *line);
  if (!password.ok()) return password.status();

  Result<Transaction> txn = Transaction::Begin(&*db);
  if (!txn.ok()) return DbError("cannot start a transaction", txn.status());
  if (Status s = CheckAddable(&*db, id, *type); !s.ok()) return s;
  Result<Statement> insert = db->Prepare(
      "INSERT INTO devices (device_id, device_type, password_hash, "
      "device_token, metadata) VALUES (?1, ?2, ?3, ?4, ?5)");
  if (!insert.ok()) return DbError("adding the device", insert.status());
  insert->Bind(1, id)
      .Bind(2, *type)
      .Bind(3, password->encoded_hash)
      .Bind(4, token)
      .Bind(5, metadata);
  if (Status s = insert->Run(); !s.ok()) return DbError("adding the device", s);
  if (Status s = txn->Commit(); !s.ok()) return DbError("committing", s);

  PrintDone(ctx, *password,
            "added device " + Quote(id) + " (type " + Printable(*type) + ")");
  return Status::Ok();
}

Status DevicePasswd(Context* ctx, const std::vector<std::string>& words) {
  constexpr std::string_view kCommand = "device passwd";
  Result<CommandLine> line = ParseCommandLine(
      ctx, kCommand, words, {{"--iterations"}, {"--generate-password"}});
  if (!line.ok()) return line.status();
  if (Status s = ExpectPositionals(ctx, kCommand, *line, {"ID"}); !s.ok()) {
    return s;
  }
  const std::string& id = line->positional[0];
  if (Status s = ValidateDeviceId(id); !s.ok()) return s;
  if (std::optional<std::string> text = line->Get("--iterations")) {
    if (Result<int> n = ParseIterations(*text); !n.ok()) return n.status();
  }
  Result<Database> db = OpenRegistry(ctx, Database::Mode::kReadWrite);
  if (!db.ok()) return db.status();
  if (Status s = RequireDevice(&*db, id); !s.ok()) return s;
  Result<NewPassword> password = MakePassword(ctx, *line);
  if (!password.ok()) return password.status();

  Result<Transaction> txn = Transaction::Begin(&*db);
  if (!txn.ok()) return DbError("cannot start a transaction", txn.status());
  Result<Statement> update =
      db->Prepare("UPDATE devices SET password_hash = ?2 WHERE device_id = ?1");
  if (!update.ok()) return DbError("changing the password", update.status());
  update->Bind(1, id).Bind(2, password->encoded_hash);
  if (Status s = update->Run(); !s.ok()) {
    return DbError("changing the password", s);
  }
  if (db->Changes() == 0) return Status::Error("unknown device " + Quote(id));
  if (Status s = txn->Commit(); !s.ok()) return DbError("committing", s);

  PrintDone(ctx, *password, "changed the password of device " + Quote(id));
  return Status::Ok();
}

// enable, disable and remove take one ID and nothing else.
Result<std::string> SingleId(Context* ctx, std::string_view command,
                             const std::vector<std::string>& words) {
  Result<CommandLine> line = ParseCommandLine(ctx, command, words, {});
  if (!line.ok()) return line.status();
  if (Status s = ExpectPositionals(ctx, command, *line, {"ID"}); !s.ok()) {
    return s;
  }
  if (Status s = ValidateDeviceId(line->positional[0]); !s.ok()) return s;
  return line->positional[0];
}

Status DeviceSetEnabled(Context* ctx, const std::vector<std::string>& words,
                        bool enabled) {
  const std::string_view verb = enabled ? "enable" : "disable";
  Result<std::string> id =
      SingleId(ctx, enabled ? "device enable" : "device disable", words);
  if (!id.ok()) return id.status();
  Result<Database> db = OpenRegistry(ctx, Database::Mode::kReadWrite);
  if (!db.ok()) return db.status();
  Result<Transaction> txn = Transaction::Begin(&*db);
  if (!txn.ok()) return DbError("cannot start a transaction", txn.status());
  if (Status s = RequireDevice(&*db, *id); !s.ok()) return s;
  Result<Statement> update = db->Prepare(
      "UPDATE devices SET enabled = ?2 WHERE device_id = ?1 AND enabled <> ?2");
  if (!update.ok()) return DbError(std::string(verb), update.status());
  update->Bind(1, *id).Bind(2, int64_t{enabled ? 1 : 0});
  if (Status s = update->Run(); !s.ok()) return DbError(std::string(verb), s);
  const bool changed = db->Changes() > 0;
  if (Status s = txn->Commit(); !s.ok()) return DbError("committing", s);
  if (changed) {
    ctx->out << verb << "d device " << Quote(*id) << "\n";
  } else {
    ctx->out << "device " << Quote(*id) << " is already " << verb << "d\n";
  }
  return Status::Ok();
}

Status DeviceRemove(Context* ctx, const std::vector<std::string>& words) {
  Result<std::string> id = SingleId(ctx, "device remove", words);
  if (!id.ok()) return id.status();
  Result<Database> db = OpenRegistry(ctx, Database::Mode::kReadWrite);
  if (!db.ok()) return db.status();
  Result<Transaction> txn = Transaction::Begin(&*db);
  if (!txn.ok()) return DbError("cannot start a transaction", txn.status());
  if (Status s = RequireDevice(&*db, *id); !s.ok()) return s;
  // acl_rules go with the device (ON DELETE CASCADE); so do its statistics,
  // so that a device re-added under the same id starts from zero.
  Result<Statement> rules =
      db->Prepare("SELECT count(*) FROM acl_rules WHERE device_id = ?1");
  if (!rules.ok()) return DbError("removing the device", rules.status());
  rules->Bind(1, *id);
  if (Result<bool> row = rules->Step(); !row.ok()) {
    return DbError("removing the device", row.status());
  }
  const int64_t rule_count = rules->Int(0);
  for (const char* sql : {"DELETE FROM devices WHERE device_id = ?1",
                          "DELETE FROM device_stats WHERE device_id = ?1"}) {
    Result<Statement> del = db->Prepare(sql);
    if (!del.ok()) return DbError("removing the device", del.status());
    del->Bind(1, *id);
    if (Status s = del->Run(); !s.ok())
      return DbError("removing the device", s);
  }
  if (Status s = txn->Commit(); !s.ok()) return DbError("committing", s);
  ctx->out << "removed device " << Quote(*id) << " and its " << rule_count
           << (rule_count == 1 ? " ACL rule" : " ACL rules") << "\n";
  return Status::Ok();
}

Status DeviceList(Context* ctx, const std::vector<std::string>& words) {
  constexpr std::string_view kCommand = "device list";
  Result<CommandLine> line =
      ParseCommandLine(ctx, kCommand, words, {{}, {"--json"}});
  if (!line.ok()) return line.status();
  if (Status s = ExpectPositionals(ctx, kCommand, *line, {}); !s.ok()) return s;
  Result<Database> db = OpenRegistry(ctx, Database::Mode::kReadOnly);
  if (!db.ok()) return db.status();
  Result<Statement> stmt = db->Prepare(
      "SELECT device_id, device_type, enabled, "
      "CASE WHEN coalesce(password_hash, '') <> '' THEN 1 ELSE 0 END, "
      "device_token, platform, metadata, created_at, updated_at FROM devices "
      "ORDER BY device_id" +
      std::string(ByteOrder(*db)));
  if (!stmt.ok()) return DbError("listing devices", stmt.status());
  const bool json = line->Has("--json");
  Json list = Json::array();
  std::vector<std::vector<std::string>> rows;
  for (;;) {
    Result<bool> row = stmt->Step();
    if (!row.ok()) return DbError("listing devices", row.status());
    if (!*row) break;
    const std::string id = stmt->Text(0);
    const std::string token = stmt->OptionalText(4).value_or(DefaultToken(id));
    if (json) {
      Json item;
      item["device_id"] = id;
      item["device_type"] = stmt->Text(1);
      item["enabled"] = stmt->Int(2) != 0;
      item["has_password"] = stmt->Int(3) != 0;
      item["device_token"] = token;
      item["platform"] = stmt->Text(5);
      const std::string metadata = stmt->Text(6);
      item["metadata"] =
          Json::accept(metadata) ? Json::parse(metadata) : Json(metadata);
      item["created_at"] = stmt->Text(7);
      item["updated_at"] = stmt->Text(8);
      list.push_back(std::move(item));
    } else {
      rows.push_back({Printable(id), Printable(stmt->Text(1)),
                      stmt->Int(2) != 0 ? "yes" : "no",
                      stmt->Int(3) != 0 ? "set" : "none", Printable(token),
                      Printable(stmt->Text(7))});
    }
  }
  if (json) {
    ctx->out << list.dump(2, ' ', false, Json::error_handler_t::replace)
             << "\n";
  } else {
    PrintTable(ctx->out,
               {"DEVICE", "TYPE", "ENABLED", "PASSWORD", "TOKEN", "CREATED"},
               rows);
  }
  return Status::Ok();
}

}  // namespace

// The longest duration accepted: 100 years.
constexpr int64_t kMaxDurationSeconds = int64_t{36500} * 86400;

Result<int64_t> ParseDuration(std::string_view option, std::string_view text) {
  const Status bad = Status::Error(
      "invalid " + std::string(option) + " " + Quote(text) +
      ": expected a whole number and a unit s, m, h or d (e.g. 30m, 6h, 7d), "
      "at most 36500d");
  if (text.size() < 2 || text.size() > 12) return bad;
  int64_t unit = 0;
  switch (text.back()) {
    case 's':
      unit = 1;
      break;
    case 'm':
      unit = 60;
      break;
    case 'h':
      unit = 3600;
      break;
    case 'd':
      unit = 86400;
      break;
    default:
      return bad;
  }
  int64_t value = 0;
  for (const char c : text.substr(0, text.size() - 1)) {
    if (c < '0' || c > '9') return bad;
    value = value * 10 + (c - '0');
  }
  if (value < 1 || value > kMaxDurationSeconds / unit) return bad;
  return value * unit;
}

namespace {

// devices --unreachable [--idle DURATION] [--json]: enabled devices that
// are connected without a subscription covering their token, and those not
// connected and not seen (last_connect, last_publish, last_delivery) within
// DURATION; over the fleet (fleet_stats: every broker node's sessions and
// subscriptions added, the latest times).
Status DevicesUnreachable(Context* ctx, const CommandLine& line) {
  int64_t idle_seconds = 24 * 3600;
  if (std::optional<std::string> text = line.Get("--idle")) {
    Result<int64_t> parsed = ParseDuration("--idle", *text);
    if (!parsed.ok()) return parsed.status();
    idle_seconds = *parsed;
  }
  Result<Database> db = OpenRegistry(ctx, Database::Mode::kReadOnly);
  if (!db.ok()) return db.status();
  constexpr std::string_view kDoing = "listing unreachable devices";
  // Times are RFC 3339 UTC with milliseconds: they compare bytewise as text.
  // The latest of three: SQLite's max(a, b, c) is PostgreSQL's greatest.
  const bool postgres = db->backend() == Backend::kPostgres;
  const std::string order(ByteOrder(*db));
  Result<Statement> stmt = db->Prepare(
      "WITH presence AS ("
      "  SELECT d.device_id, coalesce(s.sessions, 0) AS sessions, "
      "  coalesce(s.subscribed, 0) AS subscribed, "
      "  nullif(" +
      std::string(postgres ? "greatest" : "max") +
      "(coalesce(s.last_connect, '')" + order +
      ", coalesce(s.last_publish, '')" + order +
      ", coalesce(s.last_delivery, '')" + order +
      "), '') AS last_seen "
      "  FROM devices d LEFT JOIN fleet_stats s USING (device_id) "
      "  WHERE d.enabled = 1) "
      "SELECT device_id, CASE WHEN sessions > 0 THEN 1 ELSE 0 END, sessions, "
      "subscribed, last_seen FROM presence "
      "WHERE (sessions > 0 AND subscribed = 0) "
      "OR (sessions <= 0 AND (last_seen IS NULL OR last_seen" +
      order + " < ?1)) ORDER BY device_id" + order);
  if (!stmt.ok()) return DbError(kDoing, stmt.status());
  stmt->Bind(1, StampString(NowMs(*ctx) - idle_seconds * 1000));
  const bool json = line.Has("--json");
  Json list = Json::array();
  std::vector<std::vector<std::string>> rows;
  for (;;) {
    Result<bool> row = stmt->Step();
    if (!row.ok()) return DbError(kDoing, row.status());
    if (!*row) break;
    const bool connected = stmt->Int(1) != 0;
    const std::optional<std::string> last_seen = stmt->OptionalText(4);
    if (json) {
      Json item;
      item["device_id"] = stmt->Text(0);
      item["state"] = connected ? "connected_not_subscribed" : "not_seen";
      item["sessions"] = stmt->Int(2);
      item["subscribed"] = stmt->Int(3);
      item["last_seen"] = last_seen ? Json(*last_seen) : Json(nullptr);
      list.push_back(std::move(item));
    } else {
      std::string state = "never seen";
      if (connected) {
        state = "connected, not subscribed";
      } else if (last_seen) {
        state = "not seen";
      }
      rows.push_back({Printable(stmt->Text(0)), state,
                      std::to_string(stmt->Int(2)),
                      std::to_string(stmt->Int(3)),
                      last_seen ? Printable(*last_seen) : "-"});
    }
  }
  if (json) {
    ctx->out << list.dump(2, ' ', false, Json::error_handler_t::replace)
             << "\n";
  } else {
    PrintTable(ctx->out,
               {"DEVICE", "STATE", "SESSIONS", "SUBSCRIBED", "LAST_SEEN"},
               rows);
  }
  return Status::Ok();
}

}  // namespace

Status RunDevices(Context* ctx, const std::vector<std::string>& words) {
  constexpr std::string_view kCommand = "devices";
  Result<CommandLine> line = ParseCommandLine(
      ctx, kCommand, words, {{"--idle"}, {"--unreachable", "--json"}});
  if (!line.ok()) return line.status();
  if (Status s = ExpectPositionals(ctx, kCommand, *line, {}); !s.ok()) return s;
  if (!line->Has("--unreachable")) {
    return UsageError(ctx,
                      "devices: --unreachable is required (every device: "
                      "device list)");
  }
  return DevicesUnreachable(ctx, *line);
}

Status RunDevice(Context* ctx, const std::vector<std::string>& words) {
  if (words.empty()) {
    return UsageError(ctx,
                      "device: missing subcommand (add, passwd, enable, "
                      "disable, remove or list)");
  }
  const std::string& sub = words[0];
  const std::vector<std::string> rest(words.begin() + 1, words.end());
  if (sub == "add") return DeviceAdd(ctx, rest);
  if (sub == "passwd") return DevicePasswd(ctx, rest);
  if (sub == "enable") return DeviceSetEnabled(ctx, rest, true);
  if (sub == "disable") return DeviceSetEnabled(ctx, rest, false);
  if (sub == "remove") return DeviceRemove(ctx, rest);
  if (sub == "list") return DeviceList(ctx, rest);
  return UsageError(ctx, "device: unknown subcommand " + Quote(sub) +
                             " (add, passwd, enable, disable, remove or list)");
}

Status RunImportPasswd(Context* ctx, const std::vector<std::string>& words) {
  Result<InputFile> input = ReadFileArgument(ctx, "import-passwd", words);
  if (!input.ok()) return input.status();
  Result<PasswdFile> file = ParsePasswordFile(input->text, input->path);
  if (!file.ok()) return file.status();

  Result<Database> db = OpenRegistry(ctx, Database::Mode::kReadWrite);
  if (!db.ok()) return db.status();
  Result<Transaction> txn = Transaction::Begin(&*db);
  if (!txn.ok()) return DbError("cannot start a transaction", txn.status());
  if (!file->entries.empty()) {
    if (Status s = RequireType(&*db, "unknown"); !s.ok()) return s;
  }
  Result<Statement> update =
      db->Prepare("UPDATE devices SET password_hash = ?2 WHERE device_id = ?1");
  Result<Statement> insert = db->Prepare(
      "INSERT INTO devices (device_id, device_type, password_hash, "
      "device_token) VALUES (?1, 'unknown', ?2, ?3)");
  if (!update.ok()) return DbError("importing", update.status());
  if (!insert.ok()) return DbError("importing", insert.status());
  int added = 0;
  int updated = 0;
  for (const PasswdEntry& entry : file->entries) {
    const std::string hash = EncodePasswordHash(entry.hash);
    update->Bind(1, entry.user).Bind(2, hash);
    if (Status s = update->Run(); !s.ok()) {
      return DbError("importing user " + Quote(entry.user), s);
    }
    if (db->Changes() > 0) {
      ++updated;
    } else {
      insert->Bind(1, entry.user)
          .Bind(2, hash)
          .Bind(3, DefaultToken(entry.user));
      if (Status s = insert->Run(); !s.ok()) {
        return DbError("importing user " + Quote(entry.user), s);
      }
      ++added;
    }
  }
  if (Status s = txn->Commit(); !s.ok()) return DbError("committing", s);
  for (const std::string& warning : file->warnings) Warn(ctx, warning);
  const size_t total = file->entries.size();
  ctx->out << "imported " << total << (total == 1 ? " user" : " users")
           << " from " << Quote(input->path) << ": " << added
           << " added (type unknown), " << updated << " updated\n";
  return Status::Ok();
}

}  // namespace homepot::admin::internal
