"""The application layer: one bus that loads a session, applies a command, saves it and
records the effects its events call for; probe rounds, incidents, rollback and reports."""
