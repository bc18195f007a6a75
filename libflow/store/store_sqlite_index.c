/*
 * The SQLite backend's two structures that keep a move's writes small
 * (issue 15):
 *
 *   - case_states (state, case_id): where cases are.  A move inserts the
 *     case's entry in its new state; the entry it leaves behind is stale
 *     (a list by state joins with cases and skips it) and is removed
 *     later, a batch at a commit, by id range.
 *   - cases.keys: the values of the fields the database indexes, which
 *     an UPDATE assigns only when one of them changed; each field's value
 *     is copied from there into a column of its own (k_FIELD), which has
 *     the field's index and is assigned only when that value changed.
 *     An index over an expression of keys was rewritten whenever any
 *     indexed field changed: a crew assigned rewrote the uprn's and the
 *     bin's entries too, two more pages in that commit.
 *
 * What this file keeps per connection is a flow__sq_places inside the
 * connection (store_sqlite_int.h); its statements are prepared on first
 * use and finalized by flow__sq_places_close.
 */
#include "store/store_sqlite_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
  P_STATE_ADD,
  P_STATE_ADD_MANY,
  P_STATE_DROP,
  P_SCHEMA_VERSION,
  P_KEY_FIELDS,
  P_HAS_COLUMN
};

/* Entries of case_states one statement inserts: one statement per entry
   cost 6.8 k instructions of a 105 k transition, most of it the
   statement's own start and end. */
#define ARRIVALS_PER_STMT 32
#define V4 "(?,?),(?,?),(?,?),(?,?),"

static const char *const psql[FLOW__SQ_PLACES_STMTS] = {
  [P_STATE_ADD] = "INSERT OR IGNORE INTO case_states(state, case_id)"
                  " VALUES (?1, ?2)",
  [P_STATE_ADD_MANY] = "INSERT OR IGNORE INTO case_states(state, case_id)"
                       " VALUES " V4 V4 V4 V4 V4 V4 V4 "(?,?),(?,?),(?,?),"
                       "(?,?)",
  /* The stale entries of state among case ids ?2..?3: only those whose
     case is not in that state (another connection may have moved one
     back since). */
  [P_STATE_DROP] = "DELETE FROM case_states WHERE state = ?1 AND"
                   " case_id BETWEEN ?2 AND ?3 AND case_id NOT IN (SELECT"
                   " id FROM cases WHERE id BETWEEN ?2 AND ?3 AND state ="
                   " ?1)",
  [P_SCHEMA_VERSION] = "PRAGMA schema_version",
  [P_KEY_FIELDS] = "SELECT substr(name, 9) FROM sqlite_master WHERE type"
                   " = 'index' AND name LIKE 'cases\\_k\\_%' ESCAPE '\\'"
                   " ORDER BY name",
  [P_HAS_COLUMN] = "SELECT count(*) FROM pragma_table_info('cases') WHERE"
                   " name = ?1",
};

/* Arrivals a transaction notes before they go in all the same, which
   bounds the memory a group of transitions holds for them. */
#define ARRIVALS_MAX 1024

/* Stale entries removed in one commit: a batch of cases that left a state
   together sits in one or two of its pages. */
#define STALE_BATCH 64

/* Ids closer than this share one DELETE over their range: cases that
   left a state together sit together, and a range costs one statement
   where single ids cost one each. */
#define STALE_GAP 16

static sqlite3_stmt *
pstmt(flow__store *s, int which, flow__err *err)
{
  flow__sq_places *p = flow__sq_places_of(s);
  if (p->st[which] == NULL &&
      sqlite3_prepare_v3(flow__sq_db(s), psql[which], -1,
                         SQLITE_PREPARE_PERSISTENT, &p->st[which],
                         NULL) != SQLITE_OK) {
    flow__sq_fail(s, err, sqlite3_errcode(flow__sq_db(s)),
                  "preparing a statement");
    return NULL;
  }
  return p->st[which];
}

/* ---- case_states ------------------------------------------------------- */

static void
stale_truncate(flow__store *s, size_t n)
{
  flow__sq_places *p = flow__sq_places_of(s);
  while (p->nstale > n)
    flow__free(flow__sq_alloc(s), p->stale[--p->nstale].state);
}

/* Notes that case id left state, for a later commit to remove. */
static int
stale_add(flow__store *s, int64_t id, const char *state, flow__err *err)
{
  flow__sq_places *p = flow__sq_places_of(s);
  const flow__allocator *a = flow__sq_alloc(s);
  if (p->nstale == p->cap_stale) {
    size_t cap = p->cap_stale ? p->cap_stale * 2 : STALE_BATCH * 2;
    struct flow__sq_stale *v = flow__realloc(a, p->stale, cap * sizeof *v);
    if (v == NULL)
      return flow__err_set(err, FLOW_ENOMEM, "out of memory moving a case");
    p->stale = v;
    p->cap_stale = cap;
  }
  char *copy = flow__strdup(a, state);
  if (copy == NULL)
    return flow__err_set(err, FLOW_ENOMEM, "out of memory moving a case");
  p->stale[p->nstale].id = id;
  p->stale[p->nstale].state = copy;
  p->nstale++;
  return 0;
}

static int
stale_cmp(const void *pa, const void *pb)
{
  const struct flow__sq_stale *a = pa, *b = pb;
  int c = strcmp(a->state, b->state);
  if (c != 0)
    return c;
  return (a->id > b->id) - (a->id < b->id);
}

/* Removes the noted stale entries, inside the open transaction.  The list
   is sorted first, so which entries came from which transaction cannot
   be told afterwards (flushed says so). */
static int
stale_flush(flow__store *s, flow__err *err)
{
  flow__sq_places *p = flow__sq_places_of(s);
  /* An entry noted and left in this transaction must be in before the
     range that removes it. */
  int rc0 = flow__sq_places_flush(s, err);
  if (rc0 != 0)
    return rc0;
  sqlite3_stmt *st = pstmt(s, P_STATE_DROP, err);
  if (st == NULL)
    return err->code;
  p->flushed = 1;
  qsort(p->stale, p->nstale, sizeof *p->stale, stale_cmp);
  for (size_t i = 0; i < p->nstale;) {
    size_t j = i + 1;
    while (j < p->nstale && strcmp(p->stale[j].state, p->stale[i].state) == 0 &&
           p->stale[j].id - p->stale[j - 1].id <= STALE_GAP)
      j++;
    sqlite3_bind_text(st, 1, p->stale[i].state, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, p->stale[i].id);
    sqlite3_bind_int64(st, 3, p->stale[j - 1].id);
    int rc = flow__sq_done(s, st, err, "removing where cases were");
    if (rc != 0)
      return rc;
    i = j;
  }
  stale_truncate(s, 0);
  return 0;
}

/* One entry of case_states, at once. */
static int
state_insert(flow__store *s, int64_t id, const char *state, flow__err *err)
{
  sqlite3_stmt *st = pstmt(s, P_STATE_ADD, err);
  if (st == NULL)
    return err->code;
  sqlite3_bind_text(st, 1, state, -1, SQLITE_STATIC);
  sqlite3_bind_int64(st, 2, id);
  return flow__sq_done(s, st, err, "recording where a case is");
}

/* Inserts the noted arrivals, ARRIVALS_PER_STMT to a statement and the
   rest one by one. */
int
flow__sq_places_flush(flow__store *s, flow__err *err)
{
  flow__sq_places *p = flow__sq_places_of(s);
  size_t i = 0;
  int rc = 0;
  if (p->narrived >= ARRIVALS_PER_STMT) {
    sqlite3_stmt *st = pstmt(s, P_STATE_ADD_MANY, err);
    if (st == NULL)
      return err->code;
    for (; rc == 0 && i + ARRIVALS_PER_STMT <= p->narrived;
         i += ARRIVALS_PER_STMT) {
      for (int k = 0; k < ARRIVALS_PER_STMT; k++) {
        const struct flow__sq_arrival *a = &p->arrived[i + (size_t)k];
        sqlite3_bind_text(st, 2 * k + 1, p->arrived_names + a->name, -1,
                          SQLITE_STATIC);
        sqlite3_bind_int64(st, 2 * k + 2, a->id);
      }
      rc = flow__sq_done(s, st, err, "recording where cases are");
    }
  }
  for (; rc == 0 && i < p->narrived; i++)
    rc = state_insert(s, p->arrived[i].id,
                      p->arrived_names + p->arrived[i].name, err);
  /* Gone either way: a failed statement fails the transaction. */
  p->narrived = 0;
  p->names_len = 0;
  return rc;
}

static int
arrival_note(flow__store *s, int64_t id, const char *state, flow__err *err)
{
  flow__sq_places *p = flow__sq_places_of(s);
  const flow__allocator *a = flow__sq_alloc(s);
  size_t n = strlen(state) + 1;
  if (p->narrived == p->cap_arrived) {
    size_t cap = p->cap_arrived ? p->cap_arrived * 2 : ARRIVALS_PER_STMT * 2;
    struct flow__sq_arrival *v = flow__realloc(a, p->arrived, cap * sizeof *v);
    if (v == NULL)
      return flow__err_set(err, FLOW_ENOMEM, "out of memory moving a case");
    p->arrived = v;
    p->cap_arrived = cap;
  }
  if (p->names_len + n > p->names_cap) {
    size_t cap = p->names_cap ? p->names_cap : 1024;
    while (cap < p->names_len + n)
      cap *= 2;
    char *v = flow__realloc(a, p->arrived_names, cap);
    if (v == NULL)
      return flow__err_set(err, FLOW_ENOMEM, "out of memory moving a case");
    p->arrived_names = v;
    p->names_cap = cap;
  }
  /* Cases that arrive together mostly arrive in one state: its name is
     kept once for a run of them. */
  size_t at;
  if (p->narrived > 0 &&
      strcmp(p->arrived_names + p->arrived[p->narrived - 1].name, state) == 0) {
    at = p->arrived[p->narrived - 1].name;
  } else {
    at = p->names_len;
    memcpy(p->arrived_names + at, state, n);
    p->names_len += n;
  }
  p->arrived[p->narrived].id = id;
  p->arrived[p->narrived].name = at;
  p->narrived++;
  return p->narrived >= ARRIVALS_MAX ? flow__sq_places_flush(s, err) : 0;
}

int
flow__sq_state_add(flow__store *s, int64_t id, const char *state,
                   flow__err *err)
{
  return flow__sq_in_txn(s) ? arrival_note(s, id, state, err)
                            : state_insert(s, id, state, err);
}

int
flow__sq_state_moved(flow__store *s, int64_t id, const char *from,
                     const char *to, flow__err *err)
{
  int rc = flow__sq_state_add(s, id, to, err);
  return rc == 0 ? stale_add(s, id, from, err) : rc;
}

void
flow__sq_places_begin(flow__store *s)
{
  flow__sq_places *p = flow__sq_places_of(s);
  p->txn_nstale = p->nstale;
  p->flushed = 0;
  p->keys_checked = 0;
  p->narrived = 0;
  p->names_len = 0;
}

int
flow__sq_places_precommit(flow__store *s, flow__err *err)
{
  flow__sq_places *p = flow__sq_places_of(s);
  return p->nstale >= STALE_BATCH ? stale_flush(s, err)
                                  : flow__sq_places_flush(s, err);
}

void
flow__sq_places_rollback(flow__store *s)
{
  flow__sq_places *p = flow__sq_places_of(s);
  /* The moves of this transaction are undone.  After a flush sorted the
     list all of it goes: what earlier transactions noted is left behind
     as stale entries, which lists skip and a later range removes. */
  stale_truncate(s, p->flushed ? 0 : p->txn_nstale);
  p->flushed = 0;
  p->narrived = 0;
  p->names_len = 0;
}

int
flow__sq_places_savepoint(flow__store *s, int depth, flow__err *err)
{
  flow__sq_places *p = flow__sq_places_of(s);
  p->sp_nstale[depth] = p->nstale;
  return flow__sq_places_flush(s, err);
}

void
flow__sq_places_rollback_to(flow__store *s, int depth)
{
  flow__sq_places *p = flow__sq_places_of(s);
  if (!p->flushed)
    stale_truncate(s, p->sp_nstale[depth]);
  /* All noted since the savepoint began (it began with none), and any
     that went in since are undone by ROLLBACK TO itself. */
  p->narrived = 0;
  p->names_len = 0;
}

/* ---- cases.keys ----------------------------------------------------------- */

static void
keys_free(flow__store *s)
{
  flow__sq_places *p = flow__sq_places_of(s);
  for (size_t i = 0; i < p->nkeys; i++) {
    flow__free(flow__sq_alloc(s), p->keys[i]);
    if (p->key_set)
      sqlite3_finalize(p->key_set[i]);
  }
  flow__free(flow__sq_alloc(s), p->keys);
  flow__free(flow__sq_alloc(s), p->key_set);
  sqlite3_finalize(p->key_insert);
  p->key_insert = NULL;
  p->keys = NULL;
  p->key_set = NULL;
  p->nkeys = 0;
}

/*
 * Reads the indexed fields again when the schema changed (here or in
 * another connection: a service loaded elsewhere may have indexed a new
 * field, and every writer must then keep it in keys).  PRAGMA
 * schema_version is a read of the database header; inside a transaction
 * only this connection changes the schema, and index_key says so.
 */
int
flow__sq_keys_load(flow__store *s, flow__err *err)
{
  flow__sq_places *p = flow__sq_places_of(s);
  int in_txn = flow__sq_in_txn(s);
  if (in_txn && p->keys_checked && p->keys_schema >= 0)
    return 0;
  p->keys_checked = in_txn;
  sqlite3_stmt *st = pstmt(s, P_SCHEMA_VERSION, err);
  if (st == NULL)
    return err->code;
  int rc = sqlite3_step(st);
  int64_t ver = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : -1;
  sqlite3_reset(st);
  if (rc != SQLITE_ROW)
    return flow__sq_fail(s, err, rc, "reading the schema version");
  if (ver == p->keys_schema)
    return 0;
  keys_free(s);
  if ((st = pstmt(s, P_KEY_FIELDS, err)) == NULL)
    return err->code;
  const flow__allocator *a = flow__sq_alloc(s);
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    char **v = flow__realloc(a, p->keys, (p->nkeys + 1) * sizeof *v);
    char *name = v ? flow__strdup(a, (const char *)sqlite3_column_text(
                                         st, 0))
                   : NULL;
    if (v)
      p->keys = v;
    if (name == NULL) {
      sqlite3_reset(st);
      keys_free(s);
      return flow__err_set(err, FLOW_ENOMEM, "out of memory reading the "
                           "indexed fields");
    }
    p->keys[p->nkeys++] = name;
  }
  sqlite3_reset(st);
  if (rc != SQLITE_DONE) {
    keys_free(s);
    return flow__sq_fail(s, err, rc, "reading the indexed fields");
  }
  p->key_set = flow__malloc(a, (p->nkeys ? p->nkeys : 1) * sizeof
                                                          *p->key_set);
  if (p->key_set == NULL) {
    keys_free(s);
    return flow__err_set(err, FLOW_ENOMEM, "out of memory reading the "
                         "indexed fields");
  }
  memset(p->key_set, 0, (p->nkeys ? p->nkeys : 1) * sizeof *p->key_set);
  p->keys_schema = ver;
  return 0;
}

sqlite3_stmt *
flow__sq_keys_insert(flow__store *s, const char *cols, const char *values,
                     flow__err *err)
{
  if (flow__sq_keys_load(s, err) != 0)
    return NULL;
  flow__sq_places *p = flow__sq_places_of(s);
  if (p->key_insert)
    return p->key_insert;
  flow__buf sql;
  flow__buf_init(&sql, flow__sq_alloc(s));
  flow__buf_addf(&sql, "INSERT INTO cases(%s", cols);
  for (size_t i = 0; i < p->nkeys; i++)
    flow__buf_addf(&sql, ", \"k_%s\"", p->keys[i]);
  flow__buf_addf(&sql, ") VALUES (%s", values);
  for (size_t i = 0; i < p->nkeys; i++)
    flow__buf_addf(&sql, ", json_extract(?13, '$.%s')", p->keys[i]);
  flow__buf_adds(&sql, ")");
  const char *text = flow__buf_str(&sql);
  int rc = text ? sqlite3_prepare_v3(flow__sq_db(s), text, -1,
                                     SQLITE_PREPARE_PERSISTENT,
                                     &p->key_insert, NULL)
                : SQLITE_NOMEM;
  flow__buf_free(&sql);
  if (rc != SQLITE_OK) {
    flow__sq_fail(s, err, rc, "preparing a new case's indexed fields");
    return NULL;
  }
  return p->key_insert;
}

int
flow__sq_keys_write(flow__store *s, int64_t id, uint64_t changed,
                    flow__err *err)
{
  int rc = flow__sq_keys_load(s, err);
  flow__sq_places *p = flow__sq_places_of(s);
  for (size_t i = 0; rc == 0 && i < p->nkeys; i++) {
    if (!(changed >> (i < 63 ? i : 63) & 1))
      continue;
    if (p->key_set[i] == NULL) {
      /* The guard keeps an unchanged value's index entry as it is. */
      char sql[512];
      const char *f = p->keys[i];
      snprintf(sql, sizeof sql,
               "UPDATE cases SET \"k_%s\" = json_extract(keys, '$.%s')"
               " WHERE id = ?1 AND \"k_%s\" IS NOT json_extract(keys,"
               " '$.%s')",
               f, f, f, f);
      int src = sqlite3_prepare_v3(flow__sq_db(s), sql, -1,
                                   SQLITE_PREPARE_PERSISTENT, &p->key_set[i],
                                   NULL);
      if (src != SQLITE_OK)
        return flow__sq_fail(s, err, src, "preparing an indexed field");
    }
    sqlite3_bind_int64(p->key_set[i], 1, id);
    rc = flow__sq_done(s, p->key_set[i], err,
                       "updating a case's indexed fields");
  }
  return rc;
}

int
flow__sq_key_fields(flow__store *s, const char *const **out, size_t *n,
                    flow__err *err)
{
  int rc = flow__sq_keys_load(s, err);
  flow__sq_places *p = flow__sq_places_of(s);
  *out = (const char *const *)p->keys;
  *n = rc == 0 ? p->nkeys : 0;
  return rc;
}

int
flow__sq_key_indexed(flow__store *s, const char *field)
{
  flow__sq_places *p = flow__sq_places_of(s);
  for (size_t i = 0; i < p->nkeys; i++)
    if (strcmp(p->keys[i], field) == 0)
      return 1;
  return 0;
}

/* Whether cases has a column of this name (1), or not (0); <0 on error. */
static int
has_column(flow__store *s, const char *name, flow__err *err)
{
  sqlite3_stmt *st = pstmt(s, P_HAS_COLUMN, err);
  if (st == NULL)
    return -1;
  sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
  int rc = sqlite3_step(st);
  int n = rc == SQLITE_ROW ? sqlite3_column_int(st, 0) : 0;
  sqlite3_reset(st);
  if (rc != SQLITE_ROW) {
    flow__sq_fail(s, err, rc, "reading the columns of cases");
    return -1;
  }
  return n > 0;
}

/* Runs one statement of SQL made from fmt; what for, for the message. */
static int
exec_fmt(flow__store *s, const char *what, flow__err *err, const char *fmt,
         ...)
{
  char sql[512];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(sql, sizeof sql, fmt, ap);
  va_end(ap);
  if (n < 0 || (size_t)n >= sizeof sql)
    return flow__err_set(err, FLOW_EINVAL, "%s: field name too long", what);
  int rc = sqlite3_exec(flow__sq_db(s), sql, NULL, NULL, NULL);
  return rc == SQLITE_OK ? 0 : flow__sq_fail(s, err, rc, what);
}

/* Indexes field in a column of its own, k_FIELD, filled from every
   case's keys; from_data: keys gets the field's value from data first.
   field is an identifier (checked by the loader), safe to splice.  The
   column stays when another connection made it already, or an index of
   it was dropped. */
static int
make_key_index(flow__store *s, const char *field, int from_data,
               flow__err *err)
{
  const char *what = "creating a field index";
  char col[80];
  if (snprintf(col, sizeof col, "k_%s", field) >= (int)sizeof col)
    return flow__err_set(err, FLOW_EINVAL, "field name too long: %s", field);
  int has = has_column(s, col, err);
  if (has < 0)
    return err->code;
  int rc = 0;
  if (from_data)
    rc = exec_fmt(s, what, err,
                  "UPDATE cases SET keys = json_set(COALESCE(keys, '{}'),"
                  " '$.%s', json_extract(data, '$.%s')) WHERE"
                  " json_extract(data, '$.%s') IS NOT NULL",
                  field, field, field);
  if (rc == 0 && !has)
    rc = exec_fmt(s, what, err, "ALTER TABLE cases ADD COLUMN \"%s\"", col);
  if (rc == 0)
    rc = exec_fmt(s, what, err,
                  "UPDATE cases SET \"%s\" = json_extract(keys, '$.%s')"
                  " WHERE keys IS NOT NULL",
                  col, field);
  if (rc == 0)
    rc = exec_fmt(s, what, err,
                  "CREATE INDEX IF NOT EXISTS cases_%s ON cases(\"%s\")"
                  " WHERE \"%s\" IS NOT NULL",
                  col, col, col);
  if (rc != 0)
    return rc;
  flow__sq_places *p = flow__sq_places_of(s);
  p->keys_schema = -1; /* read again at the next use */
  p->keys_checked = 0;
  return 0;
}

int
flow__sq_index_field(flow__store *s, const char *field, flow__err *err)
{
  int rc = flow__sq_keys_load(s, err);
  if (rc != 0 || flow__sq_key_indexed(s, field))
    return rc;
  return make_key_index(s, field, 1, err);
}

/* Makes each index named PREFIX_FIELD (an older schema's index of a
   field) an index of the field's own column, and drops it; from_data as
   for make_key_index. */
static int
convert_indexes(flow__store *s, const char *prefix, int from_data,
                flow__err *err)
{
  const flow__allocator *a = flow__sq_alloc(s);
  char sql[200];
  snprintf(sql, sizeof sql,
           "SELECT substr(name, %d) FROM sqlite_master WHERE type = 'index'"
           " AND name LIKE '%s\\_%%' ESCAPE '\\'",
           (int)strlen(prefix) + 2, prefix);
  sqlite3_stmt *st = NULL;
  int rc = sqlite3_prepare_v2(flow__sq_db(s), sql, -1, &st, NULL);
  if (rc != SQLITE_OK)
    return flow__sq_fail(s, err, rc, "reading the field indexes");
  char **names = NULL;
  size_t n = 0;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    char **v = flow__realloc(a, names, (n + 1) * sizeof *v);
    if (v == NULL)
      break;
    names = v;
    if ((names[n] = flow__strdup(a, (const char *)sqlite3_column_text(
                                        st, 0))) == NULL)
      break;
    n++;
  }
  sqlite3_finalize(st);
  int ret = rc == SQLITE_DONE ? 0
            : rc == SQLITE_ROW ? flow__err_set(err, FLOW_ENOMEM, "out of memory")
                               : flow__sq_fail(s, err, rc,
                                               "reading the field indexes");
  for (size_t i = 0; i < n; i++) {
    if (ret == 0)
      ret = make_key_index(s, names[i], from_data, err);
    if (ret == 0)
      ret = exec_fmt(s, "dropping an old field index", err,
                     "DROP INDEX IF EXISTS %s_%s", prefix, names[i]);
    flow__free(a, names[i]);
  }
  flow__free(a, names);
  return ret;
}

int
flow__sq_convert_field_indexes(flow__store *s, flow__err *err)
{
  return convert_indexes(s, "cases_data", 1, err);
}

int
flow__sq_split_field_indexes(flow__store *s, flow__err *err)
{
  return convert_indexes(s, "cases_key", 0, err);
}

/* ---- the connection ------------------------------------------------------ */

void
flow__sq_places_close(flow__store *s)
{
  flow__sq_places *p = flow__sq_places_of(s);
  sqlite3 *db = flow__sq_db(s);
  /* What is still noted goes now, if the database lets us; entries left
     behind (a crash, a busy database) only cost a skipped row when that
     state is listed. */
  if (p->nstale > 0 && db && sqlite3_get_autocommit(db) &&
      sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) == SQLITE_OK) {
    flow__err err;
    flow__err_clear(&err);
    if (stale_flush(s, &err) == 0)
      sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    else
      sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
  }
  stale_truncate(s, 0);
  flow__free(flow__sq_alloc(s), p->stale);
  p->stale = NULL;
  flow__free(flow__sq_alloc(s), p->arrived);
  flow__free(flow__sq_alloc(s), p->arrived_names);
  p->arrived = NULL;
  p->arrived_names = NULL;
  p->narrived = p->cap_arrived = p->names_len = p->names_cap = 0;
  keys_free(s);
  for (int i = 0; i < FLOW__SQ_PLACES_STMTS; i++) {
    sqlite3_finalize(p->st[i]);
    p->st[i] = NULL;
  }
}
