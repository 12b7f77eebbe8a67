from ccgw.cli import main

raise SystemExit(main())
