// Notification lifetime (docs/operating.md, "Lifetime").
//
// The rule: a notification is live for `ttl` seconds after its receipt time
// (the broker's stamp in the timestamp field); without "ttl", for
// default_ttl seconds, where 0 means no limit. "ttl": 0 means now or never:
// it is live only for the connected sessions it is routed to when it
// arrives, never for an offline session's queue nor as a retained message.
// A copy that is no longer live is never delivered.
//
// Lifetimes answers "is this copy live?" for the payload buffers the broker
// asks about in read checks, in O(1) and without parsing: OnMessage stamps a
// notification into a buffer that the broker then routes, queues and
// persists as is, and Remember records that buffer's address with its
// lifetime. The broker frees buffers without telling the plugin, so an
// entry is keyed by address but trusted only when it still looks like the
// buffer it recorded: same length and the same fingerprint (the 24-byte
// stamp) at the same offset. A payload it does not know (restored from
// Mosquitto's persistence file after a restart, a will copy the plugin
// republished, or an entry replaced when the table was full) is parsed once
// (the timestamp field as RFC 3339 and "ttl") and then remembered. A payload
// without a parsable stamp counts as received when the plugin started.
// Capacity is bounded; when full, the oldest entry is replaced.
//
// Limits: a freed buffer reused for another payload of the same length with
// the same bytes at the fingerprint offset is taken for the one recorded.
// Broker thread only.
#ifndef HOMEPOT_PLUGIN_LIFETIME_H_
#define HOMEPOT_PLUGIN_LIFETIME_H_

#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "notification.h"
#include "session_table.h"

namespace homepot {

inline constexpr int64_t kNoExpiry = std::numeric_limits<int64_t>::max();
inline constexpr size_t kMaxMessageIdLen = 64;

// The lifetime of one notification and what the receipts need of it.
struct Lifetime {
  int64_t received_ms = 0;
  int64_t expires_ms = kNoExpiry;    // received_ms + ttl (kNoExpiry: none)
  bool now_or_never = false;         // "ttl": 0
  DeviceEntry* publisher = nullptr;  // nullptr when unknown
  uint8_t message_id_len = 0;        // 0: absent or longer than 64 bytes
  char message_id_buf[kMaxMessageIdLen] = {};

  std::string_view message_id() const {
    return std::string_view(message_id_buf, message_id_len);
  }
  // Whether a copy may be delivered at `now_ms` (wall clock).
  // `routing_to_connected`: the copy is being routed, as the message
  // arrives, to a connected session (not queued for an offline one, not
  // replayed from a queue, not a retained copy).
  bool LiveAt(int64_t now_ms, bool routing_to_connected) const {
    if (now_or_never) return routing_to_connected;
    return now_ms < expires_ms;
  }
};

class Lifetimes {
 public:
  static constexpr size_t kDefaultCapacity = 65536;

  // `default_ttl_s`: for notifications without "ttl" (0 = no limit).
  // `started_ms`: wall clock when the plugin started. `max_read`: the
  // largest payload read once (max_payload); a larger unknown one is never
  // parsed and counts as received at `started_ms`.
  Lifetimes(std::string timestamp_field, int64_t default_ttl_s,
            int64_t started_ms, uint32_t max_read,
            size_t capacity = kDefaultCapacity);
  Lifetimes(const Lifetimes&) = delete;
  Lifetimes& operator=(const Lifetimes&) = delete;

  // Records the buffer the plugin stamped: `stamp_offset` is where its
  // 24-byte stamp starts, `ttl_s` the "ttl" (-1 when absent),
  // `message_id` is kept when at most 64 bytes.
  const Lifetime& Remember(const void* payload, uint32_t payloadlen,
                           size_t stamp_offset, int64_t received_ms,
                           int64_t ttl_s, DeviceEntry* publisher,
                           std::string_view message_id);

  // The lifetime of the payload in `payload`: remembered, or read once.
  // The reference lives until the next call.
  const Lifetime& Of(const void* payload, uint32_t payloadlen);

  size_t size() const { return index_.size(); }
  // Payloads read because they were not remembered (for tests).
  uint64_t parsed() const { return parsed_; }

 private:
  static constexpr size_t kFingerprintLen = 24;
  struct Entry {
    const void* key = nullptr;
    uint32_t len = 0;
    uint32_t fp_offset = 0;
    uint8_t fp_len = 0;
    char fp[kFingerprintLen] = {};
    Lifetime lifetime;
  };

  Entry& Slot(const void* key);
  void Fill(Entry* e, const void* payload, uint32_t len, size_t fp_offset,
            int64_t received_ms, int64_t ttl_s, DeviceEntry* publisher,
            std::string_view message_id);

  const int64_t default_ttl_s_;
  const int64_t started_ms_;
  const uint32_t max_read_;
  const size_t capacity_;
  NotificationValidator validator_;
  std::vector<Entry> ring_;
  size_t next_ = 0;  // the oldest slot once the ring is full
  std::unordered_map<const void*, uint32_t> index_;
  uint64_t parsed_ = 0;
};

}  // namespace homepot

#endif  // HOMEPOT_PLUGIN_LIFETIME_H_
