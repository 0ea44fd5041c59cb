#include "postgres.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <random>
#include <thread>

#include "pg.h"

namespace homepot {
namespace test {
namespace {

using Clock = std::chrono::steady_clock;

constexpr auto kStartTimeout = std::chrono::seconds(30);
constexpr auto kInitdbTimeout = std::chrono::seconds(60);
constexpr auto kStopTimeout = std::chrono::seconds(10);

bool IsProgramIn(const std::string& dir) {
  return !dir.empty() && access((dir + "/initdb").c_str(), X_OK) == 0 &&
         access((dir + "/postgres").c_str(), X_OK) == 0;
}

// `pg_config --bindir`, else the newest /usr/lib/postgresql/<version>/bin
// holding initdb and postgres; "" when there is none.
std::string PostgresBinDir() {
  std::string out;
  if (FILE* p = popen("pg_config --bindir 2>/dev/null", "r")) {
    char buf[512];
    while (fgets(buf, sizeof(buf), p) != nullptr) out += buf;
    pclose(p);
  }
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) {
    out.pop_back();
  }
  if (IsProgramIn(out)) return out;
  std::string best;
  int best_version = -1;
  std::error_code ec;
  for (const auto& entry :
       std::filesystem::directory_iterator("/usr/lib/postgresql", ec)) {
    const std::string name = entry.path().filename().string();
    const int version = std::atoi(name.c_str());
    const std::string bin = entry.path().string() + "/bin";
    if (version > best_version && IsProgramIn(bin)) {
      best = bin;
      best_version = version;
    }
  }
  return best;
}

int FreeLoopbackPort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return 0;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  int port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  close(fd);
  return port;
}

std::string RandomHex(int bytes) {
  std::random_device random;
  std::string out;
  for (int i = 0; i < bytes; ++i) {
    char hex[3];
    std::snprintf(hex, sizeof(hex), "%02x", random() & 0xff);
    out += hex;
  }
  return out;
}

// Whether `pid` exited (then reaped), waiting up to `timeout`.
bool WaitForExit(pid_t pid, Clock::duration timeout, int* status) {
  const Clock::time_point deadline = Clock::now() + timeout;
  for (;;) {
    const pid_t done = waitpid(pid, status, WNOHANG);
    if (done == pid || (done < 0 && errno == ECHILD)) return true;
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

std::string Tail(const std::string& text, size_t max_bytes = 3000) {
  return text.size() <= max_bytes ? text : text.substr(text.size() - max_bytes);
}

}  // namespace

const std::string& PostgresSchemaSql() {
  static const std::string* text =
      new std::string(ReadFile(HOMEPOT_TESTING_PG_SCHEMA_SQL));
  if (text->empty()) {
    ADD_FAILURE() << "cannot read " << HOMEPOT_TESTING_PG_SCHEMA_SQL;
  }
  return *text;
}

const std::string& PostgresSchemaV3Sql() {
  static const std::string* text =
      new std::string(ReadFile(HOMEPOT_TESTING_PG_V3_SQL));
  if (text->empty())
    ADD_FAILURE() << "cannot read " << HOMEPOT_TESTING_PG_V3_SQL;
  return *text;
}

PostgresCluster::~PostgresCluster() { Stop(); }

pid_t PostgresCluster::Spawn(const std::vector<std::string>& argv,
                             const std::string& log) {
  std::vector<char*> args;
  for (const std::string& arg : argv)
    args.push_back(const_cast<char*>(&arg[0]));
  args.push_back(nullptr);
  const std::string home = "HOME=" + dir_.path();
  const char* const env[] = {"LC_ALL=C", "PATH=/usr/bin:/bin", home.c_str(),
                             nullptr};
  const int out = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  const int in = open("/dev/null", O_RDONLY);
  if (out < 0 || in < 0) {
    if (out >= 0) close(out);
    if (in >= 0) close(in);
    return -1;
  }
  const pid_t pid = fork();
  if (pid == 0) {
    dup2(in, 0);
    dup2(out, 1);
    dup2(out, 2);
    if (chdir(dir_.path().c_str()) != 0) _exit(126);
    if (as_other_user_ && (setgroups(0, nullptr) != 0 || setgid(gid_) != 0 ||
                           setuid(uid_) != 0)) {
      _exit(126);
    }
    execve(args[0], args.data(), const_cast<char* const*>(env));
    _exit(127);
  }
  close(out);
  close(in);
  return pid;
}

testing::AssertionResult PostgresCluster::Initdb() {
  bin_dir_ = PostgresBinDir();
  if (bin_dir_.empty()) {
    return testing::AssertionFailure()
           << "no PostgreSQL server binaries (pg_config --bindir, "
              "/usr/lib/postgresql/*/bin): run scripts/install-deps";
  }
  if (geteuid() == 0) {
    const passwd* user = getpwnam("postgres");
    if (user == nullptr) user = getpwnam("nobody");
    if (user == nullptr) {
      return testing::AssertionFailure()
             << "running as root, and there is no user postgres or nobody "
                "to run PostgreSQL as";
    }
    as_other_user_ = true;
    uid_ = user->pw_uid;
    gid_ = user->pw_gid;
    if (chown(dir_.path().c_str(), uid_, gid_) != 0) {
      return testing::AssertionFailure()
             << "chown " << dir_.path() << ": " << std::strerror(errno);
    }
  }
  const pid_t pid =
      Spawn({bin_dir_ + "/initdb", "--pgdata=" + dir_.Path("data"),
             "--username=postgres", "--encoding=UTF8", "--locale=C",
             "--auth-local=trust", "--auth-host=scram-sha-256", "--no-sync",
             "--no-instructions"},
            dir_.Path("initdb.log"));
  if (pid < 0) {
    return testing::AssertionFailure()
           << "cannot run initdb: " << std::strerror(errno);
  }
  int status = 0;
  if (!WaitForExit(pid, kInitdbTimeout, &status)) {
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    return testing::AssertionFailure() << "initdb took over 60 s\n" << Log();
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return testing::AssertionFailure()
           << "initdb failed (wait status " << status << ")\n"
           << Tail(Log());
  }
  return testing::AssertionSuccess();
}

testing::AssertionResult PostgresCluster::StartServer(bool new_port,
                                                      bool* port_clash) {
  *port_clash = false;
  if (new_port) port_ = FreeLoopbackPort();
  if (port_ == 0) return testing::AssertionFailure() << "no free port";
  const std::string log = dir_.Path("postgres.log");
  const size_t log_start = ReadFile(log).size();
  pid_ = Spawn({bin_dir_ + "/postgres", "-D", dir_.Path("data"), "-p",
                std::to_string(port_), "-k", dir_.path(), "-c",
                "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c",
                "synchronous_commit=off", "-c", "full_page_writes=off"},
               log);
  if (pid_ < 0) {
    return testing::AssertionFailure()
           << "cannot run postgres: " << std::strerror(errno);
  }
  const std::string conninfo = SuperuserConninfo();
  const Clock::time_point deadline = Clock::now() + kStartTimeout;
  for (;;) {
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      const std::string output = ReadFile(log).substr(log_start);
      *port_clash = output.find("could not bind") != std::string::npos;
      return testing::AssertionFailure()
             << "postgres exited (wait status " << status << ")\n"
             << Tail(output);
    }
    if (PQping(conninfo.c_str()) == PQPING_OK) break;
    if (Clock::now() >= deadline) {
      return testing::AssertionFailure()
             << "postgres did not accept connections within 30 s\n"
             << Tail(Log());
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return testing::AssertionSuccess();
}

testing::AssertionResult PostgresCluster::CreateRole() {
  password_ = RandomHex(16);
  Result<pg::Connection> admin = pg::Connection::Open(SuperuserConninfo());
  if (!admin.ok()) {
    return testing::AssertionFailure() << admin.status().message();
  }
  Status created = admin->Exec(std::string("CREATE ROLE ") + kRole +
                               " LOGIN PASSWORD '" + password_ + "'");
  if (!created.ok()) return testing::AssertionFailure() << created.message();
  passfile_ = dir_.Path("pgpass");
  if (!WriteFile(passfile_, "127.0.0.1:" + std::to_string(port_) +
                                ":*:" + kRole + ":" + password_ + "\n") ||
      chmod(passfile_.c_str(), 0600) != 0) {
    return testing::AssertionFailure() << "cannot write " << passfile_;
  }
  return testing::AssertionSuccess();
}

testing::AssertionResult PostgresCluster::Start() {
  if (!dir_.ok()) return testing::AssertionFailure() << "no temporary dir";
  testing::AssertionResult done = Initdb();
  if (!done) return done;
  bool port_clash = true;
  for (int attempt = 0; attempt < 3 && port_clash; ++attempt) {
    done = StartServer(/*new_port=*/true, &port_clash);
  }
  if (!done) return done;
  done = CreateRole();
  if (!done) return done;
  return CreateDatabase(kRole);
}

testing::AssertionResult PostgresCluster::CreateDatabase(
    const std::string& name) {
  Result<pg::Connection> admin = pg::Connection::Open(SuperuserConninfo());
  if (!admin.ok()) {
    return testing::AssertionFailure() << admin.status().message();
  }
  Status created = admin->Exec("CREATE DATABASE \"" + name + "\" OWNER " +
                               std::string(kRole));
  if (!created.ok()) return testing::AssertionFailure() << created.message();
  return testing::AssertionSuccess();
}

testing::AssertionResult PostgresCluster::CreateRegistry(
    const std::string& name) {
  testing::AssertionResult created = CreateDatabase(name);
  if (!created) return created;
  Result<pg::Connection> conn = pg::Connection::Open(Url(name));
  if (!conn.ok()) return testing::AssertionFailure() << conn.status().message();
  Status applied = conn->Exec(PostgresSchemaSql());
  if (!applied.ok()) return testing::AssertionFailure() << applied.message();
  return testing::AssertionSuccess();
}

std::string PostgresCluster::Url(const std::string& database) const {
  return std::string("postgresql://") + kRole +
         "@127.0.0.1:" + std::to_string(port_) + "/" + database +
         "?passfile=" + passfile_;
}

std::string PostgresCluster::UrlWithPassword(
    const std::string& database) const {
  return std::string("postgresql://") + kRole + ":" + password_ +
         "@127.0.0.1:" + std::to_string(port_) + "/" + database;
}

std::string PostgresCluster::SuperuserConninfo(
    const std::string& database) const {
  return "host=" + dir_.path() + " port=" + std::to_string(port_) +
         " user=postgres dbname=" + database;
}

std::string PostgresCluster::Log() const {
  return ReadFile(dir_.Path("initdb.log")) +
         ReadFile(dir_.Path("postgres.log"));
}

testing::AssertionResult PostgresCluster::Restart() {
  if (pid_ > 0) return testing::AssertionFailure() << "postgres is running";
  if (port_ == 0) return testing::AssertionFailure() << "never started";
  bool port_clash = false;
  return StartServer(/*new_port=*/false, &port_clash);
}

bool PostgresCluster::Stop() {
  if (pid_ <= 0) return true;
  int status = 0;
  kill(pid_, SIGINT);  // fast shutdown: ends the sessions, then exits
  bool clean = WaitForExit(pid_, kStopTimeout, &status);
  if (!clean) {
    kill(pid_, SIGKILL);
    waitpid(pid_, &status, 0);
  }
  pid_ = -1;
  return clean && WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

}  // namespace test
}  // namespace homepot
