// The broker as the core sees it. broker_adapter.cc implements it with the
// mosquitto_* API; tests use a fake. Every method is called on the broker
// thread only.
#ifndef HOMEPOT_PLUGIN_BROKER_H_
#define HOMEPOT_PLUGIN_BROKER_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace homepot {

enum class LogLevel { kDebug, kInfo, kNotice, kWarning, kError };

class Broker {
 public:
  virtual ~Broker() = default;
  // Logs one line; the adapter adds the "homepot: " prefix.
  virtual void Log(LogLevel level, const std::string& message) = 0;
  // Ends every session of `username` (without its will).
  virtual void KickUsername(const std::string& username) = 0;
  // Ends the session with this client id (without its will).
  virtual void KickClientId(const std::string& client_id) = 0;
  // Publishes as the broker itself (QoS 0 unless stated), copying payload.
  virtual void Publish(const std::string& topic, std::string_view payload,
                       int qos, bool retain) = 0;
  // What a client handle that never logged in through BASIC_AUTH is.
  enum class Untracked {
    kTlsSession,   // connected with a certificate (use_identity_as_username)
    kClosed,       // connection gone: its will, or an offline session
    kRetainCheck,  // check_retain_source: the stored source of a retained
                   // message, re-checked for write access on delivery
  };
  virtual Untracked Classify(const void* handle) = 0;
  // Memory the broker will free itself (replacement payloads).
  virtual void* Alloc(size_t size) = 0;
  virtual void Free(void* ptr) = 0;
};

// Every clock the plugin reads goes through this seam: the broker thread's
// events and the registry thread get one injected, tests a fake. The
// registry thread shares the broker thread's clock, so an implementation
// must be safe to call from several threads at once.
class Clock {
 public:
  virtual ~Clock() = default;
  virtual int64_t MonotonicMs() = 0;  // for intervals and lockouts
  virtual int64_t WallMs() = 0;       // Unix epoch milliseconds
  // Wall clock to within a few milliseconds, cheaper (per-delivery times).
  virtual int64_t CoarseWallMs() { return WallMs(); }
  // Monotonic microseconds, exact: for measuring how long work took.
  virtual int64_t MonotonicUs() { return MonotonicMs() * 1000; }
};

// The real clocks. Stateless, so one object may serve every thread.
class SystemClock : public Clock {
 public:
  int64_t MonotonicMs() override;
  int64_t WallMs() override;
  int64_t CoarseWallMs() override;
  int64_t MonotonicUs() override;
  // A process-wide instance, for callers that are not handed a clock.
  static SystemClock* Instance();
};

// What the core needs to know about the client behind an event.
struct ClientInfo {
  const void* handle = nullptr;    // identity of the session, never deref'd
  const char* username = nullptr;  // may be nullptr
  const char* client_id = nullptr;
};

}  // namespace homepot

#endif  // HOMEPOT_PLUGIN_BROKER_H_
