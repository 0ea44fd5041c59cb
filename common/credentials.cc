#include "credentials.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <algorithm>
#include <array>
#include <climits>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace homepot {
namespace {

constexpr char kStdAlphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
constexpr char kUrlAlphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

// Encodes with `alphabet`; appends '=' padding when `pad` is true.
std::string EncodeWith(const char* alphabet, const uint8_t* data, size_t len,
                       bool pad) {
  std::string out;
  out.reserve((len + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 3 <= len; i += 3) {
    uint32_t v =
        (uint32_t{data[i]} << 16) | (uint32_t{data[i + 1]} << 8) | data[i + 2];
    out.push_back(alphabet[(v >> 18) & 63]);
    out.push_back(alphabet[(v >> 12) & 63]);
    out.push_back(alphabet[(v >> 6) & 63]);
    out.push_back(alphabet[v & 63]);
  }
  size_t rest = len - i;
  if (rest == 1) {
    uint32_t v = uint32_t{data[i]} << 16;
    out.push_back(alphabet[(v >> 18) & 63]);
    out.push_back(alphabet[(v >> 12) & 63]);
    if (pad) out.append("==");
  } else if (rest == 2) {
    uint32_t v = (uint32_t{data[i]} << 16) | (uint32_t{data[i + 1]} << 8);
    out.push_back(alphabet[(v >> 18) & 63]);
    out.push_back(alphabet[(v >> 12) & 63]);
    out.push_back(alphabet[(v >> 6) & 63]);
    if (pad) out.push_back('=');
  }
  return out;
}

// Value of a standard-alphabet character, or -1.
// Value of a standard Base64 character, -1 for anything else. A table: the
// registry load decodes two fields per device.
constexpr std::array<int8_t, 256> MakeStdTable() {
  std::array<int8_t, 256> t{};
  for (auto& v : t) v = -1;
  for (int i = 0; i < 26; ++i) {
    t['A' + i] = static_cast<int8_t>(i);
    t['a' + i] = static_cast<int8_t>(26 + i);
  }
  for (int i = 0; i < 10; ++i) t['0' + i] = static_cast<int8_t>(52 + i);
  t['+'] = 62;
  t['/'] = 63;
  return t;
}
constexpr std::array<int8_t, 256> kStdTable = MakeStdTable();

int StdValue(char c) { return kStdTable[static_cast<unsigned char>(c)]; }

// Parses a decimal iteration count: digits only, no sign, no leading zero,
// 1..kMaxIterations.
Result<int> ParseIterations(std::string_view s) {
  if (s.empty()) return Status::Error("iteration count is empty");
  for (char c : s) {
    if (c < '0' || c > '9') {
      return Status::Error("iteration count is not a decimal number");
    }
  }
  if (s.size() > 1 && s[0] == '0') {
    return Status::Error("iteration count has a leading zero");
  }
  int64_t value = 0;
  for (char c : s) {
    value = value * 10 + (c - '0');
    if (value > kMaxIterations) break;  // stop before any overflow
  }
  if (value < 1) return Status::Error("iteration count must be at least 1");
  if (value > kMaxIterations) {
    std::string shown = s.size() <= 12
                            ? std::string(s)
                            : "of " + std::to_string(s.size()) + " digits";
    return Status::Error("iteration count " + shown + " is above " +
                         std::to_string(kMaxIterations) +
                         ", the most a login may cost on the broker "
                         "thread; set a new password with `homepot-admin "
                         "device passwd`");
  }
  return static_cast<int>(value);
}

// Decodes `field` (named `what` in errors) into exactly `N` bytes.
template <size_t N>
Status DecodeFixed(std::string_view field, const char* what,
                   std::array<uint8_t, N>* out) {
  std::string bytes;
  if (!Base64Decode(field, &bytes)) {
    return Status::Error(std::string(what) + " is not valid Base64");
  }
  if (bytes.size() != N) {
    return Status::Error(std::string(what) + " must decode to " +
                         std::to_string(N) + " bytes, got " +
                         std::to_string(bytes.size()));
  }
  for (size_t i = 0; i < N; ++i) (*out)[i] = static_cast<uint8_t>(bytes[i]);
  OPENSSL_cleanse(bytes.data(), bytes.size());
  return Status::Ok();
}

// Computes the digest for `hash`'s kind, iterations and salt into `out`.
bool Compute(const PasswordHash& hash, std::string_view password,
             std::array<uint8_t, kHashLen>* out) {
  if (hash.kind == PasswordHash::Kind::kSha512Pbkdf2) {
    if (hash.iterations < 1 || hash.iterations > kMaxIterations) return false;
    if (password.size() > static_cast<size_t>(INT_MAX)) return false;
    return PKCS5_PBKDF2_HMAC(password.data(), static_cast<int>(password.size()),
                             hash.salt.data(), static_cast<int>(kSaltLen),
                             hash.iterations, EVP_sha512(),
                             static_cast<int>(kHashLen), out->data()) == 1;
  }
  if (hash.kind == PasswordHash::Kind::kSha512) {
    EVP_MD_CTX* ctx = EVP_MD_CTX_new();
    if (ctx == nullptr) return false;
    unsigned int len = 0;
    bool ok = EVP_DigestInit_ex(ctx, EVP_sha512(), nullptr) == 1 &&
              EVP_DigestUpdate(ctx, password.data(), password.size()) == 1 &&
              EVP_DigestUpdate(ctx, hash.salt.data(), kSaltLen) == 1 &&
              EVP_DigestFinal_ex(ctx, out->data(), &len) == 1 &&
              len == kHashLen;
    EVP_MD_CTX_free(ctx);
    return ok;
  }
  return false;
}

}  // namespace

Result<PasswordHash> ParsePasswordHash(std::string_view encoded) {
  if (encoded.empty()) return Status::Error("password hash is empty");
  PasswordHash out;
  size_t want_fields;
  if (encoded.substr(0, 3) == "$7$") {
    out.kind = PasswordHash::Kind::kSha512Pbkdf2;
    want_fields = 3;  // iterations, salt, hash
  } else if (encoded.substr(0, 3) == "$6$") {
    out.kind = PasswordHash::Kind::kSha512;
    want_fields = 2;  // salt, hash
  } else {
    // The input is never echoed: it might be a plaintext password.
    return Status::Error("unknown password hash type (expected $7$ or $6$)");
  }

  std::vector<std::string_view> fields;
  std::string_view rest = encoded.substr(3);
  while (true) {
    size_t dollar = rest.find('$');
    fields.push_back(rest.substr(0, dollar));
    if (dollar == std::string_view::npos) break;
    rest.remove_prefix(dollar + 1);
  }
  if (fields.size() < want_fields) {
    return Status::Error("password hash has too few '$'-separated fields");
  }
  if (fields.size() > want_fields) {
    return Status::Error("password hash has too many '$'-separated fields");
  }

  size_t next = 0;
  if (out.kind == PasswordHash::Kind::kSha512Pbkdf2) {
    Result<int> iterations = ParseIterations(fields[next++]);
    if (!iterations.ok()) return iterations.status();
    out.iterations = *iterations;
  }
  Status s = DecodeFixed(fields[next++], "salt", &out.salt);
  if (!s.ok()) return s;
  s = DecodeFixed(fields[next++], "hash", &out.hash);
  if (!s.ok()) return s;
  return out;
}

std::string EncodePasswordHash(const PasswordHash& hash) {
  std::string out;
  if (hash.kind == PasswordHash::Kind::kSha512Pbkdf2) {
    out = "$7$" + std::to_string(hash.iterations) + "$";
  } else {
    out = "$6$";
  }
  out += Base64Encode(hash.salt.data(), hash.salt.size());
  out += '$';
  out += Base64Encode(hash.hash.data(), hash.hash.size());
  return out;
}

bool VerifyPassword(const PasswordHash& hash, std::string_view password) {
  std::array<uint8_t, kHashLen> computed{};
  bool ok = Compute(hash, password, &computed);
  // Compare even when Compute failed, so the work done does not depend on it.
  bool same = CRYPTO_memcmp(computed.data(), hash.hash.data(), kHashLen) == 0;
  OPENSSL_cleanse(computed.data(), computed.size());
  return ok && same;
}

int VerifyIterations(const PasswordHash& hash) {
  return hash.kind == PasswordHash::Kind::kSha512Pbkdf2 ? hash.iterations : 0;
}

void BurnIterations(std::string_view password, int iterations) {
  if (iterations <= 0) return;
  static constexpr std::array<uint8_t, kSaltLen> kSalt{};
  std::array<uint8_t, kHashLen> out{};
  PKCS5_PBKDF2_HMAC(
      password.data(),
      static_cast<int>(std::min(password.size(), size_t{INT_MAX})),
      kSalt.data(), static_cast<int>(kSaltLen), iterations, EVP_sha512(),
      static_cast<int>(kHashLen), out.data());
  OPENSSL_cleanse(out.data(), out.size());
}

Result<PasswordHash> HashPassword(std::string_view password, int iterations) {
  if (iterations < 1 || iterations > kMaxIterations) {
    return Status::Error("iterations must be between 1 and " +
                         std::to_string(kMaxIterations));
  }
  PasswordHash out;
  out.kind = PasswordHash::Kind::kSha512Pbkdf2;
  out.iterations = iterations;
  if (RAND_bytes(out.salt.data(), static_cast<int>(out.salt.size())) != 1) {
    return Status::Error("RAND_bytes failed to produce a salt");
  }
  if (!Compute(out, password, &out.hash)) {
    return Status::Error("PBKDF2-HMAC-SHA512 failed");
  }
  return out;
}

Result<std::string> GenerateSecret(size_t bytes) {
  if (bytes == 0 || bytes > 4096) {
    return Status::Error("secret length must be between 1 and 4096 bytes");
  }
  std::vector<uint8_t> raw(bytes);
  if (RAND_bytes(raw.data(), static_cast<int>(raw.size())) != 1) {
    return Status::Error("RAND_bytes failed to produce a secret");
  }
  std::string out = EncodeWith(kUrlAlphabet, raw.data(), raw.size(), false);
  OPENSSL_cleanse(raw.data(), raw.size());
  return out;
}

std::string Base64Encode(const uint8_t* data, size_t len) {
  return EncodeWith(kStdAlphabet, data, len, true);
}

bool Base64Decode(std::string_view in, std::string* out) {
  out->clear();
  if (in.size() % 4 != 0) return false;
  std::string result;  // moved into *out only on success
  result.reserve(in.size() / 4 * 3);
  for (size_t i = 0; i < in.size(); i += 4) {
    bool last = i + 4 == in.size();
    // '=' may only appear as the last one or two characters of the input.
    size_t pad = 0;
    if (last && in[i + 3] == '=') pad = in[i + 2] == '=' ? 2 : 1;
    int v[4] = {0, 0, 0, 0};
    for (size_t j = 0; j < 4 - pad; ++j) {
      v[j] = StdValue(in[i + j]);
      if (v[j] < 0) return false;
    }
    uint32_t bits = (uint32_t(v[0]) << 18) | (uint32_t(v[1]) << 12) |
                    (uint32_t(v[2]) << 6) | uint32_t(v[3]);
    // Unused low bits before padding must be zero (canonical encoding), so
    // that decoding then encoding gives back the same text.
    if ((pad == 2 && (bits & 0xFFFF) != 0) ||
        (pad == 1 && (bits & 0xFF) != 0)) {
      return false;
    }
    result.push_back(static_cast<char>(bits >> 16));
    if (pad < 2) result.push_back(static_cast<char>((bits >> 8) & 0xFF));
    if (pad < 1) result.push_back(static_cast<char>(bits & 0xFF));
  }
  *out = std::move(result);
  return true;
}

}  // namespace homepot
