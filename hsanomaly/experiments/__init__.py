"""Research harness: the public-scene benchmark and the thesis reproduction.

Kept apart from the product: only its own commands (``hsanomaly benchmark``, ``hsanomaly
thesis``) import it; detection, training and the front door never do.
"""
