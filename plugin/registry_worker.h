// The real RegistrySource: one background thread over the registry (a
// SQLite file or a PostgreSQL database, see RegistryReloader) that runs a
// RegistryReloader (polls every reload_interval_ms, or at once after
// RequestReload), a DeviceStatsWriter and a DeliveryLogWriter (write
// submitted device stats and delivery events). Each pass polls the registry
// first, then writes one bounded chunk of the stats and one of the log
// (DeviceStatsWriter::kMaxFlushDevices, DeliveryLogWriter::kMaxFlushEvents);
// while a chunk was written and more wait, the next pass starts at once, so
// a backlog is written at full speed and a registry change (a revocation)
// waits behind at most one chunk of each. The broker thread never waits for
// it: every RegistrySource method it calls only tries the lock (and, on
// PostgreSQL, writes to an eventfd).
//
// One thread, not three: the jobs share the one connection. All are slow,
// rare and low-priority; the thread runs at nice 10 and is named
// "homepot-reg".
//
// On PostgreSQL the thread sleeps in poll() on the connection's socket (a
// change notification wakes it) and on an eventfd that RequestReload,
// SubmitStats, SubmitLog and Shutdown write, for reload_interval_ms at most
// (the generation is read then too), or until the next reconnect attempt
// while the database is away. Meanwhile the last good snapshot stays in
// force, and submitted stats and events wait (as they do for a busy file).
// Shutdown also writes a second eventfd, the connection's interrupt fd
// (pg::Options): a statement or connection attempt that waits on a stalled
// server ends at once, so the stop never waits for the database.
#ifndef HOMEPOT_PLUGIN_REGISTRY_WORKER_H_
#define HOMEPOT_PLUGIN_REGISTRY_WORKER_H_

#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "broker.h"
#include "delivery_log.h"
#include "device_stats_writer.h"
#include "log_queue.h"
#include "registry.h"
#include "registry_reloader.h"
#include "registry_source.h"
#include "stats.h"
#include "status.h"

namespace homepot {

class RegistryWorker : public RegistrySource {
 public:
  // `location` is the registry file's path or a postgresql:// URL
  // (Config's RegistryLocation). `node` tags this broker's rows of
  // device_stats and notification_log (Config::node_id); `retention` bounds
  // the delivery log; `clock` times loads and flushes and dates the log's
  // age limit (read on the worker thread).
  RegistryWorker(std::string location, std::string node, int interval_ms,
                 DeliveryLogRetention retention,
                 Clock* clock = SystemClock::Instance());
  ~RegistryWorker() override;  // Shutdown()
  RegistryWorker(const RegistryWorker&) = delete;
  RegistryWorker& operator=(const RegistryWorker&) = delete;

  // Opens the registry, checks the schema and loads the first snapshot on
  // the calling thread, sets the presence of this node's device_stats rows
  // to 0 (DeviceStatsWriter::ResetPresence), then starts the thread. Errors
  // are one line naming the registry (a URL with its password masked).
  Result<std::shared_ptr<const Snapshot>> Start();

  bool TakeUpdate(RegistryUpdate* out,
                  std::shared_ptr<const Snapshot>* retired) override {
    return reloader_.TakeUpdate(out, retired);
  }
  void RequestReload() override;
  bool TakeLogs(std::vector<std::string>* out) override {
    return log_.Take(out);
  }
  bool SubmitStats(std::vector<DeviceStatsDelta>* batch) override;
  bool SubmitLog(std::vector<DeliveryEvent>* batch) override;
  bool LastError(std::string* out) override { return reloader_.LastError(out); }
  // Stops the thread (letting the pass under way finish, for
  // kShutdownStallTimeoutMs at most: on PostgreSQL a longer one is
  // interrupted, which closes the connection) and writes all pending device
  // stats and delivery events on the calling thread, chunk after chunk until
  // one fails; on PostgreSQL only on a connection still open (a database
  // that is away is not dialled, one that stalls is waited for
  // kShutdownStallTimeoutMs at most: the stop stays quick).
  void Shutdown() override;

  // PostgreSQL: the stall timeout of the last writes at Shutdown.
  static constexpr int kShutdownStallTimeoutMs = 2000;

  // Duration of the last device_stats flush and its row count.
  int64_t last_flush_ms() const { return stats_.last_flush_ms(); }
  int64_t last_flush_rows() const { return stats_.last_flush_rows(); }
  // The delivery log writer's figures (dropped events, last flush).
  const DeliveryLogWriter& delivery_log() const { return log_writer_; }
  // Finished registry polls (tests wait on it).
  uint64_t polls() const { return reloader_.polls(); }

 private:
  // The registry thread: polls every interval (at once when a reload is
  // requested or the last pass left chunks to write) and flushes a chunk of
  // the submitted device stats and delivery events after each poll, until
  // Shutdown.
  void PollUntilStopped();
  // Whether the thread has something to do (mu_ held).
  bool HasWork() const {
    return stop_ || reload_requested_ || stats_submitted_ || log_submitted_ ||
           backlog_;
  }
  // PostgreSQL: waits (mu_ held on entry and return, released meanwhile)
  // for work, a notification, the interval or the next reconnect attempt.
  void WaitOnPostgres(std::unique_lock<std::mutex>* lock);
  // Wakes the thread (after a wake-up reason was set).
  void Wake();

  const int interval_ms_;
  LogQueue log_;
  RegistryReloader reloader_;
  DeviceStatsWriter stats_;
  DeliveryLogWriter log_writer_;

  std::mutex mu_;  // guards the wake-up reasons
  std::condition_variable cv_;
  bool stop_ = false;
  bool reload_requested_ = false;
  bool stats_submitted_ = false;
  bool log_submitted_ = false;
  bool backlog_ = false;      // the last pass wrote a chunk and more wait
  bool thread_done_ = false;  // PollUntilStopped returned
  int wake_fd_ = -1;          // PostgreSQL: the eventfd Wake writes
  // PostgreSQL: the connection's interrupt fd, written once by Shutdown.
  int stop_fd_ = -1;
  std::thread thread_;
  // Shutdown found the PostgreSQL database away: later calls do not retry.
  bool db_away_at_shutdown_ = false;
};

}  // namespace homepot

#endif  // HOMEPOT_PLUGIN_REGISTRY_WORKER_H_
