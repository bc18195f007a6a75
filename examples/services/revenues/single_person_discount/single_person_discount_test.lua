-- Tests for single_person_discount.lua.  Run them with:
--
--   flow test --coverage examples/services/revenues/single_person_discount/
--
-- Every test starts with a fresh, empty engine whose clock reads Monday
-- 2 February 2026, 09:00 (London), unless the test says otherwise.  From
-- then, the service level of 20 working days ends on Monday 2 March at
-- 09:00, and its warning (15 working days) comes on Monday 23 February.

load("single_person_discount.lua")

local application = {
  account_ref = "40012345",
  uprn = "100023336956",
  address = "12 High Street, Exeter",
  sole_adult_since = "2026-01-10",
  reason = "moved_out",
  name = "Alex Taylor",
  email = "alex.taylor@example.org",
  phone = "07700 900123",
}

-- The application with some answers changed; `leave_out` lists answers
-- to take away.
local function with(changes, leave_out)
  local t = {}
  for k, v in pairs(application) do t[k] = v end
  for k, v in pairs(changes or {}) do t[k] = v end
  for _, k in ipairs(leave_out or {}) do t[k] = nil end
  return t
end

-- The people.  Assessors complete the "assess" task; team leaders send
-- the approve and send_back events.  Tom is a team leader who also
-- assesses.  The portal completes the resident's evidence task.
local ana = { actor = "ana", roles = { "assessor" } }
local ben = { actor = "ben", roles = { "assessor" } }
local tess = { actor = "tess", roles = { "team_leader" } }
local tom = { actor = "tom", roles = { "team_leader", "assessor" } }
local portal = { actor = "portal" }

-- The host, as it answers when all is well.
local function host_works()
  mock.action("notify.email", { result = { id = "email-1" } })
  mock.action("notify.sms", { result = { id = "sms-1" } })
  mock.action("ctax.apply_discount", { result = { reference = "CT-991" } })
end

-- The service level's own timers, with their status: "pending", or
-- "paused" while the clock is stopped.
local function sla_timers(c)
  local found = {}
  for _, t in ipairs(c:timers()) do
    if t.kind == "sla_warning" or t.kind == "sla_breached" then
      found[#found + 1] = { kind = t.kind, at = t.due_at, status = t.status }
    end
  end
  return found
end

-- Shorthands for what an assessor reports.
local function award(pence, extra)
  local o = { decision = "award", backdated_pence = pence }
  for k, v in pairs(extra or {}) do o[k] = v end
  return o
end
local ask_for_evidence = {
  decision = "need_evidence",
  evidence_needed = "a copy of the new tenancy agreement of the person who moved out",
}

------------------------------------------------------------------------
-- Applying

test("a new application waits for an assessor, with its service level", function()
  local c = open("single_person_discount", application, { actor = "web" })
  c:expect_state("assessing")
  c:expect_history({ "open" })
  c:expect_tasks({
    { name = "assess", team = "assessors", assignee = nil, status = "open",
      title = "Assess single person discount for account 40012345",
      due = "2026-02-09T09:00:00Z" },
  })
  c:expect_sla("due", "2026-03-02T09:00:00Z")
  -- The assessor's task falls overdue, then the warning, then the breach.
  c:expect_timers({
    { kind = "task_due", event = "task_overdue", at = "2026-02-09T09:00:00Z" },
    { kind = "sla_warning", at = "2026-02-23T09:00:00Z" },
    { kind = "sla_breached", at = "2026-03-02T09:00:00Z" },
  })
  c:expect_actions({})
end)

test("disregarded people may live there too", function()
  local c = open("single_person_discount", with({
    others = { { name = "Sam Taylor", disregard = "student" },
               { name = "Jo Reid", disregard = "carer" } },
  }))
  c:expect_state("assessing")
  expect(c:data().others[1]).to_be({ name = "Sam Taylor", disregard = "student" })
end)

test("an application on Christmas Eve: the bank holidays do not count",
     { at = "2026-12-24T10:00:00Z" }, function()
  -- Friday 25 and Monday 28 December (Boxing Day moved) and Friday
  -- 1 January are bank holidays: 20 working days from Thursday 24
  -- December end on Tuesday 26 January, and the assessor's 5 on
  -- Tuesday 5 January.
  local c = open("single_person_discount", application)
  c:expect_sla("due", "2027-01-26T10:00:00Z")
  c:expect_tasks({ { name = "assess", due = "2027-01-05T10:00:00Z" } })
end)

------------------------------------------------------------------------
-- Awards and the approval threshold

test("a small award goes onto the account and the resident is told", function()
  host_works()
  local c = open("single_person_discount", application)
  c:complete("assess", award(12000, { reason = "tenancy agreement seen" }), ana)
  c:expect_state("awarded")
  c:expect_data({
    decision = "award", backdated_pence = 12000, assessed_by = "ana",
    discount_from = "2026-01-10", decision_reason = "tenancy agreement seen",
    ctax_reference = "CT-991",
  })
  c:expect_field("approved_by", nil)
  c:expect_actions({
    { action = "ctax.apply_discount", status = "done",
      args = { account_ref = "40012345", start_date = "2026-01-10",
               amount_pence = 12000, discount = "single_person",
               percent = 25, reference = "SPD-1" } },
    { action = "notify.email", status = "done",
      args = { email_address = "alex.taylor@example.org",
               template = "spd_awarded", reference = "SPD-1",
               personalisation = { name = "Alex Taylor",
                                   account_ref = "40012345",
                                   discount_from = "2026-01-10",
                                   backdated_amount = "£120.00" } } },
  })
  c:expect_history({ "open", "assessed", "account_updated" })
  c:expect_tasks({})
  c:expect_sla("met")
end)

test("the assessor may start the discount later than the resident said", function()
  host_works()
  local c = open("single_person_discount", application)
  c:complete("assess", award(9050, { discount_from = "2026-01-19" }), ana)
  c:expect_state("awarded")
  c:expect_actions({
    { action = "ctax.apply_discount", args = { start_date = "2026-01-19" } },
    { action = "notify.email",
      args = { personalisation = { discount_from = "2026-01-19",
                                   backdated_amount = "£90.50" } } },
  })
end)

test("an award of exactly £500 needs no approval", function()
  local c = open("single_person_discount", application)
  c:complete("assess", award(50000), ana)
  -- Straight to the revenues system (which has not answered yet).
  c:expect_state("updating_account")
  c:expect_actions({
    { action = "ctax.apply_discount", status = "waiting",
      args = { amount_pence = 50000 } },
  })
end)

test("an award of £500.01 waits for a team leader, who approves it", function()
  host_works()
  local c = open("single_person_discount", application)
  c:complete("assess", award(50001), ana)
  c:expect_state("awaiting_approval")
  c:expect_actions({})          -- nothing goes to the account yet
  c:expect_tasks({})
  advance("2h")
  c:signal("approve", {}, tess)
  c:expect_state("awarded")
  c:expect_data({ approved_by = "tess", assessed_by = "ana" })
  c:expect_actions({
    { action = "ctax.apply_discount", args = { amount_pence = 50001 } },
    { action = "notify.email",
      args = { personalisation = { backdated_amount = "£500.01" } } },
  })
  c:expect_history({ "open", "assessed", "approve", "account_updated" })
end)

test("nobody may approve an award they assessed themselves", function()
  host_works()
  local c = open("single_person_discount", application)
  c:complete("assess", award(60000), tom)
  c:expect_state("awaiting_approval")
  local why = expect_refused(function() c:signal("approve", {}, tom) end,
                             "FLOW_EREFUSED")
  expect(why).to_contain("you assessed this application, so another team leader must approve it")
  c:expect_state("awaiting_approval")
  c:expect_field("approved_by", nil)
  c:signal("approve", {}, tess)
  c:expect_state("awarded")
  c:expect_field("approved_by", "tess")
end)

test("only a team leader may approve or send back", function()
  local c = open("single_person_discount", application)
  c:complete("assess", award(75000), ana)
  local why = expect_refused(function() c:signal("approve", {}, ana) end,
                             "FLOW_EPERM")
  expect(why).to_contain("needs the role team_leader")
  c:expect_refused("approve", {}, ben, "FLOW_EPERM")
  c:expect_refused("approve", {}, "web", "FLOW_EPERM")
  c:expect_refused("send_back", { note = "looks fine to me" }, ben, "FLOW_EPERM")
  c:expect_state("awaiting_approval")
  c:expect_history({ "open", "assessed" })
end)

test("a team leader sends an award back to the assessor who made it", function()
  host_works()
  local c = open("single_person_discount", application)
  c:complete("assess", award(75000), ana)
  c:expect_refused("send_back", {}, tess, "FLOW_EREFUSED")
  c:signal("send_back", { note = "check the date they moved out" }, tess)
  c:expect_state("assessing")
  c:expect_data({ sent_back_by = "tess",
                  sent_back_note = "check the date they moved out" })
  c:expect_tasks({ { name = "assess", assignee = "ana", team = "assessors" } })
  -- It is Ana's to look at again, nobody else's.
  c:expect_complete_refused("assess", award(20000), ben, "FLOW_EPERM")
  -- Smaller now, but a team leader questioned it: it goes back to them.
  c:complete("assess", award(20000, { discount_from = "2026-01-20" }), ana)
  c:expect_state("awaiting_approval")
  c:signal("approve", {}, tess)
  c:expect_state("awarded")
  c:expect_actions({
    { action = "ctax.apply_discount",
      args = { amount_pence = 20000, start_date = "2026-01-20" } },
    { action = "notify.email" },
  })
end)

------------------------------------------------------------------------
-- Refusals and what the assessor must say

test("a refusal tells the resident why", function()
  host_works()
  local c = open("single_person_discount", application)
  c:complete("assess", { decision = "refuse",
                         reason = "two adults are on the electoral register" }, ana)
  c:expect_state("refused")
  c:expect_data({ decision = "refuse", assessed_by = "ana",
                  decision_reason = "two adults are on the electoral register" })
  c:expect_actions({
    { action = "notify.email", status = "done",
      args = { template = "spd_refused",
               personalisation = { reason = "two adults are on the electoral register",
                                   name = "Alex Taylor" } } },
  })
  c:expect_sla("met")
end)

test("an assessment must say what its decision needs", function()
  local c = open("single_person_discount", application)
  local why = c:expect_complete_refused("assess", { decision = "award" }, ana,
                                        "FLOW_EREFUSED")
  expect(why).to_contain("say how much the backdated award is, in pence")
  why = c:expect_complete_refused("assess", { decision = "refuse" }, ana,
                                  "FLOW_EREFUSED")
  expect(why).to_contain("say why the discount is refused")
  why = c:expect_complete_refused("assess", { decision = "need_evidence" }, ana,
                                  "FLOW_EREFUSED")
  expect(why).to_contain("say what evidence the resident must send")
  -- The form's own checks.
  why = c:expect_complete_refused("assess", {}, ana, "FLOW_EDATA")
  expect(why).to_contain("decision: is required")
  c:expect_complete_refused("assess", { decision = "maybe" }, ana, "FLOW_EDATA")
  c:expect_complete_refused("assess", award(-1), ana, "FLOW_EDATA")
  c:expect_complete_refused("assess", award(1000001), ana, "FLOW_EDATA")
  c:expect_complete_refused("assess", award(100, { discount_from = "10/01/2026" }),
                            ana, "FLOW_EDATA")
  c:expect_complete_refused("assess", { decision = "need_evidence",
                                        evidence_needed = ("x"):rep(151) },
                            ana, "FLOW_EDATA")
  -- The case's own rules: the discount cannot start before the date.
  why = c:expect_complete_refused("assess", award(100, { discount_from = "2026-01-09" }),
                                  ana, "FLOW_EDATA")
  expect(why).to_contain("discount_from: must not be before the date the resident became the only adult")
  -- Nothing changed: the task is still there to do.
  c:expect_state("assessing")
  c:expect_tasks({ { name = "assess", status = "open" } })
  c:expect_history({ "open" })
end)

test("an assessment done late is still taken", function()
  host_works()
  local c = open("single_person_discount", application)
  advance("5 working days")
  advance("1h")
  c:expect_tasks({ { name = "assess", overdue = true } })
  c:complete("assess", award(3000), ana)
  c:expect_state("awarded")
  c:expect_sla("met")
end)

------------------------------------------------------------------------
-- Evidence, and the stopped clock

test("asking for evidence gives the resident a task and stops the clock", function()
  host_works()
  local c = open("single_person_discount", application)
  c:complete("assess", ask_for_evidence, ana)
  c:expect_state("awaiting_evidence")
  c:expect_sla("paused")
  c:expect_tasks({
    { name = "upload_evidence", team = "resident_portal",
      title = "Send us evidence: " .. ask_for_evidence.evidence_needed,
      due = "2026-02-16T09:00:00Z" },
  })
  c:expect_actions({
    { action = "notify.email", status = "done",
      args = { template = "spd_evidence_requested",
               personalisation = { evidence_needed = ask_for_evidence.evidence_needed,
                                   reply_within = "10 working days" } } },
  })
  -- The resident's deadline and reminder run; the service level's
  -- timers are stopped ("paused"), and not listed as pending.
  c:expect_timers({
    { event = "evidence_reminder", at = "2026-02-09T09:00:00Z" },
    { event = "after", target = "no_evidence", at = "2026-02-16T09:00:00Z" },
    { event = "task_overdue", at = "2026-02-16T09:00:00Z" },
  })
  expect(sla_timers(c)).to_be({
    { kind = "sla_warning", at = "2026-02-23T09:00:00Z", status = "paused" },
    { kind = "sla_breached", at = "2026-03-02T09:00:00Z", status = "paused" },
  })
end)

test("the due time moves on by exactly the time we waited for evidence", function()
  host_works()
  local c = open("single_person_discount", application)
  -- Tuesday 11:00: the assessor asks for evidence.
  advance_to("2026-02-03T11:00:00Z")
  c:complete("assess", ask_for_evidence, ana)
  c:expect_sla("paused")
  -- Thursday 14:00: it comes.  The clock stood still for Tuesday
  -- 11:00-17:00, all Wednesday and Thursday 09:00-14:00: 19 working
  -- hours, two working days and three hours.
  advance_to("2026-02-05T14:00:00Z")
  c:complete("upload_evidence", { submission = "SUB-17", files = 2 }, portal)
  c:expect_state("assessing")
  c:expect_data({ evidence = { "SUB-17" },
                  evidence_received_at = "2026-02-05T14:00:00Z" })
  -- Due Monday 2 March 09:00 before; two working days and three hours
  -- later now.  The warning moves the same way.
  c:expect_sla("due", "2026-03-04T12:00:00Z")
  expect(sla_timers(c)).to_be({
    { kind = "sla_warning", at = "2026-02-25T12:00:00Z", status = "pending" },
    { kind = "sla_breached", at = "2026-03-04T12:00:00Z", status = "pending" },
  })
  -- A new assessment, with the evidence.
  c:expect_tasks({ { name = "assess", assignee = nil,
                     due = "2026-02-12T14:00:00Z" } })
  c:complete("assess", award(4500), ana)
  c:expect_state("awarded")
  c:expect_sla("met")
end)

test("a weekend of waiting moves nothing", function()
  local c = open("single_person_discount", application)
  advance_to("2026-02-06T17:00:00Z")          -- Friday, closing time
  c:complete("assess", ask_for_evidence, ana)
  advance_to("2026-02-09T08:30:00Z")          -- Monday, before opening
  c:complete("upload_evidence", { submission = "SUB-1", files = 1 }, portal)
  c:expect_sla("due", "2026-03-02T09:00:00Z")
end)

test("no warning comes while the clock is stopped", function()
  host_works()
  local c = open("single_person_discount", application)
  advance("10 working days")                 -- Monday 16 February
  c:complete("assess", ask_for_evidence, ana)
  -- Monday 23 February would have been the warning: the clock is stopped.
  advance("9 working days")                  -- Friday 27 February
  c:expect_sla("paused")
  c:expect_history({ "open", "assessed", "evidence_reminder" })
  c:complete("upload_evidence", { submission = "SUB-1", files = 1 }, portal)
  -- Nine working days stopped: the warning is due on Friday 6 March
  -- and the end on Friday 13 March.
  c:expect_sla("due", "2026-03-13T09:00:00Z")
  advance_to("2026-03-06T08:59:00Z")
  c:expect_sla("due")
  advance("1m")
  c:expect_sla("warned")
  c:expect_history({ "open", "assessed", "evidence_reminder",
                     "evidence_received", "sla_warning" })
end)

test("the resident is reminded half way, and the application closes without evidence", function()
  host_works()
  local c = open("single_person_discount", application)
  c:complete("assess", ask_for_evidence, ana)
  advance("5 working days")
  c:expect_state("awaiting_evidence")
  c:expect_history({ "open", "assessed", "evidence_reminder" })
  c:expect_actions({
    { action = "notify.email", args = { template = "spd_evidence_requested" } },
    { action = "notify.email", status = "done",
      args = { template = "spd_evidence_reminder",
               personalisation = { evidence_needed = ask_for_evidence.evidence_needed } } },
  })
  advance("5 working days")
  c:expect_state("no_evidence")
  c:expect_history({ "open", "assessed", "evidence_reminder", "after" })
  c:expect_actions({
    { action = "notify.email", args = { template = "spd_evidence_requested" } },
    { action = "notify.email", args = { template = "spd_evidence_reminder" } },
    { action = "notify.email", status = "done",
      args = { template = "spd_closed_no_evidence" } },
  })
  c:expect_tasks({})
  expect(c:tasks("upload_evidence")[1].status).to_be("cancelled")
  c:expect_timers({})
  -- The clock was stopped when it closed: the council met its level.
  c:expect_sla("met")
end)

test("evidence a minute before the deadline is taken; a minute after, it is too late", function()
  local c = open("single_person_discount", application)
  c:complete("assess", ask_for_evidence, ana)
  local d = open("single_person_discount", with({ uprn = "100023336957" }))
  d:complete("assess", ask_for_evidence, ben)
  -- The deadline is Monday 16 February, 09:00.
  advance_to("2026-02-16T08:59:00Z")
  c:complete("upload_evidence", { submission = "SUB-1", files = 1 }, portal)
  c:expect_state("assessing")
  advance("1m")
  d:expect_state("no_evidence")
  local why = d:expect_complete_refused("upload_evidence", { submission = "SUB-2", files = 1 },
                                        portal, "FLOW_ECONFLICT")
  expect(why).to_contain("cancelled")
  d:expect_state("no_evidence")
  c:expect_state("assessing")
end)

test("a second request for evidence keeps what came first", function()
  local c = open("single_person_discount", application)
  c:complete("assess", ask_for_evidence, ana)
  c:complete("upload_evidence", { submission = "SUB-1", files = 1 }, portal)
  c:complete("assess", { decision = "need_evidence",
                         evidence_needed = "a council tax bill for their new home" }, ana)
  c:expect_state("awaiting_evidence")
  c:expect_tasks({ { name = "upload_evidence",
                     title = "Send us evidence: a council tax bill for their new home" } })
  c:complete("upload_evidence", { submission = "SUB-2", files = 3,
                                  note = "the bill and two letters" }, portal)
  c:expect_field("evidence", { "SUB-1", "SUB-2" })
  c:expect_history({ "open", "assessed", "evidence_received", "assessed",
                     "evidence_received" })
end)

test("the evidence task needs at least one document", function()
  local c = open("single_person_discount", application)
  c:complete("assess", ask_for_evidence, ana)
  local why = c:expect_complete_refused("upload_evidence", {}, portal, "FLOW_EDATA")
  expect(why).to_contain("submission: is required")
  expect(why).to_contain("files: is required")
  why = c:expect_complete_refused("upload_evidence", { submission = "SUB-1", files = 0 },
                                  portal, "FLOW_EDATA")
  expect(why).to_contain("files: must be at least 1")
  c:expect_complete_refused("upload_evidence", { submission = "SUB-1", files = 1,
                                                 note = ("x"):rep(501) },
                            portal, "FLOW_EDATA")
  c:expect_state("awaiting_evidence")
  c:expect_sla("paused")
end)

------------------------------------------------------------------------
-- The service level

test("the service level warns at 15 working days and is breached at 20", function()
  host_works()
  local c = open("single_person_discount", application)
  advance_to("2026-02-23T08:59:00Z")
  c:expect_sla("due")
  advance("1m")                              -- Monday 23 February, 09:00
  c:expect_sla("warned")
  c:expect_state("assessing")
  advance_to("2026-03-02T08:59:00Z")
  c:expect_sla("warned")
  advance("1m")                              -- Monday 2 March, 09:00
  c:expect_sla("breached")
  c:expect_history({ "open", "sla_warning", "sla_breached" })
  -- Late, but the application is still decided.
  c:complete("assess", award(2500), ana)
  c:expect_state("awarded")
  c:expect_sla("breached")
end)

------------------------------------------------------------------------
-- The revenues system

test("the revenues system refuses the update: someone puts it on by hand", function()
  mock.action("notify.email", { result = { id = "email-1" } })
  mock.action("ctax.apply_discount", { fail = "account 40012345 is closed" })
  local c = open("single_person_discount", application)
  c:complete("assess", award(12000), ana)
  c:expect_state("account_update_failed")
  c:expect_field("account_update_error", "account 40012345 is closed")
  c:expect_actions({
    { action = "ctax.apply_discount", status = "failed", attempts = 1,
      error = "account 40012345 is closed" },
  })
  c:expect_tasks({
    { name = "apply_by_hand", team = "revenues_systems",
      title = "Put the single person discount on account 40012345 by hand",
      due = "2026-02-03T09:00:00Z" },
  })
  c:complete("apply_by_hand", { outcome = "applied", reference = "MANUAL-7" }, "raj")
  c:expect_state("awarded")
  c:expect_field("ctax_reference", "MANUAL-7")
  c:expect_history({ "open", "assessed", "account_update_failed",
                     "manual_update_done" })
  c:expect_actions({
    { action = "ctax.apply_discount", status = "failed" },
    { action = "notify.email", args = { template = "spd_awarded" } },
  })
end)

test("the revenues system is busy: tried again, and the third try works", function()
  host_works()
  mock.action("ctax.apply_discount", function(args, req)
    if req.attempt < 3 then return { fail = "system busy", retry = true } end
    return { result = { reference = "CT-" .. args.account_ref } }
  end)
  local c = open("single_person_discount", application)
  c:complete("assess", award(12000), ana)
  c:expect_state("updating_account")
  -- Tries after 5 minutes, then 10 (each with up to half again).
  advance("30m")
  c:expect_state("awarded")
  c:expect_field("ctax_reference", "CT-40012345")
  c:expect_actions({
    { action = "ctax.apply_discount", status = "done", attempts = 3 },
    { action = "notify.email", args = { template = "spd_awarded" } },
  })
  c:expect_history({ "open", "assessed", "account_updated" })
end)

test("the revenues system never answers: four tries, then a person", function()
  host_works()
  mock.action("ctax.apply_discount", { silent = true })
  local c = open("single_person_discount", application)
  c:complete("assess", award(12000), ana)
  advance("10m")
  c:expect_state("updating_account")          -- first try timed out
  advance("3h")
  c:expect_state("account_update_failed")
  c:expect_actions({ { action = "ctax.apply_discount", status = "failed",
                       attempts = 4 } })
  c:expect_tasks({ { name = "apply_by_hand" } })
  -- The system is back: the person asks for it to be tried again.
  mock.action("ctax.apply_discount", { result = { reference = "CT-2" } })
  c:complete("apply_by_hand", { outcome = "try_again" }, "raj")
  c:expect_state("awarded")
  c:expect_field("ctax_reference", "CT-2")
  c:expect_actions({
    { action = "ctax.apply_discount", status = "failed", attempts = 4 },
    { action = "ctax.apply_discount", status = "done", attempts = 1 },
    { action = "notify.email", args = { template = "spd_awarded" } },
  })
end)

test("doing the update by hand needs an outcome", function()
  mock.action("ctax.apply_discount", { fail = "no such account" })
  local c = open("single_person_discount", application)
  c:complete("assess", award(12000), ana)
  c:expect_complete_refused("apply_by_hand", {}, "raj", "FLOW_EDATA")
  c:expect_complete_refused("apply_by_hand", { outcome = "done" }, "raj", "FLOW_EDATA")
  c:expect_state("account_update_failed")
end)

------------------------------------------------------------------------
-- Telling the resident

test("a resident with no email address gets text messages", function()
  host_works()
  local c = open("single_person_discount", with({}, { "email" }))
  c:complete("assess", award(1000), ana)
  c:expect_state("awarded")
  c:expect_actions({
    { action = "ctax.apply_discount" },
    { action = "notify.sms", status = "done",
      args = { to = "07700 900123", template = "spd_awarded",
               reference = "SPD-1",
               personalisation = { name = "Alex Taylor",
                                   backdated_amount = "£10.00" } } },
  })
end)

test("a message Notify cannot send is retried, then an incident for staff", function()
  mock.action("ctax.apply_discount", { result = { reference = "CT-1" } })
  mock.action("notify.email", { fail = "Notify is down", retry = true })
  local c = open("single_person_discount", application)
  c:complete("assess", award(1000), ana)
  c:expect_state("awarded")
  advance("2h")
  c:expect_actions({
    { action = "ctax.apply_discount", status = "done" },
    { action = "notify.email", status = "incident", attempts = 6 },
  })
  local incidents = c:incidents()
  expect(#incidents).to_be(1)
  expect(incidents[1].source).to_be("action")
  expect(incidents[1].error).to_contain("Notify is down")
end)

------------------------------------------------------------------------
-- Tell Us Once notices

test("a Tell Us Once notice that comes first waits for the application", function()
  local m = send("death_notified", "100023336956", { date_of_death = "2026-01-08" },
                 { ttl = "90d" })
  expect(m.status).to_be("buffered")
  advance("3d")
  local c = open("single_person_discount", with({ reason = "bereavement" }))
  c:expect_state("assessing")
  c:expect_field("death_notified_on", "2026-01-08")
  c:expect_history({ "open", "death_notified" })
  expect(messages("delivered")[1].case).to_be(c.id)
  -- The assessor has what they need.
  c:expect_tasks({ { name = "assess" } })
end)

test("a Tell Us Once notice is the evidence of a bereavement", function()
  local c = open("single_person_discount", with({ reason = "bereavement" }))
  advance("1 working day")
  c:complete("assess", { decision = "need_evidence",
                         evidence_needed = "a copy of the death certificate" }, ana)
  c:expect_sla("paused")
  advance("1 working day")
  local m = send("death_notified", "100023336956", { date_of_death = "2026-01-08" })
  expect(m.status).to_be("delivered")
  c:expect_state("assessing")
  c:expect_data({ death_notified_on = "2026-01-08",
                  evidence_received_at = "2026-02-04T09:00:00Z" })
  -- One working day stopped; the resident's task is no longer needed.
  c:expect_sla("due", "2026-03-03T09:00:00Z")
  expect(c:tasks("upload_evidence")[1].status).to_be("cancelled")
  c:expect_tasks({ { name = "assess" } })
end)

test("a Tell Us Once notice while waiting for other evidence is only recorded", function()
  local c = open("single_person_discount", application)     -- moved out
  c:complete("assess", ask_for_evidence, ana)
  local m = send("death_notified", "100023336956", { date_of_death = "2026-01-30" })
  expect(m.status).to_be("delivered")
  c:expect_state("awaiting_evidence")
  c:expect_field("death_notified_on", "2026-01-30")
  c:expect_sla("paused")
  c:expect_tasks({ { name = "upload_evidence" } })
end)

test("a Tell Us Once notice is recorded at every later stage", function()
  -- Waiting for a team leader.
  local a = open("single_person_discount", with({ uprn = "1001" }))
  a:complete("assess", award(90000), ana)
  send("death_notified", "1001", { date_of_death = "2026-01-30" })
  a:expect_state("awaiting_approval")
  a:expect_field("death_notified_on", "2026-01-30")
  -- Waiting for the revenues system.
  local b = open("single_person_discount", with({ uprn = "1002" }))
  b:complete("assess", award(900), ana)
  send("death_notified", "1002", { date_of_death = "2026-01-31" })
  b:expect_state("updating_account")
  b:expect_field("death_notified_on", "2026-01-31")
  -- The revenues system refused it.
  mock.action("ctax.apply_discount", { fail = "account locked" })
  local d = open("single_person_discount", with({ uprn = "1003" }))
  d:complete("assess", award(900), ana)
  d:expect_state("account_update_failed")
  send("death_notified", "1003", { date_of_death = "2026-02-01" })
  d:expect_state("account_update_failed")
  d:expect_field("death_notified_on", "2026-02-01")
  expect(#messages("delivered")).to_be(3)
end)

test("no Tell Us Once notice and no certificate: a bereavement closes too", function()
  host_works()
  local c = open("single_person_discount", with({ reason = "bereavement" }))
  c:complete("assess", { decision = "need_evidence",
                         evidence_needed = "a copy of the death certificate" }, ana)
  advance("10 working days")
  c:expect_state("no_evidence")
  c:expect_field("death_notified_on", nil)
  expect(#messages()).to_be(0)
  c:expect_actions({
    { action = "notify.email", args = { template = "spd_evidence_requested" } },
    { action = "notify.email", args = { template = "spd_evidence_reminder" } },
    { action = "notify.email",
      args = { template = "spd_closed_no_evidence",
               personalisation = { evidence_needed = "a copy of the death certificate" } } },
  })
end)

test("a Tell Us Once notice nobody applies for expires", function()
  send("death_notified", "100023336956", { date_of_death = "2026-01-08" },
       { ttl = "30d" })
  advance("30d")
  expect(messages("expired")[1].key).to_be("100023336956")
  local c = open("single_person_discount", with({ reason = "bereavement" }))
  c:expect_field("death_notified_on", nil)
  c:expect_history({ "open" })
end)

test("a Tell Us Once notice with a wrong date is an incident", function()
  local c = open("single_person_discount", application)
  local m = send("death_notified", "100023336956", { date_of_death = "last week" })
  expect(m.status).to_be("incident")
  c:expect_field("death_notified_on", nil)
  expect(c:incidents()[1].code).to_be("FLOW_EDATA")
end)

test("only one application per property can be open at a time", function()
  host_works()
  local c = open("single_person_discount", application)
  local why = expect_open_refused("single_person_discount",
                                  with({ account_ref = "40099999" }), "FLOW_ECONFLICT")
  expect(why).to_contain("case 1")
  c:complete("assess", { decision = "refuse", reason = "two adults live there" }, ana)
  -- Once the first is decided, the property can apply again.
  local d = open("single_person_discount", application)
  d:expect_state("assessing")
end)

------------------------------------------------------------------------
-- Withdrawing

test("the resident may withdraw while it is assessed", function()
  local c = open("single_person_discount", application)
  c:signal("withdraw", {}, "web")
  c:expect_state("withdrawn")
  c:expect_field("withdrawn_by", "web")
  expect(c:tasks("assess")[1].status).to_be("cancelled")
  c:expect_timers({})
end)

test("the resident may withdraw while we wait for evidence", function()
  local c = open("single_person_discount", application)
  c:complete("assess", ask_for_evidence, ana)
  c:signal("withdraw", {}, "web")
  c:expect_state("withdrawn")
  c:expect_tasks({})
  c:expect_timers({})
end)

------------------------------------------------------------------------
-- Events at the wrong time, from the wrong place

test("events a state does not take are refused", function()
  host_works()
  local c = open("single_person_discount", application)
  c:expect_refused("approve", {}, tess, "FLOW_EEVENT")
  c:expect_refused("send_back", { note = "x" }, tess, "FLOW_EEVENT")
  c:complete("assess", award(90000), ana)
  c:expect_refused("withdraw", {}, "web", "FLOW_EEVENT")
  c:signal("approve", {}, tess)
  c:expect_state("awarded")
  c:expect_refused("withdraw", {}, "web", "FLOW_ECLOSED")
end)

test("nobody may send what only the engine sends", function()
  local c = open("single_person_discount", application)
  c:expect_refused("assessed", { outcome = award(100), by = "ana" }, tess, "FLOW_EPERM")
  c:expect_refused("death_notified", { date_of_death = "2026-01-01" }, tess, "FLOW_EPERM")
  c:complete("assess", ask_for_evidence, ana)
  c:expect_refused("evidence_received", {}, tess, "FLOW_EPERM")
  c:expect_refused("evidence_reminder", {}, tess, "FLOW_EPERM")
  c:expect_state("awaiting_evidence")
end)

------------------------------------------------------------------------
-- Applications that are not valid

test("each answer is checked", function()
  local function refused(data, says)
    local why = expect_open_refused("single_person_discount", data, "FLOW_EDATA")
    expect(why).to_contain(says)
  end
  refused({}, "account_ref: is required")
  refused(with({}, { "uprn" }), "uprn: is required")
  refused(with({}, { "sole_adult_since" }), "sole_adult_since: is required")
  refused(with({}, { "reason" }), "reason: is required")
  refused(with({}, { "name" }), "name: is required")
  refused(with({ account_ref = "4001234X" }), "account_ref: does not match")
  refused(with({ account_ref = "4001234" }), "account_ref: must have at least 8 characters")
  refused(with({ account_ref = "40012345678" }), "account_ref: must have at most 10 characters")
  refused(with({ uprn = "12 High St" }), "uprn: does not match")
  refused(with({ uprn = "1000233369561" }), "uprn: must have at most 12 characters")
  refused(with({ address = ("x"):rep(201) }), "address: must have at most 200 characters")
  refused(with({ sole_adult_since = "10/01/2026" }), "sole_adult_since:")
  refused(with({ sole_adult_since = "2026-02-03" }), "sole_adult_since: must not be in the future")
  refused(with({ reason = "divorce" }), "reason: must be one of")
  refused(with({ reason = "other" }), "reason_detail: say what happened")
  refused(with({ reason_detail = ("x"):rep(501) }), "reason_detail: must have at most 500 characters")
  refused(with({ name = ("x"):rep(101) }), "name: must have at most 100 characters")
  refused(with({ email = "alex.taylor" }), "email: does not match")
  refused(with({ phone = "call me" }), "phone: does not match")
  refused(with({}, { "email", "phone" }), "email or phone: give at least one of them")
  refused(with({ others = { { name = "Sam" } } }), "others: person 1 needs a name")
  refused(with({ others = { { name = "Sam", disregard = "student" },
                            { name = "Jo", disregard = "lodger" } } }),
          "others: person 2 needs a name")
  refused(with({ others = { "Sam" } }), "others: person 1")
  local eleven = {}
  for i = 1, 11 do eleven[i] = { name = "P" .. i, disregard = "student" } end
  refused(with({ others = eleven }), "others: must have at most 10")
  refused(with({ council = "Exeter" }), "council: is not a field")
end)

test("a resident who became the only adult today may apply", function()
  local c = open("single_person_discount", with({ sole_adult_since = "2026-02-02",
                                                  reason = "other",
                                                  reason_detail = "my lodger left" }))
  c:expect_state("assessing")
end)
