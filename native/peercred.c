// peercred: the credentials (pid, uid, gid) of the process at the other end of a unix
// domain socket, read with getsockopt(SO_PEERCRED). Node has no API for it; the listen mode
// (src/transport/listener.ts) refuses clients of other users with it.
//
// Node-API (node_api.h) only: the one build loads in every Node version (no ABI tie), in
// the single binary too (src/native/addons.ts).
#define _GNU_SOURCE
#define NAPI_VERSION 4
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <node_api.h>

#define CHECK(env, call)                                                   \
  do {                                                                     \
    if ((call) != napi_ok) {                                               \
      napi_throw_error((env), NULL, "peercred: Node-API call failed");     \
      return NULL;                                                         \
    }                                                                      \
  } while (0)

static napi_value set_int(napi_env env, napi_value obj, const char* name, int64_t v) {
  napi_value n;
  if (napi_create_int64(env, v, &n) != napi_ok) return NULL;
  if (napi_set_named_property(env, obj, name, n) != napi_ok) return NULL;
  return obj;
}

// peercred(fd) -> { pid, uid, gid }; throws an Error with .code (e.g. "ENOTSOCK") on failure.
static napi_value peercred(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t fd = -1;
  if (argc < 1 || napi_get_value_int32(env, argv[0], &fd) != napi_ok || fd < 0) {
    napi_throw_type_error(env, NULL, "peercred(fd): fd must be a non-negative integer");
    return NULL;
  }
  struct ucred cred;
  socklen_t len = sizeof cred;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 || len != sizeof cred) {
    int err = len != sizeof cred ? EINVAL : errno;
    const char* code = err == ENOTSOCK ? "ENOTSOCK" : err == EBADF ? "EBADF" : err == ENOPROTOOPT ? "ENOPROTOOPT" : "EINVAL";
    if (err != ENOTSOCK && err != EBADF && err != ENOPROTOOPT && err != EINVAL) code = "EUNKNOWN";
    napi_throw_error(env, code, strerror(err));
    return NULL;
  }
  napi_value out;
  CHECK(env, napi_create_object(env, &out));
  if (!set_int(env, out, "pid", cred.pid) || !set_int(env, out, "uid", cred.uid) || !set_int(env, out, "gid", cred.gid)) {
    napi_throw_error(env, NULL, "peercred: Node-API call failed");
    return NULL;
  }
  return out;
}

NAPI_MODULE_INIT() {
  napi_value fn;
  if (napi_create_function(env, "peercred", NAPI_AUTO_LENGTH, peercred, NULL, &fn) != napi_ok) return NULL;
  if (napi_set_named_property(env, exports, "peercred", fn) != napi_ok) return NULL;
  return exports;
}
