-- Report a missed bin collection (the full version a waste team runs).
--
-- A resident (or the contact centre for them) tells us a bin was not
-- emptied.  The service:
--
--   1. looks the property up by its UPRN in the council's address system,
--      which also says which collection round and crew serve it;
--   2. gives the crew a task to go back and empty the bin;
--   3. escalates the case to a supervisor if the bin is still not emptied
--      2 working days later, or if the crew could not get to it;
--   4. keeps the resident told by text message (or by email, if they gave
--      an email address and no phone number) at every step.
--
-- A second report of the same bin at the same address, while the first is
-- still open and less than a week old, is not a new case: it is added to
-- the open one (see "Reports of a bin we already know about" below).
--
-- The states, and what moves a case between them (missed_bin_report.svg
-- draws the same):
--
--   looking_up     --address found-----------------------> with_crew
--   looking_up     --lookup tried 3 times, no answer,----> needs_address
--                    or an answer with no address or crew
--   looking_up     --no such property--------------------> rejected
--   needs_address  --office finds the address------------> with_crew
--   needs_address  --office: not a property--------------> rejected
--   with_crew      --crew: collected, or not put out-----> closed
--   with_crew      --crew: cannot access-----------------> escalated
--   with_crew      --2 working days, still not emptied---> escalated
--   with_crew      --escalate (supervisor)---------------> escalated
--   escalated      --reassign (supervisor)---------------> with_crew
--   needs_address, with_crew, escalated --close (supervisor)--> closed
--
-- Try it from the shell:
--
--   flow check examples/services/waste/missed_bin/missed_bin_report.lua
--   flow test --coverage examples/services/waste/missed_bin/
--   flow graph examples/services/waste/missed_bin/missed_bin_report.lua

-- ---------------------------------------------------------------------
-- Settings a council is most likely to change
-- ---------------------------------------------------------------------

-- How many times we try the address lookup, and how long each try may
-- take before we give up on it and try again.
local LOOKUP_TRIES = 3
local LOOKUP_TIMEOUT = "30s"

-- How long a second report of the same bin is added to the open case
-- instead of opening a new one.
local REPEAT_WINDOW = "7d"

-- Texts and emails: the host maps the template names below to GOV.UK
-- Notify template ids.  A text the gateway cannot send is tried again
-- this many times, 5 minutes apart at first, then longer.
local NOTIFY_RETRIES = 3

-- The team that finds an address by hand when the lookup cannot.
local OFFICE_TEAM = "waste_office"

-- ---------------------------------------------------------------------
-- Small helpers used by several states
-- ---------------------------------------------------------------------

-- A value counts as given when it is there and not empty text.
local function given(value)
  return value ~= nil and value ~= ""
end

-- The same checks as the phone and email fields below, for numbers and
-- addresses that arrive in a repeat report (which is not a case of its
-- own, so the field checks do not see them).
local PHONE_PATTERN = "^%+?[%d ]+$"
local EMAIL_PATTERN = "^[^%s@]+@[^%s@]+%.[^%s@]+$"

local function looks_like_phone(text)
  return type(text) == "string" and #text >= 10 and #text <= 20
         and text:find(PHONE_PATTERN) ~= nil
end

local function looks_like_email(text)
  return type(text) == "string" and #text <= 254
         and text:find(EMAIL_PATTERN) ~= nil
end

-- Tells someone what is happening: a text message if we have a phone
-- number, otherwise an email if we have an email address, otherwise
-- nothing.  `template` names the GOV.UK Notify template; `details` are
-- the values the template fills in.  (The options of flow.call are
-- written out in each call: a table of options kept in a variable at the
-- top of the script is not read by this version of the engine.)
local function tell(phone, email, template, details)
  if given(phone) then
    flow.call("notify.sms", {
      to = phone, template = template, personalisation = details,
    }, { retry = { max = NOTIFY_RETRIES, backoff = "5m" } })
  elseif given(email) then
    flow.call("notify.email", {
      email_address = email, template = template, personalisation = details,
    }, { retry = { max = NOTIFY_RETRIES, backoff = "5m" } })
  end
end

-- Tells the resident who reported the bin.  Every message carries the
-- case reference and the bin.
local function tell_resident(case, template, extra)
  local details = { reference = case.id, bin = case.data.bin }
  for k, v in pairs(extra or {}) do details[k] = v end
  tell(case.data.phone, case.data.email, template, details)
end

-- Supervisors must say why they step in: it goes in the case's record.
local function reason_from(ev, example)
  local reason = ev.payload.reason
  if not given(reason) then
    flow.fail("say why, for example " .. example)
  end
  return reason
end

-- ---------------------------------------------------------------------
-- Reports of a bin we already know about
-- ---------------------------------------------------------------------
--
-- Each case holds a "repeat key" made of the UPRN and the bin
-- ("100023336956/refuse") for its first week.  While it does, the engine
-- refuses to open a second case with the same key (FLOW_ECONFLICT), and
-- the host sends the new report to the open case instead, as the message
-- repeat_report with that key:
--
--   flow send repeat_report 100023336956/refuse '{"phone": "07700 900456"}'
--
-- After a week the key is dropped, and closing a case drops it too, so a
-- later report of the same bin opens a new case.

-- A repeat report arrives: count it, keep its notes, and tell whoever
-- sent it that we already have it in hand.
local function link_repeat_report(case, ev)
  local report = ev.payload
  case.data.repeat_reports = (case.data.repeat_reports or 0) + 1
  case.data.last_repeat_at = ev.at
  local repeats = case.data.repeats or flow.list()
  if #repeats < 50 then
    repeats[#repeats + 1] = {
      at = ev.at,
      reported_by = report.reported_by,
      notes = type(report.notes) == "string" and report.notes:sub(1, 500)
              or nil,
    }
  end
  case.data.repeats = repeats
  local phone = looks_like_phone(report.phone) and report.phone or nil
  local email = looks_like_email(report.email) and report.email or nil
  tell(phone, email, "bin_already_reported",
       { reference = case.id, bin = case.data.bin })
end

-- A week after the report: let go of the repeat key, so that the next
-- report of this bin opens a new case.
local function end_repeat_window(case)
  case.data.repeat_key = nil
end

-- ---------------------------------------------------------------------
-- What happens when the crew reports back
-- ---------------------------------------------------------------------

local function crew_reported(case, ev)
  local report = ev.payload.outcome
  case.data.crew_note = report.note
  if report.outcome == "collected" then
    case.data.resolution = "collected"
    case.data.collected_at = ev.at
    case.data.collected_by = ev.payload.by
    tell_resident(case, "bin_collected", { address = case.data.address })
    return "closed"
  elseif report.outcome == "not_put_out" then
    -- The bin was not out for collection: we do not go back again.  The
    -- resident is told to put it out on their next collection day.
    case.data.resolution = "not_put_out"
    tell_resident(case, "bin_not_put_out", { address = case.data.address })
    return "closed"
  else
    -- cannot_access: a blocked road, a locked gate.  A supervisor decides
    -- what to do next.
    case.data.escalation_reason = "cannot_access"
    return "escalated"
  end
end

-- A supervisor closes the case, whatever state it is in.
local function supervisor_close(case, ev)
  case.data.supervisor_note = reason_from(ev,
    '{"reason": "collected by the street cleansing team"}')
  case.data.overridden_by = ev.actor.id
  case.data.resolution = "closed_by_supervisor"
  tell_resident(case, "bin_report_closed")
  return "closed"
end

return {
  name = "missed_bin_report",
  version = 1,
  title = "Report a missed bin collection",

  fields = {
    -- What the resident tells us.
    -- The Unique Property Reference Number: digits only, at most 12.
    uprn = { type = "string", required = true, pattern = "^%d+$", max = 12,
             index = true, title = "UPRN" },
    bin = { type = "enum", values = { "refuse", "recycling", "garden", "food" },
            required = true, index = true },
    -- Personal data is marked pii so that exports and retention find it.
    phone = { type = "string", pii = true, pattern = PHONE_PATTERN,
              min = 10, max = 20 },
    email = { type = "string", pii = true, pattern = EMAIL_PATTERN, max = 254 },
    reported_by = { type = "enum",
                    values = { "resident", "contact_centre", "crew", "councillor" } },
    notes = { type = "string", pii = true, max = 500 },

    -- Filled in by the service.
    repeat_key = { type = "string", max = 40 },     -- uprn/bin, for a week
    address = { type = "string", max = 150 },       -- from the lookup
    round = { type = "string", max = 40, index = true },
    crew = { type = "string", max = 40, index = true },
    lookup_error = { type = "string", max = 200 },
    crew_note = { type = "string", max = 200 },
    collected_at = { type = "datetime" },
    collected_by = { type = "string", max = 100 },
    escalation_reason = { type = "enum",
                          values = { "not_collected_in_time", "cannot_access",
                                     "supervisor" } },
    supervisor_note = { type = "string", max = 200 },
    overridden_by = { type = "string", max = 100 },
    resolution = { type = "enum",
                   values = { "collected", "not_put_out", "unknown_uprn",
                              "closed_by_supervisor" } },
    -- Repeat reports of the same bin: how many, when the last came, and
    -- what each said (its notes may hold personal data).
    repeat_reports = { type = "integer", min = 0 },
    last_repeat_at = { type = "datetime" },
    repeats = { type = "list", pii = true, max = 50 },
  },

  -- A repeat report reaches the open case whose repeat_key it names.
  correlate = { repeat_report = "repeat_key" },

  initial = "looking_up",

  -- We promise to deal with a missed bin within 4 working days, and the
  -- host is warned after 3.
  sla = { within = "4 working days", warn = "3 working days" },

  states = {
    -- Finding the property: address, round and crew.
    looking_up = {
      enter = function(case)
        case.data.repeat_key = case.data.uprn .. "/" .. case.data.bin
        flow.after(REPEAT_WINDOW, "repeat_window_over", nil, { keep = true })
        tell_resident(case, "bin_reported")
        flow.call("address.lookup", { uprn = case.data.uprn }, {
          reply = "address_found",
          fail = "lookup_failed",
          retry = { max = LOOKUP_TRIES - 1, backoff = "1m" },
          timeout = LOOKUP_TIMEOUT,
        })
      end,
      on = {
        -- The address system answered:
        -- { "address": "12 High Street", "round": "TUE-4", "crew": "north-2" }
        address_found = {
          internal = true,
          handler = function(case, ev)
            local found = ev.payload
            if not (given(found.address) and given(found.crew)) then
              -- An answer we cannot use: someone in the office looks.
              case.data.lookup_error = "the lookup gave no address or crew"
              return "needs_address"
            end
            case.data.address = found.address
            case.data.round = found.round
            case.data.crew = found.crew
            return "with_crew"
          end,
        },
        -- The lookup failed for good.  If it gave up before using all its
        -- tries, the address system said "no such property" (it was not
        -- worth trying again): the report is rejected.  If every try
        -- failed (no answer in time, or the system was down), someone in
        -- the office looks the address up by hand.
        lookup_failed = {
          internal = true,
          handler = function(case, ev)
            case.data.lookup_error = ev.payload.error:sub(1, 200)
            if ev.payload.attempts < LOOKUP_TRIES then
              case.data.resolution = "unknown_uprn"
              tell_resident(case, "bin_report_rejected",
                            { uprn = case.data.uprn })
              return "rejected"
            end
            return "needs_address"
          end,
        },
        repeat_report = { internal = true, handler = link_repeat_report },
        repeat_window_over = { internal = true, handler = end_repeat_window },
      },
    },

    -- The lookup did not answer: the office finds the address by hand.
    needs_address = {
      enter = function(case)
        flow.task{
          name = "find_address",
          title = "Find the address, round and crew for UPRN " .. case.data.uprn,
          team = OFFICE_TEAM,
          due = "1 working day",
          form = {
            outcome = { type = "enum", values = { "found", "not_a_property" },
                        required = true },
            address = { type = "string", max = 150 },
            round = { type = "string", max = 40 },
            crew = { type = "string", max = 40 },
          },
          done = "address_checked",
        }
      end,
      on = {
        address_checked = {
          internal = true,
          handler = function(case, ev)
            local found = ev.payload.outcome
            if found.outcome == "not_a_property" then
              case.data.resolution = "unknown_uprn"
              tell_resident(case, "bin_report_rejected",
                            { uprn = case.data.uprn })
              return "rejected"
            end
            -- Refusing here refuses the task's completion: the person
            -- filling in the form sees this message and tries again.
            if not (given(found.address) and given(found.crew)) then
              flow.fail("give the address and the crew, or say it is not a property")
            end
            case.data.address = found.address
            case.data.round = found.round
            case.data.crew = found.crew
            return "with_crew"
          end,
        },
        close = { roles = { "supervisor" }, handler = supervisor_close },
        repeat_report = { internal = true, handler = link_repeat_report },
        repeat_window_over = { internal = true, handler = end_repeat_window },
      },
    },

    -- The crew has the job.  They get a task to go back and empty the bin
    -- within the working day, and the resident is told it is booked.
    with_crew = {
      enter = function(case)
        flow.task{
          name = "collect",
          title = "Empty the missed " .. case.data.bin .. " bin at "
                  .. case.data.address,
          team = case.data.crew,
          due = "1 working day",
          form = {
            outcome = { type = "enum",
                        values = { "collected", "cannot_access", "not_put_out" },
                        required = true },
            note = { type = "string", max = 200 },
          },
          done = "crew_reported",
        }
        tell_resident(case, "bin_crew_booked", { address = case.data.address })
      end,
      -- Still not emptied 2 working days later: a supervisor takes over.
      -- Leaving the state cancels this timer and the crew's task.
      after = { ["2 working days"] = { event = "not_collected_in_time" } },
      on = {
        crew_reported = { internal = true, handler = crew_reported },
        not_collected_in_time = {
          internal = true,
          handler = function(case)
            case.data.escalation_reason = "not_collected_in_time"
            return "escalated"
          end,
        },
        -- A supervisor takes the case over before the 2 days are up:
        -- {"reason": "crew off sick"}.
        escalate = {
          roles = { "supervisor" },
          handler = function(case, ev)
            case.data.supervisor_note = reason_from(ev, '{"reason": "crew off sick"}')
            case.data.overridden_by = ev.actor.id
            case.data.escalation_reason = "supervisor"
            return "escalated"
          end,
        },
        close = { roles = { "supervisor" }, handler = supervisor_close },
        repeat_report = { internal = true, handler = link_repeat_report },
        repeat_window_over = { internal = true, handler = end_repeat_window },
      },
    },

    -- A supervisor's queue (flow list --state escalated): send a crew
    -- again, or close the case.
    escalated = {
      enter = function(case)
        tell_resident(case, "bin_escalated")
      end,
      on = {
        -- {"crew": "north-3", "reason": "north-2 cannot get down the lane"}
        reassign = {
          roles = { "supervisor" },
          handler = function(case, ev)
            local crew = ev.payload.crew
            if not given(crew) then
              flow.fail('say which crew, for example {"crew": "north-3", '
                        .. '"reason": "the lane is blocked for north-2"}')
            end
            case.data.supervisor_note = reason_from(ev,
              '{"crew": "north-3", "reason": "the lane is blocked for north-2"}')
            case.data.overridden_by = ev.actor.id
            case.data.crew = crew
            return "with_crew"
          end,
        },
        close = { roles = { "supervisor" }, handler = supervisor_close },
        repeat_report = { internal = true, handler = link_repeat_report },
        repeat_window_over = { internal = true, handler = end_repeat_window },
      },
    },

    -- Finished: emptied, not put out, or closed by a supervisor
    -- (resolution says which).
    closed = { final = true },
    -- No such property: the report could not be acted on.
    rejected = { final = true },
  },
}
