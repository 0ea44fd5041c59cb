#include "device_stats_writer.h"

#include <algorithm>
#include <string_view>

#include "registry_reloader.h"

namespace homepot {
namespace {

// Adds the counts of `from` to `into` and keeps the later times. Presence
// is left to the callers below.
void AddCounters(DeviceCounters* into, const DeviceCounters& from) {
  into->published += from.published;
  into->delivered += from.delivered;
  into->rejected += from.rejected;
  into->expired += from.expired;
  into->acked += from.acked;
  into->last_connect_ms = std::max(into->last_connect_ms, from.last_connect_ms);
  into->last_publish_ms = std::max(into->last_publish_ms, from.last_publish_ms);
  into->last_delivery_ms =
      std::max(into->last_delivery_ms, from.last_delivery_ms);
}

void TakePresence(DeviceCounters* into, const DeviceCounters& from) {
  into->sessions = from.sessions;
  into->subscribed = from.subscribed;
  into->presence_changed = true;
}

// Merges deltas made after those in `into`: their presence, when changed,
// replaces it.
void MergeLater(DeviceCounters* into, const DeviceCounters& later) {
  AddCounters(into, later);
  if (later.presence_changed) TakePresence(into, later);
}

// The time as stored in device_stats, NULL for "never".
void BindStamp(Statement* stmt, int index, int64_t ms) {
  if (ms == 0) {
    stmt->BindNull(index);
  } else {
    stmt->Bind(index, std::string_view(StampString(ms)));
  }
}

}  // namespace

DeviceStatsWriter::DeviceStatsWriter(std::string path, std::string node,
                                     Clock* clock, LogQueue* log)
    : path_(std::move(path)),
      node_(std::move(node)),
      clock_(clock),
      log_(log),
      mark_(node_, "device_stats") {}

bool DeviceStatsWriter::Submit(std::vector<DeviceStatsDelta>* batch) {
  std::unique_lock<std::mutex> lock(mu_, std::try_to_lock);
  if (!lock.owns_lock()) return false;
  for (DeviceStatsDelta& d : *batch) {
    MergeLater(&pending_[d.device_id], d.counters);
  }
  batch->clear();
  return true;
}

size_t DeviceStatsWriter::pending() {
  std::lock_guard<std::mutex> lock(mu_);
  return retry_.size() + round_.size() + pending_.size();
}

Status DeviceStatsWriter::Upsert(
    Database* db, bool reset_presence,
    const std::unordered_map<std::string, DeviceCounters>& batch) {
  if (reset_presence) {
    if (Status s = ResetPresenceRows(db); !s.ok()) return s;
  }
  Result<Statement> upsert = db->Prepare(
      // This node's row (?13). Only for devices still registered: a
      // removed device's statistics stay removed. Presence (?10, ?11) is
      // written only when it changed (?12 <> 0); otherwise the stored values
      // stay. The stored row's columns are named with the table (PostgreSQL
      // would find a bare name ambiguous beside excluded's).
      "INSERT INTO device_stats (device_id, node, published, delivered, "
      "rejected, last_connect, last_publish, last_delivery, expired, acked, "
      "sessions, subscribed) "
      "SELECT ?1, ?13, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11 WHERE EXISTS "
      "(SELECT 1 FROM devices WHERE device_id = ?1) "
      "ON CONFLICT (device_id, node) DO UPDATE SET "
      "published = device_stats.published + excluded.published, "
      "delivered = device_stats.delivered + excluded.delivered, "
      "rejected = device_stats.rejected + excluded.rejected, "
      "expired = device_stats.expired + excluded.expired, "
      "acked = device_stats.acked + excluded.acked, "
      "last_connect = coalesce(excluded.last_connect, "
      "device_stats.last_connect), "
      "last_publish = coalesce(excluded.last_publish, "
      "device_stats.last_publish), "
      "last_delivery = coalesce(excluded.last_delivery, "
      "device_stats.last_delivery), "
      "sessions = CASE WHEN ?12 <> 0 THEN excluded.sessions "
      "ELSE device_stats.sessions END, "
      "subscribed = CASE WHEN ?12 <> 0 THEN excluded.subscribed "
      "ELSE device_stats.subscribed END");
  if (!upsert.ok()) return upsert.status();
  for (const auto& [device_id, c] : batch) {
    upsert->Bind(1, std::string_view(device_id))
        .Bind(2, static_cast<int64_t>(c.published))
        .Bind(3, static_cast<int64_t>(c.delivered))
        .Bind(4, static_cast<int64_t>(c.rejected));
    BindStamp(&*upsert, 5, c.last_connect_ms);
    BindStamp(&*upsert, 6, c.last_publish_ms);
    BindStamp(&*upsert, 7, c.last_delivery_ms);
    upsert->Bind(8, static_cast<int64_t>(c.expired))
        .Bind(9, static_cast<int64_t>(c.acked))
        .Bind(10, c.presence_changed ? c.sessions : int64_t{0})
        .Bind(11, c.presence_changed ? c.subscribed : int64_t{0})
        .Bind(12, int64_t{c.presence_changed ? 1 : 0})
        .Bind(13, std::string_view(node_));
    if (Status s = upsert->Run(); !s.ok()) return s;
  }
  return Status::Ok();
}

Status DeviceStatsWriter::ResetPresenceRows(Database* db) {
  Result<Statement> reset = db->Prepare(
      "UPDATE device_stats SET sessions = 0, subscribed = 0 "
      "WHERE node = ?1 AND (sessions <> 0 OR subscribed <> 0)");
  if (!reset.ok()) return reset.status();
  reset->Bind(1, std::string_view(node_));
  return reset->Run();
}

bool DeviceStatsWriter::ResetPresence(Database* db, int busy_timeout_ms) {
  reset_pending_ = true;
  // A chunk being tried again goes as it was; the reset with the next one.
  while (Flush(db, busy_timeout_ms) && reset_pending_) {
  }
  return !reset_pending_;
}

Result<ChunkMark::Outcome> DeviceStatsWriter::Write(
    Database* db, int busy_timeout_ms, bool reset_presence,
    const std::unordered_map<std::string, DeviceCounters>& batch) {
  if (db == nullptr) {
    return Status::Error(RegistryLabel(path_) + " is not open");
  }
  db->SetBusyTimeout(busy_timeout_ms);
  Result<ChunkMark::Outcome> written =
      mark_.Write(db, [&] { return Upsert(db, reset_presence, batch); });
  db->SetBusyTimeout(RegistryReloader::kBusyTimeoutMs);
  if (!written.ok()) {
    return Status::Error("cannot write device_stats: " +
                         written.status().message());
  }
  return written;
}

bool DeviceStatsWriter::Flush(Database* db, int busy_timeout_ms) {
  std::unordered_map<std::string, DeviceCounters> batch;
  bool reset = reset_pending_;
  {
    std::lock_guard<std::mutex> lock(mu_);
    // A round takes every device waiting when it starts, and ends before
    // the next one: each waits at most one round, however many others keep
    // sending. A chunk that failed goes first, as it was.
    if (round_.empty()) round_.swap(pending_);
    if (retrying_) {
      batch.swap(retry_);
      reset = retry_reset_;
    } else if (round_.size() <= kMaxFlushDevices) {
      batch.swap(round_);
      // Room left: deltas that came since, merged after the round's.
      for (auto it = pending_.begin();
           it != pending_.end() && batch.size() < kMaxFlushDevices;) {
        MergeLater(&batch[it->first], it->second);
        it = pending_.erase(it);
      }
    } else {
      while (batch.size() < kMaxFlushDevices) {
        batch.insert(round_.extract(round_.begin()));
      }
    }
  }
  if (batch.empty() && !reset) return false;
  const int64_t start_us = clock_->MonotonicUs();
  Result<ChunkMark::Outcome> written = Write(db, busy_timeout_ms, reset, batch);
  if (!written.ok()) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      retry_.swap(batch);
    }
    retrying_ = true;
    retry_reset_ = reset;
    const std::string error = written.status().message();
    if (error != error_) log_->Push("device_stats flush delayed: " + error);
    error_ = error;
    return false;
  }
  if (*written == ChunkMark::Outcome::kAlreadyWritten) {
    log_->Push("device_stats: the counts of " + std::to_string(batch.size()) +
               " devices whose commit was not confirmed had been written; "
               "not added again");
  }
  if (!error_.empty()) log_->Push("device_stats flush succeeded again");
  error_.clear();
  retrying_ = false;
  if (reset) reset_pending_ = false;
  last_flush_ms_.store((clock_->MonotonicUs() - start_us) / 1000);
  last_flush_rows_.store(static_cast<int64_t>(batch.size()));
  return true;
}

}  // namespace homepot
