// homepot_login_bench: measures CONNECT -> CONNACK time, one connection at a
// time, for a fixed username/password (or a fresh random username per
// attempt), and reports the median and p99 with the CONNACK codes seen.
// Also serves as a login flood (--duration, as fast as answers come).
//
//   homepot_login_bench --port P --user U --password PW [--count N]
//                       [--duration S] [--random-users] [--quiet]
//   homepot_login_bench --port P --target [PORT/]U1:PW1 --target U2:PW2 ...
//                       [--count N] [--interval-ms MS] [--warmup W]
//
// With --target (repeatable; the username ends at the first ':'; a leading
// "PORT/" sends that target to another broker than --port's), the targets
// are tried round-robin (U1, U2, ..., U1, U2, ...) so that drift on the
// machine affects all alike; --count is per target. --warmup W rounds are
// run first and not counted. --interval-ms paces attempt starts (e.g. to
// stay under the plugin's hashing budget). One RESULT line per target,
// named as given (without the password):
//   RESULT target=[PORT/]U attempts=N median_us=.. p99_us=.. connack_<rc>=N
// Without --target: one RESULT line without target=.
#include <mosquitto.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

namespace {

struct State {
  bool done = false;
  int rc = -1;
};

void OnConnect(struct mosquitto*, void* userdata, int rc) {
  auto* s = static_cast<State*>(userdata);
  s->done = true;
  s->rc = rc;
}

double Now() {
  return std::chrono::duration<double>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

struct Target {
  std::string name;  // as given, without the password
  std::string user, password;
  int port = -1;  // -1: --port
  bool random_user = false;
  std::vector<double> us;
  std::map<int, long> codes;  // CONNACK code; -1 = TCP connect failed,
                              // -2 = no CONNACK
};

// One login; records its CONNECT -> CONNACK time when `record`.
void Attempt(Target* t, std::mt19937_64* rng, bool record) {
  const int port = t->port;
  State st;
  struct mosquitto* m = mosquitto_new(nullptr, true, &st);
  std::string u = t->random_user ? "nobody-" + std::to_string((*rng)()) : t->user;
  mosquitto_username_pw_set(m, u.c_str(), t->password.c_str());
  mosquitto_connect_callback_set(m, OnConnect);
  double t0 = Now();
  if (mosquitto_connect(m, "127.0.0.1", port, 60) != MOSQ_ERR_SUCCESS) {
    if (record) ++t->codes[-1];
    mosquitto_destroy(m);
    return;
  }
  while (!st.done) {
    int rc = mosquitto_loop(m, 1000, 1);
    if (rc != MOSQ_ERR_SUCCESS && !st.done) break;
  }
  double t1 = Now();
  if (record) {
    if (st.done) t->us.push_back((t1 - t0) * 1e6);
    ++t->codes[st.done ? st.rc : -2];
  }
  mosquitto_disconnect(m);
  mosquitto_destroy(m);
}

}  // namespace

int main(int argc, char** argv) {
  int port = 1883;
  std::string user = "sensor-001", password = "x";
  long count = 100, warmup = 0;
  double duration = 0, interval_ms = 0;
  bool random_users = false, quiet = false;
  std::vector<Target> targets;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> const char* {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "missing value for %s\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--port")
      port = std::atoi(next());
    else if (a == "--user")
      user = next();
    else if (a == "--password")
      password = next();
    else if (a == "--count")
      count = std::atol(next());
    else if (a == "--duration")
      duration = std::atof(next());
    else if (a == "--random-users")
      random_users = true;
    else if (a == "--quiet")
      quiet = true;
    else if (a == "--interval-ms")
      interval_ms = std::atof(next());
    else if (a == "--warmup")
      warmup = std::atol(next());
    else if (a == "--target") {
      std::string v = next();
      size_t colon = v.find(':');
      if (colon == std::string::npos || colon == 0) {
        std::fprintf(stderr, "--target wants USER:PASSWORD, got %s\n",
                     v.c_str());
        return 2;
      }
      Target t;
      t.name = v.substr(0, colon);
      t.password = v.substr(colon + 1);
      t.user = t.name;
      size_t slash = t.name.find('/');  // device ids never hold '/'
      if (slash != std::string::npos) {
        std::string p = t.name.substr(0, slash);
        t.user = t.name.substr(slash + 1);
        t.port = std::atoi(p.c_str());
        if (p.empty() || p.find_first_not_of("0123456789") != std::string::npos ||
            t.port < 1 || t.port > 65535 || t.user.empty()) {
          std::fprintf(stderr, "--target: bad PORT/USER in %s\n", t.name.c_str());
          return 2;
        }
      }
      targets.push_back(t);
    } else {
      std::fprintf(stderr, "unknown option %s\n", a.c_str());
      return 2;
    }
  }
  const bool multi = !targets.empty();
  if (!multi) {
    Target t;
    t.name = t.user = user;
    t.password = password;
    t.random_user = random_users;
    targets.push_back(t);
  }
  for (Target& t : targets)
    if (t.port < 0) t.port = port;
  mosquitto_lib_init();
  std::mt19937_64 rng(std::random_device{}());
  double start = Now();
  double next_start = start;
  auto pace = [&]() {
    if (interval_ms <= 0) return;
    double now = Now();
    if (next_start > now)
      std::this_thread::sleep_for(std::chrono::duration<double>(next_start - now));
    next_start = std::max(next_start, now) + interval_ms / 1000;
  };
  for (long r = 0; r < warmup; ++r)
    for (Target& t : targets) {
      pace();
      Attempt(&t, &rng, false);
    }
  start = Now();
  for (long n = 0; duration > 0 ? Now() - start < duration : n < count; ++n)
    for (Target& t : targets) {
      pace();
      Attempt(&t, &rng, true);
    }
  bool any = false;
  for (Target& t : targets) {
    std::sort(t.us.begin(), t.us.end());
    auto pct = [&](double p) {
      if (t.us.empty()) return 0.0;
      if (p == 0.5 && t.us.size() % 2 == 0)
        return (t.us[t.us.size() / 2 - 1] + t.us[t.us.size() / 2]) / 2;
      return t.us[std::min(t.us.size() - 1, size_t(p * t.us.size()))];
    };
    std::printf("RESULT %s%s%sattempts=%zu median_us=%.1f p99_us=%.1f",
                multi ? "target=" : "", multi ? t.name.c_str() : "",
                multi ? " " : "", t.us.size(), pct(0.5), pct(0.99));
    for (auto& [code, k] : t.codes) std::printf(" connack_%d=%ld", code, k);
    std::printf("\n");
    if (!quiet) {
      std::printf("# %zu logins as %s: median %.1f us, p99 %.1f us\n",
                  t.us.size(), t.random_user ? "<random>" : t.name.c_str(),
                  pct(0.5), pct(0.99));
    }
    any = any || !t.us.empty();
  }
  mosquitto_lib_cleanup();
  return any ? 0 : 1;
}
