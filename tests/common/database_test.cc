// common/database.h: the placeholders a PostgreSQL statement sends. The
// statements themselves run on both backends in the admin and plugin tests.
#include "database.h"

#include <gtest/gtest.h>

namespace homepot {
namespace {

TEST(PostgresPlaceholdersTest, NumberedAndBareFollowSqlitesRule) {
  EXPECT_EQ(PostgresPlaceholders("SELECT ?1, ?2, ?1"), "SELECT $1, $2, $1");
  EXPECT_EQ(PostgresPlaceholders("VALUES (?, ?, ?)"), "VALUES ($1, $2, $3)");
  // A bare ? is one above the largest number so far.
  EXPECT_EQ(PostgresPlaceholders("?3, ?1, ?"), "$3, $1, $4");
  EXPECT_EQ(PostgresPlaceholders("??"), "$1$2");
  // At most five digits make a number.
  EXPECT_EQ(PostgresPlaceholders("?1234567"),
            "$12345"
            "67");
}

TEST(PostgresPlaceholdersTest, QuotesAndCommentsAreLeftAlone) {
  EXPECT_EQ(PostgresPlaceholders("SELECT '?', \"a?\", ?"),
            "SELECT '?', \"a?\", $1");
  EXPECT_EQ(PostgresPlaceholders("SELECT 'it''s ?', ?"),
            "SELECT 'it''s ?', $1");
  EXPECT_EQ(PostgresPlaceholders("SELECT E'\\'?', ?"), "SELECT E'\\'?', $1");
  EXPECT_EQ(PostgresPlaceholders("SELECT ? -- why?\n, ?"),
            "SELECT $1 -- why?\n, $2");
  EXPECT_EQ(PostgresPlaceholders("SELECT /* ? */ ?"), "SELECT /* ? */ $1");
  EXPECT_EQ(PostgresPlaceholders("SELECT $$a?b$$, $x$?$x$, ?"),
            "SELECT $$a?b$$, $x$?$x$, $1");
  // $1 written directly stays as it is.
  EXPECT_EQ(PostgresPlaceholders("SELECT $1"), "SELECT $1");
  // An unterminated quote runs to the end.
  EXPECT_EQ(PostgresPlaceholders("SELECT '?"), "SELECT '?");
}

}  // namespace
}  // namespace homepot
