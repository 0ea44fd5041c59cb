#include "registry_reloader.h"

#include <sys/stat.h>

#include <algorithm>
#include <utility>

#include "pg.h"

namespace homepot {
namespace {

long long MtimeNs(const struct stat& st) {
  return st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec;
}

// `text` on one line: line breaks and the tabs after them become a space.
std::string OneLine(std::string text) {
  std::string out;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '\n' && text[i] != '\r') {
      out += text[i];
      continue;
    }
    while (i + 1 < text.size() &&
           (text[i + 1] == '\t' || text[i + 1] == '\n' || text[i + 1] == ' ')) {
      ++i;
    }
    if (i + 1 < text.size()) out += ' ';
  }
  return out;
}

}  // namespace

std::string RegistryLabel(const std::string& location) {
  return IsPostgresUrl(location)
             ? "registry database " + pg::MaskedUrl(location)
             : "registry file " + location;
}

RegistryReloader::RegistryReloader(std::string location, Clock* clock,
                                   LogQueue* log, std::atomic<bool>* has_update)
    : path_(std::move(location)),
      postgres_(IsPostgresUrl(path_)),
      name_(postgres_ ? pg::MaskedUrl(path_) : path_),
      clock_(clock),
      log_(log),
      has_update_(has_update) {
  pg_options_.connect_timeout_s = kConnectTimeoutS;
  pg_options_.stall_timeout_ms = kStallTimeoutMs;
}

RegistryReloader::~RegistryReloader() { Close(); }

Status RegistryReloader::Open() {
  Close();
  if (postgres_) return OpenPostgres();
  struct stat st;
  if (stat(path_.c_str(), &st) != 0) {
    return Status::Error("registry file " + path_ + " does not exist");
  }
  Result<Database> db =
      Database::Open(path_, Database::Mode::kReadWrite, kBusyTimeoutMs);
  if (!db.ok()) {
    return Status::Error("cannot open registry file " + path_ + ": " +
                         db.status().message());
  }
  db_.emplace(std::move(*db));
  inode_ = st.st_ino;
  device_ = st.st_dev;
  size_ = st.st_size;
  mtime_ns_ = MtimeNs(st);
  Status schema = CheckSchema(&*db_);
  if (!schema.ok()) {
    Close();
    return Status::Error("registry file " + path_ + ": " + schema.message());
  }
  return Status::Ok();
}

void RegistryReloader::Close() { db_.reset(); }

void RegistryReloader::SetInterruptFd(int fd) {
  pg_options_.interrupt_fd = fd;
  if (db_ && postgres_) db_->pg()->SetInterruptFd(fd);
}

void RegistryReloader::SetStallTimeoutMs(int ms) {
  pg_options_.stall_timeout_ms = ms;
  if (db_ && postgres_) db_->pg()->SetStallTimeoutMs(ms);
}

void RegistryReloader::OpenIfClosed() {
  if (!db_) Open();  // a failure leaves it closed
}

Result<std::shared_ptr<const Snapshot>> RegistryReloader::LoadFirst() {
  Status s = Open();
  if (!s.ok()) return s;
  std::vector<std::string> warnings;
  auto loaded = LoadSnapshot(&*db_, &warnings);
  if (!loaded.ok()) {
    Close();
    return Status::Error(postgres_
                             ? PostgresError("", loaded.status().message())
                             : "registry file " + path_ + ": " +
                                   loaded.status().message());
  }
  for (auto& w : warnings) log_->Push("registry: " + w);
  current_ = *loaded;
  return current_;
}

void RegistryReloader::Fail(const std::string& error) {
  std::lock_guard<std::mutex> lock(mu_);
  if (error != last_error_) {
    log_->Push("registry: " + error + "; keeping generation " +
               std::to_string(current_->generation()));
  }
  last_error_ = error;
}

void RegistryReloader::Poll(bool forced) {
  ReloadIfChanged(forced);
  polls_.fetch_add(1, std::memory_order_release);
}

void RegistryReloader::ReloadIfChanged(bool forced) {
  {
    std::vector<std::shared_ptr<const Snapshot>> dead;
    {
      std::lock_guard<std::mutex> lock(mu_);
      dead.swap(graveyard_);
    }
  }  // freed here, on this thread
  if (postgres_) {
    PollPostgres(forced);
    return;
  }
  // A file replaced (restored backup, mv) or removed shows up as a new inode:
  // read it in full.
  struct stat st;
  if (stat(path_.c_str(), &st) != 0) {
    Close();
    Fail("registry file " + path_ + " is missing");
    return;
  }
  bool fresh = false;
  if (!db_ || st.st_ino != inode_ || st.st_dev != device_) {
    Status s = Open();
    if (!s.ok()) {
      Fail(s.message());
      return;
    }
    forced = true;
    fresh = true;
  } else if (st.st_size != size_ || MtimeNs(st) != mtime_ns_) {
    // Written: a checkpoint (ours or another broker's), or a copy over it
    // (`cp` of a backup). In WAL mode SQLite keeps its page cache while the
    // WAL index is unchanged, so after a copy it would serve old pages:
    // reopen, and let the generation and the change feed decide (a
    // generation that went back reads in full).
    Status s = Open();
    if (!s.ok()) {
      Fail(s.message());
      return;
    }
    fresh = true;
  }
  Result<int64_t> generation = ReadGeneration(&*db_);
  if (!generation.ok() && !fresh) {
    // The connection may be stale (file rewritten in place): judge the file
    // through a fresh one, so that one fault gives one message.
    Status s = Open();
    if (!s.ok()) {
      Fail(s.message());
      return;
    }
    forced = true;
    generation = ReadGeneration(&*db_);
  }
  if (!generation.ok()) {
    Fail("registry file " + path_ + ": " + generation.status().message());
    Close();  // reopen next time: the file may have been rewritten in place
    return;
  }
  Advance(forced, *generation);
}

void RegistryReloader::LoadFailed(const std::string& message) {
  if (postgres_) {
    Disconnected(PostgresError("", message));
    return;
  }
  Fail("registry file " + path_ + ": " + message);
  Close();
}

void RegistryReloader::Advance(bool forced, int64_t generation) {
  bool recovered = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    recovered = !last_error_.empty();
  }
  if (!forced && !recovered && generation == current_->generation()) return;

  const int64_t start_us = clock_->MonotonicUs();
  std::vector<std::string> warnings;
  std::vector<std::string> revoked;
  std::shared_ptr<const Snapshot> next;
  bool full = true;
  // The change feed brings the snapshot forward in proportion to what
  // changed; a full load only at start, after the file was replaced, after a
  // failure, on request, or when the feed has a gap or went back.
  if (!forced && !recovered) {
    Result<ChangedSnapshot> moved = LoadChanges(&*db_, *current_, &warnings);
    if (!moved.ok()) {
      LoadFailed(moved.status().message());
      return;
    }
    next = std::move(moved->snapshot);
    revoked = std::move(moved->revoked);
    full = next == nullptr;
  }
  if (!next) {
    warnings.clear();
    auto loaded = LoadSnapshot(&*db_, &warnings);
    if (!loaded.ok()) {
      LoadFailed(loaded.status().message());
      return;
    }
    next = std::move(*loaded);
    revoked = RevokedDevices(*current_, *next);
  }
  current_ = std::move(next);
  const int64_t took_ms = (clock_->MonotonicUs() - start_us) / 1000;

  std::lock_guard<std::mutex> lock(mu_);
  if (!last_error_.empty())
    log_->Push("registry: " + name_ + " readable again");
  last_error_.clear();
  for (auto& w : warnings) log_->Push("registry: " + w);
  if (have_update_) {
    // The broker has not taken the previous update: merge the revocations.
    revoked.insert(revoked.end(), pending_.revoked.begin(),
                   pending_.revoked.end());
    std::sort(revoked.begin(), revoked.end());
    revoked.erase(std::unique(revoked.begin(), revoked.end()), revoked.end());
  }
  pending_ = RegistryUpdate{current_, std::move(revoked), took_ms, full};
  have_update_ = true;
  has_update_->store(true, std::memory_order_release);
}

bool RegistryReloader::TakeUpdate(RegistryUpdate* out,
                                  std::shared_ptr<const Snapshot>* retired) {
  std::unique_lock<std::mutex> lock(mu_, std::try_to_lock);
  if (!lock.owns_lock() || !have_update_) return false;
  graveyard_.push_back(std::move(*retired));
  retired->reset();
  *out = std::move(pending_);
  pending_ = RegistryUpdate{};
  have_update_ = false;
  has_update_->store(false, std::memory_order_release);
  return true;
}

bool RegistryReloader::LastError(std::string* out) {
  std::unique_lock<std::mutex> lock(mu_, std::try_to_lock);
  if (!lock.owns_lock()) return false;
  *out = last_error_;
  return true;
}

// ------------------------------------------------------------ PostgreSQL

std::string RegistryReloader::PostgresError(const std::string& what,
                                            const std::string& message) const {
  // Connection errors begin with the masked URL: name it once, up front.
  std::string text = message;
  const std::string prefix = name_ + ": ";
  for (size_t pos = text.find(prefix); pos != std::string::npos;
       pos = text.find(prefix, pos)) {
    text.erase(pos, prefix.size());
  }
  return OneLine(RegistryLabel(name_) + ": " +
                 (what.empty() ? "" : what + ": ") + text);
}

Status RegistryReloader::OpenPostgres() {
  Result<Database> db = Database::OpenPostgres(path_, pg_options_);
  if (!db.ok()) {
    return Status::Error(
        PostgresError("cannot connect", db.status().message()));
  }
  db_.emplace(std::move(*db));
  db_->SetBusyTimeout(kBusyTimeoutMs);
  Status s = db_->Exec("SET idle_in_transaction_session_timeout = " +
                       std::to_string(kIdleInTransactionMs));
  // Listening before the load: no change after it goes unnoticed.
  if (s.ok()) s = db_->pg()->Listen(kChannel);
  if (s.ok()) s = CheckSchema(&*db_);
  if (!s.ok()) {
    Close();
    return Status::Error(PostgresError("", s.message()));
  }
  return Status::Ok();
}

void RegistryReloader::Disconnected(const std::string& line) {
  Close();
  // Up to a quarter earlier or later, so that the brokers that lost one
  // server do not all dial it again in the same millisecond.
  const int jitter = retry_delay_ms_ / 4;
  retry_at_ms_ = clock_->MonotonicMs() + retry_delay_ms_ +
                 std::uniform_int_distribution<int>(-jitter, jitter)(random_);
  retry_delay_ms_ = std::min(retry_delay_ms_ * 2, kMaxRetryMs);
  std::lock_guard<std::mutex> lock(mu_);
  if (last_error_.empty()) {
    log_->Push("registry: " + line + "; keeping generation " +
               std::to_string(current_->generation()) + " and reconnecting");
  }
  last_error_ = line;
}

void RegistryReloader::PollPostgres(bool forced) {
  if (!db_) {
    if (clock_->MonotonicMs() < retry_at_ms_) return;
    Status s = Open();
    if (!s.ok()) {
      Disconnected(s.message());
      return;
    }
    forced = true;  // whatever happened meanwhile: a full load
  } else if (Result<std::vector<pg::Notification>> got =
                 db_->pg()->TakeNotifications();
             !got.ok()) {
    // The server ended the session (restart, shutdown, terminated): try
    // again at once, then with the delays.
    retry_delay_ms_ = 0;
    Disconnected(PostgresError("", got.status().message()));
    retry_delay_ms_ = kFirstRetryMs;
    return;
  }
  Result<int64_t> generation = ReadGeneration(&*db_);
  if (!generation.ok()) {
    Disconnected(PostgresError("", generation.status().message()));
    return;
  }
  // The delays start again only once the server answers, not when it
  // merely accepts a connection.
  retry_delay_ms_ = kFirstRetryMs;
  Advance(forced, *generation);
}

int RegistryReloader::socket() {
  if (!db_ || !postgres_) return -1;
  return db_->pg()->socket();
}

bool RegistryReloader::NotificationsWaiting() {
  if (!db_ || !postgres_) return false;
  Result<std::vector<pg::Notification>> got = db_->pg()->TakeNotifications();
  return !got.ok() || !got->empty();
}

int64_t RegistryReloader::RetryInMs() const {
  if (db_ || !postgres_) return -1;
  return std::max<int64_t>(0, retry_at_ms_ - clock_->MonotonicMs());
}

}  // namespace homepot
