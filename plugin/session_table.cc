#include "session_table.h"

#include <algorithm>

#include "acl.h"

namespace homepot {

Session& SessionTable::Add(const ClientInfo& client, Session::Kind kind,
                           uint64_t routing_epoch) {
  Session& st = clients_[client.handle];
  st.kind = kind;
  st.client_id = client.client_id != nullptr ? client.client_id : "";
  st.routing_epoch = routing_epoch;
  by_client_id_[st.client_id] = client.handle;  // the newest holds the id
  return st;
}

bool SessionTable::Drop(const void* handle) {
  auto it = clients_.find(handle);
  if (it == clients_.end()) return false;
  const bool counted = it->second.counted;
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
  return counted;
}

Session* SessionTable::HolderOf(const std::string& client_id,
                                const void* handle) {
  auto it = by_client_id_.find(client_id);
  if (it == by_client_id_.end() || it->second == handle) return nullptr;
  return &clients_.at(it->second);
}

void SessionTable::Bind(Session* st, const void* handle, DeviceEntry* dev) {
  st->device = dev;
  st->revocations = dev->second.revocations;
  dev->second.sessions.push_back(handle);
}

Session* SessionTable::Resolve(const ClientInfo& client, Session* st,
                               const Snapshot& snapshot, uint64_t generation) {
  if (st->generation_ == generation) return st;  // done for this snapshot
  st->generation_ = generation;
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
  st->record_ = name.empty() ? nullptr : snapshot.Find(name);
  if (st->record_ != nullptr && st->device == nullptr) {
    DeviceEntry* dev = Entry(st->record_->id);
    if (st->kind == Session::Kind::kIdentity) {
      Bind(st, client.handle, dev);
    } else {
      st->device = dev;  // scratch: for the counters of this event
    }
  }
  st->client_id_usable_ =
      st->record_ != nullptr && client.client_id != nullptr &&
      ClientIdMayExpand(snapshot, *st->record_, client.client_id);
  return st;
}

Status SessionTable::Claim(std::string_view id, const Device& record,
                           DeviceEntry* dev, const Snapshot& snapshot) {
  const Device* other = snapshot.Find(id);
  if (other != nullptr && other != &record) {
    return Status::Error("refused device '" + record.id + "': client id '" +
                         std::string(id) +
                         "' is the id of another device (use the device's "
                         "own id or an unused one)");
  }
  auto& ids = dev->second.client_ids;
  auto held = claims_.find(std::string(id));
  if (held != claims_.end()) {
    if (held->second != dev) {
      return Status::Error("refused device '" + record.id + "': client id '" +
                           std::string(id) + "' is held by device '" +
                           held->second->first + "'");
    }
    // Most recent last.
    auto pos = std::find(ids.begin(), ids.end(), id);
    if (pos != ids.end()) std::rotate(pos, pos + 1, ids.end());
    return Status::Ok();
  }
  if (ids.size() >= kMaxClaimsPerDevice) {
    // Release the oldest id no live session of this device uses.
    auto unused = std::find_if(ids.begin(), ids.end(), [&](const auto& c) {
      return std::none_of(
          dev->second.sessions.begin(), dev->second.sessions.end(),
          [&](const void* h) { return clients_.at(h).client_id == c; });
    });
    if (unused == ids.end()) {
      return Status::Error("refused device '" + record.id +
                           "': it already has " +
                           std::to_string(kMaxClaimsPerDevice) +
                           " sessions with other client ids");
    }
    claims_.erase(*unused);
    ids.erase(unused);
  }
  claims_.emplace(std::string(id), dev);
  ids.emplace_back(id);
  return Status::Ok();
}

void SessionTable::ReleaseClaimOf(const Session& st, const void* handle) {
  DeviceEntry* dev = st.device;
  if (dev == nullptr) return;
  auto& ids = dev->second.client_ids;
  bool shared = std::any_of(dev->second.sessions.begin(),
                            dev->second.sessions.end(), [&](const void* h) {
                              return h != handle &&
                                     clients_.at(h).client_id == st.client_id;
                            });
  auto pos = std::find(ids.begin(), ids.end(), st.client_id);
  if (!shared && pos != ids.end()) {
    claims_.erase(*pos);
    ids.erase(pos);
  }
}

void SessionTable::ReleaseClaims(DeviceEntry* dev) {
  for (const std::string& id : dev->second.client_ids) claims_.erase(id);
  dev->second.client_ids.clear();
}

}  // namespace homepot
