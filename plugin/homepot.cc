#include "homepot.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <functional>
#include <nlohmann/json.hpp>

#include "topic.h"

namespace homepot {
namespace {

// How long a QoS 2 notification's stamp is remembered for retransmissions.
constexpr int64_t kQos2StampTtlMs = 120000;
constexpr size_t kMaxQos2Stamps = 100000;

bool HasTopicWildcards(const char* s) {
  return s != nullptr && std::strpbrk(s, "+#/") != nullptr;
}

AuthOptions MakeAuthOptions(const Config& c) {
  AuthOptions o;
  o.max_failures = c.auth_max_failures;
  o.lockout_ms = int64_t{c.auth_lockout_seconds} * 1000;
  o.defer_unknown = c.defer_unknown;
  return o;
}

}  // namespace

Homepot::Homepot(const Config& config, Broker* broker, Clock* clock)
    : config_(config),
      broker_(broker),
      clock_(clock),
      worker_(std::make_unique<RegistryWorker>(config.db_path,
                                               config.reload_interval_ms)),
      auth_(MakeAuthOptions(config)),
      validator_(config.timestamp_field),
      injector_(config.timestamp_field),
      notification_filters_(config.notification_topics),
      stats_interval_ms_(int64_t{config.stats_interval_s} * 1000),
      started_ms_(clock->MonotonicMs()) {
  next_stats_ms_ = started_ms_ + stats_interval_ms_;
}

Homepot::~Homepot() { Shutdown(); }

Result<std::unique_ptr<Homepot>> Homepot::Create(const Config& config,
                                                 Broker* broker, Clock* clock) {
  std::unique_ptr<Homepot> h(new Homepot(config, broker, clock));
  auto first = h->worker_->Start();
  if (!first.ok()) return first.status();
  h->snapshot_ = *first;
  h->loaded_at_ms_ = clock->WallMs();
  h->broker_->Log(
      LogLevel::kInfo,
      "registry " + config.db_path +
          " loaded: " + std::to_string(h->snapshot_->devices().size()) +
          " devices, " + std::to_string(h->snapshot_->rule_count()) +
          " acl rules, generation " +
          std::to_string(h->snapshot_->generation()));
  h->MaintainSlow();
  return h;
}

void Homepot::Shutdown() {
  if (!worker_) return;
  // No snapshot: Create failed (bad registry file); nothing to publish.
  if (snapshot_) PublishStats();  // hands the last device deltas to the worker
  worker_->Shutdown();
}

void Homepot::KickPendingSlow(const ClientInfo* current) {
  std::vector<std::string> keep;       // devices with a session to wait for
  std::vector<std::string> usernames;  // devices without tracked sessions
  std::vector<std::string> client_ids;
  auto is_current = [current](const void* handle, const Session& s) {
    return current != nullptr &&
           (handle == current->handle || (current->client_id != nullptr &&
                                          s.client_id == current->client_id));
  };
  // Bounded work per event: the rest waits for the next one.
  size_t budget = kKicksPerEvent;
  size_t name_budget = kUsernameKicksPerEvent;
  size_t i = 0;
  for (; i < pending_kicks_.size() && budget > 0; ++i, --budget) {
    std::string& id = pending_kicks_[i];
    auto dev = devices_.find(id);
    if (dev == devices_.end() || dev->second.sessions.empty()) {
      // No session logged in through us: a TLS identity that has not acted
      // yet can only be ended by name (each name kick walks every socket).
      if ((current != nullptr && current->username != nullptr &&
           id == current->username) ||
          name_budget == 0) {
        keep.push_back(std::move(id));
      } else {
        --name_budget;
        kick_queued_.erase(id);
        usernames.push_back(std::move(id));
      }
      continue;
    }
    const std::vector<const void*>& sessions = dev->second.sessions;
    bool wait = false;
    for (const void* handle : sessions) {
      const Session& s = clients_.at(handle);
      if (!s.revoked() || s.maybe_offline) continue;
      if (is_current(handle, s)) {
        wait = true;
        continue;
      }
      // A session of the device that logged in since the revocation with the
      // same client id replaces this one (Mosquitto's takeover ends it):
      // kicking that id would end the new session instead.
      bool replaced =
          std::any_of(sessions.begin(), sessions.end(), [&](const void* other) {
            const Session& o = clients_.at(other);
            return !o.revoked() && o.client_id == s.client_id;
          });
      if (!replaced) client_ids.push_back(s.client_id);
    }
    if (wait) {
      keep.push_back(std::move(id));
      continue;
    }
    kick_queued_.erase(id);
  }
  for (; i < pending_kicks_.size(); ++i) {
    keep.push_back(std::move(pending_kicks_[i]));
  }
  pending_kicks_.swap(keep);
  // Kicks run DISCONNECT events (which drop sessions) at once: only now.
  for (const std::string& u : usernames) broker_->KickUsername(u);
  for (const std::string& c : client_ids) broker_->KickClientId(c);
}

void Homepot::Revoke(const std::string& id) {
  revoked_queued_.erase(id);
  auth_.Forget(id);
  bool tracked = false;
  if (auto dev = devices_.find(id); dev != devices_.end()) {
    DeviceState& d = dev->second;
    ++d.revocations;  // its current sessions are now revoked()
    const Device* now = snapshot_->Find(id);
    // Removed: its statistics start from zero if the id comes back.
    if (now == nullptr) d.counters = DeviceCounters{};
    if (now == nullptr || !now->enabled) ReleaseClaims(&*dev);
    tracked = !d.sessions.empty();
  }
  // Untracked sessions can only be TLS identities that have not acted yet:
  // none to look for unless such sessions exist here at all.
  if ((tracked || untracked_sessions_) && !kick_queued_.count(id)) {
    kick_queued_.insert(id);
    pending_kicks_.push_back(id);
  }
}

void Homepot::RevokeQueued() {
  size_t n = std::min(revoked_queue_.size(), kRevocationsPerEvent);
  for (size_t i = 0; i < n; ++i) {
    std::string id = std::move(revoked_queue_.front());
    revoked_queue_.pop_front();
    if (revoked_queued_.count(id) != 0) Revoke(id);
  }
}

void Homepot::MaintainSlow() {
  std::vector<std::string> logs;
  if (worker_->HasLogs() && worker_->TakeLogs(&logs)) {
    for (const auto& line : logs) broker_->Log(LogLevel::kWarning, line);
  }
  RegistryUpdate update;
  std::shared_ptr<const Snapshot> retired = snapshot_;
  if (worker_->HasUpdate() && worker_->TakeUpdate(&update, &retired)) {
    auto start = std::chrono::steady_clock::now();
    snapshot_ = std::move(update.snapshot);
    ++swaps_;
    loaded_at_ms_ = clock_->WallMs();
    // Applied a batch per event (a mass revocation must not stall the
    // broker); a device logging in meanwhile is revoked first (OnBasicAuth).
    for (std::string& id : update.revoked) {
      if (revoked_queued_.insert(id).second) {
        revoked_queue_.push_back(std::move(id));
      }
    }
    auto applied_us = std::chrono::duration_cast<std::chrono::microseconds>(
                          std::chrono::steady_clock::now() - start)
                          .count();
    broker_->Log(LogLevel::kNotice,
                 "registry reloaded: generation " +
                     std::to_string(snapshot_->generation()) + ", " +
                     std::to_string(snapshot_->devices().size()) +
                     " devices, " + std::to_string(snapshot_->rule_count()) +
                     " acl rules, " + std::to_string(update.revoked.size()) +
                     " revoked, built in " + std::to_string(update.load_ms) +
                     " ms off the broker thread, applied in " +
                     std::to_string(applied_us) + " us");
  }
  RevokeQueued();
}

Homepot::Session* Homepot::Resolve(const ClientInfo& client, Session* st) {
  if (st->generation_ == swaps_) return st;  // done for this snapshot
  st->generation_ = swaps_;
  // A device session keeps the identity it logged in with; a deferred one
  // is never judged as a device (its password was not checked here);
  // identity sessions and scratch states use the broker's username.
  std::string_view name;
  switch (st->kind) {
    case Session::Kind::kDevice:
      name = st->device->first;
      break;
    case Session::Kind::kDeferred:
      break;
    case Session::Kind::kIdentity:
    case Session::Kind::kScratch:
      if (client.username != nullptr) name = client.username;
      break;
  }
  st->record_ = name.empty() ? nullptr : snapshot_->Find(name);
  if (st->record_ != nullptr && st->device == nullptr) {
    DeviceEntry* dev = &*devices_.try_emplace(st->record_->id).first;
    if (st->kind == Session::Kind::kIdentity) {
      Bind(st, client.handle, dev);
    } else {
      st->device = dev;  // scratch: for the counters of this event
    }
  }
  st->client_id_usable_ =
      st->record_ != nullptr && client.client_id != nullptr &&
      ClientIdMayExpand(*snapshot_, *st->record_, client.client_id);
  return st;
}

void Homepot::Bind(Session* st, const void* handle, DeviceEntry* dev) {
  st->device = dev;
  st->revocations = dev->second.revocations;
  dev->second.sessions.push_back(handle);
}

Homepot::Session* Homepot::LiveSession(const ClientInfo& client,
                                       bool* retain_check) {
  *retain_check = false;
  if (Session* st = FindClient(client.handle)) return st;
  if (client.handle == nullptr) return nullptr;
  switch (broker_->Classify(client.handle)) {
    case Broker::Untracked::kTlsSession:
      break;
    case Broker::Untracked::kClosed:
      return nullptr;
    case Broker::Untracked::kRetainCheck:
      *retain_check = true;
      return nullptr;
  }
  untracked_sessions_ = true;
  return &NewSession(client, Session::Kind::kIdentity);  // bound by Resolve
}

Homepot::Session& Homepot::NewSession(const ClientInfo& client,
                                      Session::Kind kind) {
  Session& st = clients_[client.handle];
  st.kind = kind;
  st.client_id = client.client_id != nullptr ? client.client_id : "";
  st.routing_epoch = routing_epoch_;
  by_client_id_[st.client_id] = client.handle;  // the newest holds the id
  return st;
}

Homepot::Session* Homepot::HolderOf(const std::string& client_id,
                                    const void* handle) {
  auto it = by_client_id_.find(client_id);
  if (it == by_client_id_.end() || it->second == handle) return nullptr;
  return &clients_.at(it->second);
}

void Homepot::DropSession(const void* handle) {
  auto it = clients_.find(handle);
  if (it == clients_.end()) return;
  if (it->second.counted) --counters_.connected;
  if (auto id = by_client_id_.find(it->second.client_id);
      id != by_client_id_.end() && id->second == handle) {
    by_client_id_.erase(id);
  }
  if (DeviceEntry* dev = it->second.device) {
    auto& sessions = dev->second.sessions;
    sessions.erase(std::remove(sessions.begin(), sessions.end(), handle),
                   sessions.end());
  }
  if (Recent& r = recent_[RecentSlot(handle)]; r.handle == handle) {
    r = Recent{};
  }
  clients_.erase(it);
}

bool Homepot::ClaimClientId(const ClientInfo& client, const Device& record,
                            DeviceEntry* dev) {
  const std::string_view id = client.client_id;
  const Device* other = snapshot_->Find(id);
  if (other != nullptr && other != &record) {
    LogRefusal("refused device '" + record.id + "': client id '" +
               std::string(id) +
               "' is the id of another device (use the device's own "
               "id or an unused one)");
    return false;
  }
  auto& ids = dev->second.client_ids;
  auto held = claims_.find(std::string(id));
  if (held != claims_.end()) {
    if (held->second != dev) {
      LogRefusal("refused device '" + record.id + "': client id '" +
                 std::string(id) + "' is held by device '" +
                 held->second->first + "'");
      return false;
    }
    // Most recent last.
    auto pos = std::find(ids.begin(), ids.end(), id);
    if (pos != ids.end()) std::rotate(pos, pos + 1, ids.end());
    return true;
  }
  if (ids.size() >= kMaxClaimsPerDevice) {
    // Release the oldest id no live session of this device uses.
    auto unused = std::find_if(ids.begin(), ids.end(), [&](const auto& c) {
      return std::none_of(
          dev->second.sessions.begin(), dev->second.sessions.end(),
          [&](const void* h) { return clients_.at(h).client_id == c; });
    });
    if (unused == ids.end()) {
      LogRefusal("refused device '" + record.id + "': it already has " +
                 std::to_string(kMaxClaimsPerDevice) +
                 " sessions with other client ids");
      return false;
    }
    claims_.erase(*unused);
    ids.erase(unused);
  }
  claims_.emplace(std::string(id), dev);
  ids.emplace_back(id);
  return true;
}

void Homepot::LogRefusal(const std::string& line) {
  // Refusals come from authenticated devices, which can retry cheaply.
  constexpr int kPerMinute = 20;
  if (refusals_logged_ < kPerMinute) {
    broker_->Log(LogLevel::kNotice, line);
  } else if (refusals_logged_ == kPerMinute) {
    broker_->Log(LogLevel::kNotice,
                 "more client id refusals this minute are not logged");
  }
  ++refusals_logged_;
}

void Homepot::ReleaseClaims(DeviceEntry* dev) {
  for (const std::string& id : dev->second.client_ids) claims_.erase(id);
  dev->second.client_ids.clear();
}

DeviceCounters* Homepot::Touch(DeviceEntry* d) {
  if (d == nullptr) return nullptr;
  if (!d->second.counters.dirty) {
    d->second.counters.dirty = true;
    dirty_.push_back(d);
  }
  return &d->second.counters;
}

Verdict Homepot::Recheck(Session* st, const ClientInfo& client,
                         const char* username, const char* password) {
  if (st->kind != Session::Kind::kDevice) return Verdict::kDefer;
  if (username == nullptr || st->device->first != username) {
    return Verdict::kDeny;
  }
  const Device* record = Resolve(client, st)->record(swaps_);
  return record != nullptr && !st->revoked() &&
                 auth_.Recheck(*snapshot_, username, password ? password : "",
                               clock_->MonotonicMs())
             ? Verdict::kAllow
             : Verdict::kDeny;
}

Verdict Homepot::RecheckUntracked(const ClientInfo& client,
                                  const char* username, const char* password) {
  // Most likely an offline session (it authenticates again when it
  // reconnects). Whatever it is, it gets in only with a valid password and
  // a client id it may use, and nothing is created, counted or locked out.
  const Device* record = username != nullptr && IsValidDeviceId(username)
                             ? snapshot_->Find(username)
                             : nullptr;
  if (record == nullptr) {
    return config_.defer_unknown ? Verdict::kDefer : Verdict::kDeny;
  }
  const std::string id = client.client_id != nullptr ? client.client_id : "";
  const Device* named = snapshot_->Find(id);
  auto claim = claims_.find(id);
  Session* holder = HolderOf(id, client.handle);
  if ((named != nullptr && named != record) ||
      (claim != claims_.end() && claim->second->first != record->id) ||
      (holder != nullptr &&
       (holder->device == nullptr || holder->device->first != record->id))) {
    return Verdict::kDeny;
  }
  return auth_.Recheck(*snapshot_, username, password ? password : "",
                       clock_->MonotonicMs())
             ? Verdict::kAllow
             : Verdict::kDeny;
}

Verdict Homepot::OnBasicAuth(const ClientInfo& client, const char* username,
                             const char* password) {
  Maintain();
  if (rechecking_ && !ticking_ && clock_->MonotonicMs() > recheck_until_ms_) {
    // Without TICK a pause ends the pass (it runs back to back).
    rechecking_ = false;
  }
  if (rechecking_) {
    // With TICK the pass ends exactly at the next TICK; without, the window
    // is kept open only by the re-checks of sessions we track. Either way a
    // re-check verifies the password and changes nothing.
    if (Session* st = FindClient(client.handle)) {
      recheck_until_ms_ = clock_->MonotonicMs() + kRecheckGapMs;
      return Recheck(st, client, username, password);
    }
    // With TICK the pass is exact: an untracked handle is an offline
    // session, unless a tracked session holds its client id (Mosquitto
    // re-checks contexts with distinct ids), which makes it a login. Without
    // TICK it is handled as a login that may be an offline session (below).
    if (ticking_ &&
        HolderOf(client.client_id != nullptr ? client.client_id : "",
                 client.handle) == nullptr) {
      return RecheckUntracked(client, username, password);
    }
  }
  // Without TICK a login inside the re-check window may be an offline
  // session being re-checked: its failures are not recorded, and its session
  // is never kicked by client id until it acts (kicking an offline context
  // that way breaks Mosquitto 2.0.11).
  const bool maybe_offline = rechecking_;
  KickPending(&client);
  DropSession(client.handle);  // a handle reused after a session ended
  // Fail closed: no anonymous devices, nothing that could widen %u/%c or
  // reach $-topics, nothing longer than the limits (all public rules, so
  // refusing them unhashed tells nothing).
  const char* id = client.client_id != nullptr ? client.client_id : "";
  if (username == nullptr || username[0] == '\0' ||
      HasTopicWildcards(username) || ClientIdFormatProblem(id) != nullptr) {
    ++counters_.auth_failure;
    return Verdict::kDeny;
  }
  int64_t now = clock_->MonotonicMs();
  if (now - last_sweep_ms_ > 60000) {
    auth_.Sweep(now);
    last_sweep_ms_ = now;
    throttle_logged_ = false;
    refusals_logged_ = 0;
  }
  AuthResult r =
      auth_.Authenticate(*snapshot_, username, password ? password : "", now,
                         /*record_failure=*/!maybe_offline);
  const std::string client_id(id);
  Session* holder = HolderOf(client_id, client.handle);
  switch (r) {
    case AuthResult::kAllow: {
      const Device* record = snapshot_->Find(username);
      // A revocation of this device not applied yet goes first, so that it
      // cannot hit the session being created.
      if (revoked_queued_.count(record->id) != 0) Revoke(record->id);
      DeviceEntry* dev = &*devices_.try_emplace(record->id).first;
      if (holder != nullptr && holder->device != dev) {
        LogRefusal("refused device '" + record->id + "': client id '" +
                   client_id + "' is in use by another client");
        auth_.NoteRefusal(username, now);
        ++counters_.auth_failure;
        return Verdict::kDeny;
      }
      if (!ClaimClientId(client, *record, dev)) {
        auth_.NoteRefusal(username, now);
        ++counters_.auth_failure;
        return Verdict::kDeny;
      }
      ++counters_.auth_success;
      ++counters_.connection_count;
      // Its older session with this id is about to be taken over by
      // Mosquitto: its will, checked next, is sent as a will.
      if (holder != nullptr) holder->taken_over_at = routing_epoch_;
      Session& st = NewSession(client, Session::Kind::kDevice);
      Bind(&st, client.handle, dev);
      st.maybe_offline = maybe_offline;
      st.counted = true;
      ++counters_.connected;
      if (DeviceCounters* d = Touch(dev)) d->last_connect_ms = clock_->WallMs();
      return Verdict::kAllow;
    }
    case AuthResult::kDefer: {
      // Not a device: another mechanism decides, but it may not take a
      // client id that belongs to a device.
      if (claims_.count(client_id) != 0 ||
          snapshot_->Find(client_id) != nullptr ||
          (holder != nullptr && holder->device != nullptr)) {
        ++counters_.auth_failure;
        return Verdict::kDeny;
      }
      if (holder != nullptr) holder->taken_over_at = routing_epoch_;
      NewSession(client, Session::Kind::kDeferred);
      return Verdict::kDefer;
    }
    case AuthResult::kLockedOut:
      ++counters_.auth_locked_out;
      return Verdict::kDeny;
    case AuthResult::kThrottled:
      ++counters_.auth_failure;
      if (!throttle_logged_) {
        broker_->Log(LogLevel::kWarning,
                     "login flood: password hashing budget spent, refusing "
                     "logins that need a full hash (known secrets still "
                     "accepted)");
        throttle_logged_ = true;
      }
      return Verdict::kDeny;
    case AuthResult::kDeny:
      ++counters_.auth_failure;
      return Verdict::kDeny;
  }
  return Verdict::kDeny;
}

bool Homepot::IsNotificationTopic(std::string_view topic) {
  if (topic == last_topic_) return last_topic_is_notification_;
  bool match = notification_filters_.MatchesAny(topic);
  if (topic.size() <= 256) {  // keeps the memo allocation-free once warm
    last_topic_.assign(topic);
    last_topic_is_notification_ = match;
  }
  return match;
}

void Homepot::Refuse(const ClientInfo& client, Session* st,
                     std::string_view topic, std::string_view reason,
                     const std::string& detail) {
  ++counters_.total_failed;
  if (DeviceCounters* d = Touch(st != nullptr ? st->device : nullptr)) {
    ++d->rejected;
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

const NotificationCheck& Homepot::CheckNotification(const ClientInfo& client,
                                                    Session* st,
                                                    std::string_view topic,
                                                    std::string_view payload,
                                                    int qos, bool may_repeat) {
  receipt_ms_ = clock_->WallMs();
  uint32_t limit = config_.max_payload;
  // Only a payload above the smallest type limit can exceed its target's.
  if (payload.size() > snapshot_->min_type_max_payload()) {
    if (const Device* target = snapshot_->FindByToken(topic)) {
      limit = std::min(limit, target->max_payload);
    }
  }
  const NotificationCheck& check = validator_.Check(
      payload, limit, TopicDepth(topic), config_.max_topic_depth);
  checked_payload_ = payload.data();
  checked_client_ = client.handle;
  checked_len_ = static_cast<uint32_t>(payload.size());
  checked_ok_ = check.reject == Reject::kNone;
  if (check.reject != Reject::kNone) {
    ++counters_.total_sent;
    counters_.last_sent_ms = receipt_ms_;
    ++counters_.rejected[static_cast<size_t>(check.reject) - 1];
    Refuse(client, st, topic, RejectName(check.reject), check.detail);
    return check;
  }
  // A QoS 2 retransmission (DUP before PUBREL) gets the stamp the first copy
  // got, so Mosquitto sees identical bytes and routes it once; it is not
  // counted again either.
  if (may_repeat && qos == 2 && IsQos2Retransmission(client, topic, payload)) {
    return check;
  }
  // Counted here rather than in OnMessage: wills get this check but no
  // MESSAGE event, and are routed all the same.
  ++counters_.total_sent;
  counters_.last_sent_ms = receipt_ms_;
  ++counters_.total_success;
  ++counters_.qos[std::clamp(qos, 0, 2)];
  if (check.priority != Priority::kNone) {
    ++counters_.priority[static_cast<size_t>(check.priority) - 1];
  }
  if (DeviceCounters* d = Touch(st != nullptr ? st->device : nullptr)) {
    ++d->published;
    d->last_publish_ms = receipt_ms_;
  }
  return check;
}

bool Homepot::IsQos2Retransmission(const ClientInfo& client,
                                   std::string_view topic,
                                   std::string_view payload) {
  std::hash<std::string_view> h;
  uint64_t key = h(client.client_id ? client.client_id : "") * 31 + h(topic);
  key = key * 1099511628211ull ^ h(payload);
  int64_t mono = clock_->MonotonicMs();
  if (mono - last_qos2_sweep_ms_ > 10000 ||
      qos2_stamps_.size() >= kMaxQos2Stamps) {
    for (auto it = qos2_stamps_.begin(); it != qos2_stamps_.end();) {
      it = mono - it->second.seen_ms > kQos2StampTtlMs ? qos2_stamps_.erase(it)
                                                       : std::next(it);
    }
    if (qos2_stamps_.size() >= kMaxQos2Stamps) qos2_stamps_.clear();
    last_qos2_sweep_ms_ = mono;
  }
  auto [it, inserted] =
      qos2_stamps_.try_emplace(key, Qos2Stamp{receipt_ms_, mono});
  bool repeat = !inserted && mono - it->second.seen_ms <= kQos2StampTtlMs;
  if (repeat) {
    receipt_ms_ = it->second.stamp_ms;
  } else {
    it->second.stamp_ms = receipt_ms_;
  }
  it->second.seen_ms = mono;
  return repeat;
}

Verdict Homepot::OnAclCheck(const ClientInfo& client, std::string_view topic,
                            int access, const void* payload,
                            uint32_t payloadlen, int qos, bool retain) {
  Maintain();
  rechecking_ = false;
  Access what = static_cast<Access>(access);
  // nullptr: the connection is gone (a will, or an offline session's queue).
  bool retain_check = false;
  Session* live = LiveSession(client, &retain_check);
  if (retain_check) {
    // check_retain_source: only the source's write permission is asked.
    Session scratch;
    const Device* source = Resolve(client, &scratch)->record(swaps_);
    return AclAllows(*snapshot_, source, "", topic, what) ? Verdict::kAllow
                                                          : Verdict::kDeny;
  }
  // Mosquitto checks a will (write) when it is about to send it, after the
  // session's DISCONNECT event or while a newer session takes its client id.
  const bool will = what == Access::kWrite &&
                    (live == nullptr || live->taken_over_at == routing_epoch_);
  if (what != Access::kRead && !will) {
    if (live != nullptr) live->maybe_offline = false;  // it acts: connected
    ++routing_epoch_;
    // Kicks only from the client's own packet: a read check runs while
    // another client's message is being routed (kicking that publisher
    // would free what Mosquitto is still using), a will check while a
    // session is being torn down.
    KickPending(&client);
  }
  if (what == Access::kWrite) checked_payload_ = nullptr;
  // A revoked session acting before it could be kicked: Mosquitto ends it
  // itself when a write or subscribe check fails with an error.
  if (what != Access::kRead && !will && live != nullptr && live->revoked()) {
    return Verdict::kDisconnect;
  }
  Session scratch;
  Session* st = nullptr;
  if (live != nullptr) {
    st = Resolve(client, live);
  } else if (client.username != nullptr) {
    st = Resolve(client, &scratch);
  }
  const Device* device = st != nullptr ? st->record(swaps_) : nullptr;
  const bool notification = what == Access::kWrite &&
                            IsNotificationTopic(topic) &&
                            !(retain && payloadlen == 0);
  std::string_view body(static_cast<const char*>(payload),
                        payload ? payloadlen : 0);
  if (st != nullptr && device == nullptr && config_.defer_unknown) {
    // Not ours to judge, except what the plugin guarantees to everyone:
    // $SYS/homepot/ stays private and notifications are validated. A will
    // cannot be stamped without publishing it ourselves, which would bypass
    // the other mechanism's decision: refused.
    if (topic.substr(0, kReservedPrefix.size()) == kReservedPrefix) {
      return Verdict::kDeny;
    }
    if (notification) {
      if (will) return Verdict::kDeny;
      if (CheckNotification(client, st, topic, body, qos).reject !=
          Reject::kNone) {
        return Verdict::kDeny;
      }
    }
    return Verdict::kDefer;
  }
  std::string_view client_id =
      st != nullptr && st->client_id_usable() ? client.client_id : "";
  bool allowed = AclAllows(*snapshot_, device, client_id, topic, what);
  switch (what) {
    case Access::kRead:
      if (!allowed) {
        ++counters_.acl_deliver_denied;
      } else if (payloadlen > 0 && IsNotificationTopic(topic)) {
        // (an empty payload is a retained clear, not a notification)
        // Counted: copies for a connected session, except the replay of its
        // offline queue at login (counted when queued), and copies kept for
        // an offline session (QoS 0 ones are dropped by Mosquitto).
        const bool replay =
            live != nullptr && live->routing_epoch == routing_epoch_;
        if (!replay && (live != nullptr || qos > 0)) {
          ++counters_.deliveries;
          if (DeviceCounters* d = Touch(st != nullptr ? st->device : nullptr)) {
            ++d->delivered;
            // Within one TICK (0.1 s) without a clock read per delivery.
            d->last_delivery_ms = ticking_
                                      ? std::max(tick_wall_ms_, receipt_ms_)
                                      : clock_->CoarseWallMs();
          }
        }
      }
      break;
    case Access::kSubscribe:
      if (!allowed) ++counters_.acl_subscribe_denied;
      break;
    case Access::kWrite: {
      if (!allowed) {
        ++counters_.acl_publish_denied;
        if (notification) {
          ++counters_.total_sent;
          receipt_ms_ = clock_->WallMs();
          counters_.last_sent_ms = receipt_ms_;
          Refuse(client, st, topic, "not_authorized",
                 "no write permission on this topic");
        }
        break;
      }
      if (notification) {
        if (will && client.handle == revoked_closing_) return Verdict::kDeny;
        if (will) return PublishWill(client, st, topic, body, qos, retain);
        if (CheckNotification(client, st, topic, body, qos).reject !=
            Reject::kNone) {
          return Verdict::kDeny;
        }
      }
      break;
    }
    case Access::kUnsubscribe:
      break;
  }
  return allowed ? Verdict::kAllow : Verdict::kDeny;
}

Verdict Homepot::PublishWill(const ClientInfo& client, Session* st,
                             std::string_view topic, std::string_view payload,
                             int qos, bool retain) {
  // Wills get no MESSAGE event and their payload cannot be replaced, so the
  // stamped copy is published by the plugin and the original refused. (Its
  // MQTT v5 properties are not carried over.)
  const NotificationCheck& check =
      CheckNotification(client, st, topic, payload, qos, /*may_repeat=*/false);
  if (check.reject != Reject::kNone) return Verdict::kDeny;
  char stamp[kStampLen];
  FormatStamp(receipt_ms_, stamp);
  std::string out(injector_.InjectedSize(check, payload.size()), '\0');
  injector_.Inject(check, payload, stamp, out.data());
  broker_->Publish(std::string(topic), out, qos, retain);
  return Verdict::kDeny;
}

Verdict Homepot::OnMessage(const ClientInfo& client, Message* m) {
  Maintain();
  rechecking_ = false;
  KickPending(&client);
  ++routing_epoch_;
  Session* live = FindClient(client.handle);
  if (live != nullptr) live->maybe_offline = false;
  if (live != nullptr && live->revoked()) return Verdict::kDisconnect;
  std::string_view topic = m->topic ? m->topic : "";
  if (!IsNotificationTopic(topic) || (m->retain && m->payloadlen == 0)) {
    return Verdict::kAllow;
  }
  std::string_view payload(static_cast<const char*>(m->payload),
                           m->payload ? m->payloadlen : 0);
  // The ACL check validated this very buffer just before (same pointer).
  bool reuse = checked_payload_ == payload.data() &&
               checked_client_ == client.handle &&
               checked_len_ == payload.size() && checked_ok_;
  checked_payload_ = nullptr;
  const NotificationCheck* check = nullptr;
  Session scratch;
  Session* st = nullptr;
  if (reuse) {
    check = &validator_.last();
  } else {
    if (live != nullptr) {
      st = Resolve(client, live);
    } else if (client.username != nullptr) {
      st = Resolve(client, &scratch);
    }
    check = &CheckNotification(client, st, topic, payload, m->qos);
    if (check->reject != Reject::kNone) return Verdict::kDeny;
  }
  char stamp[kStampLen];
  FormatStamp(receipt_ms_, stamp);
  size_t size = injector_.InjectedSize(*check, payload.size());
  char* out = static_cast<char*>(broker_->Alloc(size + 1));
  if (out == nullptr) {
    // Out of memory: refusing is safer than routing an unstamped copy.
    if (counters_.total_success > 0) --counters_.total_success;
    ++counters_.rejected[static_cast<size_t>(Reject::kTooLarge) - 1];
    Refuse(client, st, topic, "too_large", "broker out of memory");
    return Verdict::kDeny;
  }
  injector_.Inject(*check, payload, stamp, out);
  out[size] = '\0';
  m->payload = out;
  m->payloadlen = static_cast<uint32_t>(size);
  return Verdict::kAllow;
}

void Homepot::PublishStats() {
  int64_t now = clock_->MonotonicMs();
  next_stats_ms_ = now + stats_interval_ms_;
  if (stats_interval_ms_ > 0) {
    RegistryInfo info;
    info.devices = snapshot_->devices().size();
    info.acl_rules = snapshot_->rule_count();
    info.generation = snapshot_->generation();
    info.loaded_at_ms = loaded_at_ms_;
    worker_->LastError(&info.last_error);
    broker_->Publish(config_.stats_topic,
                     RenderStats(counters_, info, (now - started_ms_) / 1000,
                                 clock_->WallMs()),
                     0, true);
  }
  if (dirty_.empty()) return;
  std::vector<DeviceStatsDelta> batch;
  std::vector<DeviceEntry*> entries;
  batch.reserve(dirty_.size());
  entries.reserve(dirty_.size());
  for (DeviceEntry* d : dirty_) {
    DeviceCounters& c = d->second.counters;
    if (!c.dirty) continue;  // reset since (device removed), or listed twice
    c.dirty = false;
    batch.push_back({d->first, c});
    entries.push_back(d);
  }
  if (!worker_->SubmitStats(&batch)) {  // busy: try next time
    for (DeviceEntry* d : entries) d->second.counters.dirty = true;
    dirty_.swap(entries);
    return;
  }
  for (DeviceEntry* d : entries) d->second.counters = DeviceCounters{};
  dirty_.clear();
}

void Homepot::OnTick() {
  ticking_ = true;
  tick_wall_ms_ = clock_->CoarseWallMs();
  ++routing_epoch_;
  rechecking_ = false;
  Maintain();
  PublishStatsIfDue();
  KickPending(nullptr);
}

void Homepot::OnReload() {
  worker_->RequestReload();
  Maintain();
  rechecking_ = true;
  recheck_until_ms_ = clock_->MonotonicMs() + kRecheckGapMs;
}

void Homepot::OnDisconnect(const ClientInfo& client, bool may_persist) {
  Maintain();
  Session* st = FindClient(client.handle);
  revoked_closing_ = st != nullptr && st->revoked() ? client.handle : nullptr;
  if (st == nullptr) return;
  // A clean session ends with its connection: its client id is free again
  // (unless another session of the device holds it).
  if (DeviceEntry* dev = st->device; dev != nullptr && !may_persist) {
    auto& ids = dev->second.client_ids;
    bool shared =
        std::any_of(dev->second.sessions.begin(), dev->second.sessions.end(),
                    [&](const void* h) {
                      return h != client.handle &&
                             clients_.at(h).client_id == st->client_id;
                    });
    auto pos = std::find(ids.begin(), ids.end(), st->client_id);
    if (!shared && pos != ids.end()) {
      claims_.erase(*pos);
      ids.erase(pos);
    }
  }
  DropSession(client.handle);
}

}  // namespace homepot
