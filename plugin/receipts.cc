#include "receipts.h"

namespace homepot {
namespace {

void AppendStamp(std::string* out, int64_t unix_ms, StampCache* stamps) {
  char stamp[kStampLen];
  FormatStamp(unix_ms, stamp, stamps);
  out->push_back('"');
  out->append(stamp, kStampLen);
  out->push_back('"');
}

}  // namespace

void AppendJsonString(std::string* out, std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  out->push_back('"');
  for (char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (c == '"' || c == '\\') {
      out->push_back('\\');
      out->push_back(ch);
    } else if (c < 0x20) {
      out->append("\\u00");
      out->push_back(kHex[c >> 4]);
      out->push_back(kHex[c & 0xf]);
    } else {
      out->push_back(ch);
    }
  }
  out->push_back('"');
}

void RenderRoutingReceipt(std::string* out, std::string_view message_id,
                          std::string_view topic, int64_t received_ms,
                          uint32_t routed, uint32_t queued, int64_t expires_ms,
                          StampCache* stamps) {
  out->assign("{\"message_id\":");
  if (message_id.empty()) {
    out->append("null");
  } else {
    AppendJsonString(out, message_id);
  }
  out->append(",\"topic\":");
  AppendJsonString(out, topic);
  out->append(",\"received_at\":");
  AppendStamp(out, received_ms, stamps);
  out->append(",\"routed\":");
  out->append(std::to_string(routed));
  out->append(",\"queued\":");
  out->append(std::to_string(queued));
  out->append(",\"expires_at\":");
  if (expires_ms == 0) {
    out->append("null");
  } else {
    AppendStamp(out, expires_ms, stamps);
  }
  out->push_back('}');
}

void RenderAckReceipt(std::string* out, std::string_view message_id,
                      std::string_view device, std::string_view status,
                      int64_t acked_ms, int64_t latency_ms,
                      StampCache* stamps) {
  out->assign("{\"message_id\":");
  AppendJsonString(out, message_id);
  out->append(",\"device\":");
  AppendJsonString(out, device);
  out->append(",\"status\":");
  AppendJsonString(out, status);
  out->append(",\"acked_at\":");
  AppendStamp(out, acked_ms, stamps);
  out->append(",\"latency_ms\":");
  out->append(std::to_string(latency_ms));
  out->push_back('}');
}

}  // namespace homepot
