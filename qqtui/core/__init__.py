"""The headless domain: store, sessions, processes, supervisor. Never imports Textual or Rich."""
