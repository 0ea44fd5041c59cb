#include "routing_tally.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace homepot {
namespace {

struct Finished {
  std::vector<std::string> topics;
  std::vector<uint32_t> routed;
  auto Fn() {
    return [this](const Routing& r) {
      topics.push_back(r.topic);
      routed.push_back(r.routed);
    };
  }
};

TEST(RoutingTallyTest, CountsTheOpenRoutingUntilAnotherEvent) {
  RoutingTally t;
  Finished f;
  char a = 0, b = 0;
  EXPECT_FALSE(t.busy());
  t.Begin(&a, 1, "t/a", "", Lifetime{}, 1, 1000, f.Fn());
  EXPECT_TRUE(t.busy());
  Routing* r = t.CopyOf(&a, 1, f.Fn());
  ASSERT_NE(r, nullptr);
  ++r->routed;
  ++t.CopyOf(&a, 1, f.Fn())->routed;
  EXPECT_EQ(t.CopyOf(&b, 1, f.Fn()), nullptr);
  t.FinishOpen(f.Fn());
  EXPECT_EQ(f.topics, std::vector<std::string>{"t/a"});
  EXPECT_EQ(f.routed, std::vector<uint32_t>{2});
  EXPECT_FALSE(t.busy());
  EXPECT_EQ(t.CopyOf(&a, 1, f.Fn()), nullptr);
  // A new routing finishes the open one first.
  t.Begin(&a, 1, "t/1", "", Lifetime{}, 0, 1000, f.Fn());
  t.Begin(&b, 1, "t/2", "", Lifetime{}, 0, 1000, f.Fn());
  EXPECT_EQ(f.topics.back(), "t/1");
}

TEST(RoutingTallyTest, Qos2WaitsForItsFirstCopyOrItsDeadline) {
  RoutingTally t;
  Finished f;
  char a = 0, b = 0, c = 0;
  t.Begin(&a, 1, "q/a", "", Lifetime{}, 2, 1000, f.Fn());
  t.Begin(&b, 1, "q/b", "", Lifetime{}, 2, 1500, f.Fn());
  t.FinishDue(1001, f.Fn());  // other events meanwhile: still awaited
  EXPECT_TRUE(f.topics.empty());
  // b's PUBREL: its copies are counted, then the next event finishes it.
  ++t.CopyOf(&b, 1, f.Fn())->routed;
  t.Begin(&c, 1, "c", "", Lifetime{}, 0, 1600, f.Fn());
  EXPECT_EQ(f.topics, std::vector<std::string>{"q/b"});
  t.FinishOpen(f.Fn());
  // a never had a copy: finished with 0 once its wait ran out.
  t.FinishDue(1000 + RoutingTally::kAwaitMs, f.Fn());
  EXPECT_EQ(f.topics, (std::vector<std::string>{"q/b", "c", "q/a"}));
  EXPECT_EQ(f.routed, (std::vector<uint32_t>{1, 0, 0}));
  EXPECT_FALSE(t.busy());
}

TEST(RoutingTallyTest, AStaleAwaitedRoutingNeverTakesAnotherCopy) {
  RoutingTally t;
  Finished f;
  char x = 0;
  // A QoS 2 notification whose buffer was freed before its PUBREL, then
  // another one stamped at the same address.
  t.Begin(&x, 1, "stale", "", Lifetime{}, 2, 0, f.Fn());
  t.Begin(&x, 1, "new", "", Lifetime{}, 2, 0, f.Fn());
  ++t.CopyOf(&x, 1, f.Fn())->routed;
  t.FinishDue(kNoExpiry, f.Fn());
  EXPECT_EQ(f.topics, std::vector<std::string>{"new"});
  EXPECT_EQ(f.routed, std::vector<uint32_t>{1});
  // Another length at the address is another payload.
  t.Begin(&x, 10, "ten", "", Lifetime{}, 0, 0, f.Fn());
  EXPECT_EQ(t.CopyOf(&x, 9, f.Fn()), nullptr);
}

TEST(RoutingTallyTest, TopicsAreCutAtACharacterBoundary) {
  RoutingTally t;
  Finished f;
  char x = 0;
  const std::string topic =
      std::string(RoutingTally::kMaxTopicBytes - 1, 'a') + "\xc3\xa9";
  t.Begin(&x, 1, topic, "", Lifetime{}, 0, 0, f.Fn());
  t.FinishOpen(f.Fn());
  EXPECT_EQ(f.topics[0], std::string(RoutingTally::kMaxTopicBytes - 1, 'a'));
}

TEST(RoutingTallyTest, AwaitedAreBounded) {
  RoutingTally t;
  Finished f;
  std::vector<char> buffers(RoutingTally::kMaxAwaiting + 1);
  for (char& b : buffers) t.Begin(&b, 1, "q", "", Lifetime{}, 2, 0, f.Fn());
  EXPECT_EQ(f.topics.size(), 1u);  // the oldest was finished
  EXPECT_EQ(t.CopyOf(&buffers[0], 1, f.Fn()), nullptr);
  t.FinishDue(kNoExpiry, f.Fn());
  EXPECT_EQ(f.topics.size(), buffers.size());
}

}  // namespace
}  // namespace homepot
