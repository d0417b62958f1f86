"""Before launch: what a method will cost on this machine, measured on the model and data, not guessed."""
