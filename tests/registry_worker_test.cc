#include "registry_worker.h"

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <functional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "registry.h"
#include "testing.h"

namespace homepot {
namespace {

using std::chrono::milliseconds;
using std::chrono::steady_clock;

constexpr int kFastInterval = 50;               // ms
constexpr auto kPatience = milliseconds(5000);  // upper bound for any wait
// The delivery log as the plugin keeps it by default.
constexpr DeliveryLogRetention kRetention{100000, 30};
// The node the workers write as, unless a test says otherwise.
constexpr const char* kNode = "node-a";

class RegistryWorkerTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(dir_.ok()); }
  // The worker stops before the directory goes.
  void TearDown() override { worker_.reset(); }

  // A registry at `path` with one enabled device, sensor-001.
  void CreateRegistry(const std::string& path) {
    ASSERT_TRUE(test::CreateRegistryFile(
        path,
        "INSERT INTO devices (device_id, device_type) VALUES "
        "('sensor-001', 'iot_sensor')"));
  }

  std::shared_ptr<const Snapshot> StartWorker(int interval_ms) {
    worker_ =
        std::make_unique<RegistryWorker>(path_, kNode, interval_ms, kRetention);
    auto r = worker_->Start();
    EXPECT_TRUE(r.ok()) << r.status().message();
    current_ = r.ok() ? *r : nullptr;
    return current_;
  }

  // Polls TakeUpdate until one arrives or `patience` passes.
  bool WaitForUpdate(RegistryUpdate* update,
                     milliseconds patience = kPatience) {
    auto deadline = steady_clock::now() + patience;
    while (steady_clock::now() < deadline) {
      std::shared_ptr<const Snapshot> retired = current_;
      if (worker_->TakeUpdate(update, &retired)) {
        EXPECT_EQ(retired, nullptr)
            << "the retired snapshot goes to the worker";
        current_ = update->snapshot;
        return true;
      }
      std::this_thread::sleep_for(milliseconds(5));
    }
    return false;
  }

  // Waits (up to kPatience) until `done` holds.
  static bool WaitFor(const std::function<bool()>& done) {
    auto deadline = steady_clock::now() + kPatience;
    while (!done()) {
      if (steady_clock::now() >= deadline) return false;
      std::this_thread::sleep_for(milliseconds(5));
    }
    return true;
  }

  // Waits until `n` polls have started and finished after this call.
  bool WaitForPolls(uint64_t n) {
    // A poll under way now may have looked before the caller's change.
    const uint64_t target = worker_->polls() + 1 + n;
    return WaitFor([&] { return worker_->polls() >= target; });
  }

  // Waits until a log line containing `text` arrives; returns every line
  // seen until then, and until `more_polls` further polls have finished (to
  // catch repeats).
  std::vector<std::string> WaitForLog(const std::string& text,
                                      uint64_t more_polls) {
    std::vector<std::string> all;
    auto take = [&] {
      std::vector<std::string> some;
      if (worker_->TakeLogs(&some)) {
        all.insert(all.end(), some.begin(), some.end());
      }
    };
    EXPECT_TRUE(WaitFor([&] {
      take();
      return Count(all, text) > 0;
    })) << text;
    if (more_polls > 0) {
      EXPECT_TRUE(WaitForPolls(more_polls));
    }
    EXPECT_TRUE(WaitFor([&] {
      std::vector<std::string> some;
      if (!worker_->TakeLogs(&some)) return false;
      all.insert(all.end(), some.begin(), some.end());
      return true;
    }));
    return all;
  }

  static int Count(const std::vector<std::string>& lines,
                   const std::string& text) {
    return static_cast<int>(
        std::count_if(lines.begin(), lines.end(), [&](const std::string& l) {
          return l.find(text) != std::string::npos;
        }));
  }

  std::string LastError() {
    std::string error;
    auto deadline = steady_clock::now() + kPatience;
    while (!worker_->LastError(&error) && steady_clock::now() < deadline) {
      std::this_thread::sleep_for(milliseconds(1));
    }
    return error;
  }

  // Replaces the registry file the way a restored backup does: a complete
  // new file renamed over the old one.
  void ReplaceWithNewRegistry(const std::string& extra_sql) {
    std::string tmp = dir_.Path("restore.db");
    CreateRegistry(tmp);
    if (!extra_sql.empty()) {
      ASSERT_TRUE(test::ExecSqlOn(tmp, extra_sql));
    }
    ASSERT_EQ(std::rename(tmp.c_str(), path_.c_str()), 0);
  }

  void RemoveRegistryFiles() {
    for (const char* suffix : {"", "-wal", "-shm"}) {
      std::remove((path_ + suffix).c_str());
    }
  }

  test::TempDir dir_{"homepot-worker-test"};
  std::string path_ = dir_.Path("registry.db");
  std::unique_ptr<RegistryWorker> worker_;
  std::shared_ptr<const Snapshot> current_;
};

TEST_F(RegistryWorkerTest, StartLoadsTheRegistry) {
  CreateRegistry(path_);
  auto s = StartWorker(kFastInterval);
  ASSERT_NE(s, nullptr);
  ASSERT_EQ(s->device_count(), 1u);
  EXPECT_NE(s->Find("sensor-001"), nullptr);
  EXPECT_EQ(s->Find("sensor-001")->max_payload, 10240u);
  EXPECT_FALSE(worker_->HasUpdate());
  EXPECT_EQ(LastError(), "");
}

TEST_F(RegistryWorkerTest, StartLogsLoadWarnings) {
  CreateRegistry(path_);
  EXPECT_TRUE(test::ExecSqlOn(
      path_,
      "INSERT INTO acl_rules (device_id, topic_filter, access) VALUES "
      "('sensor-001', 'a/#/b', 'read')"));
  StartWorker(3600000);
  ASSERT_TRUE(worker_->HasLogs());
  std::vector<std::string> logs;
  ASSERT_TRUE(worker_->TakeLogs(&logs));
  ASSERT_EQ(logs.size(), 1u);
  EXPECT_EQ(logs[0], "registry: skipped invalid acl rule 'a/#/b'");
  EXPECT_FALSE(worker_->HasLogs());
}

TEST_F(RegistryWorkerTest, ChangeFromAnotherConnectionShowsUp) {
  CreateRegistry(path_);
  auto first = StartWorker(kFastInterval);
  ASSERT_NE(first, nullptr);
  EXPECT_TRUE(test::ExecSqlOn(
      path_,
      "INSERT INTO devices (device_id, device_type) VALUES ('sensor-002', "
      "'gateway')"));
  // The next poll notices it.
  ASSERT_TRUE(WaitForPolls(1));
  EXPECT_TRUE(worker_->HasUpdate());
  RegistryUpdate update;
  ASSERT_TRUE(WaitForUpdate(&update));
  ASSERT_NE(update.snapshot, nullptr);
  EXPECT_GT(update.snapshot->generation(), first->generation());
  EXPECT_EQ(update.snapshot->device_count(), 2u);
  ASSERT_NE(update.snapshot->Find("sensor-002"), nullptr);
  EXPECT_EQ(update.snapshot->Find("sensor-002")->max_payload, 102400u);
  EXPECT_TRUE(update.revoked.empty());
  EXPECT_GE(update.load_ms, 0);
  // Brought forward by the change feed, sharing what did not change.
  EXPECT_FALSE(update.full);
  EXPECT_EQ(update.snapshot->Find("sensor-001"), first->Find("sensor-001"));
  EXPECT_FALSE(worker_->HasUpdate());

  // Nothing more without another change, however many polls.
  ASSERT_TRUE(WaitForPolls(5));
  EXPECT_FALSE(worker_->HasUpdate());
}

TEST_F(RegistryWorkerTest, DisablingADeviceRevokesIt) {
  CreateRegistry(path_);
  EXPECT_TRUE(test::ExecSqlOn(
      path_, "INSERT INTO devices (device_id) VALUES ('sensor-002')"));
  StartWorker(kFastInterval);
  EXPECT_TRUE(test::ExecSqlOn(
      path_, "UPDATE devices SET enabled = 0 WHERE device_id = 'sensor-001'"));
  RegistryUpdate update;
  ASSERT_TRUE(WaitForUpdate(&update));
  EXPECT_EQ(update.revoked, std::vector<std::string>{"sensor-001"});
  EXPECT_FALSE(update.snapshot->Find("sensor-001")->enabled);

  EXPECT_TRUE(test::ExecSqlOn(
      path_, "DELETE FROM devices WHERE device_id = 'sensor-002'"));
  ASSERT_TRUE(WaitForUpdate(&update));
  EXPECT_EQ(update.revoked, std::vector<std::string>{"sensor-002"});
}

TEST_F(RegistryWorkerTest, RevocationsMergeWhileAnUpdateWaits) {
  CreateRegistry(path_);
  EXPECT_TRUE(test::ExecSqlOn(
      path_, "INSERT INTO devices (device_id) VALUES ('sensor-002')"));
  StartWorker(kFastInterval);
  EXPECT_TRUE(test::ExecSqlOn(
      path_, "UPDATE devices SET enabled = 0 WHERE device_id = 'sensor-001'"));
  // Wait until the worker has built that update, but do not take it.
  ASSERT_TRUE(WaitFor([&] { return worker_->HasUpdate(); }));
  EXPECT_TRUE(test::ExecSqlOn(
      path_, "DELETE FROM devices WHERE device_id = 'sensor-002'"));
  // The next poll builds the second update on top.
  ASSERT_TRUE(WaitForPolls(1));
  RegistryUpdate update;
  ASSERT_TRUE(WaitForUpdate(&update));
  EXPECT_EQ(update.snapshot->Find("sensor-002"), nullptr);
  // Nothing the broker has not seen is lost: both revocations, once each.
  EXPECT_EQ(update.revoked,
            (std::vector<std::string>{"sensor-001", "sensor-002"}));
}

TEST_F(RegistryWorkerTest, RequestReloadReloadsAtOnce) {
  CreateRegistry(path_);
  auto first = StartWorker(3600000);  // effectively never on its own
  EXPECT_TRUE(test::ExecSqlOn(
      path_, "INSERT INTO devices (device_id) VALUES ('sensor-002')"));
  EXPECT_FALSE(worker_->HasUpdate());
  worker_->RequestReload();
  RegistryUpdate update;
  ASSERT_TRUE(WaitForUpdate(&update));
  EXPECT_NE(update.snapshot->Find("sensor-002"), nullptr);
  // That was its first poll: none before the interval.
  ASSERT_TRUE(WaitFor([&] { return worker_->polls() >= 1; }));
  EXPECT_EQ(worker_->polls(), 1u);

  // A forced reload happens even when nothing changed.
  worker_->RequestReload();
  ASSERT_TRUE(WaitForUpdate(&update));
  EXPECT_EQ(update.snapshot->device_count(), 2u);
  EXPECT_TRUE(update.revoked.empty());
}

TEST_F(RegistryWorkerTest, MissingFileKeepsTheRegistryAndLogsOnce) {
  CreateRegistry(path_);
  StartWorker(kFastInterval);
  RemoveRegistryFiles();
  // Many polls happen while we watch: the error is still logged once.
  std::vector<std::string> logs = WaitForLog("missing", /*more_polls=*/20);
  EXPECT_EQ(Count(logs, "missing"), 1) << ::testing::PrintToString(logs);
  EXPECT_EQ(Count(logs, path_), Count(logs, "registry"))
      << "every line names the file";
  EXPECT_FALSE(worker_->HasUpdate());
  RegistryUpdate update;
  std::shared_ptr<const Snapshot> retired = current_;
  EXPECT_FALSE(worker_->TakeUpdate(&update, &retired));
  EXPECT_EQ(retired, current_) << "nothing handed over without an update";
  std::string error = LastError();
  EXPECT_NE(error, "");
  EXPECT_NE(error.find("missing"), std::string::npos) << error;
  EXPECT_NE(error.find(path_), std::string::npos) << error;
}

TEST_F(RegistryWorkerTest, GarbageRenamedOverTheFileIsLoggedOnce) {
  CreateRegistry(path_);
  StartWorker(kFastInterval);
  std::string tmp = dir_.Path("garbage");
  {
    std::ofstream out(tmp, std::ios::binary);
    for (int i = 0; i < 512; ++i) out << "this is not an SQLite database. ";
  }
  ASSERT_EQ(std::rename(tmp.c_str(), path_.c_str()), 0);
  std::vector<std::string> logs =
      WaitForLog("not a database", /*more_polls=*/20);
  EXPECT_EQ(Count(logs, "not a database"), 1) << ::testing::PrintToString(logs);
  EXPECT_FALSE(worker_->HasUpdate());
  EXPECT_NE(LastError(), "");
}

// The open connection fails first ("database disk image is malformed"), a
// fresh one differently ("file is not a database"): the reloader judges the
// file through a fresh connection before reporting, so one fault logs one
// line (an error is logged once).
TEST_F(RegistryWorkerTest, GarbageWrittenOverTheFileInPlaceIsLoggedOnce) {
  CreateRegistry(path_);
  StartWorker(kFastInterval);
  {
    // Same inode, new contents.
    std::ofstream out(path_, std::ios::binary | std::ios::trunc);
    for (int i = 0; i < 512; ++i) out << "this is not an SQLite database. ";
  }
  std::vector<std::string> logs = WaitForLog("registry", /*more_polls=*/20);
  EXPECT_EQ(Count(logs, "registry"), 1) << ::testing::PrintToString(logs);
  EXPECT_FALSE(worker_->HasUpdate());
  EXPECT_NE(LastError(), "");
}

TEST_F(RegistryWorkerTest, RestoredFileIsPickedUp) {
  CreateRegistry(path_);
  StartWorker(kFastInterval);
  RemoveRegistryFiles();
  WaitForLog("missing", /*more_polls=*/0);
  ASSERT_NE(LastError(), "");

  ReplaceWithNewRegistry(
      "INSERT INTO devices (device_id) VALUES ('restored-1')");
  RegistryUpdate update;
  ASSERT_TRUE(WaitForUpdate(&update));
  EXPECT_NE(update.snapshot->Find("restored-1"), nullptr);
  EXPECT_NE(update.snapshot->Find("sensor-001"), nullptr);
  EXPECT_EQ(LastError(), "");
  std::vector<std::string> logs =
      WaitForLog("readable again", /*more_polls=*/0);
  EXPECT_EQ(Count(logs, "readable again"), 1) << ::testing::PrintToString(logs);
}

TEST_F(RegistryWorkerTest, RecoversFromGarbageWhenARegistryIsRenamedBack) {
  CreateRegistry(path_);
  StartWorker(kFastInterval);
  std::string tmp = dir_.Path("garbage");
  {
    std::ofstream out(tmp, std::ios::binary);
    for (int i = 0; i < 512; ++i) out << "garbage garbage garbage garbage ";
  }
  ASSERT_EQ(std::rename(tmp.c_str(), path_.c_str()), 0);
  WaitForLog("not a database", /*more_polls=*/0);
  ASSERT_NE(LastError(), "");

  ReplaceWithNewRegistry("DELETE FROM devices");
  RegistryUpdate update;
  ASSERT_TRUE(WaitForUpdate(&update));
  EXPECT_TRUE(update.snapshot->device_count() == 0);
  EXPECT_EQ(update.revoked, std::vector<std::string>{"sensor-001"});
  EXPECT_EQ(LastError(), "");
}

TEST_F(RegistryWorkerTest, ReplacedFileIsReloadedEvenAtTheSameGeneration) {
  CreateRegistry(path_);
  auto first = StartWorker(kFastInterval);
  // Same generation (1 insert after the schema), different contents.
  std::string tmp = dir_.Path("other.db");
  ASSERT_TRUE(test::CreateRegistryFile(
      tmp, "INSERT INTO devices (device_id) VALUES ('other-001')"));
  ASSERT_EQ(std::rename(tmp.c_str(), path_.c_str()), 0);
  RegistryUpdate update;
  ASSERT_TRUE(WaitForUpdate(&update));
  EXPECT_EQ(update.snapshot->generation(), first->generation());
  EXPECT_TRUE(update.full);  // another file: read in full
  EXPECT_NE(update.snapshot->Find("other-001"), nullptr);
  EXPECT_EQ(update.snapshot->Find("sensor-001"), nullptr);
  EXPECT_EQ(update.revoked, std::vector<std::string>{"sensor-001"});
}

TEST_F(RegistryWorkerTest, StartFailsOnANonexistentFile) {
  worker_ =
      std::make_unique<RegistryWorker>(path_, kNode, kFastInterval, kRetention);
  auto r = worker_->Start();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), "registry file " + path_ + " does not exist");
  // Start must not have created the file.
  EXPECT_NE(access(path_.c_str(), F_OK), 0);
}

TEST_F(RegistryWorkerTest, StartFailsOnAFileWithoutTheSchema) {
  ASSERT_TRUE(test::WriteFile(path_, ""));
  ASSERT_TRUE(test::ExecSqlOn(path_, "CREATE TABLE unrelated (x INTEGER)"));
  worker_ =
      std::make_unique<RegistryWorker>(path_, kNode, kFastInterval, kRetention);
  auto r = worker_->Start();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(),
            "registry file " + path_ +
                ": no HOMEPOT schema (user_version 0); run homepot-admin init");
}

// A registry at schema version 1 (tests/fixtures/schema_v1.sql) with one
// device.
void CreateVersionOneRegistry(const std::string& path) {
  ASSERT_TRUE(test::CreateOldRegistryFile(
      1, path, "INSERT INTO devices (device_id) VALUES ('sensor-001')"));
}

constexpr const char* kVersionOneMessage =
    ": schema version 1 is older than this plugin understands (4); run "
    "homepot-admin init to migrate it";

TEST_F(RegistryWorkerTest, StartFailsOnAVersionOneFile) {
  CreateVersionOneRegistry(path_);
  worker_ =
      std::make_unique<RegistryWorker>(path_, kNode, kFastInterval, kRetention);
  auto r = worker_->Start();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(),
            "registry file " + path_ + kVersionOneMessage);
}

// A version-1 file restored over the registry is refused; the last snapshot
// stays in force and LastError says what to run.
TEST_F(RegistryWorkerTest, VersionOneFileRenamedOverTheRegistryIsRefused) {
  CreateRegistry(path_);
  StartWorker(kFastInterval);
  const std::string tmp = dir_.Path("v1.db");
  CreateVersionOneRegistry(tmp);
  ASSERT_TRUE(test::ExecSqlOn(
      tmp, "INSERT INTO devices (device_id) VALUES ('other-001')"));
  ASSERT_EQ(std::rename(tmp.c_str(), path_.c_str()), 0);
  const std::string expected = "registry file " + path_ + kVersionOneMessage;
  std::vector<std::string> logs = WaitForLog("homepot-admin init", 20);
  EXPECT_EQ(Count(logs, expected), 1) << ::testing::PrintToString(logs);
  EXPECT_TRUE(WaitFor([&] { return LastError() == expected; })) << LastError();
  EXPECT_FALSE(worker_->HasUpdate());
  ASSERT_NE(current_, nullptr);
  EXPECT_NE(current_->Find("sensor-001"), nullptr);
}

TEST_F(RegistryWorkerTest, StartFailsOnAnEmptyFile) {
  { std::ofstream out(path_); }
  worker_ =
      std::make_unique<RegistryWorker>(path_, kNode, kFastInterval, kRetention);
  auto r = worker_->Start();
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find(path_), std::string::npos)
      << r.status().message();
}

TEST_F(RegistryWorkerTest, StartFailsOnAGarbageFile) {
  {
    std::ofstream out(path_, std::ios::binary);
    for (int i = 0; i < 512; ++i) out << "not sqlite at all, not at all. ";
  }
  worker_ =
      std::make_unique<RegistryWorker>(path_, kNode, kFastInterval, kRetention);
  auto r = worker_->Start();
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find(path_), std::string::npos)
      << r.status().message();
}

TEST_F(RegistryWorkerTest, StopsPromptlyWithALongInterval) {
  CreateRegistry(path_);
  StartWorker(3600000);
  auto start = steady_clock::now();
  worker_.reset();
  EXPECT_LT(
      std::chrono::duration_cast<milliseconds>(steady_clock::now() - start)
          .count(),
      1000);
}

}  // namespace
}  // namespace homepot

namespace homepot {
namespace {

// One column of sensor-001's device_stats row, "" when there is none.
std::string DeviceStat(const std::string& path, const std::string& column) {
  sqlite3* db = nullptr;
  std::string value;
  if (sqlite3_open(path.c_str(), &db) == SQLITE_OK) {
    sqlite3_stmt* st = nullptr;
    std::string sql = "SELECT " + column +
                      " FROM device_stats WHERE device_id = 'sensor-001' "
                      "AND node = '" +
                      kNode + "'";
    sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr);
    if (st && sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0)) {
      value = reinterpret_cast<const char*>(sqlite3_column_text(st, 0));
    }
    sqlite3_finalize(st);
  }
  sqlite3_close(db);
  return value;
}

std::vector<DeviceStatsDelta> Deltas(int64_t last_delivery_ms) {
  DeviceCounters c;
  c.published = 2;
  c.delivered = 3;
  c.expired = 4;
  c.acked = 1;
  c.last_delivery_ms = last_delivery_ms;
  return {{"sensor-001", c}, {"removed-device", c}};
}

// Submitted deltas are added to device_stats on the worker's next pass,
// without a reload, for registered devices only.
TEST_F(RegistryWorkerTest, SubmittedStatsAreAddedToDeviceStats) {
  CreateRegistry(path_);
  StartWorker(3600000);
  const int64_t at = 1795000000123;
  std::vector<DeviceStatsDelta> batch = Deltas(at);
  ASSERT_TRUE(WaitFor([&] { return worker_->SubmitStats(&batch); }));
  EXPECT_TRUE(batch.empty());
  ASSERT_TRUE(WaitFor([&] { return !DeviceStat(path_, "delivered").empty(); }));
  EXPECT_EQ(DeviceStat(path_, "delivered"), "3");
  EXPECT_EQ(DeviceStat(path_, "published"), "2");
  EXPECT_EQ(DeviceStat(path_, "expired"), "4");
  EXPECT_EQ(DeviceStat(path_, "acked"), "1");
  EXPECT_EQ(DeviceStat(path_, "last_delivery"), StampString(at));
  EXPECT_EQ(worker_->last_flush_rows(), 2);
  // Our own write is not a change of the registry.
  EXPECT_FALSE(worker_->HasUpdate());
  batch = Deltas(at + 1);
  ASSERT_TRUE(WaitFor([&] { return worker_->SubmitStats(&batch); }));
  ASSERT_TRUE(WaitFor([&] { return DeviceStat(path_, "delivered") == "6"; }));
  EXPECT_EQ(DeviceStat(path_, "expired"), "8");
  EXPECT_EQ(DeviceStat(path_, "acked"), "2");
  EXPECT_EQ(DeviceStat(path_, "last_delivery"), StampString(at + 1));
}

// Shutdown writes what is pending on the calling thread.
TEST_F(RegistryWorkerTest, ShutdownWritesPendingStats) {
  CreateRegistry(path_);
  StartWorker(3600000);
  {
    // Held by another connection: the worker's pass cannot write.
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(path_.c_str(), &db), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(db, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr),
              SQLITE_OK);
    std::vector<DeviceStatsDelta> batch = Deltas(1795000000123);
    ASSERT_TRUE(WaitFor([&] { return worker_->SubmitStats(&batch); }));
    std::vector<std::string> logs = WaitForLog("flush delayed", 0);
    EXPECT_EQ(Count(logs, "device_stats flush delayed"), 1)
        << ::testing::PrintToString(logs);
    sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
    sqlite3_close(db);
  }
  worker_->Shutdown();
  EXPECT_EQ(DeviceStat(path_, "delivered"), "3");
}

// The first column of the rows of `sql` on the file, NULL as "NULL".
std::vector<std::string> Column(const std::string& path,
                                const std::string& sql) {
  std::vector<std::string> values;
  sqlite3* db = nullptr;
  if (sqlite3_open(path.c_str(), &db) == SQLITE_OK) {
    sqlite3_stmt* st = nullptr;
    sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr);
    while (st && sqlite3_step(st) == SQLITE_ROW) {
      const auto* text =
          reinterpret_cast<const char*>(sqlite3_column_text(st, 0));
      values.push_back(text ? text : "NULL");
    }
    sqlite3_finalize(st);
  }
  sqlite3_close(db);
  return values;
}

// A notification from homepot to sensor-001 that reached it, and its ack.
std::vector<DeliveryEvent> RoutedAndAcked(const std::string& message_id,
                                          int64_t received_ms) {
  DeliveryEvent accepted;
  accepted.kind = DeliveryEvent::Kind::kAccepted;
  accepted.message_id = message_id;
  accepted.publisher = "homepot";
  accepted.topic = "devices/sensor-001/notifications";
  accepted.target_device = "sensor-001";
  accepted.received_ms = received_ms;
  accepted.routed = 1;
  DeliveryEvent acked;
  acked.kind = DeliveryEvent::Kind::kAcked;
  acked.message_id = message_id;
  acked.publisher = "homepot";
  acked.device = "sensor-001";
  acked.status = "ok";
  acked.received_ms = received_ms;
  acked.at_ms = received_ms + 40;
  acked.latency_ms = 40;
  return {accepted, acked};
}

// Submitted delivery events are written on the worker's next pass, in
// order, without a reload (the generation stays, no update is announced).
TEST_F(RegistryWorkerTest, SubmittedDeliveryEventsAreWritten) {
  CreateRegistry(path_);
  StartWorker(3600000);
  const std::vector<std::string> generation =
      Column(path_, "SELECT generation FROM registry_meta");
  const int64_t now = SystemClock::Instance()->WallMs();
  std::vector<DeliveryEvent> batch = RoutedAndAcked("m1", now);
  ASSERT_TRUE(WaitFor([&] { return worker_->SubmitLog(&batch); }));
  EXPECT_TRUE(batch.empty());
  const std::string outcomes =
      "SELECT outcome || ' ' || coalesce(latency_ms, '-') FROM "
      "notification_log ORDER BY id";
  ASSERT_TRUE(WaitFor([&] { return !Column(path_, outcomes).empty(); }));
  EXPECT_EQ(Column(path_, outcomes), std::vector<std::string>{"acked 40"});
  // A second pass: our own writes were not taken for a change.
  batch = RoutedAndAcked("m2", now + 1);
  ASSERT_TRUE(WaitFor([&] { return worker_->SubmitLog(&batch); }));
  ASSERT_TRUE(WaitFor([&] { return Column(path_, outcomes).size() == 2; }));
  EXPECT_FALSE(worker_->HasUpdate());
  EXPECT_EQ(Column(path_, "SELECT generation FROM registry_meta"), generation);
  EXPECT_EQ(worker_->delivery_log().dropped(), 0u);
}

// Shutdown writes the pending delivery events on the calling thread.
TEST_F(RegistryWorkerTest, ShutdownWritesPendingDeliveryEvents) {
  CreateRegistry(path_);
  StartWorker(3600000);
  {
    // Held by another connection: the worker's pass cannot write.
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(path_.c_str(), &db), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(db, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr),
              SQLITE_OK);
    std::vector<DeliveryEvent> batch =
        RoutedAndAcked("m1", SystemClock::Instance()->WallMs());
    ASSERT_TRUE(WaitFor([&] { return worker_->SubmitLog(&batch); }));
    std::vector<std::string> logs = WaitForLog("delivery log flush delayed", 0);
    EXPECT_EQ(Count(logs, "delivery log flush delayed"), 1)
        << ::testing::PrintToString(logs);
    sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
    sqlite3_close(db);
  }
  worker_->Shutdown();
  EXPECT_EQ(Column(path_,
                   "SELECT message_id || ' ' || outcome FROM "
                   "notification_log"),
            std::vector<std::string>{"m1 acked"});
}

// With log_retention_rows 0 nothing is written.
TEST_F(RegistryWorkerTest, ZeroRetentionRowsWritesNoLog) {
  CreateRegistry(path_);
  worker_ = std::make_unique<RegistryWorker>(path_, kNode, 3600000,
                                             DeliveryLogRetention{0, 30});
  ASSERT_TRUE(worker_->Start().ok());
  std::vector<DeliveryEvent> batch =
      RoutedAndAcked("m1", SystemClock::Instance()->WallMs());
  ASSERT_TRUE(WaitFor([&] { return worker_->SubmitLog(&batch); }));
  EXPECT_TRUE(batch.empty());
  worker_->Shutdown();
  EXPECT_EQ(Column(path_, "SELECT count(*) FROM notification_log"),
            std::vector<std::string>{"0"});
}

}  // namespace
}  // namespace homepot

namespace homepot {
namespace {

// sensor-001's figures and presence, and the generation, for the presence
// tests: "published|sessions|subscribed".
std::string Presence(const std::string& path) {
  return DeviceStat(path, "published || '|' || sessions || '|' || subscribed");
}

std::string Generation(const std::string& path) {
  sqlite3* db = nullptr;
  std::string value;
  if (sqlite3_open(path.c_str(), &db) == SQLITE_OK) {
    sqlite3_stmt* st = nullptr;
    sqlite3_prepare_v2(db, "SELECT generation FROM registry_meta", -1, &st,
                       nullptr);
    if (st && sqlite3_step(st) == SQLITE_ROW) {
      value = std::to_string(sqlite3_column_int64(st, 0));
    }
    sqlite3_finalize(st);
  }
  sqlite3_close(db);
  return value;
}

// A delta for sensor-001: `published` added, presence when `sessions` >= 0.
std::vector<DeviceStatsDelta> PresenceDelta(uint64_t published,
                                            int64_t sessions = -1,
                                            int64_t subscribed = 0) {
  DeviceCounters c;
  c.published = published;
  if (sessions >= 0) {
    c.sessions = sessions;
    c.subscribed = subscribed;
    c.presence_changed = true;
  }
  return {{"sensor-001", c}};
}

// Counters are added; presence is written over the stored values, and only
// by deltas whose presence changed. None of it is a registry change.
TEST_F(RegistryWorkerTest, PresenceIsWrittenOverWhileCountersAdd) {
  CreateRegistry(path_);
  const std::string generation = Generation(path_);
  StartWorker(kFastInterval);
  std::vector<DeviceStatsDelta> batch = PresenceDelta(1, 2, 1);
  ASSERT_TRUE(WaitFor([&] { return worker_->SubmitStats(&batch); }));
  ASSERT_TRUE(WaitFor([&] { return Presence(path_) == "1|2|1"; }))
      << Presence(path_);

  batch = PresenceDelta(1);  // presence unchanged: stored values stay
  ASSERT_TRUE(WaitFor([&] { return worker_->SubmitStats(&batch); }));
  ASSERT_TRUE(WaitFor([&] { return Presence(path_) == "2|2|1"; }))
      << Presence(path_);

  batch = PresenceDelta(1, 1, 0);  // replaced, not added
  ASSERT_TRUE(WaitFor([&] { return worker_->SubmitStats(&batch); }));
  ASSERT_TRUE(WaitFor([&] { return Presence(path_) == "3|1|0"; }))
      << Presence(path_);

  batch = PresenceDelta(0, 0, 0);  // written even when it goes to zero
  ASSERT_TRUE(WaitFor([&] { return worker_->SubmitStats(&batch); }));
  ASSERT_TRUE(WaitFor([&] { return Presence(path_) == "3|0|0"; }))
      << Presence(path_);

  ASSERT_TRUE(WaitForPolls(2));
  EXPECT_FALSE(worker_->HasUpdate());
  EXPECT_EQ(Generation(path_), generation);
}

// A device first seen with a delta whose presence did not change gets 0.
TEST_F(RegistryWorkerTest, NewRowWithoutPresenceStartsAtZero) {
  CreateRegistry(path_);
  StartWorker(kFastInterval);
  std::vector<DeviceStatsDelta> batch = PresenceDelta(5);
  ASSERT_TRUE(WaitFor([&] { return worker_->SubmitStats(&batch); }));
  ASSERT_TRUE(WaitFor([&] { return Presence(path_) == "5|0|0"; }))
      << Presence(path_);
}

// Deltas that wait for the file merge: counters add up, the later presence
// wins, and a later delta without presence keeps the earlier one.
TEST_F(RegistryWorkerTest, WaitingDeltasMergeWithTheLaterPresence) {
  CreateRegistry(path_);
  StartWorker(kFastInterval);
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path_.c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr),
            SQLITE_OK);
  for (auto batch :
       {PresenceDelta(1, 3, 0), PresenceDelta(2, 1, 1), PresenceDelta(4)}) {
    ASSERT_TRUE(WaitFor([&] { return worker_->SubmitStats(&batch); }));
  }
  // At least one pass failed on the lock, so the retry path merged too.
  WaitForLog("flush delayed", 0);
  sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
  sqlite3_close(db);
  ASSERT_TRUE(WaitFor([&] { return Presence(path_) == "7|1|1"; }))
      << Presence(path_);
}

// A clock that hands a delta to the writer when the flush starts timing its
// write, i.e. after the flush took the pending deltas and before it writes.
class SubmittingClock : public Clock {
 public:
  int64_t MonotonicMs() override { return 0; }
  int64_t WallMs() override { return 0; }
  int64_t MonotonicUs() override {
    if (writer != nullptr && !delta.empty()) writer->Submit(&delta);
    return 0;
  }
  DeviceStatsWriter* writer = nullptr;
  std::vector<DeviceStatsDelta> delta;
};

// A write that fails is tried again as it was, and the deltas submitted
// meanwhile are written after it: the newer presence wins.
TEST_F(RegistryWorkerTest, FailedFlushKeepsTheNewerPresence) {
  CreateRegistry(path_);
  Result<Database> conn = Database::Open(path_, Database::Mode::kReadWrite);
  ASSERT_TRUE(conn.ok()) << conn.status().message();
  SubmittingClock clock;
  std::atomic<bool> has_logs{false};
  LogQueue log(&has_logs);
  DeviceStatsWriter writer(path_, kNode, &clock, &log);
  clock.writer = &writer;

  std::vector<DeviceStatsDelta> older = PresenceDelta(1, 3, 0);
  ASSERT_TRUE(writer.Submit(&older));
  clock.delta = PresenceDelta(2, 1, 1);
  sqlite3* locker = nullptr;
  ASSERT_EQ(sqlite3_open(path_.c_str(), &locker), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(locker, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr),
            SQLITE_OK);
  EXPECT_FALSE(writer.Flush(&*conn, 0));
  EXPECT_TRUE(clock.delta.empty()) << "the newer delta was submitted";
  sqlite3_exec(locker, "ROLLBACK", nullptr, nullptr, nullptr);
  sqlite3_close(locker);

  EXPECT_TRUE(writer.Flush(&*conn, 1000));
  EXPECT_EQ(Presence(path_), "1|3|0");
  EXPECT_TRUE(writer.Flush(&*conn, 1000));
  EXPECT_EQ(Presence(path_), "3|1|1");
}

// `count` registered devices d0000, d0001, ... besides sensor-001.
std::string ManyDevices(int count) {
  return "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n "
         "WHERE i < " +
         std::to_string(count - 1) +
         ") INSERT INTO devices (device_id) SELECT printf('d%04d', i) FROM n";
}

// One published notification for each of `count` devices d0000, ...
std::vector<DeviceStatsDelta> OnePublishedEach(int count) {
  std::vector<DeviceStatsDelta> batch;
  for (int i = 0; i < count; ++i) {
    char id[16];
    std::snprintf(id, sizeof(id), "d%04d", i);
    DeviceCounters c;
    c.published = 1;
    batch.push_back({id, c});
  }
  return batch;
}

// A flush writes the rows of at most kMaxFlushDevices devices; a chunk that
// fails part-way (a trigger refuses one device's row) is rolled back whole
// and merged back: in the end every device's count is exact, none lost and
// none added twice.
TEST_F(RegistryWorkerTest, StatsAreWrittenInChunksEachOnce) {
  constexpr int kDevices =
      static_cast<int>(2 * DeviceStatsWriter::kMaxFlushDevices + 200);
  CreateRegistry(path_);
  ASSERT_TRUE(test::ExecSqlOn(path_, ManyDevices(kDevices)));
  Result<Database> conn = Database::Open(path_, Database::Mode::kReadWrite);
  ASSERT_TRUE(conn.ok()) << conn.status().message();
  std::atomic<bool> has_logs{false};
  LogQueue log(&has_logs);
  DeviceStatsWriter writer(path_, kNode, SystemClock::Instance(), &log);
  const std::string sums =
      "SELECT count(*) || ' ' || sum(published) || ' ' || max(published) "
      "FROM device_stats";

  std::vector<DeviceStatsDelta> batch = OnePublishedEach(kDevices);
  ASSERT_TRUE(writer.Submit(&batch));
  EXPECT_EQ(writer.pending(), static_cast<size_t>(kDevices));
  ASSERT_TRUE(writer.Flush(&*conn, 1000));
  EXPECT_EQ(writer.last_flush_rows(),
            static_cast<int64_t>(DeviceStatsWriter::kMaxFlushDevices));
  EXPECT_EQ(writer.pending(), kDevices - DeviceStatsWriter::kMaxFlushDevices);
  const std::string chunk = std::to_string(DeviceStatsWriter::kMaxFlushDevices);
  EXPECT_EQ(Column(path_, sums),
            std::vector<std::string>{chunk + " " + chunk + " 1"});

  // Every device publishes once more; the device of one row refused.
  batch = OnePublishedEach(kDevices);
  ASSERT_TRUE(writer.Submit(&batch));
  ASSERT_TRUE(test::ExecSqlOn(
      path_,
      "CREATE TRIGGER refuse_insert BEFORE INSERT ON device_stats WHEN "
      "NEW.device_id = 'd0007' BEGIN SELECT RAISE(ABORT, 'refused'); END; "
      "CREATE TRIGGER refuse_update BEFORE UPDATE ON device_stats WHEN "
      "NEW.device_id = 'd0007' BEGIN SELECT RAISE(ABORT, 'refused'); END"));
  int failed = 0;
  for (int i = 0; i < 4; ++i) {
    if (!writer.Flush(&*conn, 1000)) ++failed;
  }
  EXPECT_GE(failed, 1);
  EXPECT_GT(writer.pending(), 0u);
  ASSERT_TRUE(test::ExecSqlOn(
      path_, "DROP TRIGGER refuse_insert; DROP TRIGGER refuse_update"));
  int flushes = 0;
  while (writer.pending() > 0 && flushes < 10) {
    EXPECT_TRUE(writer.Flush(&*conn, 1000));
    ++flushes;
  }
  EXPECT_EQ(writer.pending(), 0u);
  EXPECT_EQ(Column(path_, sums),
            std::vector<std::string>{std::to_string(kDevices) + " " +
                                     std::to_string(2 * kDevices) + " 2"});
  EXPECT_EQ(Column(path_,
                   "SELECT count(*) FROM device_stats WHERE "
                   "published <> 2"),
            std::vector<std::string>{"0"});
}

// Devices that keep sending do not hold the others back: every device
// waiting when a round of flushes begins is written in that round (its
// last chunk topped up with later deltas).
TEST_F(RegistryWorkerTest, StatsWaitingLongestAreWrittenFirst) {
  constexpr int kFirst =
      static_cast<int>(2 * DeviceStatsWriter::kMaxFlushDevices + 200);
  constexpr int kLater = 5000;
  CreateRegistry(path_);
  ASSERT_TRUE(test::ExecSqlOn(path_, ManyDevices(kLater)));
  Result<Database> conn = Database::Open(path_, Database::Mode::kReadWrite);
  ASSERT_TRUE(conn.ok()) << conn.status().message();
  std::atomic<bool> has_logs{false};
  LogQueue log(&has_logs);
  DeviceStatsWriter writer(path_, kNode, SystemClock::Instance(), &log);

  std::vector<DeviceStatsDelta> batch = OnePublishedEach(kFirst);
  ASSERT_TRUE(writer.Submit(&batch));
  ASSERT_TRUE(writer.Flush(&*conn, 1000));
  // Meanwhile many more devices send: the first ones still go first.
  batch = OnePublishedEach(kLater);
  ASSERT_TRUE(writer.Submit(&batch));
  ASSERT_TRUE(writer.Flush(&*conn, 1000));
  ASSERT_TRUE(writer.Flush(&*conn, 1000));
  EXPECT_EQ(Column(path_,
                   "SELECT count(*) FROM device_stats WHERE device_id < "
                   "printf('d%04d', " +
                       std::to_string(kFirst) + ")"),
            std::vector<std::string>{std::to_string(kFirst)});
}

// More delivery events than one flush writes: the passes follow each other
// at once (the interval is an hour), each polling the registry first, until
// all are written.
TEST_F(RegistryWorkerTest, ABacklogIsWrittenPassAfterPassWithPollsBetween) {
  CreateRegistry(path_);
  StartWorker(3600000);
  constexpr int kEvents =
      static_cast<int>(3 * DeliveryLogWriter::kMaxFlushEvents + 10);
  const int64_t now = SystemClock::Instance()->WallMs();
  std::vector<DeliveryEvent> batch;
  for (int i = 0; i < kEvents / 2; ++i) {
    std::vector<DeliveryEvent> two =
        RoutedAndAcked("m" + std::to_string(i), now);
    batch.insert(batch.end(), two.begin(), two.end());
  }
  const uint64_t polls = worker_->polls();
  ASSERT_TRUE(WaitFor([&] { return worker_->SubmitLog(&batch); }));
  const std::string acked =
      "SELECT count(*) FROM notification_log WHERE outcome = 'acked'";
  ASSERT_TRUE(WaitFor([&] {
    return Column(path_, acked) ==
           std::vector<std::string>{std::to_string(kEvents / 2)};
  })) << Column(path_, acked)[0];
  EXPECT_EQ(Column(path_, "SELECT count(*) FROM notification_log"),
            std::vector<std::string>{std::to_string(kEvents / 2)});
  // One poll before each of the four chunks.
  EXPECT_GE(worker_->polls(), polls + 4);
  EXPECT_EQ(worker_->delivery_log().last_flush_rows(), 10);
}

// sensor-001 and sensor-002 with presence on node-a (kNode) left over from
// its broker that stopped, and counters.
constexpr const char* kStalePresence =
    "INSERT INTO devices (device_id) VALUES ('sensor-002');"
    "INSERT INTO device_stats (device_id, node, published, last_connect, "
    "sessions, subscribed) VALUES "
    "('sensor-001', 'node-a', 7, '2026-11-30T10:00:00.000Z', 2, 1), "
    "('sensor-002', 'node-a', 1, NULL, 1, 0)";

TEST_F(RegistryWorkerTest, StartSetsPresenceToZero) {
  CreateRegistry(path_);
  ASSERT_TRUE(test::ExecSqlOn(path_, kStalePresence));
  const std::string generation = Generation(path_);
  StartWorker(kFastInterval);
  // Done by Start itself.
  EXPECT_EQ(Presence(path_), "7|0|0");
  EXPECT_EQ(DeviceStat(path_, "last_connect"), "2026-11-30T10:00:00.000Z");
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path_.c_str(), &db), SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db,
                               "SELECT sum(sessions) + sum(subscribed), "
                               "sum(published) FROM device_stats",
                               -1, &st, nullptr),
            SQLITE_OK);
  ASSERT_EQ(sqlite3_step(st), SQLITE_ROW);
  EXPECT_EQ(sqlite3_column_int64(st, 0), 0);
  EXPECT_EQ(sqlite3_column_int64(st, 1), 8);
  sqlite3_finalize(st);
  sqlite3_close(db);
  // Not a change of the registry: no reload, the generation stays.
  ASSERT_TRUE(WaitForPolls(3));
  EXPECT_FALSE(worker_->HasUpdate());
  EXPECT_EQ(Generation(path_), generation);
  std::vector<std::string> logs;
  worker_->TakeLogs(&logs);
  EXPECT_EQ(Count(logs, "device_stats"), 0) << ::testing::PrintToString(logs);
}

// A file locked at start: the broker still starts, the delay is logged
// once, and the reset goes first with the next write, before the presence
// submitted meanwhile.
TEST_F(RegistryWorkerTest, StartOnALockedFileResetsPresenceLater) {
  CreateRegistry(path_);
  ASSERT_TRUE(test::ExecSqlOn(path_, kStalePresence));
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path_.c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr),
            SQLITE_OK);
  ASSERT_NE(StartWorker(kFastInterval), nullptr);
  EXPECT_EQ(Presence(path_), "7|2|1");
  std::vector<DeviceStatsDelta> batch = PresenceDelta(1, 1, 1);
  ASSERT_TRUE(WaitFor([&] { return worker_->SubmitStats(&batch); }));
  std::vector<std::string> logs = WaitForLog("flush delayed", 5);
  EXPECT_EQ(Count(logs, "device_stats flush delayed"), 1)
      << ::testing::PrintToString(logs);
  sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
  sqlite3_close(db);
  ASSERT_TRUE(WaitFor([&] { return Presence(path_) == "8|1|1"; }))
      << Presence(path_);
  Result<Database> check = Database::Open(path_, Database::Mode::kReadOnly);
  ASSERT_TRUE(check.ok());
  Result<Statement> other = check->Prepare(
      "SELECT sessions, subscribed FROM device_stats "
      "WHERE device_id = 'sensor-002'");
  ASSERT_TRUE(other.ok());
  ASSERT_TRUE(*other->Step());
  EXPECT_EQ(other->Int(0), 0);
  EXPECT_EQ(other->Int(1), 0);
  EXPECT_FALSE(worker_->HasUpdate());
}

// The rows of `sql` on the file as "a|b|c" lines, NULL as "NULL".
std::vector<std::string> Rows(const std::string& path, const std::string& sql) {
  std::vector<std::string> rows;
  sqlite3* db = nullptr;
  if (sqlite3_open(path.c_str(), &db) == SQLITE_OK) {
    sqlite3_stmt* st = nullptr;
    sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr);
    while (st && sqlite3_step(st) == SQLITE_ROW) {
      std::string row;
      for (int i = 0; i < sqlite3_column_count(st); ++i) {
        const auto* text =
            reinterpret_cast<const char*>(sqlite3_column_text(st, i));
        row += (i > 0 ? "|" : "") + std::string(text ? text : "NULL");
      }
      rows.push_back(row);
    }
    sqlite3_finalize(st);
  }
  sqlite3_close(db);
  return rows;
}

// Another broker's rows (node-b) with presence: its sessions are live.
constexpr const char* kOtherNodePresence =
    "INSERT INTO device_stats (device_id, node, published, last_connect, "
    "sessions, subscribed) VALUES "
    "('sensor-001', 'node-b', 4, '2026-11-30T11:00:00.000Z', 3, 3), "
    "('sensor-002', 'node-b', 0, NULL, 1, 1)";

// A broker that starts resets its own node's presence only: the sessions
// another broker holds stay counted, and fleet_stats adds both.
TEST_F(RegistryWorkerTest, StartResetsOnlyItsOwnNodesPresence) {
  CreateRegistry(path_);
  ASSERT_TRUE(test::ExecSqlOn(path_, kStalePresence));
  ASSERT_TRUE(test::ExecSqlOn(path_, kOtherNodePresence));
  StartWorker(kFastInterval);
  EXPECT_EQ(Rows(path_,
                 "SELECT device_id, node, published, sessions, subscribed "
                 "FROM device_stats ORDER BY device_id, node"),
            (std::vector<std::string>{
                "sensor-001|node-a|7|0|0", "sensor-001|node-b|4|3|3",
                "sensor-002|node-a|1|0|0", "sensor-002|node-b|0|1|1"}));
  EXPECT_EQ(
      Rows(path_,
           "SELECT device_id, published, sessions, subscribed, "
           "last_connect, nodes FROM fleet_stats ORDER BY device_id"),
      (std::vector<std::string>{"sensor-001|11|3|3|2026-11-30T11:00:00.000Z|2",
                                "sensor-002|1|1|1|NULL|2"}));
}

// Two brokers on one registry file: each adds to its own rows, none
// overwrites the other's, and fleet_stats sums them exactly (times: the
// latest).
TEST_F(RegistryWorkerTest, TwoNodesAddUpInFleetStats) {
  CreateRegistry(path_);
  StartWorker(kFastInterval);
  RegistryWorker other(path_, "node-b", kFastInterval, kRetention);
  ASSERT_TRUE(other.Start().ok());

  const int64_t t = 1795000000000;
  DeviceCounters a;
  a.published = 3;
  a.delivered = 10;
  a.acked = 2;
  a.last_connect_ms = t + 300;
  a.last_publish_ms = t + 100;
  a.sessions = 2;
  a.subscribed = 1;
  a.presence_changed = true;
  DeviceCounters b;
  b.published = 4;
  b.delivered = 5;
  b.expired = 1;
  b.last_connect_ms = t;
  b.last_publish_ms = t + 200;
  b.last_delivery_ms = t + 50;
  b.sessions = 1;
  b.subscribed = 1;
  b.presence_changed = true;
  std::vector<DeviceStatsDelta> batch_a = {{"sensor-001", a}};
  std::vector<DeviceStatsDelta> batch_b = {{"sensor-001", b}};
  ASSERT_TRUE(WaitFor([&] { return worker_->SubmitStats(&batch_a); }));
  ASSERT_TRUE(WaitFor([&] { return other.SubmitStats(&batch_b); }));

  const std::string fleet =
      "SELECT published, delivered, rejected, expired, acked, sessions, "
      "subscribed, last_connect, last_publish, last_delivery, nodes "
      "FROM fleet_stats WHERE device_id = 'sensor-001'";
  const std::string want = "7|15|0|1|2|3|2|" + StampString(t + 300) + "|" +
                           StampString(t + 200) + "|" + StampString(t + 50) +
                           "|2";
  ASSERT_TRUE(WaitFor([&] {
    return Rows(path_, fleet) == std::vector<std::string>{want};
  })) << ::testing::PrintToString(Rows(path_, fleet));

  // More from node-a is added to its row; node-b's row stays as it was.
  DeviceCounters more;
  more.published = 5;
  more.last_publish_ms = t + 400;
  batch_a = {{"sensor-001", more}};
  ASSERT_TRUE(WaitFor([&] { return worker_->SubmitStats(&batch_a); }));
  ASSERT_TRUE(WaitFor([&] {
    return Rows(path_, "SELECT published, last_publish FROM fleet_stats") ==
           std::vector<std::string>{"12|" + StampString(t + 400)};
  })) << ::testing::PrintToString(Rows(path_, fleet));
  // node-b's stop sets its presence to 0, and only its own.
  other.Shutdown();
  EXPECT_EQ(Rows(path_,
                 "SELECT node, published, delivered, sessions, subscribed "
                 "FROM device_stats ORDER BY node"),
            (std::vector<std::string>{"node-a|8|10|2|1", "node-b|4|5|0|0"}));
}

// The main file's size and mtime (ns).
std::pair<long long, long long> SizeAndMtime(const std::string& path) {
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) return {-1, -1};
  return {st.st_size, st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec};
}

// Checkpoints the WAL into the main file and truncates it, through a
// connection of its own, as another broker or a backup script does.
testing::AssertionResult CheckpointTruncate(const std::string& path) {
  sqlite3* db = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr);
  int wal_frames = -1;
  if (rc == SQLITE_OK) {
    sqlite3_busy_timeout(db, 5000);
    // Read the file first: a connection that has not cannot know it is in
    // WAL mode, and would checkpoint nothing.
    rc = sqlite3_exec(db, "SELECT count(*) FROM sqlite_master", nullptr,
                      nullptr, nullptr);
  }
  if (rc == SQLITE_OK) {
    rc = sqlite3_wal_checkpoint_v2(db, nullptr, SQLITE_CHECKPOINT_TRUNCATE,
                                   &wal_frames, nullptr);
  }
  const std::string error = sqlite3_errmsg(db);
  sqlite3_close(db);
  if (rc != SQLITE_OK || wal_frames < 0) {
    return testing::AssertionFailure()
           << "checkpoint of " << path << ": " << error << " (WAL frames "
           << wal_frames << ")";
  }
  return testing::AssertionSuccess();
}

// Brokers sharing one registry file write their device_stats rows, and a
// checkpoint writes them into the main file: its size and mtime change but
// the registry does not, so nothing is reloaded and the next change still
// comes from the change feed. A file replaced is still read in full.
TEST_F(RegistryWorkerTest, OtherNodesWritesAndCheckpointsKeepTheChangeFeed) {
  CreateRegistry(path_);
  auto first = StartWorker(kFastInterval);
  ASSERT_NE(first, nullptr);
  ASSERT_TRUE(CheckpointTruncate(path_));
  const auto before = SizeAndMtime(path_);

  // node-b's rows through a connection of its own, enough to grow the file.
  std::string sql = "BEGIN;";
  for (int i = 0; i < 2000; ++i) {
    sql +=
        "INSERT INTO device_stats (device_id, node, published) VALUES "
        "('device-" +
        std::to_string(i) + "', 'node-b', 1);";
  }
  sql += "COMMIT;";
  ASSERT_TRUE(test::ExecSqlOn(path_, sql));
  // And this node's own.
  DeviceCounters mine;
  mine.published = 1;
  std::vector<DeviceStatsDelta> batch = {{"sensor-001", mine}};
  ASSERT_TRUE(WaitFor([&] { return worker_->SubmitStats(&batch); }));
  ASSERT_TRUE(WaitFor([&] { return DeviceStat(path_, "published") == "1"; }));
  ASSERT_TRUE(CheckpointTruncate(path_));
  const auto after = SizeAndMtime(path_);
  ASSERT_GT(after.first, before.first) << "the rows are in the main file";
  ASSERT_NE(after.second, before.second);

  ASSERT_TRUE(WaitForPolls(3));
  EXPECT_FALSE(worker_->HasUpdate()) << "the registry did not change";

  ASSERT_TRUE(test::ExecSqlOn(
      path_, "INSERT INTO devices (device_id) VALUES ('sensor-002')"));
  RegistryUpdate update;
  ASSERT_TRUE(WaitForUpdate(&update));
  EXPECT_FALSE(update.full);
  EXPECT_NE(update.snapshot->Find("sensor-002"), nullptr);
  EXPECT_EQ(update.snapshot->Find("sensor-001"), first->Find("sensor-001"))
      << "brought forward, sharing what did not change";

  // Replaced with the WAL empty (frames left in it would be read as part
  // of the new file).
  ASSERT_TRUE(CheckpointTruncate(path_));
  ReplaceWithNewRegistry("");
  ASSERT_TRUE(WaitForUpdate(&update));
  EXPECT_TRUE(update.full);
  EXPECT_EQ(update.snapshot->Find("sensor-002"), nullptr);
  EXPECT_EQ(update.revoked, std::vector<std::string>{"sensor-002"});
}

// The registry thread of a broker: a write at the change feed's bound comes
// from the feed; one past it leaves a gap, and is read in full with every
// device.
TEST_F(RegistryWorkerTest, ABulkWritePastTheFeedsBoundIsReadInFull) {
  CreateRegistry(path_);
  ASSERT_NE(StartWorker(kFastInterval), nullptr);
  const auto insert = [&](const std::string& prefix, size_t count) {
    return test::ExecSqlOn(
        path_,
        "WITH RECURSIVE n (i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n "
        "WHERE i < " +
            std::to_string(count) +
            ") INSERT INTO devices (device_id) SELECT '" + prefix +
            "' || i FROM n");
  };
  ASSERT_TRUE(insert("at", kMaxChangedDevices));
  // 50,000 devices read device by device, on a loaded machine.
  constexpr auto kBulkPatience = milliseconds(30000);
  RegistryUpdate update;
  ASSERT_TRUE(WaitForUpdate(&update, kBulkPatience));
  EXPECT_FALSE(update.full);
  EXPECT_EQ(update.snapshot->device_count(), 1 + kMaxChangedDevices);

  ASSERT_TRUE(insert("past", kMaxChangedDevices + 1));
  ASSERT_TRUE(WaitForUpdate(&update, kBulkPatience));
  EXPECT_TRUE(update.full);
  EXPECT_EQ(update.snapshot->device_count(), 2 + 2 * kMaxChangedDevices);
  EXPECT_NE(update.snapshot->Find("past1"), nullptr);
  EXPECT_NE(update.snapshot->Find("sensor-001"), nullptr);
}

// A backup copied over the file in place keeps its inode. In WAL mode the
// open connection would go on serving its cached pages of the newer
// contents; the reloader reopens the file, finds that the generation went
// back and reads it in full.
TEST_F(RegistryWorkerTest, OlderBackupCopiedOverTheFileIsReadInFull) {
  CreateRegistry(path_);
  StartWorker(kFastInterval);
  ASSERT_TRUE(CheckpointTruncate(path_));
  const std::string backup = test::ReadFile(path_);
  ASSERT_FALSE(backup.empty());

  ASSERT_TRUE(test::ExecSqlOn(
      path_, "INSERT INTO devices (device_id) VALUES ('sensor-002')"));
  RegistryUpdate update;
  ASSERT_TRUE(WaitForUpdate(&update));
  ASSERT_NE(update.snapshot->Find("sensor-002"), nullptr);
  // Writers done and the WAL checkpointed, as before a restore; the worker
  // reads the file after that, caching its pages.
  ASSERT_TRUE(CheckpointTruncate(path_));
  ASSERT_TRUE(WaitForPolls(2));
  ASSERT_FALSE(worker_->HasUpdate()) << "a checkpoint is no change";

  ASSERT_TRUE(test::WriteFile(path_, backup));  // cp backup.db registry.db
  ASSERT_TRUE(WaitForUpdate(&update));
  EXPECT_TRUE(update.full);
  EXPECT_EQ(update.snapshot->Find("sensor-002"), nullptr);
  EXPECT_NE(update.snapshot->Find("sensor-001"), nullptr);
  EXPECT_EQ(update.revoked, std::vector<std::string>{"sensor-002"});
  EXPECT_EQ(LastError(), "");
}

}  // namespace
}  // namespace homepot
