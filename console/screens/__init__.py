"""The console's screens: one `*_screen.py` per screen (gates, logs, timeline, help, abort confirmation)."""
