"""The headless domain: store, sessions, process control, supervisor. Never imports Textual or Rich."""
