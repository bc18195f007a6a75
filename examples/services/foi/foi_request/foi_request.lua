-- Freedom of Information request (Freedom of Information Act 2000).
--
-- Anyone may ask the council for information it holds.  The request is
-- acknowledged by email and given to the department that owns the subject
-- (a task for that team).  The council must answer within 20 working days
-- (section 10).  If the request is unclear, the FOI officer asks the
-- requester to clarify and the clock stops until they do; a request nobody
-- clarifies within 60 working days is closed as withdrawn.
--
-- The department's answer records the outcome (granted in full, granted in
-- part, refused, or information not held) and the sections of the Act it
-- relies on ("s40(2)", "s43(2)").  The response goes to the requester and
-- its redacted text to the council's disclosure log.  For 40 working days
-- after the response the requester may ask for an internal review, which a
-- reviewer who did not make the first decision settles within 20 working
-- days.
--
--   with_department --ask_clarification--> awaiting_clarification
--        |   ^                                   |    |
--        |   `------ clarification_received -----'    | after 60 working days,
--        |                                            | or withdraw
--        | response_ready (the department's task)     v
--        v                                         withdrawn
--   responded --request_review--> under_review --review_done--> closed
--        |                                  |                     ^
--        | after 40 working days            `--> republishing ----'
--        v                                      (answer changed:
--      closed                                    publish it again)
--
-- Try it from the shell:
--
--   flow check examples/services/foi/foi_request/foi_request.lua
--   flow load  examples/services/foi/foi_request/foi_request.lua
--   flow open  foi_request '{"requester_name":"Sam Jones",
--     "requester_email":"sam@example.org","reply_by":"email",
--     "topic":"housing","request_text":"How many empty council homes?"}'
--   flow tasks --team housing

-- The sections of the Act a refusal may rely on: the exemptions of Part II
-- (sections 21 to 44; section 25 only supplements 23 and 24), and the two
-- grounds for refusing a request outright, section 12 (it would cost more
-- than the appropriate limit) and section 14 (vexatious or repeated).
-- Sections 34 and 35 apply to Parliament and government departments, not
-- councils, but they are sections of the Act, so they are accepted.
local SECTIONS = {
  s12 = "cost of compliance exceeds the appropriate limit",
  s14 = "vexatious or repeated request",
  s21 = "information accessible by other means",
  s22 = "information intended for future publication",
  s22A = "research",
  s23 = "information supplied by, or relating to, security bodies",
  s24 = "national security",
  s26 = "defence",
  s27 = "international relations",
  s28 = "relations within the United Kingdom",
  s29 = "the economy",
  s30 = "investigations and proceedings",
  s31 = "law enforcement",
  s32 = "court records",
  s33 = "audit functions",
  s34 = "parliamentary privilege",
  s35 = "formulation of government policy",
  s36 = "prejudice to effective conduct of public affairs",
  s37 = "communications with His Majesty and honours",
  s38 = "health and safety",
  s39 = "environmental information",
  s40 = "personal information",
  s41 = "information provided in confidence",
  s42 = "legal professional privilege",
  s43 = "commercial interests",
  s44 = "prohibitions on disclosure",
}

-- Which team answers a request about each subject.  The requester picks
-- the subject on the form; change the team names to the council's own.
local TEAM_FOR = {
  adult_social_care = "adult_social_care",
  childrens_services = "childrens_services",
  council_tax = "revenues",
  environment = "environment",
  highways = "highways",
  housing = "housing",
  planning = "planning",
  other = "foi_team",     -- the FOI team finds the right people itself
}

-- The words the response uses for each outcome.
local OUTCOME_TEXT = {
  granted_in_full = "granted in full",
  granted_in_part = "granted in part",
  refused = "refused",
  not_held = "information not held",
}

-- A value counts as given when it is there and not empty text.
local function given(value)
  return value ~= nil and value ~= ""
end

-- "s40(2)" -> "s40", when s40 is a section of the list above; nil for
-- anything else ("s99", "section 40", "s40 personal").
local function section_of(item)
  if type(item) ~= "string" then return nil end
  local section, rest = item:match("^(s%d+A?)(.*)$")
  if section == nil or SECTIONS[section] == nil then return nil end
  -- What follows the number may only be subsections: "(2)", "(1)(a)".
  local left = rest:gsub("%(%w+%)", "")
  if left ~= "" then return nil end
  return section
end

-- The department types the sections into one box of its form:
-- "s40(2), s43(2)".  Commas or semicolons separate them.
local function split_sections(text)
  local list = flow.list()
  if given(text) then
    for item in text:gmatch("[^,;]+") do
      item = item:match("^%s*(.-)%s*$")
      if item ~= "" then list[#list + 1] = item end
    end
  end
  return list
end

-- "s40(2) personal information; s43(2) commercial interests", for the
-- response the requester reads.
local function describe_sections(list)
  local parts = {}
  for _, item in ipairs(list or {}) do
    local section = section_of(item)
    parts[#parts + 1] = item .. " " .. (SECTIONS[section] or "")
  end
  return table.concat(parts, "; ")
end

-- The postal address, one line per comma or new line.
local function address_lines(text)
  local lines = {}
  for line in (text or ""):gmatch("[^,\n]+") do
    line = line:match("^%s*(.-)%s*$")
    if line ~= "" then lines[#lines + 1] = line end
  end
  return lines
end

-- Does the actor hold the role?
-- The requester's answer goes the way they asked: an email through
-- GOV.UK Notify, or a letter (Notify's letters take the address as
-- address_line_1 to address_line_7).
local function send_to_requester(case, template, extra)
  local p = { name = case.data.requester_name,
              reference = case.data.reference }
  for k, v in pairs(extra or {}) do p[k] = v end
  if case.data.reply_by == "post" then
    p.address_line_1 = case.data.requester_name
    for i, line in ipairs(address_lines(case.data.postal_address)) do
      p["address_line_" .. (i + 1)] = line
    end
    flow.call("notify.letter", { template = template, personalisation = p },
              { retry = { max = 3, backoff = "5m" }, timeout = "2m" })
  else
    flow.call("notify.email", { email_address = case.data.requester_email,
                                template = template, personalisation = p },
              { retry = { max = 3, backoff = "5m" }, timeout = "2m" })
  end
end

-- An email to the requester, whichever way the answer goes (the
-- acknowledgement, a request to clarify, the review's acknowledgement).
local function email_requester(case, template, extra)
  local p = { name = case.data.requester_name,
              reference = case.data.reference }
  for k, v in pairs(extra or {}) do p[k] = v end
  flow.call("notify.email", { email_address = case.data.requester_email,
                              template = template, personalisation = p },
            { retry = { max = 3, backoff = "5m" }, timeout = "2m" })
end

-- Put the response in the disclosure log.  Only the reference and the
-- redacted text go: never the requester's name or address.  A failure
-- the host says is worth retrying is tried again up to 5 times (after 10
-- minutes, then 20, 40...), and so is an attempt not answered within 5
-- minutes; if it still fails, it becomes an incident for whoever runs the
-- system (there is no `fail` event).
local function publish(case)
  flow.call("foi.publish", {
    reference = case.data.reference,
    redacted_text = case.data.disclosure_text,
    outcome = case.data.outcome,
    exemptions = case.data.exemptions or flow.list(),
  }, { reply = "published", retry = { max = 5, backoff = "10m" },
       timeout = "5m" })
end

-- The host's answer to foi.publish: where the log entry is.
local function record_publication(case, ev)
  case.data.published_at = ev.at
  case.data.disclosure_log_url = ev.payload.url
end

-- The FOI team is told a few days before the deadline, so they can chase
-- the team that has the work.
local function chase_task(case, what, team)
  flow.task{
    name = "chase",
    title = case.data.reference .. ": the " .. what ..
            " is due in 3 working days (with " .. team .. ")",
    team = "foi_team",
    due = "3 working days",
  }
end

-- The form a decision maker fills in, for the first answer and for a
-- review that changes it.
local function decision_form(required)
  return {
    outcome = { type = "enum", required = required,
                values = { "granted_in_full", "granted_in_part", "refused",
                           "not_held" } },
    -- The sections relied on, separated by commas: "s40(2), s43(2)".
    exemptions = { type = "string", max = 500 },
    -- The response as the disclosure log will show it, personal data
    -- removed.
    disclosure_text = { type = "string", required = required, max = 20000 },
  }
end

return {
  name = "foi_request",
  version = 1,
  title = "Freedom of Information request",

  fields = {
    -- Given when the case opens (FOI-000042 from the case number).
    reference = { type = "string", pattern = "^FOI%-%d+$", max = 20,
                  index = true },
    -- Who asked, and how to answer them.  Personal data, so marked pii.
    requester_name = { type = "string", required = true, pii = true,
                       max = 200 },
    requester_email = { type = "string", required = true, pii = true,
                        pattern = "^[^@%s]+@[^@%s]+%.[^@%s]+$", max = 254 },
    reply_by = { type = "enum", values = { "email", "post" },
                 required = true },
    postal_address = { type = "string", pii = true, max = 500 },
    -- What they asked for, and which part of the council holds it.
    request_text = { type = "string", required = true, min = 1, max = 10000 },
    topic = { type = "enum", required = true, index = true,
              values = { "adult_social_care", "childrens_services",
                         "council_tax", "environment", "highways", "housing",
                         "planning", "other" } },
    team = { type = "string", max = 40, index = true },   -- who answers it
    -- Clarification (section 1(3)).
    clarification_question = { type = "string", max = 2000 },
    clarification = { type = "string", max = 10000 },
    -- The answer.
    outcome = { type = "enum", index = true,
                values = { "granted_in_full", "granted_in_part", "refused",
                           "not_held" } },
    exemptions = { type = "list", max = 20 },     -- { "s40(2)", "s43(2)" }
    disclosure_text = { type = "string", max = 20000 },
    decided_by = { type = "string", max = 100 },
    responded_at = { type = "datetime" },
    response_due = { type = "datetime" },
    late = { type = "boolean", index = true },   -- past the 20 working days
    -- The disclosure log.
    published_at = { type = "datetime" },
    disclosure_log_url = { type = "string", max = 500 },
    -- The internal review.
    review_grounds = { type = "string", max = 5000 },
    review_requested_at = { type = "datetime" },
    review_result = { type = "enum",
                      values = { "upheld", "partly_upheld", "overturned" } },
    reviewed_by = { type = "string", max = 100 },
    review_late = { type = "boolean" },          -- past the review's 20
    -- Why the case closed.
    closure = { type = "enum", index = true,
                values = { "responded", "reviewed", "withdrawn",
                           "no_clarification" } },
  },

  -- Rules across fields, checked after every event.
  validate = function(data)
    local problems = {}
    if data.reply_by == "post" then
      local n = #address_lines(data.postal_address)
      if n < 2 or n > 6 then
        problems.postal_address = "give 2 to 6 lines (ending with the " ..
                                  "postcode) when the reply goes by post"
      end
    end
    local seen = {}
    for _, item in ipairs(data.exemptions or {}) do
      if section_of(item) == nil then
        problems.exemptions = "'" .. tostring(item) .. "' is not a section " ..
          "of the Act a refusal can rely on (write it like s40(2) or s43)"
        break
      end
      if seen[item] then
        problems.exemptions = "'" .. item .. "' is given twice"
        break
      end
      seen[item] = true
    end
    local n = #(data.exemptions or {})
    if problems.exemptions == nil and data.outcome then
      if (data.outcome == "granted_in_part" or data.outcome == "refused")
         and n == 0 then
        problems.exemptions = "an answer of '" .. OUTCOME_TEXT[data.outcome] ..
          "' must say which sections of the Act it relies on"
      elseif (data.outcome == "granted_in_full" or data.outcome == "not_held")
             and n > 0 then
        problems.exemptions = "an answer of '" .. OUTCOME_TEXT[data.outcome] ..
          "' relies on no section of the Act: leave the exemptions out"
      end
    end
    return problems
  end,

  -- A requester's reply to our request for clarification comes in by
  -- email; the host matches it to the case by the reference it quotes.
  correlate = { clarification_received = "reference" },

  initial = "with_department",

  -- Section 10: the answer within 20 working days; the FOI team is warned
  -- 3 working days before.
  sla = { within = "20 working days", warn = "17 working days" },

  states = {
    with_department = {
      title = "With the department that holds the information",
      enter = function(case, ev)
        if ev.name == "open" then
          if not given(case.data.reference) then
            case.data.reference = string.format("FOI-%06d", tonumber(case.id))
          end
          case.data.team = TEAM_FOR[case.data.topic]
          email_requester(case, "foi_acknowledgement")
        end
        -- The department prepares the answer.  The task is cancelled by
        -- itself if the case leaves this state (to wait for a
        -- clarification); coming back gives them a new one.
        flow.task{
          name = "respond",
          title = "Answer FOI request " .. case.data.reference,
          team = case.data.team,
          due = "15 working days",
          form = decision_form(true),
          done = "response_ready",
        }
      end,
      on = {
        -- The department's decision, from the "respond" task.  The
        -- person who completes it is the decision maker.
        response_ready = {
          internal = true,
          handler = function(case, ev)
            local answer = ev.payload.outcome
            case.data.outcome = answer.outcome
            case.data.exemptions = split_sections(answer.exemptions)
            case.data.disclosure_text = answer.disclosure_text
            case.data.decided_by = ev.payload.by
            case.data.responded_at = ev.at
            -- What it was due at (the clock stops in "responded"); an
            -- answer after it is already marked late by sla_breached.
            case.data.response_due = case.due_at
            return "responded"
          end,
        },
        -- The request is unclear: ask the requester, and stop the clock.
        -- '{"question": "Which years do you mean?"}'
        ask_clarification = {
          roles = { "foi_officer" },
          handler = function(case, ev)
            if not given(ev.payload.question) then
              flow.fail('say what the requester should clarify, for ' ..
                        'example {"question": "Which years do you mean?"}')
            end
            case.data.clarification_question = ev.payload.question
            email_requester(case, "foi_clarification_request",
                            { question = ev.payload.question })
            flow.sla.pause("waiting for the requester to clarify")
            return "awaiting_clarification"
          end,
        },
        -- The requester wrote again before anyone asked them to: keep
        -- what they said for the department.  The clock runs on.
        clarification_received = {
          internal = true,
          handler = function(case, ev)
            case.data.clarification = ev.payload.text
          end,
        },
        withdraw = {
          roles = { "foi_officer" },
          handler = function(case)
            case.data.closure = "withdrawn"
            return "withdrawn"
          end,
        },
        -- 3 working days before the deadline: a task to chase.
        sla_warning = {
          internal = true,
          handler = function(case)
            chase_task(case, "response", case.data.team)
          end,
        },
        -- The deadline passed: the request is late (the ICO monitors it).
        sla_breached = {
          internal = true,
          handler = function(case)
            case.data.late = true
            flow.log("FOI request", case.data.reference, "is late")
          end,
        },
      },
    },

    awaiting_clarification = {
      title = "Waiting for the requester to clarify (clock stopped)",
      -- Nobody clarified in 60 working days: the request is withdrawn.
      after = { ["60 working days"] = { event = "clarification_overdue" } },
      on = {
        clarification_received = {
          internal = true,
          handler = function(case, ev)
            case.data.clarification = ev.payload.text
            flow.sla.resume()
            return "with_department"
          end,
        },
        clarification_overdue = {
          internal = true,
          handler = function(case)
            case.data.closure = "no_clarification"
            return "withdrawn"
          end,
        },
        withdraw = {
          roles = { "foi_officer" },
          handler = function(case)
            case.data.closure = "withdrawn"
            return "withdrawn"
          end,
        },
      },
    },

    responded = {
      title = "Answered: the requester may ask for a review",
      enter = function(case)
        -- The 20 working days were kept or not when the answer went:
        -- settled now, met or breached, while the requester decides
        -- whether to ask for a review.
        flow.sla.stop()
        send_to_requester(case, "foi_response", {
          outcome = OUTCOME_TEXT[case.data.outcome],
          exemptions = describe_sections(case.data.exemptions),
        })
        publish(case)
      end,
      -- The requester may ask for a review within 40 working days of the
      -- response; after that the case closes.
      after = { ["40 working days"] = { event = "review_window_closed" } },
      on = {
        published = { internal = true, handler = record_publication },
        -- The FOI officer logs the requester's request for a review:
        -- '{"grounds": "You have not considered the public interest"}'
        request_review = {
          roles = { "foi_officer" },
          handler = function(case, ev)
            if not given(ev.payload.grounds) then
              flow.fail('say why the requester wants a review, for ' ..
                        'example {"grounds": "The exemption does not apply"}')
            end
            case.data.review_grounds = ev.payload.grounds
            case.data.review_requested_at = ev.at
            return "under_review"
          end,
        },
        review_window_closed = {
          internal = true,
          handler = function(case)
            case.data.closure = "responded"
            return "closed"
          end,
        },
      },
    },

    under_review = {
      title = "Internal review",
      -- The council's own limit for a review: 20 working days from the
      -- request (the ICO's guidance), warned 3 working days before.
      sla = { within = "20 working days", warn = "17 working days" },
      enter = function(case)
        email_requester(case, "foi_review_acknowledgement")
        local form = decision_form(false)
        form.result = { type = "enum", required = true,
                        values = { "upheld", "partly_upheld", "overturned" } }
        form.note = { type = "string", max = 2000 }
        flow.task{
          name = "review",
          title = "Review FOI request " .. case.data.reference ..
                  " (first decided by " .. case.data.decided_by .. ")",
          team = "foi_review",
          roles = { "foi_reviewer" },   -- only a reviewer may take it
          due = "18 working days",
          form = form,
          done = "review_done",
        }
      end,
      on = {
        -- The first publication may still be on its way.
        published = { internal = true, handler = record_publication },
        review_done = {
          internal = true,
          handler = function(case, ev)
            -- A review is decided by a senior officer (the task's roles
            -- say so) who did not make the first decision.
            if ev.payload.by == case.data.decided_by then
              flow.fail(ev.payload.by .. " made the first decision on " ..
                        case.data.reference .. ", so someone else must " ..
                        "review it")
            end
            local r = ev.payload.outcome
            case.data.review_result = r.result
            case.data.reviewed_by = ev.payload.by
            if r.result == "upheld" then
              send_to_requester(case, "foi_review_response",
                                { result = "upheld" })
              case.data.closure = "reviewed"
              return "closed"
            end
            -- The answer changes: say what it is now.
            if not given(r.outcome) or not given(r.disclosure_text) then
              flow.fail("a review that is " .. r.result .. " needs the " ..
                        "new outcome and the new disclosure text")
            end
            case.data.outcome = r.outcome
            case.data.exemptions = split_sections(r.exemptions)
            case.data.disclosure_text = r.disclosure_text
            send_to_requester(case, "foi_review_response", {
              result = (r.result:gsub("_", " ")),
              outcome = OUTCOME_TEXT[r.outcome],
              exemptions = describe_sections(case.data.exemptions),
            })
            return "republishing"
          end,
        },
        sla_warning = {
          internal = true,
          handler = function(case)
            chase_task(case, "internal review", "foi_review")
          end,
        },
        sla_breached = {
          internal = true,
          handler = function(case) case.data.review_late = true end,
        },
      },
    },

    -- The review changed the answer: the disclosure log gets the new one.
    republishing = {
      title = "Publishing the reviewed answer",
      enter = function(case) publish(case) end,
      on = {
        published = {
          internal = true,
          handler = function(case, ev)
            record_publication(case, ev)
            case.data.closure = "reviewed"
            return "closed"
          end,
        },
      },
    },

    -- The requester is told their request was closed unanswered.
    withdrawn = {
      final = true,
      enter = function(case)
        email_requester(case, "foi_withdrawn", { reason = case.data.closure })
      end,
    },

    closed = { final = true },
  },
}
