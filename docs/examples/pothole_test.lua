load("pothole.lua")

local resident = { street = "Mill Lane", phone = "07700 900123" }

test("the resident gets a text when a crew is assigned", function()
  mock.action("notify.sms", { result = { id = "sms-1" } })
  local c = open("pothole", resident)
  c:signal("assign")
  c:expect_field("sms_id", "sms-1")
  c:expect_actions({
    { action = "notify.sms", args = { to = "07700 900123" }, status = "done" },
  })
end)

test("no phone number, no text", function()
  local c = open("pothole", { street = "Mill Lane" })
  c:signal("assign")
  c:expect_actions({})
end)

test("a slow gateway answers later", function()
  mock.action("notify.sms", { result = { id = "sms-9" }, after = "5m" })
  local c = open("pothole", resident)
  c:signal("assign")
  c:expect_field("sms_id", nil)
  advance("5m")
  c:expect_field("sms_id", "sms-9")
end)

test("a gateway that keeps failing: three tries, then a phone call", function()
  mock.action("notify.sms", { fail = "gateway busy", retry = true })
  local c = open("pothole", resident)
  c:signal("assign")
  c:expect_state("assigned")
  advance("10m")
  c:expect_state("call_resident")
  c:expect_actions({ { status = "failed", attempts = 3, error = "gateway busy" } })
end)

test("an answer that never comes times out, three times", function()
  mock.action("notify.sms", { silent = true })
  local c = open("pothole", resident)
  c:signal("assign")
  advance("1h")
  c:expect_state("call_resident")
  c:expect_actions({ { status = "failed", attempts = 3 } })
end)

test("the text goes to the number on the case", function()
  mock.action("notify.sms", function(args, req)
    expect(args.template).to_be("pothole_assigned")
    return { result = { id = "sms-" .. args.to .. "-" .. req.attempt } }
  end)
  local c = open("pothole", resident)
  c:signal("assign")
  c:expect_field("sms_id", "sms-07700 900123-1")
end)
