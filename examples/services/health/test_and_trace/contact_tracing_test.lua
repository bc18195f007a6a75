-- Tests for contact_tracing.lua: the lab's result message (early, twice,
-- never), the three calls in 24 hours from both sides, the doorstep
-- visit, the interview, contacts as linked trace_contact cases, welfare
-- referrals, the isolation timers and daily texts, the early closures,
-- the service level, roles and data checks.  Run them with:
--
--   flow test --coverage examples/services/health/test_and_trace/
--
-- Every test starts with a fresh, empty engine whose clock reads Monday
-- 2 February 2026, 09:00 (London, and UTC: it is winter), unless the test
-- says otherwise.

load("contact_tracing.lua")
load("trace_contact.lua")

local BARCODE = "ABC12345678"

local registration = {
  barcode = BARCODE,
  name = "Alex Smith",
  phone = "07700 900123",
  address = "12 High Street, Exeter",
  postcode = "EX1 1AA",
  date_of_birth = "1980-05-17",
}

-- The same registration without some of its fields.
local function registration_without(...)
  local data = {}
  for k, v in pairs(registration) do data[k] = v end
  for _, k in ipairs({ ... }) do data[k] = nil end
  return data
end

local POSITIVE = { result = "positive", test_date = "2026-02-01" }

local tracer = { actor = "asha", roles = { "tracer" } }
local supervisor = { actor = "priya", roles = { "supervisor" } }

-- The host, mocked: texts are sent.  (The contacts' cases are opened by
-- the script, with flow.open, and told by it, with flow.signal.)
local function host()
  mock.action("notify.sms", { result = { id = "sms-1" } })
end

-- A registered test whose positive result has come: the case is calling.
local function positive_case(data)
  local c = open("contact_tracing", data or registration)
  send("test_result", BARCODE, POSITIVE)
  return c
end

-- The first call reaches the person: the case is in the interview.
local function reached_case()
  local c = positive_case()
  c:complete("call", { outcome = "reached" }, "asha")
  return c
end

-- Reached and interviewed, no symptoms: the case is isolating.
local function isolating_case()
  local c = reached_case()
  c:signal("record_symptoms", { symptomatic = false }, tracer)
  c:signal("finish_interview", {}, tracer)
  return c
end

-- The templates of the texts a case asked for, oldest first.
local function texts(c, template)
  local found = {}
  for _, a in ipairs(c:actions()) do
    if a.action == "notify.sms"
       and (template == nil or a.args.template == template) then
      found[#found + 1] = template and a or a.args.template
    end
  end
  return found
end

local ALEX = { name = "Sam Jones", phone = "07700 900456",
               last_contact = "2026-02-01", household = true }

-- The lab's result ---------------------------------------------------------

test("a registered test waits for the lab's result", function()
  host()
  local c = open("contact_tracing", registration, { actor = "booking" })
  c:expect_state("awaiting_result")
  c:expect_history({ "open" })
  c:expect_sla("none")
  c:expect_timers({
    { event = "result_overdue", kind = "timer", at = "2026-02-07T09:00:00Z" },
  })
  c:expect_tasks({})
  c:expect_actions({})
end)

test("a positive result starts the calls: a text, and a call for the tracers",
     function()
  host()
  local c = open("contact_tracing", registration)
  local m = send("test_result", BARCODE, POSITIVE)
  expect(m.status).to_be("delivered")
  expect(m.case).to_be(c.id)
  c:expect_state("calling")
  c:expect_data({ result = "positive", test_date = "2026-02-01",
                  calls_made = 0 })
  c:expect_actions({
    { action = "notify.sms", status = "done",
      args = { to = "07700 900123", template = "positive_result",
               personalisation = { name = "Alex Smith" } } },
  })
  c:expect_tasks({
    { name = "call", team = "tracers", due = "2026-02-02T13:00:00Z",
      title = "Call about test ABC12345678 (attempt 1 of 3)" },
  })
  -- 24 hours to reach the person, and the service level: interviewed
  -- within 48 hours of the result, with a warning at 36.
  c:expect_sla("due", "2026-02-04T09:00:00Z")
  c:expect_timers({
    { kind = "task_due", at = "2026-02-02T13:00:00Z" },   -- the call
    { target = "visiting", at = "2026-02-03T09:00:00Z" },
    { event = "sla_warning", at = "2026-02-03T21:00:00Z" },
    { event = "sla_breached", at = "2026-02-04T09:00:00Z" },
  })
  c:expect_history({ "open", "test_result" })
end)

-- The national system's result, for a test the council had no
-- registration for, carries the person's details: it opens the case.
local HANDED_ON = {
  result = "positive", test_date = "2026-02-01",
  name = "Alex Smith", phone = "07700 900123",
  address = "12 High Street, Exeter", postcode = "EX1 1AA",
  date_of_birth = "1980-05-17",
  lab = "Exeter Lighthouse",   -- not a field of the service: not kept
}

test("a positive result for a test nobody registered opens the case",
     function()
  host()
  local m = send("test_result", BARCODE, HANDED_ON)
  expect(m.status).to_be("delivered")
  expect(m.opened).to_be(true)
  local c = case_of(m.case)
  c:expect_state("calling")
  c:expect_history({ "open", "test_result" })
  c:expect_data({ barcode = BARCODE, name = "Alex Smith",
                  phone = "07700 900123", postcode = "EX1 1AA",
                  result = "positive", test_date = "2026-02-01" })
  expect(c:data().lab).to_be_nil()
  c:expect_tasks({ { name = "call", team = "tracers" } })
  -- The booking system registering the same barcode afterwards is
  -- refused: the case is open already.
  expect(expect_open_refused("contact_tracing", registration, nil,
                             "FLOW_ECONFLICT")).to_contain(
    "already waits for message 'test_result'")
end)

test("a result for an unregistered test without the person's details is "
     .. "refused, and nothing is kept", function()
  host()
  local why = expect_refused(function()
    send("test_result", "XYZ99999999", POSITIVE)
  end, "FLOW_EDATA")
  expect(why).to_contain("opens a case of contact_tracing")
  expect(why).to_contain("name: is required")
  expect(#messages()).to_be(0)
  -- A registration after that waits for a result of its own.
  local c = open("contact_tracing", registration_without())
  c:expect_state("awaiting_result")
end)

test("no result within 5 days: the person is asked to book another test",
     function()
  host()
  local c = open("contact_tracing", registration)
  advance_to("2026-02-07T08:59:59Z")
  c:expect_state("awaiting_result")
  advance("1s")
  c:expect_state("no_result")
  expect(c:get().status).to_be("closed")
  c:expect_history({ "open", "result_overdue" })
  c:expect_actions({
    { action = "notify.sms",
      args = { template = "no_result",
               personalisation = { barcode = BARCODE } } },
  })
  c:expect_timers({})
end)

test("a negative or a void result closes the case, with its own text",
     function()
  host()
  for i, result in ipairs({ "negative", "void" }) do
    local barcode = "ABC0000000" .. i
    local data = registration_without()
    data.barcode = barcode
    local c = open("contact_tracing", data)
    send("test_result", barcode, { result = result, test_date = "2026-02-01" })
    c:expect_state("not_positive")
    c:expect_field("result", result)
    expect(texts(c)).to_be({ result .. "_result" })
    c:expect_tasks({})
    c:expect_timers({})
  end
end)

test("a result without a test date is an incident; the case waits on",
     function()
  host()
  local c = open("contact_tracing", registration)
  local m = send("test_result", BARCODE, { result = "positive" })
  expect(m.status).to_be("incident")
  c:expect_state("awaiting_result")
  local i = c:incidents()[1]
  expect(i.id).to_be(m.incident)
  expect(i.source).to_be("message")
  expect(i.code).to_be("FLOW_EREFUSED")
  expect(i.error).to_contain("has no test_date")
  -- The lab sends it again, properly.
  send("test_result", BARCODE, POSITIVE)
  c:expect_state("calling")
end)

test("a result the service does not know is an incident", function()
  host()
  local c = open("contact_tracing", registration)
  local m = send("test_result", BARCODE, { result = "inconclusive",
                                           test_date = "2026-02-01" })
  expect(m.status).to_be("incident")
  expect(c:incidents()[1].code).to_be("FLOW_EDATA")
  expect(c:incidents()[1].error).to_contain("result: must be one of")
  m = send("test_result", BARCODE, { result = "positive",
                                     test_date = "1 February" })
  expect(c:incidents()[2].code).to_be("FLOW_EDATA")
  c:expect_state("awaiting_result")
  c:expect_field("result", nil)
end)

test("the same result again is counted and ignored, in every state",
     function()
  host()
  local c = positive_case()
  local function again(state, count)
    local m = send("test_result", BARCODE, POSITIVE)
    expect(m.status).to_be("delivered")
    c:expect_state(state)
    c:expect_field("duplicate_results", count)
  end
  again("calling", 1)
  c:complete("call", { outcome = "wrong_number" }, "asha")
  again("visiting", 2)
  c:complete("visit", { outcome = "reached" }, "vic")
  again("interview", 3)
  c:signal("finish_interview", {}, tracer)
  again("isolating", 4)
  expect(#c:incidents()).to_be(0)
end)

test("a different result for the same barcode is an incident to check",
     function()
  host()
  local c = positive_case()
  local m = send("test_result", BARCODE, { result = "negative",
                                           test_date = "2026-02-01" })
  expect(m.status).to_be("incident")
  c:expect_state("calling")
  c:expect_field("result", "positive")
  expect(c:incidents()[1].error).to_contain(
    "was positive already, and now a 'negative' result came")
end)

test("a result for a closed case opens a new case, or is refused without "
     .. "the person's details", function()
  host()
  local c = open("contact_tracing", registration)
  send("test_result", BARCODE, { result = "negative", test_date = "2026-02-01" })
  c:expect_state("not_positive")
  -- Closing freed the barcode: the lab's bare repeat finds no case and
  -- cannot open one.
  expect_refused(function()
    send("test_result", BARCODE, { result = "negative",
                                   test_date = "2026-02-01" })
  end, "FLOW_EDATA")
  c:expect_history({ "open", "test_result" })
  -- The national system's full result opens a new case.
  local m = send("test_result", BARCODE, HANDED_ON)
  expect(m.opened).to_be(true)
  case_of(m.case):expect_state("calling")
  c:expect_state("not_positive")
end)

-- Calling: three attempts within 24 hours ---------------------------------

test("three unanswered calls within 24 hours: a doorstep visit", function()
  host()
  local c = positive_case()
  advance("1h")
  c:complete("call", { outcome = "no_answer" }, "asha")
  c:expect_state("calling")
  c:expect_tasks({ { name = "call",
                     title = "Call about test ABC12345678 (attempt 2 of 3)" } })
  advance("4h")
  c:complete("call", { outcome = "no_answer" }, "ben")
  c:expect_tasks({ { name = "call",
                     title = "Call about test ABC12345678 (attempt 3 of 3)" } })
  advance("4h")
  c:complete("call", { outcome = "no_answer", note = "voicemail" }, "asha")
  -- The third failure, 9 hours in: no need to wait for the 24 hours.
  c:expect_state("visiting")
  c:expect_data({ calls_made = 3, last_call = "no_answer" })
  c:expect_tasks({
    { name = "visit", team = "visits",
      title = "Doorstep visit: 12 High Street, Exeter, EX1 1AA",
      due = "2026-02-03T18:00:00Z" },
  })
  expect(#c:tasks({ name = "call", status = "done" })).to_be(3)
  for _, t in ipairs(c:timers()) do
    expect(t.target == "visiting").to_be(false)
  end
end)

test("24 hours with fewer than 3 calls: a doorstep visit, the call cancelled",
     function()
  host()
  local c = positive_case()
  advance("2h")
  c:complete("call", { outcome = "no_answer" }, "asha")
  advance_to("2026-02-03T08:59:59Z")
  c:expect_state("calling")
  advance("1s")
  c:expect_state("visiting")
  c:expect_field("calls_made", 1)
  c:expect_history({ "open", "test_result", "call_done", "after" })
  c:expect_tasks({ "visit" })
  expect(c:tasks({ name = "call", status = "cancelled" })[1].title)
    .to_contain("attempt 2 of 3")
end)

test("a call reported after the 24 hours is refused: its task was cancelled",
     function()
  host()
  local c = positive_case()
  c:claim("call", "asha")
  advance("24h")
  c:expect_state("visiting")
  local why = c:expect_complete_refused("call", { outcome = "reached" },
                                        "asha", "FLOW_ECONFLICT")
  expect(why).to_contain("cancelled")
  c:expect_state("visiting")
end)

test("the third call can still reach the person, just inside 24 hours",
     function()
  host()
  local c = positive_case()
  c:complete("call", { outcome = "no_answer" }, "asha")
  advance("6h")
  c:complete("call", { outcome = "no_answer" }, "asha")
  advance_to("2026-02-03T08:59:00Z")
  -- The third attempt was overdue, but it is still the window.
  c:expect_tasks({ { name = "call", overdue = true } })
  c:complete("call", { outcome = "reached" }, "asha")
  c:expect_state("interview")
  c:expect_data({ calls_made = 3, last_call = "reached" })
  c:expect_tasks({})
end)

test("a wrong number goes straight to a doorstep visit", function()
  host()
  local c = positive_case()
  c:complete("call", { outcome = "wrong_number" }, "asha")
  c:expect_state("visiting")
  c:expect_data({ calls_made = 1, last_call = "wrong_number" })
end)

test("no phone number: no texts, straight to a doorstep visit", function()
  host()
  local c = positive_case(registration_without("phone"))
  c:expect_state("visiting")
  c:expect_actions({})
  c:expect_tasks({ "visit" })
  -- The service level runs from the result all the same.
  c:expect_sla("due", "2026-02-04T09:00:00Z")
end)

test("the call form takes only the outcomes it lists", function()
  host()
  local c = positive_case()
  expect(c:expect_complete_refused("call", { outcome = "busy" }, "asha",
                                   "FLOW_EDATA"))
    .to_contain("outcome: must be one of reached, no_answer, wrong_number")
  expect(c:expect_complete_refused("call", { note = "rang" }, "asha",
                                   "FLOW_EDATA"))
    .to_contain("outcome: is required")
  c:expect_complete_refused("call", { outcome = "reached",
                                      note = ("x"):rep(501) }, "asha",
                            "FLOW_EDATA")
  c:expect_state("calling")
  c:expect_field("calls_made", 0)
end)

-- The doorstep visit ------------------------------------------------------

test("the visit reaches the person: the interview", function()
  host()
  local c = positive_case()
  c:complete("call", { outcome = "wrong_number" }, "asha")
  expect(c:expect_complete_refused("visit", { outcome = "moved" }, "vic",
                                   "FLOW_EDATA"))
    .to_contain("outcome: must be one of reached, no_one_home, wrong_address")
  c:complete("visit", { outcome = "reached" }, "vic")
  c:expect_state("interview")
  c:expect_field("visit", "reached")
end)

test("nobody at the door, or the wrong address: closed as unreachable",
     function()
  host()
  for i, outcome in ipairs({ "no_one_home", "wrong_address" }) do
    local data = registration_without("phone")
    data.barcode = "ABC0000000" .. i
    local c = open("contact_tracing", data)
    send("test_result", data.barcode, POSITIVE)
    c:complete("visit", { outcome = outcome }, "vic")
    c:expect_state("unreachable")
    c:expect_field("visit", outcome)
    expect(c:get().status).to_be("closed")
    c:expect_timers({})
  end
end)

test("a visit reported late still counts", function()
  host()
  local c = positive_case(registration_without("phone"))
  advance("30h")
  c:expect_tasks({ { name = "visit", overdue = true } })
  c:complete("visit", { outcome = "reached", note = "was at work" }, "vic")
  c:expect_state("interview")
  expect(c:tasks("visit")[1].finished_by).to_be("vic")
end)

-- The interview and the isolation period ------------------------------------

test("symptoms: isolation counts 10 full days from the onset", function()
  host()
  local c = reached_case()
  c:signal("record_symptoms", { symptomatic = true, onset = "2026-01-31",
                                symptoms = "cough, fever" }, tracer)
  c:expect_data({ symptomatic = true, symptom_onset = "2026-01-31",
                  symptoms = "cough, fever" })
  c:signal("finish_interview", {}, tracer)
  c:expect_state("isolating")
  c:expect_data({ isolation_from = "2026-01-31",
                  isolation_until = "2026-02-10" })
  expect(texts(c, "isolation_advice")[1].args.personalisation)
    .to_be({ last_day = "2026-02-10" })
  -- A check-in each day at 10:00 from tomorrow to the last day, and the
  -- release the morning after.
  local want = {}
  for day = 3, 10 do
    want[#want + 1] = { event = "check_in",
                        at = string.format("2026-02-%02dT10:00:00Z", day) }
  end
  want[#want + 1] = { event = "release", at = "2026-02-11T09:00:00Z" }
  c:expect_timers(want)
  -- The service level was met: its clock stops.
  c:expect_sla("paused")
end)

test("no symptoms: isolation counts from the test date", function()
  host()
  local c = isolating_case()
  c:expect_data({ symptomatic = false, isolation_from = "2026-02-01",
                  isolation_until = "2026-02-11" })
  c:expect_field("symptom_onset", nil)
end)

test("a change of mind about symptoms replaces what was recorded", function()
  host()
  local c = reached_case()
  c:signal("record_symptoms", { symptomatic = true, onset = "2026-01-30",
                                symptoms = "headache" }, tracer)
  c:signal("record_symptoms", { symptomatic = false }, tracer)
  c:expect_field("symptom_onset", nil)
  c:expect_field("symptoms", nil)
end)

test("a text each day while isolating, then the release", function()
  host()
  local c = isolating_case()
  advance_to("2026-02-11T10:00:00Z")
  c:expect_state("isolating")
  local check_ins = texts(c, "isolation_check_in")
  expect(#check_ins).to_be(9)                 -- 3 to 11 February
  expect(check_ins[1].args.personalisation)
    .to_be({ date = "2026-02-03", last_day = "2026-02-11" })
  expect(check_ins[9].args.personalisation.date).to_be("2026-02-11")
  c:expect_field("check_ins_sent", 9)
  advance_to("2026-02-12T08:59:59Z")
  c:expect_state("isolating")
  advance("1s")
  c:expect_state("released")
  expect(texts(c)[#texts(c)]).to_be("isolation_ended")
  c:expect_sla("met")
  c:expect_timers({})
  local h = c:history()
  expect(h[#h].event).to_be("release")
  expect(h[#h].at).to_be("2026-02-12T09:00:00Z")
end)

test("the clocks go forward: the texts stay at 10:00 London time",
     { at = "2026-03-25T09:00:00Z" }, function()
  host()
  local c = open("contact_tracing", registration)
  send("test_result", BARCODE, { result = "positive",
                                 test_date = "2026-03-24" })
  c:complete("call", { outcome = "reached" }, "asha")
  c:signal("finish_interview", {}, tracer)
  c:expect_field("isolation_until", "2026-04-03")
  local at = {}
  for _, t in ipairs(c:timers()) do
    if t.event == "check_in" or t.event == "release" then
      at[#at + 1] = t.due_at
    end
  end
  -- Summer time starts on Sunday 29 March: 10:00 London is 09:00 UTC.
  expect(at[1]).to_be("2026-03-26T10:00:00Z")
  expect(at[3]).to_be("2026-03-28T10:00:00Z")
  expect(at[4]).to_be("2026-03-29T09:00:00Z")
  expect(at[9]).to_be("2026-04-03T09:00:00Z")
  expect(at[10]).to_be("2026-04-04T08:00:00Z")   -- the release, 09:00 BST
end)

test("traced after the isolation period: released at once", function()
  host()
  local c = open("contact_tracing", registration)
  send("test_result", BARCODE, { result = "positive",
                                 test_date = "2026-01-20" })
  c:complete("call", { outcome = "reached" }, "asha")
  c:signal("finish_interview", {}, tracer)
  c:expect_state("released")
  c:expect_field("isolation_until", "2026-01-30")
  expect(texts(c)).to_be({ "positive_result", "isolation_already_over" })
  c:expect_sla("met")
end)

test("an interview nobody finishes is finished after 12 hours", function()
  host()
  local c = reached_case()
  c:signal("record_symptoms", { symptomatic = true, onset = "2026-02-01" },
           tracer)
  advance("12h")
  c:expect_state("isolating")
  c:expect_field("isolation_until", "2026-02-11")
  c:expect_history({ "open", "test_result", "call_done", "record_symptoms",
                     "interview_overdue" })
end)

test("late on a summer evening it is already tomorrow in London",
     { at = "2026-06-10T23:30:00Z" }, function()
  host()
  local c = open("contact_tracing", registration)
  send("test_result", BARCODE, { result = "positive",
                                 test_date = "2026-06-10" })
  c:complete("call", { outcome = "reached" }, "asha")
  -- 00:30 on 11 June in London: symptoms that started "today" are fine.
  c:signal("record_symptoms", { symptomatic = true, onset = "2026-06-11" },
           tracer)
  c:signal("finish_interview", {}, tracer)
  c:expect_field("isolation_until", "2026-06-21")
  -- The first check-in is on 12 June at 10:00 London (09:00 UTC).
  local first
  for _, t in ipairs(c:timers()) do
    if t.event == "check_in" then first = t break end
  end
  expect(first.due_at).to_be("2026-06-12T09:00:00Z")
  expect(first.payload).to_be({ date = "2026-06-12" })
end)

test("symptoms must be said clearly", function()
  host()
  local c = reached_case()
  c:expect_refused("record_symptoms", {}, tracer, "FLOW_EREFUSED")
  c:expect_refused("record_symptoms", { symptomatic = "yes" }, tracer,
                   "FLOW_EREFUSED")
  c:expect_refused("record_symptoms", { symptomatic = true }, tracer,
                   "FLOW_EREFUSED")
  c:expect_refused("record_symptoms", { symptomatic = true,
                                        onset = "2026-02-03" }, tracer,
                   "FLOW_EREFUSED")
  c:expect_refused("record_symptoms", { symptomatic = true,
                                        onset = "last Tuesday" }, tracer,
                   "FLOW_EDATA")
  c:expect_refused("record_symptoms", { symptomatic = true,
                                        onset = "2026-02-01",
                                        symptoms = ("x"):rep(501) }, tracer,
                   "FLOW_EDATA")
  c:expect_field("symptomatic", nil)
end)

-- Contacts: each a linked trace_contact case ------------------------------

test("each contact becomes a trace_contact case, linked both ways", function()
  host()
  local c = reached_case()
  c:signal("add_contact", ALEX, tracer)
  -- Opened in the same step: no action, no waiting.
  c:expect_actions({ { action = "notify.sms" } })
  local contact = case_of(c:data().contacts[1].case_id)
  expect(contact.id).to_be("2")
  contact:expect_state("isolating")
  contact:expect_data({ index_case = c.id, contact_no = 1,
                        name = "Sam Jones", household = true })
  contact:expect_history({ "open" })
  expect(c:data().contacts).to_be({
    { no = 1, name = "Sam Jones", phone = "07700 900456",
      last_contact = "2026-02-01", household = true, case_id = "2" },
  })
end)

test("a contact remembered while isolating is linked too", function()
  host()
  local c = isolating_case()
  c:signal("add_contact", { name = "Jo Bloggs", last_contact = "2026-02-01" },
           tracer)
  c:signal("add_contact", { name = "Kit Lee", last_contact = "2026-01-31" },
           tracer)
  expect(c:data().contacts[1].case_id).to_be("2")
  expect(c:data().contacts[2].case_id).to_be("3")
  case_of("3"):expect_data({ index_case = "1", contact_no = 2,
                             name = "Kit Lee" })
end)

test("a contact with details that make no sense is refused, by number, "
     .. "and no case is opened for them", function()
  host()
  local c = reached_case()
  c:signal("add_contact", ALEX, tracer)
  local function refused(contact, words)
    local why = c:expect_refused("add_contact", contact, tracer, "FLOW_EDATA")
    expect(why).to_contain("contacts: contact 2: " .. words)
  end
  refused({ last_contact = "2026-02-01" }, "give the contact's name")
  refused({ name = ("x"):rep(101), last_contact = "2026-02-01" },
          "give the contact's name")
  refused({ name = "Jo", phone = "ring me", last_contact = "2026-02-01" },
          "the phone number must be digits and spaces")
  refused({ name = "Jo" }, "give the day of last contact")
  refused({ name = "Jo", last_contact = "Sunday" },
          "give the day of last contact")
  refused({ name = "Jo", last_contact = "2026-02-03" },
          "the last contact cannot be after today")
  refused({ name = "Jo", last_contact = "2026-02-01", household = "yes" },
          "household must be true or false")
  expect(#c:data().contacts).to_be(1)
  expect(#c:actions()).to_be(1)     -- the positive text
  expect_refused(function() case_of("3") end, "FLOW_ENOTFOUND")
  -- The next good contact gets the next id.
  c:signal("add_contact", { name = "Jo", last_contact = "2026-02-01" },
           tracer)
  expect(c:data().contacts[2].case_id).to_be("3")
end)

test("a refused step opens no contact: the case and its contacts are "
     .. "written together", function()
  host()
  local c = reached_case()
  -- The tracer is not allowed to: nothing at all is written.
  c:expect_refused("add_contact", ALEX, { actor = "vic", roles = { "visits" } },
                   "FLOW_EPERM")
  expect_refused(function() case_of("2") end, "FLOW_ENOTFOUND")
  expect(c:data().contacts).to_be_nil()
end)

-- Welfare ------------------------------------------------------------------

test("a welfare referral is a task for the welfare team", function()
  host()
  local c = reached_case()
  c:signal("refer_welfare", { needs = { "food", "medicine" } }, tracer)
  c:expect_field("welfare_needs", { "food", "medicine" })
  c:expect_tasks({
    { name = "welfare", team = "welfare",
      title = "Welfare support (food, medicine) for test ABC12345678",
      due = "2026-02-03T09:00:00Z" },
  })
  c:complete("welfare", { outcome = "support_arranged",
                          note = "food parcel Tuesday" }, "wes")
  c:expect_field("welfare_outcome", "support_arranged")
  c:expect_state("interview")
end)

test("a welfare task outlives the interview, and may be done late",
     function()
  host()
  local c = isolating_case()
  c:signal("refer_welfare", { needs = { "money" } }, tracer)
  advance("2 working days")
  c:expect_tasks({ { name = "welfare", overdue = true } })
  c:complete("welfare", { outcome = "could_not_contact" }, "wes")
  c:expect_field("welfare_outcome", "could_not_contact")
  c:expect_state("isolating")
end)

test("a referral made during the interview is kept into isolation",
     function()
  host()
  local c = reached_case()
  c:signal("refer_welfare", { needs = { "wellbeing" } }, tracer)
  c:signal("finish_interview", {}, tracer)
  c:expect_tasks({ { name = "welfare", status = "open" } })
  c:complete("welfare", { outcome = "declined" }, "wes")
  c:expect_field("welfare_outcome", "declined")
end)

test("a referral must say what support is needed", function()
  host()
  local c = reached_case()
  c:expect_refused("refer_welfare", {}, tracer, "FLOW_EREFUSED")
  c:expect_refused("refer_welfare", { needs = {} }, tracer, "FLOW_EREFUSED")
  local why = c:expect_refused("refer_welfare", { needs = { "food", "car" } },
                               tracer, "FLOW_EREFUSED")
  expect(why).to_contain("'car' is not a kind of support")
  c:expect_tasks({})
  c:signal("refer_welfare", { needs = { "other" } }, tracer)
  c:expect_complete_refused("welfare", { outcome = "maybe" }, "wes",
                            "FLOW_EDATA")
end)

-- Texts that fail -------------------------------------------------------------

test("a check-in text that cannot be sent: a tracer phones instead",
     function()
  host()
  mock.action("notify.sms", function(args)
    if args.template == "isolation_check_in" then
      return { fail = "phone switched off" }
    end
    return { result = { id = "sms-2" } }
  end)
  local c = isolating_case()
  advance_to("2026-02-03T10:00:00Z")
  c:expect_tasks({ { name = "check_in_call", team = "tracers",
                     due = "2026-02-03T14:00:00Z" } })
  c:complete("check_in_call", { outcome = "well" }, "asha")
  c:expect_state("isolating")
  c:expect_history({ "open", "test_result", "call_done", "record_symptoms",
                     "finish_interview", "check_in", "check_in_failed",
                     "task_done" })
end)

test("a busy gateway is tried again until the text goes", function()
  host()
  mock.action("notify.sms", function(args, req)
    if req.attempt < 3 then return { fail = "busy", retry = true } end
    return { result = { id = "sms-3" } }
  end)
  local c = positive_case()
  advance("30m")
  c:expect_actions({ { action = "notify.sms", status = "done",
                       attempts = 3 } })
end)

test("a text that never goes is an incident; the trace carries on",
     function()
  host()
  mock.action("notify.sms", { silent = true })
  local c = positive_case()
  -- Four attempts, 10 minutes each, with back-offs between them.
  advance("2h")
  c:expect_actions({ { action = "notify.sms", status = "incident",
                       attempts = 4 } })
  expect(c:incidents()[1].source).to_be("action")
  c:expect_state("calling")
  c:expect_tasks({ "call" })
end)

-- Closing early: raised in error ---------------------------------------------

test("a supervisor closes a case raised in error, from any open state",
     function()
  host()
  local function close(c, state)
    c:expect_state(state)
    c:signal("raise_in_error", { reason = "barcode mix-up at the lab" },
             supervisor)
    c:expect_state("withdrawn")
    c:expect_field("withdrawn_reason", "barcode mix-up at the lab")
    c:expect_tasks({})
    c:expect_timers({})
  end
  close(open("contact_tracing", registration), "awaiting_result")
  close(positive_case(), "calling")
  local c = positive_case()
  c:complete("call", { outcome = "wrong_number" }, "asha")
  close(c, "visiting")
  close(reached_case(), "interview")
  close(isolating_case(), "isolating")
end)

test("the contacts of a case raised in error are told to stop isolating",
     function()
  host()
  local c = isolating_case()
  c:signal("add_contact", ALEX, tracer)
  c:signal("raise_in_error", { reason = "false positive" }, supervisor)
  c:expect_actions({ { action = "notify.sms" }, { action = "notify.sms" } })
  local contact = case_of("2")
  contact:expect_state("withdrawn")
  contact:expect_field("withdrawn_reason", "false positive")
  contact:expect_history({ "open", "index_withdrawn" })
end)

test("a contact whose own case closed first does not hold up the "
     .. "supervisor", function()
  host()
  local c = isolating_case()
  c:signal("add_contact", ALEX, tracer)
  local contact = case_of("2")
  contact:signal("raise_in_error", { reason = "duplicate" }, supervisor)
  contact:expect_state("withdrawn")
  c:signal("raise_in_error", { reason = "false positive" }, supervisor)
  c:expect_state("withdrawn")
  contact:expect_history({ "open", "raise_in_error" })
  expect(#contact:incidents()).to_be(0)
end)

test("only a supervisor, with a reason, can close a case as raised in error",
     function()
  host()
  local c = positive_case()
  c:expect_refused("raise_in_error", { reason = "x" }, tracer, "FLOW_EPERM")
  c:expect_refused("raise_in_error", { reason = "x" }, "asha", "FLOW_EPERM")
  c:expect_refused("raise_in_error", {}, supervisor, "FLOW_EREFUSED")
  c:expect_refused("raise_in_error", { reason = "" }, supervisor,
                   "FLOW_EREFUSED")
  c:expect_refused("raise_in_error", { reason = ("x"):rep(501) }, supervisor,
                   "FLOW_EDATA")
  c:expect_state("calling")
end)

-- The service level -------------------------------------------------------------

test("not interviewed within 36 hours: warned; within 48: breached",
     function()
  host()
  local c = positive_case()
  advance("24h")
  c:expect_state("visiting")
  advance("12h")
  c:expect_sla("warned")
  advance("12h")
  c:expect_sla("breached")
  c:expect_history({ "open", "test_result", "after", "sla_warning",
                     "sla_breached" })
  -- The visit still happens; the level stays breached.
  c:complete("visit", { outcome = "reached" }, "vic")
  c:signal("finish_interview", {}, tracer)
  c:expect_sla("breached")
end)

test("interviewed in time: no warning comes while the person isolates",
     function()
  host()
  local c = isolating_case()
  advance("3d")
  c:expect_sla("paused")
  for _, h in ipairs(c:history()) do
    expect(h.event == "sla_warning" or h.event == "sla_breached")
      .to_be(false)
  end
end)

-- Who may do what, and what is refused -----------------------------------

test("only tracers do the interview", function()
  host()
  local c = reached_case()
  for _, event in ipairs({ "record_symptoms", "add_contact", "refer_welfare",
                           "finish_interview" }) do
    c:expect_refused(event, {}, supervisor, "FLOW_EPERM")
    c:expect_refused(event, {}, "asha", "FLOW_EPERM")
  end
  c:expect_state("interview")
end)

test("what only the engine sends cannot be sent by hand", function()
  host()
  local c = open("contact_tracing", registration)
  expect(c:expect_refused("test_result", POSITIVE, supervisor, "FLOW_EPERM"))
    .to_contain("is internal")
  c:expect_refused("result_overdue", {}, supervisor, "FLOW_EPERM")
  c:signal("raise_in_error", { reason = "test" }, supervisor)
  c = isolating_case()
  for _, event in ipairs({ "check_in", "release", "check_in_failed",
                           "welfare_done", "test_result" }) do
    c:expect_refused(event, {}, supervisor, "FLOW_EPERM")
  end
  c:expect_state("isolating")
end)

test("events a state does not take are refused", function()
  host()
  local c = open("contact_tracing", registration)
  c:expect_refused("finish_interview", {}, tracer, "FLOW_EEVENT")
  c:expect_refused("add_contact", ALEX, tracer, "FLOW_EEVENT")
  send("test_result", BARCODE, POSITIVE)
  c:expect_refused("record_symptoms", { symptomatic = false }, tracer,
                   "FLOW_EEVENT")
  c:signal("raise_in_error", { reason = "test" }, supervisor)
  c:expect_refused("add_contact", ALEX, tracer, "FLOW_ECLOSED")
end)

test("registrations that make no sense are refused, field by field",
     function()
  local function refused(data, words)
    expect(expect_open_refused("contact_tracing", data, nil, "FLOW_EDATA"))
      .to_contain(words)
  end
  refused(registration_without("barcode"), "barcode: is required")
  local data = registration_without()
  data.barcode = "abc123"
  refused(data, "barcode: does not match")
  data.barcode = "ABC" .. ("1"):rep(18)
  refused(data, "barcode: must have at most 20 characters")
  refused(registration_without("name"), "name: is required")
  data = registration_without()
  data.name = ("x"):rep(101)
  refused(data, "name: must have at most 100 characters")
  data = registration_without()
  data.phone = "call me"
  refused(data, "phone: does not match")
  refused(registration_without("address"), "address: is required")
  refused(registration_without("postcode"), "postcode: is required")
  data = registration_without()
  data.postcode = "Exeter"
  refused(data, "postcode: does not match")
  data = registration_without()
  data.date_of_birth = "17/05/1980"
  refused(data, "date_of_birth:")
  data = registration_without()
  data.nhs_number = "9434765919"
  refused(data, "nhs_number: is not a field")
end)

test("one open case per barcode", function()
  host()
  local c = open("contact_tracing", registration)
  local why = expect_open_refused("contact_tracing", registration, nil,
                                  "FLOW_ECONFLICT")
  expect(why).to_contain("case " .. c.id .. " already waits for message "
                         .. "'test_result' with barcode 'ABC12345678'")
end)
