"""The main screen's panels: widgets that render folded views (`update_view`) and do no I/O."""
