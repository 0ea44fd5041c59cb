#include "qos2_stamps.h"

#include <gtest/gtest.h>

#include <string>

namespace homepot {
namespace {

TEST(Qos2StampsTest, ARepeatGetsTheFirstCopysStamp) {
  Qos2Stamps stamps;
  int64_t stamp = 1000;
  EXPECT_FALSE(stamps.IsRepeat("c-1", "t", "p", 0, &stamp));
  EXPECT_EQ(stamp, 1000);
  stamp = 2000;
  EXPECT_TRUE(stamps.IsRepeat("c-1", "t", "p", 50, &stamp));
  EXPECT_EQ(stamp, 1000);
}

TEST(Qos2StampsTest, AnyDifferenceIsANewMessage) {
  Qos2Stamps stamps;
  int64_t stamp = 1000;
  ASSERT_FALSE(stamps.IsRepeat("c-1", "t", "p", 0, &stamp));
  for (auto [client, topic, payload] :
       {std::tuple{"c-2", "t", "p"}, {"c-1", "u", "p"}, {"c-1", "t", "q"}}) {
    stamp = 2000;
    EXPECT_FALSE(stamps.IsRepeat(client, topic, payload, 10, &stamp));
    EXPECT_EQ(stamp, 2000);
  }
}

TEST(Qos2StampsTest, EntriesExpireAfterTheirTtl) {
  Qos2Stamps stamps;
  int64_t stamp = 1000;
  ASSERT_FALSE(stamps.IsRepeat("c-1", "t", "p", 0, &stamp));
  stamp = 2000;
  EXPECT_TRUE(stamps.IsRepeat("c-1", "t", "p", Qos2Stamps::kTtlMs, &stamp));
  EXPECT_EQ(stamp, 1000);
  // Seen again at kTtlMs: it lives kTtlMs from then.
  stamp = 3000;
  EXPECT_FALSE(
      stamps.IsRepeat("c-1", "t", "p", 2 * Qos2Stamps::kTtlMs + 1, &stamp));
  EXPECT_EQ(stamp, 3000);
}

}  // namespace
}  // namespace homepot
