#include "admin/mosquitto_files.h"

#include <map>
#include <utility>

namespace homepot::admin {
namespace {

bool IsBlank(char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' ||
         c == '\v';
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && IsBlank(s.front())) s.remove_prefix(1);
  while (!s.empty() && IsBlank(s.back())) s.remove_suffix(1);
  return s;
}

// Splits off the first word (up to a space or tab) of `*rest`, leaving the
// remainder, leading blanks removed, in `*rest`.
std::string_view NextWord(std::string_view* rest) {
  *rest = Trim(*rest);
  size_t end = 0;
  while (end < rest->size() && (*rest)[end] != ' ' && (*rest)[end] != '\t') {
    ++end;
  }
  std::string_view word = rest->substr(0, end);
  *rest = Trim(rest->substr(end));
  return word;
}

// Calls `fn(line_number, line)` for each line of `text` ('\n'-separated).
template <typename Fn>
Status ForEachLine(std::string_view text, Fn fn) {
  int number = 0;
  while (!text.empty()) {
    const size_t nl = text.find('\n');
    const std::string_view line = text.substr(0, nl);
    text =
        nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    if (Status s = fn(++number, line); !s.ok()) return s;
  }
  return Status::Ok();
}

std::string Where(std::string_view name, int line) {
  return Printable(name) + ":" + std::to_string(line) + ": ";
}

}  // namespace

Result<PasswdFile> ParsePasswordFile(std::string_view text,
                                     std::string_view name) {
  PasswdFile file;
  std::map<std::string, int, std::less<>> seen;  // user -> first line
  Status s = ForEachLine(text, [&](int number, std::string_view line) {
    const std::string_view trimmed = Trim(line);
    if (trimmed.empty() || trimmed.front() == '#') return Status::Ok();
    const size_t colon = trimmed.find(':');
    if (colon == std::string_view::npos) {
      file.warnings.push_back(Where(name, number) +
                              "skipped a line without ':' (Mosquitto "
                              "ignores it too)");
      return Status::Ok();
    }
    const std::string_view user = Trim(trimmed.substr(0, colon));
    const std::string_view encoded = Trim(trimmed.substr(colon + 1));
    if (Status id = ValidateDeviceId(user); !id.ok()) {
      return Status::Error(Where(name, number) + id.message());
    }
    if (encoded.empty()) {
      return Status::Error(Where(name, number) + "user " + Quote(user) +
                           " has no password hash");
    }
    Result<PasswordHash> hash = ParsePasswordHash(encoded);
    if (!hash.ok()) {
      return Status::Error(Where(name, number) + "bad password hash for user " +
                           Quote(user) + ": " + hash.status().message());
    }
    const auto [it, inserted] = seen.emplace(std::string(user), number);
    if (!inserted) {
      return Status::Error(Where(name, number) + "user " + Quote(user) +
                           " is listed twice (first on line " +
                           std::to_string(it->second) + ")");
    }
    file.entries.push_back(PasswdEntry{number, std::string(user), *hash});
    return Status::Ok();
  });
  if (!s.ok()) return s;
  return file;
}

Result<AclFile> ParseAclFile(std::string_view text, std::string_view name) {
  AclFile file;
  std::optional<std::string> user;
  Status s = ForEachLine(text, [&](int number, std::string_view line) {
    std::string_view rest = Trim(line);
    if (rest.empty() || rest.front() == '#') return Status::Ok();
    const std::string_view keyword = NextWord(&rest);
    if (keyword == "user") {
      if (rest.empty()) {
        return Status::Error(Where(name, number) + "missing user name");
      }
      if (Status id = ValidateDeviceId(rest); !id.ok()) {
        return Status::Error(Where(name, number) + id.message());
      }
      user = std::string(rest);
      file.users.push_back(AclFileUser{number, *user});
      return Status::Ok();
    }
    if (keyword != "topic" && keyword != "pattern") {
      return Status::Error(Where(name, number) + "unknown keyword " +
                           Quote(keyword) +
                           " (expected user, topic or pattern)");
    }
    // "topic [access] filter": the filter is the rest of the line and may
    // contain spaces; with a single word, that word is the filter.
    std::string_view first = NextWord(&rest);
    if (first.empty()) {
      return Status::Error(Where(name, number) + "missing topic filter");
    }
    AclFileRule rule;
    rule.line = number;
    if (rest.empty()) {
      rule.filter = std::string(first);
    } else {
      Result<RuleAccess> access = ParseRuleAccess(first);
      if (!access.ok()) {
        return Status::Error(Where(name, number) + access.status().message());
      }
      rule.access = *access;
      rule.filter = std::string(rest);
    }
    if (Status f = ValidateFilter(rule.filter); !f.ok()) {
      return Status::Error(Where(name, number) + f.message());
    }
    if (keyword == "topic") {
      if (!user) {
        file.warnings.push_back(
            Where(name, number) +
            "skipped a 'topic' line before any 'user' line (it would apply "
            "to anonymous clients, which HOMEPOT does not allow)");
        return Status::Ok();
      }
      rule.device = user;
    }
    file.rules.push_back(std::move(rule));
    return Status::Ok();
  });
  if (!s.ok()) return s;
  return file;
}

}  // namespace homepot::admin
