// The rules of a registry device that the plugin and homepot-admin share:
// the form of a device id, its default notification topic (token) and the
// payload limit of a device whose type has no row.
//
// The C++ rule here is the definition. schema/schema.sql spells it again in
// SQL, because a CHECK constraint cannot call C++: the CHECK named
// device_id_format on devices.device_id, and the max_payload_bytes of the
// 'unknown' row of device_types. tests/common/device_test.cc runs the C++
// rule and the CHECK over one corpus of ids, valid and invalid, and compares
// the 'unknown' row with kDefaultMaxPayloadBytes, so the two spellings cannot
// drift. The one difference: SQL cannot test UTF-8, so the CHECK accepts an
// id of invalid UTF-8 that DeviceIdProblem refuses (the plugin skips such a
// row with a warning; homepot-admin never writes one).
#ifndef HOMEPOT_COMMON_DEVICE_H_
#define HOMEPOT_COMMON_DEVICE_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace homepot {

inline constexpr size_t kMaxDeviceIdBytes = 128;

// Why `id` is not a valid device id (= MQTT username), or nullptr when it is
// one: 1-128 bytes of valid UTF-8 without '+', '#', '/', NUL or control
// characters (U+0000-U+001F, U+007F), not beginning with '$'. So %u can
// never widen an ACL filter or reach $-topics. The reason is a static string
// such as "contains '+'"; the checks run in the order of the list above, and
// the first that fails gives the reason.
const char* DeviceIdProblem(std::string_view id);

inline bool IsValidDeviceId(std::string_view id) {
  return DeviceIdProblem(id) == nullptr;
}

// A device without a device_token receives its notifications on
// devices/<id>/notifications.
inline constexpr std::string_view kDefaultTokenPrefix = "devices/";
inline constexpr std::string_view kDefaultTokenSuffix = "/notifications";

std::string DefaultToken(std::string_view device_id);

// True when `topic` is DefaultToken(device_id). Does not allocate.
bool IsDefaultToken(std::string_view topic, std::string_view device_id);

// The <id> of a topic of the form devices/<id>/notifications (a non-empty
// id, not checked further), or an empty view. Does not allocate.
std::string_view DefaultTokenDeviceId(std::string_view topic);

// The payload limit, in bytes, of a device whose device_type has no row in
// device_types: that of the 'unknown' type, 10 KiB unless its row says
// otherwise.
inline constexpr uint32_t kDefaultMaxPayloadBytes = 10240;

}  // namespace homepot

#endif  // HOMEPOT_COMMON_DEVICE_H_
