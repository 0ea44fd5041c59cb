// The homepot-admin process: argv, the standard streams, $HOMEPOT_DB, the
// embedded schemas and the terminal. Everything else is RunAdmin (admin.h).
#include <signal.h>
#include <termios.h>
#include <unistd.h>

#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include "admin/admin.h"
#include "homepot_postgresql_sql.h"  // generated from schema/postgresql.sql
#include "homepot_schema_sql.h"      // generated from schema/schema.sql

namespace {

// The terminal's settings before echo was switched off, restored on exit
// and on SIGINT/SIGTERM/SIGHUP so that an interrupted prompt does not leave
// the terminal silent.
termios saved_termios;
volatile sig_atomic_t echo_off = 0;

void RestoreTerminal(int signal_number) {
  if (echo_off) tcsetattr(STDIN_FILENO, TCSANOW, &saved_termios);
  _exit(128 + signal_number);
}

void SetEcho(bool on) {
  if (!on) {
    if (tcgetattr(STDIN_FILENO, &saved_termios) != 0) return;
    for (int sig : {SIGINT, SIGTERM, SIGHUP}) signal(sig, RestoreTerminal);
    termios quiet = saved_termios;
    quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO);
    echo_off = 1;
    tcsetattr(STDIN_FILENO, TCSANOW, &quiet);
  } else if (echo_off) {
    tcsetattr(STDIN_FILENO, TCSANOW, &saved_termios);
    echo_off = 0;
  }
}

}  // namespace

int main(int argc, char** argv) {
  using homepot::admin::AdminEnv;
  const std::vector<std::string> args(argv + 1, argv + argc);
  AdminEnv env;
  env.schema_sql = homepot::admin::kEmbeddedSchemaSql;
  env.postgres_schema_sql = homepot::admin::kEmbeddedPostgresSchemaSql;
  if (const char* db = std::getenv("HOMEPOT_DB")) env.default_db = db;
  if (isatty(STDIN_FILENO)) env.set_echo = SetEcho;
  return homepot::admin::RunAdmin(args, std::cin, std::cout, std::cerr, env);
}
