-- Book a bulky waste collection.
--
-- A resident tells us which large items they want taken away (a sofa, a
-- fridge...).  The script works out the fee from the price list below,
-- asks the round-planning system which days a crew can come, lets the
-- resident pick one, takes the payment, and sends a confirmation.  On the
-- day a crew gets a task to collect; they close it with a photo of the
-- collection, or say the items were not put out (the fee is kept).
--
-- The resident may cancel: with a full refund when they give 2 working
-- days' notice (for a Wednesday collection, until 17:00 on Monday), and
-- without a refund after that (they have to say they accept that).
--
-- The way through, and the ways off it:
--
--   finding_slots    asks bulky.slots for dates    -> choosing_slot
--                    (none free, failing, silent)  -> no_slots (waits)
--   choosing_slot    the resident picks a date     -> taking_payment
--   taking_payment   asks payments.take            -> booked
--                    (the resident is still paying) -> confirming_payment
--                    (declined, provider down)     -> payment_problem
--   booked           cancel in time                -> refunding -> cancelled
--                    cancel too late               -> cancelled, no refund
--                    the collection day comes      -> collecting
--   collecting       the crew's task               -> collected / not_put_out
--
-- Every state that waits (for the resident, the payment provider, a host
-- system) has a timer, so no booking waits for ever: it lapses, or goes
-- to a person.  The full picture is bulky_waste_booking.svg.
--
-- Try it from the shell:
--
--   flow check examples/services/waste/bulky_waste/bulky_waste_booking.lua
--   flow test  examples/services/waste/bulky_waste/

-- ------------------------------------------------------------------------
-- The parts a council changes most often
-- ------------------------------------------------------------------------

-- What we collect, and the price of each item in pence (2500 is £25.00).
-- An item the resident names that is not here is refused.  Two chairs are
-- written as "chair" twice, and priced twice.
local PRICES = {
  armchair         = 1200,
  bed_frame        = 1800,
  carpet           = 1000,
  chair            = 500,
  chest_of_drawers = 1500,
  fridge_freezer   = 3000,
  mattress         = 1500,
  sofa             = 2500,
  table            = 1000,
  wardrobe         = 2000,
  washing_machine  = 2000,
}

-- The most items one booking may hold (one crew visit).
local MAX_ITEMS = 6

-- Cancelling gives a full refund when the resident gives us this much
-- notice: 2 working days from the moment they cancel must not go past the
-- collection day.  So for a Wednesday collection they may cancel until
-- the end of Monday's working day (17:00); over a weekend or a bank
-- holiday the engine's calendar skips those days.
local REFUND_NOTICE = "2 working days"

-- How many times a card may be declined before the booking lapses.
local MAX_DECLINES = 3

-- The crew's task appears on the collection day, just after midnight,
-- and is due by the end of that working day (17:00).  Collections are on
-- working days only: dates the round planner offers on a weekend or a
-- bank holiday are not offered to the resident.
local CREW_TASK_TIME = "8 working hours"

-- What a resident gives when booking.  Every other field is filled in by
-- the service, so it is refused in the booking (a booking that arrived
-- with its own "fee" or "refund_by" would otherwise be kept).
local RESIDENT_GIVES = { "uprn", "address", "postcode", "name", "email",
                         "phone", "items" }

-- Who may act for the resident: the resident on the website, or a member
-- of the contact centre on the phone.
local RESIDENT = { "resident", "staff" }

-- ------------------------------------------------------------------------
-- Small helpers: dates, the refund rule, money, wording
-- ------------------------------------------------------------------------

-- Midday (UTC) on a date: a time on that day in London, summer or
-- winter, and inside working hours.  The flow.date and flow.add helpers
-- take times, not dates.
local function midday(date)
  return date .. "T12:00:00Z"
end

-- "2026-02-11" -> "Wednesday 11 February 2026"
local function long_date(date)
  return flow.date(midday(date), "long")
end

-- Whether cancelling at `time` gives REFUND_NOTICE before the collection.
-- flow.add counts working days on the engine's own calendar (weekends,
-- bank holidays, the council's closure days), exactly as its timers do.
local function in_time_for_refund(slot, time)
  return flow.date(flow.add(REFUND_NOTICE, time)) <= slot
end

-- The last day on which cancelling still gives a full refund: the
-- resident is told it, and staff see it in the case.  nil when that day
-- has already gone.
local function last_day_for_refund(slot)
  local last = nil
  local today = flow.date()                    -- in London
  local day = today
  while day <= slot do
    local time = day == today and flow.now() or midday(day)
    if flow.is_working_day(day) and in_time_for_refund(slot, time) then
      last = day
    end
    day = flow.date(flow.add("24h", midday(day)))
  end
  return last
end

-- 3950 -> "£39.50"
local function pounds(pence)
  return string.format("£%d.%02d", pence // 100, pence % 100)
end

-- { "sofa", "chair", "chair" } -> "sofa, chair (2)"
local function item_summary(items)
  local order, count = {}, {}
  for _, item in ipairs(items) do
    if not count[item] then order[#order + 1] = item end
    count[item] = (count[item] or 0) + 1
  end
  local parts = {}
  for _, item in ipairs(order) do
    local name = item:gsub("_", " ")
    if count[item] > 1 then name = name .. " (" .. count[item] .. ")" end
    parts[#parts + 1] = name
  end
  return table.concat(parts, ", ")
end

local function price_list()
  local names = {}
  for item in pairs(PRICES) do names[#names + 1] = item end
  table.sort(names)
  return table.concat(names, ", ")
end

-- A value counts as given when it is there and not empty text.
local function given(value)
  return value ~= nil and value ~= ""
end

-- ------------------------------------------------------------------------
-- What the script asks the host to do
-- ------------------------------------------------------------------------

-- Tell the resident something through GOV.UK Notify: by email when they
-- gave an address, else by text message.  The host maps each template
-- name to its Notify template id.  A message that still fails after the
-- retries becomes an incident for staff to look at; the booking goes on.
local function tell(case, template, extra)
  local personalisation = {
    name = case.data.name,
    reference = case.data.reference,
    address = case.data.address,
    items = item_summary(case.data.items),
    fee = pounds(case.data.fee),
  }
  if case.data.slot then
    personalisation.collection_date = long_date(case.data.slot)
  end
  for key, value in pairs(extra or {}) do personalisation[key] = value end
  local options = { retry = { max = 3, backoff = "5m" }, timeout = "10m" }
  if given(case.data.email) then
    flow.call("notify.email", { email_address = case.data.email,
                                template = template,
                                personalisation = personalisation,
                                reference = case.data.reference }, options)
  else
    flow.call("notify.sms", { to = case.data.phone,
                              template = template,
                              personalisation = personalisation,
                              reference = case.data.reference }, options)
  end
end

-- (The handlers below return the next state's name written out, like
-- `return "booked"`, rather than from a helper: that is what lets
-- `flow graph` draw every arrow.)

-- A card was declined (by the payments.take answer or by the provider's
-- notice).  Says whether the resident has used up their tries.
local function record_decline(case, reason)
  case.data.declines = (case.data.declines or 0) + 1
  case.data.decline_reason = reason
  case.data.payment_id = nil
  if case.data.declines >= MAX_DECLINES then
    case.data.lapsed_because = "payment_declined"
    return true
  end
  case.data.payment_problem = "declined"
  return false
end

-- The payment was taken: keep the provider's id (refunds need it).
local function record_payment(case, ev, payment_id)
  if not given(payment_id) then
    flow.fail("the payment service said the payment succeeded but gave no "
              .. "payment_id")
  end
  case.data.payment_id = payment_id
  case.data.paid_at = ev.at
  case.data.payment_problem = nil
end

-- Timers that end a booking all send `lapse`, saying why.
local LAPSE = {
  internal = true,
  handler = function(case, ev)
    case.data.lapsed_because = ev.payload.because
    return "lapsed"
  end,
}

-- The payment provider never answered, or the resident never finished
-- paying: cancel the unfinished payment with the provider, so that it
-- cannot be completed for a booking that no longer exists, and lapse.
local PAYMENT_TIMED_OUT = {
  internal = true,
  handler = function(case)
    flow.call("payments.cancel", { reference = case.data.payment_ref,
                                   payment_id = case.data.payment_id },
              { retry = { max = 5, backoff = "1m" }, timeout = "2m" })
    case.data.lapsed_because = "payment_not_confirmed"
    return "lapsed"
  end,
}

-- Cancelling before anything was paid: nothing to refund.
local CANCEL_UNPAID = { to = "cancelled", roles = RESIDENT }

-- Cancelling once the cut-off has passed (and on the day itself): allowed,
-- but only when the resident says they accept there is no refund.
local function cancel_without_refund(case, ev)
  if ev.payload.accept_no_refund ~= true then
    flow.fail(string.format(
      "It is less than %s before the collection on %s, so cancelling now "
      .. "gives no refund of the %s paid.  To cancel anyway, send "
      .. '{"accept_no_refund": true}.',
      REFUND_NOTICE, long_date(case.data.slot), pounds(case.data.fee)))
  end
  case.data.refund = "none"
  case.data.cancelled_at = ev.at
end

-- ------------------------------------------------------------------------
-- The service
-- ------------------------------------------------------------------------

return {
  name = "bulky_waste_booking",
  version = 1,
  title = "Book a bulky waste collection",

  fields = {
    -- Where, and who.  Personal data is marked pii.
    uprn = { type = "string", required = true, pattern = "^%d+$", max = 12,
             index = true },
    address = { type = "string", required = true, max = 200, pii = true },
    postcode = { type = "string", required = true, max = 8,
                 pattern = "^%u%u?%d[%u%d]? ?%d%u%u$" },
    name = { type = "string", required = true, max = 100, pii = true },
    email = { type = "string", max = 254, pii = true,
              pattern = "^[^@%s]+@[^@%s]+%.[^@%s]+$" },
    phone = { type = "string", max = 20, pii = true, pattern = "^%+?[%d ]+$" },

    -- What: item names from PRICES (checked in `validate` below).
    items = { type = "list", required = true, min = 1, max = MAX_ITEMS },
    fee = { type = "integer", min = 0 },             -- pence, worked out here
    reference = { type = "string", max = 20 },       -- "BW42", for letters

    -- When.
    offered_slots = { type = "list" },               -- dates bulky.slots gave
    slot_problem = { type = "enum",
                     values = { "none_free", "unavailable", "no_answer" } },
    slot = { type = "date", index = true },
    refund_by = { type = "date" },      -- last day to cancel with a refund

    -- Paying.
    payment_ref = { type = "string", max = 40, index = true },
    payment_id = { type = "string", max = 100 },     -- the provider's id
    paid_at = { type = "datetime" },
    declines = { type = "integer", min = 0 },
    decline_reason = { type = "string", max = 200 },
    payment_problem = { type = "enum", values = { "declined", "unavailable" } },

    -- Cancelling.
    cancelled_at = { type = "datetime" },
    refund = { type = "enum", values = { "full", "none" } },
    refund_id = { type = "string", max = 100 },

    -- How it ended.
    lapsed_because = { type = "enum",
                       values = { "no_slots", "slot_not_chosen",
                                  "payment_declined", "payment_abandoned",
                                  "payment_not_confirmed" } },
    outcome = { type = "enum", values = { "collected", "not_put_out" } },
    photo_ref = { type = "string", max = 200 },
    crew_note = { type = "string", max = 500 },
    collected_by = { type = "string", max = 100 },
  },

  -- Where to send the confirmation: an email address or a mobile number.
  one_of = { "email", "phone" },

  -- The item list: only items we price, named as in PRICES.
  validate = function(data)
    for _, item in ipairs(data.items or {}) do
      if type(item) ~= "string" or PRICES[item] == nil then
        return { items = string.format(
          "'%s' is not an item we collect (we collect: %s)",
          tostring(item), price_list()) }
      end
    end
  end,

  -- The payment provider's notice names the booking by its payment id.
  correlate = { payment_notice = "payment_id" },

  initial = "finding_slots",

  states = {
    -- Ask the round-planning system which days a crew can come.
    finding_slots = {
      title = "Finding collection dates",
      enter = function(case, ev)
        if ev.name == "open" then
          local allowed = {}
          for _, key in ipairs(RESIDENT_GIVES) do allowed[key] = true end
          for key in pairs(ev.payload) do
            if not allowed[key] then
              flow.fail("'" .. tostring(key) .. "' cannot be given when "
                        .. "booking: give only "
                        .. table.concat(RESIDENT_GIVES, ", "))
            end
          end
        end
        -- The fee and reference are worked out here, from the items.
        local fee = 0
        for _, item in ipairs(type(case.data.items) == "table"
                              and case.data.items or {}) do
          fee = fee + (PRICES[item] or 0)   -- unknown items: see validate
        end
        case.data.fee = fee
        case.data.reference = "BW" .. case.id
        flow.call("bulky.slots", { uprn = case.data.uprn,
                                   postcode = case.data.postcode,
                                   items = case.data.items },
                  { reply = "slots_found", fail = "slots_failed",
                    retry = { max = 3, backoff = "30s" }, timeout = "1m" })
      end,
      -- The host never answered at all (no handler registered, or down
      -- before it could): stop waiting.
      after = { ["1h"] = { event = "slots_not_answered" } },
      on = {
        -- The answer: { slots = { "2026-02-11", "2026-02-13" } }.
        slots_found = {
          internal = true,
          handler = function(case, ev)
            local slots = ev.payload.slots
            if type(slots) ~= "table" then
              flow.fail("bulky.slots answered without a list of dates "
                        .. '(expected { "slots": ["2026-02-11", ...] })')
            end
            local offered = flow.list()
            for _, date in ipairs(slots) do
              if type(date) ~= "string"
                 or not date:match("^%d%d%d%d%-%d%d%-%d%d$") then
                flow.fail("bulky.slots offered '" .. tostring(date)
                          .. "', which is not a date like 2026-02-11")
              end
              if flow.is_working_day(date) then
                offered[#offered + 1] = date
              else
                flow.log("bulky.slots offered " .. date
                         .. ", which is not a working day: left out")
              end
            end
            if #offered == 0 then
              case.data.slot_problem = "none_free"
              return "no_slots"
            end
            case.data.offered_slots = offered
            case.data.slot_problem = nil
            return "choosing_slot"
          end,
        },
        slots_failed = {
          internal = true,
          handler = function(case)
            case.data.slot_problem = "unavailable"
            return "no_slots"
          end,
        },
        slots_not_answered = {
          internal = true,
          handler = function(case)
            case.data.slot_problem = "no_answer"
            return "no_slots"
          end,
        },
      },
    },

    -- No date could be offered.  The booking waits here, saying why
    -- (slot_problem), until the resident or staff ask again.
    no_slots = {
      title = "No collection dates found",
      enter = function(case)
        tell(case, "bulky_no_dates", { problem = case.data.slot_problem })
      end,
      after = { ["5 working days"] = { event = "lapse",
                                       payload = { because = "no_slots" } } },
      on = {
        find_slots_again = { to = "finding_slots", roles = RESIDENT },
        cancel = CANCEL_UNPAID,
        lapse = LAPSE,
      },
    },

    -- The resident picks one of the offered dates: { "date": "2026-02-11" }.
    choosing_slot = {
      title = "Waiting for the resident to choose a date",
      after = { ["24h"] = { event = "lapse",
                            payload = { because = "slot_not_chosen" } } },
      on = {
        choose_slot = {
          roles = RESIDENT,
          handler = function(case, ev)
            local date = ev.payload.date
            local offered = false
            for _, slot in ipairs(case.data.offered_slots) do
              if slot == date then offered = true end
            end
            if not offered then
              flow.fail("choose one of the dates offered ("
                        .. table.concat(case.data.offered_slots, ", ")
                        .. '), for example {"date": "'
                        .. case.data.offered_slots[1] .. '"}, or ask for '
                        .. "new dates with find_slots_again")
            end
            if date <= flow.date() then
              flow.fail(long_date(date) .. " is too soon now: ask for new "
                        .. "dates with find_slots_again")
            end
            case.data.slot = date
            case.data.refund_by = last_day_for_refund(date)
            return "taking_payment"
          end,
        },
        find_slots_again = { to = "finding_slots", roles = RESIDENT },
        cancel = CANCEL_UNPAID,
        lapse = LAPSE,
      },
    },

    -- Ask the payment provider to take the fee.  The answer is one of
    --   { status = "success", payment_id = "..." }   paid at once
    --   { status = "pending", payment_id = "..." }   the resident is still
    --       paying (e.g. 3-D Secure); the provider's notice follows
    --   { status = "declined", reason = "..." }
    -- A provider that times out is asked again with the same reference
    -- and key, so a retry can never charge twice.
    taking_payment = {
      title = "Taking the payment",
      enter = function(case)
        case.data.payment_ref = case.data.reference .. "-"
                                .. ((case.data.declines or 0) + 1)
        flow.call("payments.take", {
          amount = case.data.fee,
          reference = case.data.payment_ref,
          description = "Bulky waste collection on "
                        .. long_date(case.data.slot),
          email = case.data.email,
        }, { reply = "payment_answered", fail = "payment_failed",
             retry = { max = 2, backoff = "30s" }, timeout = "1m",
             key = case.data.payment_ref })
      end,
      after = { ["1h"] = { event = "payment_timed_out" } },
      on = {
        payment_answered = {
          internal = true,
          handler = function(case, ev)
            local answer = ev.payload
            if answer.status == "success" then
              record_payment(case, ev, answer.payment_id)
              return "booked"
            elseif answer.status == "pending" then
              if not given(answer.payment_id) then
                flow.fail("payments.take said pending but gave no payment_id")
              end
              case.data.payment_id = answer.payment_id
              return "confirming_payment"
            elseif answer.status == "declined" then
              if record_decline(case, answer.reason) then return "lapsed" end
              return "payment_problem"
            end
            flow.fail("payments.take answered with status '"
                      .. tostring(answer.status)
                      .. "' (expected success, pending or declined)")
          end,
        },
        -- Still failing after the retries: the provider is down.  It is
        -- not the resident's fault, so it does not count as a decline.
        payment_failed = {
          internal = true,
          handler = function(case)
            case.data.payment_problem = "unavailable"
            return "payment_problem"
          end,
        },
        payment_timed_out = PAYMENT_TIMED_OUT,
      },
    },

    -- The resident is finishing the payment with the provider, whose
    -- notice arrives as the message payment_notice, keyed by payment_id:
    -- { status = "success" } or { status = "declined", reason = "..." }.
    confirming_payment = {
      title = "Waiting for the payment to be confirmed",
      after = { ["1h"] = { event = "payment_timed_out" } },
      on = {
        payment_notice = {
          internal = true,
          handler = function(case, ev)
            if ev.payload.status == "success" then
              record_payment(case, ev, case.data.payment_id)
              return "booked"
            elseif ev.payload.status == "declined" then
              if record_decline(case, ev.payload.reason) then
                return "lapsed"
              end
              return "payment_problem"
            end
            flow.fail("payment_notice with status '"
                      .. tostring(ev.payload.status)
                      .. "' (expected success or declined)")
          end,
        },
        payment_timed_out = PAYMENT_TIMED_OUT,
      },
    },

    -- The card was declined, or the provider could not be reached.  The
    -- resident may try again (a declined card counts towards MAX_DECLINES).
    payment_problem = {
      title = "Payment did not go through",
      enter = function(case)
        tell(case, "bulky_payment_problem", {
          problem = case.data.payment_problem,
          tries_left = MAX_DECLINES - (case.data.declines or 0),
        })
      end,
      after = { ["24h"] = { event = "lapse",
                            payload = { because = "payment_abandoned" } } },
      on = {
        retry_payment = {
          roles = RESIDENT,
          handler = function(case)
            if case.data.slot <= flow.date() then
              flow.fail(long_date(case.data.slot) .. " is too soon now: ask "
                        .. "for new dates with find_slots_again")
            end
            return "taking_payment"
          end,
        },
        find_slots_again = { to = "finding_slots", roles = RESIDENT },
        cancel = CANCEL_UNPAID,
        lapse = LAPSE,
      },
    },

    -- Paid and booked.  The resident is told, and on the collection day
    -- the case moves to "collecting" by itself.
    booked = {
      title = "Booked",
      enter = function(case)
        local refund_text
        if in_time_for_refund(case.data.slot, flow.now()) then
          refund_text = "You can cancel for a full refund until the end of "
                        .. "the working day on " .. long_date(case.data.refund_by)
                        .. "."
        else
          refund_text = "This booking is too close to the collection day "
                        .. "to be refunded if you cancel."
        end
        tell(case, "bulky_booking_confirmed", { refund = refund_text })
        -- Midnight UTC is on the collection day in London all year
        -- (00:00 in winter, 01:00 in summer).
        flow.at(case.data.slot .. "T00:00:00Z", "collection_day")
      end,
      on = {
        -- In time: a full refund.  Too late: only with accept_no_refund.
        cancel = {
          roles = RESIDENT,
          handler = function(case, ev)
            if in_time_for_refund(case.data.slot, ev.at) then
              case.data.refund = "full"
              case.data.cancelled_at = ev.at
              return "refunding"
            end
            cancel_without_refund(case, ev)
            return "cancelled"
          end,
        },
        collection_day = { to = "collecting", internal = true },
      },
    },

    -- Give the money back.  If the provider refuses, or never answers
    -- within a working day, a person in the payments team does it.
    refunding = {
      title = "Refunding the fee",
      enter = function(case)
        flow.call("payments.refund", { payment_id = case.data.payment_id,
                                       amount = case.data.fee,
                                       reference = case.data.payment_ref },
                  { reply = "refunded", fail = "refund_failed",
                    retry = { max = 5, backoff = "1m" }, timeout = "2m",
                    key = "refund-" .. case.data.payment_ref })
      end,
      after = { ["1 working day"] = "refund_by_hand" },
      on = {
        refunded = {
          internal = true,
          handler = function(case, ev)
            case.data.refund_id = ev.payload.refund_id
            return "cancelled"
          end,
        },
        refund_failed = { to = "refund_by_hand", internal = true },
      },
    },

    refund_by_hand = {
      title = "Refund to be made by hand",
      enter = function(case)
        flow.task{
          name = "refund",
          title = "Refund " .. pounds(case.data.fee) .. " for bulky waste "
                  .. "booking " .. case.data.reference .. " (payment "
                  .. case.data.payment_ref .. ")",
          team = "payments",
          due = "2 working days",
          form = {
            refund_id = { type = "string", required = true, max = 100 },
            note = { type = "string", max = 500 },
          },
          done = "refunded_by_hand",
        }
      end,
      on = {
        refunded_by_hand = {
          internal = true,
          handler = function(case, ev)
            case.data.refund_id = ev.payload.outcome.refund_id
            return "cancelled"
          end,
        },
        -- The provider's answer came after all: the task is not needed.
        refunded = {
          internal = true,
          handler = function(case, ev)
            case.data.refund_id = ev.payload.refund_id
            return "cancelled"
          end,
        },
      },
    },

    -- The collection day: a task for the crews, due by 17:00.  The case's
    -- service level is the same 17:00, so `flow list --overdue` shows
    -- collections not reported by then.
    collecting = {
      title = "Collection day",
      sla = { within = CREW_TASK_TIME },
      enter = function(case)
        flow.task{
          name = "collect",
          title = "Collect " .. item_summary(case.data.items) .. " from "
                  .. case.data.address .. " (" .. case.data.reference .. ")",
          team = "crews",
          due = CREW_TASK_TIME,
          form = {
            outcome = { type = "enum", values = { "collected", "not_put_out" },
                        required = true },
            photo_ref = { type = "string", max = 200 },  -- needed if collected
            note = { type = "string", max = 500 },
          },
          done = "collection_done",
        }
      end,
      on = {
        collection_done = {
          internal = true,
          handler = function(case, ev)
            local report = ev.payload.outcome
            if report.outcome == "collected" and not given(report.photo_ref) then
              flow.fail("a collection needs the reference of the photo taken "
                        .. 'at the kerb, for example {"outcome": "collected", '
                        .. '"photo_ref": "IMG-0042"}')
            end
            case.data.outcome = report.outcome
            case.data.photo_ref = report.photo_ref
            case.data.crew_note = report.note
            case.data.collected_by = ev.payload.by
            if report.outcome == "collected" then return "collected" end
            return "not_put_out"
          end,
        },
        -- Past the refund deadline by definition.
        cancel = {
          roles = RESIDENT,
          handler = function(case, ev)
            cancel_without_refund(case, ev)
            return "cancelled"
          end,
        },
      },
    },

    collected = {
      final = true,
      enter = function(case) tell(case, "bulky_collected") end,
    },
    -- The items were not out: the fee pays for the crew's visit.
    not_put_out = {
      final = true,
      enter = function(case) tell(case, "bulky_not_put_out") end,
    },
    cancelled = {
      final = true,
      enter = function(case)
        local refund = "No payment was taken."
        if case.data.refund == "full" then
          refund = pounds(case.data.fee) .. " has been refunded."
        elseif case.data.refund == "none" then
          refund = "The fee of " .. pounds(case.data.fee)
                   .. " is not refunded."
        end
        tell(case, "bulky_booking_cancelled", { refund = refund })
      end,
    },
    lapsed = {
      final = true,
      enter = function(case)
        tell(case, "bulky_booking_lapsed", { why = case.data.lapsed_because })
      end,
    },
  },
}
