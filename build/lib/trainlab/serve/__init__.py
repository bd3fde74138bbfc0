"""Using what runs recorded: predictions, the dashboard, the team tracking server."""
