#include "presence.h"

#include <algorithm>
#include <functional>

namespace homepot {
namespace {

uint64_t FilterHash(std::string_view filter) {
  return std::hash<std::string_view>{}(filter);
}

void AddHash(std::vector<uint64_t>* hashes, bool* overflow, uint64_t h) {
  if (std::find(hashes->begin(), hashes->end(), h) != hashes->end()) return;
  if (hashes->size() >= Presence::kMaxFilters) {
    *overflow = true;
    return;
  }
  hashes->push_back(h);
}

void RemoveHash(std::vector<uint64_t>* hashes, uint64_t h) {
  hashes->erase(std::remove(hashes->begin(), hashes->end(), h), hashes->end());
}

}  // namespace

ClientSubscriptions* Presence::FindClient(std::string_view client_id) {
  for (ClientSubscriptions& c : clients_) {
    if (c.client_id == client_id) return &c;
  }
  return nullptr;
}

void Presence::Subscribed(std::string_view client_id, std::string_view filter,
                          bool covers_token, bool covers_receipts) {
  if (!covers_token && !covers_receipts) return;
  ClientSubscriptions* c = FindClient(client_id);
  if (c == nullptr) {
    if (clients_.size() >= kMaxClients) clients_.erase(clients_.begin());
    c = &clients_.emplace_back();
    c->client_id.assign(client_id);
  }
  const uint64_t h = FilterHash(filter);
  if (covers_token) AddHash(&c->token, &c->token_overflow, h);
  if (covers_receipts) AddHash(&c->receipts, &c->receipts_overflow, h);
  Update();
}

void Presence::Unsubscribed(std::string_view client_id,
                            std::string_view filter) {
  ClientSubscriptions* c = FindClient(client_id);
  if (c == nullptr) return;
  const uint64_t h = FilterHash(filter);
  RemoveHash(&c->token, h);
  RemoveHash(&c->receipts, h);
  if (c->token.empty() && c->receipts.empty() && !c->token_overflow &&
      !c->receipts_overflow) {
    Forget(client_id);
  }
  Update();
}

void Presence::Forget(std::string_view client_id) {
  clients_.erase(std::remove_if(clients_.begin(), clients_.end(),
                                [&](const ClientSubscriptions& c) {
                                  return c.client_id == client_id;
                                }),
                 clients_.end());
  Update();
}

bool Presence::ReachesToken(std::string_view client_id) const {
  for (const ClientSubscriptions& c : clients_) {
    if (c.client_id == client_id) return !c.token.empty() || c.token_overflow;
  }
  return false;
}

void Presence::Update() {
  reads_receipts_ = std::any_of(
      clients_.begin(), clients_.end(), [](const ClientSubscriptions& c) {
        return !c.receipts.empty() || c.receipts_overflow;
      });
}

}  // namespace homepot
