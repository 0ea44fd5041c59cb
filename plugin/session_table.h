// The sessions the core tracks and the client ids devices hold: one Session
// per MQTT session keyed by the broker's client handle, one DeviceState per
// device id ever seen, and the claims (client id -> device). Owned by
// Homepot; every method runs on the broker thread.
//
// Snapshot lifetime rule: only Homepot's current snapshot keeps a snapshot
// alive, and only for as long as it is current. Anything that outlives one
// event holds device ids (strings) or DeviceEntry pointers (entries are
// never erased, and map nodes are stable), never a pointer into a snapshot;
// the one cache of a record (Session::record_) is read only through
// Session::record(generation), which answers nullptr unless Resolve set it
// against the snapshot now current.
#ifndef HOMEPOT_PLUGIN_SESSION_TABLE_H_
#define HOMEPOT_PLUGIN_SESSION_TABLE_H_

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "broker.h"
#include "presence.h"
#include "registry.h"
#include "stats.h"
#include "status.h"

namespace homepot {

// Per device id ever seen since start (the registry bounds them, not
// clients): counters not yet flushed, how often the registry revoked it, its
// live sessions and the client ids it holds.
struct DeviceState {
  DeviceCounters counters;
  uint64_t revocations = 0;  // bumped when disabled/removed/new password
  std::vector<const void*> sessions;    // handles of its tracked sessions
  std::vector<std::string> client_ids;  // claimed, oldest first
  Presence presence;  // subscriptions reaching its token and receipts
};
using DeviceEntry = std::unordered_map<std::string, DeviceState>::value_type;

// One MQTT session: created when it logs in through us (or is deferred), or
// at the first event of a TLS identity session; dropped at its DISCONNECT.
class Session {
 public:
  enum class Kind : uint8_t {
    kScratch,   // not tracked: a will check, an offline session
    kDevice,    // logged in through us: bound to `device` for good
    kDeferred,  // deferred at login: never judged as a device
    kIdentity,  // TLS identity: bound to the registry by its username
  };
  Kind kind = Kind::kScratch;
  DeviceEntry* device = nullptr;  // nullptr: not a registry device
  uint64_t revocations = 0;       // device->second.revocations at login
  uint64_t routing_epoch = 0;     // the routing epoch at login (replay check)
  bool counted = false;           // included in Counters::connected
  bool reachable = false;  // counted, and its client id reaches the token
  // Logged in with a session that may outlive the connection (MQTT 5, or
  // 3.1.1 without clean session).
  bool may_persist = false;
  // The routing epoch when a newer session of the device logged in with the
  // same client id: Mosquitto then sends this one's will at once, before any
  // other event (so only in that epoch is a write its will).
  uint64_t taken_over_at = 0;
  std::string client_id;
  // Logged in during a SIGHUP re-check window without TICK, and has not
  // acted since: possibly an offline session, never kicked by client id.
  bool maybe_offline = false;

  bool revoked() const {
    return device != nullptr && revocations != device->second.revocations;
  }
  // The registry record as of snapshot number `generation`, or nullptr when
  // it was resolved against another one (or there is none).
  const Device* record(uint64_t generation) const {
    return generation == generation_ ? record_ : nullptr;
  }
  // Whether %c may expand to the client id (see ClientIdMayExpand).
  bool client_id_usable() const { return client_id_usable_; }

 private:
  friend class SessionTable;  // Resolve alone writes these
  const Device* record_ = nullptr;
  uint64_t generation_ = 0;
  bool client_id_usable_ = false;
};

class SessionTable {
 public:
  // Client ids one device may hold at once (the oldest unused one is
  // released for a new one), so claims are bounded by the registry's size.
  static constexpr size_t kMaxClaimsPerDevice = 8;

  SessionTable() = default;
  SessionTable(const SessionTable&) = delete;
  SessionTable& operator=(const SessionTable&) = delete;

  // The tracked session of `handle`, or nullptr. A direct-mapped cache in
  // front of the map answers most ACL checks with one probe of a hot array.
  Session* Find(const void* handle) {
    Recent& r = recent_[RecentSlot(handle)];
    if (r.handle == handle && handle != nullptr) return r.state;
    auto it = clients_.find(handle);
    if (it == clients_.end()) return nullptr;
    r = {handle, &it->second};
    return r.state;
  }
  // A tracked session; `handle` must be one.
  Session& At(const void* handle) { return clients_.at(handle); }
  // Tracks a new session of `client`; it becomes the holder of its id.
  Session& Add(const ClientInfo& client, Session::Kind kind,
               uint64_t routing_epoch);
  // Forgets the session of `handle`; true when it was counted as connected.
  bool Drop(const void* handle);
  // The tracked session (other than `handle`) using `client_id`, or nullptr.
  Session* HolderOf(const std::string& client_id, const void* handle);

  // The device's entry, created on first use.
  DeviceEntry* Entry(const std::string& id) {
    return &*devices_.try_emplace(id).first;
  }
  // The device's entry, or nullptr if it was never seen.
  DeviceEntry* FindEntry(const std::string& id) {
    auto it = devices_.find(id);
    return it == devices_.end() ? nullptr : &*it;
  }
  // Binds a session to its device entry (sessions list, revocation count).
  void Bind(Session* st, const void* handle, DeviceEntry* dev);

  // Resolves `st` (a tracked session, or a scratch one for will checks and
  // deliveries to offline sessions) against `snapshot`, snapshot number
  // `generation`: its record, its device entry and whether %c may expand.
  // Cheap when already done for this generation.
  Session* Resolve(const ClientInfo& client, Session* st,
                   const Snapshot& snapshot, uint64_t generation);

  // Login checks that need the device: the client id must not be another
  // device's id nor held by another device. Claims it on success; the error
  // is the line to log.
  Status Claim(std::string_view client_id, const Device& record,
               DeviceEntry* dev, const Snapshot& snapshot);
  // The device holding `client_id`, or nullptr.
  DeviceEntry* ClaimHolder(const std::string& client_id) {
    auto it = claims_.find(client_id);
    return it == claims_.end() ? nullptr : it->second;
  }
  // A clean session ended: its client id is free again, unless another
  // session of the device uses it.
  void ReleaseClaimOf(const Session& st, const void* handle);
  void ReleaseClaims(DeviceEntry* dev);

 private:
  struct Recent {
    const void* handle = nullptr;
    Session* state = nullptr;
  };
  static constexpr int kRecentBits = 8;
  static size_t RecentSlot(const void* handle) {
    return (reinterpret_cast<uintptr_t>(handle) * 0x9E3779B97F4A7C15ull) >>
           (64 - kRecentBits);
  }

  std::unordered_map<const void*, Session> clients_;  // nodes are stable
  std::array<Recent, size_t{1} << kRecentBits> recent_{};
  // Client id -> the tracked session using it (devices, deferred, TLS).
  std::unordered_map<std::string, const void*> by_client_id_;
  std::unordered_map<std::string, DeviceState> devices_;  // nodes are stable
  // Client id -> the device holding it (live or kept after a disconnect
  // that may leave a durable session), at most kMaxClaimsPerDevice each.
  std::unordered_map<std::string, DeviceEntry*> claims_;
};

}  // namespace homepot

#endif  // HOMEPOT_PLUGIN_SESSION_TABLE_H_
