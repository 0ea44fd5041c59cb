// The plugin's behaviour, independent of Mosquitto: one object holding all
// state, driven by the broker's events (see plugin.cc for the trampolines).
// All methods run on the broker thread.
#ifndef HOMEPOT_PLUGIN_HOMEPOT_H_
#define HOMEPOT_PLUGIN_HOMEPOT_H_

#include <array>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
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
#include "timestamp_injector.h"
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
  // `may_persist`: the session may outlive the connection (MQTT v5, or
  // v3.1.1 without clean session); its client id then stays claimed.
  void OnDisconnect(const ClientInfo& client, bool may_persist = false);

  const Snapshot& snapshot() const { return *snapshot_; }
  const Config& config() const { return config_; }
  const Counters& counters() const { return counters_; }
  // Client ids one device may hold at once (the oldest unused one is
  // released for a new one), so claims are bounded by the registry's size.
  static constexpr size_t kMaxClaimsPerDevice = 8;

  // Publishes stats and queues device deltas now (also done on schedule).
  void PublishStats();
  // Flushes device stats synchronously (clean shutdown).
  void Shutdown();

 private:
  Homepot(const Config& config, Broker* broker, Clock* clock);
  // Applies a new snapshot and drains worker logs; cheap when idle.
  void Maintain() {
    if (worker_->HasUpdate() || worker_->HasLogs() || !revoked_queue_.empty()) {
      MaintainSlow();
    }
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
  // Ends revoked sessions (see DeviceState::revocations). Mosquitto must
  // never be asked to kick the client whose event is running (its context
  // would be freed under it), so a session of that client, or with its
  // client id, stays queued for a later event; nothing is kicked during a
  // DISCONNECT event.
  void KickPending(const ClientInfo* current) {
    if (!pending_kicks_.empty()) KickPendingSlow(current);
  }
  void KickPendingSlow(const ClientInfo* current);
  // Applies one revocation: the device's sessions become revoked() and are
  // queued for kicks; its claims go when it is disabled or removed.
  void Revoke(const std::string& id);
  void RevokeQueued();  // at most kRevocationsPerEvent

  // Lifetime rule: only `snapshot_` keeps a snapshot alive, and only for
  // as long as it is current. Anything that outlives one event holds device
  // ids (strings) or entries of `devices_` (never erased), never a pointer
  // into a snapshot; the one cache of a record (Session::record_) is read
  // only through Session::record(generation), which answers nullptr unless
  // it was resolved (by Resolve) against the snapshot now current.
  //
  // Per device id ever seen since start (the registry bounds them, not
  // clients): counters not yet flushed, how often the registry revoked it,
  // its live sessions and the client ids it holds.
  struct DeviceState {
    DeviceCounters counters;
    uint64_t revocations = 0;  // bumped when disabled/removed/new password
    std::vector<const void*> sessions;    // handles in clients_
    std::vector<std::string> client_ids;  // claimed, oldest first
  };
  using DeviceEntry = std::unordered_map<std::string, DeviceState>::value_type;
  // One MQTT session, keyed by the broker's client handle: created when it
  // logs in through us (or is deferred), or at the first event of a TLS
  // identity session; erased at its DISCONNECT.
  class Session {
   public:
    enum class Kind : uint8_t {
      kScratch,   // not in clients_: a will check, an offline session
      kDevice,    // logged in through us: bound to `device` for good
      kDeferred,  // deferred at login: never judged as a device
      kIdentity,  // TLS identity: bound to the registry by its username
    };
    Kind kind = Kind::kScratch;
    DeviceEntry* device = nullptr;  // nullptr: not a registry device
    uint64_t revocations = 0;       // device->second.revocations at login
    uint64_t routing_epoch = 0;     // routing_epoch_ at login (replay check)
    bool counted = false;           // included in counters_.connected
    // routing_epoch_ when a newer session of the device logged in with the
    // same client id: Mosquitto then sends this one's will at once, before
    // any other event (so only in that epoch is a write its will).
    uint64_t taken_over_at = 0;
    std::string client_id;
    // Logged in during a SIGHUP re-check window without TICK, and has not
    // acted since: possibly an offline session, never kicked by client id.
    bool maybe_offline = false;

    bool revoked() const {
      return device != nullptr && revocations != device->second.revocations;
    }
    // The registry record as of snapshot number `generation`, or nullptr
    // when it was resolved against another one (or there is none).
    const Device* record(uint64_t generation) const {
      return generation == generation_ ? record_ : nullptr;
    }
    // Whether %c may expand to the client id (see ClientIdMayExpand).
    bool client_id_usable() const { return client_id_usable_; }

   private:
    friend class Homepot;  // Resolve alone writes these
    const Device* record_ = nullptr;
    uint64_t generation_ = 0;
    bool client_id_usable_ = false;
  };
  // Resolves `st` (a live session, or a scratch one for will checks and
  // deliveries to offline sessions) against the current snapshot: its
  // record, its device entry and whether %c may expand. Cheap when done.
  Session* Resolve(const ClientInfo& client, Session* st);
  // The session's entry in clients_, or nullptr. A direct-mapped cache in
  // front of the map answers most ACL checks with one probe of a hot array.
  Session* FindClient(const void* handle) {
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
  // The tracked session (other than `handle`) using `client_id`, or nullptr.
  Session* HolderOf(const std::string& client_id, const void* handle);
  Session& NewSession(const ClientInfo& client, Session::Kind kind);
  // Binds an identity session to its device entry (sessions list, epoch).
  void Bind(Session* st, const void* handle, DeviceEntry* dev);
  // Login checks that need the device: the client id must not be another
  // device's id nor held by another device. Claims it on success.
  bool ClaimClientId(const ClientInfo& client, const Device& record,
                     DeviceEntry* device);
  void ReleaseClaims(DeviceEntry* device);
  void LogRefusal(const std::string& line);  // at most 20 a minute
  void DropSession(const void* handle);
  // A will on a notification topic: validated, stamped and published as a
  // copy; the original is always refused.
  Verdict PublishWill(const ClientInfo& client, Session* st,
                      std::string_view topic, std::string_view payload, int qos,
                      bool retain);
  DeviceCounters* Touch(DeviceEntry* d);  // marks dirty; nullptr-safe
  // Memoised on the last topic: deliveries of one message ask in a burst.
  bool IsNotificationTopic(std::string_view topic);
  // Validates a notification write, sets receipt_ms_, counts it and sends
  // the notice when refused.
  // `may_repeat`: a QoS 2 PUBLISH that may be a retransmission.
  const NotificationCheck& CheckNotification(const ClientInfo& client,
                                             Session* st,
                                             std::string_view topic,
                                             std::string_view payload, int qos,
                                             bool may_repeat = true);
  // True for a repeat of a recent QoS 2 notification (same client, topic,
  // payload): receipt_ms_ is then set to the first copy's stamp.
  bool IsQos2Retransmission(const ClientInfo& client, std::string_view topic,
                            std::string_view payload);
  void Refuse(const ClientInfo& client, Session* st, std::string_view topic,
              std::string_view reason, const std::string& detail);

  const Config config_;
  Broker* const broker_;
  Clock* const clock_;
  std::unique_ptr<RegistryWorker> worker_;
  std::shared_ptr<const Snapshot> snapshot_;
  Authenticator auth_;
  NotificationValidator validator_;
  TimestampInjector injector_;
  const FilterSet notification_filters_;  // config_.notification_topics
  int64_t last_sweep_ms_ = 0;
  bool throttle_logged_ = false;  // once per minute (reset by the sweep)
  int refusals_logged_ = 0;       // client id refusals this minute
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

  // Bounds on the work one event does for a mass revocation.
  static constexpr size_t kRevocationsPerEvent = 4096;
  static constexpr size_t kKicksPerEvent = 1024;
  static constexpr size_t kUsernameKicksPerEvent = 64;
  std::deque<std::string> revoked_queue_;  // from swaps, not applied yet
  std::unordered_set<std::string> revoked_queued_;
  std::vector<std::string> pending_kicks_;  // revoked device ids
  std::unordered_set<std::string> kick_queued_;
  bool untracked_sessions_ = false;  // an untracked identity session acted
  // Set by RELOAD; the BASIC_AUTH calls that follow before any other event
  // are Mosquitto re-checking existing sessions.
  bool rechecking_ = false;
  int64_t recheck_until_ms_ = 0;
  static constexpr int64_t kRecheckGapMs = 500;

  // The session whose DISCONNECT ran last, when it was revoked: its will
  // (checked right after) is refused.
  const void* revoked_closing_ = nullptr;
  // Client id -> the tracked session using it (devices, deferred users, TLS).
  std::unordered_map<std::string, const void*> by_client_id_;
  // Bumped by every event that may route a new copy (TICK, MESSAGE, writes,
  // subscribes): read checks of a session in the epoch of its login are the
  // replay of its offline queue, counted when it was queued.
  uint64_t routing_epoch_ = 1;
  std::string last_topic_;
  bool last_topic_is_notification_ = false;

  Counters counters_;
  std::unordered_map<const void*, Session> clients_;  // nodes are stable
  struct Recent {
    const void* handle = nullptr;
    Session* state = nullptr;
  };
  static constexpr int kRecentBits = 8;
  std::array<Recent, size_t{1} << kRecentBits> recent_{};
  std::unordered_map<std::string, DeviceState> devices_;  // nodes are stable
  std::vector<DeviceEntry*> dirty_;  // entries whose counters are dirty
  // Client id -> the device holding it (live or kept after a disconnect
  // that may leave a durable session), at most kMaxClaimsPerDevice each.
  std::unordered_map<std::string, DeviceEntry*> claims_;

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
