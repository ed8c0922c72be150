"""Venue facts (pure): B3 trading sessions, hours and time zone."""
