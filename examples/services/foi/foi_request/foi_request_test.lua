-- Tests for foi_request.lua: the acknowledgement and the department's
-- task, the 20 working days and the clock stopped for a clarification,
-- the exemptions and the response, the internal review and its window,
-- the disclosure log when it works and when it does not, the roles, and
-- every data check.  Run them with:
--
--   flow test --coverage examples/services/foi/foi_request/
--
-- Every test starts with a fresh, empty engine whose clock reads Monday
-- 2 February 2026, 09:00 (London), unless the test says otherwise.  Twenty
-- working days from then is Monday 2 March 09:00; the warning comes
-- 3 working days before, on Wednesday 25 February.

load("foi_request.lua")

local request = {
  requester_name = "Sam Jones",
  requester_email = "sam@example.org",
  reply_by = "email",
  topic = "housing",
  request_text = "How many council homes have been empty for over a year?",
}

-- The same request with some fields changed.
local function with(changes)
  local t = {}
  for k, v in pairs(request) do t[k] = v end
  for k, v in pairs(changes) do t[k] = v end
  return t
end

local officer = { actor = "olu", roles = { "foi_officer" } }
local dee = { actor = "dee", roles = { "housing" } }           -- decides first
local rita = { actor = "rita", roles = { "foi_reviewer" } }     -- reviews

local in_full = { outcome = "granted_in_full",
                  disclosure_text = "There are 41 such homes." }
local in_part = { outcome = "granted_in_part", exemptions = "s40(2), s43(2)",
                  disclosure_text = "There are 41 such homes. [Addresses withheld]" }
local refusal = { outcome = "refused", exemptions = "s43(2)",
                  disclosure_text = "The contract prices are withheld." }

-- The host's answers when everything works.
local function hosts_work()
  mock.action("notify.email", { result = { id = "email-1" } })
  mock.action("notify.letter", { result = { id = "letter-1" } })
  mock.action("foi.publish", { result = { url = "https://council.example/foi/log/1" } })
end

-- A request answered by dee straight away, waiting in "responded".
local function answered(answer)
  hosts_work()
  local c = open("foi_request", request, { actor = "web" })
  c:complete("respond", answer or refusal, dee)
  c:expect_state("responded")
  return c
end

-- ------------------------------------------------------------------
-- A request arrives
-- ------------------------------------------------------------------

test("a request is acknowledged and given to the department that holds it", function()
  hosts_work()
  local c = open("foi_request", request, { actor = "web" })
  c:expect_state("with_department")
  c:expect_data({ reference = "FOI-000001", team = "housing" })
  c:expect_actions({
    { action = "notify.email", status = "done",
      args = { email_address = "sam@example.org",
               template = "foi_acknowledgement",
               personalisation = { name = "Sam Jones",
                                   reference = "FOI-000001" } } },
  })
  c:expect_tasks({
    { name = "respond", team = "housing", status = "open",
      title = "Answer FOI request FOI-000001",
      due = "2026-02-23T09:00:00Z" },
  })
  c:expect_sla("due", "2026-03-02T09:00:00Z")
  c:expect_timers({
    { kind = "task_due", at = "2026-02-23T09:00:00Z" },
    { event = "sla_warning", at = "2026-02-25T09:00:00Z" },
    { event = "sla_breached", at = "2026-03-02T09:00:00Z" },
  })
  c:expect_history({ "open" })
end)

test("the team is chosen from the subject of the request", function()
  local tax = open("foi_request", with({ topic = "council_tax" }))
  tax:expect_field("team", "revenues")
  tax:expect_tasks({ { name = "respond", team = "revenues" } })
  local other = open("foi_request", with({ topic = "other" }))
  other:expect_field("team", "foi_team")
  other:expect_tasks({ { name = "respond", team = "foi_team" } })
  -- A reference the host gives is kept.
  local given = open("foi_request", with({ reference = "FOI-77" }))
  given:expect_field("reference", "FOI-77")
  given:expect_tasks({ { title = "Answer FOI request FOI-77" } })
end)

test("nonsense requests are refused, naming the field", function()
  local function refused(data, words)
    local why = expect_open_refused("foi_request", data, nil, "FLOW_EDATA")
    expect(why).to_contain(words)
  end
  refused(with({ requester_name = false }), "requester_name")
  local none = {}
  for k, v in pairs(request) do if k ~= "requester_name" then none[k] = v end end
  refused(none, "requester_name: is required")
  refused(with({ requester_name = ("x"):rep(201) }), "requester_name: must have at most 200")
  refused(with({ requester_email = "sam at example.org" }), "requester_email: does not match")
  refused(with({ requester_email = ("s"):rep(250) .. "@example.org" }),
          "requester_email: must have at most 254")
  local no_reply = with({})
  no_reply.reply_by = nil
  refused(no_reply, "reply_by: is required")
  refused(with({ reply_by = "fax" }), "reply_by: must be one of email, post")
  refused(with({ topic = "parking" }), "topic: must be one of")
  refused(with({ request_text = "" }), "request_text: must have at least 1")
  refused(with({ request_text = ("x"):rep(10001) }), "request_text: must have at most 10000")
  refused(with({ reference = "REQ-1" }), "reference: does not match")
  refused(with({ reference = "FOI-" .. ("1"):rep(17) }), "reference: must have at most 20")
  refused(with({ phone = "07700 900123" }), "phone: is not a field")
  -- A reply by post needs an address of 2 to 6 lines.
  refused(with({ reply_by = "post" }), "postal_address: give 2 to 6 lines")
  refused(with({ reply_by = "post", postal_address = "12 High Street" }),
          "postal_address: give 2 to 6 lines")
  refused(with({ reply_by = "post", postal_address = "1,2,3,4,5,6,7" }),
          "postal_address: give 2 to 6 lines")
  refused(with({ reply_by = "post", postal_address = "1 High St, " .. ("x"):rep(500) }),
          "postal_address: must have at most 500")
  expect_open_refused("no_such_service", request, nil, "FLOW_ENOTFOUND")
end)

-- ------------------------------------------------------------------
-- The answer
-- ------------------------------------------------------------------

test("an answer in full is sent to the requester and published", function()
  local c = answered(in_full)
  c:expect_data({
    outcome = "granted_in_full", decided_by = "dee",
    responded_at = "2026-02-02T09:00:00Z",
    response_due = "2026-03-02T09:00:00Z",
    published_at = "2026-02-02T09:00:00Z",
    disclosure_log_url = "https://council.example/foi/log/1",
  })
  expect(c:data().exemptions).to_be({})
  c:expect_field("late", nil)
  c:expect_actions({
    { action = "notify.email", args = { template = "foi_acknowledgement" } },
    { action = "notify.email", status = "done",
      args = { email_address = "sam@example.org", template = "foi_response",
               personalisation = { reference = "FOI-000001",
                                   outcome = "granted in full",
                                   exemptions = "" } } },
    -- The disclosure log gets the reference and the redacted text, and
    -- nothing about the requester.
    { action = "foi.publish", status = "done",
      args = { reference = "FOI-000001", outcome = "granted_in_full",
               redacted_text = "There are 41 such homes.", exemptions = {} } },
  })
  expect(c:actions()[3].args.requester_name).to_be_nil()
  c:expect_tasks({})
  -- The 20 working days are behind it, kept; the review window is ahead.
  c:expect_sla("met")
  -- 40 working days on: Monday 30 March, 09:00 London time, which is
  -- 08:00Z as the clocks went forward on the 29th.
  c:expect_timers({
    { event = "review_window_closed", at = "2026-03-30T08:00:00Z" },
  })
  c:expect_history({ "open", "response_ready", "published" })
  expect(c:tasks()[1].finished_by).to_be("dee")
end)

test("a partial answer records the sections of the Act it relies on", function()
  local c = answered(in_part)
  c:expect_field("outcome", "granted_in_part")
  expect(c:data().exemptions).to_be({ "s40(2)", "s43(2)" })
  c:expect_actions({
    { action = "notify.email" },
    { action = "notify.email",
      args = { template = "foi_response",
               personalisation = {
                 outcome = "granted in part",
                 exemptions = "s40(2) personal information; " ..
                              "s43(2) commercial interests" } } },
    { action = "foi.publish", args = { exemptions = { "s40(2)", "s43(2)" } } },
  })
end)

test("information not held, and a refusal on the cost limit", function()
  local c = answered({ outcome = "not_held",
                       disclosure_text = "The council does not hold this." })
  c:expect_field("outcome", "not_held")
  local d = open("foi_request", request)
  d:complete("respond", { outcome = "refused", exemptions = "s12",
                          disclosure_text = "Over the cost limit." }, dee)
  d:expect_data({ outcome = "refused", exemptions = { "s12" } })
  expect(d:actions()[2].args.personalisation.exemptions)
    .to_be("s12 cost of compliance exceeds the appropriate limit")
end)

test("exemptions must be sections of the Act, fitting the outcome", function()
  local c = open("foi_request", request)
  local function refused(answer, words)
    local why = c:expect_complete_refused("respond", answer, dee, "FLOW_EDATA")
    expect(why).to_contain(words)
  end
  local text = "Withheld."
  refused({ outcome = "refused", exemptions = "s99", disclosure_text = text },
          "exemptions: 's99' is not a section of the Act")
  refused({ outcome = "refused", exemptions = "s25", disclosure_text = text },
          "'s25' is not a section")
  refused({ outcome = "refused", exemptions = "section 40", disclosure_text = text },
          "'section 40' is not a section")
  refused({ outcome = "refused", exemptions = "s40 personal", disclosure_text = text },
          "'s40 personal' is not a section")
  refused({ outcome = "refused", exemptions = "s43, s43", disclosure_text = text },
          "exemptions: 's43' is given twice")
  refused({ outcome = "refused", disclosure_text = text },
          "exemptions: an answer of 'refused' must say which sections")
  refused({ outcome = "granted_in_part", exemptions = " , ", disclosure_text = text },
          "an answer of 'granted in part' must say which sections")
  refused({ outcome = "granted_in_full", exemptions = "s40", disclosure_text = text },
          "an answer of 'granted in full' relies on no section of the Act")
  refused({ outcome = "not_held", exemptions = "s40", disclosure_text = text },
          "an answer of 'information not held' relies on no section")
  -- The form itself: an outcome and the text are needed.
  refused({ disclosure_text = text }, "outcome: is required")
  refused({ outcome = "maybe", disclosure_text = text }, "outcome: must be one of")
  refused({ outcome = "granted_in_full" }, "disclosure_text: is required")
  refused({ outcome = "refused", exemptions = ("s40,"):rep(126), disclosure_text = text },
          "exemptions: must have at most 500")
  local many = {}
  for i = 1, 21 do many[i] = "s40(" .. i .. ")" end
  refused({ outcome = "refused", exemptions = table.concat(many, ","),
            disclosure_text = text }, "exemptions: must have at most 20")
  refused({ outcome = "granted_in_full", disclosure_text = ("x"):rep(20001) },
          "disclosure_text: must have at most 20000")
  -- Nothing changed, not even a claim; subsections and s22A are fine.
  c:expect_state("with_department")
  c:expect_tasks({ { name = "respond", status = "open" } })
  c:complete("respond", { outcome = "refused", exemptions = "s22A; s31(1)(a)",
                          disclosure_text = text }, dee)
  expect(c:data().exemptions).to_be({ "s22A", "s31(1)(a)" })
end)

test("a reply by post goes as a letter to the requester's address", function()
  hosts_work()
  local c = open("foi_request", with({
    reply_by = "post", postal_address = "12 High Street, Exeter\nEX1 1AA" }))
  c:complete("respond", in_full, dee)
  c:expect_actions({
    -- The acknowledgement still goes by email.
    { action = "notify.email", args = { template = "foi_acknowledgement" } },
    { action = "notify.letter", status = "done",
      args = { template = "foi_response",
               personalisation = { address_line_1 = "Sam Jones",
                                   address_line_2 = "12 High Street",
                                   address_line_3 = "Exeter",
                                   address_line_4 = "EX1 1AA",
                                   reference = "FOI-000001",
                                   outcome = "granted in full" } } },
    { action = "foi.publish" },
  })
end)

-- ------------------------------------------------------------------
-- The 20 working days
-- ------------------------------------------------------------------

test("the FOI team is warned 3 working days before the deadline", function()
  local c = open("foi_request", request)
  advance_to("2026-02-25T08:59:00Z")
  c:expect_sla("due")
  c:expect_tasks({ "respond" })
  advance("1m")
  c:expect_sla("warned")
  c:expect_history({ "open", "sla_warning" })
  c:expect_tasks({
    "respond",
    { name = "chase", team = "foi_team", due = "2026-03-02T09:00:00Z",
      title = "FOI-000001: the response is due in 3 working days (with housing)" },
  })
  -- Answering cancels the chase.
  c:complete("respond", in_full, dee)
  c:expect_tasks({})
  c:expect_field("late", nil)
end)

test("an answer after 20 working days is late, and so recorded", function()
  hosts_work()
  local c = open("foi_request", request)
  -- The department's task is due after 15 working days, on Monday
  -- 23 February at 09:00, and overdue from that moment on.
  advance_to("2026-02-23T08:59:00Z")
  c:expect_tasks({ { name = "respond", overdue = false } })
  advance("1m")
  c:expect_tasks({ { name = "respond", overdue = true } })
  advance_to("2026-03-02T09:00:00Z")
  c:expect_sla("breached")
  c:expect_field("late", true)
  c:expect_history({ "open", "sla_warning", "sla_breached" })
  advance("2 working days")
  c:complete("respond", in_full, dee)
  c:expect_state("responded")
  c:expect_data({ late = true, response_due = "2026-03-02T09:00:00Z",
                  responded_at = "2026-03-04T09:00:00Z" })
end)

test("over Christmas the bank holidays do not count", { at = "2026-12-14T10:00:00Z" }, function()
  -- Monday 14 December 2026.  25 and 28 December and 1 January are bank
  -- holidays: the 20th working day is Thursday 14 January 2027.
  local c = open("foi_request", request)
  c:expect_sla("due", "2027-01-14T10:00:00Z")
end)

-- ------------------------------------------------------------------
-- Clarification: the clock stops
-- ------------------------------------------------------------------

test("asking for clarification stops the clock; the due time moves by exactly the wait", function()
  hosts_work()
  local c = open("foi_request", request)
  advance_to("2026-02-04T09:00:00Z")                     -- Wednesday
  c:signal("ask_clarification", { question = "Which years do you mean?" }, officer)
  c:expect_state("awaiting_clarification")
  c:expect_sla("paused")
  c:expect_field("clarification_question", "Which years do you mean?")
  c:expect_actions({
    { action = "notify.email" },
    { action = "notify.email", status = "done",
      args = { template = "foi_clarification_request",
               personalisation = { question = "Which years do you mean?",
                                   reference = "FOI-000001" } } },
  })
  -- The department's task waits with the case: it is cancelled.
  c:expect_tasks({})
  expect(c:tasks({ status = "cancelled" })[1].name).to_be("respond")
  -- Five working days later (Wednesday to Wednesday) the reply comes.
  advance_to("2026-02-11T09:00:00Z")
  local m = send("clarification_received", "FOI-000001",
                 { text = "2024 and 2025, please." })
  expect(m.status).to_be("delivered")
  expect(m.case).to_be(c.id)
  c:expect_state("with_department")
  c:expect_field("clarification", "2024 and 2025, please.")
  -- Due Monday 2 March, stopped 5 working days: due Monday 9 March.  The
  -- warning moves the same way, from 25 February to 4 March.
  c:expect_sla("due", "2026-03-09T09:00:00Z")
  c:expect_timers({
    { kind = "task_due", at = "2026-03-04T09:00:00Z" },   -- a new task
    { event = "sla_warning", at = "2026-03-04T09:00:00Z" },
    { event = "sla_breached", at = "2026-03-09T09:00:00Z" },
  })
  c:expect_tasks({ { name = "respond", team = "housing", status = "open" } })
  c:expect_history({ "open", "ask_clarification", "clarification_received" })
  local h = c:history()
  expect(h[2].sla[1].change).to_be("paused")
  expect(h[3].sla[1].change).to_be("resumed")
end)

test("a clock stopped for part of a day moves by the working hours stopped", function()
  local c = open("foi_request", request)
  advance_to("2026-02-04T13:00:00Z")                     -- Wednesday 13:00
  c:signal("ask_clarification", { question = "Which estate?" }, officer)
  advance_to("2026-02-11T11:00:00Z")                     -- next Wednesday 11:00
  send("clarification_received", "FOI-000001", { text = "Northfield." })
  -- Stopped 4 h on the first Wednesday, 4 whole days, 2 h on the last:
  -- 38 working hours after Monday 2 March 09:00 is Friday 6 March 15:00.
  c:expect_sla("due", "2026-03-06T15:00:00Z")
  expect(c:history()[3].sla[1].working_ms).to_be(38 * 3600 * 1000)
end)

test("no warning and no breach while the clock is stopped", function()
  local c = open("foi_request", request)
  advance("1 working day")
  c:signal("ask_clarification", { question = "Which estate?" }, officer)
  -- Well past the first warning and deadline: nothing fires.
  advance_to("2026-03-10T09:00:00Z")
  c:expect_sla("paused")
  c:expect_history({ "open", "ask_clarification" })
  send("clarification_received", "FOI-000001", { text = "Northfield." })
  -- 19 working days were left when the clock stopped; from Tuesday
  -- 10 March, skipping Good Friday and Easter Monday, that is Wednesday
  -- 8 April, 09:00 London time (08:00Z, British Summer Time).
  c:expect_sla("due", "2026-04-08T08:00:00Z")
end)

test("a clarification that never comes: withdrawn after 60 working days", function()
  hosts_work()
  local c = open("foi_request", request)
  c:signal("ask_clarification", { question = "Which estate?" }, officer)
  -- 60 working days, over Easter: Wednesday 29 April, 09:00 BST.  The
  -- warning and the breach wait, paused (expect_timers lists only the
  -- pending timers; c:timers() has them all).
  c:expect_timers({
    { event = "clarification_overdue", at = "2026-04-29T08:00:00Z" },
  })
  local t = c:timers()
  expect(#t).to_be(3)
  expect({ t[1].event, t[1].status }).to_be({ "sla_warning", "paused" })
  expect({ t[2].event, t[2].status }).to_be({ "sla_breached", "paused" })
  advance_to("2026-04-29T07:59:00Z")
  c:expect_state("awaiting_clarification")
  advance("1m")
  c:expect_state("withdrawn")
  c:expect_field("closure", "no_clarification")
  c:expect_history({ "open", "ask_clarification", "clarification_overdue" })
  c:expect_actions({
    { action = "notify.email" }, { action = "notify.email" },
    { action = "notify.email", status = "done",
      args = { template = "foi_withdrawn",
               personalisation = { reason = "no_clarification" } } },
  })
  c:expect_timers({})
  -- A reply after that finds no case waiting for it.
  local m = send("clarification_received", "FOI-000001", { text = "Too late" })
  expect(m.status).to_be("buffered")
end)

test("a requester who writes before anyone asks: kept, the clock runs on", function()
  local c = open("foi_request", request)
  advance("1 working day")
  local m = send("clarification_received", "FOI-000001",
                 { text = "I mean the Northfield estate." })
  expect(m.status).to_be("delivered")
  c:expect_state("with_department")
  c:expect_field("clarification", "I mean the Northfield estate.")
  c:expect_sla("due", "2026-03-02T09:00:00Z")
  c:expect_tasks({ "respond" })
end)

test("a reply quoting a reference no request has waits, then expires", function()
  local m = send("clarification_received", "FOI-000099", { text = "Hello" })
  expect(m.status).to_be("buffered")
  advance("7d")
  expect(messages("expired")[1].key).to_be("FOI-000099")
end)

test("a clarification after the answer is an incident for the FOI team", function()
  local c = answered(in_full)
  local m = send("clarification_received", "FOI-000001", { text = "Thanks!" })
  expect(m.status).to_be("incident")
  c:expect_state("responded")
  local i = c:incidents()[1]
  expect(i.id).to_be(m.incident)
  expect(i.source).to_be("message")
  expect(i.code).to_be("FLOW_EEVENT")
end)

test("a clarification too long to keep is an incident; the case waits on", function()
  local c = open("foi_request", request)
  c:signal("ask_clarification", { question = "Which estate?" }, officer)
  local m = send("clarification_received", "FOI-000001", { text = ("x"):rep(10001) })
  expect(m.status).to_be("incident")
  c:expect_state("awaiting_clarification")
  c:expect_sla("paused")
  local i = c:incidents()[1]
  expect(i.code).to_be("FLOW_EDATA")
  expect(i.error).to_contain("clarification: must have at most 10000")
end)

test("the FOI officer may withdraw a request, before or during clarification", function()
  hosts_work()
  local c = open("foi_request", request)
  c:signal("withdraw", {}, officer)
  c:expect_state("withdrawn")
  c:expect_field("closure", "withdrawn")
  c:expect_tasks({})
  c:expect_actions({
    { action = "notify.email" },
    { action = "notify.email", args = { template = "foi_withdrawn",
                                        personalisation = { reason = "withdrawn" } } },
  })
  local d = open("foi_request", request)
  d:signal("ask_clarification", { question = "Which estate?" }, officer)
  d:signal("withdraw", {}, officer)
  d:expect_state("withdrawn")
  d:expect_field("closure", "withdrawn")
end)

test("the department cannot answer while the request waits for clarification", function()
  local c = open("foi_request", request)
  c:signal("ask_clarification", { question = "Which estate?" }, officer)
  c:expect_complete_refused("respond", in_full, dee, "FLOW_ECONFLICT")
  c:expect_state("awaiting_clarification")
end)

-- ------------------------------------------------------------------
-- The internal review
-- ------------------------------------------------------------------

test("a review upheld by someone else closes the case", function()
  local c = answered(refusal)
  advance("10 working days")
  c:signal("request_review", { grounds = "The public interest favours release." }, officer)
  c:expect_state("under_review")
  c:expect_data({ review_grounds = "The public interest favours release.",
                  review_requested_at = "2026-02-16T09:00:00Z" })
  -- A clock of its own: 20 working days from the review request.
  c:expect_sla("due", "2026-03-16T09:00:00Z")
  c:expect_tasks({
    { name = "review", team = "foi_review", due = "2026-03-12T09:00:00Z",
      title = "Review FOI request FOI-000001 (first decided by dee)" },
  })
  c:complete("review", { result = "upheld", note = "s43 applies." }, rita)
  c:expect_state("closed")
  c:expect_data({ review_result = "upheld", reviewed_by = "rita",
                  closure = "reviewed", outcome = "refused" })
  c:expect_sla("met")
  local a = c:actions()
  expect(a[4].args.template).to_be("foi_review_acknowledgement")
  expect(a[5].args.template).to_be("foi_review_response")
  expect(a[5].args.personalisation.result).to_be("upheld")
  expect(#a).to_be(5)     -- nothing published again
end)

test("the first decision maker cannot review their own decision", function()
  local c = answered(refusal)
  c:signal("request_review", { grounds = "Wrong exemption." }, officer)
  -- dee made the first decision: even as a reviewer, refused.
  local why = c:expect_complete_refused("review", { result = "upheld" },
    { actor = "dee", roles = { "foi_reviewer" } }, "FLOW_EREFUSED")
  expect(why).to_contain("dee made the first decision on FOI-000001, so " ..
                         "someone else must review it")
  -- Someone who is not a reviewer may neither take nor complete it.
  why = c:expect_complete_refused("review", { result = "upheld" },
    { actor = "sam", roles = { "housing" } }, "FLOW_EPERM")
  expect(why).to_contain("needs the role foi_reviewer, and sam has only " ..
                         "housing")
  c:expect_claim_refused("review", { actor = "sam", roles = { "housing" } },
                         "FLOW_EPERM")
  c:expect_state("under_review")
  c:expect_field("reviewed_by", nil)
  -- The refused attempts left the task open and unclaimed.
  c:expect_tasks({ { name = "review", status = "open" } })
  c:complete("review", { result = "upheld" }, rita)
  c:expect_field("reviewed_by", "rita")
end)

test("a review that changes the answer publishes the new one", function()
  local c = answered(refusal)
  c:signal("request_review", { grounds = "Wrong exemption." }, officer)
  advance("5 working days")
  c:complete("review", { result = "overturned", outcome = "granted_in_full",
                         disclosure_text = "The contract prices are £1.2m." },
             rita)
  -- Published at once by the mock, so the case closes.
  c:expect_state("closed")
  c:expect_data({ review_result = "overturned", outcome = "granted_in_full",
                  closure = "reviewed", published_at = "2026-02-09T09:00:00Z",
                  disclosure_text = "The contract prices are £1.2m." })
  expect(c:data().exemptions).to_be({})
  c:expect_history({ "open", "response_ready", "published", "request_review",
                     "review_done", "published" })
  local a = c:actions()
  expect(#a).to_be(6)
  expect(a[5].args.template).to_be("foi_review_response")
  expect(a[5].args.personalisation)
    .to_be({ name = "Sam Jones", reference = "FOI-000001",
             result = "overturned", outcome = "granted in full",
             exemptions = "" })
  expect(a[6].action).to_be("foi.publish")
  expect(a[6].args.redacted_text).to_be("The contract prices are £1.2m.")
end)

test("a review partly upheld still needs sections for what stays withheld", function()
  local c = answered(refusal)
  c:signal("request_review", { grounds = "Some of it can go." }, officer)
  local why = c:expect_complete_refused("review", { result = "partly_upheld" },
                                        rita, "FLOW_EREFUSED")
  expect(why).to_contain("a review that is partly_upheld needs the new " ..
                         "outcome and the new disclosure text")
  why = c:expect_complete_refused("review",
    { result = "partly_upheld", outcome = "granted_in_part",
      disclosure_text = "Totals only." }, rita, "FLOW_EDATA")
  expect(why).to_contain("an answer of 'granted in part' must say which sections")
  c:expect_complete_refused("review", { result = "maybe" }, rita, "FLOW_EDATA")
  c:complete("review", { result = "partly_upheld", outcome = "granted_in_part",
                         exemptions = "s43(2)", disclosure_text = "Totals only." },
             rita)
  c:expect_state("closed")
  c:expect_data({ outcome = "granted_in_part", exemptions = { "s43(2)" } })
end)

test("a review may be asked for until 40 working days after the response",
     { at = "2026-03-16T10:00:00Z" }, function()
  hosts_work()
  local c = open("foi_request", request)
  -- Answered on Thursday 2 April 2026 at 14:00 (BST), before Easter.
  c:complete("respond", refusal, { actor = "dee", at = "2026-04-02T13:00:00Z" })
  -- Good Friday, Easter Monday, and the May bank holidays (4 and 25 May)
  -- do not count: the 40th working day is Wednesday 3 June, 14:00 BST.
  c:expect_timers({ { event = "review_window_closed", at = "2026-06-03T13:00:00Z" } })
  c:signal("request_review", { grounds = "Just in time." },
           { actor = "olu", roles = { "foi_officer" }, at = "2026-06-03T12:59:00Z" })
  c:expect_state("under_review")
end)

test("a review asked for after 40 working days is refused: the case has closed",
     { at = "2026-03-16T10:00:00Z" }, function()
  hosts_work()
  local c = open("foi_request", request)
  c:complete("respond", refusal, { actor = "dee", at = "2026-04-02T13:00:00Z" })
  local why = expect_refused(function()
    c:signal("request_review", { grounds = "Too late." },
             { actor = "olu", roles = { "foi_officer" }, at = "2026-06-03T13:00:00Z" })
  end, "FLOW_ECLOSED")
  expect(why).to_contain("is closed")
  c:expect_state("closed")
  c:expect_field("closure", "responded")
  c:expect_history({ "open", "response_ready", "published", "review_window_closed" })
end)

test("the review has 20 working days of its own, warned 3 before", function()
  local c = answered(refusal)
  c:signal("request_review", { grounds = "Wrong exemption." }, officer)
  advance("17 working days")
  c:expect_sla("warned")
  c:expect_tasks({
    "review",
    { name = "chase", team = "foi_team",
      title = "FOI-000001: the internal review is due in 3 working days (with foi_review)" },
  })
  advance("3 working days")
  c:expect_sla("breached")
  c:expect_field("review_late", true)
  c:expect_tasks({ { name = "review", overdue = true }, "chase" })
  c:complete("review", { result = "upheld" }, rita)
  c:expect_state("closed")
  c:expect_sla("breached")
  c:expect_history({ "open", "response_ready", "published", "request_review",
                     "sla_warning", "sla_breached", "review_done" })
end)

-- ------------------------------------------------------------------
-- The disclosure log and the emails, when the host has trouble
-- ------------------------------------------------------------------

test("a disclosure log that keeps failing: 6 tries, then an incident", function()
  mock.action("notify.email", { result = {} })
  mock.action("foi.publish", { fail = "disclosure log is down", retry = true })
  local c = open("foi_request", request)
  c:complete("respond", in_full, dee)
  c:expect_actions({ { action = "notify.email" }, { action = "notify.email" },
                     { action = "foi.publish", status = "pending", attempts = 1 } })
  -- Retries after 10, 20, 40, 80 and 160 minutes (each up to half again).
  advance("1d")
  c:expect_actions({
    { action = "notify.email", status = "done" },
    { action = "notify.email", status = "done" },
    { action = "foi.publish", status = "incident", attempts = 6,
      error = "disclosure log is down (the script named no fail event)" },
  })
  local i = c:incidents()
  expect(#i).to_be(1)
  expect(i[1].source).to_be("action")
  expect(i[1].status).to_be("open")
  -- The response has gone; the case waits as it should, unpublished.
  c:expect_state("responded")
  c:expect_field("published_at", nil)
end)

test("a disclosure log that fails once is tried again, and the entry recorded", function()
  mock.action("notify.email", { result = {} })
  mock.action("foi.publish", function(args, req)
    expect(args.reference).to_be("FOI-000001")
    if req.attempt == 1 then return { fail = "busy", retry = true } end
    return { result = { url = "https://council.example/foi/log/7" } }
  end)
  local c = open("foi_request", request)
  c:complete("respond", in_full, dee)
  c:expect_field("published_at", nil)
  advance("15m")                           -- 10 minutes, up to half again
  c:expect_data({ disclosure_log_url = "https://council.example/foi/log/7" })
  c:expect_actions({ {}, {}, { action = "foi.publish", status = "done", attempts = 2 } })
  expect(#c:incidents()).to_be(0)
end)

test("a disclosure log that does not answer is timed out and tried again", function()
  mock.action("notify.email", { result = {} })
  mock.action("foi.publish", function(args, req)
    if req.attempt == 1 then return { silent = true } end
    return { result = { url = "https://council.example/foi/log/8" } }
  end)
  local c = open("foi_request", request)
  c:complete("respond", in_full, dee)
  advance("5m")                            -- the first attempt times out
  c:expect_field("published_at", nil)
  advance("1h")
  c:expect_field("disclosure_log_url", "https://council.example/foi/log/8")
  c:expect_actions({ {}, {}, { action = "foi.publish", status = "done", attempts = 2 } })
end)

test("a publication still under way when a review is asked for is recorded", function()
  mock.action("notify.email", { result = {} })
  -- The log answers after 3 minutes (within the 5-minute timeout).
  mock.action("foi.publish", { result = { url = "https://council.example/foi/log/9" },
                               after = "3m" })
  local c = open("foi_request", request)
  c:complete("respond", refusal, dee)
  c:signal("request_review", { grounds = "Wrong exemption." }, officer)
  c:expect_field("published_at", nil)
  advance("3m")
  c:expect_state("under_review")
  c:expect_data({ published_at = "2026-02-02T09:03:00Z",
                  disclosure_log_url = "https://council.example/foi/log/9" })
end)

test("the reviewed answer waits in 'republishing' until the log has it", function()
  mock.action("notify.email", { result = {} })
  local calls = 0
  mock.action("foi.publish", function()
    calls = calls + 1
    if calls == 1 then return { result = { url = "u1" } } end
    return { result = { url = "u2" }, after = "3m" }
  end)
  local c = open("foi_request", request)
  c:complete("respond", refusal, dee)
  c:signal("request_review", { grounds = "Wrong exemption." }, officer)
  c:complete("review", { result = "overturned", outcome = "granted_in_full",
                         disclosure_text = "All of it." }, rita)
  c:expect_state("republishing")
  c:expect_sla("due")
  advance("3m")
  c:expect_state("closed")
  c:expect_field("disclosure_log_url", "u2")
end)

test("an acknowledgement that cannot be sent is an incident; the request goes on", function()
  mock.action("notify.email", { fail = "invalid email address" })
  local c = open("foi_request", request)
  c:expect_actions({
    { action = "notify.email", status = "incident", attempts = 1,
      error = "invalid email address (the script named no fail event)" },
  })
  expect(c:incidents()[1].source).to_be("action")
  c:expect_state("with_department")
  c:expect_tasks({ "respond" })
end)

-- ------------------------------------------------------------------
-- Who may do what, and what each state takes
-- ------------------------------------------------------------------

test("only the FOI officer asks for clarification, withdraws, or logs a review", function()
  local c = open("foi_request", request)
  local why = expect_refused(function()
    c:signal("ask_clarification", { question = "Which?" }, dee)
  end, "FLOW_EPERM")
  expect(why).to_contain("needs the role foi_officer")
  c:expect_refused("withdraw", {}, { actor = "sam" }, "FLOW_EPERM")
  c:signal("ask_clarification", { question = "Which?" }, officer)
  c:expect_refused("withdraw", {}, dee, "FLOW_EPERM")
  send("clarification_received", "FOI-000001", { text = "This." })
  hosts_work()
  c:complete("respond", in_full, dee)
  c:expect_refused("request_review", { grounds = "x" }, rita, "FLOW_EPERM")
  c:expect_state("responded")
end)

test("events only the engine sends cannot be sent by hand", function()
  local c = open("foi_request", request)
  local why = expect_refused(function()
    c:signal("response_ready", {}, officer)
  end, "FLOW_EPERM")
  expect(why).to_contain("is internal: only the engine sends it")
  c:expect_refused("clarification_received", { text = "x" }, officer, "FLOW_EPERM")
  c:expect_refused("sla_breached", {}, officer, "FLOW_EPERM")
  c:signal("ask_clarification", { question = "Which?" }, officer)
  c:expect_refused("clarification_overdue", {}, officer, "FLOW_EPERM")
end)

test("the handlers refuse what they cannot use", function()
  local c = open("foi_request", request)
  local why = expect_refused(function()
    c:signal("ask_clarification", {}, officer)
  end, "FLOW_EREFUSED")
  expect(why).to_contain("say what the requester should clarify")
  c:expect_refused("ask_clarification", { question = ("x"):rep(2001) },
                   officer, "FLOW_EDATA")
  c:expect_state("with_department")
  hosts_work()
  c:complete("respond", in_full, dee)
  why = expect_refused(function()
    c:signal("request_review", {}, officer)
  end, "FLOW_EREFUSED")
  expect(why).to_contain("say why the requester wants a review")
  c:expect_refused("request_review", { grounds = ("x"):rep(5001) }, officer,
                   "FLOW_EDATA")
  c:expect_state("responded")
end)

test("events a state does not take are refused", function()
  local c = open("foi_request", request)
  c:expect_refused("request_review", { grounds = "x" }, officer, "FLOW_EEVENT")
  c:signal("withdraw", {}, officer)
  c:expect_refused("ask_clarification", { question = "x" }, officer, "FLOW_ECLOSED")
end)
