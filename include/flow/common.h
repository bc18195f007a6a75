/*
 * libflow - common definitions: export macro, version, error codes, memory.
 *
 * Every libflow function returns 0 on success or a negative FLOW_E* code.
 * The codes are generated from one table (FLOW_ERRNO_MAP) so that the enum,
 * flow_strerror() and flow_err_name() can never disagree.  Codes are
 * appended, never renumbered: hosts may store them.
 */
#ifndef FLOW_COMMON_H
#define FLOW_COMMON_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * FLOW_EXTERN marks the public functions.  On Windows it depends on which
 * side of the DLL the code is: the build of the shared library defines
 * FLOW_BUILDING_SHARED (dllexport); a host that links the shared library
 * defines FLOW_SHARED (dllimport; the CMake target libflow::flow does this
 * for its users); a host that links the static library defines neither.
 * Elsewhere the library is compiled with hidden visibility and FLOW_EXTERN
 * shows only these functions, whatever is defined.
 */
#if defined(_WIN32) || defined(__CYGWIN__)
#if defined(FLOW_BUILDING_SHARED)
#define FLOW_EXTERN __declspec(dllexport)
#elif defined(FLOW_SHARED)
#define FLOW_EXTERN __declspec(dllimport)
#else
#define FLOW_EXTERN
#endif
#elif defined(__GNUC__) && __GNUC__ >= 4
#define FLOW_EXTERN __attribute__((visibility("default")))
#else
#define FLOW_EXTERN
#endif

#define FLOW_VERSION_MAJOR 0
#define FLOW_VERSION_MINOR 1
#define FLOW_VERSION_PATCH 0
#define FLOW_VERSION_STRING "0.1.0"
/* A single number that grows with each release: 0x00MMmmpp. */
#define FLOW_VERSION_NUMBER                                                    \
  ((FLOW_VERSION_MAJOR << 16) | (FLOW_VERSION_MINOR << 8) | FLOW_VERSION_PATCH)

/*
 * The error table: XX(name, number, description).  A refusal that a script
 * author or a caller can cause has its own code so that hosts (and the
 * `flow` command's exit codes) can tell them apart.
 */
#define FLOW_ERRNO_MAP(XX)                                                     \
  XX(ERROR, -1, "internal error")                                              \
  XX(ENOMEM, -2, "out of memory")                                              \
  XX(EINVAL, -3, "invalid argument or input")                                  \
  XX(ENOTFOUND, -4, "not found")                                               \
  XX(EEXIST, -5, "already exists with different content")                      \
  XX(ESCRIPT, -6, "service script error")                                      \
  XX(ELIMIT, -7, "script budget exceeded")                                     \
  XX(EDATA, -8, "case data failed validation")                                 \
  XX(EEVENT, -9, "event not accepted in the current state")                    \
  XX(EPERM, -10, "actor lacks a required role")                                \
  XX(ESTATE, -11, "unknown target state")                                      \
  XX(EREFUSED, -12, "refused by the service")                                  \
  XX(ECLOSED, -13, "case is closed")                                           \
  XX(EIO, -14, "storage failure")                                              \
  XX(EBUSY, -15, "storage busy")                                               \
  XX(EMISUSE, -16, "library misuse")                                           \
  XX(ECANCELED, -17, "cancelled before it was carried out")                    \
  XX(ECONFLICT, -18, "already finished or taken by someone else")

typedef enum flow_errno {
  FLOW_OK = 0,
#define FLOW__ERRNO_ENUM(name, num, desc) FLOW_##name = (num),
  FLOW_ERRNO_MAP(FLOW__ERRNO_ENUM)
#undef FLOW__ERRNO_ENUM
} flow_errno;

/*
 * A short English description of an error code ("out of memory").  Unknown
 * codes give "unknown error".  The string is static.
 */
FLOW_EXTERN const char *flow_strerror(int err);

/*
 * The symbolic name of an error code without prefix, as used in JSON error
 * objects ("FLOW_ENOMEM").  Unknown codes give "FLOW_EUNKNOWN".  Static.
 */
FLOW_EXTERN const char *flow_err_name(int err);

/* FLOW_VERSION_STRING of the library actually linked. */
FLOW_EXTERN const char *flow_version(void);

/*
 * Allocator in the shape of lua_Alloc: with nsize == 0 free ptr and return
 * NULL; otherwise behave like realloc(ptr, nsize), where osize is the size
 * previously given for ptr (or, when ptr is NULL, a hint).  Returning NULL
 * for nsize > 0 is an allocation failure, which libflow reports as
 * FLOW_ENOMEM without crashing or leaking.  The engine uses it for its own
 * memory and for every Lua state, so script memory is counted by the same
 * accounting.  (SQLite and Jansson keep their process-wide allocators:
 * changing them would change them for the whole host process.)
 */
typedef void *(*flow_alloc_fn)(void *payload, void *ptr, size_t osize,
                               size_t nsize);

/*
 * Frees a string or buffer that a libflow function returned as owned
 * ("free with flow_free").  Accepts NULL.
 */
FLOW_EXTERN void flow_free(void *ptr);

#ifdef __cplusplus
}
#endif
#endif /* FLOW_COMMON_H */
