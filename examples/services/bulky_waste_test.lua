-- Tests for bulky_waste.lua: the payment provider's message, the crew's
-- task, and what happens when either goes wrong.  The same tests are the
-- worked example of docs/testing.md ("Tasks: people, mocked"), with one
-- more here for the lapse, so that every state and transition is
-- covered:
--
--   flow test --coverage examples/services/bulky_waste_test.lua
load("bulky_waste.lua")

local booking = { uprn = "100023336956", items = 3, payment_ref = "PAY-1" }
local kim = { actor = "kim", roles = { "crew" } }

test("paying books the collection: a task for the crews", function()
  local c = open("bulky_waste", booking)
  local m = send("payment_received", "PAY-1", { amount = 35 })
  expect(m.status).to_be("delivered")
  expect(m.case).to_be(c.id)
  c:expect_state("booked")
  c:expect_field("amount", 35)
  c:expect_tasks({
    { name = "collect", team = "crews", due = "2026-02-05T09:00:00Z" },
  })
end)

test("a payment that comes first waits for its booking", function()
  local m = send("payment_received", "PAY-1", { amount = 35 })
  expect(m.status).to_be("buffered")
  local c = open("bulky_waste", booking)
  c:expect_state("booked")
  expect(messages("delivered")[1].case).to_be(c.id)
end)

test("the crew records the collection, which closes the case", function()
  local c = open("bulky_waste", booking)
  send("payment_received", "PAY-1", { amount = 35 })
  c:claim("collect", kim)
  c:expect_tasks({ { name = "collect", status = "claimed",
                     claimed_by = "kim" } })
  -- The form refuses an outcome that fails it, naming every field.
  local why = c:expect_complete_refused("collect", { note = ("x"):rep(201) },
                                        kim, "FLOW_EDATA")
  expect(why).to_contain("outcome: is required")
  expect(why).to_contain("note: must have at most 200 characters")
  c:expect_complete_refused("collect", { outcome = "gone" }, kim, "EDATA")
  c:expect_state("booked")
  c:complete("collect", { outcome = "collected", note = "by the gate" }, kim)
  c:expect_state("closed")
  c:expect_field("outcome", "collected")
  c:expect_tasks({})
  expect(c:tasks()[1].outcome).to_be({ outcome = "collected",
                                       note = "by the gate" })
end)

test("only the one who claimed it can complete it", function()
  local c = open("bulky_waste", booking)
  send("payment_received", "PAY-1", { amount = 35 })
  c:claim("collect", "kim")
  c:expect_claim_refused("collect", "sam", "FLOW_ECONFLICT")
  c:expect_complete_refused("collect", { outcome = "collected" }, "sam",
                            "FLOW_ECONFLICT")
  c:release("collect", "kim")
  c:complete("collect", { outcome = "not_out" }, "sam")
  c:expect_field("outcome", "not_out")
end)

test("cancelling the booking cancels the crew's task", function()
  local c = open("bulky_waste", booking)
  send("payment_received", "PAY-1", { amount = 35 })
  c:signal("cancel")
  c:expect_state("lapsed")
  c:expect_tasks({})
  expect(c:tasks({ status = "cancelled" })[1].name).to_be("collect")
  c:expect_complete_refused("collect", { outcome = "collected" }, kim,
                            "FLOW_ECONFLICT")
end)

test("a payment nobody books for expires", function()
  send("payment_received", "PAY-9", { amount = 35 }, { ttl = "1h" })
  advance("59m")
  expect(#messages("buffered")).to_be(1)
  advance("1m")
  expect(messages("expired")[1].key).to_be("PAY-9")
  local c = open("bulky_waste", { uprn = "100023336956", items = 3,
                                  payment_ref = "PAY-9" })
  c:expect_state("awaiting_payment")
end)

test("a second payment for a booked case is an incident", function()
  local c = open("bulky_waste", booking)
  send("payment_received", "PAY-1", { amount = 35 })
  local m = send("payment_received", "PAY-1", { amount = 35 })
  expect(m.status).to_be("incident")
  c:expect_state("booked")
  local i = c:incidents()[1]
  expect(i.id).to_be(m.incident)
  expect(i.source).to_be("message")
  expect(i.code).to_be("FLOW_EEVENT")
end)

test("a booking nobody pays for lapses after two days", function()
  local c = open("bulky_waste", booking)
  c:expect_timers({ { event = "after", target = "lapsed",
                      at = "2026-02-04T09:00:00Z" } })
  advance("2d")
  c:expect_state("lapsed")
  c:expect_tasks({})
  -- The case has closed: its key is free, and a late payment waits.
  expect(send("payment_received", "PAY-1", { amount = 35 }).status)
    .to_be("buffered")
end)
