// The one database layer of the plugin's registry reader and homepot-admin,
// over either backend: a SQLite file (the embedded default) or a PostgreSQL
// database (pg.h), opened by Database::OpenLocation from a path or a
// postgresql:// URL. A connection, prepared statements, and a transaction
// guard that rolls back unless committed; errors come back as Status values
// carrying the backend's own message (on PostgreSQL, never a password).
//
// SQL is written once for both: parameters are spelled ?1, ?2 ... (or ?),
// which a PostgreSQL statement sends as $1, $2 ...; integers are bound as
// int8, text with its type left for the server to infer. Where the dialects
// differ a caller asks backend(). A Statement can also be prepared on a raw
// sqlite3* handle that its owner opened and closes.
//
// On PostgreSQL a statement is sent, with its bindings, at its first Step,
// and its rows are read as Step asks for them (pg::RowStream): stepping
// through a result of any size holds about one row at a time, so a full
// load of the registry never holds the whole result besides what it builds
// from it. Each wait for the server is bounded by the connection's stall
// timeout and ended by its interrupt fd (pg::Options); the caller's time
// between Steps never counts. The statement holds the connection until it
// has been stepped to its end or Reset: a statement run meanwhile on the
// same connection first reads the rest of its rows into memory (they stay
// for its later Steps), and one Reset or destroyed before its end has the
// rest read and dropped by the next statement. So step a big result
// through before running another statement, and do not leave one half
// read while waiting for something else (the server holds its snapshot
// until it is read). Changes counts the rows of the last statement stepped
// to its end.
#ifndef HOMEPOT_COMMON_DATABASE_H_
#define HOMEPOT_COMMON_DATABASE_H_

#include <sqlite3.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "pg.h"
#include "status.h"

namespace homepot {

enum class Backend { kSqlite, kPostgres };

// True for a postgresql:// or postgres:// URL (a registry on PostgreSQL);
// anything else names a SQLite file.
bool IsPostgresUrl(std::string_view location);

// `sql` with ?N spelled $N and each bare ? as $N, N one above the largest
// number so far (SQLite's rule), outside quoted strings and identifiers
// ('...', E'...' with backslash escapes, "...", $tag$...$tag$) and comments:
// how a PostgreSQL statement sends the program's SQL. Numbers have at most
// 5 digits.
std::string PostgresPlaceholders(std::string_view sql);

class Statement {
 public:
  // Prepares the first statement of `sql` on `db`, which must outlive it.
  static Result<Statement> Prepare(sqlite3* db, std::string_view sql);

  Statement(Statement&&) = default;
  Statement& operator=(Statement&&) = default;

  // Parameters are 1-based. Text is copied.
  Statement& Bind(int index, std::string_view text);
  Statement& Bind(int index, int64_t value);
  Statement& BindNull(int index);
  // Binds `text`, or NULL when it has no value.
  Statement& BindOptional(int index, const std::optional<std::string>& text);

  // Advances: true when a row is available, false when done. A failed Bind
  // since the last Reset is reported here.
  Result<bool> Step();
  // Steps to completion, ignoring rows, then resets (bindings are kept), so
  // the statement can be bound and run again.
  Status Run();
  // Makes the statement runnable again from the start; bindings are kept.
  void Reset();

  bool IsNull(int column) const;
  int64_t Int(int column) const;
  std::string Text(int column) const;
  std::optional<std::string> OptionalText(int column) const;

 private:
  friend class Database;
  struct Finalizer {
    void operator()(sqlite3_stmt* s) const { sqlite3_finalize(s); }
  };
  struct Pg;  // a PostgreSQL statement: its text, bindings and rows
  struct PgDeleter {
    void operator()(Pg* p) const;
  };
  Statement(sqlite3_stmt* stmt, sqlite3* db) : stmt_(stmt), db_(db) {}
  explicit Statement(std::unique_ptr<Pg, PgDeleter> pg);
  Statement& KeepFirstBindError(int rc);

  std::unique_ptr<sqlite3_stmt, Finalizer> stmt_;
  sqlite3* db_ = nullptr;
  int bind_error_ = SQLITE_OK;
  std::unique_ptr<Pg, PgDeleter> pg_;
};

class Database {
 public:
  enum class Mode { kReadOnly, kReadWrite, kCreate };

  // Opens the SQLite file `path` with foreign keys on and a busy timeout, so
  // that writes wait for the broker's short transactions instead of failing.
  static Result<Database> Open(const std::string& path, Mode mode,
                               int busy_timeout_ms = 5000);
  // Connects (blocking) to the PostgreSQL database of libpq URL `url`,
  // giving up after `connect_timeout_s` unless the URL sets connect_timeout;
  // errors name it with its password masked (pg::MaskedUrl).
  static Result<Database> OpenPostgres(const std::string& url,
                                       int connect_timeout_s = 10);
  // The same, waiting for the server as `options` say (pg::Options).
  static Result<Database> OpenPostgres(const std::string& url,
                                       const pg::Options& options);
  // OpenPostgres for a postgresql:// URL, else Open(location, mode).
  static Result<Database> OpenLocation(const std::string& location, Mode mode,
                                       int busy_timeout_ms = 5000);

  Database(Database&&) noexcept;
  Database& operator=(Database&&) noexcept;
  ~Database();

  Backend backend() const {
    return pg_ ? Backend::kPostgres : Backend::kSqlite;
  }
  // Runs one or more statements (no parameters, rows ignored).
  Status Exec(std::string_view sql);
  Result<Statement> Prepare(std::string_view sql);
  // Rows changed by the last INSERT, UPDATE or DELETE.
  int64_t Changes() const;
  // True while a transaction is open on this connection.
  bool InTransaction() const;
  // How long a statement waits for another connection's lock from now on.
  void SetBusyTimeout(int ms);
  // The SQLite handle; nullptr on PostgreSQL.
  sqlite3* handle() const { return db_.get(); }
  // The PostgreSQL connection (LISTEN, its socket); nullptr on SQLite.
  pg::Connection* pg();

 private:
  struct Closer {
    void operator()(sqlite3* db) const { sqlite3_close_v2(db); }
  };
  struct Pg;  // the connection and the row count of its last statement
  explicit Database(sqlite3* db);
  std::unique_ptr<sqlite3, Closer> db_;
  std::unique_ptr<Pg> pg_;
};

// Begins a write transaction on construction (via Begin), ROLLBACK on
// destruction unless Commit() succeeded. On SQLite it is BEGIN IMMEDIATE,
// which takes the write lock up front, so the checks a command makes inside
// the transaction still hold when it writes; on PostgreSQL a plain BEGIN
// (rows are locked as they are written; constraints refuse what a
// concurrent writer made invalid).
class Transaction {
 public:
  static Result<Transaction> Begin(Database* db);
  Transaction(Transaction&& other) noexcept;
  Transaction& operator=(Transaction&&) = delete;
  ~Transaction();
  Status Commit();

 private:
  explicit Transaction(Database* db) : db_(db) {}
  Database* db_;
};

}  // namespace homepot

#endif  // HOMEPOT_COMMON_DATABASE_H_
