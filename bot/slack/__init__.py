"""Talking to Slack: role resolution, publishing session messages, the Bolt app and server."""
