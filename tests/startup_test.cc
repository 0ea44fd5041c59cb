#include "startup.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <cstdlib>
#include <fstream>
#include <string>

#include "testing.h"

namespace homepot {
namespace {

// A broker that is never reached: startup fails before any event.
class NullBroker : public Broker {
 public:
  void Log(LogLevel, const std::string&) override {}
  void KickUsername(const std::string&) override {}
  void KickClientId(const std::string&) override {}
  void Publish(const std::string&, std::string_view, int, bool) override {}
  Untracked Classify(const void*) override { return Untracked::kClosed; }
  void* Alloc(size_t size) override { return std::malloc(size); }
  void Free(void* ptr) override { std::free(ptr); }
};

class StartHomepotTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(tmp_.ok()); }

  test::TempDir tmp_{"homepot-startup-test"};
  std::string dir_ = tmp_.path();
  Config config_;
  NullBroker broker_;
  SystemClock clock_;
};

TEST_F(StartHomepotTest, CreateFailsNamingTheMissingFile) {
  config_.db_path = dir_ + "/nope.db";
  auto r = StartHomepot(config_, &broker_, &clock_);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(),
            "registry file " + dir_ + "/nope.db does not exist");
}

TEST_F(StartHomepotTest, CreateFailsOnAFileWithoutTheSchema) {
  config_.db_path = dir_ + "/empty.db";
  { std::ofstream out(config_.db_path); }
  auto r = StartHomepot(config_, &broker_, &clock_);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find(config_.db_path), std::string::npos)
      << r.status().message();
}

}  // namespace
}  // namespace homepot
