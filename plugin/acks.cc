#include "acks.h"

#include <cstring>
#include <functional>

namespace homepot {

bool AckParser::Parse(std::string_view payload, std::string_view* message_id,
                      std::string_view* status) {
  if (payload.empty() || payload.size() > kMaxAckPayload) return false;
  simdjson::dom::element root;
  if (parser_.parse(payload.data(), payload.size()).get(root) !=
      simdjson::SUCCESS) {
    return false;
  }
  simdjson::dom::object object;
  if (root.get_object().get(object) != simdjson::SUCCESS) return false;
  std::string_view id;
  if (object["message_id"].get_string().get(id) != simdjson::SUCCESS ||
      id.empty() || id.size() > kMaxMessageIdLen) {
    return false;
  }
  std::string_view st = "received";
  simdjson::dom::element field;
  if (object["status"].get(field) == simdjson::SUCCESS) {
    if (field.get_string().get(st) != simdjson::SUCCESS || st.empty() ||
        st.size() > kMaxAckStatusLen) {
      return false;
    }
  }
  // The parser's buffers are reused by the next parse: keep copies.
  id_.assign(id);
  status_.assign(st);
  *message_id = id_;
  *status = status_;
  return true;
}

SentNotifications::SentNotifications(size_t capacity)
    : capacity_(capacity == 0 ? 1 : capacity) {}

uint64_t SentNotifications::Key(const DeviceEntry* device,
                                std::string_view message_id) {
  const uint64_t h = std::hash<std::string_view>{}(message_id);
  return h ^ (reinterpret_cast<uintptr_t>(device) * 0x9E3779B97F4A7C15ull);
}

void SentNotifications::Add(DeviceEntry* device, const Lifetime& lifetime) {
  const std::string_view id = lifetime.message_id();
  if (device == nullptr || lifetime.publisher == nullptr || id.empty()) {
    return;
  }
  const uint64_t key = Key(device, id);
  Sent* slot = nullptr;
  auto it = index_.find(key);
  if (it != index_.end()) {
    slot = &ring_[it->second];  // the same id again, or a collision
    // Another publisher's notification with the same id does not take the
    // device's acknowledgement from the first one.
    if (slot->device == device && slot->message_id() == id &&
        slot->publisher != lifetime.publisher) {
      return;
    }
  } else if (ring_.size() < capacity_) {
    index_.emplace(key, static_cast<uint32_t>(ring_.size()));
    slot = &ring_.emplace_back();
  } else {
    slot = &ring_[next_];
    auto old = index_.find(Key(slot->device, slot->message_id()));
    if (old != index_.end() && old->second == next_) index_.erase(old);
    index_.emplace(key, static_cast<uint32_t>(next_));
    next_ = (next_ + 1) % capacity_;
  }
  slot->device = device;
  slot->publisher = lifetime.publisher;
  slot->received_ms = lifetime.received_ms;
  slot->id_len = static_cast<uint8_t>(id.size());
  std::memcpy(slot->id, id.data(), id.size());
}

const SentNotifications::Sent* SentNotifications::Find(
    const DeviceEntry* device, std::string_view message_id) const {
  if (device == nullptr || message_id.empty()) return nullptr;
  auto it = index_.find(Key(device, message_id));
  if (it == index_.end()) return nullptr;
  const Sent& s = ring_[it->second];
  return s.device == device && s.message_id() == message_id ? &s : nullptr;
}

}  // namespace homepot
