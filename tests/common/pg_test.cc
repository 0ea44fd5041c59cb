#include "pg.h"

#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

namespace homepot {
namespace pg {
namespace {

TEST(MaskedUrlTest, MasksThePasswordOfAUri) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"postgresql://u:secret@db.example:5432/homepot",
       "postgresql://u:***@db.example:5432/homepot"},
      {"postgres://u:s%40c:r@h/db", "postgres://u:***@h/db"},
      {"postgresql://u:p@[::1]:5432/db", "postgresql://u:***@[::1]:5432/db"},
      {"postgresql://u:p?x@h/db?sslmode=require",
       "postgresql://u:***@h/db?sslmode=require"},
      {"postgresql://h/db?user=u&password=secret&sslmode=require",
       "postgresql://h/db?user=u&password=***&sslmode=require"},
      {"postgresql://u:p@h/db?password=q",
       "postgresql://u:***@h/db?password=***"},
      {"postgresql://h/db?sslpassword=k&password=",
       "postgresql://h/db?sslpassword=***&password=***"},
      {"postgresql://h/db?pass%77ord=x", "postgresql://h/db?pass%77ord=***"},
  };
  for (const auto& [url, masked] : cases) {
    EXPECT_EQ(MaskedUrl(url), masked) << url;
  }
}

TEST(MaskedUrlTest, KeepsAUriWithoutPassword) {
  for (const std::string url :
       {"postgresql://u@h:5432/db", "postgresql:///db?host=/run/postgresql",
        "postgresql://u:@h/db", "postgresql://h/db?passfile=/etc/pgpass",
        "postgresql://", ""}) {
    EXPECT_EQ(MaskedUrl(url), url);
  }
}

TEST(MaskedUrlTest, MasksThePasswordOfAKeywordString) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"host=h password=secret dbname=d", "host=h password=*** dbname=d"},
      {"password = 'se cret\\' x' dbname=d", "password = *** dbname=d"},
      {"password=a\\ b user=u", "password=*** user=u"},
      {"sslpassword=k", "sslpassword=***"},
      {"host=h passfile=/p user=u", "host=h passfile=/p user=u"},
      {"dbname=d", "dbname=d"},
  };
  for (const auto& [url, masked] : cases) {
    EXPECT_EQ(MaskedUrl(url), masked) << url;
  }
}

TEST(MaskedUrlTest, MasksWhatFollowsAnUnparsablePoint) {
  EXPECT_EQ(MaskedUrl("host=h passwordsecret"), "host=h ***");
  EXPECT_EQ(MaskedUrl("host=h password='unterminated"), "host=h password=***");
  EXPECT_EQ(MaskedUrl("host=h password secret"), "host=h ***");
}

// Port 1 on loopback refuses at once: no server is needed.
TEST(PgConnectionTest, AFailedConnectionNamesTheMaskedUrl) {
  const std::string url =
      "postgresql://u:hunter2@127.0.0.1:1/db?connect_timeout=2";
  Result<Connection> conn = Connection::Open(url);
  ASSERT_FALSE(conn.ok());
  const std::string& message = conn.status().message();
  EXPECT_EQ(message.rfind(MaskedUrl(url) + ": ", 0), 0u) << message;
  EXPECT_NE(message.find("127.0.0.1"), std::string::npos) << message;
  EXPECT_EQ(message.find("hunter2"), std::string::npos) << message;
}

// libpq quotes a URL it cannot parse, password included.
TEST(PgConnectionTest, AnUnparsableUrlDoesNotShowItsPassword) {
  for (const std::string url :
       {"postgresql://u:hunter2@[::1/db", "postgresql://u:hun%zzter2@h/db",
        "postgresql://h/db?password=hun%zzter2",
        "postgresql://h/db?password=hunter2&x", "host=h password='hunter2",
        "host=h password=hunter2 nonsense=1"}) {
    Result<Connection> conn = Connection::Open(url);
    ASSERT_FALSE(conn.ok()) << url;
    const std::string& message = conn.status().message();
    EXPECT_EQ(message.find("hunter2"), std::string::npos) << message;
    EXPECT_EQ(message.find("hun%zzter2"), std::string::npos) << message;
    EXPECT_EQ(message.rfind(MaskedUrl(url) + ": ", 0), 0u) << message;
  }
}

// A / or @ in a URI's password ends the host part for libpq, which would
// quote a piece of it: masked whole, and refused before libpq sees it.
TEST(PgConnectionTest, APasswordWithSlashOrAtIsMaskedWholeAndRefused) {
  EXPECT_EQ(MaskedUrl("postgresql://u:hun/ter2@h:5432/db"),
            "postgresql://u:***@h:5432/db");
  EXPECT_EQ(MaskedUrl("postgresql://u:hun@ter2@h/db?sslmode=disable"),
            "postgresql://u:***@h/db?sslmode=disable");
  for (const std::string url : {"postgresql://u:hun/ter2@127.0.0.1:1/db",
                                "postgres://u:hun@ter2@127.0.0.1:1/db"}) {
    Result<Connection> conn = Connection::Open(url);
    ASSERT_FALSE(conn.ok()) << url;
    const std::string& message = conn.status().message();
    EXPECT_EQ(message.find("hun"), std::string::npos) << message;
    EXPECT_EQ(message.find("ter2"), std::string::npos) << message;
    EXPECT_NE(message.find("percent-encoded"), std::string::npos) << message;
  }
}

}  // namespace
}  // namespace pg
}  // namespace homepot
