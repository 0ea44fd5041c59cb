#include "sqlite.h"

#include <utility>

namespace homepot {
namespace {

Status SqliteError(sqlite3* db) {
  return Status::Error(db ? sqlite3_errmsg(db) : "out of memory");
}

}  // namespace

Result<Statement> Statement::Prepare(sqlite3* db, std::string_view sql) {
  sqlite3_stmt* stmt = nullptr;
  const int rc = sqlite3_prepare_v2(
      db, sql.data(), static_cast<int>(sql.size()), &stmt, nullptr);
  if (rc != SQLITE_OK) {
    sqlite3_finalize(stmt);
    return SqliteError(db);
  }
  return Statement(stmt, db);
}

Statement& Statement::KeepFirstBindError(int rc) {
  if (rc != SQLITE_OK && bind_error_ == SQLITE_OK) bind_error_ = rc;
  return *this;
}

Statement& Statement::Bind(int index, std::string_view text) {
  // A null data pointer would bind NULL instead of the empty string.
  return KeepFirstBindError(
      sqlite3_bind_text64(stmt_.get(), index, text.empty() ? "" : text.data(),
                          text.size(), SQLITE_TRANSIENT, SQLITE_UTF8));
}

Statement& Statement::Bind(int index, int64_t value) {
  return KeepFirstBindError(sqlite3_bind_int64(stmt_.get(), index, value));
}

Statement& Statement::BindNull(int index) {
  return KeepFirstBindError(sqlite3_bind_null(stmt_.get(), index));
}

Statement& Statement::BindOptional(int index,
                                   const std::optional<std::string>& text) {
  return text ? Bind(index, std::string_view(*text)) : BindNull(index);
}

Result<bool> Statement::Step() {
  if (bind_error_ != SQLITE_OK) {
    return Status::Error(std::string("binding a parameter failed: ") +
                         sqlite3_errstr(bind_error_));
  }
  const int rc = sqlite3_step(stmt_.get());
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  return SqliteError(db_);
}

Status Statement::Run() {
  for (;;) {
    Result<bool> row = Step();
    if (!row.ok()) {
      Reset();
      return row.status();
    }
    if (!*row) {
      Reset();
      return Status::Ok();
    }
  }
}

void Statement::Reset() {
  sqlite3_reset(stmt_.get());
  bind_error_ = SQLITE_OK;
}

bool Statement::IsNull(int column) const {
  return sqlite3_column_type(stmt_.get(), column) == SQLITE_NULL;
}

int64_t Statement::Int(int column) const {
  return sqlite3_column_int64(stmt_.get(), column);
}

std::string Statement::Text(int column) const {
  const auto* text =
      reinterpret_cast<const char*>(sqlite3_column_text(stmt_.get(), column));
  if (text == nullptr) return {};
  return std::string(text, sqlite3_column_bytes(stmt_.get(), column));
}

std::optional<std::string> Statement::OptionalText(int column) const {
  if (IsNull(column)) return std::nullopt;
  return Text(column);
}

Result<Database> Database::Open(const std::string& path, Mode mode,
                                int busy_timeout_ms) {
  int flags = SQLITE_OPEN_NOMUTEX;
  switch (mode) {
    case Mode::kReadOnly:
      flags |= SQLITE_OPEN_READONLY;
      break;
    case Mode::kReadWrite:
      flags |= SQLITE_OPEN_READWRITE;
      break;
    case Mode::kCreate:
      flags |= SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
      break;
  }
  sqlite3* raw = nullptr;
  const int rc = sqlite3_open_v2(path.c_str(), &raw, flags, nullptr);
  Database db(raw);
  if (rc != SQLITE_OK) return SqliteError(raw);
  sqlite3_extended_result_codes(raw, 1);
  sqlite3_busy_timeout(raw, busy_timeout_ms);
  if (Status s = db.Exec("PRAGMA foreign_keys = ON"); !s.ok()) return s;
  return db;
}

Status Database::Exec(std::string_view sql) {
  // sqlite3_exec needs a NUL-terminated string.
  const std::string text(sql);
  char* message = nullptr;
  const int rc =
      sqlite3_exec(db_.get(), text.c_str(), nullptr, nullptr, &message);
  if (rc == SQLITE_OK) return Status::Ok();
  std::string reason = message ? message : sqlite3_errmsg(db_.get());
  sqlite3_free(message);
  return Status::Error(std::move(reason));
}

Result<Statement> Database::Prepare(std::string_view sql) {
  return Statement::Prepare(db_.get(), sql);
}

int64_t Database::Changes() const { return sqlite3_changes64(db_.get()); }

bool Database::InTransaction() const {
  return sqlite3_get_autocommit(db_.get()) == 0;
}

void Database::SetBusyTimeout(int ms) { sqlite3_busy_timeout(db_.get(), ms); }

Result<Transaction> Transaction::Begin(Database* db) {
  if (Status s = db->Exec("BEGIN IMMEDIATE"); !s.ok()) return s;
  return Transaction(db);
}

Transaction::Transaction(Transaction&& other) noexcept
    : db_(std::exchange(other.db_, nullptr)) {}

Transaction::~Transaction() {
  if (db_ != nullptr && db_->InTransaction()) db_->Exec("ROLLBACK");
}

Status Transaction::Commit() {
  Status s = db_->Exec("COMMIT");
  if (s.ok()) db_ = nullptr;
  return s;
}

}  // namespace homepot
