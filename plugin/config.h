// Plugin options (`plugin_opt_<name>` lines in mosquitto.conf), parsed once,
// strictly: unknown names, trailing junk ("5abc") and out-of-range values are
// errors whose message names the option.
#ifndef HOMEPOT_PLUGIN_CONFIG_H_
#define HOMEPOT_PLUGIN_CONFIG_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "status.h"

namespace homepot {

struct Config {
  // Where the registry is: exactly one of these two is set (ParseConfig
  // refuses none and both). db_path: the SQLite file. db_url: a libpq
  // postgresql:// (or postgres://) URL of a PostgreSQL database holding
  // schema/postgresql.sql; its password belongs in a passfile (PGPASSFILE or
  // passfile=), and the URL is only ever shown masked (RegistryName).
  std::string db_path;
  std::string db_url;
  // Where the stats JSON is published, retained. Must lie under $SYS/homepot/.
  std::string stats_topic = "$SYS/homepot/stats";
  // Seconds between stats publications and device_stats flushes; 0 = off.
  int stats_interval_s = 10;
  // How often the registry's generation is read: on SQLite the only way a
  // change is seen (500 ms keeps a change within 1 s: the poll, the load,
  // the next TICK); on PostgreSQL a fallback to its change notifications.
  int reload_interval_ms = 500;
  // Publishes on topics matching these filters are validated notifications.
  std::vector<std::string> notification_topics = {
      "devices/+/notifications", "devices/+/+/notifications", "factory/#",
      "home/#", "emergency/#"};
  // Largest accepted notification payload, bytes.
  uint32_t max_payload = 262144;
  // Deepest accepted notification topic, levels.
  int max_topic_depth = 7;
  // Field set to the broker receipt time in accepted notifications.
  std::string timestamp_field = "received_at";
  // Failed logins for one username within auth_lockout_seconds before it is
  // locked out for auth_lockout_seconds. 0 disables the lockout.
  int auth_max_failures = 5;
  int auth_lockout_seconds = 60;
  // Unknown usernames are deferred to the broker's other auth methods.
  bool defer_unknown = false;
  // Lifetime of a notification without "ttl", seconds from its receipt;
  // 0 = no limit (what MQTT promises a publisher that asks for nothing).
  int64_t default_ttl_s = 0;
  // Receipts on $SYS/homepot/receipts/<publisher> for publishers that
  // subscribe to them.
  bool receipts = true;
  // Where a device acknowledges notifications: a topic name whose one
  // whole level is %u (its device id). Empty: acknowledgements are off.
  std::string ack_topic = "devices/%u/acks";
  // notification_log retention: at most this many rows (0: the log is not
  // written) and rows at most this many days old (0: no age limit).
  int64_t log_retention_rows = 100000;
  int log_retention_days = 30;
  // This broker's name among the brokers sharing the registry: its rows of
  // device_stats and notification_log carry it, and so does its stats JSON.
  // 1-64 bytes of UTF-8 without control characters, '+', '#' or '/'.
  // Default (left empty here): the host name, which ParseConfig fills in.
  std::string node_id;
};

// The registry of `config` as it opens it (Database::OpenLocation): db_url
// when set, else db_path.
const std::string& RegistryLocation(const Config& config);
// The registry of `config` as messages name it: db_path, or db_url with any
// password masked (pg::MaskedUrl).
std::string RegistryName(const Config& config);

// Whether `node_id` is a valid node_id: 1-64 bytes of valid UTF-8 without
// control characters (U+0000-U+001F, U+007F-U+009F), '+', '#' or '/'.
bool IsValidNodeId(std::string_view node_id);

// Whether `pattern` is a valid ack_topic: a topic name (no wildcards, not
// under $) with exactly one level that is exactly "%u".
bool IsAckTopicPattern(std::string_view pattern);

using OptionList = std::vector<std::pair<std::string, std::string>>;

// Parses `plugin_opt_*` pairs (names without the prefix). Without node_id,
// `host_name` (nullptr: gethostname()) gives it; a host name that is not a
// valid node id is an error naming the option.
Result<Config> ParseConfig(const OptionList& options,
                           const char* host_name = nullptr);

}  // namespace homepot

#endif  // HOMEPOT_PLUGIN_CONFIG_H_
