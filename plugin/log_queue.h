// Log lines written on the registry thread for the broker thread to forward
// (only the broker thread may call the broker). Push may wait for the lock;
// Take never does. `ready` is the flag the broker thread polls on every
// event (RegistrySource::HasLogs): it is kept equal to "lines are waiting"
// under the lock.
#ifndef HOMEPOT_PLUGIN_LOG_QUEUE_H_
#define HOMEPOT_PLUGIN_LOG_QUEUE_H_

#include <atomic>
#include <mutex>
#include <string>
#include <vector>

namespace homepot {

class LogQueue {
 public:
  explicit LogQueue(std::atomic<bool>* ready) : ready_(ready) {}
  LogQueue(const LogQueue&) = delete;
  LogQueue& operator=(const LogQueue&) = delete;

  void Push(std::string line) {
    std::lock_guard<std::mutex> lock(mu_);
    lines_.push_back(std::move(line));
    ready_->store(true, std::memory_order_release);
  }

  // Broker thread: false when the lock is held right now.
  bool Take(std::vector<std::string>* out) {
    std::unique_lock<std::mutex> lock(mu_, std::try_to_lock);
    if (!lock.owns_lock()) return false;
    out->swap(lines_);
    lines_.clear();
    ready_->store(false, std::memory_order_release);
    return true;
  }

 private:
  std::atomic<bool>* const ready_;
  std::mutex mu_;
  std::vector<std::string> lines_;
};

}  // namespace homepot

#endif  // HOMEPOT_PLUGIN_LOG_QUEUE_H_
