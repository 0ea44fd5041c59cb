#include "device.h"

#include "utf8.h"

namespace homepot {

const char* DeviceIdProblem(std::string_view id) {
  if (id.empty()) return "empty";
  if (id.size() > kMaxDeviceIdBytes) return "longer than 128 bytes";
  if (!IsValidUtf8(id)) return "not valid UTF-8";
  // In valid UTF-8 these bytes only ever stand for themselves.
  for (unsigned char c : id) {
    if (c < 0x20 || c == 0x7f) return "contains a control character";
  }
  if (id.find('+') != std::string_view::npos) return "contains '+'";
  if (id.find('#') != std::string_view::npos) return "contains '#'";
  if (id.find('/') != std::string_view::npos) return "contains '/'";
  // A leading '$' would let "%u/#" reach $SYS/... and other $-topics.
  if (id.front() == '$') return "begins with '$'";
  return nullptr;
}

std::string DefaultToken(std::string_view device_id) {
  std::string token;
  token.reserve(kDefaultTokenPrefix.size() + device_id.size() +
                kDefaultTokenSuffix.size());
  token.append(kDefaultTokenPrefix)
      .append(device_id)
      .append(kDefaultTokenSuffix);
  return token;
}

bool IsDefaultToken(std::string_view topic, std::string_view device_id) {
  return topic.size() == kDefaultTokenPrefix.size() + device_id.size() +
                             kDefaultTokenSuffix.size() &&
         DefaultTokenDeviceId(topic) == device_id;
}

std::string_view DefaultTokenDeviceId(std::string_view topic) {
  const size_t affixes =
      kDefaultTokenPrefix.size() + kDefaultTokenSuffix.size();
  if (topic.size() <= affixes ||
      topic.substr(0, kDefaultTokenPrefix.size()) != kDefaultTokenPrefix ||
      topic.substr(topic.size() - kDefaultTokenSuffix.size()) !=
          kDefaultTokenSuffix) {
    return {};
  }
  return topic.substr(kDefaultTokenPrefix.size(), topic.size() - affixes);
}

}  // namespace homepot
