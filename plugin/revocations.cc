#include "revocations.h"

#include <algorithm>

namespace homepot {

void Revocations::Enqueue(std::vector<std::string>* ids) {
  for (std::string& id : *ids) {
    if (queued_.insert(id).second) queue_.push_back(std::move(id));
  }
}

void Revocations::ApplyBatch(const Snapshot& now) {
  size_t n = std::min(queue_.size(), kPerEvent);
  for (size_t i = 0; i < n; ++i) {
    std::string id = std::move(queue_.front());
    queue_.pop_front();
    if (queued_.count(id) != 0) Apply(id, now);
  }
}

void Revocations::Apply(const std::string& id, const Snapshot& now) {
  queued_.erase(id);
  auth_->Forget(id);
  bool tracked = false;
  if (DeviceEntry* dev = sessions_->FindEntry(id)) {
    DeviceState& d = dev->second;
    ++d.revocations;  // its current sessions are now revoked()
    const Device* record = now.Find(id);
    // Removed: its statistics start from zero if the id comes back.
    if (record == nullptr) d.counters = DeviceCounters{};
    if (record == nullptr || !record->enabled) sessions_->ReleaseClaims(dev);
    tracked = !d.sessions.empty();
  }
  // Untracked sessions can only be TLS identities that have not acted yet:
  // none to look for unless such sessions exist here at all.
  if ((tracked || untracked_sessions_) && !kick_queued_.count(id)) {
    kick_queued_.insert(id);
    kicks_.push_back(id);
  }
}

void Revocations::KickPendingSlow(const ClientInfo* current) {
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
  for (; i < kicks_.size() && budget > 0; ++i, --budget) {
    std::string& id = kicks_[i];
    DeviceEntry* dev = sessions_->FindEntry(id);
    if (dev == nullptr || dev->second.sessions.empty()) {
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
      const Session& s = sessions_->At(handle);
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
            const Session& o = sessions_->At(other);
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
  for (; i < kicks_.size(); ++i) keep.push_back(std::move(kicks_[i]));
  kicks_.swap(keep);
  // Kicks run DISCONNECT events (which drop sessions) at once: only now.
  for (const std::string& u : usernames) broker_->KickUsername(u);
  for (const std::string& c : client_ids) broker_->KickClientId(c);
}

}  // namespace homepot
