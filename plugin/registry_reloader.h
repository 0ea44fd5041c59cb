// Keeps the registry snapshot current: owns the SQLite connection to the
// registry file, notices changes (generation counter, file replaced or
// written), builds the new snapshot aside and leaves it, with the devices it
// revokes, for the broker thread to take without waiting. A missing, locked
// or corrupt file keeps the last good snapshot; the error is logged once and
// reported by LastError until a load succeeds.
//
// What forces a full load: the first load, a file replaced (another inode or
// device), a failed attempt, Poll(true), and what LoadChanges cannot bring
// forward (a gap in the change feed, a generation that went back). A file
// written in place (a checkpoint by any connection, another node's commit,
// a backup copied over it) is only reopened, so that no page cached from
// its old contents is served, and judged by its generation and change feed.
// The registry has no identity of its own, so a different registry, or one
// with other contents at the same generation, copied over the file in place
// is not told apart: replace the file (mv) or send SIGHUP instead.
//
// Threads: LoadFirst runs on the thread that starts the plugin; Poll, db,
// OpenIfClosed and Close on the registry thread only (after LoadFirst);
// TakeUpdate and LastError on the broker thread, never blocking.
// Retired snapshots handed back by TakeUpdate are freed by the next Poll.
#ifndef HOMEPOT_PLUGIN_REGISTRY_RELOADER_H_
#define HOMEPOT_PLUGIN_REGISTRY_RELOADER_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "broker.h"
#include "log_queue.h"
#include "registry.h"
#include "registry_source.h"
#include "database.h"
#include "status.h"

namespace homepot {

class RegistryReloader {
 public:
  // How long the connection waits for another connection's lock (a writer
  // that sets its own timeout sets this one back).
  static constexpr int kBusyTimeoutMs = 2000;

  // `has_update` is kept equal to "an update is waiting" (under the lock).
  RegistryReloader(std::string path, Clock* clock, LogQueue* log,
                   std::atomic<bool>* has_update);
  ~RegistryReloader();  // closes the connection
  RegistryReloader(const RegistryReloader&) = delete;
  RegistryReloader& operator=(const RegistryReloader&) = delete;

  // Opens the file, checks the schema and loads the first snapshot. Errors
  // name the file; load warnings go to the log.
  Result<std::shared_ptr<const Snapshot>> LoadFirst();

  // Registry thread. Reloads when the generation changed, the file was
  // replaced, the last attempt failed, or `forced` (see above for which
  // reloads are full).
  void Poll(bool forced);
  // Registry thread: the open connection, or nullptr.
  Database* db() { return db_ ? &*db_ : nullptr; }
  // Registry thread: reopens a closed connection (for a last stats write).
  void OpenIfClosed();
  void Close();
  // Finished polls since LoadFirst (tests wait on it).
  uint64_t polls() const { return polls_.load(std::memory_order_acquire); }

  // Broker thread, never blocks: false when nothing new is ready or the
  // lock is held right now. On success `*retired` is taken, to be freed on
  // the registry thread.
  bool TakeUpdate(RegistryUpdate* out,
                  std::shared_ptr<const Snapshot>* retired);
  // Broker thread, never blocks: false if it could not read it now.
  bool LastError(std::string* out);

 private:
  void ReloadIfChanged(bool forced);
  Status Open();
  void Fail(const std::string& error);

  const std::string path_;
  Clock* const clock_;
  LogQueue* const log_;
  std::atomic<bool>* const has_update_;

  // Registry thread only (after LoadFirst).
  std::optional<Database> db_;
  unsigned long inode_ = 0;
  unsigned long device_ = 0;
  // Size and mtime (ns) at Open(): a change means the file was written.
  long long size_ = 0;
  long long mtime_ns_ = 0;
  std::shared_ptr<const Snapshot> current_;
  std::atomic<uint64_t> polls_{0};

  std::mutex mu_;  // guards what follows
  bool have_update_ = false;
  RegistryUpdate pending_;
  std::vector<std::shared_ptr<const Snapshot>> graveyard_;
  std::string last_error_;
};

}  // namespace homepot

#endif  // HOMEPOT_PLUGIN_REGISTRY_RELOADER_H_
