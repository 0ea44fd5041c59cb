#include "lifetime.h"

#include <gtest/gtest.h>

#include <string>

#include "rfc3339.h"

namespace homepot {
namespace {

constexpr int64_t kStarted = 1795000000000;  // 2026-11-18
constexpr uint32_t kMaxRead = 262144;

// A payload as OnMessage leaves it: the stamp in "received_at".
std::string Stamped(int64_t ms, const std::string& extra = "") {
  return R"({"title":"t","body":"b")" + extra + R"(,"received_at":")" +
         StampString(ms) + "\"}";
}
size_t StampOffset(const std::string& payload) {
  return payload.find("received_at") + 14;
}

TEST(LifetimesTest, RememberedPayloadLivesForItsTtl) {
  Lifetimes lifetimes("received_at", 0, kStarted, kMaxRead);
  const int64_t received = kStarted + 5000;
  std::string p = Stamped(received, R"(,"ttl":2)");
  DeviceEntry entry;
  DeviceEntry* publisher = &entry;
  lifetimes.Remember(p.data(), p.size(), StampOffset(p), received, 2, publisher,
                     "m-1");
  const Lifetime& l = lifetimes.Of(p.data(), p.size());
  EXPECT_EQ(lifetimes.parsed(), 0u);
  EXPECT_EQ(l.received_ms, received);
  EXPECT_EQ(l.expires_ms, received + 2000);
  EXPECT_EQ(l.publisher, publisher);
  EXPECT_EQ(l.message_id(), "m-1");
  EXPECT_TRUE(l.LiveAt(received + 1999, false));
  EXPECT_FALSE(l.LiveAt(received + 2000, true));
}

TEST(LifetimesTest, DefaultTtlAppliesWithoutTtlAndZeroMeansNoLimit) {
  std::string p = Stamped(kStarted);
  Lifetimes unlimited("received_at", 0, kStarted, kMaxRead);
  unlimited.Remember(p.data(), p.size(), StampOffset(p), kStarted, -1, nullptr,
                     "");
  EXPECT_EQ(unlimited.Of(p.data(), p.size()).expires_ms, kNoExpiry);
  Lifetimes limited("received_at", 60, kStarted, kMaxRead);
  limited.Remember(p.data(), p.size(), StampOffset(p), kStarted, -1, nullptr,
                   "");
  EXPECT_EQ(limited.Of(p.data(), p.size()).expires_ms, kStarted + 60000);
}

TEST(LifetimesTest, TtlZeroIsLiveOnlyWhenRoutedToAConnectedSession) {
  Lifetimes lifetimes("received_at", 60, kStarted, kMaxRead);
  std::string p = Stamped(kStarted, R"(,"ttl":0)");
  const Lifetime& l = lifetimes.Remember(p.data(), p.size(), StampOffset(p),
                                         kStarted, 0, nullptr, "");
  EXPECT_TRUE(l.now_or_never);
  EXPECT_TRUE(l.LiveAt(kStarted + 100000, true));
  EXPECT_FALSE(l.LiveAt(kStarted, false));
}

TEST(LifetimesTest, AReusedBufferIsReadAgain) {
  Lifetimes lifetimes("received_at", 0, kStarted, kMaxRead);
  std::string p = Stamped(kStarted, R"(,"ttl":5)");
  lifetimes.Remember(p.data(), p.size(), StampOffset(p), kStarted, 5, nullptr,
                     "");
  // Same address, another payload (another stamp and ttl).
  std::string next = Stamped(kStarted + 1000, R"(,"ttl":9)");
  ASSERT_EQ(next.size(), p.size());
  p.replace(0, p.size(), next);
  const Lifetime& l = lifetimes.Of(p.data(), p.size());
  EXPECT_EQ(lifetimes.parsed(), 1u);
  EXPECT_EQ(l.received_ms, kStarted + 1000);
  EXPECT_EQ(l.expires_ms, kStarted + 10000);
  // Remembered now: not read again.
  lifetimes.Of(p.data(), p.size());
  EXPECT_EQ(lifetimes.parsed(), 1u);
}

TEST(LifetimesTest, UnknownPayloadIsReadOnce) {
  Lifetimes lifetimes("received_at", 0, kStarted, kMaxRead);
  const std::string p =
      R"({"title":"t","body":"b","ttl":30,"message_id":"abc",)"
      R"("received_at":"2026-11-18T10:00:00.250+01:00"})";
  const Lifetime& l = lifetimes.Of(p.data(), p.size());
  const int64_t received = *ParseRfc3339Ms("2026-11-18T09:00:00.250Z");
  EXPECT_EQ(l.received_ms, received);
  EXPECT_EQ(l.expires_ms, received + 30000);
  EXPECT_EQ(l.message_id(), "abc");
  EXPECT_EQ(l.publisher, nullptr);
  lifetimes.Of(p.data(), p.size());
  EXPECT_EQ(lifetimes.parsed(), 1u);
}

TEST(LifetimesTest, PayloadWithoutAStampCountsAsReceivedAtStart) {
  Lifetimes lifetimes("received_at", 10, kStarted, /*max_read=*/80);
  // The last one is stamped but larger than the plugin accepts: not parsed.
  for (std::string p :
       {std::string(R"({"title":"t","body":"b"})"),
        std::string(R"({"received_at":"soon"})"), std::string("not json"),
        R"({"title":"t","body":")" + std::string(80, 'x') +
            R"(","received_at":"2026-11-18T09:00:00.250Z"})"}) {
    const Lifetime& l = lifetimes.Of(p.data(), p.size());
    EXPECT_EQ(l.received_ms, kStarted) << p;
    EXPECT_EQ(l.expires_ms, kStarted + 10000) << p;
  }
}

TEST(LifetimesTest, LongMessageIdsAreNotKept) {
  Lifetimes lifetimes("received_at", 0, kStarted, kMaxRead);
  std::string p = Stamped(kStarted);
  const Lifetime& l =
      lifetimes.Remember(p.data(), p.size(), StampOffset(p), kStarted, -1,
                         nullptr, std::string(65, 'x'));
  EXPECT_EQ(l.message_id(), "");
  const Lifetime& k =
      lifetimes.Remember(p.data(), p.size(), StampOffset(p), kStarted, -1,
                         nullptr, std::string(64, 'x'));
  EXPECT_EQ(k.message_id(), std::string(64, 'x'));
}

TEST(LifetimesTest, CapacityIsBoundedAndTheOldestIsReplaced) {
  Lifetimes lifetimes("received_at", 0, kStarted, kMaxRead, /*capacity=*/2);
  std::string a = Stamped(kStarted, R"(,"ttl":1)");
  std::string b = Stamped(kStarted, R"(,"ttl":2)");
  std::string c = Stamped(kStarted, R"(,"ttl":3)");
  for (std::string* p : {&a, &b, &c}) {
    lifetimes.Remember(p->data(), p->size(), StampOffset(*p), kStarted, 1,
                       nullptr, "");
  }
  EXPECT_EQ(lifetimes.size(), 2u);
  // b and c remembered (ttl 1 as told); a is read from its payload.
  EXPECT_EQ(lifetimes.Of(c.data(), c.size()).expires_ms, kStarted + 1000);
  EXPECT_EQ(lifetimes.Of(b.data(), b.size()).expires_ms, kStarted + 1000);
  EXPECT_EQ(lifetimes.parsed(), 0u);
  EXPECT_EQ(lifetimes.Of(a.data(), a.size()).expires_ms, kStarted + 1000);
  EXPECT_EQ(lifetimes.parsed(), 1u);
  EXPECT_EQ(lifetimes.size(), 2u);
}

}  // namespace
}  // namespace homepot
