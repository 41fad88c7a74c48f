"""The web console (issue #16): server-rendered pages under /ui/ on the daemon's HTTP port."""
