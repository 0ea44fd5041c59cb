#include "registry_worker.h"

#include <sqlite3.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>

namespace homepot {
namespace {

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace

RegistryWorker::RegistryWorker(std::string path, int interval_ms)
    : path_(std::move(path)), interval_ms_(interval_ms) {}

RegistryWorker::~RegistryWorker() { Shutdown(); }

void RegistryWorker::Shutdown() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  if (db_ == nullptr) {
    struct stat st;
    if (stat(path_.c_str(), &st) == 0 && Open().ok()) {
      inode_ = st.st_ino;
    }
  }
  FlushStats(5000);
  Close();
}

namespace {

void MergeCounters(DeviceCounters* into, const DeviceCounters& from) {
  into->published += from.published;
  into->delivered += from.delivered;
  into->rejected += from.rejected;
  into->last_connect_ms = std::max(into->last_connect_ms, from.last_connect_ms);
  into->last_publish_ms = std::max(into->last_publish_ms, from.last_publish_ms);
  into->last_delivery_ms =
      std::max(into->last_delivery_ms, from.last_delivery_ms);
}

void BindStamp(sqlite3_stmt* stmt, int index, int64_t ms) {
  if (ms == 0) {
    sqlite3_bind_null(stmt, index);
  } else {
    std::string stamp = StampString(ms);
    sqlite3_bind_text(stmt, index, stamp.data(), static_cast<int>(stamp.size()),
                      SQLITE_TRANSIENT);
  }
}

}  // namespace

bool RegistryWorker::SubmitStats(std::vector<DeviceStatsDelta>* batch) {
  std::unique_lock<std::mutex> lock(mu_, std::try_to_lock);
  if (!lock.owns_lock()) return false;
  for (DeviceStatsDelta& d : *batch) {
    MergeCounters(&stats_pending_[d.device_id], d.counters);
  }
  batch->clear();
  stats_submitted_ = true;
  lock.unlock();
  cv_.notify_all();
  return true;
}

void RegistryWorker::FlushStats(int busy_timeout_ms) {
  std::unordered_map<std::string, DeviceCounters> batch;
  {
    std::lock_guard<std::mutex> lock(mu_);
    batch.swap(stats_pending_);
  }
  if (batch.empty()) return;
  int64_t start = NowMs();
  std::string error;
  if (db_ == nullptr) {
    error = "registry file " + path_ + " is not open";
  } else {
    sqlite3_busy_timeout(db_, busy_timeout_ms);
    sqlite3_stmt* stmt = nullptr;
    bool ok =
        sqlite3_exec(db_, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr) ==
            SQLITE_OK &&
        sqlite3_prepare_v2(
            db_,
            // Only for devices still registered: a removed device's
            // statistics stay removed.
            "INSERT INTO device_stats (device_id, published, delivered, "
            "rejected, last_connect, last_publish, last_delivery) "
            "SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7 WHERE EXISTS "
            "(SELECT 1 FROM devices WHERE device_id = ?1) "
            "ON CONFLICT (device_id) DO UPDATE SET "
            "published = published + excluded.published, "
            "delivered = delivered + excluded.delivered, "
            "rejected = rejected + excluded.rejected, "
            "last_connect = coalesce(excluded.last_connect, last_connect), "
            "last_publish = coalesce(excluded.last_publish, last_publish), "
            "last_delivery = coalesce(excluded.last_delivery, last_delivery)",
            -1, &stmt, nullptr) == SQLITE_OK;
    for (auto it = batch.begin(); ok && it != batch.end(); ++it) {
      const DeviceCounters& c = it->second;
      sqlite3_bind_text(stmt, 1, it->first.data(),
                        static_cast<int>(it->first.size()), SQLITE_STATIC);
      sqlite3_bind_int64(stmt, 2, static_cast<int64_t>(c.published));
      sqlite3_bind_int64(stmt, 3, static_cast<int64_t>(c.delivered));
      sqlite3_bind_int64(stmt, 4, static_cast<int64_t>(c.rejected));
      BindStamp(stmt, 5, c.last_connect_ms);
      BindStamp(stmt, 6, c.last_publish_ms);
      BindStamp(stmt, 7, c.last_delivery_ms);
      ok = sqlite3_step(stmt) == SQLITE_DONE;
      sqlite3_reset(stmt);
    }
    if (ok)
      ok = sqlite3_exec(db_, "COMMIT", nullptr, nullptr, nullptr) == SQLITE_OK;
    if (!ok)
      error = std::string("cannot write device_stats: ") + sqlite3_errmsg(db_);
    sqlite3_finalize(stmt);
    if (!ok) sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
    sqlite3_busy_timeout(db_, 2000);
  }
  std::lock_guard<std::mutex> lock(mu_);
  if (!error.empty()) {
    // Keep the counts for the next attempt.
    for (auto& [id, c] : batch) MergeCounters(&stats_pending_[id], c);
    if (error != stats_error_) {
      logs_.push_back("device_stats flush delayed: " + error);
      has_logs_.store(true, std::memory_order_release);
    }
    stats_error_ = error;
    return;
  }
  if (!stats_error_.empty()) {
    logs_.push_back("device_stats flush succeeded again");
    has_logs_.store(true, std::memory_order_release);
  }
  stats_error_.clear();
  // Our own commit may have checkpointed the WAL into the main file: take
  // its new size and mtime as the baseline, so it is not mistaken for a
  // file rewritten by someone else (which forces a full reload).
  struct stat st;
  if (stat(path_.c_str(), &st) == 0 && st.st_ino == inode_) {
    size_ = st.st_size;
    mtime_ns_ = st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec;
  }
  last_flush_ms_.store(NowMs() - start);
  last_flush_rows_.store(static_cast<int64_t>(batch.size()));
}

Status RegistryWorker::Open() {
  Close();
  struct stat st;
  if (stat(path_.c_str(), &st) != 0) {
    return Status::Error("registry file " + path_ + " does not exist");
  }
  int rc =
      sqlite3_open_v2(path_.c_str(), &db_,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    std::string msg = db_ ? sqlite3_errmsg(db_) : sqlite3_errstr(rc);
    Close();
    return Status::Error("cannot open registry file " + path_ + ": " + msg);
  }
  sqlite3_busy_timeout(db_, 2000);
  inode_ = st.st_ino;
  device_ = st.st_dev;
  size_ = st.st_size;
  mtime_ns_ = st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec;
  Status schema = CheckSchema(db_);
  if (!schema.ok()) {
    Close();
    return Status::Error("registry file " + path_ + ": " + schema.message());
  }
  return Status::Ok();
}

void RegistryWorker::Close() {
  if (db_ != nullptr) sqlite3_close_v2(db_);
  db_ = nullptr;
}

Result<std::shared_ptr<const Snapshot>> RegistryWorker::Start() {
  Status s = Open();
  if (!s.ok()) return s;
  std::vector<std::string> warnings;
  auto loaded = LoadSnapshot(db_, &warnings);
  if (!loaded.ok()) {
    Close();
    return Status::Error("registry file " + path_ + ": " +
                         loaded.status().message());
  }
  for (auto& w : warnings) Log("registry: " + w);
  current_ = *loaded;
  thread_ = std::thread([this] { Run(); });
  return current_;
}

void RegistryWorker::Run() {
  // Registry loads must not compete with the broker thread for a core: run
  // this thread at a lower priority (Linux nice is per thread).
  setpriority(PRIO_PROCESS, static_cast<id_t>(syscall(SYS_gettid)), 10);
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_) {
    cv_.wait_for(lock, std::chrono::milliseconds(interval_ms_), [this] {
      return stop_ || reload_requested_ || stats_submitted_;
    });
    if (stop_) break;
    bool forced = reload_requested_;
    reload_requested_ = false;
    stats_submitted_ = false;
    lock.unlock();
    Poll(forced);
    FlushStats(200);
    lock.lock();
  }
}

void RegistryWorker::Fail(const std::string& error) {
  std::lock_guard<std::mutex> lock(mu_);
  if (error != last_error_) {
    logs_.push_back("registry: " + error + "; keeping generation " +
                    std::to_string(current_->generation()));
    has_logs_.store(true, std::memory_order_release);
  }
  last_error_ = error;
}

void RegistryWorker::Log(std::string message) {
  std::lock_guard<std::mutex> lock(mu_);
  logs_.push_back(std::move(message));
  has_logs_.store(true, std::memory_order_release);
}

void RegistryWorker::Poll(bool forced) {
  {
    std::vector<std::shared_ptr<const Snapshot>> dead;
    {
      std::lock_guard<std::mutex> lock(mu_);
      dead.swap(graveyard_);
    }
  }  // freed here, on this thread
  // A file replaced (restored backup, mv) or removed shows up as a new inode.
  struct stat st;
  if (stat(path_.c_str(), &st) != 0) {
    Close();
    Fail("registry file " + path_ + " is missing");
    return;
  }
  bool fresh = false;
  // Rewritten in place (cp over it, corrupted): in WAL mode SQLite's page
  // cache keeps serving the old pages without an error, so reopen.
  bool rewritten =
      st.st_size != size_ ||
      st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec != mtime_ns_;
  if (db_ == nullptr || st.st_ino != inode_ || st.st_dev != device_ ||
      rewritten) {
    Status s = Open();
    if (!s.ok()) {
      Fail(s.message());
      return;
    }
    forced = true;
    fresh = true;
  }
  Result<int64_t> generation = ReadGeneration(db_);
  if (!generation.ok() && !fresh) {
    // The connection may be stale (file rewritten in place): judge the file
    // through a fresh one, so that one fault gives one message.
    Status s = Open();
    if (!s.ok()) {
      Fail(s.message());
      return;
    }
    forced = true;
    generation = ReadGeneration(db_);
  }
  if (!generation.ok()) {
    Fail("registry file " + path_ + ": " + generation.status().message());
    Close();  // reopen next time: the file may have been rewritten in place
    return;
  }
  bool recovered = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    recovered = !last_error_.empty();
  }
  if (!forced && !recovered && *generation == current_->generation()) return;

  int64_t start = NowMs();
  std::vector<std::string> warnings;
  auto loaded = LoadSnapshot(db_, &warnings);
  if (!loaded.ok()) {
    Fail("registry file " + path_ + ": " + loaded.status().message());
    Close();
    return;
  }
  std::vector<std::string> revoked = RevokedDevices(*current_, **loaded);
  current_ = *loaded;
  int64_t took = NowMs() - start;

  std::lock_guard<std::mutex> lock(mu_);
  if (!last_error_.empty()) {
    logs_.push_back("registry: " + path_ + " readable again");
  }
  last_error_.clear();
  for (auto& w : warnings) logs_.push_back("registry: " + w);
  if (have_update_) {
    // The broker has not taken the previous update: merge the revocations.
    revoked.insert(revoked.end(), pending_.revoked.begin(),
                   pending_.revoked.end());
    std::sort(revoked.begin(), revoked.end());
    revoked.erase(std::unique(revoked.begin(), revoked.end()), revoked.end());
  }
  pending_ = RegistryUpdate{current_, std::move(revoked), took};
  have_update_ = true;
  has_update_.store(true, std::memory_order_release);
  has_logs_.store(!logs_.empty(), std::memory_order_release);
}

bool RegistryWorker::TakeUpdate(RegistryUpdate* out,
                                std::shared_ptr<const Snapshot>* retired) {
  std::unique_lock<std::mutex> lock(mu_, std::try_to_lock);
  if (!lock.owns_lock() || !have_update_) return false;
  graveyard_.push_back(std::move(*retired));
  retired->reset();
  *out = std::move(pending_);
  pending_ = RegistryUpdate{};
  have_update_ = false;
  has_update_.store(false, std::memory_order_release);
  return true;
}

void RegistryWorker::RequestReload() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    reload_requested_ = true;
  }
  cv_.notify_all();
}

bool RegistryWorker::TakeLogs(std::vector<std::string>* out) {
  std::unique_lock<std::mutex> lock(mu_, std::try_to_lock);
  if (!lock.owns_lock()) return false;
  out->swap(logs_);
  logs_.clear();
  has_logs_.store(false, std::memory_order_release);
  return true;
}

bool RegistryWorker::LastError(std::string* out) {
  std::unique_lock<std::mutex> lock(mu_, std::try_to_lock);
  if (!lock.owns_lock()) return false;
  *out = last_error_;
  return true;
}

}  // namespace homepot
