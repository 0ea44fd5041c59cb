#include "credentials.h"

#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <vector>

namespace homepot {
namespace {

// Written by the real mosquitto_passwd 2.0.11; see
// fixtures/mosquitto_passwd.README for how.
struct FixtureUser {
  std::string password;
  PasswordHash::Kind kind;
  int iterations;  // 0 for $6$
};

const std::map<std::string, FixtureUser>& FixtureUsers() {
  static const auto* users = new std::map<std::string, FixtureUser>{
      {"sensor-001", {"s3cret-one", PasswordHash::Kind::kSha512Pbkdf2, 101}},
      {"homepot", {"backend-pass", PasswordHash::Kind::kSha512Pbkdf2, 101}},
      {"legacy", {"old-password", PasswordHash::Kind::kSha512, 0}},
      {"gateway-01", {"gw-pass-1000", PasswordHash::Kind::kSha512Pbkdf2, 1000}},
  };
  return *users;
}

// (username, encoded hash) for every line of the fixture password file.
std::vector<std::pair<std::string, std::string>> ReadFixtureFile() {
  std::ifstream in(std::string(HOMEPOT_FIXTURES) + "/mosquitto_passwd.txt");
  EXPECT_TRUE(in.is_open());
  std::vector<std::pair<std::string, std::string>> lines;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    size_t colon = line.find(':');
    EXPECT_NE(colon, std::string::npos) << line;
    lines.emplace_back(line.substr(0, colon), line.substr(colon + 1));
  }
  return lines;
}

// A valid salt (12 bytes) and hash (64 bytes) taken from the fixture.
constexpr char kSalt[] = "5AHoPHDl2ytDuruf";
constexpr char kHash[] =
    "lj4FD+343eBd8+MMkSzPAvGIayItaP4RvFTA2MPaKq+fzFN34+fREEFh4kCzu3WS7LjGwXuTwc"
    "jg8uFqjLugOA==";

std::string Pbkdf2(const std::string& iterations) {
  return "$7$" + iterations + "$" + kSalt + "$" + kHash;
}

TEST(CredentialsFixtureTest, EveryUserOfTheRealPasswordFileVerifies) {
  auto lines = ReadFixtureFile();
  ASSERT_EQ(lines.size(), FixtureUsers().size());
  for (const auto& [user, encoded] : lines) {
    SCOPED_TRACE(user);
    auto it = FixtureUsers().find(user);
    ASSERT_NE(it, FixtureUsers().end());
    const FixtureUser& want = it->second;

    Result<PasswordHash> hash = ParsePasswordHash(encoded);
    ASSERT_TRUE(hash.ok()) << hash.status().message();
    EXPECT_EQ(hash->kind, want.kind);
    EXPECT_EQ(hash->iterations, want.iterations);

    EXPECT_TRUE(VerifyPassword(*hash, want.password));
    EXPECT_FALSE(VerifyPassword(*hash, want.password + "x"));
    EXPECT_FALSE(VerifyPassword(*hash, want.password.substr(1)));
    EXPECT_FALSE(VerifyPassword(*hash, ""));
    EXPECT_FALSE(VerifyPassword(*hash, "wrong"));
  }
}

TEST(CredentialsFixtureTest, EncodeOfParseGivesBackTheSameText) {
  for (const auto& [user, encoded] : ReadFixtureFile()) {
    Result<PasswordHash> hash = ParsePasswordHash(encoded);
    ASSERT_TRUE(hash.ok()) << user << ": " << hash.status().message();
    EXPECT_EQ(EncodePasswordHash(*hash), encoded) << user;
  }
}

TEST(CredentialsFixtureTest, PasswordsAreNotInterchangeable) {
  for (const auto& [user, encoded] : ReadFixtureFile()) {
    Result<PasswordHash> hash = ParsePasswordHash(encoded);
    ASSERT_TRUE(hash.ok());
    for (const auto& [other, info] : FixtureUsers()) {
      if (other == user) continue;
      EXPECT_FALSE(VerifyPassword(*hash, info.password))
          << user << "/" << other;
    }
  }
}

TEST(CredentialsTest, TamperedHashSaltOrIterationsFail) {
  Result<PasswordHash> good = ParsePasswordHash(Pbkdf2("101"));
  ASSERT_TRUE(good.ok());
  ASSERT_TRUE(VerifyPassword(*good, "s3cret-one"));

  PasswordHash h = *good;
  h.hash[63] ^= 1;
  EXPECT_FALSE(VerifyPassword(h, "s3cret-one"));
  h = *good;
  h.salt[0] ^= 0x80;
  EXPECT_FALSE(VerifyPassword(h, "s3cret-one"));
  h = *good;
  h.iterations = 100;
  EXPECT_FALSE(VerifyPassword(h, "s3cret-one"));
  h = *good;
  h.kind = PasswordHash::Kind::kSha512;
  EXPECT_FALSE(VerifyPassword(h, "s3cret-one"));
}

TEST(CredentialsTest, VerifyRejectsOutOfRangeIterationsInAHandBuiltHash) {
  Result<PasswordHash> good = ParsePasswordHash(Pbkdf2("101"));
  ASSERT_TRUE(good.ok());
  PasswordHash h = *good;
  h.iterations = 0;
  EXPECT_FALSE(VerifyPassword(h, "s3cret-one"));
  h.iterations = -101;
  EXPECT_FALSE(VerifyPassword(h, "s3cret-one"));
  h.iterations = kMaxIterations + 1;
  EXPECT_FALSE(VerifyPassword(h, "s3cret-one"));
}

TEST(CredentialsTest, HashPasswordThenVerify) {
  Result<PasswordHash> h = HashPassword("correct horse");
  ASSERT_TRUE(h.ok()) << h.status().message();
  EXPECT_EQ(h->kind, PasswordHash::Kind::kSha512Pbkdf2);
  EXPECT_EQ(h->iterations, kDefaultIterations);
  EXPECT_TRUE(VerifyPassword(*h, "correct horse"));
  EXPECT_FALSE(VerifyPassword(*h, "correct horse "));
  EXPECT_FALSE(VerifyPassword(*h, "Correct horse"));

  // The text form survives a round trip and still verifies.
  std::string encoded = EncodePasswordHash(*h);
  EXPECT_EQ(encoded.rfind("$7$1000$", 0), 0u) << encoded;
  Result<PasswordHash> parsed = ParsePasswordHash(encoded);
  ASSERT_TRUE(parsed.ok()) << parsed.status().message();
  EXPECT_TRUE(VerifyPassword(*parsed, "correct horse"));
  EXPECT_EQ(EncodePasswordHash(*parsed), encoded);
}

TEST(CredentialsTest, HashPasswordHonoursIterationsAndUsesFreshSalts) {
  Result<PasswordHash> a = HashPassword("same", 1);
  Result<PasswordHash> b = HashPassword("same", 1);
  ASSERT_TRUE(a.ok());
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(a->iterations, 1);
  EXPECT_NE(a->salt, b->salt);
  EXPECT_NE(a->hash, b->hash);
  EXPECT_TRUE(VerifyPassword(*a, "same"));
  EXPECT_TRUE(VerifyPassword(*b, "same"));
}

TEST(CredentialsTest, HashPasswordRejectsBadIterations) {
  for (int bad : {0, -1, kMaxIterations + 1}) {
    Result<PasswordHash> h = HashPassword("pw", bad);
    ASSERT_FALSE(h.ok()) << bad;
    EXPECT_EQ(h.status().message(), "iterations must be between 1 and 1000");
  }
}

TEST(CredentialsTest, PasswordsAreBytesNotCStrings) {
  const std::string with_nul("abc\0def", 7);
  Result<PasswordHash> h = HashPassword(with_nul, 1);
  ASSERT_TRUE(h.ok());
  EXPECT_TRUE(VerifyPassword(*h, with_nul));
  EXPECT_FALSE(VerifyPassword(*h, "abc"));

  Result<PasswordHash> empty = HashPassword("", 1);
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(VerifyPassword(*empty, ""));
  EXPECT_FALSE(VerifyPassword(*empty, "x"));
  // Note: HMAC zero-pads its key, so under $7$ "" and "\0" (or "abc" and
  // "abc\0") are the same password. That is PBKDF2-HMAC's nature, shared with
  // mosquitto_passwd; the broker hands plugins NUL-terminated passwords anyway.

  const std::string long_pw(100'000, 'p');
  Result<PasswordHash> big = HashPassword(long_pw, 1);
  ASSERT_TRUE(big.ok());
  EXPECT_TRUE(VerifyPassword(*big, long_pw));
  EXPECT_FALSE(VerifyPassword(*big, long_pw.substr(1)));
}

TEST(CredentialsTest, ParseAcceptsTheIterationBounds) {
  Result<PasswordHash> one = ParsePasswordHash(Pbkdf2("1"));
  ASSERT_TRUE(one.ok()) << one.status().message();
  EXPECT_EQ(one->iterations, 1);
  Result<PasswordHash> max = ParsePasswordHash(Pbkdf2("1000"));
  ASSERT_TRUE(max.ok()) << max.status().message();
  EXPECT_EQ(max->iterations, kMaxIterations);
}

struct ParseErrorCase {
  std::string input;
  std::string message;
};

class ParsePasswordHashErrorTest
    : public ::testing::TestWithParam<ParseErrorCase> {};

TEST_P(ParsePasswordHashErrorTest, FailsWithExactMessage) {
  Result<PasswordHash> h = ParsePasswordHash(GetParam().input);
  ASSERT_FALSE(h.ok());
  EXPECT_EQ(h.status().message(), GetParam().message);
}

const std::string kS = kSalt;
const std::string kH = kHash;
const char kUnknown[] = "unknown password hash type (expected $7$ or $6$)";
const char kTooFew[] = "password hash has too few '$'-separated fields";
const char kTooMany[] = "password hash has too many '$'-separated fields";
const char kNotDecimal[] = "iteration count is not a decimal number";
const char kZero[] = "iteration count must be at least 1";
std::string AboveMax(const std::string& shown) {
  return "iteration count " + shown +
         " is above 1000, the most a login may cost on the broker thread; "
         "set a new password with `homepot-admin device passwd`";
}

INSTANTIATE_TEST_SUITE_P(
    Cases, ParsePasswordHashErrorTest,
    ::testing::Values(
        ParseErrorCase{"", "password hash is empty"},
        // Unknown prefix; the text is never echoed (it may be a password).
        ParseErrorCase{"s3cret-one", kUnknown},
        ParseErrorCase{"$5$" + kS + "$" + kH, kUnknown},
        ParseErrorCase{"$1$" + kS + "$" + kH, kUnknown},
        ParseErrorCase{"7$101$" + kS + "$" + kH, kUnknown},
        ParseErrorCase{"$7", kUnknown},
        ParseErrorCase{"$$7$101$" + kS + "$" + kH, kUnknown},
        ParseErrorCase{" $7$101$" + kS + "$" + kH, kUnknown},
        ParseErrorCase{"$77$101$" + kS + "$" + kH, kUnknown},
        // Field counts.
        ParseErrorCase{"$7$", kTooFew}, ParseErrorCase{"$7$101$" + kS, kTooFew},
        ParseErrorCase{"$7$" + kS + "$" + kH, kTooFew},
        ParseErrorCase{"$6$" + kH, kTooFew},
        ParseErrorCase{"$7$101$" + kS + "$" + kH + "$extra", kTooMany},
        ParseErrorCase{"$7$101$" + kS + "$" + kH + "$", kTooMany},
        ParseErrorCase{"$6$" + kS + "$" + kH + "$", kTooMany},
        ParseErrorCase{"$6$101$" + kS + "$" + kH, kTooMany},
        // Iteration counts.
        ParseErrorCase{Pbkdf2(""), "iteration count is empty"},
        ParseErrorCase{Pbkdf2("abc"), kNotDecimal},
        ParseErrorCase{Pbkdf2("+101"), kNotDecimal},
        ParseErrorCase{Pbkdf2("-101"), kNotDecimal},
        ParseErrorCase{Pbkdf2(" 101"), kNotDecimal},
        ParseErrorCase{Pbkdf2("101 "), kNotDecimal},
        ParseErrorCase{Pbkdf2("1e3"), kNotDecimal},
        ParseErrorCase{Pbkdf2("0x65"), kNotDecimal},
        ParseErrorCase{Pbkdf2("0101"), "iteration count has a leading zero"},
        ParseErrorCase{Pbkdf2("00"), "iteration count has a leading zero"},
        ParseErrorCase{Pbkdf2("0"), kZero},
        ParseErrorCase{Pbkdf2("1001"), AboveMax("1001")},
        ParseErrorCase{Pbkdf2("2147483648"), AboveMax("2147483648")},
        ParseErrorCase{Pbkdf2("99999999999999999999999999"),
                       AboveMax("of 26 digits")},
        // Salt.
        ParseErrorCase{"$7$101$5AHoPHDl2ytDuru!$" + kH,
                       "salt is not valid Base64"},
        ParseErrorCase{"$7$101$5AHoPHDl2ytDuru$" + kH,
                       "salt is not valid Base64"},
        ParseErrorCase{"$7$101$5AHo-HDl2ytDuruf$" + kH,
                       "salt is not valid Base64"},
        ParseErrorCase{"$7$101$AAAAAAAAAAAA$" + kH,
                       "salt must decode to 12 bytes, got 9"},
        ParseErrorCase{"$7$101$AAAAAAAAAAAAAAAAAAAA$" + kH,
                       "salt must decode to 12 bytes, got 15"},
        ParseErrorCase{"$7$101$$" + kH, "salt must decode to 12 bytes, got 0"},
        ParseErrorCase{"$6$AAAAAAAAAAAAAA==$" + kH,
                       "salt must decode to 12 bytes, got 10"},
        // Hash.
        ParseErrorCase{"$7$101$" + kS + "$" + kH.substr(0, 86),
                       "hash is not valid Base64"},
        ParseErrorCase{"$7$101$" + kS + "$" + kH + "\n",
                       "hash is not valid Base64"},
        ParseErrorCase{"$7$101$" + kS + "$" + kH + "\r",
                       "hash is not valid Base64"},
        ParseErrorCase{"$6$" + kS + "$" + kH.substr(0, 84),
                       "hash must decode to 64 bytes, got 63"},
        ParseErrorCase{"$6$" + kS + "$" + kH.substr(0, 84) + "AAAA",
                       "hash must decode to 64 bytes, got 66"},
        ParseErrorCase{"$7$101$" + kS + "$",
                       "hash must decode to 64 bytes, got 0"}));

TEST(Base64Test, Rfc4648Vectors) {
  const std::vector<std::pair<std::string, std::string>> vectors = {
      {"", ""},
      {"f", "Zg=="},
      {"fo", "Zm8="},
      {"foo", "Zm9v"},
      {"foob", "Zm9vYg=="},
      {"fooba", "Zm9vYmE="},
      {"foobar", "Zm9vYmFy"},
  };
  for (const auto& [plain, encoded] : vectors) {
    EXPECT_EQ(Base64Encode(reinterpret_cast<const uint8_t*>(plain.data()),
                           plain.size()),
              encoded);
    std::string out = "junk";
    ASSERT_TRUE(Base64Decode(encoded, &out)) << encoded;
    EXPECT_EQ(out, plain);
  }
}

TEST(Base64Test, EveryByteValueRoundTrips) {
  std::vector<uint8_t> all(256);
  for (int i = 0; i < 256; ++i) all[i] = static_cast<uint8_t>(i);
  for (size_t len = 0; len <= all.size(); ++len) {
    std::string encoded = Base64Encode(all.data(), len);
    EXPECT_EQ(encoded.size(), (len + 2) / 3 * 4);
    std::string decoded;
    ASSERT_TRUE(Base64Decode(encoded, &decoded)) << len;
    ASSERT_EQ(decoded.size(), len);
    EXPECT_EQ(0, memcmp(decoded.data(), all.data(), len));
  }
}

TEST(Base64Test, DecodeRejectsMalformedInputAndClearsOutput) {
  for (const char* bad : {
           "Zg",        // missing padding
           "Zg=",       // short padding
           "Zm9",       // not a multiple of 4
           "Z===",      // three padding characters
           "====",      // padding only
           "=Zm9",      // padding at the start
           "Zg==Zg==",  // padding in the middle
           "Zm=v",      // padding before data
           "Zh==",      // non-zero bits under the padding
           "Zm9=",      // non-zero bits under the padding
           "Zm9v\n",    // whitespace
           "Zm 9v",     // whitespace
           "-_-_",      // URL-safe alphabet
           "Zm9v!AAA",  // character outside the alphabet
       }) {
    std::string out = "junk";
    EXPECT_FALSE(Base64Decode(bad, &out)) << bad;
    EXPECT_TRUE(out.empty()) << bad;
  }
  std::string out;
  EXPECT_FALSE(Base64Decode(std::string_view("Zm9\0", 4), &out));
}

TEST(GenerateSecretTest, IsUrlSafeBase64WithoutPadding) {
  Result<std::string> s = GenerateSecret();
  ASSERT_TRUE(s.ok()) << s.status().message();
  EXPECT_EQ(s->size(), 32u);  // 24 bytes
  EXPECT_EQ(s->find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                 "abcdefghijklmnopqrstuvwxyz0123456789-_"),
            std::string::npos)
      << *s;

  // Lengths that would need padding get none.
  for (auto [bytes, chars] : std::vector<std::pair<size_t, size_t>>{
           {1, 2}, {2, 3}, {3, 4}, {16, 22}, {32, 43}}) {
    Result<std::string> t = GenerateSecret(bytes);
    ASSERT_TRUE(t.ok());
    EXPECT_EQ(t->size(), chars) << bytes;
    EXPECT_EQ(t->find('='), std::string::npos);
  }
}

TEST(GenerateSecretTest, SecretsDiffer) {
  std::set<std::string> seen;
  for (int i = 0; i < 100; ++i) {
    Result<std::string> s = GenerateSecret(16);
    ASSERT_TRUE(s.ok());
    EXPECT_TRUE(seen.insert(*s).second);
  }
}

TEST(GenerateSecretTest, RejectsZeroAndHugeLengths) {
  for (size_t bad : {size_t{0}, size_t{4097}}) {
    Result<std::string> s = GenerateSecret(bad);
    ASSERT_FALSE(s.ok());
    EXPECT_EQ(s.status().message(),
              "secret length must be between 1 and 4096 bytes");
  }
}

}  // namespace
}  // namespace homepot
