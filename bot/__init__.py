"""routerbot: a Slack and Discord chat bot built around OpenRouter."""
