-- Council Tax single person discount: change of circumstances.
--
-- A resident tells us they have become the only adult at their home (the
-- person they lived with moved out, died, ...), so their Council Tax bill
-- should have the 25% single person discount from that date.  People who
-- are "disregarded" for Council Tax (full-time students, apprentices,
-- carers and so on) can still live there: the resident lists them.
--
-- What happens to an application:
--
--   1. An assessor in the revenues team gets a task to assess it.  They
--      award the discount (with the backdated amount it gives the
--      resident), refuse it, or ask the resident for evidence.
--   2. Asking for evidence gives the resident a task in their online
--      account and 10 working days to send it, with a reminder half way.
--      While we wait, the service-level clock is stopped: the time the
--      resident takes does not count against the council.  No evidence
--      in time: the application is closed ("no_evidence") and the
--      resident is told.
--   3. An award with a backdated amount over £500 needs a team leader's
--      approval.  A team leader approves it or sends it back to the
--      assessor; nobody may approve an award they assessed themselves.
--   4. The award is put on the Council Tax account by the revenues
--      system (the action ctax.apply_discount).  If that fails, the
--      revenues systems team gets a task to put it on by hand.
--   5. The resident is told the outcome by email (or by text message if
--      they gave no email address), through GOV.UK Notify.
--
-- A Tell Us Once notice of a death at the property (the national service
-- that tells councils about a death) may come before or during the
-- application.  It is recorded on the case, and it is enough evidence of
-- a bereavement: a case waiting for that evidence goes back to the
-- assessor at once.
--
-- Where a case goes (README.md has the drawing, single_person_discount.svg):
--
--   assessing --assessed: refuse------------------------> refused
--   assessing --assessed: ask for evidence--------------> awaiting_evidence
--   assessing --assessed: award up to £500--------------> updating_account
--   assessing --assessed: award over £500---------------> awaiting_approval
--   assessing or awaiting_evidence --withdraw-----------> withdrawn
--   awaiting_evidence --evidence_received---------------> assessing
--   awaiting_evidence --Tell Us Once, for a bereavement-> assessing
--   awaiting_evidence --after 10 working days-----------> no_evidence
--   awaiting_approval --approve (team leader)-----------> updating_account
--   awaiting_approval --send_back (team leader)---------> assessing
--   updating_account --account_updated------------------> awarded
--   updating_account --account_update_failed------------> account_update_failed
--   account_update_failed --put on by hand--------------> awarded
--   account_update_failed --try again-------------------> updating_account
--
-- Try it from the shell:
--
--   flow check examples/services/revenues/single_person_discount/single_person_discount.lua
--   flow test --coverage examples/services/revenues/single_person_discount/

-- The rules a council is most likely to change are here at the top.

-- An award with a backdated amount over this needs a team leader's
-- approval.  Amounts are in pence, so 50000 is £500.00.
local APPROVAL_OVER_PENCE = 50000

-- How long an assessor has for each assessment (their task's due time).
local ASSESS_WITHIN = "5 working days"

-- How long the resident has to send evidence, and when they are reminded.
local EVIDENCE_WITHIN = "10 working days"
local EVIDENCE_REMINDER = "5 working days"

-- The people a resident may say still live with them without losing the
-- discount, because Council Tax does not count them ("disregarded").
local DISREGARDS = {
  student = true,                   -- full-time student or student nurse
  apprentice = true,
  school_leaver = true,             -- 18 or 19 and just left school
  carer = true,                     -- a live-in carer
  severely_mentally_impaired = true,
  care_leaver = true,               -- under 25 and left local authority care
}

-- A value counts as given when it is there and not empty text.
local function given(value)
  return value ~= nil and value ~= ""
end

-- Pence as pounds for a letter: 52550 -> "£525.50".
local function pounds(pence)
  return string.format("£%d.%02d", pence // 100, pence % 100)
end

-- Tell the resident something through GOV.UK Notify: by email when they
-- gave an address, otherwise by text message.  The host turns the
-- template name into a Notify template id.  Notify is retried a few
-- times; if it still fails, the case shows an incident so that someone
-- writes to the resident instead.
local function tell_resident(case, template, personalisation)
  personalisation.name = case.data.name
  personalisation.account_ref = case.data.account_ref
  local reference = "SPD-" .. case.id
  local options = { retry = { max = 5, backoff = "1m" }, timeout = "5m" }
  if given(case.data.email) then
    flow.call("notify.email", {
      email_address = case.data.email,
      template = template,
      personalisation = personalisation,
      reference = reference,
    }, options)
  else
    flow.call("notify.sms", {
      to = case.data.phone,
      template = template,
      personalisation = personalisation,
      reference = reference,
    }, options)
  end
end

-- What an assessor reports when they finish an assessment.
local ASSESSMENT_FORM = {
  decision = { type = "enum", values = { "award", "refuse", "need_evidence" },
               required = true },
  -- The backdated amount the award gives the resident, in pence (0 if
  -- there is none): needed for an award.
  backdated_pence = { type = "integer", min = 0, max = 1000000 },
  -- The date the discount starts: the date the resident gave, unless
  -- the assessor sets another.
  discount_from = { type = "date" },
  -- Why: needed for a refusal, and told to the resident.
  reason = { type = "string", max = 500 },
  -- What the resident must send: needed to ask for evidence.
  evidence_needed = { type = "string", max = 150 },
}

-- The assessor's task is done: record the decision and go where it leads.
-- A decision that lacks what it needs is refused, and the task stays open.
local function assessed(case, ev)
  local o = ev.payload.outcome
  case.data.assessed_by = ev.payload.by

  if o.decision == "need_evidence" then
    if not given(o.evidence_needed) then
      flow.fail("say what evidence the resident must send, in "
                .. "evidence_needed (for example \"a copy of the tenancy "
                .. "agreement of the person who moved out\")")
    end
    case.data.evidence_needed = o.evidence_needed
    return "awaiting_evidence"
  end

  if o.decision == "refuse" then
    if not given(o.reason) then
      flow.fail("say why the discount is refused, in reason: the resident "
                .. "is told it")
    end
    case.data.decision = "refuse"
    case.data.decision_reason = o.reason
    case.data.backdated_pence = nil
    case.data.discount_from = nil
    return "refused"
  end

  -- An award.
  if o.backdated_pence == nil then
    flow.fail("say how much the backdated award is, in pence, in "
              .. "backdated_pence (0 if there is none)")
  end
  case.data.decision = "award"
  case.data.decision_reason = o.reason
  case.data.backdated_pence = o.backdated_pence
  case.data.discount_from = o.discount_from or case.data.sole_adult_since
  -- A large award needs a team leader.  So does one a team leader sent
  -- back, whatever the amount now: the award they questioned cannot
  -- skip them by coming back smaller.
  if o.backdated_pence > APPROVAL_OVER_PENCE or case.data.sent_back_by then
    return "awaiting_approval"
  end
  return "updating_account"
end

-- The resident (or someone on the phone for them) withdraws.
local function withdraw(case, ev)
  case.data.withdrawn_by = ev.actor.id
  return "withdrawn"
end

-- A Tell Us Once notice of a death at the property.  It can come at any
-- stage, so every open state takes it (see with_notices below) and
-- records it for the assessor to see.  (awaiting_evidence does more.)
local function record_death(case, ev)
  case.data.death_notified_on = ev.payload.date_of_death
end

-- Adds the events every open state takes to a state's own events.
local function with_notices(on)
  on.death_notified = on.death_notified
                      or { internal = true, handler = record_death }
  return on
end

return {
  name = "single_person_discount",

  -- Bump the version whenever you change the script.  Cases already open
  -- keep running on the version they were opened with.
  version = 1,

  title = "Council Tax single person discount: change of circumstances",

  fields = {
    -- What the resident tells us.  The account reference is on their
    -- bill: 8 to 10 digits.
    account_ref = { type = "string", required = true, pattern = "^%d+$",
                    min = 8, max = 10, index = true,
                    title = "Council Tax account reference" },
    uprn = { type = "string", required = true, pattern = "^%d+$", max = 12,
             index = true, title = "Property UPRN" },
    address = { type = "string", max = 200 },
    -- The date they became the only adult: not in the future.
    sole_adult_since = { type = "date", required = true },
    reason = { type = "enum", required = true,
               values = { "moved_out", "bereavement", "separation",
                          "moved_into_care", "other" } },
    -- In their own words: needed when the reason is "other".
    reason_detail = { type = "string", max = 500 },
    -- The resident, who must give an email address or a phone number.
    name = { type = "string", required = true, max = 100, pii = true },
    email = { type = "string", pii = true, max = 254,
              pattern = "^[^@%s]+@[^@%s]+%.[^@%s]+$" },
    phone = { type = "string", pii = true, pattern = "^%+?[%d ]+$", max = 20 },
    -- Anyone else who lives there and is disregarded, as a list of
    -- { name = "Sam Jones", disregard = "student" }.
    others = { type = "list", max = 10, pii = true },

    -- From a Tell Us Once notice.
    death_notified_on = { type = "date" },

    -- The assessment.
    assessed_by = { type = "string", max = 100 },
    decision = { type = "enum", values = { "award", "refuse" } },
    decision_reason = { type = "string", max = 500 },
    backdated_pence = { type = "integer", min = 0, max = 1000000 },
    discount_from = { type = "date" },

    -- Evidence.
    evidence_needed = { type = "string", max = 150 },
    evidence = { type = "list", max = 20 },    -- submission ids, oldest first
    evidence_received_at = { type = "datetime" },

    -- The team leader.
    approved_by = { type = "string", max = 100 },
    sent_back_by = { type = "string", max = 100 },
    sent_back_note = { type = "string", max = 500 },

    -- The revenues system.
    ctax_reference = { type = "string", max = 100 },
    account_update_error = { type = "string", max = 500 },

    withdrawn_by = { type = "string", max = 100 },
  },

  -- Contact: an email address or a phone number (or both).
  one_of = { "email", "phone" },

  -- Rules across fields, and rules the field options cannot say.
  validate = function(data)
    local problems = {}
    if data.sole_adult_since > flow.now():sub(1, 10) then
      problems.sole_adult_since = "must not be in the future"
    end
    if data.reason == "other" and not given(data.reason_detail) then
      problems.reason_detail = "say what happened when the reason is \"other\""
    end
    if data.discount_from and data.discount_from < data.sole_adult_since then
      problems.discount_from = "must not be before the date the resident "
                               .. "became the only adult"
    end
    for i, person in ipairs(data.others or {}) do
      if type(person) ~= "table" or not given(person.name)
         or type(person.name) ~= "string" or #person.name > 100
         or not DISREGARDS[person.disregard] then
        problems.others = "person " .. i .. " needs a name and why they are "
          .. "disregarded: student, apprentice, school_leaver, carer, "
          .. "severely_mentally_impaired or care_leaver"
        break
      end
    end
    return problems
  end,

  -- A Tell Us Once notice names the property by its UPRN.  (So only one
  -- application per property can be open at a time: a second one is
  -- refused while the first is open.)
  correlate = { death_notified = "uprn" },

  initial = "assessing",

  -- We decide within 20 working days, not counting the time we wait for
  -- the resident's evidence; the team is warned at 15.
  sla = { within = "20 working days", warn = "15 working days" },

  states = {
    assessing = {
      title = "With an assessor",
      -- Every time a case comes here, an assessor gets a task.  A case a
      -- team leader sent back goes to the assessor who assessed it.
      enter = function(case, ev)
        local assignee = nil
        if ev.name == "send_back" then assignee = case.data.assessed_by end
        flow.task{
          name = "assess",
          title = "Assess single person discount for account "
                  .. case.data.account_ref,
          team = "assessors",
          assignee = assignee,
          due = ASSESS_WITHIN,
          form = ASSESSMENT_FORM,
          done = "assessed",
        }
      end,
      on = with_notices{
        assessed = { internal = true, handler = assessed },
        withdraw = withdraw,
      },
    },

    awaiting_evidence = {
      title = "Waiting for the resident's evidence",
      -- Stop the clock, give the resident a task in their online account
      -- (the portal completes it when they upload), and tell them.
      enter = function(case)
        flow.sla.pause("waiting for evidence from the resident")
        flow.task{
          name = "upload_evidence",
          title = "Send us evidence: " .. case.data.evidence_needed,
          team = "resident_portal",
          due = EVIDENCE_WITHIN,
          -- The portal keeps the files the resident uploads together as
          -- one submission in the council's document store.
          form = {
            submission = { type = "string", required = true, max = 100 },
            files = { type = "integer", required = true, min = 1, max = 20 },
            note = { type = "string", max = 500 },
          },
          done = "evidence_received",
        }
        tell_resident(case, "spd_evidence_requested", {
          evidence_needed = case.data.evidence_needed,
          reply_within = EVIDENCE_WITHIN,
        })
      end,
      after = {
        [EVIDENCE_REMINDER] = { event = "evidence_reminder" },
        [EVIDENCE_WITHIN] = "no_evidence",
      },
      on = with_notices{
        -- A Tell Us Once notice is the evidence of a bereavement.
        death_notified = {
          internal = true,
          handler = function(case, ev)
            record_death(case, ev)
            if case.data.reason == "bereavement" then
              case.data.evidence_received_at = ev.at
              flow.sla.resume()
              return "assessing"
            end
            return   -- (a plain return: stay here, still waiting)
          end,
        },
        evidence_received = {
          internal = true,
          handler = function(case, ev)
            local evidence = case.data.evidence or flow.list()
            table.insert(evidence, ev.payload.outcome.submission)
            case.data.evidence = evidence
            case.data.evidence_received_at = ev.at
            flow.sla.resume()
            return "assessing"
          end,
        },
        -- Half way: remind the resident, and keep waiting.
        evidence_reminder = {
          internal = true,
          handler = function(case)
            tell_resident(case, "spd_evidence_reminder", {
              evidence_needed = case.data.evidence_needed,
            })
          end,
        },
        withdraw = withdraw,
      },
    },

    awaiting_approval = {
      title = "Waiting for a team leader's approval",
      on = with_notices{
        approve = {
          roles = { "team_leader" },
          handler = function(case, ev)
            if ev.actor.id == case.data.assessed_by then
              flow.fail("you assessed this application, so another team "
                        .. "leader must approve it")
            end
            case.data.approved_by = ev.actor.id
            return "updating_account"
          end,
        },
        -- '{"note": "check the date they moved out"}'
        send_back = {
          roles = { "team_leader" },
          handler = function(case, ev)
            if not given(ev.payload.note) then
              flow.fail("say what the assessor should look at again, for "
                        .. "example {\"note\": \"check the date\"}")
            end
            case.data.sent_back_by = ev.actor.id
            case.data.sent_back_note = ev.payload.note
            return "assessing"
          end,
        },
      },
    },

    updating_account = {
      title = "Putting the discount on the Council Tax account",
      enter = function(case)
        flow.call("ctax.apply_discount", {
          account_ref = case.data.account_ref,
          start_date = case.data.discount_from,
          amount_pence = case.data.backdated_pence,
          discount = "single_person",
          percent = 25,
          reference = "SPD-" .. case.id,
        }, {
          reply = "account_updated",
          fail = "account_update_failed",
          retry = { max = 3, backoff = "5m" },
          timeout = "10m",
        })
      end,
      on = with_notices{
        account_updated = {
          internal = true,
          handler = function(case, ev)
            case.data.ctax_reference = ev.payload.reference
            return "awarded"
          end,
        },
        account_update_failed = {
          internal = true,
          handler = function(case, ev)
            case.data.account_update_error = ev.payload.error
            return "account_update_failed"
          end,
        },
      },
    },

    -- The revenues system would not take it: a person puts it on by hand,
    -- or has it tried again once the system is back.
    account_update_failed = {
      title = "The revenues system refused the update",
      enter = function(case)
        flow.task{
          name = "apply_by_hand",
          title = "Put the single person discount on account "
                  .. case.data.account_ref .. " by hand",
          team = "revenues_systems",
          due = "1 working day",
          form = {
            outcome = { type = "enum", values = { "applied", "try_again" },
                        required = true },
            reference = { type = "string", max = 100 },
          },
          done = "manual_update_done",
        }
      end,
      on = with_notices{
        manual_update_done = {
          internal = true,
          handler = function(case, ev)
            local o = ev.payload.outcome
            if o.outcome == "try_again" then return "updating_account" end
            case.data.ctax_reference = o.reference
            return "awarded"
          end,
        },
      },
    },

    awarded = {
      final = true,
      enter = function(case)
        tell_resident(case, "spd_awarded", {
          discount_from = case.data.discount_from,
          backdated_amount = pounds(case.data.backdated_pence),
        })
      end,
    },

    refused = {
      final = true,
      enter = function(case)
        tell_resident(case, "spd_refused", { reason = case.data.decision_reason })
      end,
    },

    -- The resident did not send evidence in time.
    no_evidence = {
      final = true,
      enter = function(case)
        tell_resident(case, "spd_closed_no_evidence", {
          evidence_needed = case.data.evidence_needed,
        })
      end,
    },

    withdrawn = { final = true },
  },
}
