// MQTT topic and filter helpers. Pure functions over string_views; nothing
// here allocates.
#ifndef HOMEPOT_COMMON_TOPIC_H_
#define HOMEPOT_COMMON_TOPIC_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace homepot {

// A valid topic name: non-empty, no '+', '#' or NUL.
bool IsValidTopic(std::string_view topic);

// A valid filter: non-empty, '+' and '#' only as whole levels, '#' last.
bool IsValidFilter(std::string_view filter);

// True when `topic` (a topic name) matches `filter`. Filters that begin with
// a wildcard never match topics that begin with '$' (MQTT 4.7.2).
// In the filter, "%u" is replaced by `username` and "%c" by `client_id`
// wherever they appear; an empty replacement makes the rule match nothing.
bool FilterMatches(std::string_view filter, std::string_view topic,
                   std::string_view username = {},
                   std::string_view client_id = {});

// True when every topic matched by filter `inner` is matched by `outer`
// (so a subscription to `inner` can only ever receive topics `outer` allows).
// Substitutes %u/%c in `outer` like FilterMatches.
bool FilterInside(std::string_view inner, std::string_view outer,
                  std::string_view username = {},
                  std::string_view client_id = {});

// Strips a "$share/<group>/" prefix from a subscription filter; returns the
// input unchanged when there is none. Returns an empty view for a malformed
// shared subscription.
std::string_view StripSharePrefix(std::string_view filter);

// Filters without %u / %c, split into levels once so that matching a topic
// compares whole literal levels (memcmp) instead of byte by byte. Same
// answers as FilterMatches(filter, topic) for each filter; used for
// notification_topics, which every message is tested against.
class FilterSet {
 public:
  explicit FilterSet(const std::vector<std::string>& filters);
  // True when `topic` matches any of the filters.
  bool MatchesAny(std::string_view topic) const;

 private:
  enum class Kind : uint8_t { kLiteral, kPlus, kHash, kNever };
  struct Level {
    uint32_t begin = 0;  // in text_
    uint32_t size = 0;
    Kind kind = Kind::kLiteral;
  };
  struct Filter {
    uint32_t first = 0;  // into levels_
    uint32_t count = 0;
    bool wildcard_first = false;  // never matches '$' topics
  };
  bool Matches(const Filter& f, std::string_view topic) const;
  std::string text_;
  std::vector<Level> levels_;
  std::vector<Filter> filters_;
};

// Number of levels in a topic ("a/b/c" has 3; "" has 1).
int TopicDepth(std::string_view topic);

}  // namespace homepot

#endif  // HOMEPOT_COMMON_TOPIC_H_
