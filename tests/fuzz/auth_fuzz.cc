// libFuzzer target for the authentication inputs and for %u/%c substitution.
//
// The first byte (taken from the end, as FuzzedDataProvider does) picks one
// of two halves; the rest of the input is split into strings (username,
// client id, password, a stored hash, topics, rule filters) and choices.
//
// Authentication half: the stored hash string goes through
// ParsePasswordHash (a parsed hash encodes back to the same text; a refused
// one is not echoed in the error); when it parses with a cheap cost it
// becomes the hash of one more device. Then a sequence of Authenticate (any
// username and password, a few known ones), Sweep, Forget, clock moves
// (forward or back, within [0, 2^40) ms: a monotonic clock since boot) and
// snapshot swaps (a password changed, a device disabled) runs against one
// Authenticator with cheap hashes (failure_iterations 3). Checked:
//  - the result is what the registry says (allow iff registered, enabled,
//    with that password), except kLockedOut (lockout on) and kThrottled
//    (budget on); never kAllow for a username with '+', '#' or '/' or a
//    password over kMaxPasswordBytes;
//  - an invalid username or an over-long password is refused unhashed and
//    unstored (iterations_spent and tracked_failures unchanged);
//  - every refusal after a full verification costs exactly
//    failure_iterations; a success costs the stored hash's iterations, or
//    nothing when the secret is cached (a model of the cache);
//  - tracked_failure_bytes() <= kMaxFailureBytes and matches the entries;
//    a lockout only follows max_failures recorded failures; with the clock
//    frozen (and no budget) the lockout is predicted exactly. (Once per
//    process, LLVMFuzzerInitialize fills the table to its cap, which no
//    4 KB input reaches, and checks it stays bounded.)
//
// %u/%c half: a snapshot with %u/%c rules (global and per device, plus up to
// two rules from the input) and a client id from the input, passed as the
// plugin passes it ("" unless ClientIdMayExpand). For topics and filters
// from the input (partly assembled from ids and prefixes), checked:
//  - ClientIdFormatProblem and ClientIdMayExpand agree with the rules in
//    acl.h (an expandable id has no '/', '+', '#', no leading '$', and is no
//    other device's id);
//  - AclAllows agrees with a reference written from acl.h's description over
//    an independent matcher, for every access; nothing under $SYS/ is
//    writable; a '$' topic is never matched by a rule that begins with %c or
//    a wildcard;
//  - with "" for %c, no rule holding %c matches anything, and a snapshot
//    whose rules all hold %c allows only the own token and rejection topic;
//  - FilterMatches and FilterInside agree with the reference matcher;
//    FilterInside(topic, f) == FilterMatches(f, topic) for topic names;
//    FilterInside(inner, outer) holds for sampled topics of inner.
// Any violation aborts (libFuzzer then saves the input).
#include <fuzzer/FuzzedDataProvider.h>
#include <openssl/evp.h>

#include <array>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "acl.h"
#include "auth.h"
#include "credentials.h"
#include "registry.h"
#include "topic.h"

namespace {

using homepot::Access;
using homepot::AclRule;
using homepot::AuthOptions;
using homepot::AuthResult;
using homepot::Authenticator;
using homepot::Device;
using homepot::PasswordHash;
using homepot::Snapshot;

// Printable form of a string for failure messages.
std::string Show(std::string_view s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
      out.push_back(static_cast<char>(c));
    } else {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    }
  }
  return out + "\"";
}

[[noreturn]] void Fail(const char* what, const std::string& detail) {
  std::fprintf(stderr, "auth_fuzz: %s %s\n", what, detail.c_str());
  std::abort();
}
// CHECK(condition[, detail]) aborts with the condition's text and detail
// (a string expression, evaluated only then).
#define CHECK(cond, ...)                                          \
  do {                                                            \
    if (!(cond)) Fail("CHECK failed: " #cond, std::string(__VA_ARGS__)); \
  } while (0)

bool StartsWith(std::string_view s, std::string_view p) {
  return s.substr(0, p.size()) == p;
}
bool Contains(std::string_view s, char c) {
  return s.find(c) != std::string_view::npos;
}

// ---------------------------------------------------------------------------
// Authentication.

constexpr int kFailureIterations = 3;
constexpr size_t kLongPasswordBytes = homepot::kMaxPasswordBytes;

struct Known {
  const char* id;
  std::string password;
  int iterations;  // 0: $6$
  bool enabled;
  bool has_password;
};

const std::vector<Known>& KnownDevices() {
  static const std::vector<Known> known = {
      {"dev-1", "pw-one", 1, true, true},
      {"dev-2", "pw-two", 2, true, true},
      {"dev-3", "pw-three", 3, true, true},
      {"sha6", "pw-six", 0, true, true},
      {"off", "pw-off", 2, false, true},
      {"off6", "pw-off6", 0, false, true},
      {"nopw", "", 0, true, false},
      {"long", std::string(kLongPasswordBytes, 'x'), 1, true, true},
      {"%u", "pw-pct", 1, true, true},
  };
  return known;
}

PasswordHash Sha512Hash(std::string_view password) {
  PasswordHash h;
  h.kind = PasswordHash::Kind::kSha512;
  for (size_t i = 0; i < h.salt.size(); ++i) h.salt[i] = uint8_t(i * 7 + 1);
  std::vector<uint8_t> in(password.begin(), password.end());
  in.insert(in.end(), h.salt.begin(), h.salt.end());
  unsigned int len = 0;
  if (EVP_Digest(in.data(), in.size(), h.hash.data(), &len, EVP_sha512(),
                 nullptr) != 1 ||
      len != h.hash.size()) {
    Fail("EVP_Digest failed", {});
  }
  return h;
}

PasswordHash MakeHash(const std::string& password, int iterations) {
  if (iterations == 0) return Sha512Hash(password);
  auto h = homepot::HashPassword(password, iterations);
  if (!h.ok()) Fail("HashPassword failed", h.status().message());
  return *h;
}

// The known devices' hashes, computed once (salts are random per process;
// nothing checked depends on them).
struct KnownHashes {
  std::vector<PasswordHash> a;  // snapshot A
  PasswordHash dev1_b;          // dev-1's password in snapshot B
};
const KnownHashes& Hashes() {
  static const KnownHashes hashes = [] {
    KnownHashes k;
    for (const Known& d : KnownDevices()) {
      k.a.push_back(MakeHash(d.password, d.iterations));
    }
    k.dev1_b = MakeHash("pw-one-b", 2);
    return k;
  }();
  return hashes;
}

// Snapshot A: the known devices. B: dev-1 has a new password, dev-2 is
// disabled, off is enabled. Both hold the input's device when there is one.
std::shared_ptr<const Snapshot> AuthSnapshot(bool b, const Device* extra) {
  std::vector<Device> devices;
  const auto& known = KnownDevices();
  for (size_t i = 0; i < known.size(); ++i) {
    Device d;
    d.id = known[i].id;
    d.enabled = known[i].enabled;
    d.has_password = known[i].has_password;
    if (d.has_password) d.password = Hashes().a[i];
    if (b) {
      if (d.id == "dev-1") d.password = Hashes().dev1_b;
      if (d.id == "dev-2") d.enabled = false;
      if (d.id == "off") d.enabled = true;
    }
    devices.push_back(std::move(d));
  }
  if (extra != nullptr) devices.push_back(*extra);
  return Snapshot::Build(std::move(devices), {}, b ? 2 : 1, 10240);
}

// ParsePasswordHash on arbitrary text; returns the hash when it parses.
bool CheckParse(const std::string& text, PasswordHash* out) {
  auto parsed = homepot::ParsePasswordHash(text);
  if (!parsed.ok()) {
    const std::string& msg = parsed.status().message();
    CHECK(!msg.empty(), Show(text));
    // The input might be a plaintext password: never echoed. (Only the
    // fixed "unknown type" message names "$7$" or "$6$".)
    if (StartsWith(text, "$7$") || StartsWith(text, "$6$")) {
      CHECK(msg.find("$7$") == std::string::npos &&
                msg.find("$6$") == std::string::npos,
            Show(text) + " -> " + msg);
    } else if (!text.empty()) {
      CHECK(msg == "unknown password hash type (expected $7$ or $6$)",
            Show(text) + " -> " + msg);
    }
    return false;
  }
  const PasswordHash& h = *parsed;
  if (h.kind == PasswordHash::Kind::kSha512Pbkdf2) {
    CHECK(h.iterations >= 1 && h.iterations <= homepot::kMaxIterations,
          Show(text));
    CHECK(homepot::VerifyIterations(h) == h.iterations, Show(text));
  } else {
    CHECK(h.kind == PasswordHash::Kind::kSha512, Show(text));
    CHECK(homepot::VerifyIterations(h) == 0, Show(text));
  }
  // Canonical: encoding gives back the very text, and parses the same.
  std::string encoded = homepot::EncodePasswordHash(h);
  CHECK(encoded == text, Show(text) + " re-encodes as " + Show(encoded));
  auto again = homepot::ParsePasswordHash(encoded);
  CHECK(again.ok() && again->kind == h.kind &&
            again->iterations == h.iterations && again->salt == h.salt &&
            again->hash == h.hash,
        Show(text));
  *out = h;
  return true;
}

const char* Name(AuthResult r) {
  switch (r) {
    case AuthResult::kAllow: return "allow";
    case AuthResult::kDeny: return "deny";
    case AuthResult::kLockedOut: return "locked-out";
    case AuthResult::kDefer: return "defer";
    case AuthResult::kThrottled: return "throttled";
  }
  return "?";
}

void FuzzAuth(FuzzedDataProvider& in) {
  // Options: every combination of lockout, defer, budget; lockout_ms within
  // the configurable range (1 s .. 7 days).
  static constexpr int kMaxFailures[] = {0, 1, 3, 5};
  static constexpr int64_t kLockoutMs[] = {1000, 60000, 604800000};
  static constexpr int64_t kBudget[] = {0, 0, 1, 250000};
  const uint8_t config = in.ConsumeIntegral<uint8_t>();
  AuthOptions options;
  options.max_failures = kMaxFailures[config & 3];
  options.lockout_ms = kLockoutMs[((config >> 2) & 3) % 3];
  options.defer_unknown = (config & 0x10) != 0;
  options.hash_budget_us_per_s = kBudget[(config >> 5) & 3];
  options.failure_iterations = kFailureIterations;
  // A frozen clock makes the lockout predictable (and needs no budget,
  // which would never refill).
  const bool frozen = (config & 0x80) != 0;
  if (frozen) options.hash_budget_us_per_s = 0;

  // The stored hash (arbitrary text) and the id of the device that has it.
  const std::string stored = in.ConsumeRandomLengthString(200);
  const std::string extra_id = in.ConsumeRandomLengthString(140);
  const bool extra_enabled = in.ConsumeBool();
  Device extra;
  bool have_extra = false;
  PasswordHash parsed;
  if (CheckParse(stored, &parsed) && homepot::IsValidDeviceId(extra_id)) {
    have_extra = true;
    for (const Known& k : KnownDevices()) have_extra &= extra_id != k.id;
    extra.id = extra_id;
    extra.enabled = extra_enabled;
    // Only hashes no dearer than failure_iterations (the documented
    // precondition, and it keeps runs fast).
    extra.has_password =
        homepot::VerifyIterations(parsed) <= kFailureIterations;
    if (extra.has_password) extra.password = parsed;
  }
  std::shared_ptr<const Snapshot> snapshots[2] = {
      AuthSnapshot(false, have_extra ? &extra : nullptr),
      AuthSnapshot(true, have_extra ? &extra : nullptr)};
  int current = 0;

  Authenticator auth(options);
  CHECK(auth.iterations_spent() == 0, "new Authenticator");
  CHECK(auth.tracked_failures() == 0 && auth.tracked_failure_bytes() == 0,
        "new Authenticator");

  // Models: failures recorded per username since its last success (an
  // upper bound on the lockout counter; exact when frozen), and the cache
  // of verified secrets (username -> hash it matched, password).
  std::map<std::string, int> failures;
  std::map<std::string, std::pair<std::array<uint8_t, homepot::kHashLen>,
                                  std::string>>
      cached;
  int64_t now = in.ConsumeIntegralInRange<int64_t>(0, int64_t{1} << 40);

  auto check_table = [&](const auto& where) {
    size_t n = auth.tracked_failures();
    size_t bytes = auth.tracked_failure_bytes();
    CHECK(bytes <= Authenticator::kMaxFailureBytes, where());
    // Names are valid ids: 1..128 bytes each.
    CHECK(bytes >= n * (Authenticator::kFailureEntryOverhead + 1) &&
              bytes <= n * (Authenticator::kFailureEntryOverhead + 128),
          where());
    if (options.max_failures <= 0) CHECK(n == 0, where());
    CHECK(auth.cached_secrets() == cached.size(), where());
  };

  for (int ops = 0; ops < 64 && in.remaining_bytes() > 0; ++ops) {
    const Snapshot& snap = *snapshots[current];
    const auto& known = KnownDevices();
    const uint8_t op = in.ConsumeIntegralInRange<uint8_t>(0, 11);
    if (op <= 5) {
      // Username: a known id, the input's device, or arbitrary bytes.
      std::string user;
      const uint8_t pick = in.ConsumeIntegral<uint8_t>();
      if (pick < 128) {
        size_t i = pick % (known.size() + 1);
        user = i < known.size() ? known[i].id : extra_id;
      } else {
        user = in.ConsumeRandomLengthString(160);
      }
      // Password: a device's own, a near miss, a long one, or arbitrary.
      std::string password;
      const uint8_t how = in.ConsumeIntegralInRange<uint8_t>(0, 5);
      const Known& some = known[in.ConsumeIntegral<uint8_t>() % known.size()];
      const Known* own = nullptr;
      for (const Known& k : known) {
        if (user == k.id) own = &k;
      }
      switch (how) {
        case 0:
          password = own ? own->password : some.password;
          if (current == 1 && user == "dev-1") password = "pw-one-b";
          break;
        case 1:
          password = some.password;
          break;
        case 2:
          password = (own ? own->password : some.password) +
                     in.ConsumeRandomLengthString(8);
          break;
        case 3:
          password.assign(in.ConsumeIntegralInRange<size_t>(
                              kLongPasswordBytes - 2, kLongPasswordBytes + 2),
                          'x');
          break;
        default:
          password = in.ConsumeRandomLengthString(1100);
          break;
      }

      const bool valid = homepot::IsValidDeviceId(user);
      const Device* d = valid ? snap.Find(user) : nullptr;
      const bool too_long = password.size() > homepot::kMaxPasswordBytes;
      // Deferral comes after the password limit and pays the dummy hash.
      const bool deferred =
          valid && d == nullptr && options.defer_unknown && !too_long;
      const bool hashed = valid && !deferred && !too_long;
      const bool right = d != nullptr && d->has_password &&
                         homepot::VerifyPassword(d->password, password);
      AuthResult expected;
      if (!valid) {
        expected = options.defer_unknown ? AuthResult::kDefer : AuthResult::kDeny;
      } else if (too_long) {
        expected = AuthResult::kDeny;
      } else if (deferred) {
        expected = AuthResult::kDefer;
      } else {
        expected = right && d->enabled ? AuthResult::kAllow : AuthResult::kDeny;
      }

      const size_t tracked_before = auth.tracked_failures();
      const uint64_t spent_before = auth.iterations_spent();
      const AuthResult r = auth.Authenticate(snap, user, password, now);
      const uint64_t spent = auth.iterations_spent() - spent_before;
      const size_t tracked = auth.tracked_failures();
      auto what = [&] {
        return "user " + Show(user) + " password " +
               Show(std::string_view(password).substr(0, 64)) + " (" +
               std::to_string(password.size()) + " bytes) now " +
               std::to_string(now) + " snapshot " + std::to_string(current) +
               " config " + std::to_string(config) + ": " + Name(r) +
               ", expected " + Name(expected) + ", spent " +
               std::to_string(spent);
      };

      // The result.
      if (r == AuthResult::kLockedOut) {
        CHECK(hashed && options.max_failures > 0, what());
        CHECK(failures[user] >= options.max_failures, what());
      } else if (r == AuthResult::kThrottled) {
        CHECK((hashed || deferred) && options.hash_budget_us_per_s > 0,
              what());
      } else {
        CHECK(r == expected, what());
      }
      if (frozen && hashed && options.max_failures > 0) {
        CHECK((r == AuthResult::kLockedOut) ==
                  (failures[user] >= options.max_failures),
              what());
      }
      if (user.find_first_of("+#/") != std::string::npos) {
        CHECK(r != AuthResult::kAllow, what());
      }
      if (too_long) CHECK(r != AuthResult::kAllow, what());

      // Nothing hashed or stored for what can never log in; a deferral
      // costs what a refusal costs and stores nothing.
      if (!hashed && !deferred) {
        CHECK(spent == 0 && tracked == tracked_before, what());
      }
      if (deferred) {
        CHECK(tracked == tracked_before, what());
        CHECK(spent == (r == AuthResult::kDefer
                            ? static_cast<uint64_t>(kFailureIterations)
                            : 0u),
              what());
      }
      if (!valid) CHECK(tracked == tracked_before, what());

      // The cost.
      switch (r) {
        case AuthResult::kAllow: {
          auto c = cached.find(user);
          bool hit = c != cached.end() && c->second.first == d->password.hash &&
                     c->second.second == password;
          CHECK(spent == (hit ? 0u
                              : static_cast<uint64_t>(
                                    homepot::VerifyIterations(d->password))),
                what());
          cached[user] = {d->password.hash, password};
          failures.erase(user);
          CHECK(tracked <= tracked_before, what());
          break;
        }
        case AuthResult::kDeny:
          if (hashed) {
            // Every refusal after a hash costs the same, the right
            // password of a disabled device included.
            CHECK(spent == static_cast<uint64_t>(kFailureIterations), what());
            ++failures[user];
            CHECK(tracked <= tracked_before + 1, what());
          }
          break;
        case AuthResult::kDefer:
          break;  // checked above
        case AuthResult::kLockedOut:
          // With deferral a lockout pays the dummy hash (unknown names,
          // deferred, never lock out), when the budget allows.
          CHECK(spent == 0 || (options.defer_unknown &&
                               spent == static_cast<uint64_t>(
                                            kFailureIterations)),
                what());
          CHECK(tracked <= tracked_before, what());
          break;
        default:
          CHECK(spent == 0, what());
          CHECK(tracked <= tracked_before, what());
          break;
      }
      check_table(what);
    } else if (op == 6) {
      const size_t before = auth.tracked_failures();
      auth.Sweep(now);
      CHECK(auth.tracked_failures() <= before, "Sweep");
      if (frozen) CHECK(auth.tracked_failures() == before, "Sweep, frozen");
      check_table([] { return std::string("after Sweep"); });
    } else if (op == 7) {
      std::string user;
      const uint8_t pick = in.ConsumeIntegral<uint8_t>();
      if (pick < 128) {
        size_t i = pick % (known.size() + 1);
        user = i < known.size() ? known[i].id : extra_id;
      } else {
        user = in.ConsumeRandomLengthString(160);
      }
      const size_t tracked = auth.tracked_failures();
      const uint64_t spent = auth.iterations_spent();
      auth.Forget(user);
      cached.erase(user);
      CHECK(auth.tracked_failures() == tracked &&
                auth.iterations_spent() == spent,
            "Forget " + Show(user));
      check_table([&] { return "after Forget " + Show(user); });
    } else if (op == 8 || op == 9) {
      if (!frozen) {
        now += in.ConsumeIntegralInRange<int64_t>(0, 2 * options.lockout_ms);
        if (now >= int64_t{1} << 40) now = 0;
      }
    } else if (op == 10) {
      if (!frozen) now = in.ConsumeIntegralInRange<int64_t>(0, int64_t{1} << 40);
    } else {
      current ^= 1;  // a registry reload
    }
  }
}

// ---------------------------------------------------------------------------
// %u / %c.

constexpr uint8_t kR = homepot::kRuleRead;
constexpr uint8_t kW = homepot::kRuleWrite;
constexpr uint8_t kD = homepot::kRuleDeny;

// An independent reading of topic.h: placeholders are substituted as text
// (an empty value, or one with '/', matches nothing), then levels are
// compared as MQTT does. Only for the plugin's inputs: valid filters and
// substituted values without '+', '#' or '/' at the start of a level.
bool Expand(std::string_view filter, std::string_view user,
            std::string_view cid, std::string* out) {
  out->clear();
  for (size_t i = 0; i < filter.size(); ++i) {
    if (filter[i] == '%' && i + 1 < filter.size() &&
        (filter[i + 1] == 'u' || filter[i + 1] == 'c')) {
      std::string_view v = filter[i + 1] == 'u' ? user : cid;
      if (v.empty() || Contains(v, '/')) return false;
      out->append(v);
      ++i;
    } else {
      out->push_back(filter[i]);
    }
  }
  return true;
}

// Splits `s` into `levels` (reused by the callers: this runs often).
void Levels(std::string_view s, std::vector<std::string_view>* levels) {
  levels->clear();
  while (true) {
    size_t slash = s.find('/');
    levels->push_back(s.substr(0, slash));
    if (slash == std::string_view::npos) return;
    s.remove_prefix(slash + 1);
  }
}

bool RefValidFilter(std::string_view f) {
  if (f.empty() || Contains(f, '\0')) return false;
  static std::vector<std::string_view> levels;
  Levels(f, &levels);
  for (size_t i = 0; i < levels.size(); ++i) {
    std::string_view l = levels[i];
    if ((Contains(l, '+') || Contains(l, '#')) && l.size() != 1) return false;
    if (l == "#" && i + 1 != levels.size()) return false;
  }
  return true;
}

// `filter` literally (no placeholders) against a topic name.
bool RefMatchesLiteral(std::string_view filter, std::string_view topic) {
  if (filter.empty() || topic.empty()) return false;
  if (topic[0] == '$' && (filter[0] == '+' || filter[0] == '#')) return false;
  static std::vector<std::string_view> f, t;
  Levels(filter, &f);
  Levels(topic, &t);
  for (size_t i = 0; i < f.size(); ++i) {
    if (f[i] == "#") return true;  // also the parent level
    if (i >= t.size()) return false;
    if (f[i] != "+" && f[i] != t[i]) return false;
  }
  return f.size() == t.size();
}

bool RefMatches(std::string_view filter, std::string_view topic,
                std::string_view user, std::string_view cid) {
  static std::string expanded;
  if (filter.empty() || topic.empty()) return false;
  if (topic[0] == '$' && (filter[0] == '+' || filter[0] == '#')) return false;
  if (!Expand(filter, user, cid, &expanded)) return false;
  return RefMatchesLiteral(expanded, topic);
}

// Every topic `inner` (literal) matches is matched by `outer` (substituted).
bool RefInside(std::string_view inner, std::string_view outer,
               std::string_view user, std::string_view cid) {
  if (inner.empty() || outer.empty()) return false;
  if (inner[0] == '$' && (outer[0] == '+' || outer[0] == '#')) return false;
  static std::string expanded;
  if (!Expand(outer, user, cid, &expanded)) return false;
  static std::vector<std::string_view> i, o;
  Levels(inner, &i);
  Levels(expanded, &o);
  for (size_t k = 0; k < o.size(); ++k) {
    if (o[k] == "#") return k + 1 == o.size();
    if (k >= i.size()) return false;
    if (i[k] == "#") return false;
    if (o[k] == "+") continue;
    if (i[k] == "+" || i[k] != o[k]) return false;
  }
  return i.size() == o.size();
}

bool IsOwnToken(const Device& d, std::string_view topic) {
  return d.token.empty() ? topic == "devices/" + d.id + "/notifications"
                         : topic == d.token;
}
bool IsOwnRejection(const Device& d, std::string_view topic) {
  return topic == std::string(homepot::kRejectionsPrefix) + d.id;
}

template <typename Test>
bool AnyRule(const Snapshot& snap, const Device& d, uint8_t bits, Test test) {
  for (const AclRule& r : d.rules) {
    if ((r.access & bits) && test(r.filter)) return true;
  }
  for (const AclRule& r : snap.global_rules()) {
    if ((r.access & bits) && test(r.filter)) return true;
  }
  return false;
}

// acl.h's AclAllows, from its comment.
bool RefAllows(const Snapshot& snap, const Device* d, std::string_view cid,
               std::string_view topic, Access access) {
  if (d == nullptr || !d->enabled) return false;
  if (access == Access::kUnsubscribe) return true;
  if (StartsWith(topic, "$CONTROL/")) return false;
  auto matches = [&](const std::string& f) {
    return RefMatches(f, topic, d->id, cid);
  };
  if (access == Access::kWrite) {
    if (StartsWith(topic, "$SYS/") || topic.empty() || Contains(topic, '+') ||
        Contains(topic, '#')) {
      return false;
    }
    return !AnyRule(snap, *d, kD, matches) && AnyRule(snap, *d, kW, matches);
  }
  if (access == Access::kRead) {
    if (StartsWith(topic, homepot::kRejectionsPrefix) &&
        !IsOwnRejection(*d, topic)) {
      return false;
    }
    if (AnyRule(snap, *d, kD, matches)) return false;
    if (IsOwnToken(*d, topic) || IsOwnRejection(*d, topic)) return true;
    return AnyRule(snap, *d, kR, matches);
  }
  std::string_view f = homepot::StripSharePrefix(topic);
  if (!RefValidFilter(f)) return false;
  auto inside = [&](const std::string& outer) {
    return RefInside(f, outer, d->id, cid);
  };
  if (AnyRule(snap, *d, kD, inside)) return false;
  if (IsOwnToken(*d, f) || IsOwnRejection(*d, f)) return true;
  if (RefInside(f, "$SYS/homepot/rejections/#", {}, {})) return false;
  return AnyRule(snap, *d, kR, inside);
}

struct RuleSpec {
  const char* device;  // nullptr: global
  const char* filter;
  uint8_t access;
};
const std::vector<RuleSpec>& BaseRules() {
  static const std::vector<RuleSpec> rules = {
      {nullptr, "%c/#", kR},
      {nullptr, "devices/%u/#", kR | kW},
      {nullptr, "a/%c", kW},
      {nullptr, "%u", kR},
      {nullptr, "+/%c/+", kR | kW},
      {nullptr, "devices/%c/#", kR},
      {nullptr, "s/+/%c/#", kR},
      {nullptr, "%c/%u", kD},
      {nullptr, "pub/+", kR},
      {"alpha", "%c", kR | kW},
      {"alpha", "t/%c/%u/#", kR},
      {"alpha", "deny/%c", kD},
      {"alpha", "deny/#", kR},
      {"beta", "%c/+/x", kR},
      {"beta", "$SYS/c/%c", kR},
      {"beta", "$SYS/#", kR | kW},
      {"beta", "#", kR},
      {"gamma", "#", kR | kW},
      {"p%cq", "%u/%c", kR | kW},
      {"p%cq", "x/%c%u/#", kR},
      {"%u", "x/%u", kR | kW},
      {"%u", "+/#", kW},
  };
  return rules;
}

struct AclWorld {
  std::shared_ptr<const Snapshot> full;   // all rules
  std::shared_ptr<const Snapshot> conly;  // only the rules holding %c
};

AclWorld MakeAclWorld(const std::vector<std::pair<std::string, AclRule>>& extra) {
  auto make = [&](bool only_c) {
    const char* ids[] = {"alpha", "beta", "gamma", "devices", "p%cq", "%u"};
    std::vector<Device> devices;
    for (const char* id : ids) {
      Device d;
      d.id = id;
      d.enabled = d.id != "gamma";
      if (d.id == "beta") d.token = "tok/beta";
      devices.push_back(std::move(d));
    }
    std::vector<AclRule> global;
    auto add = [&](const std::string& device, const AclRule& rule) {
      if (only_c && rule.filter.find("%c") == std::string::npos) return;
      if (device.empty()) {
        global.push_back(rule);
        return;
      }
      for (Device& d : devices) {
        if (d.id == device) d.rules.push_back(rule);
      }
    };
    for (const RuleSpec& s : BaseRules()) {
      add(s.device ? s.device : "", AclRule{s.filter, s.access});
    }
    for (const auto& [device, rule] : extra) add(device, rule);
    return Snapshot::Build(std::move(devices), std::move(global), 1, 10240);
  };
  return {make(false), make(true)};
}

// A few topic names matched by `filter` (taken literally): '+' and '#' are
// replaced by sample levels (the values never start with '$').
std::vector<std::string> SampleTopics(std::string_view filter,
                                      std::string_view user,
                                      std::string_view cid, uint8_t seed) {
  const std::string_view pool[] = {"x", "", "%c", "a b", user, cid};
  std::vector<std::string> out;
  std::vector<std::string_view> levels;
  Levels(filter, &levels);
  for (unsigned n = 0; n < 4; ++n) {
    std::vector<std::string_view> parts;
    for (size_t i = 0; i < levels.size(); ++i) {
      const std::string_view v = pool[(seed + 7u * n + 3u * i) % 6];
      if (levels[i] == "+") {
        parts.push_back(v);
      } else if (levels[i] == "#") {
        switch ((seed + n) % 4) {
          case 0:  // the parent level: "a/#" matches "a"
            break;
          case 1:
            parts.push_back(v);
            break;
          case 2:
            parts.push_back(v);
            parts.push_back("y");
            break;
          default:
            parts.push_back("");
            parts.push_back("");
            break;
        }
      } else {
        parts.push_back(levels[i]);
      }
    }
    std::string t;
    for (size_t i = 0; i < parts.size(); ++i) {
      if (i > 0) t.push_back('/');
      t.append(parts[i]);
    }
    if (homepot::IsValidTopic(t) && RefMatchesLiteral(filter, t)) {
      out.push_back(std::move(t));
    }
  }
  return out;
}

void CheckClientId(const Snapshot& snap, std::string_view cid) {
  bool form_ok = !cid.empty() && cid.size() <= homepot::kMaxClientIdBytes &&
                 cid[0] != '$' && cid.find_first_of(std::string_view("+#/\0", 4)) ==
                                      std::string_view::npos;
  const char* problem = homepot::ClientIdFormatProblem(cid);
  CHECK((problem == nullptr) == form_ok, Show(cid));
  const Device* owner = nullptr;
  for (const Device& d : snap.devices()) {
    if (d.id == cid) owner = &d;
  }
  for (const Device& d : snap.devices()) {
    bool may = homepot::ClientIdMayExpand(snap, d, cid);
    CHECK(may == (form_ok && (owner == nullptr || owner == &d)),
          Show(cid) + " for " + Show(d.id));
    if (may) {
      CHECK(cid.find_first_of("/+#") == std::string_view::npos &&
                !cid.empty() && cid[0] != '$',
            Show(cid));
    }
  }
}

void CheckTopic(const AclWorld& w, const Device* d, std::string_view raw_cid,
                std::string_view cid, std::string_view topic, uint8_t seed) {
  const Snapshot& snap = *w.full;
  static constexpr Access kAll[] = {Access::kRead, Access::kWrite,
                                    Access::kSubscribe, Access::kUnsubscribe};
  static constexpr const char* kNames[] = {"read", "write", "subscribe",
                                           "unsubscribe"};
  auto ctx = [&] {
    return "device " + (d ? Show(d->id) : "(none)") + " client id " +
           Show(raw_cid) + " as " + Show(cid) + " topic " + Show(topic);
  };
  for (int k = 0; k < 4; ++k) {
    const Access a = kAll[k];
    auto what = [&] { return ctx() + " " + kNames[k]; };
    const bool allowed = homepot::AclAllows(snap, d, cid, topic, a);
    CHECK(allowed == RefAllows(snap, d, cid, topic, a), what());
    if (d == nullptr || !d->enabled) CHECK(!allowed, what());
    if (a == Access::kWrite && StartsWith(topic, "$SYS/")) {
      CHECK(!allowed, what());
    }
    if (a != Access::kUnsubscribe && StartsWith(topic, "$CONTROL/")) {
      CHECK(!allowed, what());
    }
    if (d == nullptr) continue;
    // Read access to a '$' topic comes from the own token or rejection
    // topic, or from a rule that names the '$' level itself.
    if (a == Access::kRead && allowed && !topic.empty() && topic[0] == '$') {
      bool via_dollar = AnyRule(snap, *d, kR, [&](const std::string& f) {
        return f[0] == '$' && RefMatches(f, topic, d->id, cid);
      });
      CHECK(via_dollar || IsOwnToken(*d, topic) || IsOwnRejection(*d, topic),
            what());
    }
    // With "" for %c, a snapshot whose rules all hold %c grants nothing but
    // what every device has.
    if (cid.empty() && a != Access::kUnsubscribe) {
      bool conly =
          homepot::AclAllows(*w.conly, w.conly->Find(d->id), cid, topic, a);
      // (a subscription is compared without its $share/<group>/ prefix)
      const std::string_view t =
          a == Access::kSubscribe ? homepot::StripSharePrefix(topic) : topic;
      bool own = a != Access::kWrite &&
                 (IsOwnToken(*d, t) || IsOwnRejection(*d, t));
      CHECK(!conly || own, what() + " (rules with %c only)");
    }
  }
  if (d == nullptr) return;

  // Rule by rule.
  const std::string_view filter = homepot::StripSharePrefix(topic);
  const bool topic_ok = homepot::IsValidTopic(topic);
  const bool filter_ok = homepot::IsValidFilter(filter);
  CHECK(filter_ok == RefValidFilter(filter), ctx());
  std::vector<const AclRule*> rules;
  for (const AclRule& r : d->rules) rules.push_back(&r);
  for (const AclRule& r : snap.global_rules()) rules.push_back(&r);
  for (const AclRule* r : rules) {
    const std::string& f = r->filter;
    auto what = [&] { return ctx() + " rule " + Show(f); };
    const bool m = homepot::FilterMatches(f, topic, d->id, cid);
    CHECK(m == RefMatches(f, topic, d->id, cid), what());
    if (!topic.empty() && topic[0] == '$' &&
        (StartsWith(f, "%c") || f[0] == '+' || f[0] == '#')) {
      CHECK(!m, what());
    }
    if (cid.empty() && f.find("%c") != std::string::npos) {
      CHECK(!m, what());
      CHECK(!homepot::FilterInside(topic, f, d->id, cid), what());
      CHECK(!homepot::FilterInside(filter, f, d->id, cid), what());
    }
    if (topic_ok) {
      CHECK(homepot::FilterInside(topic, f, d->id, cid) == m, what());
    }
    if (filter_ok) {
      const bool inside = homepot::FilterInside(filter, f, d->id, cid);
      CHECK(inside == RefInside(filter, f, d->id, cid), what() + " inside");
      if (filter[0] == '$' &&
          (StartsWith(f, "%c") || f[0] == '+' || f[0] == '#')) {
        CHECK(!inside, what() + " inside");
      }
      if (inside) {
        for (const std::string& t : SampleTopics(filter, d->id, cid, seed)) {
          CHECK(homepot::FilterMatches(f, t, d->id, cid),
                what() + " inside, but not sample " + Show(t));
        }
      }
    }
  }
  // A granted subscription only receives topics a read rule (or the own
  // token / rejection topic, subscribed exactly) allows.
  if (filter_ok && homepot::AclAllows(snap, d, cid, topic, Access::kSubscribe) &&
      !IsOwnToken(*d, filter) && !IsOwnRejection(*d, filter)) {
    for (const std::string& t : SampleTopics(filter, d->id, cid, seed)) {
      CHECK(AnyRule(snap, *d, kR,
                    [&](const std::string& f) {
                      return homepot::FilterMatches(f, t, d->id, cid);
                    }),
            ctx() + " subscribed, sample " + Show(t));
    }
  }
}

void FuzzAcl(FuzzedDataProvider& in) {
  // Up to two rules from the input, kept only when LoadSnapshot would.
  static constexpr uint8_t kAccess[] = {kR, kW, kR | kW, kD};
  static const char* const kOwners[] = {"", "alpha", "beta", "p%cq"};
  std::vector<std::pair<std::string, AclRule>> extra;
  const int n_extra = in.ConsumeIntegralInRange<int>(0, 2);
  for (int i = 0; i < n_extra; ++i) {
    std::string filter = in.ConsumeRandomLengthString(64);
    uint8_t access = kAccess[in.ConsumeIntegral<uint8_t>() & 3];
    const char* owner = kOwners[in.ConsumeIntegral<uint8_t>() & 3];
    if (homepot::IsValidFilter(filter)) {
      extra.emplace_back(owner, AclRule{std::move(filter), access});
    }
  }
  const AclWorld w = MakeAclWorld(extra);
  const Snapshot& snap = *w.full;

  const std::string raw_cid = in.ConsumeRandomLengthString(300);
  CheckClientId(snap, raw_cid);
  const uint8_t which = in.ConsumeIntegral<uint8_t>();
  const auto& devices = snap.devices();
  const Device* d =
      which % (devices.size() + 1) < devices.size()
          ? &devices[which % (devices.size() + 1)]
          : nullptr;
  // As the plugin does: %c only for an id that may expand, else "".
  const bool may = d != nullptr && homepot::ClientIdMayExpand(snap, *d, raw_cid);
  const std::string_view cid = may ? std::string_view(raw_cid) : "";

  // Topics: arbitrary bytes, or assembled from pieces.
  const std::string_view pieces[] = {
      "$SYS/", "devices/", "/", "+", "#", "$share/g/", "$CONTROL/",
      "$SYS/homepot/rejections/", "/notifications", "tok/beta", "a/", "s/",
      "t/", "x/", "deny/", "%c", "%u", "pub/", "$", raw_cid,
      d ? std::string_view(d->id) : "alpha", "beta", "alpha"};
  for (int ops = 0; ops < 16 && in.remaining_bytes() > 0; ++ops) {
    std::string topic;
    if (in.ConsumeBool()) {
      topic = in.ConsumeRandomLengthString(128);
    } else {
      int n = in.ConsumeIntegralInRange<int>(1, 6);
      for (int i = 0; i < n; ++i) {
        uint8_t p = in.ConsumeIntegral<uint8_t>();
        if (p < 2 * std::size(pieces)) {
          topic.append(pieces[p % std::size(pieces)]);
        } else {
          topic.append(in.ConsumeRandomLengthString(8));
        }
      }
    }
    CheckTopic(w, d, raw_cid, cid, topic, in.ConsumeIntegral<uint8_t>());
    // The same topic for a device chosen anew (a client id given to a
    // device it does not belong to, or to another device's id).
    const Device* other = &devices[in.ConsumeIntegral<uint8_t>() % devices.size()];
    const bool other_may = homepot::ClientIdMayExpand(snap, *other, raw_cid);
    CheckTopic(w, other, raw_cid, other_may ? std::string_view(raw_cid) : "",
               topic, 0);
  }
}

// Once per process: fills the lockout table to kMaxFailureBytes (out of
// reach of a 4 KB input), then checks that it stays there and that a Sweep
// after the lockout empties it.
void CheckFullFailureTable() {
  AuthOptions options;
  options.max_failures = 1;
  options.lockout_ms = 1000;
  options.failure_iterations = 1;
  options.hash_budget_us_per_s = 0;
  Authenticator auth(options);
  auto snap = Snapshot::Build({}, {}, 1, 10240);
  std::string name(128, 'n');
  auto next_name = [&] {  // distinct 128-byte valid ids
    for (size_t i = 0; i < name.size(); ++i) {
      if (name[i] < 'z') {
        ++name[i];
        break;
      }
      name[i] = 'a';
    }
    return name;
  };
  size_t added = 0;
  while (true) {
    const size_t before = auth.tracked_failures();
    CHECK(auth.Authenticate(*snap, next_name(), "p", 0) == AuthResult::kDeny,
          "filling");
    CHECK(auth.tracked_failure_bytes() <= Authenticator::kMaxFailureBytes,
          "filling");
    if (auth.tracked_failures() == before) break;  // full
    ++added;
  }
  const size_t per_entry = 128 + Authenticator::kFailureEntryOverhead;
  CHECK(added == Authenticator::kMaxFailureBytes / per_entry,
        std::to_string(added) + " entries");
  for (int i = 0; i < 8; ++i) {
    CHECK(auth.Authenticate(*snap, next_name(), "p", 999) == AuthResult::kDeny,
          "full");
    CHECK(auth.tracked_failures() == added, "full");
  }
  // Locked until 1000: a name at 1000 sweeps them all and is tracked.
  CHECK(auth.Authenticate(*snap, next_name(), "p", 1000) == AuthResult::kDeny,
        "after the lockout");
  CHECK(auth.tracked_failures() == 1 &&
            auth.tracked_failure_bytes() == per_entry,
        std::to_string(auth.tracked_failures()) + " entries left");
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  CheckFullFailureTable();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider in(data, size);
  if (in.ConsumeBool()) {
    FuzzAuth(in);
  } else {
    FuzzAcl(in);
  }
  return 0;
}
