-- Local test and trace: one contact of a person who tested positive.
--
-- A case of this service is opened by contact_tracing.lua (flow.open)
-- when a tracer records a contact on a contact_tracing case.  Each contact is a case of its own: a
-- different person, with their own isolation dates, their own history and
-- their own subject-access request.  index_case holds the id of the
-- contact_tracing case they came from; that case holds this one's id in
-- its list of contacts.
--
--   (opened) --> isolating --release--> released
--      |            |
--      |            | index_withdrawn (the positive case was raised in
--      |            | error), or raise_in_error by a supervisor
--      |            v
--      |         withdrawn
--      |
--      `-- the isolation period is over already --> isolation_over
--
-- The contact is told by text to isolate until the end of the 10th day
-- after the last contact, and a tracer calls them once.

-- The rules a council is most likely to change.  ---------------------------

local ISOLATION_DAYS = 10    -- full days after the last contact
local CALL_DUE = "24h"       -- the tracers' call to the contact
local RELEASE_TIME = "09:00" -- London time, the day after the last day

-- Small helpers.  -----------------------------------------------------------

local function given(value)
  return value ~= nil and value ~= ""
end

-- A date plus some days, as in contact_tracing.lua (a service is one
-- file, so the line is copied); a London time of day on a date is
-- flow.local_time(date, "09:00").
local function add_days(date, days)
  return flow.date(flow.add(days .. "d", date .. "T12:00:00Z"))
end

local function last_day(case)
  return add_days(case.data.last_contact, ISOLATION_DAYS)
end

local function text(case, template, personalisation)
  if given(case.data.phone) then
    flow.call("notify.sms", {
      to = case.data.phone,
      template = template,
      personalisation = personalisation or {},
    }, { retry = { max = 3, backoff = "5m" }, timeout = "10m" })
  end
end

-- The positive case was raised in error, or a supervisor closes this
-- one: the contact no longer needs to isolate.
local function withdraw(case, ev)
  case.data.withdrawn_reason = ev.payload.reason
  text(case, "contact_isolation_cancelled")
end

return {
  name = "trace_contact",
  version = 1,
  title = "Local test and trace, a contact",

  fields = {
    index_case = { type = "string", required = true, pattern = "^%d+$",
                   max = 20, index = true },
    contact_no = { type = "integer", required = true, min = 1, max = 50 },
    name = { type = "string", required = true, max = 100, pii = true },
    phone = { type = "string", pattern = "^%+?[%d ]+$", max = 20,
              pii = true },
    -- Being a contact of a positive case is health data too.
    last_contact = { type = "date", required = true, pii = true },
    household = { type = "boolean" },
    isolation_until = { type = "date" },     -- the last day of isolation
    call = { type = "enum", values = { "reached", "no_answer",
                                       "wrong_number" } },
    withdrawn_reason = { type = "string", max = 500 },
  },

  validate = function(data)
    if data.last_contact > flow.date() then
      return { last_contact = "cannot be after today" }
    end
  end,

  -- A contact named too late to matter needs no isolation at all.
  initial = function(case)
    if last_day(case) < flow.date() then return "isolation_over" end
    return "isolating"
  end,

  states = {
    isolating = {
      title = "Isolating",
      enter = function(case)
        case.data.isolation_until = last_day(case)
        text(case, "contact_isolation_advice",
             { last_day = case.data.isolation_until })
        flow.task{
          name = "call_contact",
          title = "Call contact " .. case.data.contact_no .. " of case "
                  .. case.data.index_case .. " with isolation advice",
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
        flow.at(flow.local_time(add_days(case.data.isolation_until, 1),
                            RELEASE_TIME), "release")
      end,
      on = {
        call_done = {
          internal = true,
          handler = function(case, ev)
            case.data.call = ev.payload.outcome.outcome
          end,
        },
        release = {
          internal = true,
          handler = function(case)
            text(case, "contact_isolation_ended",
                 { last_day = case.data.isolation_until })
            return "released"
          end,
        },
        -- Sent by the host (as the engine's own actor, role "system")
        -- when contact_tracing asks for it with "cases.signal".
        -- Sent by the positive case (flow.signal: roles are not asked of
        -- it), or by the host as its system actor; never by a person.
        index_withdrawn = { to = "withdrawn", roles = { "system" },
                            handler = withdraw },
        raise_in_error = {
          to = "withdrawn",
          roles = { "supervisor" },
          handler = function(case, ev)
            if not given(ev.payload.reason) then
              flow.fail('say why the contact was raised in error, for '
                        .. 'example {"reason": "not a real contact"}')
            end
            withdraw(case, ev)
          end,
        },
      },
    },

    released = { final = true, title = "Isolation over" },
    withdrawn = { final = true, title = "No longer a contact" },
    isolation_over = { final = true, title = "Named after the isolation "
                                              .. "period ended" },
  },
}
