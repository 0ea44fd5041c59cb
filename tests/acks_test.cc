#include "acks.h"

#include <gtest/gtest.h>

#include <string>
#include <unordered_map>

namespace homepot {
namespace {

Lifetime Sent(DeviceEntry* publisher, const std::string& id,
              int64_t received_ms = 1000) {
  Lifetime l;
  l.publisher = publisher;
  l.received_ms = received_ms;
  l.message_id_len = static_cast<uint8_t>(id.size());
  id.copy(l.message_id_buf, id.size());
  return l;
}

class AcksTest : public ::testing::Test {
 protected:
  DeviceEntry* Entry(const std::string& id) {
    return &*devices_.try_emplace(id).first;
  }
  std::unordered_map<std::string, DeviceState> devices_;
};

TEST(AckParserTest, ReadsMessageIdAndStatus) {
  AckParser p;
  std::string_view id, status;
  ASSERT_TRUE(
      p.Parse(R"({"message_id":"m-1","status":"displayed"})", &id, &status));
  EXPECT_EQ(id, "m-1");
  EXPECT_EQ(status, "displayed");
  ASSERT_TRUE(p.Parse(R"({"message_id":"m\u002d2"})", &id, &status));
  EXPECT_EQ(id, "m-2");
  EXPECT_EQ(status, "received");  // the default
}

TEST(AckParserTest, RefusesWhatIsNoAck) {
  AckParser p;
  std::string_view id, status;
  const std::string too_long(65, 'x');
  for (const std::string& payload :
       {std::string(""), std::string("not json"), std::string("[]"),
        std::string(R"({"status":"received"})"),
        std::string(R"({"message_id":7})"), std::string(R"({"message_id":""})"),
        R"({"message_id":")" + too_long + R"("})",
        std::string(R"({"message_id":"m","status":1})"),
        std::string(R"({"message_id":"m","status":""})"),
        R"({"message_id":"m","status":")" + too_long + R"("})",
        R"({"message_id":"m","pad":")" + std::string(1024, 'x') + R"("})"}) {
    EXPECT_FALSE(p.Parse(payload, &id, &status)) << payload.substr(0, 80);
  }
}

TEST_F(AcksTest, FindsWhatTheDeviceWasSent) {
  SentNotifications sent;
  DeviceEntry* backend = Entry("homepot");
  DeviceEntry* a = Entry("a");
  DeviceEntry* b = Entry("b");
  sent.Add(a, Sent(backend, "m-1", 1234));
  const SentNotifications::Sent* s = sent.Find(a, "m-1");
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->publisher, backend);
  EXPECT_EQ(s->received_ms, 1234);
  // Not sent to b; unknown id; no id or no publisher: not remembered.
  EXPECT_EQ(sent.Find(b, "m-1"), nullptr);
  EXPECT_EQ(sent.Find(a, "m-2"), nullptr);
  sent.Add(b, Sent(backend, ""));
  sent.Add(b, Sent(nullptr, "m-3"));
  sent.Add(nullptr, Sent(backend, "m-4"));
  EXPECT_EQ(sent.size(), 1u);
  // The same id again is kept once, the newest.
  sent.Add(a, Sent(backend, "m-1", 5678));
  EXPECT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent.Find(a, "m-1")->received_ms, 5678);
  // Another publisher reusing the id does not take the acknowledgement.
  DeviceEntry* other = Entry("other");
  sent.Add(a, Sent(other, "m-1", 9999));
  EXPECT_EQ(sent.Find(a, "m-1")->publisher, backend);
}

TEST_F(AcksTest, CapacityReplacesTheOldest) {
  SentNotifications sent(3);
  DeviceEntry* backend = Entry("homepot");
  DeviceEntry* a = Entry("a");
  for (int i = 0; i < 5; ++i)
    sent.Add(a, Sent(backend, "m" + std::to_string(i)));
  EXPECT_EQ(sent.size(), 3u);
  EXPECT_EQ(sent.Find(a, "m0"), nullptr);
  EXPECT_EQ(sent.Find(a, "m1"), nullptr);
  for (const char* id : {"m2", "m3", "m4"}) {
    EXPECT_NE(sent.Find(a, id), nullptr) << id;
  }
}

}  // namespace
}  // namespace homepot
