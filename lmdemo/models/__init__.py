"""Models: the built-in registry, the offline store, the one loading path, adapter folders and the Hub."""
