return {
  name = "pothole", version = 1,
  fields = {
    street = { type = "string", required = true },
    phone = { type = "string" },
    sms_id = { type = "string" },
  },
  initial = "reported",
  states = {
    reported = { on = { assign = "assigned" } },
    assigned = {
      enter = function(case)
        if case.data.phone then
          flow.call("notify.sms",
            { to = case.data.phone, template = "pothole_assigned" },
            { reply = "texted", fail = "not_texted",
              retry = { max = 2, backoff = "1m" }, timeout = "10m" })
        end
      end,
      on = {
        texted = { internal = true,
                   handler = function(case, ev) case.data.sms_id = ev.payload.id end },
        not_texted = { to = "call_resident", internal = true },
        repair = "repaired",
      },
    },
    call_resident = { on = { repair = "repaired" } },
    repaired = { final = true },
  },
}
