#include "receipts.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>

#include "stats.h"

namespace homepot {
namespace {

using nlohmann::ordered_json;

TEST(ReceiptsTest, RoutingReceiptIsTheDocumentedObject) {
  std::string out = "old";
  RenderRoutingReceipt(&out, "m-1", "devices/a/notifications", 1795000000000, 3,
                       1, 1795000300000);
  ordered_json j = ordered_json::parse(out);
  EXPECT_EQ(j, ordered_json::parse(
                   R"({"message_id":"m-1","topic":"devices/a/notifications",)"
                   R"("received_at":")" +
                   StampString(1795000000000) +
                   R"(","routed":3,"queued":1,"expires_at":")" +
                   StampString(1795000300000) + R"("})"));
  EXPECT_EQ(j.begin().key(), "message_id");  // the documented order
  RenderRoutingReceipt(&out, "", "t", 1795000000000, 0, 0, 0);
  j = ordered_json::parse(out);
  EXPECT_TRUE(j["message_id"].is_null());
  EXPECT_TRUE(j["expires_at"].is_null());
  EXPECT_EQ(j["routed"], 0);
}

TEST(ReceiptsTest, AckReceiptIsTheDocumentedObject) {
  std::string out;
  RenderAckReceipt(&out, "m-1", "pos-17", "displayed", 1795000000412, 412);
  EXPECT_EQ(ordered_json::parse(out),
            ordered_json::parse(R"({"message_id":"m-1","device":"pos-17",)"
                                R"("status":"displayed","acked_at":")" +
                                StampString(1795000000412) +
                                R"(","latency_ms":412})"));
}

TEST(ReceiptsTest, StringsAreEscaped) {
  const std::string hostile = "a\"b\\c\n\x01/é";
  std::string out;
  RenderAckReceipt(&out, hostile, "d", hostile, 0, 0);
  ordered_json j = ordered_json::parse(out);
  EXPECT_EQ(j["message_id"], hostile);
  EXPECT_EQ(j["status"], hostile);
}

}  // namespace
}  // namespace homepot
