"""The operator console: the Textual app and the `gb10-console` command line."""
