-- Book a bulky waste collection: the example service of docs/testing.md.
return {
  name = "bulky",
  version = 1,
  title = "Book a bulky waste collection",
  fields = {
    uprn = { type = "string", required = true, pattern = "^%d+$", max = 12 },
    items = { type = "integer", required = true, min = 1, max = 10 },
    slot = { type = "date" },
  },
  initial = "requested",
  sla = { within = "10 working days" },
  states = {
    requested = {
      -- Nobody books a day within 3 working days: the request lapses.
      after = { ["3 working days"] = "lapsed" },
      on = {
        book = function(case, ev)
          if not ev.payload.slot then
            flow.fail('say which day, like { "slot": "2026-02-10" }')
          end
          case.data.slot = ev.payload.slot
          return "booked"
        end,
      },
    },
    booked = {
      on = {
        collect = { to = "collected", roles = { "crew" } },
        cancel = "lapsed",
      },
    },
    lapsed = { final = true },
    collected = { final = true },
  },
}
