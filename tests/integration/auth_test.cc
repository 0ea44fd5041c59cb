// Logging in against the registry: the real broker, the built plugin, real
// mosquitto_passwd hashes.
#include <gtest/gtest.h>

#include <chrono>
#include <string>

#include "harness.h"

namespace homepot {
namespace integration {
namespace {

// The CONNACK code a refused login gets in `protocol`.
int NotAuthorized(int protocol) {
  return protocol == kMqtt5 ? kReasonNotAuthorized : kConnackNotAuthorized311;
}

const char* ProtocolName(int protocol) {
  return protocol == kMqtt5 ? "MQTT 5" : "MQTT 3.1.1";
}

class AuthTest : public BrokerTest {
 protected:
  void SetUp() override { ASSERT_TRUE(AddFixtureDevices()); }

  int ConnectCode(const std::string& user, const std::string& password,
                  int protocol, const std::string& client_id = "") {
    Client client(broker_.port(), protocol, client_id);
    return client.Connect(user, password);
  }
};

TEST_F(AuthTest, MosquittoPasswdHashesLogInWithBothProtocols) {
  ASSERT_TRUE(StartBroker());
  // sensor-001 and gateway-01 are $7$ (101 and 2000 iterations), legacy $6$.
  for (const char* user : {"sensor-001", "gateway-01", "legacy"}) {
    for (int protocol : {kMqtt311, kMqtt5}) {
      EXPECT_EQ(ConnectCode(user, FixturePasswords().at(user), protocol), 0)
          << user << " over " << ProtocolName(protocol);
    }
  }
}

TEST_F(AuthTest, NewlyHashedPasswordLogsIn) {
  ASSERT_TRUE(registry_.AddDevice("plc-7", "industrial_controller", "pl(-pw",
                                  "", 1000));
  ASSERT_TRUE(StartBroker());
  EXPECT_EQ(ConnectCode("plc-7", "pl(-pw", kMqtt5), 0);
  EXPECT_EQ(ConnectCode("plc-7", "pl(-pw", kMqtt311), 0);
}

TEST_F(AuthTest, ConnectedClientCanReconnect) {
  // The second login takes the verified-secret cache path.
  ASSERT_TRUE(StartBroker());
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(ConnectCode("sensor-001", "s3cret-one", kMqtt5), 0) << i;
    EXPECT_EQ(ConnectCode("sensor-001", "s3cret-onf", kMqtt5),
              kReasonNotAuthorized)
        << i;
  }
}

TEST_F(AuthTest, WrongPasswordIsRefused) {
  ASSERT_TRUE(StartBroker());
  for (int protocol : {kMqtt311, kMqtt5}) {
    EXPECT_EQ(ConnectCode("sensor-001", "s3cret-two", protocol),
              NotAuthorized(protocol))
        << ProtocolName(protocol);
    EXPECT_EQ(ConnectCode("legacy", "", protocol), NotAuthorized(protocol))
        << ProtocolName(protocol);
  }
}

TEST_F(AuthTest, UsernameWithoutPasswordIsRefused) {
  ASSERT_TRUE(StartBroker());
  for (int protocol : {kMqtt311, kMqtt5}) {
    Client client(broker_.port(), protocol);
    EXPECT_EQ(client.Connect("sensor-001", nullptr), NotAuthorized(protocol))
        << ProtocolName(protocol);
  }
}

TEST_F(AuthTest, UnknownUserIsRefused) {
  ASSERT_TRUE(StartBroker());
  for (int protocol : {kMqtt311, kMqtt5}) {
    EXPECT_EQ(ConnectCode("sensor-999", "s3cret-one", protocol),
              NotAuthorized(protocol))
        << ProtocolName(protocol);
  }
}

TEST_F(AuthTest, DisabledDeviceIsRefused) {
  ASSERT_TRUE(registry_.Exec(
      "UPDATE devices SET enabled = 0 WHERE device_id = 'sensor-001'"));
  ASSERT_TRUE(StartBroker());
  for (int protocol : {kMqtt311, kMqtt5}) {
    EXPECT_EQ(ConnectCode("sensor-001", "s3cret-one", protocol),
              NotAuthorized(protocol))
        << ProtocolName(protocol);
  }
  // The other devices are unaffected.
  EXPECT_EQ(ConnectCode("homepot", "backend-pass", kMqtt5), 0);
}

TEST_F(AuthTest, DeviceWithoutPasswordHashIsRefused) {
  ASSERT_TRUE(registry_.Exec(
      "INSERT INTO devices (device_id, device_type) VALUES ('cert-only', "
      "'gateway')"));
  ASSERT_TRUE(StartBroker());
  EXPECT_EQ(ConnectCode("cert-only", "", kMqtt5), kReasonNotAuthorized);
  EXPECT_EQ(ConnectCode("cert-only", "anything", kMqtt5), kReasonNotAuthorized);
}

TEST_F(AuthTest, NoUsernameIsRefused) {
  ASSERT_TRUE(StartBroker());
  for (int protocol : {kMqtt311, kMqtt5}) {
    Client client(broker_.port(), protocol);
    EXPECT_EQ(client.Connect(nullptr, nullptr), NotAuthorized(protocol))
        << ProtocolName(protocol);
  }
}

TEST_F(AuthTest, UsernameWithTopicWildcardsOrSlashIsRefused) {
  ASSERT_TRUE(StartBroker());
  for (const char* user :
       {"sensor+", "sensor#", "plant/sensor-001", "+", "#", "/"}) {
    for (int protocol : {kMqtt311, kMqtt5}) {
      EXPECT_EQ(ConnectCode(user, "s3cret-one", protocol),
                NotAuthorized(protocol))
          << "'" << user << "' over " << ProtocolName(protocol);
    }
  }
}

TEST_F(AuthTest, ClientIdWithSlashIsRefused) {
  ASSERT_TRUE(StartBroker());
  // A registered device with the right password, but a client id that could
  // widen a %c rule.
  for (int protocol : {kMqtt311, kMqtt5}) {
    EXPECT_EQ(
        ConnectCode("sensor-001", "s3cret-one", protocol, "plant/sensor-001"),
        NotAuthorized(protocol))
        << ProtocolName(protocol);
    EXPECT_EQ(ConnectCode("sensor-001", "s3cret-one", protocol, "sensor+1"),
              NotAuthorized(protocol))
        << ProtocolName(protocol);
    EXPECT_EQ(ConnectCode("sensor-001", "s3cret-one", protocol, "sensor-001"),
              0)
        << ProtocolName(protocol);
  }
}

TEST_F(AuthTest, LockoutRefusesTheRightPasswordUntilItExpires) {
  // 3 s: long enough that the checks below run inside the lockout however
  // slow the machine is.
  ASSERT_TRUE(StartBroker({"auth_max_failures 3", "auth_lockout_seconds 3"}));
  for (int i = 0; i < 3; ++i) {
    ASSERT_EQ(ConnectCode("sensor-001", "guess-" + std::to_string(i), kMqtt5),
              kReasonNotAuthorized);
  }
  auto locked_at = std::chrono::steady_clock::now();
  EXPECT_EQ(ConnectCode("sensor-001", "s3cret-one", kMqtt5),
            kReasonNotAuthorized);
  EXPECT_EQ(ConnectCode("sensor-001", "s3cret-one", kMqtt311),
            kConnackNotAuthorized311);
  // Other usernames are not locked.
  EXPECT_EQ(ConnectCode("homepot", "backend-pass", kMqtt5), 0);

  // The lockout lasts auth_lockout_seconds from the third failure.
  std::this_thread::sleep_until(locked_at + std::chrono::milliseconds(3200));
  EXPECT_EQ(ConnectCode("sensor-001", "s3cret-one", kMqtt5), 0);
}

TEST_F(AuthTest, FailuresBelowTheLimitDoNotLockOut) {
  ASSERT_TRUE(StartBroker({"auth_max_failures 3", "auth_lockout_seconds 60"}));
  for (int i = 0; i < 2; ++i) {
    ASSERT_EQ(ConnectCode("sensor-001", "guess", kMqtt5), kReasonNotAuthorized);
  }
  EXPECT_EQ(ConnectCode("sensor-001", "s3cret-one", kMqtt5), 0);
  // A success resets the count: two more failures still do not lock.
  for (int i = 0; i < 2; ++i) {
    ASSERT_EQ(ConnectCode("sensor-001", "guess", kMqtt5), kReasonNotAuthorized);
  }
  EXPECT_EQ(ConnectCode("sensor-001", "s3cret-one", kMqtt5), 0);
}

TEST_F(AuthTest, UnknownUsernamesCanBeLockedOutToo) {
  ASSERT_TRUE(StartBroker({"auth_max_failures 2", "auth_lockout_seconds 60"}));
  EXPECT_EQ(ConnectCode("ghost", "a", kMqtt5), kReasonNotAuthorized);
  EXPECT_EQ(ConnectCode("ghost", "b", kMqtt5), kReasonNotAuthorized);
  EXPECT_EQ(ConnectCode("ghost", "c", kMqtt5), kReasonNotAuthorized);
  EXPECT_EQ(ConnectCode("sensor-001", "s3cret-one", kMqtt5), 0);
}

// ------------------------------------------------------------ defer_unknown

class DeferUnknownTest : public AuthTest {
 protected:
  // A Mosquitto password_file with one user the registry does not know.
  std::string WritePasswordFile() {
    std::string path = registry_.Path("passwd");
    std::string output;
    int rc = RunCommand({"/usr/bin/mosquitto_passwd", "-c", "-b", path,
                         "file-user", "file-pass"},
                        "", &output);
    EXPECT_EQ(rc, 0) << output;
    return path;
  }
};

TEST_F(DeferUnknownTest, UnknownUserFallsThroughToPasswordFile) {
  std::string passwd = WritePasswordFile();
  ASSERT_TRUE(StartBroker({"defer_unknown true"}, {"password_file " + passwd}));
  EXPECT_EQ(ConnectCode("file-user", "file-pass", kMqtt5), 0);
  EXPECT_EQ(ConnectCode("file-user", "file-pass", kMqtt311), 0);
  EXPECT_EQ(ConnectCode("file-user", "wrong", kMqtt5), kReasonNotAuthorized);
  // Registry devices still authenticate against the registry.
  EXPECT_EQ(ConnectCode("sensor-001", "s3cret-one", kMqtt5), 0);
  EXPECT_EQ(ConnectCode("sensor-001", "wrong", kMqtt5), kReasonNotAuthorized);
}

TEST_F(DeferUnknownTest, WithoutOtherAuthUnknownUserIsRefused) {
  ASSERT_TRUE(StartBroker({"defer_unknown true"}));
  EXPECT_EQ(ConnectCode("file-user", "file-pass", kMqtt5),
            kReasonNotAuthorized);
  EXPECT_EQ(ConnectCode("file-user", "file-pass", kMqtt311),
            kConnackNotAuthorized311);
  EXPECT_EQ(ConnectCode("sensor-001", "s3cret-one", kMqtt5), 0);
}

TEST_F(DeferUnknownTest, WithoutDeferPasswordFileUsersAreRefused) {
  std::string passwd = WritePasswordFile();
  ASSERT_TRUE(StartBroker({}, {"password_file " + passwd}));
  EXPECT_EQ(ConnectCode("file-user", "file-pass", kMqtt5),
            kReasonNotAuthorized);
}

TEST_F(DeferUnknownTest, RegistryDeviceCannotUsePasswordFileEntry) {
  // A password_file line for a registry device does not open a second door:
  // the registry answers for its own devices.
  std::string passwd = WritePasswordFile();
  std::string output;
  ASSERT_EQ(RunCommand({"/usr/bin/mosquitto_passwd", "-b", passwd, "sensor-001",
                        "file-pass"},
                       "", &output),
            0)
      << output;
  ASSERT_TRUE(StartBroker({"defer_unknown true"}, {"password_file " + passwd}));
  EXPECT_EQ(ConnectCode("sensor-001", "file-pass", kMqtt5),
            kReasonNotAuthorized);
  EXPECT_EQ(ConnectCode("sensor-001", "s3cret-one", kMqtt5), 0);
}

}  // namespace
}  // namespace integration
}  // namespace homepot
