// Password hashes in Mosquitto's own formats, so existing password_files
// import unchanged:
//   $7$<iterations>$<salt b64>$<hash b64>  PBKDF2-HMAC-SHA512
//   $6$<salt b64>$<hash b64>               SHA-512(password || salt)
// Salt and hash are standard Base64 (with padding) as mosquitto_passwd writes
// them: 12-byte salt, 64-byte hash. Verification is constant-time in the
// hash comparison.
#ifndef HOMEPOT_COMMON_CREDENTIALS_H_
#define HOMEPOT_COMMON_CREDENTIALS_H_

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

#include "status.h"

namespace homepot {

// Default PBKDF2 iteration count for hashes this project creates. See
// docs/operating.md ("Password hashes") for why.
inline constexpr int kDefaultIterations = 1000;
// The most expensive $7$ hash accepted anywhere (provisioning, import,
// registry load). Every login hashes on the broker's only thread, so one
// verification must stay under a millisecond; and every failed login is
// padded to exactly this cost (see Authenticator), so it is also the price
// of every wrong password. Hashes above it are refused with an error that
// says to set a new password.
inline constexpr int kMaxIterations = 1000;
static_assert(kDefaultIterations <= kMaxIterations);
// Longer passwords are refused before anything is hashed or stored.
inline constexpr size_t kMaxPasswordBytes = 1024;
inline constexpr size_t kSaltLen = 12;
inline constexpr size_t kHashLen = 64;

struct PasswordHash {
  enum class Kind : uint8_t { kSha512Pbkdf2 = 7, kSha512 = 6 };
  Kind kind = Kind::kSha512Pbkdf2;
  int iterations = 0;  // only for kSha512Pbkdf2
  std::array<uint8_t, kSaltLen> salt{};
  std::array<uint8_t, kHashLen> hash{};
};

// Parses an encoded hash; the error names what is wrong.
Result<PasswordHash> ParsePasswordHash(std::string_view encoded);

// Encodes back to the text form above.
std::string EncodePasswordHash(const PasswordHash& hash);

// True when `password` matches. Always does the full computation.
bool VerifyPassword(const PasswordHash& hash, std::string_view password);

// PBKDF2 iterations one VerifyPassword of `hash` performs (0 for $6$: one
// SHA-512, the cost of about one iteration).
int VerifyIterations(const PasswordHash& hash);

// Spends `iterations` PBKDF2-HMAC-SHA512 rounds on `password` and throws the
// result away: pads a cheap verification to a fixed cost.
void BurnIterations(std::string_view password, int iterations);

// A new $7$ hash with a random salt from the OS CSPRNG.
Result<PasswordHash> HashPassword(std::string_view password,
                                  int iterations = kDefaultIterations);

// A random printable secret (URL-safe Base64 of `bytes` random bytes).
Result<std::string> GenerateSecret(size_t bytes = 24);

// Standard Base64 with padding.
std::string Base64Encode(const uint8_t* data, size_t len);
// Returns false on any character outside the alphabet or bad padding.
bool Base64Decode(std::string_view in, std::string* out);

}  // namespace homepot

#endif  // HOMEPOT_COMMON_CREDENTIALS_H_
