"""Runnable recipes: the journeys the CLI verbs walk, built from the library's parts."""
