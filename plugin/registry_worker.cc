#include "registry_worker.h"

#include <poll.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>

#include "pg.h"

namespace homepot {
namespace {

// How the writers name the registry: its location, a URL masked.
std::string MaskedLocation(const std::string& location) {
  return IsPostgresUrl(location) ? pg::MaskedUrl(location) : location;
}

// Flushes chunk after chunk until nothing waits or a flush fails.
template <typename Writer>
void FlushAll(Writer* writer, Database* db, int busy_timeout_ms) {
  while (writer->Flush(db, busy_timeout_ms) && writer->pending() > 0) {
  }
}

}  // namespace

RegistryWorker::RegistryWorker(std::string location, std::string node,
                               int interval_ms, DeliveryLogRetention retention,
                               Clock* clock)
    : interval_ms_(interval_ms),
      log_(log_flag()),
      reloader_(location, clock, &log_, update_flag()),
      stats_(MaskedLocation(location), node, clock, &log_),
      log_writer_(MaskedLocation(location), node, retention, clock, &log_) {
  if (reloader_.postgres()) {
    wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    stop_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    reloader_.SetInterruptFd(stop_fd_);
  }
}

RegistryWorker::~RegistryWorker() {
  Shutdown();
  if (wake_fd_ >= 0) close(wake_fd_);
  if (stop_fd_ >= 0) close(stop_fd_);
}

Result<std::shared_ptr<const Snapshot>> RegistryWorker::Start() {
  if (reloader_.postgres() && (wake_fd_ < 0 || stop_fd_ < 0)) {
    return Status::Error(std::string("cannot create an eventfd: ") +
                         std::strerror(errno));
  }
  auto first = reloader_.LoadFirst();
  if (!first.ok()) return first;
  // Nobody is connected yet. A busy or read-only file is logged once and
  // the reset goes with the next flush that succeeds.
  stats_.ResetPresence(reloader_.db(), 200);
  thread_ = std::thread([this] { PollUntilStopped(); });
  return first;
}

void RegistryWorker::Shutdown() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  Wake();
  if (thread_.joinable()) {
    // A pass under way ends normally when the database answers; only one
    // that stalls is interrupted (which closes the connection: what is
    // pending is then not written).
    std::unique_lock<std::mutex> lock(mu_);
    if (!cv_.wait_for(lock, std::chrono::milliseconds(kShutdownStallTimeoutMs),
                      [this] { return thread_done_; }) &&
        stop_fd_ >= 0) {
      const uint64_t one = 1;
      (void)!write(stop_fd_, &one, sizeof(one));
    }
  }
  if (thread_.joinable()) thread_.join();
  // The last writes, on this thread: not interrupted, but bounded.
  reloader_.SetInterruptFd(-1);
  reloader_.SetStallTimeoutMs(kShutdownStallTimeoutMs);
  // A PostgreSQL database that is away is not dialled again here (each
  // attempt can last the connect timeout, and the broker is stopping): what
  // is pending stays unwritten, as it would while the database is away.
  const bool away = reloader_.postgres() &&
                    (db_away_at_shutdown_ || reloader_.RetryInMs() >= 0);
  if (!away) reloader_.OpenIfClosed();
  if (reloader_.postgres() && reloader_.db() == nullptr) {
    db_away_at_shutdown_ = true;
  }
  FlushAll(&stats_, reloader_.db(), 5000);
  // Nobody is connected to this node any more.
  stats_.ResetPresence(reloader_.db(), 5000);
  FlushAll(&log_writer_, reloader_.db(), 5000);
  reloader_.Close();
}

void RegistryWorker::Wake() {
  cv_.notify_all();
  if (wake_fd_ >= 0) {
    const uint64_t one = 1;
    // Never blocks (EFD_NONBLOCK); a full counter is still a wake-up.
    (void)!write(wake_fd_, &one, sizeof(one));
  }
}

void RegistryWorker::RequestReload() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    reload_requested_ = true;
  }
  Wake();
}

bool RegistryWorker::SubmitStats(std::vector<DeviceStatsDelta>* batch) {
  std::unique_lock<std::mutex> lock(mu_, std::try_to_lock);
  if (!lock.owns_lock() || !stats_.Submit(batch)) return false;
  stats_submitted_ = true;
  lock.unlock();
  Wake();
  return true;
}

bool RegistryWorker::SubmitLog(std::vector<DeliveryEvent>* batch) {
  std::unique_lock<std::mutex> lock(mu_, std::try_to_lock);
  if (!lock.owns_lock() || !log_writer_.Submit(batch)) return false;
  log_submitted_ = true;
  lock.unlock();
  Wake();
  return true;
}

void RegistryWorker::WaitOnPostgres(std::unique_lock<std::mutex>* lock) {
  if (HasWork()) return;
  lock->unlock();
  // Notifications libpq read during the last pass's statements are in its
  // buffer, not on the socket.
  if (!reloader_.NotificationsWaiting()) {
    int timeout_ms = interval_ms_;
    const int64_t retry_ms = reloader_.RetryInMs();
    if (retry_ms >= 0) {
      timeout_ms = static_cast<int>(std::min<int64_t>(timeout_ms, retry_ms));
    }
    pollfd fds[2] = {{wake_fd_, POLLIN, 0}, {reloader_.socket(), POLLIN, 0}};
    const nfds_t count = fds[1].fd >= 0 ? 2 : 1;
    if (poll(fds, count, timeout_ms) > 0 && (fds[0].revents & POLLIN) != 0) {
      uint64_t wakes = 0;
      (void)!read(wake_fd_, &wakes, sizeof(wakes));
    }
  }
  lock->lock();
}

void RegistryWorker::PollUntilStopped() {
  // Registry loads must not compete with the broker thread for a core: run
  // this thread at a lower priority (Linux nice is per thread).
  setpriority(PRIO_PROCESS, static_cast<id_t>(syscall(SYS_gettid)), 10);
  // Named for top -H and /proc/PID/task/*/comm (at most 15 bytes).
  pthread_setname_np(pthread_self(), "homepot-reg");
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_) {
    if (reloader_.postgres()) {
      WaitOnPostgres(&lock);
    } else {
      cv_.wait_for(lock, std::chrono::milliseconds(interval_ms_),
                   [this] { return HasWork(); });
    }
    if (stop_) break;
    bool forced = reload_requested_;
    reload_requested_ = false;
    stats_submitted_ = false;
    log_submitted_ = false;
    backlog_ = false;
    lock.unlock();
    reloader_.Poll(forced);
    // One chunk each; a writer that wrote one and has more makes the next
    // pass start at once (one that failed waits, as a busy file does).
    const bool stats_left =
        stats_.Flush(reloader_.db(), 200) && stats_.pending() > 0;
    const bool log_left =
        log_writer_.Flush(reloader_.db(), 200) && log_writer_.pending() > 0;
    lock.lock();
    backlog_ = stats_left || log_left;
  }
  thread_done_ = true;
  cv_.notify_all();  // Shutdown waits for it
}

}  // namespace homepot
