// The one RAII layer over the SQLite C API, for the plugin's registry reader
// and homepot-admin: a connection, prepared statements, and a transaction
// guard that rolls back unless committed. Errors come back as Status values
// carrying SQLite's own message. A Statement can also be prepared on a raw
// sqlite3* handle that its owner opened and closes.
#ifndef HOMEPOT_COMMON_SQLITE_H_
#define HOMEPOT_COMMON_SQLITE_H_

#include <sqlite3.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "status.h"

namespace homepot {

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
  struct Finalizer {
    void operator()(sqlite3_stmt* s) const { sqlite3_finalize(s); }
  };
  Statement(sqlite3_stmt* stmt, sqlite3* db) : stmt_(stmt), db_(db) {}
  Statement& KeepFirstBindError(int rc);
  std::unique_ptr<sqlite3_stmt, Finalizer> stmt_;
  sqlite3* db_;
  int bind_error_ = SQLITE_OK;
};

class Database {
 public:
  enum class Mode { kReadOnly, kReadWrite, kCreate };

  // Opens `path` with foreign keys on and a busy timeout, so that writes wait
  // for the broker's short transactions instead of failing.
  static Result<Database> Open(const std::string& path, Mode mode,
                               int busy_timeout_ms = 5000);

  Database(Database&&) = default;
  Database& operator=(Database&&) = default;

  // Runs one or more statements (no parameters, rows ignored).
  Status Exec(std::string_view sql);
  Result<Statement> Prepare(std::string_view sql);
  // Rows changed by the last INSERT, UPDATE or DELETE.
  int64_t Changes() const;
  // True while a transaction is open on this connection.
  bool InTransaction() const;
  // How long a statement waits for another connection's lock from now on.
  void SetBusyTimeout(int ms);
  sqlite3* handle() const { return db_.get(); }

 private:
  struct Closer {
    void operator()(sqlite3* db) const { sqlite3_close_v2(db); }
  };
  explicit Database(sqlite3* db) : db_(db) {}
  std::unique_ptr<sqlite3, Closer> db_;
};

// BEGIN IMMEDIATE on construction (via Begin), ROLLBACK on destruction unless
// Commit() succeeded. IMMEDIATE takes the write lock up front, so the checks
// a command makes inside the transaction still hold when it writes.
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

#endif  // HOMEPOT_COMMON_SQLITE_H_
