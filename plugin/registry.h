// The device registry as an immutable in-memory snapshot, built from the
// SQLite file off the broker thread (in full, or from the previous snapshot
// and the change feed) and swapped in whole. Lookups never allocate.
#ifndef HOMEPOT_PLUGIN_REGISTRY_H_
#define HOMEPOT_PLUGIN_REGISTRY_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "credentials.h"
#include "device.h"
#include "rule_access.h"
#include "status.h"

namespace homepot {

class Database;

// The schema version this build reads (PRAGMA user_version).
inline constexpr int kSchemaVersion = 4;

struct AclRule {
  std::string filter;  // may hold %u / %c
  uint8_t access = 0;  // RuleAccess bits
};

struct Device {
  std::string id;
  std::string token;  // empty = default devices/<id>/notifications
  std::string type;
  uint32_t max_payload = 0;  // from device_types
  bool enabled = false;
  bool has_password = false;  // false: can never log in with a password
  PasswordHash password;
  std::vector<AclRule> rules;  // this device's own rules

  // True when `topic` is this device's notification topic.
  bool IsToken(std::string_view topic) const;
};

// The device type of trusted bridges (docs/operating.md, "Hub and edges").
inline constexpr std::string_view kBridgeDeviceType = "bridge";

// The one rule of bridge trust: whether a notification published under
// `publisher`'s name is forwarded by a Mosquitto bridge from another HOMEPOT
// node that has already validated, stamped and counted it, so that it keeps
// that node's stamp and is not counted as a publication again. True exactly
// for an enabled device whose type is kBridgeDeviceType. `publisher` is the
// record the publishing client resolves to in the snapshot in force at the
// event (nullptr: none): for a session that logged in through the plugin the
// device it logged in as, for a TLS identity or a local bridge's own context
// (Mosquitto gives plugins a bridge's local_username) the device of that
// username, for a deferred session none. A device cannot change its own
// type, and a disabled or removed bridge device is trusted no longer from
// the first event after the change reaches the broker.
inline bool IsTrustedBridge(const Device* publisher) {
  return publisher != nullptr && publisher->enabled &&
         publisher->type == kBridgeDeviceType;
}

// An immutable registry snapshot. Devices live in kShards shards chosen by a
// hash of the id; a shard never changes once built and is shared by every
// later snapshot that leaves it alone, so a snapshot built by Apply copies
// only the shards its changes touch (a few hundred devices each at 1,000,000
// devices) and costs no second copy of the registry.
//
// Lifetime: a Device pointer or reference from Find, FindByToken or
// ForEachDevice is valid exactly as long as the Snapshot it came from (the
// snapshot owns its shards); keep the shared_ptr<const Snapshot>, never the
// Device pointer, across callbacks.
class Snapshot {
 public:
  static constexpr size_t kShards = 4096;

  Snapshot() = default;
  Snapshot(const Snapshot&) = delete;
  Snapshot& operator=(const Snapshot&) = delete;

  // nullptr when there is no such device.
  const Device* Find(std::string_view id) const;
  // The device whose token is `topic`, or nullptr.
  const Device* FindByToken(std::string_view topic) const;
  // Calls `f(const Device&)` for every device, in no particular order.
  template <typename F>
  void ForEachDevice(F&& f) const {
    for (const auto& shard : shards_) {
      for (const Device& d : shard->devices) f(d);
    }
  }

  const std::vector<AclRule>& global_rules() const { return global_rules_; }
  size_t device_count() const { return device_count_; }
  size_t rule_count() const { return rule_count_; }
  int64_t generation() const { return generation_; }
  // Limit for devices whose type row is missing (the 'unknown' type's).
  uint32_t unknown_type_max_payload() const { return unknown_max_payload_; }
  // The smallest max_payload of any device (UINT32_MAX when there are none:
  // then no lookup is ever needed).
  uint32_t min_type_max_payload() const { return min_max_payload_; }

  // Builds a snapshot a row at a time (below).
  class Builder;

  // Builds a snapshot from rows with a Builder: per-device rules are
  // attached to their device (rules of unknown ids are dropped).
  static std::shared_ptr<const Snapshot> Build(
      std::vector<Device> devices, std::vector<AclRule> global,
      int64_t generation, uint32_t unknown_max_payload,
      std::vector<std::pair<std::string, AclRule>> device_rules = {});

  // What changed since this snapshot, as read from the change feed.
  struct Changes {
    int64_t generation = 0;
    // Every id whose row may have changed: each is taken out...
    std::vector<std::string> ids;
    // ...and these (their rows now, ids among `ids`) are put in.
    std::vector<Device> devices;
    // The global rules, when they changed.
    std::optional<std::vector<AclRule>> global_rules;
    uint32_t unknown_max_payload = kDefaultMaxPayloadBytes;
  };
  // The next snapshot: this one with `changes` applied, sharing every shard
  // they do not touch.
  std::shared_ptr<const Snapshot> Apply(Changes changes) const;

 private:
  struct Shard {
    std::vector<Device> devices;
    std::vector<uint32_t> by_id;  // open addressing; 0 = empty, else idx+1
    uint32_t min_max_payload = UINT32_MAX;
    size_t rule_count = 0;
    // Builds by_id and the totals.
    void Index();
    // The device `id`, whose HashBytes is `hash`, or nullptr.
    const Device* Find(std::string_view id, uint64_t hash) const;
  };
  // Custom tokens (default ones name their device): token hash and the id
  // of the device that has it.
  struct TokenShard {
    std::vector<std::pair<uint64_t, std::string>> entries;
    std::vector<uint32_t> by_hash;  // open addressing over entries
    void Index();
  };
  // Device count, rule count and smallest limit over the shards.
  void Summarize();

  std::vector<std::shared_ptr<const Shard>> shards_;
  std::vector<std::shared_ptr<const TokenShard>> token_shards_;
  std::vector<AclRule> global_rules_;
  size_t device_count_ = 0;
  size_t rule_count_ = 0;
  int64_t generation_ = 0;
  uint32_t unknown_max_payload_ = kDefaultMaxPayloadBytes;
  uint32_t min_max_payload_ = UINT32_MAX;
};

// Builds a snapshot a row at a time, each device held once (in the shard it
// goes to): a full load adds rows as it reads them.
class Snapshot::Builder {
 public:
  Builder();
  // Adds a device whose id is not there yet.
  void Add(Device device);
  // Appends `rule` to the own rules of device `id` (dropped when there is
  // no such device). Every Add comes before the first AddRule.
  void AddRule(std::string_view id, AclRule rule);
  // The snapshot; the builder is left empty.
  std::shared_ptr<const Snapshot> Finish(std::vector<AclRule> global,
                                         int64_t generation,
                                         uint32_t unknown_max_payload);

 private:
  // Devices are added in chunks: each goes to its shard in a tight loop
  // over the chunk (much faster than one at a time between rows read).
  static constexpr size_t kChunk = 65536;
  // Moves the pending devices into their shards.
  void Distribute();
  // Indexes the shards (once: after the last Add).
  void IndexOnce();
  std::vector<Device> pending_;
  std::vector<std::shared_ptr<Shard>> shards_;
  std::vector<std::shared_ptr<TokenShard>> tokens_;
  bool indexed_ = false;
};

// Checks that `db` holds a registry this build understands: exactly schema
// version kSchemaVersion (an older file is refused with a message telling the
// operator to run homepot-admin init, which migrates it; a newer one is
// refused too) with the tables and columns the plugin reads and writes.
Status CheckSchema(Database* db);

// Reads the registry generation counter (cheap; used for change polling).
Result<int64_t> ReadGeneration(Database* db);

// Reads the whole registry in one read transaction. Rows that break the
// rules the schema cannot express (bad hash, bad filter, invalid UTF-8 id)
// are skipped and described in `warnings`.
Result<std::shared_ptr<const Snapshot>> LoadSnapshot(
    Database* db, std::vector<std::string>* warnings);

// LoadChanges reloads in full rather than re-read more keys of the change
// feed, or more devices, than this. The schema's triggers leave a gap in
// the feed above it (schema/schema.sql: a generation of its own per changed
// row, the last kMaxChangedDevices generations kept; schema/postgresql.sql:
// a generation that would hold more feed rows holds none), so that a bulk
// write is never read key by key.
inline constexpr size_t kMaxChangedDevices = 50000;

// A snapshot brought forward by the change feed.
struct ChangedSnapshot {
  // nullptr: the feed cannot bring `base` forward (its rows after `base`
  // were pruned, the generation went back, or so much changed that a full
  // load is cheaper); LoadSnapshot is due.
  std::shared_ptr<const Snapshot> snapshot;
  std::vector<std::string> revoked;  // as RevokedDevices, for what changed
  size_t changed = 0;                // device ids re-read
};

// Brings `base` to the registry's current generation in one read
// transaction: reads the change feed after base.generation(), re-reads only
// the devices (with their rules; on PostgreSQL in one statement per table),
// the global rules and the types it names, and applies them
// (Snapshot::Apply). Asks for a full load (snapshot nullptr) when a
// generation after base's has no feed rows, or when the feed names more
// than kMaxChangedDevices keys or its types more than that many devices.
// Warnings as for LoadSnapshot.
Result<ChangedSnapshot> LoadChanges(Database* db, const Snapshot& base,
                                    std::vector<std::string>* warnings);

// Usernames whose sessions must end when `next` replaces `prev`: devices
// removed, disabled or given a different password.
std::vector<std::string> RevokedDevices(const Snapshot& prev,
                                        const Snapshot& next);

}  // namespace homepot

#endif  // HOMEPOT_PLUGIN_REGISTRY_H_
