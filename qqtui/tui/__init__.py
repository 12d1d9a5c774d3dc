"""The Textual app: reads snapshots from qqtui.core, sends intents to it."""
