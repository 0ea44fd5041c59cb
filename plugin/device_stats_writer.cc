#include "device_stats_writer.h"

#include <sqlite3.h>

#include <algorithm>

namespace homepot {
namespace {

void MergeCounters(DeviceCounters* into, const DeviceCounters& from) {
  into->published += from.published;
  into->delivered += from.delivered;
  into->rejected += from.rejected;
  into->last_connect_ms = std::max(into->last_connect_ms, from.last_connect_ms);
  into->last_publish_ms = std::max(into->last_publish_ms, from.last_publish_ms);
  into->last_delivery_ms =
      std::max(into->last_delivery_ms, from.last_delivery_ms);
}

void BindStamp(sqlite3_stmt* stmt, int index, int64_t ms) {
  if (ms == 0) {
    sqlite3_bind_null(stmt, index);
  } else {
    std::string stamp = StampString(ms);
    sqlite3_bind_text(stmt, index, stamp.data(), static_cast<int>(stamp.size()),
                      SQLITE_TRANSIENT);
  }
}

}  // namespace

DeviceStatsWriter::DeviceStatsWriter(std::string path, Clock* clock,
                                     LogQueue* log)
    : path_(std::move(path)), clock_(clock), log_(log) {}

bool DeviceStatsWriter::Submit(std::vector<DeviceStatsDelta>* batch) {
  std::unique_lock<std::mutex> lock(mu_, std::try_to_lock);
  if (!lock.owns_lock()) return false;
  for (DeviceStatsDelta& d : *batch) {
    MergeCounters(&pending_[d.device_id], d.counters);
  }
  batch->clear();
  return true;
}

Status DeviceStatsWriter::Write(
    sqlite3* db, int busy_timeout_ms,
    const std::unordered_map<std::string, DeviceCounters>& batch) {
  if (db == nullptr) {
    return Status::Error("registry file " + path_ + " is not open");
  }
  sqlite3_busy_timeout(db, busy_timeout_ms);
  sqlite3_stmt* stmt = nullptr;
  bool ok =
      sqlite3_exec(db, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr) ==
          SQLITE_OK &&
      sqlite3_prepare_v2(
          db,
          // Only for devices still registered: a removed device's
          // statistics stay removed.
          "INSERT INTO device_stats (device_id, published, delivered, "
          "rejected, last_connect, last_publish, last_delivery) "
          "SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7 WHERE EXISTS "
          "(SELECT 1 FROM devices WHERE device_id = ?1) "
          "ON CONFLICT (device_id) DO UPDATE SET "
          "published = published + excluded.published, "
          "delivered = delivered + excluded.delivered, "
          "rejected = rejected + excluded.rejected, "
          "last_connect = coalesce(excluded.last_connect, last_connect), "
          "last_publish = coalesce(excluded.last_publish, last_publish), "
          "last_delivery = coalesce(excluded.last_delivery, last_delivery)",
          -1, &stmt, nullptr) == SQLITE_OK;
  for (auto it = batch.begin(); ok && it != batch.end(); ++it) {
    const DeviceCounters& c = it->second;
    sqlite3_bind_text(stmt, 1, it->first.data(),
                      static_cast<int>(it->first.size()), SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 2, static_cast<int64_t>(c.published));
    sqlite3_bind_int64(stmt, 3, static_cast<int64_t>(c.delivered));
    sqlite3_bind_int64(stmt, 4, static_cast<int64_t>(c.rejected));
    BindStamp(stmt, 5, c.last_connect_ms);
    BindStamp(stmt, 6, c.last_publish_ms);
    BindStamp(stmt, 7, c.last_delivery_ms);
    ok = sqlite3_step(stmt) == SQLITE_DONE;
    sqlite3_reset(stmt);
  }
  if (ok) {
    ok = sqlite3_exec(db, "COMMIT", nullptr, nullptr, nullptr) == SQLITE_OK;
  }
  std::string error;
  if (!ok)
    error = std::string("cannot write device_stats: ") + sqlite3_errmsg(db);
  sqlite3_finalize(stmt);
  if (!ok) sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
  sqlite3_busy_timeout(db, 2000);
  return ok ? Status::Ok() : Status::Error(error);
}

bool DeviceStatsWriter::Flush(sqlite3* db, int busy_timeout_ms) {
  std::unordered_map<std::string, DeviceCounters> batch;
  {
    std::lock_guard<std::mutex> lock(mu_);
    batch.swap(pending_);
  }
  if (batch.empty()) return false;
  const int64_t start_us = clock_->MonotonicUs();
  Status written = Write(db, busy_timeout_ms, batch);
  if (!written.ok()) {
    {
      // Keep the counts for the next attempt.
      std::lock_guard<std::mutex> lock(mu_);
      for (auto& [id, c] : batch) MergeCounters(&pending_[id], c);
    }
    if (written.message() != error_) {
      log_->Push("device_stats flush delayed: " + written.message());
    }
    error_ = written.message();
    return false;
  }
  if (!error_.empty()) log_->Push("device_stats flush succeeded again");
  error_.clear();
  last_flush_ms_.store((clock_->MonotonicUs() - start_us) / 1000);
  last_flush_rows_.store(static_cast<int64_t>(batch.size()));
  return true;
}

}  // namespace homepot
