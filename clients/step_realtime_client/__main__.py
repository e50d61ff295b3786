import sys

from step_realtime_client.cli import main

sys.exit(main())
