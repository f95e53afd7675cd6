"""What the console shows, folded from events and guard records into strings: no Textual here."""
