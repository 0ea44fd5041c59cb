// The plugin's behaviour, independent of Mosquitto: one object holding all
// state, driven by the broker's events (see plugin.cc for the trampolines).
// All methods run on the broker thread.
#ifndef HOMEPOT_PLUGIN_HOMEPOT_H_
#define HOMEPOT_PLUGIN_HOMEPOT_H_

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "acl.h"
#include "auth.h"
#include "broker.h"
#include "config.h"
#include "notification.h"
#include "registry.h"
#include "registry_worker.h"
#include "stats.h"
#include "status.h"
#include "topic.h"

namespace homepot {

// kDisconnect: refuse with an error, which makes Mosquitto end the session
// itself (only for the client's own write, subscribe and message events).
enum class Verdict { kAllow, kDeny, kDefer, kDisconnect };

// A PUBLISH as the MESSAGE event sees it. OnMessage may replace `payload`
// with memory from Broker::Alloc; the broker then frees the old one.
struct Message {
  const char* topic = nullptr;
  void* payload = nullptr;
  uint32_t payloadlen = 0;
  int qos = 0;
  bool retain = false;
};

class Homepot {
 public:
  // Opens the registry and loads it; errors name the option or file.
  static Result<std::unique_ptr<Homepot>> Create(const Config& config,
                                                 Broker* broker, Clock* clock);
  ~Homepot();
  Homepot(const Homepot&) = delete;
  Homepot& operator=(const Homepot&) = delete;

  // CONNECT with username/password (either may be nullptr).
  Verdict OnBasicAuth(const ClientInfo& client, const char* username,
                      const char* password);
  // Mosquitto ACL check; `access` is MOSQ_ACL_* (see Access). For writes on
  // notification topics the payload is validated here too, which also
  // covers will messages (they get this check but no MESSAGE event).
  Verdict OnAclCheck(const ClientInfo& client, std::string_view topic,
                     int access, const void* payload = nullptr,
                     uint32_t payloadlen = 0, int qos = 0, bool retain = false);
  // An accepted PUBLISH about to be routed: validates notifications (when
  // the ACL check did not) and injects the receipt timestamp.
  Verdict OnMessage(const ClientInfo& client, Message* message);
  void OnTick();
  // SIGHUP: reload the registry now.
  void OnReload();
  void OnDisconnect(const ClientInfo& client);

  const Snapshot& snapshot() const { return *snapshot_; }
  const Config& config() const { return config_; }
  const Counters& counters() const { return counters_; }
  // Publishes stats and queues device deltas now (also done on schedule).
  void PublishStats();
  // Flushes device stats synchronously (clean shutdown).
  void Shutdown();

 private:
  Homepot(const Config& config, Broker* broker, Clock* clock);
  // Applies a new snapshot and drains worker logs; cheap when idle.
  void Maintain() {
    if (worker_->HasUpdate() || worker_->HasLogs()) MaintainSlow();
    // With TICK (at least every 100 ms) the schedule is kept there, so the
    // message path reads no clock; without it (per_listener_settings true)
    // every event looks.
    if (!ticking_) PublishStatsIfDue();
  }
  void PublishStatsIfDue() {
    if (stats_interval_ms_ > 0 && clock_->MonotonicMs() >= next_stats_ms_) {
      PublishStats();
    }
  }
  void MaintainSlow();
  // Ends revoked sessions. Mosquitto must never be asked to kick the client
  // whose event is running (its context would be freed under it), so
  // `current` (that client's username, or nullptr on TICK) is left for a
  // later event; nothing is kicked during a DISCONNECT event.
  void KickPending(const char* current) {
    if (!pending_kicks_.empty() || !pending_id_kicks_.empty()) {
      KickPendingSlow(current);
    }
  }
  void KickPendingSlow(const char* current);
  bool IsPendingKick(const char* username) const;

  using DeviceEntry =
      std::unordered_map<std::string, DeviceCounters>::value_type;
  // Per session, keyed by the broker's client handle: saves the registry
  // lookup on every ACL check of the session.
  struct ClientState {
    DeviceEntry* device = nullptr;   // counters; nullptr: not registered
    const Device* record = nullptr;  // in the snapshot of `generation`
    uint64_t generation = 0;         // swaps_ when `record` was resolved
    bool counted = false;            // included in counters_.connected
    std::string client_id;           // set at login
  };
  // The session's state with `record` resolved against the current
  // snapshot: its entry when it logged in through us, else `scratch`.
  ClientState* StateFor(const ClientInfo& client, ClientState* scratch);
  // The session's entry in clients_, or nullptr. A direct-mapped cache in
  // front of the map answers most ACL checks with one probe of a hot array.
  ClientState* FindClient(const void* handle) {
    Recent& r = recent_[RecentSlot(handle)];
    if (r.handle == handle && handle != nullptr) return r.state;
    auto it = clients_.find(handle);
    if (it == clients_.end()) return nullptr;
    r = {handle, &it->second};
    return r.state;
  }
  static size_t RecentSlot(const void* handle) {
    return (reinterpret_cast<uintptr_t>(handle) * 0x9E3779B97F4A7C15ull) >>
           (64 - kRecentBits);
  }
  DeviceCounters* Touch(DeviceEntry* d);  // marks dirty; nullptr-safe
  // Memoised on the last topic: deliveries of one message ask in a burst.
  bool IsNotificationTopic(std::string_view topic);
  // Validates a notification write, sets receipt_ms_, counts it and sends
  // the notice when refused.
  const NotificationCheck& CheckNotification(const ClientInfo& client,
                                             std::string_view topic,
                                             std::string_view payload, int qos);
  // True for a repeat of a recent QoS 2 notification (same client, topic,
  // payload): receipt_ms_ is then set to the first copy's stamp.
  bool IsQos2Retransmission(const ClientInfo& client, std::string_view topic,
                            std::string_view payload);
  void Refuse(const ClientInfo& client, std::string_view topic,
              std::string_view reason, const std::string& detail);

  const Config config_;
  Broker* const broker_;
  Clock* const clock_;
  std::unique_ptr<RegistryWorker> worker_;
  std::shared_ptr<const Snapshot> snapshot_;
  Authenticator auth_;
  NotificationValidator validator_;
  const FilterSet notification_filters_;  // config_.notification_topics
  int64_t last_sweep_ms_ = 0;
  bool throttle_logged_ = false;  // once per minute (reset by the sweep)
  const int64_t stats_interval_ms_;
  int64_t next_stats_ms_ = 0;
  const int64_t started_ms_;
  int64_t loaded_at_ms_ = 0;
  uint64_t swaps_ = 1;  // bumped on every snapshot swap (0 = unresolved)
  // Receipt time of the notification being processed: read once per message
  // (ACL check), used for its stamp and the per-device times.
  int64_t receipt_ms_ = 0;
  bool ticking_ = false;      // TICK events arrive
  int64_t tick_wall_ms_ = 0;  // wall clock at the last TICK

  std::vector<std::string> pending_kicks_;     // usernames
  std::vector<std::string> pending_id_kicks_;  // client ids
  const void* current_handle_ = nullptr;       // client of the running event
  std::string last_topic_;
  bool last_topic_is_notification_ = false;

  Counters counters_;
  std::unordered_map<const void*, ClientState> clients_;  // nodes are stable
  struct Recent {
    const void* handle = nullptr;
    ClientState* state = nullptr;
  };
  static constexpr int kRecentBits = 8;
  std::array<Recent, size_t{1} << kRecentBits> recent_{};
  std::unordered_map<std::string, DeviceCounters> device_counters_;
  std::vector<DeviceEntry*> dirty_;  // entries with unflushed changes

  // The last validated write, so OnMessage need not parse it again.
  const void* checked_payload_ = nullptr;
  const void* checked_client_ = nullptr;
  uint32_t checked_len_ = 0;
  bool checked_ok_ = false;

  // Receipt stamps of recent QoS 2 notifications by (client, topic, payload)
  // so a retransmitted PUBLISH gets the same bytes and stays deduplicated.
  struct Qos2Stamp {
    int64_t stamp_ms;
    int64_t seen_ms;
  };
  std::unordered_map<uint64_t, Qos2Stamp> qos2_stamps_;
  int64_t last_qos2_sweep_ms_ = 0;
};

}  // namespace homepot

#endif  // HOMEPOT_PLUGIN_HOMEPOT_H_
