// Integration-test harness: a throw-away registry file, a real Mosquitto
// process loading the built plugin on a free loopback port, and libmosquitto
// clients driven by their own network thread.
//
// Setup helpers return testing::AssertionResult so that a test reads
//   ASSERT_TRUE(registry.AddDevice("sensor-001", "iot_sensor", "pw"));
// and a failure prints the SQLite or process error.
#ifndef HOMEPOT_TESTS_INTEGRATION_HARNESS_H_
#define HOMEPOT_TESTS_INTEGRATION_HARNESS_H_

#include <gtest/gtest.h>
#include <mosquitto.h>
#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "testing.h"

namespace homepot {
namespace integration {

using test::kNotification;
using test::ReadFile;
using test::WriteFile;

// A loopback port nobody listened on a moment ago (bind to 0, read it,
// close), or 0.
int FreePort();
// Whether something accepts TCP connections on 127.0.0.1:`port`.
bool PortAccepts(int port);

// MQTT protocol versions as libmosquitto numbers them.
inline constexpr int kMqtt311 = 4;
inline constexpr int kMqtt5 = 5;
// CONNACK codes for "not authorized".
inline constexpr int kConnackNotAuthorized311 = 5;
inline constexpr int kReasonNotAuthorized = 0x87;
// SUBACK "failure" in MQTT 3.1.1.
inline constexpr int kSubackFailure311 = 0x80;
// Exit status of a mosquitto stopped by ASan/UBSan (LSan too) in the
// sanitize run.
inline constexpr int kSanitizerExitCode = 86;

// ---------------------------------------------------------------- utilities

// Occurrences of `needle` in `haystack`.
int CountOccurrences(const std::string& haystack, const std::string& needle);
// Lines of `text` containing `needle`.
std::vector<std::string> LinesContaining(const std::string& text,
                                         const std::string& needle);
// The last `n` lines of `text`.
std::string Tail(const std::string& text, int n = 30);

// Runs `argv` (argv[0] is a path), feeding `input` on stdin; returns the exit
// status (-1 if it did not exit normally). Its stdout/stderr go to `output`.
int RunCommand(const std::vector<std::string>& argv, const std::string& input,
               std::string* output = nullptr);

// Polls `condition` every `step_ms` until it holds or `timeout_ms` passed.
bool Eventually(const std::function<bool()>& condition, int timeout_ms,
                int step_ms = 50);

void SleepMs(int ms);

// Wall-clock time, milliseconds since the Unix epoch.
int64_t WallMs();
// "2026-11-25T11:32:34.123Z" (RFC 3339 UTC with milliseconds, the plugin's
// stamp format) as Unix milliseconds; -1 when `stamp` has another shape.
int64_t ParseStampMs(const std::string& stamp);

// user -> encoded hash, from tests/fixtures/mosquitto_passwd.txt.
const std::map<std::string, std::string>& FixtureHashes();
// user -> plaintext password of the fixture file.
const std::map<std::string, std::string>& FixturePasswords();

// $HOMEPOT_TEST_PLUGIN, or the plugin this build produced.
std::string DefaultPluginPath();

// -------------------------------------------------------------- TempRegistry

// A fresh temporary directory (mkdtemp under /tmp) holding homepot.db with
// schema/schema.sql applied. Removed with everything in it on destruction.
class TempRegistry {
 public:
  TempRegistry();
  TempRegistry(const TempRegistry&) = delete;
  TempRegistry& operator=(const TempRegistry&) = delete;

  // False (with a test failure already recorded) when creation failed.
  bool ok() const { return ok_; }
  const std::string& dir() const { return dir_.path(); }
  const std::string& db_path() const { return db_path_; }
  std::string Path(const std::string& name) const { return dir_.Path(name); }

  // Adds an enabled device whose password is hashed with `iterations`
  // PBKDF2 rounds (low by default: the tests are not about hashing). An empty
  // `token` keeps the default devices/<id>/notifications.
  testing::AssertionResult AddDevice(const std::string& id,
                                     const std::string& type,
                                     const std::string& password,
                                     const std::string& token = "",
                                     int iterations = 10);
  // Adds an enabled device with an already encoded hash.
  testing::AssertionResult AddDeviceWithHash(const std::string& id,
                                             const std::string& type,
                                             const std::string& hash);
  // Adds an ACL rule; `device_id` nullptr = a global rule.
  testing::AssertionResult Grant(const char* device_id,
                                 const std::string& filter,
                                 const std::string& access);
  // Runs SQL through the SQLite C API on a short-lived connection.
  testing::AssertionResult Exec(const std::string& sql);
  // Runs SQL through the sqlite3 command-line shell, as an operator would.
  testing::AssertionResult ExecCli(const std::string& sql);

  // One result row; nullopt = SQL NULL.
  using Row = std::vector<std::optional<std::string>>;
  // Runs a query on a short-lived connection and returns every row.
  testing::AssertionResult Query(const std::string& sql,
                                 std::vector<Row>* rows);
  // The single integer a query yields (e.g. a count); `fallback` when it
  // yields no row, NULL or an error.
  int64_t QueryInt(const std::string& sql, int64_t fallback = -1);

  // Creates a registry file at `path` with the schema applied (and runs
  // `sql` on it). Used to build replacement files.
  static testing::AssertionResult CreateDatabase(const std::string& path,
                                                 const std::string& sql = "");
  // Runs SQL on an arbitrary database file.
  static testing::AssertionResult ExecOn(const std::string& path,
                                         const std::string& sql);

 private:
  test::TempDir dir_{"homepot-it"};
  std::string db_path_;
  bool ok_ = false;
};

// ------------------------------------------------------------------- Broker

struct BrokerConfig {
  // plugin_opt_db_path; empty = the line is left out.
  std::string db_path;
  // Plugin options without the "plugin_opt_" prefix, e.g.
  // "reload_interval_ms 200".
  std::vector<std::string> plugin_options;
  // Extra lines for the listener / security section (password_file, ...).
  std::vector<std::string> extra_lines;
  // Writes per_listener_settings true; plugin and options then follow the
  // listener line, as Mosquitto requires.
  bool per_listener_settings = false;
  // The plugin library: $HOMEPOT_TEST_PLUGIN if set (e.g. an installed
  // copy), else the freshly built one.
  std::string plugin_path = DefaultPluginPath();
};

// One mosquitto process started by this object. It never signals any other
// process. The destructor stops it.
//
// Sanitize run: when $HOMEPOT_TEST_PRELOAD is set (a ':'-separated list of
// sanitizer runtimes, tests/CMakeLists.txt sets it with an ASan/UBSan build
// of the plugin in $HOMEPOT_TEST_PLUGIN), mosquitto alone gets it as
// LD_PRELOAD, with ASAN_OPTIONS/LSAN_OPTIONS/UBSAN_OPTIONS writing reports
// to <dir>/sanitizer.<pid> (UBSan's to mosquitto.out) and exiting with
// kSanitizerExitCode. Whenever the process is reaped, each new report fails
// the running test (with the report's first lines), as does that exit code
// without a report.
class Broker {
 public:
  // `dir` holds mosquitto.conf and mosquitto.log.
  explicit Broker(std::string dir);
  ~Broker();
  Broker(const Broker&) = delete;
  Broker& operator=(const Broker&) = delete;

  // Writes the config on a free port and starts mosquitto; succeeds once the
  // port accepts connections (10 s at most). If the process exits instead,
  // fails with its exit status and the log tail. Retries on a port clash.
  testing::AssertionResult Start(const BrokerConfig& config);

  // For configurations that must be refused: starts mosquitto and waits up
  // to `timeout_ms` for it to exit. Returns its wait status in `status`;
  // fails when it was still running (it is stopped then).
  testing::AssertionResult StartExpectingExit(const BrokerConfig& config,
                                              int* status,
                                              int timeout_ms = 10000);

  // SIGTERM and wait (SIGKILL after 5 s). Returns the wait status, or -1
  // when nothing was running.
  int Stop();
  // SIGKILL and reap (no clean shutdown). Returns the wait status, or -1
  // when nothing was running.
  int Kill();
  // SIGHUP: Mosquitto reloads its config and the plugin its registry.
  void Reload();
  bool running() const { return pid_ > 0; }
  int port() const { return port_; }
  pid_t pid() const { return pid_; }

  // Everything the broker logged (log file, then stdout/stderr).
  std::string Log() const;
  std::string config_path() const { return dir_ + "/mosquitto.conf"; }
  std::string log_path() const { return dir_ + "/mosquitto.log"; }

  // Waits until the log contains `needle` at least `count` times.
  bool WaitForLog(const std::string& needle, int timeout_ms, int count = 1);

 private:
  std::string RenderConfig(const BrokerConfig& config, int port) const;
  // Forks/execs mosquitto; sets pid_.
  bool Spawn(std::string* error);
  // Whether the process has exited (then reaps it into `status`).
  bool Exited(int* status);
  // Called once the process is reaped: clears pid_ and fails the test for
  // sanitizer reports (see above).
  void Reaped(int status);

  std::string dir_;
  pid_t pid_ = -1;
  int port_ = 0;
  // Sanitizer report files already turned into test failures.
  std::set<std::string> reported_;
};

// ------------------------------------------------------------------- Client

struct Message {
  std::string topic;
  std::string payload;
  int qos = 0;
  bool retain = false;
};

// How a Client connects and where its events go.
struct ClientOptions {
  int protocol = kMqtt5;
  // Empty = a generated unique id.
  std::string client_id;
  // MQTT 3.1.1 clean session / MQTT 5 clean start. false needs a client_id.
  bool clean_session = true;
  // MQTT 5: the session expiry interval sent with CONNECT; 0 = none.
  int session_expiry_s = 0;
  // Keepalive in seconds; libmosquitto refuses 1 to 4 (Connect then returns
  // -1): use RawClient for those.
  int keepalive_s = 60;
  // Called on the network thread with each CONNACK code.
  std::function<void(int code)> on_connack;
  // Called on the network thread (or in Connect, with -1, when the
  // connection could not even be opened) when the connection goes down:
  // the DISCONNECT reason, or -100 - the libmosquitto error of the loop.
  std::function<void(int code)> on_down;
  // Called on the network thread for each message, which is then not
  // queued for WaitForMessage.
  std::function<void(const std::string& topic, const std::string& payload)>
      on_message;
};

// A valid notification carrying `message_id` and `ttl` (seconds).
std::string NotificationWithId(const std::string& message_id, int ttl = 300,
                               const std::string& body = "b");

// A session that outlives its connection: MQTT 3.1.1 with clean session
// off, or MQTT 5 with clean start off and a session expiry of one hour.
ClientOptions Durable(int protocol, const std::string& client_id);

// A libmosquitto client with its own network thread. It never reconnects by
// itself: a refused or dropped connection stays down, so tests see exactly
// the attempts they make.
class Client {
 public:
  // `client_id` empty = a generated unique id.
  explicit Client(int port, int protocol = kMqtt5, std::string client_id = "");
  Client(int port, ClientOptions options);
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Connects and waits for CONNACK. Returns the CONNACK code (v3.1.1 return
  // code or v5 reason code: 0 = accepted), or -1 when none arrived in time
  // (e.g. the broker closed the socket). `user`/`pass` may be nullptr.
  int Connect(const char* user, const char* pass, int timeout_ms = 5000);
  int Connect(const std::string& user, const std::string& pass,
              int timeout_ms = 5000) {
    return Connect(user.c_str(), pass.c_str(), timeout_ms);
  }

  // Keepalive (seconds) for the next Connect (ClientOptions::keepalive_s).
  void SetKeepalive(int seconds) { options_.keepalive_s = seconds; }

  // Sets the will for the next Connect (call before it).
  void SetWill(const std::string& topic, const std::string& payload,
               int qos = 1, bool retain = false);
  // Closes the socket without DISCONNECT, so the broker sends the will.
  void DropConnection();

  // Subscribes and returns the granted QoS (0x80 / 0x87 = refused), or -1 on
  // timeout or when not connected.
  int Subscribe(const std::string& filter, int qos = 1, int timeout_ms = 5000);

  // Publishes. QoS 0: 0 once handed to the socket. QoS 1/2: waits for the
  // PUBACK/PUBREC; returns 0 when it accepted the message (v3.1.1 always;
  // v5 any reason below 0x80, e.g. 0x10 "no matching subscribers") and the
  // v5 reason code otherwise (0x87 = not authorized). -1 on timeout, error
  // or when not connected.
  int Publish(const std::string& topic, const std::string& payload, int qos = 1,
              bool retain = false, int timeout_ms = 5000);
  // Publishes with QoS 1 or 2 and returns the acknowledgement's reason code
  // as it came (v5: 0x10 "no matching subscribers" stays 0x10), -1 on
  // timeout, error or when not connected.
  int PublishForReason(const std::string& topic, const std::string& payload,
                       int qos, int timeout_ms = 5000);

  // The next received message, or nothing after `timeout_ms`.
  std::optional<Message> WaitForMessage(int timeout_ms = 5000);
  size_t pending_messages();

  bool IsConnected();
  // True once the connection is down (or was already).
  bool WaitForDisconnect(int timeout_ms = 2000);
  // Sends DISCONNECT and stops the network thread.
  void Disconnect();

  const std::string& client_id() const { return options_.client_id; }

 private:
  static void OnConnect(struct mosquitto*, void* obj, int rc, int flags,
                        const mosquitto_property* props);
  static void OnDisconnect(struct mosquitto*, void* obj, int rc,
                           const mosquitto_property* props);
  static void OnPublish(struct mosquitto*, void* obj, int mid, int rc,
                        const mosquitto_property* props);
  static void OnSubscribe(struct mosquitto*, void* obj, int mid, int count,
                          const int* granted, const mosquitto_property* props);
  static void OnMessage(struct mosquitto*, void* obj,
                        const struct mosquitto_message* msg,
                        const mosquitto_property* props);
  // Publishes and waits for the acknowledgement (QoS 0: the hand-over to
  // the socket); its reason code, or -1.
  int PublishAcked(const std::string& topic, const std::string& payload,
                   int qos, bool retain, int timeout_ms);
  void Loop();
  void StopThread();

  int port_;
  ClientOptions options_;
  struct mosquitto* mosq_ = nullptr;
  std::thread thread_;

  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  bool connected_ = false;
  bool down_ = true;  // no live connection
  std::optional<int> connack_;
  std::map<int, int> acks_;  // mid -> reason code / granted qos
  std::deque<Message> messages_;
};

// -------------------------------------------------------------- barriers

// "Nothing arrives" is checked with a barrier, never with a quiet period:
// after whatever must not reach `receiver`, `sender` publishes a barrier
// message on `topic` (QoS 1), which `receiver` is subscribed to. Mosquitto
// handles packets one at a time and queues a subscriber's messages in that
// order, so anything that was going to arrive arrives before the barrier.
// The barrier is a valid notification {"title":"barrier-<n>",...}, so it
// passes on notification topics too.

// Sends a barrier and reads `receiver`'s messages up to it (older barriers
// are skipped); those before it go to `before`. Fails when the barrier
// cannot be sent or does not arrive within `timeout_ms`.
testing::AssertionResult ReceiveUntilBarrier(Client* receiver, Client* sender,
                                             const std::string& topic,
                                             std::vector<Message>* before,
                                             int timeout_ms = 5000);
// Sends a barrier and fails unless it is the first message `receiver` gets.
testing::AssertionResult NothingBefore(Client* receiver, Client* sender,
                                       const std::string& topic);
// Whether `m` is a barrier (of any of these calls).
bool IsBarrier(const Message& m);

// -------------------------------------------------------------------- stats

inline const std::string kStatsTopic = "$SYS/homepot/stats";
// How long a test waits for a stats object that must come (a deadline, not
// a pause: generous, since a loaded machine may delay an ASan broker).
inline constexpr int kStatsWaitMs = 15000;

// Reads messages from `monitor` (subscribed to kStatsTopic) until a stats
// object satisfies `pred`; returns it, or null JSON after `timeout_ms` (the
// last stats object seen is then in `last`, its text in `raw`).
nlohmann::json WaitForStats(
    Client* monitor, const std::function<bool(const nlohmann::json&)>& pred,
    int timeout_ms, nlohmann::json* last = nullptr, std::string* raw = nullptr);
// The first stats object stamped after now.
nlohmann::json NextStats(Client* monitor, int timeout_ms = kStatsWaitMs,
                         std::string* raw = nullptr);

// ---------------------------------------------------------------- RawClient

// MQTT spoken byte by byte over a plain TCP socket, for what libmosquitto
// will not do on request (retransmit a PUBLISH with DUP, stay silent past
// the keepalive, ...). Blocking, single-threaded; every read has a timeout.
struct RawPacket {
  uint8_t header = 0;  // first byte: type << 4 | flags
  std::string body;    // everything after the remaining length
  int type() const { return header >> 4; }
};

class RawClient {
 public:
  RawClient() = default;
  ~RawClient();
  RawClient(const RawClient&) = delete;
  RawClient& operator=(const RawClient&) = delete;

  // Opens the TCP connection to 127.0.0.1:port.
  bool Open(int port);
  void Close();
  bool Send(const std::string& bytes);
  // The next complete packet, or nothing after `timeout_ms` (or on EOF).
  std::optional<RawPacket> Read(int timeout_ms = 3000);
  // True once a Read or WaitForClose saw the broker close the connection.
  bool closed() const { return closed_; }
  // True once the broker closed the connection (EOF or reset) within
  // `timeout_ms`; packets arriving meanwhile are discarded.
  bool WaitForClose(int timeout_ms);

  // Sends CONNECT and reads CONNACK; returns its return/reason code, -1 when
  // none came. `version` is kMqtt311 or kMqtt5.
  int Connect(int version, const std::string& client_id,
              const std::string& user, const std::string& pass,
              int keepalive_s = 60);

  // Packet builders. `version` decides the v5 property fields.
  static std::string ConnectPacket(int version, const std::string& client_id,
                                   const std::string& user,
                                   const std::string& pass, int keepalive_s);
  static std::string PublishPacket(int version, const std::string& topic,
                                   const std::string& payload, int qos,
                                   uint16_t mid, bool dup = false,
                                   bool retain = false);
  static std::string PubrelPacket(uint16_t mid);
  static std::string DisconnectPacket(int version);

 private:
  int fd_ = -1;
  bool closed_ = false;
  std::string buffer_;  // bytes read but not yet returned
};

// ------------------------------------------------------------ test fixture

// A registry in a temporary directory plus a broker using it.
class BrokerTest : public testing::Test {
 protected:
  // Starts the broker on the fixture's registry with `plugin_options`
  // (without prefix) and `extra_lines`.
  testing::AssertionResult StartBroker(
      std::vector<std::string> plugin_options = {},
      std::vector<std::string> extra_lines = {},
      bool per_listener_settings = false);

  // A connected client, or nullptr (with a test failure recorded).
  std::unique_ptr<Client> ConnectAs(const std::string& user,
                                    const std::string& password,
                                    int protocol = kMqtt5,
                                    const std::string& client_id = "");

  // Adds the fixture devices sensor-001, homepot, legacy and gateway-01
  // with the real mosquitto_passwd hashes.
  testing::AssertionResult AddFixtureDevices();

  TempRegistry registry_;
  Broker broker_{registry_.dir()};
};

}  // namespace integration
}  // namespace homepot

#endif  // HOMEPOT_TESTS_INTEGRATION_HARNESS_H_
