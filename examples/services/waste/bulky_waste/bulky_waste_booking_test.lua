-- Tests for bulky_waste_booking.lua: every state, every transition and
-- every timer; the price list and the data checks; the date service and
-- the payment provider answering, declining, failing, timing out and
-- never answering; the provider's notice arriving early and never; the
-- refund deadline on both sides, over a weekend, Easter and Christmas;
-- the crew's task done on time, late and wrongly; and who may do what.
-- Run them with:
--
--   flow test --coverage examples/services/waste/bulky_waste/
--
-- Every test starts with a fresh, empty engine whose clock reads Monday
-- 2 February 2026, 09:00 (London), unless the test says otherwise: the
-- dates below are written for that clock, so the file fixes it (also
-- under `flow test --now ...`).  In a test there is no host: mock.action
-- answers for it.

load("bulky_waste_booking.lua")
test.start = "2026-02-02T09:00:00Z"

local SERVICE = "bulky_waste_booking"

-- A sofa and two chairs: £25 + £5 + £5.
local booking = {
  uprn = "100023336956",
  address = "12 High Street, Exeter",
  postcode = "EX1 1AA",
  name = "Alex Example",
  email = "alex@example.org",
  items = { "sofa", "chair", "chair" },
}

local resident = { actor = "alex", roles = { "resident" } }
local staff = { actor = "priya", roles = { "staff" } }
local kim = { actor = "kim", roles = { "crew" } }

-- A copy of the booking with some fields changed (false removes a
-- field).
local function with(changes)
  local data = {}
  for k, v in pairs(booking) do data[k] = v end
  for k, v in pairs(changes) do
    if v == false then data[k] = nil else data[k] = v end
  end
  return data
end

-- The host, mocked: the date service offers these dates, and GOV.UK
-- Notify accepts every message.
local function offer(...)
  mock.action("bulky.slots", { result = { slots = flow.list({ ... }) } })
  mock.action("notify.email", { result = { id = "email-1" } })
  mock.action("notify.sms", { result = { id = "sms-1" } })
end

-- The card is accepted at once.  Each case's payment gets its own id
-- ("pay-1" for case 1): two open cases may not wait for the same one.
local function card_ok()
  mock.action("payments.take", function(args, req)
    return { result = { status = "success", payment_id = "pay-" .. req.case } }
  end)
end

-- Open, choose `slot`, pay at once: a booked case.
local function booked(slot, data)
  offer(slot)
  card_ok()
  local c = open(SERVICE, data or booking, resident)
  c:signal("choose_slot", { date = slot }, resident)
  c:expect_state("booked")
  return c
end

-- The Notify templates the case asked for, oldest first.
local function told(c)
  local templates = {}
  for _, a in ipairs(c:actions()) do
    if a.action == "notify.email" or a.action == "notify.sms" then
      templates[#templates + 1] = a.args.template
    end
  end
  return templates
end

-- The action requests of one name.
local function requests(c, name)
  local found = {}
  for _, a in ipairs(c:actions()) do
    if a.action == name then found[#found + 1] = a end
  end
  return found
end

-- ---------------------------------------------------------------------
-- Opening: the price list and the data checks
-- ---------------------------------------------------------------------

test("a booking is priced from the list and asks for collection dates",
     function()
  local c = open(SERVICE, booking, resident)
  c:expect_state("finding_slots")
  c:expect_data({ fee = 3500, reference = "BW1" })
  c:expect_actions({
    { action = "bulky.slots", status = "waiting",
      args = { uprn = "100023336956", postcode = "EX1 1AA",
               items = { "sofa", "chair", "chair" } } },
  })
  -- No service level until the collection day.
  c:expect_sla("none")
  c:expect_timers({ { event = "slots_not_answered",
                      at = "2026-02-02T10:00:00Z" } })
end)

test("every item on the list has its price", function()
  local c = open(SERVICE, with({ items = { "fridge_freezer", "mattress",
                                           "wardrobe", "washing_machine",
                                           "bed_frame", "carpet" } }))
  c:expect_field("fee", 3000 + 1500 + 2000 + 2000 + 1800 + 1000)
  local d = open(SERVICE, with({ items = { "armchair", "chest_of_drawers",
                                           "table" } }))
  d:expect_field("fee", 1200 + 1500 + 1000)
end)

test("items we do not collect are refused, naming the item", function()
  local why = expect_open_refused(SERVICE, with({ items = { "sofa", "piano" } }),
                                  resident, "FLOW_EDATA")
  expect(why).to_contain("items: 'piano' is not an item we collect")
  expect(why).to_contain("we collect: armchair, bed_frame, carpet")
  why = expect_open_refused(SERVICE, with({ items = { "sofa", 7 } }), resident,
                            "FLOW_EDATA")
  expect(why).to_contain("'7' is not an item we collect")
end)

test("more than 6 items, or none, are refused", function()
  local seven = { "chair", "chair", "chair", "chair", "chair", "chair",
                  "chair" }
  local why = expect_open_refused(SERVICE, with({ items = seven }), resident,
                                  "FLOW_EDATA")
  expect(why).to_contain("items:")
  expect(why).to_contain("6")
  expect_open_refused(SERVICE, with({ items = flow.list() }), resident,
                      "FLOW_EDATA")
  expect_open_refused(SERVICE, with({ items = false }), resident, "FLOW_EDATA")
  -- Six is fine.
  local c = open(SERVICE, with({ items = { "chair", "chair", "chair", "chair",
                                           "chair", "chair" } }))
  c:expect_field("fee", 3000)
end)

test("each of the resident's details is checked", function()
  local function refused(changes, says)
    local why = expect_open_refused(SERVICE, with(changes), resident,
                                    "FLOW_EDATA")
    expect(why).to_contain(says)
  end
  refused({ uprn = "12 High St" }, "uprn: does not match")
  refused({ uprn = "1234567890123" }, "uprn:")
  refused({ uprn = false }, "uprn: is required")
  refused({ address = false }, "address: is required")
  refused({ address = ("x"):rep(201) }, "address:")
  refused({ postcode = "EXETER" }, "postcode: does not match")
  refused({ name = false }, "name: is required")
  refused({ email = "alex at example.org" }, "email: does not match")
  refused({ phone = "call me" }, "phone: does not match")
  refused({ email = false }, "email or phone: give at least one of them")
  -- Everything wrong is named at once.
  local why = expect_open_refused(SERVICE, with({ uprn = "x", email = "y" }),
                                  resident, "FLOW_EDATA")
  expect(why).to_contain("uprn: does not match")
  expect(why).to_contain("email: does not match")
end)

test("what the service fills in cannot be given when booking", function()
  local why = expect_open_refused(SERVICE, with({ fee = 0 }), resident,
                                  "FLOW_EREFUSED")
  expect(why).to_contain("'fee' cannot be given when booking: give only "
                         .. "uprn, address, postcode, name, email, phone, "
                         .. "items")
  expect_open_refused(SERVICE, with({ refund_by = "2099-01-01" }),
                      resident, "FLOW_EREFUSED")
  expect_open_refused(SERVICE, with({ payment_id = "pay-someone-else" }),
                      resident, "FLOW_EREFUSED")
  -- A name that is no field at all is caught before that.
  why = expect_open_refused(SERVICE, with({ colour = "blue" }), resident,
                            "FLOW_EDATA")
  expect(why).to_contain("colour: is not a field")
end)

-- ---------------------------------------------------------------------
-- The usual way through
-- ---------------------------------------------------------------------

test("the usual way: a date, payment, confirmation, the crew collects",
     function()
  offer("2026-02-11", "2026-02-13")
  card_ok()
  local c = open(SERVICE, booking, resident)
  c:expect_state("choosing_slot")
  c:expect_field("offered_slots", { "2026-02-11", "2026-02-13" })
  c:expect_timers({ { event = "lapse", at = "2026-02-03T09:00:00Z" } })

  c:signal("choose_slot", { date = "2026-02-11" }, resident)
  c:expect_state("booked")
  c:expect_data({
    slot = "2026-02-11",
    -- Wednesday's collection: a full refund until Monday's end of work.
    refund_by = "2026-02-09",
    payment_ref = "BW1-1",
    payment_id = "pay-1",
    paid_at = "2026-02-02T09:00:00Z",
  })
  c:expect_actions({
    { action = "bulky.slots", status = "done" },
    { action = "payments.take", status = "done", key = "BW1-1",
      args = { amount = 3500, reference = "BW1-1",
               email = "alex@example.org",
               description = "Bulky waste collection on Wednesday 11 "
                             .. "February 2026" } },
    { action = "notify.email", status = "done",
      args = { email_address = "alex@example.org",
               template = "bulky_booking_confirmed", reference = "BW1",
               personalisation = {
                 name = "Alex Example", reference = "BW1",
                 address = "12 High Street, Exeter",
                 items = "sofa, chair (2)", fee = "£35.00",
                 collection_date = "Wednesday 11 February 2026",
                 refund = "You can cancel for a full refund until the "
                          .. "end of the working day on Monday 9 February "
                          .. "2026.",
               } } },
  })
  -- On the day, just after midnight, the case moves on by itself.
  c:expect_timers({ { event = "collection_day", kind = "timer",
                      at = "2026-02-11T00:00:00Z" } })
  c:expect_tasks({})

  advance_to("2026-02-10T23:59:00Z")
  c:expect_state("booked")
  advance("1m")
  c:expect_state("collecting")
  c:expect_tasks({
    { name = "collect", team = "crews", status = "open",
      due = "2026-02-11T17:00:00Z", overdue = false,
      title = "Collect sofa, chair (2) from 12 High Street, Exeter (BW1)" },
  })
  c:expect_sla("due", "2026-02-11T17:00:00Z")

  advance("10h")
  c:claim("collect", kim)
  c:complete("collect", { outcome = "collected", photo_ref = "IMG-0042",
                          note = "left by the gate" }, kim)
  c:expect_state("collected")
  c:expect_data({ outcome = "collected", photo_ref = "IMG-0042",
                  crew_note = "left by the gate", collected_by = "kim" })
  c:expect_sla("met")
  c:expect_tasks({})
  c:expect_timers({})
  expect(told(c)).to_be({ "bulky_booking_confirmed", "bulky_collected" })
  c:expect_history({ "open", "slots_found", "choose_slot",
                     "payment_answered", "collection_day",
                     "collection_done" })
  c:expect_refused("cancel", {}, resident, "FLOW_ECLOSED")
end)

test("a resident with only a mobile number is told by text message",
     function()
  local c = booked("2026-02-11", with({ email = false,
                                        phone = "07700 900123" }))
  c:expect_data({ phone = "07700 900123" })
  local sms = requests(c, "notify.sms")
  expect(#sms).to_be(1)
  expect(sms[1].args.to).to_be("07700 900123")
  expect(sms[1].args.template).to_be("bulky_booking_confirmed")
  expect(sms[1].args.personalisation.collection_date)
    .to_be("Wednesday 11 February 2026")
  expect(#requests(c, "notify.email")).to_be(0)
  -- No email address: the payment request does not carry one.
  expect(requests(c, "payments.take")[1].args.email).to_be_nil()
end)

test("staff on the phone can book for the resident", function()
  offer("2026-02-11")
  card_ok()
  local c = open(SERVICE, booking, staff)
  c:signal("choose_slot", { date = "2026-02-11" }, staff)
  c:expect_state("booked")
  expect(c:history()[3].actor.id).to_be("priya")
end)

-- ---------------------------------------------------------------------
-- The date service
-- ---------------------------------------------------------------------

test("no dates free: the booking waits in no_slots until asked again",
     function()
  offer()                                   -- an empty list of dates
  local c = open(SERVICE, booking, resident)
  c:expect_state("no_slots")
  c:expect_field("slot_problem", "none_free")
  expect(told(c)).to_be({ "bulky_no_dates" })
  expect(requests(c, "notify.email")[1].args.personalisation.problem)
    .to_be("none_free")
  c:expect_timers({ { event = "lapse", at = "2026-02-09T09:00:00Z" } })
  -- Later that day the crews have room.
  advance("2h")
  offer("2026-02-13")
  c:signal("find_slots_again", {}, resident)
  c:expect_state("choosing_slot")
  c:expect_field("slot_problem", nil)
  c:expect_field("offered_slots", { "2026-02-13" })
end)

test("the date service failing: retried, then no_slots says unavailable",
     function()
  mock.action("bulky.slots", { fail = "round planner down", retry = true })
  local c = open(SERVICE, booking, resident)
  c:expect_state("finding_slots")
  advance("10m")
  c:expect_state("no_slots")
  c:expect_field("slot_problem", "unavailable")
  expect(requests(c, "bulky.slots")[1].status).to_be("failed")
  expect(requests(c, "bulky.slots")[1].attempts).to_be(4)   -- 1 + 3 retries
  expect(requests(c, "bulky.slots")[1].error).to_be("round planner down")
end)

test("the date service timing out: the engine tries 4 times, then no_slots",
     function()
  mock.action("bulky.slots", { silent = true })
  local c = open(SERVICE, booking, resident)
  advance("5m")
  c:expect_state("finding_slots")
  advance("10m")
  c:expect_state("no_slots")
  c:expect_field("slot_problem", "unavailable")
  expect(requests(c, "bulky.slots")[1].attempts).to_be(4)
end)

test("a slow date service that answers in time is waited for", function()
  mock.action("bulky.slots", { result = { slots = { "2026-02-11" } },
                               after = "40s" })
  local c = open(SERVICE, booking, resident)
  c:expect_state("finding_slots")
  advance("40s")
  c:expect_state("choosing_slot")
  expect(requests(c, "bulky.slots")[1].attempts).to_be(1)
end)

test("a date service that never answers: no_slots after an hour", function()
  -- No mock: like a host that has no handler for bulky.slots.
  local c = open(SERVICE, booking, resident)
  advance("59m")
  c:expect_state("finding_slots")
  advance("1m")
  c:expect_state("no_slots")
  c:expect_field("slot_problem", "no_answer")
  c:expect_history({ "open", "slots_not_answered" })
end)

test("nobody asks again: the booking lapses after 5 working days",
     { at = "2026-02-06T10:00:00Z" }, function()
  offer()
  local c = open(SERVICE, booking, resident)     -- a Friday
  c:expect_state("no_slots")
  -- The weekend does not count: Friday + 5 working days is Friday.
  advance_to("2026-02-13T09:59:00Z")
  c:expect_state("no_slots")
  advance("1m")
  c:expect_state("lapsed")
  c:expect_field("lapsed_because", "no_slots")
  expect(told(c)).to_be({ "bulky_no_dates", "bulky_booking_lapsed" })
end)

test("a date service answer that is not a list of dates is an incident",
     function()
  mock.action("bulky.slots", { result = { slots = { "next Tuesday" } } })
  local c = open(SERVICE, booking, resident)
  c:expect_state("finding_slots")
  local i = c:incidents()[1]
  expect(i.source).to_be("action")
  expect(i.event).to_be("slots_found")
  expect(i.code).to_be("FLOW_EREFUSED")
  expect(i.error).to_contain("'next Tuesday', which is not a date")

  mock.action("bulky.slots", { result = { dates = "2026-02-11" } })
  local d = open(SERVICE, booking, resident)
  d:expect_state("finding_slots")
  expect(d:incidents()[1].error).to_contain("without a list of dates")
end)

-- ---------------------------------------------------------------------
-- Choosing the date
-- ---------------------------------------------------------------------

test("the date must be one of those offered", function()
  offer("2026-02-11", "2026-02-13")
  local c = open(SERVICE, booking, resident)
  local why = c:expect_refused("choose_slot", { date = "2026-02-12" }, resident,
                               "FLOW_EREFUSED")
  expect(why).to_contain("choose one of the dates offered (2026-02-11, "
                         .. "2026-02-13)")
  c:expect_refused("choose_slot", {}, resident, "FLOW_EREFUSED")
  c:expect_refused("choose_slot", { date = 11 }, resident, "FLOW_EREFUSED")
  c:expect_state("choosing_slot")
  c:expect_field("slot", nil)
end)

test("offered dates go stale: too soon is refused, new ones can be asked for",
     function()
  offer("2026-02-03", "2026-02-05")
  local c = open(SERVICE, booking, resident)
  advance_to("2026-02-03T07:00:00Z")   -- the day itself has come
  local why = c:expect_refused("choose_slot", { date = "2026-02-03" }, resident,
                               "FLOW_EREFUSED")
  expect(why).to_contain("Tuesday 3 February 2026 is too soon now")
  offer("2026-02-10")
  c:signal("find_slots_again", {}, resident)
  c:expect_state("choosing_slot")
  c:expect_field("offered_slots", { "2026-02-10" })
  c:expect_history({ "open", "slots_found", "find_slots_again",
                     "slots_found" })
end)

test("a resident who never chooses a date: the booking lapses after 24 hours",
     function()
  offer("2026-02-11")
  local c = open(SERVICE, booking, resident)
  advance("1439m")
  c:expect_state("choosing_slot")
  advance("1m")
  c:expect_state("lapsed")
  c:expect_field("lapsed_because", "slot_not_chosen")
  expect(told(c)).to_be({ "bulky_booking_lapsed" })
  expect(requests(c, "notify.email")[1].args.personalisation.why)
    .to_be("slot_not_chosen")
end)

test("before paying, the resident may cancel: nothing to refund", function()
  offer("2026-02-11")
  local c = open(SERVICE, booking, resident)
  c:signal("cancel", {}, resident)
  c:expect_state("cancelled")
  c:expect_field("refund", nil)
  expect(requests(c, "notify.email")[1].args.personalisation.refund)
    .to_be("No payment was taken.")

  offer()
  local d = open(SERVICE, booking, resident)
  d:expect_state("no_slots")
  d:signal("cancel", {}, staff)
  d:expect_state("cancelled")
  expect(#requests(d, "payments.refund")).to_be(0)
end)

-- ---------------------------------------------------------------------
-- Paying
-- ---------------------------------------------------------------------

test("a declined card may be tried again, under a new payment reference",
     function()
  offer("2026-02-11")
  mock.action("payments.take", { result = { status = "declined",
                                            reason = "insufficient funds" } })
  local c = open(SERVICE, booking, resident)
  c:signal("choose_slot", { date = "2026-02-11" }, resident)
  c:expect_state("payment_problem")
  c:expect_data({ payment_problem = "declined", declines = 1,
                  decline_reason = "insufficient funds",
                  payment_ref = "BW1-1" })
  expect(told(c)).to_be({ "bulky_payment_problem" })
  expect(requests(c, "notify.email")[1].args.personalisation.tries_left)
    .to_be(2)
  card_ok()
  advance("10m")
  c:signal("retry_payment", {}, resident)
  c:expect_state("booked")
  c:expect_data({ payment_ref = "BW1-2", payment_id = "pay-1", declines = 1,
                  paid_at = "2026-02-02T09:10:00Z" })
  c:expect_field("payment_problem", nil)
  local takes = requests(c, "payments.take")
  expect(#takes).to_be(2)
  expect(takes[2].key).to_be("BW1-2")
end)

test("declined three times: the booking lapses", function()
  offer("2026-02-11")
  mock.action("payments.take", { result = { status = "declined",
                                            reason = "card expired" } })
  local c = open(SERVICE, booking, resident)
  c:signal("choose_slot", { date = "2026-02-11" }, resident)
  c:signal("retry_payment", {}, resident)
  c:expect_state("payment_problem")
  c:expect_field("declines", 2)
  expect(requests(c, "notify.email")[2].args.personalisation.tries_left)
    .to_be(1)
  c:signal("retry_payment", {}, resident)
  c:expect_state("lapsed")
  c:expect_data({ declines = 3, lapsed_because = "payment_declined" })
  expect(#requests(c, "payments.take")).to_be(3)
  expect(told(c)).to_be({ "bulky_payment_problem", "bulky_payment_problem",
                          "bulky_booking_lapsed" })
  c:expect_refused("retry_payment", {}, resident, "FLOW_ECLOSED")
end)

test("a resident who gives up after a decline may cancel: nothing to refund",
     function()
  offer("2026-02-11")
  mock.action("payments.take", { result = { status = "declined" } })
  local c = open(SERVICE, booking, resident)
  c:signal("choose_slot", { date = "2026-02-11" }, resident)
  c:signal("cancel", {}, resident)
  c:expect_state("cancelled")
  c:expect_field("refund", nil)
  c:expect_timers({})
  expect(told(c)).to_be({ "bulky_payment_problem", "bulky_booking_cancelled" })
end)

test("a resident who does not try again within 24 hours: the booking lapses",
     function()
  offer("2026-02-11")
  mock.action("payments.take", { result = { status = "declined" } })
  local c = open(SERVICE, booking, resident)
  c:signal("choose_slot", { date = "2026-02-11" }, resident)
  c:expect_timers({ { event = "lapse", at = "2026-02-03T09:00:00Z" } })
  advance("24h")
  c:expect_state("lapsed")
  c:expect_field("lapsed_because", "payment_abandoned")
end)

test("too late to try again for that date: new dates first", function()
  offer("2026-02-03")
  mock.action("payments.take", { result = { status = "declined" } })
  local c = open(SERVICE, booking, resident)
  c:signal("choose_slot", { date = "2026-02-03" }, resident)
  advance_to("2026-02-03T07:00:00Z")
  local why = c:expect_refused("retry_payment", {}, resident, "FLOW_EREFUSED")
  expect(why).to_contain("is too soon now: ask for new dates")
  offer("2026-02-10")
  card_ok()
  c:signal("find_slots_again", {}, resident)
  c:signal("choose_slot", { date = "2026-02-10" }, resident)
  c:expect_state("booked")
  -- The decline still counts; the new try has a new reference.
  c:expect_data({ slot = "2026-02-10", declines = 1, payment_ref = "BW1-2" })
end)

test("a payment provider that times out: the engine tries 3 times with one key",
     function()
  offer("2026-02-11")
  mock.action("payments.take", { silent = true })
  local c = open(SERVICE, booking, resident)
  c:signal("choose_slot", { date = "2026-02-11" }, resident)
  c:expect_state("taking_payment")
  advance("10m")
  c:expect_state("payment_problem")
  -- Not the resident's fault: it does not count as a decline.
  c:expect_data({ payment_problem = "unavailable" })
  c:expect_field("declines", nil)
  local take = requests(c, "payments.take")[1]
  expect(take.status).to_be("failed")
  expect(take.attempts).to_be(3)
  -- Trying again asks with the same reference and key, so a payment that
  -- did go through at the provider is not taken twice.
  card_ok()
  c:signal("retry_payment", {}, resident)
  c:expect_state("booked")
  local takes = requests(c, "payments.take")
  expect(takes[2].key).to_be("BW1-1")
  expect(takes[2].args.reference).to_be("BW1-1")
end)

test("a payment provider that fails once is retried and books", function()
  offer("2026-02-11")
  mock.action("payments.take", function(args, req)
    expect(args.amount).to_be(3500)
    if req.attempt == 1 then return { fail = "502 Bad Gateway", retry = true } end
    return { result = { status = "success", payment_id = "pay-7" } }
  end)
  local c = open(SERVICE, booking, resident)
  c:signal("choose_slot", { date = "2026-02-11" }, resident)
  c:expect_state("taking_payment")
  advance("2m")
  c:expect_state("booked")
  c:expect_field("payment_id", "pay-7")
  expect(requests(c, "payments.take")[1].attempts).to_be(2)
end)

test("a payment provider that never answers: the booking lapses after an hour",
     function()
  offer("2026-02-11")
  local c = open(SERVICE, booking, resident)   -- no payments.take mock
  c:signal("choose_slot", { date = "2026-02-11" }, resident)
  advance("59m")
  c:expect_state("taking_payment")
  advance("1m")
  c:expect_state("lapsed")
  c:expect_field("lapsed_because", "payment_not_confirmed")
  -- The unfinished payment is cancelled with the provider.
  local cancels = requests(c, "payments.cancel")
  expect(#cancels).to_be(1)
  expect(cancels[1].args).to_be({ reference = "BW1-1" })
end)

test("a payment still being made is confirmed by the provider's notice",
     function()
  offer("2026-02-11")
  mock.action("payments.take", { result = { status = "pending",
                                            payment_id = "pay-3ds" } })
  local c = open(SERVICE, booking, resident)
  c:signal("choose_slot", { date = "2026-02-11" }, resident)
  c:expect_state("confirming_payment")
  c:expect_field("payment_id", "pay-3ds")
  advance("4m")
  local m = send("payment_notice", "pay-3ds", { status = "success" })
  expect(m.status).to_be("delivered")
  expect(m.case).to_be(c.id)
  c:expect_state("booked")
  c:expect_field("paid_at", "2026-02-02T09:04:00Z")
  expect(told(c)).to_be({ "bulky_booking_confirmed" })
end)

test("a notice that comes before the payment's answer waits for it",
     function()
  offer("2026-02-11")
  mock.action("payments.take", { result = { status = "pending",
                                            payment_id = "pay-3ds" },
                                 after = "20s" })
  local c = open(SERVICE, booking, resident)
  c:signal("choose_slot", { date = "2026-02-11" }, resident)
  -- The provider's webhook beats its own API answer.
  local m = send("payment_notice", "pay-3ds", { status = "success" })
  expect(m.status).to_be("buffered")
  c:expect_state("taking_payment")
  advance("20s")
  c:expect_state("booked")
  expect(messages("delivered")[1].case).to_be(c.id)
  c:expect_history({ "open", "slots_found", "choose_slot",
                     "payment_answered", "payment_notice" })
end)

test("a notice that never comes: the payment is cancelled, the booking lapses",
     function()
  offer("2026-02-11")
  mock.action("payments.take", { result = { status = "pending",
                                            payment_id = "pay-3ds" } })
  mock.action("payments.cancel", { result = {} })
  local c = open(SERVICE, booking, resident)
  c:signal("choose_slot", { date = "2026-02-11" }, resident)
  c:expect_timers({ { event = "payment_timed_out",
                      at = "2026-02-02T10:00:00Z" } })
  advance("1h")
  c:expect_state("lapsed")
  c:expect_field("lapsed_because", "payment_not_confirmed")
  local cancels = requests(c, "payments.cancel")
  expect(cancels[1].args).to_be({ reference = "BW1-1", payment_id = "pay-3ds" })
  expect(cancels[1].status).to_be("done")
  expect(told(c)).to_be({ "bulky_booking_lapsed" })
  -- A notice after that finds no open booking: it waits, then expires.
  local m = send("payment_notice", "pay-3ds", { status = "success" },
                 { ttl = "1d" })
  expect(m.status).to_be("buffered")
  advance("1d")
  expect(messages("expired")[1].key).to_be("pay-3ds")
end)

test("a declined notice counts as a decline", function()
  offer("2026-02-11")
  mock.action("payments.take", { result = { status = "pending",
                                            payment_id = "pay-3ds" } })
  local c = open(SERVICE, booking, resident)
  c:signal("choose_slot", { date = "2026-02-11" }, resident)
  send("payment_notice", "pay-3ds", { status = "declined",
                                      reason = "3-D Secure failed" })
  c:expect_state("payment_problem")
  c:expect_data({ declines = 1, decline_reason = "3-D Secure failed" })
  c:expect_field("payment_id", nil)
end)

test("the third decline by notice lapses the booking", function()
  offer("2026-02-11")
  local n = 0
  mock.action("payments.take", function()
    n = n + 1
    return { result = { status = "pending", payment_id = "pay-" .. n } }
  end)
  local c = open(SERVICE, booking, resident)
  c:signal("choose_slot", { date = "2026-02-11" }, resident)
  send("payment_notice", "pay-1", { status = "declined" })
  c:signal("retry_payment", {}, resident)
  send("payment_notice", "pay-2", { status = "declined" })
  c:signal("retry_payment", {}, resident)
  c:expect_field("payment_id", "pay-3")
  send("payment_notice", "pay-3", { status = "declined" })
  c:expect_state("lapsed")
  c:expect_field("lapsed_because", "payment_declined")
end)

test("strange answers from the payment provider are incidents", function()
  offer("2026-02-11")
  mock.action("payments.take", { result = { status = "maybe" } })
  local c = open(SERVICE, booking, resident)
  c:signal("choose_slot", { date = "2026-02-11" }, resident)
  c:expect_state("taking_payment")
  expect(c:incidents()[1].error).to_contain("status 'maybe'")

  mock.action("payments.take", { result = { status = "success" } })
  local d = open(SERVICE, booking, resident)
  d:signal("choose_slot", { date = "2026-02-11" }, resident)
  d:expect_state("taking_payment")
  expect(d:incidents()[1].error).to_contain("gave no payment_id")

  mock.action("payments.take", { result = { status = "pending" } })
  local e = open(SERVICE, booking, resident)
  e:signal("choose_slot", { date = "2026-02-11" }, resident)
  expect(e:incidents()[1].error).to_contain("said pending but gave no")

  mock.action("payments.take", { result = { status = "pending",
                                            payment_id = "pay-x" } })
  local f = open(SERVICE, booking, resident)
  f:signal("choose_slot", { date = "2026-02-11" }, resident)
  local m = send("payment_notice", "pay-x", { status = "refunded" })
  expect(m.status).to_be("incident")
  f:expect_state("confirming_payment")
end)

test("a second notice for a booked case is an incident", function()
  offer("2026-02-11")
  mock.action("payments.take", { result = { status = "pending",
                                            payment_id = "pay-3ds" } })
  local c = open(SERVICE, booking, resident)
  c:signal("choose_slot", { date = "2026-02-11" }, resident)
  send("payment_notice", "pay-3ds", { status = "success" })
  c:expect_state("booked")
  local m = send("payment_notice", "pay-3ds", { status = "success" })
  expect(m.status).to_be("incident")
  c:expect_state("booked")
  local i = c:incidents()[1]
  expect(i.source).to_be("message")
  expect(i.code).to_be("FLOW_EEVENT")
end)

-- ---------------------------------------------------------------------
-- Cancelling: the refund deadline
-- ---------------------------------------------------------------------

-- Cancel `c` in time: a full refund, answered by the provider.
local function cancel_in_time(c)
  mock.action("payments.refund", { result = { refund_id = "ref-1" } })
  c:signal("cancel", {}, resident)
  c:expect_state("cancelled")
  c:expect_data({ refund = "full", refund_id = "ref-1" })
end

-- Cancel `c` too late: refused until the resident accepts no refund.
local function cancel_too_late(c, collection)
  local why = c:expect_refused("cancel", {}, resident, "FLOW_EREFUSED")
  expect(why).to_contain("It is less than 2 working days before the "
                         .. "collection on " .. collection)
  expect(why).to_contain("gives no refund of the £35.00 paid")
  expect(why).to_contain('send {"accept_no_refund": true}')
  c:expect_state("booked")
  c:signal("cancel", { accept_no_refund = true }, resident)
  c:expect_state("cancelled")
  c:expect_field("refund", "none")
  expect(#requests(c, "payments.refund")).to_be(0)
  local last = requests(c, "notify.email")
  expect(last[#last].args.template).to_be("bulky_booking_cancelled")
  expect(last[#last].args.personalisation.refund)
    .to_be("The fee of £35.00 is not refunded.")
end

test("a Wednesday collection: refunded until Monday 17:00, not after",
     function()
  local a = booked("2026-02-11")
  local b = booked("2026-02-11")
  a:expect_field("refund_by", "2026-02-09")
  advance_to("2026-02-09T16:59:00Z")
  cancel_in_time(a)
  expect(requests(a, "payments.refund")[1].args)
    .to_be({ payment_id = "pay-1", amount = 3500, reference = "BW1-1" })
  expect(requests(a, "payments.refund")[1].key).to_be("refund-BW1-1")
  local notes = requests(a, "notify.email")
  expect(notes[#notes].args.personalisation.refund)
    .to_be("£35.00 has been refunded.")
  a:expect_history({ "open", "slots_found", "choose_slot", "payment_answered",
                     "cancel", "refunded" })
  advance("1m")                                    -- Monday 17:00
  cancel_too_late(b, "Wednesday 11 February 2026")
end)

test("a Tuesday collection: the weekend does not count", function()
  local a = booked("2026-02-10")
  local b = booked("2026-02-10")
  -- Monday is 1 working day before, Friday 2.
  a:expect_field("refund_by", "2026-02-06")
  advance_to("2026-02-06T16:59:59Z")
  cancel_in_time(a)
  advance_to("2026-02-06T17:00:00Z")
  cancel_too_late(b, "Tuesday 10 February 2026")
  -- Nor on the Saturday.
  local d = booked("2026-02-10")
  advance_to("2026-02-07T10:00:00Z")
  cancel_too_late(d, "Tuesday 10 February 2026")
end)

test("after Easter, in summer time: the bank holidays do not count",
     { at = "2026-03-30T09:00:00Z" }, function()
  -- Tuesday 7 April 2026: Monday 6th (Easter Monday) and Friday 3rd (Good
  -- Friday) are bank holidays, so the working days before are Thursday
  -- 2nd and Wednesday 1st.  17:00 in London is 16:00 UTC in summer.
  local a = booked("2026-04-07")
  local b = booked("2026-04-07")
  a:expect_field("refund_by", "2026-04-01")
  expect(requests(a, "notify.email")[1].args.personalisation.refund)
    .to_be("You can cancel for a full refund until the end of the working "
           .. "day on Wednesday 1 April 2026.")
  advance_to("2026-04-01T15:59:00Z")
  cancel_in_time(a)
  advance_to("2026-04-01T16:00:00Z")       -- 17:00 in London
  cancel_too_late(b, "Tuesday 7 April 2026")
  -- On the day, the crew's task is due at 17:00 London time, 16:00 UTC.
  local d = booked("2026-04-07")
  advance_to("2026-04-07T00:00:00Z")
  d:expect_state("collecting")
  d:expect_tasks({ { name = "collect", due = "2026-04-07T16:00:00Z" } })
end)

test("over Christmas: the 25th and the moved Boxing Day do not count",
     { at = "2026-12-14T10:00:00Z" }, function()
  -- Tuesday 29 December 2026: Monday 28th (Boxing Day moved) and Friday
  -- 25th are bank holidays: Thursday 24th is 1 working day before,
  -- Wednesday 23rd 2.
  local a = booked("2026-12-29")
  local b = booked("2026-12-29")
  a:expect_field("refund_by", "2026-12-23")
  advance_to("2026-12-23T16:59:00Z")
  cancel_in_time(a)
  advance_to("2026-12-23T17:00:00Z")
  cancel_too_late(b, "Tuesday 29 December 2026")
end)

-- More deadlines: after the spring bank holiday, over the clock change
-- of 25 October 2026, over New Year.  For each, one booking is cancelled
-- a minute before 17:00 (London) on its last day, and one at 17:00.
local deadlines = {
  { slot = "2026-05-26", collection = "Tuesday 26 May 2026",
    refund_by = "2026-05-21",
    just_before = "2026-05-21T15:59:00Z", at = "2026-05-21T16:00:00Z" },
  { slot = "2026-10-26", collection = "Monday 26 October 2026",
    refund_by = "2026-10-22",
    just_before = "2026-10-22T15:59:00Z", at = "2026-10-22T16:00:00Z" },
  { slot = "2027-01-04", collection = "Monday 4 January 2027",
    refund_by = "2026-12-30",
    just_before = "2026-12-30T16:59:00Z", at = "2026-12-30T17:00:00Z" },
}

test("bank holidays, the clock change and New Year: both sides of each deadline",
     function()
  for _, x in ipairs(deadlines) do
    local a = booked(x.slot)
    local b = booked(x.slot)
    a:expect_field("refund_by", x.refund_by)
    advance_to(x.just_before)
    cancel_in_time(a)
    advance_to(x.at)
    cancel_too_late(b, x.collection)
  end
end)

test("a booking made after the deadline says so, and is not refunded",
     function()
  -- Booked on Monday 2 February: Wednesday's collection can still be
  -- refunded until 17:00 today; Tuesday's deadline was last Friday.
  local a = booked("2026-02-04")
  a:expect_field("refund_by", "2026-02-02")
  local b = booked("2026-02-03")
  b:expect_field("refund_by", nil)
  expect(requests(b, "notify.email")[1].args.personalisation.refund)
    .to_be("This booking is too close to the collection day to be "
           .. "refunded if you cancel.")
  cancel_too_late(b, "Tuesday 3 February 2026")
end)

test("a refund the provider refuses goes to the payments team", function()
  local c = booked("2026-02-11")
  mock.action("payments.refund", { fail = "payment too old to refund" })
  c:signal("cancel", {}, resident)
  c:expect_state("refund_by_hand")
  c:expect_tasks({
    { name = "refund", team = "payments", due = "2026-02-04T09:00:00Z",
      title = "Refund £35.00 for bulky waste booking BW1 (payment BW1-1)" },
  })
  local why = c:expect_complete_refused("refund", { note = "done" },
                                        { actor = "jo", roles = { "finance" } },
                                        "FLOW_EDATA")
  expect(why).to_contain("refund_id: is required")
  c:complete("refund", { refund_id = "BACS-991" },
             { actor = "jo", roles = { "finance" } })
  c:expect_state("cancelled")
  c:expect_data({ refund = "full", refund_id = "BACS-991" })
  c:expect_history({ "open", "slots_found", "choose_slot", "payment_answered",
                     "cancel", "refund_failed", "refunded_by_hand" })
end)

test("a refund never answered goes to the payments team after 1 working day",
     function()
  local c = booked("2026-02-11")
  c:signal("cancel", {}, resident)            -- no payments.refund mock
  c:expect_state("refunding")
  advance("1 working day")
  c:expect_state("refund_by_hand")
  c:expect_tasks({ { name = "refund", team = "payments" } })
  c:expect_history({ "open", "slots_found", "choose_slot", "payment_answered",
                     "cancel", "after" })
end)

test("a refund answered after it went to the team closes the task", function()
  local c = booked("2026-02-11")
  c:signal("cancel", {}, resident)     -- the provider's handler is down
  advance("1 working day")
  c:expect_state("refund_by_hand")
  -- It comes back, and answers the request that was waiting.
  mock.action("payments.refund", { result = { refund_id = "ref-late" } })
  advance("1m")
  c:expect_state("cancelled")
  c:expect_field("refund_id", "ref-late")
  c:expect_tasks({})
  expect(c:tasks({ status = "cancelled" })[1].name).to_be("refund")
end)

test("a slow refund is retried by the engine", function()
  local c = booked("2026-02-11")
  mock.action("payments.refund", function(args, req)
    if req.attempt < 3 then return { silent = true } end
    return { result = { refund_id = "ref-3" } }
  end)
  c:signal("cancel", {}, resident)
  advance("10m")
  c:expect_state("cancelled")
  c:expect_field("refund_id", "ref-3")
  expect(requests(c, "payments.refund")[1].attempts).to_be(3)
end)

-- ---------------------------------------------------------------------
-- The collection day
-- ---------------------------------------------------------------------

test("cancelling on the day keeps the fee and withdraws the crew's task",
     function()
  local c = booked("2026-02-11")
  advance_to("2026-02-11T08:00:00Z")
  c:expect_state("collecting")
  local why = c:expect_refused("cancel", {}, resident, "FLOW_EREFUSED")
  expect(why).to_contain("less than 2 working days before the collection "
                         .. "on Wednesday 11 February 2026")
  c:signal("cancel", { accept_no_refund = true }, staff)
  c:expect_state("cancelled")
  c:expect_field("refund", "none")
  c:expect_tasks({})
  expect(c:tasks({ status = "cancelled" })[1].name).to_be("collect")
end)

test("items not put out: the crew says so and the fee is kept", function()
  local c = booked("2026-02-11")
  advance_to("2026-02-11T10:00:00Z")
  c:complete("collect", { outcome = "not_put_out",
                          note = "nothing at the kerb" }, kim)
  c:expect_state("not_put_out")
  c:expect_data({ outcome = "not_put_out", crew_note = "nothing at the kerb" })
  c:expect_field("photo_ref", nil)
  c:expect_field("refund", nil)
  expect(#requests(c, "payments.refund")).to_be(0)
  expect(told(c)).to_be({ "bulky_booking_confirmed", "bulky_not_put_out" })
end)

test("a collection needs a photo reference, and the form is checked",
     function()
  local c = booked("2026-02-11")
  advance_to("2026-02-11T10:00:00Z")
  c:claim("collect", kim)
  local why = c:expect_complete_refused("collect", { outcome = "collected" },
                                        kim, "FLOW_EREFUSED")
  expect(why).to_contain("a collection needs the reference of the photo")
  why = c:expect_complete_refused("collect", { outcome = "taken" }, kim,
                                  "FLOW_EDATA")
  expect(why).to_contain("outcome: must be one of collected, not_put_out")
  why = c:expect_complete_refused("collect", { photo_ref = "IMG-1" }, kim,
                                  "FLOW_EDATA")
  expect(why).to_contain("outcome: is required")
  c:expect_complete_refused("collect", { outcome = "collected",
                                         photo_ref = ("x"):rep(201) }, kim,
                            "FLOW_EDATA")
  c:expect_state("collecting")
  c:expect_tasks({ { name = "collect", status = "claimed",
                     claimed_by = "kim" } })
  c:complete("collect", { outcome = "collected", photo_ref = "IMG-1" }, kim)
  c:expect_state("collected")
end)

test("a late crew: overdue at 17:00, the service level breached, still closes",
     function()
  local c = booked("2026-02-11")
  advance_to("2026-02-11T16:59:00Z")
  c:expect_tasks({ { name = "collect", overdue = false } })
  c:expect_sla("due")
  advance("1m")
  c:expect_state("collecting")
  c:expect_tasks({ { name = "collect", overdue = true } })
  c:expect_sla("breached")
  -- The crew reports the next morning.
  advance_to("2026-02-12T08:30:00Z")
  c:complete("collect", { outcome = "collected", photo_ref = "IMG-7" }, kim)
  c:expect_state("collected")
  c:expect_sla("breached")
  local task = c:tasks()[1]
  expect(task.finished_at).to_be("2026-02-12T08:30:00Z")
  expect(task.finished_by).to_be("kim")
  c:expect_history({ "open", "slots_found", "choose_slot", "payment_answered",
                     "collection_day", "sla_breached", "collection_done" })
end)

-- ---------------------------------------------------------------------
-- Who may do what, and what is refused
-- ---------------------------------------------------------------------

test("only the resident or staff may act for the resident", function()
  offer("2026-02-11")
  local c = open(SERVICE, booking, resident)
  local why = c:expect_refused("choose_slot", { date = "2026-02-11" }, kim,
                               "FLOW_EPERM")
  expect(why).to_contain("needs the role resident or staff")
  c:expect_refused("find_slots_again", {}, kim, "FLOW_EPERM")
  c:expect_refused("cancel", {}, { actor = "anon" }, "FLOW_EPERM")
  mock.action("payments.take", { result = { status = "declined" } })
  c:signal("choose_slot", { date = "2026-02-11" }, resident)
  c:expect_refused("retry_payment", {}, kim, "FLOW_EPERM")
  c:expect_state("payment_problem")
  card_ok()
  c:signal("retry_payment", {}, staff)
  c:expect_refused("cancel", {}, kim, "FLOW_EPERM")
  advance_to("2026-02-11T08:00:00Z")
  c:expect_refused("cancel", { accept_no_refund = true }, kim, "FLOW_EPERM")
  c:expect_state("collecting")
end)

test("events only the engine sends are refused to people", function()
  offer("2026-02-11")
  card_ok()
  local c = open(SERVICE, booking, resident)
  local why = c:expect_refused("lapse", { because = "slot_not_chosen" }, staff,
                               "FLOW_EPERM")
  expect(why).to_contain("is internal: only the engine sends it")
  c:signal("choose_slot", { date = "2026-02-11" }, resident)
  c:expect_refused("collection_day", {}, staff, "FLOW_EPERM")
  c:expect_state("booked")
  mock.action("payments.take", { result = { status = "pending",
                                            payment_id = "pay-3ds" } })
  local d = open(SERVICE, booking, resident)
  d:signal("choose_slot", { date = "2026-02-11" }, resident)
  d:expect_refused("payment_notice", { status = "success" }, staff,
                   "FLOW_EPERM")
  d:expect_refused("payment_timed_out", {}, staff, "FLOW_EPERM")
  d:expect_state("confirming_payment")
end)

test("events a state does not take, and a closed booking, are refused",
     function()
  local c = open(SERVICE, booking, resident)
  local why = c:expect_refused("choose_slot", { date = "2026-02-11" }, resident,
                               "FLOW_EEVENT")
  expect(why).to_contain("which does not accept 'choose_slot'")
  c:expect_refused("cancel", {}, resident, "FLOW_EEVENT")
  advance("1h")
  c:expect_state("no_slots")
  c:signal("cancel", {}, resident)
  c:expect_refused("find_slots_again", {}, resident, "FLOW_ECLOSED")
end)

test("bank holidays come from the engine's calendar, in any year",
     { at = "2031-04-28T10:00:00Z" }, function()
  -- Monday 5 May 2031 is the early May bank holiday: for Tuesday 6th the
  -- last day to cancel with a refund is Thursday 1 May.
  local c = booked("2031-05-06")
  c:expect_field("refund_by", "2031-05-01")
end)

test("dates offered on a weekend or a bank holiday are left out", function()
  offer("2026-02-07", "2026-02-09", "2026-04-06")
  local c = open(SERVICE, booking, resident)
  c:expect_state("choosing_slot")
  c:expect_field("offered_slots", { "2026-02-09" })
  c:expect_refused("choose_slot", { date = "2026-02-07" }, resident,
                   "FLOW_EREFUSED")
  offer("2026-04-06")                         -- Easter Monday only
  local d = open(SERVICE, booking, resident)
  d:expect_state("no_slots")
  d:expect_field("slot_problem", "none_free")
end)

test("a confirmation that cannot be sent is an incident; the booking stands",
     function()
  offer("2026-02-11")
  card_ok()
  mock.action("notify.email", { fail = "400 BadRequestError: email_address "
                                       .. "Not a valid email address" })
  local c = open(SERVICE, booking, resident)
  c:signal("choose_slot", { date = "2026-02-11" }, resident)
  c:expect_state("booked")
  local email = requests(c, "notify.email")[1]
  expect(email.status).to_be("incident")
  local i = c:incidents()[1]
  expect(i.source).to_be("action")
  expect(i.status).to_be("open")
end)
