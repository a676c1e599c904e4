"""The toolkit's base: errors, files, the settings base class every plugin imports, statistics."""
