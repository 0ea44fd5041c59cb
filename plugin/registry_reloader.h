// Keeps the registry snapshot current: owns the connection to the registry
// (a SQLite file, or a PostgreSQL database for a postgresql:// location),
// notices changes, builds the new snapshot aside (brought forward by the
// change feed, or loaded in full) and leaves it, with the devices it
// revokes, for the broker thread to take without waiting. A registry that
// cannot be read keeps the last good snapshot; the error is logged (on
// SQLite again when it changes, on PostgreSQL once per outage) and reported
// by LastError until a load succeeds, which is logged once too.
//
// What forces a full load: the first load, a failed attempt, Poll(true),
// and what LoadChanges cannot bring forward (a gap in the change feed, such
// as a bulk write leaves, a generation that went back, more than
// kMaxChangedDevices changed); on SQLite also a file replaced (another inode
// or device), on PostgreSQL a reconnection.
//
// SQLite: a file written in place (a checkpoint by any connection, another
// node's commit, a backup copied over it) is only reopened, so that no page
// cached from its old contents is served, and judged by its generation and
// change feed. The registry has no identity of its own, so a different
// registry, or one with other contents at the same generation, copied over
// the file in place is not told apart: send SIGHUP after a restore. A
// missing, locked or corrupt file is an error.
//
// PostgreSQL: the connection LISTENs on homepot_registry, whose
// notifications (socket(), NotificationsWaiting) say the generation moved;
// Poll still reads the generation every time it runs. A connection that
// fails or breaks is an error; Poll reconnects when RetryInMs says, after
// kFirstRetryMs doubling to kMaxRetryMs (each ± a quarter at random)
// between failed attempts, counted until the server answers (each
// attempt gives up after kConnectTimeoutS unless the URL sets
// connect_timeout), and loads the registry in full once it is back. A
// statement that hears nothing from the server for kStallTimeoutMs (a
// stalled server or network) fails like a broken connection. No message
// ever shows the URL's password (pg::MaskedUrl).
//
// Threads: LoadFirst runs on the thread that starts the plugin; Poll, db,
// OpenIfClosed, Close, socket, NotificationsWaiting and RetryInMs on the
// registry thread only (after LoadFirst); TakeUpdate and LastError on the
// broker thread, never blocking. Retired snapshots handed back by
// TakeUpdate are freed by the next Poll.
#ifndef HOMEPOT_PLUGIN_REGISTRY_RELOADER_H_
#define HOMEPOT_PLUGIN_REGISTRY_RELOADER_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "broker.h"
#include "database.h"
#include "log_queue.h"
#include "registry.h"
#include "registry_source.h"
#include "status.h"

namespace homepot {

// How messages name the registry at `location` (a path or a postgresql://
// URL, masked or not): "registry file <path>" or "registry database <URL
// with any password masked>".
std::string RegistryLabel(const std::string& location);

class RegistryReloader {
 public:
  // How long the connection waits for another connection's lock (a writer
  // that sets its own timeout sets this one back).
  static constexpr int kBusyTimeoutMs = 2000;

  // PostgreSQL: how long a connection attempt may take, and the delays
  // between failed attempts.
  static constexpr int kConnectTimeoutS = 2;
  static constexpr int kFirstRetryMs = 100;
  static constexpr int kMaxRetryMs = 500;
  // How long a statement may go without a byte from the server. The
  // registry's statements either answer at once (the generation, the change
  // feed, writes bounded by lock_timeout) or stream their rows (a full
  // load, a million devices included): 10 s of silence is a stalled server.
  static constexpr int kStallTimeoutMs = 10000;
  // How long the server keeps a transaction of the registry's session open
  // while the session sends nothing (idle_in_transaction_session_timeout):
  // one the plugin gave up on (a stall, a connection the network dropped
  // without a word) would otherwise hold its locks, this node's write_marks
  // rows among them, until the server noticed the client was gone. The
  // registry's own transactions are never idle that long.
  static constexpr int kIdleInTransactionMs = 30000;
  // The channel of the registry's change notifications.
  static constexpr const char* kChannel = "homepot_registry";

  // `location` is the file's path or a postgresql:// URL (IsPostgresUrl).
  // `has_update` is kept equal to "an update is waiting" (under the lock).
  RegistryReloader(std::string location, Clock* clock, LogQueue* log,
                   std::atomic<bool>* has_update);
  ~RegistryReloader();  // closes the connection
  RegistryReloader(const RegistryReloader&) = delete;
  RegistryReloader& operator=(const RegistryReloader&) = delete;

  // Opens the registry, checks the schema and loads the first snapshot.
  // Errors are one line naming the registry (RegistryLabel); load warnings
  // go to the log.
  Result<std::shared_ptr<const Snapshot>> LoadFirst();

  // Registry thread. Reloads when the generation changed, the file was
  // replaced, the last attempt failed, or `forced` (see above for which
  // reloads are full). On PostgreSQL while disconnected, it reconnects when
  // the retry delay has passed and does nothing before.
  void Poll(bool forced);
  // Registry thread: the open connection, or nullptr.
  Database* db() { return db_ ? &*db_ : nullptr; }
  // Registry thread: reopens a closed connection (for a last stats write).
  void OpenIfClosed();
  void Close();
  // PostgreSQL: the interrupt fd and the stall timeout (pg::Options) of the
  // connection, now and after every reconnect. Registry thread, or any
  // thread while it is not running.
  void SetInterruptFd(int fd);
  void SetStallTimeoutMs(int ms);
  // Registry thread, PostgreSQL: the connection's socket, to poll() for
  // notifications; -1 when disconnected or on SQLite.
  int socket();
  // Registry thread: reads what the socket holds without waiting; true when
  // a notification came (or the connection broke): Poll has work. Catches
  // notifications libpq read while running other statements.
  bool NotificationsWaiting();
  // Registry thread: milliseconds until Poll should try to reconnect (0:
  // now); -1 while connected or on SQLite.
  int64_t RetryInMs() const;
  // Seeds the jitter of the reconnect delays (from std::random_device
  // unless this is called), on the registry thread or before it runs:
  // tests make the delays repeatable with it.
  void SeedRetryJitter(uint32_t seed) { random_.seed(seed); }
  bool postgres() const { return postgres_; }

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
  // Reloads when `generation` (read just now) differs from the snapshot's,
  // the last attempt failed, or `forced`; publishes the update.
  void Advance(bool forced, int64_t generation);
  Status Open();
  void Fail(const std::string& error);
  // A load failed with `message`: Fail and Close (on PostgreSQL:
  // Disconnected).
  void LoadFailed(const std::string& message);

  // PostgreSQL.
  void PollPostgres(bool forced);
  Status OpenPostgres();
  // The connection is gone (or useless): closes it, schedules the next
  // attempt and records `line` (a PostgresError), logging it only when the
  // registry was fine until now.
  void Disconnected(const std::string& line);
  // `message` of the connection as one line that names the registry once,
  // after `what` when not empty.
  std::string PostgresError(const std::string& what,
                            const std::string& message) const;

  const std::string path_;  // the location: a path or a URL
  const bool postgres_;
  const std::string name_;  // path_ as messages show it (URL masked)
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
  // PostgreSQL, registry thread: when (MonotonicMs) the next connection
  // attempt is due, and the delay after the next failure.
  int64_t retry_at_ms_ = 0;
  int retry_delay_ms_ = kFirstRetryMs;
  std::minstd_rand random_{std::random_device{}()};  // the retry jitter
  // How the PostgreSQL connection waits.
  pg::Options pg_options_;

  std::mutex mu_;  // guards what follows
  bool have_update_ = false;
  RegistryUpdate pending_;
  std::vector<std::shared_ptr<const Snapshot>> graveyard_;
  std::string last_error_;
};

}  // namespace homepot

#endif  // HOMEPOT_PLUGIN_REGISTRY_RELOADER_H_
