#include "rule_access.h"

namespace homepot {

std::optional<RuleAccess> RuleAccessFromWord(std::string_view word) {
  if (word == "read") return kRuleRead;
  if (word == "write") return kRuleWrite;
  if (word == "readwrite") return kRuleReadWrite;
  if (word == "deny") return kRuleDeny;
  return std::nullopt;
}

const char* RuleAccessWord(RuleAccess access) {
  switch (access) {
    case kRuleRead:
      return "read";
    case kRuleWrite:
      return "write";
    case kRuleReadWrite:
      return "readwrite";
    case kRuleDeny:
      return "deny";
  }
  return "deny";
}

}  // namespace homepot
