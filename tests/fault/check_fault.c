/*
 * Fault injection: a disk that fails and an allocator that runs out, at
 * every point of a whole session, through the public API.
 *
 * Storage faults come from a SQLite VFS shim registered as the default VFS
 * before the engine opens: it wraps the real default VFS and, once armed,
 * fails the Nth write (SQLITE_IOERR_WRITE), the Nth fsync
 * (SQLITE_IOERR_FSYNC) or reports a full disk (SQLITE_FULL) at the Nth
 * write.  A sticky fault keeps failing every later operation of its kind
 * until the test clears it, like a disk that stays full; a one-shot fault
 * fails only the Nth.  For every N over a session on a file database with
 * synchronous=FULL (open the engine, load a service, open a case, three
 * events) the call that hits the fault must return FLOW_EIO (FLOW_ENOMEM
 * only if SQLite itself says NOMEM) with a message that says what happened
 * (a full disk says so), leave the services, cases, histories and timers
 * exactly as before the call (read back through the API once the fault is
 * cleared), and succeed when retried.  Each session ends by comparing
 * everything with a session that met no fault.  The shim counts fsyncs but
 * does not perform them: these tests are about error paths, not power
 * loss, and an fsync on the build machine's disk costs milliseconds.
 *
 * The allocator test hands the engine a counting allocator that fails its
 * Nth allocation, for every N, at each step of a session that uses the
 * whole API (open the engine, load, calendar, open, signal, get, history,
 * list, timers, schema, services, eval, an asynchronous call, a timer
 * firing, close): every failure is a clean FLOW_ENOMEM, the step leaves
 * nothing behind, it succeeds once memory is back, and when the engine is
 * closed not one block is still live.
 */
#define _POSIX_C_SOURCE 200809L

#include <check.h>
#include <flow.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ======================================================================== */
/* The VFS shim                                                              */
/* ======================================================================== */

enum { FAULT_NONE, FAULT_WRITE, FAULT_FSYNC, FAULT_FULL };

typedef struct fault_state {
  int kind;
  long at;        /* fail the at-th operation of the kind (1-based) */
  int sticky;     /* keep failing after the at-th, until cleared */
  long count;     /* operations of the kind since armed */
  long hits;      /* operations failed */
  long writes;    /* all writes and fsyncs seen, armed or not */
  long syncs;
} fault_state;

static fault_state F;
static sqlite3_vfs *REAL;

typedef struct shim_file {
  sqlite3_file base;
  sqlite3_file *real; /* lives right after this struct */
} shim_file;

static void
fault_arm(int kind, long at, int sticky)
{
  F.kind = kind;
  F.at = at;
  F.sticky = sticky;
  F.count = 0;
  F.hits = 0;
}

static void
fault_clear(void)
{
  F.kind = FAULT_NONE;
}

/* 1 when this operation of the kind must fail. */
static int
fault_fires(int kind)
{
  if (F.kind != kind && !(kind == FAULT_WRITE && F.kind == FAULT_FULL))
    return 0;
  F.count++;
  if (F.count == F.at || (F.sticky && F.count > F.at)) {
    F.hits++;
    return 1;
  }
  return 0;
}

#define REALF(f) (((shim_file *)(f))->real)

static int
shim_close(sqlite3_file *f)
{
  int rc = REALF(f)->pMethods ? REALF(f)->pMethods->xClose(REALF(f))
                              : SQLITE_OK;
  f->pMethods = NULL;
  return rc;
}

static int
shim_read(sqlite3_file *f, void *buf, int n, sqlite3_int64 off)
{
  return REALF(f)->pMethods->xRead(REALF(f), buf, n, off);
}

static int
shim_write(sqlite3_file *f, const void *buf, int n, sqlite3_int64 off)
{
  F.writes++;
  if (fault_fires(FAULT_WRITE))
    return F.kind == FAULT_FULL ? SQLITE_FULL : SQLITE_IOERR_WRITE;
  return REALF(f)->pMethods->xWrite(REALF(f), buf, n, off);
}

static int
shim_truncate(sqlite3_file *f, sqlite3_int64 size)
{
  return REALF(f)->pMethods->xTruncate(REALF(f), size);
}

static int
shim_sync(sqlite3_file *f, int flags)
{
  (void)f;
  (void)flags;
  F.syncs++;
  if (fault_fires(FAULT_FSYNC))
    return SQLITE_IOERR_FSYNC;
  return SQLITE_OK; /* counted, not performed: see the top of the file */
}

static int
shim_file_size(sqlite3_file *f, sqlite3_int64 *size)
{
  return REALF(f)->pMethods->xFileSize(REALF(f), size);
}

static int
shim_lock(sqlite3_file *f, int lock)
{
  return REALF(f)->pMethods->xLock(REALF(f), lock);
}

static int
shim_unlock(sqlite3_file *f, int lock)
{
  return REALF(f)->pMethods->xUnlock(REALF(f), lock);
}

static int
shim_check_lock(sqlite3_file *f, int *out)
{
  return REALF(f)->pMethods->xCheckReservedLock(REALF(f), out);
}

static int
shim_file_control(sqlite3_file *f, int op, void *arg)
{
  return REALF(f)->pMethods->xFileControl(REALF(f), op, arg);
}

static int
shim_sector_size(sqlite3_file *f)
{
  return REALF(f)->pMethods->xSectorSize(REALF(f));
}

static int
shim_device_chars(sqlite3_file *f)
{
  return REALF(f)->pMethods->xDeviceCharacteristics(REALF(f));
}

static int
shim_shm_map(sqlite3_file *f, int pg, int pgsz, int extend,
             void volatile **pp)
{
  return REALF(f)->pMethods->xShmMap(REALF(f), pg, pgsz, extend, pp);
}

static int
shim_shm_lock(sqlite3_file *f, int offset, int n, int flags)
{
  return REALF(f)->pMethods->xShmLock(REALF(f), offset, n, flags);
}

static void
shim_shm_barrier(sqlite3_file *f)
{
  REALF(f)->pMethods->xShmBarrier(REALF(f));
}

static int
shim_shm_unmap(sqlite3_file *f, int del)
{
  return REALF(f)->pMethods->xShmUnmap(REALF(f), del);
}

static int
shim_fetch(sqlite3_file *f, sqlite3_int64 off, int amt, void **pp)
{
  return REALF(f)->pMethods->xFetch(REALF(f), off, amt, pp);
}

static int
shim_unfetch(sqlite3_file *f, sqlite3_int64 off, void *p)
{
  return REALF(f)->pMethods->xUnfetch(REALF(f), off, p);
}

static const sqlite3_io_methods SHIM_IO_V3 = {
  3,
  shim_close,
  shim_read,
  shim_write,
  shim_truncate,
  shim_sync,
  shim_file_size,
  shim_lock,
  shim_unlock,
  shim_check_lock,
  shim_file_control,
  shim_sector_size,
  shim_device_chars,
  shim_shm_map,
  shim_shm_lock,
  shim_shm_barrier,
  shim_shm_unmap,
  shim_fetch,
  shim_unfetch,
};

/* Same methods, for files whose real methods are version 1 (journals). */
static const sqlite3_io_methods SHIM_IO_V1 = {
  1,
  shim_close,
  shim_read,
  shim_write,
  shim_truncate,
  shim_sync,
  shim_file_size,
  shim_lock,
  shim_unlock,
  shim_check_lock,
  shim_file_control,
  shim_sector_size,
  shim_device_chars,
  NULL,
  NULL,
  NULL,
  NULL,
  NULL,
  NULL,
};

static int
shim_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *f, int flags,
          int *out_flags)
{
  (void)vfs;
  shim_file *p = (shim_file *)f;
  p->real = (sqlite3_file *)&p[1];
  int rc = REAL->xOpen(REAL, name, p->real, flags, out_flags);
  if (p->real->pMethods == NULL)
    f->pMethods = NULL;
  else
    f->pMethods = p->real->pMethods->iVersion >= 3 ? &SHIM_IO_V3
                                                   : &SHIM_IO_V1;
  return rc;
}

static int
shim_delete(sqlite3_vfs *vfs, const char *name, int sync_dir)
{
  (void)vfs;
  return REAL->xDelete(REAL, name, sync_dir);
}

static int
shim_access(sqlite3_vfs *vfs, const char *name, int flags, int *out)
{
  (void)vfs;
  return REAL->xAccess(REAL, name, flags, out);
}

static int
shim_full_pathname(sqlite3_vfs *vfs, const char *name, int n, char *out)
{
  (void)vfs;
  return REAL->xFullPathname(REAL, name, n, out);
}

static void *
shim_dlopen(sqlite3_vfs *vfs, const char *name)
{
  (void)vfs;
  return REAL->xDlOpen(REAL, name);
}

static void
shim_dlerror(sqlite3_vfs *vfs, int n, char *msg)
{
  (void)vfs;
  REAL->xDlError(REAL, n, msg);
}

static void (*shim_dlsym(sqlite3_vfs *vfs, void *h, const char *sym))(void)
{
  (void)vfs;
  return REAL->xDlSym(REAL, h, sym);
}

static void
shim_dlclose(sqlite3_vfs *vfs, void *h)
{
  (void)vfs;
  REAL->xDlClose(REAL, h);
}

static int
shim_randomness(sqlite3_vfs *vfs, int n, char *out)
{
  (void)vfs;
  return REAL->xRandomness(REAL, n, out);
}

static int
shim_sleep(sqlite3_vfs *vfs, int us)
{
  (void)vfs;
  return REAL->xSleep(REAL, us);
}

static int
shim_current_time(sqlite3_vfs *vfs, double *out)
{
  (void)vfs;
  return REAL->xCurrentTime(REAL, out);
}

static int
shim_last_error(sqlite3_vfs *vfs, int n, char *out)
{
  (void)vfs;
  return REAL->xGetLastError(REAL, n, out);
}

static int
shim_current_time64(sqlite3_vfs *vfs, sqlite3_int64 *out)
{
  (void)vfs;
  return REAL->xCurrentTimeInt64(REAL, out);
}

static sqlite3_vfs SHIM;

/* Makes the shim the default VFS, wrapping whatever the default was. */
static void
shim_install(void)
{
  if (REAL == NULL) {
    REAL = sqlite3_vfs_find(NULL);
    ck_assert_ptr_nonnull(REAL);
    SHIM.iVersion = 2;
    SHIM.szOsFile = (int)sizeof(shim_file) + REAL->szOsFile;
    SHIM.mxPathname = REAL->mxPathname;
    SHIM.zName = "flow-fault-shim";
    SHIM.xOpen = shim_open;
    SHIM.xDelete = shim_delete;
    SHIM.xAccess = shim_access;
    SHIM.xFullPathname = shim_full_pathname;
    SHIM.xDlOpen = shim_dlopen;
    SHIM.xDlError = shim_dlerror;
    SHIM.xDlSym = shim_dlsym;
    SHIM.xDlClose = shim_dlclose;
    SHIM.xRandomness = shim_randomness;
    SHIM.xSleep = shim_sleep;
    SHIM.xCurrentTime = shim_current_time;
    SHIM.xGetLastError = shim_last_error;
    SHIM.xCurrentTimeInt64 = shim_current_time64;
  }
  fault_clear();
  ck_assert_int_eq(sqlite3_vfs_register(&SHIM, 1), SQLITE_OK);
}

static void
shim_remove(void)
{
  fault_clear();
  sqlite3_vfs_unregister(&SHIM);
}

/* ======================================================================== */
/* The session                                                               */
/* ======================================================================== */

static const char *const SERVICE =
    "return {\n"
    "  name = 'bins', version = 1, title = 'Missed bins',\n"
    "  fields = {\n"
    "    uprn = { type = 'string', required = true, pattern = '^%d+$',"
    " index = true },\n"
    "    crew = { type = 'string' },\n"
    "    reminders = { type = 'integer' },\n"
    "    day = { type = 'date' },\n"
    "    collected = { type = 'boolean' },\n"
    "  },\n"
    "  validate = function(data)\n"
    "    if data.day and not data.crew then return { day = 'needs a crew' } end\n"
    "  end,\n"
    "  initial = 'reported',\n"
    "  sla = { within = '5 working days', warn = '3 working days' },\n"
    "  states = {\n"
    "    reported = {\n"
    "      after = { ['2 working days'] = 'escalated',\n"
    "                ['1h'] = { event = 'remind' } },\n"
    "      on = {\n"
    "        assign = function(case, ev)\n"
    "          case.data.crew = ev.payload.crew\n"
    "          flow.sla.pause('waiting for the crew')\n"
    "          return 'assigned'\n"
    "        end,\n"
    "        remind = function(case, ev)\n"
    "          case.data.reminders = (case.data.reminders or 0) + 1\n"
    "        end,\n"
    "      },\n"
    "    },\n"
    "    assigned = {\n"
    "      after = { ['1d'] = { event = 'chase', payload = { n = 1 } } },\n"
    "      on = {\n"
    "        schedule = function(case, ev)\n"
    "          case.data.day = ev.payload.day\n"
    "          flow.sla.resume()\n"
    "          flow.call('notify.sms', { to = '07700900123' })\n"
    "          return 'scheduled'\n"
    "        end,\n"
    "        chase = function(case, ev) end,\n"
    "      },\n"
    "    },\n"
    "    scheduled = { on = { collect = function(case)\n"
    "      case.data.collected = true\n"
    "      return 'closed'\n"
    "    end } },\n"
    "    escalated = { on = { collect = 'closed' } },\n"
    "    closed = { final = true },\n"
    "  },\n"
    "}\n";

static const char *const CREW_ROLES[] = { "crew" };
static const flow_actor CREW = { "sam", CREW_ROLES, 1 };

static char DB[256];
static int64_t T0; /* Monday 2 November 2026, 09:00 */

static void
db_remove(void)
{
  char p[300];
  unlink(DB);
  snprintf(p, sizeof p, "%s-wal", DB);
  unlink(p);
  snprintf(p, sizeof p, "%s-shm", DB);
  unlink(p);
  snprintf(p, sizeof p, "%s-journal", DB);
  unlink(p);
}

static void
fault_setup(void)
{
  snprintf(DB, sizeof DB, "/tmp/flow-fault-%ld.db", (long)getpid());
  db_remove();
  ck_assert_int_eq(flow_time_parse(&T0, "2026-11-02T09:00:00Z"), 0);
  shim_install();
}

static void
fault_teardown(void)
{
  shim_remove();
  db_remove();
}

/* Appends to a growing string. */
typedef struct text {
  char *p;
  size_t len;
} text;

static void
text_add(text *t, const char *s)
{
  size_t n = strlen(s);
  t->p = realloc(t->p, t->len + n + 2);
  ck_assert_ptr_nonnull(t->p);
  memcpy(t->p + t->len, s, n);
  t->len += n;
  t->p[t->len++] = '\n';
  t->p[t->len] = 0;
}

/*
 * Everything the API can say about the database: services, every case,
 * each one's history and timers.  Read with no fault armed.
 */
static char *
snapshot(flow_engine *e)
{
  text t = { NULL, 0 };
  char *out = NULL;
  ck_assert_msg(flow_service_list(&out, e) == 0, "%s", flow_errmsg(e));
  text_add(&t, out);
  flow_free(out);
  flow_case_query q = FLOW_CASE_QUERY_INIT;
  ck_assert_msg(flow_case_list(&out, e, &q) == 0, "%s", flow_errmsg(e));
  text_add(&t, out);
  flow_free(out);
  for (int id = 1; id <= 3; id++) {
    char sid[8];
    snprintf(sid, sizeof sid, "%d", id);
    int rc = flow_case_history(&out, e, sid);
    if (rc == FLOW_ENOTFOUND)
      continue;
    ck_assert_msg(rc == 0, "%s", flow_errmsg(e));
    text_add(&t, out);
    flow_free(out);
    ck_assert_msg(flow_case_timers(&out, e, sid) == 0, "%s", flow_errmsg(e));
    text_add(&t, out);
    flow_free(out);
  }
  return t.p;
}

/* One step of the session after the engine is open.  assign stops the
   service level and schedule starts it again, so every write of a pause
   and a resume meets the faults too. */
static int
step_run(flow_engine *e, int step)
{
  flow_engine_set_time(e, T0 + step * 60000);
  switch (step) {
  case 1:
    return flow_service_load_string(NULL, e, SERVICE, strlen(SERVICE),
                                    "bins.lua");
  case 2:
    return flow_case_open(NULL, e, "bins", "{\"uprn\":\"100023336956\"}",
                          NULL);
  case 3:
    return flow_case_signal(NULL, e, "1", "assign", "{\"crew\":\"north-2\"}",
                            &CREW);
  case 4:
    return flow_case_signal(NULL, e, "1", "schedule",
                            "{\"day\":\"2026-11-05\"}", &CREW);
  case 5:
    return flow_case_signal(NULL, e, "1", "collect", NULL, &CREW);
  }
  return FLOW_ERROR;
}

static const char *const STEP_NAMES[] = {
  "flow_engine_open",         "flow_service_load_string",
  "flow_case_open",           "flow_case_signal assign",
  "flow_case_signal schedule", "flow_case_signal collect",
};
#define NSTEPS 6

static flow_engine *
engine_open(char *err, size_t len, int *rc)
{
  flow_engine *e = NULL;
  flow_engine_options o = FLOW_ENGINE_OPTIONS_INIT;
  o.synchronous = FLOW_SYNC_FULL;
  *rc = flow_engine_open(&e, DB, &o, err, len);
  return e;
}

/* The whole session with no fault: what every faulty one must end as. */
static char *
reference_session(void)
{
  db_remove();
  char err[256];
  int rc;
  flow_engine *e = engine_open(err, sizeof err, &rc);
  ck_assert_msg(rc == 0, "%s", err);
  for (int s = 1; s < NSTEPS; s++)
    ck_assert_msg(step_run(e, s) == 0, "step %d: %s", s, flow_errmsg(e));
  char *snap = snapshot(e);
  flow_engine_close(e);
  db_remove();
  return snap;
}

static const char *
kind_name(int kind)
{
  return kind == FAULT_WRITE ? "write" : kind == FAULT_FSYNC ? "fsync"
                                                            : "full disk";
}

static char FIRST_MSG[512]; /* the first refusal's message, for the log */

/* The refusal of a call that hit the fault: code and message.  The shim
   never says NOMEM, so FLOW_EIO is the only right code. */
static void
check_refusal(int kind, long n, int step, int rc, const char *msg)
{
  ck_assert_msg(rc == FLOW_EIO,
                "%s fault at %ld: %s returned %s (%s), not FLOW_EIO",
                kind_name(kind), n, STEP_NAMES[step], flow_err_name(rc), msg);
  if (FIRST_MSG[0] == 0)
    snprintf(FIRST_MSG, sizeof FIRST_MSG, "%s: %s", STEP_NAMES[step], msg);
  ck_assert_msg(msg != NULL && msg[0] != 0,
                "%s fault at %ld: %s returned %s with no message",
                kind_name(kind), n, STEP_NAMES[step], flow_err_name(rc));
  if (kind == FAULT_FULL)
    ck_assert_msg(strstr(msg, "disk is full") != NULL,
                  "full disk at write %ld: %s says '%s', which does not say "
                  "the disk is full",
                  n, STEP_NAMES[step], msg);
  else
    ck_assert_msg(strstr(msg, "I/O error") != NULL,
                  "%s fault at %ld: %s says '%s', which does not say the "
                  "storage failed",
                  kind_name(kind), n, STEP_NAMES[step], msg);
}

/*
 * One session with a fault armed at the n-th operation of the kind.
 * Returns the number of operations the fault saw (when fewer than n, the
 * session never reached the fault: every n has been covered).
 */
static long
faulty_session(int kind, long n, int sticky, const char *reference)
{
  char err[256] = "";
  int rc;
  db_remove();
  fault_arm(kind, n, sticky);

  /* Step 0: opening creates the database and its schema. */
  flow_engine *e = engine_open(err, sizeof err, &rc);
  if (rc != 0) {
    ck_assert_msg(F.hits > 0, "flow_engine_open failed with no fault: %s",
                  err);
    ck_assert_ptr_null(e);
    check_refusal(kind, n, 0, rc, err);
    fault_clear();
    e = engine_open(err, sizeof err, &rc);
    ck_assert_msg(rc == 0,
                  "%s fault at %ld: flow_engine_open fails again once the "
                  "fault is cleared: %s: %s",
                  kind_name(kind), n, flow_err_name(rc), err);
    char *snap = snapshot(e);
    ck_assert_msg(strcmp(snap, "[]\n[]\n") == 0,
                  "after a failed open the database is not empty:\n%s", snap);
    free(snap);
  }

  for (int s = 1; s < NSTEPS; s++) {
    long hits = F.hits;
    int armed = F.kind != FAULT_NONE;
    char *before = NULL;
    if (armed) {
      int k = F.kind;
      F.kind = FAULT_NONE; /* read the snapshot without faults */
      before = snapshot(e);
      F.kind = k;
    }
    rc = step_run(e, s);
    if (rc == 0) {
      free(before);
      continue;
    }
    ck_assert_msg(F.hits > hits,
                  "%s fault at %ld: %s failed without meeting the fault: "
                  "%s: %s",
                  kind_name(kind), n, STEP_NAMES[s], flow_err_name(rc),
                  flow_errmsg(e));
    check_refusal(kind, n, s, rc, flow_errmsg(e));
    fault_clear();
    /* Nothing partial: the database reads back exactly as before. */
    char *after = snapshot(e);
    ck_assert_msg(strcmp(before, after) == 0,
                  "%s fault at %ld: %s failed with %s but changed the "
                  "database:\nbefore:\n%s\nafter:\n%s",
                  kind_name(kind), n, STEP_NAMES[s], flow_err_name(rc),
                  before, after);
    free(before);
    free(after);
    /* And the same call works again. */
    rc = step_run(e, s);
    ck_assert_msg(rc == 0,
                  "%s fault at %ld: %s fails again after the fault cleared: "
                  "%s: %s",
                  kind_name(kind), n, STEP_NAMES[s], flow_err_name(rc),
                  flow_errmsg(e));
  }
  long seen = F.count;
  fault_clear();
  char *snap = snapshot(e);
  ck_assert_msg(strcmp(snap, reference) == 0,
                "%s fault at %ld: the session ends differently from one "
                "without faults:\n%s\nexpected:\n%s",
                kind_name(kind), n, snap, reference);
  free(snap);
  flow_engine_close(e);

  /* What is on disk is what the engine said. */
  e = engine_open(err, sizeof err, &rc);
  ck_assert_msg(rc == 0, "reopening after the %s fault at %ld: %s",
                kind_name(kind), n, err);
  snap = snapshot(e);
  ck_assert_msg(strcmp(snap, reference) == 0,
                "%s fault at %ld: after reopening, the database differs from "
                "what the engine reported:\n%s\nexpected:\n%s",
                kind_name(kind), n, snap, reference);
  free(snap);
  flow_engine_close(e);
  return seen;
}

static void
every_fault(int kind, int sticky)
{
  char *reference = reference_session();
  long n, seen = 0;
  FIRST_MSG[0] = 0;
  for (n = 1; n < 10000; n++) {
    seen = faulty_session(kind, n, sticky, reference);
    if (seen < n)
      break;
  }
  ck_assert_msg(n < 10000, "the %s fault never stopped being hit",
                kind_name(kind));
  fprintf(stderr, "fault: %s %s: each of %ld %ss failed in turn, cleanly "
          "(\"%s\")\n", sticky ? "sticky" : "one-shot", kind_name(kind),
          n - 1, kind == FAULT_FSYNC ? "fsync" : "write", FIRST_MSG);
  free(reference);
}

START_TEST(test_fault_write_error)
{
  every_fault(FAULT_WRITE, 1);
  every_fault(FAULT_WRITE, 0);
}
END_TEST

START_TEST(test_fault_fsync_error)
{
  every_fault(FAULT_FSYNC, 1);
  every_fault(FAULT_FSYNC, 0);
}
END_TEST

START_TEST(test_fault_disk_full)
{
  every_fault(FAULT_FULL, 1);
}
END_TEST

/*
 * A call fails on the disk and the process goes away before anything is
 * retried: reopened, the database must hold the whole transition or none
 * of it, never a part.
 */
START_TEST(test_fault_failed_call_is_atomic_on_disk)
{
  static const int kinds[] = { FAULT_WRITE, FAULT_FSYNC, FAULT_FULL };
  for (size_t k = 0; k < sizeof kinds / sizeof *kinds; k++) {
    long whole = 0, none = 0;
    for (long n = 1; n < 100; n++) {
      db_remove();
      char err[256];
      int rc;
      flow_engine *e = engine_open(err, sizeof err, &rc);
      ck_assert_msg(rc == 0, "%s", err);
      ck_assert_int_eq(step_run(e, 1), 0);
      ck_assert_int_eq(step_run(e, 2), 0);
      char *before = snapshot(e);
      ck_assert_int_eq(step_run(e, 3), 0);
      char *after = snapshot(e);
      flow_engine_close(e);

      /* Again up to the signal, which now meets the fault. */
      db_remove();
      e = engine_open(err, sizeof err, &rc);
      ck_assert_int_eq(step_run(e, 1), 0);
      ck_assert_int_eq(step_run(e, 2), 0);
      fault_arm(kinds[k], n, 1);
      int rc_signal = step_run(e, 3);
      long seen = F.count;
      flow_engine_close(e); /* with the fault still there */
      fault_clear();
      e = engine_open(err, sizeof err, &rc);
      ck_assert_msg(rc == 0, "reopening: %s", err);
      char *disk = snapshot(e);
      flow_engine_close(e);
      ck_assert_msg(strcmp(disk, before) == 0 || strcmp(disk, after) == 0,
                    "%s fault at %ld: after a failed signal and a restart "
                    "the database holds part of the transition:\n%s",
                    kind_name(kinds[k]), n, disk);
      int failed = rc_signal != 0;
      if (failed && strcmp(disk, after) == 0)
        whole++;
      else if (failed)
        none++;
      free(before);
      free(after);
      free(disk);
      if (seen < n)
        break;
    }
    /* All of it: the commit record reached the file before the failure
       (an fsync that failed after the write), so recovery finds a whole
       transaction that the caller was told had failed. */
    fprintf(stderr, "fault: %s fault, then a restart: the failed signal "
            "was absent %ld times, wholly present %ld times, never partial\n",
            kind_name(kinds[k]), none, whole);
  }
}
END_TEST

/* ======================================================================== */
/* Allocation failures                                                       */
/* ======================================================================== */

typedef struct counter {
  long live;     /* blocks allocated and not freed */
  long calls;    /* allocations (new blocks and growing reallocs) */
  long fail_at;  /* fail this allocation (1-based); 0: never */
  int sticky;    /* and every one after it, until disarmed */
  long failures;
} counter;

static counter C;

static void *
count_alloc(void *payload, void *ptr, size_t osize, size_t nsize)
{
  counter *c = payload;
  (void)osize;
  if (nsize == 0) {
    if (ptr)
      c->live--;
    free(ptr);
    return NULL;
  }
  if (ptr == NULL || nsize > osize) {
    c->calls++;
    if (c->fail_at &&
        (c->calls == c->fail_at || (c->sticky && c->calls > c->fail_at))) {
      c->failures++;
      return NULL;
    }
  }
  void *p = realloc(ptr, nsize);
  if (p && ptr == NULL)
    c->live++;
  return p;
}

static void
alloc_arm(long n)
{
  C.calls = 0;
  C.fail_at = n;
  C.failures = 0;
}

static void
alloc_disarm(void)
{
  C.fail_at = 0;
}

static const char *const HOLIDAYS[] = { "2026-12-24", "2026-12-29" };

typedef struct session {
  flow_engine *e;
  int queued; /* an asynchronous open is queued */
  int async_status;
  int async_calls;
  char msg[512]; /* flow_errmsg during the callback */
} session;

static void
async_done(flow_engine *e, int status, const char *case_json, void *payload)
{
  session *s = payload;
  (void)case_json;
  s->async_status = status;
  s->async_calls++;
  snprintf(s->msg, sizeof s->msg, "%s", flow_errmsg(e));
}

/* The steps of an API-wide session; each returns a FLOW_* code. */
enum {
  A_LOAD, A_CALENDAR, A_OPEN, A_SIGNAL, A_GET, A_HISTORY, A_LIST, A_TIMERS,
  A_SCHEMA, A_SERVICES, A_EVAL, A_ASYNC, A_FIRE, A_SCHEDULE, A_NSTEPS
};

static const char *const A_NAMES[] = {
  "flow_service_load_string", "flow_engine_set_calendar", "flow_case_open",
  "flow_case_signal",         "flow_case_get",            "flow_case_history",
  "flow_case_list",           "flow_case_timers",         "flow_service_schema",
  "flow_service_list",        "flow_eval",
  "flow_case_open_async + flow_engine_run",
  "flow_engine_fire_due",     "flow_case_signal (an action)",
};

/* 1 for steps that change the database. */
static int
a_mutates(int step)
{
  return step == A_LOAD || step == A_OPEN || step == A_SIGNAL ||
         step == A_ASYNC || step == A_FIRE || step == A_SCHEDULE;
}

static int
a_run(session *s, int step)
{
  flow_engine *e = s->e;
  char *out = NULL;
  int rc = FLOW_ERROR;
  flow_case_query q = FLOW_CASE_QUERY_INIT;
  flow_where w = { "uprn", "\"100023336956\"" };
  switch (step) {
  case A_LOAD:
    rc = flow_service_load_string(&out, e, SERVICE, strlen(SERVICE),
                                  "bins.lua");
    break;
  case A_CALENDAR: {
    flow_calendar_options c = FLOW_CALENDAR_OPTIONS_INIT;
    c.zone = "Europe/London";
    c.holidays = HOLIDAYS;
    c.nholidays = 2;
    rc = flow_engine_set_calendar(e, &c);
    break;
  }
  case A_OPEN:
    rc = flow_case_open(&out, e, "bins", "{\"uprn\":\"100023336956\"}", NULL);
    break;
  case A_SIGNAL:
    rc = flow_case_signal(&out, e, "1", "assign", "{\"crew\":\"north-2\"}",
                          &CREW);
    break;
  case A_GET:
    rc = flow_case_get(&out, e, "1");
    break;
  case A_HISTORY:
    rc = flow_case_history(&out, e, "1");
    break;
  case A_LIST:
    q.where = &w;
    q.nwhere = 1;
    q.state = "assigned";
    rc = flow_case_list(&out, e, &q);
    break;
  case A_TIMERS:
    rc = flow_case_timers(&out, e, "1");
    break;
  case A_SCHEMA:
    rc = flow_service_schema(&out, e, "bins", 0);
    break;
  case A_SERVICES:
    rc = flow_service_list(&out, e);
    break;
  case A_EVAL: {
    static const char code[] =
        "local t = {} for i = 1, 50 do t[i] = ('x'):rep(i) end "
        "return { n = #t, last = t[50], when = flow.now() }";
    rc = flow_eval(&out, e, code, strlen(code), "eval");
    break;
  }
  case A_ASYNC:
    /* A call queued by an earlier attempt whose flow_engine_run failed
       stays queued, as it should: run it rather than queue another. */
    if (!s->queued) {
      s->async_calls = 0;
      s->async_status = FLOW_ERROR;
      rc = flow_case_open_async(e, "bins", "{\"uprn\":\"42\"}", NULL,
                                async_done, s);
      if (rc != 0)
        break;
      s->queued = 1;
    }
    rc = flow_engine_run(e, FLOW_RUN_NOWAIT);
    if (rc < 0)
      break;
    if (s->async_calls != 1) {
      rc = FLOW_ERROR; /* the callback did not come, or came twice */
      break;
    }
    s->queued = 0;
    rc = s->async_status;
    break;
  case A_FIRE: {
    /* The second case's 1h reminder falls due; its handler runs. */
    size_t fired = 0;
    flow_engine_set_time(e, T0 + 2 * 3600 * 1000);
    rc = flow_engine_fire_due(e, &fired);
    if (rc == 0 && fired == 0)
      rc = FLOW_ERROR;
    break;
  }
  case A_SCHEDULE:
    /* A transition whose handler asks for an action (an outbox row). */
    rc = flow_case_signal(&out, e, "1", "schedule", "{\"day\":\"2026-11-05\"}",
                          &CREW);
    break;
  }
  flow_free(out);
  return rc;
}

/*
 * A fresh engine with the steps before `upto` done (no failures), for
 * going on after a step absorbed an allocation failure and did its work:
 * the next allocation point of that step needs the state before it.
 * Closing the old engine must free every block it had.
 */
static void
a_rebuild(session *s, int upto, const flow_engine_options *o)
{
  char err[256];
  flow_engine_close(s->e);
  ck_assert_msg(C.live == 0, "%ld blocks leaked by an engine that met "
                "allocation failures", C.live);
  memset(s, 0, sizeof *s);
  ck_assert_msg(flow_engine_open(&s->e, ":memory:", o, err, sizeof err) == 0,
                "%s", err);
  flow_engine_set_time(s->e, T0);
  for (int step = 0; step < upto; step++)
    ck_assert_msg(a_run(s, step) == 0, "rebuilding, %s: %s", A_NAMES[step],
                  flow_errmsg(s->e));
}

/*
 * What the allocation tests find, the first of each kind per step, so that
 * one run reports every distinct problem rather than only the first.
 */
static char NOTES[16384];
static size_t NOTES_LEN;
static unsigned NOTED[A_NSTEPS];

static void note(int step, int kind, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
note(int step, int kind, const char *fmt, ...)
{
  if (NOTED[step] & (1u << kind))
    return;
  NOTED[step] |= 1u << kind;
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(NOTES + NOTES_LEN, sizeof NOTES - NOTES_LEN, fmt, ap);
  va_end(ap);
  if (n > 0)
    NOTES_LEN += (size_t)n;
  if (NOTES_LEN > sizeof NOTES - 2)
    NOTES_LEN = sizeof NOTES - 2;
  NOTES[NOTES_LEN++] = '\n';
  NOTES[NOTES_LEN] = 0;
}

static void
allocation_failures(int sticky)
{
  memset(&C, 0, sizeof C);
  memset(NOTED, 0, sizeof NOTED);
  NOTES_LEN = 0;
  NOTES[0] = 0;
  C.sticky = sticky;
  flow_engine_options o = FLOW_ENGINE_OPTIONS_INIT;
  o.alloc = count_alloc;
  o.alloc_payload = &C;
  long total = 0, failures = 0, absorbed = 0;
  ck_assert_int_eq(flow_time_parse(&T0, "2026-11-02T09:00:00Z"), 0);

  /* Opening. */
  flow_engine *e = NULL;
  long n;
  for (n = 1;; n++) {
    char err[256] = "";
    alloc_arm(n);
    int rc = flow_engine_open(&e, ":memory:", &o, err, sizeof err);
    alloc_disarm();
    total++;
    if (rc == 0 && C.failures == 0)
      break;
    if (rc == 0) {
      /* The failure was absorbed (Lua collects and retries, say). */
      absorbed++;
      flow_engine_close(e);
      e = NULL;
    } else {
      failures++;
      ck_assert_msg(rc == FLOW_ENOMEM,
                    "allocation %ld failed in flow_engine_open: %s (%s), "
                    "not FLOW_ENOMEM",
                    n, flow_err_name(rc), err);
      ck_assert_msg(err[0] != 0, "flow_engine_open: FLOW_ENOMEM with no "
                    "message at allocation %ld", n);
      ck_assert_ptr_null(e);
    }
    ck_assert_msg(C.live == 0,
                  "allocation %ld failed in flow_engine_open: %ld blocks "
                  "leaked",
                  n, C.live);
  }
  flow_engine_set_time(e, T0);

  session s;
  memset(&s, 0, sizeof s);
  s.e = e;
  for (int step = 0; step < A_NSTEPS; step++) {
    for (n = 1;; n++) {
      e = s.e;
      char *before = a_mutates(step) ? snapshot(e) : NULL;
      alloc_arm(n);
      int rc = a_run(&s, step);
      alloc_disarm();
      total++;
      if (C.failures == 0) {
        ck_assert_msg(rc == 0, "%s failed with no allocation failure: %s: %s",
                      A_NAMES[step], flow_err_name(rc), flow_errmsg(e));
        free(before);
        break;
      }
      if (rc == 0) {
        /* Absorbed: the step did its work.  Go on from the state before
           it, so that every later allocation point is tried too. */
        absorbed++;
        free(before);
        if (a_mutates(step) || step == A_CALENDAR)
          a_rebuild(&s, step, &o);
        continue;
      }
      failures++;
      /* An asynchronous call's message is the callback's to read. */
      const char *msg = step == A_ASYNC && s.async_calls ? s.msg
                                                         : flow_errmsg(e);
      if (rc != FLOW_ENOMEM)
        note(step, 0, "allocation %ld failed in %s: it returned %s (%s), "
             "not FLOW_ENOMEM", n, A_NAMES[step], flow_err_name(rc), msg);
      if (msg[0] == 0)
        note(step, 1, "allocation %ld failed in %s: %s with no message", n,
             A_NAMES[step], flow_err_name(rc));
      if (before) {
        char *after = snapshot(e);
        if (strcmp(before, after) != 0) {
          note(step, 2, "allocation %ld failed in %s, which returned %s, "
               "but the database changed:\nbefore:\n%safter:\n%s", n,
               A_NAMES[step], flow_err_name(rc), before, after);
          a_rebuild(&s, step, &o); /* go on from the state before */
        }
        free(after);
        free(before);
      }
      if (step == A_FIRE)
        flow_engine_set_time(e, T0); /* the step sets it again */
    }
  }
  /* The engine still works, and ends as a session without failures. */
  e = s.e;
  char *out = NULL;
  ck_assert_int_eq(flow_case_get(&out, e, "1"), 0);
  ck_assert_msg(strstr(out, "\"state\":\"scheduled\"") != NULL, "%s", out);
  flow_free(out);
  ck_assert_int_eq(flow_case_get(&out, e, "2"), 0);
  ck_assert_msg(strstr(out, "\"reminders\":1") != NULL,
                "the reminder timer did not fire exactly once: %s", out);
  flow_free(out);
  ck_assert_int_eq(flow_case_timers(&out, e, "2"), 0);
  ck_assert_msg(strstr(out, "incident") == NULL,
                "an allocation failure turned a timer into an incident: %s",
                out);
  flow_free(out);
  flow_engine_close(e);
  ck_assert_msg(C.live == 0, "%ld blocks leaked over the session", C.live);
  ck_assert_msg(NOTES_LEN == 0, "allocation failures (%s) were not clean:\n%s",
                sticky ? "from the Nth on" : "the Nth only", NOTES);
  fprintf(stderr, "fault: allocator (%s): %ld runs, %ld refused with a "
          "clean FLOW_ENOMEM, %ld absorbed, nothing leaked\n",
          sticky ? "out of memory from the Nth allocation on"
                 : "the Nth allocation fails",
          total, failures, absorbed);
}

START_TEST(test_fault_allocation_failure_once)
{
  allocation_failures(0);
}
END_TEST

START_TEST(test_fault_allocation_failures_from_n_on)
{
  allocation_failures(1);
}
END_TEST

/* ======================================================================== */

static Suite *
fault_suite(void)
{
  Suite *s = suite_create("fault");
  TCase *disk = tcase_create("disk");
  tcase_add_checked_fixture(disk, fault_setup, fault_teardown);
  tcase_set_timeout(disk, 600);
  tcase_add_test(disk, test_fault_write_error);
  tcase_add_test(disk, test_fault_fsync_error);
  tcase_add_test(disk, test_fault_disk_full);
  tcase_add_test(disk, test_fault_failed_call_is_atomic_on_disk);
  suite_add_tcase(s, disk);
  TCase *mem = tcase_create("memory");
  tcase_set_timeout(mem, 600);
  tcase_add_test(mem, test_fault_allocation_failure_once);
  tcase_add_test(mem, test_fault_allocation_failures_from_n_on);
  suite_add_tcase(s, mem);
  return s;
}

int
main(void)
{
  SRunner *sr = srunner_create(fault_suite());
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
