#include "registry.h"

#include <sqlite3.h>

#include <algorithm>
#include <unordered_map>

#include "sqlite.h"
#include "topic.h"

namespace homepot {
namespace {

uint64_t HashBytes(std::string_view s) {  // FNV-1a, 64-bit
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

size_t TableSize(size_t n) {
  size_t size = 16;
  while (size < n * 2) size <<= 1;
  return size;
}

void Insert(std::vector<uint32_t>* table, std::string_view key, uint32_t idx) {
  size_t mask = table->size() - 1;
  for (size_t i = HashBytes(key) & mask;; i = (i + 1) & mask) {
    if ((*table)[i] == 0) {
      (*table)[i] = idx + 1;
      return;
    }
  }
}

template <typename KeyOf>
const Device* Lookup(const std::vector<uint32_t>& table,
                     const std::vector<Device>& devices, std::string_view key,
                     KeyOf key_of) {
  if (table.empty()) return nullptr;
  size_t mask = table.size() - 1;
  for (size_t i = HashBytes(key) & mask;; i = (i + 1) & mask) {
    uint32_t slot = table[i];
    if (slot == 0) return nullptr;
    const Device& d = devices[slot - 1];
    if (key_of(d) == key) return &d;
  }
}

Status SqliteError(std::string_view what, const Status& status) {
  return Status::Error(std::string(what) + ": " + status.message());
}

Status SqliteError(sqlite3* db, const char* what) {
  return Status::Error(std::string(what) + ": " + sqlite3_errmsg(db));
}

// The first column of the one row `sql` yields.
Result<int64_t> ReadInt(sqlite3* db, std::string_view sql, const char* what) {
  Result<Statement> stmt = Statement::Prepare(db, sql);
  if (!stmt.ok()) return SqliteError(what, stmt.status());
  Result<bool> row = stmt->Step();
  if (!row.ok()) return SqliteError(what, row.status());
  if (!*row) return SqliteError(db, what);
  return stmt->Int(0);
}

}  // namespace

bool Device::IsToken(std::string_view topic) const {
  if (!token.empty()) return topic == token;
  return IsDefaultToken(topic, id);
}

const Device* Snapshot::Find(std::string_view id) const {
  return Lookup(by_id_, devices_, id,
                [](const Device& d) -> std::string_view { return d.id; });
}

const Device* Snapshot::FindByToken(std::string_view topic) const {
  // A default token names its device: find the id directly.
  if (std::string_view id = DefaultTokenDeviceId(topic); !id.empty()) {
    const Device* d = Find(id);
    if (d != nullptr && d->token.empty()) return d;
  }
  return Lookup(by_token_, devices_, topic,
                [](const Device& d) -> std::string_view { return d.token; });
}

void Snapshot::AttachRules(std::vector<std::pair<std::string, AclRule>> rules) {
  for (auto& [id, rule] : rules) {
    if (const Device* d = Find(id)) {
      devices_[d - devices_.data()].rules.push_back(std::move(rule));
      ++rule_count_;
    }
  }
}

void Snapshot::BuildIndexes() {
  by_id_.assign(TableSize(devices_.size()), 0);
  size_t custom = 0;
  for (const Device& d : devices_) custom += !d.token.empty();
  by_token_.assign(custom ? TableSize(custom) : 0, 0);
  rule_count_ = global_rules_.size();
  min_max_payload_ = UINT32_MAX;
  for (uint32_t i = 0; i < devices_.size(); ++i) {
    min_max_payload_ = std::min(min_max_payload_, devices_[i].max_payload);
    Insert(&by_id_, devices_[i].id, i);
    if (!devices_[i].token.empty()) Insert(&by_token_, devices_[i].token, i);
    rule_count_ += devices_[i].rules.size();
  }
}

std::shared_ptr<const Snapshot> Snapshot::Build(std::vector<Device> devices,
                                                std::vector<AclRule> global,
                                                int64_t generation,
                                                uint32_t unknown_max_payload) {
  auto s = std::make_shared<Snapshot>();
  s->devices_ = std::move(devices);
  s->global_rules_ = std::move(global);
  s->generation_ = generation;
  s->unknown_max_payload_ = unknown_max_payload;
  s->BuildIndexes();
  return s;
}

Status CheckSchema(sqlite3* db) {
  Result<int64_t> version =
      ReadInt(db, "PRAGMA user_version", "cannot read schema version");
  if (!version.ok()) return version.status();
  const int64_t v = *version;
  if (v == 0) {
    return Status::Error(
        "no HOMEPOT schema (user_version 0); run homepot-admin init");
  }
  if (v > kSchemaVersion) {
    return Status::Error("schema version " + std::to_string(v) +
                         " is newer than this plugin understands (" +
                         std::to_string(kSchemaVersion) + ")");
  }
  if (v < kSchemaVersion) {
    return Status::Error("schema version " + std::to_string(v) +
                         " is older than this plugin understands (" +
                         std::to_string(kSchemaVersion) +
                         "); run homepot-admin init to migrate it");
  }
  // The tables, and the columns added after version 1, the plugin uses.
  static constexpr struct {
    const char* table;
    const char* columns;
  } kProbes[] = {{"device_types", "1"},
                 {"devices", "1"},
                 {"acl_rules", "1"},
                 {"device_stats", "node, expired, acked, sessions, subscribed"},
                 {"registry_meta", "1"},
                 {"registry_changes", "generation, kind, name"},
                 {"notification_log", "node"}};
  for (const auto& [table, columns] : kProbes) {
    Result<Statement> probe = Statement::Prepare(
        db, std::string("SELECT ") + columns + " FROM " + table + " LIMIT 0");
    if (!probe.ok()) {
      return Status::Error(
          std::string("table ") + table +
          " is missing or unreadable: " + probe.status().message());
    }
  }
  return Status::Ok();
}

Result<int64_t> ReadGeneration(sqlite3* db) {
  return ReadInt(db, "SELECT generation FROM registry_meta WHERE id = 1",
                 "cannot read registry generation");
}

Result<std::shared_ptr<const Snapshot>> LoadSnapshot(
    sqlite3* db, std::vector<std::string>* warnings) {
  if (sqlite3_exec(db, "BEGIN", nullptr, nullptr, nullptr) != SQLITE_OK) {
    return SqliteError(db, "cannot begin read");
  }
  struct Rollback {
    sqlite3* db;
    ~Rollback() { sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr); }
  } rollback{db};

  Status schema = CheckSchema(db);
  if (!schema.ok()) return schema;
  Result<int64_t> generation = ReadGeneration(db);
  if (!generation.ok()) return generation.status();

  std::unordered_map<std::string, uint32_t> type_limits;
  {
    constexpr const char* kWhat = "cannot read device_types";
    Result<Statement> stmt = Statement::Prepare(
        db, "SELECT name, max_payload_bytes FROM device_types");
    if (!stmt.ok()) return SqliteError(kWhat, stmt.status());
    for (;;) {
      Result<bool> row = stmt->Step();
      if (!row.ok()) return SqliteError(kWhat, row.status());
      if (!*row) break;
      type_limits[stmt->Text(0)] = static_cast<uint32_t>(
          std::clamp<int64_t>(stmt->Int(1), 0, UINT32_MAX));
    }
  }
  uint32_t unknown_limit = kDefaultMaxPayloadBytes;
  if (auto it = type_limits.find("unknown"); it != type_limits.end()) {
    unknown_limit = it->second;
  }

  std::vector<Device> devices;
  {
    constexpr const char* kWhat = "cannot read devices";
    Result<int64_t> count = ReadInt(db, "SELECT count(*) FROM devices", kWhat);
    if (count.ok()) devices.reserve(*count);
    Result<Statement> stmt = Statement::Prepare(
        db,
        "SELECT device_id, device_type, password_hash, device_token, enabled "
        "FROM devices");
    if (!stmt.ok()) return SqliteError(kWhat, stmt.status());
    for (;;) {
      Result<bool> row = stmt->Step();
      if (!row.ok()) return SqliteError(kWhat, row.status());
      if (!*row) break;
      Device d;
      d.id = stmt->Text(0);
      if (!IsValidDeviceId(d.id)) {
        warnings->push_back("skipped device with invalid id");
        continue;
      }
      d.type = stmt->Text(1);
      auto it = type_limits.find(d.type);
      d.max_payload = it != type_limits.end() ? it->second : unknown_limit;
      if (!stmt->IsNull(2)) {
        Result<PasswordHash> hash = ParsePasswordHash(stmt->Text(2));
        if (hash.ok()) {
          d.has_password = true;
          d.password = *hash;
        } else {
          warnings->push_back("device '" + d.id +
                              "': unusable password_hash (" +
                              hash.status().message() + "); it cannot log in");
        }
      }
      if (!stmt->IsNull(3)) {
        std::string token = stmt->Text(3);
        if (!IsValidTopic(token)) {
          warnings->push_back("device '" + d.id +
                              "': invalid device_token ignored");
        } else {
          d.token = std::move(token);
        }
      }
      d.enabled = stmt->Int(4) == 1;
      devices.push_back(std::move(d));
    }
  }
  // Default tokens are stored empty so that lookups need no allocation.
  for (Device& d : devices) {
    if (d.token.empty()) continue;
    std::string t = std::move(d.token);
    d.token.clear();
    if (!d.IsToken(t)) d.token = std::move(t);
  }

  std::vector<AclRule> global;
  std::vector<std::pair<std::string, AclRule>> device_rules;
  {
    constexpr const char* kWhat = "cannot read acl_rules";
    Result<Statement> stmt = Statement::Prepare(
        db,
        "SELECT device_id, topic_filter, access FROM acl_rules ORDER BY id");
    if (!stmt.ok()) return SqliteError(kWhat, stmt.status());
    for (;;) {
      Result<bool> row = stmt->Step();
      if (!row.ok()) return SqliteError(kWhat, row.status());
      if (!*row) break;
      AclRule rule;
      rule.filter = stmt->Text(1);
      rule.access = RuleAccessFromWord(stmt->Text(2)).value_or(RuleAccess{});
      if (rule.access == 0 || !IsValidFilter(rule.filter)) {
        warnings->push_back("skipped invalid acl rule '" + rule.filter + "'");
        continue;
      }
      if (stmt->IsNull(0)) {
        global.push_back(std::move(rule));
      } else {
        device_rules.emplace_back(stmt->Text(0), std::move(rule));
      }
    }
  }
  // Rules are attached through the snapshot's own index (no sort needed).
  auto snapshot = std::const_pointer_cast<Snapshot>(Snapshot::Build(
      std::move(devices), std::move(global), *generation, unknown_limit));
  snapshot->AttachRules(std::move(device_rules));
  return std::shared_ptr<const Snapshot>(std::move(snapshot));
}

std::vector<std::string> RevokedDevices(const Snapshot& prev,
                                        const Snapshot& next) {
  std::vector<std::string> revoked;
  for (const Device& old : prev.devices()) {
    if (!old.enabled) continue;  // its sessions were ended already
    const Device* now = next.Find(old.id);
    if (now == nullptr || !now->enabled ||
        now->has_password != old.has_password ||
        now->password.hash != old.password.hash ||
        now->password.salt != old.password.salt) {
      revoked.push_back(old.id);
    }
  }
  return revoked;
}

}  // namespace homepot
