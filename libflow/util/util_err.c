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

size_t
flow__utf8_char(const unsigned char *p, const unsigned char *e)
{
  if (p >= e)
    return 0;
  unsigned c = *p;
  if (c < 0x80)
    return 1;
  size_t n;
  unsigned cp, min;
  if (c >= 0xc2 && c <= 0xdf)
    n = 1, cp = c & 0x1f, min = 0x80;
  else if (c >= 0xe0 && c <= 0xef)
    n = 2, cp = c & 0x0f, min = 0x800;
  else if (c >= 0xf0 && c <= 0xf4)
    n = 3, cp = c & 0x07, min = 0x10000;
  else
    return 0;
  if ((size_t)(e - p) <= n)
    return 0;
  for (size_t i = 1; i <= n; i++) {
    if ((p[i] & 0xc0) != 0x80)
      return 0;
    cp = (cp << 6) | (p[i] & 0x3f);
  }
  if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
    return 0;
  return n + 1;
}

int
flow__utf8_valid(const char *s, size_t len)
{
  const unsigned char *p = (const unsigned char *)s, *e = p + len;
  while (p < e) {
    if (*p < 0x80) { /* the common case, without the call */
      p++;
      continue;
    }
    size_t n = flow__utf8_char(p, e);
    if (n == 0)
      return 0;
    p += n;
  }
  return 1;
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
  unsigned char *p = (unsigned char *)s, *e = p + strlen(s);
  while (p < e) {
    size_t n = flow__utf8_char(p, e);
    if (n == 0) {
      *p++ = '?';
      continue;
    }
    p += n;
  }
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
