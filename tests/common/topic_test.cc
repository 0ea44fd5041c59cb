#include "topic.h"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <string_view>
#include <vector>

namespace homepot {
namespace {

using namespace std::string_literals;

struct ValidityCase {
  std::string text;
  bool valid;
};

TEST(TopicTest, IsValidTopic) {
  const std::vector<ValidityCase> cases = {
      {"a", true},      {"devices/sensor-001/notifications", true},
      {"/", true},      {"a//b", true},
      {"a/b/", true},   {"$SYS/homepot/stats", true},
      {"a %u b", true}, {"", false},
      {"+", false},     {"#", false},
      {"a/+/b", false}, {"a/#", false},
      {"a+b", false},   {"a#b", false},
      {"a\0b"s, false},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(IsValidTopic(c.text), c.valid) << "'" << c.text << "'";
  }
}

TEST(TopicTest, IsValidFilter) {
  const std::vector<ValidityCase> cases = {
      {"a", true},      {"#", true},        {"+", true},
      {"a/#", true},    {"+/+", true},      {"a/+/#", true},
      {"/#", true},     {"a//b", true},     {"devices/%u/#", true},
      {"$SYS/#", true}, {"", false},        {"a/#/b", false},
      {"#/a", false},   {"a#", false},      {"a/b#", false},
      {"a/b+", false},  {"++", false},      {"+a/b", false},
      {"##", false},    {"a/\0/b"s, false},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(IsValidFilter(c.text), c.valid) << "'" << c.text << "'";
  }
}

struct MatchCase {
  std::string filter;
  std::string topic;
  std::string username;
  std::string client_id;
  bool match;
};

TEST(TopicTest, FilterMatches) {
  const std::vector<MatchCase> cases = {
      // Literals.
      {"a/b", "a/b", "", "", true},
      {"a/b", "a/c", "", "", false},
      {"a/b", "a/b/", "", "", false},
      {"a/b/", "a/b/", "", "", true},
      {"a/b", "a", "", "", false},
      {"a", "a/b", "", "", false},
      {"A/b", "a/b", "", "", false},
      {"a/b", "a/bc", "", "", false},
      {"a/bc", "a/b", "", "", false},
      {"a/", "a", "", "", false},
      {"a//", "a//", "", "", true},
      {"a//", "a/", "", "", false},
      // '+' matches exactly one level, possibly empty.
      {"a/+", "a/b", "", "", true},
      {"a/+", "a/b/c", "", "", false},
      {"a/+", "a", "", "", false},
      {"a/+", "a/", "", "", true},
      {"a/+/c", "a//c", "", "", true},
      {"+", "a", "", "", true},
      {"+", "/a", "", "", false},
      {"+/+", "/a", "", "", true},
      {"devices/+/notifications", "devices/sensor-001/notifications", "", "",
       true},
      {"devices/+/notifications", "devices/a/b/notifications", "", "", false},
      // '#' matches any number of levels, including the parent level.
      {"#", "a", "", "", true},
      {"#", "a/b/c", "", "", true},
      {"a/#", "a", "", "", true},
      {"a/#", "a/b", "", "", true},
      {"a/#", "a/b/c/d", "", "", true},
      {"a/#", "b/a", "", "", false},
      {"a/b/#", "a", "", "", false},
      {"+/#", "a", "", "", true},
      // '$' topics are not matched by a leading wildcard.
      {"#", "$SYS/broker/uptime", "", "", false},
      {"+/broker/uptime", "$SYS/broker/uptime", "", "", false},
      {"+/#", "$SYS/x", "", "", false},
      {"$SYS/#", "$SYS/homepot/stats", "", "", true},
      {"$SYS/+/stats", "$SYS/homepot/stats", "", "", true},
      {"a/#", "a/$b", "", "", true},
      // %u / %c substitution, whole level or inside one.
      {"devices/%u/#", "devices/sensor-001/x", "sensor-001", "", true},
      {"devices/%u/#", "devices/sensor-002/x", "sensor-001", "", false},
      {"devices/%u/#", "devices/sensor-001", "sensor-001", "", true},
      {"devices/%u", "devices/bobby", "bob", "", false},
      {"devices/%u", "devices/bo", "bob", "", false},
      {"devices/pre-%u-suf/x", "devices/pre-bob-suf/x", "bob", "", true},
      {"devices/pre-%u-suf/x", "devices/pre-bob-su/x", "bob", "", false},
      {"clients/%c/in", "clients/cid-1/in", "", "cid-1", true},
      {"clients/%c/in", "clients/cid-2/in", "", "cid-1", false},
      {"%u%c", "bobcid", "bob", "cid", true},
      {"%u/%c", "bob/cid", "bob", "cid", true},
      {"%c/%u", "bob/cid", "bob", "cid", false},
      // A '%' that is not a placeholder is a literal character.
      {"a/%x/b", "a/%x/b", "bob", "cid", true},
      {"a/100%", "a/100%", "bob", "cid", true},
      {"a/%", "a/b", "bob", "cid", false},
      // An empty username or client id makes the rule match nothing.
      {"devices/%u/#", "devices//x", "", "", false},
      {"devices/%u/#", "devices/%u/x", "", "", false},
      {"devices/%u", "devices/", "", "", false},
      {"clients/%c", "clients/", "bob", "", false},
      // A username can never widen a rule: it is compared literally.
      {"devices/%u/x", "devices/anything/x", "+", "", false},
      {"devices/%u/x", "devices/+/x", "+", "", true},  // only the literal '+'
      {"devices/%u", "devices/a/b", "#", "", false},
      {"devices/%u/x", "devices/a/b/x", "a/b", "", false},
      {"devices/%u/x", "devices/a/x", "a/b", "", false},
      // Empty inputs.
      {"", "a", "", "", false},
      {"a", "", "", "", false},
      {"#", "", "", "", false},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(FilterMatches(c.filter, c.topic, c.username, c.client_id),
              c.match)
        << "filter '" << c.filter << "' topic '" << c.topic << "' user '"
        << c.username << "' client '" << c.client_id << "'";
  }
}

struct InsideCase {
  std::string inner;
  std::string outer;
  std::string username;
  std::string client_id;
  bool inside;
};

// FilterSet answers exactly as FilterMatches (no username / client id) for
// every filter it holds, on random filters and topics.
TEST(TopicTest, FilterSetAgreesWithFilterMatches) {
  std::mt19937 rng(7);
  const char kAlphabet[] = "ab/+#%uc$";
  auto random_string = [&](size_t max_len, size_t letters) {
    std::string s;
    for (size_t n = rng() % max_len; n > 0; --n)
      s += kAlphabet[rng() % letters];
    return s;
  };
  for (int round = 0; round < 20000; ++round) {
    std::vector<std::string> filters;
    for (int k = 1 + rng() % 3; k > 0; --k) {
      std::string f = random_string(8, 9);
      if (IsValidFilter(f)) filters.push_back(f);
    }
    FilterSet set(filters);
    for (int k = 0; k < 20; ++k) {
      std::string topic = random_string(8, 3);
      if (rng() % 4 == 0) topic = "$" + topic;
      bool want = false;
      for (const std::string& f : filters)
        want = want || FilterMatches(f, topic);
      ASSERT_EQ(set.MatchesAny(topic), want) << "topic '" << topic << "'";
    }
  }
  FilterSet defaults({"devices/+/notifications", "devices/+/+/notifications",
                      "factory/#", "home/#", "emergency/#"});
  EXPECT_TRUE(defaults.MatchesAny("devices/sensor-001/notifications"));
  EXPECT_TRUE(defaults.MatchesAny("devices/a/b/notifications"));
  EXPECT_TRUE(defaults.MatchesAny("factory"));
  EXPECT_FALSE(defaults.MatchesAny("devices/sensor-001/status"));
  EXPECT_FALSE(defaults.MatchesAny("$SYS/factory"));
  EXPECT_FALSE(defaults.MatchesAny(""));
  EXPECT_FALSE(FilterSet({"devices/%u/x"}).MatchesAny("devices/%u/x"));
}

TEST(TopicTest, FilterInside) {
  const std::vector<InsideCase> cases = {
      // The documented example: read devices/sensor-001/#.
      {"devices/sensor-001/+", "devices/sensor-001/#", "", "", true},
      {"devices/sensor-001", "devices/sensor-001/#", "", "", true},
      {"devices/sensor-001/#", "devices/sensor-001/#", "", "", true},
      {"devices/sensor-001/a/b/c", "devices/sensor-001/#", "", "", true},
      {"devices/sensor-001/+/#", "devices/sensor-001/#", "", "", true},
      {"devices/#", "devices/sensor-001/#", "", "", false},
      {"devices/+/notifications", "devices/sensor-001/#", "", "", false},
      {"#", "devices/sensor-001/#", "", "", false},
      {"devices", "devices/sensor-001/#", "", "", false},
      // '+' versus literal.
      {"a/b", "a/+", "", "", true},
      {"a/+", "a/+", "", "", true},
      {"a/+", "a/b", "", "", false},
      {"+/b", "a/b", "", "", false},
      {"a", "a/+", "", "", false},
      {"a/b/c", "a/+", "", "", false},
      {"a/b", "a/b", "", "", true},
      {"a/b", "a/c", "", "", false},
      {"a/b/c", "a/b", "", "", false},
      {"a", "a/b", "", "", false},
      // '#' inner versus '+' outer and the like.
      {"a/#", "a/+", "", "", false},
      {"a/+/#", "a/#", "", "", true},
      {"a/#", "a/#", "", "", true},
      {"#", "#", "", "", true},
      {"+", "#", "", "", true},
      {"+/+/+", "#", "", "", true},
      {"#", "+", "", "", false},
      // Semantically equal sets, but a leading inner '#' is refused: the
      // check is conservative, never permissive.
      {"#", "+/#", "", "", false},
      {"+", "+/#", "", "", true},
      {"a/#", "+/+", "", "", false},
      // '$' filters are only inside filters that name the '$' level.
      {"$SYS/x", "#", "", "", false},
      {"$SYS/broker", "+/broker", "", "", false},
      {"$SYS/#", "$SYS/#", "", "", true},
      {"$SYS/homepot/stats", "$SYS/#", "", "", true},
      {"$SYS/homepot/stats", "$SYS/homepot/stats", "", "", true},
      // %u / %c in the outer filter.
      {"devices/bob/#", "devices/%u/#", "bob", "", true},
      {"devices/bob", "devices/%u/#", "bob", "", true},
      {"devices/alice/#", "devices/%u/#", "bob", "", false},
      {"devices/+/#", "devices/%u/#", "bob", "", false},
      {"devices/#", "devices/%u/#", "bob", "", false},
      {"clients/cid/x", "clients/%c/+", "", "cid", true},
      {"devices/x", "devices/%u", "", "", false},
      {"devices/", "devices/%u", "", "", false},
      {"devices/+", "devices/%u", "+", "", false},
      // Empty inputs.
      {"", "#", "", "", false},
      {"a", "", "", "", false},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(FilterInside(c.inner, c.outer, c.username, c.client_id), c.inside)
        << "inner '" << c.inner << "' outer '" << c.outer << "' user '"
        << c.username << "' client '" << c.client_id << "'";
  }
}

TEST(TopicTest, FilterInsideImpliesEveryMatchedTopicIsMatched) {
  // For a sample of topics: whatever `inner` matches, `outer` matches too.
  const std::vector<std::pair<std::string, std::string>> pairs = {
      {"devices/sensor-001/+", "devices/sensor-001/#"},
      {"a/+/#", "a/#"},
      {"a/b", "a/+"},
      {"+/+/+", "#"},
  };
  const std::vector<std::string> topics = {
      "a",
      "a/b",
      "a/b/c",
      "a//c",
      "devices/sensor-001",
      "x/y",
      "x/y/z",
      "devices/sensor-001/notifications",
  };
  for (const auto& [inner, outer] : pairs) {
    ASSERT_TRUE(FilterInside(inner, outer)) << inner << " in " << outer;
    for (const auto& t : topics) {
      if (FilterMatches(inner, t)) {
        EXPECT_TRUE(FilterMatches(outer, t))
            << inner << " in " << outer << " but " << t;
      }
    }
  }
}

TEST(TopicTest, StripSharePrefix) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"$share/g/x", "x"},
      {"$share/group-1/devices/+/notifications", "devices/+/notifications"},
      {"$share/g/a/b/#", "a/b/#"},
      {"$share/g/#", "#"},
      {"a/b", "a/b"},
      {"#", "#"},
      {"$SYS/#", "$SYS/#"},
      {"$shared/x", "$shared/x"},
      {"share/g/x", "share/g/x"},
      // Malformed shared subscriptions.
      {"$share/", ""},
      {"$share/g", ""},
      {"$share/g/", ""},
      {"$share//x", ""},
      {"$share/+/x", ""},
      {"$share/#/x", ""},
      {"$share/a+/x", ""},
  };
  for (const auto& [in, out] : cases) {
    EXPECT_EQ(std::string(StripSharePrefix(in)), out) << "'" << in << "'";
  }
}

TEST(TopicTest, TopicDepth) {
  const std::vector<std::pair<std::string, int>> cases = {
      {"", 1},
      {"a", 1},
      {"/", 2},
      {"a/b", 2},
      {"a/b/c", 3},
      {"a//b", 3},
      {"a/b/", 3},
      {"devices/sensor-001/notifications", 3},
      {"a/b/c/d/e/f/g/h", 8},
  };
  for (const auto& [topic, depth] : cases) {
    EXPECT_EQ(TopicDepth(topic), depth) << "'" << topic << "'";
  }
}

}  // namespace
}  // namespace homepot
