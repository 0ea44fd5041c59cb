// What the core (Homepot) needs from whoever keeps the registry: new
// snapshots with the devices they revoke, log lines to forward, and a sink
// for per-device statistics. RegistryWorker is the real one (a background
// thread over the SQLite file or PostgreSQL database); the core's unit tests
// push snapshots through a fake.
//
// Threads: every method is called on the broker thread and never blocks
// (an implementation answers "not now" rather than wait for a lock), except
// RequestReload (SIGHUP) and Shutdown (plugin cleanup). HasUpdate and
// HasLogs are read on every broker event: they are inline atomic loads of
// flags the implementation sets from any thread.
#ifndef HOMEPOT_PLUGIN_REGISTRY_SOURCE_H_
#define HOMEPOT_PLUGIN_REGISTRY_SOURCE_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "delivery_log.h"
#include "registry.h"
#include "stats.h"

namespace homepot {

struct RegistryUpdate {
  std::shared_ptr<const Snapshot> snapshot;
  std::vector<std::string> revoked;  // sessions to end (see RevokedDevices)
  int64_t load_ms = 0;               // how long the build took
  bool full = true;  // read in full, not brought forward by the change feed
};

class RegistrySource {
 public:
  virtual ~RegistrySource() = default;

  // A new snapshot is ready (TakeUpdate may still answer false).
  bool HasUpdate() const { return has_update_.load(std::memory_order_acquire); }
  // Log lines are waiting (TakeLogs may still answer false).
  bool HasLogs() const { return has_logs_.load(std::memory_order_acquire); }

  // Returns false when nothing new is ready or it cannot be had right now.
  // On success `*retired` (the snapshot being replaced) is handed over, so
  // that it is freed off the broker thread.
  virtual bool TakeUpdate(RegistryUpdate* out,
                          std::shared_ptr<const Snapshot>* retired) = 0;
  // Asks for a reload at once (SIGHUP).
  virtual void RequestReload() = 0;
  // Messages to log (an implementation never calls the broker itself).
  virtual bool TakeLogs(std::vector<std::string>* out) = 0;
  // Takes per-device deltas to add to device_stats. Returns false, leaving
  // `batch` as it was, when it cannot take them right now.
  virtual bool SubmitStats(std::vector<DeviceStatsDelta>* batch) = 0;
  // Takes delivery log events (delivery_log.h) to write in order. Returns
  // false, leaving `batch` as it was, when it cannot take them right now.
  virtual bool SubmitLog(std::vector<DeliveryEvent>* batch) = 0;
  // The last load error, empty when the last attempt succeeded. Returns
  // false if it could not be read now.
  virtual bool LastError(std::string* out) = 0;
  // Stops reloading and writes pending device stats and log events (clean
  // shutdown; may block). Once it has returned, SubmitStats and SubmitLog
  // never refuse, and another call writes what was submitted since.
  virtual void Shutdown() = 0;

 protected:
  // The flags behind HasUpdate and HasLogs, for the implementation to keep
  // (set them under the lock that guards what they announce).
  std::atomic<bool>* update_flag() { return &has_update_; }
  std::atomic<bool>* log_flag() { return &has_logs_; }

 private:
  std::atomic<bool> has_update_{false};
  std::atomic<bool> has_logs_{false};
};

}  // namespace homepot

#endif  // HOMEPOT_PLUGIN_REGISTRY_SOURCE_H_
