"""Lab feeds: who may send results, how each feed is read, and the watchdog that notices silence."""
