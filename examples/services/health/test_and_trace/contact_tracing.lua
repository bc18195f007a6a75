-- Local test and trace: the council's own contact tracing for a person
-- who has tested positive for COVID-19.
--
-- A case opens when the laboratory's result arrives: the message
-- test_result, keyed by the test's barcode, carrying the person's details
-- as the national system hands them on.  If the booking system opened a
-- case when the test was registered, the result goes to that case
-- instead.  A positive result starts the trace:
--
--   awaiting_result --positive--> calling ---reached---> interview
--     |      |                      |                     |    ^
--     |      | negative             | 3 calls unanswered, |    |
--     |      | or void              | a wrong number,     |    | reached
--     |      v                      | or 24 hours         |    |
--     |   not_positive              v                     |    |
--     |                          visiting ----------------+----'
--     | after 5 days                |                     |
--     v                             | nobody there        | finish_interview
--   no_result                       v                     | (or by itself
--                               unreachable               |  after 12 hours)
--                                                         v
--                        a check-in text each day:    isolating --release--> released
--
--   From any open state a supervisor can close a case raised in error
--   (raise_in_error --> withdrawn).
--
-- Each contact the person names becomes a case of its own, of the service
-- trace_contact (trace_contact.lua, in this folder), opened by this
-- script with flow.open in the same step; the two cases are linked by ids
-- in their data (contacts[n].case_id here, index_case there).

-- Try it from the shell (from the repository's top folder):
--
--   flow check examples/services/health/test_and_trace/contact_tracing.lua
--   flow test --coverage examples/services/health/test_and_trace/

-- The rules a council is most likely to change.  ---------------------------

local MAX_CALLS = 3          -- phone calls before a doorstep visit...
local CALL_WINDOW = "24h"    -- ...or this long after the positive result
local CALL_DUE = "4h"        -- each call attempt is due this soon
local VISIT_DUE = "24h"      -- the visits team works seven days a week
local WELFARE_DUE = "1 working day"
local RESULT_WAIT = "5d"     -- no result by then: ask for another test
local INTERVIEW_LIMIT = "12h" -- an interview left open is finished for the tracer
local ISOLATION_DAYS = 10    -- full days after symptom onset (or the test)
local CHECK_IN_TIME = "10:00" -- London time of each day's check-in text
local RELEASE_TIME = "09:00" -- London time, the day after the last day
-- Reached and interviewed within 48 hours of the positive result.
local SERVICE_LEVEL = { within = "48h", warn = "36h" }

-- Small helpers.  -----------------------------------------------------------

-- A value counts as given when it is there and not empty text.
local function given(value)
  return value ~= nil and value ~= ""
end

-- Dates.  flow.date() is today's date in London, flow.add a moment some
-- time after another.  A date plus some days counts from the middle of
-- the date (noon UTC is the same date in London, winter and summer).
local function add_days(date, days)
  return flow.date(flow.add(days .. "d", date .. "T12:00:00Z"))
end

-- A London time of day on a date, as flow.at wants it, is
-- flow.local_time(date, "10:00"): 09:00Z in summer, 10:00Z in winter.

-- Text messages, through GOV.UK Notify.  Only when there is a phone
-- number; tried again for up to about 40 minutes if the gateway is busy.
-- A text that finally fails is an incident on the case for staff to see.
local function text(case, template, personalisation)
  if given(case.data.phone) then
    flow.call("notify.sms", {
      to = case.data.phone,
      template = template,
      personalisation = personalisation or {},
    }, { retry = { max = 3, backoff = "5m" }, timeout = "10m" })
  end
end

-- The tasks people are given.  ----------------------------------------------

local function call_task(case)
  local attempt = (case.data.calls_made or 0) + 1
  flow.task{
    name = "call",
    title = "Call about test " .. case.data.barcode .. " (attempt "
            .. attempt .. " of " .. MAX_CALLS .. ")",
    team = "tracers",
    due = CALL_DUE,
    form = {
      outcome = { type = "enum", values = { "reached", "no_answer",
                                            "wrong_number" },
                  required = true },
      note = { type = "string", max = 500 },
    },
    done = "call_done",
  }
end

local function visit_task(case)
  flow.task{
    name = "visit",
    title = "Doorstep visit: " .. case.data.address .. ", "
            .. case.data.postcode,
    team = "visits",
    due = VISIT_DUE,
    form = {
      outcome = { type = "enum", values = { "reached", "no_one_home",
                                            "wrong_address" },
                  required = true },
      note = { type = "string", max = 500 },
    },
    done = "visit_done",
  }
end

-- The events of the interview, which a tracer sends while (or after)
-- talking to the person.  Several states take them, so they are written
-- once here.  ------------------------------------------------------------

-- {"symptomatic": true, "onset": "2026-01-31", "symptoms": "cough"}
-- or {"symptomatic": false}.
local function record_symptoms(case, ev)
  local p = ev.payload
  if type(p.symptomatic) ~= "boolean" then
    flow.fail('say whether the person has symptoms, for example '
              .. '{"symptomatic": true, "onset": "2026-01-31", '
              .. '"symptoms": "cough, fever"} or {"symptomatic": false}')
  end
  if p.symptomatic and not given(p.onset) then
    flow.fail('say the day the symptoms started, for example '
              .. '{"symptomatic": true, "onset": "2026-01-31"}')
  end
  -- (A date that is not a date is refused by the field check.)
  if type(p.onset) == "string" and p.onset:find("^%d%d%d%d%-%d%d%-%d%d$")
     and p.onset > flow.date() then
    flow.fail("the symptoms cannot start after today (" .. flow.date()
              .. ")")
  end
  case.data.symptomatic = p.symptomatic
  if p.symptomatic then
    case.data.symptom_onset = p.onset      -- checked as a date
    case.data.symptoms = p.symptoms
  else
    case.data.symptom_onset = nil
    case.data.symptoms = nil
  end
end

-- {"name": "Sam Jones", "phone": "07700 900456", "last_contact":
-- "2026-02-01", "household": true}.  The contact is kept in the list
-- `contacts` (checked by `validate` below), and a trace_contact case is
-- opened for them with this step: flow.open gives its id at once.  If
-- that case cannot open (its data is refused), the tracer's add_contact
-- is refused with the reason, and nothing is recorded.
-- What is wrong with a contact's details, or nil.
local function contact_problem(c)
  if type(c.name) ~= "string" or c.name == "" or #c.name > 100 then
    return "give the contact's name (at most 100 characters)"
  elseif c.phone ~= nil and (type(c.phone) ~= "string"
                             or not c.phone:find("^%+?[%d ]+$")
                             or #c.phone > 20) then
    return "the phone number must be digits and spaces"
  elseif type(c.last_contact) ~= "string"
         or not c.last_contact:find("^%d%d%d%d%-%d%d%-%d%d$") then
    return 'give the day of last contact, like "2026-02-01"'
  elseif c.last_contact > flow.date() then
    return "the last contact cannot be after today"
  elseif c.household ~= nil and type(c.household) ~= "boolean" then
    return "household must be true or false"
  end
end

local function add_contact(case, ev)
  local p = ev.payload
  local contacts = case.data.contacts or flow.list()
  local n = #contacts + 1
  contacts[n] = { no = n, name = p.name, phone = p.phone,
                  last_contact = p.last_contact, household = p.household }
  case.data.contacts = contacts
  -- Details that make no sense are refused by `validate`, naming the
  -- contact by number; only good ones get a case.
  if contact_problem(contacts[n]) == nil then
    contacts[n].case_id = flow.open("trace_contact", {
      index_case = case.id, contact_no = n, name = p.name, phone = p.phone,
      last_contact = p.last_contact, household = p.household,
    })
  end
end

-- {"needs": ["food", "medicine"], "note": "..."}: a task for the welfare
-- team.  It is kept when the case moves on from the interview.
local NEEDS = { food = true, medicine = true, money = true,
                wellbeing = true, other = true }

local function refer_welfare(case, ev)
  local needs = ev.payload.needs
  if type(needs) ~= "table" or #needs == 0 then
    flow.fail('say what support is needed, for example '
              .. '{"needs": ["food", "medicine"]}')
  end
  for _, need in ipairs(needs) do
    if not NEEDS[need] then
      flow.fail("'" .. tostring(need) .. "' is not a kind of support we "
                .. "refer for (food, medicine, money, wellbeing, other)")
    end
  end
  case.data.welfare_needs = needs
  flow.task{
    name = "welfare",
    title = "Welfare support (" .. table.concat(needs, ", ")
            .. ") for test " .. case.data.barcode,
    team = "welfare",
    due = WELFARE_DUE,
    form = {
      outcome = { type = "enum", values = { "support_arranged", "declined",
                                            "could_not_contact" },
                  required = true },
      note = { type = "string", max = 500 },
    },
    done = "welfare_done",
    keep = true,
  }
end

local function welfare_done(case, ev)
  case.data.welfare_outcome = ev.payload.outcome.outcome
end

-- A second result for the same barcode.  The same result again (the lab
-- sent it twice) is counted and otherwise ignored; a different one is
-- refused, which makes it an incident for a supervisor to check with the
-- lab.
local function repeated_result(case, ev)
  if ev.payload.result ~= case.data.result then
    flow.fail("test " .. case.data.barcode .. " was " .. case.data.result
              .. " already, and now a '" .. tostring(ev.payload.result)
              .. "' result came: check with the lab")
  end
  case.data.duplicate_results = (case.data.duplicate_results or 0) + 1
end

-- A supervisor closes a case raised in error: {"reason": "..."}.  The
-- contacts' cases are told too, so they can stop isolating.
local function raise_in_error(case, ev)
  local reason = ev.payload.reason
  if not given(reason) then
    flow.fail('say why the case was raised in error, for example '
              .. '{"reason": "the lab mixed up two barcodes"}')
  end
  case.data.withdrawn_reason = reason
  -- Each contact's case hears it once this step is written (a contact
  -- whose case has closed already needs nothing).
  for _, contact in ipairs(case.data.contacts or {}) do
    if contact.case_id then
      flow.signal(contact.case_id, "index_withdrawn",
                  { index_case = case.id, reason = reason })
    end
  end
  return "withdrawn"
end

local SUPERVISOR_CLOSES = { roles = { "supervisor" }, handler = raise_in_error }
local SAME_RESULT_AGAIN = { internal = true, handler = repeated_result }

-- The end of the interview: work out the isolation period, tell the
-- person, and set a check-in text for each day and the release.
local function finish_interview(case)
  local first_day = case.data.test_date
  if case.data.symptomatic then first_day = case.data.symptom_onset end
  local last_day = add_days(first_day, ISOLATION_DAYS)
  case.data.isolation_from = first_day
  case.data.isolation_until = last_day
  -- The service level (reach and interview the person) is met: stop its
  -- clock, so that no breach comes while the person isolates.
  flow.sla.pause("interviewed")
  local today = flow.date()
  if last_day < today then
    -- Traced late: the isolation period is over already.
    text(case, "isolation_already_over", { last_day = last_day })
    return "released"
  end
  text(case, "isolation_advice", { last_day = last_day })
  local day = add_days(today, 1)
  while day <= last_day do
    flow.at(flow.local_time(day, CHECK_IN_TIME), "check_in", { date = day })
    day = add_days(day, 1)
  end
  flow.at(flow.local_time(add_days(last_day, 1), RELEASE_TIME), "release")
  return "isolating"
end

return {
  name = "contact_tracing",
  version = 1,
  title = "Local test and trace",

  fields = {
    -- From the test's registration.
    barcode = { type = "string", required = true, pattern = "^%u%u%u%d+$",
                max = 20, index = true },
    name = { type = "string", required = true, max = 100, pii = true },
    phone = { type = "string", pattern = "^%+?[%d ]+$", max = 20,
              pii = true },
    address = { type = "string", required = true, max = 200, pii = true },
    postcode = { type = "string", required = true,
                 pattern = "^%u%u?%d[%u%d]? ?%d%u%u$", pii = true },
    date_of_birth = { type = "date", pii = true },
    -- From the lab's result.  Health data is personal data too.
    result = { type = "enum", values = { "positive", "negative", "void" },
               pii = true },
    test_date = { type = "date", pii = true },
    duplicate_results = { type = "integer", min = 1 },
    -- Reaching the person.
    calls_made = { type = "integer", min = 0, max = MAX_CALLS },
    last_call = { type = "enum",
                  values = { "reached", "no_answer", "wrong_number" } },
    visit = { type = "enum",
              values = { "reached", "no_one_home", "wrong_address" } },
    -- The interview.
    symptomatic = { type = "boolean", pii = true },
    symptom_onset = { type = "date", pii = true },
    symptoms = { type = "string", max = 500, pii = true },
    -- Each contact: { no, name, phone, last_contact, household, case_id }.
    contacts = { type = "list", max = 50, pii = true },
    welfare_needs = { type = "list", max = 5, pii = true },
    welfare_outcome = { type = "enum", values = { "support_arranged",
                                                  "declined",
                                                  "could_not_contact" } },
    -- Isolation.
    isolation_from = { type = "date" },
    isolation_until = { type = "date" },      -- the last day of isolation
    check_ins_sent = { type = "integer", min = 0 },
    -- A case closed as raised in error.
    withdrawn_reason = { type = "string", max = 500 },
  },

  -- Each contact in the list must make sense.  (A field of type list
  -- cannot say what its items hold, so this says it.)
  validate = function(data)
    for i, c in ipairs(data.contacts or {}) do
      local why = contact_problem(c)
      if why then
        return { contacts = "contact " .. i .. ": " .. why }
      end
    end
  end,

  -- The lab's result message names the case by the test's barcode, and
  -- opens one when no case has that barcode yet (its payload's values
  -- for these fields become the case's data).
  correlate = { test_result = { field = "barcode", opens = true } },

  initial = "awaiting_result",

  states = {
    awaiting_result = {
      title = "Waiting for the lab",
      after = { [RESULT_WAIT] = { event = "result_overdue" } },
      on = {
        -- {"result": "positive", "test_date": "2026-02-01"}
        test_result = {
          internal = true,
          handler = function(case, ev)
            if not given(ev.payload.test_date) then
              flow.fail("the result for test " .. case.data.barcode
                        .. " has no test_date")
            end
            case.data.result = ev.payload.result   -- checked as an enum
            case.data.test_date = ev.payload.test_date
            if ev.payload.result ~= "positive" then
              text(case, ev.payload.result .. "_result")
              return "not_positive"
            end
            text(case, "positive_result", { name = case.data.name })
            -- The service level starts now: the person is reached and
            -- interviewed within 48 hours (a warning at 36 hours).
            flow.sla.restart(SERVICE_LEVEL)
            case.data.calls_made = 0
            -- No phone number: straight to a doorstep visit.
            if not given(case.data.phone) then return "visiting" end
            return "calling"
          end,
        },
        result_overdue = {
          internal = true,
          handler = function(case)
            text(case, "no_result", { barcode = case.data.barcode })
            return "no_result"
          end,
        },
        raise_in_error = SUPERVISOR_CLOSES,
      },
    },

    -- Up to MAX_CALLS calls, one task at a time, within CALL_WINDOW of the
    -- positive result; then a doorstep visit.
    calling = {
      title = "Calling the person",
      after = { [CALL_WINDOW] = "visiting" },
      enter = function(case) call_task(case) end,
      on = {
        call_done = {
          internal = true,
          handler = function(case, ev)
            local outcome = ev.payload.outcome.outcome
            case.data.calls_made = case.data.calls_made + 1
            case.data.last_call = outcome
            if outcome == "reached" then return "interview" end
            -- A wrong number will not answer the next time either.
            if outcome == "wrong_number" then return "visiting" end
            if case.data.calls_made >= MAX_CALLS then return "visiting" end
            call_task(case)   -- try again
          end,
        },
        test_result = SAME_RESULT_AGAIN,
        raise_in_error = SUPERVISOR_CLOSES,
      },
    },

    visiting = {
      title = "Doorstep visit",
      enter = function(case) visit_task(case) end,
      on = {
        visit_done = {
          internal = true,
          handler = function(case, ev)
            case.data.visit = ev.payload.outcome.outcome
            if case.data.visit == "reached" then return "interview" end
            return "unreachable"
          end,
        },
        test_result = SAME_RESULT_AGAIN,
        raise_in_error = SUPERVISOR_CLOSES,
      },
    },

    -- A tracer talks to the person: symptoms, contacts, support needed.
    interview = {
      title = "Interview",
      -- Nobody finished it: the isolation period is set from what was
      -- recorded, so the person still gets the texts and the release.
      after = { [INTERVIEW_LIMIT] = { event = "interview_overdue" } },
      on = {
        record_symptoms = { roles = { "tracer" }, handler = record_symptoms },
        add_contact = { roles = { "tracer" }, handler = add_contact },
        refer_welfare = { roles = { "tracer" }, handler = refer_welfare },
        finish_interview = { roles = { "tracer" },
                             handler = finish_interview },
        interview_overdue = { internal = true, handler = finish_interview },
        welfare_done = { internal = true, handler = welfare_done },
        test_result = SAME_RESULT_AGAIN,
        raise_in_error = SUPERVISOR_CLOSES,
      },
    },

    -- The person isolates; a text each day, and the release after the
    -- last day.  Contacts remembered later can still be added.
    isolating = {
      title = "Isolating",
      on = {
        check_in = {
          internal = true,
          handler = function(case, ev)
            case.data.check_ins_sent = (case.data.check_ins_sent or 0) + 1
            if given(case.data.phone) then
              flow.call("notify.sms", {
                to = case.data.phone,
                template = "isolation_check_in",
                personalisation = { date = ev.payload.date,
                                    last_day = case.data.isolation_until },
              }, { retry = { max = 3, backoff = "5m" }, timeout = "10m",
                   fail = "check_in_failed" })
            end
          end,
        },
        -- The text could not be sent: a tracer phones instead.
        check_in_failed = {
          internal = true,
          handler = function(case)
            flow.task{
              name = "check_in_call",
              title = "Phone for today's check-in, test "
                      .. case.data.barcode .. " (the text failed)",
              team = "tracers",
              due = "4h",
              form = {
                outcome = { type = "enum",
                            values = { "well", "unwell", "no_answer" },
                            required = true },
                note = { type = "string", max = 500 },
              },
            }
          end,
        },
        release = {
          internal = true,
          handler = function(case)
            text(case, "isolation_ended",
                 { last_day = case.data.isolation_until })
            return "released"
          end,
        },
        add_contact = { roles = { "tracer" }, handler = add_contact },
        refer_welfare = { roles = { "tracer" }, handler = refer_welfare },
        welfare_done = { internal = true, handler = welfare_done },
        test_result = SAME_RESULT_AGAIN,
        raise_in_error = SUPERVISOR_CLOSES,
      },
    },

    -- The ends of a case.
    not_positive = { final = true, title = "Negative or void result" },
    no_result = { final = true, title = "No result came" },
    unreachable = { final = true, title = "Not reached" },
    released = { final = true, title = "Isolation over" },
    withdrawn = { final = true, title = "Raised in error" },
  },
}
