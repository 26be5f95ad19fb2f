"""Thin Bolt listeners: parse the request, call the service layer, reply."""
