// Owns the registry file on a background thread: polls it every
// reload_interval_ms (or at once after RequestReload), builds a new snapshot
// aside when the registry generation changed, and leaves it for the broker
// thread to pick up without waiting. A missing, locked or corrupt file keeps
// the last good snapshot; the error is reported once.
#ifndef HOMEPOT_PLUGIN_REGISTRY_WORKER_H_
#define HOMEPOT_PLUGIN_REGISTRY_WORKER_H_

#include <atomic>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "registry.h"
#include "stats.h"
#include "status.h"

struct sqlite3;

namespace homepot {

struct RegistryUpdate {
  std::shared_ptr<const Snapshot> snapshot;
  std::vector<std::string> revoked;  // sessions to end (see RevokedDevices)
  int64_t load_ms = 0;               // how long the build took
};

class RegistryWorker {
 public:
  RegistryWorker(std::string path, int interval_ms);
  ~RegistryWorker();  // stops and joins the thread
  RegistryWorker(const RegistryWorker&) = delete;
  RegistryWorker& operator=(const RegistryWorker&) = delete;

  // Opens the file, checks the schema and loads the first snapshot on the
  // calling thread, then starts polling. Errors name the file.
  Result<std::shared_ptr<const Snapshot>> Start();

  // Broker thread. Never blocks: returns false when nothing new is ready or
  // the worker holds the lock right now. On success `*retired` (the snapshot
  // being replaced) is handed to the worker, which frees it off the broker
  // thread.
  bool TakeUpdate(RegistryUpdate* out,
                  std::shared_ptr<const Snapshot>* retired);
  bool HasUpdate() const { return has_update_.load(std::memory_order_acquire); }

  // Asks for a reload at once (SIGHUP).
  void RequestReload();

  // Broker thread: messages to log (the worker never calls the broker).
  bool TakeLogs(std::vector<std::string>* out);
  bool HasLogs() const { return has_logs_.load(std::memory_order_acquire); }

  // Broker thread, never blocks: hands per-device deltas to the worker, which
  // adds them to device_stats in one transaction on its next pass. A busy or
  // locked file delays the write; nothing is lost. Returns false, leaving
  // `batch` as it was, when the worker holds the lock right now.
  bool SubmitStats(std::vector<DeviceStatsDelta>* batch);

  // Stops polling and writes pending device stats on the calling thread
  // (clean shutdown). Idempotent.
  void Shutdown();

  // Duration of the last device_stats flush and its row count.
  int64_t last_flush_ms() const { return last_flush_ms_.load(); }
  int64_t last_flush_rows() const { return last_flush_rows_.load(); }

  // Last load error, empty when the last attempt succeeded. Never blocks;
  // returns false if it could not read it now.
  bool LastError(std::string* out);

 private:
  void Run();
  void Poll(bool forced);
  Status Open();
  void Close();
  void Fail(const std::string& error);
  void Log(std::string message);
  void FlushStats(int busy_timeout_ms);

  const std::string path_;
  const int interval_ms_;
  sqlite3* db_ = nullptr;  // worker thread only (after Start)
  unsigned long inode_ = 0;
  unsigned long device_ = 0;
  // Size and mtime (ns) at Open(): a change means the file was rewritten.
  long long size_ = 0;
  long long mtime_ns_ = 0;
  std::shared_ptr<const Snapshot> current_;  // worker thread only

  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  bool reload_requested_ = false;
  bool stats_submitted_ = false;
  bool have_update_ = false;
  RegistryUpdate pending_;
  std::vector<std::string> logs_;
  std::vector<std::shared_ptr<const Snapshot>> graveyard_;
  std::unordered_map<std::string, DeviceCounters> stats_pending_;
  std::string stats_error_;
  std::atomic<int64_t> last_flush_ms_{0};
  std::atomic<int64_t> last_flush_rows_{0};
  std::string last_error_;
  std::atomic<bool> has_update_{false};
  std::atomic<bool> has_logs_{false};
  std::thread thread_;
};

}  // namespace homepot

#endif  // HOMEPOT_PLUGIN_REGISTRY_WORKER_H_
