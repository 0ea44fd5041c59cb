// Broker implemented with the mosquitto_* plugin API (broker_adapter.cc).
#ifndef HOMEPOT_PLUGIN_BROKER_ADAPTER_H_
#define HOMEPOT_PLUGIN_BROKER_ADAPTER_H_

#include "broker.h"

namespace homepot {

class MosquittoBroker : public Broker {
 public:
  void Log(LogLevel level, const std::string& message) override;
  void KickUsername(const std::string& username) override;
  void KickClientId(const std::string& client_id) override;
  void Publish(const std::string& topic, std::string_view payload, int qos,
               bool retain) override;
  Untracked Classify(const void* handle) override;
  void* Alloc(size_t size) override;
  void Free(void* ptr) override;
};

}  // namespace homepot

#endif  // HOMEPOT_PLUGIN_BROKER_ADAPTER_H_
