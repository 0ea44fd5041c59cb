#include "registry_worker.h"

#include <pthread.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <chrono>

namespace homepot {

RegistryWorker::RegistryWorker(std::string path, std::string node,
                               int interval_ms, DeliveryLogRetention retention,
                               Clock* clock)
    : interval_ms_(interval_ms),
      log_(log_flag()),
      reloader_(path, clock, &log_, update_flag()),
      stats_(path, node, clock, &log_),
      log_writer_(path, node, retention, clock, &log_) {}

RegistryWorker::~RegistryWorker() { Shutdown(); }

Result<std::shared_ptr<const Snapshot>> RegistryWorker::Start() {
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
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  reloader_.OpenIfClosed();
  stats_.Flush(reloader_.db(), 5000);
  log_writer_.Flush(reloader_.db(), 5000);
  reloader_.Close();
}

void RegistryWorker::RequestReload() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    reload_requested_ = true;
  }
  cv_.notify_all();
}

bool RegistryWorker::SubmitStats(std::vector<DeviceStatsDelta>* batch) {
  std::unique_lock<std::mutex> lock(mu_, std::try_to_lock);
  if (!lock.owns_lock() || !stats_.Submit(batch)) return false;
  stats_submitted_ = true;
  lock.unlock();
  cv_.notify_all();
  return true;
}

bool RegistryWorker::SubmitLog(std::vector<DeliveryEvent>* batch) {
  std::unique_lock<std::mutex> lock(mu_, std::try_to_lock);
  if (!lock.owns_lock() || !log_writer_.Submit(batch)) return false;
  log_submitted_ = true;
  lock.unlock();
  cv_.notify_all();
  return true;
}

void RegistryWorker::PollUntilStopped() {
  // Registry loads must not compete with the broker thread for a core: run
  // this thread at a lower priority (Linux nice is per thread).
  setpriority(PRIO_PROCESS, static_cast<id_t>(syscall(SYS_gettid)), 10);
  // Named for top -H and /proc/PID/task/*/comm (at most 15 bytes).
  pthread_setname_np(pthread_self(), "homepot-reg");
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_) {
    cv_.wait_for(lock, std::chrono::milliseconds(interval_ms_), [this] {
      return stop_ || reload_requested_ || stats_submitted_ || log_submitted_;
    });
    if (stop_) break;
    bool forced = reload_requested_;
    reload_requested_ = false;
    stats_submitted_ = false;
    log_submitted_ = false;
    lock.unlock();
    reloader_.Poll(forced);
    stats_.Flush(reloader_.db(), 200);
    log_writer_.Flush(reloader_.db(), 200);
    lock.lock();
  }
}

}  // namespace homepot
