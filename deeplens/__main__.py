from deeplens.cli import main

main()
