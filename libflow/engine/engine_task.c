/*
 * Tasks for people: created by flow.task in a transition, then claimed,
 * released, completed (the task's `done` event, in the same transaction)
 * or cancelled through the API.  A task ends, cancelled, when its case
 * leaves the state that created it (unless kept) or closes: that is part
 * of the transition (flow__tasks_persist).
 *
 * Every change reads the task, checks it, and moves it on only from the
 * status it read (store.h: task_set), so two people claiming one task at
 * once, on one engine or two, get one claim and one FLOW_ECONFLICT.
 */
#include "engine/engine.h"

#include <stdio.h>
#include <string.h>

/* ---- JSON of a task ---------------------------------------------------- */

static void
set_time(json_t *o, const char *key, int64_t t)
{
  json_object_set_new(o, key, flow__time_json(t));
}

static void
set_text(json_t *o, const char *key, const char *v)
{
  json_object_set_new(o, key, v ? json_string(v) : json_null());
}

static json_t *
task_json(const flow__task_row *r, int64_t now)
{
  char id[24], cid[24];
  snprintf(id, sizeof id, "%lld", (long long)r->id);
  snprintf(cid, sizeof cid, "%lld", (long long)r->case_id);
  json_t *o = json_pack("{s:s, s:s, s:s, s:s}", "id", id, "case", cid, "name",
                        r->name, "status", r->status);
  if (o == NULL)
    return NULL;
  set_text(o, "title", r->title);
  set_text(o, "team", r->team);
  set_text(o, "assignee", r->assignee);
  set_text(o, "claimed_by", r->claimed_by);
  set_text(o, "done", r->done);
  set_text(o, "state", r->state);
  set_text(o, "finished_by", r->finished_by);
  set_time(o, "due_at", r->due_at);
  set_time(o, "created_at", r->created_at);
  set_time(o, "finished_at", r->finished_at);
  int live = strcmp(r->status, "open") == 0 ||
             strcmp(r->status, "claimed") == 0;
  /* Overdue from its due moment on: the moment the task_overdue timer
     fires and the host is told. */
  json_object_set_new(o, "overdue", json_boolean(live &&
                                                 r->due_at != FLOW__NO_TIME &&
                                                 r->due_at <= now));
  json_t *form = json_loads(r->form, 0, NULL);
  json_object_set_new(o, "form", form ? form : json_object());
  json_t *outcome = r->outcome ? json_loads(r->outcome, 0, NULL) : NULL;
  json_object_set_new(o, "outcome", outcome ? outcome : json_null());
  json_t *roles = r->roles ? json_loads(r->roles, 0, NULL) : NULL;
  json_object_set_new(o, "roles", roles ? roles : json_null());
  return o;
}

typedef struct list_ctx {
  json_t *arr;
  int64_t now;
} list_ctx;

static int
list_item(void *ctx, const flow__task_row *r)
{
  list_ctx *l = ctx;
  json_t *o = task_json(r, l->now);
  return o && json_array_append_new(l->arr, o) == 0 ? 0 : FLOW_ENOMEM;
}

/* A task's note for the subscribers: type, task, case, name, and more. */
static void
note_task(flow_engine *e, const char *type, const flow__task_row *r,
          const char *by, int64_t now)
{
  char id[24], cid[24], at[32];
  snprintf(id, sizeof id, "%lld", (long long)r->id);
  snprintf(cid, sizeof cid, "%lld", (long long)r->case_id);
  flow__time_format(at, sizeof at, now);
  json_t *n = json_pack("{s:s, s:s, s:s, s:s, s:s}", "type", type, "task", id,
                        "case", cid, "name", r->name, "at", at);
  if (n && r->team)
    json_object_set_new(n, "team", json_string(r->team));
  if (n && r->assignee)
    json_object_set_new(n, "assignee", json_string(r->assignee));
  if (n && by)
    json_object_set_new(n, "by", json_string(by));
  if (n && r->due_at != FLOW__NO_TIME)
    set_time(n, "due_at", r->due_at);
  flow__engine_note(e, n);
}

/* ---- inside a transition ----------------------------------------------- */

typedef struct end_ctx {
  flow_engine *e;
  int64_t now;
  int listened;
} end_ctx;

static int
ended(void *ctx, const flow__task_row *r)
{
  end_ctx *c = ctx;
  if (c->listened)
    note_task(c->e, "task_cancelled", r, r->finished_by, c->now);
  return 0;
}

int
flow__tasks_persist(flow_engine *e, const flow__case_row *row,
                    const char *state, int moved, int had_tasks,
                    json_t *calls, int64_t now, const char *cause,
                    flow__err *err)
{
  int listened = flow__engine_listened(e, strcmp(cause, "call") == 0);
  end_ctx c = { e, now, listened };
  int rc = 0;
  /* A case that never had a task costs nothing here. */
  if (!had_tasks)
    ;
  else if (row->closed)
    rc = e->vt->task_end_case(e->store, row->id, NULL, "case closed", now,
                              ended, &c, err);
  else if (moved)
    rc = e->vt->task_end_case(e->store, row->id, state, "left the state",
                              now, ended, &c, err);
  /* flow.cancel_task, before the tasks this transition creates: a
     cancel and a new task of the same name is a hand-over. */
  for (size_t i = 0; rc == 0 && had_tasks && !row->closed && calls &&
                     i < json_array_size(calls);
       i++) {
    const char *name = json_string_value(
        json_object_get(json_array_get(calls, i), "cancel_task"));
    if (name)
      rc = e->vt->task_cancel_named(e->store, row->id, name,
                                    "cancelled by the service", now, ended,
                                    &c, err);
  }
  int n = 0;
  for (size_t i = 0; rc == 0 && calls && i < json_array_size(calls); i++) {
    json_t *t = json_object_get(json_array_get(calls, i), "task");
    if (t == NULL || row->closed)
      continue;
    flow__task_row r = {
      .case_id = row->id,
      .seq = row->seq,
      .n = n++,
      .name = json_string_value(json_object_get(t, "name")),
      .title = json_string_value(json_object_get(t, "title")),
      .team = json_string_value(json_object_get(t, "team")),
      .assignee = json_string_value(json_object_get(t, "assignee")),
      .done = json_string_value(json_object_get(t, "done")),
      .state = json_is_true(json_object_get(t, "keep")) ? NULL : state,
      .due_at = FLOW__NO_TIME,
      .status = "open",
      .created_at = now,
      .finished_at = FLOW__NO_TIME,
    };
    const char *due = json_string_value(json_object_get(t, "due"));
    if (due && flow__time_parse(due, &r.due_at) != 0) {
      flow__duration d; /* not a time: a duration from now */
      if (flow__duration_parse(due, &d, err) != 0 ||
          flow__calendar_add(&e->cal, now, &d, &r.due_at) != 0)
        return flow__err_set(err, FLOW_ESCRIPT,
                             "flow.task('%s'): due '%s' overflows", r.name,
                             due);
    }
    char *form = flow__json_owned(&e->alloc, json_object_get(t, "form"));
    if (form == NULL)
      return flow__err_set(err, FLOW_ENOMEM, "out of memory writing a task");
    r.form = form;
    json_t *roles = json_object_get(t, "roles");
    char *rtext = roles ? flow__json_owned(&e->alloc, roles) : NULL;
    if (roles && rtext == NULL) {
      flow_free(form);
      return flow__err_set(err, FLOW_ENOMEM, "out of memory writing a task");
    }
    r.roles = rtext;
    rc = e->vt->task_add(e->store, &r, &r.id, err);
    flow_free(form);
    flow_free(rtext);
    r.roles = NULL;
    if (rc == 0 && r.due_at != FLOW__NO_TIME) {
      /* Overdue is told when it happens: a timer of the task's state. */
      char tid[24];
      snprintf(tid, sizeof tid, "%lld", (long long)r.id);
      char payload[64];
      snprintf(payload, sizeof payload, "{\"task\":\"%s\"}", tid);
      flow__timer_row tr = { 0,       row->id,  r.due_at, "task_due",
                             "task_overdue", payload, NULL, r.state,
                             "pending", NULL, row->seq };
      rc = e->vt->timer_insert(e->store, &tr, err);
      e->next_due = INT64_MIN;
    }
    if (rc == 0 && listened)
      note_task(e, "task_created", &r, NULL, now);
  }
  return rc;
}

/* ---- the API ------------------------------------------------------------- */

/* One task, read inside the caller's transaction: its JSON (owned). */
typedef struct one_ctx {
  json_t *task;
  int64_t now;
} one_ctx;

static int
one_item(void *ctx, const flow__task_row *r)
{
  one_ctx *o = ctx;
  json_decref(o->task);
  o->task = task_json(r, o->now);
  return o->task ? 0 : FLOW_ENOMEM;
}

static int
read_task(flow_engine *e, const char *task_id, int64_t *id, json_t **out)
{
  *out = NULL;
  int rc = flow__parse_id(e, task_id, "task", id);
  if (rc != 0)
    return rc;
  flow__err err;
  flow__err_clear(&err);
  one_ctx o = { NULL, flow_engine_now(e) };
  flow__task_query q = { .id = *id };
  if ((rc = e->vt->task_list(e->store, &q, 1, one_item, &o, &err)) != 0) {
    json_decref(o.task);
    return flow__engine_fail_err(e, &err);
  }
  if (o.task == NULL)
    return flow__engine_fail(e, FLOW_ENOTFOUND, "there is no task %lld",
                             (long long)*id);
  *out = o.task;
  return 0;
}

static const char *
jstr(json_t *o, const char *key)
{
  return json_string_value(json_object_get(o, key));
}

/* The row a task's JSON describes, for notes. */
static flow__task_row
row_of(json_t *t, int64_t id)
{
  flow__task_row r = { .id = id, .name = jstr(t, "name"),
                       .team = jstr(t, "team"),
                       .assignee = jstr(t, "assignee"),
                       .due_at = FLOW__NO_TIME };
  r.case_id = strtoll(jstr(t, "case"), NULL, 10);
  return r;
}

static int
need_actor(flow_engine *e, const flow_actor *actor, const char *what)
{
  int rc = flow__case_check_actor(e, actor);
  if (rc == 0 && (actor == NULL || actor->id == NULL))
    rc = flow__engine_fail(e, FLOW_EINVAL,
                           "%s a task needs an actor with an id (who does "
                           "the work)",
                           what);
  return rc;
}

/* FLOW_ECONFLICT for a task that is finished. */
static int
finished(flow_engine *e, int64_t id, json_t *t)
{
  const char *status = jstr(t, "status");
  if (strcmp(status, "done") == 0 || strcmp(status, "cancelled") == 0)
    return flow__engine_fail(e, FLOW_ECONFLICT, "task %lld is %s already",
                             (long long)id, status);
  return 0;
}

static int
assigned_elsewhere(flow_engine *e, int64_t id, json_t *t,
                   const flow_actor *actor)
{
  const char *to = jstr(t, "assignee");
  if (to && strcmp(to, actor->id) != 0)
    return flow__engine_fail(e, FLOW_EPERM,
                             "task %lld is assigned to %s, not to %s",
                             (long long)id, to, actor->id);
  /* flow.task{ roles = ... }: a person with one of them. */
  json_t *roles = json_object_get(t, "roles");
  if (json_array_size(roles) == 0)
    return 0;
  char need[256], has[256];
  flow__join jn, jh;
  flow__join_init(&jn, need, sizeof need);
  flow__join_init(&jh, has, sizeof has);
  size_t i;
  json_t *r;
  json_array_foreach(roles, i, r) {
    if (flow__actor_has_role(actor, json_string_value(r)))
      return 0;
    flow__join_add(&jn, " or ", json_string_value(r));
  }
  for (i = 0; i < actor->nroles; i++)
    flow__join_add(&jh, ", ", actor->roles[i]);
  return flow__engine_fail(e, FLOW_EPERM,
                           "task %lld (%s) needs the role %s, and %s has "
                           "%s%s",
                           (long long)id, jstr(t, "name"), need, actor->id,
                           has[0] ? "only " : "no roles", has);
}

int
flow_tasks_list(char **out, flow_engine *engine, const flow_task_query *q)
{
  if (out)
    *out = NULL;
  if (engine == NULL || out == NULL)
    return flow__engine_misuse(engine, "flow_tasks_list: out is NULL");
  flow_engine *e = engine;
  flow_task_query none = { 0 };
  if (q == NULL)
    q = &none;
  flow__task_query sq = { .team = q->team, .assignee = q->assignee,
                          .status = q->status };
  int rc;
  if (q->case_id && (rc = flow__case_parse_id(e, q->case_id, &sq.case_id)))
    return rc;
  static const char *const statuses[] = { "open", "claimed", "done",
                                          "cancelled", NULL };
  int known = q->status == NULL;
  for (int i = 0; !known && statuses[i]; i++)
    known = strcmp(q->status, statuses[i]) == 0;
  if (!known)
    return flow__engine_fail(e, FLOW_EINVAL,
                             "'%.40s' is not a task status (open, claimed, "
                             "done or cancelled)",
                             q->status);
  int64_t now = flow_engine_now(e);
  if (q->overdue)
    sq.due_before = now == INT64_MAX ? now : now + 1; /* due_at <= now */
  list_ctx l = { json_array(), now };
  if (l.arr == NULL)
    return flow__engine_fail(e, FLOW_ENOMEM, "out of memory");
  flow__err err;
  flow__err_clear(&err);
  if ((rc = e->vt->task_list(e->store, &sq, FLOW__MAX_LIST, list_item, &l,
                             &err)) != 0) {
    json_decref(l.arr);
    return flow__engine_fail_err(e, &err);
  }
  flow__err_clear(&e->err);
  return flow__engine_owned_json(e, out, l.arr);
}

/* claim (release = 0) or release (1) */
static int
claim_or_release(flow_engine *e, const char *task_id, const flow_actor *actor,
                 int release)
{
  int rc = need_actor(e, actor, release ? "releasing" : "claiming");
  if (rc != 0 || (rc = flow__engine_begin(e)) != 0)
    return rc;
  int64_t id = 0;
  json_t *t = NULL;
  flow__err err;
  flow__err_clear(&err);
  if ((rc = read_task(e, task_id, &id, &t)) != 0 ||
      (rc = finished(e, id, t)) != 0)
    goto done;
  const char *status = jstr(t, "status");
  const char *holder = jstr(t, "claimed_by");
  int64_t now = flow_engine_now(e);
  if (!release) {
    if (holder && strcmp(holder, actor->id) == 0)
      goto done; /* holds it already */
    if (holder) {
      rc = flow__engine_fail(e, FLOW_ECONFLICT,
                             "task %lld is claimed by %s already",
                             (long long)id, holder);
      goto done;
    }
    if ((rc = assigned_elsewhere(e, id, t, actor)) != 0)
      goto done;
    int claimed = 0;
    if ((rc = e->vt->task_claim(e->store, id, actor->id, &claimed, &err)))
      rc = flow__engine_fail_err(e, &err);
    else if (!claimed)
      rc = flow__engine_fail(e, FLOW_ECONFLICT,
                             "task %lld was claimed by someone else first",
                             (long long)id);
  } else {
    if (strcmp(status, "claimed") != 0) {
      rc = flow__engine_fail(e, FLOW_ECONFLICT,
                             "task %lld is not claimed: there is nothing to "
                             "release",
                             (long long)id);
      goto done;
    }
    if (strcmp(holder, actor->id) != 0) {
      rc = flow__engine_fail(e, FLOW_EPERM,
                             "task %lld is claimed by %s; only %s can "
                             "release it",
                             (long long)id, holder, holder);
      goto done;
    }
    flow__task_row to = { .status = "open", .finished_at = FLOW__NO_TIME };
    int set = 0;
    if ((rc = e->vt->task_set(e->store, id, "claimed", actor->id, &to, &set,
                              &err)) != 0)
      rc = flow__engine_fail_err(e, &err);
    else if (!set)
      rc = flow__engine_fail(e, FLOW_ECONFLICT,
                             "task %lld changed while it was released",
                             (long long)id);
  }
  if (rc == 0 && flow__engine_listened(e, 1)) {
    flow__task_row r = row_of(t, id);
    note_task(e, release ? "task_released" : "task_claimed", &r, actor->id,
              now);
  }
done:
  json_decref(t);
  return flow__engine_finish(e, rc, NULL);
}

int
flow_task_claim(flow_engine *engine, const char *task_id,
                const flow_actor *actor)
{
  if (engine == NULL)
    return FLOW_EMISUSE;
  return claim_or_release(engine, task_id, actor, 0);
}

int
flow_task_release(flow_engine *engine, const char *task_id,
                  const flow_actor *actor)
{
  if (engine == NULL)
    return FLOW_EMISUSE;
  return claim_or_release(engine, task_id, actor, 1);
}

/* Checks outcome against the task's form, with the case's sandbox for
   patterns: FLOW_EDATA naming every failing field. */
static int
check_outcome(flow_engine *e, int64_t id, json_t *t, json_t *outcome)
{
  flow__err err;
  flow__err_clear(&err);
  char name[96];
  snprintf(name, sizeof name, "the form of task %lld (%s)", (long long)id,
           jstr(t, "name"));
  flow__service *form = NULL;
  int rc = flow__form_read(&e->alloc, json_object_get(t, "form"), name, &form,
                           &err);
  if (rc != 0)
    return flow__engine_fail_err(e, &err);
  flow__case_row row;
  flow__compiled *comp = NULL;
  int64_t cid = strtoll(jstr(t, "case"), NULL, 10);
  if ((rc = e->vt->case_get(e->store, cid, &row, &err)) != 0) {
    flow__service_free(&e->alloc, form);
    return flow__engine_fail_err(e, &err);
  }
  rc = flow__engine_service(e, row.service, row.version, &comp);
  flow__case_row_clear(&e->alloc, &row);
  if (rc == 0) {
    rc = flow__fields_validate(form, outcome, flow__sandbox_match, comp->sb,
                               &err);
    if (rc == FLOW_EDATA) {
      /* "case data is not valid: x: ..." -> about the outcome */
      const char *m = strchr(err.msg, ':');
      rc = flow__engine_fail(e, FLOW_EDATA,
                             "the outcome of task %lld (%s) is not valid:%s",
                             (long long)id, jstr(t, "name"), m ? m + 1 : "");
    } else if (rc != 0) {
      flow__engine_fail_err(e, &err);
    }
  }
  flow__service_free(&e->alloc, form);
  return rc;
}

int
flow_task_complete(char **out, flow_engine *engine, const char *task_id,
                   const char *outcome_json, const flow_actor *actor)
{
  if (out)
    *out = NULL;
  if (engine == NULL)
    return FLOW_EMISUSE;
  flow_engine *e = engine;
  int rc = need_actor(e, actor, "completing");
  if (rc != 0)
    return rc;
  json_t *outcome = NULL;
  flow__err err;
  flow__err_clear(&err);
  if ((rc = flow__json_parse_object(outcome_json, "the task's outcome",
                                    &outcome, &err)) != 0)
    return flow__engine_fail_err(e, &err);
  if ((rc = flow__engine_begin(e)) != 0) {
    json_decref(outcome);
    return rc;
  }
  int64_t id = 0;
  json_t *t = NULL, *payload = NULL, *origin = NULL;
  char *text = NULL;
  if ((rc = read_task(e, task_id, &id, &t)) != 0 ||
      (rc = finished(e, id, t)) != 0)
    goto done;
  const char *status = jstr(t, "status");
  const char *holder = jstr(t, "claimed_by");
  if (holder && strcmp(holder, actor->id) != 0) {
    rc = flow__engine_fail(e, FLOW_ECONFLICT,
                           "task %lld is claimed by %s; only %s can complete "
                           "it (or %s releases it first)",
                           (long long)id, holder, holder, holder);
    goto done;
  }
  if ((rc = assigned_elsewhere(e, id, t, actor)) != 0 ||
      (rc = check_outcome(e, id, t, outcome)) != 0)
    goto done;
  int64_t now = flow_engine_now(e);
  if ((text = flow__json_owned(&e->alloc, outcome)) == NULL) {
    rc = flow__engine_fail(e, FLOW_ENOMEM, "out of memory");
    goto done;
  }
  flow__task_row to = { .status = "done", .claimed_by = actor->id,
                        .outcome = text, .finished_by = actor->id,
                        .finished_at = now };
  int set = 0;
  if ((rc = e->vt->task_set(e->store, id, status, holder, &to, &set, &err))) {
    rc = flow__engine_fail_err(e, &err);
    goto done;
  }
  if (!set) {
    rc = flow__engine_fail(e, FLOW_ECONFLICT,
                           "task %lld changed while it was completed",
                           (long long)id);
    goto done;
  }
  /* The completion, as an event of the case. */
  const char *done = jstr(t, "done");
  payload = json_pack("{s:s, s:O, s:s}", "task", jstr(t, "name"), "outcome",
                      outcome, "by", actor->id);
  origin = json_pack("{s:s, s:s}", "id", jstr(t, "id"), "name",
                     jstr(t, "name"));
  if (payload == NULL || origin == NULL) {
    rc = flow__engine_fail(e, FLOW_ENOMEM, "out of memory");
    goto done;
  }
  e->writes++; /* the task row: the event below may write nothing */
  rc = flow__case_apply_txn(e, strtoll(jstr(t, "case"), NULL, 10),
                            done ? done : "task_done", payload, actor,
                            done ? FLOW__APPLY_TASK : FLOW__APPLY_TASK_DONE, NULL,
                            origin, out);
  if (rc == 0 && flow__engine_listened(e, 1)) {
    flow__task_row r = row_of(t, id);
    note_task(e, "task_completed", &r, actor->id, now);
  }
done:
  flow_free(text);
  json_decref(t);
  json_decref(outcome);
  json_decref(payload);
  json_decref(origin);
  return flow__engine_finish(e, rc, out);
}

int
flow_task_cancel(flow_engine *engine, const char *task_id,
                 const flow_actor *actor)
{
  if (engine == NULL)
    return FLOW_EMISUSE;
  flow_engine *e = engine;
  int rc = flow__engine_begin_as(e, actor);
  if (rc != 0)
    return rc;
  int64_t id = 0;
  json_t *t = NULL;
  flow__err err;
  flow__err_clear(&err);
  if ((rc = read_task(e, task_id, &id, &t)) != 0 ||
      (rc = finished(e, id, t)) != 0)
    goto done;
  const char *by = actor && actor->id ? actor->id : "anonymous";
  int64_t now = flow_engine_now(e);
  flow__task_row to = { .status = "cancelled",
                        .claimed_by = jstr(t, "claimed_by"),
                        .finished_by = by, .finished_at = now };
  int set = 0;
  if ((rc = e->vt->task_set(e->store, id, jstr(t, "status"), NULL, &to, &set,
                            &err)) != 0)
    rc = flow__engine_fail_err(e, &err);
  else if (!set)
    rc = flow__engine_fail(e, FLOW_ECONFLICT,
                           "task %lld changed while it was cancelled",
                           (long long)id);
  if (rc == 0 && flow__engine_listened(e, 1)) {
    flow__task_row r = row_of(t, id);
    note_task(e, "task_cancelled", &r, by, now);
  }
done:
  json_decref(t);
  return flow__engine_finish(e, rc, NULL);
}

int
flow__task_due(flow_engine *e, int64_t case_id, json_t *payload, int64_t now)
{
  (void)case_id;
  const char *tid = json_string_value(json_object_get(payload, "task"));
  if (tid == NULL || !flow__engine_listened(e, 0))
    return 0;
  int64_t id = 0;
  json_t *t = NULL;
  int rc = read_task(e, tid, &id, &t);
  if (rc == FLOW_ENOTFOUND || rc == FLOW_EINVAL)
    return 0;
  if (rc != 0)
    return rc;
  const char *status = jstr(t, "status");
  if (strcmp(status, "open") == 0 || strcmp(status, "claimed") == 0) {
    flow__task_row r = row_of(t, id);
    r.due_at = FLOW__NO_TIME;
    note_task(e, "task_overdue", &r, jstr(t, "claimed_by"), now);
  }
  json_decref(t);
  return 0;
}
