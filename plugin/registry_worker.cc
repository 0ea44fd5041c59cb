#include "registry_worker.h"

#include <sqlite3.h>
#include <sys/stat.h>

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

RegistryWorker::~RegistryWorker() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  Close();
}

Status RegistryWorker::Open() {
  Close();
  struct stat st;
  if (stat(path_.c_str(), &st) != 0) {
    return Status::Error("registry file " + path_ + " does not exist");
  }
  int rc = sqlite3_open_v2(path_.c_str(), &db_,
                           SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX,
                           nullptr);
  if (rc != SQLITE_OK) {
    std::string msg = db_ ? sqlite3_errmsg(db_) : sqlite3_errstr(rc);
    Close();
    return Status::Error("cannot open registry file " + path_ + ": " + msg);
  }
  sqlite3_busy_timeout(db_, 2000);
  inode_ = st.st_ino;
  device_ = st.st_dev;
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
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_) {
    cv_.wait_for(lock, std::chrono::milliseconds(interval_ms_),
                 [this] { return stop_ || reload_requested_; });
    if (stop_) break;
    bool forced = reload_requested_;
    reload_requested_ = false;
    lock.unlock();
    Poll(forced);
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
  if (db_ == nullptr || st.st_ino != inode_ || st.st_dev != device_) {
    Status s = Open();
    if (!s.ok()) {
      Fail(s.message());
      return;
    }
    forced = true;
  }
  Result<int64_t> generation = ReadGeneration(db_);
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
