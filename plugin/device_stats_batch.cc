#include "device_stats_batch.h"

namespace homepot {

void DeviceStatsBatch::Submit(RegistrySource* source) {
  if (dirty_.empty()) return;
  std::vector<DeviceStatsDelta> batch;
  std::vector<DeviceEntry*> entries;
  batch.reserve(dirty_.size());
  entries.reserve(dirty_.size());
  for (DeviceEntry* d : dirty_) {
    DeviceCounters& c = d->second.counters;
    if (!c.dirty) continue;  // reset since (device removed), or listed twice
    c.dirty = false;
    batch.push_back({d->first, c});
    entries.push_back(d);
  }
  if (!source->SubmitStats(&batch)) {  // busy: try next time
    for (DeviceEntry* d : entries) d->second.counters.dirty = true;
    dirty_.swap(entries);
    return;
  }
  for (DeviceEntry* d : entries) d->second.counters = DeviceCounters{};
  dirty_.clear();
}

}  // namespace homepot
