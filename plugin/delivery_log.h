// The delivery log (docs/operating.md, "Delivery log"): what happened to
// each accepted notification that carries a message_id, and to each
// rejected one, as rows of the registry's notification_log table.
//
// The broker thread describes what happened as DeliveryEvents and hands
// them over in batches (RegistrySource::SubmitLog, never blocking); the
// registry thread writes them in one transaction per batch and keeps the
// table within its retention (rows and days; the oldest rows go first).
#ifndef HOMEPOT_PLUGIN_DELIVERY_LOG_H_
#define HOMEPOT_PLUGIN_DELIVERY_LOG_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <vector>

#include "broker.h"
#include "chunk_mark.h"
#include "database.h"
#include "log_queue.h"
#include "status.h"

namespace homepot {

struct DeliveryEvent {
  enum class Kind : uint8_t {
    // An accepted notification after routing: a new row whose outcome is
    // "routed" (routed > 0), "queued" (queued > 0) or "unreachable".
    kAccepted,
    // A refused notification: a new row, outcome "rejected", with `reason`
    // (a key of HOMEPOT_REJECT_REASONS).
    kRejected,
    // `device` acknowledged the notification (`message_id`, `publisher`):
    // the newest row of that notification written by this node and not
    // acked yet gets acked_at, latency_ms, status and outcome "acked".
    kAcked,
    // A copy kept for `device` expired before it was delivered: the newest
    // row of that notification written by this node whose outcome is
    // "queued" becomes "expired".
    kExpired,
  };
  Kind kind = Kind::kAccepted;
  std::string message_id;     // empty: none (kRejected only)
  std::string publisher;      // device id; empty when not a registry device
  std::string topic;          // kAccepted, kRejected
  std::string target_device;  // the device whose token `topic` is, or empty
  std::string device;         // kAcked, kExpired: the receiving device
  std::string status;         // kAcked: as the device sent it
  std::string reason;         // kRejected
  int64_t received_ms = 0;    // broker receipt time, Unix ms
  int64_t expires_ms = 0;     // 0: no expiry
  int64_t at_ms = 0;          // kAcked: acked_at; kExpired: when
  int64_t latency_ms = 0;     // kAcked: at_ms - received_ms
  uint32_t routed = 0;        // kAccepted
  uint32_t queued = 0;        // kAccepted
};

// How much of the log is kept (the options log_retention_rows and
// log_retention_days).
struct DeliveryLogRetention {
  int64_t rows = 0;  // the newest rows kept (by id); 0: the log is not written
  int days = 0;      // rows received longer ago are deleted; 0: no age limit
};

// Writes DeliveryEvents to notification_log, in the order submitted: the
// broker thread hands them over without waiting (Submit), the registry
// thread writes the oldest kMaxFlushEvents of what accumulated in one
// transaction and then trims the table to its retention (Flush); the rest
// waits, in order, for the next Flush. Consecutive new rows go in multi-row
// INSERTs of kRowsPerInsert rows (a shorter run in INSERTs of 32, 16, ... 1
// rows: few statement shapes to parse), so on PostgreSQL (one round trip
// per statement) a flush costs tens of statements, not one per event, and
// an update event still finds a row inserted just before it in the same
// chunk. Rows are only written by this class; the
// update events (kAcked, kExpired) change a row it wrote earlier, or nothing
// when that row is gone.
//
// Several nodes (brokers sharing the registry file) each write their own
// rows, every row tagged with the writer's `node`; nothing is overwritten.
// An update touches only rows of its own node: a copy is acknowledged by,
// and expires in, the broker that routed or queued it (acks are matched to
// the copies that broker sent), so that broker's row is the one that
// changes, never the row another node wrote for the same notification
// (e.g. when the publisher sent it through both, or it was bridged).
// Retention applies to the whole table, whichever node wrote the rows.
//
// Memory is bounded: at most `max_pending` events wait. Beyond that new
// events are dropped and counted (dropped()); the first drop is logged once,
// and the count when writing works again. A busy or locked file delays the
// write and nothing is lost (the events wait for the next attempt, the
// delay is logged once per distinct error, and so is the recovery); any
// other write error is handled the same way, so a table that stays unusable
// ends up dropping new events at the bound while the broker goes on. On
// PostgreSQL the statements are the same; the busy timeout is the session's
// lock_timeout, and a connection that is down or breaks is such an error.
//
// Threads: Submit on the broker thread (try-lock: never blocks); Flush on
// the registry thread, or on the thread shutting the plugin down after the
// registry thread stopped; the figures from any thread.
class DeliveryLogWriter {
 public:
  static constexpr size_t kMaxPending = 100000;
  // Events written by one Flush. It bounds how long the registry thread is
  // away from registry changes: 2,000 events are about 32 multi-row
  // statements, about a tenth of a second on PostgreSQL (less in a SQLite
  // file), while kMaxPending events still go in 50 flushes.
  static constexpr size_t kMaxFlushEvents = 2000;
  // Rows per INSERT statement: 64 rows of 11 parameters (704) stay below
  // 999, the parameter limit of SQLite builds older than 3.32 (later ones
  // allow 32,766, PostgreSQL 65,535).
  static constexpr size_t kRowsPerInsert = 64;
  // Rows the retention deletes per Flush, for each of its two limits: a
  // table far beyond them (a lowered limit, a long outage) is trimmed over
  // several flushes, none of them long.
  static constexpr size_t kMaxTrimRows = 10000;

  // `path` names the registry in messages (a file's path, or
  // a postgresql:// URL with its password masked); `node` is the node of the
  // rows it writes and updates (Config::node_id); `clock` gives "now" for the
  // age limit and times flushes.
  DeliveryLogWriter(std::string path, std::string node,
                    DeliveryLogRetention retention, Clock* clock, LogQueue* log,
                    size_t max_pending = kMaxPending);
  DeliveryLogWriter(const DeliveryLogWriter&) = delete;
  DeliveryLogWriter& operator=(const DeliveryLogWriter&) = delete;

  // Appends `batch` to the pending events (those beyond the bound are
  // dropped) and clears it; with retention.rows 0 it only clears it. Returns
  // false, leaving `batch` as it was, when the lock is held right now.
  bool Submit(std::vector<DeliveryEvent>* batch);

  // Writes the oldest kMaxFlushEvents pending events (or all, when fewer)
  // through `db` (nullptr: the file is not open, they wait), waiting at most
  // `busy_timeout_ms` for the file's lock, then applies the retention in the
  // same transaction. True when it committed (the file changed); the events
  // it wrote are gone from pending(), the others wait in order. When it
  // fails, the whole chunk waits again in front of the others and the next
  // Flush tries that same chunk again, which writes it unless the failed
  // attempt committed after all (ChunkMark: a COMMIT whose answer was lost);
  // either way its rows are in the table once.
  bool Flush(Database* db, int busy_timeout_ms);

  // Events dropped because `max_pending` were waiting, since construction.
  uint64_t dropped() const { return dropped_.load(); }
  // Events waiting to be written.
  size_t pending();
  // Duration of the last successful flush and its event count (at most
  // kMaxFlushEvents).
  int64_t last_flush_ms() const { return last_flush_ms_.load(); }
  int64_t last_flush_rows() const { return last_flush_rows_.load(); }

 private:
  // Apply, as a chunk of mark_, with the connection's busy timeout set to
  // `busy_timeout_ms` meanwhile; errors say that notification_log was not
  // written.
  Result<ChunkMark::Outcome> Write(Database* db, int busy_timeout_ms,
                                   const std::vector<DeliveryEvent>& batch);
  // Writes `batch` and applies the retention (inside Write's transaction).
  Status Apply(Database* db, const std::vector<DeliveryEvent>& batch);
  // Deletes the rows beyond the retention (inside Write's transaction).
  Status Trim(Database* db);
  // Puts a batch that could not be written back in front of the events
  // submitted since, within the bound.
  void Restore(std::vector<DeliveryEvent>* batch);

  const std::string path_;
  const std::string node_;
  const DeliveryLogRetention retention_;
  Clock* const clock_;
  LogQueue* const log_;
  const size_t max_pending_;
  std::mutex mu_;  // guards pending_ and writes of dropped_
  std::deque<DeliveryEvent> pending_;
  std::atomic<uint64_t> dropped_{0};
  // Flushing thread only.
  ChunkMark mark_;
  // Events of the chunk that failed, waiting at the front of pending_ to be
  // tried again as they are; 0: none.
  size_t retry_events_ = 0;
  std::string error_;            // the last write error
  uint64_t dropped_logged_ = 0;  // dropped() when the last drop was reported
  bool dropping_ = false;        // a drop was logged and writing not resumed
  std::atomic<int64_t> last_flush_ms_{0};
  std::atomic<int64_t> last_flush_rows_{0};
};

}  // namespace homepot

#endif  // HOMEPOT_PLUGIN_DELIVERY_LOG_H_
