// The plugin's registry reader and writers on a real PostgreSQL server,
// through the one Database layer: LoadChanges brings a snapshot to exactly
// what LoadSnapshot reads (as tests/registry_changes_test.cc shows on
// SQLite), a full load streams many rows whole and a stall or an interrupt
// in its middle keeps the last good registry, every statement of
// DeviceStatsWriter and DeliveryLogWriter runs there with the figures it has
// on SQLite, the RegistryWorker's thread wakes for a notification or a
// request alone, and RegistryReloader's reconnect delays grow with jitter
// and start again once the server answers. No broker.
#include <gtest/gtest.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "change_feed_scenarios.h"
#include "database.h"
#include "delivery_log.h"
#include "device_stats_writer.h"
#include "harness.h"
#include "log_queue.h"
#include "postgres.h"
#include "registry.h"
#include "registry_reloader.h"
#include "registry_worker.h"
#include "stats.h"
#include "testing.h"

namespace homepot {
namespace integration {
namespace {

using test::EncodedHash;

class PostgresLoadTest : public testing::Test {
 protected:
  // One cluster for the suite; each test gets its own registry database.
  static void SetUpTestSuite() {
    cluster_ = new test::PostgresCluster;
    testing::AssertionResult started = cluster_->Start();
    start_error_ = new std::string(started ? "" : started.message());
  }
  static void TearDownTestSuite() {
    delete cluster_;
    cluster_ = nullptr;
    delete start_error_;
    start_error_ = nullptr;
  }

  void SetUp() override {
    ASSERT_TRUE(start_error_->empty()) << *start_error_;
    static int next = 0;
    name_ = "load" + std::to_string(next++);
    ASSERT_TRUE(cluster_->CreateRegistry(name_));
    url_ = cluster_->Url(name_);
    Result<Database> db = Database::OpenPostgres(url_);
    ASSERT_TRUE(db.ok()) << db.status().message();
    database_.emplace(std::move(*db));
  }

  void Exec(const std::string& sql) {
    Status s = database_->Exec(sql);
    EXPECT_TRUE(s.ok()) << sql << ": " << s.message();
  }

  // Rows of `sql` as "a|b|c"; NULL shows as "NULL".
  std::vector<std::string> Rows(const std::string& sql) {
    std::vector<std::string> rows;
    Result<pg::Rows> result = database_->pg()->Run(sql);
    EXPECT_TRUE(result.ok()) << sql << ": " << result.status().message();
    for (int r = 0; result.ok() && r < result->rows(); ++r) {
      std::string row;
      for (int c = 0; c < result->columns(); ++c) {
        if (c > 0) row += "|";
        row += result->IsNull(r, c) ? "NULL" : result->Text(r, c);
      }
      rows.push_back(row);
    }
    return rows;
  }

  static test::PostgresCluster* cluster_;
  static std::string* start_error_;
  std::string name_;  // the test's registry database
  std::string url_;
  std::optional<Database> database_;
  std::atomic<bool> log_ready_{false};
  LogQueue log_{&log_ready_};
};

test::PostgresCluster* PostgresLoadTest::cluster_ = nullptr;
std::string* PostgresLoadTest::start_error_ = nullptr;

TEST_F(PostgresLoadTest, TheSchemaIsAcceptedAndTheGenerationRead) {
  EXPECT_TRUE(CheckSchema(&*database_).ok());
  Result<int64_t> generation = ReadGeneration(&*database_);
  ASSERT_TRUE(generation.ok()) << generation.status().message();
  EXPECT_EQ(*generation, 1);
  Exec("UPDATE registry_meta SET schema_version = 2");
  Status old = CheckSchema(&*database_);
  ASSERT_FALSE(old.ok());
  EXPECT_NE(old.message().find("run homepot-admin init"), std::string::npos)
      << old.message();
}

// The Database layer on PostgreSQL: a failed statement makes Commit fail
// (PostgreSQL would answer COMMIT with a silent ROLLBACK), and Changes
// counts the rows of the last INSERT, UPDATE or DELETE only.
TEST_F(PostgresLoadTest,
       TheDatabaseLayerReportsARolledBackCommitAndItsChanges) {
  {
    Result<Transaction> txn = Transaction::Begin(&*database_);
    ASSERT_TRUE(txn.ok()) << txn.status().message();
    Exec("INSERT INTO devices (device_id) VALUES ('kept-out')");
    EXPECT_FALSE(database_->Exec("SELECT 1 / 0").ok());
    Status committed = txn->Commit();
    EXPECT_FALSE(committed.ok());
    EXPECT_NE(committed.message().find("rolled back"), std::string::npos)
        << committed.message();
  }
  EXPECT_EQ(Rows("SELECT count(*) FROM devices WHERE device_id = 'kept-out'"),
            std::vector<std::string>{"0"});

  Result<Statement> insert = database_->Prepare(
      "INSERT INTO devices (device_id) VALUES (?1), (?2), (?3)");
  ASSERT_TRUE(insert.ok());
  insert->Bind(1, "c1").Bind(2, "c2").Bind(3, "c3");
  ASSERT_TRUE(insert->Run().ok());
  EXPECT_EQ(database_->Changes(), 3);
  Result<Statement> select =
      database_->Prepare("SELECT device_id FROM devices WHERE device_id = ?1");
  ASSERT_TRUE(select.ok());
  select->Bind(1, "c1");
  ASSERT_TRUE(select->Run().ok());
  EXPECT_EQ(database_->Changes(), 3);
}

TEST_F(PostgresLoadTest, EveryKindOfChangeMatchesAFullLoad) {
  test::ChangeFeedScenarios(&*database_).EveryKindOfChangeMatchesAFullLoad();
}

TEST_F(PostgresLoadTest, RevocationsAreThoseOfAFullLoad) {
  test::ChangeFeedScenarios(&*database_).RevocationsAreThoseOfAFullLoad();
}

TEST_F(PostgresLoadTest, AGapOrAGenerationThatWentBackAsksForAFullLoad) {
  test::ChangeFeedScenarios(&*database_)
      .AGapOrAGenerationThatWentBackAsksForAFullLoad();
}

TEST_F(PostgresLoadTest, InvalidRowsAreSkippedWithAWarningAsInAFullLoad) {
  test::ChangeFeedScenarios(&*database_)
      .InvalidRowsAreSkippedWithAWarningAsInAFullLoad();
}

// 10,000 changed devices are read in a few statements, not two each.
TEST_F(PostgresLoadTest, ManyChangedDevicesMatchAFullLoad) {
  test::ChangeFeedScenarios(&*database_)
      .ManyChangedDevicesMatchAFullLoad(10000);
}

TEST_F(PostgresLoadTest, ABulkWriteOverTheBoundAsksForAFullLoad) {
  test::ChangeFeedScenarios(&*database_)
      .ABulkWriteOverTheBoundAsksForAFullLoad();
}

TEST_F(PostgresLoadTest, ABulkWriteAtTheBoundGoesThroughTheFeed) {
  test::ChangeFeedScenarios(&*database_)
      .ABulkWriteAtTheBoundGoesThroughTheFeed();
}

// The bound counts the feed rows of the whole transaction, as they stand:
// a subtransaction rolled back takes its rows off the count; the statement
// that takes the generation past the bound deletes its rows, and the later
// statements write none. A TRUNCATE after it takes a generation of its own
// and the row changes after that the next, with their rows.
TEST_F(PostgresLoadTest, AGenerationPastTheBoundStaysAGap) {
  test::ChangeFeedScenarios feed(&*database_);
  const size_t bound = kMaxChangedDevices;
  auto base = feed.Full();
  ASSERT_NE(base, nullptr);
  const int64_t g = base->generation();
  const auto rows_of = [&](int64_t generation) {
    return Rows("SELECT count(*) FROM registry_changes WHERE generation = " +
                std::to_string(generation))
        .at(0);
  };

  Exec("BEGIN");
  Exec("INSERT INTO devices (device_id) VALUES ('a')");
  Exec("SAVEPOINT bulk");
  feed.InsertDevices("undone", bound);
  Exec("ROLLBACK TO SAVEPOINT bulk");
  feed.InsertDevices("b", bound - 2);
  Exec("INSERT INTO devices (device_id) VALUES ('c')");
  Exec("COMMIT");
  EXPECT_EQ(rows_of(g + 1), std::to_string(bound));
  ChangedSnapshot moved = feed.ForwardMatchesFull(*base);
  ASSERT_NE(moved.snapshot, nullptr);
  EXPECT_EQ(moved.changed, bound);

  Exec("BEGIN");
  feed.InsertDevices("d", bound);
  Exec("INSERT INTO devices (device_id) VALUES ('e')");
  Exec("INSERT INTO devices (device_id) VALUES ('f')");
  Exec("TRUNCATE acl_rules");
  Exec("INSERT INTO devices (device_id) VALUES ('g')");
  Exec("COMMIT");
  EXPECT_EQ(*ReadGeneration(&*database_), g + 4);
  EXPECT_EQ(rows_of(g + 2), "0");
  EXPECT_EQ(rows_of(g + 3), "0");
  EXPECT_EQ(Rows("SELECT kind, name FROM registry_changes WHERE generation = " +
                 std::to_string(g + 4)),
            std::vector<std::string>{"device|g"});
  EXPECT_EQ(feed.Changes(*moved.snapshot).snapshot, nullptr);
  auto full = feed.Full();
  ASSERT_NE(full, nullptr);
  EXPECT_EQ(full->device_count(), 2 * bound + 3);
  EXPECT_NE(full->Find("f"), nullptr);
  EXPECT_EQ(full->Find("undone1"), nullptr);
}

// Many random changes, applied in several steps, end where a full load does.
TEST_F(PostgresLoadTest, RandomChangesEndWhereAFullLoadDoes) {
  test::ChangeFeedScenarios(&*database_).RandomChangesEndWhereAFullLoadDoes();
}

// One generation per transaction, whatever it changes and in how many
// statements: every feed row carries it. A subtransaction rolled back
// takes its generation back with it; statements that change no row take
// none.
TEST_F(PostgresLoadTest, ATransactionTakesOneGeneration) {
  test::ChangeFeedScenarios feed(&*database_);
  auto base = feed.Full();
  ASSERT_NE(base, nullptr);
  const std::string g = std::to_string(base->generation() + 1);
  Exec("UPDATE devices SET enabled = 0 WHERE device_id = 'none'");
  Exec("DELETE FROM acl_rules WHERE device_id = 'none'");
  EXPECT_EQ(*ReadGeneration(&*database_), base->generation());

  Exec("BEGIN");
  Exec("SAVEPOINT first");
  Exec("INSERT INTO devices (device_id) VALUES ('undone')");
  Exec("ROLLBACK TO SAVEPOINT first");
  Exec(
      "INSERT INTO devices (device_id) SELECT 'd' || g "
      "FROM generate_series(1, 500) AS g");
  Exec(
      "INSERT INTO acl_rules (device_id, topic_filter, access) VALUES "
      "('d1', 'a/#', 'read'), (NULL, 'public/#', 'read')");
  Exec("SAVEPOINT second");
  Exec("DELETE FROM devices WHERE device_id = 'd2'");
  Exec("ROLLBACK TO SAVEPOINT second");
  Exec("SAVEPOINT third");
  Exec("UPDATE devices SET enabled = 0 WHERE device_id = 'd3'");
  Exec("RELEASE SAVEPOINT third");
  Exec("UPDATE device_types SET max_payload_bytes = 99 WHERE name = 'gateway'");
  // A setting a caller made is not taken for the transaction's generation.
  Exec("SET LOCAL homepot.generation = '1'");
  Exec(
      "SELECT set_config('homepot.generation', "
      "pg_current_xact_id()::text || ':1', true)");
  Exec("DELETE FROM devices WHERE device_id = 'd4'");
  Exec("COMMIT");

  EXPECT_EQ(*ReadGeneration(&*database_), base->generation() + 2);
  EXPECT_EQ(
      Rows("SELECT generation, count(*), count(DISTINCT kind || name) "
           "FROM registry_changes WHERE generation > " +
           std::to_string(base->generation()) +
           " GROUP BY generation ORDER BY generation"),
      (std::vector<std::string>{
          g + "|504|502", std::to_string(base->generation() + 2) + "|1|1"}));
  ChangedSnapshot moved = feed.ForwardMatchesFull(*base);
  ASSERT_NE(moved.snapshot, nullptr);
  EXPECT_EQ(moved.snapshot->device_count(), 499u);
  EXPECT_EQ(moved.snapshot->Find("undone"), nullptr);
  EXPECT_NE(moved.snapshot->Find("d2"), nullptr);
  EXPECT_FALSE(moved.snapshot->Find("d3")->enabled);
  EXPECT_EQ(moved.snapshot->global_rules().size(), 1u);
}

// A TRUNCATE takes a generation of its own without feed rows, in a
// transaction with row changes before and after it too: a full load.
TEST_F(PostgresLoadTest, ATruncateAmongRowChangesAsksForAFullLoad) {
  test::ChangeFeedScenarios feed(&*database_);
  feed.Exec("INSERT INTO devices (device_id) VALUES ('a'), ('b')");
  auto base = feed.Full();
  ASSERT_NE(base, nullptr);
  Exec("BEGIN");
  Exec("INSERT INTO devices (device_id) VALUES ('c')");
  Exec("TRUNCATE devices CASCADE");
  Exec("INSERT INTO devices (device_id) VALUES ('d')");
  Exec("COMMIT");
  EXPECT_EQ(feed.Changes(*base).snapshot, nullptr);
  auto now = feed.Full();
  ASSERT_NE(now, nullptr);
  EXPECT_EQ(now->device_count(), 1u);

  // The same after a TRUNCATE first, and from the generation of it.
  Exec("BEGIN");
  Exec("TRUNCATE acl_rules");
  Exec("INSERT INTO devices (device_id) VALUES ('e')");
  Exec("COMMIT");
  EXPECT_EQ(feed.Changes(*now).snapshot, nullptr);
  now = feed.Full();
  ASSERT_NE(now, nullptr);
  Exec("INSERT INTO devices (device_id) VALUES ('f')");
  EXPECT_NE(feed.ForwardMatchesFull(*now).snapshot, nullptr);
}

// A reader sees a writer's transaction whole or not at all.
TEST_F(PostgresLoadTest, AReaderNeverSeesPartOfAGeneration) {
  test::ChangeFeedScenarios feed(&*database_);
  auto base = feed.Full();
  ASSERT_NE(base, nullptr);
  Result<Database> writer = Database::OpenPostgres(url_);
  ASSERT_TRUE(writer.ok()) << writer.status().message();
  ASSERT_TRUE(writer->Exec("BEGIN").ok());
  ASSERT_TRUE(
      writer->Exec("INSERT INTO devices (device_id) VALUES ('a')").ok());
  ChangedSnapshot during = feed.Changes(*base);
  ASSERT_NE(during.snapshot, nullptr);
  EXPECT_EQ(during.snapshot->generation(), base->generation());
  EXPECT_EQ(during.snapshot->device_count(), 0u);
  ASSERT_TRUE(
      writer->Exec("INSERT INTO devices (device_id) VALUES ('b')").ok());
  ASSERT_TRUE(writer->Exec("COMMIT").ok());
  ChangedSnapshot after = feed.ForwardMatchesFull(*base);
  ASSERT_NE(after.snapshot, nullptr);
  EXPECT_EQ(after.snapshot->generation(), base->generation() + 1);
  EXPECT_EQ(after.snapshot->device_count(), 2u);
}

// The triggers keep to the registry's schema whatever search_path the
// writer has: tables of the same names elsewhere are not touched.
TEST_F(PostgresLoadTest, TheTriggersIgnoreTheCallersSearchPath) {
  Exec("CREATE SCHEMA decoy");
  Exec(
      "CREATE TABLE decoy.registry_meta (id INTEGER, generation BIGINT); "
      "INSERT INTO decoy.registry_meta VALUES (1, 1000); "
      "CREATE TABLE decoy.registry_changes (generation BIGINT, kind TEXT, "
      "name TEXT)");
  const int64_t before = *ReadGeneration(&*database_);
  Exec("SET search_path = decoy, public");
  Exec("INSERT INTO devices (device_id) VALUES ('a')");
  Exec("UPDATE devices SET enabled = 0 WHERE device_id = 'a'");
  Exec("TRUNCATE acl_rules");
  Exec("RESET search_path");
  EXPECT_EQ(Rows("SELECT generation FROM decoy.registry_meta"),
            std::vector<std::string>{"1000"});
  EXPECT_EQ(Rows("SELECT count(*) FROM decoy.registry_changes"),
            std::vector<std::string>{"0"});
  EXPECT_EQ(*ReadGeneration(&*database_), before + 3);
  EXPECT_EQ(Rows("SELECT count(*) FROM public.registry_changes WHERE "
                 "name = 'a'"),
            std::vector<std::string>{"2"});
}

// fleet_stats has SQLite's columns in SQLite's order.
TEST_F(PostgresLoadTest, FleetStatsHasTheColumnsOfSqlite) {
  std::optional<Database> sqlite = test::OpenMemoryDatabase();
  ASSERT_TRUE(sqlite.has_value());
  ASSERT_TRUE(sqlite->Exec(test::SchemaSql()).ok());
  Result<Statement> names = sqlite->Prepare(
      "SELECT group_concat(name, ',') FROM "
      "(SELECT name FROM pragma_table_info('fleet_stats') ORDER BY cid)");
  ASSERT_TRUE(names.ok()) << names.status().message();
  ASSERT_TRUE(*names->Step());
  EXPECT_EQ(Rows("SELECT string_agg(attname, ',' ORDER BY attnum) FROM "
                 "pg_attribute WHERE attrelid = 'fleet_stats'::regclass "
                 "AND attnum > 0"),
            std::vector<std::string>{names->Text(0)});
}

// Rules inserted with their own ids (a copy of another registry) move the
// identity sequence past them, also rows copied while the triggers were
// off once the schema is applied again: the next rule gets a free id.
TEST_F(PostgresLoadTest, RulesWithTheirOwnIdsLeaveTheNextIdFree) {
  Exec("INSERT INTO devices (device_id) VALUES ('a')");
  Exec(
      "INSERT INTO acl_rules (id, device_id, topic_filter, access) VALUES "
      "(40, 'a', 'x/1', 'read'), (7, 'a', 'x/2', 'read')");
  Exec(
      "INSERT INTO acl_rules (device_id, topic_filter, access) VALUES "
      "('a', 'x/3', 'read')");
  EXPECT_EQ(Rows("SELECT id FROM acl_rules WHERE topic_filter = 'x/3'"),
            std::vector<std::string>{"41"});

  Exec("BEGIN");
  Exec("ALTER TABLE acl_rules DISABLE TRIGGER USER");
  Exec(
      "INSERT INTO acl_rules (id, device_id, topic_filter, access) VALUES "
      "(90, 'a', 'x/4', 'read')");
  Exec("ALTER TABLE acl_rules ENABLE TRIGGER USER");
  Exec(
      "INSERT INTO notification_log (id, topic, received_at, outcome) "
      "VALUES (70, 't', '2030-01-01T00:00:00.000Z', 'routed')");
  Exec("COMMIT");
  Exec(test::PostgresSchemaSql());
  Exec(
      "INSERT INTO acl_rules (device_id, topic_filter, access) VALUES "
      "('a', 'x/5', 'read')");
  Exec(
      "INSERT INTO notification_log (topic, received_at, outcome) "
      "VALUES ('u', '2030-01-01T00:00:00.000Z', 'routed')");
  EXPECT_EQ(Rows("SELECT id FROM acl_rules WHERE topic_filter = 'x/5'"),
            std::vector<std::string>{"91"});
  EXPECT_EQ(Rows("SELECT id FROM notification_log WHERE topic = 'u'"),
            std::vector<std::string>{"71"});
}

// A bulk write holds registry_meta's row until it commits: a concurrent
// writer waits for that long, which grows with the rows only linearly. The
// figures are printed ([pg-bulk]); the bounds leave a slow machine 10x room.
TEST_F(PostgresLoadTest, ABulkInsertHoldsUpAConcurrentWriterOnlyWhileItRuns) {
  using Clock = std::chrono::steady_clock;
  Exec("INSERT INTO devices (device_id) VALUES ('other')");
  Result<Database> second = Database::OpenPostgres(url_);
  ASSERT_TRUE(second.ok()) << second.status().message();
  for (const int rows : {15000, 50000}) {
    const int64_t before = *ReadGeneration(&*database_);
    const auto start = Clock::now();
    Exec("BEGIN");
    Exec("INSERT INTO devices (device_id) VALUES ('bulk" +
         std::to_string(rows) + "-0')");
    // The disable waits for the bulk transaction from here on.
    double waited_ms = -1;
    std::thread disable([&] {
      const auto asked = Clock::now();
      Status s = second->Exec(
          "UPDATE devices SET enabled = 1 - enabled WHERE device_id = "
          "'other'");
      EXPECT_TRUE(s.ok()) << s.message();
      waited_ms =
          std::chrono::duration<double, std::milli>(Clock::now() - asked)
              .count();
    });
    Exec("INSERT INTO devices (device_id) SELECT 'bulk" + std::to_string(rows) +
         "-' || g FROM generate_series(1, " + std::to_string(rows - 1) +
         ") AS g");
    Exec("COMMIT");
    const double insert_ms =
        std::chrono::duration<double, std::milli>(Clock::now() - start).count();
    disable.join();
    std::printf(
        "[pg-bulk] %d rows in one transaction: %.0f ms; a concurrent "
        "disable waited %.0f ms\n",
        rows, insert_ms, waited_ms);
    // One generation for the bulk transaction, one for the disable.
    EXPECT_EQ(*ReadGeneration(&*database_), before + 2);
    EXPECT_LT(insert_ms, rows * 1.0) << rows << " rows";
  }
}

// TRUNCATE writes no feed rows; its generation is a gap: a full load.
TEST_F(PostgresLoadTest, ATruncateAsksForAFullLoad) {
  test::ChangeFeedScenarios feed(&*database_);
  feed.Exec("INSERT INTO devices (device_id) VALUES ('a'), ('b')");
  auto base = feed.Full();
  ASSERT_NE(base, nullptr);
  feed.Exec("TRUNCATE devices CASCADE");
  EXPECT_EQ(feed.Changes(*base).snapshot, nullptr);
  auto now = feed.Full();
  ASSERT_NE(now, nullptr);
  EXPECT_GT(now->generation(), base->generation());
  EXPECT_EQ(now->device_count(), 0u);
}

// Every statement of DeviceStatsWriter on PostgreSQL: increments add up,
// the latest times stay, presence is overwritten only when it changed and
// reset at start, and rows of unregistered devices are not written.
TEST_F(PostgresLoadTest, DeviceStatsAreWrittenAsIncrements) {
  Exec("INSERT INTO devices (device_id) VALUES ('a'), ('b')");
  DeviceStatsWriter writer(url_, "node-a", SystemClock::Instance(), &log_);
  const auto flush = [&](std::vector<DeviceStatsDelta> batch) {
    EXPECT_TRUE(writer.Submit(&batch));
    return writer.Flush(&*database_, 1000);
  };
  DeviceCounters first;
  first.published = 3;
  first.delivered = 2;
  first.rejected = 1;
  first.expired = 4;
  first.acked = 5;
  first.last_publish_ms = 1764000000000;
  first.sessions = 2;
  first.subscribed = 1;
  first.presence_changed = true;
  ASSERT_TRUE(flush({{"a", first}, {"ghost", first}}));
  DeviceCounters second;
  second.published = 10;
  second.delivered = 20;
  second.acked = 1;
  second.last_connect_ms = 1764000001000;
  ASSERT_TRUE(flush({{"a", second}, {"b", second}}));

  const std::string kColumns =
      "SELECT device_id, node, published, delivered, rejected, expired, "
      "acked, last_connect, last_publish, sessions, subscribed "
      "FROM device_stats ORDER BY device_id";
  EXPECT_EQ(Rows(kColumns),
            (std::vector<std::string>{
                "a|node-a|13|22|1|4|6|2025-11-24T16:00:01.000Z|"
                "2025-11-24T16:00:00.000Z|2|1",
                "b|node-a|10|20|0|0|1|2025-11-24T16:00:01.000Z|NULL|0|0"}));

  DeviceCounters gone;
  gone.presence_changed = true;
  ASSERT_TRUE(flush({{"a", gone}}));
  EXPECT_EQ(Rows("SELECT sessions, subscribed, published FROM device_stats "
                 "WHERE device_id = 'a'"),
            std::vector<std::string>{"0|0|13"});

  // Another node's row stays when this one resets its presence.
  first.presence_changed = true;
  ASSERT_TRUE(flush({{"a", first}}));
  Exec(
      "INSERT INTO device_stats (device_id, node, sessions, subscribed) "
      "VALUES ('a', 'node-b', 7, 7)");
  ASSERT_TRUE(writer.ResetPresence(&*database_, 1000));
  EXPECT_EQ(Rows("SELECT node, sessions, subscribed, published FROM "
                 "device_stats WHERE device_id = 'a' ORDER BY node"),
            (std::vector<std::string>{"node-a|0|0|16", "node-b|7|7|0"}));
  EXPECT_EQ(Rows("SELECT published FROM fleet_stats WHERE device_id = 'a'"),
            std::vector<std::string>{"16"});
  std::vector<std::string> lines;
  ASSERT_TRUE(log_.Take(&lines));
  EXPECT_TRUE(lines.empty()) << testing::PrintToString(lines);
}

// A broken connection delays the write; nothing is lost or counted twice
// once a connection works again.
TEST_F(PostgresLoadTest, DeviceStatsWaitForAWorkingConnection) {
  Exec("INSERT INTO devices (device_id) VALUES ('a')");
  DeviceStatsWriter writer(url_, "node-a", SystemClock::Instance(), &log_);
  std::vector<DeviceStatsDelta> batch = {{"a", {}}};
  batch[0].counters.published = 4;
  ASSERT_TRUE(writer.Submit(&batch));
  // The server ends this session (the statement itself fails).
  (void)database_->Exec("SELECT pg_terminate_backend(pg_backend_pid())");
  EXPECT_FALSE(writer.Flush(&*database_, 1000));
  EXPECT_FALSE(writer.Flush(nullptr, 1000));
  std::vector<std::string> lines;
  ASSERT_TRUE(log_.Take(&lines));
  ASSERT_EQ(lines.size(), 2u) << testing::PrintToString(lines);
  EXPECT_NE(lines[0].find("device_stats flush delayed"), std::string::npos);
  EXPECT_EQ(lines[1], "device_stats flush delayed: registry database " +
                          pg::MaskedUrl(url_) + " is not open");

  Result<Database> db = Database::OpenPostgres(url_);
  ASSERT_TRUE(db.ok()) << db.status().message();
  database_.emplace(std::move(*db));
  batch = {{"a", {}}};
  batch[0].counters.published = 1;
  ASSERT_TRUE(writer.Submit(&batch));
  // The chunk that failed goes first, as it was; then the newer delta.
  ASSERT_TRUE(writer.Flush(&*database_, 1000));
  EXPECT_EQ(Rows("SELECT published FROM device_stats"),
            std::vector<std::string>{"4"});
  ASSERT_TRUE(writer.Flush(&*database_, 1000));
  EXPECT_EQ(Rows("SELECT published FROM device_stats"),
            std::vector<std::string>{"5"});
}

// A transaction of the registry's session that the plugin gave up on does
// not hold its locks (this node's write_marks rows) for long.
TEST_F(PostgresLoadTest, TheRegistrySessionEndsATransactionLeftIdle) {
  std::atomic<bool> has_update{false};
  RegistryReloader reloader(url_, SystemClock::Instance(), &log_, &has_update);
  ASSERT_TRUE(reloader.LoadFirst().ok());
  Result<Statement> show =
      reloader.db()->Prepare("SHOW idle_in_transaction_session_timeout");
  ASSERT_TRUE(show.ok()) << show.status().message();
  Result<bool> row = show->Step();
  ASSERT_TRUE(row.ok() && *row);
  EXPECT_EQ(
      show->Text(0),
      std::to_string(RegistryReloader::kIdleInTransactionMs / 1000) + "s");
}

DeliveryEvent Accepted(const std::string& message_id, uint32_t queued,
                       int64_t received_ms) {
  DeliveryEvent e;
  e.kind = DeliveryEvent::Kind::kAccepted;
  e.message_id = message_id;
  e.publisher = "backend";
  e.topic = "devices/a/notifications";
  e.target_device = "a";
  e.received_ms = received_ms;
  e.queued = queued;
  e.routed = queued == 0 ? 1 : 0;
  return e;
}

// Every statement of DeliveryLogWriter on PostgreSQL: inserts, an ack and
// an expiry matched by message_id, publisher (NULL too) and node, and the
// retention by rows.
TEST_F(PostgresLoadTest, TheDeliveryLogIsWrittenUpdatedAndTrimmed) {
  const int64_t now = SystemClock::Instance()->WallMs();
  DeliveryLogWriter writer(url_, "node-a", {3, 30}, SystemClock::Instance(),
                           &log_);
  std::vector<DeliveryEvent> events = {Accepted("m1", 0, now),
                                       Accepted("m2", 1, now)};
  DeliveryEvent anonymous = Accepted("m3", 1, now);
  anonymous.publisher.clear();
  events.push_back(anonymous);
  DeliveryEvent rejected;
  rejected.kind = DeliveryEvent::Kind::kRejected;
  rejected.topic = "devices/a/notifications";
  rejected.reason = "invalid_json";
  rejected.received_ms = now;
  events.push_back(rejected);
  DeliveryEvent ack;
  ack.kind = DeliveryEvent::Kind::kAcked;
  ack.message_id = "m1";
  ack.publisher = "backend";
  ack.device = "a";
  ack.status = "opened";
  ack.at_ms = now + 250;
  ack.latency_ms = 250;
  events.push_back(ack);
  DeliveryEvent expired;
  expired.kind = DeliveryEvent::Kind::kExpired;
  expired.message_id = "m3";
  expired.device = "a";
  expired.at_ms = now + 300;
  events.push_back(expired);
  ASSERT_TRUE(writer.Submit(&events));
  ASSERT_TRUE(writer.Flush(&*database_, 1000));

  // Four rows written, the oldest trimmed to keep three.
  EXPECT_EQ(Rows("SELECT message_id, publisher, outcome, latency_ms, status, "
                 "reason, node FROM notification_log ORDER BY id"),
            (std::vector<std::string>{
                "m2|backend|queued|NULL|NULL|NULL|node-a",
                "m3|NULL|expired|NULL|NULL|NULL|node-a",
                "NULL|NULL|rejected|NULL|NULL|invalid_json|node-a"}));

  events = {Accepted("m4", 0, now)};
  ack.message_id = "m4";
  events.push_back(ack);
  ASSERT_TRUE(writer.Submit(&events));
  ASSERT_TRUE(writer.Flush(&*database_, 1000));
  EXPECT_EQ(Rows("SELECT message_id, outcome, latency_ms, status FROM "
                 "notification_log ORDER BY id"),
            (std::vector<std::string>{"m3|expired|NULL|NULL",
                                      "NULL|rejected|NULL|NULL",
                                      "m4|acked|250|opened"}));
  std::vector<std::string> lines;
  ASSERT_TRUE(log_.Take(&lines));
  EXPECT_TRUE(lines.empty()) << testing::PrintToString(lines);
}

// The interval is an hour: only the notification, the eventfd of
// RequestReload and SubmitStats, can wake the worker's thread.
TEST_F(PostgresLoadTest, TheWorkerWakesForANotificationOrARequestAlone) {
  Exec("INSERT INTO devices (device_id) VALUES ('a'), ('b')");
  RegistryWorker worker(url_, "node-a", /*interval_ms=*/3600000, {0, 0});
  Result<std::shared_ptr<const Snapshot>> first = worker.Start();
  ASSERT_TRUE(first.ok()) << first.status().message();
  EXPECT_EQ((*first)->device_count(), 2u);
  std::shared_ptr<const Snapshot> current = *first;
  RegistryUpdate update;
  const auto take = [&] {
    return Eventually(
        [&] {
          std::shared_ptr<const Snapshot> retired = current;
          if (!worker.TakeUpdate(&update, &retired)) return false;
          current = update.snapshot;
          return true;
        },
        2000, 5);
  };

  Exec("UPDATE devices SET enabled = 0 WHERE device_id = 'a'");
  ASSERT_TRUE(take());
  EXPECT_EQ(update.revoked, std::vector<std::string>{"a"});
  EXPECT_FALSE(update.full);
  EXPECT_FALSE(current->Find("a")->enabled);

  worker.RequestReload();
  ASSERT_TRUE(take());
  EXPECT_TRUE(update.full);
  EXPECT_TRUE(update.revoked.empty());

  std::vector<DeviceStatsDelta> batch = {{"b", {}}};
  batch[0].counters.published = 2;
  ASSERT_TRUE(worker.SubmitStats(&batch));
  EXPECT_TRUE(Eventually(
      [&] {
        return Rows("SELECT published FROM device_stats") ==
               std::vector<std::string>{"2"};
      },
      2000, 5));
  std::string error = "unread";
  ASSERT_TRUE(worker.LastError(&error));
  EXPECT_EQ(error, "");
  std::vector<std::string> lines;
  ASSERT_TRUE(worker.TakeLogs(&lines));
  EXPECT_TRUE(lines.empty()) << testing::PrintToString(lines);
}

// Many devices with two rules each, and a global rule: the full load, whose
// statements stream their rows, reads every row, each rule with its device
// in order.
TEST_F(PostgresLoadTest, AFullLoadReadsManyDevicesAndRulesWhole) {
  constexpr int kDevices = 100000;
  const std::string hash = EncodedHash("pw", 1);
  Exec("INSERT INTO devices (device_id, password_hash) SELECT 'dev-' || i, '" +
       hash + "' FROM generate_series(0, " + std::to_string(kDevices - 1) +
       ") AS i");
  Exec(
      "INSERT INTO acl_rules (device_id, topic_filter, access) "
      "SELECT 'dev-' || i, 'a/' || i || '/#', 'read' FROM generate_series(0, " +
      std::to_string(kDevices - 1) + ") AS i");
  Exec(
      "INSERT INTO acl_rules (device_id, topic_filter, access) "
      "SELECT 'dev-' || i, 'b/' || i, 'write' FROM generate_series(0, " +
      std::to_string(kDevices - 1) + ") AS i");
  Exec(
      "INSERT INTO acl_rules (device_id, topic_filter, access) "
      "VALUES (NULL, 'all/#', 'read')");
  std::vector<std::string> warnings;
  Result<std::shared_ptr<const Snapshot>> loaded =
      LoadSnapshot(&*database_, &warnings);
  ASSERT_TRUE(loaded.ok()) << loaded.status().message();
  EXPECT_TRUE(warnings.empty()) << testing::PrintToString(warnings);
  const Snapshot& snapshot = **loaded;
  EXPECT_EQ(snapshot.device_count(), static_cast<size_t>(kDevices));
  EXPECT_EQ(snapshot.rule_count(), 2u * kDevices + 1);
  ASSERT_EQ(snapshot.global_rules().size(), 1u);
  EXPECT_EQ(snapshot.global_rules()[0].filter, "all/#");
  size_t seen = 0;
  snapshot.ForEachDevice([&](const Device& d) {
    ++seen;
    const std::string n = d.id.substr(4);
    ASSERT_TRUE(d.has_password) << d.id;
    ASSERT_EQ(d.rules.size(), 2u) << d.id;
    EXPECT_EQ(d.rules[0].filter, "a/" + n + "/#");
    EXPECT_EQ(d.rules[1].filter, "b/" + n);
  });
  EXPECT_EQ(seen, static_cast<size_t>(kDevices));
  for (const int i : {0, 1, kDevices / 2, kDevices - 1}) {
    EXPECT_NE(snapshot.Find("dev-" + std::to_string(i)), nullptr) << i;
  }
}

// The server goes silent in the middle of a full load's device rows (a row
// policy sleeps at the 60,001st of 100,000, only in the statement that
// reads the passwords): the load fails after the stall timeout, and the
// registry loaded before stays in force; with a long stall timeout the
// interrupt fd ends such a load at once; once the server answers, the next
// load succeeds.
TEST_F(PostgresLoadTest, AFullLoadStalledInTheMiddleKeepsTheLastGoodRegistry) {
  constexpr int kDevices = 100000;
  Exec(
      "INSERT INTO devices (device_id) SELECT 'dev-' || i FROM "
      "generate_series(0, " +
      std::to_string(kDevices - 1) + ") AS i");
  std::atomic<bool> has_update{false};
  RegistryReloader reloader(url_, SystemClock::Instance(), &log_, &has_update);
  reloader.SetStallTimeoutMs(1000);
  Result<std::shared_ptr<const Snapshot>> first = reloader.LoadFirst();
  ASSERT_TRUE(first.ok()) << first.status().message();
  ASSERT_EQ((*first)->device_count(), static_cast<size_t>(kDevices));

  Exec(R"sql(
    CREATE FUNCTION stall_at(id text) RETURNS boolean LANGUAGE plpgsql AS $$
    BEGIN
      IF id = 'dev-60000' AND current_query() LIKE '%password_hash%' THEN
        PERFORM pg_sleep(30);
      END IF;
      RETURN true;
    END $$;
    CREATE POLICY stall ON devices USING (stall_at(device_id));
    ALTER TABLE devices ENABLE ROW LEVEL SECURITY;
    ALTER TABLE devices FORCE ROW LEVEL SECURITY;
  )sql");
  const auto polled_in_ms = [&] {
    const auto start = std::chrono::steady_clock::now();
    reloader.Poll(/*forced=*/true);
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::steady_clock::now() - start)
        .count();
  };
  const auto nothing_new = [&] {
    RegistryUpdate update;
    std::shared_ptr<const Snapshot> retired;
    return !reloader.TakeUpdate(&update, &retired);
  };
  const auto reconnect_due = [&] {
    return Eventually([&] { return reloader.RetryInMs() == 0; }, 5000, 5);
  };

  const int64_t stalled_ms = polled_in_ms();
  EXPECT_GE(stalled_ms, 950);
  EXPECT_LT(stalled_ms, 8000);
  std::string error;
  ASSERT_TRUE(reloader.LastError(&error));
  EXPECT_NE(error.find("no answer from the server for 1 s"), std::string::npos)
      << error;
  EXPECT_TRUE(nothing_new());
  std::vector<std::string> lines;
  ASSERT_TRUE(log_.Take(&lines));
  ASSERT_EQ(lines.size(), 1u) << testing::PrintToString(lines);
  EXPECT_NE(lines[0].find("keeping generation " +
                          std::to_string((*first)->generation())),
            std::string::npos)
      << lines[0];

  const int stop = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  ASSERT_GE(stop, 0);
  reloader.SetStallTimeoutMs(60000);
  reloader.SetInterruptFd(stop);
  ASSERT_TRUE(reconnect_due());
  std::thread stopper([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(1500));
    const uint64_t one = 1;
    (void)!write(stop, &one, sizeof(one));
  });
  const int64_t interrupted_ms = polled_in_ms();
  stopper.join();
  EXPECT_GE(interrupted_ms, 1400);
  EXPECT_LT(interrupted_ms, 8000);
  ASSERT_TRUE(reloader.LastError(&error));
  EXPECT_NE(error.find("interrupted"), std::string::npos) << error;
  EXPECT_TRUE(nothing_new());

  // The server answers again: the sleeping statements end, the policy goes.
  uint64_t drained = 0;
  (void)!read(stop, &drained, sizeof(drained));
  Exec(
      "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
      "WHERE datname = current_database() AND pid <> pg_backend_pid()");
  Exec(
      "ALTER TABLE devices DISABLE ROW LEVEL SECURITY; "
      "DROP POLICY stall ON devices");
  ASSERT_TRUE(reconnect_due());
  reloader.Poll(/*forced=*/true);
  ASSERT_TRUE(reloader.LastError(&error));
  EXPECT_EQ(error, "");
  RegistryUpdate update;
  std::shared_ptr<const Snapshot> retired;
  ASSERT_TRUE(reloader.TakeUpdate(&update, &retired));
  EXPECT_TRUE(update.full);
  EXPECT_EQ(update.snapshot->device_count(), static_cast<size_t>(kDevices));
  reloader.Close();
  close(stop);
}

// A clock that moves only when the test moves it.
class ManualClock : public Clock {
 public:
  int64_t MonotonicMs() override { return now_ms; }
  int64_t WallMs() override { return now_ms; }
  int64_t now_ms = 1000000;
};

// The reconnect delays of RegistryReloader, on a clock the test moves and
// with the jitter seeded: PostgreSQL refuses the connection (the database
// does not accept connections) or accepts it and fails the query that reads
// the generation (its column renamed). The delays grow from kFirstRetryMs to
// kMaxRetryMs, each a quarter off at most, and do not all sit on the nominal
// value; they start again from kFirstRetryMs only once the server answered
// that query, not when it merely accepted a connection.
TEST_F(PostgresLoadTest, ReconnectDelaysGrowWithJitterAndRestartOnAnAnswer) {
  Result<pg::Connection> superuser =
      pg::Connection::Open(cluster_->SuperuserConninfo());
  ASSERT_TRUE(superuser.ok()) << superuser.status().message();
  const auto connections = [&](bool allowed) {
    Status s =
        superuser->Exec("ALTER DATABASE " + name_ + " ALLOW_CONNECTIONS " +
                        (allowed ? "true" : "false"));
    EXPECT_TRUE(s.ok()) << s.message();
  };
  const auto generation_column = [&](const char* from, const char* to) {
    Exec(std::string("ALTER TABLE registry_meta RENAME COLUMN ") + from +
         " TO " + to);
  };
  ManualClock clock;
  std::atomic<bool> has_update{false};
  RegistryReloader reloader(url_, &clock, &log_, &has_update);
  reloader.SeedRetryJitter(1);
  ASSERT_TRUE(reloader.LoadFirst().ok());
  ASSERT_EQ(reloader.RetryInMs(), -1);
  // Polls once the delay has passed; the delay it then schedules (-1 when
  // connected).
  const auto poll_when_due = [&] {
    clock.now_ms += std::max<int64_t>(0, reloader.RetryInMs());
    reloader.Poll(false);
    return reloader.RetryInMs();
  };
  // Nominal delay `ms`, a quarter off at most.
  const auto around = [](int64_t got, int64_t ms) {
    return got >= ms - ms / 4 && got <= ms + ms / 4;
  };
  constexpr int kFirst = RegistryReloader::kFirstRetryMs;
  constexpr int kMax = RegistryReloader::kMaxRetryMs;
  static_assert(kFirst * 4 < kMax && kMax < kFirst * 8);

  // Connected, the query fails: the first delay. Then every attempt is
  // refused: the delays double up to the cap.
  generation_column("generation", "hidden_generation");
  connections(false);
  int64_t delay = poll_when_due();
  EXPECT_TRUE(around(delay, kFirst)) << delay;
  delay = poll_when_due();
  EXPECT_TRUE(around(delay, kFirst * 2)) << delay;
  delay = poll_when_due();
  EXPECT_TRUE(around(delay, kFirst * 4)) << delay;
  std::vector<int64_t> capped;
  for (int i = 0; i < 20; ++i) {
    capped.push_back(poll_when_due());
    EXPECT_TRUE(around(capped.back(), kMax)) << capped.back();
  }
  // Jitter: on both sides of the nominal delay, and not one value.
  EXPECT_LT(*std::min_element(capped.begin(), capped.end()), kMax)
      << testing::PrintToString(capped);
  EXPECT_GT(*std::max_element(capped.begin(), capped.end()), kMax)
      << testing::PrintToString(capped);
  std::sort(capped.begin(), capped.end());
  EXPECT_GT(std::unique(capped.begin(), capped.end()) - capped.begin(), 10)
      << testing::PrintToString(capped);

  // The connection succeeds, the server does not answer the query: the
  // delays do not start again.
  connections(true);
  delay = poll_when_due();
  EXPECT_TRUE(around(delay, kMax)) << delay;
  delay = poll_when_due();
  EXPECT_TRUE(around(delay, kMax)) << delay;

  // It answers: connected, loaded; the next failure waits the first delay.
  generation_column("hidden_generation", "generation");
  EXPECT_EQ(poll_when_due(), -1);
  std::string error = "unread";
  ASSERT_TRUE(reloader.LastError(&error));
  EXPECT_EQ(error, "");
  generation_column("generation", "hidden_generation");
  delay = poll_when_due();
  EXPECT_TRUE(around(delay, kFirst)) << delay;
  generation_column("hidden_generation", "generation");
}

}  // namespace
}  // namespace integration
}  // namespace homepot
