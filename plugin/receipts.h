// The receipt objects published on $SYS/homepot/receipts/<publisher>
// (docs/operating.md, "Receipts and acknowledgements"). Written straight
// into a reused buffer rather than through a JSON DOM: one is built for
// every notification whose publisher reads its receipts.
#ifndef HOMEPOT_PLUGIN_RECEIPTS_H_
#define HOMEPOT_PLUGIN_RECEIPTS_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "timestamp_injector.h"

namespace homepot {

// Appends `s` (valid UTF-8) as a JSON string literal.
void AppendJsonString(std::string* out, std::string_view s);

// {"message_id","topic","received_at","routed","queued","expires_at"} into
// `out` (replaced). An empty `message_id` and `expires_ms` 0 are null.
// `stamps` saves formatting dates.
void RenderRoutingReceipt(std::string* out, std::string_view message_id,
                          std::string_view topic, int64_t received_ms,
                          uint32_t routed, uint32_t queued, int64_t expires_ms,
                          StampCache* stamps = nullptr);

// {"message_id","device","status","acked_at","latency_ms"} into `out`
// (replaced).
void RenderAckReceipt(std::string* out, std::string_view message_id,
                      std::string_view device, std::string_view status,
                      int64_t acked_ms, int64_t latency_ms,
                      StampCache* stamps = nullptr);

}  // namespace homepot

#endif  // HOMEPOT_PLUGIN_RECEIPTS_H_
