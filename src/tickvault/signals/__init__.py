"""Reserved for signal policy: pure code that turns model outputs into signals.

May import only records, venue, timeutil and errors (an import contract enforces it), so
the same policy runs live and in a backtest.
"""
