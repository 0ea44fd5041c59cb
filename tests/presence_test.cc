#include "presence.h"

#include <gtest/gtest.h>

#include <string>

namespace homepot {
namespace {

TEST(PresenceTest, SubscribeAndUnsubscribePerClientId) {
  Presence p;
  EXPECT_FALSE(p.ReachesToken("c1"));
  p.Subscribed("c1", "devices/a/notifications", true, false);
  p.Subscribed("c1", "devices/+/notifications", true, false);
  EXPECT_TRUE(p.ReachesToken("c1"));
  EXPECT_FALSE(p.ReachesToken("c2"));
  EXPECT_FALSE(p.ReadsReceipts());
  p.Unsubscribed("c1", "devices/a/notifications");
  EXPECT_TRUE(p.ReachesToken("c1"));  // the wildcard still covers it
  p.Unsubscribed("c1", "devices/+/notifications");
  EXPECT_FALSE(p.ReachesToken("c1"));
  // A filter that covers neither is not kept.
  p.Subscribed("c1", "other/topic", false, false);
  EXPECT_FALSE(p.ReachesToken("c1"));
}

TEST(PresenceTest, ReceiptReadersAndForget) {
  Presence p;
  p.Subscribed("c1", "$SYS/homepot/receipts/a", false, true);
  p.Subscribed("c2", "devices/a/notifications", true, false);
  EXPECT_TRUE(p.ReadsReceipts());
  p.Forget("c1");
  EXPECT_FALSE(p.ReadsReceipts());
  EXPECT_TRUE(p.ReachesToken("c2"));
  p.Forget("c2");
  EXPECT_FALSE(p.ReachesToken("c2"));
}

TEST(PresenceTest, BoundedPerDevice) {
  Presence p;
  for (size_t i = 0; i < Presence::kMaxClients + 2; ++i) {
    p.Subscribed("c" + std::to_string(i), "t", true, false);
  }
  // The oldest client ids were forgotten first.
  EXPECT_FALSE(p.ReachesToken("c0"));
  EXPECT_FALSE(p.ReachesToken("c1"));
  EXPECT_TRUE(p.ReachesToken("c2"));
  // Filters beyond the bound are not remembered: the client id then stays
  // subscribed until it is forgotten.
  for (size_t i = 0; i < Presence::kMaxFilters + 5; ++i) {
    p.Subscribed("cx", "f" + std::to_string(i), true, false);
  }
  for (size_t i = 0; i < Presence::kMaxFilters + 5; ++i) {
    p.Unsubscribed("cx", "f" + std::to_string(i));
  }
  EXPECT_TRUE(p.ReachesToken("cx"));
  p.Forget("cx");
  EXPECT_FALSE(p.ReachesToken("cx"));
}

}  // namespace
}  // namespace homepot
