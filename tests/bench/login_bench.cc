// homepot_login_bench: measures CONNECT -> CONNACK time, one connection at a
// time, for a fixed username/password (or a fresh random username per
// attempt), and reports the median and p99 with the CONNACK codes seen.
// Also serves as a login flood for scripts/bench-login.
//
//   homepot_login_bench --port P --user U --password PW [--count N]
//                       [--duration S] [--random-users] [--quiet]
#include <mosquitto.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <random>
#include <string>
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

}  // namespace

int main(int argc, char** argv) {
  int port = 1883;
  std::string user = "sensor-001", password = "x";
  long count = 100;
  double duration = 0;
  bool random_users = false, quiet = false;
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
    else {
      std::fprintf(stderr, "unknown option %s\n", a.c_str());
      return 2;
    }
  }
  mosquitto_lib_init();
  std::mt19937_64 rng(std::random_device{}());
  std::vector<double> us;
  std::map<int, long> codes;
  double start = Now();
  for (long n = 0; duration > 0 ? Now() - start < duration : n < count; ++n) {
    State st;
    struct mosquitto* m = mosquitto_new(nullptr, true, &st);
    std::string u = random_users ? "nobody-" + std::to_string(rng()) : user;
    mosquitto_username_pw_set(m, u.c_str(), password.c_str());
    mosquitto_connect_callback_set(m, OnConnect);
    double t0 = Now();
    if (mosquitto_connect(m, "127.0.0.1", port, 60) != MOSQ_ERR_SUCCESS) {
      ++codes[-1];
      mosquitto_destroy(m);
      continue;
    }
    while (!st.done) {
      int rc = mosquitto_loop(m, 1000, 1);
      if (rc != MOSQ_ERR_SUCCESS && !st.done) break;
    }
    double t1 = Now();
    if (st.done) us.push_back((t1 - t0) * 1e6);
    ++codes[st.done ? st.rc : -2];
    mosquitto_disconnect(m);
    mosquitto_destroy(m);
  }
  std::sort(us.begin(), us.end());
  auto pct = [&](double p) {
    return us.empty() ? 0.0
                      : us[std::min(us.size() - 1, size_t(p * us.size()))];
  };
  std::printf("RESULT attempts=%zu median_us=%.1f p99_us=%.1f", us.size(),
              pct(0.5), pct(0.99));
  for (auto& [code, n] : codes) std::printf(" connack_%d=%ld", code, n);
  std::printf("\n");
  if (!quiet) {
    std::printf("# %zu logins as %s: median %.1f us, p99 %.1f us\n", us.size(),
                random_users ? "<random>" : user.c_str(), pct(0.5), pct(0.99));
  }
  mosquitto_lib_cleanup();
  return us.empty() ? 1 : 0;
}
