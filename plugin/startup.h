// Builds the core as the plugin runs it: a RegistryWorker over the registry
// of config.db_path or config.db_url (its first snapshot loaded on the
// calling thread) as the Homepot's registry source. plugin.cc calls this at
// plugin init.
#ifndef HOMEPOT_PLUGIN_STARTUP_H_
#define HOMEPOT_PLUGIN_STARTUP_H_

#include <memory>

#include "broker.h"
#include "config.h"
#include "homepot.h"
#include "status.h"

namespace homepot {

// Errors are one line naming the registry (RegistryName: a URL masked).
// `broker` and `clock` outlive the result; `clock` is read by the broker thread
// and by the registry thread.
Result<std::unique_ptr<Homepot>> StartHomepot(const Config& config,
                                              Broker* broker, Clock* clock);

}  // namespace homepot

#endif  // HOMEPOT_PLUGIN_STARTUP_H_
