from ftci.cli import main

main()
