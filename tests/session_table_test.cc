#include "session_table.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

namespace homepot {
namespace {

class SessionTableTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::vector<Device> devices(2);
    devices[0].id = "sensor-001";
    devices[0].enabled = true;
    devices[1].id = "homepot";
    devices[1].enabled = true;
    snapshot_ = Snapshot::Build(std::move(devices), {}, 1, 10240);
  }
  ClientInfo Info(const void* handle, const char* user, const char* id) {
    ClientInfo c;
    c.handle = handle;
    c.username = user;
    c.client_id = id;
    return c;
  }

  SessionTable table_;
  std::shared_ptr<const Snapshot> snapshot_;
  int handles_[4] = {};
};

TEST_F(SessionTableTest, FindAnswersTrackedHandlesOnly) {
  EXPECT_EQ(table_.Find(&handles_[0]), nullptr);
  Session& s = table_.Add(Info(&handles_[0], "sensor-001", "s-1"),
                          Session::Kind::kDevice, 7);
  EXPECT_EQ(table_.Find(&handles_[0]), &s);
  EXPECT_EQ(table_.Find(&handles_[0]), &s);  // from the cache
  EXPECT_EQ(s.client_id, "s-1");
  EXPECT_EQ(s.routing_epoch, 7u);
  EXPECT_EQ(table_.HolderOf("s-1", &handles_[1]), &s);
  EXPECT_EQ(table_.HolderOf("s-1", &handles_[0]), nullptr);
  s.counted = true;
  EXPECT_TRUE(table_.Drop(&handles_[0]));
  EXPECT_EQ(table_.Find(&handles_[0]), nullptr);
  EXPECT_EQ(table_.HolderOf("s-1", &handles_[1]), nullptr);
  EXPECT_FALSE(table_.Drop(&handles_[0]));
}

TEST_F(SessionTableTest, ResolvedRecordsAreReadOnlyForTheirGeneration) {
  Session scratch;
  const ClientInfo c = Info(&handles_[0], "sensor-001", "s-1");
  table_.Resolve(c, &scratch, *snapshot_, 5);
  ASSERT_NE(scratch.record(5), nullptr);
  EXPECT_EQ(scratch.record(5)->id, "sensor-001");
  EXPECT_EQ(scratch.record(6), nullptr);
  ASSERT_NE(scratch.device, nullptr);
  EXPECT_EQ(scratch.device->first, "sensor-001");
}

TEST_F(SessionTableTest, ClaimsBelongToOneDevice) {
  const Device& sensor = *snapshot_->Find("sensor-001");
  const Device& backend = *snapshot_->Find("homepot");
  DeviceEntry* s = table_.Entry("sensor-001");
  DeviceEntry* b = table_.Entry("homepot");
  EXPECT_TRUE(table_.Claim("shared", sensor, s, *snapshot_).ok());
  EXPECT_EQ(table_.ClaimHolder("shared"), s);
  Status taken = table_.Claim("shared", backend, b, *snapshot_);
  EXPECT_EQ(taken.message(),
            "refused device 'homepot': client id 'shared' is held by device "
            "'sensor-001'");
  Status named = table_.Claim("sensor-001", backend, b, *snapshot_);
  EXPECT_FALSE(named.ok());
  table_.ReleaseClaims(s);
  EXPECT_EQ(table_.ClaimHolder("shared"), nullptr);
  EXPECT_TRUE(table_.Claim("shared", backend, b, *snapshot_).ok());
}

TEST_F(SessionTableTest, TheOldestUnusedClaimMakesRoom) {
  const Device& sensor = *snapshot_->Find("sensor-001");
  DeviceEntry* s = table_.Entry("sensor-001");
  for (size_t i = 0; i < SessionTable::kMaxClaimsPerDevice; ++i) {
    ASSERT_TRUE(
        table_.Claim("c-" + std::to_string(i), sensor, s, *snapshot_).ok());
  }
  // c-0 is in use by a live session: c-1 goes.
  Session& live = table_.Add(Info(&handles_[0], "sensor-001", "c-0"),
                             Session::Kind::kDevice, 1);
  table_.Bind(&live, &handles_[0], s);
  EXPECT_TRUE(table_.Claim("c-new", sensor, s, *snapshot_).ok());
  EXPECT_EQ(table_.ClaimHolder("c-0"), s);
  EXPECT_EQ(table_.ClaimHolder("c-1"), nullptr);
}

}  // namespace
}  // namespace homepot
