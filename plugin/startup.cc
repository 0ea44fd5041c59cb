#include "startup.h"

#include "registry_worker.h"

namespace homepot {

Result<std::unique_ptr<Homepot>> StartHomepot(const Config& config,
                                              Broker* broker, Clock* clock) {
  const int64_t started_ms = clock->MonotonicMs();  // before the first load
  auto worker = std::make_unique<RegistryWorker>(
      RegistryLocation(config), config.node_id, config.reload_interval_ms,
      DeliveryLogRetention{config.log_retention_rows,
                           config.log_retention_days},
      clock);
  auto first = worker->Start();
  if (!first.ok()) return first.status();
  return Homepot::Create(config, broker, clock, std::move(worker),
                         std::move(*first), started_ms);
}

}  // namespace homepot
