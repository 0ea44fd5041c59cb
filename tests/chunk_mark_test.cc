#include "chunk_mark.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "delivery_log.h"
#include "device_stats_writer.h"
#include "postgres.h"
#include "stats.h"
#include "testing.h"

namespace homepot {
namespace {

class FixedClock : public Clock {
 public:
  int64_t MonotonicMs() override { return 1000000; }
  int64_t WallMs() override { return 1795000000123; }
};

// One integer of the first row, -1 on any error.
int64_t Count(Database* db, const std::string& sql) {
  Result<Statement> stmt = db->Prepare(sql);
  if (!stmt.ok()) return -1;
  Result<bool> row = stmt->Step();
  return row.ok() && *row ? stmt->Int(0) : -1;
}

// A statement of a chunk: one notification_log row.
Status InsertRow(Database* db) {
  return db->Exec(
      "INSERT INTO notification_log (topic, received_at, outcome) VALUES "
      "('devices/d/notifications', '2026-11-18T11:06:40.123Z', 'routed')");
}

// --------------------------------------------------------------- SQLite ----

class ChunkMarkTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(dir_.ok());
    ASSERT_TRUE(test::CreateRegistryFile(path_));
    Result<Database> db = Database::Open(path_, Database::Mode::kReadWrite);
    ASSERT_TRUE(db.ok()) << db.status().message();
    db_ = std::make_unique<Database>(std::move(*db));
  }

  test::TempDir dir_{"homepot-chunk-mark"};
  std::string path_ = dir_.Path("homepot.db");
  std::unique_ptr<Database> db_;
};

TEST_F(ChunkMarkTest, EachChunkIsWrittenWithItsOwnMark) {
  ChunkMark mark("node-a", "delivery_log");
  for (int chunk = 1; chunk <= 3; ++chunk) {
    Result<ChunkMark::Outcome> written =
        mark.Write(&*db_, [&] { return InsertRow(&*db_); });
    ASSERT_TRUE(written.ok()) << written.status().message();
    EXPECT_EQ(*written, ChunkMark::Outcome::kWritten);
  }
  EXPECT_EQ(Count(&*db_, "SELECT count(*) FROM notification_log"), 3);
  EXPECT_EQ(Count(&*db_,
                  "SELECT count(*) FROM write_marks WHERE "
                  "node = 'node-a' AND writer = 'delivery_log' AND "
                  "mark LIKE '%:3'"),
            1);
}

// A chunk whose transaction failed before COMMIT is written by the retry,
// once; another writer's or node's mark is a row of its own.
TEST_F(ChunkMarkTest, ARetryWritesAChunkThatDidNotCommit) {
  ChunkMark mark("node-a", "delivery_log");
  ChunkMark other("node-b", "delivery_log");
  ASSERT_TRUE(other.Write(&*db_, [&] { return InsertRow(&*db_); }).ok());
  Result<ChunkMark::Outcome> failed = mark.Write(&*db_, [&] {
    if (Status s = InsertRow(&*db_); !s.ok()) return s;
    return Status::Error("the connection broke");
  });
  ASSERT_FALSE(failed.ok());
  EXPECT_EQ(failed.status().message(), "the connection broke");
  EXPECT_EQ(Count(&*db_, "SELECT count(*) FROM notification_log"), 1);

  Result<ChunkMark::Outcome> retried =
      mark.Write(&*db_, [&] { return InsertRow(&*db_); });
  ASSERT_TRUE(retried.ok()) << retried.status().message();
  EXPECT_EQ(*retried, ChunkMark::Outcome::kWritten);
  EXPECT_EQ(Count(&*db_, "SELECT count(*) FROM notification_log"), 2);
  EXPECT_EQ(Count(&*db_, "SELECT count(*) FROM write_marks"), 2);
}

// ----------------------------------------------------------- PostgreSQL ----

// A COMMIT whose answer never comes: synchronous_commit is on and
// synchronous_standby_names names a standby that does not exist, so every
// COMMIT is durable on the server but waits (invisible to others, its locks
// held) until the setting is reset. The writer's statement stall timeout (1 s)
// gives up on it and closes the connection; the test then releases the commit
// and lets the writer try again on a new connection.
class LostCommitTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(cluster_.Start());
    ASSERT_TRUE(cluster_.CreateRegistry("registry"));
    Result<Database> admin =
        Database::OpenPostgres(cluster_.SuperuserConninfo("registry"));
    ASSERT_TRUE(admin.ok()) << admin.status().message();
    admin_ = std::make_unique<Database>(std::move(*admin));
    ASSERT_TRUE(
        admin_->Exec("INSERT INTO devices (device_id) VALUES ('d')").ok());
    // The test cluster turns synchronous_commit off; the sessions of this
    // database wait for the standby.
    ASSERT_TRUE(
        admin_->Exec("ALTER DATABASE registry SET synchronous_commit = on")
            .ok());
    ASSERT_TRUE(admin_->Exec("CREATE TABLE commit_probe (x INT)").ok());
    ASSERT_TRUE(admin_->Exec("GRANT INSERT ON commit_probe TO homepot").ok());
  }

  // The writer's connection: a statement silent for 1 s fails; a lock is
  // waited for at most 300 ms.
  std::unique_ptr<Database> Writer() {
    pg::Options options;
    options.stall_timeout_ms = 1000;
    Result<Database> db =
        Database::OpenPostgres(cluster_.Url("registry"), options);
    EXPECT_TRUE(db.ok()) << db.status().message();
    if (!db.ok()) return nullptr;
    auto writer = std::make_unique<Database>(std::move(*db));
    writer->SetBusyTimeout(300);
    return writer;
  }

  // Every COMMIT from now on waits for a standby that never answers
  // (`hold`), or none does (the waiting ones complete).
  void HoldCommits(bool hold) {
    ASSERT_TRUE(admin_
                    ->Exec(hold
                               ? "ALTER SYSTEM SET synchronous_standby_names "
                                 "= 'nobody'"
                               : "ALTER SYSTEM RESET synchronous_standby_names")
                    .ok());
    ASSERT_TRUE(admin_->Exec("SELECT pg_reload_conf()").ok());
    // In force once the server's processes have reloaded it.
    const auto deadline =
        std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (CommitsHeld() != hold) {
      ASSERT_LT(std::chrono::steady_clock::now(), deadline)
          << "synchronous_standby_names did not take effect: hold " << hold
          << "\n"
          << cluster_.Log();
    }
  }

  // True when a probe's COMMIT gets no answer within 300 ms (it stays
  // waiting until commits are released). Only a transaction that wrote
  // something waits.
  bool CommitsHeld() {
    pg::Options options;
    options.stall_timeout_ms = 300;
    Result<Database> probe =
        Database::OpenPostgres(cluster_.Url("registry"), options);
    EXPECT_TRUE(probe.ok()) << probe.status().message();
    if (!probe.ok()) return false;
    EXPECT_TRUE(probe->Exec("BEGIN").ok());
    EXPECT_TRUE(probe->Exec("INSERT INTO commit_probe VALUES (1)").ok());
    Status commit = probe->Exec("COMMIT");
    if (commit.ok()) return false;
    EXPECT_NE(commit.message().find("no answer from the server"),
              std::string::npos)
        << commit.message();
    return true;
  }

  // Waits (10 s at most) until `sql` counts `want`; the last count.
  int64_t WaitForCount(const std::string& sql, int64_t want) {
    const auto deadline =
        std::chrono::steady_clock::now() + std::chrono::seconds(10);
    int64_t n = Count(&*admin_, sql);
    while (n != want && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      n = Count(&*admin_, sql);
    }
    return n;
  }

  test::PostgresCluster cluster_;
  std::unique_ptr<Database> admin_;
};

TEST_F(LostCommitTest, AChunkWhoseCommitTookEffectIsNotWrittenAgain) {
  ChunkMark mark("node-a", "delivery_log");
  std::unique_ptr<Database> first = Writer();
  ASSERT_TRUE(first);
  // A first chunk makes the mark row exist, as it does after any write.
  ASSERT_TRUE(mark.Write(&*first, [&] { return InsertRow(&*first); }).ok());

  HoldCommits(true);
  Result<ChunkMark::Outcome> lost =
      mark.Write(&*first, [&] { return InsertRow(&*first); });
  ASSERT_FALSE(lost.ok());
  EXPECT_EQ(Count(&*admin_, "SELECT count(*) FROM notification_log"), 1);

  // Tried again while the server still finishes the first attempt: the
  // retry waits for its lock and gives up, writing nothing.
  std::unique_ptr<Database> second = Writer();
  ASSERT_TRUE(second);
  Result<ChunkMark::Outcome> early =
      mark.Write(&*second, [&] { return InsertRow(&*second); });
  EXPECT_FALSE(early.ok());

  HoldCommits(false);
  ASSERT_EQ(WaitForCount("SELECT count(*) FROM notification_log", 2), 2);

  std::unique_ptr<Database> third = Writer();
  ASSERT_TRUE(third);
  Result<ChunkMark::Outcome> retried =
      mark.Write(&*third, [&] { return InsertRow(&*third); });
  ASSERT_TRUE(retried.ok()) << retried.status().message();
  EXPECT_EQ(*retried, ChunkMark::Outcome::kAlreadyWritten);
  EXPECT_EQ(Count(&*admin_, "SELECT count(*) FROM notification_log"), 2);

  // The next chunk is new.
  Result<ChunkMark::Outcome> next =
      mark.Write(&*third, [&] { return InsertRow(&*third); });
  ASSERT_TRUE(next.ok()) << next.status().message();
  EXPECT_EQ(*next, ChunkMark::Outcome::kWritten);
  EXPECT_EQ(Count(&*admin_, "SELECT count(*) FROM notification_log"), 3);
}

// The first chunk ever of a writer inserts its mark row: a retry meets that
// uncommitted row and waits for it, too.
TEST_F(LostCommitTest, TheFirstChunkEverIsNotWrittenAgainEither) {
  ChunkMark mark("node-a", "delivery_log");
  HoldCommits(true);
  std::unique_ptr<Database> first = Writer();
  ASSERT_TRUE(first);
  ASSERT_FALSE(mark.Write(&*first, [&] { return InsertRow(&*first); }).ok());
  std::unique_ptr<Database> second = Writer();
  ASSERT_TRUE(second);
  EXPECT_FALSE(mark.Write(&*second, [&] { return InsertRow(&*second); }).ok());
  HoldCommits(false);
  ASSERT_EQ(WaitForCount("SELECT count(*) FROM notification_log", 1), 1);
  std::unique_ptr<Database> third = Writer();
  ASSERT_TRUE(third);
  Result<ChunkMark::Outcome> retried =
      mark.Write(&*third, [&] { return InsertRow(&*third); });
  ASSERT_TRUE(retried.ok()) << retried.status().message();
  EXPECT_EQ(*retried, ChunkMark::Outcome::kAlreadyWritten);
  EXPECT_EQ(Count(&*admin_, "SELECT count(*) FROM notification_log"), 1);
}

// The writers: each event's row and each count is in the registry once,
// the events and deltas that came meanwhile are written after.
TEST_F(LostCommitTest, TheWritersAddALostChunkOnce) {
  FixedClock clock;
  std::atomic<bool> ready{false};
  LogQueue log(&ready);
  const std::string url = pg::MaskedUrl(cluster_.Url("registry"));
  DeliveryLogWriter events(url, "node-a", {100000, 0}, &clock, &log);
  DeviceStatsWriter stats(url, "node-a", &clock, &log);
  const auto submit = [&](int n) {
    std::vector<DeliveryEvent> batch(n);
    for (DeliveryEvent& e : batch) {
      e.kind = DeliveryEvent::Kind::kRejected;
      e.topic = "devices/d/notifications";
      e.reason = "invalid_json";
      e.received_ms = clock.WallMs();
    }
    ASSERT_TRUE(events.Submit(&batch));
    std::vector<DeviceStatsDelta> deltas(1);
    deltas[0].device_id = "d";
    deltas[0].counters.rejected = n;
    ASSERT_TRUE(stats.Submit(&deltas));
  };
  std::unique_ptr<Database> first = Writer();
  ASSERT_TRUE(first);
  submit(1);
  ASSERT_TRUE(events.Flush(&*first, 300));
  ASSERT_TRUE(stats.Flush(&*first, 300));

  HoldCommits(true);
  submit(3);
  EXPECT_FALSE(events.Flush(&*first, 300));
  std::unique_ptr<Database> second = Writer();
  ASSERT_TRUE(second);
  EXPECT_FALSE(stats.Flush(&*second, 300));
  submit(5);  // waits behind the lost chunks
  HoldCommits(false);
  ASSERT_EQ(WaitForCount("SELECT count(*) FROM notification_log", 4), 4);
  ASSERT_EQ(WaitForCount("SELECT rejected FROM device_stats", 4), 4);

  std::unique_ptr<Database> third = Writer();
  ASSERT_TRUE(third);
  EXPECT_TRUE(events.Flush(&*third, 300));  // the lost chunk: already there
  EXPECT_EQ(Count(&*admin_, "SELECT count(*) FROM notification_log"), 4);
  EXPECT_TRUE(events.Flush(&*third, 300));
  EXPECT_FALSE(events.Flush(&*third, 300));
  EXPECT_EQ(events.pending(), 0u);
  EXPECT_TRUE(stats.Flush(&*third, 300));
  EXPECT_EQ(Count(&*admin_, "SELECT rejected FROM device_stats"), 4);
  EXPECT_TRUE(stats.Flush(&*third, 300));
  EXPECT_FALSE(stats.Flush(&*third, 300));
  EXPECT_EQ(stats.pending(), 0u);
  EXPECT_EQ(Count(&*admin_, "SELECT count(*) FROM notification_log"), 9);
  EXPECT_EQ(Count(&*admin_, "SELECT rejected FROM device_stats"), 9);
}

// The presence reset a broker starts with is a chunk of its own, without
// deltas: when its COMMIT's answer is lost and the reset took effect, the
// deltas submitted meanwhile are still written, after it.
TEST_F(LostCommitTest, DeltasAfterALostResetAreWritten) {
  FixedClock clock;
  std::atomic<bool> ready{false};
  LogQueue log(&ready);
  ASSERT_TRUE(admin_
                  ->Exec("INSERT INTO device_stats (device_id, node, sessions) "
                         "VALUES ('d', 'node-a', 1)")
                  .ok());
  DeviceStatsWriter stats(pg::MaskedUrl(cluster_.Url("registry")), "node-a",
                          &clock, &log);
  HoldCommits(true);
  std::unique_ptr<Database> first = Writer();
  ASSERT_TRUE(first);
  EXPECT_FALSE(stats.ResetPresence(&*first, 300));
  std::vector<DeviceStatsDelta> deltas(1);
  deltas[0].device_id = "d";
  deltas[0].counters.rejected = 2;
  ASSERT_TRUE(stats.Submit(&deltas));
  HoldCommits(false);
  ASSERT_EQ(WaitForCount("SELECT sessions FROM device_stats", 0), 0);

  std::unique_ptr<Database> second = Writer();
  ASSERT_TRUE(second);
  for (int i = 0; i < 3 && stats.Flush(&*second, 300); ++i) {
  }
  EXPECT_EQ(stats.pending(), 0u);
  EXPECT_EQ(Count(&*admin_, "SELECT rejected FROM device_stats"), 2);
  EXPECT_EQ(Count(&*admin_, "SELECT sessions FROM device_stats"), 0);
}

// A reset asked for after a chunk whose COMMIT's answer was lost: that
// chunk is tried again as it was, and the reset still happens.
TEST_F(LostCommitTest, AResetAfterALostChunkIsWritten) {
  FixedClock clock;
  std::atomic<bool> ready{false};
  LogQueue log(&ready);
  DeviceStatsWriter stats(pg::MaskedUrl(cluster_.Url("registry")), "node-a",
                          &clock, &log);
  std::vector<DeviceStatsDelta> deltas(1);
  deltas[0].device_id = "d";
  deltas[0].counters.rejected = 1;
  deltas[0].counters.sessions = 1;
  deltas[0].counters.presence_changed = true;
  ASSERT_TRUE(stats.Submit(&deltas));
  HoldCommits(true);
  std::unique_ptr<Database> first = Writer();
  ASSERT_TRUE(first);
  EXPECT_FALSE(stats.Flush(&*first, 300));
  HoldCommits(false);
  ASSERT_EQ(WaitForCount("SELECT sessions FROM device_stats", 1), 1);

  std::unique_ptr<Database> second = Writer();
  ASSERT_TRUE(second);
  EXPECT_TRUE(stats.ResetPresence(&*second, 300));
  EXPECT_EQ(stats.pending(), 0u);
  EXPECT_EQ(Count(&*admin_, "SELECT rejected FROM device_stats"), 1);
  EXPECT_EQ(Count(&*admin_, "SELECT sessions FROM device_stats"), 0);
}

}  // namespace
}  // namespace homepot
