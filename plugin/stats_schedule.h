// When the stats JSON is due: every stats_interval_s from start (0: never).
// Homepot asks Due on TICK, or on every event when TICK does not run, and
// calls Published after each publication (scheduled or forced).
//
// Owned by Homepot; broker thread only. Times are Clock::MonotonicMs.
#ifndef HOMEPOT_PLUGIN_STATS_SCHEDULE_H_
#define HOMEPOT_PLUGIN_STATS_SCHEDULE_H_

#include <cstdint>

namespace homepot {

class StatsSchedule {
 public:
  StatsSchedule(int64_t interval_ms, int64_t started_ms)
      : interval_ms_(interval_ms),
        started_ms_(started_ms),
        next_ms_(started_ms + interval_ms) {}

  // False when stats are off (interval 0).
  bool enabled() const { return interval_ms_ > 0; }
  bool Due(int64_t now_ms) const { return enabled() && now_ms >= next_ms_; }
  void Published(int64_t now_ms) { next_ms_ = now_ms + interval_ms_; }
  int64_t uptime_s(int64_t now_ms) const {
    return (now_ms - started_ms_) / 1000;
  }

 private:
  const int64_t interval_ms_;
  const int64_t started_ms_;
  int64_t next_ms_;
};

}  // namespace homepot

#endif  // HOMEPOT_PLUGIN_STATS_SCHEDULE_H_
