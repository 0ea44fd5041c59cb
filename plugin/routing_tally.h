// How many copies of each accepted notification Mosquitto routed to
// connected sessions and kept for offline ones, for its receipt and its
// delivery log row (docs/operating.md, "Receipts").
//
// Mosquitto routes a message right after its MESSAGE event, running one
// read check per subscriber with the very payload buffer the plugin stamped
// (src/subs.c); nothing else happens in between. So the copies of the
// notification being routed are the read checks that carry its buffer, and
// its routing is over at the next event that is not one of them. QoS 2 is
// the exception: it is routed when its PUBREL arrives, which raises no
// plugin event, so its routing waits (bounded in number and time) until
// its first copy is checked; one with no subscriber at all is finished
// when the wait runs out.
//
// Owned by Homepot; broker thread only. Entries hold DeviceEntry pointers
// (stable, never erased), never snapshot pointers.
#ifndef HOMEPOT_PLUGIN_ROUTING_TALLY_H_
#define HOMEPOT_PLUGIN_ROUTING_TALLY_H_

#include <cstddef>
#include <cstdint>
#include <iterator>
#include <list>
#include <string>
#include <string_view>
#include <unordered_map>

#include "lifetime.h"
#include "session_table.h"
#include "utf8.h"

namespace homepot {

struct Routing {
  const void* buffer = nullptr;  // the stamped payload being routed
  uint32_t len = 0;              // its length
  std::string topic;             // at most its first kMaxTopicBytes
  std::string target_device;     // whose token the topic is, or empty
  Lifetime lifetime;             // received_at, expiry, publisher, message_id
  uint32_t routed = 0;
  uint32_t queued = 0;
  int64_t wait_until_ms = 0;  // QoS 2: finished by then without a copy
};

class RoutingTally {
 public:
  // QoS 2 notifications awaiting their PUBREL at once, and for how long.
  static constexpr size_t kMaxAwaiting = 1024;
  static constexpr int64_t kAwaitMs = 2000;
  // Topics are kept (and reported) up to this many bytes (never cutting a
  // UTF-8 character), so memory stays bounded whatever topics clients
  // choose.
  static constexpr size_t kMaxTopicBytes = 256;

  // The notification in `buffer` (`len` bytes, on `topic`, the token of
  // `target_device` or empty) is about to be routed (`qos` < 2) or was
  // stored until its PUBREL (`qos` 2; when kMaxAwaiting are awaited, the
  // oldest is finished first). An awaited routing of the same address is
  // dropped: that buffer was freed. `now_ms`: wall clock. Routings finished
  // meanwhile go through `finish(const Routing&)`.
  template <typename Finish>
  void Begin(const void* buffer, uint32_t len, std::string_view topic,
             std::string_view target_device, const Lifetime& lifetime, int qos,
             int64_t now_ms, Finish finish) {
    FinishOpen(finish);
    if (auto it = index_.find(buffer); it != index_.end()) {
      awaiting_.erase(it->second);
      index_.erase(it);
    }
    Routing* r = &current_;
    if (qos < 2) {
      open_ = true;
    } else {
      if (awaiting_.size() >= kMaxAwaiting) FinishOldest(finish);
      r = &awaiting_.emplace_back();
      index_[buffer] = std::prev(awaiting_.end());
      r->wait_until_ms = now_ms + kAwaitMs;
    }
    r->buffer = buffer;
    r->len = len;
    r->topic.assign(Utf8Prefix(topic, kMaxTopicBytes));
    r->target_device.assign(target_device);
    r->lifetime = lifetime;
    r->routed = 0;
    r->queued = 0;
  }

  // Whether a routing is open or awaited (cheap; checked on every event).
  bool busy() const { return open_ || !awaiting_.empty(); }

  // Whether a QoS 2 notification from `l.publisher` received at
  // `l.received_ms` with `l`'s message_id still awaits its PUBREL (a
  // retransmission of it is not routed again).
  bool Awaits(const Lifetime& l) const {
    for (const Routing& r : awaiting_) {
      if (r.lifetime.publisher == l.publisher &&
          r.lifetime.received_ms == l.received_ms &&
          r.lifetime.message_id() == l.message_id()) {
        return true;
      }
    }
    return false;
  }

  // The routing a read check of `payload` (`len` bytes) counts for, or
  // nullptr. A copy of an awaited QoS 2 notification opens its routing
  // (after finishing the open one through `finish`).
  template <typename Finish>
  Routing* CopyOf(const void* payload, uint32_t len, Finish finish) {
    if (open_ && current_.buffer == payload) {
      return current_.len == len ? &current_ : nullptr;
    }
    if (awaiting_.empty()) return nullptr;
    auto it = index_.find(payload);
    if (it == index_.end() || it->second->len != len) return nullptr;
    FinishOpen(finish);
    current_ = std::move(*it->second);
    awaiting_.erase(it->second);
    index_.erase(it);
    open_ = true;
    return &current_;
  }

  // The open routing is over: `finish(const Routing&)` is called for it.
  template <typename Finish>
  void FinishOpen(Finish finish) {
    if (!open_) return;
    open_ = false;
    finish(static_cast<const Routing&>(current_));
  }
  // Finishes the open routing and the awaited ones whose wait ran out at
  // `now_ms` (all of them when `now_ms` is kNoExpiry).
  template <typename Finish>
  void FinishDue(int64_t now_ms, Finish finish) {
    FinishOpen(finish);
    while (!awaiting_.empty() && awaiting_.front().wait_until_ms <= now_ms) {
      FinishOldest(finish);
    }
  }

 private:
  template <typename Finish>
  void FinishOldest(Finish finish) {
    Routing r = std::move(awaiting_.front());
    index_.erase(r.buffer);
    awaiting_.pop_front();
    finish(static_cast<const Routing&>(r));
  }

  bool open_ = false;
  Routing current_;
  std::list<Routing> awaiting_;  // QoS 2, oldest first
  std::unordered_map<const void*, std::list<Routing>::iterator> index_;
};

}  // namespace homepot

#endif  // HOMEPOT_PLUGIN_ROUTING_TALLY_H_
