"""The demo's web console: a browser view of the Slack stand-in, the simulated model fleet and
the Kubernetes stand-in, where a person clicks buttons and types slash commands that reach the
bot as signed Slack requests."""
