// Device acknowledgements (docs/operating.md, "Acknowledgements"): a device
// publishes {"message_id": "...", "status": "..."} on its ack_topic, and the
// plugin matches it to a notification that was routed or queued to that
// very device.
//
// SentNotifications remembers, per copy counted for a device, which
// notification (message_id, publisher, receipt time) the device was sent.
// It is bounded: a ring of `capacity` entries, the oldest replaced first, so
// an acknowledgement that comes after that many newer copies is unmatched.
// Keys are (device, message_id); the same id sent to the same device again
// by the same publisher is kept once (the newest), by another publisher not
// at all (the first publisher keeps the acknowledgement: a device that may
// write to another's token cannot take acknowledgements meant for the
// publisher it races).
//
// Owned by Homepot; broker thread only. Entries hold DeviceEntry pointers
// (stable, never erased).
#ifndef HOMEPOT_PLUGIN_ACKS_H_
#define HOMEPOT_PLUGIN_ACKS_H_

#include <simdjson.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "lifetime.h"
#include "session_table.h"

namespace homepot {

// Largest acknowledgement read, bytes; a larger payload is no ack.
inline constexpr size_t kMaxAckPayload = 1024;
inline constexpr size_t kMaxAckStatusLen = 64;

// Parses acknowledgements. Not thread-safe; reuses its buffers.
class AckParser {
 public:
  // True when `payload` is an object whose "message_id" is a string of
  // 1-64 bytes and whose "status", if present, is a string of 1-64 bytes
  // (absent: "received"). The views live until the next call.
  bool Parse(std::string_view payload, std::string_view* message_id,
             std::string_view* status);

 private:
  simdjson::dom::parser parser_;
  std::string id_;
  std::string status_;
};

class SentNotifications {
 public:
  static constexpr size_t kDefaultCapacity = 65536;

  struct Sent {
    DeviceEntry* device = nullptr;
    DeviceEntry* publisher = nullptr;
    int64_t received_ms = 0;
    uint8_t id_len = 0;
    char id[kMaxMessageIdLen] = {};
    std::string_view message_id() const { return {id, id_len}; }
  };

  explicit SentNotifications(size_t capacity = kDefaultCapacity);
  SentNotifications(const SentNotifications&) = delete;
  SentNotifications& operator=(const SentNotifications&) = delete;

  // A copy of the notification `lifetime` describes was routed or queued
  // to `device`. Ignored without a device, publisher or message_id.
  void Add(DeviceEntry* device, const Lifetime& lifetime);
  // What `device` was sent with `message_id`, or nullptr.
  const Sent* Find(const DeviceEntry* device,
                   std::string_view message_id) const;

  size_t size() const { return index_.size(); }

 private:
  static uint64_t Key(const DeviceEntry* device, std::string_view message_id);

  const size_t capacity_;
  std::vector<Sent> ring_;
  size_t next_ = 0;  // the oldest slot once the ring is full
  std::unordered_map<uint64_t, uint32_t> index_;  // key -> slot
};

}  // namespace homepot

#endif  // HOMEPOT_PLUGIN_ACKS_H_
