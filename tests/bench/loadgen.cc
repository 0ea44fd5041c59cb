// homepot_loadgen: an MQTT load generator on libmosquitto for benchmarking
// Mosquitto with and without the HOMEPOT plugin.
//
// Many clients run on a few threads: every thread owns a set of libmosquitto
// clients on non-blocking sockets and drives them with one epoll loop
// (mosquitto_loop_read / _write / _misc), never mosquitto_loop_start.
//
// Modes (run `homepot_loadgen --help` for the options):
//   throughput  S subscribers, each on its own devices/<name>/notifications,
//               and P publishers sending a HOMEPOT-shaped notification
//               round-robin to those topics at a fixed offered rate (or as
//               fast as a window of outstanding messages allows). Reports
//               messages/s received, lost, duplicates and end-to-end latency
//               (the send time travels in the payload: "data":{"seq":N,
//               "t_ns":T}; the broker may add fields, parsing is lenient).
//               Also reports the gaps between consecutive receptions (all
//               subscribers together): the longest stall of the flow.
//   connect     C clients with credentials connect in parallel (bounded
//               concurrency), wait for CONNACK and disconnect; reports
//               connects/s and failures, for one or more rounds.
//   flood       C threads, each on a raw TCP socket, send MQTT 3.1.1 CONNECTs
//               with a fresh random username of B bytes (up to 65,535, the
//               MQTT maximum; libmosquitto is not used) and a wrong
//               password, wait for the CONNACK or the close, and repeat for
//               S seconds; reports attempts and the answers seen.
//   free-port   prints free 127.0.0.1 TCP ports (--count N).
//   wait-port   waits until 127.0.0.1:PORT accepts a TCP connection.
//
// Output: human-readable lines starting with "# ", then exactly one line
// "RESULT key=value ..." (machine-readable). Exit status 0 on success, 2 on
// bad usage, 3 when clients failed to connect or subscribe, 4 on the
// watchdog (every run is bounded in time).
#include <arpa/inet.h>
#include <dirent.h>
#include <mosquitto.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

namespace {

int64_t NowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

constexpr int64_t kMs = 1000000;
constexpr int64_t kSec = 1000000000;

// ---------------------------------------------------------------- options

struct Options {
  std::string mode;
  std::string host = "127.0.0.1";
  int port = 1883;
  int threads = 2;
  int protocol = 311;  // 311 or 5
  int qos = 0;
  int keepalive = 60;
  double connect_timeout_s = 60;
  int concurrency = 200;  // connects in flight at once (all threads)
  std::string password;   // shared by every pattern user
  bool no_auth = false;   // send no username/password at all
  // names: subscriber / connect client k is printf(pattern, start + k*stride)
  std::string pattern = "dev-%ld";
  long start = 0;
  long stride = 1;
  std::string topic_pattern = "devices/%s/notifications";
  // throughput
  long subscribers = 100;
  long publishers = 1;
  std::string pub_user = "backend";
  std::string pub_password;  // default: --password
  std::string pub_subscribe;  // a filter each publisher subscribes to
  double rate = 0;           // total msgs/s; 0 = closed loop (window)
  long window = 1000;        // outstanding messages in closed-loop mode
  long count = 0;            // messages; 0 = unlimited (then --duration)
  double duration_s = 0;     // seconds of publishing; 0 = until --count
  double drain_s = 3;        // wait for stragglers after the last publish
  int payload_size = 250;
  int broker_pid = 0;  // read its CPU time from /proc around the run
  int timeline_ms = 500;
  std::string ready_file;    // created once every client is ready
  double start_delay_s = 0;  // then wait this long before publishing
  bool tcp_nodelay = true;
  // connect, flood
  long clients = 100;
  int rounds = 1;
  long username_bytes = 65535;  // flood
  // free-port / wait-port
  int port_count = 1;
  double timeout_s = 60;
  int watch_pid = 0;
};

[[noreturn]] void Usage(int code) {
  std::fprintf(code ? stderr : stdout, R"(usage: homepot_loadgen MODE [options]
modes: throughput | connect | flood | free-port | wait-port

common:
  --host H              broker address (default 127.0.0.1)
  --port P              broker port (default 1883)
  --threads T           worker threads, each owning many clients (default 2)
  --protocol 311|5      MQTT v3.1.1 or v5 (default 311)
  --qos 0|1|2           publish and subscribe QoS (default 0)
  --password PW         password shared by all pattern users
  --no-auth             send no credentials (anonymous)
  --pattern FMT         name of client k: printf(FMT, start + k*stride),
                        one %%ld (default dev-%%ld); it is the username and
                        the device part of the topic
  --start N --stride N  index mapping (default 0 and 1)
  --concurrency N       connects in flight at once (default 200)
  --connect-timeout S   give up on connecting/subscribing after S (default 60)
  --keepalive S         (default 60)
  --no-nodelay          leave Nagle's algorithm on

throughput:
  --subscribers S       (default 100); subscriber k subscribes to
                        printf(--topic-pattern, name(k))
  --topic-pattern FMT   one %%s (default devices/%%s/notifications)
  --publishers P        (default 1), all log in as --pub-user
  --pub-user U          (default backend)   --pub-password PW (default --password)
  --pub-subscribe F     each publisher subscribes to filter F (e.g. its
                        receipts); what it gets is counted as receipts=
  --rate R              offered messages/s over all publishers; 0 = as fast
                        as --window outstanding messages allow (default 0)
  --window W            (default 1000)
  --count N             messages to send      --duration S  seconds to send
                        (one of them is required; the first reached ends it)
  --drain S             wait S after the last publish for stragglers (default 3)
  --payload-size B      approximate payload bytes (default 250)
  --broker-pid PID      report the broker's CPU time (from /proc/PID/task/*/
                        schedstat) spent between the first publish and the end
  --timeline-ms MS      receive-count buckets (default 500)
  --ready-file PATH     create PATH once every client is connected and
                        subscribed (logins done), e.g. for a profiler
  --start-delay S       then wait S before publishing (default 0)

connect:
  --clients C           (default 100)   --rounds R  repeat R times (default 1)

flood (raw sockets, MQTT 3.1.1, as fast as answers come):
  --clients C           concurrent connections (default 100; e.g. 4)
  --username-bytes B    random [A-Za-z0-9] username length, 1..65535
                        (default 65535)
  --duration S          seconds to flood (required)

free-port: --count N     wait-port: --port P --timeout S [--pid PID]
)");
  std::exit(code);
}

long ToLong(const char* name, const char* v) {
  char* end = nullptr;
  errno = 0;
  long r = std::strtol(v, &end, 10);
  if (errno || end == v || *end) {
    std::fprintf(stderr, "homepot_loadgen: %s: not an integer: %s\n", name, v);
    std::exit(2);
  }
  return r;
}

double ToDouble(const char* name, const char* v) {
  char* end = nullptr;
  errno = 0;
  double r = std::strtod(v, &end);
  if (errno || end == v || *end || !(r >= 0)) {
    std::fprintf(stderr, "homepot_loadgen: %s: not a number >= 0: %s\n", name,
                 v);
    std::exit(2);
  }
  return r;
}

Options Parse(int argc, char** argv) {
  Options o;
  if (argc < 2) Usage(2);
  o.mode = argv[1];
  if (o.mode == "--help" || o.mode == "-h") Usage(0);
  bool count_given = false;
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    auto val = [&]() -> const char* {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "homepot_loadgen: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--help" || a == "-h")
      Usage(0);
    else if (a == "--host")
      o.host = val();
    else if (a == "--port")
      o.port = int(ToLong("--port", val()));
    else if (a == "--threads")
      o.threads = int(ToLong("--threads", val()));
    else if (a == "--protocol")
      o.protocol = int(ToLong("--protocol", val()));
    else if (a == "--qos")
      o.qos = int(ToLong("--qos", val()));
    else if (a == "--keepalive")
      o.keepalive = int(ToLong("--keepalive", val()));
    else if (a == "--connect-timeout")
      o.connect_timeout_s = ToDouble(a.c_str(), val());
    else if (a == "--concurrency")
      o.concurrency = int(ToLong(a.c_str(), val()));
    else if (a == "--password")
      o.password = val();
    else if (a == "--no-auth")
      o.no_auth = true;
    else if (a == "--pattern")
      o.pattern = val();
    else if (a == "--start")
      o.start = ToLong(a.c_str(), val());
    else if (a == "--stride")
      o.stride = ToLong(a.c_str(), val());
    else if (a == "--topic-pattern")
      o.topic_pattern = val();
    else if (a == "--subscribers")
      o.subscribers = ToLong(a.c_str(), val());
    else if (a == "--publishers")
      o.publishers = ToLong(a.c_str(), val());
    else if (a == "--pub-user")
      o.pub_user = val();
    else if (a == "--pub-password")
      o.pub_password = val();
    else if (a == "--pub-subscribe")
      o.pub_subscribe = val();
    else if (a == "--rate")
      o.rate = ToDouble(a.c_str(), val());
    else if (a == "--window")
      o.window = ToLong(a.c_str(), val());
    else if (a == "--count") {
      // --count is the message count in throughput, the port count in free-port
      long n = ToLong(a.c_str(), val());
      o.count = n;
      o.port_count = int(n);
      count_given = true;
    } else if (a == "--duration")
      o.duration_s = ToDouble(a.c_str(), val());
    else if (a == "--drain")
      o.drain_s = ToDouble(a.c_str(), val());
    else if (a == "--ready-file")
      o.ready_file = val();
    else if (a == "--start-delay")
      o.start_delay_s = ToDouble(a.c_str(), val());
    else if (a == "--payload-size")
      o.payload_size = int(ToLong(a.c_str(), val()));
    else if (a == "--broker-pid")
      o.broker_pid = int(ToLong(a.c_str(), val()));
    else if (a == "--timeline-ms")
      o.timeline_ms = int(ToLong(a.c_str(), val()));
    else if (a == "--no-nodelay")
      o.tcp_nodelay = false;
    else if (a == "--clients")
      o.clients = ToLong(a.c_str(), val());
    else if (a == "--rounds")
      o.rounds = int(ToLong(a.c_str(), val()));
    else if (a == "--username-bytes")
      o.username_bytes = ToLong(a.c_str(), val());
    else if (a == "--timeout")
      o.timeout_s = ToDouble(a.c_str(), val());
    else if (a == "--pid")
      o.watch_pid = int(ToLong(a.c_str(), val()));
    else {
      std::fprintf(stderr, "homepot_loadgen: unknown option %s\n", a.c_str());
      Usage(2);
    }
  }
  auto bad = [](const char* what) {
    std::fprintf(stderr, "homepot_loadgen: %s\n", what);
    std::exit(2);
  };
  if (o.threads < 1 || o.threads > 64) bad("--threads must be 1..64");
  if (o.protocol != 311 && o.protocol != 5) bad("--protocol must be 311 or 5");
  if (o.qos < 0 || o.qos > 2) bad("--qos must be 0, 1 or 2");
  if (o.concurrency < 1) bad("--concurrency must be >= 1");
  if (o.timeline_ms < 10) bad("--timeline-ms must be >= 10");
  if (o.pub_password.empty()) o.pub_password = o.password;
  // Names use a long index: accept the natural "dev-%d" too.
  if (o.pattern.find("%ld") == std::string::npos) {
    size_t at = o.pattern.find("%d");
    if (at != std::string::npos) o.pattern.replace(at, 2, "%ld");
  }
  if (o.mode == "throughput") {
    if (o.subscribers < 1 || o.subscribers > 100000)
      bad("--subscribers must be 1..100000");
    if (o.publishers < 1 || o.publishers > 1000)
      bad("--publishers must be 1..1000");
    if (!count_given && o.duration_s <= 0)
      bad("throughput needs --count or --duration");
    if (o.duration_s > 3600) bad("--duration is capped at 3600 s");
    if (o.drain_s > 600) bad("--drain is capped at 600 s");
    if (o.start_delay_s < 0 || o.start_delay_s > 600)
      bad("--start-delay must be 0..600 s");
    if (o.window < 1) bad("--window must be >= 1");
    if (o.payload_size < 0 || o.payload_size > 200000)
      bad("--payload-size must be 0..200000");
  } else if (o.mode == "connect") {
    if (o.clients < 1 || o.clients > 100000) bad("--clients must be 1..100000");
    if (o.rounds < 1 || o.rounds > 100) bad("--rounds must be 1..100");
  } else if (o.mode == "flood") {
    if (o.clients < 1 || o.clients > 1000) bad("--clients must be 1..1000");
    if (o.username_bytes < 1 || o.username_bytes > 65535)
      bad("--username-bytes must be 1..65535");
    if (o.duration_s <= 0 || o.duration_s > 3600)
      bad("flood needs --duration in (0, 3600] s");
  } else if (o.mode == "free-port") {
    if (o.port_count < 1 || o.port_count > 100) bad("--count must be 1..100");
  } else if (o.mode == "wait-port") {
  } else {
    std::fprintf(stderr, "homepot_loadgen: unknown mode %s\n", o.mode.c_str());
    Usage(2);
  }
  return o;
}

std::string Name(const Options& o, long k) {
  char buf[512];
  std::snprintf(buf, sizeof buf, o.pattern.c_str(), o.start + k * o.stride);
  return buf;
}

std::string TopicFor(const Options& o, const std::string& name) {
  char buf[1024];
  std::snprintf(buf, sizeof buf, o.topic_pattern.c_str(), name.c_str());
  return buf;
}

// Sum of on-CPU nanoseconds of every thread of `pid` (or, with `field` 1,
// of the time they were runnable but waited for a CPU); -1 if unreadable.
int64_t ProcessCpuNs(int pid, int field = 0) {
  if (pid <= 0) return -1;
  std::string dir = "/proc/" + std::to_string(pid) + "/task";
  DIR* d = opendir(dir.c_str());
  if (!d) return -1;
  int64_t total = 0;
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] == '.') continue;
    std::string path = dir + "/" + e->d_name + "/schedstat";
    FILE* f = std::fopen(path.c_str(), "r");
    if (!f) continue;
    long long ns[2] = {0, 0};
    if (std::fscanf(f, "%lld %lld", &ns[0], &ns[1]) == 2) total += ns[field];
    std::fclose(f);
  }
  closedir(d);
  return total;
}

// On-CPU nanoseconds of this process (all threads, user + system).
int64_t SelfCpuNs() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return (int64_t(ru.ru_utime.tv_sec) + ru.ru_stime.tv_sec) * 1000000000 +
         (int64_t(ru.ru_utime.tv_usec) + ru.ru_stime.tv_usec) * 1000;
}

struct Percentiles {
  double p50 = 0, p90 = 0, p99 = 0, p999 = 0, max = 0;  // microseconds
};

Percentiles ComputePercentiles(std::vector<int64_t>* v) {
  Percentiles p;
  if (v->empty()) return p;
  auto at = [&](double q) {
    size_t k = size_t(q * double(v->size() - 1) + 0.5);
    std::nth_element(v->begin(), v->begin() + long(k), v->end());
    return double((*v)[k]) / 1000.0;
  };
  p.p50 = at(0.50);
  p.p90 = at(0.90);
  p.p99 = at(0.99);
  p.p999 = at(0.999);
  p.max = double(*std::max_element(v->begin(), v->end())) / 1000.0;
  return p;
}

// ------------------------------------------------------------ shared state

enum Phase : int { kConnectPhase = 0, kRun, kDrain, kDisconnect, kStop };

struct Shared {
  const Options* o = nullptr;
  std::atomic<int> phase{kConnectPhase};
  std::atomic<int> round{0};    // connect mode: bumped to start a round
  std::atomic<long> ready{0};   // connected (+ subscribed)
  std::atomic<long> failed{0};  // connect/subscribe failures
  std::atomic<long> done{0};    // connect mode: finished this round
  std::atomic<long> unexpected_disconnects{0};
  // throughput
  std::vector<std::string> topics;  // subscriber topics, round-robin
  std::atomic<long> next_seq{0};
  std::atomic<long> sent{0};
  std::atomic<long> publish_errors{0};
  std::atomic<long> acked{0};    // QoS>0 PUBACK/PUBCOMP
  std::atomic<long> refused{0};  // v5 reason code >= 0x80
  std::atomic<long> received{0};
  std::atomic<long> unique{0};
  std::atomic<long> duplicates{0};
  std::atomic<long> stamped{0};  // payload carries "received_at"
  std::atomic<long> unparsed{0};
  std::atomic<long> receipts{0};  // messages publishers got
  std::atomic<long> pubs_finished{0};
  std::atomic<int64_t> last_recv_ns{0};
  std::atomic<int64_t> max_behind_ns{0};
  int64_t t_run = 0;           // first publish may happen from here
  long seq_cap = 0;            // seq numbers 0..seq_cap-1
  std::vector<uint64_t> seen;  // bitmap, atomic via __atomic builtins
  std::unique_ptr<std::atomic<long>[]> timeline;
  size_t timeline_len = 0;
};

Shared g;

enum class Role { kSub, kPub, kConn };
constexpr int kMaxAttempts = 3;

enum class St {
  kIdle,
  kConnecting,
  kRetry,  // lost before it was ready: connect again (up to kMaxAttempts)
  kSubscribing,
  kReady,
  kClosing,
  kDone,
  kFailed
};

struct Worker;

struct Client {
  mosquitto* m = nullptr;
  Worker* w = nullptr;
  Role role = Role::kSub;
  long index = 0;
  std::string name, topic;
  St st = St::kIdle;
  int64_t t_start = 0;
  int64_t connected_ns = 0;
  int attempts = 0;
  int reg_fd = -1;
  uint32_t reg_events = 0;
  // publisher
  long sent_here = 0;
  int64_t next_due = 0;
  bool finished = false;
};

struct Worker {
  int id = 0;
  std::vector<std::unique_ptr<Client>> clients;
  std::vector<Client*> pubs;
  int ep = -1;
  int tfd = -1;
  int efd = -1;  // eventfd: the main thread wakes the worker on phase changes
  long pending_connects = 0;
  long connect_limit = 1;
  size_t next_to_start = 0;
  std::vector<int64_t> latencies;    // ns, throughput receive side
  std::vector<int64_t> recv_times;   // ns, when each unique message arrived
  std::vector<int64_t> connect_lat;  // ns, connect mode, this round
  std::vector<int64_t> connect_lat_all;
  int64_t first_connack_ns = 0, last_connack_ns = 0;
  long connects_ok = 0, connects_failed = 0;
  std::thread th;
};

void Sync(Client* c) {
  int fd = mosquitto_socket(c->m);
  if (fd != c->reg_fd) {
    if (c->reg_fd >= 0) epoll_ctl(c->w->ep, EPOLL_CTL_DEL, c->reg_fd, nullptr);
    c->reg_fd = -1;
    c->reg_events = 0;
    if (fd >= 0) {
      epoll_event ev{};
      ev.events =
          EPOLLIN | (mosquitto_want_write(c->m) ? uint32_t(EPOLLOUT) : 0u);
      ev.data.ptr = c;
      if (epoll_ctl(c->w->ep, EPOLL_CTL_ADD, fd, &ev) == 0) {
        c->reg_fd = fd;
        c->reg_events = ev.events;
      }
    }
    return;
  }
  if (fd < 0) return;
  uint32_t want =
      EPOLLIN | (mosquitto_want_write(c->m) ? uint32_t(EPOLLOUT) : 0u);
  if (want != c->reg_events) {
    epoll_event ev{};
    ev.events = want;
    ev.data.ptr = c;
    if (epoll_ctl(c->w->ep, EPOLL_CTL_MOD, fd, &ev) == 0) c->reg_events = want;
  }
}

// ---------------------------------------------------------------- payload

// A HOMEPOT-shaped notification of about `size` bytes.
size_t BuildPayload(char* buf, size_t cap, int size, long seq, int64_t t_ns) {
  static const char kHead[] = "{\"title\":\"Maintenance window\",\"body\":\"";
  char tail[256];
  int tail_len = std::snprintf(
      tail, sizeof tail,
      "\",\"priority\":\"normal\",\"timestamp\":\"2026-11-25T11:32:34\","
      "\"message_id\":\"bench-%ld\",\"platform\":\"mqtt_push\","
      "\"data\":{\"seq\":%ld,\"t_ns\":%" PRId64 "}}",
      seq, seq, t_ns);
  size_t head_len = sizeof kHead - 1;
  static const char kBody[] =
      "Firmware update scheduled for 02:00 UTC; the device reboots once. ";
  long body_len = long(size) - long(head_len) - tail_len;
  if (body_len < 8) body_len = 8;
  if (head_len + size_t(body_len) + size_t(tail_len) + 1 > cap) return 0;
  std::memcpy(buf, kHead, head_len);
  for (long i = 0; i < body_len; ++i)
    buf[head_len + size_t(i)] = kBody[size_t(i) % (sizeof kBody - 1)];
  std::memcpy(buf + head_len + body_len, tail, size_t(tail_len));
  return head_len + size_t(body_len) + size_t(tail_len);
}

bool FindNumber(const char* p, size_t n, const char* key, int64_t* out) {
  size_t klen = std::strlen(key);
  const char* hit = static_cast<const char*>(memmem(p, n, key, klen));
  if (!hit) return false;
  const char* q = hit + klen;
  const char* end = p + n;
  while (q < end && (*q == ' ' || *q == ':')) ++q;
  if (q >= end || *q < '0' || *q > '9') return false;
  int64_t v = 0;
  while (q < end && *q >= '0' && *q <= '9') v = v * 10 + (*q++ - '0');
  *out = v;
  return true;
}

// ---------------------------------------------------------------- callbacks

void OnConnect(mosquitto* m, void* obj, int rc) {
  auto* c = static_cast<Client*>(obj);
  Worker* w = c->w;
  int64_t now = NowNs();
  if (c->st != St::kConnecting) return;
  w->pending_connects--;
  if (c->role == Role::kConn) {
    w->connect_lat.push_back(now - c->t_start);
    if (!w->first_connack_ns) w->first_connack_ns = now;
    w->last_connack_ns = now;
    if (rc == 0) {
      w->connects_ok++;
      c->st = St::kClosing;
      mosquitto_disconnect(m);
    } else {
      w->connects_failed++;
      c->st = St::kClosing;  // the broker closes the socket after a refusal
      mosquitto_disconnect(m);
    }
    return;
  }
  if (rc != 0) {
    std::fprintf(stderr, "# %s: CONNACK refused: %s\n", c->name.c_str(),
                 mosquitto_connack_string(rc));
    c->st = St::kFailed;
    g.failed++;
    return;
  }
  c->connected_ns = now;
  if (c->role == Role::kPub && !g.o->pub_subscribe.empty()) {
    c->topic = g.o->pub_subscribe;
  }
  if (c->role == Role::kSub || !c->topic.empty()) {
    int mid = 0;
    int r = mosquitto_subscribe(m, &mid, c->topic.c_str(), g.o->qos);
    if (r != MOSQ_ERR_SUCCESS) {
      c->st = St::kFailed;
      g.failed++;
      return;
    }
    c->st = St::kSubscribing;
  } else {
    c->st = St::kReady;
    g.ready++;
  }
}

void OnSubscribe(mosquitto*, void* obj, int, int n, const int* granted) {
  auto* c = static_cast<Client*>(obj);
  if (c->st != St::kSubscribing) return;
  if (n < 1 || granted[0] >= 0x80) {
    std::fprintf(stderr, "# %s: subscription to %s refused\n", c->name.c_str(),
                 c->topic.c_str());
    c->st = St::kFailed;
    g.failed++;
    return;
  }
  c->st = St::kReady;
  g.ready++;
}

void OnDisconnect(mosquitto*, void* obj, int rc) {
  auto* c = static_cast<Client*>(obj);
  if (c->role == Role::kConn) {
    if (c->st == St::kConnecting) {  // lost before CONNACK
      c->w->pending_connects--;
      c->w->connects_failed++;
    }
    if (c->st != St::kDone) {
      c->st = St::kDone;
      g.done++;
    }
    return;
  }
  if (c->st == St::kClosing || c->st == St::kDone) {
    c->st = St::kDone;
    return;
  }
  if (c->st == St::kConnecting || c->st == St::kSubscribing) {
    // A handshake lost to a full listen backlog, say: retry a few times
    // (from the worker loop, not inside libmosquitto's callback).
    if (c->st == St::kConnecting) c->w->pending_connects--;
    std::fprintf(
        stderr, "# %s: connection lost while %s (%s)%s\n", c->name.c_str(),
        c->st == St::kConnecting ? "connecting" : "subscribing",
        mosquitto_strerror(rc), c->attempts < kMaxAttempts ? ", retrying" : "");
    c->reg_fd = -1;  // closed, so no longer in the epoll set
    c->reg_events = 0;
    if (c->attempts < kMaxAttempts) {
      c->st = St::kRetry;
    } else {
      c->st = St::kFailed;
      g.failed++;
    }
    return;
  }
  if (c->st == St::kReady) {
    g.unexpected_disconnects++;
    std::fprintf(stderr, "# %s: disconnected unexpectedly (%d)\n",
                 c->name.c_str(), rc);
    c->st = St::kFailed;
  }
}

void OnPublish(mosquitto*, void*, int) { g.acked++; }

void OnPublishV5(mosquitto*, void*, int, int reason,
                 const mosquitto_property*) {
  if (reason >= 0x80) g.refused++;
}

void OnMessage(mosquitto*, void* obj, const mosquitto_message* msg) {
  auto* c = static_cast<Client*>(obj);
  if (c->role == Role::kPub) {
    g.receipts.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  int64_t now = NowNs();
  g.received.fetch_add(1, std::memory_order_relaxed);
  const char* p = static_cast<const char*>(msg->payload);
  size_t n = size_t(msg->payloadlen);
  int64_t seq = -1, t_ns = -1;
  if (!p || !FindNumber(p, n, "\"seq\"", &seq) ||
      !FindNumber(p, n, "\"t_ns\"", &t_ns)) {
    g.unparsed.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  if (memmem(p, n, "\"received_at\"", 13))
    g.stamped.fetch_add(1, std::memory_order_relaxed);
  if (seq < 0 || seq >= g.seq_cap) {
    g.unparsed.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  uint64_t bit = uint64_t(1) << (seq & 63);
  uint64_t old =
      __atomic_fetch_or(&g.seen[size_t(seq >> 6)], bit, __ATOMIC_RELAXED);
  if (old & bit) {
    g.duplicates.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  g.unique.fetch_add(1, std::memory_order_relaxed);
  c->w->latencies.push_back(now - t_ns);
  c->w->recv_times.push_back(now);
  int64_t prev = g.last_recv_ns.load(std::memory_order_relaxed);
  while (now > prev && !g.last_recv_ns.compare_exchange_weak(prev, now)) {
  }
  if (g.timeline_len && now >= g.t_run) {
    size_t b = size_t((now - g.t_run) / (int64_t(g.o->timeline_ms) * kMs));
    if (b < g.timeline_len)
      g.timeline[b].fetch_add(1, std::memory_order_relaxed);
  }
}

// ---------------------------------------------------------------- clients

Client* NewClient(Worker* w, Role role, long index, const std::string& name,
                  const std::string& user, const std::string& password) {
  auto c = std::make_unique<Client>();
  c->w = w;
  c->role = role;
  c->index = index;
  c->name = name;
  char id[128];
  const char* tag = role == Role::kSub ? "s" : role == Role::kPub ? "p" : "c";
  std::snprintf(id, sizeof id, "lg%d-%s%ld", int(getpid()), tag, index);
  c->m = mosquitto_new(id, true, c.get());
  if (!c->m) {
    std::fprintf(stderr, "homepot_loadgen: mosquitto_new failed\n");
    std::exit(1);
  }
  if (g.o->protocol == 5)
    mosquitto_int_option(c->m, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V5);
  if (g.o->tcp_nodelay) mosquitto_int_option(c->m, MOSQ_OPT_TCP_NODELAY, 1);
  if (!g.o->no_auth && !user.empty())
    mosquitto_username_pw_set(c->m, user.c_str(),
                              password.empty() ? nullptr : password.c_str());
  // Outgoing QoS 1/2 in flight: libmosquitto's default (20, or the broker's
  // receive maximum with v5) so that the broker never drops for quota.
  mosquitto_connect_callback_set(c->m, OnConnect);
  mosquitto_disconnect_callback_set(c->m, OnDisconnect);
  mosquitto_subscribe_callback_set(c->m, OnSubscribe);
  mosquitto_message_callback_set(c->m, OnMessage);
  mosquitto_publish_callback_set(c->m, OnPublish);
  if (g.o->protocol == 5) mosquitto_publish_v5_callback_set(c->m, OnPublishV5);
  Client* raw = c.get();
  w->clients.push_back(std::move(c));
  return raw;
}

void StartConnect(Client* c, int64_t now) {
  c->st = St::kConnecting;
  c->attempts++;
  c->t_start = now;
  c->w->pending_connects++;
  int rc = mosquitto_connect_async(c->m, g.o->host.c_str(), g.o->port,
                                   g.o->keepalive);
  if (rc != MOSQ_ERR_SUCCESS) {
    // The broker refused the TCP connection outright (e.g. backlog full).
    c->w->pending_connects--;
    if (c->role == Role::kConn) {
      c->w->connects_failed++;
      c->st = St::kDone;
      g.done++;
    } else {
      bool retry = c->attempts < kMaxAttempts;
      std::fprintf(stderr, "# %s: connect failed: %s%s\n", c->name.c_str(),
                   mosquitto_strerror(rc), retry ? ", retrying" : "");
      if (retry) {
        c->st = St::kRetry;
      } else {
        c->st = St::kFailed;
        g.failed++;
      }
    }
    return;
  }
  Sync(c);
}

void ReadAll(Client* c) {
  for (int i = 0; i < 64; ++i) {
    errno = 0;
    int rc = mosquitto_loop_read(c->m, 1);
    if (rc != MOSQ_ERR_SUCCESS) break;
    if (errno == EAGAIN || errno == EWOULDBLOCK) break;
    if (mosquitto_socket(c->m) < 0) break;
  }
}

void ArmTimer(Worker* w, int64_t due) {
  itimerspec its{};
  if (due <= 0) due = 1;
  its.it_value.tv_sec = due / kSec;
  its.it_value.tv_nsec = due % kSec;
  timerfd_settime(w->tfd, TFD_TIMER_ABSTIME, &its, nullptr);
}

// Sends what is due; returns when this worker next needs to wake up.
int64_t Publish(Worker* w, int64_t now) {
  const Options& o = *g.o;
  int64_t wake = now + 100 * kMs;
  char buf[4096];
  std::vector<char> big;
  char* pbuf = buf;
  size_t cap = sizeof buf;
  if (o.payload_size + 300 > int(sizeof buf)) {
    big.resize(size_t(o.payload_size) + 512);
    pbuf = big.data();
    cap = big.size();
  }
  int64_t end_ns =
      o.duration_s > 0 ? g.t_run + int64_t(o.duration_s * kSec) : 0;
  for (Client* c : w->pubs) {
    if (c->finished || c->st != St::kReady) continue;
    int burst = 0;
    while (burst < 512) {
      int64_t t = NowNs();
      if (end_ns && t >= end_ns) {
        c->finished = true;
        break;
      }
      if (o.rate > 0) {
        if (c->next_due > t) {
          wake = std::min(wake, c->next_due);
          break;
        }
        int64_t behind = t - c->next_due;
        int64_t prev = g.max_behind_ns.load(std::memory_order_relaxed);
        if (behind > prev)
          g.max_behind_ns.store(behind, std::memory_order_relaxed);
      } else {
        long outstanding = g.sent.load(std::memory_order_relaxed) -
                           g.unique.load(std::memory_order_relaxed);
        if (outstanding >= o.window || mosquitto_want_write(c->m)) {
          wake = std::min(wake, t + 200000);  // 200 µs
          break;
        }
      }
      long seq = g.next_seq.fetch_add(1);
      if (seq >= g.seq_cap) {
        c->finished = true;
        break;
      }
      size_t len = BuildPayload(pbuf, cap, o.payload_size, seq, NowNs());
      const std::string& topic = g.topics[size_t(seq) % g.topics.size()];
      int rc = mosquitto_publish(c->m, nullptr, topic.c_str(), int(len), pbuf,
                                 o.qos, false);
      if (rc != MOSQ_ERR_SUCCESS)
        g.publish_errors++;
      else
        g.sent++;
      c->sent_here++;
      if (o.rate > 0)
        c->next_due = g.t_run + int64_t(double(c->sent_here) *
                                        double(o.publishers) * 1e9 / o.rate);
      ++burst;
      if (mosquitto_socket(c->m) < 0) {
        c->finished = true;
        break;
      }
    }
    if (burst >= 512) wake = now;  // more is due right away
    Sync(c);
    if (c->finished) g.pubs_finished++;
  }
  return wake;
}

void HandleEvents(Worker* w, epoll_event* evs, int n) {
  for (int i = 0; i < n; ++i) {
    if (evs[i].data.ptr == nullptr || evs[i].data.ptr == &w->efd) {
      uint64_t x;
      int fd = evs[i].data.ptr == nullptr ? w->tfd : w->efd;
      if (read(fd, &x, sizeof x) < 0) {
      }
      continue;
    }
    auto* c = static_cast<Client*>(evs[i].data.ptr);
    if (c->reg_fd < 0) continue;
    if (evs[i].events & EPOLLOUT) mosquitto_loop_write(c->m, 1);
    if ((evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) &&
        mosquitto_socket(c->m) >= 0)
      ReadAll(c);
    Sync(c);
  }
}

void MiscAll(Worker* w) {
  for (auto& c : w->clients) {
    if (mosquitto_socket(c->m) >= 0) {
      mosquitto_loop_misc(c->m);
      Sync(c.get());
    }
  }
}

void Teardown(Worker* w) {
  for (auto& c : w->clients) {
    if (mosquitto_socket(c->m) >= 0) {
      if (c->st != St::kDone) c->st = St::kClosing;
      mosquitto_disconnect(c->m);
      Sync(c.get());
    }
  }
  int64_t until = NowNs() + 2 * kSec;
  epoll_event evs[256];
  while (NowNs() < until) {
    bool open = false;
    for (auto& c : w->clients)
      if (mosquitto_socket(c->m) >= 0) open = true;
    if (!open) break;
    ArmTimer(w, NowNs() + 20 * kMs);
    int n = epoll_wait(w->ep, evs, 256, 50);
    if (n > 0) HandleEvents(w, evs, n);
  }
  for (auto& c : w->clients) {
    mosquitto_destroy(c->m);
    c->m = nullptr;
  }
}

void InitWorker(Worker* w) {
  w->ep = epoll_create1(EPOLL_CLOEXEC);
  w->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  if (w->ep < 0 || w->tfd < 0 || w->efd < 0) {
    std::perror("homepot_loadgen: epoll/timerfd");
    std::exit(1);
  }
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.ptr = nullptr;
  epoll_ctl(w->ep, EPOLL_CTL_ADD, w->tfd, &ev);
  ev.data.ptr = &w->efd;
  epoll_ctl(w->ep, EPOLL_CTL_ADD, w->efd, &ev);
}

std::vector<std::unique_ptr<Worker>>* g_workers = nullptr;

// Sets the phase and wakes every worker at once.
void SetPhase(int phase) {
  g.phase.store(phase, std::memory_order_release);
  if (!g_workers) return;
  for (auto& w : *g_workers) {
    uint64_t one = 1;
    if (w->efd >= 0 && write(w->efd, &one, sizeof one) < 0) {
    }
  }
}

// Starts connects up to the concurrency limit; fails clients whose connect
// or subscribe takes longer than the connect timeout.
void ConnectStep(Worker* w, int64_t now) {
  while (w->next_to_start < w->clients.size() &&
         w->pending_connects < w->connect_limit) {
    Client* c = w->clients[w->next_to_start++].get();
    StartConnect(c, now);
  }
  int64_t limit = int64_t(g.o->connect_timeout_s * kSec);
  for (auto& up : w->clients) {
    Client* c = up.get();
    if (c->st == St::kRetry && w->pending_connects < w->connect_limit) {
      StartConnect(c, now);
    }
    if ((c->st == St::kConnecting || c->st == St::kSubscribing) &&
        now - c->t_start > limit) {
      if (c->st == St::kConnecting) w->pending_connects--;
      std::fprintf(stderr, "# %s: timed out connecting/subscribing\n",
                   c->name.c_str());
      if (c->role == Role::kConn) {
        w->connects_failed++;
        c->st = St::kDone;
        g.done++;
      } else {
        c->st = St::kFailed;
        g.failed++;
      }
      mosquitto_disconnect(c->m);
      Sync(c);
    }
  }
}

void ThroughputWorker(Worker* w) {
  InitWorker(w);
  epoll_event evs[512];
  int64_t next_misc = NowNs() + 250 * kMs;
  bool seeded = false;
  while (true) {
    int ph = g.phase.load(std::memory_order_acquire);
    if (ph >= kDisconnect) break;
    int64_t now = NowNs();
    int64_t wake = now + 50 * kMs;
    if (ph == kConnectPhase) {
      ConnectStep(w, now);
    } else if (ph == kRun) {
      if (!seeded) {
        for (Client* c : w->pubs) c->next_due = g.t_run;
        seeded = true;
      }
      wake = std::min(wake, Publish(w, now));
    }
    if (now >= next_misc) {
      MiscAll(w);
      next_misc = now + 250 * kMs;
    }
    wake = std::min(wake, next_misc);
    ArmTimer(w, std::max(wake, now + 1000));
    int n = epoll_wait(w->ep, evs, 512, 100);
    if (n > 0) HandleEvents(w, evs, n);
  }
  Teardown(w);
}

void ConnectWorker(Worker* w) {
  InitWorker(w);
  epoll_event evs[512];
  int my_round = 0;
  while (true) {
    int ph = g.phase.load(std::memory_order_acquire);
    if (ph >= kDisconnect) break;
    int r = g.round.load(std::memory_order_acquire);
    int64_t now = NowNs();
    if (r != my_round) {  // a new round: every client starts afresh
      my_round = r;
      w->next_to_start = 0;
      w->pending_connects = 0;
      w->connect_lat.clear();
      w->first_connack_ns = w->last_connack_ns = 0;
      w->connects_ok = w->connects_failed = 0;
      for (auto& c : w->clients) c->st = St::kIdle;
    }
    if (ph == kRun) ConnectStep(w, now);
    ArmTimer(w, now + 50 * kMs);
    int n = epoll_wait(w->ep, evs, 512, 100);
    if (n > 0) HandleEvents(w, evs, n);
    now = NowNs();
    // A client whose socket closed after we sent DISCONNECT is done even if
    // the library reported nothing.
    for (auto& c : w->clients) {
      if (c->st == St::kClosing && mosquitto_socket(c->m) < 0) {
        c->st = St::kDone;
        g.done++;
      }
    }
  }
  Teardown(w);
}

// ---------------------------------------------------------------- watchdog

void StartWatchdog(double seconds) {
  std::thread([seconds] {
    std::this_thread::sleep_for(
        std::chrono::milliseconds(int64_t(seconds * 1000)));
    std::fprintf(
        stderr,
        "homepot_loadgen: watchdog: still running after %.0f s, giving up\n",
        seconds);
    std::printf("RESULT error=watchdog\n");
    std::fflush(stdout);
    _exit(4);
  }).detach();
}

void RaiseFdLimit() {
  rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

std::vector<std::unique_ptr<Worker>> MakeWorkers(const Options& o) {
  std::vector<std::unique_ptr<Worker>> ws;
  for (int i = 0; i < o.threads; ++i) {
    auto w = std::make_unique<Worker>();
    w->id = i;
    w->connect_limit = std::max<long>(1, o.concurrency / o.threads);
    w->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);  // before any SetPhase
    ws.push_back(std::move(w));
  }
  return ws;
}

// ---------------------------------------------------------------- modes

int RunThroughput(const Options& o) {
  double bound = o.connect_timeout_s + o.drain_s + o.start_delay_s + 60 +
                 (o.duration_s > 0 ? o.duration_s : 600);
  StartWatchdog(bound);
  // Sequence space: bounded by --count, else by the offered rate and
  // duration, else a fixed cap for closed-loop duration runs.
  long cap = 1L << 27;
  if (o.count > 0) cap = std::min(cap, o.count);
  if (o.count <= 0 && o.rate > 0)
    cap = std::min<long>(cap, long(o.rate * o.duration_s * 1.05) + 1000);
  g.seq_cap = cap;
  g.seen.assign(size_t(cap / 64 + 1), 0);
  double run_s = o.duration_s > 0 ? o.duration_s : 600;
  g.timeline_len = size_t((run_s + o.drain_s) * 1000 / o.timeline_ms) + 2;
  g.timeline.reset(new std::atomic<long>[g.timeline_len]());
  for (size_t i = 0; i < g.timeline_len; ++i) g.timeline[i] = 0;

  auto workers = MakeWorkers(o);
  g_workers = &workers;
  for (long k = 0; k < o.subscribers; ++k) {
    Worker* w = workers[size_t(k) % workers.size()].get();
    std::string name = Name(o, k);
    Client* c = NewClient(w, Role::kSub, k, name, name, o.password);
    c->topic = TopicFor(o, name);
    g.topics.push_back(c->topic);
  }
  for (long k = 0; k < o.publishers; ++k) {
    // Publishers go to the last workers so that worker 0 is not also the
    // busiest receiver when there are several threads.
    Worker* w = workers[workers.size() - 1 - size_t(k) % workers.size()].get();
    Client* c =
        NewClient(w, Role::kPub, k, o.pub_user, o.pub_user, o.pub_password);
    w->pubs.push_back(c);
  }
  // Publishers connect first (they are few), then the subscribers.
  for (auto& w : workers)
    std::stable_partition(
        w->clients.begin(), w->clients.end(),
        [](const std::unique_ptr<Client>& c) { return c->role == Role::kPub; });

  const long total = o.subscribers + o.publishers;
  int64_t t0 = NowNs();
  for (auto& w : workers) w->th = std::thread(ThroughputWorker, w.get());
  while (g.ready.load() + g.failed.load() < total) {
    if (NowNs() - t0 > int64_t((o.connect_timeout_s + 5) * kSec)) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  double setup_s = double(NowNs() - t0) / 1e9;
  std::printf("# connected and subscribed %ld/%ld clients in %.2f s\n",
              g.ready.load(), total, setup_s);
  if (g.ready.load() < total) {
    SetPhase(kDisconnect);
    for (auto& w : workers) w->th.join();
    std::printf(
        "RESULT mode=throughput error=connect_failed ready=%ld "
        "failed=%ld clients=%ld\n",
        g.ready.load(), total - g.ready.load(), total);
    return 3;
  }
  // Let the last SUBACKs settle on the broker before the clock starts.
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  if (!o.ready_file.empty()) {
    if (FILE* f = std::fopen(o.ready_file.c_str(), "w")) std::fclose(f);
  }
  if (o.start_delay_s > 0) {
    std::this_thread::sleep_for(
        std::chrono::milliseconds(int64_t(o.start_delay_s * 1000)));
  }
  int64_t cpu0 = ProcessCpuNs(o.broker_pid);
  int64_t wait0 = ProcessCpuNs(o.broker_pid, 1);
  int64_t self0 = SelfCpuNs();
  g.t_run = NowNs();
  SetPhase(kRun);

  // Publishing: until every publisher is finished (count / duration), or
  // closed-loop flow stalls for 5 s.
  int64_t last_progress = NowNs();
  long last_unique = 0;
  bool stalled = false;
  while (g.pubs_finished.load() < o.publishers) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    int64_t now = NowNs();
    long u = g.unique.load();
    if (u != last_unique) {
      last_unique = u;
      last_progress = now;
    } else if (now - last_progress > 5 * kSec && (o.rate == 0 || o.rate >= 1)) {
      stalled = true;
      break;
    }
  }
  int64_t t_pub_end = NowNs();
  SetPhase(kDrain);
  // Drain: until everything sent arrived (and, QoS > 0, was acknowledged)
  // or --drain passed without news.
  int64_t drain_limit = int64_t(o.drain_s * kSec);
  int64_t last_change = NowNs();
  long last_seen = -1;
  while (true) {
    long u = g.unique.load();
    long s = g.sent.load();
    bool acks_done = o.qos == 0 || g.acked.load() >= s;
    if (u >= s && acks_done) break;
    int64_t now = NowNs();
    long change = u + g.acked.load();
    if (change != last_seen) {
      last_seen = change;
      last_change = now;
    } else if (now - last_change > drain_limit) {
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  int64_t t_end = NowNs();
  int64_t cpu1 = ProcessCpuNs(o.broker_pid);
  int64_t wait1 = ProcessCpuNs(o.broker_pid, 1);
  int64_t self1 = SelfCpuNs();
  SetPhase(kDisconnect);
  for (auto& w : workers) w->th.join();

  long sent = g.sent.load();
  long unique = g.unique.load();
  long lost = sent - unique;
  int64_t last_recv = g.last_recv_ns.load();
  double pub_s = double(t_pub_end - g.t_run) / 1e9;
  double recv_span_s =
      last_recv > g.t_run ? double(last_recv - g.t_run) / 1e9 : pub_s;
  double recv_rate = recv_span_s > 0 ? double(unique) / recv_span_s : 0;
  double send_rate = pub_s > 0 ? double(sent) / pub_s : 0;
  std::vector<int64_t> lat;
  for (auto& w : workers)
    lat.insert(lat.end(), w->latencies.begin(), w->latencies.end());
  Percentiles p = ComputePercentiles(&lat);
  // Gaps between consecutive receptions (any subscriber): at a fixed rate R
  // the nominal gap is 1/R; the longest one is the longest stall of the flow.
  std::vector<int64_t> recv;
  for (auto& w : workers)
    recv.insert(recv.end(), w->recv_times.begin(), w->recv_times.end());
  std::sort(recv.begin(), recv.end());
  std::vector<int64_t> gaps;
  int64_t gap_max = 0, gap_max_at = 0;
  for (size_t i = 1; i < recv.size(); ++i) {
    int64_t gap = recv[i] - recv[i - 1];
    gaps.push_back(gap);
    if (gap > gap_max) {
      gap_max = gap;
      gap_max_at = recv[i - 1] - g.t_run;
    }
  }
  Percentiles gp = ComputePercentiles(&gaps);
  double cpu_ms = (cpu0 >= 0 && cpu1 >= 0) ? double(cpu1 - cpu0) / 1e6 : -1;
  double cpu_us_per_msg =
      (cpu_ms >= 0 && unique > 0) ? cpu_ms * 1000.0 / double(unique) : -1;
  double run_span_s = double(t_end - g.t_run) / 1e9;
  // Share of one CPU the broker used while the run lasted: well below 1
  // means the broker was not the bottleneck (the load generator or other
  // processes on the machine were).
  double broker_util =
      (cpu_ms >= 0 && run_span_s > 0) ? cpu_ms / 1000.0 / run_span_s : -1;
  double self_us_per_msg =
      unique > 0 ? double(self1 - self0) / 1000.0 / double(unique) : -1;

  // Timeline up to the last bucket that saw a message.
  size_t used = 0;
  for (size_t i = 0; i < g.timeline_len; ++i)
    if (g.timeline[i].load()) used = i + 1;
  std::string timeline;
  for (size_t i = 0; i < used; ++i) {
    if (i) timeline += ',';
    timeline += std::to_string(g.timeline[i].load());
  }
  // Lowest per-bucket receive rate over full buckets while publishing.
  size_t full = size_t(pub_s * 1000 / o.timeline_ms);
  double min_bucket_rate = -1;
  for (size_t i = 0; i < std::min(full, used); ++i) {
    double r = double(g.timeline[i].load()) * 1000.0 / o.timeline_ms;
    if (min_bucket_rate < 0 || r < min_bucket_rate) min_bucket_rate = r;
  }

  std::printf(
      "# throughput: %ld subscribers, %ld publisher(s), QoS %d, MQTT %s, "
      "%s, %d-byte payloads\n",
      o.subscribers, o.publishers, o.qos, o.protocol == 5 ? "v5" : "v3.1.1",
      o.rate > 0
          ? ("offered " + std::to_string(long(o.rate)) + " msg/s").c_str()
          : ("closed loop, window " + std::to_string(o.window)).c_str(),
      o.payload_size);
  std::printf(
      "# sent %ld in %.2f s (%.0f msg/s); received %ld unique (%.0f msg/s), "
      "%ld lost, %ld duplicates, %ld without received_at\n",
      sent, pub_s, send_rate, unique, recv_rate, lost, g.duplicates.load(),
      unique - std::min(unique, g.stamped.load()));
  std::printf(
      "# latency µs: p50 %.0f  p90 %.0f  p99 %.0f  p99.9 %.0f  max %.0f\n",
      p.p50, p.p90, p.p99, p.p999, p.max);
  if (cpu_ms >= 0)
    std::printf(
        "# broker CPU %.1f ms = %.2f µs per delivered message (%.0f%% of one "
        "CPU; runnable but waiting for a CPU %.1f ms); load generator %.2f "
        "µs per message\n",
        cpu_ms, cpu_us_per_msg, broker_util * 100,
        double(wait1 - wait0) / 1e6, self_us_per_msg);
  if (!gaps.empty())
    std::printf(
        "# gaps between receptions ms: p50 %.2f  p99 %.2f  max %.2f (from "
        "%.2f s after the first publish)\n",
        gp.p50 / 1000, gp.p99 / 1000, gp.max / 1000, double(gap_max_at) / 1e9);
  if (stalled) std::printf("# flow STALLED: no message arrived for 5 s\n");
  std::printf(
      "RESULT mode=throughput subscribers=%ld publishers=%ld qos=%d "
      "protocol=%d "
      "rate=%.0f sent=%ld received=%ld unique=%ld lost=%ld duplicates=%ld "
      "stamped=%ld unparsed=%ld receipts=%ld refused=%ld publish_errors=%ld "
      "disconnects=%ld send_rate=%.1f recv_rate=%.1f pub_s=%.3f "
      "lat_p50_us=%.1f lat_p90_us=%.1f lat_p99_us=%.1f lat_p999_us=%.1f "
      "lat_max_us=%.1f broker_cpu_ms=%.2f cpu_us_per_msg=%.3f "
      "broker_util=%.3f broker_wait_ms=%.2f loadgen_cpu_us_per_msg=%.3f "
      "behind_max_ms=%.2f min_bucket_rate=%.1f stalled=%d setup_s=%.3f "
      "gaps=%zu gap_p50_us=%.1f gap_p99_us=%.1f gap_max_us=%.1f "
      "gap_max_at_s=%.3f timeline_ms=%d timeline=%s\n",
      o.subscribers, o.publishers, o.qos, o.protocol, o.rate, sent,
      g.received.load(), unique, lost, g.duplicates.load(), g.stamped.load(),
      g.unparsed.load(), g.receipts.load(), g.refused.load(),
      g.publish_errors.load(),
      g.unexpected_disconnects.load(), send_rate, recv_rate, pub_s, p.p50,
      p.p90, p.p99, p.p999, p.max, cpu_ms, cpu_us_per_msg, broker_util,
      (wait0 >= 0 && wait1 >= 0) ? double(wait1 - wait0) / 1e6 : -1.0,
      self_us_per_msg, double(g.max_behind_ns.load()) / 1e6, min_bucket_rate,
      stalled ? 1 : 0, setup_s, gaps.size(), gp.p50, gp.p99, gp.max,
      double(gap_max_at) / 1e9, o.timeline_ms,
      timeline.empty() ? "-" : timeline.c_str());
  return 0;
}

int RunConnect(const Options& o) {
  StartWatchdog(o.rounds * (o.connect_timeout_s + 30) + 30);
  auto workers = MakeWorkers(o);
  g_workers = &workers;
  for (long k = 0; k < o.clients; ++k) {
    Worker* w = workers[size_t(k) % workers.size()].get();
    std::string name = Name(o, k);
    NewClient(w, Role::kConn, k, name, name, o.password);
  }
  g.phase = kConnectPhase;
  for (auto& w : workers) w->th = std::thread(ConnectWorker, w.get());
  std::string rates;
  std::vector<double> later_rates;  // rounds 2.. (clients logged in before)
  double last_rate = 0, first_rate = 0;
  long last_fail = 0, total_fail = 0;
  Percentiles last_p;
  for (int r = 1; r <= o.rounds; ++r) {
    g.done = 0;
    int64_t t0 = NowNs();
    g.round.store(r, std::memory_order_release);
    SetPhase(kRun);
    while (g.done.load() < o.clients &&
           NowNs() - t0 < int64_t((o.connect_timeout_s + 10) * kSec))
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    SetPhase(kConnectPhase);  // pause
    std::this_thread::sleep_for(std::chrono::milliseconds(60));
    long ok = 0, fail = 0;
    int64_t first = 0, last = 0;
    std::vector<int64_t> lat;
    for (auto& w : workers) {
      ok += w->connects_ok;
      fail += w->connects_failed;
      if (w->first_connack_ns && (!first || w->first_connack_ns < first))
        first = w->first_connack_ns;
      last = std::max(last, w->last_connack_ns);
      lat.insert(lat.end(), w->connect_lat.begin(), w->connect_lat.end());
    }
    long not_done = o.clients - ok - fail;
    if (not_done > 0) fail += not_done;
    double span = last > t0 ? double(last - t0) / 1e9 : 0;
    double rate = span > 0 ? double(ok) / span : 0;
    Percentiles p = ComputePercentiles(&lat);
    std::printf(
        "# round %d: %ld/%ld connected in %.3f s = %.0f connects/s, "
        "%ld failed; CONNACK latency µs p50 %.0f p99 %.0f\n",
        r, ok, o.clients, span, rate, fail, p.p50, p.p99);
    if (!rates.empty()) rates += ',';
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.1f", rate);
    rates += buf;
    if (r == 1)
      first_rate = rate;
    else
      later_rates.push_back(rate);
    last_rate = rate;
    last_fail = fail;
    total_fail += fail;
    last_p = p;
  }
  SetPhase(kDisconnect);
  for (auto& w : workers) w->th.join();
  // connects_per_s: median over the rounds after the first (every client
  // has logged in before), or the only round.
  double reconnect = first_rate;
  if (!later_rates.empty()) {
    std::sort(later_rates.begin(), later_rates.end());
    size_t m = later_rates.size();
    reconnect = m % 2 ? later_rates[m / 2]
                      : (later_rates[m / 2 - 1] + later_rates[m / 2]) / 2;
  }
  (void)last_rate;
  std::printf("# connects/s: first round %.0f, later rounds (median) %.0f\n",
              first_rate, reconnect);
  std::printf(
      "RESULT mode=connect clients=%ld rounds=%d concurrency=%d "
      "connects_per_s=%.1f first_round_per_s=%.1f failures=%ld "
      "total_failures=%ld connack_p50_us=%.1f connack_p99_us=%.1f "
      "rates=%s\n",
      o.clients, o.rounds, o.concurrency, reconnect, first_rate, last_fail,
      total_fail, last_p.p50, last_p.p99, rates.c_str());
  return last_fail > 0 ? 3 : 0;
}

// ---------------------------------------------------------------- flood

void PutLength(std::string* out, size_t n) {  // MQTT "remaining length"
  do {
    uint8_t b = uint8_t(n % 128);
    n /= 128;
    if (n) b |= 0x80;
    out->push_back(char(b));
  } while (n);
}

void PutString(std::string* out, const std::string& s) {  // u16 length + bytes
  out->push_back(char((s.size() >> 8) & 0xff));
  out->push_back(char(s.size() & 0xff));
  out->append(s);
}

// An MQTT 3.1.1 CONNECT: clean session, username and password.
std::string Connect311(const std::string& client_id, const std::string& user,
                       const std::string& pass, int keepalive) {
  std::string body;
  PutString(&body, "MQTT");
  body.push_back(4);                     // protocol level 3.1.1
  body.push_back(char(0x80 | 0x40 | 0x02));  // username, password, clean
  body.push_back(char((keepalive >> 8) & 0xff));
  body.push_back(char(keepalive & 0xff));
  PutString(&body, client_id);
  PutString(&body, user);
  PutString(&body, pass);
  std::string packet(1, char(0x10));
  PutLength(&packet, body.size());
  return packet + body;
}

struct FloodCounts {
  long attempts = 0;
  long closed = 0;    // closed (or reset) without a CONNACK
  long timeouts = 0;  // no answer within 5 s
  long errors = 0;    // TCP connect or send failed
  int64_t bytes = 0;
  std::map<int, long> codes;  // CONNACK return code -> count
};

// One flooding connection at a time, as fast as the broker answers.
void FloodThread(const Options& o, int id, int64_t end_ns, FloodCounts* out) {
  static const char kAlnum[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  std::mt19937_64 rng(std::random_device{}() ^ (uint64_t(id) << 32));
  std::string user(size_t(o.username_bytes), 'a');
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(uint16_t(o.port));
  inet_pton(AF_INET, o.host.c_str(), &a.sin_addr);
  FloodCounts c;
  for (long n = 0; NowNs() < end_ns; ++n) {
    for (size_t i = 0; i < user.size(); i += 8) {
      uint64_t r = rng();
      for (size_t j = i; j < i + 8 && j < user.size(); ++j, r >>= 8)
        user[j] = kAlnum[(r & 0xff) % 62];
    }
    char cid[64];
    std::snprintf(cid, sizeof cid, "flood%d-%d-%ld", int(getpid()), id, n);
    std::string packet = Connect311(cid, user, "wrong-password", 60);
    c.attempts++;
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    timeval tv{5, 0};
    setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    int one = 1;
    setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (s < 0 || connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      c.errors++;
      if (s >= 0) close(s);
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
      continue;
    }
    size_t off = 0;
    while (off < packet.size()) {
      ssize_t w = send(s, packet.data() + off, packet.size() - off,
                       MSG_NOSIGNAL);
      if (w <= 0) break;
      off += size_t(w);
    }
    c.bytes += int64_t(off);
    if (off < packet.size()) {
      c.errors++;
      close(s);
      continue;
    }
    unsigned char ack[4];
    size_t got = 0;
    bool timed_out = false;
    while (got < sizeof ack) {
      ssize_t r = recv(s, ack + got, sizeof ack - got, 0);
      if (r > 0) {
        got += size_t(r);
      } else {
        timed_out = r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
        break;
      }
    }
    if (got == sizeof ack && ack[0] == 0x20)
      c.codes[ack[3]]++;
    else if (timed_out)
      c.timeouts++;
    else
      c.closed++;
    close(s);
  }
  *out = c;
}

int RunFlood(const Options& o) {
  StartWatchdog(o.duration_s + 30);
  int64_t t0 = NowNs();
  int64_t end_ns = t0 + int64_t(o.duration_s * kSec);
  std::vector<FloodCounts> counts(size_t(o.clients));
  std::vector<std::thread> threads;
  for (long i = 0; i < o.clients; ++i)
    threads.emplace_back(FloodThread, std::cref(o), int(i), end_ns,
                         &counts[size_t(i)]);
  for (auto& t : threads) t.join();
  double span = double(NowNs() - t0) / 1e9;
  FloodCounts sum;
  for (auto& c : counts) {
    sum.attempts += c.attempts;
    sum.closed += c.closed;
    sum.timeouts += c.timeouts;
    sum.errors += c.errors;
    sum.bytes += c.bytes;
    for (auto& [code, k] : c.codes) sum.codes[code] += k;
  }
  std::string codes;
  for (auto& [code, k] : sum.codes)
    codes += " connack_" + std::to_string(code) + "=" + std::to_string(k);
  std::printf(
      "# flood: %ld CONNECTs with random %ld-byte usernames from %ld "
      "connection(s) in %.1f s (%.0f/s, %.1f MB sent);%s closed %ld, "
      "timeouts %ld, errors %ld\n",
      sum.attempts, o.username_bytes, o.clients, span,
      span > 0 ? double(sum.attempts) / span : 0, double(sum.bytes) / 1e6,
      codes.c_str(), sum.closed, sum.timeouts, sum.errors);
  std::printf(
      "RESULT mode=flood clients=%ld username_bytes=%ld seconds=%.3f "
      "attempts=%ld attempts_per_s=%.1f mb_sent=%.1f closed=%ld timeouts=%ld "
      "errors=%ld%s\n",
      o.clients, o.username_bytes, span, sum.attempts,
      span > 0 ? double(sum.attempts) / span : 0, double(sum.bytes) / 1e6,
      sum.closed, sum.timeouts, sum.errors, codes.c_str());
  return sum.attempts > sum.errors ? 0 : 3;
}

int RunFreePort(const Options& o) {
  std::vector<int> socks;
  for (int i = 0; i < o.port_count; ++i) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    socklen_t len = sizeof a;
    if (s < 0 || bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
        getsockname(s, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
      std::perror("homepot_loadgen: free-port");
      return 1;
    }
    socks.push_back(s);
    std::printf("%s%d", i ? " " : "", ntohs(a.sin_port));
  }
  std::printf("\n");
  for (int s : socks) close(s);
  return 0;
}

int RunWaitPort(const Options& o) {
  int64_t t0 = NowNs();
  int64_t limit = int64_t(o.timeout_s * kSec);
  while (NowNs() - t0 < limit) {
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(uint16_t(o.port));
    inet_pton(AF_INET, o.host.c_str(), &a.sin_addr);
    int rc = connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a);
    close(s);
    if (rc == 0) {
      std::printf("RESULT mode=wait-port port=%d waited_ms=%.1f\n", o.port,
                  double(NowNs() - t0) / 1e6);
      return 0;
    }
    if (o.watch_pid > 0 && kill(o.watch_pid, 0) != 0) {
      std::printf("RESULT mode=wait-port port=%d error=process_exited\n",
                  o.port);
      return 1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  std::printf("RESULT mode=wait-port port=%d error=timeout\n", o.port);
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  Options o = Parse(argc, argv);
  g.o = &o;
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  signal(SIGPIPE, SIG_IGN);
  if (o.mode == "free-port") return RunFreePort(o);
  if (o.mode == "wait-port") return RunWaitPort(o);
  if (o.mode == "flood") return RunFlood(o);
  RaiseFdLimit();
  mosquitto_lib_init();
  int rc = o.mode == "throughput" ? RunThroughput(o) : RunConnect(o);
  mosquitto_lib_cleanup();
  return rc;
}
