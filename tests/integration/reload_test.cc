// Registry changes reaching the running broker: polling, SIGHUP, kicks of
// revoked sessions, and a registry file that disappears or turns to garbage.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <stdio.h>
#include <unistd.h>

#include <random>
#include <string>

#include "harness.h"

namespace homepot {
namespace integration {
namespace {

// Publishes (QoS 1, MQTT 5) every 100 ms until the PUBACK reason is `want`.
// Returns true when it was within `timeout_ms`.
bool PublishUntil(Client* client, const std::string& topic, int want,
                  int timeout_ms) {
  return Eventually(
      [&] { return client->Publish(topic, kNotification, 1) == want; },
      timeout_ms, 100);
}

class ReloadTest : public BrokerTest {
 protected:
  void SetUp() override {
    ASSERT_TRUE(AddFixtureDevices());
    ASSERT_TRUE(registry_.Grant("homepot", "devices/+/notifications", "write"));
  }

  // The log lines in which the plugin reports a registry failure.
  std::vector<std::string> RegistryErrorLines() {
    return LinesContaining(broker_.Log(), "keeping generation");
  }

  // Sensor subscribed to its token, backend publishing to it: the registry
  // in force still serves logins and deliveries.
  void ExpectStillServing(const std::string& context) {
    SCOPED_TRACE(context);
    auto sensor = ConnectAs("sensor-001", "s3cret-one");
    auto backend = ConnectAs("homepot", "backend-pass", kMqtt311);
    ASSERT_TRUE(sensor && backend);
    ASSERT_EQ(sensor->Subscribe("devices/sensor-001/notifications", 1), 1);
    ASSERT_EQ(
        backend->Publish("devices/sensor-001/notifications", kNotification, 1),
        0);
    EXPECT_TRUE(sensor->WaitForMessage().has_value());
    Client stranger(broker_.port());
    EXPECT_EQ(stranger.Connect("sensor-001", "wrong"), kReasonNotAuthorized);
  }

  // Writes random bytes over the registry file in place (same inode).
  void OverwriteWithGarbage() {
    std::string path = registry_.db_path();
    std::string size_probe = ReadFile(path);
    size_t size = std::max<size_t>(size_probe.size(), 8192);
    std::mt19937 rng(42);
    std::string garbage(size, '\0');
    for (char& c : garbage) c = static_cast<char>(rng() & 0xff);
    int fd = open(path.c_str(), O_WRONLY);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(pwrite(fd, garbage.data(), garbage.size(), 0),
              static_cast<ssize_t>(garbage.size()));
    fsync(fd);
    close(fd);
  }

  // Builds a complete registry aside and renames it over the live file, as
  // a restore from backup would. `extra_sql` adds rows.
  void RestoreRegistry(const std::string& extra_sql) {
    std::string fresh = registry_.Path("restore.db");
    std::string sql;
    for (const auto& [user, hash] : FixtureHashes()) {
      sql += "INSERT INTO devices (device_id, password_hash) VALUES ('" + user +
             "', '" + hash + "');\n";
    }
    sql +=
        "INSERT INTO acl_rules (device_id, topic_filter, access) VALUES "
        "('homepot', 'devices/+/notifications', 'write');\n" +
        extra_sql;
    ASSERT_TRUE(TempRegistry::CreateDatabase(fresh, sql));
    ASSERT_EQ(rename(fresh.c_str(), registry_.db_path().c_str()), 0);
  }
};

TEST_F(ReloadTest, GrantMadeWithSqliteShellTakesEffectWithoutRestart) {
  ASSERT_TRUE(StartBroker({"reload_interval_ms 200"}));
  pid_t pid = broker_.pid();
  auto sensor = ConnectAs("sensor-001", "s3cret-one");
  auto gateway = ConnectAs("gateway-01", "gw-pass-1000");
  ASSERT_TRUE(sensor && gateway);
  ASSERT_EQ(sensor->Subscribe("devices/sensor-001/notifications", 1), 1);
  ASSERT_EQ(
      gateway->Publish("devices/sensor-001/notifications", kNotification, 1),
      kReasonNotAuthorized);

  ASSERT_TRUE(registry_.ExecCli(
      "INSERT INTO acl_rules (device_id, topic_filter, access) VALUES "
      "('gateway-01', 'devices/sensor-001/notifications', 'write');"));
  ASSERT_TRUE(
      PublishUntil(gateway.get(), "devices/sensor-001/notifications", 0, 10000))
      << Tail(broker_.Log());
  EXPECT_TRUE(sensor->WaitForMessage().has_value());
  EXPECT_EQ(broker_.pid(), pid);
  EXPECT_TRUE(gateway->IsConnected());
  EXPECT_TRUE(sensor->IsConnected());
}

TEST_F(ReloadTest, RevokedGrantStopsPublishing) {
  ASSERT_TRUE(StartBroker({"reload_interval_ms 200"}));
  auto backend = ConnectAs("homepot", "backend-pass");
  ASSERT_TRUE(backend);
  ASSERT_EQ(
      backend->Publish("devices/sensor-001/notifications", kNotification, 1),
      0);
  ASSERT_TRUE(
      registry_.ExecCli("DELETE FROM acl_rules WHERE device_id = 'homepot';"));
  EXPECT_TRUE(PublishUntil(backend.get(), "devices/sensor-001/notifications",
                           kReasonNotAuthorized, 10000));
  EXPECT_TRUE(backend->IsConnected());  // a rule change is no kick
}

TEST_F(ReloadTest, NewDeviceCanLogInWithoutRestart) {
  ASSERT_TRUE(StartBroker({"reload_interval_ms 200"}));
  Client late(broker_.port());
  ASSERT_EQ(late.Connect("sensor-002", "new-pass"), kReasonNotAuthorized);
  ASSERT_TRUE(registry_.ExecCli(
      "INSERT INTO devices (device_id, device_type, password_hash) VALUES "
      "('sensor-002', 'iot_sensor', '" +
      test::EncodedHash("new-pass") + "');"));
  EXPECT_TRUE(Eventually(
      [&] {
        Client c(broker_.port());
        return c.Connect("sensor-002", "new-pass") == 0;
      },
      10000, 100));
}

TEST_F(ReloadTest, DisablingDeviceKicksItsLiveSessions) {
  ASSERT_TRUE(StartBroker({"reload_interval_ms 200"}));
  auto sensor5 = ConnectAs("sensor-001", "s3cret-one", kMqtt5);
  auto sensor3 = ConnectAs("sensor-001", "s3cret-one", kMqtt311);
  auto backend = ConnectAs("homepot", "backend-pass");
  ASSERT_TRUE(sensor5 && sensor3 && backend);
  ASSERT_TRUE(registry_.ExecCli(
      "UPDATE devices SET enabled = 0 WHERE device_id = 'sensor-001';"));
  EXPECT_TRUE(sensor5->WaitForDisconnect(10000));
  EXPECT_TRUE(sensor3->WaitForDisconnect(10000));
  EXPECT_TRUE(backend->IsConnected());
  Client again(broker_.port());
  EXPECT_EQ(again.Connect("sensor-001", "s3cret-one"), kReasonNotAuthorized);

  // Enabling it again lets it back in.
  ASSERT_TRUE(registry_.ExecCli(
      "UPDATE devices SET enabled = 1 WHERE device_id = 'sensor-001';"));
  EXPECT_TRUE(Eventually(
      [&] {
        Client c(broker_.port());
        return c.Connect("sensor-001", "s3cret-one") == 0;
      },
      10000, 100));
}

TEST_F(ReloadTest, ChangingPasswordKicksItsLiveSessions) {
  ASSERT_TRUE(StartBroker({"reload_interval_ms 200"}));
  auto sensor = ConnectAs("sensor-001", "s3cret-one");
  auto backend = ConnectAs("homepot", "backend-pass");
  ASSERT_TRUE(sensor && backend);
  ASSERT_TRUE(registry_.ExecCli("UPDATE devices SET password_hash = '" +
                                test::EncodedHash("rotated") +
                                "' WHERE device_id = 'sensor-001';"));
  EXPECT_TRUE(sensor->WaitForDisconnect(10000));
  EXPECT_TRUE(backend->IsConnected());
  Client old_pw(broker_.port());
  EXPECT_EQ(old_pw.Connect("sensor-001", "s3cret-one"), kReasonNotAuthorized);
  Client new_pw(broker_.port());
  EXPECT_EQ(new_pw.Connect("sensor-001", "rotated"), 0);
}

TEST_F(ReloadTest, DeletingDeviceKicksItsLiveSessions) {
  ASSERT_TRUE(StartBroker({"reload_interval_ms 200"}));
  auto sensor = ConnectAs("sensor-001", "s3cret-one");
  auto backend = ConnectAs("homepot", "backend-pass");
  ASSERT_TRUE(sensor && backend);
  ASSERT_TRUE(
      registry_.ExecCli("DELETE FROM devices WHERE device_id = 'sensor-001';"));
  EXPECT_TRUE(sensor->WaitForDisconnect(10000));
  EXPECT_TRUE(backend->IsConnected());
  Client again(broker_.port());
  EXPECT_EQ(again.Connect("sensor-001", "s3cret-one"), kReasonNotAuthorized);
}

TEST_F(ReloadTest, UnrelatedChangesDoNotKick) {
  ASSERT_TRUE(StartBroker({"reload_interval_ms 200"}));
  auto sensor = ConnectAs("sensor-001", "s3cret-one");
  ASSERT_TRUE(sensor);
  ASSERT_TRUE(registry_.ExecCli(
      "INSERT INTO acl_rules (device_id, topic_filter, access) VALUES "
      "('sensor-001', 'devices/sensor-001/#', 'read');\n"
      "UPDATE devices SET metadata = '{\"site\":\"plant-2\"}' "
      "WHERE device_id = 'sensor-001';"));
  // The new read rule arrives...
  EXPECT_TRUE(Eventually(
      [&] { return sensor->Subscribe("devices/sensor-001/#", 1) == 1; }, 10000,
      100));
  // ...and the session survives it: the registry that brought it revoked
  // nobody, and the session still answers.
  std::vector<std::string> reloads =
      LinesContaining(broker_.Log(), "registry reloaded: generation");
  ASSERT_FALSE(reloads.empty()) << broker_.Log();
  EXPECT_NE(reloads.back().find(" 0 revoked"), std::string::npos)
      << reloads.back();
  EXPECT_EQ(sensor->Subscribe("devices/sensor-001/notifications", 1), 1);
  EXPECT_TRUE(sensor->IsConnected());
}

TEST_F(ReloadTest, SighupReloadsTheRegistry) {
  // Polling is effectively off: only SIGHUP can bring the grant in.
  ASSERT_TRUE(StartBroker({"reload_interval_ms 600000"}));
  auto gateway = ConnectAs("gateway-01", "gw-pass-1000");
  ASSERT_TRUE(gateway);
  ASSERT_TRUE(registry_.ExecCli(
      "INSERT INTO acl_rules (device_id, topic_filter, access) VALUES "
      "('gateway-01', 'devices/sensor-001/notifications', 'write');"));
  EXPECT_EQ(
      gateway->Publish("devices/sensor-001/notifications", kNotification, 1),
      kReasonNotAuthorized);

  broker_.Reload();
  EXPECT_TRUE(
      PublishUntil(gateway.get(), "devices/sensor-001/notifications", 0, 10000))
      << Tail(broker_.Log());
  EXPECT_TRUE(gateway->IsConnected());
}

TEST_F(ReloadTest, SighupKicksDisabledDevice) {
  ASSERT_TRUE(StartBroker({"reload_interval_ms 600000"}));
  auto sensor = ConnectAs("sensor-001", "s3cret-one");
  ASSERT_TRUE(sensor);
  ASSERT_TRUE(registry_.ExecCli(
      "UPDATE devices SET enabled = 0 WHERE device_id = 'sensor-001';"));
  // Still in: its session answers.
  EXPECT_EQ(sensor->Subscribe("devices/sensor-001/notifications", 1), 1);
  EXPECT_TRUE(sensor->IsConnected());
  broker_.Reload();
  EXPECT_TRUE(sensor->WaitForDisconnect(10000));
}

// -------------------------------------------------------------- resilience

TEST_F(ReloadTest, RemovedRegistryKeepsTheLastGoodOneInForce) {
  ASSERT_TRUE(StartBroker({"reload_interval_ms 200"}));
  ExpectStillServing("before");
  ASSERT_EQ(unlink(registry_.db_path().c_str()), 0);
  ASSERT_TRUE(broker_.WaitForLog("is missing", 10000));
  ExpectStillServing("after removal");
  // Several more polls (every 200 ms) report nothing new.
  SleepMs(1000);
  auto errors = RegistryErrorLines();
  ASSERT_EQ(errors.size(), 1u) << broker_.Log();
  EXPECT_NE(errors[0].find(registry_.db_path()), std::string::npos)
      << errors[0];
  EXPECT_TRUE(broker_.running());
}

TEST_F(ReloadTest, GarbageRegistryKeepsTheLastGoodOneInForce) {
  ASSERT_TRUE(StartBroker({"reload_interval_ms 200"}));
  ExpectStillServing("before");
  OverwriteWithGarbage();
  // Same inode, new bytes: in WAL mode SQLite's page cache hides this unless
  // the plugin notices the file changed and reopens it.
  EXPECT_TRUE(broker_.WaitForLog("keeping generation", 10000))
      << "the corrupt registry was never reported; log tail:\n"
      << Tail(broker_.Log());
  ExpectStillServing("after corruption");
  // Several more polls (every 200 ms) report nothing new.
  SleepMs(1000);
  EXPECT_EQ(RegistryErrorLines().size(), 1u) << broker_.Log();
  EXPECT_TRUE(broker_.running());
}

TEST_F(ReloadTest, RegistryCopiedOverInPlaceIsLoaded) {
  // `cp backup.db homepot.db` rewrites the live file in place (same inode).
  ASSERT_TRUE(StartBroker({"reload_interval_ms 200"}));
  ExpectStillServing("before");
  std::string backup = registry_.Path("backup.db");
  std::string sql;
  for (const auto& [user, hash] : FixtureHashes()) {
    sql += "INSERT INTO devices (device_id, password_hash) VALUES ('" + user +
           "', '" + hash + "');\n";
  }
  sql +=
      "INSERT INTO acl_rules (device_id, topic_filter, access) VALUES "
      "('homepot', 'devices/+/notifications', 'write');\n"
      "INSERT INTO devices (device_id, password_hash) VALUES ('restored-1', '" +
      test::EncodedHash("back-again") +
      "');\n"
      // Make the copy's generation differ from the live file's.
      "UPDATE registry_meta SET generation = generation + 100;\n";
  ASSERT_TRUE(TempRegistry::CreateDatabase(backup, sql));
  std::string output;
  ASSERT_EQ(RunCommand({"/bin/cp", backup, registry_.db_path()}, "", &output),
            0)
      << output;
  EXPECT_TRUE(Eventually(
      [&] {
        Client c(broker_.port());
        return c.Connect("restored-1", "back-again") == 0;
      },
      10000, 100))
      << "the copied registry was never loaded; log tail:\n"
      << Tail(broker_.Log());
  ExpectStillServing("after the copy");
}

TEST_F(ReloadTest, RestoredRegistryAfterRemovalLoadsAgain) {
  ASSERT_TRUE(StartBroker({"reload_interval_ms 200"}));
  ASSERT_EQ(unlink(registry_.db_path().c_str()), 0);
  ASSERT_TRUE(broker_.WaitForLog("is missing", 10000));
  RestoreRegistry(
      "INSERT INTO devices (device_id, password_hash) VALUES ('restored-1', '" +
      test::EncodedHash("back-again") + "');");
  EXPECT_TRUE(Eventually(
      [&] {
        Client c(broker_.port());
        return c.Connect("restored-1", "back-again") == 0;
      },
      10000, 100))
      << Tail(broker_.Log());
  EXPECT_TRUE(broker_.WaitForLog("readable again", 10000));
  ExpectStillServing("after restore");
}

TEST_F(ReloadTest, RestoredRegistryAfterCorruptionLoadsAgain) {
  ASSERT_TRUE(StartBroker({"reload_interval_ms 200"}));
  ExpectStillServing("before");
  OverwriteWithGarbage();
  ASSERT_TRUE(broker_.WaitForLog("keeping generation", 10000))
      << Tail(broker_.Log());
  RestoreRegistry(
      "INSERT INTO devices (device_id, password_hash) VALUES ('restored-1', '" +
      test::EncodedHash("back-again") + "');");
  EXPECT_TRUE(Eventually(
      [&] {
        Client c(broker_.port());
        return c.Connect("restored-1", "back-again") == 0;
      },
      10000, 100))
      << Tail(broker_.Log());
  ExpectStillServing("after restore");
}

}  // namespace
}  // namespace integration
}  // namespace homepot
