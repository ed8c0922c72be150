"""Venue facts (pure): B3 time zone, trading sessions, hours and calendar (``b3``).

May import: errors, timeutil. Nothing of the project's I/O.
"""
