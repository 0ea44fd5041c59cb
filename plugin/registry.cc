#include "registry.h"

#include <algorithm>
#include <unordered_map>

#include "database.h"
#include "topic.h"

namespace homepot {
namespace {

uint64_t HashBytes(std::string_view s) {  // FNV-1a, 64-bit, then mixed
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  // MurmurHash3's finalizer: the top bits choose the shard, the low bits
  // the slot, so every bit must depend on every byte.
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdull;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ull;
  h ^= h >> 33;
  return h;
}

static_assert((Snapshot::kShards & (Snapshot::kShards - 1)) == 0);
constexpr int kShardBits = __builtin_ctzll(Snapshot::kShards);

size_t ShardOf(uint64_t hash) { return hash >> (64 - kShardBits); }
size_t ShardOf(std::string_view key) { return ShardOf(HashBytes(key)); }

size_t TableSize(size_t n) {
  size_t size = 16;
  while (size < n * 2) size <<= 1;
  return size;
}

void Insert(std::vector<uint32_t>* table, uint64_t hash, uint32_t idx) {
  size_t mask = table->size() - 1;
  for (size_t i = hash & mask;; i = (i + 1) & mask) {
    if ((*table)[i] == 0) {
      (*table)[i] = idx + 1;
      return;
    }
  }
}

Status DbError(std::string_view what, const Status& status) {
  return Status::Error(std::string(what) + ": " + status.message());
}

// The first column of the one row `sql` yields.
Result<int64_t> ReadInt(Database* db, std::string_view sql, const char* what) {
  Result<Statement> stmt = db->Prepare(sql);
  if (!stmt.ok()) return DbError(what, stmt.status());
  Result<bool> row = stmt->Step();
  if (!row.ok()) return DbError(what, row.status());
  if (!*row) return Status::Error(std::string(what) + ": no row");
  return stmt->Int(0);
}

}  // namespace

bool Device::IsToken(std::string_view topic) const {
  if (!token.empty()) return topic == token;
  return IsDefaultToken(topic, id);
}

void Snapshot::Shard::Index() {
  by_id.assign(devices.empty() ? 0 : TableSize(devices.size()), 0);
  min_max_payload = UINT32_MAX;
  rule_count = 0;
  for (uint32_t i = 0; i < devices.size(); ++i) {
    Insert(&by_id, HashBytes(devices[i].id), i);
    min_max_payload = std::min(min_max_payload, devices[i].max_payload);
    rule_count += devices[i].rules.size();
  }
}

void Snapshot::TokenShard::Index() {
  by_hash.assign(entries.empty() ? 0 : TableSize(entries.size()), 0);
  for (uint32_t i = 0; i < entries.size(); ++i) {
    Insert(&by_hash, entries[i].first, i);
  }
}

const Device* Snapshot::Shard::Find(std::string_view id, uint64_t hash) const {
  if (by_id.empty()) return nullptr;
  const size_t mask = by_id.size() - 1;
  for (size_t i = hash & mask;; i = (i + 1) & mask) {
    const uint32_t slot = by_id[i];
    if (slot == 0) return nullptr;
    const Device& d = devices[slot - 1];
    if (d.id == id) return &d;
  }
}

const Device* Snapshot::Find(std::string_view id) const {
  if (shards_.empty()) return nullptr;
  const uint64_t hash = HashBytes(id);
  return shards_[ShardOf(hash)]->Find(id, hash);
}

const Device* Snapshot::FindByToken(std::string_view topic) const {
  // A default token names its device: find the id directly.
  if (std::string_view id = DefaultTokenDeviceId(topic); !id.empty()) {
    const Device* d = Find(id);
    if (d != nullptr && d->token.empty()) return d;
  }
  if (token_shards_.empty()) return nullptr;
  const uint64_t hash = HashBytes(topic);
  const TokenShard& shard = *token_shards_[ShardOf(hash)];
  if (shard.by_hash.empty()) return nullptr;
  const size_t mask = shard.by_hash.size() - 1;
  for (size_t i = hash & mask;; i = (i + 1) & mask) {
    const uint32_t slot = shard.by_hash[i];
    if (slot == 0) return nullptr;
    const auto& [entry_hash, id] = shard.entries[slot - 1];
    if (entry_hash != hash) continue;
    const Device* d = Find(id);
    if (d != nullptr && d->token == topic) return d;
  }
}

void Snapshot::Summarize() {
  device_count_ = 0;
  rule_count_ = global_rules_.size();
  min_max_payload_ = UINT32_MAX;
  for (const auto& shard : shards_) {
    device_count_ += shard->devices.size();
    rule_count_ += shard->rule_count;
    min_max_payload_ = std::min(min_max_payload_, shard->min_max_payload);
  }
}

Snapshot::Builder::Builder() : shards_(kShards), tokens_(kShards) {}

void Snapshot::Builder::Add(Device device) {
  if (pending_.capacity() == 0) pending_.reserve(kChunk);
  pending_.push_back(std::move(device));
  if (pending_.size() == kChunk) Distribute();
}

void Snapshot::Builder::Distribute() {
  for (Device& device : pending_) {
    auto& shard = shards_[ShardOf(device.id)];
    if (!shard) shard = std::make_shared<Shard>();
    if (!device.token.empty()) {
      const uint64_t hash = HashBytes(device.token);
      auto& token_shard = tokens_[ShardOf(hash)];
      if (!token_shard) token_shard = std::make_shared<TokenShard>();
      token_shard->entries.emplace_back(hash, device.id);
    }
    shard->devices.push_back(std::move(device));
  }
  pending_.clear();
}

void Snapshot::Builder::IndexOnce() {
  if (indexed_) return;
  indexed_ = true;
  Distribute();
  std::vector<Device>().swap(pending_);
  for (auto& shard : shards_) {
    if (shard) shard->Index();
  }
}

void Snapshot::Builder::AddRule(std::string_view id, AclRule rule) {
  IndexOnce();
  const uint64_t hash = HashBytes(id);
  Shard* shard = shards_[ShardOf(hash)].get();
  if (shard == nullptr) return;
  if (const Device* d = shard->Find(id, hash)) {
    shard->devices[d - shard->devices.data()].rules.push_back(std::move(rule));
    ++shard->rule_count;
  }
}

std::shared_ptr<const Snapshot> Snapshot::Builder::Finish(
    std::vector<AclRule> global, int64_t generation,
    uint32_t unknown_max_payload) {
  IndexOnce();
  for (auto& shard : tokens_) {
    if (shard) shard->Index();
  }
  auto s = std::make_shared<Snapshot>();
  s->shards_.assign(shards_.begin(), shards_.end());
  s->token_shards_.assign(tokens_.begin(), tokens_.end());
  shards_.clear();
  tokens_.clear();
  // Empty slots share one empty shard.
  const auto empty = std::make_shared<const Shard>();
  const auto no_tokens = std::make_shared<const TokenShard>();
  for (auto& shard : s->shards_) {
    if (!shard) shard = empty;
  }
  for (auto& shard : s->token_shards_) {
    if (!shard) shard = no_tokens;
  }
  s->global_rules_ = std::move(global);
  s->generation_ = generation;
  s->unknown_max_payload_ = unknown_max_payload;
  s->Summarize();
  return s;
}

std::shared_ptr<const Snapshot> Snapshot::Build(
    std::vector<Device> devices, std::vector<AclRule> global,
    int64_t generation, uint32_t unknown_max_payload,
    std::vector<std::pair<std::string, AclRule>> device_rules) {
  Builder builder;
  for (Device& d : devices) builder.Add(std::move(d));
  std::vector<Device>().swap(devices);
  for (auto& [id, rule] : device_rules) builder.AddRule(id, std::move(rule));
  return builder.Finish(std::move(global), generation, unknown_max_payload);
}

std::shared_ptr<const Snapshot> Snapshot::Apply(Changes changes) const {
  if (shards_.empty()) {  // a default-constructed snapshot has no shards
    return Build(
        std::move(changes.devices),
        changes.global_rules ? std::move(*changes.global_rules) : global_rules_,
        changes.generation, changes.unknown_max_payload);
  }
  auto next = std::make_shared<Snapshot>();
  next->shards_ = shards_;
  next->token_shards_ = token_shards_;
  // Per touched shard: the ids to take out and the devices to put in.
  std::unordered_map<
      size_t, std::pair<std::vector<std::string_view>, std::vector<Device*>>>
      edits;
  std::unordered_map<size_t, std::pair<std::vector<std::string_view>,
                                       std::vector<const Device*>>>
      token_edits;
  for (const std::string& id : changes.ids) {
    edits[ShardOf(id)].first.push_back(id);
    if (const Device* old = Find(id); old != nullptr && !old->token.empty()) {
      token_edits[ShardOf(old->token)].first.push_back(old->id);
    }
  }
  for (Device& d : changes.devices) {
    edits[ShardOf(d.id)].second.push_back(&d);
  }
  for (auto& [index, edit] : edits) {
    const auto& [out, in] = edit;
    auto shard = std::make_shared<Shard>();
    const Shard& old = *shards_[index];
    shard->devices.reserve(old.devices.size() + in.size());
    for (const Device& d : old.devices) {
      if (std::find(out.begin(), out.end(), d.id) == out.end()) {
        shard->devices.push_back(d);
      }
    }
    for (Device* d : in) shard->devices.push_back(std::move(*d));
    shard->Index();
    next->shards_[index] = std::move(shard);
  }
  // Tokens of the devices put in, now in the next snapshot.
  for (auto& [index, edit] : edits) {
    for (const Device& d : next->shards_[index]->devices) {
      if (d.token.empty()) continue;
      if (std::find(edit.first.begin(), edit.first.end(), d.id) ==
          edit.first.end()) {
        continue;  // unchanged, its entry stays
      }
      token_edits[ShardOf(d.token)].second.push_back(&d);
    }
  }
  for (auto& [index, edit] : token_edits) {
    const auto& [out, in] = edit;
    auto shard = std::make_shared<TokenShard>();
    for (const auto& entry : token_shards_[index]->entries) {
      if (std::find(out.begin(), out.end(), entry.second) == out.end()) {
        shard->entries.push_back(entry);
      }
    }
    for (const Device* d : in) {
      shard->entries.emplace_back(HashBytes(d->token), d->id);
    }
    shard->Index();
    next->token_shards_[index] = std::move(shard);
  }
  next->global_rules_ =
      changes.global_rules ? std::move(*changes.global_rules) : global_rules_;
  next->generation_ = changes.generation;
  next->unknown_max_payload_ = changes.unknown_max_payload;
  next->Summarize();
  return next;
}

Status CheckSchema(Database* db) {
  // SQLite keeps the version in user_version; PostgreSQL, which has none,
  // in registry_meta (schema/postgresql.sql).
  Result<int64_t> version =
      db->backend() == Backend::kSqlite
          ? ReadInt(db, "PRAGMA user_version", "cannot read schema version")
          : ReadInt(db,
                    "SELECT (to_regclass('registry_meta') IS NOT NULL)::int",
                    "cannot read schema version");
  if (version.ok() && *version == 1 && db->backend() == Backend::kPostgres) {
    version = ReadInt(db,
                      "SELECT coalesce(max(schema_version), 0) FROM "
                      "registry_meta WHERE id = 1",
                      "cannot read schema version");
  }
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
                 {"notification_log", "node"},
                 {"write_marks", "node, writer, mark"}};
  for (const auto& [table, columns] : kProbes) {
    Result<Statement> probe = db->Prepare(std::string("SELECT ") + columns +
                                          " FROM " + table + " LIMIT 0");
    // PostgreSQL checks a statement when it runs it.
    Status ran = probe.ok() ? probe->Run() : probe.status();
    if (!ran.ok()) {
      return Status::Error(std::string("table ") + table +
                           " is missing or unreadable: " + ran.message());
    }
  }
  return Status::Ok();
}

Result<int64_t> ReadGeneration(Database* db) {
  return ReadInt(db, "SELECT generation FROM registry_meta WHERE id = 1",
                 "cannot read registry generation");
}

namespace {

// The columns DecodeDevice reads, in order.
constexpr const char* kDeviceColumns =
    "SELECT device_id, device_type, password_hash, device_token, enabled "
    "FROM devices";

// Undoes the read transaction a load opened, whatever happens.
struct ReadTransaction {
  Database* db;
  ~ReadTransaction() { (void)db->Exec("ROLLBACK"); }
};

// One consistent view for the whole load: SQLite's read transaction, and on
// PostgreSQL a repeatable-read one (every statement sees the same commit).
Status BeginRead(Database* db) {
  Status s = db->Exec(db->backend() == Backend::kSqlite
                          ? "BEGIN"
                          : "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
  if (!s.ok()) return DbError("cannot begin read", s);
  return Status::Ok();
}

// Payload limits per type name, and the one for types without a row.
struct TypeLimits {
  std::unordered_map<std::string, uint32_t> by_name;
  uint32_t unknown = kDefaultMaxPayloadBytes;
  uint32_t Of(const std::string& type) const {
    auto it = by_name.find(type);
    return it != by_name.end() ? it->second : unknown;
  }
};

Result<TypeLimits> ReadTypeLimits(Database* db) {
  constexpr const char* kWhat = "cannot read device_types";
  TypeLimits limits;
  Result<Statement> stmt =
      db->Prepare("SELECT name, max_payload_bytes FROM device_types");
  if (!stmt.ok()) return DbError(kWhat, stmt.status());
  for (;;) {
    Result<bool> row = stmt->Step();
    if (!row.ok()) return DbError(kWhat, row.status());
    if (!*row) break;
    limits.by_name[stmt->Text(0)] =
        static_cast<uint32_t>(std::clamp<int64_t>(stmt->Int(1), 0, UINT32_MAX));
  }
  if (auto it = limits.by_name.find("unknown"); it != limits.by_name.end()) {
    limits.unknown = it->second;
  }
  return limits;
}

// The device in the current row of a kDeviceColumns statement, or nothing
// when the row breaks a rule the schema cannot express (said in
// `warnings`).
std::optional<Device> DecodeDevice(Statement* stmt, const TypeLimits& limits,
                                   std::vector<std::string>* warnings) {
  Device d;
  d.id = stmt->Text(0);
  if (!IsValidDeviceId(d.id)) {
    warnings->push_back("skipped device with invalid id");
    return std::nullopt;
  }
  d.type = stmt->Text(1);
  d.max_payload = limits.Of(d.type);
  if (!stmt->IsNull(2)) {
    Result<PasswordHash> hash = ParsePasswordHash(stmt->Text(2));
    if (hash.ok()) {
      d.has_password = true;
      d.password = *hash;
    } else {
      warnings->push_back("device '" + d.id + "': unusable password_hash (" +
                          hash.status().message() + "); it cannot log in");
    }
  }
  if (!stmt->IsNull(3)) {
    std::string token = stmt->Text(3);
    if (!IsValidTopic(token)) {
      warnings->push_back("device '" + d.id +
                          "': invalid device_token ignored");
    } else if (!IsDefaultToken(token, d.id)) {
      // Default tokens are stored empty so that lookups need no allocation.
      d.token = std::move(token);
    }
  }
  d.enabled = stmt->Int(4) == 1;
  return d;
}

// The rule in columns `first` (topic_filter) and `first` + 1 (access) of the
// current row, or nothing when it is invalid (said in `warnings`).
std::optional<AclRule> DecodeRule(Statement* stmt, int first,
                                  std::vector<std::string>* warnings) {
  AclRule rule;
  rule.filter = stmt->Text(first);
  rule.access =
      RuleAccessFromWord(stmt->Text(first + 1)).value_or(RuleAccess{});
  if (rule.access == 0 || !IsValidFilter(rule.filter)) {
    warnings->push_back("skipped invalid acl rule '" + rule.filter + "'");
    return std::nullopt;
  }
  return rule;
}

// Runs a statement to its end, calling `row()` for each row.
template <typename Row>
Status EachRow(Statement* stmt, const char* what, Row row) {
  for (;;) {
    Result<bool> more = stmt->Step();
    if (!more.ok()) return DbError(what, more.status());
    if (!*more) return Status::Ok();
    row();
  }
}

Result<std::vector<AclRule>> ReadGlobalRules(
    Database* db, std::vector<std::string>* warnings) {
  constexpr const char* kWhat = "cannot read acl_rules";
  std::vector<AclRule> rules;
  Result<Statement> stmt = db->Prepare(
      "SELECT topic_filter, access FROM acl_rules WHERE device_id IS NULL "
      "ORDER BY id");
  if (!stmt.ok()) return DbError(kWhat, stmt.status());
  Status s = EachRow(&*stmt, kWhat, [&] {
    if (auto rule = DecodeRule(&*stmt, 0, warnings)) {
      rules.push_back(std::move(*rule));
    }
  });
  if (!s.ok()) return s;
  return rules;
}

// Whether a device that could log in with `old` must lose its sessions when
// `now` (nullptr: removed) replaces it.
bool Revokes(const Device& old, const Device* now) {
  return now == nullptr || !now->enabled ||
         now->has_password != old.has_password ||
         now->password.hash != old.password.hash ||
         now->password.salt != old.password.salt;
}

// `items` as a PostgreSQL text[] literal: every element in double quotes,
// with " and \ escaped by a backslash (nothing else is special there).
std::string TextArrayLiteral(const std::vector<std::string>& items) {
  size_t size = 2;
  for (const std::string& item : items) size += item.size() + 3;
  std::string out;
  out.reserve(size);
  out += '{';
  for (const std::string& item : items) {
    if (out.size() > 1) out += ',';
    out += '"';
    for (const char c : item) {
      if (c == '"' || c == '\\') out += '\\';
      out += c;
    }
    out += '"';
  }
  out += '}';
  return out;
}

// The devices named in `ids` that have a row, with their own rules; rows
// that break a rule are skipped as in a full load (said in `warnings`). On
// PostgreSQL one statement per table for all of them (a round trip per
// device would cost more than the rows); on SQLite, in process, a lookup
// per device.
Result<std::vector<Device>> ReadDevices(Database* db,
                                        const std::vector<std::string>& ids,
                                        const TypeLimits& limits,
                                        std::vector<std::string>* warnings) {
  constexpr const char* kDevices = "cannot read devices";
  constexpr const char* kRules = "cannot read acl_rules";
  std::vector<Device> devices;
  if (ids.empty()) return devices;
  if (db->backend() == Backend::kPostgres) {
    const std::string list = TextArrayLiteral(ids);
    Result<Statement> device = db->Prepare(
        std::string(kDeviceColumns) + " WHERE device_id = ANY(?1::text[])");
    if (!device.ok()) return DbError(kDevices, device.status());
    device->Bind(1, std::string_view(list));
    Status s = EachRow(&*device, kDevices, [&] {
      if (auto d = DecodeDevice(&*device, limits, warnings)) {
        devices.push_back(std::move(*d));
      }
    });
    if (!s.ok()) return s;
    std::unordered_map<std::string, size_t> index;
    index.reserve(devices.size());
    for (size_t i = 0; i < devices.size(); ++i) index[devices[i].id] = i;
    Result<Statement> rules = db->Prepare(
        "SELECT device_id, topic_filter, access FROM acl_rules "
        "WHERE device_id = ANY(?1::text[]) ORDER BY id");
    if (!rules.ok()) return DbError(kRules, rules.status());
    rules->Bind(1, std::string_view(list));
    s = EachRow(&*rules, kRules, [&] {
      auto it = index.find(rules->Text(0));
      if (it == index.end()) return;  // its device was skipped
      if (auto rule = DecodeRule(&*rules, 1, warnings)) {
        devices[it->second].rules.push_back(std::move(*rule));
      }
    });
    if (!s.ok()) return s;
    return devices;
  }
  Result<Statement> device =
      db->Prepare(std::string(kDeviceColumns) + " WHERE device_id = ?1");
  if (!device.ok()) return DbError(kDevices, device.status());
  Result<Statement> rules = db->Prepare(
      "SELECT topic_filter, access FROM acl_rules WHERE device_id = ?1 "
      "ORDER BY id");
  if (!rules.ok()) return DbError(kRules, rules.status());
  for (const std::string& id : ids) {
    device->Reset();
    device->Bind(1, std::string_view(id));
    Result<bool> found = device->Step();
    if (!found.ok()) return DbError(kDevices, found.status());
    if (!*found) continue;  // removed
    std::optional<Device> d = DecodeDevice(&*device, limits, warnings);
    if (!d) continue;
    rules->Reset();
    rules->Bind(1, std::string_view(id));
    Status s = EachRow(&*rules, kRules, [&] {
      if (auto rule = DecodeRule(&*rules, 0, warnings)) {
        d->rules.push_back(std::move(*rule));
      }
    });
    if (!s.ok()) return s;
    devices.push_back(std::move(*d));
  }
  return devices;
}

}  // namespace

Result<std::shared_ptr<const Snapshot>> LoadSnapshot(
    Database* db, std::vector<std::string>* warnings) {
  if (Status s = BeginRead(db); !s.ok()) return s;
  ReadTransaction read{db};

  Status schema = CheckSchema(db);
  if (!schema.ok()) return schema;
  Result<int64_t> generation = ReadGeneration(db);
  if (!generation.ok()) return generation.status();
  Result<TypeLimits> limits = ReadTypeLimits(db);
  if (!limits.ok()) return limits.status();

  // Each row goes into the snapshot as it is read: the load holds the
  // registry once, whatever its size (a PostgreSQL statement streams its
  // rows, database.h).
  Snapshot::Builder builder;
  {
    constexpr const char* kWhat = "cannot read devices";
    Result<Statement> stmt = db->Prepare(kDeviceColumns);
    if (!stmt.ok()) return DbError(kWhat, stmt.status());
    Status s = EachRow(&*stmt, kWhat, [&] {
      if (auto d = DecodeDevice(&*stmt, *limits, warnings)) {
        builder.Add(std::move(*d));
      }
    });
    if (!s.ok()) return s;
  }

  std::vector<AclRule> global;
  {
    constexpr const char* kWhat = "cannot read acl_rules";
    Result<Statement> stmt = db->Prepare(
        "SELECT device_id, topic_filter, access FROM acl_rules ORDER BY id");
    if (!stmt.ok()) return DbError(kWhat, stmt.status());
    Status s = EachRow(&*stmt, kWhat, [&] {
      std::optional<AclRule> rule = DecodeRule(&*stmt, 1, warnings);
      if (!rule) return;
      if (stmt->IsNull(0)) {
        global.push_back(std::move(*rule));
      } else {
        builder.AddRule(stmt->Text(0), std::move(*rule));
      }
    });
    if (!s.ok()) return s;
  }
  return builder.Finish(std::move(global), *generation, limits->unknown);
}

Result<ChangedSnapshot> LoadChanges(Database* db, const Snapshot& base,
                                    std::vector<std::string>* warnings) {
  if (Status s = BeginRead(db); !s.ok()) return s;
  ReadTransaction read{db};
  ChangedSnapshot out;
  Result<int64_t> generation = ReadGeneration(db);
  if (!generation.ok()) return generation.status();
  if (*generation < base.generation()) return out;  // went back: full load

  constexpr const char* kWhat = "cannot read registry_changes";
  // The feed must hold every generation after base's: a generation without
  // rows (pruned, a TRUNCATE, or one that changed more than
  // kMaxChangedDevices keys) asks for a full load.
  Result<Statement> held = db->Prepare(
      "SELECT count(DISTINCT generation) FROM registry_changes "
      "WHERE generation > ?1 AND generation <= ?2");
  if (!held.ok()) return DbError(kWhat, held.status());
  held->Bind(1, base.generation()).Bind(2, *generation);
  Result<bool> row = held->Step();
  if (!row.ok()) return DbError(kWhat, row.status());
  if (!*row || held->Int(0) != *generation - base.generation()) return out;

  std::vector<std::string> ids;
  std::vector<std::string> types;
  bool global_changed = false;
  {
    // One key past the bound says that a full load is due.
    Result<Statement> stmt = db->Prepare(
        "SELECT DISTINCT kind, name FROM registry_changes "
        "WHERE generation > ?1 AND generation <= ?2 LIMIT ?3");
    if (!stmt.ok()) return DbError(kWhat, stmt.status());
    stmt->Bind(1, base.generation())
        .Bind(2, *generation)
        .Bind(3, static_cast<int64_t>(kMaxChangedDevices) + 1);
    size_t keys = 0;
    Status s = EachRow(&*stmt, kWhat, [&] {
      ++keys;
      const std::string kind = stmt->Text(0);
      if (kind == "device") {
        ids.push_back(stmt->Text(1));
      } else if (kind == "type") {
        types.push_back(stmt->Text(1));
      } else {
        global_changed = true;
      }
    });
    if (!s.ok()) return s;
    if (keys > kMaxChangedDevices) return out;
  }
  Result<TypeLimits> limits = ReadTypeLimits(db);
  if (!limits.ok()) return limits.status();
  // A type's limit is in each of its devices: re-read them all (devices of
  // a type without a row use 'unknown's).
  for (const std::string& type : types) {
    constexpr const char* kDevices = "cannot read devices";
    const bool unknown = type == "unknown";
    Result<Statement> stmt = db->Prepare(
        unknown ? "SELECT device_id FROM devices WHERE device_type = ?1 "
                  "OR device_type NOT IN (SELECT name FROM device_types)"
                : "SELECT device_id FROM devices WHERE device_type = ?1");
    if (!stmt.ok()) return DbError(kDevices, stmt.status());
    stmt->Bind(1, std::string_view(type));
    Status s = EachRow(&*stmt, kDevices, [&] {
      if (ids.size() <= kMaxChangedDevices) ids.push_back(stmt->Text(0));
    });
    if (!s.ok()) return s;
  }
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  if (ids.size() > kMaxChangedDevices) return out;  // a full load is cheaper

  Snapshot::Changes changes;
  changes.generation = *generation;
  changes.unknown_max_payload = limits->unknown;
  {
    Result<std::vector<Device>> devices =
        ReadDevices(db, ids, *limits, warnings);
    if (!devices.ok()) return devices.status();
    changes.devices = std::move(*devices);
  }
  if (global_changed) {
    Result<std::vector<AclRule>> global = ReadGlobalRules(db, warnings);
    if (!global.ok()) return global.status();
    changes.global_rules = std::move(*global);
  }
  changes.ids = std::move(ids);
  out.changed = changes.ids.size();
  out.snapshot = base.Apply(changes);
  for (const std::string& id : changes.ids) {
    const Device* old = base.Find(id);
    if (old != nullptr && old->enabled &&
        Revokes(*old, out.snapshot->Find(id))) {
      out.revoked.push_back(id);
    }
  }
  return out;
}

std::vector<std::string> RevokedDevices(const Snapshot& prev,
                                        const Snapshot& next) {
  std::vector<std::string> revoked;
  prev.ForEachDevice([&](const Device& old) {
    // A disabled device's sessions were ended already.
    if (old.enabled && Revokes(old, next.Find(old.id))) {
      revoked.push_back(old.id);
    }
  });
  return revoked;
}

}  // namespace homepot
