// A throwaway PostgreSQL cluster for tests, and the registry schema for it.
//
// Start() runs initdb (UTF8, C locale) into a fresh temporary directory and
// starts postgres on a free loopback port, with its unix socket in that
// directory; it waits for the server with a deadline, then creates the role
// `homepot` with a random password and its database `homepot`. The role
// logs in over TCP with password authentication (scram-sha-256), the
// password read from a passfile (mode 0600) that Url() names; the superuser
// `postgres` logs in over the unix socket without one (trust).
//
// initdb and postgres refuse to run as root: then they run as the user
// `postgres` (or `nobody` where there is none), which owns the directory.
// The binaries come from `pg_config --bindir`, else the newest
// /usr/lib/postgresql/<version>/bin.
//
// The destructor stops the server (by its PID: fast shutdown, SIGKILL after
// 10 s) and removes the directory (kept, like test::TempDir, when
// $HOMEPOT_KEEP_TEST_DIRS is set).
#ifndef HOMEPOT_TESTS_TESTING_POSTGRES_H_
#define HOMEPOT_TESTS_TESTING_POSTGRES_H_

#include <gtest/gtest.h>
#include <sys/types.h>

#include <string>
#include <vector>

#include "testing.h"

namespace homepot {
namespace test {

// The text of schema/postgresql.sql, read once; records a test failure and
// returns "" when the file cannot be read.
const std::string& PostgresSchemaSql();
// The same for tests/fixtures/postgresql_v3.sql, the schema at version 3
// (for upgrade tests).
const std::string& PostgresSchemaV3Sql();

class PostgresCluster {
 public:
  // The password-authenticated role, and the database Start() creates.
  static constexpr const char* kRole = "homepot";

  PostgresCluster() = default;
  ~PostgresCluster();
  PostgresCluster(const PostgresCluster&) = delete;
  PostgresCluster& operator=(const PostgresCluster&) = delete;

  // Creates and starts the cluster (see above); ready to use when it
  // succeeds (30 s at most, retrying on a port clash). Call once.
  testing::AssertionResult Start();

  // Creates the database `name` (a plain identifier) owned by kRole.
  testing::AssertionResult CreateDatabase(const std::string& name);
  // CreateDatabase, then applies schema/postgresql.sql to it as kRole.
  testing::AssertionResult CreateRegistry(const std::string& name);

  // postgresql://homepot@127.0.0.1:<port>/<database>?passfile=<passfile>:
  // kRole over TCP, its password from the passfile, none in the URL.
  std::string Url(const std::string& database = kRole) const;
  // The same with the password in the URL's user info.
  std::string UrlWithPassword(const std::string& database = kRole) const;
  // A key=value string for the superuser over the unix socket.
  std::string SuperuserConninfo(const std::string& database = "postgres") const;

  int port() const { return port_; }
  const std::string& password() const { return password_; }
  const std::string& passfile() const { return passfile_; }
  // What initdb and postgres wrote.
  std::string Log() const;

  // Stops the server (fast shutdown: sessions are ended); true when it shut
  // down cleanly (or was not running). Its data stays.
  bool Stop();
  // Starts the stopped server again on the same port with the same data,
  // so that Url() still names it; ready to use when it succeeds (30 s at
  // most). Fails when it is running or the port has been taken meanwhile.
  testing::AssertionResult Restart();

 private:
  // Forks and execs `argv` with a minimal environment, as the unprivileged
  // user when running as root; its output goes to `log`. -1 on failure.
  pid_t Spawn(const std::vector<std::string>& argv, const std::string& log);
  testing::AssertionResult Initdb();
  // Starts postgres on port_ (on a fresh one first when `new_port`) and
  // waits until it accepts connections; `port_clash` is set when it exited
  // because the port was taken.
  testing::AssertionResult StartServer(bool new_port, bool* port_clash);
  testing::AssertionResult CreateRole();

  TempDir dir_{"homepot-pg"};
  std::string bin_dir_;
  uid_t uid_ = 0;  // who runs initdb and postgres when we are root
  gid_t gid_ = 0;
  bool as_other_user_ = false;
  pid_t pid_ = -1;
  int port_ = 0;
  std::string password_;
  std::string passfile_;
};

}  // namespace test
}  // namespace homepot

#endif  // HOMEPOT_TESTS_TESTING_POSTGRES_H_
