#include "lifetime.h"

#include <algorithm>
#include <climits>
#include <cstring>
#include <optional>
#include <utility>

#include "rfc3339.h"

namespace homepot {

Lifetimes::Lifetimes(std::string timestamp_field, int64_t default_ttl_s,
                     int64_t started_ms, uint32_t max_read, size_t capacity)
    : default_ttl_s_(default_ttl_s),
      started_ms_(started_ms),
      max_read_(max_read),
      capacity_(std::max<size_t>(capacity, 1)),
      validator_(std::move(timestamp_field)) {
  ring_.reserve(capacity_);
  index_.reserve(capacity_);
}

Lifetimes::Entry& Lifetimes::Slot(const void* key) {
  if (auto it = index_.find(key); it != index_.end()) return ring_[it->second];
  uint32_t slot;
  if (ring_.size() < capacity_) {
    slot = static_cast<uint32_t>(ring_.size());
    ring_.emplace_back();
  } else {
    slot = static_cast<uint32_t>(next_);
    next_ = (next_ + 1) % capacity_;
    index_.erase(ring_[slot].key);
  }
  index_.emplace(key, slot);
  ring_[slot].key = key;
  return ring_[slot];
}

void Lifetimes::Fill(Entry* e, const void* payload, uint32_t len,
                     size_t fp_offset, int64_t received_ms, int64_t ttl_s,
                     DeviceEntry* publisher, std::string_view message_id) {
  const char* p = static_cast<const char*>(payload);
  fp_offset = std::min<size_t>(fp_offset, len);
  e->len = len;
  e->fp_offset = static_cast<uint32_t>(fp_offset);
  e->fp_len = static_cast<uint8_t>(std::min(kFingerprintLen, len - fp_offset));
  if (e->fp_len > 0) std::memcpy(e->fp, p + fp_offset, e->fp_len);
  Lifetime& l = e->lifetime;
  l = Lifetime();
  l.received_ms = received_ms;
  if (ttl_s < 0) ttl_s = default_ttl_s_ > 0 ? default_ttl_s_ : -1;
  if (ttl_s == 0) {
    l.now_or_never = true;
    l.expires_ms = received_ms;
  } else if (ttl_s > 0) {
    ttl_s = std::min(ttl_s, kMaxTtlSeconds);
    l.expires_ms = received_ms + ttl_s * 1000;
  }
  l.publisher = publisher;
  if (!message_id.empty() && message_id.size() <= kMaxMessageIdLen) {
    std::memcpy(l.message_id_buf, message_id.data(), message_id.size());
    l.message_id_len = static_cast<uint8_t>(message_id.size());
  }
}

const Lifetime& Lifetimes::Remember(const void* payload, uint32_t payloadlen,
                                    size_t stamp_offset, int64_t received_ms,
                                    int64_t ttl_s, DeviceEntry* publisher,
                                    std::string_view message_id) {
  Entry& e = Slot(payload);
  Fill(&e, payload, payloadlen, stamp_offset, received_ms, ttl_s, publisher,
       message_id);
  return e.lifetime;
}

const Lifetime& Lifetimes::Of(const void* payload, uint32_t payloadlen) {
  const char* p = static_cast<const char*>(payload);
  if (auto it = index_.find(payload); it != index_.end()) {
    const Entry& e = ring_[it->second];
    if (e.len == payloadlen &&
        (e.fp_len == 0 || std::memcmp(e.fp, p + e.fp_offset, e.fp_len) == 0)) {
      return e.lifetime;
    }
  }
  // Not one the plugin stamped (or no longer): read it once.
  ++parsed_;
  std::string_view body(p, payload != nullptr ? payloadlen : 0);
  const NotificationCheck& check =
      validator_.Check(body, max_read_, 0, INT_MAX);
  int64_t received_ms = started_ms_;
  int64_t ttl_s = -1;
  size_t fp_offset = 0;
  std::string_view message_id;
  if (check.reject == Reject::kNone) {
    ttl_s = check.ttl_s;
    if (check.has_message_id) message_id = check.message_id;
    if (check.has_stamp_field && check.stamp_end >= check.stamp_begin + 2 &&
        body[check.stamp_begin] == '"') {
      std::string_view value = body.substr(
          check.stamp_begin + 1, check.stamp_end - check.stamp_begin - 2);
      if (std::optional<int64_t> ms =
              ParseRfc3339Ms(value, Rfc3339Zones::kLenient)) {
        received_ms = *ms;
        fp_offset = check.stamp_begin + 1;
      }
    }
  }
  Entry& e = Slot(payload);
  Fill(&e, payload, payloadlen, fp_offset, received_ms, ttl_s, nullptr,
       message_id);
  return e.lifetime;
}

}  // namespace homepot
