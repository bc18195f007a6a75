-- Report a missed bin collection.
--
-- A resident tells us their bin was not emptied.  The case is "reported"
-- until someone assigns a crew to it; the crew is told (by text message, if
-- the resident gave a phone number), books a day to go back, and closes the
-- case once the bin is emptied.  If nobody assigns a crew within 2 working
-- days the case escalates to a supervisor on its own, and if the crew cannot
-- get to the bin they escalate it themselves.
--
--   reported --assign--> assigned --schedule--> scheduled --collect--> closed
--      |                  |    |                      |
--      |                  |    `--collect--> closed   |
--      |                  |                           |
--      | after 2 working  | cannot_access             | cannot_access
--      | days             | (crew only)               | (crew only)
--      v                  v                           v
--   escalated --collect (supervisor only)--> closed
--
-- Try it from the shell (see docs/authoring.md for a walk-through):
--
--   flow check examples/services/missed_bin.lua
--   flow load  examples/services/missed_bin.lua
--   flow open  missed_bin '{"uprn":"100023336956","address":"12 High Street","bin":"refuse"}'
--   flow signal 1 assign '{"crew":"north-2"}'

-- A value counts as given when it is there and not empty text.  (Anything
-- sent as JSON null arrives as nil, like a key that was left out.)
local function given(value)
  return value ~= nil and value ~= ""
end

return {
  -- The name is how the service is known everywhere: `flow open missed_bin`.
  -- Lower-case letters, digits and underscores, starting with a letter.
  name = "missed_bin",

  -- Bump the version whenever you change the script.  Cases already open
  -- keep running on the version they were opened with.
  version = 1,

  title = "Report a missed bin collection",

  -- What a case holds (case.data).  Anything else is refused, so a typo
  -- such as case.data.crw is caught instead of silently stored.
  fields = {
    -- The Unique Property Reference Number: digits only, at most 12.
    uprn = { type = "string", required = true, pattern = "^%d+$", max = 12,
             index = true },
    address = { type = "string", required = true, max = 200 },
    bin = { type = "enum", values = { "refuse", "recycling", "garden" },
            required = true, index = true },
    -- Personal data is marked pii so that exports and retention can find it.
    phone = { type = "string", pii = true, pattern = "^%+?[%d ]+$", max = 20 },
    reported_by = { type = "enum", values = { "citizen", "crew", "staff" } },
    -- An assisted collection: the crew fetches the bin from the property
    -- for a resident who cannot put it out.
    assisted = { type = "boolean" },
    -- Filled in as the case moves on.
    crew = { type = "string", max = 40, index = true },
    scheduled_for = { type = "date" },       -- YYYY-MM-DD
    collected = { type = "boolean" },
  },

  -- Every new case starts here.
  initial = "reported",

  -- The service level we promise: case.due_at is set when a case opens.
  -- A resident on assisted collections is not left without a bin for
  -- long: the next working day.
  sla = {
    within = function(case)
      if case.data.assisted then return "1 working day" end
      return "5 working days"
    end,
  },

  states = {
    reported = {
      -- Nobody has picked the case up in 2 working days: escalate it.
      -- This timer is cancelled as soon as the case leaves "reported".
      after = { ["2 working days"] = "escalated" },
      on = {
        -- A supervisor assigns a crew: flow signal 1 assign '{"crew":"north-2"}'
        -- A handler gets the case (case.data is its data, which it may
        -- change) and the event (ev.payload is what the sender gave), and
        -- returns the state to go to.  If it fails, nothing is changed.
        assign = function(case, ev)
          local crew = ev.payload.crew
          if not given(crew) then
            flow.fail("say which crew to assign, for example "
                      .. '{"crew": "north-2"}')
          end
          case.data.crew = crew
          flow.log("case " .. case.id .. " assigned to crew " .. tostring(crew))
          return "assigned"
        end,
      },
    },

    assigned = {
      -- Runs every time a case arrives in "assigned".  flow.call asks the
      -- host to send a text message after the change is saved; it is only
      -- sent if the resident gave a phone number.
      enter = function(case)
        if given(case.data.phone) then
          flow.call("notify.sms", {
            to = case.data.phone,
            template = "bin_assigned",
            personalisation = { address = case.data.address,
                                crew = case.data.crew },
          })
        end
      end,
      on = {
        -- The crew books a day to go back: '{"date": "2026-12-02"}'.
        schedule = function(case, ev)
          if not given(ev.payload.date) then
            flow.fail("say which day the crew will go back, for example "
                      .. '{"date": "2026-12-02"}')
          end
          case.data.scheduled_for = ev.payload.date   -- checked as a date
          return "scheduled"
        end,
        -- The crew went back straight away, without booking a day.
        collect = function(case)
          case.data.collected = true
          return "closed"
        end,
        -- Only someone with the "crew" role may say they could not get in.
        cannot_access = { to = "escalated", roles = { "crew" } },
      },
    },

    scheduled = {
      on = {
        collect = function(case)
          case.data.collected = true
          return "closed"
        end,
        cannot_access = { to = "escalated", roles = { "crew" } },
      },
    },

    -- A supervisor has to sort it out, and only a supervisor can close it.
    -- The table form names the roles and the next state (`to`); its
    -- handler only records the collection, so it returns nothing and the
    -- case goes where `to` says.
    escalated = {
      on = {
        collect = {
          to = "closed",
          roles = { "supervisor" },
          handler = function(case)
            case.data.collected = true
          end,
        },
      },
    },

    -- A final state: the case is closed and accepts no more events.
    closed = { final = true },
  },
}
