#include "testing.h"

#include <stdlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "credentials.h"
#include "registry.h"

namespace homepot {
namespace test {

const std::vector<std::string>& StatsKeys() {
  static const std::vector<std::string> keys = {"total_sent",
                                                "total_success",
                                                "total_failed",
                                                "last_sent",
                                                "connection_count",
                                                "connected",
                                                "reachable",
                                                "connected_not_subscribed",
                                                "deliveries",
                                                "expired",
                                                "bridged",
                                                "auth",
                                                "acl",
                                                "receipts",
                                                "acks",
                                                "log",
                                                "rejected",
                                                "qos",
                                                "priority",
                                                "registry",
                                                "node",
                                                "uptime_s",
                                                "version",
                                                "timestamp"};
  return keys;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

bool WriteFile(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  return static_cast<bool>(out);
}

const std::string& SchemaSql() {
  static const std::string* text =
      new std::string(ReadFile(HOMEPOT_TESTING_SCHEMA_SQL));
  if (text->empty()) {
    ADD_FAILURE() << "cannot read " << HOMEPOT_TESTING_SCHEMA_SQL;
  }
  return *text;
}

const std::string& OldSchemaSql(int version) {
  static const std::string* const texts[] = {
      new std::string(ReadFile(HOMEPOT_TESTING_FIXTURES "/schema_v1.sql")),
      new std::string(ReadFile(HOMEPOT_TESTING_FIXTURES "/schema_v2.sql")),
      new std::string(ReadFile(HOMEPOT_TESTING_FIXTURES "/schema_v3.sql"))};
  static const std::string kNone;
  if (version < 1 || version > 3) {
    ADD_FAILURE() << "no fixture schema for version " << version;
    return kNone;
  }
  const std::string& text = *texts[version - 1];
  if (text.empty()) ADD_FAILURE() << "cannot read schema version " << version;
  return text;
}

std::optional<Database> OpenMemoryDatabase() {
  Result<Database> db = Database::Open(":memory:", Database::Mode::kCreate);
  if (!db.ok()) {
    ADD_FAILURE() << db.status().message();
    return std::nullopt;
  }
  if (Status s = db->Exec("PRAGMA foreign_keys = OFF"); !s.ok()) {
    ADD_FAILURE() << s.message();
    return std::nullopt;
  }
  return std::move(*db);
}

testing::AssertionResult ExecSql(sqlite3* db, const std::string& sql) {
  char* err = nullptr;
  int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err);
  std::string message = err != nullptr ? err : sqlite3_errstr(rc);
  sqlite3_free(err);
  if (rc != SQLITE_OK) {
    return testing::AssertionFailure() << "'" << sql << "': " << message;
  }
  return testing::AssertionSuccess();
}

namespace {

testing::AssertionResult ExecOnFile(const std::string& path,
                                    const std::string& sql, int flags) {
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db, flags, nullptr) != SQLITE_OK) {
    std::string message = db != nullptr ? sqlite3_errmsg(db) : "out of memory";
    sqlite3_close(db);
    return testing::AssertionFailure() << "open " << path << ": " << message;
  }
  sqlite3_busy_timeout(db, 5000);
  testing::AssertionResult result = ExecSql(db, sql);
  sqlite3_close(db);
  return result;
}

}  // namespace

testing::AssertionResult ExecSqlOn(const std::string& path,
                                   const std::string& sql) {
  return ExecOnFile(path, sql, SQLITE_OPEN_READWRITE);
}

testing::AssertionResult CreateRegistryFile(const std::string& path,
                                            const std::string& sql) {
  const std::string& schema = SchemaSql();
  if (schema.empty()) {
    return testing::AssertionFailure() << "no schema text";
  }
  return ExecOnFile(path, schema + "\n" + sql,
                    SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
}

testing::AssertionResult CreateOldRegistryFile(int version,
                                               const std::string& path,
                                               const std::string& sql) {
  const std::string& schema = OldSchemaSql(version);
  if (schema.empty()) {
    return testing::AssertionFailure() << "no schema text for " << version;
  }
  return ExecOnFile(path, schema + "\n" + sql,
                    SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
}

std::string EncodedHash(const std::string& password, int iterations) {
  Result<PasswordHash> hash = HashPassword(password, iterations);
  if (!hash.ok()) {
    ADD_FAILURE() << "HashPassword: " << hash.status().message();
    return "";
  }
  return EncodePasswordHash(*hash);
}

TempDir::TempDir(const std::string& prefix, const std::string& parent) {
  std::string pattern = parent + "/" + prefix + "-XXXXXX";
  if (mkdtemp(pattern.data()) == nullptr) {
    ADD_FAILURE() << "mkdtemp " << pattern << ": " << std::strerror(errno);
    return;
  }
  path_ = pattern;
}

TempDir::~TempDir() {
  if (path_.empty()) return;
  if (getenv("HOMEPOT_KEEP_TEST_DIRS") != nullptr) {
    std::fprintf(stderr, "kept %s\n", path_.c_str());
    return;
  }
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

namespace {

// Every field a lookup can see of `d`.
std::string Describe(const Device& d) {
  std::string out = d.id + "|" + d.type + "|" + d.token + "|" +
                    std::to_string(d.max_payload) + "|" +
                    (d.enabled ? "on" : "off") + "|" +
                    (d.has_password ? "pw" : "nopw") + "|" +
                    std::to_string(d.password.hash[0]) + "|";
  for (const AclRule& r : d.rules) {
    out += r.filter + ":" + std::to_string(r.access) + ",";
  }
  return out;
}

}  // namespace

std::vector<std::string> DescribeSnapshot(const Snapshot& s) {
  std::vector<std::string> out;
  s.ForEachDevice([&](const Device& d) { out.push_back(Describe(d)); });
  std::sort(out.begin(), out.end());
  std::string global;
  for (const AclRule& r : s.global_rules()) {
    global += r.filter + ":" + std::to_string(r.access) + ",";
  }
  out.push_back("global " + global);
  out.push_back("generation " + std::to_string(s.generation()));
  out.push_back("rules " + std::to_string(s.rule_count()));
  out.push_back("min " + std::to_string(s.min_type_max_payload()));
  out.push_back("unknown " + std::to_string(s.unknown_type_max_payload()));
  return out;
}

}  // namespace test
}  // namespace homepot
