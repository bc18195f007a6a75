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

/*
 * Messages end up in JSON (flow run, bindings) and in terminals, so they
 * must be UTF-8 even when they quote what a script or caller sent.  Bytes
 * that do not form valid UTF-8 become '?' in place (also a sequence that
 * truncation cut in half).
 */
void
flow__utf8_fix(char *s)
{
  unsigned char *p = (unsigned char *)s;
  while (*p) {
    int n = *p < 0x80                ? 0
            : (*p & 0xE0) == 0xC0    ? 1
            : (*p & 0xF0) == 0xE0    ? 2
            : (*p & 0xF8) == 0xF0    ? 3
                                     : -1;
    int ok = n >= 0 && !(n == 1 && *p < 0xC2);
    uint32_t c = ok && n ? (uint32_t)(*p & (0x3F >> n)) : *p;
    for (int i = 1; ok && i <= n; i++) {
      if ((p[i] & 0xC0) != 0x80)
        ok = 0;
      else
        c = (c << 6) | (p[i] & 0x3F);
    }
    if (ok && ((n == 2 && (c < 0x800 || (c >= 0xD800 && c <= 0xDFFF))) ||
               (n == 3 && (c < 0x10000 || c > 0x10FFFF))))
      ok = 0;
    if (!ok) {
      *p++ = '?';
      continue;
    }
    p += n + 1;
  }
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
