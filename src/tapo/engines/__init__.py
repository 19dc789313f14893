"""Generation engines behind one token-in/token-out interface."""
