/*
 * The state diagram of a service script (flow_service_graph): Graphviz DOT
 * or a Mermaid stateDiagram-v2, drawn from the compiled definition.
 *
 * Edges come from `on` entries (labelled with the event, the roles it
 * needs in brackets and "if guard" when a guard may refuse it) and from
 * `after` timers ("after 2 working days").  A timer that fires an event
 * adds "after ..." to that event's edge.  Where a handler picks the next
 * state, nothing static says which: the diagram shows dashed edges to the
 * states the handler's own lines return as string literals (return
 * "assigned"), a loop back to its own state when it may return no value
 * (it stays), and a note saying the handler decides when it returns
 * something else.  An event marked internal = true (only the engine sends
 * it) has "(internal)" after its label, and in DOT a grey edge.
 * `flow check` reads the same returns (engine_lint.c), but only to name
 * states the script itself leads to.
 */
#include "engine/engine.h"

#include <string.h>

#include "script/script_inspect.h"
#include "script/script_lex.h"

typedef struct edge {
  const char *from, *to; /* to NULL: the handler decides */
  char label[256];
  int dashed;
  int internal; /* only the engine sends the event (internal = true) */
} edge;

typedef struct graph {
  flow_engine *e;
  const flow__service *svc;
  flow__sandbox *sb; /* where svc's functions live */
  edge *edges;
  size_t n, cap;
  int oom;
} graph;

static void
add_edge(graph *g, const char *from, const char *to, const char *label,
         int dashed, int internal)
{
  if (g->n == g->cap) {
    size_t cap = g->cap ? g->cap * 2 : 16;
    edge *v = flow__realloc(&g->e->alloc, g->edges, cap * sizeof *v);
    if (v == NULL) {
      g->oom = 1;
      return;
    }
    g->edges = v;
    g->cap = cap;
  }
  edge *ed = &g->edges[g->n++];
  ed->from = from;
  ed->to = to;
  ed->dashed = dashed;
  ed->internal = internal;
  snprintf(ed->label, sizeof ed->label, "%s", label);
}

/* found[] collects the states a handler returns, each once. */
typedef struct returns {
  const flow__service *svc;
  const flow__state **found;
  size_t nfound;
} returns;

static void
returned(void *ctx, const char *text, size_t len)
{
  returns *r = ctx;
  char name[FLOW__MAX_NAME + 1];
  if (len > FLOW__MAX_NAME)
    return; /* no state has so long a name */
  memcpy(name, text, len);
  name[len] = 0;
  const flow__state *st = flow__service_state(r->svc, name);
  for (size_t i = 0; st && i < r->nfound; i++)
    if (r->found[i] == st)
      return;
  if (st && r->nfound < r->svc->nstates)
    r->found[r->nfound++] = st;
}

/* "after 2 working days" for each timer of st that fires event. */
static void
timer_suffix(const flow__state *st, const char *event, char *buf, size_t len)
{
  size_t n = 0;
  buf[0] = 0;
  for (size_t i = 0; i < st->nafter && n < len; i++) {
    const flow__after *a = &st->after[i];
    if (a->event && strcmp(a->event, event) == 0) {
      int w = snprintf(buf + n, len - n, ", after %s", a->duration);
      if (w < 0)
        break;
      n += (size_t)w;
    }
  }
}

static void
collect_edges(graph *g, const flow__state **states)
{
  const flow__service *svc = g->svc;
  const flow__state **found =
      flow__calloc(&g->e->alloc, svc->nstates ? svc->nstates : 1,
                   sizeof *found);
  if (found == NULL) {
    g->oom = 1;
    return;
  }
  /* The handlers' `return "state"`s, read from the source's tokens. */
  flow__lua_tokens tk;
  int have_tokens = flow__lua_lex(&tk, &g->e->alloc, svc->source,
                                  svc->source_len) == 0;
  if (!have_tokens)
    g->oom = 1;
  for (size_t i = 0; i < svc->nstates; i++) {
    const flow__state *st = states[i];
    for (size_t j = 0; j < st->non; j++) {
      const flow__trans *tr = &st->on[j];
      char label[256], roles[128] = "", timers[96];
      size_t n = 0;
      for (size_t r = 0; r < tr->nroles && n < sizeof roles; r++) {
        int w = snprintf(roles + n, sizeof roles - n, "%s%s%s",
                         r ? ", " : " [", tr->roles[r],
                         r + 1 == tr->nroles ? "]" : "");
        if (w < 0)
          break;
        n += (size_t)w;
      }
      timer_suffix(st, tr->event, timers, sizeof timers);
      snprintf(label, sizeof label, "%s%s%s%s", tr->event, roles,
               tr->guard != FLOW__NOREF ? " if guard" : "", timers);
      if (tr->target)
        add_edge(g, st->name, tr->target, label, 0, tr->internal);
      if (tr->handler == FLOW__NOREF)
        continue;
      int first, last, lit = 0, bare = 0, other = 0, lines = 0, falls = 0;
      returns ret = { svc, found, 0 };
      if (have_tokens &&
          flow__sandbox_func_lines(g->sb, tr->handler, &first, &last) == 0) {
        lines = 1;
        flow__lua_literal_returns(&tk, first, last, returned, &ret);
        flow__lua_return_kinds(&tk, first, last, &lit, &bare, &other);
        falls = flow__lua_falls_through(&tk, first, last);
      }
      size_t nfound = ret.nfound;
      for (size_t k = 0; k < nfound; k++)
        if (tr->target == NULL || strcmp(found[k]->name, tr->target) != 0)
          add_edge(g, st->name, found[k]->name, label, 1, tr->internal);
      /* A bare `return`, or code that can reach the function's end without
         one, stays: a loop on its state. */
      int stays = lines && (bare > 0 || falls);
      if (tr->target == NULL && stays)
        add_edge(g, st->name, st->name, label, 1, tr->internal);
      /* A return of anything but a state's name: the handler decides,
         whatever plain returns it has besides. */
      if (tr->target == NULL && (other > 0 || (nfound == 0 && !stays)))
        add_edge(g, st->name, NULL, label, 1, tr->internal);
    }
    for (size_t j = 0; j < st->nafter; j++) {
      const flow__after *a = &st->after[j];
      if (a->target) {
        char label[160];
        snprintf(label, sizeof label, "after %s", a->duration);
        add_edge(g, st->name, a->target, label, 0, 0);
      }
    }
  }
  flow__lua_tokens_free(&tk);
  flow__free(&g->e->alloc, found);
}

/* A DOT string: quotes and backslashes escaped. */
static void
dot_str(flow__buf *b, const char *s)
{
  flow__buf_addc(b, '"');
  for (; *s; s++) {
    if (*s == '"' || *s == '\\')
      flow__buf_addc(b, '\\');
    flow__buf_addc(b, *s);
  }
  flow__buf_addc(b, '"');
}

static void
render_dot(graph *g, const flow__state **states, flow__buf *b)
{
  const flow__service *svc = g->svc;
  char title[512];
  snprintf(title, sizeof title, "%s%s%s version %lld%s%s",
           svc->title ? svc->title : "", svc->title ? " (" : "", svc->name,
           (long long)svc->version, svc->title ? ")" : "", "");
  flow__buf_adds(b, "digraph ");
  dot_str(b, svc->name);
  flow__buf_adds(b, " {\n  rankdir=LR;\n  label=");
  if (svc->sla.set) {
    char sla[640];
    snprintf(sla, sizeof sla, "%s, service level: %s", title,
             svc->sla.within ? svc->sla.within : "set by the case");
    dot_str(b, sla);
  } else {
    dot_str(b, title);
  }
  flow__buf_adds(b, ";\n  labelloc=t;\n"
                    "  node [shape=box, style=rounded, fontname=Helvetica];\n"
                    "  edge [fontname=Helvetica, fontsize=10];\n"
                    "  __start [shape=point, label=\"\"];\n");
  int decides = 0;
  for (size_t i = 0; i < g->n; i++)
    decides |= g->edges[i].to == NULL;
  for (size_t i = 0; i < svc->nstates; i++) {
    flow__buf_adds(b, "  ");
    dot_str(b, states[i]->name);
    if (states[i]->final)
      flow__buf_adds(b, " [shape=doublecircle, style=solid]");
    flow__buf_adds(b, ";\n");
  }
  if (decides)
    flow__buf_adds(b, "  __decides [shape=note, style=dashed, "
                      "label=\"the handler decides\"];\n");
  if (svc->initial_fn == FLOW__NOREF) {
    flow__buf_adds(b, "  __start -> ");
    dot_str(b, svc->initial);
    flow__buf_adds(b, ";\n");
  } else if (svc->ninitial == 0) {
    flow__buf_adds(b, "  __initial [shape=note, style=dashed, "
                      "label=\"initial decides\"];\n"
                      "  __start -> __initial [style=dashed];\n");
  }
  for (size_t i = 0; svc->initial_fn != FLOW__NOREF && i < svc->ninitial;
       i++) {
    flow__buf_adds(b, "  __start -> ");
    dot_str(b, svc->initial_states[i]);
    flow__buf_adds(b, " [style=dashed, label=\"initial\"];\n");
  }
  for (size_t i = 0; i < g->n; i++) {
    const edge *ed = &g->edges[i];
    flow__buf_adds(b, "  ");
    dot_str(b, ed->from);
    flow__buf_adds(b, " -> ");
    if (ed->to)
      dot_str(b, ed->to);
    else
      flow__buf_adds(b, "__decides");
    flow__buf_adds(b, " [label=");
    if (ed->internal) {
      char label[300];
      snprintf(label, sizeof label, "%s (internal)", ed->label);
      dot_str(b, label);
    } else {
      dot_str(b, ed->label);
    }
    if (ed->dashed)
      flow__buf_adds(b, ", style=dashed");
    if (ed->internal)
      flow__buf_adds(b, ", color=gray45, fontcolor=gray45");
    flow__buf_adds(b, "];\n");
  }
  flow__buf_adds(b, "}\n");
}

/* Mermaid labels end at a line break and treat ':' and ';' specially. */
static void
mermaid_text(flow__buf *b, const char *s)
{
  for (; *s; s++)
    flow__buf_addc(b, (*s == ':' || *s == ';' || *s == '\n') ? ' ' : *s);
}

static void
render_mermaid(graph *g, const flow__state **states, flow__buf *b)
{
  const flow__service *svc = g->svc;
  /* The title is YAML front matter: a title with a colon in it ("Local
     test and trace: a contact") is written as a quoted string, which
     keeps the colon; others as they are. */
  const char *t = svc->title ? svc->title : svc->name;
  int quote = strchr(t, ':') != NULL;
  flow__buf_adds(b, quote ? "---\ntitle: \"" : "---\ntitle: ");
  for (const char *p = t; *p; p++) {
    if (quote && (*p == '"' || *p == '\\'))
      flow__buf_addc(b, '\\');
    flow__buf_addc(b, *p == '\n' || (!quote && *p == ';') ? ' ' : *p);
  }
  flow__buf_addf(b, " (%s version %lld", svc->name, (long long)svc->version);
  if (svc->sla.set)
    flow__buf_addf(b, ", service level %s",
                   svc->sla.within ? svc->sla.within : "set by the case");
  flow__buf_adds(b, quote ? ")\"\n---\nstateDiagram-v2\n"
                          : ")\n---\nstateDiagram-v2\n");
  if (svc->initial_fn == FLOW__NOREF)
    flow__buf_addf(b, "  [*] --> %s\n", svc->initial);
  else if (svc->ninitial == 0)
    flow__buf_adds(b, "  %% the first state: initial decides\n");
  for (size_t i = 0; svc->initial_fn != FLOW__NOREF && i < svc->ninitial;
       i++)
    flow__buf_addf(b, "  [*] --> %s: initial\n", svc->initial_states[i]);
  for (size_t i = 0; i < g->n; i++) {
    const edge *ed = &g->edges[i];
    if (ed->to == NULL)
      continue;
    flow__buf_addf(b, "  %s --> %s: ", ed->from, ed->to);
    mermaid_text(b, ed->label);
    if (ed->internal)
      flow__buf_adds(b, " (internal)");
    if (ed->dashed)
      flow__buf_adds(b, " (handler)");
    flow__buf_addc(b, '\n');
  }
  for (size_t i = 0; i < svc->nstates; i++)
    if (states[i]->final)
      flow__buf_addf(b, "  %s --> [*]\n", states[i]->name);
  for (size_t i = 0; i < g->n; i++) {
    const edge *ed = &g->edges[i];
    if (ed->to != NULL)
      continue;
    flow__buf_addf(b, "  note right of %s: ", ed->from);
    mermaid_text(b, ed->label);
    if (ed->internal)
      flow__buf_adds(b, " (internal)");
    flow__buf_adds(b, " - the handler decides the next state\n");
  }
}

int
flow_service_graph(char **out, flow_engine *engine, const char *source,
                   size_t len, const char *chunkname, const char *format)
{
  if (out)
    *out = NULL;
  if (engine == NULL)
    return FLOW_EMISUSE;
  if (out == NULL || source == NULL)
    return flow__engine_fail(engine, FLOW_EMISUSE,
                             "flow_service_graph: out or source is NULL");
  int mermaid = 0;
  if (format != NULL && strcmp(format, "mermaid") == 0)
    mermaid = 1;
  else if (format != NULL && strcmp(format, "dot") != 0)
    return flow__engine_fail(engine, FLOW_EINVAL,
                             "unknown graph format '%.40s' (use dot or "
                             "mermaid)",
                             format);
  flow__compiled *c;
  int rc = flow__engine_compile(engine, source, len,
                                chunkname ? chunkname : "service", &c);
  if (rc != 0)
    return rc;
  const flow__service *svc = c->svc;
  graph g = { .e = engine, .svc = svc, .sb = c->sb };
  const flow__state **states = flow__service_states_sorted(engine, svc);
  flow__buf b;
  flow__buf_init(&b, &engine->alloc);
  if (states == NULL) {
    g.oom = 1;
  } else {
    collect_edges(&g, states);
    if (!g.oom) {
      if (mermaid)
        render_mermaid(&g, states, &b);
      else
        render_dot(&g, states, &b);
    }
  }
  if (!g.oom && !b.oom) {
    const char *text = flow__buf_str(&b);
    *out = text ? flow__owned_strndup(&engine->alloc, text, strlen(text))
                : NULL;
  }
  flow__buf_free(&b);
  flow__free(&engine->alloc, g.edges);
  flow__free(&engine->alloc, states);
  flow__compiled_free(engine, c);
  if (*out == NULL)
    return flow__engine_fail(engine, FLOW_ENOMEM, "out of memory");
  flow__err_clear(&engine->err);
  return 0;
}
