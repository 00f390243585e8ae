from bench.neardup.run import main

main()
