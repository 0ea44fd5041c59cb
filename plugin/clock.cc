#include <time.h>

#include "broker.h"

namespace homepot {
namespace {

int64_t Millis(clockid_t clock) {
  struct timespec ts;
  clock_gettime(clock, &ts);
  return int64_t{ts.tv_sec} * 1000 + ts.tv_nsec / 1000000;
}

}  // namespace

// Intervals and lockouts need no better than the kernel tick (a few ms), and
// the coarse clock is several times cheaper on the message path.
int64_t SystemClock::MonotonicMs() { return Millis(CLOCK_MONOTONIC_COARSE); }

int64_t SystemClock::WallMs() { return Millis(CLOCK_REALTIME); }

int64_t SystemClock::CoarseWallMs() { return Millis(CLOCK_REALTIME_COARSE); }

int64_t SystemClock::MonotonicUs() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1000000 + ts.tv_nsec / 1000;
}

SystemClock* SystemClock::Instance() {
  static SystemClock clock;
  return &clock;
}

}  // namespace homepot
