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
  // One simultaneous walk over both strings, byte by byte: this runs for
  // every message and every delivery, on short topics.
  const size_t fn = filter.size();
  const size_t tn = topic.size();
  if (fn == 0 || tn == 0) return false;
  if (topic[0] == '$' && (filter[0] == '+' || filter[0] == '#')) return false;
  const char* fp = filter.data();
  const char* tp = topic.data();
  size_t f = 0;  // start of the current level in the filter
  size_t t = 0;  // and in the topic
  while (true) {
    if (f == fn) return t == tn;  // an empty last filter level
    char c = fp[f];
    bool whole = f + 1 == fn || fp[f + 1] == '/';
    if (c == '#' && whole) return f + 1 == fn;  // '#' is valid last only
    if (c == '+' && whole) {
      while (t < tn && tp[t] != '/') ++t;
      ++f;
    } else {
      // A literal level, in which %u / %c stand for username / client id.
      while (f < fn && fp[f] != '/') {
        if (fp[f] == '%' && f + 1 < fn &&
            (fp[f + 1] == 'u' || fp[f + 1] == 'c')) {
          std::string_view value = fp[f + 1] == 'u' ? username : client_id;
          // An empty value matches nothing; one with '/' never fits a level.
          if (value.empty() || tn - t < value.size() ||
              std::memcmp(tp + t, value.data(), value.size()) != 0 ||
              std::memchr(value.data(), '/', value.size()) != nullptr) {
            return false;
          }
          t += value.size();
          f += 2;
          continue;
        }
        if (t == tn || tp[t] != fp[f]) return false;
        ++f;
        ++t;
      }
      if (t < tn && tp[t] != '/') return false;  // the topic level is longer
    }
    // Both at the end of a level: at the end of the string or at a '/'.
    if (f == fn) return t == tn;
    if (t == tn) {
      // The topic has no more levels: only a final "/#" still matches.
      return fn - f == 2 && fp[f + 1] == '#';
    }
    ++f;
    ++t;
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

FilterSet::FilterSet(const std::vector<std::string>& filters) {
  for (const std::string& filter : filters) {
    Filter f;
    f.first = static_cast<uint32_t>(levels_.size());
    f.wildcard_first =
        !filter.empty() && (filter[0] == '+' || filter[0] == '#');
    size_t i = 0;
    while (true) {
      size_t slash = filter.find('/', i);
      size_t end = slash == std::string::npos ? filter.size() : slash;
      std::string_view level(filter.data() + i, end - i);
      Level l;
      l.begin = static_cast<uint32_t>(text_.size());
      l.size = static_cast<uint32_t>(level.size());
      if (level == "+") {
        l.kind = Kind::kPlus;
      } else if (level == "#") {
        l.kind = Kind::kHash;
      } else if (level.find("%u") != std::string_view::npos ||
                 level.find("%c") != std::string_view::npos) {
        l.kind = Kind::kNever;  // no username here: matches nothing
      }
      text_.append(level);
      levels_.push_back(l);
      if (slash == std::string::npos) break;
      i = slash + 1;
    }
    f.count = static_cast<uint32_t>(levels_.size()) - f.first;
    if (!filter.empty()) filters_.push_back(f);
  }
}

bool FilterSet::MatchesAny(std::string_view topic) const {
  if (topic.empty()) return false;
  for (const Filter& f : filters_) {
    if (Matches(f, topic)) return true;
  }
  return false;
}

bool FilterSet::Matches(const Filter& f, std::string_view topic) const {
  if (f.wildcard_first && topic[0] == '$') return false;
  const char* tp = topic.data();
  const size_t tn = topic.size();
  size_t t = 0;  // start of the current topic level; tn + 1: no more levels
  for (uint32_t k = 0; k < f.count; ++k) {
    const Level& l = levels_[f.first + k];
    if (l.kind == Kind::kHash) return true;  // last; matches the parent too
    if (t > tn) return false;  // the filter has more levels than the topic
    const char* slash =
        static_cast<const char*>(std::memchr(tp + t, '/', tn - t));
    size_t end = slash ? static_cast<size_t>(slash - tp) : tn;
    if (l.kind == Kind::kNever) return false;
    if (l.kind == Kind::kLiteral &&
        (end - t != l.size ||
         std::memcmp(tp + t, text_.data() + l.begin, l.size) != 0)) {
      return false;
    }
    t = slash ? end + 1 : tn + 1;
  }
  return t > tn;  // the topic has no levels left either
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
