"""Shared test infrastructure: fakes of the services deploybot talks to, served on loopback."""
