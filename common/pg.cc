#include "pg.h"

#include <poll.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <utility>

namespace homepot {
namespace pg {
namespace {

using Span = std::pair<size_t, size_t>;  // [begin, end) in the URL

bool IsSecretKey(std::string_view key) {
  return key == "password" || key == "sslpassword";
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// %XX decoded; a malformed escape is kept as written.
std::string PercentDecoded(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && HexValue(s[i + 1]) >= 0 &&
        HexValue(s[i + 2]) >= 0) {
      out += static_cast<char>(HexValue(s[i + 1]) * 16 + HexValue(s[i + 2]));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

// The password spans of a postgresql:// URI, read as libpq reads it: the
// user info ends at the first '@' before any '/', the password follows its
// first ':'; query parameters are '&'-separated key=value pairs.
std::vector<Span> UriPasswordSpans(std::string_view url, size_t start) {
  std::vector<Span> spans;
  size_t query_from = start;
  // The user info ends at the last @ before the query that follows the
  // first @: a password with an unencoded / ? or @ (which libpq misreads)
  // is masked whole all the same.
  const size_t first_at = url.find('@', start);
  const size_t query = first_at == std::string_view::npos
                           ? std::string_view::npos
                           : url.find('?', first_at);
  const size_t end_of_info =
      first_at == std::string_view::npos
          ? std::string_view::npos
          : url.substr(0, query == std::string_view::npos ? url.size() : query)
                .rfind('@');
  if (end_of_info != std::string_view::npos && end_of_info >= start) {
    const size_t colon = url.find(':', start);
    if (colon < end_of_info && colon + 1 < end_of_info) {
      spans.emplace_back(colon + 1, end_of_info);
    }
    query_from = end_of_info + 1;
  }
  size_t pos = url.find('?', query_from);
  while (pos != std::string_view::npos && pos < url.size()) {
    const size_t begin = pos + 1;
    const size_t amp = url.find('&', begin);
    const size_t end = amp == std::string_view::npos ? url.size() : amp;
    const size_t eq = url.find('=', begin);
    if (eq < end &&
        IsSecretKey(PercentDecoded(url.substr(begin, eq - begin)))) {
      spans.emplace_back(eq + 1, end);
    }
    pos = amp;
  }
  return spans;
}

// The password spans of a key=value connection string, read as libpq reads
// it (values bare or single-quoted, with backslash escapes). From a point
// that cannot be parsed, the rest of the string is one span.
std::vector<Span> KeywordPasswordSpans(std::string_view s) {
  std::vector<Span> spans;
  auto space = [&](size_t i) {
    return std::isspace(static_cast<unsigned char>(s[i])) != 0;
  };
  size_t i = 0;
  for (;;) {
    while (i < s.size() && space(i)) ++i;
    if (i == s.size()) break;
    const size_t key_begin = i;
    while (i < s.size() && s[i] != '=' && !space(i)) ++i;
    const std::string_view key = s.substr(key_begin, i - key_begin);
    while (i < s.size() && space(i)) ++i;
    if (i == s.size() || s[i] != '=') {
      spans.emplace_back(key_begin, s.size());
      break;
    }
    ++i;
    while (i < s.size() && space(i)) ++i;
    const size_t value_begin = i;
    if (i < s.size() && s[i] == '\'') {
      ++i;
      while (i < s.size() && s[i] != '\'') i += s[i] == '\\' ? 2 : 1;
      if (i >= s.size()) {
        spans.emplace_back(value_begin, s.size());
        break;
      }
      ++i;
    } else {
      while (i < s.size() && !space(i)) i += s[i] == '\\' ? 2 : 1;
      i = std::min(i, s.size());
    }
    if (IsSecretKey(key) && i > value_begin) spans.emplace_back(value_begin, i);
  }
  return spans;
}

bool IsPostgresScheme(std::string_view url) {
  return url.substr(0, 13) == "postgresql://" ||
         url.substr(0, 11) == "postgres://";
}

std::vector<Span> PasswordSpans(std::string_view url) {
  for (std::string_view scheme : {"postgresql://", "postgres://"}) {
    if (url.substr(0, scheme.size()) == scheme) {
      return UriPasswordSpans(url, scheme.size());
    }
  }
  return KeywordPasswordSpans(url);
}

void ReplaceAll(std::string* text, std::string_view from, std::string_view to) {
  if (from.empty()) return;
  for (size_t pos = text->find(from); pos != std::string::npos;
       pos = text->find(from, pos + to.size())) {
    text->replace(pos, from.size(), to);
  }
}

// masked URL + ": " + `message`, with the URL and its passwords (as written
// and percent-decoded) masked wherever `message` quotes them.
Status UrlError(const std::string& url, std::string_view message) {
  const std::string masked = MaskedUrl(url);
  std::string text(message);
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) {
    text.pop_back();
  }
  ReplaceAll(&text, url, masked);
  for (const Span& span : PasswordSpans(url)) {
    const std::string_view secret =
        std::string_view(url).substr(span.first, span.second - span.first);
    ReplaceAll(&text, secret, "***");
    ReplaceAll(&text, PercentDecoded(secret), "***");
  }
  return Status::Error(masked + ": " + text);
}

using Clock = std::chrono::steady_clock;

// WaitFor's answers besides the socket's events (0: the timeout passed).
constexpr int kInterrupted = -1;
constexpr int kPollFailed = -2;

// `ms` as messages show it: "10 s", or "1500 ms".
std::string Duration(int ms) {
  return ms % 1000 == 0 ? std::to_string(ms / 1000) + " s"
                        : std::to_string(ms) + " ms";
}

// poll()s `socket` for `events` and `interrupt_fd` (when >= 0) for POLLIN,
// `timeout_ms` at most (-1: no limit). Returns the socket's events, 0 when
// the time passed or a signal came, kInterrupted or kPollFailed (errno).
int WaitFor(int socket, short events, int interrupt_fd, int timeout_ms) {
  pollfd fds[2] = {{interrupt_fd, POLLIN, 0}, {socket, events, 0}};
  const int ready = poll(fds, 2, timeout_ms);
  if (ready < 0) return errno == EINTR ? 0 : kPollFailed;
  if (fds[0].revents != 0) return kInterrupted;
  return fds[1].revents;
}

// libpq's connect_timeout of `conn` in seconds (it counts less than 2 as
// 2); 0 for none.
int ConnectTimeoutS(PGconn* conn) {
  int seconds = 0;
  if (PQconninfoOption* options = PQconninfo(conn)) {
    for (PQconninfoOption* o = options; o->keyword != nullptr; ++o) {
      if (std::strcmp(o->keyword, "connect_timeout") == 0 &&
          o->val != nullptr) {
        seconds = std::atoi(o->val);
      }
    }
    PQconninfoFree(options);
  }
  return seconds <= 0 ? 0 : std::max(seconds, 2);
}

// Connects to `url` as Connection::Open says, without ever blocking longer
// than its timeouts: PQconnectStartParams and PQconnectPoll on the socket,
// with the connect timeout of each address tried and the interrupt fd of
// `options`. The connection is left non-blocking.
Result<PGconn*> Connect(const std::string& url, const Options& options) {
  // Later entries win: `url` (expanded from dbname) overrides the defaults
  // before it, client_encoding after it is always UTF8.
  const std::string timeout = std::to_string(options.connect_timeout_s);
  const char* const keys[] = {
      "connect_timeout",           "keepalives",
      "keepalives_idle",           "keepalives_interval",
      "keepalives_count",          "tcp_user_timeout",
      "fallback_application_name", "dbname",
      "client_encoding",           nullptr};
  const char* const values[] = {
      timeout.c_str(), "1",       "5",         "2",    "3",
      "10000",         "homepot", url.c_str(), "UTF8", nullptr};
  std::unique_ptr<PGconn, decltype(&PQfinish)> conn(
      PQconnectStartParams(keys, values, /*expand_dbname=*/1), &PQfinish);
  if (conn == nullptr) return UrlError(url, "out of memory");
  if (PQstatus(conn.get()) == CONNECTION_BAD) {
    return UrlError(url, PQerrorMessage(conn.get()));
  }
  const int timeout_s = ConnectTimeoutS(conn.get());
  PostgresPollingStatusType polling = PGRES_POLLING_WRITING;
  int socket = -1;
  Clock::time_point deadline;
  while (polling != PGRES_POLLING_OK) {
    if (polling == PGRES_POLLING_FAILED) {
      return UrlError(url, PQerrorMessage(conn.get()));
    }
    // As libpq counts it, the timeout applies to each address tried: a new
    // socket starts it afresh.
    if (PQsocket(conn.get()) != socket) {
      socket = PQsocket(conn.get());
      deadline = Clock::now() + std::chrono::seconds(timeout_s);
    }
    if (socket < 0) {
      polling = PQconnectPoll(conn.get());
      continue;
    }
    int wait_ms = -1;
    if (timeout_s > 0) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - Clock::now());
      if (left.count() <= 0) {
        return UrlError(url, "no connection within " +
                                 Duration(timeout_s * 1000) +
                                 " (connect_timeout)");
      }
      wait_ms = static_cast<int>(left.count());
    }
    const int ready =
        WaitFor(socket, polling == PGRES_POLLING_READING ? POLLIN : POLLOUT,
                options.interrupt_fd, wait_ms);
    if (ready == kInterrupted) return UrlError(url, "interrupted");
    if (ready == kPollFailed) {
      return UrlError(url, std::string("poll: ") + std::strerror(errno));
    }
    if (ready == 0) continue;
    polling = PQconnectPoll(conn.get());
  }
  if (PQsetnonblocking(conn.get(), 1) != 0) {
    return UrlError(url, PQerrorMessage(conn.get()));
  }
  PQsetNoticeProcessor(
      conn.get(), [](void*, const char*) {}, nullptr);
  return conn.release();
}

}  // namespace

std::string MaskedUrl(std::string_view url) {
  std::string out;
  size_t from = 0;
  for (const Span& span : PasswordSpans(url)) {
    out.append(url.substr(from, span.first - from));
    out += "***";
    from = span.second;
  }
  out.append(url.substr(from));
  return out;
}

// ----------------------------------------------------------------- Rows

int Rows::rows() const { return PQntuples(result_.get()); }

int Rows::columns() const { return PQnfields(result_.get()); }

int Rows::Column(const char* name) const {
  return PQfnumber(result_.get(), name);
}

bool Rows::IsNull(int row, int column) const {
  return PQgetisnull(result_.get(), row, column) != 0;
}

std::string Rows::Text(int row, int column) const {
  return std::string(PQgetvalue(result_.get(), row, column),
                     PQgetlength(result_.get(), row, column));
}

std::optional<std::string> Rows::OptionalText(int row, int column) const {
  if (IsNull(row, column)) return std::nullopt;
  return Text(row, column);
}

int64_t Rows::Int(int row, int column) const {
  if (IsNull(row, column)) return 0;
  const char* text = PQgetvalue(result_.get(), row, column);
  char* end = nullptr;
  errno = 0;
  const long long value = std::strtoll(text, &end, 10);
  if (errno != 0 || end == text || *end != '\0') return 0;
  return value;
}

int64_t Rows::affected() const {
  return std::strtoll(PQcmdTuples(result_.get()), nullptr, 10);
}

std::string Rows::command() const { return PQcmdStatus(result_.get()); }

// ----------------------------------------------------------- Connection

Connection::Connection(PGconn* conn, std::string url, const Options& options)
    : conn_(conn),
      options_(options),
      url_(std::move(url)),
      masked_url_(MaskedUrl(url_)) {}

Result<Connection> Connection::Open(const std::string& url,
                                    int connect_timeout_s) {
  Options options;
  options.connect_timeout_s = connect_timeout_s;
  return Open(url, options);
}

Result<Connection> Connection::Open(const std::string& url,
                                    const Options& options) {
  // libpq reads a / or @ in a URI's password as the end of the host part
  // and quotes pieces of it in its errors: refuse it before libpq sees it.
  for (const Span& span : PasswordSpans(url)) {
    const std::string_view password(url.data() + span.first,
                                    span.second - span.first);
    if (IsPostgresScheme(url) &&
        password.find_first_of("/@?#") != std::string_view::npos) {
      return Status::Error(MaskedUrl(url) +
                           ": the password in the URL must be "
                           "percent-encoded (/ @ ? # as %2F %40 %3F %23); "
                           "better, keep it in a passfile");
    }
  }
  Result<PGconn*> conn = Connect(url, options);
  if (!conn.ok()) return conn.status();
  return Connection(*conn, url, options);
}

Status Connection::Broken(std::string_view message) {
  conn_.reset();
  closed_because_ = std::string(message);
  EndStream(Error(message));
  return Error(message);
}

void Connection::EndStream(const Status& error) {
  if (stream_ != nullptr) {
    stream_->on_wire_ = false;
    if (!error.ok()) stream_->error_ = error;
  }
  stream_ = nullptr;
  streaming_ = false;
}

Status Connection::Settle() {
  return streaming_ ? ReadStream(/*one_row=*/false) : Status::Ok();
}

Status Connection::ReadStream(bool one_row) {
  PGconn* conn = conn_.get();
  RowStream* const owner = stream_;
  // Rows read to the end, copied into one result (as Run would hold them).
  std::unique_ptr<PGresult, Rows::Clearer> gathered;
  auto give_gathered = [&] {
    if (gathered != nullptr && owner != nullptr) {
      owner->ahead_.push_back(Rows(gathered.release()));
    }
  };
  Clock::time_point progress = Clock::now();
  for (;;) {
    if (Status ready = AwaitResult(&progress); !ready.ok()) {
      give_gathered();  // the error follows them (Broken gave it)
      return ready;
    }
    std::unique_ptr<PGresult, Rows::Clearer> result(PQgetResult(conn));
    if (result == nullptr) {  // the statement is over
      give_gathered();
      EndStream(Status::Ok());
      return Status::Ok();
    }
    const ExecStatusType status = PQresultStatus(result.get());
    if (status == PGRES_SINGLE_TUPLE) {
      if (owner == nullptr) continue;
      if (one_row) {
        owner->ahead_.push_back(Rows(result.release()));
        return Status::Ok();
      }
      if (gathered == nullptr) {
        gathered.reset(PQcopyResult(result.get(), PG_COPYRES_ATTRS));
        if (gathered == nullptr) return Broken("out of memory");
      }
      const int row = PQntuples(gathered.get());
      for (int column = 0; column < PQnfields(result.get()); ++column) {
        const bool null = PQgetisnull(result.get(), 0, column) != 0;
        if (PQsetvalue(gathered.get(), row, column,
                       null ? nullptr : PQgetvalue(result.get(), 0, column),
                       null ? -1 : PQgetlength(result.get(), 0, column)) == 0) {
          return Broken("out of memory");
        }
      }
      continue;
    }
    if (status == PGRES_COPY_IN || status == PGRES_COPY_OUT ||
        status == PGRES_COPY_BOTH) {
      give_gathered();
      return Broken("COPY is not supported");
    }
    // The final result, or the error that ended the statement; then
    // PQgetResult answers nullptr.
    if (owner != nullptr) {
      if (Status failed = ResultError(result.get()); !failed.ok()) {
        if (owner->error_.ok()) owner->error_ = failed;
      } else {
        owner->end_.emplace(Rows(result.release()));
      }
    }
  }
}

Status Connection::Closed() const {
  return Error(closed_because_.empty() ? "the connection is closed"
                                       : closed_because_);
}

Result<short> Connection::Wait(short events, Clock::time_point* progress) {
  for (;;) {
    int timeout_ms = -1;
    if (options_.stall_timeout_ms > 0) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          *progress + std::chrono::milliseconds(options_.stall_timeout_ms) -
          Clock::now());
      if (left.count() <= 0) {
        return Broken("no answer from the server for " +
                      Duration(options_.stall_timeout_ms));
      }
      timeout_ms = static_cast<int>(left.count());
    }
    const int socket = PQsocket(conn_.get());
    if (socket < 0) return Broken(PQerrorMessage(conn_.get()));
    const int ready =
        WaitFor(socket, events, options_.interrupt_fd, timeout_ms);
    if (ready == kInterrupted) return Broken("interrupted");
    if (ready == kPollFailed) {
      return Broken(std::string("poll: ") + std::strerror(errno));
    }
    if (ready != 0) {
      *progress = Clock::now();
      return static_cast<short>(ready);
    }
  }
}

Status Connection::AwaitResult(Clock::time_point* progress) {
  PGconn* conn = conn_.get();
  // A connection that breaks ends PQisBusy: PQgetResult then reports what
  // the server said last, without waiting.
  while (PQisBusy(conn) != 0) {
    Result<short> ready = Wait(POLLIN, progress);
    if (!ready.ok()) return ready.status();
    if (PQconsumeInput(conn) == 0 && PQstatus(conn) == CONNECTION_OK) {
      return Broken(PQerrorMessage(conn));
    }
  }
  return Status::Ok();
}

template <typename Send>
Status Connection::SendStatement(Send send) {
  if (Status settled = Settle(); !settled.ok()) return settled;
  PGconn* conn = conn_.get();
  if (conn == nullptr) return Closed();
  if (send(conn) == 0) {
    const std::string message = PQerrorMessage(conn);
    if (PQstatus(conn) != CONNECTION_OK) return Broken(message);
    return Error(message);
  }
  Clock::time_point progress = Clock::now();
  // Sending: libpq asks to read too while the server's output fills the
  // socket (PQflush's contract).
  for (;;) {
    const int flushed = PQflush(conn);
    if (flushed < 0) return Broken(PQerrorMessage(conn));
    if (flushed == 0) return Status::Ok();
    Result<short> ready = Wait(POLLIN | POLLOUT, &progress);
    if (!ready.ok()) return ready.status();
    if ((*ready & POLLIN) != 0 && PQconsumeInput(conn) == 0) {
      return Broken(PQerrorMessage(conn));
    }
  }
}

template <typename Send>
Result<Rows> Connection::Perform(Send send) {
  if (Status sent = SendStatement(send); !sent.ok()) return sent;
  PGconn* conn = conn_.get();
  Clock::time_point progress = Clock::now();
  // Reading every result, as PQexec does: the first error wins (a failed
  // statement ends the rest), else the last result.
  std::optional<Rows> kept;
  bool kept_failed = false;
  for (;;) {
    if (Status ready = AwaitResult(&progress); !ready.ok()) return ready;
    PGresult* result = PQgetResult(conn);
    if (result == nullptr) break;
    const ExecStatusType status = PQresultStatus(result);
    if (kept_failed) {
      PQclear(result);
    } else {
      kept.emplace(Rows(result));
      kept_failed = status == PGRES_FATAL_ERROR || status == PGRES_BAD_RESPONSE;
    }
    if (status == PGRES_COPY_IN || status == PGRES_COPY_OUT ||
        status == PGRES_COPY_BOTH) {
      break;
    }
  }
  if (!kept) return Error(PQerrorMessage(conn));
  Status status = ResultError(kept->result_.get());
  if (!status.ok()) return status;
  return std::move(*kept);
}

Status Connection::Error(std::string_view message) const {
  return UrlError(url_, message);
}

Status Connection::ResultError(const PGresult* result) const {
  if (result == nullptr) return Error(PQerrorMessage(conn_.get()));
  switch (PQresultStatus(result)) {
    case PGRES_COMMAND_OK:
    case PGRES_TUPLES_OK:
    case PGRES_EMPTY_QUERY:
      return Status::Ok();
    case PGRES_COPY_IN:
    case PGRES_COPY_OUT:
    case PGRES_COPY_BOTH:
      return Error("COPY is not supported");
    default:
      break;
  }
  const char* primary = PQresultErrorField(result, PG_DIAG_MESSAGE_PRIMARY);
  const char* sqlstate = PQresultErrorField(result, PG_DIAG_SQLSTATE);
  if (primary == nullptr) return Error(PQresultErrorMessage(result));
  std::string message = primary;
  if (sqlstate != nullptr)
    message += std::string(" (SQLSTATE ") + sqlstate + ")";
  return Error(message);
}

Status Connection::Exec(const std::string& sql) {
  return Perform([&](PGconn* conn) { return PQsendQuery(conn, sql.c_str()); })
      .status();
}

namespace {

// The parameters as PQsendQueryParams takes them; fails for a NUL byte.
Result<std::vector<const char*>> ParamValues(const Connection& conn,
                                             const Params& params) {
  std::vector<const char*> values;
  values.reserve(params.size());
  for (size_t i = 0; i < params.size(); ++i) {
    if (params[i] && params[i]->find('\0') != std::string::npos) {
      return conn.Error("parameter $" + std::to_string(i + 1) +
                        " contains a NUL byte");
    }
    values.push_back(params[i] ? params[i]->c_str() : nullptr);
  }
  return values;
}

int SendParams(PGconn* conn, const std::string& sql,
               const std::vector<const char*>& values,
               const std::vector<Oid>& types) {
  return PQsendQueryParams(
      conn, sql.c_str(), static_cast<int>(values.size()),
      types.size() == values.size() ? types.data() : nullptr, values.data(),
      nullptr, nullptr, /*resultFormat=*/0);
}

}  // namespace

Result<Rows> Connection::Run(const std::string& sql, const Params& params,
                             const std::vector<Oid>& types) {
  Result<std::vector<const char*>> values = ParamValues(*this, params);
  if (!values.ok()) return values.status();
  return Perform(
      [&](PGconn* conn) { return SendParams(conn, sql, *values, types); });
}

Result<std::unique_ptr<RowStream>> Connection::Stream(
    const std::string& sql, const Params& params,
    const std::vector<Oid>& types) {
  Result<std::vector<const char*>> values = ParamValues(*this, params);
  if (!values.ok()) return values.status();
  bool in_transaction = false;
  Status sent = SendStatement([&](PGconn* conn) {
    in_transaction = InTransaction();
    // Single-row mode is chosen right after the statement is queued.
    return SendParams(conn, sql, *values, types) != 0 &&
                   PQsetSingleRowMode(conn) != 0
               ? 1
               : 0;
  });
  if (!sent.ok()) return sent;
  std::unique_ptr<RowStream> stream(new RowStream(this));
  stream_in_transaction_ = in_transaction;
  streaming_ = true;
  stream_ = stream.get();
  return stream;
}

bool Connection::InTransaction() const {
  const PGTransactionStatusType status = PQtransactionStatus(conn_.get());
  // While a stream's statement runs, libpq says ACTIVE: the statement does
  // not change whether a transaction is open.
  if (status == PQTRANS_ACTIVE && streaming_) return stream_in_transaction_;
  return status == PQTRANS_INTRANS || status == PQTRANS_INERROR ||
         status == PQTRANS_ACTIVE;
}

Status Connection::Listen(const std::string& channel) {
  if (conn_ == nullptr) return Closed();
  char* quoted =
      PQescapeIdentifier(conn_.get(), channel.data(), channel.size());
  if (quoted == nullptr) return Error(PQerrorMessage(conn_.get()));
  const std::string sql = std::string("LISTEN ") + quoted;
  PQfreemem(quoted);
  Status status = Exec(sql);
  if (status.ok() && std::find(channels_.begin(), channels_.end(), channel) ==
                         channels_.end()) {
    channels_.push_back(channel);
  }
  return status;
}

Result<std::vector<Notification>> Connection::TakeNotifications() {
  if (Status settled = Settle(); !settled.ok()) return settled;
  if (conn_ == nullptr) return Closed();
  if (PQconsumeInput(conn_.get()) == 0 ||
      PQstatus(conn_.get()) != CONNECTION_OK) {
    return Error(PQerrorMessage(conn_.get()));
  }
  std::vector<Notification> out;
  while (PGnotify* n = PQnotifies(conn_.get())) {
    out.push_back(Notification{n->relname, n->extra, n->be_pid});
    PQfreemem(n);
  }
  return out;
}

Result<std::vector<Notification>> Connection::WaitForNotifications(
    int timeout_ms) {
  const Clock::time_point deadline =
      Clock::now() + std::chrono::milliseconds(timeout_ms);
  for (;;) {
    Result<std::vector<Notification>> got = TakeNotifications();
    if (!got.ok() || !got->empty()) return got;
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - Clock::now());
    if (left.count() <= 0) return got;
    pollfd fd{socket(), POLLIN, 0};
    if (poll(&fd, 1, static_cast<int>(left.count())) < 0 && errno != EINTR) {
      return Error(std::string("poll: ") + std::strerror(errno));
    }
  }
}

int Connection::socket() const { return PQsocket(conn_.get()); }

bool Connection::ok() const {
  return conn_ != nullptr && PQstatus(conn_.get()) == CONNECTION_OK;
}

Status Connection::Reset() {
  if (streaming_) EndStream(Error("the connection was reset"));
  conn_.reset();
  Result<PGconn*> conn = Connect(url_, options_);
  if (!conn.ok()) return conn.status();
  conn_.reset(*conn);
  closed_because_.clear();
  const std::vector<std::string> channels = std::move(channels_);
  channels_.clear();
  for (const std::string& channel : channels) {
    Status status = Listen(channel);
    if (!status.ok()) return status;
  }
  return Status::Ok();
}

int Connection::backend_pid() const { return PQbackendPID(conn_.get()); }

// ------------------------------------------------------------ RowStream

RowStream::~RowStream() {
  // The rest of the result is dropped by the connection's next statement.
  if (on_wire_ && conn_->stream_ == this) conn_->stream_ = nullptr;
}

Result<bool> RowStream::Next() {
  if (!ahead_.empty() && row_ + 1 < ahead_.front().rows()) {
    ++row_;
    return true;
  }
  if (!ahead_.empty() && row_ >= 0) ahead_.pop_front();
  row_ = -1;
  if (ahead_.empty() && on_wire_) {
    if (Status read = conn_->ReadStream(/*one_row=*/true); !read.ok()) {
      if (ahead_.empty()) return read;
    }
  }
  if (!ahead_.empty()) {
    row_ = 0;
    return true;
  }
  if (!error_.ok()) return error_;
  return false;
}

bool RowStream::IsNull(int column) const {
  return ahead_.front().IsNull(row_, column);
}

std::string RowStream::Text(int column) const {
  return ahead_.front().Text(row_, column);
}

std::optional<std::string> RowStream::OptionalText(int column) const {
  return ahead_.front().OptionalText(row_, column);
}

int64_t RowStream::Int(int column) const {
  return ahead_.front().Int(row_, column);
}

int64_t RowStream::affected() const { return end_ ? end_->affected() : 0; }

std::string RowStream::command() const { return end_ ? end_->command() : ""; }

// ---------------------------------------------------------- Transaction

Result<Transaction> Transaction::Begin(Connection* conn) {
  Status status = conn->Exec("BEGIN");
  if (!status.ok()) return status;
  return Transaction(conn);
}

Transaction::Transaction(Transaction&& other) noexcept
    : conn_(std::exchange(other.conn_, nullptr)) {}

Transaction::~Transaction() {
  if (conn_ != nullptr) conn_->Exec("ROLLBACK");
}

Status Transaction::Commit() {
  Result<Rows> rows = conn_->Run("COMMIT");
  if (!rows.ok()) return rows.status();
  // COMMIT of a transaction in which a statement failed rolls it back and
  // still succeeds, saying ROLLBACK.
  if (rows->command() != "COMMIT") {
    Connection* conn = std::exchange(conn_, nullptr);
    return conn->Error("the transaction was rolled back: a statement failed");
  }
  conn_ = nullptr;
  return Status::Ok();
}

}  // namespace pg
}  // namespace homepot
