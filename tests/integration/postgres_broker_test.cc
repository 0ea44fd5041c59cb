// The real mosquitto with the plugin's registry on PostgreSQL
// (plugin_opt_db_url): logins from it, changes in force as their
// notification arrives, and a database that goes away and comes back while
// the broker keeps serving.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "database.h"
#include "harness.h"
#include "pg.h"
#include "postgres.h"

namespace homepot {
namespace integration {
namespace {

using Clock = std::chrono::steady_clock;

constexpr const char* kSensorToken = "devices/sensor-001/notifications";

int64_t MsSince(Clock::time_point start) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() -
                                                               start)
      .count();
}

// The parent of process `pid` (from /proc), or -1.
int ParentPid(int pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("PPid:", 0) == 0) return std::atoi(line.c_str() + 5);
  }
  return -1;
}

// Every server process of a cluster (its postmaster, found as the parent of
// `backend_pid`, and the postmaster's children) stopped with SIGSTOP for
// the guard's lifetime: a database that stalls instead of refusing.
class StalledCluster {
 public:
  explicit StalledCluster(int backend_pid) {
    const int postmaster = ParentPid(backend_pid);
    if (postmaster <= 1) return;
    std::vector<int> pids = {postmaster};
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator("/proc", ec)) {
      const int pid = std::atoi(entry.path().filename().c_str());
      if (pid > 0 && ParentPid(pid) == postmaster) pids.push_back(pid);
    }
    for (int pid : pids) {
      if (kill(pid, SIGSTOP) == 0) stopped_.push_back(pid);
    }
    ok_ = stopped_.size() == pids.size() && pids.size() > 1;
  }
  ~StalledCluster() {
    for (auto it = stopped_.rbegin(); it != stopped_.rend(); ++it) {
      kill(*it, SIGCONT);
    }
  }
  bool ok() const { return ok_; }

 private:
  std::vector<int> stopped_;
  bool ok_ = false;
};

// The broker of BrokerTest, its registry in a throwaway PostgreSQL cluster
// (the fixture's SQLite file stays unused).
class PostgresBrokerTest : public BrokerTest {
 protected:
  void SetUp() override {
    ASSERT_TRUE(cluster_.Start());
    ASSERT_TRUE(cluster_.CreateRegistry("registry"));
    ASSERT_TRUE(Reconnect());
    for (const auto& [id, type, password] :
         {std::tuple{"homepot", "backend", "backend-pass"},
          std::tuple{"sensor-001", "iot_sensor", "sensor-pass"},
          std::tuple{"monitor", "unknown", "monitor-pass"}}) {
      ASSERT_TRUE(
          Sql("INSERT INTO devices (device_id, device_type, "
              "password_hash) VALUES ($1, $2, $3)",
              {id, type, test::EncodedHash(password)}));
    }
    ASSERT_TRUE(
        Sql("INSERT INTO acl_rules (device_id, topic_filter, access) VALUES "
            "('homepot', 'devices/+/notifications', 'write'), "
            "('monitor', $1, 'read')",
            {kStatsTopic}));
  }
  // The broker goes first: its last flush finds the database still there.
  void TearDown() override { broker_.Stop(); }

  // A new connection for the test's own SQL (after a restart, too).
  testing::AssertionResult Reconnect() {
    conn_.reset();
    Result<pg::Connection> conn =
        pg::Connection::Open(cluster_.Url("registry"));
    if (!conn.ok()) {
      return testing::AssertionFailure() << conn.status().message();
    }
    conn_.emplace(std::move(*conn));
    return testing::AssertionSuccess();
  }

  testing::AssertionResult Sql(const std::string& sql,
                               const pg::Params& params = {}) {
    Result<pg::Rows> rows = conn_->Run(sql, params);
    if (!rows.ok()) {
      return testing::AssertionFailure() << rows.status().message();
    }
    return testing::AssertionSuccess();
  }

  // The single integer `sql` yields, or -1.
  int64_t Int(const std::string& sql) {
    Result<pg::Rows> rows = conn_->Run(sql);
    if (!rows.ok() || rows->rows() != 1 || rows->IsNull(0, 0)) return -1;
    return rows->Int(0, 0);
  }

  // Starts the broker on the cluster's registry (`url`: Url() by default).
  testing::AssertionResult StartOnPostgres(std::vector<std::string> options,
                                           std::string url = "") {
    BrokerConfig config;
    config.plugin_options = {
        "db_url " + (url.empty() ? cluster_.Url("registry") : url),
        "node_id pg-node"};
    config.plugin_options.insert(config.plugin_options.end(), options.begin(),
                                 options.end());
    return broker_.Start(config);
  }

  std::unique_ptr<Client> Monitor() {
    auto c = ConnectAs("monitor", "monitor-pass");
    if (c && c->Subscribe(kStatsTopic, 0) != 0) {
      ADD_FAILURE() << "monitor cannot subscribe to the stats topic";
      return nullptr;
    }
    return c;
  }

  test::PostgresCluster cluster_;
  std::optional<pg::Connection> conn_;
};

TEST_F(PostgresBrokerTest, ADeviceLogsInFromThePostgresRegistry) {
  ASSERT_TRUE(StartOnPostgres({}));
  EXPECT_EQ(
      CountOccurrences(broker_.Log(), "registry " + cluster_.Url("registry") +
                                          " loaded: 3 devices, 2 acl rules"),
      1)
      << Tail(broker_.Log());
  auto sensor = ConnectAs("sensor-001", "sensor-pass");
  auto backend = ConnectAs("homepot", "backend-pass");
  ASSERT_TRUE(sensor && backend);
  ASSERT_EQ(sensor->Subscribe(kSensorToken, 1), 1);
  ASSERT_EQ(backend->Publish(kSensorToken, kNotification, 1), 0);
  EXPECT_TRUE(sensor->WaitForMessage().has_value());
  Client wrong(broker_.port());
  EXPECT_EQ(wrong.Connect("sensor-001", "nope"), kReasonNotAuthorized);
  Client stranger(broker_.port());
  EXPECT_EQ(stranger.Connect("stranger", "sensor-pass"), kReasonNotAuthorized);
}

TEST_F(PostgresBrokerTest, InitFailsWithOneLineWhenTheDatabaseIsAway) {
  const std::string url = cluster_.UrlWithPassword("registry");
  ASSERT_TRUE(cluster_.Stop());
  BrokerConfig config;
  config.plugin_options = {"db_url " + url};
  int status = 0;
  ASSERT_TRUE(broker_.StartExpectingExit(config, &status));
  const std::string log = broker_.Log();
  const std::vector<std::string> lines =
      LinesContaining(log, "homepot: registry database " + pg::MaskedUrl(url) +
                               ": cannot connect: ");
  EXPECT_EQ(lines.size(), 1u) << log;
  EXPECT_EQ(log.find(cluster_.password()), std::string::npos) << log;
}

// Only the notification can bring the change in: the interval is an hour.
// (No lockout: the probes' refused logins must not lock the device out.)
TEST_F(PostgresBrokerTest, DisablingADeviceDisconnectsItWithinOneSecond) {
  ASSERT_TRUE(
      StartOnPostgres({"reload_interval_ms 3600000", "auth_max_failures 0"}));
  for (int round = 0; round < 3; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    auto sensor = ConnectAs("sensor-001", "sensor-pass");
    ASSERT_TRUE(sensor);
    const Clock::time_point start = Clock::now();
    ASSERT_TRUE(
        Sql("UPDATE devices SET enabled = 0 WHERE device_id = 'sensor-001'"));
    EXPECT_TRUE(sensor->WaitForDisconnect(1000)) << Tail(broker_.Log());
    const int64_t took_ms = MsSince(start);
    std::cout << "disable -> disconnect: " << took_ms << " ms\n";
    EXPECT_LT(took_ms, 1000);
    Client again(broker_.port());
    EXPECT_EQ(again.Connect("sensor-001", "sensor-pass"), kReasonNotAuthorized);
    // Enabled again: the next login works once the change is in.
    ASSERT_TRUE(
        Sql("UPDATE devices SET enabled = 1 WHERE device_id = 'sensor-001'"));
    EXPECT_TRUE(Eventually(
        [&] {
          Client probe(broker_.port());
          return probe.Connect("sensor-001", "sensor-pass") == 0;
        },
        1000, 20));
  }
}

// A device floods refused notifications (each one a row of the delivery
// log): a device disabled while the log is being written is still
// disconnected within seconds, since the registry thread checks the registry
// between the log's bounded chunks, and every refusal reaches
// notification_log once.
TEST_F(PostgresBrokerTest, ADisableDuringARefusalFloodIsInForceWithinSeconds) {
  constexpr int kFlood = 60000;
  ASSERT_TRUE(
      StartOnPostgres({"reload_interval_ms 3600000", "auth_max_failures 0"}));
  auto sensor = ConnectAs("sensor-001", "sensor-pass");
  auto backend = ConnectAs("homepot", "backend-pass");
  ASSERT_TRUE(sensor && backend);
  const std::string rows =
      "SELECT count(*) FROM notification_log WHERE outcome = 'rejected' "
      "AND reason = 'invalid_json' AND publisher = 'homepot' AND topic = '" +
      std::string(kSensorToken) + "' AND node = 'pg-node'";
  // The broker hands the events over once a second: the first refusal goes
  // at once, those of the flood's first second together a second later.
  // A transaction of the registry thread that began half a second into the
  // flood writes those.
  Result<pg::Rows> later =
      conn_->Run("SELECT (clock_timestamp() + interval '500 ms')::text");
  ASSERT_TRUE(later.ok() && later->rows() == 1);
  const std::string writing =
      "SELECT count(*) FROM pg_stat_activity WHERE pid <> pg_backend_pid() "
      "AND query LIKE '%notification_log%' AND xact_start > '" +
      later->Text(0, 0) + "'::timestamptz";

  const Clock::time_point flood_start = Clock::now();
  std::atomic<int> sent{0};
  std::thread flood([&] {
    for (int i = 0; i < kFlood; ++i) {
      if (backend->Publish(kSensorToken, "{not json", 0) != 0) return;
      ++sent;
    }
  });
  const bool written_meanwhile =
      Eventually([&] { return Int(writing) > 0 || Int(rows) > 100; }, 10000, 5);
  const int at_disable = sent.load();
  const Clock::time_point start = Clock::now();
  const bool disabled =
      Sql("UPDATE devices SET enabled = 0 WHERE device_id = 'sensor-001'");
  const bool disconnected = sensor->WaitForDisconnect(5000);
  const int64_t took_ms = MsSince(start);
  flood.join();
  const int64_t flood_ms = MsSince(flood_start);
  ASSERT_EQ(sent.load(), kFlood);
  ASSERT_TRUE(written_meanwhile);
  ASSERT_TRUE(disabled);
  std::cout << "flood of " << kFlood << " refusals sent in " << flood_ms
            << " ms; disabled after " << at_disable << " of them\n"
            << "disable during the flood -> disconnect: " << took_ms << " ms\n";
  EXPECT_TRUE(disconnected) << Tail(broker_.Log());
  EXPECT_LT(took_ms, 5000);

  EXPECT_TRUE(Eventually([&] { return Int(rows) == kFlood; }, 120000, 20))
      << Int(rows) << " of " << kFlood;
  const int64_t all_ms = MsSince(flood_start);
  std::cout << "all " << kFlood << " rows in notification_log " << all_ms
            << " ms after the flood began\n";
  EXPECT_EQ(Int("SELECT count(*) FROM notification_log"), kFlood);
  // A refusal does not end the publisher's session.
  EXPECT_TRUE(backend->IsConnected());
}

// PostgreSQL away for about 10 s: the broker keeps serving from its last
// snapshot, says so once in the log and in the stats, reconnects once it
// is back (a change made then is in force within a second), and the
// device stats of the whole time reach the database exactly once.
TEST_F(PostgresBrokerTest, TheDatabaseAwayKeepsServingAndItsReturnIsInForce) {
  ASSERT_TRUE(StartOnPostgres({"stats_interval 1"}));
  auto sensor = ConnectAs("sensor-001", "sensor-pass");
  auto backend = ConnectAs("homepot", "backend-pass");
  auto monitor = Monitor();
  ASSERT_TRUE(sensor && backend && monitor);
  ASSERT_EQ(sensor->Subscribe(kSensorToken, 1), 1);
  int delivered = 0;
  const auto deliver = [&] {
    ASSERT_EQ(backend->Publish(kSensorToken, kNotification, 1), 0);
    ASSERT_TRUE(sensor->WaitForMessage().has_value());
    ++delivered;
  };
  deliver();

  ASSERT_TRUE(cluster_.Stop());
  const Clock::time_point stopped = Clock::now();
  nlohmann::json last;
  nlohmann::json failing = WaitForStats(
      monitor.get(),
      [](const nlohmann::json& j) {
        return j["registry"]["last_error"].is_string();
      },
      kStatsWaitMs, &last);
  ASSERT_TRUE(failing.is_object()) << last.dump();
  const std::string error = failing["registry"]["last_error"];
  EXPECT_EQ(
      error.rfind("registry database " + cluster_.Url("registry") + ": ", 0),
      0u)
      << error;
  EXPECT_EQ(CountOccurrences(error, "registry database"), 1) << error;
  EXPECT_EQ(error.find('\n'), std::string::npos) << error;
  EXPECT_EQ(failing["registry"]["devices"], 3);

  // About ten seconds of service without the database, paced by the stats
  // (one a second): deliveries, and a new login.
  int rounds = 0;
  while (MsSince(stopped) < 10000) {
    ASSERT_NO_FATAL_FAILURE(deliver());
    nlohmann::json j = NextStats(monitor.get());
    ASSERT_TRUE(j.is_object());
    ASSERT_TRUE(j["registry"]["last_error"].is_string()) << j.dump();
    const std::string now_error = j["registry"]["last_error"];
    EXPECT_EQ(CountOccurrences(now_error, "registry database"), 1) << now_error;
    ++rounds;
  }
  EXPECT_GE(rounds, 5);
  {
    Client late(broker_.port());
    EXPECT_EQ(late.Connect("sensor-001", "sensor-pass"), 0);
  }
  EXPECT_EQ(LinesContaining(broker_.Log(), "keeping generation").size(), 1u)
      << Tail(broker_.Log());

  ASSERT_TRUE(cluster_.Restart());
  ASSERT_TRUE(Reconnect());
  const Clock::time_point start = Clock::now();
  ASSERT_TRUE(
      Sql("UPDATE devices SET enabled = 0 WHERE device_id = 'sensor-001'"));
  EXPECT_TRUE(sensor->WaitForDisconnect(1000)) << Tail(broker_.Log());
  const int64_t took_ms = MsSince(start);
  std::cout << "change after the restart -> disconnect: " << took_ms << " ms\n";
  EXPECT_LT(took_ms, 1000);

  nlohmann::json healthy = WaitForStats(
      monitor.get(),
      [](const nlohmann::json& j) {
        return j["registry"]["last_error"].is_null();
      },
      kStatsWaitMs, &last);
  ASSERT_TRUE(healthy.is_object()) << last.dump();
  EXPECT_EQ(CountOccurrences(broker_.Log(), "readable again"), 1)
      << Tail(broker_.Log());
  EXPECT_EQ(LinesContaining(broker_.Log(), "keeping generation").size(), 1u);

  // Every delivery, counted once, whichever flush wrote it.
  const auto counts_reach_the_deliveries = [&] {
    return Int("SELECT published FROM device_stats WHERE device_id = "
               "'homepot' AND node = 'pg-node'") == delivered &&
           Int("SELECT delivered FROM device_stats WHERE device_id = "
               "'sensor-001' AND node = 'pg-node'") == delivered;
  };
  EXPECT_TRUE(Eventually(counts_reach_the_deliveries, kStatsWaitMs, 100))
      << "published "
      << Int("SELECT published FROM device_stats WHERE device_id = "
             "'homepot'")
      << ", delivered "
      << Int("SELECT delivered FROM device_stats WHERE device_id = "
             "'sensor-001'")
      << ", want " << delivered;
  // A later flush adds nothing: no count went twice.
  ASSERT_TRUE(NextStats(monitor.get()).is_object());
  ASSERT_TRUE(NextStats(monitor.get()).is_object());
  EXPECT_TRUE(counts_reach_the_deliveries());
}

// PostgreSQL stalls (every server process stopped, as a host that hangs or
// a path that drops packets): the registry thread's statement gives up after
// the stall timeout (10 s) and says so in the stats, the broker serves from
// its snapshot, and the stop does not wait for the database.
TEST_F(PostgresBrokerTest, AStalledDatabaseIsReportedAndDoesNotHoldTheStop) {
  ASSERT_TRUE(StartOnPostgres({"stats_interval 1"}));
  auto monitor = Monitor();
  ASSERT_TRUE(monitor);
  StalledCluster stalled(conn_->backend_pid());
  ASSERT_TRUE(stalled.ok());
  const Clock::time_point start = Clock::now();
  nlohmann::json last;
  nlohmann::json failing = WaitForStats(
      monitor.get(),
      [](const nlohmann::json& j) {
        return j["registry"]["last_error"].is_string();
      },
      25000, &last);
  ASSERT_TRUE(failing.is_object()) << last.dump();
  const int64_t took_ms = MsSince(start);
  std::cout << "stall -> registry.last_error: " << took_ms << " ms\n";
  const std::string error = failing["registry"]["last_error"];
  EXPECT_EQ(
      error.rfind("registry database " + cluster_.Url("registry") + ": ", 0),
      0u)
      << error;
  const std::string reason = ": no answer from the server for 10 s";
  EXPECT_TRUE(error.size() > reason.size() &&
              error.substr(error.size() - reason.size()) == reason)
      << error;
  EXPECT_GE(took_ms, 9000);
  {
    Client late(broker_.port());
    EXPECT_EQ(late.Connect("sensor-001", "sensor-pass"), 0);
  }
  const Clock::time_point stop = Clock::now();
  const int status = broker_.Stop();
  const int64_t stop_ms = MsSince(stop);
  std::cout << "SIGTERM -> exit, the database stalled: " << stop_ms << " ms\n";
  EXPECT_TRUE(WIFEXITED(status)) << status;
  EXPECT_LT(stop_ms, 4000);
}

// The stop comes while the registry thread waits on a stalled statement
// (it polls every 100 ms; two stats intervals pass first): the statement is
// interrupted and the broker exits at once.
TEST_F(PostgresBrokerTest, AStopDuringAStalledStatementIsQuick) {
  ASSERT_TRUE(StartOnPostgres({"stats_interval 1", "reload_interval_ms 100"}));
  auto monitor = Monitor();
  ASSERT_TRUE(monitor);
  StalledCluster stalled(conn_->backend_pid());
  ASSERT_TRUE(stalled.ok());
  ASSERT_TRUE(NextStats(monitor.get()).is_object());
  nlohmann::json j = NextStats(monitor.get());
  ASSERT_TRUE(j.is_object());
  EXPECT_TRUE(j["registry"]["last_error"].is_null()) << j.dump();
  const Clock::time_point stop = Clock::now();
  const int status = broker_.Stop();
  const int64_t stop_ms = MsSince(stop);
  std::cout << "SIGTERM -> exit, a statement stalled: " << stop_ms << " ms\n";
  EXPECT_TRUE(WIFEXITED(status)) << status;
  EXPECT_LT(stop_ms, 4000);
}

// A stop while a pass writes the delivery log, on a database that answers:
// the pass finishes and every pending event is written. The test holds the
// pass: a trigger makes each INSERT into notification_log wait (up to 30 s)
// until the test opens a gate, which it does 300 ms after Mosquitto logged
// that it is terminating (the plugin stops right after), well within
// RegistryWorker::kShutdownStallTimeoutMs. The pass holds the first event
// only, so it ends at once when let go, on a loaded machine too; the others
// wait behind it. A stop that interrupted the pass at once would close the
// connection and write none of them.
TEST_F(PostgresBrokerTest, AStopDuringAFlushPassWritesEverythingPending) {
  ASSERT_TRUE(Sql("CREATE TABLE gate (open boolean NOT NULL)"));
  ASSERT_TRUE(Sql("INSERT INTO gate VALUES (false)"));
  ASSERT_TRUE(
      Sql("CREATE FUNCTION wait_for_gate() RETURNS trigger LANGUAGE plpgsql "
          "AS $$ BEGIN FOR i IN 1..3000 LOOP EXIT WHEN (SELECT open FROM "
          "gate); PERFORM pg_sleep(0.01); END LOOP; RETURN NULL; END $$"));
  ASSERT_TRUE(
      Sql("CREATE TRIGGER wait_for_gate BEFORE INSERT ON notification_log "
          "FOR EACH STATEMENT EXECUTE FUNCTION wait_for_gate()"));
  Result<pg::Connection> opener =
      pg::Connection::Open(cluster_.Url("registry"));
  ASSERT_TRUE(opener.ok()) << opener.status().message();
  ASSERT_TRUE(StartOnPostgres({}));
  auto backend = ConnectAs("homepot", "backend-pass");
  ASSERT_TRUE(backend);
  const auto publish = [&](int i) {
    return backend->Publish(kSensorToken,
                            NotificationWithId("stop-" + std::to_string(i)), 1);
  };
  ASSERT_EQ(publish(0), 0);
  // The registry thread's pass waits at the gate.
  ASSERT_TRUE(Eventually(
      [&] {
        return Int("SELECT count(*) FROM pg_stat_activity WHERE "
                   "wait_event = 'PgSleep' AND query LIKE "
                   "'INSERT INTO notification_log%'") == 1;
      },
      kStatsWaitMs, 10));
  // More than a chunk (DeliveryLogWriter::kMaxFlushEvents) waits behind it.
  constexpr int kSent = 3000;
  for (int i = 1; i < kSent; ++i) ASSERT_EQ(publish(i), 0);
  std::thread open_gate([&] {
    EXPECT_TRUE(broker_.WaitForLog("terminating", kStatsWaitMs));
    SleepMs(300);
    Result<pg::Rows> opened = opener->Run("UPDATE gate SET open = true");
    EXPECT_TRUE(opened.ok()) << opened.status().message();
  });
  const int status = broker_.Stop();
  open_gate.join();
  EXPECT_TRUE(WIFEXITED(status)) << status;
  EXPECT_EQ(Int("SELECT count(*) FROM notification_log WHERE message_id "
                "LIKE 'stop-%'"),
            kSent)
      << Tail(broker_.Log());
}

// COMMITs whose answers are lost: the database waits for a synchronous
// standby that never answers, the plugin's stall timeout gives up on the
// COMMIT. Once the standby setting is gone the commits complete; the retries
// find them and write nothing again, the events that came meanwhile are
// written after, once each.
TEST_F(PostgresBrokerTest, LostCommitsAreWrittenOnce) {
  Result<Database> su =
      Database::OpenPostgres(cluster_.SuperuserConninfo("registry"));
  ASSERT_TRUE(su.ok()) << su.status().message();
  ASSERT_TRUE(
      su->Exec("ALTER DATABASE registry SET synchronous_commit = on").ok());
  ASSERT_TRUE(StartOnPostgres({"stats_interval 1", "reload_interval_ms 100"}));
  auto sensor = ConnectAs("sensor-001", "sensor-pass");
  ASSERT_TRUE(sensor);
  ASSERT_EQ(sensor->Subscribe(kSensorToken, 1), 1);
  auto backend = ConnectAs("homepot", "backend-pass");
  ASSERT_TRUE(backend);
  const auto publish = [&](const std::string& prefix) {
    for (int i = 0; i < 5; ++i) {
      ASSERT_EQ(
          backend->Publish(kSensorToken,
                           NotificationWithId(prefix + std::to_string(i)), 1),
          0);
    }
  };
  const auto wait_for = [&](const std::string& sql, int64_t want) {
    const Clock::time_point start = Clock::now();
    int64_t n = Int(sql);
    while (n != want && MsSince(start) < 40000) {
      SleepMs(50);
      n = Int(sql);
    }
    return n;
  };
  publish("a-");
  ASSERT_EQ(wait_for("SELECT count(*) FROM notification_log", 5), 5);
  ASSERT_EQ(wait_for("SELECT sessions FROM device_stats WHERE device_id = "
                     "'sensor-001' AND node = 'pg-node'",
                     1),
            1);

  ASSERT_TRUE(
      su->Exec("ALTER SYSTEM SET synchronous_standby_names = 'nobody'").ok());
  ASSERT_TRUE(su->Exec("SELECT pg_reload_conf()").ok());
  publish("b-");
  ASSERT_TRUE(broker_.WaitForLog("flush delayed", 40000))
      << Tail(broker_.Log());
  publish("c-");
  ASSERT_TRUE(su->Exec("ALTER SYSTEM RESET synchronous_standby_names").ok());
  ASSERT_TRUE(su->Exec("SELECT pg_reload_conf()").ok());
  EXPECT_EQ(wait_for("SELECT count(*) FROM notification_log", 15), 15)
      << Tail(broker_.Log());
  EXPECT_EQ(wait_for("SELECT published FROM device_stats WHERE device_id = "
                     "'homepot' AND node = 'pg-node'",
                     15),
            15)
      << Tail(broker_.Log());
  // Each writer's first write after the failures is the retry of its lost
  // chunk: once both have written again, a second copy would be there.
  ASSERT_TRUE(broker_.WaitForLog("device_stats flush succeeded again", 40000))
      << Tail(broker_.Log());
  ASSERT_TRUE(broker_.WaitForLog("delivery log flush succeeded again", 40000))
      << Tail(broker_.Log());
  EXPECT_EQ(Int("SELECT count(DISTINCT message_id) FROM notification_log"), 15);
  EXPECT_EQ(Int("SELECT count(*) FROM notification_log"), 15);
  EXPECT_EQ(Int("SELECT published FROM device_stats WHERE device_id = "
                "'homepot' AND node = 'pg-node'"),
            15);
}

TEST_F(PostgresBrokerTest, ThePasswordOfTheUrlIsNeverLogged) {
  const std::string url = cluster_.UrlWithPassword("registry");
  ASSERT_TRUE(StartOnPostgres({"stats_interval 1"}, url));
  auto monitor = Monitor();
  ASSERT_TRUE(monitor);
  ASSERT_TRUE(cluster_.Stop());
  EXPECT_TRUE(broker_.WaitForLog("keeping generation", kStatsWaitMs));
  nlohmann::json failing = WaitForStats(
      monitor.get(),
      [](const nlohmann::json& j) {
        return j["registry"]["last_error"].is_string();
      },
      kStatsWaitMs);
  ASSERT_TRUE(failing.is_object());
  const std::string error = failing["registry"]["last_error"];
  EXPECT_EQ(error.find(cluster_.password()), std::string::npos) << error;
  EXPECT_NE(error.find(pg::MaskedUrl(url)), std::string::npos) << error;
  ASSERT_TRUE(cluster_.Restart());
  EXPECT_TRUE(broker_.WaitForLog("readable again", kStatsWaitMs));
  broker_.Stop();
  const std::string log = broker_.Log();
  EXPECT_EQ(log.find(cluster_.password()), std::string::npos) << log;
  EXPECT_NE(log.find("registry " + pg::MaskedUrl(url) + " loaded"),
            std::string::npos)
      << log;
}

}  // namespace
}  // namespace integration
}  // namespace homepot
