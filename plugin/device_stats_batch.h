// Per-device statistics between two hand-overs to the registry source:
// events bump the counters kept in each DeviceState and list the entries
// they changed; Submit hands the listed deltas over (and zeroes them), or
// keeps them for the next attempt when the source is busy.
//
// Owned by Homepot; broker thread only. Listed entries are DeviceEntry
// pointers, which stay valid (entries are never erased).
#ifndef HOMEPOT_PLUGIN_DEVICE_STATS_BATCH_H_
#define HOMEPOT_PLUGIN_DEVICE_STATS_BATCH_H_

#include <vector>

#include "registry_source.h"
#include "session_table.h"
#include "stats.h"

namespace homepot {

class DeviceStatsBatch {
 public:
  // The counters of `d` to bump, listed for the next hand-over; nullptr for
  // nullptr (no device).
  DeviceCounters* CountersToFlush(DeviceEntry* d) {
    if (d == nullptr) return nullptr;
    if (!d->second.counters.dirty) {
      d->second.counters.dirty = true;
      dirty_.push_back(d);
    }
    return &d->second.counters;
  }

  // Hands the listed deltas to `source`; kept for next time when it is busy.
  void Submit(RegistrySource* source);
  // Whether deltas are waiting for a hand-over.
  bool pending() const { return !dirty_.empty(); }

 private:
  std::vector<DeviceEntry*> dirty_;  // entries whose counters are dirty
};

}  // namespace homepot

#endif  // HOMEPOT_PLUGIN_DEVICE_STATS_BATCH_H_
