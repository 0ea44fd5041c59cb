// The one RAII layer over libpq, for the PostgreSQL registry: a connection
// opened from a libpq URL, statements with text parameters and text results
// (read whole, or streamed a row at a time: RowStream), a transaction guard
// that rolls back unless committed, and LISTEN with notifications read from the
// connection's socket, so that a caller can poll() it with its own timeout.
// Errors come back as Status values.
//
// Passwords: a connection URL may carry one (in the URI's user info or a
// password= keyword), but it never reaches a message: every error begins with
// MaskedUrl(url) and has any password of the URL replaced by "***". Prefer a
// passfile (libpq's PGPASSFILE or passfile= in the URL). Statement errors
// carry the server's primary message and SQLSTATE, never its DETAIL (which
// can quote a row, password hash included).
//
// Server notices (warnings, and the message of a server that ends the
// session) are dropped, not printed. Not thread-safe: one Connection per
// thread.
//
// A server that stalls (stopped, or a network path that drops packets)
// never holds a caller forever: connecting gives up after the connect
// timeout, a statement that receives nothing from the server for the stall
// timeout fails ("no answer from the server for N s"), and TCP keepalives
// and tcp_user_timeout are on by default (see Connection::Open). An
// interrupt fd, once readable, ends any wait at once ("interrupted"). Either
// way the connection is closed: ok() is false, Reset reconnects.
#ifndef HOMEPOT_COMMON_PG_H_
#define HOMEPOT_COMMON_PG_H_

#include <libpq-fe.h>

#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "status.h"

namespace homepot {
namespace pg {

// `url` with every password replaced by "***": the password of a
// postgresql:// or postgres:// URI's user info, the value of a password= or
// sslpassword= query parameter, or of such a keyword in a key=value
// connection string. Where a key=value string cannot be parsed, everything
// from the unparsable point on is masked. Anything else is kept as written.
std::string MaskedUrl(std::string_view url);

// Text parameters of a statement, $1 first; nullopt is SQL NULL. PostgreSQL
// text cannot hold a NUL byte: a parameter containing one is refused.
using Params = std::vector<std::optional<std::string>>;

// The rows of a statement, values as text. Row and column indexes are
// 0-based and must be in range.
class Rows {
 public:
  Rows(Rows&&) = default;
  Rows& operator=(Rows&&) = default;

  int rows() const;
  int columns() const;
  // The index of the column called `name`, or -1.
  int Column(const char* name) const;
  bool IsNull(int row, int column) const;
  // The value as text; "" for NULL.
  std::string Text(int row, int column) const;
  std::optional<std::string> OptionalText(int row, int column) const;
  // The value as an integer; 0 for NULL or a value that is not one.
  int64_t Int(int row, int column) const;
  // Rows inserted, updated or deleted by the statement (0 for others).
  int64_t affected() const;
  // The command tag, e.g. "INSERT 0 1" or "COMMIT".
  std::string command() const;

 private:
  friend class Connection;
  friend class RowStream;
  struct Clearer {
    void operator()(PGresult* r) const { PQclear(r); }
  };
  explicit Rows(PGresult* result) : result_(result) {}
  std::unique_ptr<PGresult, Clearer> result_;
};

class Connection;

// The result of one statement read as it arrives (libpq's single-row mode,
// Connection::Stream): however many rows it has, it holds about one row
// and libpq's input buffer, and its first row is there as soon as the
// server sends it. Waits for the server as Connection::Run does (the stall
// timeout bounds each silence, not the whole result; the interrupt fd ends
// it), and a broken connection ends it with that error.
//
// Until its last result is read, its rows hold the connection: a statement
// run meanwhile (Run, Exec, another Stream, TakeNotifications) first reads
// the rest of them into this stream, in one result as Run would have
// (memory as for a whole result), and a stream destroyed before its end
// leaves the rest to be read and dropped by the connection's next
// statement. The connection must outlive the stream and stay where it is
// (not moved) while the stream exists.
class RowStream {
 public:
  RowStream(const RowStream&) = delete;
  RowStream& operator=(const RowStream&) = delete;
  ~RowStream();

  // The next row: true when there is one, false at the end of the result.
  // Rows that came before an error are given first, then the error (the
  // server's message as Run gives it); after the end or an error the same
  // answer again.
  Result<bool> Next();

  // The current row (after Next answered true); columns as in Rows.
  bool IsNull(int column) const;
  std::string Text(int column) const;
  std::optional<std::string> OptionalText(int column) const;
  int64_t Int(int column) const;
  // Once Next answered false: as Rows::affected and Rows::command of the
  // statement's final result.
  int64_t affected() const;
  std::string command() const;

 private:
  friend class Connection;
  explicit RowStream(Connection* conn) : conn_(conn) {}

  Connection* conn_;
  // Results read and not yet passed (each with at least one row); the
  // current row is row_ of the first.
  std::deque<Rows> ahead_;
  int row_ = -1;
  // Whether results of the statement are still to be read from the
  // connection.
  bool on_wire_ = true;
  // The final result, once read; or the error that ended the statement.
  std::optional<Rows> end_;
  Status error_ = Status::Ok();
};

struct Notification {
  std::string channel;
  std::string payload;
  // The server process that sent it (see Connection::backend_pid).
  int backend_pid = 0;
};

// How a Connection waits for its server.
struct Options {
  // How long a connection attempt may take, unless the URL sets
  // connect_timeout (libpq counts less than 2 as 2; 0 waits for TCP).
  int connect_timeout_s = 10;
  // A statement that receives no byte from the server for this long fails
  // and closes the connection; 0 waits for ever. It bounds silence, not the
  // statement: a long result that keeps streaming is never cut off.
  int stall_timeout_ms = 30000;
  // When this fd becomes readable (an eventfd, a pipe), whatever the
  // connection waits for (connecting, a statement) fails at once with
  // "interrupted" and the connection is closed; -1 for none. It is only
  // polled, never read: it interrupts until its owner drains it.
  int interrupt_fd = -1;
};

class Connection {
 public:
  // Connects to the libpq URL or key=value string `url`, with
  // client_encoding UTF8 and, unless `url` sets them, a connect_timeout of
  // `options.connect_timeout_s` and TCP keepalives (keepalives=1,
  // keepalives_idle=5, keepalives_interval=2, keepalives_count=3) and
  // tcp_user_timeout=10000 (ms): a peer that went away without a word is
  // noticed by the kernel within about 10 s. Waits as `options` say. Fails
  // with MaskedUrl(url) and libpq's message.
  static Result<Connection> Open(const std::string& url,
                                 const Options& options);
  // Open with the default Options but `connect_timeout_s`.
  static Result<Connection> Open(const std::string& url,
                                 int connect_timeout_s = 10);

  Connection(Connection&&) = default;
  Connection& operator=(Connection&&) = default;

  // Runs one or more statements without parameters; rows are ignored.
  Status Exec(const std::string& sql);
  // Runs one statement with text parameters. `types` (optional) gives the
  // type OID of each parameter, 0 leaving it to the server to infer.
  Result<Rows> Run(const std::string& sql, const Params& params = {},
                   const std::vector<Oid>& types = {});
  // Sends one statement as Run does and returns its rows to read as they
  // arrive (RowStream). Fails as Run does when it cannot be sent; errors
  // of the statement itself come from RowStream::Next.
  Result<std::unique_ptr<RowStream>> Stream(const std::string& sql,
                                            const Params& params = {},
                                            const std::vector<Oid>& types = {});

  // LISTEN `channel` (quoted as an identifier). Remembered for Reset.
  Status Listen(const std::string& channel);
  // Reads whatever the socket holds, without blocking, and returns the
  // notifications received so far (oldest first, possibly none). Fails when
  // the connection is broken. NOTIFY is delivered when the sender commits.
  Result<std::vector<Notification>> TakeNotifications();
  // TakeNotifications, waiting up to `timeout_ms` for at least one.
  Result<std::vector<Notification>> WaitForNotifications(int timeout_ms);

  // The socket to poll() for POLLIN before TakeNotifications; -1 when the
  // connection is down. It can change across Reset.
  int socket() const;
  // Whether the connection is up, as far as libpq knows (a peer that went
  // away is noticed by the next statement or TakeNotifications). Once a
  // stall or an interrupt closed it, every statement fails with that error
  // until Reset.
  bool ok() const;
  // Reconnects with the same parameters and options and repeats the
  // LISTENs.
  Status Reset();
  // Changes the stall timeout and the interrupt fd (see Options) from the
  // next wait on.
  void SetStallTimeoutMs(int ms) { options_.stall_timeout_ms = ms; }
  void SetInterruptFd(int fd) { options_.interrupt_fd = fd; }
  const Options& options() const { return options_; }
  // Whether a transaction is open (or failed and not yet ended).
  bool InTransaction() const;
  // The server process serving this connection.
  int backend_pid() const;
  const std::string& masked_url() const { return masked_url_; }
  // An error naming this connection: MaskedUrl(url) + ": " + `message`,
  // with any password of the URL in `message` replaced by "***".
  Status Error(std::string_view message) const;

 private:
  struct Finisher {
    void operator()(PGconn* c) const { PQfinish(c); }
  };
  Connection(PGconn* conn, std::string url, const Options& options);
  // Status of a finished statement: ok for PGRES_COMMAND_OK/TUPLES_OK.
  Status ResultError(const PGresult* result) const;
  friend class RowStream;
  // Waits until libpq has the next result whole (or the connection broke:
  // then PQgetResult says so); fails as Wait does.
  Status AwaitResult(std::chrono::steady_clock::time_point* progress);
  // The stream on the wire is over: its results are all read, or
  // `error` (when not ok) ended it. Nothing is on the wire any more.
  void EndStream(const Status& error);
  // Reads the rest of the stream whose results are on the wire, if any
  // (into it, or dropped when it was destroyed); fails, as its reads do,
  // when the connection breaks.
  Status Settle();
  // Reads results of the stream on the wire: up to its next row when
  // `one_row`, else to its end (its rows gathered in one result). Gives
  // them, its final result or its error to stream_ (nullptr: dropped).
  Status ReadStream(bool one_row);
  // Settles, then sends the statement that `send` queues (PQsendQuery...)
  // and flushes it, waiting on the socket.
  template <typename Send>
  Status SendStatement(Send send);
  // Sends the statement that `send` queues (SendStatement) and
  // reads every result, waiting on the socket. Returns the first error
  // result, else the last result; fails (closing the connection) on a
  // broken connection, a stall or an interrupt.
  template <typename Send>
  Result<Rows> Perform(Send send);
  // Waits until the socket is ready for `events`, and returns the events
  // that came. Fails, closing the connection, when nothing came for the
  // stall timeout since `*progress` or the interrupt fd became readable.
  Result<short> Wait(short events,
                     std::chrono::steady_clock::time_point* progress);
  // Closes the connection and returns Error(`message`), which later
  // statements on it repeat (Closed).
  Status Broken(std::string_view message);
  // The error of a statement on a closed connection.
  Status Closed() const;

  std::unique_ptr<PGconn, Finisher> conn_;
  Options options_;
  std::string url_;
  std::string masked_url_;
  std::vector<std::string> channels_;
  // Why Broken closed the connection.
  std::string closed_because_;
  // Whether results of a RowStream are still to be read, and that stream
  // (nullptr once it was destroyed: they are dropped).
  bool streaming_ = false;
  RowStream* stream_ = nullptr;
  // Whether a transaction was open when that stream's statement was sent.
  bool stream_in_transaction_ = false;
};

// BEGIN on construction (via Begin), ROLLBACK on destruction unless Commit()
// succeeded. The connection must outlive it.
class Transaction {
 public:
  static Result<Transaction> Begin(Connection* conn);
  Transaction(Transaction&& other) noexcept;
  Transaction& operator=(Transaction&&) = delete;
  ~Transaction();
  Status Commit();

 private:
  explicit Transaction(Connection* conn) : conn_(conn) {}
  Connection* conn_;
};

}  // namespace pg
}  // namespace homepot

#endif  // HOMEPOT_COMMON_PG_H_
