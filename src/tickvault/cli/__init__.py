"""The ``tickvault`` command line: ``main`` (the group and its error handling) and one
module per command group. The top layer: may import everything, is imported by nothing.
"""
