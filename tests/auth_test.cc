#include "auth.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "credentials.h"
#include "registry.h"

namespace homepot {
namespace {

constexpr int kIterations = 10;  // keeps the tests fast
constexpr int64_t kLockoutMs = 60000;

PasswordHash Hash(const std::string& password) {
  Result<PasswordHash> h = HashPassword(password, kIterations);
  EXPECT_TRUE(h.ok());
  return *h;
}

Device MakeDevice(const std::string& id, const PasswordHash* hash,
                  bool enabled = true) {
  Device d;
  d.id = id;
  d.enabled = enabled;
  if (hash != nullptr) {
    d.has_password = true;
    d.password = *hash;
  }
  return d;
}

// Every full hash takes exactly kHashUs by this clock: the hashing budget
// is spent deterministically.
class SteppingClock : public Clock {
 public:
  static constexpr int64_t kHashUs = 1000;
  int64_t MonotonicMs() override { return us_ / 1000; }
  int64_t WallMs() override { return us_ / 1000; }
  int64_t MonotonicUs() override { return us_ += kHashUs / 2; }

 private:
  int64_t us_ = 0;
};

class AuthTest : public ::testing::Test {
 protected:
  AuthTest() {
    options_.max_failures = 3;
    options_.lockout_ms = kLockoutMs;
    options_.failure_iterations = kIterations;
  }
  void SetUp() override {
    sensor_hash_ = Hash("right");
    other_hash_ = Hash("other-pass");
    snapshot_ = SnapshotWith(sensor_hash_, /*sensor_enabled=*/true);
  }

  std::shared_ptr<const Snapshot> SnapshotWith(const PasswordHash& sensor,
                                               bool sensor_enabled) {
    std::vector<Device> devices;
    devices.push_back(MakeDevice("sensor-001", &sensor, sensor_enabled));
    devices.push_back(MakeDevice("sensor-002", &other_hash_));
    PasswordHash off = Hash("off-pass");
    devices.push_back(MakeDevice("disabled-1", &off, /*enabled=*/false));
    devices.push_back(MakeDevice("no-password", nullptr));
    return Snapshot::Build(std::move(devices), {}, 1, 10240);
  }

  std::unique_ptr<Authenticator> Make() {
    return std::make_unique<Authenticator>(options_, &clock_);
  }

  AuthOptions options_;
  SteppingClock clock_;
  PasswordHash sensor_hash_;
  PasswordHash other_hash_;
  std::shared_ptr<const Snapshot> snapshot_;
};

TEST_F(AuthTest, RightPasswordIsAllowed) {
  auto auth = Make();
  EXPECT_EQ(auth->Authenticate(*snapshot_, "sensor-001", "right", 0),
            AuthResult::kAllow);
  EXPECT_EQ(auth->Authenticate(*snapshot_, "sensor-002", "other-pass", 0),
            AuthResult::kAllow);
}

TEST_F(AuthTest, WrongPasswordIsDenied) {
  auto auth = Make();
  EXPECT_EQ(auth->Authenticate(*snapshot_, "sensor-001", "wrong", 0),
            AuthResult::kDeny);
  EXPECT_EQ(auth->Authenticate(*snapshot_, "sensor-001", "", 0),
            AuthResult::kDeny);
  EXPECT_EQ(auth->Authenticate(*snapshot_, "sensor-001", "right ", 0),
            AuthResult::kDeny);
  // Another device's password does not work.
  EXPECT_EQ(auth->Authenticate(*snapshot_, "sensor-002", "right", 0),
            AuthResult::kDeny);
}

TEST_F(AuthTest, UnknownUsernameIsDenied) {
  auto auth = Make();
  EXPECT_EQ(auth->Authenticate(*snapshot_, "ghost", "right", 0),
            AuthResult::kDeny);
  EXPECT_EQ(auth->Authenticate(*snapshot_, "", "", 0), AuthResult::kDeny);
  EXPECT_EQ(auth->Authenticate(*snapshot_, "SENSOR-001", "right", 0),
            AuthResult::kDeny);
}

TEST_F(AuthTest, UnknownUsernameIsDeferredWhenConfigured) {
  options_.defer_unknown = true;
  auto auth = Make();
  EXPECT_EQ(auth->Authenticate(*snapshot_, "ghost", "anything", 0),
            AuthResult::kDefer);
  // Registered devices are still judged here.
  EXPECT_EQ(auth->Authenticate(*snapshot_, "sensor-001", "wrong", 0),
            AuthResult::kDeny);
  EXPECT_EQ(auth->Authenticate(*snapshot_, "sensor-001", "right", 0),
            AuthResult::kAllow);
  EXPECT_EQ(auth->Authenticate(*snapshot_, "disabled-1", "off-pass", 0),
            AuthResult::kDeny);
  // Deferring is not a failure.
  for (int i = 0; i < 10; ++i) {
    EXPECT_EQ(auth->Authenticate(*snapshot_, "ghost", "x", 0),
              AuthResult::kDefer);
  }
  EXPECT_EQ(auth->tracked_failures(), 1u);  // sensor-001's one wrong attempt
}

TEST_F(AuthTest, DisabledDeviceIsDeniedEvenWithTheRightPassword) {
  auto auth = Make();
  EXPECT_EQ(auth->Authenticate(*snapshot_, "disabled-1", "off-pass", 0),
            AuthResult::kDeny);
  EXPECT_EQ(auth->cached_secrets(), 0u);
}

TEST_F(AuthTest, DeviceDisabledAfterACachedLoginIsDenied) {
  auto auth = Make();
  ASSERT_EQ(auth->Authenticate(*snapshot_, "sensor-001", "right", 0),
            AuthResult::kAllow);
  ASSERT_EQ(auth->cached_secrets(), 1u);
  auto disabled = SnapshotWith(sensor_hash_, /*sensor_enabled=*/false);
  EXPECT_EQ(auth->Authenticate(*disabled, "sensor-001", "right", 1),
            AuthResult::kDeny);
  // And it comes back when re-enabled.
  EXPECT_EQ(auth->Authenticate(*snapshot_, "sensor-001", "right", 2),
            AuthResult::kAllow);
}

TEST_F(AuthTest, DeviceWithoutPasswordIsDenied) {
  auto auth = Make();
  EXPECT_EQ(auth->Authenticate(*snapshot_, "no-password", "", 0),
            AuthResult::kDeny);
  EXPECT_EQ(auth->Authenticate(*snapshot_, "no-password", "anything", 0),
            AuthResult::kDeny);
}

TEST_F(AuthTest, LockoutAfterMaxFailuresRefusesEvenTheRightPassword) {
  auto auth = Make();
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(auth->Authenticate(*snapshot_, "sensor-001", "wrong", 1000 + i),
              AuthResult::kDeny)
        << i;
  }
  EXPECT_EQ(auth->Authenticate(*snapshot_, "sensor-001", "right", 1003),
            AuthResult::kLockedOut);
  EXPECT_EQ(auth->Authenticate(*snapshot_, "sensor-001", "wrong", 1004),
            AuthResult::kLockedOut);
  // Other usernames are not affected.
  EXPECT_EQ(auth->Authenticate(*snapshot_, "sensor-002", "other-pass", 1005),
            AuthResult::kAllow);
}

TEST_F(AuthTest, LockoutExpires) {
  auto auth = Make();
  const int64_t t0 = 5000;
  for (int i = 0; i < 3; ++i) {
    auth->Authenticate(*snapshot_, "sensor-001", "wrong", t0);
  }
  // Locked until t0 + lockout.
  EXPECT_EQ(auth->Authenticate(*snapshot_, "sensor-001", "right", t0 + 1),
            AuthResult::kLockedOut);
  EXPECT_EQ(auth->Authenticate(*snapshot_, "sensor-001", "right",
                               t0 + kLockoutMs - 1),
            AuthResult::kLockedOut);
  EXPECT_EQ(
      auth->Authenticate(*snapshot_, "sensor-001", "right", t0 + kLockoutMs),
      AuthResult::kAllow);
}

TEST_F(AuthTest, AttemptsDuringTheLockoutDoNotExtendIt) {
  auto auth = Make();
  for (int i = 0; i < 3; ++i) {
    auth->Authenticate(*snapshot_, "sensor-001", "wrong", 0);
  }
  for (int64_t t = 1000; t < kLockoutMs; t += 10000) {
    EXPECT_EQ(auth->Authenticate(*snapshot_, "sensor-001", "wrong", t),
              AuthResult::kLockedOut);
  }
  EXPECT_EQ(auth->Authenticate(*snapshot_, "sensor-001", "right", kLockoutMs),
            AuthResult::kAllow);
}

TEST_F(AuthTest, AfterTheLockoutTheCountStartsAgain) {
  auto auth = Make();
  for (int i = 0; i < 3; ++i) {
    auth->Authenticate(*snapshot_, "sensor-001", "wrong", 0);
  }
  const int64_t t = kLockoutMs + 1;
  EXPECT_EQ(auth->Authenticate(*snapshot_, "sensor-001", "wrong", t),
            AuthResult::kDeny);
  EXPECT_EQ(auth->Authenticate(*snapshot_, "sensor-001", "right", t + 1),
            AuthResult::kAllow);
}

TEST_F(AuthTest, FailuresOutsideTheWindowDoNotLockOut) {
  auto auth = Make();
  EXPECT_EQ(auth->Authenticate(*snapshot_, "sensor-001", "wrong", 0),
            AuthResult::kDeny);
  EXPECT_EQ(auth->Authenticate(*snapshot_, "sensor-001", "wrong", 30000),
            AuthResult::kDeny);
  // The window started at 0 and has passed: this failure starts a new one.
  EXPECT_EQ(auth->Authenticate(*snapshot_, "sensor-001", "wrong", 61000),
            AuthResult::kDeny);
  EXPECT_EQ(auth->Authenticate(*snapshot_, "sensor-001", "right", 61001),
            AuthResult::kAllow);
}

TEST_F(AuthTest, SuccessResetsTheFailureCount) {
  auto auth = Make();
  auth->Authenticate(*snapshot_, "sensor-001", "wrong", 0);
  auth->Authenticate(*snapshot_, "sensor-001", "wrong", 1);
  EXPECT_EQ(auth->tracked_failures(), 1u);
  ASSERT_EQ(auth->Authenticate(*snapshot_, "sensor-001", "right", 2),
            AuthResult::kAllow);
  EXPECT_EQ(auth->tracked_failures(), 0u);
  auth->Authenticate(*snapshot_, "sensor-001", "wrong", 3);
  auth->Authenticate(*snapshot_, "sensor-001", "wrong", 4);
  EXPECT_EQ(auth->Authenticate(*snapshot_, "sensor-001", "right", 5),
            AuthResult::kAllow);
  // A success from the cache resets it too.
  auth->Authenticate(*snapshot_, "sensor-001", "wrong", 6);
  auth->Authenticate(*snapshot_, "sensor-001", "wrong", 7);
  EXPECT_EQ(auth->Authenticate(*snapshot_, "sensor-001", "right", 8),
            AuthResult::kAllow);
  auth->Authenticate(*snapshot_, "sensor-001", "wrong", 9);
  EXPECT_EQ(auth->Authenticate(*snapshot_, "sensor-001", "right", 10),
            AuthResult::kAllow);
}

TEST_F(AuthTest, UnknownUsernamesAreLockedOutToo) {
  auto auth = Make();
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(auth->Authenticate(*snapshot_, "ghost", "x", 0),
              AuthResult::kDeny);
  }
  EXPECT_EQ(auth->Authenticate(*snapshot_, "ghost", "x", 1),
            AuthResult::kLockedOut);
}

TEST_F(AuthTest, ZeroMaxFailuresDisablesTheLockout) {
  options_.max_failures = 0;
  auto auth = Make();
  for (int i = 0; i < 20; ++i) {
    EXPECT_EQ(auth->Authenticate(*snapshot_, "sensor-001", "wrong", i),
              AuthResult::kDeny);
  }
  EXPECT_EQ(auth->tracked_failures(), 0u);
  EXPECT_EQ(auth->Authenticate(*snapshot_, "sensor-001", "right", 21),
            AuthResult::kAllow);
}

TEST_F(AuthTest, SecondLoginWithTheSamePasswordIsServedFromTheCache) {
  auto auth = Make();
  EXPECT_EQ(auth->cached_secrets(), 0u);
  ASSERT_EQ(auth->Authenticate(*snapshot_, "sensor-001", "right", 0),
            AuthResult::kAllow);
  EXPECT_EQ(auth->cached_secrets(), 1u);
  EXPECT_EQ(auth->Authenticate(*snapshot_, "sensor-001", "right", 1),
            AuthResult::kAllow);
  EXPECT_EQ(auth->cached_secrets(), 1u);
  // A wrong password is not let through by the cache.
  EXPECT_EQ(auth->Authenticate(*snapshot_, "sensor-001", "wrong", 2),
            AuthResult::kDeny);
  EXPECT_EQ(auth->Authenticate(*snapshot_, "sensor-001", "right", 3),
            AuthResult::kAllow);
}

TEST_F(AuthTest, CacheHitDoesNotRecomputeTheHash) {
  auto auth = Make();
  ASSERT_EQ(auth->Authenticate(*snapshot_, "sensor-001", "right", 0),
            AuthResult::kAllow);
  // Same stored hash bytes, but a salt under which "right" would not verify:
  // only the cache can accept it, which shows the cache is consulted.
  PasswordHash altered = sensor_hash_;
  altered.salt[0] ^= 0xff;
  ASSERT_FALSE(VerifyPassword(altered, "right"));
  auto s = SnapshotWith(altered, true);
  EXPECT_EQ(auth->Authenticate(*s, "sensor-001", "right", 1),
            AuthResult::kAllow);
  // A fresh authenticator, without the cache, refuses it.
  EXPECT_EQ(Make()->Authenticate(*s, "sensor-001", "right", 1),
            AuthResult::kDeny);
}

TEST_F(AuthTest, OldPasswordIsRefusedAfterTheHashChanges) {
  auto auth = Make();
  ASSERT_EQ(auth->Authenticate(*snapshot_, "sensor-001", "right", 0),
            AuthResult::kAllow);
  auto changed = SnapshotWith(Hash("new-pass"), true);
  EXPECT_EQ(auth->Authenticate(*changed, "sensor-001", "right", 1),
            AuthResult::kDeny);
  EXPECT_EQ(auth->Authenticate(*changed, "sensor-001", "new-pass", 2),
            AuthResult::kAllow);
  EXPECT_EQ(auth->Authenticate(*changed, "sensor-001", "right", 3),
            AuthResult::kDeny);
}

TEST_F(AuthTest, RemovedDeviceIsRefusedDespiteTheCache) {
  auto auth = Make();
  ASSERT_EQ(auth->Authenticate(*snapshot_, "sensor-001", "right", 0),
            AuthResult::kAllow);
  auto empty = Snapshot::Build({}, {}, 2, 10240);
  EXPECT_EQ(auth->Authenticate(*empty, "sensor-001", "right", 1),
            AuthResult::kDeny);
}

TEST_F(AuthTest, ForgetDropsTheCachedSecret) {
  auto auth = Make();
  ASSERT_EQ(auth->Authenticate(*snapshot_, "sensor-001", "right", 0),
            AuthResult::kAllow);
  ASSERT_EQ(auth->Authenticate(*snapshot_, "sensor-002", "other-pass", 0),
            AuthResult::kAllow);
  EXPECT_EQ(auth->cached_secrets(), 2u);
  auth->Forget("sensor-001");
  EXPECT_EQ(auth->cached_secrets(), 1u);
  auth->Forget("never-seen");
  EXPECT_EQ(auth->cached_secrets(), 1u);

  // Without the cache, the altered-salt snapshot is judged by the full hash.
  PasswordHash altered = sensor_hash_;
  altered.salt[0] ^= 0xff;
  auto s = SnapshotWith(altered, true);
  EXPECT_EQ(auth->Authenticate(*s, "sensor-001", "right", 1),
            AuthResult::kDeny);
  // And a normal login still works and is cached again.
  EXPECT_EQ(auth->Authenticate(*snapshot_, "sensor-001", "right", 2),
            AuthResult::kAllow);
  EXPECT_EQ(auth->cached_secrets(), 2u);
}

TEST_F(AuthTest, SweepDropsExpiredFailureEntries) {
  auto auth = Make();
  auth->Authenticate(*snapshot_, "a", "x", 0);  // one failure, window at 0
  for (int i = 0; i < 3; ++i) {
    auth->Authenticate(*snapshot_, "b", "x", 10000);  // locked until 70000
  }
  EXPECT_EQ(auth->tracked_failures(), 2u);
  auth->Sweep(kLockoutMs);  // a's window is exactly lockout old: kept
  EXPECT_EQ(auth->tracked_failures(), 2u);
  auth->Sweep(kLockoutMs + 1);  // a's window has passed
  EXPECT_EQ(auth->tracked_failures(), 1u);
  auth->Sweep(10000 + kLockoutMs - 1);  // b still locked
  EXPECT_EQ(auth->tracked_failures(), 1u);
  EXPECT_EQ(auth->Authenticate(*snapshot_, "b", "x", 10000 + kLockoutMs - 1),
            AuthResult::kLockedOut);
  auth->Sweep(10000 + kLockoutMs);
  EXPECT_EQ(auth->tracked_failures(), 0u);
}

}  // namespace
}  // namespace homepot

namespace homepot {
namespace {

// A login flood cannot spend more broker time on hashing than the budget:
// once it is spent, logins that need a full hash are refused unchecked,
// while a device whose secret is cached still gets in; the budget refills
// with time.
TEST_F(AuthTest, HashingBudgetThrottlesUncachedLoginsOnly) {
  options_.max_failures = 0;
  options_.hash_budget_us_per_s = 1;  // one full hash, then empty for 1 s
  auto auth = Make();
  EXPECT_EQ(auth->Authenticate(*snapshot_, "sensor-001", "right", 0),
            AuthResult::kAllow);  // full hash; now cached
  EXPECT_EQ(auth->Authenticate(*snapshot_, "ghost", "x", 0),
            AuthResult::kThrottled);
  EXPECT_EQ(auth->Authenticate(*snapshot_, "sensor-002", "other-pass", 0),
            AuthResult::kThrottled);
  EXPECT_EQ(auth->Authenticate(*snapshot_, "sensor-001", "right", 0),
            AuthResult::kAllow);  // cached: no hash needed
  // Later the bucket has refilled (1 us per second, capped at 1 us).
  EXPECT_EQ(auth->Authenticate(*snapshot_, "sensor-002", "other-pass", 600000),
            AuthResult::kAllow);
}

TEST_F(AuthTest, ZeroBudgetMeansUnlimited) {
  options_.max_failures = 0;
  options_.hash_budget_us_per_s = 0;
  auto auth = Make();
  for (int i = 0; i < 20; ++i) {
    EXPECT_EQ(auth->Authenticate(*snapshot_, "ghost", "x", 0),
              AuthResult::kDeny);
  }
}

}  // namespace
}  // namespace homepot

namespace homepot {
namespace {

// A device whose stored hash is `encoded` (any format Mosquitto writes).
std::shared_ptr<const Snapshot> SnapshotOf(const std::string& id,
                                           const PasswordHash& hash) {
  std::vector<Device> devices;
  devices.push_back(MakeDevice(id, &hash));
  return Snapshot::Build(std::move(devices), {}, 1, 10240);
}

// Every failed login costs the same PBKDF2 work, whatever the stored hash
// and whether the username exists: timing tells nothing.
TEST_F(AuthTest, EveryFailureCostsTheSameIterations) {
  options_.max_failures = 0;
  options_.hash_budget_us_per_s = 0;
  options_.failure_iterations = kMaxIterations;
  auto auth = Make();
  auto cost_of = [&](const Snapshot& s, const std::string& user) {
    uint64_t before = auth->iterations_spent();
    EXPECT_EQ(auth->Authenticate(s, user, "wrong", 0), AuthResult::kDeny);
    return auth->iterations_spent() - before;
  };
  Result<PasswordHash> cheap = HashPassword("pw", 101);  // mosquitto_passwd
  Result<PasswordHash> full = HashPassword("pw", kMaxIterations);
  Result<PasswordHash> sha =
      ParsePasswordHash("$6$AAAAAAAAAAAAAAAA$" + std::string(86, 'A') + "==");
  ASSERT_TRUE(cheap.ok() && full.ok() && sha.ok()) << sha.status().message();
  const uint64_t expected = kMaxIterations;
  EXPECT_EQ(cost_of(*SnapshotOf("d101", *cheap), "d101"), expected);
  EXPECT_EQ(cost_of(*SnapshotOf("dfull", *full), "dfull"), expected);
  EXPECT_EQ(cost_of(*SnapshotOf("dsha", *sha), "dsha"), expected);
  EXPECT_EQ(cost_of(*SnapshotOf("dsha", *sha), "nobody"), expected);
  EXPECT_EQ(cost_of(*snapshot_, "no-password"), expected);
  // A disabled device refused with its right password costs the same too
  // (else timing would confirm a guessed password).
  uint64_t before = auth->iterations_spent();
  EXPECT_EQ(auth->Authenticate(*snapshot_, "disabled-1", "off-pass", 0),
            AuthResult::kDeny);
  EXPECT_EQ(auth->iterations_spent() - before, expected);
}

TEST(CredentialsLimitTest, HashesAboveTheMaximumCostAreRefused) {
  EXPECT_FALSE(HashPassword("pw", kMaxIterations + 1).ok());
  Result<PasswordHash> h = HashPassword("pw", kMaxIterations);
  ASSERT_TRUE(h.ok());
  std::string encoded = EncodePasswordHash(*h);
  std::string over =
      "$7$20000" + encoded.substr(encoded.find('$', 3));  // same salt/hash
  Result<PasswordHash> parsed = ParsePasswordHash(over);
  ASSERT_FALSE(parsed.ok());
  EXPECT_NE(parsed.status().message().find("20000 is above 1000"),
            std::string::npos)
      << parsed.status().message();
  EXPECT_NE(parsed.status().message().find("device passwd"), std::string::npos);
}

// Names that can never be a device id are refused without being stored, so
// a flood of huge random usernames grows nothing.
TEST_F(AuthTest, InvalidUsernamesAreNeverStored) {
  auto auth = Make();
  std::string huge(65535, 'x');
  for (int i = 0; i < 100; ++i) {
    huge[i % huge.size()] = static_cast<char>('a' + i % 26);
    EXPECT_EQ(auth->Authenticate(*snapshot_, huge, "x", 0), AuthResult::kDeny);
  }
  EXPECT_EQ(auth->Authenticate(*snapshot_, "$SYS", "x", 0), AuthResult::kDeny);
  EXPECT_EQ(auth->tracked_failures(), 0u);
  EXPECT_EQ(auth->iterations_spent(), 0u);
}

// Deferring costs what a refusal costs: the time of the answer does not tell
// which names are devices.
TEST_F(AuthTest, DeferringCostsTheSameAsARefusal) {
  options_.defer_unknown = true;
  options_.hash_budget_us_per_s = 0;
  auto auth = Make();
  EXPECT_EQ(auth->Authenticate(*snapshot_, "ghost", "x", 0),
            AuthResult::kDefer);
  EXPECT_EQ(auth->iterations_spent(), static_cast<uint64_t>(kIterations));
  EXPECT_EQ(auth->Authenticate(*snapshot_, "sensor-001", "wrong", 0),
            AuthResult::kDeny);
  EXPECT_EQ(auth->iterations_spent(), static_cast<uint64_t>(2 * kIterations));
}

// With deferral too, an overlong password and a lockout look the same for
// device names and other names.
TEST_F(AuthTest, DeferralKeepsLimitsAndLockoutUniform) {
  options_.defer_unknown = true;
  options_.hash_budget_us_per_s = 0;
  auto auth = Make();
  std::string long_pw(kMaxPasswordBytes + 1, 'p');
  EXPECT_EQ(auth->Authenticate(*snapshot_, "sensor-001", long_pw, 0),
            AuthResult::kDeny);
  EXPECT_EQ(auth->Authenticate(*snapshot_, "ghost", long_pw, 0),
            AuthResult::kDeny);
  EXPECT_EQ(auth->iterations_spent(), 0u);
  for (int i = 0; i < 3; ++i) {
    auth->Authenticate(*snapshot_, "sensor-001", "wrong", 0);
  }
  const uint64_t before = auth->iterations_spent();
  EXPECT_EQ(auth->Authenticate(*snapshot_, "sensor-001", "right", 0),
            AuthResult::kLockedOut);
  EXPECT_EQ(auth->iterations_spent() - before,
            static_cast<uint64_t>(kIterations));
}

TEST_F(AuthTest, InvalidUsernamesAreDeferredWhenConfigured) {
  options_.defer_unknown = true;
  auto auth = Make();
  EXPECT_EQ(auth->Authenticate(*snapshot_, std::string(200, 'u'), "x", 0),
            AuthResult::kDefer);
}

TEST_F(AuthTest, OverlongPasswordsAreRefusedUnhashed) {
  auto auth = Make();
  std::string long_pw(kMaxPasswordBytes + 1, 'p');
  EXPECT_EQ(auth->Authenticate(*snapshot_, "sensor-001", long_pw, 0),
            AuthResult::kDeny);
  EXPECT_EQ(auth->Authenticate(*snapshot_, "ghost", long_pw, 0),
            AuthResult::kDeny);
  EXPECT_EQ(auth->iterations_spent(), 0u);
}

// The lockout table stops growing at its byte cap; names it cannot track are
// refused as usual (and the cap does not depend on which names exist).
TEST_F(AuthTest, LockoutTableIsCappedInBytes) {
  options_.hash_budget_us_per_s = 0;
  options_.failure_iterations = 1;
  auto auth = Make();
  const size_t per_entry = 128 + Authenticator::kFailureEntryOverhead;
  const size_t fits = Authenticator::kMaxFailureBytes / per_entry;
  std::string name(128, 'n');
  for (size_t i = 0; i < fits + 500; ++i) {
    std::string id = std::to_string(i);
    name.replace(0, id.size(), id);
    EXPECT_EQ(auth->Authenticate(*snapshot_, name, "x", 0), AuthResult::kDeny);
  }
  EXPECT_LE(auth->tracked_failure_bytes(), Authenticator::kMaxFailureBytes);
  EXPECT_EQ(auth->tracked_failures(), fits);
  // Expired entries make room again.
  auth->Sweep(kLockoutMs + 1);
  EXPECT_EQ(auth->tracked_failures(), 0u);
  EXPECT_EQ(auth->tracked_failure_bytes(), 0u);
}

}  // namespace
}  // namespace homepot
