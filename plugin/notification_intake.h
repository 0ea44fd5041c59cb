// The core's handling of notification writes: which topics carry
// notifications (memoised on the last topic, since the deliveries of one
// message ask in a burst), validation against the effective size limit,
// the receipt stamp (with QoS 2 retransmissions getting their first copy's
// stamp, and a trusted bridge's notification keeping the stamp it carries),
// the counters of sent/accepted/refused/bridged notifications and the
// refusal notice published to $SYS/homepot/rejections/<username>.
//
// Owned by Homepot; broker thread only. The validation result of the last
// write lives until the next Check; OnMessage reuses it for the very buffer
// the ACL check validated (TakeValidated).
#ifndef HOMEPOT_PLUGIN_NOTIFICATION_INTAKE_H_
#define HOMEPOT_PLUGIN_NOTIFICATION_INTAKE_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "broker.h"
#include "config.h"
#include "delivery_log_batch.h"
#include "device_stats_batch.h"
#include "notification.h"
#include "qos2_stamps.h"
#include "registry.h"
#include "session_table.h"
#include "stats.h"
#include "timestamp_injector.h"
#include "topic.h"

namespace homepot {

class NotificationIntake {
 public:
  // `counters`, `device_stats` and `log` (nullptr: the delivery log is
  // off) belong to the caller and outlive this.
  NotificationIntake(const Config& config, Broker* broker, Clock* clock,
                     Counters* counters, DeviceStatsBatch* device_stats,
                     DeliveryLogBatch* log);
  NotificationIntake(const NotificationIntake&) = delete;
  NotificationIntake& operator=(const NotificationIntake&) = delete;

  // True when `topic` matches notification_topics.
  bool IsNotificationTopic(std::string_view topic) {
    if (topic == last_topic_) return last_topic_is_notification_;
    bool match = filters_.MatchesAny(topic);
    if (topic.size() <= 256) {  // keeps the memo allocation-free once warm
      last_topic_.assign(topic);
      last_topic_is_notification_ = match;
    }
    return match;
  }

  // Validates a notification write of `client` (its device entry `device`,
  // nullptr when none), sets the receipt time, counts it and sends the
  // notice when it is refused. `trusted_bridge`: IsTrustedBridge
  // (registry.h) of the publisher; an accepted notification of a trusted
  // bridge whose timestamp field holds a stamp as TimestampInjector writes
  // it keeps that stamp and is counted as bridged only (not as sent,
  // accepted, by QoS or priority, nor as published by the bridge device);
  // any other is stamped and counted as every notification. `may_repeat`:
  // a QoS 2 PUBLISH that may be a retransmission (not counted again,
  // stamped as the first copy).
  const NotificationCheck& Check(const ClientInfo& client, DeviceEntry* device,
                                 std::string_view topic,
                                 std::string_view payload, int qos,
                                 const Snapshot& snapshot, bool trusted_bridge,
                                 bool may_repeat = true);

  // Forgets the last validation: the ACL check of the next write begins, or
  // it was not an ACL check's (a MESSAGE event without one, as a bridge's
  // own context gets, must never reuse it for a later buffer at the same
  // address).
  void ForgetValidated() { checked_payload_ = nullptr; }
  // The result of the ACL check that validated this very buffer of
  // `client` just before (accepted), or nullptr. Forgets it either way.
  const NotificationCheck* TakeValidated(std::string_view payload,
                                         const void* client) {
    bool reuse = checked_payload_ == payload.data() &&
                 checked_client_ == client && checked_len_ == payload.size() &&
                 checked_ok_;
    checked_payload_ = nullptr;
    return reuse ? &validator_.last() : nullptr;
  }

  // Whether the last Check was of a QoS 2 retransmission.
  bool last_was_repeat() const { return last_was_repeat_; }
  // Whether the last Check accepted a trusted bridge's notification with
  // the stamp it carries (a publication another node counted).
  bool last_kept_stamp() const { return last_kept_stamp_; }
  // The receipt time (`timestamp_field`) the notification being processed
  // leaves with: this broker's wall clock at Check, the first copy's for a
  // QoS 2 retransmission, the stamp it kept for a trusted bridge's.
  int64_t receipt_ms() const { return receipt_ms_; }
  // This broker's wall clock read at the last Check (or refusal).
  int64_t clock_ms() const { return clock_ms_; }
  // Size of `payload` with the receipt stamp injected per `check`.
  size_t StampedSize(const NotificationCheck& check, size_t payload_len) const {
    return injector_.InjectedSize(check, payload_len);
  }
  // Offset of the 24-byte receipt stamp in the stamped payload.
  size_t StampOffset(const NotificationCheck& check) const {
    return injector_.StampOffset(check);
  }
  // Writes `payload` with the receipt stamp into `out` (StampedSize bytes).
  void WriteStamped(const NotificationCheck& check, std::string_view payload,
                    char* out) const;

  // Counts a refused notification write, tells the sender (when it has a
  // username) why on its rejections topic and logs it.
  void Refuse(const ClientInfo& client, DeviceEntry* device,
              std::string_view topic, std::string_view reason,
              const std::string& detail, std::string_view message_id = {});
  // A notification write the ACL refused: counted as sent and refused.
  void RefuseUnauthorized(const ClientInfo& client, DeviceEntry* device,
                          std::string_view topic);

 private:
  const uint32_t max_payload_;
  const int max_topic_depth_;
  Broker* const broker_;
  Clock* const clock_;
  Counters* const counters_;
  DeviceStatsBatch* const device_stats_;
  DeliveryLogBatch* const log_;
  NotificationValidator validator_;
  TimestampInjector injector_;
  const FilterSet filters_;  // notification_topics
  std::string last_topic_;
  bool last_topic_is_notification_ = false;
  // The clock is read once per message (at Check) into both; receipt_ms_
  // then becomes a repeat's or a bridge's kept stamp (see receipt_ms()).
  int64_t receipt_ms_ = 0;
  int64_t clock_ms_ = 0;
  Qos2Stamps qos2_stamps_;
  mutable StampCache stamp_cache_;  // for WriteStamped
  bool last_was_repeat_ = false;
  bool last_kept_stamp_ = false;
  // The last validated write, so OnMessage need not parse it again.
  const void* checked_payload_ = nullptr;
  const void* checked_client_ = nullptr;
  uint32_t checked_len_ = 0;
  bool checked_ok_ = false;
};

}  // namespace homepot

#endif  // HOMEPOT_PLUGIN_NOTIFICATION_INTAKE_H_
