-- The minimal service of the bins benchmark (issue 15): the missed-bin
-- workload's four states and the data its events add, with no indexed
-- fields, no patterns, no timers and no service level.  What the engine
-- costs over sqlite_raw_bins.c for this is the engine's own overhead.
return {
  name = "missed_bin", version = 1,
  fields = {
    uprn = { type = "string", required = true },
    address = { type = "string", required = true },
    bin = { type = "string", required = true },
    reported_by = { type = "string" },
    crew = { type = "string" },
    scheduled_for = { type = "string" },
    collected = { type = "boolean" },
  },
  initial = "reported",
  states = {
    reported = { on = { assign = function(case, ev)
      case.data.crew = ev.payload.crew
      return "assigned"
    end } },
    assigned = { on = { schedule = function(case, ev)
      case.data.scheduled_for = ev.payload.date
      return "scheduled"
    end } },
    scheduled = { on = { collect = function(case)
      case.data.collected = true
      return "closed"
    end } },
    closed = { final = true },
  },
}
