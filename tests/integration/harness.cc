#include "harness.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <mqtt_protocol.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>

namespace homepot {
namespace integration {
namespace {

constexpr const char* kMosquittoBinary = "/usr/sbin/mosquitto";
constexpr const char* kSqliteShell = "/usr/bin/sqlite3";

// The sanitize run's runtimes ($HOMEPOT_TEST_PRELOAD), or nullptr.
const char* SanitizerPreload() {
  const char* preload = getenv("HOMEPOT_TEST_PRELOAD");
  return preload != nullptr && preload[0] != '\0' ? preload : nullptr;
}

// Leaks LeakSanitizer ignores: those of mosquitto 2.0.11 itself (its
// per-listener security options, refused configurations). Its frames above
// its allocator are not unwound (no frame pointers), so they are matched by
// the allocator; the plugin's own allocations (new, malloc) stay checked.
constexpr const char* kLeakSuppressions =
    "leak:mosquitto__malloc\n"
    "leak:mosquitto__calloc\n"
    "leak:mosquitto__realloc\n"
    "leak:mosquitto__strdup\n";

// The environment mosquitto runs with: ours, and in the sanitize run the
// runtimes in LD_PRELOAD and options that write every report to
// <dir>/sanitizer.<pid> (leak suppressions in <dir>/lsan.supp). Built before
// fork: the child of a threaded process must not allocate.
std::vector<std::string> ChildEnvironment(const std::string& dir) {
  const char* preload = SanitizerPreload();
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; ++e) {
    std::string entry = *e;
    if (preload != nullptr && (entry.rfind("LD_PRELOAD=", 0) == 0 ||
                               entry.rfind("ASAN_OPTIONS=", 0) == 0 ||
                               entry.rfind("UBSAN_OPTIONS=", 0) == 0 ||
                               entry.rfind("LSAN_OPTIONS=", 0) == 0)) {
      continue;
    }
    env.push_back(std::move(entry));
  }
  if (preload == nullptr) return env;
  // Options from the test's own environment come after the defaults (so
  // they win, e.g. ASAN_OPTIONS=detect_leaks=0), log_path last (so reports
  // always land where Reaped looks).
  auto options = [&](const char* name, const std::string& defaults) {
    const char* extra = getenv(name);
    std::string value = std::string(name) + "=" + defaults;
    if (extra != nullptr && extra[0] != '\0') value += std::string(":") + extra;
    return value + ":log_path=" + dir + "/sanitizer";
  };
  const std::string code = "exitcode=" + std::to_string(kSanitizerExitCode);
  env.push_back(std::string("LD_PRELOAD=") + preload);
  env.push_back(options("ASAN_OPTIONS", code + ":detect_leaks=1"));
  env.push_back(options("LSAN_OPTIONS", "print_suppressions=0:suppressions=" +
                                            dir + "/lsan.supp"));
  env.push_back(
      options("UBSAN_OPTIONS", code + ":halt_on_error=1:print_stacktrace=1"));
  return env;
}

std::string DescribeWaitStatus(int status) {
  if (WIFEXITED(status))
    return "exit status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return "signal " + std::to_string(WTERMSIG(status));
  return "wait status " + std::to_string(status);
}

// Binds `params` (nullopt = NULL) and steps `sql` once.
testing::AssertionResult ExecBound(
    const std::string& path, const std::string& sql,
    const std::vector<std::optional<std::string>>& params) {
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr) !=
      SQLITE_OK) {
    std::string msg = db ? sqlite3_errmsg(db) : "out of memory";
    sqlite3_close(db);
    return testing::AssertionFailure() << "open " << path << ": " << msg;
  }
  sqlite3_busy_timeout(db, 5000);
  sqlite3_stmt* stmt = nullptr;
  testing::AssertionResult result = testing::AssertionSuccess();
  if (sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt, nullptr) != SQLITE_OK) {
    result = testing::AssertionFailure()
             << "prepare '" << sql << "': " << sqlite3_errmsg(db);
  } else {
    for (size_t i = 0; i < params.size(); ++i) {
      int idx = static_cast<int>(i) + 1;
      if (params[i]) {
        sqlite3_bind_text(stmt, idx, params[i]->data(),
                          static_cast<int>(params[i]->size()),
                          SQLITE_TRANSIENT);
      } else {
        sqlite3_bind_null(stmt, idx);
      }
    }
    if (sqlite3_step(stmt) != SQLITE_DONE) {
      result = testing::AssertionFailure()
               << "'" << sql << "': " << sqlite3_errmsg(db);
    }
  }
  sqlite3_finalize(stmt);
  sqlite3_close(db);
  return result;
}

}  // namespace

// A port nobody listened on a moment ago (bind to 0, read it, close).
int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return 0;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  int port = 0;
  socklen_t len = sizeof(addr);
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  close(fd);
  return port;
}

bool PortAccepts(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return false;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  bool ok = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  close(fd);
  return ok;
}

// ---------------------------------------------------------------- utilities

int CountOccurrences(const std::string& haystack, const std::string& needle) {
  if (needle.empty()) return 0;
  int n = 0;
  for (size_t pos = haystack.find(needle); pos != std::string::npos;
       pos = haystack.find(needle, pos + needle.size())) {
    ++n;
  }
  return n;
}

std::vector<std::string> LinesContaining(const std::string& text,
                                         const std::string& needle) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.find(needle) != std::string::npos) lines.push_back(line);
  }
  return lines;
}

std::string Tail(const std::string& text, int n) {
  size_t pos = text.size();
  if (pos > 0 && text[pos - 1] == '\n') --pos;  // ignore the final newline
  for (int i = 0; i < n; ++i) {
    size_t nl = pos == 0 ? std::string::npos : text.rfind('\n', pos - 1);
    if (nl == std::string::npos) return text;
    pos = nl;
  }
  return text.substr(pos + 1);
}

int RunCommand(const std::vector<std::string>& argv, const std::string& input,
               std::string* output) {
  int in_pipe[2];
  int out_pipe[2];
  if (pipe2(in_pipe, O_CLOEXEC) != 0) return -1;
  if (pipe2(out_pipe, O_CLOEXEC) != 0) {
    close(in_pipe[0]);
    close(in_pipe[1]);
    return -1;
  }
  std::vector<char*> args;
  for (const std::string& a : argv)
    args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = fork();
  if (pid == 0) {
    dup2(in_pipe[0], 0);
    dup2(out_pipe[1], 1);
    dup2(out_pipe[1], 2);
    execv(args[0], args.data());
    _exit(127);
  }
  close(in_pipe[0]);
  close(out_pipe[1]);
  if (pid < 0) {
    close(in_pipe[1]);
    close(out_pipe[0]);
    return -1;
  }
  // Inputs are small (SQL snippets), so writing all before reading is safe.
  signal(SIGPIPE, SIG_IGN);
  size_t off = 0;
  while (off < input.size()) {
    ssize_t n = write(in_pipe[1], input.data() + off, input.size() - off);
    if (n <= 0) break;
    off += static_cast<size_t>(n);
  }
  close(in_pipe[1]);
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = read(out_pipe[0], buf, sizeof(buf))) > 0) out.append(buf, n);
  close(out_pipe[0]);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (output) *output = out;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

bool Eventually(const std::function<bool()>& condition, int timeout_ms,
                int step_ms) {
  auto deadline =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (true) {
    if (condition()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    SleepMs(step_ms);
  }
}

void SleepMs(int ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
}

int64_t WallMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

int64_t ParseStampMs(const std::string& stamp) {
  // YYYY-MM-DDTHH:MM:SS.mmmZ
  static const char kShape[] = "dddd-dd-ddTdd:dd:dd.dddZ";
  if (stamp.size() != sizeof(kShape) - 1) return -1;
  for (size_t i = 0; i < stamp.size(); ++i) {
    if (kShape[i] == 'd' ? !std::isdigit(static_cast<unsigned char>(stamp[i]))
                         : stamp[i] != kShape[i]) {
      return -1;
    }
  }
  auto num = [&](size_t pos, size_t len) {
    return std::stoi(stamp.substr(pos, len));
  };
  std::tm tm{};
  tm.tm_year = num(0, 4) - 1900;
  tm.tm_mon = num(5, 2) - 1;
  tm.tm_mday = num(8, 2);
  tm.tm_hour = num(11, 2);
  tm.tm_min = num(14, 2);
  tm.tm_sec = num(17, 2);
  return static_cast<int64_t>(timegm(&tm)) * 1000 + num(20, 3);
}

const std::map<std::string, std::string>& FixtureHashes() {
  static const auto* hashes = [] {
    auto* m = new std::map<std::string, std::string>;
    std::istringstream in(
        ReadFile(std::string(HOMEPOT_FIXTURES) + "/mosquitto_passwd.txt"));
    std::string line;
    while (std::getline(in, line)) {
      size_t colon = line.find(':');
      if (colon != std::string::npos) {
        (*m)[line.substr(0, colon)] = line.substr(colon + 1);
      }
    }
    return m;
  }();
  return *hashes;
}

const std::map<std::string, std::string>& FixturePasswords() {
  // From tests/fixtures/mosquitto_passwd.README.
  static const auto* passwords = new std::map<std::string, std::string>{
      {"sensor-001", "s3cret-one"},
      {"homepot", "backend-pass"},
      {"legacy", "old-password"},
      {"gateway-01", "gw-pass-1000"},
  };
  return *passwords;
}

std::string DefaultPluginPath() {
  const char* env = getenv("HOMEPOT_TEST_PLUGIN");
  return env != nullptr && env[0] != '\0' ? env : HOMEPOT_PLUGIN_PATH;
}

// -------------------------------------------------------------- TempRegistry

TempRegistry::TempRegistry() {
  if (!dir_.ok()) return;
  db_path_ = dir_.Path("homepot.db");
  testing::AssertionResult created = CreateDatabase(db_path_);
  if (!created) {
    ADD_FAILURE() << created.message();
    return;
  }
  ok_ = true;
}

testing::AssertionResult TempRegistry::CreateDatabase(const std::string& path,
                                                      const std::string& sql) {
  return test::CreateRegistryFile(path, sql);
}

testing::AssertionResult TempRegistry::ExecOn(const std::string& path,
                                              const std::string& sql) {
  return test::ExecSqlOn(path, sql);
}

testing::AssertionResult TempRegistry::Exec(const std::string& sql) {
  return ExecOn(db_path_, sql);
}

testing::AssertionResult TempRegistry::ExecCli(const std::string& sql) {
  std::string output;
  int rc = RunCommand({kSqliteShell, "-bail", db_path_},
                      ".timeout 5000\n" + sql + "\n", &output);
  if (rc != 0) {
    return testing::AssertionFailure()
           << "sqlite3 exited " << rc << " on '" << sql << "': " << output;
  }
  return testing::AssertionSuccess();
}

testing::AssertionResult TempRegistry::Query(const std::string& sql,
                                             std::vector<Row>* rows) {
  rows->clear();
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(db_path_.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) !=
      SQLITE_OK) {
    sqlite3_close(db);
    return testing::AssertionFailure() << "cannot open " << db_path_;
  }
  sqlite3_busy_timeout(db, 5000);
  sqlite3_stmt* stmt = nullptr;
  testing::AssertionResult result = testing::AssertionSuccess();
  if (sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt, nullptr) != SQLITE_OK) {
    result = testing::AssertionFailure()
             << "prepare '" << sql << "': " << sqlite3_errmsg(db);
  } else {
    int rc;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
      Row row;
      for (int i = 0; i < sqlite3_column_count(stmt); ++i) {
        if (sqlite3_column_type(stmt, i) == SQLITE_NULL) {
          row.emplace_back();
        } else {
          const unsigned char* text = sqlite3_column_text(stmt, i);
          row.emplace_back(
              std::string(reinterpret_cast<const char*>(text),
                          static_cast<size_t>(sqlite3_column_bytes(stmt, i))));
        }
      }
      rows->push_back(std::move(row));
    }
    if (rc != SQLITE_DONE) {
      result = testing::AssertionFailure()
               << "'" << sql << "': " << sqlite3_errmsg(db);
    }
  }
  sqlite3_finalize(stmt);
  sqlite3_close(db);
  return result;
}

int64_t TempRegistry::QueryInt(const std::string& sql, int64_t fallback) {
  std::vector<Row> rows;
  if (!Query(sql, &rows) || rows.empty() || rows[0].empty() || !rows[0][0]) {
    return fallback;
  }
  return std::stoll(*rows[0][0]);
}

testing::AssertionResult TempRegistry::AddDevice(const std::string& id,
                                                 const std::string& type,
                                                 const std::string& password,
                                                 const std::string& token,
                                                 int iterations) {
  std::string hash = test::EncodedHash(password, iterations);
  if (hash.empty()) return testing::AssertionFailure() << "no hash";
  std::optional<std::string> tok;
  if (!token.empty()) tok = token;
  return ExecBound(db_path_,
                   "INSERT INTO devices (device_id, device_type, "
                   "password_hash, device_token) VALUES (?, ?, ?, ?)",
                   {id, type, hash, tok});
}

testing::AssertionResult TempRegistry::AddDeviceWithHash(
    const std::string& id, const std::string& type, const std::string& hash) {
  return ExecBound(db_path_,
                   "INSERT INTO devices (device_id, device_type, "
                   "password_hash) VALUES (?, ?, ?)",
                   {id, type, hash});
}

testing::AssertionResult TempRegistry::Grant(const char* device_id,
                                             const std::string& filter,
                                             const std::string& access) {
  std::optional<std::string> id;
  if (device_id != nullptr) id = device_id;
  return ExecBound(db_path_,
                   "INSERT INTO acl_rules (device_id, topic_filter, access) "
                   "VALUES (?, ?, ?)",
                   {id, filter, access});
}

// ------------------------------------------------------------------- Broker

Broker::Broker(std::string dir) : dir_(std::move(dir)) {}

Broker::~Broker() { Stop(); }

std::string Broker::RenderConfig(const BrokerConfig& config, int port) const {
  std::ostringstream c;
  c << "# Written by the HOMEPOT integration tests.\n"
    << "user root\n"
    << "log_dest file " << log_path() << "\n"
    << "log_type all\n"
    << "persistence false\n";
  if (config.per_listener_settings) c << "per_listener_settings true\n";
  c << "listener " << port << " 127.0.0.1\n"
    << "allow_anonymous false\n"
    << "plugin " << config.plugin_path << "\n";
  if (!config.db_path.empty()) {
    c << "plugin_opt_db_path " << config.db_path << "\n";
  }
  for (const std::string& opt : config.plugin_options) {
    c << "plugin_opt_" << opt << "\n";
  }
  for (const std::string& line : config.extra_lines) c << line << "\n";
  return c.str();
}

bool Broker::Spawn(std::string* error) {
  std::string out_path = dir_ + "/mosquitto.out";
  int out =
      open(out_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (out < 0) {
    *error = "open " + out_path + ": " + std::strerror(errno);
    return false;
  }
  if (SanitizerPreload() != nullptr &&
      !WriteFile(dir_ + "/lsan.supp", kLeakSuppressions)) {
    close(out);
    *error = "cannot write " + dir_ + "/lsan.supp";
    return false;
  }
  std::string conf = config_path();
  std::vector<std::string> env = ChildEnvironment(dir_);
  std::vector<char*> envp;
  for (std::string& entry : env) envp.push_back(entry.data());
  envp.push_back(nullptr);
  const char* argv[] = {kMosquittoBinary, "-c", conf.c_str(), nullptr};
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid == 0) {
    // Dies with the test process, whatever happens to it.
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent) _exit(126);
    dup2(out, 1);
    dup2(out, 2);
    int devnull = open("/dev/null", O_RDONLY);
    if (devnull >= 0) dup2(devnull, 0);
    execve(kMosquittoBinary, const_cast<char* const*>(argv), envp.data());
    _exit(127);
  }
  close(out);
  if (pid < 0) {
    *error = std::string("fork: ") + std::strerror(errno);
    return false;
  }
  pid_ = pid;
  return true;
}

bool Broker::Exited(int* status) {
  if (pid_ <= 0) return true;
  int st = 0;
  pid_t r = waitpid(pid_, &st, WNOHANG);
  if (r == pid_) {
    Reaped(st);
    if (status) *status = st;
    return true;
  }
  return false;
}

void Broker::Reaped(int status) {
  pid_ = -1;
  bool reported = false;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dir_, ec)) {
    std::string name = entry.path().filename().string();
    if (name.rfind("sanitizer.", 0) != 0) continue;
    if (!reported_.insert(name).second) continue;
    reported = true;
    std::istringstream report(ReadFile(entry.path().string()));
    std::string head;
    std::string line;
    // Up to the summary line: the shadow memory dump after it is noise.
    for (int i = 0; i < 60 && std::getline(report, line); ++i) {
      head += line + "\n";
      if (line.rfind("SUMMARY: ", 0) == 0) break;
    }
    ADD_FAILURE() << "sanitizer report " << entry.path().string()
                  << " (mosquitto " << DescribeWaitStatus(status)
                  << "), first lines:\n"
                  << head;
  }
  // With both runtimes preloaded, UBSan ignores its log_path (GCC 12) and
  // reports on stderr, which is mosquitto.out.
  std::string out = ReadFile(dir_ + "/mosquitto.out");
  size_t at = out.find(": runtime error: ");
  if (at != std::string::npos) {
    reported = true;
    size_t begin = out.rfind('\n', at);
    begin = begin == std::string::npos ? 0 : begin + 1;
    ADD_FAILURE() << "UBSan report in " << dir_ << "/mosquitto.out (mosquitto "
                  << DescribeWaitStatus(status) << "):\n"
                  << out.substr(begin, 3000);
  }
  if (!reported && WIFEXITED(status) &&
      WEXITSTATUS(status) == kSanitizerExitCode &&
      SanitizerPreload() != nullptr) {
    ADD_FAILURE() << "mosquitto exited with the sanitizer exit code "
                  << kSanitizerExitCode << " but left no report in " << dir_
                  << "; log tail:\n"
                  << Tail(Log());
  }
}

testing::AssertionResult Broker::Start(const BrokerConfig& config) {
  if (running()) return testing::AssertionFailure() << "already running";
  std::string last_error;
  for (int attempt = 0; attempt < 5; ++attempt) {
    port_ = FreePort();
    if (port_ == 0) return testing::AssertionFailure() << "no free port";
    // A fresh log per start, so that counts refer to this run.
    WriteFile(log_path(), "");
    WriteFile(dir_ + "/mosquitto.out", "");
    if (!WriteFile(config_path(), RenderConfig(config, port_))) {
      return testing::AssertionFailure() << "cannot write " << config_path();
    }
    if (!Spawn(&last_error)) return testing::AssertionFailure() << last_error;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    bool retry = false;
    while (std::chrono::steady_clock::now() < deadline) {
      int status = 0;
      if (Exited(&status)) {
        std::string log = Log();
        if (log.find("Address already in use") != std::string::npos) {
          retry = true;  // someone took the port between probe and bind
          break;
        }
        return testing::AssertionFailure()
               << "mosquitto exited (" << DescribeWaitStatus(status)
               << ") during start-up; log tail:\n"
               << Tail(log);
      }
      // " running" is logged once the listeners are up, after plugin init;
      // the connect makes sure it is our process that listens.
      if (ReadFile(log_path()).find(" running") != std::string::npos &&
          PortAccepts(port_)) {
        return testing::AssertionSuccess();
      }
      SleepMs(10);
    }
    if (!retry) {
      Stop();
      return testing::AssertionFailure()
             << "mosquitto did not start listening within 10 s; log tail:\n"
             << Tail(Log());
    }
  }
  return testing::AssertionFailure()
         << "could not find a free port in 5 attempts";
}

testing::AssertionResult Broker::StartExpectingExit(const BrokerConfig& config,
                                                    int* status,
                                                    int timeout_ms) {
  if (running()) return testing::AssertionFailure() << "already running";
  port_ = FreePort();
  WriteFile(log_path(), "");
  WriteFile(dir_ + "/mosquitto.out", "");
  if (!WriteFile(config_path(), RenderConfig(config, port_))) {
    return testing::AssertionFailure() << "cannot write " << config_path();
  }
  std::string error;
  if (!Spawn(&error)) return testing::AssertionFailure() << error;
  bool exited = Eventually([&] { return Exited(status); }, timeout_ms, 10);
  if (!exited) {
    Stop();
    return testing::AssertionFailure() << "mosquitto kept running; log tail:\n"
                                       << Tail(Log());
  }
  return testing::AssertionSuccess();
}

int Broker::Stop() {
  if (pid_ <= 0) return -1;
  kill(pid_, SIGTERM);
  int status = 0;
  if (!Eventually([&] { return Exited(&status); }, 5000, 10)) {
    kill(pid_, SIGKILL);
    while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    Reaped(status);
  }
  return status;
}

int Broker::Kill() {
  if (pid_ <= 0) return -1;
  kill(pid_, SIGKILL);
  int status = 0;
  while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
  Reaped(status);
  return status;
}

void Broker::Reload() {
  if (pid_ > 0) kill(pid_, SIGHUP);
}

std::string Broker::Log() const {
  return ReadFile(log_path()) + ReadFile(dir_ + "/mosquitto.out");
}

bool Broker::WaitForLog(const std::string& needle, int timeout_ms, int count) {
  return Eventually([&] { return CountOccurrences(Log(), needle) >= count; },
                    timeout_ms);
}

// ------------------------------------------------------------------- Client

namespace {

void LibInit() {
  static std::once_flag once;
  std::call_once(once, [] { mosquitto_lib_init(); });
}

std::string NextClientId() {
  static std::atomic<int> counter{0};
  return "it-" + std::to_string(getpid()) + "-" + std::to_string(++counter);
}

}  // namespace

Client::Client(int port, int protocol, std::string client_id)
    : Client(port, [&] {
        ClientOptions options;
        options.protocol = protocol;
        options.client_id = std::move(client_id);
        return options;
      }()) {}

Client::Client(int port, ClientOptions options)
    : port_(port), options_(std::move(options)) {
  LibInit();
  if (options_.client_id.empty()) options_.client_id = NextClientId();
  mosq_ =
      mosquitto_new(options_.client_id.c_str(), options_.clean_session, this);
  if (mosq_ == nullptr) {
    ADD_FAILURE() << "mosquitto_new failed for client id '"
                  << options_.client_id << "'";
    return;
  }
  mosquitto_int_option(mosq_, MOSQ_OPT_PROTOCOL_VERSION, options_.protocol);
  mosquitto_threaded_set(mosq_, true);
  mosquitto_connect_v5_callback_set(mosq_, &Client::OnConnect);
  mosquitto_disconnect_v5_callback_set(mosq_, &Client::OnDisconnect);
  mosquitto_publish_v5_callback_set(mosq_, &Client::OnPublish);
  mosquitto_subscribe_v5_callback_set(mosq_, &Client::OnSubscribe);
  mosquitto_message_v5_callback_set(mosq_, &Client::OnMessage);
}

Client::~Client() {
  if (mosq_ == nullptr) return;
  Disconnect();
  mosquitto_destroy(mosq_);
}

void Client::OnConnect(struct mosquitto*, void* obj, int rc, int,
                       const mosquitto_property*) {
  auto* self = static_cast<Client*>(obj);
  if (self->options_.on_connack) self->options_.on_connack(rc);
  std::lock_guard<std::mutex> lock(self->mu_);
  self->connack_ = rc;
  self->connected_ = rc == 0;
  self->cv_.notify_all();
}

void Client::OnDisconnect(struct mosquitto*, void* obj, int rc,
                          const mosquitto_property*) {
  auto* self = static_cast<Client*>(obj);
  if (self->options_.on_down) self->options_.on_down(rc);
  std::lock_guard<std::mutex> lock(self->mu_);
  self->connected_ = false;
  self->down_ = true;
  self->cv_.notify_all();
}

void Client::OnPublish(struct mosquitto*, void* obj, int mid, int rc,
                       const mosquitto_property*) {
  auto* self = static_cast<Client*>(obj);
  std::lock_guard<std::mutex> lock(self->mu_);
  self->acks_[mid] = rc;
  self->cv_.notify_all();
}

void Client::OnSubscribe(struct mosquitto*, void* obj, int mid, int count,
                         const int* granted, const mosquitto_property*) {
  auto* self = static_cast<Client*>(obj);
  std::lock_guard<std::mutex> lock(self->mu_);
  self->acks_[mid] = count > 0 ? granted[0] : -1;
  self->cv_.notify_all();
}

void Client::OnMessage(struct mosquitto*, void* obj,
                       const struct mosquitto_message* msg,
                       const mosquitto_property*) {
  auto* self = static_cast<Client*>(obj);
  Message m;
  m.topic = msg->topic ? msg->topic : "";
  if (msg->payload != nullptr && msg->payloadlen > 0) {
    m.payload.assign(static_cast<const char*>(msg->payload),
                     static_cast<size_t>(msg->payloadlen));
  }
  if (self->options_.on_message) {
    self->options_.on_message(m.topic, m.payload);
    return;
  }
  m.qos = msg->qos;
  m.retain = msg->retain;
  std::lock_guard<std::mutex> lock(self->mu_);
  self->messages_.push_back(std::move(m));
  self->cv_.notify_all();
}

void Client::Loop() {
  while (true) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stop_) return;
    }
    int rc = mosquitto_loop(mosq_, 20, 1);
    if (rc != MOSQ_ERR_SUCCESS) {
      // Refused, dropped or closed: stay down, never reconnect.
      if (options_.on_down) options_.on_down(-100 - rc);
      std::lock_guard<std::mutex> lock(mu_);
      connected_ = false;
      down_ = true;
      cv_.notify_all();
      return;
    }
  }
}

void Client::StopThread() {
  if (!thread_.joinable()) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  thread_.join();
  std::lock_guard<std::mutex> lock(mu_);
  stop_ = false;
}

int Client::Connect(const char* user, const char* pass, int timeout_ms) {
  if (mosq_ == nullptr) return -1;
  StopThread();
  {
    std::lock_guard<std::mutex> lock(mu_);
    connack_.reset();
    connected_ = false;
    down_ = false;
  }
  mosquitto_username_pw_set(mosq_, user, pass);
  mosquitto_property* props = nullptr;
  if (options_.protocol == kMqtt5 && options_.session_expiry_s > 0) {
    mosquitto_property_add_int32(&props, MQTT_PROP_SESSION_EXPIRY_INTERVAL,
                                 options_.session_expiry_s);
  }
  int rc = mosquitto_connect_bind_v5(mosq_, "127.0.0.1", port_,
                                     options_.keepalive_s, nullptr, props);
  mosquitto_property_free_all(&props);
  if (rc != MOSQ_ERR_SUCCESS) {
    if (options_.on_down) options_.on_down(-1);
    std::lock_guard<std::mutex> lock(mu_);
    down_ = true;
    return -1;
  }
  thread_ = std::thread([this] { Loop(); });
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait_for(lock, std::chrono::milliseconds(timeout_ms),
               [this] { return connack_.has_value() || down_; });
  return connack_.value_or(-1);
}

int Client::Subscribe(const std::string& filter, int qos, int timeout_ms) {
  if (!IsConnected()) return -1;
  int mid = 0;
  int rc =
      options_.protocol == kMqtt5
          ? mosquitto_subscribe_v5(mosq_, &mid, filter.c_str(), qos, 0, nullptr)
          : mosquitto_subscribe(mosq_, &mid, filter.c_str(), qos);
  if (rc != MOSQ_ERR_SUCCESS) return -1;
  std::unique_lock<std::mutex> lock(mu_);
  if (!cv_.wait_for(lock, std::chrono::milliseconds(timeout_ms),
                    [&] { return acks_.count(mid) > 0 || down_; }) ||
      acks_.count(mid) == 0) {
    return -1;
  }
  int granted = acks_[mid];
  acks_.erase(mid);
  return granted;
}

int Client::Publish(const std::string& topic, const std::string& payload,
                    int qos, bool retain, int timeout_ms) {
  int reason = PublishAcked(topic, payload, qos, retain, timeout_ms);
  // 0x10 "no matching subscribers" and the like are successes too.
  if (reason < 0) return -1;
  return reason < 0x80 ? 0 : reason;
}

int Client::PublishForReason(const std::string& topic,
                             const std::string& payload, int qos,
                             int timeout_ms) {
  return PublishAcked(topic, payload, qos, false, timeout_ms);
}

int Client::PublishAcked(const std::string& topic, const std::string& payload,
                         int qos, bool retain, int timeout_ms) {
  if (!IsConnected()) return -1;
  int mid = 0;
  int rc = mosquitto_publish(mosq_, &mid, topic.c_str(),
                             static_cast<int>(payload.size()), payload.data(),
                             qos, retain);
  if (rc != MOSQ_ERR_SUCCESS) return -1;
  std::unique_lock<std::mutex> lock(mu_);
  if (!cv_.wait_for(lock, std::chrono::milliseconds(timeout_ms),
                    [&] { return acks_.count(mid) > 0 || down_; }) ||
      acks_.count(mid) == 0) {
    return -1;
  }
  int reason = acks_[mid];
  acks_.erase(mid);
  return reason;
}

void Client::SetWill(const std::string& topic, const std::string& payload,
                     int qos, bool retain) {
  int rc =
      mosquitto_will_set(mosq_, topic.c_str(), static_cast<int>(payload.size()),
                         payload.data(), qos, retain);
  if (rc != MOSQ_ERR_SUCCESS) {
    ADD_FAILURE() << "mosquitto_will_set: " << mosquitto_strerror(rc);
  }
}

void Client::DropConnection() {
  int fd = mosquitto_socket(mosq_);
  if (fd >= 0) shutdown(fd, SHUT_RDWR);
  WaitForDisconnect(2000);
  StopThread();
}

std::optional<Message> Client::WaitForMessage(int timeout_ms) {
  std::unique_lock<std::mutex> lock(mu_);
  if (!cv_.wait_for(lock, std::chrono::milliseconds(timeout_ms),
                    [this] { return !messages_.empty(); })) {
    return std::nullopt;
  }
  Message m = std::move(messages_.front());
  messages_.pop_front();
  return m;
}

size_t Client::pending_messages() {
  std::lock_guard<std::mutex> lock(mu_);
  return messages_.size();
}

bool Client::IsConnected() {
  std::lock_guard<std::mutex> lock(mu_);
  return connected_ && !down_;
}

bool Client::WaitForDisconnect(int timeout_ms) {
  std::unique_lock<std::mutex> lock(mu_);
  return cv_.wait_for(lock, std::chrono::milliseconds(timeout_ms),
                      [this] { return down_; });
}

void Client::Disconnect() {
  if (mosq_ == nullptr) return;
  if (IsConnected()) {
    mosquitto_disconnect(mosq_);
    WaitForDisconnect(1000);
  }
  StopThread();
  std::lock_guard<std::mutex> lock(mu_);
  connected_ = false;
  down_ = true;
}

// -------------------------------------------------------------- barriers

namespace {

constexpr const char* kBarrierPrefix = "barrier-";

// The title of a notification payload; "" for anything else.
std::string TitleOf(const std::string& payload) {
  nlohmann::json j = nlohmann::json::parse(payload, nullptr, false);
  if (!j.is_object() || !j.contains("title") || !j["title"].is_string()) {
    return "";
  }
  return j["title"].get<std::string>();
}

}  // namespace

bool IsBarrier(const Message& m) {
  return TitleOf(m.payload).rfind(kBarrierPrefix, 0) == 0;
}

testing::AssertionResult ReceiveUntilBarrier(Client* receiver, Client* sender,
                                             const std::string& topic,
                                             std::vector<Message>* before,
                                             int timeout_ms) {
  static std::atomic<int> counter{0};
  const std::string title = kBarrierPrefix + std::to_string(++counter);
  before->clear();
  int rc =
      sender->Publish(topic, R"({"title":")" + title + R"(","body":"barrier"})",
                      1, false, timeout_ms);
  if (rc != 0) {
    return testing::AssertionFailure()
           << "the barrier on '" << topic << "' was not accepted: " << rc;
  }
  auto deadline =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (true) {
    int left =
        static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(
                             deadline - std::chrono::steady_clock::now())
                             .count());
    std::optional<Message> m = receiver->WaitForMessage(std::max(left, 0));
    if (!m) {
      return testing::AssertionFailure()
             << "the barrier on '" << topic << "' did not arrive in "
             << timeout_ms << " ms";
    }
    if (m->topic == topic && TitleOf(m->payload) == title) {
      return testing::AssertionSuccess();
    }
    if (!IsBarrier(*m)) before->push_back(std::move(*m));
  }
}

testing::AssertionResult NothingBefore(Client* receiver, Client* sender,
                                       const std::string& topic) {
  std::vector<Message> before;
  testing::AssertionResult arrived =
      ReceiveUntilBarrier(receiver, sender, topic, &before);
  if (!arrived) return arrived;
  if (before.empty()) return testing::AssertionSuccess();
  testing::AssertionResult failure = testing::AssertionFailure();
  failure << before.size() << " unexpected message(s) before the barrier:";
  for (const Message& m : before) {
    failure << "\n  '" << m.topic << "': " << m.payload.substr(0, 300);
  }
  return failure;
}

// -------------------------------------------------------------------- stats

nlohmann::json WaitForStats(
    Client* monitor, const std::function<bool(const nlohmann::json&)>& pred,
    int timeout_ms, nlohmann::json* last, std::string* raw) {
  auto deadline =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (std::chrono::steady_clock::now() < deadline) {
    auto m = monitor->WaitForMessage(100);
    if (!m || m->topic != kStatsTopic) continue;
    nlohmann::json j = nlohmann::json::parse(m->payload, nullptr, false);
    if (!j.is_object()) {
      ADD_FAILURE() << "stats are not a JSON object: " << m->payload;
      continue;
    }
    if (last) *last = j;
    if (raw) *raw = m->payload;
    if (pred(j)) return j;
  }
  return nlohmann::json();
}

nlohmann::json NextStats(Client* monitor, int timeout_ms, std::string* raw) {
  int64_t now = WallMs();
  return WaitForStats(
      monitor,
      [&](const nlohmann::json& j) {
        return ParseStampMs(j.value("timestamp", "")) > now;
      },
      timeout_ms, nullptr, raw);
}

// ---------------------------------------------------------------- RawClient

namespace {

void PutU16(std::string* out, size_t v) {
  out->push_back(static_cast<char>((v >> 8) & 0xff));
  out->push_back(static_cast<char>(v & 0xff));
}

void PutString(std::string* out, const std::string& s) {
  PutU16(out, s.size());
  out->append(s);
}

// Fixed header: first byte and the variable-length remaining length.
std::string Frame(uint8_t first, const std::string& body) {
  std::string out(1, static_cast<char>(first));
  size_t len = body.size();
  do {
    uint8_t byte = len % 128;
    len /= 128;
    if (len > 0) byte |= 0x80;
    out.push_back(static_cast<char>(byte));
  } while (len > 0);
  return out + body;
}

}  // namespace

RawClient::~RawClient() { Close(); }

bool RawClient::Open(int port) {
  Close();
  fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd_ < 0) return false;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    Close();
    return false;
  }
  return true;
}

void RawClient::Close() {
  if (fd_ >= 0) close(fd_);
  fd_ = -1;
  closed_ = false;
  buffer_.clear();
}

bool RawClient::Send(const std::string& bytes) {
  if (fd_ < 0) return false;
  size_t off = 0;
  while (off < bytes.size()) {
    ssize_t n = send(fd_, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    off += static_cast<size_t>(n);
  }
  return true;
}

std::optional<RawPacket> RawClient::Read(int timeout_ms) {
  auto deadline =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (fd_ >= 0) {
    // A complete packet in the buffer?
    if (buffer_.size() >= 2) {
      size_t len = 0;
      size_t mult = 1;
      size_t pos = 1;
      bool complete_length = false;
      while (pos < buffer_.size() && pos <= 4) {
        uint8_t b = static_cast<uint8_t>(buffer_[pos++]);
        len += (b & 0x7f) * mult;
        mult *= 128;
        if ((b & 0x80) == 0) {
          complete_length = true;
          break;
        }
      }
      if (complete_length && buffer_.size() >= pos + len) {
        RawPacket p;
        p.header = static_cast<uint8_t>(buffer_[0]);
        p.body = buffer_.substr(pos, len);
        buffer_.erase(0, pos + len);
        return p;
      }
    }
    int left =
        static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(
                             deadline - std::chrono::steady_clock::now())
                             .count());
    if (left <= 0) return std::nullopt;
    pollfd pfd{fd_, POLLIN, 0};
    int r = poll(&pfd, 1, left);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return std::nullopt;
    char buf[4096];
    ssize_t n = recv(fd_, buf, sizeof(buf), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {  // EOF or reset
      closed_ = true;
      return std::nullopt;
    }
    buffer_.append(buf, static_cast<size_t>(n));
  }
  return std::nullopt;
}

bool RawClient::WaitForClose(int timeout_ms) {
  auto deadline =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (fd_ >= 0) {
    int left =
        static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(
                             deadline - std::chrono::steady_clock::now())
                             .count());
    if (left <= 0) return false;
    pollfd pfd{fd_, POLLIN, 0};
    int r = poll(&pfd, 1, left);
    if (r < 0 && errno == EINTR) continue;
    if (r == 0) return false;
    if (r < 0) return true;
    char buf[4096];
    ssize_t n = recv(fd_, buf, sizeof(buf), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      closed_ = true;
      return true;
    }
  }
  return true;
}

int RawClient::Connect(int version, const std::string& client_id,
                       const std::string& user, const std::string& pass,
                       int keepalive_s) {
  if (!Send(ConnectPacket(version, client_id, user, pass, keepalive_s))) {
    return -1;
  }
  std::optional<RawPacket> p = Read(5000);
  if (!p || p->type() != 2 || p->body.size() < 2) return -1;
  return static_cast<uint8_t>(p->body[1]);
}

std::string RawClient::ConnectPacket(int version, const std::string& client_id,
                                     const std::string& user,
                                     const std::string& pass, int keepalive_s) {
  std::string body;
  PutString(&body, "MQTT");
  body.push_back(static_cast<char>(version));
  uint8_t flags = 0x02;  // clean session / clean start
  if (!user.empty()) flags |= 0x80;
  if (!pass.empty()) flags |= 0x40;
  body.push_back(static_cast<char>(flags));
  PutU16(&body, static_cast<size_t>(keepalive_s));
  if (version == kMqtt5) body.push_back('\0');  // no properties
  PutString(&body, client_id);
  if (!user.empty()) PutString(&body, user);
  if (!pass.empty()) PutString(&body, pass);
  return Frame(0x10, body);
}

std::string RawClient::PublishPacket(int version, const std::string& topic,
                                     const std::string& payload, int qos,
                                     uint16_t mid, bool dup, bool retain) {
  std::string body;
  PutString(&body, topic);
  if (qos > 0) PutU16(&body, mid);
  if (version == kMqtt5) body.push_back('\0');  // no properties
  body += payload;
  uint8_t first = static_cast<uint8_t>(0x30 | (qos << 1));
  if (dup) first |= 0x08;
  if (retain) first |= 0x01;
  return Frame(first, body);
}

std::string RawClient::PubrelPacket(uint16_t mid) {
  std::string body;
  PutU16(&body, mid);
  return Frame(0x62, body);
}

std::string RawClient::DisconnectPacket(int version) {
  (void)version;  // v5: remaining length 0 means reason "normal"
  return Frame(0xe0, "");
}

// ------------------------------------------------------------ test fixture

testing::AssertionResult BrokerTest::StartBroker(
    std::vector<std::string> plugin_options,
    std::vector<std::string> extra_lines, bool per_listener_settings) {
  if (!registry_.ok()) return testing::AssertionFailure() << "no registry";
  BrokerConfig config;
  config.db_path = registry_.db_path();
  config.plugin_options = std::move(plugin_options);
  config.extra_lines = std::move(extra_lines);
  config.per_listener_settings = per_listener_settings;
  return broker_.Start(config);
}

std::unique_ptr<Client> BrokerTest::ConnectAs(const std::string& user,
                                              const std::string& password,
                                              int protocol,
                                              const std::string& client_id) {
  auto client = std::make_unique<Client>(broker_.port(), protocol, client_id);
  int rc = client->Connect(user, password);
  if (rc != 0) {
    ADD_FAILURE() << "'" << user << "' could not connect: CONNACK " << rc
                  << "; log tail:\n"
                  << Tail(broker_.Log(), 10);
    return nullptr;
  }
  return client;
}

testing::AssertionResult BrokerTest::AddFixtureDevices() {
  const std::pair<const char*, const char*> kTypes[] = {
      {"sensor-001", "iot_sensor"},
      {"homepot", "backend"},
      {"legacy", "unknown"},
      {"gateway-01", "gateway"},
  };
  for (const auto& [id, type] : kTypes) {
    auto it = FixtureHashes().find(id);
    if (it == FixtureHashes().end()) {
      return testing::AssertionFailure() << "fixture file lacks " << id;
    }
    testing::AssertionResult r =
        registry_.AddDeviceWithHash(id, type, it->second);
    if (!r) return r;
  }
  return testing::AssertionSuccess();
}

std::string NotificationWithId(const std::string& message_id, int ttl,
                               const std::string& body) {
  nlohmann::json n = {
      {"title", "t"}, {"body", body}, {"message_id", message_id}, {"ttl", ttl}};
  return n.dump();
}

ClientOptions Durable(int protocol, const std::string& client_id) {
  ClientOptions options;
  options.protocol = protocol;
  options.client_id = client_id;
  options.clean_session = false;
  options.session_expiry_s = 3600;
  return options;
}

}  // namespace integration
}  // namespace homepot
