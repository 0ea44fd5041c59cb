// schema/postgresql.sql on a real PostgreSQL server, through common/pg.h:
// the constraints, the change feed and its notifications, fleet_stats.
#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "device.h"
#include "device_ids.h"
#include "harness.h"
#include "pg.h"
#include "postgres.h"
#include "registry.h"
#include "rfc3339.h"

namespace homepot {
namespace integration {
namespace {

using pg::Connection;
using pg::Params;
using pg::Rows;

constexpr const char* kChannel = "homepot_registry";

// One row of registry_changes.
using Change = std::tuple<int64_t, std::string, std::string>;

class PostgresRegistryTest : public testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(cluster_.Start());
    ASSERT_TRUE(cluster_.CreateRegistry("registry"));
    Result<Connection> conn = Open();
    ASSERT_TRUE(conn.ok()) << conn.status().message();
    conn_.emplace(std::move(*conn));
  }

  // A new connection to the registry as the password-authenticated role
  // (the password from the passfile).
  Result<Connection> Open() {
    return Connection::Open(cluster_.Url("registry"));
  }

  testing::AssertionResult Sql(const std::string& sql,
                               const Params& params = {}) {
    Result<Rows> rows = conn_->Run(sql, params);
    if (!rows.ok()) {
      return testing::AssertionFailure() << rows.status().message();
    }
    return testing::AssertionSuccess();
  }

  // The error of a statement that must fail ("" when it succeeded).
  std::string Refusal(const std::string& sql, const Params& params = {}) {
    Result<Rows> rows = conn_->Run(sql, params);
    return rows.ok() ? "" : rows.status().message();
  }

  // The single value a query yields: -1 or "" (and a test failure) when it
  // fails or yields no row.
  int64_t Int(const std::string& sql) {
    Result<Rows> rows = conn_->Run(sql);
    EXPECT_TRUE(rows.ok() && rows->rows() == 1)
        << sql << ": " << rows.status().message();
    return rows.ok() && rows->rows() == 1 ? rows->Int(0, 0) : -1;
  }
  std::string Text(const std::string& sql) {
    Result<Rows> rows = conn_->Run(sql);
    EXPECT_TRUE(rows.ok() && rows->rows() == 1)
        << sql << ": " << rows.status().message();
    return rows.ok() && rows->rows() == 1 ? rows->Text(0, 0) : "";
  }

  int64_t Generation() {
    return Int("SELECT generation FROM registry_meta WHERE id = 1");
  }

  // The feed rows above `generation`, in order.
  std::vector<Change> ChangesAfter(int64_t generation) {
    Result<Rows> rows = conn_->Run(
        "SELECT generation, kind, name FROM registry_changes "
        "WHERE generation > $1 ORDER BY generation, kind, name",
        {std::to_string(generation)});
    EXPECT_TRUE(rows.ok()) << rows.status().message();
    std::vector<Change> out;
    for (int r = 0; rows.ok() && r < rows->rows(); ++r) {
      out.emplace_back(rows->Int(r, 0), rows->Text(r, 1), rows->Text(r, 2));
    }
    return out;
  }

  test::PostgresCluster cluster_;
  std::optional<Connection> conn_;
};

TEST_F(PostgresRegistryTest, TheSchemaAppliesTwiceAndIsVersionFour) {
  ASSERT_TRUE(conn_->Exec(test::PostgresSchemaSql()).ok());
  EXPECT_EQ(Int("SELECT schema_version FROM registry_meta"), 4);
  EXPECT_EQ(Generation(), 1);
  EXPECT_EQ(Int("SELECT count(*) FROM registry_changes"), 0);
  EXPECT_EQ(Int("SELECT count(*) FROM device_types"), 7);
  EXPECT_EQ(Int("SELECT max_payload_bytes FROM device_types "
                "WHERE name = 'bridge'"),
            262144);
  EXPECT_EQ(Int("SELECT max_payload_bytes FROM device_types "
                "WHERE name = 'unknown'"),
            kDefaultMaxPayloadBytes);
}

TEST_F(PostgresRegistryTest, TimesAreStampsOfTheSqliteForm) {
  const int64_t before = WallMs();
  ASSERT_TRUE(Sql("INSERT INTO devices (device_id) VALUES ('d')"));
  const std::string created = Text("SELECT created_at FROM devices");
  EXPECT_EQ(created.size(), kStampLen) << created;
  EXPECT_EQ(Text("SELECT updated_at FROM devices"), created);
  const int64_t ms = ParseStampMs(created);
  EXPECT_GE(ms, before - 1000) << created;
  EXPECT_LE(ms, WallMs() + 1000) << created;

  // An update that sets updated_at keeps it; one that leaves it alone
  // stamps it.
  const std::string old_stamp = "2000-01-01T00:00:00.000Z";
  ASSERT_TRUE(Sql("UPDATE devices SET updated_at = $1", {old_stamp}));
  EXPECT_EQ(Text("SELECT updated_at FROM devices"), old_stamp);
  ASSERT_TRUE(Sql("UPDATE devices SET enabled = 0"));
  EXPECT_GE(ParseStampMs(Text("SELECT updated_at FROM devices")), ms);
}

// PostgreSQL accepts exactly the ids DeviceIdProblem accepts: the CHECK
// refuses the rule's clauses, the UTF8 encoding invalid UTF-8, and the
// connection refuses a parameter with a NUL byte before sending it.
TEST_F(PostgresRegistryTest, DeviceIdCheckSpellsTheRuleOfDeviceH) {
  int valid = 0;
  int invalid = 0;
  for (const std::string& id : test::DeviceIdCorpus()) {
    const std::string error =
        Refusal("INSERT INTO devices (device_id) VALUES ($1)", {id});
    const bool accepted = error.empty();
    EXPECT_EQ(accepted, IsValidDeviceId(id)) << "'" << id << "': " << error;
    (accepted ? valid : invalid)++;
    if (accepted) continue;
    const bool known_refusal =
        error.find("device_id_format") != std::string::npos ||
        error.find("invalid byte sequence for encoding \"UTF8\"") !=
            std::string::npos ||
        error.find("contains a NUL byte") != std::string::npos;
    EXPECT_TRUE(known_refusal) << "'" << id << "': " << error;
  }
  EXPECT_GE(valid, 10);
  EXPECT_GE(invalid, 20);
}

TEST_F(PostgresRegistryTest, ConstraintsRefuseWhatSqliteRefuses) {
  const std::string insert =
      "INSERT INTO devices (device_id, device_token, metadata, enabled, "
      "device_type) VALUES ($1, $2, $3, $4, $5)";
  auto device = [](std::optional<std::string> token, std::string metadata,
                   std::string enabled, std::string type) {
    static int n = 0;
    return Params{"d" + std::to_string(++n), std::move(token),
                  std::move(metadata), std::move(enabled), std::move(type)};
  };
  EXPECT_TRUE(Sql(insert, device(std::nullopt, "{}", "1", "unknown")));
  EXPECT_TRUE(Sql(insert, device("a/b/c", "{\"k\":[1]}", "0", "bridge")));
  EXPECT_TRUE(Sql(insert, device("t", "[1]", "1", "gateway")));  // any JSON
  EXPECT_NE(Refusal(insert, device("a/+/c", "{}", "1", "unknown"))
                .find("device_token_format"),
            std::string::npos);
  EXPECT_NE(Refusal(insert, device("a/#", "{}", "1", "unknown"))
                .find("device_token_format"),
            std::string::npos);
  EXPECT_NE(Refusal(insert, device("", "{}", "1", "unknown"))
                .find("device_token_format"),
            std::string::npos);
  EXPECT_NE(Refusal(insert, device(std::nullopt, "{\"a\":", "1", "unknown"))
                .find("metadata_json"),
            std::string::npos);
  EXPECT_NE(Refusal(insert, device(std::nullopt, "{}", "2", "unknown"))
                .find("enabled_check"),
            std::string::npos);
  EXPECT_NE(Refusal(insert, device(std::nullopt, "{}", "1", "no_such_type"))
                .find("SQLSTATE 23503"),
            std::string::npos);

  const std::string grant =
      "INSERT INTO acl_rules (device_id, topic_filter, access) "
      "VALUES ($1, $2, $3)";
  for (const char* access : {"read", "write", "readwrite", "deny"}) {
    EXPECT_TRUE(Sql(grant, {"d1", "a/%u/#", access}));
  }
  EXPECT_NE(Refusal(grant, {"d1", "x", "READ"}).find("access_value"),
            std::string::npos);
  EXPECT_NE(Refusal(grant, {"d1", "x", "admin"}).find("access_value"),
            std::string::npos);
  EXPECT_NE(Refusal(grant, {"d1", "", "read"}).find("topic_filter_check"),
            std::string::npos);
  EXPECT_NE(Refusal(grant, {"d1", "a/%u/#", "read"}).find("SQLSTATE 23505"),
            std::string::npos);
  EXPECT_NE(Refusal(grant, {"nobody", "x", "read"}).find("SQLSTATE 23503"),
            std::string::npos);
}

// Each statement below is a transaction of its own: one generation, with a
// feed row for the keys of the rows each table's statement changed.
TEST_F(PostgresRegistryTest, EachTransactionIsOneGenerationWithItsKeys) {
  const int64_t g = Generation();
  ASSERT_TRUE(Sql("INSERT INTO devices (device_id) VALUES ('a')"));
  ASSERT_TRUE(Sql("UPDATE devices SET enabled = 0 WHERE device_id = 'a'"));
  ASSERT_TRUE(
      Sql("INSERT INTO acl_rules (device_id, topic_filter, access) "
          "VALUES ('a', 'x/#', 'read'), (NULL, 'y', 'write')"));
  // Renamed: the device row and its rule (ON UPDATE CASCADE).
  ASSERT_TRUE(Sql("UPDATE devices SET device_id = 'b' WHERE device_id = 'a'"));
  // A global rule made the device's.
  ASSERT_TRUE(
      Sql("UPDATE acl_rules SET device_id = 'b' WHERE topic_filter = "
          "'y'"));
  ASSERT_TRUE(Sql("INSERT INTO device_types VALUES ('t', 5)"));
  ASSERT_TRUE(Sql("UPDATE device_types SET name = 'u' WHERE name = 't'"));
  // Deleted: the device row and its two rules (ON DELETE CASCADE).
  ASSERT_TRUE(Sql("DELETE FROM devices WHERE device_id = 'b'"));
  // Statements that change no row take no generation.
  ASSERT_TRUE(Sql("UPDATE devices SET enabled = 0 WHERE device_id = 'z'"));
  ASSERT_TRUE(Sql("DELETE FROM acl_rules WHERE device_id = 'z'"));

  const std::vector<Change> expected = {
      {g + 1, "device", "a"}, {g + 2, "device", "a"}, {g + 3, "device", "a"},
      {g + 3, "global", ""},  {g + 4, "device", "a"}, {g + 4, "device", "a"},
      {g + 4, "device", "b"}, {g + 4, "device", "b"}, {g + 5, "device", "b"},
      {g + 5, "global", ""},  {g + 6, "type", "t"},   {g + 7, "type", "t"},
      {g + 7, "type", "u"},   {g + 8, "device", "b"}, {g + 8, "device", "b"},
  };
  EXPECT_EQ(ChangesAfter(g), expected);
  EXPECT_EQ(Generation(), g + 8);

  // A failed statement leaves no trace.
  EXPECT_FALSE(Sql("INSERT INTO devices (device_id) VALUES ('$bad')"));
  EXPECT_EQ(Generation(), g + 8);
  EXPECT_TRUE(ChangesAfter(g + 8).empty());
}

// The second of two concurrent writers waits for the first's lock on the
// registry_meta row, so it takes the next generation only once the first
// has committed: generations become visible in order.
TEST_F(PostgresRegistryTest, ConcurrentWritersTakeGenerationsInCommitOrder) {
  Result<Connection> first = Open();
  Result<Connection> second = Open();
  ASSERT_TRUE(first.ok()) << first.status().message();
  ASSERT_TRUE(second.ok()) << second.status().message();
  const int64_t g = Generation();
  Result<pg::Transaction> tx = pg::Transaction::Begin(&*first);
  ASSERT_TRUE(tx.ok()) << tx.status().message();
  ASSERT_TRUE(
      first->Run("INSERT INTO devices (device_id) VALUES ('one')").ok());

  Status second_done;
  std::thread writer([&] {
    Result<Rows> rows =
        second->Run("INSERT INTO devices (device_id) VALUES ('two')");
    second_done = rows.ok() ? Status::Ok() : rows.status();
  });
  const std::string waiting =
      "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
      "AND pid = " +
      std::to_string(second->backend_pid());
  EXPECT_TRUE(Eventually([&] { return Int(waiting) == 1; }, 5000));
  EXPECT_TRUE(tx->Commit().ok());
  writer.join();
  EXPECT_TRUE(second_done.ok()) << second_done.message();

  const std::vector<Change> expected = {{g + 1, "device", "one"},
                                        {g + 2, "device", "two"}};
  EXPECT_EQ(ChangesAfter(g), expected);
}

TEST_F(PostgresRegistryTest, TheFeedKeepsTheLast100000Generations) {
  const int64_t g = Generation();
  ASSERT_TRUE(Sql("INSERT INTO devices (device_id) VALUES ('a')"));  // g + 1
  ASSERT_TRUE(Sql("INSERT INTO devices (device_id) VALUES ('b')"));  // g + 2
  // As if 99998 more changes had come (their rows pruned or not).
  ASSERT_TRUE(Sql("UPDATE registry_meta SET generation = generation + 99998"));
  ASSERT_TRUE(Sql("INSERT INTO devices (device_id) VALUES ('c')"));
  const int64_t last = g + 2 + 99998 + 1;
  ASSERT_EQ(Generation(), last);
  // The last 100000 generations are g + 2 ... last: g + 1 is pruned.
  const std::vector<Change> expected = {{g + 2, "device", "b"},
                                        {last, "device", "c"}};
  EXPECT_EQ(ChangesAfter(0), expected);
}

// NOTIFY reaches a listener when the writer commits, and never for a
// rolled-back change. "Not before" is checked with a barrier: a NOTIFY
// committed by a third session after the writer's change; notifications
// are delivered in commit order, so anything already due arrives first.
TEST_F(PostgresRegistryTest, TheNotificationComesAtCommit) {
  Result<Connection> listener = Open();
  Result<Connection> writer = Open();
  ASSERT_TRUE(listener.ok()) << listener.status().message();
  ASSERT_TRUE(writer.ok()) << writer.status().message();
  ASSERT_TRUE(listener->Listen(kChannel).ok());
  const int64_t g = Generation();
  auto barrier = [&](const std::string& name) -> testing::AssertionResult {
    Status sent =
        conn_->Exec(std::string("NOTIFY ") + kChannel + ", '" + name + "'");
    if (!sent.ok()) return testing::AssertionFailure() << sent.message();
    Result<std::vector<pg::Notification>> got =
        listener->WaitForNotifications(5000);
    if (!got.ok()) return testing::AssertionFailure() << got.status().message();
    if (got->empty() || got->front().payload != name) {
      return testing::AssertionFailure()
             << got->size() << " notification(s) before the barrier, first: "
             << (got->empty() ? "none" : got->front().payload);
    }
    return testing::AssertionSuccess();
  };

  {
    Result<pg::Transaction> tx = pg::Transaction::Begin(&*writer);
    ASSERT_TRUE(tx.ok()) << tx.status().message();
    ASSERT_TRUE(
        writer->Run("INSERT INTO devices (device_id) VALUES ('r')").ok());
    EXPECT_TRUE(barrier("before rollback"));
  }  // rolled back
  EXPECT_TRUE(barrier("after rollback"));
  EXPECT_EQ(Generation(), g);

  Result<pg::Transaction> tx = pg::Transaction::Begin(&*writer);
  ASSERT_TRUE(tx.ok()) << tx.status().message();
  ASSERT_TRUE(writer->Run("INSERT INTO devices (device_id) VALUES ('c')").ok());
  EXPECT_TRUE(barrier("before commit"));
  ASSERT_TRUE(tx->Commit().ok());
  Result<std::vector<pg::Notification>> got =
      listener->WaitForNotifications(5000);
  ASSERT_TRUE(got.ok()) << got.status().message();
  ASSERT_EQ(got->size(), 1u);
  EXPECT_EQ(got->front().channel, kChannel);
  EXPECT_EQ(got->front().payload, std::to_string(g + 1));
  EXPECT_EQ(got->front().backend_pid, writer->backend_pid());
}

// A transaction past the feed's bound still takes its one generation and
// sends its notification, without feed rows.
TEST_F(PostgresRegistryTest, ABulkWritePastTheBoundIsNotifiedWithoutRows) {
  Result<Connection> listener = Open();
  ASSERT_TRUE(listener.ok()) << listener.status().message();
  ASSERT_TRUE(listener->Listen(kChannel).ok());
  const int64_t g = Generation();
  ASSERT_TRUE(
      Sql("INSERT INTO devices (device_id) SELECT 'd' || i FROM "
          "generate_series(1, $1::int) AS i",
          {std::to_string(kMaxChangedDevices + 1)}));
  Result<std::vector<pg::Notification>> got =
      listener->WaitForNotifications(5000);
  ASSERT_TRUE(got.ok()) << got.status().message();
  ASSERT_EQ(got->size(), 1u);
  EXPECT_EQ(got->front().payload, std::to_string(g + 1));
  EXPECT_EQ(Generation(), g + 1);
  EXPECT_TRUE(ChangesAfter(g).empty());
}

TEST_F(PostgresRegistryTest, ResetListensAgain) {
  Result<Connection> listener = Open();
  ASSERT_TRUE(listener.ok()) << listener.status().message();
  ASSERT_TRUE(listener->Listen(kChannel).ok());
  ASSERT_TRUE(Sql("SELECT pg_terminate_backend($1::int)",
                  {std::to_string(listener->backend_pid())}));
  // The server closes the socket: reading it shows the connection broken.
  EXPECT_FALSE(listener->WaitForNotifications(5000).ok());
  EXPECT_FALSE(listener->ok());
  Status reset = listener->Reset();
  ASSERT_TRUE(reset.ok()) << reset.message();
  ASSERT_TRUE(Sql("INSERT INTO devices (device_id) VALUES ('a')"));
  Result<std::vector<pg::Notification>> got =
      listener->WaitForNotifications(5000);
  ASSERT_TRUE(got.ok()) << got.status().message();
  ASSERT_EQ(got->size(), 1u);
  EXPECT_EQ(got->front().payload, std::to_string(Generation()));
}

TEST_F(PostgresRegistryTest, ACommitAfterAFailedStatementIsARollback) {
  Result<pg::Transaction> tx = pg::Transaction::Begin(&*conn_);
  ASSERT_TRUE(tx.ok());
  ASSERT_TRUE(Sql("INSERT INTO devices (device_id) VALUES ('a')"));
  ASSERT_FALSE(Sql("INSERT INTO devices (device_id) VALUES ('a')"));
  Status committed = tx->Commit();
  EXPECT_FALSE(committed.ok());
  EXPECT_NE(committed.message().find("rolled back"), std::string::npos)
      << committed.message();
  EXPECT_EQ(Int("SELECT count(*) FROM devices"), 0);
}

TEST_F(PostgresRegistryTest, FleetStatsAddsUpTheNodes) {
  const std::string upsert =
      "INSERT INTO device_stats (device_id, node, published, delivered, "
      "rejected, expired, acked, sessions, subscribed, last_connect, "
      "last_publish, last_delivery) "
      "VALUES ($1, $2, $3, $3, $3, $3, $3, $4, $4, $5, $6, NULL) "
      "ON CONFLICT (device_id, node) DO UPDATE SET "
      "published = device_stats.published + excluded.published, "
      "sessions = excluded.sessions";
  ASSERT_TRUE(Sql(upsert, {"d", "n1", "2", "1", "2026-11-25T10:00:00.000Z",
                           "2026-11-25T09:00:00.000Z"}));
  ASSERT_TRUE(Sql(upsert, {"d", "n1", "3", "1", "2026-11-25T10:00:00.000Z",
                           "2026-11-25T09:00:00.000Z"}));
  ASSERT_TRUE(Sql(upsert, {"d", "n2", "10", "2", "2026-11-25T08:00:00.000Z",
                           std::nullopt}));
  ASSERT_TRUE(Sql(upsert, {"e", "n2", "7", "0", std::nullopt, std::nullopt}));

  Result<Rows> rows = conn_->Run(
      "SELECT device_id, published, delivered, rejected, expired, acked, "
      "sessions, subscribed, last_connect, last_publish, last_delivery, "
      "nodes FROM fleet_stats ORDER BY device_id");
  ASSERT_TRUE(rows.ok()) << rows.status().message();
  ASSERT_EQ(rows->rows(), 2);
  EXPECT_EQ(rows->Text(0, 0), "d");
  EXPECT_EQ(rows->Int(0, 1), 15);  // 2 + 3 on n1, 10 on n2
  for (int column = 2; column <= 5; ++column) {
    EXPECT_EQ(rows->Int(0, column), 12) << column;  // 2 on n1, 10 on n2
  }
  EXPECT_EQ(rows->Int(0, 6), 3);
  EXPECT_EQ(rows->Int(0, 7), 3);
  EXPECT_EQ(rows->Text(0, 8), "2026-11-25T10:00:00.000Z");
  EXPECT_EQ(rows->Text(0, 9), "2026-11-25T09:00:00.000Z");
  EXPECT_TRUE(rows->IsNull(0, 10));
  EXPECT_EQ(rows->Int(0, 11), 2);
  EXPECT_EQ(rows->Text(1, 0), "e");
  EXPECT_EQ(rows->Int(1, 1), 7);
  EXPECT_TRUE(rows->IsNull(1, 8));
  EXPECT_EQ(rows->Int(1, 11), 1);

  // Statistics are not registry changes.
  EXPECT_EQ(Generation(), 1);
}

TEST_F(PostgresRegistryTest, TheNotificationLogCarriesTheNode) {
  ASSERT_TRUE(
      Sql("INSERT INTO notification_log (topic, received_at, outcome) "
          "VALUES ('t', '2026-11-25T10:00:00.000Z', 'routed')"));
  ASSERT_TRUE(
      Sql("INSERT INTO notification_log (topic, received_at, outcome, "
          "node) VALUES ('t', '2026-11-25T10:00:00.001Z', 'acked', "
          "'n2')"));
  EXPECT_FALSE(
      Sql("INSERT INTO notification_log (topic, received_at, outcome) "
          "VALUES ('t', '2026-11-25T10:00:00.000Z', 'lost')"));
  Result<Rows> rows =
      conn_->Run("SELECT id, node FROM notification_log ORDER BY id");
  ASSERT_TRUE(rows.ok()) << rows.status().message();
  ASSERT_EQ(rows->rows(), 2);
  EXPECT_LT(rows->Int(0, 0), rows->Int(1, 0));
  EXPECT_EQ(rows->Text(0, 1), "");
  EXPECT_EQ(rows->Text(1, 1), "n2");
}

TEST_F(PostgresRegistryTest, PasswordsComeFromThePassfileOrTheUrl) {
  Result<Connection> with_password =
      Connection::Open(cluster_.UrlWithPassword("registry"));
  EXPECT_TRUE(with_password.ok()) << with_password.status().message();

  const std::string wrong = "postgresql://homepot:not-the-password@127.0.0.1:" +
                            std::to_string(cluster_.port()) + "/registry";
  Result<Connection> refused = Connection::Open(wrong);
  ASSERT_FALSE(refused.ok());
  const std::string& message = refused.status().message();
  EXPECT_EQ(message.rfind(pg::MaskedUrl(wrong) + ": ", 0), 0u) << message;
  EXPECT_NE(message.find("password authentication failed"), std::string::npos)
      << message;
  EXPECT_EQ(message.find("not-the-password"), std::string::npos) << message;
}

}  // namespace
}  // namespace integration
}  // namespace homepot
