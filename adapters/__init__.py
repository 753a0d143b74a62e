"""Platform adapters (Slack, Discord): everything that knows a platform lives here."""
