return {
  name = "streetlight",
  version = 1,
  initial = "reported",
  states = {
    reported = {
      after = { ["2 working days"] = "chased",
                ["5 working days"] = "escalated" },
      on = { fix = "fixed" },
    },
    chased = { on = { fix = "fixed" } },
    escalated = { on = { fix = "fixed" } },
    waiting = { title = "Waiting for a part" },
    fixed = { final = true },
  },
}
