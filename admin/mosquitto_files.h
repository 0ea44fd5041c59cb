// Parsers for Mosquitto's own password_file and acl_file formats, as
// Mosquitto 2.0 reads them, so that existing files import unchanged. Pure
// functions over the file's text: no I/O, no database. Errors read
// "<name>:<line>: <reason>" on one line and never include a password hash.
#ifndef HOMEPOT_ADMIN_MOSQUITTO_FILES_H_
#define HOMEPOT_ADMIN_MOSQUITTO_FILES_H_

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "admin/validate.h"
#include "credentials.h"
#include "status.h"

namespace homepot::admin {

// password_file: one "user:hash" per line, hash as mosquitto_passwd writes it
// ($7$ or $6$). Lines starting with '#' and blank lines are skipped; blanks
// around user and hash are trimmed. Like Mosquitto, a line without ':' is
// ignored (with a warning). Unlike Mosquitto, which drops bad entries with a
// log line, a user without a valid hash, an invalid device id or a user
// listed twice is an error: an import is all or nothing.
struct PasswdEntry {
  int line = 0;
  std::string user;
  PasswordHash hash;
};
struct PasswdFile {
  std::vector<PasswdEntry> entries;
  std::vector<std::string> warnings;  // "<name>:<line>: ..." each
};
Result<PasswdFile> ParsePasswordFile(std::string_view text,
                                     std::string_view name);

// acl_file:
//   user <name>                             following topic lines are <name>'s
//   topic [read|write|readwrite|deny] <filter>     (default readwrite)
//   pattern [read|write|readwrite|deny] <filter>   for every client
// Comments start with '#'; blank lines are skipped. `pattern` lines are
// global wherever they appear (rule.device unset). `topic` lines before the
// first `user` line apply to anonymous clients in Mosquitto; this product has
// none, so they are skipped with a warning. Filters are checked with
// ValidateFilter and user names with ValidateDeviceId.
struct AclFileUser {
  int line = 0;
  std::string name;
};
struct AclFileRule {
  int line = 0;
  std::optional<std::string> device;  // unset = every device
  RuleAccess access = kRuleReadWrite;
  std::string filter;
};
struct AclFile {
  std::vector<AclFileUser> users;  // every `user` line, in order
  std::vector<AclFileRule> rules;
  std::vector<std::string> warnings;
};
Result<AclFile> ParseAclFile(std::string_view text, std::string_view name);

}  // namespace homepot::admin

#endif  // HOMEPOT_ADMIN_MOSQUITTO_FILES_H_
