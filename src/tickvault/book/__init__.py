"""The offer book: rebuilding it from updates (``state``) and storing it (``store``)."""
