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
  t.Begin(&a, "t/a", "", Lifetime{}, 1, 1000, f.Fn());
  EXPECT_TRUE(t.busy());
  Routing* r = t.CopyOf(&a, f.Fn());
  ASSERT_NE(r, nullptr);
  ++r->routed;
  ++t.CopyOf(&a, f.Fn())->routed;
  EXPECT_EQ(t.CopyOf(&b, f.Fn()), nullptr);
  t.FinishOpen(f.Fn());
  EXPECT_EQ(f.topics, std::vector<std::string>{"t/a"});
  EXPECT_EQ(f.routed, std::vector<uint32_t>{2});
  EXPECT_FALSE(t.busy());
  EXPECT_EQ(t.CopyOf(&a, f.Fn()), nullptr);
  // A new routing finishes the open one first.
  t.Begin(&a, "t/1", "", Lifetime{}, 0, 1000, f.Fn());
  t.Begin(&b, "t/2", "", Lifetime{}, 0, 1000, f.Fn());
  EXPECT_EQ(f.topics.back(), "t/1");
}

TEST(RoutingTallyTest, Qos2WaitsForItsFirstCopyOrItsDeadline) {
  RoutingTally t;
  Finished f;
  char a = 0, b = 0, c = 0;
  t.Begin(&a, "q/a", "", Lifetime{}, 2, 1000, f.Fn());
  t.Begin(&b, "q/b", "", Lifetime{}, 2, 1500, f.Fn());
  t.FinishDue(1001, f.Fn());  // other events meanwhile: still awaited
  EXPECT_TRUE(f.topics.empty());
  // b's PUBREL: its copies are counted, then the next event finishes it.
  ++t.CopyOf(&b, f.Fn())->routed;
  t.Begin(&c, "c", "", Lifetime{}, 0, 1600, f.Fn());
  EXPECT_EQ(f.topics, std::vector<std::string>{"q/b"});
  t.FinishOpen(f.Fn());
  // a never had a copy: finished with 0 once its wait ran out.
  t.FinishDue(1000 + RoutingTally::kAwaitMs, f.Fn());
  EXPECT_EQ(f.topics, (std::vector<std::string>{"q/b", "c", "q/a"}));
  EXPECT_EQ(f.routed, (std::vector<uint32_t>{1, 0, 0}));
  EXPECT_FALSE(t.busy());
}

TEST(RoutingTallyTest, AwaitedAreBounded) {
  RoutingTally t;
  Finished f;
  std::vector<char> buffers(RoutingTally::kMaxAwaiting + 1);
  for (char& b : buffers) t.Begin(&b, "q", "", Lifetime{}, 2, 0, f.Fn());
  EXPECT_EQ(f.topics.size(), 1u);  // the oldest was finished
  EXPECT_EQ(t.CopyOf(&buffers[0], f.Fn()), nullptr);
  t.FinishDue(kNoExpiry, f.Fn());
  EXPECT_EQ(f.topics.size(), buffers.size());
}

}  // namespace
}  // namespace homepot
