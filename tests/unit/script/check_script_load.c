/*
 * The service loader: a valid script fills the flow__service exactly
 * (order, targets, roles, references, lines), and a script with mistakes
 * gets every one of them reported at the right line, with a hint where one
 * helps.  Failures while loading (budget, memory) leak nothing.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "script/script_int.h"
#include "testutil.h"

static test_alloc ta;
static flow__allocator al;
static flow__sandbox *sb;
static flow__service *svc;
static flow__err err;

static void
setup(void)
{
  memset(&ta, 0, sizeof ta);
  al = test_allocator(&ta);
  sb = NULL;
  svc = NULL;
  flow__err_clear(&err);
}

static void
teardown(void)
{
  flow__service_free(&al, svc);
  flow__sandbox_free(sb);
  ck_assert_int_eq(ta.live_blocks, 0);
}

static int
compile_with(const char *src, const char *chunk, size_t mem, uint64_t instr)
{
  flow__sandbox_config cfg = { &al, mem, instr, NULL, NULL, NULL, 0, 0, 0, 0, 0 };
  ck_assert_int_eq(flow__sandbox_new(&sb, &cfg, &err), 0);
  svc = flow__calloc(&al, 1, sizeof *svc);
  ck_assert_ptr_nonnull(svc);
  flow__err_clear(&err);
  return flow__service_compile(svc, sb, src, strlen(src), chunk, &err);
}

static int
compile(const char *src)
{
  return compile_with(src, "t.lua", 0, 0);
}

static void
fails_with(const char *src, const char *want)
{
  int rc = compile(src);
  ck_assert_msg(rc == FLOW_ESCRIPT, "rc %d: %s", rc, err.msg);
  ck_assert_msg(strcmp(err.msg, want) == 0, "got:\n%s\nwant:\n%s", err.msg,
                want);
}

/* The DESIGN.md example, with a guard, an event timer and an SLA. */
static const char missed_bin[] =
    "-- Report a missed bin collection\n"                             /* 1 */
    "local function notify(case)\n"                                   /* 2 */
    "  local t = { name = 'not this one', states = {} }\n"            /* 3 */
    "  flow.call('notify.sms', { to = case.data.phone })\n"           /* 4 */
    "end\n"                                                           /* 5 */
    "\n"                                                              /* 6 */
    "return {\n"                                                      /* 7 */
    "  name = \"missed_bin\",\n"                                      /* 8 */
    "  version = 3,\n"                                                /* 9 */
    "  title = \"Report a missed bin collection\",\n"                 /* 10 */
    "  fields = {\n"                                                  /* 11 */
    "    uprn    = { type = \"string\", required = true, pattern = \"^%d+$\", "
    "max = 12 },\n"                                                   /* 12 */
    "    address = { type = \"string\", required = true, max = 200 },\n"
    "    bin     = { type = \"enum\", values = { \"refuse\", \"recycling\", "
    "\"garden\" }, required = true },\n"                              /* 14 */
    "    phone   = { type = \"string\", pii = true, title = \"Phone\" },\n"
    "    crew    = { type = \"string\", index = true },\n"            /* 16 */
    "  },\n"                                                          /* 17 */
    "  initial = \"reported\",\n"                                     /* 18 */
    "  sla = { within = \"5 working days\", warn = \"4 working days\" },\n"
    "  states = {\n"                                                  /* 20 */
    "    reported = {\n"                                              /* 21 */
    "      after = { [\"2 working days\"] = \"escalated\",\n"         /* 22 */
    "                [\"1d\"] = { event = \"remind\", payload = { n = 1 } } "
    "},\n"                                                            /* 23 */
    "      on = {\n"                                                  /* 24 */
    "        assign = function(case, ev)\n"                           /* 25 */
    "          case.data.crew = ev.payload.crew\n"                    /* 26 */
    "          return \"assigned\"\n"                                 /* 27 */
    "        end,\n"                                                  /* 28 */
    "        remind = \"reported\",\n"                                /* 29 */
    "      },\n"                                                      /* 30 */
    "    },\n"                                                        /* 31 */
    "    assigned = {\n"                                              /* 32 */
    "      enter = notify,\n"                                         /* 33 */
    "      on = {\n"                                                  /* 34 */
    "        collect = \"closed\",\n"                                 /* 35 */
    "        cannot_access = { to = \"escalated\", roles = { \"crew\" } "
    "},\n"                                                            /* 36 */
    "        -- collect = \"not here\",\n"                            /* 37 */
    "      },\n"                                                      /* 38 */
    "    },\n"                                                        /* 39 */
    "    escalated = { on = { collect = { to = \"closed\", roles = { "
    "\"supervisor\", \"crew\" },\n"                                   /* 40 */
    "      guard = function(case, ev) return ev.actor.id ~= nil end } } },\n"
    "    closed = { final = true, title = \"Closed\" },\n"            /* 42 */
    "  },\n"                                                          /* 43 */
    "}\n";                                                            /* 44 */

START_TEST(test_script_load_fills_the_service)
{
  int rc = compile_with(missed_bin, "examples/services/missed_bin.lua", 0, 0);
  ck_assert_msg(rc == 0, "%s", err.msg);
  ck_assert_str_eq(svc->name, "missed_bin");
  ck_assert_int_eq(svc->version, 3);
  ck_assert_str_eq(svc->title, "Report a missed bin collection");
  ck_assert_str_eq(svc->initial, "reported");
  ck_assert_str_eq(svc->chunkname, "examples/services/missed_bin.lua");
  ck_assert_uint_eq(svc->source_len, strlen(missed_bin));
  ck_assert_int_eq(memcmp(svc->source, missed_bin, svc->source_len), 0);
  char sha[65];
  flow__sha256_hex(missed_bin, strlen(missed_bin), sha);
  ck_assert_str_eq(svc->sha256, sha);
  ck_assert_str_eq(svc->sla.within, "5 working days");
  ck_assert_int_eq(svc->sla.within_dur.unit, FLOW__DUR_WORKING_DAYS);
  ck_assert_int_eq(svc->sla.within_dur.amount, 5);

  /* Fields, sorted by name. */
  ck_assert_uint_eq(svc->nfields, 5);
  static const char *const fnames[] = { "address", "bin", "crew", "phone",
                                        "uprn" };
  for (size_t i = 0; i < 5; i++)
    ck_assert_str_eq(svc->fields[i].name, fnames[i]);
  const flow__field *f = flow__service_field(svc, "uprn");
  ck_assert_int_eq(f->type, FLOW__F_STRING);
  ck_assert_int_eq(f->required, 1);
  ck_assert_str_eq(f->pattern, "^%d+$");
  ck_assert_int_eq(f->has_max, 1);
  ck_assert_int_eq(f->has_min, 0);
  ck_assert(f->max == 12);
  ck_assert_int_eq(f->line, 12);
  f = flow__service_field(svc, "bin");
  ck_assert_int_eq(f->type, FLOW__F_ENUM);
  ck_assert_uint_eq(f->nvalues, 3);
  ck_assert_str_eq(f->values[0], "refuse");
  ck_assert_str_eq(f->values[2], "garden");
  ck_assert_int_eq(f->line, 14);
  f = flow__service_field(svc, "phone");
  ck_assert_int_eq(f->pii, 1);
  ck_assert_str_eq(f->title, "Phone");
  ck_assert_int_eq(flow__service_field(svc, "crew")->index, 1);

  /* States in the order they are written. */
  ck_assert_uint_eq(svc->nstates, 4);
  static const char *const snames[] = { "reported", "assigned", "escalated",
                                        "closed" };
  static const int slines[] = { 21, 32, 40, 42 };
  for (size_t i = 0; i < 4; i++) {
    ck_assert_str_eq(svc->states[i].name, snames[i]);
    ck_assert_int_eq(svc->states[i].line, slines[i]);
  }

  const flow__state *st = flow__service_state(svc, "reported");
  ck_assert_int_eq(st->final, 0);
  ck_assert_int_eq(st->enter, FLOW__NOREF);
  ck_assert_int_eq(st->exit, FLOW__NOREF);
  ck_assert_uint_eq(st->non, 2);
  ck_assert_str_eq(st->on[0].event, "assign"); /* sorted by event */
  ck_assert_ptr_null(st->on[0].target);
  ck_assert_int_ne(st->on[0].handler, FLOW__NOREF);
  ck_assert_int_eq(st->on[0].guard, FLOW__NOREF);
  ck_assert_int_eq(st->on[0].line, 25);
  ck_assert_str_eq(st->on[1].event, "remind");
  ck_assert_str_eq(st->on[1].target, "reported");
  ck_assert_int_eq(st->on[1].line, 29);
  ck_assert_uint_eq(st->nafter, 2);
  ck_assert_str_eq(st->after[0].duration, "2 working days");
  ck_assert_str_eq(st->after[0].target, "escalated");
  ck_assert_int_eq(st->after[0].dur.unit, FLOW__DUR_WORKING_DAYS);
  ck_assert_int_eq(st->after[0].dur.amount, 2);
  ck_assert_int_eq(st->after[0].line, 22);
  ck_assert_str_eq(st->after[1].duration, "1d");
  ck_assert_ptr_null(st->after[1].target);
  ck_assert_str_eq(st->after[1].event, "remind");
  ck_assert_int_eq(json_integer_value(json_object_get(st->after[1].payload,
                                                      "n")),
                   1);
  ck_assert_int_eq(st->after[1].line, 23);

  st = flow__service_state(svc, "assigned");
  ck_assert_int_ne(st->enter, FLOW__NOREF);
  ck_assert_uint_eq(st->non, 2);
  ck_assert_str_eq(st->on[0].event, "cannot_access");
  ck_assert_str_eq(st->on[0].target, "escalated");
  ck_assert_uint_eq(st->on[0].nroles, 1);
  ck_assert_str_eq(st->on[0].roles[0], "crew");
  ck_assert_int_eq(st->on[0].line, 36);
  ck_assert_str_eq(st->on[1].event, "collect");
  ck_assert_str_eq(st->on[1].target, "closed");
  ck_assert_uint_eq(st->on[1].nroles, 0);
  ck_assert_int_eq(st->on[1].line, 35);

  st = flow__service_state(svc, "escalated");
  const flow__trans *tr = flow__state_trans(st, "collect");
  ck_assert_str_eq(tr->target, "closed");
  ck_assert_uint_eq(tr->nroles, 2);
  ck_assert_str_eq(tr->roles[0], "supervisor");
  ck_assert_str_eq(tr->roles[1], "crew");
  ck_assert_int_ne(tr->guard, FLOW__NOREF);
  ck_assert_int_eq(tr->handler, FLOW__NOREF);

  st = flow__service_state(svc, "closed");
  ck_assert_int_eq(st->final, 1);
  ck_assert_uint_eq(st->non, 0);

  /* The references are functions in the sandbox, all different. */
  int refs[] = { flow__service_state(svc, "reported")->on[0].handler,
                 flow__service_state(svc, "assigned")->enter, tr->guard };
  for (size_t i = 0; i < 3; i++) {
    ck_assert_int_eq(lua_rawgeti(sb->L, LUA_REGISTRYINDEX, refs[i]),
                     LUA_TFUNCTION);
    lua_pop(sb->L, 1);
  }
  ck_assert_int_ne(refs[0], refs[1]);
  ck_assert_int_ne(refs[1], refs[2]);
}
END_TEST

START_TEST(test_script_load_reports_every_problem)
{
  fails_with(
      "return {\n"                                                     /* 1 */
      "  name = 'Missed Bin',\n"                                       /* 2 */
      "  version = 1.0,\n"                                             /* 3 */
      "  stats = {},\n"                                                /* 4 */
      "  fields = {\n"                                                 /* 5 */
      "    uprn = { type = 'strng', requird = true },\n"               /* 6 */
      "    bin = { type = 'enum' },\n"                                 /* 7 */
      "    size = { type = 'integer', min = 10, max = 5 },\n"          /* 8 */
      "  },\n"                                                         /* 9 */
      "  initial = 'reportd',\n"                                       /* 10 */
      "  states = {\n"                                                 /* 11 */
      "    reported = { on = { assign = 'assigned', open = 'closed' } },\n"
      "    assigned = {\n"                                             /* 13 */
      "      enetr = function(case) end,\n"                            /* 14 */
      "      on = { collect = 'closd',\n"                              /* 15 */
      "             skip = { too = 'closed' } },\n"                    /* 16 */
      "    },\n"                                                       /* 17 */
      "    escalated = { after = { ['2 weeks please'] = 'closed' } },\n"
      "    closed = { finall = true, final = true, on = { x = 'closed' } "
      "},\n"                                                           /* 19 */
      "  },\n"                                                         /* 20 */
      "}\n",
      "t.lua:2: name 'Missed Bin' must start with a lower-case letter and "
      "use only a-z, 0-9 and _ (like \"missed_bin\")\n"
      "t.lua:3: version must be a whole number written without a decimal "
      "point, like 1 (not 1.0)\n"
      "t.lua:4: the service definition has an unknown key 'stats' (did you "
      "mean 'states'?)\n"
      "t.lua:6: field 'uprn' has an unknown key 'requird' (did you mean "
      "'required'?)\n"
      "t.lua:6: field 'uprn' has unknown type 'strng' (use one of string, "
      "integer, number, boolean, enum, date, datetime, object, list)\n"
      "t.lua:7: field 'bin' is an enum and needs its values: add `values = "
      "{ \"a\", \"b\" }`\n"
      "t.lua:8: field 'size' has min 10 greater than max 5\n"
      "t.lua:10: initial state 'reportd' does not exist (states: reported, "
      "assigned, escalated, closed)\n"
      "t.lua:12: event name 'open' in state 'reported' is reserved (it is "
      "the event that opens a case); use another name\n"
      "t.lua:14: state 'assigned' has an unknown key 'enetr' (did you mean "
      "'enter'?)\n"
      "t.lua:15: event 'collect' in state 'assigned' goes to state 'closd', "
      "which does not exist (states: reported, assigned, escalated, "
      "closed)\n"
      "t.lua:16: event 'skip' in state 'assigned' has an unknown key 'too' "
      "(did you mean 'to'?)\n"
      "t.lua:16: event 'skip' in state 'assigned' needs `to = \"<state>\"` "
      "or `handler = function(case, ev) ... end`\n"
      "t.lua:18: after '2 weeks please' in state 'escalated': bad duration "
      "'2 weeks please': use a number and a "
      "unit, like \"90s\", \"15m\", \"48h\", \"3d\", \"2w\", \"2 working "
      "days\" or \"4 working hours\"\n"
      "t.lua:19: state 'closed' has an unknown key 'finall' (did you mean "
      "'final'?)\n"
      "t.lua:19: state 'closed' is final, so it cannot have `on` events "
      "(remove them or drop `final = true`)");
}
END_TEST

START_TEST(test_script_load_syntax_and_runtime_errors)
{
  fails_with("return {\n  name = 'x',\n  version = \n}\n",
             "t.lua:4: unexpected symbol near '}'");
  flow__service_free(&al, svc);
  flow__sandbox_free(sb);
  svc = NULL;
  sb = NULL;
  fails_with("local x\n\nx.y = 1\n",
             "t.lua:3: attempt to index a nil value (local 'x')");
}
END_TEST

START_TEST(test_script_load_must_return_a_table)
{
  fails_with("return 42", "t.lua:1: the script must end with `return { name "
                          "= ..., ... }` (it returned a number)");
  flow__service_free(&al, svc);
  flow__sandbox_free(sb);
  svc = NULL;
  sb = NULL;
  fails_with("local x = 1", "t.lua:1: the script must end with `return { "
                            "name = ..., ... }` (it returned nothing)");
  flow__service_free(&al, svc);
  flow__sandbox_free(sb);
  svc = NULL;
  sb = NULL;
  fails_with("return nil", "t.lua:1: the script must end with `return { "
                           "name = ..., ... }` (it returned a nil)");
}
END_TEST

START_TEST(test_script_load_required_keys)
{
  fails_with("return { title = 'nothing else' }",
             "t.lua:1: the service needs a name: add `name = \"my_service\"` "
             "(lower-case letters, digits and _)\n"
             "t.lua:1: the service needs a version: add `version = 1`\n"
             "t.lua:1: the service needs an initial state: add `initial = "
             "\"<state>\"`\n"
             "t.lua:1: the service needs states: add `states = { <name> = "
             "{ ... }, ... }`");
}
END_TEST

START_TEST(test_script_load_long_chunkname_kept_whole)
{
  char chunk[200];
  memset(chunk, 'd', sizeof chunk);
  memcpy(chunk + 150, "/missed_bin.lua", 16);
  int rc = compile_with("return {\n  x = = 1\n}", chunk, 0, 0);
  ck_assert_int_eq(rc, FLOW_ESCRIPT);
  ck_assert_int_eq(strncmp(err.msg, chunk, strlen(chunk)), 0);
  ck_assert_str_eq(err.msg + strlen(chunk), ":2: unexpected symbol near '='");
}
END_TEST

START_TEST(test_script_load_bytecode_refused)
{
  fails_with("\033Lua\x54\x00", "t.lua:1: attempt to load a binary chunk "
                                "(mode is 't')");
}
END_TEST

START_TEST(test_script_load_budget)
{
  int rc = compile_with("while true do end", "spin.lua", 0, 100000);
  ck_assert_int_eq(rc, FLOW_ELIMIT);
  ck_assert_str_eq(err.msg, "budget exceeded: the script spin.lua ran more "
                            "than 100000 instructions (an endless loop?)");
}
END_TEST

START_TEST(test_script_load_memory_budget)
{
  int rc = compile_with("local t = {} for i = 1, 1e8 do t[i] = i end",
                        "hog.lua", 1024 * 1024, 0);
  ck_assert_int_eq(rc, FLOW_ELIMIT);
  ck_assert_str_eq(err.msg, "budget exceeded: the script hog.lua used more "
                            "than 1 MiB of memory");
}
END_TEST

START_TEST(test_script_load_service_budget_checks)
{
  fails_with(
      "return { name = 'b', version = 1, initial = 'a',\n"
      "  budget = { cpu = 10,\n"                                      /* 2 */
      "    memory_mb = 4096,\n"                                       /* 3 */
      "    instructions = 'many',\n"                                  /* 4 */
      "    cpu_ms = 0.5 },\n"                                         /* 5 */
      "  states = { a = { final = true } } }\n",
      "t.lua:2: budget has an unknown key 'cpu' (known keys: instructions, "
      "cpu_ms, memory_mb)\n"
      "t.lua:3: budget.memory_mb is 4096, more than this engine allows "
      "(256); lower it, or ask the host to raise script_memory_max\n"
      "t.lua:4: budget.instructions must be a whole number above 0, not a "
      "string\n"
      "t.lua:5: budget.cpu_ms must be a whole number of ms above 0, not 0.5");
}
END_TEST

START_TEST(test_script_load_service_budget_applies)
{
  int rc = compile("return { name = 'b', version = 1, initial = 'a',\n"
                   "  budget = { instructions = 5000, cpu_ms = 20,\n"
                   "             memory_mb = 3 },\n"
                   "  states = { a = { final = true } } }\n");
  ck_assert_msg(rc == 0, "%s", err.msg);
  ck_assert_uint_eq(sb->instr_limit, 5000);
  ck_assert_uint_eq(sb->cpu_ms, 20);
  ck_assert_uint_eq(sb->mem_limit, (size_t)3 << 20);
}
END_TEST

START_TEST(test_script_load_budget_below_what_loading_holds)
{
  /* The top level keeps 1.5 MiB; a budget of 1 MiB cannot hold it. */
  fails_with("local big = string.rep('x', 1536 * 1024)\n"
             "return { name = 'b', version = 1, initial = 'a',\n"
             "  budget = { memory_mb = 1 },\n"
             "  states = { a = { on = { go = function() return #big end } "
             "} } }\n",
             "t.lua:3: the script holds about 2 MiB once loaded, more than "
             "its budget.memory_mb allows; raise budget.memory_mb or keep "
             "less at the top level of the script");
}
END_TEST

/* Found by fuzzing: what a script names ends up in JSON, so it must be
   UTF-8; and a state with `after` but no `on` must not crash the check
   for the events it fires. */
START_TEST(test_script_load_text_must_be_utf8)
{
  fails_with("return { name = 'f', version = 1, title = 'Bad \\255 title',\n"
             "  fields = { a = { type = 'enum', values = { 'x', '\\200' } },\n"
             "             b = { type = 'string', title = '\\192' } },\n"
             "  initial = 'a', states = { a = { final = true } } }\n",
             "t.lua:1: title is not valid UTF-8 text\n"
             "t.lua:2: values of field 'a' must be a non-empty list of "
             "strings like { \"a\", \"b\" }\n"
             "t.lua:3: title of field 'b' is not valid UTF-8 text");
}
END_TEST

START_TEST(test_script_load_after_without_on)
{
  fails_with("return { name = 'f', version = 1, initial = 'a',\n"
             "  states = { a = { after = { ['1h'] = { event = 'tick' } } } } "
             "}\n",
             "t.lua:2: after '1h' in state 'a' fires event 'tick', which "
             "state 'a' does not handle (add it to the state's `on`)");
}
END_TEST

START_TEST(test_script_load_size_and_zero_bytes)
{
  size_t n = (size_t)2 << 20;
  char *big = malloc(n + 1);
  memset(big, '-', n);
  big[n] = 0;
  int rc = compile_with(big, "big.lua", 0, 0);
  free(big);
  ck_assert_int_eq(rc, FLOW_ESCRIPT);
  ck_assert_str_eq(err.msg, "big.lua:1: the script is 2048 KiB; a service "
                            "script may be at most 1024 KiB (keep big tables "
                            "of data out of the script)");
}
END_TEST

START_TEST(test_script_load_durations_with_zero_bytes)
{
  fails_with("return { name = 'f', version = 1, initial = 'a',\n"
             "  sla = { within = '1d\\0junk' },\n"
             "  states = { a = { on = { tick = 'a' },\n"
             "    after = { ['1h\\0x'] = { event = 'tick' } } } } }\n",
             "t.lua:2: sla within must be a duration like \"5 working "
             "days\", not text with a zero byte in it\n"
             "t.lua:4: after in state 'a' has a key with a zero byte in it; "
             "keys are durations like [\"2 working days\"]");
}
END_TEST

START_TEST(test_script_load_keeps_nothing_that_moves)
{
  fails_with("local co = coroutine.create(function()\n"
             "  coroutine.yield()\n"
             "end)\n"
             "coroutine.resume(co)\n"
             "return { name = 'c', version = 1, initial = 'a',\n"
             "  states = { a = { on = { go = function() coroutine.resume(co) "
             "end } } } }\n",
             "t.lua:2: a coroutine made while loading cannot be kept for "
             "later events (create it inside the handler that uses it)");
}
END_TEST

START_TEST(test_script_load_flow_fail_while_loading)
{
  fails_with("flow.fail('not today')",
             "t.lua:1: the script called flow.fail while loading: not today");
}
END_TEST

START_TEST(test_script_load_field_checks)
{
  fails_with(
      "return { name = 'f', version = 1, initial = 'a', states = { a = {} },\n"
      "  fields = {\n"
      "    a = { type = 'string', pattern = '[a-z' },\n"                 /* 3 */
      "    b = { type = 'integer', pattern = '^%d+$' },\n"               /* 4 */
      "    c = { type = 'string', values = { 'x' } },\n"                 /* 5 */
      "    d = { type = 'enum', values = { 'x', 'y', 'x' } },\n"         /* 6 */
      "    e = { type = 'enum', values = {} },\n"                        /* 7 */
      "    g = { type = 'boolean', required = 'yes', min = 1 },\n"       /* 8 */
      "    Bad = { type = 'string' },\n"                                 /* 9 */
      "    h = 'string',\n"                                             /* 10 */
      "    i = { required = true },\n"                                  /* 11 */
      "    j = { type = 'string', pattern = '(%d' },\n"                 /* 12 */
      "    k = { type = 'list', max = 'lots' },\n"                      /* 13 */
      "  },\n"
      "}\n",
      "t.lua:3: field 'a' has an invalid pattern: malformed pattern "
      "(missing ']')\n"
      "t.lua:4: field 'b' has a pattern but is of type integer (patterns are "
      "for strings)\n"
      "t.lua:5: field 'c' has values but is of type string (values are for "
      "type = \"enum\")\n"
      "t.lua:6: values of field 'd' list 'x' more than once\n"
      "t.lua:7: values of field 'e' must be a non-empty list of strings like "
      "{ \"a\", \"b\" }\n"
      "t.lua:8: field 'g' of type boolean cannot have min or max (they are "
      "for string, integer, number and list fields)\n"
      "t.lua:8: required of field 'g' must be true or false, not a string\n"
      "t.lua:9: field name 'Bad' must start with a lower-case letter or _ "
      "and use only a-z, 0-9 and _ (at most 64)\n"
      "t.lua:10: field 'h' must be a table like { type = \"string\" }, not a "
      "string\n"
      "t.lua:11: field 'i' needs a type (use one of string, integer, number, "
      "boolean, enum, date, datetime, object, list)\n"
      "t.lua:12: field 'j' has an invalid pattern: unfinished capture\n"
      "t.lua:13: max of field 'k' must be a number, not a string");
}
END_TEST

START_TEST(test_script_load_state_checks)
{
  fails_with(
      "return { name = 's', version = 1, initial = 'a',\n"
      "  sla = { within = 'soon', wran = '1d' },\n"                      /* 2 */
      "  budget = 'lots',\n"                                             /* 3 */
      "  states = {\n"
      "    a = {\n"
      "      enter = 'hello',\n"                                         /* 6 */
      "      on = { go = 42, [1] = 'b', Go = 'b',\n"                     /* 7 */
      "             ok = { to = 'b', roles = 'crew', guard = true } },\n"
      "      after = { ['1d'] = { event = 'nope' }, ['2d'] = { to = 'b', "
      "event = 'ok' },\n"                                                /* 9 */
      "                ['3d'] = {} },\n"                                /* 10 */
      "    },\n"
      "    b = { final = 'yes', after = { ['1h'] = 'a' } },\n"          /* 12 */
      "    c = 'final',\n"                                              /* 13 */
      "  },\n"
      "}\n",
      "t.lua:2: sla has an unknown key 'wran' (did you mean 'warn'?)\n"
      "t.lua:2: sla within: bad duration 'soon': use a number and a "
      "unit, like \"90s\", \"15m\", \"48h\", \"3d\", \"2w\", \"2 working "
      "days\" or \"4 working hours\"\n"
      "t.lua:3: budget must be a table, not a string\n"
      "t.lua:6: enter in state 'a' must be a function(case), not a string\n"
      "t.lua:7: event 'go' in state 'a' must be a state name, a "
      "function(case, ev) or a table like { to = \"closed\", roles = { "
      "\"crew\" } }, not a number\n"
      "t.lua:7: event name 'Go' in state 'a' must start with a lower-case "
      "letter and use only a-z, 0-9 and _\n"
      "t.lua:7: on in state 'a' has a key [1]; events must be named, like "
      "collect = \"closed\"\n"
      "t.lua:8: guard of event 'ok' in state 'a' must be a function(case, "
      "ev), not a boolean\n"
      "t.lua:8: roles of event 'ok' in state 'a' must be a list of strings "
      "like { \"crew\" }, not a string\n"
      "t.lua:9: after '1d' in state 'a' fires event 'nope', which state 'a' "
      "does not handle (add it to the state's `on`)\n"
      "t.lua:9: after '2d' in state 'a' has both `to` and `event`; use one\n"
      "t.lua:10: after '3d' in state 'a' needs `to = \"<state>\"` or `event "
      "= \"<name>\"`\n"
      "t.lua:12: final in state 'b' must be true or false, not a string\n"
      "t.lua:13: state 'c' must be a table (like `c = { final = true }`), "
      "not a string");
}
END_TEST

START_TEST(test_script_load_lines_without_constructors)
{
  /* Tables built in locals: the loader still finds the entries. */
  int rc = compile("local states = {}\n"
                   "states.open_ = {\n"
                   "  on = { go = 'done' },\n"
                   "}\n"
                   "local done = { final = true }\n"
                   "states.done = done\n"
                   "return { name = 'l', version = 1, initial = 'open_',\n"
                   "         states = states }\n");
  ck_assert_msg(rc == 0, "%s", err.msg);
  /* open_ is written as `states.open_ = {`, which is not a table field:
     the line falls back to where `states` is given (8). */
  ck_assert_int_eq(flow__service_state(svc, "open_")->line, 8);
  ck_assert_int_eq(flow__service_state(svc, "done")->line, 8);
  ck_assert_int_eq(flow__state_trans(flow__service_state(svc, "open_"),
                                     "go")->line, 8);
}
END_TEST

START_TEST(test_script_load_big_definition)
{
  /* Thousands of states, one per line: loads quickly, in written order. */
  enum { N = 1000 };
  size_t cap = (size_t)N * 80 + 256, n = 0;
  char *src = malloc(cap);
  ck_assert_ptr_nonnull(src);
  n += (size_t)snprintf(src + n, cap - n, "return { name = 'big', version "
                        "= 1, initial = 's1', states = {\n");
  for (int i = 1; i <= N; i++)
    n += (size_t)snprintf(src + n, cap - n,
                          "  s%d = { title = 'x', on = { go = 's%d' } },\n", i,
                          i % N + 1);
  snprintf(src + n, cap - n, "} }\n");
  int rc = compile(src);
  free(src);
  ck_assert_msg(rc == 0, "%s", err.msg);
  ck_assert_uint_eq(svc->nstates, N);
  ck_assert_str_eq(svc->states[0].name, "s1");
  ck_assert_str_eq(svc->states[9].name, "s10");
  ck_assert_str_eq(svc->states[N - 1].name, "s1000");
  ck_assert_int_eq(svc->states[N - 1].line, N + 1);
  ck_assert_int_eq(svc->states[N - 1].on[0].line, N + 1);
  ck_assert_str_eq(svc->states[N - 1].on[0].target, "s1");
}
END_TEST

START_TEST(test_script_load_host_out_of_memory)
{
  /* Fail each allocation in turn; every outcome is clean. */
  for (long n = 1;; n++) {
    memset(&ta, 0, sizeof ta);
    flow__sandbox_config cfg = { &al, 0, 0, NULL, NULL, NULL, 0, 0, 0, 0, 0 };
    ck_assert_int_eq(flow__sandbox_new(&sb, &cfg, &err), 0);
    svc = flow__calloc(&al, 1, sizeof *svc);
    ta.calls = 0;
    ta.fail_at = n;
    int rc = flow__service_compile(svc, sb, missed_bin, strlen(missed_bin),
                                   "t.lua", &err);
    ck_assert_msg(rc == 0 || rc == FLOW_ENOMEM, "at %ld: %d %s", n, rc,
                  err.msg);
    flow__service_free(&al, svc);
    flow__sandbox_free(sb);
    svc = NULL;
    sb = NULL;
    ck_assert_int_eq(ta.live_blocks, 0);
    if (ta.failures == 0)
      break;
  }
}
END_TEST

static Suite *
script_load_suite(void)
{
  Suite *s = suite_create("script_load");
  TCase *tc = tcase_create("loader");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, test_script_load_fills_the_service);
  tcase_add_test(tc, test_script_load_reports_every_problem);
  tcase_add_test(tc, test_script_load_syntax_and_runtime_errors);
  tcase_add_test(tc, test_script_load_must_return_a_table);
  tcase_add_test(tc, test_script_load_required_keys);
  tcase_add_test(tc, test_script_load_long_chunkname_kept_whole);
  tcase_add_test(tc, test_script_load_bytecode_refused);
  tcase_add_test(tc, test_script_load_budget);
  tcase_add_test(tc, test_script_load_memory_budget);
  tcase_add_test(tc, test_script_load_flow_fail_while_loading);
  tcase_add_test(tc, test_script_load_service_budget_checks);
  tcase_add_test(tc, test_script_load_service_budget_applies);
  tcase_add_test(tc, test_script_load_budget_below_what_loading_holds);
  tcase_add_test(tc, test_script_load_keeps_nothing_that_moves);
  tcase_add_test(tc, test_script_load_text_must_be_utf8);
  tcase_add_test(tc, test_script_load_size_and_zero_bytes);
  tcase_add_test(tc, test_script_load_durations_with_zero_bytes);
  tcase_add_test(tc, test_script_load_after_without_on);
  tcase_add_test(tc, test_script_load_field_checks);
  tcase_add_test(tc, test_script_load_state_checks);
  tcase_add_test(tc, test_script_load_lines_without_constructors);
  tcase_add_test(tc, test_script_load_big_definition);
  tcase_add_test(tc, test_script_load_host_out_of_memory);
  suite_add_tcase(s, tc);
  return s;
}

int
main(void)
{
  SRunner *sr = srunner_create(script_load_suite());
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
