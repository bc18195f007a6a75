/*
 * Lua patterns for the sandbox: string.find, string.match, string.gmatch
 * and string.gsub, and the matcher the engine uses for field patterns.
 *
 * They behave as section 6.4.1 of the Lua 5.4 manual describes, but they
 * are written for a sandbox: the stock matcher in C runs where the count
 * hook cannot see it, and a pattern like ("a*"):rep(50) .. "b" against a
 * long run of a's backtracks for longer than the universe is old.  Here
 * every step of the matcher (each character tried, each backtrack) is
 * charged to the instruction budget, so such a match is killed like an
 * endless loop.  There is no recursion in C either: a pattern is compiled
 * into a list of items, and backtracking keeps its choice points on an
 * explicit stack (at most one per quantified item), so no pattern can
 * overflow the C stack.
 *
 * Compiling first also means a malformed pattern is always an error, even
 * when the subject would have failed to match before the bad part was
 * reached (stock Lua reports it only when it gets there).
 *
 * Captures need no undo log.  An item is reached only after every item
 * before it on the same path; a capture's start is written by its '(' and
 * its length by its ')', and both are read only by items after them.  So
 * after backtracking to an item, everything that item and the items after
 * it will read is written again before it is read.
 */
#include "script/script_int.h"

#include <ctype.h>
#include <lauxlib.h>
#include <stddef.h>
#include <string.h>

#define MAX_CAPTURES 32
#define CAP_UNFINISHED (-1)
#define CAP_POSITION (-2)
/* Steps are charged in batches of this many. */
#define CHARGE_BATCH 1024u
/* Patterns with at most this many items or choice points compile into
   the C stack; longer ones into a Lua userdata. */
#define LOCAL_ITEMS 32

enum {
  IT_SINGLE,   /* one character class, maybe with * + - ? */
  IT_OPEN,     /* ( */
  IT_POSITION, /* () */
  IT_CLOSE,    /* ) */
  IT_BALANCE,  /* %bxy */
  IT_FRONTIER, /* %f[set] */
  IT_BACKREF,  /* %1 - %9 */
  IT_END       /* $ at the end of the pattern */
};

typedef struct item {
  unsigned char kind;
  unsigned char quant; /* IT_SINGLE: 0, '*', '+', '-' or '?' */
  unsigned char a, b;  /* IT_BALANCE: the two characters; captures and
                          back-references: the capture's index */
  size_t cls, cls_end; /* IT_SINGLE, IT_FRONTIER: the class in the pattern */
} item;

typedef struct pattern {
  const char *p;
  size_t len;
  int anchor;    /* a leading ^ (not for gmatch) */
  item *items;
  size_t n;
  size_t nquant; /* items that leave a choice point */
  int ncap;
} pattern;

/* A place to go back to: the quantified item, where its repetitions
   start and how many it is trying now. */
typedef struct choice {
  size_t ip, start, count;
} choice;

typedef struct matcher {
  lua_State *L;
  const char *s;
  size_t len;
  const pattern *pt;
  choice *stack;
  unsigned steps; /* not yet charged */
  struct {
    size_t init;
    ptrdiff_t len;
  } cap[MAX_CAPTURES];
} matcher;

static void
tick(matcher *m, size_t n)
{
  if (n >= CHARGE_BATCH || (m->steps += (unsigned)n) >= CHARGE_BATCH) {
    uint64_t total = (uint64_t)m->steps + (n >= CHARGE_BATCH ? n : 0);
    m->steps = 0;
    flow__sb_charge(m->L, total);
  }
}

static void
flush(matcher *m)
{
  if (m->steps) {
    unsigned n = m->steps;
    m->steps = 0;
    flow__sb_charge(m->L, n);
  }
}

/* An integer argument, charging the conversion of a numeric string. */
static lua_Integer
opt_integer(lua_State *L, int arg, lua_Integer def)
{
  if (lua_type(L, arg) == LUA_TSTRING)
    flow__sb_charge(L, lua_rawlen(L, arg));
  return luaL_optinteger(L, arg, def);
}

/* Where a search starts (0-based) for the 1-based, maybe negative, init:
   positions before the start of the subject mean its start. */
static size_t
start_at(lua_Integer init, size_t len)
{
  if (init > 0)
    return (size_t)init - 1;
  if (init == 0 || (init < 0 && (lua_Unsigned)-(init + 1) >= len))
    return 0;
  return len - (size_t)(-init);
}

/* ---- classes ------------------------------------------------------------ */

/* c against %cl. */
static int
class_has(int c, int cl)
{
  int r;
  switch (tolower(cl)) {
  case 'a': r = isalpha(c); break;
  case 'c': r = iscntrl(c); break;
  case 'd': r = isdigit(c); break;
  case 'g': r = isgraph(c); break;
  case 'l': r = islower(c); break;
  case 'p': r = ispunct(c); break;
  case 's': r = isspace(c); break;
  case 'u': r = isupper(c); break;
  case 'w': r = isalnum(c); break;
  case 'x': r = isxdigit(c); break;
  case 'z': r = c == 0; break; /* the old name for \0, still accepted */
  default: return cl == c;    /* %x for a non-letter x is x itself */
  }
  if (isupper(cl))
    r = !r;
  return r != 0;
}

/* c against the set p[lo] == '[' ... p[hi - 1] == ']'. */
static int
set_has(int c, const char *p, size_t lo, size_t hi)
{
  size_t i = lo + 1, end = hi - 1;
  int in = 1;
  if (p[i] == '^') {
    in = 0;
    i++;
  }
  while (i < end) {
    int x = (unsigned char)p[i];
    if (x == '%') {
      if (class_has(c, (unsigned char)p[i + 1]))
        return in;
      i += 2;
    } else if (p[i + 1] == '-' && i + 2 < end) {
      if (x <= c && c <= (unsigned char)p[i + 2])
        return in;
      i += 3;
    } else {
      if (x == c)
        return in;
      i++;
    }
  }
  return !in;
}

static int
single(const pattern *pt, const item *it, int c)
{
  const char *p = pt->p;
  switch (p[it->cls]) {
  case '.':
    return 1;
  case '%':
    return class_has(c, (unsigned char)p[it->cls + 1]);
  case '[':
    return set_has(c, p, it->cls, it->cls_end);
  default:
    return (unsigned char)p[it->cls] == c;
  }
}

/* ---- compiling ---------------------------------------------------------- */

/* Just past the class that starts at p[i]; raises for a malformed one. */
static size_t
class_end(lua_State *L, const char *p, size_t len, size_t i)
{
  if (p[i] == '%') {
    if (i + 1 >= len)
      luaL_error(L, "malformed pattern (ends with '%%')");
    return i + 2;
  }
  if (p[i] != '[')
    return i + 1;
  i++;
  if (i < len && p[i] == '^')
    i++;
  /* The first character of a set stands for itself, even a ']'. */
  for (;;) {
    if (i >= len)
      luaL_error(L, "malformed pattern (missing ']')");
    if (p[i++] == '%' && i < len)
      i++;
    if (i < len && p[i] == ']')
      return i + 1;
  }
}

/*
 * Reads the pattern into items (when out is not NULL) and returns how many
 * there are; sets pt->nquant and pt->ncap.  Raises the errors stock Lua
 * raises for a malformed pattern, whatever the subject.
 */
static size_t
parse(lua_State *L, pattern *pt, item *out)
{
  const char *p = pt->p;
  size_t len = pt->len, i = pt->anchor ? 1 : 0, n = 0;
  int open[MAX_CAPTURES], nopen = 0, ncap = 0;
  char closed[MAX_CAPTURES];
  pt->nquant = 0;
  while (i < len) {
    item it;
    memset(&it, 0, sizeof it);
    unsigned char c = (unsigned char)p[i];
    unsigned char next = i + 1 < len ? (unsigned char)p[i + 1] : 0;
    if (c == '(') {
      if (ncap >= MAX_CAPTURES)
        luaL_error(L, "too many captures");
      it.a = (unsigned char)ncap;
      if (i + 1 < len && next == ')') {
        it.kind = IT_POSITION;
        closed[ncap++] = 1;
        i += 2;
      } else {
        it.kind = IT_OPEN;
        closed[ncap] = 0;
        open[nopen++] = ncap++;
        i++;
      }
    } else if (c == ')') {
      if (nopen == 0)
        luaL_error(L, "invalid pattern capture");
      it.kind = IT_CLOSE;
      it.a = (unsigned char)open[--nopen];
      closed[it.a] = 1;
      i++;
    } else if (c == '$' && i + 1 == len) {
      it.kind = IT_END;
      i++;
    } else if (c == '%' && i + 1 < len && next == 'b') {
      if (i + 3 >= len)
        luaL_error(L, "malformed pattern (missing arguments to '%%b')");
      it.kind = IT_BALANCE;
      it.a = (unsigned char)p[i + 2];
      it.b = (unsigned char)p[i + 3];
      i += 4;
    } else if (c == '%' && i + 1 < len && next == 'f') {
      i += 2;
      if (i >= len || p[i] != '[')
        luaL_error(L, "missing '[' after '%%f' in pattern");
      it.kind = IT_FRONTIER;
      it.cls = i;
      i = class_end(L, p, len, i);
      it.cls_end = i;
    } else if (c == '%' && i + 1 < len && isdigit(next)) {
      int k = next - '1';
      if (k < 0 || k >= ncap || !closed[k])
        luaL_error(L, "invalid capture index %%%d in pattern", k + 1);
      it.kind = IT_BACKREF;
      it.a = (unsigned char)k;
      i += 2;
    } else {
      it.kind = IT_SINGLE;
      it.cls = i;
      i = class_end(L, p, len, i);
      it.cls_end = i;
      if (i < len && p[i] != 0 && strchr("*+-?", p[i]) != NULL) {
        it.quant = (unsigned char)p[i++];
        pt->nquant++;
      }
    }
    if (out)
      out[n] = it;
    n++;
  }
  if (nopen > 0)
    luaL_error(L, "unfinished capture");
  pt->ncap = ncap;
  return n;
}

/*
 * Compiles p[0..len) into pt.  The items and the choice stack go into
 * local (LOCAL_ITEMS of each) when they fit, else into a userdata left on
 * the Lua stack.  The pattern is charged by its length.
 */
static void
compile(lua_State *L, pattern *pt, const char *p, size_t len, int anchored,
        item *items, choice *stack, choice **stack_out)
{
  pt->p = p;
  pt->len = len;
  pt->anchor = anchored && len > 0 && p[0] == '^';
  flow__sb_charge(L, len);
  pt->n = parse(L, pt, NULL);
  if (pt->n > LOCAL_ITEMS || pt->nquant > LOCAL_ITEMS) {
    items = lua_newuserdatauv(L, pt->n * sizeof(item) +
                                     pt->nquant * sizeof(choice) + 1, 0);
    stack = (choice *)(void *)(items + pt->n);
  }
  parse(L, pt, items);
  pt->items = items;
  *stack_out = stack;
}

/* ---- matching ----------------------------------------------------------- */

/* Matches the pattern at m->s[start...]; on success *end is where the
   match ends and the captures are set. */
static int
match_at(matcher *m, size_t start, size_t *end)
{
  const pattern *pt = m->pt;
  const item *items = pt->items;
  const char *s = m->s;
  size_t len = m->len, ip = 0, sp = start, depth = 0;
  for (;;) {
    tick(m, 1);
    if (ip == pt->n) {
      *end = sp;
      return 1;
    }
    const item *it = &items[ip];
    switch (it->kind) {
    case IT_OPEN:
      m->cap[it->a].init = sp;
      m->cap[it->a].len = CAP_UNFINISHED;
      ip++;
      continue;
    case IT_POSITION:
      m->cap[it->a].init = sp;
      m->cap[it->a].len = CAP_POSITION;
      ip++;
      continue;
    case IT_CLOSE:
      m->cap[it->a].len = (ptrdiff_t)(sp - m->cap[it->a].init);
      ip++;
      continue;
    case IT_END:
      if (sp == len) {
        ip++;
        continue;
      }
      break;
    case IT_FRONTIER: {
      /* Before the start and after the end of the subject is '\0'. */
      int prev = sp > 0 ? (unsigned char)s[sp - 1] : 0;
      int cur = sp < len ? (unsigned char)s[sp] : 0;
      if (!set_has(prev, pt->p, it->cls, it->cls_end) &&
          set_has(cur, pt->p, it->cls, it->cls_end)) {
        ip++;
        continue;
      }
      break;
    }
    case IT_BALANCE: {
      if (sp >= len || (unsigned char)s[sp] != it->a)
        break;
      size_t q = sp + 1, level = 1;
      for (; q < len; q++) {
        unsigned char ch = (unsigned char)s[q];
        if (ch == it->b) {
          if (--level == 0)
            break;
        } else if (ch == it->a) {
          level++;
        }
      }
      tick(m, q - sp);
      if (q >= len)
        break;
      sp = q + 1;
      ip++;
      continue;
    }
    case IT_BACKREF: {
      ptrdiff_t l = m->cap[it->a].len;
      if (l < 0) /* a position capture matches no text */
        break;
      tick(m, (size_t)l);
      if (len - sp < (size_t)l ||
          memcmp(s + m->cap[it->a].init, s + sp, (size_t)l) != 0)
        break;
      sp += (size_t)l;
      ip++;
      continue;
    }
    default: /* IT_SINGLE */
      if (it->quant == 0) {
        if (sp < len && single(pt, it, (unsigned char)s[sp])) {
          sp++;
          ip++;
          continue;
        }
        break;
      }
      if (it->quant == '?') {
        if (sp < len && single(pt, it, (unsigned char)s[sp])) {
          m->stack[depth++] = (choice){ ip, sp, 0 };
          sp++;
        }
        ip++;
        continue;
      }
      if (it->quant == '-') {
        m->stack[depth++] = (choice){ ip, sp, 0 };
        ip++;
        continue;
      }
      { /* '*' or '+': as many as possible, then fewer on backtracking */
        size_t k = 0, least = it->quant == '+';
        while (sp + k < len && single(pt, it, (unsigned char)s[sp + k]))
          k++;
        tick(m, k);
        if (k < least)
          break;
        if (k > least)
          m->stack[depth++] = (choice){ ip, sp, k };
        sp += k;
        ip++;
        continue;
      }
    }
    /* This path failed: take the latest alternative. */
    for (;;) {
      if (depth == 0)
        return 0;
      choice *c = &m->stack[depth - 1];
      const item *ci = &items[c->ip];
      tick(m, 1);
      if (ci->quant == '?') { /* now without the optional character */
        sp = c->start;
        ip = c->ip + 1;
        depth--;
        break;
      }
      if (ci->quant == '-') { /* one repetition more */
        size_t at = c->start + c->count;
        if (at < len && single(pt, ci, (unsigned char)s[at])) {
          c->count++;
          sp = at + 1;
          ip = c->ip + 1;
          break;
        }
        depth--;
        continue;
      }
      c->count--; /* one repetition fewer */
      sp = c->start + c->count;
      ip = c->ip + 1;
      if (c->count == (size_t)(ci->quant == '+'))
        depth--;
      break;
    }
  }
}

/* Pushes capture i of the match m->s[s0..e); the whole match when the
   pattern has no captures and i is 0. */
static void
push_capture(matcher *m, int i, size_t s0, size_t e)
{
  lua_State *L = m->L;
  if (i >= m->pt->ncap) {
    if (i != 0)
      luaL_error(L, "invalid capture index %%%d in replacement string",
                 i + 1);
    lua_pushlstring(L, m->s + s0, e - s0);
    return;
  }
  ptrdiff_t l = m->cap[i].len;
  if (l == CAP_POSITION)
    lua_pushinteger(L, (lua_Integer)m->cap[i].init + 1);
  else
    lua_pushlstring(L, m->s + m->cap[i].init, (size_t)l);
}

/* Pushes every capture, or the whole match when there are none and whole
   is set; returns how many values were pushed. */
static int
push_captures(matcher *m, size_t s0, size_t e, int whole)
{
  int n = m->pt->ncap == 0 && whole ? 1 : m->pt->ncap;
  luaL_checkstack(m->L, n, "too many captures");
  for (int i = 0; i < n; i++)
    push_capture(m, i, s0, e);
  return n;
}

/* ---- find and match ----------------------------------------------------- */

/* No character with a meaning in patterns. */
static int
plain_text(const char *p, size_t len)
{
  for (size_t i = 0; i < len; i++)
    if (p[i] != 0 && strchr("^$*+?.([%-", p[i]) != NULL)
      return 0;
  return 1;
}

/* Where needle first occurs in hay, charging every byte looked at. */
static int
plain_find(lua_State *L, const char *hay, size_t hl, const char *needle,
           size_t nl, size_t *at)
{
  if (nl == 0) {
    *at = 0;
    return 1;
  }
  if (nl > hl)
    return 0;
  size_t pos = 0, last = hl - nl, spent = 0;
  while (pos <= last) {
    const char *c = memchr(hay + pos, needle[0], last - pos + 1);
    if (c == NULL) {
      spent += last - pos + 1;
      break;
    }
    size_t found = (size_t)(c - hay);
    spent += found - pos + nl;
    if (spent >= CHARGE_BATCH) {
      flow__sb_charge(L, spent);
      spent = 0;
    }
    if (memcmp(c + 1, needle + 1, nl - 1) == 0) {
      flow__sb_charge(L, spent);
      *at = found;
      return 1;
    }
    pos = found + 1;
  }
  flow__sb_charge(L, spent);
  return 0;
}

static int
find_or_match(lua_State *L, int find)
{
  size_t ls, lp;
  const char *s = luaL_checklstring(L, 1, &ls);
  const char *p = luaL_checklstring(L, 2, &lp);
  size_t init = start_at(opt_integer(L, 3, 1), ls);
  if (init > ls) {
    luaL_pushfail(L);
    return 1;
  }
  if (find && (lua_toboolean(L, 4) || plain_text(p, lp))) {
    size_t at;
    if (plain_find(L, s + init, ls - init, p, lp, &at)) {
      lua_pushinteger(L, (lua_Integer)(init + at) + 1);
      lua_pushinteger(L, (lua_Integer)(init + at + lp));
      return 2;
    }
    luaL_pushfail(L);
    return 1;
  }
  pattern pt;
  item items[LOCAL_ITEMS];
  choice stack[LOCAL_ITEMS];
  matcher m;
  m.L = L;
  m.s = s;
  m.len = ls;
  m.steps = 0;
  m.pt = &pt;
  compile(L, &pt, p, lp, 1, items, stack, &m.stack);
  size_t start = init;
  do {
    size_t e;
    if (match_at(&m, start, &e)) {
      flush(&m);
      if (!find)
        return push_captures(&m, start, e, 1);
      lua_pushinteger(L, (lua_Integer)start + 1);
      lua_pushinteger(L, (lua_Integer)e);
      return push_captures(&m, start, e, 0) + 2;
    }
  } while (start++ < ls && !pt.anchor);
  flush(&m);
  luaL_pushfail(L);
  return 1;
}

int
flow__pattern_find(lua_State *L)
{
  return find_or_match(L, 1);
}

static int
str_match(lua_State *L)
{
  return find_or_match(L, 0);
}

/* ---- gmatch ------------------------------------------------------------- */

/* What a gmatch iterator keeps between calls; its items and choice
   stack follow it in the same userdata. */
typedef struct gmatch_state {
  pattern pt;
  size_t pos;  /* where the next search starts */
  size_t last; /* where the last match ended, SIZE_MAX: none yet */
} gmatch_state;

static int
gmatch_step(lua_State *L)
{
  size_t ls, lp;
  const char *s = lua_tolstring(L, lua_upvalueindex(1), &ls);
  const char *p = lua_tolstring(L, lua_upvalueindex(2), &lp);
  gmatch_state *gm = lua_touserdata(L, lua_upvalueindex(3));
  gm->pt.p = p;
  matcher m;
  m.L = L;
  m.s = s;
  m.len = ls;
  m.steps = 0;
  m.pt = &gm->pt;
  m.stack = (choice *)(void *)(gm->pt.items + gm->pt.n);
  for (size_t start = gm->pos; start <= ls; start++) {
    size_t e;
    if (match_at(&m, start, &e) && e != gm->last) {
      gm->pos = gm->last = e;
      flush(&m);
      return push_captures(&m, start, e, 1);
    }
  }
  gm->pos = ls + 1;
  flush(&m);
  return 0;
}

static int
str_gmatch(lua_State *L)
{
  size_t ls, lp;
  luaL_checklstring(L, 1, &ls);
  const char *p = luaL_checklstring(L, 2, &lp);
  size_t init = start_at(opt_integer(L, 3, 1), ls);
  lua_settop(L, 2);
  pattern pt;
  pt.p = p;
  pt.len = lp;
  pt.anchor = 0; /* a leading ^ would stop the iteration: it is a '^' */
  flow__sb_charge(L, lp);
  pt.n = parse(L, &pt, NULL);
  gmatch_state *gm = lua_newuserdatauv(
      L, sizeof *gm + pt.n * sizeof(item) + pt.nquant * sizeof(choice), 0);
  gm->pt = pt;
  gm->pt.items = (item *)(void *)(gm + 1);
  parse(L, &gm->pt, gm->pt.items);
  gm->pos = init > ls ? ls + 1 : init;
  gm->last = SIZE_MAX;
  lua_pushcclosure(L, gmatch_step, 3);
  return 1;
}

/* ---- gsub --------------------------------------------------------------- */

/* Appends the replacement string (argument 3) for the match s0..e, with
   %0-%9 and %% expanded. */
static void
add_string(matcher *m, luaL_Buffer *b, size_t s0, size_t e)
{
  lua_State *L = m->L;
  size_t rl;
  const char *r = lua_tolstring(L, 3, &rl);
  size_t i = 0;
  tick(m, rl);
  while (i < rl) {
    const char *pc = memchr(r + i, '%', rl - i);
    if (pc == NULL) {
      luaL_addlstring(b, r + i, rl - i);
      break;
    }
    size_t at = (size_t)(pc - r);
    luaL_addlstring(b, r + i, at - i);
    char d = at + 1 < rl ? r[at + 1] : 0;
    if (d == '%') {
      luaL_addchar(b, '%');
    } else if (d == '0') {
      luaL_addlstring(b, m->s + s0, e - s0);
      tick(m, e - s0);
    } else if (isdigit((unsigned char)d)) {
      push_capture(m, d - '1', s0, e);
      tick(m, lua_rawlen(L, -1) + 1);
      luaL_addvalue(b); /* a position becomes its digits */
    } else {
      luaL_error(L, "invalid use of '%%' in replacement string");
    }
    i = at + 2;
  }
}

/* Appends what replaces the match s0..e; returns 1 when it differs from
   the match itself. */
static int
add_value(matcher *m, luaL_Buffer *b, size_t s0, size_t e, int tr)
{
  lua_State *L = m->L;
  if (tr == LUA_TFUNCTION) {
    flush(m);
    lua_pushvalue(L, 3);
    int n = push_captures(m, s0, e, 1);
    lua_call(L, n, 1);
  } else if (tr == LUA_TTABLE) {
    push_capture(m, 0, s0, e);
    lua_gettable(L, 3);
  } else {
    add_string(m, b, s0, e);
    return 1;
  }
  if (!lua_toboolean(L, -1)) { /* nil or false: keep the match */
    lua_pop(L, 1);
    luaL_addlstring(b, m->s + s0, e - s0);
    tick(m, e - s0);
    return 0;
  }
  if (!lua_isstring(L, -1))
    return luaL_error(L, "invalid replacement value (a %s)",
                      luaL_typename(L, -1));
  tick(m, lua_rawlen(L, -1));
  luaL_addvalue(b);
  return 1;
}

static int
str_gsub(lua_State *L)
{
  size_t ls, lp;
  const char *s = luaL_checklstring(L, 1, &ls);
  const char *p = luaL_checklstring(L, 2, &lp);
  int tr = lua_type(L, 3);
  lua_Integer max = opt_integer(L, 4, (lua_Integer)ls + 1);
  luaL_argexpected(L,
                   tr == LUA_TNUMBER || tr == LUA_TSTRING ||
                       tr == LUA_TFUNCTION || tr == LUA_TTABLE,
                   3, "string/function/table");
  pattern pt;
  item items[LOCAL_ITEMS];
  choice stack[LOCAL_ITEMS];
  matcher m;
  m.L = L;
  m.s = s;
  m.len = ls;
  m.steps = 0;
  m.pt = &pt;
  compile(L, &pt, p, lp, 1, items, stack, &m.stack);
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  size_t src = 0, last = SIZE_MAX;
  lua_Integer n = 0;
  int changed = 0;
  while (n < max) {
    size_t e;
    if (match_at(&m, src, &e) && e != last) {
      n++;
      changed = add_value(&m, &b, src, e, tr) | changed;
      src = last = e;
    } else if (src < ls) {
      luaL_addchar(&b, s[src++]);
    } else {
      break;
    }
    if (pt.anchor)
      break;
  }
  if (!changed) {
    lua_pushvalue(L, 1); /* nothing replaced: the subject itself */
  } else {
    luaL_addlstring(&b, s + src, ls - src);
    tick(&m, ls - src);
    luaL_pushresult(&b);
  }
  flush(&m);
  lua_pushinteger(L, n);
  return 2;
}

void
flow__pattern_install(lua_State *L)
{
  static const luaL_Reg fns[] = {
    { "find", flow__pattern_find }, { "match", str_match },
    { "gmatch", str_gmatch },       { "gsub", str_gsub },
    { NULL, NULL },
  };
  luaL_setfuncs(L, fns, 0);
}
