// Which client ids of a device hold subscriptions that reach it
// (docs/operating.md, "Reachability"): filters that cover its token (it can
// receive notifications) and filters that cover its receipts topic (it
// reads receipts). Learnt from the subscribe and unsubscribe ACL checks,
// which Mosquitto runs for every filter of a SUBSCRIBE and UNSUBSCRIBE.
//
// Kept per client id, not per connection: a session that may persist keeps
// its subscriptions across reconnects (Mosquitto restores them without a
// SUBSCRIBE), a clean one loses them when it ends or when a client id is
// reused with a clean start. Filters are kept as 64-bit hashes (a client
// chooses their length), at most kMaxFilters of each kind per client id
// (beyond that the client id stays subscribed until it is forgotten) and
// kMaxClients client ids per device (the oldest forgotten first), so memory
// is bounded by the registry.
//
// Broker thread only.
#ifndef HOMEPOT_PLUGIN_PRESENCE_H_
#define HOMEPOT_PLUGIN_PRESENCE_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace homepot {

struct ClientSubscriptions {
  std::string client_id;
  std::vector<uint64_t> token;     // hashes of filters covering the token
  std::vector<uint64_t> receipts;  // ... covering the receipts topic
  // More covering filters than kMaxFilters were subscribed: the client id
  // counts as subscribed until it is forgotten.
  bool token_overflow = false;
  bool receipts_overflow = false;
};

class Presence {
 public:
  static constexpr size_t kMaxFilters = 16;
  static constexpr size_t kMaxClients = 8;

  // A subscription to `filter` by `client_id` was allowed; `covers_token`
  // and `covers_receipts` say what it reaches.
  void Subscribed(std::string_view client_id, std::string_view filter,
                  bool covers_token, bool covers_receipts);
  // `client_id` unsubscribed from `filter`.
  void Unsubscribed(std::string_view client_id, std::string_view filter);
  // The session of `client_id` ended without persisting, or a new one
  // started clean: its subscriptions are gone.
  void Forget(std::string_view client_id);

  // Whether `client_id` holds a subscription covering the token.
  bool ReachesToken(std::string_view client_id) const;
  // Whether any client id of the device reads its receipts.
  bool ReadsReceipts() const { return reads_receipts_; }

 private:
  ClientSubscriptions* FindClient(std::string_view client_id);
  void Update();

  std::vector<ClientSubscriptions> clients_;  // oldest first
  bool reads_receipts_ = false;
};

}  // namespace homepot

#endif  // HOMEPOT_PLUGIN_PRESENCE_H_
