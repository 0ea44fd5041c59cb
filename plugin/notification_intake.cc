#include "notification_intake.h"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <optional>

#include "acl.h"
#include "lifetime.h"
#include "utf8.h"

namespace homepot {

NotificationIntake::NotificationIntake(const Config& config, Broker* broker,
                                       Clock* clock, Counters* counters,
                                       DeviceStatsBatch* device_stats,
                                       DeliveryLogBatch* log)
    : max_payload_(config.max_payload),
      max_topic_depth_(config.max_topic_depth),
      broker_(broker),
      clock_(clock),
      counters_(counters),
      device_stats_(device_stats),
      log_(log),
      validator_(config.timestamp_field),
      injector_(config.timestamp_field),
      filters_(config.notification_topics) {}

void NotificationIntake::Refuse(const ClientInfo& client, DeviceEntry* device,
                                std::string_view topic, std::string_view reason,
                                const std::string& detail,
                                std::string_view message_id) {
  ++counters_->total_failed;
  if (DeviceCounters* d = device_stats_->CountersToFlush(device)) {
    ++d->rejected;
  }
  if (log_ != nullptr) {
    if (DeliveryEvent* e = log_->Add(DeliveryEvent::Kind::kRejected)) {
      e->message_id.assign(message_id);
      if (device != nullptr) e->publisher = device->first;
      e->topic.assign(Utf8Prefix(topic, 256));
      e->reason.assign(reason);
      e->received_ms = receipt_ms_;
    } else {
      ++counters_->log_dropped;
    }
  }
  if (client.username == nullptr) return;
  // The notice quotes at most 256 bytes of the topic: its size stays bounded
  // whatever the client sent.
  nlohmann::ordered_json notice = {
      {"topic", topic.substr(0, 256)},
      {"reason", reason},
      {"detail", detail},
      {"timestamp", StampString(clock_->WallMs())}};
  broker_->Publish(
      std::string(kRejectionsPrefix) + client.username,
      notice.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace), 0,
      false);
}

void NotificationIntake::RefuseUnauthorized(const ClientInfo& client,
                                            DeviceEntry* device,
                                            std::string_view topic) {
  ++counters_->total_sent;
  receipt_ms_ = clock_ms_ = clock_->WallMs();
  last_kept_stamp_ = false;
  counters_->last_sent_ms = receipt_ms_;
  Refuse(client, device, topic, "not_authorized",
         "no write permission on this topic");
}

const NotificationCheck& NotificationIntake::Check(
    const ClientInfo& client, DeviceEntry* device, std::string_view topic,
    std::string_view payload, int qos, const Snapshot& snapshot,
    bool trusted_bridge, bool may_repeat) {
  receipt_ms_ = clock_ms_ = clock_->WallMs();
  last_was_repeat_ = false;
  last_kept_stamp_ = false;
  uint32_t limit = max_payload_;
  // Only a payload above the smallest type limit can exceed its target's.
  if (payload.size() > snapshot.min_type_max_payload()) {
    if (const Device* target = snapshot.FindByToken(topic)) {
      limit = std::min(limit, target->max_payload);
    }
  }
  const NotificationCheck& check =
      validator_.Check(payload, limit, TopicDepth(topic), max_topic_depth_);
  checked_payload_ = payload.data();
  checked_client_ = client.handle;
  checked_len_ = static_cast<uint32_t>(payload.size());
  checked_ok_ = check.reject == Reject::kNone;
  if (check.reject != Reject::kNone) {
    ++counters_->total_sent;
    counters_->last_sent_ms = receipt_ms_;
    ++counters_->rejected[static_cast<size_t>(check.reject) - 1];
    // (a message_id is logged only when it is one receipts would carry)
    Refuse(client, device, topic, RejectName(check.reject), check.detail,
           check.has_message_id && check.message_id.size() <= kMaxMessageIdLen
               ? std::string_view(check.message_id)
               : std::string_view());
    return check;
  }
  // The node that received it first stamped and counted it (a bridge's
  // QoS 2 retransmission carries the same stamp, so it needs no cache).
  if (trusted_bridge) {
    if (std::optional<int64_t> kept = injector_.ReadStamp(check, payload)) {
      receipt_ms_ = *kept;
      last_kept_stamp_ = true;
      ++counters_->bridged;
      return check;
    }
  }
  // A QoS 2 retransmission (DUP before PUBREL) gets the stamp the first copy
  // got, so Mosquitto sees identical bytes and routes it once; it is not
  // counted again either.
  if (may_repeat && qos == 2 &&
      qos2_stamps_.IsRepeat(client.client_id ? client.client_id : "", topic,
                            payload, clock_->MonotonicMs(), &receipt_ms_)) {
    last_was_repeat_ = true;
    return check;
  }
  // Counted here rather than in OnMessage: wills get this check but no
  // MESSAGE event, and are routed all the same.
  ++counters_->total_sent;
  counters_->last_sent_ms = receipt_ms_;
  ++counters_->total_success;
  ++counters_->qos[std::clamp(qos, 0, 2)];
  if (check.priority != Priority::kNone) {
    ++counters_->priority[static_cast<size_t>(check.priority) - 1];
  }
  if (DeviceCounters* d = device_stats_->CountersToFlush(device)) {
    ++d->published;
    d->last_publish_ms = receipt_ms_;
  }
  return check;
}

void NotificationIntake::WriteStamped(const NotificationCheck& check,
                                      std::string_view payload,
                                      char* out) const {
  char stamp[kStampLen];
  FormatStamp(receipt_ms_, stamp, &stamp_cache_);
  injector_.Inject(check, payload, stamp, out);
}

}  // namespace homepot
