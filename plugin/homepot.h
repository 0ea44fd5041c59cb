// The plugin's behaviour, independent of Mosquitto: one object holding all
// state, driven by the broker's events (see plugin.cc for the trampolines).
// All methods run on the broker thread.
#ifndef HOMEPOT_PLUGIN_HOMEPOT_H_
#define HOMEPOT_PLUGIN_HOMEPOT_H_

#include <memory>
#include <string>
#include <string_view>

#include "acl.h"
#include "auth.h"
#include "broker.h"
#include "config.h"
#include "registry.h"
#include "registry_worker.h"
#include "status.h"

namespace homepot {

enum class Verdict { kAllow, kDeny, kDefer };

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
  // Mosquitto ACL check; `access` is MOSQ_ACL_* (see Access).
  Verdict OnAclCheck(const ClientInfo& client, std::string_view topic,
                     int access);
  void OnTick();
  // SIGHUP: reload the registry now.
  void OnReload();
  void OnDisconnect(const ClientInfo& client);

  const Snapshot& snapshot() const { return *snapshot_; }
  const Config& config() const { return config_; }

 private:
  Homepot(const Config& config, Broker* broker, Clock* clock);
  // Applies a new snapshot and drains worker logs; cheap when idle.
  void Maintain() {
    if (worker_->HasUpdate() || worker_->HasLogs()) MaintainSlow();
  }
  void MaintainSlow();

  const Config config_;
  Broker* const broker_;
  Clock* const clock_;
  std::unique_ptr<RegistryWorker> worker_;
  std::shared_ptr<const Snapshot> snapshot_;
  Authenticator auth_;
  int64_t last_sweep_ms_ = 0;
};

}  // namespace homepot

#endif  // HOMEPOT_PLUGIN_HOMEPOT_H_
