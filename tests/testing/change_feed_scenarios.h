// The change-feed scenarios, written once and run on both backends (the
// SQLite unit tests, tests/registry_changes_test.cc, and the PostgreSQL
// integration tests, tests/integration/postgres_load_test.cc): each starts
// from an empty registry (schema applied) reached through `db`, makes
// changes with SQL valid on both, and holds what LoadChanges brings forward
// to what a full LoadSnapshot reads, with gtest assertions.
#ifndef HOMEPOT_TESTS_TESTING_CHANGE_FEED_SCENARIOS_H_
#define HOMEPOT_TESTS_TESTING_CHANGE_FEED_SCENARIOS_H_

#include <memory>
#include <string>
#include <vector>

#include "database.h"
#include "registry.h"

namespace homepot {
namespace test {

class ChangeFeedScenarios {
 public:
  explicit ChangeFeedScenarios(Database* db) : db_(db) {}

  // Devices, tokens, own and global rules, type limits, a rename, removal.
  void EveryKindOfChangeMatchesAFullLoad();
  // The revocations of a change are those RevokedDevices finds.
  void RevocationsAreThoseOfAFullLoad();
  // A gap in the feed, and a generation that went back, ask for a full load.
  void AGapOrAGenerationThatWentBackAsksForAFullLoad();
  // Rows a load skips are skipped, with the same warnings, by the feed.
  void InvalidRowsAreSkippedWithAWarningAsInAFullLoad();
  // 20 steps of 25 random changes end exactly where a full load does.
  void RandomChangesEndWhereAFullLoadDoes();
  // `count` devices added in one transaction with a rule each, a token on a
  // third, ids that need quoting in an array literal, and a removal: the
  // feed brings them all at once. Prints the time LoadChanges took.
  void ManyChangedDevicesMatchAFullLoad(int count);
  // A transaction that writes kMaxChangedDevices + 1 devices (and removes
  // and changes one) leaves a gap in the feed: no rows for its generation
  // on PostgreSQL, only its last kMaxChangedDevices generations on SQLite.
  // A reader loads in full and has every device; the feed serves again for
  // the next change.
  void ABulkWriteOverTheBoundAsksForAFullLoad();
  // One of kMaxChangedDevices keeps its feed rows: the feed brings a
  // snapshot forward over it.
  void ABulkWriteAtTheBoundGoesThroughTheFeed();

  // The helpers the scenarios use, for a backend's own tests.
  void Exec(const std::string& sql);
  std::shared_ptr<const Snapshot> Full();
  ChangedSnapshot Changes(const Snapshot& base);
  // Changes(base), checked field by field against Full().
  ChangedSnapshot ForwardMatchesFull(const Snapshot& base);
  // The feed rows with a generation above `generation`.
  int64_t FeedRowsAfter(int64_t generation);
  // INSERT INTO devices of `count` devices <prefix>1 ... <prefix><count> in
  // one statement.
  void InsertDevices(const std::string& prefix, size_t count);
  const std::vector<std::string>& warnings() const { return warnings_; }

 private:
  Database* const db_;
  std::vector<std::string> warnings_;  // of the last Changes
};

}  // namespace test
}  // namespace homepot

#endif  // HOMEPOT_TESTS_TESTING_CHANGE_FEED_SCENARIOS_H_
