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

void Homepot::KickPendingSlow(const char* current) {
  // Kicks every queued name but `self`, which stays queued.
  auto kick_all_but = [](std::vector<std::string>* queue, const char* self,
                         auto kick) {
    std::vector<std::string> keep;
    for (std::string& name : *queue) {
      if (self != nullptr && name == self) {
        keep.push_back(std::move(name));
      } else {
        kick(name);
      }
    }
    queue->swap(keep);
  };
  kick_all_but(&pending_kicks_, current,
               [this](const std::string& u) { broker_->KickUsername(u); });
  const ClientState* st = FindClient(current_handle_);
  kick_all_but(&pending_id_kicks_, st ? st->client_id.c_str() : nullptr,
               [this](const std::string& id) { broker_->KickClientId(id); });
}

bool Homepot::IsPendingKick(const char* username) const {
  return username != nullptr && !pending_kicks_.empty() &&
         std::find(pending_kicks_.begin(), pending_kicks_.end(),
                   std::string_view(username)) != pending_kicks_.end();
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
    for (const std::string& id : update.revoked) {
      auth_.Forget(id);
      pending_kicks_.push_back(id);
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
}

Homepot::ClientState* Homepot::StateFor(const ClientInfo& client,
                                        ClientState* scratch) {
  // Sessions get an entry when they log in (OnBasicAuth); others (TLS
  // identities, and will checks that run after the DISCONNECT event) are
  // resolved into `scratch` so that no entry outlives its session.
  ClientState* st = FindClient(client.handle);
  if (st == nullptr) st = scratch;
  if (st->generation == swaps_ && st->record != nullptr &&
      client.username != nullptr &&
      std::strcmp(st->record->id.c_str(), client.username) == 0) {
    // Fast path: resolved against this snapshot, same user. (The name is
    // compared, not the broker's pointer: another plugin renaming a client
    // twice could hand a new name the old name's address.)
    return st;
  }
  st->generation = swaps_;
  st->record = client.username ? snapshot_->Find(client.username) : nullptr;
  if (st->record == nullptr) {
    st->device = nullptr;
  } else if (st->device == nullptr || st->device->first != st->record->id) {
    st->device = &*device_counters_.try_emplace(st->record->id).first;
  }
  return st;
}

DeviceCounters* Homepot::Touch(DeviceEntry* d) {
  if (d == nullptr) return nullptr;
  if (!d->second.dirty) {
    d->second.dirty = true;
    dirty_.push_back(d);
  }
  return &d->second;
}

Verdict Homepot::OnBasicAuth(const ClientInfo& client, const char* username,
                             const char* password) {
  Maintain();
  current_handle_ = client.handle;
  KickPending(username);
  // Fail closed: no anonymous devices, and nothing that could widen %u/%c.
  if (username == nullptr || username[0] == '\0' ||
      HasTopicWildcards(username) || HasTopicWildcards(client.client_id)) {
    ++counters_.auth_failure;
    return Verdict::kDeny;
  }
  int64_t now = clock_->MonotonicMs();
  if (now - last_sweep_ms_ > 60000) {
    auth_.Sweep(now);
    last_sweep_ms_ = now;
    throttle_logged_ = false;
  }
  AuthResult r =
      auth_.Authenticate(*snapshot_, username, password ? password : "", now);
  switch (r) {
    case AuthResult::kAllow: {
      ++counters_.auth_success;
      ++counters_.connection_count;
      ClientInfo who = client;
      who.username = username;  // the broker sets it after this event
      ClientState& st = *StateFor(who, &clients_[client.handle]);
      st.client_id = client.client_id ? client.client_id : "";
      // Old sessions of this device still to be ended (e.g. its password
      // changed): end them by client id, never this new one.
      auto pending = std::find(pending_kicks_.begin(), pending_kicks_.end(),
                               std::string_view(username));
      if (pending != pending_kicks_.end()) {
        pending_kicks_.erase(pending);
        for (const auto& [handle, other] : clients_) {
          if (handle != client.handle && other.record != nullptr &&
              other.record->id == username && !other.client_id.empty()) {
            pending_id_kicks_.push_back(other.client_id);
          }
        }
      }
      if (!st.counted) {
        st.counted = true;
        ++counters_.connected;
      }
      if (DeviceCounters* d = Touch(st.device)) {
        d->last_connect_ms = clock_->WallMs();
      }
      return Verdict::kAllow;
    }
    case AuthResult::kDefer:
      return Verdict::kDefer;
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

void Homepot::Refuse(const ClientInfo& client, std::string_view topic,
                     std::string_view reason, const std::string& detail) {
  ++counters_.total_failed;
  ClientState scratch;
  if (DeviceCounters* d = Touch(StateFor(client, &scratch)->device)) {
    ++d->rejected;
  }
  if (client.username == nullptr) return;
  nlohmann::ordered_json notice = {
      {"topic", topic},
      {"reason", reason},
      {"detail", detail},
      {"timestamp", StampString(clock_->WallMs())}};
  broker_->Publish(
      std::string(kRejectionsPrefix) + client.username,
      notice.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace), 0,
      false);
}

const NotificationCheck& Homepot::CheckNotification(const ClientInfo& client,
                                                    std::string_view topic,
                                                    std::string_view payload,
                                                    int qos) {
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
    Refuse(client, topic, RejectName(check.reject), check.detail);
    return check;
  }
  // A QoS 2 retransmission (DUP before PUBREL) gets the stamp the first copy
  // got, so Mosquitto sees identical bytes and routes it once; it is not
  // counted again either.
  if (qos == 2 && IsQos2Retransmission(client, topic, payload)) return check;
  // Counted here rather than in OnMessage: wills get this check but no
  // MESSAGE event, and are routed all the same.
  ++counters_.total_sent;
  counters_.last_sent_ms = receipt_ms_;
  ++counters_.total_success;
  ++counters_.qos[std::clamp(qos, 0, 2)];
  if (check.priority != Priority::kNone) {
    ++counters_.priority[static_cast<size_t>(check.priority) - 1];
  }
  ClientState scratch;
  if (DeviceCounters* d = Touch(StateFor(client, &scratch)->device)) {
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
  current_handle_ = client.handle;
  KickPending(client.username);
  Access what = static_cast<Access>(access);
  if (what == Access::kWrite) checked_payload_ = nullptr;
  // A revoked session acting before it could be kicked: Mosquitto ends it
  // itself when a write or subscribe check fails with an error.
  if (what != Access::kRead && IsPendingKick(client.username)) {
    return Verdict::kDisconnect;
  }
  ClientState scratch;
  ClientState* st = client.username ? StateFor(client, &scratch) : nullptr;
  const Device* device = st ? st->record : nullptr;
  if (st != nullptr && device == nullptr && config_.defer_unknown) {
    // Not ours to judge, except what the plugin guarantees to everyone:
    // $SYS/homepot/ stays private and notifications are validated.
    if (topic.substr(0, kReservedPrefix.size()) == kReservedPrefix) {
      return Verdict::kDeny;
    }
    if (what == Access::kWrite && IsNotificationTopic(topic) &&
        !(retain && payloadlen == 0)) {
      std::string_view body(static_cast<const char*>(payload),
                            payload ? payloadlen : 0);
      if (CheckNotification(client, topic, body, qos).reject != Reject::kNone) {
        return Verdict::kDeny;
      }
    }
    return Verdict::kDefer;
  }
  std::string_view client_id = client.client_id ? client.client_id : "";
  bool allowed = AclAllows(*snapshot_, device, client_id, topic, what);
  switch (what) {
    case Access::kRead:
      if (!allowed) {
        ++counters_.acl_deliver_denied;
      } else if (payloadlen > 0 && IsNotificationTopic(topic)) {
        // (an empty payload is a retained clear, not a notification)
        ++counters_.deliveries;
        if (DeviceCounters* d = Touch(st ? st->device : nullptr)) {
          ++d->delivered;
          // Within one TICK (0.1 s) without a clock read per delivery.
          d->last_delivery_ms = ticking_ ? std::max(tick_wall_ms_, receipt_ms_)
                                         : clock_->CoarseWallMs();
        }
      }
      break;
    case Access::kSubscribe:
      if (!allowed) ++counters_.acl_subscribe_denied;
      break;
    case Access::kWrite: {
      bool notification =
          IsNotificationTopic(topic) && !(retain && payloadlen == 0);
      if (!allowed) {
        ++counters_.acl_publish_denied;
        if (notification) {
          ++counters_.total_sent;
          receipt_ms_ = clock_->WallMs();
          counters_.last_sent_ms = receipt_ms_;
          Refuse(client, topic, "not_authorized",
                 "no write permission on this topic");
        }
        break;
      }
      if (notification) {
        std::string_view body(static_cast<const char*>(payload),
                              payload ? payloadlen : 0);
        if (CheckNotification(client, topic, body, qos).reject !=
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

Verdict Homepot::OnMessage(const ClientInfo& client, Message* m) {
  Maintain();
  current_handle_ = client.handle;
  KickPending(client.username);
  if (IsPendingKick(client.username)) return Verdict::kDisconnect;
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
  if (reuse) {
    check = &validator_.last();
  } else {
    check = &CheckNotification(client, topic, payload, m->qos);
    if (check->reject != Reject::kNone) return Verdict::kDeny;
  }
  char stamp[kStampLen];
  FormatStamp(receipt_ms_, stamp);
  size_t size = InjectedSize(*check, payload.size(), config_.timestamp_field);
  char* out = static_cast<char*>(broker_->Alloc(size + 1));
  if (out == nullptr) {
    // Out of memory: refusing is safer than routing an unstamped copy.
    if (counters_.total_success > 0) --counters_.total_success;
    ++counters_.rejected[static_cast<size_t>(Reject::kTooLarge) - 1];
    Refuse(client, topic, "too_large", "broker out of memory");
    return Verdict::kDeny;
  }
  Inject(*check, payload, config_.timestamp_field, stamp, out);
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
  batch.reserve(dirty_.size());
  for (DeviceEntry* d : dirty_) batch.push_back({d->first, d->second});
  if (!worker_->SubmitStats(&batch)) return;  // busy: try next time
  for (DeviceEntry* d : dirty_) d->second = DeviceCounters{};
  dirty_.clear();
}

void Homepot::OnTick() {
  ticking_ = true;
  tick_wall_ms_ = clock_->CoarseWallMs();
  Maintain();
  PublishStatsIfDue();
  current_handle_ = nullptr;
  KickPending(nullptr);
}

void Homepot::OnReload() {
  worker_->RequestReload();
  Maintain();
}

void Homepot::OnDisconnect(const ClientInfo& client) {
  Maintain();
  auto it = clients_.find(client.handle);
  if (it == clients_.end()) return;
  if (it->second.counted) --counters_.connected;
  if (Recent& r = recent_[RecentSlot(client.handle)];
      r.handle == client.handle) {
    r = Recent{};
  }
  clients_.erase(it);
}

}  // namespace homepot
