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

int mosquitto_plugin_version(int, const int*) { return 5; }

int mosquitto_plugin_init(mosquitto_plugin_id_t*, void** user_data,
                          struct mosquitto_opt*, int) {
  try {
    auto* idle = new Idle;
    idle->thread = std::thread([idle] {
      std::unique_lock<std::mutex> lock(idle->mu);
      idle->cv.wait(lock, [idle] { return idle->stop; });
    });
    *user_data = idle;
    return MOSQ_ERR_SUCCESS;
  } catch (...) {
    return MOSQ_ERR_UNKNOWN;
  }
}

int mosquitto_plugin_cleanup(void* user_data, struct mosquitto_opt*, int) {
  auto* idle = static_cast<Idle*>(user_data);
  if (idle == nullptr) return MOSQ_ERR_SUCCESS;
  {
    std::lock_guard<std::mutex> lock(idle->mu);
    idle->stop = true;
  }
  idle->cv.notify_one();
  idle->thread.join();
  delete idle;
  return MOSQ_ERR_SUCCESS;
}

}  // extern "C"
