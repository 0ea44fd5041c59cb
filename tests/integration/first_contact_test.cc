// First contact: scripts/prepare-demo (the part of scripts/run that prepares
// the demo) run from a checkout inside a private (0700) folder yields a demo
// Mosquitto can run. As root the broker drops to user mosquitto, so the
// script stages the plugin and the registry where that user reaches them
// (here a unique folder in /var/lib instead of /var/lib/homepot-demo); as an
// ordinary user the demo stays in the checkout. The demo device logs in and
// receives a notification from the demo backend, stamped by the plugin, and
// the broker writes the device statistics into the demo registry. As root
// the script refuses a demo folder another user could change (so planted
// links never make root overwrite other files), and it never writes into a
// non-empty folder it did not make.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "harness.h"

namespace homepot {
namespace integration {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr const char* kMosquitto = "/usr/sbin/mosquitto";
constexpr const char* kSensorToken = "devices/sensor-001/notifications";

using test::TempDir;

// The real user id of process `pid`, or -1.
long ProcessUid(pid_t pid) {
  std::istringstream status(
      ReadFile("/proc/" + std::to_string(pid) + "/status"));
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("Uid:", 0) == 0) return std::stol(line.substr(4));
  }
  return -1;
}

// The value of the line "`key`: VALUE" in `text`, or "".
std::string Field(const std::string& text, const std::string& key) {
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(key + ": ", 0) == 0) return line.substr(key.size() + 2);
  }
  return "";
}

// The mosquitto process this test starts with the prepared config. The
// destructor stops it; nothing else is ever signalled.
class DemoBroker {
 public:
  explicit DemoBroker(std::string out_path) : out_path_(std::move(out_path)) {}
  ~DemoBroker() { Stop(); }
  DemoBroker(const DemoBroker&) = delete;
  DemoBroker& operator=(const DemoBroker&) = delete;

  // Starts `mosquitto -c conf` and waits (10 s at most) until it logged
  // "running" and `port` accepts connections. On failure `*port_clash` says
  // whether another process took the port.
  testing::AssertionResult Start(const std::string& conf, int port,
                                 bool* port_clash) {
    *port_clash = false;
    int out =
        open(out_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (out < 0) return testing::AssertionFailure() << "open " << out_path_;
    const char* argv[] = {kMosquitto, "-c", conf.c_str(), nullptr};
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
      prctl(PR_SET_PDEATHSIG, SIGTERM);  // dies with the test process
      if (getppid() != parent) _exit(126);
      dup2(out, 1);
      dup2(out, 2);
      execv(kMosquitto, const_cast<char* const*>(argv));
      _exit(127);
    }
    close(out);
    if (pid < 0) return testing::AssertionFailure() << "fork failed";
    pid_ = pid;
    bool exited = false;
    bool ready = Eventually(
        [&] {
          exited = Reap(WNOHANG);
          return exited || (Log().find(" running") != std::string::npos &&
                            PortAccepts(port));
        },
        10000, 10);
    if (ready && !exited) return testing::AssertionSuccess();
    *port_clash = Log().find("Address already in use") != std::string::npos;
    Stop();
    return testing::AssertionFailure()
           << "mosquitto did not start on port " << port << "; log tail:\n"
           << Tail(Log());
  }

  // SIGTERM (SIGKILL after 10 s) and reap. Returns the wait status, or -1
  // when nothing was running.
  int Stop() {
    if (pid_ <= 0) return -1;
    kill(pid_, SIGTERM);
    if (!Eventually([&] { return Reap(WNOHANG); }, 10000, 10)) {
      kill(pid_, SIGKILL);
      Reap(0);
    }
    return status_;
  }

  pid_t pid() const { return pid_; }
  std::string Log() const { return ReadFile(out_path_); }

 private:
  // Whether the process is gone (then it is reaped into status_).
  bool Reap(int options) {
    if (pid_ <= 0) return true;
    pid_t r;
    do {
      r = waitpid(pid_, &status_, options);
    } while (r < 0 && errno == EINTR);
    if (r == 0) return false;
    pid_ = -1;
    return true;
  }

  std::string out_path_;
  pid_t pid_ = -1;
  int status_ = -1;
};

// Copies `from` to `to` (creating its folder) with mode `mode`.
testing::AssertionResult Install(const std::string& from, const std::string& to,
                                 fs::perms mode) {
  std::error_code ec;
  fs::create_directories(fs::path(to).parent_path(), ec);
  if (!ec) fs::copy_file(from, to, fs::copy_options::overwrite_existing, ec);
  if (!ec) fs::permissions(to, mode, ec);
  if (ec) {
    return testing::AssertionFailure()
           << "copy " << from << " to " << to << ": " << ec.message();
  }
  return testing::AssertionSuccess();
}

constexpr fs::perms kMode755 = fs::perms::owner_all | fs::perms::group_read |
                               fs::perms::group_exec | fs::perms::others_read |
                               fs::perms::others_exec;

// A checkout in `checkout`: the scripts, the built plugin and homepot-admin
// where the build puts them.
testing::AssertionResult MakeCheckout(const std::string& checkout) {
  std::error_code ec;
  fs::create_directories(checkout, ec);
  if (!ec) {
    fs::copy(std::string(HOMEPOT_SOURCE_DIR) + "/scripts",
             checkout + "/scripts", fs::copy_options::recursive, ec);
  }
  if (ec)
    return testing::AssertionFailure() << "copy scripts: " << ec.message();
  testing::AssertionResult ok =
      Install(HOMEPOT_PLUGIN_PATH,
              checkout + "/build/plugin/mosquitto_homepot.so", kMode755);
  if (!ok) return ok;
  return Install(HOMEPOT_ADMIN_PATH, checkout + "/build/admin/homepot-admin",
                 kMode755);
}

// A unique system-wide folder (mode 0755, like /var/lib) that the test
// removes: in /var/lib as root, where every folder on the way is root's
// alone, as prepare-demo demands; in /tmp otherwise.
std::unique_ptr<TempDir> MakeStage() {
  auto stage = std::make_unique<TempDir>("homepot-first-contact-stage",
                                         geteuid() == 0 ? "/var/lib" : "/tmp");
  std::error_code ec;
  if (!stage->path().empty()) fs::permissions(stage->path(), kMode755, ec);
  return ec ? nullptr : std::move(stage);
}

// Runs `checkout`/scripts/prepare-demo with HOMEPOT_DEMO_DIR=`demo` and a
// free port; its output goes to `*output`.
int PrepareDemo(const std::string& checkout, const std::string& demo,
                std::string* output) {
  return RunCommand({"/usr/bin/env", "HOMEPOT_DEMO_DIR=" + demo,
                     "HOMEPOT_PORT=" + std::to_string(FreePort()),
                     checkout + "/scripts/prepare-demo"},
                    "", output);
}

TEST(FirstContactTest, DemoPreparedInAPrivateFolderDeliversANotification) {
  if (getenv("HOMEPOT_TEST_PRELOAD") != nullptr) {
    GTEST_SKIP() << "first contact runs the plain plugin, as scripts/run does";
  }
  const bool as_root = geteuid() == 0;

  // A checkout in a private folder, as `git clone <repo> ~/homepot` in
  // root's home.
  TempDir home("homepot-first-contact");
  ASSERT_FALSE(home.path().empty()) << "mkdtemp failed";
  struct stat st;
  ASSERT_EQ(stat(home.path().c_str(), &st), 0);
  ASSERT_EQ(st.st_mode & 0777, 0700u);
  const std::string checkout = home.path() + "/homepot";
  ASSERT_TRUE(MakeCheckout(checkout));

  // As root the demo goes to a system-wide folder.
  std::unique_ptr<TempDir> stage = MakeStage();
  ASSERT_TRUE(stage && !stage->path().empty()) << "stage folder";
  std::vector<std::string> env = {"/usr/bin/env"};
  if (as_root) {
    env.push_back("HOMEPOT_DEMO_DIR=" + stage->path() + "/demo");
  } else {
    env.insert(env.end(), {"-u", "HOMEPOT_DEMO_DIR"});
  }
  const std::string expected_demo =
      as_root ? stage->path() + "/demo" : checkout + "/build/demo";

  DemoBroker broker(home.path() + "/mosquitto.out");
  std::string prepared;
  int port = 0;
  for (int attempt = 0; attempt < 5 && broker.pid() <= 0; ++attempt) {
    port = FreePort();
    ASSERT_NE(port, 0) << "no free port";
    std::vector<std::string> argv = env;
    argv.push_back("HOMEPOT_PORT=" + std::to_string(port));
    argv.push_back(checkout + "/scripts/prepare-demo");
    int rc = RunCommand(argv, "", &prepared);
    if (rc != 0 && prepared.find("already listens") != std::string::npos) {
      continue;  // someone took the port between probe and check
    }
    ASSERT_EQ(rc, 0) << prepared;
    ASSERT_EQ(Field(prepared, "conf"), expected_demo + "/mosquitto.conf")
        << prepared;
    bool port_clash = false;
    testing::AssertionResult started =
        broker.Start(expected_demo + "/mosquitto.conf", port, &port_clash);
    if (!started && !port_clash) FAIL() << started.message();
  }
  ASSERT_GT(broker.pid(), 0) << "no free port in 5 attempts";

  // It says what it did; the broker runs as user mosquitto (as root) or as
  // the user who ran the script.
  if (as_root) {
    EXPECT_NE(prepared.find("drops to user mosquitto"), std::string::npos)
        << prepared;
    EXPECT_NE(prepared.find("cannot reach " + checkout), std::string::npos)
        << prepared;
    struct passwd* mosquitto = getpwnam("mosquitto");
    ASSERT_NE(mosquitto, nullptr);
    EXPECT_EQ(ProcessUid(broker.pid()), static_cast<long>(mosquitto->pw_uid));
  } else {
    EXPECT_EQ(ProcessUid(broker.pid()), static_cast<long>(getuid()));
  }
  ASSERT_EQ(stat((expected_demo + "/credentials").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);

  // "device password" lines.
  std::map<std::string, std::string> passwords;
  std::istringstream credentials(ReadFile(expected_demo + "/credentials"));
  std::string device, password;
  while (credentials >> device >> password) passwords[device] = password;
  ASSERT_EQ(passwords.size(), 2u) << "credentials file";

  Client sensor(port);
  ASSERT_EQ(sensor.Connect("sensor-001", passwords["sensor-001"]), 0)
      << Tail(broker.Log());
  ASSERT_EQ(sensor.Subscribe(kSensorToken, 1), 1);
  Client backend(port);
  ASSERT_EQ(backend.Connect("backend", passwords["backend"]), 0);
  ASSERT_EQ(backend.Publish(kSensorToken, kNotification, 1), 0);
  std::optional<Message> got = sensor.WaitForMessage(5000);
  ASSERT_TRUE(got.has_value()) << Tail(broker.Log());
  json notification = json::parse(got->payload, nullptr, false);
  ASSERT_TRUE(notification.is_object()) << got->payload;
  EXPECT_EQ(notification.value("title", ""), "Hello");
  ASSERT_TRUE(notification.contains("received_at")) << got->payload;
  ASSERT_TRUE(notification["received_at"].is_string()) << got->payload;
  EXPECT_GE(ParseStampMs(notification["received_at"].get<std::string>()), 0)
      << got->payload;
  sensor.Disconnect();
  backend.Disconnect();

  // A clean shutdown flushes the device statistics into the registry, which
  // the broker (as user mosquitto when started as root) must be able to
  // write.
  int status = broker.Stop();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
      << "wait status " << status << "; log tail:\n"
      << Tail(broker.Log());
  EXPECT_EQ(broker.Log().find("device_stats flush delayed"), std::string::npos)
      << Tail(broker.Log());
  std::string stats_out;
  ASSERT_EQ(
      RunCommand({checkout + "/build/admin/homepot-admin", "--db",
                  expected_demo + "/registry/homepot.db", "stats", "--json"},
                 "", &stats_out),
      0)
      << stats_out;
  json stats = json::parse(stats_out, nullptr, false);
  ASSERT_TRUE(stats.is_array()) << stats_out;
  std::map<std::string, json> by_device;
  for (const json& row : stats) by_device[row.value("device_id", "")] = row;
  EXPECT_EQ(by_device["sensor-001"].value("delivered", -1), 1) << stats_out;
  EXPECT_EQ(by_device["backend"].value("published", -1), 1) << stats_out;
}

// As root, a demo folder another user owns or could replace is refused
// before anything is written: files linked from it stay untouched.
TEST(FirstContactTest, RootRefusesADemoFolderAnotherUserControls) {
  if (geteuid() != 0) {
    GTEST_SKIP() << "the ownership checks guard what root writes; run as root";
  }
  struct passwd* nobody = getpwnam("nobody");
  ASSERT_NE(nobody, nullptr) << "no user nobody";
  TempDir home("homepot-first-contact");
  ASSERT_FALSE(home.path().empty()) << "mkdtemp failed";
  const std::string checkout = home.path() + "/homepot";
  ASSERT_TRUE(MakeCheckout(checkout));
  // A root-owned file the attacker wants overwritten.
  const std::string victim = home.path() + "/victim";
  ASSERT_TRUE(WriteFile(victim, "precious\n"));
  std::unique_ptr<TempDir> stage = MakeStage();
  ASSERT_TRUE(stage && !stage->path().empty()) << "stage folder";

  // A folder user nobody owns that looks like a prepared demo, its files
  // links to the victim.
  const std::string foreign = stage->path() + "/demo";
  std::error_code ec;
  fs::create_directory(foreign, ec);
  ASSERT_FALSE(ec) << ec.message();
  for (const char* name : {"mosquitto.conf", "credentials", ".homepot-demo"}) {
    fs::create_symlink(victim, foreign + "/" + name, ec);
    ASSERT_FALSE(ec) << ec.message();
  }
  ASSERT_EQ(chown(foreign.c_str(), nobody->pw_uid, nobody->pw_gid), 0);
  std::string out;
  EXPECT_NE(PrepareDemo(checkout, foreign, &out), 0) << out;
  EXPECT_NE(out.find("refusing " + foreign + ": it is owned by nobody"),
            std::string::npos)
      << out;

  // The demo folder itself a link to a folder of root's.
  const std::string link = stage->path() + "/link";
  fs::create_directory_symlink(home.path(), link, ec);
  ASSERT_FALSE(ec) << ec.message();
  EXPECT_NE(PrepareDemo(checkout, link, &out), 0) << out;
  EXPECT_NE(out.find("refusing " + link + ": it is a symbolic link"),
            std::string::npos)
      << out;

  // A demo folder in a folder every user may write (/tmp).
  const std::string in_tmp = home.path() + "/demo";
  EXPECT_NE(PrepareDemo(checkout, in_tmp, &out), 0) << out;
  EXPECT_NE(out.find("refusing /tmp: it is writable by other users"),
            std::string::npos)
      << out;
  EXPECT_FALSE(fs::exists(in_tmp));

  EXPECT_EQ(ReadFile(victim), "precious\n");
  EXPECT_FALSE(fs::is_symlink(victim));
  EXPECT_FALSE(fs::exists(home.path() + "/registry"));
  EXPECT_FALSE(fs::exists(home.path() + "/mosquitto_homepot.so"));
}

// A non-empty folder prepare-demo did not make (such as /etc/mosquitto or a
// home folder) is refused and left as it was.
TEST(FirstContactTest, RefusesANonEmptyFolderItDidNotMake) {
  TempDir home("homepot-first-contact");
  ASSERT_FALSE(home.path().empty()) << "mkdtemp failed";
  const std::string checkout = home.path() + "/homepot";
  ASSERT_TRUE(MakeCheckout(checkout));
  std::unique_ptr<TempDir> stage = MakeStage();
  ASSERT_TRUE(stage && !stage->path().empty()) << "stage folder";
  const std::string foreign = stage->path() + "/mosquitto";
  std::error_code ec;
  fs::create_directory(foreign, ec);
  ASSERT_FALSE(ec) << ec.message();
  fs::permissions(foreign, kMode755, ec);
  ASSERT_FALSE(ec) << ec.message();
  ASSERT_TRUE(WriteFile(foreign + "/mosquitto.conf", "mine\n"));

  std::string out;
  EXPECT_NE(PrepareDemo(checkout, foreign, &out), 0) << out;
  EXPECT_NE(out.find("refusing " + foreign +
                     ": it is not empty and was not made by prepare-demo"),
            std::string::npos)
      << out;
  EXPECT_EQ(ReadFile(foreign + "/mosquitto.conf"), "mine\n");
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(foreign, ec)) {
    names.push_back(entry.path().filename().string());
  }
  EXPECT_EQ(names, std::vector<std::string>{"mosquitto.conf"});
}

}  // namespace
}  // namespace integration
}  // namespace homepot
