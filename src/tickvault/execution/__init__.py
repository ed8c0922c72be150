"""Reserved for execution: paper fills (pure) and, later, order routing.

Paper-fill code may import only records, venue, timeutil and errors (an import contract
enforces it). A broker adapter that sends orders (ProfitDLL) would live with the feeds.
"""
