"""Model KPIs: uptime, latency, traffic, errors, cost per 1k requests and drift per served
model, from the metrics the model servers export, with each model's incidents.

Free of Slack: the scorecards are rendered for Slack in bot/slack/kpi_blocks.py and served as
JSON by bot/kpis/api.py.
"""
