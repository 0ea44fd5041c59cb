// The plugin's behaviour, independent of Mosquitto: the coordinator that
// implements the broker's events (see plugin.cc for the trampolines) by
// composing the core's parts: the registry snapshot from a RegistrySource,
// the Authenticator, the SessionTable, Revocations, the NotificationIntake,
// the StatsSchedule, the DeviceStatsBatch, the Lifetimes, the RoutingTally
// (receipts), SentNotifications (acknowledgements), each device's Presence
// and the DeliveryLogBatch. All methods run on the broker thread.
#ifndef HOMEPOT_PLUGIN_HOMEPOT_H_
#define HOMEPOT_PLUGIN_HOMEPOT_H_

#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "acks.h"
#include "acl.h"
#include "auth.h"
#include "broker.h"
#include "config.h"
#include "delivery_log_batch.h"
#include "device_stats_batch.h"
#include "lifetime.h"
#include "notification_intake.h"
#include "registry.h"
#include "registry_source.h"
#include "revocations.h"
#include "routing_tally.h"
#include "session_table.h"
#include "stats.h"
#include "stats_schedule.h"

namespace homepot {

// kDisconnect: refuse with an error, which makes Mosquitto end the session
// itself (only for the client's own write, subscribe and message events).
enum class Verdict { kAllow, kDeny, kDefer, kDisconnect };

// A PUBLISH as the MESSAGE event sees it. OnMessage may replace `payload`
// with memory from Broker::Alloc; the broker then frees the old one. It may
// also clear `retain` (a "ttl": 0 notification is never kept as retained).
struct Message {
  const char* topic = nullptr;
  void* payload = nullptr;
  uint32_t payloadlen = 0;
  int qos = 0;
  bool retain = false;
};

class Homepot {
 public:
  // The core over `source`, whose first snapshot is `first` (logged as
  // loaded from the registry of config). `broker` and `clock` outlive it.
  // `started_ms` (clock->MonotonicMs()) is when the plugin started, before
  // the first load: uptime and the stats schedule count from it.
  static std::unique_ptr<Homepot> Create(const Config& config, Broker* broker,
                                         Clock* clock,
                                         std::unique_ptr<RegistrySource> source,
                                         std::shared_ptr<const Snapshot> first,
                                         int64_t started_ms);
  ~Homepot();
  Homepot(const Homepot&) = delete;
  Homepot& operator=(const Homepot&) = delete;

  // CONNECT with username/password (either may be nullptr).
  // `clean_start`: the client asked for a new session (its client id's
  // earlier subscriptions are gone); `mqtt5`: it speaks MQTT 5 (its session
  // may outlive the connection even with clean start).
  Verdict OnBasicAuth(const ClientInfo& client, const char* username,
                      const char* password, bool clean_start = true,
                      bool mqtt5 = false);
  // Mosquitto ACL check; `access` is MOSQ_ACL_* (see Access). For writes on
  // notification topics the payload is validated here too, which also
  // covers will messages (they get this check but no MESSAGE event).
  Verdict OnAclCheck(const ClientInfo& client, std::string_view topic,
                     int access, const void* payload = nullptr,
                     uint32_t payloadlen = 0, int qos = 0, bool retain = false);
  // An accepted PUBLISH about to be routed: validates notifications (when
  // the ACL check did not), injects the receipt timestamp and remembers the
  // stamped buffer's lifetime (lifetime.h); read checks deny the copies of
  // a notification that is no longer live, counted as expired, and count
  // the others for its receipt (routing_tally.h). A device's publish on its
  // own ack_topic is matched as an acknowledgement (acks.h).
  Verdict OnMessage(const ClientInfo& client, Message* message);
  void OnTick();
  // SIGHUP: reload the registry now.
  void OnReload();
  // `may_persist`: the session may outlive the connection (MQTT v5, or
  // v3.1.1 without clean session); its client id then stays claimed.
  void OnDisconnect(const ClientInfo& client, bool may_persist = false);

  const Snapshot& snapshot() const { return *snapshot_; }
  const Config& config() const { return config_; }
  const Counters& counters() const { return counters_; }

  // Publishes stats and hands device deltas over now (also done on
  // schedule).
  void PublishStats();
  // Publishes stats, hands the last device deltas over and shuts the
  // source down (clean shutdown; also done by the destructor).
  void Shutdown();

 private:
  Homepot(const Config& config, Broker* broker, Clock* clock,
          int64_t started_ms, std::unique_ptr<RegistrySource> source,
          std::shared_ptr<const Snapshot> first);

  // What every event starts with: takes a new snapshot and the source's log
  // lines, applies a batch of queued revocations (all cheap when idle), and
  // without TICK publishes stats when due.
  void ApplyRegistryChangesAndDueStats() {
    if (source_->HasUpdate() || source_->HasLogs() ||
        revocations_.HasQueued()) {
      ApplyRegistryChanges();
    }
    // With TICK (at least every 100 ms) the schedule is kept there, so the
    // message path reads no clock; without it (per_listener_settings true)
    // every event looks.
    if (!ticking_) {
      PublishStatsIfDue();
      if (log_.pending()) SubmitLogIfDue(clock_->CoarseWallMs());
    }
  }
  // Hands the delivery log over about once a second.
  void SubmitLogIfDue(int64_t now_ms) {
    if (now_ms - log_submitted_ms_ >= 1000) {
      log_.Submit(source_.get());
      log_submitted_ms_ = now_ms;
    }
  }
  void ApplyRegistryChanges();
  void PublishStatsIfDue() {
    if (stats_schedule_.enabled() &&
        stats_schedule_.Due(clock_->MonotonicMs())) {
      PublishStats();
    }
  }
  Session* Resolve(const ClientInfo& client, Session* st) {
    return sessions_.Resolve(client, st, *snapshot_, swaps_);
  }
  // A live session with an entry, or nullptr for a handle whose connection
  // is gone (a will check, an offline session being routed to) or that is
  // no session at all (*retain_check: check_retain_source's stand-in). TLS
  // identity sessions get their entry here.
  Session* LiveSession(const ClientInfo& client, bool* retain_check);
  // SIGHUP makes Mosquitto run BASIC_AUTH again for every session: answered
  // from the registry, changing nothing (no counts, claims, kicks, lockout).
  Verdict Recheck(Session* st, const ClientInfo& client, const char* username,
                  const char* password);
  Verdict RecheckUntracked(const ClientInfo& client, const char* username,
                           const char* password);
  void LogRefusal(const std::string& line);  // at most 20 a minute
  // Forgets the session of `handle` (a tracked one or not).
  void DropSession(const void* handle);
  // The presence of `dev` changed: recounts its sessions reaching the token
  // (`client_id`'s, or all when empty) and lists it for device_stats.
  void UpdatePresence(DeviceEntry* dev, std::string_view client_id);
  // A subscribe or unsubscribe of `filter` by the device of `st`.
  void TrackSubscription(Session* st, const Device& device,
                         std::string_view client_id, std::string_view filter,
                         bool subscribe);
  // A will on a notification topic: validated, stamped and published as a
  // copy; the original is always refused.
  Verdict PublishWill(const ClientInfo& client, Session* st,
                      std::string_view topic, std::string_view payload, int qos,
                      bool retain);
  // Wall clock within one TICK (0.1 s) without a read per copy.
  int64_t CoarseNowMs() {
    return ticking_ ? std::max(tick_wall_ms_, intake_.clock_ms())
                    : clock_->CoarseWallMs();
  }
  // Whether a copy of the notification `l` may no longer be delivered;
  // `routing_to_connected` as Lifetime::LiveAt.
  bool Expired(const Lifetime& l, bool routing_to_connected) {
    return !l.LiveAt(CoarseNowMs(), routing_to_connected);
  }
  // A copy of `l` for the device of `st` was dropped as expired.
  void CountExpired(Session* st, const Lifetime& l);
  // A copy of the notification being routed (`r`, or nullptr for another
  // one) counted for the device of `st`: a live one when `routed`, else
  // kept for an offline session.
  void CountCopy(Session* st, Routing* r, const Lifetime& l, bool routed);
  // Every event but a read check of the notification being routed ends
  // its routing (routing_tally.h).
  void EndRouting() {
    if (tally_.busy()) {
      tally_.FinishDue(ticking_ ? tick_wall_ms_ : clock_->CoarseWallMs(),
                       [this](const Routing& r) { FinishRouting(r); });
    }
  }
  // The receipt and the log row of a routed notification.
  void FinishRouting(const Routing& r);
  // A publish of the device of `st` on its own ack_topic.
  void OnAck(Session* st, std::string_view payload);
  // Whether receipts are on and `publisher` (nullptr: none) reads them.
  bool ReadsReceipts(const DeviceEntry* publisher) const {
    return config_.receipts && publisher != nullptr &&
           publisher->second.presence.ReadsReceipts();
  }
  // Publishes receipt_ to the receipts topic of `publisher`.
  void SendReceipt(DeviceEntry* publisher);
  // A delivery log event of `kind` to fill in, or nullptr (log off, full).
  DeliveryEvent* LogEvent(DeliveryEvent::Kind kind) {
    if (!log_on_) return nullptr;
    DeliveryEvent* e = log_.Add(kind);
    if (e == nullptr) ++counters_.log_dropped;
    return e;
  }
  static DeviceEntry* DeviceOf(Session* st) {
    return st != nullptr ? st->device : nullptr;
  }

  const Config config_;
  Broker* const broker_;
  Clock* const clock_;
  std::unique_ptr<RegistrySource> source_;
  // The only owner of a snapshot on this side (see the lifetime rule in
  // session_table.h); swaps_ numbers it (bumped on every swap, 0 =
  // unresolved).
  std::shared_ptr<const Snapshot> snapshot_;
  uint64_t swaps_ = 1;
  int64_t loaded_at_ms_ = 0;  // wall clock of the last swap
  Counters counters_;
  Authenticator auth_;
  SessionTable sessions_;
  DeviceStatsBatch device_stats_;
  const bool log_on_;  // log_retention_rows > 0
  DeliveryLogBatch log_;
  int64_t log_submitted_ms_ = 0;  // wall clock of the last hand-over
  NotificationIntake intake_;
  Lifetimes lifetimes_;
  const AckTopic ack_topic_;
  RoutingTally tally_;
  SentNotifications sent_;
  AckParser ack_parser_;
  std::string receipt_;        // reused: the receipt being sent
  std::string receipt_topic_;  // reused: its topic
  StampCache receipt_stamps_;
  Revocations revocations_;
  StatsSchedule stats_schedule_;

  int64_t last_sweep_ms_ = 0;
  bool throttle_logged_ = false;  // once per minute (reset by the sweep)
  int refusals_logged_ = 0;       // client id refusals this minute
  bool ticking_ = false;          // TICK events arrive
  int64_t tick_wall_ms_ = 0;      // wall clock at the last TICK
  // Set by RELOAD; the BASIC_AUTH calls that follow before any other event
  // are Mosquitto re-checking existing sessions.
  bool rechecking_ = false;
  int64_t recheck_until_ms_ = 0;
  static constexpr int64_t kRecheckGapMs = 500;
  // The session whose DISCONNECT ran last, when it was revoked: its will
  // (checked right after) is refused.
  const void* revoked_closing_ = nullptr;
  // Bumped by every event that may route a new copy (TICK, MESSAGE, writes,
  // subscribes): read checks of a session in the epoch of its login are the
  // replay of its offline queue, counted when it was queued.
  uint64_t routing_epoch_ = 1;
};

}  // namespace homepot

#endif  // HOMEPOT_PLUGIN_HOMEPOT_H_
