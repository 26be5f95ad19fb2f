"""Schedules that survive restarts: monitoring, reminders, expiry, run by one leader replica."""
