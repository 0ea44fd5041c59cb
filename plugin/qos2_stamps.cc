#include "qos2_stamps.h"

#include <functional>
#include <iterator>

namespace homepot {

bool Qos2Stamps::IsRepeat(std::string_view client_id, std::string_view topic,
                          std::string_view payload, int64_t now_ms,
                          int64_t* stamp_ms) {
  std::hash<std::string_view> h;
  uint64_t key = h(client_id) * 31 + h(topic);
  key = key * 1099511628211ull ^ h(payload);
  if (now_ms - last_sweep_ms_ > 10000 || entries_.size() >= kMaxEntries) {
    for (auto it = entries_.begin(); it != entries_.end();) {
      it = now_ms - it->second.seen_ms > kTtlMs ? entries_.erase(it)
                                                : std::next(it);
    }
    if (entries_.size() >= kMaxEntries) entries_.clear();
    last_sweep_ms_ = now_ms;
  }
  auto [it, inserted] = entries_.try_emplace(key, Entry{*stamp_ms, now_ms});
  bool repeat = !inserted && now_ms - it->second.seen_ms <= kTtlMs;
  if (repeat) {
    *stamp_ms = it->second.stamp_ms;
  } else {
    it->second.stamp_ms = *stamp_ms;
  }
  it->second.seen_ms = now_ms;
  return repeat;
}

}  // namespace homepot
