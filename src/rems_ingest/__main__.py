from rems_ingest.cli import main

main()
