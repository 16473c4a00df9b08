"""The recipient's web pages: preference center, inbox and one-click unsubscribe."""
