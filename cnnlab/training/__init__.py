"""Training: config (settings), schedule, setup (device, data, model), loop (the fit), state, distributed, progress."""
