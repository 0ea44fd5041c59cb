// The one adapter from the core's Broker interface to Mosquitto's plugin API.
#include "broker_adapter.h"

#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <openssl/x509.h>

namespace homepot {

void MosquittoBroker::Log(LogLevel level, const std::string& message) {
  int mosq_level = MOSQ_LOG_INFO;
  switch (level) {
    case LogLevel::kDebug:
      mosq_level = MOSQ_LOG_DEBUG;
      break;
    case LogLevel::kInfo:
      mosq_level = MOSQ_LOG_INFO;
      break;
    case LogLevel::kNotice:
      mosq_level = MOSQ_LOG_NOTICE;
      break;
    case LogLevel::kWarning:
      mosq_level = MOSQ_LOG_WARNING;
      break;
    case LogLevel::kError:
      mosq_level = MOSQ_LOG_ERR;
      break;
  }
  mosquitto_log_printf(mosq_level, "homepot: %s", message.c_str());
}

void MosquittoBroker::KickUsername(const std::string& username) {
  mosquitto_kick_client_by_username(username.c_str(), false);
}

void MosquittoBroker::KickClientId(const std::string& client_id) {
  mosquitto_kick_client_by_clientid(client_id.c_str(), false);
}

void MosquittoBroker::Publish(const std::string& topic,
                              std::string_view payload, int qos, bool retain) {
  mosquitto_broker_publish_copy(nullptr, topic.c_str(),
                                static_cast<int>(payload.size()),
                                payload.data(), qos, retain, nullptr);
}

Broker::Untracked MosquittoBroker::Classify(const void* handle) {
  const auto* client = static_cast<const struct mosquitto*>(handle);
  // The retained-source check runs on a zeroed stand-in context: no
  // protocol (src/retain.c).
  if (mosquitto_client_protocol_version(client) == 0) {
    return Untracked::kRetainCheck;
  }
  // mosquitto_client_certificate takes a reference (SSL_get_peer_certificate)
  // and is NULL once the connection's SSL object is gone.
  X509* cert = static_cast<X509*>(mosquitto_client_certificate(client));
  if (cert == nullptr) return Untracked::kClosed;
  X509_free(cert);
  return Untracked::kTlsSession;
}

void* MosquittoBroker::Alloc(size_t size) { return mosquitto_malloc(size); }

void MosquittoBroker::Free(void* ptr) { mosquitto_free(ptr); }

}  // namespace homepot
