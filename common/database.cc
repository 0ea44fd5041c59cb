#include "database.h"

#include <utility>

namespace homepot {
namespace {

Status SqliteError(sqlite3* db) {
  return Status::Error(db ? sqlite3_errmsg(db) : "out of memory");
}

constexpr Oid kInt8Oid = 20;

}  // namespace

std::string PostgresPlaceholders(std::string_view sql) {
  std::string out;
  out.reserve(sql.size() + 8);
  int largest = 0;
  size_t i = 0;
  // Copies up to and including the end of a quoted or commented span that
  // starts at i and ends with `end`; `escapes`: a backslash escapes a char.
  auto copy_until = [&](size_t from, std::string_view end, bool escapes) {
    size_t j = from;
    while (j < sql.size()) {
      if (escapes && sql[j] == '\\') {
        j += 2;
        continue;
      }
      if (sql.substr(j, end.size()) == end) {
        j += end.size();
        break;
      }
      ++j;
    }
    j = std::min(j, sql.size());
    out.append(sql.substr(i, j - i));
    i = j;
  };
  while (i < sql.size()) {
    const char c = sql[i];
    const char next = i + 1 < sql.size() ? sql[i + 1] : '\0';
    if (c == '\'') {
      const bool escapes =
          i > 0 && (sql[i - 1] == 'E' || sql[i - 1] == 'e') &&
          (i < 2 || !std::isalnum(static_cast<unsigned char>(sql[i - 2])));
      copy_until(i + 1, "'", escapes);
    } else if (c == '"') {
      copy_until(i + 1, "\"", false);
    } else if (c == '-' && next == '-') {
      copy_until(i + 2, "\n", false);
    } else if (c == '/' && next == '*') {
      copy_until(i + 2, "*/", false);
    } else if (c == '$' && !std::isdigit(static_cast<unsigned char>(next))) {
      size_t j = i + 1;
      while (
          j < sql.size() &&
          (std::isalnum(static_cast<unsigned char>(sql[j])) || sql[j] == '_')) {
        ++j;
      }
      if (j < sql.size() && sql[j] == '$') {
        const std::string tag(sql.substr(i, j - i + 1));
        copy_until(j + 1, tag, false);
      } else {
        out += c;
        ++i;
      }
    } else if (c == '?') {
      size_t j = i + 1;
      int number = 0;
      while (j < sql.size() && j < i + 6 &&
             std::isdigit(static_cast<unsigned char>(sql[j]))) {
        number = number * 10 + (sql[j] - '0');
        ++j;
      }
      if (j == i + 1) number = largest + 1;
      largest = std::max(largest, number);
      out += '$' + std::to_string(number);
      i = j;
    } else {
      out += c;
      ++i;
    }
  }
  return out;
}

bool IsPostgresUrl(std::string_view location) {
  return location.rfind("postgresql://", 0) == 0 ||
         location.rfind("postgres://", 0) == 0;
}

struct Statement::Pg {
  pg::Connection* conn;
  int64_t* changes;
  std::string sql;
  pg::Params params;
  std::vector<Oid> types;
  // The rows of the run under way (from the first Step to Reset).
  std::unique_ptr<pg::RowStream> rows;
  bool done = false;  // Step answered false: the run is over
  std::string bind_error;

  void Set(int index, std::optional<std::string> value, Oid type) {
    if (index < 1 || index > 65535) {
      if (bind_error.empty()) {
        bind_error =
            "parameter index " + std::to_string(index) + " out of range";
      }
      return;
    }
    if (params.size() < static_cast<size_t>(index)) {
      params.resize(index);
      types.resize(index, 0);
    }
    params[index - 1] = std::move(value);
    types[index - 1] = type;
  }
};

void Statement::PgDeleter::operator()(Pg* p) const { delete p; }

Statement::Statement(std::unique_ptr<Pg, PgDeleter> pg) : pg_(std::move(pg)) {}

struct Database::Pg {
  pg::Connection conn;
  int64_t changes = 0;
};

Database::Database(sqlite3* db) : db_(db) {}
Database::Database(Database&&) noexcept = default;
Database& Database::operator=(Database&&) noexcept = default;
Database::~Database() = default;

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
  if (pg_) {
    pg_->Set(index, std::string(text), 0);
    return *this;
  }
  // A null data pointer would bind NULL instead of the empty string.
  return KeepFirstBindError(
      sqlite3_bind_text64(stmt_.get(), index, text.empty() ? "" : text.data(),
                          text.size(), SQLITE_TRANSIENT, SQLITE_UTF8));
}

Statement& Statement::Bind(int index, int64_t value) {
  if (pg_) {
    pg_->Set(index, std::to_string(value), kInt8Oid);
    return *this;
  }
  return KeepFirstBindError(sqlite3_bind_int64(stmt_.get(), index, value));
}

Statement& Statement::BindNull(int index) {
  if (pg_) {
    pg_->Set(index, std::nullopt, 0);
    return *this;
  }
  return KeepFirstBindError(sqlite3_bind_null(stmt_.get(), index));
}

Statement& Statement::BindOptional(int index,
                                   const std::optional<std::string>& text) {
  return text ? Bind(index, std::string_view(*text)) : BindNull(index);
}

Result<bool> Statement::Step() {
  if (pg_) {
    if (!pg_->bind_error.empty()) return Status::Error(pg_->bind_error);
    if (!pg_->rows) {
      Result<std::unique_ptr<pg::RowStream>> rows =
          pg_->conn->Stream(pg_->sql, pg_->params, pg_->types);
      if (!rows.ok()) return rows.status();
      pg_->rows = std::move(*rows);
      pg_->done = false;
    }
    if (pg_->done) return false;
    Result<bool> row = pg_->rows->Next();
    if (row.ok() && !*row) {
      pg_->done = true;
      const std::string command = pg_->rows->command();
      if (command.rfind("INSERT", 0) == 0 || command.rfind("UPDATE", 0) == 0 ||
          command.rfind("DELETE", 0) == 0) {
        *pg_->changes = pg_->rows->affected();
      }
    }
    return row;
  }
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
  if (pg_) {
    pg_->rows.reset();
    pg_->done = false;
    pg_->bind_error.clear();
    return;
  }
  sqlite3_reset(stmt_.get());
  bind_error_ = SQLITE_OK;
}

bool Statement::IsNull(int column) const {
  if (pg_) return pg_->rows->IsNull(column);
  return sqlite3_column_type(stmt_.get(), column) == SQLITE_NULL;
}

int64_t Statement::Int(int column) const {
  if (pg_) return pg_->rows->Int(column);
  return sqlite3_column_int64(stmt_.get(), column);
}

std::string Statement::Text(int column) const {
  if (pg_) return pg_->rows->Text(column);
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

Result<Database> Database::OpenPostgres(const std::string& url,
                                        int connect_timeout_s) {
  pg::Options options;
  options.connect_timeout_s = connect_timeout_s;
  return OpenPostgres(url, options);
}

Result<Database> Database::OpenPostgres(const std::string& url,
                                        const pg::Options& options) {
  Result<pg::Connection> conn = pg::Connection::Open(url, options);
  if (!conn.ok()) return conn.status();
  Database db(nullptr);
  db.pg_ = std::make_unique<Pg>(Pg{std::move(*conn)});
  return db;
}

Result<Database> Database::OpenLocation(const std::string& location, Mode mode,
                                        int busy_timeout_ms) {
  if (IsPostgresUrl(location)) return OpenPostgres(location);
  return Open(location, mode, busy_timeout_ms);
}

pg::Connection* Database::pg() { return pg_ ? &pg_->conn : nullptr; }

Status Database::Exec(std::string_view sql) {
  if (pg_) return pg_->conn.Exec(std::string(sql));
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
  if (pg_) {
    std::unique_ptr<Statement::Pg, Statement::PgDeleter> p(
        new Statement::Pg{&pg_->conn,
                          &pg_->changes,
                          PostgresPlaceholders(sql),
                          {},
                          {},
                          {},
                          false,
                          {}});
    return Statement(std::move(p));
  }
  return Statement::Prepare(db_.get(), sql);
}

int64_t Database::Changes() const {
  if (pg_) return pg_->changes;
  return sqlite3_changes64(db_.get());
}

bool Database::InTransaction() const {
  if (pg_) return pg_->conn.InTransaction();
  return sqlite3_get_autocommit(db_.get()) == 0;
}

void Database::SetBusyTimeout(int ms) {
  if (pg_) {
    // A failure here leaves the previous timeout; the next statement on a
    // broken connection reports the error.
    (void)pg_->conn.Exec("SET lock_timeout = " + std::to_string(ms));
    return;
  }
  sqlite3_busy_timeout(db_.get(), ms);
}

Result<Transaction> Transaction::Begin(Database* db) {
  const char* begin =
      db->backend() == Backend::kPostgres ? "BEGIN" : "BEGIN IMMEDIATE";
  if (Status s = db->Exec(begin); !s.ok()) return s;
  return Transaction(db);
}

Transaction::Transaction(Transaction&& other) noexcept
    : db_(std::exchange(other.db_, nullptr)) {}

Transaction::~Transaction() {
  if (db_ != nullptr && db_->InTransaction()) db_->Exec("ROLLBACK");
}

Status Transaction::Commit() {
  if (pg::Connection* pg = db_->pg()) {
    // COMMIT of a transaction in which a statement failed rolls it back and
    // still succeeds, saying ROLLBACK.
    Result<pg::Rows> rows = pg->Run("COMMIT");
    if (!rows.ok()) return rows.status();
    db_ = nullptr;
    if (rows->command() != "COMMIT") {
      return pg->Error("the transaction was rolled back: a statement failed");
    }
    return Status::Ok();
  }
  Status s = db_->Exec("COMMIT");
  if (s.ok()) db_ = nullptr;
  return s;
}

}  // namespace homepot
