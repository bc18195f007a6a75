-- Tests for missed_bin_report.lua.  Run them with:
--
--   flow test --coverage examples/services/waste/missed_bin/
--
-- Every test starts with a fresh, empty engine whose clock reads Monday
-- 2 February 2026, 09:00 (London), unless the test says otherwise.  There
-- is no host: mock.action answers for the address system and for GOV.UK
-- Notify, and the test itself plays the crew, the office and the
-- supervisor.

load("missed_bin_report.lua")

local SERVICE = "missed_bin_report"

-- A resident who gave a phone number.
local report = {
  uprn = "100023336956",
  bin = "refuse",
  phone = "07700 900123",
  reported_by = "resident",
  notes = "Bin was out by 7am",
}

-- The same report without a phone or an email.
local function without_contact()
  return { uprn = "100023336956", bin = "refuse", reported_by = "contact_centre" }
end

-- What the address system says about 100023336956.
local property = { address = "12 High Street, Exeter EX1 1AA",
                   round = "TUE-4", crew = "north-2" }

local supervisor = { actor = "priya", roles = { "supervisor" } }
local kim = { actor = "kim", roles = { "crew" } }
local office = { actor = "alex", roles = { "office" } }

-- The host as it usually is: the lookup finds the property, and texts and
-- emails are sent.
local function host_works()
  mock.action("address.lookup", { result = property })
  mock.action("notify.sms", { result = { id = "sms-1" } })
  mock.action("notify.email", { result = { id = "email-1" } })
end

-- The templates of the texts (or emails) a case sent, in order.
local function templates(c, action)
  local list = {}
  for _, a in ipairs(c:actions()) do
    if a.action == (action or "notify.sms") then
      list[#list + 1] = a.args.template
    end
  end
  return list
end

-- ---------------------------------------------------------------------
-- The usual way through
-- ---------------------------------------------------------------------

test("a report is looked up and given to the round's crew", function()
  host_works()
  local c = open(SERVICE, report, { actor = "web" })
  c:expect_state("with_crew")
  c:expect_data({
    uprn = "100023336956", bin = "refuse",
    address = "12 High Street, Exeter EX1 1AA", round = "TUE-4",
    crew = "north-2", repeat_key = "100023336956/refuse",
  })
  c:expect_history({ "open", "address_found" })
  c:expect_actions({
    { action = "notify.sms", status = "done",
      args = { to = "07700 900123", template = "bin_reported",
               personalisation = { reference = c.id, bin = "refuse" } } },
    { action = "address.lookup", status = "done", attempts = 1,
      args = { uprn = "100023336956" } },
    { action = "notify.sms", status = "done",
      args = { to = "07700 900123", template = "bin_crew_booked",
               personalisation = { reference = c.id, bin = "refuse",
                                   address = "12 High Street, Exeter EX1 1AA" } } },
  })
  -- The crew's task: within the working day, for the round's crew.
  c:expect_tasks({
    { name = "collect", team = "north-2", status = "open",
      due = "2026-02-03T09:00:00Z",
      title = "Empty the missed refuse bin at 12 High Street, Exeter EX1 1AA" },
  })
  c:expect_sla("due", "2026-02-06T09:00:00Z")
  c:expect_timers({
    { kind = "task_due", at = "2026-02-03T09:00:00Z" },
    { event = "not_collected_in_time", at = "2026-02-04T09:00:00Z" },
    { event = "sla_warning", at = "2026-02-05T09:00:00Z" },
    { event = "sla_breached", at = "2026-02-06T09:00:00Z" },
    { event = "repeat_window_over", at = "2026-02-09T09:00:00Z" },
  })
end)

test("the crew empties the bin: closed, and the resident is texted", function()
  host_works()
  local c = open(SERVICE, report)
  advance("3h")
  c:claim("collect", kim)
  c:expect_tasks({ { name = "collect", status = "claimed", claimed_by = "kim" } })
  c:complete("collect", { outcome = "collected", note = "round the back" }, kim)
  c:expect_state("closed")
  c:expect_data({ resolution = "collected", collected_at = "2026-02-02T12:00:00Z",
                  collected_by = "kim", crew_note = "round the back" })
  expect(templates(c)).to_be({ "bin_reported", "bin_crew_booked", "bin_collected" })
  c:expect_history({ "open", "address_found", "crew_reported" })
  c:expect_sla("met")
  c:expect_tasks({})
  c:expect_timers({})
  expect(c:tasks()[1].outcome).to_be({ outcome = "collected", note = "round the back" })
end)

test("the bin was not put out: closed without going back", function()
  host_works()
  local c = open(SERVICE, report)
  c:complete("collect", { outcome = "not_put_out" }, kim)
  c:expect_state("closed")
  c:expect_field("resolution", "not_put_out")
  c:expect_field("collected_at", nil)
  expect(templates(c)).to_be({ "bin_reported", "bin_crew_booked", "bin_not_put_out" })
end)

test("the crew cannot get to the bin: a supervisor sends another crew", function()
  host_works()
  local c = open(SERVICE, report)
  c:complete("collect", { outcome = "cannot_access", note = "lane blocked" }, kim)
  c:expect_state("escalated")
  c:expect_data({ escalation_reason = "cannot_access", crew_note = "lane blocked" })
  c:expect_tasks({})
  expect(templates(c)).to_be({ "bin_reported", "bin_crew_booked", "bin_escalated" })
  advance("2h")
  c:signal("reassign", { crew = "north-3", reason = "smaller lorry" }, supervisor)
  c:expect_state("with_crew")
  c:expect_data({ crew = "north-3", supervisor_note = "smaller lorry",
                  overridden_by = "priya" })
  -- A new task for the new crew, and a new booking text.
  c:expect_tasks({ { name = "collect", team = "north-3",
                     due = "2026-02-03T11:00:00Z" } })
  expect(templates(c)).to_be({ "bin_reported", "bin_crew_booked", "bin_escalated",
                               "bin_crew_booked" })
  c:complete("collect", { outcome = "collected" }, "lee")
  c:expect_state("closed")
  c:expect_data({ resolution = "collected", collected_by = "lee" })
  c:expect_history({ "open", "address_found", "crew_reported", "reassign",
                     "crew_reported" })
end)

-- ---------------------------------------------------------------------
-- Escalation after 2 working days, and the service level
-- ---------------------------------------------------------------------

test("not emptied within 2 working days: escalated to a supervisor", function()
  host_works()
  local c = open(SERVICE, report)
  advance_to("2026-02-04T08:59:00Z")
  c:expect_state("with_crew")
  advance("1m")
  c:expect_state("escalated")
  c:expect_field("escalation_reason", "not_collected_in_time")
  c:expect_history({ "open", "address_found", "not_collected_in_time" })
  expect(templates(c)).to_be({ "bin_reported", "bin_crew_booked", "bin_escalated" })
  -- The crew's task went with the state: it can no longer be completed.
  c:expect_tasks({})
  expect(c:tasks()[1].status).to_be("cancelled")
  c:expect_complete_refused("collect", { outcome = "collected" }, kim,
                            "FLOW_ECONFLICT")
end)

test("reported on a Friday afternoon: the weekend does not count",
     { at = "2026-02-06T16:00:00Z" }, function()
  host_works()
  local c = open(SERVICE, report)
  c:expect_tasks({ { name = "collect", due = "2026-02-09T16:00:00Z" } })
  advance_to("2026-02-10T15:59:00Z")
  c:expect_state("with_crew")
  advance("1m")
  c:expect_state("escalated")
  expect(now()).to_be("2026-02-10T16:00:00Z")
end)

test("reported on Christmas Eve: the bank holidays do not count",
     { at = "2026-12-24T10:00:00Z" }, function()
  -- Thursday 24 December 2026.  Friday 25th (Christmas Day) and Monday
  -- 28th (Boxing Day, moved from the Saturday) are bank holidays, so the
  -- two working days are Tuesday 29th and Wednesday 30th.  The service
  -- level's four are the 29th, 30th, 31st and (New Year's Day being a
  -- bank holiday) Monday 4 January.
  host_works()
  local c = open(SERVICE, report)
  c:expect_tasks({ { name = "collect", due = "2026-12-29T10:00:00Z" } })
  c:expect_timers({
    { kind = "task_due", at = "2026-12-29T10:00:00Z" },
    { event = "not_collected_in_time", at = "2026-12-30T10:00:00Z" },
    { event = "repeat_window_over", at = "2026-12-31T10:00:00Z" },
    { event = "sla_warning", at = "2026-12-31T10:00:00Z" },
    { event = "sla_breached", at = "2027-01-04T10:00:00Z" },
  })
  advance("5d")                         -- Tuesday 29th, 10:00
  c:expect_state("with_crew")
  advance_to("2026-12-30T09:59:00Z")
  c:expect_state("with_crew")
  advance("1m")
  c:expect_state("escalated")
end)

test("reported before Easter: Good Friday and Easter Monday do not count",
     { at = "2026-04-02T13:00:00Z" }, function()
  -- Thursday 2 April 2026, 14:00 in London (summer time).  The working
  -- days after it are Tuesday 7th and Wednesday 8th.
  host_works()
  local c = open(SERVICE, report)
  advance_to("2026-04-08T12:59:00Z")
  c:expect_state("with_crew")
  advance("1m")
  c:expect_state("escalated")
end)

test("the service level warns after 3 working days and is breached after 4", function()
  host_works()
  local c = open(SERVICE, report)
  advance("2 working days")
  c:expect_state("escalated")
  c:expect_sla("due")
  advance("1 working day")
  c:expect_sla("warned")
  advance("1 working day")
  c:expect_sla("breached")
  c:expect_history({ "open", "address_found", "not_collected_in_time",
                     "sla_warning", "sla_breached" })
  c:signal("close", { reason = "emptied on the Friday round" }, supervisor)
  c:expect_state("closed")
  c:expect_sla("breached")
end)

test("emptied after the warning but in time: the service level is met", function()
  host_works()
  local c = open(SERVICE, report)
  c:complete("collect", { outcome = "cannot_access" }, kim)
  advance("3 working days")
  c:expect_sla("warned")
  c:signal("reassign", { crew = "north-3", reason = "gate open now" }, supervisor)
  c:complete("collect", { outcome = "collected" }, "lee")
  c:expect_sla("met")
end)

-- ---------------------------------------------------------------------
-- Texts and emails: only to those who gave a number or an address
-- ---------------------------------------------------------------------

test("with a phone number, every step is texted", function()
  host_works()
  local c = open(SERVICE, report)
  advance("2 working days")                           -- escalated
  c:signal("reassign", { crew = "north-3", reason = "north-2 off" }, supervisor)
  c:complete("collect", { outcome = "collected" }, "lee")
  expect(templates(c)).to_be({ "bin_reported", "bin_crew_booked", "bin_escalated",
                               "bin_crew_booked", "bin_collected" })
  expect(templates(c, "notify.email")).to_be({})
  for _, a in ipairs(c:actions()) do
    if a.action == "notify.sms" then
      expect(a.args.to).to_be("07700 900123")
      expect(a.args.personalisation.reference).to_be(c.id)
    end
  end
end)

test("no phone and no email: nobody is texted or emailed", function()
  host_works()
  local c = open(SERVICE, without_contact())
  advance("2 working days")
  c:signal("reassign", { crew = "north-3", reason = "north-2 off" }, supervisor)
  c:complete("collect", { outcome = "collected" }, "lee")
  c:expect_state("closed")
  c:expect_actions({ { action = "address.lookup", status = "done" } })
end)

test("an email and no phone: the resident is emailed at each step instead", function()
  host_works()
  local data = without_contact()
  data.email = "sam@example.org"
  local c = open(SERVICE, data)
  c:complete("collect", { outcome = "cannot_access" }, kim)
  c:signal("reassign", { crew = "north-3", reason = "gate open now" }, supervisor)
  c:complete("collect", { outcome = "collected" }, "lee")
  expect(templates(c)).to_be({})
  expect(templates(c, "notify.email")).to_be({ "bin_reported", "bin_crew_booked",
    "bin_escalated", "bin_crew_booked", "bin_collected" })
  c:expect_actions({
    { action = "notify.email", args = { email_address = "sam@example.org",
                                        template = "bin_reported" } },
    { action = "address.lookup" },
    { action = "notify.email" }, { action = "notify.email" },
    { action = "notify.email" }, { action = "notify.email" },
  })
end)

test("a phone and an email: a text, not both", function()
  host_works()
  local data = { uprn = "100023336956", bin = "food", phone = "+44 7700 900123",
                 email = "sam@example.org" }
  local c = open(SERVICE, data)
  c:complete("collect", { outcome = "collected" }, kim)
  expect(templates(c)).to_be({ "bin_reported", "bin_crew_booked", "bin_collected" })
  expect(templates(c, "notify.email")).to_be({})
end)

test("a text the gateway cannot send is tried 4 times, then an incident; the case goes on",
     function()
  mock.action("address.lookup", { result = property })
  mock.action("notify.sms", { fail = "gateway busy", retry = true })
  local c = open(SERVICE, report)
  c:expect_state("with_crew")
  advance("2h")
  c:expect_actions({
    { action = "notify.sms", status = "incident", attempts = 4 },
    { action = "address.lookup", status = "done" },
    { action = "notify.sms", status = "incident", attempts = 4 },
  })
  expect(c:actions()[1].error).to_contain("gateway busy")
  local incidents = c:incidents()
  expect(#incidents).to_be(2)
  expect(incidents[1].source).to_be("action")
  expect(incidents[1].status).to_be("open")
  c:expect_state("with_crew")
  c:complete("collect", { outcome = "collected" }, kim)
  c:expect_state("closed")
end)

test("a text refused for good is an incident at once", function()
  mock.action("address.lookup", { result = property })
  mock.action("notify.sms", { fail = "not a mobile number" })
  local c = open(SERVICE, report)
  c:expect_state("with_crew")
  c:expect_actions({
    { action = "notify.sms", status = "incident", attempts = 1 },
    { action = "address.lookup", status = "done" },
    { action = "notify.sms", status = "incident", attempts = 1 },
  })
  expect(c:actions()[1].error).to_contain("not a mobile number")
  expect(#c:incidents()).to_be(2)
end)

-- ---------------------------------------------------------------------
-- The address lookup: unknown, slow, down
-- ---------------------------------------------------------------------

test("an unknown UPRN is rejected, and the resident is told", function()
  mock.action("address.lookup", { fail = "no property with UPRN 100023336956" })
  mock.action("notify.sms", { result = { id = "sms-1" } })
  local c = open(SERVICE, report)
  c:expect_state("rejected")
  c:expect_data({ resolution = "unknown_uprn",
                  lookup_error = "no property with UPRN 100023336956" })
  expect(c:get().status).to_be("closed")
  c:expect_actions({
    { action = "notify.sms", args = { template = "bin_reported" } },
    { action = "address.lookup", status = "failed", attempts = 1 },
    { action = "notify.sms", args = { template = "bin_report_rejected",
                                      personalisation = { uprn = "100023336956" } } },
  })
  c:expect_history({ "open", "lookup_failed" })
  c:expect_tasks({})
  c:expect_timers({})
  c:expect_sla("met")
end)

test("a lookup that never answers is tried 3 times, then goes to the office", function()
  mock.action("address.lookup", { silent = true })
  local c = open(SERVICE, without_contact())
  c:expect_state("looking_up")
  advance("1m")
  c:expect_state("looking_up")
  c:expect_actions({ { action = "address.lookup", status = "pending", attempts = 1 } })
  advance("10m")
  c:expect_state("needs_address")
  c:expect_actions({ { action = "address.lookup", status = "failed", attempts = 3 } })
  expect(c:data().lookup_error).to_contain("timeout")
  c:expect_tasks({
    { name = "find_address", team = "waste_office", status = "open",
      title = "Find the address, round and crew for UPRN 100023336956" },
  })
  c:complete("find_address", { outcome = "found", address = "12 High Street",
                               round = "TUE-4", crew = "north-2" }, office)
  c:expect_state("with_crew")
  c:expect_data({ address = "12 High Street", round = "TUE-4", crew = "north-2" })
  c:expect_tasks({ { name = "collect", team = "north-2" } })
  c:expect_history({ "open", "lookup_failed", "address_checked" })
end)

test("an address system that is down is tried 3 times, then goes to the office", function()
  mock.action("address.lookup", { fail = "503 Service Unavailable", retry = true })
  local c = open(SERVICE, without_contact())
  advance("10m")
  c:expect_state("needs_address")
  c:expect_field("lookup_error", "503 Service Unavailable")
  c:expect_actions({ { action = "address.lookup", attempts = 3 } })
end)

test("a lookup that answers on the second try goes on as usual", function()
  mock.action("address.lookup", function(args, req)
    expect(args.uprn).to_be("100023336956")
    if req.attempt == 1 then return { silent = true } end
    return { result = property }
  end)
  local c = open(SERVICE, without_contact())
  c:expect_state("looking_up")
  advance("5m")
  c:expect_state("with_crew")
  c:expect_actions({ { action = "address.lookup", status = "done", attempts = 2 } })
end)

test("an unknown UPRN found on the second try is still rejected", function()
  mock.action("address.lookup", function(args, req)
    if req.attempt == 1 then return { silent = true } end
    return { fail = "no such UPRN" }
  end)
  local c = open(SERVICE, without_contact())
  advance("5m")
  c:expect_state("rejected")
  c:expect_field("resolution", "unknown_uprn")
end)

test("a lookup answer without a crew goes to the office", function()
  mock.action("address.lookup", { result = { address = "Flat 2, 12 High Street" } })
  local c = open(SERVICE, without_contact())
  c:expect_state("needs_address")
  c:expect_field("lookup_error", "the lookup gave no address or crew")
  c:expect_field("address", nil)
end)

test("the office finds it is not a property: rejected", function()
  mock.action("address.lookup", { silent = true })
  mock.action("notify.sms", { result = { id = "sms-1" } })
  local c = open(SERVICE, report)
  advance("10m")
  c:complete("find_address", { outcome = "not_a_property" }, office)
  c:expect_state("rejected")
  c:expect_field("resolution", "unknown_uprn")
  expect(templates(c)).to_be({ "bin_reported", "bin_report_rejected" })
end)

test("the office must give the address and the crew", function()
  mock.action("address.lookup", { silent = true })
  local c = open(SERVICE, without_contact())
  advance("10m")
  local why = c:expect_complete_refused("find_address",
    { outcome = "found", address = "12 High Street" }, office, "FLOW_EREFUSED")
  expect(why).to_contain("give the address and the crew")
  why = c:expect_complete_refused("find_address", { address = "12 High Street" },
                                  office, "FLOW_EDATA")
  expect(why).to_contain("outcome: is required")
  c:expect_complete_refused("find_address", { outcome = "maybe" }, office, "FLOW_EDATA")
  c:expect_state("needs_address")
  c:expect_tasks({ { name = "find_address", status = "open" } })
end)

test("the office finds the address a day late: the case goes on", function()
  mock.action("address.lookup", { silent = true })
  local c = open(SERVICE, without_contact())
  advance("10m")
  -- The office has until the same time the next working day.
  local gave_up = c:history()[2].at                 -- 2026-02-02T09:05...
  c:expect_tasks({ { name = "find_address", overdue = false,
                     due = (gave_up:gsub("^2026%-02%-02", "2026-02-03")) } })
  advance("2 working days")
  c:expect_tasks({ { name = "find_address", overdue = true } })
  c:expect_state("needs_address")
  c:complete("find_address", { outcome = "found", address = "12 High Street",
                               crew = "north-2" }, office)
  c:expect_state("with_crew")
  -- The crew's 2 working days start when they get the job.
  c:expect_timers({
    { event = "sla_warning", at = "2026-02-05T09:00:00Z" },
    { kind = "task_due", at = "2026-02-05T09:10:00Z" },
    { event = "sla_breached", at = "2026-02-06T09:00:00Z" },
    { event = "not_collected_in_time", at = "2026-02-06T09:10:00Z" },
    { event = "repeat_window_over", at = "2026-02-09T09:00:00Z" },
  })
  -- The service level counts from the report, not from the office's work.
  c:expect_sla("due", "2026-02-06T09:00:00Z")
end)

-- ---------------------------------------------------------------------
-- The crew's task
-- ---------------------------------------------------------------------

test("only the crew member who claimed the job can complete it", function()
  host_works()
  local c = open(SERVICE, report)
  c:claim("collect", kim)
  c:expect_claim_refused("collect", "sam", "FLOW_ECONFLICT")
  c:expect_complete_refused("collect", { outcome = "collected" }, "sam",
                            "FLOW_ECONFLICT")
  c:release("collect", kim)
  c:expect_tasks({ { name = "collect", status = "open" } })
  c:complete("collect", { outcome = "collected" }, "sam")
  c:expect_field("collected_by", "sam")
end)

test("the crew's report must say what happened", function()
  host_works()
  local c = open(SERVICE, report)
  local why = c:expect_complete_refused("collect", { note = ("x"):rep(201) }, kim,
                                        "FLOW_EDATA")
  expect(why).to_contain("outcome: is required")
  expect(why).to_contain("note: must have at most 200 characters")
  c:expect_complete_refused("collect", { outcome = "emptied" }, kim, "FLOW_EDATA")
  c:expect_state("with_crew")
end)

test("the crew reports a day late, before escalation: still closed", function()
  host_works()
  local c = open(SERVICE, report)
  advance("1 working day")
  advance("4h")
  c:expect_tasks({ { name = "collect", overdue = true } })
  c:complete("collect", { outcome = "collected" }, kim)
  c:expect_state("closed")
  c:expect_field("collected_at", "2026-02-03T13:00:00Z")
  c:expect_sla("met")
  expect(c:tasks()[1].status).to_be("done")
end)

-- ---------------------------------------------------------------------
-- The supervisor's override, and who may use it
-- ---------------------------------------------------------------------

test("a supervisor closes a case with the crew, with a reason", function()
  host_works()
  local c = open(SERVICE, report)
  c:signal("close", { reason = "emptied by the street cleansing team" }, supervisor)
  c:expect_state("closed")
  c:expect_data({ resolution = "closed_by_supervisor", overridden_by = "priya",
                  supervisor_note = "emptied by the street cleansing team" })
  c:expect_tasks({})
  expect(c:tasks()[1].status).to_be("cancelled")
  expect(templates(c)).to_be({ "bin_reported", "bin_crew_booked", "bin_report_closed" })
end)

test("a supervisor closes a case waiting for the office", function()
  mock.action("address.lookup", { silent = true })
  local c = open(SERVICE, without_contact())
  advance("10m")
  c:signal("close", { reason = "duplicate of a phone report" }, supervisor)
  c:expect_state("closed")
  c:expect_field("resolution", "closed_by_supervisor")
  expect(c:tasks()[1].status).to_be("cancelled")
end)

test("a supervisor closes an escalated case", function()
  host_works()
  local c = open(SERVICE, report)
  advance("2 working days")
  c:signal("close", { reason = "resident took it to the tip" }, supervisor)
  c:expect_state("closed")
  c:expect_history({ "open", "address_found", "not_collected_in_time", "close" })
end)

test("a supervisor takes a case over before the 2 days are up", function()
  host_works()
  local c = open(SERVICE, report)
  advance("1h")
  c:signal("escalate", { reason = "crew off sick" }, supervisor)
  c:expect_state("escalated")
  c:expect_data({ escalation_reason = "supervisor", supervisor_note = "crew off sick",
                  overridden_by = "priya" })
  c:expect_tasks({})
  c:signal("reassign", { crew = "south-1", reason = "covering north-2" }, supervisor)
  c:expect_tasks({ { name = "collect", team = "south-1" } })
  -- The new crew has 2 working days of its own.
  advance("2 working days")
  c:expect_state("escalated")
  c:expect_field("escalation_reason", "not_collected_in_time")
  expect(now()).to_be("2026-02-04T10:00:00Z")
end)

test("only a supervisor may close, escalate or reassign", function()
  host_works()
  local c = open(SERVICE, report)
  local why = c:expect_refused("close", { reason = "x" }, kim, "FLOW_EPERM")
  expect(why).to_contain("needs the role supervisor")
  c:expect_refused("close", { reason = "x" }, { actor = "sam" }, "FLOW_EPERM")
  c:expect_refused("escalate", { reason = "x" }, kim, "FLOW_EPERM")
  c:expect_refused("escalate", { reason = "x" }, office, "FLOW_EPERM")
  c:expect_state("with_crew")
  advance("2 working days")
  c:expect_refused("reassign", { crew = "n", reason = "x" }, kim, "FLOW_EPERM")
  c:expect_refused("close", { reason = "x" }, office, "FLOW_EPERM")
  c:expect_state("escalated")
end)

test("only a supervisor may close a case waiting for the office", function()
  mock.action("address.lookup", { silent = true })
  local c = open(SERVICE, without_contact())
  advance("10m")
  c:expect_refused("close", { reason = "x" }, office, "FLOW_EPERM")
  c:expect_state("needs_address")
end)

test("a supervisor must say why, and which crew", function()
  host_works()
  local c = open(SERVICE, report)
  local why = c:expect_refused("close", {}, supervisor, "FLOW_EREFUSED")
  expect(why).to_contain("say why")
  c:expect_refused("close", { reason = "" }, supervisor, "FLOW_EREFUSED")
  c:expect_refused("escalate", {}, supervisor, "FLOW_EREFUSED")
  c:expect_refused("close", { reason = ("x"):rep(201) }, supervisor, "FLOW_EDATA")
  advance("2 working days")
  why = c:expect_refused("reassign", { reason = "x" }, supervisor, "FLOW_EREFUSED")
  expect(why).to_contain("say which crew")
  c:expect_refused("reassign", { crew = "north-3" }, supervisor, "FLOW_EREFUSED")
  c:expect_refused("reassign", { crew = ("n"):rep(41), reason = "x" }, supervisor,
                   "FLOW_EDATA")
  c:expect_state("escalated")
  c:expect_field("overridden_by", nil)
end)

test("events only the engine sends cannot be sent by hand", function()
  mock.action("address.lookup", { silent = true })
  local c = open(SERVICE, without_contact())
  local why = c:expect_refused("address_found", property, supervisor, "FLOW_EPERM")
  expect(why).to_contain("internal")
  c:expect_refused("lookup_failed", {}, supervisor, "FLOW_EPERM")
  c:expect_refused("repeat_report", {}, supervisor, "FLOW_EPERM")
  c:expect_refused("repeat_window_over", {}, "FLOW_EPERM")
  advance("10m")
  c:expect_refused("address_checked", { outcome = { outcome = "not_a_property" } },
                   office, "FLOW_EPERM")
  c:complete("find_address", { outcome = "found", address = "1 Road", crew = "n" },
             office)
  c:expect_refused("crew_reported", { outcome = { outcome = "collected" } }, kim,
                   "FLOW_EPERM")
  c:expect_refused("not_collected_in_time", {}, supervisor, "FLOW_EPERM")
  c:expect_state("with_crew")
end)

test("events a state does not take, and a closed case, are refused", function()
  host_works()
  local c = open(SERVICE, report)
  c:expect_refused("reassign", { crew = "n", reason = "x" }, supervisor, "FLOW_EEVENT")
  advance("2 working days")
  c:expect_refused("escalate", { reason = "x" }, supervisor, "FLOW_EEVENT")
  c:signal("close", { reason = "sorted" }, supervisor)
  local why = c:expect_refused("reassign", { crew = "n", reason = "x" }, supervisor,
                               "FLOW_ECLOSED")
  expect(why).to_contain("accepts no more events")
end)

-- ---------------------------------------------------------------------
-- What a report must hold
-- ---------------------------------------------------------------------

test("a report needs a UPRN of up to 12 digits and a known bin", function()
  local msg = expect_open_refused(SERVICE, {}, nil, "FLOW_EDATA")
  expect(msg).to_contain("uprn: is required")
  expect(msg).to_contain("bin: is required")
  msg = expect_open_refused(SERVICE, { uprn = "12 High St", bin = "refuse" },
                            nil, "FLOW_EDATA")
  expect(msg).to_contain("uprn: does not match the pattern")
  msg = expect_open_refused(SERVICE, { uprn = "1000233369561", bin = "refuse" },
                            nil, "FLOW_EDATA")
  expect(msg).to_contain("uprn: must have at most 12 characters")
  expect_open_refused(SERVICE, { uprn = 100023336956, bin = "refuse" }, nil,
                      "FLOW_EDATA")
  msg = expect_open_refused(SERVICE, { uprn = "100023336956", bin = "glass" },
                            nil, "FLOW_EDATA")
  expect(msg).to_contain("bin: must be one of refuse, recycling, garden, food")
end)

test("a phone number and an email must look like one", function()
  local base = function(extra)
    local d = { uprn = "100023336956", bin = "refuse" }
    for k, v in pairs(extra) do d[k] = v end
    return d
  end
  local msg = expect_open_refused(SERVICE, base({ phone = "call me" }), nil, "FLOW_EDATA")
  expect(msg).to_contain("phone: does not match the pattern")
  msg = expect_open_refused(SERVICE, base({ phone = "0770" }), nil, "FLOW_EDATA")
  expect(msg).to_contain("phone: must have at least 10 characters")
  msg = expect_open_refused(SERVICE, base({ phone = ("0"):rep(21) }), nil, "FLOW_EDATA")
  expect(msg).to_contain("phone: must have at most 20 characters")
  msg = expect_open_refused(SERVICE, base({ email = "sam at example.org" }), nil,
                            "FLOW_EDATA")
  expect(msg).to_contain("email: does not match the pattern")
  expect_open_refused(SERVICE, base({ email = "sam@example" }), nil, "FLOW_EDATA")
end)

test("who reported it, the notes, and nothing else", function()
  local msg = expect_open_refused(SERVICE, { uprn = "1", bin = "food",
                                             reported_by = "neighbour" },
                                  nil, "FLOW_EDATA")
  expect(msg).to_contain("reported_by: must be one of resident, contact_centre")
  msg = expect_open_refused(SERVICE, { uprn = "1", bin = "food",
                                       notes = ("x"):rep(501) }, nil, "FLOW_EDATA")
  expect(msg).to_contain("notes: must have at most 500 characters")
  msg = expect_open_refused(SERVICE, { uprn = "1", bin = "food", colour = "green" },
                            nil, "FLOW_EDATA")
  expect(msg).to_contain("colour: is not a field")
  -- Every bin the council collects is accepted.
  for _, bin in ipairs({ "refuse", "recycling", "garden", "food" }) do
    open(SERVICE, { uprn = "1", bin = bin }):expect_state("looking_up")
  end
end)

-- ---------------------------------------------------------------------
-- A second report of the same bin
-- ---------------------------------------------------------------------

test("a second report of the same bin within a week joins the open case", function()
  host_works()
  local c = open(SERVICE, report)
  advance("1d")
  -- The host opens a case for the second report; the engine refuses,
  -- naming the open case, because the bin already has one ...
  local why = expect_open_refused(SERVICE,
    { uprn = "100023336956", bin = "refuse", phone = "07700 900456" }, nil,
    "FLOW_ECONFLICT")
  expect(why).to_contain("case 1 already waits for message 'repeat_report'")
  -- ... so the host sends the report to it instead.
  local m = send("repeat_report", "100023336956/refuse",
                 { phone = "07700 900456", reported_by = "resident",
                   notes = "still not emptied" })
  expect(m.status).to_be("delivered")
  expect(m.case).to_be(c.id)
  c:expect_state("with_crew")
  c:expect_data({
    repeat_reports = 1, last_repeat_at = "2026-02-03T09:00:00Z",
    repeats = { { at = "2026-02-03T09:00:00Z", reported_by = "resident",
                  notes = "still not emptied" } },
  })
  -- The second reporter is told we already have it; the first is not
  -- texted again.
  local last = c:actions()[#c:actions()]
  expect(last.action).to_be("notify.sms")
  expect(last.args).to_be({ to = "07700 900456", template = "bin_already_reported",
                            personalisation = { reference = c.id, bin = "refuse" } })
  expect(templates(c)).to_be({ "bin_reported", "bin_crew_booked",
                               "bin_already_reported" })
  -- Still one crew task, for the one case.
  c:expect_tasks({ { name = "collect" } })
  c:expect_history({ "open", "address_found", "repeat_report" })
end)

test("repeat reports are counted, and a repeat without contact details is not answered",
     function()
  host_works()
  local c = open(SERVICE, without_contact())
  send("repeat_report", "100023336956/refuse", {})
  send("repeat_report", "100023336956/refuse", { email = "jo@example.org" })
  -- A phone number that is not one is ignored rather than texted.
  send("repeat_report", "100023336956/refuse", { phone = "ring the bell" })
  c:expect_field("repeat_reports", 3)
  expect(#c:data().repeats).to_be(3)
  c:expect_actions({
    { action = "address.lookup" },
    { action = "notify.email", args = { email_address = "jo@example.org",
                                        template = "bin_already_reported" } },
  })
end)

test("a repeat report while the address is being looked up, or found by hand", function()
  mock.action("address.lookup", { silent = true })
  local c = open(SERVICE, without_contact())
  send("repeat_report", "100023336956/refuse", { notes = "again" })
  c:expect_state("looking_up")
  c:expect_field("repeat_reports", 1)
  advance("10m")
  c:expect_state("needs_address")
  expect(send("repeat_report", "100023336956/refuse", {}).status).to_be("delivered")
  c:expect_field("repeat_reports", 2)
  c:expect_state("needs_address")
end)

test("a repeat report of an escalated case joins it", function()
  host_works()
  local c = open(SERVICE, without_contact())
  advance("2 working days")
  c:expect_state("escalated")
  local m = send("repeat_report", "100023336956/refuse", { reported_by = "councillor" })
  expect(m.case).to_be(c.id)
  c:expect_state("escalated")
  c:expect_data({ repeat_reports = 1, repeats = { { reported_by = "councillor" } } })
end)

test("another bin at the same address is a case of its own", function()
  host_works()
  local c = open(SERVICE, report)
  local d = open(SERVICE, { uprn = "100023336956", bin = "recycling" })
  expect(d.id).to_be_truthy()
  expect(d.id == c.id).to_be(false)
  d:expect_field("repeat_key", "100023336956/recycling")
  d:expect_state("with_crew")
end)

test("a report more than a week after the first opens a new case", function()
  host_works()
  local c = open(SERVICE, report)
  c:complete("collect", { outcome = "cannot_access" }, kim)
  advance("7d")
  c:expect_state("escalated")                      -- still open ...
  c:expect_field("repeat_key", nil)                -- ... but no longer takes repeats
  c:expect_history({ "open", "address_found", "crew_reported", "sla_warning",
                     "sla_breached", "repeat_window_over" })
  local d = open(SERVICE, report)
  d:expect_state("with_crew")
  d:expect_field("repeat_key", "100023336956/refuse")
  -- A repeat report now goes to the new case.
  expect(send("repeat_report", "100023336956/refuse", {}).case).to_be(d.id)
  c:expect_field("repeat_reports", nil)
end)

test("a lookup the host never takes: the case waits, and the week still ends",
     function()
  -- No mock: as if the host had not registered address.lookup.  The
  -- request waits (a call's timeout counts only once it is sent).
  local c = open(SERVICE, without_contact())
  advance("7d")
  c:expect_state("looking_up")
  c:expect_actions({ { action = "address.lookup", status = "waiting", attempts = 0 } })
  c:expect_field("repeat_key", nil)
  c:expect_history({ "open", "sla_warning", "sla_breached", "repeat_window_over" })
  open(SERVICE, without_contact()):expect_state("looking_up")
end)

test("the week is counted in days, weekends included", function()
  mock.action("address.lookup", { silent = true })
  local c = open(SERVICE, without_contact())
  advance_to("2026-02-09T08:59:00Z")
  c:expect_field("repeat_key", "100023336956/refuse")
  advance("1m")
  c:expect_field("repeat_key", nil)
  c:expect_state("needs_address")
end)

test("the week can end while the case is with the crew", function()
  mock.action("address.lookup", { silent = true })
  local c = open(SERVICE, without_contact())
  advance("10m")
  advance_to("2026-02-06T12:00:00Z")
  c:complete("find_address", { outcome = "found", address = "12 High Street",
                               crew = "north-2" }, office)
  advance_to("2026-02-09T09:00:00Z")
  c:expect_state("with_crew")
  c:expect_field("repeat_key", nil)
  open(SERVICE, without_contact()):expect_state("looking_up")
end)

test("a report after the first case closed opens a new case", function()
  host_works()
  local c = open(SERVICE, report)
  c:complete("collect", { outcome = "collected" }, kim)
  advance("1h")
  local d = open(SERVICE, report)
  d:expect_state("with_crew")
  expect(d.id == c.id).to_be(false)
end)

test("a report of a rejected UPRN can be made again", function()
  mock.action("address.lookup", { fail = "no such UPRN" })
  local c = open(SERVICE, without_contact())
  c:expect_state("rejected")
  open(SERVICE, without_contact()):expect_state("rejected")
end)

test("a repeat report sent when no case is open waits, and joins the next case",
     function()
  -- The host should not do this (it sends repeat_report only when its
  -- open was refused), but if a case closed in between, the message
  -- waits, and the next case opened for that bin takes it.
  host_works()
  local m = send("repeat_report", "100023336956/refuse", { notes = "early" },
                 { ttl = "1h" })
  expect(m.status).to_be("buffered")
  local c = open(SERVICE, without_contact())
  c:expect_field("repeat_reports", 1)
  expect(messages("delivered")[1].case).to_be(c.id)
end)

test("a repeat report nobody takes expires", function()
  send("repeat_report", "100023336956/garden", {}, { ttl = "1h" })
  advance("59m")
  expect(#messages("buffered")).to_be(1)
  advance("1m")
  expect(messages("expired")[1].key).to_be("100023336956/garden")
  mock.action("address.lookup", { silent = true })
  local c = open(SERVICE, { uprn = "100023336956", bin = "garden" })
  c:expect_field("repeat_reports", nil)
end)

test("at most 50 repeat reports are kept, all are counted", function()
  mock.action("address.lookup", { result = property })
  local c = open(SERVICE, without_contact())
  for i = 1, 52 do
    send("repeat_report", "100023336956/refuse", { notes = "report " .. i })
  end
  c:expect_field("repeat_reports", 52)
  expect(#c:data().repeats).to_be(50)
  expect(c:data().repeats[50].notes).to_be("report 50")
end)
