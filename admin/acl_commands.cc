// homepot-admin acl ... and import-acl.
#include <nlohmann/json.hpp>
#include <ostream>
#include <utility>

#include "admin/commands.h"
#include "admin/mosquitto_files.h"

namespace homepot::admin::internal {
namespace {

using Json = nlohmann::ordered_json;

// "ID" or "--all" as the rule's subject: unset = every device.
struct Subject {
  std::optional<std::string> device;
  std::string Describe() const {
    return device ? "device " + Quote(*device) : std::string("all devices");
  }
};

// Takes the subject from `line`: --all, or the first positional (removed).
// `operands` is how many positionals follow the subject.
Result<Subject> TakeSubject(Context* ctx, std::string_view command,
                            CommandLine* line, size_t operands) {
  Subject subject;
  if (line->Has("--all")) {
    if (line->positional.size() > operands) {
      return UsageError(
          ctx, std::string(command) + ": give either ID or --all, not both");
    }
    return subject;
  }
  if (line->positional.empty()) {
    return UsageError(ctx, std::string(command) + ": missing ID or --all");
  }
  subject.device = line->positional.front();
  line->positional.erase(line->positional.begin());
  if (Status s = ValidateDeviceId(*subject.device); !s.ok()) return s;
  return subject;
}

Status AclGrant(Context* ctx, const std::vector<std::string>& words) {
  constexpr std::string_view kCommand = "acl grant";
  Result<CommandLine> line =
      ParseCommandLine(ctx, kCommand, words, {{}, {"--all"}});
  if (!line.ok()) return line.status();
  Result<Subject> subject = TakeSubject(ctx, kCommand, &*line, 2);
  if (!subject.ok()) return subject.status();
  if (Status s = ExpectPositionals(
          ctx, kCommand, *line,
          {"ACCESS (read, write, readwrite or deny)", "FILTER"});
      !s.ok()) {
    return s;
  }
  Result<RuleAccess> access = ParseRuleAccess(line->positional[0]);
  if (!access.ok()) return access.status();
  const std::string& filter = line->positional[1];
  if (Status s = ValidateFilter(filter); !s.ok()) return s;

  Result<Database> db = OpenRegistry(ctx, Database::Mode::kReadWrite);
  if (!db.ok()) return db.status();
  Result<Transaction> txn = Transaction::Begin(&*db);
  if (!txn.ok()) return DbError("cannot start a transaction", txn.status());
  if (Status s = LockAclRules(&*db); !s.ok()) return DbError("granting", s);
  if (subject->device) {
    if (Status s = RequireDevice(&*db, *subject->device); !s.ok()) return s;
  }
  Result<bool> inserted = InsertAclRule(&*db, subject->device, filter, *access);
  if (!inserted.ok()) return DbError("granting", inserted.status());
  if (Status s = txn->Commit(); !s.ok()) return DbError("committing", s);
  if (*inserted) {
    ctx->out << "granted " << RuleAccessWord(*access) << " on " << Quote(filter)
             << " to " << subject->Describe() << "\n";
  } else {
    ctx->out << subject->Describe() << " already "
             << (subject->device ? "has " : "have ") << RuleAccessWord(*access)
             << " on " << Quote(filter) << "\n";
  }
  return Status::Ok();
}

Status AclRevoke(Context* ctx, const std::vector<std::string>& words) {
  constexpr std::string_view kCommand = "acl revoke";
  Result<CommandLine> line =
      ParseCommandLine(ctx, kCommand, words, {{}, {"--all"}});
  if (!line.ok()) return line.status();
  Result<Subject> subject = TakeSubject(ctx, kCommand, &*line, 1);
  if (!subject.ok()) return subject.status();
  if (Status s = ExpectPositionals(ctx, kCommand, *line, {"FILTER"}); !s.ok()) {
    return s;
  }
  const std::string& filter = line->positional[0];
  if (Status s = ValidateFilter(filter); !s.ok()) return s;

  Result<Database> db = OpenRegistry(ctx, Database::Mode::kReadWrite);
  if (!db.ok()) return db.status();
  Result<Transaction> txn = Transaction::Begin(&*db);
  if (!txn.ok()) return DbError("cannot start a transaction", txn.status());
  if (subject->device) {
    if (Status s = RequireDevice(&*db, *subject->device); !s.ok()) return s;
  }
  // Every access word on that filter goes.
  Result<Statement> del = db->Prepare(
      "DELETE FROM acl_rules WHERE (device_id = ?1 OR "
      "(device_id IS NULL AND ?1 IS NULL)) AND topic_filter = ?2");
  if (!del.ok()) return DbError("revoking", del.status());
  del->BindOptional(1, subject->device).Bind(2, filter);
  if (Status s = del->Run(); !s.ok()) return DbError("revoking", s);
  const int64_t removed = db->Changes();
  if (removed == 0) {
    return Status::Error("no rule on " + Quote(filter) + " for " +
                         subject->Describe());
  }
  if (Status s = txn->Commit(); !s.ok()) return DbError("committing", s);
  ctx->out << "revoked " << removed << (removed == 1 ? " rule" : " rules")
           << " on " << Quote(filter) << " from " << subject->Describe()
           << "\n";
  return Status::Ok();
}

Status AclList(Context* ctx, const std::vector<std::string>& words) {
  constexpr std::string_view kCommand = "acl list";
  Result<CommandLine> line =
      ParseCommandLine(ctx, kCommand, words, {{}, {"--json"}});
  if (!line.ok()) return line.status();
  Result<std::optional<std::string>> parsed =
      OptionalDeviceId(ctx, kCommand, *line);
  if (!parsed.ok()) return parsed.status();
  const std::optional<std::string>& id = *parsed;
  Result<Database> db = OpenRegistry(ctx, Database::Mode::kReadOnly);
  if (!db.ok()) return db.status();
  if (id) {
    if (Status s = RequireDevice(&*db, *id); !s.ok()) return s;
  }
  // With an ID: the rules that apply to it, its own and the global ones.
  const std::string order(ByteOrder(*db));
  Result<Statement> stmt = db->Prepare(
      std::string("SELECT device_id, access, topic_filter FROM acl_rules ") +
      (id ? "WHERE device_id = ?1 OR device_id IS NULL " : "") +
      "ORDER BY device_id IS NOT NULL, device_id" + order + ", topic_filter" +
      order + ", access" + order);
  if (!stmt.ok()) return DbError("listing rules", stmt.status());
  if (id) stmt->Bind(1, *id);
  const bool json = line->Has("--json");
  Json list = Json::array();
  std::vector<std::vector<std::string>> rows;
  for (;;) {
    Result<bool> row = stmt->Step();
    if (!row.ok()) return DbError("listing rules", row.status());
    if (!*row) break;
    const std::optional<std::string> device = stmt->OptionalText(0);
    if (json) {
      Json item;
      item["device_id"] = device ? Json(*device) : Json(nullptr);
      item["access"] = stmt->Text(1);
      item["topic_filter"] = stmt->Text(2);
      list.push_back(std::move(item));
    } else {
      rows.push_back({device ? Printable(*device) : "(all)",
                      Printable(stmt->Text(1)), Printable(stmt->Text(2))});
    }
  }
  if (json) {
    ctx->out << list.dump(2, ' ', false, Json::error_handler_t::replace)
             << "\n";
  } else {
    PrintTable(ctx->out, {"DEVICE", "ACCESS", "FILTER"}, rows);
  }
  return Status::Ok();
}

}  // namespace

Status RunAcl(Context* ctx, const std::vector<std::string>& words) {
  if (words.empty()) {
    return UsageError(ctx, "acl: missing subcommand (grant, revoke or list)");
  }
  const std::string& sub = words[0];
  const std::vector<std::string> rest(words.begin() + 1, words.end());
  if (sub == "grant") return AclGrant(ctx, rest);
  if (sub == "revoke") return AclRevoke(ctx, rest);
  if (sub == "list") return AclList(ctx, rest);
  return UsageError(ctx, "acl: unknown subcommand " + Quote(sub) +
                             " (grant, revoke or list)");
}

Status RunImportAcl(Context* ctx, const std::vector<std::string>& words) {
  Result<InputFile> input = ReadFileArgument(ctx, "import-acl", words);
  if (!input.ok()) return input.status();
  Result<AclFile> file = ParseAclFile(input->text, input->path);
  if (!file.ok()) return file.status();

  Result<Database> db = OpenRegistry(ctx, Database::Mode::kReadWrite);
  if (!db.ok()) return db.status();
  Result<Transaction> txn = Transaction::Begin(&*db);
  if (!txn.ok()) return DbError("cannot start a transaction", txn.status());
  if (Status s = LockAclRules(&*db); !s.ok()) return DbError("importing", s);
  for (const AclFileUser& user : file->users) {
    Result<bool> exists = DeviceExists(&*db, user.name);
    if (!exists.ok()) return DbError("looking up the device", exists.status());
    if (!*exists) {
      return Status::Error(Printable(input->path) + ":" +
                           std::to_string(user.line) + ": unknown device " +
                           Quote(user.name) +
                           " (add it with 'homepot-admin device add' or "
                           "import-passwd first)");
    }
  }
  int added = 0;
  int present = 0;
  for (const AclFileRule& rule : file->rules) {
    Result<bool> inserted =
        InsertAclRule(&*db, rule.device, rule.filter, rule.access);
    if (!inserted.ok()) {
      return DbError(Printable(input->path) + ":" + std::to_string(rule.line),
                     inserted.status());
    }
    ++(*inserted ? added : present);
  }
  if (Status s = txn->Commit(); !s.ok()) return DbError("committing", s);
  for (const std::string& warning : file->warnings) Warn(ctx, warning);
  const size_t total = file->rules.size();
  ctx->out << "imported " << total << (total == 1 ? " rule" : " rules")
           << " from " << Quote(input->path) << ": " << added << " added, "
           << present << " already present, " << file->warnings.size()
           << " anonymous skipped\n";
  return Status::Ok();
}

}  // namespace homepot::admin::internal
