/* Error strings and names from the one table in wsmux.h; the version. */
#include "wsmux.h"

const char *ws_strerror(int err) {
  switch (err) {
  case WS_OK: return "success";
#define WS__ERR_MSG(name, value, msg) \
  case WS_E##name: return msg;
    WS_ERRNO_MAP(WS__ERR_MSG)
#undef WS__ERR_MSG
  default: return "unknown error";
  }
}

const char *ws_err_name(int err) {
  switch (err) {
  case WS_OK: return "WS_OK";
#define WS__ERR_NAME(name, value, msg) \
  case WS_E##name: return "WS_E" #name;
    WS_ERRNO_MAP(WS__ERR_NAME)
#undef WS__ERR_NAME
  default: return "WS_UNKNOWN";
  }
}

const char *ws_version(void) { return WS_VERSION; }
