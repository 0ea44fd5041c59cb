#include "change_feed_scenarios.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>

#include "testing.h"

namespace homepot {
namespace test {

void ChangeFeedScenarios::Exec(const std::string& sql) {
  Status s = db_->Exec(sql);
  EXPECT_TRUE(s.ok()) << sql << ": " << s.message();
}

std::shared_ptr<const Snapshot> ChangeFeedScenarios::Full() {
  std::vector<std::string> warnings;
  auto r = LoadSnapshot(db_, &warnings);
  EXPECT_TRUE(r.ok()) << r.status().message();
  return r.ok() ? *r : nullptr;
}

ChangedSnapshot ChangeFeedScenarios::Changes(const Snapshot& base) {
  warnings_.clear();
  auto r = LoadChanges(db_, base, &warnings_);
  EXPECT_TRUE(r.ok()) << r.status().message();
  return r.ok() ? std::move(*r) : ChangedSnapshot{};
}

ChangedSnapshot ChangeFeedScenarios::ForwardMatchesFull(const Snapshot& base) {
  ChangedSnapshot moved = Changes(base);
  EXPECT_NE(moved.snapshot, nullptr);
  auto full = Full();
  if (moved.snapshot != nullptr && full != nullptr) {
    EXPECT_EQ(DescribeSnapshot(*moved.snapshot), DescribeSnapshot(*full));
  }
  return moved;
}

int64_t ChangeFeedScenarios::FeedRowsAfter(int64_t generation) {
  Result<Statement> stmt = db_->Prepare(
      "SELECT count(*) FROM registry_changes WHERE generation > ?1");
  EXPECT_TRUE(stmt.ok()) << stmt.status().message();
  if (!stmt.ok()) return -1;
  stmt->Bind(1, generation);
  Result<bool> row = stmt->Step();
  EXPECT_TRUE(row.ok() && *row);
  return row.ok() && *row ? stmt->Int(0) : -1;
}

void ChangeFeedScenarios::InsertDevices(const std::string& prefix,
                                        size_t count) {
  Exec(
      "WITH RECURSIVE n (i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n "
      "WHERE i < " +
      std::to_string(count) + ") INSERT INTO devices (device_id) SELECT '" +
      prefix + "' || i FROM n");
}

void ChangeFeedScenarios::EveryKindOfChangeMatchesAFullLoad() {
  // A rename carries the device's rules along (ON UPDATE CASCADE), as on
  // PostgreSQL and with the connections the plugin and admin open.
  if (db_->backend() == Backend::kSqlite) Exec("PRAGMA foreign_keys = ON");
  Exec(
      "INSERT INTO devices (device_id, device_type, password_hash) VALUES "
      "('a', 'iot_sensor', '" +
      EncodedHash("a") + "'), ('b', 'backend', '" + EncodedHash("b") +
      "'), ('c', 'iot_sensor', NULL)");
  auto base = Full();
  ASSERT_NE(base, nullptr);
  EXPECT_EQ(base->device_count(), 3u);
  EXPECT_TRUE(base->Find("a")->enabled);
  EXPECT_TRUE(base->Find("a")->has_password);
  EXPECT_EQ(base->Find("b")->max_payload, 262144u);

  Exec("INSERT INTO devices (device_id, device_token) VALUES ('d', 'x/d')");
  auto step = ForwardMatchesFull(*base);
  ASSERT_NE(step.snapshot, nullptr);
  EXPECT_EQ(step.changed, 1u);
  EXPECT_EQ(step.snapshot->FindByToken("x/d"), step.snapshot->Find("d"));

  Exec("UPDATE devices SET device_token = 'x/d2' WHERE device_id = 'd'");
  step = ForwardMatchesFull(*step.snapshot);
  ASSERT_NE(step.snapshot, nullptr);
  EXPECT_EQ(step.snapshot->FindByToken("x/d"), nullptr);
  EXPECT_EQ(step.snapshot->FindByToken("x/d2"), step.snapshot->Find("d"));

  Exec(
      "INSERT INTO acl_rules (device_id, topic_filter, access) VALUES "
      "('a', 'x/#', 'read'), (NULL, 'public/#', 'read')");
  step = ForwardMatchesFull(*step.snapshot);
  ASSERT_NE(step.snapshot, nullptr);
  EXPECT_EQ(step.snapshot->Find("a")->rules.size(), 1u);
  EXPECT_EQ(step.snapshot->global_rules().size(), 1u);

  Exec(
      "UPDATE device_types SET max_payload_bytes = 77 "
      "WHERE name = 'iot_sensor'");
  step = ForwardMatchesFull(*step.snapshot);
  ASSERT_NE(step.snapshot, nullptr);
  EXPECT_EQ(step.snapshot->Find("a")->max_payload, 77u);
  EXPECT_EQ(step.snapshot->Find("c")->max_payload, 77u);
  EXPECT_EQ(step.snapshot->min_type_max_payload(), 77u);

  Exec("UPDATE device_types SET max_payload_bytes = 55 WHERE name = 'unknown'");
  step = ForwardMatchesFull(*step.snapshot);
  ASSERT_NE(step.snapshot, nullptr);
  EXPECT_EQ(step.snapshot->Find("d")->max_payload, 55u);
  EXPECT_EQ(step.snapshot->unknown_type_max_payload(), 55u);

  Exec("UPDATE devices SET device_id = 'a2' WHERE device_id = 'a'");
  step = ForwardMatchesFull(*step.snapshot);
  ASSERT_NE(step.snapshot, nullptr);
  EXPECT_EQ(step.snapshot->Find("a"), nullptr);
  ASSERT_NE(step.snapshot->Find("a2"), nullptr);
  EXPECT_EQ(step.snapshot->Find("a2")->rules.size(), 1u);
  EXPECT_EQ(step.revoked, std::vector<std::string>{"a"});

  Exec("DELETE FROM acl_rules WHERE device_id IS NULL");
  step = ForwardMatchesFull(*step.snapshot);
  ASSERT_NE(step.snapshot, nullptr);
  EXPECT_TRUE(step.snapshot->global_rules().empty());
}

void ChangeFeedScenarios::RevocationsAreThoseOfAFullLoad() {
  Exec("INSERT INTO devices (device_id, password_hash) VALUES ('a', '" +
       EncodedHash("a") + "'), ('b', '" + EncodedHash("b") + "'), ('c', '" +
       EncodedHash("c") + "'), ('d', '" + EncodedHash("d") + "')");
  auto base = Full();
  ASSERT_NE(base, nullptr);
  Exec("DELETE FROM devices WHERE device_id = 'a'");
  Exec("UPDATE devices SET enabled = 0 WHERE device_id = 'b'");
  Exec("UPDATE devices SET password_hash = '" + EncodedHash("c2") +
       "' WHERE device_id = 'c'");
  Exec("UPDATE devices SET metadata = '{\"room\": 4}' WHERE device_id = 'd'");
  ChangedSnapshot moved = ForwardMatchesFull(*base);
  ASSERT_NE(moved.snapshot, nullptr);
  std::sort(moved.revoked.begin(), moved.revoked.end());
  EXPECT_EQ(moved.revoked, (std::vector<std::string>{"a", "b", "c"}));
  auto all = RevokedDevices(*base, *moved.snapshot);
  std::sort(all.begin(), all.end());
  EXPECT_EQ(moved.revoked, all);
}

void ChangeFeedScenarios::AGapOrAGenerationThatWentBackAsksForAFullLoad() {
  Exec("INSERT INTO devices (device_id) VALUES ('a')");
  auto base = Full();
  ASSERT_NE(base, nullptr);
  Exec("INSERT INTO devices (device_id) VALUES ('b')");
  Exec("INSERT INTO devices (device_id) VALUES ('c')");
  Exec("DELETE FROM registry_changes WHERE generation = " +
       std::to_string(base->generation() + 1));
  EXPECT_EQ(Changes(*base).snapshot, nullptr);

  auto now = Full();
  ASSERT_NE(now, nullptr);
  Exec("UPDATE registry_meta SET generation = 1");
  EXPECT_EQ(Changes(*now).snapshot, nullptr);
}

void ChangeFeedScenarios::InvalidRowsAreSkippedWithAWarningAsInAFullLoad() {
  auto base = Full();
  ASSERT_NE(base, nullptr);
  Exec(
      "INSERT INTO devices (device_id, password_hash) VALUES "
      "('bad-hash', 'nonsense')");
  Exec("INSERT INTO devices (device_id) VALUES ('ok')");
  Exec(
      "INSERT INTO acl_rules (device_id, topic_filter, access) VALUES "
      "('ok', 'a/#/b', 'read')");
  ChangedSnapshot moved = ForwardMatchesFull(*base);
  ASSERT_NE(moved.snapshot, nullptr);
  EXPECT_FALSE(moved.snapshot->Find("bad-hash")->has_password);
  EXPECT_TRUE(moved.snapshot->Find("ok")->rules.empty());
  EXPECT_EQ(warnings_.size(), 2u);
}

void ChangeFeedScenarios::RandomChangesEndWhereAFullLoadDoes() {
  uint32_t seed = 12345;
  const auto next = [&](uint32_t n) {
    seed = seed * 1103515245u + 12345u;
    return (seed >> 8) % n;
  };
  auto current = Full();
  ASSERT_NE(current, nullptr);
  const char* kTypes[] = {"iot_sensor", "backend", "gateway", "unknown"};
  for (int step = 0; step < 20; ++step) {
    for (int k = 0; k < 25; ++k) {
      const std::string id = "d" + std::to_string(next(60));
      switch (next(6)) {
        case 0:
          Exec(
              "INSERT INTO devices (device_id, device_type, device_token, "
              "enabled) VALUES ('" +
              id + "', '" + kTypes[next(4)] + "', " +
              (next(2) ? "'t/" + std::to_string(next(30)) + "'" : "NULL") +
              ", " + std::to_string(next(2)) +
              ") ON CONFLICT (device_id) DO UPDATE SET device_type = "
              "excluded.device_type, device_token = excluded.device_token, "
              "enabled = excluded.enabled");
          break;
        case 1:
          Exec("DELETE FROM devices WHERE device_id = '" + id + "'");
          break;
        case 2:
          Exec(
              "INSERT INTO acl_rules (device_id, topic_filter, access) "
              "SELECT '" +
              id + "', 'r/" + std::to_string(next(5)) +
              "', 'read' WHERE EXISTS (SELECT 1 FROM devices WHERE "
              "device_id = '" +
              id + "') ON CONFLICT DO NOTHING");
          break;
        case 3:
          Exec(
              "DELETE FROM acl_rules WHERE id IN (SELECT id FROM acl_rules "
              "ORDER BY id LIMIT 1)");
          break;
        case 4:
          Exec("UPDATE device_types SET max_payload_bytes = " +
               std::to_string(100 + next(1000)) + " WHERE name = '" +
               kTypes[next(4)] + "'");
          break;
        default:
          Exec(
              "INSERT INTO acl_rules (device_id, topic_filter, access) "
              "VALUES (NULL, 'g/" +
              std::to_string(next(5)) + "', 'write') ON CONFLICT DO NOTHING");
          break;
      }
    }
    ChangedSnapshot moved = ForwardMatchesFull(*current);
    ASSERT_NE(moved.snapshot, nullptr) << "step " << step;
    current = moved.snapshot;
  }
}

void ChangeFeedScenarios::ManyChangedDevicesMatchAFullLoad(int count) {
  if (db_->backend() == Backend::kSqlite) Exec("PRAGMA foreign_keys = ON");
  Exec("INSERT INTO devices (device_id) VALUES ('kept'), ('removed')");
  auto base = Full();
  ASSERT_NE(base, nullptr);
  // Ids an array literal must quote: " \\ , { } NULL, a blank, UTF-8.
  const std::vector<std::string> kOdd = {
      "q\"uote", "back\\slash", "com,ma",       "{brace}",
      "NULL",    "sp ace",      "\u00e9t\u00e9"};
  Exec("BEGIN");
  Exec(
      "WITH RECURSIVE n (i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n "
      "WHERE i < " +
      std::to_string(count) +
      ") INSERT INTO devices (device_id, device_token, enabled) "
      "SELECT 'm' || i, CASE WHEN i % 3 = 0 THEN 't/' || i END, i % 2 "
      "FROM n");
  for (const std::string& id : kOdd) {
    Exec("INSERT INTO devices (device_id) VALUES ('" + id + "')");
  }
  Exec(
      "INSERT INTO acl_rules (device_id, topic_filter, access) "
      "SELECT device_id, 'r/' || device_id, 'read' FROM devices "
      "WHERE device_id <> 'kept'");
  Exec("DELETE FROM devices WHERE device_id = 'removed'");
  Exec("COMMIT");

  const auto start = std::chrono::steady_clock::now();
  ChangedSnapshot moved = Changes(*base);
  const double ms = std::chrono::duration<double, std::milli>(
                        std::chrono::steady_clock::now() - start)
                        .count();
  std::printf("[feed] %s: %zu changed devices brought forward in %.0f ms\n",
              db_->backend() == Backend::kSqlite ? "SQLite" : "PostgreSQL",
              moved.changed, ms);
  ASSERT_NE(moved.snapshot, nullptr);
  EXPECT_EQ(moved.changed, static_cast<size_t>(count) + kOdd.size() + 1);
  auto full = Full();
  ASSERT_NE(full, nullptr);
  EXPECT_EQ(DescribeSnapshot(*moved.snapshot), DescribeSnapshot(*full));
  EXPECT_EQ(moved.snapshot->device_count(), static_cast<size_t>(count) + 8);
  for (const std::string& id : kOdd) {
    const Device* d = moved.snapshot->Find(id);
    ASSERT_NE(d, nullptr) << id;
    ASSERT_EQ(d->rules.size(), 1u) << id;
    EXPECT_EQ(d->rules[0].filter, "r/" + id);
  }
  EXPECT_EQ(moved.snapshot->Find("removed"), nullptr);
  EXPECT_EQ(moved.snapshot->FindByToken("t/3"), moved.snapshot->Find("m3"));
  EXPECT_FALSE(moved.snapshot->Find("m2")->enabled);
  EXPECT_TRUE(warnings_.empty()) << testing::PrintToString(warnings_);
}

void ChangeFeedScenarios::ABulkWriteOverTheBoundAsksForAFullLoad() {
  const bool sqlite = db_->backend() == Backend::kSqlite;
  Exec("INSERT INTO devices (device_id) VALUES ('kept'), ('removed')");
  auto base = Full();
  ASSERT_NE(base, nullptr);
  Exec("BEGIN");
  Exec("DELETE FROM devices WHERE device_id = 'removed'");
  InsertDevices("bulk", kMaxChangedDevices + 1);
  Exec("UPDATE devices SET enabled = 0 WHERE device_id = 'kept'");
  Exec("COMMIT");
  Result<int64_t> generation = ReadGeneration(db_);
  ASSERT_TRUE(generation.ok()) << generation.status().message();
  // On PostgreSQL one generation, without rows; on SQLite one per row
  // changed (two for an UPDATE, which also stamps updated_at), the last
  // kMaxChangedDevices of them kept.
  if (sqlite) {
    EXPECT_EQ(*generation, base->generation() + 1 +
                               static_cast<int64_t>(kMaxChangedDevices) + 1 +
                               2);
    EXPECT_EQ(FeedRowsAfter(base->generation()),
              static_cast<int64_t>(kMaxChangedDevices));
  } else {
    EXPECT_EQ(*generation, base->generation() + 1);
    EXPECT_EQ(FeedRowsAfter(base->generation()), 0);
  }
  EXPECT_EQ(Changes(*base).snapshot, nullptr);

  auto full = Full();
  ASSERT_NE(full, nullptr);
  EXPECT_EQ(full->generation(), *generation);
  EXPECT_EQ(full->device_count(), kMaxChangedDevices + 2);
  EXPECT_EQ(full->Find("removed"), nullptr);
  ASSERT_NE(full->Find("kept"), nullptr);
  EXPECT_FALSE(full->Find("kept")->enabled);
  EXPECT_NE(full->Find("bulk1"), nullptr);
  EXPECT_NE(full->Find("bulk" + std::to_string(kMaxChangedDevices + 1)),
            nullptr);

  Exec("DELETE FROM devices WHERE device_id = 'bulk7'");
  ChangedSnapshot next = ForwardMatchesFull(*full);
  ASSERT_NE(next.snapshot, nullptr);
  EXPECT_EQ(next.changed, 1u);
  EXPECT_EQ(next.snapshot->device_count(), kMaxChangedDevices + 1);
}

void ChangeFeedScenarios::ABulkWriteAtTheBoundGoesThroughTheFeed() {
  Exec("INSERT INTO devices (device_id) VALUES ('kept'), ('removed')");
  auto base = Full();
  ASSERT_NE(base, nullptr);
  // kMaxChangedDevices changed rows, one generation each on SQLite (no
  // UPDATE: it stamps updated_at, a second generation there).
  Exec("BEGIN");
  InsertDevices("bulk", kMaxChangedDevices - 1);
  Exec("DELETE FROM devices WHERE device_id = 'removed'");
  Exec("COMMIT");
  EXPECT_EQ(FeedRowsAfter(base->generation()),
            static_cast<int64_t>(kMaxChangedDevices));
  ChangedSnapshot moved = ForwardMatchesFull(*base);
  ASSERT_NE(moved.snapshot, nullptr);
  EXPECT_EQ(moved.changed, kMaxChangedDevices);
  EXPECT_EQ(moved.snapshot->device_count(), kMaxChangedDevices);
  EXPECT_EQ(moved.snapshot->Find("removed"), nullptr);
}

}  // namespace test
}  // namespace homepot
