#include "delivery_log.h"

#include <algorithm>
#include <cstddef>
#include <iterator>
#include <optional>
#include <string_view>
#include <utility>

#include "registry_reloader.h"
#include "stats.h"

namespace homepot {
namespace {

constexpr int64_t kDayMs = 24 * 60 * 60 * 1000;

// Text as stored: NULL for "none".
void BindText(Statement* stmt, int index, const std::string& text) {
  if (text.empty()) {
    stmt->BindNull(index);
  } else {
    stmt->Bind(index, std::string_view(text));
  }
}

// A time as stored in the registry, NULL for "none".
void BindStamp(Statement* stmt, int index, int64_t ms) {
  if (ms == 0) {
    stmt->BindNull(index);
  } else {
    stmt->Bind(index, std::string_view(StampString(ms)));
  }
}

// Parameters of one notification_log row in an INSERT.
constexpr int kInsertColumns = 11;

bool AddsARow(const DeliveryEvent& e) {
  return e.kind == DeliveryEvent::Kind::kAccepted ||
         e.kind == DeliveryEvent::Kind::kRejected;
}

// An INSERT of `rows` rows, their parameters one row after the other
// (BindRow). Bare ?s, numbered in order: SQLite parses a ?N by looking N up
// among the numbers so far, which a statement of hundreds pays for dearly.
std::string InsertSql(size_t rows) {
  std::string sql =
      "INSERT INTO notification_log (message_id, publisher, topic, "
      "target_device, received_at, routed, queued, expires_at, outcome, "
      "reason, node) VALUES ";
  for (size_t row = 0; row < rows; ++row) {
    sql += row == 0 ? "(?" : ", (?";
    for (int column = 1; column < kInsertColumns; ++column) sql += ", ?";
    sql += ")";
  }
  return sql;
}

const char* AcceptedOutcome(const DeliveryEvent& e) {
  if (e.routed > 0) return "routed";
  if (e.queued > 0) return "queued";
  return "unreachable";
}

// One integer column of the first row (0 when it is NULL).
Result<int64_t> QueryInt(Database* db, std::string_view sql) {
  Result<Statement> stmt = db->Prepare(sql);
  if (!stmt.ok()) return stmt.status();
  Result<bool> row = stmt->Step();
  if (!row.ok()) return row.status();
  return *row && !stmt->IsNull(0) ? stmt->Int(0) : 0;
}

// Binds the row of `e` (kAccepted or kRejected) as row `row` of an
// InsertSql statement.
void BindRow(Statement* stmt, size_t row, const DeliveryEvent& e,
             std::string_view node) {
  const int base = static_cast<int>(row) * kInsertColumns;
  const bool accepted = e.kind == DeliveryEvent::Kind::kAccepted;
  BindText(stmt, base + 1, e.message_id);
  BindText(stmt, base + 2, e.publisher);
  stmt->Bind(base + 3, std::string_view(e.topic));
  BindText(stmt, base + 4, e.target_device);
  stmt->Bind(base + 5, std::string_view(StampString(e.received_ms)))
      .Bind(base + 6, static_cast<int64_t>(e.routed))
      .Bind(base + 7, static_cast<int64_t>(e.queued));
  BindStamp(stmt, base + 8, e.expires_ms);
  stmt->Bind(base + 9,
             std::string_view(accepted ? AcceptedOutcome(e) : "rejected"));
  BindText(stmt, base + 10, accepted ? std::string() : e.reason);
  stmt->Bind(base + 11, node);
}

}  // namespace

DeliveryLogWriter::DeliveryLogWriter(std::string path, std::string node,
                                     DeliveryLogRetention retention,
                                     Clock* clock, LogQueue* log,
                                     size_t max_pending)
    : path_(std::move(path)),
      node_(std::move(node)),
      retention_(retention),
      clock_(clock),
      log_(log),
      max_pending_(max_pending),
      mark_(node_, "delivery_log") {}

bool DeliveryLogWriter::Submit(std::vector<DeliveryEvent>* batch) {
  if (retention_.rows == 0) {  // the log is not written
    batch->clear();
    return true;
  }
  std::unique_lock<std::mutex> lock(mu_, std::try_to_lock);
  if (!lock.owns_lock()) return false;
  const size_t room = max_pending_ - std::min(max_pending_, pending_.size());
  const size_t taken = std::min(room, batch->size());
  pending_.insert(pending_.end(), std::make_move_iterator(batch->begin()),
                  std::make_move_iterator(batch->begin() + taken));
  if (taken < batch->size()) {
    dropped_.fetch_add(batch->size() - taken);
  }
  batch->clear();
  return true;
}

size_t DeliveryLogWriter::pending() {
  std::lock_guard<std::mutex> lock(mu_);
  return pending_.size();
}

void DeliveryLogWriter::Restore(std::vector<DeliveryEvent>* batch) {
  std::lock_guard<std::mutex> lock(mu_);
  pending_.insert(pending_.begin(), std::make_move_iterator(batch->begin()),
                  std::make_move_iterator(batch->end()));
  batch->clear();
  if (pending_.size() > max_pending_) {
    // The newest go, as they would have at Submit.
    dropped_.fetch_add(pending_.size() - max_pending_);
    pending_.resize(max_pending_);
  }
}

Status DeliveryLogWriter::Trim(Database* db) {
  if (retention_.days > 0) {
    Result<Statement> old = db->Prepare(
        "DELETE FROM notification_log WHERE id IN (SELECT id FROM "
        "notification_log WHERE received_at < ?1 LIMIT ?2)");
    if (!old.ok()) return old.status();
    const int64_t cutoff_ms = clock_->WallMs() - retention_.days * kDayMs;
    old->Bind(1, std::string_view(StampString(cutoff_ms)))
        .Bind(2, static_cast<int64_t>(kMaxTrimRows));
    if (Status s = old->Run(); !s.ok()) return s;
  }
  // Counting walks an index: only when the id range (two index lookups;
  // min and max in one SELECT would scan) says there may be more rows than
  // kept.
  Result<int64_t> span =
      QueryInt(db,
               "SELECT (SELECT max(id) FROM notification_log) - "
               "(SELECT min(id) FROM notification_log) + 1");
  if (!span.ok()) return span.status();
  if (*span <= retention_.rows) return Status::Ok();
  Result<int64_t> rows = QueryInt(db, "SELECT count(*) FROM notification_log");
  if (!rows.ok()) return rows.status();
  if (*rows <= retention_.rows) return Status::Ok();
  Result<Statement> oldest = db->Prepare(
      "DELETE FROM notification_log WHERE id IN "
      "(SELECT id FROM notification_log ORDER BY id LIMIT ?1)");
  if (!oldest.ok()) return oldest.status();
  oldest->Bind(1, std::min<int64_t>(*rows - retention_.rows, kMaxTrimRows));
  return oldest->Run();
}

Status DeliveryLogWriter::Apply(Database* db,
                                const std::vector<DeliveryEvent>& batch) {
  // The newest row of the notification that this node wrote (the node that
  // routed the copy, see the header) and that can still take the change; a
  // rejected notification was never delivered.
  // publisher may be NULL on both sides: SQLite's IS, PostgreSQL's IS NOT
  // DISTINCT FROM.
  const std::string same_publisher =
      db->backend() == Backend::kPostgres
          ? "publisher IS NOT DISTINCT FROM ?2::text"
          : "publisher IS ?2";
  Result<Statement> ack = db->Prepare(
      "UPDATE notification_log SET acked_at = ?3, latency_ms = ?4, "
      "status = ?5, outcome = 'acked' WHERE id = (SELECT max(id) FROM "
      "notification_log WHERE message_id = ?1 AND " +
      same_publisher +
      " AND node = ?6 AND acked_at IS NULL AND outcome <> 'rejected')");
  if (!ack.ok()) return ack.status();
  Result<Statement> expire = db->Prepare(
      "UPDATE notification_log SET outcome = 'expired' WHERE id = "
      "(SELECT max(id) FROM notification_log WHERE message_id = ?1 AND " +
      same_publisher + " AND node = ?3 AND outcome = 'queued')");
  if (!expire.ok()) return expire.status();
  const std::string_view node(node_);
  // The INSERT of 2^k rows is inserts[k], prepared when first needed: a
  // few shapes, each parsed at most once per flush.
  static_assert((kRowsPerInsert & (kRowsPerInsert - 1)) == 0);
  std::vector<std::optional<Statement>> inserts;
  for (size_t i = 0; i < batch.size();) {
    if (AddsARow(batch[i])) {
      // This event and the row events right after it: as many as the
      // largest shape that they fill.
      size_t run = 1;
      while (run < kRowsPerInsert && i + run < batch.size() &&
             AddsARow(batch[i + run])) {
        ++run;
      }
      size_t rows = 1;
      size_t shape = 0;
      while (rows * 2 <= run) {
        rows *= 2;
        ++shape;
      }
      if (inserts.size() <= shape) inserts.resize(shape + 1);
      std::optional<Statement>& insert = inserts[shape];
      if (!insert) {
        Result<Statement> prepared = db->Prepare(InsertSql(rows));
        if (!prepared.ok()) return prepared.status();
        insert.emplace(std::move(*prepared));
      }
      for (size_t row = 0; row < rows; ++row) {
        BindRow(&*insert, row, batch[i + row], node);
      }
      if (Status s = insert->Run(); !s.ok()) return s;
      i += rows;
      continue;
    }
    const DeliveryEvent& e = batch[i++];
    if (e.message_id.empty()) continue;
    Statement* stmt = nullptr;
    if (e.kind == DeliveryEvent::Kind::kAcked) {
      stmt = &*ack;
      stmt->Bind(1, std::string_view(e.message_id));
      BindText(stmt, 2, e.publisher);
      stmt->Bind(3, std::string_view(StampString(e.at_ms)))
          .Bind(4, e.latency_ms);
      BindText(stmt, 5, e.status);
      stmt->Bind(6, node);
    } else {  // kExpired
      stmt = &*expire;
      stmt->Bind(1, std::string_view(e.message_id));
      BindText(stmt, 2, e.publisher);
      stmt->Bind(3, node);
    }
    if (Status s = stmt->Run(); !s.ok()) return s;
  }
  return Trim(db);
}

Result<ChunkMark::Outcome> DeliveryLogWriter::Write(
    Database* db, int busy_timeout_ms,
    const std::vector<DeliveryEvent>& batch) {
  if (db == nullptr) {
    return Status::Error(RegistryLabel(path_) + " is not open");
  }
  db->SetBusyTimeout(busy_timeout_ms);
  Result<ChunkMark::Outcome> written =
      mark_.Write(db, [&] { return Apply(db, batch); });
  db->SetBusyTimeout(RegistryReloader::kBusyTimeoutMs);
  if (!written.ok()) {
    return Status::Error("cannot write notification_log: " +
                         written.status().message());
  }
  return written;
}

bool DeliveryLogWriter::Flush(Database* db, int busy_timeout_ms) {
  std::vector<DeliveryEvent> batch;
  {
    std::lock_guard<std::mutex> lock(mu_);
    // A chunk that failed is tried again as it was (ChunkMark's rule).
    const size_t events = std::min(
        pending_.size(), retry_events_ > 0 ? retry_events_ : kMaxFlushEvents);
    const auto end = pending_.begin() + static_cast<std::ptrdiff_t>(events);
    batch.assign(std::make_move_iterator(pending_.begin()),
                 std::make_move_iterator(end));
    pending_.erase(pending_.begin(), end);
  }
  if (dropped_.load() > dropped_logged_ && !dropping_) {
    log_->Push("delivery log: " + std::to_string(max_pending_) +
               " events wait to be written; newer events are dropped until "
               "writing catches up");
    dropping_ = true;
  }
  if (batch.empty()) return false;
  const int64_t start_us = clock_->MonotonicUs();
  Result<ChunkMark::Outcome> written = Write(db, busy_timeout_ms, batch);
  if (!written.ok()) {
    retry_events_ = batch.size();
    Restore(&batch);
    const std::string error = written.status().message();
    if (error != error_) log_->Push("delivery log flush delayed: " + error);
    error_ = error;
    return false;
  }
  retry_events_ = 0;
  if (*written == ChunkMark::Outcome::kAlreadyWritten) {
    log_->Push("delivery log: " + std::to_string(batch.size()) +
               " events whose commit was not confirmed had been written; "
               "not written again");
  }
  if (!error_.empty()) log_->Push("delivery log flush succeeded again");
  error_.clear();
  if (dropping_) {
    const uint64_t dropped = dropped_.load();
    log_->Push("delivery log: " + std::to_string(dropped - dropped_logged_) +
               " events were dropped while the pending events were full");
    dropped_logged_ = dropped;
    dropping_ = false;
  }
  last_flush_ms_.store((clock_->MonotonicUs() - start_us) / 1000);
  last_flush_rows_.store(static_cast<int64_t>(batch.size()));
  return true;
}

}  // namespace homepot
