"""Venue facts (pure): B3 time zone, trading sessions, hours and calendar (``b3``);
a contract's tick size and point value (``contracts``).

May import: errors, timeutil. Nothing of the project's I/O.
"""
