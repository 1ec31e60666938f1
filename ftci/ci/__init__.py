"""GitHub CI glue: the Action's runner, change planning and the fork-PR trust check."""
