"""Small programs that behave like agents, built on `qqtui.agent`.

Run one with `python -m qqtui.demo.agents.<name> --help`: coder, tree, hang, fail,
flood, hostile. Every duration is a flag so tests can run them in a second or two.
"""
