// The delivery log (docs/operating.md, "Delivery log"): what happened to
// each accepted notification that carries a message_id, and to each
// rejected one, as rows of the registry's notification_log table.
//
// The broker thread describes what happened as DeliveryEvents and hands
// them over in batches (RegistrySource::SubmitLog, never blocking); the
// registry thread writes them in one transaction per batch and keeps the
// table within its retention (rows and days; the oldest rows go first).
#ifndef HOMEPOT_PLUGIN_DELIVERY_LOG_H_
#define HOMEPOT_PLUGIN_DELIVERY_LOG_H_

#include <cstdint>
#include <string>

namespace homepot {

struct DeliveryEvent {
  enum class Kind : uint8_t {
    // An accepted notification after routing: a new row whose outcome is
    // "routed" (routed > 0), "queued" (queued > 0) or "unreachable".
    kAccepted,
    // A refused notification: a new row, outcome "rejected", with `reason`
    // (a key of HOMEPOT_REJECT_REASONS).
    kRejected,
    // `device` acknowledged the notification (`message_id`, `publisher`):
    // the newest row of that notification not acked yet gets acked_at,
    // latency_ms, status and outcome "acked".
    kAcked,
    // A copy kept for `device` expired before it was delivered: the newest
    // row of that notification whose outcome is "queued" becomes
    // "expired".
    kExpired,
  };
  Kind kind = Kind::kAccepted;
  std::string message_id;     // empty: none (kRejected only)
  std::string publisher;      // device id; empty when not a registry device
  std::string topic;          // kAccepted, kRejected
  std::string target_device;  // the device whose token `topic` is, or empty
  std::string device;         // kAcked, kExpired: the receiving device
  std::string status;         // kAcked: as the device sent it
  std::string reason;         // kRejected
  int64_t received_ms = 0;    // broker receipt time, Unix ms
  int64_t expires_ms = 0;     // 0: no expiry
  int64_t at_ms = 0;          // kAcked: acked_at; kExpired: when
  int64_t latency_ms = 0;     // kAcked: at_ms - received_ms
  uint32_t routed = 0;        // kAccepted
  uint32_t queued = 0;        // kAccepted
};

}  // namespace homepot

#endif  // HOMEPOT_PLUGIN_DELIVERY_LOG_H_
