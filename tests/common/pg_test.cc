#include "pg.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <fstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "database.h"
#include "postgres.h"

namespace homepot {
namespace pg {
namespace {

TEST(MaskedUrlTest, MasksThePasswordOfAUri) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"postgresql://u:secret@db.example:5432/homepot",
       "postgresql://u:***@db.example:5432/homepot"},
      {"postgres://u:s%40c:r@h/db", "postgres://u:***@h/db"},
      {"postgresql://u:p@[::1]:5432/db", "postgresql://u:***@[::1]:5432/db"},
      {"postgresql://u:p?x@h/db?sslmode=require",
       "postgresql://u:***@h/db?sslmode=require"},
      {"postgresql://h/db?user=u&password=secret&sslmode=require",
       "postgresql://h/db?user=u&password=***&sslmode=require"},
      {"postgresql://u:p@h/db?password=q",
       "postgresql://u:***@h/db?password=***"},
      {"postgresql://h/db?sslpassword=k&password=",
       "postgresql://h/db?sslpassword=***&password=***"},
      {"postgresql://h/db?pass%77ord=x", "postgresql://h/db?pass%77ord=***"},
  };
  for (const auto& [url, masked] : cases) {
    EXPECT_EQ(MaskedUrl(url), masked) << url;
  }
}

TEST(MaskedUrlTest, KeepsAUriWithoutPassword) {
  for (const std::string url :
       {"postgresql://u@h:5432/db", "postgresql:///db?host=/run/postgresql",
        "postgresql://u:@h/db", "postgresql://h/db?passfile=/etc/pgpass",
        "postgresql://", ""}) {
    EXPECT_EQ(MaskedUrl(url), url);
  }
}

TEST(MaskedUrlTest, MasksThePasswordOfAKeywordString) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"host=h password=secret dbname=d", "host=h password=*** dbname=d"},
      {"password = 'se cret\\' x' dbname=d", "password = *** dbname=d"},
      {"password=a\\ b user=u", "password=*** user=u"},
      {"sslpassword=k", "sslpassword=***"},
      {"host=h passfile=/p user=u", "host=h passfile=/p user=u"},
      {"dbname=d", "dbname=d"},
  };
  for (const auto& [url, masked] : cases) {
    EXPECT_EQ(MaskedUrl(url), masked) << url;
  }
}

TEST(MaskedUrlTest, MasksWhatFollowsAnUnparsablePoint) {
  EXPECT_EQ(MaskedUrl("host=h passwordsecret"), "host=h ***");
  EXPECT_EQ(MaskedUrl("host=h password='unterminated"), "host=h password=***");
  EXPECT_EQ(MaskedUrl("host=h password secret"), "host=h ***");
}

// Port 1 on loopback refuses at once: no server is needed.
TEST(PgConnectionTest, AFailedConnectionNamesTheMaskedUrl) {
  const std::string url =
      "postgresql://u:hunter2@127.0.0.1:1/db?connect_timeout=2";
  Result<Connection> conn = Connection::Open(url);
  ASSERT_FALSE(conn.ok());
  const std::string& message = conn.status().message();
  EXPECT_EQ(message.rfind(MaskedUrl(url) + ": ", 0), 0u) << message;
  EXPECT_NE(message.find("127.0.0.1"), std::string::npos) << message;
  EXPECT_EQ(message.find("hunter2"), std::string::npos) << message;
}

// libpq quotes a URL it cannot parse, password included.
TEST(PgConnectionTest, AnUnparsableUrlDoesNotShowItsPassword) {
  for (const std::string url :
       {"postgresql://u:hunter2@[::1/db", "postgresql://u:hun%zzter2@h/db",
        "postgresql://h/db?password=hun%zzter2",
        "postgresql://h/db?password=hunter2&x", "host=h password='hunter2",
        "host=h password=hunter2 nonsense=1"}) {
    Result<Connection> conn = Connection::Open(url);
    ASSERT_FALSE(conn.ok()) << url;
    const std::string& message = conn.status().message();
    EXPECT_EQ(message.find("hunter2"), std::string::npos) << message;
    EXPECT_EQ(message.find("hun%zzter2"), std::string::npos) << message;
    EXPECT_EQ(message.rfind(MaskedUrl(url) + ": ", 0), 0u) << message;
  }
}

// A / or @ in a URI's password ends the host part for libpq, which would
// quote a piece of it: masked whole, and refused before libpq sees it.
TEST(PgConnectionTest, APasswordWithSlashOrAtIsMaskedWholeAndRefused) {
  EXPECT_EQ(MaskedUrl("postgresql://u:hun/ter2@h:5432/db"),
            "postgresql://u:***@h:5432/db");
  EXPECT_EQ(MaskedUrl("postgresql://u:hun@ter2@h/db?sslmode=disable"),
            "postgresql://u:***@h/db?sslmode=disable");
  for (const std::string url : {"postgresql://u:hun/ter2@127.0.0.1:1/db",
                                "postgres://u:hun@ter2@127.0.0.1:1/db"}) {
    Result<Connection> conn = Connection::Open(url);
    ASSERT_FALSE(conn.ok()) << url;
    const std::string& message = conn.status().message();
    EXPECT_EQ(message.find("hun"), std::string::npos) << message;
    EXPECT_EQ(message.find("ter2"), std::string::npos) << message;
    EXPECT_NE(message.find("percent-encoded"), std::string::npos) << message;
  }
}

using Clock = std::chrono::steady_clock;

int64_t MsSince(Clock::time_point start) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() -
                                                               start)
      .count();
}

// A process stopped with SIGSTOP for the guard's lifetime.
class Stopped {
 public:
  explicit Stopped(int pid) : pid_(pid) {
    stopped_ = pid_ > 0 && kill(pid_, SIGSTOP) == 0;
  }
  ~Stopped() {
    if (stopped_) kill(pid_, SIGCONT);
  }
  bool ok() const { return stopped_; }

 private:
  int pid_;
  bool stopped_ = false;
};

// An eventfd, closed by the destructor.
class EventFd {
 public:
  EventFd() : fd_(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {}
  ~EventFd() {
    if (fd_ >= 0) close(fd_);
  }
  int fd() const { return fd_; }
  void Signal() {
    const uint64_t one = 1;
    (void)!write(fd_, &one, sizeof(one));
  }
  void Drain() {
    uint64_t count = 0;
    (void)!read(fd_, &count, sizeof(count));
  }

 private:
  int fd_;
};

// A loopback port whose connections the kernel accepts and nobody answers:
// a server that stalls before its first byte.
class SilentListener {
 public:
  SilentListener() {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(addr);
    if (fd_ >= 0 &&
        bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
        listen(fd_, 16) == 0 &&
        getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
      port_ = ntohs(addr.sin_port);
    }
  }
  ~SilentListener() {
    if (fd_ >= 0) close(fd_);
  }
  int port() const { return port_; }

 private:
  int fd_ = -1;
  int port_ = 0;
};

TEST(PgConnectionTest, AConnectionAttemptToASilentServerEndsAtItsTimeout) {
  SilentListener server;
  ASSERT_GT(server.port(), 0);
  const std::string url =
      "postgresql://u@127.0.0.1:" + std::to_string(server.port()) +
      "/db?sslmode=disable";
  Options options;
  options.connect_timeout_s = 2;
  const Clock::time_point start = Clock::now();
  Result<Connection> conn = Connection::Open(url, options);
  const int64_t took_ms = MsSince(start);
  ASSERT_FALSE(conn.ok());
  EXPECT_EQ(conn.status().message(),
            url + ": no connection within 2 s (connect_timeout)");
  EXPECT_GE(took_ms, 1900);
  EXPECT_LT(took_ms, 5000);
}

TEST(PgConnectionTest, AnInterruptEndsAConnectionAttemptAtOnce) {
  SilentListener server;
  ASSERT_GT(server.port(), 0);
  const std::string url =
      "postgresql://u@127.0.0.1:" + std::to_string(server.port()) +
      "/db?sslmode=disable&connect_timeout=0";
  EventFd stop;
  ASSERT_GE(stop.fd(), 0);
  Options options;
  options.interrupt_fd = stop.fd();
  std::thread stopper([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    stop.Signal();
  });
  const Clock::time_point start = Clock::now();
  Result<Connection> conn = Connection::Open(url, options);
  const int64_t took_ms = MsSince(start);
  stopper.join();
  ASSERT_FALSE(conn.ok());
  EXPECT_EQ(conn.status().message(), url + ": interrupted");
  EXPECT_LT(took_ms, 3000);
}

// A throwaway cluster and a connection to it.
class PgServerTest : public testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(cluster_.Start()); }

  Result<Connection> Open(const Options& options) {
    return Connection::Open(cluster_.Url(), options);
  }

  test::PostgresCluster cluster_;
};

// The backend serving the connection stopped: the statement fails after
// the stall timeout, the connection is closed, and Reset brings it back
// once the server answers again.
TEST_F(PgServerTest, AStalledServerFailsTheStatementAfterTheStallTimeout) {
  Options options;
  options.stall_timeout_ms = 1000;
  Result<Connection> conn = Open(options);
  ASSERT_TRUE(conn.ok()) << conn.status().message();
  ASSERT_TRUE(conn->Listen("events").ok());
  {
    Stopped backend(conn->backend_pid());
    ASSERT_TRUE(backend.ok());
    const Clock::time_point start = Clock::now();
    Result<Rows> rows = conn->Run("SELECT 1");
    const int64_t took_ms = MsSince(start);
    ASSERT_FALSE(rows.ok());
    EXPECT_EQ(rows.status().message(),
              conn->masked_url() + ": no answer from the server for 1 s");
    EXPECT_GE(took_ms, 950);
    EXPECT_LT(took_ms, 5000);
    EXPECT_FALSE(conn->ok());
    EXPECT_EQ(conn->socket(), -1);
    // Closed: later calls fail at once, with the reason.
    EXPECT_EQ(conn->Exec("SELECT 1").message(), rows.status().message());
    EXPECT_EQ(conn->TakeNotifications().status().message(),
              rows.status().message());
  }
  ASSERT_TRUE(conn->Reset().ok());
  Result<Rows> rows = conn->Run("SELECT 2");
  ASSERT_TRUE(rows.ok()) << rows.status().message();
  EXPECT_EQ(rows->Int(0, 0), 2);
  // The LISTEN came back with it.
  Result<Connection> other = Open(Options());
  ASSERT_TRUE(other.ok()) << other.status().message();
  ASSERT_TRUE(other->Exec("NOTIFY events, 'back'").ok());
  Result<std::vector<Notification>> got = conn->WaitForNotifications(5000);
  ASSERT_TRUE(got.ok()) << got.status().message();
  ASSERT_EQ(got->size(), 1u);
  EXPECT_EQ((*got)[0].payload, "back");
}

// A statement that keeps the server busy without a byte for longer than
// the interrupt takes: the interrupt ends it at once; while the fd stays
// readable a reconnect is interrupted too.
TEST_F(PgServerTest, AnInterruptEndsAWaitingStatementAtOnce) {
  EventFd stop;
  ASSERT_GE(stop.fd(), 0);
  Options options;
  options.interrupt_fd = stop.fd();
  Result<Connection> conn = Open(options);
  ASSERT_TRUE(conn.ok()) << conn.status().message();
  Stopped backend(conn->backend_pid());
  ASSERT_TRUE(backend.ok());
  std::thread stopper([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    stop.Signal();
  });
  const Clock::time_point start = Clock::now();
  Status status = conn->Exec("SELECT 1");
  const int64_t took_ms = MsSince(start);
  stopper.join();
  EXPECT_EQ(status.message(), conn->masked_url() + ": interrupted");
  EXPECT_LT(took_ms, 3000);
  EXPECT_FALSE(conn->ok());
  Status reset = conn->Reset();
  EXPECT_EQ(reset.message(), conn->masked_url() + ": interrupted");
  stop.Drain();
  ASSERT_TRUE(conn->Reset().ok());
  EXPECT_TRUE(conn->Exec("SELECT 1").ok());
}

// Notifications that arrive while a statement runs wait for
// TakeNotifications; results of several statements come back as PQexec
// gives them (the first error, else the last result).
TEST_F(PgServerTest, StatementsKeepNotificationsAndReportTheFirstError) {
  Result<Connection> conn = Open(Options());
  ASSERT_TRUE(conn.ok()) << conn.status().message();
  Result<Connection> other = Open(Options());
  ASSERT_TRUE(other.ok()) << other.status().message();
  ASSERT_TRUE(conn->Listen("events").ok());
  ASSERT_TRUE(other->Exec("NOTIFY events, 'one'").ok());
  // The notification is sent when the listener's backend is idle: the
  // statement's reads pick it up.
  Result<Rows> slept = conn->Run("SELECT pg_sleep(0.2)");
  ASSERT_TRUE(slept.ok()) << slept.status().message();
  Result<std::vector<Notification>> got = conn->WaitForNotifications(5000);
  ASSERT_TRUE(got.ok()) << got.status().message();
  ASSERT_EQ(got->size(), 1u);
  EXPECT_EQ((*got)[0].payload, "one");

  Status failed = conn->Exec("SELECT 1; SELECT * FROM missing; SELECT 3");
  EXPECT_NE(failed.message().find("SQLSTATE 42P01"), std::string::npos)
      << failed.message();
  EXPECT_TRUE(conn->ok());
  EXPECT_TRUE(conn->Exec("CREATE TEMP TABLE t (x int); INSERT INTO t "
                         "VALUES (1), (2)")
                  .ok());
  Result<Rows> rows = conn->Run("SELECT count(*) FROM t");
  ASSERT_TRUE(rows.ok()) << rows.status().message();
  EXPECT_EQ(rows->Int(0, 0), 2);
}

// This process's peak resident set (VmHWM) in KiB; -1 when unreadable.
int64_t PeakRssKib() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stoll(line.substr(6));
  }
  return -1;
}

// Starts this process's VmHWM again from its current RSS.
bool ResetPeakRss() {
  std::ofstream clear("/proc/self/clear_refs");
  clear << "5";
  clear.flush();
  return static_cast<bool>(clear);
}

// A Statement steps through a result of a million rows (about 100 MB as
// one result) holding a row at a time: the peak RSS grows by far less than
// the result.
TEST_F(PgServerTest, AStatementStepsThroughABigResultInBoundedMemory) {
  Result<Database> db = Database::OpenPostgres(cluster_.Url());
  ASSERT_TRUE(db.ok()) << db.status().message();
  Result<Statement> select = db->Prepare(
      "SELECT i, repeat('x', 100) FROM (SELECT generate_series(1, ?1) AS i) "
      "AS s");
  ASSERT_TRUE(select.ok()) << select.status().message();
  constexpr int64_t kRows = 1000000;
  select->Bind(1, kRows);
  ASSERT_TRUE(ResetPeakRss());
  const int64_t before_kib = PeakRssKib();
  ASSERT_GT(before_kib, 0);
  int64_t rows = 0;
  for (;;) {
    Result<bool> row = select->Step();
    ASSERT_TRUE(row.ok()) << row.status().message();
    if (!*row) break;
    ++rows;
    ASSERT_EQ(select->Int(0), rows);
    ASSERT_EQ(select->Text(1).size(), 100u);
  }
  EXPECT_EQ(rows, kRows);
  const int64_t grew_kib = PeakRssKib() - before_kib;
  EXPECT_LT(grew_kib, 32 * 1024)
      << "the peak RSS grew by " << grew_kib << " KiB";
  // Stepped to its end, it keeps answering false until Reset runs it again.
  Result<bool> again = select->Step();
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(*again);
  select->Reset();
  select->Bind(1, int64_t{3});
  ASSERT_TRUE(select->Run().ok());
}

// Reads `stream` to its end, appending the first column of each row to
// `values`; returns the error that ended it, if any.
Status ReadAll(RowStream* stream, std::vector<int64_t>* values) {
  for (int64_t i = 0; i < 100000000; ++i) {
    Result<bool> row = stream->Next();
    if (!row.ok()) return row.status();
    if (!*row) return Status::Ok();
    values->push_back(stream->Int(0));
  }
  return Status::Error("no end");
}

// A statement run while a stream is half read reads the stream's rest in
// first, and the stream still gives every row in order; a stream dropped
// half read leaves the connection usable; rows that came before an error
// are given before it; while a stream is read, InTransaction says what it
// said before the statement.
TEST_F(PgServerTest, StreamsGiveEveryRowWhateverRunsMeanwhile) {
  Result<Connection> conn = Open(Options());
  ASSERT_TRUE(conn.ok()) << conn.status().message();
  Result<std::unique_ptr<RowStream>> stream = conn->Stream(
      "SELECT i FROM generate_series(1, $1::int) AS i", {"100000"});
  ASSERT_TRUE(stream.ok()) << stream.status().message();
  std::vector<int64_t> values;
  for (int i = 0; i < 10; ++i) {
    Result<bool> row = (*stream)->Next();
    ASSERT_TRUE(row.ok() && *row);
    values.push_back((*stream)->Int(0));
  }
  EXPECT_FALSE(conn->InTransaction());
  Result<Rows> other = conn->Run("SELECT 42");
  ASSERT_TRUE(other.ok()) << other.status().message();
  EXPECT_EQ(other->Int(0, 0), 42);
  ASSERT_TRUE(ReadAll(stream->get(), &values).ok());
  ASSERT_EQ(values.size(), 100000u);
  for (size_t i = 0; i < values.size(); ++i) {
    ASSERT_EQ(values[i], static_cast<int64_t>(i + 1)) << i;
  }
  EXPECT_EQ((*stream)->command(), "SELECT 100000");

  ASSERT_TRUE(conn->Exec("BEGIN").ok());
  {
    Result<std::unique_ptr<RowStream>> dropped =
        conn->Stream("SELECT i FROM generate_series(1, 100000) AS i");
    ASSERT_TRUE(dropped.ok()) << dropped.status().message();
    Result<bool> row = (*dropped)->Next();
    ASSERT_TRUE(row.ok() && *row);
    EXPECT_TRUE(conn->InTransaction());
  }
  ASSERT_TRUE(conn->Exec("COMMIT").ok());
  EXPECT_FALSE(conn->InTransaction());

  Result<std::unique_ptr<RowStream>> failing =
      conn->Stream("SELECT 1 / (5000 - i) FROM generate_series(1, 10000) AS i");
  ASSERT_TRUE(failing.ok()) << failing.status().message();
  values.clear();
  Status failed = ReadAll(failing->get(), &values);
  EXPECT_EQ(values.size(), 4999u);
  EXPECT_NE(failed.message().find("SQLSTATE 22012"), std::string::npos)
      << failed.message();
  EXPECT_TRUE(conn->ok());
  Result<Rows> after = conn->Run("SELECT 7");
  ASSERT_TRUE(after.ok()) << after.status().message();
  EXPECT_EQ(after->Int(0, 0), 7);
}

// A result far bigger than the socket buffers, a thousand rows read: the
// stall timeout still bounds the silence of a backend stopped in the
// middle of it, and the interrupt fd still ends the wait at once. (In the
// select list generate_series streams; in FROM it would be materialized
// before the first row.)
TEST_F(PgServerTest, AStreamStalledInTheMiddleFailsAfterTheStallTimeout) {
  Options options;
  options.stall_timeout_ms = 1000;
  Result<Connection> conn = Open(options);
  ASSERT_TRUE(conn.ok()) << conn.status().message();
  const std::string big =
      "SELECT i, repeat('x', 100) FROM (SELECT generate_series(1, 100000000) "
      "AS i) AS s";
  Result<std::unique_ptr<RowStream>> stream = conn->Stream(big);
  ASSERT_TRUE(stream.ok()) << stream.status().message();
  for (int i = 0; i < 1000; ++i) {
    Result<bool> row = (*stream)->Next();
    ASSERT_TRUE(row.ok() && *row);
  }
  std::vector<int64_t> values;
  Stopped backend(conn->backend_pid());
  ASSERT_TRUE(backend.ok());
  const Clock::time_point start = Clock::now();
  Status stalled = ReadAll(stream->get(), &values);
  const int64_t took_ms = MsSince(start);
  EXPECT_EQ(stalled.message(),
            conn->masked_url() + ": no answer from the server for 1 s");
  EXPECT_GE(took_ms, 950);
  EXPECT_LT(took_ms, 5000);
  EXPECT_LT(values.size(), 100000000u - 1000u);
  EXPECT_FALSE(conn->ok());
  // The error stays; the connection's next statement fails with it too.
  EXPECT_EQ((*stream)->Next().status().message(), stalled.message());
  EXPECT_EQ(conn->Exec("SELECT 1").message(), stalled.message());
}

TEST_F(PgServerTest, AnInterruptEndsAStreamInTheMiddleAtOnce) {
  EventFd stop;
  ASSERT_GE(stop.fd(), 0);
  Options options;
  options.interrupt_fd = stop.fd();
  Result<Connection> conn = Open(options);
  ASSERT_TRUE(conn.ok()) << conn.status().message();
  Result<std::unique_ptr<RowStream>> stream = conn->Stream(
      "SELECT i, repeat('x', 100) FROM (SELECT generate_series(1, 100000000) "
      "AS i) AS s");
  ASSERT_TRUE(stream.ok()) << stream.status().message();
  for (int i = 0; i < 1000; ++i) {
    Result<bool> row = (*stream)->Next();
    ASSERT_TRUE(row.ok() && *row);
  }
  Stopped backend(conn->backend_pid());
  ASSERT_TRUE(backend.ok());
  std::thread stopper([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    stop.Signal();
  });
  const Clock::time_point start = Clock::now();
  std::vector<int64_t> values;
  Status status = ReadAll(stream->get(), &values);
  const int64_t took_ms = MsSince(start);
  stopper.join();
  EXPECT_EQ(status.message(), conn->masked_url() + ": interrupted");
  EXPECT_LT(took_ms, 3000);
  EXPECT_FALSE(conn->ok());
}

}  // namespace
}  // namespace pg
}  // namespace homepot
