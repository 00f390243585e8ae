from bench.neardup2.run import main

main()
