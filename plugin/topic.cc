#include "topic.h"

#include <cstring>

namespace homepot {
namespace {

// Splits off the next level of `s` (up to '/') and advances `s` past it.
// `more` is set when a '/' followed, i.e. another level exists.
std::string_view NextLevel(std::string_view* s, bool* more) {
  size_t slash = s->find('/');
  std::string_view level = s->substr(0, slash);
  if (slash == std::string_view::npos) {
    *more = false;
    s->remove_prefix(s->size());
  } else {
    *more = true;
    s->remove_prefix(slash + 1);
  }
  return level;
}

// Compares a filter level in which %u/%c stand for `username`/`client_id`
// with a literal level. Returns false when a placeholder's value is empty.
bool LevelEquals(std::string_view pattern, std::string_view literal,
                 std::string_view username, std::string_view client_id) {
  if (pattern.find('%') == std::string_view::npos) return pattern == literal;
  size_t i = 0;
  while (i < pattern.size()) {
    if (pattern[i] == '%' && i + 1 < pattern.size() &&
        (pattern[i + 1] == 'u' || pattern[i + 1] == 'c')) {
      std::string_view value = pattern[i + 1] == 'u' ? username : client_id;
      if (value.empty() || literal.substr(0, value.size()) != value) {
        return false;
      }
      literal.remove_prefix(value.size());
      i += 2;
      continue;
    }
    if (literal.empty() || literal[0] != pattern[i]) return false;
    literal.remove_prefix(1);
    ++i;
  }
  return literal.empty();
}

}  // namespace

bool IsValidTopic(std::string_view topic) {
  if (topic.empty()) return false;
  for (char c : topic) {
    if (c == '+' || c == '#' || c == '\0') return false;
  }
  return true;
}

bool IsValidFilter(std::string_view filter) {
  if (filter.empty()) return false;
  if (std::memchr(filter.data(), '\0', filter.size()) != nullptr) return false;
  bool more = true;
  while (more) {
    std::string_view level = NextLevel(&filter, &more);
    if (level.find_first_of("+#") != std::string_view::npos) {
      if (level.size() != 1) return false;
      if (level[0] == '#' && more) return false;
    }
  }
  return true;
}

bool FilterMatches(std::string_view filter, std::string_view topic,
                   std::string_view username, std::string_view client_id) {
  // One pass over both strings (this runs for every message and delivery).
  if (filter.empty() || topic.empty()) return false;
  if (topic[0] == '$' && (filter[0] == '+' || filter[0] == '#')) return false;
  const size_t fn = filter.size();
  const size_t tn = topic.size();
  size_t f = 0;  // start of the current filter level
  size_t t = 0;  // start of the current topic level; tn + 1 = no more levels
  while (true) {
    char c = filter[f];
    bool whole = f + 1 == fn || filter[f + 1] == '/';
    if (c == '#' && whole) return f + 1 == fn;  // also matches the parent
    if (t > tn) return false;  // the filter has more levels than the topic
    size_t te = t;
    while (te < tn && topic[te] != '/') ++te;
    size_t fe = f + 1;
    if (!(c == '+' && whole)) {
      bool pattern = c == '%';
      fe = f;
      while (fe < fn && filter[fe] != '/') pattern |= filter[fe++] == '%';
      std::string_view fl = filter.substr(f, fe - f);
      std::string_view tl = topic.substr(t, te - t);
      if (pattern ? !LevelEquals(fl, tl, username, client_id) : fl != tl) {
        return false;
      }
    }
    if (fe >= fn) return te == tn;  // last filter level: topic must end too
    f = fe + 1;
    t = te == tn ? tn + 1 : te + 1;
    if (f == fn) return t == tn;  // empty last filter level
  }
}

bool FilterInside(std::string_view inner, std::string_view outer,
                  std::string_view username, std::string_view client_id) {
  if (inner.empty() || outer.empty()) return false;
  // A '$' topic is only inside filters that name the '$' level literally.
  if (inner[0] == '$' && (outer[0] == '+' || outer[0] == '#')) return false;
  bool outer_more = true;
  bool inner_more = true;
  while (outer_more) {
    std::string_view o = NextLevel(&outer, &outer_more);
    if (o == "#") return !outer_more;
    if (!inner_more) return false;  // inner ends before outer: "a" vs "a/b"
    std::string_view i = NextLevel(&inner, &inner_more);
    if (i == "#") return false;  // inner reaches deeper than outer allows
    if (o == "+") continue;      // '+' covers a literal or '+'
    if (i == "+") return false;  // literal outer, wildcard inner
    if (!LevelEquals(o, i, username, client_id)) return false;
  }
  return !inner_more;
}

std::string_view StripSharePrefix(std::string_view filter) {
  constexpr std::string_view kShare = "$share/";
  if (filter.substr(0, kShare.size()) != kShare) return filter;
  filter.remove_prefix(kShare.size());
  size_t slash = filter.find('/');
  if (slash == 0 || slash == std::string_view::npos ||
      slash + 1 >= filter.size()) {
    return {};
  }
  std::string_view group = filter.substr(0, slash);
  if (group.find_first_of("+#") != std::string_view::npos) return {};
  return filter.substr(slash + 1);
}

int TopicDepth(std::string_view topic) {
  int depth = 1;
  const char* p = topic.data();
  const char* end = p + topic.size();
  while ((p = static_cast<const char*>(std::memchr(p, '/', end - p)))) {
    ++depth;
    ++p;
  }
  return depth;
}

}  // namespace homepot
