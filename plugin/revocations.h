// Ends the sessions of devices the registry revoked (disabled, removed or
// given a new password). A new snapshot's revoked ids are queued and applied
// a bounded batch per broker event (a mass revocation must not stall the
// broker): applying one makes the device's tracked sessions revoked(),
// drops its cached secret and, when it is disabled or removed, its claims,
// and queues its kicks. Kicks go out later, a bounded number per event.
//
// Mosquitto must never be asked to kick the client whose event is running
// (its context would be freed under it), so a session of that client, or
// with its client id, stays queued for a later event; the core kicks
// nothing during a DISCONNECT event.
//
// Owned by Homepot; every method runs on the broker thread.
#ifndef HOMEPOT_PLUGIN_REVOCATIONS_H_
#define HOMEPOT_PLUGIN_REVOCATIONS_H_

#include <cstddef>
#include <deque>
#include <string>
#include <unordered_set>
#include <vector>

#include "auth.h"
#include "broker.h"
#include "registry.h"
#include "session_table.h"

namespace homepot {

class Revocations {
 public:
  Revocations(SessionTable* sessions, Authenticator* auth, Broker* broker)
      : sessions_(sessions), auth_(auth), broker_(broker) {}
  Revocations(const Revocations&) = delete;
  Revocations& operator=(const Revocations&) = delete;

  // Queues the ids a snapshot swap revoked (not applied yet).
  void Enqueue(std::vector<std::string>* ids);
  // Revocations are queued, not applied yet.
  bool HasQueued() const { return !queue_.empty(); }
  // Applies at most kPerEvent queued revocations against `now`.
  void ApplyBatch(const Snapshot& now);
  // Applies the revocation of `id` at once if one is queued (a login of the
  // device must not be hit by a revocation older than it).
  void ApplyIfQueued(const std::string& id, const Snapshot& now) {
    if (queued_.count(id) != 0) Apply(id, now);
  }

  // Sends the kicks that are due, skipping the sessions of `current` (the
  // client whose event is running; nullptr for TICK).
  void KickPending(const ClientInfo* current) {
    if (!kicks_.empty()) KickPendingSlow(current);
  }

  // A TLS identity session acted without logging in through us: revoked
  // devices must then also be looked for by name.
  void NoteUntrackedSession() { untracked_sessions_ = true; }

  // Bounds on the work one event does for a mass revocation.
  static constexpr size_t kPerEvent = 4096;
  static constexpr size_t kKicksPerEvent = 1024;
  static constexpr size_t kUsernameKicksPerEvent = 64;

 private:
  void Apply(const std::string& id, const Snapshot& now);
  void KickPendingSlow(const ClientInfo* current);

  SessionTable* const sessions_;
  Authenticator* const auth_;
  Broker* const broker_;
  std::deque<std::string> queue_;  // from swaps, not applied yet
  std::unordered_set<std::string> queued_;
  std::vector<std::string> kicks_;  // revoked device ids
  std::unordered_set<std::string> kick_queued_;
  bool untracked_sessions_ = false;
};

}  // namespace homepot

#endif  // HOMEPOT_PLUGIN_REVOCATIONS_H_
