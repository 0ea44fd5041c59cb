#include "auth.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <algorithm>
#include <stdexcept>

namespace homepot {
namespace {

// Bounds the verified-secret cache (filled by successful logins only).
constexpr size_t kMaxVerified = 4000000;

}  // namespace

Authenticator::Authenticator(const AuthOptions& options, Clock* clock)
    : options_(options), clock_(clock) {
  if (RAND_bytes(key_.data(), static_cast<int>(key_.size())) != 1) {
    throw std::runtime_error("RAND_bytes failed");
  }
  Result<PasswordHash> dummy =
      HashPassword("homepot-dummy-secret", options_.failure_iterations);
  if (!dummy.ok()) throw std::runtime_error(dummy.status().message());
  dummy_ = *dummy;
}

std::array<uint8_t, 32> Authenticator::Mac(std::string_view password) const {
  std::array<uint8_t, 32> out{};
  unsigned int len = 0;
  HMAC(EVP_sha256(), key_.data(), static_cast<int>(key_.size()),
       reinterpret_cast<const unsigned char*>(password.data()), password.size(),
       out.data(), &len);
  return out;
}

bool Authenticator::IsLockedOut(const std::string& username, int64_t now_ms) {
  if (options_.max_failures <= 0) return false;
  auto it = failures_.find(username);
  if (it == failures_.end()) return false;
  if (it->second.locked_until_ms > now_ms) return true;
  if (it->second.locked_until_ms != 0) EraseFailure(it);  // served its time
  return false;
}

void Authenticator::EraseFailure(
    std::unordered_map<std::string, Failures>::iterator it) {
  failure_bytes_ -= it->first.size() + kFailureEntryOverhead;
  failures_.erase(it);
}

void Authenticator::RecordFailure(std::string_view username, int64_t now_ms) {
  if (options_.max_failures <= 0) return;
  scratch_.assign(username);
  auto it = failures_.find(scratch_);
  if (it == failures_.end()) {
    const size_t cost = scratch_.size() + kFailureEntryOverhead;
    if (failure_bytes_ + cost > kMaxFailureBytes) Sweep(now_ms);
    // Full of live entries: this name goes untracked (known or not, so the
    // lockout still says nothing about which names exist).
    if (failure_bytes_ + cost > kMaxFailureBytes) return;
    it = failures_.emplace(scratch_, Failures{0, now_ms, 0}).first;
    failure_bytes_ += cost;
  }
  Failures& f = it->second;
  if (now_ms - f.window_start_ms > options_.lockout_ms) {
    f.count = 0;
    f.window_start_ms = now_ms;
  }
  if (++f.count >= options_.max_failures) {
    f.locked_until_ms = now_ms + options_.lockout_ms;
  }
}

bool Authenticator::BudgetAllows(int64_t now_ms) {
  const int64_t rate = options_.hash_budget_us_per_s;
  if (rate <= 0) return true;
  if (budget_refilled_ms_ == INT64_MIN) {
    budget_us_ = rate;
  } else if (now_ms > budget_refilled_ms_) {
    budget_us_ = std::min(
        rate, budget_us_ + (now_ms - budget_refilled_ms_) * rate / 1000);
  }
  budget_refilled_ms_ = std::max(budget_refilled_ms_, now_ms);
  return budget_us_ > 0;
}

bool Authenticator::Verify(const PasswordHash& hash, std::string_view password,
                           bool enabled) {
  const int64_t start_us = clock_->MonotonicUs();
  bool ok = VerifyPassword(hash, password) && enabled;
  int spent = VerifyIterations(hash);
  if (!ok && spent < options_.failure_iterations) {
    BurnIterations(password, options_.failure_iterations - spent);
    spent = options_.failure_iterations;
  }
  iterations_spent_ += static_cast<uint64_t>(spent);
  budget_us_ -= clock_->MonotonicUs() - start_us;
  return ok;
}

AuthResult Authenticator::Authenticate(const Snapshot& snapshot,
                                       std::string_view username,
                                       std::string_view password,
                                       int64_t now_ms, bool record_failure) {
  // Names that can never be a device are not ours, and are never stored.
  if (!IsValidDeviceId(username)) {
    return options_.defer_unknown ? AuthResult::kDefer : AuthResult::kDeny;
  }
  // Refused unhashed, known user or not: the limit is public.
  if (password.size() > kMaxPasswordBytes) return AuthResult::kDeny;
  const Device* d = snapshot.Find(username);
  scratch_.assign(username);
  if (IsLockedOut(scratch_, now_ms)) {
    // With deferral, unknown names never lock out (another mechanism
    // judges them), so a locked-out device pays the same hash as they do.
    if (options_.defer_unknown && BudgetAllows(now_ms)) {
      Verify(dummy_, password, false);
    }
    return AuthResult::kLockedOut;
  }
  if (d == nullptr && options_.defer_unknown) {
    // Deferred after the same hash a refusal costs, so that the answer's
    // time does not tell which names are devices.
    if (!BudgetAllows(now_ms)) return AuthResult::kThrottled;
    Verify(dummy_, password, false);
    return AuthResult::kDefer;
  }

  // Computed on every path, so a cached secret changes no failure's cost.
  const std::array<uint8_t, 32> mac = Mac(password);
  if (d != nullptr && d->has_password) {
    auto cached = verified_.find(scratch_);
    if (cached != verified_.end() && cached->second.hash == d->password.hash) {
      if (CRYPTO_memcmp(mac.data(), cached->second.mac.data(), mac.size()) ==
          0) {
        if (d->enabled) {
          if (auto f = failures_.find(scratch_); f != failures_.end()) {
            EraseFailure(f);
          }
          return AuthResult::kAllow;
        }
      }
    }
    if (!BudgetAllows(now_ms)) return AuthResult::kThrottled;
    if (Verify(d->password, password, d->enabled)) {
      if (verified_.size() < kMaxVerified) {
        verified_[scratch_] = Verified{mac, d->password.hash};
      }
      if (auto f = failures_.find(scratch_); f != failures_.end()) {
        EraseFailure(f);
      }
      return AuthResult::kAllow;
    }
  } else {
    if (!BudgetAllows(now_ms)) return AuthResult::kThrottled;
    Verify(dummy_, password, false);  // same cost as a known username
  }
  if (record_failure) RecordFailure(username, now_ms);
  return AuthResult::kDeny;
}

bool Authenticator::Recheck(const Snapshot& snapshot, std::string_view username,
                            std::string_view password, int64_t now_ms) {
  const Device* d = snapshot.Find(username);
  if (d == nullptr || !d->enabled || !d->has_password ||
      password.size() > kMaxPasswordBytes) {
    return false;
  }
  scratch_.assign(username);
  auto cached = verified_.find(scratch_);
  if (cached != verified_.end() && cached->second.hash == d->password.hash) {
    std::array<uint8_t, 32> mac = Mac(password);
    if (CRYPTO_memcmp(mac.data(), cached->second.mac.data(), mac.size()) == 0) {
      return true;
    }
  }
  if (!BudgetAllows(now_ms)) return false;
  return Verify(d->password, password, true);
}

void Authenticator::Forget(std::string_view username) {
  scratch_.assign(username);
  verified_.erase(scratch_);
}

void Authenticator::Sweep(int64_t now_ms) {
  for (auto it = failures_.begin(); it != failures_.end();) {
    const Failures& f = it->second;
    bool expired = f.locked_until_ms != 0
                       ? f.locked_until_ms <= now_ms
                       : now_ms - f.window_start_ms > options_.lockout_ms;
    if (expired) {
      failure_bytes_ -= it->first.size() + kFailureEntryOverhead;
      it = failures_.erase(it);
    } else {
      ++it;
    }
  }
}

}  // namespace homepot
