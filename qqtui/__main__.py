from qqtui.cli import main

main()
