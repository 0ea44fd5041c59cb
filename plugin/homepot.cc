#include "homepot.h"

#include <algorithm>
#include <cstring>

#include "acl.h"
#include "receipts.h"
#include "topic.h"

namespace homepot {
namespace {

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

Homepot::Homepot(const Config& config, Broker* broker, Clock* clock,
                 int64_t started_ms, std::unique_ptr<RegistrySource> source,
                 std::shared_ptr<const Snapshot> first)
    : config_(config),
      broker_(broker),
      clock_(clock),
      source_(std::move(source)),
      snapshot_(std::move(first)),
      loaded_at_ms_(clock->WallMs()),
      auth_(MakeAuthOptions(config), clock),
      log_on_(config.log_retention_rows > 0),
      intake_(config, broker, clock, &counters_, &device_stats_,
              log_on_ ? &log_ : nullptr),
      lifetimes_(config.timestamp_field, config.default_ttl_s, clock->WallMs(),
                 config.max_payload),
      ack_topic_(config.ack_topic),
      revocations_(&sessions_, &auth_, broker),
      stats_schedule_(int64_t{config.stats_interval_s} * 1000, started_ms) {}

Homepot::~Homepot() { Shutdown(); }

std::unique_ptr<Homepot> Homepot::Create(const Config& config, Broker* broker,
                                         Clock* clock,
                                         std::unique_ptr<RegistrySource> source,
                                         std::shared_ptr<const Snapshot> first,
                                         int64_t started_ms) {
  std::unique_ptr<Homepot> h(new Homepot(config, broker, clock, started_ms,
                                         std::move(source), std::move(first)));
  h->broker_->Log(
      LogLevel::kInfo,
      "registry " + RegistryName(config) +
          " loaded: " + std::to_string(h->snapshot_->device_count()) +
          " devices, " + std::to_string(h->snapshot_->rule_count()) +
          " acl rules, generation " +
          std::to_string(h->snapshot_->generation()));
  h->ApplyRegistryChanges();
  return h;
}

void Homepot::Shutdown() {
  if (!source_) return;
  tally_.FinishDue(kNoExpiry, [this](const Routing& r) { FinishRouting(r); });
  PublishStats();  // hands the last device deltas and log events over
  source_->Shutdown();
  // The hand-over fails while the registry thread holds a lock; once the
  // source has stopped, it cannot, and a second Shutdown writes what it got.
  if (device_stats_.pending() || log_.pending()) {
    device_stats_.Submit(source_.get());
    log_.Submit(source_.get());
    source_->Shutdown();
  }
}

void Homepot::DropSession(const void* handle) {
  Session* st = sessions_.Find(handle);
  if (st == nullptr) return;
  DeviceEntry* dev = st->device;
  if (st->reachable) --counters_.reachable;
  if (sessions_.Drop(handle)) {
    --counters_.connected;
    if (dev != nullptr) UpdatePresence(dev, {});
  }
}

void Homepot::UpdatePresence(DeviceEntry* dev, std::string_view client_id) {
  int64_t sessions = 0;
  int64_t subscribed = 0;
  for (const void* h : dev->second.sessions) {
    Session* s = sessions_.Find(h);
    if (s == nullptr || !s->counted) continue;
    ++sessions;
    if (client_id.empty() || s->client_id == client_id) {
      const bool reach = dev->second.presence.ReachesToken(s->client_id);
      if (reach != s->reachable) {
        counters_.reachable += reach ? 1 : -1;
        s->reachable = reach;
      }
    }
    if (s->reachable) ++subscribed;
  }
  DeviceCounters* d = device_stats_.CountersToFlush(dev);
  d->sessions = sessions;
  d->subscribed = subscribed;
  d->presence_changed = true;
}

void Homepot::TrackSubscription(Session* st, const Device& device,
                                std::string_view client_id,
                                std::string_view filter, bool subscribe) {
  DeviceEntry* dev = DeviceOf(st);
  if (dev == nullptr || client_id.empty()) return;
  Presence& presence = dev->second.presence;
  if (!subscribe) {
    presence.Unsubscribed(client_id, filter);
  } else {
    const std::string_view plain = StripSharePrefix(filter);
    const std::string token =
        device.token.empty() ? DefaultToken(device.id) : device.token;
    const std::string receipts = std::string(kReceiptsPrefix) + device.id;
    presence.Subscribed(client_id, filter, FilterMatches(plain, token),
                        FilterMatches(plain, receipts));
  }
  // All of the device's sessions: a new client id may have evicted the
  // oldest one's subscriptions.
  UpdatePresence(dev, {});
}

void Homepot::CountExpired(Session* st, const Lifetime& l) {
  ++counters_.expired;
  DeviceEntry* dev = DeviceOf(st);
  if (DeviceCounters* d = device_stats_.CountersToFlush(dev)) ++d->expired;
  if (l.message_id().empty()) return;
  if (DeliveryEvent* e = LogEvent(DeliveryEvent::Kind::kExpired)) {
    e->message_id.assign(l.message_id());
    if (l.publisher != nullptr) e->publisher = l.publisher->first;
    if (dev != nullptr) e->device = dev->first;
    e->at_ms = CoarseNowMs();
  }
}

void Homepot::CountCopy(Session* st, Routing* r, const Lifetime& l,
                        bool routed) {
  if (r != nullptr) ++(routed ? r->routed : r->queued);
  if (ack_topic_.enabled()) sent_.Add(DeviceOf(st), l);
}

void Homepot::SendReceipt(DeviceEntry* publisher) {
  receipt_topic_.assign(kReceiptsPrefix);
  receipt_topic_.append(publisher->first);
  broker_->Publish(receipt_topic_, receipt_, 1, false);
  ++counters_.receipts_sent;
}

void Homepot::FinishRouting(const Routing& r) {
  const Lifetime& l = r.lifetime;
  const bool has_id = !l.message_id().empty();
  const int64_t expires_ms = l.now_or_never              ? l.received_ms
                             : l.expires_ms == kNoExpiry ? 0
                                                         : l.expires_ms;
  if (ReadsReceipts(l.publisher)) {
    RenderRoutingReceipt(&receipt_, l.message_id(), r.topic, l.received_ms,
                         r.routed, r.queued, expires_ms, &receipt_stamps_);
    SendReceipt(l.publisher);
  }
  if (!has_id) return;
  if (DeliveryEvent* e = LogEvent(DeliveryEvent::Kind::kAccepted)) {
    e->message_id.assign(l.message_id());
    if (l.publisher != nullptr) e->publisher = l.publisher->first;
    e->topic = r.topic;
    e->target_device = r.target_device;
    e->received_ms = l.received_ms;
    e->expires_ms = expires_ms;
    e->routed = r.routed;
    e->queued = r.queued;
  }
}

void Homepot::OnAck(Session* st, std::string_view payload) {
  DeviceEntry* dev = DeviceOf(st);
  std::string_view message_id;
  std::string_view status;
  const SentNotifications::Sent* sent =
      ack_parser_.Parse(payload, &message_id, &status)
          ? sent_.Find(dev, message_id)
          : nullptr;
  if (sent == nullptr) {
    ++counters_.acks_unmatched;
    return;
  }
  ++counters_.acks_matched;
  if (DeviceCounters* d = device_stats_.CountersToFlush(dev)) ++d->acked;
  const int64_t acked_ms = clock_->WallMs();
  const int64_t latency_ms = std::max<int64_t>(0, acked_ms - sent->received_ms);
  if (ReadsReceipts(sent->publisher)) {
    RenderAckReceipt(&receipt_, message_id, dev->first, status, acked_ms,
                     latency_ms, &receipt_stamps_);
    SendReceipt(sent->publisher);
  }
  if (DeliveryEvent* e = LogEvent(DeliveryEvent::Kind::kAcked)) {
    e->message_id.assign(message_id);
    e->publisher = sent->publisher->first;
    e->device = dev->first;
    e->status.assign(status);
    e->received_ms = sent->received_ms;
    e->at_ms = acked_ms;
    e->latency_ms = latency_ms;
  }
}

void Homepot::ApplyRegistryChanges() {
  std::vector<std::string> logs;
  if (source_->HasLogs() && source_->TakeLogs(&logs)) {
    for (const auto& line : logs) broker_->Log(LogLevel::kWarning, line);
  }
  RegistryUpdate update;
  std::shared_ptr<const Snapshot> retired = snapshot_;
  if (source_->HasUpdate() && source_->TakeUpdate(&update, &retired)) {
    const int64_t start_us = clock_->MonotonicUs();
    snapshot_ = std::move(update.snapshot);
    ++swaps_;
    loaded_at_ms_ = clock_->WallMs();
    // Applied a batch per event (a mass revocation must not stall the
    // broker); a device logging in meanwhile is revoked first (OnBasicAuth).
    const size_t revoked = update.revoked.size();
    revocations_.Enqueue(&update.revoked);
    const int64_t applied_us = clock_->MonotonicUs() - start_us;
    broker_->Log(LogLevel::kNotice,
                 "registry reloaded: generation " +
                     std::to_string(snapshot_->generation()) + ", " +
                     std::to_string(snapshot_->device_count()) + " devices, " +
                     std::to_string(snapshot_->rule_count()) + " acl rules, " +
                     std::to_string(revoked) + " revoked, " +
                     (update.full ? "read in full" : "from the change feed") +
                     ", built in " + std::to_string(update.load_ms) +
                     " ms off the broker thread, applied in " +
                     std::to_string(applied_us) + " us");
  }
  revocations_.ApplyBatch(*snapshot_);
}

Session* Homepot::LiveSession(const ClientInfo& client, bool* retain_check) {
  *retain_check = false;
  if (Session* st = sessions_.Find(client.handle)) return st;
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
  revocations_.NoteUntrackedSession();
  // Bound to its device by Resolve.
  return &sessions_.Add(client, Session::Kind::kIdentity, routing_epoch_);
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
  DeviceEntry* claim = sessions_.ClaimHolder(id);
  Session* holder = sessions_.HolderOf(id, client.handle);
  if ((named != nullptr && named != record) ||
      (claim != nullptr && claim->first != record->id) ||
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
                             const char* password, bool clean_start,
                             bool mqtt5) {
  EndRouting();
  ApplyRegistryChangesAndDueStats();
  if (rechecking_ && !ticking_ && clock_->MonotonicMs() > recheck_until_ms_) {
    // Without TICK a pause ends the pass (it runs back to back).
    rechecking_ = false;
  }
  if (rechecking_) {
    // With TICK the pass ends exactly at the next TICK; without, the window
    // is kept open only by the re-checks of sessions we track. Either way a
    // re-check verifies the password and changes nothing.
    if (Session* st = sessions_.Find(client.handle)) {
      recheck_until_ms_ = clock_->MonotonicMs() + kRecheckGapMs;
      return Recheck(st, client, username, password);
    }
    // With TICK the pass is exact: an untracked handle is an offline
    // session, unless a tracked session holds its client id (Mosquitto
    // re-checks contexts with distinct ids), which makes it a login. Without
    // TICK it is handled as a login that may be an offline session (below).
    if (ticking_ &&
        sessions_.HolderOf(client.client_id != nullptr ? client.client_id : "",
                           client.handle) == nullptr) {
      return RecheckUntracked(client, username, password);
    }
  }
  // Without TICK a login inside the re-check window may be an offline
  // session being re-checked: its failures are not recorded, and its session
  // is never kicked by client id until it acts (kicking an offline context
  // that way breaks Mosquitto 2.0.11).
  const bool maybe_offline = rechecking_;
  revocations_.KickPending(&client);
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
  Session* holder = sessions_.HolderOf(client_id, client.handle);
  switch (r) {
    case AuthResult::kAllow: {
      const Device* record = snapshot_->Find(username);
      // A revocation of this device not applied yet goes first, so that it
      // cannot hit the session being created.
      revocations_.ApplyIfQueued(record->id, *snapshot_);
      DeviceEntry* dev = sessions_.Entry(record->id);
      if (holder != nullptr && holder->device != dev) {
        LogRefusal("refused device '" + record->id + "': client id '" +
                   client_id + "' is in use by another client");
        auth_.NoteRefusal(username, now);
        ++counters_.auth_failure;
        return Verdict::kDeny;
      }
      if (Status claimed = sessions_.Claim(id, *record, dev, *snapshot_);
          !claimed.ok()) {
        LogRefusal(claimed.message());
        auth_.NoteRefusal(username, now);
        ++counters_.auth_failure;
        return Verdict::kDeny;
      }
      ++counters_.auth_success;
      ++counters_.connection_count;
      // Its older session with this id is about to be taken over by
      // Mosquitto: its will, checked next, is sent as a will.
      if (holder != nullptr) holder->taken_over_at = routing_epoch_;
      Session& st =
          sessions_.Add(client, Session::Kind::kDevice, routing_epoch_);
      sessions_.Bind(&st, client.handle, dev);
      st.maybe_offline = maybe_offline;
      st.counted = true;
      ++counters_.connected;
      // A clean start discards the client id's earlier subscriptions, and
      // so does taking over a session that could not persist.
      st.may_persist = mqtt5 || !clean_start;
      if (clean_start || (holder != nullptr && !holder->may_persist)) {
        dev->second.presence.Forget(client_id);
      }
      UpdatePresence(dev, client_id);
      if (DeviceCounters* d = device_stats_.CountersToFlush(dev)) {
        d->last_connect_ms = clock_->WallMs();
      }
      return Verdict::kAllow;
    }
    case AuthResult::kDefer: {
      // Not a device: another mechanism decides, but it may not take a
      // client id that belongs to a device.
      if (sessions_.ClaimHolder(client_id) != nullptr ||
          snapshot_->Find(client_id) != nullptr ||
          (holder != nullptr && holder->device != nullptr)) {
        ++counters_.auth_failure;
        return Verdict::kDeny;
      }
      if (holder != nullptr) holder->taken_over_at = routing_epoch_;
      sessions_.Add(client, Session::Kind::kDeferred, routing_epoch_);
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

Verdict Homepot::OnAclCheck(const ClientInfo& client, std::string_view topic,
                            int access, const void* payload,
                            uint32_t payloadlen, int qos, bool retain) {
  Access what = static_cast<Access>(access);
  // A read check of the notification being routed counts for its receipt.
  Routing* routing = nullptr;
  if (tally_.busy()) {
    if (what == Access::kRead && payloadlen > 0 &&
        intake_.IsNotificationTopic(topic)) {
      routing = tally_.CopyOf(payload, payloadlen,
                              [this](const Routing& r) { FinishRouting(r); });
    }
    if (routing == nullptr) EndRouting();
  }
  ApplyRegistryChangesAndDueStats();
  rechecking_ = false;
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
    revocations_.KickPending(&client);
  }
  if (what == Access::kWrite) intake_.ForgetValidated();
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
                            intake_.IsNotificationTopic(topic) &&
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
    if (what == Access::kRead && payloadlen > 0 &&
        intake_.IsNotificationTopic(topic)) {
      const bool replay =
          live != nullptr && live->routing_epoch == routing_epoch_;
      const Lifetime& l = lifetimes_.Of(payload, payloadlen);
      if (Expired(l, live != nullptr && !replay && !retain)) {
        if (live != nullptr || qos > 0) CountExpired(st, l);
        return Verdict::kDeny;
      }
    }
    if (notification) {
      if (will) return Verdict::kDeny;
      if (intake_
              .Check(client, DeviceOf(st), topic, body, qos, *snapshot_,
                     /*trusted_bridge=*/false)
              .reject != Reject::kNone) {
        return Verdict::kDeny;
      }
    }
    return Verdict::kDefer;
  }
  std::string_view client_id =
      st != nullptr && st->client_id_usable() ? client.client_id : "";
  // (An acknowledgement topic is never a notification topic.)
  bool allowed =
      AclAllows(*snapshot_, device, client_id, topic, what,
                intake_.IsNotificationTopic(topic) ? nullptr : &ack_topic_);
  switch (what) {
    case Access::kRead:
      if (!allowed) {
        ++counters_.acl_deliver_denied;
      } else if (payloadlen > 0 && intake_.IsNotificationTopic(topic)) {
        // (an empty payload is a retained clear, not a notification)
        // Counted: copies for a connected session, except the replay of its
        // offline queue at login (counted when queued), and copies kept for
        // an offline session (QoS 0 ones are dropped by Mosquitto).
        const bool replay =
            live != nullptr && live->routing_epoch == routing_epoch_;
        // A copy no longer live is never delivered: not routed, not kept
        // for an offline session, not replayed from its queue, not sent as
        // retained. (QoS 0 copies for an offline session are dropped by
        // Mosquitto unless queue_qos0_messages: not counted.)
        const Lifetime& l = lifetimes_.Of(payload, payloadlen);
        if (Expired(l, live != nullptr && !replay && !retain)) {
          if (live != nullptr || qos > 0) CountExpired(st, l);
          return Verdict::kDeny;
        }
        if (!replay && (live != nullptr || qos > 0)) {
          CountCopy(st, routing, l, /*routed=*/live != nullptr);
          ++counters_.deliveries;
          if (DeviceCounters* d = device_stats_.CountersToFlush(DeviceOf(st))) {
            ++d->delivered;
            // Within one TICK (0.1 s) without a clock read per delivery.
            d->last_delivery_ms =
                ticking_ ? std::max(tick_wall_ms_, intake_.clock_ms())
                         : clock_->CoarseWallMs();
          }
        }
      }
      break;
    case Access::kSubscribe:
      if (!allowed) {
        ++counters_.acl_subscribe_denied;
      } else if (live != nullptr) {
        TrackSubscription(st, *device, client.client_id ? client.client_id : "",
                          topic, /*subscribe=*/true);
      }
      break;
    case Access::kWrite: {
      if (!allowed) {
        ++counters_.acl_publish_denied;
        if (notification)
          intake_.RefuseUnauthorized(client, DeviceOf(st), topic);
        break;
      }
      if (notification) {
        if (will && client.handle == revoked_closing_) return Verdict::kDeny;
        if (will) return PublishWill(client, st, topic, body, qos, retain);
        if (intake_
                .Check(client, DeviceOf(st), topic, body, qos, *snapshot_,
                       IsTrustedBridge(device))
                .reject != Reject::kNone) {
          return Verdict::kDeny;
        }
      }
      break;
    }
    case Access::kUnsubscribe:
      if (live != nullptr && device != nullptr) {
        TrackSubscription(st, *device, client.client_id ? client.client_id : "",
                          topic, /*subscribe=*/false);
      }
      break;
  }
  return allowed ? Verdict::kAllow : Verdict::kDeny;
}

Verdict Homepot::PublishWill(const ClientInfo& client, Session* st,
                             std::string_view topic, std::string_view payload,
                             int qos, bool retain) {
  // Wills get no MESSAGE event and their payload cannot be replaced, so the
  // stamped copy is published by the plugin and the original refused. (Its
  // MQTT v5 properties are not carried over.) A will is the session's own,
  // never a forwarded notification: always stamped here.
  const NotificationCheck& check =
      intake_.Check(client, DeviceOf(st), topic, payload, qos, *snapshot_,
                    /*trusted_bridge=*/false, /*may_repeat=*/false);
  if (check.reject != Reject::kNone) return Verdict::kDeny;
  std::string out(intake_.StampedSize(check, payload.size()), '\0');
  intake_.WriteStamped(check, payload, out.data());
  // "ttl": 0 is never kept as retained. The copy's lifetime is read from
  // its stamp when it is first routed.
  broker_->Publish(std::string(topic), out, qos, retain && check.ttl_s != 0);
  return Verdict::kDeny;
}

Verdict Homepot::OnMessage(const ClientInfo& client, Message* m) {
  EndRouting();
  ApplyRegistryChangesAndDueStats();
  rechecking_ = false;
  revocations_.KickPending(&client);
  ++routing_epoch_;
  Session* live = sessions_.Find(client.handle);
  if (live != nullptr) live->maybe_offline = false;
  if (live != nullptr && live->revoked()) return Verdict::kDisconnect;
  std::string_view topic = m->topic ? m->topic : "";
  if (!intake_.IsNotificationTopic(topic) ||
      (m->retain && m->payloadlen == 0)) {
    if (live != nullptr && client.username != nullptr &&
        ack_topic_.IsOf(topic, client.username)) {
      Session* st = Resolve(client, live);
      if (st->record(swaps_) != nullptr) {
        OnAck(st, std::string_view(static_cast<const char*>(m->payload),
                                   m->payload ? m->payloadlen : 0));
      }
    }
    return Verdict::kAllow;
  }
  std::string_view payload(static_cast<const char*>(m->payload),
                           m->payload ? m->payloadlen : 0);
  // The ACL check validated this very buffer just before (same pointer).
  const NotificationCheck* check =
      intake_.TakeValidated(payload, client.handle);
  Session scratch;
  Session* st = nullptr;
  if (check == nullptr) {
    if (live != nullptr) {
      st = Resolve(client, live);
    } else if (client.username != nullptr) {
      st = Resolve(client, &scratch);
    }
    // (A bridge's own context gets no ACL checks, so what it brings in is
    // checked here, under the bridge's local_username.)
    check = &intake_.Check(
        client, DeviceOf(st), topic, payload, m->qos, *snapshot_,
        IsTrustedBridge(st != nullptr ? st->record(swaps_) : nullptr));
    // Only an ACL check's validation is reused: the next MESSAGE event of
    // this client may come without one, with a new payload at this address.
    intake_.ForgetValidated();
    if (check->reject != Reject::kNone) return Verdict::kDeny;
  }
  size_t size = intake_.StampedSize(*check, payload.size());
  char* out = static_cast<char*>(broker_->Alloc(size + 1));
  if (out == nullptr) {
    // Out of memory: refusing is safer than routing an unstamped copy.
    uint64_t& accepted =
        intake_.last_kept_stamp() ? counters_.bridged : counters_.total_success;
    if (accepted > 0) --accepted;
    ++counters_.rejected[static_cast<size_t>(Reject::kTooLarge) - 1];
    intake_.Refuse(client, DeviceOf(st), topic, "too_large",
                   "broker out of memory");
    return Verdict::kDeny;
  }
  intake_.WriteStamped(*check, payload, out);
  out[size] = '\0';
  m->payload = out;
  m->payloadlen = static_cast<uint32_t>(size);
  // The broker routes, queues and persists this very buffer.
  if (st == nullptr && live != nullptr) st = Resolve(client, live);
  const Lifetime& lifetime = lifetimes_.Remember(
      out, m->payloadlen, intake_.StampOffset(*check), intake_.receipt_ms(),
      check->ttl_s, DeviceOf(st),
      check->has_message_id ? std::string_view(check->message_id)
                            : std::string_view());
  // A QoS 2 retransmission before PUBREL is not routed again (its first
  // copy is); the same payload published afresh is. A notification another
  // node accepted has its receipt and log row there.
  if (!intake_.last_kept_stamp() &&
      (!intake_.last_was_repeat() || !tally_.Awaits(lifetime))) {
    const Device* target = log_on_ && !lifetime.message_id().empty()
                               ? snapshot_->FindByToken(topic)
                               : nullptr;
    tally_.Begin(out, m->payloadlen, topic, target != nullptr ? target->id : "",
                 lifetime, m->qos, intake_.receipt_ms(),
                 [this](const Routing& r) { FinishRouting(r); });
  }
  if (check->ttl_s == 0) m->retain = false;  // now or never
  return Verdict::kAllow;
}

void Homepot::PublishStats() {
  const int64_t now = clock_->MonotonicMs();
  counters_.connected_not_subscribed =
      counters_.connected - counters_.reachable;
  stats_schedule_.Published(now);
  if (stats_schedule_.enabled()) {
    RegistryInfo info;
    info.devices = snapshot_->device_count();
    info.acl_rules = snapshot_->rule_count();
    info.generation = snapshot_->generation();
    info.loaded_at_ms = loaded_at_ms_;
    source_->LastError(&info.last_error);
    broker_->Publish(
        config_.stats_topic,
        RenderStats(counters_, info, config_.node_id,
                    stats_schedule_.uptime_s(now), clock_->WallMs()),
        0, true);
  }
  device_stats_.Submit(source_.get());
  log_.Submit(source_.get());
  log_submitted_ms_ = clock_->WallMs();
}

void Homepot::OnTick() {
  ticking_ = true;
  tick_wall_ms_ = clock_->CoarseWallMs();
  EndRouting();
  ++routing_epoch_;
  rechecking_ = false;
  ApplyRegistryChangesAndDueStats();
  PublishStatsIfDue();
  revocations_.KickPending(nullptr);
  if (log_.pending()) SubmitLogIfDue(tick_wall_ms_);
}

void Homepot::OnReload() {
  EndRouting();
  source_->RequestReload();
  ApplyRegistryChangesAndDueStats();
  rechecking_ = true;
  recheck_until_ms_ = clock_->MonotonicMs() + kRecheckGapMs;
}

void Homepot::OnDisconnect(const ClientInfo& client, bool may_persist) {
  EndRouting();
  ApplyRegistryChangesAndDueStats();
  Session* st = sessions_.Find(client.handle);
  revoked_closing_ = st != nullptr && st->revoked() ? client.handle : nullptr;
  if (st == nullptr) return;
  // A clean session ends with its connection: its client id is free again
  // (unless another session of the device holds it), and its subscriptions
  // are gone.
  if (!may_persist) sessions_.ReleaseClaimOf(*st, client.handle);
  // (Judged by how the session logged in: Mosquitto marks a session that
  // is being taken over as clean before its DISCONNECT.)
  if (!st->may_persist && st->device != nullptr) {
    st->device->second.presence.Forget(st->client_id);
  }
  DropSession(client.handle);
}

}  // namespace homepot
