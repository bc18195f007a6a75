-- Tests for missed_bin.lua: every state, every transition, the
-- escalation timer over a weekend and over Christmas, the service level
-- (the next working day for an assisted collection),
-- the roles and the data checks.  Run them with:
--
--   flow test examples/services/missed_bin_test.lua
--   flow test --coverage examples/
--
-- Every test starts with a fresh, empty engine whose clock reads Monday
-- 2 February 2026, 09:00 (London), unless the test says otherwise.

load("missed_bin.lua")

local report = {
  uprn = "100023336956",
  address = "12 High Street",
  bin = "refuse",
  phone = "07700 900123",
}

local supervisor = { actor = "priya", roles = { "supervisor" } }
local crew = { actor = "kim", roles = { "crew" } }

test("a new report waits in 'reported' with its service level", function()
  local c = open("missed_bin", report, { actor = "web" })
  c:expect_state("reported")
  c:expect_data({ uprn = "100023336956", bin = "refuse" })
  c:expect_history({ "open" })
  -- Five working days from Monday 09:00 is the next Monday 09:00.
  c:expect_sla("due", "2026-02-09T09:00:00Z")
  c:expect_timers({
    { event = "after", target = "escalated", at = "2026-02-04T09:00:00Z" },
    { event = "sla_breached", at = "2026-02-09T09:00:00Z" },
  })
end)

test("assign, schedule, collect: the usual way through", function()
  local c = open("missed_bin", report)
  c:signal("assign", { crew = "north-2" }, supervisor)
  c:expect_state("assigned")
  c:expect_field("crew", "north-2")
  c:signal("schedule", { date = "2026-02-04" }, crew)
  c:expect_state("scheduled")
  c:expect_field("scheduled_for", "2026-02-04")
  advance("1 working day")
  c:signal("collect", {}, crew)
  c:expect_state("closed")
  c:expect_field("collected", true)
  c:expect_history({ "open", "assign", "schedule", "collect" })
  c:expect_sla("met")
  c:expect_timers({})
end)

test("the crew can collect straight away, without booking a day", function()
  local c = open("missed_bin", report)
  c:signal("assign", { crew = "south-1" })
  c:signal("collect")
  c:expect_state("closed")
  c:expect_data({ crew = "south-1", collected = true })
end)

test("the crew cannot get in after assignment: escalated", function()
  local c = open("missed_bin", report)
  c:signal("assign", { crew = "north-2" })
  c:signal("cannot_access", {}, crew)
  c:expect_state("escalated")
end)

test("the crew cannot get in on the booked day: escalated", function()
  local c = open("missed_bin", report)
  c:signal("assign", { crew = "north-2" })
  c:signal("schedule", { date = "2026-02-05" })
  c:signal("cannot_access", {}, crew)
  c:expect_state("escalated")
  c:signal("collect", {}, supervisor)
  c:expect_state("closed")
  c:expect_field("collected", true)
end)

test("nobody assigns it: escalated after 2 working days", function()
  local c = open("missed_bin", report)
  advance("47h")
  c:expect_state("reported")
  advance("1h")
  c:expect_state("escalated")
  expect(now()).to_be("2026-02-04T09:00:00Z")
  c:expect_history({ "open", "after" })
end)

test("reported on a Friday afternoon: the weekend does not count",
     { at = "2026-02-06T16:00:00Z" }, function()
  local c = open("missed_bin", report)
  advance_to("2026-02-10T15:59:00Z")
  c:expect_state("reported")
  advance("1m")
  c:expect_state("escalated")
end)

test("reported on Christmas Eve: the bank holidays do not count",
     { at = "2026-12-24T10:00:00Z" }, function()
  -- Thursday 24th; Friday 25th and Monday 28th (Boxing Day moved) are
  -- bank holidays, so the working days are Tuesday 29th and Wednesday
  -- 30th.
  local c = open("missed_bin", report)
  c:expect_timers({
    { event = "after", at = "2026-12-30T10:00:00Z" },
    { event = "sla_breached" },
  })
  advance("5d")
  c:expect_state("reported")
  advance_to("2026-12-30T10:00:00Z")
  c:expect_state("escalated")
end)

test("an escalated case is closed only by a supervisor", function()
  local c = open("missed_bin", report)
  advance("2 working days")
  c:expect_state("escalated")
  c:expect_refused("collect", {}, crew, "FLOW_EPERM")
  c:expect_state("escalated")
  c:signal("collect", {}, supervisor)
  c:expect_state("closed")
  c:expect_sla("met")
end)

test("the service level is breached after 5 working days", function()
  local c = open("missed_bin", report)
  c:signal("assign", { crew = "north-2" })
  advance("4 working days")
  c:expect_sla("due")
  advance("1 working day")
  c:expect_sla("breached")
  c:expect_history({ "open", "assign", "sla_breached" })
  c:signal("collect")
  c:expect_sla("breached")
end)

test("an assisted collection is due the next working day", function()
  local assisted = { uprn = "100023336956", address = "12 High Street",
                     bin = "refuse", assisted = true }
  -- Reported on a Friday afternoon: due on Monday at the same time.
  local c = open("missed_bin", assisted, { at = "2026-02-06T15:00:00Z" })
  c:expect_sla("due", "2026-02-09T15:00:00Z")
  -- Everyone else keeps the five working days.
  local d = open("missed_bin", report)
  d:expect_sla("due", "2026-02-13T15:00:00Z")
  advance_to("2026-02-09T15:00:00Z")
  c:expect_sla("breached")
  d:expect_sla("due")
end)

test("only the crew may say they could not get in", function()
  local c = open("missed_bin", report)
  c:signal("assign", { crew = "north-2" })
  c:expect_refused("cannot_access", {}, { actor = "sam" }, "FLOW_EPERM")
  c:expect_refused("cannot_access", {}, supervisor, "FLOW_EPERM")
  c:expect_state("assigned")
end)

test("events a state does not take are refused", function()
  local c = open("missed_bin", report)
  c:expect_refused("collect", "FLOW_EEVENT")
  c:signal("assign", { crew = "north-2" })
  c:signal("collect")
  c:expect_refused("assign", { crew = "x" }, "FLOW_ECLOSED")
end)

test("the handlers refuse what they cannot use", function()
  local c = open("missed_bin", report)
  c:expect_refused("assign", {}, "FLOW_EREFUSED")
  c:expect_refused("assign", { crew = 7 }, "FLOW_EDATA")
  c:signal("assign", { crew = "north-2" })
  c:expect_refused("schedule", {}, "FLOW_EREFUSED")
  c:expect_refused("schedule", { date = "2 February" }, "FLOW_EDATA")
  c:expect_state("assigned")
end)

test("nonsense reports are refused", function()
  expect_open_refused("missed_bin", {}, nil, "FLOW_EDATA")
  expect_open_refused("missed_bin", { uprn = "12ab", address = "1 Road",
                                      bin = "refuse" }, nil, "FLOW_EDATA")
  expect_open_refused("missed_bin", { uprn = "1", address = "1 Road",
                                      bin = "glass" }, nil, "FLOW_EDATA")
  expect_open_refused("missed_bin", { uprn = "1", address = "1 Road",
                                      bin = "refuse", colour = "green" },
                      nil, "FLOW_EDATA")
  expect_open_refused("no_such_service", report, nil, "FLOW_ENOTFOUND")
end)
