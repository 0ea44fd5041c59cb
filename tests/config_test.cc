#include "config.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <climits>
#include <string>
#include <vector>

namespace homepot {
namespace {

// Options with the required db_path first, then `extra`.
OptionList With(OptionList extra) {
  OptionList options = {{"db_path", "/tmp/homepot.db"}};
  options.insert(options.end(), extra.begin(), extra.end());
  return options;
}

// The end of every node_id error: the rule.
const std::string kNodeIdRule =
    " (a node id is 1-64 bytes of UTF-8 without control characters, '+', "
    "'#' or '/')";

// The error message ParseConfig gives for `options`, or "" when it succeeds.
std::string ErrorOf(const OptionList& options) {
  Result<Config> r = ParseConfig(options);
  return r.ok() ? std::string() : r.status().message();
}

TEST(ConfigTest, DefaultsMatchTheDocs) {
  Result<Config> r =
      ParseConfig({{"db_path", "/var/lib/mosquitto/homepot.db"}});
  ASSERT_TRUE(r.ok()) << r.status().message();
  const Config& c = *r;
  EXPECT_EQ(c.db_path, "/var/lib/mosquitto/homepot.db");
  EXPECT_EQ(c.stats_topic, "$SYS/homepot/stats");
  EXPECT_EQ(c.stats_interval_s, 10);
  EXPECT_EQ(c.reload_interval_ms, 500);
  EXPECT_EQ(c.notification_topics,
            (std::vector<std::string>{"devices/+/notifications",
                                      "devices/+/+/notifications", "factory/#",
                                      "home/#", "emergency/#"}));
  EXPECT_EQ(c.max_payload, 262144u);
  EXPECT_EQ(c.max_topic_depth, 7);
  EXPECT_EQ(c.timestamp_field, "received_at");
  EXPECT_EQ(c.auth_max_failures, 5);
  EXPECT_EQ(c.auth_lockout_seconds, 60);
  EXPECT_FALSE(c.defer_unknown);
  EXPECT_EQ(c.default_ttl_s, 0);
  EXPECT_TRUE(c.receipts);
  EXPECT_EQ(c.ack_topic, "devices/%u/acks");
  EXPECT_EQ(c.log_retention_rows, 100000);
  EXPECT_EQ(c.log_retention_days, 30);
  char host[HOST_NAME_MAX + 1] = {};
  ASSERT_EQ(gethostname(host, sizeof host - 1), 0);
  EXPECT_EQ(c.node_id, host);
}

TEST(ConfigTest, EveryOptionIsParsed) {
  Result<Config> r = ParseConfig({
      {"db_path", "/data/registry.db"},
      {"stats_topic", "$SYS/homepot/metrics"},
      {"stats_interval", "0"},
      {"reload_interval_ms", "250"},
      {"notification_topics", "alerts/# devices/+/inbox"},
      {"max_payload", "4096"},
      {"max_topic_depth", "12"},
      {"timestamp_field", "broker_time"},
      {"auth_max_failures", "0"},
      {"auth_lockout_seconds", "3600"},
      {"defer_unknown", "true"},
      {"default_ttl", "300"},
      {"receipts", "false"},
      {"ack_topic", "acks/%u"},
      {"log_retention_rows", "0"},
      {"log_retention_days", "7"},
      {"node_id", "broker-eu-1"},
  });
  ASSERT_TRUE(r.ok()) << r.status().message();
  const Config& c = *r;
  EXPECT_EQ(c.db_path, "/data/registry.db");
  EXPECT_EQ(c.stats_topic, "$SYS/homepot/metrics");
  EXPECT_EQ(c.stats_interval_s, 0);
  EXPECT_EQ(c.reload_interval_ms, 250);
  EXPECT_EQ(c.notification_topics,
            (std::vector<std::string>{"alerts/#", "devices/+/inbox"}));
  EXPECT_EQ(c.max_payload, 4096u);
  EXPECT_EQ(c.max_topic_depth, 12);
  EXPECT_EQ(c.timestamp_field, "broker_time");
  EXPECT_EQ(c.auth_max_failures, 0);
  EXPECT_EQ(c.auth_lockout_seconds, 3600);
  EXPECT_TRUE(c.defer_unknown);
  EXPECT_EQ(c.default_ttl_s, 300);
  EXPECT_FALSE(c.receipts);
  EXPECT_EQ(c.ack_topic, "acks/%u");
  EXPECT_EQ(c.log_retention_rows, 0);
  EXPECT_EQ(c.log_retention_days, 7);
  EXPECT_EQ(c.node_id, "broker-eu-1");
}

TEST(ConfigTest, AckTopicNoneTurnsAcknowledgementsOff) {
  Result<Config> r = ParseConfig({{"db_path", "x.db"}, {"ack_topic", "none"}});
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->ack_topic, "");
}

TEST(ConfigTest, RangeBoundsAreAccepted) {
  struct Case {
    std::string name, value;
  };
  const std::vector<Case> cases = {
      {"stats_interval", "0"},       {"stats_interval", "86400"},
      {"reload_interval_ms", "50"},  {"reload_interval_ms", "3600000"},
      {"max_payload", "2"},          {"max_payload", "268435455"},
      {"max_topic_depth", "1"},      {"max_topic_depth", "1024"},
      {"auth_max_failures", "0"},    {"auth_max_failures", "1000000"},
      {"auth_lockout_seconds", "1"}, {"auth_lockout_seconds", "604800"},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(ErrorOf(With({{c.name, c.value}})), "")
        << c.name << " = " << c.value;
  }
}

TEST(ConfigTest, BadValuesGiveExactMessages) {
  struct Case {
    std::string name, value, message;
  };
  const std::vector<Case> cases = {
      // Not numbers.
      {"stats_interval", "5abc",
       "option plugin_opt_stats_interval: '5abc' is not a whole number"},
      {"stats_interval", "",
       "option plugin_opt_stats_interval: '' is not a whole number"},
      {"stats_interval", " 5",
       "option plugin_opt_stats_interval: ' 5' is not a whole number"},
      {"stats_interval", "5 ",
       "option plugin_opt_stats_interval: '5 ' is not a whole number"},
      {"stats_interval", "+5",
       "option plugin_opt_stats_interval: '+5' is not a whole number"},
      {"stats_interval", "1.5",
       "option plugin_opt_stats_interval: '1.5' is not a whole number"},
      {"stats_interval", "0x10",
       "option plugin_opt_stats_interval: '0x10' is not a whole number"},
      {"reload_interval_ms", "fast",
       "option plugin_opt_reload_interval_ms: 'fast' is not a whole number"},
      {"max_payload", "256k",
       "option plugin_opt_max_payload: '256k' is not a whole number"},
      {"max_payload", "-1",
       "option plugin_opt_max_payload: '-1' is not a whole number"},
      {"max_topic_depth", "seven",
       "option plugin_opt_max_topic_depth: 'seven' is not a whole number"},
      {"auth_max_failures", "5x",
       "option plugin_opt_auth_max_failures: '5x' is not a whole number"},
      {"auth_lockout_seconds", "1m",
       "option plugin_opt_auth_lockout_seconds: '1m' is not a whole number"},
      // Out of range.
      {"stats_interval", "-1",
       "option plugin_opt_stats_interval: '-1' is out of range (0 to 86400)"},
      {"stats_interval", "86401",
       "option plugin_opt_stats_interval: '86401' is out of range (0 to "
       "86400)"},
      {"stats_interval", "99999999999999999999",
       "option plugin_opt_stats_interval: '99999999999999999999' is out of "
       "range (0 to 86400)"},
      {"reload_interval_ms", "49",
       "option plugin_opt_reload_interval_ms: '49' is out of range (50 to "
       "3600000)"},
      {"reload_interval_ms", "3600001",
       "option plugin_opt_reload_interval_ms: '3600001' is out of range (50 "
       "to 3600000)"},
      {"max_payload", "1",
       "option plugin_opt_max_payload: '1' is out of range (2 to 268435455)"},
      {"max_payload", "268435456",
       "option plugin_opt_max_payload: '268435456' is out of range (2 to "
       "268435455)"},
      {"max_payload", "4294967296",
       "option plugin_opt_max_payload: '4294967296' is out of range (2 to "
       "268435455)"},
      {"max_topic_depth", "0",
       "option plugin_opt_max_topic_depth: '0' is out of range (1 to 1024)"},
      {"auth_max_failures", "-1",
       "option plugin_opt_auth_max_failures: '-1' is out of range (0 to "
       "1000000)"},
      {"auth_lockout_seconds", "0",
       "option plugin_opt_auth_lockout_seconds: '0' is out of range (1 to "
       "604800)"},
      {"default_ttl", "-1",
       "option plugin_opt_default_ttl: '-1' is out of range (0 to "
       "3162240000)"},
      // Booleans are exactly "true" or "false".
      {"defer_unknown", "yes",
       "option plugin_opt_defer_unknown: 'yes' is not true or false"},
      {"defer_unknown", "TRUE",
       "option plugin_opt_defer_unknown: 'TRUE' is not true or false"},
      {"defer_unknown", "1",
       "option plugin_opt_defer_unknown: '1' is not true or false"},
      {"defer_unknown", "",
       "option plugin_opt_defer_unknown: '' is not true or false"},
      // Notification filters.
      {"notification_topics", "devices/+/notifications a/#/b",
       "option plugin_opt_notification_topics: 'a/#/b' is not a valid topic "
       "filter"},
      {"notification_topics", "home#",
       "option plugin_opt_notification_topics: 'home#' is not a valid topic "
       "filter"},
      {"notification_topics", "a/b+",
       "option plugin_opt_notification_topics: 'a/b+' is not a valid topic "
       "filter"},
      {"notification_topics", "",
       "option plugin_opt_notification_topics: needs at least one topic "
       "filter"},
      {"notification_topics", " \t ",
       "option plugin_opt_notification_topics: needs at least one topic "
       "filter"},
      // Stats topic.
      {"stats_topic", "homepot/stats",
       "option plugin_opt_stats_topic: 'homepot/stats' must be a topic name "
       "under $SYS/homepot/ (outside rejections/ and receipts/)"},
      {"stats_topic", "$SYS/broker/stats",
       "option plugin_opt_stats_topic: '$SYS/broker/stats' must be a topic "
       "name under $SYS/homepot/ (outside rejections/ and receipts/)"},
      {"stats_topic", "$SYS/homepot/+",
       "option plugin_opt_stats_topic: '$SYS/homepot/+' must be a topic name "
       "under $SYS/homepot/ (outside rejections/ and receipts/)"},
      {"stats_topic", "$SYS/homepot/#",
       "option plugin_opt_stats_topic: '$SYS/homepot/#' must be a topic name "
       "under $SYS/homepot/ (outside rejections/ and receipts/)"},
      {"stats_topic", "$SYS/homepot/rejections/x",
       "option plugin_opt_stats_topic: '$SYS/homepot/rejections/x' must be a "
       "topic name under $SYS/homepot/ (outside rejections/ and receipts/)"},
      {"stats_topic", "",
       "option plugin_opt_stats_topic: '' must be a topic name under "
       "$SYS/homepot/ (outside rejections/ and receipts/)"},
      {"stats_topic", "$SYS/homepot/receipts/x",
       "option plugin_opt_stats_topic: '$SYS/homepot/receipts/x' must be a "
       "topic name under $SYS/homepot/ (outside rejections/ and receipts/)"},
      // Acknowledgement topic.
      {"ack_topic", "devices/acks",
       "option plugin_opt_ack_topic: 'devices/acks' must be a topic name "
       "outside $ with one level that is exactly %u, or none"},
      {"ack_topic", "devices/%u/%u",
       "option plugin_opt_ack_topic: 'devices/%u/%u' must be a topic name "
       "outside $ with one level that is exactly %u, or none"},
      {"ack_topic", "devices/x%u/acks",
       "option plugin_opt_ack_topic: 'devices/x%u/acks' must be a topic name "
       "outside $ with one level that is exactly %u, or none"},
      {"ack_topic", "devices/%u/+",
       "option plugin_opt_ack_topic: 'devices/%u/+' must be a topic name "
       "outside $ with one level that is exactly %u, or none"},
      {"ack_topic", "$SYS/%u/acks",
       "option plugin_opt_ack_topic: '$SYS/%u/acks' must be a topic name "
       "outside $ with one level that is exactly %u, or none"},
      {"ack_topic", "home/%u/acks",
       "option plugin_opt_ack_topic: 'home/%u/acks' overlaps notification "
       "topic 'home/#'"},
      {"receipts", "yes",
       "option plugin_opt_receipts: 'yes' is not true or false"},
      {"log_retention_rows", "-1",
       "option plugin_opt_log_retention_rows: '-1' is out of range (0 to "
       "1099511627776)"},
      {"log_retention_days", "36501",
       "option plugin_opt_log_retention_days: '36501' is out of range (0 to "
       "36500)"},
      // Timestamp field.
      {"timestamp_field", "",
       "option plugin_opt_timestamp_field: '' must be 1-64 characters "
       "without \" or \\"},
      {"timestamp_field", std::string(65, 'x'),
       "option plugin_opt_timestamp_field: '" + std::string(65, 'x') +
           "' must be 1-64 characters without \" or \\"},
      {"timestamp_field", "a\"b",
       "option plugin_opt_timestamp_field: 'a\"b' must be 1-64 characters "
       "without \" or \\"},
      {"timestamp_field", "a\\b",
       "option plugin_opt_timestamp_field: 'a\\b' must be 1-64 characters "
       "without \" or \\"},
      {"timestamp_field", "a\tb",
       "option plugin_opt_timestamp_field: must not hold control characters"},
      // Node id.
      {"node_id", "", "option plugin_opt_node_id: is empty" + kNodeIdRule},
      {"node_id", std::string(65, 'n'),
       "option plugin_opt_node_id: '" + std::string(65, 'n') +
           "' is longer than 64 bytes" + kNodeIdRule},
      {"node_id", "eu/1",
       "option plugin_opt_node_id: 'eu/1' contains '/'" + kNodeIdRule},
      {"node_id", "eu+1",
       "option plugin_opt_node_id: 'eu+1' contains '+'" + kNodeIdRule},
      {"node_id", "eu#1",
       "option plugin_opt_node_id: 'eu#1' contains '#'" + kNodeIdRule},
      {"node_id", "eu\t1",
       "option plugin_opt_node_id: holds a control character" + kNodeIdRule},
      {"node_id", "eu\x7F",
       "option plugin_opt_node_id: holds a control character" + kNodeIdRule},
      {"node_id", "eu\xC2\x85",  // U+0085, a C1 control
       "option plugin_opt_node_id: holds a control character" + kNodeIdRule},
      {"node_id", "caf\xE9",
       "option plugin_opt_node_id: is not valid UTF-8" + kNodeIdRule},
      // db_path given but empty.
      {"db_path", "", "option plugin_opt_db_path: must not be empty"},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(ErrorOf(With({{c.name, c.value}})), c.message)
        << c.name << " = '" << c.value << "'";
  }
}

TEST(ConfigTest, UnknownOptionIsAnError) {
  EXPECT_EQ(ErrorOf(With({{"stats_intervall", "10"}})),
            "unknown option plugin_opt_stats_intervall");
  EXPECT_EQ(ErrorOf(With({{"DB_PATH", "/x"}})),
            "unknown option plugin_opt_DB_PATH");
  // Reported even when db_path is missing too.
  EXPECT_EQ(ErrorOf({{"bogus", "1"}}), "unknown option plugin_opt_bogus");
}

TEST(ConfigTest, MissingDbPathIsAnError) {
  const std::string required =
      "one of plugin_opt_db_path (a SQLite file) and plugin_opt_db_url (a "
      "postgresql:// URL) is required";
  EXPECT_EQ(ErrorOf({}), required);
  EXPECT_EQ(ErrorOf({{"stats_interval", "5"}}), required);
}

TEST(ConfigTest, DbUrlNamesAPostgresRegistry) {
  const std::string url =
      "postgresql://homepot@db.example:5432/registry?passfile=/etc/pgpass";
  Result<Config> r = ParseConfig({{"db_url", url}});
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->db_url, url);
  EXPECT_EQ(r->db_path, "");
  EXPECT_EQ(RegistryLocation(*r), url);
  EXPECT_EQ(RegistryName(*r), url);
  Result<Config> short_scheme =
      ParseConfig({{"db_url", "postgres://h/registry"}});
  ASSERT_TRUE(short_scheme.ok()) << short_scheme.status().message();

  Result<Config> file = ParseConfig({{"db_path", "/data/registry.db"}});
  ASSERT_TRUE(file.ok());
  EXPECT_EQ(RegistryLocation(*file), "/data/registry.db");
  EXPECT_EQ(RegistryName(*file), "/data/registry.db");
}

// A password in the URL works but is never shown: not by RegistryName, not
// in an error.
TEST(ConfigTest, DbUrlPasswordIsNeverShown) {
  const std::string url = "postgresql://homepot:s3cret@db/registry";
  Result<Config> r = ParseConfig({{"db_url", url}});
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(RegistryLocation(*r), url);
  EXPECT_EQ(RegistryName(*r), "postgresql://homepot:***@db/registry");

  EXPECT_EQ(ErrorOf({{"db_url", "host=db password=s3cret"}}),
            "option plugin_opt_db_url: 'host=db password=***' is not a "
            "postgresql:// URL");
  EXPECT_EQ(ErrorOf({{"db_path", url}}),
            "option plugin_opt_db_path: 'postgresql://homepot:***@db/registry' "
            "is a PostgreSQL URL: give it as plugin_opt_db_url");
}

TEST(ConfigTest, DbPathAndDbUrlAreExclusive) {
  EXPECT_EQ(ErrorOf({{"db_path", "/a.db"}, {"db_url", "postgresql://h/r"}}),
            "only one of plugin_opt_db_path (a SQLite file) and "
            "plugin_opt_db_url (a postgresql:// URL) is required");
  EXPECT_EQ(ErrorOf({{"db_url", ""}}),
            "option plugin_opt_db_url: '' is not a postgresql:// URL");
}

TEST(ConfigTest, FirstBadOptionIsReported) {
  EXPECT_EQ(ErrorOf(With({{"max_topic_depth", "x"}, {"stats_interval", "y"}})),
            "option plugin_opt_max_topic_depth: 'x' is not a whole number");
}

TEST(ConfigTest, NotificationTopicsSplitOnSpacesAndTabs) {
  Result<Config> r =
      ParseConfig(With({{"notification_topics", "  a/b   c/+\td/#\t\t e  "}}));
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->notification_topics,
            (std::vector<std::string>{"a/b", "c/+", "d/#", "e"}));
}

TEST(ConfigTest, BoolParsing) {
  Result<Config> t = ParseConfig(With({{"defer_unknown", "true"}}));
  ASSERT_TRUE(t.ok());
  EXPECT_TRUE(t->defer_unknown);
  Result<Config> f = ParseConfig(With({{"defer_unknown", "false"}}));
  ASSERT_TRUE(f.ok());
  EXPECT_FALSE(f->defer_unknown);
}

TEST(ConfigTest, LaterValueOfARepeatedOptionWins) {
  Result<Config> r = ParseConfig(
      {{"db_path", "/a.db"}, {"stats_interval", "3"}, {"db_path", "/b.db"}});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->db_path, "/b.db");
  EXPECT_EQ(r->stats_interval_s, 3);
}

TEST(ConfigTest, TimestampFieldAcceptsSixtyFourCharacters) {
  Result<Config> r =
      ParseConfig(With({{"timestamp_field", std::string(64, 'x')}}));
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->timestamp_field, std::string(64, 'x'));
}

TEST(ConfigTest, NodeIdTakesAnyPrintableUtf8UpToSixtyFourBytes) {
  for (const std::string& node :
       {std::string("x"), std::string(64, 'n'), std::string("broker eu-1"),
        std::string("h\xC3\xB6st-\xE2\x82\xAC"),  // höst-€
        std::string("\xC2\xA0quoted \"$SYS\" \\")}) {
    Result<Config> r = ParseConfig(With({{"node_id", node}}));
    ASSERT_TRUE(r.ok()) << r.status().message();
    EXPECT_EQ(r->node_id, node);
    EXPECT_TRUE(IsValidNodeId(node)) << node;
  }
  // 64 bytes, not 64 characters: 32 two-byte characters fit, 33 do not.
  std::string two_byte;
  for (int i = 0; i < 33; ++i) two_byte += "\xC3\xB6";
  EXPECT_FALSE(IsValidNodeId(two_byte));
  EXPECT_TRUE(IsValidNodeId(two_byte.substr(2)));
}

// Without the option the host name is the node id, and it must pass the
// same rule; the option overrides it.
TEST(ConfigTest, NodeIdDefaultsToTheHostName) {
  Result<Config> r = ParseConfig(With({}), "mqtt-1.example.net");
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->node_id, "mqtt-1.example.net");
  r = ParseConfig(With({{"node_id", "eu-1"}}), "mqtt-1.example.net");
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->node_id, "eu-1");
  // An unusable host name is an error naming the option, unless the
  // option is set.
  r = ParseConfig(With({}), "");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(),
            "option plugin_opt_node_id: the host name is empty" + kNodeIdRule +
                "; set plugin_opt_node_id");
  r = ParseConfig(With({}), "a/b");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(),
            "option plugin_opt_node_id: the host name 'a/b' contains '/'" +
                kNodeIdRule + "; set plugin_opt_node_id");
  r = ParseConfig(With({{"node_id", "eu-1"}}), "a/b");
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->node_id, "eu-1");
}

}  // namespace
}  // namespace homepot
