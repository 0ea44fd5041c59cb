// homepot-admin log and delivery: the delivery log (notification_log) as
// rows, and summed up per target device.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "admin/commands.h"
#include "rfc3339.h"

namespace homepot::admin::internal {
namespace {

using nlohmann::ordered_json;

constexpr int64_t kDefaultLimit = 100;
constexpr int64_t kMaxLimit = 1000000000;

// --since as an RFC 3339 time or a date (YYYY-MM-DD, midnight UTC).
std::optional<int64_t> ParseSinceTime(std::string_view text) {
  return text.size() == 10 ? ParseRfc3339Ms(std::string(text) + "T00:00:00Z")
                           : ParseRfc3339Ms(text);
}

// --since: an RFC 3339 time, or a duration back from now (ParseDuration).
// The cutoff as stored text.
Result<std::string> ParseSince(const Context& ctx, std::string_view text) {
  if (std::optional<int64_t> at = ParseSinceTime(text)) return StampString(*at);
  Result<int64_t> seconds = ParseDuration("--since", text);
  if (!seconds.ok()) {
    return Status::Error("invalid --since " + Quote(text) +
                         ": expected an RFC 3339 time "
                         "(2026-11-18T08:00:00Z) or a duration (30m, 12h, "
                         "7d)");
  }
  return StampString(NowMs(ctx) - *seconds * 1000);
}

// --limit: 1..kMaxLimit.
Result<int64_t> ParseLimit(std::string_view text) {
  int64_t value = 0;
  const bool digits = !text.empty() && text.size() <= 10 &&
                      std::all_of(text.begin(), text.end(),
                                  [](char c) { return c >= '0' && c <= '9'; });
  if (digits) {
    for (const char c : text) value = value * 10 + (c - '0');
  }
  if (!digits || value < 1 || value > kMaxLimit) {
    return Status::Error("invalid --limit " + Quote(text) +
                         ": expected an integer from 1 to " +
                         std::to_string(kMaxLimit));
  }
  return value;
}

ordered_json TextOrNull(const Statement& stmt, int column) {
  return stmt.IsNull(column) ? ordered_json(nullptr)
                             : ordered_json(stmt.Text(column));
}

ordered_json IntOrNull(const Statement& stmt, int column) {
  return stmt.IsNull(column) ? ordered_json(nullptr)
                             : ordered_json(stmt.Int(column));
}

std::string Cell(const Statement& stmt, int column) {
  return stmt.IsNull(column) ? "-" : Printable(stmt.Text(column));
}

void PrintJson(Context* ctx, const ordered_json& value) {
  ctx->out << value.dump(2, ' ', false, ordered_json::error_handler_t::replace)
           << "\n";
}

// Per-device (or total) figures of `delivery`.
struct Delivery {
  int64_t notifications = 0;
  int64_t routed = 0;
  int64_t queued = 0;
  int64_t expired = 0;
  int64_t unreachable = 0;
  int64_t acked = 0;
  int64_t rejected = 0;
  std::vector<int64_t> latencies;  // of acked rows

  void Add(const std::string& outcome, const std::optional<int64_t>& latency) {
    if (outcome == "rejected") {
      ++rejected;
      return;
    }
    ++notifications;
    if (outcome == "routed") ++routed;
    if (outcome == "queued") ++queued;
    if (outcome == "expired") ++expired;
    if (outcome == "unreachable") ++unreachable;
    if (outcome == "acked") {
      ++acked;
      if (latency) latencies.push_back(*latency);
    }
  }

  std::optional<double> Rate() const {
    if (notifications == 0) return std::nullopt;
    return static_cast<double>(routed + acked) /
           static_cast<double>(notifications);
  }

  // Nearest rank: the smallest latency with at least p% of them at or below
  // it. Sorts `latencies`.
  std::optional<int64_t> Percentile(int p) {
    if (latencies.empty()) return std::nullopt;
    std::sort(latencies.begin(), latencies.end());
    const size_t n = latencies.size();
    const size_t rank = (static_cast<size_t>(p) * n + 99) / 100;  // ceil
    return latencies[std::max<size_t>(rank, 1) - 1];
  }

  ordered_json Json(const std::optional<std::string>& device) {
    ordered_json j;
    if (device) j["device_id"] = *device;
    j["notifications"] = notifications;
    j["routed"] = routed;
    j["queued"] = queued;
    j["expired"] = expired;
    j["unreachable"] = unreachable;
    j["acked"] = acked;
    j["rejected"] = rejected;
    const std::optional<double> rate = Rate();
    j["delivery_rate"] = rate ? ordered_json(*rate) : ordered_json(nullptr);
    const std::optional<int64_t> p50 = Percentile(50);
    const std::optional<int64_t> p99 = Percentile(99);
    j["p50_ack_ms"] = p50 ? ordered_json(*p50) : ordered_json(nullptr);
    j["p99_ack_ms"] = p99 ? ordered_json(*p99) : ordered_json(nullptr);
    return j;
  }

  std::vector<std::string> Cells(std::string label) {
    const std::optional<double> rate = Rate();
    std::string rate_text = "-";
    if (rate) {
      char buf[16];
      std::snprintf(buf, sizeof buf, "%.1f%%", *rate * 100);
      rate_text = buf;
    }
    const auto ms = [](const std::optional<int64_t>& v) {
      return v ? std::to_string(*v) : std::string("-");
    };
    return {std::move(label),
            std::to_string(notifications),
            std::to_string(routed),
            std::to_string(queued),
            std::to_string(expired),
            std::to_string(unreachable),
            std::to_string(acked),
            std::to_string(rejected),
            rate_text,
            ms(Percentile(50)),
            ms(Percentile(99))};
  }
};

}  // namespace

Status RunLog(Context* ctx, const std::vector<std::string>& words) {
  Result<CommandLine> line = ParseCommandLine(
      ctx, "log", words,
      {{"--device", "--message", "--node", "--since", "--limit"}, {"--json"}});
  if (!line.ok()) return line.status();
  if (Status s = ExpectPositionals(ctx, "log", *line, {}); !s.ok()) return s;
  const std::optional<std::string> device = line->Get("--device");
  if (device) {
    if (Status s = ValidateDeviceId(*device); !s.ok()) return s;
  }
  const std::optional<std::string> message = line->Get("--message");
  const std::optional<std::string> node = line->Get("--node");
  std::optional<std::string> since;
  if (std::optional<std::string> text = line->Get("--since")) {
    Result<std::string> cutoff = ParseSince(*ctx, *text);
    if (!cutoff.ok()) return cutoff.status();
    since = *cutoff;
  }
  int64_t limit = kDefaultLimit;
  if (std::optional<std::string> text = line->Get("--limit")) {
    Result<int64_t> parsed = ParseLimit(*text);
    if (!parsed.ok()) return parsed.status();
    limit = *parsed;
  }

  Result<Database> db = OpenRegistry(ctx, Database::Mode::kReadOnly);
  if (!db.ok()) return db.status();
  Result<Statement> stmt = db->Prepare(
      "SELECT id, received_at, outcome, message_id, publisher, topic, "
      "target_device, routed, queued, expires_at, acked_at, latency_ms, "
      "status, reason, node FROM notification_log "
      "WHERE (CAST(?1 AS TEXT) IS NULL OR target_device = ?1 "
      "OR publisher = ?1) "
      "AND (CAST(?2 AS TEXT) IS NULL OR message_id = ?2) "
      "AND (CAST(?3 AS TEXT) IS NULL OR received_at >= ?3) "
      "AND (CAST(?5 AS TEXT) IS NULL OR node = ?5) "
      "ORDER BY id DESC LIMIT ?4");
  if (!stmt.ok()) return DbError("reading the delivery log", stmt.status());
  stmt->BindOptional(1, device)
      .BindOptional(2, message)
      .BindOptional(3, since)
      .Bind(4, limit)
      .BindOptional(5, node);

  const bool json = line->Has("--json");
  ordered_json list = ordered_json::array();
  std::vector<std::vector<std::string>> rows;
  for (;;) {
    Result<bool> row = stmt->Step();
    if (!row.ok()) return DbError("reading the delivery log", row.status());
    if (!*row) break;
    if (json) {
      ordered_json item;
      item["id"] = stmt->Int(0);
      item["received_at"] = stmt->Text(1);
      item["outcome"] = stmt->Text(2);
      item["message_id"] = TextOrNull(*stmt, 3);
      item["publisher"] = TextOrNull(*stmt, 4);
      item["topic"] = stmt->Text(5);
      item["target_device"] = TextOrNull(*stmt, 6);
      item["routed"] = stmt->Int(7);
      item["queued"] = stmt->Int(8);
      item["expires_at"] = TextOrNull(*stmt, 9);
      item["acked_at"] = TextOrNull(*stmt, 10);
      item["latency_ms"] = IntOrNull(*stmt, 11);
      item["status"] = TextOrNull(*stmt, 12);
      item["reason"] = TextOrNull(*stmt, 13);
      item["node"] = stmt->Text(14);
      list.push_back(std::move(item));
    } else {
      // The status of an ack, or the reason of a refusal.
      const int detail = stmt->IsNull(12) ? 13 : 12;
      rows.push_back(
          {Cell(*stmt, 1), Cell(*stmt, 2), Cell(*stmt, 3), Cell(*stmt, 4),
           Cell(*stmt, 6), std::to_string(stmt->Int(7)),
           std::to_string(stmt->Int(8)), Cell(*stmt, 11), Cell(*stmt, detail),
           NodeCell(stmt->Text(14)), Cell(*stmt, 5)});
    }
  }
  if (json) {
    PrintJson(ctx, list);
  } else {
    PrintTable(ctx->out,
               {"RECEIVED_AT", "OUTCOME", "MESSAGE_ID", "PUBLISHER", "TARGET",
                "ROUTED", "QUEUED", "LATENCY_MS", "DETAIL", "NODE", "TOPIC"},
               rows);
  }
  return Status::Ok();
}

Status RunDelivery(Context* ctx, const std::vector<std::string>& words) {
  Result<CommandLine> line = ParseCommandLine(
      ctx, "delivery", words, {{"--since", "--node"}, {"--json"}});
  if (!line.ok()) return line.status();
  if (Status s = ExpectPositionals(ctx, "delivery", *line, {}); !s.ok()) {
    return s;
  }
  std::optional<std::string> since;
  if (std::optional<std::string> text = line->Get("--since")) {
    Result<std::string> cutoff = ParseSince(*ctx, *text);
    if (!cutoff.ok()) return cutoff.status();
    since = *cutoff;
  }

  Result<Database> db = OpenRegistry(ctx, Database::Mode::kReadOnly);
  if (!db.ok()) return db.status();
  // Every node's rows, or those of --node.
  Result<Statement> stmt = db->Prepare(
      "SELECT target_device, outcome, latency_ms FROM notification_log "
      "WHERE (CAST(?1 AS TEXT) IS NULL OR received_at >= ?1) "
      "AND (CAST(?2 AS TEXT) IS NULL OR node = ?2)");
  if (!stmt.ok()) return DbError("reading the delivery log", stmt.status());
  stmt->BindOptional(1, since).BindOptional(2, line->Get("--node"));
  std::map<std::string, Delivery> devices;
  Delivery total;
  for (;;) {
    Result<bool> row = stmt->Step();
    if (!row.ok()) return DbError("reading the delivery log", row.status());
    if (!*row) break;
    const std::string outcome = stmt->Text(1);
    const std::optional<int64_t> latency =
        stmt->IsNull(2) ? std::nullopt : std::optional<int64_t>(stmt->Int(2));
    total.Add(outcome, latency);
    if (!stmt->IsNull(0)) devices[stmt->Text(0)].Add(outcome, latency);
  }

  if (line->Has("--json")) {
    ordered_json result;
    result["devices"] = ordered_json::array();
    for (auto& [id, figures] : devices) {
      result["devices"].push_back(figures.Json(id));
    }
    result["total"] = total.Json(std::nullopt);
    PrintJson(ctx, result);
    return Status::Ok();
  }
  std::vector<std::vector<std::string>> rows;
  for (auto& [id, figures] : devices) {
    rows.push_back(figures.Cells(Printable(id)));
  }
  rows.push_back(total.Cells("(total)"));
  PrintTable(
      ctx->out,
      {"DEVICE", "NOTIFICATIONS", "ROUTED", "QUEUED", "EXPIRED", "UNREACHABLE",
       "ACKED", "REJECTED", "DELIVERY_RATE", "P50_MS", "P99_MS"},
      rows);
  return Status::Ok();
}

}  // namespace homepot::admin::internal
