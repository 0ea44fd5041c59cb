#include "delivery_log.h"

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "stats.h"
#include "testing.h"

namespace homepot {
namespace {

// A wall clock that moves only when told.
class FixedClock : public Clock {
 public:
  int64_t MonotonicMs() override { return 1000000; }
  int64_t WallMs() override { return wall; }
  int64_t wall = 1795000000123;  // 2026-11-18T11:06:40.123Z
};

constexpr int64_t kDayMs = 24 * 60 * 60 * 1000;

DeliveryEvent Accepted(const std::string& message_id, int64_t received_ms,
                       uint32_t routed, uint32_t queued) {
  DeliveryEvent e;
  e.kind = DeliveryEvent::Kind::kAccepted;
  e.message_id = message_id;
  e.publisher = "homepot";
  e.topic = "devices/sensor-001/notifications";
  e.target_device = "sensor-001";
  e.received_ms = received_ms;
  e.routed = routed;
  e.queued = queued;
  return e;
}

DeliveryEvent Acked(const std::string& message_id, int64_t received_ms,
                    int64_t at_ms, const std::string& status) {
  DeliveryEvent e;
  e.kind = DeliveryEvent::Kind::kAcked;
  e.message_id = message_id;
  e.publisher = "homepot";
  e.device = "sensor-001";
  e.status = status;
  e.received_ms = received_ms;
  e.at_ms = at_ms;
  e.latency_ms = at_ms - received_ms;
  return e;
}

DeliveryEvent Expired(const std::string& message_id, int64_t at_ms) {
  DeliveryEvent e;
  e.kind = DeliveryEvent::Kind::kExpired;
  e.message_id = message_id;
  e.publisher = "homepot";
  e.device = "sensor-001";
  e.at_ms = at_ms;
  return e;
}

class DeliveryLogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(dir_.ok());
    ASSERT_TRUE(test::CreateRegistryFile(path_));
    Result<Database> db = Database::Open(path_, Database::Mode::kReadWrite);
    ASSERT_TRUE(db.ok()) << db.status().message();
    db_ = std::make_unique<Database>(std::move(*db));
  }

  std::unique_ptr<DeliveryLogWriter> Writer(
      DeliveryLogRetention retention = {100000, 0},
      size_t max_pending = DeliveryLogWriter::kMaxPending,
      const std::string& node = "node-a") {
    return std::make_unique<DeliveryLogWriter>(path_, node, retention, &clock_,
                                               &log_, max_pending);
  }

  // Submits `events` (the writer's lock is free here) and flushes.
  bool Write(DeliveryLogWriter* writer, std::vector<DeliveryEvent> events) {
    EXPECT_TRUE(writer->Submit(&events));
    EXPECT_TRUE(events.empty());
    return writer->Flush(db_.get(), 100);
  }

  // Rows of `sql` on a separate connection as "a|b|c"; NULL shows as "NULL".
  std::vector<std::string> Rows(const std::string& sql) {
    std::vector<std::string> rows;
    sqlite3* db = nullptr;
    EXPECT_EQ(
        sqlite3_open_v2(path_.c_str(), &db, SQLITE_OPEN_READONLY, nullptr),
        SQLITE_OK);
    sqlite3_stmt* stmt = nullptr;
    EXPECT_EQ(sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt, nullptr),
              SQLITE_OK)
        << sqlite3_errmsg(db);
    while (stmt != nullptr && sqlite3_step(stmt) == SQLITE_ROW) {
      std::string row;
      for (int i = 0; i < sqlite3_column_count(stmt); ++i) {
        if (i > 0) row += "|";
        const auto* text =
            reinterpret_cast<const char*>(sqlite3_column_text(stmt, i));
        row += text ? text : "NULL";
      }
      rows.push_back(row);
    }
    sqlite3_finalize(stmt);
    sqlite3_close(db);
    return rows;
  }

  std::vector<std::string> Logs() {
    std::vector<std::string> lines;
    EXPECT_TRUE(log_.Take(&lines));
    return lines;
  }

  static int Count(const std::vector<std::string>& lines,
                   const std::string& text) {
    return static_cast<int>(
        std::count_if(lines.begin(), lines.end(), [&](const std::string& l) {
          return l.find(text) != std::string::npos;
        }));
  }

  test::TempDir dir_{"homepot-dlog-test"};
  std::string path_ = dir_.Path("registry.db");
  std::unique_ptr<Database> db_;
  FixedClock clock_;
  std::atomic<bool> log_ready_{false};
  LogQueue log_{&log_ready_};
  const int64_t t_ = clock_.wall;
};

TEST_F(DeliveryLogTest, AcceptedAndRejectedEventsAddRows) {
  auto writer = Writer();
  DeliveryEvent queued = Accepted("m2", t_ + 1, 0, 1);
  queued.expires_ms = t_ + 300000;
  DeliveryEvent rejected;
  rejected.kind = DeliveryEvent::Kind::kRejected;
  rejected.topic = "devices/sensor-001/notifications";
  rejected.target_device = "sensor-001";
  rejected.reason = "payload_too_large";
  rejected.received_ms = t_ + 3;
  ASSERT_TRUE(Write(writer.get(), {Accepted("m1", t_, 2, 0), queued,
                                   Accepted("m3", t_ + 2, 0, 0), rejected}));
  EXPECT_EQ(
      Rows("SELECT id, message_id, publisher, topic, target_device, "
           "received_at, routed, queued, expires_at, acked_at, latency_ms, "
           "status, outcome, reason, node FROM notification_log ORDER BY id"),
      (std::vector<std::string>{
          "1|m1|homepot|devices/sensor-001/notifications|sensor-001|" +
              StampString(t_) + "|2|0|NULL|NULL|NULL|NULL|routed|NULL|node-a",
          "2|m2|homepot|devices/sensor-001/notifications|sensor-001|" +
              StampString(t_ + 1) + "|0|1|" + StampString(t_ + 300000) +
              "|NULL|NULL|NULL|queued|NULL|node-a",
          "3|m3|homepot|devices/sensor-001/notifications|sensor-001|" +
              StampString(t_ + 2) +
              "|0|0|NULL|NULL|NULL|NULL|unreachable|NULL|node-a",
          "4|NULL|NULL|devices/sensor-001/notifications|sensor-001|" +
              StampString(t_ + 3) +
              "|0|0|NULL|NULL|NULL|NULL|rejected|payload_too_large|node-a"}));
  EXPECT_EQ(StampString(t_), "2026-11-18T11:06:40.123Z");
  EXPECT_EQ(writer->last_flush_rows(), 4);
  EXPECT_EQ(Logs(), std::vector<std::string>{});
}

// An ack in the same batch as its notification finds the row written just
// before it: events are applied in order.
TEST_F(DeliveryLogTest, AckInTheSameBatchAsItsNotification) {
  auto writer = Writer();
  ASSERT_TRUE(Write(writer.get(), {Accepted("m1", t_, 1, 0),
                                   Acked("m1", t_, t_ + 250, "opened")}));
  EXPECT_EQ(Rows("SELECT outcome, acked_at, latency_ms, status, routed "
                 "FROM notification_log"),
            (std::vector<std::string>{"acked|" + StampString(t_ + 250) +
                                      "|250|opened|1"}));
}

// An ack goes to the newest row of (message_id, publisher) not acked yet;
// other publishers' rows, acked rows and rejected rows are left alone.
TEST_F(DeliveryLogTest, AckTakesTheNewestRowNotAckedYet) {
  auto writer = Writer();
  DeliveryEvent other = Accepted("m1", t_ + 2, 1, 0);
  other.publisher = "other-backend";
  DeliveryEvent rejected = Accepted("m1", t_ + 3, 0, 0);
  rejected.kind = DeliveryEvent::Kind::kRejected;
  rejected.reason = "duplicate";
  ASSERT_TRUE(
      Write(writer.get(), {Accepted("m1", t_, 1, 0),
                           Accepted("m1", t_ + 1, 1, 0), other, rejected}));
  ASSERT_TRUE(Write(writer.get(), {Acked("m1", t_ + 1, t_ + 11, "ok")}));
  EXPECT_EQ(Rows("SELECT id, outcome, latency_ms FROM notification_log "
                 "ORDER BY id"),
            (std::vector<std::string>{"1|routed|NULL", "2|acked|10",
                                      "3|routed|NULL", "4|rejected|NULL"}));
  ASSERT_TRUE(Write(writer.get(), {Acked("m1", t_, t_ + 20, "ok")}));
  EXPECT_EQ(Rows("SELECT id, outcome, latency_ms FROM notification_log "
                 "ORDER BY id"),
            (std::vector<std::string>{"1|acked|20", "2|acked|10",
                                      "3|routed|NULL", "4|rejected|NULL"}));
  // Nothing left to ack, and an unknown message: no change, no error.
  ASSERT_TRUE(Write(writer.get(), {Acked("m1", t_, t_ + 30, "ok"),
                                   Acked("unknown", t_, t_ + 30, "ok")}));
  EXPECT_EQ(Rows("SELECT count(*) FROM notification_log WHERE "
                 "outcome = 'acked'"),
            std::vector<std::string>{"2"});
  EXPECT_EQ(Logs(), std::vector<std::string>{});
}

// Expiry turns the newest queued row of the notification to "expired".
TEST_F(DeliveryLogTest, ExpiryChangesTheNewestQueuedRow) {
  auto writer = Writer();
  ASSERT_TRUE(Write(writer.get(),
                    {Accepted("m1", t_, 0, 1), Accepted("m1", t_ + 1, 0, 1),
                     Accepted("m1", t_ + 2, 1, 0)}));
  ASSERT_TRUE(Write(writer.get(), {Expired("m1", t_ + 100)}));
  EXPECT_EQ(Rows("SELECT outcome FROM notification_log ORDER BY id"),
            (std::vector<std::string>{"queued", "expired", "routed"}));
  ASSERT_TRUE(
      Write(writer.get(), {Expired("m1", t_ + 100), Expired("m1", t_ + 100),
                           Expired("m2", t_ + 100)}));
  EXPECT_EQ(Rows("SELECT outcome FROM notification_log ORDER BY id"),
            (std::vector<std::string>{"expired", "expired", "routed"}));
}

// Two nodes writing to one file: each row carries its writer's node, and
// an ack or an expiry changes the row of the node that reports it, even
// when another node wrote a newer row of the same notification.
TEST_F(DeliveryLogTest, UpdatesChangeTheRowsOfTheirOwnNode) {
  auto a = Writer({100000, 0}, DeliveryLogWriter::kMaxPending, "node-a");
  auto b = Writer({100000, 0}, DeliveryLogWriter::kMaxPending, "node-b");
  // m1 routed by node-a, then by node-b; m2 queued by both, b first.
  ASSERT_TRUE(Write(a.get(), {Accepted("m1", t_, 1, 0)}));
  ASSERT_TRUE(Write(
      b.get(), {Accepted("m1", t_ + 1, 1, 0), Accepted("m2", t_ + 2, 0, 1)}));
  ASSERT_TRUE(Write(a.get(), {Accepted("m2", t_ + 3, 0, 1)}));
  // node-a's device acks m1 (node-b's row is newer); node-b's copy of m2
  // expires (node-a's row is newer).
  ASSERT_TRUE(Write(a.get(), {Acked("m1", t_, t_ + 40, "ok")}));
  ASSERT_TRUE(Write(b.get(), {Expired("m2", t_ + 100)}));
  EXPECT_EQ(Rows("SELECT id, message_id, node, outcome, latency_ms FROM "
                 "notification_log ORDER BY id"),
            (std::vector<std::string>{
                "1|m1|node-a|acked|40", "2|m1|node-b|routed|NULL",
                "3|m2|node-b|expired|NULL", "4|m2|node-a|queued|NULL"}));
  // Another ack of m1 on node-a finds nothing left to ack there: node-b's
  // row stays.
  ASSERT_TRUE(Write(a.get(), {Acked("m1", t_, t_ + 50, "ok")}));
  EXPECT_EQ(Rows("SELECT outcome FROM notification_log WHERE id = 2"),
            std::vector<std::string>{"routed"});
  ASSERT_TRUE(Write(b.get(), {Acked("m1", t_ + 1, t_ + 61, "ok")}));
  EXPECT_EQ(Rows("SELECT node, outcome, latency_ms FROM notification_log "
                 "WHERE message_id = 'm1' ORDER BY id"),
            (std::vector<std::string>{"node-a|acked|40", "node-b|acked|60"}));
}

TEST_F(DeliveryLogTest, RetentionKeepsTheNewestRows) {
  auto writer = Writer({3, 0});
  ASSERT_TRUE(Write(writer.get(),
                    {Accepted("m1", t_, 1, 0), Accepted("m2", t_, 1, 0)}));
  EXPECT_EQ(Rows("SELECT message_id FROM notification_log ORDER BY id"),
            (std::vector<std::string>{"m1", "m2"}));
  ASSERT_TRUE(
      Write(writer.get(), {Accepted("m3", t_, 1, 0), Accepted("m4", t_, 1, 0),
                           Accepted("m5", t_, 1, 0)}));
  EXPECT_EQ(Rows("SELECT message_id FROM notification_log ORDER BY id"),
            (std::vector<std::string>{"m3", "m4", "m5"}));
  // A gap in the ids (rows deleted by hand) still keeps three rows.
  ASSERT_TRUE(test::ExecSqlOn(path_,
                              "DELETE FROM notification_log WHERE "
                              "message_id = 'm4'"));
  ASSERT_TRUE(Write(writer.get(), {Accepted("m6", t_, 1, 0)}));
  EXPECT_EQ(Rows("SELECT message_id FROM notification_log ORDER BY id"),
            (std::vector<std::string>{"m3", "m5", "m6"}));
  ASSERT_TRUE(Write(writer.get(), {Accepted("m7", t_, 1, 0)}));
  EXPECT_EQ(Rows("SELECT message_id FROM notification_log ORDER BY id"),
            (std::vector<std::string>{"m5", "m6", "m7"}));
}

TEST_F(DeliveryLogTest, RetentionDeletesRowsOlderThanTheDays) {
  auto writer = Writer({100000, 2});
  ASSERT_TRUE(Write(writer.get(), {Accepted("old", t_ - 3 * kDayMs, 1, 0),
                                   Accepted("day", t_ - kDayMs, 1, 0),
                                   Accepted("now", t_, 1, 0)}));
  EXPECT_EQ(Rows("SELECT message_id FROM notification_log ORDER BY id"),
            (std::vector<std::string>{"day", "now"}));
  clock_.wall += kDayMs + 1;
  ASSERT_TRUE(Write(writer.get(), {Accepted("later", clock_.wall, 1, 0)}));
  EXPECT_EQ(Rows("SELECT message_id FROM notification_log ORDER BY id"),
            (std::vector<std::string>{"now", "later"}));
  // No age limit: old rows stay.
  auto unlimited = Writer({100000, 0});
  ASSERT_TRUE(
      Write(unlimited.get(), {Accepted("ancient", t_ - 400 * kDayMs, 1, 0)}));
  EXPECT_EQ(Rows("SELECT count(*) FROM notification_log"),
            std::vector<std::string>{"3"});
}

// A table far beyond its limits shrinks by at most kMaxTrimRows per limit
// and flush, over several flushes.
TEST_F(DeliveryLogTest, RetentionTrimsABigExcessOverSeveralFlushes) {
  const size_t trim = DeliveryLogWriter::kMaxTrimRows;
  const std::string extra = std::to_string(2 * trim + trim / 2);
  auto fill = [&](const std::string& received_at) {
    return test::ExecSqlOn(
        path_,
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n "
        "WHERE i < " +
            extra +
            ") INSERT INTO notification_log (topic, received_at, outcome) "
            "SELECT 't', '" +
            received_at + "', 'routed' FROM n");
  };
  auto count = [&] {
    return std::stoul(Rows("SELECT count(*) FROM notification_log")[0]);
  };
  // The age limit: old rows go kMaxTrimRows at a time.
  ASSERT_TRUE(fill("2000-01-01T00:00:00.000Z"));
  auto by_age = Writer({100000, 2});
  ASSERT_TRUE(Write(by_age.get(), {Accepted("a1", t_, 1, 0)}));
  EXPECT_EQ(count(), 2 * trim + trim / 2 + 1 - trim);
  ASSERT_TRUE(Write(by_age.get(), {Accepted("a2", t_, 1, 0)}));
  ASSERT_TRUE(Write(by_age.get(), {Accepted("a3", t_, 1, 0)}));
  EXPECT_EQ(Rows("SELECT message_id FROM notification_log ORDER BY id"),
            (std::vector<std::string>{"a1", "a2", "a3"}));
  // The row limit: the oldest go kMaxTrimRows at a time.
  ASSERT_TRUE(fill(StampString(t_)));
  auto by_rows = Writer({3, 0});
  ASSERT_TRUE(Write(by_rows.get(), {Accepted("r1", t_, 1, 0)}));
  EXPECT_EQ(count(), 2 * trim + trim / 2 + 4 - trim);
  ASSERT_TRUE(Write(by_rows.get(), {Accepted("r2", t_, 1, 0)}));
  ASSERT_TRUE(Write(by_rows.get(), {Accepted("r3", t_, 1, 0)}));
  EXPECT_EQ(Rows("SELECT message_id FROM notification_log ORDER BY id"),
            (std::vector<std::string>{"r1", "r2", "r3"}));
}

TEST_F(DeliveryLogTest, ZeroRowsWritesNothing) {
  auto writer = Writer({0, 30});
  EXPECT_FALSE(Write(writer.get(), {Accepted("m1", t_, 1, 0)}));
  EXPECT_EQ(writer->pending(), 0u);
  EXPECT_EQ(writer->dropped(), 0u);
  EXPECT_EQ(Rows("SELECT count(*) FROM notification_log"),
            std::vector<std::string>{"0"});
}

// Beyond the bound new events are dropped and counted; the drop is logged
// once, and the count when writing catches up.
TEST_F(DeliveryLogTest, PendingEventsAreBounded) {
  auto writer = Writer({100000, 0}, 3);
  std::vector<DeliveryEvent> batch = {Accepted("m1", t_, 1, 0),
                                      Accepted("m2", t_, 1, 0)};
  ASSERT_TRUE(writer->Submit(&batch));
  batch = {Accepted("m3", t_, 1, 0), Accepted("m4", t_, 1, 0)};
  ASSERT_TRUE(writer->Submit(&batch));
  batch = {Accepted("m5", t_, 1, 0)};
  ASSERT_TRUE(writer->Submit(&batch));
  EXPECT_TRUE(batch.empty());
  EXPECT_EQ(writer->pending(), 3u);
  EXPECT_EQ(writer->dropped(), 2u);
  ASSERT_TRUE(writer->Flush(db_.get(), 100));
  EXPECT_EQ(Rows("SELECT message_id FROM notification_log ORDER BY id"),
            (std::vector<std::string>{"m1", "m2", "m3"}));
  std::vector<std::string> logs = Logs();
  EXPECT_EQ(Count(logs,
                  "3 events wait to be written; newer events are "
                  "dropped"),
            1)
      << ::testing::PrintToString(logs);
  EXPECT_EQ(Count(logs, "2 events were dropped"), 1)
      << ::testing::PrintToString(logs);
  EXPECT_EQ(logs.size(), 2u);
  // Room again.
  ASSERT_TRUE(Write(writer.get(), {Accepted("m6", t_, 1, 0)}));
  EXPECT_EQ(writer->dropped(), 2u);
  EXPECT_EQ(Logs(), std::vector<std::string>{});
}

// Another connection holding the write lock delays the write; the events
// wait (with those submitted meanwhile) and are all written, in order, once
// the lock is gone: the chunk that failed as it was, then the others. The
// delay and the recovery are logged once each.
TEST_F(DeliveryLogTest, BusyFileDelaysAndLaterWritesEverything) {
  auto writer = Writer();
  sqlite3* other = nullptr;
  ASSERT_EQ(sqlite3_open(path_.c_str(), &other), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(other, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr),
            SQLITE_OK);
  EXPECT_FALSE(Write(writer.get(), {Accepted("m1", t_, 0, 1)}));
  EXPECT_FALSE(Write(
      writer.get(), {Acked("m1", t_, t_ + 5, "ok"), Accepted("m2", t_, 1, 0)}));
  EXPECT_EQ(writer->pending(), 3u);
  std::vector<std::string> logs = Logs();
  EXPECT_EQ(logs.size(), 1u) << ::testing::PrintToString(logs);
  EXPECT_EQ(Count(logs,
                  "delivery log flush delayed: cannot write "
                  "notification_log: database is locked"),
            1)
      << ::testing::PrintToString(logs);
  ASSERT_EQ(sqlite3_exec(other, "ROLLBACK", nullptr, nullptr, nullptr),
            SQLITE_OK);
  sqlite3_close(other);

  EXPECT_TRUE(writer->Flush(db_.get(), 100));
  EXPECT_EQ(writer->pending(), 2u);
  EXPECT_EQ(Rows("SELECT message_id, outcome, latency_ms FROM "
                 "notification_log ORDER BY id"),
            (std::vector<std::string>{"m1|queued|NULL"}));
  EXPECT_TRUE(writer->Flush(db_.get(), 100));
  EXPECT_EQ(writer->pending(), 0u);
  EXPECT_EQ(Rows("SELECT message_id, outcome, latency_ms FROM "
                 "notification_log ORDER BY id"),
            (std::vector<std::string>{"m1|acked|5", "m2|routed|NULL"}));
  EXPECT_EQ(Logs(),
            std::vector<std::string>{"delivery log flush succeeded again"});
}

// A table that cannot be written (here: gone) is logged once; the events
// wait, and are written once the table is back.
TEST_F(DeliveryLogTest, UnusableTableIsLoggedOnceAndWritingGoesOn) {
  auto writer = Writer();
  ASSERT_TRUE(test::ExecSqlOn(path_, "DROP TABLE notification_log"));
  EXPECT_FALSE(Write(writer.get(), {Accepted("m1", t_, 1, 0)}));
  EXPECT_FALSE(Write(writer.get(), {Accepted("m2", t_, 1, 0)}));
  std::vector<std::string> logs = Logs();
  EXPECT_EQ(logs.size(), 1u) << ::testing::PrintToString(logs);
  EXPECT_EQ(Count(logs, "no such table: notification_log"), 1)
      << ::testing::PrintToString(logs);
  ASSERT_TRUE(test::CreateRegistryFile(path_));  // the schema again
  EXPECT_TRUE(writer->Flush(db_.get(), 100));
  EXPECT_TRUE(writer->Flush(db_.get(), 100));
  EXPECT_EQ(Rows("SELECT message_id FROM notification_log ORDER BY id"),
            (std::vector<std::string>{"m1", "m2"}));
}

// `count` accepted notifications m<first>, m<first + 1>, ...
std::vector<DeliveryEvent> Notifications(int first, int count, int64_t at) {
  std::vector<DeliveryEvent> events;
  for (int i = first; i < first + count; ++i) {
    events.push_back(Accepted("m" + std::to_string(i), at, 1, 0));
  }
  return events;
}

// "m<first>" ... "m<first + count - 1>".
std::vector<std::string> Ids(int first, int count) {
  std::vector<std::string> ids;
  for (int i = first; i < first + count; ++i) {
    ids.push_back("m" + std::to_string(i));
  }
  return ids;
}

// A flush writes at most kMaxFlushEvents, the oldest first; the rest waits
// in order and the next flushes write it.
TEST_F(DeliveryLogTest, AFlushWritesAtMostOneChunkInOrder) {
  constexpr int kChunk = static_cast<int>(DeliveryLogWriter::kMaxFlushEvents);
  auto writer = Writer();
  std::vector<DeliveryEvent> events = Notifications(0, 2 * kChunk + 1000, t_);
  ASSERT_TRUE(writer->Submit(&events));
  const std::string ids = "SELECT message_id FROM notification_log ORDER BY id";
  ASSERT_TRUE(writer->Flush(db_.get(), 100));
  EXPECT_EQ(writer->last_flush_rows(), kChunk);
  EXPECT_EQ(writer->pending(), static_cast<size_t>(kChunk + 1000));
  EXPECT_EQ(Rows(ids), Ids(0, kChunk));
  // Submitted meanwhile: after those waiting.
  events = Notifications(2 * kChunk + 1000, 5, t_);
  ASSERT_TRUE(writer->Submit(&events));
  ASSERT_TRUE(writer->Flush(db_.get(), 100));
  EXPECT_EQ(writer->pending(), 1005u);
  ASSERT_TRUE(writer->Flush(db_.get(), 100));
  EXPECT_EQ(writer->last_flush_rows(), 1005);
  EXPECT_EQ(writer->pending(), 0u);
  EXPECT_FALSE(writer->Flush(db_.get(), 100));
  EXPECT_EQ(Rows(ids), Ids(0, 2 * kChunk + 1005));
  EXPECT_EQ(Logs(), std::vector<std::string>{});
}

// Updates between runs of new rows (multi-row INSERTs of up to
// kRowsPerInsert rows) find the rows inserted before them: in the same
// statement's run, in an earlier run of the same chunk, or in an earlier
// chunk; a row inserted after an update is not touched by it.
TEST_F(DeliveryLogTest, UpdatesFindRowsOfTheSameAndEarlierChunks) {
  constexpr int kChunk = static_cast<int>(DeliveryLogWriter::kMaxFlushEvents);
  constexpr int kRows = static_cast<int>(DeliveryLogWriter::kRowsPerInsert);
  auto writer = Writer();
  // Chunk 1: m0 .. m(kChunk - 4) (full statements and a remainder), acks
  // of the last and of the first of them, then q1 queued as its last event.
  std::vector<DeliveryEvent> events = Notifications(0, kChunk - 3, t_);
  events.push_back(Acked("m" + std::to_string(kChunk - 4), t_, t_ + 7, "ok"));
  events.push_back(Acked("m0", t_, t_ + 9, "ok"));
  events.push_back(Accepted("q1", t_, 0, 1));
  ASSERT_EQ(events.size(), static_cast<size_t>(kChunk));
  // Chunk 2 begins with the expiry of q1 (written by chunk 1), then a run
  // of kRows + 1 rows and an ack of its row kRows (the second statement).
  events.push_back(Expired("q1", t_ + 1));
  std::vector<DeliveryEvent> run = Notifications(kChunk, kRows + 1, t_);
  events.insert(events.end(), run.begin(), run.end());
  events.push_back(Acked("m" + std::to_string(kChunk + kRows), t_, t_ + 3, ""));
  ASSERT_TRUE(writer->Submit(&events));
  ASSERT_TRUE(writer->Flush(db_.get(), 100));
  EXPECT_EQ(writer->pending(), static_cast<size_t>(kRows + 3));
  EXPECT_EQ(Rows("SELECT count(*) FROM notification_log"),
            std::vector<std::string>{std::to_string(kChunk - 2)});
  ASSERT_TRUE(writer->Flush(db_.get(), 100));
  EXPECT_EQ(writer->pending(), 0u);
  EXPECT_EQ(
      Rows("SELECT message_id, latency_ms FROM notification_log WHERE "
           "outcome = 'acked' ORDER BY id"),
      (std::vector<std::string>{"m0|9", "m" + std::to_string(kChunk - 4) + "|7",
                                "m" + std::to_string(kChunk + kRows) + "|3"}));
  EXPECT_EQ(Rows("SELECT message_id FROM notification_log WHERE outcome = "
                 "'expired'"),
            std::vector<std::string>{"q1"});
  EXPECT_EQ(Rows("SELECT count(*), count(DISTINCT message_id) FROM "
                 "notification_log WHERE outcome = 'routed'"),
            std::vector<std::string>{std::to_string(kChunk - 5 + kRows) + "|" +
                                     std::to_string(kChunk - 5 + kRows)});
}

// A chunk that fails part-way (here a trigger refuses one row after many
// were inserted) is rolled back whole and written again by the next flush
// that succeeds: every row once, in order.
TEST_F(DeliveryLogTest, AFailedChunkIsWrittenOnceLater) {
  constexpr int kChunk = static_cast<int>(DeliveryLogWriter::kMaxFlushEvents);
  auto writer = Writer();
  ASSERT_TRUE(test::ExecSqlOn(
      path_,
      "CREATE TRIGGER refuse BEFORE INSERT ON notification_log WHEN "
      "NEW.message_id = 'm1500' BEGIN SELECT RAISE(ABORT, 'refused'); END"));
  std::vector<DeliveryEvent> events = Notifications(0, kChunk + 500, t_);
  ASSERT_TRUE(writer->Submit(&events));
  EXPECT_FALSE(writer->Flush(db_.get(), 100));
  EXPECT_FALSE(writer->Flush(db_.get(), 100));
  EXPECT_EQ(writer->pending(), static_cast<size_t>(kChunk + 500));
  EXPECT_EQ(Rows("SELECT count(*) FROM notification_log"),
            std::vector<std::string>{"0"});
  std::vector<std::string> logs = Logs();
  EXPECT_EQ(Count(logs,
                  "delivery log flush delayed: cannot write "
                  "notification_log: refused"),
            1)
      << ::testing::PrintToString(logs);
  events = Notifications(kChunk + 500, 10, t_);
  ASSERT_TRUE(writer->Submit(&events));
  ASSERT_TRUE(test::ExecSqlOn(path_, "DROP TRIGGER refuse"));
  ASSERT_TRUE(writer->Flush(db_.get(), 100));
  EXPECT_EQ(writer->pending(), 510u);
  ASSERT_TRUE(writer->Flush(db_.get(), 100));
  EXPECT_EQ(writer->pending(), 0u);
  EXPECT_EQ(Rows("SELECT message_id FROM notification_log ORDER BY id"),
            Ids(0, kChunk + 510));
  EXPECT_EQ(Logs(),
            std::vector<std::string>{"delivery log flush succeeded again"});
}

TEST_F(DeliveryLogTest, NoOpenFileKeepsTheEvents) {
  auto writer = Writer();
  std::vector<DeliveryEvent> batch = {Accepted("m1", t_, 1, 0)};
  ASSERT_TRUE(writer->Submit(&batch));
  EXPECT_FALSE(writer->Flush(nullptr, 100));
  EXPECT_EQ(writer->pending(), 1u);
  EXPECT_EQ(Count(Logs(), "is not open"), 1);
  EXPECT_TRUE(writer->Flush(db_.get(), 100));
  EXPECT_EQ(Rows("SELECT message_id FROM notification_log"),
            std::vector<std::string>{"m1"});
}

// The log is not part of the registry snapshot: writing it (rows, updates
// and retention deletes) leaves the generation alone.
TEST_F(DeliveryLogTest, WritingNeverBumpsTheGeneration) {
  const std::vector<std::string> generation =
      Rows("SELECT generation FROM registry_meta");
  auto writer = Writer({1, 1});
  ASSERT_TRUE(Write(
      writer.get(),
      {Accepted("m1", t_ - 2 * kDayMs, 0, 1), Accepted("m2", t_, 0, 1),
       Accepted("m3", t_, 0, 1), Expired("m3", t_), Acked("m2", t_, t_, "")}));
  EXPECT_EQ(Rows("SELECT message_id, outcome FROM notification_log"),
            std::vector<std::string>{"m3|expired"});
  EXPECT_EQ(Rows("SELECT generation FROM registry_meta"), generation);
}

}  // namespace
}  // namespace homepot
