return { name = 'm', version = 1, initial = 'a', states = { a = { on = { go = 'b' } }, b = { final = true } } }
