"""Running the bot: settings, structured logs, metrics, redaction of secrets."""
