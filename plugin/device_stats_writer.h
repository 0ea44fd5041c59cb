// Adds per-device statistics to the registry's device_stats table: the
// broker thread hands deltas over without waiting (Submit), the registry
// thread merges what accumulated and writes the rows of at most
// kMaxFlushDevices devices in one transaction (Flush); the other devices'
// deltas wait for the next Flush. Flushes go in rounds: a round takes the
// devices waiting when it begins and ends before the next begins (its last
// chunk topped up with newer deltas), so no device waits longer than one
// round, however many others keep sending.
// It writes only the rows of its node, (device_id, node): brokers sharing
// the file each add to their own rows and never touch another node's, so
// the fleet_stats view sums exact figures. Counters are added and times
// keep the latest; presence (sessions, subscribed) is absolute: a delta with
// presence_changed replaces the pending or stored values of this node's
// row, one without leaves them. A busy or locked file delays the write;
// nothing is lost or counted twice (a chunk is one transaction; when it
// fails it is tried again as it was, and ChunkMark makes sure a chunk whose
// COMMIT took effect without an answer is not added again; the delay is
// logged once). Rows of devices no longer registered
// are not written. On PostgreSQL the statements are the same; the busy timeout
// is the session's lock_timeout, and a connection that is down or breaks delays
// the write as a busy file does.
//
// Threads: Submit on the broker thread (try-lock: never blocks); Flush on
// the registry thread, or on the thread shutting the plugin down after the
// registry thread stopped; ResetPresence on the thread starting the plugin,
// before the registry thread starts, or stopping it, after the registry
// thread stopped; the figures from any thread.
#ifndef HOMEPOT_PLUGIN_DEVICE_STATS_WRITER_H_
#define HOMEPOT_PLUGIN_DEVICE_STATS_WRITER_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "broker.h"
#include "chunk_mark.h"
#include "database.h"
#include "log_queue.h"
#include "stats.h"
#include "status.h"

namespace homepot {

class DeviceStatsWriter {
 public:
  // Devices written by one Flush: one statement (a PostgreSQL round trip)
  // each, so 500 bound the registry thread's time away from registry
  // changes to about a tenth of a second on PostgreSQL.
  static constexpr size_t kMaxFlushDevices = 500;

  // `path` names the registry in messages (a file's path, or
  // a postgresql:// URL with its password masked); `node` is the node of the
  // rows it writes (Config::node_id).
  DeviceStatsWriter(std::string path, std::string node, Clock* clock,
                    LogQueue* log);
  DeviceStatsWriter(const DeviceStatsWriter&) = delete;
  DeviceStatsWriter& operator=(const DeviceStatsWriter&) = delete;

  // Merges `batch` into the pending deltas and clears it. Returns false,
  // leaving `batch` as it was, when the lock is held right now.
  bool Submit(std::vector<DeviceStatsDelta>* batch);

  // Writes the pending deltas of at most kMaxFlushDevices devices through
  // `db` (nullptr: the file is not open, they wait), waiting at most
  // `busy_timeout_ms` for the file's lock. True when a write was committed
  // (the file may have changed); the deltas of the other devices wait
  // (pending()).
  bool Flush(Database* db, int busy_timeout_ms);

  // Devices whose deltas wait to be written (one with deltas in the current
  // round and newer ones counts twice).
  size_t pending();

  // Sets sessions and subscribed to 0 on every row of this node (nobody is
  // connected to it when the plugin starts or stops; other nodes' rows
  // stay), flushing as Flush does until the reset is committed; registry
  // tables and their generation are untouched. A chunk being tried again
  // goes first, as it was; the reset goes first in the transaction of the
  // next one. True when the reset was committed; otherwise it stays
  // pending.
  bool ResetPresence(Database* db, int busy_timeout_ms);

  // Duration of the last successful flush and its row count (at most
  // kMaxFlushDevices).
  int64_t last_flush_ms() const { return last_flush_ms_.load(); }
  int64_t last_flush_rows() const { return last_flush_rows_.load(); }

 private:
  // Upsert, as a chunk of mark_, with the connection's busy timeout set to
  // `busy_timeout_ms` meanwhile; errors say that device_stats was not
  // written.
  Result<ChunkMark::Outcome> Write(
      Database* db, int busy_timeout_ms, bool reset_presence,
      const std::unordered_map<std::string, DeviceCounters>& batch);
  // Adds `batch` to this node's rows (inside Write's transaction), after
  // resetting the presence of its rows when `reset_presence`.
  Status Upsert(Database* db, bool reset_presence,
                const std::unordered_map<std::string, DeviceCounters>& batch);
  Status ResetPresenceRows(Database* db);

  const std::string path_;
  const std::string node_;
  Clock* const clock_;
  LogQueue* const log_;
  std::mutex mu_;  // guards pending_, round_ and retry_
  // Deltas submitted since the current round began.
  std::unordered_map<std::string, DeviceCounters> pending_;
  // The current round: the deltas pending when it began, not yet written.
  std::unordered_map<std::string, DeviceCounters> round_;
  // The chunk that failed, to be tried again as it is (ChunkMark's rule):
  // its deltas (retry_, which may be empty) and whether it reset presence.
  std::unordered_map<std::string, DeviceCounters> retry_;
  bool retrying_ = false;       // flushing thread only: a chunk failed
  bool retry_reset_ = false;    // flushing thread only
  ChunkMark mark_;              // flushing thread only
  std::string error_;           // flushing thread only: the last write error
  bool reset_pending_ = false;  // flushing thread only
  std::atomic<int64_t> last_flush_ms_{0};
  std::atomic<int64_t> last_flush_rows_{0};
};

}  // namespace homepot

#endif  // HOMEPOT_PLUGIN_DEVICE_STATS_WRITER_H_
