return {
  name = 'f', version = 2, title = 'Fields',
  fields = {
    s = { type = 'string', required = true, pattern = '^[a-z]+$', max = 10 },
    i = { type = 'integer', min = 0, max = 9 },
    e = { type = 'enum', values = { 'x', 'y' } },
    d = { type = 'date' }, t = { type = 'datetime' },
    o = { type = 'object' }, l = { type = 'list' }, b = { type = 'boolean' },
  },
  initial = 'a',
  sla = { within = '3 working days', warn = '2 working days' },
  budget = { instructions = 50000 },
  states = {
    a = {
      enter = function(case) case.data.s = 'abc' end,
      after = { ['1h'] = { event = 'tick', payload = { n = 1 } }, ['2 working days'] = 'b' },
      on = {
        tick = function(case, ev) case.data.i = ev.payload.n end,
        go = { to = 'b', roles = { 'crew' }, guard = function(case, ev) return true end },
      },
      exit = function(case) flow.log('leaving') end,
    },
    b = { final = true },
  },
}
