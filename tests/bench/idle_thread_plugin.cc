// A benchmark control, not part of the product: a Mosquitto plugin that
// only starts one thread, which sleeps until the broker unloads it.
//
// glibc runs the whole process on its multi-threaded paths (locking malloc
// arenas, cancellation points around every read/write/epoll_wait) from the
// first pthread_create on, for good. HOMEPOT needs a thread to load the
// registry and write device_stats off the broker thread, so that cost is
// part of its figure; `scripts/bench --kinds "plain plainthr ..."` measures
// it alone: plain Mosquitto with this plugin loaded.
#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>

#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>

namespace {

struct Idle {
  std::mutex mu;
  std::condition_variable cv;
  bool stop = false;
  std::thread thread;
};

}  // namespace

extern "C" {

int mosquitto_plugin_version(int count, const int* versions) noexcept {
  for (int i = 0; i < count; ++i) {
    if (versions[i] == 5) return 5;
  }
  return -1;
}

int mosquitto_plugin_init(mosquitto_plugin_id_t*, void** user_data,
                          struct mosquitto_opt*, int) noexcept {
  try {
    auto idle = std::make_unique<Idle>();
    Idle* raw = idle.get();
    idle->thread = std::thread([raw] {
      std::unique_lock<std::mutex> lock(raw->mu);
      raw->cv.wait(lock, [raw] { return raw->stop; });
    });
    *user_data = idle.release();
    return MOSQ_ERR_SUCCESS;
  } catch (...) {
    return MOSQ_ERR_UNKNOWN;
  }
}

int mosquitto_plugin_cleanup(void* user_data, struct mosquitto_opt*,
                             int) noexcept {
  std::unique_ptr<Idle> idle(static_cast<Idle*>(user_data));
  if (idle == nullptr) return MOSQ_ERR_SUCCESS;
  try {
    {
      std::lock_guard<std::mutex> lock(idle->mu);
      idle->stop = true;
    }
    idle->cv.notify_one();
    idle->thread.join();
    return MOSQ_ERR_SUCCESS;
  } catch (...) {
    // The thread could not be joined: leave it and its state behind rather
    // than destroy a running thread's objects.
    idle.release();
    return MOSQ_ERR_UNKNOWN;
  }
}

}  // extern "C"
