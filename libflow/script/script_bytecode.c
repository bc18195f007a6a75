/*
 * A look at the code Lua 5.4.4 compiled, before any of it runs: the two
 * places where that Lua goes wrong on code a script can write, which the
 * sandbox refuses when a chunk is loaded (a service script, an eval, and
 * every chunk a script gives to load()).
 *
 *   - A long run of field accesses, each on the result of the one before
 *     (t.x.x.x...x).  When such an expression fails (arithmetic on it, a
 *     call of it, indexing nil), Lua names the operand in its message by
 *     walking the run back, with C recursion and a scan of the function's
 *     code at every step: no hook runs, so ten thousand steps take seconds
 *     past any budget and more overflow the C stack (fixed in 5.4.7).  A
 *     run longer than FLOW__MAX_FIELD_CHAIN is refused.
 *   - An upvalue table indexed by a comparison (t[a < b], t[not x == y]):
 *     the compiler loads the table into its register after the jump that
 *     makes the key, so one path uses whatever the register held before
 *     (fixed in 5.4.8).  The exact sequence it emits for that is refused.
 *
 * The function is read with lua_dump (with its debug information, for the
 * lines) into a host buffer; nothing is run and no Lua value is made.  The
 * format is that of Lua 5.4's precompiled chunks: a header, then each
 * function prototype with its code, constants, upvalues, nested
 * prototypes and debug information.  Anything that does not read as that
 * format is reported as such rather than guessed at.
 */
#include "script/script_int.h"

#include <stdio.h>
#include <string.h>


/* Lua 5.4 opcodes (lopcodes.h), by number. */
enum {
  OP_MOVE = 0, OP_LFALSESKIP = 6, OP_LOADTRUE = 7, OP_GETUPVAL = 9,
  OP_SETUPVAL = 10, OP_GETTABUP = 11, OP_GETTABLE = 12, OP_GETI = 13,
  OP_GETFIELD = 14, OP_SETTABUP = 15, OP_SETTABLE = 16, OP_SETI = 17,
  OP_SETFIELD = 18, OP_SELF = 20, OP_MMBIN = 46, OP_MMBINI = 47,
  OP_MMBINK = 48, OP_CLOSE = 54, OP_TBC = 55, OP_JMP = 56, OP_EQ = 57,
  OP_GEI = 65, OP_TEST = 66, OP_RETURN = 70, OP_RETURN0 = 71,
  OP_RETURN1 = 72, OP_SETLIST = 78, OP_VARARGPREP = 81, OP_EXTRAARG = 82
};

/* Constant tags in a dump (lobject.h's variants). */
enum {
  T_NIL = 0, T_FALSE = 1, T_TRUE = 17, T_INT = 3, T_FLT = 19, T_SHRSTR = 4,
  T_LNGSTR = 20
};

#define GET_OP(i) ((int)((i) & 0x7F))
#define GET_A(i) ((int)(((i) >> 7) & 0xFF))
#define GET_B(i) ((int)(((i) >> 16) & 0xFF))
#define GET_SJ(i) ((long)(((i) >> 7) & 0x1FFFFFF) - 0xFFFFFF)

typedef struct reader {
  const unsigned char *p, *end;
  int bad;
} reader;

static unsigned
rd_byte(reader *r)
{
  if (r->p >= r->end) {
    r->bad = 1;
    return 0;
  }
  return *r->p++;
}

static void
rd_skip(reader *r, size_t n)
{
  if ((size_t)(r->end - r->p) < n) {
    r->bad = 1;
    r->p = r->end;
    return;
  }
  r->p += n;
}

/* A size: 7 bits a byte, most significant first, the last marked. */
static size_t
rd_size(reader *r)
{
  size_t x = 0;
  unsigned b;
  do {
    if (x >> (sizeof x * 8 - 8)) {
      r->bad = 1;
      return 0;
    }
    b = rd_byte(r);
    x = (x << 7) | (b & 0x7F);
  } while ((b & 0x80) == 0 && !r->bad);
  return x;
}

static void
rd_string(reader *r)
{
  size_t n = rd_size(r);
  if (n > 0)
    rd_skip(r, n - 1);
}

typedef struct finding {
  int line;
  const char *what;
} finding;

/* The line of each instruction from the debug information (lineinfo[i]
   is a signed step from the line before, or -128: the line is in the
   absolute table).  lines gets n entries; 0 where unknown. */
static void
fill_lines(const signed char *info, size_t ninfo, const unsigned char *abs,
           size_t nabs_bytes_end, size_t nabs, int first, int *lines,
           size_t n, reader *r)
{
  reader ab = { abs, abs + nabs_bytes_end, 0 };
  (void)r;
  size_t next_abs_pc = (size_t)-1;
  int next_abs_line = 0;
  size_t taken = 0;
  if (nabs > 0) {
    next_abs_pc = rd_size(&ab);
    next_abs_line = (int)rd_size(&ab);
    taken = 1;
  }
  int line = first;
  for (size_t pc = 0; pc < n; pc++) {
    if (pc < ninfo) {
      if (pc == next_abs_pc) {
        line = next_abs_line;
        if (taken < nabs) {
          next_abs_pc = rd_size(&ab);
          next_abs_line = (int)rd_size(&ab);
          taken++;
        } else {
          next_abs_pc = (size_t)-1;
        }
      } else {
        line += info[pc];
      }
      lines[pc] = line;
    } else {
      lines[pc] = 0;
    }
  }
}

/* 1 when op leaves its register A as it was. */
static int
keeps_a(int op)
{
  switch (op) {
  case OP_SETUPVAL: case OP_SETTABUP: case OP_SETTABLE: case OP_SETI:
  case OP_SETFIELD: case OP_MMBIN: case OP_MMBINI: case OP_MMBINK:
  case OP_CLOSE: case OP_TBC: case OP_JMP: case OP_TEST: case OP_RETURN:
  case OP_RETURN0: case OP_RETURN1: case OP_SETLIST: case OP_VARARGPREP:
  case OP_EXTRAARG:
    return 1;
  default:
    return op >= OP_EQ && op <= OP_GEI; /* the comparisons */
  }
}

/* Looks at one prototype's code; the first finding goes in *f.  nlocal[pc]
   is the number of named local variables alive at pc: they sit in the
   first registers, and Lua names a value read from one of them by its name
   without walking further. */
static void
check_code(const unsigned char *code, size_t n, const int *lines,
           const int *nlocal, finding *f)
{
  unsigned short depth[256];
  memset(depth, 0, sizeof depth);
  for (size_t pc = 0; pc < n && f->what == NULL; pc++) {
    uint32_t i;
    memcpy(&i, code + pc * 4, 4);
    int op = GET_OP(i), a = GET_A(i), b = GET_B(i);
    switch (op) {
    case OP_GETTABLE:
    case OP_GETI:
    case OP_GETFIELD:
    case OP_SELF:
    case OP_MOVE: {
      unsigned d = (b < nlocal[pc] ? 0u : depth[b]) + 1u;
      if (op == OP_SELF && a + 1 < 256)
        depth[a + 1] = (unsigned short)(d - 1);
      depth[a] = d > 0xFFFF ? 0xFFFF : (unsigned short)d;
      if (d > FLOW__MAX_FIELD_CHAIN) {
        f->line = lines[pc];
        f->what = "more than 64 field accesses in a row (a.b.c...): keep "
                  "part of the path in a local, like local c = a.b.c";
      }
      break;
    }
    case OP_GETUPVAL:
    case OP_GETTABUP:
      depth[a] = 1;
      break;
    case OP_JMP: {
      long target = (long)pc + 1 + GET_SJ(i);
      if (target == (long)pc + 3 && (size_t)target < n) {
        uint32_t i1, i2, i3;
        memcpy(&i1, code + (pc + 1) * 4, 4);
        memcpy(&i2, code + (pc + 2) * 4, 4);
        memcpy(&i3, code + (pc + 3) * 4, 4);
        if (GET_OP(i1) == OP_GETUPVAL && GET_OP(i2) == OP_LFALSESKIP &&
            GET_OP(i3) == OP_LOADTRUE) {
          f->line = lines[pc];
          f->what = "t[a < b] with t an upvalue (a table from outside the "
                    "function) is compiled wrongly by this Lua: put the key "
                    "in a local first (local k = a < b; t[k])";
        }
      }
      break;
    }
    default:
      if (!keeps_a(op))
        depth[a] = 0;
      break;
    }
  }
}

/* Reads one function prototype (and those nested in it). */
static void
read_proto(reader *r, const flow__allocator *al, finding *f, int depth)
{
  if (depth > 200) {
    r->bad = 1;
    return;
  }
  rd_string(r);                  /* source */
  int first = (int)rd_size(r);   /* linedefined */
  rd_size(r);                    /* lastlinedefined */
  rd_skip(r, 3);                 /* numparams, is_vararg, maxstacksize */
  size_t ncode = rd_size(r);
  if (r->bad || ncode > (size_t)(r->end - r->p) / 4) {
    r->bad = 1;
    return;
  }
  const unsigned char *code = r->p;
  rd_skip(r, ncode * 4);
  size_t nk = rd_size(r);
  for (size_t k = 0; k < nk && !r->bad; k++) {
    switch (rd_byte(r)) {
    case T_NIL:
    case T_FALSE:
    case T_TRUE:
      break;
    case T_INT:
    case T_FLT:
      rd_skip(r, 8);
      break;
    case T_SHRSTR:
    case T_LNGSTR:
      rd_string(r);
      break;
    default:
      r->bad = 1;
      break;
    }
  }
  size_t nup = rd_size(r);
  if (nup > (size_t)(r->end - r->p) / 3) {
    r->bad = 1;
    return;
  }
  rd_skip(r, nup * 3);
  size_t np = rd_size(r);
  for (size_t k = 0; k < np && !r->bad && f->what == NULL; k++)
    read_proto(r, al, f, depth + 1);
  if (r->bad || f->what != NULL)
    return;
  /* Debug information: the lines. */
  size_t ninfo = rd_size(r);
  const signed char *info = (const signed char *)r->p;
  rd_skip(r, ninfo);
  size_t nabs = rd_size(r);
  const unsigned char *abs = r->p;
  for (size_t k = 0; k < nabs && !r->bad; k++) {
    rd_size(r);
    rd_size(r);
  }
  size_t abs_len = (size_t)(r->p - abs);
  /* Two ints an instruction: its line, and the named locals alive there
     (counted from each local's first and last instruction). */
  int *lines = flow__calloc(al, 2 * ncode + 1, sizeof *lines);
  if (lines == NULL) {
    f->line = 0;
    f->what = "out of memory";
    return;
  }
  int *nlocal = lines + ncode;
  size_t nloc = rd_size(r);
  for (size_t k = 0; k < nloc && !r->bad; k++) {
    rd_string(r);
    size_t from = rd_size(r), to = rd_size(r);
    if (from < ncode)
      nlocal[from]++;
    if (to < ncode)
      nlocal[to]--;
  }
  for (size_t pc = 1; pc < ncode; pc++)
    nlocal[pc] += nlocal[pc - 1];
  size_t nupn = rd_size(r);
  for (size_t k = 0; k < nupn && !r->bad; k++)
    rd_string(r);
  if (!r->bad) {
    fill_lines(info, ninfo, abs, abs_len, nabs, first, lines, ncode, r);
    check_code(code, ncode, lines, nlocal, f);
  }
  flow__free(al, lines);
}

static int
dump_writer(lua_State *L, const void *p, size_t sz, void *ud)
{
  (void)L;
  flow__buf *b = ud;
  flow__buf_add(b, p, sz);
  return b->oom;
}

int
flow__bytecode_check(lua_State *L, flow__sandbox *sb, int *line, char *msg,
                     size_t len)
{
  const flow__allocator *al = sb->alloc;
  flow__buf b;
  flow__buf_init(&b, al);
  *line = 0;
  int rc = lua_dump(L, dump_writer, &b, 0);
  if (rc != 0 || b.oom) {
    flow__buf_free(&b);
    snprintf(msg, len, "out of memory checking the compiled code");
    return FLOW_ENOMEM;
  }
  /* Dumping and reading cost about as much as compiling did. */
  if (flow__sb_spend(sb, b.len / 4 + 1)) {
    flow__buf_free(&b);
    snprintf(msg, len, "budget exceeded");
    return FLOW_ELIMIT;
  }
  /* The header: signature, version 5.4, format 0, the check bytes, the
     sizes of an instruction, an integer and a number (4, 8, 8), a test
     integer and a test number; then the number of upvalues. */
  static const unsigned char head[] = { 0x1B, 'L', 'u', 'a', 0x54, 0,
                                        0x19, 0x93, '\r', '\n', 0x1A, '\n',
                                        4, 8, 8 };
  reader r = { (const unsigned char *)b.p,
               (const unsigned char *)b.p + b.len, 0 };
  finding f = { 0, NULL };
  if (b.len < sizeof head + 17 || memcmp(b.p, head, sizeof head) != 0) {
    r.bad = 1;
  } else {
    rd_skip(&r, sizeof head + 16 + 1);
    read_proto(&r, al, &f, 0);
  }
  flow__buf_free(&b);
  if (f.what != NULL && strcmp(f.what, "out of memory") == 0) {
    snprintf(msg, len, "out of memory checking the compiled code");
    return FLOW_ENOMEM;
  }
  if (f.what == NULL && !r.bad)
    return 0;
  /* "name:LINE: ...", naming the chunk as Lua's own messages do. */
  lua_Debug ar;
  lua_pushvalue(L, -1);
  lua_getinfo(L, ">S", &ar);
  *line = f.line > 0 ? f.line : 1;
  if (f.what != NULL)
    snprintf(msg, len, "%s:%d: %s", ar.short_src, *line, f.what);
  else
    snprintf(msg, len, "%s:1: the compiled code could not be checked (it "
                       "is not in Lua 5.4's format)",
             ar.short_src);
  return FLOW_ESCRIPT;
}
