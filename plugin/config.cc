#include "config.h"

#include <unistd.h>

#include <charconv>
#include <climits>
#include <functional>
#include <map>
#include <optional>

#include "database.h"
#include "notification.h"
#include "pg.h"
#include "topic.h"
#include "utf8.h"

namespace homepot {
namespace {

Status OptionError(const std::string& name, const std::string& what) {
  return Status::Error("option plugin_opt_" + name + ": " + what);
}

template <typename T>
Status ParseInt(const std::string& name, const std::string& value, T min, T max,
                T* out) {
  T parsed{};
  const char* end = value.data() + value.size();
  auto [ptr, ec] = std::from_chars(value.data(), end, parsed);
  if (value.empty() || ec == std::errc::invalid_argument || ptr != end) {
    return OptionError(name, "'" + value + "' is not a whole number");
  }
  if (ec == std::errc::result_out_of_range || parsed < min || parsed > max) {
    return OptionError(name, "'" + value + "' is out of range (" +
                                 std::to_string(min) + " to " +
                                 std::to_string(max) + ")");
  }
  *out = parsed;
  return Status::Ok();
}

Status ParseBool(const std::string& name, const std::string& value, bool* out) {
  if (value == "true") {
    *out = true;
  } else if (value == "false") {
    *out = false;
  } else {
    return OptionError(name, "'" + value + "' is not true or false");
  }
  return Status::Ok();
}

Status ParseTopics(const std::string& name, const std::string& value,
                   std::vector<std::string>* out) {
  std::vector<std::string> topics;
  size_t i = 0;
  while (i < value.size()) {
    size_t j = value.find_first_of(" \t", i);
    if (j == std::string::npos) j = value.size();
    if (j > i) {
      std::string filter = value.substr(i, j - i);
      if (!IsValidFilter(filter)) {
        return OptionError(name,
                           "'" + filter + "' is not a valid topic filter");
      }
      topics.push_back(std::move(filter));
    }
    i = j + 1;
  }
  if (topics.empty()) {
    return OptionError(name, "needs at least one topic filter");
  }
  *out = std::move(topics);
  return Status::Ok();
}

constexpr size_t kMaxNodeIdBytes = 64;

// Why `node_id` is not a valid node id, or nullptr; `quote` says whether the
// value may be quoted in the message (it holds nothing unprintable).
const char* NodeIdProblem(std::string_view node_id, bool* quote) {
  *quote = false;
  if (node_id.empty()) return "is empty";
  if (!IsValidUtf8(node_id)) return "is not valid UTF-8";
  for (size_t i = 0; i < node_id.size(); ++i) {
    const auto ch = static_cast<unsigned char>(node_id[i]);
    // U+0080-U+009F (C1 controls) are C2 80 - C2 9F (valid UTF-8: a
    // continuation byte follows C2).
    if (ch < 0x20 || ch == 0x7F ||
        (ch == 0xC2 && static_cast<unsigned char>(node_id[i + 1]) < 0xA0)) {
      return "holds a control character";
    }
  }
  *quote = true;
  if (node_id.size() > kMaxNodeIdBytes) return "is longer than 64 bytes";
  if (node_id.find('+') != std::string_view::npos) return "contains '+'";
  if (node_id.find('#') != std::string_view::npos) return "contains '#'";
  if (node_id.find('/') != std::string_view::npos) return "contains '/'";
  return nullptr;
}

// The error for an invalid node id, nullopt for a valid one; `what` names
// the value ("" for the option's own value).
std::optional<Status> NodeIdError(std::string_view node_id,
                                  const std::string& what) {
  bool quote = false;
  const char* problem = NodeIdProblem(node_id, &quote);
  if (problem == nullptr) return std::nullopt;
  std::string subject = what;
  if (quote) {
    subject += (subject.empty() ? "'" : " '") + std::string(node_id) + "' ";
  } else if (!subject.empty()) {
    subject += " ";
  }
  return OptionError("node_id",
                     subject + problem +
                         " (a node id is 1-64 bytes of UTF-8 without "
                         "control characters, '+', '#' or '/')");
}

// The host name, or "" when it cannot be read.
std::string HostName() {
  char name[HOST_NAME_MAX + 1] = {};
  if (gethostname(name, sizeof name - 1) != 0) return "";
  return name;
}

}  // namespace

const std::string& RegistryLocation(const Config& config) {
  return config.db_url.empty() ? config.db_path : config.db_url;
}

std::string RegistryName(const Config& config) {
  return config.db_url.empty() ? config.db_path : pg::MaskedUrl(config.db_url);
}

bool IsValidNodeId(std::string_view node_id) {
  bool quote = false;
  return NodeIdProblem(node_id, &quote) == nullptr;
}

bool IsAckTopicPattern(std::string_view pattern) {
  if (pattern.empty() || pattern[0] == '$' || !IsValidTopic(pattern)) {
    return false;
  }
  int user_levels = 0;
  size_t start = 0;
  while (true) {
    size_t end = pattern.find('/', start);
    std::string_view level = pattern.substr(
        start, end == std::string_view::npos ? end : end - start);
    if (level == "%u") {
      ++user_levels;
    } else if (level.find('%') != std::string_view::npos) {
      return false;
    }
    if (end == std::string_view::npos) break;
    start = end + 1;
  }
  return user_levels == 1;
}

Result<Config> ParseConfig(const OptionList& options, const char* host_name) {
  Config c;
  using Parser = std::function<Status(const std::string&, const std::string&)>;
  const std::map<std::string, Parser> parsers = {
      {"db_path",
       [&](const std::string& n, const std::string& v) {
         if (v.empty()) return OptionError(n, "must not be empty");
         if (IsPostgresUrl(v)) {
           return OptionError(n, "'" + pg::MaskedUrl(v) +
                                     "' is a PostgreSQL URL: give it as "
                                     "plugin_opt_db_url");
         }
         c.db_path = v;
         return Status::Ok();
       }},
      {"db_url",
       [&](const std::string& n, const std::string& v) {
         if (!IsPostgresUrl(v)) {
           return OptionError(
               n, "'" + pg::MaskedUrl(v) + "' is not a postgresql:// URL");
         }
         c.db_url = v;
         return Status::Ok();
       }},
      {"stats_topic",
       [&](const std::string& n, const std::string& v) {
         if (v.rfind("$SYS/homepot/", 0) != 0 || !IsValidTopic(v) ||
             v.rfind("$SYS/homepot/rejections/", 0) == 0 ||
             v.rfind("$SYS/homepot/receipts/", 0) == 0) {
           return OptionError(n, "'" + v +
                                     "' must be a topic name under "
                                     "$SYS/homepot/ (outside rejections/ "
                                     "and receipts/)");
         }
         c.stats_topic = v;
         return Status::Ok();
       }},
      {"stats_interval",
       [&](const std::string& n, const std::string& v) {
         return ParseInt(n, v, 0, 86400, &c.stats_interval_s);
       }},
      {"reload_interval_ms",
       [&](const std::string& n, const std::string& v) {
         return ParseInt(n, v, 50, 3600000, &c.reload_interval_ms);
       }},
      {"notification_topics",
       [&](const std::string& n, const std::string& v) {
         return ParseTopics(n, v, &c.notification_topics);
       }},
      {"max_payload",
       [&](const std::string& n, const std::string& v) {
         return ParseInt<uint32_t>(n, v, 2, 268435455, &c.max_payload);
       }},
      {"max_topic_depth",
       [&](const std::string& n, const std::string& v) {
         return ParseInt(n, v, 1, 1024, &c.max_topic_depth);
       }},
      {"timestamp_field",
       [&](const std::string& n, const std::string& v) {
         if (v.empty() || v.size() > 64 ||
             v.find_first_of("\"\\") != std::string::npos) {
           return OptionError(
               n, "'" + v + "' must be 1-64 characters without \" or \\");
         }
         for (unsigned char ch : v) {
           if (ch < 0x20)
             return OptionError(n, "must not hold control characters");
         }
         if (!IsValidUtf8(v)) {
           return OptionError(n, "must be valid UTF-8");
         }
         c.timestamp_field = v;
         return Status::Ok();
       }},
      {"auth_max_failures",
       [&](const std::string& n, const std::string& v) {
         return ParseInt(n, v, 0, 1000000, &c.auth_max_failures);
       }},
      {"auth_lockout_seconds",
       [&](const std::string& n, const std::string& v) {
         return ParseInt(n, v, 1, 86400 * 7, &c.auth_lockout_seconds);
       }},
      {"defer_unknown",
       [&](const std::string& n, const std::string& v) {
         return ParseBool(n, v, &c.defer_unknown);
       }},
      {"default_ttl",
       [&](const std::string& n, const std::string& v) {
         return ParseInt<int64_t>(n, v, 0, kMaxTtlSeconds, &c.default_ttl_s);
       }},
      {"receipts",
       [&](const std::string& n, const std::string& v) {
         return ParseBool(n, v, &c.receipts);
       }},
      {"ack_topic",
       [&](const std::string& n, const std::string& v) {
         if (v == "none") {
           c.ack_topic.clear();
           return Status::Ok();
         }
         if (!IsAckTopicPattern(v)) {
           return OptionError(n, "'" + v +
                                     "' must be a topic name outside $ "
                                     "with one level that is exactly %u, "
                                     "or none");
         }
         c.ack_topic = v;
         return Status::Ok();
       }},
      {"log_retention_rows",
       [&](const std::string& n, const std::string& v) {
         return ParseInt<int64_t>(n, v, 0, int64_t{1} << 40,
                                  &c.log_retention_rows);
       }},
      {"log_retention_days",
       [&](const std::string& n, const std::string& v) {
         return ParseInt(n, v, 0, 36500, &c.log_retention_days);
       }},
      {"node_id",
       [&](const std::string& n, const std::string& v) {
         if (std::optional<Status> error = NodeIdError(v, "")) return *error;
         c.node_id = v;
         return Status::Ok();
       }},
  };
  for (const auto& [name, value] : options) {
    auto it = parsers.find(name);
    if (it == parsers.end()) {
      return Status::Error("unknown option plugin_opt_" + name);
    }
    Status s = it->second(name, value);
    if (!s.ok()) return s;
  }
  if (c.db_path.empty() == c.db_url.empty()) {
    return Status::Error(
        std::string(c.db_path.empty() ? "one of" : "only one of") +
        " plugin_opt_db_path (a SQLite file) and plugin_opt_db_url (a "
        "postgresql:// URL) is required");
  }
  if (c.node_id.empty()) {
    // The default: the host name.
    const std::string host = host_name != nullptr ? host_name : HostName();
    if (std::optional<Status> error = NodeIdError(host, "the host name")) {
      return Status::Error(error->message() + "; set plugin_opt_node_id");
    }
    c.node_id = host;
  }
  if (!c.ack_topic.empty()) {
    // An acknowledgement is never a notification.
    std::string sample = c.ack_topic;
    sample.replace(sample.find("%u"), 2, "device");
    for (const std::string& f : c.notification_topics) {
      if (FilterMatches(f, sample)) {
        return OptionError(
            "ack_topic",
            "'" + c.ack_topic + "' overlaps notification topic '" + f + "'");
      }
    }
  }
  return c;
}

}  // namespace homepot
