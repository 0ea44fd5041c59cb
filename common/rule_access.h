// What an ACL rule grants or denies: the four words of acl_rules.access (and
// of a Mosquitto acl_file) and their bits. The schema's CHECK access_value
// lists the same words (tests/common/rule_access_test.cc compares them).
// Not to be confused with homepot::Access (acl.h), what a client asks to do.
#ifndef HOMEPOT_COMMON_RULE_ACCESS_H_
#define HOMEPOT_COMMON_RULE_ACCESS_H_

#include <cstdint>
#include <optional>
#include <string_view>

namespace homepot {

// Bits, so that a rule matches a request with (rule & kRuleRead) and so on.
enum RuleAccess : uint8_t {
  kRuleRead = 1,
  kRuleWrite = 2,
  kRuleReadWrite = kRuleRead | kRuleWrite,
  kRuleDeny = 4,
};

// "read", "write", "readwrite" or "deny"; nothing for any other word
// (case matters).
std::optional<RuleAccess> RuleAccessFromWord(std::string_view word);

// The word of `access` (one of the four values above).
const char* RuleAccessWord(RuleAccess access);

}  // namespace homepot

#endif  // HOMEPOT_COMMON_RULE_ACCESS_H_
