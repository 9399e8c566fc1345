"""Control plane: the CLI, the routes file, promote, rollback, canary analysis, base bootstrap."""
