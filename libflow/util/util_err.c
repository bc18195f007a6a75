/*
 * Error codes and messages.  The code table is FLOW_ERRNO_MAP in
 * <flow/common.h>; the message for the last failure lives in a flow__err
 * owned by whoever reports it (the engine keeps one for flow_errmsg()).
 */
#include "util.h"

#include <stdio.h>
#include <string.h>

const char *
flow_strerror(int err)
{
  switch (err) {
  case FLOW_OK:
    return "success";
#define XX(name, num, desc)                                                    \
  case FLOW_##name:                                                            \
    return desc;
    FLOW_ERRNO_MAP(XX)
#undef XX
  }
  return "unknown error";
}

const char *
flow_err_name(int err)
{
  switch (err) {
  case FLOW_OK:
    return "FLOW_OK";
#define XX(name, num, desc)                                                    \
  case FLOW_##name:                                                            \
    return "FLOW_" #name;
    FLOW_ERRNO_MAP(XX)
#undef XX
  }
  return "FLOW_EUNKNOWN";
}

const char *
flow_version(void)
{
  return FLOW_VERSION_STRING;
}

int
flow__err_script_size(flow__err *err, const char *chunk, size_t len)
{
  return flow__err_set(err, FLOW_ESCRIPT,
                       "%s:1: the script is %zu KiB; a service script may "
                       "be at most %zu KiB (keep big tables of data out of "
                       "the script)",
                       chunk, (len + 1023) / 1024,
                       (size_t)FLOW__MAX_SCRIPT / 1024);
}

int
flow__err_setv(flow__err *err, int code, const char *fmt, va_list ap)
{
  if (err == NULL)
    return code;
  err->code = code;
  int n = vsnprintf(err->msg, sizeof err->msg, fmt, ap);
  if (n < 0)
    snprintf(err->msg, sizeof err->msg, "%s", flow_strerror(code));
  flow__utf8_fix(err->msg);
  return code;
}

int
flow__err_set(flow__err *err, int code, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  flow__err_setv(err, code, fmt, ap);
  va_end(ap);
  return code;
}

void
flow__err_clear(flow__err *err)
{
  err->code = 0;
  err->msg[0] = 0;
}
