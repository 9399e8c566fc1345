"""Control plane logic: promotion, rollback, canary analysis, progressive delivery, routes edits,
gates, status. The CLI (lorafleet.platform.cli) is a thin layer over these."""
