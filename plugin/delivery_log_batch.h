// Delivery log events (delivery_log.h) between two hand-overs to the
// registry source, bounded: when kMaxPending wait (the registry thread has
// been busy for long), new events are dropped and counted, never queued
// without limit.
//
// Owned by Homepot; broker thread only.
#ifndef HOMEPOT_PLUGIN_DELIVERY_LOG_BATCH_H_
#define HOMEPOT_PLUGIN_DELIVERY_LOG_BATCH_H_

#include <cstddef>
#include <vector>

#include "delivery_log.h"
#include "registry_source.h"

namespace homepot {

class DeliveryLogBatch {
 public:
  static constexpr size_t kMaxPending = 65536;

  // A new event of `kind` to fill in, or nullptr when the batch is full.
  DeliveryEvent* Add(DeliveryEvent::Kind kind) {
    if (events_.size() >= kMaxPending) return nullptr;
    DeliveryEvent& e = events_.emplace_back();
    e.kind = kind;
    return &e;
  }
  // Hands the events to `source`; kept for next time when it is busy.
  void Submit(RegistrySource* source) {
    if (!events_.empty()) source->SubmitLog(&events_);
  }
  bool pending() const { return !events_.empty(); }

 private:
  std::vector<DeliveryEvent> events_;
};

}  // namespace homepot

#endif  // HOMEPOT_PLUGIN_DELIVERY_LOG_BATCH_H_
