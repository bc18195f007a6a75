-- Bulky waste: the resident books a collection and pays by card; the
-- payment provider's notice arrives as a message carrying the payment
-- reference; a crew member collects and records what happened on a task.
return {
  name = "bulky_waste",
  version = 1,
  title = "Book a bulky waste collection",
  fields = {
    uprn = { type = "string", required = true, pattern = "^%d+$", max = 12 },
    items = { type = "integer", required = true, min = 1, max = 10 },
    payment_ref = { type = "string", max = 40 },
    amount = { type = "integer", min = 0 },
    outcome = { type = "enum", values = { "collected", "not_out" } },
  },
  -- The payment provider's notice names the case by its payment reference.
  correlate = { payment_received = "payment_ref" },
  initial = "awaiting_payment",
  states = {
    awaiting_payment = {
      after = { ["2d"] = "lapsed" },      -- unpaid bookings lapse
      on = {
        -- Only the payment provider's message sends it, never a person.
        payment_received = {
          internal = true,
          handler = function(case, ev)
            case.data.amount = ev.payload.amount
            return "booked"
          end,
        },
      },
    },
    booked = {
      enter = function(case)
        flow.task{
          name = "collect",
          title = "Collect " .. case.data.items .. " items from " ..
                  case.data.uprn,
          team = "crews",
          due = "3 working days",
          form = {
            outcome = { type = "enum", values = { "collected", "not_out" },
                        required = true },
            note = { type = "string", max = 200 },
          },
          done = "collection_done",
        }
      end,
      on = {
        -- From the crew's task only: no one may send it by hand.
        collection_done = { internal = true, handler = function(case, ev)
          case.data.outcome = ev.payload.outcome.outcome
          return "closed"
        end },
        cancel = "lapsed",
      },
    },
    lapsed = { final = true },
    closed = { final = true },
  },
}
