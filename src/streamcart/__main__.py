from streamcart.cli import main

main()
