"""The console in a browser (`gb10-console serve-web`): textual-serve behind a per-start token and an Origin
check, with a page that loads nothing from outside the package."""
