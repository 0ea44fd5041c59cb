#include "chunk_mark.h"

#include <random>
#include <string_view>
#include <utility>

namespace homepot {
namespace {

uint64_t RandomToken() {
  std::random_device random;
  return (static_cast<uint64_t>(random()) << 32) ^ random();
}

}  // namespace

ChunkMark::ChunkMark(std::string node, std::string writer)
    : node_(std::move(node)),
      writer_(std::move(writer)),
      token_(RandomToken()) {}

std::string ChunkMark::CurrentMark() const {
  return std::to_string(token_) + ":" + std::to_string(chunk_);
}

Result<bool> ChunkMark::HoldsCurrentMark(Database* db) {
  // The row must exist before it can be locked: an INSERT that meets the
  // earlier attempt's uncommitted one waits for that transaction to end.
  Result<Statement> create = db->Prepare(
      "INSERT INTO write_marks (node, writer, mark) VALUES (?1, ?2, '') "
      "ON CONFLICT (node, writer) DO NOTHING");
  if (!create.ok()) return create.status();
  create->Bind(1, std::string_view(node_)).Bind(2, std::string_view(writer_));
  if (Status s = create->Run(); !s.ok()) return s;
  // SQLite's write transaction already holds the whole file.
  Result<Statement> read = db->Prepare(
      std::string("SELECT mark FROM write_marks WHERE node = ?1 AND "
                  "writer = ?2") +
      (db->backend() == Backend::kPostgres ? " FOR UPDATE" : ""));
  if (!read.ok()) return read.status();
  read->Bind(1, std::string_view(node_)).Bind(2, std::string_view(writer_));
  Result<bool> row = read->Step();
  if (!row.ok()) return row.status();
  return *row && read->Text(0) == CurrentMark();
}

Result<ChunkMark::Outcome> ChunkMark::Write(
    Database* db, const std::function<Status()>& statements) {
  Result<Transaction> transaction = Transaction::Begin(db);
  if (!transaction.ok()) return transaction.status();
  Outcome outcome = Outcome::kWritten;
  if (retry_) {
    Result<bool> written = HoldsCurrentMark(db);
    if (!written.ok()) return written.status();
    if (*written) outcome = Outcome::kAlreadyWritten;
  }
  if (outcome == Outcome::kWritten) {
    // A failure from here on may follow a COMMIT that took effect.
    retry_ = true;
    if (Status s = statements(); !s.ok()) return s;
    Result<Statement> store = db->Prepare(
        "INSERT INTO write_marks (node, writer, mark) VALUES (?1, ?2, ?3) "
        "ON CONFLICT (node, writer) DO UPDATE SET mark = excluded.mark");
    if (!store.ok()) return store.status();
    store->Bind(1, std::string_view(node_))
        .Bind(2, std::string_view(writer_))
        .Bind(3, std::string_view(CurrentMark()));
    if (Status s = store->Run(); !s.ok()) return s;
  }
  if (Status s = transaction->Commit(); !s.ok()) return s;
  retry_ = false;
  ++chunk_;
  return outcome;
}

}  // namespace homepot
