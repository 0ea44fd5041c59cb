#include "homepot.h"

#include <cstring>

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

Homepot::Homepot(const Config& config, Broker* broker, Clock* clock)
    : config_(config),
      broker_(broker),
      clock_(clock),
      worker_(std::make_unique<RegistryWorker>(config.db_path,
                                               config.reload_interval_ms)),
      auth_(MakeAuthOptions(config)) {}

Homepot::~Homepot() = default;

Result<std::unique_ptr<Homepot>> Homepot::Create(const Config& config,
                                                 Broker* broker,
                                                 Clock* clock) {
  std::unique_ptr<Homepot> h(new Homepot(config, broker, clock));
  auto first = h->worker_->Start();
  if (!first.ok()) return first.status();
  h->snapshot_ = *first;
  h->broker_->Log(LogLevel::kInfo,
                  "registry " + config.db_path + " loaded: " +
                      std::to_string(h->snapshot_->devices().size()) +
                      " devices, " + std::to_string(h->snapshot_->rule_count()) +
                      " acl rules, generation " +
                      std::to_string(h->snapshot_->generation()));
  h->Maintain();
  return h;
}

void Homepot::MaintainSlow() {
  std::vector<std::string> logs;
  if (worker_->HasLogs() && worker_->TakeLogs(&logs)) {
    for (const auto& line : logs) broker_->Log(LogLevel::kWarning, line);
  }
  RegistryUpdate update;
  std::shared_ptr<const Snapshot> retired = snapshot_;
  if (worker_->HasUpdate() && worker_->TakeUpdate(&update, &retired)) {
    snapshot_ = std::move(update.snapshot);
    for (const std::string& id : update.revoked) {
      auth_.Forget(id);
      broker_->KickUsername(id);
    }
    broker_->Log(LogLevel::kNotice,
                 "registry reloaded: generation " +
                     std::to_string(snapshot_->generation()) + ", " +
                     std::to_string(snapshot_->devices().size()) +
                     " devices, " + std::to_string(snapshot_->rule_count()) +
                     " acl rules, " + std::to_string(update.revoked.size()) +
                     " revoked, built in " + std::to_string(update.load_ms) +
                     " ms");
  }
}

Verdict Homepot::OnBasicAuth(const ClientInfo& client, const char* username,
                             const char* password) {
  Maintain();
  // Fail closed: no anonymous devices, and nothing that could widen %u/%c.
  if (username == nullptr || username[0] == '\0') return Verdict::kDeny;
  if (HasTopicWildcards(username) || HasTopicWildcards(client.client_id)) {
    return Verdict::kDeny;
  }
  int64_t now = clock_->MonotonicMs();
  if (now - last_sweep_ms_ > 60000) {
    auth_.Sweep(now);
    last_sweep_ms_ = now;
  }
  AuthResult r = auth_.Authenticate(*snapshot_, username,
                                    password ? password : "", now);
  switch (r) {
    case AuthResult::kAllow:
      return Verdict::kAllow;
    case AuthResult::kDefer:
      return Verdict::kDefer;
    case AuthResult::kLockedOut:
    case AuthResult::kDeny:
      return Verdict::kDeny;
  }
  return Verdict::kDeny;
}

Verdict Homepot::OnAclCheck(const ClientInfo& client, std::string_view topic,
                            int access) {
  Maintain();
  const char* username = client.username;
  if (username == nullptr) return Verdict::kDeny;
  const Device* device = snapshot_->Find(username);
  if (device == nullptr && config_.defer_unknown) return Verdict::kDefer;
  std::string_view client_id = client.client_id ? client.client_id : "";
  bool allowed =
      AclAllows(*snapshot_, device, client_id, topic, static_cast<Access>(access));
  return allowed ? Verdict::kAllow : Verdict::kDeny;
}

void Homepot::OnTick() { Maintain(); }

void Homepot::OnReload() {
  worker_->RequestReload();
  Maintain();
}

void Homepot::OnDisconnect(const ClientInfo& client) { Maintain(); }

}  // namespace homepot
