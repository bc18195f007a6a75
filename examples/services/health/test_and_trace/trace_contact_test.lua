-- Tests for trace_contact.lua: one contact of a positive case, opened by
-- the host for contact_tracing.lua (whose tests show the two linked).
-- Run them with:
--
--   flow test --coverage examples/services/health/test_and_trace/
--
-- Every test starts with a fresh, empty engine whose clock reads Monday
-- 2 February 2026, 09:00 (London, and UTC: it is winter), unless the test
-- says otherwise.

load("trace_contact.lua")

-- What contact_tracing.lua asks the host to open for a contact.
local contact = {
  index_case = "12",
  contact_no = 1,
  name = "Sam Jones",
  phone = "07700 900456",
  last_contact = "2026-02-01",
  household = true,
}

local function contact_with(changes)
  local data = {}
  for k, v in pairs(contact) do data[k] = v end
  for k, v in pairs(changes) do
    if v == false and k ~= "household" then data[k] = nil else data[k] = v end
  end
  return data
end

-- contact_tracing.lua opens these cases with flow.open; here the test
-- opens them itself, as the engine's own actor.
local host = { actor = "engine", roles = { "system" } }
local supervisor = { actor = "priya", roles = { "supervisor" } }

local function templates(c)
  local found = {}
  for _, a in ipairs(c:actions()) do found[#found + 1] = a.args.template end
  return found
end

test("a contact is told to isolate to the 10th day after the last contact",
     function()
  mock.action("notify.sms", { result = { id = "sms-1" } })
  local c = open("trace_contact", contact, host)
  c:expect_state("isolating")
  c:expect_field("isolation_until", "2026-02-11")
  c:expect_actions({
    { action = "notify.sms", status = "done",
      args = { to = "07700 900456", template = "contact_isolation_advice",
               personalisation = { last_day = "2026-02-11" } } },
  })
  c:expect_tasks({
    { name = "call_contact", team = "tracers", due = "2026-02-03T09:00:00Z",
      title = "Call contact 1 of case 12 with isolation advice" },
  })
  c:expect_timers({
    { kind = "task_due", at = "2026-02-03T09:00:00Z" },
    { event = "release", at = "2026-02-12T09:00:00Z" },
  })
end)

test("the contact is released the morning after the last day", function()
  mock.action("notify.sms", { result = { id = "sms-1" } })
  local c = open("trace_contact", contact, host)
  advance_to("2026-02-12T08:59:59Z")
  c:expect_state("isolating")
  advance("1s")
  c:expect_state("released")
  expect(templates(c)).to_be({ "contact_isolation_advice",
                               "contact_isolation_ended" })
  c:expect_tasks({})
  c:expect_history({ "open", "release" })
end)

test("the release keeps to 09:00 London time after the clocks go forward",
     { at = "2026-03-23T09:00:00Z" }, function()
  local c = open("trace_contact", contact_with({ last_contact = "2026-03-20" }),
                 host)
  c:expect_field("isolation_until", "2026-03-30")
  -- 09:00 British Summer Time on Tuesday 31 March is 08:00 UTC.
  advance_to("2026-03-31T07:59:59Z")
  c:expect_state("isolating")
  advance("1s")
  c:expect_state("released")
end)

test("the tracer's call is recorded, and the contact isolates on", function()
  local c = open("trace_contact", contact, host)
  c:expect_complete_refused("call_contact", { outcome = "engaged" }, "asha",
                            "FLOW_EDATA")
  c:complete("call_contact", { outcome = "reached", note = "will isolate" },
             "asha")
  c:expect_field("call", "reached")
  c:expect_state("isolating")
  c:expect_tasks({})
end)

test("a call reported late is still recorded", function()
  local c = open("trace_contact", contact_with({ phone = false }), host)
  advance("30h")
  c:expect_tasks({ { name = "call_contact", overdue = true } })
  c:complete("call_contact", { outcome = "wrong_number" }, "asha")
  c:expect_field("call", "wrong_number")
end)

test("no phone number: no text, but the call is still a task", function()
  local c = open("trace_contact", contact_with({ phone = false }), host)
  c:expect_actions({})
  c:expect_tasks({ "call_contact" })
end)

test("a contact named after their isolation ended needs nothing", function()
  -- Last contact 21 January: the last day of isolation was 31 January.
  local c = open("trace_contact", contact_with({ last_contact = "2026-01-21" }),
                 host)
  c:expect_state("isolation_over")
  expect(c:get().status).to_be("closed")
  c:expect_actions({})
  c:expect_tasks({})
  c:expect_timers({})
  -- On the last day itself the contact still isolates.
  local d = open("trace_contact", contact_with({ last_contact = "2026-01-23" }),
                 host)
  d:expect_state("isolating")
end)

test("the positive case was raised in error: the contact is told", function()
  load("contact_tracing.lua")
  mock.action("notify.sms", { result = { id = "sms-1" } })
  local index = open("contact_tracing", {
    barcode = "ABC12345678", name = "Alex Smith", phone = "07700 900123",
    address = "12 High Street, Exeter", postcode = "EX1 1AA" })
  send("test_result", "ABC12345678", { result = "positive",
                                       test_date = "2026-02-01" })
  index:complete("call", { outcome = "reached" }, "asha")
  local tracer = { actor = "asha", roles = { "tracer" } }
  index:signal("add_contact", { name = "Sam Jones", last_contact = "2026-02-01",
                                phone = "07700 900456" }, tracer)
  local c = case_of(index:data().contacts[1].case_id)
  index:signal("raise_in_error", { reason = "false positive" }, supervisor)
  c:expect_state("withdrawn")
  c:expect_field("withdrawn_reason", "false positive")
  expect(templates(c)).to_be({ "contact_isolation_advice",
                               "contact_isolation_cancelled" })
  c:expect_tasks({})
  c:expect_timers({})
end)

test("only the positive case, or the host, says it was raised in error",
     function()
  local c = open("trace_contact", contact, host)
  c:expect_refused("index_withdrawn", {}, supervisor, "FLOW_EPERM")
  c:expect_refused("index_withdrawn", {}, "asha", "FLOW_EPERM")
  c:expect_state("isolating")
  c:signal("index_withdrawn", { index_case = "12", reason = "lab error" }, host)
  c:expect_state("withdrawn")
end)

test("a supervisor closes a contact raised in error, with a reason",
     function()
  local c = open("trace_contact", contact, host)
  c:expect_refused("raise_in_error", { reason = "x" },
                   { actor = "asha", roles = { "tracer" } }, "FLOW_EPERM")
  c:expect_refused("raise_in_error", {}, supervisor, "FLOW_EREFUSED")
  c:expect_refused("raise_in_error", { reason = ("x"):rep(501) }, supervisor,
                   "FLOW_EDATA")
  c:signal("raise_in_error", { reason = "not a real contact" }, supervisor)
  c:expect_state("withdrawn")
  c:expect_refused("raise_in_error", { reason = "again" }, supervisor,
                   "FLOW_ECLOSED")
end)

test("the release only comes from its timer", function()
  local c = open("trace_contact", contact, host)
  c:expect_refused("release", {}, supervisor, "FLOW_EPERM")
  c:expect_refused("call_done", {}, supervisor, "FLOW_EPERM")
  c:expect_state("isolating")
end)

test("contacts that make no sense are refused, field by field", function()
  local function refused(changes, words)
    expect(expect_open_refused("trace_contact", contact_with(changes), host,
                               "FLOW_EDATA")).to_contain(words)
  end
  refused({ index_case = false }, "index_case: is required")
  refused({ index_case = "case 12" }, "index_case: does not match")
  refused({ contact_no = false }, "contact_no: is required")
  refused({ contact_no = 0 }, "contact_no: must be at least 1")
  refused({ name = false }, "name: is required")
  refused({ name = ("x"):rep(101) }, "name: must have at most 100 characters")
  refused({ phone = "ring me" }, "phone: does not match")
  refused({ last_contact = false }, "last_contact: is required")
  refused({ last_contact = "1 February" }, "last_contact:")
  refused({ last_contact = "2026-02-03" }, "last_contact: cannot be after today")
  refused({ household = "yes" }, "household:")
  refused({ email = "sam@example.org" }, "email: is not a field")
end)
