"""Research harness: the public-scene benchmark and the thesis reproduction.

Kept apart from the product: nothing under hsanomaly/ outside this package imports it.
"""
