// Mosquitto entry points: declare the plugin API version, parse options,
// register callbacks. Each callback is a thin noexcept trampoline into
// Homepot; an exception never reaches the broker (it denies instead).
#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>

#include <exception>
#include <memory>

#include "broker_adapter.h"
#include "config.h"
#include "homepot.h"
#include "startup.h"

namespace {

using homepot::ClientInfo;
using homepot::Verdict;

struct PluginState {
  mosquitto_plugin_id_t* id = nullptr;
  homepot::MosquittoBroker broker;
  homepot::SystemClock clock;
  std::unique_ptr<homepot::Homepot> core;
};

ClientInfo ClientInfoOf(struct mosquitto* client) {
  ClientInfo info;
  info.handle = client;
  info.username = mosquitto_client_username(client);
  info.client_id = mosquitto_client_id(client);
  return info;
}

void LogException(const char* where) noexcept {
  try {
    throw;
  } catch (const std::exception& e) {
    mosquitto_log_printf(MOSQ_LOG_ERR, "homepot: %s failed: %s", where,
                         e.what());
  } catch (...) {
    mosquitto_log_printf(MOSQ_LOG_ERR, "homepot: %s failed", where);
  }
}

int OnBasicAuth(int, void* event_data, void* userdata) noexcept {
  try {
    auto* state = static_cast<PluginState*>(userdata);
    auto* ev = static_cast<mosquitto_evt_basic_auth*>(event_data);
    // The CONNECT's clean start flag is set before authentication.
    switch (state->core->OnBasicAuth(
        ClientInfoOf(ev->client), ev->username, ev->password,
        mosquitto_client_clean_session(ev->client),
        mosquitto_client_protocol_version(ev->client) == 5)) {
      case Verdict::kAllow:
        return MOSQ_ERR_SUCCESS;
      case Verdict::kDefer:
        return MOSQ_ERR_PLUGIN_DEFER;
      case Verdict::kDeny:
      case Verdict::kDisconnect:
        return MOSQ_ERR_AUTH;
    }
  } catch (...) {
    LogException("basic auth");
  }
  return MOSQ_ERR_AUTH;
}

int OnAclCheck(int, void* event_data, void* userdata) noexcept {
  try {
    auto* state = static_cast<PluginState*>(userdata);
    auto* ev = static_cast<mosquitto_evt_acl_check*>(event_data);
    if (ev->topic == nullptr) return MOSQ_ERR_ACL_DENIED;
    switch (state->core->OnAclCheck(ClientInfoOf(ev->client), ev->topic,
                                    ev->access, ev->payload, ev->payloadlen,
                                    ev->qos, ev->retain)) {
      case Verdict::kAllow:
        return MOSQ_ERR_SUCCESS;
      case Verdict::kDefer:
        return MOSQ_ERR_PLUGIN_DEFER;
      case Verdict::kDeny:
        return MOSQ_ERR_ACL_DENIED;
      case Verdict::kDisconnect:
        return MOSQ_ERR_AUTH;  // Mosquitto disconnects the client
    }
  } catch (...) {
    LogException("acl check");
  }
  return MOSQ_ERR_ACL_DENIED;
}

// Only MOSQ_ERR_ACL_DENIED refuses a single message; any other error would
// disconnect the publisher, so nothing else is ever returned.
int OnMessage(int, void* event_data, void* userdata) noexcept {
  try {
    auto* state = static_cast<PluginState*>(userdata);
    auto* ev = static_cast<mosquitto_evt_message*>(event_data);
    homepot::Message m;
    m.topic = ev->topic;
    m.payload = ev->payload;
    m.payloadlen = ev->payloadlen;
    m.qos = ev->qos;
    m.retain = ev->retain;
    Verdict v = state->core->OnMessage(ClientInfoOf(ev->client), &m);
    if (v == Verdict::kDeny) return MOSQ_ERR_ACL_DENIED;
    if (v == Verdict::kDisconnect) return MOSQ_ERR_AUTH;  // ends the session
    ev->payload = m.payload;  // the broker frees the old payload
    ev->payloadlen = m.payloadlen;
    // Mosquitto 2.0.11 copies it back to the stored message, which is kept
    // as retained only when it is still set.
    ev->retain = m.retain;
    return MOSQ_ERR_SUCCESS;
  } catch (...) {
    LogException("message");
  }
  return MOSQ_ERR_ACL_DENIED;
}

int OnTick(int, void*, void* userdata) noexcept {
  try {
    static_cast<PluginState*>(userdata)->core->OnTick();
  } catch (...) {
    LogException("tick");
  }
  return MOSQ_ERR_SUCCESS;
}

// Returns "defer": in Mosquitto 2.0 the first reload callback that returns
// anything else ends the reload for every plugin loaded after this one.
int OnReload(int, void*, void* userdata) noexcept {
  try {
    static_cast<PluginState*>(userdata)->core->OnReload();
  } catch (...) {
    LogException("reload");
  }
  return MOSQ_ERR_PLUGIN_DEFER;
}

int OnDisconnect(int, void* event_data, void* userdata) noexcept {
  try {
    auto* ev = static_cast<mosquitto_evt_disconnect*>(event_data);
    // The session may outlive the connection: MQTT v5 (whose session expiry
    // the plugin API does not show) or v3.1.1 without clean session.
    bool may_persist = mosquitto_client_protocol_version(ev->client) == 5 ||
                       !mosquitto_client_clean_session(ev->client);
    static_cast<PluginState*>(userdata)->core->OnDisconnect(
        ClientInfoOf(ev->client), may_persist);
  } catch (...) {
    LogException("disconnect");
  }
  return MOSQ_ERR_SUCCESS;
}

struct Registration {
  int event;
  MOSQ_FUNC_generic_callback callback;
};
constexpr Registration kCallbacks[] = {
    {MOSQ_EVT_BASIC_AUTH, OnBasicAuth}, {MOSQ_EVT_ACL_CHECK, OnAclCheck},
    {MOSQ_EVT_MESSAGE, OnMessage},      {MOSQ_EVT_TICK, OnTick},
    {MOSQ_EVT_RELOAD, OnReload},        {MOSQ_EVT_DISCONNECT, OnDisconnect},
};

}  // namespace

extern "C" {

__attribute__((visibility("default"))) int mosquitto_plugin_version(
    int supported_version_count, const int* supported_versions) {
  for (int i = 0; i < supported_version_count; ++i) {
    if (supported_versions[i] == 5) return 5;
  }
  return -1;
}

__attribute__((visibility("default"))) int mosquitto_plugin_init(
    mosquitto_plugin_id_t* identifier, void** userdata,
    struct mosquitto_opt* options, int option_count) {
  try {
    homepot::OptionList opts;
    for (int i = 0; i < option_count; ++i) {
      opts.emplace_back(options[i].key ? options[i].key : "",
                        options[i].value ? options[i].value : "");
    }
    auto config = homepot::ParseConfig(opts);
    if (!config.ok()) {
      mosquitto_log_printf(MOSQ_LOG_ERR, "homepot: %s",
                           config.status().message().c_str());
      return MOSQ_ERR_INVAL;
    }
    auto state = std::make_unique<PluginState>();
    state->id = identifier;
    auto core = homepot::StartHomepot(*config, &state->broker, &state->clock);
    if (!core.ok()) {
      mosquitto_log_printf(MOSQ_LOG_ERR, "homepot: %s",
                           core.status().message().c_str());
      return MOSQ_ERR_INVAL;
    }
    state->core = std::move(*core);
    for (const Registration& r : kCallbacks) {
      int rc = mosquitto_callback_register(identifier, r.event, r.callback,
                                           nullptr, state.get());
      if (rc != MOSQ_ERR_SUCCESS) {
        mosquitto_log_printf(MOSQ_LOG_ERR,
                             "homepot: cannot register callback %d: %s",
                             r.event, mosquitto_strerror(rc));
        for (const Registration& u : kCallbacks) {
          mosquitto_callback_unregister(identifier, u.event, u.callback,
                                        nullptr);
        }
        return rc;
      }
    }
    *userdata = state.release();
    return MOSQ_ERR_SUCCESS;
  } catch (...) {
    LogException("init");
    return MOSQ_ERR_UNKNOWN;
  }
}

__attribute__((visibility("default"))) int mosquitto_plugin_cleanup(
    void* userdata, struct mosquitto_opt*, int) {
  auto* state = static_cast<PluginState*>(userdata);
  if (state == nullptr) return MOSQ_ERR_SUCCESS;
  try {
    for (const Registration& r : kCallbacks) {
      mosquitto_callback_unregister(state->id, r.event, r.callback, nullptr);
    }
    delete state;
  } catch (...) {
    LogException("cleanup");
  }
  return MOSQ_ERR_SUCCESS;
}

}  // extern "C"
