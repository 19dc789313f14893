"""Tools the policy can call: a search engine and a Python interpreter, behind one async interface."""
