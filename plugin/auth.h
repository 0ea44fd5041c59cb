// Password authentication against a registry snapshot, with a lockout per
// username and a cache of recently verified secrets so that reconnecting
// devices do not pay for a full hash on the broker thread.
//
// Trust limits (all enforced here, before anything is stored):
// - a username that is not a valid device id (longer than 128 bytes, ...)
//   is never a device: refused (or deferred) at once, never stored;
// - a password longer than kMaxPasswordBytes is refused unhashed;
// - the lockout table holds at most kMaxFailureBytes (names + overhead);
// - every failed full verification costs exactly `failure_iterations`
//   PBKDF2 rounds, whatever the stored hash ($6$, $7$ of any count up to
//   kMaxIterations) or whether the username exists, so timing tells nothing.
#ifndef HOMEPOT_PLUGIN_AUTH_H_
#define HOMEPOT_PLUGIN_AUTH_H_

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>

#include "broker.h"
#include "credentials.h"
#include "registry.h"

namespace homepot {

enum class AuthResult {
  kAllow,      // registered, enabled, right password
  kDeny,       // unknown (without defer), disabled, no/wrong password
  kLockedOut,  // too many recent failures for this username
  kDefer,      // unknown username and defer_unknown is on
  kThrottled,  // refused unchecked: the hashing budget is spent (a flood)
};

struct AuthOptions {
  int max_failures = 5;  // 0 = no lockout
  int64_t lockout_ms = 60000;
  bool defer_unknown = false;
  // PBKDF2 rounds every failed full verification costs (unknown users,
  // wrong passwords for any hash format); at least every stored hash's cost.
  int failure_iterations = kMaxIterations;
  // Full password hashes may use at most this much broker-thread time per
  // second (a token bucket holding one second's worth); beyond it, logins
  // that need a full hash are refused without one. Cached secrets are
  // always checked. 0 = unlimited.
  int64_t hash_budget_us_per_s = 250000;
};

class Authenticator {
 public:
  // `clock` times the full hashes charged to the budget (MonotonicUs).
  explicit Authenticator(const AuthOptions& options,
                         Clock* clock = SystemClock::Instance());
  Authenticator(const Authenticator&) = delete;
  Authenticator& operator=(const Authenticator&) = delete;

  // `now_ms` is a monotonic clock. Unknown usernames cost one full hash, as
  // a wrong password does, so timing does not reveal which ids exist.
  // `record_failure` false: a refusal does not count toward the lockout.
  AuthResult Authenticate(const Snapshot& snapshot, std::string_view username,
                          std::string_view password, int64_t now_ms,
                          bool record_failure = true);

  // True when `password` is right for the enabled device `username`: the
  // cached secret, else a full verification charged to the budget (false
  // when it is spent). Records nothing (no lockout): for Mosquitto's
  // re-check of existing sessions on SIGHUP.
  bool Recheck(const Snapshot& snapshot, std::string_view username,
               std::string_view password, int64_t now_ms);

  // Counts a login refused after its password was accepted (e.g. a client
  // id it may not use) as a failure of `username`, for the lockout.
  void NoteRefusal(std::string_view username, int64_t now_ms) {
    RecordFailure(username, now_ms);
  }

  // Drops the cached secret of `username` (its password changed or it was
  // removed).
  void Forget(std::string_view username);

  // Drops lockout entries that expired; call now and then.
  void Sweep(int64_t now_ms);

  size_t tracked_failures() const { return failures_.size(); }
  size_t tracked_failure_bytes() const { return failure_bytes_; }
  size_t cached_secrets() const { return verified_.size(); }
  // PBKDF2 rounds spent so far (for tests of the constant failure cost).
  uint64_t iterations_spent() const { return iterations_spent_; }

  // Caps on what unauthenticated clients can make this class store.
  static constexpr size_t kMaxFailureBytes = size_t{8} << 20;
  // Per lockout entry, beside the name: node, hash bucket, counters.
  static constexpr size_t kFailureEntryOverhead = 96;

 private:
  struct Failures {
    int count = 0;
    int64_t window_start_ms = 0;
    int64_t locked_until_ms = 0;
  };
  struct Verified {
    std::array<uint8_t, 32> mac;         // HMAC(key_, password)
    std::array<uint8_t, kHashLen> hash;  // the registry hash it matched
  };
  std::array<uint8_t, 32> Mac(std::string_view password) const;
  bool IsLockedOut(const std::string& username, int64_t now_ms);
  // Takes one full verification from the budget; false when it is spent.
  bool BudgetAllows(int64_t now_ms);
  // Full verification: true when `password` matches and `enabled`. Its cost
  // is charged to the budget; any refusal (a disabled device with the right
  // password too) is padded to failure_iterations.
  bool Verify(const PasswordHash& hash, std::string_view password,
              bool enabled);
  void RecordFailure(std::string_view username, int64_t now_ms);
  void EraseFailure(std::unordered_map<std::string, Failures>::iterator it);

  AuthOptions options_;
  Clock* const clock_;
  std::array<uint8_t, 32> key_{};
  PasswordHash dummy_;
  std::unordered_map<std::string, Failures> failures_;
  size_t failure_bytes_ = 0;  // names + kFailureEntryOverhead per entry
  uint64_t iterations_spent_ = 0;
  std::unordered_map<std::string, Verified> verified_;
  std::string scratch_;  // reused username buffer
  int64_t budget_us_ = 0;
  int64_t budget_refilled_ms_ = INT64_MIN;
};

}  // namespace homepot

#endif  // HOMEPOT_PLUGIN_AUTH_H_
