"""The arithmetic by hand: inputs (what the user types), worked (the steps as data), render
(the steps in the terminal), kernels (the seeds' classic kernels on real images)."""
