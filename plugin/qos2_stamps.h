// Receipt stamps of recent QoS 2 notifications by (client id, topic,
// payload), so that a retransmitted PUBLISH (DUP before PUBREL) gets the
// stamp the first copy got: Mosquitto then sees identical bytes and routes
// it once. Entries live kTtlMs after they were last seen; the table is
// swept every 10 s and never holds more than kMaxEntries.
//
// Owned by the NotificationIntake; broker thread only. Times are
// Clock::MonotonicMs; stamps are wall-clock milliseconds.
#ifndef HOMEPOT_PLUGIN_QOS2_STAMPS_H_
#define HOMEPOT_PLUGIN_QOS2_STAMPS_H_

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <unordered_map>

namespace homepot {

class Qos2Stamps {
 public:
  static constexpr int64_t kTtlMs = 120000;
  static constexpr size_t kMaxEntries = 100000;

  // True for a repeat seen within kTtlMs: `*stamp_ms` is then set to the
  // first copy's stamp. Otherwise `*stamp_ms` is remembered for the message.
  bool IsRepeat(std::string_view client_id, std::string_view topic,
                std::string_view payload, int64_t now_ms, int64_t* stamp_ms);

 private:
  struct Entry {
    int64_t stamp_ms;
    int64_t seen_ms;
  };
  std::unordered_map<uint64_t, Entry> entries_;
  int64_t last_sweep_ms_ = 0;
};

}  // namespace homepot

#endif  // HOMEPOT_PLUGIN_QOS2_STAMPS_H_
