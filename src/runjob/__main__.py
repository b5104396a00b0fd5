from runjob.main import main

raise SystemExit(main())
