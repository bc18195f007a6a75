-- Tests for bulky.lua.  Every test gets a fresh engine whose clock reads
-- Monday 2 February 2026, 09:00 London time.
load("bulky.lua")

local request = { uprn = "100023336956", items = 3 }
local crew = { actor = "kim", roles = { "crew" } }

test("a request is booked and collected", function()
  local c = open("bulky", request, { actor = "web" })
  c:expect_state("requested")
  c:signal("book", { slot = "2026-02-10" })
  c:expect_state("booked")
  c:expect_field("slot", "2026-02-10")
  c:signal("collect", {}, crew)
  c:expect_state("collected")
  c:expect_history({ "open", "book", "collect" })
  c:expect_sla("met")
end)

test("only the crew can say it was collected", function()
  local c = open("bulky", request)
  c:signal("book", { slot = "2026-02-10" })
  c:expect_refused("collect", {}, { actor = "sam" }, "FLOW_EPERM")
  c:expect_state("booked")
end)

test("a request nobody books lapses after 3 working days", function()
  local c = open("bulky", request)
  c:expect_timers({
    { event = "after", target = "lapsed", at = "2026-02-05T09:00:00Z" },
    { event = "sla_breached", at = "2026-02-16T09:00:00Z" },
  })
  advance("2 working days")
  c:expect_state("requested")
  advance("1 working day")
  c:expect_state("lapsed")
end)

test("a Friday request lapses on Wednesday",
     { at = "2026-02-06T15:00:00Z" }, function()
  local c = open("bulky", request)
  advance_to("2026-02-11T14:59:00Z")
  c:expect_state("requested")
  advance("1m")
  c:expect_state("lapsed")
end)

test("booking needs a day", function()
  local c = open("bulky", request)
  c:expect_refused("book", {}, "FLOW_EREFUSED")
  c:expect_refused("book", { slot = "next Tuesday" }, "FLOW_EDATA")
end)

test("nonsense requests are refused", function()
  expect_open_refused("bulky", { uprn = "12 High St", items = 3 }, nil,
                      "FLOW_EDATA")
  expect_open_refused("bulky", { uprn = "1", items = 40 }, nil, "FLOW_EDATA")
end)
